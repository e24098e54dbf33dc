//! `vpsnap-chaos`: a seeded soak. Mixed work (snapshots pinned or evictable or plain,
//! backups, deletions, a restore and a schedule when the cluster serves those kinds) runs on
//! a few servers while the simulator injects faults that change over time — request faults
//! and the provider's own ways (held create answers, late list visibility, cut descriptions,
//! lingering deletes, partial lists) — and the harness SIGKILLs the operator at random
//! moments. With `--replicas 2` two operators run with leader election, and the harness also
//! freezes the leader (SIGSTOP, preferably while a create answer to it is held) for longer
//! than the lease, then thaws it. Afterwards the faults stop, everything settles (bounded),
//! the operators are stopped, and every invariant is checked against the simulator's full
//! record and the objects' status history; each is printed with its count, each violation
//! with the provider calls made for its object and the process that made them. Exits
//! non-zero on any violation.
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
use vpsnap::bench::chaos::history::{History, Recorder};
use vpsnap::bench::chaos::invariants::{self, Finding, Inputs, Invariant, Kind, Limits, ObjectRef};
use vpsnap::bench::chaos::mix;
use vpsnap::bench::cluster::{self, ProviderSetup};
use vpsnap::bench::operator::{OperatorSpec, default_operator_bin};
use vpsnap::bench::replicas::ReplicaSet;
use vpsnap::bench::report::{Table, Verdict, secs};
use vpsnap::sim::{Faults, SimConfig, SimHandle, SimStatus};

const PROVIDER: &str = "chaos";
const TOKEN: &str = "chaos-token";
const SNAPSHOT_LIMIT: usize = 5;
const BACKUP_LIMIT: usize = 10;
const CREATE_DELAY: Duration = Duration::from_millis(1500);
/// First server id; servers are `FIRST_SERVER..FIRST_SERVER + servers`.
const FIRST_SERVER: u64 = 101;
/// Ready=False reasons that mean "still working on it", not a final answer.
const TRANSIENT: [&str; 10] = [
    "ListingIncomplete",
    "DeletionPending",
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
    about = "Seeded chaos soak: mixed work, provider faults, operator kills and (with two replicas) leader freezes, then invariants"
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
    /// Seeds the work, the fault schedule, the kill and freeze moments and the simulator's dice.
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
    /// Operator processes; more than one run with --leader-election and are frozen too.
    #[arg(long, default_value_t = 1)]
    replicas: usize,
    /// Lease duration (seconds) of the replicas [default: 15; smoke 5].
    #[arg(long)]
    lease_duration: Option<u64>,
    /// Mean seconds between freezes of the leader, with two replicas [default: 90; smoke 30,
    /// the first one early].
    #[arg(long)]
    freeze_every: Option<f64>,
    /// Request faults only: no held answers, late visibility, cut descriptions, lingering
    /// deletes or partial lists (the request faults of a seed stay the same either way).
    #[arg(long)]
    no_provider_quirks: bool,
    /// Append the operator's output here (default: a file in the temp directory; with
    /// several replicas one file each, `-a`, `-b`, … before the extension).
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
    replicas: usize,
    lease_duration: Duration,
    freeze_every: f64,
    quirks: bool,
    smoke: bool,
    operator_log: PathBuf,
}

