//! One PostgreSQL server, administered through an admin role: databases and
//! the roles that own them, each marked as the work of one resource.
//!
//! This is the core the `postgres` provider and the emulator's real databases
//! (`--emulator-postgres`) share. Everything here is plain SQL over one
//! connection; nothing spawns `psql`.
//!
//! **Markers.** Every role dbops creates carries a comment, the marker, that
//! names the resource and operation it was made for (the create's idempotency
//! key). A role is created together with its marker in one transaction, and
//! the database it owns is created after it: `CREATE DATABASE` cannot run in
//! a transaction, so the database gets its own marker only once it is
//! complete. A database is this resource's when its marker matches; one owned
//! by this resource's role but without a marker is a copy a crash cut short,
//! dropped and made again. Anything else under the name belongs to someone
//! else and is never adopted, changed or dropped.
//!
//! **Passwords** are sent as SCRAM-SHA-256 verifiers computed here, so the
//! password itself is never in statement text, server logs or
//! `pg_stat_statements`.

use std::sync::Arc;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use tokio_postgres::config::SslMode;
use tokio_postgres::{Client, Config};
use tokio_postgres_rustls::MakeRustlsConnect;

use super::logical;
use super::sql::{SqlError, ident, literal};
use crate::api::v1alpha1::CopyStrategy;
use crate::providers::base::{ConnectionUri, Password};

/// Every marker dbops writes starts with this (it is the start of every
/// idempotency key). Roles without it are never dropped.
pub const MARKER_PREFIX: &str = "dbops-";

/// The advisory lock (in the admin database) that makes ownership hand-overs
/// take turns.
const OWNERSHIP_LOCK: i64 = 0x6462_6f70_735f_6f77; // "dbops_ow"

/// How many times a template copy ends the source's sessions and tries again
/// before it gives up (clients that reconnect at once can win every race).
const TEMPLATE_ATTEMPTS: u32 = 6;

type Result<T> = std::result::Result<T, SqlError>;

/// The comment dbops writes on a database it made: the marker, and for a
/// branch or snapshot its parent project's database (`<marker>;parent=<id>`),
/// so that a copy can be told to belong to its project without a guess.
pub fn database_comment(marker: &str, parent: Option<&str>) -> String {
    match parent {
        Some(parent) => format!("{marker};parent={parent}"),
        None => marker.to_string(),
    }
}

/// The marker in a database's comment ([`database_comment`]).
pub fn comment_marker(comment: &str) -> &str {
    comment
        .split_once(";parent=")
        .map_or(comment, |(marker, _)| marker)
}

/// The parent project in a database's comment, if dbops wrote one.
pub fn comment_parent(comment: &str) -> Option<&str> {
    comment
        .strip_prefix(MARKER_PREFIX)
        .and_then(|_| comment.split_once(";parent="))
        .map(|(_, parent)| parent)
}

/// What a statement answered ([`Server::run_in`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SqlAnswer {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<Option<String>>>,
}

/// What a database is, as `pg_database` says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DatabaseInfo {
    pub name: String,
    pub owner: String,
    /// Its comment: a dbops marker, or anything a person wrote.
    pub comment: Option<String>,
    pub allows_connections: bool,
}

impl DatabaseInfo {
    /// The dbops marker it carries, if any.
    pub fn marker(&self) -> Option<&str> {
        self.comment
            .as_deref()
            .map(comment_marker)
            .filter(|m| m.starts_with(MARKER_PREFIX))
    }

    /// The project it is a branch or snapshot of, as dbops recorded it.
    pub fn parent(&self) -> Option<&str> {
        self.comment.as_deref().and_then(comment_parent)
    }
}

/// Where a new database's contents come from.
#[derive(Clone, Copy, Debug)]
pub enum Source<'a> {
    /// An empty database.
    Empty,
    /// A copy of database `from`.
    Copy {
        from: &'a str,
        strategy: CopyStrategy,
    },
    /// The schema of database `from`, copied logically, without a row.
    Schema { from: &'a str },
}

