use super::support::{DELAY, S1, S2, TOKEN, Vps, client, config, settle, sim};
use crate::sim::{FIRST_SNAPSHOT_ID, SimConfig, SimStatus};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

#[tokio::test]
async fn every_endpoint_rejects_missing_or_wrong_token() {
    let sim = sim(config()).await;
    let http = client();
    let base = sim.vps_rest_url();
    let endpoints = [
        (Method::GET, "account/me/"),
        (Method::GET, "snapshots/?server_id=100"),
        (Method::POST, "snapshots/"),
        (Method::POST, "snapshots/801/restore/"),
        (Method::DELETE, "snapshots/801/"),
        (Method::GET, "backups/"),
        (Method::POST, "backups/"),
        (Method::DELETE, "backups/501/"),
        (Method::POST, "servers/100/restore/"),
    ];
    for (method, path) in endpoints {
        let url = format!("{base}{path}");
        let none = http
            .request(method.clone(), &url)
            .send()
            .await
            .expect("send");
        assert_eq!(none.status(), StatusCode::UNAUTHORIZED, "{method} {path}");
        let wrong = http
            .request(method.clone(), &url)
            .bearer_auth("not-the-token")
            .json(&json!({ "server_id": S1, "name": "x" }))
            .send()
            .await
            .expect("send");
        assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED, "{method} {path}");
        assert!(wrong.headers().contains_key("www-authenticate"));
    }
    assert!(sim.snapshots(S1).is_empty(), "nothing done without auth");

    let me = Vps::new(&sim).get("account/me/").await.expect("me");
    assert_eq!(me.status(), StatusCode::OK);
    let text = me.text().await.expect("body");
    let body: Value = serde_json::from_str(&text).expect("json");
    assert!(body["token"]["name"].is_string());
    assert!(!text.contains(TOKEN), "the profile never echoes the secret");
    sim.shutdown().await;
}

#[tokio::test]
async fn create_is_in_progress_then_completed_after_the_delay() {
    let sim = sim(config()).await;
    let vps = Vps::new(&sim);
    let resp = vps
        .post(
            "snapshots/",
            Some(json!({ "server_id": S1, "name": "pre-migration_1", "description": "Before" })),
        )
        .await
        .expect("create");
    assert_eq!(resp.status(), StatusCode::CREATED);
    let created: Value = resp.json().await.expect("json");
    assert_eq!(created["id"].as_u64(), Some(FIRST_SNAPSHOT_ID));
    assert_eq!(created["status"], "in_progress");
    assert!(created["size_mb"].is_null());
    assert!(created["message"].as_str().is_some_and(|m| !m.is_empty()));
    assert_eq!(created["server"], json!({ "id": S1, "name": "server-100" }));
    assert_eq!(created["description"], "Before");
    let created_at = created["created_at"].as_str().expect("created_at");
    assert!(
        created_at.parse::<jiff::Timestamp>().is_ok(),
        "{created_at}"
    );
    assert!(created_at.ends_with('Z'));

    let listed = vps.snapshots(S1).await;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["status"], "in_progress");
    assert!(listed[0].get("message").is_none(), "message only on create");

    settle().await;
    let listed = vps.snapshots(S1).await;
    assert_eq!(listed[0]["status"], "completed");
    assert!(listed[0]["size_mb"].as_u64().is_some_and(|mb| mb > 0));
    assert_eq!(sim.snapshots(S1)[0].status, SimStatus::Completed);

    // Without a description the field is simply absent.
    let bare: Value = vps
        .create_snapshot(S1, "bare")
        .await
        .expect("create")
        .json()
        .await
        .expect("json");
    assert!(bare.get("description").is_none());
    assert_eq!(bare["id"].as_u64(), Some(FIRST_SNAPSHOT_ID + 1));
    sim.shutdown().await;
}

#[tokio::test]
async fn zero_create_delay_completes_at_once() {
    let sim = sim(SimConfig {
        create_delay: std::time::Duration::ZERO,
        ..config()
    })
    .await;
    let vps = Vps::new(&sim);
    vps.create_snapshot(S1, "instant").await.expect("create");
    assert_eq!(vps.snapshots(S1).await[0]["status"], "completed");
    sim.shutdown().await;
}

#[tokio::test]
async fn create_validation_and_unknown_server() {
    let sim = sim(config()).await;
    let vps = Vps::new(&sim);
    let cases = [
        (json!({ "server_id": S1 }), "name"),
        (json!({ "server_id": S1, "name": "" }), "name"),
        (json!({ "server_id": S1, "name": "has space" }), "name"),
        (json!({ "server_id": S1, "name": "dot.ted" }), "name"),
        (json!({ "server_id": S1, "name": "x".repeat(256) }), "name"),
        (json!({ "name": "ok" }), "server_id"),
        (json!({ "server_id": "100", "name": "ok" }), "server_id"),
        (
            json!({ "server_id": S1, "name": "ok", "description": 5 }),
            "description",
        ),
    ];
    for (body, field) in cases {
        let resp = vps
            .post("snapshots/", Some(body.clone()))
            .await
            .expect("send");
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST, "{body}");
        let err: Value = resp.json().await.expect("json");
        assert!(err[field].is_array(), "{body} -> {err}");
    }
    let resp = vps.create_snapshot(999, "ok").await.expect("send");
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);

    let resp = vps
        .http
        .post(format!("{}snapshots/", vps.base))
        .bearer_auth(TOKEN)
        .body(r#"{"server_id": 100, "name": "ok"}"#)
        .header("content-type", "text/plain")
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert!(sim.snapshots(S1).is_empty());
    sim.shutdown().await;
}

