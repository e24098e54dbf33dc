//! The operations kit, checked as an SRE would use it: the chart with every opt-in renders, its
//! ServiceMonitor and PrometheusRule decode strictly into prometheus-operator's own Go types
//! and everything applies server-side to the real control plane (the `helm test` pod by
//! server-side dry-run: no kubelet here); promtool checks and unit-tests the alerts; every
//! metric the alerts and the dashboard use is on a running operator's `/metrics`; the hook's
//! `vpsnap probe` and the runtime log level work against a running operator.
//!
//! Needs the monitoring tools (`scripts/build-monitoring-tools.sh`, run by `scripts/test.sh`,
//! which exports VPSNAP_TEST_MONITORING_DIR).
mod support;

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::wait::conditions;
use serde_json::json;
use support::*;
use tokio::io::AsyncWriteExt;
use vpsnap::api::{VpsProvider, VpsSnapshot, VpsSnapshotSchedule};

const T: Duration = Duration::from_secs(60);
const CHART: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/charts/vpsnap");

fn bin(tool: &str) -> String {
    format!(
        "{}/{tool}",
        std::env::var("VPSNAP_TEST_BIN_DIR").expect("VPSNAP_TEST_BIN_DIR (set by scripts/test.sh)")
    )
}

fn monitoring_dir() -> PathBuf {
    match std::env::var_os("VPSNAP_TEST_MONITORING_DIR") {
        Some(d) => PathBuf::from(d),
        None => panic!(
            "these tests need promtool, strictcheck and the monitoring CRDs: run ./scripts/test.sh, or \
             export VPSNAP_TEST_MONITORING_DIR=$(scripts/build-monitoring-tools.sh)"
        ),
    }
}

fn tool(name: &str) -> String {
    monitoring_dir()
        .join("bin")
        .join(name)
        .to_string_lossy()
        .into_owned()
}

/// Runs `program args` with `stdin`; returns (success, stdout + stderr).
async fn run(program: &str, args: &[&str], stdin: &[u8]) -> (bool, String) {
    let mut child = tokio::process::Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("start {program}: {e}"));
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin).await.unwrap();
    drop(input);
    let out = child.wait_with_output().await.unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// `helm template` of the chart as release "vpsnap" in `namespace`.
async fn render(namespace: &str, extra: &[&str]) -> String {
    let mut args = vec![
        "template",
        "vpsnap",
        CHART,
        "--namespace",
        namespace,
        "--kube-version",
        "1.37.0",
    ];
    args.extend_from_slice(extra);
    let (ok, out) = run(&bin("helm"), &args, b"").await;
    assert!(ok, "helm template {extra:?} failed:\n{out}");
    out
}

const EVERY_OPT_IN: &[&str] = &[
    "--set",
    "serviceMonitor.enabled=true",
    "--set",
    "prometheusRule.enabled=true",
    "--set",
    "grafanaDashboard.enabled=true",
    "--set",
    "networkPolicy.enabled=true",
    "--set",
    "networkPolicy.metrics.from[0].namespaceSelector.matchLabels.kubernetes\\.io/metadata\\.name=monitoring",
    "--set",
    "networkPolicy.apiServer.cidrs={10.0.0.1/32}",
    "--set",
    "tracing.enabled=true",
    "--set",
    "tracing.endpoint=http://otel-collector.observability.svc:4318",
    "--set",
    "replicas=2",
    // Not an opt-in but on by default: the admission policy is cluster-wide, and applied here
    // it would put finalizers on objects of every other test's namespace on this shared control
    // plane. scripts/check-manifests.sh applies it on a control plane of its own.
    "--set",
    "admissionPolicy.create=false",
];

