//! The knobs that model what real providers do: held create answers, late list visibility,
//! truncated descriptions, deletes that linger, partial lists; and the caller recorded with
//! every call.

use super::support::{
    PASSWORD, S1, S2, USER, Vps, Zomro, client, client_with_timeout, config, error_type,
    json as json_of, sim, val,
};
use crate::sim::{Faults, SimConfig, SimHandle};
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

/// Far longer than any test waits: a condition met while this runs proves "not yet".
const LONG: Duration = Duration::from_secs(3600);
/// How long a test waits for something that must happen.
const PATIENCE: Duration = Duration::from_secs(20);

fn with_faults(faults: Faults) -> SimConfig {
    SimConfig { faults, ..config() }
}

async fn list(vps: &Vps, path: &str) -> Value {
    json_of(vps.get(path).await).await
}

fn ids(body: &Value) -> Vec<u64> {
    body["results"]
        .as_array()
        .expect("results")
        .iter()
        .filter_map(|s| s["id"].as_u64())
        .collect()
}

/// Polls an API answer until `done` holds (the simulator advances statuses with time, not
/// with events, so there is nothing to be notified of).
async fn eventually<F, Fut>(mut probe: F, done: impl Fn(&Value) -> bool) -> Value
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Value>,
{
    let deadline = Instant::now() + PATIENCE;
    loop {
        let v = probe().await;
        if done(&v) || Instant::now() > deadline {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_held_create_exists_at_once_and_its_answer_comes_later() {
    let hold = Duration::from_millis(600);
    let sim = sim(SimConfig {
        snapshot_limit: 1,
        ..with_faults(Faults {
            hold_create_rate: 1.0,
            hold_create_for: hold,
            ..Faults::default()
        })
    })
    .await;
    let vps = Vps::new(&sim);
    let started = Instant::now();
    let pending = tokio::spawn({
        let vps = Vps::new(&sim);
        async move { vps.create_snapshot(S1, "held").await }
    });
    assert!(
        sim.wait_for(PATIENCE, |s| s.held_answers() == 1).await,
        "the answer is held"
    );
    // Performed already: listed, counted against the limit, recorded as held.
    assert_eq!(ids(&list(&vps, "snapshots/?server_id=100").await).len(), 1);
    let state = json_of(
        client()
            .get(format!("{}state", sim.inspect_url()))
            .send()
            .await,
    )
    .await;
    assert_eq!(state["held_answers"], 1);
    assert_eq!(state["held"][0]["endpoint"], "vps_rest.snapshots.create");
    let record = sim.record();
    assert_eq!(record.creates.len(), 1);
    assert_eq!(record.creates[0].answer_held_ms, Some(600));
    sim.set_faults(Faults::default());
    let refused = vps.create_snapshot(S1, "second").await.expect("send");
    assert_eq!(refused.status(), StatusCode::BAD_REQUEST, "limit counts it");

    let answer = pending.await.expect("join").expect("answered");
    assert_eq!(answer.status(), StatusCode::CREATED);
    assert!(started.elapsed() >= hold);
    assert!(sim.wait_for(PATIENCE, |s| s.held_answers() == 0).await);
    assert_eq!(sim.faults_injected().get("hold_create"), Some(&1));
    sim.shutdown().await;
}

#[tokio::test]
async fn a_held_answer_is_released_when_the_client_gives_up_and_zomro_holds_too() {
    let sim = sim(with_faults(Faults {
        hold_create_rate: 1.0,
        hold_create_for: LONG,
        ..Faults::default()
    }))
    .await;
    let impatient = Vps::with_client(&sim, client_with_timeout(Duration::from_millis(300)));
    let err = impatient
        .post("backups/", Some(json!({ "server_id": S1 })))
        .await
        .expect_err("held past the client's timeout");
    assert!(err.is_timeout(), "{err}");
    assert_eq!(sim.backups(S1).len(), 1, "performed all the same");
    assert!(sim.wait_for(PATIENCE, |s| s.held_answers() == 0).await);

    // Zomro: the create is listed while its answer waits.
    let z = Zomro {
        http: client_with_timeout(Duration::from_millis(300)),
        url: sim.zomro_url(),
    };
    let authinfo = format!("{USER}:{PASSWORD}");
    let server = S2.to_string();
    let held = z
        .raw(&[
            ("func", "instances.snapshots.edit"),
            ("plid", &server),
            ("name", "zheld"),
            ("sok", "ok"),
            ("authinfo", &authinfo),
            ("out", "json"),
        ])
        .await;
    assert!(held.is_err_and(|e| e.is_timeout()));
    assert_eq!(sim.snapshots(S2).len(), 1);
    assert_eq!(sim.record().creates[1].answer_held_ms, Some(3_600_000));
    sim.shutdown().await;
}

#[tokio::test]
async fn young_objects_count_against_the_limit_before_lists_show_them() {
    let sim = sim(SimConfig {
        snapshot_limit: 2,
        ..with_faults(Faults {
            visibility_delay: LONG,
            ..Faults::default()
        })
    })
    .await;
    let vps = Vps::new(&sim);
    for name in ["a", "b"] {
        let resp = vps.create_snapshot(S1, name).await.expect("create");
        assert_eq!(resp.status(), StatusCode::CREATED);
    }
    let resp = vps
        .post("backups/", Some(json!({ "server_id": S1 })))
        .await
        .expect("create");
    assert_eq!(resp.status(), StatusCode::CREATED);
    let body = list(&vps, "snapshots/?server_id=100").await;
    assert!(ids(&body).is_empty(), "{body}");
    assert_eq!(body["count"], 0, "the list's own total");
    assert!(ids(&list(&vps, "backups/?server_id=100").await).is_empty());
    let full = vps.create_snapshot(S1, "c").await.expect("send");
    assert_eq!(full.status(), StatusCode::BAD_REQUEST);
    assert_eq!(sim.record().servers[&S1].snapshot_limit_rejections, 1);
    assert_eq!(sim.snapshots(S1).len(), 2, "inspection shows the truth");

    // Zomro reads the same store.
    let z = Zomro::new(&sim);
    let session = z.login().await;
    z.create(S2, "zyoung", &session, true).await;
    let body = z.list(S2, &session).await;
    assert!(Zomro::elems(&body).is_empty(), "{body}");
    assert_eq!(val(&body["doc"], "p_elems"), "0");

    // The delay is read when listing: shortened, every object older than it shows.
    let delay = Duration::from_millis(300);
    sim.set_faults(Faults {
        visibility_delay: delay,
        ..Faults::default()
    });
    let young = Instant::now();
    vps.create_snapshot(S2, "late").await.expect("create");
    let body = eventually(|| z.list(S2, &session), |b| Zomro::elems(b).len() == 2).await;
    assert_eq!(Zomro::elems(&body).len(), 2, "{body}");
    assert!(young.elapsed() >= delay);
    assert_eq!(ids(&list(&vps, "snapshots/?server_id=100").await).len(), 2);
    sim.shutdown().await;
}

#[tokio::test]
async fn descriptions_are_stored_cut_and_the_record_keeps_what_was_sent() {
    let sim = sim(with_faults(Faults {
        description_max_chars: Some(10),
        ..Faults::default()
    }))
    .await;
    let vps = Vps::new(&sim);
    let long = "nightly ünïcode [vpsnap:0123]";
    let created = json_of(
        vps.post(
            "snapshots/",
            Some(json!({ "server_id": S1, "name": "s", "description": long })),
        )
        .await,
    )
    .await;
    assert_eq!(created["description"], "nightly ün");
    vps.post(
        "backups/",
        Some(json!({ "server_id": S1, "description": long })),
    )
    .await
    .expect("create");
    vps.post(
        "backups/",
        Some(json!({ "server_id": S1, "description": "short" })),
    )
    .await
    .expect("create");
    let listed = list(&vps, "backups/?server_id=100").await;
    assert_eq!(listed["results"][0]["description"], "nightly ün");
    assert_eq!(listed["results"][1]["description"], "short");
    let record = sim.record();
    assert_eq!(record.creates[0].description.as_deref(), Some("nightly ün"));
    assert_eq!(
        record.creates[0].requested_description.as_deref(),
        Some(long)
    );
    assert_eq!(
        record.creates[1].requested_description.as_deref(),
        Some(long)
    );
    assert_eq!(record.creates[2].requested_description, None);
    sim.shutdown().await;
}

#[tokio::test]
async fn a_lingering_delete_is_listed_as_deleting_and_still_counts() {
    let sim = sim(SimConfig {
        snapshot_limit: 1,
        create_delay: Duration::ZERO,
        ..with_faults(Faults {
            delete_linger: LONG,
            ..Faults::default()
        })
    })
    .await;
    let vps = Vps::new(&sim);
    let id = vps.created_snapshot(S1, "old").await;
    let resp = vps.delete(&format!("snapshots/{id}/")).await.expect("del");
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    let body = list(&vps, "snapshots/?server_id=100").await;
    assert_eq!(body["results"][0]["status"], "deleting", "{body}");
    assert!(body["results"][0]["size_mb"].is_null());
    let again = vps.delete(&format!("snapshots/{id}/")).await.expect("del");
    assert_eq!(again.status(), StatusCode::NO_CONTENT, "idempotent");
    let refused = vps.create_snapshot(S1, "new").await.expect("send");
    assert_eq!(refused.status(), StatusCode::BAD_REQUEST, "still counted");
    let restore = vps
        .post(&format!("snapshots/{id}/restore/"), None)
        .await
        .expect("send");
    assert_eq!(restore.status(), StatusCode::BAD_REQUEST);
    let record = sim.record();
    assert_eq!(record.deletes.len(), 1, "recorded once, when accepted");
    assert_eq!(record.restores.len(), 1);
    assert!(!record.restores[0].accepted);

    // A short linger: listed as deleting, then gone; a delete after that is a 404.
    let linger = Duration::from_millis(300);
    sim.set_faults(Faults {
        delete_linger: linger,
        ..Faults::default()
    });
    let b = json_of(vps.post("backups/", Some(json!({ "server_id": S2 }))).await).await;
    let bid = b["id"].as_u64().expect("id");
    let deleted_at = Instant::now();
    let resp = vps.delete(&format!("backups/{bid}/")).await.expect("del");
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    let body = eventually(
        || list(&vps, "backups/?server_id=200"),
        |b| ids(b).is_empty(),
    )
    .await;
    assert!(ids(&body).is_empty(), "{body}");
    assert!(deleted_at.elapsed() >= linger);
    assert!(sim.backups(S2).is_empty());
    let gone = vps.delete(&format!("backups/{bid}/")).await.expect("del");
    assert_eq!(gone.status(), StatusCode::NOT_FOUND);
    assert_eq!(sim.record().deletes.len(), 2);
    sim.shutdown().await;
}

#[tokio::test]
async fn zomro_lists_pending_delete_and_accepts_a_second_delete() {
    let sim = sim(SimConfig {
        create_delay: Duration::ZERO,
        ..with_faults(Faults {
            delete_linger: LONG,
            ..Faults::default()
        })
    })
    .await;
    let z = Zomro::new(&sim);
    let session = z.login().await;
    z.create(S1, "doomed", &session, true).await;
    let id = val(&Zomro::elems(&z.list(S1, &session).await)[0], "id");
    for _ in 0..2 {
        let body = z.delete(S1, &id, &session, true).await;
        assert!(error_type(&body).is_none(), "{body}");
        assert!(body["doc"]["ok"].is_object(), "{body}");
    }
    let elems = Zomro::elems(&z.list(S1, &session).await);
    assert_eq!(val(&elems[0], "fleio_status"), "Pending_delete");
    assert_eq!(sim.record().deletes.len(), 1);
    sim.shutdown().await;
}

#[tokio::test]
async fn partial_lists_report_the_true_total() {
    let sim = sim(with_faults(Faults {
        partial_lists: Some(2),
        ..Faults::default()
    }))
    .await;
    let vps = Vps::new(&sim);
    for i in 0..4 {
        vps.create_snapshot(S1, &format!("s{i}"))
            .await
            .expect("create");
    }
    let body = list(&vps, "snapshots/?server_id=100").await;
    assert_eq!(body["count"], 4);
    assert_eq!(ids(&body).len(), 2);
    let z = Zomro::new(&sim);
    let session = z.login().await;
    let first = z.list_page(S1, &session, 1000, 1).await;
    assert_eq!(Zomro::elems(&first).len(), 2);
    assert_eq!(val(&first["doc"], "p_elems"), "4");
    assert_eq!(val(&first["doc"], "p_cnt"), "2");
    let second = z.list_page(S1, &session, 1000, 2).await;
    let names: Vec<String> = Zomro::elems(&second)
        .iter()
        .map(|e| val(e, "name"))
        .collect();
    assert_eq!(names, ["s2", "s3"], "the rest is on the next page");
    assert_eq!(sim.faults_injected().get("partial_list"), Some(&3));
    sim.set_faults(Faults::default());
    assert_eq!(ids(&list(&vps, "snapshots/?server_id=100").await).len(), 4);
    sim.shutdown().await;
}

fn agent(n: u32) -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .user_agent(format!("vpsnap/test (replica-{n})"))
        .build()
        .expect("client")
}

#[tokio::test]
async fn every_call_is_logged_with_its_user_agent_and_time() {
    let sim: SimHandle = sim(SimConfig {
        create_delay: Duration::ZERO,
        ..config()
    })
    .await;
    let one = Vps::with_client(&sim, agent(1));
    let two = Vps::with_client(&sim, agent(2));
    let id = one.created_snapshot(S1, "s").await;
    two.post(&format!("snapshots/{id}/restore/"), None)
        .await
        .expect("restore");
    one.post("backups/", Some(json!({ "server_id": S1 })))
        .await
        .expect("backup");
    two.delete(&format!("snapshots/{id}/"))
        .await
        .expect("delete");

    let record = sim.record();
    let ua = |c: &crate::sim::Caller| c.user_agent.clone().unwrap_or_default();
    assert_eq!(ua(&record.creates[0].caller), "vpsnap/test (replica-1)");
    assert_eq!(ua(&record.restores[0].caller), "vpsnap/test (replica-2)");
    assert_eq!(ua(&record.creates[1].caller), "vpsnap/test (replica-1)");
    assert_eq!(ua(&record.deletes[0].caller), "vpsnap/test (replica-2)");
    let log = sim.call_log(0);
    assert_eq!(log.len(), 4);
    assert_eq!(
        log.iter().map(|c| c.endpoint.as_str()).collect::<Vec<_>>(),
        [
            "vps_rest.snapshots.create",
            "vps_rest.snapshots.restore",
            "vps_rest.backups.create",
            "vps_rest.snapshots.delete"
        ]
    );
    assert!(
        log.windows(2)
            .all(|w| w[0].at <= w[1].at && w[0].n + 1 == w[1].n)
    );
    assert_eq!(record.deletes[0].caller.call, Some(3));

    let tail = json_of(
        client()
            .get(format!("{}log?since=2", sim.inspect_url()))
            .send()
            .await,
    )
    .await;
    let tail = tail["calls"].as_array().expect("calls");
    assert_eq!(tail.len(), 2);
    assert_eq!(tail[0]["user_agent"], "vpsnap/test (replica-1)");
    assert_eq!(tail[1]["n"], 3);
    sim.shutdown().await;
}

#[tokio::test]
async fn behaviour_knobs_are_set_over_http() {
    let sim = sim(config()).await;
    let url = format!("{}faults", sim.inspect_url());
    let http = client();
    let resp = http
        .put(&url)
        .json(&json!({
            "hold_create_rate": 0.5, "hold_create_for": "20s", "visibility_delay": "3s",
            "description_max_chars": 40, "delete_linger": 1500, "partial_lists": 3
        }))
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), StatusCode::OK);
    let f = sim.faults();
    assert_eq!(f.hold_create_for, Duration::from_secs(20));
    assert_eq!(f.visibility_delay, Duration::from_secs(3));
    assert_eq!(f.description_max_chars, Some(40));
    assert_eq!(f.delete_linger, Duration::from_millis(1500));
    assert_eq!(f.partial_lists, Some(3));
    for bad in [
        json!({ "partial_lists": 0 }),
        json!({ "hold_create_rate": 1.5 }),
    ] {
        let resp = http.put(&url).json(&bad).send().await.expect("send");
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST, "{bad}");
    }
    sim.shutdown().await;
}
