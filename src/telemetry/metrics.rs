//! Prometheus metrics. Labels are bounded: kinds, operations, HTTP status codes, error classes,
//! phases and condition reasons — never object names, server ids or error text.
//!
//! Every name here is used by the chart's alerts or dashboard (charts/vpsnap/monitoring/), and
//! a test scrapes a running operator to prove each one those files use exists. docs/metrics.md
//! lists them with their meaning.
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use super::process::ProcessCollector;
use crate::provider::{ProviderKind, RequestObserver};

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

/// `code`: the HTTP status, or `none` when no answer arrived.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResponseLabels {
    pub provider: &'static str,
    pub operation: &'static str,
    pub code: String,
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

/// One condition of one kind, by status and reason (reasons are a fixed set per kind).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ConditionLabels {
    pub kind: &'static str,
    pub r#type: String,
    pub status: String,
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct VersionLabels {
    pub version: &'static str,
}

pub struct Metrics {
    pub reconciles: Family<ReconcileLabels, Counter>,
    pub reconcile_duration: Family<KindLabels, Histogram>,
    pub provider_requests: Family<ProviderLabels, Counter>,
    pub provider_responses: Family<ResponseLabels, Counter>,
    pub provider_latency: Family<ProviderOpLabels, Histogram>,
    pub throttle_wait: Family<ProviderOnly, Counter<f64>>,
    pub evictions: Family<KindLabels, Counter>,
    /// Objects by kind and `status.phase` (computed from the caches at each scrape).
    pub objects: Family<PhaseLabels, Gauge>,
    /// Objects by kind and condition (computed from the caches at each scrape).
    pub conditions: Family<ConditionLabels, Gauge>,
    /// Provider slots held by vpsnap's objects, and the limits of the servers they are on.
    pub slots_used: Family<KindLabels, Gauge>,
    pub slots_limit: Family<KindLabels, Gauge>,
    /// Servers with at least one object, and those of them at their limit.
    pub servers: Family<KindLabels, Gauge>,
    pub servers_at_limit: Family<KindLabels, Gauge>,
    /// (schedule, server) pairs whose run after the newest completed child should have
    /// finished by now; by the kind of child.
    pub schedule_overdue: Family<KindLabels, Gauge>,
    /// Sum of the schedules' `status.missedRuns`.
    pub schedule_missed_runs: Gauge,
    pub queue_depth: Family<KindLabels, Gauge>,
    pub in_flight: Family<KindLabels, Gauge>,
    /// 1 while this process holds the leader Lease (always, without leader election).
    pub leader: Gauge,
    registry: Registry,
}