/// The chart's alerts as promtool reads them, extracted by strictcheck from the rendering for
/// release "vpsnap" in "vpsnap-system" (what tests/monitoring/alerts.test.yaml expects).
async fn rendered_rules(dir: &Path) -> PathBuf {
    let rendered = render(
        "vpsnap-system",
        &[
            "--set",
            "serviceMonitor.enabled=true",
            "--set",
            "prometheusRule.enabled=true",
        ],
    )
    .await;
    let rules = dir.join("rules.yaml");
    let (ok, out) = run(
        &tool("strictcheck"),
        &[
            "-rules",
            rules.to_str().unwrap(),
            "-want-kinds",
            "ServiceMonitor,PrometheusRule",
        ],
        rendered.as_bytes(),
    )
    .await;
    assert!(ok, "strictcheck:\n{out}");
    rules
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("vpsnap-{name}-{:08x}", rand::random::<u32>()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promtool_checks_and_unit_tests_the_alerts() {
    let dir = temp_dir("promtool");
    let rules = rendered_rules(&dir).await;
    let (ok, out) = run(
        &tool("promtool"),
        &["check", "rules", rules.to_str().unwrap()],
        b"",
    )
    .await;
    assert!(ok, "promtool check rules:\n{out}");
    assert!(out.contains("SUCCESS: 10 rules found"), "{out}");
    let tests = dir.join("alerts.test.yaml");
    std::fs::copy(
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/monitoring/alerts.test.yaml"
        ),
        &tests,
    )
    .unwrap();
    let (ok, out) = run(
        &tool("promtool"),
        &["test", "rules", tests.to_str().unwrap()],
        b"",
    )
    .await;
    assert!(ok, "promtool test rules:\n{out}");
    assert!(out.contains("SUCCESS"), "{out}");
    // Every alert of the file is unit-tested.
    let tested = std::fs::read_to_string(&tests).unwrap();
    let rule_text = std::fs::read_to_string(&rules).unwrap();
    for line in rule_text.lines() {
        if let Some(alert) = line.trim().strip_prefix("- alert: ") {
            assert!(
                tested.contains(&format!("alertname: {alert}")),
                "{alert} has no promtool test"
            );
        }
    }
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strictcheck_refuses_what_prometheus_operator_would_not_read() {
    let bad = r#"
apiVersion: monitoring.coreos.com/v1
kind: ServiceMonitor
metadata: {name: typo}
spec:
  selector: {matchLabels: {app: x}}
  endpoints:
    - port: metrics
      intervall: 30s
"#;
    let (ok, out) = run(&tool("strictcheck"), &[], bad.as_bytes()).await;
    assert!(!ok && out.contains("intervall"), "{out}");
    let bad = r#"
apiVersion: monitoring.coreos.com/v1
kind: PrometheusRule
metadata: {name: wrong-type}
spec:
  groups:
    - name: g
      rules:
        - alert: A
          expr: up == 0
          labels: [severity]
"#;
    let (ok, out) = run(&tool("strictcheck"), &[], bad.as_bytes()).await;
    assert!(!ok && out.contains("PrometheusRule/wrong-type"), "{out}");
}

/// The rendered documents, split into hooks (helm.sh/hook) and the rest.
fn split_hooks(rendered: &str) -> (String, String) {
    let (mut hooks, mut rest) = (String::new(), String::new());
    for doc in rendered.split("\n---") {
        let value: serde_yaml::Value = serde_yaml::from_str(doc).unwrap_or(serde_yaml::Value::Null);
        if value.is_null() {
            continue;
        }
        let is_hook = value["metadata"]["annotations"]["helm.sh/hook"].is_string();
        let target = if is_hook { &mut hooks } else { &mut rest };
        target.push_str("---\n");
        target.push_str(doc.trim_start_matches('\n'));
        target.push('\n');
    }
    (hooks, rest)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_chart_with_every_opt_in_decodes_strictly_and_applies_server_side() {
    let client = client().await;
    install_crds(&client).await;
    // prometheus-operator's CRDs, generated from the same pinned Go types strictcheck decodes into.
    let crds = monitoring_dir().join("crds");
    let kubeconfig = kubeconfig_path();
    let kc = kubeconfig.to_str().unwrap();
    for crd in ["servicemonitors", "prometheusrules"] {
        let file = crds.join(format!("monitoring.coreos.com_{crd}.yaml"));
        let (ok, out) = run(
            &bin("kubectl"),
            &[
                "--kubeconfig",
                kc,
                "apply",
                "--server-side",
                "-f",
                file.to_str().unwrap(),
            ],
            b"",
        )
        .await;
        assert!(ok, "apply the {crd} CRD:\n{out}");
        wait_for_condition(
            &Api::<CustomResourceDefinition>::all(client.clone()),
            &format!("{crd}.monitoring.coreos.com"),
            T,
            conditions::is_crd_established(),
        )
        .await;
    }
    // The release namespace enforces the restricted Pod Security Standard, as deploy/ does.
    let ns = TestNamespace::new(&client, "opt-ins").await;
    Api::<Namespace>::all(client.clone())
        .patch(
            &ns.name,
            &PatchParams::apply("vpsnap-tests"),
            &Patch::Apply(
                json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {
                "name": ns.name,
                "labels": {"pod-security.kubernetes.io/enforce": "restricted"}}}),
            ),
        )
        .await
        .unwrap();

    let rendered = render(&ns.name, EVERY_OPT_IN).await;
    let mut kinds: Vec<String> = rendered
        .lines()
        .filter_map(|l| l.strip_prefix("kind: ").map(str::to_string))
        .collect();
    kinds.sort();
    assert_eq!(
        kinds,
        [
            "ClusterRole",
            "ClusterRoleBinding",
            "ConfigMap",
            "Deployment",
            "NetworkPolicy",
            "Pod",
            "PodDisruptionBudget",
            "PrometheusRule",
            "Role",
            "RoleBinding",
            "Service",
            "ServiceAccount",
            "ServiceMonitor"
        ],
        "{rendered}"
    );
    let (ok, out) = run(
        &tool("strictcheck"),
        &["-want-kinds", "ServiceMonitor,PrometheusRule"],
        rendered.as_bytes(),
    )
    .await;
    assert!(ok, "strictcheck:\n{out}");

    let (hooks, objects) = split_hooks(&rendered);
    let (ok, out) = run(
        &bin("kubectl"),
        &[
            "--kubeconfig",
            kc,
            "-n",
            &ns.name,
            "apply",
            "--server-side",
            "-f",
            "-",
        ],
        objects.as_bytes(),
    )
    .await;
    assert!(ok, "server-side apply of the rendered chart:\n{out}");
    for object in [
        "prometheusrule.monitoring.coreos.com/vpsnap",
        "servicemonitor.monitoring.coreos.com/vpsnap",
        "configmap/vpsnap-dashboard",
        "networkpolicy.networking.k8s.io/vpsnap",
    ] {
        assert!(out.contains(object), "{object} not applied:\n{out}");
    }
    // The dashboard arrives intact and with the sidecar's label.
    let (ok, out) = run(
        &bin("kubectl"),
        &[
            "--kubeconfig",
            kc,
            "-n",
            &ns.name,
            "get",
            "configmap",
            "vpsnap-dashboard",
            "-o",
            "json",
        ],
        b"",
    )
    .await;
    assert!(ok, "{out}");
    let cm: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(cm["metadata"]["labels"]["grafana_dashboard"], "1");
    let dashboard: serde_json::Value =
        serde_json::from_str(cm["data"]["vpsnap.json"].as_str().unwrap()).unwrap();
    assert_eq!(dashboard["uid"], "vpsnap-overview");

    // No kubelet runs pods here: the `helm test` pod is validated by a server-side dry-run
    // (schema, defaulting, and the namespace's restricted Pod Security admission).
    assert!(hooks.contains("kind: Pod"), "{hooks}");
    let (ok, out) = run(
        &bin("kubectl"),
        &[
            "--kubeconfig",
            kc,
            "-n",
            &ns.name,
            "create",
            "--dry-run=server",
            "-f",
            "-",
        ],
        hooks.as_bytes(),
    )
    .await;
    assert!(ok, "server-side dry-run of the helm test pod:\n{out}");
    assert!(
        out.contains("pod/vpsnap-test-readyz created (server dry run)"),
        "{out}"
    );
    ns.delete().await;
}

/// Metric names a PromQL expression reads (vpsnap's own and the process_* ones).
fn metric_names(expr: &str) -> BTreeSet<String> {
    // Drop label matchers first: their values may look like names.
    let mut bare = String::new();
    let mut depth = 0;
    for c in expr.chars() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            _ if depth == 0 => bare.push(c),
            _ => {}
        }
    }
    bare.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
        .filter(|t| t.starts_with("vpsnap_") || t.starts_with("process_"))
        .map(str::to_string)
        .collect()
}

