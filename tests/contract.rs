//! Contract tests: the real provider clients against the independently written simulator,
//! over real HTTP on 127.0.0.1, for every operation and every documented status code. A
//! misreading of docs/providers.md by either side shows up here.
use std::sync::Arc;
use std::time::{Duration, Instant};

use vpsnap::provider::{
    BackupKind, Credentials, NoopObserver, ProviderClient, ProviderConfig, ProviderError,
    ProviderKind, RemoteState, Secret,
};
use vpsnap::sim::{self, Faults, SimConfig, SimHandle};

async fn sim(config: SimConfig) -> SimHandle {
    sim::start(config, "127.0.0.1:0".parse().unwrap())
        .await
        .expect("simulator")
}

fn config(endpoint: String, credentials: Credentials) -> ProviderConfig {
    ProviderConfig {
        endpoint,
        credentials,
        requests_per_second: 200,
        burst: 200,
        max_in_flight: 8,
        request_timeout: Duration::from_secs(5),
        snapshot_limit: 5,
        backup_limit: 10,
        fence: None,
    }
}

fn rest(s: &SimHandle, token: &str) -> ProviderClient {
    let c = config(
        s.vps_rest_url(),
        Credentials::Bearer {
            token: Secret::new(token),
        },
    );
    ProviderClient::new(ProviderKind::VpsRest, c, Arc::new(NoopObserver)).unwrap()
}

fn zomro(s: &SimHandle, user: &str, password: &str, session: bool) -> ProviderClient {
    let c = config(
        s.zomro_url(),
        Credentials::Login {
            username: Secret::new(user),
            password: Secret::new(password),
            session,
        },
    );
    ProviderClient::new(ProviderKind::Zomro, c, Arc::new(NoopObserver)).unwrap()
}

fn base() -> SimConfig {
    SimConfig {
        servers: vec![12345, 5203773],
        create_delay: Duration::from_millis(150),
        restore_delay: Duration::from_millis(150),
        ..SimConfig::default()
    }
}

