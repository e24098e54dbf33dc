//! Client for the Zomro API (docs/providers.md §B): BILLmanager-style form POSTs to one URL, a
//! `func` per operation, errors in the body whatever the HTTP status. Snapshots only: Zomro
//! documents no backups and no restore here, and those calls fail as `Unsupported` without
//! touching the network.
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use reqwest::header::{ACCEPT, HeaderValue};
use reqwest::{Method, StatusCode, Url};
use serde_json::Value;

use super::endpoint::{Endpoint, zomro as endpoint};
use super::error::scrub;
use super::etiquette::{Gate, Idempotency};
use super::transport::{self, Http, Reply, Request};
use super::zomro_json::{self, BodyError, Object};
use super::{
    Credentials, Listing, ProviderCapabilities, ProviderConfig, ProviderError, RemoteBackup,
    RemoteSnapshot, RemoteState, Secret,
};

/// Page size asked for on lists: far above any per-server snapshot count, so one page is the
/// whole list; `p_elems` still tells when it is not.
const PAGE_SIZE: &str = "1000";

/// Marks the `Auth` errors that came from an `access` answer, the one kind worth a fresh login.
const ACCESS_DENIED: &str = "access denied";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AuthMode {
    /// `func=auth` once, then `auth=<session id>` until the provider answers `access`.
    Session,
    /// `authinfo=login:password` on every call.
    AuthInfo,
}

#[derive(Clone)]
struct Session {
    id: Secret,
    /// Lets a caller drop exactly the session it saw fail, not a newer one another caller got.
    generation: u64,
}

#[derive(Clone)]
pub struct ZomroClient {
    inner: Arc<Inner>,
}

struct Inner {
    http: Http,
    endpoint: Url,
    username: Secret,
    password: Secret,
    authinfo: Secret,
    mode: AuthMode,
    gate: Arc<Gate>,
    snapshot_limit: u32,
    session: Mutex<Option<Session>>,
    /// Held while logging in, so concurrent callers without a session share one login.
    login: tokio::sync::Mutex<()>,
    generation: AtomicU64,
}

impl std::fmt::Debug for ZomroClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ZomroClient")
            .field(
                "endpoint",
                &transport::display_endpoint(&self.inner.endpoint),
            )
            .field("mode", &self.inner.mode)
            .field("snapshot_limit", &self.inner.snapshot_limit)
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The credentials in play, to mask them in anything the provider echoes back.
struct Secrets(Vec<String>);

impl Secrets {
    fn refs(&self) -> Vec<&str> {
        self.0.iter().map(String::as_str).collect()
    }
}

impl ZomroClient {
    pub fn new(config: &ProviderConfig, gate: Arc<Gate>) -> Result<Self, ProviderError> {
        let Credentials::Login {
            username,
            password,
            session,
        } = &config.credentials
        else {
            return Err(ProviderError::Auth(
                "the Zomro API needs a login and a password".into(),
            ));
        };
        if username.expose().is_empty() || password.expose().is_empty() {
            return Err(ProviderError::Auth(
                "the Zomro login or password is empty".into(),
            ));
        }
        Ok(Self {
            inner: Arc::new(Inner {
                http: transport::http_client(config.request_timeout, gate.fence().cloned())?,
                endpoint: transport::parse_endpoint(&config.endpoint)?,
                authinfo: Secret::new(format!("{}:{}", username.expose(), password.expose())),
                username: username.clone(),
                password: password.clone(),
                mode: if *session {
                    AuthMode::Session
                } else {
                    AuthMode::AuthInfo
                },
                gate,
                snapshot_limit: config.snapshot_limit,
                session: Mutex::new(None),
                login: tokio::sync::Mutex::new(()),
                generation: AtomicU64::new(0),
            }),
        })
    }

    pub fn capabilities(&self) -> ProviderCapabilities {
        ProviderCapabilities {
            snapshots: true,
            backups: false,
            snapshot_restore: false,
            backup_restore: false,
        }
    }

    /// Logs in with `func=auth` in both modes: it is the one documented call that needs no
    /// instance id. In session mode the new session replaces the cached one; in authinfo mode it
    /// is dropped (it lapses on its own after an hour). Note that an IP allow-list applied only
    /// to `authinfo` would not show here but on the first real call.
    pub async fn check_credentials(&self) -> Result<(), ProviderError> {
        let id = self.login().await?;
        if self.inner.mode == AuthMode::Session {
            self.store_session(id);
        }
        Ok(())
    }

    pub async fn list_snapshots(
        &self,
        server: u64,
    ) -> Result<Listing<RemoteSnapshot>, ProviderError> {
        let fields = [
            ("func", "instances.snapshots".to_owned()),
            ("elid", server.to_string()),
            ("p_cnt", PAGE_SIZE.to_owned()),
            ("p_num", "1".to_owned()),
        ];
        let doc = self
            .call(&endpoint::LIST_SNAPSHOTS, Idempotency::Read, &fields)
            .await?;
        parse_snapshot_list(&doc, server).map_err(|e| e.mask(&self.secrets().refs()))
    }

