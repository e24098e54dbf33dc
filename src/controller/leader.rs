//! Leader election on a Lease, fenced by time: only the holder runs controllers, and the
//! provider gate lets its requests out only inside the window its last renewal opened
//! (`fencing`). A renewal that does not succeed within the renew deadline ends the process at
//! once (the Deployment restarts it as a standby) instead of risking a provider call from two
//! replicas; so does a renewal that finds another holder.
//!
//! The Lease is read and written here directly (coordination.k8s.io/v1) so that the moment
//! each renewal was sent — what the fence measures from — is known exactly.
use std::sync::Arc;
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{Api, PostParams};
use kube::{Client, ResourceExt};
use tokio::sync::watch;
use tokio::time::Instant;

use super::fencing::{LeaseFence, Timings};
use super::run::ControllerArgs;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Standby,
    Leader,
    /// Held once, lost since: the process must stop.
    Lost,
}

pub struct Leadership {
    fence: Option<Arc<LeaseFence>>,
    role: Option<watch::Receiver<Role>>,
    task: Option<tokio::task::JoinHandle<()>>,
    lease: Option<(Api<Lease>, String, String)>,
    quiet: Duration,
}

impl Leadership {
    /// Without `--leader-election` this process is always the leader, unfenced.
    pub async fn start(
        client: &Client,
        args: &ControllerArgs,
        timings: Timings,
    ) -> Result<Self, Box<dyn std::error::Error>> {
        if !args.leader_election {
            return Ok(Self {
                fence: None,
                role: None,
                task: None,
                lease: None,
                quiet: Duration::ZERO,
            });
        }
        timings.validate()?;
        let namespace = args
            .lease_namespace
            .clone()
            .unwrap_or_else(|| "default".into());
        let identity = std::env::var("POD_NAME")
            .unwrap_or_else(|_| format!("{}-{}", hostname(), std::process::id()));
        let api: Api<Lease> = Api::namespaced(client.clone(), &namespace);
        let fence = Arc::new(LeaseFence::new(timings));
        let (tx, rx) = watch::channel(Role::Standby);
        let election = Election {
            api: api.clone(),
            name: args.lease_name.clone(),
            identity: identity.clone(),
            timings,
            fence: fence.clone(),
            role: tx,
        };
        tracing::info!(lease = %args.lease_name, %namespace, %identity, "waiting for leadership");
        let task = tokio::spawn(election.run());
        Ok(Self {
            fence: Some(fence),
            role: Some(rx),
            task: Some(task),
            lease: Some((api, args.lease_name.clone(), identity)),
            quiet: timings.quiet_period(),
        })
    }

    /// The fence the provider gate checks, when leader election is on.
    pub fn fence(&self) -> Option<Arc<LeaseFence>> {
        self.fence.clone()
    }

    /// Resolves once this process leads and its quiet period has passed.
    pub async fn wait_until_leader(&self) {
        if let Some(rx) = &self.role {
            let mut rx = rx.clone();
            let _ = rx.wait_for(|r| *r == Role::Leader).await;
            tracing::info!(quiet = ?self.quiet, "acquired leadership; starting after the quiet period");
            tokio::time::sleep(self.quiet).await;
        }
    }

    /// Resolves when leadership, once held, is lost; never without leader election.
    pub fn lost(&self) -> impl std::future::Future<Output = ()> + use<> {
        let rx = self.role.clone();
        async move {
            match rx {
                Some(mut rx) => {
                    let _ = rx.wait_for(|r| *r == Role::Lost).await;
                }
                None => std::future::pending::<()>().await,
            }
        }
    }

    /// Gives the lease up on a clean shutdown (controllers already stopped) so a standby
    /// takes over at once.
    pub async fn release(mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
        if let Some(fence) = &self.fence {
            fence.revoke();
        }
        if let Some((api, name, identity)) = self.lease.take()
            && let Err(e) = release(&api, &name, &identity).await
        {
            tracing::warn!(error = %e, "could not release the lease");
        }
    }
}

struct Election {
    api: Api<Lease>,
    name: String,
    identity: String,
    timings: Timings,
    fence: Arc<LeaseFence>,
    role: watch::Sender<Role>,
}

/// What an attempt to take the lease found.
enum Attempt {
    /// Ours now; the renewal was sent at this instant.
    Taken(Box<Lease>, Instant),
    /// Someone else's: try again after this long.
    Held(Duration),
}

