//! `VpsSnapshot` and `VpsBackup` share one reconciler: both are one provider object on one
//! server, under a per-server limit. The differences (list/create calls, how vpsnap recognises
//! its own object after a crash) live in the `RestorePoint` impls at the bottom.
//!
//! observe (one shared listing per server) → decide (`plan::gc`) → act (at most one create,
//! evictions) → report (status only when changed, Events on provider-side changes).
use std::collections::BTreeSet;
use std::fmt::Debug;
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use kube::api::Api;
use kube::runtime::controller::Action;
use kube::runtime::reflector::Store;
use kube::{Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::Error;
use super::context::Context;
use super::listings::{Class, Item, ServerGuard, ServerKey, ServerListing};
use super::ownership;
use super::registry::{Lookup, ProviderHandle};
use super::status;
use crate::api::conditions::{self, Desired};
use crate::api::{
    CreateIntent, DeletionPolicy, Phase, RestorePointStatus, VpsBackup, VpsSnapshot, parse_duration,
};
use crate::plan::gc::{self, Blocked, Owner, Slot, SlotState, Want};
use crate::provider::{ProviderError, RemoteState};
use crate::telemetry::spans;
use tracing::Instrument;

/// A create whose outcome was not observed is only repeated once a listing taken this long
/// after the intent still does not show it (longer than any request timeout).
const INTENT_GRACE: Duration = Duration::from_secs(25);

/// The spec fields both kinds share.
pub struct Common<'a> {
    pub provider: &'a str,
    pub server_id: i64,
    pub description: Option<&'a str>,
    pub deletion_policy: DeletionPolicy,
    pub import_id: Option<&'a str>,
    pub pinned: bool,
    pub evictable: bool,
    pub failure_deadline: Option<&'a str>,
}

pub trait RestorePoint:
    Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
    + Clone
    + DeserializeOwned
    + Serialize
    + Debug
    + Send
    + Sync
    + 'static
{
    const CLASS: Class;
    const KIND: &'static str;
    const DEFAULT_DEADLINE: Duration;
    fn common(&self) -> Common<'_>;
    fn status(&self) -> Option<&RestorePointStatus>;
    fn store(ctx: &Context) -> Option<&Store<Self>>;
    /// What identifies vpsnap's provider object for this object: the snapshot name, or the
    /// tag in a backup's description. Deterministic from the object, so a restart finds it.
    fn marker(&self) -> String;
    fn matches(marker: &str, item: &Item) -> bool;
    fn provider_description(&self) -> Option<String>;
}

fn server_key<K: RestorePoint>(obj: &K) -> ServerKey {
    let c = obj.common();
    ServerKey {
        provider: (obj.namespace().unwrap_or_default(), c.provider.to_string()),
        server: c.server_id.max(0) as u64,
        class: K::CLASS,
    }
}

pub async fn reconcile<K: RestorePoint>(obj: Arc<K>, ctx: Arc<Context>) -> Result<Action, Error> {
    let ns = obj.namespace().unwrap_or_default();
    let api: Api<K> = Api::namespaced(ctx.client.clone(), &ns);
    let key = obj_key(obj.as_ref());
    let started = std::time::Instant::now();
    let result = if obj.meta().deletion_timestamp.is_none() {
        apply(obj, &ctx, &api).await
    } else if ownership::has_finalizer(obj.as_ref()) {
        ctx.written.forget(&key);
        ctx.created
            .lock()
            .expect("created lock")
            .remove(&obj.marker());
        match cleanup(obj.clone(), &ctx, &api).await {
            Ok(_) => ownership::release(&api, obj.as_ref())
                .await
                .map(|()| Action::await_change())
                .map_err(Error::from),
            Err(e) => Err(e),
        }
    } else {
        // Never owned anything at the provider: nothing to clean up.
        Ok(Action::await_change())
    };
    let label = match &result {
        Ok(_) => {
            ctx.backoff.reset(&key);
            "ok"
        }
        Err(e) => e.class(),
    };
    ctx.metrics.reconciled(K::KIND, label, started.elapsed());
    result
}

/// What this reconcile decided the status should be.
struct Report {
    phase: Phase,
    ready: bool,
    reason: &'static str,
    message: String,
    stalled: bool,
    item: Option<Item>,
    intent: Option<CreateIntent>,
    requeue: Action,
}

impl Report {
    fn new(
        phase: Phase,
        reason: &'static str,
        message: impl Into<String>,
        stalled: bool,
        requeue: Action,
    ) -> Self {
        Report {
            phase,
            ready: false,
            reason,
            message: message.into(),
            stalled,
            item: None,
            intent: None,
            requeue,
        }
    }
}

async fn apply<K: RestorePoint>(obj: Arc<K>, ctx: &Context, api: &Api<K>) -> Result<Action, Error> {
    // Our own last write is on its way through the watch and will wake this object again;
    // the retry is only a safety net should that event never come.
    if ctx.written.is_stale(
        &obj_key(obj.as_ref()),
        obj.meta().resource_version.as_deref(),
    ) {
        return Ok(Action::requeue(Duration::from_secs(5)));
    }
    let mut current = obj.status().cloned().unwrap_or_default();
    current.create_intent = intent(obj.as_ref());
    let report = decide_and_act(&obj, ctx, api, &current).await?;
    write_report(obj.as_ref(), ctx, api, &current, report)
        .instrument(spans::status_write(K::KIND))
        .await
}

