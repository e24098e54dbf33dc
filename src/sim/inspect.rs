//! Inspection and control under `/_sim/`: no auth, JSON, never faulted, not counted.

use super::faults::Faults;
use super::gate::Sim;
use super::model::{BackupType, Caller, SimApi, SimBackup, SimSnapshot, SimStatus};
use super::state::{NewBackup, NewSnapshot};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;

type Sh = State<Arc<Sim>>;

pub fn routes() -> Router<Arc<Sim>> {
    Router::new()
        .route("/_sim/state", get(state))
        .route("/_sim/calls", get(calls))
        .route("/_sim/log", get(log))
        .route("/_sim/record", get(record))
        .route("/_sim/faults", get(get_faults).put(put_faults))
        .route("/_sim/reset", post(reset))
        .route("/_sim/servers/{id}/snapshots", post(add_snapshot))
        .route("/_sim/servers/{id}/backups", post(add_backup))
}

fn bad_request(msg: impl Into<String>) -> Response {
    (
        StatusCode::BAD_REQUEST,
        axum::Json(json!({ "error": msg.into() })),
    )
        .into_response()
}

/// An empty body stands for `{}` so every field can take its default.
fn body_or_default<T: for<'de> Deserialize<'de> + Default>(body: &Bytes) -> Result<T, String> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(body).map_err(|e| e.to_string())
}

async fn state(State(sim): Sh) -> Response {
    let faults = sim.faults();
    let mut st = sim.state();
    let body = json!({
        "servers": st.servers(),
        "snapshots": st.snapshots(None),
        "backups": st.backups(None),
        "sessions": st.live_sessions(),
        "held_answers": st.held().len(),
        "held": st.held(),
        "faults": faults,
    });
    drop(st);
    axum::Json(body).into_response()
}

async fn calls(State(sim): Sh) -> Response {
    let st = sim.state();
    let body = json!({ "calls": st.calls(), "faults": st.faults_injected() });
    drop(st);
    axum::Json(body).into_response()
}

#[derive(Deserialize)]
struct Since {
    #[serde(default)]
    since: u64,
}

/// `GET /_sim/log?since=N`: every API request from number N on, with its `User-Agent`.
async fn log(State(sim): Sh, Query(q): Query<Since>) -> Response {
    let calls = sim.state().call_log(q.since);
    axum::Json(json!({ "calls": calls })).into_response()
}

async fn record(State(sim): Sh) -> Response {
    let record = sim.state().record();
    axum::Json(record).into_response()
}

async fn get_faults(State(sim): Sh) -> Response {
    axum::Json(sim.faults()).into_response()
}

async fn put_faults(State(sim): Sh, body: Bytes) -> Response {
    let faults: Faults = match body_or_default(&body) {
        Ok(f) => f,
        Err(e) => return bad_request(e),
    };
    if let Err(e) = faults.validate() {
        return bad_request(e);
    }
    sim.set_faults(faults.clone());
    axum::Json(faults).into_response()
}

async fn reset(State(sim): Sh) -> Response {
    sim.reset();
    StatusCode::NO_CONTENT.into_response()
}

/// Final status and delay for a foreign object: `in_progress` progresses like a real create.
fn progression(sim: &Sim, status: Option<&str>) -> (SimStatus, Duration) {
    match status.map(SimStatus::parse) {
        None => (SimStatus::Completed, Duration::ZERO),
        Some(SimStatus::InProgress) => (SimStatus::Completed, sim.config().create_delay),
        Some(other) => (other, Duration::ZERO),
    }
}

pub fn foreign_snapshot(
    sim: &Sim,
    server: u64,
    name: &str,
    description: Option<String>,
    protected: bool,
    status: Option<&str>,
) -> SimSnapshot {
    let (outcome, ready_after) = progression(sim, status);
    let mut st = sim.state();
    st.ensure_server(server);
    st.insert_snapshot(NewSnapshot {
        server,
        name: name.to_string(),
        description,
        requested_description: None,
        outcome,
        ready_after,
        protected,
        api: SimApi::Inspect,
        response_lost: false,
        answer_held: None,
        limit: None,
        caller: Caller::default(),
    })
}

pub fn foreign_backup(
    sim: &Sim,
    server: u64,
    automatic: bool,
    description: Option<String>,
    status: Option<&str>,
) -> SimBackup {
    let (outcome, ready_after) = progression(sim, status);
    let mut st = sim.state();
    st.ensure_server(server);
    st.add_backup(NewBackup {
        server,
        backup_type: if automatic {
            BackupType::Automatic
        } else {
            BackupType::Manual
        },
        description,
        requested_description: None,
        outcome,
        ready_after,
        api: SimApi::Inspect,
        response_lost: false,
        answer_held: None,
        limit: None,
        caller: Caller::default(),
    })
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ForeignSnapshot {
    name: Option<String>,
    description: Option<String>,
    #[serde(default)]
    protected: bool,
    status: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ForeignBackup {
    #[serde(default)]
    automatic: bool,
    description: Option<String>,
    status: Option<String>,
}

async fn add_snapshot(State(sim): Sh, Path(id): Path<u64>, body: Bytes) -> Response {
    let req: ForeignSnapshot = match body_or_default(&body) {
        Ok(r) => r,
        Err(e) => return bad_request(e),
    };
    let name = req.name.unwrap_or_else(|| "foreign-snapshot".into());
    let s = foreign_snapshot(
        &sim,
        id,
        &name,
        req.description,
        req.protected,
        req.status.as_deref(),
    );
    (StatusCode::CREATED, axum::Json(s)).into_response()
}

async fn add_backup(State(sim): Sh, Path(id): Path<u64>, body: Bytes) -> Response {
    let req: ForeignBackup = match body_or_default(&body) {
        Ok(r) => r,
        Err(e) => return bad_request(e),
    };
    let b = foreign_backup(
        &sim,
        id,
        req.automatic,
        req.description,
        req.status.as_deref(),
    );
    (StatusCode::CREATED, axum::Json(b)).into_response()
}
