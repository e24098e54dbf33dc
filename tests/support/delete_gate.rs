//! A validating admission webhook that holds chosen DELETE requests inside the real
//! kube-apiserver until the test lets them go.
//!
//! The apiserver decides whether a DELETE may remove an object at once (no finalizers) when it
//! first reads it, then runs validating admission, then deletes whatever version is current —
//! without looking at finalizers again (kubernetes/kubernetes#77988, still open in 1.37). A
//! webhook that answers late stretches that window so a test can put another writer inside it
//! deterministically instead of hoping for the timing.
//!
//! The webhook is served over HTTPS on 127.0.0.1 with the test control plane's own serving
//! certificate (its SAN covers 127.0.0.1), and the apiserver trusts it by that CA.
use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::routing::post;
use kube::Client;
use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams};
use kube::discovery::ApiResource;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::{Value, json};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

#[derive(Default)]
struct Seen {
    /// Names whose DELETE reached the webhook, in any state.
    deletes: BTreeSet<String>,
}

#[derive(Clone)]
struct Shared {
    held: String,
    seen: Arc<Mutex<Seen>>,
    open: watch::Receiver<bool>,
}

/// Holds every DELETE of one object name in one namespace until [`DeleteGate::open`].
pub struct DeleteGate {
    client: Client,
    config_name: String,
    seen: Arc<Mutex<Seen>>,
    open: watch::Sender<bool>,
    server: tokio::task::JoinHandle<()>,
}

fn registration_api(client: &Client) -> Api<DynamicObject> {
    let ar = ApiResource {
        group: "admissionregistration.k8s.io".into(),
        version: "v1".into(),
        api_version: "admissionregistration.k8s.io/v1".into(),
        kind: "ValidatingWebhookConfiguration".into(),
        plural: "validatingwebhookconfigurations".into(),
    };
    Api::all_with(client.clone(), &ar)
}

impl DeleteGate {
    /// Serves the webhook and registers it for DELETEs of `resource` (plural, group
    /// vpsnap.dev) in `namespace`; the DELETE of `held` waits until the gate opens.
    pub async fn start(client: &Client, namespace: &str, resource: &str, held: &str) -> Self {
        let pki = super::kubeconfig_path()
            .parent()
            .expect("kubeconfig directory")
            .join("pki");
        let read = |f: &str| {
            std::fs::read(pki.join(f)).unwrap_or_else(|e| panic!("read {f} in {pki:?}: {e}"))
        };
        let certs: Vec<CertificateDer<'static>> =
            CertificateDer::pem_slice_iter(&read("apiserver.crt"))
                .collect::<Result<_, _>>()
                .expect("serving certificate");
        let key = PrivateKeyDer::from_pem_slice(&read("apiserver.key")).expect("serving key");
        let tls = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .expect("TLS config");
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (open, open_rx) = watch::channel(false);
        let seen = Arc::new(Mutex::new(Seen::default()));
        let shared = Shared {
            held: held.to_string(),
            seen: seen.clone(),
            open: open_rx,
        };
        let app = axum::Router::new()
            .route("/validate", post(review))
            .with_state(shared);
        let tls_listener = TlsListener {
            tcp: listener,
            acceptor: TlsAcceptor::from(Arc::new(tls)),
        };
        let server = tokio::spawn(async move {
            let _ = axum::serve(tls_listener, app).await;
        });

        let config_name = format!("vpsnap-test-delete-gate-{namespace}");
        let ca = base64(&read("ca.crt"));
        let body = json!({
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "ValidatingWebhookConfiguration",
            "metadata": {"name": config_name},
            "webhooks": [{
                "name": "delete-gate.vpsnap.dev",
                "clientConfig": {"url": format!("https://{addr}/validate"), "caBundle": ca},
                "rules": [{
                    "apiGroups": ["vpsnap.dev"], "apiVersions": ["*"],
                    "operations": ["DELETE"], "resources": [resource],
                }],
                "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}},
                "failurePolicy": "Fail",
                "sideEffects": "None",
                "admissionReviewVersions": ["v1"],
                "timeoutSeconds": 30,
            }],
        });
        registration_api(client)
            .patch(
                &config_name,
                &PatchParams::apply("vpsnap-tests").force(),
                &Patch::Apply(&body),
            )
            .await
            .expect("register the webhook");
        DeleteGate {
            client: client.clone(),
            config_name,
            seen,
            open,
            server,
        }
    }

    /// Whether a DELETE of `name` has reached the webhook.
    pub fn saw_delete_of(&self, name: &str) -> bool {
        self.seen.lock().unwrap().deletes.contains(name)
    }

    /// Waits until a DELETE of `name` reaches the webhook (panics after `timeout`).
    pub async fn wait_for_delete_of(&self, name: &str, timeout: Duration) {
        let what = format!("a DELETE of {name} reaches the webhook");
        super::wait_until(&what, timeout, || async {
            if self.saw_delete_of(name) {
                Ok(())
            } else {
                Err(format!("{:?}", self.seen.lock().unwrap().deletes))
            }
        })
        .await;
    }

    /// Lets every held DELETE (and any later one) through.
    pub fn open(&self) {
        let _ = self.open.send(true);
    }

    /// Opens the gate, unregisters the webhook and stops serving it.
    pub async fn remove(self) {
        self.open();
        let _ = registration_api(&self.client)
            .delete(&self.config_name, &DeleteParams::default())
            .await;
        self.server.abort();
    }
}

async fn review(State(s): State<Shared>, Json(review): Json<Value>) -> Json<Value> {
    let request = &review["request"];
    let uid = request["uid"].clone();
    let name = request["name"].as_str().unwrap_or_default().to_string();
    if request["operation"] == "DELETE" {
        s.seen.lock().unwrap().deletes.insert(name.clone());
        if name == s.held {
            let mut open = s.open.clone();
            let _ = open.wait_for(|o| *o).await;
        }
    }
    Json(json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "response": {"uid": uid, "allowed": true},
    }))
}

struct TlsListener {
    tcp: TcpListener,
    acceptor: TlsAcceptor,
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let Ok((tcp, addr)) = self.tcp.accept().await else {
                continue;
            };
            if let Ok(tls) = self.acceptor.accept(tcp).await {
                return (tls, addr);
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.tcp.local_addr()
    }
}

fn base64(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}
