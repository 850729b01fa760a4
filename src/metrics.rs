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
        }
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
