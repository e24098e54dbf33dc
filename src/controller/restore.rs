//! `VpsRestore`: overwrite a server from a snapshot or a backup, at most once per object, ever.
//!
//! observe (a fresh read of the object, the source and safety-snapshot objects, the provider
//! registry, the server's shared listing) → decide (`decide`, pure) → act (at most one restore
//! call per object) → report (status only when changed, Events on transitions).
//!
//! The once-only rule rests on `status.restoreRequestedAt`. It is written before the call with
//! the resourceVersion of the fresh read as a precondition, so of two writers (a second replica
//! during a leader handover, a reconcile on an outdated read) at most one gets past it; and
//! every reconcile starts from a quorum read, never from the watch cache, which can lag behind
//! this controller's own writes. Set without `restoreAcceptedAt`, the outcome is in doubt: the
//! object reports `OutcomeUnknown` and nothing is ever sent again for it.
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::api::{Api, DeleteParams, PostParams};
use kube::runtime::controller::Action;
use kube::{Resource, ResourceExt};

use super::context::Context;
use super::listings::{Class, ServerKey, ServerListing};
use super::registry::{Lookup, ProviderHandle};
use super::snapshot_backup::RestorePoint;
use super::timing::jittered;
use super::{Error, ProviderStep, WriteStep, outcome, status};
use crate::api::conditions;
use crate::api::{
    DeletionPolicy, Phase, RestoreKind, RestorePhase, SourceSpec, VpsBackup, VpsRestore,
    VpsRestoreStatus, VpsSnapshot, VpsSnapshotSpec,
};
use crate::provider::{ProviderError, RemoteState};

pub const KIND: &str = "VpsRestore";
/// On the safety snapshot: UID of the `VpsRestore` it was taken for.
pub const RESTORE_UID_ANNOTATION: &str = "vpsnap.dev/restore-uid";
/// On the safety snapshot: name of the `VpsRestore` it was taken for.
pub const RESTORE_NAME_ANNOTATION: &str = "vpsnap.dev/restore";
const PRE_SNAPSHOT_SUFFIX: &str = "-before-restore";
/// Waits that need a human are re-checked slowly; watches wake them earlier.
const SLOW: Duration = Duration::from_secs(300);
const PROVIDER_WAIT: Duration = Duration::from_secs(60);

// --- decide (pure) ----------------------------------------------------------------------------

/// What the registry says about the provider.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProviderFacts {
    Missing,
    NotReady(String),
    Ready {
        snapshot_restore: bool,
        backup_restore: bool,
        /// e.g. `Zomro`, for messages.
        type_name: String,
    },
}

/// A wait: no provider call, the status says why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Wait {
    pub phase: RestorePhase,
    pub reason: &'static str,
    pub message: String,
    /// Needs a human (kstatus `Stalled`) rather than time.
    pub stalled: bool,
}

impl Wait {
    fn pending(reason: &'static str, message: String, stalled: bool) -> Self {
        Wait {
            phase: RestorePhase::Pending,
            reason,
            message,
            stalled,
        }
    }
}

/// The source as far as the Kubernetes objects tell.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SourceFacts {
    /// A provider id to restore from; `by_ref` when it came from a `VpsSnapshot`/`VpsBackup`.
    Usable {
        id: String,
        by_ref: bool,
    },
    Waiting(Wait),
}

/// What the server's listing at the provider says about the source id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Listed {
    Completed,
    /// Listed with another status (verbatim).
    NotCompleted(String),
    /// Not among the server's objects, in a complete listing.
    Absent,
    /// Not in a listing the provider said was partial: proves nothing.
    AbsentFromPartialList,
}

/// The safety snapshot (`snapshotBeforeRestore`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PreFacts {
    NotWanted,
    /// Not created yet.
    Absent,
    /// Created, not Ready yet.
    Pending(String),
    Ready,
    /// Cannot become Ready (limit reached, failed, deleted, a foreign object of that name).
    /// `delete`: the object never reached the provider and should go, so it does not snapshot
    /// the restored server later under a misleading name.
    Unusable {
        reason: String,
        delete: bool,
    },
    /// Already skipped (recorded in status).
    Skipped,
}

/// Everything `decide` looks at.
#[derive(Clone, Debug)]
pub struct Facts<'a> {
    pub status: &'a VpsRestoreStatus,
    pub server: i64,
    /// `None` when the spec names no single source (admission bypassed).
    pub kind: Option<RestoreKind>,
    pub provider: ProviderFacts,
    pub source: SourceFacts,
    /// `None` until the listing was looked at (`Step::Verify`).
    pub listed: Option<Listed>,
    pub pre: PreFacts,
    /// `None` until the server's snapshot slots were counted (`Step::CheckRoom`).
    pub room: Option<Room>,
}

/// Whether a safety snapshot fits on the server without evicting anything.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Room {
    Free,
    /// Why not, for the condition and the Event.
    Full(String),
}

/// The next step. Only `Restore` sends the restore call; `Verify` and `CheckRoom` only list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// Accepted by the provider: report success, nothing else, ever.
    Succeeded,
    /// Requested but never recorded as accepted: report the doubt, never call.
    Doubt,
    /// Failed for good earlier: keep the status as it is.
    Failed,
    Wait(Wait),
    /// A new final failure, found before any call.
    Fail {
        reason: &'static str,
        message: String,
    },
    /// List the server to check the source id belongs to it and is completed.
    Verify {
        id: String,
    },
    /// List the server's snapshots to see whether a safety snapshot fits.
    CheckRoom,
    CreatePreSnapshot,
    SkipPreSnapshot {
        reason: String,
        delete: bool,
    },
    Restore {
        id: String,
    },
}

/// The steps a status alone decides, before anything is read: a restore that was requested,
/// accepted or failed never goes further.
pub fn settled(st: &VpsRestoreStatus) -> Option<Step> {
    if st.restore_accepted_at.is_some() || st.phase == Some(RestorePhase::Succeeded) {
        return Some(Step::Succeeded);
    }
    // A final refusal keeps the marker of the call it answered: failed is failed.
    if st.phase == Some(RestorePhase::Failed) {
        return Some(Step::Failed);
    }
    if st.restore_requested_at.is_some() {
        return Some(Step::Doubt);
    }
    None
}

pub fn decide(f: &Facts) -> Step {
    if let Some(step) = settled(f.status) {
        return step;
    }
    let Some(kind) = f.kind else {
        return Step::Fail {
            reason: "InvalidSpec",
            message:
                "spec.source must set exactly one of snapshotRef, backupRef, snapshotId or backupId"
                    .into(),
        };
    };
    match &f.provider {
        ProviderFacts::Missing => {
            return Step::Wait(Wait::pending(
                "ProviderNotFound",
                "the VpsProvider named in spec.providerRef does not exist in this namespace; waiting".into(),
                true,
            ));
        }
        ProviderFacts::NotReady(why) => {
            return Step::Wait(Wait::pending(
                "ProviderNotReady",
                format!("the VpsProvider is not Ready ({why}); waiting"),
                false,
            ));
        }
        ProviderFacts::Ready {
            snapshot_restore,
            backup_restore,
            type_name,
        } => {
            let capable = match kind {
                RestoreKind::Snapshot => *snapshot_restore,
                RestoreKind::Backup => *backup_restore,
            };
            if !capable {
                return Step::Fail {
                    reason: "Unsupported",
                    message: format!(
                        "the provider ({type_name}) documents no {} restore: vpsnap cannot restore server {} through it",
                        kind.as_str(),
                        f.server
                    ),
                };
            }
        }
    }
    let (id, by_ref) = match &f.source {
        SourceFacts::Waiting(w) => return Step::Wait(w.clone()),
        SourceFacts::Usable { id, by_ref } => (id, *by_ref),
    };
    let what = format!("{} {id}", kind.as_str());
    match &f.listed {
        None => return Step::Verify { id: id.clone() },
        Some(Listed::Completed) => {}
        Some(Listed::NotCompleted(raw)) => {
            return Step::Wait(Wait::pending(
                "SourceNotReady",
                format!("{what} is {raw:?} at the provider; waiting until it is completed"),
                false,
            ));
        }
        Some(Listed::AbsentFromPartialList) => {
            return Step::Wait(Wait::pending(
                "SourceNotReady",
                format!(
                    "{what} is not in the provider's (partial) listing of server {}; waiting",
                    f.server
                ),
                false,
            ));
        }
        // The object still says Ready; it reports the loss itself once its own poll sees it.
        Some(Listed::Absent) if by_ref => {
            return Step::Wait(Wait::pending(
                "SourceNotReady",
                format!(
                    "{what} is no longer listed for server {} at the provider; waiting",
                    f.server
                ),
                false,
            ));
        }
        // An id is never reused for another server: absent now means never usable here.
        Some(Listed::Absent) => {
            return Step::Fail {
                reason: "SourceNotFound",
                message: format!(
                    "{what} is not among the {}s of server {} at the provider: nothing was restored",
                    kind.as_str(),
                    f.server
                ),
            };
        }
    }
    match &f.pre {
        PreFacts::NotWanted | PreFacts::Ready | PreFacts::Skipped => {
            Step::Restore { id: id.clone() }
        }
        // Only into a free slot: making room would evict a snapshot, perhaps the very one this
        // restore needs (an evictable schedule child).
        PreFacts::Absent => match &f.room {
            None => Step::CheckRoom,
            Some(Room::Free) => Step::CreatePreSnapshot,
            Some(Room::Full(why)) => Step::SkipPreSnapshot {
                reason: why.clone(),
                delete: false,
            },
        },
        PreFacts::Pending(message) => Step::Wait(Wait {
            phase: RestorePhase::PreSnapshot,
            reason: "PreSnapshotPending",
            message: message.clone(),
            stalled: false,
        }),
        PreFacts::Unusable { reason, delete } => Step::SkipPreSnapshot {
            reason: reason.clone(),
            delete: *delete,
        },
    }
}

