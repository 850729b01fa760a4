//! In-use protection: a `DatabaseProvider`, and every Secret a provider or a
//! `ByokCredential` reads credentials from, carries the in-use finalizer while
//! anything depends on it, so deleting everything at once (`kubectl delete -f`
//! of a directory, a namespace, a GitOps prune) never strands a resource
//! without the credentials its cleanup needs. The model is Kubernetes' own
//! PVC-protection controller.
//!
//! [`plan`] decides (pure); [`run`] is the loop that feeds it from the
//! controllers' caches and applies its changes. Additions are also made by
//! the controllers themselves just before their first vendor create
//! (`Context::prepare_create`, in `provider_lookup.rs`), so
//! a provider cannot disappear between a create and the loop's next pass.
//! A release is only made after a live list confirms that nothing uses the
//! object any more: a lagging cache can delay protection, never drop it.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::core::DeserializeGuard;
use kube::runtime::events::EventType;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use tokio::sync::Notify;

use super::claims;
use super::plan::{self, Change, Plan, ProviderFacts, SecretFacts, SecretKey, View};
use crate::api::v1alpha1::{
    ByokCredential, DatabaseBranch, DatabaseProject, DatabaseProvider, DatabaseSnapshot,
    VendorClaim,
};
use crate::controllers::runtime::{Context, Scope, jitter, kube_error, store_ready};

/// Label on every Secret the operator protects (kept after release), so the
/// protected ones can be watched without watching every Secret.
pub const PROTECTED_LABEL: &str = "dbops.dev/in-use";

/// The in-use finalizer of an operator that watches only some namespaces,
/// installed in `own_namespace`: its own name, so that two such operators
/// sharing a `DatabaseProvider` never remove each other's protection.
pub fn namespaced_finalizer(own_namespace: &str) -> String {
    let name: String = own_namespace.chars().take(63).collect();
    format!("in-use.dbops.dev/{name}")
}

/// How long the loop waits after a trigger for more to arrive.
const DEBOUNCE: Duration = Duration::from_millis(100);
/// The loop also runs this often without any trigger.
const RESYNC: Duration = Duration::from_secs(60);
/// How soon the loop looks again while a deleting provider waits for its users.
const PENDING_RECHECK: Duration = Duration::from_secs(1);
/// Page size of the confirming live lists.
const PAGE: u32 = 500;

/// The caches of the resources that can depend on a provider, shared with the
/// controllers (one per watched scope).
#[derive(Clone, Default)]
pub struct Stores {
    pub projects: Vec<Store<DeserializeGuard<DatabaseProject>>>,
    pub branches: Vec<Store<DeserializeGuard<DatabaseBranch>>>,
    pub snapshots: Vec<Store<DeserializeGuard<DatabaseSnapshot>>>,
    pub credentials: Vec<Store<DeserializeGuard<ByokCredential>>>,
}

impl Stores {
    async fn wait_until_ready(&self) {
        for s in &self.projects {
            store_ready(s).await;
        }
        for s in &self.branches {
            store_ready(s).await;
        }
        for s in &self.snapshots {
            store_ready(s).await;
        }
        for s in &self.credentials {
            store_ready(s).await;
        }
    }
}

use futures::FutureExt;

fn decoded<K>(guards: &[Arc<DeserializeGuard<K>>]) -> impl Iterator<Item = &K> + Clone {
    guards.iter().filter_map(|g| g.0.as_ref().ok())
}

