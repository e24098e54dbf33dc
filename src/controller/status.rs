//! Writing status: only when it changed, so a settled object costs no apiserver writes.
//! Server-side apply on `/status`, so fields this operator stops setting are removed.
use kube::Resource;
use kube::api::{Api, Patch, PatchParams};
use serde::Serialize;
use serde::de::DeserializeOwned;

pub const MANAGER: &str = "vpsnap";

/// Applies `desired` as the status when it differs from `current`. Returns the object as
/// written, `None` when nothing was sent.
pub async fn write<K, S>(
    api: &Api<K>,
    name: &str,
    current: Option<&S>,
    desired: &S,
) -> Result<Option<K>, kube::Error>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug,
    S: Serialize + PartialEq,
{
    if current == Some(desired) {
        return Ok(None);
    }
    let patch = serde_json::json!({
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
        "status": desired,
    });
    let written = api
        .patch_status(
            name,
            &PatchParams::apply(MANAGER).force(),
            &Patch::Apply(&patch),
        )
        .await?;
    Ok(Some(written))
}

/// Versions of objects this process has already written past.
///
/// A reconcile that writes (a claim, a status) wakes the object again through the watch; the
/// next reconcile may run before the cache holds that write, on a copy that predates it.
/// Acting on such a copy would repeat the write, or worse, step the status back (a stale
/// "Creating" over a fresh "Failed"). The memo remembers, per object, the versions known to
/// precede our last write, and the reconciler waits for the watch instead of acting on one.
/// An entry lives only until the cache shows a version not in its list.
#[derive(Default)]
pub struct Written {
    entries: std::sync::Mutex<std::collections::HashMap<String, Vec<String>>>,
}

impl Written {
    /// Whether the cached copy (`cached_rv`) is older than a write we made.
    pub fn is_stale(&self, key: &str, cached_rv: Option<&str>) -> bool {
        let mut entries = self.entries.lock().expect("written lock");
        let Some(before) = entries.get(key) else {
            return false;
        };
        if cached_rv.is_some_and(|rv| before.iter().any(|b| b == rv)) {
            return true;
        }
        // The cache caught up (or someone else wrote since).
        entries.remove(key);
        false
    }

    /// Records that we wrote `key` to version `now`, past every version in `before`.
    pub fn record(&self, key: String, before: Vec<String>, now: Option<&str>) {
        let before: Vec<String> = before
            .into_iter()
            .filter(|b| Some(b.as_str()) != now)
            .collect();
        let mut entries = self.entries.lock().expect("written lock");
        if before.is_empty() {
            entries.remove(&key);
            return;
        }
        // Entries of objects deleted before their cache caught up are never read again; the
        // memo only saves work, so dropping it all bounds it.
        if entries.len() >= 4096 {
            entries.clear();
        }
        entries.insert(key, before);
    }

    pub fn forget(&self, key: &str) {
        self.entries.lock().expect("written lock").remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_copy_older_than_our_write_is_stale_until_the_cache_catches_up() {
        let w = Written::default();
        w.record("ns/a".into(), vec!["1".into(), "2".into()], Some("3"));
        assert!(w.is_stale("ns/a", Some("1")));
        assert!(w.is_stale("ns/a", Some("2")));
        assert!(!w.is_stale("ns/b", Some("1")), "other objects unaffected");
        assert!(!w.is_stale("ns/a", Some("3")), "the cache caught up");
        assert!(
            !w.is_stale("ns/a", Some("1")),
            "entry dropped once caught up"
        );
    }

    #[test]
    fn a_write_that_changed_nothing_leaves_the_copy_current() {
        let w = Written::default();
        w.record("ns/a".into(), vec!["7".into()], Some("7"));
        assert!(!w.is_stale("ns/a", Some("7")));
    }
}
