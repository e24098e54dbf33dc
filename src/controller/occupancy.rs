//! Publishes what occupies each server as `VpsOccupancy` objects, for `kubectl vpsnap servers`
//! and `why` (they may read only the Kubernetes API).
//!
//! # Cost and bounds
//! - **Data**: only what the operator already knows from its own listings and objects
//!   ([`Source`]); publishing never calls the provider.
//! - **Size**: an account's servers are spread over `2^k` shards by a stable hash of the
//!   server id, with `k` the smallest that keeps every shard under [`SHARD_TARGET`] bytes
//!   (JSON), far below the apiserver's ~1.5 MB object limit. A server lists at most
//!   [`MAX_ITEMS`] items (`itemsOmitted` counts the rest), so one server can never outgrow
//!   a shard. 2,000 servers × (5 snapshots + 10 backups) with typical names are ~6.2 MiB in all:
//!   128 shards of ~50 KiB (measured by a unit test).
//! - **Writes**: a shard is written only when its content changed — listing times aside,
//!   which alone refresh it at most every [`REFRESH`] — and an account is looked at every
//!   [`INTERVAL`]. A fleet in churn (every shard changing, as while 10,000 objects are
//!   created) rewrites at most [`CHURN_BYTES_PER_INTERVAL`] of changed shards per interval,
//!   the least recently written first: large rewrites stalled the objects' own writes around
//!   them and took apiserver time they needed (measured with `vpsnap-bench`, README "Why
//!   targets are still missed"). While the operator is writing its objects (it made writes
//!   since the last look), changed shards wait altogether — the view yields to the work it
//!   describes — for at most [`CHURN_YIELD_MAX`] in a row. New shards are written at once.
//!   A change of the shard count rewrites every shard, so it waits until the count has held
//!   for [`RECOUNT_SETTLE`] (a growing fleet steps through several) or has waited
//!   [`RECOUNT_MAX_WAIT`]; meanwhile the old shards stand. A settled fleet costs
//!   `shards / REFRESH` writes.
//! - **Reads**: nothing is watched or cached. After a start, the namespace's occupancy
//!   objects are listed once per account to learn what is already published, so a restart
//!   rewrites nothing that is current and removes shards of an older shard count.
use std::collections::{BTreeMap, HashMap};
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use kube::{Client, Resource};
use serde_json::json;

use super::context::Context;
use super::listings::Class;
use super::snapshot_backup as sb;
use crate::api::{
    BlockedObject, OccupancyClass, Occupant, OccupantState, OwnerKind, ServerOccupancyStatus,
    VpsBackup, VpsOccupancy, VpsOccupancyStatus, VpsProvider, VpsSnapshot,
};
use crate::provider::RemoteState;

/// Field manager of every write.
pub const MANAGER: &str = "vpsnap-occupancy";
/// How often accounts are looked at (the debounce: changes within it share one write).
pub const INTERVAL: Duration = Duration::from_secs(5);
/// How stale published listing times may get before a shard is rewritten for them alone.
pub const REFRESH: Duration = Duration::from_secs(30 * 60);
/// Aim for shards at most this large (serialised JSON). Small, because one large write stalls
/// the apiserver's small ones around it (README, "Why targets are still missed").
pub const SHARD_TARGET: usize = 64 * 1024;
/// Items listed per server and class; the rest are counted in `itemsOmitted`.
pub const MAX_ITEMS: usize = 100;
/// Bytes of changed shards rewritten per account and interval when the shard count is
/// unchanged (at least one shard).
pub const CHURN_BYTES_PER_INTERVAL: usize = 128 * 1024;
/// A new shard count is written once it has held this long: a growing fleet steps through
/// several counts, and each change rewrites every shard.
pub const RECOUNT_SETTLE: Duration = Duration::from_secs(30);
/// … or once a recount has waited this long, for a fleet whose count keeps changing.
pub const RECOUNT_MAX_WAIT: Duration = Duration::from_secs(5 * 60);
/// Changed shards yield to the objects' own writes for at most this long in a row; then the
/// byte budget applies while the objects are still being written.
pub const CHURN_YIELD_MAX: Duration = Duration::from_secs(60);
/// Shards per account at most (2^10).
const MAX_SHARD_BITS: u32 = 10;

/// One provider account.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Account {
    pub namespace: String,
    pub name: String,
    /// The VpsProvider's UID: its occupancy objects are owned by it and go with it.
    pub uid: String,
}

/// Where the occupancy comes from: the operator's own index of servers. Plain data, so the
/// publisher is tested without a cluster.
pub trait Source: Send + Sync {
    fn accounts(&self) -> Vec<Account>;
    /// Every server and class of `account` the operator knows.
    fn occupancy(&self, account: &Account) -> Vec<ServerOccupancyStatus>;
    /// Writes of its objects this process has made so far (any count that grows with them).
    fn object_writes(&self) -> u64;
}

/// The operator's own view: the providers it caches and, per account, the occupancy its
/// server index derives from the cached listings (`snapshot_backup::occupancy`).
pub struct ContextSource(pub Arc<Context>);

