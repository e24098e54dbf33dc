//! Indexes fed by the watches: per provider server, the declared objects of one kind with the
//! latest state this process knows — its own writes included — and the unfinished restores
//! that still need their source.
//!
//! The watch cache lags behind this process's own writes. A decision made from a copy older
//! than our last write could repeat it or step the status back, so every successful write is
//! recorded here as an overlay over the cached copy. The overlay stands until the watch
//! delivers a version that is not one of those it is known to supersede (the watch caught
//! up, or someone else wrote since) — resource versions are only ever compared for equality.
//! Every write is conditional on the version it saw, so the written version directly follows
//! it: an answer that arrives after the watch already delivered the write (and maybe more)
//! finds a cached version it does not know as older, and leaves no overlay.
//!
//! Writes go out on other connections than the watch, so the watch can deliver a write before
//! its answer arrives. While a write of an object is in flight, the versions the watch delivers
//! for it are held; the answer tells which of them the write itself made, and only the others
//! wake the object (`wakes`). Without this an object's own claim or status write woke it again
//! about one time in three (README, "Scale and resilience").
use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use futures::Stream;
use kube::ResourceExt;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher::Event;

use super::kind::RestorePoint;
use super::resync_clock::ResyncClock;
use crate::api::{RestoreKind, RestorePhase, SourceSpec, VpsRestore};
use crate::controller::listings::ServerKey;

/// Namespace and name of an object.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjKey {
    pub namespace: String,
    pub name: String,
}

impl ObjKey {
    pub fn of<K: kube::Resource>(obj: &K) -> Self {
        ObjKey {
            namespace: obj.meta().namespace.clone().unwrap_or_default(),
            name: obj.meta().name.clone().unwrap_or_default(),
        }
    }
}

impl ObjKey {
    /// The key `Display` printed (`namespace/name`; neither may contain a slash).
    pub fn parse(text: &str) -> Self {
        let (namespace, name) = text.split_once('/').unwrap_or(("", text));
        ObjKey {
            namespace: namespace.to_string(),
            name: name.to_string(),
        }
    }
}

impl std::fmt::Display for ObjKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// The server an object declares a restore point on.
pub fn server_key<K: RestorePoint>(obj: &K) -> ServerKey {
    let c = obj.common();
    ServerKey {
        provider: (obj.namespace().unwrap_or_default(), c.provider.to_string()),
        server: c.server_id.max(0) as u64,
        class: K::CLASS,
    }
}

struct Overlay<K> {
    obj: Arc<K>,
    /// Versions known to be older than `obj`.
    superseded: Vec<String>,
}

struct Inner<K> {
    by_server: HashMap<ServerKey, BTreeSet<ObjKey>>,
    by_owner: HashMap<String, BTreeSet<ObjKey>>,
    overlays: HashMap<ObjKey, Overlay<K>>,
    /// Versions an object's own reconcile wrote that the watch has not delivered yet, in the
    /// order written.
    echoes: HashMap<ObjKey, Vec<String>>,
    /// Objects with a write of this process not answered yet.
    in_flight: HashMap<ObjKey, Flight>,
}

/// The writes of one object not answered yet, and what the watch delivered meanwhile.
#[derive(Default)]
struct Flight {
    writes: usize,
    /// Versions delivered while a write was in flight, in order.
    held: Vec<Option<String>>,
    /// Versions the object's own answered writes made.
    own: Vec<String>,
}

impl<K> Default for Inner<K> {
    fn default() -> Self {
        Inner {
            by_server: HashMap::new(),
            by_owner: HashMap::new(),
            overlays: HashMap::new(),
            echoes: HashMap::new(),
            in_flight: HashMap::new(),
        }
    }
}

/// Who wrote a version this process records.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Writer {
    /// The object's own reconcile, which decided with this version in hand and returned
    /// when to look again: the watch delivering it is no news to that object.
    Itself,
    /// Another object's reconcile (an eviction mark): news the object must look at.
    Neighbour,
}

/// What a watch event is to the object it carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Observed {
    /// Something this process's reconcile of the object has not seen: reconcile it.
    News,
    /// A version the object's own reconcile wrote: it already acted on it.
    OwnEcho,
    /// Delivered while a write of the object is in flight: judged when the write is answered,
    /// and the object is woken then if it was news.
    Held,
}

