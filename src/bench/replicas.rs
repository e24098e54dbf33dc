//! Operator processes as a Deployment runs them: one, or several with leader election, each
//! incarnation with its own `POD_NAME` (which also names it in its provider `User-Agent`).
//! The chaos harness kills, freezes (SIGSTOP) and thaws (SIGCONT) them, restarts the ones
//! that exit as the kubelet would, and reads the Lease to tell which one leads.
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use kube::Client;
use kube::api::Api;

use super::Result;
use super::operator::{Operator, OperatorSpec};

/// The Lease the replicas compete for (created in the run's namespace).
pub const LEASE_NAME: &str = "vpsnap-chaos";

struct Slot {
    letter: char,
    /// Incarnations started so far; the current one is `chaos-<letter>-<generation>`.
    generation: u32,
    op: Option<Operator>,
    frozen_since: Option<Instant>,
    log: Option<PathBuf>,
}

/// A process that ended on its own.
pub struct Exit {
    pub slot: usize,
    pub instance: String,
    pub status: String,
}

pub struct ReplicaSet {
    client: Client,
    base: OperatorSpec,
    /// `None` for a single replica without leader election.
    lease_duration: Option<Duration>,
    slots: Vec<Slot>,
    /// Reconciles counted by processes that are gone.
    pub reconciles: u64,
    pub scrapes_failed: u64,
}

/// `operator.log` → `operator-a.log` for slot `a` of several.
fn slot_log(base: &Path, letter: char) -> PathBuf {
    let stem = base
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "operator".into());
    let name = match base.extension() {
        Some(ext) => format!("{stem}-{letter}.{}", ext.to_string_lossy()),
        None => format!("{stem}-{letter}"),
    };
    base.with_file_name(name)
}

