//! Watches that survive one malformed object: each object is decoded on its own, and one that
//! no longer fits the Rust type (stored before a schema change, hand-edited in etcd) is
//! logged and left out instead of failing the whole watch for every other object.
use std::fmt::Debug;

use futures::{Stream, StreamExt};
use kube::core::DeserializeGuard;
use kube::runtime::watcher::{self, Event};
use kube::{Api, Resource};
use serde::de::DeserializeOwned;

pub fn guarded<K>(
    api: Api<DeserializeGuard<K>>,
    config: watcher::Config,
) -> impl Stream<Item = Result<Event<K>, watcher::Error>> + Send
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
{
    watcher::watcher(api, config).filter_map(|event| async move {
        match event {
            Err(e) => Some(Err(e)),
            Ok(Event::Init) => Some(Ok(Event::Init)),
            Ok(Event::InitDone) => Some(Ok(Event::InitDone)),
            Ok(Event::Apply(g)) => valid(g).map(|k| Ok(Event::Apply(k))),
            Ok(Event::InitApply(g)) => valid(g).map(|k| Ok(Event::InitApply(k))),
            Ok(Event::Delete(g)) => valid(g).map(|k| Ok(Event::Delete(k))),
        }
    })
}

fn valid<K: Resource<DynamicType = ()>>(guard: DeserializeGuard<K>) -> Option<K> {
    match guard.0 {
        Ok(k) => Some(k),
        Err(invalid) => {
            tracing::error!(
                kind = %K::kind(&()),
                namespace = invalid.metadata.namespace.as_deref().unwrap_or_default(),
                name = invalid.metadata.name.as_deref().unwrap_or_default(),
                error = %invalid.error,
                "skipping an object that does not match the CRD types; fix or delete it"
            );
            None
        }
    }
}
