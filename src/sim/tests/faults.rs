use super::support::{
    S1, TOKEN, Vps, Zomro, client, client_with_timeout, config, error_type, settle, sim, val,
};
use crate::sim::{Faults, SimConfig};
use reqwest::StatusCode;
use serde_json::json;
use std::time::{Duration, Instant};

async fn outcome(vps: &Vps) -> String {
    match vps.get("account/me/").await {
        Ok(r) => r.status().as_u16().to_string(),
        Err(e) => {
            assert!(!e.is_timeout(), "{e}");
            "dropped".into()
        }
    }
}

/// Forty probes then five creates, all sequential; returns what the client saw and the final
/// snapshot statuses.
async fn run(seed: u64) -> (Vec<String>, Vec<String>) {
    let sim = sim(SimConfig {
        seed,
        create_delay: Duration::ZERO,
        faults: Faults {
            error_5xx_rate: 0.25,
            rate_429: 0.25,
            drop_rate: 0.25,
            ..Faults::default()
        },
        ..config()
    })
    .await;
    let vps = Vps::new(&sim);
    let mut seen = Vec::new();
    for _ in 0..40 {
        seen.push(outcome(&vps).await);
    }
    sim.set_faults(Faults {
        fail_rate: 0.4,
        unknown_status_rate: 0.4,
        ..Faults::default()
    });
    for i in 0..5 {
        let resp = vps
            .create_snapshot(S1, &format!("s{i}"))
            .await
            .expect("create");
        assert_eq!(resp.status(), StatusCode::CREATED);
    }
    let statuses = vps
        .snapshots(S1)
        .await
        .iter()
        .map(|s| s["status"].as_str().unwrap_or_default().to_string())
        .collect();
    let injected = sim.faults_injected();
    let count = |k: &str| injected.get(k).copied().unwrap_or(0);
    let tally = |k: &str| seen.iter().filter(|s| s.as_str() == k).count() as u64;
    assert_eq!(count("error_5xx"), tally("503"));
    assert_eq!(count("rate_429"), tally("429"));
    assert_eq!(count("drop"), tally("dropped"));
    assert_eq!(sim.calls().get("vps_rest.account.me"), Some(&40));
    sim.shutdown().await;
    (seen, statuses)
}

#[tokio::test]
async fn same_seed_gives_the_same_fault_sequence() {
    let (a, a_status) = run(11).await;
    let (b, b_status) = run(11).await;
    assert_eq!(a, b);
    assert_eq!(a_status, b_status);
    for kind in ["200", "503", "429", "dropped"] {
        assert!(a.contains(&kind.to_string()), "{kind} never seen in {a:?}");
    }
    let (c, _) = run(12).await;
    assert_ne!(a, c, "another seed gives another sequence");
}

#[tokio::test]
async fn drop_closes_without_answer_and_does_nothing() {
    let sim = sim(SimConfig {
        faults: Faults {
            drop_rate: 1.0,
            ..Faults::default()
        },
        ..config()
    })
    .await;
    let vps = Vps::new(&sim);
    let err = vps.create_snapshot(S1, "never").await.expect_err("dropped");
    assert!(!err.is_timeout() && err.status().is_none(), "{err}");
    let zomro = Zomro::new(&sim);
    assert!(zomro.raw(&[("func", "auth")]).await.is_err());

    sim.set_faults(Faults::default());
    assert!(vps.snapshots(S1).await.is_empty());
    assert_eq!(sim.calls().get("vps_rest.snapshots.create"), Some(&1));
    assert_eq!(sim.calls().get("zomro.auth"), Some(&1));
    assert_eq!(sim.faults_injected().get("drop"), Some(&2));
    sim.shutdown().await;
}

