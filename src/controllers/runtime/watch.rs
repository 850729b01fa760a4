//! Running a controller: its lean watch, the triggers that wake its objects
//! (providers, namespaces, related objects), and [`drive`], which runs the
//! shared [`reconcile`] and error policy, fairly between namespaces.

use std::sync::Arc;
use std::time::{Duration, Instant};

use kube::core::DeserializeGuard;
use kube::runtime::controller::Action;
use kube::{Client, Resource, ResourceExt};

use super::context::{Context, Scope};
use super::fairness;
use super::policy::error_delay;
use super::reconciler::{self, Lifecycle, Managed, reconcile};

/// Runs `controller` with the shared [`reconcile`] and [`error_policy`](super::policy::error_policy)
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
///   changes (`generation`), when its deletion starts, and when a rotation is
///   requested (`dbops.dev/rotate-credentials`); not for the echo
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
    // Rotation and reset requests are annotations: metadata, no new generation.
    for annotation in [
        crate::api::v1alpha1::ROTATE_ANNOTATION,
        crate::api::v1alpha1::RESET_ANNOTATION,
    ] {
        meta.annotations
            .as_ref()
            .and_then(|a| a.get(annotation))
            .hash(&mut hasher);
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controllers::runtime::context::FINALIZER;

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
    fn a_rotation_or_reset_request_wakes_the_object() {
        use crate::api::v1alpha1::{DatabaseProject, RESET_ANNOTATION, ROTATE_ANNOTATION};
        for annotation in [ROTATE_ANNOTATION, RESET_ANNOTATION] {
            let mut p = DatabaseProject::new("p", Default::default());
            let before = wake_on(&p);
            p.metadata.annotations = Some([(annotation.to_string(), "1".to_string())].into());
            let asked = wake_on(&p);
            assert_ne!(asked, before, "{annotation} set");
            p.metadata.annotations = Some([(annotation.to_string(), "2".to_string())].into());
            assert_ne!(wake_on(&p), asked, "{annotation} set to a new value");
        }
    }
}
