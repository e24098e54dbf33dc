//! The safety promises, one test per way they were found broken: real kube-apiserver, the
//! operator as a real process, the provider simulator over real HTTP on 127.0.0.1.
//!
//! Races that need two writers (a reconcile acting on a copy older than another writer's
//! change) are made deterministic by playing the older writer with the operator's own write
//! functions on a copy taken before the change: what they do against the real apiserver is
//! exactly what a late reconcile would do.
mod support;

use std::time::Duration;

use kube::ResourceExt;
use kube::api::{DeleteParams, Patch, PatchParams};
use serde_json::json;
use support::*;
use vpsnap::api::{Phase, VpsProvider, VpsRestore, VpsSnapshot};
use vpsnap::sim::Faults;

const T: Duration = Duration::from_secs(60);

/// Defect 1: a snapshot made by hand is never adopted because an object names it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hand_made_snapshot_is_never_adopted_by_name() {
    let w = World::new("byname", sim_config(&[110, 111])).await;
    let foreign = w.sim.add_foreign_snapshot(110, "handmade", false);
    w.vps_rest_provider("acct", "good-token", json!({})).await;
    w.wait_ready::<VpsProvider>("acct", T).await;

    w.snapshot(
        "claims-name",
        "acct",
        110,
        json!({"snapshotName": "handmade", "evictable": true}),
    )
    .await;
    let conflict: VpsSnapshot = w
        .wait_reason("claims-name", "Ready", "False", "NameConflict", T)
        .await;
    let (_, _, message) = condition(&conflict, "Ready").unwrap();
    assert!(
        message.contains(&foreign.to_string()) && message.contains("importId"),
        "the message names the existing snapshot and how to import it: {message}"
    );
    assert!(has_condition(&conflict, "Stalled", "True", None));
    let st = conflict.status.clone().unwrap();
    assert_eq!(st.provider_id, None, "nothing adopted: {st:?}");
    assert!(
        !conflict
            .annotations()
            .contains_key("vpsnap.dev/create-requested-at"),
        "no create was ever sent for it, so its deletion (below) waits for nothing"
    );

    // Two objects naming the same snapshot on one server: one creates, the other conflicts.
    w.snapshot("twin-a", "acct", 111, json!({"snapshotName": "same-name"}))
        .await;
    w.wait_ready::<VpsSnapshot>("twin-a", T).await;
    w.snapshot("twin-b", "acct", 111, json!({"snapshotName": "same-name"}))
        .await;
    w.wait_reason::<VpsSnapshot>("twin-b", "Ready", "False", "NameConflict", T)
        .await;

    let snaps = w.ns.api::<VpsSnapshot>();
    for name in ["claims-name", "twin-b"] {
        snaps.delete(name, &DeleteParams::default()).await.unwrap();
        wait_gone(&snaps, name, T).await;
    }
    let rec = w.sim.record();
    assert!(
        rec.deletes.is_empty(),
        "deleting the conflicting objects deleted provider data: {:?}",
        rec.deletes
    );
    assert!(w.sim.snapshots(110).iter().any(|s| s.id == foreign));
    assert_eq!(
        rec.creates.iter().filter(|c| !c.foreign).count(),
        1,
        "only twin-a created: {:?}",
        rec.creates
    );
    w.wait_ready::<VpsSnapshot>("twin-a", T).await;
    w.stop().await;
}

