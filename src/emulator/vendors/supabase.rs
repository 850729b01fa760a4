//! Emulated Supabase Management API (`vendor-apis/supabase-management.txt`, where
//! the product is called "Assistance"): the endpoints the operator uses, with
//! Bearer auth and `{"message": "..."}` error bodies.
//!
//! Endpoints (methods from the public Supabase Management API reference, since
//! the document lists paths without methods):
//!
//! | Method   | Path                                             | Answer |
//! |----------|--------------------------------------------------|--------|
//! | `POST`   | `/v1/projects`                                   | 201 project |
//! | `GET`    | `/v1/projects`                                   | 200 `[project]` |
//! | `GET`    | `/v1/projects/{ref}`                             | 200 project with `database` |
//! | `DELETE` | `/v1/projects/{ref}`                             | 200 `{id, ref, name}` |
//! | `POST`   | `/v1/projects/{ref}/branches`                    | 201 branch |
//! | `GET`    | `/v1/projects/{ref}/branches`                    | 200 `[branch]` |
//! | `GET`    | `/v1/projects/{ref}/branches/{name}`             | 200 branch |
//! | `GET`    | `/v1/branches/{branch_id_or_ref}`                | 200 branch config |
//! | `DELETE` | `/v1/branches/{branch_id_or_ref}`                | 200 `{message}` |
//! | `GET`    | `/v1/projects/{ref}/database/backups`            | 200 backups |
//! | `POST`   | `/v1/projects/{ref}/database/backups/restore-pitr` | 201, no body |
//! | `PATCH`  | `/v1/projects/{ref}/database/password`           | 200 `{message}` |
//!
//! Request bodies follow the document: project create takes `name`, `db_pass`
//! and `organization_slug` (all required; the deprecated `organization_id` is
//! ignored), and `region` (deprecated, still accepted) or `region_selection`
//! (`{type, code}`, the shape of the public reference). Branch create takes
//! `branch_name`; PITR restore takes `recovery_time_target_unix`; the password
//! endpoint takes `password`.
//!
//! The document gives status codes but no response schemas; responses use the
//! field names of the public Management API reference (the `V1ProjectResponse`,
//! `V1ProjectWithDatabaseResponse`, `BranchResponse`, `BranchDetailResponse`,
//! `V1BackupsResponse` and `V1ProjectRefResponse` models of its OpenAPI spec, as
//! generated into `supabase/cli`'s `pkg/api/types.gen.go`). As at Supabase:
//! - project responses never carry the database password;
//! - `id` and `ref` of a project are both its ref, and `organization_id` is the
//!   organization slug (the reference documents it as "Slug of your organization");
//! - a branch is a project of its own: it has its own ref, host and password,
//!   and the password endpoint accepts a branch's ref.
//!
//! Choices where the document is silent:
//! - unknown projects and branches answer 404 (the document lists no 404 for
//!   these paths; the live API answers 404 for an unknown ref), invalid bodies
//!   400, a second branch with the same name in a project 409;
//! - projects and branches come up asynchronously: the first
//!   [`DEFAULT_PROVISIONING_POLLS`] reads report `COMING_UP` (a PITR restore:
//!   `RESTORING`), later reads `ACTIVE_HEALTHY`. Lists report the current
//!   status without counting as a read;
//! - branches are not modelled as copies of data, and enabling branching does
//!   not create a default branch record;
//! - every project has point-in-time recovery enabled, a recovery window from
//!   its creation until now, and one completed physical backup.
//!
//! With real databases ([`real`]), every project and branch is a real
//! database on that server, owned by a role of the same name whose password
//! is the project's `db_pass` (the branch's, for a branch): project reads
//! show the server as `database.host`, the pooler entry names the server,
//! role and database, and a branch's config its server, port, role and
//! password. A branch starts as a copy of its parent project's data (whatever
//! `with_data` says). The password endpoint changes the real role's password;
//! deleting a project drops its database and its branches'. A PITR restore
//! leaves the data as it is.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, patch, post};
use axum::{Json, Router};
use serde_json::{Map, Value, json};

use crate::emulator::base::real::{self, Contents, Make, RealDatabases, Step, Work};
use crate::emulator::base::scaffold::{
    ApiKeys, Persistent, Refusal, Sequence, Store, Vendor, oldest_first,
};
use crate::emulator::base::wire::{
    ApiError, json_object, now_rfc3339, optional_bool, optional_str, random_token, required_str,
    set_optional,
};
use crate::providers::Password;

