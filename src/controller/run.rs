//! Wiring: client, caches, the three controllers, the HTTP endpoint, shutdown.
use std::net::SocketAddr;
use std::sync::Arc;

use futures::channel::mpsc::UnboundedReceiver;
use futures::{FutureExt, StreamExt, future};
use k8s_openapi::api::core::v1::Secret;
use kube::api::Api;
use kube::core::{DeserializeGuard, PartialObjectMeta};
use kube::runtime::reflector::{self, ObjectRef, ReflectHandle, Store};
use kube::runtime::{Controller, WatchStreamExt, controller, watcher};
use kube::{Client, Resource, ResourceExt};

use super::context::Context;
use super::fencing::Timings;
use super::snapshot_backup::index::{Index, Observed, RestoreUses};
use super::snapshot_backup::{self, RestorePoint};
use super::{provider, restore, schedule, watch};
use crate::api::parse_duration;
use crate::api::{
    RestoreKind, VpsBackup, VpsProvider, VpsRestore, VpsSnapshot, VpsSnapshotSchedule,
};
use crate::telemetry::http::{self, Readiness};
use crate::telemetry::logging::{self, LogFormat};
use crate::telemetry::metrics::Metrics;

#[derive(clap::Args, Debug, Clone)]
pub struct ControllerArgs {
    /// Watch only this namespace (default: all namespaces).
    #[arg(long, env = "VPSNAP_WATCH_NAMESPACE")]
    pub watch_namespace: Option<String>,
    /// Address of the /metrics, /livez and /readyz endpoint.
    #[arg(long, default_value = "0.0.0.0:8080", env = "VPSNAP_METRICS_ADDR")]
    pub metrics_addr: SocketAddr,
    /// Reconcile only while holding the leader Lease (run more than one replica safely).
    #[arg(long, env = "VPSNAP_LEADER_ELECTION")]
    pub leader_election: bool,
    /// Name of the leader Lease.
    #[arg(long, default_value = "vpsnap-leader")]
    pub lease_name: String,
    /// Namespace of the leader Lease (default: $POD_NAMESPACE, else "default").
    #[arg(long, env = "POD_NAMESPACE")]
    pub lease_namespace: Option<String>,
    /// Lease duration in seconds: a standby takes over at most this long after the leader stops
    /// (plus the quiet period). Must exceed the clock-skew allowance plus the provider request
    /// timeout by at least 3 s (see README, "Crash safety").
    #[arg(long, default_value_t = 30)]
    pub lease_duration_secs: u64,
    /// No provider request is on the wire longer than this.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub provider_request_timeout: std::time::Duration,
    /// How far apart the clocks of two nodes may be.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub clock_skew_allowance: std::time::Duration,
    /// How long a provider may take to list an object it just created.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub provider_list_lag: std::time::Duration,
    /// Reconciles running at once, per kind. They wait on apiserver writes most of their time,
    /// and writes share a few HTTP/2 connections, so many cost little memory.
    #[arg(long, default_value_t = 64)]
    pub concurrency: u16,
    /// Log format.
    #[arg(long, value_enum, default_value_t = LogFormat::Text, env = "VPSNAP_LOG_FORMAT")]
    pub log_format: LogFormat,
    #[command(flatten)]
    pub telemetry: logging::TelemetryArgs,
}

