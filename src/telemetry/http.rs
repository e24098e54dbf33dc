//! `/metrics`, `/livez`, `/readyz` and `/debug/log-level` on one port.
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::{ConnectInfo, State};
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;

use super::logging::LogLevel;
use super::metrics::Metrics;

/// Readiness flips to true once the controllers' caches have synced.
#[derive(Clone, Default)]
pub struct Readiness(Arc<AtomicBool>);

impl Readiness {
    pub fn set_ready(&self) {
        self.set(true);
    }
    pub fn set(&self, ready: bool) {
        self.0.store(ready, Ordering::SeqCst);
    }
    pub fn is_ready(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// What the endpoint serves.
#[derive(Clone)]
pub struct Endpoints {
    pub metrics: Arc<Metrics>,
    pub ready: Readiness,
    /// Updates gauges right before each scrape.
    pub refresh: Arc<dyn Fn() + Send + Sync>,
    pub log_level: Arc<LogLevel>,
}

/// Serves until `shutdown` resolves.
pub async fn serve(
    addr: SocketAddr,
    endpoints: Endpoints,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tracing::info!(addr = %listener.local_addr()?, "serving /metrics, /livez, /readyz, /debug/log-level");
    axum::serve(
        listener,
        router(endpoints).into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await
}

fn router(endpoints: Endpoints) -> Router {
    Router::new()
        .route("/metrics", get(metrics_handler))
        .route("/livez", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/debug/log-level", get(get_log_level).put(put_log_level))
        .with_state(endpoints)
}

async fn metrics_handler(State(state): State<Endpoints>) -> impl IntoResponse {
    (state.refresh)();
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.encode(),
    )
}

async fn readyz(State(state): State<Endpoints>) -> impl IntoResponse {
    if state.ready.is_ready() {
        (StatusCode::OK, "ok")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "caches not synced")
    }
}

async fn get_log_level(State(state): State<Endpoints>) -> impl IntoResponse {
    format!("{}\n", state.log_level.get())
}

/// Only from the pod itself (`kubectl port-forward` and `kubectl exec` arrive on loopback):
/// the metrics port is open to Prometheus, which must not be able to turn on trace logging.
async fn put_log_level(
    State(state): State<Endpoints>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    body: String,
) -> impl IntoResponse {
    if !peer.ip().is_loopback() {
        return (
            StatusCode::FORBIDDEN,
            "the log level can only be changed from inside the pod: use kubectl port-forward\n"
                .to_string(),
        );
    }
    let before = state.log_level.get();
    match state.log_level.set(&body) {
        Ok(()) => {
            let now = state.log_level.get();
            tracing::warn!(before, now, "log filter changed at run time");
            (StatusCode::OK, format!("{now}\n"))
        }
        Err(e) => (StatusCode::BAD_REQUEST, format!("{e}\n")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoints(level: Arc<LogLevel>) -> Endpoints {
        Endpoints {
            metrics: Metrics::new(),
            ready: Readiness::default(),
            refresh: Arc::new(|| {}),
            log_level: level,
        }
    }

    #[tokio::test]
    async fn the_log_level_changes_only_from_inside_the_pod() {
        let level = Arc::new(LogLevel::for_test("info"));
        let state = endpoints(level.clone());
        let remote: SocketAddr = "10.1.2.3:40000".parse().unwrap();
        let r = put_log_level(State(state.clone()), ConnectInfo(remote), "trace".into())
            .await
            .into_response();
        assert_eq!(r.status(), StatusCode::FORBIDDEN);
        assert_eq!(level.get(), "info");
        let local: SocketAddr = "[::1]:40000".parse().unwrap();
        let r = put_log_level(State(state), ConnectInfo(local), "debug".into())
            .await
            .into_response();
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(level.get(), "debug");
    }
}