/// The planner's view of a set of resources (read by reference: at tens of
/// thousands of objects the loop must not copy them).
#[allow(clippy::too_many_arguments)]
pub fn view_of<'a>(
    providers: impl IntoIterator<Item = &'a DatabaseProvider>,
    projects: impl IntoIterator<Item = &'a DatabaseProject>,
    branches: impl IntoIterator<Item = &'a DatabaseBranch>,
    snapshots: impl IntoIterator<Item = &'a DatabaseSnapshot>,
    credentials: impl IntoIterator<Item = &'a ByokCredential> + Clone,
    secrets: impl IntoIterator<Item = &'a Secret>,
    finalizer: &str,
) -> View {
    let uses = projects
        .into_iter()
        .map(plan::project_use)
        .chain(branches.into_iter().map(plan::branch_use))
        .chain(snapshots.into_iter().map(plan::snapshot_use))
        .chain(credentials.clone().into_iter().map(plan::byok_use))
        .collect();
    View {
        providers: providers
            .into_iter()
            .map(|p| ProviderFacts::of(p, finalizer))
            .collect(),
        uses,
        byok_secrets: credentials
            .into_iter()
            .filter_map(plan::byok_secret_use)
            .collect(),
        secrets: secrets
            .into_iter()
            .map(|s| SecretFacts {
                key: SecretKey {
                    namespace: s.namespace().unwrap_or_default(),
                    name: s.name_any(),
                },
                protected: s.finalizers().iter().any(|f| f == finalizer),
            })
            .collect(),
    }
}

/// Where an object stands after [`protect`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protected {
    /// It carries the finalizer and is not being deleted.
    Yes,
    /// It is being deleted (with or without the finalizer).
    Deleting,
    /// It does not exist.
    Gone,
}

/// Adds `finalizer` (and, for Secrets, the protection label) to `name`, unless
/// it is already there. An object being deleted is left alone (the API server
/// refuses new finalizers then) and reported as such. The write is conditional
/// on the resourceVersion just read, so no other finalizer is lost.
pub async fn protect<K>(api: &Api<K>, name: &str, finalizer: &str) -> Result<Protected, kube::Error>
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug,
    K::DynamicType: Default,
{
    let Some(obj) = api.get_opt(name).await? else {
        return Ok(Protected::Gone);
    };
    if obj.meta().deletion_timestamp.is_some() {
        return Ok(Protected::Deleting);
    }
    let mut finalizers = obj.finalizers().to_vec();
    if finalizers.iter().any(|f| f == finalizer) {
        return Ok(Protected::Yes);
    }
    finalizers.push(finalizer.to_string());
    let mut metadata = serde_json::json!({
        "resourceVersion": obj.resource_version(),
        "finalizers": finalizers,
    });
    if K::kind(&K::DynamicType::default()) == "Secret" {
        metadata["labels"] = serde_json::json!({ PROTECTED_LABEL: "true" });
    }
    api.patch(
        name,
        &PatchParams::default(),
        &Patch::Merge(serde_json::json!({ "metadata": metadata })),
    )
    .await?;
    Ok(Protected::Yes)
}

/// Removes `finalizer` from `name` (conditional on the resourceVersion read).
pub async fn release<K>(api: &Api<K>, name: &str, finalizer: &str) -> Result<(), kube::Error>
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug,
    K::DynamicType: Default,
{
    let Some(obj) = api.get_opt(name).await? else {
        return Ok(());
    };
    let finalizers: Vec<&String> = obj
        .finalizers()
        .iter()
        .filter(|f| *f != finalizer)
        .collect();
    if finalizers.len() == obj.finalizers().len() {
        return Ok(());
    }
    let patch = serde_json::json!({
        "metadata": { "resourceVersion": obj.resource_version(), "finalizers": finalizers }
    });
    match api
        .patch(name, &PatchParams::default(), &Patch::Merge(patch))
        .await
    {
        Ok(_) => Ok(()),
        Err(e) if kube_error::not_found(&e) => Ok(()),
        Err(e) => Err(e),
    }
}

