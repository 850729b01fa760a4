use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::{Conditions, DeletionPolicy, LocalObjectRef, ProviderRef, Rfc3339};

/// A bring-your-own vendor credential registered with the infrai BYOK API.
///
/// The credential values come from a Secret in the same namespace and are never
/// copied into status, Events or logs. When the Secret changes, the operator
/// stages the new key, checks the vendor's probe, and only then commits it.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "dbops.dev",
    doc = "A bring-your-own vendor credential registered with the infrai BYOK API, rotated without downtime.",
    version = "v1alpha1",
    kind = "ByokCredential",
    namespaced,
    status = "ByokCredentialStatus",
    shortname = "byok",
    category = "dbops",
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = r#".status.conditions[?(@.type=="Ready")].status"#
    ),
    printcolumn(name = "State", type_ = "string", json_path = ".status.state"),
    printcolumn(name = "BYOK ID", type_ = "string", json_path = ".status.byokId"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct ByokCredentialSpec {
    /// The infrai `DatabaseProvider` to register the credential with. Defaults to `default`.
    #[serde(default)]
    #[x_kube(validation = Rule::new("self == oldSelf").message("providerRef is immutable"))]
    pub provider_ref: ProviderRef,

    /// The BYOK provider id at infrai, e.g. `neon`. Immutable.
    #[schemars(length(min = 1, max = 64))]
    #[x_kube(validation = Rule::new("self == oldSelf").message("vendor is immutable: register a new ByokCredential instead"))]
    pub vendor: String,

    /// Your label for the credential.
    #[schemars(length(min = 1, max = 128))]
    pub alias: String,

    /// A Secret in the same namespace whose keys are the credential fields (e.g. `api_key`).
    pub credentials_secret_ref: LocalObjectRef,

    /// Whether routing may use this credential. Defaults to true.
    #[serde(default = "default_true")]
    pub enabled: bool,

    /// Capabilities or modules this credential serves. The spec is the truth:
    /// bindings missing at the vendor are added, extra ones removed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub bindings: Vec<ByokBinding>,

    /// Spend and call limits for this credential.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quota: Option<ByokQuota>,

    /// How often to run the vendor's connectivity test, e.g. `1h` (at least `1m`).
    /// Tests also run after every change.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "super::common::interval::deserialize"
    )]
    #[schemars(regex(pattern = super::common::DURATION_PATTERN), length(max = 64))]
    #[x_kube(validation = Rule::new("duration(self) >= duration('1m')").message("testInterval must be at least 1m"))]
    pub test_interval: Option<kube::core::Duration>,

    /// `Delete` (default) revokes the credential at the vendor; `Retain` leaves it registered.
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,
}

fn default_true() -> bool {
    true
}

/// One routing binding of a BYOK credential.
#[derive(
    Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, KubeSchema,
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.capability) || has(self.module)").message("a binding needs a capability or a module"))]
pub struct ByokBinding {
    /// A capability such as `db.project.create`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 128))]
    pub capability: Option<String>,
    /// A module such as `db`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 128))]
    pub module: Option<String>,
    /// Optionally pin a model inside the binding's scope.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 128))]
    pub model: Option<String>,
}

/// Spend and call limits of a BYOK credential.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ByokQuota {
    /// Spend limit in US dollars (at least 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub spend_limit_usd: Option<f64>,
    /// Call-count limit (at least 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub call_limit: Option<u64>,
    /// Reset window: `1d`, `7d`, `30d`, `mtd` or `ytd`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<QuotaWindow>,
}

/// Quota reset window.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum QuotaWindow {
    /// One day.
    #[serde(rename = "1d")]
    Day,
    /// Seven days.
    #[serde(rename = "7d")]
    Week,
    /// Thirty days.
    #[serde(rename = "30d")]
    Month,
    /// Month to date.
    #[serde(rename = "mtd")]
    MonthToDate,
    /// Year to date.
    #[serde(rename = "ytd")]
    YearToDate,
}

/// Observed state of a `ByokCredential`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ByokCredentialStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready`, `Reconciling`, `Stalled` and `RotationFailed`.
    #[serde(default)]
    pub conditions: Conditions,
    /// The vendor's BYOK credential id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub byok_id: Option<String>,
    /// The vendor's state of the credential (e.g. `active`, `disabled`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    /// The last connectivity test.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_test: Option<ByokTestResult>,
    /// Usage the vendor reports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<ByokUsage>,
    /// Salted SHA-256 fingerprint of each credential field now in force at the
    /// vendor (never the values). A Secret change is detected by comparing them,
    /// so a restart never rotates again.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub credential_fingerprints: std::collections::BTreeMap<String, String>,
    /// Fingerprint of Secret content whose rotation failed; it is not retried
    /// until the Secret changes again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rejected_credentials_fingerprint: Option<String>,
    /// The quota last applied at the vendor (the vendor cannot be asked for it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub applied_quota: Option<ByokQuota>,
    /// When the key was last rotated (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_rotated_at: Option<Rfc3339>,
    /// Set just before the register call is sent (see `DatabaseProject`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub create_requested: bool,
}

/// Result of a BYOK connectivity test. Error text never carries credential values.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ByokTestResult {
    /// Whether the vendor accepted the credential.
    pub ok: bool,
    /// Round-trip latency the vendor measured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<u64>,
    /// The vendor's error text, if the test failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// When the test ran (RFC 3339).
    pub tested_at: Rfc3339,
}

/// BYOK usage for the current period.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ByokUsage {
    /// Spend in US dollars.
    pub spend_usd: f64,
    /// Number of calls.
    pub call_count: u64,
    /// The period the numbers cover.
    pub period: String,
}
