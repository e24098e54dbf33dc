//! The standard `process_*` metrics (the names every Prometheus client library exports, so
//! stock dashboards and alerts work), read from `/proc/self` at each scrape. On a system
//! without `/proc` nothing is exported rather than zeros.
use std::time::{SystemTime, UNIX_EPOCH};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Unit;

/// One reading of this process.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct ProcessStats {
    pub cpu_seconds: f64,
    pub resident_bytes: u64,
    pub virtual_bytes: u64,
    pub open_fds: u64,
    pub max_fds: Option<u64>,
    pub threads: u64,
    pub start_time_seconds: f64,
}

impl ProcessStats {
    /// `None` where `/proc` is not available.
    pub fn read_self() -> Option<Self> {
        let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
        let status = std::fs::read_to_string("/proc/self/status").ok()?;
        let boot = boot_time(&std::fs::read_to_string("/proc/stat").ok()?)?;
        let open_fds = std::fs::read_dir("/proc/self/fd").ok()?.count() as u64;
        let max_fds = std::fs::read_to_string("/proc/self/limits")
            .ok()
            .and_then(|l| max_open_files(&l));
        let mut stats = parse_stat(&stat, boot, CLOCK_TICKS, open_fds, max_fds)?;
        stats.resident_bytes = status_kib(&status, "VmRSS:")? * 1024;
        stats.virtual_bytes = status_kib(&status, "VmSize:")? * 1024;
        Some(stats)
    }
}

/// `sysconf(_SC_CLK_TCK)`: 100 on every Linux architecture Rust supports (the kernel's
/// USER_HZ, fixed by the ABI), so no libc call is needed.
const CLOCK_TICKS: f64 = 100.0;

/// A `Vm…:   1234 kB` line of `/proc/self/status`.
fn status_kib(status: &str, key: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// `btime` of `/proc/stat`: boot time in seconds since the epoch.
fn boot_time(proc_stat: &str) -> Option<u64> {
    proc_stat
        .lines()
        .find_map(|l| l.strip_prefix("btime "))?
        .trim()
        .parse()
        .ok()
}

/// The soft limit of "Max open files" in `/proc/self/limits`.
fn max_open_files(limits: &str) -> Option<u64> {
    limits
        .lines()
        .find_map(|l| l.strip_prefix("Max open files"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Fields of `/proc/self/stat` (proc(5)); the command name (field 2) may contain spaces and
/// parentheses, so fields are counted after its last `)`.
fn parse_stat(
    stat: &str,
    boot_time: u64,
    ticks: f64,
    open_fds: u64,
    max_fds: Option<u64>,
) -> Option<ProcessStats> {
    let after = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    // `after` starts at field 3 (state), so field n is fields[n - 3].
    let field = |n: usize| -> Option<u64> { fields.get(n - 3)?.parse().ok() };
    let cpu_ticks = field(14)? + field(15)?;
    Some(ProcessStats {
        cpu_seconds: cpu_ticks as f64 / ticks,
        threads: field(20)?,
        start_time_seconds: boot_time as f64 + field(22)? as f64 / ticks,
        open_fds,
        max_fds,
        // From `/proc/self/status`, which states them in bytes rather than pages.
        resident_bytes: 0,
        virtual_bytes: 0,
    })
}

/// Registered on the metrics registry without a prefix.
#[derive(Debug, Default)]
pub struct ProcessCollector;

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Some(s) = ProcessStats::read_self() else {
            return Ok(());
        };
        let counter = ConstCounter::new(s.cpu_seconds);
        counter.encode(encoder.encode_descriptor(
            "process_cpu",
            "Total user and system CPU time spent in seconds",
            Some(&Unit::Seconds),
            counter.metric_type(),
        )?)?;
        let mut gauge = |name: &str, help: &str, unit: Option<&Unit>, value: f64| {
            let g = ConstGauge::new(value);
            g.encode(encoder.encode_descriptor(name, help, unit, g.metric_type())?)
        };
        gauge(
            "process_resident_memory",
            "Resident memory size in bytes",
            Some(&Unit::Bytes),
            s.resident_bytes as f64,
        )?;
        gauge(
            "process_virtual_memory",
            "Virtual memory size in bytes",
            Some(&Unit::Bytes),
            s.virtual_bytes as f64,
        )?;
        gauge(
            "process_open_fds",
            "Number of open file descriptors",
            None,
            s.open_fds as f64,
        )?;
        if let Some(max) = s.max_fds {
            gauge(
                "process_max_fds",
                "Maximum number of open file descriptors",
                None,
                max as f64,
            )?;
        }
        gauge(
            "process_threads",
            "Number of OS threads in the process",
            None,
            s.threads as f64,
        )?;
        gauge(
            "process_start_time",
            "Start time of the process since unix epoch in seconds",
            Some(&Unit::Seconds),
            s.start_time_seconds,
        )?;
        Ok(())
    }
}

/// Seconds since the epoch, for tests comparing the start time with now.
pub fn now_seconds() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    // A real line shape, with a command name that contains ") (" to trip naive splitting.
    const STAT: &str = "4242 (vps (snap) x) S 1 4242 4242 0 -1 4194560 2000 0 0 0 \
        250 50 0 0 20 0 9 0 123456 104857600 2560 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0";

    #[test]
    fn parses_stat_fields_after_the_command_name() {
        let s = parse_stat(STAT, 1_700_000_000, 100.0, 12, Some(1024)).unwrap();
        assert_eq!(s.cpu_seconds, 3.0);
        assert_eq!(s.threads, 9);
        assert_eq!(s.start_time_seconds, 1_700_000_000.0 + 1234.56);
        assert_eq!((s.open_fds, s.max_fds), (12, Some(1024)));
    }

    #[test]
    fn truncated_or_garbled_stat_is_none() {
        assert!(parse_stat("4242 (x) S 1 2", 0, 100.0, 0, None).is_none());
        assert!(parse_stat("no parenthesis", 0, 100.0, 0, None).is_none());
    }

    #[test]
    fn limits_and_boot_time() {
        let limits = "Limit                     Soft Limit           Hard Limit           Units\n\
                      Max open files            1048576              1048576              files\n";
        assert_eq!(max_open_files(limits), Some(1_048_576));
        assert_eq!(
            boot_time("cpu  1 2 3\nbtime 1700000000\n"),
            Some(1_700_000_000)
        );
        assert_eq!(boot_time("cpu  1 2 3\n"), None);
        let status = "Name:\tvpsnap\nVmSize:\t  204800 kB\nVmRSS:\t   10240 kB\n";
        assert_eq!(status_kib(status, "VmRSS:"), Some(10240));
        assert_eq!(status_kib(status, "VmSize:"), Some(204_800));
        assert_eq!(status_kib(status, "VmHWM:"), None);
    }

    #[test]
    fn this_process_reads_plausibly() {
        let s = ProcessStats::read_self().expect("/proc is available on the test machine");
        assert!(s.resident_bytes > 1024 * 1024, "{s:?}");
        assert!(s.open_fds > 0 && s.threads > 0, "{s:?}");
        let age = now_seconds() - s.start_time_seconds;
        assert!((0.0..3600.0).contains(&age), "started {age} s ago");
    }
}
