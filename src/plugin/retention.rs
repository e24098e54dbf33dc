//! `kubectl vpsnap retention SCHEDULE`: per server, which children the schedule's retention
//! keeps and by which rule, and what goes next — from the schedule's `status.retention`.
use std::collections::BTreeMap;

use clap::Args;
use kube::ResourceExt;
use serde::Serialize;

use super::connect::Ctx;
use super::create::RestorePointObject;
use super::output::{self, Table, emit};
use super::{CliError, Exit};
use crate::api::{
    RetentionSpec, ScheduleType, ServerRetention, VpsBackup, VpsSnapshot, VpsSnapshotSchedule,
};

#[derive(Args, Debug)]
pub struct RetentionArgs {
    /// The VpsSnapshotSchedule.
    pub schedule: String,
    /// Only this server.
    #[arg(long)]
    pub server: Option<i64>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Outcome {
    pub schedule: String,
    pub policy: RetentionSpec,
    pub servers: Vec<ServerRetention>,
}

/// A child's phase and provider creation time, to show next to the plan.
struct ChildInfo {
    phase: String,
    created: Option<String>,
}

pub async fn run(ctx: &Ctx, args: RetentionArgs) -> Result<Exit, CliError> {
    let name = args.schedule.trim_start_matches("vpsss/").to_owned();
    let schedule = ctx
        .api::<VpsSnapshotSchedule>()
        .get_opt(&name)
        .await
        .map_err(|e| CliError::kube(&format!("get vpssnapshotschedule/{name}"), e))?
        .ok_or_else(|| {
            CliError::Usage(format!(
                "no VpsSnapshotSchedule {name:?} in namespace {}",
                ctx.namespace
            ))
        })?;
    let mut servers: Vec<ServerRetention> = schedule
        .status
        .as_ref()
        .map(|s| s.retention.clone())
        .unwrap_or_default();
    if let Some(id) = args.server {
        if !schedule.spec.server_ids.contains(&id) {
            return Err(CliError::Usage(format!(
                "--server {id}: schedule {name} covers servers {:?}",
                schedule.spec.server_ids
            )));
        }
        servers.retain(|s| s.server_id == id);
    }
    let info = match schedule.spec.type_ {
        ScheduleType::Snapshot => children::<VpsSnapshot>(ctx, &name).await,
        ScheduleType::Backup => children::<VpsBackup>(ctx, &name).await,
    };
    let out = Outcome {
        schedule: name.clone(),
        policy: schedule.spec.retention.clone(),
        servers,
    };
    let now = jiff::Timestamp::now();
    emit(ctx.format, &out, || render(&out, &info, now))?;
    Ok(Exit::Ok)
}

/// The schedule's children by name; empty when the user may not list them (the plan itself
/// comes from the schedule's status).
async fn children<K: RestorePointObject>(ctx: &Ctx, schedule: &str) -> BTreeMap<String, ChildInfo> {
    let lp = kube::api::ListParams::default().labels(&format!(
        "{}={}",
        crate::controller::schedule::SCHEDULE_LABEL,
        schedule.chars().take(63).collect::<String>()
    ));
    let Ok(list) = ctx.api::<K>().list(&lp).await else {
        return BTreeMap::new();
    };
    list.into_iter()
        .map(|o| {
            let st = o.point_status();
            (
                o.name_any(),
                ChildInfo {
                    phase: st
                        .and_then(|s| s.phase)
                        .map(|p| p.as_str().to_owned())
                        .unwrap_or_else(|| "Pending".into()),
                    created: st.and_then(|s| s.provider_created_at.clone()),
                },
            )
        })
        .collect()
}

fn policy_text(r: &RetentionSpec) -> String {
    let mut rules = Vec::new();
    let mut add = |name: &str, v: Option<String>| {
        if let Some(v) = v {
            rules.push(format!("{name} {v}"));
        }
    };
    add("keepLast", r.keep_last.map(|n| n.to_string()));
    add("maxAge", r.max_age.clone());
    add("hourly", r.hourly.map(|n| n.to_string()));
    add("daily", r.daily.map(|n| n.to_string()));
    add("weekly", r.weekly.map(|n| n.to_string()));
    add("monthly", r.monthly.map(|n| n.to_string()));
    add("yearly", r.yearly.map(|n| n.to_string()));
    if rules.is_empty() {
        "none (everything is kept)".into()
    } else {
        rules.join(", ")
    }
}

fn render(out: &Outcome, info: &BTreeMap<String, ChildInfo>, now: jiff::Timestamp) -> String {
    let mut text = format!(
        "Schedule {}: retention {} (union of rules; pinned, in-progress and the newest Ready child are always kept)\n",
        out.schedule,
        policy_text(&out.policy)
    );
    if out.servers.is_empty() {
        text.push_str(
            "No plan in status yet: the operator writes it after its first look at the children.\n",
        );
        return text;
    }
    for s in &out.servers {
        text.push_str(&format!("\nServer {}:\n", s.server_id));
        let mut t = Table::new(&["child", "phase", "age", "plan", "rules"]);
        for k in &s.kept {
            let i = info.get(&k.name);
            t.row(vec![
                k.name.clone(),
                output::or_dash(i.map(|i| i.phase.clone())),
                output::age(i.and_then(|i| i.created.as_deref()), now),
                "keep".into(),
                if k.rules.is_empty() {
                    "-".into()
                } else {
                    k.rules.join(", ")
                },
            ]);
        }
        for (n, name) in s.next_to_prune.iter().enumerate() {
            let i = info.get(name);
            t.row(vec![
                name.clone(),
                output::or_dash(i.map(|i| i.phase.clone())),
                output::age(i.and_then(|i| i.created.as_deref()), now),
                format!("goes next (#{})", n + 1),
                "the next run pushes it out of every rule".into(),
            ]);
        }
        for line in t.render().lines() {
            text.push_str(&format!("  {line}\n"));
        }
    }
    text
}
