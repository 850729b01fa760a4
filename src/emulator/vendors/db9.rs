//! Emulated DB9 customer API (`vendor-apis/db9.txt`), mounted under `/db9`:
//! databases, branches, admin credentials, backups and restores, behind Bearer
//! auth, with `{"message": "..."}` error bodies.
//!
//! Where the document is silent, the emulator chooses (and the client copes
//! with other reasonable choices):
//! - database names are unique per account (branches and restored databases
//!   are databases too): a duplicate is `409`, the document's "resource already
//!   exists";
//! - a database is `ready` as soon as it is created (the document: "returns
//!   credentials and connection string immediately");
//! - `GET /customer/databases/{id}` also shows `parent_database_id` for a branch
//!   (the document shows it only on the branch create answer), unless the
//!   emulator is strict ([`Db9Emulator::set_strict`]: then that read shows
//!   neither the parent nor the password); the client works either way;
//! - a backup is `creating` on its create answer and on the first read, then
//!   `completed` (the document only shows `creating`);
//! - a restore answers `pending`, then `running`, then `completed` (or `failed`)
//!   over two reads, and names the new database in `target_database_id`; the
//!   restore answers' shape is not in the document at all;
//! - an `idempotency_key` reused with a different restore request is a `409`;
//! - deleting a database removes it (later reads are `404`) and its backups;
//!   its branches are databases of their own and stay.
//!
//! With real databases ([`real`]), every database (branches and
//! restored ones too) is a real database on that server, owned by a role of
//! the same name (the `admin_user` of its answers) whose password is the
//! admin password (the one the create request chose, if any); its connection
//! string names the server. A branch starts as a copy of its parent's data
//! (`snapshot_at` is checked, but the copy is of now), a backup is a frozen
//! copy made when it is created, and a restore is a copy of the backup made
//! when the restore completes (it fails if the backup was deleted by then).
//! Reset-password changes the real role's password; deleting a database drops
//! it and its backups.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Value, json};

use crate::emulator::base::real::{self, Contents, Make, RealDatabases, Step, Work};
use crate::emulator::base::scaffold::{
    ApiKeys, IdempotencyCache, Persistent, Refusal, Sequence, Store, Vendor, oldest_first, replay,
    take_idempotency_key,
};
use crate::emulator::base::wire::{
    ApiError, json_object, now_rfc3339, optional_str, random_token, required_str, set_optional,
};
use crate::providers::Password;

const DEFAULT_REGION: &str = "us-east-1";
const ADMIN_USER: &str = "admin";
/// The API's name among the emulated ones (in real database names).
const API: &str = "db9";
const MAX_NAME_CHARS: usize = 63;
/// Reads of a backup that still show it `creating` (the create answer not counted).
const BACKUP_CREATING_READS: u32 = 1;
/// Reads of a restore before it completes: the first shows `running`, the second finishes it.
const RESTORE_READS_UNTIL_DONE: u32 = 2;

/// One database (a branch and a restored database are databases too).
/// No `Debug`: it holds the admin password.
#[derive(Clone, serde::Serialize, serde::Deserialize)]
struct DatabaseRecord {
    seq: u64,
    id: String,
    name: String,
    region: String,
    state: String,
    admin_password: String,
    parent_database_id: Option<String>,
    created_at: String,
    /// The emulator's stand-in for the database's contents.
    data: BTreeMap<String, String>,
    /// Backed by a real database ([`real`]).
    #[serde(default, skip_serializing_if = "real::is_false")]
    real: bool,
    /// Users made through `POST /customer/databases/{id}/users`.
    #[serde(default, skip_serializing_if = "std::collections::BTreeSet::is_empty")]
    users: std::collections::BTreeSet<String>,
}

#[derive(Clone, serde::Serialize, serde::Deserialize)]
struct BackupRecord {
    seq: u64,
    id: String,
    database_id: String,
    label: Option<String>,
    state: String,
    reads: u32,
    created_at: String,
    data: BTreeMap<String, String>,
    /// Backed by a real (frozen) database ([`real`]).
    #[serde(default, skip_serializing_if = "real::is_false")]
    real: bool,
}

#[derive(Clone, serde::Serialize, serde::Deserialize)]
struct RestoreRecord {
    id: String,
    backup_id: String,
    source_database_id: String,
    target_name: String,
    region: String,
    state: String,
    reads: u32,
    target_database_id: Option<String>,
    error: Option<String>,
    created_at: String,
    data: BTreeMap<String, String>,
    /// The backup has a real database to restore from.
    #[serde(default, skip_serializing_if = "real::is_false")]
    backup_real: bool,
}

#[derive(Default, serde::Serialize, serde::Deserialize)]
struct Db9State {
    next_seq: Sequence,
    databases: HashMap<String, DatabaseRecord>,
    backups: HashMap<String, BackupRecord>,
    restores: HashMap<String, RestoreRecord>,
    /// Restore idempotency: key -> (request without the key, restore id).
    restore_keys: IdempotencyCache<String>,
    /// Tokens that may only read (`GET`); anything else is a `403`.
    read_only_keys: Vec<String>,
    /// `POST /customer/databases` calls that created a database.
    database_creates: usize,
}

/// The emulated DB9 account; every accepted API key sees the same account.
pub struct Db9Emulator {
    api_keys: ApiKeys,
    state: Store<Db9State>,
    /// Serve only what the document shows: `GET /customer/databases/{id}`
    /// then leaves out `parent_database_id` (shown only on the branch create
    /// answer in the document), so tests prove the client needs no more.
    strict: std::sync::atomic::AtomicBool,
    /// The server databases and backups are real databases on, if any.
    real: Option<Arc<RealDatabases>>,
}

