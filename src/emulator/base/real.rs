//! Real databases behind the emulated vendors (`--emulator-postgres URL`).
//!
//! With a PostgreSQL server configured, every emulated project, branch,
//! preview and restore is also a real database on that server, owned by a
//! login role of the same name, and the connection URIs the emulators hand
//! out name that server, role, password and database, so they connect. A
//! branch is a copy of its parent's data; a snapshot (backup) is a frozen
//! copy made when it is taken (owned by a role that cannot log in, in a
//! database that allows no connections), and a restore is a copy of that.
//! Password endpoints change the real role's password; deletes drop the real
//! database and its role.
//!
//! The work is done by [`Server`], the core the `postgres` provider uses:
//! every role and database carries a `dbops-emulator-…` marker, so nothing
//! dbops did not make is ever changed or dropped.
//!
//! **Names.** A real database (and its role) is named after the emulated
//! object's id: `emu_<api>_<id>` ([`name`]). Ids are random, so names are
//! unique per object (an id that is not a plain lowercase identifier, such
//! as a seeded CapyDB project's, is cleaned and gets a hash of itself).
//!
//! **Order.** Emulators keep their state in memory behind a lock that is
//! never held across a call to the server. A change that needs the server
//! runs in [`staged`]: it is checked and planned on the locked state, the
//! server does its part with the lock released, and only then is the change
//! recorded. Changes that touch the server run one at a time, across all the
//! emulated vendors (plain reads do not wait for them), so what was planned
//! still holds when it is recorded. When the server fails, nothing is
//! recorded, anything half made is dropped (in the background), and the
//! vendor answers `503` in its own error shape, so clients retry.
//!
//! Records remember whether they have a real database (`real` in the state
//! file), so a state file written without `--emulator-postgres` keeps working
//! with it (older objects keep their unreachable URIs) and the other way
//! round (real databases stay on the server; the URIs go back to the
//! emulator's hosts).

use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use secrecy::SecretString;
use sha2::{Digest, Sha256};

use super::scaffold::{HasIdempotency, Store, replay, take_idempotency_key};
use super::wire::ApiError;
use crate::api::v1alpha1::CopyStrategy;
use crate::providers::Password;
use crate::providers::postgres::SqlError;
use crate::providers::postgres::server::{MARKER_PREFIX, Server, Source};

/// Longest PostgreSQL identifier, in bytes.
const MAX_IDENTIFIER: usize = 63;

/// How long connecting to the server may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A PostgreSQL server on which the emulated vendors make real databases.
pub struct RealDatabases {
    server: Server,
    /// The address connection URIs name (the URL's host and port).
    host: String,
    port: u16,
    /// Changes that touch the server, one at a time.
    writer: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for RealDatabases {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RealDatabases")
            .field("host", &self.host)
            .field("port", &self.port)
            .finish_non_exhaustive()
    }
}

/// Two handles are equal when they are the same server handle.
impl PartialEq for RealDatabases {
    fn eq(&self, other: &Self) -> bool {
        std::ptr::eq(self, other)
    }
}

impl Eq for RealDatabases {}

/// Where a new real database's contents come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Contents {
    /// Nothing: an empty database.
    Empty,
    /// A copy of a live database (a branch of it, or a snapshot of it), made
    /// without disconnecting its clients.
    Copy(String),
    /// A copy of a frozen snapshot database (a restore).
    Snapshot(String),
}

/// A real database (and its role) to make.
#[derive(Clone, Debug)]
pub struct Make {
    pub name: String,
    /// The role's password; `None`: a frozen snapshot (a role that cannot
    /// log in, a database that allows no connections).
    pub password: Option<Password>,
    pub contents: Contents,
}

/// What a change asks of the server.
#[derive(Clone, Debug)]
pub enum Work {
    Nothing,
    Make(Make),
    /// Drop these databases and their roles.
    Drop(Vec<String>),
    SetPassword {
        name: String,
        password: Password,
    },
}

/// What a planned change is: answered at once (a retry of an earlier call),
/// or to be made.
pub enum Step<P, T> {
    Answer(T),
    Go(P, Work),
}

