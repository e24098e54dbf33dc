//! Where a provider request leaves the process: the HTTP connections, and the lease fence
//! checked at the socket write of every change.
//!
//! The gate checks the fence before an attempt starts, but between that check and the bytes
//! reaching the socket lie the connection pool, a connect, TLS and the scheduling of the
//! connection's task. A process stopped in that stretch (a stop signal, a VM pause) and thawed
//! after a standby took over would send the change late (src/controller/fencing.rs, "Honest
//! limit"); it was seen once in a two-replica chaos smoke: a backup create sent 1 ms after the
//! old leader's thaw. So a change's connection asks the fence again right before each write to
//! the socket, and a refused write fails the request with nothing of it sent.
//!
//! Changes travel on HTTP/1.1 connections of their own: between a request and its answer such a
//! connection writes nothing, so a fence that closes while a change already sent awaits its
//! answer cannot cut that answer off. (HTTP/2 writes window updates and pings while it reads.)
//! Reads keep the HTTP/2-capable pool and pass the gate's check only: a late read changes
//! nothing at the provider.
use std::error::Error as StdError;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::Uri;
use http_body_util::Full;
use hyper::rt::{Read, ReadBufCursor, Write};
use hyper_rustls::{HttpsConnector, MaybeHttpsStream};
use hyper_util::client::legacy::connect::{Connected, Connection, HttpConnector};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use rustls_platform_verifier::ConfigVerifierExt;
use tokio::net::TcpStream;

use super::{Fence, ProviderError};

type BoxError = Box<dyn StdError + Send + Sync>;
type Pool = hyper_util::client::legacy::Client<FencedConnector, Full<Bytes>>;

/// A refused socket write: the fence closed after the gate let the change through.
#[derive(Debug)]
pub(crate) struct FenceClosed(pub String);

impl std::fmt::Display for FenceClosed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl StdError for FenceClosed {}

impl FenceClosed {
    /// The refusal somewhere in an error's chain of causes, if that is why it failed.
    pub(crate) fn find<'a>(err: &'a (dyn StdError + 'static)) -> Option<&'a FenceClosed> {
        let mut cause = Some(err);
        while let Some(e) = cause {
            if let Some(closed) = e.downcast_ref::<FenceClosed>() {
                return Some(closed);
            }
            // `io::Error::source` skips the error it wraps; `get_ref` is the way to it.
            if let Some(closed) = e
                .downcast_ref::<io::Error>()
                .and_then(io::Error::get_ref)
                .and_then(|inner| inner.downcast_ref::<FenceClosed>())
            {
                return Some(closed);
            }
            cause = e.source();
        }
        None
    }
}

/// One account's connections: a pool for reads and a fenced HTTP/1.1 pool for changes.
#[derive(Clone)]
pub(crate) struct Connections {
    reads: Pool,
    changes: Pool,
}

impl std::fmt::Debug for Connections {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connections").finish_non_exhaustive()
    }
}

impl Connections {
    pub(crate) fn new(
        connect_timeout: Duration,
        fence: Option<Arc<dyn Fence>>,
    ) -> Result<Self, ProviderError> {
        let tls = rustls::ClientConfig::with_platform_verifier().map_err(|e| {
            ProviderError::Protocol(format!("cannot load the system's TLS trust: {e}"))
        })?;
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(connect_timeout));
        let https = || {
            hyper_rustls::HttpsConnectorBuilder::new()
                .with_tls_config(tls.clone())
                .https_or_http()
        };
        let reads = https().enable_all_versions().wrap_connector(http.clone());
        let changes = https().enable_http1().wrap_connector(http);
        Ok(Connections {
            reads: pool(FencedConnector {
                inner: reads,
                fence: None,
            }),
            changes: pool(FencedConnector {
                inner: changes,
                fence,
            }),
        })
    }

    /// The pool for a request that changes something at the provider, or for a read.
    pub(crate) fn for_request(&self, changes: bool) -> &Pool {
        if changes { &self.changes } else { &self.reads }
    }
}

fn pool(connector: FencedConnector) -> Pool {
    hyper_util::client::legacy::Client::builder(TokioExecutor::new())
        .timer(TokioTimer::new())
        .pool_timer(TokioTimer::new())
        .build(connector)
}

/// Connects as hyper-rustls does and puts the fence in front of every write.
#[derive(Clone)]
pub(crate) struct FencedConnector {
    inner: HttpsConnector<HttpConnector>,
    fence: Option<Arc<dyn Fence>>,
}

type Stream = MaybeHttpsStream<TokioIo<TcpStream>>;

impl tower::Service<Uri> for FencedConnector {
    type Response = Fenced<Stream>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let connecting = self.inner.call(uri);
        let fence = self.fence.clone();
        Box::pin(async move {
            Ok(Fenced {
                inner: connecting.await?,
                fence,
            })
        })
    }
}

/// A connection whose writes pass the fence first, as changes.
pub(crate) struct Fenced<S> {
    inner: S,
    fence: Option<Arc<dyn Fence>>,
}

impl<S> Fenced<S> {
    fn admit(&self) -> io::Result<()> {
        match &self.fence {
            Some(fence) => fence
                .admit(true)
                .map_err(|why| io::Error::other(FenceClosed(why))),
            None => Ok(()),
        }
    }
}

impl<S: Read + Unpin> Read for Fenced<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: Write + Unpin> Write for Fenced<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.admit()?;
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.admit()?;
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

impl<S: Connection> Connection for Fenced<S> {
    fn connected(&self) -> Connected {
        self.inner.connected()
    }
}
