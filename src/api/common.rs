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

/// Parses the duration format the schema admits (`^([0-9]+(ms|s|m|h))+$`), e.g. `1h30m`.
pub fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    let mut total = std::time::Duration::ZERO;
    let mut rest = text;
    if rest.is_empty() {
        return Err("empty duration: use e.g. 30s, 5m or 1h".into());
    }
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits == 0 {
            return Err(format!(
                "{text:?} is not a duration: use e.g. 30s, 5m or 1h"
            ));
        }
        let n: u64 = rest[..digits]
            .parse()
            .map_err(|_| format!("{text:?}: number too large"))?;
        rest = &rest[digits..];
        let (unit, len) = if rest.starts_with("ms") {
            (std::time::Duration::from_millis(1), 2)
        } else if rest.starts_with('s') {
            (std::time::Duration::from_secs(1), 1)
        } else if rest.starts_with('m') {
            (std::time::Duration::from_secs(60), 1)
        } else if rest.starts_with('h') {
            (std::time::Duration::from_secs(3600), 1)
        } else {
            return Err(format!("{text:?}: unit must be ms, s, m or h"));
        };
        total += unit * u32::try_from(n).map_err(|_| format!("{text:?}: number too large"))?;
        rest = &rest[len..];
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::parse_duration;
    use std::time::Duration;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert!(parse_duration("").is_err());
        assert!(parse_duration("5d").is_err());
        assert!(parse_duration("m").is_err());
    }
}