async fn until_ready<F, Fut>(mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while !check().await {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "object never completed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vps_rest_snapshots_every_operation_and_status() {
    let s = sim(base()).await;
    let c = rest(&s, "sim-token");
    c.check_credentials().await.expect("200 account/me");
    assert!(
        matches!(
            rest(&s, "wrong").check_credentials().await,
            Err(ProviderError::Auth(_))
        ),
        "401"
    );

    // 201 create: in progress with no size, then completed with a size in the list.
    let created = c
        .create_snapshot(
            12345,
            "pre-migration-snapshot",
            Some("Before major migration"),
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(created.state, RemoteState::Pending);
    assert_eq!(created.size_mb, None);
    until_ready(|| async {
        c.list_snapshots(12345).await.unwrap().items[0].state == RemoteState::Ready
    })
    .await;
    let listing = c.list_snapshots(12345).await.unwrap();
    assert!(listing.complete);
    let snap = &listing.items[0];
    assert_eq!(
        (snap.name.as_str(), snap.description.as_deref()),
        ("pre-migration-snapshot", Some("Before major migration"))
    );
    assert!(snap.size_mb.unwrap() > 0 && snap.created_at.is_some());
    assert_eq!(snap.raw_status, "completed");

    // 404: unknown server on create; unknown snapshot on delete and restore.
    assert!(matches!(
        c.create_snapshot(999, "x", None).await,
        Err(ProviderError::NotFound(_))
    ));
    assert!(matches!(
        c.delete_snapshot(12345, "424242").await,
        Err(ProviderError::NotFound(_))
    ));
    assert!(matches!(
        c.restore_snapshot(12345, "424242").await,
        Err(ProviderError::NotFound(_))
    ));
    // 400 invalid parameters (told apart from the limit by re-listing).
    assert!(matches!(
        c.create_snapshot(12345, "bad name", None).await,
        Err(ProviderError::InvalidRequest(_))
    ));

    // 200 restore; 400 while the server is restoring.
    c.restore_snapshot(12345, &snap.id)
        .await
        .expect("restore accepted");
    assert!(matches!(
        c.restore_snapshot(12345, &snap.id).await,
        Err(ProviderError::InvalidState(_))
    ));
    assert_eq!(s.record().restores.iter().filter(|r| r.accepted).count(), 1);

    // 400 on the 6th snapshot → LimitReached.
    for i in 0..4 {
        c.create_snapshot(12345, &format!("s{i}"), None)
            .await
            .unwrap();
    }
    assert!(matches!(
        c.create_snapshot(12345, "sixth", None).await,
        Err(ProviderError::LimitReached(_))
    ));

    // 204 delete, then 404.
    c.delete_snapshot(12345, &snap.id).await.unwrap();
    assert!(matches!(
        c.delete_snapshot(12345, &snap.id).await,
        Err(ProviderError::NotFound(_))
    ));
    assert!(matches!(
        rest(&s, "wrong").list_snapshots(12345).await,
        Err(ProviderError::Auth(_))
    ));
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vps_rest_backups_and_restore_from_backup() {
    let s = sim(SimConfig {
        auto_backups: 2,
        ..base()
    })
    .await;
    let c = rest(&s, "sim-token");
    let listing = c.list_backups(12345).await.unwrap();
    assert_eq!(listing.items.len(), 2);
    assert!(
        listing
            .items
            .iter()
            .all(|b| b.kind == BackupKind::Automatic && b.expires_at.is_some())
    );
    let b = c
        .create_backup(12345, Some("Pre-update backup"))
        .await
        .unwrap();
    assert_eq!(
        (b.kind, b.expires_at, b.state.clone()),
        (BackupKind::Manual, None, RemoteState::Pending)
    );
    until_ready(|| async {
        c.list_backups(12345)
            .await
            .unwrap()
            .items
            .iter()
            .any(|x| x.id == b.id && x.state == RemoteState::Ready)
    })
    .await;
    c.restore_backup(12345, &b.id)
        .await
        .expect("restore from backup accepted");
    assert!(matches!(
        c.restore_backup(999, &b.id).await,
        Err(ProviderError::NotFound(_))
    ));
    assert!(matches!(
        c.create_backup(999, None).await,
        Err(ProviderError::NotFound(_))
    ));
    c.delete_backup(12345, &b.id).await.unwrap();
    assert!(matches!(
        c.delete_backup(12345, &b.id).await,
        Err(ProviderError::NotFound(_))
    ));
    // 10 backups (automatic included) → the 11th is refused as the limit.
    for _ in 0..8 {
        c.create_backup(12345, None).await.unwrap();
    }
    assert!(matches!(
        c.create_backup(12345, None).await,
        Err(ProviderError::LimitReached(_))
    ));
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zomro_session_authinfo_quirks_and_protection() {
    let s = sim(SimConfig {
        session_idle: Duration::from_millis(300),
        ..base()
    })
    .await;
    s.set_faults(Faults {
        zomro_quirky_elem: true,
        ..Faults::default()
    });
    for session in [true, false] {
        let c = zomro(&s, "sim", "sim-password", session);
        c.check_credentials().await.expect("login");
        assert!(!c.capabilities().backups && !c.capabilities().snapshot_restore);
        assert!(matches!(
            c.create_backup(5203773, None).await,
            Err(ProviderError::Unsupported(_))
        ));
        assert!(matches!(
            c.restore_snapshot(5203773, "1").await,
            Err(ProviderError::Unsupported(_))
        ));
    }
    assert!(matches!(
        zomro(&s, "sim", "nope", true).check_credentials().await,
        Err(ProviderError::Auth(_))
    ));
    let calls_before = s.calls().values().sum::<u64>();
    let _ = zomro(&s, "sim", "nope", true).create_backup(1, None).await;
    assert_eq!(
        s.calls().values().sum::<u64>(),
        calls_before,
        "unsupported operations make no HTTP call"
    );

    let c = zomro(&s, "sim", "sim-password", true);
    // Empty list arrives as {} or absent; one element as a bare object.
    assert!(c.list_snapshots(5203773).await.unwrap().items.is_empty());
    let made = c
        .create_snapshot(5203773, "MySnapshot", None)
        .await
        .unwrap()
        .expect("found by name after create");
    assert_eq!(made.name, "MySnapshot");
    until_ready(|| async {
        c.list_snapshots(5203773).await.unwrap().items[0].state == RemoteState::Ready
    })
    .await;
    // The session lapses; the client logs in again once and carries on.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(c.list_snapshots(5203773).await.unwrap().items.len(), 1);
    c.delete_snapshot(5203773, &made.id).await.unwrap();
    assert!(c.list_snapshots(5203773).await.unwrap().items.is_empty());
    let protected = s.add_foreign_snapshot(5203773, "keep-me", true);
    assert!(matches!(
        c.delete_snapshot(5203773, &protected.to_string()).await,
        Err(ProviderError::Protected(_))
    ));
    assert_eq!(s.snapshots(5203773).len(), 1);
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_classify_as_documented() {
    let s = sim(base()).await;
    let c = rest(&s, "sim-token");
    s.set_faults(Faults {
        rate_429: 1.0,
        retry_after_secs: 7,
        ..Faults::default()
    });
    match c.create_snapshot(12345, "n", None).await {
        Err(ProviderError::RateLimited {
            retry_after: Some(d),
        }) => assert!(d >= Duration::from_secs(5), "{d:?}"),
        other => panic!("expected RateLimited with Retry-After, got {other:?}"),
    }
    let s = sim(base()).await;
    let c = rest(&s, "sim-token");
    s.set_faults(Faults {
        error_5xx_rate: 1.0,
        ..Faults::default()
    });
    let e = c.create_snapshot(12345, "n", None).await.unwrap_err();
    assert!(
        e.outcome_unknown(),
        "a 5xx on create may have taken effect: {e:?}"
    );
    assert_eq!(
        s.calls().get("vps_rest.snapshots.create"),
        Some(&1),
        "a create is never retried blindly"
    );
    s.set_faults(Faults {
        lost_create_rate: 1.0,
        ..Faults::default()
    });
    let e = c.create_snapshot(12345, "lost", None).await.unwrap_err();
    assert!(e.outcome_unknown());
    s.set_faults(Faults::default());
    assert_eq!(
        c.list_snapshots(12345).await.unwrap().items.len(),
        1,
        "the lost create did happen"
    );
    s.set_faults(Faults {
        error_5xx_rate: 1.0,
        ..Faults::default()
    });
    let before = s
        .calls()
        .get("vps_rest.snapshots.list")
        .copied()
        .unwrap_or(0);
    assert!(matches!(
        c.list_snapshots(12345).await,
        Err(ProviderError::Transient(_))
    ));
    let lists = s
        .calls()
        .get("vps_rest.snapshots.list")
        .copied()
        .unwrap_or(0)
        - before;
    assert!(
        (2..=3).contains(&lists),
        "idempotent lists retry a bounded number of times in-call ({lists})"
    );
    s.set_faults(Faults {
        unknown_status_rate: 1.0,
        ..Faults::default()
    });
    let u = c
        .create_snapshot(12345, "odd", None)
        .await
        .unwrap()
        .unwrap();
    until_ready(|| async {
        c.list_snapshots(12345)
            .await
            .map(|l| {
                l.items
                    .iter()
                    .any(|x| x.id == u.id && x.state == RemoteState::Unknown)
            })
            .unwrap_or(false)
    })
    .await;
    s.shutdown().await;
}
