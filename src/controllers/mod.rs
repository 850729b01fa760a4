//! The controllers, one module per kind, and what they share: the [`Context`],
//! provider lookup, status writes, Events and the error policy.

pub mod branch;
pub mod byok;
pub mod conditions;
pub mod connection_keys;
pub mod decode;
pub mod error;
pub mod events;
pub mod expiry;
pub mod fairness;
pub mod freshness;
pub mod kube_error;
mod parent;
pub mod pipeline;
pub mod project;
pub mod protection;
pub mod provider;
pub(crate) mod provider_lookup;
pub mod reconciler;
pub mod rotation;
pub mod secret;
pub mod snapshot;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use events::{EventType, Note, Recorder};
use kube::core::DeserializeGuard;
use kube::runtime::controller::Action;
use kube::{Client, Resource, ResourceExt};

use crate::metrics::Metrics;
use crate::providers::ProviderRegistry;

pub use parent::{Parent, parent_project};
pub use provider_lookup::{LookupError, ProviderHandle};
pub use reconciler::{Lifecycle, Managed, reconcile};

/// Finalizer guarding vendor state; removed only once the vendor object is gone (or retained).
pub const FINALIZER: &str = "dbops.dev/vendor-cleanup";

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

/// Which namespaces the namespaced controllers watch.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Scope {
    /// Every namespace (a ClusterRole is needed).
    #[default]
    Cluster,
    /// One namespace (a Role in it is enough, plus read access to `DatabaseProvider`s).
    Namespace(String),
}

impl Scope {
    /// An `Api` of `K` covering this scope.
    pub fn api<K>(&self, client: Client) -> kube::Api<K>
    where
        K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>,
    {
        match self {
            Scope::Cluster => kube::Api::all(client),
            Scope::Namespace(namespace) => kube::Api::namespaced(client, namespace),
        }
    }
}

/// Counts the watches that have not finished their first list yet; `/readyz`
/// answers ready only once every registered watch has synced.
#[derive(Default)]
pub struct Readiness {
    registered: std::sync::atomic::AtomicUsize,
    synced: std::sync::atomic::AtomicUsize,
}

impl Readiness {
    /// Registers `store` and marks it synced once its first list has arrived.
    pub fn track<K>(self: &Arc<Self>, store: kube::runtime::reflector::Store<K>)
    where
        K: Resource<DynamicType = ()> + Clone + Send + Sync + 'static,
    {
        use std::sync::atomic::Ordering;
        self.registered.fetch_add(1, Ordering::SeqCst);
        let this = self.clone();
        tokio::spawn(async move {
            if store_ready(&store).await {
                this.synced.fetch_add(1, Ordering::SeqCst);
            }
        });
    }

    /// Whether every registered watch has synced (and at least one is registered).
    pub fn is_synced(&self) -> bool {
        use std::sync::atomic::Ordering;
        let registered = self.registered.load(Ordering::SeqCst);
        registered > 0 && self.synced.load(Ordering::SeqCst) >= registered
    }

    /// Forgets every watch (the controllers stopped, e.g. on losing leadership).
    pub fn reset(&self) {
        use std::sync::atomic::Ordering;
        self.registered.store(0, Ordering::SeqCst);
        self.synced.store(0, Ordering::SeqCst);
    }
}

/// Waits until `store` has its first list; `false` if its writer is gone first.
///
/// `Store::wait_until_ready` keeps the waker of only the last task that
/// polled it, and a controller's own runner polls it too, so a second waiter
/// can sleep forever (this once kept `/readyz` at 503 for good). Polling again
/// on a short timer makes every waiter see the store become ready.
pub async fn store_ready<K>(store: &kube::runtime::reflector::Store<K>) -> bool
where
    K: Resource + Clone + 'static,
    K::DynamicType: Eq + std::hash::Hash + Clone,
{
    loop {
        match tokio::time::timeout(STORE_READY_POLL, store.wait_until_ready()).await {
            Ok(result) => return result.is_ok(),
            Err(_) => continue,
        }
    }
}

const STORE_READY_POLL: Duration = Duration::from_millis(100);

