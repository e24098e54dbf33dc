//! `VpsRestore`: one restore of one server from a snapshot or a backup. One-shot: the spec is
//! immutable and the controller sends the provider call at most once per object, ever.
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::ProviderRef;

#[derive(CustomResource, KubeSchema, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[kube(
    group = "vpsnap.dev",
    version = "v1alpha1",
    kind = "VpsRestore",
    namespaced,
    status = "VpsRestoreStatus",
    shortname = "vpsr",
    category = "vpsnap",
    printcolumn = r#"{"name":"Server","type":"integer","jsonPath":".spec.serverId"}"#,
    printcolumn = r#"{"name":"Source","type":"string","jsonPath":".status.source"}"#,
    printcolumn = r#"{"name":"Phase","type":"string","jsonPath":".status.phase"}"#,
    printcolumn = r#"{"name":"Succeeded","type":"string","jsonPath":".status.conditions[?(@.type==\"Succeeded\")].status"}"#,
    printcolumn = r#"{"name":"Reason","type":"string","jsonPath":".status.conditions[?(@.type==\"Succeeded\")].reason","priority":1}"#,
    printcolumn = r#"{"name":"Provider-ID","type":"string","jsonPath":".status.sourceProviderId","priority":1}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[x_kube(validation = Rule::new("self == oldSelf").message("VpsRestore is one-shot: create a new object to restore again"))]
// `format()` (CEL strings v2, Kubernetes ≥ 1.29) rather than `+ string(...)`: the apiserver
// estimates string concatenation as unbounded in cost and refuses the whole CRD.
#[x_kube(validation = Rule::new("self.acknowledgeDataLoss == true").message(Message::Expression("'acknowledgeDataLoss must be true: a restore overwrites all data on server %d and cannot be undone'.format([self.serverId])".into())).field_path(".acknowledgeDataLoss"))]
#[serde(rename_all = "camelCase")]
pub struct VpsRestoreSpec {
    /// The `VpsProvider` (same namespace) whose account holds the server.
    pub provider_ref: ProviderRef,
    /// Provider's id of the server to overwrite (integer ≥ 1).
    #[schemars(range(min = 1))]
    pub server_id: i64,
    /// What to restore from: exactly one of `snapshotRef`, `backupRef`, `snapshotId`, `backupId`.
    pub source: RestoreSource,
    /// Must be `true`: the restore overwrites every byte on the server and cannot be undone.
    pub acknowledge_data_loss: bool,
    /// Take a `VpsSnapshot` named `<this name>-before-restore` first (kept after this object
    /// is deleted). When it cannot be taken (limit reached, failure), the restore goes ahead
    /// without it and says so in its condition and an Event.
    #[serde(default)]
    pub snapshot_before_restore: bool,
}

/// The restore source: a vpsnap object in this namespace, or a provider id as is.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, KubeSchema)]
#[x_kube(validation = Rule::new("(has(self.snapshotRef) ? 1 : 0) + (has(self.backupRef) ? 1 : 0) + (has(self.snapshotId) ? 1 : 0) + (has(self.backupId) ? 1 : 0) == 1").message("set exactly one of source.snapshotRef, source.backupRef, source.snapshotId or source.backupId"))]
#[serde(rename_all = "camelCase")]
pub struct RestoreSource {
    /// A `VpsSnapshot` in this namespace; it must be Ready, on the same provider and server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot_ref: Option<LocalObjectRef>,
    /// A `VpsBackup` in this namespace; it must be Ready, on the same provider and server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup_ref: Option<LocalObjectRef>,
    /// A provider snapshot id of this server (also one vpsnap does not manage).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[0-9]+$"), length(min = 1, max = 64))]
    pub snapshot_id: Option<String>,
    /// A provider backup id of this server (manual or automatic).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[0-9]+$"), length(min = 1, max = 64))]
    pub backup_id: Option<String>,
}

/// Name of an object of a known kind in the same namespace.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LocalObjectRef {
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}

/// Whether a restore source is a snapshot or a backup (they use different provider calls).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RestoreKind {
    Snapshot,
    Backup,
}

impl RestoreKind {
    pub fn as_str(self) -> &'static str {
        match self {
            RestoreKind::Snapshot => "snapshot",
            RestoreKind::Backup => "backup",
        }
    }
}

