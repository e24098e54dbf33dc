//! When to look at an object again: jittered so a fleet's polls spread instead of arriving
//! together, and a server is never listed more often than its intervals allow.
use std::time::Duration;

use kube::runtime::controller::Action;

use super::registry::ProviderHandle;
use super::snapshot_backup::decide::Requeue;

/// How long to wait for a provider that is not Ready (its readiness change wakes objects
/// earlier).
const PROVIDER_WAIT: Duration = Duration::from_secs(60);

pub fn requeue(r: Requeue, handle: Option<&ProviderHandle>) -> Action {
    match (r, handle) {
        (Requeue::Never, _) => Action::await_change(),
        (Requeue::After(d), _) => Action::requeue(d),
        (_, None) => jittered(PROVIDER_WAIT),
        (Requeue::Poll, Some(h)) => jittered(h.poll_interval),
        (Requeue::Resync, Some(h)) => resync(h.resync_interval),
        (Requeue::Slow, Some(h)) => jittered(slow(h)),
    }
}

/// A waiting object's pace: a few polls, at least a minute, at most a resync.
fn slow(h: &ProviderHandle) -> Duration {
    (h.poll_interval * 4)
        .max(Duration::from_secs(60))
        .min(h.resync_interval)
}

/// Requeue after `d` to `d` + 10 %: settled objects spread their re-lists, and a server is
/// never listed more often than once per resync period.
fn resync(d: Duration) -> Action {
    let spread = d.as_millis() as u64 / 10;
    Action::requeue(d + Duration::from_millis(rand::random_range(0..=spread)))
}

/// Requeue after `d` ± 10 %.
pub fn jittered(d: Duration) -> Action {
    let spread = d.as_millis() as u64 / 10;
    let offset = if spread == 0 {
        0
    } else {
        rand::random_range(0..=2 * spread)
    };
    Action::requeue(d.saturating_sub(Duration::from_millis(spread)) + Duration::from_millis(offset))
}
