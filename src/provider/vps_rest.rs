//! Client for the "VPS REST" API (docs/providers.md §A): JSON over HTTPS, bearer token,
//! Django-REST-style lists (`{count, results}`), every path ending in a slash.
use std::sync::Arc;

use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, HeaderValue};
use reqwest::{Method, StatusCode, Url};
use serde::Deserialize;

use super::endpoint::vps_rest as endpoint;
use super::error::scrub;
use super::etiquette::{Gate, Idempotency};
use super::transport::{self, Http, Reply, Request};
use super::{
    BackupKind, Credentials, Listing, ProviderCapabilities, ProviderConfig, ProviderError,
    RemoteBackup, RemoteSnapshot, RemoteState, Secret,
};

#[derive(Clone)]
pub struct VpsRestClient {
    inner: Arc<Inner>,
}

struct Inner {
    http: Http,
    /// Always ends in `/`, so joining a relative path appends to it.
    base: Url,
    authorization: HeaderValue,
    token: Secret,
    gate: Arc<Gate>,
    snapshot_limit: u32,
    backup_limit: u32,
}

impl std::fmt::Debug for VpsRestClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VpsRestClient")
            .field("endpoint", &transport::display_endpoint(&self.inner.base))
            .field("snapshot_limit", &self.inner.snapshot_limit)
            .field("backup_limit", &self.inner.backup_limit)
            .finish_non_exhaustive()
    }
}

/// What a failing call was about, for status mapping and messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    CheckCredentials,
    List,
    Create,
    Delete,
    Restore,
}

impl VpsRestClient {
    pub fn new(config: &ProviderConfig, gate: Arc<Gate>) -> Result<Self, ProviderError> {
        let Credentials::Bearer { token } = &config.credentials else {
            return Err(ProviderError::Auth(
                "the VpsRest API needs a bearer token".into(),
            ));
        };
        if token.expose().trim().is_empty() {
            return Err(ProviderError::Auth("the bearer token is empty".into()));
        }
        let mut authorization = HeaderValue::from_str(&format!("Bearer {}", token.expose().trim()))
            .map_err(|_| {
                ProviderError::Auth(
                    "the bearer token contains characters not allowed in an HTTP header".into(),
                )
            })?;
        authorization.set_sensitive(true);
        let mut base = transport::parse_endpoint(&config.endpoint)?;
        if !base.path().ends_with('/') {
            let path = format!("{}/", base.path());
            base.set_path(&path);
        }
        Ok(Self {
            inner: Arc::new(Inner {
                http: transport::http_client(config.request_timeout, gate.fence().cloned())?,
                base,
                authorization,
                token: token.clone(),
                gate,
                snapshot_limit: config.snapshot_limit,
                backup_limit: config.backup_limit,
            }),
        })
    }

    pub fn capabilities(&self) -> ProviderCapabilities {
        ProviderCapabilities {
            snapshots: true,
            backups: true,
            snapshot_restore: true,
            backup_restore: true,
        }
    }

    /// `GET account/me/`: answers 200 for any valid token and costs the provider nothing.
    pub async fn check_credentials(&self) -> Result<(), ProviderError> {
        self.gate()
            .run(&endpoint::CHECK_CREDENTIALS, Idempotency::Read, || async {
                let reply = self.send(self.request(Method::GET, "account/me/")?).await?;
                self.expect_success(&reply, Op::CheckCredentials, "account/me/")
            })
            .await
    }

    pub async fn list_snapshots(
        &self,
        server: u64,
    ) -> Result<Listing<RemoteSnapshot>, ProviderError> {
        Ok(self.list_snapshots_counted(server).await?.0)
    }

    /// The listing plus the provider's `count` (the server's total, pages included).
    async fn list_snapshots_counted(
        &self,
        server: u64,
    ) -> Result<(Listing<RemoteSnapshot>, u64), ProviderError> {
        self.gate()
            .run(&endpoint::LIST_SNAPSHOTS, Idempotency::Read, || async {
                let request = self
                    .request(Method::GET, "snapshots/")?
                    .query("server_id", &server.to_string());
                let reply = self.send(request).await?;
                self.expect_success(&reply, Op::List, "snapshots")?;
                parse_snapshot_list(&reply.body, server, &self.secrets())
            })
            .await
    }

    /// Starts a snapshot. Not retried after a timeout or 5xx: the outcome is then unknown and the
    /// caller must list by name before creating again (docs/providers.md, U5).
    pub async fn create_snapshot(
        &self,
        server: u64,
        name: &str,
        description: Option<&str>,
    ) -> Result<RemoteSnapshot, ProviderError> {
        validate_snapshot_name(name)?;
        let mut body = serde_json::json!({ "server_id": server, "name": name });
        if let Some(description) = description {
            body["description"] = description.into();
        }
        let result = self
            .gate()
            .run(
                &endpoint::CREATE_SNAPSHOT,
                Idempotency::NonIdempotent,
                || async {
                    let request = self
                        .request(Method::POST, "snapshots/")?
                        .body(body.to_string());
                    let reply = self.send(request).await?;
                    self.expect_success(&reply, Op::Create, &format!("server {server}"))?;
                    parse_snapshot(&reply.body, &self.secrets())
                },
            )
            .await;
        match result {
            // The 400 for "limit reached" is undocumented (docs/providers.md, U3): count to tell it apart.
            Err(ProviderError::InvalidRequest(detail)) => {
                let (listing, count) = self.list_snapshots_counted(server).await?;
                let present = if listing.complete {
                    listing.items.len() as u64
                } else {
                    count
                };
                Err(limit_or_invalid(
                    "snapshots",
                    server,
                    present,
                    self.inner.snapshot_limit,
                    detail,
                ))
            }
            other => other,
        }
    }

