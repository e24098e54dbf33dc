//! The controllers end to end: real kube-apiserver, the operator as a real process, the
//! provider simulator over real HTTP on 127.0.0.1.
mod support;

use std::time::Duration;

use kube::ResourceExt;
use kube::api::DeleteParams;
use serde_json::json;
use support::*;
use vpsnap::api::{VpsBackup, VpsProvider, VpsSnapshot};
use vpsnap::sim::Faults;

const T: Duration = Duration::from_secs(60);

fn provider_snapshots(sim: &vpsnap::sim::SimHandle, server: u64) -> Vec<String> {
    sim.snapshots(server).into_iter().map(|s| s.name).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_and_backup_lifecycle() {
    let w = World::new("lifecycle", sim_config(&[100])).await;
    w.vps_rest_provider("acct", "good-token", json!({})).await;
    w.wait_ready::<VpsProvider>("acct", T).await;

    w.snapshot(
        "snap",
        "acct",
        100,
        json!({"snapshotName": "snap-one", "description": "first"}),
    )
    .await;
    w.snapshot("kept", "acct", 100, json!({"deletionPolicy": "Retain"}))
        .await;
    w.backup("bk", "acct", 100, json!({"description": "nightly"}))
        .await;

    // `kubectl wait --for=condition=Ready`, as a pipeline would.
    let bin = std::env::var("VPSNAP_TEST_BIN_DIR").expect("VPSNAP_TEST_BIN_DIR");
    let out = std::process::Command::new(format!("{bin}/kubectl"))
        .args([
            "--kubeconfig",
            kubeconfig_path().to_str().unwrap(),
            "-n",
            &w.ns.name,
            "wait",
            "--for=condition=Ready",
            "vpssnapshot/snap",
            "--timeout=60s",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "kubectl wait failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    let snap: VpsSnapshot = w.wait_ready("snap", T).await;
    // Owned at the provider: the finalizer and the create intent came in one write.
    assert!(
        snap.finalizers()
            .contains(&"vpsnap.dev/cleanup".to_string())
    );
    assert!(
        snap.annotations()
            .contains_key("vpsnap.dev/create-requested-at"),
        "{:?}",
        snap.metadata
    );
    let st = snap.status.clone().unwrap();
    assert!(st.provider_id.is_some(), "{st:?}");
    assert!(st.size_mb.unwrap_or(0) > 0, "{st:?}");
    assert!(st.provider_created_at.is_some(), "{st:?}");
    assert_eq!(st.observed_generation, snap.metadata.generation);
    assert!(
        has_condition(&snap, "Reconciling", "False", None)
            && has_condition(&snap, "Stalled", "False", None)
    );
    let bk: VpsBackup = w.wait_ready("bk", T).await;
    let kept: VpsSnapshot = w.wait_ready("kept", T).await;
    let sim_backup = w
        .sim
        .backups(100)
        .into_iter()
        .find(|b| Some(b.id.to_string()) == bk.status.as_ref().unwrap().provider_id)
        .unwrap();
    let description = sim_backup.description.unwrap();
    assert!(
        description.starts_with("[vpsnap:") && description.ends_with("] nightly"),
        "backups carry vpsnap's tag first (a provider that cuts descriptions keeps it): {description}"
    );
    // Its own creates, found again on later listings, are not reported as adoptions.
    for name in ["snap", "kept", "bk"] {
        let reasons = w.event_reasons(name).await;
        assert!(
            !reasons.iter().any(|r| r == "Adopted"),
            "{name}: {reasons:?}"
        );
    }

    // Delete → gone at the provider, finalizer removed. Retain → left at the provider.
    let snaps = w.ns.api::<VpsSnapshot>();
    snaps
        .delete("snap", &DeleteParams::default())
        .await
        .unwrap();
    wait_gone(&snaps, "snap", T).await;
    assert!(!provider_snapshots(&w.sim, 100).contains(&"snap-one".to_string()));
    snaps
        .delete("kept", &DeleteParams::default())
        .await
        .unwrap();
    wait_gone(&snaps, "kept", T).await;
    assert!(
        provider_snapshots(&w.sim, 100)
            .contains(kept.status.unwrap().provider_name.as_ref().unwrap())
    );
    let backups = w.ns.api::<VpsBackup>();
    backups
        .delete("bk", &DeleteParams::default())
        .await
        .unwrap();
    wait_gone(&backups, "bk", T).await;
    assert!(w.sim.backups(100).is_empty());

    // Settled objects cost no provider writes and few lists.
    assert_eq!(calls(&w.sim, "vps_rest.snapshots.create"), 2);
    assert_eq!(calls(&w.sim, "vps_rest.backups.create"), 1);
    let metrics = w.operator.as_ref().unwrap().metrics().await;
    for series in [
        "vpsnap_reconciles_total",
        "vpsnap_provider_requests_total",
        "vpsnap_reconcile_duration_seconds",
        "vpsnap_objects",
    ] {
        assert!(metrics.contains(series), "missing {series} in /metrics");
    }
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_create_response_and_a_crash_never_duplicate() {
    let mut w = World::new("crash", sim_config(&[200])).await;
    w.vps_rest_provider("acct", "good-token", json!({})).await;
    w.wait_ready::<VpsProvider>("acct", T).await;
    // The provider makes the snapshot at once but holds its answer back; the operator is
    // killed while it waits, so no process ever saw the id.
    w.sim.set_faults(Faults {
        hold_create_rate: 1.0,
        hold_create_for: Duration::from_secs(300),
        ..Faults::default()
    });
    w.snapshot("once", "acct", 200, json!({})).await;
    assert!(
        w.sim.wait_for(T, |s| s.held_answers() == 1).await,
        "no create reached the simulator"
    );
    if let Some(op) = w.operator.take() {
        op.kill().await;
    }
    w.sim.set_faults(Faults::default());
    w.restart_operator().await;
    let snap: VpsSnapshot = w.wait_ready("once", T).await;
    // Listed again after it settled, still exactly one provider snapshot for the object.
    let lists = calls(&w.sim, "vps_rest.snapshots.list");
    assert!(
        w.sim
            .wait_for(T, |s| calls(s, "vps_rest.snapshots.list") > lists)
            .await
    );
    let creates = w.sim.record().creates;
    assert_eq!(creates.len(), 1, "duplicate creates: {creates:?}");
    assert_eq!(w.sim.snapshots(200).len(), 1);
    assert_eq!(
        snap.status.unwrap().provider_id,
        Some(creates[0].id.to_string())
    );
    // The restarted process did not send that create: it says it adopted it.
    w.wait_event("once", "Adopted").await;
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provider_outage_backs_off_then_converges() {
    let w = World::new("outage", sim_config(&[300])).await;
    w.vps_rest_provider("acct", "good-token", json!({})).await;
    w.wait_ready::<VpsProvider>("acct", T).await;
    w.sim.set_faults(Faults {
        error_5xx_rate: 1.0,
        ..Faults::default()
    });
    let before = calls(&w.sim, "vps_rest.snapshots.list");
    w.snapshot("s", "acct", 300, json!({})).await;
    tokio::time::sleep(Duration::from_secs(10)).await;
    let during = calls(&w.sim, "vps_rest.snapshots.list") - before;
    // Without backoff a 1 s poll would list ~10× and each attempt retries thrice in-call; the
    // exponential backoff (1 s, 2 s, 4 s, 8 s …) bounds it well below that.
    assert!(during >= 2, "the operator kept trying ({during} lists)");
    assert!(
        during <= 24,
        "{during} list calls in 10 s of outage: backoff not applied"
    );
    assert_eq!(
        calls(&w.sim, "vps_rest.snapshots.create"),
        0,
        "no create while the server could not be listed"
    );

    // 429 with Retry-After, then recovery.
    w.sim.set_faults(Faults {
        rate_429: 1.0,
        retry_after_secs: 2,
        ..Faults::default()
    });
    tokio::time::sleep(Duration::from_secs(3)).await;
    w.sim.set_faults(Faults::default());
    w.wait_ready::<VpsSnapshot>("s", Duration::from_secs(150))
        .await;
    assert_eq!(calls(&w.sim, "vps_rest.snapshots.create"), 1);
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_token_is_reported_and_fixed_by_updating_the_secret() {
    let w = World::new("creds", sim_config(&[400])).await;
    w.vps_rest_provider("acct", "wrong-token", json!({})).await;
    let p: VpsProvider = w
        .wait_reason("acct", "Ready", "False", "CredentialsInvalid", T)
        .await;
    let (_, _, message) = condition(&p, "Ready").unwrap();
    assert!(
        !message.contains("wrong-token"),
        "the token leaked into status: {message}"
    );
    w.snapshot("s", "acct", 400, json!({})).await;
    w.wait_reason::<VpsSnapshot>("s", "Ready", "False", "ProviderNotReady", T)
        .await;
    assert_eq!(
        calls(&w.sim, "vps_rest.snapshots.list"),
        0,
        "no object calls while the provider is not Ready"
    );
    // Fix the Secret only; the operator notices without a restart.
    w.ns.secret("acct-credentials", &[("token", "good-token")])
        .await;
    w.wait_ready::<VpsProvider>("acct", T).await;
    w.wait_ready::<VpsSnapshot>("s", T).await;
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn six_declared_on_a_five_limit_server_settle_without_churn() {
    let w = World::new("limit", sim_config(&[500])).await;
    w.vps_rest_provider("acct", "good-token", json!({})).await;
    w.wait_ready::<VpsProvider>("acct", T).await;
    // One at a time, so that s0 is the oldest at the provider: the eviction below goes by
    // provider creation time, and concurrent creates may reach the provider in any order.
    for i in 0..5 {
        w.snapshot(&format!("s{i}"), "acct", 500, json!({})).await;
        w.wait_ready::<VpsSnapshot>(&format!("s{i}"), T).await;
    }
    w.snapshot("s5", "acct", 500, json!({})).await;
    let blocked: VpsSnapshot = w
        .wait_reason("s5", "Ready", "False", "LimitReached", T)
        .await;
    let (_, _, message) = condition(&blocked, "Ready").unwrap();
    assert!(
        message.contains("server 500") && message.contains("limit 5"),
        "{message}"
    );
    tokio::time::sleep(Duration::from_secs(5)).await;
    let rec = w.sim.record();
    assert_eq!(rec.creates.len(), 5, "no create beyond the limit");
    assert!(rec.deletes.is_empty(), "nothing deleted: none is evictable");
    assert!(rec.servers[&500].snapshots_high_water <= 5);
    assert_eq!(
        rec.servers[&500].snapshot_limit_rejections, 0,
        "the operator counted before creating"
    );

    // Mark the two oldest evictable: exactly one goes (the oldest) to make room, the other stays.
    for i in [0, 1] {
        w.snapshot(&format!("s{i}"), "acct", 500, json!({"evictable": true}))
            .await;
    }
    w.wait_ready::<VpsSnapshot>("s5", T).await;
    let evicted: VpsSnapshot = w.wait_for_phase("s0", "Evicted").await;
    assert!(has_condition(&evicted, "Ready", "False", Some("Evicted")));
    tokio::time::sleep(Duration::from_secs(5)).await;
    let rec = w.sim.record();
    assert_eq!(
        rec.creates.len(),
        6,
        "the evicted object is not re-created (no churn)"
    );
    assert_eq!(rec.deletes.len(), 1);
    assert!(rec.servers[&500].snapshots_high_water <= 5);
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreign_snapshots_are_counted_and_never_deleted() {
    let w = World::new("foreign", sim_config(&[600, 601])).await;
    for i in 0..5 {
        w.sim
            .add_foreign_snapshot(600, &format!("by-hand-{i}"), false);
    }
    for i in 0..4 {
        w.sim
            .add_foreign_snapshot(601, &format!("by-hand-{i}"), false);
    }
    w.vps_rest_provider("acct", "good-token", json!({})).await;
    // Server 600 is full of foreign snapshots: nothing may go.
    w.snapshot("blocked", "acct", 600, json!({"evictable": true}))
        .await;
    let blocked: VpsSnapshot = w
        .wait_reason("blocked", "Ready", "False", "LimitReached", T)
        .await;
    let (_, _, message) = condition(&blocked, "Ready").unwrap();
    assert!(message.contains("5 foreign"), "{message}");
    // Server 601: 4 foreign + one of ours marked evictable; a newer one evicts ours, never theirs.
    w.snapshot("mine", "acct", 601, json!({"evictable": true}))
        .await;
    w.wait_ready::<VpsSnapshot>("mine", T).await;
    w.snapshot("next", "acct", 601, json!({"evictable": true}))
        .await;
    w.wait_ready::<VpsSnapshot>("next", T).await;
    w.wait_for_phase("mine", "Evicted").await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let rec = w.sim.record();
    assert!(
        rec.deletes.iter().all(|d| !d.foreign),
        "a foreign snapshot was deleted: {:?}",
        rec.deletes
    );
    assert_eq!(rec.deletes.len(), 1);
    assert_eq!(w.sim.snapshots(600).iter().filter(|s| s.foreign).count(), 5);
    assert_eq!(w.sim.snapshots(601).iter().filter(|s| s.foreign).count(), 4);
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_last_completed_restore_point_is_never_evicted() {
    let w = World::new("lastpoint", sim_config(&[650])).await;
    w.vps_rest_provider(
        "tight",
        "good-token",
        json!({"limits": {"snapshotsPerServer": 1}}),
    )
    .await;
    w.snapshot("only", "tight", 650, json!({"evictable": true}))
        .await;
    w.wait_ready::<VpsSnapshot>("only", T).await;
    w.snapshot("newer", "tight", 650, json!({})).await;
    let blocked: VpsSnapshot = w
        .wait_reason("newer", "Ready", "False", "LimitReached", T)
        .await;
    let (_, _, message) = condition(&blocked, "Ready").unwrap();
    assert!(
        message.contains("1 kept as the last completed restore point"),
        "{message}"
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(w.sim.record().deletes.is_empty());
    w.wait_ready::<VpsSnapshot>("only", T).await;
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zomro_snapshots_work_and_backups_are_unsupported() {
    let w = World::new("zomro", sim_config(&[5203773])).await;
    w.zomro_provider("z", "zuser", "zpass").await;
    w.wait_ready::<VpsProvider>("z", T).await;
    w.snapshot("zs", "z", 5203773, json!({})).await;
    let s: VpsSnapshot = w.wait_ready("zs", T).await;
    assert!(s.status.unwrap().provider_id.is_some());
    w.backup("zb", "z", 5203773, json!({})).await;
    let b: VpsBackup = w
        .wait_reason("zb", "Ready", "False", "Unsupported", T)
        .await;
    assert!(has_condition(&b, "Stalled", "True", Some("Unsupported")));
    let snaps = w.ns.api::<VpsSnapshot>();
    snaps.delete("zs", &DeleteParams::default()).await.unwrap();
    wait_gone(&snaps, "zs", T).await;
    assert!(w.sim.snapshots(5203773).is_empty());
    // An unsupported backup never reached the provider, so its deletion is immediate.
    let backups = w.ns.api::<VpsBackup>();
    backups
        .delete("zb", &DeleteParams::default())
        .await
        .unwrap();
    wait_gone(&backups, "zb", T).await;
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_references_end_in_conditions_not_crash_loops() {
    let w = World::new("refs", sim_config(&[700])).await;
    w.snapshot("no-provider", "missing", 700, json!({})).await;
    let orphan: VpsSnapshot = w
        .wait_reason("no-provider", "Ready", "False", "ProviderNotFound", T)
        .await;
    // Nothing was ever created for it, so nothing holds its deletion (it carries the
    // finalizer from admission; the operator lets it go at once).
    assert!(
        !orphan
            .annotations()
            .contains_key("vpsnap.dev/create-requested-at"),
        "{:?}",
        orphan.metadata
    );
    w.ns.api::<VpsSnapshot>()
        .delete("no-provider", &DeleteParams::default())
        .await
        .unwrap();
    wait_gone(&w.ns.api::<VpsSnapshot>(), "no-provider", T).await;

    apply(&w.ns.api::<VpsProvider>(), json!({"metadata": {"name": "nosecret"}, "spec": {
        "type": "VpsRest", "endpoint": w.sim.vps_rest_url(), "credentialsSecretRef": {"name": "absent"}}})).await;
    let p: VpsProvider = w
        .wait_reason("nosecret", "Ready", "False", "SecretMissing", T)
        .await;
    assert!(condition(&p, "Ready").unwrap().2.contains("absent"));

    w.vps_rest_provider("acct", "good-token", json!({})).await;
    w.snapshot("ghost-server", "acct", 999_999, json!({})).await;
    let s: VpsSnapshot = w
        .wait_reason("ghost-server", "Ready", "False", "ServerNotFound", T)
        .await;
    assert!(has_condition(&s, "Stalled", "True", None));
    // A final error is not retried in a loop.
    let creates = calls(&w.sim, "vps_rest.snapshots.create");
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(calls(&w.sim, "vps_rest.snapshots.create"), creates);
    // A server that does not exist holds nothing: deleting the object is not blocked.
    w.ns.api::<VpsSnapshot>()
        .delete("ghost-server", &DeleteParams::default())
        .await
        .unwrap();
    wait_gone(&w.ns.api::<VpsSnapshot>(), "ghost-server", T).await;
    w.stop().await;
}

/// A restart (or a takeover) does not step Ready objects back to `ProviderNotFound` while the
/// new process has not judged their provider yet: the VpsProvider exists, it is only not
/// looked at. Here the new process's credential check answers late, so every object is
/// reconciled before its provider is judged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_keeps_ready_objects_ready_while_their_provider_is_judged_again() {
    let mut w = World::new("rejudge", sim_config(&[197])).await;
    w.vps_rest_provider("acct", "good-token", json!({})).await;
    w.wait_ready::<VpsProvider>("acct", T).await;
    w.snapshot("s", "acct", 197, json!({})).await;
    let ready: VpsSnapshot = w.wait_ready("s", T).await;
    let checks_before = calls(&w.sim, "vps_rest.account.me");
    w.sim.set_faults(Faults {
        latency: Duration::from_secs(3),
        ..Faults::default()
    });
    w.restart_operator().await;
    // The new process asked the provider who it is (the answer is 3 s away) ...
    wait_until("a credential check after the restart", T, || async {
        match calls(&w.sim, "vps_rest.account.me") {
            n if n > checks_before => Ok(()),
            n => Err(format!("{n} checks")),
        }
    })
    .await;
    // ... and has reconciled the snapshot meanwhile.
    let op = w.operator.as_ref().expect("operator running");
    wait_until(
        "the snapshot is reconciled after the restart",
        T,
        || async {
            let text = op.metrics().await;
            match text
                .lines()
                .any(|l| l.starts_with("vpsnap_reconciles_total") && l.contains("VpsSnapshot"))
            {
                true => Ok(()),
                false => Err("no VpsSnapshot reconcile in /metrics".into()),
            }
        },
    )
    .await;
    let now = w.ns.api::<VpsSnapshot>().get("s").await.unwrap();
    assert!(
        has_condition(&now, "Ready", "True", None),
        "a restart stepped the object back: {:?}",
        now.status
    );
    assert_eq!(
        now.resource_version(),
        ready.resource_version(),
        "nothing to write: {:?}",
        now.status
    );
    w.sim.set_faults(Faults::default());
    w.stop().await;
}
