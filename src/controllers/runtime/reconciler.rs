//! What every dbops controller does the same way: the finalizer, the span and
//! metrics around a reconcile, status writes, and reflecting failures in
//! conditions and Events. Each kind implements [`Managed`] (status access) and
//! [`Lifecycle`] (its own apply and cleanup).

use std::fmt::Debug;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams};
use kube::core::{DeserializeGuard, ObjectMeta};
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::{Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tracing::Instrument;

use super::conditions::{self, Health};
use super::context::{Context, FIELD_MANAGER, FINALIZER};
use super::policy::{ReconcileError, object_key};
use super::{decode, freshness, kube_error};
use crate::api::v1alpha1::Conditions;

/// A namespaced dbops kind whose status carries kstatus conditions.
pub trait Managed:
    Resource<DynamicType = (), Scope = NamespaceResourceScope>
    + Clone
    + Serialize
    + DeserializeOwned
    + Debug
    + Send
    + Sync
    + 'static
{
    type Status: Default + Clone + PartialEq + Serialize + Send + Sync;

    /// Name of the controller in metrics, logs and spans.
    const CONTROLLER: &'static str;

    fn status(&self) -> Option<&Self::Status>;
    fn conditions(status: &Self::Status) -> &Conditions;
    fn conditions_mut(status: &mut Self::Status) -> &mut Conditions;
    fn set_observed_generation(status: &mut Self::Status, generation: Option<i64>);

    /// The current status, or an empty one.
    fn current_status(&self) -> Self::Status {
        self.status().cloned().unwrap_or_default()
    }

    /// Whether `Ready` is True now.
    fn is_ready(&self) -> bool {
        self.status()
            .is_some_and(|s| Self::conditions(s).is_true(conditions::READY))
    }

    /// `previous` moved to `health` for the current generation.
    fn status_with_health(&self, previous: &Self::Status, health: &Health) -> Self::Status {
        let mut status = previous.clone();
        let generation = self.meta().generation;
        Self::set_observed_generation(&mut status, generation);
        *Self::conditions_mut(&mut status) = conditions::conditions_for(
            health,
            generation,
            Self::conditions(previous),
            Timestamp::now(),
        );
        self.derive_status(&mut status);
        status
    }

    /// Sets the fields of `status` that follow from the object itself, not
    /// from what a pass found (a branch's `expiresAt`). Every status the
    /// object is given goes through here, so they are written with whatever
    /// else changes, and on their own only when they change. Nothing by default.
    fn derive_status(&self, _status: &mut Self::Status) {}

    /// When a pass must run again at the latest, whatever it returns or fails
    /// with (a branch's expiry): see [`requeue`]. `None` by default.
    fn due_by(&self) -> Option<Timestamp> {
        None
    }
}

/// A requeue after `delay`, or sooner if `obj` is due by then ([`Managed::due_by`]).
pub fn requeue<K: Managed>(obj: &K, delay: Duration) -> Action {
    Action::requeue(sooner(delay, obj.due_by(), Timestamp::now()))
}

/// `delay`, or the time from `now` until `due` when that is shorter (pure).
/// A `due` already past changes nothing: the pass that found it due acted on
/// it, and a failure to act backs off as usual instead of spinning.
pub fn sooner(delay: Duration, due: Option<Timestamp>, now: Timestamp) -> Duration {
    let left = due
        .filter(|due| *due > now)
        .and_then(|due| Duration::try_from(due.duration_since(now)).ok());
    match left {
        Some(left) => delay.min(left),
        None => delay,
    }
}

/// Implements [`Managed`] for a kind whose status has `conditions` and
/// `observed_generation` fields. Methods given in a trailing block
/// (`{ fn due_by(&self) ... }`) go into the impl as well.
#[macro_export]
macro_rules! impl_managed {
    ($kind:ty, $status:ty, $controller:expr $(, { $($extra:tt)* })?) => {
        impl $crate::controllers::runtime::reconciler::Managed for $kind {
            type Status = $status;
            const CONTROLLER: &'static str = $controller;
            $($($extra)*)?

            fn status(&self) -> Option<&$status> {
                self.status.as_ref()
            }
            fn conditions(status: &$status) -> &$crate::api::v1alpha1::Conditions {
                &status.conditions
            }
            fn conditions_mut(status: &mut $status) -> &mut $crate::api::v1alpha1::Conditions {
                &mut status.conditions
            }
            fn set_observed_generation(status: &mut $status, generation: Option<i64>) {
                status.observed_generation = generation;
            }
        }
    };
}

/// The errors of a controller, as the shared reconcile needs them.
pub trait ControllerError: ReconcileError + Sized {
    /// Adding or removing the finalizer failed.
    fn finalizer(error: kube::Error) -> Self;
    /// The object has no name or namespace.
    fn invalid_object() -> Self;
    /// The failure is itself a status write, so reporting it in status is pointless.
    fn is_status_write(&self) -> bool;
}

/// The kind-specific half of a controller: what `apply` and `cleanup` mean
/// for it. [`reconcile`] wraps them in the finalizer and everything shared.
#[async_trait]
pub trait Lifecycle: Managed {
    type Error: ControllerError;

    /// Make the vendor match the spec and report it; runs with the finalizer in place.
    async fn apply(&self, api: &Api<Self>, ctx: &Context) -> Result<Action, Self::Error>;

    /// Release vendor state before the finalizer is removed (idempotent, "not found" is done).
    async fn cleanup(&self, api: &Api<Self>, ctx: &Context) -> Result<Action, Self::Error>;

    /// Whether `apply` may run without [`FINALIZER`] because it adds it
    /// itself with its first write, before anything exists at the vendor
    /// (saving the cold start a write). By default it is added first.
    fn defer_finalizer(&self) -> bool {
        false
    }
}

/// Reconciles one object of kind `K`: finalizer, span, metrics, failure
/// reporting. An object that cannot be decoded is reported on its own
/// ([`decode::handle_invalid`]) and never reaches the kind's logic. An object
/// whose cached copy predates this process's last write to it is put off
/// until the cache catches up ([`freshness`]).
pub async fn reconcile<K: Lifecycle>(
    guard: Arc<DeserializeGuard<K>>,
    ctx: Arc<Context>,
) -> Result<Action, K::Error> {
    let obj = match &guard.0 {
        Ok(obj) => Arc::new(obj.clone()),
        Err(invalid) => {
            return Ok(decode::handle_invalid(&*guard, invalid, K::CONTROLLER, &ctx).await);
        }
    };
    let key = object_key(&*obj);
    if ctx
        .writes
        .is_stale(&key, obj.meta().resource_version.as_deref())
    {
        return Ok(Action::requeue(freshness::CATCH_UP_RETRY));
    }
    let started = Instant::now();
    let namespace = obj.namespace().ok_or_else(K::Error::invalid_object)?;
    let span = tracing::info_span!("reconcile", controller = K::CONTROLLER, namespace = %namespace, name = %obj.name_any());
    // Boxed: a reconcile's future is large, and debug builds move it on the stack.
    let (result, last_write) = freshness::scope(
        ctx.secret_echoes.clone(),
        Box::pin(crate::providers::http::reconcile_scope(async {
            let api: Api<K> = Api::namespaced(ctx.client.clone(), &namespace);
            let outcome = Box::pin(with_finalizer(&*obj, &api, &ctx)).await;
            match &outcome {
                Ok(_) => ctx.reset_failures(&key),
                Err(error) => report_failure(&*obj, &api, error, &ctx).await,
            }
            if obj.meta().deletion_timestamp.is_some() {
                // A dependent is going away: the in-use protection may release its
                // provider and Secret (the loop debounces bursts of these).
                ctx.protection_poke.notify_one();
            }
            observe::<K>(&ctx, &obj, outcome.is_ok());
            outcome
        })),
    )
    .instrument(span)
    .await;
    if let Some(rv) = last_write {
        ctx.writes.record(&key, rv);
    }
    ctx.metrics
        .observe_reconcile(K::CONTROLLER, started.elapsed());
    result
}

/// Runs the kind's `apply` with [`FINALIZER`] in place, or its `cleanup` before
/// taking the finalizer off. The finalizer is added in this same pass (the
/// pass goes on with the object the write returned), or, when the kind defers
/// it ([`Lifecycle::defer_finalizer`]), by the kind's own first write.
async fn with_finalizer<K: Lifecycle>(
    obj: &K,
    api: &Api<K>,
    ctx: &Context,
) -> Result<Action, K::Error> {
    let held = has_finalizer(obj.meta());
    if obj.meta().deletion_timestamp.is_some() {
        if !held {
            return Ok(Action::await_change());
        }
        let action = obj.cleanup(api, ctx).await?;
        remove_finalizer(api, obj)
            .await
            .map_err(K::Error::finalizer)?;
        return Ok(action);
    }
    if held || obj.defer_finalizer() {
        return obj.apply(api, ctx).await;
    }
    let patch = metadata_patch(obj.meta(), Some(true), &[]);
    let updated = patch_metadata(api, obj, &patch)
        .await
        .map_err(K::Error::finalizer)?;
    updated.apply(api, ctx).await
}

/// Takes [`FINALIZER`] off once cleanup is done. Another controller taking
/// its own finalizer off meanwhile is no reason to run cleanup again: on a
/// conflict the object is read afresh and the removal retried.
async fn remove_finalizer<K: Managed>(api: &Api<K>, obj: &K) -> Result<(), kube::Error> {
    let mut current = obj.clone();
    for _ in 0..REMOVE_ATTEMPTS {
        let patch = metadata_patch(current.meta(), Some(false), &[]);
        match patch_metadata(api, &current, &patch).await {
            Ok(_) => return Ok(()),
            Err(error) if kube_error::conflict(&error, false) => {
                match api.get_opt(&obj.name_any()).await? {
                    Some(fresh) if has_finalizer(fresh.meta()) => current = fresh,
                    _ => return Ok(()),
                }
            }
            Err(kube::Error::Api(status)) if status.code == 404 => return Ok(()),
            Err(error) => return Err(error),
        }
    }
    let patch = metadata_patch(current.meta(), Some(false), &[]);
    patch_metadata(api, &current, &patch).await.map(|_| ())
}

const REMOVE_ATTEMPTS: usize = 3;

/// Whether `meta` holds [`FINALIZER`].
pub fn has_finalizer(meta: &ObjectMeta) -> bool {
    meta.finalizers.iter().flatten().any(|f| f == FINALIZER)
}

/// A merge patch of `meta`'s object that adds (`Some(true)`) or removes
/// (`Some(false)`) [`FINALIZER`] and sets (`Some`) or removes (`None`) the
/// given annotations. It carries the resourceVersion it was computed from, so
/// it fails with a conflict, rather than lose a change, if the object moved on
/// (the finalizer list is replaced whole).
pub fn metadata_patch(
    meta: &ObjectMeta,
    finalizer: Option<bool>,
    annotations: &[(&str, Option<&str>)],
) -> serde_json::Value {
    let mut metadata = serde_json::Map::new();
    metadata.insert(
        "resourceVersion".into(),
        meta.resource_version.clone().into(),
    );
    if let Some(add) = finalizer {
        let mut finalizers: Vec<String> = meta
            .finalizers
            .iter()
            .flatten()
            .filter(|f| *f != FINALIZER)
            .cloned()
            .collect();
        if add {
            finalizers.push(FINALIZER.to_string());
        }
        metadata.insert("finalizers".into(), finalizers.into());
    }
    if !annotations.is_empty() {
        let values: serde_json::Map<String, serde_json::Value> = annotations
            .iter()
            .map(|(k, v)| (k.to_string(), v.map(str::to_string).into()))
            .collect();
        metadata.insert("annotations".into(), values.into());
    }
    serde_json::json!({ "metadata": metadata })
}

/// Sends a [`metadata_patch`] of `obj`, and records the write ([`freshness`]).
pub async fn patch_metadata<K: Managed>(
    api: &Api<K>,
    obj: &K,
    patch: &serde_json::Value,
) -> Result<K, kube::Error> {
    let updated = api
        .patch(
            &obj.name_any(),
            &PatchParams::default(),
            &Patch::Merge(patch),
        )
        .await?;
    freshness::wrote(updated.meta().resource_version.as_deref());
    Ok(updated)
}

/// Counts `obj` in the per-condition gauge, or drops it once its deletion
/// went through. The gauge follows the status this object had when it was
/// queued; every status write re-queues it, so the count catches up on the
/// next pass.
fn observe<K: Managed>(ctx: &Context, obj: &K, succeeded: bool) {
    let gone = obj.meta().deletion_timestamp.is_some() && succeeded;
    let condition = (!gone).then(|| {
        obj.status().map_or("Unknown", |s| {
            let conditions = K::conditions(s);
            [
                conditions::READY,
                conditions::STALLED,
                conditions::RECONCILING,
            ]
            .into_iter()
            .find(|c| conditions.is_true(c))
            .unwrap_or("Unknown")
        })
    });
    ctx.metrics
        .observe_object(K::CONTROLLER, &object_key(obj), condition);
}

/// Writes `status` through the status subresource (server-side apply, field
/// manager `dbops`); returns the object as written.
pub async fn apply_status<K: Managed>(
    api: &Api<K>,
    obj: &K,
    status: &K::Status,
) -> Result<K, kube::Error> {
    let body = serde_json::json!({
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
        "status": status,
    });
    let written = api
        .patch_status(
            &obj.name_any(),
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&body),
        )
        .await?;
    freshness::wrote(written.meta().resource_version.as_deref());
    Ok(written)
}

