//! What differs between `VpsSnapshot` and `VpsBackup`: one method per operation, so the
//! reconciler never asks which kind it holds.
use std::fmt::Debug;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use kube::{Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::index::Index;
use crate::api::{
    Capabilities, DeletionPolicy, RestoreKind, RestorePointStatus, VpsBackup, VpsSnapshot,
};
use crate::controller::context::Context;
use crate::controller::listings::{Class, Item};
use crate::controller::registry::ProviderHandle;
use crate::provider::{Listing, ProviderClient, ProviderError};

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

/// A kind whose objects are one restore point (snapshot or backup) of one server.
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
    /// How a `VpsRestore` names this kind as its source.
    const RESTORE_KIND: RestoreKind;
    /// How long a create may stay in progress without `spec.failureDeadline`.
    const DEFAULT_DEADLINE: Duration;
    /// What the marker is to a user, for messages.
    const MARKER_NAME: &'static str;

    fn common(&self) -> Common<'_>;
    fn status(&self) -> Option<&RestorePointStatus>;
    /// This kind's declared objects, with this process's own latest writes.
    fn index(ctx: &Context) -> Option<&Arc<Index<Self>>>;

    /// What identifies vpsnap's provider object for this object: the snapshot name, or the
    /// tag in a backup's description. Deterministic from the object, so a restart finds it.
    fn marker(&self) -> String;
    /// Whether a listed provider object carries `marker`. Carrying it is no proof of
    /// ownership on its own: see `decide::owner`.
    fn carries(marker: &str, item: &Item) -> bool;
    fn provider_description(&self) -> Option<String>;
    /// The provider object's name, for `status.providerName` (backups have none).
    fn provider_name(item: &Item) -> Option<String>;

    /// The provider's per-server limit for this kind.
    fn limit(handle: &ProviderHandle) -> usize;
    fn supported(capabilities: &Capabilities) -> bool;

    /// Every object of this kind on the server, vpsnap's and everyone else's.
    fn list(
        client: &ProviderClient,
        server: u64,
    ) -> impl Future<Output = Result<Listing<Item>, ProviderError>> + Send;
    /// `Ok(None)`: accepted, but the provider gave nothing back; find it by its marker.
    fn create(
        client: &ProviderClient,
        server: u64,
        marker: &str,
        description: Option<&str>,
    ) -> impl Future<Output = Result<Option<Item>, ProviderError>> + Send;
    /// `NotFound` means already gone.
    fn delete(
        client: &ProviderClient,
        server: u64,
        id: &str,
    ) -> impl Future<Output = Result<(), ProviderError>> + Send;
}

/// Both specs carry the shared fields under the same names.
macro_rules! common_fields {
    ($spec:expr) => {{
        let s = $spec;
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
    }};
}

impl RestorePoint for VpsSnapshot {
    const CLASS: Class = Class::Snapshot;
    const KIND: &'static str = "VpsSnapshot";
    const RESTORE_KIND: RestoreKind = RestoreKind::Snapshot;
    const DEFAULT_DEADLINE: Duration = Duration::from_secs(30 * 60);
    const MARKER_NAME: &'static str = "spec.snapshotName";

    fn common(&self) -> Common<'_> {
        common_fields!(&self.spec)
    }
    fn status(&self) -> Option<&RestorePointStatus> {
        self.status.as_ref()
    }
    fn index(ctx: &Context) -> Option<&Arc<Index<Self>>> {
        ctx.snapshots.get()
    }
    fn marker(&self) -> String {
        self.spec
            .snapshot_name
            .clone()
            .unwrap_or_else(|| derived_name(self))
    }
    fn carries(marker: &str, item: &Item) -> bool {
        item.label == marker
    }
    fn provider_description(&self) -> Option<String> {
        self.spec.description.clone()
    }
    fn provider_name(item: &Item) -> Option<String> {
        Some(item.label.clone())
    }
    fn limit(handle: &ProviderHandle) -> usize {
        handle.snapshot_limit
    }
    fn supported(capabilities: &Capabilities) -> bool {
        capabilities.snapshots
    }
    async fn list(client: &ProviderClient, server: u64) -> Result<Listing<Item>, ProviderError> {
        let l = client.list_snapshots(server).await?;
        Ok(Listing {
            items: l.items.into_iter().map(Item::from).collect(),
            complete: l.complete,
        })
    }
    async fn create(
        client: &ProviderClient,
        server: u64,
        marker: &str,
        description: Option<&str>,
    ) -> Result<Option<Item>, ProviderError> {
        let made = client.create_snapshot(server, marker, description).await?;
        Ok(made.map(Item::from))
    }
    async fn delete(client: &ProviderClient, server: u64, id: &str) -> Result<(), ProviderError> {
        client.delete_snapshot(server, id).await
    }
}