impl Source for ContextSource {
    fn accounts(&self) -> Vec<Account> {
        let Some(store) = self.0.providers.get() else {
            return Vec::new();
        };
        let mut accounts: Vec<Account> = store
            .state()
            .iter()
            .filter_map(|p| {
                Some(Account {
                    namespace: p.metadata.namespace.clone()?,
                    name: p.metadata.name.clone()?,
                    uid: p.metadata.uid.clone()?,
                })
            })
            .collect();
        accounts.sort();
        accounts
    }

    fn occupancy(&self, account: &Account) -> Vec<ServerOccupancyStatus> {
        let key = (account.namespace.clone(), account.name.clone());
        let mut all = sb::occupancy::of_account::<VpsSnapshot>(&self.0, &key);
        all.extend(sb::occupancy::of_account::<VpsBackup>(&self.0, &key));
        all.into_iter().map(published).collect()
    }

    fn object_writes(&self) -> u64 {
        let snapshots = self.0.snapshots.get().map_or(0, |i| i.writes_made());
        let backups = self.0.backups.get().map_or(0, |i| i.writes_made());
        snapshots + backups
    }
}

/// Labels are names or descriptions at the provider: enough of them to recognise one.
const LABEL_CHARS: usize = 100;

/// The index's view of one server and class, as published.
pub fn published(o: sb::occupancy::ServerOccupancy) -> ServerOccupancyStatus {
    // Declared objects are `namespace/name`; the occupancy object lives in that namespace.
    let name = |key: &str| key.rsplit('/').next().unwrap_or(key).to_owned();
    let items = o
        .items
        .into_iter()
        .map(|i| {
            let (owner, object, pinned, evictable) = match i.owner {
                sb::occupancy::OccupantOwner::Foreign => (OwnerKind::Foreign, None, false, false),
                sb::occupancy::OccupantOwner::Automatic => {
                    (OwnerKind::Automatic, None, false, false)
                }
                sb::occupancy::OccupantOwner::Declared {
                    object,
                    pinned,
                    evictable,
                } => (OwnerKind::Declared, Some(name(&object)), pinned, evictable),
            };
            Occupant {
                id: i.id,
                label: Some(i.label.chars().take(LABEL_CHARS).collect::<String>())
                    .filter(|l| !l.is_empty()),
                provider_status: Some(i.raw_status).filter(|s| !s.is_empty()),
                state: match i.state {
                    RemoteState::Pending => OccupantState::InProgress,
                    RemoteState::Ready => OccupantState::Completed,
                    RemoteState::Failed => OccupantState::Failed,
                    RemoteState::Gone | RemoteState::Unknown => OccupantState::Unknown,
                },
                created_at: i.created_at.map(|t| t.to_string()),
                owner,
                leaving: i.leaving,
                object,
                pinned,
                evictable,
            }
        })
        .collect::<Vec<_>>();
    ServerOccupancyStatus {
        server_id: i64::try_from(o.server).unwrap_or(i64::MAX),
        class: match o.class {
            Class::Snapshot => OccupancyClass::Snapshot,
            Class::Backup => OccupancyClass::Backup,
        },
        limit: o.limit as i64,
        used: items.len() as i64,
        listed_at: Some(o.listed_at.to_string()),
        complete: o.complete,
        items,
        items_omitted: 0,
        next_evictions: o.next_evictions,
        blocked: o
            .blocked
            .into_iter()
            .map(|(object, reason)| BlockedObject {
                object: name(&object),
                reason: reason.as_str().to_owned(),
            })
            .collect(),
    }
}

/// One shard's content, ready to publish.
#[derive(Clone, Debug, PartialEq)]
pub struct Shard {
    pub index: u32,
    pub of: u32,
    pub servers: Vec<ServerOccupancyStatus>,
}

/// Object name of shard `index` of `provider`.
pub fn shard_name(provider: &str, index: u32) -> String {
    let prefix: String = provider.chars().take(240).collect();
    format!("{prefix}-{index}")
}

/// Caps `entry.items` at [`MAX_ITEMS`], keeping what matters most to a reader: declared,
/// blocking and next-evicted items before the oldest foreign ones.
pub fn bound(mut entry: ServerOccupancyStatus) -> ServerOccupancyStatus {
    if entry.items.len() <= MAX_ITEMS {
        return entry;
    }
    let keep_first = |i: &crate::api::Occupant| {
        i.owner == crate::api::OwnerKind::Declared || entry.next_evictions.contains(&i.id)
    };
    let (mut first, rest): (Vec<_>, Vec<_>) = entry.items.drain(..).partition(keep_first);
    first.truncate(MAX_ITEMS);
    let room = MAX_ITEMS - first.len();
    // The newest of the rest: the oldest foreign snapshots change least and say least.
    let skip = rest.len().saturating_sub(room);
    first.extend(rest.into_iter().skip(skip));
    first.sort_by(|a, b| {
        a.created_at
            .cmp(&b.created_at)
            .then_with(|| a.id.cmp(&b.id))
    });
    entry.items_omitted += (entry.used as usize).saturating_sub(first.len()) as i64;
    entry.items = first;
    entry
}