/// Writes `status` only if it differs from `previous`: steady state makes no writes.
pub async fn apply_status_if_changed<K: Managed>(
    api: &Api<K>,
    obj: &K,
    previous: &K::Status,
    status: &K::Status,
) -> Result<bool, kube::Error> {
    if status == previous {
        return Ok(false);
    }
    apply_status(api, obj, status).await?;
    Ok(true)
}

/// Reflects a failed reconcile in status and an Event. Transient failures of an
/// object that is already Ready leave its status alone (no flapping); everything
/// else is shown: permanent errors as `Stalled`, transient ones as `Reconciling`.
/// The Warning Event is published when the shown state changes or on the first
/// failure in a row, not on every retry.
pub async fn report_failure<K, E>(obj: &K, api: &Api<K>, error: &E, ctx: &Context)
where
    K: Managed,
    E: ControllerError,
{
    if error.is_conflict() || error.namespace_terminating() || error.throttled().is_some() {
        // Retried at once by the error policy; nothing a person needs to see.
        return;
    }
    // Status may have moved during this reconcile (e.g. an id was saved before a
    // later step failed); build on the latest so nothing written is lost.
    let latest = match api.get_opt(&obj.name_any()).await {
        Ok(Some(latest)) => latest,
        Ok(None) => return,
        Err(_) => obj.clone(),
    };
    let previous = latest.current_status();
    let first_failure = ctx.failure_count(&object_key(obj)) == 0;
    let message = error.to_string();
    let health = if error.is_transient() {
        Health::progressing(error.category(), message.clone())
    } else {
        Health::stalled(error.category(), message.clone())
    };
    // A passing error on a Ready object leaves it Ready (no flapping), unless
    // the object is being deleted: then status says what holds the deletion.
    let deleting = obj.meta().deletion_timestamp.is_some();
    let keep_ready =
        !deleting && error.is_transient() && K::conditions(&previous).is_true(conditions::READY);
    let mut changed = false;
    if !keep_ready && !error.is_status_write() {
        let status = latest.status_with_health(&previous, &health);
        match apply_status_if_changed(api, &latest, &previous, &status).await {
            Ok(written) => changed = written,
            Err(error) => {
                tracing::warn!(error = %kube_error::describe(&error), "could not write the failure into status")
            }
        }
    }
    if changed || first_failure {
        let action = if obj.meta().deletion_timestamp.is_some() {
            "Delete"
        } else {
            "Reconcile"
        };
        ctx.publish(obj, EventType::Warning, error.category(), action, message)
            .await;
    }
}

