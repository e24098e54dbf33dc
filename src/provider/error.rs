//! Provider errors, classified by what the caller should do next.
use std::time::Duration;

/// Every way a provider call can fail. Messages never contain credentials: clients build them
/// from status codes and provider-supplied text only (which `scrub` further trims).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProviderError {
    #[error("authentication failed: {0}")]
    Auth(String),
    #[error("not found: {0}")]
    NotFound(String),
    #[error("limit reached: {0}")]
    LimitReached(String),
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    #[error("invalid state: {0}")]
    InvalidState(String),
    #[error("rate limited by the provider")]
    RateLimited { retry_after: Option<Duration> },
    #[error("transient provider error: {0}")]
    Transient(String),
    #[error("protocol error: {0}")]
    Protocol(String),
    #[error("unsupported by this provider: {0}")]
    Unsupported(String),
    #[error("protected at the provider: {0}")]
    Protected(String),
    /// Not sent: this process may no longer act for the account (leadership lapsed, or the
    /// request waited past the time it had to leave by).
    #[error("not sent: {0}")]
    Fenced(String),
}

/// What the caller should do after an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryAdvice {
    /// Retry after backing off (exponential, jittered).
    Backoff,
    /// Retry no earlier than this.
    After(Duration),
    /// Final until the spec or the credentials change.
    WaitForChange,
}

impl ProviderError {
    pub fn advice(&self) -> RetryAdvice {
        match self {
            ProviderError::RateLimited {
                retry_after: Some(d),
            } => RetryAdvice::After(*d),
            ProviderError::RateLimited { retry_after: None }
            | ProviderError::Transient(_)
            | ProviderError::Protocol(_)
            | ProviderError::InvalidState(_)
            | ProviderError::LimitReached(_)
            | ProviderError::Fenced(_) => RetryAdvice::Backoff,
            ProviderError::Auth(_)
            | ProviderError::NotFound(_)
            | ProviderError::InvalidRequest(_)
            | ProviderError::Unsupported(_)
            | ProviderError::Protected(_) => RetryAdvice::WaitForChange,
        }
    }

    /// Bounded label for metrics and condition reasons.
    pub fn class(&self) -> &'static str {
        match self {
            ProviderError::Auth(_) => "Auth",
            ProviderError::NotFound(_) => "NotFound",
            ProviderError::LimitReached(_) => "LimitReached",
            ProviderError::InvalidRequest(_) => "InvalidRequest",
            ProviderError::InvalidState(_) => "InvalidState",
            ProviderError::RateLimited { .. } => "RateLimited",
            ProviderError::Transient(_) => "Transient",
            ProviderError::Protocol(_) => "Protocol",
            ProviderError::Unsupported(_) => "Unsupported",
            ProviderError::Protected(_) => "Protected",
            ProviderError::Fenced(_) => "Fenced",
        }
    }

    /// Whether the request may have taken effect at the provider although it failed
    /// (timeouts, dropped connections, 5xx): a create must re-list before trying again.
    pub fn outcome_unknown(&self) -> bool {
        matches!(
            self,
            ProviderError::Transient(_) | ProviderError::Protocol(_)
        )
    }
}

impl ProviderError {
    /// Masks every known secret in the message; the last step before an error built from
    /// provider data leaves a client, for parsers that quote values but know no secrets.
    pub(crate) fn mask(self, secrets: &[&str]) -> Self {
        let m = |text: String| mask_text(text, secrets);
        match self {
            ProviderError::Auth(t) => ProviderError::Auth(m(t)),
            ProviderError::NotFound(t) => ProviderError::NotFound(m(t)),
            ProviderError::LimitReached(t) => ProviderError::LimitReached(m(t)),
            ProviderError::InvalidRequest(t) => ProviderError::InvalidRequest(m(t)),
            ProviderError::InvalidState(t) => ProviderError::InvalidState(m(t)),
            ProviderError::Transient(t) => ProviderError::Transient(m(t)),
            ProviderError::Protocol(t) => ProviderError::Protocol(m(t)),
            ProviderError::Unsupported(t) => ProviderError::Unsupported(m(t)),
            ProviderError::Protected(t) => ProviderError::Protected(m(t)),
            ProviderError::Fenced(t) => ProviderError::Fenced(m(t)),
            limited @ ProviderError::RateLimited { .. } => limited,
        }
    }
}

fn mask_text(text: String, secrets: &[&str]) -> String {
    let mut ordered: Vec<&str> = secrets.iter().copied().filter(|s| !s.is_empty()).collect();
    // Longest first, so a secret that contains another (`login:password`) is masked whole.
    ordered.sort_by_key(|s| std::cmp::Reverse(s.len()));
    ordered
        .into_iter()
        .fold(text, |text, secret| text.replace(secret, "***"))
}

/// Provider-supplied text longer than this is cut: it ends up in conditions and Events, which
/// must stay readable, and an HTML error page says nothing useful after its first lines.
const MAX_DETAIL_CHARS: usize = 300;

/// Makes provider-supplied text (an error body, a parser message quoting the body) fit for an
/// error message: every known secret is masked — a provider may echo the login back — control
/// characters become spaces, and the result is bounded in length.
pub(crate) fn scrub(text: &str, secrets: &[&str]) -> String {
    let masked = mask_text(text.to_owned(), secrets);
    let mut out = String::with_capacity(masked.len().min(MAX_DETAIL_CHARS + 3));
    let mut last_space = false;
    for (n, c) in masked.chars().enumerate() {
        if n == MAX_DETAIL_CHARS {
            out.push('…');
            break;
        }
        let c = if c.is_control() { ' ' } else { c };
        // Collapsing runs of whitespace keeps pretty-printed JSON and HTML readable in one line.
        if c == ' ' && last_space {
            continue;
        }
        last_space = c == ' ';
        out.push(c);
    }
    out.trim().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scrub_masks_secrets_and_bounds_length() {
        let text = format!("user s3cr3t-user denied\n\n{}", "x".repeat(1000));
        let out = scrub(&text, &["s3cr3t-user", ""]);
        assert!(!out.contains("s3cr3t-user"));
        assert!(out.starts_with("user *** denied x"));
        assert!(out.chars().count() <= MAX_DETAIL_CHARS + 1);
    }
}