fn server_hash(server: i64) -> u64 {
    // FNV-1a over the id's bytes: stable across processes and versions (the std hasher is not).
    server
        .to_le_bytes()
        .iter()
        .fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
        })
}

fn size(entry: &ServerOccupancyStatus) -> usize {
    serde_json::to_vec(entry).map_or(0, |v| v.len() + 1)
}

/// Spreads an account's entries over the fewest shards (a power of two) that keeps each
/// under [`SHARD_TARGET`]; servers sorted by id within a shard. Always at least one shard,
/// so an account with no servers publishes an empty one (the reader then knows it is known).
pub fn plan(entries: Vec<ServerOccupancyStatus>) -> Vec<Shard> {
    let entries: Vec<(usize, ServerOccupancyStatus)> = entries
        .into_iter()
        .map(bound)
        .map(|e| (size(&e), e))
        .collect();
    let total: usize = entries.iter().map(|(s, _)| s).sum();
    let mut bits = 0;
    while (1usize << bits) * SHARD_TARGET < total && bits < MAX_SHARD_BITS {
        bits += 1;
    }
    loop {
        let of = 1u32 << bits;
        let mut sizes = vec![0usize; of as usize];
        for (s, e) in &entries {
            sizes[(server_hash(e.server_id) % u64::from(of)) as usize] += s;
        }
        // An unlucky hash can pile up servers: split further while a shard is twice the aim.
        if sizes.iter().all(|s| *s <= 2 * SHARD_TARGET) || bits >= MAX_SHARD_BITS {
            let mut shards: Vec<Shard> = (0..of)
                .map(|index| Shard {
                    index,
                    of,
                    servers: Vec::new(),
                })
                .collect();
            for (_, e) in entries {
                shards[(server_hash(e.server_id) % u64::from(of)) as usize]
                    .servers
                    .push(e);
            }
            for s in &mut shards {
                s.servers.sort_by_key(|e| (e.server_id, e.class));
            }
            return shards;
        }
        bits += 1;
    }
}

/// What a shard says, listing times aside: equal digests need no write.
pub fn digest(shard: &Shard) -> u64 {
    let mut h = std::hash::DefaultHasher::new();
    shard.of.hash(&mut h);
    for e in &shard.servers {
        let mut e = e.clone();
        e.listed_at = None;
        serde_json::to_string(&e).unwrap_or_default().hash(&mut h);
    }
    h.finish()
}

/// The newest listing time in the shard.
fn newest_listing(shard: &Shard) -> Option<Timestamp> {
    shard
        .servers
        .iter()
        .filter_map(|e| e.listed_at.as_deref()?.parse::<Timestamp>().ok())
        .max()
}

/// What was last published for one shard.
#[derive(Clone, Debug, PartialEq)]
struct Published {
    digest: u64,
    at: Timestamp,
    /// The shard count in the object's spec.
    of: u32,
}

/// How long a new shard count waits before it is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecountWait {
    /// The count must have held this long ([`RECOUNT_SETTLE`]) …
    pub settle: Duration,
    /// … unless some recount has waited this long ([`RECOUNT_MAX_WAIT`]).
    pub max: Duration,
}

impl Default for RecountWait {
    fn default() -> Self {
        RecountWait {
            settle: RECOUNT_SETTLE,
            max: RECOUNT_MAX_WAIT,
        }
    }
}

/// A shard count planned but not yet written (see [`RecountWait`]).
#[derive(Clone, Copy, Debug, PartialEq)]
struct PendingRecount {
    of: u32,
    /// Since when this count has been planned without a change.
    planned_since: Timestamp,
    /// Since when some recount has been waiting.
    waiting_since: Timestamp,
}

/// The shards to write now, of those `due`. When the shard count changed, all of them — the
/// plugin would otherwise see a server in an old and a new shard at once — but only once the
/// new count has settled (`pending` tracks it; until then nothing is written and the old
/// shards stand). Otherwise every shard never written, and of the others, those written
/// longest ago first (so every changing shard has its turn), up to
/// [`CHURN_BYTES_PER_INTERVAL`] and at least one.
/// Whether changed shards may be rewritten at this look.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Churn {
    /// Up to [`CHURN_BYTES_PER_INTERVAL`], those written longest ago first.
    Budget,
    /// None: the operator is writing its objects.
    Yield,
}

/// Changed shards yield while the operator made writes of its objects since the last look
/// (`busy`), for at most [`CHURN_YIELD_MAX`] in a row; `busy_since` is when that began.
fn churn(busy_since: &mut Option<Timestamp>, busy: bool, now: Timestamp) -> Churn {
    if !busy {
        *busy_since = None;
        return Churn::Budget;
    }
    let since = *busy_since.get_or_insert(now);
    if now.duration_since(since).as_secs() >= CHURN_YIELD_MAX.as_secs() as i64 {
        Churn::Budget
    } else {
        Churn::Yield
    }
}