impl Db9Emulator {
    /// Serves only documented fields (see [`Db9Emulator`]'s `strict`).
    pub fn set_strict(&self, strict: bool) {
        self.strict
            .store(strict, std::sync::atomic::Ordering::SeqCst);
    }

    fn is_strict(&self) -> bool {
        self.strict.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// What a test can see of a database without going through HTTP.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DatabaseView {
    pub id: String,
    pub name: String,
    pub region: String,
    pub state: String,
    pub parent_database_id: Option<String>,
}

impl Db9Emulator {
    pub fn new(api_keys: Vec<String>) -> Self {
        Self {
            api_keys: ApiKeys::new(api_keys),
            state: Store::default(),
            strict: Default::default(),
            real: None,
        }
    }

    /// `self` making a real database on `real` for every database, branch,
    /// backup and restore.
    pub fn with_real(mut self, real: Option<Arc<RealDatabases>>) -> Self {
        self.real = real;
        self
    }

    /// The real database (and role) of the database or backup `id`.
    pub fn real_database(id: &str) -> String {
        real::name(API, id)
    }

    /// Every database (branches and restored ones included), oldest first.
    pub fn databases(&self) -> Vec<DatabaseView> {
        let state = self.state.lock();
        oldest_first(state.databases.values(), |d| d.seq)
            .into_iter()
            .map(|d| DatabaseView {
                id: d.id.clone(),
                name: d.name.clone(),
                region: d.region.clone(),
                state: d.state.clone(),
                parent_database_id: d.parent_database_id.clone(),
            })
            .collect()
    }

    /// Number of databases not disabled (branches and restored ones included).
    pub fn database_count(&self) -> usize {
        let state = self.state.lock();
        state
            .databases
            .values()
            .filter(|d| d.state != DISABLED)
            .count()
    }

    /// Number of `POST /customer/databases` calls that created a database.
    pub fn database_create_count(&self) -> usize {
        self.state.lock().database_creates
    }

    /// Number of backups.
    pub fn backup_count(&self) -> usize {
        self.state.lock().backups.len()
    }

    /// Number of restores ever started.
    pub fn restore_count(&self) -> usize {
        self.state.lock().restores.len()
    }

    /// The current admin password of a database.
    pub fn admin_password(&self, database_id: &str) -> Option<String> {
        self.state
            .lock()
            .databases
            .get(database_id)
            .map(|d| d.admin_password.clone())
    }

    /// Sets a database's state as the vendor would report it (`creating`, `failed`, ...).
    pub fn set_database_state(&self, database_id: &str, state: &str) -> bool {
        match self.state.lock().databases.get_mut(database_id) {
            Some(database) => {
                database.state = state.to_string();
                true
            }
            None => false,
        }
    }

    /// Deletes a database as if someone did it in the vendor's console.
    pub fn delete_database_out_of_band(&self, database_id: &str) -> bool {
        let mut state = self.state.lock();
        let databases = state.real_databases_of(database_id);
        let removed = remove_database(&mut state, database_id);
        if let Some(real) = &self.real {
            real.drop_later(databases);
        }
        removed
    }

    /// Writes a row into a database (the emulator's stand-in for SQL).
    pub fn write_data(&self, database_id: &str, key: &str, value: &str) -> bool {
        match self.state.lock().databases.get_mut(database_id) {
            Some(database) => {
                database.data.insert(key.to_string(), value.to_string());
                true
            }
            None => false,
        }
    }

    /// A database's contents, if it exists.
    pub fn data(&self, database_id: &str) -> Option<BTreeMap<String, String>> {
        self.state
            .lock()
            .databases
            .get(database_id)
            .map(|d| d.data.clone())
    }

    /// Accepts `key` as a token without write scope: reads work, writes answer `403`.
    pub fn add_read_only_key(&self, key: &str) {
        self.state.lock().read_only_keys.push(key.to_string());
    }
}

impl Db9State {
    fn seq(&mut self) -> u64 {
        self.next_seq.next()
    }

    /// A database that is not disabled.
    fn database(&self, id: &str) -> Result<&DatabaseRecord, Db9Error> {
        self.databases
            .get(id)
            .filter(|d| d.state != DISABLED)
            .ok_or_else(|| Db9Error::not_found("database", id))
    }

    /// A database, disabled or not (reads show a disabled one as it is).
    fn any_database(&self, id: &str) -> Result<&DatabaseRecord, Db9Error> {
        self.databases
            .get(id)
            .ok_or_else(|| Db9Error::not_found("database", id))
    }

    fn ensure_name_free(&self, name: &str) -> Result<(), Db9Error> {
        if self
            .databases
            .values()
            .any(|d| d.name == name && d.state != DISABLED)
        {
            return Err(Db9Error::conflict(format!(
                "a database named {name:?} already exists"
            )));
        }
        Ok(())
    }

    /// Numbers and records a planned database.
    fn add_database(&mut self, mut database: DatabaseRecord, real: bool) -> DatabaseRecord {
        database.seq = self.seq();
        database.real = real;
        self.databases.insert(database.id.clone(), database.clone());
        database
    }

    #[cfg(test)]
    fn new_database(
        &mut self,
        name: String,
        region: String,
        admin_password: Option<String>,
        parent_database_id: Option<String>,
        data: BTreeMap<String, String>,
    ) -> DatabaseRecord {
        let planned = planned_database(name, region, admin_password, parent_database_id, data);
        self.add_database(planned, false)
    }

