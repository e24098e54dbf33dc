//! A scripted HTTP server for the client tests: answers from a queue of canned replies and
//! records what it received, so tests can check both directions of the wire.
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use proptest::prelude::*;

#[derive(Debug, Clone)]
pub(crate) struct Recorded {
    pub method: String,
    pub path: String,
    pub query: Option<String>,
    pub headers: HeaderMap,
    pub body: String,
}

impl Recorded {
    /// Form or query fields, decoded.
    pub fn fields(&self) -> Vec<(String, String)> {
        let raw = if self.method == "GET" {
            self.query.clone().unwrap_or_default()
        } else {
            self.body.clone()
        };
        raw.split('&')
            .filter(|pair| !pair.is_empty())
            .map(|pair| {
                let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                (decode(k), decode(v))
            })
            .collect()
    }

    pub fn field(&self, name: &str) -> Option<String> {
        self.fields()
            .into_iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v)
    }
}

fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
                out.push(u8::from_str_radix(hex, 16).unwrap_or(b'?'));
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[derive(Debug, Clone)]
pub(crate) struct Canned {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub body: String,
}

pub(crate) fn reply(status: u16, body: impl Into<String>) -> Canned {
    Canned {
        status,
        headers: Vec::new(),
        body: body.into(),
    }
}

#[derive(Default)]
struct Script {
    replies: Mutex<VecDeque<Canned>>,
    received: Mutex<Vec<Recorded>>,
}

pub(crate) struct MockServer {
    pub url: String,
    script: Arc<Script>,
    task: tokio::task::JoinHandle<()>,
}

impl MockServer {
    pub async fn start(replies: Vec<Canned>) -> Self {
        let script = Arc::new(Script {
            replies: Mutex::new(replies.into()),
            ..Default::default()
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = axum::Router::new()
            .fallback(handle)
            .with_state(script.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self {
            url: format!("http://{addr}/"),
            script,
            task,
        }
    }

    pub fn received(&self) -> Vec<Recorded> {
        self.script.received.lock().unwrap().clone()
    }
}

impl Drop for MockServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn handle(State(script): State<Arc<Script>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, 1 << 20)
        .await
        .unwrap_or_default();
    script.received.lock().unwrap().push(Recorded {
        method: parts.method.to_string(),
        path: parts.uri.path().to_owned(),
        query: parts.uri.query().map(str::to_owned),
        headers: parts.headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    });
    let canned = script.replies.lock().unwrap().pop_front();
    let Some(canned) = canned else {
        return Response::builder()
            .status(StatusCode::IM_A_TEAPOT)
            .body(Body::from("no canned reply"))
            .unwrap();
    };
    let mut builder = Response::builder().status(canned.status);
    for (name, value) in canned.headers {
        builder = builder.header(name, value);
    }
    builder.body(Body::from(canned.body)).unwrap()
}

/// Arbitrary JSON, biased towards the keys and values the parsers look for.
pub(crate) fn arb_json() -> impl Strategy<Value = serde_json::Value> {
    use serde_json::Value;
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        ".{0,12}".prop_map(Value::String),
        prop_oneof![
            Just("completed"),
            Just("in_progress"),
            Just("2025-01-15T18:30:00Z"),
            Just("801")
        ]
        .prop_map(|s| Value::String(s.into())),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            proptest::collection::btree_map(
                prop_oneof![
                    Just("count".to_owned()),
                    Just("results".to_owned()),
                    Just("id".to_owned()),
                    Just("server".to_owned()),
                    Just("name".to_owned()),
                    Just("status".to_owned()),
                    Just("created_at".to_owned()),
                    Just("size_mb".to_owned()),
                    "[a-z_$]{0,8}",
                ],
                inner,
                0..6
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}
