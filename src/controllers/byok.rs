//! `ByokCredential`: a vendor credential registered with the infrai BYOK API.
//!
//! The spec is the truth: label, enabled state, bindings (missing ones added,
//! extra ones removed) and quota are reconciled on every pass. When the
//! referenced Secret changes, the new `api_key` is staged, the vendor's probe is
//! checked, and only then committed; a failed probe keeps the old key in force
//! (`Ready` stays True, a `RotationFailed` condition and Event say why).
//!
//! Credential values never leave this module except towards the vendor: status
//! holds salted fingerprints, and vendor messages are scrubbed of the values
//! before they reach conditions, Events or logs.

use std::collections::{BTreeMap, BTreeSet};

use async_trait::async_trait;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams};
use kube::core::DeserializeGuard;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::EventType;
use kube::runtime::watcher;
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};

use super::conditions::{self, Health, reason};
use super::pipeline::idempotency_key;
use super::reconciler::{Managed, Reconcile, apply_status, apply_status_if_changed};
use super::{Context, KubeCall, Scope, VendorCall, dependents};
use crate::api::v1alpha1::{
    ByokBinding, ByokCredential, ByokCredentialStatus, ByokQuota, ByokTestResult, ByokUsage,
    DeletionPolicy,
};
use crate::providers::byok::{Binding, ByokApi, CredentialState, Credentials, Quota};
use crate::providers::{Operation, ProviderError};

/// Name of this controller in metrics and logs.
pub const CONTROLLER: &str = "byokcredential";
/// Label the operator puts on Secrets named by a `ByokCredential`; the operator
/// watches only Secrets carrying it, never every Secret in the cluster.
pub const WATCH_LABEL: &str = "dbops.dev/byok-credentials";
/// Condition set while the last rotation attempt failed (the old key stays in force).
pub const ROTATION_FAILED: &str = "RotationFailed";
/// The credential field rotated in place (`byok.rotate.*` take an `api_key`).
pub const ROTATABLE_FIELD: &str = "api_key";

pub use super::error::{Error, Object};

crate::impl_managed!(ByokCredential, ByokCredentialStatus, CONTROLLER);

/// Salted SHA-256 fingerprints of each credential field (the salt is the
/// resource's UID, so equal keys in two resources do not look alike).
pub fn fingerprints(
    salt: &str,
    fields: &BTreeMap<String, SecretString>,
) -> BTreeMap<String, String> {
    fields
        .iter()
        .map(|(name, value)| {
            let mut hash = Sha256::new();
            for part in [
                salt.as_bytes(),
                b"\0",
                name.as_bytes(),
                b"\0",
                value.expose_secret().as_bytes(),
            ] {
                hash.update(part);
            }
            let digest: String = hash
                .finalize()
                .iter()
                .take(16)
                .map(|b| format!("{b:02x}"))
                .collect();
            (name.clone(), format!("sha256:{digest}"))
        })
        .collect()
}