impl Election {
    async fn run(self) {
        let mut lease = loop {
            match self.acquire().await {
                Ok(Attempt::Taken(lease, sent)) => {
                    self.fence.renewed(sent);
                    break *lease;
                }
                Ok(Attempt::Held(wait)) => tokio::time::sleep(wait).await,
                Err(e) => {
                    tracing::warn!(error = %e, "could not read or take the lease; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        };
        let _ = self.role.send(Role::Leader);
        loop {
            tokio::time::sleep(self.timings.renew_every()).await;
            let sent = Instant::now();
            if self.fence.lapsed(sent) {
                tracing::error!("the leader lease was not renewed within its deadline; stopping");
                break;
            }
            // A renewal that hangs must not outlive the deadline it is trying to meet.
            let left = self.fence.deadline_left(sent);
            match tokio::time::timeout(left, self.renew(&lease)).await {
                Ok(Ok(Some(renewed))) => {
                    self.fence.renewed(sent);
                    lease = renewed;
                }
                Ok(Ok(None)) => {
                    tracing::error!("another replica holds the leader lease; stopping");
                    break;
                }
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "could not renew the leader lease; retrying")
                }
                Err(_) => tracing::warn!("renewing the leader lease timed out; retrying"),
            }
        }
        self.fence.revoke();
        let _ = self.role.send(Role::Lost);
    }

    /// Takes the lease when it is free or expired (by this process's clock).
    async fn acquire(&self) -> Result<Attempt, kube::Error> {
        let duration = self.timings.lease.as_secs().max(1) as i32;
        let now = Timestamp::now();
        let Some(current) = self.api.get_opt(&self.name).await? else {
            let mut lease = Lease::default();
            lease.metadata.name = Some(self.name.clone());
            lease.spec = Some(self.spec(now, now, duration, 0));
            let sent = Instant::now();
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(l) => Ok(Attempt::Taken(Box::new(l), sent)),
                Err(kube::Error::Api(e)) if e.code == 409 => {
                    Ok(Attempt::Held(Duration::from_secs(1)))
                }
                Err(e) => Err(e),
            };
        };
        let spec = current.spec.clone().unwrap_or_default();
        let holder = spec.holder_identity.clone().filter(|h| !h.is_empty());
        let expires = spec.renew_time.as_ref().map(|t| {
            t.0 + SignedDuration::from_secs(i64::from(
                spec.lease_duration_seconds.unwrap_or(duration),
            ))
        });
        // Held, also by an earlier process of this identity: a frozen one may still be alive.
        if holder.is_some()
            && let Some(expires) = expires
            && expires > now
        {
            let wait = Duration::try_from(expires.duration_since(now)).unwrap_or_default();
            return Ok(Attempt::Held(
                wait.clamp(Duration::from_millis(500), self.timings.lease),
            ));
        }
        let transitions = spec.lease_transitions.unwrap_or(0) + 1;
        let mut taken = current.clone();
        taken.spec = Some(self.spec(now, now, duration, transitions));
        let sent = Instant::now();
        match self
            .api
            .replace(&self.name, &PostParams::default(), &taken)
            .await
        {
            Ok(l) => Ok(Attempt::Taken(Box::new(l), sent)),
            Err(kube::Error::Api(e)) if e.code == 409 => Ok(Attempt::Held(Duration::from_secs(1))),
            Err(e) => Err(e),
        }
    }

    /// Renews the lease this process holds; `None` when another holder has it now.
    async fn renew(&self, lease: &Lease) -> Result<Option<Lease>, kube::Error> {
        let mut renewed = lease.clone();
        let spec = renewed.spec.get_or_insert_with(LeaseSpec::default);
        spec.renew_time = Some(MicroTime(Timestamp::now()));
        match self
            .api
            .replace(&self.name, &PostParams::default(), &renewed)
            .await
        {
            Ok(l) => Ok(Some(l)),
            Err(kube::Error::Api(e)) if e.code == 409 => {
                let current = self.api.get(&self.name).await?;
                let holder = current
                    .spec
                    .as_ref()
                    .and_then(|s| s.holder_identity.as_deref());
                if holder == Some(self.identity.as_str()) {
                    // Only our own earlier write raced this one: renew on top of it.
                    Box::pin(self.renew(&current)).await
                } else {
                    Ok(None)
                }
            }
            Err(e) => Err(e),
        }
    }

    fn spec(
        &self,
        acquired: Timestamp,
        renewed: Timestamp,
        duration: i32,
        transitions: i32,
    ) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(self.identity.clone()),
            lease_duration_seconds: Some(duration),
            acquire_time: Some(MicroTime(acquired)),
            renew_time: Some(MicroTime(renewed)),
            lease_transitions: Some(transitions),
            ..LeaseSpec::default()
        }
    }
}

/// Empties the holder if it is still this identity, so a standby need not wait for expiry.
async fn release(api: &Api<Lease>, name: &str, identity: &str) -> Result<(), kube::Error> {
    let Some(mut lease) = api.get_opt(name).await? else {
        return Ok(());
    };
    let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
    if spec.holder_identity.as_deref() != Some(identity) {
        return Ok(());
    }
    spec.holder_identity = None;
    spec.renew_time = None;
    spec.acquire_time = None;
    let name = lease.name_any();
    api.replace(&name, &PostParams::default(), &lease).await?;
    Ok(())
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "vpsnap".into())
}
