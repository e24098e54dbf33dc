//! What every vpsnap object said about itself over the run: a watch records each change of
//! phase, Ready reason, provider id or deletion, so the checks can see an object leave a
//! terminal state and tell which provider objects it ever claimed. Read as JSON (not the
//! typed API) so the harness does not break when the status gains fields.
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, PoisonError};

use futures::StreamExt;
use jiff::Timestamp;
use kube::api::{Api, ApiResource, DynamicObject};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, ResourceExt};
use serde_json::Value;
use tokio::task::JoinHandle;

/// One observed state of an object (recorded only when it differs from the previous one).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Observation {
    pub at: Timestamp,
    pub phase: Option<String>,
    /// The reason of `Ready` (`Succeeded` for restores).
    pub reason: Option<String>,
    pub provider_id: Option<String>,
    /// `metadata.deletionTimestamp` is set.
    pub terminating: bool,
    /// A restore's `restoreRequestedAt` marker is present.
    pub restore_marker: bool,
}

impl Observation {
    fn same_state(&self, other: &Self) -> bool {
        (
            &self.phase,
            &self.reason,
            &self.provider_id,
            self.terminating,
            self.restore_marker,
        ) == (
            &other.phase,
            &other.reason,
            &other.provider_id,
            other.terminating,
            other.restore_marker,
        )
    }
}

/// One object as first seen, with everything it said since.
#[derive(Clone, Debug)]
pub struct Tracked {
    pub kind: String,
    pub name: String,
    pub uid: String,
    pub server: Option<u64>,
    /// `spec.snapshotName` (snapshots).
    pub snapshot_name: Option<String>,
    pub pinned: bool,
    pub evictable: bool,
    pub retain: bool,
    /// `spec.source.snapshotRef.name` / `backupRef.name` (restores), with the kind it names.
    pub source_ref: Option<(String, String)>,
    /// `metadata.deletionTimestamp`, the moment deletion was asked for.
    pub deletion_requested: Option<Timestamp>,
    pub observations: Vec<Observation>,
    /// Every provider id its status ever named (restores: `sourceProviderId`).
    pub provider_ids: BTreeSet<String>,
    pub gone: bool,
    /// When the watch saw it leave the cluster (its finalizers released).
    pub gone_at: Option<Timestamp>,
}

/// A transition out of a terminal phase that no deletion explains.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TerminalExit {
    pub kind: String,
    pub name: String,
    pub from: String,
    pub to: String,
    pub at: Timestamp,
}

/// Phases an object of `kind` never leaves by itself.
pub fn terminal_phases(kind: &str) -> &'static [&'static str] {
    match kind {
        "VpsRestore" => &["Succeeded", "Failed"],
        _ => &["Evicted", "Failed"],
    }
}

fn text(v: &Value, pointer: &str) -> Option<String> {
    v.pointer(pointer)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

fn condition_reason(v: &Value, type_: &str) -> Option<String> {
    v.pointer("/status/conditions")?
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_)
        .and_then(|c| c["reason"].as_str())
        .map(str::to_string)
}

#[derive(Default)]
pub struct History {
    /// By (kind, uid).
    objects: BTreeMap<(String, String), Tracked>,
}

impl History {
    /// Records `obj` as seen at `at`.
    pub fn observe(&mut self, kind: &str, obj: &DynamicObject, at: Timestamp) {
        let v = serde_json::to_value(obj).unwrap_or(Value::Null);
        let uid = obj.uid().unwrap_or_default();
        let restore = kind == "VpsRestore";
        let tracked = self
            .objects
            .entry((kind.to_string(), uid.clone()))
            .or_insert_with(|| Tracked {
                kind: kind.to_string(),
                name: obj.name_any(),
                uid,
                server: v.pointer("/spec/serverId").and_then(Value::as_u64),
                snapshot_name: text(&v, "/spec/snapshotName"),
                pinned: v.pointer("/spec/pinned").and_then(Value::as_bool) == Some(true),
                evictable: v.pointer("/spec/evictable").and_then(Value::as_bool) == Some(true),
                retain: text(&v, "/spec/deletionPolicy").as_deref() == Some("Retain"),
                source_ref: text(&v, "/spec/source/snapshotRef/name")
                    .map(|n| ("VpsSnapshot".to_string(), n))
                    .or_else(|| {
                        text(&v, "/spec/source/backupRef/name").map(|n| ("VpsBackup".into(), n))
                    }),
                deletion_requested: None,
                observations: Vec::new(),
                provider_ids: BTreeSet::new(),
                gone: false,
                gone_at: None,
            });
        if let Some(ts) = &obj.metadata.deletion_timestamp {
            tracked.deletion_requested.get_or_insert(ts.0);
        }
        let id_pointer = if restore {
            "/status/sourceProviderId"
        } else {
            "/status/providerId"
        };
        let seen = Observation {
            at,
            phase: text(&v, "/status/phase"),
            reason: condition_reason(&v, if restore { "Succeeded" } else { "Ready" }),
            provider_id: text(&v, id_pointer),
            terminating: obj.metadata.deletion_timestamp.is_some(),
            restore_marker: text(&v, "/status/restoreRequestedAt").is_some(),
        };
        if let Some(id) = &seen.provider_id {
            tracked.provider_ids.insert(id.clone());
        }
        if tracked
            .observations
            .last()
            .is_none_or(|last| !last.same_state(&seen))
        {
            tracked.observations.push(seen);
        }
    }