/// A `VpsSnapshot`/`VpsBackup` named as the source, as far as the decision needs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RefView {
    pub provider: String,
    pub server: i64,
    pub ready: bool,
    pub provider_id: Option<String>,
    pub deleting: bool,
    /// Evicted or failed: it will never become Ready again by itself.
    pub gone: bool,
    /// Reason and message of its `Ready` condition.
    pub why: String,
}

impl RefView {
    fn of<K: RestorePoint>(obj: &K) -> Self {
        let common = obj.common();
        let st = obj.status().cloned().unwrap_or_default();
        let ready = conditions::find(&st.conditions, conditions::READY);
        RefView {
            provider: common.provider.to_string(),
            server: common.server_id,
            ready: ready.is_some_and(|c| c.status == "True"),
            provider_id: st.provider_id.clone(),
            deleting: obj.meta().deletion_timestamp.is_some(),
            gone: matches!(st.phase, Some(Phase::Evicted | Phase::Failed)),
            why: ready
                .map(|c| format!("{}: {}", c.reason, c.message))
                .unwrap_or_else(|| "no status yet".into()),
        }
    }
}

/// Whether a referenced object can be restored from.
pub fn ref_facts(
    kind: RestoreKind,
    name: &str,
    found: Option<&RefView>,
    provider: &str,
    server: i64,
) -> SourceFacts {
    let (k8s_kind, field) = match kind {
        RestoreKind::Snapshot => ("VpsSnapshot", "snapshotRef"),
        RestoreKind::Backup => ("VpsBackup", "backupRef"),
    };
    let Some(v) = found else {
        return SourceFacts::Waiting(Wait::pending(
            "SourceNotFound",
            format!(
                "{k8s_kind} {name:?} (spec.source.{field}.name) does not exist in this namespace; waiting for it"
            ),
            false,
        ));
    };
    if v.provider != provider || v.server != server {
        return SourceFacts::Waiting(Wait::pending(
            "SourceMismatch",
            format!(
                "{k8s_kind} {name:?} belongs to server {} of VpsProvider {:?}, not to server {server} of VpsProvider {provider:?}: a server is only restored from its own {}s",
                v.server,
                v.provider,
                kind.as_str()
            ),
            true,
        ));
    }
    if v.deleting {
        return SourceFacts::Waiting(Wait::pending(
            "SourceNotReady",
            format!("{k8s_kind} {name:?} is being deleted"),
            true,
        ));
    }
    if v.gone && !v.ready {
        // Waiting quietly here would wait forever: say so, so a human picks another source.
        return SourceFacts::Waiting(Wait::pending(
            "SourceGone",
            format!(
                "{k8s_kind} {name:?} can no longer be restored from ({}); create a VpsRestore with another source",
                v.why
            ),
            true,
        ));
    }
    match (&v.provider_id, v.ready) {
        (Some(id), true) => SourceFacts::Usable {
            id: id.clone(),
            by_ref: true,
        },
        _ => SourceFacts::Waiting(Wait::pending(
            "SourceNotReady",
            format!("waiting for {k8s_kind} {name:?} to be Ready ({})", v.why),
            false,
        )),
    }
}

/// The state of the safety snapshot object recorded in status.
pub fn pre_facts(name: &str, found: Option<&VpsSnapshot>, restore_uid: &str) -> PreFacts {
    let Some(snap) = found else {
        return PreFacts::Unusable {
            reason: format!("the VpsSnapshot {name} was deleted before it was Ready"),
            delete: false,
        };
    };
    let ours = snap
        .annotations()
        .get(RESTORE_UID_ANNOTATION)
        .is_some_and(|uid| uid == restore_uid);
    if !ours {
        return PreFacts::Unusable {
            reason: format!(
                "a VpsSnapshot named {name} exists but was not made for this VpsRestore"
            ),
            delete: false,
        };
    }
    let st = snap.status.clone().unwrap_or_default();
    let ready = conditions::find(&st.conditions, conditions::READY);
    if ready.is_some_and(|c| c.status == "True") {
        return PreFacts::Ready;
    }
    let why = ready
        .map(|c| format!("{}: {}", c.reason, c.message))
        .unwrap_or_else(|| "no status yet".into());
    let stalled = conditions::is_true(&st.conditions, conditions::STALLED);
    let ended = matches!(st.phase, Some(Phase::Failed | Phase::Evicted))
        || (st.phase == Some(Phase::Blocked) && stalled);
    if ended {
        PreFacts::Unusable {
            reason: format!("VpsSnapshot {name}: {why}"),
            delete: st.provider_id.is_none()
                && super::snapshot_backup::claim::intent_of(snap).is_none(),
        }
    } else {
        PreFacts::Pending(format!(
            "waiting for the safety snapshot VpsSnapshot {name} to be Ready ({why})"
        ))
    }
}

/// Where the source id stands in the server's listing.
pub fn listed(listing: &ServerListing, id: &str) -> Listed {
    match listing.items.iter().find(|i| i.id == id) {
        Some(item) if item.state == RemoteState::Ready => Listed::Completed,
        Some(item) => Listed::NotCompleted(item.raw_status.clone()),
        None if listing.complete => Listed::Absent,
        None => Listed::AbsentFromPartialList,
    }
}

/// Whether one more snapshot fits on the server (every listed snapshot counts, ours or not).
pub fn room(listing: &ServerListing, limit: usize, server: i64) -> Room {
    if !listing.complete {
        return Room::Full(format!(
            "the provider lists server {server}'s snapshots only in part, so a free slot cannot be confirmed"
        ));
    }
    if listing.items.len() >= limit {
        return Room::Full(format!(
            "server {server} has no free snapshot slot ({} of {limit} used) and vpsnap does not evict to make room for a safety snapshot",
            listing.items.len()
        ));
    }
    Room::Free
}

/// `<restore>-before-restore`, kept a valid object name however long the restore's name is.
pub fn pre_snapshot_name(restore: &str) -> String {
    let room = 253 - PRE_SNAPSHOT_SUFFIX.len();
    let base: String = restore.chars().take(room).collect();
    format!("{}{PRE_SNAPSHOT_SUFFIX}", base.trim_end_matches(['-', '.']))
}

/// Whether an event on the `VpsSnapshot` (or `VpsBackup`) `name` in `ns` should wake this
/// restore: it is its source or its safety snapshot, and the restore is not settled (a settled
/// restore never changes again, so a busy source costs it nothing).
pub fn wakes(restore: &VpsRestore, kind: RestoreKind, ns: Option<&str>, name: &str) -> bool {
    if restore.namespace().as_deref() != ns {
        return false;
    }
    let st = restore.status.clone().unwrap_or_default();
    if settled(&st).is_some() {
        return false;
    }
    let source = matches!(
        restore.spec.source.get(),
        Some(SourceSpec::Ref { kind: k, name: n }) if k == kind && n == name
    );
    let safety = kind == RestoreKind::Snapshot && st.pre_restore_snapshot.as_deref() == Some(name);
    source || safety
}

