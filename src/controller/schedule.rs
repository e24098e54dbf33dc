//! `VpsSnapshotSchedule` reconciler: fire (cron + zone + jitter, no bursts) → children with
//! deterministic names → retention (prune past-policy children, which deletes their provider
//! data through each child's finalizer) → status with the plan.
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::finalizer::{Event as FinalizerEvent, finalizer};
use kube::{Resource, ResourceExt};
use serde_json::json;

use super::context::Context;
use super::registry::{Lookup, ProviderHandle};
use super::run_request::{self, RunRequest};
use super::snapshot_backup::RestorePoint;
use super::{Error, WriteStep, outcome, status};
use crate::api::conditions::{self, Desired};
use crate::api::{
    ChildCounts, ChildDeletionPolicy, KeptChild, Phase, RUN_REQUESTED_ANNOTATION,
    RunRequestOutcome, RunRequestStatus, ScheduleType, ServerRetention, VpsBackup, VpsSnapshot,
    VpsSnapshotSchedule, parse_duration,
};
use crate::plan::retention::{self, Item, ItemState, RetentionPolicy};
use crate::plan::schedule::{self, CronSchedule};

pub const FINALIZER: &str = "vpsnap.dev/schedule-cleanup";
pub const SCHEDULE_LABEL: &str = "vpsnap.dev/schedule";
pub const SERVER_LABEL: &str = "vpsnap.dev/server";
pub const SCHEDULED_TIME: &str = "vpsnap.dev/scheduled-time";
/// Set on a child before the schedule deletes it for retention: such deletions are the
/// operator's own plan, not an outside burst, so the mass-deletion breaker lets them pass.
pub const PRUNED_BY_SCHEDULE: &str = "vpsnap.dev/pruned-by-schedule";
/// How often a schedule is looked at even when its next run is far away (retention, status).
const RESYNC: Duration = Duration::from_secs(300);

const KIND: &str = "VpsSnapshotSchedule";

fn backoff_key(obj: &VpsSnapshotSchedule) -> String {
    outcome::key(
        KIND,
        &format!("{}/{}", obj.namespace().unwrap_or_default(), obj.name_any()),
    )
}

pub async fn reconcile(obj: Arc<VpsSnapshotSchedule>, ctx: Arc<Context>) -> Result<Action, Error> {
    let ns = obj.namespace().unwrap_or_default();
    let api: Api<VpsSnapshotSchedule> = Api::namespaced(ctx.client.clone(), &ns);
    let started = std::time::Instant::now();
    let key = backoff_key(&obj);
    let result = finalizer(&api, FINALIZER, obj, |event| async {
        match event {
            FinalizerEvent::Apply(o) => apply(o, &ctx, &api).await,
            FinalizerEvent::Cleanup(o) => cleanup(o, &ctx).await,
        }
    })
    .await
    .map_err(|e| match e {
        kube::runtime::finalizer::Error::ApplyFailed(e)
        | kube::runtime::finalizer::Error::CleanupFailed(e) => e,
        other => Error::Finalizer(Box::new(other)),
    });
    outcome::finish(&ctx, KIND, &key, started, &result);
    result
}

pub fn error_policy(obj: Arc<VpsSnapshotSchedule>, err: &Error, ctx: Arc<Context>) -> Action {
    outcome::error_policy(&ctx, KIND, &backoff_key(&obj), err)
}

/// What one child looks like to retention.
struct Child {
    name: String,
    server: i64,
    item: Item,
    deleting: bool,
}

async fn apply(
    obj: Arc<VpsSnapshotSchedule>,
    ctx: &Context,
    api: &Api<VpsSnapshotSchedule>,
) -> Result<Action, Error> {
    match obj.spec.type_ {
        ScheduleType::Snapshot => run::<VpsSnapshot>(&obj, ctx, api).await,
        ScheduleType::Backup => run::<VpsBackup>(&obj, ctx, api).await,
    }
}

