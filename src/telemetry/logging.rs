//! Structured logs through `tracing`, as text or JSON, with a filter that can be changed while
//! the process runs (`PUT /debug/log-level`, see docs/operations.md), and — in a build with the
//! `otel` feature — OpenTelemetry traces of the spans in [`super::spans`].
use std::sync::{Arc, Mutex};

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer, reload};

/// The filter when `RUST_LOG` is not set.
pub const DEFAULT_FILTER: &str = "info,kube=warn,hyper=warn";

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// Tracing options of `vpsnap controller`.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct TelemetryArgs {
    /// Export a trace of every reconcile over OTLP (HTTP or gRPC; endpoint, protocol, headers
    /// and sampling from the standard OTEL_EXPORTER_OTLP_* and OTEL_TRACES_SAMPLER variables).
    /// Needs a build with the cargo feature `otel`.
    #[arg(long, env = "VPSNAP_OTEL_TRACES")]
    pub otel_traces: bool,
}

type Reload = Box<dyn Fn(EnvFilter) -> Result<(), reload::Error> + Send + Sync>;

/// The log filter in force, changeable at run time. Traces are not affected.
pub struct LogLevel {
    current: Mutex<String>,
    reload: Reload,
}

impl LogLevel {
    pub fn get(&self) -> String {
        self.current
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Replaces the filter with `directives` (`RUST_LOG` syntax, e.g. `debug` or
    /// `info,vpsnap::controller=debug`). A bad filter changes nothing and says why.
    pub fn set(&self, directives: &str) -> Result<(), String> {
        let directives = directives.trim();
        if directives.is_empty() {
            return Err("empty filter: send e.g. `debug` or `info,vpsnap=debug`".into());
        }
        let filter = EnvFilter::try_new(directives)
            .map_err(|e| format!("invalid filter {directives:?}: {e}"))?;
        (self.reload)(filter).map_err(|e| format!("could not apply the filter: {e}"))?;
        *self.current.lock().unwrap_or_else(|p| p.into_inner()) = directives.to_string();
        Ok(())
    }
}

impl LogLevel {
    /// A level whose changes go nowhere (for tests of what sets it).
    pub fn for_test(initial: &str) -> Self {
        Self {
            current: Mutex::new(initial.into()),
            reload: Box::new(|_| Ok(())),
        }
    }
}

/// What `init` set up; keep it for the life of the process.
pub struct Telemetry {
    pub log_level: Arc<LogLevel>,
    #[cfg(feature = "otel")]
    traces: Option<super::otel::Traces>,
}

impl Telemetry {
    /// Sends the traces still buffered (a clean shutdown).
    pub fn shutdown(&self) {
        #[cfg(feature = "otel")]
        if let Some(t) = &self.traces {
            t.shutdown();
        }
    }
}

/// Installs the global subscriber; `RUST_LOG` overrides [`DEFAULT_FILTER`]. With
/// `--otel-traces` in a build without the `otel` feature it fails and says so, rather than
/// run without the traces that were asked for.
pub fn init(format: LogFormat, args: &TelemetryArgs) -> Result<Telemetry, String> {
    let initial = std::env::var("RUST_LOG").unwrap_or_else(|_| DEFAULT_FILTER.to_string());
    let filter = EnvFilter::try_new(&initial).unwrap_or_else(|e| {
        eprintln!(
            "vpsnap: RUST_LOG {initial:?} is not a valid filter ({e}); using {DEFAULT_FILTER:?}"
        );
        EnvFilter::new(DEFAULT_FILTER)
    });
    let (filter, handle) = reload::Layer::new(filter);
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let fmt = match format {
        LogFormat::Text => fmt.boxed(),
        LogFormat::Json => fmt.json().flatten_event(true).boxed(),
    };
    let log_level = Arc::new(LogLevel {
        current: Mutex::new(initial),
        reload: Box::new(move |f| handle.reload(f)),
    });

    #[cfg(feature = "otel")]
    {
        let traces = if args.otel_traces {
            Some(super::otel::Traces::from_env()?)
        } else {
            None
        };
        let otel = traces.as_ref().map(|t| t.layer());
        let result = tracing_subscriber::registry()
            .with(fmt.with_filter(filter))
            .with(otel)
            .try_init();
        // A second init (tests, embedded use) keeps the first subscriber.
        drop(result);
        Ok(Telemetry { log_level, traces })
    }
    #[cfg(not(feature = "otel"))]
    {
        if args.otel_traces {
            return Err(
                "--otel-traces: this vpsnap was built without OpenTelemetry (cargo feature `otel`)"
                    .into(),
            );
        }
        let result = tracing_subscriber::registry()
            .with(fmt.with_filter(filter))
            .try_init();
        drop(result);
        Ok(Telemetry { log_level })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn a_bad_filter_changes_nothing_and_says_why() {
        let applied = Arc::new(AtomicUsize::new(0));
        let counter = applied.clone();
        let level = LogLevel {
            current: Mutex::new("info".into()),
            reload: Box::new(move |_| {
                counter.fetch_add(1, Ordering::SeqCst);
                Ok(())
            }),
        };
        let err = level.set("info,vpsnap=loud").unwrap_err();
        assert!(err.contains("invalid filter"), "{err}");
        assert!(level.set("  ").unwrap_err().contains("empty filter"));
        assert_eq!(
            (level.get(), applied.load(Ordering::SeqCst)),
            ("info".into(), 0)
        );
        level.set("debug,kube=info").unwrap();
        assert_eq!(level.get(), "debug,kube=info");
        assert_eq!(applied.load(Ordering::SeqCst), 1);
    }
}
