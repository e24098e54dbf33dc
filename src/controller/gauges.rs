//! Gauges computed from the controllers' caches right before each scrape: objects by phase and
//! by condition reason, provider slots held against the limits, schedules that missed a run,
//! the work queue and leadership. Only what the objects' status already says is used, so the
//! numbers mean the same as `kubectl get` and the alerts built on them (docs/alerts.md) point
//! at objects a person can find.
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::ResourceExt;
use kube::runtime::reflector::Store;

use super::context::Context;
use super::snapshot_backup::RestorePoint;
use crate::api::{
    Phase, RestorePhase, ScheduleType, VpsBackup, VpsProvider, VpsSnapshot, VpsSnapshotSchedule,
    parse_duration,
};
use crate::plan::schedule::{self, CronSchedule};
use crate::telemetry::metrics::{ConditionLabels, KindLabels, Metrics, PhaseLabels};
use crate::telemetry::queue;

/// The schedules' cache, registered by the wiring once the schedule controller starts (the
/// shared `Context` does not hold it).
pub static SCHEDULES: OnceLock<Store<VpsSnapshotSchedule>> = OnceLock::new();

const RESTORE_POINT_PHASES: [Phase; 7] = [
    Phase::Pending,
    Phase::Creating,
    Phase::Ready,
    Phase::Failed,
    Phase::Blocked,
    Phase::Evicted,
    Phase::Deleting,
];

const RESTORE_PHASES: [(RestorePhase, &str); 5] = [
    (RestorePhase::Pending, "Pending"),
    (RestorePhase::PreSnapshot, "PreSnapshot"),
    (RestorePhase::Restoring, "Restoring"),
    (RestorePhase::Succeeded, "Succeeded"),
    (RestorePhase::Failed, "Failed"),
];

const SCHEDULE_PHASES: [&str; 3] = ["Active", "Suspended", "Failed"];

/// Refreshes every cache-derived gauge.
pub fn refresh(ctx: &Context) {
    let m = &ctx.metrics;
    let now = Timestamp::now();
    m.conditions.clear();
    let snapshots = state(ctx.snapshots.get().map(|i| i.store()));
    let backups = state(ctx.backups.get().map(|i| i.store()));
    let providers = state(ctx.providers.get());
    let schedules = state(SCHEDULES.get());
    let restores = state(ctx.restores.get());

    restore_points::<VpsSnapshot>(m, &snapshots, &providers);
    restore_points::<VpsBackup>(m, &backups, &providers);

    let provider_conditions = providers
        .iter()
        .map(|p| p.status.as_ref().map(|s| &s.conditions[..]).unwrap_or(&[]));
    set_conditions(m, "VpsProvider", provider_conditions);

    set_conditions(
        m,
        "VpsRestore",
        restores
            .iter()
            .map(|r| r.status.as_ref().map(|s| &s.conditions[..]).unwrap_or(&[])),
    );
    let restore_phases = restores.iter().filter_map(|r| {
        let phase = r.status.as_ref().and_then(|s| s.phase).unwrap_or_default();
        RESTORE_PHASES
            .iter()
            .find(|(p, _)| *p == phase)
            .map(|(_, name)| *name)
    });
    let known: Vec<&'static str> = RESTORE_PHASES.iter().map(|(_, name)| *name).collect();
    let by_phase = count_phases(&known, restore_phases);
    set_phases(m, "VpsRestore", by_phase);

    set_conditions(
        m,
        "VpsSnapshotSchedule",
        schedules
            .iter()
            .map(|s| s.status.as_ref().map(|s| &s.conditions[..]).unwrap_or(&[])),
    );
    let by_phase = count_phases(
        &SCHEDULE_PHASES,
        schedules
            .iter()
            .filter_map(|s| s.status.as_ref()?.phase.as_deref()),
    );
    set_phases(m, "VpsSnapshotSchedule", by_phase);
    m.schedule_missed_runs.set(
        schedules
            .iter()
            .filter_map(|s| s.status.as_ref())
            .map(|s| s.missed_runs)
            .sum(),
    );
    let overdue = overdue_servers(&schedules, &snapshots, &backups, now);
    for (kind, n) in [("VpsSnapshot", overdue.0), ("VpsBackup", overdue.1)] {
        m.schedule_overdue
            .get_or_create(&KindLabels { kind })
            .set(n);
    }

    for (kind, queued, running) in queue::work().depths() {
        m.queue_depth
            .get_or_create(&KindLabels { kind })
            .set(queued);
        m.in_flight.get_or_create(&KindLabels { kind }).set(running);
    }
}