/// One fingerprint of the whole credential content.
pub fn combined_fingerprint(fingerprints: &BTreeMap<String, String>) -> String {
    let mut hash = Sha256::new();
    for (name, fp) in fingerprints {
        hash.update(name.as_bytes());
        hash.update(b"=");
        hash.update(fp.as_bytes());
        hash.update(b";");
    }
    hash.finalize()
        .iter()
        .take(16)
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Replaces every credential value found in `text` (vendor error messages may echo them).
pub fn scrub(text: &str, secrets: &BTreeMap<String, SecretString>) -> String {
    let mut out = text.to_string();
    for value in secrets.values() {
        let value = value.expose_secret();
        if value.len() >= 4 {
            out = out.replace(value, "[REDACTED]");
        }
    }
    out
}

fn scrub_error(error: ProviderError, secrets: &BTreeMap<String, SecretString>) -> ProviderError {
    match error {
        ProviderError::Http {
            api,
            operation,
            status,
            code,
            message,
            retry_after,
        } => ProviderError::Http {
            api,
            operation,
            status,
            code,
            message: scrub(&message, secrets),
            retry_after,
        },
        ProviderError::Transport {
            api,
            operation,
            timeout,
            message,
        } => ProviderError::Transport {
            api,
            operation,
            timeout,
            message: scrub(&message, secrets),
        },
        ProviderError::InvalidResponse {
            api,
            operation,
            message,
        } => ProviderError::InvalidResponse {
            api,
            operation,
            message: scrub(&message, secrets),
        },
        other => other,
    }
}

fn to_binding(b: &ByokBinding) -> Binding {
    Binding {
        capability: b.capability.clone(),
        module: b.module.clone(),
        model: b.model.clone(),
    }
}

/// The bind and unbind calls that make `actual` equal `desired` (pure).
/// A binding is identified by its capability and module; binding a scope that
/// exists with another model replaces it, so it needs no unbind first.
pub fn binding_diff(desired: &[Binding], actual: &[Binding]) -> (Vec<Binding>, Vec<Binding>) {
    let desired_set: BTreeSet<&Binding> = desired.iter().collect();
    let to_bind: Vec<Binding> = desired
        .iter()
        .filter(|d| !actual.contains(d))
        .cloned()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let to_unbind = actual
        .iter()
        .filter(|a| !desired_set.contains(a))
        .filter(|a| {
            !desired
                .iter()
                .any(|d| d.capability == a.capability && d.module == a.module)
        })
        .cloned()
        .collect();
    (to_bind, to_unbind)
}

fn quota(quota: Option<&ByokQuota>) -> Quota {
    quota
        .map(|q| Quota {
            spend_limit_usd: q.spend_limit_usd,
            call_limit: q.call_limit,
            window: q.window,
        })
        .unwrap_or_default()
}

/// Whether the periodic test is due at `now`.
pub fn test_due(
    interval: Option<std::time::Duration>,
    last: Option<&ByokTestResult>,
    now: Timestamp,
) -> bool {
    let (Some(interval), Some(last)) = (interval, last) else {
        return false;
    };
    match last.tested_at.parse::<Timestamp>() {
        Ok(tested) => {
            now >= tested + SignedDuration::try_from(interval).unwrap_or(SignedDuration::MAX)
        }
        Err(_) => true,
    }
}

impl ByokCredential {
    /// The credential fields of the referenced Secret, labelled for the operator's watch.
    async fn credentials(
        &self,
        ctx: &Context,
        namespace: &str,
    ) -> Result<BTreeMap<String, SecretString>, Error> {
        let name = &self.spec.credentials_secret_ref.name;
        let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), namespace);
        let missing = |problem| Error::CredentialsMissing {
            secret: name.clone(),
            problem,
        };
        let secret = secrets
            .get_opt(name)
            .await
            .map_err(KubeCall::Read)?
            .ok_or(missing("does not exist"))?;
        if secret.labels().get(WATCH_LABEL).map(String::as_str) != Some("true") {
            let patch = serde_json::json!({ "metadata": { "labels": { WATCH_LABEL: "true" } } });
            secrets
                .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
                .map_err(KubeCall::Write)?;
        }
        let fields: BTreeMap<String, SecretString> = secret
            .data
            .unwrap_or_default()
            .into_iter()
            .filter_map(|(k, v)| {
                String::from_utf8(v.0)
                    .ok()
                    .map(|v| (k, SecretString::from(v)))
            })
            .filter(|(_, v)| !v.expose_secret().is_empty())
            .collect();
        if fields.is_empty() {
            return Err(missing("has no non-empty keys"));
        }
        Ok(fields)
    }
}

/// What a rotation attempt came to.
enum Rotation {
    /// Nothing to rotate.
    None,
    /// The new key is in force.
    Committed,
    /// The old key stays in force; the message says why (no credential values).
    Failed {
        reason: &'static str,
        message: String,
    },
    /// This content already failed; not retried until the Secret changes again.
    StillRejected,
}

#[async_trait]
impl Reconcile for ByokCredential {
    type Error = Error;

