//! The HTTP endpoints of `dbops run` (`/metrics`, `/healthz`, `/readyz`), served
//! by `dbops::operator::http_router` on loopback after real reconciles through
//! the harness, scraped over HTTP and parsed with `prometheus-parse`.

mod support;

use std::net::SocketAddr;
use std::sync::Arc;

use dbops::api::v1alpha1::{ConnectionSecretTarget, DatabaseProject, DatabaseProjectSpec};
use dbops::operator::{ProbeState, http_router};
use kube::api::{Api, PostParams};
use kube::{Resource, ResourceExt};
use prometheus_parse::{Sample, Scrape, Value};
use support::{Harness, NS};

/// A name distinctive enough that finding it anywhere in the scrape is a leak.
const PROJECT: &str = "metrics-canary-project";

/// Serves the router on an ephemeral loopback port until the test ends.
async fn serve(h: &Harness, health: Arc<ProbeState>) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = http_router(h.ctx.metrics.clone(), health);
    tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    addr
}

/// Samples of `metric` whose labels include every `(name, value)` in `labels`.
fn find<'a>(scrape: &'a Scrape, metric: &str, labels: &[(&str, &str)]) -> Vec<&'a Sample> {
    scrape
        .samples
        .iter()
        .filter(|s| s.metric == metric)
        .filter(|s| labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .collect()
}

/// The single value of a counter, gauge or untyped sample.
///
/// prometheus-parse types samples by the `# TYPE` name; OpenMetrics counters are
/// declared without their `_total` suffix, so counter samples come back untyped.
fn scalar(sample: &Sample) -> f64 {
    match sample.value {
        Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => v,
        ref other => panic!("{} is not a scalar: {other:?}", sample.metric),
    }
}