/// Declared `VpsSnapshot`s or `VpsBackup`s by server and by owner, over the watch's store.
pub struct Index<K: RestorePoint> {
    store: Store<K>,
    inner: Mutex<Inner<K>>,
    clock: Arc<ResyncClock>,
    wake: tokio::sync::mpsc::UnboundedSender<ObjKey>,
    woken: Mutex<Option<tokio::sync::mpsc::UnboundedReceiver<ObjKey>>>,
    /// Writes made since this process began: how busy its objects keep the apiserver.
    writes: std::sync::atomic::AtomicU64,
}

impl<K: RestorePoint> Index<K> {
    pub fn new(store: Store<K>) -> Self {
        let (wake, woken) = tokio::sync::mpsc::unbounded_channel();
        Index {
            store,
            inner: Mutex::default(),
            clock: Arc::default(),
            wake,
            woken: Mutex::new(Some(woken)),
            writes: Default::default(),
        }
    }

    /// Objects to reconcile because the watch delivered news about them while a write of
    /// theirs was in flight. One consumer: the second call gets an empty stream.
    pub fn wakes(&self) -> impl Stream<Item = ObjKey> + Send + 'static + use<K> {
        let woken = self.woken.lock().expect("index lock").take();
        futures::stream::unfold(woken, |woken| async move {
            let mut woken = woken?;
            let key = woken.recv().await?;
            Some((key, Some(woken)))
        })
    }

    /// Marks a write of `key` as sent: until it is answered (`InFlight::answered`) or given up
    /// (dropped), versions the watch delivers for `key` are held rather than judged.
    pub fn write_started(&self, key: ObjKey) -> InFlight<'_, K> {
        let mut inner = self.inner.lock().expect("index lock");
        inner.in_flight.entry(key.clone()).or_default().writes += 1;
        InFlight { index: self, key }
    }

    /// How many writes of its objects this process has made (answered, not refused).
    pub fn writes_made(&self) -> u64 {
        self.writes.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// One write of `key` ended; once none is left, the versions held meanwhile are judged
    /// and the object is woken if any of them was news.
    fn write_ended(&self, key: &ObjKey) {
        let mut inner = self.inner.lock().expect("index lock");
        let Some(flight) = inner.in_flight.get_mut(key) else {
            return;
        };
        flight.writes -= 1;
        if flight.writes > 0 {
            return;
        }
        let flight = inner.in_flight.remove(key).unwrap_or_default();
        let mut news = false;
        for rv in &flight.held {
            // A version the write made was delivered before its answer: it is no news, whether
            // or not its echo got recorded.
            let own = rv.as_ref().is_some_and(|rv| flight.own.contains(rv));
            news |= echo(&mut inner, key, rv.as_deref()) == Observed::News && !own;
        }
        if news {
            // Nobody listening (a test, or shutdown): nothing is left to wake.
            let _ = self.wake.send(key.clone());
        }
    }

    /// When each server's settled objects are looked at again.
    pub fn clock(&self) -> &Arc<ResyncClock> {
        &self.clock
    }

    /// The watch's store (copies as the watch last delivered them).
    pub fn store(&self) -> &Store<K> {
        &self.store
    }

    /// Feeds one watch event, after the reflector has applied it to the store, and says
    /// whether it is news to its object.
    pub fn observe(&self, event: &Event<K>) -> Observed {
        let mut inner = self.inner.lock().expect("index lock");
        match event {
            Event::Apply(obj) => {
                let key = ObjKey::of(obj);
                add(&mut inner, &key, obj);
                let rv = obj.resource_version();
                if inner
                    .overlays
                    .get(&key)
                    .is_some_and(|o| !o.superseded.iter().any(|s| Some(s) == rv.as_ref()))
                {
                    inner.overlays.remove(&key);
                }
                if let Some(flight) = inner.in_flight.get_mut(&key) {
                    flight.held.push(rv);
                    return Observed::Held;
                }
                echo(&mut inner, &key, rv.as_deref())
            }
            Event::Delete(obj) => {
                let key = ObjKey::of(obj);
                remove(&mut inner, &key, obj);
                inner.overlays.remove(&key);
                inner.echoes.remove(&key);
                Observed::News
            }
            // A re-list: the store is replaced as a whole once it is done.
            Event::Init | Event::InitApply(_) => Observed::News,
            Event::InitDone => {
                let overlays = std::mem::take(&mut inner.overlays);
                let mut in_flight = std::mem::take(&mut inner.in_flight);
                *inner = Inner::default();
                // Writes still in flight end later; what the re-list showed is news anyway.
                for flight in in_flight.values_mut() {
                    flight.held.clear();
                    flight.own.clear();
                }
                inner.in_flight = in_flight;
                for obj in self.store.state() {
                    add(&mut inner, &ObjKey::of(obj.as_ref()), obj.as_ref());
                }
                for (key, overlay) in overlays {
                    let listed = self.cached(&key).and_then(|o| o.resource_version());
                    if overlay
                        .superseded
                        .iter()
                        .any(|s| Some(s) == listed.as_ref())
                    {
                        inner.overlays.insert(key, overlay);
                    }
                }
                Observed::News
            }
        }
    }

    /// Records an object as this process just wrote it; `seen` is the version the write was
    /// conditional on.
    fn record_write(&self, seen: Option<&str>, written: K, by: Writer) {
        let key = ObjKey::of(&written);
        let now = written.resource_version();
        let mut inner = self.inner.lock().expect("index lock");
        if let (Writer::Itself, Some(now), Some(flight)) = (by, &now, inner.in_flight.get_mut(&key))
        {
            flight.own.push(now.clone());
        }
        // Under the lock, so a watch event applied meanwhile is either seen here or drops
        // the overlay right after.
        let cached = self.cached(&key).and_then(|c| c.resource_version());
        if cached == now {
            inner.overlays.remove(&key);
            return;
        }
        let mut superseded = Vec::new();
        if let Some(previous) = inner.overlays.remove(&key) {
            superseded.extend(previous.superseded);
            superseded.extend(previous.obj.resource_version());
        }
        superseded.extend(seen.map(str::to_string));
        superseded.retain(|s| Some(s) != now.as_ref());
        superseded.sort();
        superseded.dedup();
        // The write was conditional on `seen`, so `now` is the version right after it. A cached
        // version that is neither `now` nor one known to be older came after `now`: the watch
        // delivered this write and more before its answer got here. The cache is the latest.
        if cached.is_some_and(|c| !superseded.contains(&c)) {
            return;
        }
        if let (Writer::Itself, Some(now)) = (by, &now) {
            inner
                .echoes
                .entry(key.clone())
                .or_default()
                .push(now.clone());
        }
        inner.overlays.insert(
            key,
            Overlay {
                obj: Arc::new(written),
                superseded,
            },
        );
    }

    /// The latest version of `key` this process knows.
    pub fn latest(&self, key: &ObjKey) -> Option<Arc<K>> {
        let overlay = {
            let inner = self.inner.lock().expect("index lock");
            inner.overlays.get(key).map(|o| o.obj.clone())
        };
        overlay.or_else(|| self.cached(key))
    }

    /// The latest version of every object declared on `server`.
    pub fn on_server(&self, server: &ServerKey) -> Vec<Arc<K>> {
        let keys: Vec<ObjKey> = {
            let inner = self.inner.lock().expect("index lock");
            inner
                .by_server
                .get(server)
                .map(|s| s.iter().cloned().collect())
                .unwrap_or_default()
        };
        keys.iter().filter_map(|k| self.latest(k)).collect()
    }

    /// The latest version of every object with an ownerReference to `uid`.
    pub fn owned_by(&self, uid: &str) -> Vec<Arc<K>> {
        let keys: Vec<ObjKey> = {
            let inner = self.inner.lock().expect("index lock");
            inner
                .by_owner
                .get(uid)
                .map(|s| s.iter().cloned().collect())
                .unwrap_or_default()
        };
        keys.iter().filter_map(|k| self.latest(k)).collect()
    }

    fn cached(&self, key: &ObjKey) -> Option<Arc<K>> {
        self.store
            .get(&ObjectRef::new(&key.name).within(&key.namespace))
    }
}

