//! One place that turns any controller's reconcile result into metrics, backoff and logs.
use std::time::Instant;

use kube::runtime::controller::Action;

use super::Error;
use super::context::Context;

/// The backoff key of an object: kinds never share a counter, even for equal names.
pub fn key(kind: &str, obj: &impl std::fmt::Display) -> String {
    format!("{kind}/{obj}")
}

/// Records a finished reconcile; a success ends the object's backoff.
pub fn finish(
    ctx: &Context,
    kind: &'static str,
    key: &str,
    started: Instant,
    result: &Result<Action, Error>,
) {
    let label = match result {
        Ok(_) => {
            ctx.backoff.reset(key);
            "ok"
        }
        Err(e) => e.class(),
    };
    ctx.metrics.reconciled(kind, label, started.elapsed());
}

/// The retry after a failed reconcile: exponential with jitter, at least what the provider
/// asked for. A conflict only means the object moved on since it was read: not worth a warning.
pub fn error_policy(ctx: &Context, kind: &'static str, key: &str, err: &Error) -> Action {
    let delay = ctx.backoff.next(key, err.retry_after());
    if matches!(err, Error::Conflict { .. }) {
        tracing::debug!(kind, object = key, error = %err, retry_in = ?delay, "reconcile raced another write");
    } else {
        tracing::warn!(kind, object = key, step = err.class(), error = %err, retry_in = ?delay, "reconcile failed");
    }
    Action::requeue(delay)
}