/// Everything in `scope`, page by page, read live (not from a cache).
async fn list_live<K>(api: Api<DeserializeGuard<K>>) -> Result<Vec<K>, kube::Error>
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug,
    K::DynamicType: Default,
{
    let mut out = Vec::new();
    let mut params = ListParams::default().limit(PAGE);
    loop {
        let page = api.list(&params).await?;
        out.extend(page.items.into_iter().filter_map(|g| g.0.ok()));
        match page.metadata.continue_.filter(|c| !c.is_empty()) {
            Some(token) => params = params.continue_token(&token),
            None => return Ok(out),
        }
    }
}

/// Where the loop looks: the controllers' scopes, and the namespaces whose
/// labelled Secrets it watches.
#[derive(Clone, Debug)]
pub struct Reach {
    pub scopes: Vec<Scope>,
    /// `None`: every namespace; otherwise these.
    pub secret_namespaces: Option<Vec<String>>,
}

impl Reach {
    /// Whether the controllers watch namespace `namespace`.
    pub fn covers(&self, namespace: &str) -> bool {
        self.scopes.iter().any(|scope| match scope {
            Scope::Cluster => true,
            Scope::Namespace(ns) => ns == namespace,
        })
    }

    fn secret_apis(&self, client: &Client) -> Vec<Api<Secret>> {
        match &self.secret_namespaces {
            None => vec![Api::all(client.clone())],
            Some(namespaces) => namespaces
                .iter()
                .map(|ns| Api::namespaced(client.clone(), ns))
                .collect(),
        }
    }

    fn apis<K>(&self, client: &Client) -> Vec<Api<DeserializeGuard<K>>>
    where
        K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
            + Clone
            + DeserializeOwned
            + std::fmt::Debug,
    {
        self.scopes
            .iter()
            .map(|s| s.api::<DeserializeGuard<K>>(client.clone()))
            .collect()
    }
}

/// The protected Secrets as they are now, read live.
async fn live_secrets(reach: &Reach, client: &Client) -> Result<Vec<Secret>, kube::Error> {
    let mut out = Vec::new();
    for api in reach.secret_apis(client) {
        let params = ListParams::default().labels(&format!("{PROTECTED_LABEL}=true"));
        out.extend(api.list(&params).await?.items);
    }
    Ok(out)
}

async fn live_view(reach: &Reach, client: &Client, finalizer: &str) -> Result<View, kube::Error> {
    let providers = list_live(Api::<DeserializeGuard<DatabaseProvider>>::all(
        client.clone(),
    ))
    .await?;
    let mut projects = Vec::new();
    for api in reach.apis::<DatabaseProject>(client) {
        projects.extend(list_live(api).await?);
    }
    let mut branches = Vec::new();
    for api in reach.apis::<DatabaseBranch>(client) {
        branches.extend(list_live(api).await?);
    }
    let mut snapshots = Vec::new();
    for api in reach.apis::<DatabaseSnapshot>(client) {
        snapshots.extend(list_live(api).await?);
    }
    let mut credentials = Vec::new();
    for api in reach.apis::<ByokCredential>(client) {
        credentials.extend(list_live(api).await?);
    }
    let secrets = live_secrets(reach, client).await?;
    Ok(view_of(
        &providers,
        &projects,
        &branches,
        &snapshots,
        &credentials,
        &secrets,
        finalizer,
    ))
}

/// What applying a plan came to.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Applied {
    pub made: usize,
    /// Lost a race or failed: run again soon.
    pub retry: bool,
}

async fn apply_change(
    client: &Client,
    change: &Change,
    finalizer: &str,
) -> Result<(), kube::Error> {
    let providers: Api<DatabaseProvider> = Api::all(client.clone());
    let secrets = |ns: &str| Api::<Secret>::namespaced(client.clone(), ns);
    match change {
        Change::ProtectProvider(name) => protect(&providers, name, finalizer).await.map(drop),
        Change::ReleaseProvider(name) => release(&providers, name, finalizer).await,
        Change::ProtectSecret(key) => protect(&secrets(&key.namespace), &key.name, finalizer)
            .await
            .map(drop),
        Change::ReleaseSecret(key) => release(&secrets(&key.namespace), &key.name, finalizer).await,
    }
}

