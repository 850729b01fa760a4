//! Grants as data, for `DatabaseRole`: what a role's spec asks
//! for, as a set of grant units, and the SQL that makes a database match it
//! (pure). Every statement is built here from quoted identifiers and
//! literals, so the SQL channel of each provider only carries text.
//!
//! The model:
//! - the *grantee* holds the grants: the login role itself (`InPlace`), or
//!   the NOLOGIN group role that both members of an `Alternate` pair inherit
//!   from;
//! - every role dbops makes carries a marker comment naming its resource. A
//!   role of the same name without that marker is someone else's: the script
//!   stops with an error and changes nothing (roles are server-wide, so this
//!   is what keeps one tenant's `roleName` off another's role);
//! - `applied` (kept in status) is what dbops granted before. A pass revokes
//!   what was applied and is no longer wanted, then grants what is wanted.
//!   Privileges someone else granted are never revoked: [`unmanaged`]
//!   reports them;
//! - a grant on a schema or table that does not exist yet is skipped, and
//!   [`missing_sql`] names it, so the role waits and a later pass applies it.
//!
//! Each script is one `DO` block: one statement, one transaction, on every
//! channel (a vendor's SQL endpoint, the server itself, the owner's
//! connection).

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::api::v1alpha1::{Grant, GrantScope, GrantedPrivilege, Privilege, RotationStrategy};
use crate::providers::postgres::server::MARKER_PREFIX;
use crate::providers::postgres::sql::{SqlError, ident, literal};

/// What one grant unit is on.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "on", content = "table")]
pub enum On {
    /// The schema itself (`USAGE`, `CREATE`).
    Schema,
    /// One table.
    Table(String),
    /// Every table in the schema at the time of the pass.
    AllTables,
    /// Tables the database's owner creates later (default privileges).
    FutureTables,
}

/// One privilege on one object: the unit grants are compared in.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Unit {
    pub schema: String,
    #[serde(flatten)]
    pub on: On,
    pub privilege: Privilege,
}

impl std::fmt::Display for Unit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let schema = &self.schema;
        match &self.on {
            On::Schema => write!(f, "{} on schema {schema}", self.privilege),
            On::Table(table) => write!(f, "{} on table {schema}.{table}", self.privilege),
            On::AllTables => write!(f, "{} on all tables in schema {schema}", self.privilege),
            On::FutureTables => write!(f, "{} on future tables in schema {schema}", self.privilege),
        }
    }
}

impl From<&Unit> for GrantedPrivilege {
    fn from(unit: &Unit) -> Self {
        let (scope, table) = match &unit.on {
            On::Schema => (GrantScope::Schema, None),
            On::Table(table) => (GrantScope::Table, Some(table.clone())),
            On::AllTables => (GrantScope::AllTables, None),
            On::FutureTables => (GrantScope::FutureTables, None),
        };
        Self {
            schema: unit.schema.clone(),
            scope,
            table,
            privilege: unit.privilege,
        }
    }
}

impl Unit {
    /// The unit status records as `granted` (`None`: a table grant without its table).
    pub fn from_status(granted: &GrantedPrivilege) -> Option<Self> {
        let on = match (granted.scope, &granted.table) {
            (GrantScope::Schema, _) => On::Schema,
            (GrantScope::Table, Some(table)) => On::Table(table.clone()),
            (GrantScope::Table, None) => return None,
            (GrantScope::AllTables, _) => On::AllTables,
            (GrantScope::FutureTables, _) => On::FutureTables,
        };
        Some(Self {
            schema: granted.schema.clone(),
            on,
            privilege: granted.privilege,
        })
    }
}

/// Whether `schema` is a system schema, never granted on (a grant in
/// `pg_catalog` could expose the server's own catalogs, such as password
/// hashes). Admission refuses these too; this is the second check.
pub fn is_system_schema(schema: &str) -> bool {
    schema.starts_with("pg_") || schema == "information_schema"
}

/// Why a spec's grants cannot be planned.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum GrantError {
    #[error("spec.grants names the system schema {0:?}, which dbops never grants on")]
    SystemSchema(String),
    #[error(
        "spec.grants gives {privilege} on schema {schema} together with tables or futureTables; schema privileges apply to the schema only"
    )]
    Mixed {
        schema: String,
        privilege: Privilege,
    },
}