    /// The real databases of database `id`: its own and its backups'.
    fn real_databases_of(&self, id: &str) -> Vec<String> {
        let own = self
            .databases
            .get(id)
            .filter(|d| d.real && d.state != DISABLED)
            .map(|d| &d.id);
        let backups = self
            .backups
            .values()
            .filter(|b| b.database_id == id && b.real)
            .map(|b| &b.id);
        own.into_iter()
            .chain(backups)
            .map(|id| Db9Emulator::real_database(id))
            .collect()
    }

    /// What the next read of restore `id` ends in, when it ends it: the
    /// database it makes (planned, with the real database to make), or why
    /// it fails. `None` while the restore runs on (or is over).
    fn restore_ending(&self, id: &str) -> Option<(Ending, Work)> {
        let restore = self.restores.get(id)?;
        if matches!(restore.state.as_str(), "completed" | "failed")
            || restore.reads + 1 < RESTORE_READS_UNTIL_DONE
            || self.ensure_name_free(&restore.target_name).is_err()
        {
            return None;
        }
        let contents = if restore.backup_real {
            match self.backups.get(&restore.backup_id).filter(|b| b.real) {
                Some(backup) => Contents::Snapshot(Db9Emulator::real_database(&backup.id)),
                None => {
                    let why = format!(
                        "backup {} was deleted before the restore finished",
                        restore.backup_id
                    );
                    return Some((Ending::Fail(why), Work::Nothing));
                }
            }
        } else {
            Contents::Empty
        };
        let database = planned_database(
            restore.target_name.clone(),
            restore.region.clone(),
            None,
            None,
            restore.data.clone(),
        );
        let work = make_database(&database, contents);
        Some((Ending::Into(Box::new(database)), work))
    }

    /// Moves a restore along by one read; the second read finishes it: into
    /// the database `ending` planned (backed by a real one when `real`), or
    /// failed as it says. Without an `ending`, into a new database that has
    /// no real one.
    fn advance_restore(&mut self, id: &str, ending: Option<Ending>, real: bool) {
        let Some(restore) = self.restores.get_mut(id) else {
            return;
        };
        if matches!(restore.state.as_str(), "completed" | "failed") {
            return;
        }
        restore.reads += 1;
        if restore.reads < RESTORE_READS_UNTIL_DONE {
            restore.state = "running".to_string();
            return;
        }
        let restore = restore.clone();
        let finished = match (self.ensure_name_free(&restore.target_name), ending) {
            (Err(e), _) => ("failed", None, Some(e.message)),
            (Ok(()), Some(Ending::Fail(why))) => ("failed", None, Some(why)),
            (Ok(()), ending) => {
                let (planned, real) = match ending {
                    Some(Ending::Into(planned)) => (*planned, real),
                    _ => (
                        planned_database(
                            restore.target_name.clone(),
                            restore.region.clone(),
                            None,
                            None,
                            restore.data.clone(),
                        ),
                        false,
                    ),
                };
                let database = self.add_database(planned, real);
                ("completed", Some(database.id), None)
            }
        };
        if let Some(restore) = self.restores.get_mut(id) {
            restore.state = finished.0.to_string();
            restore.target_database_id = finished.1;
            restore.error = finished.2;
        }
    }
}

/// How a restore ends ([`Db9State::restore_ending`]).
enum Ending {
    /// In this new database (planned, not yet recorded).
    Into(Box<DatabaseRecord>),
    Fail(String),
}

/// A database about to be made: its id and password are chosen;
/// [`Db9State::add_database`] numbers and records it.
fn planned_database(
    name: String,
    region: String,
    admin_password: Option<String>,
    parent_database_id: Option<String>,
    data: BTreeMap<String, String>,
) -> DatabaseRecord {
    DatabaseRecord {
        seq: 0,
        id: format!("db_{}", random_token(20)),
        name,
        region,
        state: "ready".to_string(),
        admin_password: admin_password.unwrap_or_else(|| random_token(24)),
        parent_database_id,
        created_at: now_rfc3339(),
        data,
        real: false,
        users: Default::default(),
    }
}

/// The real database of a planned database: made from `contents`, its role
/// logging in with the admin password.
fn make_database(database: &DatabaseRecord, contents: Contents) -> Work {
    Work::Make(Make {
        name: Db9Emulator::real_database(&database.id),
        password: Some(Password::new(database.admin_password.clone())),
        contents,
    })
}

/// The state a deleted database is left in: the document answers a delete
/// with "Database disabled", so the emulator deletes softly. A disabled
/// database is still listed and read (with this state), frees its name, and
/// answers 404 to everything else.
const DISABLED: &str = "disabled";

/// Disables a live database and removes its backups; its branches stay (they
/// are databases of their own, and the document does not say they go).
fn remove_database(state: &mut Db9State, id: &str) -> bool {
    let Some(database) = state.databases.get_mut(id).filter(|d| d.state != DISABLED) else {
        return false;
    };
    database.state = DISABLED.to_string();
    database.data.clear();
    // Its real database is dropped: reads must not hand out its URI.
    database.real = false;
    state.backups.retain(|_, b| b.database_id != id);
    true
}

fn host(d: &DatabaseRecord) -> String {
    format!(
        "{}.{}.db9.emulator.invalid",
        d.id.replace('_', "-"),
        d.region
    )
}

/// The real server of a record backed by a real database.
fn real_of<'a>(real: Option<&'a RealDatabases>, d: &DatabaseRecord) -> Option<&'a RealDatabases> {
    real.filter(|_| d.real)
}

/// The user of a database's connection string: its own role when it is real.
fn admin_user(d: &DatabaseRecord, real: Option<&RealDatabases>) -> String {
    match real_of(real, d) {
        Some(_) => Db9Emulator::real_database(&d.id),
        None => ADMIN_USER.to_string(),
    }
}

