//! The reconcile work queue as seen from outside kube-runtime, whose scheduler exposes no
//! depth: an object is queued when its watch reports it changed and leaves the queue when a
//! worker starts reconciling it. Like the scheduler, an object counts once however many events
//! arrive before a worker takes it. Timed requeues (`Action::requeue`) are not counted: they
//! are planned waits, not backlog.
//!
//! One process-wide instance ([`work`]): the watch that feeds the queue and the wrapper that
//! runs each reconcile live in different places of the wiring, and neither has the other.
use std::collections::{BTreeMap, HashSet};
use std::sync::{LazyLock, Mutex, MutexGuard};

use kube::Resource;
use kube::runtime::watcher;

#[derive(Default)]
struct Kind {
    queued: HashSet<String>,
    running: i64,
}

/// Per kind: objects waiting for a worker, and reconciles running.
#[derive(Default)]
pub struct WorkQueue {
    kinds: Mutex<BTreeMap<&'static str, Kind>>,
}

/// A running reconcile; dropping it (also on panic or cancellation) ends it.
pub struct Running<'a> {
    queue: &'a WorkQueue,
    kind: &'static str,
}

impl Drop for Running<'_> {
    fn drop(&mut self) {
        if let Some(k) = self.queue.lock().get_mut(self.kind) {
            k.running -= 1;
        }
    }
}

impl WorkQueue {
    fn lock(&self) -> MutexGuard<'_, BTreeMap<&'static str, Kind>> {
        // Plain sets and counters, always consistent: a panic elsewhere cannot corrupt them.
        self.kinds.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The watch reported `key` changed: a reconcile is due.
    pub fn queued(&self, kind: &'static str, key: String) {
        self.lock().entry(kind).or_default().queued.insert(key);
    }

    /// `key` is gone: the controller drops it without a reconcile.
    pub fn forget(&self, kind: &'static str, key: &str) {
        if let Some(k) = self.lock().get_mut(kind) {
            k.queued.remove(key);
        }
    }

    /// A worker took `key`.
    pub fn start(&self, kind: &'static str, key: &str) -> Running<'_> {
        let mut kinds = self.lock();
        let k = kinds.entry(kind).or_default();
        k.queued.remove(key);
        k.running += 1;
        Running { queue: self, kind }
    }

    /// (kind, queued, running) for every kind seen so far.
    pub fn depths(&self) -> Vec<(&'static str, i64, i64)> {
        self.lock()
            .iter()
            .map(|(kind, k)| (*kind, k.queued.len() as i64, k.running))
            .collect()
    }

    /// Feeds the queue from a watch event of kind `K` (for `Stream::inspect`).
    pub fn observe<K: Resource<DynamicType = ()>>(
        &self,
        event: &Result<watcher::Event<K>, watcher::Error>,
    ) {
        let kind = kind_of::<K>();
        match event {
            Ok(watcher::Event::Apply(o) | watcher::Event::InitApply(o)) => {
                self.queued(kind, key_of(o));
            }
            Ok(watcher::Event::Delete(o)) => self.forget(kind, &key_of(o)),
            _ => {}
        }
    }
}

/// `namespace/name`, the key both sides agree on.
pub fn key_of<K: Resource>(obj: &K) -> String {
    let meta = obj.meta();
    format!(
        "{}/{}",
        meta.namespace.as_deref().unwrap_or_default(),
        meta.name.as_deref().unwrap_or_default()
    )
}

/// The kind's name as a `'static` label value.
pub fn kind_of<K: Resource<DynamicType = ()>>() -> &'static str {
    static KINDS: LazyLock<Mutex<HashSet<&'static str>>> = LazyLock::new(Default::default);
    let kind = K::kind(&());
    let mut kinds = KINDS.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(k) = kinds.get(kind.as_ref()) {
        return k;
    }
    // Bounded by the number of kinds this process watches.
    let leaked: &'static str = Box::leak(kind.into_owned().into_boxed_str());
    kinds.insert(leaked);
    leaked
}

/// The process's queue.
pub fn work() -> &'static WorkQueue {
    static WORK: LazyLock<WorkQueue> = LazyLock::new(WorkQueue::default);
    &WORK
}

/// Feeds [`work`] from a watch (for `Stream::inspect` in the wiring).
pub fn observe<K: Resource<DynamicType = ()>>(event: &Result<watcher::Event<K>, watcher::Error>) {
    work().observe(event);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::VpsSnapshot;

    fn snapshot(ns: &str, name: &str) -> VpsSnapshot {
        let mut s: VpsSnapshot = serde_json::from_value(serde_json::json!({
            "apiVersion": "vpsnap.dev/v1alpha1", "kind": "VpsSnapshot",
            "metadata": {"name": name, "namespace": ns},
            "spec": {"providerRef": {"name": "p"}, "serverId": 1}
        }))
        .unwrap();
        s.metadata.resource_version = Some("1".into());
        s
    }

    #[test]
    fn an_object_counts_once_until_a_worker_takes_it() {
        let q = WorkQueue::default();
        let a = snapshot("ns", "a");
        for _ in 0..3 {
            q.observe::<VpsSnapshot>(&Ok(watcher::Event::Apply(a.clone())));
        }
        q.observe::<VpsSnapshot>(&Ok(watcher::Event::InitApply(snapshot("ns", "b"))));
        assert_eq!(q.depths(), [("VpsSnapshot", 2, 0)]);
        let running = q.start("VpsSnapshot", "ns/a");
        assert_eq!(q.depths(), [("VpsSnapshot", 1, 1)]);
        // Changed again while running: due once more after this run.
        q.observe::<VpsSnapshot>(&Ok(watcher::Event::Apply(a.clone())));
        assert_eq!(q.depths(), [("VpsSnapshot", 2, 1)]);
        drop(running);
        assert_eq!(q.depths(), [("VpsSnapshot", 2, 0)]);
        // A deleted object is never reconciled: it leaves the queue.
        q.observe::<VpsSnapshot>(&Ok(watcher::Event::Delete(snapshot("ns", "b"))));
        assert_eq!(q.depths(), [("VpsSnapshot", 1, 0)]);
        let _ = q.start("VpsSnapshot", "ns/a");
        assert_eq!(q.depths(), [("VpsSnapshot", 0, 0)]);
    }

    #[test]
    fn init_markers_and_errors_change_nothing() {
        let q = WorkQueue::default();
        q.observe::<VpsSnapshot>(&Ok(watcher::Event::Init));
        q.observe::<VpsSnapshot>(&Ok(watcher::Event::InitDone));
        assert!(q.depths().is_empty());
    }

    #[test]
    fn kind_labels_are_interned() {
        assert_eq!(kind_of::<VpsSnapshot>(), "VpsSnapshot");
        assert!(std::ptr::eq(
            kind_of::<VpsSnapshot>(),
            kind_of::<VpsSnapshot>()
        ));
    }
}
