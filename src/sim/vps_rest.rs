//! The VpsRest façade: a Django-REST-style JSON API under `/api/v1/`.
//!
//! Paths are matched exactly as documented, trailing slash included; the slash-less forms
//! fall through to the router fallback and answer 404, so a client that forgets the slash
//! is caught rather than silently helped.

use super::conn::Conn;
use super::gate::{Answer, Sim};
use super::model::{BackupType, SimApi, SimBackup, SimSnapshot};
use super::state::{
    CreateError, DeleteOutcome, DeleteRequest, ListView, NewBackup, NewSnapshot, RestoreError,
    server_name,
};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use serde_json::{Map, Value, json};
use std::collections::HashMap;
use std::sync::Arc;

type Sh = State<Arc<Sim>>;
type Ci = ConnectInfo<Conn>;

/// Longest accepted snapshot name: the real limit is undocumented (docs/providers.md, U4).
pub const MAX_NAME_LEN: usize = 255;

pub fn routes() -> Router<Arc<Sim>> {
    Router::new()
        .route("/api/v1/account/me/", get(account_me))
        .route(
            "/api/v1/snapshots/",
            get(list_snapshots).post(create_snapshot),
        )
        .route("/api/v1/snapshots/{id}/", delete(delete_snapshot))
        .route("/api/v1/snapshots/{id}/restore/", post(restore_snapshot))
        .route("/api/v1/backups/", get(list_backups).post(create_backup))
        .route("/api/v1/backups/{id}/", delete(delete_backup))
        .route("/api/v1/servers/{id}/restore/", post(restore_server))
}

fn detail(status: StatusCode, text: impl Into<String>) -> Response {
    (status, axum::Json(json!({ "detail": text.into() }))).into_response()
}

pub fn not_found() -> Response {
    detail(StatusCode::NOT_FOUND, "Not found.")
}

fn unauthorized(text: &str) -> Response {
    let mut resp = detail(StatusCode::UNAUTHORIZED, text);
    resp.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer realm=\"api\""),
    );
    resp
}

fn authorize(sim: &Sim, headers: &HeaderMap) -> Result<(), Answer> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Err(unauthorized("Authentication credentials were not provided.").into());
    };
    let value = value.to_str().unwrap_or_default().trim();
    let (scheme, token) = value.split_once(' ').unwrap_or((value, ""));
    let token = token.trim();
    if !scheme.eq_ignore_ascii_case("bearer") || token.is_empty() {
        return Err(unauthorized("Invalid token header. No credentials provided.").into());
    }
    if sim.config().tokens.iter().any(|t| t == token) {
        Ok(())
    } else {
        Err(unauthorized("Invalid token.").into())
    }
}

/// Count, fault, authenticate: the common prologue of every endpoint.
async fn begin(
    sim: &Sim,
    key: &str,
    conn: &Conn,
    headers: &HeaderMap,
) -> Result<super::faults::Decision, Answer> {
    let decision = sim.enter(key, SimApi::VpsRest, conn, headers).await?;
    authorize(sim, headers)?;
    Ok(decision)
}

fn path_id(raw: &str) -> Result<u64, Answer> {
    raw.parse().map_err(|_| not_found().into())
}

/// The JSON object body; an empty body reads as `{}` so missing fields get field errors.
fn json_body(headers: &HeaderMap, body: &Bytes) -> Result<Map<String, Value>, Answer> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Map::new());
    }
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let essence = content_type.split(';').next().unwrap_or_default().trim();
    if !essence.eq_ignore_ascii_case("application/json") {
        return Err(detail(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("Unsupported media type \"{content_type}\" in request."),
        )
        .into());
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(other) => Err(bad_request(json!({ "non_field_errors": [format!(
            "Invalid data. Expected a dictionary, but got {}.",
            json_type(&other)
        )] }))),
        Err(e) => Err(detail(StatusCode::BAD_REQUEST, format!("JSON parse error - {e}")).into()),
    }
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "str",
        Value::Array(_) => "list",
        Value::Object(_) => "dict",
    }
}

/// DRF-style per-field error collection.
#[derive(Default)]
struct FieldErrors(Map<String, Value>);

impl FieldErrors {
    fn add(&mut self, field: &str, msg: &str) {
        self.0.insert(field.into(), json!([msg]));
    }

    fn int(&mut self, body: &Map<String, Value>, field: &str) -> Option<u64> {
        match body.get(field) {
            None => self.add(field, "This field is required."),
            Some(Value::Null) => self.add(field, "This field may not be null."),
            Some(Value::Number(n)) if n.as_u64().is_some() => return n.as_u64(),
            Some(_) => self.add(field, "A valid integer is required."),
        }
        None
    }