    async fn apply(&self, api: &Api<Self>, ctx: &Context) -> Result<Action, Error> {
        let namespace = self.namespace().ok_or(Error::InvalidObject)?;
        let uid = self.metadata.uid.clone().ok_or(Error::InvalidObject)?;
        let provider = ctx.provider(&self.spec.provider_ref).await?;
        let Some(byok) = provider.byok() else {
            return Err(Error::Unsupported {
                provider: provider.api().to_string(),
                operation: Operation::ByokRegister,
                hint: provider
                    .unsupported_hint(Operation::ByokRegister)
                    .unwrap_or(
                        "use a DatabaseProvider whose API offers BYOK (see the capability matrix)",
                    ),
            });
        };
        let fields = self.credentials(ctx, &namespace).await?;
        let vendor =
            |action: &str, e: ProviderError| VendorCall::new(action, scrub_error(e, &fields));
        let fps = fingerprints(&uid, &fields);
        let mut previous = self.current_status();
        let mut changed = false;

        // Register once, with a UID-derived idempotency key.
        let id = match previous.byok_id.clone() {
            Some(id) => id,
            None => {
                if !previous.create_requested {
                    // Refuses a provider (or namespace) being deleted; protects
                    // the provider and its Secret before anything is registered.
                    ctx.prepare_create(&provider, &namespace).await?;
                    let mut status = self.status_with_health(
                        &previous,
                        &Health::progressing(reason::CREATING, "registering the credential"),
                    );
                    status.create_requested = true;
                    apply_status(api, self, &status)
                        .await
                        .map_err(KubeCall::Status)?;
                    previous = status;
                }
                let key = idempotency_key(self, "byok-register")?;
                let registered = byok
                    .register_credential(
                        &self.spec.vendor,
                        &self.spec.alias,
                        &Credentials(fields.clone()),
                        &key,
                    )
                    .await
                    .map_err(|e| vendor("registering the credential", e))?;
                let mut status = previous.clone();
                status.byok_id = Some(registered.id.clone());
                status.credential_fingerprints = fps.clone();
                status.state = registered.state.as_ref().map(|s| s.to_string());
                apply_status(api, self, &status)
                    .await
                    .map_err(KubeCall::Status)?;
                previous = status;
                changed = true;
                ctx.publish(
                    self,
                    EventType::Normal,
                    "Registered",
                    "Create",
                    format!("registered BYOK credential {}", registered.id),
                )
                .await;
                registered.id
            }
        };

        let config = match byok.get_credential(&id).await {
            Ok(config) => config,
            Err(e) if e.is_not_found() => {
                return Err(Error::VendorObjectDeleted {
                    object: Object::Credential,
                    id,
                });
            }
            Err(e) => return Err(vendor("reading the credential", e).into()),
        };
        if config.state == Some(CredentialState::Revoked) {
            return Err(Error::Revoked { id });
        }

        // Rotation: stage, probe, commit; never commit a key the probe rejected.
        let rotation = self
            .rotate(&id, &fields, &fps, &previous, byok, &vendor)
            .await?;
        let mut status = previous.clone();
        match &rotation {
            Rotation::Committed => {
                status.credential_fingerprints = fps.clone();
                status.rejected_credentials_fingerprint = None;
                status.last_rotated_at = Some(Timestamp::now().to_string());
                changed = true;
                ctx.publish(
                    self,
                    EventType::Normal,
                    "Rotated",
                    "Rotate",
                    format!("new key staged, probed and committed for {id}"),
                )
                .await;
            }
            Rotation::Failed { reason, message } => {
                status.rejected_credentials_fingerprint = Some(combined_fingerprint(&fps));
                ctx.publish(
                    self,
                    EventType::Warning,
                    ROTATION_FAILED,
                    "Rotate",
                    format!("{reason}: {message}"),
                )
                .await;
            }
            Rotation::None | Rotation::StillRejected => {}
        }

        // The rest of the spec.
        if config.label.as_deref() != Some(self.spec.alias.as_str()) {
            byok.set_credential_label(&id, &self.spec.alias)
                .await
                .map_err(|e| vendor("updating the label", e))?;
            changed = true;
        }
        let want_state = CredentialState::wanted(self.spec.enabled);
        let mut state = config.state.clone();
        if state.as_ref() != Some(&want_state) {
            byok.set_credential_enabled(&id, self.spec.enabled)
                .await
                .map_err(|e| {
                    vendor(
                        if self.spec.enabled {
                            "enabling"
                        } else {
                            "disabling"
                        },
                        e,
                    )
                })?;
            state = Some(want_state);
            changed = true;
        }
        let desired: Vec<Binding> = self.spec.bindings.iter().map(to_binding).collect();
        let (to_bind, to_unbind) = binding_diff(&desired, &config.bindings);
        for binding in &to_unbind {
            byok.unbind_credential(&id, binding)
                .await
                .map_err(|e| vendor("removing a binding", e))?;
        }
        for binding in &to_bind {
            byok.bind_credential(&id, binding)
                .await
                .map_err(|e| vendor("adding a binding", e))?;
        }
        changed |= !to_bind.is_empty() || !to_unbind.is_empty();
        if self.spec.quota != previous.applied_quota {
            byok.set_credential_quota(&id, &quota(self.spec.quota.as_ref()))
                .await
                .map_err(|e| vendor("setting the quota", e))?;
            status.applied_quota = self.spec.quota.clone();
            changed = true;
        }

        // Test after any change, and on the interval.
        let now = Timestamp::now();
        let interval = self.spec.test_interval.map(std::time::Duration::from);
        if self.spec.enabled
            && (changed
                || previous.last_test.is_none()
                || test_due(interval, previous.last_test.as_ref(), now))
        {
            let result = byok
                .test_credential(&id)
                .await
                .map_err(|e| vendor("testing the credential", e))?;
            status.last_test = Some(ByokTestResult {
                ok: result.ok,
                latency_ms: result.latency_ms,
                error: result.error.map(|e| scrub(&e, &fields)),
                tested_at: now.to_string(),
            });
        }
        match byok.credential_usage(&id).await {
            Ok(usage) => {
                status.usage = Some(ByokUsage {
                    spend_usd: usage.spend_usd,
                    call_count: usage.call_count,
                    period: usage.period,
                })
            }
            Err(error) => tracing::debug!(%error, "usage not available"),
        }
        let state = state.map(|s| s.to_string()).unwrap_or_default();
        status.state = Some(state.clone());

        let failing_test = self.spec.enabled && status.last_test.as_ref().is_some_and(|t| !t.ok);
        let health = if failing_test {
            let error = status
                .last_test
                .as_ref()
                .and_then(|t| t.error.clone())
                .unwrap_or_default();
            Health::stalled(
                "CredentialTestFailed",
                format!("the vendor's test of credential {id} failed: {error}"),
            )
        } else {
            Health::ready(format!("BYOK credential {id} is {state}"))
        };
        let mut status = self.status_with_health(&status, &health);
        match &rotation {
            Rotation::Failed { reason, message } => conditions::set_condition(
                &mut status.conditions,
                ROTATION_FAILED,
                true,
                reason,
                &format!("{message}; the previous key stays in force"),
                self.metadata.generation,
                now,
            ),
            Rotation::Committed => {
                conditions::remove_condition(&mut status.conditions, ROTATION_FAILED)
            }
            Rotation::None | Rotation::StillRejected => {}
        }
        let was_ready = previous.conditions.is_true(conditions::READY);
        apply_status_if_changed(api, self, &previous, &status)
            .await
            .map_err(KubeCall::Status)?;
        if !was_ready && status.conditions.is_true(conditions::READY) {
            ctx.publish(
                self,
                EventType::Normal,
                "Ready",
                "Reconcile",
                format!("BYOK credential {id} is ready"),
            )
            .await;
        }
        let next_test = interval.unwrap_or(ctx.settings.resync_interval);
        Ok(Action::requeue(ctx.jittered_resync().min(next_test)))
    }

