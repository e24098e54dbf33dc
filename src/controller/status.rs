//! Writing status: only when it changed, so a settled object costs no apiserver writes, and
//! only over the version the decision saw, so a decision on an outdated copy cannot step the
//! status back (the write fails with 409 and the reconcile runs again). Server-side apply on
//! `/status`, so fields this operator stops setting are removed.
use kube::api::{Api, Patch, PatchParams};
use kube::{Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;

pub const MANAGER: &str = "vpsnap";

/// Applies `desired` as the status of `seen` when it differs from `current`, conditional on
/// `seen`'s resourceVersion. Returns the object as written, `None` when nothing was sent.
pub async fn write<K, S>(
    api: &Api<K>,
    seen: &K,
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
        "metadata": { "resourceVersion": seen.resource_version() },
        "status": desired,
    });
    let written = api
        .patch_status(
            &seen.name_any(),
            &PatchParams::apply(MANAGER).force(),
            &Patch::Apply(&patch),
        )
        .await?;
    Ok(Some(written))
}