async fn decide_and_act<K: RestorePoint>(
    obj: &Arc<K>,
    ctx: &Context,
    api: &Api<K>,
    current: &RestorePointStatus,
) -> Result<Report, Error> {
    let common = obj.common();
    // Terminal states are never left by themselves: an evicted object must not re-create its
    // snapshot (that would be churn), a lost one must not silently become a newer one.
    if current.phase == Some(Phase::Evicted) {
        return Ok(keep(current, Action::await_change()));
    }
    let key = server_key(obj.as_ref());
    let handle = match ctx.registry.lookup(&key.provider) {
        Lookup::Ready(h) => h,
        Lookup::Missing => {
            return Ok(Report::new(
                Phase::Pending,
                "ProviderNotFound",
                format!(
                    "VpsProvider {:?} (spec.providerRef.name) does not exist in this namespace or is not reconciled yet",
                    common.provider
                ),
                true,
                Action::requeue(Duration::from_secs(60)),
            ));
        }
        Lookup::NotReady(why) => {
            return Ok(Report::new(
                Phase::Pending,
                "ProviderNotReady",
                format!(
                    "VpsProvider {:?} is not Ready ({why}); waiting",
                    common.provider
                ),
                true,
                Action::requeue(Duration::from_secs(60)),
            ));
        }
    };
    if !supports(&handle, K::CLASS) {
        return Ok(Report::new(
            Phase::Failed,
            "Unsupported",
            format!(
                "provider {:?} ({:?}) does not support {}s in its documented API",
                common.provider,
                handle.type_,
                K::CLASS.as_str()
            ),
            true,
            Action::await_change(),
        ));
    }

    let in_flight = current.provider_id.is_none() || current.phase != Some(Phase::Ready);
    let max_age = if in_flight {
        handle.poll_interval
    } else {
        handle.resync_interval
    };
    let mut guard = ctx.listings.lock(&key).await;
    if !in_flight && let Some(wait) = guard.first_listing_delay(&key, handle.resync_interval) {
        return Ok(keep(current, Action::requeue(wait)));
    }
    let listing = guard
        .listing(&handle.client, &key, max_age)
        .instrument(spans::listing(key.server, K::CLASS.as_str()))
        .await?;
    let marker = obj.marker();

    let found = find_own(obj.as_ref(), &listing);
    if let Some(item) = found {
        let adopted = current.provider_id.as_deref() != Some(item.id.as_str());
        let ours = {
            let mut created = ctx.created.lock().expect("created lock");
            // Once the id is recorded the marker has served its purpose; keeping it would grow
            // with every create this process ever made.
            if adopted {
                created.contains(&marker)
            } else {
                created.remove(&marker)
            }
        };
        if adopted && current.provider_id.is_none() && !ours {
            let how = if common.import_id.is_some() {
                "imported"
            } else {
                "found by its marker after an unobserved create"
            };
            ctx.event(
                obj.as_ref(),
                false,
                "Adopted",
                "Adopt",
                format!("{} {} {how}", K::CLASS.as_str(), item.id),
            )
            .await;
        }
        // Owned from now on (an import, or an object from before this version): deleting it
        // must reach the provider.
        if !ownership::has_finalizer(obj.as_ref()) {
            claim(ctx, api, obj.as_ref(), None).await?;
        }
        return Ok(track(obj.as_ref(), &handle, current, item));
    }

    if let Some(id) = current
        .provider_id
        .clone()
        .or_else(|| common.import_id.map(str::to_string))
    {
        if !listing.complete {
            return Ok(keep(current, jittered(handle.poll_interval)));
        }
        let (reason, message) = if common.import_id.is_some() && current.provider_id.is_none() {
            (
                "NotFoundAtProvider",
                format!(
                    "spec.importId {id:?} is not among the {}s of server {}",
                    K::CLASS.as_str(),
                    key.server
                ),
            )
        } else {
            (
                "GoneAtProvider",
                format!(
                    "{} {id} no longer exists at the provider; it was deleted outside vpsnap",
                    K::CLASS.as_str()
                ),
            )
        };
        if current.phase != Some(Phase::Failed) {
            ctx.event(obj.as_ref(), true, reason, "Observe", message.clone())
                .await;
        }
        return Ok(Report::new(
            Phase::Failed,
            reason,
            message,
            true,
            Action::requeue(handle.resync_interval),
        ));
    }

    // No provider object yet: may we create one? Not after a refusal that settled it (the
    // intent of that refused create is still recent, but nothing is coming).
    if let Some(reason) = terminal_reason(current) {
        return Ok(keep_reason(
            current,
            reason,
            Action::requeue(handle.resync_interval),
        ));
    }
    if let Some(intent) = &current.create_intent
        && !intent_expired(intent, &listing)
    {
        return Ok(Report {
            intent: Some(intent.clone()),
            ..Report::new(
                Phase::Creating,
                "Creating",
                "create sent; waiting for the provider to list it",
                false,
                jittered(handle.poll_interval),
            )
        });
    }
    create_if_room(obj, ctx, api, &handle, &key, &mut guard, &listing, marker).await
}