fn state<K: Clone + kube::Resource>(store: Option<&Store<K>>) -> Vec<Arc<K>>
where
    K::DynamicType: std::hash::Hash + Eq + Clone,
{
    store.map(Store::state).unwrap_or_default()
}

fn restore_points<K: RestorePoint>(m: &Metrics, objs: &[Arc<K>], providers: &[Arc<VpsProvider>]) {
    let known: Vec<&'static str> = RESTORE_POINT_PHASES.iter().map(|p| p.as_str()).collect();
    let by_phase = count_phases(
        &known,
        objs.iter().map(|o| {
            o.status()
                .and_then(|s| s.phase)
                .unwrap_or_default()
                .as_str()
        }),
    );
    set_phases(m, K::KIND, by_phase);
    set_conditions(
        m,
        K::KIND,
        objs.iter()
            .map(|o| o.status().map(|s| &s.conditions[..]).unwrap_or(&[])),
    );
    let occ = occupancy(objs, providers);
    let kind = KindLabels { kind: K::KIND };
    m.slots_used.get_or_create(&kind).set(occ.used);
    m.slots_limit.get_or_create(&kind).set(occ.limit);
    m.servers.get_or_create(&kind).set(occ.servers);
    m.servers_at_limit.get_or_create(&kind).set(occ.full);
}

/// Objects per phase; every known phase is present, zeros included (a series that appears only
/// once an object is in that phase cannot be alerted on while it is absent).
fn count_phases<'a>(
    known: &[&'static str],
    phases: impl Iterator<Item = &'a str>,
) -> BTreeMap<&'static str, i64> {
    let mut by_phase: BTreeMap<&'static str, i64> = known.iter().map(|p| (*p, 0)).collect();
    for phase in phases {
        if let Some(p) = known.iter().find(|k| **k == phase) {
            *by_phase.entry(p).or_default() += 1;
        }
    }
    by_phase
}

fn set_phases(m: &Metrics, kind: &'static str, by_phase: BTreeMap<&'static str, i64>) {
    for (phase, n) in by_phase {
        m.objects.get_or_create(&PhaseLabels { kind, phase }).set(n);
    }
}

fn set_conditions<'a>(
    m: &Metrics,
    kind: &'static str,
    objs: impl Iterator<Item = &'a [Condition]>,
) {
    for ((r#type, status, reason), n) in count_conditions(objs) {
        m.conditions
            .get_or_create(&ConditionLabels {
                kind,
                r#type,
                status,
                reason,
            })
            .set(n);
    }
}

/// Objects per (condition type, status, reason). Reasons come from the operator's fixed set,
/// so the label values stay bounded.
pub fn count_conditions<'a>(
    objs: impl Iterator<Item = &'a [Condition]>,
) -> BTreeMap<(String, String, String), i64> {
    let mut counts = BTreeMap::new();
    for conditions in objs {
        for c in conditions {
            *counts
                .entry((c.type_.clone(), c.status.clone(), c.reason.clone()))
                .or_default() += 1;
        }
    }
    counts
}

/// Provider slots held by vpsnap's objects against the limits of the servers they are on.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Occupancy {
    pub used: i64,
    pub limit: i64,
    pub servers: i64,
    pub full: i64,
}

/// An object holds a slot from its create until the provider no longer lists it: with a
/// provider id (Creating, Ready, Failed — a failed snapshot still counts at the provider), or
/// while its create is in flight. Evicted objects gave theirs up.
fn holds_slot<K: RestorePoint>(o: &K) -> bool {
    let Some(s) = o.status() else { return false };
    match s.phase {
        Some(Phase::Evicted) => false,
        Some(Phase::Creating) => true,
        _ => s.provider_id.is_some(),
    }
}

