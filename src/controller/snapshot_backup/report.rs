//! What a verdict looks like in status, and which changes deserve an Event (pure).
use jiff::Timestamp;

use super::decide::Verdict;
use super::reason::{Class, Reason};
use crate::api::conditions::{self, Desired};
use crate::api::{CreateIntent, RestorePointStatus};
use crate::controller::listings::Item;

/// `current` updated to say `verdict`. `lastTransitionTime` only moves when a condition's
/// status flips, so a repeated verdict renders an identical status (and is not written).
pub fn render(
    current: &RestorePointStatus,
    generation: Option<i64>,
    verdict: &Verdict,
    intent: Option<CreateIntent>,
    provider_name: fn(&Item) -> Option<String>,
    now: Timestamp,
) -> RestorePointStatus {
    let mut st = current.clone();
    st.observed_generation = generation;
    st.phase = Some(verdict.reason.phase());
    st.create_intent = intent.or(st.create_intent);
    if let Some(item) = &verdict.item {
        st.provider_id = Some(item.id.clone());
        st.provider_name = provider_name(item).or(st.provider_name);
        st.provider_status = Some(item.raw_status.clone());
        st.size_mb = item.size_mb.map(|s| s as i64);
        st.size = item.size_mb.map(|s| format!("{s}Mi"));
        st.provider_created_at = item.created_at.map(|t| t.to_string());
    }
    let reason = verdict.reason;
    st.last_error = reason.is_stalled().then(|| verdict.message.clone());
    st.conditions = conditions::settle(
        &current.conditions,
        &conditions_for(reason, &verdict.message),
        generation,
        now,
    );
    st
}

/// `Ready`, `Reconciling` and `Stalled` for a reason (kstatus and `kubectl wait` read them).
fn conditions_for(reason: Reason, message: &str) -> [Desired; 3] {
    let class = reason.class();
    let ready = class == Class::Ready;
    let reconciling = class == Class::Transient;
    let stalled = reason.is_stalled();
    let only = |on: bool| {
        if on {
            message.to_string()
        } else {
            String::new()
        }
    };
    [
        Desired::new(conditions::READY, ready, reason.as_str(), message),
        Desired::new(
            conditions::RECONCILING,
            reconciling,
            reason.as_str(),
            only(reconciling),
        ),
        Desired::new(conditions::STALLED, stalled, reason.as_str(), only(stalled)),
    ]
}

/// An Event for a person: warning or not, reason, action, note.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Note {
    pub warning: bool,
    pub reason: &'static str,
    pub action: &'static str,
    pub message: String,
}

/// The Event a change to `verdict` deserves, if any: only what needs attention, and only when
/// the reason changes (a repeated LimitReached is not news). The routine create and Ready are
/// in status, the log and the metrics: at fleet scale an Event each would double the writes.
pub fn transition(previous: Option<Reason>, verdict: &Verdict) -> Option<Note> {
    if previous == Some(verdict.reason) {
        return None;
    }
    let action = match verdict.reason {
        Reason::LimitReached => "Plan",
        Reason::NameConflict | Reason::AmbiguousMarker => "Adopt",
        Reason::GoneAtProvider
        | Reason::NotFoundAtProvider
        | Reason::ProviderFailed
        | Reason::DeadlineExceeded => "Observe",
        Reason::ServerNotFound | Reason::CreateRejected => "Create",
        _ => return None,
    };
    Some(Note {
        warning: true,
        reason: verdict.reason.as_str(),
        action,
        message: verdict.message.clone(),
    })
}

/// The victim's status once it is chosen for eviction: final, and not a failure (Argo CD
/// and kstatus read it as settled, not degraded).
pub fn evicted(
    current: &RestorePointStatus,
    generation: Option<i64>,
    provider_id: &str,
    message: &str,
    now: Timestamp,
) -> RestorePointStatus {
    let mut st = current.clone();
    st.observed_generation = generation;
    st.phase = Some(Reason::Evicted.phase());
    st.provider_id = Some(provider_id.to_string());
    st.last_error = None;
    st.conditions = conditions::settle(
        &current.conditions,
        &conditions_for(Reason::Evicted, message),
        generation,
        now,
    );
    st
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::Phase;
    use crate::controller::snapshot_backup::decide::Requeue;

    fn at(s: i64) -> Timestamp {
        Timestamp::from_second(1_700_000_000 + s).unwrap()
    }

    #[test]
    fn every_reason_renders_conditions_that_agree_with_its_class() {
        for reason in Reason::ALL {
            let v = Verdict::new(reason, "why", Requeue::Poll);
            let st = render(&Default::default(), Some(3), &v, None, |_| None, at(0));
            let get = |t| conditions::find(&st.conditions, t).unwrap().status.clone();
            assert_eq!(
                get(conditions::READY) == "True",
                reason == Reason::Completed
            );
            assert_eq!(
                get(conditions::RECONCILING) == "True",
                reason.class() == Class::Transient
            );
            assert_eq!(get(conditions::STALLED) == "True", reason.is_stalled());
            assert_eq!(st.phase, Some(reason.phase()));
            assert_eq!(st.observed_generation, Some(3));
            assert_eq!(st.last_error.is_some(), reason.is_stalled(), "{reason}");
            assert!(st.conditions.iter().all(|c| c.reason == reason.as_str()));
        }
    }

    #[test]
    fn a_repeated_verdict_renders_the_same_status() {
        let v = Verdict::new(Reason::Creating, "x", Requeue::Poll);
        let first = render(&Default::default(), Some(1), &v, None, |_| None, at(0));
        let again = render(&first, Some(1), &v, None, |_| None, at(60));
        assert_eq!(first, again);
    }

    #[test]
    fn an_evicted_object_is_settled_not_failed() {
        let st = evicted(&Default::default(), Some(2), "801", "made room", at(0));
        assert_eq!(st.phase, Some(Phase::Evicted));
        assert_eq!(st.provider_id.as_deref(), Some("801"));
        for t in [
            conditions::READY,
            conditions::RECONCILING,
            conditions::STALLED,
        ] {
            let c = conditions::find(&st.conditions, t).unwrap();
            assert_eq!((c.status.as_str(), c.reason.as_str()), ("False", "Evicted"));
        }
    }

    #[test]
    fn events_only_for_news_that_needs_attention() {
        let limit = Verdict::new(Reason::LimitReached, "full", Requeue::Slow);
        assert!(transition(Some(Reason::Pending), &limit).is_some());
        assert!(transition(Some(Reason::LimitReached), &limit).is_none());
        let ready = Verdict::new(Reason::Completed, "ok", Requeue::Resync);
        assert!(transition(Some(Reason::Creating), &ready).is_none());
        let gone = Verdict::new(Reason::GoneAtProvider, "gone", Requeue::Never);
        assert!(transition(None, &gone).is_some_and(|n| n.warning));
    }
}
