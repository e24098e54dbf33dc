//! The seeded fault mixes of a chaos run. Request faults (5xx, 429, drops, lost answers,
//! latency) come from one stream; the provider's own ways (held answers, late visibility,
//! cut descriptions, lingering deletes, partial lists) from a second one, so a seed gives
//! the same request faults with or without them (`--no-provider-quirks`).
use std::time::Duration;

use rand::RngExt;
use rand::rngs::StdRng;

use crate::sim::Faults;

/// One fault mix: rates picked from the seed; timeouts rare (the simulator holds them 90 s).
/// Every fourth mix (from the second on) has timeouts and every fourth (from the third on) a
/// latency spike, so even a short run sees each kind of fault; some others are calm.
pub fn request_faults(rng: &mut StdRng, index: u64) -> Faults {
    let calm = rng.random_bool(0.25) && index > 0 && matches!(index % 4, 0 | 3);
    let spike = rng.random_bool(0.25) || index % 4 == 2;
    let timeouts = rng.random_bool(0.2) || index % 4 == 1;
    let f = Faults {
        latency: if spike {
            Duration::from_millis(rng.random_range(200..1500))
        } else {
            Duration::ZERO
        },
        latency_jitter: Duration::from_millis(rng.random_range(0..100)),
        error_5xx_rate: rng.random_range(0.0..0.15),
        timeout_rate: if timeouts { 0.01 } else { 0.0 },
        drop_rate: rng.random_range(0.0..0.03),
        rate_429: rng.random_range(0.0..0.08),
        retry_after_secs: rng.random_range(1..=3),
        lost_create_rate: rng.random_range(0.0..0.3),
        fail_rate: rng.random_range(0.0..0.1),
        unknown_status_rate: 0.0,
        shuffle_lists: rng.random_bool(0.5),
        zomro_quirky_elem: false,
        ..Faults::default()
    };
    if calm { Faults::default() } else { f }
}

/// Adds the provider's quirks to a mix (a calm mix stays calm). Each quirk is on in a share
/// of the mixes, and mix `index` turns one on by rotation, so even a short run sees each.
/// `longest_hold` bounds how long a create's answer is held (about two lease durations:
/// long enough to outlast a freeze).
pub fn add_quirks(rng: &mut StdRng, index: u64, mut f: Faults, longest_hold: Duration) -> Faults {
    let turn = index % 5;
    let hold = rng.random_bool(0.35) || turn == 1;
    let late = rng.random_bool(0.35) || turn == 2;
    let cut = rng.random_bool(0.2) || turn == 3;
    let linger = rng.random_bool(0.35) || turn == 4;
    let partial = rng.random_bool(0.08) || (turn == 0 && index > 0);
    let hold_rate = rng.random_range(0.05..0.3);
    let hold_ms = rng.random_range(1_000..longest_hold.as_millis().max(1_001) as u64);
    let late_ms = rng.random_range(500..5_000);
    let cut_to = rng.random_range(30..50);
    let linger_ms = rng.random_range(2_000..10_000);
    let page = rng.random_range(2..=4);
    if f == Faults::default() {
        return f;
    }
    if hold {
        f.hold_create_rate = hold_rate;
        f.hold_create_for = Duration::from_millis(hold_ms);
    }
    if late {
        f.visibility_delay = Duration::from_millis(late_ms);
    }
    if cut {
        f.description_max_chars = Some(cut_to);
    }
    if linger {
        f.delete_linger = Duration::from_millis(linger_ms);
    }
    if partial {
        f.partial_lists = Some(page);
    }
    f
}

pub fn describe(f: &Faults) -> String {
    if *f == Faults::default() {
        return "none (calm)".into();
    }
    let mut parts = vec![format!(
        "5xx {:.2}, 429 {:.2} (Retry-After {}s), timeout {:.3}, drop {:.2}, lost-create {:.2}, fail {:.2}, latency {:?}+{:?}",
        f.error_5xx_rate,
        f.rate_429,
        f.retry_after_secs,
        f.timeout_rate,
        f.drop_rate,
        f.lost_create_rate,
        f.fail_rate,
        f.latency,
        f.latency_jitter,
    )];
    if f.shuffle_lists {
        parts.push("shuffled lists".into());
    }
    if f.hold_create_rate > 0.0 {
        parts.push(format!(
            "held creates {:.2} for {:?}",
            f.hold_create_rate, f.hold_create_for
        ));
    }
    if !f.visibility_delay.is_zero() {
        parts.push(format!("listed {:?} late", f.visibility_delay));
    }
    if let Some(n) = f.description_max_chars {
        parts.push(format!("descriptions cut to {n}"));
    }
    if !f.delete_linger.is_zero() {
        parts.push(format!("deletes linger {:?}", f.delete_linger));
    }
    if let Some(n) = f.partial_lists {
        parts.push(format!("lists of at most {n}"));
    }
    parts.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn quirks_come_from_their_own_stream_and_rotate() {
        let mut a = StdRng::seed_from_u64(7);
        let mut b = StdRng::seed_from_u64(7);
        let mut quirks = StdRng::seed_from_u64(8);
        let hold = Duration::from_secs(10);
        let mut seen = [false; 5];
        for i in 0..20 {
            let plain = request_faults(&mut a, i);
            let quirky = add_quirks(&mut quirks, i, request_faults(&mut b, i), hold);
            assert_eq!(plain.error_5xx_rate, quirky.error_5xx_rate);
            assert_eq!(plain.lost_create_rate, quirky.lost_create_rate);
            assert!(quirky.validate().is_ok());
            if plain == Faults::default() {
                assert_eq!(quirky, Faults::default(), "calm stays calm");
                continue;
            }
            assert!(quirky.hold_create_for <= hold);
            seen[0] |= quirky.hold_create_rate > 0.0;
            seen[1] |= !quirky.visibility_delay.is_zero();
            seen[2] |= quirky.description_max_chars.is_some();
            seen[3] |= !quirky.delete_linger.is_zero();
            seen[4] |= quirky.partial_lists.is_some();
        }
        assert_eq!(seen, [true; 5], "every quirk within twenty mixes");
        let text = describe(&add_quirks(&mut quirks, 1, request_faults(&mut a, 1), hold));
        assert!(text.contains("held creates"), "{text}");
    }
}
