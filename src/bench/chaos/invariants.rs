//! The chaos invariants as one pure function over what the provider recorded, what the
//! objects said about themselves (the watch history) and what the harness asked for. Each
//! invariant is a hard zero; each violation names its object, and [`Evidence`] lists every
//! provider call made for that object with its time and the process that made it.
//!
//! Provider objects are attributed to Kubernetes objects by what the operator marks them
//! with — a snapshot's name, the `[vpsnap:<uid>]` tag of a backup's description (as sent:
//! the simulator records it even when the provider cut it) — and, failing that, by the
//! provider ids an object's status ever named. A create that nothing claims is itself a
//! violation: nobody would ever delete it.
use std::collections::{BTreeMap, HashMap, HashSet};

use jiff::Timestamp;

use super::history::{History, Tracked};
use crate::sim::{CallRecord, Caller, CreateRecord, ObjectKind, Record};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    Snapshot,
    Backup,
}

impl Kind {
    pub fn of(k: ObjectKind) -> Self {
        match k {
            ObjectKind::Snapshot => Kind::Snapshot,
            ObjectKind::Backup => Kind::Backup,
        }
    }

    pub fn crd(self) -> &'static str {
        match self {
            Kind::Snapshot => "VpsSnapshot",
            Kind::Backup => "VpsBackup",
        }
    }

    fn from_crd(kind: &str) -> Option<Self> {
        match kind {
            "VpsSnapshot" => Some(Kind::Snapshot),
            "VpsBackup" => Some(Kind::Backup),
            _ => None,
        }
    }

    fn word(self) -> &'static str {
        match self {
            Kind::Snapshot => "snapshot",
            Kind::Backup => "backup",
        }
    }
}

/// Every invariant, in the order they are printed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Invariant {
    DuplicateCreate,
    UnattributedCreate,
    LimitRefusal,
    OverLimit,
    ExtraRestoreCall,
    UnaskedRestoreCall,
    ForeignDeleted,
    PinnedDeleted,
    NotEvictableDeleted,
    RetainedDeleted,
    LastPointDeleted,
    LeftTerminal,
    RestoreMarkerErased,
    InterleavedMutations,
    NotConverged,
    LeftBehind,
    Panic,
}

impl Invariant {
    pub const ALL: [Invariant; 17] = [
        Invariant::DuplicateCreate,
        Invariant::UnattributedCreate,
        Invariant::LimitRefusal,
        Invariant::OverLimit,
        Invariant::ExtraRestoreCall,
        Invariant::UnaskedRestoreCall,
        Invariant::ForeignDeleted,
        Invariant::PinnedDeleted,
        Invariant::NotEvictableDeleted,
        Invariant::RetainedDeleted,
        Invariant::LastPointDeleted,
        Invariant::LeftTerminal,
        Invariant::RestoreMarkerErased,
        Invariant::InterleavedMutations,
        Invariant::NotConverged,
        Invariant::LeftBehind,
        Invariant::Panic,
    ];

    pub fn title(self) -> &'static str {
        match self {
            Invariant::DuplicateCreate => "duplicate provider creates (one object, two creates)",
            Invariant::UnattributedCreate => "provider creates no object claims (by marker or id)",
            Invariant::LimitRefusal => "creates the provider refused for its limit",
            Invariant::OverLimit => "servers that exceeded a limit (high-water > limit)",
            Invariant::ExtraRestoreCall => {
                "restore calls (accepted or refused) beyond one per VpsRestore"
            }
            Invariant::UnaskedRestoreCall => "restore calls no VpsRestore asked for",
            Invariant::ForeignDeleted => "foreign objects deleted",
            Invariant::PinnedDeleted => "pinned objects deleted (deletion not asked)",
            Invariant::NotEvictableDeleted => "objects not marked evictable evicted",
            Invariant::RetainedDeleted => "provider objects of Retain objects deleted",
            Invariant::LastPointDeleted => "last completed restore point of a server deleted",
            Invariant::LeftTerminal => {
                "objects that left Evicted/Failed (restores: Succeeded/Failed) unasked"
            }
            Invariant::RestoreMarkerErased => "VpsRestore restoreRequestedAt markers erased",
            Invariant::InterleavedMutations => {
                "provider changes sent by a process after another had taken over"
            }
            Invariant::NotConverged => "objects not converged at the end",
            Invariant::LeftBehind => "provider objects left behind by deleted objects",
            Invariant::Panic => "operator panics",
        }
    }
}

