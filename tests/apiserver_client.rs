//! The operator's client for writes on a real kube-apiserver: it negotiates HTTP/2 and carries
//! many writes at once on a fixed few connections (the reason it exists: reconciles in flight
//! must not each cost a TLS connection).
mod support;

use std::collections::BTreeSet;
use std::time::Duration;

use futures::{StreamExt, TryStreamExt, stream};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Config, ResourceExt};
use support::*;
use vpsnap::controller::apiserver_client::CONNECTIONS;

const WRITES: usize = 200;

#[tokio::test]
async fn a_few_http2_connections_carry_200_writes_at_once_beside_a_watch() {
    let kc = Kubeconfig::read_from(kubeconfig_path()).expect("read kubeconfig");
    let config = Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .expect("kubeconfig");
    let apiserver_port = config
        .cluster_url
        .port_u16()
        .expect("port in the cluster URL");
    let client = vpsnap::controller::apiserver_client::build(config).expect("client");

    let version = client
        .send(
            http::Request::get("/version")
                .body(Vec::new().into())
                .unwrap(),
        )
        .await
        .expect("GET /version");
    assert_eq!(
        version.version(),
        http::Version::HTTP_2,
        "HTTP/2 negotiated"
    );

    let ns = TestNamespace::new(&client, "h2").await;
    let api: Api<ConfigMap> = ns.api();
    let seen = tokio::spawn({
        let api = api.clone();
        async move {
            let mut names = BTreeSet::new();
            let mut events = watcher(api, watcher::Config::default())
                .applied_objects()
                .boxed();
            while names.len() < WRITES {
                let cm = events.try_next().await.expect("watch").expect("watch open");
                names.insert(cm.name_any());
            }
            names
        }
    });
    let created: Vec<String> = stream::iter(0..WRITES)
        .map(|i| {
            let api = api.clone();
            async move {
                let mut cm = ConfigMap::default();
                cm.metadata.name = Some(format!("cm-{i:03}"));
                api.create(&PostParams::default(), &cm)
                    .await
                    .expect("create")
                    .name_any()
            }
        })
        .buffer_unordered(WRITES)
        .collect()
        .await;
    assert_eq!(created.len(), WRITES);
    let seen = tokio::time::timeout(Duration::from_secs(120), seen)
        .await
        .expect("the watch saw every write")
        .expect("watch task");
    assert_eq!(seen, created.into_iter().collect::<BTreeSet<_>>());

    let connections = connections_to(apiserver_port);
    assert!(
        connections <= CONNECTIONS,
        "200 writes and a watch shared at most {CONNECTIONS} connections to the apiserver, found {connections}"
    );
    ns.delete().await;
}

/// This process's established TCP connections to `port` on the loopback: its socket inodes
/// (from /proc/self/fd) matched against the kernel's table.
fn connections_to(port: u16) -> usize {
    let inodes: BTreeSet<String> = std::fs::read_dir("/proc/self/fd")
        .expect("/proc/self/fd")
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter_map(|l| {
            let l = l.to_string_lossy().into_owned();
            Some(l.strip_prefix("socket:[")?.strip_suffix(']')?.to_string())
        })
        .collect();
    let port_hex = format!(":{port:04X}");
    ["/proc/self/net/tcp", "/proc/self/net/tcp6"]
        .iter()
        .filter_map(|p| std::fs::read_to_string(p).ok())
        .flat_map(|table| table.lines().skip(1).map(str::to_owned).collect::<Vec<_>>())
        .filter(|row| {
            let f: Vec<&str> = row.split_whitespace().collect();
            // remote address, state 01 = ESTABLISHED, inode
            f.len() > 9 && f[2].ends_with(&port_hex) && f[3] == "01" && inodes.contains(f[9])
        })
        .count()
}