async fn run<K: RestorePoint>(
    obj: &VpsSnapshotSchedule,
    ctx: &Context,
    api: &Api<VpsSnapshotSchedule>,
) -> Result<Action, Error> {
    let spec = &obj.spec;
    let current = obj.status.clone().unwrap_or_default();
    let now = Timestamp::now();
    let mut st = current.clone();
    st.observed_generation = obj.meta().generation;

    let parsed = parse_spec(obj);
    let (cron, tz, policy, deadline, jitter_max) = match parsed {
        Ok(p) => p,
        Err(message) => {
            if conditions::find(&current.conditions, conditions::STALLED)
                .is_none_or(|c| c.message != message)
            {
                ctx.event(obj, true, "InvalidSpec", "Validate", message.clone())
                    .await;
            }
            st.phase = Some("Failed".into());
            st.last_error = Some(message.clone());
            st.conditions = conditions::settle(
                &current.conditions,
                &[
                    Desired::new(conditions::READY, false, "InvalidSpec", message.clone()),
                    Desired::new(conditions::RECONCILING, false, "InvalidSpec", ""),
                    Desired::new(conditions::STALLED, true, "InvalidSpec", message),
                ],
                obj.meta().generation,
                now,
            );
            write_status(api, obj, &st).await?;
            return Ok(Action::await_change());
        }
    };

    let children = children_of::<K>(obj, ctx);
    st.children = counts(&children);

    if spec.suspend {
        let room = Room {
            handle: None,
            policy: &policy,
            now,
            tz: &tz,
        };
        if let Some(answer) =
            run_requested::<K>(obj, ctx, &children, &mut BTreeSet::new(), &room, true).await?
        {
            st.last_run_request = Some(answer);
        }
        st.phase = Some("Suspended".into());
        st.next_schedule_time = None;
        st.last_error = None;
        st.conditions = conditions::settle(
            &current.conditions,
            &[
                Desired::new(
                    conditions::READY,
                    true,
                    "Suspended",
                    "suspended: no new children, retention paused",
                ),
                Desired::new(conditions::RECONCILING, false, "Suspended", ""),
                Desired::new(conditions::STALLED, false, "Suspended", ""),
            ],
            obj.meta().generation,
            now,
        );
        write_status(api, obj, &st).await?;
        return Ok(Action::await_change());
    }

    let provider_key = (
        obj.namespace().unwrap_or_default(),
        spec.provider_ref.name.clone(),
    );
    let handle = match ctx.registry.lookup(&provider_key) {
        Lookup::Ready(h) => Some(h),
        _ => None,
    };

    // Retention first: pruning makes room before anything new is created.
    let mut plans = Vec::new();
    for server in &spec.server_ids {
        let items: Vec<Item> = children
            .iter()
            .filter(|c| c.server == *server && !c.deleting)
            .map(|c| c.item.clone())
            .collect();
        let plan = retention::plan(&items, &policy, now, &tz);
        for name in &plan.prune {
            prune::<K>(obj, ctx, name).await?;
        }
        plans.push((*server, plan));
    }
    st.retention = plans
        .iter()
        .map(|(server, plan)| ServerRetention {
            server_id: *server,
            kept: plan
                .keep
                .iter()
                .map(|(name, rules)| KeptChild {
                    name: name.clone(),
                    rules: rules.iter().map(|r| (*r).to_owned()).collect(),
                })
                .collect(),
            // What the next run pushes out, so `kubectl vpsnap retention` can say it.
            next_to_prune: retention::next_to_go(
                &children
                    .iter()
                    .filter(|c| {
                        c.server == *server
                            && !c.deleting
                            && plan.keep.iter().any(|(k, _)| k == &c.name)
                    })
                    .map(|c| c.item.clone())
                    .collect::<Vec<_>>(),
                &policy,
                now,
                &tz,
            ),
        })
        .collect();

    let jitter = schedule::stable_jitter(&obj.uid().unwrap_or_else(|| obj.name_any()), jitter_max);
    let last = current
        .last_schedule_time
        .as_deref()
        .and_then(|t| t.parse::<Timestamp>().ok());
    let created = obj
        .meta()
        .creation_timestamp
        .as_ref()
        .map(|t| t.0)
        .unwrap_or(now);
    let decision = schedule::decide(&cron, &tz, jitter, last, created, now, deadline);
    st.missed_runs = current.missed_runs + i64::from(decision.missed);
    st.next_schedule_time = decision.next.map(|t| t.to_string());

    let mut message = String::from("scheduled");
    // At most one operation in flight per server: a child still being made means a run is
    // skipped there rather than queued behind it (children made by this reconcile count too).
    let mut busy: BTreeSet<i64> = children
        .iter()
        .filter(|c| !c.deleting && c.item.state == ItemState::InProgress)
        .map(|c| c.server)
        .collect();
    let room = Room {
        handle: handle.as_ref(),
        policy: &policy,
        now,
        tz: &tz,
    };
    if let Some(run_at) = decision.run {
        let fired = fire::<K>(obj, ctx, &children, &mut busy, run_at, &room).await?;
        if !fired.made.is_empty() {
            ctx.event(
                obj,
                false,
                "ChildrenCreated",
                "Schedule",
                format!("run for {run_at}: created {}", fired.made.join(", ")),
            )
            .await;
        }
        if !fired.skipped.is_empty() {
            message = format!(
                "run for {run_at} skipped on servers {} (an operation is still in flight there)",
                join(&fired.skipped)
            );
            ctx.event(obj, true, "RunSkipped", "Schedule", message.clone())
                .await;
        }
        st.last_schedule_time = Some(run_at.to_string());
    } else if let Some(due) = decision.latest_due
        && decision.missed > 0
    {
        // Missed runs past the deadline are recorded as considered, so they are counted once.
        st.last_schedule_time = Some(due.to_string());
        ctx.event(obj, true, "MissedRuns", "Schedule", format!("{} run(s) missed while the operator was down; the latest was past the starting deadline", decision.missed)).await;
    }
    if let Some(answer) = run_requested::<K>(obj, ctx, &children, &mut busy, &room, false).await? {
        st.last_run_request = Some(answer);
    }

    st.phase = Some("Active".into());
    st.last_error = None;
    let provider_note = if handle.is_none() {
        "; waiting for the VpsProvider to be Ready"
    } else {
        ""
    };
    st.conditions = conditions::settle(
        &current.conditions,
        &[
            Desired::new(
                conditions::READY,
                true,
                "Scheduled",
                format!("{message}{provider_note}"),
            ),
            Desired::new(conditions::RECONCILING, false, "Scheduled", ""),
            Desired::new(conditions::STALLED, false, "Scheduled", ""),
        ],
        obj.meta().generation,
        now,
    );
    write_status(api, obj, &st).await?;

    let wait = decision
        .next
        .map(|n| Duration::try_from(n.duration_since(Timestamp::now())).unwrap_or(Duration::ZERO))
        .unwrap_or(RESYNC)
        .clamp(Duration::from_millis(200), RESYNC);
    Ok(Action::requeue(wait))
}