/// Whether a readiness change of the `VpsProvider` `name` in `ns` should wake this restore.
pub fn waits_for_provider(restore: &VpsRestore, ns: &str, name: &str) -> bool {
    restore.namespace().as_deref() == Some(ns)
        && restore.spec.provider_ref.name == name
        && settled(&restore.status.clone().unwrap_or_default()).is_none()
}

// --- report (pure) ----------------------------------------------------------------------------

/// What this reconcile decided the status should say.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Report {
    phase: RestorePhase,
    /// `None`: `Succeeded=Unknown` (in progress).
    succeeded: Option<bool>,
    reason: &'static str,
    message: String,
    stalled: bool,
    last_error: Option<String>,
}

impl Report {
    fn wait(w: &Wait) -> Self {
        Report {
            phase: w.phase,
            succeeded: None,
            reason: w.reason,
            message: w.message.clone(),
            stalled: w.stalled,
            last_error: None,
        }
    }

    fn failed(reason: &'static str, message: String) -> Self {
        Report {
            phase: RestorePhase::Failed,
            succeeded: Some(false),
            reason,
            last_error: Some(message.clone()),
            message,
            stalled: true,
        }
    }
}

fn source_text(obj: &VpsRestore) -> String {
    obj.spec
        .source
        .get()
        .map(|s| s.describe())
        .unwrap_or_else(|| "an invalid source".into())
}

fn accepted_report(obj: &VpsRestore, st: &VpsRestoreStatus) -> Report {
    let server = obj.spec.server_id;
    let kind = obj.spec.source.get().map(|s| s.kind());
    let from = match (&st.source_provider_id, kind) {
        (Some(id), Some(k)) => format!("{} {id}", k.as_str()),
        _ => source_text(obj),
    };
    let duration = match kind {
        Some(RestoreKind::Backup) => {
            "backups restore more slowly than snapshots; the provider documents no duration"
        }
        _ => "the provider documents 5-15 minutes",
    };
    let safety = match (&st.pre_restore_snapshot, &st.pre_restore_snapshot_skipped) {
        (_, Some(why)) => format!(" Safety snapshot skipped: {why}."),
        (Some(name), None) => format!(" Safety snapshot: VpsSnapshot {name}."),
        (None, None) => String::new(),
    };
    Report {
        phase: RestorePhase::Succeeded,
        succeeded: Some(true),
        reason: "RestoreAccepted",
        message: format!(
            "the provider accepted the restore of server {server} from {from}; it stops the server and restores in the background ({duration}).{safety}"
        ),
        stalled: false,
        last_error: None,
    }
}

fn doubt_report(obj: &VpsRestore, st: &VpsRestoreStatus, cause: &str) -> Report {
    let server = obj.spec.server_id;
    let at = st
        .restore_requested_at
        .as_deref()
        .unwrap_or("an unknown time");
    Report::failed(
        "OutcomeUnknown",
        format!(
            "the restore of server {server} from {} was requested at {at}, but its outcome is unknown ({cause}): the server may or may not be restoring. vpsnap never sends it again. Check server {server} at the provider; if a restore is still needed, delete this VpsRestore and create a new one",
            source_text(obj)
        ),
    )
}

/// `desired` with this report's phase, conditions and bookkeeping applied.
fn render(
    obj: &VpsRestore,
    current: &VpsRestoreStatus,
    mut desired: VpsRestoreStatus,
    r: &Report,
    now: Timestamp,
) -> VpsRestoreStatus {
    let generation = obj.meta().generation;
    desired.observed_generation = generation;
    desired.phase = Some(r.phase);
    desired.source = Some(source_text(obj));
    desired.last_error = r
        .last_error
        .clone()
        .or_else(|| r.stalled.then(|| r.message.clone()));
    let succeeded = match r.succeeded {
        Some(true) => "True",
        Some(false) => "False",
        None => "Unknown",
    };
    let reconciling = r.succeeded.is_none() && !r.stalled;
    let only_if = |on: bool| if on { r.message.clone() } else { String::new() };
    desired.conditions = settle(
        &current.conditions,
        &[
            (conditions::SUCCEEDED, succeeded, r.message.clone()),
            (
                conditions::RECONCILING,
                if reconciling { "True" } else { "False" },
                only_if(reconciling),
            ),
            (
                conditions::STALLED,
                if r.stalled { "True" } else { "False" },
                only_if(r.stalled),
            ),
        ],
        r.reason,
        generation,
        now,
    );
    desired
}

/// Like `conditions::settle`, with `Unknown` as a third status (a restore in progress has not
/// succeeded or failed yet). `lastTransitionTime` is kept while the status is unchanged, so
/// repeated reconciles write identical status.
fn settle(
    current: &[Condition],
    desired: &[(&str, &str, String)],
    reason: &str,
    generation: Option<i64>,
    now: Timestamp,
) -> Vec<Condition> {
    desired
        .iter()
        .map(|(type_, status, message)| {
            let transition = current
                .iter()
                .find(|c| c.type_ == *type_ && c.status == *status)
                .map(|c| c.last_transition_time.clone())
                .unwrap_or(Time(now));
            Condition {
                type_: type_.to_string(),
                status: status.to_string(),
                reason: reason.to_string(),
                message: message.clone(),
                observed_generation: generation,
                last_transition_time: transition,
            }
        })
        .collect()
}

fn rfc3339(t: Timestamp) -> String {
    t.round(jiff::Unit::Second).unwrap_or(t).to_string()
}

// --- observe and act --------------------------------------------------------------------------

fn obj_key(obj: &VpsRestore) -> String {
    outcome::key(
        KIND,
        &format!("{}/{}", obj.namespace().unwrap_or_default(), obj.name_any()),
    )
}

pub async fn reconcile(obj: Arc<VpsRestore>, ctx: Arc<Context>) -> Result<Action, Error> {
    let started = std::time::Instant::now();
    let result = reconcile_fresh(&obj, &ctx).await;
    outcome::finish(&ctx, KIND, &obj_key(&obj), started, &result);
    result
}

pub fn error_policy(obj: Arc<VpsRestore>, err: &Error, ctx: Arc<Context>) -> Action {
    outcome::error_policy(&ctx, KIND, &obj_key(&obj), err)
}

async fn reconcile_fresh(cached: &VpsRestore, ctx: &Context) -> Result<Action, Error> {
    let ns = cached.namespace().unwrap_or_default();
    let api: Api<VpsRestore> = Api::namespaced(ctx.client.clone(), &ns);
    // The watch cache can show our request marker without the acceptance written right after
    // it, which would read as a doubt: decide on a quorum read instead.
    let Some(obj) = api.get_opt(&cached.name_any()).await? else {
        return Ok(Action::await_change());
    };
    if obj.meta().deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let current = obj.status.clone().unwrap_or_default();
    if let Some(step) = settled(&current) {
        return act(ctx, &api, &obj, &current, None, step).await;
    }

    let provider_key = (ns.clone(), obj.spec.provider_ref.name.clone());
    let (provider, handle) = match ctx.lookup_provider(&provider_key).await {
        // Not judged by this process yet (a start or a takeover): its judgement reconciles
        // this restore; "not found" now would step its status back.
        Lookup::Unjudged => return Ok(Action::requeue(Duration::from_secs(30))),
        Lookup::Missing => (ProviderFacts::Missing, None),
        Lookup::NotReady(why) => (ProviderFacts::NotReady(why), None),
        Lookup::Ready(h) => (
            ProviderFacts::Ready {
                snapshot_restore: h.capabilities.snapshot_restore,
                backup_restore: h.capabilities.backup_restore,
                type_name: format!("{:?}", h.type_),
            },
            Some(h),
        ),
    };
    let source = obj.spec.source.get();
    let mut facts = Facts {
        status: &current,
        server: obj.spec.server_id,
        kind: source.map(|s| s.kind()),
        provider,
        source: source_facts(ctx, &obj, source).await?,
        listed: None,
        pre: pre_state(ctx, &obj, &current).await?,
        room: None,
    };
    // The read-only provider facts are fetched only when the decision needs them.
    let step = loop {
        match (decide(&facts), &handle) {
            (Step::Verify { id }, Some(h)) if facts.listed.is_none() => {
                let kind = facts.kind.unwrap_or(RestoreKind::Snapshot);
                facts.listed = Some(verify(ctx, h, &obj, kind, &id).await?);
            }
            (Step::CheckRoom, Some(h)) if facts.room.is_none() => {
                facts.room = Some(check_room(ctx, h, &obj).await?);
            }
            (step, _) => break step,
        }
    };
    act(ctx, &api, &obj, &current, handle.as_ref(), step).await
}