/// Applies `plan`. Releases are made only if a live view agrees.
pub async fn apply(client: &Client, reach: &Reach, plan: &Plan, finalizer: &str) -> Applied {
    let mut applied = Applied::default();
    let releases: Vec<&Change> = plan.changes.iter().filter(|c| c.is_release()).collect();
    let confirmed: Vec<Change> = if releases.is_empty() {
        Vec::new()
    } else {
        match live_view(reach, client, finalizer).await {
            Ok(view) => {
                let live = plan::plan(&view);
                releases
                    .into_iter()
                    .filter(|c| live.changes.contains(c))
                    .cloned()
                    .collect()
            }
            Err(error) => {
                tracing::info!(error = %kube_error::describe(&error), "could not confirm that protected objects are unused; will try again");
                applied.retry = true;
                Vec::new()
            }
        }
    };
    let changes = plan
        .changes
        .iter()
        .filter(|c| !c.is_release())
        .chain(confirmed.iter());
    for change in changes {
        match apply_change(client, change, finalizer).await {
            Ok(()) => {
                applied.made += 1;
                tracing::info!(change = %change, "in-use protection updated");
            }
            Err(error) => {
                applied.retry = true;
                if kube_error::conflict(&error, false) {
                    tracing::debug!(change = %change, "conflict while updating in-use protection; retrying");
                } else {
                    tracing::warn!(change = %change, error = %kube_error::describe(&error), "could not update in-use protection");
                }
            }
        }
    }
    applied
}

/// The store and the event stream of one watch.
fn watched<K>(
    api: Api<K>,
    config: watcher::Config,
) -> (Store<K>, impl Stream<Item = ()> + Send + 'static)
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug + Send + Sync + 'static,
    K::DynamicType: Default + Eq + std::hash::Hash + Clone + Send + Sync,
{
    let (store, writer) = reflector::store();
    let events = reflector::reflector(writer, watcher(api, config))
        .default_backoff()
        .map(|_| ());
    (store, events)
}

/// A stream that yields whenever `notify` is notified.
fn notified(notify: Arc<Notify>) -> impl Stream<Item = ()> + Send + 'static {
    futures::stream::unfold(notify, |n| async move {
        n.notified().await;
        Some(((), n))
    })
}

/// Tells waiting providers why they are still here, once per provider and set of dependents.
async fn explain_waits(
    ctx: &Context,
    providers: &Store<DeserializeGuard<DatabaseProvider>>,
    plan: &Plan,
    told: &mut BTreeMap<String, Vec<String>>,
) {
    told.retain(|name, _| plan.dependents.contains_key(name));
    for guard in providers.state() {
        let Ok(provider) = &guard.0 else { continue };
        if provider.meta().deletion_timestamp.is_none() {
            continue;
        }
        let name = provider.name_any();
        let Some(dependents) = plan.dependents.get(&name) else {
            continue;
        };
        if told.get(&name) == Some(dependents) {
            continue;
        }
        told.insert(name, dependents.clone());
        let shown: Vec<&str> = dependents.iter().take(3).map(String::as_str).collect();
        let more = dependents.len().saturating_sub(shown.len());
        let note = format!(
            "deletion waits until the {} resource{} using this provider {} cleaned up at the vendor: {}{}",
            dependents.len(),
            if dependents.len() == 1 { "" } else { "s" },
            if dependents.len() == 1 { "is" } else { "are" },
            shown.join(", "),
            if more > 0 {
                format!(" and {more} more")
            } else {
                String::new()
            }
        );
        ctx.publish(provider, EventType::Normal, "InUse", "Delete", note)
            .await;
    }
}

