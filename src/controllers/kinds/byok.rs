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

use crate::api::v1alpha1::{
    ByokBinding, ByokCredential, ByokCredentialStatus, ByokQuota, ByokTestResult, ByokUsage,
    ClaimedObject, Conditions, Rfc3339,
};
use crate::controllers::pipeline::plan::Cleanup;
use crate::controllers::pipeline::{self, idempotency_key};
use crate::controllers::protection::{ProviderHandle, claims};
use crate::controllers::runtime::conditions::{self, Health, ROTATION_FAILED, reason};
use crate::controllers::runtime::reconciler::{
    Lifecycle, Managed, apply_status, apply_status_if_changed,
};
use crate::controllers::runtime::{Context, KubeCall, Scope, VendorCall, dependents, watch};
use crate::providers::byok::{
    Binding, ByokApi, CredentialConfig, CredentialState, Credentials, Quota,
};
use crate::providers::{Operation, ProviderError};

/// Name of this controller in metrics and logs.
pub const CONTROLLER: &str = "byokcredential";
/// Label the operator puts on Secrets named by a `ByokCredential`; the operator
/// watches only Secrets carrying it, never every Secret in the cluster.
pub const WATCH_LABEL: &str = "dbops.dev/byok-credentials";
/// The credential field rotated in place (`byok.rotate.*` take an `api_key`).
pub const ROTATABLE_FIELD: &str = "api_key";

pub use crate::controllers::pipeline::error::{Error, Object};

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
    let interval = SignedDuration::try_from(interval).unwrap_or(SignedDuration::MAX);
    last.tested_at
        .0
        .checked_add(interval)
        .is_ok_and(|due| now >= due)
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
    /// The Secret holds the content in force: nothing to rotate.
    Unchanged,
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

/// What dereferencing a `ByokCredential` found: its provider's BYOK API and
/// the credential content in the Secret it names.
struct Found {
    provider: ProviderHandle,
    fields: BTreeMap<String, SecretString>,
    fingerprints: BTreeMap<String, String>,
}

impl Found {
    fn byok(&self) -> Result<&dyn ByokApi, Error> {
        byok_of(&self.provider)
    }

    /// A vendor call error, with every credential value scrubbed from it.
    fn vendor(&self, action: &str, error: ProviderError) -> VendorCall {
        VendorCall::new(action, scrub_error(error, &self.fields))
    }
}

/// The BYOK API of `provider`, or why it has none.
fn byok_of(provider: &ProviderHandle) -> Result<&dyn ByokApi, Error> {
    provider.byok().ok_or_else(|| Error::Unsupported {
        provider: provider.api().to_string(),
        operation: Operation::ByokRegister,
        hint: provider
            .unsupported_hint(Operation::ByokRegister)
            .unwrap_or("use a DatabaseProvider whose API offers BYOK (see the capability matrix)"),
    })
}

/// The Ready or Stalled health of a registered credential (pure): a failing
/// vendor test of an enabled credential stalls it.
fn credential_health(
    id: &str,
    enabled: bool,
    state: Option<&CredentialState>,
    last_test: Option<&ByokTestResult>,
) -> Health {
    match last_test {
        Some(test) if enabled && !test.ok => Health::stalled(
            "CredentialTestFailed",
            format!(
                "the vendor's test of credential {id} failed: {}",
                test.error.as_deref().unwrap_or_default()
            ),
        ),
        _ => Health::ready(format!(
            "BYOK credential {id} is {}",
            state.map(ToString::to_string).unwrap_or_default()
        )),
    }
}

#[async_trait]
impl Lifecycle for ByokCredential {
    type Error = Error;

