//! `vpsnap-chaos`: a seeded soak. Mixed work (snapshots pinned or evictable or plain,
//! backups, deletions, a restore and a schedule when the cluster serves those kinds) runs on
//! a few servers while the simulator injects faults that change over time and the harness
//! SIGKILLs and restarts the operator at random moments. Afterwards the faults stop,
//! everything settles (bounded), and invariants are checked against the simulator's full
//! record and the cluster; each is printed with its count. Exits non-zero on any violation.
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Parser;
use jiff::Timestamp;
use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, ListParams, Patch, PatchParams};
use kube::{Client, ResourceExt};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

use vpsnap::api::{VpsBackup, VpsSnapshot, parse_duration};
use vpsnap::bench::Result;
use vpsnap::bench::cluster::{self, ProviderSetup};
use vpsnap::bench::operator::{Operator, OperatorSpec, default_operator_bin};
use vpsnap::bench::report::{Table, Verdict, secs};
use vpsnap::controller::restore_point::RestorePoint;
use vpsnap::sim::{Faults, ObjectKind, Record, SimConfig, SimHandle, SimStatus};

const PROVIDER: &str = "chaos";
const TOKEN: &str = "chaos-token";
const SNAPSHOT_LIMIT: usize = 5;
const BACKUP_LIMIT: usize = 10;
const CREATE_DELAY: Duration = Duration::from_millis(1500);
/// First server id; servers are `FIRST_SERVER..FIRST_SERVER + servers`.
const FIRST_SERVER: u64 = 101;
/// Ready=False reasons that mean "still working on it", not a final answer.
const TRANSIENT: [&str; 8] = [
    "Pending",
    "Creating",
    "CreateOutcomeUnknown",
    "WaitingForRoom",
    "RateLimited",
    "ProviderNotReady",
    "ProviderNotFound",
    "UnknownProviderStatus",
];

#[derive(Parser)]
#[command(
    name = "vpsnap-chaos",
    about = "Seeded chaos soak: mixed work, provider faults and operator kills, then invariants"
)]
struct Cli {
    /// Kubeconfig of the control plane.
    #[arg(long, env = "KUBECONFIG")]
    kubeconfig: Option<PathBuf>,
    /// The operator binary (default: `vpsnap` next to this program).
    #[arg(long)]
    operator_bin: Option<PathBuf>,
    /// How long work, faults and kills go on, e.g. 10m [default: 10m; smoke 45s].
    #[arg(long, value_parser = parse_duration)]
    duration: Option<Duration>,
    /// Seeds the work, the fault schedule, the kill moments and the simulator's dice.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Mean seconds between operator kills (exponentially distributed) [default: 40; smoke 12].
    #[arg(long)]
    kill_every: Option<f64>,
    /// Servers at the simulated provider [default: 24; smoke 8].
    #[arg(long)]
    servers: Option<u64>,
    /// Work actions per second (creates, deletions, restores) [default: 2; smoke 6].
    #[arg(long)]
    rate: Option<f64>,
    /// Seconds between changes of the fault mix [default: 20; smoke 6].
    #[arg(long)]
    fault_period: Option<u64>,
    /// Longest wait for everything to settle once faults stop [default: 8m; smoke 60s].
    #[arg(long, value_parser = parse_duration)]
    settle_timeout: Option<Duration>,
    /// Append the operator's output here (default: a file in the temp directory).
    #[arg(long)]
    operator_log: Option<PathBuf>,
    /// A short seeded run (a few hundred objects, under two minutes): what CI runs.
    #[arg(long)]
    smoke: bool,
}

/// The full-run value, or the smoke one.
fn pick<T>(smoke: bool, full: T, small: T) -> T {
    if smoke { small } else { full }
}

struct Knobs {
    kubeconfig: Option<PathBuf>,
    operator_bin: PathBuf,
    duration: Duration,
    seed: u64,
    kill_every: f64,
    servers: u64,
    rate: f64,
    fault_period: Duration,
    settle_timeout: Duration,
    operator_log: PathBuf,
}

impl Knobs {
    fn resolve(c: Cli) -> Result<Self> {
        let s = c.smoke;
        Ok(Self {
            kubeconfig: c.kubeconfig,
            operator_bin: match c.operator_bin {
                Some(p) => p,
                None => default_operator_bin()?,
            },
            duration: c.duration.unwrap_or(pick(
                s,
                Duration::from_secs(600),
                Duration::from_secs(45),
            )),
            seed: c.seed,
            kill_every: c.kill_every.unwrap_or(pick(s, 40.0, 12.0)).max(1.0),
            servers: c.servers.unwrap_or(pick(s, 24, 8)).max(2),
            rate: c.rate.unwrap_or(pick(s, 2.0, 6.0)).max(0.05),
            fault_period: Duration::from_secs(c.fault_period.unwrap_or(pick(s, 20, 6)).max(1)),
            settle_timeout: c.settle_timeout.unwrap_or(pick(
                s,
                Duration::from_secs(480),
                Duration::from_secs(60),
            )),
            operator_log: c.operator_log.unwrap_or_else(|| {
                std::env::temp_dir()
                    .join(format!("vpsnap-chaos-operator-{}.log", std::process::id()))
            }),
        })
    }

