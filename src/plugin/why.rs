//! `kubectl vpsnap why OBJECT`: conditions, recent Events, the garbage-collection and
//! retention plan that concerns the object, and the next step in plain words.
use clap::Args;
use k8s_openapi::api::events::v1::Event;
use kube::api::ListParams;
use kube::{Api, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::blockers;
use super::connect::Ctx;
use super::create::RestorePointObject;
use super::explain;
use super::output::{self, Table, emit};
use super::refs::{self, Kind, ObjRef};
use super::servers;
use super::{CliError, Exit};
use crate::api::{
    OccupancyClass, VpsBackup, VpsProvider, VpsRestore, VpsSnapshot, VpsSnapshotSchedule,
};
use crate::controller::schedule::SCHEDULE_LABEL;

#[derive(Args, Debug)]
pub struct WhyArgs {
    /// KIND/NAME (vpss/NAME, vpsb/NAME, vpsss/NAME, vpsr/NAME, vpsp/NAME) or a NAME.
    pub object: String,
    /// How many recent Events to show.
    #[arg(long, default_value_t = 10)]
    pub events: usize,
}

/// What `why` found (`-o json|yaml`).
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    pub object: String,
    pub namespace: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
    pub conditions: Vec<ConditionRow>,
    pub events: Vec<EventRow>,
    /// The garbage-collection / retention plan that concerns the object, in sentences.
    pub plan: Vec<String>,
    /// LimitReached: what occupies the server and may not be evicted.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub blocked_by: Vec<String>,
    pub next: String,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ConditionRow {
    #[serde(rename = "type")]
    pub type_: String,
    pub status: String,
    pub reason: String,
    pub message: String,
    pub last_transition_time: String,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EventRow {
    #[serde(rename = "type")]
    pub type_: String,
    pub reason: String,
    pub note: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub time: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub count: Option<i32>,
}

pub async fn run(ctx: &Ctx, args: WhyArgs) -> Result<Exit, CliError> {
    let target = refs::resolve(ctx, &args.object).await?;
    let mut report = match target.kind {
        Kind::Snapshot => restore_point::<VpsSnapshot>(ctx, &target).await?,
        Kind::Backup => restore_point::<VpsBackup>(ctx, &target).await?,
        Kind::Schedule => schedule(ctx, &target).await?,
        Kind::Restore => restore(ctx, &target).await?,
        Kind::Provider => provider(ctx, &target).await?,
    };
    report.events = events(ctx, &target, args.events).await?;
    let now = jiff::Timestamp::now();
    emit(ctx.format, &report, || render(&report, now))?;
    Ok(Exit::Ok)
}

async fn get<K>(ctx: &Ctx, target: &ObjRef) -> Result<K, CliError>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug,
{
    ctx.api::<K>()
        .get_opt(&target.name)
        .await
        .map_err(|e| CliError::kube(&format!("get {target}"), e))?
        .ok_or_else(|| {
            CliError::Usage(format!("{target} not found in namespace {}", ctx.namespace))
        })
}

/// Phase and conditions of any vpsnap object, read from its JSON.
fn base(ctx: &Ctx, target: &ObjRef, obj: &impl Serialize) -> Report {
    let v = serde_json::to_value(obj).unwrap_or_default();
    let status = &v["status"];
    let conditions = status["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| {
            let s = |k: &str| c[k].as_str().unwrap_or_default().to_owned();
            ConditionRow {
                type_: s("type"),
                status: s("status"),
                reason: s("reason"),
                message: s("message"),
                last_transition_time: s("lastTransitionTime"),
            }
        })
        .collect();
    Report {
        object: target.to_string(),
        namespace: ctx.namespace.clone(),
        phase: status["phase"].as_str().map(str::to_owned),
        conditions,
        events: Vec::new(),
        plan: Vec::new(),
        blocked_by: Vec::new(),
        next: String::new(),
    }
}

/// The condition that decides the object's state: `Succeeded` for restores, `Ready` else.
fn deciding(report: &Report, kind: Kind) -> Option<&ConditionRow> {
    let main = if kind == Kind::Restore {
        "Succeeded"
    } else {
        "Ready"
    };
    report.conditions.iter().find(|c| c.type_ == main)
}

fn finish(report: &mut Report, kind: Kind, name: &str) {
    let (status, reason) = match deciding(report, kind) {
        Some(c) => (Some(c.status.clone()), Some(c.reason.clone())),
        None => (None, None),
    };
    report.next = explain::next_step(kind, name, status.as_deref(), reason.as_deref());
}

async fn restore_point<K: RestorePointObject>(
    ctx: &Ctx,
    target: &ObjRef,
) -> Result<Report, CliError> {
    let obj: K = get(ctx, target).await?;
    let mut report = base(ctx, target, &obj);
    let (provider, server) = (obj.provider_name().to_owned(), obj.server_id());
    let class = if target.kind == Kind::Backup {
        OccupancyClass::Backup
    } else {
        OccupancyClass::Snapshot
    };
    let noun = class.as_str();
    let my_id = obj.point_status().and_then(|s| s.provider_id.clone());
    match servers::one(ctx, &provider, server, class).await? {
        Some(s) => {
            let full = if s.used >= s.limit { ": full" } else { "" };
            report.plan.push(format!(
                "Server {server} (provider {provider}) holds {} of {} {noun}s{full}{}.",
                s.used,
                s.limit,
                match &s.listed_at {
                    Some(t) => format!(
                        ", listed at {t}{}",
                        if s.complete {
                            ""
                        } else {
                            " (listing incomplete)"
                        }
                    ),
                    None => String::new(),
                }
            ));
            let standings = blockers::standings(&s, servers::resource_of(class));
            match standings.iter().find(|st| {
                my_id.as_deref() == Some(st.id.as_str())
                    || st.object.as_deref() == Some(target.to_string().as_str())
            }) {
                Some(me) => report.plan.push(match me.next_eviction {
                    Some(1) => format!(
                        "It ({}) is the next {noun} garbage collection evicts when room is needed.",
                        me.id
                    ),
                    Some(n) => format!("It ({}) is #{n} in the eviction order.", me.id),
                    None => format!("It ({}) stays: {}.", me.id, me.why),
                }),
                None => report
                    .plan
                    .push(format!("It has no {noun} at the provider (yet).")),
            }
            if let Some(b) = s.blocked.iter().find(|b| b.object == target.name) {
                report
                    .plan
                    .push(format!("It waits for room on the server ({}).", b.reason));
            }
            if let Some(first) = s.next_evictions.first() {
                report.plan.push(format!(
                    "Next eviction on this server: {}.",
                    servers::next_eviction(&s)
                        .replace(&format!(" ({first})"), &format!(" (id {first})"))
                ));
            } else {
                report
                    .plan
                    .push("Nothing on this server may be evicted now.".into());
            }
            let limit_reached =
                deciding(&report, target.kind).is_some_and(|c| c.reason == "LimitReached");
            if limit_reached {
                report.blocked_by = blockers::blocking(&standings)
                    .into_iter()
                    .filter(|st| Some(st.id.as_str()) != my_id.as_deref())
                    .map(blockers::describe)
                    .collect();
            }
        }
        None => report.plan.push(format!(
            "The operator has not published server {server}'s occupancy (VpsOccupancy) yet."
        )),
    }
    // A schedule's child: what its retention says about it.
    if let Some(owner) = obj
        .meta()
        .owner_references
        .iter()
        .flatten()
        .find(|o| o.kind == "VpsSnapshotSchedule")
    {
        let sched = ctx.api::<VpsSnapshotSchedule>().get_opt(&owner.name).await;
        if let Ok(Some(sched)) = sched {
            let plan = sched
                .status
                .as_ref()
                .and_then(|st| st.retention.iter().find(|r| r.server_id == server).cloned());
            let name = obj.name_any();
            report.plan.push(match plan {
                Some(p) => {
                    if let Some(k) = p.kept.iter().find(|k| k.name == name) {
                        format!(
                            "Schedule {} keeps it ({}).",
                            owner.name,
                            if k.rules.is_empty() {
                                "kept".into()
                            } else {
                                k.rules.join(", ")
                            }
                        )
                    } else if let Some(n) = p.next_to_prune.iter().position(|k| k == &name) {
                        format!(
                            "Schedule {} prunes it at its next run (#{} to go).",
                            owner.name,
                            n + 1
                        )
                    } else {
                        format!(
                            "Schedule {}'s retention no longer keeps it: it is pruned.",
                            owner.name
                        )
                    }
                }
                None => format!(
                    "Schedule {} has no retention plan for server {server} yet.",
                    owner.name
                ),
            });
        }
    } else if obj
        .meta()
        .labels
        .as_ref()
        .is_some_and(|l| l.contains_key(SCHEDULE_LABEL))
    {
        report.plan.push("It was made by a schedule that no longer owns it (orphaned): kept until you delete it.".into());
    }
    if report.blocked_by.is_empty()
        && deciding(&report, target.kind).is_some_and(|c| c.reason == "LimitReached")
    {
        let message = deciding(&report, target.kind).map(|c| c.message.clone());
        report.blocked_by = super::create::blocked_by(
            ctx,
            target.kind,
            &provider,
            server,
            &target.name,
            message.as_deref(),
        )
        .await?;
    }
    finish(&mut report, target.kind, &target.name);
    Ok(report)
}

async fn schedule(ctx: &Ctx, target: &ObjRef) -> Result<Report, CliError> {
    let obj: VpsSnapshotSchedule = get(ctx, target).await?;
    let mut report = base(ctx, target, &obj);
    if let Some(st) = &obj.status {
        if let Some(next) = &st.next_schedule_time {
            report.plan.push(format!("Next run at {next}."));
        }
        let c = &st.children;
        report.plan.push(format!(
            "Children: {} ({} Ready, {} in progress, {} failed).",
            c.total, c.ready, c.in_progress, c.failed
        ));
        if let Some(r) = &st.last_run_request {
            report.plan.push(format!(
                "Last run request {} ({:?}): {}",
                r.token, r.outcome, r.message
            ));
        }
        for r in &st.retention {
            let mut line = format!("Server {}: keeps {}", r.server_id, r.kept.len());
            if !r.next_to_prune.is_empty() {
                line.push_str(&format!("; goes next: {}", r.next_to_prune.join(", ")));
            }
            report.plan.push(format!(
                "{line}. Details: kubectl vpsnap retention {}",
                target.name
            ));
        }
        if st.missed_runs > 0 {
            report.plan.push(format!(
                "{} run(s) missed while the operator was down.",
                st.missed_runs
            ));
        }
    }
    let lp = ListParams::default().labels(&format!(
        "{SCHEDULE_LABEL}={}",
        target.name.chars().take(63).collect::<String>()
    ));
    // Children that are not Ready say more than the schedule does.
    let stuck = match obj.spec.type_ {
        crate::api::ScheduleType::Snapshot => {
            stuck_children::<VpsSnapshot>(ctx, &lp, Kind::Snapshot).await
        }
        crate::api::ScheduleType::Backup => {
            stuck_children::<VpsBackup>(ctx, &lp, Kind::Backup).await
        }
    };
    report.plan.extend(stuck);
    finish(&mut report, target.kind, &target.name);
    Ok(report)
}

async fn stuck_children<K: RestorePointObject>(
    ctx: &Ctx,
    lp: &ListParams,
    kind: Kind,
) -> Vec<String> {
    let Ok(list) = ctx.api::<K>().list(lp).await else {
        return Vec::new();
    };
    list.into_iter()
        .filter_map(|o| {
            let c = o
                .point_status()
                .and_then(|s| crate::api::conditions::find(&s.conditions, "Ready").cloned())?;
            (c.status == "False" && super::create::judge(o.point_status()).is_failed()).then(|| {
                format!(
                    "Child {}/{} is not Ready: {} ({}). See kubectl vpsnap why {}/{}",
                    kind.resource(),
                    o.name_any(),
                    c.message,
                    c.reason,
                    kind.resource(),
                    o.name_any()
                )
            })
        })
        .collect()
}

async fn restore(ctx: &Ctx, target: &ObjRef) -> Result<Report, CliError> {
    let obj: VpsRestore = get(ctx, target).await?;
    let mut report = base(ctx, target, &obj);
    let st = obj.status.clone().unwrap_or_default();
    report.plan.push(format!(
        "Restores server {} (provider {}) from {}.",
        obj.spec.server_id,
        obj.spec.provider_ref.name,
        st.source.clone().unwrap_or_else(|| "its source".into())
    ));
    if let Some(at) = &st.restore_requested_at {
        report.plan.push(format!(
            "The restore call was sent at {at}{}; it is never sent again.",
            st.restore_accepted_at
                .as_ref()
                .map(|a| format!(" and accepted at {a}"))
                .unwrap_or_default()
        ));
    } else {
        report
            .plan
            .push("The restore call has not been sent.".into());
    }
    if let Some(s) = &st.pre_restore_snapshot {
        report
            .plan
            .push(format!("Safety snapshot: vpssnapshot/{s}."));
    }
    if let Some(s) = &st.pre_restore_snapshot_skipped {
        report.plan.push(format!("Safety snapshot skipped: {s}."));
    }
    finish(&mut report, target.kind, &target.name);
    Ok(report)
}

async fn provider(ctx: &Ctx, target: &ObjRef) -> Result<Report, CliError> {
    let obj: VpsProvider = get(ctx, target).await?;
    let mut report = base(ctx, target, &obj);
    report.plan.push(format!(
        "Limits: {} snapshots and {} backups per server.",
        obj.spec.limits.snapshots_per_server, obj.spec.limits.backups_per_server
    ));
    let published = servers::published(ctx, Some(&target.name)).await?;
    let entries = published.get(&target.name).cloned().unwrap_or_default();
    let full = entries.iter().filter(|s| s.used >= s.limit).count();
    let blocked: usize = entries.iter().map(|s| s.blocked.len()).sum();
    report.plan.push(format!(
        "{} server/class entries published, {full} full, {blocked} object(s) waiting for room. Details: kubectl vpsnap servers --provider {}",
        entries.len(),
        target.name
    ));
    finish(&mut report, target.kind, &target.name);
    Ok(report)
}

/// The newest Events about the object (events.k8s.io/v1, `regarding` = the object).
async fn events(ctx: &Ctx, target: &ObjRef, limit: usize) -> Result<Vec<EventRow>, CliError> {
    let api: Api<Event> = ctx.api();
    let selector = format!(
        "regarding.name={},regarding.kind={}",
        target.name,
        target.kind.kind()
    );
    let list = match api.list(&ListParams::default().fields(&selector)).await {
        Ok(l) => l.items,
        // Older servers may not select on `regarding`: filter here instead.
        Err(kube::Error::Api(e)) if e.code == 400 => {
            api.list(&ListParams::default())
                .await
                .map_err(|e| CliError::kube("list events", e))?
                .items
        }
        Err(e) => return Err(CliError::kube("list events", e)),
    };
    let mut rows: Vec<(String, EventRow)> = list
        .into_iter()
        .filter(|e| {
            e.regarding.as_ref().is_some_and(|r| {
                r.name.as_deref() == Some(target.name.as_str())
                    && r.kind.as_deref() == Some(target.kind.kind())
            })
        })
        .map(|e| {
            let time = e
                .series
                .as_ref()
                .map(|s| s.last_observed_time.0.to_string())
                .or_else(|| e.event_time.as_ref().map(|t| t.0.to_string()))
                .or_else(|| {
                    e.deprecated_last_timestamp
                        .as_ref()
                        .map(|t| t.0.to_string())
                });
            let count = e.series.as_ref().map(|s| s.count).or(e.deprecated_count);
            (
                time.clone().unwrap_or_default(),
                EventRow {
                    type_: e.type_.unwrap_or_default(),
                    reason: e.reason.unwrap_or_default(),
                    note: e.note.unwrap_or_default(),
                    time,
                    count,
                },
            )
        })
        .collect();
    rows.sort_by(|a, b| b.0.cmp(&a.0));
    Ok(rows.into_iter().take(limit).map(|(_, r)| r).collect())
}

fn render(r: &Report, now: jiff::Timestamp) -> String {
    let mut out = format!(
        "{} (namespace {}){}\n",
        r.object,
        r.namespace,
        r.phase
            .as_ref()
            .map(|p| format!(": {p}"))
            .unwrap_or_default()
    );
    out.push_str("\nConditions:\n");
    if r.conditions.is_empty() {
        out.push_str("  none yet\n");
    } else {
        let mut t = Table::new(&["type", "status", "reason", "age", "message"]);
        for c in &r.conditions {
            t.row(vec![
                c.type_.clone(),
                c.status.clone(),
                c.reason.clone(),
                output::age(Some(&c.last_transition_time), now),
                c.message.clone(),
            ]);
        }
        out.push_str(&indent(&t.render()));
    }
    out.push_str("\nEvents (newest first):\n");
    if r.events.is_empty() {
        out.push_str("  none\n");
    } else {
        let mut t = Table::new(&["age", "type", "reason", "count", "message"]);
        for e in &r.events {
            t.row(vec![
                output::age(e.time.as_deref(), now),
                e.type_.clone(),
                e.reason.clone(),
                output::or_dash(e.count),
                e.note.clone(),
            ]);
        }
        out.push_str(&indent(&t.render()));
    }
    if !r.plan.is_empty() {
        out.push_str("\nPlan:\n");
        for line in &r.plan {
            out.push_str(&format!("  {line}\n"));
        }
    }
    if !r.blocked_by.is_empty() {
        out.push_str("\nBlocked by (may not be evicted):\n");
        for b in &r.blocked_by {
            out.push_str(&format!("  {b}\n"));
        }
    }
    out.push_str(&format!("\nNext:\n  {}\n", r.next));
    out
}

fn indent(text: &str) -> String {
    text.lines().map(|l| format!("  {l}\n")).collect()
}
