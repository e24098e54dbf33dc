//! The provider registry: one live client per `VpsProvider`, shared by every controller, so
//! all objects of an account share its rate limit and in-flight bound.
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jiff::Timestamp;

use crate::api::{Capabilities, ProviderType};
use crate::plan::breaker::Breaker;
use crate::provider::ProviderClient;

/// Namespace and name of a `VpsProvider`.
pub type ProviderKey = (String, String);

/// A provider as the object controllers see it.
#[derive(Clone)]
pub struct ProviderHandle {
    pub client: ProviderClient,
    pub type_: ProviderType,
    pub capabilities: Capabilities,
    pub snapshot_limit: usize,
    pub backup_limit: usize,
    pub poll_interval: Duration,
    pub resync_interval: Duration,
    /// Fingerprint of what the client was built from (generation + Secret version).
    pub fingerprint: String,
    pub breaker: Arc<Mutex<Breaker>>,
    /// Deletions bypass the breaker until this time (annotation on the VpsProvider).
    pub deletions_allowed_until: Option<Timestamp>,
}

/// What object controllers learn when they look a provider up.
pub enum Lookup {
    Ready(ProviderHandle),
    NotReady(String),
    /// The VpsProvider exists but this process has not judged it yet (it just started or
    /// took over). "Not found" would step Ready objects back; its judgement reconciles every
    /// object of it (`Registry::changes`).
    Unjudged,
    Missing,
}

#[derive(Clone)]
pub struct Registry {
    inner: Arc<Mutex<HashMap<ProviderKey, Entry>>>,
    /// Announces a provider whose readiness changed, so objects waiting for it are
    /// reconciled at once instead of at their next requeue.
    changes: tokio::sync::broadcast::Sender<ProviderKey>,
}

impl Default for Registry {
    fn default() -> Self {
        Self {
            inner: Arc::default(),
            changes: tokio::sync::broadcast::channel(1024).0,
        }
    }
}

enum Entry {
    Ready(ProviderHandle),
    NotReady(String),
}

impl Registry {
    pub fn lookup(&self, key: &ProviderKey) -> Lookup {
        match self.inner.lock().expect("registry lock").get(key) {
            Some(Entry::Ready(h)) => Lookup::Ready(h.clone()),
            Some(Entry::NotReady(why)) => Lookup::NotReady(why.clone()),
            None => Lookup::Missing,
        }
    }

    pub fn set_ready(&self, key: ProviderKey, handle: ProviderHandle) {
        let previous = self
            .inner
            .lock()
            .expect("registry lock")
            .insert(key.clone(), Entry::Ready(handle));
        if !matches!(previous, Some(Entry::Ready(_))) {
            let _ = self.changes.send(key);
        }
    }

    pub fn set_not_ready(&self, key: ProviderKey, why: String) {
        let previous = self
            .inner
            .lock()
            .expect("registry lock")
            .insert(key.clone(), Entry::NotReady(why));
        if !matches!(previous, Some(Entry::NotReady(_))) {
            let _ = self.changes.send(key);
        }
    }

    /// Keys of providers whose readiness changed, as they change.
    pub fn changes(&self) -> impl futures::Stream<Item = ProviderKey> + Send + 'static {
        futures::stream::unfold(self.changes.subscribe(), |mut rx| async move {
            loop {
                match rx.recv().await {
                    Ok(key) => return Some((key, rx)),
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
                }
            }
        })
    }

    pub fn remove(&self, key: &ProviderKey) {
        self.inner.lock().expect("registry lock").remove(key);
    }

    /// The handle currently registered, ready or not (to reuse its client and breaker).
    pub fn current(&self, key: &ProviderKey) -> Option<ProviderHandle> {
        match self.inner.lock().expect("registry lock").get(key) {
            Some(Entry::Ready(h)) => Some(h.clone()),
            _ => None,
        }
    }
}