    /// Register once, then make the vendor match the spec: rotation (stage,
    /// probe, commit), label, enabled state, bindings, quota; test after any
    /// change and on the interval; report.
    async fn apply(&self, api: &Api<Self>, ctx: &Context) -> Result<Action, Error> {
        let found = self.dereference(ctx).await?;
        let byok = found.byok()?;
        let mut previous = self.current_status();
        let registered = previous.byok_id.is_none();
        let id = match previous.byok_id.clone() {
            Some(id) => {
                self.claim(ctx, &found.provider, &id).await?;
                id
            }
            None => self.register(api, ctx, &found, &mut previous).await?,
        };
        let config = match byok.get_credential(&id).await {
            Ok(config) => config,
            Err(e) if e.is_not_found() => {
                let object = Object::Credential;
                return Err(Error::VendorObjectDeleted { object, id });
            }
            Err(e) => return Err(found.vendor("reading the credential", e).into()),
        };
        if config.state == Some(CredentialState::Revoked) {
            return Err(Error::Revoked { id });
        }
        let rotation = self.rotate(&id, &found, &previous).await?;
        let mut status = previous.clone();
        let rotated = self
            .fold_rotation(ctx, &id, &found, &rotation, &mut status)
            .await;
        let (state, synced) = self.sync_spec(&id, &found, &config, &mut status).await?;
        let changed = registered || rotated || synced;
        self.observe(&id, &found, changed, &mut status).await?;
        status.state = state.as_ref().map(ToString::to_string);
        let health = credential_health(
            &id,
            self.spec.enabled,
            state.as_ref(),
            status.last_test.as_ref(),
        );
        let mut status = self.status_with_health(&status, &health);
        rotation_condition(&rotation, &mut status.conditions, self.metadata.generation);
        self.report(api, ctx, &id, &previous, &status).await?;
        let interval = self.spec.test_interval.map(std::time::Duration::from);
        let next_test = interval.unwrap_or(ctx.settings.resync_interval);
        Ok(Action::requeue(ctx.jittered_resync().min(next_test)))
    }

    async fn cleanup(&self, _api: &Api<Self>, ctx: &Context) -> Result<Action, Error> {
        let status = self.current_status();
        let plan = pipeline::plan::cleanup(
            self.spec.deletion_policy,
            status.byok_id.as_deref(),
            status.create_requested,
        );
        match plan {
            Cleanup::NothingSent => {}
            Cleanup::Retain(id) => {
                let note = format!(
                    "deletionPolicy Retain: BYOK credential {} left registered",
                    id.unwrap_or_default()
                );
                ctx.publish(self, EventType::Normal, "Retained", "Delete", note)
                    .await;
            }
            Cleanup::Delete(_) | Cleanup::ReplayCreate => self.revoke(ctx, &plan).await?,
        }
        ctx.release_all(self).await.map_err(KubeCall::Write)?;
        Ok(Action::await_change())
    }
}

impl ByokCredential {
    /// Claims BYOK credential `id` for this resource: the vendor's register
    /// is idempotent, so another resource registering the same key gets the
    /// same id, and must not take it over.
    async fn claim(&self, ctx: &Context, provider: &ProviderHandle, id: &str) -> Result<(), Error> {
        let holder = claims::holder_of(self).ok_or(Error::InvalidObject)?;
        let key = provider.claim_key(ClaimedObject::ByokCredential, id);
        ctx.claim(&key, &holder, provider.name()).await?;
        Ok(())
    }

    /// Revokes the credential at the vendor, if this resource holds it.
    async fn revoke(&self, ctx: &Context, plan: &Cleanup<'_>) -> Result<(), Error> {
        let left = pipeline::plan::left_behind(Object::Credential, plan);
        let Some(provider) = ctx
            .provider_for_cleanup(self, &self.spec.provider_ref, &left)
            .await?
        else {
            return Ok(());
        };
        // A provider that lost its BYOK API since (its spec changed) cannot
        // revoke: report that instead of pretending.
        let byok = provider
            .byok_for(Operation::ByokRevoke)
            .map_err(|e| VendorCall::new("revoking the credential", e))?;
        let id = match plan {
            Cleanup::Delete(id) => id.to_string(),
            _ => match self.replay_registration(ctx, byok).await? {
                Some(id) => id,
                None => return Ok(()),
            },
        };
        match self.claim(ctx, &provider, &id).await {
            Ok(()) => {}
            Err(Error::Claim(claims::ClaimError::Taken { .. })) => {
                let note = format!(
                    "BYOK credential {id} is held by another dbops resource, so it was not revoked"
                );
                ctx.cleanup_skipped(self, note).await;
                return Ok(());
            }
            Err(error) => return Err(error),
        }
        match byok.revoke_credential(&id).await {
            Ok(()) => {
                let note = format!("revoked BYOK credential {id}");
                ctx.publish(self, EventType::Normal, "Revoked", "Delete", note)
                    .await;
            }
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(VendorCall::new(format!("revoking {id}"), e).into()),
        }
        Ok(())
    }
}

