//! `vpsnap-bench`: what vpsnap costs at scale, measured in one run on a real control plane
//! with the provider simulator in-process and the operator as a child process.
//!
//! Phases, in order, each in the printed table:
//! 1. floor: the same objects applied with one status write each, no operator;
//! 2. burst: every object applied at once, time until all are Ready, provider calls;
//! 3. steady state: provider calls and apiserver writes per minute once all are Ready;
//! 4. latency: objects applied at a steady rate, apply → provider create p50/p99;
//! 5. restart: SIGKILL, start again, time to `/readyz`, provider calls in one resync period;
//! 6. memory: the operator against a bare kube-rs reflector holding the same objects.
//!
//! Exits non-zero when a hard rule is broken (duplicate creates, list calls growing with
//! objects instead of servers, provider writes after a restart, objects not Ready); missed
//! targets are printed but not fatal.
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{ExitCode, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Args, Parser, Subcommand};
use futures::{StreamExt, TryStreamExt};
use jiff::Timestamp;
use kube::api::{Api, ApiResource, DeleteParams, ListParams, Patch, PatchParams};
use kube::runtime::{WatchStreamExt, reflector, watcher};
use kube::{Client, Resource, ResourceExt};
use tokio::io::AsyncBufReadExt;

use vpsnap::api::{VpsProvider, VpsSnapshot, parse_duration};
use vpsnap::bench::apiserver;
use vpsnap::bench::cluster::{self, ProviderSetup};
use vpsnap::bench::operator::{Operator, OperatorSpec, default_operator_bin};
use vpsnap::bench::procfs::{ProcStats, RssSampler};
use vpsnap::bench::report::{Table, Verdict, mib, quantile, secs};
use vpsnap::bench::watch::WriteCounter;
use vpsnap::bench::{BoxError, Result};
use vpsnap::controller::snapshot_backup::claim as ownership;
use vpsnap::sim::{Faults, SimConfig, SimHandle};

const PROVIDER: &str = "bench";
const TOKEN: &str = "bench-token";
const CREATE: &str = "vps_rest.snapshots.create";
const LIST: &str = "vps_rest.snapshots.list";
const DELETE: &str = "vps_rest.snapshots.delete";
/// Arrival rates of the latency phase's search, as multiples of the fair rate.
const RATE_FACTORS: [f64; 5] = [1.0, 1.5, 2.0, 3.0, 4.0];

#[derive(Parser)]
#[command(
    name = "vpsnap-bench",
    about = "Measure vpsnap at scale: time to Ready against the apiserver floor, provider calls, \
             steady-state cost, restart, apply→create latency, memory against a bare reflector",
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(subcommand)]
    mode: Option<Mode>,
    #[command(flatten)]
    bench: BenchArgs,
}

#[derive(Subcommand)]
enum Mode {
    /// A bare kube-rs reflector over the VpsSnapshots of one namespace (the memory baseline);
    /// prints `synced <count>` once its cache is filled, then holds it until killed.
    #[command(hide = true)]
    Reflector {
        #[arg(long)]
        namespace: String,
        #[arg(long, env = "KUBECONFIG")]
        kubeconfig: Option<PathBuf>,
    },
}

#[derive(Args)]
struct BenchArgs {
    /// Kubeconfig of the control plane.
    #[arg(long, env = "KUBECONFIG")]
    kubeconfig: Option<PathBuf>,
    /// The operator binary (default: `vpsnap` next to this program).
    #[arg(long)]
    operator_bin: Option<PathBuf>,
    /// Servers at the simulated provider [default: 2000; smoke 50].
    #[arg(long)]
    servers: Option<u64>,
    /// VpsSnapshot objects per server [default: 5; smoke 4].
    #[arg(long)]
    per_server: Option<u64>,
    /// Simulator: time from create to completed, e.g. 0s, 2s.
    #[arg(long, default_value = "0s", value_parser = parse_duration)]
    create_delay: Duration,
    /// Simulator: latency added to every provider request, e.g. 20ms.
    #[arg(long, default_value = "0s", value_parser = parse_duration)]
    latency: Duration,
    /// VpsProvider spec.pollInterval [default: 5s; smoke 2s].
    #[arg(long, value_parser = parse_interval)]
    poll_interval: Option<String>,
    /// VpsProvider spec.resyncInterval [default: 60s; smoke 10s].
    #[arg(long, value_parser = parse_interval)]
    resync_interval: Option<String>,
    /// Length of the steady-state window [default: 3 resync intervals; smoke 2].
    #[arg(long)]
    steady_secs: Option<u64>,
    /// Objects per second in the latency phase [default: 60 % of the write capacity the floor
    /// measured, divided by vpsnap's 3 writes per object].
    arrival_rate: Option<f64>,
    /// Objects applied in the latency phase [default: 1000; smoke 100].
    #[arg(long)]
    latency_objects: Option<u64>,
    /// Apply requests in flight at once (burst and floor).
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// VpsProvider spec.requestsPerSecond (the simulator is local: high by default).
    #[arg(long, default_value_t = 1000)]
    provider_rps: u32,
    /// VpsProvider spec.maxInFlight.
    #[arg(long, default_value_t = 64)]
    provider_in_flight: u32,
    /// Passed to the operator as `--concurrency` (reconciles at once per kind).
    #[arg(long)]
    operator_concurrency: Option<u16>,
    /// Longest wait for all objects to be Ready [default: 30m; smoke 90s].
    #[arg(long, value_parser = parse_duration)]
    ready_timeout: Option<Duration>,
    /// Append the operator's output here (default: a file in the temp directory).
    #[arg(long)]
    operator_log: Option<PathBuf>,
    /// Small and quick (≈ 50 servers × 4, short phases, under two minutes): what CI runs.
    #[arg(long)]
    smoke: bool,
}

/// The full-run value, or the smoke one.
fn pick<T>(smoke: bool, full: T, small: T) -> T {
    if smoke { small } else { full }
}

fn parse_interval(s: &str) -> Result<String, String> {
    parse_duration(s).map(|_| s.to_string())
}

