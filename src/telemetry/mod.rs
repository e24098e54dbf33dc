//! Logs, metrics, traces and the health/metrics HTTP endpoint.
pub mod http;
pub mod logging;
pub mod metrics;
#[cfg(feature = "otel")]
pub mod otel;
pub mod probe;
pub mod process;
pub mod queue;
pub mod spans;
