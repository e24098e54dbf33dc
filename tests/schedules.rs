//! Schedules on the real control plane (with kube-controller-manager's garbage collector):
//! children are made on time, retention prunes them at the provider, the limit holds,
//! suspend stops it, and deleting the schedule keeps the data by default.
mod support;

use std::time::{Duration, Instant};

use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use serde_json::json;
use support::*;
use vpsnap::api::{VpsBackup, VpsProvider, VpsSnapshot, VpsSnapshotSchedule};

const T: Duration = Duration::from_secs(60);

async fn children(api: &Api<VpsSnapshot>, schedule: &str) -> Vec<VpsSnapshot> {
    api.list(&ListParams::default().labels(&format!("vpsnap.dev/schedule={schedule}")))
        .await
        .unwrap()
        .items
}

async fn until(what: &str, timeout: Duration, mut check: impl AsyncFnMut() -> bool) {
    let start = Instant::now();
    while !check().await {
        assert!(
            start.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schedule_creates_prunes_suspends_and_orphans() {
    let w = World::new("sched", sim_config(&[1000, 1001])).await;
    w.vps_rest_provider(
        "acct",
        "good-token",
        json!({"limits": {"snapshotsPerServer": 3}}),
    )
    .await;
    w.wait_ready::<VpsProvider>("acct", T).await;
    let schedules: Api<VpsSnapshotSchedule> = w.ns.api();
    apply(&schedules, json!({
        "metadata": {"name": "every2s", "labels": {"app.kubernetes.io/instance": "platform", "argocd.argoproj.io/instance": "platform"}},
        "spec": {
            "providerRef": {"name": "acct"},
            "serverIds": [1000, 1001],
            "schedule": "*/2 * * * * *",
            "timeZone": "Europe/Berlin",
            "maxJitter": "0s",
            "retention": {"keepLast": 2},
            "template": {"description": "scheduled", "labels": {"team": "db", "argocd.argoproj.io/instance": "platform"}},
        }})).await;

    let sim = &w.sim;
    until(
        "retention to prune at the provider",
        Duration::from_secs(90),
        async || {
            let rec = sim.record();
            rec.deletes.len() >= 2 && rec.creates.iter().filter(|c| c.server == 1000).count() >= 4
        },
    )
    .await;
    let rec = w.sim.record();
    for server in [1000, 1001] {
        let high = rec
            .servers
            .get(&server)
            .map(|s| s.snapshots_high_water)
            .unwrap_or(0);
        assert!(high <= 3, "server {server} held {high} snapshots, limit 3");
        assert_eq!(
            rec.servers
                .get(&server)
                .map(|s| s.snapshot_limit_rejections)
                .unwrap_or(0),
            0
        );
    }
    let snaps: Api<VpsSnapshot> = w.ns.api();
    let kids = children(&snaps, "every2s").await;
    let kid = kids.first().expect("children exist");
    assert_eq!(
        kid.metadata.owner_references.as_ref().unwrap()[0].kind,
        "VpsSnapshotSchedule"
    );
    let labels = kid.metadata.labels.clone().unwrap_or_default();
    assert_eq!(labels.get("team").map(String::as_str), Some("db"));
    assert!(
        labels
            .keys()
            .all(|k| !k.starts_with("argocd.argoproj.io/") && k != "app.kubernetes.io/instance"),
        "{labels:?}"
    );
    let s = schedules.get("every2s").await.unwrap();
    let st = s.status.clone().unwrap();
    assert!(
        st.last_schedule_time.is_some() && st.next_schedule_time.is_some(),
        "{st:?}"
    );
    assert_eq!(
        st.retention.len(),
        2,
        "the plan per server is visible: {st:?}"
    );
    assert!(has_condition(&s, "Ready", "True", Some("Scheduled")));

    // Suspend: no more children.
    schedules
        .patch(
            "every2s",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"suspend": true}})),
        )
        .await
        .unwrap();
    wait_for(&schedules, "every2s", T, |s: &VpsSnapshotSchedule| {
        s.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Suspended")
    })
    .await;
    // Children made before the suspension may still reach the provider; what must not
    // appear over three cron periods is a new child.
    let names = |kids: Vec<VpsSnapshot>| {
        kids.into_iter()
            .filter_map(|k| k.metadata.name)
            .collect::<std::collections::BTreeSet<_>>()
    };
    let before = names(children(&snaps, "every2s").await);
    tokio::time::sleep(Duration::from_secs(6)).await;
    let after = names(children(&snaps, "every2s").await);
    let new: Vec<&String> = after.difference(&before).collect();
    assert!(
        new.is_empty(),
        "a suspended schedule made children: {new:?}"
    );

    // A child deleted by hand: once it is finally gone (provider data removed through its
    // finalizer), the suspended schedule, which waits for nothing else, counts it out.
    let kids = children(&snaps, "every2s").await;
    let doomed = kids[0].metadata.name.clone().unwrap();
    snaps
        .delete(&doomed, &DeleteParams::default())
        .await
        .unwrap();
    wait_gone(&snaps, &doomed, T).await;
    let left = kids.len() as i64 - 1;
    wait_for(&schedules, "every2s", T, |s: &VpsSnapshotSchedule| {
        s.status.as_ref().map(|s| s.children.total) == Some(left)
    })
    .await;

    // Delete the schedule: children are orphaned, provider data kept (GC runs in this control plane).
    let kept: Vec<String> = children(&snaps, "every2s")
        .await
        .iter()
        .map(|c| c.metadata.name.clone().unwrap())
        .collect();
    let at_provider = w.sim.snapshots(1000).len() + w.sim.snapshots(1001).len();
    schedules
        .delete("every2s", &DeleteParams::default())
        .await
        .unwrap();
    wait_gone(&schedules, "every2s", T).await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    for name in &kept {
        let c = snaps
            .get(name)
            .await
            .unwrap_or_else(|e| panic!("child {name} was deleted with its schedule: {e}"));
        assert!(c.metadata.owner_references.unwrap_or_default().is_empty());
    }
    assert_eq!(
        w.sim.snapshots(1000).len() + w.sim.snapshots(1001).len(),
        at_provider
    );
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_schedules_and_invalid_specs() {
    let w = World::new("sched-b", sim_config(&[1100])).await;
    w.vps_rest_provider("acct", "good-token", json!({})).await;
    let schedules: Api<VpsSnapshotSchedule> = w.ns.api();
    apply(
        &schedules,
        json!({"metadata": {"name": "bad"}, "spec": {
        "providerRef": {"name": "acct"}, "serverIds": [1100], "schedule": "0 25 * * *"}}),
    )
    .await;
    let bad = wait_for(&schedules, "bad", T, |s: &VpsSnapshotSchedule| {
        has_condition(s, "Stalled", "True", Some("InvalidSpec"))
    })
    .await;
    let (_, _, message) = condition(&bad, "Stalled").unwrap();
    assert!(
        message.contains("spec.schedule") && message.contains("hour"),
        "{message}"
    );
    apply(&schedules, json!({"metadata": {"name": "badtz"}, "spec": {
        "providerRef": {"name": "acct"}, "serverIds": [1100], "schedule": "@daily", "timeZone": "Mars/Olympus"}})).await;
    let bad = wait_for(&schedules, "badtz", T, |s: &VpsSnapshotSchedule| {
        has_condition(s, "Stalled", "True", Some("InvalidSpec"))
    })
    .await;
    assert!(
        condition(&bad, "Stalled")
            .unwrap()
            .2
            .contains("spec.timeZone")
    );

    apply(&schedules, json!({"metadata": {"name": "backups"}, "spec": {
        "providerRef": {"name": "acct"}, "serverIds": [1100], "type": "Backup", "schedule": "*/2 * * * * *",
        "maxJitter": "0s", "retention": {"keepLast": 1}, "childDeletionPolicy": "Delete"}})).await;
    let sim = &w.sim;
    until(
        "backup children pruned at the provider",
        Duration::from_secs(90),
        async || sim.record().deletes.iter().any(|d| d.backup_type.is_some()),
    )
    .await;
    let backups: Api<VpsBackup> = w.ns.api();
    assert!(
        !backups
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .is_empty()
    );
    // childDeletionPolicy: Delete — children go with the schedule.
    schedules
        .delete("backups", &DeleteParams::default())
        .await
        .unwrap();
    until(
        "children deleted with their schedule",
        Duration::from_secs(90),
        async || {
            backups
                .list(&ListParams::default())
                .await
                .unwrap()
                .items
                .is_empty()
        },
    )
    .await;
    w.stop().await;
}