#[tokio::test]
async fn sixth_snapshot_hits_the_limit_counting_in_progress_and_foreign() {
    let sim = sim(SimConfig {
        create_delay: std::time::Duration::from_secs(60),
        ..config()
    })
    .await;
    let vps = Vps::new(&sim);
    sim.add_foreign_snapshot(S1, "someone-elses", false);
    for i in 0..4 {
        let resp = vps
            .create_snapshot(S1, &format!("s{i}"))
            .await
            .expect("send");
        assert_eq!(resp.status(), StatusCode::CREATED);
    }
    let resp = vps.create_snapshot(S1, "sixth").await.expect("send");
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    let body: Value = resp.json().await.expect("json");
    assert!(
        body["detail"]
            .as_str()
            .is_some_and(|d| d.to_lowercase().contains("limit")),
        "{body}"
    );
    // Another server is unaffected.
    let resp = vps.create_snapshot(S2, "other").await.expect("send");
    assert_eq!(resp.status(), StatusCode::CREATED);

    let record = sim.record();
    assert_eq!(record.servers[&S1].snapshot_limit_rejections, 1);
    assert_eq!(record.servers[&S1].snapshots_high_water, 5);
    assert_eq!(sim.snapshots(S1).len(), 5);
    sim.shutdown().await;
}

#[tokio::test]
async fn delete_then_404_and_slashless_paths_are_404() {
    let sim = sim(config()).await;
    let vps = Vps::new(&sim);
    let created: Value = vps
        .create_snapshot(S1, "doomed")
        .await
        .expect("create")
        .json()
        .await
        .expect("json");
    let id = created["id"].as_u64().expect("id");

    let slashless = vps.delete(&format!("snapshots/{id}")).await.expect("send");
    assert_eq!(slashless.status(), StatusCode::NOT_FOUND);
    assert_eq!(sim.snapshots(S1).len(), 1, "slash-less path did nothing");
    let slashless = vps.get("snapshots?server_id=100").await.expect("send");
    assert_eq!(slashless.status(), StatusCode::NOT_FOUND);
    assert_eq!(sim.calls().get("vps_rest.unmatched"), Some(&2));

    let resp = vps.delete(&format!("snapshots/{id}/")).await.expect("send");
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    assert!(resp.bytes().await.expect("body").is_empty());
    let again = vps.delete(&format!("snapshots/{id}/")).await.expect("send");
    assert_eq!(again.status(), StatusCode::NOT_FOUND);
    let junk = vps.delete("snapshots/abc/").await.expect("send");
    assert_eq!(junk.status(), StatusCode::NOT_FOUND);
    assert!(vps.snapshots(S1).await.is_empty());
    sim.shutdown().await;
}

#[tokio::test]
async fn restore_requires_completed_snapshot_and_running_server() {
    let sim = sim(config()).await;
    let vps = Vps::new(&sim);
    let created: Value = vps
        .create_snapshot(S1, "point")
        .await
        .expect("create")
        .json()
        .await
        .expect("json");
    let id = created["id"].as_u64().expect("id");
    let path = format!("snapshots/{id}/restore/");

    let early = vps.post(&path, None).await.expect("send");
    assert_eq!(early.status(), StatusCode::BAD_REQUEST, "not completed yet");

    settle().await;
    let resp = vps.post(&path, None).await.expect("send");
    assert_eq!(resp.status(), StatusCode::OK);
    let body: Value = resp.json().await.expect("json");
    assert_eq!(body["status"], "success");
    assert_eq!(body["snapshot"]["id"].as_u64(), Some(id));
    assert_eq!(body["snapshot"]["name"], "point");
    assert!(body["snapshot"]["created_at"].is_string());
    assert_eq!(
        body["server"],
        json!({ "id": S1, "name": "server-100", "status": "restoring" })
    );
    assert_eq!(sim.servers()[0].status, "restoring");

    let twice = vps.post(&path, None).await.expect("send");
    assert_eq!(twice.status(), StatusCode::BAD_REQUEST, "already restoring");

    tokio::time::sleep(DELAY * 2).await;
    assert_eq!(sim.servers()[0].status, "running");
    let missing = vps
        .post("snapshots/9999/restore/", None)
        .await
        .expect("send");
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);

    let restores = sim.record().restores;
    let accepted: Vec<bool> = restores.iter().map(|r| r.accepted).collect();
    assert_eq!(accepted, vec![false, true, false, false]);
    assert_eq!(restores[1].server, Some(S1));
    assert_eq!(restores[1].object_id, id);
    assert_eq!(restores[3].server, None);
    sim.shutdown().await;
}

