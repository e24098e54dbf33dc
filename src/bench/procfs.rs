//! Memory and CPU of a process from `/proc` (Linux).
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// One reading of a process.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct ProcStats {
    /// Resident set size now (`VmRSS`), KiB.
    pub rss_kib: u64,
    /// Peak resident set size since start (`VmHWM`), KiB.
    pub hwm_kib: u64,
    /// User + system CPU time since start, seconds.
    pub cpu_secs: f64,
}

impl ProcStats {
    /// `None` when the process is gone (or this is not Linux).
    pub fn read(pid: u32) -> Option<Self> {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        Some(Self {
            rss_kib: status_kib(&status, "VmRSS:")?,
            hwm_kib: status_kib(&status, "VmHWM:")?,
            cpu_secs: cpu_ticks(&stat)? as f64 / clock_ticks() as f64,
        })
    }
}

/// A `Vm…:   1234 kB` line of `/proc/<pid>/status`.
fn status_kib(status: &str, key: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// utime + stime (fields 14 and 15) of `/proc/<pid>/stat`; the command name (field 2) may
/// contain spaces and parentheses, so fields are counted after its last `)`.
fn cpu_ticks(stat: &str) -> Option<u64> {
    let after = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    // `after` starts at field 3 (state), so field n is fields[n - 3].
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// `getconf CLK_TCK` (100 on every Linux in practice), read once.
pub fn clock_ticks() -> u64 {
    static TICKS: OnceLock<u64> = OnceLock::new();
    *TICKS.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse().ok())
            .filter(|t| *t > 0)
            .unwrap_or(100)
    })
}

/// Samples `VmRSS` of a process every `every` and keeps the largest value seen, until
/// dropped.
pub struct RssSampler {
    peak: Arc<AtomicU64>,
    last: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl RssSampler {
    pub fn start(pid: u32, every: Duration) -> Self {
        let peak = Arc::new(AtomicU64::new(0));
        let last = Arc::new(AtomicU64::new(0));
        let (p, l) = (peak.clone(), last.clone());
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            loop {
                tick.tick().await;
                let Some(s) = ProcStats::read(pid) else { break };
                p.fetch_max(s.rss_kib, Ordering::Relaxed);
                l.store(s.rss_kib, Ordering::Relaxed);
            }
        });
        Self { peak, last, task }
    }

    /// Largest sampled `VmRSS`, KiB.
    pub fn peak_kib(&self) -> u64 {
        self.peak.load(Ordering::Relaxed)
    }

    /// Last sampled `VmRSS`, KiB.
    pub fn last_kib(&self) -> u64 {
        self.last.load(Ordering::Relaxed)
    }
}

impl Drop for RssSampler {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_status_and_stat() {
        let status = "Name:\tvpsnap\nVmHWM:\t   40960 kB\nVmRSS:\t   30720 kB\n";
        assert_eq!(status_kib(status, "VmRSS:"), Some(30720));
        assert_eq!(status_kib(status, "VmHWM:"), Some(40960));
        let stat =
            "4242 (a (weird) name) S 1 4242 4242 0 -1 4194560 1 0 0 0 250 30 0 0 20 0 3 0 1 2 3";
        assert_eq!(cpu_ticks(stat), Some(280));
    }

    #[test]
    fn reads_this_process() {
        let me = ProcStats::read(std::process::id()).expect("/proc of this process");
        assert!(me.rss_kib > 0 && me.hwm_kib >= me.rss_kib);
    }
}
