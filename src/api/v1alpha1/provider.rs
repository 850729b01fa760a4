use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::Conditions;

/// A vendor API account: which API to call, where, and with which credentials.
///
/// Cluster-scoped and owned by the platform team. Namespaced dbops resources
/// name it in `spec.providerRef.name` (default `default`).
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "dbops.dev",
    doc = "A vendor API account (endpoint and API key Secret) that dbops resources provision through.",
    version = "v1alpha1",
    kind = "DatabaseProvider",
    status = "DatabaseProviderStatus",
    shortname = "dbprov",
    category = "dbops",
    printcolumn(name = "API", type_ = "string", json_path = ".spec.api"),
    printcolumn(name = "Endpoint", type_ = "string", json_path = ".spec.endpoint"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new(ENDPOINT_RULE).message("spec.endpoint is required for this api: its document gives no public endpoint to default to"))]
pub struct DatabaseProviderSpec {
    /// Which vendor API this provider speaks.
    pub api: ProviderApi,

    /// Base URL of the API, e.g. `https://api.infrai.cc`. Defaults to the public
    /// endpoint the vendor's document gives (infrai, DB9); required for the
    /// APIs whose document gives none (Supabase, CapyDB). Point it at `http://127.0.0.1:8470/infrai` (the emulator
    /// built into `dbops run`) for local development.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 2048))]
    pub endpoint: Option<String>,

    /// The Secret holding the API key.
    pub credentials_secret_ref: SecretKeySelector,

    /// Timeout for one vendor request, in seconds. Defaults to 30.
    #[serde(default = "default_request_timeout_seconds")]
    #[schemars(range(min = 1, max = 300))]
    pub request_timeout_seconds: u32,

    /// Settings only the Supabase Management API uses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub supabase: Option<SupabaseSettings>,

    /// Settings only the `postgres` API uses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub postgres: Option<PostgresSettings>,

    /// Account-level BYOK routing policy (infrai only), reconciled by the operator.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub byok_policy: Option<ByokPolicySpec>,

    /// Upper bound on the request rate the operator sends to this provider.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_budget: Option<RequestBudget>,

    /// Which namespaces may use this provider: `Same` (the default) admits
    /// only the namespace of `credentialsSecretRef`, `All` every namespace,
    /// `Selector` the namespaces whose labels match `selector`. A resource
    /// in any other namespace goes `Stalled` with reason `ProviderNotAllowed`
    /// and nothing is sent to the vendor for it.
    #[serde(default)]
    pub allowed_namespaces: AllowedNamespaces,

    /// Who may take over existing vendor objects through this provider
    /// (`spec.externalId`, `restoreFrom.snapshotId`, a raw `fromBranch`).
    #[serde(default)]
    pub adoption: AdoptionPolicy,
}

/// A set of namespaces, in the shape of Gateway API's `allowedRoutes.namespaces`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("self.from != 'Selector' || has(self.selector)").message("selector is required with from: Selector"),
    validation = Rule::new("self.from == 'Selector' || !has(self.selector)").message("selector is read only with from: Selector; set from: Selector or remove selector")
)]
pub struct AllowedNamespaces {
    /// `Same` (default): only the namespace of the provider's
    /// `credentialsSecretRef`. `All`: every namespace. `Selector`: the
    /// namespaces whose labels match `selector`.
    #[serde(default)]
    pub from: NamespacesFrom,
    /// A label selector on namespaces; required with `from: Selector`
    /// (`{}` matches every namespace).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector>,
}

/// Where the admitted namespaces come from.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum NamespacesFrom {
    /// Only the namespace of the provider's `credentialsSecretRef`.
    #[default]
    Same,
    /// Every namespace.
    All,
    /// The namespaces whose labels match `selector`.
    Selector,
}

/// Who may adopt existing vendor objects through a provider.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AdoptionPolicy {
    /// The namespaces whose resources may name existing vendor objects
    /// (`spec.externalId`, `restoreFrom.snapshotId`, a raw `fromBranch`).
    /// Same shape and default (`Same`) as `spec.allowedNamespaces`; a
    /// namespace must be admitted by both. Elsewhere such a resource goes
    /// `Stalled` with reason `AdoptionNotAllowed`.
    #[serde(default)]
    pub allowed_namespaces: AllowedNamespaces,
}

/// The CEL rule that requires `endpoint` for every API without a documented
/// public endpoint (a test keeps its list equal to the vendor registry's).
pub const ENDPOINT_RULE: &str = "self.api in ['infrai', 'db9'] || has(self.endpoint)";