/// Keeps the in-use finalizers right until `stop` resolves.
pub async fn run(
    ctx: Arc<Context>,
    reach: Reach,
    stores: Stores,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) {
    let client = ctx.client.clone();
    let (providers, provider_events) = watched(
        Api::<DeserializeGuard<DatabaseProvider>>::all(client.clone()),
        watcher::Config::default(),
    );
    let mut secret_stores = Vec::new();
    let mut triggers: Vec<futures::stream::BoxStream<'static, ()>> = vec![
        provider_events.boxed(),
        notified(ctx.protection_poke.clone()).boxed(),
        every(RESYNC).boxed(),
    ];
    for api in reach.secret_apis(&client) {
        let (store, events) = watched(
            api,
            watcher::Config::default().labels(&format!("{PROTECTED_LABEL}=true")),
        );
        secret_stores.push(store);
        triggers.push(events.boxed());
    }
    let (claims, claim_events) = watched(
        Api::<VendorClaim>::all(client.clone()),
        watcher::Config::default(),
    );
    triggers.push(claim_events.boxed());
    // Namespace labels matter to the lookups only (read at the next
    // reconcile; each controller watches them for its own wake-ups).
    let (namespaces, namespace_events) = namespace_store(&client, &reach);
    ctx.set_caches(Some(crate::controllers::runtime::Caches {
        providers: providers.clone(),
        secrets: secret_stores.clone(),
        claims: Some(claims.clone()),
        namespaces: Some(namespaces),
    }));
    let watched = Watched {
        providers,
        secrets: secret_stores,
        claims,
        stores,
    };
    let triggers = futures::stream::select_all(triggers);
    let fill_namespaces = namespace_events.for_each(|_| async {});
    tokio::select! {
        _ = futures::future::join(keep_protected(&ctx, &reach, &watched, triggers), fill_namespaces) => {}
        _ = stop => {}
    }
    ctx.set_caches(None);
}

/// A cache of the namespaces' metadata (for the providers' namespace
/// selectors) and the events that fill it: every namespace, or the watched
/// ones by name.
fn namespace_store(
    client: &Client,
    reach: &Reach,
) -> (
    Store<kube::core::PartialObjectMeta<Namespace>>,
    futures::stream::BoxStream<'static, ()>,
) {
    let (store, writer) = reflector::store();
    let api: Api<kube::core::PartialObjectMeta<Namespace>> = Api::all(client.clone());
    let configs: Vec<watcher::Config> = match &reach.secret_namespaces {
        None => vec![watcher::Config::default()],
        Some(namespaces) => namespaces
            .iter()
            .map(|ns| watcher::Config::default().fields(&format!("metadata.name={ns}")))
            .collect(),
    };
    let streams = configs
        .into_iter()
        .map(|config| watcher(api.clone(), config).boxed());
    let events = reflector::reflector(writer, futures::stream::select_all(streams))
        .default_backoff()
        .map(|_| ())
        .boxed();
    (store, events)
}

/// A stream that yields every `period`.
fn every(period: Duration) -> impl futures::Stream<Item = ()> {
    futures::stream::unfold((), move |()| async move {
        tokio::time::sleep(period).await;
        Some(((), ()))
    })
}

/// The caches the loop plans from.
struct Watched {
    providers: Store<DeserializeGuard<DatabaseProvider>>,
    secrets: Vec<Store<Secret>>,
    claims: Store<VendorClaim>,
    stores: Stores,
}

impl Watched {
    async fn ready(&self) {
        store_ready(&self.providers).await;
        store_ready(&self.claims).await;
        for s in &self.secrets {
            store_ready(s).await;
        }
        self.stores.wait_until_ready().await;
    }

    /// Whether a provider being deleted still has users in `plan`.
    fn deletion_pending(&self, plan: &plan::Plan) -> bool {
        self.providers.state().iter().any(|provider| {
            provider.meta().deletion_timestamp.is_some()
                && plan.provider_in_use(&provider.name_any())
        })
    }