/// Sets or clears the `RotationFailed` condition after a rotation attempt.
fn rotation_condition(rotation: &Rotation, conditions: &mut Conditions, generation: Option<i64>) {
    match rotation {
        Rotation::Failed { reason, message } => conditions::set_condition(
            conditions,
            ROTATION_FAILED,
            true,
            reason,
            &format!("{message}; the previous key stays in force"),
            generation,
            Timestamp::now(),
        ),
        Rotation::Committed => conditions::remove_condition(conditions, ROTATION_FAILED),
        Rotation::Unchanged | Rotation::StillRejected => {}
    }
}

impl ByokCredential {
    /// The provider's BYOK API and the credential content of the named Secret.
    async fn dereference(&self, ctx: &Context) -> Result<Found, Error> {
        let namespace = self.namespace().ok_or(Error::InvalidObject)?;
        let uid = self.metadata.uid.clone().ok_or(Error::InvalidObject)?;
        let provider = ctx
            .provider_in(&namespace, &self.spec.provider_ref, false)
            .await?;
        byok_of(&provider)?;
        let fields = self.credentials(ctx, &namespace).await?;
        let fingerprints = fingerprints(&uid, &fields);
        Ok(Found {
            provider,
            fields,
            fingerprints,
        })
    }

    /// Registers the credential, once: `createRequested` is saved first and the
    /// call carries a UID-derived idempotency key, so a crash never registers twice.
    async fn register(
        &self,
        api: &Api<Self>,
        ctx: &Context,
        found: &Found,
        previous: &mut ByokCredentialStatus,
    ) -> Result<String, Error> {
        let byok = found.byok()?;
        if !previous.create_requested {
            // Refuses a provider (or namespace) being deleted; protects the
            // provider and its Secret before anything is registered.
            let namespace = self.namespace().ok_or(Error::InvalidObject)?;
            ctx.prepare_create(&found.provider, &namespace).await?;
            let health = Health::progressing(reason::CREATING, "registering the credential");
            let mut status = self.status_with_health(previous, &health);
            status.create_requested = true;
            apply_status(api, self, &status)
                .await
                .map_err(KubeCall::Status)?;
            *previous = status;
        }
        let key = idempotency_key(self, "byok-register")?;
        let credentials = Credentials(found.fields.clone());
        let registered = byok
            .register_credential(&self.spec.vendor, &self.spec.alias, &credentials, &key)
            .await
            .map_err(|e| found.vendor("registering the credential", e))?;
        self.claim(ctx, &found.provider, &registered.id).await?;
        let mut status = previous.clone();
        status.byok_id = Some(registered.id.clone());
        status.credential_fingerprints = found.fingerprints.clone();
        status.state = registered.state.as_ref().map(ToString::to_string);
        apply_status(api, self, &status)
            .await
            .map_err(KubeCall::Status)?;
        *previous = status;
        let note = format!("registered BYOK credential {}", registered.id);
        ctx.publish(self, EventType::Normal, "Registered", "Create", note)
            .await;
        Ok(registered.id)
    }