#[tokio::test]
async fn backups_lifecycle_filters_limit_and_server_restore() {
    let sim = sim(SimConfig {
        auto_backups: 2,
        backup_limit: 3,
        ..config()
    })
    .await;
    let vps = Vps::new(&sim);
    let autos: Value = vps
        .get("backups/?server_id=100&backup_type=automatic")
        .await
        .expect("list")
        .json()
        .await
        .expect("json");
    assert_eq!(autos["count"], 2);
    for b in autos["results"].as_array().expect("results") {
        assert_eq!(b["backup_type"], "automatic");
        assert_eq!(b["status"], "completed");
        assert!(b["expires_at"].is_string());
    }
    let auto_id = autos["results"][0]["id"].as_u64().expect("id");

    let resp = vps
        .post(
            "backups/",
            Some(json!({ "server_id": S1, "description": "Pre-update backup" })),
        )
        .await
        .expect("send");
    assert_eq!(resp.status(), StatusCode::CREATED);
    let manual: Value = resp.json().await.expect("json");
    assert_eq!(manual["backup_type"], "manual");
    assert_eq!(manual["status"], "in_progress");
    assert!(manual["size_mb"].is_null());
    assert!(manual["expires_at"].is_null());
    assert!(manual["message"].is_string());
    let manual_id = manual["id"].as_u64().expect("id");

    let full = vps
        .post("backups/", Some(json!({ "server_id": S1 })))
        .await
        .expect("send");
    assert_eq!(
        full.status(),
        StatusCode::BAD_REQUEST,
        "3 backups is the limit"
    );
    let unknown = vps
        .post("backups/", Some(json!({ "server_id": 999 })))
        .await
        .expect("send");
    assert_eq!(unknown.status(), StatusCode::NOT_FOUND);
    let bad_type = vps.get("backups/?backup_type=weekly").await.expect("send");
    assert_eq!(bad_type.status(), StatusCode::BAD_REQUEST);

    let manuals: Value = vps
        .get("backups/?server_id=100&backup_type=manual")
        .await
        .expect("list")
        .json()
        .await
        .expect("json");
    assert_eq!(manuals["count"], 1);

    // Server restore from a backup.
    let early = vps
        .post(
            "servers/100/restore/",
            Some(json!({ "backup_id": manual_id })),
        )
        .await
        .expect("send");
    assert_eq!(
        early.status(),
        StatusCode::BAD_REQUEST,
        "backup still in progress"
    );
    let wrong_server = vps
        .post(
            "servers/200/restore/",
            Some(json!({ "backup_id": auto_id })),
        )
        .await
        .expect("send");
    assert_eq!(wrong_server.status(), StatusCode::BAD_REQUEST);
    let no_body = vps.post("servers/100/restore/", None).await.expect("send");
    assert_eq!(no_body.status(), StatusCode::BAD_REQUEST);
    let no_backup = vps
        .post("servers/100/restore/", Some(json!({ "backup_id": 1 })))
        .await
        .expect("send");
    assert_eq!(no_backup.status(), StatusCode::NOT_FOUND);
    let no_server = vps
        .post(
            "servers/999/restore/",
            Some(json!({ "backup_id": auto_id })),
        )
        .await
        .expect("send");
    assert_eq!(no_server.status(), StatusCode::NOT_FOUND);
    let ok = vps
        .post(
            "servers/100/restore/",
            Some(json!({ "backup_id": auto_id })),
        )
        .await
        .expect("send");
    assert_eq!(ok.status(), StatusCode::OK);
    let body: Value = ok.json().await.expect("json");
    assert_eq!(body["server"]["status"], "restoring");
    let busy = vps
        .post(
            "servers/100/restore/",
            Some(json!({ "backup_id": auto_id })),
        )
        .await
        .expect("send");
    assert_eq!(busy.status(), StatusCode::BAD_REQUEST);

    let del = vps
        .delete(&format!("backups/{manual_id}/"))
        .await
        .expect("send");
    assert_eq!(del.status(), StatusCode::NO_CONTENT);
    let gone = vps
        .delete(&format!("backups/{manual_id}/"))
        .await
        .expect("send");
    assert_eq!(gone.status(), StatusCode::NOT_FOUND);
    assert_eq!(sim.backups(S1).len(), 2);
    assert_eq!(sim.backups(S2).len(), 2);
    sim.shutdown().await;
}

#[tokio::test]
async fn lists_filter_by_server_in_creation_order() {
    let sim = sim(config()).await;
    let vps = Vps::new(&sim);
    for (server, name) in [(S1, "a"), (S2, "b"), (S1, "c")] {
        vps.create_snapshot(server, name).await.expect("create");
    }
    let names: Vec<String> = vps
        .snapshots(S1)
        .await
        .iter()
        .map(|s| s["name"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(names, ["a", "c"]);
    let all: Value = vps
        .get("snapshots/")
        .await
        .expect("list")
        .json()
        .await
        .expect("json");
    assert_eq!(all["count"], 3);
    let bad = vps.get("snapshots/?server_id=abc").await.expect("send");
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
    sim.shutdown().await;
}