pub fn occupancy<K: RestorePoint>(objs: &[Arc<K>], providers: &[Arc<VpsProvider>]) -> Occupancy {
    let limits: HashMap<(String, String), i64> = providers
        .iter()
        .map(|p| {
            let l = &p.spec.limits;
            let limit = match K::KIND {
                "VpsBackup" => l.backups_per_server,
                _ => l.snapshots_per_server,
            };
            (
                (p.namespace().unwrap_or_default(), p.name_any()),
                i64::from(limit),
            )
        })
        .collect();
    // (namespace, provider, server) → slots held.
    let mut per_server: BTreeMap<(String, String, i64), i64> = BTreeMap::new();
    for o in objs {
        let c = o.common();
        let entry = per_server
            .entry((
                o.namespace().unwrap_or_default(),
                c.provider.to_string(),
                c.server_id,
            ))
            .or_default();
        if holds_slot(o.as_ref()) {
            *entry += 1;
        }
    }
    let mut occ = Occupancy::default();
    for ((ns, provider, _), used) in per_server {
        // Servers of a provider that does not exist (yet) have no known limit.
        let Some(limit) = limits.get(&(ns, provider)) else {
            continue;
        };
        occ.servers += 1;
        occ.used += used;
        occ.limit += limit;
        if used >= *limit {
            occ.full += 1;
        }
    }
    occ
}

/// (snapshot, backup) schedule servers whose latest due run left no completed restore point.
///
/// Per active schedule and server: take the newest Ready child's creation time (children are
/// created at their run, after the scheduled time), or the schedule's own creation when there
/// is none; the next scheduled run after it, plus the schedule's jitter and the child's
/// failure deadline, is when a new restore point should be complete. Past that it is overdue:
/// a missed run (operator down past the starting deadline, a child failed, the server full,
/// or a run skipped because the previous child was still in progress).
pub fn overdue_servers(
    schedules: &[Arc<VpsSnapshotSchedule>],
    snapshots: &[Arc<VpsSnapshot>],
    backups: &[Arc<VpsBackup>],
    now: Timestamp,
) -> (i64, i64) {
    let newest_snapshots = newest_ready_by_owner(snapshots);
    let newest_backups = newest_ready_by_owner(backups);
    let mut overdue = (0, 0);
    for s in schedules {
        let Some(due) = Due::of(s) else { continue };
        let uid = s.uid().unwrap_or_default();
        let (newest, count) = match s.spec.type_ {
            ScheduleType::Snapshot => (newest_snapshots.get(&uid), &mut overdue.0),
            ScheduleType::Backup => (newest_backups.get(&uid), &mut overdue.1),
        };
        let created = s
            .creation_timestamp()
            .map(|t| t.0)
            .unwrap_or(Timestamp::UNIX_EPOCH);
        for server in &s.spec.server_ids {
            let since = newest
                .and_then(|by_server| by_server.get(server))
                .copied()
                .unwrap_or(created);
            if due.is_overdue(since, now) {
                *count += 1;
            }
        }
    }
    overdue
}

/// A schedule's timing, parsed; `None` for suspended or invalid schedules (the latter show as
/// Stalled instead).
struct Due {
    cron: CronSchedule,
    tz: jiff::tz::TimeZone,
    jitter: Duration,
    deadline: Duration,
}

impl Due {
    fn of(s: &VpsSnapshotSchedule) -> Option<Self> {
        let spec = &s.spec;
        if spec.suspend {
            return None;
        }
        let max_jitter = parse_duration(&spec.max_jitter).ok()?;
        let deadline = match &spec.template.failure_deadline {
            Some(d) => parse_duration(d).ok()?,
            None => match spec.type_ {
                ScheduleType::Snapshot => VpsSnapshot::DEFAULT_DEADLINE,
                ScheduleType::Backup => VpsBackup::DEFAULT_DEADLINE,
            },
        };
        Some(Self {
            cron: CronSchedule::parse(&spec.schedule).ok()?,
            tz: schedule::time_zone(&spec.time_zone).ok()?,
            // The same key the schedule controller fires with.
            jitter: schedule::stable_jitter(&s.uid().unwrap_or_else(|| s.name_any()), max_jitter),
            deadline,
        })
    }

