//! Which of a schedule's children to keep, and which may go. Pure: the caller passes the
//! children, the policy, `now` and the schedule's time zone.
//!
//! # Semantics
//! Rules form a union (as in K8up and restic): a child is kept when **any** rule keeps it,
//! and [`RetentionPlan::keep`] says which rules did.
//! - Only `Ready` children are restore points. The rules look at nothing else:
//!   - `keep-last` N: the N newest Ready children.
//!   - `max-age` D: Ready children strictly younger than D (`now - created_at < D`; a child
//!     from the future counts as young).
//!   - `hourly` / `daily` / `weekly` / `monthly` / `yearly` N: walking Ready children newest
//!     first, the
//!     newest child of each of the N most recent periods that contain a Ready child
//!     (restic semantics: empty periods do not use up a slot). Periods are calendar periods
//!     in the schedule's zone: local days, months and years, ISO 8601 weeks (Monday first, so the
//!     last days of December can belong to week 1 of the next year and early January to
//!     week 52 or 53 of the previous one), and local hours — an hour that the clock repeats
//!     when falling back is two periods, because it is two real hours.
//!   - `N = 0` keeps nothing through that rule, but still makes the policy non-empty.
//! - Always kept, whatever the policy: `pinned` children (any state); `in-progress`
//!   children (they may become the next restore point and are never counted by a rule);
//!   the `newest-ready` child (the last good restore point is never pruned).
//! - `Failed` children are pruned unless pinned: they are no restore points.
//! - An empty policy (every field `None`) means "no retention configured": everything is
//!   kept, Failed children included (reason `no-policy`), so adding a schedule never deletes
//!   anything by surprise. [`evict_for_room`] still lets Failed children go when room is
//!   needed.
//! - Pinned Ready children take part in the rules like any other Ready child (a pinned
//!   child among the 3 newest is one of `keep-last: 3`).
//!
//! Order is total and deterministic: by `created_at`, then by `key` (on a tie the greater key
//! counts as newer). Output lists are oldest first whatever the input order. Keys are
//! expected to be unique.
use std::collections::HashSet;
use std::time::Duration;

use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};

pub const KEEP_LAST: &str = "keep-last";
pub const MAX_AGE: &str = "max-age";
pub const HOURLY: &str = "hourly";
pub const DAILY: &str = "daily";
pub const WEEKLY: &str = "weekly";
pub const MONTHLY: &str = "monthly";
pub const YEARLY: &str = "yearly";
pub const PINNED: &str = "pinned";
pub const NEWEST_READY: &str = "newest-ready";
pub const IN_PROGRESS: &str = "in-progress";
pub const NO_POLICY: &str = "no-policy";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ItemState {
    Ready,
    InProgress,
    Failed,
}

/// One child of a schedule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    pub key: String,
    pub created_at: Timestamp,
    pub state: ItemState,
    pub pinned: bool,
}

/// All rules are optional; see the module documentation for how they combine.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RetentionPolicy {
    pub keep_last: Option<u32>,
    pub max_age: Option<Duration>,
    pub hourly: Option<u32>,
    pub daily: Option<u32>,
    pub weekly: Option<u32>,
    pub monthly: Option<u32>,
    pub yearly: Option<u32>,
}