#[allow(clippy::too_many_arguments)]
async fn create_if_room<K: RestorePoint>(
    obj: &Arc<K>,
    ctx: &Context,
    api: &Api<K>,
    handle: &ProviderHandle,
    key: &ServerKey,
    guard: &mut ServerGuard,
    listing: &ServerListing,
    marker: String,
) -> Result<Report, Error> {
    let declared = declared_on_server::<K>(ctx, key);
    let limit = match K::CLASS {
        Class::Snapshot => handle.snapshot_limit,
        Class::Backup => handle.backup_limit,
    };
    let slots = slots_for(ctx, listing, &declared);
    let wants = wants_for(&declared, listing);
    // Objects being deleted (with their provider data) are room already being made.
    let evicting: BTreeSet<String> = declared
        .iter()
        .filter(|d| {
            d.meta().deletion_timestamp.is_some()
                && d.common().deletion_policy == DeletionPolicy::Delete
        })
        .filter_map(|d| d.status().and_then(|s| s.provider_id.clone()))
        .collect();
    let plan = gc::plan(limit, &slots, &wants, &evicting);
    let me = obj_key(obj.as_ref());

    for (id, owner) in &plan.evict {
        evict::<K>(ctx, handle, key, guard, id, owner, &me).await?;
    }

    if plan.admit.contains(&me) {
        let now = Timestamp::now();
        let intent = CreateIntent {
            marker: marker.clone(),
            requested_at: now.to_string(),
        };
        // Durable intent first: if we crash after the call, the restart finds the object by
        // its marker instead of creating a second one.
        claim(ctx, api, obj.as_ref(), Some(now))
            .instrument(spans::claim(true))
            .await?;
        let mut pending = obj.status().cloned().unwrap_or_default();
        pending.create_intent = Some(intent.clone());
        pending.phase = Some(Phase::Creating);
        ctx.created
            .lock()
            .expect("created lock")
            .insert(marker.clone());
        let description = obj.provider_description();
        let result = match K::CLASS {
            Class::Snapshot => handle
                .client
                .create_snapshot(key.server, &marker, description.as_deref())
                .await
                .map(|o| o.map(Item::from)),
            Class::Backup => handle
                .client
                .create_backup(key.server, description.as_deref())
                .await
                .map(|b| Some(Item::from(b))),
        };
        return Ok(match result {
            Ok(Some(item)) => {
                guard.add(item.clone());
                // No Event for the routine create or Ready: at fleet scale they would double
                // the apiserver writes; status (providerId, Ready's lastTransitionTime), this
                // log line and the metrics show them. Events are for what needs attention.
                tracing::info!(kind = K::KIND, object = %me, server = key.server, id = %item.id, "created at the provider");
                let mut r = track(obj.as_ref(), handle, &pending, item);
                r.intent = Some(intent);
                r
            }
            Ok(None) => {
                guard.invalidate();
                Report {
                    intent: Some(intent),
                    ..Report::new(
                        Phase::Creating,
                        "Creating",
                        "create accepted; waiting for the provider to list it",
                        false,
                        jittered(handle.poll_interval),
                    )
                }
            }
            Err(e) if e.outcome_unknown() => {
                guard.invalidate();
                tracing::warn!(kind = K::KIND, object = %me, error = %e, "create outcome unknown; will list before trying again");
                Report {
                    intent: Some(intent),
                    ..Report::new(
                        Phase::Creating,
                        "CreateOutcomeUnknown",
                        format!(
                            "create may or may not have taken effect ({e}); listing before any retry"
                        ),
                        false,
                        jittered(handle.poll_interval),
                    )
                }
            }
            Err(ProviderError::LimitReached(m)) => {
                guard.invalidate();
                Report::new(
                    Phase::Blocked,
                    "LimitReached",
                    format!("the provider refused the create: {m}"),
                    true,
                    slow(handle),
                )
            }
            Err(ProviderError::RateLimited { retry_after }) => Report::new(
                Phase::Pending,
                "RateLimited",
                "the provider asked us to slow down",
                false,
                Action::requeue(retry_after.unwrap_or(Duration::from_secs(5))),
            ),
            Err(ProviderError::NotFound(_)) => {
                ctx.event(
                    obj.as_ref(),
                    true,
                    "ServerNotFound",
                    "Create",
                    format!("server {} does not exist at the provider", key.server),
                )
                .await;
                Report::new(
                    Phase::Failed,
                    "ServerNotFound",
                    format!(
                        "spec.serverId {} does not exist at the provider (404)",
                        key.server
                    ),
                    true,
                    Action::await_change(),
                )
            }
            Err(
                e @ (ProviderError::InvalidRequest(_)
                | ProviderError::Unsupported(_)
                | ProviderError::Protected(_)
                | ProviderError::InvalidState(_)),
            ) => {
                ctx.event(
                    obj.as_ref(),
                    true,
                    "CreateRejected",
                    "Create",
                    e.to_string(),
                )
                .await;
                Report::new(
                    Phase::Failed,
                    "CreateRejected",
                    format!("the provider rejected the create: {e}"),
                    true,
                    Action::await_change(),
                )
            }
            Err(e) => return Err(e.into()),
        });
    }

    let blocked = plan
        .blocked
        .iter()
        .find(|(k, _)| k == &me)
        .map(|(_, b)| b.clone());
    Ok(match blocked {
        Some(Blocked::WaitingForEviction { evicting }) => Report::new(
            Phase::Blocked,
            "WaitingForRoom",
            format!(
                "server {} is at its limit of {limit}; evicting {} to make room",
                key.server,
                evicting.join(", ")
            ),
            false,
            jittered(handle.poll_interval),
        ),
        Some(Blocked::LimitReached { occupants }) => {
            let message = format!("server {}: {occupants}; nothing may be evicted", key.server);
            if obj
                .status()
                .and_then(|s| conditions::find(&s.conditions, conditions::READY))
                .map(|c| c.reason.as_str())
                != Some("LimitReached")
            {
                ctx.event(obj.as_ref(), true, "LimitReached", "Plan", message.clone())
                    .await;
            }
            Report::new(Phase::Blocked, "LimitReached", message, true, slow(handle))
        }
        None => Report::new(
            Phase::Pending,
            "Pending",
            "waiting for its turn on the server",
            false,
            jittered(handle.poll_interval),
        ),
    })
}