    /// Starts a snapshot, then looks it up by name, since the answer carries no id. `None` means
    /// the provider accepted the request but the snapshot is not listed (yet); the caller finds
    /// it by name on its next poll. Zomro has no description field, so `description` is unused.
    /// Never retried after a timeout or 5xx (the outcome is then unknown).
    pub async fn create_snapshot(
        &self,
        server: u64,
        name: &str,
        description: Option<&str>,
    ) -> Result<Option<RemoteSnapshot>, ProviderError> {
        if name.trim().is_empty() {
            return Err(ProviderError::InvalidRequest(
                "the snapshot name is empty".into(),
            ));
        }
        if description.is_some() {
            tracing::debug!(
                server,
                "zomro snapshots have no description; it is not sent"
            );
        }
        let fields = [
            ("func", "instances.snapshots.edit".to_owned()),
            ("plid", server.to_string()),
            ("name", name.to_owned()),
            ("sok", "ok".to_owned()),
        ];
        match self
            .call(
                &endpoint::CREATE_SNAPSHOT,
                Idempotency::NonIdempotent,
                &fields,
            )
            .await
        {
            Ok(_) => {}
            // The limit error's shape is undocumented (as for VpsRest): count to tell.
            Err(ProviderError::InvalidRequest(detail)) => {
                let listing = self.list_snapshots(server).await?;
                let present = listing.items.len() as u64;
                let limit = self.inner.snapshot_limit;
                return Err(if present >= u64::from(limit) {
                    ProviderError::LimitReached(format!(
                        "server {server} has {present} snapshots, the limit is {limit}"
                    ))
                } else {
                    ProviderError::InvalidRequest(detail)
                });
            }
            Err(e) => return Err(e),
        }
        match self.list_snapshots(server).await {
            Ok(listing) => Ok(find_by_name(listing.items, name)),
            Err(e) => {
                // The create itself went through; failing now would read as "maybe not created".
                tracing::warn!(
                    server,
                    class = e.class(),
                    "snapshot requested but the follow-up list failed"
                );
                Ok(None)
            }
        }
    }

    /// Deletes a snapshot of `server`. Lists first: a `protected` snapshot is refused here with
    /// `Protected` (the provider would refuse anyway), a snapshot missing from a complete list
    /// is `NotFound` without a call, and an id that belongs to another instance is never sent.
    pub async fn delete_snapshot(&self, server: u64, id: &str) -> Result<(), ProviderError> {
        let listing = self.list_snapshots(server).await?;
        match listing.items.iter().find(|s| s.id == id) {
            Some(s) if s.protected => {
                return Err(ProviderError::Protected(format!(
                    "snapshot {} of server {server} is protected at the provider",
                    s.id
                )));
            }
            Some(_) => {}
            None if listing.complete => {
                return Err(ProviderError::NotFound(format!(
                    "snapshot {} is not listed for server {server}",
                    scrub(id, &[])
                )));
            }
            None => {}
        }
        let fields = [
            ("func", "image.delete".to_owned()),
            ("plid", server.to_string()),
            ("elid", id.to_owned()),
            ("elname", id.to_owned()),
            ("sok", "ok".to_owned()),
        ];
        match self
            .call(&endpoint::DELETE_SNAPSHOT, Idempotency::Idempotent, &fields)
            .await
        {
            Ok(_) => Ok(()),
            // `missed` also answers an unknown function or parameter; only a list that agrees
            // makes it "already gone", which lets the caller drop its finalizer.
            Err(ProviderError::NotFound(detail)) => {
                let listing = self.list_snapshots(server).await?;
                if listing.items.iter().any(|s| s.id == id) {
                    Err(ProviderError::InvalidRequest(format!(
                        "the provider answered not-found ({detail}) but still lists the snapshot"
                    )))
                } else {
                    Err(ProviderError::NotFound(detail))
                }
            }
            Err(e) => Err(e),
        }
    }

    pub async fn restore_snapshot(&self, _server: u64, _id: &str) -> Result<(), ProviderError> {
        Err(ProviderError::Unsupported(
            "Zomro's documented API has no snapshot restore".into(),
        ))
    }

    pub async fn list_backups(&self, _server: u64) -> Result<Listing<RemoteBackup>, ProviderError> {
        Err(no_backups())
    }

    pub async fn create_backup(
        &self,
        _server: u64,
        _description: Option<&str>,
    ) -> Result<RemoteBackup, ProviderError> {
        Err(no_backups())
    }

    pub async fn delete_backup(&self, _server: u64, _id: &str) -> Result<(), ProviderError> {
        Err(no_backups())
    }

    pub async fn restore_backup(
        &self,
        _server: u64,
        _backup_id: &str,
    ) -> Result<(), ProviderError> {
        Err(no_backups())
    }

    /// The account's gate (shared by every clone of this client).
    pub fn gate(&self) -> &Arc<Gate> {
        &self.inner.gate
    }

    fn secrets(&self) -> Secrets {
        let mut all = vec![
            self.inner.authinfo.expose().to_owned(),
            self.inner.username.expose().to_owned(),
            self.inner.password.expose().to_owned(),
        ];
        if let Some(session) = lock(&self.inner.session).as_ref() {
            all.push(session.id.expose().to_owned());
        }
        Secrets(all)
    }