impl RetentionPolicy {
    /// No rule configured: keep everything.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        *self == RetentionPolicy::default()
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RetentionPlan {
    /// Kept children, oldest first, each with every reason that keeps it, in the order
    /// pinned, in-progress, newest-ready, keep-last, max-age, hourly, daily, weekly, monthly,
    /// yearly, no-policy.
    pub keep: Vec<(String, Vec<&'static str>)>,
    /// Children past retention, oldest first.
    pub prune: Vec<String>,
}

/// Applies `policy` to a schedule's children; every input key lands in exactly one list.
#[must_use]
pub fn plan(
    items: &[Item],
    policy: &RetentionPolicy,
    now: Timestamp,
    tz: &TimeZone,
) -> RetentionPlan {
    let (order, reasons) = reasons(items, policy, now, tz);
    let mut out = RetentionPlan::default();
    for (item, why) in order.into_iter().zip(reasons) {
        if why.is_empty() {
            out.prune.push(item.key.clone());
        } else {
            out.keep.push((item.key.clone(), why));
        }
    }
    out
}

/// Which children may be deleted, oldest first, to free `needed` slots when the server is
/// at its limit and a new child is due.
///
/// Candidates are what [`plan`] prunes plus Failed unpinned children (which `plan` keeps
/// only under an empty policy): a failed child is no restore point and must not block a new
/// one. Nothing retention keeps for a restore-point reason is offered — not the newest
/// Ready, not a pinned or in-progress child, not a child a rule keeps. The result may hold
/// fewer than `needed` keys; the caller then reports `LimitReached` instead of deleting
/// more.
#[must_use]
pub fn evict_for_room(
    items: &[Item],
    policy: &RetentionPolicy,
    now: Timestamp,
    tz: &TimeZone,
    needed: usize,
) -> Vec<String> {
    let (order, reasons) = reasons(items, policy, now, tz);
    order
        .into_iter()
        .zip(reasons)
        .filter(|(item, why)| {
            why.is_empty() || (item.state == ItemState::Failed && why.as_slice() == [NO_POLICY])
        })
        .map(|(item, _)| item.key.clone())
        .take(needed)
        .collect()
}

/// What one more Ready child at `at` would push out: the children `plan` keeps now (at `at`)
/// and prunes once that child exists, oldest first. This is what "goes next" on the next run.
/// Children retention already prunes are not listed (they go now), nor anything pinned or in
/// progress.
#[must_use]
pub fn next_to_go(
    items: &[Item],
    policy: &RetentionPolicy,
    at: Timestamp,
    tz: &TimeZone,
) -> Vec<String> {
    // A key no child has: the largest string sorts last among equal times.
    let probe = format!(
        "{}\u{10FFFF}",
        items.iter().map(|i| i.key.as_str()).max().unwrap_or("")
    );
    let now = plan(items, policy, at, tz);
    let mut with_next = items.to_vec();
    with_next.push(Item {
        key: probe.clone(),
        created_at: at,
        state: ItemState::Ready,
        pinned: false,
    });
    plan(&with_next, policy, at, tz)
        .prune
        .into_iter()
        .filter(|k| *k != probe && now.keep.iter().any(|(kept, _)| kept == k))
        .collect()
}

#[derive(Clone, Copy)]
enum Period {
    Hourly,
    Daily,
    Weekly,
    Monthly,
    Yearly,
}

/// Identifies the calendar period containing `t` in `tz`; equal keys, same period.
fn period_key(period: Period, t: Timestamp, tz: &TimeZone) -> [i32; 5] {
    let dt = tz.to_datetime(t);
    let (y, m, d) = (
        i32::from(dt.year()),
        i32::from(dt.month()),
        i32::from(dt.day()),
    );
    match period {
        // The offset tells the two passes through a repeated hour apart.
        Period::Hourly => [y, m, d, i32::from(dt.hour()), tz.to_offset(t).seconds()],
        Period::Daily => [y, m, d, 0, 0],
        Period::Weekly => {
            let week = dt.date().iso_week_date();
            [i32::from(week.year()), i32::from(week.week()), 0, 0, 0]
        }
        Period::Monthly => [y, m, 0, 0, 0],
        // Calendar years in the zone (not ISO week-years): restic and borg keep the newest
        // snapshot of each local calendar year.
        Period::Yearly => [y, 0, 0, 0, 0],
    }
}

/// Items oldest first, each with the reasons that keep it (empty: prune).
fn reasons<'a>(
    items: &'a [Item],
    policy: &RetentionPolicy,
    now: Timestamp,
    tz: &TimeZone,
) -> (Vec<&'a Item>, Vec<Vec<&'static str>>) {
    let mut order: Vec<&Item> = items.iter().collect();
    order.sort_by(|a, b| {
        a.created_at
            .cmp(&b.created_at)
            .then_with(|| a.key.cmp(&b.key))
    });
    let mut why: Vec<Vec<&'static str>> = vec![Vec::new(); order.len()];
    let ready: Vec<usize> = (0..order.len())
        .rev()
        .filter(|&i| order[i].state == ItemState::Ready)
        .collect();

    for (i, item) in order.iter().enumerate() {
        if item.pinned {
            why[i].push(PINNED);
        }
        if item.state == ItemState::InProgress {
            why[i].push(IN_PROGRESS);
        }
    }
    if let Some(&newest) = ready.first() {
        why[newest].push(NEWEST_READY);
    }
    if let Some(n) = policy.keep_last {
        for &i in ready.iter().take(usize::try_from(n).unwrap_or(usize::MAX)) {
            why[i].push(KEEP_LAST);
        }
    }
    if let Some(max_age) = policy.max_age {
        // Beyond SignedDuration's range every child is young enough.
        let limit = SignedDuration::try_from(max_age).ok();
        for &i in &ready {
            let age = now.duration_since(order[i].created_at);
            if limit.is_none_or(|limit| age < limit) {
                why[i].push(MAX_AGE);
            }
        }
    }
    let buckets = [
        (Period::Hourly, policy.hourly, HOURLY),
        (Period::Daily, policy.daily, DAILY),
        (Period::Weekly, policy.weekly, WEEKLY),
        (Period::Monthly, policy.monthly, MONTHLY),
        (Period::Yearly, policy.yearly, YEARLY),
    ];
    for (period, count, reason) in buckets {
        let Some(count) = count else { continue };
        let count = usize::try_from(count).unwrap_or(usize::MAX);
        // A set rather than "differs from the previous child": a zone whose clock falls
        // back across midnight can revisit a period.
        let mut seen = HashSet::new();
        for &i in &ready {
            if seen.len() >= count {
                break;
            }
            if seen.insert(period_key(period, order[i].created_at, tz)) {
                why[i].push(reason);
            }
        }
    }
    if policy.is_empty() {
        for reasons in &mut why {
            reasons.push(NO_POLICY);
        }
    }
    (order, why)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ItemState::{Failed, InProgress, Ready};
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    const HOUR: Duration = Duration::from_secs(3600);
    const DAY: Duration = Duration::from_secs(86_400);

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn item(key: &str, at: &str, state: ItemState) -> Item {
        Item {
            key: key.to_owned(),
            created_at: ts(at),
            state,
            pinned: false,
        }
    }

    fn pinned(mut item: Item) -> Item {
        item.pinned = true;
        item
    }

    fn utc() -> TimeZone {
        TimeZone::UTC
    }

    fn berlin() -> TimeZone {
        TimeZone::get("Europe/Berlin").unwrap()
    }

    fn keys(plan: &RetentionPlan) -> (Vec<&str>, Vec<&str>) {
        (
            plan.keep.iter().map(|(k, _)| k.as_str()).collect(),
            plan.prune.iter().map(String::as_str).collect(),
        )
    }

    fn why<'p>(plan: &'p RetentionPlan, key: &str) -> &'p [&'static str] {
        &plan
            .keep
            .iter()
            .find(|(k, _)| k == key)
            .unwrap_or_else(|| panic!("{key} is not kept"))
            .1
    }

    /// Ready children at 00:00Z on each day of May 2024 named d01..d31.
    fn may_dailies() -> Vec<Item> {
        (1..=31)
            .map(|d| {
                item(
                    &format!("d{d:02}"),
                    &format!("2024-05-{d:02}T00:00:00Z"),
                    Ready,
                )
            })
            .collect()
    }

    const NOW: &str = "2024-06-01T00:00:00Z";

    #[test]
    fn empty_input_gives_an_empty_plan() {
        let p = plan(&[], &RetentionPolicy::default(), ts(NOW), &utc());
        assert_eq!(p, RetentionPlan::default());
        let policy = RetentionPolicy {
            keep_last: Some(1),
            ..Default::default()
        };
        assert!(evict_for_room(&[], &policy, ts(NOW), &utc(), 3).is_empty());
    }

    #[test]
    fn empty_policy_keeps_everything() {
        let items = [
            item("a", "2024-05-01T00:00:00Z", Ready),
            item("b", "2024-05-02T00:00:00Z", Failed),
            item("c", "2024-05-03T00:00:00Z", InProgress),
            item("d", "2024-05-04T00:00:00Z", Ready),
        ];
        let p = plan(&items, &RetentionPolicy::default(), ts(NOW), &utc());
        assert_eq!(keys(&p), (vec!["a", "b", "c", "d"], vec![]));
        assert_eq!(why(&p, "a"), [NO_POLICY]);
        assert_eq!(why(&p, "b"), [NO_POLICY]);
        assert_eq!(why(&p, "c"), [IN_PROGRESS, NO_POLICY]);
        assert_eq!(why(&p, "d"), [NEWEST_READY, NO_POLICY]);
    }

    #[test]
    fn keep_last() {
        let items = may_dailies();
        let policy = RetentionPolicy {
            keep_last: Some(3),
            ..Default::default()
        };
        let p = plan(&items, &policy, ts(NOW), &utc());
        assert_eq!(keys(&p).0, vec!["d29", "d30", "d31"]);
        assert_eq!(p.prune.len(), 28);
        assert_eq!(p.prune.first().map(String::as_str), Some("d01"));
        assert_eq!(why(&p, "d31"), [NEWEST_READY, KEEP_LAST]);
        assert_eq!(why(&p, "d29"), [KEEP_LAST]);
    }

    #[test]
    fn zero_counts_still_keep_the_newest_ready() {
        let policy = RetentionPolicy {
            keep_last: Some(0),
            daily: Some(0),
            ..Default::default()
        };
        let p = plan(&may_dailies(), &policy, ts(NOW), &utc());
        assert_eq!(keys(&p).0, vec!["d31"]);
        assert_eq!(why(&p, "d31"), [NEWEST_READY]);
    }

    #[test]
    fn max_age_is_strict() {
        let items = may_dailies();
        let policy = RetentionPolicy {
            max_age: Some(DAY * 3),
            ..Default::default()
        };
        // d29 is exactly 3 days old at NOW: not younger, pruned.
        let p = plan(&items, &policy, ts(NOW), &utc());
        assert_eq!(keys(&p).0, vec!["d30", "d31"]);
        let future = [
            item("old", "2024-01-01T00:00:00Z", Ready),
            item("skewed", "2024-06-02T00:00:00Z", Ready),
        ];
        let p = plan(&future, &policy, ts(NOW), &utc());
        assert_eq!(why(&p, "skewed"), [NEWEST_READY, MAX_AGE]);
        assert_eq!(p.prune, vec!["old"]);
        let forever = RetentionPolicy {
            max_age: Some(Duration::MAX),
            ..Default::default()
        };
        assert!(plan(&items, &forever, ts(NOW), &utc()).prune.is_empty());
    }

    #[test]
    fn failed_are_pruned_and_never_count() {
        let items = [
            item("r1", "2024-05-01T00:00:00Z", Ready),
            item("r2", "2024-05-02T00:00:00Z", Ready),
            item("f1", "2024-05-03T00:00:00Z", Failed),
            item("f2", "2024-05-04T00:00:00Z", Failed),
        ];
        let policy = RetentionPolicy {
            keep_last: Some(2),
            daily: Some(4),
            ..Default::default()
        };
        let p = plan(&items, &policy, ts(NOW), &utc());
        assert_eq!(keys(&p), (vec!["r1", "r2"], vec!["f1", "f2"]));
    }

    #[test]
    fn all_failed() {
        let items = [
            item("f1", "2024-05-01T00:00:00Z", Failed),
            pinned(item("f2", "2024-05-02T00:00:00Z", Failed)),
            item("f3", "2024-05-03T00:00:00Z", Failed),
        ];
        let policy = RetentionPolicy {
            keep_last: Some(5),
            ..Default::default()
        };
        let p = plan(&items, &policy, ts(NOW), &utc());
        assert_eq!(keys(&p), (vec!["f2"], vec!["f1", "f3"]));
        assert_eq!(why(&p, "f2"), [PINNED]);
    }

    #[test]
    fn only_in_progress() {
        let items = [
            item("p1", "2024-05-01T00:00:00Z", InProgress),
            item("p2", "2024-05-02T00:00:00Z", InProgress),
        ];
        let policy = RetentionPolicy {
            keep_last: Some(0),
            ..Default::default()
        };
        let p = plan(&items, &policy, ts(NOW), &utc());
        assert_eq!(keys(&p), (vec!["p1", "p2"], vec![]));
        assert_eq!(why(&p, "p1"), [IN_PROGRESS]);
    }

    #[test]
    fn in_progress_is_not_counted_by_rules() {
        let items = [
            item("r1", "2024-05-01T00:00:00Z", Ready),
            item("r2", "2024-05-02T00:00:00Z", Ready),
            item("p", "2024-05-03T00:00:00Z", InProgress),
        ];
        let policy = RetentionPolicy {
            keep_last: Some(2),
            ..Default::default()
        };
        let p = plan(&items, &policy, ts(NOW), &utc());
        assert_eq!(keys(&p), (vec!["r1", "r2", "p"], vec![]));
    }

    #[test]
    fn pinned_is_kept_and_counts_like_any_ready_child() {
        let mut items = may_dailies();
        items[0].pinned = true;
        items[30].pinned = true;
        let policy = RetentionPolicy {
            keep_last: Some(2),
            ..Default::default()
        };
        let p = plan(&items, &policy, ts(NOW), &utc());
        assert_eq!(keys(&p).0, vec!["d01", "d30", "d31"]);
        assert_eq!(why(&p, "d01"), [PINNED]);
        assert_eq!(why(&p, "d31"), [PINNED, NEWEST_READY, KEEP_LAST]);
    }

    #[test]
    fn ties_in_created_at_break_by_key() {
        let at = "2024-05-01T00:00:00Z";
        let items = [
            item("b", at, Ready),
            item("c", at, Ready),
            item("a", at, Ready),
        ];
        let policy = RetentionPolicy {
            keep_last: Some(1),
            ..Default::default()
        };
        let p = plan(&items, &policy, ts(NOW), &utc());
        assert_eq!(keys(&p), (vec!["c"], vec!["a", "b"]));
        let policy = RetentionPolicy {
            daily: Some(1),
            ..Default::default()
        };
        let p = plan(&items, &policy, ts(NOW), &utc());
        assert_eq!(keys(&p), (vec!["c"], vec!["a", "b"]));
    }

    #[test]
    fn daily_keeps_the_newest_of_each_recent_day_with_a_child() {
        let items = [
            item("mon-early", "2024-05-06T01:00:00Z", Ready),
            item("mon-late", "2024-05-06T20:00:00Z", Ready),
            // No child on Tuesday: an empty day does not use up a slot.
            item("wed", "2024-05-08T12:00:00Z", Ready),
            item("thu-a", "2024-05-09T08:00:00Z", Ready),
            item("thu-b", "2024-05-09T09:00:00Z", Ready),
            item("thu-failed", "2024-05-09T10:00:00Z", Failed),
        ];
        let policy = RetentionPolicy {
            daily: Some(3),
            ..Default::default()
        };
        let p = plan(&items, &policy, ts(NOW), &utc());
        assert_eq!(
            keys(&p),
            (
                vec!["mon-late", "wed", "thu-b"],
                vec!["mon-early", "thu-a", "thu-failed"]
            )
        );
        assert_eq!(why(&p, "thu-b"), [NEWEST_READY, DAILY]);
    }

    #[test]
    fn days_are_local_days() {
        // 21:30Z on May 6 is 23:30 in Berlin (still May 6); 22:30Z is 00:30 on May 7.
        let items = [
            item("a", "2024-05-06T10:00:00Z", Ready),
            item("b", "2024-05-06T21:30:00Z", Ready),
            item("c", "2024-05-06T22:30:00Z", Ready),
        ];
        let policy = RetentionPolicy {
            daily: Some(2),
            ..Default::default()
        };
        assert_eq!(
            keys(&plan(&items, &policy, ts(NOW), &berlin())),
            (vec!["b", "c"], vec!["a"])
        );
        assert_eq!(
            keys(&plan(&items, &policy, ts(NOW), &utc())),
            (vec!["c"], vec!["a", "b"]),
            "in UTC all three share May 6; daily 2 has only one day"
        );
    }

    #[test]
    fn daily_buckets_across_dst_days() {
        // 2024-03-31 in Berlin has 23 hours: 23:00Z Mar 30 .. 22:00Z Mar 31.
        // 2024-10-27 has 25 hours: 22:00Z Oct 26 .. 23:00Z Oct 27.
        let items = [
            item("mar31-first", "2024-03-30T23:00:00Z", Ready),
            item("mar31-last", "2024-03-31T21:59:59Z", Ready),
            item("apr1", "2024-03-31T22:00:00Z", Ready),
            item("oct27-first", "2024-10-26T22:00:00Z", Ready),
            item("oct27-last", "2024-10-27T22:59:59Z", Ready),
            item("oct28", "2024-10-27T23:00:00Z", Ready),
        ];
        let policy = RetentionPolicy {
            daily: Some(10),
            ..Default::default()
        };
        let p = plan(&items, &policy, ts("2024-11-01T00:00:00Z"), &berlin());
        assert_eq!(
            keys(&p),
            (
                vec!["mar31-last", "apr1", "oct27-last", "oct28"],
                vec!["mar31-first", "oct27-first"]
            )
        );
    }

    #[test]
    fn a_repeated_hour_is_two_hourly_buckets() {
        // Berlin 2024-10-27: 02:xx CEST is 00:xxZ, 02:xx CET is 01:xxZ.
        let items = [
            item("cest-a", "2024-10-27T00:10:00Z", Ready),
            item("cest-b", "2024-10-27T00:50:00Z", Ready),
            item("cet-a", "2024-10-27T01:10:00Z", Ready),
            item("cet-b", "2024-10-27T01:50:00Z", Ready),
        ];
        let policy = RetentionPolicy {
            hourly: Some(5),
            ..Default::default()
        };
        let p = plan(&items, &policy, ts("2024-10-28T00:00:00Z"), &berlin());
        assert_eq!(keys(&p), (vec!["cest-b", "cet-b"], vec!["cest-a", "cet-a"]));
    }

    #[test]
    fn hourly_across_the_spring_gap() {
        // Berlin 2024-03-31: 01:xx CET is 00:xxZ, the next local hour is 03:xx CEST (01:xxZ).
        let items = [
            item("h1a", "2024-03-31T00:05:00Z", Ready),
            item("h1b", "2024-03-31T00:55:00Z", Ready),
            item("h3a", "2024-03-31T01:05:00Z", Ready),
            item("h3b", "2024-03-31T01:55:00Z", Ready),
        ];
        let policy = RetentionPolicy {
            hourly: Some(2),
            ..Default::default()
        };
        let p = plan(&items, &policy, ts("2024-04-01T00:00:00Z"), &berlin());
        assert_eq!(keys(&p), (vec!["h1b", "h3b"], vec!["h1a", "h3a"]));
    }

    #[test]
    fn weekly_uses_iso_weeks_including_week_53() {
        // 2020-W53 runs Mon 2020-12-28 .. Sun 2021-01-03; 2021-W01 starts Mon 2021-01-04.
        let items = [
            item("w52", "2020-12-27T12:00:00Z", Ready),
            item("w53-dec", "2020-12-31T12:00:00Z", Ready),
            item("w53-jan", "2021-01-03T12:00:00Z", Ready),
            item("w01", "2021-01-04T12:00:00Z", Ready),
        ];
        let policy = RetentionPolicy {
            weekly: Some(3),
            ..Default::default()
        };
        let p = plan(&items, &policy, ts("2021-02-01T00:00:00Z"), &utc());
        assert_eq!(keys(&p), (vec!["w52", "w53-jan", "w01"], vec!["w53-dec"]));
        let two = RetentionPolicy {
            weekly: Some(2),
            ..Default::default()
        };
        let p = plan(&items, &two, ts("2021-02-01T00:00:00Z"), &utc());
        assert_eq!(keys(&p).0, vec!["w53-jan", "w01"]);
    }

    #[test]
    fn monthly_and_yearly_boundaries() {
        let items = [
            item("nov", "2023-11-15T00:00:00Z", Ready),
            item("dec-a", "2023-12-01T00:00:00Z", Ready),
            item("dec-b", "2023-12-31T22:00:00Z", Ready),
            // 23:30Z on Dec 31 is already January in Berlin.
            item("jan-berlin", "2023-12-31T23:30:00Z", Ready),
        ];
        let policy = RetentionPolicy {
            monthly: Some(3),
            ..Default::default()
        };
        let p = plan(&items, &policy, ts(NOW), &berlin());
        assert_eq!(
            keys(&p),
            (vec!["nov", "dec-b", "jan-berlin"], vec!["dec-a"])
        );
        let p = plan(&items, &policy, ts(NOW), &utc());
        assert_eq!(
            keys(&p),
            (vec!["nov", "jan-berlin"], vec!["dec-a", "dec-b"])
        );
    }

    #[test]
    fn yearly_keeps_the_newest_of_each_local_calendar_year() {
        let items = [
            item("y2021", "2021-06-01T00:00:00Z", Ready),
            item("y2022-a", "2022-03-01T00:00:00Z", Ready),
            item("y2022-b", "2022-11-30T00:00:00Z", Ready),
            // 23:30Z on 2022-12-31 is already 2023 in Berlin, still 2022 in UTC.
            item("new-year-berlin", "2022-12-31T23:30:00Z", Ready),
            item("y2023-failed", "2023-05-01T00:00:00Z", Failed),
            item("y2024", "2024-02-29T12:00:00Z", Ready),
        ];
        let policy = RetentionPolicy {
            yearly: Some(3),
            ..Default::default()
        };
        let now = ts("2024-06-01T00:00:00Z");
        let p = plan(&items, &policy, now, &utc());
        assert_eq!(
            keys(&p),
            (
                vec!["y2021", "new-year-berlin", "y2024"],
                vec!["y2022-a", "y2022-b", "y2023-failed"]
            ),
            "UTC: 2024, 2022 (latest on Dec 31), 2021; a failed child never fills a year"
        );
        assert_eq!(why(&p, "y2024"), [NEWEST_READY, YEARLY]);
        assert_eq!(why(&p, "y2021"), [YEARLY]);
        let p = plan(&items, &policy, now, &berlin());
        assert_eq!(
            keys(&p),
            (
                vec!["y2022-b", "new-year-berlin", "y2024"],
                vec!["y2021", "y2022-a", "y2023-failed"]
            ),
            "Berlin: the Dec 31 23:30Z child is 2023's, so 2022 keeps its November child"
        );
        let zero = RetentionPolicy {
            yearly: Some(0),
            ..Default::default()
        };
        assert_eq!(keys(&plan(&items, &zero, now, &utc())).0, vec!["y2024"]);
    }

    #[test]
    fn rules_form_a_union_and_list_every_reason() {
        let items = may_dailies();
        let policy = RetentionPolicy {
            keep_last: Some(2),
            max_age: Some(DAY * 2 + HOUR),
            daily: Some(3),
            weekly: Some(2),
            monthly: Some(1),
            hourly: None,
            yearly: Some(1),
        };
        let p = plan(&items, &policy, ts(NOW), &utc());
        // Weeks: d31 is Friday of 2024-W22 (May 27..), d26 Sunday of W21.
        assert_eq!(keys(&p).0, vec!["d26", "d29", "d30", "d31"]);
        assert_eq!(
            why(&p, "d31"),
            [
                NEWEST_READY,
                KEEP_LAST,
                MAX_AGE,
                DAILY,
                WEEKLY,
                MONTHLY,
                YEARLY
            ]
        );
        assert_eq!(why(&p, "d30"), [KEEP_LAST, MAX_AGE, DAILY]);
        assert_eq!(why(&p, "d29"), [DAILY]);
        assert_eq!(why(&p, "d26"), [WEEKLY]);
    }

    #[test]
    fn output_does_not_depend_on_input_order() {
        let mut items = may_dailies();
        items.push(item("f", "2024-05-15T12:00:00Z", Failed));
        let policy = RetentionPolicy {
            weekly: Some(2),
            ..Default::default()
        };
        let forward = plan(&items, &policy, ts(NOW), &utc());
        items.reverse();
        assert_eq!(plan(&items, &policy, ts(NOW), &utc()), forward);
    }

    #[test]
    fn evict_for_room_offers_pruned_children_oldest_first() {
        let items = may_dailies();
        let policy = RetentionPolicy {
            keep_last: Some(29),
            ..Default::default()
        };
        assert_eq!(
            evict_for_room(&items, &policy, ts(NOW), &utc(), 1),
            vec!["d01"]
        );
        assert_eq!(
            evict_for_room(&items, &policy, ts(NOW), &utc(), 5),
            vec!["d01", "d02"],
            "fewer than needed: the caller reports LimitReached"
        );
        assert!(evict_for_room(&items, &policy, ts(NOW), &utc(), 0).is_empty());
    }

    #[test]
    fn evict_for_room_never_takes_what_retention_keeps() {
        let items = [
            pinned(item("pinned", "2024-05-01T00:00:00Z", Ready)),
            item("progress", "2024-05-02T00:00:00Z", InProgress),
            item("newest", "2024-05-03T00:00:00Z", Ready),
        ];
        for policy in [
            RetentionPolicy::default(),
            RetentionPolicy {
                keep_last: Some(0),
                ..Default::default()
            },
        ] {
            assert!(evict_for_room(&items, &policy, ts(NOW), &utc(), 3).is_empty());
        }
    }

    #[test]
    fn evict_for_room_lets_failed_children_go_even_without_a_policy() {
        let items = [
            item("r", "2024-05-01T00:00:00Z", Ready),
            item("f1", "2024-05-02T00:00:00Z", Failed),
            pinned(item("f2", "2024-05-03T00:00:00Z", Failed)),
            item("f3", "2024-05-04T00:00:00Z", Failed),
        ];
        assert_eq!(
            evict_for_room(&items, &RetentionPolicy::default(), ts(NOW), &utc(), 5),
            vec!["f1", "f3"]
        );
    }

    #[test]
    fn next_to_go_is_what_one_more_child_pushes_out() {
        let items = may_dailies();
        let keep3 = RetentionPolicy {
            keep_last: Some(3),
            ..Default::default()
        };
        // d29..d31 are kept; a new child pushes d29 out. d01..d28 go now, not "next".
        assert_eq!(next_to_go(&items, &keep3, ts(NOW), &utc()), vec!["d29"]);
        let daily = RetentionPolicy {
            daily: Some(2),
            ..Default::default()
        };
        // A child on June 1 takes a day slot: May 30 goes next.
        assert_eq!(next_to_go(&items, &daily, ts(NOW), &utc()), vec!["d30"]);
        // A second child on the same day as the newest replaces it in its bucket.
        let same_day = [item("a", "2024-06-01T00:00:00Z", Ready)];
        assert_eq!(
            next_to_go(&same_day, &daily, ts("2024-06-01T12:00:00Z"), &utc()),
            vec!["a"]
        );
        assert!(next_to_go(&items, &RetentionPolicy::default(), ts(NOW), &utc()).is_empty());
        assert!(next_to_go(&[], &keep3, ts(NOW), &utc()).is_empty());
    }

    // ---- property tests -------------------------------------------------------------

    fn arb_item(index: usize) -> impl Strategy<Value = Item> {
        (
            // Three weeks of minutes, coarse enough that ties happen.
            0i64..(21 * 24 * 4),
            prop_oneof![6 => Just(Ready), 2 => Just(InProgress), 2 => Just(Failed)],
            proptest::bool::weighted(0.15),
        )
            .prop_map(move |(quarter_hours, state, pinned)| Item {
                key: format!("k{index:03}"),
                created_at: Timestamp::from_second(1_711_000_000 + quarter_hours * 900).unwrap(),
                state,
                pinned,
            })
    }

    fn arb_items() -> impl Strategy<Value = Vec<Item>> {
        (0usize..40).prop_flat_map(|n| (0..n).map(arb_item).collect::<Vec<_>>())
    }

    /// Children spread over six years, so yearly buckets have something to choose from.
    fn arb_items_over_years() -> impl Strategy<Value = Vec<Item>> {
        (0usize..30).prop_flat_map(|n| {
            (0..n)
                .map(|index| {
                    (
                        0i64..(6 * 365 * 4),
                        prop_oneof![6 => Just(Ready), 2 => Just(InProgress), 2 => Just(Failed)],
                    )
                        .prop_map(move |(quarter_days, state)| Item {
                            key: format!("k{index:03}"),
                            created_at: Timestamp::from_second(
                                1_711_000_000 + 22 * 86_400 - quarter_days * 21_600,
                            )
                            .unwrap(),
                            state,
                            pinned: false,
                        })
                })
                .collect::<Vec<_>>()
        })
    }

    fn arb_policy() -> impl Strategy<Value = RetentionPolicy> {
        let count = || proptest::option::weighted(0.4, 0u32..6);
        (
            count(),
            proptest::option::weighted(0.3, 0u64..(30 * 86_400)),
            count(),
            count(),
            count(),
            count(),
            count(),
        )
            .prop_map(
                |(keep_last, max_age, hourly, daily, weekly, monthly, yearly)| RetentionPolicy {
                    keep_last,
                    max_age: max_age.map(Duration::from_secs),
                    hourly,
                    daily,
                    weekly,
                    monthly,
                    yearly,
                },
            )
    }

    fn arb_zone() -> impl Strategy<Value = TimeZone> {
        prop_oneof![
            Just("UTC"),
            Just("Europe/Berlin"),
            Just("America/New_York"),
            Just("Asia/Kolkata")
        ]
        .prop_map(|name| TimeZone::get(name).unwrap())
    }

    fn now() -> Timestamp {
        Timestamp::from_second(1_711_000_000 + 22 * 86_400).unwrap()
    }

    fn sort_key(item: &Item) -> (Timestamp, &str) {
        (item.created_at, item.key.as_str())
    }

    proptest! {
        #[test]
        fn plan_partitions_the_input_and_protects_what_it_must(
            items in arb_items(), policy in arb_policy(), zone in arb_zone(),
        ) {
            let p = plan(&items, &policy, now(), &zone);
            let kept: BTreeSet<&str> = p.keep.iter().map(|(k, _)| k.as_str()).collect();
            let pruned: BTreeSet<&str> = p.prune.iter().map(String::as_str).collect();
            let all: BTreeSet<&str> = items.iter().map(|i| i.key.as_str()).collect();
            prop_assert!(kept.is_disjoint(&pruned));
            prop_assert_eq!(kept.len() + pruned.len(), items.len());
            prop_assert_eq!(kept.union(&pruned).copied().collect::<BTreeSet<_>>(), all);
            for (_, why) in &p.keep {
                prop_assert!(!why.is_empty());
            }

            let by_key = |k: &str| items.iter().find(|i| i.key == k).unwrap();
            for k in &p.prune {
                let i = by_key(k);
                prop_assert!(!i.pinned, "pinned {} pruned", k);
                prop_assert!(i.state != InProgress, "in-progress {} pruned", k);
            }
            if let Some(newest) = items.iter().filter(|i| i.state == Ready).max_by_key(|i| sort_key(i)) {
                prop_assert!(kept.contains(newest.key.as_str()));
            }
            let prune_order: Vec<_> = p.prune.iter().map(|k| sort_key(by_key(k))).collect();
            prop_assert!(prune_order.windows(2).all(|w| w[0] < w[1]), "prune not oldest first");
            let keep_order: Vec<_> = p.keep.iter().map(|(k, _)| sort_key(by_key(k))).collect();
            prop_assert!(keep_order.windows(2).all(|w| w[0] < w[1]), "keep not oldest first");

            if policy.is_empty() {
                prop_assert!(p.prune.is_empty());
            } else {
                for i in &items {
                    if i.state == Failed && !i.pinned {
                        prop_assert!(pruned.contains(i.key.as_str()));
                    }
                }
            }
            if let Some(n) = policy.keep_last {
                let ready = items.iter().filter(|i| i.state == Ready).count();
                let kept_ready = items.iter()
                    .filter(|i| i.state == Ready && kept.contains(i.key.as_str()))
                    .count();
                prop_assert!(kept_ready >= ready.min(n as usize));
            }
        }

        #[test]
        fn plan_is_independent_of_input_order(
            items in arb_items(), policy in arb_policy(), zone in arb_zone(), seed in any::<u64>(),
        ) {
            let mut shuffled = items.clone();
            // Deterministic shuffle without pulling in an RNG.
            let n = shuffled.len();
            for i in (1..n).rev() {
                let j = usize::try_from((seed ^ (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15)) % (i as u64 + 1)).unwrap();
                shuffled.swap(i, j);
            }
            prop_assert_eq!(plan(&items, &policy, now(), &zone), plan(&shuffled, &policy, now(), &zone));
        }

        #[test]
        fn bucket_rules_keep_one_child_per_recent_period(
            items in arb_items(), n in 0u32..6, zone in arb_zone(),
        ) {
            let policy = RetentionPolicy { daily: Some(n), ..Default::default() };
            let p = plan(&items, &policy, now(), &zone);
            let day = |t: Timestamp| zone.to_datetime(t).date();
            let daily: Vec<&Item> = p.keep.iter()
                .filter(|(_, why)| why.contains(&DAILY))
                .map(|(k, _)| items.iter().find(|i| &i.key == k).unwrap())
                .collect();
            let ready_days: BTreeSet<_> = items.iter().filter(|i| i.state == Ready).map(|i| day(i.created_at)).collect();
            let kept_days: BTreeSet<_> = daily.iter().map(|i| day(i.created_at)).collect();
            prop_assert_eq!(kept_days.len(), daily.len(), "two children for one day");
            prop_assert_eq!(daily.len(), ready_days.len().min(n as usize));
            // They are the most recent days, and each is its day's newest Ready child.
            let recent: BTreeSet<_> = ready_days.iter().rev().take(n as usize).copied().collect();
            prop_assert_eq!(&kept_days, &recent);
            for kept in daily {
                let newest = items.iter()
                    .filter(|i| i.state == Ready && day(i.created_at) == day(kept.created_at))
                    .max_by_key(|i| sort_key(i)).unwrap();
                prop_assert_eq!(&newest.key, &kept.key);
            }
        }

        #[test]
        fn yearly_keeps_one_child_per_recent_local_year(
            items in arb_items_over_years(), n in 0u32..5, zone in arb_zone(),
        ) {
            let policy = RetentionPolicy { yearly: Some(n), ..Default::default() };
            let p = plan(&items, &policy, now(), &zone);
            let year = |t: Timestamp| zone.to_datetime(t).year();
            let yearly: Vec<&Item> = p.keep.iter()
                .filter(|(_, why)| why.contains(&YEARLY))
                .map(|(k, _)| items.iter().find(|i| &i.key == k).unwrap())
                .collect();
            let ready_years: BTreeSet<_> = items.iter().filter(|i| i.state == Ready).map(|i| year(i.created_at)).collect();
            let kept_years: BTreeSet<_> = yearly.iter().map(|i| year(i.created_at)).collect();
            prop_assert_eq!(kept_years.len(), yearly.len(), "two children for one year");
            let recent: BTreeSet<_> = ready_years.iter().rev().take(n as usize).copied().collect();
            prop_assert_eq!(&kept_years, &recent);
            for kept in yearly {
                let newest = items.iter()
                    .filter(|i| i.state == Ready && year(i.created_at) == year(kept.created_at))
                    .max_by_key(|i| sort_key(i)).unwrap();
                prop_assert_eq!(&newest.key, &kept.key);
            }
        }

        #[test]
        fn next_to_go_only_names_kept_unprotected_children(
            items in arb_items(), policy in arb_policy(), zone in arb_zone(),
        ) {
            let kept: BTreeSet<String> = plan(&items, &policy, now(), &zone).keep.into_iter().map(|(k, _)| k).collect();
            let next = next_to_go(&items, &policy, now(), &zone);
            for k in &next {
                let i = items.iter().find(|i| &i.key == k).unwrap();
                prop_assert!(kept.contains(k), "{} goes next but is not kept now", k);
                prop_assert!(!i.pinned && i.state != InProgress);
            }
            if policy.is_empty() {
                prop_assert!(next.is_empty());
            }
        }

        #[test]
        fn evict_for_room_is_a_safe_oldest_first_prefix(
            items in arb_items(), policy in arb_policy(), zone in arb_zone(), needed in 0usize..8,
        ) {
            let p = plan(&items, &policy, now(), &zone);
            let evict = evict_for_room(&items, &policy, now(), &zone, needed);
            prop_assert!(evict.len() <= needed);
            let by_key = |k: &str| items.iter().find(|i| i.key == k).unwrap();
            let newest_ready = items.iter().filter(|i| i.state == Ready).max_by_key(|i| sort_key(i));
            for k in &evict {
                let i = by_key(k);
                prop_assert!(!i.pinned && i.state != InProgress);
                prop_assert!(newest_ready.is_none_or(|n| n.key != *k));
                prop_assert!(p.prune.contains(k) || i.state == Failed);
            }
            let order: Vec<_> = evict.iter().map(|k| sort_key(by_key(k))).collect();
            prop_assert!(order.windows(2).all(|w| w[0] < w[1]));
            if !policy.is_empty() {
                let want: Vec<String> = p.prune.iter().take(needed).cloned().collect();
                prop_assert_eq!(evict, want);
            }
        }
    }
}