async fn evict<K: RestorePoint>(
    ctx: &Context,
    handle: &ProviderHandle,
    key: &ServerKey,
    guard: &mut ServerGuard,
    id: &str,
    owner: &str,
    requester: &str,
) -> Result<(), Error> {
    let Some(store) = K::store(ctx) else {
        return Ok(());
    };
    let Some(victim) = store
        .state()
        .into_iter()
        .find(|o| obj_key(o.as_ref()) == owner)
    else {
        return Ok(());
    };
    let api: Api<K> = Api::namespaced(ctx.client.clone(), &victim.namespace().unwrap_or_default());
    let message = format!(
        "evicted from server {} to make room for {requester} (per-server limit)",
        key.server
    );
    // Mark first: if we crash after the delete, the victim must still know not to re-create.
    let mut st = victim.status().cloned().unwrap_or_default();
    let now = Timestamp::now();
    st.phase = Some(Phase::Evicted);
    st.conditions = conditions::settle(
        &st.conditions,
        &[
            Desired::new(conditions::READY, false, "Evicted", message.clone()),
            Desired::new(conditions::RECONCILING, false, "Evicted", ""),
            Desired::new(conditions::STALLED, true, "Evicted", message.clone()),
        ],
        victim.meta().generation,
        now,
    );
    if let Some(written) = status::write(&api, &victim.name_any(), victim.status(), &st).await? {
        // The victim's own reconcile must not act on a copy from before it was marked.
        ctx.written.record(
            obj_key(victim.as_ref()),
            victim.meta().resource_version.as_deref(),
            written.meta().resource_version.as_deref(),
        );
    }
    let result = match K::CLASS {
        Class::Snapshot => handle.client.delete_snapshot(key.server, id).await,
        Class::Backup => handle.client.delete_backup(key.server, id).await,
    };
    match result {
        Ok(()) | Err(ProviderError::NotFound(_)) => {
            guard.remove(id);
            ctx.metrics
                .evictions
                .get_or_create(&crate::telemetry::metrics::KindLabels { kind: K::KIND })
                .inc();
            tracing::info!(kind = K::KIND, victim = %owner, requester, server = key.server, id, "evicted");
            ctx.event(victim.as_ref(), true, "Evicted", "Evict", message)
                .await;
            Ok(())
        }
        Err(e) => {
            guard.invalidate();
            Err(e.into())
        }
    }
}

async fn cleanup<K: RestorePoint>(
    obj: Arc<K>,
    ctx: &Context,
    api: &Api<K>,
) -> Result<Action, Error> {
    let common = obj.common();
    let mut current = obj.status().cloned().unwrap_or_default();
    current.create_intent = intent(obj.as_ref());
    if common.deletion_policy == DeletionPolicy::Retain {
        if let Some(id) = &current.provider_id {
            ctx.event(
                obj.as_ref(),
                false,
                "Retained",
                "Delete",
                format!(
                    "{} {id} left at the provider (deletionPolicy Retain)",
                    K::CLASS.as_str()
                ),
            )
            .await;
        }
        return Ok(Action::await_change());
    }
    let key = server_key(obj.as_ref());
    let handle = match ctx.registry.lookup(&key.provider) {
        // A kind the provider does not support never reached it: nothing to delete.
        Lookup::Ready(h) if !supports(&h, K::CLASS) => return Ok(Action::await_change()),
        Lookup::Ready(h) => h,
        // Nothing was ever created without a provider; with one missing we cannot delete, so
        // say why the object stays Terminating instead of stranding it silently.
        _ if current.provider_id.is_none() && current.create_intent.is_none() => {
            return Ok(Action::await_change());
        }
        _ => {
            let message = format!(
                "cannot delete at the provider: VpsProvider {:?} is missing or not Ready; the object stays until it is (or set deletionPolicy: Retain)",
                common.provider
            );
            hold(obj.as_ref(), api, &current, "DeletionBlocked", &message).await?;
            return Err(Error::Held(message));
        }
    };
    let mut guard = ctx.listings.lock(&key).await;
    let listing = match guard.listing(&handle.client, &key, Duration::ZERO).await {
        // The server itself is gone, and with it everything that was on it.
        Err(ProviderError::NotFound(_)) => return Ok(Action::await_change()),
        other => other?,
    };
    let Some(item) = find_own(obj.as_ref(), &listing) else {
        return Ok(Action::await_change());
    };
    if item.automatic {
        return Ok(Action::await_change());
    }
    let now = Timestamp::now();
    // Retention pruning by a schedule is the operator's own plan, not an outside burst.
    let planned = obj
        .annotations()
        .contains_key(super::schedule::PRUNED_BY_SCHEDULE);
    let acknowledged = planned || handle.deletions_allowed_until.is_some_and(|t| t > now);
    let allowed = handle
        .breaker
        .lock()
        .expect("breaker lock")
        .try_start(now, acknowledged);
    if !allowed {
        let message = format!(
            "deletion held by the mass-deletion breaker of VpsProvider {:?}: too many deletions at once. To let them through, annotate it: kubectl annotate vpsp {} {}=<RFC 3339 time a few minutes ahead>",
            common.provider,
            common.provider,
            super::provider::ALLOW_DELETIONS_UNTIL
        );
        hold(obj.as_ref(), api, &current, "DeletionHeld", &message).await?;
        return Err(Error::Held(message));
    }
    let result = match K::CLASS {
        Class::Snapshot => handle.client.delete_snapshot(key.server, &item.id).await,
        Class::Backup => handle.client.delete_backup(key.server, &item.id).await,
    };
    match result {
        Ok(()) | Err(ProviderError::NotFound(_)) => {
            guard.remove(&item.id);
            ctx.event(
                obj.as_ref(),
                false,
                "Deleted",
                "Delete",
                format!("{} {} deleted at the provider", K::CLASS.as_str(), item.id),
            )
            .await;
            Ok(Action::await_change())
        }
        Err(e @ ProviderError::Protected(_)) => {
            let message = format!(
                "the provider refuses to delete {} {}: {e}; unprotect it or set deletionPolicy: Retain",
                K::CLASS.as_str(),
                item.id
            );
            hold(obj.as_ref(), api, &current, "DeletionRefused", &message).await?;
            Err(Error::Held(message))
        }
        Err(e) => {
            guard.invalidate();
            Err(e.into())
        }
    }
}

