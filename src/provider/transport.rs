//! HTTP plumbing shared by both clients: building the reqwest client, reading a bounded body,
//! `Retry-After`, endpoint validation, and turning transport failures into errors that name
//! neither the URL nor anything sent.
use std::error::Error as _;
use std::sync::OnceLock;
use std::time::Duration;

use reqwest::header::HeaderMap;
use reqwest::{StatusCode, Url};

use super::ProviderError;
use super::error::scrub;

/// Provider answers are small lists; anything bigger is a misconfigured endpoint or an attack,
/// and must not be buffered whole.
const MAX_BODY_BYTES: usize = 8 * 1024 * 1024;

/// Used when a configured timeout is zero, which reqwest would treat as "fail immediately".
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// reqwest is built without a bundled crypto provider (so the crate links one TLS stack, ring,
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

pub(crate) fn http_client(timeout: Duration) -> Result<reqwest::Client, ProviderError> {
    install_crypto_provider();
    let timeout = if timeout.is_zero() {
        DEFAULT_TIMEOUT
    } else {
        timeout
    };
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout.min(Duration::from_secs(10)))
        // A redirect would be followed with the credentials by some clients and turn a POST into
        // a GET by others; the documented APIs never redirect, so one is reported instead.
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(user_agent())
        .build()
        .map_err(|e| {
            ProviderError::Protocol(format!("cannot build the HTTP client: {}", e.without_url()))
        })
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

pub(crate) async fn send(
    request: reqwest::RequestBuilder,
    secrets: &[&str],
) -> Result<Reply, ProviderError> {
    let mut response = request
        .send()
        .await
        .map_err(|e| transport_error(&e, secrets))?;
    let status = response.status();
    let retry_after = parse_retry_after(response.headers(), jiff::Timestamp::now());
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| transport_error(&e, secrets))?
    {
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
}

/// A failure before a complete answer arrived. The request may or may not have reached the
/// provider, hence `Transient` (which reports the outcome as unknown). reqwest's own `Display`
/// names the URL, so only the kind and the underlying causes are kept.
pub(crate) fn transport_error(err: &reqwest::Error, secrets: &[&str]) -> ProviderError {
    let kind = if err.is_timeout() {
        "request timed out"
    } else if err.is_connect() {
        "could not connect"
    } else if err.is_body() || err.is_decode() {
        "answer interrupted"
    } else if err.is_builder() {
        return ProviderError::InvalidRequest("could not build the request".into());
    } else {
        "request failed"
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
        let http = http_client(Duration::from_secs(10)).unwrap();
        let url = format!("{}account/me/", sim.vps_rest_url());
        send(http.get(url).bearer_auth("sim-token"), &[])
            .await
            .unwrap();
        let log = sim.call_log(0);
        assert_eq!(log.len(), 1);
        assert_eq!(log[0].user_agent.as_deref(), Some(user_agent()));
        sim.shutdown().await;
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
