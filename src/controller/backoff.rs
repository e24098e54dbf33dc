//! Per-object exponential backoff with jitter for failed reconciles (1 s doubling to 5 min),
//! honouring a provider's `Retry-After`.
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

const BASE: Duration = Duration::from_secs(1);
const CAP: Duration = Duration::from_secs(300);

#[derive(Default)]
pub struct Backoff {
    failures: Mutex<HashMap<String, u32>>,
}

impl Backoff {
    /// Delay before retrying `key` after one more failure.
    pub fn next(&self, key: &str, retry_after: Option<Duration>) -> Duration {
        let n = {
            let mut f = self.failures.lock().expect("backoff lock");
            let n = f.entry(key.to_string()).or_insert(0);
            *n = n.saturating_add(1);
            *n
        };
        let exp = BASE.saturating_mul(1u32 << (n - 1).min(16)).min(CAP);
        // Equal jitter: at least half the step, so retries never bunch up at zero.
        let half = exp / 2;
        let jitter = Duration::from_millis(rand::random_range(0..=half.as_millis() as u64));
        (half + jitter).max(retry_after.unwrap_or_default())
    }

    pub fn reset(&self, key: &str) {
        self.failures.lock().expect("backoff lock").remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_caps_and_resets() {
        let b = Backoff::default();
        let d1 = b.next("a", None);
        assert!(d1 <= BASE);
        for _ in 0..20 {
            assert!(b.next("a", None) <= CAP);
        }
        assert!(b.next("a", None) >= CAP / 2);
        assert!(b.next("a", Some(Duration::from_secs(900))) >= Duration::from_secs(900));
        b.reset("a");
        assert!(b.next("a", None) <= BASE);
    }
}