/// Tunables of the controllers.
#[derive(Clone, Debug)]
pub struct Settings {
    /// How often a Ready object is re-read from the vendor (jittered by ±10%).
    pub resync_interval: Duration,
    /// First retry delay after a transient failure; doubles per failure.
    pub base_backoff: Duration,
    /// Largest retry delay after transient failures.
    pub max_backoff: Duration,
    /// How long to wait before looking again at a resource stalled on a permanent error
    /// (a spec change re-queues it at once anyway).
    pub stalled_recheck: Duration,
    /// Poll interval while a vendor object is still being provisioned.
    pub provisioning_poll: Duration,
    /// Most reconciles one controller runs at once (bounds memory and the
    /// burst of requests at start-up with many objects).
    pub concurrency: u16,
    /// The in-use finalizer this operator puts on providers and credential
    /// Secrets while something depends on them ([`protection`]).
    pub protection_finalizer: String,
    /// Vendor host names reached at a fixed address instead of a DNS lookup
    /// (`dbops run` maps the chart's emulator Service name to its built-in
    /// emulator, so one provider manifest works in and out of a cluster).
    pub vendor_hosts: Vec<(String, std::net::SocketAddr)>,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            resync_interval: Duration::from_secs(600),
            base_backoff: Duration::from_secs(2),
            max_backoff: Duration::from_secs(300),
            stalled_recheck: Duration::from_secs(300),
            provisioning_poll: Duration::from_secs(5),
            concurrency: 16,
            protection_finalizer: protection::DEFAULT_FINALIZER.to_string(),
            vendor_hosts: Vec::new(),
        }
    }
}

/// What every reconcile gets: clients, metrics, settings and per-object retry state.
pub struct Context {
    pub client: Client,
    /// Whether the controllers' watches have synced.
    pub readiness: Arc<Readiness>,
    pub recorder: Recorder,
    pub metrics: Arc<Metrics>,
    pub providers: ProviderRegistry,
    pub settings: Settings,
    /// Wakes the in-use protection loop ([`protection::run`]).
    pub protection_poke: Arc<tokio::sync::Notify>,
    failures: Mutex<HashMap<String, u32>>,
    /// This process's last write of each object, until the cache shows it.
    pub writes: freshness::Writes,
    /// This process's last write of each connection Secret, so the watch
    /// event it causes does not wake its owner again ([`secret::owned_secret_triggers`]).
    pub secret_echoes: Arc<freshness::Writes>,
    /// Watch caches of providers and in-use credential Secrets, once the
    /// protection loop has them ([`provider_lookup`] reads them first).
    pub(crate) caches: std::sync::RwLock<Option<provider_lookup::Caches>>,
    /// Namespaces recently seen not terminating, and when.
    pub(crate) live_namespaces: Mutex<HashMap<String, std::time::Instant>>,
    /// The newest generation of each `DatabaseProvider` (by name) that a
    /// controller's provider watch has seen ([`provider_triggers`]).
    pub(crate) provider_generations: Arc<Mutex<HashMap<String, i64>>>,
    /// Vendor claims this process took or found held, by claim name, with
    /// the holder's UID: what [`protection::claims`] reads while it has no
    /// watch cache of claims.
    pub(crate) held_claims: Mutex<HashMap<String, String>>,
}

impl Context {
    pub fn new(
        client: Client,
        metrics: Arc<Metrics>,
        settings: Settings,
        instance: Option<String>,
    ) -> Self {
        Self {
            recorder: Recorder::new(client.clone(), "dbops", instance),
            providers: ProviderRegistry::new(Some(metrics.clone()))
                .with_hosts(settings.vendor_hosts.clone()),
            client,
            metrics,
            settings,
            readiness: Arc::default(),
            protection_poke: Arc::default(),
            failures: Mutex::default(),
            writes: freshness::Writes::default(),
            secret_echoes: Arc::default(),
            caches: std::sync::RwLock::default(),
            live_namespaces: Mutex::default(),
            provider_generations: Arc::default(),
            held_claims: Mutex::default(),
        }
    }

    /// The resync delay, jittered by ±10% so objects do not all resync at once.
    pub fn jittered_resync(&self) -> Duration {
        jitter(self.settings.resync_interval, 0.1)
    }

    /// Consecutive failures of the object with `key` so far, counting this one.
    fn record_failure(&self, key: &str) -> u32 {
        let mut failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        let count = failures.entry(key.to_string()).or_insert(0);
        *count = count.saturating_add(1);
        *count
    }

    fn failure_count(&self, key: &str) -> u32 {
        let failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        failures.get(key).copied().unwrap_or(0)
    }

    fn reset_failures(&self, key: &str) {
        let mut failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        failures.remove(key);
    }

