use super::support::{S1, S2, Vps, Zomro, client, config, settle, sim};
use crate::sim::{FIRST_SNAPSHOT_ID, ObjectKind, Record, SimApi, SimConfig};
use reqwest::StatusCode;
use serde_json::{Value, json};

#[tokio::test]
async fn calls_and_record_match_over_http_and_library() {
    let sim = sim(config()).await;
    let vps = Vps::new(&sim);
    let created: Value = vps
        .post(
            "snapshots/",
            Some(json!({ "server_id": S1, "name": "mine", "description": "by operator" })),
        )
        .await
        .expect("create")
        .json()
        .await
        .expect("json");
    let mine = created["id"].as_u64().expect("id");
    let foreign = sim.add_foreign_snapshot(S1, "theirs", false);
    vps.snapshots(S1).await;
    vps.snapshots(S1).await;
    settle().await;
    vps.post(&format!("snapshots/{mine}/restore/"), None)
        .await
        .expect("restore");
    vps.delete(&format!("snapshots/{mine}/"))
        .await
        .expect("delete");
    let mut unauth = Vps::new(&sim);
    unauth.token = "wrong".into();
    unauth.get("snapshots/").await.expect("send");

    let http = client();
    let calls: Value = http
        .get(format!("{}calls", sim.inspect_url()))
        .send()
        .await
        .expect("calls")
        .json()
        .await
        .expect("json");
    assert_eq!(calls["calls"]["vps_rest.snapshots.create"], 1);
    assert_eq!(
        calls["calls"]["vps_rest.snapshots.list"], 3,
        "unauthorised calls count too"
    );
    assert_eq!(calls["calls"]["vps_rest.snapshots.restore"], 1);
    assert_eq!(calls["calls"]["vps_rest.snapshots.delete"], 1);
    assert!(calls["faults"].as_object().is_some_and(|f| f.is_empty()));
    assert_eq!(
        serde_json::to_value(sim.calls()).expect("ser"),
        calls["calls"]
    );

    let record: Record = http
        .get(format!("{}record", sim.inspect_url()))
        .send()
        .await
        .expect("record")
        .json()
        .await
        .expect("json");
    assert_eq!(record, sim.record());
    assert_eq!(record.creates.len(), 2);
    assert_eq!(record.creates[0].id, mine);
    assert_eq!(record.creates[0].api, SimApi::VpsRest);
    assert_eq!(
        record.creates[0].description.as_deref(),
        Some("by operator")
    );
    assert!(!record.creates[0].foreign && !record.creates[0].response_lost);
    assert_eq!(record.creates[1].id, foreign);
    assert!(record.creates[1].foreign);
    assert_eq!(record.deletes.len(), 1);
    let deleted = &record.deletes[0];
    assert_eq!(
        (deleted.id, deleted.server, deleted.name.as_deref()),
        (mine, S1, Some("mine"))
    );
    assert_eq!(deleted.description.as_deref(), Some("by operator"));
    assert_eq!(record.restores.len(), 1);
    assert_eq!(record.restores[0].kind, ObjectKind::Snapshot);
    assert!(record.restores[0].accepted);
    let seqs: Vec<u64> = record
        .creates
        .iter()
        .map(|c| c.seq)
        .chain(record.restores.iter().map(|r| r.seq))
        .chain(record.deletes.iter().map(|d| d.seq))
        .collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
    assert_eq!(record.servers[&S1].snapshots_high_water, 2);
    assert_eq!(record.servers[&S2].snapshots_high_water, 0);
    sim.shutdown().await;
}

#[tokio::test]
async fn foreign_objects_over_http_and_state_view() {
    let sim = sim(SimConfig {
        servers: vec![S1],
        ..config()
    })
    .await;
    let http = client();
    let base = sim.inspect_url();
    let resp = http
        .post(format!("{base}servers/{S1}/snapshots"))
        .json(&json!({ "name": "hand-made", "description": "ops", "protected": true }))
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), StatusCode::CREATED);
    let snap: Value = resp.json().await.expect("json");
    assert_eq!(snap["status"], "completed");
    assert_eq!(snap["protected"], true);
    assert_eq!(snap["foreign"], true);

    let resp = http
        .post(format!("{base}servers/{S1}/backups"))
        .json(&json!({ "automatic": true }))
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), StatusCode::CREATED);
    let auto: Value = resp.json().await.expect("json");
    assert_eq!(auto["backup_type"], "automatic");
    assert!(auto["expires_at"].is_string());

    // A new server id is added; an `in_progress` foreign object progresses like a real one.
    let resp = http
        .post(format!("{base}servers/777/backups"))
        .json(&json!({ "status": "in_progress" }))
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), StatusCode::CREATED);
    let resp = http
        .post(format!("{base}servers/777/snapshots"))
        .body("")
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), StatusCode::CREATED);
    let bad = http
        .post(format!("{base}servers/777/snapshots"))
        .json(&json!({ "protect": true }))
        .send()
        .await
        .expect("send");
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);

    let vps = Vps::new(&sim);
    let listed = vps.snapshots(S1).await;
    assert_eq!(listed[0]["name"], "hand-made");
    assert_eq!(listed[0]["description"], "ops");
    let backups: Value = vps
        .get("backups/?server_id=777")
        .await
        .expect("list")
        .json()
        .await
        .expect("json");
    assert_eq!(backups["results"][0]["status"], "in_progress");
    assert_eq!(backups["results"][0]["backup_type"], "manual");
    assert!(backups["results"][0]["expires_at"].is_null());
    settle().await;
    assert_eq!(sim.backups(777)[0].status, crate::sim::SimStatus::Completed);

    Zomro::new(&sim).login().await;
    let state: Value = http
        .get(format!("{base}state"))
        .send()
        .await
        .expect("state")
        .json()
        .await
        .expect("json");
    let servers: Vec<u64> = state["servers"]
        .as_array()
        .expect("servers")
        .iter()
        .filter_map(|s| s["id"].as_u64())
        .collect();
    assert_eq!(servers, [S1, 777]);
    assert_eq!(state["servers"][0]["status"], "running");
    assert_eq!(state["servers"][0]["name"], "server-100");
    assert_eq!(state["snapshots"].as_array().map(Vec::len), Some(2));
    assert_eq!(state["backups"].as_array().map(Vec::len), Some(2));
    assert_eq!(state["sessions"], 1);
    assert!(state["faults"].is_object());
    sim.shutdown().await;
}

#[tokio::test]
async fn reset_returns_to_the_start_state() {
    let sim = sim(SimConfig {
        auto_backups: 1,
        ..config()
    })
    .await;
    let vps = Vps::new(&sim);
    vps.create_snapshot(S1, "a").await.expect("create");
    sim.add_foreign_backup(S1, false);
    Zomro::new(&sim).login().await;
    let resp = client()
        .post(format!("{}reset", sim.inspect_url()))
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    assert!(sim.snapshots(S1).is_empty());
    assert_eq!(sim.backups(S1).len(), 1, "seeded automatic backup is back");
    assert!(sim.calls().is_empty());
    assert_eq!(sim.sessions(), 0);
    assert_eq!(sim.record().creates.len(), 2, "only the two seeded backups");
    let created: Value = vps
        .create_snapshot(S1, "b")
        .await
        .expect("create")
        .json()
        .await
        .expect("json");
    assert_eq!(created["id"].as_u64(), Some(FIRST_SNAPSHOT_ID));
    sim.shutdown().await;
}