fn to_write<'a>(
    shards: &'a [Shard],
    known: &BTreeMap<u32, Option<Published>>,
    pending: &mut Option<PendingRecount>,
    wait: RecountWait,
    churn: Churn,
    now: Timestamp,
) -> Vec<&'a Shard> {
    let last = |s: &Shard| known.get(&s.index).cloned().flatten();
    let of = shards.first().map_or(1, |s| s.of);
    let recount = known.keys().any(|i| *i >= of)
        || shards.iter().any(|s| last(s).is_some_and(|l| l.of != s.of));
    let due: Vec<(&Shard, Option<Published>)> = shards
        .iter()
        .map(|s| (s, last(s)))
        .filter(|(s, l)| due(s, l.as_ref(), now))
        .collect();
    if recount {
        if recount_waits(pending, of, wait, now) {
            return Vec::new();
        }
        return due.into_iter().map(|(s, _)| s).collect();
    }
    *pending = None;
    let (new, mut changed): (Vec<_>, Vec<_>) = due.into_iter().partition(|(_, l)| l.is_none());
    changed.sort_by_key(|(s, l)| (l.as_ref().map(|l| l.at), s.index));
    let mut budget = CHURN_BYTES_PER_INTERVAL;
    let rewrites = changed.into_iter().enumerate().take_while(|(n, (s, _))| {
        let bytes = shard_bytes(s);
        let fits = churn == Churn::Budget && (*n == 0 || bytes <= budget);
        budget = budget.saturating_sub(bytes);
        fits
    });
    new.into_iter()
        .chain(rewrites.map(|(_, c)| c))
        .map(|(s, _)| s)
        .collect()
}

/// Whether the recount to `of` shards must wait longer; `pending` keeps track of it (and is
/// cleared when it need not).
fn recount_waits(
    pending: &mut Option<PendingRecount>,
    of: u32,
    wait: RecountWait,
    now: Timestamp,
) -> bool {
    let waiting = match *pending {
        Some(p) if p.of == of => p,
        Some(p) => PendingRecount {
            of,
            planned_since: now,
            waiting_since: p.waiting_since,
        },
        None => PendingRecount {
            of,
            planned_since: now,
            waiting_since: now,
        },
    };
    let held =
        |since: Timestamp, d: Duration| now.duration_since(since).as_secs() >= d.as_secs() as i64;
    let waits = !held(waiting.planned_since, wait.settle) && !held(waiting.waiting_since, wait.max);
    *pending = waits.then_some(waiting);
    waits
}

/// A shard's size as published (its entries' JSON).
fn shard_bytes(shard: &Shard) -> usize {
    shard.servers.iter().map(size).sum()
}

/// Whether a shard must be written now.
fn due(shard: &Shard, last: Option<&Published>, now: Timestamp) -> bool {
    let Some(last) = last else { return true };
    if last.digest != digest(shard) {
        return true;
    }
    // Same content: refresh only for listing times that moved and a copy that is old.
    let stale = now.duration_since(last.at).as_secs() >= REFRESH.as_secs() as i64;
    stale && newest_listing(shard).is_some_and(|t| t > last.at)
}

fn status(shard: &Shard, now: Timestamp) -> VpsOccupancyStatus {
    let servers: std::collections::BTreeSet<i64> =
        shard.servers.iter().map(|e| e.server_id).collect();
    VpsOccupancyStatus {
        published_at: Some(now.to_string()),
        server_count: servers.len() as i64,
        full: shard.servers.iter().filter(|e| e.used >= e.limit).count() as i64,
        servers: shard.servers.clone(),
    }
}

/// Publishes every account of `source` until `shutdown` resolves.
pub async fn run(
    client: Client,
    source: Arc<dyn Source>,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let mut publisher = Publisher::new(client);
    let mut object_writes = source.object_writes();
    tokio::pin!(shutdown);
    let mut tick = tokio::time::interval(INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = &mut shutdown => return,
            _ = tick.tick() => {}
        }
        let writes = source.object_writes();
        publisher.look(writes != object_writes, Timestamp::now());
        object_writes = writes;
        let accounts = source.accounts();
        publisher.retain(&accounts);
        for account in accounts {
            // A pass over thousands of servers is plain CPU work: off the async workers.
            let (from, of) = (source.clone(), account.clone());
            let Ok(shards) = tokio::task::spawn_blocking(move || plan(from.occupancy(&of))).await
            else {
                continue;
            };
            match publisher.publish(&account, shards).await {
                Ok(0) => {}
                Ok(writes) => {
                    tracing::debug!(provider = %account.name, namespace = %account.namespace, writes, "published occupancy")
                }
                Err(e) => {
                    tracing::warn!(provider = %account.name, namespace = %account.namespace, error = %e, "could not publish occupancy")
                }
            }
        }
    }
}

/// Writes shards, remembering what it wrote (never reading it back except once per account
/// after a start).
pub struct Publisher {
    client: Client,
    /// Per account: per shard index, what is published.
    known: HashMap<Account, BTreeMap<u32, Option<Published>>>,
    /// Per account: a new shard count waiting to settle.
    pending: HashMap<Account, PendingRecount>,
    wait: RecountWait,
    /// Since when the operator has been writing its objects, look after look.
    busy_since: Option<Timestamp>,
    churn: Churn,
}

impl Publisher {
    pub fn new(client: Client) -> Self {
        Self {
            client,
            known: HashMap::new(),
            pending: HashMap::new(),
            wait: RecountWait::default(),
            busy_since: None,
            churn: Churn::Budget,
        }
    }