/// `VpsSnapshot/s-12`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectRef {
    pub kind: String,
    pub name: String,
}

impl std::fmt::Display for ObjectRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.kind, self.name)
    }
}

/// One violation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    pub invariant: Invariant,
    /// What it adds to the invariant's count.
    pub count: u64,
    pub object: Option<ObjectRef>,
    pub detail: String,
}

pub struct Limits {
    pub snapshots: usize,
    pub backups: usize,
}

/// Whether provider object (kind, id), created at the given time, was a completed restore
/// point at the second time.
pub type Completed<'a> = &'a dyn Fn(Kind, u64, Timestamp, Timestamp) -> bool;

pub struct Inputs<'a> {
    pub record: &'a Record,
    /// Every API request in arrival order (`SimHandle::call_log`).
    pub calls: &'a [CallRecord],
    pub history: &'a History,
    /// When the harness deleted the objects it declared, by kind and name.
    pub deleted_by_harness: &'a HashMap<(Kind, String), Timestamp>,
    pub completed: Completed<'a>,
    pub limits: Limits,
}

/// The provider-side name the operator gives a snapshot without `spec.snapshotName`: the
/// object name in the provider's alphabet (48 characters at most) and the first 8
/// characters of its UID. The harness keeps its own copy of the rule so that its oracle
/// shares no code with the operator; objects whose status recorded an id are attributed
/// by that id as well.
pub fn derived_snapshot_name(name: &str, uid: &str) -> String {
    let name: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .take(48)
        .collect();
    let uid: String = uid.chars().filter(|c| *c != '-').take(8).collect();
    format!("{name}-{uid}")
}

/// The `[vpsnap:…]` tag of a backup description, if it is there whole.
pub fn backup_tag(description: &str) -> Option<&str> {
    let start = description.find("[vpsnap:")?;
    let end = start + description[start..].find(']')?;
    Some(&description[start..=end])
}

/// The marker a provider object carries: its name (snapshots) or its tag (backups).
fn provider_marker(kind: Kind, name: Option<&str>, description: Option<&str>) -> Option<String> {
    match kind {
        Kind::Snapshot => name.filter(|n| !n.is_empty()).map(str::to_string),
        Kind::Backup => description.and_then(backup_tag).map(str::to_string),
    }
}

fn create_marker(c: &CreateRecord) -> Option<String> {
    let kind = Kind::of(c.kind);
    provider_marker(kind, c.name.as_deref(), c.requested_description.as_deref())
        .or_else(|| provider_marker(kind, c.name.as_deref(), c.description.as_deref()))
}

/// The instance name in a `vpsnap/<version> (<instance>)` User-Agent.
pub fn instance(caller: &Caller) -> String {
    match caller.user_agent.as_deref() {
        None => "-".into(),
        Some(ua) => match (ua.find('('), ua.rfind(')')) {
            (Some(a), Some(b)) if a < b => ua[a + 1..b].to_string(),
            _ => ua.to_string(),
        },
    }
}

/// Which object each provider object belongs to.
pub struct Attribution<'a> {
    objects: Vec<&'a Tracked>,
    by_marker: HashMap<(Kind, String), usize>,
    by_status_id: HashMap<(Kind, String), usize>,
    /// Provider (kind, id) → object, from creates and statuses.
    by_id: HashMap<(Kind, u64), usize>,
    /// Per create record (same order): its object.
    create_owner: Vec<Option<usize>>,
}

