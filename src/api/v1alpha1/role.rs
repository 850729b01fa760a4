//! `DatabaseRole`: a least-privilege login role in the database of a
//! `DatabaseProject` or `DatabaseBranch`, with grants declared as data.
//!
//! The controller is `controllers/kinds/role.rs`; the grants planner is
//! `controllers/pipeline/grants.rs`.

use std::collections::BTreeMap;

use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use super::common::{
    Binding, Conditions, ConnectionSecretTarget, DURATION_PATTERN, DeletionPolicy, LocalObjectRef,
    Rfc3339, interval,
};

/// The longest role name: PostgreSQL's 63-byte identifiers, less the `_a`
/// and `_b` of the two members an `Alternate` rotation makes.
pub const MAX_ROLE_NAME: usize = 61;

/// Role names dbops accepts: lowercase, a letter or `_` first, no `pg_`
/// prefix (PostgreSQL reserves it). Lowercase keeps the name the same
/// whether a client quotes it or not.
pub const ROLE_NAME_PATTERN: &str = "^[a-z_][a-z0-9_]{0,60}$";

/// Admission: [`ROLE_NAME_PATTERN`] (as CEL too, so the message says what is wrong).
fn role_name_rule() -> kube::core::Rule {
    kube::core::Rule::new(format!("self.matches('{ROLE_NAME_PATTERN}')")).message(
        kube::core::Message::Message(
            "roleName must be 1 to 61 lowercase letters, digits and _, starting with a letter or _"
                .to_string(),
        ),
    )
}

/// Schema and table names: 1 to 63 characters without control characters
/// (they are always sent quoted, so any other character is safe).
pub const OBJECT_NAME_PATTERN: &str = "^[^\\x00-\\x1f\\x7f]{1,63}$";

/// A privilege a grant can give.
#[derive(
    Serialize,
    Deserialize,
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    schemars::JsonSchema,
    strum::EnumIter,
    strum::Display,
)]
#[serde(rename_all = "UPPERCASE")]
#[strum(serialize_all = "UPPERCASE")]
pub enum Privilege {
    // Table privileges.
    Select,
    Insert,
    Update,
    Delete,
    Truncate,
    References,
    Trigger,
    // Schema privileges.
    Usage,
    Create,
}

impl Privilege {
    /// Whether this is a privilege on a schema (`USAGE`, `CREATE`) rather
    /// than on its tables.
    pub fn on_schema(self) -> bool {
        matches!(self, Self::Usage | Self::Create)
    }
}

/// Privileges on one schema, or on tables in it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("!has(self.tables) || self.privileges.exists(p, !(p in ['USAGE', 'CREATE']))").message("tables needs at least one table privilege (SELECT, INSERT, UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER)"),
    validation = Rule::new("!has(self.futureTables) || !self.futureTables || self.privileges.exists(p, !(p in ['USAGE', 'CREATE']))").message("futureTables needs at least one table privilege"),
    validation = Rule::new("!has(self.futureTables) || !self.futureTables || !has(self.tables)").message("futureTables applies to all tables of the schema: leave out tables")
)]
pub struct Grant {
    /// The schema. System schemas (`pg_*`, `information_schema`) are refused:
    /// a grant there could expose the server's own catalogs.
    #[schemars(regex(pattern = OBJECT_NAME_PATTERN), length(min = 1, max = 63))]
    #[x_kube(validation = Rule::new("!self.startsWith('pg_') && self != 'information_schema'").message("system schemas (pg_*, information_schema) cannot be granted on"))]
    pub schema: String,
    /// Schema privileges (`USAGE`, `CREATE`) apply to the schema; table
    /// privileges (`SELECT`, `INSERT`, `UPDATE`, `DELETE`, `TRUNCATE`,
    /// `REFERENCES`, `TRIGGER`) to `tables`, or to every table in the
    /// schema when `tables` is left out.
    #[schemars(length(min = 1, max = 9))]
    pub privileges: Vec<Privilege>,
    /// The tables the table privileges apply to; every table in the schema
    /// (as it is at each pass) when left out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 256), inner(regex(pattern = OBJECT_NAME_PATTERN), length(min = 1, max = 63)))]
    pub tables: Option<Vec<String>>,
    /// Also give the table privileges on tables created later, by the
    /// database's owner (`ALTER DEFAULT PRIVILEGES`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub future_tables: Option<bool>,
}

/// How credentials are rotated.
#[derive(
    Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, schemars::JsonSchema,
)]
pub enum RotationStrategy {
    /// Change the password of the one login role.
    #[default]
    InPlace,
    /// Two login roles `<name>_a` and `<name>_b` share the grants through the
    /// NOLOGIN group role `<name>`; a rotation switches the Secret to the
    /// idle one, then disables the other after the grace period.
    Alternate,
}

