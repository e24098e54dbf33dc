//! `VpsProvider` reconciler: Secret → credentials → client → credential check → registry.
//!
//! Object controllers never call a provider that is not registered Ready here, so a missing
//! Secret or a bad token costs no provider calls beyond the one check.
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use kube::api::Api;
use kube::runtime::controller::Action;
use kube::{Resource, ResourceExt};

use super::context::Context;
use super::registry::{ProviderHandle, ProviderKey};
use super::{Error, WriteStep, status};
use crate::api::conditions::{self, Desired};
use crate::api::{
    Capabilities, ProviderType, VpsProvider, VpsProviderStatus, ZomroAuthMode, parse_duration,
};
use crate::plan::breaker::Breaker;
use crate::provider::{
    Credentials, ProviderClient, ProviderConfig, ProviderError, ProviderKind, Secret as SecretValue,
};

/// Annotation on a `VpsProvider`: deletions pass the mass-deletion breaker until this time.
pub const ALLOW_DELETIONS_UNTIL: &str = "vpsnap.dev/allow-deletions-until";

/// How often a Ready provider's credentials are checked again.
const RECHECK: Duration = Duration::from_secs(300);

enum Outcome {
    Ready(ProviderHandle),
    NotReady {
        reason: &'static str,
        message: String,
        retry: Duration,
    },
}

pub async fn reconcile(obj: Arc<VpsProvider>, ctx: Arc<Context>) -> Result<Action, Error> {
    let started = std::time::Instant::now();
    let result = check(&obj, &ctx).await;
    super::outcome::finish(&ctx, KIND, &backoff_key(&obj), started, &result);
    result
}

async fn check(obj: &Arc<VpsProvider>, ctx: &Context) -> Result<Action, Error> {
    let ns = obj.namespace().unwrap_or_default();
    let key: ProviderKey = (ns.clone(), obj.name_any());
    let api: Api<VpsProvider> = Api::namespaced(ctx.client.clone(), &ns);
    let generation = obj.meta().generation;

    if obj.meta().deletion_timestamp.is_some() {
        ctx.registry.remove(&key);
        ctx.listings.forget_provider(&key);
        return Ok(Action::await_change());
    }

    let (outcome, secret_version) = evaluate(obj, ctx, &key).await;
    let current = obj.status.clone().unwrap_or_default();
    let now = jiff::Timestamp::now();
    let (desired_conditions, capabilities, last_error, action) = match &outcome {
        Outcome::Ready(handle) => {
            let caps = handle.capabilities.clone();
            ctx.registry.set_ready(key.clone(), handle.clone());
            (
                vec![
                    Desired::new(
                        conditions::READY,
                        true,
                        "CredentialsValid",
                        "credentials accepted by the provider",
                    ),
                    Desired::new(conditions::RECONCILING, false, "Ready", ""),
                    Desired::new(conditions::STALLED, false, "Ready", ""),
                ],
                Some(caps),
                None,
                Action::requeue(RECHECK),
            )
        }
        Outcome::NotReady {
            reason,
            message,
            retry,
        } => {
            ctx.registry
                .set_not_ready(key.clone(), format!("{reason}: {message}"));
            let stalled = *reason != "Unreachable";
            (
                vec![
                    Desired::new(conditions::READY, false, reason, message.clone()),
                    Desired::new(conditions::RECONCILING, !stalled, reason, message.clone()),
                    Desired::new(conditions::STALLED, stalled, reason, message.clone()),
                ],
                current.capabilities.clone(),
                Some(message.clone()),
                Action::requeue(*retry),
            )
        }
    };
    let desired = VpsProviderStatus {
        observed_generation: generation,
        capabilities,
        last_error,
        secret_version,
        conditions: conditions::settle(&current.conditions, &desired_conditions, generation, now),
    };
    let was_ready = conditions::is_true(&current.conditions, conditions::READY);
    let wrote = status::write(&api, obj.as_ref(), obj.status.as_ref(), &desired)
        .await
        .map_err(|e| Error::write(WriteStep::Status, e))?
        .is_some();
    if wrote {
        let ready = matches!(outcome, Outcome::Ready(_));
        if ready != was_ready || !ready {
            let (warning, reason, note) = match &outcome {
                Outcome::Ready(_) => (
                    false,
                    "CredentialsValid",
                    "provider credentials accepted".to_string(),
                ),
                Outcome::NotReady {
                    reason, message, ..
                } => (true, *reason, message.clone()),
            };
            ctx.event(obj.as_ref(), warning, reason, "CheckCredentials", note)
                .await;
        }
    }
    Ok(action)
}