impl<'a> Attribution<'a> {
    pub fn new(record: &Record, history: &'a History) -> Self {
        let objects: Vec<&Tracked> = history
            .objects()
            .filter(|t| Kind::from_crd(&t.kind).is_some())
            .collect();
        let mut by_marker = HashMap::new();
        let mut by_status_id = HashMap::new();
        for (i, t) in objects.iter().enumerate() {
            let kind = Kind::from_crd(&t.kind).unwrap_or(Kind::Snapshot);
            let marker = match kind {
                Kind::Snapshot => t
                    .snapshot_name
                    .clone()
                    .unwrap_or_else(|| derived_snapshot_name(&t.name, &t.uid)),
                Kind::Backup => format!("[vpsnap:{}]", t.uid),
            };
            by_marker.insert((kind, marker), i);
            for id in &t.provider_ids {
                by_status_id.insert((kind, id.clone()), i);
            }
        }
        let mut a = Self {
            objects,
            by_marker,
            by_status_id,
            by_id: HashMap::new(),
            create_owner: Vec::new(),
        };
        a.create_owner = record
            .creates
            .iter()
            .map(|c| {
                if c.foreign {
                    None
                } else {
                    a.owner_of_create(c)
                }
            })
            .collect();
        for (c, owner) in record.creates.iter().zip(&a.create_owner) {
            if let Some(o) = owner {
                a.by_id.insert((Kind::of(c.kind), c.id), *o);
            }
        }
        for ((kind, id), o) in &a.by_status_id {
            if let Ok(id) = id.parse::<u64>() {
                a.by_id.entry((*kind, id)).or_insert(*o);
            }
        }
        a
    }

    fn owner_of_create(&self, c: &CreateRecord) -> Option<usize> {
        let kind = Kind::of(c.kind);
        create_marker(c)
            .and_then(|m| self.by_marker.get(&(kind, m)).copied())
            .or_else(|| self.by_status_id.get(&(kind, c.id.to_string())).copied())
    }

    pub fn object(&self, i: usize) -> &'a Tracked {
        self.objects[i]
    }

    fn object_ref(&self, i: usize) -> ObjectRef {
        let t = self.objects[i];
        ObjectRef {
            kind: t.kind.clone(),
            name: t.name.clone(),
        }
    }

    pub fn owner(&self, kind: Kind, id: u64) -> Option<usize> {
        self.by_id.get(&(kind, id)).copied()
    }

    fn owner_by_marker(&self, kind: Kind, name: Option<&str>, desc: Option<&str>) -> Option<usize> {
        provider_marker(kind, name, desc).and_then(|m| self.by_marker.get(&(kind, m)).copied())
    }
}

/// Checks every invariant computed from the provider's record and the watch history (the
/// caller adds convergence, leftovers and panics, which need the cluster and the logs).
pub fn check(inputs: &Inputs<'_>) -> Vec<Finding> {
    let record = inputs.record;
    let attribution = Attribution::new(record, inputs.history);
    let mut out = Vec::new();
    creates(record, &attribution, &mut out);
    limits(inputs, &attribution, &mut out);
    restores(inputs, &attribution, &mut out);
    deletions(inputs, &attribution, &mut out);
    // One finding per object: a flapping object is one broken promise, its evidence shows
    // every flap.
    let mut exits: BTreeMap<ObjectRef, Vec<String>> = BTreeMap::new();
    for exit in inputs.history.terminal_exits() {
        exits
            .entry(ObjectRef {
                kind: exit.kind,
                name: exit.name,
            })
            .or_default()
            .push(format!("{} → {} at {}", exit.from, exit.to, exit.at));
    }
    for (object, list) in exits {
        let more = match list.len() {
            1 => String::new(),
            n => format!(" (and {} more times)", n - 1),
        };
        out.push(Finding {
            invariant: Invariant::LeftTerminal,
            count: 1,
            object: Some(object),
            detail: format!("{}{more}", list[0]),
        });
    }
    interleaved(
        inputs.calls,
        &call_objects(record, inputs.history, &attribution),
        &mut out,
    );
    for (name, at) in inputs.history.erased_restore_markers() {
        out.push(Finding {
            invariant: Invariant::RestoreMarkerErased,
            count: 1,
            object: Some(ObjectRef {
                kind: "VpsRestore".into(),
                name,
            }),
            detail: format!("restoreRequestedAt gone at {at}"),
        });
    }
    out
}