/// `ownership::claim`, remembered so a stale copy of `obj` is not acted on.
async fn claim<K: RestorePoint>(
    ctx: &Context,
    api: &Api<K>,
    obj: &K,
    create_at: Option<Timestamp>,
) -> Result<(), Error> {
    let rv = ownership::claim(api, obj, create_at).await?;
    ctx.written.record(
        obj_key(obj),
        obj.meta().resource_version.as_deref(),
        rv.as_deref(),
    );
    Ok(())
}

/// The create intent of `obj`, wherever this version or an earlier one recorded it.
pub(super) fn intent<K: RestorePoint>(obj: &K) -> Option<CreateIntent> {
    ownership::intent_of(
        obj,
        || obj.marker(),
        obj.status().and_then(|s| s.create_intent.as_ref()),
    )
}

/// Says in status why a Terminating object is still there.
async fn hold<K: RestorePoint>(
    obj: &K,
    api: &Api<K>,
    current: &RestorePointStatus,
    reason: &'static str,
    message: &str,
) -> Result<(), Error> {
    let mut st = current.clone();
    st.phase = Some(Phase::Deleting);
    st.conditions = conditions::settle(
        &current.conditions,
        &[
            Desired::new(conditions::READY, false, reason, message),
            Desired::new(conditions::RECONCILING, false, reason, ""),
            Desired::new(conditions::STALLED, true, reason, message),
        ],
        obj.meta().generation,
        Timestamp::now(),
    );
    status::write(api, &obj.name_any(), Some(current), &st).await?;
    Ok(())
}

/// The provider object that belongs to `obj` (see `owns`).
fn find_own<K: RestorePoint>(obj: &K, listing: &ServerListing) -> Option<Item> {
    listing.items.iter().find(|i| owns(obj, i)).cloned()
}

fn intent_expired(intent: &CreateIntent, listing: &ServerListing) -> bool {
    let Ok(at) = intent.requested_at.parse::<Timestamp>() else {
        return true;
    };
    let grace = jiff::SignedDuration::try_from(INTENT_GRACE).unwrap_or_default();
    listing.complete && listing.fetched_at.duration_since(at) >= grace
}

fn terminal_reason(current: &RestorePointStatus) -> Option<&'static str> {
    let ready = conditions::find(&current.conditions, conditions::READY)?;
    ["ServerNotFound", "CreateRejected", "Unsupported"]
        .into_iter()
        .find(|r| *r == ready.reason)
}

/// Status from the provider object this object owns.
fn track<K: RestorePoint>(
    obj: &K,
    handle: &ProviderHandle,
    current: &RestorePointStatus,
    item: Item,
) -> Report {
    let poll = jittered(handle.poll_interval);
    let mut r = match item.state {
        RemoteState::Ready => Report {
            ready: true,
            ..Report::new(
                Phase::Ready,
                "Completed",
                format!("{} {} is complete", K::CLASS.as_str(), item.id),
                false,
                resync(handle.resync_interval),
            )
        },
        RemoteState::Failed => Report::new(
            Phase::Failed,
            "ProviderFailed",
            format!(
                "the provider reports {} {} as {:?}",
                K::CLASS.as_str(),
                item.id,
                item.raw_status
            ),
            true,
            Action::requeue(handle.resync_interval),
        ),
        RemoteState::Gone => Report::new(
            Phase::Failed,
            "GoneAtProvider",
            format!(
                "the provider reports {} {} as {:?}",
                K::CLASS.as_str(),
                item.id,
                item.raw_status
            ),
            true,
            Action::requeue(handle.resync_interval),
        ),
        RemoteState::Pending | RemoteState::Unknown => {
            let deadline = obj
                .common()
                .failure_deadline
                .and_then(|d| parse_duration(d).ok())
                .unwrap_or(K::DEFAULT_DEADLINE);
            let since = current
                .create_intent
                .as_ref()
                .and_then(|i| i.requested_at.parse::<Timestamp>().ok())
                .or(item.created_at);
            let overdue = since.is_some_and(|s| {
                Timestamp::now().duration_since(s)
                    > jiff::SignedDuration::try_from(deadline).unwrap_or_default()
            });
            if overdue {
                Report::new(
                    Phase::Failed,
                    "DeadlineExceeded",
                    format!(
                        "{} {} still {:?} after the failure deadline of {deadline:?}",
                        K::CLASS.as_str(),
                        item.id,
                        item.raw_status
                    ),
                    true,
                    Action::requeue(handle.resync_interval),
                )
            } else if item.state == RemoteState::Unknown {
                Report::new(
                    Phase::Creating,
                    "UnknownProviderStatus",
                    format!(
                        "the provider reports an undocumented status {:?}",
                        item.raw_status
                    ),
                    false,
                    poll,
                )
            } else {
                Report::new(
                    Phase::Creating,
                    "Creating",
                    format!("{} {} is being created", K::CLASS.as_str(), item.id),
                    false,
                    poll,
                )
            }
        }
    };
    r.intent = current.create_intent.clone();
    r.item = Some(item);
    r
}