impl ReplicaSet {
    /// `replicas` > 1 turns on `--leader-election` with a Lease of `lease_duration` in the
    /// operator's namespace.
    pub fn new(
        client: Client,
        mut base: OperatorSpec,
        replicas: usize,
        lease_duration: Duration,
    ) -> Self {
        let replicas = replicas.max(1);
        let lease_duration = (replicas > 1).then_some(lease_duration);
        if let Some(d) = lease_duration {
            // A short lease needs a short request timeout to fence by (the operator refuses
            // a lease shorter than skew + timeout + 3 s): 1 s of skew, the rest for requests.
            let lease = d.as_secs().max(6);
            let timeout = (lease - 1 - 3).clamp(1, 10);
            base.extra_args.extend([
                "--leader-election".to_string(),
                "--lease-name".into(),
                LEASE_NAME.into(),
                "--lease-namespace".into(),
                base.namespace.clone(),
                "--lease-duration-secs".into(),
                lease.to_string(),
                "--provider-request-timeout".into(),
                format!("{timeout}s"),
                "--clock-skew-allowance".into(),
                "1s".into(),
            ]);
        }
        let slots = (0..replicas)
            .map(|i| {
                let letter = char::from(b'a' + u8::try_from(i % 26).unwrap_or(0));
                Slot {
                    letter,
                    generation: 0,
                    op: None,
                    frozen_since: None,
                    log: match &base.log {
                        Some(path) if replicas > 1 => Some(slot_log(path, letter)),
                        other => other.clone(),
                    },
                }
            })
            .collect();
        Self {
            client,
            base,
            lease_duration,
            slots,
            reconciles: 0,
            scrapes_failed: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    pub fn leader_election(&self) -> bool {
        self.lease_duration.is_some()
    }

    pub fn lease_duration(&self) -> Option<Duration> {
        self.lease_duration
    }

    /// The current incarnation's name (`POD_NAME`), e.g. `chaos-a-2`.
    pub fn instance(&self, slot: usize) -> String {
        let s = &self.slots[slot];
        format!("chaos-{}-{}", s.letter, s.generation)
    }

    pub fn logs(&self) -> Vec<PathBuf> {
        let mut logs: Vec<PathBuf> = self.slots.iter().filter_map(|s| s.log.clone()).collect();
        logs.dedup();
        logs
    }

    /// Starts a new incarnation in `slot`; returns its instance name.
    pub fn start(&mut self, slot: usize) -> Result<String> {
        self.slots[slot].generation += 1;
        let instance = self.instance(slot);
        let s = &mut self.slots[slot];
        let mut spec = self.base.clone();
        spec.log = s.log.clone();
        spec.env.push(("POD_NAME".into(), instance.clone()));
        if let Some(path) = &spec.log {
            // A banner, so each incarnation's lines can be told apart in the shared file.
            let mut f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)?;
            writeln!(
                f,
                "==== vpsnap-chaos: starting {instance} at {} ====",
                jiff::Timestamp::now()
            )?;
        }
        s.op = Some(Operator::start(&spec)?);
        s.frozen_since = None;
        Ok(instance)
    }

    /// Waits until every running replica answers `/readyz` (a standby does at once).
    pub async fn wait_ready(&mut self, timeout: Duration) -> Result<()> {
        for s in &mut self.slots {
            if let Some(op) = s.op.as_mut() {
                op.wait_ready(timeout).await?;
            }
        }
        Ok(())
    }

    /// The Lease's holder, if any (always `None` without leader election).
    pub async fn holder(&self) -> Option<String> {
        self.lease_duration?;
        let api: Api<Lease> = Api::namespaced(self.client.clone(), &self.base.namespace);
        let lease = api.get_opt(LEASE_NAME).await.ok().flatten()?;
        lease.spec?.holder_identity.filter(|h| !h.is_empty())
    }

    /// The slot whose current incarnation holds the Lease; slot 0 without leader election.
    pub async fn leader(&self) -> Option<usize> {
        if self.lease_duration.is_none() {
            return Some(0);
        }
        let holder = self.holder().await?;
        (0..self.slots.len()).find(|&i| self.instance(i) == holder && self.slots[i].op.is_some())
    }

    pub fn is_frozen(&self, slot: usize) -> bool {
        self.slots[slot].frozen_since.is_some()
    }

    pub fn frozen(&self) -> Vec<(usize, Instant)> {
        self.slots
            .iter()
            .enumerate()
            .filter_map(|(i, s)| s.frozen_since.map(|t| (i, t)))
            .collect()
    }

    /// SIGKILL, as a crash would (a frozen process dies too). Counts its reconciles first
    /// when it can still answer.
    pub async fn kill(&mut self, slot: usize) {
        let frozen = self.is_frozen(slot);
        if let Some(op) = self.slots[slot].op.take() {
            if frozen {
                self.scrapes_failed += 1;
            } else {
                match op.reconciles_total().await {
                    Ok(n) => self.reconciles += n,
                    Err(_) => self.scrapes_failed += 1,
                }
            }
            op.kill().await;
        }
        self.slots[slot].frozen_since = None;
    }

    /// SIGSTOP: the process keeps its sockets and its belief that it leads, and does nothing.
    pub async fn freeze(&mut self, slot: usize) -> Result<()> {
        let op = self.slots[slot].op.as_ref().ok_or("no process to freeze")?;
        op.signal("STOP").await?;
        self.slots[slot].frozen_since = Some(Instant::now());
        Ok(())
    }

    /// SIGCONT: it wakes up where it stopped.
    pub async fn thaw(&mut self, slot: usize) -> Result<()> {
        if let Some(op) = self.slots[slot].op.as_ref() {
            op.signal("CONT").await?;
        }
        self.slots[slot].frozen_since = None;
        Ok(())
    }

    /// Thaws every frozen replica.
    pub async fn thaw_all(&mut self) -> Result<()> {
        for (slot, _) in self.frozen() {
            self.thaw(slot).await?;
        }
        Ok(())
    }

    /// The replicas that ended on their own since the last call (their slots are empty
    /// until [`Self::start`]).
    pub fn reap(&mut self) -> Vec<Exit> {
        let mut exits = Vec::new();
        for i in 0..self.slots.len() {
            let status = self.slots[i].op.as_mut().and_then(Operator::exit_status);
            if let Some(status) = status {
                let instance = self.instance(i);
                self.slots[i].op = None;
                self.slots[i].frozen_since = None;
                // Its metrics went with it.
                self.scrapes_failed += 1;
                exits.push(Exit {
                    slot: i,
                    instance,
                    status: status.to_string(),
                });
            }
        }
        exits
    }

    pub fn running(&self, slot: usize) -> bool {
        self.slots[slot].op.is_some()
    }

    pub fn pid(&self, slot: usize) -> Option<u32> {
        self.slots[slot].op.as_ref().map(|op| op.pid)
    }

    /// Kills every replica (counting reconciles of those that answer).
    pub async fn stop_all(&mut self) {
        for i in 0..self.slots.len() {
            self.kill(i).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    /// A stand-in operator: records its POD_NAME and arguments, then sleeps (or exits with
    /// the code in `$EXIT_WITH`).
    fn fake_operator(dir: &Path) -> PathBuf {
        let bin = dir.join("fake-vpsnap");
        std::fs::write(
            &bin,
            "#!/bin/sh\necho \"$@\" > \"$(dirname \"$0\")/$POD_NAME\"\n\
             if [ -n \"$EXIT_WITH\" ]; then exit \"$EXIT_WITH\"; fi\nexec sleep 600\n",
        )
        .unwrap();
        let status = std::process::Command::new("chmod")
            .arg("+x")
            .arg(&bin)
            .status()
            .unwrap();
        assert!(status.success());
        bin
    }

    fn set(dir: &Path, replicas: usize, env: Vec<(String, String)>) -> ReplicaSet {
        let config = kube::Config::new("http://127.0.0.1:9".parse().unwrap());
        let client = Client::try_from(config).unwrap();
        let spec = OperatorSpec {
            bin: fake_operator(dir),
            kubeconfig: None,
            namespace: "ns".into(),
            log: None,
            extra_args: Vec::new(),
            env,
        };
        ReplicaSet::new(client, spec, replicas, Duration::from_secs(5))
    }

    /// The process state letter from /proc (R, S, T for stopped, Z, …).
    fn state(pid: u32) -> Option<char> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        stat.rsplit(')').next()?.trim().chars().next()
    }

    async fn until(what: &str, mut done: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !done() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[tokio::test]
    async fn replicas_are_named_frozen_thawed_and_killed() {
        let dir = temp_dir("vpsnap-replicas");
        let mut r = set(&dir, 2, Vec::new());
        assert!(r.leader_election());
        assert_eq!(r.start(0).unwrap(), "chaos-a-1");
        assert_eq!(r.start(1).unwrap(), "chaos-b-1");
        until("both started", || {
            dir.join("chaos-a-1").exists() && dir.join("chaos-b-1").exists()
        })
        .await;
        let args = std::fs::read_to_string(dir.join("chaos-b-1")).unwrap();
        assert!(
            args.contains("--leader-election --lease-name vpsnap-chaos --lease-namespace ns --lease-duration-secs 6 --provider-request-timeout 2s --clock-skew-allowance 1s"),
            "{args}"
        );
        let pid = r.pid(0).unwrap();
        r.freeze(0).await.unwrap();
        assert!(r.is_frozen(0));
        until("stopped", || state(pid) == Some('T')).await;
        r.thaw(0).await.unwrap();
        until("running again", || state(pid).is_some_and(|s| s != 'T')).await;
        assert!(r.frozen().is_empty());
        // A frozen process dies on SIGKILL too.
        r.freeze(1).await.unwrap();
        r.kill(1).await;
        assert!(!r.running(1) && !r.is_frozen(1));
        assert_eq!(r.start(1).unwrap(), "chaos-b-2");
        assert!(r.reap().is_empty());
        r.stop_all().await;
        assert!(!r.running(0) && !r.running(1));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn a_replica_that_exits_is_reaped_once() {
        let dir = temp_dir("vpsnap-replicas-exit");
        let mut r = set(&dir, 1, vec![("EXIT_WITH".into(), "3".into())]);
        assert!(!r.leader_election());
        assert_eq!(r.start(0).unwrap(), "chaos-a-1");
        let mut exits = Vec::new();
        until("the exit", || {
            exits.extend(r.reap());
            !exits.is_empty()
        })
        .await;
        assert_eq!(exits.len(), 1);
        assert_eq!(exits[0].instance, "chaos-a-1");
        assert!(exits[0].status.contains('3'), "{}", exits[0].status);
        assert!(!r.running(0));
        assert!(r.reap().is_empty());
        let args = std::fs::read_to_string(dir.join("chaos-a-1")).unwrap();
        assert!(!args.contains("--leader-election"), "{args}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn each_slot_logs_to_its_own_file() {
        assert_eq!(
            slot_log(Path::new("/tmp/chaos-op.log"), 'b'),
            Path::new("/tmp/chaos-op-b.log")
        );
        assert_eq!(
            slot_log(Path::new("/tmp/chaos-op"), 'a'),
            Path::new("/tmp/chaos-op-a")
        );
    }
}