impl Metrics {
    pub fn new() -> Arc<Self> {
        let mut root = Registry::default();
        root.register_collector(Box::new(ProcessCollector));
        let registry = root.sub_registry_with_prefix("vpsnap");
        let m = Self {
            reconciles: Family::default(),
            reconcile_duration: Family::new_with_constructor(|| {
                Histogram::new(exponential_buckets(0.001, 2.5, 12))
            }),
            provider_requests: Family::default(),
            provider_responses: Family::default(),
            provider_latency: Family::new_with_constructor(|| {
                Histogram::new(exponential_buckets(0.005, 2.5, 12))
            }),
            throttle_wait: Family::default(),
            evictions: Family::default(),
            objects: Family::default(),
            conditions: Family::default(),
            slots_used: Family::default(),
            slots_limit: Family::default(),
            servers: Family::default(),
            servers_at_limit: Family::default(),
            schedule_overdue: Family::default(),
            schedule_missed_runs: Gauge::default(),
            queue_depth: Family::default(),
            in_flight: Family::default(),
            leader: Gauge::default(),
            registry: Registry::default(),
        };
        // Series that alerts and dashboards take rates of exist from the start, at zero.
        for kind in ["VpsSnapshot", "VpsBackup"] {
            m.evictions.get_or_create(&KindLabels { kind }).inc_by(0);
        }
        for kind in [ProviderKind::VpsRest, ProviderKind::Zomro] {
            let provider = kind.label();
            m.throttle_wait
                .get_or_create(&ProviderOnly { provider })
                .inc_by(0.0);
        }
        let build_info = Family::<VersionLabels, Gauge>::default();
        build_info
            .get_or_create(&VersionLabels {
                version: env!("CARGO_PKG_VERSION"),
            })
            .set(1);
        registry.register("build_info", "vpsnap's version", build_info);
        registry.register(
            "reconciles",
            "Reconciles by kind and result (ok or error class)",
            m.reconciles.clone(),
        );
        registry.register(
            "reconcile_duration_seconds",
            "Reconcile duration",
            m.reconcile_duration.clone(),
        );
        registry.register(
            "provider_requests",
            "Provider API requests (each attempt) by operation and outcome (ok or error class)",
            m.provider_requests.clone(),
        );
        registry.register(
            "provider_responses",
            "Provider API answers (each attempt) by HTTP status code; code=none when no answer arrived",
            m.provider_responses.clone(),
        );
        registry.register(
            "provider_request_duration_seconds",
            "Provider API latency",
            m.provider_latency.clone(),
        );
        registry.register(
            "provider_rate_limit_wait_seconds",
            "Time spent waiting for the per-account rate limit",
            m.throttle_wait.clone(),
        );
        registry.register(
            "evictions",
            "Provider objects evicted to make room under a per-server limit",
            m.evictions.clone(),
        );
        registry.register(
            "objects",
            "Objects by kind and status.phase",
            m.objects.clone(),
        );
        registry.register(
            "object_conditions",
            "Objects by kind and condition type, status and reason",
            m.conditions.clone(),
        );
        registry.register(
            "slots_used",
            "Provider slots held by vpsnap's objects (foreign snapshots not included)",
            m.slots_used.clone(),
        );
        registry.register(
            "slots_limit",
            "Sum of the per-server limits of the servers vpsnap's objects are on",
            m.slots_limit.clone(),
        );
        registry.register(
            "servers",
            "Servers with at least one vpsnap object",
            m.servers.clone(),
        );
        registry.register(
            "servers_at_limit",
            "Servers whose vpsnap objects alone fill the provider's limit",
            m.servers_at_limit.clone(),
        );
        registry.register(
            "schedule_overdue_servers",
            "Schedule servers whose latest due run has no completed restore point",
            m.schedule_overdue.clone(),
        );
        registry.register(
            "schedule_missed_runs",
            "Runs schedules skipped because the operator was down (sum of status.missedRuns)",
            m.schedule_missed_runs.clone(),
        );
        registry.register(
            "reconcile_queue_depth",
            "Objects changed in a watch and waiting for a reconcile worker",
            m.queue_depth.clone(),
        );
        registry.register(
            "reconciles_in_flight",
            "Reconciles running now",
            m.in_flight.clone(),
        );
        registry.register(
            "leader",
            "1 while this process holds the leader Lease (or runs without leader election)",
            m.leader.clone(),
        );
        Arc::new(Self {
            registry: root,
            ..m
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
        status: Option<u16>,
        elapsed: Duration,
    ) {
        self.provider_requests
            .get_or_create(&ProviderLabels {
                provider,
                operation: op,
                outcome,
            })
            .inc();
        self.provider_responses
            .get_or_create(&ResponseLabels {
                provider,
                operation: op,
                code: status.map_or_else(|| "none".to_string(), |c| c.to_string()),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_labels_as_scraped() {
        let m = Metrics::new();
        m.request(
            "vps_rest",
            "create_snapshot",
            "ok",
            Some(201),
            Duration::ZERO,
        );
        m.request(
            "vps_rest",
            "list_snapshots",
            "Transient",
            None,
            Duration::ZERO,
        );
        m.leader.set(1);
        m.conditions
            .get_or_create(&ConditionLabels {
                kind: "VpsSnapshot",
                r#type: "Ready".into(),
                status: "False".into(),
                reason: "LimitReached".into(),
            })
            .set(2);
        let text = m.encode();
        for line in [
            r#"vpsnap_provider_responses_total{provider="vps_rest",operation="create_snapshot",code="201"} 1"#,
            r#"vpsnap_provider_responses_total{provider="vps_rest",operation="list_snapshots",code="none"} 1"#,
            r#"vpsnap_provider_requests_total{provider="vps_rest",operation="list_snapshots",outcome="Transient"} 1"#,
            r#"vpsnap_object_conditions{kind="VpsSnapshot",type="Ready",status="False",reason="LimitReached"} 2"#,
            "vpsnap_leader 1",
            r#"vpsnap_build_info{version=""#,
            "process_resident_memory_bytes ",
            "process_cpu_seconds_total ",
            "process_start_time_seconds ",
            "process_open_fds ",
        ] {
            assert!(
                text.lines().any(|l| l.starts_with(line)),
                "no line starting with {line:?} in:\n{text}"
            );
        }
    }
}