async fn source_facts(
    ctx: &Context,
    obj: &VpsRestore,
    source: Option<SourceSpec<'_>>,
) -> Result<SourceFacts, Error> {
    let ns = obj.namespace().unwrap_or_default();
    let provider = obj.spec.provider_ref.name.as_str();
    let server = obj.spec.server_id;
    Ok(match source {
        // `decide` fails an invalid spec before it looks at the source.
        None => SourceFacts::Waiting(Wait::pending("InvalidSpec", String::new(), true)),
        Some(SourceSpec::Id { id, .. }) => SourceFacts::Usable {
            id: id.to_string(),
            by_ref: false,
        },
        // Read fresh: the cache may still show a snapshot that was just deleted as Ready.
        Some(SourceSpec::Ref {
            kind: RestoreKind::Snapshot,
            name,
        }) => {
            let api: Api<VpsSnapshot> = Api::namespaced(ctx.client.clone(), &ns);
            let view = api.get_opt(name).await?.map(|o| RefView::of(&o));
            ref_facts(RestoreKind::Snapshot, name, view.as_ref(), provider, server)
        }
        Some(SourceSpec::Ref {
            kind: RestoreKind::Backup,
            name,
        }) => {
            let api: Api<VpsBackup> = Api::namespaced(ctx.client.clone(), &ns);
            let view = api.get_opt(name).await?.map(|o| RefView::of(&o));
            ref_facts(RestoreKind::Backup, name, view.as_ref(), provider, server)
        }
    })
}

async fn pre_state(
    ctx: &Context,
    obj: &VpsRestore,
    st: &VpsRestoreStatus,
) -> Result<PreFacts, Error> {
    if !obj.spec.snapshot_before_restore {
        return Ok(PreFacts::NotWanted);
    }
    if st.pre_restore_snapshot_skipped.is_some() {
        return Ok(PreFacts::Skipped);
    }
    let Some(name) = &st.pre_restore_snapshot else {
        return Ok(PreFacts::Absent);
    };
    let api: Api<VpsSnapshot> =
        Api::namespaced(ctx.client.clone(), &obj.namespace().unwrap_or_default());
    let found = api.get_opt(name).await?;
    Ok(pre_facts(
        name,
        found.as_ref(),
        obj.uid().as_deref().unwrap_or_default(),
    ))
}

/// Checks the source id against the server's listing (one list call per server per poll,
/// shared with the snapshot and backup controllers). This also keeps a snapshot id of another
/// server from overwriting that server: the snapshot restore call does not name the server.
async fn verify(
    ctx: &Context,
    handle: &ProviderHandle,
    obj: &VpsRestore,
    kind: RestoreKind,
    id: &str,
) -> Result<Listed, Error> {
    let key = ServerKey {
        provider: (
            obj.namespace().unwrap_or_default(),
            obj.spec.provider_ref.name.clone(),
        ),
        server: obj.spec.server_id.max(0) as u64,
        class: match kind {
            RestoreKind::Snapshot => Class::Snapshot,
            RestoreKind::Backup => Class::Backup,
        },
    };
    let mut guard = ctx.listings.lock(&key).await;
    // A completed object stays restorable while it exists, and the restore call's own answer
    // covers a deletion since: a listing up to a resync old may say yes. Anything else is
    // checked against one no older than a poll.
    let listing = list(&mut guard, handle, &key, kind, handle.resync_interval).await?;
    let found = listed(&listing, id);
    if found == Listed::Completed {
        return Ok(found);
    }
    let listing = list(&mut guard, handle, &key, kind, handle.poll_interval).await?;
    Ok(listed(&listing, id))
}

/// The server's listing of `kind`, through the shared per-server cache.
async fn list(
    guard: &mut super::listings::ServerGuard,
    handle: &ProviderHandle,
    key: &ServerKey,
    kind: RestoreKind,
    max_age: Duration,
) -> Result<ServerListing, Error> {
    let client = &handle.client;
    let server = key.server;
    let listing = match kind {
        RestoreKind::Snapshot => {
            guard
                .listing(max_age, || VpsSnapshot::list(client, server))
                .await
        }
        RestoreKind::Backup => {
            guard
                .listing(max_age, || VpsBackup::list(client, server))
                .await
        }
    };
    listing.map_err(|e| Error::provider(ProviderStep::List, e))
}

/// Counts the server's snapshots against the provider's limit.
async fn check_room(
    ctx: &Context,
    handle: &ProviderHandle,
    obj: &VpsRestore,
) -> Result<Room, Error> {
    let key = ServerKey {
        provider: (
            obj.namespace().unwrap_or_default(),
            obj.spec.provider_ref.name.clone(),
        ),
        server: obj.spec.server_id.max(0) as u64,
        class: Class::Snapshot,
    };
    let mut guard = ctx.listings.lock(&key).await;
    // A fresh count: a cached one may miss snapshots made outside vpsnap since, and a safety
    // snapshot that does not fit makes the snapshot controller evict, perhaps this restore's
    // own source. Once per restore, so the extra list call is cheap.
    guard.invalidate();
    let listing = list(
        &mut guard,
        handle,
        &key,
        RestoreKind::Snapshot,
        handle.poll_interval,
    )
    .await?;
    Ok(room(&listing, handle.snapshot_limit, obj.spec.server_id))
}

async fn act(
    ctx: &Context,
    api: &Api<VpsRestore>,
    obj: &VpsRestore,
    current: &VpsRestoreStatus,
    handle: Option<&ProviderHandle>,
    step: Step,
) -> Result<Action, Error> {
    let now = Timestamp::now();
    match step {
        // Nothing changes a one-shot that ended: its status already says why.
        Step::Failed => Ok(Action::await_change()),
        Step::Succeeded => {
            let r = accepted_report(obj, current);
            let st = render(obj, current, current.clone(), &r, now);
            write_status(api, obj, current, &st).await?;
            Ok(Action::await_change())
        }
        Step::Doubt => {
            // Reported once (with the provider's error when there was one); left as it is.
            if current.phase == Some(RestorePhase::Failed) {
                return Ok(Action::await_change());
            }
            let r = doubt_report(
                obj,
                current,
                "the provider's answer was never recorded: the operator stopped, or could not write status, right after sending the request",
            );
            let st = render(obj, current, current.clone(), &r, now);
            write_status(api, obj, current, &st).await?;
            tracing::warn!(kind = KIND, object = %obj_key(obj), "restore outcome unknown after a restart; not retried");
            ctx.event(obj, true, "OutcomeUnknown", "Restore", r.message)
                .await;
            Ok(Action::await_change())
        }
        Step::Wait(w) => {
            let r = Report::wait(&w);
            let st = render(obj, current, current.clone(), &r, now);
            write_status(api, obj, current, &st).await?;
            Ok(match (w.stalled, handle) {
                (true, _) => Action::requeue(SLOW),
                (false, Some(h)) => jittered(h.poll_interval),
                (false, None) => Action::requeue(PROVIDER_WAIT),
            })
        }
        Step::Fail { reason, message } => {
            let r = Report::failed(reason, message);
            let st = render(obj, current, current.clone(), &r, now);
            write_status(api, obj, current, &st).await?;
            ctx.event(obj, true, "RestoreFailed", "Restore", r.message)
                .await;
            ctx.backoff.reset(&obj_key(obj));
            Ok(Action::await_change())
        }
        // `reconcile_fresh` resolves these lookups before acting; without a provider handle
        // there is nothing to look with, so look again shortly.
        Step::Verify { .. } | Step::CheckRoom => Ok(Action::requeue(PROVIDER_WAIT)),
        Step::CreatePreSnapshot => create_pre_snapshot(ctx, api, obj, current, handle).await,
        Step::SkipPreSnapshot { reason, delete } => {
            skip_pre_snapshot(ctx, api, obj, current, reason, delete).await
        }
        Step::Restore { id } => match handle {
            Some(h) => restore(ctx, api, obj, current, h, id).await,
            None => Ok(Action::requeue(PROVIDER_WAIT)),
        },
    }
}