/// Whether an endpoint key of the simulator's call log changes something at the provider.
fn mutates(endpoint: &str) -> bool {
    [".create", ".delete", ".restore", ".edit"]
        .iter()
        .any(|suffix| endpoint.ends_with(suffix))
}

/// Fencing, seen from the provider: once a process has sent its first change after another
/// one, the earlier one must never send a change again (each incarnation has its own name,
/// and one that lost the lease must exit). Timing-free: it reads only the order of arrival.
fn interleaved(calls: &[CallRecord], objects: &HashMap<u64, ObjectRef>, out: &mut Vec<Finding>) {
    let mut current: Option<(String, u64, Timestamp)> = None;
    let mut retired: HashMap<String, (String, Timestamp)> = HashMap::new();
    for c in calls.iter().filter(|c| mutates(&c.endpoint)) {
        let who = instance(&Caller {
            call: Some(c.n),
            user_agent: c.user_agent.clone(),
        });
        if let Some((successor, since)) = retired.get(&who) {
            out.push(Finding {
                invariant: Invariant::InterleavedMutations,
                count: 1,
                object: objects.get(&c.n).cloned(),
                detail: format!(
                    "call {} {} by {who} at {}, after {successor} took over with its first change at {since}",
                    c.n, c.endpoint, c.at
                ),
            });
            continue;
        }
        match &current {
            Some((prev, _, _)) if *prev == who => {}
            _ => {
                if let Some((prev, _, _)) = current.take() {
                    retired.insert(prev, (who.clone(), c.at));
                }
                current = Some((who, c.n, c.at));
            }
        }
    }
}

/// The object each recorded create, delete and restore call was for, by call number.
fn call_objects(
    record: &Record,
    history: &History,
    a: &Attribution<'_>,
) -> HashMap<u64, ObjectRef> {
    let mut out = HashMap::new();
    for (c, owner) in record.creates.iter().zip(&a.create_owner) {
        if let (Some(n), Some(o)) = (c.caller.call, owner) {
            out.insert(n, a.object_ref(*o));
        }
    }
    for d in &record.deletes {
        if let (Some(n), Some(o)) = (d.caller.call, a.owner(Kind::of(d.kind), d.id)) {
            out.insert(n, a.object_ref(o));
        }
    }
    for r in &record.limit_refusals {
        let owner = a.owner_by_marker(
            Kind::of(r.kind),
            r.name.as_deref(),
            r.description.as_deref(),
        );
        if let (Some(n), Some(o)) = (r.caller.call, owner) {
            out.insert(n, a.object_ref(o));
        }
    }
    for t in history.objects().filter(|t| t.kind == "VpsRestore") {
        let Some((kind, ids)) = restore_source_ids(t, history) else {
            continue;
        };
        for r in &record.restores {
            if let Some(n) = r.caller.call
                && Kind::of(r.kind) == kind
                && ids.contains(&r.object_id)
            {
                out.insert(
                    n,
                    ObjectRef {
                        kind: t.kind.clone(),
                        name: t.name.clone(),
                    },
                );
            }
        }
    }
    out
}

fn creates(record: &Record, a: &Attribution<'_>, out: &mut Vec<Finding>) {
    let mut per_object: BTreeMap<usize, Vec<&CreateRecord>> = BTreeMap::new();
    let mut unclaimed: BTreeMap<(Kind, String), Vec<&CreateRecord>> = BTreeMap::new();
    for (c, owner) in record.creates.iter().zip(&a.create_owner) {
        if c.foreign {
            continue;
        }
        match owner {
            Some(o) => per_object.entry(*o).or_default().push(c),
            None => {
                let marker = create_marker(c).unwrap_or_default();
                unclaimed
                    .entry((Kind::of(c.kind), marker))
                    .or_default()
                    .push(c);
                out.push(Finding {
                    invariant: Invariant::UnattributedCreate,
                    count: 1,
                    object: None,
                    detail: describe_create(c),
                });
            }
        }
    }
    for (o, list) in per_object {
        if list.len() > 1 {
            out.push(Finding {
                invariant: Invariant::DuplicateCreate,
                count: list.len() as u64 - 1,
                object: Some(a.object_ref(o)),
                detail: format!("{} creates: {}", list.len(), ids(&list)),
            });
        }
    }
    for ((kind, marker), list) in unclaimed {
        if list.len() > 1 && !marker.is_empty() {
            out.push(Finding {
                invariant: Invariant::DuplicateCreate,
                count: list.len() as u64 - 1,
                object: None,
                detail: format!(
                    "{} {} creates marked {marker}: {}",
                    list.len(),
                    kind.word(),
                    ids(&list)
                ),
            });
        }
    }
}

