//! `VpsSnapshotSchedule`: cron + time zone making `VpsSnapshot` (or `VpsBackup`) children for
//! one or more servers, with retention.
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

use super::{DeletionPolicy, ProviderRef};

/// What a schedule makes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum ScheduleType {
    /// `VpsSnapshot` children.
    #[default]
    Snapshot,
    /// `VpsBackup` children.
    Backup,
}

/// What happens to the children (and their provider data) when the schedule is deleted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum ChildDeletionPolicy {
    /// Children stay as standalone objects; their provider data is kept.
    #[default]
    Orphan,
    /// Children are deleted with the schedule (and their provider data with them, per each
    /// child's `deletionPolicy`).
    Delete,
}

#[derive(CustomResource, KubeSchema, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[kube(
    group = "vpsnap.dev",
    version = "v1alpha1",
    kind = "VpsSnapshotSchedule",
    namespaced,
    status = "VpsSnapshotScheduleStatus",
    shortname = "vpsss",
    category = "vpsnap",
    printcolumn = r#"{"name":"Schedule","type":"string","jsonPath":".spec.schedule"}"#,
    printcolumn = r#"{"name":"Type","type":"string","jsonPath":".spec.type"}"#,
    printcolumn = r#"{"name":"Suspend","type":"boolean","jsonPath":".spec.suspend"}"#,
    printcolumn = r#"{"name":"Last","type":"date","jsonPath":".status.lastScheduleTime"}"#,
    printcolumn = r#"{"name":"Next","type":"string","jsonPath":".status.nextScheduleTime"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct VpsSnapshotScheduleSpec {
    /// The `VpsProvider` (same namespace) whose account holds the servers. Immutable.
    #[x_kube(validation = Rule::new("self == oldSelf").message("providerRef is immutable"))]
    pub provider_ref: ProviderRef,
    /// Servers to snapshot (provider ids, each ≥ 1).
    #[schemars(length(min = 1, max = 500))]
    #[x_kube(validation = Rule::new("self.all(s, s >= 1)").message("serverIds must all be integers ≥ 1"))]
    pub server_ids: Vec<i64>,
    /// `Snapshot` (default) or `Backup`. Immutable.
    #[serde(default, rename = "type")]
    #[x_kube(validation = Rule::new("self == oldSelf").message("type is immutable"))]
    pub type_: ScheduleType,
    /// Cron expression: 5 fields (`min hour day month weekday`), or 6 with leading seconds;
    /// `@hourly`, `@daily`, `@weekly`, `@monthly` also work.
    #[schemars(length(min = 1, max = 200))]
    pub schedule: String,
    /// IANA time zone the expression is read in, e.g. `Europe/Berlin`.
    #[serde(default = "default_tz")]
    #[schemars(length(min = 1, max = 64))]
    pub time_zone: String,
    /// Stop making children (retention also pauses).
    #[serde(default)]
    pub suspend: bool,
    /// A missed run (operator down) still starts if it is at most this late, e.g. `10m`.
    /// Unset: the latest missed run always starts, once. Older missed runs never do.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = super::duration::PATTERN), length(min = 1))]
    pub starting_deadline: Option<String>,
    /// Upper bound of the stable per-schedule delay that spreads a fleet's schedules.
    #[serde(default = "default_jitter")]
    #[schemars(regex(pattern = super::duration::PATTERN), length(min = 1))]
    pub max_jitter: String,
    /// Which children to keep: the union of every rule. No rule: keep everything.
    #[serde(default)]
    pub retention: RetentionSpec,
    /// Copied into every child.
    #[serde(default)]
    pub template: ChildTemplate,
    /// `Orphan` (default) keeps the children and their provider data when the schedule is
    /// deleted; `Delete` deletes them.
    #[serde(default)]
    pub child_deletion_policy: ChildDeletionPolicy,
}

fn default_tz() -> String {
    "UTC".into()
}
fn default_jitter() -> String {
    "30s".into()
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RetentionSpec {
    /// Keep the N newest completed children.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1000))]
    pub keep_last: Option<i32>,
    /// Keep every completed child younger than this, e.g. `72h`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = super::duration::PATTERN), length(min = 1))]
    pub max_age: Option<String>,
    /// Keep the newest completed child of each of the last N hours / days / weeks / months /
    /// years (calendar periods in `timeZone`; periods without a child use no slot).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1000))]
    pub hourly: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1000))]
    pub daily: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1000))]
    pub weekly: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1000))]
    pub monthly: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1000))]
    pub yearly: Option<i32>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ChildTemplate {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 900))]
    pub description: Option<String>,
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,
    /// Labels added to every child (Argo CD tracking labels are never copied).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = super::duration::PATTERN), length(min = 1))]
    pub failure_deadline: Option<String>,
}