impl Knobs {
    fn resolve(c: Cli) -> Result<Self> {
        let s = c.smoke;
        if c.replicas == 0 || c.replicas > 26 {
            return Err("--replicas must be between 1 and 26".into());
        }
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
            replicas: c.replicas,
            lease_duration: Duration::from_secs(c.lease_duration.unwrap_or(pick(s, 15, 6)).max(6)),
            freeze_every: c.freeze_every.unwrap_or(pick(s, 90.0, 30.0)).max(1.0),
            quirks: !c.no_provider_quirks,
            smoke: s,
            operator_log: c.operator_log.unwrap_or_else(|| {
                std::env::temp_dir()
                    .join(format!("vpsnap-chaos-operator-{}.log", std::process::id()))
            }),
        })
    }

    fn server_ids(&self) -> Vec<u64> {
        (FIRST_SERVER..FIRST_SERVER + self.servers).collect()
    }

    /// Longest hold of a create answer: past a freeze with several replicas (so the answer
    /// reaches a thawed process), a few seconds otherwise.
    fn longest_hold(&self) -> Duration {
        if self.replicas > 1 {
            self.lease_duration * 2
        } else {
            Duration::from_secs(8)
        }
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

/// One object the harness declared.
struct Declared {
    kind: Kind,
    name: String,
    server: u64,
    pinned: bool,
    evictable: bool,
    retain: bool,
    /// When the harness deleted it.
    deleted_at: Option<Timestamp>,
    /// A restore refers to it: never deleted by the harness.
    restore_source: bool,
}

/// What the harness did, for the checks and the report.
struct Ledger {
    start: Instant,
    objects: Vec<Declared>,
    /// VpsRestore names with the snapshot object they restore from.
    restores: Vec<(String, String)>,
    schedules: Vec<String>,
    kills: u64,
    freezes: u64,
    /// Freezes that caught a create answer to the frozen process held by the provider.
    freezes_mid_create: u64,
    handovers: u64,
    exits: u64,
    fault_changes: u64,
    notes: Vec<String>,
    /// Kills, freezes, thaws, exits and Lease changes, with their time.
    events: Vec<(Timestamp, String)>,
}

impl Ledger {
    fn new() -> Self {
        Self {
            start: Instant::now(),
            objects: Vec::new(),
            restores: Vec::new(),
            schedules: Vec::new(),
            kills: 0,
            freezes: 0,
            freezes_mid_create: 0,
            handovers: 0,
            exits: 0,
            fault_changes: 0,
            notes: Vec::new(),
            events: Vec::new(),
        }
    }

    /// Prints a process event and keeps it for the report.
    fn event(&mut self, text: String) {
        println!("  t={:>5.1}s {text}", self.start.elapsed().as_secs_f64());
        self.events.push((Timestamp::now(), text));
    }

    fn deleted_by_harness(&self) -> HashMap<(Kind, String), Timestamp> {
        self.objects
            .iter()
            .filter_map(|o| o.deleted_at.map(|t| ((o.kind, o.name.clone()), t)))
            .collect()
    }
}

/// Everything that must be undone on the way out.
struct Env {
    client: Client,
    sim: Option<SimHandle>,
    replicas: Option<ReplicaSet>,
    recorder: Option<Recorder>,
    namespace: Option<String>,
}

impl Env {
    async fn cleanup(mut self) {
        if let Some(mut r) = self.replicas.take() {
            r.stop_all().await;
        }
        if let Some(rec) = self.recorder.take() {
            rec.finish();
        }
        if let Some(ns) = self.namespace.take() {
            let started = Instant::now();
            let limit = Duration::from_secs(60);
            match tokio::time::timeout(limit, cluster::delete_namespace(&self.client, &ns)).await {
                Ok(()) => eprintln!(
                    "cleanup: namespace {ns} deleted in {}",
                    secs(started.elapsed())
                ),
                Err(_) => eprintln!(
                    "cleanup: namespace {ns} not deleted within {} (apiserver stuck?)",
                    secs(limit)
                ),
            }
        }
        if let Some(sim) = self.sim.take() {
            sim.shutdown().await;
        }
    }

    fn sim(&self) -> Result<&SimHandle> {
        Ok(self.sim.as_ref().ok_or("simulator gone")?)
    }

    fn replicas(&mut self) -> Result<&mut ReplicaSet> {
        Ok(self.replicas.as_mut().ok_or("operators not configured")?)
    }
}

/// The table, then the violations with their evidence and the process timeline.
struct Outcome {
    table: Table,
    details: String,
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
        replicas: None,
        recorder: None,
        namespace: None,
    };
    // A hung apiserver (e.g. its etcd out of disk) must not hang the run: past this the run
    // is abandoned, and cleaned up like an interrupted one.
    let deadline = k.duration + k.settle_timeout + Duration::from_secs(300);
    let outcome = tokio::select! {
        r = tokio::time::timeout(deadline, run(&k, &mut env)) => match r {
            Ok(r) => r,
            Err(_) => Err(format!("the run did not finish within {}", secs(deadline)).into()),
        },
        e = interrupted() => Err(e.into()),
    };
    let logs = env
        .replicas
        .as_ref()
        .map(ReplicaSet::logs)
        .unwrap_or_default();
    env.cleanup().await;
    let outcome = outcome?;
    println!("{}", outcome.table.render());
    print!("{}", outcome.details);
    for log in logs {
        println!("operator log: {}", log.display());
    }
    let violations = outcome.table.violations();
    if violations > 0 {
        println!("RESULT: {violations} invariant(s) violated");
    } else {
        println!("RESULT: every invariant held");
    }
    Ok(violations == 0)
}