/// The real database of an emulated object of `api` with id `id`:
/// `emu_<api>_<id>`, when the id is lowercase letters, digits and `_` and the
/// name fits in 63 bytes; otherwise the id is cut and lowercased, and a hash
/// of it keeps the name unique.
pub fn name(api: &str, id: &str) -> String {
    let clean: String = id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect();
    let plain = format!("emu_{api}_{clean}");
    if clean == id && plain.len() <= MAX_IDENTIFIER {
        return plain;
    }
    let digest = Sha256::digest(id.as_bytes());
    let hash: String = digest.iter().take(4).map(|b| format!("{b:02x}")).collect();
    let room = MAX_IDENTIFIER.saturating_sub("emu_".len() + api.len() + 1 + 1 + hash.len());
    let prefix: String = clean.chars().take(room).collect();
    format!("emu_{api}_{prefix}_{hash}")
}

/// The marker of the role and database `name`.
fn marker(name: &str) -> String {
    format!("{MARKER_PREFIX}emulator-{name}")
}

/// The answer of an emulated vendor when its database server failed: `503`
/// in the vendor's error shape, so clients retry. The server's message names
/// objects, never a password.
pub fn unavailable<V>(error: &SqlError) -> ApiError<V> {
    ApiError::coded(
        StatusCode::SERVICE_UNAVAILABLE,
        "UNAVAILABLE",
        format!("the database server failed, retry: {error}"),
    )
}

/// The answer of an emulated vendor whose SQL the server refused: `status`
/// with the server's message (it names objects, never a password) for a
/// statement that will fail again, else [`unavailable`] (`503`, retry).
pub fn sql_failed<V>(error: SqlError, status: StatusCode) -> ApiError<V> {
    match error {
        SqlError::Server {
            transient: false,
            message,
            ..
        } => ApiError::new(status, message),
        other => unavailable(&other),
    }
}

impl RealDatabases {
    /// The server at `url`, `postgres://user:password@host:port/database`
    /// (`?sslmode=…` as libpq reads it), whose user may create roles and
    /// databases. Nothing is contacted until [`RealDatabases::check`] or the
    /// first change. Errors never repeat the URL (it may hold a password).
    pub fn new(url: &str, connect_timeout: Duration) -> Result<Self, String> {
        let mut parsed = url::Url::parse(url)
            .map_err(|_| "--emulator-postgres is not a valid postgres:// URL".to_string())?;
        if !matches!(parsed.scheme(), "postgres" | "postgresql") {
            return Err("--emulator-postgres must be a postgres:// URL".to_string());
        }
        let password = match parsed.password() {
            Some(encoded) => Some(SecretString::from(
                percent_encoding::percent_decode_str(encoded)
                    .decode_utf8()
                    .map_err(|_| "the password in --emulator-postgres is not valid UTF-8")?
                    .into_owned(),
            )),
            None => None,
        };
        parsed
            .set_password(None)
            .map_err(|_| "--emulator-postgres names no host".to_string())?;
        let host = parsed
            .host_str()
            .filter(|h| !h.is_empty())
            .ok_or("--emulator-postgres names no host")?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let port = parsed.port().unwrap_or(5432);
        let server = Server::new(parsed.as_str(), password.as_ref(), None, connect_timeout)
            .map_err(|e| {
                format!(
                    "--emulator-postgres: {}",
                    e.replace("spec.endpoint", "the URL")
                )
            })?;
        Ok(Self {
            server,
            host,
            port,
            writer: tokio::sync::Mutex::new(()),
        })
    }

    /// Connects once, to say at start-up whether the server can be used.
    pub async fn check(&self) -> Result<(), String> {
        self.server.major_version().await.map(|_| ()).map_err(|e| {
            format!(
                "cannot use the PostgreSQL server of --emulator-postgres ({}:{}): {e}",
                self.host, self.port
            )
        })
    }

    /// The host connection URIs name.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The port connection URIs name.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The URI of database `name` as its role, with `password`.
    pub fn uri(&self, name: &str, password: &str) -> String {
        self.server
            .uri(name, Some(&Password::new(password)), name)
            .expose()
            .to_string()
    }

