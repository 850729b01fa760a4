use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use k8s_openapi::jiff::Timestamp;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A moment the operator recorded: RFC 3339 on the wire (full precision),
/// a [`Timestamp`] in code.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Rfc3339(pub Timestamp);

impl Rfc3339 {
    pub fn now() -> Self {
        Self(Timestamp::now())
    }
}

impl std::fmt::Display for Rfc3339 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl Serialize for Rfc3339 {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Rfc3339 {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse::<Timestamp>()
            .map(Self)
            .map_err(|e| serde::de::Error::custom(format!("not an RFC 3339 time: {e}")))
    }
}

impl JsonSchema for Rfc3339 {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Rfc3339".into()
    }
    fn inline_schema() -> bool {
        true
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({ "type": "string", "format": "date-time", "maxLength": 64 })
    }
}

/// The name of the `DatabaseProvider` used when `providerRef` is left out.
pub const DEFAULT_PROVIDER_NAME: &str = "default";

/// A reference to a cluster-scoped `DatabaseProvider`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProviderRef {
    /// Name of the `DatabaseProvider` (cluster-scoped) whose API and credentials are used.
    #[serde(default = "default_provider_name")]
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}

fn default_provider_name() -> String {
    DEFAULT_PROVIDER_NAME.to_string()
}

impl Default for ProviderRef {
    fn default() -> Self {
        Self {
            name: default_provider_name(),
        }
    }
}

/// A reference to another object in the same namespace, by name.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LocalObjectRef {
    /// Name of the object, in the same namespace as this resource.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}

/// What happens at the vendor when this resource is deleted.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum DeletionPolicy {
    /// Delete the vendor object; the finalizer is removed only once the vendor confirms.
    #[default]
    Delete,
    /// Leave the vendor object in place; only the Kubernetes resource goes away.
    Retain,
}

/// The deletion policy in force: `spec.deletionPolicy` where it is set, else
/// `Retain` for a resource that adopts an existing vendor object
/// (`spec.externalId`: dbops did not make it, so it does not delete it unless
/// told to) and `Delete` for one that creates its own.
pub fn effective_deletion_policy(spec: Option<DeletionPolicy>, adopts: bool) -> DeletionPolicy {
    match (spec, adopts) {
        (Some(policy), _) => policy,
        (None, true) => DeletionPolicy::Retain,
        (None, false) => DeletionPolicy::Delete,
    }
}

/// Where the connection Secret is written, and what it holds.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, kube::KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConnectionSecretTarget {
    /// Name of the Secret, in the same namespace as this resource. The operator
    /// owns it (ownerReference) and writes the keys of `preset` and `keys`.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// The set of keys to write (default `default`): `default` (`uri`, `host`,
    /// `port`, `database`, `username`, `password`, and `pooledUri` where the
    /// vendor pools), `libpq` (`PGHOST`, `PGPORT`, `PGUSER`, `PGPASSWORD`,
    /// `PGDATABASE`, `PGSSLMODE`, `DATABASE_URL`), `prisma` (`DATABASE_URL`,
    /// pooled where the vendor pools, and `DIRECT_URL`), `servicebinding`
    /// (the Service Binding spec's keys, Secret type
    /// `servicebinding.io/postgresql`), `jdbc` (`default` plus `jdbc-uri`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preset: Option<SecretPreset>,
    /// More keys, or the preset's keys written differently: a key name to a
    /// template over the connection fields, in Jinja syntax, e.g.
    /// `DB_URL: "{{ pooledUri }}"`. The fields are `uri`, `directUri`,
    /// `pooledUri` (the direct URI where the vendor has no pooler),
    /// `hasPooler`, `host`, `port`, `database`, `username`, `password`,
    /// `sslmode`, `provider` and `jdbcUri`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = 64, "additionalProperties" = {"type": "string", "maxLength": 4096}))]
    #[x_kube(validation = Rule::new("self.all(k, k.matches('^[-._a-zA-Z0-9]{1,253}$'))").message("keys: a Secret key has only letters, digits, '-', '_' and '.' (at most 253)"))]
    #[x_kube(validation = Rule::new("self.all(k, !self[k].matches('[{][{]-?\\\\s*[.]'))").message("keys: templates use Jinja syntax, {{ pooledUri }}, not Go's {{ .pooledUri }}"))]
    pub keys: BTreeMap<String, String>,
    /// Labels for the Secret (for example for a config reloader), kept in sync.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Annotations for the Secret (for example `reloader.stakater.com/match`), kept in sync.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// A set of keys for the connection Secret.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum SecretPreset {
    /// `uri`, `host`, `port`, `database`, `username`, `password`, `pooledUri`.
    #[default]
    Default,
    /// libpq's environment: `PGHOST`, `PGPORT`, `PGUSER`, `PGPASSWORD`,
    /// `PGDATABASE`, `PGSSLMODE`, and `DATABASE_URL`.
    Libpq,
    /// Prisma: `DATABASE_URL` (pooled where the vendor pools) and `DIRECT_URL`.
    Prisma,
    /// The Service Binding spec's `postgresql` type.
    #[serde(rename = "servicebinding")]
    ServiceBinding,
    /// `default` plus `jdbc-uri`.
    Jdbc,
}

