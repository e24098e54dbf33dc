//! The CRDs on a real kube-apiserver: they install, accept a valid object, and reject bad
//! manifests at admission with a message naming the field.
mod support;

use std::time::Duration;

use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use support::*;
use vpsnap::api::VpsSnapshot;

#[test]
fn crd_output_matches_deploy_crds() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/crds");
    let generated = vpsnap::api::crds_yaml();
    for (file, body) in &generated {
        let on_disk = std::fs::read_to_string(dir.join(file)).unwrap_or_else(|_| {
            panic!("deploy/crds/{file} is missing: run `cargo run -- crd --out deploy/crds`")
        });
        assert_eq!(
            &on_disk, body,
            "deploy/crds/{file} drifted from the code: run `cargo run -- crd --out deploy/crds`"
        );
    }
    let files = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.path().extension().is_some_and(|x| x == "yaml"))
        .count();
    assert_eq!(
        files,
        generated.len(),
        "deploy/crds holds CRD files the code no longer generates"
    );
}

fn snapshot(name: &str, spec: Value) -> Value {
    json!({"apiVersion": "vpsnap.dev/v1alpha1", "kind": "VpsSnapshot", "metadata": {"name": name}, "spec": spec})
}

async fn create(api: &Api<VpsSnapshot>, obj: Value) -> Result<VpsSnapshot, kube::Error> {
    let obj: VpsSnapshot = match serde_json::from_value(obj.clone()) {
        Ok(o) => o,
        // Some bad manifests cannot be expressed in the Rust type; send them raw.
        Err(_) => {
            let raw: Api<kube::api::DynamicObject> = Api::namespaced_with(
                api.clone().into_client(),
                obj["metadata"]["namespace"].as_str().unwrap_or_default(),
                &kube::api::ApiResource::erase::<VpsSnapshot>(&()),
            );
            let d: kube::api::DynamicObject = serde_json::from_value(obj).unwrap();
            return raw
                .create(&PostParams::default(), &d)
                .await
                .map(|d| serde_json::from_value(serde_json::to_value(d).unwrap()).unwrap());
        }
    };
    api.create(&PostParams::default(), &obj).await
}

fn rejection(result: Result<VpsSnapshot, kube::Error>) -> String {
    match result {
        Ok(o) => panic!("expected admission to reject, but it accepted {o:?}"),
        Err(kube::Error::Api(s)) => {
            assert_eq!(s.code, 422, "expected 422 Invalid, got {s:?}");
            s.message
        }
        Err(e) => panic!("unexpected error {e}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admission_accepts_valid_and_rejects_bad_snapshots() {
    let client = client().await;
    install_crds(&client).await;
    let ns = TestNamespace::new(&client, "crds").await;
    let api: Api<VpsSnapshot> = ns.api();
    let with_ns = |mut v: Value| {
        v["metadata"]["namespace"] = json!(ns.name);
        v
    };
    let good =
        json!({"providerRef": {"name": "p"}, "serverId": 12345, "snapshotName": "pre_upgrade-1"});
    create(&api, with_ns(snapshot("good", good.clone())))
        .await
        .expect("a valid VpsSnapshot is accepted");

    let msg = rejection(
        create(
            &api,
            with_ns(snapshot(
                "zero",
                json!({"providerRef": {"name": "p"}, "serverId": 0}),
            )),
        )
        .await,
    );
    assert!(msg.contains("spec.serverId"), "{msg}");
    for bad_name in ["has space", "has.dot"] {
        let msg = rejection(
            create(
                &api,
                with_ns(snapshot(
                    "badname",
                    json!({"providerRef": {"name": "p"}, "serverId": 1, "snapshotName": bad_name}),
                )),
            )
            .await,
        );
        assert!(msg.contains("spec.snapshotName"), "{msg}");
    }
    let msg = rejection(
        create(
            &api,
            with_ns(snapshot(
                "policy",
                json!({"providerRef": {"name": "p"}, "serverId": 1, "deletionPolicy": "Orphan"}),
            )),
        )
        .await,
    );
    assert!(
        msg.contains("spec.deletionPolicy") && msg.contains("Delete") && msg.contains("Retain"),
        "{msg}"
    );

    // One duration grammar: what the apiserver admits is exactly what the operator parses.
    for (i, deadline) in ["1h30m", "90s", "250ms"].iter().enumerate() {
        let spec =
            json!({"providerRef": {"name": "p"}, "serverId": 1, "failureDeadline": deadline});
        create(&api, with_ns(snapshot(&format!("deadline-{i}"), spec)))
            .await
            .unwrap_or_else(|e| panic!("failureDeadline {deadline} refused: {e}"));
        vpsnap::api::duration::parse(deadline).expect("the operator parses what was admitted");
    }
    for deadline in ["", "30", "1m1h", "1h1h", "1.5h", "2d", "5 m", "1234567890s"] {
        let spec =
            json!({"providerRef": {"name": "p"}, "serverId": 1, "failureDeadline": deadline});
        let msg = rejection(create(&api, with_ns(snapshot("bad-deadline", spec))).await);
        assert!(msg.contains("spec.failureDeadline"), "{deadline:?}: {msg}");
        assert!(
            vpsnap::api::duration::parse(deadline).is_err(),
            "{deadline:?}"
        );
    }

    // Identity fields are immutable.
    let pp = PatchParams::default();
    let err = api
        .patch(
            "good",
            &pp,
            &Patch::Merge(json!({"spec": {"serverId": 999}})),
        )
        .await
        .unwrap_err();
    let kube::Error::Api(s) = err else {
        panic!("expected API error")
    };
    assert!(s.message.contains("serverId is immutable"), "{}", s.message);
    let err = api
        .patch(
            "good",
            &pp,
            &Patch::Merge(json!({"spec": {"providerRef": {"name": "other"}}})),
        )
        .await
        .unwrap_err();
    let kube::Error::Api(s) = err else {
        panic!("expected API error")
    };
    assert!(
        s.message.contains("providerRef is immutable"),
        "{}",
        s.message
    );
    // A mutable field still changes.
    api.patch(
        "good",
        &pp,
        &Patch::Merge(json!({"spec": {"pinned": true}})),
    )
    .await
    .expect("pinned is mutable");
    ns.delete().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_get_shows_printer_columns() {
    let client = client().await;
    install_crds(&client).await;
    let ns = TestNamespace::new(&client, "columns").await;
    let api: Api<VpsSnapshot> = ns.api();
    let obj: VpsSnapshot = serde_json::from_value(snapshot(
        "cols",
        json!({"providerRef": {"name": "p"}, "serverId": 4242}),
    ))
    .unwrap();
    api.create(&PostParams::default(), &obj).await.unwrap();
    let bin =
        std::env::var("VPSNAP_TEST_BIN_DIR").expect("VPSNAP_TEST_BIN_DIR (set by scripts/test.sh)");
    let out = std::process::Command::new(format!("{bin}/kubectl"))
        .args([
            "--kubeconfig",
            kubeconfig_path().to_str().unwrap(),
            "-n",
            &ns.name,
            "get",
            "vpss",
        ])
        .output()
        .expect("run kubectl");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "kubectl failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let header = text.lines().next().unwrap_or_default();
    for col in ["NAME", "SERVER", "PHASE", "READY", "SIZE", "AGE"] {
        assert!(header.contains(col), "missing column {col} in {header:?}");
    }
    assert!(text.contains("4242"), "{text}");
    tokio::time::timeout(Duration::from_secs(5), ns.delete())
        .await
        .ok();
}
