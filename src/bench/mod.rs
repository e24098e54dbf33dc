//! Plumbing shared by the two measuring programs, `vpsnap-bench` (cost and speed at scale) and
//! `vpsnap-chaos` (invariants under faults and crashes): a client for the control plane of a
//! kubeconfig, a fresh namespace that is always cleaned up, the operator as a child process
//! (its `/metrics`, `/readyz`, memory and CPU), objects applied with bounded concurrency, and
//! the small statistics both print.
//!
//! Nothing here is used by the operator itself.
pub mod apiserver;
pub mod chaos;
pub mod cluster;
pub mod operator;
pub mod procfs;
pub mod replicas;
pub mod report;
pub mod watch;

/// Errors of the measuring programs: they print and exit, nothing matches on them.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
pub type Result<T, E = BoxError> = std::result::Result<T, E>;
