//! Prometheus metrics of the operator. Labels are small static sets (controller,
//! error category, API, operation, status code): never object names.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::api::v1alpha1::ProviderApi;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ControllerLabels {
    controller: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FailureLabels {
    controller: String,
    category: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VendorRequestLabels {
    api: String,
    operation: String,
    status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ObjectLabels {
    controller: String,
    condition: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KubeRequestLabels {
    verb: &'static str,
    resource: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VendorLatencyLabels {
    api: String,
    operation: String,
}

fn seconds_histogram() -> Histogram {
    // 1 ms .. ~33 s
    Histogram::new(exponential_buckets(0.001, 2.0, 16))
}

/// All metrics of one operator process.
pub struct Metrics {
    registry: Registry,
    reconciles: Family<ControllerLabels, Counter>,
    failures: Family<FailureLabels, Counter>,
    reconcile_duration: Family<ControllerLabels, Histogram, fn() -> Histogram>,
    vendor_requests: Family<VendorRequestLabels, Counter>,
    vendor_latency: Family<VendorLatencyLabels, Histogram, fn() -> Histogram>,
    kube_requests: Family<KubeRequestLabels, Counter>,
    objects: Family<ObjectLabels, Gauge>,
    /// The condition each object was last counted under: (controller, object key) -> condition.
    object_states: std::sync::Mutex<std::collections::HashMap<(String, String), &'static str>>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("dbops");
        let reconciles = Family::<ControllerLabels, Counter>::default();
        registry.register(
            "reconciles",
            "Reconciliations run, by controller",
            reconciles.clone(),
        );
        let failures = Family::<FailureLabels, Counter>::default();
        registry.register(
            "reconcile_failures",
            "Reconciliations that failed, by controller and error category",
            failures.clone(),
        );
        let reconcile_duration =
            Family::<ControllerLabels, Histogram, fn() -> Histogram>::new_with_constructor(
                seconds_histogram,
            );
        registry.register(
            "reconcile_duration_seconds",
            "Duration of one reconciliation, by controller",
            reconcile_duration.clone(),
        );
        let vendor_requests = Family::<VendorRequestLabels, Counter>::default();
        registry.register(
            "vendor_requests",
            "Requests sent to vendor APIs, by API, operation and HTTP status (or timeout/error)",
            vendor_requests.clone(),
        );
        let vendor_latency =
            Family::<VendorLatencyLabels, Histogram, fn() -> Histogram>::new_with_constructor(
                seconds_histogram,
            );
        registry.register(
            "vendor_request_duration_seconds",
            "Latency of vendor API requests, by API and operation",
            vendor_latency.clone(),
        );
        let kube_requests = Family::<KubeRequestLabels, Counter>::default();
        registry.register(
            "kube_requests",
            "Requests sent to the Kubernetes API server, by verb (get, list, watch, create, update, patch, delete) and resource (with its subresource)",
            kube_requests.clone(),
        );
        let objects = Family::<ObjectLabels, Gauge>::default();
        registry.register(
            "objects",
            "Objects by controller and the kstatus condition that is True (Ready, Reconciling, Stalled, Unknown)",
            objects.clone(),
        );
        Self {
            objects,
            object_states: std::sync::Mutex::default(),
            registry,
            reconciles,
            failures,
            reconcile_duration,
            vendor_requests,
            vendor_latency,
            kube_requests,
        }
    }
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

/// The verb and resource of a request to the Kubernetes API, from its method
/// and path: `("list", "secrets")`, `("patch", "databaseprojects/status")`.
/// Paths that are not resource paths (`/version`) count as their first segment.
pub fn kube_request_kind(method: &http::Method, uri: &http::Uri) -> (&'static str, String) {
    let segments: Vec<&str> = uri.path().split('/').filter(|s| !s.is_empty()).collect();
    // /api/v1/... or /apis/<group>/<version>/...
    let rest = match segments.as_slice() {
        ["api", _, rest @ ..] => rest,
        ["apis", _, _, rest @ ..] => rest,
        [first, ..] => return (verb_of(method, true, false), (*first).to_string()),
        [] => return (verb_of(method, true, false), String::new()),
    };
    // namespaces/<ns>/<resource>/...: the namespace is only a scope.
    let rest = match rest {
        ["namespaces", _, resource, tail @ ..] => {
            let mut v = vec![*resource];
            v.extend_from_slice(tail);
            v
        }
        other => other.to_vec(),
    };
    let named = rest.len() >= 2;
    let resource = match rest.as_slice() {
        [resource, _, subresource, ..] => format!("{resource}/{subresource}"),
        [resource, ..] => (*resource).to_string(),
        [] => String::new(),
    };
    let watch = uri
        .query()
        .is_some_and(|q| q.split('&').any(|p| p == "watch=true" || p == "watch=1"));
    (verb_of(method, named, watch), resource)
}

fn verb_of(method: &http::Method, named: bool, watch: bool) -> &'static str {
    match *method {
        http::Method::GET if watch => "watch",
        http::Method::GET if named => "get",
        http::Method::GET => "list",
        http::Method::POST => "create",
        http::Method::PUT => "update",
        http::Method::PATCH => "patch",
        http::Method::DELETE => "delete",
        _ => "other",
    }
}

impl Metrics {
    /// One reconciliation of `controller` finished after `elapsed`.
    pub fn observe_reconcile(&self, controller: &str, elapsed: Duration) {
        let labels = ControllerLabels {
            controller: controller.to_string(),
        };
        self.reconciles.get_or_create(&labels).inc();
        self.reconcile_duration
            .get_or_create(&labels)
            .observe(elapsed.as_secs_f64());
    }

    /// One reconciliation of `controller` failed with an error of `category`.
    pub fn observe_failure(&self, controller: &str, category: &str) {
        self.failures
            .get_or_create(&FailureLabels {
                controller: controller.to_string(),
                category: category.to_string(),
            })
            .inc();
    }

    /// One vendor request finished with `status` after `elapsed`.
    pub fn observe_vendor_request(
        &self,
        api: ProviderApi,
        operation: &str,
        status: &str,
        elapsed: Duration,
    ) {
        self.vendor_requests
            .get_or_create(&VendorRequestLabels {
                api: api.as_str().to_string(),
                operation: operation.to_string(),
                status: status.to_string(),
            })
            .inc();
        self.vendor_latency
            .get_or_create(&VendorLatencyLabels {
                api: api.as_str().to_string(),
                operation: operation.to_string(),
            })
            .observe(elapsed.as_secs_f64());
    }

    /// One request to the Kubernetes API server.
    pub fn observe_kube_request(&self, method: &http::Method, uri: &http::Uri) {
        let (verb, resource) = kube_request_kind(method, uri);
        self.kube_requests
            .get_or_create(&KubeRequestLabels { verb, resource })
            .inc();
    }

    /// Counts object `key` of `controller` under `condition` (`None`: it is gone).
    pub fn observe_object(&self, controller: &str, key: &str, condition: Option<&'static str>) {
        let mut states = self.object_states.lock().unwrap_or_else(|p| p.into_inner());
        let id = (controller.to_string(), key.to_string());
        let previous = match condition {
            Some(condition) => states.insert(id, condition),
            None => states.remove(&id),
        };
        if previous == condition {
            return;
        }
        let gauge = |condition: &str| {
            self.objects.get_or_create(&ObjectLabels {
                controller: controller.to_string(),
                condition: condition.to_string(),
            })
        };
        if let Some(previous) = previous {
            gauge(previous).dec();
        }
        if let Some(condition) = condition {
            gauge(condition).inc();
        }
    }

    /// The OpenMetrics text exposition of every metric.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::kube_request_kind;
    use http::{Method, Uri};

    fn kind(method: Method, uri: &str) -> (&'static str, String) {
        kube_request_kind(&method, &uri.parse::<Uri>().unwrap())
    }

    #[test]
    fn requests_are_named_by_verb_and_resource() {
        let cases = [
            (
                Method::GET,
                "/api/v1/namespaces/a/secrets/s",
                "get",
                "secrets",
            ),
            (
                Method::GET,
                "/api/v1/secrets?labelSelector=x",
                "list",
                "secrets",
            ),
            (
                Method::GET,
                "/api/v1/namespaces/a/secrets?watch=true&resourceVersion=5",
                "watch",
                "secrets",
            ),
            (
                Method::POST,
                "/api/v1/namespaces/a/secrets?fieldManager=dbops",
                "create",
                "secrets",
            ),
            (
                Method::PATCH,
                "/apis/dbops.dev/v1alpha1/namespaces/a/databaseprojects/p/status",
                "patch",
                "databaseprojects/status",
            ),
            (
                Method::PATCH,
                "/apis/dbops.dev/v1alpha1/namespaces/a/databaseprojects/p",
                "patch",
                "databaseprojects",
            ),
            (
                Method::PUT,
                "/apis/dbops.dev/v1alpha1/databaseproviders/d",
                "update",
                "databaseproviders",
            ),
            (
                Method::DELETE,
                "/api/v1/namespaces/a",
                "delete",
                "namespaces",
            ),
            (Method::GET, "/api/v1/namespaces", "list", "namespaces"),
            (
                Method::POST,
                "/apis/events.k8s.io/v1/namespaces/a/events",
                "create",
                "events",
            ),
            (Method::GET, "/version", "get", "version"),
        ];
        for (method, uri, verb, resource) in cases {
            assert_eq!(kind(method, uri), (verb, resource.to_string()), "{uri}");
        }
    }
}
