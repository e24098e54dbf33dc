//! The operator's clients of the apiserver: writes multiplexed on a few HTTP/2 connections,
//! watches on connections of their own.
//!
//! kube's default client speaks HTTP/1.1, where each request in flight holds a TLS connection
//! of its own. Reconciles wait on apiserver writes most of their time, so the number of them
//! that can run at once was paid for in connections (buffers, TLS state) — and too few of them
//! let a burst of applies queue behind a slow write (README, "Scale and resilience").
//! Writes (and the Lease) therefore go over HTTP/2, as client-go's do. Watches stay on kube's
//! default client: a handful of long streams that carry most of the bytes, and on a connection
//! of their own a watch read slowly can never hold up a write behind HTTP/2's shared
//! connection window. The layers on top are kube's own (base URI, retries, credentials, extra
//! headers), built from the same `Config`.
//!
//! HTTP/2 is offered in the TLS handshake; an apiserver that declines it gets HTTP/1.1 as
//! before. A configured proxy keeps kube's default client, which knows how to tunnel.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use kube::client::retry::RetryPolicy;
use kube::client::{ClientBuilder, ConfigExt};
use kube::{Client, Config};
use tower::retry::RetryLayer;
use tower::{BoxError, Service, ServiceBuilder, ServiceExt};

/// A connection that answers no ping for this long is dead; every request on it fails and the
/// next one dials again. client-go's HTTP/2 health check uses 30 s + 15 s.
const PING_EVERY: Duration = Duration::from_secs(30);
const PING_TIMEOUT: Duration = Duration::from_secs(15);
/// HTTP/2 connections for writes. One carries every request, but the apiserver reads and
/// answers one connection's frames in one goroutine: in `vpsnap-bench` one connection served
/// writes slower than kube's HTTP/1.1 pool (README, "Scale and resilience").
pub const CONNECTIONS: usize = 4;

pub struct Clients {
    /// For watches (kube's default client).
    pub watches: Client,
    /// For everything else: writes, the Lease, lists of occupancy objects.
    pub writes: Client,
}

/// The clients from the usual places (in-cluster service account, `$KUBECONFIG`, `~/.kube`).
pub async fn infer() -> Result<Clients, kube::Error> {
    let config = Config::infer().await.map_err(kube::Error::InferConfig)?;
    Ok(Clients {
        watches: Client::try_from(config.clone())?,
        writes: build(config)?,
    })
}

/// The HTTP/2 client: requests spread round-robin over [`CONNECTIONS`] connections.
pub fn build(config: Config) -> Result<Client, kube::Error> {
    if config.proxy_url.is_some() {
        return Client::try_from(config);
    }
    let connections = (0..CONNECTIONS)
        .map(|_| connection(&config))
        .collect::<Result<Vec<_>, _>>()?;
    let service = ServiceBuilder::new()
        .layer(config.base_uri_layer())
        .option_layer(
            config
                .default_retry
                .then(|| RetryLayer::new(RetryPolicy::server_retry())),
        )
        .option_layer(config.auth_layer()?)
        .layer(config.extra_headers_layer()?)
        .map_err(BoxError::from)
        .service(RoundRobin::new(connections));
    Ok(ClientBuilder::new(service, config.default_namespace.clone()).build())
}

type Connection = hyper_util::client::legacy::Client<
    hyper_timeout::TimeoutConnector<hyper_rustls::HttpsConnector<HttpConnector>>,
    kube::client::Body,
>;

/// One HTTP/2 connection (a client with a pool of its own, which HTTP/2 keeps at one).
fn connection(config: &Config) -> Result<Connection, kube::Error> {
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    let builder = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(config.rustls_client_config()?)
        .https_or_http();
    let builder = match &config.tls_server_name {
        Some(name) => {
            let name = name.clone().try_into().map_err(|_| {
                kube::Error::Service(format!("tls-server-name {name:?} is not a DNS name").into())
            })?;
            builder.with_server_name_resolver(hyper_rustls::FixedServerNameResolver::new(name))
        }
        None => builder,
    };
    let mut connector =
        hyper_timeout::TimeoutConnector::new(builder.enable_all_versions().wrap_connector(http));
    connector.set_connect_timeout(config.connect_timeout);
    connector.set_read_timeout(config.read_timeout);
    connector.set_write_timeout(config.write_timeout);
    connector.set_reset_reader_on_write(config.reset_reader_on_write);
    Ok(
        hyper_util::client::legacy::Client::builder(TokioExecutor::new())
            .timer(TokioTimer::new())
            .http2_keep_alive_interval(PING_EVERY)
            .http2_keep_alive_timeout(PING_TIMEOUT)
            .http2_keep_alive_while_idle(true)
            .build(connector),
    )
}

/// Each request to the next connection in turn.
#[derive(Clone)]
struct RoundRobin<S> {
    connections: Arc<[Slot<S>]>,
    next: Arc<AtomicUsize>,
}

/// One connection's client, and whether it is known to be open.
///
/// Until a request on it has succeeded, requests go one at a time: the client learns that a
/// connection speaks HTTP/2 only once it is up (in the TLS handshake), so a burst sent to a
/// client without one dials a connection per request — seen as 8–33 connections where 4 were
/// meant (`tests/apiserver_client.rs`, about 1 run in 7). After a failure the same holds again,
/// for a connection that may have gone.
struct Slot<S> {
    service: S,
    open: AtomicBool,
    alone: tokio::sync::Mutex<()>,
}

impl<S> RoundRobin<S> {
    fn new(connections: Vec<S>) -> Self {
        Self {
            connections: connections
                .into_iter()
                .map(|service| Slot {
                    service,
                    open: AtomicBool::new(false),
                    alone: tokio::sync::Mutex::new(()),
                })
                .collect(),
            next: Arc::default(),
        }
    }
}

impl<S, R> Service<R> for RoundRobin<S>
where
    S: Service<R> + Clone + Send + Sync + 'static,
    S::Future: Send,
    R: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // Readiness is asked of the chosen connection in `oneshot`.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: R) -> Self::Future {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.connections.len();
        let connections = self.connections.clone();
        Box::pin(async move {
            let slot = &connections[i];
            let alone = if slot.open.load(Ordering::Acquire) {
                None
            } else {
                let guard = slot.alone.lock().await;
                // Someone else opened it while this one waited: go along with the rest.
                (!slot.open.load(Ordering::Acquire)).then_some(guard)
            };
            let result = slot.service.clone().oneshot(request).await;
            slot.open.store(result.is_ok(), Ordering::Release);
            drop(alone);
            result
        })
    }
}
