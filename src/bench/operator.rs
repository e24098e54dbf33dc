//! The operator as a child process: `vpsnap controller --watch-namespace NS`.
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::process::{Child, Command};

use super::Result;
use super::procfs::ProcStats;

/// The `vpsnap` binary next to the running program (cargo puts every binary of the package
/// in the same directory).
pub fn default_operator_bin() -> Result<PathBuf> {
    Ok(std::env::current_exe()?.with_file_name("vpsnap"))
}

/// How to start the operator.
#[derive(Clone, Debug)]
pub struct OperatorSpec {
    pub bin: PathBuf,
    pub kubeconfig: Option<PathBuf>,
    pub namespace: String,
    /// Appended to by every start (stderr and stdout); `None` discards the output.
    pub log: Option<PathBuf>,
    pub extra_args: Vec<String>,
    /// Extra environment, e.g. `POD_NAME` to tell replicas apart.
    pub env: Vec<(String, String)>,
}

/// A running operator process, killed (SIGKILL) on drop.
pub struct Operator {
    child: Child,
    pub pid: u32,
    pub metrics_addr: SocketAddr,
    pub started: Instant,
    http: reqwest::Client,
}

fn free_addr() -> Result<SocketAddr> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?)
}

fn log_file(path: &Path) -> Result<std::fs::File> {
    Ok(std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?)
}

impl Operator {
    pub fn start(spec: &OperatorSpec) -> Result<Self> {
        if !spec.bin.exists() {
            return Err(format!(
                "operator binary {} not found (build it with `cargo build --bin vpsnap`, or pass --operator-bin)",
                spec.bin.display()
            )
            .into());
        }
        let metrics_addr = free_addr()?;
        let mut cmd = Command::new(&spec.bin);
        cmd.arg("controller")
            .arg("--watch-namespace")
            .arg(&spec.namespace)
            .arg("--metrics-addr")
            .arg(metrics_addr.to_string())
            .args(&spec.extra_args)
            .env(
                "RUST_LOG",
                std::env::var("VPSNAP_BENCH_OPERATOR_LOG")
                    .unwrap_or_else(|_| "info,kube=warn".into()),
            )
            .envs(spec.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .kill_on_drop(true);
        if let Some(kc) = &spec.kubeconfig {
            cmd.env("KUBECONFIG", kc);
        }
        match &spec.log {
            Some(path) => {
                cmd.stderr(log_file(path)?).stdout(log_file(path)?);
            }
            None => {
                cmd.stderr(Stdio::null()).stdout(Stdio::null());
            }
        }
        let child = cmd
            .spawn()
            .map_err(|e| format!("starting {}: {e}", spec.bin.display()))?;
        let pid = child.id().ok_or("operator exited at once")?;
        crate::provider::install_crypto_provider();
        Ok(Self {
            child,
            pid,
            metrics_addr,
            started: Instant::now(),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(5))
                .build()?,
        })
    }

    /// Waits until `/readyz` answers 200 (caches synced). Fails if the process exits.
    pub async fn wait_ready(&mut self, timeout: Duration) -> Result<Duration> {
        let url = format!("http://{}/readyz", self.metrics_addr);
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Err(format!("the operator exited before it was ready ({status})").into());
            }
            if let Ok(r) = self.http.get(&url).send().await
                && r.status().is_success()
            {
                return Ok(self.started.elapsed());
            }
            if Instant::now() > deadline {
                return Err(
                    format!("the operator's /readyz was not 200 within {timeout:?}").into(),
                );
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// The `/metrics` exposition.
    pub async fn metrics(&self) -> Result<String> {
        let url = format!("http://{}/metrics", self.metrics_addr);
        Ok(self
            .http
            .get(url)
            .send()
            .await?
            .error_for_status()?
            .text()
            .await?)
    }

    /// Sum of every `vpsnap_reconciles_total` series.
    pub async fn reconciles_total(&self) -> Result<u64> {
        Ok(sum_metric(&self.metrics().await?, "vpsnap_reconciles_total") as u64)
    }

    /// Whether the process is still running (a stopped process is running).
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// How the process ended, once it has.
    pub fn exit_status(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Sends `signal` (a name `kill -s` knows: STOP, CONT, TERM) without waiting for any
    /// effect. The crate forbids `unsafe`, so the signal goes through kill(1).
    pub async fn signal(&self, signal: &str) -> Result<()> {
        let status = Command::new("kill")
            .arg("-s")
            .arg(signal)
            .arg(self.pid.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .await?;
        if status.success() {
            Ok(())
        } else {
            Err(format!("kill -s {signal} {} failed ({status})", self.pid).into())
        }
    }

    pub fn stats(&self) -> Option<ProcStats> {
        ProcStats::read(self.pid)
    }

    /// SIGKILL, as a crash would; waits for the process to be reaped.
    pub async fn kill(mut self) {
        let _ = self.child.kill().await;
    }
}

/// Sums the samples of `name` (all label sets) in a Prometheus/OpenMetrics exposition.
pub fn sum_metric(exposition: &str, name: &str) -> f64 {
    exposition
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let rest = l.strip_prefix(name)?;
            // `name{...} v` or `name v`, not `name_suffix ...`.
            let rest = if let Some(r) = rest.strip_prefix('{') {
                &r[r.find('}')? + 1..]
            } else if rest.starts_with(' ') {
                rest
            } else {
                return None;
            };
            rest.split_whitespace().next()?.parse::<f64>().ok()
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::sum_metric;

    #[test]
    fn sums_every_series_of_one_name_only() {
        let text = "# TYPE vpsnap_reconciles counter\n\
                    vpsnap_reconciles_total{kind=\"VpsSnapshot\",result=\"ok\"} 12\n\
                    vpsnap_reconciles_total{kind=\"VpsBackup\",result=\"Kube\"} 3\n\
                    vpsnap_reconciles_total_extra 100\n\
                    vpsnap_evictions_total{kind=\"VpsSnapshot\"} 7\n";
        assert_eq!(sum_metric(text, "vpsnap_reconciles_total"), 15.0);
        assert_eq!(sum_metric(text, "vpsnap_evictions_total"), 7.0);
        assert_eq!(sum_metric(text, "absent"), 0.0);
    }
}