    async fn cleanup(&self, _api: &Api<Self>, ctx: &Context) -> Result<Action, Error> {
        let status = self.current_status();
        if self.spec.deletion_policy == DeletionPolicy::Retain {
            ctx.publish(
                self,
                EventType::Normal,
                "Retained",
                "Delete",
                format!(
                    "deletionPolicy Retain: BYOK credential {} left registered",
                    status.byok_id.unwrap_or_default()
                ),
            )
            .await;
            return Ok(Action::await_change());
        }
        let left = match &status.byok_id {
            Some(id) => format!("BYOK credential {id}"),
            None if status.create_requested => {
                "the BYOK credential an unconfirmed registration may have made".to_string()
            }
            // Nothing was ever sent to the vendor.
            None => return Ok(Action::await_change()),
        };
        let Some(provider) = ctx
            .provider_for_cleanup(self, &self.spec.provider_ref, &left)
            .await?
        else {
            return Ok(Action::await_change());
        };
        // A provider that lost its BYOK API since (its spec changed) cannot
        // revoke: report that instead of pretending.
        let byok = provider
            .byok_for(Operation::ByokRevoke)
            .map_err(|e| VendorCall::new("revoking the credential", e))?;
        let id = match status.byok_id {
            Some(id) => Some(id),
            None if status.create_requested => {
                // The register may have reached the vendor before its id was saved:
                // replay it (same key, same credentials) to learn the id.
                let namespace = self.namespace().ok_or(Error::InvalidObject)?;
                match self.credentials(ctx, &namespace).await {
                    Ok(fields) => {
                        let key = idempotency_key(self, "byok-register")?;
                        let registered = byok
                            .register_credential(
                                &self.spec.vendor,
                                &self.spec.alias,
                                &Credentials(fields.clone()),
                                &key,
                            )
                            .await
                            .map_err(|e| {
                                VendorCall::new(
                                    "replaying the registration",
                                    scrub_error(e, &fields),
                                )
                            })?;
                        Some(registered.id)
                    }
                    Err(Error::CredentialsMissing { .. }) => None,
                    Err(other) => return Err(other),
                }
            }
            None => None,
        };
        if let Some(id) = id {
            match byok.revoke_credential(&id).await {
                Ok(()) => {
                    ctx.publish(
                        self,
                        EventType::Normal,
                        "Revoked",
                        "Delete",
                        format!("revoked BYOK credential {id}"),
                    )
                    .await;
                }
                Err(e) if e.is_not_found() => {}
                Err(e) => return Err(VendorCall::new(format!("revoking {id}"), e).into()),
            }
        }
        Ok(Action::await_change())
    }
}

