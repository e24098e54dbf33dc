//! "Run this schedule once, now": the `vpsnap.dev/run-requested` annotation. Pure: the
//! schedule reconciler passes the annotation, the last value it answered and the clock.
//!
//! Each value is answered exactly once — the answer (`status.lastRunRequest`) is written with
//! the rest of the schedule's status, so re-applying the same value (a GitOps re-sync,
//! `kubectl annotate` repeated) does nothing. The value is an RFC 3339 time and doubles as the
//! run's scheduled time: children get the same deterministic names as a cron run at that
//! time, so a crash between creating them and recording the answer finds them again instead
//! of making a second set.
//!
//! A value older than [`MAX_AGE`] is not run: status is the only record of an answer, and an
//! object restored from a backup or re-created from Git without its status must not fire a
//! run that was asked for long ago. A value more than [`MAX_SKEW`] ahead of the operator's
//! clock is not run either (its children would carry a time that has not come).
use jiff::{SignedDuration, Timestamp};

use crate::api::RunRequestOutcome;

/// How old a request may be and still run.
pub const MAX_AGE: SignedDuration = SignedDuration::from_hours(1);
/// How far ahead of this process's clock a request may be (clock skew between the
/// requester and the operator).
pub const MAX_SKEW: SignedDuration = SignedDuration::from_mins(5);

/// What to do about the annotation now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunRequest {
    /// No annotation, or its value was answered already.
    Nothing,
    /// Run once with scheduled time `at`, and record `token` as answered.
    Run { token: String, at: Timestamp },
    /// Record `token` as answered without running, saying why.
    Answer {
        token: String,
        outcome: RunRequestOutcome,
        message: String,
    },
}

/// Decides about `annotation` given the value answered last (`handled`).
#[must_use]
pub fn decide(
    annotation: Option<&str>,
    handled: Option<&str>,
    suspended: bool,
    now: Timestamp,
) -> RunRequest {
    let Some(token) = annotation else {
        return RunRequest::Nothing;
    };
    if handled == Some(token) {
        return RunRequest::Nothing;
    }
    let token = token.to_owned();
    let answer = |outcome, message: String| RunRequest::Answer {
        token: token.clone(),
        outcome,
        message,
    };
    let Ok(at) = token.trim().parse::<Timestamp>() else {
        return answer(
            RunRequestOutcome::Rejected,
            format!(
                "annotation vpsnap.dev/run-requested={token:?} is not an RFC 3339 time; \
                 set it to the current time, e.g. $(date -u +%Y-%m-%dT%H:%M:%SZ)"
            ),
        );
    };
    // Whole seconds: child names and Kubernetes timestamps carry no more.
    let at = Timestamp::from_second(at.as_second()).unwrap_or(at);
    if suspended {
        return answer(
            RunRequestOutcome::Suspended,
            "the schedule is suspended: no run (set spec.suspend to false and request again)"
                .into(),
        );
    }
    let age = now.duration_since(at);
    if age > MAX_AGE {
        return answer(
            RunRequestOutcome::Rejected,
            format!(
                "run requested at {at} is older than {}: not run (request again with the current time)",
                friendly(MAX_AGE)
            ),
        );
    }
    if -age > MAX_SKEW {
        return answer(
            RunRequestOutcome::Rejected,
            format!(
                "run requested for {at}, more than {} ahead of the operator's clock ({now}): not run",
                friendly(MAX_SKEW)
            ),
        );
    }
    RunRequest::Run { token, at }
}

fn friendly(d: SignedDuration) -> String {
    let mins = d.as_secs() / 60;
    if mins % 60 == 0 {
        format!("{}h", mins / 60)
    } else {
        format!("{mins}m")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    const NOW: &str = "2026-11-23T12:00:00Z";

    #[test]
    fn table() {
        let now = ts(NOW);
        let run = |token: &str, at: &str| RunRequest::Run {
            token: token.into(),
            at: ts(at),
        };
        let cases: Vec<(Option<&str>, Option<&str>, bool, &str)> = vec![
            (None, None, false, "nothing"),
            (None, Some("2026-11-23T11:00:00Z"), false, "nothing"),
            (
                Some("2026-11-23T11:59:00Z"),
                Some("2026-11-23T11:59:00Z"),
                false,
                "nothing",
            ),
            (
                Some("2026-11-23T11:59:00Z"),
                Some("2026-11-23T11:58:00Z"),
                false,
                "run",
            ),
            (Some("2026-11-23T11:59:00Z"), None, false, "run"),
            (Some("2026-11-23T11:59:00Z"), None, true, "suspended"),
            (Some("yes please"), None, false, "rejected"),
            (Some("2026-11-23T10:59:59Z"), None, false, "rejected"),
            (Some("2026-11-23T12:06:00Z"), None, false, "rejected"),
            (Some("2026-11-23T12:04:00Z"), None, false, "run"),
            (Some("2026-11-23T11:00:00Z"), None, false, "run"),
        ];
        for (annotation, handled, suspended, want) in cases {
            let got = decide(annotation, handled, suspended, now);
            let kind = match &got {
                RunRequest::Nothing => "nothing",
                RunRequest::Run { .. } => "run",
                RunRequest::Answer {
                    outcome: RunRequestOutcome::Suspended,
                    ..
                } => "suspended",
                RunRequest::Answer {
                    outcome: RunRequestOutcome::Rejected,
                    ..
                } => "rejected",
                RunRequest::Answer { .. } => "other",
            };
            assert_eq!(kind, want, "{annotation:?} after {handled:?}: {got:?}");
        }
        assert_eq!(
            decide(Some("2026-11-23T11:59:30.750Z"), None, false, now),
            run("2026-11-23T11:59:30.750Z", "2026-11-23T11:59:30Z"),
            "whole seconds, the token kept as written"
        );
        match decide(Some("soon"), None, false, now) {
            RunRequest::Answer { message, .. } => {
                assert!(message.contains("vpsnap.dev/run-requested"), "{message}")
            }
            other => panic!("{other:?}"),
        }
    }

    proptest! {
        /// Once a value is recorded as answered, it never acts again, whatever the clock says.
        #[test]
        fn an_answered_value_never_runs_again(secs in -10_000i64..10_000, suspended in any::<bool>()) {
            let now = ts(NOW);
            let token = now.checked_add(SignedDuration::from_secs(secs)).unwrap().to_string();
            let first = decide(Some(&token), None, suspended, now);
            prop_assert_ne!(&first, &RunRequest::Nothing);
            prop_assert_eq!(decide(Some(&token), Some(&token), suspended, now), RunRequest::Nothing);
            if let RunRequest::Run { at, .. } = first {
                prop_assert!(!suspended);
                prop_assert!(now.duration_since(at) <= MAX_AGE);
                prop_assert!(at.duration_since(now) <= MAX_SKEW);
            }
        }
    }
}