/// What a run needs to make room on a full server.
struct Room<'a> {
    handle: Option<&'a ProviderHandle>,
    policy: &'a RetentionPolicy,
    now: Timestamp,
    tz: &'a jiff::tz::TimeZone,
}

/// Children one run made (or found made), and the servers it skipped.
#[derive(Default)]
struct Fired {
    made: Vec<String>,
    skipped: Vec<i64>,
}

/// One run at scheduled time `run_at` — cron or requested, the same rules: a server with an
/// operation in flight (`busy`) is skipped, a full server first loses what retention no
/// longer needs, then each server gets its deterministically named child.
async fn fire<K: RestorePoint>(
    obj: &VpsSnapshotSchedule,
    ctx: &Context,
    children: &[Child],
    busy: &mut BTreeSet<i64>,
    run_at: Timestamp,
    room: &Room<'_>,
) -> Result<Fired, Error> {
    let mut fired = Fired::default();
    for server in &obj.spec.server_ids {
        if busy.contains(server) {
            fired.skipped.push(*server);
            continue;
        }
        if let Some(h) = room.handle {
            let limit = K::limit(h);
            make_room::<K>(
                obj,
                ctx,
                children,
                *server,
                limit,
                room.policy,
                room.now,
                room.tz,
            )
            .await?;
        }
        fired
            .made
            .push(create_child::<K>(obj, ctx, *server, run_at).await?);
        busy.insert(*server);
    }
    Ok(fired)
}