/// Reads of a new (or restoring) project or branch that still report it as transitional.
pub const DEFAULT_PROVISIONING_POLLS: u32 = 2;
/// Region of projects created without one.
const DEFAULT_REGION: &str = "us-east-1";
/// Postgres version the emulated databases report.
const POSTGRES_VERSION: &str = "17.4.1.054";
const POSTGRES_ENGINE: &str = "17";
const RELEASE_CHANNEL: &str = "ga";
const DB_PORT: u16 = 5432;
const DB_USER: &str = "postgres";
/// The API's name among the emulated ones (in real database names).
const API: &str = "supabase";

const COMING_UP: &str = "COMING_UP";
const RESTORING: &str = "RESTORING";
const ACTIVE_HEALTHY: &str = "ACTIVE_HEALTHY";
const INIT_FAILED: &str = "INIT_FAILED";
/// A status outside every list dbops knows, for tests of how it copes with
/// one (the document names only `ACTIVE_HEALTHY` and `INACTIVE`).
const UNLISTED: &str = "UNLISTED_STATUS";

/// Where an asynchronously provisioned database is: a transitional status that
/// reads report `polls_left` more times, then `ACTIVE_HEALTHY`.
#[derive(Clone, Debug, serde::Serialize)]
struct Lifecycle {
    status: &'static str,
    polls_left: u32,
}

/// [`Lifecycle`] as saved in the state file.
#[derive(serde::Deserialize)]
struct SavedLifecycle {
    status: String,
    polls_left: u32,
}

impl<'de> serde::Deserialize<'de> for Lifecycle {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let saved = SavedLifecycle::deserialize(deserializer)?;
        let status = [COMING_UP, RESTORING, ACTIVE_HEALTHY, INIT_FAILED, UNLISTED]
            .into_iter()
            .find(|s| *s == saved.status)
            .ok_or_else(|| {
                serde::de::Error::custom(format!("unknown project status {:?}", saved.status))
            })?;
        Ok(Lifecycle {
            status,
            polls_left: saved.polls_left,
        })
    }
}

impl Lifecycle {
    fn transitional(status: &'static str, polls: u32) -> Self {
        Self {
            status,
            polls_left: polls,
        }
    }

    fn current(&self) -> &'static str {
        if self.polls_left == 0 && matches!(self.status, COMING_UP | RESTORING) {
            ACTIVE_HEALTHY
        } else {
            self.status
        }
    }

    /// One read: the status it reports, counted toward readiness.
    fn poll(&mut self) -> &'static str {
        let status = self.current();
        self.status = status;
        self.polls_left = self.polls_left.saturating_sub(1);
        status
    }
}

/// No `Debug`: it holds the database password.
#[derive(Clone, serde::Serialize, serde::Deserialize)]
struct ProjectRecord {
    /// Numeric id, as `V1ProjectRefResponse` reports on delete.
    seq: u64,
    reference: String,
    name: String,
    organization_slug: String,
    region: String,
    created_at: String,
    created_unix: i64,
    db_pass: String,
    lifecycle: Lifecycle,
    pitr_enabled: bool,
    /// `recovery_time_target_unix` of every accepted PITR restore, oldest first.
    restores: Vec<i64>,
    /// Backed by a real database ([`real`]).
    #[serde(default, skip_serializing_if = "real::is_false")]
    real: bool,
}

/// No `Debug`: it holds the branch's database password.
#[derive(Clone, serde::Serialize, serde::Deserialize)]
struct BranchRecord {
    seq: u64,
    id: String,
    name: String,
    /// The branch's own project ref.
    project_ref: String,
    parent_project_ref: String,
    git_branch: Option<String>,
    persistent: bool,
    with_data: bool,
    created_at: String,
    db_pass: String,
    lifecycle: Lifecycle,
    /// Backed by a real database ([`real`]).
    #[serde(default, skip_serializing_if = "real::is_false")]
    real: bool,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct SupabaseState {
    next_seq: Sequence,
    provisioning_polls: u32,
    projects: HashMap<String, ProjectRecord>,
    /// By branch id.
    branches: HashMap<String, BranchRecord>,
}

impl Default for SupabaseState {
    fn default() -> Self {
        Self {
            next_seq: Sequence::default(),
            provisioning_polls: DEFAULT_PROVISIONING_POLLS,
            projects: HashMap::new(),
            branches: HashMap::new(),
        }
    }
}

/// The emulated Supabase account; every accepted access token sees the same account.
pub struct SupabaseEmulator {
    api_keys: ApiKeys,
    state: Store<SupabaseState>,
    /// The server projects and branches are real databases on, if any.
    real: Option<Arc<RealDatabases>>,
}

/// What a test can see of an emulated project without going through HTTP.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProjectView {
    pub reference: String,
    pub name: String,
    pub organization_slug: String,
    pub region: String,
    pub status: String,
}

