//! When to look at an object again: jittered so a fleet's polls spread instead of arriving
//! together, and a server is never listed more often than its intervals allow.
use std::time::{Duration, Instant};

use kube::runtime::controller::Action;

use super::listings::ServerKey;
use super::registry::ProviderHandle;
use super::snapshot_backup::decide::Requeue;
use super::snapshot_backup::resync_clock::ResyncClock;

/// How long to wait for a provider that is not Ready (its readiness change wakes objects
/// earlier).
const PROVIDER_WAIT: Duration = Duration::from_secs(60);

/// The resync clock of an object's server, where a settled object waits instead of holding a
/// timer of its own (see `resync_clock`).
pub struct ServerClock<'a> {
    pub clock: &'a ResyncClock,
    pub server: &'a ServerKey,
    /// When the listing the decision used was fetched: the resync counts from there, so the
    /// ring finds that listing a whole period old and lists the server again.
    pub listed: Option<Instant>,
}

pub fn requeue(
    r: Requeue,
    handle: Option<&ProviderHandle>,
    clock: Option<ServerClock<'_>>,
) -> Action {
    let now = Instant::now();
    let at = match (r, handle) {
        (Requeue::Never, _) => return Action::await_change(),
        (Requeue::After(d), _) => return Action::requeue(d),
        (Requeue::FirstListing(d), _) => now + d,
        (_, None) => return jittered(PROVIDER_WAIT),
        (Requeue::Poll, Some(h)) => return jittered(h.poll_interval),
        (Requeue::Slow, Some(h)) => return jittered(slow(h)),
        (Requeue::Resync, Some(h)) => resync_at(
            clock.as_ref().and_then(|c| c.listed),
            now,
            h.resync_interval,
        ),
    };
    match clock {
        Some(c) => {
            c.clock.ring_at(c.server, at.into());
            Action::await_change()
        }
        None => Action::requeue(at.saturating_duration_since(now)),
    }
}

/// A resync period (plus jitter) after the listing the decision used was fetched, or after
/// `now` without one.
fn resync_at(listed: Option<Instant>, now: Instant, period: Duration) -> Instant {
    listed.unwrap_or(now).min(now) + resync(period)
}

/// A waiting object's pace: a few polls, at least a minute, at most a resync.
fn slow(h: &ProviderHandle) -> Duration {
    (h.poll_interval * 4)
        .max(Duration::from_secs(60))
        .min(h.resync_interval)
}

/// `d` to `d` + 10 %: servers spread their re-lists, and a server is never listed more often
/// than once per resync period.
fn resync(d: Duration) -> Duration {
    let spread = d.as_millis() as u64 / 10;
    d + Duration::from_millis(rand::random_range(0..=spread))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_settled_server_is_due_a_resync_period_after_the_listing_it_was_decided_on() {
        let now = Instant::now();
        let period = Duration::from_secs(60);
        for _ in 0..100 {
            let at = resync_at(Some(now - Duration::from_secs(50)), now, period);
            assert!(
                at >= now + Duration::from_secs(10),
                "a full period after the listing"
            );
            assert!(at <= now + Duration::from_secs(16), "plus at most 10 %");
            let at = resync_at(None, now, period);
            assert!(at >= now + period && at <= now + Duration::from_secs(66));
        }
    }
}