/// Ctrl-C or SIGTERM (e.g. from `timeout`): the operators are stopped and the namespace
/// deleted on the way out instead of being left behind.
async fn interrupted() -> String {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
            return "interrupted".into();
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => "interrupted".into(),
        _ = term.recv() => "terminated".into(),
    }
}

/// Optional kinds the cluster serves (another controller adds them): their API resources.
struct Optional {
    restore: Option<ApiResource>,
    schedule: Option<ApiResource>,
}

async fn run(k: &Knobs, env: &mut Env) -> Result<Outcome> {
    let client = env.client.clone();
    let ns = cluster::create_namespace(&client, "chaos").await?;
    env.namespace = Some(ns.clone());
    println!(
        "vpsnap-chaos: seed {}, {} of work on {} servers, {:.1} actions/s, a kill every ~{:.0} s, faults changing every {}{}{}; namespace {ns}",
        k.seed,
        secs(k.duration),
        k.servers,
        k.rate,
        k.kill_every,
        secs(k.fault_period),
        if k.quirks {
            ", provider quirks on"
        } else {
            ", request faults only"
        },
        if k.replicas > 1 {
            format!(
                "; {} replicas, lease {}, a leader freeze every ~{:.0} s",
                k.replicas,
                secs(k.lease_duration),
                k.freeze_every
            )
        } else {
            String::new()
        }
    );
    let kinds: HashMap<String, ApiResource> =
        cluster::vpsnap_kinds(&client).await?.into_iter().collect();
    let optional = Optional {
        restore: kinds.get("VpsRestore").cloned(),
        schedule: kinds.get("VpsSnapshotSchedule").cloned(),
    };
    let mut ledger = Ledger::new();
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
    let watched: Vec<(String, ApiResource)> = ["VpsSnapshot", "VpsBackup", "VpsRestore"]
        .iter()
        .filter_map(|kind| kinds.get(*kind).map(|ar| (kind.to_string(), ar.clone())))
        .collect();
    env.recorder = Some(Recorder::start(&client, &ns, &watched));

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
    let spec = OperatorSpec {
        bin: k.operator_bin.clone(),
        kubeconfig: k.kubeconfig.clone(),
        namespace: ns.clone(),
        log: Some(k.operator_log.clone()),
        extra_args: Vec::new(),
        env: Vec::new(),
    };
    env.replicas = Some(ReplicaSet::new(
        client.clone(),
        spec,
        k.replicas,
        k.lease_duration,
    ));
    let replicas = env.replicas()?;
    for slot in 0..replicas.len() {
        let instance = replicas.start(slot)?;
        ledger.event(format!("started {instance}"));
    }
    replicas.wait_ready(Duration::from_secs(60)).await?;
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
        Duration::from_secs(90),
    )
    .await?;

    let mut monitor = Monitor::new(k.server_ids());
    if let Some(ar) = &optional.schedule {
        create_schedule(&client, &ns, ar, k, &mut ledger).await;
    }

    let mut turmoil = Turmoil::new(k);
    work(
        k,
        env,
        &client,
        &ns,
        &optional,
        &mut ledger,
        &mut monitor,
        &mut turmoil,
    )
    .await?;

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
    turmoil.calm_down(env, &mut ledger).await?;
    println!(
        "settling: faults off, work stopped, no more kills or freezes; waiting up to {} …",
        secs(k.settle_timeout)
    );
    let settle_start = Instant::now();
    let mut unconverged;
    let mut last_print = Instant::now();
    loop {
        turmoil.supervise(env, &mut ledger).await?;
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

    // The record is final only once no operator can call the provider any more.
    let replicas = env.replicas()?;
    replicas.stop_all().await;
    let (reconciles, scrapes_failed) = (replicas.reconciles, replicas.scrapes_failed);
    let logs = replicas.logs();
    let history = env
        .recorder
        .take()
        .map(Recorder::finish)
        .unwrap_or_default();
    let sim = env.sim()?;
    monitor.sample(sim);
    let record = sim.record();
    let present: Vec<(Kind, u64)> = k
        .server_ids()
        .into_iter()
        .flat_map(|s| {
            let snaps = sim
                .snapshots(s)
                .into_iter()
                .filter(|x| x.status != SimStatus::Deleting)
                .map(|x| (Kind::Snapshot, x.id));
            let backups = sim
                .backups(s)
                .into_iter()
                .filter(|x| x.status != SimStatus::Deleting)
                .map(|x| (Kind::Backup, x.id));
            snaps.chain(backups).collect::<Vec<_>>()
        })
        .collect();
    let deleted = ledger.deleted_by_harness();
    let completed = |kind: Kind, id: u64, created: Timestamp, at: Timestamp| {
        monitor.completed_at(kind, id, created, at)
    };
    let calls = sim.call_log(0);
    let mut findings = invariants::check(&Inputs {
        record: &record,
        calls: &calls,
        history: &history,
        deleted_by_harness: &deleted,
        completed: &completed,
        limits: Limits {
            snapshots: SNAPSHOT_LIMIT,
            backups: BACKUP_LIMIT,
        },
    });
    findings.extend(invariants::left_behind(
        &record, &history, &present, &deleted,
    ));
    findings.extend(unconverged.iter().map(|u| Finding {
        invariant: Invariant::NotConverged,
        count: 1,
        object: Some(ObjectRef {
            kind: u.kind.clone(),
            name: u.name.clone(),
        }),
        detail: format!(
            "not converged after {}: {}: {}",
            secs(settled_after),
            u.reason,
            u.message
        ),
    }));
    findings.extend(panics(&logs));
    let stats = Stats {
        reconciles,
        scrapes_failed,
        settled_after,
        held: sim
            .faults_injected()
            .get("hold_create")
            .copied()
            .unwrap_or(0),
    };
    let table = report(k, &ledger, &record, sim, &findings, &stats);
    let details = details(&findings, &record, &history, &ledger);
    Ok(Outcome { table, details })
}