/// A write of one object that has been sent and not answered yet (see `Index::write_started`).
#[must_use = "the write counts as in flight until this is answered or dropped"]
pub struct InFlight<'i, K: RestorePoint> {
    index: &'i Index<K>,
    key: ObjKey,
}

impl<K: RestorePoint> InFlight<'_, K> {
    /// The write went through: records it (`Index::record_write`) and judges what the watch
    /// delivered meanwhile.
    pub fn answered(self, seen: Option<&str>, written: K, by: Writer) {
        self.index
            .writes
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.index.record_write(seen, written, by);
    }
}

impl<K: RestorePoint> Drop for InFlight<'_, K> {
    fn drop(&mut self) {
        self.index.write_ended(&self.key);
    }
}

/// Whether version `rv` of `key` is one its own reconcile wrote. The watch delivers versions
/// in the order they were written, so any version arriving passes every recorded one before
/// it; a version nobody here wrote means the object's later versions are not ours either.
fn echo<K>(inner: &mut Inner<K>, key: &ObjKey, rv: Option<&str>) -> Observed {
    let Some(written) = inner.echoes.get_mut(key) else {
        return Observed::News;
    };
    match written.iter().position(|w| Some(w.as_str()) == rv) {
        Some(at) => {
            written.drain(..=at);
            if written.is_empty() {
                inner.echoes.remove(key);
            }
            Observed::OwnEcho
        }
        None => {
            inner.echoes.remove(key);
            Observed::News
        }
    }
}

