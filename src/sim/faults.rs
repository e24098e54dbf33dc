//! Fault knobs and the seeded dice that decide, request by request, which fault fires.
//!
//! Every API request draws a fixed number of random values whatever happens next, so the n-th
//! request of a run sees the same dice for the same seed: with requests sent one after
//! another, the fault sequence is reproducible. The hold-create die comes from a second stream
//! of its own, so adding it left the first stream (and every older seed's sequence of the
//! other faults) unchanged.

use super::model::{Caller, SimStatus};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Fault rates are probabilities in [0, 1] applied to each API request independently.
/// Inspection endpoints (`/_sim/…`) are never faulted.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Faults {
    /// Added to every API request.
    #[serde(with = "super::duration::human")]
    pub latency: Duration,
    /// Uniform extra latency in [0, latency_jitter).
    #[serde(with = "super::duration::human")]
    pub latency_jitter: Duration,
    /// 503 with an HTML body, operation not performed.
    pub error_5xx_rate: f64,
    /// Request held for [`TIMEOUT_HOLD`] then the connection closed, operation not performed.
    pub timeout_rate: f64,
    /// Connection closed without any answer, operation not performed.
    pub drop_rate: f64,
    /// 429 with `Retry-After: retry_after_secs`, operation not performed.
    pub rate_429: f64,
    pub retry_after_secs: u64,
    /// A create IS performed, then the answer is lost (connection closed or 502).
    pub lost_create_rate: f64,
    /// A new snapshot/backup ends `failed` (Zomro `Killed`) instead of completed.
    pub fail_rate: f64,
    /// A new snapshot/backup ends with an undocumented status (e.g. `archiving`).
    pub unknown_status_rate: f64,
    /// Lists come back in random order instead of creation order.
    pub shuffle_lists: bool,
    /// Zomro: a one-element `elem` is a bare object, an empty one is `{}` or absent.
    pub zomro_quirky_elem: bool,
    /// A create IS performed at once (the object exists, counts against the limit and is
    /// recorded), but its answer is held back for `hold_create_for` before it is sent. An
    /// accepted restore (VpsRest) is held the same way: the server is restoring meanwhile.
    pub hold_create_rate: f64,
    #[serde(with = "super::duration::human")]
    pub hold_create_for: Duration,
    /// A new object appears in list answers only this long after its create; it counts
    /// against the limit at once (a provider's limit check does not wait for its list cache).
    #[serde(with = "super::duration::human")]
    pub visibility_delay: Duration,
    /// VpsRest snapshot and backup descriptions are stored cut to this many characters.
    pub description_max_chars: Option<usize>,
    /// A deleted object stays listed this long as deleting (VpsRest `deleting`, Zomro
    /// `Pending_delete`) and keeps counting against the limit until it vanishes.
    #[serde(with = "super::duration::human")]
    pub delete_linger: Duration,
    /// List answers carry at most this many results while VpsRest `count` / Zomro `p_elems`
    /// report the true total: the listing is incomplete.
    pub partial_lists: Option<usize>,
}

impl Default for Faults {
    fn default() -> Self {
        Self {
            latency: Duration::ZERO,
            latency_jitter: Duration::ZERO,
            error_5xx_rate: 0.0,
            timeout_rate: 0.0,
            drop_rate: 0.0,
            rate_429: 0.0,
            retry_after_secs: 1,
            lost_create_rate: 0.0,
            fail_rate: 0.0,
            unknown_status_rate: 0.0,
            shuffle_lists: false,
            zomro_quirky_elem: false,
            hold_create_rate: 0.0,
            hold_create_for: Duration::ZERO,
            visibility_delay: Duration::ZERO,
            description_max_chars: None,
            delete_linger: Duration::ZERO,
            partial_lists: None,
        }
    }
}

/// How long a "timeout" request is held: longer than any sane client timeout.
pub const TIMEOUT_HOLD: Duration = Duration::from_secs(90);

/// Undocumented final statuses picked by `unknown_status_rate`.
const UNKNOWN_STATUSES: [&str; 3] = ["archiving", "error", "deactivated"];

impl Faults {
    pub fn validate(&self) -> Result<(), String> {
        let rates = [
            ("error_5xx_rate", self.error_5xx_rate),
            ("timeout_rate", self.timeout_rate),
            ("drop_rate", self.drop_rate),
            ("rate_429", self.rate_429),
            ("lost_create_rate", self.lost_create_rate),
            ("fail_rate", self.fail_rate),
            ("unknown_status_rate", self.unknown_status_rate),
            ("hold_create_rate", self.hold_create_rate),
        ];
        for (name, rate) in rates {
            if !(0.0..=1.0).contains(&rate) {
                return Err(format!("{name} must be within [0, 1], got {rate}"));
            }
        }
        if self.partial_lists == Some(0) {
            return Err(
                "partial_lists must be at least 1 (a page size); leave it out for whole lists"
                    .into(),
            );
        }
        Ok(())
    }
}