/// The grant units `grants` asks for (pure).
pub fn desired(grants: &[Grant]) -> Result<BTreeSet<Unit>, GrantError> {
    let mut units = BTreeSet::new();
    for grant in grants {
        if is_system_schema(&grant.schema) {
            return Err(GrantError::SystemSchema(grant.schema.clone()));
        }
        let future = grant.future_tables.unwrap_or(false);
        for &privilege in &grant.privileges {
            let unit = |on| Unit {
                schema: grant.schema.clone(),
                on,
                privilege,
            };
            if privilege.on_schema() {
                units.insert(unit(On::Schema));
                continue;
            }
            match &grant.tables {
                Some(tables) => {
                    for table in tables {
                        units.insert(unit(On::Table(table.clone())));
                    }
                }
                None => {
                    units.insert(unit(On::AllTables));
                    if future {
                        units.insert(unit(On::FutureTables));
                    }
                }
            }
        }
    }
    Ok(units)
}

/// A login role of a `DatabaseRole`, and what to set on it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Login {
    pub name: String,
    /// Whether it may log in now.
    pub can_login: bool,
    /// A new password's SCRAM verifier; `None` keeps the password it has.
    pub verifier: Option<String>,
}

/// The roles of one `DatabaseRole` in its database.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Layout {
    /// The role that holds the grants.
    pub grantee: String,
    /// The login roles: the grantee itself (`InPlace`), or the two members.
    pub logins: Vec<String>,
}

impl Layout {
    /// The roles for role name `name` under `strategy`.
    pub fn of(name: &str, strategy: RotationStrategy) -> Self {
        match strategy {
            RotationStrategy::InPlace => Self {
                grantee: name.to_string(),
                logins: vec![name.to_string()],
            },
            RotationStrategy::Alternate => Self {
                grantee: name.to_string(),
                logins: vec![format!("{name}_a"), format!("{name}_b")],
            },
        }
    }

    /// Every role, grantee first.
    fn roles(&self) -> Vec<&str> {
        let mut roles = vec![self.grantee.as_str()];
        roles.extend(
            self.logins
                .iter()
                .map(String::as_str)
                .filter(|l| *l != self.grantee),
        );
        roles
    }
}

/// The marker of the roles of the resource with UID `uid`.
pub fn marker(uid: &str) -> String {
    format!("{MARKER_PREFIX}role-{uid}")
}

/// What a converge pass sets.
pub struct Converge<'a> {
    pub layout: &'a Layout,
    pub marker: &'a str,
    /// What each login role is to be (roles not listed keep their state).
    pub logins: &'a [Login],
    pub connection_limit: Option<u32>,
    pub desired: &'a BTreeSet<Unit>,
    /// What dbops granted before (status).
    pub applied: &'a BTreeSet<Unit>,
}

/// The `DO` block of a pass: `body`, with the variables it uses.
fn do_block(body: &str) -> String {
    crate::providers::postgres::sql::do_block("  r record;\n  owner name;\n", body)
}

/// The statements that make `role` exist with `marker`, or stop when a role
/// of that name is someone else's.
fn ensure_marked(role: &str, marker: &str) -> Result<String, SqlError> {
    let (name, mark) = (literal(role)?, literal(marker)?);
    Ok(format!(
        "  SELECT rolname, pg_catalog.shobj_description(oid, 'pg_authid') AS comment INTO r FROM pg_catalog.pg_roles WHERE rolname = {name};\n\
         \x20 IF NOT FOUND THEN\n\
         \x20   CREATE ROLE {id} NOLOGIN;\n\
         \x20   COMMENT ON ROLE {id} IS {mark};\n\
         \x20 ELSIF r.comment IS DISTINCT FROM {mark} THEN\n\
         \x20   RAISE EXCEPTION 'role % exists and dbops did not create it for this DatabaseRole', {name} USING ERRCODE = '42710';\n\
         \x20 END IF;\n",
        id = ident(role),
    ))
}