fn connection_string(d: &DatabaseRecord, real: Option<&RealDatabases>) -> String {
    if let Some(real) = real_of(real, d) {
        return real.uri(&Db9Emulator::real_database(&d.id), &d.admin_password);
    }
    format!(
        "postgresql://{ADMIN_USER}:{}@{}:5433/{}",
        d.admin_password,
        host(d),
        d.name
    )
}

/// A database as `GET /customer/databases` lists it.
fn database_summary_json(d: &DatabaseRecord) -> Value {
    json!({
        "id": d.id,
        "name": d.name,
        "region": d.region,
        "state": d.state,
        "created_at": d.created_at,
    })
}

/// A database as `GET /customer/databases/{id}` shows it (`parent_database_id`
/// for branches only).
fn database_json(d: &DatabaseRecord, real: Option<&RealDatabases>) -> Value {
    let mut v = database_summary_json(d);
    v["connection_string"] = json!(connection_string(d, real));
    set_optional(
        &mut v,
        "parent_database_id",
        d.parent_database_id.as_deref(),
    );
    v
}

/// A database as its create answer shows it: with the admin credentials.
fn database_created_json(d: &DatabaseRecord, real: Option<&RealDatabases>) -> Value {
    let mut v = database_json(d, real);
    v["admin_user"] = json!(admin_user(d, real));
    v["admin_password"] = json!(d.admin_password);
    v
}

fn credentials_json(d: &DatabaseRecord, real: Option<&RealDatabases>) -> Value {
    json!({
        "admin_user": admin_user(d, real),
        "admin_password": d.admin_password,
        "connection_string": connection_string(d, real),
    })
}

fn backup_json(b: &BackupRecord) -> Value {
    let mut v = json!({
        "id": b.id,
        "database_id": b.database_id,
        "state": b.state,
        "created_at": b.created_at,
    });
    set_optional(&mut v, "label", b.label.as_deref());
    v
}

/// A restore. Not in the document: the whole shape, and in particular
/// `target_database_id`, the new database once the restore is `completed`.
fn restore_json(r: &RestoreRecord) -> Value {
    let mut v = json!({
        "id": r.id,
        "backup_id": r.backup_id,
        "source_database_id": r.source_database_id,
        "target_name": r.target_name,
        "state": r.state,
        "created_at": r.created_at,
    });
    set_optional(
        &mut v,
        "target_database_id",
        r.target_database_id.as_deref(),
    );
    set_optional(&mut v, "error", r.error.as_deref());
    v
}

/// A database name: 1 to 63 letters, digits, `-`, `_` or `.` (the document gives no rule).
fn validate_name(name: &str) -> Result<(), Db9Error> {
    if name.chars().count() > MAX_NAME_CHARS {
        return Err(Db9Error::unprocessable(format!(
            "name must be at most {MAX_NAME_CHARS} characters"
        )));
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        return Err(Db9Error::unprocessable(
            "name may contain only letters, digits, '-', '_' and '.'",
        ));
    }
    Ok(())
}

/// A DB9 error answer: `{"message": "..."}` with an HTTP status.
pub type Db9Error = ApiError<Db9Emulator>;
type Shared = Arc<Db9Emulator>;
type Answer = Result<Json<Value>, Db9Error>;
type Created = Result<(StatusCode, Json<Value>), Db9Error>;

impl Vendor for Db9Emulator {
    /// `/customer/...`.
    fn routes() -> Router<Shared> {
        Router::new()
            .route(
                "/customer/databases",
                get(database_list).post(database_create),
            )
            .route(
                "/customer/databases/{id}",
                get(database_get).delete(database_delete),
            )
            .route(
                "/customer/databases/{id}/reset-password",
                post(reset_password),
            )
            .route("/customer/databases/{id}/credentials", get(credentials))
            .route("/customer/databases/{id}/sql", post(run_sql))
            .route(
                "/customer/databases/{id}/users",
                get(user_list).post(user_create),
            )
            .route(
                "/customer/databases/{id}/users/{username}",
                axum::routing::delete(user_delete),
            )
            .route("/customer/databases/{id}/branch", post(branch_create))
            .route(
                "/customer/databases/{id}/backups",
                get(backup_list).post(backup_create),
            )
            .route(
                "/customer/databases/{id}/backups/{backup_id}",
                get(backup_get).delete(backup_delete),
            )
            .route("/customer/restores", post(restore_create))
            .route("/customer/restores/{id}", get(restore_get))
            .fallback(|| async { Db9Error::new(StatusCode::NOT_FOUND, "not found") })
            .method_not_allowed_fallback(|| async {
                Db9Error::new(StatusCode::METHOD_NOT_ALLOWED, "method not allowed")
            })
    }

    fn api_keys(&self) -> &ApiKeys {
        &self.api_keys
    }

    fn error_body(_code: &str, message: &str) -> Value {
        json!({ "message": message })
    }

    fn sections(&self) -> Vec<(&'static str, &dyn Persistent)> {
        vec![("db9", &self.state)]
    }

    /// The account's keys, and read-only tokens ([`Db9Emulator::add_read_only_key`]) for `GET`.
    fn authorize(&self, token: &str, method: &Method) -> Result<(), Refusal> {
        let read_only = self.state.lock().read_only_keys.iter().any(|k| k == token);
        if !read_only && !self.api_keys.accepts(token) {
            return Err(Refusal::UnknownToken);
        }
        if read_only && method != Method::GET {
            return Err(Refusal::LacksScope);
        }
        Ok(())
    }