/// A fault that answers instead of the handler.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PreFault {
    Throttle { retry_after_secs: u64 },
    Unavailable,
    Timeout,
    Drop,
}

/// How a lost create loses its answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LostMode {
    Drop,
    BadGateway,
}

/// Everything decided for one request, before the handler runs.
#[derive(Clone, Debug)]
pub struct Decision {
    pub latency: Duration,
    pub pre: Option<PreFault>,
    /// Applies only if the request turns out to be a successful create.
    pub lost_create: Option<LostMode>,
    /// Final status of an object this request creates.
    pub outcome: SimStatus,
    pub shuffle: bool,
    pub quirky_elem: bool,
    /// With quirky elem on, whether an empty list is `{}` (true) or absent.
    pub empty_as_object: bool,
    /// Applies only to a successful create: how long its answer is held back.
    pub hold: Option<Duration>,
    /// The knobs of the provider's behaviour (not dice), as they were for this request.
    pub behaviour: Behaviour,
    /// Who sent the request (filled in by the gate).
    pub caller: Caller,
}

/// Deterministic provider behaviour, copied into each request's decision.
#[derive(Clone, Debug, Default)]
pub struct Behaviour {
    pub visibility_delay: Duration,
    pub description_max_chars: Option<usize>,
    pub delete_linger: Duration,
    pub partial_lists: Option<usize>,
}

impl Behaviour {
    /// The description as the provider stores it.
    pub fn store_description(&self, description: Option<String>) -> Option<String> {
        match (description, self.description_max_chars) {
            (Some(d), Some(max)) if d.chars().count() > max => Some(d.chars().take(max).collect()),
            (d, _) => d,
        }
    }
}

/// Keeps the hold-create stream unrelated to the main one for the same seed.
const HOLD_SALT: u64 = 0x5851_f42d_4c95_7f2d;

pub struct FaultEngine {
    faults: Faults,
    rng: StdRng,
    hold_rng: StdRng,
}

impl FaultEngine {
    pub fn new(faults: Faults, seed: u64) -> Self {
        Self {
            faults,
            rng: StdRng::seed_from_u64(seed),
            hold_rng: StdRng::seed_from_u64(seed ^ HOLD_SALT),
        }
    }

    pub fn faults(&self) -> &Faults {
        &self.faults
    }

    /// Replaces the knobs; the dice sequence continues where it was.
    pub fn set(&mut self, faults: Faults) {
        self.faults = faults;
    }

