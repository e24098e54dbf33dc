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
    entries: std::sync::Mutex<std::collections::HashMap<String, Entry>>,
}

struct Entry {
    /// Versions older than our last write.
    before: Vec<String>,
    /// The version our last write produced.
    now: Option<String>,
}

impl Written {
    /// Whether the cached copy (`cached_rv`) is older than a write we made.
    pub fn is_stale(&self, key: &str, cached_rv: Option<&str>) -> bool {
        let mut entries = self.entries.lock().expect("written lock");
        let Some(entry) = entries.get(key) else {
            return false;
        };
        if cached_rv.is_some_and(|rv| entry.before.iter().any(|b| b == rv)) {
            return true;
        }
        // The cache caught up (or someone else wrote since).
        entries.remove(key);
        false
    }

    /// Records that we wrote `key`, whose cached copy was at `from`, to version `now`.
    /// Versions that preceded an earlier write of the same reconcile (a claim before the
    /// status) stay stale too.
    pub fn record(&self, key: String, from: Option<&str>, now: Option<&str>) {
        let mut entries = self.entries.lock().expect("written lock");
        let mut before = Vec::new();
        if let Some(earlier) = entries.remove(&key) {
            before.extend(earlier.before);
            before.extend(earlier.now);
        }
        before.extend(from.map(str::to_string));
        before.retain(|b| Some(b.as_str()) != now);
        before.sort();
        before.dedup();
        if before.is_empty() {
            return;
        }
        // Entries of objects deleted before their cache caught up are never read again; the
        // memo only saves work, so dropping it all bounds it.
        if entries.len() >= 4096 {
            entries.clear();
        }
        let now = now.map(str::to_string);
        entries.insert(key, Entry { before, now });
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
        // A claim (1 → 2), then a status write (2 → 3) in the same reconcile.
        w.record("ns/a".into(), Some("1"), Some("2"));
        w.record("ns/a".into(), Some("1"), Some("3"));
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
        w.record("ns/a".into(), Some("7"), Some("7"));
        assert!(!w.is_stale("ns/a", Some("7")));
    }
}