/// Answers a new `vpsnap.dev/run-requested` value (see [`run_request`]): runs once, or says
/// why not. `None` when there is nothing new to answer.
async fn run_requested<K: RestorePoint>(
    obj: &VpsSnapshotSchedule,
    ctx: &Context,
    children: &[Child],
    busy: &mut BTreeSet<i64>,
    room: &Room<'_>,
    suspended: bool,
) -> Result<Option<RunRequestStatus>, Error> {
    let handled = obj
        .status
        .as_ref()
        .and_then(|s| s.last_run_request.as_ref())
        .map(|r| r.token.as_str());
    let annotation = obj.annotations().get(RUN_REQUESTED_ANNOTATION);
    let answer =
        match run_request::decide(annotation.map(String::as_str), handled, suspended, room.now) {
            RunRequest::Nothing => return Ok(None),
            RunRequest::Answer {
                token,
                outcome,
                message,
            } => {
                ctx.event(
                    obj,
                    true,
                    "RunRequestRefused",
                    "RunRequest",
                    message.clone(),
                )
                .await;
                RunRequestStatus {
                    token,
                    outcome,
                    handled_at: room.now.to_string(),
                    message,
                    children: Vec::new(),
                    skipped_servers: Vec::new(),
                }
            }
            RunRequest::Run { token, at } => {
                let fired = fire::<K>(obj, ctx, children, busy, at, room).await?;
                let mut message = format!("requested run for {at}");
                if !fired.made.is_empty() {
                    message.push_str(&format!(": created {}", fired.made.join(", ")));
                }
                if !fired.skipped.is_empty() {
                    message.push_str(&format!(
                        "; skipped servers {} (an operation is still in flight there)",
                        join(&fired.skipped)
                    ));
                }
                tracing::info!(schedule = %obj.name_any(), %token, "requested run");
                ctx.event(
                    obj,
                    !fired.skipped.is_empty(),
                    "RunRequested",
                    "RunRequest",
                    message.clone(),
                )
                .await;
                RunRequestStatus {
                    token,
                    outcome: RunRequestOutcome::Ran,
                    handled_at: room.now.to_string(),
                    message,
                    children: fired.made,
                    skipped_servers: fired.skipped,
                }
            }
        };
    Ok(Some(answer))
}