    /// The claims whose holders the caches no longer have (candidates for
    /// the sweep, confirmed live before anything is removed).
    fn stale_claims(&self, reach: &Reach) -> Vec<VendorClaim> {
        let stores = &self.stores;
        let mut uids: Vec<String> = Vec::new();
        fn collect<K>(uids: &mut Vec<String>, stores: &[Store<DeserializeGuard<K>>])
        where
            K: Resource + Clone + DeserializeOwned + std::fmt::Debug,
            K::DynamicType: Eq + std::hash::Hash + Clone,
        {
            for store in stores {
                uids.extend(store.state().iter().filter_map(|g| g.meta().uid.clone()));
            }
        }
        collect(&mut uids, &stores.projects);
        collect(&mut uids, &stores.branches);
        collect(&mut uids, &stores.snapshots);
        collect(&mut uids, &stores.credentials);
        let live: std::collections::HashSet<&str> = uids.iter().map(String::as_str).collect();
        let claims = self.claims.state();
        claims::stale_candidates(claims.iter().map(|c| &**c), |ns| reach.covers(ns), &live)
    }

    /// The plan for what the caches hold now.
    fn plan(&self, finalizer: &str) -> plan::Plan {
        let stores = &self.stores;
        let provider_list = self.providers.state();
        let projects: Vec<Arc<DeserializeGuard<DatabaseProject>>> =
            stores.projects.iter().flat_map(Store::state).collect();
        let branches: Vec<Arc<DeserializeGuard<DatabaseBranch>>> =
            stores.branches.iter().flat_map(Store::state).collect();
        let snapshots: Vec<Arc<DeserializeGuard<DatabaseSnapshot>>> =
            stores.snapshots.iter().flat_map(Store::state).collect();
        let credentials: Vec<Arc<DeserializeGuard<ByokCredential>>> =
            stores.credentials.iter().flat_map(Store::state).collect();
        let secrets: Vec<Arc<Secret>> = self.secrets.iter().flat_map(Store::state).collect();
        plan::plan(&view_of(
            decoded(&provider_list),
            decoded(&projects),
            decoded(&branches),
            decoded(&snapshots),
            decoded(&credentials),
            secrets.iter().map(|s| &**s),
            finalizer,
        ))
    }
}

/// The loop: once the caches are filled, plan and apply after every trigger
/// (debounced), retrying soon when an apply could not finish.
async fn keep_protected(
    ctx: &Context,
    reach: &Reach,
    watched: &Watched,
    mut triggers: impl futures::Stream<Item = ()> + Unpin,
) {
    let finalizer = ctx.settings.protection_finalizer.clone();
    let ready = watched.ready();
    // Watch events must keep flowing into the stores while waiting.
    tokio::pin!(ready);
    loop {
        tokio::select! {
            _ = &mut ready => break,
            _ = triggers.next() => {}
        }
    }
    let mut told = BTreeMap::new();
    loop {
        let plan = watched.plan(&finalizer);
        explain_waits(ctx, &watched.providers, &plan, &mut told).await;
        let applied = if plan.changes.is_empty() {
            Applied::default()
        } else {
            apply(&ctx.client, reach, &plan, &finalizer).await
        };
        let stale = watched.stale_claims(reach);
        if !stale.is_empty() {
            ctx.sweep_claims(&stale).await;
        }
        if applied.retry {
            tokio::time::sleep(jitter(Duration::from_secs(1), 0.5)).await;
            continue;
        }
        // Wait for the next trigger, then let a burst settle. While a deleting
        // provider still has users, look again soon as well: the users' own
        // deletions reach the caches with no trigger of their own.
        let next = if watched.deletion_pending(&plan) {
            tokio::time::timeout(PENDING_RECHECK, triggers.next())
                .await
                .unwrap_or(Some(()))
        } else {
            triggers.next().await
        };
        if next.is_none() {
            return;
        }
        tokio::time::sleep(DEBOUNCE).await;
        while let Some(Some(())) = triggers.next().now_or_never() {}
    }
}