/// Sample names in an OpenMetrics scrape.
fn sample_names(scrape: &str) -> BTreeSet<String> {
    scrape
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| l.split(['{', ' ']).next())
        .map(str::to_string)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_metric_the_alerts_and_the_dashboard_use_is_on_a_running_operator() {
    let dir = temp_dir("metrics");
    let rules = std::fs::read_to_string(rendered_rules(&dir).await).unwrap();
    let rules: serde_yaml::Value = serde_yaml::from_str(&rules).unwrap();
    let mut used: HashMap<String, String> = HashMap::new();
    for group in rules["groups"].as_sequence().unwrap() {
        for rule in group["rules"].as_sequence().unwrap() {
            let alert = rule["alert"].as_str().unwrap();
            for m in metric_names(rule["expr"].as_str().unwrap()) {
                used.insert(m, format!("alert {alert}"));
            }
        }
    }
    let dashboard: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(format!("{CHART}/monitoring/dashboard.json")).unwrap(),
    )
    .unwrap();
    let mut queries = 0;
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().into_iter().flatten() {
            let expr = target["expr"].as_str().expect("every target has an expr");
            queries += 1;
            let names = metric_names(expr);
            assert!(
                !names.is_empty(),
                "panel {:?} reads no vpsnap metric: {expr}",
                panel["title"]
            );
            for m in names {
                used.insert(m, format!("dashboard panel {}", panel["title"]));
            }
        }
    }
    assert!(queries >= 20, "only {queries} dashboard queries found");

    // A running operator with something to report: a provider, a snapshot, a schedule.
    let w = World::new("metrics", sim_config(&[4200])).await;
    w.vps_rest_provider("acct", "good-token", json!({})).await;
    w.wait_ready::<VpsProvider>("acct", T).await;
    w.snapshot("s", "acct", 4200, json!({})).await;
    w.wait_ready::<VpsSnapshot>("s", T).await;
    apply(
        &w.ns.api::<VpsSnapshotSchedule>(),
        json!({"metadata": {"name": "nightly"}, "spec": {
            "providerRef": {"name": "acct"}, "serverIds": [4200], "schedule": "0 3 * * *"}}),
    )
    .await;
    wait_for(
        &w.ns.api::<VpsSnapshotSchedule>(),
        "nightly",
        T,
        |s: &VpsSnapshotSchedule| has_condition(s, "Ready", "True", None),
    )
    .await;
    let scrape = w.operator.as_ref().unwrap().metrics().await;
    let samples = sample_names(&scrape);
    let missing: Vec<String> = used
        .iter()
        .filter(|(name, _)| !samples.contains(*name))
        .map(|(name, by)| format!("{name} (used by {by})"))
        .collect();
    assert!(
        missing.is_empty(),
        "metrics used by the alerts or the dashboard but not on /metrics: {missing:#?}\n\nscrape:\n{scrape}"
    );
    // The standard process metrics and the queue are there too.
    for name in [
        "process_resident_memory_bytes",
        "process_cpu_seconds_total",
        "process_open_fds",
        "process_start_time_seconds",
        "vpsnap_reconcile_queue_depth",
        "vpsnap_leader",
    ] {
        assert!(samples.contains(name), "{name} missing:\n{scrape}");
    }
    assert!(scrape.contains("vpsnap_leader 1"), "{scrape}");
    assert!(
        scrape.contains(r#"vpsnap_objects{kind="VpsSnapshot",phase="Ready"} 1"#),
        "{scrape}"
    );
    w.stop().await;
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_helm_test_probe_and_the_runtime_log_level_work_on_a_running_operator() {
    let client = client().await;
    install_crds(&client).await;
    let ns = TestNamespace::new(&client, "probe").await;
    let op = Operator::start(&ns.name).await;
    let readyz = format!("http://{}/readyz", op.metrics_addr);
    let probe = env!("CARGO_BIN_EXE_vpsnap");
    // The hook's exact command, until the operator's caches have synced.
    let start = Instant::now();
    loop {
        let (ok, out) = run(probe, &["probe", &readyz, "--timeout=2s"], b"").await;
        if ok {
            assert!(out.contains("200 OK ok"), "{out}");
            break;
        }
        assert!(start.elapsed() < T, "vpsnap probe never succeeded: {out}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let closed = free_addr();
    let (ok, out) = run(
        probe,
        &["probe", &format!("http://{closed}/readyz"), "--timeout=2s"],
        b"",
    )
    .await;
    assert!(!ok && out.contains(&closed.to_string()), "{out}");

    // Log level at run time: read, changed from loopback (as through kubectl port-forward),
    // refused when malformed.
    let url = format!("http://{}/debug/log-level", op.metrics_addr);
    vpsnap::provider::install_crypto_provider();
    let http = reqwest::Client::new();
    let level = || async {
        let r = http.get(&url).send().await.unwrap();
        r.text().await.unwrap().trim().to_string()
    };
    let put = |filter: &'static str| http.put(&url).body(filter).send();
    let started_with = std::env::var("VPSNAP_TEST_LOG").unwrap_or_else(|_| "info,kube=warn".into());
    assert_eq!(level().await, started_with);
    assert_eq!(put("debug,kube=info").await.unwrap().status(), 200);
    assert_eq!(level().await, "debug,kube=info");
    let refused = put("info,vpsnap=loud").await.unwrap();
    assert_eq!(refused.status(), 400);
    assert!(refused.text().await.unwrap().contains("invalid filter"));
    assert_eq!(
        level().await,
        "debug,kube=info",
        "a refused filter changes nothing"
    );
    op.kill().await;
    ns.delete().await;
}