    /// The registration may have reached the vendor before its id was saved:
    /// replays it (same key, same credentials) to learn the id. Without the
    /// Secret there is nothing to replay with.
    async fn replay_registration(
        &self,
        ctx: &Context,
        byok: &dyn ByokApi,
    ) -> Result<Option<String>, Error> {
        let namespace = self.namespace().ok_or(Error::InvalidObject)?;
        let fields = match self.credentials(ctx, &namespace).await {
            Ok(fields) => fields,
            Err(Error::CredentialsMissing { .. }) => return Ok(None),
            Err(other) => return Err(other),
        };
        let key = idempotency_key(self, "byok-register")?;
        let credentials = Credentials(fields.clone());
        let registered = byok
            .register_credential(&self.spec.vendor, &self.spec.alias, &credentials, &key)
            .await
            .map_err(|e| VendorCall::new("replaying the registration", scrub_error(e, &fields)))?;
        Ok(Some(registered.id))
    }

    /// Folds a rotation attempt into `status` and says it in an Event. Returns
    /// whether the credential changed at the vendor.
    async fn fold_rotation(
        &self,
        ctx: &Context,
        id: &str,
        found: &Found,
        rotation: &Rotation,
        status: &mut ByokCredentialStatus,
    ) -> bool {
        match rotation {
            Rotation::Committed => {
                status.credential_fingerprints = found.fingerprints.clone();
                status.rejected_credentials_fingerprint = None;
                status.last_rotated_at = Some(Rfc3339::now());
                let note = format!("new key staged, probed and committed for {id}");
                ctx.publish(self, EventType::Normal, "Rotated", "Rotate", note)
                    .await;
                true
            }
            Rotation::Failed { reason, message } => {
                status.rejected_credentials_fingerprint =
                    Some(combined_fingerprint(&found.fingerprints));
                let note = format!("{reason}: {message}");
                ctx.publish(self, EventType::Warning, ROTATION_FAILED, "Rotate", note)
                    .await;
                false
            }
            Rotation::Unchanged | Rotation::StillRejected => false,
        }
    }

    /// Makes the label, the enabled state, the bindings and the quota at the
    /// vendor match the spec. Returns the state now in force and whether
    /// anything changed.
    async fn sync_spec(
        &self,
        id: &str,
        found: &Found,
        config: &CredentialConfig,
        status: &mut ByokCredentialStatus,
    ) -> Result<(Option<CredentialState>, bool), Error> {
        let byok = found.byok()?;
        let mut changed = false;
        if config.label.as_deref() != Some(self.spec.alias.as_str()) {
            byok.set_credential_label(id, &self.spec.alias)
                .await
                .map_err(|e| found.vendor("updating the label", e))?;
            changed = true;
        }
        let wanted = CredentialState::wanted(self.spec.enabled);
        let mut state = config.state.clone();
        if state.as_ref() != Some(&wanted) {
            let action = if self.spec.enabled {
                "enabling"
            } else {
                "disabling"
            };
            byok.set_credential_enabled(id, self.spec.enabled)
                .await
                .map_err(|e| found.vendor(action, e))?;
            state = Some(wanted);
            changed = true;
        }
        changed |= self.sync_bindings(id, found, &config.bindings).await?;
        if self.spec.quota != status.applied_quota {
            byok.set_credential_quota(id, &quota(self.spec.quota.as_ref()))
                .await
                .map_err(|e| found.vendor("setting the quota", e))?;
            status.applied_quota = self.spec.quota.clone();
            changed = true;
        }
        Ok((state, changed))
    }

    /// Adds the missing bindings and removes the extra ones; whether any changed.
    async fn sync_bindings(
        &self,
        id: &str,
        found: &Found,
        actual: &[Binding],
    ) -> Result<bool, Error> {
        let byok = found.byok()?;
        let desired: Vec<Binding> = self.spec.bindings.iter().map(to_binding).collect();
        let (to_bind, to_unbind) = binding_diff(&desired, actual);
        for binding in &to_unbind {
            byok.unbind_credential(id, binding)
                .await
                .map_err(|e| found.vendor("removing a binding", e))?;
        }
        for binding in &to_bind {
            byok.bind_credential(id, binding)
                .await
                .map_err(|e| found.vendor("adding a binding", e))?;
        }
        Ok(!to_bind.is_empty() || !to_unbind.is_empty())
    }

