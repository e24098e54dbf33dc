//! When a `VpsSnapshot`/`VpsBackup` starts to own something at the provider.
//!
//! Nothing needs cleaning up before a provider object exists, so the finalizer is not added
//! when the object appears but in the same write that records the create intent, right before
//! the create call: one apiserver write instead of two, and an object that never reached the
//! provider (provider missing, limit reached) deletes at once instead of hanging in
//! Terminating. The intent lives in an annotation rather than in status because it cannot be
//! reconstructed by observation (status can be), and so a backup/restore of the objects
//! (Velero, Argo CD) keeps it.
use jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams};
use kube::{Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::api::CreateIntent;

pub const FINALIZER: &str = "vpsnap.dev/cleanup";
/// When vpsnap last sent (or was about to send) the create call, RFC 3339.
pub const CREATE_REQUESTED_AT: &str = "vpsnap.dev/create-requested-at";

pub fn has_finalizer<K: Resource>(obj: &K) -> bool {
    obj.meta()
        .finalizers
        .as_ref()
        .is_some_and(|f| f.iter().any(|x| x == FINALIZER))
}

/// The recorded create intent: the annotation, or `status.createIntent` as written by earlier
/// versions (objects from before an upgrade must keep their crash safety).
pub fn intent_of<K: Resource>(
    obj: &K,
    marker: impl FnOnce() -> String,
    legacy: Option<&CreateIntent>,
) -> Option<CreateIntent> {
    match obj
        .meta()
        .annotations
        .as_ref()
        .and_then(|a| a.get(CREATE_REQUESTED_AT))
    {
        Some(at) => Some(CreateIntent {
            marker: marker(),
            requested_at: at.clone(),
        }),
        None => legacy.cloned(),
    }
}

/// Adds the finalizer and, with `create_at`, the create intent — in one write that only
/// succeeds against the version the decision was made on (two replicas in a leader handover
/// cannot both claim the same create).
/// Returns the new resourceVersion.
pub async fn claim<K>(
    api: &Api<K>,
    obj: &K,
    create_at: Option<Timestamp>,
) -> Result<Option<String>, kube::Error>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Serialize + std::fmt::Debug,
{
    let mut finalizers = obj.finalizers().to_vec();
    if !finalizers.iter().any(|f| f == FINALIZER) {
        finalizers.push(FINALIZER.to_string());
    }
    let mut metadata = serde_json::json!({
        "resourceVersion": obj.resource_version(),
        "finalizers": finalizers,
    });
    if let Some(at) = create_at {
        metadata["annotations"] = serde_json::json!({ CREATE_REQUESTED_AT: at.to_string() });
    }
    let patch = serde_json::json!({ "metadata": metadata });
    let updated = api
        .patch(
            &obj.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await?;
    Ok(updated.resource_version())
}

/// Removes the finalizer once the provider side is dealt with.
pub async fn release<K>(api: &Api<K>, obj: &K) -> Result<(), kube::Error>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Serialize + std::fmt::Debug,
{
    let finalizers: Vec<&String> = obj
        .finalizers()
        .iter()
        .filter(|f| *f != FINALIZER)
        .collect();
    let patch = serde_json::json!({
        "metadata": {
            "resourceVersion": obj.resource_version(),
            "finalizers": finalizers,
        }
    });
    match api
        .patch(
            &obj.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await
    {
        Ok(_) => Ok(()),
        // Already gone: someone else finished the deletion.
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::VpsSnapshot;

    fn snapshot(annotation: Option<&str>, finalizer: bool) -> VpsSnapshot {
        let mut s: VpsSnapshot = serde_json::from_value(serde_json::json!({
            "apiVersion": "vpsnap.dev/v1alpha1", "kind": "VpsSnapshot",
            "metadata": {"name": "a", "namespace": "n"},
            "spec": {"providerRef": {"name": "p"}, "serverId": 1},
        }))
        .unwrap();
        if let Some(at) = annotation {
            s.annotations_mut()
                .insert(CREATE_REQUESTED_AT.into(), at.into());
        }
        if finalizer {
            s.finalizers_mut().push(FINALIZER.into());
        }
        s
    }

    #[test]
    fn the_annotation_is_the_intent_and_status_is_read_for_objects_of_earlier_versions() {
        let legacy = CreateIntent {
            marker: "old".into(),
            requested_at: "2026-01-01T00:00:00Z".into(),
        };
        let annotated = snapshot(Some("2026-02-02T00:00:00Z"), true);
        let got = intent_of(&annotated, || "a-marker".into(), Some(&legacy)).unwrap();
        assert_eq!(got.marker, "a-marker");
        assert_eq!(got.requested_at, "2026-02-02T00:00:00Z");
        let plain = snapshot(None, false);
        assert_eq!(
            intent_of(&plain, || unreachable!(), Some(&legacy)),
            Some(legacy)
        );
        assert_eq!(intent_of(&plain, || unreachable!(), None), None);
        assert!(has_finalizer(&annotated) && !has_finalizer(&plain));
    }
}
