//! Starting and stopping the HTTP server, and the handle tests and benchmarks drive it with.

use super::config::SimConfig;
use super::conn::{Conn, SimListener};
use super::faults::Faults;
use super::gate::Sim;
use super::model::{CallRecord, Record, SimBackup, SimServer, SimSnapshot};
use super::{inspect, vps_rest, zomro};
use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use std::collections::BTreeMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Upper bound on a graceful shutdown; held requests wake at shutdown, so this is a backstop.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// A running simulator. Dropping it without [`SimHandle::shutdown`] leaves the server running
/// until the tokio runtime ends.
pub struct SimHandle {
    addr: SocketAddr,
    sim: Arc<Sim>,
    stop: watch::Sender<bool>,
    task: JoinHandle<io::Result<()>>,
}

/// Binds `listen` (port 0 picks a free port) and serves both APIs until shutdown.
pub async fn start(config: SimConfig, listen: SocketAddr) -> io::Result<SimHandle> {
    config
        .faults
        .validate()
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    let listener = TcpListener::bind(listen).await?;
    let addr = listener.local_addr()?;
    let (stop, stopped) = watch::channel(false);
    let sim = Arc::new(Sim::new(config, stopped.clone()));
    let app = router(sim.clone());
    let mut signal = stopped;
    let task = tokio::spawn(async move {
        axum::serve(
            SimListener(listener),
            app.into_make_service_with_connect_info::<Conn>(),
        )
        .with_graceful_shutdown(async move {
            let _ = signal.wait_for(|stop| *stop).await;
        })
        .await
    });
    Ok(SimHandle {
        addr,
        sim,
        stop,
        task,
    })
}

fn router(sim: Arc<Sim>) -> Router {
    vps_rest::routes()
        .merge(zomro::routes())
        .merge(inspect::routes())
        .fallback(fallback)
        .with_state(sim)
}

/// Unknown paths (including VpsRest paths without their trailing slash) are counted so a
/// test can see a client knocking on the wrong door.
async fn fallback(State(sim): State<Arc<Sim>>, uri: Uri) -> Response {
    if uri.path().starts_with("/api/") {
        sim.state().count_call("vps_rest.unmatched");
        vps_rest::not_found()
    } else {
        sim.state().count_call("unmatched");
        (StatusCode::NOT_FOUND, "not found\n").into_response()
    }
}

impl SimHandle {
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The address clients should dial: a wildcard bind is reached through loopback.
    fn base(&self) -> String {
        let ip = match self.addr.ip() {
            IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
            ip => ip,
        };
        format!("http://{}", SocketAddr::new(ip, self.addr.port()))
    }

    /// `http://127.0.0.1:P/api/v1/`
    pub fn vps_rest_url(&self) -> String {
        format!("{}/api/v1/", self.base())
    }

    /// `http://127.0.0.1:P/billmgr`
    pub fn zomro_url(&self) -> String {
        format!("{}/billmgr", self.base())
    }

    /// `http://127.0.0.1:P/_sim/`
    pub fn inspect_url(&self) -> String {
        format!("{}/_sim/", self.base())
    }

    /// Replaces the fault knobs at once; the seeded dice continue their sequence. Rates
    /// outside [0, 1] act as 0 or 1.
    pub fn set_faults(&self, faults: Faults) {
        self.sim.set_faults(faults);
    }

    pub fn faults(&self) -> Faults {
        self.sim.faults()
    }

    /// Requests per endpoint (`vps_rest.snapshots.create`, `zomro.instances.snapshots`, …),
    /// faulted ones included.
    pub fn calls(&self) -> BTreeMap<String, u64> {
        self.sim.state().calls()
    }

    /// Faults injected per kind (`latency`, `rate_429`, `error_5xx`, `timeout`, `drop`,
    /// `lost_create`, `fail`, `unknown_status`, `shuffle`).
    pub fn faults_injected(&self) -> BTreeMap<String, u64> {
        self.sim.state().faults_injected()
    }

    pub fn record(&self) -> Record {
        self.sim.state().record()
    }

    pub fn servers(&self) -> Vec<SimServer> {
        self.sim.state().servers()
    }

    /// All snapshots of `server` in creation order, whichever API made them: the provider's
    /// truth, including ones the API lists do not show yet and deleting ones.
    pub fn snapshots(&self, server: u64) -> Vec<SimSnapshot> {
        self.sim.state().snapshots(Some(server))
    }

    pub fn backups(&self, server: u64) -> Vec<SimBackup> {
        self.sim.state().backups(Some(server))
    }

    /// Every API request from number `since` on (`0` for all), with its `User-Agent`.
    pub fn call_log(&self, since: u64) -> Vec<CallRecord> {
        self.sim.state().call_log(since)
    }

    /// Number of create answers being held back right now (`hold_create_rate`).
    pub fn held_answers(&self) -> usize {
        self.sim.state().held().len()
    }

    /// The calls whose create answers are being held back right now.
    pub fn held_calls(&self) -> Vec<CallRecord> {
        self.sim.state().held()
    }

    /// Waits until `condition` holds, re-checking whenever the history, the call log or the
    /// held answers change. False if `timeout` passes first.
    pub async fn wait_for(&self, timeout: Duration, condition: impl Fn(&Self) -> bool) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let changed = self.sim.changes().notified();
            tokio::pin!(changed);
            // Registered before the check, so a change right after it still wakes us.
            changed.as_mut().enable();
            if condition(self) {
                return true;
            }
            tokio::select! {
                () = changed => {}
                () = tokio::time::sleep_until(deadline) => return condition(self),
            }
        }
    }

    /// Number of Zomro sessions not yet lapsed.
    pub fn sessions(&self) -> usize {
        self.sim.state().live_sessions()
    }

    /// A completed snapshot made outside the operator, bypassing limits and faults. An
    /// unknown server is added.
    pub fn add_foreign_snapshot(&self, server: u64, name: &str, protected: bool) -> u64 {
        inspect::foreign_snapshot(&self.sim, server, name, None, protected, None).id
    }

    /// A completed backup made outside the operator (automatic ones expire in a month).
    pub fn add_foreign_backup(&self, server: u64, automatic: bool) -> u64 {
        let description = if automatic {
            "Automatic daily backup"
        } else {
            "Manual backup"
        };
        inspect::foreign_backup(&self.sim, server, automatic, Some(description.into()), None).id
    }

    /// Back to the start-time state (objects, history, counters, sessions, faults, dice).
    pub fn reset(&self) {
        self.sim.reset();
    }

    /// Stops accepting, wakes held requests and waits (bounded) for connections to close.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let abort = self.task.abort_handle();
        if tokio::time::timeout(SHUTDOWN_GRACE, self.task)
            .await
            .is_err()
        {
            abort.abort();
        }
    }
}