    fn text(&mut self, body: &Map<String, Value>, field: &str, required: bool) -> Option<String> {
        match body.get(field) {
            None | Some(Value::Null) if !required => {}
            None => self.add(field, "This field is required."),
            Some(Value::Null) => self.add(field, "This field may not be null."),
            Some(Value::String(s)) if s.is_empty() && required => {
                self.add(field, "This field may not be blank.");
            }
            Some(Value::String(s)) => return Some(s.clone()),
            Some(_) => self.add(field, "Not a valid string."),
        }
        None
    }

    fn into_result(self) -> Result<(), Answer> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err((StatusCode::BAD_REQUEST, axum::Json(Value::Object(self.0)))
                .into_response()
                .into())
        }
    }
}

fn server_ref(id: u64) -> Value {
    json!({ "id": id, "name": server_name(id) })
}

fn snapshot_json(s: &SimSnapshot) -> Value {
    let mut v = json!({
        "id": s.id,
        "server": server_ref(s.server),
        "name": s.name,
        "status": s.status.vps_rest(),
        "size_mb": s.size_mb,
        "created_at": s.created_at.to_string(),
    });
    // The field is left out when no description was given (the contract allows absent).
    if let Some(d) = &s.description {
        v["description"] = json!(d);
    }
    v
}

fn backup_json(b: &SimBackup) -> Value {
    let mut v = json!({
        "id": b.id,
        "server": server_ref(b.server),
        "backup_type": b.backup_type.as_str(),
        "status": b.status.vps_rest(),
        "size_mb": b.size_mb,
        "created_at": b.created_at.to_string(),
        "expires_at": b.expires_at.map(|t| t.to_string()),
    });
    if let Some(d) = &b.description {
        v["description"] = json!(d);
    }
    v
}

/// `count` is always the whole list's length; with `partial_lists` only the first `cap`
/// results come along, as from a provider that pages without saying how to get the rest.
fn page(sim: &Sim, mut results: Vec<Value>, cap: Option<usize>) -> Response {
    let count = results.len();
    if let Some(cap) = cap
        && count > cap
    {
        results.truncate(cap);
        sim.state().count_fault("partial_list");
    }
    axum::Json(json!({ "count": count, "results": results })).into_response()
}

fn list_view(decision: &super::faults::Decision) -> ListView {
    ListView {
        shuffle: decision.shuffle,
        hide_younger_than: decision.behaviour.visibility_delay,
    }
}

/// A description as the provider stores it, and as sent when that differs.
fn stored(
    decision: &super::faults::Decision,
    sent: Option<String>,
) -> (Option<String>, Option<String>) {
    let kept = decision.behaviour.store_description(sent.clone());
    if kept == sent {
        (kept, None)
    } else {
        (kept, sent)
    }
}

/// A performed create's answer: held back, then lost or sent.
async fn answer_create(
    sim: &Sim,
    conn: &Conn,
    decision: &super::faults::Decision,
    body: Value,
) -> Response {
    sim.count_outcome(&decision.outcome);
    if let Some(hold) = decision.hold {
        sim.hold_answer(hold, &decision.caller).await;
    }
    if let Some(mode) = decision.lost_create {
        return sim.lose(mode, conn);
    }
    (StatusCode::CREATED, axum::Json(body)).into_response()
}

/// An accepted restore's answer is held back like a create's: the server is already being
/// restored while its caller waits (what a frozen or cut-off caller meets).
async fn hold_accepted(sim: &Sim, decision: &super::faults::Decision, accepted: bool) {
    if let (true, Some(hold)) = (accepted, decision.hold) {
        sim.hold_answer(hold, &decision.caller).await;
    }
}

fn server_filter(query: &HashMap<String, String>) -> Result<Option<u64>, Answer> {
    match query.get("server_id") {
        None => Ok(None),
        Some(raw) if raw.is_empty() => Ok(None),
        Some(raw) => raw.parse().map(Some).map_err(|_| {
            (
                StatusCode::BAD_REQUEST,
                axum::Json(json!({ "server_id": ["Enter a number."] })),
            )
                .into_response()
                .into()
        }),
    }
}

/// Handlers answer `Err` for every early exit (faults, auth, validation).
type Handled = Result<Response, Answer>;

fn bad_request(body: Value) -> Answer {
    (StatusCode::BAD_REQUEST, axum::Json(body))
        .into_response()
        .into()
}

async fn account_me(State(sim): Sh, ConnectInfo(conn): Ci, headers: HeaderMap) -> Handled {
    begin(&sim, "vps_rest.account.me", &conn, &headers).await?;
    let position = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .and_then(|(_, t)| sim.config().tokens.iter().position(|k| k == t.trim()))
        .unwrap_or(0);
    // Names the token by position only: the secret itself is never echoed.
    Ok(axum::Json(json!({
        "id": 1,
        "username": "sim",
        "email": "sim@example.invalid",
        "token": {
            "name": format!("sim-token-{}", position + 1),
            "permissions": ["snapshots", "backups", "servers"],
        },
    }))
    .into_response())
}