/// Keeps the current status as it is.
fn keep(current: &RestorePointStatus, requeue: Action) -> Report {
    let ready = conditions::find(&current.conditions, conditions::READY);
    let reason = ready.map(|c| leak_reason(&c.reason)).unwrap_or("Pending");
    keep_reason(current, reason, requeue)
}

fn keep_reason(current: &RestorePointStatus, reason: &'static str, requeue: Action) -> Report {
    let ready = conditions::find(&current.conditions, conditions::READY);
    let stalled = conditions::is_true(&current.conditions, conditions::STALLED);
    Report {
        phase: current.phase.unwrap_or_default(),
        ready: ready.is_some_and(|c| c.status == "True"),
        reason,
        message: ready.map(|c| c.message.clone()).unwrap_or_default(),
        stalled,
        item: None,
        intent: current.create_intent.clone(),
        requeue,
    }
}

/// Condition reasons are from a fixed set; map a stored one back to its static form.
fn leak_reason(reason: &str) -> &'static str {
    const KNOWN: &[&str] = &[
        "Completed",
        "Creating",
        "CreateOutcomeUnknown",
        "UnknownProviderStatus",
        "ProviderFailed",
        "GoneAtProvider",
        "NotFoundAtProvider",
        "DeadlineExceeded",
        "LimitReached",
        "WaitingForRoom",
        "Evicted",
        "ServerNotFound",
        "CreateRejected",
        "Unsupported",
        "ProviderNotFound",
        "ProviderNotReady",
        "RateLimited",
        "Pending",
    ];
    KNOWN
        .iter()
        .find(|k| **k == reason)
        .copied()
        .unwrap_or("Pending")
}

async fn write_report<K: RestorePoint>(
    obj: &K,
    ctx: &Context,
    api: &Api<K>,
    current: &RestorePointStatus,
    r: Report,
) -> Result<Action, Error> {
    let generation = obj.meta().generation;
    let mut st = current.clone();
    st.observed_generation = generation;
    st.phase = Some(r.phase);
    st.create_intent = r.intent.clone().or(st.create_intent);
    if let Some(item) = &r.item {
        st.provider_id = Some(item.id.clone());
        if K::CLASS == Class::Snapshot {
            st.provider_name = Some(item.label.clone());
        }
        st.provider_status = Some(item.raw_status.clone());
        st.size_mb = item.size_mb.map(|s| s as i64);
        st.size = item.size_mb.map(|s| format!("{s}Mi"));
        st.provider_created_at = item.created_at.map(|t| t.to_string());
    }
    st.last_error = if r.ready || !r.stalled {
        None
    } else {
        Some(r.message.clone())
    };
    let reconciling = !r.ready && !r.stalled;
    st.conditions = conditions::settle(
        &current.conditions,
        &[
            Desired::new(conditions::READY, r.ready, r.reason, r.message.clone()),
            Desired::new(
                conditions::RECONCILING,
                reconciling,
                r.reason,
                if reconciling {
                    r.message.clone()
                } else {
                    String::new()
                },
            ),
            Desired::new(
                conditions::STALLED,
                r.stalled,
                r.reason,
                if r.stalled {
                    r.message.clone()
                } else {
                    String::new()
                },
            ),
        ],
        generation,
        Timestamp::now(),
    );
    if let Some(written) = status::write(api, &obj.name_any(), obj.status(), &st).await? {
        ctx.written.record(
            obj_key(obj),
            obj.meta().resource_version.as_deref(),
            written.meta().resource_version.as_deref(),
        );
    }
    Ok(r.requeue)
}

fn obj_key<K: Resource>(obj: &K) -> String {
    format!(
        "{}/{}",
        obj.meta().namespace.as_deref().unwrap_or_default(),
        obj.meta().name.as_deref().unwrap_or_default()
    )
}

/// Every declared object of this class on the same server, from the controller's cache.
fn declared_on_server<K: RestorePoint>(ctx: &Context, key: &ServerKey) -> Vec<Arc<K>> {
    let Some(store) = K::store(ctx) else {
        return Vec::new();
    };
    // Runs on every plan over the whole cache: compare in place instead of building keys.
    store
        .state()
        .into_iter()
        .filter(|o| {
            let c = o.common();
            c.server_id.max(0) as u64 == key.server
                && c.provider == key.provider.1
                && o.meta().namespace.as_deref().unwrap_or_default() == key.provider.0
        })
        .collect()
}