async fn create_pre_snapshot(
    ctx: &Context,
    api: &Api<VpsRestore>,
    obj: &VpsRestore,
    current: &VpsRestoreStatus,
    handle: Option<&ProviderHandle>,
) -> Result<Action, Error> {
    let restore_name = obj.name_any();
    let name = pre_snapshot_name(&restore_name);
    let uid = obj.uid().unwrap_or_default();
    let snaps: Api<VpsSnapshot> =
        Api::namespaced(ctx.client.clone(), &obj.namespace().unwrap_or_default());
    let mut snap = VpsSnapshot::new(
        &name,
        VpsSnapshotSpec {
            provider_ref: obj.spec.provider_ref.clone(),
            server_id: obj.spec.server_id,
            snapshot_name: None,
            description: Some(format!("Safety snapshot before VpsRestore {restore_name}")),
            // It must outlive the restore object, so no ownerReference and Retain.
            deletion_policy: DeletionPolicy::Retain,
            import_id: None,
            pinned: false,
            evictable: false,
            failure_deadline: None,
        },
    );
    snap.metadata.annotations = Some(BTreeMap::from([
        (RESTORE_UID_ANNOTATION.to_string(), uid.clone()),
        (RESTORE_NAME_ANNOTATION.to_string(), restore_name.clone()),
    ]));
    let created = match snaps.create(&PostParams::default(), &snap).await {
        Ok(_) => true,
        // Ours from a reconcile that stopped before recording it, or someone else's.
        Err(kube::Error::Api(e)) if e.code == 409 => {
            let existing = snaps.get_opt(&name).await?;
            let ours = existing
                .as_ref()
                .is_some_and(|s| s.annotations().get(RESTORE_UID_ANNOTATION) == Some(&uid));
            if !ours {
                let reason = format!(
                    "a VpsSnapshot named {name} already exists and was not made for this VpsRestore"
                );
                return skip_pre_snapshot(ctx, api, obj, current, reason, false).await;
            }
            false
        }
        Err(e) => return Err(e.into()),
    };
    let mut desired = current.clone();
    desired.pre_restore_snapshot = Some(name.clone());
    desired
        .start_time
        .get_or_insert_with(|| rfc3339(Timestamp::now()));
    let r = Report::wait(&Wait {
        phase: RestorePhase::PreSnapshot,
        reason: "PreSnapshotPending",
        message: format!("waiting for the safety snapshot VpsSnapshot {name} to be Ready"),
        stalled: false,
    });
    let st = render(obj, current, desired, &r, Timestamp::now());
    write_status(api, obj, current, &st).await?;
    if created {
        tracing::info!(kind = KIND, object = %obj_key(obj), snapshot = %name, "safety snapshot requested");
        ctx.event(
            obj,
            false,
            "PreSnapshotCreated",
            "Snapshot",
            format!(
                "created VpsSnapshot {name} of server {} before restoring it",
                obj.spec.server_id
            ),
        )
        .await;
    }
    Ok(handle.map_or(Action::requeue(PROVIDER_WAIT), |h| {
        jittered(h.poll_interval)
    }))
}

async fn skip_pre_snapshot(
    ctx: &Context,
    api: &Api<VpsRestore>,
    obj: &VpsRestore,
    current: &VpsRestoreStatus,
    reason: String,
    delete: bool,
) -> Result<Action, Error> {
    if delete && let Some(name) = &current.pre_restore_snapshot {
        let snaps: Api<VpsSnapshot> =
            Api::namespaced(ctx.client.clone(), &obj.namespace().unwrap_or_default());
        match snaps.delete(name, &DeleteParams::default()).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => return Err(e.into()),
        }
    }
    let mut desired = current.clone();
    desired.pre_restore_snapshot_skipped = Some(reason.clone());
    let message = format!("safety snapshot skipped: {reason}; restoring without it");
    let r = Report::wait(&Wait {
        phase: RestorePhase::PreSnapshot,
        reason: "PreSnapshotSkipped",
        message: message.clone(),
        stalled: false,
    });
    let st = render(obj, current, desired, &r, Timestamp::now());
    write_status(api, obj, current, &st).await?;
    tracing::warn!(kind = KIND, object = %obj_key(obj), %reason, "safety snapshot skipped");
    ctx.event(
        obj,
        true,
        "PreSnapshotSkipped",
        "Snapshot",
        format!("safety snapshot skipped: {reason}"),
    )
    .await;
    // The restore itself is the next step; the recorded skip lets it go ahead.
    Ok(Action::requeue(Duration::from_millis(200)))
}

async fn restore(
    ctx: &Context,
    api: &Api<VpsRestore>,
    obj: &VpsRestore,
    current: &VpsRestoreStatus,
    handle: &ProviderHandle,
    id: String,
) -> Result<Action, Error> {
    let server = obj.spec.server_id;
    let Some(kind) = obj.spec.source.get().map(|s| s.kind()) else {
        return Ok(Action::await_change());
    };
    let what = format!("{} {id}", kind.as_str());
    let now = Timestamp::now();
    let mut marked = current.clone();
    marked.restore_requested_at = Some(rfc3339(now));
    marked.start_time.get_or_insert_with(|| rfc3339(now));
    marked.source_provider_id = Some(id.clone());
    let r = Report {
        phase: RestorePhase::Restoring,
        succeeded: None,
        reason: "RestoreRequested",
        message: format!("restore of server {server} from {what} requested"),
        stalled: false,
        last_error: None,
    };
    let marked = render(obj, current, marked, &r, now);
    let marked_obj = write_marker(api, obj, &marked).await?;
    tracing::info!(kind = KIND, object = %obj_key(obj), server, source = %what, "restore requested");
    ctx.event(obj, false, "RestoreRequested", "Restore", r.message.clone())
        .await;

    let server_u = server.max(0) as u64;
    let result = match kind {
        RestoreKind::Snapshot => handle.client.restore_snapshot(server_u, &id).await,
        RestoreKind::Backup => handle.client.restore_backup(server_u, &id).await,
    };
    let done = Timestamp::now();
    match result {
        Ok(()) => {
            let mut st = marked.clone();
            st.restore_accepted_at = Some(rfc3339(done));
            st.completion_time = Some(rfc3339(done));
            let r = accepted_report(obj, &st);
            let st = render(obj, &marked, st, &r, done);
            write_after_call(api, &marked_obj, &st).await?;
            tracing::info!(kind = KIND, object = %obj_key(obj), server, source = %what, "restore accepted");
            ctx.event(obj, false, "RestoreAccepted", "Restore", r.message)
                .await;
            ctx.backoff.reset(&obj_key(obj));
            Ok(Action::await_change())
        }
        Err(e) if e.outcome_unknown() => {
            // The marker stays: the restore may be running. Never sent again.
            let r = doubt_report(obj, &marked, &e.to_string());
            let st = render(obj, &marked, marked.clone(), &r, done);
            write_after_call(api, &marked_obj, &st).await?;
            tracing::warn!(kind = KIND, object = %obj_key(obj), server, error = %e, "restore outcome unknown; not retried");
            ctx.event(obj, true, "OutcomeUnknown", "Restore", r.message)
                .await;
            Ok(Action::await_change())
        }
        Err(e) => refused(ctx, api, &marked_obj, &marked, e, &what).await,
    }
}