fn add<K: RestorePoint>(inner: &mut Inner<K>, key: &ObjKey, obj: &K) {
    inner
        .by_server
        .entry(server_key(obj))
        .or_default()
        .insert(key.clone());
    for owner in obj.owner_references() {
        inner
            .by_owner
            .entry(owner.uid.clone())
            .or_default()
            .insert(key.clone());
    }
}

fn remove<K: RestorePoint>(inner: &mut Inner<K>, key: &ObjKey, obj: &K) {
    let server = server_key(obj);
    if let Some(set) = inner.by_server.get_mut(&server) {
        set.remove(key);
        if set.is_empty() {
            inner.by_server.remove(&server);
        }
    }
    for owner in obj.owner_references() {
        if let Some(set) = inner.by_owner.get_mut(&owner.uid) {
            set.remove(key);
            if set.is_empty() {
                inner.by_owner.remove(&owner.uid);
            }
        }
    }
}

/// How an unfinished restore names its source.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RestoreUse {
    pub namespace: String,
    pub provider: String,
    pub server: i64,
    pub kind: RestoreKind,
    /// `spec.source.snapshotRef`/`backupRef`.
    pub by_name: Option<String>,
    /// `spec.source.snapshotId`/`backupId`.
    pub by_id: Option<String>,
}

impl RestoreUse {
    /// What `restore` still needs, or `None` once it finished (accepted or failed).
    pub fn of(restore: &VpsRestore) -> Option<Self> {
        let finished = restore.status.as_ref().is_some_and(|s| {
            s.restore_accepted_at.is_some() || s.phase == Some(RestorePhase::Failed)
        });
        if finished {
            return None;
        }
        let (kind, by_name, by_id) = match restore.spec.source.get()? {
            SourceSpec::Ref { kind, name } => (kind, Some(name.to_string()), None),
            SourceSpec::Id { kind, id } => (kind, None, Some(id.to_string())),
        };
        Some(RestoreUse {
            namespace: restore.namespace().unwrap_or_default(),
            provider: restore.spec.provider_ref.name.clone(),
            server: restore.spec.server_id,
            kind,
            by_name,
            by_id,
        })
    }

    /// Whether this restore uses the object `name` (provider id `id`) on `server`.
    pub fn uses(
        &self,
        server: &ServerKey,
        kind: RestoreKind,
        name: &str,
        id: Option<&str>,
    ) -> bool {
        self.kind == kind
            && self.namespace == server.provider.0
            && self.provider == server.provider.1
            && self.server.max(0) as u64 == server.server
            && (self.by_name.as_deref() == Some(name)
                || (id.is_some() && self.by_id.as_deref() == id))
    }
}

/// The unfinished restores, fed by the restore watch. Finished ones are dropped, so the set
/// stays as small as the restores running now.
#[derive(Default)]
pub struct RestoreUses {
    inner: Mutex<HashMap<ObjKey, RestoreUse>>,
}