    /// A look begins: whether the operator made writes of its objects since the last one
    /// decides whether changed shards are rewritten at it ([`Churn`]).
    pub fn look(&mut self, busy: bool, now: Timestamp) {
        self.churn = churn(&mut self.busy_since, busy, now);
    }

    /// Waits `wait` before writing a new shard count instead of the defaults.
    pub fn with_recount_wait(mut self, wait: RecountWait) -> Self {
        self.wait = wait;
        self
    }

    /// Publishes `shards` of `account`: writes what changed, deletes shards no longer used.
    pub async fn publish(
        &mut self,
        account: &Account,
        shards: Vec<Shard>,
    ) -> Result<usize, kube::Error> {
        let api: Api<VpsOccupancy> = Api::namespaced(self.client.clone(), &account.namespace);
        let now = Timestamp::now();
        let mut writes = 0;
        if !self.known.contains_key(account) {
            // First look after a start: what is published already (also shards of an older
            // count, which must go)? One list of the namespace's few occupancy objects.
            let mut existing = BTreeMap::new();
            for o in api.list(&Default::default()).await? {
                if o.spec.provider_ref.name == account.name
                    && let Ok(index) = u32::try_from(o.spec.shard)
                    && o.metadata.name.as_deref() == Some(shard_name(&account.name, index).as_str())
                {
                    existing.insert(index, Some(seen(&o, now)));
                }
            }
            self.known.insert(account.clone(), existing);
        }
        let known = self.known.entry(account.clone()).or_default();
        let mut pending = self.pending.remove(account);
        let writing = to_write(&shards, known, &mut pending, self.wait, self.churn, now);
        if let Some(p) = pending {
            // The old shards stand, whole, until the new count is written.
            self.pending.insert(account.clone(), p);
            return Ok(0);
        }
        for shard in writing {
            let name = shard_name(&account.name, shard.index);
            let last = known.get(&shard.index).cloned().flatten();
            // The spec (identity, shard count) is written when the object is new or the
            // count changed; otherwise only the status.
            if last.as_ref().is_none_or(|l| l.of != shard.of) {
                let body = json!({
                    "apiVersion": VpsOccupancy::api_version(&()),
                    "kind": VpsOccupancy::kind(&()),
                    "metadata": {
                        "name": name,
                        "labels": {"app.kubernetes.io/managed-by": "vpsnap"},
                        "ownerReferences": [{
                            "apiVersion": VpsProvider::api_version(&()),
                            "kind": VpsProvider::kind(&()),
                            "name": account.name,
                            "uid": account.uid,
                        }],
                    },
                    "spec": {"providerRef": {"name": account.name}, "shard": shard.index, "shards": shard.of},
                });
                api.patch(
                    &name,
                    &PatchParams::apply(MANAGER).force(),
                    &Patch::Apply(&body),
                )
                .await?;
                writes += 1;
            }
            let body = json!({
                "apiVersion": VpsOccupancy::api_version(&()),
                "kind": VpsOccupancy::kind(&()),
                "status": status(shard, now),
            });
            api.patch_status(
                &name,
                &PatchParams::apply(MANAGER).force(),
                &Patch::Apply(&body),
            )
            .await?;
            writes += 1;
            known.insert(
                shard.index,
                Some(Published {
                    digest: digest(shard),
                    at: now,
                    of: shard.of,
                }),
            );
        }
        // Shards beyond the current count (the account shrank, or its shard count changed).
        let of = shards.first().map_or(1, |s| s.of);
        let stale: Vec<u32> = known.keys().copied().filter(|i| *i >= of).collect();
        for index in stale {
            match api
                .delete(
                    &shard_name(&account.name, index),
                    &DeleteParams::background(),
                )
                .await
            {
                Ok(_) => writes += 1,
                Err(kube::Error::Api(e)) if e.code == 404 => {}
                Err(e) => return Err(e),
            }
            known.remove(&index);
        }
        Ok(writes)
    }

    /// Forgets accounts that are gone (their objects go with the VpsProvider, by owner
    /// reference), so memory follows the live accounts.
    pub fn retain(&mut self, live: &[Account]) {
        self.known.retain(|a, _| live.contains(a));
        self.pending.retain(|a, _| live.contains(a));
    }
}

