//! Wraps a controller's reconcile function: every reconcile runs in a `reconcile` span (see
//! `telemetry::spans`) and counts as taken from the work queue while it runs.
use std::future::Future;
use std::sync::Arc;

use kube::Resource;
use kube::runtime::controller::Action;
use tracing::Instrument;

use super::Error;
use super::context::Context;
use crate::telemetry::{queue, spans};

/// What `Controller::run` calls.
pub type Reconciling = std::pin::Pin<Box<dyn Future<Output = Result<Action, Error>> + Send>>;

/// `reconcile` with its span and queue bookkeeping, for `Controller::run`.
pub fn reconcile<K, F, Fut>(reconcile: F) -> impl FnMut(Arc<K>, Arc<Context>) -> Reconciling
where
    K: Resource<DynamicType = ()> + Send + Sync + 'static,
    F: Fn(Arc<K>, Arc<Context>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Action, Error>> + Send + 'static,
{
    let reconcile = Arc::new(reconcile);
    move |obj, ctx| {
        let reconcile = reconcile.clone();
        Box::pin(async move {
            let kind = queue::kind_of::<K>();
            let key = queue::key_of(obj.as_ref());
            let meta = obj.meta();
            let span = spans::reconcile(
                kind,
                meta.namespace.as_deref().unwrap_or_default(),
                meta.name.as_deref().unwrap_or_default(),
            );
            let _running = queue::work().start(kind, &key);
            let result = reconcile(obj, ctx).instrument(span.clone()).await;
            spans::finish_reconcile(&span, result.as_ref().err().map(Error::class));
            result
        })
    }
}
