//! Fencing by time: when this process may send provider requests, and how long a create whose
//! answer was never seen is waited for. The providers take no idempotency key and no fencing
//! token, so two replicas are kept apart only by the clock; every timing derives here from
//! four inputs, with the argument next to it (README, "Crash safety", says the same).
//!
//! Inputs: the lease duration `L`, the provider request timeout `T` (no request is on the wire
//! longer), an allowance `S` for clock differences between nodes, and the provider's list lag
//! `V` (how long a new object may take to show in list answers).
//!
//! 1. **A leader's validity.** A renewal sent at `t0` (this process's monotonic clock) writes
//!    `renewTime = t0` (its wall clock). A standby takes over once its own clock passes
//!    `renewTime + L`, which is real time `t0 + L - S` at the earliest. So this process is
//!    leader until `t0 + L - S`, measured on its own monotonic clock.
//! 2. **Mutations.** A create, delete or restore leaves the gate only while
//!    `now + T <= t0 + L - S`: it is answered (or abandoned) before a standby can lead.
//!    Reads may go until `t0 + L - S`. After that nothing is sent at all.
//! 3. **Renew deadline.** Without a successful renewal for `L - S - T`, no mutation can pass
//!    (2); the process exits, as on a proven loss, and restarts as a standby.
//! 4. **Send-by.** A create records its intent (wall clock `i`) before the call and must
//!    leave the gate within `W = T` of it; one that waited longer is dropped, not sent.
//! 5. **Re-create grace.** A create sent by `i + W` is carried out by `i + W + T` and listed
//!    by `i + W + T + V`; another node reads `i` with up to `S` of difference. So a complete
//!    listing taken `G = W + T + V + S` after the intent that does not show the object proves
//!    it was never made, and only then is a create repeated.
//! 6. **Quiet period.** A new leader waits `Q = S` before it starts: any request of the old
//!    leader that passed its check was answered by `t0 + L - S`; `Q` adds room for a process
//!    paused between the check and its socket write.
//!
//! 7. **At the socket.** The gate's check and the socket write are separate steps (pool,
//!    connect, TLS, the connection's task being scheduled). A change's connection asks the
//!    fence again right before each write to the socket and refuses it when the fence has
//!    closed, so a process frozen in between (a stop signal, a long VM pause) and thawed after
//!    a standby took over sends nothing (`provider::connection`).
//!
//! Honest limit: the second check and the write system call are still two steps, nanoseconds
//! apart. A freeze exactly there, longer than the remaining margin plus `Q`, can still send one
//! request late. The conditional writes around each call (the create intent, the eviction mark,
//! the restore marker) keep even that request from being repeated by the new leader: it is at
//! worst one create the new leader adopts, or a restore reported in doubt.
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use crate::provider::Fence;

/// The inputs, and everything derived from them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timings {
    /// `L`: `--lease-duration-secs`.
    pub lease: Duration,
    /// `T`: `--provider-request-timeout`.
    pub request_timeout: Duration,
    /// `S`: `--clock-skew-allowance`.
    pub clock_skew: Duration,
    /// `V`: `--provider-list-lag`.
    pub list_lag: Duration,
}

impl Default for Timings {
    fn default() -> Self {
        Timings {
            lease: Duration::from_secs(30),
            request_timeout: Duration::from_secs(10),
            clock_skew: Duration::from_secs(5),
            list_lag: Duration::from_secs(10),
        }
    }
}

/// A renewal must be possible a few times within the renew deadline.
const MIN_RENEW_DEADLINE: Duration = Duration::from_secs(3);

impl Timings {
    /// Why these timings cannot keep two replicas apart, naming the flags to change.
    pub fn validate(&self) -> Result<(), String> {
        let needed = self.clock_skew + self.request_timeout + MIN_RENEW_DEADLINE;
        if self.lease < needed {
            return Err(format!(
                "--lease-duration-secs ({}s) must be at least --clock-skew-allowance ({:?}) + --provider-request-timeout ({:?}) + {:?}, so the leader can renew before it must stop: raise it to {}s or lower the others",
                self.lease.as_secs(),
                self.clock_skew,
                self.request_timeout,
                MIN_RENEW_DEADLINE,
                needed.as_secs_f64().ceil()
            ));
        }
        if self.request_timeout.is_zero() {
            return Err("--provider-request-timeout must be longer than zero".into());
        }
        Ok(())
    }

    /// (1) How long after a renewal was sent this process may act as leader.
    pub fn validity(&self) -> Duration {
        self.lease.saturating_sub(self.clock_skew)
    }

    /// (3) Leadership ends when no renewal succeeded for this long.
    pub fn renew_deadline(&self) -> Duration {
        self.validity().saturating_sub(self.request_timeout)
    }

    /// Renewals are sent this often, so a few may fail before the deadline.
    pub fn renew_every(&self) -> Duration {
        (self.renew_deadline() / 3).max(Duration::from_millis(500))
    }

    /// (4) How long a create may wait in the gate after its intent.
    pub fn send_window(&self) -> Duration {
        self.request_timeout
    }

    /// (5) How long after its intent an unseen create is taken as never made.
    pub fn intent_grace(&self) -> Duration {
        self.send_window() + self.request_timeout + self.list_lag + self.clock_skew
    }