    fn server_ids(&self) -> Vec<u64> {
        (FIRST_SERVER..FIRST_SERVER + self.servers).collect()
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let knobs = match Knobs::resolve(Cli::parse()) {
        Ok(k) => k,
        Err(e) => {
            eprintln!("vpsnap-chaos: {e}");
            return ExitCode::FAILURE;
        }
    };
    match chaos(knobs).await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("vpsnap-chaos: {e}");
            ExitCode::FAILURE
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Kind {
    Snapshot,
    Backup,
}

/// One object the harness declared.
struct Declared {
    kind: Kind,
    name: String,
    server: u64,
    pinned: bool,
    evictable: bool,
    retain: bool,
    /// The provider-side marker (snapshot name, or the backup description tag).
    marker: String,
    /// When the harness deleted it.
    deleted_at: Option<Timestamp>,
    /// A restore refers to it: never deleted by the harness.
    restore_source: bool,
}

/// What the harness did, for the checks.
#[derive(Default)]
struct Ledger {
    objects: Vec<Declared>,
    /// VpsRestore names with the snapshot object they restore from.
    restores: Vec<(String, String)>,
    schedules: Vec<String>,
    kills: u64,
    reconciles: u64,
    reconcile_scrapes_failed: u64,
    fault_changes: u64,
    notes: Vec<String>,
}

/// Everything that must be undone on the way out.
struct Env {
    client: Client,
    sim: Option<SimHandle>,
    operator: Option<Operator>,
    spec: Option<OperatorSpec>,
    namespace: Option<String>,
}

impl Env {
    async fn cleanup(mut self) {
        if let Some(op) = self.operator.take() {
            op.kill().await;
        }
        if let Some(ns) = self.namespace.take() {
            let started = Instant::now();
            cluster::delete_namespace(&self.client, &ns).await;
            eprintln!(
                "cleanup: namespace {ns} deleted in {}",
                secs(started.elapsed())
            );
        }
        if let Some(sim) = self.sim.take() {
            sim.shutdown().await;
        }
    }

    fn sim(&self) -> Result<&SimHandle> {
        Ok(self.sim.as_ref().ok_or("simulator gone")?)
    }

    fn start_operator(&mut self) -> Result<()> {
        let spec = self.spec.as_ref().ok_or("operator not configured")?;
        self.operator = Some(Operator::start(spec)?);
        Ok(())
    }
}

async fn chaos(k: Knobs) -> Result<bool> {
    let client = cluster::client(k.kubeconfig.as_deref()).await?;
    cluster::install_crds(&client).await?;
    let sim = vpsnap::sim::start(
        SimConfig {
            servers: k.server_ids(),
            tokens: vec![TOKEN.into()],
            create_delay: CREATE_DELAY,
            restore_delay: Duration::from_secs(3),
            snapshot_limit: SNAPSHOT_LIMIT,
            backup_limit: BACKUP_LIMIT,
            auto_backups: 1,
            seed: k.seed,
            ..SimConfig::default()
        },
        "127.0.0.1:0".parse()?,
    )
    .await?;
    let mut env = Env {
        client: client.clone(),
        sim: Some(sim),
        operator: None,
        spec: None,
        namespace: None,
    };
    let outcome = tokio::select! {
        r = run(&k, &mut env) => r,
        _ = tokio::signal::ctrl_c() => Err("interrupted".into()),
    };
    env.cleanup().await;
    let table = outcome?;
    println!("{}", table.render());
    println!("operator log: {}", k.operator_log.display());
    let violations = table.violations();
    if violations > 0 {
        println!("RESULT: {violations} invariant(s) violated");
    } else {
        println!("RESULT: every invariant held");
    }
    Ok(violations == 0)
}

/// Optional kinds the cluster serves (another controller adds them): their API resources.
struct Optional {
    restore: Option<ApiResource>,
    schedule: Option<ApiResource>,
}

async fn run(k: &Knobs, env: &mut Env) -> Result<Table> {
    let client = env.client.clone();
    let ns = cluster::create_namespace(&client, "chaos").await?;
    env.namespace = Some(ns.clone());
    println!(
        "vpsnap-chaos: seed {}, {} of work on {} servers, {:.1} actions/s, a kill every ~{:.0} s, faults changing every {}; namespace {ns}",
        k.seed,
        secs(k.duration),
        k.servers,
        k.rate,
        k.kill_every,
        secs(k.fault_period)
    );
    let kinds: HashMap<String, ApiResource> =
        cluster::vpsnap_kinds(&client).await?.into_iter().collect();
    let optional = Optional {
        restore: kinds.get("VpsRestore").cloned(),
        schedule: kinds.get("VpsSnapshotSchedule").cloned(),
    };
    let mut ledger = Ledger::default();
    if optional.restore.is_none() {
        ledger
            .notes
            .push("VpsRestore is not served by this cluster: restores skipped".into());
    }
    if optional.schedule.is_none() {
        ledger
            .notes
            .push("VpsSnapshotSchedule is not served by this cluster: schedules skipped".into());
    }
    for n in &ledger.notes {
        println!("note: {n}");
    }

    // Foreign objects the operator must never touch: a snapshot on every third server, a
    // manual backup on every fourth (plus one automatic backup per server from the config).
    let sim = env.sim()?;
    for (i, server) in k.server_ids().into_iter().enumerate() {
        if i % 3 == 0 {
            sim.add_foreign_snapshot(server, &format!("by-hand-{server}"), false);
        }
        if i % 4 == 0 {
            sim.add_foreign_backup(server, false);
        }
    }
    env.spec = Some(OperatorSpec {
        bin: k.operator_bin.clone(),
        kubeconfig: k.kubeconfig.clone(),
        namespace: ns.clone(),
        log: Some(k.operator_log.clone()),
        extra_args: Vec::new(),
    });
    env.start_operator()?;
    if let Some(op) = env.operator.as_mut() {
        op.wait_ready(Duration::from_secs(60)).await?;
    }
    let sim = env.sim()?;
    cluster::setup_provider(
        &client,
        &ns,
        ProviderSetup {
            name: PROVIDER,
            endpoint: sim.vps_rest_url(),
            token: TOKEN,
            poll_interval: "1s",
            resync_interval: "15s",
            requests_per_second: 50,
            max_in_flight: 8,
            // Deletions are part of the work here, not a mass deletion to hold back.
            extra: serde_json::json!({"deletionBreaker": {"maxDeletions": 1_000_000, "window": "1m"}}),
        },
        Duration::from_secs(60),
    )
    .await?;

    let mut monitor = Monitor::new(k.server_ids());
    if let Some(ar) = &optional.schedule {
        create_schedule(&client, &ns, ar, k, &mut ledger).await;
    }

    work(k, env, &client, &ns, &optional, &mut ledger, &mut monitor).await?;

    // --- settle ----------------------------------------------------------------------------
    let sim = env.sim()?;
    sim.set_faults(Faults::default());
    if let Some(ar) = &optional.schedule {
        for name in &ledger.schedules {
            let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), &ns, ar);
            let patch = serde_json::json!({"spec": {"suspend": true}});
            if let Err(e) = api
                .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                println!("note: could not suspend schedule {name}: {e}");
            }
        }
    }
    let alive = env.operator.as_mut().is_some_and(|op| op.alive());
    if !alive {
        ledger
            .notes
            .push("the operator had exited on its own before the settle phase; restarted".into());
        env.start_operator()?;
    }
    println!(
        "settling: faults off, work stopped, no more kills; waiting up to {} …",
        secs(k.settle_timeout)
    );
    let settle_start = Instant::now();
    let mut unconverged;
    let mut last_print = Instant::now();
    loop {
        monitor.sample(env.sim()?);
        unconverged = unconverged_objects(&client, &ns, &kinds).await?;
        if unconverged.is_empty() || settle_start.elapsed() > k.settle_timeout {
            break;
        }
        if last_print.elapsed() > Duration::from_secs(10) {
            println!(
                "  … {} not converged after {}: {}",
                unconverged.len(),
                secs(settle_start.elapsed()),
                summarize(&unconverged)
            );
            last_print = Instant::now();
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    let settled_after = settle_start.elapsed();
    if let Some(op) = &env.operator {
        match op.reconciles_total().await {
            Ok(n) => ledger.reconciles += n,
            Err(_) => ledger.reconcile_scrapes_failed += 1,
        }
    }
    monitor.sample(env.sim()?);
    let sim = env.sim()?;
    let record = sim.record();
    let restores = restore_sources(&client, &ns, &optional, &ledger).await;
    Ok(check(
        k,
        &ledger,
        &record,
        &monitor,
        sim,
        &unconverged,
        settled_after,
        &restores,
    ))
}

/// The seeded main loop: work actions, fault changes and kills until the duration is over.
async fn work(
    k: &Knobs,
    env: &mut Env,
    client: &Client,
    ns: &str,
    optional: &Optional,
    ledger: &mut Ledger,
    monitor: &mut Monitor,
) -> Result<()> {
    // Independent streams, so one kind of event does not shift the others.
    let mut work_rng = StdRng::seed_from_u64(k.seed);
    let mut fault_rng = StdRng::seed_from_u64(k.seed.wrapping_add(1));
    let mut kill_rng = StdRng::seed_from_u64(k.seed.wrapping_add(2));
    let start = Instant::now();
    let end = start + k.duration;
    let mut next_action = start;
    let mut next_faults = start;
    let mut next_kill = start + exponential(&mut kill_rng, k.kill_every, 0.5);
    let mut counter = 0u64;
    let mut last_progress = Instant::now();
    let max_restores = (k.duration.as_secs() / 150).max(1);
    while Instant::now() < end {
        let now = Instant::now();
        if now >= next_faults {
            let faults = fault_mix(&mut fault_rng, ledger.fault_changes);
            println!(
                "  t={:>5.1}s faults: {}",
                start.elapsed().as_secs_f64(),
                describe(&faults)
            );
            env.sim()?.set_faults(faults);
            ledger.fault_changes += 1;
            next_faults = now + k.fault_period;
        }
        if now >= next_kill {
            kill_and_restart(env, ledger).await?;
            println!(
                "  t={:>5.1}s operator killed and restarted (kill {})",
                start.elapsed().as_secs_f64(),
                ledger.kills
            );
            next_kill = Instant::now() + exponential(&mut kill_rng, k.kill_every, 0.5);
        }
        if now >= next_action {
            counter += 1;
            let past_third = start.elapsed() > k.duration / 3;
            let restore_due = optional.restore.is_some()
                && past_third
                && (ledger.restores.len() as u64) < max_restores;
            action(
                client,
                ns,
                optional,
                ledger,
                &mut work_rng,
                k,
                counter,
                restore_due,
            )
            .await;
            next_action += exponential(&mut work_rng, 1.0 / k.rate, 0.0);
        }
        if last_progress.elapsed() > Duration::from_secs(15) {
            let live = ledger
                .objects
                .iter()
                .filter(|o| o.deleted_at.is_none())
                .count();
            println!(
                "  t={:>5.1}s {} objects declared, {live} live, {} kills",
                start.elapsed().as_secs_f64(),
                ledger.objects.len(),
                ledger.kills
            );
            last_progress = Instant::now();
        }
        if monitor.due() {
            monitor.sample(env.sim()?);
        }
        let wake = next_action
            .min(next_faults)
            .min(next_kill)
            .min(end)
            .min(Instant::now() + Duration::from_millis(500));
        tokio::time::sleep_until(wake.into()).await;
    }
    Ok(())
}

/// Exponentially distributed delay with the given mean, at least `min_secs`.
fn exponential(rng: &mut StdRng, mean_secs: f64, min_secs: f64) -> Duration {
    let u: f64 = rng.random();
    Duration::from_secs_f64((-mean_secs * (1.0 - u).ln()).max(min_secs))
}

/// One fault mix: rates picked from the seed; timeouts rare (the simulator holds them 90 s).
/// Every fourth mix (from the second on) has timeouts and every fourth (from the third on) a
/// latency spike, so even a short run sees each kind of fault; some others are calm.
fn fault_mix(rng: &mut StdRng, index: u64) -> Faults {
    let calm = rng.random_bool(0.25) && index > 0 && matches!(index % 4, 0 | 3);
    let spike = rng.random_bool(0.25) || index % 4 == 2;
    let timeouts = rng.random_bool(0.2) || index % 4 == 1;
    let f = Faults {
        latency: if spike {
            Duration::from_millis(rng.random_range(200..1500))
        } else {
            Duration::ZERO
        },
        latency_jitter: Duration::from_millis(rng.random_range(0..100)),
        error_5xx_rate: rng.random_range(0.0..0.15),
        timeout_rate: if timeouts { 0.01 } else { 0.0 },
        drop_rate: rng.random_range(0.0..0.03),
        rate_429: rng.random_range(0.0..0.08),
        retry_after_secs: rng.random_range(1..=3),
        lost_create_rate: rng.random_range(0.0..0.3),
        fail_rate: rng.random_range(0.0..0.1),
        unknown_status_rate: 0.0,
        shuffle_lists: rng.random_bool(0.5),
        zomro_quirky_elem: false,
        ..Faults::default()
    };
    if calm { Faults::default() } else { f }
}

fn describe(f: &Faults) -> String {
    if *f == Faults::default() {
        return "none (calm)".into();
    }
    format!(
        "5xx {:.2}, 429 {:.2} (Retry-After {}s), timeout {:.3}, drop {:.2}, lost-create {:.2}, fail {:.2}, latency {:?}+{:?}{}",
        f.error_5xx_rate,
        f.rate_429,
        f.retry_after_secs,
        f.timeout_rate,
        f.drop_rate,
        f.lost_create_rate,
        f.fail_rate,
        f.latency,
        f.latency_jitter,
        if f.shuffle_lists {
            ", shuffled lists"
        } else {
            ""
        }
    )
}

async fn kill_and_restart(env: &mut Env, ledger: &mut Ledger) -> Result<()> {
    if let Some(op) = env.operator.take() {
        match op.reconciles_total().await {
            Ok(n) => ledger.reconciles += n,
            Err(_) => ledger.reconcile_scrapes_failed += 1,
        }
        op.kill().await;
        ledger.kills += 1;
    }
    env.start_operator()
}

/// One work action; failures of the apiserver call are printed and skipped (the harness is
/// not under test).
#[allow(clippy::too_many_arguments)]
async fn action(
    client: &Client,
    ns: &str,
    optional: &Optional,
    ledger: &mut Ledger,
    rng: &mut StdRng,
    k: &Knobs,
    counter: u64,
    restore_due: bool,
) {
    let roll: f64 = rng.random();
    let server = FIRST_SERVER + rng.random_range(0..k.servers);
    let result = if restore_due && roll < 0.05 {
        restore(client, ns, optional, ledger, rng).await
    } else if roll < 0.55 {
        create_snapshot(client, ns, ledger, rng, server, counter).await
    } else if roll < 0.75 {
        create_backup(client, ns, ledger, rng, server, counter).await
    } else {
        delete_one(client, ns, ledger, rng).await
    };
    if let Err(e) = result {
        println!("  harness: action failed (skipped): {e}");
    }
}

async fn create_snapshot(
    client: &Client,
    ns: &str,
    ledger: &mut Ledger,
    rng: &mut StdRng,
    server: u64,
    counter: u64,
) -> Result<()> {
    let name = format!("s-{counter}");
    let flags: f64 = rng.random();
    let pinned = flags < 0.15;
    let evictable = !pinned && flags < 0.65;
    let retain = rng.random_bool(0.1);
    let explicit = rng.random_bool(0.4);
    let mut extra = serde_json::json!({
        "pinned": pinned,
        "evictable": evictable,
        "deletionPolicy": if retain { "Retain" } else { "Delete" },
    });
    if explicit {
        extra["snapshotName"] = format!("chaos-{name}").into();
    }
    let api: Api<VpsSnapshot> = Api::namespaced(client.clone(), ns);
    let obj = cluster::apply(
        &api,
        cluster::snapshot_manifest(&name, PROVIDER, server, extra),
    )
    .await?;
    ledger.objects.push(Declared {
        kind: Kind::Snapshot,
        name,
        server,
        pinned,
        evictable,
        retain,
        marker: obj.marker(),
        deleted_at: None,
        restore_source: false,
    });
    Ok(())
}

async fn create_backup(
    client: &Client,
    ns: &str,
    ledger: &mut Ledger,
    rng: &mut StdRng,
    server: u64,
    counter: u64,
) -> Result<()> {
    let name = format!("b-{counter}");
    let flags: f64 = rng.random();
    let pinned = flags < 0.1;
    let evictable = !pinned && flags < 0.3;
    let retain = rng.random_bool(0.1);
    let extra = serde_json::json!({
        "pinned": pinned,
        "evictable": evictable,
        "deletionPolicy": if retain { "Retain" } else { "Delete" },
        "description": format!("chaos {name}"),
    });
    let api: Api<VpsBackup> = Api::namespaced(client.clone(), ns);
    let obj = cluster::apply(
        &api,
        cluster::backup_manifest(&name, PROVIDER, server, extra),
    )
    .await?;
    ledger.objects.push(Declared {
        kind: Kind::Backup,
        name,
        server,
        pinned,
        evictable,
        retain,
        marker: obj.marker(),
        deleted_at: None,
        restore_source: false,
    });
    Ok(())
}

async fn delete_one(
    client: &Client,
    ns: &str,
    ledger: &mut Ledger,
    rng: &mut StdRng,
) -> Result<()> {
    let live: Vec<usize> = ledger
        .objects
        .iter()
        .enumerate()
        .filter(|(_, o)| o.deleted_at.is_none() && !o.restore_source)
        .map(|(i, _)| i)
        .collect();
    if live.is_empty() {
        return Ok(());
    }
    let o = &mut ledger.objects[live[rng.random_range(0..live.len())]];
    o.deleted_at = Some(Timestamp::now());
    let dp = DeleteParams::default();
    let r = match o.kind {
        Kind::Snapshot => Api::<VpsSnapshot>::namespaced(client.clone(), ns)
            .delete(&o.name, &dp)
            .await
            .map(|_| ()),
        Kind::Backup => Api::<VpsBackup>::namespaced(client.clone(), ns)
            .delete(&o.name, &dp)
            .await
            .map(|_| ()),
    };
    match r {
        Ok(()) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// A `VpsRestore` from a Ready snapshot the harness declared (never deleted afterwards).
/// The source is not evictable: a restore whose source is evicted before it starts waits
/// for it forever (Reconciling, never Stalled), which would fail every such run on one known
/// issue instead of measuring the invariants.
async fn restore(
    client: &Client,
    ns: &str,
    optional: &Optional,
    ledger: &mut Ledger,
    rng: &mut StdRng,
) -> Result<()> {
    let Some(ar) = &optional.restore else {
        return Ok(());
    };
    let snapshots: Api<VpsSnapshot> = Api::namespaced(client.clone(), ns);
    let used: Vec<&str> = ledger.restores.iter().map(|(_, s)| s.as_str()).collect();
    let candidates: Vec<usize> = ledger
        .objects
        .iter()
        .enumerate()
        .filter(|(_, o)| {
            o.kind == Kind::Snapshot
                && !o.evictable
                && o.deleted_at.is_none()
                && !used.contains(&o.name.as_str())
        })
        .map(|(i, _)| i)
        .collect();
    let mut ready = Vec::new();
    for i in candidates {
        if let Ok(Some(s)) = snapshots.get_opt(&ledger.objects[i].name).await
            && cluster::snapshot_ready(&s)
        {
            ready.push(i);
        }
    }
    if ready.is_empty() {
        return Ok(());
    }
    let i = ready[rng.random_range(0..ready.len())];
    let source = ledger.objects[i].name.clone();
    let server = ledger.objects[i].server;
    let name = format!("r-{}", ledger.restores.len() + 1);
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, ar);
    let body = serde_json::json!({
        "apiVersion": ar.api_version, "kind": ar.kind,
        "metadata": {"name": name},
        "spec": {
            "providerRef": {"name": PROVIDER},
            "serverId": server,
            "source": {"snapshotRef": {"name": source}},
            "acknowledgeDataLoss": true,
        },
    });
    match api
        .patch(
            &name,
            &PatchParams::apply(cluster::MANAGER).force(),
            &Patch::Apply(&body),
        )
        .await
    {
        Ok(_) => {
            ledger.objects[i].restore_source = true;
            ledger.restores.push((name, source));
            Ok(())
        }
        Err(e) => {
            let note = format!("VpsRestore rejected by the apiserver ({e}): restores skipped");
            println!("note: {note}");
            ledger.notes.push(note);
            ledger.restores.push((String::new(), String::new()));
            Ok(())
        }
    }
}

/// One schedule over the last two servers, firing every 10 s with keep-last 2.
async fn create_schedule(
    client: &Client,
    ns: &str,
    ar: &ApiResource,
    k: &Knobs,
    ledger: &mut Ledger,
) {
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, ar);
    let last = FIRST_SERVER + k.servers - 1;
    let name = "every-10s";
    let body = serde_json::json!({
        "apiVersion": ar.api_version, "kind": ar.kind,
        "metadata": {"name": name},
        "spec": {
            "providerRef": {"name": PROVIDER},
            "serverIds": [last - 1, last],
            "schedule": "*/10 * * * * *",
            "timeZone": "UTC",
            "maxJitter": "1s",
            "retention": {"keepLast": 2},
            "template": {"description": "chaos schedule"},
        },
    });
    match api
        .patch(
            name,
            &PatchParams::apply(cluster::MANAGER).force(),
            &Patch::Apply(&body),
        )
        .await
    {
        Ok(_) => {
            println!(
                "schedule {name}: servers {} and {last}, every 10 s, keep last 2",
                last - 1
            );
            ledger.schedules.push(name.to_string());
        }
        Err(e) => {
            let note =
                format!("VpsSnapshotSchedule rejected by the apiserver ({e}): schedules skipped");
            println!("note: {note}");
            ledger.notes.push(note);
        }
    }
}

/// An object that has not reached a final state, with what it says.
struct Unconverged {
    kind: String,
    name: String,
    reason: String,
    message: String,
}

fn summarize(list: &[Unconverged]) -> String {
    let mut by: BTreeMap<String, usize> = BTreeMap::new();
    for u in list {
        *by.entry(format!("{} {}", u.kind, u.reason)).or_default() += 1;
    }
    by.iter()
        .map(|(k, n)| format!("{k}: {n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Every vpsnap object that is neither Ready nor in a terminal condition that names its cause.
async fn unconverged_objects(
    client: &Client,
    ns: &str,
    kinds: &HashMap<String, ApiResource>,
) -> Result<Vec<Unconverged>> {
    let mut out = Vec::new();
    for (kind, ar) in kinds {
        let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, ar);
        for o in api.list(&ListParams::default()).await?.items {
            let v = serde_json::to_value(&o)?;
            let deleting = o.metadata.deletion_timestamp.is_some();
            let condition = if kind == "VpsRestore" {
                "Succeeded"
            } else {
                "Ready"
            };
            let message = cluster::condition_of_value(&v, condition)
                .map(|(_, _, m)| m)
                .unwrap_or_default();
            let verdict = if kind == "VpsRestore" {
                match cluster::condition_of_value(&v, "Succeeded") {
                    Some((s, _, _)) if s == "True" => None,
                    Some((s, r, m)) if s == "False" && !r.is_empty() && !m.is_empty() => None,
                    Some((s, r, _)) => Some(format!("Succeeded={s} {r}")),
                    None => Some("no Succeeded condition".into()),
                }
            } else {
                let ready = cluster::condition_of_value(&v, "Ready");
                let stalled = cluster::condition_of_value(&v, "Stalled");
                match (ready, stalled) {
                    (Some((s, _, _)), _) if s == "True" && !deleting => None,
                    (_, Some((s, r, m)))
                        if s == "True"
                            && !r.is_empty()
                            && !m.is_empty()
                            && !TRANSIENT.contains(&r.as_str()) =>
                    {
                        None
                    }
                    (Some((s, r, _)), _) => Some(format!(
                        "{}Ready={s} {r}",
                        if deleting { "Terminating, " } else { "" }
                    )),
                    (None, _) => Some(format!(
                        "{}no Ready condition",
                        if deleting { "Terminating, " } else { "" }
                    )),
                }
            };
            if let Some(reason) = verdict {
                out.push(Unconverged {
                    kind: kind.clone(),
                    name: o.name_any(),
                    reason,
                    message,
                });
            }
        }
    }
    Ok(out)
}

/// Provider ids the restores resolved their source to: (VpsRestore, source provider id).
async fn restore_sources(
    client: &Client,
    ns: &str,
    optional: &Optional,
    ledger: &Ledger,
) -> Vec<(String, Option<String>)> {
    let Some(ar) = &optional.restore else {
        return Vec::new();
    };
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, ar);
    let mut out = Vec::new();
    for (name, _) in ledger.restores.iter().filter(|(n, _)| !n.is_empty()) {
        let id = api.get_opt(name).await.ok().flatten().and_then(|o| {
            o.data
                .get("status")?
                .get("sourceProviderId")?
                .as_str()
                .map(str::to_string)
        });
        out.push((name.clone(), id));
    }
    out
}

/// What the provider held over time: per (kind, id), the first moment it was seen
/// completed and the last status seen. Sampled from the work loop about twice a second.
struct Monitor {
    seen: HashMap<(Kind, u64), Seen>,
    servers: Vec<u64>,
    last: Option<Instant>,
}

#[derive(Clone, Debug)]
struct Seen {
    first_completed: Option<Timestamp>,
    last: SimStatus,
}

impl Monitor {
    fn new(servers: Vec<u64>) -> Self {
        Self {
            seen: HashMap::new(),
            servers,
            last: None,
        }
    }

    fn due(&self) -> bool {
        self.last
            .is_none_or(|t| t.elapsed() >= Duration::from_millis(500))
    }

    fn sample(&mut self, sim: &SimHandle) {
        let now = Timestamp::now();
        for &server in &self.servers {
            let snapshots = sim
                .snapshots(server)
                .into_iter()
                .map(|s| ((Kind::Snapshot, s.id), s.status));
            let backups = sim
                .backups(server)
                .into_iter()
                .map(|b| ((Kind::Backup, b.id), b.status));
            for (key, status) in snapshots.chain(backups) {
                let e = self.seen.entry(key).or_insert(Seen {
                    first_completed: None,
                    last: status.clone(),
                });
                if status == SimStatus::Completed && e.first_completed.is_none() {
                    e.first_completed = Some(now);
                }
                e.last = status;
            }
        }
        self.last = Some(Instant::now());
    }

    /// Whether `id` was a completed restore point at `at`: seen completed by then, or known
    /// to end completed and old enough to have completed between two samples.
    fn completed_at(&self, kind: Kind, id: u64, created: Timestamp, at: Timestamp) -> bool {
        let Some(seen) = self.seen.get(&(kind, id)) else {
            return false;
        };
        if seen.first_completed.is_some_and(|t| t <= at) {
            return true;
        }
        let ready_by = created
            .checked_add(jiff::SignedDuration::try_from(CREATE_DELAY).unwrap_or_default())
            .unwrap_or(created);
        seen.last == SimStatus::Completed && ready_by <= at
    }
}

/// The provider-side key of a record: the snapshot name, or the `[vpsnap:…]` tag of a
/// backup description (empty when the backup carries none: not vpsnap's).
fn record_key(kind: ObjectKind, name: Option<&str>, description: Option<&str>) -> String {
    match kind {
        ObjectKind::Snapshot => name.unwrap_or_default().to_string(),
        ObjectKind::Backup => description
            .and_then(|d| {
                let start = d.find("[vpsnap:")?;
                let end = start + d[start..].find(']')?;
                Some(d[start..=end].to_string())
            })
            .unwrap_or_default(),
    }
}

fn kind(k: ObjectKind) -> Kind {
    match k {
        ObjectKind::Snapshot => Kind::Snapshot,
        ObjectKind::Backup => Kind::Backup,
    }
}

/// Every invariant against the simulator's record and the cluster.
#[allow(clippy::too_many_arguments)]
fn check(
    k: &Knobs,
    ledger: &Ledger,
    record: &Record,
    monitor: &Monitor,
    sim: &SimHandle,
    unconverged: &[Unconverged],
    settled_after: Duration,
    restores: &[(String, Option<String>)],
) -> Table {
    let mut t = Table::default();
    let declared: HashMap<(Kind, &str), &Declared> = ledger
        .objects
        .iter()
        .map(|o| ((o.kind, o.marker.as_str()), o))
        .collect();

    // Duplicate creates: more than one provider create carrying one object's marker.
    let mut creates: HashMap<(Kind, String), u64> = HashMap::new();
    for c in record.creates.iter().filter(|c| !c.foreign) {
        let key = record_key(c.kind, c.name.as_deref(), c.description.as_deref());
        if !key.is_empty() {
            *creates.entry((kind(c.kind), key)).or_default() += 1;
        }
    }
    let duplicates: u64 = creates.values().map(|n| n - 1).sum();
    let duplicated_objects = creates.values().filter(|n| **n > 1).count();

    // Limits: the provider's high-water marks per server.
    let over_limit = record
        .servers
        .values()
        .filter(|s| s.snapshots_high_water > SNAPSHOT_LIMIT || s.backups_high_water > BACKUP_LIMIT)
        .count();
    let limit_rejections: u64 = record
        .servers
        .values()
        .map(|s| s.snapshot_limit_rejections + s.backup_limit_rejections)
        .sum();

    // Deletions the harness did not ask for (evictions, retention), and what they took.
    let mut foreign_deleted = 0;
    let mut pinned_deleted = 0;
    let mut retained_deleted = 0;
    let mut not_evictable_deleted = 0;
    let mut last_point_deleted = 0;
    let mut operator_deletes = 0;
    let mut unattributed_deletes = 0;
    let created_at: HashMap<(Kind, u64), (u64, Timestamp, u64)> = record
        .creates
        .iter()
        .map(|c| ((kind(c.kind), c.id), (c.seq, c.at, c.server)))
        .collect();
    let deleted_seq: HashMap<(Kind, u64), u64> = record
        .deletes
        .iter()
        .map(|d| ((kind(d.kind), d.id), d.seq))
        .collect();
    for d in &record.deletes {
        if d.foreign {
            foreign_deleted += 1;
            continue;
        }
        let key = record_key(d.kind, d.name.as_deref(), d.description.as_deref());
        let d_kind = kind(d.kind);
        let owner = declared.get(&(d_kind, key.as_str()));
        let asked = owner.and_then(|o| o.deleted_at).is_some_and(|t| t <= d.at);
        match owner {
            Some(o) if asked => {
                if o.retain {
                    retained_deleted += 1;
                }
                continue;
            }
            Some(o) => {
                operator_deletes += 1;
                if o.pinned {
                    pinned_deleted += 1;
                }
                if !o.evictable {
                    not_evictable_deleted += 1;
                }
            }
            None => {
                // Not declared by the harness: a schedule's child pruned by retention.
                unattributed_deletes += 1;
            }
        }
        // The last completed restore point of a server is never evicted.
        let Some(&(_, created, _)) = created_at.get(&(d_kind, d.id)) else {
            continue;
        };
        if !monitor.completed_at(d_kind, d.id, created, d.at) {
            continue;
        }
        let others = created_at.iter().any(|(&(k2, id), &(seq, at, server))| {
            k2 == d_kind
                && id != d.id
                && server == d.server
                && seq < d.seq
                && deleted_seq.get(&(k2, id)).is_none_or(|s| *s > d.seq)
                && monitor.completed_at(k2, id, at, d.at)
        });
        if !others {
            last_point_deleted += 1;
        }
    }

    // Restores: provider restore calls accepted per VpsRestore (by its resolved source).
    let mut restores_twice = 0;
    let mut restores_started = 0;
    for (_, id) in restores {
        let Some(id) = id.as_deref().and_then(|i| i.parse::<u64>().ok()) else {
            continue;
        };
        let n = record
            .restores
            .iter()
            .filter(|r| r.object_id == id && r.kind == ObjectKind::Snapshot && r.accepted)
            .count();
        restores_started += n;
        if n > 1 {
            restores_twice += 1;
        }
    }

    // Provider objects left behind by objects deleted with deletionPolicy Delete and gone.
    let mut leaked = 0;
    let present: Vec<(Kind, String)> = k
        .server_ids()
        .into_iter()
        .flat_map(|s| {
            let snaps = sim
                .snapshots(s)
                .into_iter()
                .map(|x| (Kind::Snapshot, x.name));
            let backups = sim.backups(s).into_iter().map(|b| {
                (
                    Kind::Backup,
                    record_key(ObjectKind::Backup, None, b.description.as_deref()),
                )
            });
            snaps.chain(backups).collect::<Vec<_>>()
        })
        .collect();
    let unconverged_names: Vec<&str> = unconverged.iter().map(|u| u.name.as_str()).collect();
    for o in &ledger.objects {
        if o.deleted_at.is_some()
            && !o.retain
            && !unconverged_names.contains(&o.name.as_str())
            && present.contains(&(o.kind, o.marker.clone()))
        {
            leaked += 1;
        }
    }

    let panics = std::fs::read_to_string(&k.operator_log)
        .map(|s| s.matches("panicked").count())
        .unwrap_or(0);

    t.section(&format!(
        "invariants (seed {}, {} of work on {} servers)",
        k.seed,
        secs(k.duration),
        k.servers
    ));
    t.row(
        "duplicate provider creates for one object",
        format!("{duplicates} ({duplicated_objects} objects)"),
        "= 0",
        Verdict::hard(duplicates == 0),
    );
    t.none(
        "servers that exceeded a limit (high-water > limit)",
        over_limit,
    );
    t.none("foreign objects deleted", foreign_deleted);
    t.none(
        "pinned objects deleted (not asked by the harness)",
        pinned_deleted,
    );
    t.none(
        "last completed restore point of a server deleted",
        last_point_deleted,
    );
    t.none(
        "objects not marked evictable evicted",
        not_evictable_deleted,
    );
    t.none(
        "provider objects of Retain objects deleted",
        retained_deleted,
    );
    if restores.is_empty() {
        t.info(
            "restores started more than once for one VpsRestore",
            "n/a (no VpsRestore run)",
        );
    } else {
        t.row(
            "restores started more than once for one VpsRestore",
            format!(
                "{restores_twice} ({} VpsRestores, {restores_started} accepted calls)",
                restores.len()
            ),
            "= 0",
            Verdict::hard(restores_twice == 0),
        );
    }
    t.row(
        &format!("objects not converged after {}", secs(settled_after)),
        if unconverged.is_empty() {
            "0".to_string()
        } else {
            format!("{} ({})", unconverged.len(), summarize(unconverged))
        },
        "= 0",
        Verdict::hard(unconverged.is_empty()),
    );
    t.none("provider objects left behind by deleted objects", leaked);
    t.none("operator panics", panics);

    t.section("totals");
    let snaps = ledger
        .objects
        .iter()
        .filter(|o| o.kind == Kind::Snapshot)
        .count();
    t.info(
        "objects declared (snapshots + backups)",
        format!(
            "{} ({snaps} + {})",
            ledger.objects.len(),
            ledger.objects.len() - snaps
        ),
    );
    t.info(
        "objects deleted by the harness",
        ledger
            .objects
            .iter()
            .filter(|o| o.deleted_at.is_some())
            .count()
            .to_string(),
    );
    t.info(
        "pinned / evictable / Retain",
        format!(
            "{} / {} / {}",
            ledger.objects.iter().filter(|o| o.pinned).count(),
            ledger.objects.iter().filter(|o| o.evictable).count(),
            ledger.objects.iter().filter(|o| o.retain).count()
        ),
    );
    t.info("operator kills (SIGKILL)", ledger.kills.to_string());
    t.info(
        "reconciles (summed over every operator process)",
        if ledger.reconcile_scrapes_failed > 0 {
            format!(
                "{} (+ {} process(es) not scraped)",
                ledger.reconciles, ledger.reconcile_scrapes_failed
            )
        } else {
            ledger.reconciles.to_string()
        },
    );
    let faults = sim.faults_injected();
    t.info(
        "faults injected",
        format!(
            "{} ({})",
            faults.values().sum::<u64>(),
            faults
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(" ")
        ),
    );
    t.info("fault mix changes", ledger.fault_changes.to_string());
    t.info(
        "provider creates / deletes / restore calls",
        format!(
            "{} / {} / {}",
            record.creates.iter().filter(|c| !c.foreign).count(),
            record.deletes.len(),
            record.restores.len()
        ),
    );
    t.info(
        "deletes made by the operator itself (evictions)",
        operator_deletes.to_string(),
    );
    t.info(
        "deletes of objects the harness did not declare (schedule retention)",
        unattributed_deletes.to_string(),
    );
    t.info(
        "creates the provider refused for the limit",
        limit_rejections.to_string(),
    );
    t.info(
        "provider calls",
        sim.calls()
            .iter()
            .map(|(k, v)| format!("{}={v}", k.trim_start_matches("vps_rest.")))
            .collect::<Vec<_>>()
            .join(" "),
    );
    for n in &ledger.notes {
        t.info("note", n.clone());
    }
    for u in unconverged.iter().take(20) {
        t.info(
            "not converged",
            format!("{}/{}: {}: {}", u.kind, u.name, u.reason, u.message),
        );
    }
    t
}