/// A least-privilege login role in the database of a `DatabaseProject` or
/// `DatabaseBranch` of the same namespace, holding exactly the privileges in
/// `grants`, with its own connection Secret.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[kube(
    group = "dbops.dev",
    doc = "A least-privilege database role with grants declared as data, and its own connection Secret.",
    version = "v1alpha1",
    kind = "DatabaseRole",
    namespaced,
    status = "DatabaseRoleStatus",
    shortname = "dbrole",
    category = "dbops",
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = r#".status.conditions[?(@.type=="Ready")].status"#
    ),
    printcolumn(
        name = "Reason",
        type_ = "string",
        json_path = r#".status.conditions[?(@.type=="Ready")].reason"#
    ),
    printcolumn(name = "Role", type_ = "string", json_path = ".status.roleName"),
    printcolumn(name = "Login", type_ = "string", json_path = ".status.activeLogin"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("has(self.projectRef) != has(self.branchRef)").message("set exactly one of projectRef and branchRef"),
    validation = Rule::new("has(self.roleName) == has(oldSelf.roleName)").message("roleName is immutable"),
    validation = Rule::new("(has(self.credentialRotation) && has(self.credentialRotation.strategy) ? self.credentialRotation.strategy : 'InPlace') == (has(oldSelf.credentialRotation) && has(oldSelf.credentialRotation.strategy) ? oldSelf.credentialRotation.strategy : 'InPlace')").message("credentialRotation.strategy is immutable: create a new DatabaseRole to change it")
)]
pub struct DatabaseRoleSpec {
    /// The `DatabaseProject` (same namespace) whose database the role is in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self == oldSelf").message("projectRef is immutable"))]
    pub project_ref: Option<LocalObjectRef>,
    /// The `DatabaseBranch` (same namespace) whose database the role is in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self == oldSelf").message("branchRef is immutable"))]
    pub branch_ref: Option<LocalObjectRef>,
    /// The role's name in the database. Generated from the namespace, name
    /// and UID when left out. Immutable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = ROLE_NAME_PATTERN), length(min = 1, max = 61))]
    #[x_kube(
        validation = Rule::new("self == oldSelf").message("roleName is immutable"),
        validation = Rule::new("!self.startsWith('pg_')").message("roleName must not start with pg_ (PostgreSQL reserves it)"),
        validation = role_name_rule()
    )]
    pub role_name: Option<String>,
    /// Most concurrent connections of the role (each member, with `Alternate`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 10000))]
    pub connection_limit: Option<u32>,
    /// Exactly the privileges the role holds: what is removed here is revoked.
    #[serde(default)]
    #[schemars(length(max = 64))]
    pub grants: Vec<Grant>,
    /// The Secret to write the role's credentials into, with the database's
    /// host, port and name. Defaults to `<name>-connection`. The passwords
    /// themselves are kept in the owned Secret `<that name>-logins`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub write_connection_secret_to: Option<ConnectionSecretTarget>,
    /// How and when the role's password is rotated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential_rotation: Option<RoleRotationSpec>,
    /// What happens to the role in the database when this resource is
    /// deleted. Defaults to `Delete`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deletion_policy: Option<DeletionPolicy>,
}

impl DatabaseRoleSpec {
    /// The rotation strategy in force (`InPlace` unless the spec says otherwise).
    pub fn strategy(&self) -> RotationStrategy {
        self.credential_rotation
            .as_ref()
            .and_then(|r| r.strategy)
            .unwrap_or_default()
    }

    /// The deletion policy in force (`Delete` unless the spec says otherwise).
    pub fn effective_deletion_policy(&self) -> DeletionPolicy {
        self.deletion_policy.unwrap_or(DeletionPolicy::Delete)
    }
}

/// Serde helpers for a grace period: a duration, zero allowed.
pub mod grace {
    use serde::{Deserialize, Deserializer};

    /// Longest grace period: a day.
    pub const MAX: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

    pub fn deserialize<'de, D>(deserializer: D) -> Result<Option<kube::core::Duration>, D::Error>
    where
        D: Deserializer<'de>,
    {
        let Some(raw) = Option::<String>::deserialize(deserializer)? else {
            return Ok(None);
        };
        let duration: kube::core::Duration = raw
            .parse()
            .map_err(|_| serde::de::Error::custom("expected a duration such as 30s, 5m or 1h"))?;
        let std = std::time::Duration::from(duration);
        if std > MAX || raw.starts_with('-') {
            return Err(serde::de::Error::custom("must be between 0s and 24h"));
        }
        Ok(Some(duration))
    }
}

