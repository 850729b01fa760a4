//! What every reconcile gets: the [`Context`] (clients, metrics, settings,
//! per-object retry state and the lookups' watch caches), its [`Settings`],
//! the watched [`Scope`], [`Readiness`], and the names the operator writes
//! under ([`FINALIZER`], [`FIELD_MANAGER`], [`DEFAULT_FINALIZER`]).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use kube::core::DeserializeGuard;
use kube::runtime::reflector::Store;
use kube::{Client, Resource};

use super::delay::jitter;
use super::events::{EventType, Note, Recorder};
use super::{freshness, kube_error};
use crate::api::v1alpha1::{DatabaseProvider, VendorClaim};
use crate::metrics::Metrics;
use crate::providers::ProviderRegistry;

/// Finalizer guarding vendor state; removed only once the vendor object is gone (or retained).
pub const FINALIZER: &str = "dbops.dev/vendor-cleanup";
/// Field manager of every write the operator makes.
pub const FIELD_MANAGER: &str = "dbops";
/// The in-use finalizer when the operator watches every namespace
/// (`protection/`: what it is for).
pub const DEFAULT_FINALIZER: &str = "dbops.dev/in-use";

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
    /// Secrets while something depends on them (`protection/`).
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
            protection_finalizer: DEFAULT_FINALIZER.to_string(),
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
    /// Wakes the in-use protection loop (`protection::run`).
    pub protection_poke: Arc<tokio::sync::Notify>,
    failures: Mutex<HashMap<String, u32>>,
    /// This process's last write of each object, until the cache shows it.
    pub writes: freshness::Writes,
    /// This process's last write of each connection Secret, so the watch
    /// event it causes does not wake its owner again (`secret::owned_secret_triggers`).
    pub secret_echoes: Arc<freshness::Writes>,
    /// Watch caches of providers and in-use credential Secrets, once the
    /// protection loop has them (`protection::provider_lookup` reads them first).
    pub(crate) caches: std::sync::RwLock<Option<Caches>>,
    /// Namespaces recently seen not terminating, and when.
    pub(crate) live_namespaces: Mutex<HashMap<String, std::time::Instant>>,
    /// The newest generation of each `DatabaseProvider` (by name) that a
    /// controller's provider watch has seen (`watch::provider_triggers`).
    pub(crate) provider_generations: Arc<Mutex<HashMap<String, i64>>>,
    /// Vendor claims this process took or found held, by claim name, with
    /// the holder's UID: what `protection::claims` reads while it has no
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
    pub(crate) fn record_failure(&self, key: &str) -> u32 {
        let mut failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        let count = failures.entry(key.to_string()).or_insert(0);
        *count = count.saturating_add(1);
        *count
    }

    pub(crate) fn failure_count(&self, key: &str) -> u32 {
        let failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        failures.get(key).copied().unwrap_or(0)
    }

    pub(crate) fn reset_failures(&self, key: &str) {
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

/// Watch caches the lookups read before asking the API server: every
/// `DatabaseProvider`, the credential Secrets in-use protection labels (so a
/// provider's Secret is cached from its first dependent on), the vendor
/// claims and the namespaces' metadata.
#[derive(Clone)]
pub struct Caches {
    pub providers: Store<DeserializeGuard<DatabaseProvider>>,
    pub secrets: Vec<Store<Secret>>,
    pub claims: Option<Store<VendorClaim>>,
    pub namespaces:
        Option<Store<kube::core::PartialObjectMeta<k8s_openapi::api::core::v1::Namespace>>>,
}

impl Context {
    /// Gives the lookups the protection loop's watch caches.
    pub fn set_caches(&self, caches: Option<Caches>) {
        *self.caches.write().unwrap_or_else(|p| p.into_inner()) = caches;
    }

    /// `read` applied to the watch caches, if they are there.
    pub(crate) fn cached<T>(&self, read: impl FnOnce(&Caches) -> Option<T>) -> Option<T> {
        self.caches
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .and_then(read)
    }
}