fn api<K>(client: &Client, ns: &Option<String>) -> Api<K>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    match ns {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

impl ControllerArgs {
    pub fn timings(&self) -> Timings {
        Timings {
            lease: std::time::Duration::from_secs(self.lease_duration_secs),
            request_timeout: self.provider_request_timeout,
            clock_skew: self.clock_skew_allowance,
            list_lag: self.provider_list_lag,
        }
    }
}

pub async fn run(args: ControllerArgs) -> Result<(), Box<dyn std::error::Error>> {
    let telemetry = logging::init(args.log_format, &args.telemetry)?;
    let clients = super::apiserver_client::infer().await?;
    let watches = clients.watches;
    let writes = clients.writes;
    let metrics = Metrics::new();
    let timings = args.timings();
    let leader = super::leader::Leadership::start(&writes, &args, timings).await?;
    let ctx = Context::new(
        writes.clone(),
        metrics.clone(),
        std::env::var("POD_NAME").ok(),
        timings,
        leader.fence(),
    );
    let ready = Readiness::default();
    let (shutdown_tx, shutdown_rx) = tokio::sync::watch::channel(false);
    let shutdown = {
        let rx = shutdown_rx.clone();
        move || {
            let mut rx = rx.clone();
            async move {
                let _ = rx.wait_for(|v| *v).await;
            }
        }
    };

    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutting down");
        let _ = shutdown_tx.send(true);
    });

    let refresh_ctx = ctx.clone();
    let refresh: Arc<dyn Fn() + Send + Sync> =
        Arc::new(move || super::gauges::refresh(&refresh_ctx));
    let endpoints = http::Endpoints {
        metrics: metrics.clone(),
        ready: ready.clone(),
        refresh,
        log_level: telemetry.log_level.clone(),
    };
    let http = tokio::spawn(http::serve(args.metrics_addr, endpoints, shutdown()));

    // A standby is healthy while it waits: reporting it unready would stall rollouts and
    // node drains behind the PodDisruptionBudget. Once leading it is unready until synced.
    if args.leader_election {
        ready.set(true);
    }
    tokio::select! {
        _ = leader.wait_until_leader() => {}
        _ = shutdown() => return Ok(()),
    }
    ready.set(false);
    metrics.leader.set(1);
    if *shutdown_rx.borrow() {
        return Ok(());
    }
    tracing::info!(namespace = ?args.watch_namespace, "starting controllers");

    let cfg = controller::Config::default().concurrency(args.concurrency);
    let ns = &args.watch_namespace;

    // Providers: also woken when a referenced Secret changes (metadata only: no Secret data
    // is ever cached, and memory does not grow with the cluster's Secrets).
    let (provider_stream, provider_reader) = cached::<VpsProvider>(&watches, ns);
    let _ = ctx.providers.set(provider_reader.clone());
    let secret_trigger = watcher(
        api::<PartialObjectMeta<Secret>>(&watches, ns),
        watcher::Config::default(),
    )
    .default_backoff()
    .touched_objects();
    let providers_for_secrets = provider_reader.clone();
    let providers = Controller::for_stream(provider_stream, provider_reader.clone())
        .with_config(cfg.clone())
        .watches_stream(secret_trigger, move |secret| {
            let ns = secret.namespace();
            let name = secret.name_any();
            providers_for_secrets
                .state()
                .into_iter()
                .filter(|p| p.namespace() == ns && p.spec.credentials_secret_ref.name == name)
                .map(|p| ObjectRef::from_obj(p.as_ref()))
                .collect::<Vec<_>>()
        })
        .graceful_shutdown_on(shutdown())
        .run(
            super::traced::reconcile(provider::reconcile),
            provider::error_policy,
            ctx.clone(),
        )
        .for_each(|_| future::ready(()));

    // One watch per kind: schedules and restores follow snapshots and backups through the
    // restore-point controllers' caches instead of opening watches of their own (each watch
    // costs the apiserver a copy of every event).
    let (snapshots, snapshot_index, [snapshots_for_schedules, snapshots_for_restores]) =
        restore_point_controller::<VpsSnapshot, _>(&watches, ns, &ctx, cfg.clone(), shutdown());
    let snapshot_reader = snapshot_index.store().clone();
    let _ = ctx.snapshots.set(snapshot_index);
    let (backups, backup_index, [backups_for_schedules, backups_for_restores]) =
        restore_point_controller::<VpsBackup, _>(&watches, ns, &ctx, cfg.clone(), shutdown());
    let backup_reader = backup_index.store().clone();
    let schedules = schedule_controller(
        &watches,
        ns,
        &ctx,
        cfg.clone(),
        (snapshots_for_schedules, backups_for_schedules),
        shutdown(),
    );
    let restores = restore_controller(
        &watches,
        ns,
        &ctx,
        cfg.clone(),
        (snapshots_for_restores, backups_for_restores),
        shutdown(),
    );
    let _ = ctx.backups.set(backup_index);

    let readiness = {
        let ready = ready.clone();
        async move {
            let synced = future::join3(
                provider_reader.wait_until_ready(),
                snapshot_reader.wait_until_ready(),
                backup_reader.wait_until_ready(),
            )
            .await;
            if synced.0.is_ok() && synced.1.is_ok() && synced.2.is_ok() {
                tracing::info!("caches synced; ready");
                ready.set_ready();
            }
        }
    };

    // What fills each server, for `kubectl vpsnap servers` and `why`: from the caches only.
    let occupancy = super::occupancy::run(
        writes,
        Arc::new(super::occupancy::ContextSource(ctx.clone())),
        shutdown(),
    );

    let lost = leader.lost();
    tokio::select! {
        _ = future::join_all(vec![
            providers.boxed(),
            snapshots.boxed(),
            backups.boxed(),
            schedules.boxed(),
            restores.boxed(),
            readiness.boxed(),
            occupancy.boxed(),
        ]) => {}
        _ = lost => {
            tracing::error!("leadership lost; exiting so no provider call is made without the lease");
            std::process::exit(1);
        }
    }
    leader.release().await;
    telemetry.shutdown();
    let _ = http.await;
    Ok(())
}