    fn is_overdue(&self, since: Timestamp, now: Timestamp) -> bool {
        let Some(next) = self.cron.next_after(since, &self.tz) else {
            return false;
        };
        let allowance = jiff::SignedDuration::try_from(self.jitter + self.deadline)
            .unwrap_or(jiff::SignedDuration::MAX);
        next.checked_add(allowance)
            .is_ok_and(|complete_by| now > complete_by)
    }
}

/// Owner uid → server → creation time of the newest Ready child.
fn newest_ready_by_owner<K: RestorePoint>(
    children: &[Arc<K>],
) -> HashMap<String, HashMap<i64, Timestamp>> {
    let mut out: HashMap<String, HashMap<i64, Timestamp>> = HashMap::new();
    for c in children {
        if c.status().and_then(|s| s.phase) != Some(Phase::Ready) {
            continue;
        }
        let Some(created) = c.creation_timestamp().map(|t| t.0) else {
            continue;
        };
        for owner in c.owner_references() {
            let newest = out
                .entry(owner.uid.clone())
                .or_default()
                .entry(c.common().server_id)
                .or_insert(created);
            if created > *newest {
                *newest = created;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn schedule(extra: serde_json::Value) -> Arc<VpsSnapshotSchedule> {
        let mut spec = json!({
            "providerRef": {"name": "p"}, "serverIds": [1, 2], "schedule": "0 2 * * *",
            "timeZone": "UTC", "maxJitter": "0s"
        });
        for (k, v) in extra.as_object().unwrap() {
            spec[k] = v.clone();
        }
        Arc::new(
            serde_json::from_value(json!({
                "apiVersion": "vpsnap.dev/v1alpha1", "kind": "VpsSnapshotSchedule",
                "metadata": {"name": "nightly", "namespace": "ns", "uid": "sched-uid",
                             "creationTimestamp": "2026-01-01T00:00:00Z"},
                "spec": spec
            }))
            .unwrap(),
        )
    }

    fn snapshot(
        name: &str,
        server: i64,
        created: &str,
        phase: &str,
        id: Option<&str>,
    ) -> Arc<VpsSnapshot> {
        let mut status = json!({"phase": phase});
        if let Some(id) = id {
            status["providerId"] = id.into();
        }
        Arc::new(
            serde_json::from_value(json!({
                "apiVersion": "vpsnap.dev/v1alpha1", "kind": "VpsSnapshot",
                "metadata": {"name": name, "namespace": "ns", "creationTimestamp": created,
                             "ownerReferences": [{"apiVersion": "vpsnap.dev/v1alpha1",
                                 "kind": "VpsSnapshotSchedule", "name": "nightly", "uid": "sched-uid"}]},
                "spec": {"providerRef": {"name": "p"}, "serverId": server},
                "status": status
            }))
            .unwrap(),
        )
    }

    #[test]
    fn a_server_is_overdue_once_its_next_run_should_have_completed() {
        let s = schedule(json!({}));
        let children = [
            snapshot("a", 1, "2026-03-01T02:00:05Z", "Ready", Some("1")),
            // Server 2's run of 03-01 failed; its last good one is from 02-28.
            snapshot("b", 2, "2026-02-28T02:00:03Z", "Ready", Some("2")),
            snapshot("c", 2, "2026-03-01T02:00:04Z", "Failed", Some("3")),
        ];
        // 03-02 02:00 + 30 min default deadline: not yet due for server 1; server 2 missed 03-01.
        let at = |t| overdue_servers(std::slice::from_ref(&s), &children, &[], ts(t));
        assert_eq!(at("2026-03-01T12:00:00Z"), (1, 0));
        assert_eq!(at("2026-03-02T02:29:00Z"), (1, 0));
        assert_eq!(at("2026-03-02T02:31:00Z"), (2, 0));
    }

    #[test]
    fn a_new_schedule_is_judged_from_its_creation_and_suspended_ones_never() {
        let s = schedule(json!({}));
        assert_eq!(
            overdue_servers(&[s], &[], &[], ts("2026-01-01T02:20:00Z")),
            (0, 0)
        );
        let s = schedule(json!({}));
        assert_eq!(
            overdue_servers(&[s], &[], &[], ts("2026-01-01T02:31:00Z")),
            (2, 0)
        );
        let suspended = schedule(json!({"suspend": true}));
        assert_eq!(
            overdue_servers(&[suspended], &[], &[], ts("2026-06-01T00:00:00Z")),
            (0, 0)
        );
        let invalid = schedule(json!({"schedule": "not cron"}));
        assert_eq!(
            overdue_servers(&[invalid], &[], &[], ts("2026-06-01T00:00:00Z")),
            (0, 0)
        );
    }

    #[test]
    fn backup_schedules_use_the_backup_deadline_and_jitter_widens_the_allowance() {
        let s = schedule(json!({"type": "Backup", "maxJitter": "1h"}));
        let jitter = schedule::stable_jitter("sched-uid", Duration::from_secs(3600));
        let complete_by = ts("2026-01-01T02:00:00Z")
            .checked_add(
                jiff::SignedDuration::try_from(jitter + Duration::from_secs(7200)).unwrap(),
            )
            .unwrap();
        let before = complete_by
            .checked_sub(jiff::SignedDuration::from_secs(1))
            .unwrap();
        let after = complete_by
            .checked_add(jiff::SignedDuration::from_secs(1))
            .unwrap();
        assert_eq!(
            overdue_servers(std::slice::from_ref(&s), &[], &[], before),
            (0, 0)
        );
        assert_eq!(overdue_servers(&[s], &[], &[], after), (0, 2));
    }

    #[test]
    fn occupancy_counts_held_slots_per_server_against_its_providers_limit() {
        let provider: Arc<VpsProvider> = Arc::new(
            serde_json::from_value(json!({
                "apiVersion": "vpsnap.dev/v1alpha1", "kind": "VpsProvider",
                "metadata": {"name": "p", "namespace": "ns"},
                "spec": {"type": "VpsRest", "endpoint": "https://x/", "credentialsSecretRef": {"name": "s"},
                         "limits": {"snapshotsPerServer": 2}}
            }))
            .unwrap(),
        );
        let objs = [
            snapshot("a", 1, "2026-01-01T00:00:00Z", "Ready", Some("1")),
            snapshot("b", 1, "2026-01-01T00:00:00Z", "Creating", None),
            snapshot("c", 1, "2026-01-01T00:00:00Z", "Evicted", Some("3")),
            snapshot("d", 2, "2026-01-01T00:00:00Z", "Failed", Some("4")),
            snapshot("e", 2, "2026-01-01T00:00:00Z", "Blocked", None),
        ];
        assert_eq!(
            occupancy(&objs, &[provider]),
            Occupancy {
                used: 3,
                limit: 4,
                servers: 2,
                full: 1
            }
        );
        assert_eq!(occupancy(&objs, &[]), Occupancy::default());
    }

    #[test]
    fn every_known_phase_is_counted_and_unknown_ones_are_not() {
        let counted = count_phases(
            &["Active", "Suspended"],
            ["Active", "Active", "Odd"].into_iter(),
        );
        assert_eq!(
            counted.into_iter().collect::<Vec<_>>(),
            [("Active", 2), ("Suspended", 0)]
        );
    }

    #[test]
    fn conditions_are_counted_by_type_status_and_reason() {
        let c = |t: &str, s: &str, r: &str| Condition {
            type_: t.into(),
            status: s.into(),
            reason: r.into(),
            message: String::new(),
            observed_generation: None,
            last_transition_time: k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                Timestamp::UNIX_EPOCH,
            ),
        };
        let a = [
            c("Ready", "False", "LimitReached"),
            c("Stalled", "True", "LimitReached"),
        ];
        let b = [
            c("Ready", "False", "LimitReached"),
            c("Stalled", "False", "LimitReached"),
        ];
        let counts = count_conditions([&a[..], &b[..], &[][..]].into_iter());
        let key = |t: &str, s: &str, r: &str| (t.to_string(), s.to_string(), r.to_string());
        assert_eq!(counts[&key("Ready", "False", "LimitReached")], 2);
        assert_eq!(counts[&key("Stalled", "True", "LimitReached")], 1);
        assert_eq!(counts.len(), 3);
    }
}
