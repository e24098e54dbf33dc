//! The `kubectl-vpsnap` binary as a user runs it, against the real control plane, the
//! simulator and the operator — authenticated as a ServiceAccount bound to nothing but the
//! example Role `deploy/rbac/plugin-user.yaml`.
mod support;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::ServiceAccount;
use k8s_openapi::api::rbac::v1::RoleBinding;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use support::*;
use tokio::io::AsyncWriteExt;
use vpsnap::api::{VpsProvider, VpsRestore, VpsSnapshot, VpsSnapshotSchedule};

const T: Duration = Duration::from_secs(60);

/// What one run of the plugin printed and how it exited.
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!(
                "stdout is not JSON ({e}):\n{}\nstderr:\n{}",
                self.stdout, self.stderr
            )
        })
    }
}

impl std::fmt::Debug for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {}\n--- stdout\n{}--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

/// Runs `kubectl-vpsnap ARGS` in `ns` with `kubeconfig`, feeding `stdin` (None: closed).
async fn plugin(kubeconfig: &Path, ns: &str, args: &[&str], stdin: Option<&str>) -> Run {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_kubectl-vpsnap"));
    cmd.args(args)
        .args(["-n", ns])
        .env("KUBECONFIG", kubeconfig)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = cmd.spawn().expect("run kubectl-vpsnap");
    if let Some(input) = stdin {
        let mut pipe = child.stdin.take().unwrap();
        pipe.write_all(input.as_bytes()).await.unwrap();
        drop(pipe);
    }
    let out = tokio::time::timeout(Duration::from_secs(180), child.wait_with_output())
        .await
        .expect("the plugin finished within 3 minutes")
        .unwrap();
    let run = Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    eprintln!("$ kubectl vpsnap {}\n{run:?}", args.join(" "));
    run
}

/// A kubeconfig for a ServiceAccount of `ns` bound only to the example plugin Role.
async fn plugin_user(client: &kube::Client, ns: &str) -> PathBuf {
    let role = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/deploy/rbac/plugin-user.yaml"
    ))
    .expect("deploy/rbac/plugin-user.yaml");
    let role: k8s_openapi::api::rbac::v1::Role =
        serde_yaml::from_str(&role).expect("the example Role parses");
    let roles: Api<k8s_openapi::api::rbac::v1::Role> = Api::namespaced(client.clone(), ns);
    roles
        .create(&PostParams::default(), &role)
        .await
        .expect("create the example Role");
    let kubeconfig = service_account(client, ns, "alice").await;
    let bindings: Api<RoleBinding> = Api::namespaced(client.clone(), ns);
    bindings
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({
                "metadata": {"name": "alice-vpsnap"},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "vpsnap-plugin-user"},
                "subjects": [{"kind": "ServiceAccount", "name": "alice", "namespace": ns}],
            }))
            .unwrap(),
        )
        .await
        .expect("bind the Role");
    kubeconfig
}

/// A kubeconfig for a new ServiceAccount `name` of `ns` (TokenRequest), bound to nothing.
async fn service_account(client: &kube::Client, ns: &str, name: &str) -> PathBuf {
    let sas: Api<ServiceAccount> = Api::namespaced(client.clone(), ns);
    sas.create(
        &PostParams::default(),
        &serde_json::from_value(json!({"metadata": {"name": name}})).unwrap(),
    )
    .await
    .expect("create ServiceAccount");
    let token = sas
        .create_token_request(
            name,
            &PostParams::default(),
            &TokenRequest {
                spec: Some(TokenRequestSpec {
                    expiration_seconds: Some(3600),
                    ..Default::default()
                }),
                ..Default::default()
            },
        )
        .await
        .expect("TokenRequest")
        .status
        .expect("token")
        .token;
    let admin = std::fs::read_to_string(kubeconfig_path()).unwrap();
    let mut kc: serde_yaml::Value = serde_yaml::from_str(&admin).unwrap();
    kc["users"][0]["user"] = serde_yaml::to_value(json!({"token": token})).unwrap();
    let path = std::env::temp_dir().join(format!("vpsnap-plugin-{ns}-{name}.kubeconfig"));
    std::fs::write(&path, serde_yaml::to_string(&kc).unwrap()).unwrap();
    path
}