    /// Publishes an Event about `obj`; a failure to publish is logged, never fatal.
    pub async fn publish<K>(
        &self,
        obj: &K,
        type_: EventType,
        reason: &str,
        action: &str,
        note: String,
    ) where
        K: Resource<DynamicType = ()>,
    {
        let event = Note {
            type_,
            reason,
            action,
            note: &note,
        };
        if let Err(error) = self.recorder.publish(&event, &obj.object_ref(&())).await {
            let error_text = kube_error::describe(&error);
            if kube_error::namespace_terminating(&error) {
                // Expected while a namespace is deleted: nothing can be created there.
                tracing::debug!(error = %error_text, reason, "Event not published");
            } else {
                tracing::warn!(error = %error_text, reason, "could not publish Event");
            }
        }
    }
}

/// Runs `controller` with the shared [`reconcile`] and [`error_policy`]
/// (requeueing sooner when the object is due earlier, [`Managed::due_by`])
/// until `shutdown` resolves; in-flight reconciles finish first.
///
/// At most `concurrency` reconciles run at once, shared fairly between
/// namespaces ([`fairness`]): kube-runtime dispatches every due object, and
/// each waits for its place in its namespace's turn. A reconcile that got
/// its place after waiting runs on the object as the cache holds it then;
/// one still waiting when shutdown starts gives up its place.
pub async fn drive<K>(
    controller: kube::runtime::Controller<DeserializeGuard<K>>,
    ctx: Arc<Context>,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) where
    K: Lifecycle + Resource<DynamicType = ()> + Unpin,
{
    use futures::{FutureExt, StreamExt};
    let store = controller.store();
    ctx.readiness.track(store.clone());
    let shutdown = shutdown.boxed().shared();
    let gate = fairness::FairGate::new(usize::from(ctx.settings.concurrency));
    // kube-runtime's own limit is off: the gate is the limit.
    let config = kube::runtime::controller::Config::default().concurrency(0);
    controller
        .with_config(config)
        .graceful_shutdown_on(shutdown.clone())
        .run(
            move |guard: Arc<DeserializeGuard<K>>, ctx: Arc<Context>| {
                let (gate, store, shutdown) = (gate.clone(), store.clone(), shutdown.clone());
                async move {
                    let namespace = guard.namespace().unwrap_or_default();
                    let waited = Instant::now();
                    let _permit = tokio::select! {
                        permit = gate.admit(&namespace) => permit,
                        _ = shutdown => return Ok(Action::await_change()),
                    };
                    let guard = if waited.elapsed() > FAIRNESS_REREAD_AFTER {
                        match store.get(&kube::runtime::reflector::ObjectRef::from_obj(&*guard)) {
                            Some(latest) => latest,
                            // Gone meanwhile: its deletion was the last word.
                            None => return Ok(Action::await_change()),
                        }
                    } else {
                        guard
                    };
                    reconcile::<K>(guard, ctx).await
                }
            },
            |guard, error, ctx| {
                // A failing object still runs again by when it is due.
                let delay = error_delay(K::CONTROLLER, &*guard, error, &ctx);
                let due = guard.0.as_ref().ok().and_then(Managed::due_by);
                Action::requeue(reconciler::sooner(
                    delay,
                    due,
                    k8s_openapi::jiff::Timestamp::now(),
                ))
            },
            ctx,
        )
        .for_each(|result| async move {
            if let Err(error) = result {
                tracing::debug!(%error, "reconcile loop");
            }
        })
        .await;
    tracing::info!(controller = K::CONTROLLER, "controller stopped");
}

/// A reconcile that waited this long for its place reads its object again
/// from the cache: the copy it was dispatched with may be behind.
const FAIRNESS_REREAD_AFTER: Duration = Duration::from_millis(50);

/// The controller of kind `K` over `api`, with a lean cache and few wake-ups:
///
/// - objects are stored without `managedFields` (often the larger half of an
///   object, and never read by a reconcile);
/// - an object wakes its reconcile when it is first seen, when its spec
///   changes (`generation`), and when its deletion starts; not for the echo
///   of its own writes (status, the finalizer and create mark), which only
///   repeat what the last reconcile did. A finalizer someone else removed is
///   put back at the next resync. Resyncs, retries and related objects
///   (Secrets, providers, parents) wake it as before.
pub fn lean_controller<K>(
    api: kube::Api<DeserializeGuard<K>>,
    config: kube::runtime::watcher::Config,
) -> kube::runtime::Controller<DeserializeGuard<K>>
where
    K: Resource<DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
{
    use kube::runtime::{WatchStreamExt, reflector, watcher};
    let (reader, writer) = reflector::store();
    let stream = watcher(api, config)
        .default_backoff()
        .modify(|guard: &mut DeserializeGuard<K>| {
            guard.meta_mut().managed_fields = None;
        })
        .reflect(writer)
        .applied_objects()
        .predicate_filter(wake_on, Default::default());
    kube::runtime::Controller::for_stream(stream, reader)
}