/// Reads the Secret, builds (or reuses) the client and checks the credentials.
async fn evaluate(
    obj: &VpsProvider,
    ctx: &Context,
    key: &ProviderKey,
) -> (Outcome, Option<String>) {
    let spec = &obj.spec;
    let (poll_interval, resync_interval, breaker_window) = match intervals(obj) {
        Ok(i) => i,
        Err(message) => {
            return (
                Outcome::NotReady {
                    reason: "InvalidSpec",
                    message,
                    retry: Duration::from_secs(300),
                },
                None,
            );
        }
    };
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &key.0);
    let secret_name = &spec.credentials_secret_ref.name;
    let secret = match secrets.get_opt(secret_name).await {
        Ok(Some(s)) => s,
        Ok(None) => {
            return (
                Outcome::NotReady {
                    reason: "SecretMissing",
                    message: format!(
                        "Secret {secret_name:?} (spec.credentialsSecretRef.name) does not exist in namespace {:?}",
                        key.0
                    ),
                    retry: Duration::from_secs(60),
                },
                None,
            );
        }
        Err(e) => {
            return (
                Outcome::NotReady {
                    reason: "SecretUnreadable",
                    message: format!("cannot read Secret {secret_name:?}: {}", kube_reason(&e)),
                    retry: Duration::from_secs(30),
                },
                None,
            );
        }
    };
    let secret_version = secret.resource_version();
    let fingerprint = format!("{:?}/{:?}", obj.meta().generation, secret_version);

    let deletions_allowed_until = obj
        .annotations()
        .get(ALLOW_DELETIONS_UNTIL)
        .and_then(|v| v.parse::<jiff::Timestamp>().ok());

    // Reuse the client (and its rate limiter, session and breaker) while nothing it was built
    // from changed; otherwise build a new one.
    let previous = ctx.registry.current(key);
    let (client, breaker) = match previous.as_ref().filter(|h| h.fingerprint == fingerprint) {
        Some(h) => (h.client.clone(), h.breaker.clone()),
        None => {
            let credentials = match credentials(
                spec.type_,
                spec.zomro_auth.unwrap_or_default(),
                &secret,
                secret_name,
            ) {
                Ok(c) => c,
                Err(message) => {
                    return (
                        Outcome::NotReady {
                            reason: "SecretInvalid",
                            message,
                            retry: Duration::from_secs(60),
                        },
                        secret_version,
                    );
                }
            };
            let config = ProviderConfig {
                endpoint: spec.endpoint.clone(),
                credentials,
                requests_per_second: spec.requests_per_second.max(1) as u32,
                burst: spec.requests_per_second.max(1) as u32,
                max_in_flight: spec.max_in_flight.max(1) as u32,
                request_timeout: ctx.timings.request_timeout,
                snapshot_limit: spec.limits.snapshots_per_server.max(1) as u32,
                backup_limit: spec.limits.backups_per_server.max(1) as u32,
                fence: ctx
                    .fence
                    .clone()
                    .map(|f| f as Arc<dyn crate::provider::Fence>),
            };
            let kind = match spec.type_ {
                ProviderType::VpsRest => ProviderKind::VpsRest,
                ProviderType::Zomro => ProviderKind::Zomro,
            };
            let client = match ProviderClient::new(kind, config, ctx.metrics.clone()) {
                Ok(c) => c,
                Err(e) => {
                    return (
                        Outcome::NotReady {
                            reason: "InvalidSpec",
                            message: e.to_string(),
                            retry: Duration::from_secs(300),
                        },
                        secret_version,
                    );
                }
            };
            ctx.listings.forget_provider(key);
            let breaker = previous.map(|h| h.breaker).unwrap_or_else(|| {
                Arc::new(Mutex::new(Breaker::new(
                    spec.deletion_breaker.max_deletions.max(1) as usize,
                    breaker_window,
                )))
            });
            (client, breaker)
        }
    };
    breaker.lock().expect("breaker lock").reconfigure(
        spec.deletion_breaker.max_deletions.max(1) as usize,
        breaker_window,
    );

    match client.check_credentials().await {
        Ok(()) => {
            let caps = client.capabilities();
            (
                Outcome::Ready(ProviderHandle {
                    client,
                    type_: spec.type_,
                    capabilities: Capabilities {
                        snapshots: caps.snapshots,
                        backups: caps.backups,
                        snapshot_restore: caps.snapshot_restore,
                        backup_restore: caps.backup_restore,
                    },
                    snapshot_limit: spec.limits.snapshots_per_server.max(1) as usize,
                    backup_limit: spec.limits.backups_per_server.max(1) as usize,
                    poll_interval,
                    resync_interval,
                    fingerprint,
                    breaker,
                    deletions_allowed_until,
                }),
                secret_version,
            )
        }
        Err(e) => {
            let (reason, retry) = match &e {
                ProviderError::Auth(_) => ("CredentialsInvalid", Duration::from_secs(300)),
                ProviderError::NotFound(_)
                | ProviderError::InvalidRequest(_)
                | ProviderError::Protocol(_) => ("EndpointInvalid", Duration::from_secs(120)),
                _ => ("Unreachable", Duration::from_secs(30)),
            };
            let message = match &e {
                ProviderError::Auth(_) => format!(
                    "the provider rejected the credentials in Secret {secret_name:?}; update the Secret (no restart needed): {e}"
                ),
                _ => format!("credential check against {} failed: {e}", spec.endpoint),
            };
            (
                Outcome::NotReady {
                    reason,
                    message,
                    retry,
                },
                secret_version,
            )
        }
    }
}

