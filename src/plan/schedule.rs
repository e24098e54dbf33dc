//! When a schedule fires: cron expressions evaluated in an IANA time zone, stable per-schedule
//! jitter, and the catch-up decision after downtime. Pure: no I/O, no clock reads.
//!
//! # Expressions
//! See [`super::cron`]: 5 fields (or 6 with leading seconds), lists, ranges, steps, month and
//! weekday names, the Vixie day-of-month/day-of-week rule and `@daily`-style macros.
//!
//! # Time zones and daylight saving time
//! An expression describes wall-clock times in the schedule's zone ([`time_zone`] looks a
//! name up; jiff's bundled copy of the tz database is compiled in, so distroless images
//! without `/usr/share/zoneinfo` work the same). Each matching wall-clock time fires once:
//! - **Gap** (spring forward, e.g. 02:00–03:00 does not exist in Europe/Berlin on the last
//!   Sunday of March): matching times inside the gap fire at the first instant after the
//!   jump (03:00 new time), like Vixie cron running the skipped hour's jobs right after the
//!   clock change. All matches inside one gap collapse into that single fire, and a match
//!   that lands on the same instant (e.g. `0 3 * * *`) does not add a second one.
//! - **Fold** (fall back, e.g. 02:00–03:00 happens twice in Europe/Berlin on the last
//!   Sunday of October): a matching time fires once, at its first occurrence. Nothing fires
//!   during the second pass through the repeated hour — a `*/15 * * * *` schedule therefore
//!   pauses for one real hour once a year, and `30 2 * * *` still makes exactly one snapshot.
//!
//! # Jitter
//! [`stable_jitter`] spreads a fleet of identical schedules over a window while giving each
//! schedule the same offset after every restart and upgrade. A schedule with jitter `j`
//! fires at `f + j` for every fire time `f` of its expression. Keep `j` below the
//! expression's shortest interval, or fire times overtake each other's slots.
//!
//! # Missed runs
//! [`decide`] never asks for a burst: after downtime at most the latest due fire runs (if it
//! is still within the starting deadline); the rest are counted as missed.
use std::time::Duration;

use jiff::civil::DateTime;
use jiff::tz::{AmbiguousOffset, TimeZone};
use jiff::{SignedDuration, Timestamp};

pub use super::cron::{CronError, CronSchedule};

/// [`Decision::missed`] stops counting here: a per-second schedule that was down for a month
/// would otherwise walk millions of fire times on every reconcile.
pub const MISSED_COUNT_CAP: u32 = 1000;

/// The zone name is not in the tz database.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown time zone {name:?}; use an IANA time zone name such as \"UTC\", \
     \"Europe/Berlin\" or \"America/New_York\""
)]
pub struct UnknownTimeZone {
    pub name: String,
}

/// Looks up an IANA time zone name (case-insensitive), e.g. `Europe/Berlin` or `UTC`.
///
/// # Errors
/// [`UnknownTimeZone`] naming the zone when the tz database does not know it.
pub fn time_zone(name: &str) -> Result<TimeZone, UnknownTimeZone> {
    TimeZone::get(name).map_err(|_| UnknownTimeZone {
        name: name.to_owned(),
    })
}

const ONE_SECOND: SignedDuration = SignedDuration::from_secs(1);

impl CronSchedule {
    /// The first fire time strictly after `after`, with the DST rules of the module
    /// documentation; `None` only when there is none before the year 9999.
    ///
    /// Cost does not depend on how sparse the schedule is: the search skips whole months,
    /// days, hours and minutes that cannot match.
    #[must_use]
    pub fn next_after(&self, after: Timestamp, tz: &TimeZone) -> Option<Timestamp> {
        let mut start = floor_second(tz.to_datetime(after))
            .checked_add(ONE_SECOND)
            .ok()?;
        loop {
            let civil = self.next_civil_at_or_after(start)?;
            let instant = match tz.to_ambiguous_timestamp(civil).offset() {
                AmbiguousOffset::Unambiguous { offset } => offset.to_timestamp(civil).ok()?,
                AmbiguousOffset::Gap {
                    before,
                    after: past,
                } => gap_end(tz, civil, before, past)?,
                AmbiguousOffset::Fold { before, .. } => {
                    let first_pass = before.to_timestamp(civil).ok()?;
                    if first_pass <= after {
                        // `after` lies in the second pass of this fold. Fold times whose first
                        // pass is ≤ `after` have fired already; jump past them in one step
                        // (a per-second schedule would otherwise walk an hour of seconds),
                        // but not past the fold's end, where unambiguous times may match.
                        let reading = floor_second(before.to_datetime(after))
                            .checked_add(ONE_SECOND)
                            .ok()?;
                        let fold_end = tz
                            .following(first_pass)
                            .next()
                            .map(|t| before.to_datetime(t.timestamp()));
                        let target = fold_end.map_or(reading, |end| reading.min(end));
                        start = target.max(civil.checked_add(ONE_SECOND).ok()?);
                        continue;
                    }
                    first_pass
                }
            };
            if instant > after {
                return Some(instant);
            }
            start = civil.checked_add(ONE_SECOND).ok()?;
        }
    }