/// The source as the controller uses it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SourceSpec<'a> {
    /// A `VpsSnapshot`/`VpsBackup` by name.
    Ref { kind: RestoreKind, name: &'a str },
    /// A provider id, used as is.
    Id { kind: RestoreKind, id: &'a str },
}

impl RestoreSource {
    /// The one source set; `None` when admission was bypassed and none (or several) is set.
    pub fn get(&self) -> Option<SourceSpec<'_>> {
        let all = [
            self.snapshot_ref.as_ref().map(|r| SourceSpec::Ref {
                kind: RestoreKind::Snapshot,
                name: &r.name,
            }),
            self.backup_ref.as_ref().map(|r| SourceSpec::Ref {
                kind: RestoreKind::Backup,
                name: &r.name,
            }),
            self.snapshot_id.as_deref().map(|id| SourceSpec::Id {
                kind: RestoreKind::Snapshot,
                id,
            }),
            self.backup_id.as_deref().map(|id| SourceSpec::Id {
                kind: RestoreKind::Backup,
                id,
            }),
        ];
        let mut set = all.into_iter().flatten();
        match (set.next(), set.next()) {
            (Some(one), None) => Some(one),
            _ => None,
        }
    }
}

impl SourceSpec<'_> {
    pub fn kind(&self) -> RestoreKind {
        match self {
            SourceSpec::Ref { kind, .. } | SourceSpec::Id { kind, .. } => *kind,
        }
    }

    /// Short form for the printer column, e.g. `VpsSnapshot/pre-upgrade` or `backup/501`.
    pub fn describe(&self) -> String {
        match self {
            SourceSpec::Ref {
                kind: RestoreKind::Snapshot,
                name,
            } => format!("VpsSnapshot/{name}"),
            SourceSpec::Ref {
                kind: RestoreKind::Backup,
                name,
            } => format!("VpsBackup/{name}"),
            SourceSpec::Id { kind, id } => format!("{}/{id}", kind.as_str()),
        }
    }
}

/// Convenience phase for printer columns; conditions carry the authoritative state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum RestorePhase {
    /// Waiting for the provider, the source, or a retry.
    #[default]
    Pending,
    /// Waiting for the safety snapshot (`snapshotBeforeRestore`).
    PreSnapshot,
    /// The restore request is being sent.
    Restoring,
    /// The provider accepted the restore; it runs in the background at the provider.
    Succeeded,
    /// Final: not restored, or the outcome is unknown. Never retried.
    Failed,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VpsRestoreStatus {
    /// Generation of the spec this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<RestorePhase>,
    /// The source in short form, e.g. `VpsSnapshot/pre-upgrade` or `backup/501`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// Provider id of the snapshot or backup restored from, once resolved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_provider_id: Option<String>,
    /// Name of the safety `VpsSnapshot` taken before the restore (`snapshotBeforeRestore`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pre_restore_snapshot: Option<String>,
    /// Why the restore went ahead without its safety snapshot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pre_restore_snapshot_skipped: Option<String>,
    /// When vpsnap started acting on this restore (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<String>,
    /// Written (durably) just before the restore call. Set without `restoreAcceptedAt`, the
    /// outcome is unknown and the call is never sent again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restore_requested_at: Option<String>,
    /// When the provider accepted the restore call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restore_accepted_at: Option<String>,
    /// When the restore reached `Succeeded`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_time: Option<String>,
    /// Last error, scrubbed of secrets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// `Succeeded` (Unknown while in progress), `Reconciling`, `Stalled`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn by_ref(name: &str) -> LocalObjectRef {
        LocalObjectRef { name: name.into() }
    }

    #[test]
    fn exactly_one_source_is_usable() {
        let none = RestoreSource::default();
        assert_eq!(none.get(), None);
        let snap = RestoreSource {
            snapshot_ref: Some(by_ref("a")),
            ..Default::default()
        };
        assert_eq!(
            snap.get(),
            Some(SourceSpec::Ref {
                kind: RestoreKind::Snapshot,
                name: "a"
            })
        );
        assert_eq!(snap.get().unwrap().describe(), "VpsSnapshot/a");
        let id = RestoreSource {
            backup_id: Some("501".into()),
            ..Default::default()
        };
        assert_eq!(id.get().unwrap().describe(), "backup/501");
        assert_eq!(id.get().unwrap().kind(), RestoreKind::Backup);
        let two = RestoreSource {
            snapshot_ref: Some(by_ref("a")),
            backup_id: Some("501".into()),
            ..Default::default()
        };
        assert_eq!(two.get(), None, "two sources must never pick one silently");
    }
}
