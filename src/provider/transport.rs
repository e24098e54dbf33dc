//! HTTP plumbing shared by both clients: building and sending a request, reading a bounded body,
//! `Retry-After`, endpoint validation, and turning transport failures into errors that name
//! neither the URL nor anything sent.
use std::error::Error as StdError;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use reqwest::header::{
    CONTENT_LENGTH, CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue, USER_AGENT,
};
use reqwest::{Method, StatusCode, Url};

use super::connection::{Connections, FenceClosed};
use super::error::scrub;
use super::{Fence, ProviderError};

/// Provider answers are small lists; anything bigger is a misconfigured endpoint or an attack,
/// and must not be buffered whole.
const MAX_BODY_BYTES: usize = 8 * 1024 * 1024;

/// Used when a configured timeout is zero, which would otherwise mean "fail immediately".
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// rustls is built without a default crypto provider (so the crate links one TLS stack, ring,
/// shared with kube); it must be installed before the first client is built. Another part of
/// the process may have installed it already, which is fine.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// `vpsnap/<version> (<instance>)`: which process sent a request, for the provider's logs
/// and the simulator's record (two replicas during a leader handover are told apart). The
/// instance is `$POD_NAME`, else `<hostname>-<pid>`.
pub fn user_agent() -> &'static str {
    static AGENT: OnceLock<String> = OnceLock::new();
    AGENT.get_or_init(|| {
        let instance = std::env::var("POD_NAME")
            .ok()
            .filter(|p| !p.trim().is_empty())
            .unwrap_or_else(|| format!("{}-{}", hostname(), std::process::id()));
        agent_for(&instance)
    })
}

/// Only `[A-Za-z0-9._-]` of the instance name are kept (at most 63, a pod name's length), so
/// the header stays valid and nothing else can ride along in it.
fn agent_for(instance: &str) -> String {
    let clean: String = instance
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        .take(63)
        .collect();
    let clean = if clean.is_empty() { "unknown" } else { &clean };
    format!("vpsnap/{} ({clean})", env!("CARGO_PKG_VERSION"))
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "vpsnap".into())
}

/// An account's HTTP side: its connections, and how long one request may take, answer included.
/// Redirects are never followed: the documented APIs never redirect, and following one would
/// carry the credentials elsewhere or turn a POST into a GET; `common_status_error` reports it.
#[derive(Clone, Debug)]
pub(crate) struct Http {
    connections: Connections,
    timeout: Duration,
}

/// `fence`: the account's lease fence, asked again at the socket write of every change
/// (`connection`).
pub(crate) fn http_client(
    timeout: Duration,
    fence: Option<Arc<dyn Fence>>,
) -> Result<Http, ProviderError> {
    install_crypto_provider();
    let timeout = if timeout.is_zero() {
        DEFAULT_TIMEOUT
    } else {
        timeout
    };
    Ok(Http {
        connections: Connections::new(timeout.min(Duration::from_secs(10)), fence)?,
        timeout,
    })
}

/// A request as the clients build it: small and whole in memory. No `Debug`: a Zomro body
/// carries the credentials.
pub(crate) struct Request {
    method: Method,
    url: Url,
    headers: HeaderMap,
    body: Bytes,
}

impl Request {
    pub fn new(method: Method, url: Url) -> Self {
        Request {
            method,
            url,
            headers: HeaderMap::new(),
            body: Bytes::new(),
        }
    }

