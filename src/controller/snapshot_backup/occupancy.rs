//! What occupies each server, from what the operator already knows (its cached listings and
//! declared objects): no provider call. Published for `kubectl vpsnap servers` and `why`.
use jiff::Timestamp;

use super::decide::{self, Ownership};
use super::facts::{ServerFacts, view};
use super::kind::RestorePoint;
use super::reason::Reason;
use crate::controller::context::Context;
use crate::controller::listings::Class;
use crate::controller::registry::{Lookup, ProviderKey};
use crate::plan::gc;
use crate::provider::RemoteState;

/// One server and class of one account.
#[derive(Clone, Debug, PartialEq)]
pub struct ServerOccupancy {
    pub provider: ProviderKey,
    pub server: u64,
    pub class: Class,
    pub limit: usize,
    pub listed_at: Timestamp,
    /// False when the provider said it listed only part of the server.
    pub complete: bool,
    pub items: Vec<Occupant>,
    /// Provider ids GC would evict next, in order (keeping the last completed restore point).
    pub next_evictions: Vec<String>,
    /// Declared objects on the server waiting for room or blocked, with the reason.
    pub blocked: Vec<(String, Reason)>,
}

/// One listed provider object.
#[derive(Clone, Debug, PartialEq)]
pub struct Occupant {
    pub id: String,
    pub label: String,
    pub raw_status: String,
    pub state: RemoteState,
    pub created_at: Option<Timestamp>,
    /// Being deleted (by the provider, or by vpsnap and still listed).
    pub leaving: bool,
    pub owner: OccupantOwner,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OccupantOwner {
    /// Made by hand, by another tool, or left by a deleted `Retain` object.
    Foreign,
    /// Made by the provider itself (automatic backups).
    Automatic,
    /// Owned, with proof, by the declared object `object` (`namespace/name`).
    Declared {
        object: String,
        pinned: bool,
        evictable: bool,
    },
}

/// Every server of `provider` this process has listed, for the kind `K`.
pub fn of_account<K: RestorePoint>(ctx: &Context, provider: &ProviderKey) -> Vec<ServerOccupancy> {
    let Lookup::Ready(handle) = ctx.registry.lookup(provider) else {
        return Vec::new();
    };
    if !K::supported(&handle.capabilities) {
        return Vec::new();
    }
    let limit = K::limit(&handle);
    let uses = ctx
        .restore_uses
        .get()
        .map(|r| r.on_server_all(provider))
        .unwrap_or_default();
    ctx.listings
        .cached(provider, K::CLASS)
        .into_iter()
        .map(|(key, listing, deleting)| {
            let declared = K::index(ctx).map(|i| i.on_server(&key)).unwrap_or_default();
            let srv = ServerFacts {
                server: key.server,
                grace: ctx.timings.intent_grace(),
                neighbours: declared.iter().map(|o| view(o.as_ref(), &uses)).collect(),
                listing,
                deleting,
                reserved: Default::default(),
            };
            server(&srv, provider.clone(), K::CLASS, limit, K::carries)
        })
        .collect()
}

/// One server's occupancy from its facts (pure).
pub fn server(
    srv: &ServerFacts,
    provider: ProviderKey,
    class: Class,
    limit: usize,
    carries: fn(&str, &crate::controller::listings::Item) -> bool,
) -> ServerOccupancy {
    let (slots, leaving) = decide::slots(None, srv, carries);
    let plan = gc::plan(limit, &slots, &[], &leaving);
    let items = srv
        .listing
        .items
        .iter()
        .map(|item| {
            let owner = if item.automatic {
                OccupantOwner::Automatic
            } else {
                srv.neighbours
                    .iter()
                    .find(|o| {
                        let others: Vec<_> = srv
                            .neighbours
                            .iter()
                            .filter(|x| x.key != o.key)
                            .cloned()
                            .collect();
                        matches!(
                            decide::ownership(o, &srv.listing.items, &others, carries),
                            Ownership::Found(ref i, _) if i.id == item.id
                        )
                    })
                    .map(|o| OccupantOwner::Declared {
                        object: o.key.clone(),
                        pinned: o.pinned,
                        evictable: o.evictable,
                    })
                    .unwrap_or(OccupantOwner::Foreign)
            };
            Occupant {
                id: item.id.clone(),
                label: item.label.clone(),
                raw_status: item.raw_status.clone(),
                state: item.state.clone(),
                created_at: item.created_at,
                leaving: leaving.contains(&item.id),
                owner,
            }
        })
        .collect();
    let blocked = srv
        .neighbours
        .iter()
        .filter_map(|o| {
            let r = o.reason?;
            matches!(
                r,
                Reason::LimitReached
                    | Reason::WaitingForRoom
                    | Reason::NameConflict
                    | Reason::AmbiguousMarker
                    | Reason::ListingIncomplete
            )
            .then(|| (o.key.clone(), r))
        })
        .collect();
    ServerOccupancy {
        provider,
        server: srv.server,
        class,
        limit,
        listed_at: srv.listing.fetched_at,
        complete: srv.listing.complete,
        items,
        next_evictions: plan.next_evictions,
        blocked,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use crate::api::{DeletionPolicy, Phase};
    use crate::controller::listings::{Item, ServerListing};
    use crate::controller::snapshot_backup::facts::ObjectView;

    fn t(s: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + s).unwrap()
    }

    fn item(id: &str, label: &str, at: i64, automatic: bool) -> Item {
        Item {
            id: id.into(),
            label: label.into(),
            state: RemoteState::Ready,
            raw_status: "completed".into(),
            created_at: Some(t(at)),
            size_mb: None,
            protected: false,
            automatic,
        }
    }

    fn declared(name: &str, id: &str, evictable: bool) -> ObjectView {
        ObjectView {
            key: format!("ns/{name}"),
            name: name.into(),
            resource_version: None,
            phase: Some(Phase::Ready),
            reason: Some(Reason::Completed),
            provider_id: Some(id.into()),
            import_id: None,
            marker: name.into(),
            intent: Some(t(0)),
            pinned: false,
            evictable,
            deleting: false,
            deletion_policy: DeletionPolicy::Delete,
            declared_at: t(0),
            has_finalizer: true,
            restore_source: false,
        }
    }

    #[test]
    fn a_full_server_shows_who_holds_each_slot_and_what_goes_next() {
        let blocked = ObjectView {
            provider_id: None,
            intent: None,
            phase: Some(Phase::Blocked),
            reason: Some(Reason::LimitReached),
            ..declared("waiting", "", false)
        };
        let srv = ServerFacts {
            server: 7,
            listing: ServerListing {
                items: vec![
                    item("1", "by-hand", 0, false),
                    item("2", "old", 10, false),
                    item("3", "new", 20, false),
                    item("4", "auto", 5, true),
                ],
                complete: true,
                fetched: std::time::Instant::now(),
                fetched_at: t(30),
            },
            neighbours: vec![
                declared("old", "2", true),
                declared("new", "3", true),
                blocked,
            ],
            deleting: BTreeSet::new(),
            reserved: BTreeSet::new(),
            grace: std::time::Duration::from_secs(25),
        };
        let o = server(
            &srv,
            ("ns".into(), "p".into()),
            Class::Snapshot,
            4,
            |m, i| i.label == m,
        );
        let owner = |id: &str| o.items.iter().find(|i| i.id == id).unwrap().owner.clone();
        assert_eq!(owner("1"), OccupantOwner::Foreign);
        assert_eq!(owner("4"), OccupantOwner::Automatic);
        assert_eq!(
            owner("2"),
            OccupantOwner::Declared {
                object: "ns/old".into(),
                pinned: false,
                evictable: true
            }
        );
        // The oldest evictable goes first; a foreign one never does.
        assert_eq!(o.next_evictions.first().map(String::as_str), Some("2"));
        assert!(!o.next_evictions.contains(&"1".to_string()));
        assert_eq!(o.blocked, vec![("ns/waiting".into(), Reason::LimitReached)]);
        assert_eq!((o.limit, o.items.len(), o.complete), (4, 4, true));
    }
}