    pub async fn delete_snapshot(&self, id: &str) -> Result<(), ProviderError> {
        let id = numeric_id("snapshot", id)?;
        self.gate()
            .run(
                &endpoint::DELETE_SNAPSHOT,
                Idempotency::Idempotent,
                || async {
                    let reply = self
                        .send(self.request(Method::DELETE, &format!("snapshots/{id}/"))?)
                        .await?;
                    self.expect_success(&reply, Op::Delete, &format!("snapshot {id}"))
                },
            )
            .await
    }

    /// Starts a restore, which overwrites the server. Never retried except after a 429; any 2xx
    /// counts as accepted even if the RestoreResult body is not as documented, because reporting
    /// a started restore as failed could make someone start it again.
    pub async fn restore_snapshot(&self, id: &str) -> Result<(), ProviderError> {
        let id = numeric_id("snapshot", id)?;
        self.gate()
            .run(&endpoint::RESTORE_SNAPSHOT, Idempotency::NonIdempotent, || async {
                let path = format!("snapshots/{id}/restore/");
                let reply = self.send(self.request(Method::POST, &path)?).await?;
                self.expect_success(&reply, Op::Restore, &format!("snapshot {id}"))?;
                if let Ok(result) = serde_json::from_slice::<RestoreResultWire>(&reply.body) {
                    tracing::debug!(snapshot = id, status = ?result.status, server = ?result.server.map(|s| s.id), "restore accepted");
                }
                Ok(())
            })
            .await
    }

    pub async fn list_backups(
        &self,
        server: u64,
        kind: Option<BackupKind>,
    ) -> Result<Listing<RemoteBackup>, ProviderError> {
        Ok(self.list_backups_counted(server, kind).await?.0)
    }

    async fn list_backups_counted(
        &self,
        server: u64,
        kind: Option<BackupKind>,
    ) -> Result<(Listing<RemoteBackup>, u64), ProviderError> {
        self.gate()
            .run(&endpoint::LIST_BACKUPS, Idempotency::Read, || async {
                let mut request = self
                    .request(Method::GET, "backups/")?
                    .query("server_id", &server.to_string());
                if let Some(kind) = kind {
                    request = request.query("backup_type", backup_type_param(kind));
                }
                let reply = self.send(request).await?;
                self.expect_success(&reply, Op::List, "backups")?;
                parse_backup_list(&reply.body, server, &self.secrets())
            })
            .await
    }

    /// Starts a manual backup; the same no-retry rule as snapshots applies.
    pub async fn create_backup(
        &self,
        server: u64,
        description: Option<&str>,
    ) -> Result<RemoteBackup, ProviderError> {
        let mut body = serde_json::json!({ "server_id": server });
        if let Some(description) = description {
            body["description"] = description.into();
        }
        let result = self
            .gate()
            .run(
                &endpoint::CREATE_BACKUP,
                Idempotency::NonIdempotent,
                || async {
                    let request = self
                        .request(Method::POST, "backups/")?
                        .body(body.to_string());
                    let reply = self.send(request).await?;
                    self.expect_success(&reply, Op::Create, &format!("server {server}"))?;
                    parse_backup(&reply.body, &self.secrets())
                },
            )
            .await;
        match result {
            // The documented limit counts manual and automatic backups together.
            Err(ProviderError::InvalidRequest(detail)) => {
                let (listing, count) = self.list_backups_counted(server, None).await?;
                let present = if listing.complete {
                    listing.items.len() as u64
                } else {
                    count
                };
                Err(limit_or_invalid(
                    "backups",
                    server,
                    present,
                    self.inner.backup_limit,
                    detail,
                ))
            }
            other => other,
        }
    }

    pub async fn delete_backup(&self, id: &str) -> Result<(), ProviderError> {
        let id = numeric_id("backup", id)?;
        self.gate()
            .run(
                &endpoint::DELETE_BACKUP,
                Idempotency::Idempotent,
                || async {
                    let reply = self
                        .send(self.request(Method::DELETE, &format!("backups/{id}/"))?)
                        .await?;
                    self.expect_success(&reply, Op::Delete, &format!("backup {id}"))
                },
            )
            .await
    }

    /// `POST servers/{server}/restore/` with `{"backup_id": N}`. The answer is undocumented:
    /// any 2xx is taken as accepted.
    pub async fn restore_backup(&self, server: u64, backup_id: &str) -> Result<(), ProviderError> {
        let backup_id = numeric_id("backup", backup_id)?;
        let body = serde_json::json!({ "backup_id": backup_id }).to_string();
        self.gate()
            .run(
                &endpoint::RESTORE_BACKUP,
                Idempotency::NonIdempotent,
                || async {
                    let request = self
                        .request(Method::POST, &format!("servers/{server}/restore/"))?
                        .body(body.clone());
                    let reply = self.send(request).await?;
                    self.expect_success(
                        &reply,
                        Op::Restore,
                        &format!("server {server} or backup {backup_id}"),
                    )
                },
            )
            .await
    }