impl ByokCredential {
    /// Rotates the key if the Secret changed since the content now in force.
    async fn rotate(
        &self,
        id: &str,
        fields: &BTreeMap<String, SecretString>,
        fps: &BTreeMap<String, String>,
        previous: &ByokCredentialStatus,
        byok: &dyn ByokApi,
        vendor: &(dyn Fn(&str, ProviderError) -> VendorCall + Send + Sync),
    ) -> Result<Rotation, Error> {
        if *fps == previous.credential_fingerprints {
            return Ok(Rotation::None);
        }
        let combined = combined_fingerprint(fps);
        if previous.rejected_credentials_fingerprint.as_deref() == Some(combined.as_str()) {
            return Ok(Rotation::StillRejected);
        }
        let changed: BTreeSet<&String> = fps
            .keys()
            .chain(previous.credential_fingerprints.keys())
            .filter(|k| fps.get(*k) != previous.credential_fingerprints.get(*k))
            .collect();
        if changed.iter().any(|k| k.as_str() != ROTATABLE_FIELD) {
            let names: Vec<&str> = changed.iter().map(|s| s.as_str()).collect();
            return Ok(Rotation::Failed {
                reason: "RotationUnsupported",
                message: format!(
                    "only {ROTATABLE_FIELD} can be rotated in place, but Secret fields {names:?} changed; create a new ByokCredential for other changes"
                ),
            });
        }
        let Some(new_key) = fields.get(ROTATABLE_FIELD) else {
            return Ok(Rotation::Failed {
                reason: "RotationUnsupported",
                message: format!("the Secret no longer has {ROTATABLE_FIELD}"),
            });
        };
        let uid = self.metadata.uid.as_deref().ok_or(Error::InvalidObject)?;
        // Keys derived from the UID and the new content: a crash between stage and
        // commit replays both calls instead of staging a second candidate.
        let staged = byok
            .stage_rotation(id, new_key, &format!("dbops-{uid}-byok-stage-{combined}"))
            .await
            .map_err(|e| vendor("staging the new key", e))?;
        let probe = staged.probe.unwrap_or_default();
        if !probe.ok {
            let why = probe
                .error
                .map(|e| scrub(&e, fields))
                .unwrap_or_else(|| "no reason given".to_string());
            return Ok(Rotation::Failed {
                reason: "ProbeFailed",
                message: format!("the vendor's probe rejected the new key: {why}"),
            });
        }
        byok.commit_rotation(
            id,
            &staged.stage_id,
            &format!("dbops-{uid}-byok-commit-{combined}"),
        )
        .await
        .map_err(|e| vendor("committing the new key", e))?;
        Ok(Rotation::Committed)
    }
}

