//! The error policy shared by every controller, and the errors it reads: a
//! failed vendor call ([`VendorCall`]), a failed Kubernetes call
//! ([`KubeCall`]) and what a controller's error says of itself
//! ([`ReconcileError`]).

use std::time::Duration;

use kube::runtime::controller::Action;
use kube::{Resource, ResourceExt};

use super::context::{Context, Settings};
use super::delay::{
    CONFLICT_RETRY, NAMESPACE_TERMINATING_RECHECK, THROTTLE_SPREAD, backoff_delay, jitter,
};
use super::{conditions, kube_error};

/// A vendor call that failed, with what the controller was doing (and what
/// the user can do about it, when there is something to say).
#[derive(Debug, thiserror::Error)]
#[error("{action}: {source}{}", source.advice().map(|a| format!("; {a}")).unwrap_or_default())]
pub struct VendorCall {
    pub action: String,
    #[source]
    pub source: crate::providers::ProviderError,
}

impl VendorCall {
    pub fn new(action: impl Into<String>, source: crate::providers::ProviderError) -> Self {
        Self {
            action: action.into(),
            source,
        }
    }
}

/// A Kubernetes API call that failed; always worth retrying. The message
/// describes the error in plain words ([`kube_error::describe`]); the API
/// server's own text stays in the source, for logs.
#[derive(Debug, thiserror::Error)]
pub enum KubeCall {
    #[error("could not read from Kubernetes: {}", kube_error::describe(.0))]
    Read(#[source] kube::Error),
    #[error("could not write to Kubernetes: {}", kube_error::describe(.0))]
    Write(#[source] kube::Error),
    #[error("could not write status: {}", kube_error::describe(.0))]
    Status(#[source] kube::Error),
    /// Finalizer patches carry a JSON-patch `test`: a 422 is a stale read.
    #[error("could not update the finalizer: {}", kube_error::describe(.0))]
    Finalizer(#[source] kube::Error),
}

/// The Kubernetes error somewhere in `error`'s source chain, and whether the
/// failed request was a precondition (a finalizer patch with its `test`).
pub fn kube_cause<'a>(
    error: &'a (dyn std::error::Error + 'static),
) -> Option<(&'a kube::Error, bool)> {
    let mut precondition = false;
    let mut current = Some(error);
    while let Some(e) = current {
        if let Some(KubeCall::Finalizer(_)) = e.downcast_ref::<KubeCall>() {
            precondition = true;
        }
        if let Some(kube) = e.downcast_ref::<kube::Error>() {
            return Some((kube, precondition));
        }
        current = e.source();
    }
    None
}
/// What the error policy needs to know of a controller's error.
pub trait ReconcileError: std::error::Error + Send + Sync + 'static {
    /// Short static label for metrics and Event reasons.
    fn category(&self) -> &'static str;
    /// Whether retrying without a user change can help.
    fn is_transient(&self) -> bool;
    /// The vendor's requested wait, if any.
    fn retry_after(&self) -> Option<Duration> {
        None
    }
    /// A write lost a race with another writer (409, or a failed precondition):
    /// retried at once, quietly, with no backoff.
    fn is_conflict(&self) -> bool
    where
        Self: Sized,
    {
        kube_cause(self).is_some_and(|(e, precondition)| kube_error::conflict(e, precondition))
    }
    /// The provider's request budget held back a vendor call: how long until
    /// it allows one. Requeued after that, quietly, with no backoff.
    fn throttled(&self) -> Option<Duration>
    where
        Self: Sized,
    {
        let mut current: Option<&(dyn std::error::Error + 'static)> = Some(self);
        while let Some(e) = current {
            if let Some(wait) = e
                .downcast_ref::<crate::providers::ProviderError>()
                .and_then(|p| p.throttled())
            {
                return Some(wait);
            }
            current = e.source();
        }
        None
    }
    /// A write was refused because the namespace is being deleted: the object
    /// is about to be deleted too, so there is nothing to report.
    fn namespace_terminating(&self) -> bool
    where
        Self: Sized,
    {
        self.category() == conditions::reason::NAMESPACE_TERMINATING
            || kube_cause(self).is_some_and(|(e, _)| kube_error::namespace_terminating(e))
    }
}

/// Key of an object in the per-object retry state.
pub fn object_key<K: Resource>(obj: &K) -> String {
    match &obj.meta().uid {
        Some(uid) => uid.clone(),
        None => format!("{}/{}", obj.namespace().unwrap_or_default(), obj.name_any()),
    }
}

/// The error policy shared by every controller: transient errors back off
/// exponentially with jitter (honouring `Retry-After`); permanent ones are looked
/// at again after `stalled_recheck` (a spec change re-queues at once). Lost
/// races and terminating namespaces are retried promptly and not counted.
pub fn error_policy<K, E>(controller: &'static str, obj: &K, error: &E, ctx: &Context) -> Action
where
    K: Resource,
    E: ReconcileError,
{
    Action::requeue(error_delay(controller, obj, error, ctx))
}

/// The wait [`error_policy`] requeues after (and counts the failure).
pub fn error_delay<K, E>(controller: &'static str, obj: &K, error: &E, ctx: &Context) -> Duration
where
    K: Resource,
    E: ReconcileError,
{
    let key = object_key(obj);
    if error.is_conflict() {
        // Lost a race with another writer (often our own cache lagging our own
        // write): read again and retry at once.
        ctx.metrics.observe_failure(controller, "Conflict");
        tracing::debug!(controller, error = %error, "conflict, retrying");
        return failure_delay(error, 0, &ctx.settings);
    }
    if error.throttled().is_some() {
        // Nothing was sent: the provider's budget is spent for now.
        ctx.metrics.observe_failure(controller, "Throttled");
        tracing::debug!(controller, error = %error, "request budget spent, requeued");
        return failure_delay(error, 0, &ctx.settings);
    }
    if error.namespace_terminating() {
        // The namespace controller is about to delete this object; its
        // deletion wakes us and the finalizer runs cleanup.
        ctx.metrics
            .observe_failure(controller, "NamespaceTerminating");
        tracing::debug!(
            controller,
            "namespace is being deleted, waiting for the deletion"
        );
        return failure_delay(error, 0, &ctx.settings);
    }
    ctx.metrics.observe_failure(controller, error.category());
    let attempt = ctx.record_failure(&key);
    let delay = failure_delay(error, attempt, &ctx.settings);
    if error.is_transient() {
        tracing::info!(controller, error = %error, attempt, delay_ms = delay.as_millis() as u64, "transient failure, retrying");
    } else {
        tracing::warn!(controller, error = %error, "permanent failure, waiting for a change");
    }
    delay
}

/// How long to wait after the `attempt`-th consecutive failure (1-based) with `error`.
pub fn failure_delay<E: ReconcileError>(error: &E, attempt: u32, settings: &Settings) -> Duration {
    if error.is_conflict() {
        jitter(CONFLICT_RETRY, 0.5)
    } else if let Some(wait) = error.throttled() {
        // Spread the woken objects over a little more than the wait.
        wait + jitter(THROTTLE_SPREAD, 1.0)
    } else if error.namespace_terminating() {
        NAMESPACE_TERMINATING_RECHECK
    } else if error.is_transient() {
        backoff_delay(
            settings.base_backoff,
            settings.max_backoff,
            attempt.max(1),
            error.retry_after(),
        )
    } else {
        settings.stalled_recheck
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("test")]
    struct Failed(#[source] crate::providers::ProviderError);

    impl ReconcileError for Failed {
        fn category(&self) -> &'static str {
            self.0.category()
        }
        fn is_transient(&self) -> bool {
            self.0.is_transient()
        }
        fn retry_after(&self) -> Option<Duration> {
            self.0.retry_after()
        }
    }

    #[test]
    fn a_throttled_call_waits_for_the_budget_with_no_backoff() {
        let settings = Settings::default();
        let throttled = Failed(crate::providers::ProviderError::Throttled {
            api: crate::api::v1alpha1::ProviderApi::Infrai,
            operation: "project.get".to_string(),
            wait: Duration::from_millis(300),
        });
        assert_eq!(throttled.throttled(), Some(Duration::from_millis(300)));
        for attempt in [0, 1, 10] {
            let delay = failure_delay(&throttled, attempt, &settings);
            assert!(
                delay >= Duration::from_millis(300) && delay <= Duration::from_millis(500),
                "{delay:?}"
            );
        }
        let unavailable = Failed(crate::providers::ProviderError::Http {
            api: crate::api::v1alpha1::ProviderApi::Infrai,
            operation: "project.get".to_string(),
            status: 503,
            code: None,
            message: "down".to_string(),
            retry_after: None,
        });
        assert_eq!(unavailable.throttled(), None);
        assert!(failure_delay(&unavailable, 10, &settings) > Duration::from_secs(60));
    }
}