/// The address connection URIs name: where applications reach the server.
#[derive(Clone, Debug)]
struct PublicAddress {
    host: String,
    port: u16,
    /// The endpoint's `sslmode`, passed on to clients.
    sslmode: Option<String>,
}

/// One PostgreSQL server and the admin role dbops works through.
pub struct Server {
    admin: Config,
    tls: MakeRustlsConnect,
    public: PublicAddress,
    shared: tokio::sync::Mutex<Option<Arc<Client>>>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("host", &self.public.host)
            .field("port", &self.public.port)
            .finish_non_exhaustive()
    }
}

impl Server {
    /// A server reached at `endpoint`, a `postgres://user@host:port/db?sslmode=…`
    /// URL (a password in it is refused: it belongs in the Secret), as the
    /// admin role with `password`. `connection_host` (`host[:port]`) is the
    /// address connection URIs name, when applications reach the server
    /// elsewhere. Nothing is contacted until the first call.
    pub fn new(
        endpoint: &str,
        password: Option<&SecretString>,
        connection_host: Option<&str>,
        connect_timeout: Duration,
    ) -> std::result::Result<Self, String> {
        let url = url::Url::parse(endpoint)
            .map_err(|_| "spec.endpoint is not a valid postgres:// URL".to_string())?;
        if !matches!(url.scheme(), "postgres" | "postgresql") {
            return Err("spec.endpoint must be a postgres:// URL for the postgres API".into());
        }
        if url.password().is_some() {
            return Err(
                "spec.endpoint must not carry a password: put it in the credentials Secret".into(),
            );
        }
        let host = url
            .host_str()
            .filter(|h| !h.is_empty())
            .ok_or("spec.endpoint names no host")?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let port = url.port().unwrap_or(5432);
        let user = percent_encoding::percent_decode_str(url.username())
            .decode_utf8()
            .map_err(|_| "spec.endpoint's user name is not valid UTF-8")?
            .to_string();
        let database = url.path().trim_start_matches('/');
        let mut sslmode = None;
        for (key, value) in url.query_pairs() {
            match key.as_ref() {
                "sslmode" => sslmode = Some(value.to_string()),
                "connect_timeout" | "application_name" => {}
                other => {
                    return Err(format!(
                        "spec.endpoint has an unsupported parameter {other:?} (only sslmode is read)"
                    ));
                }
            }
        }
        let ssl_mode = match sslmode.as_deref() {
            None | Some("prefer") => SslMode::Prefer,
            Some("disable") => SslMode::Disable,
            // Certificates are always verified against the system's roots.
            Some("require" | "verify-ca" | "verify-full") => SslMode::Require,
            Some(other) => return Err(format!("spec.endpoint has an unknown sslmode {other:?}")),
        };
        let mut admin = Config::new();
        admin
            .host(&host)
            .port(port)
            .user(if user.is_empty() { "postgres" } else { &user })
            .dbname(if database.is_empty() {
                "postgres"
            } else {
                database
            })
            .ssl_mode(ssl_mode)
            .application_name("dbops")
            .connect_timeout(connect_timeout);
        if let Some(password) = password.map(ExposeSecret::expose_secret)
            && !password.is_empty()
        {
            admin.password(password);
        }
        let public = match connection_host {
            Some(address) => parse_address(address)?,
            None => PublicAddress {
                host: url.host_str().unwrap_or_default().to_string(),
                port,
                sslmode: None,
            },
        };
        Ok(Self {
            admin,
            tls: tls(),
            public: PublicAddress { sslmode, ..public },
            shared: tokio::sync::Mutex::new(None),
        })
    }

    /// The shared admin connection to the endpoint's database, opened on
    /// first use and again after it broke.
    async fn admin(&self) -> Result<Arc<Client>> {
        let mut shared = self.shared.lock().await;
        if let Some(client) = shared.as_ref()
            && !client.is_closed()
        {
            return Ok(client.clone());
        }
        let client = Arc::new(self.connect(&self.admin).await?);
        *shared = Some(client.clone());
        Ok(client)
    }

