//! The operator process: one kube-runtime controller per kind, sharing a `Context`.
//!
//! Watch event → `Controller` → `provider::reconcile` (accounts),
//! `snapshot_backup::reconcile` (snapshots, backups: index → facts → decide → act),
//! `schedule::reconcile`, `restore::reconcile` → `plan` (pure) → `crate::provider` (HTTP).
pub mod apiserver_client;
pub mod backoff;
pub mod context;
pub mod fencing;
pub mod gauges;
pub mod leader;
pub mod listings;
pub mod occupancy;
pub mod outcome;
pub mod provider;
pub mod registry;
pub mod restore;
pub mod run;
pub mod run_request;
pub mod schedule;
pub mod snapshot_backup;
pub mod status;
pub mod timing;
pub mod traced;
pub mod watch;

use std::time::Duration;

use crate::provider::{ProviderError, RetryAdvice};

pub use run::{ControllerArgs, run};

/// An apiserver write a reconcile makes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WriteStep {
    /// The finalizer and create intent (snapshots, backups).
    Claim,
    Status,
    /// Marking another object `Evicted` before deleting its provider object.
    EvictionMark,
    FinalizerRelease,
    /// A restore's request marker, before the restore call.
    RestoreMarker,
}

impl WriteStep {
    pub fn as_str(self) -> &'static str {
        match self {
            WriteStep::Claim => "claim",
            WriteStep::Status => "status write",
            WriteStep::EvictionMark => "eviction mark",
            WriteStep::FinalizerRelease => "finalizer release",
            WriteStep::RestoreMarker => "restore marker",
        }
    }
}

impl std::fmt::Display for WriteStep {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A provider call a reconcile makes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProviderStep {
    List,
    Create,
    Delete,
    Restore,
    /// Any other (credential checks).
    Call,
}

impl std::fmt::Display for ProviderStep {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ProviderStep::List => "list",
            ProviderStep::Create => "create",
            ProviderStep::Delete => "delete",
            ProviderStep::Restore => "restore",
            ProviderStep::Call => "call",
        })
    }
}

/// A failed reconcile, named by the step it failed in.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Reads, and writes of controllers that do not name their steps.
    #[error("kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("{step}: {source}")]
    Write {
        step: WriteStep,
        #[source]
        source: kube::Error,
    },
    /// A conditional write found the object changed since the decision read it.
    #[error("{step}: the object changed since it was read; deciding again")]
    Conflict { step: WriteStep },
    #[error("provider {step}: {source}")]
    Provider {
        step: ProviderStep,
        #[source]
        source: ProviderError,
    },
    #[error("finalizer: {0}")]
    Finalizer(Box<kube::runtime::finalizer::Error<Error>>),
    /// Deliberately not proceeding (breaker, provider missing); status says why.
    #[error("{0}")]
    Held(String),
}

impl From<ProviderError> for Error {
    fn from(source: ProviderError) -> Self {
        Error::Provider {
            step: ProviderStep::Call,
            source,
        }
    }
}

impl Error {
    /// A failed write; a 409 is a conflict with a newer version, not a failure.
    pub fn write(step: WriteStep, source: kube::Error) -> Self {
        match &source {
            kube::Error::Api(e) if e.code == 409 => Error::Conflict { step },
            _ => Error::Write { step, source },
        }
    }

    pub fn provider(step: ProviderStep, source: ProviderError) -> Self {
        Error::Provider { step, source }
    }

    /// Bounded label for metrics: the step that failed.
    pub fn class(&self) -> &'static str {
        match self {
            Error::Kube(_) => "kube",
            Error::Write { step, .. } => match step {
                WriteStep::Claim => "claim",
                WriteStep::Status => "status_write",
                WriteStep::EvictionMark => "eviction_mark",
                WriteStep::FinalizerRelease => "finalizer_release",
                WriteStep::RestoreMarker => "restore_marker",
            },
            Error::Conflict { .. } => "conflict",
            Error::Provider { step, .. } => match step {
                ProviderStep::List => "provider_list",
                ProviderStep::Create => "provider_create",
                ProviderStep::Delete => "provider_delete",
                ProviderStep::Restore => "provider_restore",
                ProviderStep::Call => "provider",
            },
            Error::Finalizer(_) => "finalizer",
            Error::Held(_) => "held",
        }
    }

    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Error::Provider { source, .. } => match source.advice() {
                RetryAdvice::After(d) => Some(d),
                _ => None,
            },
            Error::Held(_) => Some(Duration::from_secs(30)),
            _ => None,
        }
    }
}
