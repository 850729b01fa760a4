//! Wiring of `dbops run`: the controllers (cluster-wide or per namespace),
//! leader election, and the health and metrics endpoints.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use futures::FutureExt;
use futures::future::{BoxFuture, Shared};
use k8s_openapi::api::coordination::v1::Lease;
use kube::Client;
use kube::api::Api;
use kube::runtime::{WatchStreamExt, watcher};
use kube_lease_manager::LeaseManagerBuilder;

use crate::controllers::{self, Context, Readiness, Scope, Settings, protection};
use crate::metrics::Metrics;

/// Leader election settings: only the holder of the Lease reconciles.
#[derive(Clone, Debug)]
pub struct LeaderElection {
    /// Name of the `coordination.k8s.io/v1` Lease.
    pub lease_name: String,
    /// Namespace of the Lease (the operator's own namespace).
    pub lease_namespace: String,
    /// This instance's identity (the pod name).
    pub identity: String,
    /// How long a Lease is valid without renewal; a standby takes over after it expires.
    pub lease_duration: Duration,
    /// How long before expiry the holder renews.
    pub renew_grace: Duration,
}

/// Options of one operator process.
#[derive(Clone, Debug, Default)]
pub struct Options {
    pub settings: Settings,
    /// Where `/metrics`, `/healthz` and `/readyz` are served; `None` disables them.
    pub metrics_listen: Option<SocketAddr>,
    /// Reporting instance name for Events (the pod name in a cluster).
    pub instance: Option<String>,
    /// Namespaces to watch; empty means every namespace.
    pub namespaces: Vec<String>,
    /// The namespace the operator runs in (where provider credential Secrets
    /// usually live); watched for protected Secrets in namespace-scoped mode.
    pub own_namespace: Option<String>,
    /// Leader election; `None` runs the controllers at once.
    pub leader_election: Option<LeaderElection>,
    /// How long in-flight reconciles may run on after shutdown is requested;
    /// then they are abandoned (every reconcile is safe to cut off: the next
    /// start resumes it). `None`: [`DEFAULT_SHUTDOWN_GRACE`].
    pub shutdown_grace: Option<Duration>,
    /// The process's metrics, when the client was made with [`counted_client`]
    /// on them; `None`: fresh ones.
    pub metrics: Option<Arc<Metrics>>,
}

/// Default of [`Options::shutdown_grace`]: well inside a pod's termination
/// grace period (30 s by default), so the Lease is always released.
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// What `/livez` and `/readyz` report (not to be confused with a resource's
/// `conditions::Health`).
#[derive(Default)]
pub struct ProbeState {
    /// A standby (not the leader) is ready: it is healthy and waiting its turn.
    standby: std::sync::atomic::AtomicBool,
    readiness: std::sync::Mutex<Option<Arc<Readiness>>>,
}

impl ProbeState {
    fn set_standby(&self, standby: bool) {
        self.standby
            .store(standby, std::sync::atomic::Ordering::SeqCst);
    }

    fn set_readiness(&self, readiness: Option<Arc<Readiness>>) {
        *self.readiness.lock().unwrap_or_else(|p| p.into_inner()) = readiness;
    }

    /// Ready when standing by, or when leading with every watch synced.
    pub fn is_ready(&self) -> bool {
        if self.standby.load(std::sync::atomic::Ordering::SeqCst) {
            return true;
        }
        self.readiness
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .is_some_and(|r| r.is_synced())
    }
}

#[derive(Clone)]
struct HttpState {
    metrics: Arc<Metrics>,
    health: Arc<ProbeState>,
}

