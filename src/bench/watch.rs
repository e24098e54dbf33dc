//! Counting apiserver writes (and Ready objects) by watching one kind in one namespace.
//!
//! Every change of an object's `resourceVersion` is a write someone made: an add, a modify
//! (status, finalizers, spec) or a delete. A relist after a broken watch compares
//! resourceVersions too, so writes made while the watch was down are still counted.
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use kube::ResourceExt;
use kube::api::{Api, DynamicObject};
use kube::runtime::{WatchStreamExt, watcher};

use super::cluster::condition_of_value;

/// Writes seen so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Writes {
    pub added: u64,
    pub modified: u64,
    pub deleted: u64,
}

impl Writes {
    pub fn total(&self) -> u64 {
        self.added + self.modified + self.deleted
    }

    pub fn since(&self, earlier: &Writes) -> Writes {
        Writes {
            added: self.added - earlier.added,
            modified: self.modified - earlier.modified,
            deleted: self.deleted - earlier.deleted,
        }
    }
}

#[derive(Default)]
struct State {
    versions: HashMap<String, String>,
    ready: HashSet<String>,
    writes: Writes,
    synced: bool,
}

/// A watch on one kind in one namespace, counting writes until dropped.
pub struct WriteCounter {
    state: Arc<Mutex<State>>,
    task: tokio::task::JoinHandle<()>,
}

impl WriteCounter {
    pub fn start(api: Api<DynamicObject>) -> Self {
        let state = Arc::new(Mutex::new(State::default()));
        let st = state.clone();
        let task = tokio::spawn(async move {
            let stream = watcher(api, watcher::Config::default()).default_backoff();
            futures::pin_mut!(stream);
            while let Some(event) = stream.next().await {
                let Ok(event) = event else { continue };
                let mut s = st.lock().expect("watch state");
                match event {
                    watcher::Event::Apply(o) | watcher::Event::InitApply(o) => s.applied(&o),
                    watcher::Event::Delete(o) => {
                        let name = o.name_any();
                        s.ready.remove(&name);
                        if s.versions.remove(&name).is_some() {
                            s.writes.deleted += 1;
                        }
                    }
                    watcher::Event::Init => {}
                    watcher::Event::InitDone => s.synced = true,
                }
            }
        });
        Self { state, task }
    }

    pub fn writes(&self) -> Writes {
        self.state.lock().expect("watch state").writes
    }

    /// Objects with `Ready=True` now.
    pub fn ready(&self) -> usize {
        self.state.lock().expect("watch state").ready.len()
    }

    /// Objects present now.
    pub fn present(&self) -> usize {
        self.state.lock().expect("watch state").versions.len()
    }

    /// Waits (bounded) until the initial list is in.
    pub async fn wait_synced(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self.state.lock().expect("watch state").synced {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        false
    }
}

impl State {
    fn applied(&mut self, o: &DynamicObject) {
        let name = o.name_any();
        let rv = o.resource_version().unwrap_or_default();
        match self.versions.insert(name.clone(), rv.clone()) {
            None if self.synced => self.writes.added += 1,
            None => {}
            Some(old) if old != rv => self.writes.modified += 1,
            Some(_) => {}
        }
        let ready = condition_of_value(&o.data, "Ready").is_some_and(|(s, _, _)| s == "True");
        if ready {
            self.ready.insert(name);
        } else {
            self.ready.remove(&name);
        }
    }
}

impl Drop for WriteCounter {
    fn drop(&mut self) {
        self.task.abort();
    }
}
