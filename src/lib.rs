//! vpsnap: a Kubernetes operator that manages VPS snapshots and backups declaratively.
//!
//! The path of data: `controller/` watches the custom resources of `api/`, asks the pure
//! planners in `plan/` what to do, and calls the provider through `provider/`. `sim/` is an
//! independent provider simulator used by tests, benchmarks and the demo.
pub mod api;
pub mod bench;
pub mod controller;
pub mod plan;
pub mod plugin;
pub mod provider;
pub mod sim;
pub mod telemetry;