impl RestorePoint for VpsBackup {
    const CLASS: Class = Class::Backup;
    const KIND: &'static str = "VpsBackup";
    const RESTORE_KIND: RestoreKind = RestoreKind::Backup;
    const DEFAULT_DEADLINE: Duration = Duration::from_secs(2 * 60 * 60);
    const MARKER_NAME: &'static str = "the backup tag";

    fn common(&self) -> Common<'_> {
        common_fields!(&self.spec)
    }
    fn status(&self) -> Option<&RestorePointStatus> {
        self.status.as_ref()
    }
    fn index(ctx: &Context) -> Option<&Arc<Index<Self>>> {
        ctx.backups.get()
    }
    fn marker(&self) -> String {
        backup_tag(&self.uid().unwrap_or_default())
    }
    fn carries(marker: &str, item: &Item) -> bool {
        tag_in(marker, &item.label)
    }
    fn provider_description(&self) -> Option<String> {
        Some(match &self.spec.description {
            Some(d) if !d.is_empty() => format!("{} {d}", self.marker()),
            _ => self.marker(),
        })
    }
    fn provider_name(_: &Item) -> Option<String> {
        None
    }
    fn limit(handle: &ProviderHandle) -> usize {
        handle.backup_limit
    }
    fn supported(capabilities: &Capabilities) -> bool {
        capabilities.backups
    }
    async fn list(client: &ProviderClient, server: u64) -> Result<Listing<Item>, ProviderError> {
        let l = client.list_backups(server).await?;
        Ok(Listing {
            items: l.items.into_iter().map(Item::from).collect(),
            complete: l.complete,
        })
    }
    async fn create(
        client: &ProviderClient,
        server: u64,
        _marker: &str,
        description: Option<&str>,
    ) -> Result<Option<Item>, ProviderError> {
        let made = client.create_backup(server, description).await?;
        Ok(Some(Item::from(made)))
    }
    async fn delete(client: &ProviderClient, server: u64, id: &str) -> Result<(), ProviderError> {
        client.delete_backup(server, id).await
    }
}

/// The tag vpsnap puts at the start of a backup's description (the provider has no backup
/// name). At the start, so a provider that truncates long descriptions keeps it.
pub fn backup_tag(uid: &str) -> String {
    format!("[vpsnap:{uid}]")
}

/// The shortest cut of a tag still recognised: `[vpsnap:` and the UID's first 8 hex digits
/// and dash. Combined with the create intent's time (see `decide::owner`) it is proof enough.
const SHORTEST_TAG: usize = "[vpsnap:".len() + 9;

/// Whether `description` carries `tag`: at its start (this version), anywhere (earlier
/// versions appended it), or cut short by a provider that truncates descriptions.
pub fn tag_in(tag: &str, description: &str) -> bool {
    description.contains(tag)
        || (description.len() >= SHORTEST_TAG
            && description.len() < tag.len()
            && tag.starts_with(description))
}

/// Provider-side name for a snapshot without `spec.snapshotName`: the object name reduced to
/// the provider's alphabet, plus the first 8 characters of the UID so a re-created object of
/// the same name never matches its predecessor's snapshot.
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
    use crate::provider::RemoteState;

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

    fn item(label: &str) -> Item {
        Item {
            id: "1".into(),
            label: label.into(),
            state: RemoteState::Ready,
            raw_status: "completed".into(),
            created_at: None,
            size_mb: None,
            protected: false,
            automatic: false,
        }
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
    fn a_backup_tag_is_found_first_last_or_cut_short() {
        let tag = backup_tag("0a1b2c3d-ffff-4444-8888-000000000000");
        assert!(VpsBackup::carries(&tag, &item(&format!("{tag} nightly"))));
        assert!(VpsBackup::carries(&tag, &item(&format!("nightly {tag}"))));
        assert!(VpsBackup::carries(&tag, &item(&tag[..20])));
        assert!(
            !VpsBackup::carries(&tag, &item(&tag[..10])),
            "too short to tell"
        );
        assert!(!VpsBackup::carries(
            &tag,
            &item("[vpsnap:99999999-ffff-4444-8888-000000000000]")
        ));
        assert!(!VpsBackup::carries(&tag, &item("Automatic daily backup")));
    }
}
