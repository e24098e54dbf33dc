//! The `MutatingAdmissionPolicy` that gives every `VpsSnapshot`/`VpsBackup` its cleanup
//! finalizer when it is created, in the apiserver (CEL, no webhook server).
//!
//! Why at admission and not by the operator: the apiserver decides whether a DELETE removes an
//! object at once (no finalizers) when it first reads the object, and then deletes whatever
//! version is current without looking at finalizers again (kubernetes/kubernetes#77988, open
//! in 1.37). A finalizer the operator adds can therefore arrive inside a deletion already under
//! way: the object vanishes while the create the operator sent for it stays at the provider.
//! An object born with the finalizer always takes the graceful path, so its deletion waits for
//! the operator. The operator still adds the finalizer itself to objects created without it
//! (before the policy was installed, or where it is not).
//!
//! The chart renders the same objects (`charts/vpsnap/templates/admission-policy.yaml`); a
//! test compares the rendered `deploy/vpsnap.yaml` with these.
use serde_json::{Value, json};

/// The finalizer that holds a `VpsSnapshot`/`VpsBackup` until its provider object is dealt with.
pub const CLEANUP_FINALIZER: &str = "vpsnap.dev/cleanup";

/// The CEL mutation: add the finalizer unless it is there.
pub fn cleanup_finalizer_expression() -> String {
    let f = CLEANUP_FINALIZER;
    format!(
        "!has(object.metadata.finalizers) ? \
         [JSONPatch{{op: \"add\", path: \"/metadata/finalizers\", value: [\"{f}\"]}}] : \
         object.metadata.finalizers.exists(f, f == \"{f}\") ? [] : \
         [JSONPatch{{op: \"add\", path: \"/metadata/finalizers/-\", value: \"{f}\"}}]"
    )
}

/// The policy's `spec`.
pub fn cleanup_finalizer_policy_spec() -> Value {
    json!({
        "matchConstraints": {
            "resourceRules": [{
                "apiGroups": [super::GROUP],
                "apiVersions": ["*"],
                "operations": ["CREATE"],
                "resources": ["vpssnapshots", "vpsbackups"],
            }],
        },
        "failurePolicy": "Fail",
        "reinvocationPolicy": "Never",
        "mutations": [{
            "patchType": "JSONPatch",
            "jsonPatch": {"expression": cleanup_finalizer_expression()},
        }],
    })
}

/// The policy named `name`.
pub fn cleanup_finalizer_policy(name: &str) -> Value {
    json!({
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "MutatingAdmissionPolicy",
        "metadata": {"name": name},
        "spec": cleanup_finalizer_policy_spec(),
    })
}

/// A binding of policy `policy`: in `namespace` only, or everywhere. Objects in namespaces the
/// operator does not watch must not get a finalizer nobody will remove.
pub fn cleanup_finalizer_binding(name: &str, policy: &str, namespace: Option<&str>) -> Value {
    let mut spec = json!({"policyName": policy});
    if let Some(ns) = namespace {
        spec["matchResources"] = json!({
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": ns}},
        });
    }
    json!({
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "MutatingAdmissionPolicyBinding",
        "metadata": {"name": name},
        "spec": spec,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    /// The chart's rendering (`deploy/vpsnap.yaml` is `helm template` of it) says the same.
    #[test]
    fn the_chart_renders_the_same_policy() {
        let rendered = include_str!("../../deploy/vpsnap.yaml");
        let docs: Vec<Value> = serde_yaml::Deserializer::from_str(rendered)
            .filter_map(|d| Value::deserialize(d).ok())
            .collect();
        let policy = docs
            .iter()
            .find(|d| d["kind"] == "MutatingAdmissionPolicy")
            .expect("deploy/vpsnap.yaml has the policy");
        assert_eq!(policy["spec"], cleanup_finalizer_policy_spec());
        let binding = docs
            .iter()
            .find(|d| d["kind"] == "MutatingAdmissionPolicyBinding")
            .expect("deploy/vpsnap.yaml binds it");
        assert_eq!(binding["spec"]["policyName"], policy["metadata"]["name"]);
        assert!(
            binding["spec"].get("matchResources").is_none(),
            "the default release watches every namespace: {binding}"
        );
    }
}