/// Knobs with the smoke/full defaults resolved.
struct Knobs {
    kubeconfig: Option<PathBuf>,
    operator_bin: PathBuf,
    servers: u64,
    per_server: u64,
    create_delay: Duration,
    latency: Duration,
    poll: String,
    resync: String,
    poll_d: Duration,
    resync_d: Duration,
    steady: Duration,
    /// `None`: 60 % of the floor's measured write capacity ÷ 3 writes per object.
    arrival_rate: Option<f64>,
    latency_objects: u64,
    concurrency: usize,
    provider_rps: u32,
    provider_in_flight: u32,
    operator_args: Vec<String>,
    ready_timeout: Duration,
    operator_log: PathBuf,
}

impl Knobs {
    fn resolve(a: BenchArgs) -> Result<Self> {
        let smoke = a.smoke;
        let poll = a
            .poll_interval
            .unwrap_or_else(|| pick(smoke, "5s", "2s").to_string());
        let resync = a
            .resync_interval
            .unwrap_or_else(|| pick(smoke, "60s", "10s").to_string());
        let poll_d = parse_duration(&poll)?;
        let resync_d = parse_duration(&resync)?;
        let steady = a
            .steady_secs
            .map(Duration::from_secs)
            .unwrap_or(resync_d * pick(smoke, 3, 2));
        let operator_log = match a.operator_log {
            Some(p) => p,
            None => std::env::temp_dir()
                .join(format!("vpsnap-bench-operator-{}.log", std::process::id())),
        };
        Ok(Self {
            kubeconfig: a.kubeconfig,
            operator_bin: match a.operator_bin {
                Some(p) => p,
                None => default_operator_bin()?,
            },
            servers: a.servers.unwrap_or(pick(smoke, 2000, 50)).max(1),
            per_server: a.per_server.unwrap_or(pick(smoke, 5, 4)).max(1),
            create_delay: a.create_delay,
            latency: a.latency,
            poll,
            resync,
            poll_d,
            resync_d,
            steady,
            arrival_rate: a.arrival_rate.map(|r| r.max(0.1)),
            latency_objects: a.latency_objects.unwrap_or(pick(smoke, 1000, 100)),
            concurrency: a.concurrency.max(1),
            provider_rps: a.provider_rps.clamp(1, 1000),
            provider_in_flight: a.provider_in_flight.clamp(1, 256),
            operator_args: a
                .operator_concurrency
                .map(|c| vec!["--concurrency".to_string(), c.to_string()])
                .unwrap_or_default(),
            ready_timeout: a.ready_timeout.unwrap_or(pick(
                smoke,
                Duration::from_secs(1800),
                Duration::from_secs(90),
            )),
            operator_log,
        })
    }

    fn objects(&self) -> u64 {
        self.servers * self.per_server
    }

    /// Objects of each later step of the rate search (the first run has `latency_objects`).
    fn step_objects(&self) -> u64 {
        (self.latency_objects / 2).max(20)
    }