/// The value of the one sample of `metric` with `labels`.
fn value(scrape: &Scrape, metric: &str, labels: &[(&str, &str)]) -> f64 {
    let found = find(scrape, metric, labels);
    assert_eq!(
        found.len(),
        1,
        "expected one {metric}{labels:?}, found {found:?}"
    );
    scalar(found[0])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_health_and_readiness_over_http() {
    dbops::providers::http::ensure_crypto_provider();
    let h = Harness::new().await;

    // Real reconciles: finalizer, create at the emulated vendor, then one
    // steady-state pass so the objects gauge sees the Ready status.
    let projects: Api<DatabaseProject> = Api::namespaced(h.client.clone(), NS);
    let spec = DatabaseProjectSpec {
        write_connection_secret_to: Some(ConnectionSecretTarget {
            name: format!("{PROJECT}-db"),
            ..Default::default()
        }),
        ..Default::default()
    };
    projects
        .create(&PostParams::default(), &DatabaseProject::new(PROJECT, spec))
        .await
        .unwrap();
    let ready = support::reconcile_until_ready::<DatabaseProject>(&h, PROJECT, 5).await;
    support::reconcile::<DatabaseProject>(&h, PROJECT)
        .await
        .unwrap();
    let uid = ready.meta().uid.clone().expect("the project has a UID");
    let project_id = ready
        .status
        .as_ref()
        .and_then(|s| s.project_id.clone())
        .expect("the project has a vendor id");

    let health = Arc::new(ProbeState::default());
    let addr = serve(&h, health).await;
    let http = reqwest::Client::new();
    let base = format!("http://{addr}");

    // /healthz: always 200 while the process serves.
    let healthz = http.get(format!("{base}/healthz")).send().await.unwrap();
    assert_eq!(healthz.status().as_u16(), 200);
    assert_eq!(healthz.text().await.unwrap(), "ok");

    // /readyz: 503 before any watch has synced. `ProbeState`'s setters are private
    // to the crate, so from here only the not-ready answer can be produced.
    let readyz = http.get(format!("{base}/readyz")).send().await.unwrap();
    assert_eq!(readyz.status().as_u16(), 503);
    assert_eq!(readyz.text().await.unwrap(), "not ready");

    // /metrics over HTTP.
    let response = http.get(format!("{base}/metrics")).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    assert!(
        content_type.starts_with("application/openmetrics-text"),
        "{content_type}"
    );
    let text = response.text().await.unwrap();
    assert!(
        text.trim_end().ends_with("# EOF"),
        "OpenMetrics ends with # EOF"
    );
    let scrape = Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).unwrap();
    assert!(!scrape.samples.is_empty(), "no samples in:\n{text}");

    // Reconciles of the project controller: at least finalizer + create + resync.
    let reconciles = value(
        &scrape,
        "dbops_reconciles_total",
        &[("controller", "databaseproject")],
    );
    assert!(reconciles >= 2.0, "reconciles {reconciles}\n{text}");

    // The vendor create went out once and the emulator answered 200.
    let creates = value(
        &scrape,
        "dbops_vendor_requests_total",
        &[
            ("api", "infrai"),
            ("operation", "db.project.create"),
            ("status", "200"),
        ],
    );
    assert_eq!(creates, 1.0, "{text}");
    // No failed vendor requests.
    for sample in find(&scrape, "dbops_vendor_requests_total", &[]) {
        let status = sample.labels.get("status").unwrap_or_default();
        assert!(
            status.starts_with('2'),
            "unexpected vendor status {status}: {sample:?}"
        );
    }
    // The vendor latency histogram saw that request.
    let create_latency = find(
        &scrape,
        "dbops_vendor_request_duration_seconds_count",
        &[("api", "infrai"), ("operation", "db.project.create")],
    );
    assert_eq!(create_latency.len(), 1, "{text}");
    assert_eq!(scalar(create_latency[0]), 1.0);

    // The reconcile duration histogram: buckets, cumulative, +Inf equal to the count.
    let histograms = find(
        &scrape,
        "dbops_reconcile_duration_seconds",
        &[("controller", "databaseproject")],
    );
    assert_eq!(histograms.len(), 1, "{text}");
    let Value::Histogram(buckets) = &histograms[0].value else {
        panic!("not a histogram: {:?}", histograms[0]);
    };
    assert!(buckets.len() > 1, "{buckets:?}");
    let mut buckets = buckets.clone();
    buckets.sort_by(|a, b| a.less_than.total_cmp(&b.less_than));
    assert!(
        buckets.windows(2).all(|w| w[0].count <= w[1].count),
        "buckets are cumulative: {buckets:?}"
    );
    let inf = buckets.last().unwrap();
    assert!(inf.less_than.is_infinite(), "{buckets:?}");
    let count = value(
        &scrape,
        "dbops_reconcile_duration_seconds_count",
        &[("controller", "databaseproject")],
    );
    assert_eq!(count, reconciles, "one observation per reconcile");
    assert_eq!(inf.count, count, "the +Inf bucket holds every observation");
    let sum = value(
        &scrape,
        "dbops_reconcile_duration_seconds_sum",
        &[("controller", "databaseproject")],
    );
    assert!(sum > 0.0, "sum {sum}");

    // Objects by condition: the project was counted Ready on the steady-state pass.
    let objects = find(
        &scrape,
        "dbops_objects",
        &[("controller", "databaseproject")],
    );
    assert!(!objects.is_empty(), "{text}");
    for sample in &objects {
        let condition = sample.labels.get("condition").unwrap_or_default();
        assert!(
            ["Ready", "Reconciling", "Stalled", "Unknown"].contains(&condition),
            "condition label {condition:?}"
        );
        assert!(matches!(sample.value, Value::Gauge(_)), "{sample:?}");
    }
    assert_eq!(
        value(
            &scrape,
            "dbops_objects",
            &[("controller", "databaseproject"), ("condition", "Ready")]
        ),
        1.0,
        "{text}"
    );
    let total: f64 = objects.iter().map(|s| scalar(s)).sum();
    assert_eq!(total, 1.0, "one project counted once: {text}");

    // No label value names an object: not its name, namespace, UID, vendor id or Secret.
    let leaks = [
        PROJECT.to_string(),
        ready.name_any(),
        NS.to_string(),
        uid,
        project_id,
    ];
    for sample in &scrape.samples {
        for (label, value) in sample.labels.iter() {
            for leak in &leaks {
                assert!(
                    !value.contains(leak.as_str()),
                    "label {label}={value:?} of {} names an object",
                    sample.metric
                );
            }
        }
    }
    for leak in &leaks {
        assert!(
            !text.contains(leak.as_str()),
            "{leak:?} appears in:\n{text}"
        );
    }
}