    pub fn gone(&mut self, kind: &str, uid: &str, at: Timestamp) {
        if let Some(t) = self.objects.get_mut(&(kind.to_string(), uid.to_string())) {
            t.gone = true;
            t.gone_at = Some(at);
        }
    }

    pub fn objects(&self) -> impl Iterator<Item = &Tracked> {
        self.objects.values()
    }

    /// Every move out of a terminal phase that is not the object being deleted.
    pub fn terminal_exits(&self) -> Vec<TerminalExit> {
        let mut out = Vec::new();
        for t in self.objects.values() {
            let terminal = terminal_phases(&t.kind);
            for pair in t.observations.windows(2) {
                let (a, b) = (&pair[0], &pair[1]);
                let Some(from) = a.phase.as_deref().filter(|p| terminal.contains(p)) else {
                    continue;
                };
                // An evicted or failed object may become Failed/Evicted (still final) or be
                // deleted; anything else is leaving a final answer unasked.
                let to = b.phase.clone().unwrap_or_else(|| "(none)".into());
                let still_final = to == from || (from == "Failed" && to == "Evicted");
                if !still_final && !b.terminating {
                    out.push(TerminalExit {
                        kind: t.kind.clone(),
                        name: t.name.clone(),
                        from: from.to_string(),
                        to,
                        at: b.at,
                    });
                }
            }
        }
        out
    }

    /// Restores whose `restoreRequestedAt` marker disappeared while the object lived, other
    /// than for a refusal before the provider looked at the request (429, bad credentials),
    /// after which the operator may ask again.
    pub fn erased_restore_markers(&self) -> Vec<(String, Timestamp)> {
        let mut out = Vec::new();
        for t in self.objects.values().filter(|t| t.kind == "VpsRestore") {
            for pair in t.observations.windows(2) {
                let turned_away = matches!(
                    pair[1].reason.as_deref(),
                    Some("RateLimited" | "ProviderAuthFailed")
                );
                if pair[0].restore_marker
                    && !pair[1].restore_marker
                    && !pair[1].terminating
                    && !turned_away
                {
                    out.push((t.name.clone(), pair[1].at));
                }
            }
        }
        out
    }
}

/// Watches the given kinds in `ns` into a shared [`History`] until stopped.
pub struct Recorder {
    history: Arc<Mutex<History>>,
    tasks: Vec<JoinHandle<()>>,
}