    async fn connect(&self, config: &Config) -> Result<Client> {
        let (client, connection) = config.connect(self.tls.clone()).await?;
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%error, "postgres connection ended");
            }
        });
        Ok(client)
    }

    /// A new admin connection to database `name`. Its `search_path` is set
    /// at connection start, which overrides what the database's owner may
    /// have set with `ALTER DATABASE … SET`: nothing the admin runs there
    /// resolves a name to an object a tenant made.
    async fn connect_to(&self, name: &str) -> Result<Client> {
        let mut config = self.admin.clone();
        config.dbname(name);
        config.options("-c search_path=pg_catalog,pg_temp");
        self.connect(&config).await
    }

    /// The server's major version (`15`, `16`, …).
    pub async fn major_version(&self) -> Result<u32> {
        let row = self
            .admin()
            .await?
            .query_one(
                "SELECT current_setting('server_version_num')::int / 10000",
                &[],
            )
            .await?;
        Ok(u32::try_from(row.get::<_, i32>(0)).unwrap_or_default())
    }

    /// Database `name`, if it exists.
    pub async fn database(&self, name: &str) -> Result<Option<DatabaseInfo>> {
        let row = self
            .admin()
            .await?
            .query_opt(
                "SELECT d.datname, r.rolname, shobj_description(d.oid, 'pg_database'), d.datallowconn \
                 FROM pg_database d JOIN pg_roles r ON r.oid = d.datdba WHERE d.datname = $1",
                &[&name],
            )
            .await?;
        Ok(row.map(|row| DatabaseInfo {
            name: row.get(0),
            owner: row.get(1),
            comment: row.get(2),
            allows_connections: row.get(3),
        }))
    }

    /// Role `name`'s comment, if the role exists (`Some(None)`: no comment).
    pub async fn role(&self, name: &str) -> Result<Option<Option<String>>> {
        let row = self
            .admin()
            .await?
            .query_opt(
                "SELECT shobj_description(oid, 'pg_authid') FROM pg_roles WHERE rolname = $1",
                &[&name],
            )
            .await?;
        Ok(row.map(|row| row.get(0)))
    }

    /// Makes role `name` exist with `marker`, able to log in with `password`
    /// (or not at all, `None`). A role of that name without this marker is
    /// someone else's: [`SqlError::Conflict`].
    pub async fn ensure_role(
        &self,
        name: &str,
        marker: &str,
        password: Option<&Password>,
    ) -> Result<()> {
        let login = match password {
            Some(password) => format!("LOGIN PASSWORD {}", literal(&verifier(password))?),
            None => "NOLOGIN".to_string(),
        };
        match self.role(name).await? {
            Some(comment) if comment.as_deref() == Some(marker) => {
                // A retried create: the password is the one the resource keeps.
                let sql = format!("ALTER ROLE {} {login}", ident(name));
                self.admin().await?.batch_execute(&sql).await?;
                Ok(())
            }
            Some(_) => Err(SqlError::Conflict {
                object: "role",
                name: name.to_string(),
            }),
            None => {
                // One simple query is one transaction: the role never exists
                // without its marker.
                let sql = format!(
                    "CREATE ROLE {name} {login}; COMMENT ON ROLE {name} IS {marker}",
                    name = ident(name),
                    marker = literal(marker)?,
                );
                self.admin().await?.batch_execute(&sql).await?;
                Ok(())
            }
        }
    }

    /// Makes database `name` exist, owned by role `owner` (which
    /// [`Server::ensure_role`] made with the same `marker`), holding what
    /// `source` says, connectable or not. Returns once it is complete and
    /// marked.
    ///
    /// Every database made here is closed to `PUBLIC` (`REVOKE CONNECT,
    /// TEMPORARY`): only its owner (and the admin) may connect, so one
    /// tenant's role never reaches another tenant's database.
    #[allow(clippy::too_many_arguments)]
    pub async fn ensure_database(
        &self,
        name: &str,
        owner: &str,
        marker: &str,
        parent: Option<&str>,
        source: Source<'_>,
        connectable: bool,
    ) -> Result<()> {
        match self.database(name).await? {
            Some(db) if db.marker() == Some(marker) => return Ok(()),
            // Made by an earlier attempt that stopped before it was complete.
            Some(db) if db.comment.is_none() && db.owner == owner => {
                self.drop_database(name).await?;
            }
            Some(_) => {
                return Err(SqlError::Conflict {
                    object: "database",
                    name: name.to_string(),
                });
            }
            None => {}
        }
        match source {
            Source::Empty => {
                let sql = format!("CREATE DATABASE {} OWNER {}", ident(name), ident(owner));
                self.admin().await?.batch_execute(&sql).await?;
            }
            Source::Copy {
                from,
                strategy: CopyStrategy::Template,
            } => {
                let from_owner = self.owner_of(from).await?;
                self.template_copy(name, owner, from).await?;
                self.take_ownership(name, &from_owner, owner).await?;
            }
            Source::Copy {
                from,
                strategy: CopyStrategy::Logical,
            } => {
                let from_owner = self.owner_of(from).await?;
                let sql = format!("CREATE DATABASE {} OWNER {}", ident(name), ident(owner));
                self.admin().await?.batch_execute(&sql).await?;
                let mut source = self.connect_to(from).await?;
                let mut target = self.connect_to(name).await?;
                logical::copy(&mut source, &mut target, &from_owner, owner, true).await?;
            }
            Source::Schema { from } => {
                let from_owner = self.owner_of(from).await?;
                let sql = format!("CREATE DATABASE {} OWNER {}", ident(name), ident(owner));
                self.admin().await?.batch_execute(&sql).await?;
                let mut source = self.connect_to(from).await?;
                let mut target = self.connect_to(name).await?;
                logical::copy(&mut source, &mut target, &from_owner, owner, false).await?;
            }
        }
        let admin = self.admin().await?;
        let mut sql = format!(
            "REVOKE CONNECT, TEMPORARY ON DATABASE {name} FROM PUBLIC; \
             GRANT CONNECT, TEMPORARY ON DATABASE {name} TO {owner};",
            name = ident(name),
            owner = ident(owner)
        );
        if !connectable {
            sql.push_str(&format!(
                " ALTER DATABASE {} ALLOW_CONNECTIONS false;",
                ident(name)
            ));
        }
        sql.push_str(&format!(
            " COMMENT ON DATABASE {} IS {}",
            ident(name),
            literal(&database_comment(marker, parent))?
        ));
        admin.batch_execute(&sql).await?;
        Ok(())
    }

    /// Closes database `name` to `PUBLIC` if it is still open (made by an
    /// earlier version of dbops, before every database was closed).
    pub async fn close_to_public(&self, name: &str) -> Result<()> {
        let open = self
            .admin()
            .await?
            .query_opt(
                "SELECT 1 FROM pg_catalog.pg_database d, \
                 pg_catalog.aclexplode(COALESCE(d.datacl, pg_catalog.acldefault('d', d.datdba))) a \
                 WHERE d.datname = $1 AND a.grantee = 0 AND a.privilege_type = 'CONNECT'",
                &[&name],
            )
            .await?
            .is_some();
        if open {
            let sql = format!(
                "REVOKE CONNECT, TEMPORARY ON DATABASE {} FROM PUBLIC",
                ident(name)
            );
            self.admin().await?.batch_execute(&sql).await?;
        }
        Ok(())
    }

    async fn owner_of(&self, database: &str) -> Result<String> {
        self.database(database)
            .await?
            .map(|db| db.owner)
            .ok_or_else(|| SqlError::Missing {
                object: "database",
                name: database.to_string(),
            })
    }

    /// `CREATE DATABASE name TEMPLATE from`. PostgreSQL refuses it while
    /// anyone else is connected to `from`, so the source's other sessions are
    /// ended first, and again each time one wins the race back in.
    async fn template_copy(&self, name: &str, owner: &str, from: &str) -> Result<()> {
        let create = format!(
            "CREATE DATABASE {} OWNER {} TEMPLATE {}",
            ident(name),
            ident(owner),
            ident(from)
        );
        match self.alone_in(&[from], &create).await {
            Err(SqlError::Server {
                code: Some(code), ..
            }) if code == "55006" => Err(SqlError::Server {
                code: Some(code),
                message: format!(
                    "database {from:?} kept getting new sessions while it was copied; \
                     set spec.postgres.copyStrategy to Logical on the provider to copy without disconnecting them"
                ),
                transient: true,
            }),
            other => other,
        }
    }

    /// Runs `sql` as the admin with no one else connected to `databases`
    /// (PostgreSQL neither copies nor renames a database in use): their
    /// sessions are ended first, and again each time one wins the race back
    /// in (`55006`), at most [`TEMPLATE_ATTEMPTS`] times.
    async fn alone_in(&self, databases: &[&str], sql: &str) -> Result<()> {
        let admin = self.admin().await?;
        let names: Vec<String> = databases.iter().map(|d| d.to_string()).collect();
        let mut attempt = 0;
        loop {
            attempt += 1;
            admin
                .execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                     WHERE datname = ANY($1) AND pid <> pg_backend_pid()",
                    &[&names],
                )
                .await?;
            match admin.batch_execute(sql).await.map_err(SqlError::from) {
                Err(SqlError::Server { code, .. })
                    if code.as_deref() == Some("55006") && attempt < TEMPLATE_ATTEMPTS =>
                {
                    tokio::time::sleep(Duration::from_millis(50 * u64::from(attempt))).await;
                }
                other => return other,
            }
        }
    }

    /// Hands everything in database `name` that `from_owner` owns (a
    /// template copy keeps its source's owners) to `owner`, so the copy has
    /// no tie to the source's role: its owner can use it, and either role can
    /// be dropped later. One transaction, in the copy.
    ///
    /// `REASSIGN OWNED` also moves shared objects, which here means the
    /// databases `from_owner` owns: they are handed back in the same
    /// transaction. `DROP OWNED` then revokes what was granted to
    /// `from_owner` inside the copy. A superuser source owner (an adopted
    /// database) is left as it is: its objects cannot be reassigned.
    async fn take_ownership(&self, name: &str, from_owner: &str, owner: &str) -> Result<()> {
        if from_owner == owner {
            return Ok(());
        }
        let admin = self.admin().await?;
        let superuser = admin
            .query_opt(
                "SELECT rolsuper FROM pg_roles WHERE rolname = $1",
                &[&from_owner],
            )
            .await?
            .is_none_or(|row| row.get::<_, bool>(0));
        if superuser {
            return Ok(());
        }
        let owned: Vec<String> = admin
            .query(
                "SELECT d.datname FROM pg_database d JOIN pg_roles r ON r.oid = d.datdba \
                 WHERE r.rolname = $1",
                &[&from_owner],
            )
            .await?
            .iter()
            .map(|row| row.get(0))
            .collect();
        let mut sql = format!(
            "REASSIGN OWNED BY {} TO {};",
            ident(from_owner),
            ident(owner)
        );
        for database in &owned {
            sql.push_str(&format!(
                " ALTER DATABASE {} OWNER TO {};",
                ident(database),
                ident(from_owner)
            ));
        }
        sql.push_str(&format!(" DROP OWNED BY {};", ident(from_owner)));
        // Two copies of one source (a branch and a snapshot made together)
        // would both rewrite the source database's catalog row: one at a
        // time, server-wide. The lock is held by a session of its own in the
        // admin database (advisory locks are per database, and re-entrant
        // within one session), released when that session closes.
        let lock = self.connect(&self.admin).await?;
        lock.execute("SELECT pg_advisory_lock($1)", &[&OWNERSHIP_LOCK])
            .await?;
        let copy = self.connect_to(name).await?;
        copy.batch_execute(&sql).await?;
        drop(lock);
        Ok(())
    }

    /// Runs `sql` (one simple query: one transaction) in database `name` as
    /// the admin, over a new connection whose `search_path` no tenant can
    /// change: the names of the columns of its rows, and every cell of them
    /// as text.
    pub async fn run_in(&self, name: &str, sql: &str) -> Result<SqlAnswer> {
        let client = self.connect_to(name).await?;
        let mut answer = SqlAnswer::default();
        for message in client.simple_query(sql).await? {
            match message {
                tokio_postgres::SimpleQueryMessage::RowDescription(columns) => {
                    answer.columns = columns.iter().map(|c| c.name().to_string()).collect();
                }
                tokio_postgres::SimpleQueryMessage::Row(row) => {
                    if answer.columns.is_empty() {
                        answer.columns =
                            row.columns().iter().map(|c| c.name().to_string()).collect();
                    }
                    answer.rows.push(
                        (0..row.len())
                            .map(|i| row.get(i).map(str::to_string))
                            .collect(),
                    );
                }
                _ => {}
            }
        }
        Ok(answer)
    }

    /// Database `name`'s oid, if it exists: what tells one database of a
    /// name from another made under it later.
    pub async fn database_oid(&self, name: &str) -> Result<Option<u32>> {
        let row = self
            .admin()
            .await?
            .query_opt("SELECT oid FROM pg_database WHERE datname = $1", &[&name])
            .await?;
        Ok(row.map(|row| row.get(0)))
    }

    /// Hands database `name`, owned by role `from`, and everything in it to
    /// role `to`, which alone (with the admin) may connect to it; `from`
    /// keeps nothing there. Re-runnable: a `from` that is gone was done.
    pub async fn hand_over(&self, name: &str, from: &str, to: &str) -> Result<()> {
        if self.role(from).await?.is_some() {
            let sql = format!(
                "REASSIGN OWNED BY {from} TO {to}; DROP OWNED BY {from}",
                from = ident(from),
                to = ident(to)
            );
            self.connect_to(name).await?.batch_execute(&sql).await?;
        }
        let sql = format!(
            "ALTER DATABASE {name} OWNER TO {to}; \
             REVOKE CONNECT, TEMPORARY ON DATABASE {name} FROM PUBLIC; \
             GRANT CONNECT, TEMPORARY ON DATABASE {name} TO {to}",
            name = ident(name),
            to = ident(to)
        );
        self.admin().await?.batch_execute(&sql).await?;
        Ok(())
    }

    /// In one transaction, renames database `name` to `old` and `staged` to
    /// `name`: clients of `name` find the new database under the same name.
    /// Both databases' sessions are ended first (PostgreSQL renames no
    /// database anyone is connected to), and again each time one wins the
    /// race back in.
    pub async fn swap_in(&self, name: &str, staged: &str, old: &str) -> Result<()> {
        let sql = format!(
            "ALTER DATABASE {name} RENAME TO {old}; ALTER DATABASE {staged} RENAME TO {name}",
            name = ident(name),
            old = ident(old),
            staged = ident(staged)
        );
        self.alone_in(&[name, staged], &sql).await
    }

    /// Drops database `name`, ending its sessions (`WITH (FORCE)`). Gone
    /// already is fine.
    pub async fn drop_database(&self, name: &str) -> Result<()> {
        let sql = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", ident(name));
        self.admin().await?.batch_execute(&sql).await?;
        Ok(())
    }

    /// Drops role `name` if dbops made it together with a database marked
    /// `marker` (the role carries the same marker). Gone already, or anyone
    /// else's, is left alone.
    pub async fn drop_role_made_with(&self, name: &str, marker: &str) -> Result<()> {
        match self.role(name).await? {
            Some(Some(comment)) if comment.starts_with(MARKER_PREFIX) && comment == marker => {
                let sql = format!("DROP ROLE IF EXISTS {}", ident(name));
                self.admin().await?.batch_execute(&sql).await?;
                Ok(())
            }
            _ => Ok(()),
        }
    }

    /// Drops database `name` and role `name` only where they are `marker`'s:
    /// the role carries the marker, and the database carries it too or, a
    /// copy cut short, is unmarked and owned by that role (the rule
    /// [`Server::ensure_database`] adopts by). Anything else under the name
    /// is left alone; gone already is fine.
    pub async fn drop_own(&self, name: &str, marker: &str) -> Result<()> {
        let role_is_ours = self.role(name).await?.flatten().as_deref() == Some(marker);
        if let Some(db) = self.database(name).await? {
            let ours = db.marker() == Some(marker)
                || (db.comment.is_none() && db.owner == name && role_is_ours);
            if ours {
                self.drop_database(name).await?;
            }
        }
        if role_is_ours {
            let sql = format!("DROP ROLE IF EXISTS {}", ident(name));
            self.admin().await?.batch_execute(&sql).await?;
        }
        Ok(())
    }

    /// Sets the password of `db`'s owner, if dbops made that role together
    /// with the database (the same marker): never the password of a role
    /// someone else made, or of a database that was adopted.
    pub async fn set_password(&self, db: &DatabaseInfo, password: &Password) -> Result<()> {
        let name = &db.owner;
        match (self.role(name).await?, db.marker()) {
            (Some(Some(comment)), Some(marker)) if comment == marker => {
                let sql = format!(
                    "ALTER ROLE {} PASSWORD {}",
                    ident(name),
                    literal(&verifier(password))?
                );
                self.admin().await?.batch_execute(&sql).await?;
                Ok(())
            }
            (Some(_), _) => Err(SqlError::Conflict {
                object: "role",
                name: name.to_string(),
            }),
            (None, _) => Err(SqlError::Missing {
                object: "role",
                name: name.to_string(),
            }),
        }
    }

    /// The URI applications connect to database `database` with as `role`
    /// (without a password when `None`: the caller keeps it).
    pub fn uri(&self, role: &str, password: Option<&Password>, database: &str) -> ConnectionUri {
        let encode = |s: &str| percent_encoding::utf8_percent_encode(s, UNRESERVED).to_string();
        let credentials = match password {
            Some(password) => format!("{}:{}", encode(role), encode(password.expose())),
            None => encode(role),
        };
        let host = if self.public.host.contains(':') && !self.public.host.starts_with('[') {
            format!("[{}]", self.public.host)
        } else {
            self.public.host.clone()
        };
        let query = self
            .public
            .sslmode
            .as_deref()
            .map(|mode| format!("?sslmode={}", encode(mode)))
            .unwrap_or_default();
        ConnectionUri::new(format!(
            "postgresql://{credentials}@{host}:{}/{}{query}",
            self.public.port,
            encode(database)
        ))
    }
}