impl SupabaseEmulator {
    pub fn new(api_keys: Vec<String>) -> Self {
        Self {
            api_keys: ApiKeys::new(api_keys),
            state: Store::default(),
            real: None,
        }
    }

    /// `self` making a real database on `real` for every project and branch.
    pub fn with_real(mut self, real: Option<Arc<RealDatabases>>) -> Self {
        self.real = real;
        self
    }

    /// The real database (and role) of the project or branch with ref `reference`.
    pub fn real_database(reference: &str) -> String {
        real::name(API, reference)
    }

    /// Every project, oldest first (reading them does not count as a poll).
    pub fn projects(&self) -> Vec<ProjectView> {
        let state = self.state.lock();
        oldest_first(state.projects.values(), |p| p.seq)
            .into_iter()
            .map(|p| ProjectView {
                reference: p.reference.clone(),
                name: p.name.clone(),
                organization_slug: p.organization_slug.clone(),
                region: p.region.clone(),
                status: p.lifecycle.current().to_string(),
            })
            .collect()
    }

    /// Number of projects (branches not included).
    pub fn project_count(&self) -> usize {
        self.state.lock().projects.len()
    }

    /// Number of branches.
    pub fn branch_count(&self) -> usize {
        self.state.lock().branches.len()
    }

    /// The current database password of a project, or of a branch by id or ref.
    pub fn db_password(&self, id_or_ref: &str) -> Option<String> {
        let state = self.state.lock();
        if let Some(project) = state.projects.get(id_or_ref) {
            return Some(project.db_pass.clone());
        }
        state
            .find_branch(id_or_ref)
            .and_then(|id| state.branches.get(id))
            .map(|b| b.db_pass.clone())
    }

    /// How many reads new projects, branches and restores stay transitional (default 2).
    pub fn set_provisioning_polls(&self, polls: u32) {
        self.state.lock().provisioning_polls = polls;
    }

    /// Makes a project's provisioning fail (`INIT_FAILED`), as the vendor can.
    pub fn fail_project(&self, reference: &str) -> bool {
        match self.state.lock().projects.get_mut(reference) {
            Some(project) => {
                project.lifecycle = Lifecycle::transitional(INIT_FAILED, 0);
                true
            }
            None => false,
        }
    }

    /// Makes a project report a status no list of dbops knows (`on`), or
    /// `ACTIVE_HEALTHY` again.
    pub fn set_unlisted_status(&self, reference: &str, on: bool) -> bool {
        match self.state.lock().projects.get_mut(reference) {
            Some(project) => {
                let status = if on { UNLISTED } else { ACTIVE_HEALTHY };
                project.lifecycle = Lifecycle::transitional(status, 0);
                true
            }
            None => false,
        }
    }

    /// Turns the point-in-time recovery add-on of a project on or off.
    pub fn set_pitr_enabled(&self, reference: &str, enabled: bool) -> bool {
        match self.state.lock().projects.get_mut(reference) {
            Some(project) => {
                project.pitr_enabled = enabled;
                true
            }
            None => false,
        }
    }

    /// The recovery targets of the PITR restores a project went through, oldest first.
    pub fn pitr_restores(&self, reference: &str) -> Vec<i64> {
        self.state
            .lock()
            .projects
            .get(reference)
            .map(|p| p.restores.clone())
            .unwrap_or_default()
    }

    /// Deletes a project (and its branches) as if someone did it in the dashboard.
    pub fn delete_project_out_of_band(&self, reference: &str) -> bool {
        let mut state = self.state.lock();
        let databases = state.real_databases_of(reference);
        let removed = state.remove_project(reference).is_some();
        if let Some(real) = &self.real {
            real.drop_later(databases);
        }
        removed
    }
}

impl SupabaseState {
    fn seq(&mut self) -> u64 {
        self.next_seq.next()
    }

    /// A fresh project ref: 20 lowercase letters, unique among projects and branches.
    fn new_ref(&self) -> String {
        loop {
            let candidate: String = (0..20)
                .map(|_| char::from(b'a' + rand::random_range(0..26u8)))
                .collect();
            let taken = self.projects.contains_key(&candidate)
                || self.branches.values().any(|b| b.project_ref == candidate);
            if !taken {
                return candidate;
            }
        }
    }

