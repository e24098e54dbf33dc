//! The control plane side: client, CRDs, a throw-away namespace, applying objects.
use std::path::Path;
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{Namespace, Secret};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams,
};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::discovery::{self, ApiGroup};
use kube::{Client, Config, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::Result;
use crate::api::{VpsBackup, VpsProvider, VpsSnapshot};

/// Field manager of everything the programs apply.
pub const MANAGER: &str = "vpsnap-bench";

/// A client for `kubeconfig`, or for the default configuration when `None`.
pub async fn client(kubeconfig: Option<&Path>) -> Result<Client> {
    let config = match kubeconfig {
        Some(path) => {
            let kc = Kubeconfig::read_from(path)
                .map_err(|e| format!("reading kubeconfig {}: {e}", path.display()))?;
            Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default()).await?
        }
        None => Config::infer().await?,
    };
    Ok(Client::try_from(config)?)
}

/// Kinds both programs cannot do without; the CRDs of other kinds are applied when they can
/// be, and skipped with a warning when the apiserver refuses them.
pub const REQUIRED_KINDS: [&str; 3] = ["VpsProvider", "VpsSnapshot", "VpsBackup"];

/// Applies every CRD this build serves (server-side, idempotent) and waits until each is
/// Established. Returns the kinds installed.
pub async fn install_crds(client: &Client) -> Result<Vec<String>> {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    let mut installed = Vec::new();
    for crd in crate::api::all_crds() {
        let name = crd.metadata.name.clone().unwrap_or_default();
        let kind = crd.spec.names.kind.clone();
        let applied = api
            .patch(
                &name,
                &PatchParams::apply(MANAGER).force(),
                &Patch::Apply(&crd),
            )
            .await;
        match applied {
            Ok(_) => installed.push((name, kind)),
            Err(e) if !REQUIRED_KINDS.contains(&kind.as_str()) => {
                eprintln!("warning: CRD {name} not installed ({e}); {kind} is left out");
            }
            Err(e) => return Err(format!("installing CRD {name}: {e}").into()),
        }
    }
    for (name, _) in &installed {
        let established = kube::runtime::wait::await_condition(
            api.clone(),
            name,
            kube::runtime::wait::conditions::is_crd_established(),
        );
        tokio::time::timeout(Duration::from_secs(60), established)
            .await
            .map_err(|_| format!("CRD {name} not Established after 60 s"))??;
    }
    Ok(installed.into_iter().map(|(_, kind)| kind).collect())
}

/// Creates `prefix-<random>`, with objects born with the cleanup finalizer as the chart
/// installs them (see `bind_cleanup_finalizer`).
pub async fn create_namespace(client: &Client, prefix: &str) -> Result<String> {
    let name = format!("{prefix}-{:08x}", rand::random::<u32>());
    let api: Api<Namespace> = Api::all(client.clone());
    let mut ns = Namespace::default();
    ns.metadata.name = Some(name.clone());
    api.create(&PostParams::default(), &ns).await?;
    if !bind_cleanup_finalizer(client, &name, POLICY).await? {
        eprintln!(
            "warning: the apiserver does not serve MutatingAdmissionPolicy; objects in {name} get their finalizer from the operator"
        );
    }
    Ok(name)
}

/// The cleanup-finalizer policy as the bench and the chaos harness install it.
pub const POLICY: &str = "vpsnap-bench-cleanup-finalizer";

fn admission_api(client: &Client, kind: &str, plural: &str) -> Api<DynamicObject> {
    let ar = ApiResource {
        group: "admissionregistration.k8s.io".into(),
        version: "v1".into(),
        api_version: "admissionregistration.k8s.io/v1".into(),
        kind: kind.into(),
        plural: plural.into(),
    };
    Api::all_with(client.clone(), &ar)
}