fn join(servers: &[i64]) -> String {
    servers
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

type Parsed = (
    CronSchedule,
    jiff::tz::TimeZone,
    RetentionPolicy,
    Option<Duration>,
    Duration,
);

/// Everything the schema cannot check, with messages naming the field.
fn parse_spec(obj: &VpsSnapshotSchedule) -> Result<Parsed, String> {
    let spec = &obj.spec;
    let cron = CronSchedule::parse(&spec.schedule)
        .map_err(|e| format!("spec.schedule {:?}: {e}", spec.schedule))?;
    let tz = schedule::time_zone(&spec.time_zone).map_err(|e| format!("spec.timeZone: {e}"))?;
    let dur = |field: &str, v: &Option<String>| -> Result<Option<Duration>, String> {
        v.as_deref()
            .map(parse_duration)
            .transpose()
            .map_err(|e| format!("{field}: {e}"))
    };
    let r = &spec.retention;
    let count = |v: Option<i32>| v.map(|n| n.max(1) as u32);
    let policy = RetentionPolicy {
        keep_last: count(r.keep_last),
        max_age: dur("spec.retention.maxAge", &r.max_age)?,
        hourly: count(r.hourly),
        daily: count(r.daily),
        weekly: count(r.weekly),
        monthly: count(r.monthly),
        yearly: count(r.yearly),
    };
    let deadline = dur("spec.startingDeadline", &spec.starting_deadline)?;
    let jitter = parse_duration(&spec.max_jitter).map_err(|e| format!("spec.maxJitter: {e}"))?;
    Ok((cron, tz, policy, deadline, jitter))
}

/// The schedule's children, from the index of objects by owner (with this process's writes).
fn children_of<K: RestorePoint>(obj: &VpsSnapshotSchedule, ctx: &Context) -> Vec<Child> {
    let Some(index) = K::index(ctx) else {
        return Vec::new();
    };
    index
        .owned_by(&obj.uid().unwrap_or_default())
        .into_iter()
        .map(|c| {
            let st = c.status().cloned().unwrap_or_default();
            let state = match st.phase {
                Some(Phase::Ready) => ItemState::Ready,
                Some(Phase::Failed | Phase::Evicted) => ItemState::Failed,
                _ => ItemState::InProgress,
            };
            let created_at = st
                .provider_created_at
                .as_deref()
                .and_then(|t| t.parse::<Timestamp>().ok())
                .or_else(|| c.meta().creation_timestamp.as_ref().map(|t| t.0))
                .unwrap_or(Timestamp::UNIX_EPOCH);
            Child {
                name: c.name_any(),
                server: c.common().server_id,
                item: Item {
                    key: c.name_any(),
                    created_at,
                    state,
                    pinned: c.common().pinned,
                },
                deleting: c.meta().deletion_timestamp.is_some(),
            }
        })
        .collect()
}

fn counts(children: &[Child]) -> ChildCounts {
    let mut c = ChildCounts {
        total: children.len() as i64,
        ..Default::default()
    };
    for child in children {
        match child.item.state {
            ItemState::Ready => c.ready += 1,
            ItemState::InProgress => c.in_progress += 1,
            ItemState::Failed => c.failed += 1,
        }
    }
    c
}

/// When the schedule's own children already fill the server, the oldest ones retention does
/// not need go first (never the newest Ready, pinned or in-progress ones).
#[allow(clippy::too_many_arguments)]
async fn make_room<K: RestorePoint>(
    obj: &VpsSnapshotSchedule,
    ctx: &Context,
    children: &[Child],
    server: i64,
    limit: usize,
    policy: &RetentionPolicy,
    now: Timestamp,
    tz: &jiff::tz::TimeZone,
) -> Result<(), Error> {
    let mine: Vec<Item> = children
        .iter()
        .filter(|c| c.server == server && !c.deleting)
        .map(|c| c.item.clone())
        .collect();
    if mine.len() < limit {
        return Ok(());
    }
    for name in retention::evict_for_room(&mine, policy, now, tz, mine.len() + 1 - limit) {
        prune::<K>(obj, ctx, &name).await?;
    }
    Ok(())
}

async fn prune<K: RestorePoint>(
    obj: &VpsSnapshotSchedule,
    ctx: &Context,
    name: &str,
) -> Result<(), Error> {
    let api: Api<K> = Api::namespaced(ctx.client.clone(), &obj.namespace().unwrap_or_default());
    let Some(child) = prune_child(&api, &obj.name_any(), name).await? else {
        return Ok(());
    };
    tracing::info!(schedule = %obj.name_any(), child = name, "pruned past retention");
    ctx.event(
        obj,
        false,
        "Pruned",
        "Retention",
        format!(
            "{} is past retention; deleting it and its provider data",
            child.name_any()
        ),
    )
    .await;
    Ok(())
}

/// Marks the child pruned by `schedule` and deletes it — unless it is pinned. The mark
/// returns the child as stored now, so a pin made since the schedule's copy is seen; the
/// delete is conditional on that version, so a pin made in between stops it too. Returns
/// the deleted child, `None` when it was kept (pinned) or already gone.
pub async fn prune_child<K: RestorePoint>(
    api: &Api<K>,
    schedule: &str,
    name: &str,
) -> Result<Option<K>, Error> {
    let mark = json!({"metadata": {"annotations": {PRUNED_BY_SCHEDULE: schedule}}});
    let marked = match api
        .patch(name, &PatchParams::default(), &Patch::Merge(&mark))
        .await
    {
        Ok(c) => c,
        Err(kube::Error::Api(e)) if e.code == 404 => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    if marked.common().pinned {
        let unmark = json!({"metadata": {"annotations": {PRUNED_BY_SCHEDULE: null}}});
        api.patch(name, &PatchParams::default(), &Patch::Merge(&unmark))
            .await?;
        return Ok(None);
    }
    let precondition = DeleteParams {
        preconditions: Some(kube::api::Preconditions {
            resource_version: marked.resource_version(),
            uid: marked.uid(),
        }),
        ..DeleteParams::background()
    };
    match api.delete(name, &precondition).await {
        Ok(_) => Ok(Some(marked)),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(None),
        // Changed since the mark (perhaps pinned): left for the next look, unmarked.
        Err(kube::Error::Api(e)) if e.code == 409 => {
            let unmark = json!({"metadata": {"annotations": {PRUNED_BY_SCHEDULE: null}}});
            api.patch(name, &PatchParams::default(), &Patch::Merge(&unmark))
                .await?;
            Ok(None)
        }
        Err(e) => Err(e.into()),
    }
}

/// Child names are deterministic (schedule, server, scheduled time), so a repeated run after a
/// crash finds the child it already made instead of making a second one.
pub fn child_name(schedule: &str, server: i64, run_at: Timestamp) -> String {
    let stamp = run_at.strftime("%Y%m%d-%H%M%S").to_string();
    let prefix: String = schedule.chars().take(200).collect();
    format!("{prefix}-{server}-{stamp}")
}

async fn create_child<K: RestorePoint>(
    obj: &VpsSnapshotSchedule,
    ctx: &Context,
    server: i64,
    run_at: Timestamp,
) -> Result<String, Error> {
    let ns = obj.namespace().unwrap_or_default();
    let name = child_name(&obj.name_any(), server, run_at);
    let t = &obj.spec.template;
    // Only the template's labels, never the parent's: Argo CD must not adopt (and prune)
    // children by a tracking label they inherited.
    let mut labels: BTreeMap<String, String> = t
        .labels
        .iter()
        .filter(|(k, _)| {
            !k.starts_with("argocd.argoproj.io/") && k.as_str() != "app.kubernetes.io/instance"
        })
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    labels.insert(
        SCHEDULE_LABEL.into(),
        obj.name_any().chars().take(63).collect(),
    );
    labels.insert(SERVER_LABEL.into(), server.to_string());
    let mut spec = json!({
        "providerRef": {"name": obj.spec.provider_ref.name},
        "serverId": server,
        "deletionPolicy": t.deletion_policy,
    });
    if let Some(d) = &t.description {
        spec["description"] = json!(d);
    }
    if let Some(d) = &t.failure_deadline {
        spec["failureDeadline"] = json!(d);
    }
    let body = json!({
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
        "metadata": {
            "name": name,
            "namespace": ns,
            "labels": labels,
            "annotations": {SCHEDULED_TIME: run_at.to_string()},
            "ownerReferences": [{
                "apiVersion": VpsSnapshotSchedule::api_version(&()),
                "kind": VpsSnapshotSchedule::kind(&()),
                "name": obj.name_any(),
                "uid": obj.uid().unwrap_or_default(),
                "controller": true,
                "blockOwnerDeletion": false,
            }],
        },
        "spec": spec,
    });
    let child: K = serde_json::from_value(body)
        .map_err(|e| Error::Held(format!("building child {name}: {e}")))?;
    let api: Api<K> = Api::namespaced(ctx.client.clone(), &ns);
    match api.create(&PostParams::default(), &child).await {
        Ok(_) => tracing::info!(schedule = %obj.name_any(), child = %name, "child created"),
        Err(kube::Error::Api(e)) if e.code == 409 => {}
        Err(e) => return Err(e.into()),
    }
    Ok(name)
}

/// The schedule's status, conditional on the version it was decided from.
async fn write_status(
    api: &Api<VpsSnapshotSchedule>,
    obj: &VpsSnapshotSchedule,
    st: &crate::api::VpsSnapshotScheduleStatus,
) -> Result<(), Error> {
    status::write(api, obj, obj.status.as_ref(), st)
        .await
        .map_err(|e| Error::write(WriteStep::Status, e))?;
    Ok(())
}

/// Orphan (default): children lose their owner reference so Kubernetes' garbage collector
/// keeps them, and with them the provider data. Delete: the collector removes them.
async fn cleanup(obj: Arc<VpsSnapshotSchedule>, ctx: &Context) -> Result<Action, Error> {
    if obj.spec.child_deletion_policy == ChildDeletionPolicy::Delete {
        return Ok(Action::await_change());
    }
    match obj.spec.type_ {
        ScheduleType::Snapshot => orphan::<VpsSnapshot>(&obj, ctx).await?,
        ScheduleType::Backup => orphan::<VpsBackup>(&obj, ctx).await?,
    }
    Ok(Action::await_change())
}

async fn orphan<K: RestorePoint>(obj: &VpsSnapshotSchedule, ctx: &Context) -> Result<(), Error> {
    let ns = obj.namespace().unwrap_or_default();
    let api: Api<K> = Api::namespaced(ctx.client.clone(), &ns);
    let uid = obj.uid().unwrap_or_default();
    // The API, not the cache: a child created moments ago must not be missed.
    let lp = kube::api::ListParams::default().labels(&format!(
        "{SCHEDULE_LABEL}={}",
        obj.name_any().chars().take(63).collect::<String>()
    ));
    for child in api.list(&lp).await? {
        let refs: Vec<_> = child
            .owner_references()
            .iter()
            .filter(|o| o.uid != uid)
            .cloned()
            .collect();
        if refs.len() == child.owner_references().len() {
            continue;
        }
        let patch = json!({"metadata": {"ownerReferences": refs}});
        api.patch_metadata(
            &child.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await?;
    }
    ctx.event(obj, false, "ChildrenOrphaned", "Delete", "schedule deleted; its children and their provider data are kept (childDeletionPolicy: Orphan)".to_string()).await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn child_names_are_deterministic_and_valid() {
        let t: Timestamp = "2026-11-23T02:00:05Z".parse().unwrap();
        assert_eq!(
            child_name("nightly", 12345, t),
            "nightly-12345-20261123-020005"
        );
        assert_eq!(
            child_name("nightly", 12345, t),
            child_name("nightly", 12345, t)
        );
        let long = "a".repeat(253);
        assert!(child_name(&long, 1, t).len() <= 253);
    }
}
