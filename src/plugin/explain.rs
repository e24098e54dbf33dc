//! The next step, in plain words, for an object's state. Pure: `why` and the waiting commands
//! print these. Reasons are the ones the operator writes into conditions (see the README's
//! troubleshooting list); an unknown reason still gets an honest default.
use super::refs::Kind;

/// What the user can do about `kind/name` whose deciding condition has `reason` and whose
/// `ready` status is `True`, `False` or `Unknown`.
pub fn next_step(kind: Kind, name: &str, ready: Option<&str>, reason: Option<&str>) -> String {
    let obj = format!("{}/{name}", kind.resource());
    let reason = reason.unwrap_or("");
    match (kind, ready, reason) {
        (Kind::Snapshot | Kind::Backup, Some("True"), _) => format!(
            "Nothing to do: it is a restore point. To restore from it: kubectl vpsnap restore SERVER --from-{} {name}",
            if kind == Kind::Snapshot { "snapshot" } else { "backup" }
        ),
        (Kind::Restore, Some("True"), _) => {
            "Nothing to do: the provider accepted the restore. A VpsRestore runs once; create a new one to restore again.".into()
        }
        (Kind::Schedule, _, "Suspended") => format!(
            "The schedule is suspended: set spec.suspend to false to resume (kubectl patch {obj} --type merge -p '{{\"spec\":{{\"suspend\":false}}}}')."
        ),
        (Kind::Schedule, Some("True"), _) => format!(
            "Nothing to do: it runs on its own. To run it once now: kubectl vpsnap run {name}; to see what it keeps: kubectl vpsnap retention {name}"
        ),
        (Kind::Provider, Some("True"), _) => {
            "Nothing to do: the credentials work and the API answers.".into()
        }
        (_, _, "LimitReached") => format!(
            "Make room on the server: delete a snapshot listed above that you no longer need \
             (kubectl delete vpssnapshot/NAME for vpsnap's, at the provider for others'), unpin \
             one, mark one `evictable: true`, or raise spec.limits on the VpsProvider if the \
             provider allows more. vpsnap retries by itself; {obj} needs no change."
        ),
        (_, _, "WaitingForRoom") => {
            "Wait: vpsnap is evicting an older evictable snapshot to make room; the create follows.".into()
        }
        (_, _, "Pending" | "Creating" | "PreSnapshotPending" | "RestoreRequested" | "Restoring") => {
            format!("Wait: vpsnap is working on it (kubectl wait --for=condition={} {obj}).",
                if kind == Kind::Restore { "Succeeded" } else { "Ready" })
        }
        (_, _, "Evicted") => format!(
            "It was evicted to make room on the server, as `evictable: true` allows; its provider \
             data is gone and it is never re-created. Delete it (kubectl delete {obj}) or drop it \
             from Git. Argo CD shows it Healthy meanwhile."
        ),
        (_, _, "CredentialsInvalid" | "SecretMissing" | "SecretInvalid" | "SecretUnreadable" | "ProviderAuthFailed") => {
            "Fix the VpsProvider's credentials Secret (key `token` for VpsRest, `username`/`password` for Zomro); vpsnap notices the change at once.".into()
        }
        (_, _, "ProviderNotReady" | "ProviderNotFound") => {
            "Fix the VpsProvider this object refers to first: kubectl vpsnap why vpsp/PROVIDER".into()
        }
        (_, _, "ServerNotFound") => {
            "The provider does not know this server id: serverId is immutable, so create a new object with the right id and delete this one.".into()
        }
        (_, _, "Unsupported") => {
            "The provider account cannot do this (see status.capabilities of the VpsProvider): use a snapshot instead, or another provider.".into()
        }
        (_, _, "InvalidSpec" | "EndpointInvalid") => {
            "Fix the field named in the message; the object is looked at again as soon as it changes.".into()
        }
        (_, _, "CreateRejected") => format!(
            "The provider refused the create (message above). Fix the cause, then delete {obj} and create it again."
        ),
        (_, _, "DeadlineExceeded") => format!(
            "Creation took longer than failureDeadline. Check the provider; delete {obj} to clean up, or recreate it with a longer failureDeadline."
        ),
        (_, _, "CreateOutcomeUnknown" | "OutcomeUnknown") => format!(
            "vpsnap cannot tell whether the provider acted and will not guess (it never calls twice). \
             Check at the provider; then delete {obj}, or import what exists with spec.importId in a new object."
        ),
        (_, _, "GoneAtProvider" | "NotFoundAtProvider" | "SourceGone") => format!(
            "The provider data is gone. Delete {obj} (and drop it from Git)."
        ),
        (_, _, "DeletionHeld" | "DeletionBlocked") => {
            "Many deletions at once are held by the deletion breaker. If they are intended: \
             kubectl annotate vpsp PROVIDER vpsnap.dev/allow-deletions-until=<RFC 3339 time a few minutes ahead>".into()
        }
        (_, _, "SourceNotReady" | "SourceNotFound" | "SourceMismatch") => {
            "Fix the restore source (it must exist, be Ready, and belong to the same provider and server); the VpsRestore waits for it.".into()
        }
        (_, _, "RestoreFailed" | "RestoreRejected" | "RestoreRefused") => format!(
            "The restore did not happen and is never retried. Fix the cause in the message, then create a new VpsRestore (kubectl vpsnap restore ...). Delete {obj} when done."
        ),
        (_, _, "RateLimited" | "Unreachable" | "ProviderFailed" | "UnknownProviderStatus") => {
            "Transient: vpsnap retries with backoff by itself. If it lasts, check the provider's endpoint and status page.".into()
        }
        (_, None, _) => "Wait: the operator has not reported on it yet. Is vpsnap running and watching this namespace?".into(),
        (_, _, r) => format!(
            "Reason {}: read the message and the Events above; vpsnap keeps reconciling it.",
            if r.is_empty() { "unknown" } else { r }
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_common_state_has_advice() {
        let cases = [
            (
                Kind::Snapshot,
                Some("True"),
                "Completed",
                "kubectl vpsnap restore SERVER --from-snapshot s",
            ),
            (Kind::Backup, Some("True"), "Completed", "--from-backup s"),
            (
                Kind::Snapshot,
                Some("False"),
                "LimitReached",
                "Make room on the server",
            ),
            (Kind::Snapshot, Some("False"), "Evicted", "drop it from Git"),
            (
                Kind::Backup,
                Some("False"),
                "SecretMissing",
                "credentials Secret",
            ),
            (
                Kind::Restore,
                Some("False"),
                "RestoreFailed",
                "never retried",
            ),
            (Kind::Restore, Some("True"), "Succeeded", "runs once"),
            (
                Kind::Schedule,
                Some("True"),
                "Suspended",
                "suspend to false",
            ),
            (
                Kind::Schedule,
                Some("True"),
                "Scheduled",
                "kubectl vpsnap run s",
            ),
            (Kind::Snapshot, None, "", "has not reported"),
            (
                Kind::Snapshot,
                Some("Unknown"),
                "Creating",
                "kubectl wait --for=condition=Ready vpssnapshot/s",
            ),
            (
                Kind::Restore,
                Some("Unknown"),
                "Pending",
                "condition=Succeeded",
            ),
            (Kind::Snapshot, Some("False"), "Brandnew", "Reason Brandnew"),
        ];
        for (kind, ready, reason, want) in cases {
            let got = next_step(kind, "s", ready, Some(reason));
            assert!(got.contains(want), "{kind:?} {reason}: {got}");
        }
    }
}
