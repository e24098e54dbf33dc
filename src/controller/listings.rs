//! One provider list call per server per poll, shared by every object on that server.
//!
//! A reconcile asks for the server's listing no older than some age: a fresh enough cached
//! listing is reused, otherwise one caller lists while the others wait on the same per-server
//! lock and then reuse its answer. The same lock serialises plan-and-act on a server, so two
//! objects never both take its last free slot. A slot frees only when a listing no longer
//! shows its object.
use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{Mutex as AsyncMutex, OwnedMutexGuard};

use super::registry::ProviderKey;
use crate::provider::{Listing, ProviderError, RemoteBackup, RemoteSnapshot, RemoteState};

/// Snapshots and backups have separate limits and separate lists.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Class {
    Snapshot,
    Backup,
}

impl Class {
    pub fn as_str(self) -> &'static str {
        match self {
            Class::Snapshot => "snapshot",
            Class::Backup => "backup",
        }
    }
}

/// A provider object, whichever class.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Item {
    pub id: String,
    /// Snapshot name, or backup description (where vpsnap's tag lives).
    pub label: String,
    pub state: RemoteState,
    pub raw_status: String,
    pub created_at: Option<jiff::Timestamp>,
    pub size_mb: Option<u64>,
    pub protected: bool,
    /// Made by the provider itself (automatic backups): never ours.
    pub automatic: bool,
}

impl From<RemoteSnapshot> for Item {
    fn from(s: RemoteSnapshot) -> Self {
        Item {
            id: s.id,
            label: s.name,
            state: s.state,
            raw_status: s.raw_status,
            created_at: s.created_at,
            size_mb: s.size_mb,
            protected: s.protected,
            automatic: false,
        }
    }
}

impl From<RemoteBackup> for Item {
    fn from(b: RemoteBackup) -> Self {
        Item {
            id: b.id,
            label: b.description.unwrap_or_default(),
            state: b.state,
            raw_status: b.raw_status,
            created_at: b.created_at,
            size_mb: b.size_mb,
            protected: false,
            automatic: b.kind == crate::provider::BackupKind::Automatic,
        }
    }
}

/// A server's objects of one class as last listed.
#[derive(Clone, Debug)]
pub struct ServerListing {
    pub items: Vec<Item>,
    /// False when the provider said there are more than it returned.
    pub complete: bool,
    pub fetched: Instant,
    pub fetched_at: jiff::Timestamp,
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ServerKey {
    pub provider: ProviderKey,
    pub server: u64,
    pub class: Class,
}

#[derive(Default)]
struct Slot {
    /// Shared with [`Left`] once let go: a server's listing is held once, copied only when a
    /// holder changes it.
    listing: Option<Arc<ServerListing>>,
    /// Provider ids this process deleted that the provider may still list for a while.
    deleting: HashMap<String, Instant>,
    /// Objects (`namespace/name`) whose create this process is sending with the lock let go:
    /// each holds a slot until the answer is in the listing.
    reserved: HashMap<String, Instant>,
}

/// A delete the provider accepted but still lists after this long is sent again.
const DELETE_PATIENCE: Duration = Duration::from_secs(600);

/// A reservation whose create never reported back (its task was cancelled) stops counting
/// after this long; a create is answered or abandoned within seconds.
const RESERVATION_TTL: Duration = Duration::from_secs(300);

/// One server: its slot, and what the last holder of its lock left, for readers that must
/// not wait for a busy server.
#[derive(Default)]
struct Entry {
    slot: Arc<AsyncMutex<Slot>>,
    left: Mutex<Option<Left>>,
}

/// The listing and the ids being deleted as a lock holder let go of them.
#[derive(Clone)]
struct Left {
    listing: Arc<ServerListing>,
    deleting: BTreeSet<String>,
}

#[derive(Clone)]
pub struct Listings {
    slots: Arc<Mutex<HashMap<ServerKey, Arc<Entry>>>>,
    started: Instant,
}

impl Default for Listings {
    fn default() -> Self {
        Listings {
            slots: Default::default(),
            started: Instant::now(),
        }
    }
}

/// Exclusive access to one server: its cached listing, and the right to create or delete there.
pub struct ServerGuard {
    guard: OwnedMutexGuard<Slot>,
    entry: Arc<Entry>,
    started: Instant,
}

impl Drop for ServerGuard {
    fn drop(&mut self) {
        // An invalidated listing keeps the last one for readers: its time says how old it is.
        if let Some(listing) = &self.guard.listing {
            let left = Left {
                listing: listing.clone(),
                deleting: self.guard.deleting.keys().cloned().collect(),
            };
            *self.entry.left.lock().expect("left lock") = Some(left);
        }
    }
}

impl Listings {
    pub async fn lock(&self, key: &ServerKey) -> ServerGuard {
        let entry = {
            let mut slots = self.slots.lock().expect("listings lock");
            slots.entry(key.clone()).or_default().clone()
        };
        ServerGuard {
            guard: entry.slot.clone().lock_owned().await,
            entry,
            started: self.started,
        }
    }