/// Schedules own their children: a child changing (e.g. becoming Ready) or finally gone
/// (its counts in the schedule's status) wakes its schedule.
fn schedule_controller<S>(
    client: &Client,
    ns: &Option<String>,
    ctx: &Arc<Context>,
    cfg: controller::Config,
    (snapshots, backups): (Follower<VpsSnapshot>, Follower<VpsBackup>),
    shutdown: S,
) -> impl std::future::Future<Output = ()> + use<S>
where
    S: std::future::Future<Output = ()> + Send + Sync + 'static,
{
    let (stream, reader) = cached::<VpsSnapshotSchedule>(client, ns);
    let _ = super::gauges::SCHEDULES.set(reader.clone());
    let gone = futures::stream::select(
        snapshots
            .gone
            .flat_map(|c| futures::stream::iter(schedules_of(c.meta()))),
        backups
            .gone
            .flat_map(|c| futures::stream::iter(schedules_of(c.meta()))),
    );
    Controller::for_stream(stream, reader)
        .with_config(cfg)
        .owns_shared_stream(snapshots.changes)
        .owns_shared_stream(backups.changes)
        .reconcile_on(gone)
        .graceful_shutdown_on(shutdown)
        .run(
            super::traced::reconcile(schedule::reconcile),
            schedule::error_policy,
            ctx.clone(),
        )
        .for_each(|_| future::ready(()))
}

fn schedules_of(child: &kube::api::ObjectMeta) -> Vec<ObjectRef<VpsSnapshotSchedule>> {
    let (kind, api_version) = (
        VpsSnapshotSchedule::kind(&()),
        VpsSnapshotSchedule::api_version(&()),
    );
    child
        .owner_references
        .iter()
        .flatten()
        .filter(|o| o.kind == kind && o.api_version == api_version)
        .map(|o| ObjectRef::new(&o.name).within(child.namespace.as_deref().unwrap_or_default()))
        .collect()
}

/// Restores wake on their source or safety snapshot changing or going away and on their
/// provider turning Ready. The mapping needs only the names of snapshots and backups; the reconciler reads them
/// fresh before deciding.
fn restore_controller<S>(
    client: &Client,
    ns: &Option<String>,
    ctx: &Arc<Context>,
    cfg: controller::Config,
    (snapshots, backups): (Follower<VpsSnapshot>, Follower<VpsBackup>),
    shutdown: S,
) -> impl std::future::Future<Output = ()> + use<S>
where
    S: std::future::Future<Output = ()> + Send + Sync + 'static,
{
    let uses = Arc::new(RestoreUses::default());
    let _ = ctx.restore_uses.set(uses.clone());
    let (reader, writer) = reflector::store();
    let store = reader.clone();
    let stream = observed(client, ns, writer, move |e: &watcher::Event<VpsRestore>| {
        uses.observe(e, &store)
    });
    let _ = ctx.restores.set(reader.clone());
    let (by_snapshot, by_backup, by_provider) = (reader.clone(), reader.clone(), reader.clone());
    let ready_changes = ctx.registry.changes().flat_map(move |(ns, name)| {
        futures::stream::iter(restores_of_provider(&by_provider, &ns, &name))
    });
    let (gone_snapshot, gone_backup) = (reader.clone(), reader.clone());
    let gone = futures::stream::select(
        snapshots.gone.flat_map(move |s| {
            futures::stream::iter(restores_woken(&gone_snapshot, RestoreKind::Snapshot, &*s))
        }),
        backups.gone.flat_map(move |b| {
            futures::stream::iter(restores_woken(&gone_backup, RestoreKind::Backup, &*b))
        }),
    );
    Controller::for_stream(stream, reader)
        .with_config(cfg)
        .reconcile_on(ready_changes)
        .reconcile_on(gone)
        .watches_shared_stream(snapshots.changes, move |s| {
            restores_woken(&by_snapshot, RestoreKind::Snapshot, s.as_ref())
        })
        .watches_shared_stream(backups.changes, move |b| {
            restores_woken(&by_backup, RestoreKind::Backup, b.as_ref())
        })
        .graceful_shutdown_on(shutdown)
        .run(
            super::traced::reconcile(restore::reconcile),
            restore::error_policy,
            ctx.clone(),
        )
        .for_each(|_| future::ready(()))
}