async fn list_snapshots(
    State(sim): Sh,
    ConnectInfo(conn): Ci,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Handled {
    let decision = begin(&sim, "vps_rest.snapshots.list", &conn, &headers).await?;
    let server = server_filter(&query)?;
    if decision.shuffle {
        sim.state().count_fault("shuffle");
    }
    let list = sim.state().list_snapshots(server, list_view(&decision));
    Ok(page(
        &sim,
        list.iter().map(snapshot_json).collect(),
        decision.behaviour.partial_lists,
    ))
}

fn valid_name(errors: &mut FieldErrors, name: &str) {
    if name.chars().count() > MAX_NAME_LEN {
        errors.add(
            "name",
            &format!("Ensure this field has no more than {MAX_NAME_LEN} characters."),
        );
    } else if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        errors.add(
            "name",
            "Enter a valid \"slug\" consisting of letters, numbers, underscores or hyphens.",
        );
    }
}

async fn create_snapshot(
    State(sim): Sh,
    ConnectInfo(conn): Ci,
    headers: HeaderMap,
    body: Bytes,
) -> Handled {
    let decision = begin(&sim, "vps_rest.snapshots.create", &conn, &headers).await?;
    let body = json_body(&headers, &body)?;
    let mut errors = FieldErrors::default();
    let server = errors.int(&body, "server_id");
    let name = errors.text(&body, "name", true);
    if let Some(n) = &name {
        valid_name(&mut errors, n);
    }
    let description = errors.text(&body, "description", false);
    errors.into_result()?;
    let (Some(server), Some(name)) = (server, name) else {
        return Err(detail(StatusCode::BAD_REQUEST, "Invalid parameters.").into());
    };
    let (description, requested_description) = stored(&decision, description);
    let created = sim.state().create_snapshot(NewSnapshot {
        server,
        name,
        description,
        requested_description,
        outcome: decision.outcome.clone(),
        ready_after: sim.config().create_delay,
        protected: false,
        api: SimApi::VpsRest,
        response_lost: decision.lost_create.is_some(),
        answer_held: decision.hold,
        limit: Some(sim.config().snapshot_limit),
        caller: decision.caller.clone(),
    });
    let snapshot = match created {
        Ok(s) => s,
        Err(CreateError::NoServer) => {
            return Ok(detail(StatusCode::NOT_FOUND, "Server not found."));
        }
        Err(CreateError::Limit(limit)) => {
            return Ok(detail(
                StatusCode::BAD_REQUEST,
                format!("Snapshot limit reached: a server can have at most {limit} snapshots."),
            ));
        }
    };
    let mut v = snapshot_json(&snapshot);
    v["message"] =
        json!("Snapshot is being created. This may take 3-10 minutes depending on server size.");
    Ok(answer_create(&sim, &conn, &decision, v).await)
}