/// Everything but RFC 3986's unreserved characters is percent-encoded.
const UNRESERVED: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

fn parse_address(address: &str) -> std::result::Result<PublicAddress, String> {
    let (host, port) = match address.rsplit_once(':') {
        Some((host, port)) => (
            host,
            port.parse()
                .map_err(|_| format!("connectionHost {address:?} has an invalid port"))?,
        ),
        None => (address, 5432),
    };
    Ok(PublicAddress {
        host: host.to_string(),
        port,
        sslmode: None,
    })
}

/// Why a login with a connection URI did not work.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LoginError {
    /// The server refused the user name or password (SQLSTATE `28P01` or `28000`).
    #[error("the server refused the password")]
    Refused,
    /// The URI cannot be used by this client (the message never holds it).
    #[error("the connection URI cannot be used to connect ({0})")]
    Unusable(&'static str),
    /// No session: the server could not be reached, or ended the attempt.
    #[error("could not connect: {0}")]
    Unreachable(String),
}

/// Logs in with `uri` and runs `SELECT 1`, within `timeout`: the check that
/// a connection Secret works. Errors never hold the URI or the password.
pub async fn try_login(
    uri: &SecretString,
    timeout: Duration,
) -> std::result::Result<(), LoginError> {
    let mut config: Config = uri
        .expose_secret()
        .parse()
        .map_err(|_| LoginError::Unusable("not a URI this client reads"))?;
    config.connect_timeout(timeout);
    let attempt = async {
        let (client, connection) = config.connect(tls()).await?;
        let driver = tokio::spawn(connection);
        let answer = client.simple_query("SELECT 1").await;
        drop(client);
        let _ = driver.await;
        answer.map(|_| ())
    };
    match tokio::time::timeout(timeout, attempt).await {
        Err(_) => Err(LoginError::Unreachable("timed out".to_string())),
        Ok(Ok(())) => Ok(()),
        Ok(Err(error)) => {
            let code = error.code().map(|c| c.code());
            if matches!(code, Some("28P01" | "28000")) {
                return Err(LoginError::Refused);
            }
            let message = error
                .as_db_error()
                .map(|db| db.message().to_string())
                .unwrap_or_else(|| error.to_string());
            Err(LoginError::Unreachable(message))
        }
    }
}