impl Recorder {
    pub fn start(client: &Client, ns: &str, kinds: &[(String, ApiResource)]) -> Self {
        let history = Arc::new(Mutex::new(History::default()));
        let tasks = kinds
            .iter()
            .map(|(kind, ar)| {
                let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, ar);
                let history = history.clone();
                let kind = kind.clone();
                tokio::spawn(async move {
                    let mut events = watcher(api, watcher::Config::default())
                        .default_backoff()
                        .boxed();
                    while let Some(event) = events.next().await {
                        let now = Timestamp::now();
                        let mut h = history.lock().unwrap_or_else(PoisonError::into_inner);
                        match event {
                            Ok(watcher::Event::Apply(o) | watcher::Event::InitApply(o)) => {
                                h.observe(&kind, &o, now);
                            }
                            Ok(watcher::Event::Delete(o)) => {
                                h.observe(&kind, &o, now);
                                h.gone(&kind, &o.uid().unwrap_or_default(), now);
                            }
                            Ok(watcher::Event::Init | watcher::Event::InitDone) | Err(_) => {}
                        }
                    }
                })
            })
            .collect();
        Self { history, tasks }
    }

    /// Stops watching and hands over what was seen.
    pub fn finish(self) -> History {
        for t in &self.tasks {
            t.abort();
        }
        let mut h = self.history.lock().unwrap_or_else(PoisonError::into_inner);
        std::mem::take(&mut *h)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(
        uid: &str,
        phase: &str,
        reason: &str,
        id: Option<&str>,
        deleting: bool,
    ) -> DynamicObject {
        let mut v = json!({
            "apiVersion": "vpsnap.dev/v1alpha1", "kind": "VpsSnapshot",
            "metadata": {"name": "s-1", "namespace": "ns", "uid": uid},
            "spec": {"serverId": 101, "pinned": true, "deletionPolicy": "Retain"},
            "status": {"phase": phase, "conditions": [
                {"type": "Ready", "status": "False", "reason": reason, "message": "m",
                 "lastTransitionTime": "2026-01-01T00:00:00Z"}]},
        });
        if let Some(id) = id {
            v["status"]["providerId"] = json!(id);
        }
        if deleting {
            v["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:09Z");
        }
        serde_json::from_value(v).expect("object")
    }

    fn at(s: i64) -> Timestamp {
        Timestamp::from_second(1_767_225_600 + s).expect("ts")
    }

    #[test]
    fn records_changes_only_and_every_provider_id() {
        let mut h = History::default();
        h.observe(
            "VpsSnapshot",
            &obj("u1", "Creating", "Creating", None, false),
            at(0),
        );
        h.observe(
            "VpsSnapshot",
            &obj("u1", "Creating", "Creating", None, false),
            at(1),
        );
        h.observe(
            "VpsSnapshot",
            &obj("u1", "Ready", "Completed", Some("801"), false),
            at(2),
        );
        h.observe(
            "VpsSnapshot",
            &obj("u1", "Ready", "Completed", Some("802"), false),
            at(3),
        );
        let t = h.objects().next().expect("tracked");
        assert_eq!(t.observations.len(), 3);
        assert_eq!(t.provider_ids.iter().collect::<Vec<_>>(), ["801", "802"]);
        assert!(t.pinned && t.retain && !t.evictable);
        assert_eq!(t.server, Some(101));
        assert!(h.terminal_exits().is_empty());
    }

    #[test]
    fn leaving_evicted_or_failed_is_found_unless_deleting() {
        let mut h = History::default();
        h.observe(
            "VpsSnapshot",
            &obj("u1", "Evicted", "Evicted", Some("801"), false),
            at(0),
        );
        h.observe(
            "VpsSnapshot",
            &obj("u1", "Creating", "Creating", None, false),
            at(5),
        );
        h.observe(
            "VpsBackup",
            &obj("u2", "Failed", "GoneAtProvider", Some("5"), false),
            at(0),
        );
        h.observe(
            "VpsBackup",
            &obj("u2", "Evicted", "Evicted", Some("5"), false),
            at(1),
        );
        h.observe(
            "VpsBackup",
            &obj("u2", "Deleting", "Deleting", Some("5"), true),
            at(2),
        );
        h.observe(
            "VpsSnapshot",
            &obj("u3", "Failed", "ProviderFailed", Some("9"), false),
            at(0),
        );
        h.observe(
            "VpsSnapshot",
            &obj("u3", "Ready", "Completed", Some("9"), false),
            at(4),
        );
        let exits = h.terminal_exits();
        assert_eq!(exits.len(), 2, "{exits:?}");
        assert_eq!(
            (exits[0].from.as_str(), exits[0].to.as_str()),
            ("Evicted", "Creating")
        );
        assert_eq!(exits[0].at, at(5));
        assert_eq!(
            (exits[1].from.as_str(), exits[1].to.as_str()),
            ("Failed", "Ready")
        );
        let deleted = h
            .objects()
            .find(|t| t.uid == "u2")
            .and_then(|t| t.deletion_requested);
        assert_eq!(deleted, Some("2026-01-01T00:00:09Z".parse().expect("ts")));
    }

    #[test]
    fn an_erased_restore_marker_is_found() {
        let restore = |marker: bool| -> DynamicObject {
            let mut v = json!({
                "apiVersion": "vpsnap.dev/v1alpha1", "kind": "VpsRestore",
                "metadata": {"name": "r-1", "namespace": "ns", "uid": "r"},
                "spec": {"serverId": 1, "source": {"snapshotRef": {"name": "s-1"}}},
                "status": {"phase": "Restoring", "sourceProviderId": "801"},
            });
            if marker {
                v["status"]["restoreRequestedAt"] = json!("2026-01-01T00:00:00Z");
            }
            serde_json::from_value(v).expect("object")
        };
        let mut h = History::default();
        h.observe("VpsRestore", &restore(false), at(0));
        h.observe("VpsRestore", &restore(true), at(1));
        h.observe("VpsRestore", &restore(false), at(2));
        assert_eq!(h.erased_restore_markers(), vec![("r-1".to_string(), at(2))]);
        let t = h.objects().next().expect("tracked");
        assert_eq!(
            t.source_ref,
            Some(("VpsSnapshot".to_string(), "s-1".to_string()))
        );
        assert!(t.provider_ids.contains("801"));
    }
}