fn ids(list: &[&CreateRecord]) -> String {
    list.iter()
        .map(|c| format!("{} by {} at {}", c.id, instance(&c.caller), c.at))
        .collect::<Vec<_>>()
        .join(", ")
}

fn describe_create(c: &CreateRecord) -> String {
    let what = match (&c.name, &c.requested_description, &c.description) {
        (Some(n), _, _) => format!("name {n:?}"),
        (None, Some(d), _) | (None, None, Some(d)) => format!("description {d:?}"),
        (None, None, None) => "no description".into(),
    };
    format!(
        "{} {} on server {} ({what}) by {} at {}",
        Kind::of(c.kind).word(),
        c.id,
        c.server,
        instance(&c.caller),
        c.at
    )
}

fn limits(inputs: &Inputs<'_>, a: &Attribution<'_>, out: &mut Vec<Finding>) {
    for r in &inputs.record.limit_refusals {
        let kind = Kind::of(r.kind);
        out.push(Finding {
            invariant: Invariant::LimitRefusal,
            count: 1,
            object: a
                .owner_by_marker(kind, r.name.as_deref(), r.description.as_deref())
                .map(|o| a.object_ref(o)),
            detail: format!(
                "{} create on server {} refused (limit {}) by {} at {}",
                kind.word(),
                r.server,
                r.limit,
                instance(&r.caller),
                r.at
            ),
        });
    }
    for (server, s) in &inputs.record.servers {
        if s.snapshots_high_water > inputs.limits.snapshots
            || s.backups_high_water > inputs.limits.backups
        {
            out.push(Finding {
                invariant: Invariant::OverLimit,
                count: 1,
                object: None,
                detail: format!(
                    "server {server}: {} snapshots (limit {}), {} backups (limit {}) at once",
                    s.snapshots_high_water,
                    inputs.limits.snapshots,
                    s.backups_high_water,
                    inputs.limits.backups
                ),
            });
        }
    }
}

/// The provider (kind, ids) a VpsRestore restores from: its own `sourceProviderId` and
/// every id its source object's status named.
fn restore_source_ids(t: &Tracked, history: &History) -> Option<(Kind, HashSet<u64>)> {
    let (source_kind, source_name) = t.source_ref.as_ref()?;
    let kind = Kind::from_crd(source_kind)?;
    let mut ids: HashSet<u64> = t
        .provider_ids
        .iter()
        .filter_map(|i| i.parse().ok())
        .collect();
    for s in history
        .objects()
        .filter(|s| &s.kind == source_kind && &s.name == source_name)
    {
        ids.extend(s.provider_ids.iter().filter_map(|i| i.parse::<u64>().ok()));
    }
    Some((kind, ids))
}

