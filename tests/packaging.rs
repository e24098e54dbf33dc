//! The chart on the real control plane: its RBAC is enough for the operator and no more, two
//! replicas elect one leader that alone calls the provider, and health endpoints tell the truth.
mod support;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Secret, ServiceAccount};
use kube::api::{Api, DeleteParams, PostParams};
use serde_json::json;
use support::*;
use vpsnap::api::{VpsProvider, VpsSnapshot};

const T: Duration = Duration::from_secs(60);

fn bin(tool: &str) -> String {
    format!(
        "{}/{tool}",
        std::env::var("VPSNAP_TEST_BIN_DIR").expect("VPSNAP_TEST_BIN_DIR (set by scripts/test.sh)")
    )
}

/// `helm template` of the chart for `ns`, applied server-side with kubectl.
async fn install_chart(ns: &str, extra: &[&str]) {
    let chart = concat!(env!("CARGO_MANIFEST_DIR"), "/charts/vpsnap");
    let mut args = vec![
        "template",
        "vpsnap",
        chart,
        "--namespace",
        ns,
        "--kube-version",
        "1.37.0",
    ];
    args.extend_from_slice(extra);
    let rendered = tokio::process::Command::new(bin("helm"))
        .args(&args)
        .output()
        .await
        .expect("run helm");
    assert!(
        rendered.status.success(),
        "helm template failed: {}",
        String::from_utf8_lossy(&rendered.stderr)
    );
    let mut apply = tokio::process::Command::new(bin("kubectl"))
        .args([
            "--kubeconfig",
            kubeconfig_path().to_str().unwrap(),
            "apply",
            "--server-side",
            "-n",
            ns,
            "-f",
            "-",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use tokio::io::AsyncWriteExt;
    apply
        .stdin
        .take()
        .unwrap()
        .write_all(&rendered.stdout)
        .await
        .unwrap();
    let out = apply.wait_with_output().await.unwrap();
    assert!(
        out.status.success(),
        "applying the rendered chart failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A kubeconfig that authenticates as the chart's ServiceAccount (TokenRequest), not admin.
async fn service_account_kubeconfig(client: &kube::Client, ns: &str, sa: &str) -> PathBuf {
    let sas: Api<ServiceAccount> = Api::namespaced(client.clone(), ns);
    let request = TokenRequest {
        spec: Some(TokenRequestSpec {
            expiration_seconds: Some(3600),
            ..Default::default()
        }),
        ..Default::default()
    };
    let token = sas
        .create_token_request(sa, &PostParams::default(), &request)
        .await
        .expect("TokenRequest for the chart's ServiceAccount")
        .status
        .expect("token status")
        .token;
    let admin = std::fs::read_to_string(kubeconfig_path()).unwrap();
    let mut kc: serde_yaml::Value = serde_yaml::from_str(&admin).unwrap();
    kc["users"][0]["user"] = serde_yaml::to_value(serde_json::json!({"token": token})).unwrap();
    let path = std::env::temp_dir().join(format!("vpsnap-sa-{ns}.kubeconfig"));
    std::fs::write(&path, serde_yaml::to_string(&kc).unwrap()).unwrap();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_charts_rbac_is_enough_and_no_more() {
    let client = client().await;
    install_crds(&client).await;
    let ns = TestNamespace::new(&client, "rbac").await;
    let other = TestNamespace::new(&client, "rbac-other").await;
    install_chart(&ns.name, &["--set", &format!("watchNamespace={}", ns.name)]).await;
    let kubeconfig = service_account_kubeconfig(&client, &ns.name, "vpsnap").await;

    let sim = simulator(sim_config(&[800])).await;
    let operator = Operator::start_named(
        &ns.name,
        "vpsnap-sa",
        &["--leader-election", "--lease-namespace", &ns.name],
        Some(kubeconfig.clone()),
    )
    .await;
    // The user's objects are applied by admin, as a platform team's pipeline would.
    ns.secret("acct-credentials", &[("token", "good-token")])
        .await;
    apply(&ns.api::<VpsProvider>(), json!({"metadata": {"name": "acct"}, "spec": {
        "type": "VpsRest", "endpoint": sim.vps_rest_url(), "credentialsSecretRef": {"name": "acct-credentials"},
        "pollInterval": "1s"}}))
    .await;
    apply(&ns.api::<VpsSnapshot>(), json!({"metadata": {"name": "s"}, "spec": {"providerRef": {"name": "acct"}, "serverId": 800}})).await;
    wait_for(&ns.api::<VpsSnapshot>(), "s", T, |o: &VpsSnapshot| {
        has_condition(o, "Ready", "True", None)
    })
    .await;
    ns.api::<VpsSnapshot>()
        .delete("s", &DeleteParams::default())
        .await
        .unwrap();
    wait_gone(&ns.api::<VpsSnapshot>(), "s", T).await;
    assert!(
        sim.snapshots(800).is_empty(),
        "deleted at the provider with the chart's RBAC"
    );
    let events = tokio::process::Command::new(bin("kubectl"))
        .args([
            "--kubeconfig",
            kubeconfig_path().to_str().unwrap(),
            "-n",
            &ns.name,
            "get",
            "events",
            "-o",
            "name",
        ])
        .output()
        .await
        .unwrap();
    assert!(
        !events.stdout.is_empty(),
        "the operator could publish Events"
    );

    // ... and no more than needed.
    let kc = kube::config::Kubeconfig::read_from(&kubeconfig).unwrap();
    let sa_client = kube::Client::try_from(
        kube::Config::from_custom_kubeconfig(kc, &Default::default())
            .await
            .unwrap(),
    )
    .unwrap();
    let secrets: Api<Secret> = Api::namespaced(sa_client.clone(), &ns.name);
    let mut s = Secret::default();
    s.metadata.name = Some("forbidden".into());
    let err = secrets
        .create(&PostParams::default(), &s)
        .await
        .expect_err("the operator must not write Secrets");
    assert!(
        matches!(err, kube::Error::Api(ref e) if e.code == 403),
        "{err}"
    );
    let foreign: Api<VpsSnapshot> = Api::namespaced(sa_client.clone(), &other.name);
    let err = foreign
        .list(&Default::default())
        .await
        .expect_err("no access outside the watched namespace");
    assert!(
        matches!(err, kube::Error::Api(ref e) if e.code == 403),
        "{err}"
    );
    let all: Api<VpsSnapshot> = Api::all(sa_client);
    assert!(
        all.list(&Default::default()).await.is_err(),
        "no cluster-wide access with watchNamespace set"
    );

    operator.kill().await;
    ns.delete().await;
    other.delete().await;
}

async fn holder(leases: &Api<Lease>) -> Option<String> {
    leases
        .get_opt("vpsnap-leader")
        .await
        .ok()
        .flatten()?
        .spec?
        .holder_identity
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_one_leader_and_a_handover() {
    let client = client().await;
    install_crds(&client).await;
    let ns = TestNamespace::new(&client, "leader").await;
    let sim = simulator(sim_config(&[900])).await;
    let args = fast_lease(&ns.name);
    let a = Operator::start_named(&ns.name, "replica-a", &args, None).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let b = Operator::start_named(&ns.name, "replica-b", &args, None).await;

    ns.secret("acct-credentials", &[("token", "good-token")])
        .await;
    apply(&ns.api::<VpsProvider>(), json!({"metadata": {"name": "acct"}, "spec": {
        "type": "VpsRest", "endpoint": sim.vps_rest_url(), "credentialsSecretRef": {"name": "acct-credentials"},
        "pollInterval": "1s"}}))
    .await;
    for i in 0..3 {
        apply(&ns.api::<VpsSnapshot>(), json!({"metadata": {"name": format!("s{i}")}, "spec": {"providerRef": {"name": "acct"}, "serverId": 900}})).await;
    }
    for i in 0..3 {
        wait_for(
            &ns.api::<VpsSnapshot>(),
            &format!("s{i}"),
            T,
            |o: &VpsSnapshot| has_condition(o, "Ready", "True", None),
        )
        .await;
    }
    let leases: Api<Lease> = ns.api();
    let leader = holder(&leases).await.expect("a lease holder");
    let (leader_op, standby_op) = if leader == "replica-a" {
        (a, b)
    } else {
        (b, a)
    };
    // Only the leader talked to the provider; the standby is healthy and idle.
    assert!(
        leader_op
            .metrics()
            .await
            .contains("vpsnap_provider_requests_total{"),
        "the leader called the provider"
    );
    assert!(
        !standby_op
            .metrics()
            .await
            .contains("vpsnap_provider_requests_total{"),
        "the standby made provider calls"
    );
    assert_eq!(
        standby_op.get("/readyz").await.status(),
        200,
        "a standby reports ready so rollouts proceed"
    );

    // Kill the leader: the standby takes over within the lease duration (+ renew slack).
    leader_op.kill().await;
    let killed = Instant::now();
    apply(&ns.api::<VpsSnapshot>(), json!({"metadata": {"name": "after"}, "spec": {"providerRef": {"name": "acct"}, "serverId": 900}})).await;
    wait_for(
        &ns.api::<VpsSnapshot>(),
        "after",
        Duration::from_secs(40),
        |o: &VpsSnapshot| has_condition(o, "Ready", "True", None),
    )
    .await;
    let handover = killed.elapsed();
    let new_holder = holder(&leases).await.expect("a new holder");
    assert_ne!(new_holder, leader, "the standby took the lease");
    assert!(
        handover < Duration::from_secs(30),
        "handover took {handover:?}"
    );
    let creates = sim.record().creates;
    assert_eq!(
        creates.len(),
        4,
        "no duplicate provider creates across the handover: {creates:?}"
    );
    standby_op.kill().await;
    ns.delete().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_is_503_until_caches_sync() {
    // An operator whose API server never answers cannot sync: alive, not ready.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = dead.local_addr().unwrap().port();
    drop(dead);
    let admin = std::fs::read_to_string(kubeconfig_path()).unwrap();
    let mut kc: serde_yaml::Value = serde_yaml::from_str(&admin).unwrap();
    kc["clusters"][0]["cluster"]["server"] = format!("https://127.0.0.1:{port}").into();
    let path = std::env::temp_dir().join(format!("vpsnap-dead-{port}.kubeconfig"));
    std::fs::write(&path, serde_yaml::to_string(&kc).unwrap()).unwrap();
    let op = Operator::start_with("nowhere", &[], Some(path)).await;
    let start = Instant::now();
    loop {
        if let Ok(r) = op.try_get("/livez").await
            && r.status() == 200
        {
            break;
        }
        assert!(start.elapsed() < T, "the health endpoint never came up");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(op.get("/readyz").await.status(), 503);
    op.kill().await;

    // A healthy one turns ready once synced.
    let client = client().await;
    install_crds(&client).await;
    let ns = TestNamespace::new(&client, "ready").await;
    let op = Operator::start(&ns.name).await;
    op.wait_ready(T).await;
    op.kill().await;
    ns.delete().await;
}
