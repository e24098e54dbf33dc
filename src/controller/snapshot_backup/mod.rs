//! `VpsSnapshot` and `VpsBackup`: one restore point of one server each, under the provider's
//! per-server limit. One reconciler serves both kinds; what differs lives on `RestorePoint`.
//!
//! The path of a watch event to a provider call, top-down:
//! 1. `index` — the watch feeds the per-server index (declared objects, this process's own
//!    writes on top of the cache, unfinished restores).
//! 2. `reconcile` (here) — takes the server's lock, then reads the object's latest version.
//! 3. `facts` — gathers everything the decision needs, the server's listing included.
//! 4. `decide` — one pure function picks the step (`reason` says why).
//! 5. `act` — carries it out with writes conditional on what the decision saw; `claim`
//!    records the intent before a create; `report` renders the status and Events.
pub mod act;
pub mod claim;
pub mod decide;
pub mod facts;
pub mod index;
pub mod kind;
pub mod occupancy;
pub mod reason;
pub mod report;
pub mod resync_clock;

use std::sync::Arc;
use std::time::Instant;

use kube::runtime::controller::Action;

pub use kind::{Common, RestorePoint, derived_name};

use self::act::Act;
use self::decide::{CleanupStep, Step};
use self::facts::{Facts, Freshness};
use self::index::{ObjKey, server_key};
use super::context::Context;
use super::registry::Lookup;
use super::{Error, ProviderStep, outcome};
use crate::provider::ProviderError;

pub async fn reconcile<K: RestorePoint>(obj: Arc<K>, ctx: Arc<Context>) -> Result<Action, Error> {
    let started = Instant::now();
    let key = outcome::key(K::KIND, &ObjKey::of(obj.as_ref()));
    let result = run(obj, &ctx, started).await;
    outcome::finish(&ctx, K::KIND, &key, started, &result);
    result
}

pub fn error_policy<K: RestorePoint>(obj: Arc<K>, err: &Error, ctx: Arc<Context>) -> Action {
    let key = outcome::key(K::KIND, &ObjKey::of(obj.as_ref()));
    outcome::error_policy(&ctx, K::KIND, &key, err)
}

async fn run<K: RestorePoint>(
    obj: Arc<K>,
    ctx: &Context,
    started: Instant,
) -> Result<Action, Error> {
    let server = server_key(obj.as_ref());
    let lookup = ctx.lookup_provider(&server.provider).await;
    let mut guard = ctx.listings.lock(&server).await;
    // The server is ours now: only from here is the latest version worth reading.
    let key = ObjKey::of(obj.as_ref());
    let Some(obj) = K::index(ctx).and_then(|i| i.latest(&key)) else {
        ctx.sent.forget(&key.to_string());
        ctx.backoff.reset(&outcome::key(K::KIND, &key));
        return Ok(Action::await_change());
    };
    let deleting = obj.meta().deletion_timestamp.is_some();
    if deleting && !claim::has_finalizer(obj.as_ref()) {
        // Never owned anything at the provider: nothing to clean up.
        return Ok(Action::await_change());
    }
    let handle = match &lookup {
        Lookup::Ready(h) => Some(h),
        _ => None,
    };
    let mut facts = Facts::gather(ctx, obj.as_ref(), &lookup, &guard);
    loop {
        let need = if deleting {
            match decide::decide_cleanup(&facts) {
                CleanupStep::List => Freshness::Now,
                step => {
                    return act(ctx, &obj, &facts, handle, guard, started)
                        .cleanup(step)
                        .await;
                }
            }
        } else {
            match decide::decide(&facts) {
                Step::List(freshness) => freshness,
                step => {
                    return act(ctx, &obj, &facts, handle, guard, started)
                        .apply(step)
                        .await;
                }
            }
        };
        let Some(h) = handle else {
            // Only a Ready provider can be listed, and `decide` asks only then.
            return Ok(super::timing::requeue(decide::Requeue::Slow, None, None));
        };
        match facts::server(ctx, obj.as_ref(), h, &mut guard, need).await {
            Ok(server) => facts.server = Some(server),
            // The server itself is gone at the provider, and everything that was on it.
            Err(ProviderError::NotFound(_)) if deleting => {
                return act(ctx, &obj, &facts, handle, guard, started)
                    .cleanup(CleanupStep::Release { retained: None })
                    .await;
            }
            Err(e) => return Err(Error::provider(ProviderStep::List, e)),
        }
    }
}

fn act<'a, K: RestorePoint>(
    ctx: &'a Context,
    obj: &Arc<K>,
    facts: &'a Facts,
    handle: Option<&'a super::registry::ProviderHandle>,
    guard: super::listings::ServerGuard,
    started: Instant,
) -> Act<'a, K> {
    Act {
        ctx,
        obj: obj.clone(),
        facts,
        handle,
        guard: Some(guard),
        started,
    }
}