/// Defect 2: a reconcile that read the object before it was evicted cannot write it back to
/// life; the evicted object is never created again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_status_write_cannot_undo_an_eviction() {
    let w = World::new("staleevict", sim_config(&[120])).await;
    w.vps_rest_provider(
        "acct",
        "good-token",
        json!({"limits": {"snapshotsPerServer": 2}}),
    )
    .await;
    w.wait_ready::<VpsProvider>("acct", T).await;
    w.snapshot("keep", "acct", 120, json!({})).await;
    w.wait_ready::<VpsSnapshot>("keep", T).await;
    w.snapshot("old", "acct", 120, json!({"evictable": true}))
        .await;
    let before: VpsSnapshot = w.wait_ready("old", T).await;
    let marker = before.status.clone().unwrap().provider_name.unwrap();

    w.snapshot("new", "acct", 120, json!({})).await;
    w.wait_ready::<VpsSnapshot>("new", T).await;
    w.wait_for_phase("old", "Evicted").await;

    // The late reconcile: it read `old` before the eviction and now reports it as still being
    // created (what an in-flight create looks like from that copy).
    let mut stale = before.status.clone().unwrap();
    stale.phase = Some(Phase::Creating);
    stale.provider_id = None;
    let api = w.ns.api::<VpsSnapshot>();
    let written = stale_status_write(&api, &before, &stale).await;
    assert!(
        written.is_err(),
        "a write from a copy older than the eviction went through"
    );
    let old: VpsSnapshot = api.get("old").await.unwrap();
    assert_eq!(
        old.status.as_ref().and_then(|s| s.phase),
        Some(Phase::Evicted),
        "{:?}",
        old.status
    );

    // Room again: the evicted object still never creates a second snapshot.
    api.delete("new", &DeleteParams::default()).await.unwrap();
    wait_gone(&api, "new", T).await;
    let lists = calls(&w.sim, "vps_rest.snapshots.list");
    // Past the re-create grace of an unobserved create, and listed again after it.
    let grace = Duration::from_secs(30);
    let start = std::time::Instant::now();
    while start.elapsed() < grace || calls(&w.sim, "vps_rest.snapshots.list") <= lists + 1 {
        assert!(start.elapsed() < grace * 4, "the operator stopped listing");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let creates: Vec<_> = w
        .sim
        .record()
        .creates
        .into_iter()
        .filter(|c| c.name.as_deref() == Some(marker.as_str()))
        .collect();
    assert_eq!(
        creates.len(),
        1,
        "evicted object created again: {creates:?}"
    );
    let old: VpsSnapshot = api.get("old").await.unwrap();
    assert_eq!(old.status.and_then(|s| s.phase), Some(Phase::Evicted));
    w.stop().await;
}

/// Defect 3: a slot frees only when the provider stops listing what was deleted from it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slot_frees_only_when_the_provider_stops_listing_it() {
    let w = World::new("linger", sim_config(&[160])).await;
    w.vps_rest_provider(
        "acct",
        "good-token",
        json!({"limits": {"snapshotsPerServer": 3}}),
    )
    .await;
    w.wait_ready::<VpsProvider>("acct", T).await;
    w.snapshot("keep", "acct", 160, json!({})).await;
    w.wait_ready::<VpsSnapshot>("keep", T).await;
    for old in ["old-1", "old-2"] {
        w.snapshot(old, "acct", 160, json!({"evictable": true}))
            .await;
        w.wait_ready::<VpsSnapshot>(old, T).await;
    }
    // The provider deletes in the background: a deleted snapshot stays listed (and counted)
    // as `deleting` for a while.
    w.sim.set_faults(Faults {
        delete_linger: Duration::from_secs(6),
        ..Faults::default()
    });
    // Two new ones at once: each needs one of the old ones to go first.
    w.snapshot("new-1", "acct", 160, json!({})).await;
    w.snapshot("new-2", "acct", 160, json!({})).await;
    for new in ["new-1", "new-2"] {
        w.wait_ready::<VpsSnapshot>(new, T * 2).await;
    }
    for old in ["old-1", "old-2"] {
        w.wait_for_phase(old, "Evicted").await;
    }
    let rec = w.sim.record();
    assert!(
        rec.limit_refusals.is_empty(),
        "a create met the provider's limit: {:?}",
        rec.limit_refusals
    );
    assert_eq!(rec.servers[&160].snapshot_limit_rejections, 0);
    assert_eq!(rec.creates.len(), 5, "{:?}", rec.creates);
    assert!(rec.servers[&160].snapshots_high_water <= 3);
    w.stop().await;
}

/// Defect 4: a listing the provider says is partial is never planned on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_is_created_on_a_partial_listing() {
    let w = World::new("partial", sim_config(&[170])).await;
    for i in 0..5 {
        w.sim
            .add_foreign_snapshot(170, &format!("by-hand-{i}"), false);
    }
    w.sim.set_faults(Faults {
        partial_lists: Some(3),
        ..Faults::default()
    });
    w.vps_rest_provider("acct", "good-token", json!({})).await;
    w.wait_ready::<VpsProvider>("acct", T).await;
    w.snapshot("s", "acct", 170, json!({})).await;
    let s: VpsSnapshot = w
        .wait_reason("s", "Ready", "False", "ListingIncomplete", T)
        .await;
    assert_eq!(s.status.unwrap().provider_id, None);
    assert_eq!(calls(&w.sim, "vps_rest.snapshots.create"), 0);
    // With whole listings again the server is seen full of foreign snapshots.
    w.sim.set_faults(Faults::default());
    w.wait_reason::<VpsSnapshot>("s", "Ready", "False", "LimitReached", T)
        .await;
    let rec = w.sim.record();
    assert!(rec.limit_refusals.is_empty(), "{:?}", rec.limit_refusals);
    assert_eq!(calls(&w.sim, "vps_rest.snapshots.create"), 0);
    w.stop().await;
}

