//! Why a `VpsSnapshot`/`VpsBackup` is in the state it is: the `reason` of its conditions.
//!
//! A reason's meaning (ready, transient, stalled, terminal), its phase and its printable name
//! are methods here, and a stored condition is parsed back into a `Reason` before anything
//! looks at it, so no code compares reason strings.
use crate::api::Phase;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Reason {
    /// The provider object is complete.
    Completed,

    // Transient: time alone moves them on (kstatus `Reconciling`).
    Pending,
    Creating,
    CreateOutcomeUnknown,
    UnknownProviderStatus,
    WaitingForRoom,
    RateLimited,
    ListingIncomplete,
    /// Being deleted; waiting for something that resolves by itself.
    DeletionPending,

    // Stalled: waiting for something a person must change; re-checked slowly.
    ProviderNotFound,
    ProviderNotReady,
    LimitReached,
    NameConflict,
    AmbiguousMarker,
    DeletionBlocked,
    DeletionHeld,
    DeletionRefused,

    // Terminal: never left without a change of the spec.
    ProviderFailed,
    GoneAtProvider,
    NotFoundAtProvider,
    DeadlineExceeded,
    ServerNotFound,
    CreateRejected,
    Unsupported,
    InvalidSpec,

    /// Made room for another object, as `evictable: true` allowed: final, and not a failure.
    Evicted,
}

/// What a reason means for the object's conditions and for what happens next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Class {
    Ready,
    Transient,
    Stalled,
    Terminal,
    /// Evicted: neither ready, nor progressing, nor stuck.
    Settled,
}

