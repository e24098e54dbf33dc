//! Helpers for integration tests against the real control plane started by `scripts/test.sh`:
//! a client, a fresh namespace per test, CRD installation, condition waits that say what they
//! last saw, and the operator run as a real process.
#![allow(dead_code)]

pub mod delete_gate;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Namespace, Secret};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::wait::{Condition, await_condition, conditions};
use kube::{Client, Config, Resource};
use serde::de::DeserializeOwned;
use tokio::process::{Child, Command};

pub fn kubeconfig_path() -> PathBuf {
    match std::env::var_os("VPSNAP_TEST_KUBECONFIG") {
        Some(p) => PathBuf::from(p),
        None => panic!(
            "integration tests need the local control plane: run ./scripts/test.sh (it builds, starts and stops one), \
             or start one with `scripts/control-plane.sh up /tmp/cp` and export VPSNAP_TEST_KUBECONFIG=/tmp/cp/kubeconfig"
        ),
    }
}

pub async fn client() -> Client {
    let kc = Kubeconfig::read_from(kubeconfig_path()).expect("read kubeconfig");
    let config = Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .expect("kubeconfig");
    Client::try_from(config).expect("client")
}

/// Applies every CRD (server-side, idempotent) and waits until each is Established.
pub async fn install_crds(client: &Client) {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    for crd in vpsnap::api::all_crds() {
        let name = crd.metadata.name.clone().unwrap();
        api.patch(
            &name,
            &PatchParams::apply("vpsnap-tests").force(),
            &Patch::Apply(&crd),
        )
        .await
        .expect("apply CRD");
    }
    for crd in vpsnap::api::all_crds() {
        let name = crd.metadata.name.clone().unwrap();
        wait_for_condition(
            &api,
            &name,
            Duration::from_secs(60),
            conditions::is_crd_established(),
        )
        .await;
    }
}

/// The cleanup-finalizer `MutatingAdmissionPolicy` the chart installs, under a name of the
/// tests' own. It acts only in namespaces bound to it.
pub const TEST_POLICY: &str = "vpsnap-tests-cleanup-finalizer";

/// Binds the cleanup-finalizer policy to `namespace`, as the chart does for the namespaces its
/// operator watches, once the apiserver applies it to new objects.
pub async fn bind_cleanup_finalizer(client: &Client, namespace: &str) {
    let served = vpsnap::bench::cluster::bind_cleanup_finalizer(client, namespace, TEST_POLICY)
        .await
        .expect("bind the cleanup-finalizer policy");
    assert!(
        served,
        "the test control plane serves MutatingAdmissionPolicy (1.37)"
    );
}

/// Removes `namespace`'s binding (bindings are cluster-scoped and outlive the namespace).
pub async fn unbind_cleanup_finalizer(client: &Client, namespace: &str) {
    vpsnap::bench::cluster::unbind_cleanup_finalizer(client, namespace, TEST_POLICY).await;
}

/// A namespace that exists for one test.
pub struct TestNamespace {
    pub name: String,
    client: Client,
}

impl TestNamespace {
    pub async fn new(client: &Client, prefix: &str) -> Self {
        let name = format!("{prefix}-{:08x}", rand::random::<u32>());
        let api: Api<Namespace> = Api::all(client.clone());
        let mut ns = Namespace::default();
        ns.metadata.name = Some(name.clone());
        api.create(&PostParams::default(), &ns)
            .await
            .expect("create namespace");
        Self {
            name,
            client: client.clone(),
        }
    }

    pub fn api<K>(&self) -> Api<K>
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
            + Clone
            + DeserializeOwned
            + std::fmt::Debug,
    {
        Api::namespaced(self.client.clone(), &self.name)
    }

    pub async fn secret(&self, name: &str, data: &[(&str, &str)]) {
        let api: Api<Secret> = self.api();
        let mut s = Secret::default();
        s.metadata.name = Some(name.into());
        s.string_data = Some(
            data.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        );
        api.patch(
            name,
            &PatchParams::apply("vpsnap-tests").force(),
            &Patch::Apply(&serde_json::json!({
                "apiVersion": "v1", "kind": "Secret", "metadata": {"name": name},
                "stringData": s.string_data,
            })),
        )
        .await
        .expect("apply secret");
    }