/// Defect 5: an object pinned after the plan that chose it is not evicted, and a schedule
/// does not prune a child pinned since it looked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_pinned_after_the_plan_is_not_evicted_or_pruned() {
    let w = World::new("pinned", sim_config(&[130])).await;
    w.vps_rest_provider("acct", "good-token", json!({})).await;
    w.wait_ready::<VpsProvider>("acct", T).await;
    w.snapshot("victim", "acct", 130, json!({"evictable": true}))
        .await;
    let seen: VpsSnapshot = w.wait_ready("victim", T).await;
    let api = w.ns.api::<VpsSnapshot>();
    // The user pins it after the planner's copy was taken.
    api.patch(
        "victim",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"pinned": true}})),
    )
    .await
    .unwrap();
    let marked = mark_evicted(&api, &seen).await;
    assert!(
        marked.is_err(),
        "an eviction planned on an unpinned copy went through"
    );
    let now: VpsSnapshot = api.get("victim").await.unwrap();
    assert_eq!(now.status.and_then(|s| s.phase), Some(Phase::Ready));

    // Schedule pruning: a child the schedule saw unpinned, pinned since.
    let pruned = prune_child(&w, "victim", &seen).await;
    assert_ne!(pruned, Ok(true), "a pinned child was pruned");
    let now: VpsSnapshot = api.get("victim").await.unwrap();
    assert!(
        now.metadata.deletion_timestamp.is_none(),
        "pinned child deleted"
    );
    assert!(w.sim.record().deletes.is_empty());
    w.stop().await;
}

/// Defect 6: a restore's request marker can only be removed by a writer that saw it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restore_marker_is_never_erased_by_a_stale_writer() {
    let w = World::new("marker", sim_config(&[140])).await;
    let api = w.ns.api::<VpsRestore>();
    apply(
        &api,
        json!({"metadata": {"name": "r"}, "spec": {
            "providerRef": {"name": "absent"}, "serverId": 140,
            "source": {"snapshotId": "801"}, "acknowledgeDataLoss": true}}),
    )
    .await;
    // The operator waits for the missing provider; wait for its first status.
    let before: VpsRestore = wait_for(&api, "r", T, |r: &VpsRestore| r.status.is_some()).await;
    // Another writer (the replica that holds the lease now) records the request marker.
    api.patch_status(
        "r",
        &PatchParams::apply("another-replica"),
        &Patch::Merge(json!({"status": {"restoreRequestedAt": "2026-11-30T10:00:00Z"}})),
    )
    .await
    .unwrap();
    // The old replica, working from its read before the marker, writes its own status.
    let mut stale = before.status.clone().unwrap();
    stale.last_error = Some("waiting".into());
    let written = stale_restore_write(&api, &before, &stale).await;
    assert!(
        written.is_err(),
        "a stale restore status write went through"
    );
    let now: VpsRestore = api.get("r").await.unwrap();
    assert_eq!(
        now.status.and_then(|s| s.restore_requested_at).as_deref(),
        Some("2026-11-30T10:00:00Z"),
        "the marker was erased"
    );
    w.stop().await;
}

/// Defect 7: an interval the operator cannot use is refused, never replaced silently: at
/// admission when the schema can tell, otherwise as `InvalidSpec` naming the field.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unusable_provider_interval_is_reported() {
    let w = World::new("interval", sim_config(&[150])).await;
    let refused =
        w.ns.api::<VpsProvider>()
            .patch(
                "too-long",
                &PatchParams::apply("vpsnap-tests").force(),
                &Patch::Apply(json!({
                "apiVersion": "vpsnap.dev/v1alpha1", "kind": "VpsProvider",
                "metadata": {"name": "too-long"},
                "spec": {"type": "VpsRest", "endpoint": w.sim.vps_rest_url(),
                    "credentialsSecretRef": {"name": "x"}, "pollInterval": "99999999999999h"}})),
            )
            .await
            .expect_err("admission refuses an interval the operator cannot hold");
    assert!(
        refused.to_string().contains("spec.pollInterval"),
        "{refused}"
    );
    w.vps_rest_provider("acct", "good-token", json!({"pollInterval": "0s"}))
        .await;
    let p: VpsProvider = w
        .wait_reason("acct", "Ready", "False", "InvalidSpec", T)
        .await;
    let (_, _, message) = condition(&p, "Ready").unwrap();
    assert!(message.contains("spec.pollInterval"), "{message}");
    w.stop().await;
}

