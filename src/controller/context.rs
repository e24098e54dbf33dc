//! State shared by every reconciler.
use std::sync::{Arc, OnceLock};

use futures::FutureExt;
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
    /// or `Unjudged` while a VpsProvider that exists (and is not being deleted) has none yet —
    /// or while the providers' cache is not filled, so whether it exists is not known.
    pub fn lookup_provider(&self, key: &ProviderKey) -> Lookup {
        match self.registry.lookup(key) {
            Lookup::Missing if self.provider_may_exist(key) => Lookup::Unjudged,
            judged => judged,
        }
    }

    fn provider_may_exist(&self, (ns, name): &ProviderKey) -> bool {
        let Some(store) = self.providers.get() else {
            return true;
        };
        let synced = store
            .wait_until_ready()
            .now_or_never()
            .is_some_and(|r| r.is_ok());
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