    /// The id of the branch whose id or project ref is `id_or_ref`.
    fn find_branch(&self, id_or_ref: &str) -> Option<&String> {
        self.branches
            .values()
            .find(|b| b.id == id_or_ref || b.project_ref == id_or_ref)
            .map(|b| &b.id)
    }

    /// The real databases of project `reference`: its own and its branches'.
    fn real_databases_of(&self, reference: &str) -> Vec<String> {
        let own = self
            .projects
            .get(reference)
            .filter(|p| p.real)
            .map(|p| &p.reference);
        let branches = self
            .branches
            .values()
            .filter(|b| b.parent_project_ref == reference && b.real)
            .map(|b| &b.project_ref);
        own.into_iter()
            .chain(branches)
            .map(|r| SupabaseEmulator::real_database(r))
            .collect()
    }

    fn remove_project(&mut self, reference: &str) -> Option<ProjectRecord> {
        let removed = self.projects.remove(reference)?;
        self.branches
            .retain(|_, b| b.parent_project_ref != removed.reference);
        Some(removed)
    }

    fn project_mut(&mut self, reference: &str) -> Result<&mut ProjectRecord, SupabaseError> {
        self.projects
            .get_mut(reference)
            .ok_or_else(|| SupabaseError::not_found("project", reference))
    }
}

/// The Supavisor port.
const POOLER_PORT: u16 = 6543;

fn db_host(reference: &str) -> String {
    format!("db.{reference}.supabase.co")
}

fn unix_now() -> i64 {
    jiff::Timestamp::now().as_second()
}