/// Defect 8: a deletion the apiserver decided on before the operator's claim added the
/// finalizer removes the object anyway (kubernetes/kubernetes#77988) — the create the claim
/// let through must not stay behind at the provider. The webhook holds the DELETE inside the
/// apiserver after it read the object without finalizers; the operator claims and creates
/// meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deletion_decided_before_the_claim_leaves_nothing_at_the_provider() {
    let w = World::new("delrace", sim_config(&[195])).await;
    // The provider does not exist yet: the object waits, owning nothing.
    w.snapshot("victim", "acct", 195, json!({})).await;
    w.wait_reason::<VpsSnapshot>("victim", "Ready", "False", "ProviderNotFound", T)
        .await;
    let gate =
        delete_gate::DeleteGate::start(&w.client, &w.ns.name, "vpssnapshots", "victim").await;
    // The webhook takes effect once the apiserver has loaded it: probe until it answers.
    let snaps = w.ns.api::<VpsSnapshot>();
    for i in 0.. {
        let probe = format!("probe-{i}");
        w.snapshot(&probe, "absent", 195, json!({})).await;
        snaps
            .delete(&probe, &DeleteParams::default())
            .await
            .unwrap();
        if gate.saw_delete_of(&probe) {
            break;
        }
        assert!(i < 600, "the webhook never took effect");
    }
    let deletion = tokio::spawn({
        let snaps = snaps.clone();
        async move { snaps.delete("victim", &DeleteParams::default()).await }
    });
    gate.wait_for_delete_of("victim", T).await;
    // The apiserver has read the object; now the operator gets to work on it.
    w.vps_rest_provider("acct", "good-token", json!({})).await;
    // Well inside the webhook's 30 s, so the DELETE is still held when it happens.
    wait_until(
        "the operator sends a create while the deletion waits",
        Duration::from_secs(25),
        || async {
            let creates = w.sim.record().creates;
            match creates.iter().any(|c| c.server == 195) {
                true => Ok(()),
                false => Err(format!("{} creates elsewhere", creates.len())),
            }
        },
    )
    .await;
    gate.open();
    deletion.await.unwrap().expect("the deletion goes through");
    wait_gone(&snaps, "victim", T).await;
    wait_until(
        "the deleted object's snapshot goes from the provider",
        T,
        || async {
            let left: Vec<u64> = w.sim.snapshots(195).iter().map(|s| s.id).collect();
            match left.is_empty() {
                true => Ok(()),
                false => Err(format!("still at the provider: {left:?}")),
            }
        },
    )
    .await;
    gate.remove().await;
    w.stop().await;
}

// --- the older writers, played with the operator's own write functions -----------------------

async fn stale_status_write(
    api: &kube::Api<VpsSnapshot>,
    seen: &VpsSnapshot,
    desired: &vpsnap::api::RestorePointStatus,
) -> Result<(), String> {
    vpsnap::controller::status::write(api, seen, seen.status.as_ref(), desired)
        .await
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// What the eviction does to the victim the plan chose, from the plan's copy.
async fn mark_evicted(api: &kube::Api<VpsSnapshot>, seen: &VpsSnapshot) -> Result<(), String> {
    let st = vpsnap::controller::snapshot_backup::report::evicted(
        &seen.status.clone().unwrap_or_default(),
        seen.metadata.generation,
        "801",
        "evicted",
        jiff::Timestamp::now(),
    );
    vpsnap::controller::status::write(api, seen, seen.status.as_ref(), &st)
        .await
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// The schedule's pruning of a child it chose from its copy; whether it was deleted.
async fn prune_child(w: &World, name: &str, _seen: &VpsSnapshot) -> Result<bool, String> {
    let api = w.ns.api::<VpsSnapshot>();
    vpsnap::controller::schedule::prune_child(&api, "s", name)
        .await
        .map(|deleted| deleted.is_some())
        .map_err(|e| e.to_string())
}

async fn stale_restore_write(
    api: &kube::Api<VpsRestore>,
    seen: &VpsRestore,
    desired: &vpsnap::api::VpsRestoreStatus,
) -> Result<(), String> {
    vpsnap::controller::status::write(api, seen, seen.status.as_ref(), desired)
        .await
        .map(|_| ())
        .map_err(|e| e.to_string())
}
