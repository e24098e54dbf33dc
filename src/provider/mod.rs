//! The provider layer: one client per provider API behind a common interface, with the
//! etiquette (rate limit, in-flight bound, backoff) every account shares.
//!
//! Data flows: controller → `ProviderClient` (enum over the two APIs) → `etiquette::Gate`
//! (token bucket + in-flight bound + retry policy) → HTTP (`transport`) → the connections,
//! which ask the lease fence again before a change reaches the socket (`connection`).

mod client;
mod connection;
pub mod endpoint;
mod error;
mod etiquette;
mod model;
mod secret;
mod transport;
mod vps_rest;
mod zomro;
mod zomro_json;

#[cfg(test)]
mod test_support;

pub use client::ProviderClient;
pub use endpoint::Endpoint;
pub use error::{ProviderError, RetryAdvice};
pub use etiquette::{
    Fence, Gate, GateLimits, GatePermit, Idempotency, NoopObserver, RequestObserver, RetryPolicy,
    send_by,
};
pub use model::*;
pub use secret::Secret;
pub use transport::install_crypto_provider;
pub use vps_rest::VpsRestClient;
pub use zomro::ZomroClient;