    fn refuse(refusal: Refusal) -> Db9Error {
        match refusal {
            Refusal::MissingToken => Db9Error::new(
                StatusCode::UNAUTHORIZED,
                "missing Authorization: Bearer token",
            ),
            Refusal::UnknownToken => {
                Db9Error::new(StatusCode::UNAUTHORIZED, "invalid or expired token")
            }
            Refusal::LacksScope => {
                Db9Error::new(StatusCode::FORBIDDEN, "token lacks required scope")
            }
        }
    }
}

async fn database_create(State(emu): State<Shared>, body: Bytes) -> Created {
    let body = json_object(&body)?;
    let name = required_str(&body, "name")?;
    validate_name(&name)?;
    let region = optional_str(&body, "region")?.unwrap_or_else(|| DEFAULT_REGION.to_string());
    if region.is_empty() {
        return Err(Db9Error::bad_request("region must not be empty"));
    }
    let admin_password = optional_str(&body, "admin_password")?;
    if admin_password.as_deref() == Some("") {
        return Err(Db9Error::bad_request("admin_password must not be empty"));
    }
    // Accepted and not modelled: the document's grouping of databases under a project.
    optional_str(&body, "project_id")?;
    let real = emu.real.as_deref();
    real::staged(
        &emu.state,
        emu.real.as_ref(),
        |state| {
            state.ensure_name_free(&name)?;
            let database = planned_database(name, region, admin_password, None, BTreeMap::new());
            let work = make_database(&database, Contents::Empty);
            Ok(Step::Go(database, work))
        },
        |state, database, on| {
            let database = state.add_database(database, on);
            state.database_creates += 1;
            Ok((
                StatusCode::CREATED,
                Json(database_created_json(&database, real)),
            ))
        },
    )
    .await
}

async fn database_list(State(emu): State<Shared>) -> Answer {
    let state = emu.state.lock();
    let databases = oldest_first(state.databases.values(), |d| d.seq);
    Ok(Json(Value::Array(
        databases.into_iter().map(database_summary_json).collect(),
    )))
}

async fn database_get(State(emu): State<Shared>, Path(id): Path<String>) -> Answer {
    let state = emu.state.lock();
    let mut answer = database_json(state.any_database(&id)?, emu.real.as_deref());
    if emu.is_strict()
        && let Some(fields) = answer.as_object_mut()
    {
        fields.remove("parent_database_id");
        // Whether the details' connection string carries the real password
        // the document leaves open (its example shows `admin:password`):
        // strictly, it does not; `.../credentials` does.
        if let Some(Value::String(uri)) = fields.get_mut("connection_string")
            && let Ok(mut url) = url::Url::parse(uri)
            && url.set_password(None).is_ok()
        {
            *uri = url.to_string();
        }
    }
    Ok(Json(answer))
}

async fn database_delete(State(emu): State<Shared>, Path(id): Path<String>) -> Answer {
    // Its users are server-wide roles on a real server: they go first, so
    // nothing is left behind.
    let users: Vec<String> = emu
        .state
        .lock()
        .database(&id)?
        .users
        .iter()
        .cloned()
        .collect();
    if let (Some(real), false) = (real_server_of(&emu, &id)?, users.is_empty()) {
        let db = Db9Emulator::real_database(&id);
        let owner = crate::providers::postgres::sql::ident(&db);
        let mut sql = String::new();
        for user in &users {
            let user = crate::providers::postgres::sql::ident(user);
            sql.push_str(&format!(
                "REASSIGN OWNED BY {user} TO {owner}; DROP OWNED BY {user}; DROP ROLE IF EXISTS {user}; "
            ));
        }
        real.run_sql(&db, &sql).await.map_err(server_failed)?;
        if let Some(record) = emu.state.lock().databases.get_mut(&id) {
            record.users.clear();
        }
    }
    real::staged(
        &emu.state,
        emu.real.as_ref(),
        |state| {
            state.database(&id)?;
            Ok(Step::Go((), Work::Drop(state.real_databases_of(&id))))
        },
        |state, (), _| {
            remove_database(state, &id);
            Ok(Json(json!({ "message": "Database disabled" })))
        },
    )
    .await
}

async fn reset_password(State(emu): State<Shared>, Path(id): Path<String>) -> Answer {
    let real = emu.real.as_deref();
    let password = random_token(24);
    real::staged(
        &emu.state,
        emu.real.as_ref(),
        |state| {
            let database = state.database(&id)?;
            let work = if database.real {
                Work::SetPassword {
                    name: Db9Emulator::real_database(&id),
                    password: Password::new(password.clone()),
                }
            } else {
                Work::Nothing
            };
            Ok(Step::Go((), work))
        },
        |state, (), _| {
            let database = state
                .databases
                .get_mut(&id)
                .filter(|d| d.state != DISABLED)
                .ok_or_else(|| Db9Error::not_found("database", &id))?;
            database.admin_password = password.clone();
            Ok(Json(credentials_json(database, real)))
        },
    )
    .await
}