async fn delete_snapshot(
    State(sim): Sh,
    ConnectInfo(conn): Ci,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Handled {
    let decision = begin(&sim, "vps_rest.snapshots.delete", &conn, &headers).await?;
    let id = path_id(&id)?;
    // VpsRest has no notion of protection, so the Zomro-side flag is not honoured here.
    let outcome = sim
        .state()
        .delete_snapshot(id, None, false, delete_request(&decision));
    Ok(deleted(&outcome))
}

fn delete_request(decision: &super::faults::Decision) -> DeleteRequest {
    DeleteRequest {
        api: SimApi::VpsRest,
        linger: decision.behaviour.delete_linger,
        caller: decision.caller.clone(),
    }
}

/// 204 for a delete accepted now and also for one of an object already deleting: a
/// Django-REST destroy of an object the provider still holds succeeds, and a client that
/// lost the first answer and retries must not be told "not found" about an object it can
/// still see listed. 404 only once the object has vanished.
fn deleted<T>(outcome: &DeleteOutcome<T>) -> Response {
    match outcome {
        DeleteOutcome::Deleted(_)
        | DeleteOutcome::AlreadyDeleting(_)
        | DeleteOutcome::Protected(_) => StatusCode::NO_CONTENT.into_response(),
        DeleteOutcome::NotFound => not_found(),
    }
}

async fn restore_snapshot(
    State(sim): Sh,
    ConnectInfo(conn): Ci,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Handled {
    let decision = begin(&sim, "vps_rest.snapshots.restore", &conn, &headers).await?;
    let id = path_id(&id)?;
    let restored = sim.state().restore_snapshot(id, decision.caller.clone());
    hold_accepted(&sim, &decision, restored.is_ok()).await;
    Ok(match restored {
        Err(RestoreError::NotFound(_)) => not_found(),
        Err(RestoreError::Invalid(why)) => detail(StatusCode::BAD_REQUEST, why),
        Ok(s) => axum::Json(json!({
            "status": "success",
            "message": "Server is being restored from snapshot. This may take 5-15 minutes.",
            "snapshot": { "id": s.id, "name": s.name, "created_at": s.created_at.to_string() },
            "server": { "id": s.server, "name": server_name(s.server), "status": "restoring" },
        }))
        .into_response(),
    })
}

async fn list_backups(
    State(sim): Sh,
    ConnectInfo(conn): Ci,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Handled {
    let decision = begin(&sim, "vps_rest.backups.list", &conn, &headers).await?;
    let server = server_filter(&query)?;
    let backup_type = match query.get("backup_type").map(String::as_str) {
        None | Some("") => None,
        Some("manual") => Some(BackupType::Manual),
        Some("automatic") => Some(BackupType::Automatic),
        Some(other) => {
            return Err(bad_request(json!({ "backup_type": [format!(
                "Select a valid choice. {other} is not one of the available choices."
            )] })));
        }
    };
    if decision.shuffle {
        sim.state().count_fault("shuffle");
    }
    let list = sim
        .state()
        .list_backups(server, backup_type, list_view(&decision));
    Ok(page(
        &sim,
        list.iter().map(backup_json).collect(),
        decision.behaviour.partial_lists,
    ))
}

async fn create_backup(
    State(sim): Sh,
    ConnectInfo(conn): Ci,
    headers: HeaderMap,
    body: Bytes,
) -> Handled {
    let decision = begin(&sim, "vps_rest.backups.create", &conn, &headers).await?;
    let body = json_body(&headers, &body)?;
    let mut errors = FieldErrors::default();
    let server = errors.int(&body, "server_id");
    let description = errors.text(&body, "description", false);
    errors.into_result()?;
    let Some(server) = server else {
        return Err(detail(StatusCode::BAD_REQUEST, "Invalid parameters.").into());
    };
    let (description, requested_description) = stored(&decision, description);
    let created = sim.state().create_backup(NewBackup {
        server,
        backup_type: BackupType::Manual,
        description,
        requested_description,
        outcome: decision.outcome.clone(),
        ready_after: sim.config().create_delay,
        api: SimApi::VpsRest,
        response_lost: decision.lost_create.is_some(),
        answer_held: decision.hold,
        limit: Some(sim.config().backup_limit),
        caller: decision.caller.clone(),
    });
    let backup = match created {
        Ok(b) => b,
        Err(CreateError::NoServer) => {
            return Ok(detail(StatusCode::NOT_FOUND, "Server not found."));
        }
        Err(CreateError::Limit(limit)) => {
            return Ok(detail(
                StatusCode::BAD_REQUEST,
                format!(
                    "Backup limit reached: a server can have at most {limit} backups (manual + automatic)."
                ),
            ));
        }
    };
    let mut v = backup_json(&backup);
    v["message"] =
        json!("Backup is being created. This may take several minutes depending on server size.");
    Ok(answer_create(&sim, &conn, &decision, v).await)
}

async fn delete_backup(
    State(sim): Sh,
    ConnectInfo(conn): Ci,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Handled {
    let decision = begin(&sim, "vps_rest.backups.delete", &conn, &headers).await?;
    let id = path_id(&id)?;
    let outcome = sim.state().delete_backup(id, delete_request(&decision));
    Ok(deleted(&outcome))
}

async fn restore_server(
    State(sim): Sh,
    ConnectInfo(conn): Ci,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Handled {
    let decision = begin(&sim, "vps_rest.servers.restore", &conn, &headers).await?;
    let server = path_id(&id)?;
    if !sim.state().has_server(server) {
        return Ok(not_found());
    }
    let body = json_body(&headers, &body)?;
    let mut errors = FieldErrors::default();
    let backup_id = errors.int(&body, "backup_id");
    errors.into_result()?;
    let Some(backup_id) = backup_id else {
        return Err(detail(StatusCode::BAD_REQUEST, "Invalid parameters.").into());
    };
    let restored = sim
        .state()
        .restore_backup(server, backup_id, decision.caller.clone());
    hold_accepted(&sim, &decision, restored.is_ok()).await;
    Ok(match restored {
        Err(RestoreError::NotFound(_)) => detail(StatusCode::NOT_FOUND, "Backup not found."),
        Err(RestoreError::Invalid(why)) => detail(StatusCode::BAD_REQUEST, why),
        Ok(b) => axum::Json(json!({
            "status": "success",
            "message": "Server is being restored from backup. This may take 15-60 minutes.",
            "backup": { "id": b.id, "created_at": b.created_at.to_string() },
            "server": { "id": server, "name": server_name(server), "status": "restoring" },
        }))
        .into_response(),
    })
}