/// The statement that gives (`GRANT`) or takes (`REVOKE`) `unit` from
/// `grantee`, applied only where its object exists.
fn grant_statement(unit: &Unit, grantee: &str, give: bool) -> Result<String, SqlError> {
    let (verb, word) = if give {
        ("GRANT", "TO")
    } else {
        ("REVOKE", "FROM")
    };
    let privilege = unit.privilege;
    let (schema, to) = (ident(&unit.schema), ident(grantee));
    let schema_exists = format!(
        "EXISTS (SELECT 1 FROM pg_catalog.pg_namespace WHERE nspname = {})",
        literal(&unit.schema)?
    );
    Ok(match &unit.on {
        On::Schema => format!(
            "  IF {schema_exists} THEN {verb} {privilege} ON SCHEMA {schema} {word} {to}; END IF;\n"
        ),
        On::Table(table) => format!(
            "  IF pg_catalog.to_regclass({}) IS NOT NULL THEN {verb} {privilege} ON TABLE {schema}.{} {word} {to}; END IF;\n",
            literal(&format!("{schema}.{}", ident(table)))?,
            ident(table)
        ),
        On::AllTables => format!(
            "  IF {schema_exists} THEN {verb} {privilege} ON ALL TABLES IN SCHEMA {schema} {word} {to}; END IF;\n"
        ),
        On::FutureTables => format!(
            "  IF {schema_exists} THEN EXECUTE pg_catalog.format('ALTER DEFAULT PRIVILEGES FOR ROLE %I IN SCHEMA %I {verb} {privilege} ON TABLES {word} %I', owner, {}, {}); END IF;\n",
            literal(&unit.schema)?,
            literal(grantee)?
        ),
    })
}

/// The one statement that makes the database match (pure): the roles exist
/// with their marker (or it stops, changing nothing), the logins are set,
/// the members are in the group, the grantee may connect, what was applied
/// and is no longer wanted is revoked, and what is wanted is granted where
/// its object exists.
pub fn converge_script(c: &Converge<'_>) -> Result<String, SqlError> {
    let mut body = String::from(
        "  SELECT pg_catalog.pg_get_userbyid(datdba) INTO owner FROM pg_catalog.pg_database WHERE datname = pg_catalog.current_database();\n",
    );
    for role in c.layout.roles() {
        body.push_str(&ensure_marked(role, c.marker)?);
    }
    let grantee = &c.layout.grantee;
    for login in c.logins {
        let mut alter = format!(
            "  ALTER ROLE {} {}",
            ident(&login.name),
            if login.can_login { "LOGIN" } else { "NOLOGIN" }
        );
        if let Some(verifier) = &login.verifier {
            alter.push_str(&format!(" PASSWORD {}", literal(verifier)?));
        }
        let limit = c.connection_limit.map_or(-1, i64::from);
        alter.push_str(&format!(" CONNECTION LIMIT {limit};\n"));
        body.push_str(&alter);
        if &login.name != grantee {
            body.push_str(&format!(
                "  GRANT {} TO {};\n",
                ident(grantee),
                ident(&login.name)
            ));
        }
    }
    body.push_str(&format!(
        "  EXECUTE pg_catalog.format('GRANT CONNECT ON DATABASE %I TO %I', pg_catalog.current_database(), {});\n",
        literal(grantee)?
    ));
    for unit in c.applied.difference(c.desired) {
        body.push_str(&grant_statement(unit, grantee, false)?);
    }
    for unit in c.desired {
        body.push_str(&grant_statement(unit, grantee, true)?);
    }
    Ok(do_block(&body))
}

/// A query for the roles of `layout` that exist, with their comments (pure):
/// rows of name and comment.
pub fn roles_sql(layout: &Layout) -> Result<String, SqlError> {
    let names = layout
        .roles()
        .into_iter()
        .map(literal)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(format!(
        "SELECT rolname::text, pg_catalog.shobj_description(oid, 'pg_authid') FROM pg_catalog.pg_roles WHERE rolname IN ({}) ORDER BY 1",
        names.join(", ")
    ))
}

/// The roles in `rows` ([`roles_sql`]) that exist without `marker`: someone
/// else's, never touched (pure).
pub fn foreign_roles(rows: &[Vec<Option<String>>], marker: &str) -> Vec<String> {
    rows.iter()
        .filter_map(|row| {
            let name = row.first()?.clone()?;
            let comment = row.get(1).cloned().flatten();
            (comment.as_deref() != Some(marker)).then_some(name)
        })
        .collect()
}