/// `POST /customer/databases/{id}/sql`: `query` or `file_content`, not both.
/// Run on the real database with `--emulator-postgres`; without one there is
/// nothing to run it on, and the emulator says so (`501`) instead of
/// pretending.
async fn run_sql(State(emu): State<Shared>, Path(id): Path<String>, body: Bytes) -> Answer {
    let body = json_object(&body)?;
    let text = |key: &str| body.get(key).and_then(Value::as_str).map(str::to_string);
    let sql = match (text("query"), text("file_content")) {
        (Some(sql), None) | (None, Some(sql)) if !sql.trim().is_empty() => sql,
        _ => {
            return Err(Db9Error::new(
                StatusCode::BAD_REQUEST,
                "provide either query or file_content, not both",
            ));
        }
    };
    let is_real = emu.state.lock().database(&id)?.real;
    let real = emu.real.as_deref().filter(|_| is_real).ok_or_else(|| {
        Db9Error::new(
            StatusCode::NOT_IMPLEMENTED,
            "this DB9 emulator has no database server to run SQL on; start it with --emulator-postgres",
        )
    })?;
    let answer = real
        .run_sql(&Db9Emulator::real_database(&id), &sql)
        .await
        .map_err(|e| real::sql_failed(e, StatusCode::BAD_REQUEST))?;
    let command = sql
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_ascii_uppercase();
    Ok(Json(json!({
        "columns": answer
            .columns
            .iter()
            .map(|name| json!({ "name": name, "data_type": "text" }))
            .collect::<Vec<_>>(),
        "row_count": answer.rows.len(),
        "rows": answer.rows,
        "command": command,
    })))
}

/// User names the emulator takes: PostgreSQL identifiers that need no quoting.
fn validate_username(name: &str) -> Result<(), Db9Error> {
    let mut chars = name.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_');
    if !first_ok
        || name.len() > 63
        || !chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
    {
        return Err(Db9Error::unprocessable(
            "username must be a lowercase letter or _, then lowercase letters, digits and _, at most 63 characters",
        ));
    }
    Ok(())
}

/// The server of database `id` when it is real; the error says why not.
fn real_server_of<'a>(
    emu: &'a Db9Emulator,
    id: &str,
) -> Result<Option<&'a RealDatabases>, Db9Error> {
    let is_real = emu.state.lock().database(id)?.real;
    Ok(emu.real.as_deref().filter(|_| is_real))
}

fn server_failed(error: crate::providers::postgres::SqlError) -> Db9Error {
    real::sql_failed(error, StatusCode::CONFLICT)
}

/// `GET /customer/databases/{id}/users`: the admin and the users made here.
async fn user_list(State(emu): State<Shared>, Path(id): Path<String>) -> Answer {
    let state = emu.state.lock();
    let database = state.database(&id)?;
    let mut users = vec![json!({
        "name": admin_user(database, emu.real.as_deref()),
        "is_superuser": true,
        "can_login": true,
        "can_create_db": true,
        "can_create_role": true,
    })];
    users.extend(database.users.iter().map(|name| {
        json!({
            "name": name,
            "is_superuser": false,
            "can_login": true,
            "can_create_db": false,
            "can_create_role": false,
        })
    }));
    Ok(Json(Value::Array(users)))
}

/// `POST /customer/databases/{id}/users`: `username`; the password is
/// generated and returned once. (The document's curl example also sends a
/// `password`, its request example does not, and there is no parameter
/// table: the emulator takes one if sent.) With a real database the user is
/// a real login role that may connect to it.
async fn user_create(State(emu): State<Shared>, Path(id): Path<String>, body: Bytes) -> Created {
    let body = json_object(&body)?;
    let username = required_str(&body, "username")?;
    validate_username(&username)?;
    let password = body
        .get("password")
        .and_then(Value::as_str)
        .map_or_else(|| random_token(24), str::to_string);
    let (database, real) = {
        let state = emu.state.lock();
        let database = state.database(&id)?.clone();
        if database.users.contains(&username)
            || username == admin_user(&database, emu.real.as_deref())
        {
            return Err(Db9Error::conflict(format!(
                "User '{username}' already exists"
            )));
        }
        let real = emu.real.as_deref().filter(|_| database.real);
        (database, real)
    };
    let (connection_string, with_password) = match real {
        Some(real) => {
            let db = Db9Emulator::real_database(&id);
            let sql = format!(
                "CREATE ROLE {user} LOGIN PASSWORD {verifier}; GRANT CONNECT ON DATABASE {db} TO {user}",
                user = crate::providers::postgres::sql::ident(&username),
                verifier = crate::providers::postgres::sql::literal(
                    &crate::providers::postgres::server::verifier(&Password::new(password.clone()))
                )
                .map_err(|e| Db9Error::unprocessable(e.to_string()))?,
                db = crate::providers::postgres::sql::ident(&db),
            );
            real.run_sql(&db, &sql).await.map_err(server_failed)?;
            let with = real.uri(&db, &password);
            let mut url = url::Url::parse(&with)
                .map_err(|_| Db9Error::new(StatusCode::INTERNAL_SERVER_ERROR, "bad URI"))?;
            let _ = url.set_username(&username);
            let _ = url.set_password(None);
            let without = url.to_string();
            let _ = url.set_password(Some(&password));
            (without, url.to_string())
        }
        None => {
            let base = format!("{username}@{}:5433/{}", host(&database), database.name);
            (
                format!("postgresql://{base}"),
                format!("postgresql://{username}:{password}@{base}"),
            )
        }
    };
    let mut state = emu.state.lock();
    let record = state
        .databases
        .get_mut(&id)
        .ok_or_else(|| Db9Error::not_found("database", &id))?;
    record.users.insert(username.clone());
    Ok((
        StatusCode::CREATED,
        Json(json!({
            "message": format!("User '{username}' created"),
            "username": username,
            "password": password,
            "connection_string": connection_string,
            "connection_string_with_password": with_password,
        })),
    ))
}