    /// The account's gate (shared by every clone of this client).
    pub fn gate(&self) -> &Arc<Gate> {
        &self.inner.gate
    }

    fn secrets(&self) -> [&str; 1] {
        [self.inner.token.expose()]
    }

    fn request(&self, method: Method, path: &str) -> Result<Request, ProviderError> {
        let url = self.inner.base.join(path).map_err(|_| {
            ProviderError::InvalidRequest("cannot build a request URL from the endpoint".into())
        })?;
        let json = HeaderValue::from_static("application/json");
        Ok(Request::new(method, url)
            .header(AUTHORIZATION, self.inner.authorization.clone())
            .header(CONTENT_TYPE, json.clone())
            .header(ACCEPT, json))
    }

    async fn send(&self, request: Request) -> Result<Reply, ProviderError> {
        self.inner.http.send(request, &self.secrets()).await
    }

    /// Maps a non-2xx answer to the error the contract gives it for this kind of call.
    fn expect_success(&self, reply: &Reply, op: Op, subject: &str) -> Result<(), ProviderError> {
        if reply.status.is_success() {
            return Ok(());
        }
        if let Some(err) = transport::common_status_error(reply, &self.secrets()) {
            return Err(err);
        }
        let code = reply.status.as_u16();
        let detail = reply.snippet(&self.secrets());
        Err(match (op, reply.status) {
            (Op::Create | Op::Delete | Op::Restore, StatusCode::NOT_FOUND) => {
                ProviderError::NotFound(format!("{subject} does not exist (HTTP 404)"))
            }
            // A documented collection or account/me/ missing means the base URL is wrong, not that
            // anything is gone.
            (Op::CheckCredentials | Op::List, StatusCode::NOT_FOUND) => {
                ProviderError::InvalidRequest(format!(
                    "{subject} answered HTTP 404; check the endpoint URL (documented: https://admin.vps.org/api/v1/)"
                ))
            }
            (Op::Restore, StatusCode::BAD_REQUEST) => ProviderError::InvalidState(format!(
                "server not in a valid state for restoration (HTTP 400): {detail}"
            )),
            _ => ProviderError::InvalidRequest(format!("HTTP {code}: {detail}")),
        })
    }
}

fn limit_or_invalid(
    what: &str,
    server: u64,
    present: u64,
    limit: u32,
    detail: String,
) -> ProviderError {
    if present >= u64::from(limit) {
        ProviderError::LimitReached(format!(
            "server {server} has {present} {what}, the limit is {limit}"
        ))
    } else {
        ProviderError::InvalidRequest(detail)
    }
}

/// Names are letters, digits, `-` and `_` (docs/providers.md §A.1); checking before sending
/// turns a sure 400 into a clear message and saves the re-list a 400 would trigger.
fn validate_snapshot_name(name: &str) -> Result<(), ProviderError> {
    if name.is_empty() {
        return Err(ProviderError::InvalidRequest(
            "the snapshot name is empty".into(),
        ));
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '_'))
    {
        return Err(ProviderError::InvalidRequest(format!(
            "the snapshot name may only hold letters, digits, '-' and '_' (found {bad:?})"
        )));
    }
    Ok(())
}

/// The API's ids are integers; checking keeps anything else out of the URL path.
fn numeric_id(what: &str, id: &str) -> Result<u64, ProviderError> {
    id.parse::<u64>().map_err(|_| {
        ProviderError::InvalidRequest(format!("{what} id {:?} is not an integer", scrub(id, &[])))
    })
}

fn backup_type_param(kind: BackupKind) -> &'static str {
    match kind {
        BackupKind::Manual => "manual",
        BackupKind::Automatic => "automatic",
    }
}

// ---- wire format -------------------------------------------------------------------------
// Strict on types (an id must be an integer), silent about fields it does not know.

#[derive(Deserialize)]
struct PageWire<T> {
    count: u64,
    results: Vec<T>,
}

#[derive(Deserialize)]
struct ServerWire {
    id: u64,
}

#[derive(Deserialize)]
struct SnapshotWire {
    id: u64,
    server: ServerWire,
    name: String,
    status: String,
    size_mb: Option<u64>,
    created_at: String,
    description: Option<String>,
}

#[derive(Deserialize)]
struct BackupWire {
    id: u64,
    server: ServerWire,
    backup_type: String,
    status: String,
    size_mb: Option<u64>,
    created_at: String,
    expires_at: Option<String>,
    description: Option<String>,
}

#[derive(Deserialize)]
struct RestoreResultWire {
    status: Option<String>,
    server: Option<ServerWire>,
}

/// Documented: `in_progress`, `completed`; the rest are guesses at what a provider would say
/// (docs/providers.md, U1), and anything else stays `Unknown` with the raw value kept.
pub(crate) fn vps_state(raw: &str) -> RemoteState {
    match raw.to_ascii_lowercase().as_str() {
        "in_progress" => RemoteState::Pending,
        "completed" => RemoteState::Ready,
        "failed" | "error" => RemoteState::Failed,
        "deleted" | "deleting" => RemoteState::Gone,
        _ => RemoteState::Unknown,
    }
}

