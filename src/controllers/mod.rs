//! The controllers, in four layers that use only the ones below them (and
//! `providers`, `metrics`, `api`): [`runtime`], then [`secret`] and
//! [`protection`] side by side, then [`pipeline`], then [`kinds`].
//!
//! - [`runtime`]: the Kubernetes runtime every controller shares (the
//!   [`Context`], the shared reconcile, decoding, freshness, Events,
//!   conditions, the error policy and fair scheduling);
//! - [`secret`] (the connection Secret) and [`protection`] (in-use
//!   protection, claims, tenancy and the provider lookup), side by side;
//! - [`pipeline`]: the one reconcile of the kinds that stand for a vendor
//!   object, with rotation, parents and the one error type;
//! - [`kinds`]: one controller per custom resource.
//!
//! The names re-exported here are the crate's paths into the layers.

pub mod kinds;
pub mod pipeline;
pub mod protection;
pub mod runtime;
pub mod secret;

pub use kinds::{branch, byok, expiry, project, provider, role, schedule, snapshot};
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