/// `DELETE /customer/databases/{id}/users/{username}`. With a real
/// database, what the user owns there goes to the database's owner first.
async fn user_delete(
    State(emu): State<Shared>,
    Path((id, username)): Path<(String, String)>,
) -> Answer {
    let known = emu.state.lock().database(&id)?.users.contains(&username);
    if !known {
        return Err(Db9Error::not_found("user", &username));
    }
    if let Some(real) = real_server_of(&emu, &id)? {
        let db = Db9Emulator::real_database(&id);
        let user = crate::providers::postgres::sql::ident(&username);
        let sql = format!(
            "REASSIGN OWNED BY {user} TO {owner}; DROP OWNED BY {user}; DROP ROLE {user}",
            owner = crate::providers::postgres::sql::ident(&db)
        );
        real.run_sql(&db, &sql).await.map_err(server_failed)?;
    }
    if let Some(record) = emu.state.lock().databases.get_mut(&id) {
        record.users.remove(&username);
    }
    Ok(Json(
        json!({ "message": format!("User '{username}' deleted") }),
    ))
}

async fn credentials(State(emu): State<Shared>, Path(id): Path<String>) -> Answer {
    let state = emu.state.lock();
    Ok(Json(credentials_json(
        state.database(&id)?,
        emu.real.as_deref(),
    )))
}

async fn branch_create(State(emu): State<Shared>, Path(id): Path<String>, body: Bytes) -> Created {
    let body = json_object(&body)?;
    let name = required_str(&body, "name")?;
    validate_name(&name)?;
    let snapshot_at = optional_str(&body, "snapshot_at")?;
    let real = emu.real.as_deref();
    real::staged(
        &emu.state,
        emu.real.as_ref(),
        |state| plan_branch(state, &id, name, snapshot_at),
        |state, branch, on| {
            let branch = state.add_database(branch, on);
            Ok((StatusCode::CREATED, Json(database_json(&branch, real))))
        },
    )
    .await
}

/// A branch of database `id` named `name`, and its real database: a copy of
/// its parent's.
fn plan_branch(
    state: &mut Db9State,
    id: &str,
    name: String,
    snapshot_at: Option<String>,
) -> Result<Step<DatabaseRecord, (StatusCode, Json<Value>)>, Db9Error> {
    let parent = state.database(id)?.clone();
    if let Some(at) = snapshot_at {
        let at: jiff::Timestamp = at
            .parse()
            .map_err(|_| Db9Error::bad_request("snapshot_at must be an RFC 3339 UTC timestamp"))?;
        if at > jiff::Timestamp::now() {
            return Err(Db9Error::unprocessable("snapshot_at is in the future"));
        }
        let created: Option<jiff::Timestamp> = parent.created_at.parse().ok();
        if created.is_some_and(|created| at < created) {
            return Err(Db9Error::unprocessable(
                "snapshot_at is before the database was created",
            ));
        }
        // The emulator keeps no history: a point-in-time branch copies the current data.
    }
    state.ensure_name_free(&name)?;
    let branch = planned_database(
        name,
        parent.region.clone(),
        None,
        Some(parent.id.clone()),
        parent.data.clone(),
    );
    let work = make_database(&branch, copy_of(&parent));
    Ok(Step::Go(branch, work))
}

/// A copy of `database`'s real database (empty when it has none).
fn copy_of(database: &DatabaseRecord) -> Contents {
    if database.real {
        Contents::Copy(Db9Emulator::real_database(&database.id))
    } else {
        Contents::Empty
    }
}

async fn backup_create(State(emu): State<Shared>, Path(id): Path<String>, body: Bytes) -> Created {
    let body = json_object(&body)?;
    let label = optional_str(&body, "label")?;
    real::staged(
        &emu.state,
        emu.real.as_ref(),
        |state| {
            let database = state.database(&id)?;
            let backup = BackupRecord {
                seq: 0,
                id: format!("bkp_{}", random_token(20)),
                database_id: id.clone(),
                label,
                state: "creating".to_string(),
                reads: 0,
                created_at: now_rfc3339(),
                data: database.data.clone(),
                real: false,
            };
            // A frozen copy of the database as it is now.
            let work = Work::Make(Make {
                name: Db9Emulator::real_database(&backup.id),
                password: None,
                contents: copy_of(database),
            });
            Ok(Step::Go(backup, work))
        },
        |state, mut backup, on| {
            backup.seq = state.seq();
            backup.real = on;
            state.backups.insert(backup.id.clone(), backup.clone());
            Ok((StatusCode::CREATED, Json(backup_json(&backup))))
        },
    )
    .await
}

/// A read of a backup: it completes after [`BACKUP_CREATING_READS`] reads.
fn observe_backup(backup: &mut BackupRecord) -> Value {
    if backup.state == "creating" {
        if backup.reads >= BACKUP_CREATING_READS {
            backup.state = "completed".to_string();
        }
        backup.reads += 1;
    }
    backup_json(backup)
}

async fn backup_list(State(emu): State<Shared>, Path(id): Path<String>) -> Answer {
    let mut state = emu.state.lock();
    state.database(&id)?;
    let backups = oldest_first(
        state.backups.values_mut().filter(|b| b.database_id == id),
        |b| b.seq,
    );
    Ok(Json(Value::Array(
        backups.into_iter().map(observe_backup).collect(),
    )))
}

fn backup_of<'a>(
    state: &'a mut Db9State,
    database_id: &str,
    backup_id: &str,
) -> Result<&'a mut BackupRecord, Db9Error> {
    state.database(database_id)?;
    state
        .backups
        .get_mut(backup_id)
        .filter(|b| b.database_id == database_id)
        .ok_or_else(|| Db9Error::not_found("backup", backup_id))
}

async fn backup_get(
    State(emu): State<Shared>,
    Path((id, backup_id)): Path<(String, String)>,
) -> Answer {
    let mut state = emu.state.lock();
    let backup = backup_of(&mut state, &id, &backup_id)?;
    Ok(Json(observe_backup(backup)))
}

