//! `VpsOccupancy`: what occupies each server of one provider account, published by the
//! operator for `kubectl vpsnap servers` and `why` (which may talk only to the Kubernetes API,
//! never to the provider). Written only by the operator; users read it.
//!
//! One object per provider account and shard: servers are spread over `spec.shards` objects
//! by a stable hash of the server id, so a change on one server rewrites one object, and no
//! object nears the apiserver's ~1.5 MB limit (see `controller::occupancy` for the bounds).
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::ProviderRef;

#[derive(CustomResource, KubeSchema, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[kube(
    group = "vpsnap.dev",
    version = "v1alpha1",
    kind = "VpsOccupancy",
    plural = "vpsoccupancies",
    namespaced,
    status = "VpsOccupancyStatus",
    shortname = "vpso",
    category = "vpsnap",
    printcolumn = r#"{"name":"Provider","type":"string","jsonPath":".spec.providerRef.name"}"#,
    printcolumn = r#"{"name":"Shard","type":"integer","jsonPath":".spec.shard"}"#,
    printcolumn = r#"{"name":"Servers","type":"integer","jsonPath":".status.serverCount"}"#,
    printcolumn = r#"{"name":"Full","type":"integer","jsonPath":".status.full"}"#,
    printcolumn = r#"{"name":"Published","type":"date","jsonPath":".status.publishedAt"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct VpsOccupancySpec {
    /// The account this object describes.
    pub provider_ref: ProviderRef,
    /// This object's shard, `0 ≤ shard < shards`.
    #[schemars(range(min = 0))]
    pub shard: i32,
    /// How many shards the account's servers are spread over.
    #[schemars(range(min = 1))]
    pub shards: i32,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VpsOccupancyStatus {
    /// When this content was written (RFC 3339). Content is rewritten only when it changes
    /// (listing times alone refresh it at most every `controller::occupancy::REFRESH`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub published_at: Option<String>,
    /// Distinct servers in this shard.
    #[serde(default)]
    pub server_count: i64,
    /// Server/class pairs at or over their limit.
    #[serde(default)]
    pub full: i64,
    /// One entry per server and class (snapshots, backups), by server id.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub servers: Vec<ServerOccupancyStatus>,
}

/// Snapshots or backups: each has its own per-server limit.
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    JsonSchema,
)]
pub enum OccupancyClass {
    #[default]
    Snapshot,
    Backup,
}

impl OccupancyClass {
    pub fn as_str(self) -> &'static str {
        match self {
            OccupancyClass::Snapshot => "snapshot",
            OccupancyClass::Backup => "backup",
        }
    }
}

/// One server's snapshots (or backups) as the operator last listed them.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServerOccupancyStatus {
    pub server_id: i64,
    pub class: OccupancyClass,
    /// The account's per-server limit for this class.
    pub limit: i64,
    /// Slots in use: everything the provider lists (all owners, in progress included).
    pub used: i64,
    /// When the provider last listed this server (RFC 3339); absent: not listed yet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listed_at: Option<String>,
    /// False when the provider's listing was incomplete (it reported more than it returned).
    #[serde(default)]
    pub complete: bool,
    /// What occupies the server, oldest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub items: Vec<Occupant>,
    /// Items left out of `items` to bound the object's size (`used` still counts them).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub items_omitted: i64,
    /// Provider ids garbage collection would evict next, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub next_evictions: Vec<String>,
    /// Declared objects that wait for room, and why.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub blocked: Vec<BlockedObject>,
}

fn is_zero(n: &i64) -> bool {
    *n == 0
}

/// State of an occupant as far as capacity planning cares.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum OccupantState {
    InProgress,
    Completed,
    Failed,
    #[default]
    Unknown,
}

/// Who an occupant belongs to.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum OwnerKind {
    /// Made outside vpsnap (by hand, another tool, or retained after its object went):
    /// counted, never touched.
    #[default]
    Foreign,
    /// The provider's own automatic backup: counted, never touched.
    Automatic,
    /// A `VpsSnapshot`/`VpsBackup` in the provider's namespace (`object`).
    Declared,
}

/// One snapshot or backup the provider lists for the server.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Occupant {
    /// Provider id.
    pub id: String,
    /// Name (snapshots) or description (backups) at the provider, shortened.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// Status exactly as the provider reports it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider_status: Option<String>,
    pub state: OccupantState,
    /// Creation time at the provider (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<String>,
    pub owner: OwnerKind,
    /// Being deleted (by the provider, or by vpsnap and still listed): it counts against the
    /// limit until the provider stops listing it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub leaving: bool,
    /// Declared only: the object's name (same namespace).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub pinned: bool,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub evictable: bool,
}

/// A declared object waiting for room on the server.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BlockedObject {
    pub object: String,
    /// `LimitReached` (nothing may be evicted) or `WaitingForRoom` (an eviction is under way).
    pub reason: String,
}