fn restores(inputs: &Inputs<'_>, _a: &Attribution<'_>, out: &mut Vec<Finding>) {
    let record = inputs.record;
    let mut claimed = vec![false; record.restores.len()];
    for t in inputs.history.objects().filter(|t| t.kind == "VpsRestore") {
        let Some((kind, ids)) = restore_source_ids(t, inputs.history) else {
            continue;
        };
        let mut calls = Vec::new();
        for (i, r) in record.restores.iter().enumerate() {
            if Kind::of(r.kind) == kind && ids.contains(&r.object_id) {
                claimed[i] = true;
                calls.push(r);
            }
        }
        if calls.len() > 1 {
            out.push(Finding {
                invariant: Invariant::ExtraRestoreCall,
                count: calls.len() as u64 - 1,
                object: Some(ObjectRef {
                    kind: t.kind.clone(),
                    name: t.name.clone(),
                }),
                detail: format!(
                    "{} restore calls: {}",
                    calls.len(),
                    calls
                        .iter()
                        .map(|r| format!(
                            "{} by {} at {}",
                            if r.accepted { "accepted" } else { "refused" },
                            instance(&r.caller),
                            r.at
                        ))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            });
        }
    }
    for (r, claimed) in record.restores.iter().zip(claimed) {
        if !claimed {
            out.push(Finding {
                invariant: Invariant::UnaskedRestoreCall,
                count: 1,
                object: None,
                detail: format!(
                    "restore from {} {} by {} at {} ({})",
                    Kind::of(r.kind).word(),
                    r.object_id,
                    instance(&r.caller),
                    r.at,
                    if r.accepted { "accepted" } else { "refused" }
                ),
            });
        }
    }
}

fn deletions(inputs: &Inputs<'_>, a: &Attribution<'_>, out: &mut Vec<Finding>) {
    let record = inputs.record;
    let created: HashMap<(Kind, u64), &CreateRecord> = record
        .creates
        .iter()
        .map(|c| ((Kind::of(c.kind), c.id), c))
        .collect();
    let deleted_seq: HashMap<(Kind, u64), u64> = record
        .deletes
        .iter()
        .map(|d| ((Kind::of(d.kind), d.id), d.seq))
        .collect();
    for d in &record.deletes {
        let kind = Kind::of(d.kind);
        let by = format!("by {} at {}", instance(&d.caller), d.at);
        if d.foreign {
            out.push(Finding {
                invariant: Invariant::ForeignDeleted,
                count: 1,
                object: None,
                detail: format!("{} {} on server {} {by}", kind.word(), d.id, d.server),
            });
            continue;
        }
        let Some(o) = a.owner(kind, d.id) else {
            continue;
        };
        let t = a.object(o);
        let asked_at = inputs
            .deleted_by_harness
            .get(&(kind, t.name.clone()))
            .copied()
            .or(t.deletion_requested);
        // An object marked Evicted before the call lost its provider object to GC, which
        // it allowed: a deletion asked later only lets the eviction finish.
        let evicted = t
            .observations
            .iter()
            .any(|o| o.phase.as_deref() == Some("Evicted") && o.at <= d.at);
        let asked = !evicted && asked_at.is_some_and(|at| at <= d.at);
        let mut flag = |invariant, what: &str| {
            out.push(Finding {
                invariant,
                count: 1,
                object: Some(a.object_ref(o)),
                detail: format!("{what}: {} {} deleted {by}", kind.word(), d.id),
            });
        };
        if asked {
            if t.retain {
                flag(Invariant::RetainedDeleted, "deletionPolicy Retain");
            }
            continue;
        }
        if t.pinned {
            flag(Invariant::PinnedDeleted, "pinned");
        }
        if !t.evictable {
            flag(Invariant::NotEvictableDeleted, "not evictable");
        }
        // The last completed restore point of a server is never evicted.
        let Some(c) = created.get(&(kind, d.id)) else {
            continue;
        };
        if !(inputs.completed)(kind, d.id, c.at, d.at) {
            continue;
        }
        let others = created.values().any(|other| {
            Kind::of(other.kind) == kind
                && other.id != d.id
                && other.server == d.server
                && other.seq < d.seq
                && deleted_seq
                    .get(&(kind, other.id))
                    .is_none_or(|s| *s > d.seq)
                && (inputs.completed)(kind, other.id, other.at, d.at)
        });
        if !others {
            flag(
                Invariant::LastPointDeleted,
                "the server's last completed restore point",
            );
        }
    }
}

/// Provider calls and status changes of one object, in time order, for the report.
pub struct Evidence<'a> {
    record: &'a Record,
    history: &'a History,
    attribution: Attribution<'a>,
}

impl<'a> Evidence<'a> {
    pub fn new(record: &'a Record, history: &'a History) -> Self {
        Self {
            record,
            history,
            attribution: Attribution::new(record, history),
        }
    }