async fn backup_delete(
    State(emu): State<Shared>,
    Path((id, backup_id)): Path<(String, String)>,
) -> Answer {
    real::staged(
        &emu.state,
        emu.real.as_ref(),
        |state| {
            let backup = backup_of(state, &id, &backup_id)?;
            let databases = if backup.real {
                vec![Db9Emulator::real_database(&backup_id)]
            } else {
                Vec::new()
            };
            Ok(Step::Go((), Work::Drop(databases)))
        },
        |state, (), _| {
            state.backups.remove(&backup_id);
            Ok(Json(json!({ "message": "Backup deleted" })))
        },
    )
    .await
}

async fn restore_create(State(emu): State<Shared>, body: Bytes) -> Result<Response, Db9Error> {
    let mut body = json_object(&body)?;
    let key = take_idempotency_key(&mut body)?;
    let fingerprint = Value::Object(body.clone());
    let mut state = emu.state.lock();
    if let Some(key) = &key
        && let Some(restore_id) = replay(&state.restore_keys, key, &fingerprint)?
    {
        // A retry answers the restore as it is now (without moving it along).
        let restore = state
            .restores
            .get(restore_id)
            .ok_or_else(|| Db9Error::not_found("restore", restore_id))?;
        return Ok(Json(restore_json(restore)).into_response());
    }
    let backup_id = required_str(&body, "backup_id")?;
    let target_name = required_str(&body, "target_name")?;
    validate_name(&target_name)?;
    let backup = state
        .backups
        .get(&backup_id)
        .cloned()
        .ok_or_else(|| Db9Error::not_found("backup", &backup_id))?;
    if backup.state != "completed" {
        return Err(Db9Error::unprocessable(format!(
            "backup {backup_id} is not completed (it is {})",
            backup.state
        )));
    }
    state.ensure_name_free(&target_name)?;
    let region = state
        .databases
        .get(&backup.database_id)
        .map(|d| d.region.clone())
        .unwrap_or_else(|| DEFAULT_REGION.to_string());
    let restore = RestoreRecord {
        id: format!("rst_{}", random_token(20)),
        backup_id,
        source_database_id: backup.database_id.clone(),
        target_name,
        region,
        state: "pending".to_string(),
        reads: 0,
        target_database_id: None,
        error: None,
        created_at: now_rfc3339(),
        data: backup.data,
        backup_real: backup.real,
    };
    state.restores.insert(restore.id.clone(), restore.clone());
    if let Some(key) = key {
        state
            .restore_keys
            .insert(key, (fingerprint, restore.id.clone()));
    }
    Ok((StatusCode::ACCEPTED, Json(restore_json(&restore))).into_response())
}

/// A read of a restore moves it along; the read that completes it makes the
/// new database (and its real one).
async fn restore_get(State(emu): State<Shared>, Path(id): Path<String>) -> Answer {
    real::staged(
        &emu.state,
        emu.real.as_ref(),
        |state| {
            if !state.restores.contains_key(&id) {
                return Err(Db9Error::not_found("restore", &id));
            }
            Ok(match state.restore_ending(&id) {
                Some((ending, work)) => Step::Go(Some(ending), work),
                None => Step::Go(None, Work::Nothing),
            })
        },
        |state, ending, on| {
            state.advance_restore(&id, ending, on);
            let restore = state
                .restores
                .get(&id)
                .ok_or_else(|| Db9Error::not_found("restore", &id))?;
            Ok(Json(restore_json(restore)))
        },
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        assert!(validate_name("team-a_shop.v2").is_ok());
        assert!(validate_name(&"x".repeat(63)).is_ok());
        assert!(validate_name(&"x".repeat(64)).is_err());
        assert!(validate_name("no spaces").is_err());
        assert!(validate_name("../x").is_err());
    }

    #[test]
    fn a_backup_is_creating_then_completed() {
        let mut backup = BackupRecord {
            seq: 1,
            id: "bkp_1".into(),
            database_id: "db_1".into(),
            label: None,
            state: "creating".into(),
            reads: 0,
            created_at: now_rfc3339(),
            data: BTreeMap::new(),
            real: false,
        };
        assert_eq!(observe_backup(&mut backup)["state"], "creating");
        assert_eq!(observe_backup(&mut backup)["state"], "completed");
        assert_eq!(observe_backup(&mut backup)["state"], "completed");
    }

    #[test]
    fn a_restore_runs_then_completes_or_fails_on_a_taken_name() {
        let mut state = Db9State::default();
        for (id, name) in [("rst_a", "fresh"), ("rst_b", "taken")] {
            state.restores.insert(
                id.into(),
                RestoreRecord {
                    id: id.into(),
                    backup_id: "bkp_1".into(),
                    source_database_id: "db_1".into(),
                    target_name: name.into(),
                    region: DEFAULT_REGION.into(),
                    state: "pending".into(),
                    reads: 0,
                    target_database_id: None,
                    error: None,
                    created_at: now_rfc3339(),
                    data: BTreeMap::new(),
                    backup_real: false,
                },
            );
        }
        state.new_database(
            "taken".into(),
            DEFAULT_REGION.into(),
            None,
            None,
            BTreeMap::new(),
        );
        state.advance_restore("rst_a", None, false);
        assert_eq!(state.restores["rst_a"].state, "running");
        state.advance_restore("rst_a", None, false);
        let done = &state.restores["rst_a"];
        assert_eq!(done.state, "completed");
        let target = done.target_database_id.clone().unwrap();
        assert_eq!(state.databases[&target].name, "fresh");

        state.advance_restore("rst_b", None, false);
        state.advance_restore("rst_b", None, false);
        assert_eq!(state.restores["rst_b"].state, "failed");
        assert!(state.restores["rst_b"].error.is_some());
    }
}