/// The provider refused the request, which proves nothing happened. A refusal before the
/// provider looked at the request (429, bad credentials) clears the marker and is retried;
/// any other is final and keeps the marker: a VpsRestore calls restore at most once, even
/// when the answer was "not now".
async fn refused(
    ctx: &Context,
    api: &Api<VpsRestore>,
    obj: &VpsRestore,
    marked: &VpsRestoreStatus,
    e: ProviderError,
    what: &str,
) -> Result<Action, Error> {
    let server = obj.spec.server_id;
    let mut desired = marked.clone();
    let key = obj_key(obj);
    let (r, requeue, final_) = match &e {
        ProviderError::RateLimited { retry_after } => {
            let after = retry_after.unwrap_or(Duration::from_secs(5));
            (
                Report::wait(&Wait::pending(
                    "RateLimited",
                    format!(
                        "the provider asked vpsnap to slow down; nothing was restored yet, retrying in {after:?}"
                    ),
                    false,
                )),
                Action::requeue(after),
                false,
            )
        }
        ProviderError::InvalidState(m) => (
            Report::failed(
                "ServerBusy",
                format!(
                    "the provider refused the restore of server {server} from {what} for now ({m}): nothing was restored. vpsnap sends a restore at most once per VpsRestore; once the server is idle, delete this VpsRestore and create it again"
                ),
            ),
            Action::await_change(),
            true,
        ),
        ProviderError::Auth(m) => (
            Report::wait(&Wait::pending(
                "ProviderAuthFailed",
                format!(
                    "the provider refused vpsnap's credentials ({m}); nothing was restored, waiting for the VpsProvider's credentials to be fixed"
                ),
                true,
            )),
            Action::requeue(SLOW),
            false,
        ),
        ProviderError::NotFound(m) => (
            Report::failed(
                "SourceNotFound",
                format!(
                    "the provider does not know {what} or server {server} ({m}): nothing was restored"
                ),
            ),
            Action::await_change(),
            true,
        ),
        ProviderError::Unsupported(m) => (
            Report::failed("Unsupported", format!("{m}: nothing was restored")),
            Action::await_change(),
            true,
        ),
        other => (
            Report::failed(
                "RestoreRejected",
                format!(
                    "the provider rejected the restore of server {server} from {what} ({other}): nothing was restored"
                ),
            ),
            Action::await_change(),
            true,
        ),
    };
    if !final_ {
        desired.restore_requested_at = None;
    }
    let mut r = r;
    r.last_error = Some(e.to_string());
    let st = render(obj, marked, desired, &r, Timestamp::now());
    write_after_call(api, obj, &st).await?;
    tracing::warn!(kind = KIND, object = %key, server, error = %e, final_, "restore refused by the provider");
    if final_ {
        ctx.backoff.reset(&key);
        ctx.event(obj, true, "RestoreFailed", "Restore", r.message)
            .await;
    } else {
        ctx.event(obj, true, "RestoreRefused", "Restore", r.message)
            .await;
    }
    Ok(requeue)
}

/// A status write conditional on the version `seen` this reconcile read: a writer working
/// from an older read (a second replica in a leader handover) cannot undo what it did not see.
async fn write_status(
    api: &Api<VpsRestore>,
    seen: &VpsRestore,
    current: &VpsRestoreStatus,
    st: &VpsRestoreStatus,
) -> Result<Option<VpsRestore>, Error> {
    status::write(api, seen, Some(current), st)
        .await
        .map_err(|e| Error::write(WriteStep::Status, e))
}

/// Writes the request marker, conditional on the resourceVersion this reconcile read: whoever
/// changed the object since (another writer reaching the same point) makes this fail with a
/// conflict, and no call is sent. Returns the object as written.
async fn write_marker(
    api: &Api<VpsRestore>,
    obj: &VpsRestore,
    st: &VpsRestoreStatus,
) -> Result<VpsRestore, Error> {
    let written = status::write(api, obj, obj.status.as_ref(), st)
        .await
        .map_err(|e| Error::write(WriteStep::RestoreMarker, e))?;
    Ok(written.unwrap_or_else(|| obj.clone()))
}