    /// The cached listings of `provider`'s servers of one class, with the ids being deleted,
    /// as the last holder of each server's lock left them: a server busy right now is seen
    /// as it was before (not left out, which would make it vanish from the published
    /// occupancy for a moment). This never waits.
    pub fn cached(
        &self,
        provider: &ProviderKey,
        class: Class,
    ) -> Vec<(ServerKey, ServerListing, BTreeSet<String>)> {
        let entries: Vec<(ServerKey, Arc<Entry>)> = self
            .slots
            .lock()
            .expect("listings lock")
            .iter()
            .filter(|(k, _)| &k.provider == provider && k.class == class)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        entries
            .into_iter()
            .filter_map(|(key, entry)| {
                let left = entry.left.lock().expect("left lock").clone()?;
                Some((key, ServerListing::clone(&left.listing), left.deleting))
            })
            .collect()
    }

    /// Drops cached listings of a provider (its client or credentials changed).
    pub fn forget_provider(&self, provider: &ProviderKey) {
        self.slots
            .lock()
            .expect("listings lock")
            .retain(|k, _| &k.provider != provider);
    }
}

impl ServerGuard {
    /// After a restart nothing is cached, and every settled object would list its server at
    /// once. Their first listing instead waits for a stable point of the first `period` derived
    /// from the server, so a fleet's lists spread as they do in steady state. `None` once the
    /// server has been listed or its point has passed.
    pub fn first_listing_delay(&self, key: &ServerKey, period: Duration) -> Option<Duration> {
        if self.guard.listing.is_some() || period.is_zero() {
            return None;
        }
        let mut h = std::hash::DefaultHasher::new();
        std::hash::Hash::hash(key, &mut h);
        let at =
            Duration::from_millis(std::hash::Hasher::finish(&h) % period.as_millis().max(1) as u64);
        at.checked_sub(self.started.elapsed())
            .filter(|d| !d.is_zero())
    }

    /// The listing, from cache when younger than `max_age`, else from one `fetch`.
    pub async fn listing<F, Fut>(
        &mut self,
        max_age: Duration,
        fetch: F,
    ) -> Result<ServerListing, ProviderError>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<Listing<Item>, ProviderError>>,
    {
        if let Some(l) = &self.guard.listing
            && l.fetched.elapsed() < max_age
        {
            return Ok(ServerListing::clone(l));
        }
        let fetched = Instant::now();
        let fetched_at = jiff::Timestamp::now();
        let l = fetch().await?;
        let listing = ServerListing {
            items: l.items,
            complete: l.complete,
            fetched,
            fetched_at,
        };
        let listed: BTreeSet<&str> = listing.items.iter().map(|i| i.id.as_str()).collect();
        self.guard
            .deleting
            .retain(|id, at| listed.contains(id.as_str()) && at.elapsed() < DELETE_PATIENCE);
        self.guard.listing = Some(Arc::new(listing.clone()));
        Ok(listing)
    }

