//! Spec and status pieces shared by several kinds.
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Reference to a `VpsProvider` in the same namespace.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProviderRef {
    /// Name of the `VpsProvider` object in this namespace.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}

/// What happens to the provider-side object when the Kubernetes object is deleted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum DeletionPolicy {
    /// Delete the snapshot or backup at the provider before the object goes.
    #[default]
    Delete,
    /// Leave the provider-side object in place.
    Retain,
}

/// Convenience phase for printer columns; conditions carry the authoritative state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum Phase {
    #[default]
    Pending,
    Creating,
    Ready,
    Failed,
    Blocked,
    Evicted,
    Deleting,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Pending => "Pending",
            Phase::Creating => "Creating",
            Phase::Ready => "Ready",
            Phase::Failed => "Failed",
            Phase::Blocked => "Blocked",
            Phase::Evicted => "Evicted",
            Phase::Deleting => "Deleting",
        }
    }
}

/// Record written to status *before* a provider create call, so that a crash between the
/// call and the next status write is recognised on restart: the object then lists and adopts
/// instead of creating again.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CreateIntent {
    /// Name (snapshots) or description tag (backups) the provider object carries.
    pub marker: String,
    /// When the create call was about to be sent (RFC 3339).
    pub requested_at: String,
}

/// Status shared by `VpsSnapshot` and `VpsBackup`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RestorePointStatus {
    /// Generation of the spec this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<Phase>,
    /// Identifier of the object at the provider.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider_id: Option<String>,
    /// Name of the object at the provider (snapshots).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider_name: Option<String>,
    /// Status string exactly as the provider reported it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider_status: Option<String>,
    /// Size in MiB as the provider reports it, once complete.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size_mb: Option<i64>,
    /// Human-readable size for printer columns, e.g. `5120Mi`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<String>,
    /// Creation time reported by the provider (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider_created_at: Option<String>,
    /// The last create vpsnap sent. The durable record is the annotation
    /// `vpsnap.dev/create-requested-at`, written with the finalizer before the call; this
    /// mirrors it (objects from earlier versions carry it only here).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub create_intent: Option<CreateIntent>,
    /// Last error, scrubbed of secrets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
}

/// Parses a duration of the CRDs' grammar (see [`super::duration`]), e.g. `1h30m`.
pub fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    super::duration::parse(text)
}
