//! The Zomro façade: BILLmanager-style `POST /billmgr` with a `func` per operation.
//!
//! Errors are bodies (`doc.error`) with HTTP 200, as BILLmanager does. Without `out=json` the
//! answer is XML (BILLmanager's default), so a client that forgets `out=json` gets a
//! non-JSON body. Changing functions without `sok=ok` only describe their form and change
//! nothing, as BILLmanager does.

use super::conn::Conn;
use super::faults::{Decision, LostMode};
use super::form;
use super::gate::Sim;
use super::model::{SimApi, SimSnapshot};
use super::state::{CreateError, DeleteOutcome, DeleteRequest, ListView, NewSnapshot};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use jiff::tz::TimeZone;
use serde_json::{Map, Value, json};
use std::collections::HashMap;
use std::sync::Arc;

pub fn routes() -> Router<Arc<Sim>> {
    Router::new()
        .route("/billmgr", post(billmgr))
        .route("/billmgr/", post(billmgr))
}

enum Reply {
    Doc(Value),
    /// A create was performed; its answer may be held back and may be lost.
    Created {
        hold: Option<std::time::Duration>,
        lost: Option<LostMode>,
    },
}

fn wrap(v: impl ToString) -> Value {
    json!({ "$": v.to_string() })
}

fn error_doc(kind: &str, object: &str, msg: &str) -> Value {
    json!({ "doc": { "error": { "$type": kind, "$object": object, "msg": { "$": msg } } } })
}

fn access_denied(func: &str) -> Value {
    error_doc(
        "access",
        func,
        "Insufficient privileges to access this function",
    )
}

fn missed(object: &str, what: &str) -> Value {
    error_doc("missed", object, &format!("{what} not found"))
}

fn ok_doc(func: &str) -> Value {
    json!({ "doc": { "$lang": "en", "$func": func, "ok": {} } })
}

fn call_key(func: &str) -> &'static str {
    match func {
        "auth" => "zomro.auth",
        "instances.snapshots" => "zomro.instances.snapshots",
        "instances.snapshots.edit" => "zomro.instances.snapshots.edit",
        "image.delete" => "zomro.image.delete",
        _ => "zomro.unknown",
    }
}

async fn billmgr(
    State(sim): State<Arc<Sim>>,
    ConnectInfo(conn): ConnectInfo<Conn>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let parsed = form::parse(content_type, &body);
    let empty = HashMap::new();
    let params = parsed.as_ref().unwrap_or(&empty);
    let func = params.get("func").map(String::as_str).unwrap_or_default();
    let decision = match sim
        .enter(call_key(func), SimApi::Zomro, &conn, &headers)
        .await
    {
        Ok(d) => d,
        Err(r) => return r.into_response(),
    };
    let json_out = params.get("out").is_some_and(|o| o == "json");
    let reply = match &parsed {
        Err(e) => Reply::Doc(error_doc("format", "body", e)),
        Ok(p) => dispatch(&sim, &decision, func, p),
    };
    let reply = match reply {
        Reply::Created { hold, lost } => {
            if let Some(hold) = hold {
                sim.hold_answer(hold, &decision.caller).await;
            }
            if let Some(mode) = lost {
                return sim.lose(mode, &conn);
            }
            ok_doc("instances.snapshots.edit")
        }
        Reply::Doc(doc) => doc,
    };
    match reply {
        doc if json_out => axum::Json(doc).into_response(),
        doc => (
            [(header::CONTENT_TYPE, "text/xml; charset=UTF-8")],
            to_xml(&doc),
        )
            .into_response(),
    }
}

fn dispatch(sim: &Sim, d: &Decision, func: &str, p: &HashMap<String, String>) -> Reply {
    if func == "auth" {
        return Reply::Doc(login(sim, p));
    }
    if let Err(doc) = authenticate(sim, func, p) {
        return Reply::Doc(doc);
    }
    match func {
        "instances.snapshots" => Reply::Doc(list(sim, d, p)),
        "instances.snapshots.edit" => create(sim, d, p),
        "image.delete" => Reply::Doc(delete(sim, d, p)),
        "" => Reply::Doc(missed("func", "Function")),
        other => Reply::Doc(missed("func", &format!("Function '{other}'"))),
    }
}

fn login(sim: &Sim, p: &HashMap<String, String>) -> Value {
    let user = p.get("username").map(String::as_str).unwrap_or_default();
    let password = p.get("password").map(String::as_str).unwrap_or_default();
    match sim.state().login(user, password) {
        Some(id) => json!({ "doc": { "$lang": "en", "auth": { "$id": id, "$": id } } }),
        None => error_doc("auth", "badpassword", "Invalid username or password"),
    }
}