    /// The latest fire time in `(floor, until]`, found by bisection over whole seconds on
    /// `next_after` (monotone), given one fire time `known` in that window. Logarithmic in
    /// the window, so a capped count never leaves the latest fire unknown.
    fn latest_in(&self, known: Timestamp, until: Timestamp, tz: &TimeZone) -> Option<Timestamp> {
        let fires_by_until = |second: i64| {
            Timestamp::from_second(second)
                .ok()
                .and_then(|t| self.next_after(t, tz))
                .is_some_and(|f| f <= until)
        };
        // Invariant: a fire lies in (lo, until]; none lies in (hi, until]. Fires are whole
        // seconds (tz offsets and transitions are), so `hi` may be `until` rounded down.
        let mut lo = floor_seconds(known) - 1;
        let mut hi = floor_seconds(until);
        while hi - lo > 1 {
            let mid = lo + (hi - lo) / 2;
            if fires_by_until(mid) {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        self.next_after(Timestamp::from_second(lo).ok()?, tz)
    }
}

/// A wall-clock time in a gap maps to the transition instant that opens the gap's far side.
fn gap_end(
    tz: &TimeZone,
    civil: DateTime,
    before: jiff::tz::Offset,
    after: jiff::tz::Offset,
) -> Option<Timestamp> {
    // Read with the post-gap offset, a gap time lands before the transition, so the next
    // transition from there is the one that opened the gap.
    let probe = after.to_timestamp(civil).ok()?;
    match tz.following(probe).next() {
        Some(transition) => Some(transition.timestamp()),
        None => before.to_timestamp(civil).ok(),
    }
}

fn floor_second(dt: DateTime) -> DateTime {
    dt.with().subsec_nanosecond(0).build().unwrap_or(dt)
}

fn floor_seconds(t: Timestamp) -> i64 {
    let s = t.as_second();
    if t.subsec_nanosecond() < 0 { s - 1 } else { s }
}

/// A deterministic offset in `[0, max)` (zero when `max` is zero), in whole seconds so it
/// survives the second precision of Kubernetes timestamps.
///
/// The value depends only on `key` and `max`: `FNV-1a` 64 over the UTF-8 bytes of `key`,
/// finished with the MurmurHash3 64-bit mixer (FNV alone clusters keys that differ only in a
/// last character), taken modulo the number of whole seconds that fit. This formula is part
/// of the contract — changing it moves every schedule in every fleet — and a golden test
/// pins it. Use a key that names the schedule, e.g. `namespace/name`.
#[must_use]
pub fn stable_jitter(key: &str, max: Duration) -> Duration {
    let slots = max.as_nanos().div_ceil(1_000_000_000);
    if slots == 0 {
        return Duration::ZERO;
    }
    let offset = u128::from(fmix64(fnv1a64(key.as_bytes()))) % slots;
    Duration::from_secs(u64::try_from(offset).unwrap_or(0))
}

fn fnv1a64(bytes: &[u8]) -> u64 {
    const OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    bytes.iter().fold(OFFSET_BASIS, |hash, &b| {
        (hash ^ u64::from(b)).wrapping_mul(PRIME)
    })
}

fn fmix64(mut k: u64) -> u64 {
    k ^= k >> 33;
    k = k.wrapping_mul(0xff51_afd7_ed55_8ccd);
    k ^= k >> 33;
    k = k.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    k ^ (k >> 33)
}

/// What a schedule should do now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    /// The scheduled time (without jitter) to create a child for now; at most one, ever.
    /// Record it as the schedule's `lastScheduleTime` once the child exists.
    pub run: Option<Timestamp>,
    /// The next fire instant after `now`, jitter included: requeue for it and show it as
    /// `nextScheduleTime`. `None` only if the schedule never fires again (year 9999).
    pub next: Option<Timestamp>,
    /// Fire times in the window that will not run, saturating at [`MISSED_COUNT_CAP`].
    pub missed: u32,
    /// The latest scheduled time (without jitter) that fell due in the window, run or not.
    /// When `run` is `None` because the deadline passed, record this as the point the
    /// schedule has considered (pass it as `last_scheduled` next time), or the same misses
    /// are counted again on every reconcile.
    pub latest_due: Option<Timestamp>,
}

/// Decides whether to run now, and when to look again.
///
/// Work in scheduled (unjittered) times `f`; each fires at instant `f + jitter`. The window
/// is every `f` that has fired by `now` (`f + jitter <= now`) and is newer than the last one
/// considered: `f > last_scheduled` when there is one, otherwise `f + jitter > created`
/// (a schedule created at 10:00:30 with 10 minutes of jitter still runs its 10:00 slot at
/// 10:10). Of the window only the latest `f` may run, and only if
/// `now - (f + jitter) <= starting_deadline` (no deadline: it always runs); every other `f`
/// counts as missed. Nothing in the window: `run` is `None`, `missed` is 0.
///
/// Inputs out of order (a clock that went back, `created` in the future) yield no run and
/// a `next` after both `now` and the last considered time, never a repeat.
#[must_use]
pub fn decide(
    schedule: &CronSchedule,
    tz: &TimeZone,
    jitter: Duration,
    last_scheduled: Option<Timestamp>,
    created: Timestamp,
    now: Timestamp,
    starting_deadline: Option<Duration>,
) -> Decision {
    let jitter = SignedDuration::try_from(jitter).unwrap_or(SignedDuration::MAX);
    let until = now.checked_sub(jitter).unwrap_or(Timestamp::MIN);
    let floor =
        last_scheduled.unwrap_or_else(|| created.checked_sub(jitter).unwrap_or(Timestamp::MIN));

    let next = schedule
        .next_after(floor.max(until), tz)
        .and_then(|f| f.checked_add(jitter).ok());

    let mut due = 0u32;
    let mut latest = None;
    let mut cursor = floor;
    while due <= MISSED_COUNT_CAP {
        match schedule.next_after(cursor, tz) {
            Some(f) if f <= until => {
                due += 1;
                latest = Some(f);
                cursor = f;
            }
            _ => break,
        }
    }
    if due > MISSED_COUNT_CAP {
        latest = latest.and_then(|known| schedule.latest_in(known, until, tz));
    }

    let in_time = |f: Timestamp| match (starting_deadline, f.checked_add(jitter)) {
        (None, _) => true,
        (Some(deadline), Ok(fired)) => SignedDuration::try_from(deadline)
            .map_or(true, |deadline| now.duration_since(fired) <= deadline),
        (Some(_), Err(_)) => false,
    };
    let run = latest.filter(|&f| in_time(f));
    let missed = due.saturating_sub(u32::from(run.is_some()));
    Decision {
        run,
        next,
        missed: missed.min(MISSED_COUNT_CAP),
        latest_due: latest,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn cron(expr: &str) -> CronSchedule {
        CronSchedule::parse(expr).unwrap()
    }

    fn tz(name: &str) -> TimeZone {
        time_zone(name).unwrap()
    }

    /// The first `n` fire times after `start`.
    fn fires(expr: &str, zone: &str, start: &str, n: usize) -> Vec<Timestamp> {
        let (c, z) = (cron(expr), tz(zone));
        let mut out = Vec::new();
        let mut t = ts(start);
        for _ in 0..n {
            t = c.next_after(t, &z).unwrap();
            out.push(t);
        }
        out
    }

    fn all(list: &[&str]) -> Vec<Timestamp> {
        list.iter().map(|s| ts(s)).collect()
    }

    #[test]
    fn the_bundled_tz_database_is_compiled_in() {
        // Only non-empty when the `tzdb-bundle-always` feature is on; images without
        // /usr/share/zoneinfo depend on it.
        let db = jiff::tz::TimeZoneDatabase::bundled();
        assert!(db.get("Europe/Berlin").is_ok());
        assert!(db.get("America/New_York").is_ok());
    }

    #[test]
    fn unknown_time_zones_are_named() {
        assert_eq!(
            time_zone("Mars/Olympus_Mons").unwrap_err().to_string(),
            "unknown time zone \"Mars/Olympus_Mons\"; use an IANA time zone name such as \
             \"UTC\", \"Europe/Berlin\" or \"America/New_York\""
        );
        assert!(time_zone("").is_err());
        assert!(time_zone("europe/berlin").is_ok(), "lookup ignores case");
        assert!(time_zone("UTC").is_ok());
    }

    #[test]
    fn next_after_is_strictly_after() {
        let c = cron("*/5 * * * *");
        let z = tz("UTC");
        let cases = [
            ("2024-05-01T10:00:00Z", "2024-05-01T10:05:00Z"),
            ("2024-05-01T09:59:59.999Z", "2024-05-01T10:00:00Z"),
            ("2024-05-01T10:00:00.001Z", "2024-05-01T10:05:00Z"),
            ("2024-05-01T23:57:00Z", "2024-05-02T00:00:00Z"),
            ("2024-12-31T23:55:00Z", "2025-01-01T00:00:00Z"),
        ];
        for (after, want) in cases {
            assert_eq!(c.next_after(ts(after), &z), Some(ts(want)), "after {after}");
        }
    }

    #[test]
    fn seconds_field_fires_every_few_seconds() {
        assert_eq!(
            fires("*/20 * * * * *", "UTC", "2024-05-01T10:00:05Z", 4),
            all(&[
                "2024-05-01T10:00:20Z",
                "2024-05-01T10:00:40Z",
                "2024-05-01T10:01:00Z",
                "2024-05-01T10:01:20Z",
            ])
        );
    }

    #[test]
    fn wall_clock_is_the_zones() {
        // 02:00 in Berlin is 00:00Z in summer, 01:00Z in winter.
        assert_eq!(
            fires("0 2 * * *", "Europe/Berlin", "2024-07-01T12:00:00Z", 1),
            all(&["2024-07-02T00:00:00Z"])
        );
        assert_eq!(
            fires("0 2 * * *", "Europe/Berlin", "2024-12-01T12:00:00Z", 1),
            all(&["2024-12-02T01:00:00Z"])
        );
        assert_eq!(
            fires(
                "0 9 * * MON-FRI",
                "America/New_York",
                "2024-07-05T14:00:00Z",
                2
            ),
            all(&["2024-07-08T13:00:00Z", "2024-07-09T13:00:00Z"]),
            "Friday 10:00 EDT → Monday and Tuesday 09:00 EDT"
        );
    }

    #[test]
    fn sparse_schedules_are_cheap_and_exact() {
        assert_eq!(
            fires("@yearly", "Europe/Berlin", "2024-06-01T00:00:00Z", 3),
            all(&[
                "2024-12-31T23:00:00Z",
                "2025-12-31T23:00:00Z",
                "2026-12-31T23:00:00Z"
            ])
        );
        assert_eq!(
            fires("0 12 29 FEB *", "UTC", "2024-03-01T00:00:00Z", 2),
            all(&["2028-02-29T12:00:00Z", "2032-02-29T12:00:00Z"])
        );
        let c = cron("0 12 29 FEB *");
        let z = tz("UTC");
        let mut t = ts("2000-01-01T00:00:00Z");
        for _ in 0..500 {
            t = c.next_after(t, &z).unwrap();
        }
        assert!(t > ts("3990-01-01T00:00:00Z"), "500 leap days walked: {t}");
    }

    #[test]
    fn next_after_ends_at_the_end_of_time() {
        let c = cron("@yearly");
        assert_eq!(c.next_after(ts("9999-06-01T00:00:00Z"), &tz("UTC")), None);
    }

    // Europe/Berlin: 2024-03-31 02:00 CET → 03:00 CEST at 01:00Z;
    //                2024-10-27 03:00 CEST → 02:00 CET at 01:00Z.
    // America/New_York: 2024-03-10 02:00 EST → 03:00 EDT at 07:00Z;
    //                   2024-11-03 02:00 EDT → 01:00 EST at 06:00Z.

    #[test]
    fn spring_forward_gap_fires_once_right_after_the_jump() {
        let cases: &[(&str, &str, &str, &[&str])] = &[
            (
                "30 2 * * *",
                "Europe/Berlin",
                "2024-03-30T12:00:00Z",
                &["2024-03-31T01:00:00Z", "2024-04-01T00:30:00Z"],
            ),
            (
                "*/15 2 * * *",
                "Europe/Berlin",
                "2024-03-30T23:00:00Z",
                &["2024-03-31T01:00:00Z", "2024-04-01T00:00:00Z"],
            ),
            (
                "0 * * * *",
                "Europe/Berlin",
                "2024-03-30T23:30:00Z",
                &[
                    "2024-03-31T00:00:00Z",
                    "2024-03-31T01:00:00Z",
                    "2024-03-31T02:00:00Z",
                ],
            ),
            (
                "0 2,3 * * *",
                "Europe/Berlin",
                "2024-03-30T23:30:00Z",
                &["2024-03-31T01:00:00Z", "2024-04-01T00:00:00Z"],
            ),
            (
                "30 2 * * *",
                "America/New_York",
                "2024-03-09T12:00:00Z",
                &[
                    "2024-03-10T07:00:00Z",
                    "2024-03-11T06:30:00Z",
                    "2024-03-12T06:30:00Z",
                ],
            ),
        ];
        for (expr, zone, start, want) in cases {
            assert_eq!(
                fires(expr, zone, start, want.len()),
                all(want),
                "{expr} in {zone}"
            );
        }
    }

    #[test]
    fn fall_back_fold_fires_once_at_the_first_pass() {
        let cases: &[(&str, &str, &str, &[&str])] = &[
            (
                "30 2 * * *",
                "Europe/Berlin",
                "2024-10-26T12:00:00Z",
                &["2024-10-27T00:30:00Z", "2024-10-28T01:30:00Z"],
            ),
            (
                // Nothing in the second pass (01:00Z-02:00Z); 03:00 CET is 02:00Z.
                "*/30 * * * *",
                "Europe/Berlin",
                "2024-10-26T23:50:00Z",
                &[
                    "2024-10-27T00:00:00Z",
                    "2024-10-27T00:30:00Z",
                    "2024-10-27T02:00:00Z",
                ],
            ),
            (
                "30 1 * * *",
                "America/New_York",
                "2024-11-02T12:00:00Z",
                &["2024-11-03T05:30:00Z", "2024-11-04T06:30:00Z"],
            ),
        ];
        for (expr, zone, start, want) in cases {
            assert_eq!(
                fires(expr, zone, start, want.len()),
                all(want),
                "{expr} in {zone}"
            );
        }
    }

    #[test]
    fn starting_inside_the_second_pass_of_a_fold() {
        let z = tz("Europe/Berlin");
        // 01:10Z is 02:10 CET, the second pass through 02:xx.
        let after = ts("2024-10-27T01:10:00Z");
        let cases = [
            ("30 2 * * *", "2024-10-28T01:30:00Z"),
            ("0 3 * * *", "2024-10-27T02:00:00Z"),
            ("15 2,3 * * *", "2024-10-27T02:15:00Z"),
            ("* * * * * *", "2024-10-27T02:00:00Z"),
        ];
        for (expr, want) in cases {
            assert_eq!(cron(expr).next_after(after, &z), Some(ts(want)), "{expr}");
        }
    }

    #[test]
    fn jitter_is_pinned_bounded_and_whole_seconds() {
        // Golden values: these must never change, or every fleet's schedules move.
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a64(b"foobar"), 0x8594_4171_f739_67e8);
        // Computed independently of this code (a few lines of Python over the same formula).
        let golden = [
            ("default/nightly", 3600, 3213),
            ("prod/db-1", 3600, 1298),
            ("ns/server-7", 3600, 2244),
            ("default/nightly", 600, 213),
            ("prod/db-1", 600, 98),
            ("ns/server-7", 600, 444),
        ];
        for (key, max, want) in golden {
            let got = stable_jitter(key, Duration::from_secs(max));
            assert_eq!(got, Duration::from_secs(want), "{key} within {max}s");
        }
        assert_eq!(
            stable_jitter("prod/db-1", Duration::from_millis(600_500)),
            Duration::from_secs(fmix64(fnv1a64(b"prod/db-1")) % 601),
            "a fractional max rounds the slot count up; the offset stays below max"
        );
        assert_eq!(stable_jitter("x", Duration::ZERO), Duration::ZERO);
        assert_eq!(
            stable_jitter("x", Duration::from_millis(999)),
            Duration::ZERO
        );
        assert!(stable_jitter("x", Duration::from_millis(1500)) <= Duration::from_secs(1));
    }

    #[test]
    fn jitter_spreads_similar_keys() {
        let max = Duration::from_secs(600);
        let distinct: std::collections::BTreeSet<u64> = (0..100)
            .map(|i| stable_jitter(&format!("ns/server-{i}"), max).as_secs())
            .collect();
        assert!(
            distinct.len() > 80,
            "only {} distinct offsets",
            distinct.len()
        );
    }

    const MINUTE: Duration = Duration::from_secs(60);

    fn decision(
        expr: &str,
        jitter: Duration,
        last: Option<&str>,
        created: &str,
        now: &str,
        deadline: Option<Duration>,
    ) -> Decision {
        decide(
            &cron(expr),
            &tz("UTC"),
            jitter,
            last.map(ts),
            ts(created),
            ts(now),
            deadline,
        )
    }

    #[test]
    fn decide_table() {
        struct Case {
            name: &'static str,
            expr: &'static str,
            jitter: Duration,
            last: Option<&'static str>,
            created: &'static str,
            now: &'static str,
            deadline: Option<Duration>,
            run: Option<&'static str>,
            next: &'static str,
            missed: u32,
        }
        let cases = [
            Case {
                name: "nothing due yet",
                expr: "0 * * * *",
                jitter: Duration::ZERO,
                last: None,
                created: "2024-05-01T10:00:30Z",
                now: "2024-05-01T10:30:00Z",
                deadline: None,
                run: None,
                next: "2024-05-01T11:00:00Z",
                missed: 0,
            },
            Case {
                name: "exactly on time",
                expr: "0 * * * *",
                jitter: Duration::ZERO,
                last: None,
                created: "2024-05-01T10:00:30Z",
                now: "2024-05-01T11:00:00Z",
                deadline: Some(MINUTE),
                run: Some("2024-05-01T11:00:00Z"),
                next: "2024-05-01T12:00:00Z",
                missed: 0,
            },
            Case {
                name: "already ran this slot",
                expr: "0 * * * *",
                jitter: Duration::ZERO,
                last: Some("2024-05-01T11:00:00Z"),
                created: "2024-05-01T10:00:30Z",
                now: "2024-05-01T11:00:05Z",
                deadline: None,
                run: None,
                next: "2024-05-01T12:00:00Z",
                missed: 0,
            },
            Case {
                name: "downtime: one catch-up, the rest missed",
                expr: "0 * * * *",
                jitter: Duration::ZERO,
                last: Some("2024-05-01T11:00:00Z"),
                created: "2024-05-01T10:00:30Z",
                now: "2024-05-01T15:20:00Z",
                deadline: None,
                run: Some("2024-05-01T15:00:00Z"),
                next: "2024-05-01T16:00:00Z",
                missed: 3,
            },
            Case {
                name: "downtime past the deadline: nothing runs",
                expr: "0 * * * *",
                jitter: Duration::ZERO,
                last: Some("2024-05-01T11:00:00Z"),
                created: "2024-05-01T10:00:30Z",
                now: "2024-05-01T15:20:00Z",
                deadline: Some(Duration::from_secs(15 * 60)),
                run: None,
                next: "2024-05-01T16:00:00Z",
                missed: 4,
            },
            Case {
                name: "deadline is inclusive",
                expr: "0 * * * *",
                jitter: Duration::ZERO,
                last: Some("2024-05-01T11:00:00Z"),
                created: "2024-05-01T10:00:30Z",
                now: "2024-05-01T12:15:00Z",
                deadline: Some(Duration::from_secs(15 * 60)),
                run: Some("2024-05-01T12:00:00Z"),
                next: "2024-05-01T13:00:00Z",
                missed: 0,
            },
            Case {
                name: "jitter delays the fire",
                expr: "0 * * * *",
                jitter: Duration::from_secs(600),
                last: Some("2024-05-01T11:00:00Z"),
                created: "2024-05-01T10:00:30Z",
                now: "2024-05-01T12:05:00Z",
                deadline: None,
                run: None,
                next: "2024-05-01T12:10:00Z",
                missed: 0,
            },
            Case {
                name: "jittered fire reports the unjittered slot",
                expr: "0 * * * *",
                jitter: Duration::from_secs(600),
                last: Some("2024-05-01T11:00:00Z"),
                created: "2024-05-01T10:00:30Z",
                now: "2024-05-01T12:10:00Z",
                deadline: Some(Duration::ZERO),
                run: Some("2024-05-01T12:00:00Z"),
                next: "2024-05-01T13:10:00Z",
                missed: 0,
            },
            Case {
                name: "jitter lets a slot just before creation still run",
                expr: "0 * * * *",
                jitter: Duration::from_secs(600),
                last: None,
                created: "2024-05-01T10:00:30Z",
                now: "2024-05-01T10:10:00Z",
                deadline: None,
                run: Some("2024-05-01T10:00:00Z"),
                next: "2024-05-01T11:10:00Z",
                missed: 0,
            },
            Case {
                name: "a fire at the creation instant is not new",
                expr: "0 * * * *",
                jitter: Duration::ZERO,
                last: None,
                created: "2024-05-01T10:00:00Z",
                now: "2024-05-01T10:30:00Z",
                deadline: None,
                run: None,
                next: "2024-05-01T11:00:00Z",
                missed: 0,
            },
            Case {
                name: "clock went back: no repeat",
                expr: "0 * * * *",
                jitter: Duration::ZERO,
                last: Some("2024-05-01T12:00:00Z"),
                created: "2024-05-01T10:00:30Z",
                now: "2024-05-01T11:30:00Z",
                deadline: None,
                run: None,
                next: "2024-05-01T13:00:00Z",
                missed: 0,
            },
            Case {
                name: "created in the future",
                expr: "0 * * * *",
                jitter: Duration::ZERO,
                last: None,
                created: "2024-05-01T12:30:00Z",
                now: "2024-05-01T11:30:00Z",
                deadline: None,
                run: None,
                next: "2024-05-01T13:00:00Z",
                missed: 0,
            },
            Case {
                name: "a month of per-second fires: capped count, exact latest",
                expr: "* * * * * *",
                jitter: Duration::ZERO,
                last: Some("2024-05-01T00:00:00Z"),
                created: "2024-04-01T00:00:00Z",
                now: "2024-06-01T00:00:00.5Z",
                deadline: None,
                run: Some("2024-06-01T00:00:00Z"),
                next: "2024-06-01T00:00:01Z",
                missed: MISSED_COUNT_CAP,
            },
            Case {
                name: "capped and too late",
                expr: "*/10 * * * * *",
                jitter: Duration::from_secs(3),
                last: Some("2024-05-01T00:00:00Z"),
                created: "2024-04-01T00:00:00Z",
                now: "2024-06-01T00:00:09Z",
                deadline: Some(Duration::from_secs(5)),
                run: None,
                next: "2024-06-01T00:00:13Z",
                missed: MISSED_COUNT_CAP,
            },
        ];
        for c in cases {
            let d = decision(c.expr, c.jitter, c.last, c.created, c.now, c.deadline);
            assert_eq!(d.run, c.run.map(ts), "{}: run", c.name);
            assert_eq!(d.next, Some(ts(c.next)), "{}: next", c.name);
            assert_eq!(d.missed, c.missed, "{}: missed", c.name);
            if d.run.is_some() {
                assert_eq!(d.latest_due, d.run, "{}: latest_due", c.name);
            }
        }
    }

    #[test]
    fn latest_due_lets_the_caller_stop_recounting_misses() {
        let d = decision(
            "0 * * * *",
            Duration::ZERO,
            Some("2024-05-01T11:00:00Z"),
            "2024-05-01T10:00:30Z",
            "2024-05-01T15:20:00Z",
            Some(MINUTE),
        );
        assert_eq!((d.run, d.missed), (None, 4));
        assert_eq!(d.latest_due, Some(ts("2024-05-01T15:00:00Z")));
        let again = decide(
            &cron("0 * * * *"),
            &tz("UTC"),
            Duration::ZERO,
            d.latest_due,
            ts("2024-05-01T10:00:30Z"),
            ts("2024-05-01T15:21:00Z"),
            Some(MINUTE),
        );
        assert_eq!((again.run, again.missed, again.latest_due), (None, 0, None));
    }

    #[test]
    fn decide_across_a_dst_gap_in_berlin() {
        // Down from 00:30Z to 03:30Z on 2024-03-31: hourly fires 01:00Z (gap → 03:00 CEST),
        // 02:00Z, 03:00Z. The 02:00 local slot does not exist and is no extra fire.
        let d = decide(
            &cron("0 * * * *"),
            &tz("Europe/Berlin"),
            Duration::ZERO,
            Some(ts("2024-03-31T00:00:00Z")),
            ts("2024-03-01T00:00:00Z"),
            ts("2024-03-31T03:30:00Z"),
            None,
        );
        assert_eq!(d.run, Some(ts("2024-03-31T03:00:00Z")));
        assert_eq!(d.missed, 2);
        assert_eq!(d.next, Some(ts("2024-03-31T04:00:00Z")));
    }

    // ---- property tests -------------------------------------------------------------

    /// One field as text plus the set it must denote, computed independently of the parser.
    fn field(min: u32, max: u32) -> impl Strategy<Value = (String, Vec<u32>)> {
        let span = max - min;
        prop_oneof![
            2 => Just(("*".to_owned(), (min..=max).collect())),
            2 => (1..=span.max(1)).prop_map(move |step| (
                format!("*/{step}"),
                (min..=max).step_by(step as usize).collect()
            )),
            2 => (min..=max, 0..=span, 1..=4u32).prop_map(move |(lo, len, step)| {
                let hi = (lo + len).min(max);
                (format!("{lo}-{hi}/{step}"), (lo..=hi).step_by(step as usize).collect())
            }),
            2 => proptest::collection::btree_set(min..=max, 1..4).prop_map(|set| (
                set.iter().map(u32::to_string).collect::<Vec<_>>().join(","),
                set.into_iter().collect()
            )),
        ]
    }

    #[derive(Debug, Clone)]
    struct Reference {
        expr: String,
        sets: [Vec<u32>; 6],
        dom_star: bool,
        dow_star: bool,
    }

    impl Reference {
        fn matches(&self, dt: DateTime) -> bool {
            let has = |i: usize, v: i8| self.sets[i].contains(&u32::try_from(v).unwrap());
            let dom = has(3, dt.day());
            let weekday = dt.weekday().to_sunday_zero_offset();
            let dow = has(5, weekday) || (weekday == 0 && self.sets[5].contains(&7));
            let day = if self.dom_star || self.dow_star {
                dom && dow
            } else {
                dom || dow
            };
            has(0, dt.second())
                && has(1, dt.minute())
                && has(2, dt.hour())
                && has(4, dt.month())
                && day
        }
    }

    /// Expressions dense enough that brute force over a short window says something.
    fn expression(with_seconds: bool) -> impl Strategy<Value = Reference> {
        let seconds = if with_seconds {
            field(0, 59).boxed()
        } else {
            Just(("0".to_owned(), vec![0])).boxed()
        };
        let dense_day = prop_oneof![
            3 => Just(("*".to_owned(), (1..=31).collect::<Vec<u32>>())),
            1 => field(1, 31),
        ];
        let dense_month = prop_oneof![
            3 => Just(("*".to_owned(), (1..=12).collect::<Vec<u32>>())),
            1 => field(1, 12),
        ];
        (
            seconds,
            field(0, 59),
            field(0, 23),
            dense_day,
            dense_month,
            field(0, 7),
        )
            .prop_filter_map("never fires", move |(s, mi, h, dom, mo, dow)| {
                let expr = if with_seconds {
                    format!("{} {} {} {} {} {}", s.0, mi.0, h.0, dom.0, mo.0, dow.0)
                } else {
                    format!("{} {} {} {} {}", mi.0, h.0, dom.0, mo.0, dow.0)
                };
                CronSchedule::parse(&expr).ok()?;
                Some(Reference {
                    dom_star: dom.0.starts_with('*'),
                    dow_star: dow.0.starts_with('*'),
                    expr,
                    sets: [s.1, mi.1, h.1, dom.1, mo.1, dow.1],
                })
            })
    }

    fn utc_instant() -> impl Strategy<Value = Timestamp> {
        // 2020-01-01 .. 2030-01-01, with sub-second noise.
        (1_577_836_800i64..1_893_456_000, 0..1_000_000_000i32)
            .prop_map(|(s, ns)| Timestamp::new(s, ns).unwrap())
    }

    proptest! {
        #[test]
        fn next_after_is_the_first_match_in_utc(r in expression(false), t in utc_instant()) {
            let c = cron(&r.expr);
            let got = c.next_after(t, &TimeZone::UTC).unwrap();
            prop_assert!(got > t);
            prop_assert!(r.matches(got.to_zoned(TimeZone::UTC).datetime()), "{} at {got}", r.expr);
            // Brute force every minute up to two days (or up to `got`).
            let window_end = got.min(t.checked_add(SignedDuration::from_hours(48)).unwrap());
            let mut m = Timestamp::from_second(floor_seconds(t) - floor_seconds(t).rem_euclid(60) + 60).unwrap();
            while m < window_end {
                prop_assert!(!r.matches(m.to_zoned(TimeZone::UTC).datetime()),
                    "{} matches {m}, before {got}", r.expr);
                m = m.checked_add(SignedDuration::from_mins(1)).unwrap();
            }
        }

        #[test]
        fn next_after_with_seconds_is_the_first_match(r in expression(true), t in utc_instant()) {
            let c = cron(&r.expr);
            let got = c.next_after(t, &TimeZone::UTC).unwrap();
            prop_assert!(got > t);
            prop_assert!(r.matches(got.to_zoned(TimeZone::UTC).datetime()));
            let window_end = got.min(t.checked_add(SignedDuration::from_hours(3)).unwrap());
            let mut s = Timestamp::from_second(floor_seconds(t) + 1).unwrap();
            while s < window_end {
                prop_assert!(!r.matches(s.to_zoned(TimeZone::UTC).datetime()));
                s = s.checked_add(ONE_SECOND).unwrap();
            }
        }

        #[test]
        fn next_after_is_monotone(r in expression(true), a in utc_instant(), gap in 0i64..200_000) {
            let c = cron(&r.expr);
            let z = tz("Europe/Berlin");
            let b = a.checked_add(SignedDuration::from_secs(gap)).unwrap();
            let (na, nb) = (c.next_after(a, &z).unwrap(), c.next_after(b, &z).unwrap());
            prop_assert!(na <= nb);
            prop_assert!(c.next_after(na, &z).unwrap() > na);
        }

        #[test]
        fn dst_semantics_match_a_brute_force_reference(
            r in expression(false),
            zone in prop_oneof![
                Just("Europe/Berlin"),
                Just("America/New_York"),
                Just("Australia/Lord_Howe"),
            ],
            year in 2024i16..2027,
            spring in any::<bool>(),
            offset_min in -1500i64..1500,
        ) {
            let z = tz(zone);
            let c = cron(&r.expr);
            // A transition of that year, then a start near it.
            let from = jiff::civil::date(year, if spring { 1 } else { 7 }, 1)
                .at(0, 0, 0, 0).to_zoned(z.clone()).unwrap().timestamp();
            let transition = z.following(from).next().unwrap().timestamp();
            let t = transition.checked_add(SignedDuration::from_mins(offset_min)).unwrap();
            let got = c.next_after(t, &z).unwrap();
            // Reference: walk real minutes; an instant fires when its reading matches and it
            // is that reading's first occurrence, or when it ends a gap containing a match.
            let mut m = Timestamp::from_second(floor_seconds(t) - floor_seconds(t).rem_euclid(60) + 60).unwrap();
            let end = t.checked_add(SignedDuration::from_hours(48)).unwrap();
            let mut expected = None;
            while m <= end {
                let reading = z.to_datetime(m);
                let first_occurrence = match z.to_ambiguous_timestamp(reading).offset() {
                    AmbiguousOffset::Fold { before, .. } => before.to_timestamp(reading).unwrap() == m,
                    _ => true,
                };
                let previous = z.to_datetime(m.checked_sub(SignedDuration::from_mins(1)).unwrap());
                let mut skipped = previous.checked_add(SignedDuration::from_mins(1)).unwrap();
                let mut gap_match = false;
                while skipped < reading {
                    gap_match |= r.matches(skipped);
                    skipped = skipped.checked_add(SignedDuration::from_mins(1)).unwrap();
                }
                if (first_occurrence && r.matches(reading)) || gap_match {
                    expected = Some(m);
                    break;
                }
                m = m.checked_add(SignedDuration::from_mins(1)).unwrap();
            }
            match expected {
                Some(e) => prop_assert_eq!(got, e, "{} in {} after {}", r.expr, zone, t),
                None => prop_assert!(got > end),
            }
        }

        #[test]
        fn jitter_is_stable_and_below_max(key in ".{0,40}", max_ms in 0u64..10_000_000) {
            let max = Duration::from_millis(max_ms);
            let j = stable_jitter(&key, max);
            prop_assert_eq!(j, stable_jitter(&key, max));
            prop_assert_eq!(j.subsec_nanos(), 0);
            if max.is_zero() {
                prop_assert_eq!(j, Duration::ZERO);
            } else {
                prop_assert!(j < max);
            }
        }

        #[test]
        fn decide_runs_at_most_the_latest_due_within_the_deadline(
            r in expression(true),
            jitter_s in 0u64..120,
            created in utc_instant(),
            last_after_created in proptest::option::of(0i64..7200),
            down_s in 0i64..200_000,
            deadline_s in proptest::option::of(0u64..3600),
        ) {
            let c = cron(&r.expr);
            let z = TimeZone::UTC;
            let jitter = Duration::from_secs(jitter_s);
            let j = SignedDuration::from_secs(i64::try_from(jitter_s).unwrap());
            let last = last_after_created
                .map(|s| c.next_after(created.checked_add(SignedDuration::from_secs(s)).unwrap(), &z).unwrap());
            let now = last.unwrap_or(created).checked_add(SignedDuration::from_secs(down_s)).unwrap();
            let deadline = deadline_s.map(Duration::from_secs);
            let d = decide(&c, &z, jitter, last, created, now, deadline);

            let next = d.next.unwrap();
            prop_assert!(next > now);
            prop_assert!(d.missed <= MISSED_COUNT_CAP);
            if let Some(run) = d.run {
                prop_assert_eq!(d.latest_due, Some(run));
                prop_assert!(c.next_after(run.checked_sub(ONE_SECOND).unwrap(), &z) == Some(run), "run is a fire time");
                let fired = run.checked_add(j).unwrap();
                prop_assert!(fired <= now);
                prop_assert!(next > fired);
                match last {
                    Some(l) => prop_assert!(run > l),
                    None => prop_assert!(fired > created),
                }
                if let Some(limit) = deadline {
                    prop_assert!(now.duration_since(fired) <= SignedDuration::try_from(limit).unwrap());
                }
                // Nothing later is due: `run` is the latest.
                prop_assert!(c.next_after(run, &z).unwrap().checked_add(j).unwrap() > now);
            }
            // Recording the decision leaves nothing to run at the same instant: no burst.
            let recorded = d.latest_due.or(last);
            let again = decide(&c, &z, jitter, recorded, created, now, deadline);
            prop_assert_eq!(again.run, None);
            prop_assert_eq!(again.missed, 0);
            prop_assert_eq!(again.next, d.next);
        }
    }
}