    pub fn header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.headers.insert(name, value);
        self
    }

    /// Appends `key=value` to the query string.
    pub fn query(mut self, key: &str, value: &str) -> Self {
        self.url.query_pairs_mut().append_pair(key, value);
        self
    }

    pub fn body(mut self, body: impl Into<Bytes>) -> Self {
        self.body = body.into();
        self
    }

    /// An `application/x-www-form-urlencoded` body.
    pub fn form(self, fields: &[(&str, &str)]) -> Self {
        let body = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(fields)
            .finish();
        self.header(
            CONTENT_TYPE,
            HeaderValue::from_static("application/x-www-form-urlencoded"),
        )
        .body(body)
    }

    fn into_http(self) -> Result<http::Request<Full<Bytes>>, ProviderError> {
        // Without a body hyper sends no length at all; some servers answer a POST like that with
        // 411 Length Required.
        let empty_post = self.body.is_empty()
            && matches!(self.method, Method::POST | Method::PUT | Method::PATCH);
        let mut request = http::Request::builder()
            .method(self.method)
            .uri(self.url.as_str())
            .body(Full::new(self.body))
            .map_err(|_| ProviderError::InvalidRequest("could not build the request".into()))?;
        let headers = request.headers_mut();
        headers.extend(self.headers);
        headers.insert(USER_AGENT, HeaderValue::from_static(user_agent()));
        if empty_post {
            headers.insert(CONTENT_LENGTH, HeaderValue::from_static("0"));
        }
        Ok(request)
    }
}

/// Parses the configured endpoint. Credentials embedded in the URL are refused (they belong in
/// the Secret and would otherwise surface wherever the endpoint is shown); the error never
/// repeats the URL for the same reason.
pub(crate) fn parse_endpoint(endpoint: &str) -> Result<Url, ProviderError> {
    let url = Url::parse(endpoint.trim()).map_err(|e| {
        ProviderError::InvalidRequest(format!("the endpoint is not a valid URL ({e})"))
    })?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(ProviderError::InvalidRequest(
            "the endpoint must be an http(s) URL".into(),
        ));
    }
    if url.cannot_be_a_base() || url.host_str().is_none() {
        return Err(ProviderError::InvalidRequest(
            "the endpoint URL has no host".into(),
        ));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(ProviderError::InvalidRequest(
            "the endpoint URL must not embed credentials; put them in the Secret".into(),
        ));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(ProviderError::InvalidRequest(
            "the endpoint URL must not have a query or fragment".into(),
        ));
    }
    Ok(url)
}

/// Endpoint as shown in `Debug`: scheme, host, port and path only.
pub(crate) fn display_endpoint(url: &Url) -> String {
    let mut shown = url.clone();
    shown.set_query(None);
    shown.set_fragment(None);
    let _ = shown.set_username("");
    let _ = shown.set_password(None);
    shown.to_string()
}

/// A fully read answer.
#[derive(Debug)]
pub(crate) struct Reply {
    pub status: StatusCode,
    pub retry_after: Option<Duration>,
    pub body: Vec<u8>,
}

impl Reply {
    /// Start of the body, fit for an error message.
    pub fn snippet(&self, secrets: &[&str]) -> String {
        scrub(
            &String::from_utf8_lossy(&self.body[..self.body.len().min(2048)]),
            secrets,
        )
    }
}

impl Http {
    /// Sends `request` on the connections its attempt calls for (a change or a read, as the
    /// gate's attempt says) and reads the whole answer, all within the request timeout.
    pub(crate) async fn send(
        &self,
        request: Request,
        secrets: &[&str],
    ) -> Result<Reply, ProviderError> {
        let pool = self
            .connections
            .for_request(super::etiquette::attempt_changes());
        let exchange = async {
            let response = pool
                .request(request.into_http()?)
                .await
                .map_err(|e| transport_error(&e, Failure::Sending, secrets))?;
            let status = response.status();
            super::etiquette::note_status(status.as_u16());
            let retry_after = parse_retry_after(response.headers(), jiff::Timestamp::now());
            let mut incoming = response.into_body();
            let mut body = Vec::new();
            while let Some(frame) = incoming.frame().await {
                let frame = frame.map_err(|e| transport_error(&e, Failure::Reading, secrets))?;
                let Ok(chunk) = frame.into_data() else {
                    continue;
                };
                if body.len() + chunk.len() > MAX_BODY_BYTES {
                    return Err(ProviderError::Protocol(format!(
                        "HTTP {} answer larger than {MAX_BODY_BYTES} bytes",
                        status.as_u16()
                    )));
                }
                body.extend_from_slice(&chunk);
            }
            Ok(Reply {
                status,
                retry_after,
                body,
            })
        };
        tokio::time::timeout(self.timeout, exchange)
            .await
            .unwrap_or_else(|_| Err(ProviderError::Transient("request timed out".into())))
    }
}