fn authenticate(sim: &Sim, func: &str, p: &HashMap<String, String>) -> Result<(), Value> {
    if let Some(session) = p.get("auth").filter(|s| !s.is_empty()) {
        return if sim.state().touch_session(session) {
            Ok(())
        } else {
            Err(access_denied(func))
        };
    }
    if let Some(info) = p.get("authinfo") {
        let (user, password) = info.split_once(':').unwrap_or((info, ""));
        return if sim.state().credentials_ok(user, password) {
            Ok(())
        } else {
            Err(error_doc(
                "auth",
                "badpassword",
                "Invalid username or password",
            ))
        };
    }
    Err(access_denied(func))
}

/// The instance named by `field`, if it is an integer naming a known server.
fn instance(sim: &Sim, p: &HashMap<String, String>, field: &str) -> Result<u64, Value> {
    p.get(field)
        .and_then(|v| v.trim().parse().ok())
        .filter(|id| sim.state().has_server(*id))
        .ok_or_else(|| missed(field, "Instance"))
}

/// Deterministic uuid-looking OpenStack image id.
fn fleio_id(seed: u64, id: u64) -> String {
    fn mix(mut z: u64) -> u64 {
        z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    let a = mix(seed ^ id);
    let b = mix(a ^ id.rotate_left(17));
    format!(
        "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0x0fff,
        0x8000 | (b >> 48 & 0x3fff),
        b & 0xffff_ffff_ffff
    )
}

fn elem(s: &SimSnapshot, seed: u64) -> Value {
    let mut e = Map::new();
    let mut put = |k: &str, v: String| {
        e.insert(k.into(), wrap(v));
    };
    put("id", s.id.to_string());
    put("name", s.name.clone());
    put("fleio_status", s.status.zomro());
    put("fleio_id", fleio_id(seed, s.id));
    put(
        "createdate",
        s.created_at.to_zoned(TimeZone::UTC).date().to_string(),
    );
    if let Some(mb) = s.size_mb {
        put("image_size", mb.div_ceil(1024).to_string());
    }
    put("item_real_status", "2".into());
    put("min_disk", "10".into());
    put("min_ram", "512".into());
    put("disk_format", "qcow2".into());
    put("architecture", "x86_64".into());
    put("hypervisor_type", "qemu".into());
    put("os_distro", "Ubuntu".into());
    put("os_version", "22.04 x64".into());
    put("region", "Netherlands-2".into());
    put("protected", if s.protected { "on" } else { "off" }.into());
    put("visibility", "private".into());
    Value::Object(e)
}

fn list(sim: &Sim, d: &Decision, p: &HashMap<String, String>) -> Value {
    let server = match instance(sim, p, "elid") {
        Ok(s) => s,
        Err(doc) => return doc,
    };
    if d.shuffle {
        sim.state().count_fault("shuffle");
    }
    let view = ListView {
        shuffle: d.shuffle,
        hide_younger_than: d.behaviour.visibility_delay,
    };
    let all = sim.state().list_snapshots(Some(server), view);
    let total = all.len();
    let asked = p
        .get("p_cnt")
        .and_then(|v| v.parse::<usize>().ok())
        .filter(|n| *n > 0);
    // A provider capping its page size answers fewer than asked; `p_elems` still tells.
    let p_cnt = match (asked, d.behaviour.partial_lists) {
        (Some(a), Some(cap)) => Some(a.min(cap)),
        (None, Some(cap)) => Some(cap),
        (a, None) => a,
    };
    if p_cnt.is_some_and(|cnt| cnt < total) && p_cnt != asked {
        sim.state().count_fault("partial_list");
    }
    let p_num = p
        .get("p_num")
        .and_then(|v| v.parse::<usize>().ok())
        .filter(|n| *n > 0)
        .unwrap_or(1);
    let page: Vec<Value> = match p_cnt {
        Some(cnt) => all
            .iter()
            .skip(cnt.saturating_mul(p_num - 1))
            .take(cnt)
            .map(|s| elem(s, sim.config().seed))
            .collect(),
        None => all.iter().map(|s| elem(s, sim.config().seed)).collect(),
    };
    let mut doc = json!({
        "$lang": "en",
        "$func": "instances.snapshots",
        "p_elems": wrap(total),
        "p_num": wrap(p_num),
        "p_cnt": wrap(p_cnt.unwrap_or(total)),
    });
    let elem = match (d.quirky_elem, page.len()) {
        (true, 0) if d.empty_as_object => Some(json!({})),
        (true, 0) => None,
        (true, 1) => page.into_iter().next(),
        _ => Some(Value::Array(page)),
    };
    if let Some(elem) = elem {
        doc["elem"] = elem;
    }
    json!({ "doc": doc })
}

fn confirmed(p: &HashMap<String, String>) -> bool {
    p.get("sok").is_some_and(|v| v == "ok")
}

fn create(sim: &Sim, d: &Decision, p: &HashMap<String, String>) -> Reply {
    const FUNC: &str = "instances.snapshots.edit";
    let server = match instance(sim, p, "plid") {
        Ok(s) => s,
        Err(doc) => return Reply::Doc(doc),
    };
    if p.get("elid").is_some_and(|e| !e.is_empty()) {
        return Reply::Doc(error_doc(
            "value",
            "elid",
            "Editing an existing snapshot is not supported",
        ));
    }
    let name = p.get("name").map(|n| n.trim()).unwrap_or_default();
    if !confirmed(p) {
        return Reply::Doc(json!({ "doc": {
            "$lang": "en", "$func": FUNC, "plid": wrap(server), "name": wrap(name),
        } }));
    }
    if name.is_empty() {
        return Reply::Doc(error_doc("empty", "name", "Field 'name' is required"));
    }
    let created = sim.state().create_snapshot(NewSnapshot {
        server,
        name: name.to_string(),
        description: None,
        requested_description: None,
        outcome: d.outcome.clone(),
        ready_after: sim.config().create_delay,
        protected: false,
        api: SimApi::Zomro,
        response_lost: d.lost_create.is_some(),
        answer_held: d.hold,
        limit: Some(sim.config().zomro_snapshot_limit),
        caller: d.caller.clone(),
    });
    match created {
        Err(CreateError::NoServer) => Reply::Doc(missed("plid", "Instance")),
        Err(CreateError::Limit(limit)) => Reply::Doc(error_doc(
            "limit",
            "snapshot",
            &format!("The snapshot limit of {limit} for this instance has been reached"),
        )),
        Ok(_) => {
            sim.count_outcome(&d.outcome);
            Reply::Created {
                hold: d.hold,
                lost: d.lost_create,
            }
        }
    }
}

fn delete(sim: &Sim, d: &Decision, p: &HashMap<String, String>) -> Value {
    const FUNC: &str = "image.delete";
    let server = match instance(sim, p, "plid") {
        Ok(s) => s,
        Err(doc) => return doc,
    };
    let target = p
        .get("elid")
        .filter(|v| !v.is_empty())
        .or_else(|| p.get("elname"))
        .and_then(|v| v.trim().parse::<u64>().ok());
    let Some(id) = target else {
        return missed("elid", "Snapshot");
    };
    if !confirmed(p) {
        return json!({ "doc": { "$lang": "en", "$func": FUNC, "elid": wrap(id) } });
    }
    let outcome = sim.state().delete_snapshot(
        id,
        Some(server),
        true,
        DeleteRequest {
            api: SimApi::Zomro,
            linger: d.behaviour.delete_linger,
            caller: d.caller.clone(),
        },
    );
    match outcome {
        // Like VpsRest's 204: an image already `Pending_delete` is still there, so deleting
        // it again is accepted and changes nothing.
        DeleteOutcome::Deleted(_) | DeleteOutcome::AlreadyDeleting(_) => ok_doc(FUNC),
        DeleteOutcome::NotFound => missed("elid", "Snapshot"),
        DeleteOutcome::Protected(_) => error_doc(
            "protected",
            "elid",
            "The snapshot is protected and cannot be deleted",
        ),
    }
}

/// BILLmanager's XML rendering of a `doc`: `$name` keys become attributes, `$` the text.
fn to_xml(doc: &Value) -> String {
    fn escape(s: &str) -> String {
        s.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
            .replace('"', "&quot;")
    }
    fn node(name: &str, v: &Value, out: &mut String) {
        match v {
            Value::Array(items) => items.iter().for_each(|i| node(name, i, out)),
            Value::Object(map) => {
                out.push('<');
                out.push_str(name);
                for (k, v) in map
                    .iter()
                    .filter(|(k, _)| k.len() > 1 && k.starts_with('$'))
                {
                    let text = v.as_str().map_or_else(|| v.to_string(), str::to_string);
                    out.push_str(&format!(" {}=\"{}\"", &k[1..], escape(&text)));
                }
                out.push('>');
                if let Some(text) = map.get("$") {
                    out.push_str(&escape(
                        &text
                            .as_str()
                            .map_or_else(|| text.to_string(), str::to_string),
                    ));
                }
                for (k, v) in map.iter().filter(|(k, _)| !k.starts_with('$')) {
                    node(k, v, out);
                }
                out.push_str(&format!("</{name}>"));
            }
            Value::String(s) => out.push_str(&format!("<{name}>{}</{name}>", escape(s))),
            other => out.push_str(&format!("<{name}>{other}</{name}>")),
        }
    }
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    node("doc", doc.get("doc").unwrap_or(&Value::Null), &mut out);
    out
}
