//! `kubectl vpsnap restore SERVER --from-snapshot NAME`: show what is overwritten, ask for the
//! server id to be typed (or `--yes`), create the `VpsRestore` with `acknowledgeDataLoss:
//! true`, and wait for `Succeeded`. The operator sends the provider call at most once per
//! VpsRestore, ever; this command creates exactly one.
use std::io::{BufRead, Write};
use std::time::Duration;

use clap::{ArgGroup, Args};
use kube::api::PostParams;
use kube::{Api, ResourceExt};
use serde::Serialize;
use serde_json::json;

use super::connect::Ctx;
use super::create::{self, RestorePointObject};
use super::output::emit;
use super::refs::Kind;
use super::wait::{self, Verdict};
use super::{CliError, DEFAULT_TIMEOUT, Exit, explain, parse_timeout};
use crate::api::{RestorePhase, VpsBackup, VpsRestore, VpsSnapshot, conditions};

#[derive(Args, Debug)]
#[command(group(ArgGroup::new("source").required(true).args(["from_snapshot", "from_backup", "from_snapshot_id", "from_backup_id"])))]
pub struct RestoreArgs {
    /// Provider's id of the server to overwrite.
    #[arg(value_parser = clap::value_parser!(i64).range(1..))]
    pub server: i64,
    /// Restore from this VpsSnapshot (same namespace).
    #[arg(long, value_name = "NAME")]
    pub from_snapshot: Option<String>,
    /// Restore from this VpsBackup (same namespace).
    #[arg(long, value_name = "NAME")]
    pub from_backup: Option<String>,
    /// Restore from a provider snapshot id (also one vpsnap does not manage; needs --provider).
    #[arg(long, value_name = "ID")]
    pub from_snapshot_id: Option<String>,
    /// Restore from a provider backup id (needs --provider).
    #[arg(long, value_name = "ID")]
    pub from_backup_id: Option<String>,
    /// The VpsProvider (default: the source object's, else the only one in the namespace).
    #[arg(long, short = 'p')]
    pub provider: Option<String>,
    /// Take a safety snapshot of the server first (kept after the restore).
    #[arg(long)]
    pub safety_snapshot: bool,
    /// Do not ask: for scripts that have checked what they restore.
    #[arg(long, short = 'y')]
    pub yes: bool,
    /// Name of the VpsRestore (default: `restore-SERVER-YYYYMMDD-HHMMSS`, UTC).
    #[arg(long)]
    pub name: Option<String>,
    /// Create the VpsRestore and return without waiting for Succeeded.
    #[arg(long)]
    pub no_wait: bool,
    /// How long to wait for Succeeded, e.g. 10m.
    #[arg(long, default_value = DEFAULT_TIMEOUT, value_parser = parse_timeout)]
    pub timeout: Duration,
}