fn default_request_timeout_seconds() -> u32 {
    30
}

/// The vendor APIs dbops can drive.
#[derive(
    Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema, strum::EnumIter,
)]
#[serde(rename_all = "lowercase")]
pub enum ProviderApi {
    /// infrai routing API: projects, branches and snapshots on Neon, Supabase or PlanetScale, plus BYOK.
    Infrai,
    /// Supabase Management API.
    Supabase,
    /// DB9 customer API.
    Db9,
    /// CapyDB API (connections and credential rotation).
    Capydb,
    /// A PostgreSQL server of your own: databases and roles on it, with
    /// branches and snapshots as copies (`spec.endpoint` is its
    /// `postgres://` admin URL, the admin password is in the Secret).
    Postgres,
}

impl ProviderApi {
    /// The lowercase name used in YAML, metrics and messages.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Infrai => "infrai",
            Self::Supabase => "supabase",
            Self::Db9 => "db9",
            Self::Capydb => "capydb",
            Self::Postgres => "postgres",
        }
    }
}

impl std::fmt::Display for ProviderApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A key in a Secret in a given namespace.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeySelector {
    /// Name of the Secret.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Namespace of the Secret (a `DatabaseProvider` is cluster-scoped, so it must be named).
    #[schemars(length(min = 1, max = 63))]
    pub namespace: String,
    /// Key in the Secret holding the API key. Defaults to `apiKey`.
    #[serde(default = "default_api_key_key")]
    #[schemars(length(min = 1, max = 253))]
    pub key: String,
}

fn default_api_key_key() -> String {
    "apiKey".to_string()
}

/// Supabase Management API settings.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SupabaseSettings {
    /// The organization slug new projects are created in.
    #[schemars(length(min = 1, max = 128))]
    pub organization_slug: String,
}

/// `postgres` API settings.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PostgresSettings {
    /// How branches and snapshots copy their source database.
    #[serde(default)]
    pub copy_strategy: CopyStrategy,
    /// `host:port` the connection Secrets name, when applications reach the
    /// server at another address than the operator does (e.g. the operator
    /// runs outside the cluster). Defaults to the endpoint's host and port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 1, max = 261),
        regex(pattern = r"^[^\s:/@]+(:[0-9]{1,5})?$")
    )]
    pub connection_host: Option<String>,
}

/// How a branch or snapshot copies its source database.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum CopyStrategy {
    /// `CREATE DATABASE … TEMPLATE source`: a file-level copy, fast and
    /// complete, but PostgreSQL allows it only while nobody else is connected
    /// to the source, so the operator ends the source's other sessions
    /// first. Its clients are disconnected once per copy and must reconnect.
    #[default]
    Template,
    /// A logical copy inside one repeatable-read transaction on the source
    /// (schemas, types, sequences, tables, data through `COPY`, constraints,
    /// indexes, views, functions, triggers). Never disconnects anyone; slower,
    /// and limited to those object kinds.
    Logical,
}

/// infrai BYOK routing policy for the whole account (or a scope of it).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ByokPolicySpec {
    /// `byok_only` never falls back to the shared pool; `byok_then_pool` falls back when BYOK fails.
    pub mode: ByokPolicyMode,
    /// Narrow the policy to one capability or module; account-wide when left out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<ByokPolicyScope>,
}

/// BYOK routing policy mode.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum ByokPolicyMode {
    /// Never fall back to the shared pool.
    #[serde(rename = "byok_only")]
    ByokOnly,
    /// Fall back to the shared pool when the BYOK credential fails.
    #[serde(rename = "byok_then_pool")]
    ByokThenPool,
}

/// Scope of a BYOK routing policy.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ByokPolicyScope {
    /// A capability such as `db.project.create`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 128))]
    pub capability: Option<String>,
    /// A module such as `db`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 128))]
    pub module: Option<String>,
}

/// A client-side request budget (token bucket).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RequestBudget {
    /// Sustained requests per second the operator may send to this provider.
    #[schemars(range(min = 1, max = 100000))]
    pub requests_per_second: u32,
    /// Burst size above the sustained rate. Defaults to `requestsPerSecond`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 100000))]
    pub burst: Option<u32>,
}

/// Observed state of a `DatabaseProvider`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DatabaseProviderStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready`, `Reconciling` and `Stalled`, kstatus style.
    #[serde(default)]
    pub conditions: Conditions,
}
