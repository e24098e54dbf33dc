//! OpenTelemetry traces (cargo feature `otel`): the operator, a real process started with
//! `--otel-traces`, exports over OTLP to a receiver in this test process, over HTTP/protobuf
//! and over gRPC. One create must read as one tree:
//! reconcile → listing (→ provider list) → claim → provider create → status write.
#![cfg(feature = "otel")]
mod support;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use prost::Message;
use serde_json::json;
use support::*;
use vpsnap::api::{VpsProvider, VpsSnapshot};

const T: Duration = Duration::from_secs(60);
const TOKEN: &str = "good-token";

/// A received span, flattened.
#[derive(Clone, Debug)]
struct Span {
    trace: Vec<u8>,
    id: Vec<u8>,
    parent: Vec<u8>,
    name: String,
    attrs: HashMap<String, String>,
    service: String,
}

type Received = Arc<Mutex<Vec<Span>>>;

fn value(v: &Option<opentelemetry_proto::tonic::common::v1::AnyValue>) -> String {
    match v.as_ref().and_then(|v| v.value.as_ref()) {
        Some(Value::StringValue(s)) => s.clone(),
        Some(Value::IntValue(i)) => i.to_string(),
        Some(Value::BoolValue(b)) => b.to_string(),
        Some(Value::DoubleValue(d)) => d.to_string(),
        other => format!("{other:?}"),
    }
}

fn collect(request: ExportTraceServiceRequest, into: &Received) {
    let mut spans = into.lock().unwrap();
    for rs in request.resource_spans {
        let service = rs
            .resource
            .iter()
            .flat_map(|r| &r.attributes)
            .find(|a| a.key == "service.name")
            .map(|a| value(&a.value))
            .unwrap_or_default();
        for ss in rs.scope_spans {
            for s in ss.spans {
                spans.push(Span {
                    trace: s.trace_id,
                    id: s.span_id,
                    parent: s.parent_span_id,
                    name: s.name,
                    attrs: s
                        .attributes
                        .iter()
                        .map(|a| (a.key.clone(), value(&a.value)))
                        .collect(),
                    service: service.clone(),
                });
            }
        }
    }
}