/// A random version-4 UUID, the form of branch ids.
fn uuid_v4() -> String {
    let bits: u128 = rand::random();
    let bits = (bits & !(0xf << 76) & !(0x3 << 62)) | (0x4 << 76) | (0x2 << 62);
    let hex = format!("{bits:032x}");
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

/// `V1ProjectResponse` (create): no `database`, never the password.
fn project_json(p: &ProjectRecord, status: &str) -> Value {
    json!({
        "id": p.reference,
        "ref": p.reference,
        "organization_id": p.organization_slug,
        "organization_slug": p.organization_slug,
        "name": p.name,
        "region": p.region,
        "created_at": p.created_at,
        "status": status,
    })
}

/// The real server of a record backed by a real database.
fn real_of(real: Option<&RealDatabases>, backed: bool) -> Option<&RealDatabases> {
    real.filter(|_| backed)
}

/// `V1ProjectWithDatabaseResponse` (get, list): adds `database`, never the password.
fn project_with_database_json(
    p: &ProjectRecord,
    status: &str,
    real: Option<&RealDatabases>,
) -> Value {
    let host = match real_of(real, p.real) {
        Some(real) => real.host().to_string(),
        None => db_host(&p.reference),
    };
    let mut v = project_json(p, status);
    v["database"] = json!({
        "host": host,
        "version": POSTGRES_VERSION,
        "postgres_engine": POSTGRES_ENGINE,
        "release_channel": RELEASE_CHANNEL,
    });
    v
}

/// `BranchResponse`: the branch's preview workflow status, not its database's.
fn branch_json(b: &BranchRecord) -> Value {
    let status = match b.lifecycle.current() {
        ACTIVE_HEALTHY => "FUNCTIONS_DEPLOYED",
        _ => "CREATING_PROJECT",
    };
    let mut v = json!({
        "id": b.id,
        "name": b.name,
        "project_ref": b.project_ref,
        "parent_project_ref": b.parent_project_ref,
        "is_default": false,
        "persistent": b.persistent,
        "with_data": b.with_data,
        "status": status,
        "created_at": b.created_at,
        "updated_at": b.created_at,
    });
    set_optional(&mut v, "git_branch", b.git_branch.as_deref());
    v
}

/// `BranchDetailResponse`: the branch database and its credentials.
fn branch_config_json(b: &BranchRecord, status: &str, real: Option<&RealDatabases>) -> Value {
    let (host, port, user) = match real_of(real, b.real) {
        Some(real) => (
            real.host().to_string(),
            real.port(),
            SupabaseEmulator::real_database(&b.project_ref),
        ),
        None => (db_host(&b.project_ref), DB_PORT, DB_USER.to_string()),
    };
    json!({
        "ref": b.project_ref,
        "postgres_version": POSTGRES_VERSION,
        "postgres_engine": POSTGRES_ENGINE,
        "release_channel": RELEASE_CHANNEL,
        "status": status,
        "db_host": host,
        "db_port": port,
        "db_user": user,
        "db_pass": b.db_pass,
    })
}

/// An error answer in Supabase's shape: `{"message": "..."}`.
pub type SupabaseError = ApiError<SupabaseEmulator>;
type Shared = Arc<SupabaseEmulator>;
type Answer = Result<Json<Value>, SupabaseError>;

/// `POST /v1/projects/{ref}/database/query` (a project's or a branch's ref):
/// run on the real database with `--emulator-postgres`. The document gives
/// only the code (`201`), not the body: the emulator answers the rows as
/// objects, and dbops never reads them. Without a database server there is
/// nothing to run the query on, and the emulator says so (`501`).
async fn run_query(
    State(emu): State<Shared>,
    Path(reference): Path<String>,
    body: Bytes,
) -> Created {
    let body = json_object(&body)?;
    let sql = required_str(&body, "query")?.to_string();
    let backed = {
        let state = emu.state.lock();
        let project = state.projects.get(&reference).map(|p| p.real);
        let branch = state
            .branches
            .values()
            .find(|b| b.project_ref == reference)
            .map(|b| b.real);
        project
            .or(branch)
            .ok_or_else(|| SupabaseError::new(StatusCode::NOT_FOUND, "Project not found"))?
    };
    let real = emu.real.as_deref().filter(|_| backed).ok_or_else(|| {
        SupabaseError::new(
            StatusCode::NOT_IMPLEMENTED,
            "this Supabase emulator has no database server to run queries on; start it with --emulator-postgres",
        )
    })?;
    let answer = real
        .run_sql(&SupabaseEmulator::real_database(&reference), &sql)
        .await
        .map_err(|e| real::sql_failed(e, StatusCode::BAD_REQUEST))?;
    let rows: Vec<Value> = answer
        .rows
        .iter()
        .map(|row| {
            Value::Object(
                answer
                    .columns
                    .iter()
                    .cloned()
                    .zip(
                        row.iter()
                            .map(|c| c.clone().map_or(Value::Null, Value::String)),
                    )
                    .collect(),
            )
        })
        .collect();
    Ok((StatusCode::CREATED, Json(Value::Array(rows))))
}
type Created = Result<(StatusCode, Json<Value>), SupabaseError>;

impl Vendor for SupabaseEmulator {
    fn routes() -> Router<Shared> {
        Router::new()
            .route("/v1/projects", post(project_create).get(project_list))
            .route("/v1/projects/{ref}/database/query", post(run_query))
            .route(
                "/v1/projects/{ref}",
                get(project_get).delete(project_delete),
            )
            .route(
                "/v1/projects/{ref}/branches",
                post(branch_create).get(branch_list),
            )
            .route("/v1/projects/{ref}/branches/{name}", get(branch_by_name))
            .route(
                "/v1/branches/{branch_id_or_ref}",
                get(branch_config).delete(branch_delete),
            )
            .route("/v1/projects/{ref}/database/backups", get(backups_list))
            .route(
                "/v1/projects/{ref}/database/backups/restore-pitr",
                post(restore_pitr),
            )
            .route(
                "/v1/projects/{ref}/database/password",
                patch(update_password),
            )
            .route("/v1/projects/{ref}/config/database/pooler", get(pooler_get))
            .fallback(|| async { SupabaseError::new(StatusCode::NOT_FOUND, "Not Found") })
    }

    fn api_keys(&self) -> &ApiKeys {
        &self.api_keys
    }

    fn error_body(_code: &str, message: &str) -> Value {
        json!({ "message": message })
    }

    fn sections(&self) -> Vec<(&'static str, &dyn Persistent)> {
        vec![("supabase", &self.state)]
    }

    /// Any refusal is a bare 401 `Unauthorized`.
    fn refuse(_: Refusal) -> SupabaseError {
        SupabaseError::new(StatusCode::UNAUTHORIZED, "Unauthorized")
    }
}

/// The region of a create request: `region_selection.code`, else the deprecated `region`.
fn requested_region(body: &Map<String, Value>) -> Result<String, SupabaseError> {
    match body.get("region_selection") {
        None | Some(Value::Null) => {}
        Some(Value::Object(selection)) => {
            let kind = required_str(selection, "type")?;
            if kind != "specific" && kind != "smartGroup" {
                return Err(SupabaseError::bad_request(
                    "region_selection.type must be \"specific\" or \"smartGroup\"",
                ));
            }
            return required_str(selection, "code");
        }
        Some(_) => {
            return Err(SupabaseError::bad_request(
                "region_selection must be an object",
            ));
        }
    }
    Ok(optional_str(body, "region")?.unwrap_or_else(|| DEFAULT_REGION.to_string()))
}

async fn project_create(State(emu): State<Shared>, body: Bytes) -> Created {
    let body = json_object(&body)?;
    let name = required_str(&body, "name")?;
    if name.contains('.') {
        return Err(SupabaseError::bad_request("name must not contain dots"));
    }
    let organization_slug = required_str(&body, "organization_slug")?;
    let db_pass = required_str(&body, "db_pass")?;
    let region = requested_region(&body)?;
    for field in ["organization_id", "desired_instance_size", "template_url"] {
        optional_str(&body, field)?;
    }
    real::staged(
        &emu.state,
        emu.real.as_ref(),
        |state| {
            let project = ProjectRecord {
                seq: 0,
                reference: state.new_ref(),
                name,
                organization_slug,
                region,
                created_at: now_rfc3339(),
                created_unix: unix_now(),
                db_pass,
                lifecycle: Lifecycle::transitional(COMING_UP, state.provisioning_polls),
                pitr_enabled: true,
                restores: Vec::new(),
                real: false,
            };
            // The role's password is the one the client chose.
            let work = Work::Make(Make {
                name: SupabaseEmulator::real_database(&project.reference),
                password: Some(Password::new(project.db_pass.clone())),
                contents: Contents::Empty,
            });
            Ok(Step::Go(project, work))
        },
        |state, mut project, on| {
            project.seq = state.seq();
            project.real = on;
            state
                .projects
                .insert(project.reference.clone(), project.clone());
            // The create answer is the state at creation time: the project is coming up.
            Ok((StatusCode::CREATED, Json(project_json(&project, COMING_UP))))
        },
    )
    .await
}

async fn project_list(State(emu): State<Shared>) -> Answer {
    let state = emu.state.lock();
    Ok(Json(Value::Array(
        oldest_first(state.projects.values(), |p| p.seq)
            .into_iter()
            .map(|p| project_with_database_json(p, p.lifecycle.current(), emu.real.as_deref()))
            .collect(),
    )))
}

async fn project_get(State(emu): State<Shared>, Path(reference): Path<String>) -> Answer {
    let mut state = emu.state.lock();
    let project = state.project_mut(&reference)?;
    let status = project.lifecycle.poll();
    Ok(Json(project_with_database_json(
        project,
        status,
        emu.real.as_deref(),
    )))
}

/// `GET /v1/projects/{ref}/config/database/pooler`: the project's Supavisor
/// entry, in the public reference's shape (the document shows none); the
/// pooled user is `postgres.<ref>` on port 6543, as on Supabase.
async fn pooler_get(State(emu): State<Shared>, Path(reference): Path<String>) -> Answer {
    let mut state = emu.state.lock();
    let project = state.project_mut(&reference)?;
    // With a real database there is no pooler: the entry names the server.
    let (user, host, port, database) = match real_of(emu.real.as_deref(), project.real) {
        Some(real) => {
            let name = SupabaseEmulator::real_database(&reference);
            (name.clone(), real.host().to_string(), real.port(), name)
        }
        None => (
            format!("{DB_USER}.{reference}"),
            format!("aws-0-{}.pooler.supabase.com", project.region),
            POOLER_PORT,
            "postgres".to_string(),
        ),
    };
    let address = if host.contains(':') {
        format!("[{host}]")
    } else {
        host.clone()
    };
    Ok(Json(json!([{
        "identifier": reference,
        "database_type": "PRIMARY",
        "is_using_scram_auth": true,
        "db_user": user,
        "db_host": host,
        "db_port": port,
        "db_name": database,
        "connection_string": format!("postgresql://{user}:[YOUR-PASSWORD]@{address}:{port}/{database}"),
        "default_pool_size": 15,
        "max_client_conn": 200,
        "pool_mode": "transaction",
    }])))
}

async fn project_delete(State(emu): State<Shared>, Path(reference): Path<String>) -> Answer {
    real::staged(
        &emu.state,
        emu.real.as_ref(),
        |state| {
            state.project_mut(&reference)?;
            Ok(Step::Go(
                (),
                Work::Drop(state.real_databases_of(&reference)),
            ))
        },
        |state, (), _| {
            let project = state
                .remove_project(&reference)
                .ok_or_else(|| SupabaseError::not_found("project", &reference))?;
            Ok(Json(json!({
                "id": project.seq,
                "ref": project.reference,
                "name": project.name,
            })))
        },
    )
    .await
}

async fn branch_create(
    State(emu): State<Shared>,
    Path(reference): Path<String>,
    body: Bytes,
) -> Created {
    let body = json_object(&body)?;
    real::staged(
        &emu.state,
        emu.real.as_ref(),
        |state| plan_branch(state, reference, &body),
        |state, mut branch: BranchRecord, on| {
            branch.seq = state.seq();
            branch.real = on;
            state.branches.insert(branch.id.clone(), branch.clone());
            Ok((StatusCode::CREATED, Json(branch_json(&branch))))
        },
    )
    .await
}

/// A branch of project `reference` as `body` asks for, and its real
/// database: a copy of the project's.
fn plan_branch(
    state: &mut SupabaseState,
    reference: String,
    body: &Map<String, Value>,
) -> Result<Step<BranchRecord, (StatusCode, Json<Value>)>, SupabaseError> {
    let parent_real = state.project_mut(&reference)?.real;
    let name = required_str(body, "branch_name")?;
    let git_branch = optional_str(body, "git_branch")?;
    let persistent = optional_bool(body, "persistent")?.unwrap_or(false);
    let with_data = optional_bool(body, "with_data")?.unwrap_or(false);
    for field in [
        "region",
        "desired_instance_size",
        "release_channel",
        "notify_url",
    ] {
        optional_str(body, field)?;
    }
    if state
        .branches
        .values()
        .any(|b| b.parent_project_ref == reference && b.name == name)
    {
        return Err(SupabaseError::new(
            StatusCode::CONFLICT,
            format!("branch {name} already exists in project {reference}"),
        ));
    }
    let branch = BranchRecord {
        seq: 0,
        id: uuid_v4(),
        name,
        project_ref: state.new_ref(),
        parent_project_ref: reference,
        git_branch,
        persistent,
        with_data,
        created_at: now_rfc3339(),
        db_pass: random_token(32),
        lifecycle: Lifecycle::transitional(COMING_UP, state.provisioning_polls),
        real: false,
    };
    let contents = if parent_real {
        Contents::Copy(SupabaseEmulator::real_database(&branch.parent_project_ref))
    } else {
        Contents::Empty
    };
    let work = Work::Make(Make {
        name: SupabaseEmulator::real_database(&branch.project_ref),
        password: Some(Password::new(branch.db_pass.clone())),
        contents,
    });
    Ok(Step::Go(branch, work))
}

async fn branch_list(State(emu): State<Shared>, Path(reference): Path<String>) -> Answer {
    let mut state = emu.state.lock();
    state.project_mut(&reference)?;
    let branches = oldest_first(
        state
            .branches
            .values()
            .filter(|b| b.parent_project_ref == reference),
        |b| b.seq,
    );
    Ok(Json(Value::Array(
        branches.into_iter().map(branch_json).collect(),
    )))
}

async fn branch_by_name(
    State(emu): State<Shared>,
    Path((reference, name)): Path<(String, String)>,
) -> Answer {
    let mut state = emu.state.lock();
    state.project_mut(&reference)?;
    state
        .branches
        .values()
        .find(|b| b.parent_project_ref == reference && b.name == name)
        .map(|b| Json(branch_json(b)))
        .ok_or_else(|| SupabaseError::not_found("branch", &name))
}

async fn branch_config(State(emu): State<Shared>, Path(id_or_ref): Path<String>) -> Answer {
    let mut state = emu.state.lock();
    let id = state
        .find_branch(&id_or_ref)
        .cloned()
        .ok_or_else(|| SupabaseError::not_found("branch", &id_or_ref))?;
    let branch = state
        .branches
        .get_mut(&id)
        .ok_or_else(|| SupabaseError::not_found("branch", &id_or_ref))?;
    let status = branch.lifecycle.poll();
    Ok(Json(branch_config_json(
        branch,
        status,
        emu.real.as_deref(),
    )))
}

async fn branch_delete(State(emu): State<Shared>, Path(id_or_ref): Path<String>) -> Answer {
    real::staged(
        &emu.state,
        emu.real.as_ref(),
        |state| {
            let branch = state
                .find_branch(&id_or_ref)
                .and_then(|id| state.branches.get(id))
                .ok_or_else(|| SupabaseError::not_found("branch", &id_or_ref))?;
            let databases = if branch.real {
                vec![SupabaseEmulator::real_database(&branch.project_ref)]
            } else {
                Vec::new()
            };
            Ok(Step::Go(branch.id.clone(), Work::Drop(databases)))
        },
        |state, id, _| {
            state.branches.remove(&id);
            Ok(Json(json!({ "message": "ok" })))
        },
    )
    .await
}

async fn backups_list(State(emu): State<Shared>, Path(reference): Path<String>) -> Answer {
    let mut state = emu.state.lock();
    let project = state.project_mut(&reference)?;
    Ok(Json(json!({
        "region": project.region,
        "walg_enabled": true,
        "pitr_enabled": project.pitr_enabled,
        "backups": [{
            "is_physical_backup": true,
            "status": "COMPLETED",
            "inserted_at": project.created_at,
        }],
        "physical_backup_data": {
            "earliest_physical_backup_date_unix": project.created_unix,
            "latest_physical_backup_date_unix": unix_now(),
        },
    })))
}

async fn restore_pitr(
    State(emu): State<Shared>,
    Path(reference): Path<String>,
    body: Bytes,
) -> Result<StatusCode, SupabaseError> {
    let body = json_object(&body)?;
    let target = match body.get("recovery_time_target_unix") {
        Some(Value::Number(n)) => n.as_i64().ok_or_else(|| {
            SupabaseError::bad_request("recovery_time_target_unix must be an integer")
        })?,
        Some(_) => {
            return Err(SupabaseError::bad_request(
                "recovery_time_target_unix must be an integer",
            ));
        }
        None => {
            return Err(SupabaseError::bad_request(
                "recovery_time_target_unix is required",
            ));
        }
    };
    let mut state = emu.state.lock();
    let polls = state.provisioning_polls;
    let project = state.project_mut(&reference)?;
    if !project.pitr_enabled {
        return Err(SupabaseError::bad_request(
            "point-in-time recovery is not enabled for this project",
        ));
    }
    let status = project.lifecycle.current();
    if status != ACTIVE_HEALTHY {
        return Err(SupabaseError::bad_request(format!(
            "project {reference} is {status}; it must be ACTIVE_HEALTHY to restore"
        )));
    }
    if target < project.created_unix || target > unix_now() {
        return Err(SupabaseError::bad_request(
            "recovery_time_target_unix is outside the recovery window",
        ));
    }
    project.restores.push(target);
    project.lifecycle = Lifecycle::transitional(RESTORING, polls);
    Ok(StatusCode::CREATED)
}

async fn update_password(
    State(emu): State<Shared>,
    Path(reference): Path<String>,
    body: Bytes,
) -> Answer {
    let body = json_object(&body)?;
    let password = required_str(&body, "password")?;
    real::staged(
        &emu.state,
        emu.real.as_ref(),
        |state| {
            // A branch is a project of its own: its ref works here too.
            let (backed, own_ref) = match state.projects.get(&reference) {
                Some(project) => (project.real, project.reference.clone()),
                None => {
                    let branch = state
                        .find_branch(&reference)
                        .and_then(|id| state.branches.get(id))
                        .ok_or_else(|| SupabaseError::not_found("project", &reference))?;
                    (branch.real, branch.project_ref.clone())
                }
            };
            let work = if backed {
                Work::SetPassword {
                    name: SupabaseEmulator::real_database(&own_ref),
                    password: Password::new(password.clone()),
                }
            } else {
                Work::Nothing
            };
            Ok(Step::Go((), work))
        },
        |state, (), _| {
            if let Some(project) = state.projects.get_mut(&reference) {
                project.db_pass = password.clone();
            } else {
                let id = state
                    .find_branch(&reference)
                    .cloned()
                    .ok_or_else(|| SupabaseError::not_found("project", &reference))?;
                if let Some(branch) = state.branches.get_mut(&id) {
                    branch.db_pass = password.clone();
                }
            }
            Ok(Json(json!({ "message": "Database password updated" })))
        },
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_database_is_coming_up_for_the_configured_number_of_reads() {
        let mut lifecycle = Lifecycle::transitional(COMING_UP, 2);
        assert_eq!(lifecycle.current(), COMING_UP);
        assert_eq!(lifecycle.poll(), COMING_UP);
        assert_eq!(lifecycle.poll(), COMING_UP);
        assert_eq!(lifecycle.poll(), ACTIVE_HEALTHY);
        assert_eq!(lifecycle.poll(), ACTIVE_HEALTHY);

        let mut immediate = Lifecycle::transitional(RESTORING, 0);
        assert_eq!(immediate.poll(), ACTIVE_HEALTHY);

        let mut failed = Lifecycle::transitional(INIT_FAILED, 0);
        assert_eq!(failed.poll(), INIT_FAILED);
    }

    #[test]
    fn branch_ids_are_version_4_uuids() {
        let id = uuid_v4();
        let parts: Vec<_> = id.split('-').map(str::len).collect();
        assert_eq!(parts, [8, 4, 4, 4, 12]);
        assert_eq!(&id[14..15], "4");
        assert!(matches!(&id[19..20], "8" | "9" | "a" | "b"), "{id}");
    }
}