/// Where a resource's connection Secret is, as the Service Binding spec reads
/// it (`.status.binding.name`).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
pub struct Binding {
    /// The Secret's name.
    pub name: String,
}

/// Annotation that requests one credential rotation: set it to a new value
/// (e.g. a timestamp) and the operator rotates the database password once.
pub const ROTATE_ANNOTATION: &str = "dbops.dev/rotate-credentials";

/// Annotation that requests one reset of a `DatabaseBranch` from its parent:
/// set it to a new value and the branch is copied again, once.
pub const RESET_ANNOTATION: &str = "dbops.dev/reset-from-parent";

/// The durations the operator accepts (`1h30m`, `90s`, `720h`): Go syntax
/// without a sign, at most four parts of at most six integer digits each.
/// The CRDs enforce it at admission; decoding enforces it again (with
/// [`MIN_INTERVAL`]), because an unbounded value would overflow.
pub const DURATION_PATTERN: &str = r"^([0-9]{1,6}(\.[0-9]{1,9})?(ns|us|µs|ms|s|m|h)){1,4}$";
/// Longest duration string accepted.
pub const DURATION_MAX_LENGTH: usize = 64;
/// Shortest interval for periodic work (tests, rotations): shorter ones would
/// turn into a loop of vendor calls.
pub const MIN_INTERVAL: std::time::Duration = std::time::Duration::from_secs(60);

/// Serde helpers for optional interval fields: refuse, instead of overflowing
/// or spinning on, values the CRD pattern and minimum do not allow.
pub mod interval {
    use serde::{Deserialize, Deserializer};

    static PATTERN: std::sync::LazyLock<Option<regex::Regex>> =
        std::sync::LazyLock::new(|| regex::Regex::new(super::DURATION_PATTERN).ok());

    /// Parses `s` as an interval of at least [`super::MIN_INTERVAL`].
    pub fn parse(s: &str) -> Result<kube::core::Duration, String> {
        let well_formed = s.len() <= super::DURATION_MAX_LENGTH
            && PATTERN.as_ref().is_some_and(|p| p.is_match(s));
        if !well_formed {
            return Err("expected a duration such as 90s, 45m or 1h30m".to_string());
        }
        let duration: kube::core::Duration = s
            .parse()
            .map_err(|_| "expected a duration such as 90s, 45m or 1h30m".to_string())?;
        if std::time::Duration::from(duration) < super::MIN_INTERVAL {
            return Err("must be at least 1m".to_string());
        }
        Ok(duration)
    }

    pub fn deserialize<'de, D>(deserializer: D) -> Result<Option<kube::core::Duration>, D::Error>
    where
        D: Deserializer<'de>,
    {
        Option::<String>::deserialize(deserializer)?
            .map(|s| parse(&s).map_err(serde::de::Error::custom))
            .transpose()
    }
}

/// Declarative database password rotation.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, kube::KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct CredentialRotationSpec {
    /// Rotate the database password this often (e.g. `720h`, at least `1m`).
    /// Leave out to rotate only on request (annotation `dbops.dev/rotate-credentials`).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "interval::deserialize"
    )]
    #[schemars(regex(pattern = DURATION_PATTERN), length(max = 64))]
    #[x_kube(validation = Rule::new("duration(self) >= duration('1m')").message("interval must be at least 1m"))]
    pub interval: Option<kube::core::Duration>,
}

/// Where credential rotation stands.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CredentialRotationStatus {
    /// When the vendor last confirmed new credentials (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_rotated_at: Option<Rfc3339>,
    /// The `dbops.dev/rotate-credentials` value last acted on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handled_request: Option<String>,
    /// The vendor's handle of a rotation still in progress.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending_job: Option<String>,
    /// When the rotation in progress started (RFC 3339): a job that runs too
    /// long is given up, keeping the current credentials.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending_since: Option<Rfc3339>,
}

/// Standard `metav1.Condition` list, keyed on `type` (a list-map, as kstatus expects).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(transparent)]
#[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
pub struct Conditions(pub Vec<Condition>);

impl Conditions {
    /// The condition of the given type, if present.
    pub fn get(&self, type_: &str) -> Option<&Condition> {
        self.0.iter().find(|c| c.type_ == type_)
    }

    /// Whether the condition of the given type is present with status `True`.
    pub fn is_true(&self, type_: &str) -> bool {
        self.get(type_).is_some_and(|c| c.status == "True")
    }
}