/// The `DatabaseProvider`s as triggers of their dependents: only a new
/// provider, a spec change or a deletion wakes them. Its status, labels and
/// finalizers (the in-use protection) change nothing a dependent reads, and
/// each such change would otherwise wake every dependent at once.
///
/// Each event's generation is recorded in `ctx` before the wake-up goes out:
/// this watch and the lookup cache are two streams, and a dependent woken by
/// a fixed provider must not read the provider as it was before the fix
/// ([`Context::provider_object`] reads it from the API server while the
/// cache is behind).
pub fn provider_triggers(
    ctx: &Context,
) -> impl futures::Stream<
    Item = Result<
        DeserializeGuard<crate::api::v1alpha1::DatabaseProvider>,
        kube::runtime::watcher::Error,
    >,
> + Send
+ 'static {
    use futures::StreamExt;
    use kube::runtime::{WatchStreamExt, watcher};
    let seen = ctx.provider_generations.clone();
    let api: kube::Api<DeserializeGuard<crate::api::v1alpha1::DatabaseProvider>> =
        kube::Api::all(ctx.client.clone());
    watcher(api, watcher::Config::default())
        .default_backoff()
        .touched_objects()
        .inspect(move |event| {
            if let Ok(provider) = event {
                let meta = provider.meta();
                if let (Some(name), Some(generation)) = (&meta.name, meta.generation) {
                    let mut seen = seen.lock().unwrap_or_else(|p| p.into_inner());
                    let entry = seen.entry(name.clone()).or_default();
                    *entry = (*entry).max(generation);
                }
            }
        })
        .predicate_filter(wake_on, Default::default())
}

/// Namespaces as triggers of the objects in them: a namespace that is new
/// or whose labels change wakes them, so a provider's namespace selector
/// (`spec.allowedNamespaces`) is enforced again at once.
pub fn namespace_triggers(
    client: Client,
    scope: &Scope,
) -> impl futures::Stream<
    Item = Result<
        kube::core::PartialObjectMeta<k8s_openapi::api::core::v1::Namespace>,
        kube::runtime::watcher::Error,
    >,
> + Send
+ 'static {
    use kube::runtime::{WatchStreamExt, watcher};
    let config = match scope {
        Scope::Cluster => watcher::Config::default(),
        Scope::Namespace(ns) => watcher::Config::default().fields(&format!("metadata.name={ns}")),
    };
    watcher(kube::Api::all(client), config)
        .default_backoff()
        .touched_objects()
        .predicate_filter(labels_of, Default::default())
}

/// A hash of what of a namespace matters to the tenancy policy: its labels.
fn labels_of<K: Resource>(obj: &K) -> Option<u64> {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    obj.meta().uid.hash(&mut hasher);
    obj.meta().labels.hash(&mut hasher);
    Some(hasher.finish())
}

/// A watch mapper: a namespace wakes every `K` in it.
pub fn in_namespace<K, N>(
    store: kube::runtime::reflector::Store<DeserializeGuard<K>>,
) -> impl Fn(N) -> Vec<kube::runtime::reflector::ObjectRef<DeserializeGuard<K>>>
+ Send
+ Sync
+ Clone
+ 'static
where
    K: Resource<DynamicType = ()> + Clone + Send + Sync + 'static,
    N: Resource,
{
    move |namespace: N| {
        let name = namespace.name_any();
        store
            .state()
            .into_iter()
            .filter(|k| k.namespace().as_deref() == Some(name.as_str()))
            .map(|k| kube::runtime::reflector::ObjectRef::from_obj(&*k))
            .collect()
    }
}

/// What must change for an object to wake its own reconcile ([`lean_controller`]).
pub fn wake_on<K: Resource>(obj: &K) -> Option<u64> {
    use std::hash::{Hash, Hasher};
    let meta = obj.meta();
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    meta.uid.hash(&mut hasher);
    meta.generation.hash(&mut hasher);
    meta.deletion_timestamp.is_some().hash(&mut hasher);
    Some(hasher.finish())
}

