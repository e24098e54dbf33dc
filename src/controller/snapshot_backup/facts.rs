//! Everything a decision looks at, as plain data, gathered under the server's lock.
//!
//! The object itself and its neighbours on the server come from the index (the watch cache
//! with this process's own writes on top), read after the lock was taken — never a copy read
//! before waiting. The server's listing is read through the per-server cache (one list call
//! per server per poll), and says whether it is complete.
use std::collections::BTreeSet;
use std::time::Duration;

use jiff::Timestamp;
use kube::ResourceExt;
use tracing::Instrument;

use super::claim;
use super::index::{ObjKey, RestoreUse, server_key};
use super::kind::RestorePoint;
use super::reason::Reason;
use crate::api::conditions;
use crate::api::{DeletionPolicy, Phase, parse_duration};
use crate::controller::context::Context;
use crate::controller::listings::{Item, ServerGuard, ServerListing};
use crate::controller::registry::{Lookup, ProviderHandle};
use crate::provider::ProviderError;
use crate::telemetry::spans;

/// One declared object, as any decision sees it (the one reconciled or a neighbour).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectView {
    /// `namespace/name`.
    pub key: String,
    pub name: String,
    /// The version these facts were read from: every write about this object is conditional on it.
    pub resource_version: Option<String>,
    pub phase: Option<Phase>,
    /// Reason of its `Ready` condition.
    pub reason: Option<Reason>,
    pub provider_id: Option<String>,
    pub import_id: Option<String>,
    pub marker: String,
    /// When its create intent was recorded; an unreadable time counts as long ago.
    pub intent: Option<Timestamp>,
    pub pinned: bool,
    pub evictable: bool,
    pub deleting: bool,
    pub deletion_policy: DeletionPolicy,
    pub declared_at: Timestamp,
    pub has_finalizer: bool,
    /// An unfinished `VpsRestore` restores from it.
    pub restore_source: bool,
}

/// The object being reconciled: its view plus what only its own decision needs.
#[derive(Clone, Debug)]
pub struct Subject {
    pub view: ObjectView,
    pub generation: Option<i64>,
    pub observed_generation: Option<i64>,
    /// `spec.failureDeadline`, or why it cannot be used.
    pub failure_deadline: Result<Duration, String>,
    /// This process sent the create its intent records (so finding it is no adoption).
    pub sent_by_me: bool,
}

/// What the provider registry says about the account.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProviderFacts {
    Missing {
        name: String,
    },
    /// It exists but this process has not judged it yet (a start or a takeover): nothing to
    /// say or do until it has.
    Unjudged,
    NotReady {
        name: String,
        why: String,
    },
    /// The account's API has no such objects.
    Unsupported {
        name: String,
        type_name: String,
    },
    Ready {
        limit: usize,
    },
}

/// The server: what the provider lists, and the other declared objects on it.
#[derive(Clone, Debug)]
pub struct ServerFacts {
    pub server: u64,
    pub listing: ServerListing,
    pub neighbours: Vec<ObjectView>,
    /// Provider ids this process asked the provider to delete that are still listed.
    pub deleting: BTreeSet<String>,
    /// Declared objects (`namespace/name`) whose create this process is sending right now.
    pub reserved: BTreeSet<String>,
    /// How long after its intent an unseen create counts as never made
    /// (`Timings::intent_grace`).
    pub grace: Duration,
}

#[derive(Clone, Debug)]
pub struct Facts {
    pub now: Timestamp,
    /// `snapshot` or `backup`, for messages.
    pub noun: &'static str,
    /// What the marker is to a user, for messages (`RestorePoint::MARKER_NAME`).
    pub marker_name: &'static str,
    pub subject: Subject,
    pub provider: ProviderFacts,
    /// Not read until a decision asks for it (`Step::List`).
    pub server: Option<ServerFacts>,
    /// After a restart, a settled object's first listing of its server waits this long, so
    /// a fleet's listings spread instead of all arriving at once.
    pub first_listing_delay: Option<Duration>,
    /// Whether a listed object carries a marker (the kind's `carries`).
    pub carries: fn(&str, &Item) -> bool,
}