/// The `ByokCredential` controller, ready to run with [`drive`]. It watches
/// only Secrets labelled [`WATCH_LABEL`] (the ones `ByokCredential`s name), and
/// maps each back to the credentials naming it.
pub fn controller(
    ctx: &Context,
    scope: &Scope,
    watcher_config: watcher::Config,
) -> Controller<DeserializeGuard<ByokCredential>> {
    let client = ctx.client.clone();
    let controller = Controller::new(
        scope.api::<DeserializeGuard<ByokCredential>>(client.clone()),
        watcher_config,
    );
    let by_secret = dependents(controller.store(), |c: &ByokCredential| {
        Some(c.spec.credentials_secret_ref.name.as_str())
    });
    let labelled = watcher::Config::default().labels(&format!("{WATCH_LABEL}=true"));
    controller.watches(scope.api::<Secret>(client), labelled, by_secret)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(capability: Option<&str>, module: Option<&str>, model: Option<&str>) -> Binding {
        Binding {
            capability: capability.map(str::to_string),
            module: module.map(str::to_string),
            model: model.map(str::to_string),
        }
    }

    #[test]
    fn binding_diff_adds_missing_removes_extra_and_replaces_models() {
        let desired = vec![
            b(Some("db.project.create"), None, None),
            b(None, Some("db"), Some("m2")),
        ];
        let actual = vec![
            b(None, Some("db"), Some("m1")),
            b(None, Some("ai-runtime"), None),
        ];
        let (bind, unbind) = binding_diff(&desired, &actual);
        assert_eq!(
            bind,
            vec![
                b(None, Some("db"), Some("m2")),
                b(Some("db.project.create"), None, None)
            ]
        );
        assert_eq!(unbind, vec![b(None, Some("ai-runtime"), None)]);
        let (bind, unbind) = binding_diff(&desired, &desired);
        assert!(
            bind.is_empty() && unbind.is_empty(),
            "in sync: nothing to do"
        );
    }

    #[test]
    fn fingerprints_are_salted_stable_and_hide_the_value() {
        let fields = BTreeMap::from([(
            "api_key".to_string(),
            SecretString::from("sk-secret-value".to_string()),
        )]);
        let a = fingerprints("uid-1", &fields);
        assert_eq!(a, fingerprints("uid-1", &fields));
        assert_ne!(a, fingerprints("uid-2", &fields), "salted per resource");
        assert!(!a["api_key"].contains("sk-secret"));
        assert_eq!(
            combined_fingerprint(&a),
            combined_fingerprint(&fingerprints("uid-1", &fields))
        );
    }

    #[test]
    fn scrub_removes_credential_values_from_vendor_text() {
        let fields = BTreeMap::from([(
            "api_key".to_string(),
            SecretString::from("sk-abc123".to_string()),
        )]);
        assert_eq!(
            scrub("key sk-abc123 rejected", &fields),
            "key [REDACTED] rejected"
        );
    }

    #[test]
    fn the_periodic_test_is_due_after_the_interval() {
        let tested = Timestamp::from_second(1_000).unwrap();
        let last = ByokTestResult {
            ok: true,
            latency_ms: None,
            error: None,
            tested_at: tested.to_string(),
        };
        let hour = Some(std::time::Duration::from_secs(3600));
        assert!(!test_due(
            hour,
            Some(&last),
            Timestamp::from_second(1_000 + 3599).unwrap()
        ));
        assert!(test_due(
            hour,
            Some(&last),
            Timestamp::from_second(1_000 + 3600).unwrap()
        ));
        assert!(
            !test_due(None, Some(&last), Timestamp::from_second(999_999).unwrap()),
            "no interval, no periodic test"
        );
    }
}
