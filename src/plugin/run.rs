//! `kubectl vpsnap run SCHEDULE`: fire a schedule once now through the annotation
//! `vpsnap.dev/run-requested` (usable without the plugin; see the README). The operator
//! answers each value once in `status.lastRunRequest`, under the same limits, retention and
//! one-operation-per-server rule as a cron run.
use std::time::{Duration, Instant};

use clap::Args;
use kube::Api;
use kube::api::{Patch, PatchParams};
use serde::Serialize;
use serde_json::json;

use super::connect::Ctx;
use super::create::{RestorePointObject, judge as judge_point};
use super::output::emit;
use super::wait::{self, Verdict};
use super::{CliError, DEFAULT_TIMEOUT, Exit, parse_timeout};
use crate::api::{
    RUN_REQUESTED_ANNOTATION, RunRequestOutcome, RunRequestStatus, ScheduleType, VpsBackup,
    VpsSnapshot, VpsSnapshotSchedule,
};

/// How long `run` without `--wait` waits for the operator to answer.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Args, Debug)]
pub struct RunArgs {
    /// The VpsSnapshotSchedule to run.
    pub schedule: String,
    /// Also wait for every child to be Ready (without it: only for the operator's answer,
    /// at most a minute).
    #[arg(long, short = 'w')]
    pub wait: bool,
    /// How long --wait waits, e.g. 10m.
    #[arg(long, default_value = DEFAULT_TIMEOUT, value_parser = parse_timeout)]
    pub timeout: Duration,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Outcome {
    pub schedule: String,
    pub token: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub answer: Option<RunRequestStatus>,
    /// With --wait: each child and its final phase.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub children: Vec<ChildResult>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ChildResult {
    pub name: String,
    pub ready: bool,
    pub detail: String,
}

pub async fn run(ctx: &Ctx, args: RunArgs) -> Result<Exit, CliError> {
    let name = args.schedule.trim_start_matches("vpsss/").to_owned();
    let api: Api<VpsSnapshotSchedule> = ctx.api();
    let schedule = api
        .get_opt(&name)
        .await
        .map_err(|e| CliError::kube(&format!("get vpssnapshotschedule/{name}"), e))?
        .ok_or_else(|| {
            CliError::Usage(format!(
                "no VpsSnapshotSchedule {name:?} in namespace {} (kubectl get vpsss lists them)",
                ctx.namespace
            ))
        })?;
    if schedule.spec.suspend {
        return Err(CliError::Failed(format!(
            "vpssnapshotschedule/{name} is suspended: resume it first (spec.suspend: false)"
        )));
    }
    let token = jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string();
    let patch = json!({"metadata": {"annotations": {RUN_REQUESTED_ANNOTATION: token}}});
    api.patch_metadata(&name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map_err(|e| CliError::kube(&format!("annotate vpssnapshotschedule/{name}"), e))?;
    let label = format!("vpssnapshotschedule/{name}");
    let started = Instant::now();
    // The operator's answer says what the run made (or why it did not run); without --wait
    // that is all we wait for, and not long.
    let answer_timeout = if args.wait {
        args.timeout
    } else {
        args.timeout.min(ANSWER_TIMEOUT)
    };
    eprintln!(
        "run requested ({RUN_REQUESTED_ANNOTATION}={token}); waiting for the operator's answer (up to {})",
        wait::humanize(answer_timeout)
    );
    let answer = wait::until(
        &api,
        &label,
        &name,
        answer_timeout,
        |s: &VpsSnapshotSchedule| match s
            .status
            .as_ref()
            .and_then(|st| st.last_run_request.as_ref())
        {
            Some(a) if a.token == token => Verdict::Done(a.clone()),
            _ => Verdict::Pending("waiting for the operator to take the request".into()),
        },
    )
    .await?;
    if answer.outcome != RunRequestOutcome::Ran {
        let out = Outcome {
            schedule: name,
            token,
            answer: Some(answer.clone()),
            children: Vec::new(),
        };
        emit(ctx.format, &out, || {
            format!("not run: {}\n", answer.message)
        })?;
        return Ok(Exit::Failed);
    }
    if !args.wait {
        let out = Outcome {
            schedule: name,
            token,
            answer: Some(answer.clone()),
            children: Vec::new(),
        };
        emit(ctx.format, &out, || {
            format!(
                "{}\nFollow the children: kubectl get vpss,vpsb -l vpsnap.dev/schedule={}\n",
                answer.message, out.schedule
            )
        })?;
        return Ok(Exit::Ok);
    }
    if !answer.skipped_servers.is_empty() {
        eprintln!(
            "skipped servers {:?}: an operation is still in flight there",
            answer.skipped_servers
        );
    }
    let left = args.timeout.saturating_sub(started.elapsed());
    let children = match schedule.spec.type_ {
        ScheduleType::Snapshot => wait_children::<VpsSnapshot>(ctx, &answer.children, left).await?,
        ScheduleType::Backup => wait_children::<VpsBackup>(ctx, &answer.children, left).await?,
    };
    let all_ready = children.iter().all(|c| c.ready);
    let out = Outcome {
        schedule: name,
        token,
        answer: Some(answer.clone()),
        children,
    };
    emit(ctx.format, &out, || {
        let mut text = format!("{}\n", answer.message);
        for c in &out.children {
            text.push_str(&format!("  {}: {}\n", c.name, c.detail));
        }
        text
    })?;
    Ok(if all_ready { Exit::Ok } else { Exit::Failed })
}

async fn wait_children<K: RestorePointObject>(
    ctx: &Ctx,
    names: &[String],
    timeout: Duration,
) -> Result<Vec<ChildResult>, CliError> {
    let api: Api<K> = ctx.api();
    let mut out = Vec::new();
    let started = Instant::now();
    for name in names {
        let label = format!("{}/{name}", K::plural(&()).trim_end_matches('s'));
        let left = timeout.saturating_sub(started.elapsed());
        let result = wait::until(&api, &label, name, left, |o: &K| {
            match judge_point(o.point_status()) {
                Verdict::Done(()) => Verdict::Done(ChildResult {
                    name: name.clone(),
                    ready: true,
                    detail: format!(
                        "Ready, provider id {}",
                        o.point_status()
                            .and_then(|s| s.provider_id.clone())
                            .unwrap_or_default()
                    ),
                }),
                Verdict::Failed(why) => Verdict::Done(ChildResult {
                    name: name.clone(),
                    ready: false,
                    detail: why,
                }),
                Verdict::Pending(line) => Verdict::Pending(line),
            }
        })
        .await?;
        out.push(result);
    }
    Ok(out)
}