    /// Makes a database and its role, as `make` says. A failure can leave
    /// the role, or an incomplete database, behind: [`staged`] drops them.
    pub async fn make(&self, make: &Make) -> Result<(), SqlError> {
        let marker = marker(&make.name);
        let password = make.password.as_ref();
        self.server
            .ensure_role(&make.name, &marker, password)
            .await?;
        let source = match &make.contents {
            Contents::Empty => Source::Empty,
            Contents::Copy(from) => Source::Copy {
                from,
                // An emulated vendor never disconnects a parent's clients.
                strategy: CopyStrategy::Logical,
            },
            Contents::Snapshot(from) => Source::Copy {
                from,
                // Nobody is ever connected to a snapshot.
                strategy: CopyStrategy::Template,
            },
        };
        self.server
            .ensure_database(
                &make.name,
                &make.name,
                &marker,
                None,
                source,
                password.is_some(),
            )
            .await
    }

    /// Drops database `name` (ending its sessions) and its role, if the
    /// emulator made them: a database or role of that name made by anyone
    /// else (a create that failed on the name, say) is left alone. Gone
    /// already is fine.
    pub async fn remove(&self, name: &str) -> Result<(), SqlError> {
        self.server.drop_own(name, &marker(name)).await
    }

    /// Runs `sql` in database `name` as the admin (a vendor's SQL endpoint).
    pub async fn run_sql(
        &self,
        name: &str,
        sql: &str,
    ) -> Result<crate::providers::postgres::server::SqlAnswer, SqlError> {
        self.server.run_in(name, sql).await
    }

    /// Sets the password of the role of database `name`.
    pub async fn set_password(&self, name: &str, password: &Password) -> Result<(), SqlError> {
        let db = self
            .server
            .database(name)
            .await?
            .ok_or_else(|| SqlError::Missing {
                object: "database",
                name: name.to_string(),
            })?;
        self.server.set_password(&db, password).await
    }

    async fn run(&self, work: &Work) -> Result<(), SqlError> {
        match work {
            Work::Nothing => Ok(()),
            Work::Make(make) => self.make(make).await,
            Work::Drop(names) => {
                for name in names {
                    self.remove(name).await?;
                }
                Ok(())
            }
            Work::SetPassword { name, password } => self.set_password(name, password).await,
        }
    }

    /// Drops `names` in the background: for objects removed out of band
    /// (as if in the vendor's console), by code that cannot wait.
    pub fn drop_later(self: &Arc<Self>, names: Vec<String>) {
        if names.is_empty() {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            tracing::warn!(
                count = names.len(),
                "emulator: no runtime to drop real databases removed out of band"
            );
            return;
        };
        let real = self.clone();
        runtime.spawn(async move {
            let _writer = real.writer.lock().await;
            for name in names {
                if let Err(error) = real.remove(&name).await {
                    tracing::warn!(database = %name, %error, "emulator: could not drop a real database");
                }
            }
        });
    }
}

/// A change of an emulator's state that may need the server: `plan` checks
/// it on the locked state and says what the server must do (or answers at
/// once); without real databases `commit` records it under the same lock, as
/// if there were no server. With them, the server does its part with the
/// lock released, and `commit` then records the change (told that real
/// databases are on). A server failure answers `503` and records nothing.
/// A database made for a change that is not recorded (`commit` refused it,
/// or the request was abandoned while the server worked) is dropped.
pub async fn staged<S, V, P, T>(
    store: &Store<S>,
    real: Option<&Arc<RealDatabases>>,
    plan: impl FnOnce(&mut S) -> Result<Step<P, T>, ApiError<V>>,
    commit: impl FnOnce(&mut S, P, bool) -> Result<T, ApiError<V>>,
) -> Result<T, ApiError<V>> {
    let Some(real) = real else {
        let mut state = store.lock();
        return match plan(&mut state)? {
            Step::Answer(answer) => Ok(answer),
            Step::Go(planned, _) => commit(&mut state, planned, false),
        };
    };
    let _writer = real.writer.lock().await;
    let step = plan(&mut store.lock())?;
    let (planned, work) = match step {
        Step::Answer(answer) => return Ok(answer),
        Step::Go(planned, work) => (planned, work),
    };
    let mut unrecorded = Unrecorded {
        real,
        name: match &work {
            Work::Make(make) => Some(make.name.clone()),
            _ => None,
        },
    };
    if let Err(error) = real.run(&work).await {
        tracing::warn!(%error, "emulator: the database server failed");
        return Err(unavailable(&error));
    }
    let recorded = commit(&mut store.lock(), planned, true);
    if recorded.is_ok() {
        unrecorded.name = None;
    }
    recorded
}

/// A database made (or being made) for a change not yet recorded: dropped
/// in the background unless the change is recorded.
struct Unrecorded<'a> {
    real: &'a Arc<RealDatabases>,
    name: Option<String>,
}