#[tokio::test]
async fn dropped_connection_carries_not_a_single_byte() {
    let sim = sim(SimConfig {
        faults: Faults {
            drop_rate: 1.0,
            ..Faults::default()
        },
        ..config()
    })
    .await;
    let addr = sim.addr();
    // A raw socket shows what reqwest's error hides: EOF (or reset) with nothing before it.
    let received = tokio::task::spawn_blocking(move || {
        use std::io::{Read, Write};
        let mut stream = std::net::TcpStream::connect(addr).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        let request = format!(
            "GET /api/v1/account/me/ HTTP/1.1\r\nHost: sim\r\nAuthorization: Bearer {TOKEN}\r\n\r\n"
        );
        stream.write_all(request.as_bytes()).expect("write");
        let mut buf = Vec::new();
        match stream.read_to_end(&mut buf) {
            Ok(_) => buf,
            Err(e) => {
                assert_ne!(e.kind(), std::io::ErrorKind::WouldBlock, "never closed");
                assert_ne!(e.kind(), std::io::ErrorKind::TimedOut, "never closed");
                buf
            }
        }
    })
    .await
    .expect("join");
    assert!(
        received.is_empty(),
        "{}",
        String::from_utf8_lossy(&received)
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn lost_create_really_creates() {
    let sim = sim(SimConfig {
        faults: Faults {
            lost_create_rate: 1.0,
            ..Faults::default()
        },
        ..config()
    })
    .await;
    let vps = Vps::new(&sim);
    for i in 0..4 {
        match vps.create_snapshot(S1, &format!("lost-{i}")).await {
            Ok(resp) => assert_eq!(resp.status(), StatusCode::BAD_GATEWAY),
            Err(e) => assert!(!e.is_timeout(), "{e}"),
        }
    }
    let backup = vps.post("backups/", Some(json!({ "server_id": S1 }))).await;
    assert!(backup.is_err() || backup.is_ok_and(|r| r.status() == StatusCode::BAD_GATEWAY));

    let z = Zomro::new(&sim);
    // Non-create calls are untouched by the lost-create fault.
    let session = z.login().await;
    let server = S1.to_string();
    let lost = z
        .raw(&[
            ("func", "instances.snapshots.edit"),
            ("plid", &server),
            ("name", "zlost"),
            ("sok", "ok"),
            ("auth", &session),
            ("out", "json"),
        ])
        .await;
    assert!(lost.is_err() || lost.is_ok_and(|r| r.status() == StatusCode::BAD_GATEWAY));

    sim.set_faults(Faults::default());
    let names: Vec<String> = vps
        .snapshots(S1)
        .await
        .iter()
        .map(|s| s["name"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(names, ["lost-0", "lost-1", "lost-2", "lost-3", "zlost"]);
    assert_eq!(sim.backups(S1).len(), 1);
    let record = sim.record();
    assert_eq!(record.creates.len(), 6);
    assert!(record.creates.iter().all(|c| c.response_lost));
    assert_eq!(sim.faults_injected().get("lost_create"), Some(&6));
    sim.shutdown().await;
}

#[tokio::test]
async fn throttle_and_unavailable_answers() {
    let sim = sim(SimConfig {
        faults: Faults {
            rate_429: 1.0,
            retry_after_secs: 7,
            ..Faults::default()
        },
        ..config()
    })
    .await;
    let vps = Vps::new(&sim);
    let z = Zomro::new(&sim);
    let resp = vps.create_snapshot(S1, "x").await.expect("send");
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(resp.headers()["retry-after"], "7");
    let resp = z.raw(&[("func", "auth")]).await.expect("send");
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(resp.headers()["retry-after"], "7");

    sim.set_faults(Faults {
        error_5xx_rate: 1.0,
        ..Faults::default()
    });
    for resp in [
        vps.get("snapshots/").await.expect("send"),
        z.raw(&[("func", "auth"), ("out", "json")])
            .await
            .expect("send"),
    ] {
        assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(
            resp.headers()["content-type"]
                .to_str()
                .is_ok_and(|c| c.starts_with("text/html"))
        );
        assert!(resp.text().await.expect("body").contains("<html>"));
    }
    assert!(sim.snapshots(S1).is_empty());
    sim.shutdown().await;
}

#[tokio::test]
async fn timeout_holds_without_acting_and_shutdown_stays_quick() {
    let sim = sim(SimConfig {
        faults: Faults {
            timeout_rate: 1.0,
            ..Faults::default()
        },
        ..config()
    })
    .await;
    let vps = Vps::with_client(&sim, client_with_timeout(Duration::from_millis(300)));
    let err = vps.create_snapshot(S1, "slow").await.expect_err("held");
    assert!(err.is_timeout(), "{err}");
    assert!(sim.snapshots(S1).is_empty());
    assert_eq!(sim.faults_injected().get("timeout"), Some(&1));
    assert_eq!(sim.calls().get("vps_rest.snapshots.create"), Some(&1));

    // A request still held when shutting down must not delay it.
    let held = tokio::spawn({
        let vps = Vps::new(&sim);
        async move { vps.get("snapshots/").await.is_err() }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = Instant::now();
    sim.shutdown().await;
    assert!(started.elapsed() < Duration::from_secs(3));
    assert!(held.await.expect("join"), "held request closed unanswered");
}

#[tokio::test]
async fn fail_and_unknown_status_outcomes() {
    let sim = sim(SimConfig {
        faults: Faults {
            fail_rate: 1.0,
            ..Faults::default()
        },
        ..config()
    })
    .await;
    let vps = Vps::new(&sim);
    vps.create_snapshot(S1, "doomed").await.expect("create");
    sim.set_faults(Faults {
        unknown_status_rate: 1.0,
        ..Faults::default()
    });
    vps.create_snapshot(S1, "odd").await.expect("create");
    sim.set_faults(Faults::default());
    let listed = vps.snapshots(S1).await;
    assert!(listed.iter().all(|s| s["status"] == "in_progress"));
    settle().await;
    let listed = vps.snapshots(S1).await;
    assert_eq!(listed[0]["status"], "failed");
    assert!(listed[0]["size_mb"].is_null());
    let odd = listed[1]["status"].as_str().expect("status");
    assert!(
        ["archiving", "error", "deactivated"].contains(&odd),
        "{odd}"
    );

    let z = Zomro::new(&sim);
    let session = z.login().await;
    let elems = Zomro::elems(&z.list(S1, &session).await);
    assert_eq!(val(&elems[0], "fleio_status"), "Killed");
    assert!(val(&elems[1], "fleio_status").eq_ignore_ascii_case(odd));
    let injected = sim.faults_injected();
    assert_eq!(injected.get("fail"), Some(&1));
    assert_eq!(injected.get("unknown_status"), Some(&1));
    sim.shutdown().await;
}

#[tokio::test]
async fn shuffled_lists_keep_their_content() {
    let sim = sim(SimConfig {
        auto_backups: 8,
        faults: Faults {
            shuffle_lists: true,
            ..Faults::default()
        },
        ..config()
    })
    .await;
    let vps = Vps::new(&sim);
    let mut orders = Vec::new();
    for _ in 0..5 {
        let body: serde_json::Value = vps
            .get("backups/?server_id=100")
            .await
            .expect("list")
            .json()
            .await
            .expect("json");
        let ids: Vec<u64> = body["results"]
            .as_array()
            .expect("results")
            .iter()
            .filter_map(|b| b["id"].as_u64())
            .collect();
        let mut sorted = ids.clone();
        sorted.sort_unstable();
        assert_eq!(
            sorted,
            sim.backups(S1).iter().map(|b| b.id).collect::<Vec<_>>()
        );
        orders.push(ids != sorted);
    }
    assert!(orders.iter().any(|shuffled| *shuffled));
    assert_eq!(sim.faults_injected().get("shuffle"), Some(&5));
    sim.shutdown().await;
}

#[tokio::test]
async fn latency_delays_api_but_not_inspection() {
    let sim = sim(SimConfig {
        faults: Faults {
            latency: Duration::from_millis(150),
            error_5xx_rate: 1.0,
            ..Faults::default()
        },
        ..config()
    })
    .await;
    let vps = Vps::new(&sim);
    let started = Instant::now();
    let resp = vps.get("account/me/").await.expect("send");
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(started.elapsed() >= Duration::from_millis(150));

    let http = client();
    for path in ["state", "calls", "record", "faults"] {
        let resp = http
            .get(format!("{}{path}", sim.inspect_url()))
            .send()
            .await
            .expect("send");
        assert_eq!(resp.status(), StatusCode::OK, "{path}");
    }
    // Only the API request was delayed and failed; inspection answered normally.
    assert_eq!(sim.faults_injected().get("latency"), Some(&1));
    assert_eq!(sim.faults_injected().get("error_5xx"), Some(&1));
    sim.shutdown().await;
}

#[tokio::test]
async fn faults_can_be_replaced_over_http() {
    let sim = sim(config()).await;
    let http = client();
    let url = format!("{}faults", sim.inspect_url());
    for bad in [json!({ "drop_rate": 2.0 }), json!({ "dropp_rate": 0.1 })] {
        let resp = http.put(&url).json(&bad).send().await.expect("send");
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST, "{bad}");
    }
    let resp = http
        .put(&url)
        .json(&json!({ "rate_429": 1.0, "retry_after_secs": 3, "latency": "10ms" }))
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(sim.faults().rate_429, 1.0);
    assert_eq!(sim.faults().latency, Duration::from_millis(10));
    let z = Zomro::new(&sim);
    let resp = z.raw(&[("func", "auth")]).await.expect("send");
    assert_eq!(resp.headers()["retry-after"], "3");

    let resp = http.put(&url).json(&json!({})).send().await.expect("send");
    assert_eq!(resp.status(), StatusCode::OK);
    let body = z.call(&[("func", "auth")]).await;
    assert_eq!(error_type(&body).as_deref(), Some("auth"));
    sim.shutdown().await;
}