/// An OTLP/HTTP receiver (`POST /v1/traces`, protobuf) on a free port.
async fn http_receiver() -> (SocketAddr, Received) {
    let received: Received = Default::default();
    let sink = received.clone();
    let app = axum::Router::new().route(
        "/v1/traces",
        axum::routing::post(move |body: Bytes| {
            let sink = sink.clone();
            async move {
                match ExportTraceServiceRequest::decode(body) {
                    Ok(request) => {
                        collect(request, &sink);
                        (
                            axum::http::StatusCode::OK,
                            [("content-type", "application/x-protobuf")],
                            ExportTraceServiceResponse::default().encode_to_vec(),
                        )
                    }
                    Err(_) => (
                        axum::http::StatusCode::BAD_REQUEST,
                        [("content-type", "text/plain")],
                        b"not an ExportTraceServiceRequest".to_vec(),
                    ),
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (addr, received)
}

struct GrpcSink(Received);

#[tonic::async_trait]
impl TraceService for GrpcSink {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        collect(request.into_inner(), &self.0);
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

/// An OTLP/gRPC receiver on a free port.
async fn grpc_receiver() -> (SocketAddr, Received) {
    let received: Received = Default::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let service = TraceServiceServer::new(GrpcSink(received.clone()));
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener)),
    );
    (addr, received)
}

/// A namespace, a simulator and an operator exporting traces with `env`.
async fn world(prefix: &str, env: &[(&str, &str)]) -> World {
    let client = client().await;
    install_crds(&client).await;
    let ns = TestNamespace::new(&client, prefix).await;
    let sim = simulator(sim_config(&[4100])).await;
    let operator =
        Operator::start_env(&ns.name, "vpsnap-traces", &["--otel-traces"], None, env).await;
    World {
        client,
        ns,
        sim,
        operator: Some(operator),
    }
}

/// Waits until `pred` holds for what was received.
async fn wait_spans(received: &Received, what: &str, pred: impl Fn(&[Span]) -> bool) -> Vec<Span> {
    let start = Instant::now();
    loop {
        let spans = received.lock().unwrap().clone();
        if pred(&spans) {
            return spans;
        }
        if start.elapsed() > T {
            let names: Vec<_> = spans.iter().map(|s| (&s.name, &s.attrs)).collect();
            panic!("no {what} among {} spans received: {names:#?}", spans.len());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn is_reconcile_of(s: &Span, kind: &str, name: &str) -> bool {
    s.name == "reconcile"
        && s.attrs.get("kind").map(String::as_str) == Some(kind)
        && s.attrs.get("name").map(String::as_str) == Some(name)
}

fn children<'a>(spans: &'a [Span], parent: &Span) -> Vec<&'a Span> {
    spans
        .iter()
        .filter(|s| s.trace == parent.trace && s.parent == parent.id)
        .collect()
}

/// The reconcile of `name` that created its snapshot, with its child spans.
fn create_tree<'a>(spans: &'a [Span], name: &str) -> Option<(&'a Span, Vec<&'a Span>)> {
    spans
        .iter()
        .filter(|s| is_reconcile_of(s, "VpsSnapshot", name))
        .map(|r| (r, children(spans, r)))
        .find(|(_, kids)| {
            kids.iter().any(|k| {
                k.name == "provider.request"
                    && k.attrs.get("operation").map(String::as_str) == Some("create_snapshot")
            })
        })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_create_is_one_trace_over_otlp_http() {
    let (addr, received) = http_receiver().await;
    let endpoint = format!("http://{addr}");
    let w = world(
        "traces-http",
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
            ("OTEL_BSP_SCHEDULE_DELAY", "200"),
        ],
    )
    .await;
    w.vps_rest_provider("acct", TOKEN, json!({})).await;
    w.wait_ready::<VpsProvider>("acct", T).await;
    w.snapshot("traced", "acct", 4100, json!({})).await;
    w.wait_ready::<VpsSnapshot>("traced", T).await;

    let spans = wait_spans(&received, "reconcile that created `traced`", |s| {
        create_tree(s, "traced").is_some()
    })
    .await;
    let (reconcile, kids) = create_tree(&spans, "traced").unwrap();

    // The reconcile is the root of its trace and names the object.
    assert!(
        reconcile.parent.is_empty(),
        "the reconcile span has a parent: {reconcile:?}"
    );
    assert_eq!(reconcile.attrs["namespace"], w.ns.name);
    assert_eq!(reconcile.attrs["result"], "ok");
    assert_eq!(reconcile.service, "vpsnap");

    // Its children, in order: listing, claim, the provider create, the status write.
    let order: Vec<&str> = kids.iter().map(|k| k.name.as_str()).collect();
    let position = |name: &str| {
        order
            .iter()
            .position(|n| *n == name)
            .unwrap_or_else(|| panic!("no {name} span under the reconcile; children: {order:?}"))
    };
    assert!(
        position("listing") < position("claim")
            && position("claim") < position("provider.request")
            && position("provider.request") < position("status_write"),
        "children out of order: {order:?}"
    );
    let listing = kids.iter().find(|k| k.name == "listing").unwrap();
    assert_eq!(listing.attrs["server"], "4100");
    assert_eq!(listing.attrs["class"], "snapshot");
    let list_call = children(&spans, listing)
        .into_iter()
        .find(|s| s.name == "provider.request")
        .expect("the listing made a provider call");
    assert_eq!(list_call.attrs["operation"], "list_snapshots");
    assert_eq!(list_call.attrs["http.request.method"], "GET");
    assert_eq!(
        list_call.attrs["url.template"],
        "snapshots/?server_id={server_id}"
    );
    assert_eq!(list_call.attrs["http.response.status_code"], "200");

    let create = kids.iter().find(|k| k.name == "provider.request").unwrap();
    assert_eq!(create.attrs["provider"], "vps_rest");
    assert_eq!(create.attrs["operation"], "create_snapshot");
    assert_eq!(create.attrs["http.request.method"], "POST");
    assert_eq!(create.attrs["url.template"], "snapshots/");
    assert_eq!(create.attrs["http.response.status_code"], "201");
    assert_eq!(create.attrs["retry_count"], "0");
    assert_eq!(create.attrs["outcome"], "ok");
    assert_eq!(
        kids.iter().find(|k| k.name == "claim").unwrap().attrs["create"],
        "true"
    );

    // Nothing secret in any span: no token, no configured endpoint (templates only).
    let provider_url = w.sim.vps_rest_url();
    for s in &spans {
        for (k, v) in &s.attrs {
            assert!(
                !v.contains(TOKEN) && !v.contains(&provider_url),
                "span {} attribute {k}={v:?} leaks",
                s.name
            );
        }
    }
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconciles_are_exported_over_otlp_grpc() {
    let (addr, received) = grpc_receiver().await;
    let endpoint = format!("http://{addr}");
    let w = world(
        "traces-grpc",
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
            ("OTEL_BSP_SCHEDULE_DELAY", "200"),
            ("OTEL_SERVICE_NAME", "vpsnap-grpc-test"),
        ],
    )
    .await;
    w.vps_rest_provider("acct", TOKEN, json!({})).await;
    w.snapshot("traced", "acct", 4100, json!({})).await;
    w.wait_ready::<VpsSnapshot>("traced", T).await;
    let spans = wait_spans(&received, "reconcile that created `traced`", |s| {
        create_tree(s, "traced").is_some()
    })
    .await;
    let (reconcile, _) = create_tree(&spans, "traced").unwrap();
    assert_eq!(reconcile.service, "vpsnap-grpc-test");
    assert!(
        spans
            .iter()
            .any(|s| is_reconcile_of(s, "VpsProvider", "acct")),
        "every kind's reconciles are traced"
    );
    w.stop().await;
}