    /// Tests the credential after any change and on the interval, and reads
    /// its usage (best effort) into `status`.
    async fn observe(
        &self,
        id: &str,
        found: &Found,
        changed: bool,
        status: &mut ByokCredentialStatus,
    ) -> Result<(), Error> {
        let byok = found.byok()?;
        let now = Timestamp::now();
        let interval = self.spec.test_interval.map(std::time::Duration::from);
        let due = changed
            || status.last_test.is_none()
            || test_due(interval, status.last_test.as_ref(), now);
        if self.spec.enabled && due {
            let result = byok
                .test_credential(id)
                .await
                .map_err(|e| found.vendor("testing the credential", e))?;
            status.last_test = Some(ByokTestResult {
                ok: result.ok,
                latency_ms: result.latency_ms,
                error: result.error.map(|e| scrub(&e, &found.fields)),
                tested_at: Rfc3339(now),
            });
        }
        match byok.credential_usage(id).await {
            Ok(usage) => {
                status.usage = Some(ByokUsage {
                    spend_usd: usage.spend_usd,
                    call_count: usage.call_count,
                    period: usage.period,
                })
            }
            Err(error) => tracing::debug!(%error, "usage not available"),
        }
        Ok(())
    }

    /// Writes `status` when it changed, and says when the credential became Ready.
    async fn report(
        &self,
        api: &Api<Self>,
        ctx: &Context,
        id: &str,
        previous: &ByokCredentialStatus,
        status: &ByokCredentialStatus,
    ) -> Result<(), Error> {
        let was_ready = previous.conditions.is_true(conditions::READY);
        apply_status_if_changed(api, self, previous, status)
            .await
            .map_err(KubeCall::Status)?;
        if !was_ready && status.conditions.is_true(conditions::READY) {
            let note = format!("BYOK credential {id} is ready");
            ctx.publish(self, EventType::Normal, "Ready", "Reconcile", note)
                .await;
        }
        Ok(())
    }

    /// Rotates the key if the Secret changed since the content now in force.
    async fn rotate(
        &self,
        id: &str,
        found: &Found,
        previous: &ByokCredentialStatus,
    ) -> Result<Rotation, Error> {
        let fps = &found.fingerprints;
        if *fps == previous.credential_fingerprints {
            return Ok(Rotation::Unchanged);
        }
        let combined = combined_fingerprint(fps);
        if previous.rejected_credentials_fingerprint.as_deref() == Some(combined.as_str()) {
            return Ok(Rotation::StillRejected);
        }
        let new_key = match rotatable_key(&found.fields, fps, &previous.credential_fingerprints) {
            Ok(key) => key,
            Err(message) => {
                let reason = "RotationUnsupported";
                return Ok(Rotation::Failed { reason, message });
            }
        };
        let byok = found.byok()?;
        let uid = self.metadata.uid.as_deref().ok_or(Error::InvalidObject)?;
        // Keys derived from the UID and the new content: a crash between stage and
        // commit replays both calls instead of staging a second candidate.
        let staged = byok
            .stage_rotation(id, new_key, &format!("dbops-{uid}-byok-stage-{combined}"))
            .await
            .map_err(|e| found.vendor("staging the new key", e))?;
        let probe = staged.probe.unwrap_or_default();
        if !probe.ok {
            let why = probe.error.map(|e| scrub(&e, &found.fields));
            let why = why.unwrap_or_else(|| "no reason given".to_string());
            return Ok(Rotation::Failed {
                reason: "ProbeFailed",
                message: format!("the vendor's probe rejected the new key: {why}"),
            });
        }
        let commit_key = format!("dbops-{uid}-byok-commit-{combined}");
        byok.commit_rotation(id, &staged.stage_id, &commit_key)
            .await
            .map_err(|e| found.vendor("committing the new key", e))?;
        Ok(Rotation::Committed)
    }
}