fn restores_woken<M: Resource>(
    restores: &Store<VpsRestore>,
    kind: RestoreKind,
    source: &M,
) -> Vec<ObjectRef<VpsRestore>> {
    let ns = source.meta().namespace.as_deref();
    let name = source.meta().name.as_deref().unwrap_or_default();
    restores
        .state()
        .into_iter()
        .filter(|r| restore::wakes(r, kind, ns, name))
        .map(|r| ObjectRef::from_obj(r.as_ref()))
        .collect()
}

fn restores_of_provider(
    restores: &Store<VpsRestore>,
    ns: &str,
    name: &str,
) -> Vec<ObjectRef<VpsRestore>> {
    restores
        .state()
        .into_iter()
        .filter(|r| restore::waits_for_provider(r, ns, name))
        .map(|r| ObjectRef::from_obj(r.as_ref()))
        .collect()
}

/// A watch of one kind feeding a cache: objects decoded one by one (`watch::guarded`) and
/// stripped of managed fields, which are most of an object's size and never read here.
fn cached<K>(
    client: &Client,
    ns: &Option<String>,
) -> (
    impl futures::Stream<Item = Result<K, watcher::Error>> + Send + use<K>,
    Store<K>,
)
where
    K: Watched,
{
    let (reader, writer) = reflector::store();
    (observed(client, ns, writer, |_| {}), reader)
}

/// `cached`, into the store of `writer`; `observe` sees each event after the store has
/// applied it.
fn observed<K, O>(
    client: &Client,
    ns: &Option<String>,
    writer: reflector::store::Writer<K>,
    observe: O,
) -> impl futures::Stream<Item = Result<K, watcher::Error>> + Send + use<K, O>
where
    K: Watched,
    O: Fn(&watcher::Event<K>) + Send + 'static,
{
    trimmed_watch::<K>(client, ns)
        .reflect(writer)
        .inspect(move |event| {
            if let Ok(event) = event {
                observe(event);
            }
        })
        .inspect(crate::telemetry::queue::observe::<K>)
        .touched_objects()
}

/// A namespaced kind this operator watches and caches.
trait Watched:
    Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
    + Clone
    + serde::de::DeserializeOwned
    + std::fmt::Debug
    + Send
    + Sync
    + 'static
{
}

impl<K> Watched for K where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static
{
}

/// The watch behind every cache: guarded decoding, backoff, managed fields dropped.
fn trimmed_watch<K>(
    client: &Client,
    ns: &Option<String>,
) -> impl futures::Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Send + use<K>
where
    K: Watched,
{
    watch::guarded(
        api::<DeserializeGuard<K>>(client, ns),
        watcher::Config::default(),
    )
    .default_backoff()
    .modify(|o| o.managed_fields_mut().clear())
}

/// Another controller's view of a shared watch: the objects it changes, and the ones it
/// finally loses. kube-runtime's shared dispatcher forwards only applies, so deletions are
/// tapped from the watch before it reaches the store.
struct Follower<K: Watched> {
    changes: ReflectHandle<K>,
    gone: UnboundedReceiver<Arc<K>>,
}