/// A query for the declared schemas and tables that do not exist (pure):
/// one row per missing object, its description in the one column.
pub fn missing_sql(desired: &BTreeSet<Unit>) -> Result<String, SqlError> {
    let mut checks = Vec::new();
    let mut seen = BTreeSet::new();
    for unit in desired {
        let (key, check) = match &unit.on {
            On::Table(table) => {
                let name = format!("{}.{}", ident(&unit.schema), ident(table));
                (
                    format!("table {}.{table}", unit.schema),
                    format!("pg_catalog.to_regclass({}) IS NULL", literal(&name)?),
                )
            }
            _ => (
                format!("schema {}", unit.schema),
                format!(
                    "NOT EXISTS (SELECT 1 FROM pg_catalog.pg_namespace WHERE nspname = {})",
                    literal(&unit.schema)?
                ),
            ),
        };
        if seen.insert(key.clone()) {
            checks.push(format!("SELECT {} WHERE {check}", literal(&key)?));
        }
    }
    if checks.is_empty() {
        return Ok("SELECT 'none'::text WHERE false".to_string());
    }
    Ok(checks.join(" UNION ALL "))
}

/// A query for every table and schema privilege `grantee` holds in the
/// database, and its default privileges on future tables (pure): rows of
/// schema, table (empty for a schema privilege, `*` for future tables) and
/// privilege.
pub fn observe_sql(grantee: &str) -> Result<String, SqlError> {
    let who = format!(
        "(SELECT oid FROM pg_catalog.pg_roles WHERE rolname = {})",
        literal(grantee)?
    );
    Ok(format!(
        "SELECT n.nspname::text, ''::text, a.privilege_type::text FROM pg_catalog.pg_namespace n, pg_catalog.aclexplode(n.nspacl) a WHERE a.grantee = {who} \
         UNION ALL SELECT n.nspname::text, c.relname::text, a.privilege_type::text FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace, pg_catalog.aclexplode(c.relacl) a WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f') AND a.grantee = {who} \
         UNION ALL SELECT n.nspname::text, '*'::text, a.privilege_type::text FROM pg_catalog.pg_default_acl d JOIN pg_catalog.pg_namespace n ON n.oid = d.defaclnamespace, pg_catalog.aclexplode(d.defaclacl) a WHERE d.defaclobjtype = 'r' AND a.grantee = {who} \
         ORDER BY 1, 2, 3"
    ))
}

/// The observed privileges ([`observe_sql`] rows) as units (pure); rows with
/// a privilege dbops does not manage are left out.
pub fn observed_units(rows: &[(String, String, String)]) -> BTreeSet<Unit> {
    use strum::IntoEnumIterator;
    rows.iter()
        .filter_map(|(schema, table, privilege)| {
            let privilege = Privilege::iter().find(|p| p.to_string() == *privilege)?;
            let on = match table.as_str() {
                "" => On::Schema,
                "*" => On::FutureTables,
                table => On::Table(table.to_string()),
            };
            Some(Unit {
                schema: schema.clone(),
                on,
                privilege,
            })
        })
        .collect()
}

/// What the role holds that its spec does not ask for (pure): privileges
/// someone else granted, which dbops reports and leaves alone.
pub fn unmanaged(observed: &BTreeSet<Unit>, desired: &BTreeSet<Unit>) -> Vec<Unit> {
    observed
        .iter()
        .filter(|unit| {
            let all_tables = Unit {
                on: On::AllTables,
                ..(*unit).clone()
            };
            let covered = desired.contains(unit)
                || (matches!(unit.on, On::Table(_)) && desired.contains(&all_tables));
            !covered
        })
        .cloned()
        .collect()
}

/// The statement that disables login role `member` and ends its sessions,
/// if it carries `marker` (pure): the end of an `Alternate` rotation.
pub fn disable_script(member: &str, marker: &str) -> Result<String, SqlError> {
    let (name, mark) = (literal(member)?, literal(marker)?);
    Ok(do_block(&format!(
        "  IF pg_catalog.shobj_description((SELECT oid FROM pg_catalog.pg_roles WHERE rolname = {name}), 'pg_authid') = {mark} THEN\n\
         \x20   ALTER ROLE {id} NOLOGIN;\n\
         \x20   PERFORM pg_catalog.pg_terminate_backend(pid) FROM pg_catalog.pg_stat_activity WHERE usename = {name} AND pid <> pg_catalog.pg_backend_pid();\n\
         \x20 END IF;\n",
        id = ident(member)
    )))
}