/// What an existing object publishes, as the publisher's own record.
fn seen(o: &VpsOccupancy, now: Timestamp) -> Published {
    let st = o.status.clone().unwrap_or_default();
    let shard = Shard {
        index: u32::try_from(o.spec.shard).unwrap_or(0),
        of: u32::try_from(o.spec.shards).unwrap_or(1),
        servers: st.servers,
    };
    Published {
        digest: digest(&shard),
        of: shard.of,
        at: st.published_at.and_then(|t| t.parse().ok()).unwrap_or(now),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::snapshot_backup::reason::Reason;
    use proptest::prelude::*;

    fn entry(server: i64, class: OccupancyClass, items: usize) -> ServerOccupancyStatus {
        ServerOccupancyStatus {
            server_id: server,
            class,
            limit: 10,
            used: items as i64,
            listed_at: Some("2026-11-23T12:00:00Z".into()),
            complete: true,
            items: (0..items)
                .map(|i| Occupant {
                    id: format!("{server}{i:03}"),
                    label: Some(format!("nightly-{server}-20261123-0200{i:02}")),
                    provider_status: Some("active".into()),
                    state: OccupantState::Completed,
                    created_at: Some(format!("2026-11-{:02}T02:00:00Z", 1 + i % 28)),
                    owner: if i % 3 == 0 {
                        OwnerKind::Foreign
                    } else {
                        OwnerKind::Declared
                    },
                    object: (i % 3 != 0).then(|| format!("nightly-{server}-20261123-0200{i:02}")),
                    leaving: false,
                    pinned: false,
                    evictable: i % 2 == 0,
                })
                .collect(),
            next_evictions: vec![format!("{server}001")],
            ..Default::default()
        }
    }

    fn fleet(servers: i64) -> Vec<ServerOccupancyStatus> {
        (0..servers)
            .flat_map(|s| {
                [
                    entry(5_000_000 + s, OccupancyClass::Snapshot, 5),
                    entry(5_000_000 + s, OccupancyClass::Backup, 10),
                ]
            })
            .collect()
    }

    #[test]
    fn two_thousand_servers_fit_in_bounded_shards() {
        let shards = plan(fleet(2000));
        let of = shards[0].of;
        assert!(of.is_power_of_two() && shards.len() == of as usize);
        let mut servers = 0;
        let (mut total, mut largest) = (0, 0);
        for s in &shards {
            let bytes = serde_json::to_vec(&status(s, Timestamp::UNIX_EPOCH))
                .unwrap()
                .len();
            total += bytes;
            largest = largest.max(bytes);
            assert!(
                bytes <= 2 * SHARD_TARGET,
                "shard {} is {bytes} bytes",
                s.index
            );
            assert!(bytes < 1_000_000, "far below the apiserver's object limit");
            servers += s.servers.len();
        }
        assert_eq!(servers, 4000, "every server and class is published once");
        eprintln!(
            "2,000 servers × 15 items: {of} shards, {} KiB in all, largest {} KiB",
            total / 1024,
            largest / 1024
        );
    }

    #[test]
    fn a_small_account_is_one_shard_and_an_empty_one_still_publishes() {
        let shards = plan(fleet(3));
        assert_eq!(shards.len(), 1);
        assert_eq!(shards[0].servers.len(), 6);
        let empty = plan(Vec::new());
        assert_eq!(
            empty,
            vec![Shard {
                index: 0,
                of: 1,
                servers: vec![]
            }]
        );
    }

    #[test]
    fn a_huge_server_is_bounded_and_keeps_what_matters() {
        let mut big = entry(7, OccupancyClass::Snapshot, 500);
        big.used = 500;
        big.next_evictions = vec!["7000".into()]; // a foreign one, oldest: kept anyway
        let bounded = bound(big);
        assert_eq!(bounded.items.len(), MAX_ITEMS);
        assert_eq!(bounded.items_omitted, 400);
        assert!(bounded.items.iter().any(|i| i.id == "7000"));
        assert_eq!(
            bounded
                .items
                .iter()
                .filter(|i| i.owner == OwnerKind::Declared)
                .count(),
            MAX_ITEMS - 1,
            "declared items come first"
        );
        let shards = plan(vec![bounded]);
        assert_eq!(shards.len(), 1);
    }

    #[test]
    fn listing_times_alone_do_not_rewrite_until_the_refresh() {
        let now: Timestamp = "2026-11-23T12:00:00Z".parse().unwrap();
        let shard = plan(fleet(2)).remove(0);
        assert!(due(&shard, None, now), "never published: write");
        let last = Published {
            digest: digest(&shard),
            at: now,
            of: shard.of,
        };
        let mut relisted = shard.clone();
        for e in &mut relisted.servers {
            e.listed_at = Some("2026-11-23T12:10:00Z".into());
        }
        let later: Timestamp = "2026-11-23T12:10:00Z".parse().unwrap();
        assert!(
            !due(&relisted, Some(&last), later),
            "only listing times moved"
        );
        let much_later: Timestamp = "2026-11-23T12:31:00Z".parse().unwrap();
        assert!(
            due(&relisted, Some(&last), much_later),
            "refresh after REFRESH"
        );
        assert!(
            !due(&shard, Some(&last), much_later),
            "nothing newer to say"
        );
        let mut changed = shard.clone();
        changed.servers[0].items.pop();
        assert!(due(&changed, Some(&last), later), "content changed: write");
    }

    fn t(m: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + m * 60).unwrap()
    }

    fn indices(w: Vec<&Shard>) -> Vec<u32> {
        w.iter().map(|s| s.index).collect()
    }

    /// Published at `at` with shard count `of`, and changed since.
    fn changed_since(at: Timestamp, of: u32) -> Option<Published> {
        Some(Published { digest: 0, at, of })
    }

    /// Shard `index` of `of` holding at least `bytes` of entries.
    fn shard_of(index: u32, of: u32, bytes: usize) -> Shard {
        let mut servers = Vec::new();
        let mut server = i64::from(index) * 1000;
        while servers.iter().map(size).sum::<usize>() < bytes {
            server += 1;
            servers.push(entry(server, OccupancyClass::Snapshot, 10));
        }
        Shard { index, of, servers }
    }

    /// `to_write` with no recount (none pending, none planned), as shard indices.
    fn written(
        shards: &[Shard],
        known: &BTreeMap<u32, Option<Published>>,
        churn: Churn,
    ) -> Vec<u32> {
        let mut pending = None;
        let w = to_write(
            shards,
            known,
            &mut pending,
            RecountWait::default(),
            churn,
            t(9),
        );
        assert_eq!(pending, None, "no recount");
        indices(w)
    }

    #[test]
    fn a_fleet_in_churn_rewrites_a_byte_budget_per_interval_oldest_first() {
        let third = CHURN_BYTES_PER_INTERVAL / 3;
        let shards: Vec<Shard> = (0..8).map(|i| shard_of(i, 8, third)).collect();
        assert!(shard_bytes(&shards[0]) < CHURN_BYTES_PER_INTERVAL / 2);

        // Never written: all at once.
        assert_eq!(written(&shards, &BTreeMap::new(), Churn::Budget).len(), 8);
        // All changed: as many of those written longest ago as the budget holds (two of a
        // third and more each), plus the one never written.
        let mut known: BTreeMap<u32, Option<Published>> = (0..7)
            .map(|i| (i, changed_since(t(8 - i as i64), 8)))
            .collect();
        assert_eq!(written(&shards, &known, Churn::Budget), vec![7, 6, 5]);
        // A shard larger than the budget still has its turn, alone.
        let big: Vec<Shard> = (0..2)
            .map(|i| shard_of(i, 2, CHURN_BYTES_PER_INTERVAL + 1))
            .collect();
        let old: BTreeMap<u32, Option<Published>> =
            (0..2).map(|i| (i, changed_since(t(i as i64), 2))).collect();
        assert_eq!(written(&big, &old, Churn::Budget), vec![0]);
        // Nothing changed: nothing written.
        for (i, s) in shards.iter().enumerate() {
            known.insert(
                i as u32,
                Some(Published {
                    digest: digest(s),
                    at: t(8),
                    of: 8,
                }),
            );
        }
        assert!(written(&shards, &known, Churn::Budget).is_empty());
    }

    #[test]
    fn changed_shards_yield_to_the_objects_own_writes_for_a_bounded_time() {
        let shards: Vec<Shard> = (0..4).map(|i| shard_of(i, 4, 100)).collect();
        let mut known: BTreeMap<u32, Option<Published>> =
            (0..3).map(|i| (i, changed_since(t(0), 4))).collect();
        // While the operator writes its objects: no rewrite of a changed shard; a shard never
        // written is still written at once.
        assert_eq!(written(&shards, &known, Churn::Yield), vec![3]);
        known.insert(3, changed_since(t(0), 4));
        assert!(written(&shards, &known, Churn::Yield).is_empty());
        assert_eq!(
            written(&shards, &known, Churn::Budget).len(),
            4,
            "small shards: all within one budget"
        );

        // The yield: from the first busy look, for CHURN_YIELD_MAX at most; a quiet look
        // ends it, and the next busy one starts it afresh.
        let at = |s: i64| Timestamp::from_second(1_800_000_000 + s).unwrap();
        let max = CHURN_YIELD_MAX.as_secs() as i64;
        let mut since = None;
        assert_eq!(churn(&mut since, false, at(0)), Churn::Budget);
        assert_eq!(churn(&mut since, true, at(5)), Churn::Yield);
        assert_eq!(churn(&mut since, true, at(5 + max - 1)), Churn::Yield);
        assert_eq!(
            churn(&mut since, true, at(5 + max)),
            Churn::Budget,
            "bounded"
        );
        assert_eq!(churn(&mut since, true, at(10 + max)), Churn::Budget);
        assert_eq!(churn(&mut since, false, at(15 + max)), Churn::Budget);
        assert_eq!(
            churn(&mut since, true, at(20 + max)),
            Churn::Yield,
            "afresh"
        );
    }

    #[test]
    fn a_new_shard_count_is_written_whole_once_it_has_settled() {
        let writes = |shards: &[Shard],
                      known: &BTreeMap<u32, Option<Published>>,
                      pending: &mut Option<PendingRecount>,
                      now: Timestamp| {
            to_write(
                shards,
                known,
                pending,
                RecountWait::default(),
                Churn::Budget,
                now,
            )
            .len()
        };
        let at = |s: i64| Timestamp::from_second(1_800_000_000 + s).unwrap();
        let settle = RECOUNT_SETTLE.as_secs() as i64;
        let shards = |of: u32| -> Vec<Shard> { (0..of).map(|i| shard_of(i, of, 100)).collect() };
        let known: BTreeMap<u32, Option<Published>> =
            (0..4).map(|i| (i, changed_since(at(0), 4))).collect();
        let mut pending = None;

        // The fleet grew from 4 to 8 shards: nothing is written until 8 has held.
        let eight = shards(8);
        assert_eq!(writes(&eight, &known, &mut pending, at(100)), 0);
        assert_eq!(
            writes(&eight, &known, &mut pending, at(100 + settle - 1)),
            0
        );
        // It grew on to 16 meanwhile: the wait starts over.
        let sixteen = shards(16);
        assert_eq!(writes(&sixteen, &known, &mut pending, at(100 + settle)), 0);
        assert_eq!(
            writes(&sixteen, &known, &mut pending, at(100 + 2 * settle - 1)),
            0
        );
        // 16 held: every shard together, and nothing waits any more.
        assert_eq!(
            writes(&sixteen, &known, &mut pending, at(100 + 2 * settle)),
            16
        );
        assert_eq!(pending, None);

        // A count that never holds still gets written after the longest wait.
        let max = RECOUNT_MAX_WAIT.as_secs() as i64;
        let mut pending = None;
        let mut now = 1_000;
        let mut written = None;
        for step in 0.. {
            let of = if step % 2 == 0 { 8 } else { 16 };
            let planned = shards(of);
            if writes(&planned, &known, &mut pending, at(now)) > 0 {
                written = Some(now);
                break;
            }
            now += settle / 2;
        }
        let written = written.expect("written at last");
        assert!(
            (1_000 + max..1_000 + max + settle).contains(&written),
            "{written}"
        );

        // An old shard beyond the count left over is a recount too.
        let mut leftover: BTreeMap<u32, Option<Published>> =
            (0..8).map(|i| (i, changed_since(at(0), 8))).collect();
        leftover.insert(9, changed_since(at(0), 16));
        let mut pending = None;
        assert_eq!(writes(&eight, &leftover, &mut pending, at(10)), 0);
        assert_eq!(writes(&eight, &leftover, &mut pending, at(10 + settle)), 8);
    }

    #[test]
    fn the_index_view_is_published_with_names_in_the_namespace() {
        use sb::occupancy::{Occupant as Seen, OccupantOwner, ServerOccupancy};
        let seen = |id: &str, owner: OccupantOwner, state: RemoteState, leaving: bool| Seen {
            id: id.into(),
            label: "x".repeat(300),
            raw_status: "completed".into(),
            state,
            created_at: Some(Timestamp::from_second(1_800_000_000).unwrap()),
            leaving,
            owner,
        };
        let o = published(ServerOccupancy {
            provider: ("fleet".into(), "acct".into()),
            server: 4211,
            class: Class::Backup,
            limit: 10,
            listed_at: Timestamp::from_second(1_800_000_100).unwrap(),
            complete: false,
            items: vec![
                seen("1", OccupantOwner::Foreign, RemoteState::Ready, false),
                seen("2", OccupantOwner::Automatic, RemoteState::Pending, false),
                seen(
                    "3",
                    OccupantOwner::Declared {
                        object: "fleet/weekly-db".into(),
                        pinned: true,
                        evictable: false,
                    },
                    RemoteState::Failed,
                    true,
                ),
            ],
            next_evictions: vec!["3".into()],
            blocked: vec![("fleet/waiting".into(), Reason::LimitReached)],
        });
        assert_eq!(
            (o.server_id, o.class, o.limit, o.used),
            (4211, OccupancyClass::Backup, 10, 3)
        );
        assert!(!o.complete);
        assert_eq!(o.listed_at.as_deref(), Some("2027-01-15T08:01:40Z"));
        assert_eq!(o.items[0].owner, OwnerKind::Foreign);
        assert_eq!(
            o.items[0].label.as_ref().map(String::len),
            Some(LABEL_CHARS)
        );
        assert_eq!(
            (o.items[1].owner, o.items[1].state),
            (OwnerKind::Automatic, OccupantState::InProgress)
        );
        let d = &o.items[2];
        assert_eq!(
            (
                d.owner,
                d.object.as_deref(),
                d.pinned,
                d.evictable,
                d.leaving,
                d.state
            ),
            (
                OwnerKind::Declared,
                Some("weekly-db"),
                true,
                false,
                true,
                OccupantState::Failed
            )
        );
        assert_eq!(
            o.blocked,
            vec![BlockedObject {
                object: "waiting".into(),
                reason: "LimitReached".into()
            }]
        );
        assert_eq!(o.next_evictions, vec!["3"]);
    }

    #[test]
    fn shard_names_are_short_enough() {
        assert_eq!(shard_name("acct", 3), "acct-3");
        assert!(shard_name(&"p".repeat(253), 1023).len() <= 253);
    }

    proptest! {
        /// A server always lands in the same shard (both classes together) for a given count.
        #[test]
        fn placement_is_stable(servers in proptest::collection::btree_set(1i64..10_000_000, 1..300)) {
            let entries: Vec<_> = servers.iter().flat_map(|s| [entry(*s, OccupancyClass::Snapshot, 2), entry(*s, OccupancyClass::Backup, 2)]).collect();
            let a = plan(entries.clone());
            let mut reversed = entries;
            reversed.reverse();
            prop_assert_eq!(&a, &plan(reversed));
            for shard in &a {
                for e in &shard.servers {
                    prop_assert_eq!(server_hash(e.server_id) % u64::from(shard.of), u64::from(shard.index));
                }
            }
        }
    }
}
