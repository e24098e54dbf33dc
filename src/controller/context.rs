//! State shared by every reconciler.
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use kube::Client;
use kube::Resource;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::{ObjectRef, Store};

use super::backoff::Backoff;
use super::fencing::{LeaseFence, Timings};
use super::listings::Listings;
use super::registry::{Lookup, ProviderKey, Registry};
use super::snapshot_backup::facts::Sent;
use super::snapshot_backup::index::{Index, RestoreUses};
use crate::api::{VpsBackup, VpsProvider, VpsRestore, VpsSnapshot};
use crate::telemetry::metrics::Metrics;

/// How long a reconcile right after a start waits for the providers' cache to be filled.
const PROVIDERS_CACHE_WAIT: Duration = Duration::from_secs(10);

pub struct Context {
    pub client: Client,
    /// Lease, request-timeout and grace timings (see `fencing`).
    pub timings: Timings,
    /// This process's leadership, checked by every provider gate (with leader election).
    pub fence: Option<Arc<LeaseFence>>,
    pub registry: Registry,
    pub listings: Listings,
    pub metrics: Arc<Metrics>,
    pub recorder: Recorder,
    pub backoff: Backoff,
    /// Creates this process sent whose id is not recorded yet: finding one is no adoption.
    pub sent: Sent,
    /// Caches of the controllers, filled once they start.
    pub providers: OnceLock<Store<VpsProvider>>,
    /// Declared snapshots and backups by server, with this process's own writes.
    pub snapshots: OnceLock<Arc<Index<VpsSnapshot>>>,
    pub backups: OnceLock<Arc<Index<VpsBackup>>>,
    pub restores: OnceLock<Store<VpsRestore>>,
    /// Unfinished restores pin their source: it must not be evicted under them.
    pub restore_uses: OnceLock<Arc<RestoreUses>>,
}

impl Context {
    pub fn new(
        client: Client,
        metrics: Arc<Metrics>,
        instance: Option<String>,
        timings: Timings,
        fence: Option<Arc<LeaseFence>>,
    ) -> Arc<Self> {
        let reporter = Reporter {
            controller: "vpsnap".into(),
            instance,
        };
        Arc::new(Self {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            timings,
            fence,
            registry: Registry::default(),
            backoff: Backoff::default(),
            sent: Default::default(),
            listings: Listings::default(),
            metrics,
            providers: OnceLock::new(),
            snapshots: OnceLock::new(),
            backups: OnceLock::new(),
            restores: OnceLock::new(),
            restore_uses: OnceLock::new(),
        })
    }

    /// The provider `key` as the object controllers may act on it: the registry's judgement,
    /// or `Unjudged` while a VpsProvider that exists (and is not being deleted) has none yet.
    /// Right after a start the providers' cache may not be filled: whether the VpsProvider
    /// exists is then not known, and nothing would wake an object told `Unjudged` for a
    /// provider that does not exist — so this waits for the cache first, up to
    /// [`PROVIDERS_CACHE_WAIT`] (then `Unjudged`, looked at again later).
    pub async fn lookup_provider(&self, key: &ProviderKey) -> Lookup {
        match self.registry.lookup(key) {
            Lookup::Missing => {
                if self.provider_may_exist(key).await {
                    Lookup::Unjudged
                } else {
                    Lookup::Missing
                }
            }
            judged => judged,
        }
    }

    /// Whether the VpsProvider may exist: it is in the filled cache (not being deleted), or
    /// the cache did not fill within [`PROVIDERS_CACHE_WAIT`].
    async fn provider_may_exist(&self, (ns, name): &ProviderKey) -> bool {
        let Some(store) = self.providers.get() else {
            return true;
        };
        let synced = matches!(
            tokio::time::timeout(PROVIDERS_CACHE_WAIT, store.wait_until_ready()).await,
            Ok(Ok(()))
        );
        !synced
            || store
                .get(&ObjectRef::new(name).within(ns))
                .is_some_and(|p| p.meta().deletion_timestamp.is_none())
    }

    /// Publishes an Event; a failure to publish is logged, never fatal.
    pub async fn event<K: kube::Resource<DynamicType = ()>>(
        &self,
        obj: &K,
        warning: bool,
        reason: &str,
        action: &str,
        note: String,
    ) {
        let ev = Event {
            type_: if warning {
                EventType::Warning
            } else {
                EventType::Normal
            },
            reason: reason.into(),
            note: Some(truncate(note, 1000)),
            action: action.into(),
            secondary: None,
        };
        if let Err(e) = self.recorder.publish(&ev, &obj.object_ref(&())).await {
            tracing::warn!(error = %e, reason, "could not publish event");
        }
    }
}

pub fn truncate(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut cut = max;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::runtime::reflector;
    use kube::runtime::watcher::Event as WatchEvent;

    fn context() -> Arc<Context> {
        let config = kube::Config::new("http://127.0.0.1:9".parse().unwrap());
        let client = Client::try_from(config).unwrap();
        Context::new(client, Metrics::new(), None, Timings::default(), None)
    }

    /// Right after a start, a reconcile may come before the providers' cache is filled; an
    /// object whose provider does not exist must then learn `Missing` (and say
    /// ProviderNotFound), not `Unjudged` — no judgement would ever wake it.
    #[tokio::test]
    async fn a_provider_absent_from_the_filled_cache_is_missing_even_when_asked_before_it_filled() {
        let ctx = context();
        let (reader, mut writer) = reflector::store::<VpsProvider>();
        let _ = ctx.providers.set(reader);
        let key: ProviderKey = ("ns".into(), "missing".into());
        let asked = tokio::spawn({
            let ctx = ctx.clone();
            let key = key.clone();
            async move { ctx.lookup_provider(&key).await }
        });
        tokio::task::yield_now().await;
        writer.apply_watcher_event(&WatchEvent::Init);
        writer.apply_watcher_event(&WatchEvent::InitDone);
        assert!(matches!(asked.await.unwrap(), Lookup::Missing));
    }

    /// A cache that never fills does not hold a reconcile for ever.
    #[tokio::test(start_paused = true)]
    async fn a_cache_that_never_fills_leaves_the_provider_unjudged() {
        let ctx = context();
        let (reader, _writer) = reflector::store::<VpsProvider>();
        let _ = ctx.providers.set(reader);
        let key: ProviderKey = ("ns".into(), "missing".into());
        assert!(matches!(ctx.lookup_provider(&key).await, Lookup::Unjudged));
    }
}
