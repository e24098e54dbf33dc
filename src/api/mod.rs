//! Custom resource types of the `vpsnap.dev/v1alpha1` API, one module per kind.
pub mod admission;
mod backup;
mod common;
pub mod conditions;
pub mod duration;
mod occupancy;
mod provider;
mod restore;
mod schedule;
mod snapshot;

pub use backup::*;
pub use common::*;
pub use occupancy::*;
pub use provider::*;
pub use restore::*;
pub use schedule::*;
pub use snapshot::*;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;

/// API group of every vpsnap kind.
pub const GROUP: &str = "vpsnap.dev";

/// Every CRD this operator serves, in a stable order (the order of `vpsnap crd`).
pub fn all_crds() -> Vec<CustomResourceDefinition> {
    vec![
        VpsProvider::crd(),
        VpsSnapshot::crd(),
        VpsBackup::crd(),
        VpsSnapshotSchedule::crd(),
        VpsRestore::crd(),
        VpsOccupancy::crd(),
    ]
}

/// All CRDs as one multi-document YAML stream, exactly what lives in `deploy/crds/`.
pub fn crds_yaml() -> Vec<(String, String)> {
    all_crds()
        .into_iter()
        .map(|crd| {
            let file = format!("{}.yaml", crd.metadata.name.clone().unwrap_or_default());
            let body = serde_yaml::to_string(&crd).expect("a CRD always serialises to YAML");
            (file, body)
        })
        .collect()
}