/// Whether `item` is the provider object `d` owns: by recorded id, by import id, or by marker
/// (never an automatic backup).
fn owns<K: RestorePoint>(d: &K, item: &Item) -> bool {
    let recorded = d.status().and_then(|s| s.provider_id.as_deref());
    match recorded.or(d.common().import_id) {
        Some(id) => id == item.id,
        None => !item.automatic && K::matches(&d.marker(), item),
    }
}

fn slots_for<K: RestorePoint>(
    ctx: &Context,
    listing: &ServerListing,
    declared: &[Arc<K>],
) -> Vec<Slot> {
    listing
        .items
        .iter()
        .map(|item| {
            let owner = if item.automatic {
                None
            } else {
                declared.iter().find(|d| owns(d.as_ref(), item))
            };
            let owner = match owner {
                None => Owner::Foreign,
                Some(d) => {
                    let c = d.common();
                    Owner::Declared {
                        key: obj_key(d.as_ref()),
                        pinned: c.pinned,
                        evictable: c.evictable
                            && d.meta().deletion_timestamp.is_none()
                            && !restore_pending_on::<K>(ctx, d.as_ref(), &item.id),
                    }
                }
            };
            Slot {
                id: item.id.clone(),
                created_at: item.created_at,
                state: match item.state {
                    RemoteState::Ready => SlotState::Completed,
                    RemoteState::Failed | RemoteState::Gone => SlotState::Failed,
                    RemoteState::Pending => SlotState::InProgress,
                    RemoteState::Unknown => SlotState::Unknown,
                },
                owner,
            }
        })
        .collect()
}

/// Whether an unfinished `VpsRestore` uses this object (by reference or provider id) as its
/// source: evicting it would pull the restore point out from under the restore.
fn restore_pending_on<K: RestorePoint>(ctx: &Context, obj: &K, provider_id: &str) -> bool {
    let Some(restores) = ctx.restores.get() else {
        return false;
    };
    let name = obj.meta().name.as_deref().unwrap_or_default();
    restores.state().iter().any(|r| {
        let finished = r.status.as_ref().is_some_and(|s| {
            s.restore_accepted_at.is_some() || s.phase == Some(crate::api::RestorePhase::Failed)
        });
        let src = &r.spec.source;
        let (by_ref, by_id) = match K::CLASS {
            Class::Snapshot => (
                src.snapshot_ref.as_ref().map(|x| x.name.as_str()),
                src.snapshot_id.as_deref(),
            ),
            Class::Backup => (
                src.backup_ref.as_ref().map(|x| x.name.as_str()),
                src.backup_id.as_deref(),
            ),
        };
        !finished
            && r.namespace() == obj.meta().namespace
            && (by_ref == Some(name) || by_id == Some(provider_id))
    })
}

/// Declared objects that still need a create: no provider object, nothing pending, not
/// terminal, not being deleted.
fn wants_for<K: RestorePoint>(declared: &[Arc<K>], listing: &ServerListing) -> Vec<Want> {
    declared
        .iter()
        .filter(|d| d.meta().deletion_timestamp.is_none() && d.common().import_id.is_none())
        .filter(|d| {
            let st = d.status().cloned().unwrap_or_default();
            st.provider_id.is_none()
                && st.phase != Some(Phase::Evicted)
                && terminal_reason(&st).is_none()
                && intent(d.as_ref()).is_none_or(|i| intent_expired(&i, listing))
                && find_own(d.as_ref(), listing).is_none()
        })
        .map(|d| Want {
            key: obj_key(d.as_ref()),
            declared_at: d
                .meta()
                .creation_timestamp
                .as_ref()
                .map(|t| t.0)
                .unwrap_or(Timestamp::UNIX_EPOCH),
        })
        .collect()
}

fn supports(handle: &ProviderHandle, class: Class) -> bool {
    match class {
        Class::Snapshot => handle.capabilities.snapshots,
        Class::Backup => handle.capabilities.backups,
    }
}

/// Requeue after `d` to `d` + 10 %: settled objects spread their re-lists, and a server is
/// never listed more often than once per resync period.
fn resync(d: Duration) -> Action {
    let spread = d.as_millis() as u64 / 10;
    Action::requeue(d + Duration::from_millis(rand::random_range(0..=spread)))
}

/// Requeue after `d` ± 10 %, so a fleet's polls spread instead of arriving together.
pub fn jittered(d: Duration) -> Action {
    let spread = d.as_millis() as u64 / 10;
    let offset = if spread == 0 {
        0
    } else {
        rand::random_range(0..=2 * spread)
    };
    Action::requeue(d.saturating_sub(Duration::from_millis(spread)) + Duration::from_millis(offset))
}

fn slow(handle: &ProviderHandle) -> Action {
    jittered(
        (handle.poll_interval * 4)
            .max(Duration::from_secs(60))
            .min(handle.resync_interval),
    )
}

pub fn error_policy<K: RestorePoint>(obj: Arc<K>, err: &Error, ctx: Arc<Context>) -> Action {
    let key = obj_key(obj.as_ref());
    let delay = ctx.backoff.next(&key, err.retry_after());
    tracing::warn!(kind = K::KIND, object = %key, error = %err, retry_in = ?delay, "reconcile failed");
    Action::requeue(delay)
}