/// The new key to rotate in (pure), or why the change cannot be rotated in
/// place: only [`ROTATABLE_FIELD`] can be.
fn rotatable_key<'a>(
    fields: &'a BTreeMap<String, SecretString>,
    now: &BTreeMap<String, String>,
    in_force: &BTreeMap<String, String>,
) -> Result<&'a SecretString, String> {
    let changed: BTreeSet<&String> = now
        .keys()
        .chain(in_force.keys())
        .filter(|k| now.get(*k) != in_force.get(*k))
        .collect();
    if changed.iter().any(|k| k.as_str() != ROTATABLE_FIELD) {
        let names: Vec<&str> = changed.iter().map(|s| s.as_str()).collect();
        return Err(format!(
            "only {ROTATABLE_FIELD} can be rotated in place, but Secret fields {names:?} changed; create a new ByokCredential for other changes"
        ));
    }
    fields
        .get(ROTATABLE_FIELD)
        .ok_or_else(|| format!("the Secret no longer has {ROTATABLE_FIELD}"))
}

/// The `ByokCredential` controller, ready to run with
/// [`drive`](crate::controllers::runtime::drive). It watches
/// only Secrets labelled [`WATCH_LABEL`] (the ones `ByokCredential`s name), and
/// maps each back to the credentials naming it.
pub fn controller(
    ctx: &Context,
    scope: &Scope,
    watcher_config: watcher::Config,
) -> Controller<DeserializeGuard<ByokCredential>> {
    let client = ctx.client.clone();
    let controller = watch::lean_controller(
        scope.api::<DeserializeGuard<ByokCredential>>(client.clone()),
        watcher_config,
    );
    let by_secret = dependents(controller.store(), |c: &ByokCredential| {
        Some(c.spec.credentials_secret_ref.name.as_str())
    });
    let by_provider = dependents(controller.store(), |c: &ByokCredential| {
        Some(c.spec.provider_ref.name.as_str())
    });
    let by_namespace = watch::in_namespace(controller.store());
    let labelled = watcher::Config::default().labels(&format!("{WATCH_LABEL}=true"));
    controller
        .watches(scope.api::<Secret>(client.clone()), labelled, by_secret)
        .watches_stream(watch::provider_triggers(ctx), by_provider)
        .watches_stream(watch::namespace_triggers(client, scope), by_namespace)
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
    fn only_the_api_key_rotates_in_place() {
        let secret = |v: &str| SecretString::from(v.to_string());
        let fields = BTreeMap::from([("api_key".to_string(), secret("sk-new"))]);
        let now = fingerprints("uid", &fields);
        let old = fingerprints(
            "uid",
            &BTreeMap::from([("api_key".to_string(), secret("sk-old"))]),
        );
        let key = rotatable_key(&fields, &now, &old).unwrap();
        assert_eq!(key.expose_secret(), "sk-new");

        let more = BTreeMap::from([
            ("api_key".to_string(), secret("sk-new")),
            ("org".to_string(), secret("acme")),
        ]);
        let why = rotatable_key(&more, &fingerprints("uid", &more), &old).unwrap_err();
        assert!(why.contains("\"org\""), "{why}");
        assert!(
            !why.contains("acme") && !why.contains("sk-"),
            "no values: {why}"
        );
    }

    #[test]
    fn a_failing_test_stalls_only_an_enabled_credential() {
        let failed = ByokTestResult {
            ok: false,
            latency_ms: None,
            error: Some("401".into()),
            tested_at: Rfc3339::now(),
        };
        let active = Some(&CredentialState::Active);
        assert_eq!(
            credential_health("c1", true, active, Some(&failed)),
            Health::stalled(
                "CredentialTestFailed",
                "the vendor's test of credential c1 failed: 401"
            )
        );
        assert_eq!(
            credential_health("c1", false, Some(&CredentialState::Disabled), Some(&failed)),
            Health::ready("BYOK credential c1 is disabled")
        );
        assert_eq!(
            credential_health("c1", true, active, None),
            Health::ready("BYOK credential c1 is active")
        );
    }

    #[test]
    fn the_periodic_test_is_due_after_the_interval() {
        let tested = Timestamp::from_second(1_000).unwrap();
        let last = ByokTestResult {
            ok: true,
            latency_ms: None,
            error: None,
            tested_at: Rfc3339(tested),
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
