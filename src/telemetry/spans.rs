//! The spans of one reconcile, with stable names and fields: what a trace shows and what
//! dashboards and tests select on. They are ordinary `tracing` spans (target `vpsnap::span`),
//! exported over OTLP when the `otel` feature is built and `--otel-traces` is on, otherwise
//! seen only by a log subscriber that asks for them.
//!
//! | span | fields | where |
//! |---|---|---|
//! | `reconcile` | `kind`, `namespace`, `name`, `result` (`ok` or the error class), `otel.status_code` | around every reconcile of every kind |
//! | `listing` | `server`, `class` (`snapshot`/`backup`) | getting the server's listing (cached or fresh) |
//! | `claim` | `create` (whether a create intent is recorded) | the finalizer (+ intent) write before a provider call |
//! | `provider.request` | `provider`, `operation`, `http.request.method`, `url.template`, `http.response.status_code`, `retry_count`, `outcome`, `otel.kind` = `client` | one logical provider call, retries included |
//! | `status_write` | `kind` | the status patch |
//!
//! Field values are bounded and carry no secret: never a credential, a URL with a query, or a
//! response body. Object names appear only on `reconcile` (traces are per object by nature;
//! metrics never carry names).
use tracing::Span;

/// The target of every span here, so a filter can pick exactly them.
pub const TARGET: &str = "vpsnap::span";

pub const RECONCILE: &str = "reconcile";
pub const LISTING: &str = "listing";
pub const CLAIM: &str = "claim";
pub const PROVIDER_REQUEST: &str = "provider.request";
pub const STATUS_WRITE: &str = "status_write";

/// One reconcile of one object; `result` is filled by [`finish_reconcile`].
pub fn reconcile(kind: &str, namespace: &str, name: &str) -> Span {
    tracing::info_span!(
        target: TARGET,
        "reconcile",
        kind,
        namespace,
        name,
        result = tracing::field::Empty,
        "otel.status_code" = tracing::field::Empty,
    )
}

/// Records how a reconcile ended: `ok`, or the error's bounded class.
pub fn finish_reconcile(span: &Span, error_class: Option<&str>) {
    match error_class {
        None => {
            span.record("result", "ok");
        }
        Some(class) => {
            span.record("result", class);
            span.record("otel.status_code", "ERROR");
        }
    }
}

/// Reading one server's listing of `class` (`snapshot` or `backup`).
pub fn listing(server: u64, class: &str) -> Span {
    tracing::info_span!(target: TARGET, "listing", server, class)
}

/// The write that claims an object before a provider call (finalizer, and with `create` the
/// create intent).
pub fn claim(create: bool) -> Span {
    tracing::info_span!(target: TARGET, "claim", create)
}

/// One status write of a `kind` object.
pub fn status_write(kind: &str) -> Span {
    tracing::info_span!(target: TARGET, "status_write", kind)
}

/// One logical provider call (all its attempts); status and retry count are recorded as the
/// call proceeds ([`record_status`], [`record_retries`], [`record_outcome`]).
pub fn provider_request(provider: &str, operation: &str, method: &str, url_template: &str) -> Span {
    tracing::info_span!(
        target: TARGET,
        "provider.request",
        provider,
        operation,
        "http.request.method" = method,
        "url.template" = url_template,
        "http.response.status_code" = tracing::field::Empty,
        retry_count = 0u32,
        outcome = tracing::field::Empty,
        "otel.kind" = "client",
        "otel.status_code" = tracing::field::Empty,
    )
}

/// The HTTP status of the latest attempt.
pub fn record_status(span: &Span, code: u16) {
    span.record("http.response.status_code", code);
}

pub fn record_retries(span: &Span, retries: u32) {
    span.record("retry_count", retries);
}

/// `ok` or the error class of the call's final result.
pub fn record_outcome(span: &Span, outcome: &str) {
    span.record("outcome", outcome);
    if outcome != "ok" {
        span.record("otel.status_code", "ERROR");
    }
}