// --- the two kinds --------------------------------------------------------------------------

impl RestorePoint for VpsSnapshot {
    const CLASS: Class = Class::Snapshot;
    const KIND: &'static str = "VpsSnapshot";
    const DEFAULT_DEADLINE: Duration = Duration::from_secs(30 * 60);

    fn common(&self) -> Common<'_> {
        let s = &self.spec;
        Common {
            provider: &s.provider_ref.name,
            server_id: s.server_id,
            description: s.description.as_deref(),
            deletion_policy: s.deletion_policy,
            import_id: s.import_id.as_deref(),
            pinned: s.pinned,
            evictable: s.evictable,
            failure_deadline: s.failure_deadline.as_deref(),
        }
    }
    fn status(&self) -> Option<&RestorePointStatus> {
        self.status.as_ref()
    }
    fn store(ctx: &Context) -> Option<&Store<Self>> {
        ctx.snapshots.get()
    }
    fn marker(&self) -> String {
        self.spec
            .snapshot_name
            .clone()
            .unwrap_or_else(|| derived_name(self))
    }
    fn matches(marker: &str, item: &Item) -> bool {
        item.label == marker
    }
    fn provider_description(&self) -> Option<String> {
        self.spec.description.clone()
    }
}

impl RestorePoint for VpsBackup {
    const CLASS: Class = Class::Backup;
    const KIND: &'static str = "VpsBackup";
    const DEFAULT_DEADLINE: Duration = Duration::from_secs(2 * 60 * 60);

    fn common(&self) -> Common<'_> {
        let s = &self.spec;
        Common {
            provider: &s.provider_ref.name,
            server_id: s.server_id,
            description: s.description.as_deref(),
            deletion_policy: s.deletion_policy,
            import_id: s.import_id.as_deref(),
            pinned: s.pinned,
            evictable: s.evictable,
            failure_deadline: s.failure_deadline.as_deref(),
        }
    }
    fn status(&self) -> Option<&RestorePointStatus> {
        self.status.as_ref()
    }
    fn store(ctx: &Context) -> Option<&Store<Self>> {
        ctx.backups.get()
    }
    fn marker(&self) -> String {
        format!("[vpsnap:{}]", self.uid().unwrap_or_default())
    }
    fn matches(marker: &str, item: &Item) -> bool {
        item.label.contains(marker)
    }
    fn provider_description(&self) -> Option<String> {
        Some(match &self.spec.description {
            Some(d) if !d.is_empty() => format!("{d} {}", self.marker()),
            _ => self.marker(),
        })
    }
}

/// Provider-side name for a snapshot without `spec.snapshotName`: the object name reduced to
/// the provider's alphabet, plus the first 8 characters of the UID so a re-created object of
/// the same name never adopts its predecessor's snapshot.
pub fn derived_name<K: Resource>(obj: &K) -> String {
    let name: String = obj
        .meta()
        .name
        .as_deref()
        .unwrap_or_default()
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
    let uid: String = obj
        .meta()
        .uid
        .as_deref()
        .unwrap_or_default()
        .chars()
        .filter(|c| *c != '-')
        .take(8)
        .collect();
    format!("{name}-{uid}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{ProviderRef, VpsSnapshotSpec};

    fn snap(name: &str, uid: &str) -> VpsSnapshot {
        let mut s = VpsSnapshot::new(
            name,
            VpsSnapshotSpec {
                provider_ref: ProviderRef { name: "p".into() },
                server_id: 1,
                snapshot_name: None,
                description: None,
                deletion_policy: DeletionPolicy::Delete,
                import_id: None,
                pinned: false,
                evictable: false,
                failure_deadline: None,
            },
        );
        s.metadata.uid = Some(uid.into());
        s
    }

    #[test]
    fn derived_names_fit_the_provider_alphabet_and_differ_per_uid() {
        let a = derived_name(&snap(
            "db.pre-upgrade",
            "0a1b2c3d-ffff-4444-8888-000000000000",
        ));
        assert_eq!(a, "db-pre-upgrade-0a1b2c3d");
        let b = derived_name(&snap(
            "db.pre-upgrade",
            "99999999-ffff-4444-8888-000000000000",
        ));
        assert_ne!(a, b);
        assert!(
            a.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        );
    }

    #[test]
    fn backup_marker_is_found_inside_a_description() {
        let item = Item {
            id: "1".into(),
            label: "nightly [vpsnap:abc]".into(),
            state: RemoteState::Ready,
            raw_status: "completed".into(),
            created_at: None,
            size_mb: None,
            protected: false,
            automatic: false,
        };
        assert!(VpsBackup::matches("[vpsnap:abc]", &item));
        assert!(!VpsBackup::matches("[vpsnap:abd]", &item));
    }

    #[test]
    fn intent_is_only_stale_after_the_grace_in_a_complete_listing() {
        let at = Timestamp::from_second(1_000).unwrap();
        let intent = CreateIntent {
            marker: "m".into(),
            requested_at: at.to_string(),
        };
        let listing = |secs: i64, complete: bool| ServerListing {
            items: vec![],
            complete,
            fetched: std::time::Instant::now(),
            fetched_at: Timestamp::from_second(secs).unwrap(),
        };
        assert!(!intent_expired(&intent, &listing(1_010, true)));
        assert!(intent_expired(&intent, &listing(1_030, true)));
        assert!(!intent_expired(&intent, &listing(1_030, false)));
    }
}
