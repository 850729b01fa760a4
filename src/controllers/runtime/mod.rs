//! The Kubernetes runtime all controllers share: the `Context`, the shared
//! reconcile, decoding, freshness, Events, conditions, the error policy and
//! scheduling. It uses no other controllers folder: `providers`, `metrics`, `api`.

pub mod conditions;
pub mod context;
pub mod decode;
pub mod delay;
pub mod events;
pub mod fairness;
pub mod freshness;
pub mod kube_error;
pub mod policy;
pub mod reconciler;
pub mod watch;

pub use context::{
    Caches, Context, DEFAULT_FINALIZER, FIELD_MANAGER, FINALIZER, Readiness, Scope, Settings,
    store_ready,
};
pub use delay::{
    CONFLICT_RETRY, NAMESPACE_TERMINATING_RECHECK, THROTTLE_SPREAD, backoff_delay, jitter,
};
pub use policy::{
    KubeCall, ReconcileError, VendorCall, error_delay, error_policy, failure_delay, kube_cause,
    object_key,
};
pub use reconciler::{Lifecycle, Managed, reconcile};
pub use watch::{
    dependents, drive, in_namespace, lean_controller, namespace_triggers, provider_triggers,
    wake_on,
};
