//! `kubectl vpsnap servers`: per server, what occupies it against the limit and what garbage
//! collection would evict next — read from the `VpsOccupancy` objects the operator publishes
//! (the plugin never asks the provider).
use std::collections::BTreeMap;

use clap::Args;
use serde::Serialize;

use super::blockers::{self, Standing};
use super::connect::Ctx;
use super::output::{self, Table, emit};
use super::{CliError, Exit};
use crate::api::{
    OccupancyClass, OccupantState, OwnerKind, ServerOccupancyStatus, VpsOccupancy, VpsProvider,
};

#[derive(Args, Debug)]
pub struct ServersArgs {
    /// Only this VpsProvider (default: every provider in the namespace).
    #[arg(long, short = 'p')]
    pub provider: Option<String>,
    /// Show every item on this one server.
    #[arg(long)]
    pub server: Option<i64>,
    /// Only snapshots or only backups.
    #[arg(long, value_enum)]
    pub class: Option<ClassArg>,
    /// Only servers at (or over) their limit.
    #[arg(long)]
    pub full: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ClassArg {
    Snapshot,
    Backup,
}

impl From<ClassArg> for OccupancyClass {
    fn from(c: ClassArg) -> Self {
        match c {
            ClassArg::Snapshot => OccupancyClass::Snapshot,
            ClassArg::Backup => OccupancyClass::Backup,
        }
    }
}

/// One server and class as printed (`-o json|yaml` prints a list of these).
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ServerRow {
    pub provider: String,
    #[serde(flatten)]
    pub occupancy: ServerOccupancyStatus,
    /// With `--server`: every item and why it stays or may go.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub standings: Vec<Standing>,
}

/// Every published server entry in the namespace, by provider, optionally one provider only.
pub async fn published(
    ctx: &Ctx,
    provider: Option<&str>,
) -> Result<BTreeMap<String, Vec<ServerOccupancyStatus>>, CliError> {
    let list = ctx
        .api::<VpsOccupancy>()
        .list(&Default::default())
        .await
        .map_err(|e| CliError::kube("list vpsoccupancies", e))?;
    let mut out: BTreeMap<String, Vec<ServerOccupancyStatus>> = BTreeMap::new();
    for o in list {
        let name = o.spec.provider_ref.name.clone();
        if provider.is_some_and(|p| p != name) {
            continue;
        }
        out.entry(name)
            .or_default()
            .extend(o.status.unwrap_or_default().servers);
    }
    for servers in out.values_mut() {
        servers.sort_by_key(|s| (s.server_id, s.class));
    }
    Ok(out)
}

/// One server's entry for `class`, when the operator has published it.
pub async fn one(
    ctx: &Ctx,
    provider: &str,
    server: i64,
    class: OccupancyClass,
) -> Result<Option<ServerOccupancyStatus>, CliError> {
    Ok(published(ctx, Some(provider))
        .await?
        .remove(provider)
        .unwrap_or_default()
        .into_iter()
        .find(|s| s.server_id == server && s.class == class))
}

pub fn resource_of(class: OccupancyClass) -> &'static str {
    match class {
        OccupancyClass::Snapshot => "vpssnapshot",
        OccupancyClass::Backup => "vpsbackup",
    }
}

pub async fn run(ctx: &Ctx, args: ServersArgs) -> Result<Exit, CliError> {
    if let Some(p) = &args.provider {
        super::create::provider_exists(ctx, p).await?;
    }
    let by_provider = published(ctx, args.provider.as_deref()).await?;
    let class = args.class.map(OccupancyClass::from);
    let mut rows = Vec::new();
    for (provider, servers) in by_provider {
        for s in servers {
            if args.server.is_some_and(|id| id != s.server_id)
                || class.is_some_and(|c| c != s.class)
                || (args.full && s.used < s.limit)
            {
                continue;
            }
            let standings = if args.server.is_some() {
                blockers::standings(&s, resource_of(s.class))
            } else {
                Vec::new()
            };
            rows.push(ServerRow {
                provider: provider.clone(),
                occupancy: s,
                standings,
            });
        }
    }
    if rows.is_empty() {
        let providers = ctx
            .api::<VpsProvider>()
            .list(&Default::default())
            .await
            .map_err(|e| CliError::kube("list vpsproviders", e))?;
        let hint = if providers.items.is_empty() {
            format!("no VpsProvider in namespace {}", ctx.namespace)
        } else if args.server.is_some() || args.full || class.is_some() {
            "no server matches".into()
        } else {
            "nothing published yet: the operator publishes what it has listed (VpsOccupancy \
             objects) within seconds of listing a server"
                .into()
        };
        if ctx.format == output::Format::Table {
            eprintln!("{hint}");
            return Ok(Exit::Ok);
        }
    }
    let now = jiff::Timestamp::now();
    let detail = args.server.is_some();
    emit(ctx.format, &rows, || {
        if detail {
            detail_table(&rows, now)
        } else {
            summary_table(&rows, now)
        }
    })?;
    Ok(Exit::Ok)
}