fn protocol(what: &str, err: impl std::fmt::Display, secrets: &[&str]) -> ProviderError {
    ProviderError::Protocol(format!(
        "unreadable {what}: {}",
        scrub(&err.to_string(), secrets)
    ))
}

fn timestamp(field: &str, raw: &str, secrets: &[&str]) -> Result<jiff::Timestamp, ProviderError> {
    raw.parse::<jiff::Timestamp>()
        .map_err(|e| protocol(field, e, secrets))
}

fn non_empty(text: Option<String>) -> Option<String> {
    text.filter(|t| !t.is_empty())
}

fn snapshot_from_wire(w: SnapshotWire, secrets: &[&str]) -> Result<RemoteSnapshot, ProviderError> {
    Ok(RemoteSnapshot {
        id: w.id.to_string(),
        server_id: w.server.id,
        state: vps_state(&w.status),
        raw_status: w.status,
        created_at: Some(timestamp("snapshot created_at", &w.created_at, secrets)?),
        name: w.name,
        description: non_empty(w.description),
        size_mb: w.size_mb,
        protected: false,
    })
}

fn backup_from_wire(w: BackupWire, secrets: &[&str]) -> Result<RemoteBackup, ProviderError> {
    let kind = match w.backup_type.to_ascii_lowercase().as_str() {
        "manual" => BackupKind::Manual,
        // Anything but "manual" is treated as the provider's own: the operator never deletes
        // automatic backups, so an unknown type errs on the side of keeping.
        _ => BackupKind::Automatic,
    };
    let expires_at = match w.expires_at.as_deref() {
        None | Some("") => None,
        Some(raw) => Some(timestamp("backup expires_at", raw, secrets)?),
    };
    Ok(RemoteBackup {
        id: w.id.to_string(),
        server_id: w.server.id,
        kind,
        state: vps_state(&w.status),
        raw_status: w.status,
        created_at: Some(timestamp("backup created_at", &w.created_at, secrets)?),
        expires_at,
        description: non_empty(w.description),
        size_mb: w.size_mb,
    })
}

/// Parses a list; items of other servers are dropped (in case the filter was ignored, they must
/// not count against this server's limit). Returns the provider's `count` alongside.
pub(crate) fn parse_snapshot_list(
    body: &[u8],
    server: u64,
    secrets: &[&str],
) -> Result<(Listing<RemoteSnapshot>, u64), ProviderError> {
    let page: PageWire<SnapshotWire> =
        serde_json::from_slice(body).map_err(|e| protocol("snapshot list", e, secrets))?;
    let complete = page.count <= page.results.len() as u64;
    let mut items = Vec::with_capacity(page.results.len());
    for wire in page.results {
        let snapshot = snapshot_from_wire(wire, secrets)?;
        if snapshot.server_id == server {
            items.push(snapshot);
        }
    }
    Ok((Listing { items, complete }, page.count))
}

pub(crate) fn parse_snapshot(
    body: &[u8],
    secrets: &[&str],
) -> Result<RemoteSnapshot, ProviderError> {
    let wire: SnapshotWire =
        serde_json::from_slice(body).map_err(|e| protocol("snapshot", e, secrets))?;
    snapshot_from_wire(wire, secrets)
}

pub(crate) fn parse_backup_list(
    body: &[u8],
    server: u64,
    secrets: &[&str],
) -> Result<(Listing<RemoteBackup>, u64), ProviderError> {
    let page: PageWire<BackupWire> =
        serde_json::from_slice(body).map_err(|e| protocol("backup list", e, secrets))?;
    let complete = page.count <= page.results.len() as u64;
    let mut items = Vec::with_capacity(page.results.len());
    for wire in page.results {
        let backup = backup_from_wire(wire, secrets)?;
        if backup.server_id == server {
            items.push(backup);
        }
    }
    Ok((Listing { items, complete }, page.count))
}