struct Stats {
    reconciles: u64,
    scrapes_failed: u64,
    settled_after: Duration,
    held: u64,
}

/// Every line of the operators' logs that reports a panic.
fn panics(logs: &[PathBuf]) -> Vec<Finding> {
    let mut out = Vec::new();
    for log in logs {
        let Ok(text) = std::fs::read_to_string(log) else {
            continue;
        };
        for line in text.lines().filter(|l| l.contains("panicked")) {
            out.push(Finding {
                invariant: Invariant::Panic,
                count: 1,
                object: None,
                detail: format!("{}: {}", log.display(), line.trim()),
            });
        }
    }
    out
}

/// The seeded disruptions of the operator processes: kills (of the leader first), freezes
/// of the leader for longer than the lease — armed until the provider holds a create answer
/// to it, or a few seconds have passed — thaws, restarts of processes that exit, and the
/// Lease watched for handovers.
struct Turmoil {
    kill_rng: StdRng,
    freeze_rng: StdRng,
    kill_every: f64,
    freeze_every: f64,
    lease: Duration,
    next_kill: Instant,
    /// `None` with one replica: nothing to freeze.
    next_freeze: Option<Instant>,
    armed: Option<Armed>,
    thaw: Option<(usize, Instant)>,
    holder: Option<String>,
    /// The mix in force, restored when an armed freeze's hold overlay ends.
    faults: Faults,
}