/// Retention as applied to one server.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServerRetention {
    pub server_id: i64,
    /// Children kept, oldest first, each with the rules that keep it.
    pub kept: Vec<KeptChild>,
    /// Children kept now that the next run pushes out of retention, oldest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub next_to_prune: Vec<String>,
}

/// A child retention keeps, and why.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct KeptChild {
    pub name: String,
    /// Every rule that keeps it: `pinned`, `in-progress`, `newest-ready`, `keep-last`,
    /// `max-age`, `hourly`, `daily`, `weekly`, `monthly`, `yearly`, `no-policy`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rules: Vec<String>,
}

/// Statuses written by earlier versions list kept children as bare names; both read.
impl<'de> Deserialize<'de> for KeptChild {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Repr {
            Name(String),
            Full {
                name: String,
                #[serde(default)]
                rules: Vec<String>,
            },
        }
        Ok(match Repr::deserialize(d)? {
            Repr::Name(name) => KeptChild {
                name,
                rules: Vec::new(),
            },
            Repr::Full { name, rules } => KeptChild { name, rules },
        })
    }
}

/// Annotation on a `VpsSnapshotSchedule` asking for one run now, outside the cron times.
/// Value: an RFC 3339 time (`kubectl vpsnap run` writes the current one); the operator answers
/// each value once, in `status.lastRunRequest`, so re-applying the same value does nothing.
pub const RUN_REQUESTED_ANNOTATION: &str = "vpsnap.dev/run-requested";

/// How the operator answered the `vpsnap.dev/run-requested` annotation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum RunRequestOutcome {
    /// The run happened: `children` were created (or already existed), `skippedServers`
    /// had an operation in flight.
    Ran,
    /// The value is not an RFC 3339 time, lies in the future, or is too old to act on.
    Rejected,
    /// The schedule is suspended: no run.
    Suspended,
}

/// The last `vpsnap.dev/run-requested` value the operator handled, and how.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RunRequestStatus {
    /// The annotation's value, as written.
    pub token: String,
    pub outcome: RunRequestOutcome,
    /// When the operator handled it (RFC 3339).
    pub handled_at: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
    /// Children of this run, one per server that had no operation in flight.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub children: Vec<String>,
    /// Servers skipped because an operation was still in flight there.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub skipped_servers: Vec<i64>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VpsSnapshotScheduleStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Active`, `Suspended` or `Failed` (invalid spec).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
    /// Scheduled time of the last run considered (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_schedule_time: Option<String>,
    /// When the next run fires, jitter included (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_schedule_time: Option<String>,
    /// Runs skipped because the operator was down past the starting deadline, in total.
    #[serde(default)]
    pub missed_runs: i64,
    /// Children that exist now, by state.
    #[serde(default)]
    pub children: ChildCounts,
    /// The retention plan per server: what is kept and what goes next.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub retention: Vec<ServerRetention>,
    /// The last `vpsnap.dev/run-requested` annotation value handled (each value runs once).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_run_request: Option<RunRequestStatus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ChildCounts {
    pub total: i64,
    pub ready: i64,
    pub in_progress: i64,
    pub failed: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kept_children_read_in_both_shapes() {
        let old: ServerRetention =
            serde_json::from_value(serde_json::json!({"serverId": 1, "kept": ["a"]})).unwrap();
        assert_eq!(
            old.kept,
            vec![KeptChild {
                name: "a".into(),
                rules: vec![]
            }]
        );
        let new: ServerRetention = serde_json::from_value(serde_json::json!({
            "serverId": 1, "kept": [{"name": "b", "rules": ["keep-last", "daily"]}]
        }))
        .unwrap();
        assert_eq!(new.kept[0].rules, vec!["keep-last", "daily"]);
        let round: ServerRetention =
            serde_json::from_value(serde_json::to_value(&new).unwrap()).unwrap();
        assert_eq!(round, new);
    }
}