    pub fn decide(&mut self) -> Decision {
        // Draw every value unconditionally so that the number of draws per request is fixed.
        let jitter: f64 = self.rng.random();
        let r429: f64 = self.rng.random();
        let r5xx: f64 = self.rng.random();
        let rtimeout: f64 = self.rng.random();
        let rdrop: f64 = self.rng.random();
        let rlost: f64 = self.rng.random();
        let lost_as_drop: bool = self.rng.random();
        let rfail: f64 = self.rng.random();
        let runknown: f64 = self.rng.random();
        let unknown_pick = self.rng.random_range(0..UNKNOWN_STATUSES.len());
        let empty_as_object: bool = self.rng.random();
        let rhold: f64 = self.hold_rng.random();

        let f = &self.faults;
        let pre = if r429 < f.rate_429 {
            Some(PreFault::Throttle {
                retry_after_secs: f.retry_after_secs,
            })
        } else if r5xx < f.error_5xx_rate {
            Some(PreFault::Unavailable)
        } else if rtimeout < f.timeout_rate {
            Some(PreFault::Timeout)
        } else if rdrop < f.drop_rate {
            Some(PreFault::Drop)
        } else {
            None
        };
        let lost_create = (rlost < f.lost_create_rate).then_some(if lost_as_drop {
            LostMode::Drop
        } else {
            LostMode::BadGateway
        });
        let outcome = if rfail < f.fail_rate {
            SimStatus::Failed
        } else if runknown < f.unknown_status_rate {
            SimStatus::Other(UNKNOWN_STATUSES[unknown_pick].to_string())
        } else {
            SimStatus::Completed
        };
        Decision {
            latency: f.latency + f.latency_jitter.mul_f64(jitter),
            pre,
            lost_create,
            outcome,
            shuffle: f.shuffle_lists,
            quirky_elem: f.zomro_quirky_elem,
            empty_as_object,
            hold: (rhold < f.hold_create_rate && !f.hold_create_for.is_zero())
                .then_some(f.hold_create_for),
            behaviour: Behaviour {
                visibility_delay: f.visibility_delay,
                description_max_chars: f.description_max_chars,
                delete_linger: f.delete_linger,
                partial_lists: f.partial_lists,
            },
            caller: Caller::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sequence(seed: u64, faults: &Faults) -> Vec<(Option<PreFault>, SimStatus)> {
        let mut engine = FaultEngine::new(faults.clone(), seed);
        (0..200)
            .map(|_| {
                let d = engine.decide();
                (d.pre, d.outcome)
            })
            .collect()
    }

    #[test]
    fn same_seed_same_decisions_other_seed_differs() {
        let faults = Faults {
            error_5xx_rate: 0.2,
            drop_rate: 0.2,
            rate_429: 0.1,
            fail_rate: 0.3,
            unknown_status_rate: 0.3,
            ..Faults::default()
        };
        assert_eq!(sequence(7, &faults), sequence(7, &faults));
        assert_ne!(sequence(7, &faults), sequence(8, &faults));
    }

    #[test]
    fn zero_rates_never_fire_and_one_always_fires() {
        let mut quiet = FaultEngine::new(Faults::default(), 1);
        let mut loud = FaultEngine::new(
            Faults {
                rate_429: 1.0,
                lost_create_rate: 1.0,
                fail_rate: 1.0,
                ..Faults::default()
            },
            1,
        );
        for _ in 0..100 {
            let d = quiet.decide();
            assert!(d.pre.is_none() && d.lost_create.is_none());
            assert_eq!(d.outcome, SimStatus::Completed);
            let d = loud.decide();
            assert!(matches!(d.pre, Some(PreFault::Throttle { .. })));
            assert!(d.lost_create.is_some());
            assert_eq!(d.outcome, SimStatus::Failed);
        }
    }

    #[test]
    fn the_hold_die_leaves_the_other_dice_alone() {
        let base = Faults {
            error_5xx_rate: 0.3,
            fail_rate: 0.3,
            ..Faults::default()
        };
        let holding = Faults {
            hold_create_rate: 0.5,
            hold_create_for: Duration::from_secs(5),
            ..base.clone()
        };
        assert_eq!(sequence(3, &base), sequence(3, &holding));
        let holds = |seed| {
            let mut e = FaultEngine::new(holding.clone(), seed);
            (0..200).map(|_| e.decide().hold).collect::<Vec<_>>()
        };
        let a = holds(3);
        assert_eq!(a, holds(3));
        assert_ne!(a, holds(4));
        let n = a.iter().filter(|h| h.is_some()).count();
        assert!((60..140).contains(&n), "{n} of 200 held at rate 0.5");
        // A zero hold time holds nothing, whatever the rate.
        let mut never = FaultEngine::new(
            Faults {
                hold_create_rate: 1.0,
                ..Faults::default()
            },
            3,
        );
        assert!((0..50).all(|_| never.decide().hold.is_none()));
    }

    #[test]
    fn descriptions_are_cut_by_characters() {
        let cut = Behaviour {
            description_max_chars: Some(3),
            ..Behaviour::default()
        };
        assert_eq!(
            cut.store_description(Some("äöüß".into())),
            Some("äöü".into())
        );
        assert_eq!(cut.store_description(Some("ab".into())), Some("ab".into()));
        assert_eq!(cut.store_description(None), None);
        let whole = Behaviour::default();
        assert_eq!(
            whole.store_description(Some("äöüß".into())),
            Some("äöüß".into())
        );
    }

    #[test]
    fn validate_rejects_out_of_range_rates() {
        assert!(Faults::default().validate().is_ok());
        let bad = Faults {
            drop_rate: 1.5,
            ..Faults::default()
        };
        assert!(bad.validate().unwrap_err().contains("drop_rate"));
        let nan = Faults {
            fail_rate: f64::NAN,
            ..Faults::default()
        };
        assert!(nan.validate().is_err());
        let empty_pages = Faults {
            partial_lists: Some(0),
            ..Faults::default()
        };
        assert!(
            empty_pages
                .validate()
                .unwrap_err()
                .contains("partial_lists")
        );
        let hold = Faults {
            hold_create_rate: -0.1,
            ..Faults::default()
        };
        assert!(hold.validate().unwrap_err().contains("hold_create_rate"));
    }

    #[test]
    fn faults_json_accepts_partial_and_human_durations() {
        let f: Faults =
            serde_json::from_str(r#"{"latency": "250ms", "latency_jitter": 40, "drop_rate": 0.5}"#)
                .expect("parse");
        assert_eq!(f.latency, Duration::from_millis(250));
        assert_eq!(f.latency_jitter, Duration::from_millis(40));
        assert_eq!(f.drop_rate, 0.5);
        assert_eq!(f.retry_after_secs, 1);
        let back: Faults =
            serde_json::from_value(serde_json::to_value(&f).expect("ser")).expect("de");
        assert_eq!(back, f);
        assert!(serde_json::from_str::<Faults>(r#"{"dropp_rate": 0.5}"#).is_err());
    }
}