    /// Every provider call for `object` (restores: for its source) and every change of its
    /// status, each with its time and, for calls, the process that made it.
    pub fn lines(&self, object: &ObjectRef) -> Vec<String> {
        let mut lines: Vec<(Timestamp, String)> = Vec::new();
        let Some(t) = self
            .history
            .objects()
            .find(|t| t.kind == object.kind && t.name == object.name)
        else {
            return vec![format!("(never seen by the watch: {object})")];
        };
        let mut ids: HashSet<(Kind, u64)> = HashSet::new();
        if let Some(kind) = Kind::from_crd(&t.kind) {
            for (c, owner) in self
                .record
                .creates
                .iter()
                .zip(&self.attribution.create_owner)
            {
                let mine = owner.is_some_and(|o| {
                    let me = self.attribution.object(o);
                    me.uid == t.uid && me.kind == t.kind
                });
                if mine {
                    ids.insert((kind, c.id));
                    let mut flags = Vec::new();
                    if c.response_lost {
                        flags.push("answer lost".to_string());
                    }
                    if let Some(ms) = c.answer_held_ms {
                        flags.push(format!("answer held {ms} ms"));
                    }
                    if c.requested_description.is_some() {
                        flags.push(format!("description cut to {:?}", c.description));
                    }
                    lines.push((
                        c.at,
                        format!(
                            "create {} {} on server {} by {}{}",
                            kind.word(),
                            c.id,
                            c.server,
                            instance(&c.caller),
                            if flags.is_empty() {
                                String::new()
                            } else {
                                format!(" ({})", flags.join(", "))
                            }
                        ),
                    ));
                }
            }
            ids.extend(
                t.provider_ids
                    .iter()
                    .filter_map(|i| i.parse().ok())
                    .map(|i| (kind, i)),
            );
            for r in &self.record.limit_refusals {
                let owner = self.attribution.owner_by_marker(
                    Kind::of(r.kind),
                    r.name.as_deref(),
                    r.description.as_deref(),
                );
                if owner.is_some_and(|o| self.attribution.object(o).uid == t.uid) {
                    lines.push((
                        r.at,
                        format!(
                            "create refused for the limit ({}) on server {} by {}",
                            r.limit,
                            r.server,
                            instance(&r.caller)
                        ),
                    ));
                }
            }
        }
        if let Some((kind, source)) = restore_source_ids(t, self.history) {
            ids.extend(source.into_iter().map(|i| (kind, i)));
        }
        for d in &self.record.deletes {
            if ids.contains(&(Kind::of(d.kind), d.id)) {
                lines.push((
                    d.at,
                    format!(
                        "delete {} {} by {}",
                        Kind::of(d.kind).word(),
                        d.id,
                        instance(&d.caller)
                    ),
                ));
            }
        }
        for r in &self.record.restores {
            if ids.contains(&(Kind::of(r.kind), r.object_id)) {
                lines.push((
                    r.at,
                    format!(
                        "restore from {} {} by {}: {}",
                        Kind::of(r.kind).word(),
                        r.object_id,
                        instance(&r.caller),
                        if r.accepted {
                            "accepted".to_string()
                        } else {
                            format!("refused ({})", r.reason)
                        }
                    ),
                ));
            }
        }
        for o in &t.observations {
            lines.push((
                o.at,
                format!(
                    "status: phase {}, reason {}, provider id {}{}{}",
                    o.phase.as_deref().unwrap_or("-"),
                    o.reason.as_deref().unwrap_or("-"),
                    o.provider_id.as_deref().unwrap_or("-"),
                    if o.restore_marker {
                        ", restore requested"
                    } else {
                        ""
                    },
                    if o.terminating { ", terminating" } else { "" }
                ),
            ));
        }
        if let Some(at) = t.deletion_requested {
            lines.push((at, "deletion requested (deletionTimestamp)".into()));
        }
        if let Some(at) = t.gone_at {
            lines.push((at, "gone from the cluster (finalizers released)".into()));
        }
        // Stable: calls recorded at the same instant keep their recorded order.
        lines.sort_by_key(|(at, _)| *at);
        lines
            .into_iter()
            .map(|(at, line)| format!("{at}  {line}"))
            .collect()
    }
}