impl Drop for Unrecorded<'_> {
    fn drop(&mut self) {
        if let Some(name) = self.name.take() {
            self.real.drop_later(vec![name]);
        }
    }
}

/// [`staged`] for an idempotent create (as [`Store::idempotent`]): a retry
/// with the same key and request answers the first answer, a different
/// request with it is a 409, and a failed call is not remembered.
pub async fn idempotent<S: HasIdempotency, V, P>(
    store: &Store<S>,
    real: Option<&Arc<RealDatabases>>,
    capability: &'static str,
    mut request: serde_json::Map<String, serde_json::Value>,
    plan: impl FnOnce(
        &mut S,
        &serde_json::Map<String, serde_json::Value>,
    ) -> Result<(P, Work), ApiError<V>>,
    commit: impl FnOnce(
        &mut S,
        &serde_json::Map<String, serde_json::Value>,
        P,
        bool,
    ) -> Result<serde_json::Value, ApiError<V>>,
) -> Result<axum::Json<serde_json::Value>, ApiError<V>> {
    let key = take_idempotency_key(&mut request)?.map(|key| format!("{capability} {key}"));
    let fingerprint = serde_json::Value::Object(request.clone());
    let (key, fingerprint, request) = (&key, &fingerprint, &request);
    staged(
        store,
        real,
        |state: &mut S| {
            if let Some(key) = key
                && let Some(answer) = replay(state.idempotency(), key, fingerprint)?
            {
                return Ok(Step::Answer(answer.clone()));
            }
            let (planned, work) = plan(state, request)?;
            Ok(Step::Go(planned, work))
        },
        |state: &mut S, planned, on| {
            let answer = commit(state, request, planned, on)?;
            if let Some(key) = key {
                state
                    .idempotency()
                    .insert(key.clone(), (fingerprint.clone(), answer.clone()));
            }
            Ok(answer)
        },
    )
    .await
    .map(axum::Json)
}

/// Whether a record is not backed by a real database (state files leave
/// the flag out then).
pub fn is_false(real: &bool) -> bool {
    !*real
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_come_from_ids_and_fit() {
        assert_eq!(name("infrai", "br_abc123"), "emu_infrai_br_abc123");
        assert_eq!(
            name("supabase", "abcdefghijklmnopqrst"),
            "emu_supabase_abcdefghijklmnopqrst"
        );
        // Anything else is cleaned, and a hash keeps it apart from the id
        // it now looks like.
        let odd = name("capydb", "Prj-Shop");
        assert!(odd.starts_with("emu_capydb_prj_shop_"), "{odd}");
        assert_ne!(odd, name("capydb", "prj_shop"));
        assert_ne!(odd, name("capydb", "prj-shop"));
        let long = name("capydb", &"x".repeat(100));
        assert_eq!(long.len(), MAX_IDENTIFIER, "{long}");
        assert_ne!(long, name("capydb", &"x".repeat(101)));
        assert!(marker("emu_db9_db_1").starts_with(MARKER_PREFIX));
    }

    #[test]
    fn the_url_gives_up_its_password_and_errors_never_show_it() {
        let real = RealDatabases::new(
            "postgres://admin:s%40cret@127.0.0.1:6543/postgres?sslmode=disable",
            CONNECT_TIMEOUT,
        )
        .unwrap();
        assert_eq!((real.host(), real.port()), ("127.0.0.1", 6543));
        assert_eq!(
            real.uri("emu_db9_db_1", "p@ss"),
            "postgresql://emu_db9_db_1:p%40ss@127.0.0.1:6543/emu_db9_db_1?sslmode=disable"
        );
        assert!(!format!("{real:?}").contains("cret"));
        for bad in [
            "not a url s3cret",
            "https://u:s3cret@db/x",
            "postgres://u:s3cret@db/x?bogus=1",
        ] {
            let error = RealDatabases::new(bad, CONNECT_TIMEOUT).unwrap_err();
            assert!(error.contains("--emulator-postgres"), "{error}");
            assert!(!error.contains("s3cret"), "{error}");
        }
        let plain =
            RealDatabases::new("postgresql://db.internal/postgres", CONNECT_TIMEOUT).unwrap();
        assert_eq!((plain.host(), plain.port()), ("db.internal", 5432));
    }
}