    /// Records an object the provider just returned from a create, so the next reconcile on
    /// this server counts it without listing again.
    pub fn add(&mut self, item: Item) {
        if let Some(l) = &mut self.guard.listing {
            let l = Arc::make_mut(l);
            l.items.retain(|i| i.id != item.id);
            l.items.push(item);
        }
    }

    /// Records a delete the provider accepted. The object keeps its slot until a listing
    /// no longer shows it: a provider may delete in the background and count it meanwhile.
    pub fn note_deleting(&mut self, id: &str) {
        self.guard.deleting.insert(id.to_string(), Instant::now());
    }

    /// Provider ids whose delete was accepted and that were still listed last time.
    pub fn deleting(&self) -> BTreeSet<String> {
        self.guard.deleting.keys().cloned().collect()
    }

    /// Holds a slot for `object`'s create while the lock is let go for its writes and call.
    pub fn reserve(&mut self, object: &str) {
        self.guard
            .reserved
            .insert(object.to_string(), Instant::now());
    }

    /// The create of `object` is answered (or abandoned): its slot is what the listing says.
    pub fn unreserve(&mut self, object: &str) {
        self.guard.reserved.remove(object);
    }

    /// Objects whose create is under way with the lock let go.
    pub fn reserved(&mut self) -> BTreeSet<String> {
        self.guard
            .reserved
            .retain(|_, at| at.elapsed() < RESERVATION_TTL);
        self.guard.reserved.keys().cloned().collect()
    }

    /// Forces the next reader to list again (an outcome we could not observe).
    pub fn invalidate(&mut self) {
        self.guard.listing = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(server: u64) -> ServerKey {
        ServerKey {
            provider: ("ns".into(), "acme".into()),
            server,
            class: Class::Snapshot,
        }
    }

    fn item(id: &str) -> Item {
        Item {
            id: id.into(),
            label: format!("snap-{id}"),
            state: RemoteState::Ready,
            raw_status: "active".into(),
            created_at: None,
            size_mb: None,
            protected: false,
            automatic: false,
        }
    }

    async fn list(listings: &Listings, server: u64, ids: &[&str]) {
        let items = ids.iter().map(|id| item(id)).collect();
        listings
            .lock(&key(server))
            .await
            .listing(Duration::ZERO, || async {
                Ok(Listing {
                    items,
                    complete: true,
                })
            })
            .await
            .expect("listed");
    }

    fn published(listings: &Listings) -> Vec<(u64, Vec<String>)> {
        let mut seen: Vec<(u64, Vec<String>)> = listings
            .cached(&("ns".into(), "acme".into()), Class::Snapshot)
            .into_iter()
            .map(|(k, l, _)| (k.server, l.items.into_iter().map(|i| i.id).collect()))
            .collect();
        seen.sort();
        seen
    }

    #[tokio::test]
    async fn a_busy_server_is_still_seen_as_its_last_holder_left_it() {
        let listings = Listings::default();
        list(&listings, 1, &["a"]).await;
        list(&listings, 2, &["b"]).await;
        let both = vec![(1, vec!["a".to_string()]), (2, vec!["b".to_string()])];
        assert_eq!(published(&listings), both);

        // A reconcile holds server 1 and has changed its listing, not yet let go: readers
        // that do not wait (the occupancy publisher) see it as it was, not as missing.
        let mut busy = listings.lock(&key(1)).await;
        busy.add(item("c"));
        busy.note_deleting("a");
        assert_eq!(published(&listings), both, "a busy server is not left out");
        drop(busy);
        let after = listings.cached(&("ns".into(), "acme".into()), Class::Snapshot);
        let one = after
            .iter()
            .find(|(k, _, _)| k.server == 1)
            .expect("server 1");
        assert_eq!(
            one.1.items.len(),
            2,
            "what the holder left is seen once it let go"
        );
        assert_eq!(one.2, BTreeSet::from(["a".to_string()]));

        // An outcome it could not observe clears the cache for the next reconcile; readers
        // keep the last listing (its time says how old it is) until a new one.
        let mut unsure = listings.lock(&key(2)).await;
        unsure.invalidate();
        drop(unsure);
        assert_eq!(published(&listings)[1], (2, vec!["b".to_string()]));
    }
}
