//! The operator process: one kube-runtime controller per kind, sharing a `Context`.
//!
//! Watch event → `Controller` → `provider::reconcile` (accounts) or
//! `restore_point::reconcile` (snapshots, backups) → `plan` (pure) → `crate::provider` (HTTP).
pub mod backoff;
pub mod context;
pub mod gauges;
pub mod leader;
pub mod listings;
pub mod ownership;
pub mod provider;
pub mod registry;
pub mod restore;
pub mod restore_point;
pub mod run;
pub mod schedule;
pub mod status;
pub mod traced;
pub mod watch;

use std::time::Duration;

use crate::provider::{ProviderError, RetryAdvice};

pub use run::{ControllerArgs, run};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("provider: {0}")]
    Provider(#[from] ProviderError),
    #[error("finalizer: {0}")]
    Finalizer(Box<kube::runtime::finalizer::Error<Error>>),
    /// Deliberately not proceeding (breaker, provider missing); status says why.
    #[error("{0}")]
    Held(String),
}

impl Error {
    /// Bounded label for metrics.
    pub fn class(&self) -> &'static str {
        match self {
            Error::Kube(_) => "Kube",
            Error::Provider(e) => e.class(),
            Error::Finalizer(_) => "Finalizer",
            Error::Held(_) => "Held",
        }
    }

    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Error::Provider(e) => match e.advice() {
                RetryAdvice::After(d) => Some(d),
                _ => None,
            },
            Error::Held(_) => Some(Duration::from_secs(30)),
            _ => None,
        }
    }
}
