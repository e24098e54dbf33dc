//! Prometheus metrics. Labels are bounded: kinds, operations, error classes and phases —
//! never object names, server ids or error text.
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::provider::RequestObserver;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    pub kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReconcileLabels {
    pub kind: &'static str,
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProviderLabels {
    pub provider: &'static str,
    pub operation: &'static str,
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProviderOpLabels {
    pub provider: &'static str,
    pub operation: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProviderOnly {
    pub provider: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PhaseLabels {
    pub kind: &'static str,
    pub phase: &'static str,
}

pub struct Metrics {
    pub reconciles: Family<ReconcileLabels, Counter>,
    pub reconcile_duration: Family<KindLabels, Histogram>,
    pub provider_requests: Family<ProviderLabels, Counter>,
    pub provider_latency: Family<ProviderOpLabels, Histogram>,
    pub throttle_wait: Family<ProviderOnly, Counter<f64>>,
    pub evictions: Family<KindLabels, Counter>,
    pub objects: Family<PhaseLabels, Gauge>,
    registry: Registry,
}

impl Metrics {
    pub fn new() -> Arc<Self> {
        let mut registry = Registry::with_prefix("vpsnap");
        let reconciles = Family::<ReconcileLabels, Counter>::default();
        let reconcile_duration = Family::<KindLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.001, 2.5, 12))
        });
        let provider_requests = Family::<ProviderLabels, Counter>::default();
        let provider_latency = Family::<ProviderOpLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.005, 2.5, 12))
        });
        let throttle_wait = Family::<ProviderOnly, Counter<f64>>::default();
        let evictions = Family::<KindLabels, Counter>::default();
        let objects = Family::<PhaseLabels, Gauge>::default();
        registry.register(
            "reconciles",
            "Reconciles by kind and result (ok or error class)",
            reconciles.clone(),
        );
        registry.register(
            "reconcile_duration_seconds",
            "Reconcile duration",
            reconcile_duration.clone(),
        );
        registry.register(
            "provider_requests",
            "Provider API requests by operation and outcome",
            provider_requests.clone(),
        );
        registry.register(
            "provider_request_duration_seconds",
            "Provider API latency",
            provider_latency.clone(),
        );
        registry.register(
            "provider_rate_limit_wait_seconds",
            "Time spent waiting for the per-account rate limit",
            throttle_wait.clone(),
        );
        registry.register(
            "evictions",
            "Provider objects evicted to make room under a per-server limit",
            evictions.clone(),
        );
        registry.register("objects", "Objects by kind and phase", objects.clone());
        Arc::new(Self {
            reconciles,
            reconcile_duration,
            provider_requests,
            provider_latency,
            throttle_wait,
            evictions,
            objects,
            registry,
        })
    }

    pub fn reconciled(&self, kind: &'static str, result: &'static str, elapsed: Duration) {
        self.reconciles
            .get_or_create(&ReconcileLabels { kind, result })
            .inc();
        self.reconcile_duration
            .get_or_create(&KindLabels { kind })
            .observe(elapsed.as_secs_f64());
    }

    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

impl RequestObserver for Metrics {
    fn request(
        &self,
        provider: &'static str,
        op: &'static str,
        outcome: &'static str,
        elapsed: Duration,
    ) {
        self.provider_requests
            .get_or_create(&ProviderLabels {
                provider,
                operation: op,
                outcome,
            })
            .inc();
        self.provider_latency
            .get_or_create(&ProviderOpLabels {
                provider,
                operation: op,
            })
            .observe(elapsed.as_secs_f64());
    }

    fn throttled(&self, provider: &'static str, waited: Duration) {
        self.throttle_wait
            .get_or_create(&ProviderOnly { provider })
            .inc_by(waited.as_secs_f64());
    }
}
