//! Wiring of `dbops run`: the controllers, the embedded emulator, and the
//! health and metrics endpoints.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use futures::FutureExt;
use futures::future::Shared;
use kube::Client;
use kube::runtime::watcher;

use crate::controllers::{self, Context, Settings};
use crate::metrics::Metrics;

/// Options of one operator process.
#[derive(Clone, Debug)]
pub struct Options {
    pub settings: Settings,
    /// Where `/metrics`, `/healthz` and `/readyz` are served; `None` disables them.
    pub metrics_listen: Option<SocketAddr>,
    /// Reporting instance name for Events (the pod name in a cluster).
    pub instance: Option<String>,
}

/// Health state shared with the HTTP endpoints.
#[derive(Default)]
pub struct Health {
    ready: AtomicBool,
}

impl Health {
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::SeqCst);
    }
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::SeqCst)
    }
}

#[derive(Clone)]
struct HttpState {
    metrics: Arc<Metrics>,
    health: Arc<Health>,
}

/// `/metrics`, `/healthz` and `/readyz`.
pub fn http_router(metrics: Arc<Metrics>, health: Arc<Health>) -> Router {
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

/// Runs every controller until `shutdown` resolves, then drains in-flight reconciles.
pub async fn run(
    client: Client,
    options: Options,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) {
    let metrics = Arc::new(Metrics::default());
    let health = Arc::new(Health::default());
    let shutdown: Shared<futures::future::BoxFuture<'static, ()>> = shutdown.boxed().shared();

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

    let ctx = Arc::new(Context::new(
        client,
        metrics,
        options.settings,
        options.instance,
    ));
    health.set_ready(true);
    let watch = watcher::Config::default();
    tokio::join!(
        controllers::project::run(ctx.clone(), watch.clone(), shutdown.clone()),
        controllers::branch::run(ctx.clone(), watch.clone(), shutdown.clone()),
        controllers::snapshot::run(ctx.clone(), watch.clone(), shutdown.clone()),
        controllers::byok::run(ctx.clone(), watch.clone(), shutdown.clone()),
        controllers::provider::run(ctx, watch, shutdown.clone()),
    );
    health.set_ready(false);
    tracing::info!("controllers stopped");
}
