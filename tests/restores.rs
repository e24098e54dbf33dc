//! `VpsRestore` end to end: real kube-apiserver, the operator as a real process, the provider
//! simulator over real HTTP. The simulator's counters are the judge of "at most once":
//! `calls()` counts every restore request that reached it (faulted ones included),
//! `record().restores` every one that reached its restore logic.
mod support;

use std::time::Duration;

use kube::api::{Api, ApiResource, DynamicObject, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use support::*;
use vpsnap::api::{DeletionPolicy, RestorePhase, VpsBackup, VpsProvider, VpsRestore, VpsSnapshot};
use vpsnap::sim::{Faults, ObjectKind};

const T: Duration = Duration::from_secs(60);
const SNAPSHOT_RESTORES: &str = "vps_rest.snapshots.restore";
const BACKUP_RESTORES: &str = "vps_rest.servers.restore";

/// A world with a Ready VpsRest provider `acct` and a Ready snapshot `base` of `server`.
async fn world_with_snapshot(prefix: &str, server: u64) -> (World, VpsSnapshot) {
    let w = World::new(prefix, sim_config(&[server])).await;
    w.vps_rest_provider("acct", "good-token", json!({})).await;
    w.wait_ready::<VpsProvider>("acct", T).await;
    w.snapshot("base", "acct", server, json!({})).await;
    let base = w.wait_ready::<VpsSnapshot>("base", T).await;
    (w, base)
}

fn restore_manifest(name: &str, server: u64, source: Value, extra: Value) -> Value {
    let mut spec = json!({
        "providerRef": {"name": "acct"},
        "serverId": server,
        "source": source,
        "acknowledgeDataLoss": true,
    });
    if let (Some(spec), Value::Object(extra)) = (spec.as_object_mut(), extra) {
        spec.extend(extra);
    }
    json!({"metadata": {"name": name}, "spec": spec})
}

async fn wait_succeeded(w: &World, name: &str, status: &str, reason: &str) -> VpsRestore {
    w.wait_reason::<VpsRestore>(name, "Succeeded", status, reason, T)
        .await
}

/// Waits until the (re)started operator has reconciled a restore at least once, so a check
/// that "nothing happened" after a restart is not just a check that nothing ran yet.
async fn wait_reconciled_restores(w: &World) {
    let op = w.operator.as_ref().expect("operator running");
    let start = std::time::Instant::now();
    loop {
        if let Ok(resp) = op.try_get("/metrics").await
            && let Ok(text) = resp.text().await
            && text
                .lines()
                .any(|l| l.starts_with("vpsnap_reconciles_total") && l.contains("VpsRestore"))
        {
            return;
        }
        assert!(
            start.elapsed() < T,
            "the operator never reconciled a VpsRestore"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn restores(sim: &vpsnap::sim::SimHandle) -> Vec<vpsnap::sim::RestoreRecord> {
    sim.record().restores
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_ref_restore_runs_exactly_once() {
    let (mut w, base) = world_with_snapshot("restore-once", 100).await;
    let manifest = restore_manifest(
        "rollback",
        100,
        json!({"snapshotRef": {"name": "base"}}),
        json!({}),
    );
    apply(&w.ns.api::<VpsRestore>(), manifest.clone()).await;

    let done = wait_succeeded(&w, "rollback", "True", "RestoreAccepted").await;
    let st = done.status.clone().unwrap();
    let base_id = base.status.unwrap().provider_id.unwrap();
    assert_eq!(st.phase, Some(RestorePhase::Succeeded));
    assert_eq!(st.source_provider_id.as_deref(), Some(base_id.as_str()));
    assert_eq!(st.source.as_deref(), Some("VpsSnapshot/base"));
    assert!(
        st.restore_requested_at.is_some() && st.restore_accepted_at.is_some(),
        "{st:?}"
    );
    assert!(
        st.start_time.is_some() && st.completion_time.is_some(),
        "{st:?}"
    );
    assert!(st.restore_requested_at <= st.restore_accepted_at);
    assert_eq!(st.observed_generation, done.metadata.generation);
    let (_, _, message) = condition(&done, "Succeeded").unwrap();
    assert!(
        message.contains("in the background") && message.contains("5-15 minutes"),
        "{message}"
    );
    assert!(has_condition(&done, "Reconciling", "False", None));
    assert!(has_condition(&done, "Stalled", "False", None));

    let record = restores(&w.sim);
    assert_eq!(record.len(), 1, "{record:?}");
    assert!(record[0].accepted && record[0].kind == ObjectKind::Snapshot);
    assert_eq!(record[0].object_id.to_string(), base_id);
    assert_eq!(calls(&w.sim, SNAPSHOT_RESTORES), 1);
    for reason in ["RestoreRequested", "RestoreAccepted"] {
        w.wait_event("rollback", reason).await;
    }

    // Re-applying the same manifest is a no-op; editing it is refused at admission.
    apply(&w.ns.api::<VpsRestore>(), manifest).await;
    let err =
        w.ns.api::<VpsRestore>()
            .patch(
                "rollback",
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": {"serverId": 101}})),
            )
            .await
            .unwrap_err();
    let kube::Error::Api(s) = err else {
        panic!("expected an API error, got {err:?}")
    };
    assert!(
        s.message.contains("VpsRestore is one-shot"),
        "{}",
        s.message
    );

    // A restarted operator sees the accepted restore and leaves it alone.
    w.restart_operator().await;
    wait_reconciled_restores(&w).await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(calls(&w.sim, SNAPSHOT_RESTORES), 1);
    assert_eq!(restores(&w.sim).len(), 1);
    let again: VpsRestore = w.ns.api().get("rollback").await.unwrap();
    assert_eq!(
        again.status, done.status,
        "a settled restore's status never changes"
    );
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_answer_is_reported_and_never_retried() {
    let (mut w, _) = world_with_snapshot("restore-lost", 100).await;
    // Every request now gets a 503: the restore request reaches the provider, the answer does
    // not tell whether it ran.
    w.sim.set_faults(Faults {
        error_5xx_rate: 1.0,
        ..Faults::default()
    });
    apply(
        &w.ns.api::<VpsRestore>(),
        restore_manifest(
            "lost",
            100,
            json!({"snapshotRef": {"name": "base"}}),
            json!({}),
        ),
    )
    .await;
    let doubt = wait_succeeded(&w, "lost", "False", "OutcomeUnknown").await;
    assert!(has_condition(
        &doubt,
        "Stalled",
        "True",
        Some("OutcomeUnknown")
    ));
    assert!(has_condition(&doubt, "Reconciling", "False", None));
    let st = doubt.status.clone().unwrap();
    assert_eq!(st.phase, Some(RestorePhase::Failed));
    assert!(st.restore_requested_at.is_some() && st.restore_accepted_at.is_none());
    let (_, _, message) = condition(&doubt, "Succeeded").unwrap();
    assert!(
        message.contains("Check server 100") && message.contains("delete this VpsRestore"),
        "{message}"
    );
    assert!(st.last_error.is_some());
    assert_eq!(calls(&w.sim, SNAPSHOT_RESTORES), 1);
    assert!(
        restores(&w.sim).is_empty(),
        "the faulted request never reached the restore logic"
    );
    w.wait_event("lost", "OutcomeUnknown").await;

    // The provider is healthy again; many poll periods and a restart later, still one request.
    w.sim.set_faults(Faults::default());
    tokio::time::sleep(Duration::from_secs(5)).await;
    w.restart_operator().await;
    wait_reconciled_restores(&w).await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(calls(&w.sim, SNAPSHOT_RESTORES), 1);
    assert!(restores(&w.sim).is_empty());
    let after: VpsRestore = w.ns.api().get("lost").await.unwrap();
    assert!(has_condition(
        &after,
        "Succeeded",
        "False",
        Some("OutcomeUnknown")
    ));
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_after_the_request_marker_is_never_followed_by_a_call() {
    let (mut w, _) = world_with_snapshot("restore-crash", 100).await;
    if let Some(op) = w.operator.take() {
        op.kill().await;
    }
    // The state a crash right after the durable marker leaves behind.
    let api = w.ns.api::<VpsRestore>();
    apply(
        &api,
        restore_manifest(
            "crashed",
            100,
            json!({"snapshotRef": {"name": "base"}}),
            json!({}),
        ),
    )
    .await;
    api.patch_status(
        "crashed",
        &PatchParams::apply("crash-sim").force(),
        &Patch::Apply(json!({
            "apiVersion": "vpsnap.dev/v1alpha1", "kind": "VpsRestore",
            "status": {"phase": "Restoring", "restoreRequestedAt": "2026-03-01T10:00:00Z"},
        })),
    )
    .await
    .unwrap();
    w.operator = Some(Operator::start(&w.ns.name).await);
    let doubt = wait_succeeded(&w, "crashed", "False", "OutcomeUnknown").await;
    assert!(has_condition(&doubt, "Stalled", "True", None));
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(calls(&w.sim, SNAPSHOT_RESTORES), 0);
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_killed_mid_restore_does_not_call_again() {
    let (mut w, _) = world_with_snapshot("restore-kill", 100).await;
    // Slow answers, so the operator can be killed while the restore request is in flight.
    w.sim.set_faults(Faults {
        latency: Duration::from_secs(4),
        ..Faults::default()
    });
    let api = w.ns.api::<VpsRestore>();
    apply(
        &api,
        restore_manifest(
            "midway",
            100,
            json!({"snapshotRef": {"name": "base"}}),
            json!({}),
        ),
    )
    .await;
    wait_for(&api, "midway", T, |r: &VpsRestore| {
        r.status
            .as_ref()
            .is_some_and(|s| s.restore_requested_at.is_some())
    })
    .await;
    let start = std::time::Instant::now();
    while calls(&w.sim, SNAPSHOT_RESTORES) == 0 {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "the request never came"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    if let Some(op) = w.operator.take() {
        op.kill().await;
    }
    w.sim.set_faults(Faults::default());
    w.operator = Some(Operator::start(&w.ns.name).await);
    wait_succeeded(&w, "midway", "False", "OutcomeUnknown").await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(calls(&w.sim, SNAPSHOT_RESTORES), 1);
    assert!(restores(&w.sim).len() <= 1);
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_ref_restore_succeeds() {
    let w = World::new("restore-backup", sim_config(&[200])).await;
    w.vps_rest_provider("acct", "good-token", json!({})).await;
    w.wait_ready::<VpsProvider>("acct", T).await;
    w.backup("nightly", "acct", 200, json!({})).await;
    let bk = w.wait_ready::<VpsBackup>("nightly", T).await;
    apply(
        &w.ns.api::<VpsRestore>(),
        restore_manifest(
            "from-backup",
            200,
            json!({"backupRef": {"name": "nightly"}}),
            json!({}),
        ),
    )
    .await;
    let done = wait_succeeded(&w, "from-backup", "True", "RestoreAccepted").await;
    let (_, _, message) = condition(&done, "Succeeded").unwrap();
    assert!(message.contains("in the background"), "{message}");
    let record = restores(&w.sim);
    assert_eq!(record.len(), 1, "{record:?}");
    assert_eq!(record[0].kind, ObjectKind::Backup);
    assert_eq!(record[0].server, Some(200));
    assert_eq!(
        Some(record[0].object_id.to_string()),
        bk.status.unwrap().provider_id
    );
    assert_eq!(calls(&w.sim, BACKUP_RESTORES), 1);
    assert_eq!(calls(&w.sim, SNAPSHOT_RESTORES), 0);
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_of_another_server_or_not_ready_waits_without_calling() {
    let (w, base) = world_with_snapshot("restore-wait", 300).await;
    let api = w.ns.api::<VpsRestore>();
    // `base` is a snapshot of server 300: restoring server 301 from it is refused.
    apply(
        &api,
        restore_manifest(
            "wrong-server",
            301,
            json!({"snapshotRef": {"name": "base"}}),
            json!({}),
        ),
    )
    .await;
    let r = w
        .wait_reason::<VpsRestore>("wrong-server", "Stalled", "True", "SourceMismatch", T)
        .await;
    assert!(has_condition(&r, "Succeeded", "Unknown", None));
    // The same snapshot by provider id, against the wrong server: the listing of server 301
    // does not hold it, so it never reaches the provider's restore call (which does not name
    // the server and would restore server 300).
    let id = base.status.unwrap().provider_id.unwrap();
    apply(
        &api,
        restore_manifest("wrong-id", 301, json!({"snapshotId": id}), json!({})),
    )
    .await;
    wait_succeeded(&w, "wrong-id", "False", "SourceNotFound").await;
    // A reference to an object that does not exist yet waits for it.
    apply(
        &api,
        restore_manifest(
            "later",
            300,
            json!({"snapshotRef": {"name": "later-snap"}}),
            json!({}),
        ),
    )
    .await;
    let r = w
        .wait_reason::<VpsRestore>("later", "Reconciling", "True", "SourceNotFound", T)
        .await;
    assert!(has_condition(&r, "Succeeded", "Unknown", None));
    assert_eq!(calls(&w.sim, SNAPSHOT_RESTORES), 0);
    // Once it exists and is Ready, the restore goes ahead.
    w.snapshot("later-snap", "acct", 300, json!({})).await;
    wait_succeeded(&w, "later", "True", "RestoreAccepted").await;
    assert_eq!(calls(&w.sim, SNAPSHOT_RESTORES), 1);
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zomro_restores_are_unsupported() {
    let w = World::new("restore-zomro", sim_config(&[400])).await;
    w.zomro_provider("acct", "zuser", "zpass").await;
    w.wait_ready::<VpsProvider>("acct", T).await;
    apply(
        &w.ns.api::<VpsRestore>(),
        restore_manifest("z", 400, json!({"snapshotId": "5204214"}), json!({})),
    )
    .await;
    let r = wait_succeeded(&w, "z", "False", "Unsupported").await;
    assert!(has_condition(&r, "Stalled", "True", Some("Unsupported")));
    let (_, _, message) = condition(&r, "Succeeded").unwrap();
    assert!(
        message.contains("Zomro") && message.contains("restore"),
        "{message}"
    );
    assert!(restores(&w.sim).is_empty());
    assert!(
        !w.sim.calls().keys().any(|k| k.contains("restore")),
        "{:?}",
        w.sim.calls()
    );
    w.wait_event("z", "RestoreFailed").await;
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_safety_snapshot_is_taken_before_the_restore() {
    let (w, _) = world_with_snapshot("restore-safety", 500).await;
    let api = w.ns.api::<VpsRestore>();
    apply(
        &api,
        restore_manifest(
            "careful",
            500,
            json!({"snapshotRef": {"name": "base"}}),
            json!({"snapshotBeforeRestore": true}),
        ),
    )
    .await;
    let done = wait_succeeded(&w, "careful", "True", "RestoreAccepted").await;
    let st = done.status.clone().unwrap();
    assert_eq!(
        st.pre_restore_snapshot.as_deref(),
        Some("careful-before-restore")
    );
    assert_eq!(st.pre_restore_snapshot_skipped, None);

    let safety: VpsSnapshot = w.ns.api().get("careful-before-restore").await.unwrap();
    assert!(has_condition(&safety, "Ready", "True", None));
    assert_eq!(safety.spec.deletion_policy, DeletionPolicy::Retain);
    assert!(!safety.spec.evictable && safety.metadata.owner_references.is_none());
    assert_eq!(
        safety.spec.description.as_deref(),
        Some("Safety snapshot before VpsRestore careful")
    );
    let safety_id: u64 = safety.status.unwrap().provider_id.unwrap().parse().unwrap();
    let record = w.sim.record();
    let created = record
        .creates
        .iter()
        .find(|c| c.id == safety_id && c.kind == ObjectKind::Snapshot)
        .expect("the safety snapshot was created at the provider");
    assert_eq!(record.restores.len(), 1, "{:?}", record.restores);
    assert!(
        created.seq < record.restores[0].seq,
        "the safety snapshot must exist before the restore: {record:?}"
    );
    w.wait_event("careful", "PreSnapshotCreated").await;

    // It outlives the restore object.
    api.delete("careful", &Default::default()).await.unwrap();
    wait_gone(&api, "careful", T).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        w.ns.api::<VpsSnapshot>()
            .get_opt("careful-before-restore")
            .await
            .unwrap()
            .is_some()
    );
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_safety_snapshot_that_does_not_fit_is_skipped_without_evicting() {
    let (w, _) = world_with_snapshot("restore-full", 600).await;
    // The source may be evicted to make room (as a schedule's old child would be); the server
    // is then filled to its limit (5) with snapshots vpsnap did not make.
    w.snapshot("evictable-src", "acct", 600, json!({"evictable": true}))
        .await;
    let src = w.wait_ready::<VpsSnapshot>("evictable-src", T).await;
    let src_id = src.status.unwrap().provider_id.unwrap();
    for n in 0..3 {
        w.sim
            .add_foreign_snapshot(600, &format!("foreign-{n}"), false);
    }
    let api = w.ns.api::<VpsRestore>();
    apply(
        &api,
        restore_manifest(
            "squeezed",
            600,
            json!({"snapshotRef": {"name": "evictable-src"}}),
            json!({"snapshotBeforeRestore": true}),
        ),
    )
    .await;
    let done = wait_succeeded(&w, "squeezed", "True", "RestoreAccepted").await;
    let st = done.status.clone().unwrap();
    let skipped = st
        .pre_restore_snapshot_skipped
        .expect("the skip is recorded");
    assert!(skipped.contains("no free snapshot slot"), "{skipped}");
    assert_eq!(st.pre_restore_snapshot, None);
    let (_, _, message) = condition(&done, "Succeeded").unwrap();
    assert!(message.contains("Safety snapshot skipped"), "{message}");
    w.wait_event("squeezed", "PreSnapshotSkipped").await;

    // Nothing was evicted for it, the source included, and the restore used the source.
    let record = w.sim.record();
    assert!(record.deletes.is_empty(), "{:?}", record.deletes);
    assert_eq!(record.restores.len(), 1);
    assert_eq!(record.restores[0].object_id.to_string(), src_id);
    assert_eq!(w.sim.snapshots(600).len(), 5);
    assert!(
        w.ns.api::<VpsSnapshot>()
            .get_opt("squeezed-before-restore")
            .await
            .unwrap()
            .is_none()
    );
    w.stop().await;
}

// --- admission -----------------------------------------------------------------------------

async fn create_raw(api: &Api<DynamicObject>, name: &str, spec: Value) -> Result<(), String> {
    let obj: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "vpsnap.dev/v1alpha1", "kind": "VpsRestore",
        "metadata": {"name": name}, "spec": spec,
    }))
    .unwrap();
    match api.create(&PostParams::default(), &obj).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) => {
            assert_eq!(s.code, 422, "expected 422 Invalid, got {s:?}");
            Err(s.message)
        }
        Err(e) => panic!("unexpected error {e}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admission_rejects_unacknowledged_and_ambiguous_restores() {
    let client = client().await;
    install_crds(&client).await;
    let ns = TestNamespace::new(&client, "restore-admission").await;
    let api: Api<DynamicObject> = Api::namespaced_with(
        client.clone(),
        &ns.name,
        &ApiResource::erase::<VpsRestore>(&()),
    );
    let spec = |source: Value, ack: Option<bool>| {
        let mut s = json!({"providerRef": {"name": "p"}, "serverId": 4211, "source": source});
        if let Some(ack) = ack {
            s["acknowledgeDataLoss"] = ack.into();
        }
        s
    };
    let one = json!({"snapshotRef": {"name": "pre-upgrade"}});

    let msg = create_raw(&api, "no-ack", spec(one.clone(), None))
        .await
        .unwrap_err();
    assert!(msg.contains("spec.acknowledgeDataLoss"), "{msg}");
    let msg = create_raw(&api, "false-ack", spec(one.clone(), Some(false)))
        .await
        .unwrap_err();
    assert!(
        msg.contains("spec.acknowledgeDataLoss")
            && msg.contains("acknowledgeDataLoss must be true")
            && msg.contains("overwrites all data on server 4211"),
        "{msg}"
    );
    let two = json!({"snapshotRef": {"name": "a"}, "backupId": "501"});
    let msg = create_raw(&api, "two", spec(two, Some(true)))
        .await
        .unwrap_err();
    assert!(
        msg.contains("spec.source") && msg.contains("exactly one of source.snapshotRef"),
        "{msg}"
    );
    let msg = create_raw(&api, "none", spec(json!({}), Some(true)))
        .await
        .unwrap_err();
    assert!(msg.contains("exactly one of"), "{msg}");
    let msg = create_raw(
        &api,
        "bad-id",
        spec(json!({"snapshotId": "abc"}), Some(true)),
    )
    .await
    .unwrap_err();
    assert!(msg.contains("spec.source.snapshotId"), "{msg}");
    let mut zero = spec(one.clone(), Some(true));
    zero["serverId"] = 0.into();
    let msg = create_raw(&api, "zero", zero).await.unwrap_err();
    assert!(msg.contains("spec.serverId"), "{msg}");

    create_raw(&api, "good", spec(one, Some(true)))
        .await
        .expect("a valid VpsRestore is accepted");
    let typed: Api<VpsRestore> = ns.api();
    let err = typed
        .patch(
            "good",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"snapshotBeforeRestore": true}})),
        )
        .await
        .unwrap_err();
    let kube::Error::Api(s) = err else {
        panic!("expected an API error")
    };
    assert!(
        s.message.contains("VpsRestore is one-shot"),
        "{}",
        s.message
    );
    ns.delete().await;
}

/// A restore whose source was evicted must say so and stop, not wait forever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_evicted_source_stalls_the_restore_without_calling() {
    let w = World::new("restore-evicted", sim_config(&[450])).await;
    w.vps_rest_provider(
        "acct",
        "good-token",
        json!({"limits": {"snapshotsPerServer": 2}}),
    )
    .await;
    w.snapshot("a", "acct", 450, json!({"evictable": true}))
        .await;
    w.wait_ready::<VpsSnapshot>("a", Duration::from_secs(60))
        .await;
    w.snapshot("b", "acct", 450, json!({})).await;
    w.wait_ready::<VpsSnapshot>("b", Duration::from_secs(60))
        .await;
    w.snapshot("c", "acct", 450, json!({})).await;
    w.wait_ready::<VpsSnapshot>("c", Duration::from_secs(60))
        .await;
    w.wait_for_phase("a", "Evicted").await;
    apply(
        &w.ns.api::<VpsRestore>(),
        json!({"metadata": {"name": "from-a"}, "spec": {
        "providerRef": {"name": "acct"}, "serverId": 450,
        "source": {"snapshotRef": {"name": "a"}}, "acknowledgeDataLoss": true}}),
    )
    .await;
    let r: VpsRestore = w
        .wait_reason(
            "from-a",
            "Stalled",
            "True",
            "SourceGone",
            Duration::from_secs(60),
        )
        .await;
    assert!(
        condition(&r, "Stalled")
            .unwrap()
            .2
            .contains("another source")
    );
    assert!(
        w.sim.record().restores.is_empty(),
        "no restore was attempted"
    );
    w.stop().await;
}