    /// One operation with the configured authentication. In session mode an `access` answer
    /// means an expired session or missing rights (docs/providers.md §B.1): one fresh login tells them apart, then
    /// the call is repeated once — safe even for creates, since `access` means not carried out.
    async fn call(
        &self,
        op: &'static Endpoint,
        idempotency: Idempotency,
        fields: &[(&'static str, String)],
    ) -> Result<Object, ProviderError> {
        match self.inner.mode {
            AuthMode::AuthInfo => {
                self.post(op, idempotency, fields, &self.inner.authinfo)
                    .await
            }
            AuthMode::Session => {
                let session = self.session().await?;
                match self.post(op, idempotency, fields, &session.id).await {
                    Err(e) if is_access_denied(&e) => {
                        self.forget_session(session.generation);
                        let session = self.session().await?;
                        self.post(op, idempotency, fields, &session.id).await
                    }
                    other => other,
                }
            }
        }
    }

    async fn post(
        &self,
        op: &'static Endpoint,
        idempotency: Idempotency,
        fields: &[(&'static str, String)],
        credential: &Secret,
    ) -> Result<Object, ProviderError> {
        let auth_field = match self.inner.mode {
            AuthMode::Session => "auth",
            AuthMode::AuthInfo => "authinfo",
        };
        self.inner
            .gate
            .run(op, idempotency, || async {
                let mut form: Vec<(&str, &str)> = vec![("out", "json"), ("lang", "en")];
                form.extend(fields.iter().map(|(k, v)| (*k, v.as_str())));
                form.push((auth_field, credential.expose()));
                let secrets = self.secrets();
                let reply = self
                    .inner
                    .http
                    .send(self.form_request(&form), &secrets.refs())
                    .await?;
                interpret(&reply, &secrets.refs())
            })
            .await
    }

    fn form_request(&self, form: &[(&str, &str)]) -> Request {
        Request::new(Method::POST, self.inner.endpoint.clone())
            .header(ACCEPT, HeaderValue::from_static("application/json"))
            .form(form)
    }

    /// `func=auth`: a new session id, never logged or put in an error.
    async fn login(&self) -> Result<Secret, ProviderError> {
        self.inner
            .gate
            .run(&endpoint::AUTH, Idempotency::Read, || async {
                let form = [
                    ("func", "auth"),
                    ("username", self.inner.username.expose()),
                    ("password", self.inner.password.expose()),
                    ("out", "json"),
                    ("lang", "en"),
                ];
                let secrets = self.secrets();
                let reply = self
                    .inner
                    .http
                    .send(self.form_request(&form), &secrets.refs())
                    .await?;
                let doc = interpret(&reply, &secrets.refs())?;
                zomro_json::session_id(&doc)
                    .map(Secret::new)
                    .ok_or_else(|| {
                        ProviderError::Protocol("the login answer carries no session id".into())
                    })
            })
            .await
    }

    async fn session(&self) -> Result<Session, ProviderError> {
        if let Some(session) = lock(&self.inner.session).clone() {
            return Ok(session);
        }
        let _login = self.inner.login.lock().await;
        if let Some(session) = lock(&self.inner.session).clone() {
            return Ok(session);
        }
        let id = self.login().await?;
        Ok(self.store_session(id))
    }

    fn store_session(&self, id: Secret) -> Session {
        let session = Session {
            id,
            generation: self.inner.generation.fetch_add(1, Ordering::Relaxed) + 1,
        };
        *lock(&self.inner.session) = Some(session.clone());
        session
    }

    fn forget_session(&self, generation: u64) {
        let mut current = lock(&self.inner.session);
        if current.as_ref().is_some_and(|s| s.generation == generation) {
            *current = None;
        }
    }
}

fn no_backups() -> ProviderError {
    ProviderError::Unsupported("Zomro's documented API has no backups".into())
}

fn is_access_denied(err: &ProviderError) -> bool {
    matches!(err, ProviderError::Auth(message) if message.starts_with(ACCESS_DENIED))
}

/// Turns an answer into its `doc`, or the error it carries. Order matters: a 429 proves the
/// request was not processed and carries the pause, so it wins; then an error in the body wins
/// over any status; then statuses; then the body must be JSON with a `doc`.
pub(crate) fn interpret(reply: &Reply, secrets: &[&str]) -> Result<Object, ProviderError> {
    if reply.status == StatusCode::TOO_MANY_REQUESTS {
        return Err(ProviderError::RateLimited {
            retry_after: reply.retry_after,
        });
    }
    let parsed: Option<Value> = serde_json::from_slice(&reply.body).ok();
    if let Some(doc) = parsed
        .as_ref()
        .and_then(|v| v.get("doc"))
        .and_then(Value::as_object)
        && let Some(error) = zomro_json::body_error(doc)
    {
        return Err(classify_body_error(&error, secrets));
    }
    if let Some(err) = transport::common_status_error(reply, secrets) {
        return Err(err);
    }
    if !reply.status.is_success() {
        // Including 404: the single URL answering "not found" is a wrong endpoint, never a
        // missing snapshot.
        return Err(ProviderError::InvalidRequest(format!(
            "HTTP {}: {}",
            reply.status.as_u16(),
            reply.snippet(secrets)
        )));
    }
    let Some(value) = parsed else {
        return Err(ProviderError::Protocol(format!(
            "the answer is not JSON: {}",
            reply.snippet(secrets)
        )));
    };
    match value {
        Value::Object(mut top) => match top.remove("doc") {
            Some(Value::Object(doc)) => Ok(doc),
            _ => Err(ProviderError::Protocol(
                "the answer has no \"doc\" object".into(),
            )),
        },
        _ => Err(ProviderError::Protocol(
            "the answer is not a JSON object".into(),
        )),
    }
}

pub(crate) fn classify_body_error(error: &BodyError, secrets: &[&str]) -> ProviderError {
    let message = scrub(&error.message, secrets);
    let kind = scrub(&error.kind, secrets);
    match kind.as_str() {
        "access" => ProviderError::Auth(format!("{ACCESS_DENIED} (access): {message}")),
        "auth" => ProviderError::Auth(format!("login rejected (auth): {message}")),
        "extraconfirm" => ProviderError::Auth(
            "the account requires a second login factor (extraconfirm); a dedicated API user without \
             two-factor authentication is needed"
                .into(),
        ),
        "missed" | "notfound" | "not_found" | "noobject" => ProviderError::NotFound(format!("({kind}) {message}")),
        "" => ProviderError::InvalidRequest(message),
        _ => ProviderError::InvalidRequest(format!("({kind}) {message}")),
    }
}

/// Case-insensitive; the documented `Saving`/`Active` plus the other OpenStack image states.
pub(crate) fn zomro_state(raw: &str) -> RemoteState {
    match raw.to_ascii_lowercase().as_str() {
        "saving" | "queued" => RemoteState::Pending,
        "active" => RemoteState::Ready,
        "killed" => RemoteState::Failed,
        "deleted" | "pending_delete" | "deactivated" => RemoteState::Gone,
        _ => RemoteState::Unknown,
    }
}

/// `createdate` is a date only: midnight UTC stands in for the time. A date followed by a time
/// is read for its date part too.
fn parse_createdate(raw: &str) -> Result<jiff::Timestamp, ProviderError> {
    let date_part = match raw.get(..10) {
        Some(head) if raw.len() > 10 && raw[10..].starts_with([' ', 'T']) => head,
        _ => raw,
    };
    date_part
        .parse::<jiff::civil::Date>()
        .and_then(|d| d.to_zoned(jiff::tz::TimeZone::UTC))
        .map(|z| z.timestamp())
        .map_err(|_| {
            ProviderError::Protocol(format!("unreadable createdate {:?}", scrub(raw, &[])))
        })
}

/// `image_size` is in GB (inferred); whole numbers and decimals are read, anything negative,
/// non-finite or too large for megabytes is a protocol error.
fn image_size_mb(raw: &str) -> Result<u64, ProviderError> {
    let bad = || ProviderError::Protocol(format!("unreadable image_size {:?}", scrub(raw, &[])));
    let raw = raw.trim();
    if let Ok(gb) = raw.parse::<u64>() {
        return gb.checked_mul(1024).ok_or_else(bad);
    }
    let gb: f64 = raw.parse().map_err(|_| bad())?;
    let mb = gb * 1024.0;
    // 2^63 keeps the conversion exact in range; the guard also rejects NaN and infinities.
    if !(0.0..9.0e18).contains(&mb) {
        return Err(bad());
    }
    Ok(mb.round() as u64)
}

fn snapshot_from_elem(elem: &Object, server: u64) -> Result<RemoteSnapshot, ProviderError> {
    use zomro_json::{required, scalar};
    let id = required(elem, "id")?.to_owned();
    let name = scalar(elem, "name")?
        .ok_or_else(|| {
            ProviderError::Protocol(format!("snapshot {} has no name", scrub(&id, &[])))
        })?
        .to_owned();
    let raw_status = scalar(elem, "fleio_status")?.unwrap_or_default().to_owned();
    let created_at = match scalar(elem, "createdate")? {
        None | Some("") => None,
        Some(raw) => Some(parse_createdate(raw)?),
    };
    let size_mb = match scalar(elem, "image_size")? {
        None | Some("") => None,
        Some(raw) => Some(image_size_mb(raw)?),
    };
    // Documented values are "on" and "off"; anything else is read as protected, the side on
    // which nothing gets deleted by mistake.
    let protected = match scalar(elem, "protected")? {
        None | Some("") => false,
        Some(flag) => !flag.trim().eq_ignore_ascii_case("off"),
    };
    Ok(RemoteSnapshot {
        id,
        server_id: server,
        name,
        description: None,
        state: zomro_state(&raw_status),
        raw_status,
        created_at,
        size_mb,
        protected,
    })
}

/// Reads `doc.elem` (any of its shapes) and `doc.p_elems`.
pub(crate) fn parse_snapshot_list(
    doc: &Object,
    server: u64,
) -> Result<Listing<RemoteSnapshot>, ProviderError> {
    let items = zomro_json::elems(doc, "elem")?
        .into_iter()
        .map(|elem| snapshot_from_elem(elem, server))
        .collect::<Result<Vec<_>, _>>()?;
    let complete = match zomro_json::scalar(doc, "p_elems")? {
        None | Some("") => true,
        Some(total) => {
            let total: u64 = total.trim().parse().map_err(|_| {
                ProviderError::Protocol(format!("unreadable p_elems {:?}", scrub(total, &[])))
            })?;
            total <= items.len() as u64
        }
    };
    Ok(Listing { items, complete })
}

/// The snapshot a create just made: same name, not on its way out, newest id first.
fn find_by_name(items: Vec<RemoteSnapshot>, name: &str) -> Option<RemoteSnapshot> {
    items
        .into_iter()
        .filter(|s| s.name == name)
        .max_by_key(|s| {
            (
                s.state != RemoteState::Gone,
                s.id.parse::<u64>().ok(),
                s.id.clone(),
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provider::etiquette::{GateLimits, NoopObserver, RetryPolicy};
    use crate::provider::test_support::{MockServer, arb_json, reply};
    use proptest::prelude::*;
    use std::time::Duration;

    /// docs/providers.md §B, verbatim.
    const DOC_LIST: &str = r#"{"doc": {"elem": [{"id": {"$": "5204214"}, "name": {"$": "MySnapshot"},
  "fleio_status": {"$": "Active"}, "createdate": {"$": "2024-07-23"}, "image_size": {"$": "3"},
  "protected": {"$": "off"}, "region": {"$": "Netherlands-2"}, "disk_format": {"$": "qcow2"}}]}}"#;

    /// §B.1 error shape.
    const ACCESS_ERROR: &str = r#"{"doc": {"error": {"$type": "access", "msg": {"$": "Insufficient privileges to access this function"}}}}"#;

    fn ok_reply(body: &str) -> Reply {
        Reply {
            status: StatusCode::OK,
            retry_after: None,
            body: body.as_bytes().to_vec(),
        }
    }

    fn parse_body(
        status: u16,
        body: &[u8],
        server: u64,
    ) -> Result<Listing<RemoteSnapshot>, ProviderError> {
        let reply = Reply {
            status: StatusCode::from_u16(status).unwrap(),
            retry_after: None,
            body: body.to_vec(),
        };
        parse_snapshot_list(&interpret(&reply, &[])?, server)
    }

    #[test]
    fn parses_the_documented_list() {
        let listing = parse_body(200, DOC_LIST.as_bytes(), 5203773).unwrap();
        assert!(listing.complete);
        assert_eq!(
            listing.items,
            [RemoteSnapshot {
                id: "5204214".into(),
                server_id: 5203773,
                name: "MySnapshot".into(),
                description: None,
                state: RemoteState::Ready,
                raw_status: "Active".into(),
                created_at: Some("2024-07-23T00:00:00Z".parse().unwrap()),
                size_mb: Some(3 * 1024),
                protected: false,
            }]
        );
    }

    #[test]
    fn elem_as_single_object_empty_object_or_absent() {
        let single = r#"{"doc": {"elem": {"id": {"$": "1"}, "name": {"$": "a"}, "fleio_status": {"$": "Saving"}}}}"#;
        let listing = parse_body(200, single.as_bytes(), 1).unwrap();
        assert_eq!(listing.items.len(), 1);
        assert_eq!(listing.items[0].state, RemoteState::Pending);
        assert_eq!(listing.items[0].size_mb, None);
        for empty in [
            r#"{"doc": {"elem": {}}}"#,
            r#"{"doc": {}}"#,
            r#"{"doc": {"elem": []}}"#,
        ] {
            let listing = parse_body(200, empty.as_bytes(), 1).unwrap();
            assert!(listing.items.is_empty() && listing.complete, "{empty}");
        }
    }

    #[test]
    fn p_elems_beyond_items_means_incomplete() {
        let body = DOC_LIST.replacen(r#"{"doc": {"#, r#"{"doc": {"p_elems": {"$": "1200"}, "#, 1);
        assert!(!parse_body(200, body.as_bytes(), 1).unwrap().complete);
        let body = DOC_LIST.replacen(r#"{"doc": {"#, r#"{"doc": {"p_elems": {"$": "1"}, "#, 1);
        assert!(parse_body(200, body.as_bytes(), 1).unwrap().complete);
    }

    #[test]
    fn states_are_case_insensitive_and_unknowns_kept() {
        for (raw, state) in [
            ("Saving", RemoteState::Pending),
            ("QUEUED", RemoteState::Pending),
            ("active", RemoteState::Ready),
            ("Killed", RemoteState::Failed),
            ("Deleted", RemoteState::Gone),
            ("Pending_delete", RemoteState::Gone),
            ("deactivated", RemoteState::Gone),
            ("Importing", RemoteState::Unknown),
        ] {
            assert_eq!(zomro_state(raw), state, "{raw}");
        }
    }

    #[test]
    fn field_readers() {
        assert_eq!(image_size_mb("3").unwrap(), 3072);
        assert_eq!(image_size_mb("2.5").unwrap(), 2560);
        for bad in ["-1", "x", "NaN", "inf", "1e300", "99999999999999999999"] {
            assert!(image_size_mb(bad).is_err(), "{bad}");
        }
        let midnight: jiff::Timestamp = "2024-07-23T00:00:00Z".parse().unwrap();
        assert_eq!(parse_createdate("2024-07-23").unwrap(), midnight);
        assert_eq!(parse_createdate("2024-07-23 15:04:05").unwrap(), midnight);
        for bad in ["2024-13-01", "23.07.2024", "", "2024-07-23x", "2024-07-2é"] {
            assert!(parse_createdate(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn protection_flags() {
        let body = |flag: &str| {
            format!(
                r#"{{"doc": {{"elem": {{"id": {{"$": "1"}}, "name": {{"$": "a"}}, "protected": {flag}}}}}}}"#
            )
        };
        let protected =
            |flag: &str| parse_body(200, body(flag).as_bytes(), 1).unwrap().items[0].protected;
        assert!(protected(r#"{"$": "on"}"#));
        assert!(protected(r#"{"$": "ON"}"#));
        assert!(protected(r#"{"$": "yes"}"#));
        assert!(!protected(r#"{"$": "off"}"#));
        assert!(!protected("{}"));
    }

    #[test]
    fn errors_in_the_body_win_over_the_status() {
        let err = interpret(&ok_reply(ACCESS_ERROR), &[]).unwrap_err();
        assert!(is_access_denied(&err), "{err:?}");
        let cases = [
            (
                r#"{"doc": {"error": {"$type": "auth", "msg": {"$": "Invalid username or password"}}}}"#,
                "Auth",
            ),
            (
                r#"{"doc": {"error": {"$type": "extraconfirm", "msg": {"$": "Enter the code"}}}}"#,
                "Auth",
            ),
            (
                r#"{"doc": {"error": {"$type": "missed", "msg": {"$": "The item does not exist"}}}}"#,
                "NotFound",
            ),
            (
                r#"{"doc": {"error": {"$type": "exists", "msg": {"$": "Name taken"}}}}"#,
                "InvalidRequest",
            ),
            (
                r#"{"doc": {"error": {"$type": "value", "msg": {"$": "Bad name"}}}}"#,
                "InvalidRequest",
            ),
            (r#"{"doc": {"error": {}}}"#, "InvalidRequest"),
        ];
        for (body, class) in cases {
            assert_eq!(
                interpret(&ok_reply(body), &[]).unwrap_err().class(),
                class,
                "{body}"
            );
            let mut failed = ok_reply(body);
            failed.status = StatusCode::INTERNAL_SERVER_ERROR;
            assert_eq!(
                interpret(&failed, &[]).unwrap_err().class(),
                class,
                "{body}"
            );
        }
        let err = interpret(
            &ok_reply(r#"{"doc": {"error": {"$type": "extraconfirm"}}}"#),
            &[],
        )
        .unwrap_err();
        assert!(err.to_string().contains("dedicated API user"));
        assert!(!is_access_denied(&err));
    }

    #[test]
    fn malformed_answers_are_errors() {
        let cases: &[(u16, &str)] = &[
            (200, "<html><body>Service Unavailable</body></html>"),
            (200, ""),
            (200, &DOC_LIST[..40]),
            (200, "[]"),
            (200, r#"{"elem": []}"#),
            (200, r#"{"doc": "x"}"#),
            (200, r#"{"doc": {"elem": "x"}}"#),
            (200, r#"{"doc": {"elem": [5]}}"#),
            (200, r#"{"doc": {"elem": {"name": {"$": "no id"}}}}"#),
            (200, r#"{"doc": {"elem": {"id": {"$": "1"}}}}"#),
            (
                200,
                r#"{"doc": {"elem": {"id": {"$": 5}, "name": {"$": "a"}}}}"#,
            ),
            (200, r#"{"doc": {"elem": {"id": 5, "name": {"$": "a"}}}}"#),
            (
                200,
                r#"{"doc": {"elem": {"id": {"$": "1"}, "name": {"$": "a"}, "image_size": {"$": "-3"}}}}"#,
            ),
            (
                200,
                r#"{"doc": {"elem": {"id": {"$": "1"}, "name": {"$": "a"}, "createdate": {"$": "soon"}}}}"#,
            ),
            (200, r#"{"doc": {"p_elems": {"$": "many"}}}"#),
            (404, "<html>Not Found</html>"),
            (502, "<html>Bad Gateway</html>"),
            (302, ""),
        ];
        for (status, body) in cases {
            assert!(
                parse_body(*status, body.as_bytes(), 1).is_err(),
                "{status} {body}"
            );
        }
        assert!(matches!(
            parse_body(200, b"<html></html>", 1),
            Err(ProviderError::Protocol(_))
        ));
        assert!(matches!(
            parse_body(502, b"", 1),
            Err(ProviderError::Transient(_))
        ));
        assert!(matches!(
            parse_body(404, b"", 1),
            Err(ProviderError::InvalidRequest(_))
        ));
    }

    fn arb_wrapped() -> impl Strategy<Value = Value> {
        prop_oneof![
            ".{0,8}".prop_map(|s| serde_json::json!({"$": s})),
            prop_oneof![
                Just("Active"),
                Just("Saving"),
                Just("2024-07-23"),
                Just("3"),
                Just("on"),
                Just("")
            ]
            .prop_map(|s| serde_json::json!({"$": s})),
            arb_json(),
        ]
    }

    proptest! {
        #[test]
        fn never_panics_on_bytes(status in 100u16..600, body in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = parse_body(status, &body, 1);
        }

        #[test]
        fn never_panics_on_json(status in prop_oneof![Just(200u16), 100u16..600], value in arb_json()) {
            let _ = parse_body(status, value.to_string().as_bytes(), 1);
            let _ = parse_body(status, serde_json::json!({"doc": value}).to_string().as_bytes(), 1);
        }

        /// Arbitrary field values in any elem shape: a listing whose items all carry an id and
        /// the requested server, or a clean error.
        #[test]
        fn elem_shaped_values_parse_or_fail_cleanly(
            fields in proptest::collection::vec(
                proptest::collection::btree_map(
                    prop_oneof![Just("id"), Just("name"), Just("fleio_status"), Just("createdate"), Just("image_size"), Just("protected"), Just("p_elems")],
                    arb_wrapped(),
                    0..7,
                ),
                0..4,
            ),
            single in any::<bool>(),
            p_elems in proptest::option::of(arb_wrapped()),
        ) {
            let elems: Vec<Value> = fields.into_iter().map(|m| Value::Object(m.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())).collect();
            let elem = if single && elems.len() == 1 { elems[0].clone() } else { Value::Array(elems) };
            let mut doc = serde_json::json!({"elem": elem});
            if let Some(p) = p_elems { doc["p_elems"] = p; }
            match parse_body(200, serde_json::json!({"doc": doc}).to_string().as_bytes(), 9) {
                Ok(listing) => prop_assert!(listing.items.iter().all(|s| !s.id.is_empty() && s.server_id == 9)),
                Err(e) => prop_assert!(matches!(e, ProviderError::Protocol(_)), "{e:?}"),
            }
        }
    }

    // ---- over HTTP, against a scripted server ----

    fn client(endpoint: &str, session: bool) -> ZomroClient {
        let config = ProviderConfig {
            endpoint: endpoint.into(),
            credentials: Credentials::Login {
                username: Secret::new("api-user"),
                password: Secret::new("pa55word"),
                session,
            },
            requests_per_second: 100,
            burst: 100,
            max_in_flight: 4,
            request_timeout: Duration::from_secs(5),
            snapshot_limit: 5,
            backup_limit: 10,
            fence: None,
        };
        let gate = Gate::new(
            "zomro",
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
        ZomroClient::new(&config, Arc::new(gate)).unwrap()
    }

    const LOGIN_OK: &str = r#"{"doc": {"auth": {"$id": "sess-1", "$": "sess-1"}}}"#;

    fn list_of(names: &[(&str, &str, &str)]) -> String {
        let elems: Vec<_> = names
            .iter()
            .map(|(id, name, protected)| {
                serde_json::json!({"id": {"$": id}, "name": {"$": name},
                "fleio_status": {"$": "Saving"}, "protected": {"$": protected}})
            })
            .collect();
        serde_json::json!({"doc": {"elem": elems}}).to_string()
    }

    #[tokio::test]
    async fn session_mode_logs_in_once_and_sends_documented_fields() {
        let server = MockServer::start(vec![
            reply(200, LOGIN_OK),
            reply(200, r#"{"doc": {"ok": {}}}"#),
            reply(
                200,
                list_of(&[("10", "other", "off"), ("11", "nightly", "off")]),
            ),
            reply(200, list_of(&[("11", "nightly", "off")])),
            reply(200, r#"{"doc": {"ok": {}}}"#),
        ])
        .await;
        let c = client(&server.url, true);
        let created = c
            .create_snapshot(5203773, "nightly", Some("ignored"))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(created.id, "11");
        c.delete_snapshot(5203773, "11").await.unwrap();

        let seen = server.received();
        assert_eq!(seen.len(), 5);
        assert!(seen.iter().all(|r| r.method == "POST" && r.path == "/"));
        assert!(
            seen.iter()
                .all(|r| r.headers["content-type"] == "application/x-www-form-urlencoded")
        );
        assert!(
            seen.iter()
                .all(|r| r.field("out").as_deref() == Some("json")
                    && r.field("lang").as_deref() == Some("en"))
        );
        assert_eq!(seen[0].field("func").as_deref(), Some("auth"));
        assert_eq!(seen[0].field("username").as_deref(), Some("api-user"));
        assert_eq!(seen[0].field("password").as_deref(), Some("pa55word"));
        for r in &seen[1..] {
            assert_eq!(r.field("auth").as_deref(), Some("sess-1"));
            assert_eq!(r.field("password"), None);
        }
        let create = &seen[1];
        assert_eq!(
            create.field("func").as_deref(),
            Some("instances.snapshots.edit")
        );
        assert_eq!(create.field("plid").as_deref(), Some("5203773"));
        assert_eq!(create.field("name").as_deref(), Some("nightly"));
        assert_eq!(create.field("sok").as_deref(), Some("ok"));
        let list = &seen[2];
        assert_eq!(list.field("func").as_deref(), Some("instances.snapshots"));
        assert_eq!(list.field("elid").as_deref(), Some("5203773"));
        assert_eq!(list.field("p_cnt").as_deref(), Some("1000"));
        assert_eq!(list.field("p_num").as_deref(), Some("1"));
        assert_eq!(list.field("sok"), None);
        let delete = &seen[4];
        assert_eq!(delete.field("func").as_deref(), Some("image.delete"));
        assert_eq!(delete.field("plid").as_deref(), Some("5203773"));
        assert_eq!(delete.field("elid").as_deref(), Some("11"));
        assert_eq!(delete.field("elname").as_deref(), Some("11"));
        assert_eq!(delete.field("sok").as_deref(), Some("ok"));
    }

    #[tokio::test]
    async fn an_expired_session_is_renewed_once() {
        let server = MockServer::start(vec![
            reply(200, LOGIN_OK),
            reply(200, ACCESS_ERROR),
            reply(200, r#"{"doc": {"auth": {"$id": "sess-2"}}}"#),
            reply(200, list_of(&[])),
        ])
        .await;
        let c = client(&server.url, true);
        assert!(c.list_snapshots(1).await.unwrap().items.is_empty());
        let seen = server.received();
        assert_eq!(seen[1].field("auth").as_deref(), Some("sess-1"));
        assert_eq!(seen[3].field("auth").as_deref(), Some("sess-2"));
    }

    #[tokio::test]
    async fn missing_rights_are_reported_after_one_relogin() {
        let server = MockServer::start(vec![
            reply(200, LOGIN_OK),
            reply(200, ACCESS_ERROR),
            reply(200, LOGIN_OK),
            reply(200, ACCESS_ERROR),
        ])
        .await;
        let err = client(&server.url, true)
            .list_snapshots(1)
            .await
            .unwrap_err();
        assert!(matches!(err, ProviderError::Auth(_)));
        assert_eq!(server.received().len(), 4);
    }

    #[tokio::test]
    async fn authinfo_mode_sends_credentials_on_every_call() {
        let server =
            MockServer::start(vec![reply(200, list_of(&[])), reply(200, ACCESS_ERROR)]).await;
        let c = client(&server.url, false);
        c.list_snapshots(1).await.unwrap();
        assert!(matches!(
            c.list_snapshots(1).await,
            Err(ProviderError::Auth(_))
        ));
        let seen = server.received();
        assert_eq!(seen.len(), 2, "no re-login in authinfo mode");
        assert_eq!(
            seen[0].field("authinfo").as_deref(),
            Some("api-user:pa55word")
        );
        assert_eq!(seen[0].field("auth"), None);
    }

    #[tokio::test]
    async fn protected_or_unlisted_snapshots_are_not_deleted() {
        let server = MockServer::start(vec![
            reply(200, list_of(&[("7", "keep", "on")])),
            reply(200, list_of(&[("7", "keep", "on")])),
        ])
        .await;
        let c = client(&server.url, false);
        assert!(matches!(
            c.delete_snapshot(1, "7").await,
            Err(ProviderError::Protected(_))
        ));
        assert!(matches!(
            c.delete_snapshot(1, "8").await,
            Err(ProviderError::NotFound(_))
        ));
        assert!(
            server
                .received()
                .iter()
                .all(|r| r.field("func").as_deref() == Some("instances.snapshots"))
        );
    }

    #[tokio::test]
    async fn a_missed_delete_is_only_not_found_when_the_list_agrees() {
        let missed = r#"{"doc": {"error": {"$type": "missed", "msg": {"$": "no such function"}}}}"#;
        let server = MockServer::start(vec![
            reply(200, list_of(&[("7", "a", "off")])),
            reply(200, missed),
            reply(200, list_of(&[("7", "a", "off")])),
            reply(200, list_of(&[("7", "a", "off")])),
            reply(200, missed),
            reply(200, list_of(&[])),
        ])
        .await;
        let c = client(&server.url, false);
        assert!(matches!(
            c.delete_snapshot(1, "7").await,
            Err(ProviderError::InvalidRequest(_))
        ));
        assert!(matches!(
            c.delete_snapshot(1, "7").await,
            Err(ProviderError::NotFound(_))
        ));
    }

    #[tokio::test]
    async fn a_refused_create_on_a_full_server_is_limit_reached() {
        let full: Vec<_> = (0..5).map(|i| (format!("{i}"), format!("s{i}"))).collect();
        let full: Vec<_> = full
            .iter()
            .map(|(id, n)| (id.as_str(), n.as_str(), "off"))
            .collect();
        let server = MockServer::start(vec![
            reply(
                200,
                r#"{"doc": {"error": {"$type": "value", "msg": {"$": "Too many snapshots"}}}}"#,
            ),
            reply(200, list_of(&full)),
        ])
        .await;
        let err = client(&server.url, false)
            .create_snapshot(1, "x", None)
            .await
            .unwrap_err();
        assert!(matches!(err, ProviderError::LimitReached(_)), "{err:?}");
    }

    #[tokio::test]
    async fn a_create_not_yet_listed_is_none() {
        let server =
            MockServer::start(vec![reply(200, r#"{"doc": {}}"#), reply(200, list_of(&[]))]).await;
        assert_eq!(
            client(&server.url, false)
                .create_snapshot(1, "x", None)
                .await
                .unwrap(),
            None
        );
    }

    #[tokio::test]
    async fn backups_and_restores_are_unsupported_without_a_request() {
        let server = MockServer::start(vec![]).await;
        let c = client(&server.url, true);
        assert!(matches!(
            c.list_backups(1).await,
            Err(ProviderError::Unsupported(_))
        ));
        assert!(matches!(
            c.create_backup(1, None).await,
            Err(ProviderError::Unsupported(_))
        ));
        assert!(matches!(
            c.delete_backup(1, "2").await,
            Err(ProviderError::Unsupported(_))
        ));
        assert!(matches!(
            c.restore_backup(1, "2").await,
            Err(ProviderError::Unsupported(_))
        ));
        assert!(matches!(
            c.restore_snapshot(1, "2").await,
            Err(ProviderError::Unsupported(_))
        ));
        assert!(server.received().is_empty());
        assert_eq!(
            c.capabilities(),
            ProviderCapabilities {
                snapshots: true,
                backups: false,
                snapshot_restore: false,
                backup_restore: false
            }
        );
    }

    #[tokio::test]
    async fn two_factor_accounts_get_a_clear_message() {
        let server = MockServer::start(vec![reply(
            200,
            r#"{"doc": {"error": {"$type": "extraconfirm", "msg": {"$": "Code"}}}}"#,
        )])
        .await;
        let err = client(&server.url, true)
            .check_credentials()
            .await
            .unwrap_err();
        assert!(
            matches!(&err, ProviderError::Auth(m) if m.contains("without two-factor")),
            "{err:?}"
        );
    }
}