/// Where a request failed before a complete answer arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Failure {
    Sending,
    Reading,
}

/// A failure before a complete answer arrived. Refused by the fence at the socket: `Fenced`,
/// nothing was sent. Otherwise the request may or may not have reached the provider, hence
/// `Transient` (which reports the outcome as unknown). Only the kind and the causes are kept;
/// none of them names the URL.
fn transport_error(
    err: &(dyn StdError + 'static),
    failure: Failure,
    secrets: &[&str],
) -> ProviderError {
    if let Some(closed) = FenceClosed::find(err) {
        return ProviderError::Fenced(format!(
            "{} (checked again as it was being written)",
            scrub(&closed.0, secrets)
        ));
    }
    let connect = err
        .downcast_ref::<hyper_util::client::legacy::Error>()
        .is_some_and(|e| e.is_connect());
    let kind = match failure {
        Failure::Sending if connect => "could not connect",
        Failure::Sending => "request failed",
        Failure::Reading => "answer interrupted",
    };
    let mut causes = Vec::new();
    let mut source = err.source();
    while let Some(cause) = source {
        causes.push(cause.to_string());
        source = cause.source();
    }
    if causes.is_empty() {
        ProviderError::Transient(kind.into())
    } else {
        ProviderError::Transient(format!("{kind}: {}", scrub(&causes.join(": "), secrets)))
    }
}

/// `Retry-After` as delay-seconds or an HTTP date (RFC 9110 §10.2.3). A date in the past means
/// "now"; anything unreadable counts as absent, so the gate's default pause applies.
pub(crate) fn parse_retry_after(headers: &HeaderMap, now: jiff::Timestamp) -> Option<Duration> {
    let value = headers
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = jiff::fmt::rfc2822::DateTimeParser::new()
        .parse_timestamp(value)
        .ok()?;
    let wait = at.duration_since(now);
    Some(Duration::try_from(wait).unwrap_or(Duration::ZERO))
}

/// Status classes every operation of both APIs maps the same way; `None` for statuses whose
/// meaning depends on the operation (2xx, 400, 404, …).
pub(crate) fn common_status_error(reply: &Reply, secrets: &[&str]) -> Option<ProviderError> {
    let status = reply.status;
    let code = status.as_u16();
    if status == StatusCode::TOO_MANY_REQUESTS {
        return Some(ProviderError::RateLimited {
            retry_after: reply.retry_after,
        });
    }
    if status == StatusCode::UNAUTHORIZED {
        return Some(ProviderError::Auth(
            "the provider rejected the credentials (HTTP 401)".into(),
        ));
    }
    if status == StatusCode::FORBIDDEN {
        // Undocumented for both APIs; the usual meaning is a token without the needed rights,
        // which only a credentials change fixes.
        return Some(ProviderError::Auth(format!(
            "the provider refused the request (HTTP 403): {}",
            reply.snippet(secrets)
        )));
    }
    if status.is_server_error() || status == StatusCode::REQUEST_TIMEOUT {
        return Some(ProviderError::Transient(format!(
            "provider answered HTTP {code}"
        )));
    }
    if status.is_redirection() {
        return Some(ProviderError::Protocol(format!(
            "provider answered a redirect (HTTP {code}); check the endpoint URL"
        )));
    }
    if status.is_informational() {
        return Some(ProviderError::Protocol(format!("unexpected HTTP {code}")));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    fn headers(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            reqwest::header::RETRY_AFTER,
            HeaderValue::from_str(value).unwrap(),
        );
        h
    }

    #[test]
    fn retry_after_seconds_and_dates() {
        let now: jiff::Timestamp = "2025-01-15T18:30:00Z".parse().unwrap();
        assert_eq!(
            parse_retry_after(&headers("7"), now),
            Some(Duration::from_secs(7))
        );
        assert_eq!(
            parse_retry_after(&headers(" 0 "), now),
            Some(Duration::ZERO)
        );
        assert_eq!(
            parse_retry_after(&headers("Wed, 15 Jan 2025 18:30:42 GMT"), now),
            Some(Duration::from_secs(42))
        );
        assert_eq!(
            parse_retry_after(&headers("Wed, 15 Jan 2025 18:00:00 GMT"), now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after(&headers("soon"), now), None);
        assert_eq!(parse_retry_after(&headers("-3"), now), None);
        assert_eq!(parse_retry_after(&HeaderMap::new(), now), None);
    }

    #[test]
    fn user_agent_names_the_instance_in_a_valid_header() {
        let version = env!("CARGO_PKG_VERSION");
        assert_eq!(
            agent_for("vpsnap-7d9f-abcde"),
            format!("vpsnap/{version} (vpsnap-7d9f-abcde)")
        );
        assert_eq!(
            agent_for("host.example-42"),
            format!("vpsnap/{version} (host.example-42)")
        );
        assert_eq!(
            agent_for("a b)(\r\nX-Token: hunter2"),
            format!("vpsnap/{version} (abX-Tokenhunter2)")
        );
        assert_eq!(agent_for("()"), format!("vpsnap/{version} (unknown)"));
        assert_eq!(
            agent_for(&"x".repeat(100)).len(),
            agent_for(&"x".repeat(63)).len()
        );
        let ua = user_agent();
        assert!(ua.starts_with(&format!("vpsnap/{version} (")), "{ua}");
        assert!(reqwest::header::HeaderValue::from_str(ua).is_ok());
    }

    #[tokio::test]
    async fn every_request_carries_the_user_agent() {
        let sim = crate::sim::start(
            crate::sim::SimConfig::default(),
            "127.0.0.1:0".parse().unwrap(),
        )
        .await
        .unwrap();
        let http = http_client(Duration::from_secs(10), None).unwrap();
        let url = Url::parse(&format!("{}account/me/", sim.vps_rest_url())).unwrap();
        let request = Request::new(Method::GET, url).header(
            reqwest::header::AUTHORIZATION,
            HeaderValue::from_static("Bearer sim-token"),
        );
        http.send(request, &[]).await.unwrap();
        let log = sim.call_log(0);
        assert_eq!(log.len(), 1);
        assert_eq!(log[0].user_agent.as_deref(), Some(user_agent()));
        sim.shutdown().await;
    }

    /// Nothing listening: a transient failure that names neither the URL nor anything sent.
    #[tokio::test]
    async fn a_refused_connection_is_transient_and_names_neither_url_nor_secret() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let http = http_client(Duration::from_secs(5), None).unwrap();
        let url = Url::parse(&format!("http://{addr}/secret-path/")).unwrap();
        let request = Request::new(Method::GET, url).header(
            reqwest::header::AUTHORIZATION,
            HeaderValue::from_static("Bearer hunter2"),
        );
        match http.send(request, &["hunter2"]).await {
            Err(ProviderError::Transient(m)) => {
                assert!(m.starts_with("could not connect"), "{m}");
                assert!(!m.contains("secret-path") && !m.contains("hunter2"), "{m}");
            }
            other => panic!("expected Transient, got {other:?}"),
        }
    }

    #[test]
    fn endpoints_with_credentials_or_queries_are_refused_without_echoing_them() {
        for bad in [
            "https://user:hunter2@api.example/",
            "https://api.example/?token=hunter2",
            "ftp://x/",
            "nonsense",
        ] {
            let err = parse_endpoint(bad).unwrap_err();
            assert!(matches!(err, ProviderError::InvalidRequest(_)), "{bad}");
            assert!(!err.to_string().contains("hunter2"));
        }
        assert!(parse_endpoint("https://admin.vps.org/api/v1").is_ok());
        assert!(parse_endpoint("http://127.0.0.1:8080/").is_ok());
    }
}