    /// Servers of the latency phase, after the burst servers, `per_server` objects each: the
    /// first run and every step of the rate search has fresh servers at the simulator.
    fn latency_servers(&self) -> u64 {
        let steps = RATE_FACTORS.len() as u64 - 1;
        (self.latency_objects + steps * self.step_objects()).div_ceil(self.per_server)
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.mode {
        Some(Mode::Reflector {
            namespace,
            kubeconfig,
        }) => run_reflector(&namespace, kubeconfig).await.map(|()| true),
        None => match Knobs::resolve(cli.bench) {
            Ok(knobs) => bench(knobs).await,
            Err(e) => Err(e),
        },
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("vpsnap-bench: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The hidden `reflector` mode: the smallest program that holds the same objects.
async fn run_reflector(ns: &str, kubeconfig: Option<PathBuf>) -> Result<()> {
    let client = cluster::client(kubeconfig.as_deref()).await?;
    let api: Api<VpsSnapshot> = Api::namespaced(client, ns);
    let (reader, writer) = reflector::store();
    // Managed fields stripped, as the operator does: the baseline holds what it holds.
    let stream = watcher(api, watcher::Config::default())
        .default_backoff()
        .modify(|o| o.managed_fields_mut().clear())
        .reflect(writer)
        .applied_objects();
    tokio::spawn(stream.for_each(|_| futures::future::ready(())));
    reader.wait_until_ready().await?;
    println!("synced {}", reader.len());
    loop {
        tokio::time::sleep(Duration::from_secs(3600)).await;
    }
}

/// The running operator's reconciles so far (0 when it cannot be read).
async fn reconciles(env: &Env) -> u64 {
    match &env.operator {
        Some(op) => op.reconciles_total().await.unwrap_or_default(),
        None => 0,
    }
}

/// Everything that must be undone on the way out, whatever happened.
struct Env {
    client: Client,
    sim: Option<SimHandle>,
    operator: Option<Operator>,
    namespaces: Vec<String>,
}

impl Env {
    async fn cleanup(mut self) {
        if let Some(op) = self.operator.take() {
            op.kill().await;
        }
        let started = Instant::now();
        for ns in &self.namespaces {
            cluster::delete_namespace(&self.client, ns).await;
        }
        if !self.namespaces.is_empty() {
            eprintln!(
                "cleanup: namespace(s) {} deleted in {}",
                self.namespaces.join(", "),
                secs(started.elapsed())
            );
        }
        if let Some(sim) = self.sim.take() {
            sim.shutdown().await;
        }
    }
}

async fn bench(k: Knobs) -> Result<bool> {
    let client = cluster::client(k.kubeconfig.as_deref()).await?;
    cluster::install_crds(&client).await?;
    let servers: Vec<u64> = (1..=k.servers + k.latency_servers()).collect();
    let sim = vpsnap::sim::start(
        SimConfig {
            servers,
            tokens: vec![TOKEN.into()],
            create_delay: k.create_delay,
            snapshot_limit: (k.per_server as usize).max(5),
            faults: Faults {
                latency: k.latency,
                ..Faults::default()
            },
            ..SimConfig::default()
        },
        "127.0.0.1:0".parse()?,
    )
    .await?;
    let mut env = Env {
        client: client.clone(),
        sim: Some(sim),
        operator: None,
        namespaces: Vec::new(),
    };
    let outcome = tokio::select! {
        r = phases(&k, &mut env) => r,
        _ = tokio::signal::ctrl_c() => Err("interrupted".into()),
    };
    env.cleanup().await;
    let table = outcome?;
    println!("{}", table.render());
    println!("operator log: {}", k.operator_log.display());
    let violations = table.violations();
    if violations > 0 {
        println!("RESULT: {violations} hard rule(s) broken");
    } else {
        println!(
            "RESULT: no hard rule broken ({} target(s) missed)",
            table.missed()
        );
    }
    Ok(violations == 0)
}

fn calls_of(calls: &BTreeMap<String, u64>, key: &str) -> u64 {
    calls.get(key).copied().unwrap_or(0)
}

fn diff(after: &BTreeMap<String, u64>, before: &BTreeMap<String, u64>, key: &str) -> u64 {
    calls_of(after, key) - calls_of(before, key)
}

fn per_minute(n: u64, d: Duration) -> f64 {
    n as f64 * 60.0 / d.as_secs_f64().max(1e-9)
}

fn ratio(a: f64, b: f64) -> f64 {
    if b > 0.0 { a / b } else { f64::INFINITY }
}

fn burst_manifest(k: &Knobs, i: u64) -> (String, u64, serde_json::Value) {
    let server = i / k.per_server + 1;
    let name = format!("b-{server}-{}", i % k.per_server);
    let m = cluster::snapshot_manifest(&name, PROVIDER, server, serde_json::json!({}));
    (name, server, m)
}

async fn phases(k: &Knobs, env: &mut Env) -> Result<Table> {
    let client = env.client.clone();
    let n = k.objects();
    let mut t = Table::default();
    println!(
        "vpsnap-bench: {} servers × {} = {n} VpsSnapshots; create delay {:?}, provider latency {:?}, poll {}, resync {}, apply concurrency {}",
        k.servers, k.per_server, k.create_delay, k.latency, k.poll, k.resync, k.concurrency
    );
    t.section(&format!(
        "scenario: {} servers × {} = {n} VpsSnapshots (create delay {:?}, provider latency {:?}, poll {}, resync {}, {} applies in flight, provider {} req/s, {} in flight)",
        k.servers,
        k.per_server,
        k.create_delay,
        k.latency,
        k.poll,
        k.resync,
        k.concurrency,
        k.provider_rps,
        k.provider_in_flight
    ));

    // --- 1. floor --------------------------------------------------------------------------
    println!(
        "[1/6] floor: {n} applies + {n} status writes, no operator; then with a claim write each …"
    );
    let mut floors = Vec::new();
    for claim in [false, true] {
        let floor_ns = cluster::create_namespace(&client, "bench-floor").await?;
        env.namespaces.push(floor_ns.clone());
        floors.push(measure_floor(&client, &floor_ns, k, claim).await?);
        remove_floor(&client, &mut env.namespaces, &floor_ns).await?;
    }
    let (floor, floor3) = (floors[0], floors[1]);
    // What the apiserver absorbs here, and so the arrival rate both latency measurements use:
    // 60 % of it, divided by vpsnap's 3 writes per object (unless --arrival-rate says).
    let capacity = 2.0 * n as f64 / floor.as_secs_f64().max(1e-9);
    let rate = k.arrival_rate.unwrap_or((capacity * 0.6 / 3.0).max(1.0));
    println!(
        "      {} (2 writes each), {} (3 writes each); capacity {capacity:.0} writes/s, latency rate {rate:.1}/s",
        secs(floor),
        secs(floor3)
    );
    println!(
        "      floor latency: {} objects at {rate:.1}/s …",
        k.latency_objects
    );
    let (floor_latency, floor_window) =
        floor_latency_in_own_namespace(&client, &mut env.namespaces, k, rate, false).await?;

    // --- 2. burst --------------------------------------------------------------------------
    let ns = cluster::create_namespace(&client, "bench").await?;
    env.namespaces.push(ns.clone());
    let snap_ar = ApiResource::erase::<VpsSnapshot>(&());
    let snapshots = WriteCounter::start(Api::namespaced_with(client.clone(), &ns, &snap_ar));
    let providers = WriteCounter::start(Api::namespaced_with(
        client.clone(),
        &ns,
        &ApiResource::erase::<VpsProvider>(&()),
    ));
    let events = WriteCounter::start(Api::namespaced_with(
        client.clone(),
        &ns,
        &ApiResource::erase::<k8s_openapi::api::events::v1::Event>(&()),
    ));
    for w in [&snapshots, &providers, &events] {
        if !w.wait_synced(Duration::from_secs(30)).await {
            return Err("the bench's own watches did not sync in 30 s".into());
        }
    }
    let spec = OperatorSpec {
        bin: k.operator_bin.clone(),
        kubeconfig: k.kubeconfig.clone(),
        namespace: ns.clone(),
        log: Some(k.operator_log.clone()),
        extra_args: k.operator_args.clone(),
        env: Vec::new(),
    };
    let mut op = Operator::start(&spec)?;
    op.wait_ready(Duration::from_secs(60)).await?;
    let pid1 = op.pid;
    let op_empty_kib = ProcStats::read(pid1).map(|s| s.rss_kib).unwrap_or_default();
    let sampler1 = RssSampler::start(op.pid, Duration::from_millis(250));
    env.operator = Some(op);
    let sim = env.sim.as_ref().ok_or("simulator gone")?;
    cluster::setup_provider(
        &client,
        &ns,
        ProviderSetup {
            name: PROVIDER,
            endpoint: sim.vps_rest_url(),
            token: TOKEN,
            poll_interval: &k.poll,
            resync_interval: &k.resync,
            requests_per_second: k.provider_rps,
            max_in_flight: k.provider_in_flight,
            extra: serde_json::json!({
                "limits": {"snapshotsPerServer": (k.per_server).max(5)},
            }),
        },
        Duration::from_secs(60),
    )
    .await?;

    println!("[2/6] burst: applying {n} objects …");
    let api: Api<VpsSnapshot> = Api::namespaced(client.clone(), &ns);
    let manifests: Vec<serde_json::Value> = (0..n).map(|i| burst_manifest(k, i).2).collect();
    let calls0 = sim.calls();
    let writes0 = (snapshots.writes(), events.writes());
    let reconciles0 = reconciles(env).await;
    let cpu0 = ProcStats::read(pid1)
        .map(|s| s.cpu_secs)
        .unwrap_or_default();
    let occupancy_burst = apiserver::Window::open(&client, OCCUPANCY).await?;
    let t0 = Instant::now();
    let t0_at = Timestamp::now();
    cluster::apply_all(&api, manifests, k.concurrency).await?;
    let applied = t0.elapsed();
    let all_ready = wait_ready(&snapshots, n as usize, k.ready_timeout, t0).await;
    let ready_time = t0.elapsed();
    let occupancy_burst = occupancy_burst.close(&client).await?;
    let calls1 = sim.calls();
    let burst_writes = (
        snapshots.writes().since(&writes0.0),
        events.writes().since(&writes0.1),
    );
    let reconciles1 = reconciles(env).await;
    let cpu1 = ProcStats::read(pid1)
        .map(|s| s.cpu_secs)
        .unwrap_or_default();
    let last_create = sim
        .record()
        .creates
        .iter()
        .map(|c| c.at)
        .max()
        .map(|at| at.duration_since(t0_at).unsigned_abs());
    println!(
        "      all applied in {}, {} of {n} Ready after {}",
        secs(applied),
        snapshots.ready(),
        secs(ready_time)
    );

    t.section("burst: every object applied at once");
    t.info("objects applied in", secs(applied));
    if let Some(d) = last_create {
        t.info("last provider create after", secs(d));
    }
    t.row(
        "first apply → all Ready",
        secs(ready_time),
        "",
        Verdict::hard(all_ready),
    );
    t.info(
        "floor (same applies + 1 status write each, no operator, same observer)",
        secs(floor),
    );
    t.info(
        "Ready time / floor with 2 writes each",
        format!(
            "{:.2}×",
            ratio(ready_time.as_secs_f64(), floor.as_secs_f64())
        ),
    );
    t.info(
        "apiserver capacity seen by the floor",
        format!("{:.0} writes/s", capacity),
    );
    t.info(
        "floor with vpsnap's 3 writes each (+ finalizer/intent patch)",
        secs(floor3),
    );
    let r3 = ratio(ready_time.as_secs_f64(), floor3.as_secs_f64());
    t.row(
        "Ready time / floor with 3 writes each",
        format!("{r3:.2}×"),
        "≤ 1.05×",
        Verdict::of(r3 <= 1.05),
    );
    let creates = diff(&calls1, &calls0, CREATE);
    t.row(
        "provider creates",
        creates.to_string(),
        &format!("= {n} objects"),
        Verdict::hard(creates == n),
    );
    let lists = diff(&calls1, &calls0, LIST);
    t.info(
        "provider list calls",
        format!(
            "{lists} ({:.2} per server)",
            lists as f64 / k.servers as f64
        ),
    );
    t.info(
        "provider deletes",
        diff(&calls1, &calls0, DELETE).to_string(),
    );
    t.info(
        "provider credential checks",
        diff(&calls1, &calls0, "vps_rest.account.me").to_string(),
    );
    t.info(
        "apiserver writes per object: VpsSnapshot (apply included) + Events",
        format!(
            "{:.2} + {:.2} (floor: 2 + 0)",
            burst_writes.0.total() as f64 / n as f64,
            burst_writes.1.total() as f64 / n as f64
        ),
    );
    t.info(
        "operator reconciles per object (its own writes wake nothing)",
        format!(
            "{:.2}",
            reconciles1.saturating_sub(reconciles0) as f64 / n as f64
        ),
    );
    t.info(OCCUPANCY_ROW, occupancy_burst.writes_and_bytes());
    t.info("operator CPU during burst", format!("{:.1} s", cpu1 - cpu0));

    // --- 3. steady state -------------------------------------------------------------------
    // One poll interval of grace: the last Ready writes may still be in flight.
    tokio::time::sleep(k.poll_d).await;
    println!("[3/6] steady state: watching for {} …", secs(k.steady));
    let s_calls = sim.calls();
    let s_snap = snapshots.writes();
    let s_prov = providers.writes();
    let s_events = events.writes();
    let s_cpu = ProcStats::read(pid1)
        .map(|s| s.cpu_secs)
        .unwrap_or_default();
    let s_reconciles = reconciles(env).await;
    // The window's start still carries the burst's occupancy (a new shard count is written
    // once it has held); its last resync period shows what a settled fleet costs.
    let occupancy_steady = apiserver::Window::open(&client, OCCUPANCY).await?;
    let last_period = k.resync_d.min(k.steady);
    tokio::time::sleep(k.steady - last_period).await;
    let occupancy_settled = apiserver::Window::open(&client, OCCUPANCY).await?;
    tokio::time::sleep(last_period).await;
    let occupancy_settled = occupancy_settled.close(&client).await?;
    let occupancy_steady = occupancy_steady.close(&client).await?;
    let e_reconciles = reconciles(env).await;
    let e_calls = sim.calls();
    let e_cpu = ProcStats::read(pid1)
        .map(|s| s.cpu_secs)
        .unwrap_or_default();
    let w_snap = snapshots.writes().since(&s_snap);
    let w_prov = providers.writes().since(&s_prov);
    let w_events = events.writes().since(&s_events);
    let steady_rss = sampler1.last_kib();
    let total_calls: u64 = e_calls.values().sum::<u64>() - s_calls.values().sum::<u64>();
    let lists = diff(&e_calls, &s_calls, LIST);
    let periods = (k.steady.as_secs_f64() / k.resync_d.as_secs_f64()).max(1.0);
    let list_bound = k.servers as f64 * periods * 1.5;
    t.section(&format!(
        "steady state: {} after all Ready (+{} grace), {periods:.1} resync periods",
        secs(k.steady),
        k.poll
    ));
    t.info(
        "provider calls per minute",
        format!("{:.1}", per_minute(total_calls, k.steady)),
    );
    // A settled object is looked at once per resync: its server's clock wakes it.
    t.info(
        "operator reconciles per object per resync period",
        format!(
            "{:.2}",
            e_reconciles.saturating_sub(s_reconciles) as f64 / n as f64 / periods
        ),
    );
    t.row(
        "provider list calls",
        format!(
            "{lists} ({:.2} per server per resync period)",
            lists as f64 / k.servers as f64 / periods
        ),
        "≤ 1 per server per resync",
        if lists as f64 > list_bound {
            Verdict::Violated
        } else {
            Verdict::of(lists as f64 <= k.servers as f64 * periods)
        },
    );
    let provider_writes = diff(&e_calls, &s_calls, CREATE) + diff(&e_calls, &s_calls, DELETE);
    t.none("provider creates + deletes", provider_writes);
    let apiserver_writes = w_snap.total() + w_prov.total();
    t.row(
        "apiserver writes per minute (VpsSnapshot + VpsProvider)",
        format!(
            "{:.1} ({} in window)",
            per_minute(apiserver_writes, k.steady),
            apiserver_writes
        ),
        "= 0",
        Verdict::of(apiserver_writes == 0),
    );
    t.info(
        "Events written per minute",
        format!("{:.1}", per_minute(w_events.total(), k.steady)),
    );
    t.info(
        &format!("{OCCUPANCY_ROW}: whole window | its last resync period"),
        format!(
            "{} | {}",
            occupancy_steady.writes_and_bytes(),
            occupancy_settled.writes_and_bytes()
        ),
    );
    t.info(
        "operator CPU per minute",
        format!("{:.2} s", (e_cpu - s_cpu) * 60.0 / k.steady.as_secs_f64()),
    );
    t.info("operator RSS at the end", mib(steady_rss));

    // --- 4. latency ------------------------------------------------------------------------
    let l = k.latency_objects;
    println!("[4/6] latency: {l} objects at {rate:.1} per second …");
    // The floor again, now beside the bench's objects and with vpsnap's 3 writes each, so it
    // meets the apiserver vpsnap's latency objects meet (the operator watches only its own
    // namespace and writes nothing while settled).
    println!("      first the floor, at the same rate, 3 writes each, beside these objects …");
    let occupancy_floor3 = apiserver::Window::open(&client, OCCUPANCY).await?;
    let (floor3_latency, floor3_window) =
        floor_latency_in_own_namespace(&client, &mut env.namespaces, k, rate, true).await?;
    let occupancy_floor3 = occupancy_floor3.close(&client).await?;
    println!("      then vpsnap's {l} objects at the same rate …");
    let occupancy_lat = apiserver::Window::open(&client, OCCUPANCY).await?;
    let lat_window = apiserver::Window::open(&client, "vpssnapshots").await?;
    let lat = measure_latency(k, &api, sim, &snapshots, n, rate, 0).await?;
    let lat_window = lat_window.close(&client).await?;
    let occupancy_lat = occupancy_lat.close(&client).await?;
    t.section(&format!(
        "latency: {l} objects applied at {rate:.1}/s (achieved {:.1}/s) on {} fresh servers; the floor's own latency at the same rate",
        lat.achieved_rate,
        l.div_ceil(k.per_server)
    ));
    let mut added = l;
    if l > 0 {
        let ms = |v: Option<f64>| {
            v.map(|v| format!("{v:.0} ms"))
                .unwrap_or_else(|| "n/a".into())
        };
        t.info(
            "arrival rate (60 % of the floor's write capacity ÷ 3 writes per object)",
            format!("{rate:.1}/s"),
        );
        let p50_p99 = |v: &[f64]| format!("{} / {}", ms(quantile(v, 0.5)), ms(quantile(v, 0.99)));
        t.info(
            "floor on the empty apiserver, 2 writes each: apply → next write, p50 / p99",
            p50_p99(&floor_latency),
        );
        t.info(
            "floor beside the bench's objects, 3 writes each: apply → next write, p50 / p99",
            p50_p99(&floor3_latency),
        );
        t.info(
            "vpsnap: apply → provider create, p50 / p99 / max",
            format!(
                "{} / {} / {}",
                ms(quantile(&lat.latencies_ms, 0.5)),
                ms(quantile(&lat.latencies_ms, 0.99)),
                ms(quantile(&lat.latencies_ms, 1.0))
            ),
        );
        // Where the time went: the apiserver's own histograms over each window.
        let windows = [&floor_window, &floor3_window, &lat_window];
        t.info(
            "apiserver's own time per VpsSnapshot write, p50 / p99 (bucket bound): floor (empty, 2) / floor (beside, 3) / vpsnap",
            windows.map(|w| w.write_quantiles()).join(" | "),
        );
        t.info(
            "apiserver writes/s to VpsSnapshots in the window: floor (empty, 2) / floor (beside, 3) / vpsnap",
            windows
                .map(|w| format!("{:.0}", w.writes_per_sec()))
                .join(" / "),
        );
        t.info(
            &format!("{OCCUPANCY_ROW}: beside the floor (beside, 3) | beside vpsnap's objects"),
            format!(
                "{} | {}",
                occupancy_floor3.writes_and_bytes(),
                occupancy_lat.writes_and_bytes()
            ),
        );
        let p99_over =
            |floor: &[f64]| match (quantile(&lat.latencies_ms, 0.99), quantile(floor, 0.99)) {
                (Some(v), Some(f)) => ratio(v, f.max(1.0)),
                _ => f64::INFINITY,
            };
        t.info(
            "vpsnap p99 / floor p99 on the empty apiserver with 2 writes",
            format!("{:.2}×", p99_over(&floor_latency)),
        );
        let p99_ratio = p99_over(&floor3_latency);
        t.row(
            "vpsnap p99 / floor p99 beside the same objects with the same 3 writes",
            format!("{p99_ratio:.2}×"),
            "≤ 2×",
            Verdict::of(p99_ratio <= 2.0),
        );
        t.row(
            "objects without a provider create",
            lat.missing.to_string(),
            "= 0",
            Verdict::hard(lat.missing == 0),
        );
        // The highest arrival rate with p99 under a second, stepping up from the fair rate.
        let step = k.step_objects();
        let mut sustained = None;
        for factor in RATE_FACTORS {
            let r = rate * factor;
            let run = if factor == 1.0 {
                None
            } else {
                println!("      … {step} more at {r:.1}/s");
                Some(measure_latency(k, &api, sim, &snapshots, n + added, r, added).await?)
            };
            let run = run.as_ref().unwrap_or(&lat);
            if factor != 1.0 {
                added += step;
            }
            match quantile(&run.latencies_ms, 0.99) {
                Some(p99) if p99 < 1000.0 && run.missing == 0 => sustained = Some(r),
                _ => break,
            }
        }
        t.info(
            "highest arrival rate tried with p99 < 1 s",
            sustained
                .map(|r| format!("{r:.1}/s"))
                .unwrap_or_else(|| "none of the rates tried".into()),
        );
    }

    // --- 5. restart ------------------------------------------------------------------------
    let total = n + added;
    // Every server that now holds objects (the latency phase added its own).
    let servers_now = k.servers + added.div_ceil(k.per_server);
    println!("[5/6] restart: SIGKILL, start again …");
    let op1_stats = ProcStats::read(pid1).unwrap_or_default();
    let op1_peak_sampled = sampler1.peak_kib();
    drop(sampler1);
    if let Some(op) = env.operator.take() {
        op.kill().await;
    }
    let r_calls0 = sim.calls();
    let r_writes0 = snapshots.writes();
    // The first resync period counts from the process start: lists made before /readyz
    // belong to it too.
    let window_start = Instant::now();
    let mut op = Operator::start(&spec)?;
    let restart_ready = op.wait_ready(Duration::from_secs(120)).await?;
    let pid2 = op.pid;
    let sampler2 = RssSampler::start(op.pid, Duration::from_millis(250));
    env.operator = Some(op);
    // Provider calls over the first resync period, second by second.
    let mut peak_lists_per_s = 0;
    let mut prev = calls_of(&sim.calls(), LIST);
    // The window ends exactly one period after it began: the operator may list a server again
    // once a full period has passed, and a window even a second longer would count that.
    let window_end = window_start + k.resync_d;
    while Instant::now() < window_end {
        let tick = (Instant::now() + Duration::from_secs(1)).min(window_end);
        tokio::time::sleep_until(tick.into()).await;
        let now = calls_of(&sim.calls(), LIST);
        peak_lists_per_s = peak_lists_per_s.max(now - prev);
        prev = now;
    }
    let r_calls1 = sim.calls();
    let r_writes = snapshots.writes().since(&r_writes0);
    let still_ready = snapshots.ready();
    t.section(&format!(
        "restart with all {total} Ready on {servers_now} servers (SIGKILL, then one resync period of {})",
        k.resync
    ));
    t.info("operator start → /readyz 200", secs(restart_ready));
    let r_provider_writes = diff(&r_calls1, &r_calls0, CREATE) + diff(&r_calls1, &r_calls0, DELETE);
    t.none("provider creates + deletes", r_provider_writes);
    let r_lists = diff(&r_calls1, &r_calls0, LIST);
    t.row(
        "provider list calls in the first resync period",
        format!(
            "{r_lists} ({:.2} per server; peak {peak_lists_per_s}/s)",
            r_lists as f64 / servers_now as f64
        ),
        "≤ 1 per server",
        if r_lists as f64 > servers_now as f64 * 1.5 {
            Verdict::Violated
        } else {
            Verdict::of(r_lists <= servers_now)
        },
    );
    t.row(
        "VpsSnapshot writes after the restart",
        r_writes.total().to_string(),
        "= 0",
        Verdict::of(r_writes.total() == 0),
    );
    t.row(
        "objects still Ready",
        still_ready.to_string(),
        &format!("= {total}"),
        Verdict::hard(still_ready == total as usize),
    );

    // --- 6. memory and CPU against a bare reflector ----------------------------------------
    println!("[6/6] bare reflector over the same {total} objects …");
    let op2_stats = ProcStats::read(pid2).unwrap_or_default();
    let empty_ns = cluster::create_namespace(&client, "bench-empty").await?;
    env.namespaces.push(empty_ns.clone());
    let refl = measure_reflector(k, &ns, &empty_ns).await?;
    let op_peak = op1_stats.hwm_kib.max(op2_stats.hwm_kib);
    t.section(&format!(
        "memory and CPU: operator against a bare kube-rs reflector (same {total} objects, managed fields stripped)"
    ));
    t.info(
        "operator peak RSS (VmHWM), first process: burst, steady, latency",
        format!(
            "{} (sampled VmRSS peak {})",
            mib(op1_stats.hwm_kib),
            mib(op1_peak_sampled)
        ),
    );
    t.info(
        "operator peak RSS (VmHWM), second process: restart (relists all)",
        format!(
            "{} (sampled VmRSS peak {})",
            mib(op2_stats.hwm_kib),
            mib(sampler2.peak_kib())
        ),
    );
    t.info("operator RSS now", mib(op2_stats.rss_kib));
    t.info(
        "operator CPU seconds (first + second process)",
        format!("{:.1} s + {:.1} s", op1_stats.cpu_secs, op2_stats.cpu_secs),
    );
    t.info(
        "reflector peak RSS (VmHWM) / RSS now",
        format!("{} / {}", mib(refl.stats.hwm_kib), mib(refl.stats.rss_kib)),
    );
    t.info(
        "reflector CPU seconds / time to sync",
        format!("{:.2} s / {}", refl.stats.cpu_secs, secs(refl.synced_after)),
    );
    let mem_ratio = ratio(op_peak as f64, refl.stats.hwm_kib as f64);
    t.row(
        "operator peak RSS / reflector peak RSS",
        format!("{mem_ratio:.2}×"),
        "≤ 1.2×",
        Verdict::of(mem_ratio <= 1.2),
    );
    let per_object =
        |kib: u64, base: u64| (kib.saturating_sub(base) * 1024) as f64 / total.max(1) as f64;
    t.info(
        "bytes per object above an empty process: operator / reflector",
        format!(
            "{:.0} / {:.0} (empty: operator {} after start, reflector {})",
            per_object(op_peak, op_empty_kib),
            per_object(refl.stats.hwm_kib, refl.empty_kib),
            mib(op_empty_kib),
            mib(refl.empty_kib)
        ),
    );
    t.info("operator peak RSS", mib(op_peak));
    t.row(
        "reflector objects seen",
        refl.count.to_string(),
        &format!("= {total}"),
        Verdict::of(refl.count == total),
    );
    drop(sampler2);

    // --- whole run -------------------------------------------------------------------------
    let record = sim.record();
    let mut per_name: BTreeMap<&str, u64> = BTreeMap::new();
    for c in &record.creates {
        *per_name.entry(c.name.as_deref().unwrap_or("")).or_default() += 1;
    }
    let duplicates: u64 = per_name.values().map(|c| c - 1).sum();
    let ready_now = snapshots.ready();
    t.section("whole run");
    t.none(
        "DUPLICATES (provider creates beyond one per object)",
        duplicates,
    );
    t.row(
        "provider creates in total",
        record.creates.len().to_string(),
        &format!("= {total} objects"),
        Verdict::hard(record.creates.len() as u64 == total),
    );
    t.row(
        "objects not Ready at the end",
        (total as usize).saturating_sub(ready_now).to_string(),
        "= 0",
        Verdict::hard(ready_now == total as usize),
    );
    let over_limit = record
        .servers
        .values()
        .filter(|s| s.snapshots_high_water > (k.per_server as usize).max(5))
        .count();
    t.none("servers that went over their limit", over_limit);
    let calls = sim.calls();
    t.info(
        "provider calls by endpoint",
        calls
            .iter()
            .map(|(k, v)| format!("{}={v}", k.trim_start_matches("vps_rest.")))
            .collect::<Vec<_>>()
            .join(" "),
    );
    let panicked = std::fs::read_to_string(&k.operator_log)
        .map(|s| s.matches("panicked").count())
        .unwrap_or(0);
    t.none("operator panics", panicked);
    Ok(t)
}

/// Applies the objects and one status write per object, the least the apiserver must do for
/// the same result without any operator.
/// The floor ends as the burst does: when the bench's own watch has seen every object Ready.
/// Both phases then pay for the same observer, and only the operator's work differs.
async fn measure_floor(client: &Client, ns: &str, k: &Knobs, claim: bool) -> Result<Duration> {
    let api: Api<VpsSnapshot> = Api::namespaced(client.clone(), ns);
    let observer = WriteCounter::start(Api::namespaced_with(
        client.clone(),
        ns,
        &ApiResource::erase::<VpsSnapshot>(&()),
    ));
    if !observer.wait_synced(Duration::from_secs(30)).await {
        return Err("the bench's own watch did not sync in 30 s".into());
    }
    let start = Instant::now();
    futures::stream::iter(0..k.objects())
        .map(|i| {
            let api = api.clone();
            async move {
                let (name, _, manifest) = burst_manifest(k, i);
                cluster::apply(&api, manifest).await?;
                let now = Timestamp::now().to_string();
                if claim {
                    // What vpsnap writes before its create call: finalizer + intent.
                    let patch = serde_json::json!({"metadata": {
                        "finalizers": [ownership::FINALIZER],
                        "annotations": {ownership::CREATE_REQUESTED_AT: now},
                    }});
                    api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                        .await?;
                }
                write_ready_status(&api, &name, i, &now).await?;
                Ok::<(), BoxError>(())
            }
        })
        .buffer_unordered(k.concurrency)
        .try_collect::<Vec<()>>()
        .await?;
    if !wait_ready(&observer, k.objects() as usize, k.ready_timeout, start).await {
        return Err("the floor's objects were written but not all seen Ready".into());
    }
    Ok(start.elapsed())
}

/// The Ready status vpsnap writes for a completed snapshot, written as the floor's last write.
async fn write_ready_status(api: &Api<VpsSnapshot>, name: &str, i: u64, now: &str) -> Result<()> {
    let condition = |type_: &str, status: &str| {
        serde_json::json!({
            "type": type_, "status": status, "reason": "Completed",
            "message": format!("snapshot {} is complete", i + 1),
            "observedGeneration": 1, "lastTransitionTime": now,
        })
    };
    let status = serde_json::json!({
        "apiVersion": VpsSnapshot::api_version(&()),
        "kind": VpsSnapshot::kind(&()),
        "status": {
            "observedGeneration": 1,
            "phase": "Ready",
            "providerId": (i + 1).to_string(),
            "providerName": name,
            "providerStatus": "completed",
            "sizeMb": 5120,
            "size": "5120Mi",
            "providerCreatedAt": now,
            "conditions": [
                condition("Ready", "True"),
                condition("Reconciling", "False"),
                condition("Stalled", "False"),
            ],
        },
    });
    api.patch_status(
        name,
        &PatchParams::apply(cluster::MANAGER).force(),
        &Patch::Apply(&status),
    )
    .await?;
    Ok(())
}

/// Waits until `want` objects are Ready (true) or the timeout passes (false).
async fn wait_ready(w: &WriteCounter, want: usize, timeout: Duration, since: Instant) -> bool {
    let mut last_report = Instant::now();
    loop {
        let ready = w.ready();
        if ready >= want {
            return true;
        }
        if since.elapsed() > timeout {
            eprintln!("      timed out: {ready} of {want} Ready after {timeout:?}");
            return false;
        }
        if last_report.elapsed() > Duration::from_secs(15) {
            println!(
                "      … {ready} of {want} Ready after {}",
                secs(since.elapsed())
            );
            last_report = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

struct Latency {
    latencies_ms: Vec<f64>,
    missing: u64,
    achieved_rate: f64,
}

/// Removes a floor's objects and namespace before the operator runs, so both see the same
/// apiserver.
async fn remove_floor(client: &Client, namespaces: &mut Vec<String>, ns: &str) -> Result<()> {
    cluster::strip_finalizers(client, ns, &ApiResource::erase::<VpsSnapshot>(&()), 32).await?;
    let api: Api<VpsSnapshot> = Api::namespaced(client.clone(), ns);
    api.delete_collection(&DeleteParams::default(), &ListParams::default())
        .await?;
    cluster::delete_namespace(client, ns).await;
    cluster::wait_namespace_gone(client, ns, Duration::from_secs(120)).await;
    namespaces.retain(|n| n != ns);
    Ok(())
}

/// `count` objects (`latency_objects` for the first run, half as many for later ones) applied
/// at `rate` per second on fresh servers, names and servers after the first `offset`.
async fn measure_latency(
    k: &Knobs,
    api: &Api<VpsSnapshot>,
    sim: &SimHandle,
    snapshots: &WriteCounter,
    already: u64,
    rate: f64,
    offset: u64,
) -> Result<Latency> {
    let l = if offset == 0 {
        k.latency_objects
    } else {
        k.step_objects()
    };
    let sent = Arc::new(std::sync::Mutex::new(BTreeMap::<String, Timestamp>::new()));
    let gate = Arc::new(tokio::sync::Semaphore::new(k.concurrency));
    let mut tasks = tokio::task::JoinSet::new();
    let start = Instant::now();
    for j in 0..l {
        let due = start + Duration::from_secs_f64(j as f64 / rate);
        tokio::time::sleep_until(due.into()).await;
        let i = offset + j;
        let server = k.servers + 1 + i / k.per_server;
        let name = format!("l-{i}");
        let manifest = cluster::snapshot_manifest(
            &name,
            PROVIDER,
            server,
            serde_json::json!({"snapshotName": name}),
        );
        let permit = gate.clone().acquire_owned().await?;
        let (api, sent) = (api.clone(), sent.clone());
        tasks.spawn(async move {
            let _permit = permit;
            sent.lock().expect("sent").insert(name, Timestamp::now());
            cluster::apply(&api, manifest).await.map(|_| ())
        });
    }
    while let Some(r) = tasks.join_next().await {
        r??;
    }
    let achieved_rate = l as f64 / start.elapsed().as_secs_f64().max(1e-9);
    let sent = std::mem::take(&mut *sent.lock().expect("sent"));
    // Every object reaches the provider, then Ready (bounded).
    let deadline = Instant::now() + Duration::from_secs(120).max(k.poll_d * 10);
    let latencies = loop {
        let creates: BTreeMap<String, Timestamp> = sim
            .record()
            .creates
            .into_iter()
            .filter_map(|c| Some((c.name?, c.at)))
            .filter(|(name, _)| sent.contains_key(name))
            .collect();
        if creates.len() == sent.len() || Instant::now() > deadline {
            break creates;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let want = (already + l) as usize;
    while snapshots.ready() < want && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let latencies_ms = sent
        .iter()
        .filter_map(|(name, at)| {
            let created = latencies.get(name)?;
            Some(created.duration_since(*at).as_secs_f64() * 1000.0)
        })
        .collect::<Vec<_>>();
    Ok(Latency {
        missing: l - latencies_ms.len() as u64,
        latencies_ms,
        achieved_rate,
    })
}

/// `measure_floor_latency` in a namespace of its own, removed afterwards, with the apiserver's
/// account of the window.
async fn floor_latency_in_own_namespace(
    client: &Client,
    namespaces: &mut Vec<String>,
    k: &Knobs,
    rate: f64,
    status: bool,
) -> Result<(Vec<f64>, apiserver::Closed)> {
    let ns = cluster::create_namespace(client, "bench-floor-latency").await?;
    namespaces.push(ns.clone());
    let window = apiserver::Window::open(client, "vpssnapshots").await?;
    let latencies = measure_floor_latency(client, &ns, k, rate, status).await?;
    let window = window.close(client).await?;
    remove_floor(client, namespaces, &ns).await?;
    Ok((latencies, window))
}

/// The operator's other writes: its `VpsOccupancy` shards (`kubectl vpsnap servers`). The
/// floors write none; a phase prints them so their share of the apiserver is seen.
const OCCUPANCY: &str = "vpsoccupancies";
const OCCUPANCY_ROW: &str =
    "operator's VpsOccupancy writes: count, bytes sent, apiserver time p50 / p99";

/// The floor's own latency at `rate`: each object applied and, right after, written once
/// more (the finalizer + intent patch vpsnap writes before its create); apply sent → that
/// write answered, in milliseconds. With `status`, the Ready status follows (not timed), so
/// the apiserver carries vpsnap's 3 writes per object.
async fn measure_floor_latency(
    client: &Client,
    ns: &str,
    k: &Knobs,
    rate: f64,
    status: bool,
) -> Result<Vec<f64>> {
    let api: Api<VpsSnapshot> = Api::namespaced(client.clone(), ns);
    let latencies = Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut tasks = tokio::task::JoinSet::new();
    let start = Instant::now();
    for i in 0..k.latency_objects {
        let due = start + Duration::from_secs_f64(i as f64 / rate);
        tokio::time::sleep_until(due.into()).await;
        let name = format!("fl-{i}");
        let manifest = cluster::snapshot_manifest(
            &name,
            PROVIDER,
            1 + i / k.per_server,
            serde_json::json!({}),
        );
        let (api, latencies) = (api.clone(), latencies.clone());
        tasks.spawn(async move {
            let sent = Instant::now();
            cluster::apply(&api, manifest).await?;
            let patch = serde_json::json!({"metadata": {
                "finalizers": [ownership::FINALIZER],
                "annotations": {ownership::CREATE_REQUESTED_AT: Timestamp::now().to_string()},
            }});
            api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .await?;
            latencies
                .lock()
                .expect("latencies")
                .push(sent.elapsed().as_secs_f64() * 1000.0);
            if status {
                write_ready_status(&api, &name, i, &Timestamp::now().to_string()).await?;
            }
            Ok::<(), BoxError>(())
        });
    }
    while let Some(r) = tasks.join_next().await {
        r??;
    }
    let out = std::mem::take(&mut *latencies.lock().expect("latencies"));
    Ok(out)
}

struct Reflected {
    stats: ProcStats,
    count: u64,
    synced_after: Duration,
    /// The reflector's RSS over an empty namespace.
    empty_kib: u64,
}

/// Runs `vpsnap-bench reflector` as its own process, lets it sync and settle, reads its
/// `/proc` figures, kills it.
async fn measure_reflector(k: &Knobs, ns: &str, empty_ns: &str) -> Result<Reflected> {
    let empty = reflect(k, empty_ns).await?;
    let mut full = reflect(k, ns).await?;
    full.empty_kib = empty.stats.hwm_kib;
    Ok(full)
}

async fn reflect(k: &Knobs, ns: &str) -> Result<Reflected> {
    let mut cmd = tokio::process::Command::new(std::env::current_exe()?);
    cmd.arg("reflector")
        .arg("--namespace")
        .arg(ns)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true);
    if let Some(kc) = &k.kubeconfig {
        cmd.arg("--kubeconfig").arg(kc);
    }
    let start = Instant::now();
    let mut child = cmd.spawn()?;
    let pid = child.id().ok_or("reflector exited at once")?;
    let stdout = child.stdout.take().ok_or("reflector stdout")?;
    let mut lines = tokio::io::BufReader::new(stdout).lines();
    let line = tokio::time::timeout(Duration::from_secs(120), lines.next_line())
        .await
        .map_err(|_| "the reflector did not sync within 120 s")??
        .ok_or("the reflector exited before it synced")?;
    let synced_after = start.elapsed();
    let count = line
        .strip_prefix("synced ")
        .and_then(|c| c.trim().parse().ok())
        .ok_or_else(|| format!("unexpected reflector output {line:?}"))?;
    // Let it settle as the operator did (allocator, watch bookmarks).
    tokio::time::sleep(Duration::from_secs(3)).await;
    let stats = ProcStats::read(pid).ok_or("reflector gone before it was measured")?;
    let _ = child.kill().await;
    Ok(Reflected {
        stats,
        count,
        synced_after,
        empty_kib: 0,
    })
}