/// After the call, a lost status write would turn a known answer into a doubt (the marker
/// without the outcome): retry a few times before giving up. Each try is conditional on the
/// version it read; after a conflict the object is read again and the outcome written over
/// that (it still carries the marker: nothing that did not see the marker can remove it).
async fn write_after_call(
    api: &Api<VpsRestore>,
    marked: &VpsRestore,
    st: &VpsRestoreStatus,
) -> Result<(), Error> {
    let name = marked.name_any();
    let mut seen = marked.clone();
    let mut delay = Duration::from_millis(250);
    for attempt in 0..5 {
        match status::write(api, &seen, seen.status.as_ref(), st).await {
            Ok(_) => return Ok(()),
            Err(e) if attempt == 4 => return Err(Error::write(WriteStep::Status, e)),
            Err(e) => {
                tracing::warn!(kind = KIND, object = %name, error = %e, "status write after the restore call failed; retrying");
                tokio::time::sleep(delay).await;
                delay *= 2;
                if let kube::Error::Api(a) = &e
                    && a.code == 409
                    && let Some(fresh) = api.get_opt(&name).await?
                {
                    seen = fresh;
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{CreateIntent, ProviderRef, RestorePointStatus, RestoreSource};
    use crate::controller::listings::Item;

    const TIME: &str = "2026-03-01T10:00:00Z";

    fn capable() -> ProviderFacts {
        ProviderFacts::Ready {
            snapshot_restore: true,
            backup_restore: true,
            type_name: "VpsRest".into(),
        }
    }

    fn zomro() -> ProviderFacts {
        ProviderFacts::Ready {
            snapshot_restore: false,
            backup_restore: false,
            type_name: "Zomro".into(),
        }
    }

    fn usable(by_ref: bool) -> SourceFacts {
        SourceFacts::Usable {
            id: "801".into(),
            by_ref,
        }
    }

    fn facts(status: &VpsRestoreStatus) -> Facts<'_> {
        Facts {
            status,
            server: 100,
            kind: Some(RestoreKind::Snapshot),
            provider: capable(),
            source: usable(true),
            listed: Some(Listed::Completed),
            pre: PreFacts::NotWanted,
            room: None,
        }
    }

    fn requested() -> VpsRestoreStatus {
        VpsRestoreStatus {
            restore_requested_at: Some(TIME.into()),
            phase: Some(RestorePhase::Restoring),
            ..Default::default()
        }
    }

    fn accepted() -> VpsRestoreStatus {
        VpsRestoreStatus {
            restore_accepted_at: Some(TIME.into()),
            phase: Some(RestorePhase::Succeeded),
            ..requested()
        }
    }

    fn failed() -> VpsRestoreStatus {
        VpsRestoreStatus {
            phase: Some(RestorePhase::Failed),
            ..Default::default()
        }
    }

    /// Every combination of the other facts a settled status could meet.
    fn all_other_facts(status: &VpsRestoreStatus) -> Vec<Facts<'_>> {
        let providers = [
            ProviderFacts::Missing,
            ProviderFacts::NotReady("x".into()),
            capable(),
            zomro(),
        ];
        let sources = [
            usable(true),
            usable(false),
            SourceFacts::Waiting(Wait::pending("SourceNotReady", "x".into(), false)),
        ];
        let listings = [
            None,
            Some(Listed::Completed),
            Some(Listed::Absent),
            Some(Listed::NotCompleted("in_progress".into())),
        ];
        let pres = [
            PreFacts::NotWanted,
            PreFacts::Absent,
            PreFacts::Ready,
            PreFacts::Unusable {
                reason: "x".into(),
                delete: true,
            },
        ];
        let rooms = [None, Some(Room::Free), Some(Room::Full("x".into()))];
        let mut all = Vec::new();
        for p in &providers {
            for s in &sources {
                for l in &listings {
                    for pre in &pres {
                        for room in &rooms {
                            all.push(Facts {
                                provider: p.clone(),
                                source: s.clone(),
                                listed: l.clone(),
                                pre: pre.clone(),
                                room: room.clone(),
                                ..facts(status)
                            });
                        }
                    }
                }
            }
        }
        all
    }

    #[test]
    fn a_settled_restore_never_calls_whatever_else_is_true() {
        for (status, expected) in [
            (requested(), Step::Doubt),
            (accepted(), Step::Succeeded),
            (failed(), Step::Failed),
            // Failed after a sent request (a lost answer reported, a final refusal): failed
            // for good, the marker kept.
            (
                VpsRestoreStatus {
                    phase: Some(RestorePhase::Failed),
                    ..requested()
                },
                Step::Failed,
            ),
        ] {
            for f in all_other_facts(&status) {
                let step = decide(&f);
                assert_eq!(step, expected, "{f:?}");
                assert!(!matches!(
                    step,
                    Step::Restore { .. }
                        | Step::Verify { .. }
                        | Step::CheckRoom
                        | Step::CreatePreSnapshot
                ));
            }
            assert_eq!(settled(&status), Some(expected));
        }
    }

    #[test]
    fn decision_table() {
        let fresh = VpsRestoreStatus::default();
        let waited_before = VpsRestoreStatus {
            phase: Some(RestorePhase::Pending),
            start_time: Some(TIME.into()),
            ..Default::default()
        };
        let wait =
            |reason: &'static str| move |s: &Step| matches!(s, Step::Wait(w) if w.reason == reason);
        type Check = Box<dyn Fn(&Step) -> bool>;
        let cases: Vec<(&str, Facts, Check)> = vec![
            (
                "ready source, verified: restore",
                facts(&fresh),
                Box::new(|s| *s == Step::Restore { id: "801".into() }),
            ),
            (
                "provider missing: wait",
                Facts {
                    provider: ProviderFacts::Missing,
                    ..facts(&fresh)
                },
                Box::new(wait("ProviderNotFound")),
            ),
            (
                "provider not ready: wait",
                Facts {
                    provider: ProviderFacts::NotReady("bad".into()),
                    ..facts(&fresh)
                },
                Box::new(wait("ProviderNotReady")),
            ),
            (
                "zomro: unsupported",
                Facts {
                    provider: zomro(),
                    ..facts(&fresh)
                },
                Box::new(|s| {
                    matches!(
                        s,
                        Step::Fail {
                            reason: "Unsupported",
                            ..
                        }
                    )
                }),
            ),
            (
                "backup restore on a snapshot-only provider: unsupported",
                Facts {
                    kind: Some(RestoreKind::Backup),
                    provider: ProviderFacts::Ready {
                        snapshot_restore: true,
                        backup_restore: false,
                        type_name: "X".into(),
                    },
                    ..facts(&fresh)
                },
                Box::new(|s| {
                    matches!(
                        s,
                        Step::Fail {
                            reason: "Unsupported",
                            ..
                        }
                    )
                }),
            ),
            (
                "no single source: invalid",
                Facts {
                    kind: None,
                    ..facts(&fresh)
                },
                Box::new(|s| {
                    matches!(
                        s,
                        Step::Fail {
                            reason: "InvalidSpec",
                            ..
                        }
                    )
                }),
            ),
            (
                "source object not ready: wait",
                Facts {
                    source: SourceFacts::Waiting(Wait::pending(
                        "SourceNotReady",
                        "x".into(),
                        false,
                    )),
                    ..facts(&fresh)
                },
                Box::new(wait("SourceNotReady")),
            ),
            (
                "not listed yet: verify first",
                Facts {
                    listed: None,
                    ..facts(&fresh)
                },
                Box::new(|s| *s == Step::Verify { id: "801".into() }),
            ),
            (
                "listed in progress: wait",
                Facts {
                    listed: Some(Listed::NotCompleted("in_progress".into())),
                    ..facts(&fresh)
                },
                Box::new(wait("SourceNotReady")),
            ),
            (
                "absent from a partial listing: wait",
                Facts {
                    source: usable(false),
                    listed: Some(Listed::AbsentFromPartialList),
                    ..facts(&fresh)
                },
                Box::new(wait("SourceNotReady")),
            ),
            (
                "id absent from the server: final",
                Facts {
                    source: usable(false),
                    listed: Some(Listed::Absent),
                    ..facts(&fresh)
                },
                Box::new(|s| {
                    matches!(
                        s,
                        Step::Fail {
                            reason: "SourceNotFound",
                            ..
                        }
                    )
                }),
            ),
            (
                "referenced object absent from the listing: wait for it to report",
                Facts {
                    listed: Some(Listed::Absent),
                    ..facts(&fresh)
                },
                Box::new(wait("SourceNotReady")),
            ),
            (
                "safety snapshot wanted: count the slots first",
                Facts {
                    pre: PreFacts::Absent,
                    ..facts(&fresh)
                },
                Box::new(|s| *s == Step::CheckRoom),
            ),
            (
                "safety snapshot wanted, a slot free: create it",
                Facts {
                    pre: PreFacts::Absent,
                    room: Some(Room::Free),
                    ..facts(&fresh)
                },
                Box::new(|s| *s == Step::CreatePreSnapshot),
            ),
            (
                "safety snapshot wanted, server full: skip it, evict nothing",
                Facts {
                    pre: PreFacts::Absent,
                    room: Some(Room::Full("full".into())),
                    ..facts(&fresh)
                },
                Box::new(|s| {
                    *s == Step::SkipPreSnapshot {
                        reason: "full".into(),
                        delete: false,
                    }
                }),
            ),
            (
                "safety snapshot pending: wait in PreSnapshot",
                Facts {
                    pre: PreFacts::Pending("x".into()),
                    ..facts(&fresh)
                },
                Box::new(
                    |s| matches!(s, Step::Wait(w) if w.phase == RestorePhase::PreSnapshot && !w.stalled),
                ),
            ),
            (
                "safety snapshot unusable: skip it",
                Facts {
                    pre: PreFacts::Unusable {
                        reason: "LimitReached".into(),
                        delete: true,
                    },
                    ..facts(&fresh)
                },
                Box::new(|s| {
                    *s == Step::SkipPreSnapshot {
                        reason: "LimitReached".into(),
                        delete: true,
                    }
                }),
            ),
            (
                "safety snapshot skipped: restore",
                Facts {
                    pre: PreFacts::Skipped,
                    ..facts(&fresh)
                },
                Box::new(|s| matches!(s, Step::Restore { .. })),
            ),
            (
                "safety snapshot ready: restore",
                Facts {
                    pre: PreFacts::Ready,
                    ..facts(&fresh)
                },
                Box::new(|s| matches!(s, Step::Restore { .. })),
            ),
            (
                "a wait earlier (e.g. a refused busy server) is not settled: restore again",
                facts(&waited_before),
                Box::new(|s| matches!(s, Step::Restore { .. })),
            ),
        ];
        for (name, f, check) in cases {
            let step = decide(&f);
            assert!(check(&step), "{name}: got {step:?}");
        }
    }

    #[test]
    fn the_source_must_be_ready_on_the_same_provider_and_server() {
        let good = RefView {
            provider: "acct".into(),
            server: 100,
            ready: true,
            provider_id: Some("801".into()),
            deleting: false,
            gone: false,
            why: "Completed: done".into(),
        };
        assert_eq!(
            ref_facts(RestoreKind::Snapshot, "s", Some(&good), "acct", 100),
            usable(true)
        );
        let reason = |v: Option<&RefView>| match ref_facts(RestoreKind::Backup, "b", v, "acct", 100)
        {
            SourceFacts::Waiting(w) => (w.reason, w.stalled),
            other => panic!("expected a wait, got {other:?}"),
        };
        assert_eq!(reason(None), ("SourceNotFound", false));
        let other_server = RefView {
            server: 7,
            ..good.clone()
        };
        assert_eq!(reason(Some(&other_server)), ("SourceMismatch", true));
        let other_provider = RefView {
            provider: "other".into(),
            ..good.clone()
        };
        assert_eq!(reason(Some(&other_provider)), ("SourceMismatch", true));
        let not_ready = RefView {
            ready: false,
            ..good.clone()
        };
        assert_eq!(reason(Some(&not_ready)), ("SourceNotReady", false));
        let evicted = RefView {
            ready: false,
            gone: true,
            ..good.clone()
        };
        assert_eq!(reason(Some(&evicted)), ("SourceGone", true));
        let no_id = RefView {
            provider_id: None,
            ..good.clone()
        };
        assert_eq!(reason(Some(&no_id)), ("SourceNotReady", false));
        let deleting = RefView {
            deleting: true,
            ..good
        };
        assert_eq!(reason(Some(&deleting)), ("SourceNotReady", true));
    }

    fn safety(
        uid: Option<&str>,
        phase: Phase,
        ready: bool,
        stalled: bool,
        provider_id: Option<&str>,
    ) -> VpsSnapshot {
        let mut s = VpsSnapshot::new(
            "r-before-restore",
            VpsSnapshotSpec {
                provider_ref: ProviderRef {
                    name: "acct".into(),
                },
                server_id: 100,
                snapshot_name: None,
                description: None,
                deletion_policy: DeletionPolicy::Retain,
                import_id: None,
                pinned: false,
                evictable: false,
                failure_deadline: None,
            },
        );
        if let Some(uid) = uid {
            s.metadata.annotations = Some(BTreeMap::from([(
                RESTORE_UID_ANNOTATION.to_string(),
                uid.to_string(),
            )]));
        }
        let now = Timestamp::from_second(1).unwrap();
        let reason = if ready { "Completed" } else { "LimitReached" };
        s.status = Some(RestorePointStatus {
            phase: Some(phase),
            provider_id: provider_id.map(str::to_string),
            create_intent: None,
            conditions: settle(
                &[],
                &[
                    (
                        conditions::READY,
                        if ready { "True" } else { "False" },
                        String::new(),
                    ),
                    (
                        conditions::STALLED,
                        if stalled { "True" } else { "False" },
                        String::new(),
                    ),
                ],
                reason,
                None,
                now,
            ),
            ..Default::default()
        });
        s
    }

    #[test]
    fn safety_snapshot_states() {
        let n = "r-before-restore";
        let uid = "u-1";
        let ready = safety(Some(uid), Phase::Ready, true, false, Some("9"));
        assert_eq!(pre_facts(n, Some(&ready), uid), PreFacts::Ready);
        let creating = safety(Some(uid), Phase::Creating, false, false, None);
        assert!(matches!(
            pre_facts(n, Some(&creating), uid),
            PreFacts::Pending(_)
        ));
        // Blocked while the snapshot controller still makes room: keep waiting.
        let making_room = safety(Some(uid), Phase::Blocked, false, false, None);
        assert!(matches!(
            pre_facts(n, Some(&making_room), uid),
            PreFacts::Pending(_)
        ));
        // Limit reached and nothing evictable: skip, and remove the object that never made it
        // to the provider.
        let full = safety(Some(uid), Phase::Blocked, false, true, None);
        assert!(matches!(
            pre_facts(n, Some(&full), uid),
            PreFacts::Unusable { delete: true, ref reason } if reason.contains("LimitReached")
        ));
        // Failed at the provider: skip, but keep the object (it names a provider snapshot).
        let broken = safety(Some(uid), Phase::Failed, false, true, Some("9"));
        assert!(matches!(
            pre_facts(n, Some(&broken), uid),
            PreFacts::Unusable { delete: false, .. }
        ));
        let mut unsure = safety(Some(uid), Phase::Failed, false, true, None);
        unsure.status.as_mut().unwrap().create_intent = Some(CreateIntent {
            marker: "m".into(),
            requested_at: TIME.into(),
        });
        assert!(matches!(
            pre_facts(n, Some(&unsure), uid),
            PreFacts::Unusable { delete: false, .. }
        ));
        let foreign = safety(None, Phase::Ready, true, false, Some("9"));
        assert!(matches!(
            pre_facts(n, Some(&foreign), uid),
            PreFacts::Unusable { delete: false, .. }
        ));
        let someone_elses = safety(Some("u-2"), Phase::Ready, true, false, Some("9"));
        assert!(matches!(
            pre_facts(n, Some(&someone_elses), uid),
            PreFacts::Unusable { .. }
        ));
        assert!(matches!(
            pre_facts(n, None, uid),
            PreFacts::Unusable { delete: false, .. }
        ));
    }

    #[test]
    fn listing_verdicts() {
        let item = |id: &str, state: RemoteState, raw: &str| Item {
            id: id.into(),
            label: "x".into(),
            state,
            raw_status: raw.into(),
            created_at: None,
            size_mb: None,
            protected: false,
            automatic: false,
        };
        let listing = |complete: bool| ServerListing {
            items: vec![
                item("801", RemoteState::Ready, "completed"),
                item("802", RemoteState::Pending, "in_progress"),
            ],
            complete,
            fetched: std::time::Instant::now(),
            fetched_at: Timestamp::from_second(1).unwrap(),
        };
        assert_eq!(listed(&listing(true), "801"), Listed::Completed);
        assert_eq!(
            listed(&listing(true), "802"),
            Listed::NotCompleted("in_progress".into())
        );
        assert_eq!(listed(&listing(true), "9"), Listed::Absent);
        assert_eq!(listed(&listing(false), "9"), Listed::AbsentFromPartialList);
        assert_eq!(room(&listing(true), 3, 1), Room::Free);
        assert!(matches!(room(&listing(true), 2, 1), Room::Full(why) if why.contains("2 of 2")));
        assert!(matches!(room(&listing(false), 9, 1), Room::Full(_)));
    }

    #[test]
    fn safety_snapshot_names_stay_valid() {
        assert_eq!(pre_snapshot_name("db"), "db-before-restore");
        let long = format!("{}.x", "a".repeat(237));
        let name = pre_snapshot_name(&long);
        assert!(name.len() <= 253, "{}", name.len());
        assert!(name.ends_with("a-before-restore"), "{name}");
    }

    fn restore_obj(source: RestoreSource) -> VpsRestore {
        let mut r = VpsRestore::new(
            "r",
            crate::api::VpsRestoreSpec {
                provider_ref: ProviderRef {
                    name: "acct".into(),
                },
                server_id: 100,
                source,
                acknowledge_data_loss: true,
                snapshot_before_restore: false,
            },
        );
        r.metadata.generation = Some(1);
        r
    }

    #[test]
    fn sources_and_safety_snapshots_wake_unsettled_restores_only() {
        let mut r = restore_obj(RestoreSource {
            snapshot_ref: Some(crate::api::LocalObjectRef { name: "s".into() }),
            ..Default::default()
        });
        r.metadata.namespace = Some("ns".into());
        assert!(wakes(&r, RestoreKind::Snapshot, Some("ns"), "s"));
        assert!(!wakes(&r, RestoreKind::Backup, Some("ns"), "s"));
        assert!(!wakes(&r, RestoreKind::Snapshot, Some("other"), "s"));
        assert!(!wakes(&r, RestoreKind::Snapshot, Some("ns"), "t"));
        r.status = Some(VpsRestoreStatus {
            pre_restore_snapshot: Some("r-before-restore".into()),
            ..Default::default()
        });
        assert!(wakes(
            &r,
            RestoreKind::Snapshot,
            Some("ns"),
            "r-before-restore"
        ));
        assert!(waits_for_provider(&r, "ns", "acct"));
        assert!(!waits_for_provider(&r, "ns", "other"));
        r.status = Some(accepted());
        assert!(!wakes(&r, RestoreKind::Snapshot, Some("ns"), "s"));
        assert!(!waits_for_provider(&r, "ns", "acct"));
    }

    #[test]
    fn status_is_stable_and_says_what_happened() {
        let obj = restore_obj(RestoreSource {
            snapshot_id: Some("801".into()),
            ..Default::default()
        });
        let t0 = Timestamp::from_second(1_000).unwrap();
        let t1 = Timestamp::from_second(2_000).unwrap();
        let w = Wait::pending("SourceNotReady", "waiting".into(), false);
        let first = render(
            &obj,
            &VpsRestoreStatus::default(),
            VpsRestoreStatus::default(),
            &Report::wait(&w),
            t0,
        );
        let again = render(&obj, &first, first.clone(), &Report::wait(&w), t1);
        assert_eq!(first, again, "an unchanged wait must render identically");
        assert_eq!(first.source.as_deref(), Some("snapshot/801"));
        let c = |st: &VpsRestoreStatus, t: &str| {
            conditions::find(&st.conditions, t)
                .map(|c| c.status.clone())
                .unwrap()
        };
        assert_eq!(
            (
                c(&first, "Succeeded"),
                c(&first, "Reconciling"),
                c(&first, "Stalled")
            ),
            ("Unknown".into(), "True".into(), "False".into())
        );

        let mut st = accepted();
        st.source_provider_id = Some("801".into());
        st.pre_restore_snapshot = Some("r-before-restore".into());
        let ok = accepted_report(&obj, &st);
        assert!(ok.message.contains("5-15 minutes"), "{}", ok.message);
        assert!(ok.message.contains("in the background"), "{}", ok.message);
        assert!(ok.message.contains("r-before-restore"), "{}", ok.message);
        let done = render(&obj, &first, st, &ok, t1);
        assert_eq!(
            (
                c(&done, "Succeeded"),
                c(&done, "Reconciling"),
                c(&done, "Stalled")
            ),
            ("True".into(), "False".into(), "False".into())
        );
        assert_eq!(done.last_error, None);

        let doubt = doubt_report(&obj, &requested(), "connection closed");
        assert_eq!(doubt.reason, "OutcomeUnknown");
        assert!(doubt.message.contains("never sends it again"));
        assert!(doubt.message.contains("delete this VpsRestore"));
        let stuck = render(&obj, &done, requested(), &doubt, t1);
        assert_eq!(
            (
                c(&stuck, "Succeeded"),
                c(&stuck, "Reconciling"),
                c(&stuck, "Stalled")
            ),
            ("False".into(), "False".into(), "True".into())
        );
        assert_eq!(stuck.phase, Some(RestorePhase::Failed));
        // And once rendered, the doubt is settled for good.
        assert_eq!(settled(&stuck), Some(Step::Failed));
    }
}