struct Armed {
    slot: usize,
    instance: String,
    until: Instant,
    length: Duration,
}

/// Longest wait for one work action's apiserver calls.
const ACTION_TIMEOUT: Duration = Duration::from_secs(30);

/// How long an armed freeze waits for a held create answer to its target.
const ARM_WINDOW: Duration = Duration::from_secs(6);

impl Turmoil {
    fn new(k: &Knobs) -> Self {
        let mut kill_rng = StdRng::seed_from_u64(k.seed.wrapping_add(2));
        let mut freeze_rng = StdRng::seed_from_u64(k.seed.wrapping_add(4));
        let start = Instant::now();
        let next_kill = start + exponential(&mut kill_rng, k.kill_every, 0.5);
        let next_freeze = (k.replicas > 1).then(|| {
            if k.smoke {
                // The smoke must see a freeze: early, at a seeded moment.
                start + k.duration.mul_f64(freeze_rng.random_range(0.15..0.3))
            } else {
                start + exponential(&mut freeze_rng, k.freeze_every, 10.0)
            }
        });
        Self {
            kill_rng,
            freeze_rng,
            kill_every: k.kill_every,
            freeze_every: k.freeze_every,
            lease: k.lease_duration,
            next_kill,
            next_freeze,
            armed: None,
            thaw: None,
            holder: None,
            faults: Faults::default(),
        }
    }

    /// The next moment something is due.
    fn next_due(&self) -> Instant {
        let mut t = self.next_kill;
        if let Some(f) = self.next_freeze {
            t = t.min(f);
        }
        if let Some((_, at)) = self.thaw {
            t = t.min(at);
        }
        if let Some(a) = &self.armed {
            // Poll the held answers while armed.
            t = t
                .min(Instant::now() + Duration::from_millis(100))
                .min(a.until);
        }
        t
    }

    /// Restarts what exited and follows the Lease.
    async fn supervise(&mut self, env: &mut Env, ledger: &mut Ledger) -> Result<()> {
        let replicas = env.replicas()?;
        for exit in replicas.reap() {
            ledger.exits += 1;
            let next = replicas.start(exit.slot)?;
            ledger.event(format!(
                "{} exited ({}); restarted as {next}",
                exit.instance, exit.status
            ));
        }
        if replicas.leader_election() {
            let holder = replicas.holder().await;
            if holder.is_some() && holder != self.holder {
                if self.holder.is_some() {
                    ledger.handovers += 1;
                }
                ledger.event(format!(
                    "lease: {} → {}",
                    self.holder.as_deref().unwrap_or("(none)"),
                    holder.as_deref().unwrap_or("(none)")
                ));
                self.holder = holder;
            }
        }
        Ok(())
    }

    /// The mix in force changed.
    fn faults_changed(&mut self, faults: Faults) {
        self.faults = faults;
    }

    async fn step(&mut self, env: &mut Env, ledger: &mut Ledger) -> Result<()> {
        self.supervise(env, ledger).await?;
        let now = Instant::now();
        if let Some((slot, at)) = self.thaw
            && now >= at
        {
            self.thaw = None;
            let replicas = env.replicas()?;
            if replicas.is_frozen(slot) {
                let instance = replicas.instance(slot);
                replicas.thaw(slot).await?;
                ledger.event(format!("thawed {instance} (SIGCONT)"));
            }
        }
        self.freeze_step(env, ledger).await?;
        if Instant::now() >= self.next_kill {
            self.kill(env, ledger).await?;
            self.next_kill = Instant::now() + exponential(&mut self.kill_rng, self.kill_every, 0.5);
        }
        Ok(())
    }