    /// Deletes the namespace; objects still carrying finalizers are left for the
    /// controller-manager's namespace controller.
    pub async fn delete(self) {
        let api: Api<Namespace> = Api::all(self.client.clone());
        let _ = api.delete(&self.name, &DeleteParams::default()).await;
    }
}

/// Polls `check` until it says `Ok`; after `timeout` panics naming `what` and the last thing
/// `check` saw. For conditions no watch can see (simulator records, metrics, webhook calls).
pub async fn wait_until<F, Fut>(what: &str, timeout: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), String>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        match check().await {
            Ok(()) => return,
            Err(seen) if Instant::now() >= deadline => {
                panic!("{what}: not within {timeout:?}; last seen: {seen}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

/// Waits (on a watch of `name`) until `pred` holds; on timeout panics with the last object seen.
pub async fn wait_for<K, F>(api: &Api<K>, name: &str, timeout: Duration, pred: F) -> K
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug + serde::Serialize + Send + 'static,
    F: Fn(&K) -> bool,
{
    wait_for_condition(api, name, timeout, |o: Option<&K>| o.is_some_and(&pred))
        .await
        .expect("the condition holds only for an existing object")
}

/// Waits until `name` is gone.
pub async fn wait_gone<K>(api: &Api<K>, name: &str, timeout: Duration)
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug + serde::Serialize + Send + 'static,
{
    wait_for_condition(api, name, timeout, |o: Option<&K>| o.is_none()).await;
}

/// `kube::runtime::wait::await_condition` with a deadline, re-watching after a watch error; on
/// timeout panics with the last state seen. Returns the object the condition matched (`None`
/// when it matched the object's absence).
pub async fn wait_for_condition<K>(
    api: &Api<K>,
    name: &str,
    timeout: Duration,
    condition: impl Condition<K>,
) -> Option<K>
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug + serde::Serialize + Send + 'static,
{
    let deadline = tokio::time::Instant::now() + timeout;
    let last: std::sync::Mutex<Option<Option<K>>> = Default::default();
    let seen = |o: Option<&K>| {
        *last.lock().unwrap() = Some(o.cloned());
        condition.matches_object(o)
    };
    loop {
        match tokio::time::timeout_at(deadline, await_condition(api.clone(), name, &seen)).await {
            Ok(Ok(found)) => return found,
            // A broken watch (apiserver hiccup): watch again until the deadline.
            Ok(Err(e)) => eprintln!("wait for {name}: {e}; watching again"),
            Err(_) => {
                let seen = match last.lock().unwrap().take() {
                    Some(Some(o)) => serde_yaml::to_string(&o).unwrap_or_default(),
                    Some(None) => "the object absent".into(),
                    None => "nothing (no watch event arrived)".into(),
                };
                panic!("timed out after {timeout:?} waiting for {name}; last seen:\n{seen}");
            }
        }
    }
}

/// Condition `type_` of a status with `conditions`, as (status, reason, message).
pub fn condition(obj: &impl serde::Serialize, type_: &str) -> Option<(String, String, String)> {
    let v = serde_json::to_value(obj).ok()?;
    let cs = v.get("status")?.get("conditions")?.as_array()?;
    let c = cs
        .iter()
        .find(|c| c.get("type").and_then(|t| t.as_str()) == Some(type_))?;
    let s = |k: &str| {
        c.get(k)
            .and_then(|x| x.as_str())
            .unwrap_or_default()
            .to_string()
    };
    Some((s("status"), s("reason"), s("message")))
}

pub fn has_condition(
    obj: &impl serde::Serialize,
    type_: &str,
    status: &str,
    reason: Option<&str>,
) -> bool {
    condition(obj, type_).is_some_and(|(s, r, _)| s == status && reason.is_none_or(|x| x == r))
}

pub fn free_addr() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

/// The operator as a real process, watching one namespace, killed on drop.
pub struct Operator {
    pub child: Child,
    pub metrics_addr: SocketAddr,
}

impl Operator {
    pub async fn start(namespace: &str) -> Self {
        Self::start_with(namespace, &[], None).await
    }

    /// `kubeconfig` overrides the admin kubeconfig (e.g. a ServiceAccount's).
    pub async fn start_with(namespace: &str, extra: &[&str], kubeconfig: Option<PathBuf>) -> Self {
        Self::start_named(namespace, "vpsnap-test", extra, kubeconfig).await
    }

    /// Like `start_with`, with `POD_NAME` set to `pod` (the leader-election identity).
    pub async fn start_named(
        namespace: &str,
        pod: &str,
        extra: &[&str],
        kubeconfig: Option<PathBuf>,
    ) -> Self {
        Self::start_env(namespace, pod, extra, kubeconfig, &[]).await
    }

    /// Like `start_named`, with extra environment variables.
    pub async fn start_env(
        namespace: &str,
        pod: &str,
        extra: &[&str],
        kubeconfig: Option<PathBuf>,
        env: &[(&str, &str)],
    ) -> Self {
        let metrics_addr = free_addr();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_vpsnap"));
        cmd.arg("controller")
            .arg("--watch-namespace")
            .arg(namespace)
            .arg("--metrics-addr")
            .arg(metrics_addr.to_string())
            .args(extra)
            .env("KUBECONFIG", kubeconfig.unwrap_or_else(kubeconfig_path))
            .env("POD_NAME", pod)
            .env(
                "RUST_LOG",
                std::env::var("VPSNAP_TEST_LOG").unwrap_or_else(|_| "info,kube=warn".into()),
            )
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .kill_on_drop(true);
        if std::env::var_os("VPSNAP_TEST_QUIET").is_some() {
            cmd.stderr(Stdio::null()).stdout(Stdio::null());
        }
        let child = cmd.spawn().expect("start vpsnap controller");
        Self {
            child,
            metrics_addr,
        }
    }

    /// Waits until `/readyz` answers 200 (caches synced).
    pub async fn wait_ready(&self, timeout: Duration) {
        let start = Instant::now();
        loop {
            if let Ok(r) = self.try_get("/readyz").await
                && r.status() == 200
            {
                return;
            }
            assert!(start.elapsed() < timeout, "the operator never became ready");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Kills the process at once (SIGKILL): a crash, not a clean shutdown.
    pub async fn kill(mut self) {
        let _ = self.child.kill().await;
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.try_get(path).await.expect("operator HTTP endpoint")
    }

    /// For polling an endpoint that may not be up yet.
    pub async fn try_get(&self, path: &str) -> reqwest::Result<reqwest::Response> {
        http_get(format!("http://{}{path}", self.metrics_addr)).await
    }

    pub async fn metrics(&self) -> String {
        self.get("/metrics").await.text().await.expect("body")
    }
}

/// Leader election with a lease short enough for a test: 6 s, fenced with a 2 s request
/// timeout and a 1 s clock-skew allowance (the operator refuses timings that cannot fence).
pub fn fast_lease(namespace: &str) -> [&str; 11] {
    [
        "--leader-election",
        "--lease-namespace",
        namespace,
        "--lease-duration-secs",
        "6",
        "--provider-request-timeout",
        "2s",
        "--clock-skew-allowance",
        "1s",
        "--provider-list-lag",
        "2s",
    ]
}

/// Sends `signal` (e.g. `STOP`, `CONT`) to the operator process.
pub fn signal(op: &Operator, signal: &str) {
    let pid = op.child.id().expect("the operator is running");
    let status = std::process::Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -{signal} {pid}");
}

/// reqwest is built without a bundled crypto provider; whichever test of a binary runs first
/// must not depend on another having installed it.
async fn http_get(url: String) -> reqwest::Result<reqwest::Response> {
    vpsnap::provider::install_crypto_provider();
    reqwest::get(url).await
}

/// Starts an in-process simulator on a free port.
pub async fn simulator(config: vpsnap::sim::SimConfig) -> vpsnap::sim::SimHandle {
    vpsnap::sim::start(config, "127.0.0.1:0".parse().unwrap())
        .await
        .expect("start simulator")
}

/// Server-side applies `body` (a full manifest) into the namespace of `api`.
pub async fn apply<K>(api: &Api<K>, body: serde_json::Value) -> K
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug + serde::Serialize,
{
    let name = body["metadata"]["name"]
        .as_str()
        .expect("metadata.name")
        .to_string();
    let mut body = body;
    body["apiVersion"] = K::api_version(&()).into_owned().into();
    body["kind"] = K::kind(&()).into_owned().into();
    api.patch(
        &name,
        &PatchParams::apply("vpsnap-tests").force(),
        &Patch::Apply(&body),
    )
    .await
    .unwrap_or_else(|e| panic!("apply {name}: {e}"))
}

/// One test's world: a namespace, a simulator, and the operator watching that namespace.
pub struct World {
    pub client: Client,
    pub ns: TestNamespace,
    pub sim: vpsnap::sim::SimHandle,
    pub operator: Option<Operator>,
}

impl World {
    pub async fn new(prefix: &str, config: vpsnap::sim::SimConfig) -> Self {
        let client = client().await;
        install_crds(&client).await;
        let ns = TestNamespace::new(&client, prefix).await;
        // As installed: objects are born with the cleanup finalizer.
        bind_cleanup_finalizer(&client, &ns.name).await;
        let sim = simulator(config).await;
        let operator = Some(Operator::start(&ns.name).await);
        Self {
            client,
            ns,
            sim,
            operator,
        }
    }

    /// A VpsRest provider on the simulator with fast polling, plus its Secret.
    pub async fn vps_rest_provider(&self, name: &str, token: &str, extra: serde_json::Value) {
        self.ns
            .secret(&format!("{name}-credentials"), &[("token", token)])
            .await;
        let mut spec = serde_json::json!({
            "type": "VpsRest",
            "endpoint": self.sim.vps_rest_url(),
            "credentialsSecretRef": {"name": format!("{name}-credentials")},
            "pollInterval": "1s",
            "resyncInterval": "20s",
            "requestsPerSecond": 50,
        });
        merge(&mut spec, extra);
        apply(
            &self.ns.api::<vpsnap::api::VpsProvider>(),
            serde_json::json!({"metadata": {"name": name}, "spec": spec}),
        )
        .await;
    }

    pub async fn zomro_provider(&self, name: &str, user: &str, password: &str) {
        self.ns
            .secret(
                &format!("{name}-credentials"),
                &[("username", user), ("password", password)],
            )
            .await;
        let spec = serde_json::json!({
            "type": "Zomro",
            "endpoint": self.sim.zomro_url(),
            "credentialsSecretRef": {"name": format!("{name}-credentials")},
            "pollInterval": "1s",
            "resyncInterval": "20s",
            "requestsPerSecond": 50,
        });
        apply(
            &self.ns.api::<vpsnap::api::VpsProvider>(),
            serde_json::json!({"metadata": {"name": name}, "spec": spec}),
        )
        .await;
    }

    pub async fn snapshot(
        &self,
        name: &str,
        provider: &str,
        server: u64,
        extra: serde_json::Value,
    ) -> vpsnap::api::VpsSnapshot {
        let mut spec = serde_json::json!({"providerRef": {"name": provider}, "serverId": server});
        merge(&mut spec, extra);
        apply(
            &self.ns.api::<vpsnap::api::VpsSnapshot>(),
            serde_json::json!({"metadata": {"name": name}, "spec": spec}),
        )
        .await
    }

    pub async fn backup(
        &self,
        name: &str,
        provider: &str,
        server: u64,
        extra: serde_json::Value,
    ) -> vpsnap::api::VpsBackup {
        let mut spec = serde_json::json!({"providerRef": {"name": provider}, "serverId": server});
        merge(&mut spec, extra);
        apply(
            &self.ns.api::<vpsnap::api::VpsBackup>(),
            serde_json::json!({"metadata": {"name": name}, "spec": spec}),
        )
        .await
    }

    pub async fn wait_ready<K>(&self, name: &str, timeout: Duration) -> K
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
            + Clone
            + DeserializeOwned
            + std::fmt::Debug
            + serde::Serialize
            + Send
            + 'static,
    {
        wait_for(&self.ns.api::<K>(), name, timeout, |o: &K| {
            has_condition(o, "Ready", "True", None)
        })
        .await
    }

    pub async fn wait_reason<K>(
        &self,
        name: &str,
        type_: &str,
        status: &str,
        reason: &str,
        timeout: Duration,
    ) -> K
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
            + Clone
            + DeserializeOwned
            + std::fmt::Debug
            + serde::Serialize
            + Send
            + 'static,
    {
        wait_for(&self.ns.api::<K>(), name, timeout, |o: &K| {
            has_condition(o, type_, status, Some(reason))
        })
        .await
    }

    pub async fn restart_operator(&mut self) {
        if let Some(op) = self.operator.take() {
            op.kill().await;
        }
        self.operator = Some(Operator::start(&self.ns.name).await);
    }

    pub async fn stop(mut self) {
        if let Some(op) = self.operator.take() {
            op.kill().await;
        }
        unbind_cleanup_finalizer(&self.client, &self.ns.name).await;
        self.ns.delete().await;
    }
}

fn merge(base: &mut serde_json::Value, extra: serde_json::Value) {
    if let (Some(b), serde_json::Value::Object(e)) = (base.as_object_mut(), extra) {
        for (k, v) in e {
            b.insert(k, v);
        }
    }
}

/// Creates the simulator counts for `endpoint` (e.g. `vps_rest.snapshots.create`).
pub fn calls(sim: &vpsnap::sim::SimHandle, endpoint: &str) -> u64 {
    sim.calls().get(endpoint).copied().unwrap_or(0)
}

pub fn sim_config(servers: &[u64]) -> vpsnap::sim::SimConfig {
    vpsnap::sim::SimConfig {
        servers: servers.to_vec(),
        tokens: vec!["good-token".into()],
        zomro_users: vec![("zuser".into(), "zpass".into())],
        create_delay: Duration::from_millis(800),
        restore_delay: Duration::from_millis(800),
        ..Default::default()
    }
}

impl World {
    /// Reasons of the Events about `name`, in no particular order.
    pub async fn event_reasons(&self, name: &str) -> Vec<String> {
        let events: Api<k8s_openapi::api::events::v1::Event> = self.ns.api();
        events
            .list(&Default::default())
            .await
            .expect("list events")
            .items
            .into_iter()
            .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name))
            .filter_map(|e| e.reason)
            .collect()
    }

    /// Waits for an Event `reason` about `name` (published right after the status it goes with).
    pub async fn wait_event(&self, name: &str, reason: &str) {
        let start = Instant::now();
        loop {
            let reasons = self.event_reasons(name).await;
            if reasons.iter().any(|r| r == reason) {
                return;
            }
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "no {reason} Event about {name}; saw {reasons:?}"
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    pub async fn wait_for_phase(&self, name: &str, phase: &str) -> vpsnap::api::VpsSnapshot {
        wait_for(
            &self.ns.api::<vpsnap::api::VpsSnapshot>(),
            name,
            Duration::from_secs(60),
            |o: &vpsnap::api::VpsSnapshot| {
                o.status.as_ref().and_then(|s| s.phase).map(|p| p.as_str()) == Some(phase)
            },
        )
        .await
    }
}

/// A TCP proxy to the apiserver that a test can cut, as a network partition between one
/// operator and the control plane would (the operator keeps its route to the provider).
pub struct Partition {
    pub kubeconfig: PathBuf,
    cut: tokio::sync::watch::Sender<bool>,
    _dir: TempDir,
}

/// A directory removed on drop.
pub struct TempDir(pub PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl Partition {
    /// A proxy to the test apiserver and a kubeconfig that goes through it.
    pub async fn new() -> Self {
        let text = std::fs::read_to_string(kubeconfig_path()).expect("read kubeconfig");
        let mut config: serde_yaml::Value = serde_yaml::from_str(&text).expect("kubeconfig yaml");
        let server = config["clusters"][0]["cluster"]["server"]
            .as_str()
            .expect("cluster server")
            .to_string();
        let upstream = server
            .trim_start_matches("https://")
            .trim_end_matches('/')
            .to_string();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind proxy");
        let addr = listener.local_addr().expect("proxy addr");
        let (cut, watch) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            loop {
                let Ok((mut down, _)) = listener.accept().await else {
                    return;
                };
                if *watch.borrow() {
                    continue;
                }
                let mut cut = watch.clone();
                let upstream = upstream.clone();
                tokio::spawn(async move {
                    let Ok(mut up) = tokio::net::TcpStream::connect(&upstream).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut down, &mut up) => {}
                        _ = cut.wait_for(|c| *c) => {}
                    }
                });
            }
        });
        config["clusters"][0]["cluster"]["server"] = format!("https://{addr}").into();
        let dir =
            std::env::temp_dir().join(format!("vpsnap-partition-{:08x}", rand::random::<u32>()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let kubeconfig = dir.join("kubeconfig");
        std::fs::write(&kubeconfig, serde_yaml::to_string(&config).unwrap())
            .expect("write kubeconfig");
        Partition {
            kubeconfig,
            cut,
            _dir: TempDir(dir),
        }
    }

    /// Drops every connection through the proxy and refuses new ones.
    pub fn cut(&self) {
        let _ = self.cut.send(true);
    }
}
