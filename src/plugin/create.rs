//! `kubectl vpsnap snapshot|backup SERVER`: create the object, optionally wait for Ready with
//! a progress line, and print the provider id — or the condition that blocks it, with what
//! occupies the server when the limit is reached.
use std::time::Duration;

use clap::Args;
use kube::api::PostParams;
use kube::{Api, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::json;

use super::blockers;
use super::connect::Ctx;
use super::output::{Table, emit};
use super::refs::Kind;
use super::wait::{self, Verdict};
use super::{CliError, DEFAULT_TIMEOUT, Exit, explain, parse_timeout, servers};
use crate::api::{
    OccupancyClass, RestorePointStatus, VpsBackup, VpsProvider, VpsSnapshot, conditions,
};

/// Label on objects this plugin creates, to find them again (`-l vpsnap.dev/created-by`).
pub const CREATED_BY: &str = "vpsnap.dev/created-by";

#[derive(Args, Debug)]
pub struct CreateArgs {
    /// Provider's server id.
    #[arg(value_parser = clap::value_parser!(i64).range(1..))]
    pub server: i64,
    /// The VpsProvider (default: the only one in the namespace).
    #[arg(long, short = 'p')]
    pub provider: Option<String>,
    /// Object name (default: `snap-SERVER-YYYYMMDD-HHMMSS` / `backup-SERVER-…`, UTC).
    #[arg(long)]
    pub name: Option<String>,
    /// Description stored at the provider.
    #[arg(long, short = 'd')]
    pub description: Option<String>,
    /// Never evict it to make room.
    #[arg(long, conflicts_with = "evictable")]
    pub pin: bool,
    /// Let garbage collection evict it when the server is full and a newer one is due.
    #[arg(long)]
    pub evictable: bool,
    /// Keep the provider data when the object is deleted (deletionPolicy: Retain).
    #[arg(long)]
    pub retain: bool,
    /// Wait until it is Ready (or blocked/failed), showing progress.
    #[arg(long, short = 'w')]
    pub wait: bool,
    /// How long --wait waits, e.g. 90s, 10m, 2h.
    #[arg(long, default_value = DEFAULT_TIMEOUT, value_parser = parse_timeout)]
    pub timeout: Duration,
}

/// What the command prints (`-o json|yaml`).
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Outcome {
    pub kind: &'static str,
    pub name: String,
    pub namespace: String,
    pub provider: String,
    pub server_id: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provider_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// LimitReached: what occupies the server and may not be evicted.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub blocked_by: Vec<String>,
}

pub async fn snapshot(ctx: &Ctx, args: CreateArgs) -> Result<Exit, CliError> {
    create::<VpsSnapshot>(ctx, args, Kind::Snapshot, "snap").await
}

pub async fn backup(ctx: &Ctx, args: CreateArgs) -> Result<Exit, CliError> {
    create::<VpsBackup>(ctx, args, Kind::Backup, "backup").await
}

/// `given`, checked to exist; else the only VpsProvider of the namespace.
pub async fn provider(ctx: &Ctx, given: Option<&str>) -> Result<String, CliError> {
    if let Some(p) = given {
        provider_exists(ctx, p).await?;
        return Ok(p.to_owned());
    }
    let list = ctx
        .api::<VpsProvider>()
        .list(&Default::default())
        .await
        .map_err(|e| CliError::kube("list vpsproviders", e))?;
    let names: Vec<String> = list.items.iter().map(ResourceExt::name_any).collect();
    match names.as_slice() {
        [one] => Ok(one.clone()),
        [] => Err(CliError::Usage(format!(
            "no VpsProvider in namespace {}: create one first, or pass -n NAMESPACE",
            ctx.namespace
        ))),
        many => Err(CliError::Usage(format!(
            "several VpsProviders in namespace {}: pass --provider (one of {})",
            ctx.namespace,
            many.join(", ")
        ))),
    }
}

pub async fn provider_exists(ctx: &Ctx, name: &str) -> Result<(), CliError> {
    match ctx.api::<VpsProvider>().get_opt(name).await {
        Ok(Some(_)) => Ok(()),
        Ok(None) => Err(CliError::Usage(format!(
            "--provider {name}: no VpsProvider {name:?} in namespace {} (kubectl get vpsp lists them)",
            ctx.namespace
        ))),
        Err(e) => Err(CliError::kube(&format!("get vpsprovider/{name}"), e)),
    }
}

/// Reads of a VpsSnapshot/VpsBackup shared by every command.
pub trait RestorePointObject:
    Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
    + Clone
    + DeserializeOwned
    + Serialize
    + std::fmt::Debug
    + Send
    + Sync
    + 'static
{
    fn point_status(&self) -> Option<&RestorePointStatus>;
    fn provider_name(&self) -> &str;
    fn server_id(&self) -> i64;
    fn pinned(&self) -> bool;
    fn evictable(&self) -> bool;
}

/// Both kinds share their spec fields and status; one impl each, spelled once.
macro_rules! restore_point_object {
    ($($kind:ty),*) => {$(
        impl RestorePointObject for $kind {
            fn point_status(&self) -> Option<&RestorePointStatus> {
                self.status.as_ref()
            }
            fn provider_name(&self) -> &str {
                &self.spec.provider_ref.name
            }
            fn server_id(&self) -> i64 {
                self.spec.server_id
            }
            fn pinned(&self) -> bool {
                self.spec.pinned
            }
            fn evictable(&self) -> bool {
                self.spec.evictable
            }
        }
    )*};
}
restore_point_object!(VpsSnapshot, VpsBackup);

/// Reasons a VpsSnapshot/VpsBackup does not get past by itself (the Argo CD health checks
/// call the same ones Degraded).
const STUCK: &[&str] = &[
    "LimitReached",
    "CredentialsInvalid",
    "SecretMissing",
    "SecretInvalid",
    "Unsupported",
    "InvalidSpec",
    "CreateRejected",
    "ServerNotFound",
    "DeadlineExceeded",
    "Evicted",
    "CreateOutcomeUnknown",
    "GoneAtProvider",
];

/// Whether a restore point is Ready, still on its way, or stuck.
pub fn judge(status: Option<&RestorePointStatus>) -> Verdict<()> {
    let Some(st) = status else {
        return Verdict::Pending("waiting for the operator to pick it up".into());
    };
    let ready = conditions::find(&st.conditions, conditions::READY);
    let stalled = conditions::find(&st.conditions, conditions::STALLED);
    if ready.is_some_and(|c| c.status == "True") {
        return Verdict::Done(());
    }
    let phase = st.phase.map(|p| p.as_str()).unwrap_or("Pending");
    if let Some(c) = ready
        && c.status == "False"
        && (STUCK.contains(&c.reason.as_str()) || stalled.is_some_and(|s| s.status == "True"))
    {
        return Verdict::Failed(format!("{phase}: {} ({})", c.message, c.reason));
    }
    let mut line = phase.to_owned();
    if let Some(ps) = &st.provider_status {
        line.push_str(&format!(", provider status {ps}"));
    }
    if let Some(c) = ready
        && !c.message.is_empty()
    {
        line.push_str(&format!(": {}", c.message));
    }
    Verdict::Pending(line)
}

fn utc_stamp() -> String {
    jiff::Timestamp::now().strftime("%Y%m%d-%H%M%S").to_string()
}

async fn create<K: RestorePointObject>(
    ctx: &Ctx,
    args: CreateArgs,
    kind: Kind,
    prefix: &str,
) -> Result<Exit, CliError> {
    let provider = provider(ctx, args.provider.as_deref()).await?;
    let name = args
        .name
        .clone()
        .unwrap_or_else(|| format!("{prefix}-{}-{}", args.server, utc_stamp()));
    let mut spec = json!({
        "providerRef": {"name": provider},
        "serverId": args.server,
        "pinned": args.pin,
        "evictable": args.evictable,
        "deletionPolicy": if args.retain { "Retain" } else { "Delete" },
    });
    if let Some(d) = &args.description {
        spec["description"] = json!(d);
    }
    let body = json!({
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
        "metadata": {"name": name, "labels": {CREATED_BY: "kubectl-vpsnap"}},
        "spec": spec,
    });
    let obj: K = serde_json::from_value(body)
        .map_err(|e| CliError::Usage(format!("building the {}: {e}", kind.kind())))?;
    let api: Api<K> = ctx.api();
    let created = api
        .create(&PostParams::default(), &obj)
        .await
        .map_err(|e| match e {
            kube::Error::Api(s) if s.code == 409 => CliError::Usage(format!(
                "{}/{name} already exists: pick another --name",
                kind.resource()
            )),
            e => CliError::kube(&format!("create {}", kind.resource()), e),
        })?;
    let label = format!("{}/{}", kind.resource(), created.name_any());
    if !args.wait {
        let out = outcome(ctx, kind, &created, &provider);
        emit(ctx.format, &out, || {
            format!(
                "{label} created (server {}, provider {provider}). Follow it: kubectl vpsnap why {label}\n",
                args.server
            )
        })?;
        return Ok(Exit::Ok);
    }
    eprintln!(
        "{label} created; waiting for Ready (up to {})",
        wait::humanize(args.timeout)
    );
    let waited = wait::until(
        &api,
        &label,
        &created.name_any(),
        args.timeout,
        |o: &K| match judge(o.point_status()) {
            Verdict::Done(()) => Verdict::Done(Ok(o.clone())),
            Verdict::Failed(why) => Verdict::Done(Err((o.clone(), why))),
            Verdict::Pending(line) => Verdict::Pending(line),
        },
    )
    .await?;
    match waited {
        Ok(obj) => {
            let out = outcome(ctx, kind, &obj, &provider);
            emit(ctx.format, &out, || {
                format!(
                    "{label} is Ready: provider id {}{}\n",
                    out.provider_id.as_deref().unwrap_or("?"),
                    out.size
                        .as_deref()
                        .map(|s| format!(", size {s}"))
                        .unwrap_or_default()
                )
            })?;
            Ok(Exit::Ok)
        }
        Err((obj, why)) => {
            let mut out = outcome(ctx, kind, &obj, &provider);
            if out.reason.as_deref() == Some("LimitReached") {
                out.blocked_by = blocked_by(
                    ctx,
                    kind,
                    &provider,
                    args.server,
                    &obj.name_any(),
                    out.message.as_deref(),
                )
                .await?;
            }
            let next =
                explain::next_step(kind, &obj.name_any(), Some("False"), out.reason.as_deref());
            emit(ctx.format, &out, || {
                let mut text = format!("{label} is not Ready: {why}\n");
                if !out.blocked_by.is_empty() {
                    text.push_str(&format!(
                        "Server {} is full; nothing on it may be evicted:\n",
                        args.server
                    ));
                    for b in &out.blocked_by {
                        text.push_str(&format!("  {b}\n"));
                    }
                }
                text.push_str(&format!("Next: {next}\n"));
                text
            })?;
            Ok(Exit::Failed)
        }
    }
}

/// What occupies the server and may not go, in words: from the published occupancy, else
/// from the declared objects the user can read plus the counts in the condition's message.
/// `me` is the blocked object itself (left out).
pub async fn blocked_by(
    ctx: &Ctx,
    kind: Kind,
    provider: &str,
    server: i64,
    me: &str,
    message: Option<&str>,
) -> Result<Vec<String>, CliError> {
    let class = if kind == Kind::Backup {
        OccupancyClass::Backup
    } else {
        OccupancyClass::Snapshot
    };
    if let Some(s) = servers::one(ctx, provider, server, class).await? {
        let standings = blockers::standings(&s, servers::resource_of(class));
        return Ok(blockers::blocking(&standings)
            .into_iter()
            .filter(|st| st.object.as_deref() != Some(format!("{}/{me}", kind.resource()).as_str()))
            .map(blockers::describe)
            .collect());
    }
    let mut out = match kind {
        Kind::Backup => declared_blockers::<VpsBackup>(ctx, kind, provider, server, me).await?,
        _ => declared_blockers::<VpsSnapshot>(ctx, kind, provider, server, me).await?,
    };
    if let Some(n) = message
        .and_then(|m| count_before(m, " foreign"))
        .filter(|n| *n > 0)
    {
        out.push(format!(
            "{n} {} not made by vpsnap: counted, never touched (their ids: kubectl vpsnap servers --server {server})",
            if n == 1 { "item" } else { "items" }
        ));
    }
    Ok(out)
}

/// The declared objects on the server that may not be evicted, from the API.
async fn declared_blockers<K: RestorePointObject>(
    ctx: &Ctx,
    kind: Kind,
    provider: &str,
    server: i64,
    me: &str,
) -> Result<Vec<String>, CliError> {
    let list = ctx
        .api::<K>()
        .list(&Default::default())
        .await
        .map_err(|e| CliError::kube(&format!("list {}s", kind.resource()), e))?;
    let on_server: Vec<K> = list
        .items
        .into_iter()
        .filter(|o| o.provider_name() == provider && o.server_id() == server && o.name_any() != me)
        // Only what exists at the provider occupies a slot.
        .filter(|o| o.point_status().is_some_and(|s| s.provider_id.is_some()))
        .collect();
    let ready = on_server
        .iter()
        .filter(|o| {
            o.point_status()
                .is_some_and(|s| s.phase == Some(crate::api::Phase::Ready))
        })
        .count();
    Ok(on_server
        .iter()
        .filter_map(|o| {
            let st = o.point_status()?;
            let why = if o.pinned() {
                "pinned"
            } else if !matches!(
                st.phase,
                Some(crate::api::Phase::Ready | crate::api::Phase::Failed)
            ) {
                "in progress"
            } else if !o.evictable() {
                "not marked evictable"
            } else if st.phase == Some(crate::api::Phase::Ready) && ready <= 1 {
                "the server's last completed restore point"
            } else {
                return None;
            };
            Some(format!(
                "{}/{} (id {}): {why}",
                kind.resource(),
                o.name_any(),
                st.provider_id.as_deref().unwrap_or("?")
            ))
        })
        .collect())
}

/// The number right before `word` in `text`, e.g. 3 in "… 3 foreign, …".
fn count_before(text: &str, word: &str) -> Option<usize> {
    let at = text.find(word)?;
    let digits: String = text[..at]
        .chars()
        .rev()
        .take_while(char::is_ascii_digit)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    digits.parse().ok()
}

fn outcome<K: RestorePointObject>(ctx: &Ctx, kind: Kind, obj: &K, provider: &str) -> Outcome {
    let st = obj.point_status();
    let ready = st.and_then(|s| conditions::find(&s.conditions, conditions::READY));
    Outcome {
        kind: kind.kind(),
        name: obj.name_any(),
        namespace: ctx.namespace.clone(),
        provider: provider.to_owned(),
        server_id: obj.server_id(),
        phase: st.and_then(|s| s.phase).map(|p| p.as_str().to_owned()),
        provider_id: st.and_then(|s| s.provider_id.clone()),
        size: st.and_then(|s| s.size.clone()),
        reason: ready.map(|c| c.reason.clone()),
        message: ready.map(|c| c.message.clone()).filter(|m| !m.is_empty()),
        blocked_by: Vec::new(),
    }
}

/// A one-row table of restore points, for `restore`'s preview.
pub fn point_table<K: RestorePointObject>(kind: Kind, items: &[&K]) -> String {
    let mut t = Table::new(&["object", "provider-id", "phase", "size", "created"]);
    for o in items {
        let st = o.point_status();
        t.row(vec![
            format!("{}/{}", kind.resource(), o.name_any()),
            super::output::or_dash(st.and_then(|s| s.provider_id.clone())),
            super::output::or_dash(st.and_then(|s| s.phase).map(|p| p.as_str())),
            super::output::or_dash(st.and_then(|s| s.size.clone())),
            super::output::or_dash(st.and_then(|s| s.provider_created_at.clone())),
        ]);
    }
    t.render()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn foreign_counts_are_read_from_the_condition() {
        let m = "server 600: limit 5 reached: 5 foreign, 0 pinned, 0 in progress, 0 not marked evictable, 0 kept as the last completed restore point; nothing may be evicted";
        assert_eq!(count_before(m, " foreign"), Some(5));
        assert_eq!(count_before("no numbers", " foreign"), None);
    }

    #[test]
    fn judge_reads_conditions() {
        use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
        let cond = |t: &str, s: &str, r: &str| Condition {
            type_: t.into(),
            status: s.into(),
            reason: r.into(),
            message: format!("{r} message"),
            observed_generation: Some(1),
            last_transition_time: Time(jiff::Timestamp::UNIX_EPOCH),
        };
        let st = |cs: Vec<Condition>| RestorePointStatus {
            conditions: cs,
            ..Default::default()
        };
        assert!(matches!(judge(None), Verdict::Pending(_)));
        assert!(matches!(
            judge(Some(&st(vec![cond("Ready", "True", "Completed")]))),
            Verdict::Done(())
        ));
        assert!(judge(Some(&st(vec![cond("Ready", "False", "LimitReached")]))).is_failed());
        assert!(
            judge(Some(&st(vec![
                cond("Ready", "False", "Evicted"),
                cond("Stalled", "False", "Evicted")
            ])))
            .is_failed()
        );
        assert!(
            judge(Some(&st(vec![
                cond("Ready", "False", "Odd"),
                cond("Stalled", "True", "Odd")
            ])))
            .is_failed()
        );
        assert!(matches!(
            judge(Some(&st(vec![cond("Ready", "False", "Creating")]))),
            Verdict::Pending(_)
        ));
    }
}
