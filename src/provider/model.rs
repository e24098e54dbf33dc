//! Provider-neutral view of snapshots and backups, normalised from either API.
use std::time::Duration;

use super::Secret;

/// State of a provider object, normalised; the raw provider string is always kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RemoteState {
    /// Being made (`in_progress`, `Saving`, `Queued`).
    Pending,
    /// Usable as a restore point (`completed`, `Active`).
    Ready,
    /// The provider says it failed (`failed`, `error`, `Killed`, …).
    Failed,
    /// On its way out (`Deleted`, `Pending_delete`, `Deactivated`).
    Gone,
    /// Anything undocumented.
    Unknown,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteSnapshot {
    pub id: String,
    pub server_id: u64,
    pub name: String,
    pub description: Option<String>,
    pub state: RemoteState,
    /// Status exactly as the provider sent it.
    pub raw_status: String,
    /// Provider creation time; Zomro gives a date only (midnight UTC is used).
    pub created_at: Option<jiff::Timestamp>,
    pub size_mb: Option<u64>,
    /// Zomro `protected: on`: the provider refuses deletion.
    pub protected: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackupKind {
    Manual,
    Automatic,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteBackup {
    pub id: String,
    pub server_id: u64,
    pub kind: BackupKind,
    pub description: Option<String>,
    pub state: RemoteState,
    pub raw_status: String,
    pub created_at: Option<jiff::Timestamp>,
    pub expires_at: Option<jiff::Timestamp>,
    pub size_mb: Option<u64>,
}

/// A list answer. `complete` is false when the provider said there are more items than it
/// returned (VpsRest `count` > `len(results)`): absence from an incomplete list proves nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listing<T> {
    pub items: Vec<T>,
    pub complete: bool,
}

/// What an account can do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProviderCapabilities {
    pub snapshots: bool,
    pub backups: bool,
    pub snapshot_restore: bool,
    pub backup_restore: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credentials {
    /// VpsRest: `Authorization: Bearer <token>`.
    Bearer { token: Secret },
    /// Zomro: login + password, as a session (`func=auth`) or `authinfo` on every call.
    Login {
        username: Secret,
        password: Secret,
        session: bool,
    },
}

/// Everything needed to talk to one account.
#[derive(Debug, Clone)]
pub struct ProviderConfig {
    pub endpoint: String,
    pub credentials: Credentials,
    pub requests_per_second: u32,
    pub burst: u32,
    pub max_in_flight: u32,
    pub request_timeout: Duration,
    /// Per-server snapshot limit, used to tell "limit reached" from "invalid" after a 400.
    pub snapshot_limit: u32,
    /// Per-server backup limit (manual and automatic together), same use as `snapshot_limit`.
    pub backup_limit: u32,
    /// Admits requests only while this process may act for the account (leadership).
    pub fence: Option<std::sync::Arc<dyn super::Fence>>,
}

/// Which provider API an account speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProviderKind {
    VpsRest,
    Zomro,
}

impl ProviderKind {
    /// Bounded label for metrics and logs.
    pub fn label(self) -> &'static str {
        match self {
            ProviderKind::VpsRest => "vps_rest",
            ProviderKind::Zomro => "zomro",
        }
    }
}
