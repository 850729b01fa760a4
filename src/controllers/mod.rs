//! The controllers, one module per kind, and what they share: the [`Context`],
//! provider lookup, status writes, Events and the error policy.

pub mod branch;
pub mod byok;
pub mod expiry;
pub mod pipeline;
pub mod project;
pub mod protection;
pub mod provider;
pub mod runtime;
pub mod secret;
pub mod snapshot;

pub use pipeline::{Parent, parent_project};
pub use protection::{LookupError, ProviderHandle};
pub use runtime::{
    CONFLICT_RETRY, Context, FINALIZER, KubeCall, Lifecycle, Managed,
    NAMESPACE_TERMINATING_RECHECK, Readiness, ReconcileError, Scope, Settings, THROTTLE_SPREAD,
    VendorCall, backoff_delay, dependents, drive, error_delay, error_policy, failure_delay,
    in_namespace, jitter, kube_cause, lean_controller, namespace_triggers, object_key,
    provider_triggers, reconcile, store_ready, wake_on,
};
pub use runtime::{conditions, decode, events, fairness, freshness, kube_error, reconciler};
