//! `VpsSnapshot`: one snapshot of one server.
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use super::{DeletionPolicy, ProviderRef, RestorePointStatus};

#[derive(CustomResource, KubeSchema, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[kube(
    group = "vpsnap.dev",
    version = "v1alpha1",
    kind = "VpsSnapshot",
    namespaced,
    status = "RestorePointStatus",
    shortname = "vpss",
    category = "vpsnap",
    printcolumn = r#"{"name":"Server","type":"integer","jsonPath":".spec.serverId"}"#,
    printcolumn = r#"{"name":"Phase","type":"string","jsonPath":".status.phase"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Size","type":"string","jsonPath":".status.size"}"#,
    printcolumn = r#"{"name":"Provider-ID","type":"string","jsonPath":".status.providerId","priority":1}"#,
    printcolumn = r#"{"name":"Reason","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].reason","priority":1}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[x_kube(validation = Rule::new("has(self.snapshotName) == has(oldSelf.snapshotName)").message("snapshotName is immutable: it cannot be added or removed after creation"))]
#[x_kube(validation = Rule::new("has(self.importId) == has(oldSelf.importId)").message("importId is immutable: it cannot be added or removed after creation"))]
#[x_kube(validation = Rule::new("!(has(self.importId) && has(self.snapshotName))").message("set either importId (adopt an existing snapshot) or snapshotName (create one), not both"))]
#[serde(rename_all = "camelCase")]
pub struct VpsSnapshotSpec {
    /// The `VpsProvider` (same namespace) whose account holds the server. Immutable.
    #[x_kube(validation = Rule::new("self == oldSelf").message("providerRef is immutable"))]
    pub provider_ref: ProviderRef,
    /// Provider's server id (integer ≥ 1). Immutable.
    #[schemars(range(min = 1))]
    #[x_kube(validation = Rule::new("self == oldSelf").message("serverId is immutable"))]
    pub server_id: i64,
    /// Name at the provider: letters, digits, `-` and `_` only. Defaults to one derived from
    /// this object's name and UID. Immutable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[A-Za-z0-9_-]+$"), length(min = 1, max = 100))]
    #[x_kube(validation = Rule::new("self == oldSelf").message("snapshotName is immutable"))]
    pub snapshot_name: Option<String>,
    /// Free-text description stored with the snapshot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1000))]
    pub description: Option<String>,
    /// `Delete` (default) removes the provider snapshot with this object; `Retain` keeps it.
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,
    /// Adopt an existing provider snapshot by its provider id instead of creating one. Immutable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 64))]
    #[x_kube(validation = Rule::new("self == oldSelf").message("importId is immutable"))]
    pub import_id: Option<String>,
    /// A pinned snapshot is never evicted to make room.
    #[serde(default)]
    pub pinned: bool,
    /// Allow the operator to evict this snapshot when the server is full and a newer one is due.
    #[serde(default)]
    pub evictable: bool,
    /// How long creation may take before the object is marked `Stalled`, e.g. `30m`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = super::duration::PATTERN), length(min = 1))]
    pub failure_deadline: Option<String>,
}
