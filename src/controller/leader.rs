//! Leader election on a Lease: only the holder runs controllers, so a standby replica never
//! calls the provider. Losing the lease ends the process at once (the Deployment restarts it
//! as a standby) rather than risking a provider call from two replicas.
use kube::Client;
use kube_lease_manager::LeaseManagerBuilder;
use tokio::sync::watch;

use super::run::ControllerArgs;

pub struct Leadership {
    state: Option<watch::Receiver<bool>>,
    task: Option<
        tokio::task::JoinHandle<kube_lease_manager::Result<kube_lease_manager::LeaseManager>>,
    >,
}

impl Leadership {
    /// Without `--leader-election` this process is always the leader.
    pub async fn start(
        client: &Client,
        args: &ControllerArgs,
        _shutdown: impl std::future::Future<Output = ()>,
    ) -> Result<Self, Box<dyn std::error::Error>> {
        if !args.leader_election {
            return Ok(Self {
                state: None,
                task: None,
            });
        }
        let namespace = args
            .lease_namespace
            .clone()
            .unwrap_or_else(|| "default".into());
        let identity = std::env::var("POD_NAME")
            .unwrap_or_else(|_| format!("{}-{}", hostname(), std::process::id()));
        let duration = args.lease_duration_secs.max(3);
        let manager = LeaseManagerBuilder::new(client.clone(), &args.lease_name)
            .with_namespace(&namespace)
            .with_identity(&identity)
            .with_duration(duration)
            .with_grace((duration / 3).max(1))
            .with_field_manager("vpsnap-leader")
            .build()
            .await?;
        let (state, task) = manager.watch().await;
        tracing::info!(lease = %args.lease_name, %namespace, %identity, "waiting for leadership");
        Ok(Self {
            state: Some(state),
            task: Some(task),
        })
    }

    pub async fn wait_until_leader(&self) {
        if let Some(rx) = &self.state {
            let mut rx = rx.clone();
            let _ = rx.wait_for(|leader| *leader).await;
            tracing::info!("acquired leadership");
        }
    }

    /// Resolves when leadership, once held, is lost; never without leader election.
    pub fn lost(&self) -> impl std::future::Future<Output = ()> + use<> {
        let rx = self.state.clone();
        async move {
            match rx {
                Some(mut rx) => {
                    let _ = rx.wait_for(|leader| !*leader).await;
                }
                None => std::future::pending::<()>().await,
            }
        }
    }

    /// Gives the lease up on a clean shutdown so a standby takes over at once.
    pub async fn release(mut self) {
        self.state.take();
        if let Some(task) = self.task.take()
            && let Ok(Ok(manager)) = task.await
            && let Err(e) = manager.release().await
        {
            tracing::warn!(error = %e, "could not release the lease");
        }
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "vpsnap".into())
}
