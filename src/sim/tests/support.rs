//! Shared helpers: a simulator on an ephemeral port and thin clients for both APIs.

use crate::sim::{SimConfig, SimHandle, start};
use reqwest::{Client, Response};
use serde_json::Value;
use std::time::Duration;

pub const TOKEN: &str = "test-token";
pub const USER: &str = "tester";
pub const PASSWORD: &str = "s3cret:with-colon";
pub const S1: u64 = 100;
pub const S2: u64 = 200;
/// Long enough that "right after create" reliably sees `in_progress` on a loaded machine.
pub const DELAY: Duration = Duration::from_millis(150);

/// Waits comfortably past `DELAY` so in-progress objects have finished.
pub async fn settle() {
    tokio::time::sleep(DELAY * 2).await;
}

pub fn config() -> SimConfig {
    SimConfig {
        servers: vec![S1, S2],
        tokens: vec![TOKEN.into()],
        zomro_users: vec![(USER.into(), PASSWORD.into())],
        create_delay: DELAY,
        restore_delay: DELAY,
        ..SimConfig::default()
    }
}

pub async fn sim(config: SimConfig) -> SimHandle {
    start(config, "127.0.0.1:0".parse().expect("addr"))
        .await
        .expect("simulator starts")
}

pub fn client_with_timeout(timeout: Duration) -> Client {
    // reqwest is built without a default TLS provider; plain HTTP still wants one installed.
    let _ = rustls::crypto::ring::default_provider().install_default();
    Client::builder().timeout(timeout).build().expect("client")
}

pub fn client() -> Client {
    client_with_timeout(Duration::from_secs(10))
}

pub struct Vps {
    pub http: Client,
    pub base: String,
    pub token: String,
}

impl Vps {
    pub fn new(sim: &SimHandle) -> Self {
        Self {
            http: client(),
            base: sim.vps_rest_url(),
            token: TOKEN.into(),
        }
    }

    pub fn with_client(sim: &SimHandle, http: Client) -> Self {
        Self {
            http,
            base: sim.vps_rest_url(),
            token: TOKEN.into(),
        }
    }

    pub async fn get(&self, path: &str) -> reqwest::Result<Response> {
        self.http
            .get(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .send()
            .await
    }

    pub async fn post(&self, path: &str, body: Option<Value>) -> reqwest::Result<Response> {
        let req = self
            .http
            .post(format!("{}{path}", self.base))
            .bearer_auth(&self.token);
        match body {
            Some(b) => req.json(&b).send().await,
            None => req.send().await,
        }
    }

    pub async fn delete(&self, path: &str) -> reqwest::Result<Response> {
        self.http
            .delete(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .send()
            .await
    }

    /// `GET snapshots/?server_id=` and its `results`.
    pub async fn snapshots(&self, server: u64) -> Vec<Value> {
        let body: Value = self
            .get(&format!("snapshots/?server_id={server}"))
            .await
            .expect("list")
            .json()
            .await
            .expect("json");
        assert_eq!(
            body["count"].as_u64(),
            Some(body["results"].as_array().expect("results").len() as u64)
        );
        body["results"].as_array().cloned().unwrap_or_default()
    }

    /// Creates a snapshot that must be accepted; its id.
    pub async fn created_snapshot(&self, server: u64, name: &str) -> u64 {
        let body = json(self.create_snapshot(server, name).await).await;
        body["id"]
            .as_u64()
            .unwrap_or_else(|| panic!("no id in {body}"))
    }

    pub async fn create_snapshot(&self, server: u64, name: &str) -> reqwest::Result<Response> {
        self.post(
            "snapshots/",
            Some(serde_json::json!({ "server_id": server, "name": name })),
        )
        .await
    }
}

pub struct Zomro {
    pub http: Client,
    pub url: String,
}

impl Zomro {
    pub fn new(sim: &SimHandle) -> Self {
        Self {
            http: client(),
            url: sim.zomro_url(),
        }
    }

    pub async fn raw(&self, fields: &[(&str, &str)]) -> reqwest::Result<Response> {
        self.http.post(&self.url).form(fields).send().await
    }

    /// A call with `out=json`; every answer must be JSON with a `doc`.
    pub async fn call(&self, fields: &[(&str, &str)]) -> Value {
        let mut all = vec![("out", "json"), ("lang", "en")];
        all.extend_from_slice(fields);
        let resp = self.raw(&all).await.expect("zomro call");
        assert_eq!(resp.status(), 200, "BILLmanager answers errors with 200");
        let body: Value = resp.json().await.expect("json body");
        assert!(body["doc"].is_object(), "{body}");
        body
    }

    pub async fn login(&self) -> String {
        let body = self
            .call(&[("func", "auth"), ("username", USER), ("password", PASSWORD)])
            .await;
        let id = body["doc"]["auth"]["$id"].as_str().expect("session id");
        assert_eq!(body["doc"]["auth"]["$"].as_str(), Some(id));
        id.to_string()
    }

    pub async fn list(&self, server: u64, session: &str) -> Value {
        let server = server.to_string();
        self.call(&[
            ("func", "instances.snapshots"),
            ("elid", &server),
            ("auth", session),
        ])
        .await
    }

    pub async fn list_page(&self, server: u64, session: &str, cnt: u32, num: u32) -> Value {
        let (server, cnt, num) = (server.to_string(), cnt.to_string(), num.to_string());
        self.call(&[
            ("func", "instances.snapshots"),
            ("elid", &server),
            ("auth", session),
            ("p_cnt", &cnt),
            ("p_num", &num),
        ])
        .await
    }

    /// `instances.snapshots.edit`, confirmed with `sok=ok` when `sok`.
    pub async fn create(&self, server: u64, name: &str, session: &str, sok: bool) -> Value {
        let server = server.to_string();
        let mut fields = vec![
            ("func", "instances.snapshots.edit"),
            ("plid", server.as_str()),
            ("name", name),
            ("auth", session),
        ];
        if sok {
            fields.push(("sok", "ok"));
        }
        self.call(&fields).await
    }

    /// `image.delete` sending both `elid` and `elname`, as the documented example does.
    pub async fn delete(&self, server: u64, id: &str, session: &str, sok: bool) -> Value {
        let server = server.to_string();
        let mut fields = vec![
            ("func", "image.delete"),
            ("plid", server.as_str()),
            ("elid", id),
            ("elname", id),
            ("auth", session),
        ];
        if sok {
            fields.push(("sok", "ok"));
        }
        self.call(&fields).await
    }

    /// `doc.elem` normalised to a list, as a client must.
    pub fn elems(body: &Value) -> Vec<Value> {
        match &body["doc"]["elem"] {
            Value::Array(items) => items.clone(),
            Value::Object(map) if map.is_empty() => Vec::new(),
            Value::Object(_) => vec![body["doc"]["elem"].clone()],
            _ => Vec::new(),
        }
    }
}

/// The JSON body of an answer that must have arrived.
pub async fn json(resp: reqwest::Result<Response>) -> Value {
    resp.expect("answered").json().await.expect("json body")
}

/// `{"$": "…"}` unwrapped.
pub fn val(elem: &Value, field: &str) -> String {
    elem[field]["$"]
        .as_str()
        .unwrap_or_else(|| panic!("field {field} not wrapped in {elem}"))
        .to_string()
}

pub fn error_type(body: &Value) -> Option<String> {
    body["doc"]["error"]["$type"].as_str().map(str::to_string)
}