pub(crate) fn parse_backup(body: &[u8], secrets: &[&str]) -> Result<RemoteBackup, ProviderError> {
    let wire: BackupWire =
        serde_json::from_slice(body).map_err(|e| protocol("backup", e, secrets))?;
    backup_from_wire(wire, secrets)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provider::etiquette::{GateLimits, NoopObserver, RetryPolicy};
    use crate::provider::test_support::{MockServer, arb_json, reply};
    use proptest::prelude::*;
    use std::time::Duration;

    // Bodies exactly as docs/providers.md §A gives them.
    const DOC_SNAPSHOT_LIST: &str = r#"{"count": 2, "results": [
  {"id": 801, "server": {"id": 12345, "name": "web-server-01"}, "name": "pre-migration-snapshot",
   "status": "completed", "size_mb": 5120, "created_at": "2025-01-15T18:30:00Z", "description": "Before major migration"},
  {"id": 798, "server": {"id": 12345, "name": "web-server-01"}, "name": "weekly-snapshot-2025-01-08",
   "status": "completed", "size_mb": 4856, "created_at": "2025-01-08T12:00:00Z", "description": "Weekly snapshot"}]}"#;

    const DOC_RESTORE_RESULT: &str = r#"{"status": "success",
 "message": "Server is being restored from snapshot. This may take 5-15 minutes.",
 "snapshot": {"id": 801, "name": "pre-migration-snapshot", "created_at": "2025-01-15T18:30:00Z"},
 "server": {"id": 12345, "name": "web-server-01", "status": "restoring"}}"#;

    /// The create answer as the contract describes it (Snapshot, `in_progress`, `size_mb: null`,
    /// plus `message`).
    const CREATE_SNAPSHOT_ANSWER: &str = r#"{"id": 802, "server": {"id": 12345, "name": "web-server-01"},
  "name": "pre-upgrade", "status": "in_progress", "size_mb": null, "created_at": "2025-01-16T09:00:00Z",
  "description": "", "message": "Snapshot is being created. This may take 3-10 minutes depending on server size."}"#;

    /// Backups in the documented (unsorted) order: 501, 499, 495 created 01-16, 01-14, 01-15.
    const BACKUP_LIST: &str = r#"{"count": 3, "results": [
  {"id": 501, "server": {"id": 12345, "name": "web-server-01"}, "backup_type": "manual", "status": "completed",
   "size_mb": 6144, "created_at": "2025-01-16T10:00:00Z", "expires_at": null, "description": "Pre-update backup"},
  {"id": 499, "server": {"id": 12345, "name": "web-server-01"}, "backup_type": "automatic", "status": "completed",
   "size_mb": 6000, "created_at": "2025-01-14T03:00:00Z", "expires_at": "2025-02-14T03:00:00Z", "description": "Automatic daily backup"},
  {"id": 495, "server": {"id": 12345, "name": "web-server-01"}, "backup_type": "automatic", "status": "in_progress",
   "size_mb": null, "created_at": "2025-01-15T03:00:00Z", "expires_at": "2025-02-15T03:00:00Z", "description": "Automatic daily backup"}]}"#;

    const CREATE_BACKUP_ANSWER: &str = r#"{"id": 502, "server": {"id": 12345, "name": "web-server-01"},
  "backup_type": "manual", "status": "in_progress", "size_mb": null, "created_at": "2025-01-17T08:00:00Z",
  "expires_at": null, "description": "Pre-update backup",
  "message": "Backup is being created. This may take several minutes depending on server size."}"#;

    fn ts(s: &str) -> Option<jiff::Timestamp> {
        Some(s.parse().unwrap())
    }

    #[test]
    fn parses_the_documented_snapshot_list() {
        let (listing, count) =
            parse_snapshot_list(DOC_SNAPSHOT_LIST.as_bytes(), 12345, &[]).unwrap();
        assert_eq!(count, 2);
        assert!(listing.complete);
        assert_eq!(
            listing.items[0],
            RemoteSnapshot {
                id: "801".into(),
                server_id: 12345,
                name: "pre-migration-snapshot".into(),
                description: Some("Before major migration".into()),
                state: RemoteState::Ready,
                raw_status: "completed".into(),
                created_at: ts("2025-01-15T18:30:00Z"),
                size_mb: Some(5120),
                protected: false,
            }
        );
        assert_eq!(listing.items[1].id, "798");
        assert_eq!(listing.items[1].size_mb, Some(4856));
    }

    #[test]
    fn parses_the_create_answer() {
        let s = parse_snapshot(CREATE_SNAPSHOT_ANSWER.as_bytes(), &[]).unwrap();
        assert_eq!(
            (s.id.as_str(), s.state.clone(), s.size_mb, s.description),
            ("802", RemoteState::Pending, None, None)
        );
    }

    #[test]
    fn parses_backups_in_any_order() {
        let (listing, _) = parse_backup_list(BACKUP_LIST.as_bytes(), 12345, &[]).unwrap();
        assert!(listing.complete);
        let ids: Vec<_> = listing.items.iter().map(|b| b.id.as_str()).collect();
        assert_eq!(ids, ["501", "499", "495"]);
        assert_eq!(listing.items[0].kind, BackupKind::Manual);
        assert_eq!(listing.items[0].expires_at, None);
        assert_eq!(listing.items[1].kind, BackupKind::Automatic);
        assert_eq!(listing.items[1].expires_at, ts("2025-02-14T03:00:00Z"));
        assert_eq!(listing.items[2].state, RemoteState::Pending);
        let created = parse_backup(CREATE_BACKUP_ANSWER.as_bytes(), &[]).unwrap();
        assert_eq!(
            (created.kind, created.state, created.size_mb),
            (BackupKind::Manual, RemoteState::Pending, None)
        );
    }

    #[test]
    fn restore_result_example_is_readable() {
        let result: RestoreResultWire = serde_json::from_str(DOC_RESTORE_RESULT).unwrap();
        assert_eq!(result.status.as_deref(), Some("success"));
        assert_eq!(result.server.map(|s| s.id), Some(12345));
    }

    #[test]
    fn count_above_results_means_incomplete() {
        let body = DOC_SNAPSHOT_LIST.replacen("\"count\": 2", "\"count\": 7", 1);
        let (listing, count) = parse_snapshot_list(body.as_bytes(), 12345, &[]).unwrap();
        assert!(!listing.complete);
        assert_eq!(count, 7);
    }

    #[test]
    fn other_servers_are_filtered_out() {
        let (listing, _) = parse_snapshot_list(DOC_SNAPSHOT_LIST.as_bytes(), 1, &[]).unwrap();
        assert!(listing.items.is_empty());
    }

    #[test]
    fn unknown_statuses_and_fields_are_tolerated() {
        let body = r#"{"count": 1, "next": null, "results": [{"id": 1, "server": {"id": 5}, "name": "a",
            "status": "Exploding", "size_mb": null, "created_at": "2025-01-15T18:30:00.123456+01:00", "extra": [1,2]}]}"#;
        let (listing, _) = parse_snapshot_list(body.as_bytes(), 5, &[]).unwrap();
        assert_eq!(listing.items[0].state, RemoteState::Unknown);
        assert_eq!(listing.items[0].raw_status, "Exploding");
        for (raw, state) in [
            ("in_progress", RemoteState::Pending),
            ("completed", RemoteState::Ready),
            ("failed", RemoteState::Failed),
            ("error", RemoteState::Failed),
            ("deleted", RemoteState::Gone),
            ("deleting", RemoteState::Gone),
            ("", RemoteState::Unknown),
        ] {
            assert_eq!(vps_state(raw), state, "{raw}");
        }
    }

    #[test]
    fn malformed_bodies_are_protocol_errors() {
        let item = |patch: &str| {
            format!(
                r#"{{"count": 1, "results": [{{"server": {{"id": 5}}, "name": "a", "status": "completed", "created_at": "2025-01-15T18:30:00Z", {patch}}}]}}"#
            )
        };
        let cases = [
            DOC_SNAPSHOT_LIST[..DOC_SNAPSHOT_LIST.len() / 2].to_owned(),
            String::new(),
            "<html><body><h1>502 Bad Gateway</h1></body></html>".into(),
            "null".into(),
            "[]".into(),
            r#"{"results": []}"#.into(),
            r#"{"count": 0}"#.into(),
            r#"{"count": "2", "results": []}"#.into(),
            r#"{"count": -1, "results": []}"#.into(),
            r#"{"count": 1, "results": {}}"#.into(),
            item(r#""id": "801""#),
            item(r#""id": 801.5"#),
            item(r#""id": 1e30"#),
            item(r#""id": 99999999999999999999999"#),
            item(r#""id": -1"#),
            item(r#""id": 1, "size_mb": "5120""#),
            item(r#""id": 1, "size_mb": -5"#),
            item(r#""id": 1, "description": 7"#),
            item(r#""id": 1, "id": 2"#),
            item(r#""nothing": 1"#),
            item(r#""id": 1, "created_at": "yesterday""#).replacen(r#""created_at": "2025-01-15T18:30:00Z", "#, "", 1),
            r#"{"count": 1, "results": [{"id": 1, "server": 5, "name": "a", "status": "completed", "created_at": "2025-01-15T18:30:00Z"}]}"#.into(),
            r#"{"count": 1, "results": [{"id": 1, "server": {"id": 5}, "name": "a", "status": null, "created_at": "2025-01-15T18:30:00Z"}]}"#.into(),
        ];
        for body in cases {
            let err = parse_snapshot_list(body.as_bytes(), 5, &[]).unwrap_err();
            assert!(matches!(err, ProviderError::Protocol(_)), "{body}: {err:?}");
        }
        assert!(matches!(
            parse_backup(b"{\"id\": 1}", &[]),
            Err(ProviderError::Protocol(_))
        ));
        let bad_expiry =
            CREATE_BACKUP_ANSWER.replace("\"expires_at\": null", "\"expires_at\": \"never\"");
        assert!(matches!(
            parse_backup(bad_expiry.as_bytes(), &[]),
            Err(ProviderError::Protocol(_))
        ));
    }

    proptest! {
        #[test]
        fn parsers_never_panic_on_bytes(body in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = parse_snapshot_list(&body, 1, &[]);
            let _ = parse_snapshot(&body, &[]);
            let _ = parse_backup_list(&body, 1, &[]);
            let _ = parse_backup(&body, &[]);
        }

        #[test]
        fn parsers_never_panic_on_strings(body in ".{0,300}") {
            let _ = parse_snapshot_list(body.as_bytes(), 1, &[]);
            let _ = parse_backup(body.as_bytes(), &[]);
        }

        #[test]
        fn parsers_never_panic_on_json(value in arb_json(), server in any::<u64>()) {
            let body = serde_json::to_vec(&value).unwrap();
            let _ = parse_snapshot_list(&body, server, &[]);
            let _ = parse_snapshot(&body, &[]);
            let _ = parse_backup_list(&body, server, &[]);
            let _ = parse_backup(&body, &[]);
        }

        /// Lists shaped like the contract with arbitrary values: either parsed with the
        /// invariants holding, or a protocol error.
        #[test]
        fn list_shaped_values_parse_or_fail_cleanly(
            count in any::<i64>(),
            items in proptest::collection::vec((arb_json(), arb_json(), arb_json(), arb_json()), 0..4),
        ) {
            let results: Vec<_> = items.into_iter().map(|(id, status, size, created)| serde_json::json!({
                "id": id, "server": {"id": 3}, "name": "n", "status": status, "size_mb": size, "created_at": created,
            })).collect();
            let body = serde_json::json!({"count": count, "results": results}).to_string();
            match parse_snapshot_list(body.as_bytes(), 3, &[]) {
                Ok((listing, n)) => {
                    prop_assert_eq!(listing.complete, n <= listing.items.len() as u64);
                    prop_assert!(listing.items.iter().all(|s| s.server_id == 3 && s.created_at.is_some()));
                }
                Err(e) => prop_assert!(matches!(e, ProviderError::Protocol(_))),
            }
        }
    }

    // ---- over HTTP, against a scripted server ----

    fn config(endpoint: &str, token: &str) -> ProviderConfig {
        ProviderConfig {
            endpoint: endpoint.into(),
            credentials: Credentials::Bearer {
                token: Secret::new(token),
            },
            requests_per_second: 100,
            burst: 100,
            max_in_flight: 4,
            request_timeout: Duration::from_secs(5),
            snapshot_limit: 5,
            backup_limit: 10,
            fence: None,
        }
    }

    fn client(endpoint: &str) -> VpsRestClient {
        let gate = Gate::new(
            "vps_rest",
            GateLimits {
                requests_per_second: 100,
                burst: 100,
                max_in_flight: 4,
            },
            RetryPolicy {
                base_delay: Duration::from_millis(1),
                ..RetryPolicy::default()
            },
            Arc::new(NoopObserver),
        );
        VpsRestClient::new(&config(endpoint, "tok-123"), Arc::new(gate)).unwrap()
    }

    fn snapshots_json(n: usize) -> String {
        let results: Vec<_> = (0..n)
            .map(|i| serde_json::json!({"id": 900 + i, "server": {"id": 12345, "name": "w"}, "name": format!("s{i}"),
                "status": "completed", "size_mb": 1, "created_at": "2025-01-15T18:30:00Z"}))
            .collect();
        serde_json::json!({"count": n, "results": results}).to_string()
    }

    #[tokio::test]
    async fn sends_what_the_contract_documents() {
        let server = MockServer::start(vec![
            reply(200, DOC_SNAPSHOT_LIST),
            reply(201, CREATE_SNAPSHOT_ANSWER),
            reply(204, ""),
            reply(200, DOC_RESTORE_RESULT),
            reply(200, BACKUP_LIST),
            reply(202, ""),
            reply(200, r#"{"username": "me"}"#),
        ])
        .await;
        // Without the trailing slash on purpose: it must still land under /api/v1/.
        let c = client(&format!("{}api/v1", server.url));
        assert_eq!(c.list_snapshots(12345).await.unwrap().items.len(), 2);
        let created = c
            .create_snapshot(12345, "pre-upgrade", Some("before v2"))
            .await
            .unwrap();
        assert_eq!(created.id, "802");
        c.delete_snapshot("801").await.unwrap();
        c.restore_snapshot("801").await.unwrap();
        c.list_backups(12345, Some(BackupKind::Manual))
            .await
            .unwrap();
        c.restore_backup(12345, "501").await.unwrap();
        c.check_credentials().await.unwrap();

        let seen = server.received();
        let calls: Vec<_> = seen
            .iter()
            .map(|r| (r.method.as_str(), r.path.as_str()))
            .collect();
        assert_eq!(
            calls,
            [
                ("GET", "/api/v1/snapshots/"),
                ("POST", "/api/v1/snapshots/"),
                ("DELETE", "/api/v1/snapshots/801/"),
                ("POST", "/api/v1/snapshots/801/restore/"),
                ("GET", "/api/v1/backups/"),
                ("POST", "/api/v1/servers/12345/restore/"),
                ("GET", "/api/v1/account/me/"),
            ]
        );
        assert_eq!(seen[0].query.as_deref(), Some("server_id=12345"));
        assert_eq!(
            seen[4].query.as_deref(),
            Some("server_id=12345&backup_type=manual")
        );
        for r in &seen {
            assert_eq!(r.headers["authorization"], "Bearer tok-123");
            assert_eq!(r.headers["content-type"], "application/json");
        }
        let body: serde_json::Value = serde_json::from_str(&seen[1].body).unwrap();
        assert_eq!(
            body,
            serde_json::json!({"server_id": 12345, "name": "pre-upgrade", "description": "before v2"})
        );
        let body: serde_json::Value = serde_json::from_str(&seen[5].body).unwrap();
        assert_eq!(body, serde_json::json!({"backup_id": 501}));
        assert!(seen[3].body.is_empty());
    }

    #[tokio::test]
    async fn a_400_on_create_is_limit_reached_when_the_server_is_full() {
        let server = MockServer::start(vec![
            reply(400, r#"{"detail": "Snapshot limit reached"}"#),
            reply(200, snapshots_json(5)),
        ])
        .await;
        let c = client(&server.url);
        let err = c.create_snapshot(12345, "x", None).await.unwrap_err();
        assert!(matches!(err, ProviderError::LimitReached(_)), "{err:?}");
        assert_eq!(server.received().len(), 2);
    }

    #[tokio::test]
    async fn a_400_on_create_is_invalid_when_there_is_room() {
        let server = MockServer::start(vec![
            reply(400, r#"{"name": ["bad"]}"#),
            reply(200, snapshots_json(2)),
        ])
        .await;
        let err = client(&server.url)
            .create_snapshot(12345, "x", None)
            .await
            .unwrap_err();
        assert!(
            matches!(&err, ProviderError::InvalidRequest(m) if m.contains("bad")),
            "{err:?}"
        );
    }

    #[tokio::test]
    async fn a_400_on_backup_create_counts_both_kinds() {
        let mut ten = serde_json::from_str::<serde_json::Value>(BACKUP_LIST).unwrap();
        let one = ten["results"][1].clone();
        let results: Vec<_> = (0..10)
            .map(|i| {
                let mut b = one.clone();
                b["id"] = (600 + i).into();
                b
            })
            .collect();
        ten = serde_json::json!({"count": 10, "results": results});
        let server = MockServer::start(vec![reply(400, "{}"), reply(200, ten.to_string())]).await;
        let err = client(&server.url)
            .create_backup(12345, None)
            .await
            .unwrap_err();
        assert!(matches!(err, ProviderError::LimitReached(_)), "{err:?}");
        assert_eq!(
            server.received()[1].query.as_deref(),
            Some("server_id=12345")
        );
    }

    #[tokio::test]
    async fn status_codes_map_to_classes() {
        let server = MockServer::start(vec![
            reply(401, r#"{"detail": "Invalid token."}"#),
            reply(404, r#"{"detail": "Not found."}"#),
            reply(400, r#"{"detail": "Server is running a task"}"#),
            reply(404, "{}"),
            reply(201, "<html>oops</html>"),
            reply(503, "busy"),
            reply(404, "{}"),
        ])
        .await;
        let c = client(&server.url);
        assert!(matches!(
            c.list_snapshots(1).await,
            Err(ProviderError::Auth(_))
        ));
        assert!(matches!(
            c.delete_snapshot("9").await,
            Err(ProviderError::NotFound(_))
        ));
        assert!(matches!(
            c.restore_snapshot("9").await,
            Err(ProviderError::InvalidState(_))
        ));
        assert!(matches!(
            c.create_snapshot(1, "a", None).await,
            Err(ProviderError::NotFound(_))
        ));
        let err = c.create_snapshot(1, "a", None).await.unwrap_err();
        assert!(matches!(err, ProviderError::Protocol(_)) && err.outcome_unknown());
        // A 5xx on a create is never retried: the snapshot may exist.
        let err = c.create_snapshot(1, "a", None).await.unwrap_err();
        assert!(matches!(err, ProviderError::Transient(_)) && err.outcome_unknown());
        // 404 on a list is a wrong endpoint, not an empty server.
        assert!(matches!(
            c.list_snapshots(1).await,
            Err(ProviderError::InvalidRequest(_))
        ));
        assert_eq!(server.received().len(), 7);
    }

    #[tokio::test]
    async fn idempotent_calls_are_retried_and_429_is_honoured() {
        let mut limited = reply(429, "");
        limited.headers.push(("retry-after", "1".into()));
        let server =
            MockServer::start(vec![reply(502, ""), limited, reply(200, snapshots_json(1))]).await;
        let c = client(&server.url);
        let start = std::time::Instant::now();
        assert_eq!(c.list_snapshots(12345).await.unwrap().items.len(), 1);
        assert!(start.elapsed() >= Duration::from_secs(1));
        assert_eq!(server.received().len(), 3);
    }

    #[tokio::test]
    async fn creates_are_retried_only_after_429() {
        let server =
            MockServer::start(vec![reply(429, ""), reply(201, CREATE_SNAPSHOT_ANSWER)]).await;
        let c = client(&server.url);
        assert_eq!(
            c.create_snapshot(12345, "pre-upgrade", None)
                .await
                .unwrap()
                .id,
            "802"
        );
        assert_eq!(server.received().len(), 2);
    }

    /// A provider that accepts connections and never answers: the create times out once and is
    /// not repeated (it may have been carried out); the list is retried.
    #[tokio::test]
    async fn timeouts_are_transient_and_only_idempotent_calls_repeat() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/", listener.local_addr().unwrap());
        let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = accepted.clone();
        let silent = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((socket, _)) = listener.accept().await {
                counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                held.push(socket);
            }
        });
        let mut cfg = config(&url, "tok-123");
        cfg.request_timeout = Duration::from_millis(300);
        let gate = Gate::new(
            "vps_rest",
            GateLimits {
                requests_per_second: 100,
                burst: 100,
                max_in_flight: 4,
            },
            RetryPolicy {
                base_delay: Duration::from_millis(1),
                ..RetryPolicy::default()
            },
            Arc::new(NoopObserver),
        );
        let c = VpsRestClient::new(&cfg, Arc::new(gate)).unwrap();
        let err = c.create_snapshot(1, "a", None).await.unwrap_err();
        assert!(
            matches!(&err, ProviderError::Transient(m) if m.contains("timed out")),
            "{err:?}"
        );
        assert!(err.outcome_unknown());
        assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 1);
        assert!(matches!(
            c.list_snapshots(1).await,
            Err(ProviderError::Transient(_))
        ));
        assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 4);
        silent.abort();
    }

    #[tokio::test]
    async fn bad_input_is_refused_without_a_request() {
        let server = MockServer::start(vec![]).await;
        let c = client(&server.url);
        assert!(matches!(
            c.create_snapshot(1, "has space", None).await,
            Err(ProviderError::InvalidRequest(_))
        ));
        assert!(matches!(
            c.create_snapshot(1, "", None).await,
            Err(ProviderError::InvalidRequest(_))
        ));
        assert!(matches!(
            c.delete_snapshot("../servers/1").await,
            Err(ProviderError::InvalidRequest(_))
        ));
        assert!(matches!(
            c.restore_backup(1, "x").await,
            Err(ProviderError::InvalidRequest(_))
        ));
        assert!(server.received().is_empty());
    }
}
