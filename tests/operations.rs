//! The procedures of docs/operations.md, run as written: the shell blocks are taken from the
//! document itself (scoped to the test's namespace instead of `-A`) and run with the real
//! kubectl against the real control plane, the operator and the simulator. A lost cluster
//! re-imports every snapshot and backup by provider id without a single new create; an uninstall
//! in the documented order strands no finalizer and keeps the provider data it was told to keep.
mod support;

use std::time::Duration;

use serde_json::json;
use support::*;
use vpsnap::api::{VpsBackup, VpsProvider, VpsSnapshot};

const T: Duration = Duration::from_secs(60);
const SERVER: u64 = 4300;

/// The shell code blocks of docs/operations.md.
fn doc_blocks() -> Vec<String> {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/operations.md"))
        .unwrap();
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in doc.lines() {
        let trimmed = line.trim_start();
        match (&mut current, trimmed) {
            (None, "```sh") => current = Some(String::new()),
            (Some(b), "```") => {
                blocks.push(std::mem::take(b));
                current = None;
            }
            (Some(b), _) => {
                // Blocks inside list items are indented by three spaces.
                b.push_str(line.strip_prefix("   ").unwrap_or(line));
                b.push('\n');
            }
            (None, _) => {}
        }
    }
    blocks
}

/// The one block containing `marker`, scoped from all namespaces to `namespace`.
fn doc_block(marker: &str, namespace: &str) -> String {
    let found: Vec<String> = doc_blocks()
        .into_iter()
        .filter(|b| b.contains(marker))
        .collect();
    assert_eq!(
        found.len(),
        1,
        "docs/operations.md: one block with {marker:?}"
    );
    found[0].replace(" -A ", &format!(" -n {namespace} "))
}