/// `cached`, with `N` other controllers following the same watch. Each follower must be
/// polled (a Controller does), or the shared watch waits for it once the buffer is full.
/// `index` is fed each event after the store has applied it.
fn cached_shared<K, const N: usize>(
    client: &Client,
    ns: &Option<String>,
) -> (
    impl futures::Stream<Item = Result<K, watcher::Error>> + Send + use<K, N>,
    Shared<K, N>,
)
where
    K: RestorePoint,
{
    let (reader, writer) = reflector::store_shared(FOLLOWER_BUFFER);
    let index = Arc::new(Index::new(reader));
    let fed = index.clone();
    let mut senders = Vec::with_capacity(N);
    let followers = std::array::from_fn(|_| {
        let (tx, gone) = futures::channel::mpsc::unbounded();
        senders.push(tx);
        Follower {
            changes: writer.subscribe().expect("a shared store has subscribers"),
            gone,
        }
    });
    let stream = trimmed_watch::<K>(client, ns)
        .inspect(move |event| {
            if let Ok(watcher::Event::Delete(obj)) = event {
                let obj = Arc::new(obj.clone());
                for tx in &senders {
                    // A follower that has stopped (shutdown) no longer needs to hear.
                    let _ = tx.unbounded_send(obj.clone());
                }
            }
        })
        .reflect_shared(writer)
        // The index sees every event, the followers have theirs already; a version the
        // object's own reconcile wrote does not wake it again (that reconcile already said
        // when to look next), which saves two of a new object's three reconciles.
        .filter(move |event| {
            future::ready(match event {
                Ok(event) => fed.observe(event) == Observed::News,
                Err(_) => true,
            })
        })
        .inspect(crate::telemetry::queue::observe::<K>)
        .touched_objects();
    (stream, Shared { index, followers })
}

/// What a shared watch feeds besides its own controller.
struct Shared<K: RestorePoint, const N: usize> {
    index: Arc<Index<K>>,
    followers: [Follower<K>; N],
}

/// Events a follower of a shared watch may lag behind before the watch waits for it.
const FOLLOWER_BUFFER: usize = 1024;

fn restore_point_controller<K, S>(
    client: &Client,
    ns: &Option<String>,
    ctx: &Arc<Context>,
    cfg: controller::Config,
    shutdown: S,
) -> (
    impl std::future::Future<Output = ()> + use<K, S>,
    Arc<Index<K>>,
    [Follower<K>; 2],
)
where
    K: RestorePoint,
    S: std::future::Future<Output = ()> + Send + Sync + 'static,
{
    // The index is fed after the store, so it never points at a version the store lacks.
    let (stream, Shared { index, followers }) = cached_shared::<K, 2>(client, ns);
    let reader = index.store().clone();
    let provider_targets = reader.clone();
    let registry_targets = reader.clone();
    let ready_changes = ctx.registry.changes().flat_map(move |(ns, name)| {
        let targets: Vec<ObjectRef<K>> = registry_targets
            .state()
            .into_iter()
            .filter(|o| {
                o.namespace().as_deref() == Some(ns.as_str()) && o.common().provider == name
            })
            .map(|o| ObjectRef::from_obj(o.as_ref()))
            .collect();
        futures::stream::iter(targets)
    });
    // A server's resync clock rings for every object declared on it.
    let on_server = index.clone();
    let resyncs = index.clock().clone().rings().flat_map(move |server| {
        let targets: Vec<ObjectRef<K>> = on_server
            .on_server(&server)
            .iter()
            .map(|o| ObjectRef::from_obj(o.as_ref()))
            .collect();
        futures::stream::iter(targets)
    });
    // News the watch delivered while one of the object's own writes was in flight.
    let wakes = index
        .wakes()
        .map(|key| ObjectRef::<K>::new(&key.name).within(&key.namespace));
    let fut = Controller::for_stream(stream, reader.clone())
        .reconcile_on(ready_changes)
        .reconcile_on(resyncs)
        .reconcile_on(wakes)
        .with_config(cfg)
        // A provider turning Ready (or changing) wakes the objects that wait for it.
        .watches(
            api::<VpsProvider>(client, ns),
            watcher::Config::default(),
            move |p| {
                let ns = p.namespace();
                let name = p.name_any();
                provider_targets
                    .state()
                    .into_iter()
                    .filter(|o| o.namespace() == ns && o.common().provider == name)
                    .map(|o| ObjectRef::from_obj(o.as_ref()))
                    .collect::<Vec<_>>()
            },
        )
        .graceful_shutdown_on(shutdown)
        .run(
            super::traced::reconcile(snapshot_backup::reconcile::<K>),
            snapshot_backup::error_policy::<K>,
            ctx.clone(),
        )
        .for_each(|r| {
            if let Err(e) = r {
                tracing::debug!(error = %e, "controller event");
            }
            future::ready(())
        });
    (fut, index, followers)
}

async fn wait_for_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler");
        tokio::select! { _ = ctrl_c => {}, _ = term.recv() => {} }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
