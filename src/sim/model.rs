//! Public, serialisable views of the simulator's objects and of its history.

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Which API façade an action came through. Both façades share one store of servers and
/// snapshots, so one simulated backend can be driven through either provider's protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SimApi {
    VpsRest,
    Zomro,
    /// Created through the inspection endpoints or the library (objects the operator did not make).
    Inspect,
    /// Seeded at start (automatic backups).
    Seed,
}

/// Provider-side lifecycle of a snapshot or backup, independent of how each API spells it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SimStatus {
    InProgress,
    Completed,
    Failed,
    /// Deleted, but still listed until the provider finishes removing it (`delete_linger`).
    Deleting,
    /// An undocumented status, surfaced verbatim (lower case as VpsRest spells it).
    Other(String),
}

impl SimStatus {
    /// The VpsRest spelling.
    pub fn vps_rest(&self) -> String {
        match self {
            Self::InProgress => "in_progress".into(),
            Self::Completed => "completed".into(),
            Self::Failed => "failed".into(),
            Self::Deleting => "deleting".into(),
            Self::Other(s) => s.clone(),
        }
    }

    /// The Zomro `fleio_status` spelling (OpenStack image states, capitalised).
    pub fn zomro(&self) -> String {
        match self {
            Self::InProgress => "Saving".into(),
            Self::Completed => "Active".into(),
            Self::Failed => "Killed".into(),
            Self::Deleting => "Pending_delete".into(),
            Self::Other(s) => {
                let mut chars = s.chars();
                match chars.next() {
                    Some(first) => first.to_uppercase().chain(chars).collect(),
                    None => String::new(),
                }
            }
        }
    }

    /// Parses either API's spelling, case-insensitively; anything else becomes `Other`.
    pub fn parse(text: &str) -> Self {
        match text.to_ascii_lowercase().as_str() {
            "in_progress" | "saving" => Self::InProgress,
            "completed" | "active" => Self::Completed,
            "failed" | "killed" => Self::Failed,
            "deleting" | "pending_delete" => Self::Deleting,
            other => Self::Other(other.to_string()),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BackupType {
    Manual,
    Automatic,
}

impl BackupType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Manual => "manual",
            Self::Automatic => "automatic",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SimServer {
    pub id: u64,
    pub name: String,
    /// `running` or `restoring`.
    pub status: String,
}

/// A snapshot as the provider holds it right now (status already advanced by elapsed time).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SimSnapshot {
    pub id: u64,
    pub server: u64,
    pub name: String,
    pub description: Option<String>,
    pub status: SimStatus,
    /// Set only once completed.
    pub size_mb: Option<u64>,
    pub created_at: Timestamp,
    /// Zomro's `protected: on`: `image.delete` refuses it. VpsRest has no such notion.
    pub protected: bool,
    /// Not created through an API create call (inspection endpoint or library).
    pub foreign: bool,
    pub created_via: SimApi,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SimBackup {
    pub id: u64,
    pub server: u64,
    pub backup_type: BackupType,
    pub description: Option<String>,
    pub status: SimStatus,
    pub size_mb: Option<u64>,
    pub created_at: Timestamp,
    /// One month after creation for automatic backups; `None` for manual ones.
    pub expires_at: Option<Timestamp>,
    pub foreign: bool,
    pub created_via: SimApi,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ObjectKind {
    Snapshot,
    Backup,
}

/// Who made an API call: its number in the call log and the `User-Agent` it sent, so a
/// history entry can be traced to the process that caused it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Caller {
    /// Index in the call log (`GET /_sim/log`); `None` for inspection and seeding.
    #[serde(default)]
    pub call: Option<u64>,
    #[serde(default)]
    pub user_agent: Option<String>,
}

/// One API request as it arrived (inspection requests are not logged).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallRecord {
    /// Position in the log, from 0.
    pub n: u64,
    pub at: Timestamp,
    pub api: SimApi,
    /// The endpoint key counted in `/_sim/calls`, e.g. `vps_rest.snapshots.create`.
    pub endpoint: String,
    pub user_agent: Option<String>,
    /// The request-level fault that answered instead of the handler (`rate_429`,
    /// `error_5xx`, `timeout`, `drop`), if any.
    pub fault: Option<String>,
}

/// One object creation. `seq` orders all history entries (creates, deletes, restores) globally.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreateRecord {
    pub seq: u64,
    pub at: Timestamp,
    pub api: SimApi,
    pub kind: ObjectKind,
    pub server: u64,
    pub id: u64,
    /// Backups have no name.
    pub name: Option<String>,
    pub description: Option<String>,
    /// The object was created but the client never got the answer (lost-create fault).
    pub response_lost: bool,
    /// The answer was held back this long before it was sent (hold-create fault).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answer_held_ms: Option<u64>,
    /// The description as sent, when the provider truncated it (`description_max_chars`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requested_description: Option<String>,
    pub foreign: bool,
    #[serde(default)]
    pub caller: Caller,
}

/// One deletion, at the moment it was accepted (or refused because the snapshot is
/// protected). With `delete_linger` the object stays listed as deleting after this; a second
/// delete of it is not recorded again.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeleteRecord {
    pub seq: u64,
    pub at: Timestamp,
    pub api: SimApi,
    pub kind: ObjectKind,
    pub server: u64,
    pub id: u64,
    pub name: Option<String>,
    pub description: Option<String>,
    /// The deleted object had been created outside the APIs (or seeded as automatic).
    pub foreign: bool,
    pub backup_type: Option<BackupType>,
    #[serde(default)]
    pub caller: Caller,
}

/// One restore call that reached the restore logic (after auth and faults), accepted or not.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestoreRecord {
    pub seq: u64,
    pub at: Timestamp,
    pub kind: ObjectKind,
    /// `None` when the snapshot named in the path does not exist.
    pub server: Option<u64>,
    pub object_id: u64,
    pub accepted: bool,
    /// Why it was refused, empty when accepted.
    pub reason: String,
    #[serde(default)]
    pub caller: Caller,
}

/// One create the provider refused because the server was full.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefusedCreate {
    pub seq: u64,
    pub at: Timestamp,
    pub api: SimApi,
    pub kind: ObjectKind,
    pub server: u64,
    pub name: Option<String>,
    /// As sent.
    pub description: Option<String>,
    /// The limit that was reached.
    pub limit: usize,
    #[serde(default)]
    pub caller: Caller,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerRecord {
    /// Most snapshots (any status) present at once on this server.
    pub snapshots_high_water: usize,
    /// Most backups (manual + automatic) present at once.
    pub backups_high_water: usize,
    pub snapshot_limit_rejections: u64,
    pub backup_limit_rejections: u64,
}

/// Full history for invariant checks; also the body of `GET /_sim/record`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    pub creates: Vec<CreateRecord>,
    pub deletes: Vec<DeleteRecord>,
    /// Deletes refused because the snapshot was protected (Zomro).
    pub refused_deletes: Vec<DeleteRecord>,
    pub restores: Vec<RestoreRecord>,
    /// Creates refused for the limit (also counted per server).
    #[serde(default)]
    pub limit_refusals: Vec<RefusedCreate>,
    pub servers: BTreeMap<u64, ServerRecord>,
}