impl RestoreUses {
    pub fn observe(&self, event: &Event<VpsRestore>, store: &Store<VpsRestore>) {
        let mut inner = self.inner.lock().expect("restore index lock");
        match event {
            Event::Apply(r) => match RestoreUse::of(r) {
                Some(u) => {
                    inner.insert(ObjKey::of(r), u);
                }
                None => {
                    inner.remove(&ObjKey::of(r));
                }
            },
            Event::Delete(r) => {
                inner.remove(&ObjKey::of(r));
            }
            Event::Init | Event::InitApply(_) => {}
            Event::InitDone => {
                *inner = store
                    .state()
                    .iter()
                    .filter_map(|r| RestoreUse::of(r).map(|u| (ObjKey::of(r.as_ref()), u)))
                    .collect();
            }
        }
    }

    /// Unfinished restores of any server of `provider`.
    pub fn on_server_all(
        &self,
        provider: &crate::controller::registry::ProviderKey,
    ) -> Vec<RestoreUse> {
        self.inner
            .lock()
            .expect("restore index lock")
            .values()
            .filter(|u| u.namespace == provider.0 && u.provider == provider.1)
            .cloned()
            .collect()
    }

    /// Unfinished restores from `server`.
    pub fn on_server(&self, server: &ServerKey) -> Vec<RestoreUse> {
        self.inner
            .lock()
            .expect("restore index lock")
            .values()
            .filter(|u| {
                u.namespace == server.provider.0
                    && u.provider == server.provider.1
                    && u.server.max(0) as u64 == server.server
            })
            .cloned()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{ProviderRef, VpsSnapshot, VpsSnapshotSpec};
    use crate::controller::listings::Class;
    use kube::runtime::reflector;
    use kube::runtime::watcher::Event;

    fn snap(name: &str, server: i64, rv: &str) -> VpsSnapshot {
        let mut s = VpsSnapshot::new(
            name,
            VpsSnapshotSpec {
                provider_ref: ProviderRef { name: "p".into() },
                server_id: server,
                snapshot_name: None,
                description: None,
                deletion_policy: Default::default(),
                import_id: None,
                pinned: false,
                evictable: false,
                failure_deadline: None,
            },
        );
        s.metadata.namespace = Some("ns".into());
        s.metadata.resource_version = Some(rv.into());
        s
    }

    fn server(id: u64) -> ServerKey {
        ServerKey {
            provider: ("ns".into(), "p".into()),
            server: id,
            class: Class::Snapshot,
        }
    }

    /// A store and index fed like the controller's: the store first, then the index.
    struct Fed {
        writer: std::cell::RefCell<reflector::store::Writer<VpsSnapshot>>,
        index: Index<VpsSnapshot>,
    }

    impl Fed {
        fn new() -> Self {
            let (reader, writer) = reflector::store();
            Fed {
                writer: writer.into(),
                index: Index::new(reader),
            }
        }
        fn feed(&self, event: Event<VpsSnapshot>) -> Observed {
            self.writer.borrow_mut().apply_watcher_event(&event);
            self.index.observe(&event)
        }
        fn rv(&self, name: &str) -> Option<String> {
            self.index
                .latest(&ObjKey {
                    namespace: "ns".into(),
                    name: name.into(),
                })
                .and_then(|o| o.resource_version())
        }
    }

    #[test]
    fn objects_are_found_by_server_until_deleted() {
        let f = Fed::new();
        f.feed(Event::Apply(snap("a", 1, "1")));
        f.feed(Event::Apply(snap("b", 1, "2")));
        f.feed(Event::Apply(snap("c", 2, "3")));
        let names = |s| {
            let mut n: Vec<String> = f
                .index
                .on_server(&server(s))
                .iter()
                .map(|o| o.name_any())
                .collect();
            n.sort();
            n
        };
        assert_eq!(names(1), ["a", "b"]);
        assert_eq!(names(2), ["c"]);
        f.feed(Event::Delete(snap("a", 1, "4")));
        let names1: Vec<String> = f
            .index
            .on_server(&server(1))
            .iter()
            .map(|o| o.name_any())
            .collect();
        assert_eq!(names1, ["b"]);
        assert!(f.index.on_server(&server(3)).is_empty());
    }

    #[test]
    fn own_writes_win_over_older_cached_copies_until_the_watch_catches_up() {
        let f = Fed::new();
        f.feed(Event::Apply(snap("a", 1, "10")));
        // A claim (10 → 11) and a status write (11 → 12), before the watch sent either.
        f.index
            .record_write(Some("10"), snap("a", 1, "11"), Writer::Itself);
        f.index
            .record_write(Some("11"), snap("a", 1, "12"), Writer::Itself);
        assert_eq!(f.rv("a").as_deref(), Some("12"));
        // The watch delivers the claim: still older than our last write.
        f.feed(Event::Apply(snap("a", 1, "11")));
        assert_eq!(f.rv("a").as_deref(), Some("12"));
        // Then our write itself: the cache holds it now.
        f.feed(Event::Apply(snap("a", 1, "12")));
        assert_eq!(f.rv("a").as_deref(), Some("12"));
        // Someone else writes after us: their version is the latest.
        f.feed(Event::Apply(snap("a", 1, "13")));
        assert_eq!(f.rv("a").as_deref(), Some("13"));
    }

    #[test]
    fn a_write_answered_after_the_watch_moved_past_it_does_not_hide_the_newer_version() {
        let f = Fed::new();
        f.feed(Event::Apply(snap("a", 1, "14")));
        // Our write (14 → 15) and a deletion mark after it (16) both come by the watch before
        // the write's answer does.
        f.feed(Event::Apply(snap("a", 1, "15")));
        f.feed(Event::Apply(snap("a", 1, "16")));
        f.index
            .record_write(Some("14"), snap("a", 1, "15"), Writer::Itself);
        assert_eq!(f.rv("a").as_deref(), Some("16"));
        assert_eq!(
            f.feed(Event::Apply(snap("a", 1, "17"))),
            Observed::News,
            "nothing left that could take a later version for an echo"
        );
        // Our next write, on the latest version, overlays until the watch catches up again.
        f.index
            .record_write(Some("17"), snap("a", 1, "18"), Writer::Itself);
        assert_eq!(f.rv("a").as_deref(), Some("18"));
    }

    /// One step of a run: the apiserver's history of one object, the watch behind it, and
    /// this process writing on the version it knows.
    #[derive(Clone, Debug)]
    enum Move {
        /// The watch delivers the next version.
        Deliver,
        /// Someone else writes.
        OtherWrite,
        /// This process writes, conditional on the latest version it knows (a conflict when
        /// that is not the apiserver's).
        OwnWrite,
        /// The answer of this process's write arrives.
        Answer,
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2_000))]

        /// Whatever the order of watch events and write answers, the latest version known is
        /// never older than the watch's copy, never newer than the apiserver's, and never
        /// older than this process's own answered write; and a version someone else wrote
        /// wakes the object (at once, or when the write in flight is answered) while its own
        /// writes never do.
        #[test]
        fn the_latest_version_known_never_goes_back(moves in proptest::collection::vec(
            proptest::prop_oneof![
                proptest::strategy::Just(Move::Deliver),
                proptest::strategy::Just(Move::OtherWrite),
                proptest::strategy::Just(Move::OwnWrite),
                proptest::strategy::Just(Move::Answer),
            ],
            1..60,
        )) {
            let f = Fed::new();
            let mut wakes = Box::pin(f.index.wakes());
            f.feed(Event::Apply(snap("a", 1, "1")));
            let (mut server, mut delivered, mut answered) = (1u64, 1u64, 0u64);
            // A write sent and not answered: the version it saw, the one it made (none when
            // it conflicts), and its flight.
            let mut pending: Option<(u64, Option<u64>, InFlight<'_, VpsSnapshot>)> = None;
            let mut own = std::collections::BTreeSet::new();
            // Someone else's versions delivered while a write was in flight.
            let mut held_news = false;
            let latest = |f: &Fed| f.rv("a").and_then(|v| v.parse::<u64>().ok()).unwrap();
            for m in moves {
                match m {
                    Move::Deliver if delivered < server => {
                        delivered += 1;
                        let seen = f.feed(Event::Apply(snap("a", 1, &delivered.to_string())));
                        let news = !own.contains(&delivered);
                        if pending.is_some() {
                            proptest::prop_assert_eq!(seen, Observed::Held);
                            held_news |= news;
                        } else {
                            proptest::prop_assert_eq!(seen == Observed::News, news, "version {}", delivered);
                        }
                    }
                    Move::OtherWrite => server += 1,
                    Move::OwnWrite if pending.is_none() => {
                        let seen = latest(&f);
                        let written = (seen == server).then(|| {
                            server += 1;
                            own.insert(server);
                            server
                        });
                        pending = Some((seen, written, f.index.write_started(key("a"))));
                    }
                    Move::Answer => {
                        if let Some((seen, written, flight)) = pending.take() {
                            match written {
                                Some(written) => {
                                    flight.answered(
                                        Some(&seen.to_string()),
                                        snap("a", 1, &written.to_string()),
                                        Writer::Itself,
                                    );
                                    answered = written;
                                }
                                None => drop(flight),
                            }
                            let woke = !woken(&mut wakes).is_empty();
                            proptest::prop_assert_eq!(woke, held_news, "woken iff someone else's version came meanwhile");
                            held_news = false;
                        }
                    }
                    _ => {}
                }
                let l = latest(&f);
                proptest::prop_assert!(l >= delivered, "latest {l} behind the watch's {delivered}");
                proptest::prop_assert!(l <= server, "latest {l} ahead of the apiserver's {server}");
                proptest::prop_assert!(l >= answered, "latest {l} behind our answered write {answered}");
            }
        }
    }

    fn key(name: &str) -> ObjKey {
        ObjKey {
            namespace: "ns".into(),
            name: name.into(),
        }
    }

    /// The objects woken so far (without waiting).
    fn woken(wakes: &mut (impl Stream<Item = ObjKey> + Unpin)) -> Vec<String> {
        use futures::{FutureExt, StreamExt};
        let mut names = Vec::new();
        while let Some(Some(k)) = wakes.next().now_or_never() {
            names.push(k.name);
        }
        names
    }

    #[test]
    fn a_write_the_watch_delivers_before_its_answer_wakes_nothing_and_news_meanwhile_wakes_once() {
        use Observed::{Held, News, OwnEcho};
        let f = Fed::new();
        let mut wakes = Box::pin(f.index.wakes());
        assert_eq!(f.feed(Event::Apply(snap("a", 1, "10"))), News);

        // The claim: the watch delivers it before the answer arrives.
        let flight = f.index.write_started(key("a"));
        assert_eq!(f.feed(Event::Apply(snap("a", 1, "11"))), Held);
        flight.answered(Some("10"), snap("a", 1, "11"), Writer::Itself);
        assert!(woken(&mut wakes).is_empty(), "its own claim is no news");

        // The status write, answered first: an echo as before.
        let flight = f.index.write_started(key("a"));
        flight.answered(Some("11"), snap("a", 1, "12"), Writer::Itself);
        assert_eq!(f.feed(Event::Apply(snap("a", 1, "12"))), OwnEcho);

        // A user's edit arrives behind the object's own write, both before the answer.
        let flight = f.index.write_started(key("a"));
        assert_eq!(f.feed(Event::Apply(snap("a", 1, "13"))), Held);
        assert_eq!(f.feed(Event::Apply(snap("a", 1, "14"))), Held);
        flight.answered(Some("12"), snap("a", 1, "13"), Writer::Itself);
        assert_eq!(woken(&mut wakes), ["a"], "the edit wakes it, once");
        assert_eq!(f.rv("a").as_deref(), Some("14"));

        // A write that failed (a conflict): whatever came meanwhile was someone else's.
        let flight = f.index.write_started(key("a"));
        assert_eq!(f.feed(Event::Apply(snap("a", 1, "15"))), Held);
        drop(flight);
        assert_eq!(woken(&mut wakes), ["a"]);
        assert_eq!(
            f.index.writes_made(),
            3,
            "writes made count (the publisher yields to them); a refused one does not"
        );
        assert_eq!(
            f.feed(Event::Apply(snap("a", 1, "16"))),
            News,
            "nothing held any more"
        );

        // A neighbour's eviction mark is news to the victim even when delivered first.
        let flight = f.index.write_started(key("a"));
        assert_eq!(f.feed(Event::Apply(snap("a", 1, "17"))), Held);
        flight.answered(Some("16"), snap("a", 1, "17"), Writer::Neighbour);
        assert_eq!(woken(&mut wakes), ["a"]);

        // Other objects are not held by a's write.
        let flight = f.index.write_started(key("a"));
        assert_eq!(f.feed(Event::Apply(snap("b", 1, "18"))), News);
        drop(flight);
        assert!(woken(&mut wakes).is_empty());
    }

    #[test]
    fn a_write_already_delivered_leaves_no_overlay_and_a_relist_keeps_only_newer_writes() {
        let f = Fed::new();
        f.feed(Event::Apply(snap("a", 1, "5")));
        f.feed(Event::Apply(snap("a", 1, "6")));
        f.index
            .record_write(Some("5"), snap("a", 1, "6"), Writer::Itself);
        f.feed(Event::Apply(snap("a", 1, "9")));
        assert_eq!(f.rv("a").as_deref(), Some("9"));

        f.index
            .record_write(Some("9"), snap("a", 1, "10"), Writer::Itself);
        // A re-list that still shows the older version keeps our write on top.
        f.feed(Event::Init);
        f.feed(Event::InitApply(snap("a", 1, "9")));
        f.feed(Event::InitApply(snap("b", 2, "3")));
        f.feed(Event::InitDone);
        assert_eq!(f.rv("a").as_deref(), Some("10"));
        assert_eq!(f.index.on_server(&server(2)).len(), 1);
        // One that shows something else drops it.
        f.feed(Event::Init);
        f.feed(Event::InitApply(snap("a", 1, "11")));
        f.feed(Event::InitDone);
        assert_eq!(f.rv("a").as_deref(), Some("11"));
        assert!(
            f.index.on_server(&server(2)).is_empty(),
            "b gone in the re-list"
        );
    }

    #[test]
    fn versions_an_object_wrote_itself_are_no_news_to_it_and_anything_else_is() {
        use Observed::{News, OwnEcho};
        let f = Fed::new();
        assert_eq!(f.feed(Event::Apply(snap("a", 1, "10"))), News);
        // Its claim and its status write, both before the watch delivered either.
        f.index
            .record_write(Some("10"), snap("a", 1, "11"), Writer::Itself);
        f.index
            .record_write(Some("11"), snap("a", 1, "12"), Writer::Itself);
        assert_eq!(f.feed(Event::Apply(snap("a", 1, "11"))), OwnEcho);
        assert_eq!(f.feed(Event::Apply(snap("a", 1, "12"))), OwnEcho);
        // A user's edit after them is news, and so is every later version.
        assert_eq!(f.feed(Event::Apply(snap("a", 1, "13"))), News);
        assert_eq!(f.feed(Event::Apply(snap("a", 1, "13"))), News);

        // A neighbour's eviction mark is news to the object marked.
        f.index
            .record_write(Some("13"), snap("a", 1, "14"), Writer::Neighbour);
        assert_eq!(f.feed(Event::Apply(snap("a", 1, "14"))), News);

        // A write the watch delivered before it was recorded was news then, and leaves
        // nothing behind that could hide a later version.
        assert_eq!(f.feed(Event::Apply(snap("a", 1, "15"))), News);
        f.index
            .record_write(Some("14"), snap("a", 1, "15"), Writer::Itself);
        assert_eq!(f.feed(Event::Apply(snap("a", 1, "16"))), News);
    }

    #[test]
    fn a_version_nobody_here_wrote_ends_the_echoes_and_a_deletion_or_relist_forgets_them() {
        use Observed::News;
        let f = Fed::new();
        f.feed(Event::Apply(snap("a", 1, "1")));
        f.index
            .record_write(Some("1"), snap("a", 1, "2"), Writer::Itself);
        // Skipped ahead (e.g. the watch was compacted past it): not an echo, and the recorded
        // version can never be mistaken for one later.
        assert_eq!(f.feed(Event::Apply(snap("a", 1, "3"))), News);
        assert_eq!(f.feed(Event::Apply(snap("a", 1, "2"))), News);

        f.index
            .record_write(Some("3"), snap("a", 1, "4"), Writer::Itself);
        f.feed(Event::Delete(snap("a", 1, "5")));
        assert_eq!(f.feed(Event::Apply(snap("a", 1, "4"))), News);

        f.index
            .record_write(Some("4"), snap("a", 1, "6"), Writer::Itself);
        f.feed(Event::Init);
        assert_eq!(f.feed(Event::InitApply(snap("a", 1, "6"))), News);
        f.feed(Event::InitDone);
        assert_eq!(f.feed(Event::Apply(snap("a", 1, "6"))), News);
    }
}