/// `/metrics`, `/healthz` and `/readyz`.
pub fn http_router(metrics: Arc<Metrics>, health: Arc<ProbeState>) -> Router {
    Router::new()
        .route(
            "/metrics",
            get(|State(s): State<HttpState>| async move {
                (
                    [(
                        "content-type",
                        "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    )],
                    s.metrics.encode(),
                )
            }),
        )
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/readyz",
            get(|State(s): State<HttpState>| async move {
                if s.health.is_ready() {
                    (StatusCode::OK, "ready").into_response()
                } else {
                    (StatusCode::SERVICE_UNAVAILABLE, "not ready").into_response()
                }
            }),
        )
        .with_state(HttpState { metrics, health })
}

type Stop = Shared<BoxFuture<'static, ()>>;

/// How long releasing the Lease may take at shutdown.
const LEASE_RELEASE_TIMEOUT: Duration = Duration::from_secs(3);

/// Runs every controller until `stop` resolves. In-flight reconciles get
/// `grace` to finish; then they are dropped. (kube-runtime's own graceful
/// shutdown waits for every watch's first list, which never comes for a kind
/// the operator cannot list: it must not hold the process.)
async fn run_controllers(
    ctx: Arc<Context>,
    namespaces: &[String],
    own_namespace: Option<&str>,
    stop: Stop,
    grace: Duration,
) {
    let all = start_controllers(ctx, namespaces, own_namespace, stop.clone());
    tokio::pin!(all);
    tokio::select! {
        _ = &mut all => {}
        _ = async { stop.await; tokio::time::sleep(grace).await } => {
            tracing::warn!(
                grace_ms = grace.as_millis() as u64,
                "reconciles still running at the end of the shutdown grace period were abandoned; they resume on the next start"
            );
        }
    }
}

fn start_controllers(
    ctx: Arc<Context>,
    namespaces: &[String],
    own_namespace: Option<&str>,
    stop: Stop,
) -> impl std::future::Future<Output = ()> + use<> {
    let watch = watcher::Config::default();
    let scopes: Vec<Scope> = if namespaces.is_empty() {
        vec![Scope::Cluster]
    } else {
        namespaces.iter().cloned().map(Scope::Namespace).collect()
    };
    let mut tasks: Vec<BoxFuture<'static, ()>> = Vec::new();
    let mut stores = protection::Stores::default();
    for scope in &scopes {
        let projects = controllers::project::controller(&ctx, scope, watch.clone());
        stores.projects.push(projects.store());
        tasks.push(controllers::drive(projects, ctx.clone(), stop.clone()).boxed());
        let branches = controllers::branch::controller(&ctx, scope, watch.clone());
        stores.branches.push(branches.store());
        tasks.push(controllers::drive(branches, ctx.clone(), stop.clone()).boxed());
        let snapshots = controllers::snapshot::controller(&ctx, scope, watch.clone());
        stores.snapshots.push(snapshots.store());
        tasks.push(controllers::drive(snapshots, ctx.clone(), stop.clone()).boxed());
        let schedules = controllers::schedule::controller(&ctx, scope, watch.clone());
        tasks.push(controllers::drive(schedules, ctx.clone(), stop.clone()).boxed());
        let roles = controllers::role::controller(&ctx, scope, watch.clone());
        tasks.push(controllers::drive(roles, ctx.clone(), stop.clone()).boxed());
        let credentials = controllers::byok::controller(&ctx, scope, watch.clone());
        stores.credentials.push(credentials.store());
        tasks.push(controllers::drive(credentials, ctx.clone(), stop.clone()).boxed());
    }
    let secret_namespaces = (!namespaces.is_empty()).then(|| {
        let mut all: Vec<String> = namespaces.to_vec();
        all.extend(own_namespace.map(str::to_string));
        all.sort();
        all.dedup();
        all
    });
    let reach = protection::Reach {
        scopes,
        secret_namespaces,
    };
    tasks.push(protection::run(ctx.clone(), reach, stores, stop.clone()).boxed());
    tasks.push(controllers::provider::run(ctx, watch, stop).boxed());
    futures::future::join_all(tasks).map(|_| ())
}

/// Keeps `leading` up to date with whether this instance holds the Lease,
/// until `release` fires; then releases the Lease.
///
/// kube-lease-manager's standby sleeps until the holder's Lease would expire,
/// and re-reads it from a cache that still shows the old holder. A watch of
/// the Lease notices when the holder releases it on a clean shutdown; the
/// standby then starts over with a fresh manager, whose first read sees the
/// Lease free and takes it: the hand-over is immediate. (A standby's manager
/// holds nothing, so replacing it is safe; `changed()` records a change and
/// returns it with no await in between, so cancelling it loses nothing.)
async fn drive_lease<F, Fut>(
    make_manager: F,
    api: Api<Lease>,
    name: String,
    leading: tokio::sync::watch::Sender<bool>,
    mut release: tokio::sync::oneshot::Receiver<()>,
) -> Result<(), kube_lease_manager::LeaseManagerError>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = kube_lease_manager::Result<kube_lease_manager::LeaseManager>>,
{
    use futures::StreamExt;
    let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
    let mut released = watcher(api, config)
        .default_backoff()
        .applied_objects()
        .filter_map(|lease| {
            let free = lease.ok().is_some_and(|l: Lease| {
                l.spec
                    .and_then(|s| s.holder_identity)
                    .is_none_or(|h| h.is_empty())
            });
            futures::future::ready(free.then_some(()))
        })
        .boxed();
    let mut manager = make_manager().await?;
    loop {
        tokio::select! {
            biased;
            _ = &mut release => break,
            changed = manager.changed() => match changed {
                Ok(is_leader) => {
                    let _ = leading.send(is_leader);
                }
                Err(error) => {
                    tracing::warn!(%error, "leader election failed; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            },
            Some(()) = released.next() => {
                if !*leading.borrow() {
                    tracing::debug!("the leader Lease was released; trying to take it now");
                    match make_manager().await {
                        Ok(fresh) => manager = fresh,
                        Err(error) => tracing::warn!(%error, "leader election failed; retrying"),
                    }
                }
            }
        }
    }
    let _ = leading.send(false);
    manager.release().await
}

/// A client for `config` that counts every request it sends in `metrics`
/// (`dbops_kube_requests_total`, by verb and resource).
pub fn counted_client(config: kube::Config, metrics: Arc<Metrics>) -> Result<Client, kube::Error> {
    let count =
        tower::util::MapRequestLayer::new(move |request: http::Request<kube::client::Body>| {
            metrics.observe_kube_request(request.method(), request.uri());
            request
        });
    Ok(kube::client::ClientBuilder::try_from(config)?
        .with_layer(&count)
        .build())
}

/// Runs the operator until `shutdown` resolves. With leader election, only the
/// Lease holder runs controllers; a standby waits, and takes over when the
/// Lease is released (at once, on a graceful shutdown) or expires.
pub async fn run(
    client: Client,
    options: Options,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) {
    let metrics = options.metrics.clone().unwrap_or_default();
    let health = Arc::new(ProbeState::default());
    let shutdown: Stop = shutdown.boxed().shared();
    let grace = options.shutdown_grace.unwrap_or(DEFAULT_SHUTDOWN_GRACE);

    if let Some(addr) = options.metrics_listen {
        match tokio::net::TcpListener::bind(addr).await {
            Ok(listener) => {
                tracing::info!(%addr, "serving /metrics, /healthz and /readyz");
                let app = http_router(metrics.clone(), health.clone());
                let stop = shutdown.clone();
                tokio::spawn(async move {
                    if let Err(error) = axum::serve(listener, app)
                        .with_graceful_shutdown(stop)
                        .await
                    {
                        tracing::error!(%error, "metrics server stopped");
                    }
                });
            }
            Err(error) => {
                tracing::warn!(%addr, %error, "cannot serve metrics; continuing without them")
            }
        }
    }

    let mut settings = options.settings.clone();
    if !options.namespaces.is_empty()
        && settings.protection_finalizer == protection::DEFAULT_FINALIZER
    {
        // Operators watching only some namespaces may share a provider: each
        // keeps its own in-use finalizer.
        settings.protection_finalizer =
            protection::namespaced_finalizer(options.own_namespace.as_deref().unwrap_or("default"));
    }
    let new_context = || {
        let ctx = Arc::new(Context::new(
            client.clone(),
            metrics.clone(),
            settings.clone(),
            options.instance.clone(),
        ));
        health.set_readiness(Some(ctx.readiness.clone()));
        ctx
    };

    // One term of the controllers (the whole run without leader election).
    let run = |stop: Stop| {
        run_controllers(
            new_context(),
            &options.namespaces,
            options.own_namespace.as_deref(),
            stop,
            grace,
        )
    };

    let Some(election) = options.leader_election.clone() else {
        run(shutdown).await;
        tracing::info!("controllers stopped");
        return;
    };

    let make_manager = {
        let client = client.clone();
        let election = election.clone();
        move || {
            LeaseManagerBuilder::new(client.clone(), election.lease_name.clone())
                .with_namespace(election.lease_namespace.clone())
                .with_identity(election.identity.clone())
                .with_duration(election.lease_duration.as_secs().max(1))
                .with_grace(election.renew_grace.as_secs().max(1))
                .build()
        }
    };
    // Fail early, with a clear message, if the Lease cannot be used at all.
    if let Err(error) = make_manager().await {
        tracing::error!(%error, "cannot set up leader election");
        return;
    }
    let (leading_tx, mut leading) = tokio::sync::watch::channel(false);
    let (release_tx, release_rx) = tokio::sync::oneshot::channel::<()>();
    let lease_task = tokio::spawn(drive_lease(
        make_manager,
        Api::namespaced(client.clone(), &election.lease_namespace),
        election.lease_name.clone(),
        leading_tx,
        release_rx,
    ));
    loop {
        health.set_standby(true);
        tracing::info!(identity = %election.identity, "waiting to become the leader");
        tokio::select! {
            _ = shutdown.clone() => break,
            changed = leading.wait_for(|is_leader| *is_leader) => {
                if changed.is_err() {
                    tracing::error!("leader election stopped");
                    break;
                }
            }
        }
        tracing::info!(identity = %election.identity, "became the leader; starting controllers");
        health.set_standby(false);
        let mut lost = leading.clone();
        let stop: Stop = {
            let shutdown = shutdown.clone();
            async move {
                tokio::select! {
                    _ = shutdown => {}
                    _ = lost.wait_for(|is_leader| !*is_leader) => {
                        tracing::warn!("lost the leader lease; stopping controllers");
                    }
                }
            }
            .boxed()
            .shared()
        };
        run(stop).await;
        health.set_readiness(None);
        if shutdown.clone().now_or_never().is_some() {
            break;
        }
    }
    // The controllers have stopped: release the Lease, so a standby takes over
    // at once instead of waiting for it to expire.
    let _ = release_tx.send(());
    match tokio::time::timeout(LEASE_RELEASE_TIMEOUT, lease_task).await {
        Ok(Ok(Ok(()))) => tracing::info!("leader lease released"),
        Ok(Ok(Err(error))) => tracing::warn!(%error, "could not release the leader lease"),
        Ok(Err(error)) => tracing::warn!(%error, "leader election task failed"),
        Err(_) => tracing::warn!("timed out releasing the leader lease"),
    }
    tracing::info!("controllers stopped");
}
