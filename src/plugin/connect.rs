//! The user's cluster: client and namespace from the kubeconfig (or in-cluster), like kubectl.
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, Config};

use super::output::Format;
use super::{CliError, Global};

/// What every command works with.
pub struct Ctx {
    pub client: Client,
    pub namespace: String,
    pub format: Format,
}

impl Ctx {
    pub async fn new(global: &Global) -> Result<Self, CliError> {
        let options = KubeConfigOptions {
            context: global.context.clone(),
            ..Default::default()
        };
        let config = match &global.kubeconfig {
            Some(path) => {
                let kc = Kubeconfig::read_from(path).map_err(|e| {
                    CliError::Usage(format!("--kubeconfig {}: {e}", path.display()))
                })?;
                Config::from_custom_kubeconfig(kc, &options)
                    .await
                    .map_err(|e| CliError::Usage(format!("--kubeconfig {}: {e}", path.display())))?
            }
            None if global.context.is_some() => Config::from_kubeconfig(&options)
                .await
                .map_err(|e| CliError::Usage(format!("--context: {e}")))?,
            None => Config::infer().await.map_err(|e| {
                CliError::Usage(format!(
                    "no cluster to talk to ({e}): set KUBECONFIG or pass --kubeconfig"
                ))
            })?,
        };
        let namespace = global
            .namespace
            .clone()
            .unwrap_or_else(|| config.default_namespace.clone());
        let client = Client::try_from(config)
            .map_err(|e| CliError::Api(format!("building the Kubernetes client: {e}")))?;
        Ok(Self {
            client,
            namespace,
            format: global.output,
        })
    }

    pub fn api<K>(&self) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
            + Clone
            + serde::de::DeserializeOwned
            + std::fmt::Debug,
    {
        Api::namespaced(self.client.clone(), &self.namespace)
    }
}
