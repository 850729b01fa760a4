//! `DatabaseRole`: a least-privilege login role in the database of a
//! `DatabaseProject` or `DatabaseBranch`, with grants declared as data.
//!
//! Work in progress (issue #25): the types and the grants planner
//! (`controllers/pipeline/grants.rs`) exist; the controller does not yet, so
//! this kind is not in [`super::all_crds`] and no CRD for it ships. A CRD
//! that nothing reconciles would accept objects and never act on them.

use kube::KubeSchema;
use serde::{Deserialize, Serialize};

use super::common::{ConnectionSecretTarget, DeletionPolicy, LocalObjectRef};

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
    #[schemars(regex(pattern = OBJECT_NAME_PATTERN))]
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
    #[schemars(length(min = 1, max = 256), inner(regex(pattern = OBJECT_NAME_PATTERN)))]
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

/// A least-privilege role in the database of a project or a branch.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("has(self.projectRef) != has(self.branchRef)").message("set exactly one of projectRef and branchRef"),
    validation = Rule::new("has(self.roleName) == has(oldSelf.roleName)").message("roleName is immutable")
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
    #[schemars(regex(pattern = ROLE_NAME_PATTERN))]
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
    /// The Secret to write the role's credentials into. Defaults to `<name>-connection`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub write_connection_secret_to: Option<ConnectionSecretTarget>,
    /// What happens to the role in the database when this resource is
    /// deleted. Defaults to `Delete`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deletion_policy: Option<DeletionPolicy>,
}
