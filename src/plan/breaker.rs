//! A mass-deletion breaker: deletions of provider data that arrive from outside (GitOps prune,
//! `kubectl delete` of many objects) pass until too many start within one window; the rest
//! wait until a human acknowledges, or the window moves on.
use std::collections::VecDeque;
use std::time::Duration;

use jiff::Timestamp;

#[derive(Debug, Clone)]
pub struct Breaker {
    max: usize,
    window: Duration,
    started: VecDeque<Timestamp>,
}

impl Breaker {
    pub fn new(max: usize, window: Duration) -> Self {
        Self {
            max: max.max(1),
            window,
            started: VecDeque::new(),
        }
    }

    /// Whether one more deletion may start at `now`. `acknowledged` lets it through whatever
    /// the count (an explicit "yes, delete them").
    pub fn try_start(&mut self, now: Timestamp, acknowledged: bool) -> bool {
        let window =
            jiff::SignedDuration::try_from(self.window).unwrap_or(jiff::SignedDuration::MAX);
        while self
            .started
            .front()
            .is_some_and(|t| now.duration_since(*t) >= window)
        {
            self.started.pop_front();
        }
        if self.started.len() >= self.max && !acknowledged {
            return false;
        }
        self.started.push_back(now);
        true
    }

    pub fn reconfigure(&mut self, max: usize, window: Duration) {
        self.max = max.max(1);
        self.window = window;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trips_after_max_and_recovers_after_window() {
        let t0 = Timestamp::from_second(1_000).unwrap();
        let mut b = Breaker::new(2, Duration::from_secs(60));
        assert!(b.try_start(t0, false));
        assert!(b.try_start(t0, false));
        assert!(!b.try_start(t0, false));
        assert!(b.try_start(t0, true), "an acknowledgement lets it through");
        let later = Timestamp::from_second(1_061).unwrap();
        assert!(b.try_start(later, false));
    }
}