/// Reflects a state that is not an error (waiting for a parent, provisioning) in status.
pub async fn report_progress<K: Managed>(
    api: &Api<K>,
    obj: &K,
    health: &Health,
) -> Result<(), kube::Error> {
    let previous = obj.current_status();
    let status = obj.status_with_health(&previous, health);
    apply_status_if_changed(api, obj, &previous, &status)
        .await
        .map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pass_runs_again_by_when_the_object_is_due() {
        let now: Timestamp = "2025-03-01T10:00:00Z".parse().unwrap();
        let resync = Duration::from_secs(600);
        assert_eq!(sooner(resync, None, now), resync, "nothing due");
        let in_a_minute: Timestamp = "2025-03-01T10:01:00Z".parse().unwrap();
        assert_eq!(
            sooner(resync, Some(in_a_minute), now),
            Duration::from_secs(60)
        );
        let tomorrow: Timestamp = "2025-03-02T10:00:00Z".parse().unwrap();
        assert_eq!(
            sooner(resync, Some(tomorrow), now),
            resync,
            "due later: the usual wait"
        );
        let poll = Duration::from_millis(100);
        assert_eq!(sooner(poll, Some(in_a_minute), now), poll);
        // Due already: the pass acted on it; a failure backs off as usual.
        let past: Timestamp = "2025-03-01T09:00:00Z".parse().unwrap();
        assert_eq!(sooner(resync, Some(past), now), resync);
        assert_eq!(sooner(resync, Some(now), now), resync);
    }
}