/// Provider objects still present (not deleting) whose object was deleted with
/// `deletionPolicy: Delete` and is gone from the cluster.
pub fn left_behind(
    record: &Record,
    history: &History,
    present: &[(Kind, u64)],
    deleted_by_harness: &HashMap<(Kind, String), Timestamp>,
) -> Vec<Finding> {
    let a = Attribution::new(record, history);
    let mut out = Vec::new();
    for &(kind, id) in present {
        let Some(o) = a.owner(kind, id) else {
            continue;
        };
        let t = a.object(o);
        let asked = deleted_by_harness.contains_key(&(kind, t.name.clone()))
            || t.deletion_requested.is_some();
        if asked && t.gone && !t.retain {
            out.push(Finding {
                invariant: Invariant::LeftBehind,
                count: 1,
                object: Some(a.object_ref(o)),
                detail: format!("{} {id} still at the provider", kind.word()),
            });
        }
    }
    out
}

/// Objects shown with their evidence per invariant; further ones are only named.
const SHOWN_OBJECTS: usize = 8;
/// Findings without an object shown per invariant.
const SHOWN_PLAIN: usize = 20;
/// Evidence lines shown per object: the first and the last half of this.
const SHOWN_LINES: usize = 40;

/// The violations, invariant by invariant: each object once, with what broke and its
/// evidence (long histories cut in the middle).
pub fn render(findings: &[Finding], record: &Record, history: &History) -> String {
    let evidence = Evidence::new(record, history);
    let mut out = String::new();
    for invariant in Invariant::ALL {
        let list: Vec<&Finding> = findings
            .iter()
            .filter(|f| f.invariant == invariant)
            .collect();
        if list.is_empty() {
            continue;
        }
        let total: u64 = list.iter().map(|f| f.count).sum();
        out.push_str(&format!("\n{}: {total}\n", invariant.title()));
        let plain: Vec<&&Finding> = list.iter().filter(|f| f.object.is_none()).collect();
        for f in plain.iter().take(SHOWN_PLAIN) {
            out.push_str(&format!("  - {}\n", f.detail));
        }
        if plain.len() > SHOWN_PLAIN {
            out.push_str(&format!("  … and {} more\n", plain.len() - SHOWN_PLAIN));
        }
        let mut objects: Vec<(&ObjectRef, Vec<&str>)> = Vec::new();
        for f in &list {
            if let Some(o) = &f.object {
                match objects.iter_mut().find(|(seen, _)| *seen == o) {
                    Some((_, details)) => details.push(&f.detail),
                    None => objects.push((o, vec![&f.detail])),
                }
            }
        }
        for (o, details) in objects.iter().take(SHOWN_OBJECTS) {
            out.push_str(&format!("  - {o}: {}\n", details.join("; ")));
            let lines = evidence.lines(o);
            let cut = lines.len() > SHOWN_LINES;
            for (i, line) in lines.iter().enumerate() {
                let head = i < SHOWN_LINES / 2;
                let tail = i >= lines.len().saturating_sub(SHOWN_LINES / 2);
                if !cut || head || tail {
                    out.push_str(&format!("      {line}\n"));
                } else if i == SHOWN_LINES / 2 {
                    out.push_str(&format!("      … {} lines …\n", lines.len() - SHOWN_LINES));
                }
            }
        }
        if objects.len() > SHOWN_OBJECTS {
            let rest: Vec<String> = objects[SHOWN_OBJECTS..]
                .iter()
                .map(|(o, _)| o.to_string())
                .collect();
            out.push_str(&format!("  - also: {}\n", rest.join(", ")));
        }
    }
    out
}

/// Counts per invariant (every invariant present, zero or not).
pub fn counts(findings: &[Finding]) -> BTreeMap<Invariant, u64> {
    let mut counts: BTreeMap<Invariant, u64> = Invariant::ALL.iter().map(|i| (*i, 0)).collect();
    for f in findings {
        *counts.entry(f.invariant).or_default() += f.count;
    }
    counts
}

#[cfg(test)]
mod tests;
