//! When a `VpsSnapshot`/`VpsBackup` starts to own something at the provider.
//!
//! Nothing needs cleaning up before a provider object exists, so the finalizer is not added
//! when the object appears but in the same write that records the create intent, right before
//! the create call: one apiserver write instead of two, and an object that never reached the
//! provider (provider missing, limit reached) deletes at once instead of hanging in
//! Terminating. The intent lives in an annotation rather than in status because it cannot be
//! reconstructed by observation (status can be), and so a backup/restore of the objects
//! (Velero, Argo CD) keeps it.
//!
//! Both writes here are conditional on the version the decision was made from: of two
//! writers (a second replica in a leader handover, a reconcile on an outdated copy) at most
//! one gets through, and the other re-reads.
use jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams};
use kube::{Resource, ResourceExt};

use super::kind::RestorePoint;
use crate::api::CreateIntent;

pub const FINALIZER: &str = crate::api::admission::CLEANUP_FINALIZER;
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
pub fn intent_of<K: RestorePoint>(obj: &K) -> Option<CreateIntent> {
    match obj
        .meta()
        .annotations
        .as_ref()
        .and_then(|a| a.get(CREATE_REQUESTED_AT))
    {
        Some(at) => Some(CreateIntent {
            marker: obj.marker(),
            requested_at: at.clone(),
        }),
        None => obj.status().and_then(|s| s.create_intent.clone()),
    }
}

/// Adds the finalizer and, with `create_at`, the create intent, in one write conditional on
/// the version `seen`. Returns the object as written.
pub async fn claim<K: RestorePoint>(
    api: &Api<K>,
    seen: &K,
    create_at: Option<Timestamp>,
) -> Result<K, kube::Error> {
    let mut finalizers = seen.finalizers().to_vec();
    if !finalizers.iter().any(|f| f == FINALIZER) {
        finalizers.push(FINALIZER.to_string());
    }
    let mut metadata = serde_json::json!({
        "resourceVersion": seen.resource_version(),
        "finalizers": finalizers,
    });
    if let Some(at) = create_at {
        metadata["annotations"] = serde_json::json!({ CREATE_REQUESTED_AT: at.to_string() });
    }
    let patch = serde_json::json!({ "metadata": metadata });
    api.patch(
        &seen.name_any(),
        &PatchParams::default(),
        &Patch::Merge(&patch),
    )
    .await
}

/// Removes the finalizer once the provider side is dealt with, conditional on the version
/// `seen` (a change since, e.g. a new intent, must be looked at first).
pub async fn release<K: RestorePoint>(api: &Api<K>, seen: &K) -> Result<(), kube::Error> {
    let finalizers: Vec<&String> = seen
        .finalizers()
        .iter()
        .filter(|f| *f != FINALIZER)
        .collect();
    let patch = serde_json::json!({
        "metadata": {
            "resourceVersion": seen.resource_version(),
            "finalizers": finalizers,
        }
    });
    match api
        .patch(
            &seen.name_any(),
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
        let got = intent_of(&annotated).unwrap();
        assert_eq!(got.marker, annotated.marker());
        assert_eq!(got.requested_at, "2026-02-02T00:00:00Z");
        let mut plain = snapshot(None, false);
        assert_eq!(intent_of(&plain), None);
        plain.status = Some(crate::api::RestorePointStatus {
            create_intent: Some(legacy.clone()),
            ..Default::default()
        });
        assert_eq!(intent_of(&plain), Some(legacy));
        assert!(has_finalizer(&annotated) && !has_finalizer(&plain));
    }
}