impl Facts {
    /// The object and everything that can be known without asking the provider.
    pub fn gather<K: RestorePoint>(
        ctx: &Context,
        obj: &K,
        lookup: &Lookup,
        guard: &ServerGuard,
    ) -> Facts {
        let key = server_key(obj);
        let provider_name = obj.common().provider.to_string();
        let provider = match lookup {
            Lookup::Missing => ProviderFacts::Missing {
                name: provider_name,
            },
            Lookup::Unjudged => ProviderFacts::Unjudged,
            Lookup::NotReady(why) => ProviderFacts::NotReady {
                name: provider_name,
                why: why.clone(),
            },
            Lookup::Ready(h) if !K::supported(&h.capabilities) => ProviderFacts::Unsupported {
                name: provider_name,
                type_name: format!("{:?}", h.type_),
            },
            Lookup::Ready(h) => ProviderFacts::Ready { limit: K::limit(h) },
        };
        let uses = restore_uses(ctx, &key);
        let view = view(obj, &uses);
        let sent_by_me = view
            .intent
            .is_some_and(|at| ctx.sent.contains(&view.key, at));
        let st = obj.status().cloned().unwrap_or_default();
        let failure_deadline = match obj.common().failure_deadline {
            None => Ok(K::DEFAULT_DEADLINE),
            Some(text) => parse_duration(text).map_err(|e| format!("spec.failureDeadline: {e}")),
        };
        let first_listing_delay = match lookup {
            Lookup::Ready(h) => guard.first_listing_delay(&key, h.resync_interval),
            _ => None,
        };
        Facts {
            now: Timestamp::now(),
            noun: K::CLASS.as_str(),
            marker_name: K::MARKER_NAME,
            subject: Subject {
                view,
                generation: obj.meta().generation,
                observed_generation: st.observed_generation,
                failure_deadline,
                sent_by_me,
            },
            provider,
            server: None,
            first_listing_delay,
            carries: K::carries,
        }
    }
}

/// How fresh a listing a decision needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Freshness {
    /// No older than the poll interval (something is in flight).
    Poll,
    /// No older than the resync interval (everything settled).
    Resync,
    /// Listed now (before deleting at the provider).
    Now,
}

/// Reads the server's listing and its declared objects (the lock is held by `guard`).
pub async fn server<K: RestorePoint>(
    ctx: &Context,
    obj: &K,
    handle: &ProviderHandle,
    guard: &mut ServerGuard,
    freshness: Freshness,
) -> Result<ServerFacts, ProviderError> {
    let key = server_key(obj);
    let max_age = match freshness {
        Freshness::Poll => handle.poll_interval,
        Freshness::Resync => handle.resync_interval,
        Freshness::Now => Duration::ZERO,
    };
    let listing = guard
        .listing(max_age, || K::list(&handle.client, key.server))
        .instrument(spans::listing(key.server, K::CLASS.as_str()))
        .await?;
    let me = ObjKey::of(obj);
    let uses = restore_uses(ctx, &key);
    let neighbours = K::index(ctx)
        .map(|index| index.on_server(&key))
        .unwrap_or_default()
        .iter()
        .filter(|o| ObjKey::of(o.as_ref()) != me)
        .map(|o| view(o.as_ref(), &uses))
        .collect();
    Ok(ServerFacts {
        server: key.server,
        grace: ctx.timings.intent_grace(),
        deleting: guard.deleting(),
        reserved: guard.reserved(),
        listing,
        neighbours,
    })
}

fn restore_uses(ctx: &Context, key: &crate::controller::listings::ServerKey) -> Vec<RestoreUse> {
    ctx.restore_uses
        .get()
        .map(|r| r.on_server(key))
        .unwrap_or_default()
}

/// The decision's view of one declared object.
pub fn view<K: RestorePoint>(obj: &K, uses: &[RestoreUse]) -> ObjectView {
    let c = obj.common();
    let st = obj.status().cloned().unwrap_or_default();
    let name = obj.name_any();
    let key = server_key(obj);
    ObjectView {
        key: ObjKey::of(obj).to_string(),
        resource_version: obj.resource_version(),
        phase: st.phase,
        reason: conditions::find(&st.conditions, conditions::READY)
            .and_then(|c| Reason::parse(&c.reason)),
        restore_source: uses
            .iter()
            .any(|u| u.uses(&key, K::RESTORE_KIND, &name, st.provider_id.as_deref())),
        provider_id: st.provider_id,
        import_id: c.import_id.map(str::to_string),
        marker: obj.marker(),
        intent: claim::intent_of(obj).map(|i| {
            i.requested_at
                .parse::<Timestamp>()
                .unwrap_or(Timestamp::UNIX_EPOCH)
        }),
        pinned: c.pinned,
        evictable: c.evictable,
        deleting: obj.meta().deletion_timestamp.is_some(),
        deletion_policy: c.deletion_policy,
        declared_at: obj
            .meta()
            .creation_timestamp
            .as_ref()
            .map(|t| t.0)
            .unwrap_or(Timestamp::UNIX_EPOCH),
        has_finalizer: claim::has_finalizer(obj),
        name,
    }
}

/// The creates this process sent, by object and intent time: finding one of them at the
/// provider is tracking, not an adoption. An entry goes once the object records the id or
/// is deleted, so the set stays as small as the creates in flight.
#[derive(Default)]
pub struct Sent {
    inner: std::sync::Mutex<std::collections::HashMap<String, Timestamp>>,
}

impl Sent {
    pub fn insert(&self, key: &str, at: Timestamp) {
        self.inner
            .lock()
            .expect("sent lock")
            .insert(key.to_string(), at);
    }

    pub fn contains(&self, key: &str, at: Timestamp) -> bool {
        self.inner.lock().expect("sent lock").get(key) == Some(&at)
    }

    pub fn forget(&self, key: &str) {
        self.inner.lock().expect("sent lock").remove(key);
    }
}