    /// (6) How long a new leader waits before it starts.
    pub fn quiet_period(&self) -> Duration {
        self.clock_skew
    }
}

/// This process's leadership as the provider gate sees it: requests pass only inside the
/// window the last successful renewal opened (rules 1–2).
#[derive(Debug)]
pub struct LeaseFence {
    timings: Timings,
    /// When the last successful renewal (or the acquisition) was sent.
    renewed: Mutex<Option<Instant>>,
}

impl LeaseFence {
    pub fn new(timings: Timings) -> Self {
        LeaseFence {
            timings,
            renewed: Mutex::new(None),
        }
    }

    /// A renewal sent at `sent` succeeded.
    pub fn renewed(&self, sent: Instant) {
        let mut r = self.renewed.lock().expect("fence lock");
        if r.is_none_or(|at| at < sent) {
            *r = Some(sent);
        }
    }

    /// Leadership is gone: nothing passes any more.
    pub fn revoke(&self) {
        *self.renewed.lock().expect("fence lock") = None;
    }

    /// Until when this process is leader, if it is.
    pub fn valid_until(&self) -> Option<Instant> {
        let renewed = *self.renewed.lock().expect("fence lock");
        renewed.map(|t| t + self.timings.validity())
    }

    /// Time left before the renew deadline, from `now`.
    pub fn deadline_left(&self, now: Instant) -> Duration {
        let renewed = *self.renewed.lock().expect("fence lock");
        renewed.map_or(Duration::ZERO, |t| {
            (t + self.timings.renew_deadline()).saturating_duration_since(now)
        })
    }

    /// (3) Whether the renew deadline has passed: no mutation can pass any more.
    pub fn lapsed(&self, now: Instant) -> bool {
        let renewed = *self.renewed.lock().expect("fence lock");
        renewed.is_some_and(|t| now > t + self.timings.renew_deadline())
    }
}

impl Fence for LeaseFence {
    fn admit(&self, mutation: bool) -> Result<(), String> {
        let now = Instant::now();
        let Some(until) = self.valid_until() else {
            return Err("this process does not hold the leader lease".into());
        };
        let margin = if mutation {
            self.timings.request_timeout
        } else {
            Duration::ZERO
        };
        if now + margin > until {
            return Err(format!(
                "the leader lease was last renewed too long ago for a {} to be answered before a standby may take over",
                if mutation { "change" } else { "request" }
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(lease: u64, timeout: u64, skew: u64) -> Timings {
        Timings {
            lease: Duration::from_secs(lease),
            request_timeout: Duration::from_secs(timeout),
            clock_skew: Duration::from_secs(skew),
            list_lag: Duration::from_secs(10),
        }
    }

    #[test]
    fn the_defaults_hold_together_and_say_why_when_not() {
        let d = Timings::default();
        assert!(d.validate().is_ok());
        assert_eq!(d.renew_deadline(), Duration::from_secs(15));
        assert_eq!(d.renew_every(), Duration::from_secs(5));
        assert_eq!(d.intent_grace(), Duration::from_secs(35));
        let err = t(15, 10, 5).validate().unwrap_err();
        assert!(
            err.contains("--lease-duration-secs") && err.contains("18s"),
            "{err}"
        );
        assert!(t(6, 2, 1).validate().is_ok());
    }

    #[test]
    fn the_grace_outlasts_a_create_sent_as_late_as_allowed() {
        // Sent at the end of its window, answered at the timeout, listed after the lag, read
        // by a node whose clock is behind by the allowance: still inside the grace.
        for timings in [Timings::default(), t(6, 2, 1), t(120, 30, 10)] {
            let latest_listed = timings.send_window()
                + timings.request_timeout
                + timings.list_lag
                + timings.clock_skew;
            assert!(latest_listed <= timings.intent_grace());
        }
    }

    #[tokio::test(start_paused = true)]
    async fn mutations_stop_a_request_timeout_before_reads_and_both_at_the_window() {
        let timings = t(30, 10, 5);
        let fence = LeaseFence::new(timings);
        assert!(
            fence.admit(false).is_err(),
            "nothing before the lease is held"
        );
        fence.renewed(Instant::now());
        assert!(fence.admit(true).is_ok() && fence.admit(false).is_ok());
        // 15 s after the renewal: 10 s of a 25 s window left, exactly one request timeout.
        tokio::time::advance(Duration::from_secs(15)).await;
        assert!(fence.admit(true).is_ok());
        assert!(!fence.lapsed(Instant::now()));
        tokio::time::advance(Duration::from_millis(1)).await;
        assert!(
            fence.admit(true).is_err(),
            "a change could outlive the lease"
        );
        assert!(fence.admit(false).is_ok());
        assert!(fence.lapsed(Instant::now()));
        tokio::time::advance(Duration::from_secs(10)).await;
        assert!(
            fence.admit(false).is_err(),
            "past the window nothing is sent"
        );
        fence.renewed(Instant::now());
        assert!(fence.admit(true).is_ok(), "a renewal opens a new window");
        fence.revoke();
        assert!(fence.admit(false).is_err());
    }
}