/// rustls with the system's root certificates (the ring provider, as
/// everywhere in dbops).
fn tls() -> MakeRustlsConnect {
    crate::providers::base::http::ensure_crypto_provider();
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_native_certs::load_native_certs().certs {
        // A certificate the store cannot use is skipped, as every TLS client does.
        let _ = roots.add(cert);
    }
    let config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    MakeRustlsConnect::new(config)
}

/// A SCRAM-SHA-256 verifier of `password`: what the server stores, so the
/// password itself never travels in a statement.
/// The SCRAM-SHA-256 verifier of `password`: what `PASSWORD '…'` is given,
/// so the password itself is never in statement text.
pub fn verifier(password: &Password) -> String {
    postgres_protocol::password::scram_sha_256(password.expose().as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server(endpoint: &str, host: Option<&str>) -> std::result::Result<Server, String> {
        Server::new(endpoint, None, host, Duration::from_secs(5))
    }

    #[test]
    fn endpoints_are_checked() {
        assert!(server("postgres://admin@db:5432/postgres?sslmode=disable", None).is_ok());
        assert_eq!(
            server("https://db", None).unwrap_err(),
            "spec.endpoint must be a postgres:// URL for the postgres API"
        );
        assert_eq!(
            server("postgres://admin:hunter2@db/postgres", None).unwrap_err(),
            "spec.endpoint must not carry a password: put it in the credentials Secret"
        );
        assert!(
            server("postgres://db/postgres?sslmode=bogus", None)
                .unwrap_err()
                .contains("unknown sslmode")
        );
    }

    #[test]
    fn uris_name_the_public_address_and_keep_sslmode() {
        let s = server(
            "postgres://admin@127.0.0.1:5432/postgres?sslmode=disable",
            Some("pg.db.svc:6432"),
        )
        .unwrap();
        let password = Password::new("p@ss/w:rd");
        assert_eq!(
            s.uri("team-a-shop-1234", Some(&password), "team-a-shop-1234")
                .expose(),
            "postgresql://team-a-shop-1234:p%40ss%2Fw%3Ard@pg.db.svc:6432/team-a-shop-1234?sslmode=disable"
        );
        let plain = server("postgres://admin@db/postgres", None).unwrap();
        assert_eq!(
            plain.uri("r", None, "d").expose(),
            "postgresql://r@db:5432/d"
        );
    }

    #[test]
    fn database_comments_carry_the_marker_and_a_copys_project() {
        let project = database_comment("dbops-u1-project-create", None);
        assert_eq!(project, "dbops-u1-project-create");
        assert_eq!(comment_marker(&project), "dbops-u1-project-create");
        assert_eq!(comment_parent(&project), None);
        let branch = database_comment("dbops-u2-branch-create", Some("team-a-shop-1234"));
        assert_eq!(comment_marker(&branch), "dbops-u2-branch-create");
        assert_eq!(comment_parent(&branch), Some("team-a-shop-1234"));
        // A comment someone else wrote names no parent, even in that form.
        assert_eq!(comment_parent("mine;parent=team-a-shop-1234"), None);
        let info = |comment: &str| DatabaseInfo {
            name: "d".into(),
            owner: "d".into(),
            comment: Some(comment.to_string()),
            allows_connections: true,
        };
        assert_eq!(info(&branch).marker(), Some("dbops-u2-branch-create"));
        assert_eq!(info("hand-made").marker(), None);
    }

    #[test]
    fn passwords_go_as_verifiers() {
        let v = verifier(&Password::new("secret"));
        assert!(v.starts_with("SCRAM-SHA-256$4096:"), "{v}");
        assert!(!v.contains("secret"));
    }
}