fn counts(s: &ServerOccupancyStatus) -> (usize, usize, usize, usize) {
    let mut declared = 0;
    let mut foreign = 0;
    let mut automatic = 0;
    let mut in_progress = 0;
    for i in &s.items {
        match i.owner {
            OwnerKind::Declared => declared += 1,
            OwnerKind::Foreign => foreign += 1,
            OwnerKind::Automatic => automatic += 1,
        }
        if matches!(i.state, OccupantState::InProgress | OccupantState::Unknown) {
            in_progress += 1;
        }
    }
    (declared, foreign, automatic, in_progress)
}

/// The next eviction as a person reads it: the object when vpsnap's, else the provider id.
pub fn next_eviction(s: &ServerOccupancyStatus) -> String {
    let Some(id) = s.next_evictions.first() else {
        return "-".into();
    };
    match s
        .items
        .iter()
        .find(|i| &i.id == id)
        .and_then(|i| i.object.as_ref())
    {
        Some(o) => format!("{}/{o} ({id})", resource_of(s.class)),
        None => id.clone(),
    }
}

fn listed(s: &ServerOccupancyStatus, now: jiff::Timestamp) -> String {
    let age = output::age(s.listed_at.as_deref(), now);
    if s.complete || s.listed_at.is_none() {
        age
    } else {
        format!("{age} (incomplete)")
    }
}

fn summary_table(rows: &[ServerRow], now: jiff::Timestamp) -> String {
    let mut t = Table::new(&[
        "provider",
        "server",
        "class",
        "used",
        "vpsnap",
        "foreign",
        "auto",
        "in-progress",
        "blocked",
        "next-eviction",
        "listed",
    ]);
    for r in rows {
        let s = &r.occupancy;
        let (declared, foreign, automatic, in_progress) = counts(s);
        let full = if s.used >= s.limit { " full" } else { "" };
        t.row(vec![
            r.provider.clone(),
            s.server_id.to_string(),
            s.class.as_str().into(),
            format!("{}/{}{full}", s.used, s.limit),
            declared.to_string(),
            foreign.to_string(),
            automatic.to_string(),
            in_progress.to_string(),
            s.blocked.len().to_string(),
            next_eviction(s),
            listed(s, now),
        ]);
    }
    t.render()
}

fn detail_table(rows: &[ServerRow], now: jiff::Timestamp) -> String {
    let mut out = String::new();
    for r in rows {
        let s = &r.occupancy;
        out.push_str(&format!(
            "Server {} ({} {}s): {} of {} used, listed {}\n",
            s.server_id,
            r.provider,
            s.class.as_str(),
            s.used,
            s.limit,
            listed(s, now)
        ));
        let mut t = Table::new(&[
            "id", "object", "label", "owner", "state", "created", "next", "standing",
        ]);
        for st in &r.standings {
            let owner = s
                .items
                .iter()
                .find(|i| i.id == st.id)
                .map(|i| format!("{:?}", i.owner))
                .unwrap_or_default();
            t.row(vec![
                st.id.clone(),
                output::or_dash(st.object.as_ref()),
                output::or_dash(st.label.as_ref()),
                owner,
                format!("{:?}", st.state),
                output::age(st.created_at.as_deref(), now),
                st.next_eviction.map_or("-".into(), |n| format!("#{n}")),
                st.why.clone(),
            ]);
        }
        out.push_str(&indent(&t.render()));
        if s.items_omitted > 0 {
            out.push_str(&format!(
                "  … and {} more (left out to bound the object's size)\n",
                s.items_omitted
            ));
        }
        for b in &s.blocked {
            out.push_str(&format!(
                "  waiting: {}/{} ({})\n",
                resource_of(s.class),
                b.object,
                b.reason
            ));
        }
        out.push('\n');
    }
    out
}

fn indent(text: &str) -> String {
    text.lines().map(|l| format!("  {l}\n")).collect()
}