    async fn freeze_step(&mut self, env: &mut Env, ledger: &mut Ledger) -> Result<()> {
        let now = Instant::now();
        if let Some(armed) = &self.armed {
            let held = env.sim()?.held_calls().into_iter().find(|c| {
                c.user_agent
                    .as_deref()
                    .is_some_and(|ua| ua.contains(&format!("({})", armed.instance)))
            });
            if held.is_none() && now < armed.until {
                return Ok(());
            }
            let Armed {
                slot,
                instance,
                length,
                ..
            } = self.armed.take().ok_or("not armed")?;
            env.sim()?.set_faults(self.faults.clone());
            let replicas = env.replicas()?;
            if !replicas.running(slot) || replicas.instance(slot) != instance {
                ledger.event(format!("freeze of {instance} dropped: it is gone"));
                self.next_freeze = Some(now + Duration::from_secs(5));
                return Ok(());
            }
            replicas.freeze(slot).await?;
            ledger.freezes += 1;
            let why = match &held {
                Some(c) => {
                    ledger.freezes_mid_create += 1;
                    format!(
                        "while the provider holds its answer to call {} ({})",
                        c.n, c.endpoint
                    )
                }
                None => "no create answer to it was held".into(),
            };
            ledger.event(format!(
                "froze {instance} (leader, SIGSTOP) for {}: {why}",
                secs(length)
            ));
            self.thaw = Some((slot, Instant::now() + length));
            self.next_freeze = Some(
                Instant::now() + length + exponential(&mut self.freeze_rng, self.freeze_every, 5.0),
            );
            return Ok(());
        }
        let Some(due) = self.next_freeze else {
            return Ok(());
        };
        if now < due || self.thaw.is_some() {
            return Ok(());
        }
        let replicas = env.replicas()?;
        let Some(slot) = replicas.leader().await.filter(|s| !replicas.is_frozen(*s)) else {
            // No leader to freeze right now (a handover is under way): try again soon.
            self.next_freeze = Some(now + Duration::from_secs(1));
            return Ok(());
        };
        let instance = replicas.instance(slot);
        let length = self.lease.mul_f64(self.freeze_rng.random_range(1.5..3.0));
        // Hold create answers for a while, so the freeze likely catches one in flight; the
        // answer comes while the process is frozen or after it thaws.
        let hold = length.mul_f64(self.freeze_rng.random_range(0.5..1.5));
        let mut overlay = self.faults.clone();
        overlay.hold_create_rate = overlay.hold_create_rate.max(0.6);
        overlay.hold_create_for = hold;
        env.sim()?.set_faults(overlay);
        ledger.event(format!(
            "freeze of {instance} armed: create answers held {} for up to {}",
            secs(hold),
            secs(ARM_WINDOW)
        ));
        self.armed = Some(Armed {
            slot,
            instance,
            until: now + ARM_WINDOW,
            length,
        });
        Ok(())
    }

    /// SIGKILL, then a new incarnation. With several replicas the first kill (and most
    /// later ones) takes the leader, which forces a handover.
    async fn kill(&mut self, env: &mut Env, ledger: &mut Ledger) -> Result<()> {
        let leader_first = ledger.kills == 0 || self.kill_rng.random_bool(0.6);
        let pick: f64 = self.kill_rng.random();
        let replicas = env.replicas()?;
        let candidates: Vec<usize> = (0..replicas.len())
            .filter(|s| replicas.running(*s) && !replicas.is_frozen(*s))
            .collect();
        if candidates.is_empty() {
            return Ok(());
        }
        let leader = replicas.leader().await.filter(|s| candidates.contains(s));
        let slot = match leader {
            Some(l) if leader_first => l,
            _ => candidates[((pick * candidates.len() as f64) as usize).min(candidates.len() - 1)],
        };
        let instance = replicas.instance(slot);
        let role = if Some(slot) == leader && replicas.leader_election() {
            " (leader)"
        } else {
            ""
        };
        replicas.kill(slot).await;
        let next = replicas.start(slot)?;
        ledger.kills += 1;
        ledger.event(format!(
            "killed {instance}{role} (SIGKILL); restarted as {next}"
        ));
        Ok(())
    }