/// What the command prints (`-o json|yaml`).
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Outcome {
    pub name: String,
    pub namespace: String,
    pub server_id: i64,
    pub provider: String,
    pub source: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source_provider_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pre_restore_snapshot: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// The source as checked before anything is written.
struct Source {
    /// The `spec.source` of the VpsRestore.
    spec: serde_json::Value,
    /// Short form, e.g. `vpssnapshot/pre-upgrade`.
    label: String,
    provider: Option<String>,
    /// Lines describing the source for the preview.
    preview: String,
    created_at: Option<String>,
}

pub async fn run(ctx: &Ctx, args: RestoreArgs) -> Result<Exit, CliError> {
    let source = source(ctx, &args).await?;
    let provider = match (&args.provider, &source.provider) {
        (Some(given), Some(theirs)) if given != theirs => {
            return Err(CliError::Usage(format!(
                "--provider {given}: {} belongs to provider {theirs}",
                source.label
            )));
        }
        (_, Some(theirs)) => theirs.clone(),
        (given, None) => create::provider(ctx, given.as_deref()).await?,
    };

    let newer = newer_points(ctx, &provider, args.server, source.created_at.as_deref()).await?;
    let preview = preview(&args, &provider, &source, &newer);
    eprint!("{preview}");
    if !args.yes {
        confirm(args.server)?;
    }

    let name = args.name.clone().unwrap_or_else(|| {
        format!(
            "restore-{}-{}",
            args.server,
            jiff::Timestamp::now().strftime("%Y%m%d-%H%M%S")
        )
    });
    let body = json!({
        "apiVersion": "vpsnap.dev/v1alpha1",
        "kind": "VpsRestore",
        "metadata": {"name": name, "labels": {create::CREATED_BY: "kubectl-vpsnap"}},
        "spec": {
            "providerRef": {"name": provider},
            "serverId": args.server,
            "source": source.spec,
            "acknowledgeDataLoss": true,
            "snapshotBeforeRestore": args.safety_snapshot,
        },
    });
    let restore: VpsRestore = serde_json::from_value(body)
        .map_err(|e| CliError::Usage(format!("building the VpsRestore: {e}")))?;
    let api: Api<VpsRestore> = ctx.api();
    let created = api
        .create(&PostParams::default(), &restore)
        .await
        .map_err(|e| match e {
            kube::Error::Api(s) if s.code == 409 => CliError::Usage(format!(
                "vpsrestore/{name} already exists: pick another --name"
            )),
            e => CliError::kube("create vpsrestores", e),
        })?;
    let label = format!("vpsrestore/{}", created.name_any());
    if args.no_wait {
        let out = outcome(ctx, &created, &provider, &source.label);
        emit(ctx.format, &out, || {
            format!("{label} created. Follow it: kubectl vpsnap why {label}\n")
        })?;
        return Ok(Exit::Ok);
    }
    eprintln!(
        "{label} created; waiting for Succeeded (up to {})",
        wait::humanize(args.timeout)
    );
    let done = wait::until(
        &api,
        &label,
        &created.name_any(),
        args.timeout,
        |r: &VpsRestore| judge(r),
    )
    .await?;
    let out = outcome(ctx, &done, &provider, &source.label);
    let succeeded = done
        .status
        .as_ref()
        .is_some_and(|s| conditions::is_true(&s.conditions, conditions::SUCCEEDED));
    if succeeded {
        emit(ctx.format, &out, || {
            let mut text = format!(
                "{label} Succeeded: server {} is being restored from {} at the provider\n",
                args.server, source.label
            );
            if let Some(s) = &out.pre_restore_snapshot {
                text.push_str(&format!("Safety snapshot: vpssnapshot/{s}\n"));
            }
            text
        })?;
        Ok(Exit::Ok)
    } else {
        let next = explain::next_step(
            Kind::Restore,
            &done.name_any(),
            Some("False"),
            out.reason.as_deref(),
        );
        emit(ctx.format, &out, || {
            format!(
                "{label} failed: {} ({})\nNext: {next}\n",
                out.message.as_deref().unwrap_or("-"),
                out.reason.as_deref().unwrap_or("-")
            )
        })?;
        Ok(Exit::Failed)
    }
}

fn judge(r: &VpsRestore) -> Verdict<VpsRestore> {
    let Some(st) = &r.status else {
        return Verdict::Pending("waiting for the operator to pick it up".into());
    };
    let succeeded = conditions::find(&st.conditions, conditions::SUCCEEDED);
    // Stalled: it waits for something only a person can fix (e.g. the source is gone).
    let stalled = conditions::is_true(&st.conditions, conditions::STALLED);
    match (succeeded.map(|c| c.status.as_str()), st.phase) {
        (Some("True" | "False"), _) | (_, Some(RestorePhase::Failed)) => Verdict::Done(r.clone()),
        _ if stalled => Verdict::Done(r.clone()),
        _ => {
            let phase = st
                .phase
                .map(|p| format!("{p:?}"))
                .unwrap_or_else(|| "Pending".into());
            let msg = succeeded
                .map(|c| c.message.clone())
                .filter(|m| !m.is_empty());
            Verdict::Pending(match msg {
                Some(m) => format!("{phase}: {m}"),
                None => phase,
            })
        }
    }
}

async fn source(ctx: &Ctx, args: &RestoreArgs) -> Result<Source, CliError> {
    if let Some(name) = &args.from_snapshot {
        return from_object::<VpsSnapshot>(ctx, Kind::Snapshot, name, args.server).await;
    }
    if let Some(name) = &args.from_backup {
        return from_object::<VpsBackup>(ctx, Kind::Backup, name, args.server).await;
    }
    let (key, kind, id) =
        match (&args.from_snapshot_id, &args.from_backup_id) {
            (Some(id), _) => ("snapshotId", "snapshot", id),
            (_, Some(id)) => ("backupId", "backup", id),
            _ => return Err(CliError::Usage(
                "pass one of --from-snapshot, --from-backup, --from-snapshot-id, --from-backup-id"
                    .into(),
            )),
        };
    if id.is_empty() || !id.chars().all(|c| c.is_ascii_digit()) {
        return Err(CliError::Usage(format!(
            "--from-{kind}-id {id:?}: a provider id is digits only"
        )));
    }
    Ok(Source {
        spec: json!({ key: id }),
        label: format!("provider {kind} {id}"),
        provider: None,
        preview: format!(
            "  source: provider {kind} id {id} (not checked by the plugin: the operator checks it belongs to the server)\n"
        ),
        created_at: None,
    })
}

async fn from_object<K: RestorePointObject>(
    ctx: &Ctx,
    kind: Kind,
    name: &str,
    server: i64,
) -> Result<Source, CliError> {
    let api: Api<K> = ctx.api();
    let obj = api
        .get_opt(name)
        .await
        .map_err(|e| CliError::kube(&format!("get {}/{name}", kind.resource()), e))?
        .ok_or_else(|| {
            CliError::Usage(format!(
                "no {} {name:?} in namespace {}",
                kind.kind(),
                ctx.namespace
            ))
        })?;
    let label = format!("{}/{name}", kind.resource());
    if obj.server_id() != server {
        return Err(CliError::Usage(format!(
            "{label} is a {} of server {}, not {server}: restoring another server's data is not what you asked for",
            if kind == Kind::Snapshot {
                "snapshot"
            } else {
                "backup"
            },
            obj.server_id()
        )));
    }
    let st = obj.point_status();
    let ready = st.is_some_and(|s| conditions::is_true(&s.conditions, conditions::READY));
    if !ready {
        let why = st
            .and_then(|s| conditions::find(&s.conditions, conditions::READY))
            .map(|c| format!("{}: {}", c.reason, c.message))
            .unwrap_or_else(|| "no status yet".into());
        return Err(CliError::Failed(format!(
            "{label} is not Ready ({why}); only a Ready restore point can be restored"
        )));
    }
    let key = if kind == Kind::Snapshot {
        "snapshotRef"
    } else {
        "backupRef"
    };
    let preview = create::point_table(kind, &[&obj]);
    Ok(Source {
        spec: json!({ key: {"name": name} }),
        label,
        provider: Some(obj.provider_name().to_owned()),
        preview: indent(&preview),
        created_at: st.and_then(|s| s.provider_created_at.clone()),
    })
}

/// Restore points of the server newer than the source: the restore does not delete them,
/// but the data they hold is no longer on the server afterwards.
async fn newer_points(
    ctx: &Ctx,
    provider: &str,
    server: i64,
    since: Option<&str>,
) -> Result<Vec<String>, CliError> {
    let Some(since) = since.and_then(|t| t.parse::<jiff::Timestamp>().ok()) else {
        return Ok(Vec::new());
    };
    let mut out = newer_of::<VpsSnapshot>(ctx, Kind::Snapshot, provider, server, since).await;
    out.extend(newer_of::<VpsBackup>(ctx, Kind::Backup, provider, server, since).await);
    Ok(out)
}

async fn newer_of<K: RestorePointObject>(
    ctx: &Ctx,
    kind: Kind,
    provider: &str,
    server: i64,
    since: jiff::Timestamp,
) -> Vec<String> {
    // A courtesy for the preview: a Role without list on one kind still restores.
    let Ok(list) = ctx.api::<K>().list(&Default::default()).await else {
        return Vec::new();
    };
    list.into_iter()
        .filter(|o| o.provider_name() == provider && o.server_id() == server)
        .filter_map(|o| {
            let created = o.point_status()?.provider_created_at.clone()?;
            let newer = created.parse::<jiff::Timestamp>().is_ok_and(|c| c > since);
            newer.then(|| format!("{}/{} ({created})", kind.resource(), o.name_any()))
        })
        .collect()
}

fn preview(args: &RestoreArgs, provider: &str, source: &Source, newer: &[String]) -> String {
    let mut text = format!(
        "Restore server {} (provider {provider}) from {}:\n{}",
        args.server, source.label, source.preview
    );
    text.push_str(&format!(
        "This OVERWRITES ALL DATA on server {} and cannot be undone.\n",
        args.server
    ));
    if let Some(t) = &source.created_at {
        text.push_str(&format!(
            "Everything written on the server after {t} is lost.\n"
        ));
    }
    if !newer.is_empty() {
        text.push_str(
            "Newer restore points of this server stay at the provider (they are not deleted):\n",
        );
        for n in newer {
            text.push_str(&format!("  {n}\n"));
        }
    }
    if args.safety_snapshot {
        text.push_str("A safety snapshot of the server is taken first (--safety-snapshot).\n");
    } else {
        text.push_str("No safety snapshot is taken (add --safety-snapshot to take one first).\n");
    }
    text
}

/// Asks for the server id on stdin (a terminal or a pipe); anything else refuses.
fn confirm(server: i64) -> Result<(), CliError> {
    let mut err = std::io::stderr();
    let _ = write!(err, "Type the server id ({server}) to restore it: ");
    let _ = err.flush();
    let mut answer = String::new();
    let read = std::io::stdin().lock().read_line(&mut answer);
    let _ = writeln!(err);
    match read {
        Ok(n) if n > 0 && answer.trim() == server.to_string() => Ok(()),
        Ok(0) | Err(_) => Err(CliError::Failed(format!(
            "refused: no confirmation (stdin is closed). Nothing was changed. Type {server} when \
             asked, pipe it in (echo {server} | kubectl vpsnap restore ...), or pass --yes"
        ))),
        Ok(_) => Err(CliError::Failed(format!(
            "refused: {:?} is not {server}. Nothing was changed.",
            answer.trim()
        ))),
    }
}

fn outcome(ctx: &Ctx, r: &VpsRestore, provider: &str, source: &str) -> Outcome {
    let st = r.status.as_ref();
    let cond = st.and_then(|s| conditions::find(&s.conditions, conditions::SUCCEEDED));
    Outcome {
        name: r.name_any(),
        namespace: ctx.namespace.clone(),
        server_id: r.spec.server_id,
        provider: provider.to_owned(),
        source: source.to_owned(),
        phase: st.and_then(|s| s.phase).map(|p| format!("{p:?}")),
        source_provider_id: st.and_then(|s| s.source_provider_id.clone()),
        pre_restore_snapshot: st.and_then(|s| s.pre_restore_snapshot.clone()),
        reason: cond.map(|c| c.reason.clone()),
        message: cond.map(|c| c.message.clone()).filter(|m| !m.is_empty()),
    }
}

fn indent(text: &str) -> String {
    text.lines().map(|l| format!("  {l}\n")).collect()
}