/// The statement that drops the roles of `layout` that carry `marker`
/// (pure): sessions ended, what they own handed to the database's owner,
/// their privileges dropped, then the roles. Roles without the marker, and
/// roles already gone, are left alone. A role that still holds privileges
/// in another database of the server (a copy of this one, such as a branch
/// made from it as a template) cannot be dropped from here: it is left
/// disabled (`NOLOGIN`) instead, so the deletion always finishes.
pub fn drop_script(layout: &Layout, marker: &str) -> Result<String, SqlError> {
    let mut body = String::from(
        "  SELECT pg_catalog.pg_get_userbyid(datdba) INTO owner FROM pg_catalog.pg_database WHERE datname = pg_catalog.current_database();\n",
    );
    // Members first: they are in the group.
    let mut roles = layout.roles();
    roles.reverse();
    let mark = literal(marker)?;
    for role in roles {
        let (name, id) = (literal(role)?, ident(role));
        body.push_str(&format!(
            "  IF pg_catalog.shobj_description((SELECT oid FROM pg_catalog.pg_roles WHERE rolname = {name}), 'pg_authid') = {mark} THEN\n\
             \x20   PERFORM pg_catalog.pg_terminate_backend(pid) FROM pg_catalog.pg_stat_activity WHERE usename = {name} AND pid <> pg_catalog.pg_backend_pid();\n\
             \x20   EXECUTE pg_catalog.format('REASSIGN OWNED BY %I TO %I', {name}, owner);\n\
             \x20   DROP OWNED BY {id};\n\
             \x20   BEGIN\n\
             \x20     DROP ROLE {id};\n\
             \x20   EXCEPTION WHEN dependent_objects_still_exist THEN\n\
             \x20     ALTER ROLE {id} NOLOGIN;\n\
             \x20   END;\n\
             \x20 END IF;\n"
        ));
    }
    Ok(do_block(&body))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant(
        schema: &str,
        privileges: &[Privilege],
        tables: Option<&[&str]>,
        future: bool,
    ) -> Grant {
        Grant {
            schema: schema.to_string(),
            privileges: privileges.to_vec(),
            tables: tables.map(|t| t.iter().map(|s| s.to_string()).collect()),
            future_tables: future.then_some(true),
        }
    }

    fn unit(schema: &str, on: On, privilege: Privilege) -> Unit {
        Unit {
            schema: schema.into(),
            on,
            privilege,
        }
    }

    #[test]
    fn the_spec_becomes_units() {
        use Privilege::*;
        let units = desired(&[
            grant("public", &[Select], Some(&["orders", "customers"]), false),
            grant("analytics", &[Usage, Create, Select], None, true),
        ])
        .unwrap();
        let expected: BTreeSet<Unit> = [
            unit("public", On::Table("orders".into()), Select),
            unit("public", On::Table("customers".into()), Select),
            unit("analytics", On::Schema, Usage),
            unit("analytics", On::Schema, Create),
            unit("analytics", On::AllTables, Select),
            unit("analytics", On::FutureTables, Select),
        ]
        .into();
        assert_eq!(units, expected);
        assert_eq!(
            desired(&[grant("pg_catalog", &[Select], Some(&["pg_authid"]), false)]),
            Err(GrantError::SystemSchema("pg_catalog".into()))
        );
        assert!(desired(&[grant("information_schema", &[Usage], None, false)]).is_err());
    }

    #[test]
    fn a_converge_revokes_what_was_removed_then_grants_what_is_wanted() {
        use Privilege::*;
        let layout = Layout::of("reporting", RotationStrategy::InPlace);
        let wanted: BTreeSet<Unit> = [unit("public", On::Table("orders".into()), Select)].into();
        let applied: BTreeSet<Unit> = [
            unit("public", On::Table("orders".into()), Select),
            unit("public", On::Table("orders".into()), Insert),
        ]
        .into();
        let script = converge_script(&Converge {
            layout: &layout,
            marker: "dbops-role-u1",
            logins: &[Login {
                name: "reporting".into(),
                can_login: true,
                verifier: Some("SCRAM-SHA-256$4096:abc".into()),
            }],
            connection_limit: Some(10),
            desired: &wanted,
            applied: &applied,
        })
        .unwrap();
        let expected = "DO $dbops$
DECLARE
  r record;
  owner name;
BEGIN
  SELECT pg_catalog.pg_get_userbyid(datdba) INTO owner FROM pg_catalog.pg_database WHERE datname = pg_catalog.current_database();
  SELECT rolname, pg_catalog.shobj_description(oid, 'pg_authid') AS comment INTO r FROM pg_catalog.pg_roles WHERE rolname = 'reporting';
  IF NOT FOUND THEN
    CREATE ROLE \"reporting\" NOLOGIN;
    COMMENT ON ROLE \"reporting\" IS 'dbops-role-u1';
  ELSIF r.comment IS DISTINCT FROM 'dbops-role-u1' THEN
    RAISE EXCEPTION 'role % exists and dbops did not create it for this DatabaseRole', 'reporting' USING ERRCODE = '42710';
  END IF;
  ALTER ROLE \"reporting\" LOGIN PASSWORD 'SCRAM-SHA-256$4096:abc' CONNECTION LIMIT 10;
  EXECUTE pg_catalog.format('GRANT CONNECT ON DATABASE %I TO %I', pg_catalog.current_database(), 'reporting');
  IF pg_catalog.to_regclass('\"public\".\"orders\"') IS NOT NULL THEN REVOKE INSERT ON TABLE \"public\".\"orders\" FROM \"reporting\"; END IF;
  IF pg_catalog.to_regclass('\"public\".\"orders\"') IS NOT NULL THEN GRANT SELECT ON TABLE \"public\".\"orders\" TO \"reporting\"; END IF;
END
$dbops$";
        assert_eq!(script, expected);
    }

    #[test]
    fn alternate_members_join_the_group_and_names_cannot_end_the_block() {
        let layout = Layout::of("app", RotationStrategy::Alternate);
        assert_eq!(layout.logins, ["app_a", "app_b"]);
        let wanted: BTreeSet<Unit> = [unit(
            "we$dbops$ird\"; DROP TABLE x; --",
            On::Schema,
            Privilege::Usage,
        )]
        .into();
        let script = converge_script(&Converge {
            layout: &layout,
            marker: "dbops-role-u2",
            logins: &[Login {
                name: "app_a".into(),
                can_login: true,
                verifier: None,
            }],
            connection_limit: None,
            desired: &wanted,
            applied: &BTreeSet::new(),
        })
        .unwrap();
        assert!(script.starts_with("DO $dbops1$\n"), "{script}");
        assert!(script.ends_with("\n$dbops1$"));
        assert!(script.contains(
            "  ALTER ROLE \"app_a\" LOGIN CONNECTION LIMIT -1;\n  GRANT \"app\" TO \"app_a\";\n"
        ));
        assert!(
            script.contains(
                "GRANT USAGE ON SCHEMA \"we$dbops$ird\"\"; DROP TABLE x; --\" TO \"app\""
            )
        );
        // The group and both members are checked for the marker.
        assert_eq!(script.matches("CREATE ROLE").count(), 3);
    }

    #[test]
    fn unmanaged_privileges_are_what_the_spec_does_not_cover() {
        use Privilege::*;
        let wanted: BTreeSet<Unit> = [
            unit("public", On::AllTables, Select),
            unit("public", On::Schema, Usage),
        ]
        .into();
        let observed = observed_units(&[
            ("public".into(), "".into(), "USAGE".into()),
            ("public".into(), "orders".into(), "SELECT".into()),
            ("public".into(), "orders".into(), "UPDATE".into()),
            ("public".into(), "*".into(), "SELECT".into()),
            ("public".into(), "orders".into(), "MAINTAIN".into()),
        ]);
        assert_eq!(
            unmanaged(&observed, &wanted),
            [
                unit("public", On::Table("orders".into()), Update),
                unit("public", On::FutureTables, Select),
            ]
        );
        assert_eq!(
            unit("public", On::FutureTables, Select).to_string(),
            "SELECT on future tables in schema public"
        );
    }
}