/// The poll interval, resync interval and breaker window. One the operator cannot use is an
/// error naming the field, never silently replaced by a default.
fn intervals(obj: &VpsProvider) -> Result<(Duration, Duration, Duration), String> {
    let spec = &obj.spec;
    let parse = |field: &str, text: &str| -> Result<Duration, String> {
        match parse_duration(text) {
            Ok(d) if d.is_zero() => Err(format!(
                "{field} {text:?} must be longer than zero, e.g. 15s"
            )),
            Ok(d) => Ok(d),
            Err(e) => Err(format!("{field}: {e}")),
        }
    };
    Ok((
        parse("spec.pollInterval", &spec.poll_interval)?,
        parse("spec.resyncInterval", &spec.resync_interval)?,
        parse("spec.deletionBreaker.window", &spec.deletion_breaker.window)?,
    ))
}

/// Reads the keys each provider type needs. Messages name the key, never its value.
fn credentials(
    type_: ProviderType,
    auth: ZomroAuthMode,
    secret: &Secret,
    name: &str,
) -> Result<Credentials, String> {
    let get = |k: &str| -> Result<SecretValue, String> {
        let bytes = secret
            .data
            .as_ref()
            .and_then(|d| d.get(k))
            .map(|b| b.0.clone())
            .or_else(|| {
                secret
                    .string_data
                    .as_ref()
                    .and_then(|d| d.get(k))
                    .map(|s| s.clone().into_bytes())
            })
            .ok_or_else(|| {
                format!("Secret {name:?} has no key {k:?}; add it (see the VpsProvider docs)")
            })?;
        let text = String::from_utf8(bytes)
            .map_err(|_| format!("Secret {name:?} key {k:?} is not UTF-8"))?;
        let text = text.trim().to_string();
        if text.is_empty() {
            return Err(format!("Secret {name:?} key {k:?} is empty"));
        }
        Ok(SecretValue::new(text))
    };
    match type_ {
        ProviderType::VpsRest => Ok(Credentials::Bearer {
            token: get("token")?,
        }),
        ProviderType::Zomro => Ok(Credentials::Login {
            username: get("username")?,
            password: get("password")?,
            session: auth == ZomroAuthMode::Session,
        }),
    }
}

/// A kube error reduced to something safe and short for a condition message.
pub fn kube_reason(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) => format!("{} ({})", s.reason, s.code),
        other => other.to_string().chars().take(200).collect(),
    }
}

const KIND: &str = "VpsProvider";

fn backoff_key(obj: &VpsProvider) -> String {
    super::outcome::key(
        KIND,
        &format!("{}/{}", obj.namespace().unwrap_or_default(), obj.name_any()),
    )
}

pub fn error_policy(obj: Arc<VpsProvider>, err: &Error, ctx: Arc<Context>) -> Action {
    super::outcome::error_policy(&ctx, KIND, &backoff_key(&obj), err)
}