    /// Before settling: no more arming, everything thawed, every slot running.
    async fn calm_down(&mut self, env: &mut Env, ledger: &mut Ledger) -> Result<()> {
        self.armed = None;
        self.thaw = None;
        self.next_freeze = None;
        let replicas = env.replicas()?;
        for (slot, _) in replicas.frozen() {
            let instance = replicas.instance(slot);
            replicas.thaw(slot).await?;
            ledger.event(format!("thawed {instance} (SIGCONT) before settling"));
        }
        for slot in 0..replicas.len() {
            if !replicas.running(slot) {
                let next = replicas.start(slot)?;
                ledger.event(format!("started {next} before settling"));
            }
        }
        self.supervise(env, ledger).await
    }
}

/// The seeded main loop: work actions, fault changes, kills and freezes until the duration
/// is over.
#[allow(clippy::too_many_arguments)]
async fn work(
    k: &Knobs,
    env: &mut Env,
    client: &Client,
    ns: &str,
    optional: &Optional,
    ledger: &mut Ledger,
    monitor: &mut Monitor,
    turmoil: &mut Turmoil,
) -> Result<()> {
    // Independent streams, so one kind of event does not shift the others.
    let mut work_rng = StdRng::seed_from_u64(k.seed);
    let mut fault_rng = StdRng::seed_from_u64(k.seed.wrapping_add(1));
    let mut quirk_rng = StdRng::seed_from_u64(k.seed.wrapping_add(3));
    let start = Instant::now();
    let end = start + k.duration;
    let mut next_action = start;
    let mut next_faults = start;
    let mut counter = 0u64;
    let mut last_progress = Instant::now();
    let max_restores = (k.duration.as_secs() / 150).max(1);
    while Instant::now() < end {
        let now = Instant::now();
        if now >= next_faults {
            let mut faults = mix::request_faults(&mut fault_rng, ledger.fault_changes);
            if k.quirks {
                faults = mix::add_quirks(
                    &mut quirk_rng,
                    ledger.fault_changes,
                    faults,
                    k.longest_hold(),
                );
            }
            println!(
                "  t={:>5.1}s faults: {}",
                start.elapsed().as_secs_f64(),
                mix::describe(&faults)
            );
            env.sim()?.set_faults(faults.clone());
            turmoil.faults_changed(faults);
            ledger.fault_changes += 1;
            next_faults = now + k.fault_period;
        }
        turmoil.step(env, ledger).await?;
        if Instant::now() >= next_action {
            counter += 1;
            let past_third = start.elapsed() > k.duration / 3;
            let restore_due = optional.restore.is_some()
                && past_third
                && (ledger.restores.len() as u64) < max_restores;
            let acted = tokio::time::timeout(
                ACTION_TIMEOUT,
                action(
                    client,
                    ns,
                    optional,
                    ledger,
                    &mut work_rng,
                    k,
                    counter,
                    restore_due,
                ),
            )
            .await;
            if acted.is_err() {
                println!(
                    "  harness: action {counter} took over {} (apiserver stuck?); skipped",
                    secs(ACTION_TIMEOUT)
                );
            }
            next_action += exponential(&mut work_rng, 1.0 / k.rate, 0.0);
        }
        if last_progress.elapsed() > Duration::from_secs(15) {
            let live = ledger
                .objects
                .iter()
                .filter(|o| o.deleted_at.is_none())
                .count();
            println!(
                "  t={:>5.1}s {} objects declared, {live} live, {} kills, {} freezes",
                start.elapsed().as_secs_f64(),
                ledger.objects.len(),
                ledger.kills,
                ledger.freezes
            );
            last_progress = Instant::now();
        }
        if monitor.due() {
            monitor.sample(env.sim()?);
        }
        let wake = next_action
            .min(next_faults)
            .min(turmoil.next_due())
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
    cluster::apply(
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
    cluster::apply(
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
    // VpsOccupancy objects are published reports, not reconciled: they carry no conditions.
    for (kind, ar) in kinds.iter().filter(|(k, _)| *k != "VpsOccupancy") {
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
                    // Evicted is final and settled (kstatus Current), not a failure.
                    (Some((s, r, _)), _) if s == "False" && r == "Evicted" && !deleting => None,
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

/// The invariants table and the run's totals.
fn report(
    k: &Knobs,
    ledger: &Ledger,
    record: &vpsnap::sim::Record,
    sim: &SimHandle,
    findings: &[Finding],
    stats: &Stats,
) -> Table {
    let mut t = Table::default();
    t.section(&format!(
        "invariants (seed {}, {} of work on {} servers, {} replica{})",
        k.seed,
        secs(k.duration),
        k.servers,
        k.replicas,
        if k.replicas == 1 { "" } else { "s" }
    ));
    for (invariant, count) in invariants::counts(findings) {
        t.none(invariant.title(), count);
    }
    if k.smoke && k.replicas > 1 {
        // What CI relies on the smoke for: it must have exercised both.
        t.row(
            "the smoke froze a leader and saw a handover",
            format!("{} / {}", ledger.freezes, ledger.handovers),
            ">= 1 / >= 1",
            Verdict::hard(ledger.freezes > 0 && ledger.handovers > 0),
        );
    }

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
    t.info(
        "VpsRestores / schedules",
        format!(
            "{} / {}",
            ledger
                .restores
                .iter()
                .filter(|(n, _)| !n.is_empty())
                .count(),
            ledger.schedules.len()
        ),
    );
    t.info("operator kills (SIGKILL)", ledger.kills.to_string());
    if k.replicas > 1 {
        t.info(
            "leader freezes (SIGSTOP) / while a create answer was held",
            format!("{} / {}", ledger.freezes, ledger.freezes_mid_create),
        );
        t.info(
            "leader handovers (Lease holder changes)",
            ledger.handovers.to_string(),
        );
        t.info(
            "operator exits on their own (restarted)",
            ledger.exits.to_string(),
        );
    }
    t.info(
        "reconciles (summed over every operator process)",
        if stats.scrapes_failed > 0 {
            format!(
                "{} (+ {} process(es) not scraped)",
                stats.reconciles, stats.scrapes_failed
            )
        } else {
            stats.reconciles.to_string()
        },
    );
    t.info("settled after", secs(stats.settled_after));
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
    t.info("create answers held", stats.held.to_string());
    t.info("fault mix changes", ledger.fault_changes.to_string());
    t.info(
        "provider creates / deletes / restore calls / limit refusals",
        format!(
            "{} / {} / {} / {}",
            record.creates.iter().filter(|c| !c.foreign).count(),
            record.deletes.len(),
            record.restores.len(),
            record.limit_refusals.len()
        ),
    );
    let mut by_process: BTreeMap<String, u64> = BTreeMap::new();
    for c in sim.call_log(0) {
        let who = invariants::instance(&vpsnap::sim::Caller {
            call: Some(c.n),
            user_agent: c.user_agent,
        });
        *by_process.entry(who).or_default() += 1;
    }
    t.info(
        "provider calls by process",
        by_process
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(" "),
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
    t
}

/// Each violation with its object's provider calls and status changes, then the process
/// timeline (kills, freezes, thaws, handovers) to read them against.
fn details(
    findings: &[Finding],
    record: &vpsnap::sim::Record,
    history: &History,
    ledger: &Ledger,
) -> String {
    let mut out = String::new();
    if !findings.is_empty() {
        out.push_str(
            "\nviolations (times UTC; \"by\" names the process: the POD_NAME in its User-Agent)\n",
        );
        out.push_str(&invariants::render(findings, record, history));
    }
    if !ledger.events.is_empty() {
        out.push_str("\nprocess timeline\n");
        for (at, e) in &ledger.events {
            out.push_str(&format!("  {at}  {e}\n"));
        }
    }
    out
}