/// Installs the cleanup-finalizer `MutatingAdmissionPolicy` named `policy` (idempotent), binds
/// it to `ns` only, and waits until the apiserver applies it to new objects. `Ok(false)`: the
/// apiserver does not serve the API.
pub async fn bind_cleanup_finalizer(client: &Client, ns: &str, policy: &str) -> Result<bool> {
    use crate::api::admission;
    let pp = PatchParams::apply(MANAGER).force();
    let applied = admission_api(
        client,
        "MutatingAdmissionPolicy",
        "mutatingadmissionpolicies",
    )
    .patch(
        policy,
        &pp,
        &Patch::Apply(admission::cleanup_finalizer_policy(policy)),
    )
    .await;
    match applied {
        Ok(_) => {}
        Err(kube::Error::Api(e)) if e.code == 404 => return Ok(false),
        Err(e) => return Err(format!("installing {policy}: {e}").into()),
    }
    let binding = binding_name(policy, ns);
    admission_api(
        client,
        "MutatingAdmissionPolicyBinding",
        "mutatingadmissionpolicybindings",
    )
    .patch(
        &binding,
        &pp,
        &Patch::Apply(admission::cleanup_finalizer_binding(
            &binding,
            policy,
            Some(ns),
        )),
    )
    .await
    .map_err(|e| format!("binding {policy} to {ns}: {e}"))?;
    // The apiserver loads policies and bindings through its own informers: probe with dry-run
    // creates (they pass mutating admission) until the finalizer shows.
    let api: Api<VpsSnapshot> = Api::namespaced(client.clone(), ns);
    let mut manifest = snapshot_manifest("admission-probe", "none", 1, serde_json::json!({}));
    manifest["apiVersion"] = VpsSnapshot::api_version(&()).into();
    manifest["kind"] = VpsSnapshot::kind(&()).into();
    let probe: VpsSnapshot = serde_json::from_value(manifest)?;
    let dry = PostParams {
        dry_run: true,
        ..PostParams::default()
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let made = api.create(&dry, &probe).await?;
        if made
            .finalizers()
            .iter()
            .any(|f| f == admission::CLEANUP_FINALIZER)
        {
            return Ok(true);
        }
        if tokio::time::Instant::now() > deadline {
            return Err(format!("{policy} did not take effect in {ns} within 60 s").into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn binding_name(policy: &str, ns: &str) -> String {
    format!("{policy}-{ns}")
}

/// Removes `ns`'s binding of `policy` (bindings are cluster-scoped and outlive namespaces).
pub async fn unbind_cleanup_finalizer(client: &Client, ns: &str, policy: &str) {
    let _ = admission_api(
        client,
        "MutatingAdmissionPolicyBinding",
        "mutatingadmissionpolicybindings",
    )
    .delete(&binding_name(policy, ns), &DeleteParams::default())
    .await;
}

/// The `vpsnap.dev` kinds the cluster serves, with their API resources (from discovery, so
/// kinds added by newer CRDs are seen even when this build does not know them).
pub async fn vpsnap_kinds(client: &Client) -> Result<Vec<(String, ApiResource)>> {
    let group: ApiGroup = discovery::oneshot::group(client, crate::api::GROUP).await?;
    Ok(group
        .recommended_resources()
        .into_iter()
        .map(|(ar, _)| (ar.kind.clone(), ar))
        .collect())
}

/// Removes the finalizers of every object of `ar` in `ns` (the operator is gone, nobody else
/// would), `concurrency` requests at a time. Returns how many were patched.
pub async fn strip_finalizers(
    client: &Client,
    ns: &str,
    ar: &ApiResource,
    concurrency: usize,
) -> Result<usize> {
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, ar);
    let list = api.list_metadata(&ListParams::default()).await?;
    let names: Vec<String> = list
        .items
        .into_iter()
        .filter(|o| {
            o.metadata
                .finalizers
                .as_ref()
                .is_some_and(|f| !f.is_empty())
        })
        .filter_map(|o| o.metadata.name)
        .collect();
    let patched = names.len();
    futures::stream::iter(names)
        .map(|name| {
            let api = api.clone();
            async move {
                let patch = serde_json::json!({"metadata": {"finalizers": null}});
                match api
                    .patch_metadata(&name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await
                {
                    Ok(_) => Ok(()),
                    Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
                    Err(e) => Err(e),
                }
            }
        })
        .buffer_unordered(concurrency.max(1))
        .try_collect::<Vec<()>>()
        .await?;
    Ok(patched)
}

/// Deletes the namespace after stripping the finalizers of every vpsnap object in it (call
/// only once the operator is stopped). Best effort: errors are printed, not returned.
pub async fn delete_namespace(client: &Client, ns: &str) {
    match vpsnap_kinds(client).await {
        Ok(kinds) => {
            for (kind, ar) in kinds {
                if let Err(e) = strip_finalizers(client, ns, &ar, 32).await {
                    eprintln!("cleanup: removing finalizers of {kind} in {ns}: {e}");
                }
            }
        }
        Err(e) => eprintln!("cleanup: discovery of {}: {e}", crate::api::GROUP),
    }
    unbind_cleanup_finalizer(client, ns, POLICY).await;
    let api: Api<Namespace> = Api::all(client.clone());
    if let Err(e) = api.delete(ns, &DeleteParams::default()).await {
        eprintln!("cleanup: deleting namespace {ns}: {e}");
    }
}

/// Waits (bounded) until the namespace is gone.
pub async fn wait_namespace_gone(client: &Client, ns: &str, timeout: Duration) -> bool {
    let api: Api<Namespace> = Api::all(client.clone());
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if let Ok(None) = api.get_opt(ns).await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    false
}

/// Server-side applies a full manifest (`apiVersion`/`kind` are filled in from `K`).
pub async fn apply<K>(api: &Api<K>, mut body: serde_json::Value) -> Result<K>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug + Serialize,
{
    let name = body["metadata"]["name"]
        .as_str()
        .ok_or("manifest without metadata.name")?
        .to_string();
    body["apiVersion"] = K::api_version(&()).into_owned().into();
    body["kind"] = K::kind(&()).into_owned().into();
    Ok(api
        .patch(
            &name,
            &PatchParams::apply(MANAGER).force(),
            &Patch::Apply(&body),
        )
        .await?)
}

/// A `VpsSnapshot` manifest.
pub fn snapshot_manifest(
    name: &str,
    provider: &str,
    server: u64,
    extra: serde_json::Value,
) -> serde_json::Value {
    let mut spec = serde_json::json!({"providerRef": {"name": provider}, "serverId": server});
    merge(&mut spec, extra);
    serde_json::json!({"metadata": {"name": name}, "spec": spec})
}

/// A `VpsBackup` manifest.
pub fn backup_manifest(
    name: &str,
    provider: &str,
    server: u64,
    extra: serde_json::Value,
) -> serde_json::Value {
    snapshot_manifest(name, provider, server, extra)
}

/// Shallow merge of `extra`'s keys into `base`.
pub fn merge(base: &mut serde_json::Value, extra: serde_json::Value) {
    if let (Some(b), serde_json::Value::Object(e)) = (base.as_object_mut(), extra) {
        for (k, v) in e {
            b.insert(k, v);
        }
    }
}

/// Applies `manifests` with at most `concurrency` requests in flight; fails on the first error.
pub async fn apply_all<K>(
    api: &Api<K>,
    manifests: Vec<serde_json::Value>,
    concurrency: usize,
) -> Result<Vec<K>>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug + Serialize,
{
    futures::stream::iter(manifests)
        .map(|m| apply(api, m))
        .buffer_unordered(concurrency.max(1))
        .try_collect()
        .await
}

/// How the provider account used by the programs is set up.
pub struct ProviderSetup<'a> {
    pub name: &'a str,
    pub endpoint: String,
    pub token: &'a str,
    pub poll_interval: &'a str,
    pub resync_interval: &'a str,
    pub requests_per_second: u32,
    pub max_in_flight: u32,
    /// Merged into the spec last (limits, breaker).
    pub extra: serde_json::Value,
}

/// Applies the credentials Secret and the `VpsRest` provider, then waits until it is Ready.
pub async fn setup_provider(
    client: &Client,
    ns: &str,
    p: ProviderSetup<'_>,
    timeout: Duration,
) -> Result<()> {
    let secret_name = format!("{}-credentials", p.name);
    let secrets: Api<Secret> = Api::namespaced(client.clone(), ns);
    secrets
        .patch(
            &secret_name,
            &PatchParams::apply(MANAGER).force(),
            &Patch::Apply(&serde_json::json!({
                "apiVersion": "v1", "kind": "Secret",
                "metadata": {"name": secret_name},
                "stringData": {"token": p.token},
            })),
        )
        .await?;
    let mut spec = serde_json::json!({
        "type": "VpsRest",
        "endpoint": p.endpoint,
        "credentialsSecretRef": {"name": secret_name},
        "pollInterval": p.poll_interval,
        "resyncInterval": p.resync_interval,
        "requestsPerSecond": p.requests_per_second,
        "maxInFlight": p.max_in_flight,
    });
    merge(&mut spec, p.extra);
    let api: Api<VpsProvider> = Api::namespaced(client.clone(), ns);
    apply(
        &api,
        serde_json::json!({"metadata": {"name": p.name}, "spec": spec}),
    )
    .await?;
    let deadline = Instant::now() + timeout;
    loop {
        let obj = api.get(p.name).await?;
        if is_ready(&obj) {
            return Ok(());
        }
        if Instant::now() > deadline {
            let (status, reason, message) = condition(&obj, "Ready").unwrap_or_default();
            return Err(format!(
                "VpsProvider {} not Ready after {timeout:?} (Ready={status} {reason}: {message})",
                p.name
            )
            .into());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Condition `type_` of any object with `status.conditions`, as (status, reason, message).
pub fn condition(obj: &impl Serialize, type_: &str) -> Option<(String, String, String)> {
    let v = serde_json::to_value(obj).ok()?;
    condition_of_value(&v, type_)
}

/// Like [`condition`], on an already serialised object.
pub fn condition_of_value(v: &serde_json::Value, type_: &str) -> Option<(String, String, String)> {
    let cs = v.get("status")?.get("conditions")?.as_array()?;
    let c = cs
        .iter()
        .find(|c| c.get("type").and_then(|t| t.as_str()) == Some(type_))?;
    let s = |k: &str| {
        c.get(k)
            .and_then(|x| x.as_str())
            .unwrap_or_default()
            .to_string()
    };
    Some((s("status"), s("reason"), s("message")))
}

pub fn is_ready(obj: &impl Serialize) -> bool {
    condition(obj, "Ready").is_some_and(|(s, _, _)| s == "True")
}

/// `Ready=True` on a snapshot, without serialising it.
pub fn snapshot_ready(obj: &VpsSnapshot) -> bool {
    obj.status.as_ref().is_some_and(|s| {
        s.conditions
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == "True")
    })
}

/// `Ready=True` on a backup, without serialising it.
pub fn backup_ready(obj: &VpsBackup) -> bool {
    obj.status.as_ref().is_some_and(|s| {
        s.conditions
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == "True")
    })
}