/// A world whose user is `alice`, with a VpsRest provider `acct` that is Ready.
async fn world(prefix: &str, servers: &[u64], provider_extra: Value) -> (World, PathBuf) {
    let w = World::new(prefix, sim_config(servers)).await;
    w.vps_rest_provider("acct", "good-token", provider_extra)
        .await;
    w.wait_ready::<VpsProvider>("acct", T).await;
    let kubeconfig = plugin_user(&w.client, &w.ns.name).await;
    (w, kubeconfig)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_now_waits_for_ready_and_prints_the_provider_id() {
    let (w, kc) = world("plug-snap", &[700], json!({})).await;
    let ns = w.ns.name.clone();

    let run = plugin(
        &kc,
        &ns,
        &[
            "snapshot",
            "700",
            "--wait",
            "--pin",
            "--description",
            "before upgrade",
            "-o",
            "json",
        ],
        None,
    )
    .await;
    assert_eq!(run.code, 0, "{run:?}");
    let out = run.json();
    let name = out["name"].as_str().unwrap().to_owned();
    assert!(name.starts_with("snap-700-"), "{out}");
    assert_eq!(out["phase"], "Ready", "{out}");
    let id = out["providerId"]
        .as_str()
        .expect("provider id printed")
        .to_owned();
    let at_provider = w.sim.snapshots(700);
    assert_eq!(at_provider.len(), 1, "exactly one snapshot made");
    assert_eq!(at_provider[0].id.to_string(), id);
    assert!(
        run.stderr.contains("waiting for Ready"),
        "a progress line: {run:?}"
    );
    let obj: VpsSnapshot = w.ns.api().get(&name).await.unwrap();
    assert!(obj.spec.pinned);
    assert_eq!(obj.spec.description.as_deref(), Some("before upgrade"));

    // The table form says the same in words; a backup works alike.
    let run = plugin(
        &kc,
        &ns,
        &[
            "backup",
            "700",
            "--provider",
            "acct",
            "--name",
            "db",
            "--wait",
        ],
        None,
    )
    .await;
    assert_eq!(run.code, 0, "{run:?}");
    assert!(
        run.stdout.contains("vpsbackup/db is Ready: provider id"),
        "{run:?}"
    );

    // Usage errors name the argument and exit 2.
    let run = plugin(&kc, &ns, &["snapshot", "700", "--provider", "nope"], None).await;
    assert_eq!(run.code, 2, "{run:?}");
    assert!(run.stderr.contains("--provider nope"), "{run:?}");
    let run = plugin(&kc, &ns, &["snapshot", "0"], None).await;
    assert_eq!(run.code, 2, "server ids start at 1: {run:?}");

    // why on a Ready snapshot: conditions and the next step.
    let run = plugin(&kc, &ns, &["why", &format!("vpss/{name}")], None).await;
    assert_eq!(run.code, 0, "{run:?}");
    assert!(
        run.stdout.contains("Ready") && run.stdout.contains("Next:"),
        "{run:?}"
    );
    assert!(
        run.stdout.contains(&format!("--from-snapshot {name}")),
        "{run:?}"
    );
    let run = plugin(&kc, &ns, &["why", "vpsp/acct"], None).await;
    assert_eq!(run.code, 0, "{run:?}");
    assert!(
        run.stdout
            .contains("Limits: 5 snapshots and 10 backups per server."),
        "{run:?}"
    );
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limit_reached_names_the_snapshots_that_block_it() {
    let (w, kc) = world(
        "plug-limit",
        &[710],
        json!({"limits": {"snapshotsPerServer": 3}}),
    )
    .await;
    let ns = w.ns.name.clone();
    // One made by hand, one pinned and one not evictable fill the server's 3 slots.
    w.sim.add_foreign_snapshot(710, "by-hand", false);
    w.snapshot("keep-pinned", "acct", 710, json!({"pinned": true}))
        .await;
    w.wait_ready::<VpsSnapshot>("keep-pinned", T).await;
    w.snapshot("keep-plain", "acct", 710, json!({})).await;
    w.wait_ready::<VpsSnapshot>("keep-plain", T).await;

    let run = plugin(
        &kc,
        &ns,
        &[
            "snapshot",
            "710",
            "--name",
            "one-more",
            "--wait",
            "--timeout",
            "2m",
        ],
        None,
    )
    .await;
    assert_eq!(run.code, 1, "blocked exits 1: {run:?}");
    assert!(run.stdout.contains("LimitReached"), "{run:?}");
    for blocker in [
        "vpssnapshot/keep-pinned",
        "pinned",
        "vpssnapshot/keep-plain",
        "not marked evictable",
    ] {
        assert!(run.stdout.contains(blocker), "names {blocker}: {run:?}");
    }
    assert!(
        run.stdout.contains("not made by vpsnap"),
        "the foreign one is counted: {run:?}"
    );

    let run = plugin(&kc, &ns, &["why", "one-more", "-o", "json"], None).await;
    assert_eq!(run.code, 0, "{run:?}");
    let report = run.json();
    let blocked: Vec<String> = report["blockedBy"]
        .as_array()
        .expect("blockedBy")
        .iter()
        .map(|b| b.as_str().unwrap().to_owned())
        .collect();
    assert!(
        blocked
            .iter()
            .any(|b| b.starts_with("vpssnapshot/keep-pinned") && b.ends_with("pinned")),
        "{blocked:?}"
    );
    assert!(blocked.iter().any(|b| b.starts_with("vpssnapshot/keep-plain") && b.ends_with("not marked evictable")), "{blocked:?}");
    assert!(
        report["next"].as_str().unwrap().contains("Make room"),
        "{report}"
    );
    assert!(
        report["events"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["reason"] == "LimitReached"),
        "the LimitReached Event is shown: {report}"
    );
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restore_refuses_without_confirmation_and_runs_once_with_it() {
    let (w, kc) = world("plug-restore", &[720], json!({})).await;
    let ns = w.ns.name.clone();
    w.snapshot("golden", "acct", 720, json!({})).await;
    w.wait_ready::<VpsSnapshot>("golden", T).await;
    let restores: Api<VpsRestore> = w.ns.api();

    // No confirmation (stdin closed), a wrong one, the wrong server: nothing is created.
    let run = plugin(
        &kc,
        &ns,
        &["restore", "720", "--from-snapshot", "golden"],
        None,
    )
    .await;
    assert_eq!(run.code, 1, "{run:?}");
    assert!(
        run.stderr.contains("OVERWRITES ALL DATA on server 720"),
        "shows what is overwritten: {run:?}"
    );
    assert!(
        run.stderr.contains("refused") && run.stderr.contains("Nothing was changed"),
        "{run:?}"
    );
    let run = plugin(
        &kc,
        &ns,
        &["restore", "720", "--from-snapshot", "golden"],
        Some("721\n"),
    )
    .await;
    assert_eq!(run.code, 1, "{run:?}");
    let run = plugin(
        &kc,
        &ns,
        &["restore", "721", "--from-snapshot", "golden", "--yes"],
        None,
    )
    .await;
    assert_eq!(run.code, 2, "golden is server 720's: {run:?}");
    assert!(
        restores
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .is_empty(),
        "no VpsRestore yet"
    );
    assert_eq!(calls(&w.sim, "vps_rest.snapshots.restore"), 0);

    // Typing the server id runs it, once.
    let run = plugin(
        &kc,
        &ns,
        &[
            "restore",
            "720",
            "--from-snapshot",
            "golden",
            "--name",
            "back",
            "-o",
            "json",
        ],
        Some("720\n"),
    )
    .await;
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(run.json()["phase"], "Succeeded", "{run:?}");
    let created = restores.list(&ListParams::default()).await.unwrap().items;
    assert_eq!(created.len(), 1);
    assert!(created[0].spec.acknowledge_data_loss);
    assert_eq!(
        w.sim.record().restores.len(),
        1,
        "exactly one restore call: {:?}",
        w.sim.record().restores
    );
    let run = plugin(&kc, &ns, &["why", "vpsr/back"], None).await;
    assert_eq!(run.code, 0, "{run:?}");
    assert!(
        run.stdout.contains("it is never sent again") && run.stdout.contains("Succeeded"),
        "{run:?}"
    );
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_makes_one_child_per_server_even_when_the_annotation_is_reapplied() {
    let (w, kc) = world("plug-run", &[730, 731], json!({})).await;
    let ns = w.ns.name.clone();
    let schedules: Api<VpsSnapshotSchedule> = w.ns.api();
    // A cron that will not fire during the test: only requested runs make children.
    apply(
        &schedules,
        json!({"metadata": {"name": "nightly"}, "spec": {
            "providerRef": {"name": "acct"}, "serverIds": [730, 731],
            "schedule": "0 3 1 1 *", "maxJitter": "0s", "retention": {"keepLast": 3},
        }}),
    )
    .await;
    wait_for(&schedules, "nightly", T, |s: &VpsSnapshotSchedule| {
        has_condition(s, "Ready", "True", None)
    })
    .await;

    let run = plugin(&kc, &ns, &["run", "nightly", "--wait", "-o", "json"], None).await;
    assert_eq!(run.code, 0, "{run:?}");
    let out = run.json();
    let token = out["token"].as_str().unwrap().to_owned();
    let children = out["answer"]["children"].as_array().unwrap().clone();
    assert_eq!(children.len(), 2, "one child per server: {out}");
    assert!(
        out["children"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["ready"] == true),
        "{out}"
    );
    let count = || async {
        w.ns.api::<VpsSnapshot>()
            .list(&ListParams::default().labels("vpsnap.dev/schedule=nightly"))
            .await
            .unwrap()
            .items
            .len()
    };
    assert_eq!(count().await, 2);

    // Re-apply the same value (as a GitOps sync would) together with a spec change, so we
    // know the operator has looked at the schedule again: still two children.
    schedules
        .patch(
            "nightly",
            &PatchParams::default(),
            &Patch::Merge(json!({
                "metadata": {"annotations": {"vpsnap.dev/run-requested": token}},
                "spec": {"maxJitter": "1s"},
            })),
        )
        .await
        .unwrap();
    let generation = schedules.get("nightly").await.unwrap().metadata.generation;
    wait_for(&schedules, "nightly", T, |s: &VpsSnapshotSchedule| {
        s.status.as_ref().and_then(|st| st.observed_generation) == generation
    })
    .await;
    assert_eq!(count().await, 2, "the same request never runs twice");
    assert_eq!(
        w.sim.record().creates.len(),
        2,
        "two provider creates in all"
    );

    // The answer is visible to people and scripts.
    let run = plugin(&kc, &ns, &["why", "vpsss/nightly"], None).await;
    assert_eq!(run.code, 0, "{run:?}");
    assert!(
        run.stdout
            .contains(&format!("Last run request {token} (Ran)")),
        "{run:?}"
    );
    // Retention looks again once the children are Ready.
    wait_for(&schedules, "nightly", T, |s: &VpsSnapshotSchedule| {
        let plan = s
            .status
            .as_ref()
            .map(|st| st.retention.clone())
            .unwrap_or_default();
        plan.len() == 2
            && plan.iter().all(|p| {
                p.kept
                    .iter()
                    .any(|k| k.rules.iter().any(|r| r == "keep-last"))
            })
    })
    .await;
    let run = plugin(&kc, &ns, &["retention", "nightly", "-o", "json"], None).await;
    assert_eq!(run.code, 0, "{run:?}");
    let plan = run.json();
    for server in plan["servers"].as_array().unwrap() {
        let kept = server["kept"].as_array().unwrap();
        assert_eq!(kept.len(), 1, "{plan}");
        assert!(
            kept[0]["rules"]
                .as_array()
                .unwrap()
                .iter()
                .any(|r| r == "keep-last"),
            "kept by which rule: {plan}"
        );
    }
    let run = plugin(&kc, &ns, &["retention", "nightly"], None).await;
    assert!(
        run.stdout.contains("keepLast 3") && run.stdout.contains("newest-ready, keep-last"),
        "{run:?}"
    );

    // Without --wait the command still reports the operator's answer: a new value, a new run.
    let run = plugin(&kc, &ns, &["run", "nightly", "-o", "json"], None).await;
    assert_eq!(run.code, 0, "{run:?}");
    let out = run.json();
    assert_ne!(out["token"].as_str(), Some(token.as_str()), "{out}");
    assert_eq!(out["answer"]["outcome"], "Ran", "{out}");
    assert_eq!(
        out["answer"]["children"].as_array().unwrap().len(),
        2,
        "{out}"
    );
    w.stop().await;
}

/// End to end: the operator publishes what it listed; `servers` shows the foreign snapshot on
/// a full server and the oldest evictable one as the next to go.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn servers_shows_what_the_operator_listed() {
    let (w, kc) = world(
        "plug-listed",
        &[750],
        json!({"limits": {"snapshotsPerServer": 3}}),
    )
    .await;
    let ns = w.ns.name.clone();
    let foreign = w.sim.add_foreign_snapshot(750, "by-hand", false);
    w.snapshot("older", "acct", 750, json!({"evictable": true}))
        .await;
    let older: VpsSnapshot = w.wait_ready("older", T).await;
    w.snapshot("newer", "acct", 750, json!({"evictable": true}))
        .await;
    w.wait_ready::<VpsSnapshot>("newer", T).await;
    let older_id = older.status.unwrap().provider_id.unwrap();

    // Published within a few publishing intervals of the listing that saw all three.
    let start = std::time::Instant::now();
    let entry = loop {
        let run = plugin(&kc, &ns, &["servers", "-o", "json"], None).await;
        assert_eq!(run.code, 0, "{run:?}");
        let rows = run.json();
        let entry = rows.as_array().and_then(|rows| {
            rows.iter()
                .find(|r| r["serverId"] == 750 && r["class"] == "Snapshot" && r["used"] == 3)
                .cloned()
        });
        if let Some(entry) = entry {
            break entry;
        }
        assert!(
            start.elapsed() < T,
            "never published a full server 750: {rows}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert_eq!(entry["limit"], 3, "{entry}");
    let items = entry["items"].as_array().expect("items");
    let by_id = |id: &str| items.iter().find(|i| i["id"] == id).cloned();
    let hand = by_id(&foreign.to_string()).expect("the foreign snapshot is listed");
    assert_eq!(hand["owner"], "Foreign", "{hand}");
    let ours = by_id(&older_id).expect("ours is listed");
    assert_eq!(
        (&ours["owner"], &ours["object"]),
        (&json!("Declared"), &json!("older"))
    );
    assert_eq!(
        entry["nextEvictions"][0], older_id,
        "the oldest evictable goes next, never the foreign one: {entry}"
    );
    let table = plugin(&kc, &ns, &["servers", "--server", "750"], None).await;
    assert_eq!(table.code, 0, "{table:?}");
    assert!(table.stdout.contains("not made by vpsnap"), "{table:?}");
    w.stop().await;
}

/// The publisher (with plain data standing in for the operator's server index) and the plugin
/// reading it back through the API, with the user's Role.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn servers_shows_published_occupancy_with_foreign_snapshots_and_the_next_eviction() {
    use vpsnap::api::{OccupancyClass, Occupant, OccupantState, OwnerKind, ServerOccupancyStatus};
    use vpsnap::controller::occupancy::{Account, Publisher, RecountWait, Shard, plan};
    let client = client().await;
    install_crds(&client).await;
    let ns = TestNamespace::new(&client, "plug-servers").await;
    apply(&ns.api::<VpsProvider>(), json!({"metadata": {"name": "acct"}, "spec": {
        "type": "VpsRest", "endpoint": "http://127.0.0.1:9/api/v1/", "credentialsSecretRef": {"name": "none"}}}))
    .await;
    let uid = ns
        .api::<VpsProvider>()
        .get("acct")
        .await
        .unwrap()
        .metadata
        .uid
        .unwrap();
    let kc = plugin_user(&client, &ns.name).await;
    let item =
        |id: &str, owner: OwnerKind, object: Option<&str>, evictable: bool, day: u32| Occupant {
            id: id.into(),
            label: Some(format!("label-{id}")),
            provider_status: Some("active".into()),
            state: OccupantState::Completed,
            created_at: Some(format!("2026-11-{day:02}T02:00:00Z")),
            owner,
            object: object.map(str::to_owned),
            leaving: false,
            pinned: false,
            evictable,
        };
    let full = ServerOccupancyStatus {
        server_id: 740,
        class: OccupancyClass::Snapshot,
        limit: 3,
        used: 3,
        listed_at: Some(jiff::Timestamp::now().to_string()),
        complete: true,
        items: vec![
            item("11", OwnerKind::Foreign, None, false, 1),
            item("12", OwnerKind::Declared, Some("old"), true, 2),
            item("13", OwnerKind::Declared, Some("new"), true, 3),
        ],
        next_evictions: vec!["12".into()],
        ..Default::default()
    };
    let roomy = ServerOccupancyStatus {
        server_id: 741,
        limit: 3,
        used: 0,
        complete: true,
        ..Default::default()
    };
    let account = Account {
        namespace: ns.name.clone(),
        name: "acct".into(),
        uid,
    };
    // An earlier process published two shards ...
    let mut publisher = Publisher::new(client.clone());
    let two = vec![
        Shard {
            index: 0,
            of: 2,
            servers: vec![full.clone()],
        },
        Shard {
            index: 1,
            of: 2,
            servers: vec![roomy.clone()],
        },
    ];
    assert_eq!(
        publisher.publish(&account, two).await.unwrap(),
        4,
        "two new shards: spec + status each"
    );
    // ... a new one needs one: it rewrites shard 0 (its count changed) and removes shard 1.
    let shards = plan(vec![full.clone(), roomy.clone()]);
    assert_eq!(shards.len(), 1);
    // (A new count is written without the settling wait here: that wait is
    // `a_new_shard_count_is_written_whole_once_it_has_settled`'s.)
    let mut restarted = Publisher::new(client.clone()).with_recount_wait(RecountWait {
        settle: Duration::ZERO,
        max: Duration::ZERO,
    });
    assert_eq!(
        restarted.publish(&account, shards.clone()).await.unwrap(),
        3,
        "spec + status of shard 0, delete of shard 1"
    );
    assert_eq!(
        restarted.publish(&account, shards.clone()).await.unwrap(),
        0,
        "unchanged: no write"
    );
    let mut again = Publisher::new(client.clone());
    assert_eq!(
        again.publish(&account, shards).await.unwrap(),
        0,
        "a restart rewrites nothing current"
    );
    let names: Vec<String> = ns
        .api::<vpsnap::api::VpsOccupancy>()
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter_map(|o| o.metadata.name)
        .collect();
    assert_eq!(names, vec!["acct-0"]);

    let run = plugin(&kc, &ns.name, &["servers"], None).await;
    assert_eq!(run.code, 0, "{run:?}");
    let line = run
        .stdout
        .lines()
        .find(|l| l.contains(" 740 "))
        .expect("server 740 listed");
    assert!(
        line.contains("3/3 full") && line.contains("vpssnapshot/old (12)"),
        "{line}"
    );
    let run = plugin(
        &kc,
        &ns.name,
        &["servers", "--server", "740", "-o", "json"],
        None,
    )
    .await;
    assert_eq!(run.code, 0, "{run:?}");
    let rows = run.json();
    let standings = rows[0]["standings"].as_array().unwrap();
    assert_eq!(
        standings[0]["why"], "not made by vpsnap: counted, never touched",
        "{rows}"
    );
    assert_eq!(standings[1]["nextEviction"], 1, "{rows}");
    // No operator watches this namespace: a wait runs out of time, exit 3.
    apply(
        &ns.api::<VpsSnapshotSchedule>(),
        json!({"metadata": {"name": "unanswered"}, "spec": {
        "providerRef": {"name": "acct"}, "serverIds": [740], "schedule": "@daily"}}),
    )
    .await;
    let run = plugin(
        &kc,
        &ns.name,
        &["run", "unanswered", "--timeout", "2s"],
        None,
    )
    .await;
    assert_eq!(run.code, 3, "{run:?}");
    assert!(run.stderr.contains("still not done after 2s"), "{run:?}");

    // Someone without the Role: the API refuses, exit 4, and the message says what to ask for.
    let nobody = service_account(&client, &ns.name, "nobody").await;
    let run = plugin(&nobody, &ns.name, &["servers"], None).await;
    assert_eq!(run.code, 4, "{run:?}");
    assert!(
        run.stderr.contains("forbidden by RBAC")
            && run.stderr.contains("deploy/rbac/plugin-user.yaml"),
        "{run:?}"
    );
    let run = plugin(&kc, &ns.name, &["servers", "--full"], None).await;
    assert!(!run.stdout.contains(" 741 "), "{run:?}");
    ns.delete().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn completions_help_and_exit_codes() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_kubectl-vpsnap"))
        .args(["completion", "bash"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let script = String::from_utf8_lossy(&out.stdout);
    assert!(
        script.contains("kubectl-vpsnap") && script.contains("retention"),
        "bash completion"
    );
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_kubectl-vpsnap"))
        .arg("--help")
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(
        help.contains("Examples:") && help.contains("Exit codes:"),
        "{help}"
    );
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_kubectl-vpsnap"))
        .args(["restore", "1"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "a restore needs a source");
}