/// How a `DatabaseRole`'s password is rotated.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct RoleRotationSpec {
    /// Rotate this often (e.g. `720h`, at least `1m`). Leave out to rotate
    /// only on request (annotation `dbops.dev/rotate-credentials`).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "interval::deserialize"
    )]
    #[schemars(regex(pattern = DURATION_PATTERN), length(max = 64))]
    #[x_kube(validation = Rule::new("duration(self) >= duration('1m')").message("interval must be at least 1m"))]
    pub interval: Option<kube::core::Duration>,
    /// `InPlace` (default) changes the password of the one login role;
    /// `Alternate` keeps two login roles and switches between them, so
    /// connections never fail. Immutable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strategy: Option<RotationStrategy>,
    /// `Alternate` only: how long the previous login keeps working after the
    /// Secret was switched (and the `rollout` finished). Default `5m`, at most `24h`.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "grace::deserialize"
    )]
    #[schemars(regex(pattern = DURATION_PATTERN), length(max = 64))]
    #[x_kube(validation = Rule::new("duration(self) <= duration('24h')").message("gracePeriod must be at most 24h"))]
    pub grace_period: Option<kube::core::Duration>,
    /// `Alternate` only: workloads of this namespace to restart once the
    /// Secret is switched, the way `kubectl rollout restart` does; the old
    /// login is disabled only after they are rolled out. dbops restarts only
    /// workloads whose pod template uses this role's Secret, and only when the
    /// chart lets it (`rollout.enabled`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    pub rollout: Vec<WorkloadRef>,
}

/// Default `gracePeriod`.
pub const DEFAULT_GRACE: std::time::Duration = std::time::Duration::from_secs(300);

impl RoleRotationSpec {
    /// The grace period in force.
    pub fn grace(&self) -> std::time::Duration {
        self.grace_period
            .map(std::time::Duration::from)
            .unwrap_or(DEFAULT_GRACE)
    }
}

/// A kind of workload a rotation restarts.
#[derive(
    Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, schemars::JsonSchema, strum::Display,
)]
pub enum WorkloadKind {
    Deployment,
    StatefulSet,
}

/// A workload in the same namespace.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct WorkloadRef {
    pub kind: WorkloadKind,
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}

/// What a grant applies to, as status records it.
#[derive(
    Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, schemars::JsonSchema,
)]
pub enum GrantScope {
    /// The schema itself.
    Schema,
    /// The table in `table`.
    Table,
    /// Every table in the schema.
    AllTables,
    /// Tables the database's owner creates later.
    FutureTables,
}

/// One privilege dbops granted.
#[derive(
    Serialize, Deserialize, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, schemars::JsonSchema,
)]
#[serde(rename_all = "camelCase")]
pub struct GrantedPrivilege {
    pub schema: String,
    /// What in the schema it is on. (Not named `on`: YAML 1.1 reads an
    /// unquoted `on` as `true`.)
    pub scope: GrantScope,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub table: Option<String>,
    pub privilege: Privilege,
}

/// Where an `Alternate` rotation stands.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, schemars::JsonSchema)]
pub enum RotationPhase {
    /// The Secret was switched; the workloads in `rollout` are restarting.
    RollingOut,
    /// Waiting out the grace period before the previous login is disabled.
    Draining,
    /// A rollout did not finish: both logins stay valid until a new request.
    RolloutFailed,
}

/// Where a `DatabaseRole`'s credential rotation stands.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RoleRotationStatus {
    /// When the last rotation finished (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_rotated_at: Option<Rfc3339>,
    /// The `dbops.dev/rotate-credentials` value (or interval tick) last acted on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handled_request: Option<String>,
    /// The request of the rotation in progress.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<String>,
    /// `Alternate`: the phase of the rotation in progress.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<RotationPhase>,
    /// `Alternate`: the login the Secret held before the switch, valid until disabled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_login: Option<String>,
    /// When the Secret was switched (RFC 3339); also the restart mark of the rollout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub switched_at: Option<Rfc3339>,
    /// When the grace period started (RFC 3339): the rollout finished, or the switch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub draining_since: Option<Rfc3339>,
}

/// What dbops knows of a `DatabaseRole`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DatabaseRoleStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready`, `Reconciling` and `Stalled`, kstatus style.
    #[serde(default)]
    pub conditions: Conditions,
    /// The role's name in the database (the group role, with `Alternate`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role_name: Option<String>,
    /// The login the connection Secret holds now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active_login: Option<String>,
    /// The `DatabaseProvider` the database is reached through.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider_name: Option<String>,
    /// The vendor's id of the project.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project_id: Option<String>,
    /// The vendor's id of the database the role is in (the project's or the branch's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database_id: Option<String>,
    /// The privileges dbops granted (revoked again when removed from the spec).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub applied_grants: Vec<GrantedPrivilege>,
    /// Privileges the role holds that someone else granted: reported, left alone.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unmanaged_privileges: Vec<String>,
    /// Declared schemas and tables that do not exist yet.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub missing_objects: Vec<String>,
    /// For each login, a short hash of the password last set in the database
    /// (never the password), so a password kept but not yet set is set again.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub password_versions: BTreeMap<String, String>,
    /// Name of the Secret holding the connection details, once written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection_secret_name: Option<String>,
    /// The connection Secret, where the Service Binding spec looks for it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub binding: Option<Binding>,
    /// Credential rotation state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential_rotation: Option<RoleRotationStatus>,
}