/// Runs `script` with bash in `dir`, with the test's kubectl and kubeconfig.
async fn sh(script: &str, dir: &std::path::Path) -> String {
    let bin = std::env::var("VPSNAP_TEST_BIN_DIR").expect("VPSNAP_TEST_BIN_DIR");
    let out = tokio::process::Command::new("bash")
        .arg("-euo")
        .arg("pipefail")
        .arg("-c")
        .arg(script)
        .current_dir(dir)
        .env("KUBECONFIG", kubeconfig_path())
        .env(
            "PATH",
            format!("{bin}:{}", std::env::var("PATH").unwrap_or_default()),
        )
        .output()
        .await
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "script failed:\n{script}\n---\n{text}"
    );
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_cluster_reimports_every_restore_point_by_provider_id() {
    let dir = std::env::temp_dir().join(format!("vpsnap-dr-{:08x}", rand::random::<u32>()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut w = World::new("dr-old", sim_config(&[SERVER])).await;
    w.vps_rest_provider("acct", "good-token", json!({})).await;
    w.wait_ready::<VpsProvider>("acct", T).await;
    w.snapshot("web-a", "acct", SERVER, json!({})).await;
    w.snapshot(
        "web-b",
        "acct",
        SERVER,
        json!({"description": "before the upgrade"}),
    )
    .await;
    w.backup("web-nightly", "acct", SERVER, json!({})).await;
    let mut ids = Vec::new();
    for name in ["web-a", "web-b"] {
        let s: VpsSnapshot = w.wait_ready(name, T).await;
        ids.push(s.status.unwrap().provider_id.unwrap());
    }
    let b: VpsBackup = w.wait_ready("web-nightly", T).await;
    ids.push(b.status.unwrap().provider_id.unwrap());
    let creates = w.sim.record().creates.len();
    assert_eq!(creates, 3);

    // "Backing up the vpsnap objects": the inventory, as documented.
    sh(&doc_block("> vpsnap-inventory.csv", &w.ns.name), &dir).await;
    let inventory = std::fs::read_to_string(dir.join("vpsnap-inventory.csv")).unwrap();
    assert_eq!(inventory.lines().count(), 3, "{inventory}");

    // The cluster is lost: the objects go, the provider data stays ("Uninstall", step 1 with
    // Retain, then step 2 for the restore points).
    sh(
        &doc_block("\"deletionPolicy\":\"Retain\"", &w.ns.name),
        &dir,
    )
    .await;
    sh(
        &format!("kubectl delete vpss,vpsb --all -n {} --wait", w.ns.name),
        &dir,
    )
    .await;
    assert_eq!(
        w.sim.snapshots(SERVER).len(),
        2,
        "Retain kept the snapshots"
    );
    if let Some(op) = w.operator.take() {
        op.kill().await;
    }

    // A new cluster (here: a new namespace, a new operator), the providers first.
    let old_ns = w.ns.name.clone();
    let new = World::new("dr-new", sim_config(&[])).await;
    let fresh = new.ns.name.clone();
    // The new world's own simulator is unused: the provider points at the old one, which holds
    // the data, as a real provider would.
    new.ns
        .secret("acct-credentials", &[("token", "good-token")])
        .await;
    apply(
        &new.ns.api::<VpsProvider>(),
        json!({"metadata": {"name": "acct"}, "spec": {
            "type": "VpsRest", "endpoint": w.sim.vps_rest_url(),
            "credentialsSecretRef": {"name": "acct-credentials"}, "pollInterval": "1s"}}),
    )
    .await;
    new.wait_ready::<VpsProvider>("acct", T).await;
    let moved = inventory.replace(&format!(",{old_ns},"), &format!(",{fresh},"));
    std::fs::write(dir.join("vpsnap-inventory.csv"), moved).unwrap();
    // "Disaster recovery", as documented.
    sh(&doc_block("done < vpsnap-inventory.csv", &fresh), &dir).await;

    for (name, id) in ["web-a", "web-b"].iter().zip(&ids) {
        let s: VpsSnapshot = new.wait_ready(name, T).await;
        assert_eq!(s.status.unwrap().provider_id.as_ref(), Some(id));
    }
    let b: VpsBackup = new.wait_ready("web-nightly", T).await;
    assert_eq!(b.status.unwrap().provider_id.as_ref(), Some(&ids[2]));
    assert_eq!(
        w.sim.record().creates.len(),
        creates,
        "re-importing created nothing at the provider"
    );
    new.stop().await;
    w.stop().await;
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_uninstall_in_the_documented_order_strands_no_finalizer() {
    let dir = std::env::temp_dir().join(format!("vpsnap-un-{:08x}", rand::random::<u32>()));
    std::fs::create_dir_all(&dir).unwrap();
    let w = World::new("uninstall", sim_config(&[SERVER + 1])).await;
    w.vps_rest_provider("acct", "good-token", json!({})).await;
    w.wait_ready::<VpsProvider>("acct", T).await;
    for i in 0..3 {
        w.snapshot(&format!("s{i}"), "acct", SERVER + 1, json!({}))
            .await;
    }
    for i in 0..3 {
        let s: VpsSnapshot = w.wait_ready(&format!("s{i}"), T).await;
        assert!(
            s.metadata
                .finalizers
                .unwrap_or_default()
                .contains(&"vpsnap.dev/cleanup".to_string()),
            "owned objects carry the finalizer the uninstall must not strand"
        );
    }
    apply(
        &w.ns.api::<vpsnap::api::VpsSnapshotSchedule>(),
        json!({"metadata": {"name": "nightly"}, "spec": {
            "providerRef": {"name": "acct"}, "serverIds": [SERVER + 1], "schedule": "0 3 * * *"}}),
    )
    .await;

    // Step 1 (keep the provider data), step 2 (delete, providers last), as documented.
    sh(
        &doc_block("\"deletionPolicy\":\"Retain\"", &w.ns.name),
        &dir,
    )
    .await;
    let delete = doc_block("kubectl delete vpsp --all", &w.ns.name);
    let out = sh(&delete, &dir).await;
    assert!(out.contains("deleted"), "{out}");
    let left = sh(
        &format!(
            "kubectl get vpsp,vpss,vpsb,vpsss,vpsr -n {} -o name",
            w.ns.name
        ),
        &dir,
    )
    .await;
    assert!(left.trim().is_empty(), "objects left behind: {left}");
    assert_eq!(
        w.sim.snapshots(SERVER + 1).len(),
        3,
        "Retain kept the provider data"
    );
    w.stop().await;
    let _ = std::fs::remove_dir_all(dir);
}