impl Reason {
    pub const ALL: [Reason; 26] = [
        Reason::Completed,
        Reason::Pending,
        Reason::Creating,
        Reason::CreateOutcomeUnknown,
        Reason::UnknownProviderStatus,
        Reason::WaitingForRoom,
        Reason::RateLimited,
        Reason::ListingIncomplete,
        Reason::DeletionPending,
        Reason::ProviderNotFound,
        Reason::ProviderNotReady,
        Reason::LimitReached,
        Reason::NameConflict,
        Reason::AmbiguousMarker,
        Reason::DeletionBlocked,
        Reason::DeletionHeld,
        Reason::DeletionRefused,
        Reason::ProviderFailed,
        Reason::GoneAtProvider,
        Reason::NotFoundAtProvider,
        Reason::DeadlineExceeded,
        Reason::ServerNotFound,
        Reason::CreateRejected,
        Reason::Unsupported,
        Reason::InvalidSpec,
        Reason::Evicted,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Completed => "Completed",
            Reason::Pending => "Pending",
            Reason::Creating => "Creating",
            Reason::CreateOutcomeUnknown => "CreateOutcomeUnknown",
            Reason::UnknownProviderStatus => "UnknownProviderStatus",
            Reason::WaitingForRoom => "WaitingForRoom",
            Reason::RateLimited => "RateLimited",
            Reason::ListingIncomplete => "ListingIncomplete",
            Reason::DeletionPending => "DeletionPending",
            Reason::ProviderNotFound => "ProviderNotFound",
            Reason::ProviderNotReady => "ProviderNotReady",
            Reason::LimitReached => "LimitReached",
            Reason::NameConflict => "NameConflict",
            Reason::AmbiguousMarker => "AmbiguousMarker",
            Reason::DeletionBlocked => "DeletionBlocked",
            Reason::DeletionHeld => "DeletionHeld",
            Reason::DeletionRefused => "DeletionRefused",
            Reason::ProviderFailed => "ProviderFailed",
            Reason::GoneAtProvider => "GoneAtProvider",
            Reason::NotFoundAtProvider => "NotFoundAtProvider",
            Reason::DeadlineExceeded => "DeadlineExceeded",
            Reason::ServerNotFound => "ServerNotFound",
            Reason::CreateRejected => "CreateRejected",
            Reason::Unsupported => "Unsupported",
            Reason::InvalidSpec => "InvalidSpec",
            Reason::Evicted => "Evicted",
        }
    }

    /// The reason a stored condition names; `None` for one this version does not know.
    pub fn parse(text: &str) -> Option<Reason> {
        Reason::ALL.into_iter().find(|r| r.as_str() == text)
    }

    pub fn class(self) -> Class {
        match self {
            Reason::Completed => Class::Ready,
            Reason::Pending
            | Reason::Creating
            | Reason::CreateOutcomeUnknown
            | Reason::UnknownProviderStatus
            | Reason::WaitingForRoom
            | Reason::RateLimited
            | Reason::ListingIncomplete
            | Reason::DeletionPending => Class::Transient,
            Reason::ProviderNotFound
            | Reason::ProviderNotReady
            | Reason::LimitReached
            | Reason::NameConflict
            | Reason::AmbiguousMarker
            | Reason::DeletionBlocked
            | Reason::DeletionHeld
            | Reason::DeletionRefused => Class::Stalled,
            Reason::ProviderFailed
            | Reason::GoneAtProvider
            | Reason::NotFoundAtProvider
            | Reason::DeadlineExceeded
            | Reason::ServerNotFound
            | Reason::CreateRejected
            | Reason::Unsupported
            | Reason::InvalidSpec => Class::Terminal,
            Reason::Evicted => Class::Settled,
        }
    }

    pub fn is_terminal(self) -> bool {
        matches!(self.class(), Class::Terminal | Class::Settled)
    }

    /// Whether it needs a person (kstatus `Stalled`): stuck or failed, not evicted.
    pub fn is_stalled(self) -> bool {
        matches!(self.class(), Class::Stalled | Class::Terminal)
    }

    pub fn phase(self) -> Phase {
        match self {
            Reason::Completed => Phase::Ready,
            Reason::Pending
            | Reason::RateLimited
            | Reason::ListingIncomplete
            | Reason::ProviderNotFound
            | Reason::ProviderNotReady => Phase::Pending,
            Reason::Creating | Reason::CreateOutcomeUnknown | Reason::UnknownProviderStatus => {
                Phase::Creating
            }
            Reason::WaitingForRoom
            | Reason::LimitReached
            | Reason::NameConflict
            | Reason::AmbiguousMarker => Phase::Blocked,
            Reason::DeletionPending
            | Reason::DeletionBlocked
            | Reason::DeletionHeld
            | Reason::DeletionRefused => Phase::Deleting,
            Reason::ProviderFailed
            | Reason::GoneAtProvider
            | Reason::NotFoundAtProvider
            | Reason::DeadlineExceeded
            | Reason::ServerNotFound
            | Reason::CreateRejected
            | Reason::Unsupported
            | Reason::InvalidSpec => Phase::Failed,
            Reason::Evicted => Phase::Evicted,
        }
    }
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reason_parses_back_and_has_one_meaning() {
        for r in Reason::ALL {
            assert_eq!(Reason::parse(r.as_str()), Some(r));
            let c = r.class();
            assert_eq!(r.phase() == Phase::Ready, c == Class::Ready, "{r}");
            assert_eq!(r.phase() == Phase::Failed, c == Class::Terminal, "{r}");
            assert_eq!(r.phase() == Phase::Evicted, c == Class::Settled, "{r}");
        }
        assert_eq!(Reason::parse("NoSuchReason"), None);
        let names: std::collections::BTreeSet<_> = Reason::ALL.iter().map(|r| r.as_str()).collect();
        assert_eq!(names.len(), Reason::ALL.len());
    }

    #[test]
    fn an_eviction_is_final_but_not_a_failure() {
        assert!(Reason::Evicted.is_terminal());
        assert!(!Reason::Evicted.is_stalled());
        assert!(Reason::GoneAtProvider.is_terminal() && Reason::GoneAtProvider.is_stalled());
        assert!(!Reason::LimitReached.is_terminal() && Reason::LimitReached.is_stalled());
    }
}
