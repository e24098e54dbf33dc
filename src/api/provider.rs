//! `VpsProvider`: one provider account, its credentials and its limits.
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Which provider API an account speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum ProviderType {
    /// The JSON REST API (`/api/v1/snapshots/`, `/api/v1/backups/`), bearer token.
    VpsRest,
    /// Zomro's BILLmanager-style API (form POST with `func`), login and password.
    Zomro,
}

/// How the Zomro client authenticates.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum ZomroAuthMode {
    /// `func=auth` once, then the session id on every call; renewed when it lapses.
    #[default]
    Session,
    /// `authinfo=login:password` on every call (stateless).
    AuthInfo,
}

#[derive(CustomResource, KubeSchema, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[kube(
    group = "vpsnap.dev",
    version = "v1alpha1",
    kind = "VpsProvider",
    namespaced,
    status = "VpsProviderStatus",
    shortname = "vpsp",
    category = "vpsnap",
    printcolumn = r#"{"name":"Type","type":"string","jsonPath":".spec.type"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Reason","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].reason"}"#,
    printcolumn = r#"{"name":"Endpoint","type":"string","jsonPath":".spec.endpoint","priority":1}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct VpsProviderSpec {
    /// Provider API: `VpsRest` or `Zomro`. Immutable.
    #[serde(rename = "type")]
    #[x_kube(validation = Rule::new("self == oldSelf").message("type is immutable: create a new VpsProvider instead"))]
    pub type_: ProviderType,
    /// Base URL of the API, e.g. `https://admin.vps.org/api/v1/` or `https://api.zomro.com/`.
    #[schemars(regex(pattern = r"^https?://[^\s/?#]+(/[^\s]*)?$"), length(max = 2048))]
    pub endpoint: String,
    /// Secret in this namespace with the credentials.
    pub credentials_secret_ref: CredentialsSecretRef,
    /// Zomro only: session login (default) or `authinfo` on every call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zomro_auth: Option<ZomroAuthMode>,
    /// Per-server limits of this account.
    #[serde(default)]
    pub limits: ProviderLimits,
    /// How often in-flight operations are polled, e.g. `15s`.
    #[serde(default = "default_poll_interval")]
    #[schemars(regex(pattern = super::duration::PATTERN), length(min = 1))]
    pub poll_interval: String,
    /// How often a server whose objects are all settled is listed again, e.g. `10m`.
    #[serde(default = "default_resync_interval")]
    #[schemars(regex(pattern = super::duration::PATTERN), length(min = 1))]
    pub resync_interval: String,
    /// Requests per second to this account, shared by all controllers.
    #[serde(default = "default_rps")]
    #[schemars(range(min = 1, max = 1000))]
    pub requests_per_second: i32,
    /// Requests in flight at once to this account.
    #[serde(default = "default_in_flight")]
    #[schemars(range(min = 1, max = 256))]
    pub max_in_flight: i32,
    /// Deletions of provider data (outside GC) that may start within `window` before the
    /// breaker holds the rest until acknowledged.
    #[serde(default)]
    pub deletion_breaker: DeletionBreaker,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CredentialsSecretRef {
    /// Name of the Secret in the provider's namespace.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProviderLimits {
    /// Snapshots the provider allows per server (all of them, not only vpsnap's).
    #[serde(default = "default_snapshot_limit")]
    #[schemars(range(min = 1, max = 1000))]
    pub snapshots_per_server: i32,
    /// Backups (manual and automatic together) the provider allows per server.
    #[serde(default = "default_backup_limit")]
    #[schemars(range(min = 1, max = 1000))]
    pub backups_per_server: i32,
}

impl Default for ProviderLimits {
    fn default() -> Self {
        Self {
            snapshots_per_server: default_snapshot_limit(),
            backups_per_server: default_backup_limit(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeletionBreaker {
    /// Deletions allowed per window before the breaker trips.
    #[serde(default = "default_breaker_max")]
    #[schemars(range(min = 1))]
    pub max_deletions: i32,
    /// Length of the window, e.g. `5m`.
    #[serde(default = "default_breaker_window")]
    #[schemars(regex(pattern = super::duration::PATTERN), length(min = 1))]
    pub window: String,
}

impl Default for DeletionBreaker {
    fn default() -> Self {
        Self {
            max_deletions: default_breaker_max(),
            window: default_breaker_window(),
        }
    }
}

fn default_poll_interval() -> String {
    "15s".into()
}
fn default_resync_interval() -> String {
    "10m".into()
}
fn default_rps() -> i32 {
    5
}
fn default_in_flight() -> i32 {
    4
}
fn default_snapshot_limit() -> i32 {
    5
}
fn default_backup_limit() -> i32 {
    10
}
fn default_breaker_max() -> i32 {
    10
}
fn default_breaker_window() -> String {
    "5m".into()
}

/// What this account can do, as far as vpsnap knows.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Capabilities {
    pub snapshots: bool,
    pub backups: bool,
    pub snapshot_restore: bool,
    pub backup_restore: bool,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VpsProviderStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capabilities: Option<Capabilities>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// resourceVersion of the credentials Secret last checked, to notice rotations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_version: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
}
