//! OpenTelemetry traces over OTLP (cargo feature `otel`). Everything is configured by the
//! standard environment variables, read by the OpenTelemetry SDK itself:
//!
//! - `OTEL_EXPORTER_OTLP_PROTOCOL` (or `OTEL_EXPORTER_OTLP_TRACES_PROTOCOL`): `http/protobuf`
//!   (default) or `grpc`;
//! - `OTEL_EXPORTER_OTLP_ENDPOINT` / `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`, `…_HEADERS`,
//!   `…_TIMEOUT`, `…_INSECURE` (gRPC);
//! - `OTEL_SERVICE_NAME` (default `vpsnap`), `OTEL_RESOURCE_ATTRIBUTES`;
//! - `OTEL_TRACES_SAMPLER` / `OTEL_TRACES_SAMPLER_ARG` (default: every trace).
//!
//! Only the spans of `telemetry::spans` are exported (target `vpsnap::span`): a reconcile and
//! its steps, never log events, so nothing a log line says can leak into a trace by accident.
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::Layer;
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::registry::LookupSpan;

use super::spans;

/// Keeps the exporter alive; [`Traces::shutdown`] sends what is still buffered.
pub struct Traces {
    provider: SdkTracerProvider,
}

impl Traces {
    /// Builds the OTLP exporter from the environment. Must run inside the Tokio runtime (the
    /// gRPC client spawns its connection there).
    pub fn from_env() -> Result<Self, String> {
        crate::provider::install_crypto_provider();
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .build()
            .map_err(|e| format!("OpenTelemetry OTLP exporter: {e}"))?;
        let mut resource = Resource::builder().with_attribute(opentelemetry::KeyValue::new(
            "service.version",
            env!("CARGO_PKG_VERSION"),
        ));
        if std::env::var_os("OTEL_SERVICE_NAME").is_none() {
            resource = resource.with_service_name("vpsnap");
        }
        let provider = SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(resource.build())
            .build();
        Ok(Self { provider })
    }

    /// The layer that turns vpsnap's spans into OpenTelemetry spans.
    pub fn layer<S>(&self) -> impl Layer<S> + Send + Sync + 'static
    where
        S: tracing::Subscriber + for<'a> LookupSpan<'a> + Send + Sync,
    {
        tracing_opentelemetry::layer()
            .with_tracer(self.provider.tracer("vpsnap"))
            .with_filter(
                Targets::new()
                    .with_target(spans::TARGET, LevelFilter::INFO)
                    .with_default(LevelFilter::OFF),
            )
    }

    /// Flushes and stops the exporter (on a clean shutdown).
    pub fn shutdown(&self) {
        if let Err(e) = self.provider.shutdown() {
            tracing::warn!(error = %e, "could not flush the last traces");
        }
    }
}