/// A watch mapper: a change of a `P` wakes every `K` in `store` that names it
/// (`names(k) == Some(p.name)`). A namespaced `P` only wakes `K`s in its own
/// namespace; a cluster-scoped one (a `DatabaseProvider`) wakes any. Objects
/// that cannot be decoded name nothing.
pub fn dependents<K, P>(
    store: kube::runtime::reflector::Store<DeserializeGuard<K>>,
    names: fn(&K) -> Option<&str>,
) -> impl Fn(P) -> Vec<kube::runtime::reflector::ObjectRef<DeserializeGuard<K>>>
+ Send
+ Sync
+ Clone
+ 'static
where
    K: Resource<DynamicType = ()> + Clone + Send + Sync + 'static,
    P: Resource,
{
    move |parent: P| {
        let name = parent.name_any();
        let namespace = parent.namespace();
        store
            .state()
            .into_iter()
            .filter(|k| namespace.is_none() || k.namespace() == namespace)
            .filter(|k| k.0.as_ref().ok().and_then(names) == Some(name.as_str()))
            .map(|k| kube::runtime::reflector::ObjectRef::from_obj(&*k))
            .collect()
    }
}

/// How soon a write that lost a race (409, failed precondition) is retried.
pub const CONFLICT_RETRY: Duration = Duration::from_millis(200);
/// Extra delay, up to twice this, on top of the wait an object held back by
/// its provider's request budget is requeued after.
pub const THROTTLE_SPREAD: Duration = Duration::from_millis(100);
/// How often an object whose namespace is being deleted is looked at again
/// (its own deletion normally wakes it first).
pub const NAMESPACE_TERMINATING_RECHECK: Duration = Duration::from_secs(2);

/// `d` scaled by a random factor in `[1 - spread, 1 + spread]`.
pub fn jitter(d: Duration, spread: f64) -> Duration {
    let factor = 1.0 + spread * (rand::random::<f64>() * 2.0 - 1.0);
    d.mul_f64(factor.max(0.0))
}

/// Exponential backoff for the `attempt`-th consecutive failure (1-based), with
/// ±25% jitter, capped at `max`, and never shorter than the vendor's `Retry-After`.
pub fn backoff_delay(
    base: Duration,
    max: Duration,
    attempt: u32,
    retry_after: Option<Duration>,
) -> Duration {
    let exp = base.saturating_mul(1u32 << attempt.saturating_sub(1).min(16));
    let delay = jitter(exp.min(max), 0.25);
    match retry_after {
        Some(wait) => delay.max(wait),
        None => delay,
    }
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

    #[test]
    fn an_object_wakes_itself_on_spec_and_deletion_not_on_its_own_writes() {
        use crate::api::v1alpha1::DatabaseProject;
        let mut p = DatabaseProject::new("p", Default::default());
        p.metadata.generation = Some(1);
        let first = wake_on(&p);
        p.status = Some(Default::default());
        p.metadata.resource_version = Some("2".into());
        p.metadata.managed_fields = Some(vec![Default::default()]);
        p.metadata.annotations = Some([("x".to_string(), "y".to_string())].into());
        p.metadata.finalizers = Some(vec![FINALIZER.to_string()]);
        assert_eq!(wake_on(&p), first, "status, finalizer and marks are echoes");
        let mut copy = p.clone();
        copy.metadata.uid = Some("another".into());
        assert_ne!(wake_on(&copy), first, "a new object under the same name");
        p.metadata.generation = Some(2);
        let spec = wake_on(&p);
        assert_ne!(spec, first);
        p.metadata.deletion_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            k8s_openapi::jiff::Timestamp::now(),
        ));
        assert_ne!(wake_on(&p), spec);
    }

    #[test]
    fn backoff_grows_is_capped_and_honours_retry_after() {
        let base = Duration::from_secs(2);
        let max = Duration::from_secs(60);
        for _ in 0..50 {
            let first = backoff_delay(base, max, 1, None);
            assert!(
                first >= Duration::from_millis(1500) && first <= Duration::from_millis(2500),
                "{first:?}"
            );
            let fourth = backoff_delay(base, max, 4, None);
            assert!(
                fourth >= Duration::from_secs(12) && fourth <= Duration::from_secs(20),
                "{fourth:?}"
            );
            let late = backoff_delay(base, max, 40, None);
            assert!(late <= Duration::from_secs(75), "{late:?}");
            let told = backoff_delay(base, max, 1, Some(Duration::from_secs(30)));
            assert!(told >= Duration::from_secs(30));
        }
    }

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

    #[test]
    fn jitter_spreads_resyncs() {
        let d = Duration::from_secs(600);
        let samples: Vec<_> = (0..200).map(|_| jitter(d, 0.1)).collect();
        assert!(
            samples
                .iter()
                .all(|s| *s >= Duration::from_secs(540) && *s <= Duration::from_secs(660))
        );
        let distinct: std::collections::HashSet<_> =
            samples.iter().map(|s| s.as_millis()).collect();
        assert!(
            distinct.len() > 100,
            "jitter must actually spread the delays"
        );
    }
}
