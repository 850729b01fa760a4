//! Emulated CapyDB API (`vendor-apis/capydb.txt`): the three documented
//! endpoints, Bearer auth with `capy_live_...` keys and `{"error": "..."}`
//! error bodies.
//!
//! - `GET /v1/projects/{projectID}/connections`
//! - `GET /v1/preview-databases/{previewID}/connections`
//! - `POST /v1/projects/{projectID}/credentials/rotate`
//!
//! The API cannot create projects or preview databases, so tests seed them with
//! [`CapyDbEmulator::add_project`] and [`CapyDbEmulator::add_preview`].
//!
//! Where the document is silent, the emulator chooses:
//! - Only keys of the documented `capy_live_` form that were configured are
//!   accepted; Clerk session tokens are not emulated.
//! - A rotation job advances one step (`pending` -> `running` -> `succeeded`)
//!   each time its project's connections are read: the emulated worker runs at
//!   the pace of the reads, so a client that polls the connections sees the
//!   rotation finish. Tests can also advance a job out of band
//!   ([`CapyDbEmulator::advance_job`]), as a real worker would between two
//!   polls. (Clients must not depend on this pace; the dbops client does not.)
//! - A new job is answered `202 Accepted`, an in-flight job `200 OK`.
//!
//! With real databases ([`real`]), projects and previews seeded with
//! [`CapyDbEmulator::seed_project`] and [`CapyDbEmulator::seed_preview`] are
//! real databases on that server (a preview starts as a copy of its
//! project's data), owned by a role of the same name (the `username`), and
//! their `direct_url` and `pooled_url` both name the server (there is no
//! pooler). A rotation job that succeeds sets the real role's new password
//! before the project's connections show it.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Value, json};

use crate::emulator::base::real::{self, Contents, Make, RealDatabases, Step, Work};
use crate::emulator::base::scaffold::{ApiKeys, Persistent, Refusal, Store, Vendor};
use crate::emulator::base::wire::{ApiError, now_rfc3339, random_token};
use crate::providers::Password;

/// The documented form of CapyDB API keys.
pub const API_KEY_PREFIX: &str = "capy_live_";
const ORGANIZATION_ID: &str = "org_emulator";
const CLUSTER_ID: &str = "cluster-emulator-1";
const WORKER: &str = "emulator-worker";
const JOB_TYPE: &str = "rotate_credentials";
const MAX_ATTEMPTS: u64 = 3;
/// The API's name among the emulated ones (in real database names).
const API: &str = "capydb";
/// Preview databases' (in real database names, apart from projects').
const PREVIEW_API: &str = "capydbpv";

/// Database credentials of a project or preview database. No `Debug`: it holds a password.
#[derive(Clone, serde::Serialize, serde::Deserialize)]
struct Credentials {
    username: String,
    password: String,
    host: String,
    database: String,
    /// Backed by a real database ([`real`]) named `database`, whose role is `username`.
    #[serde(default, skip_serializing_if = "real::is_false")]
    real: bool,
}

impl Credentials {
    fn new(username: String, host: String) -> Self {
        Self {
            username,
            password: random_token(24),
            host,
            database: "capydb".to_string(),
            real: false,
        }
    }

    /// Credentials of the real database `name` on `real` (not yet made).
    fn real(name: String, real: &RealDatabases) -> Self {
        Self {
            username: name.clone(),
            password: random_token(24),
            host: real.host().to_string(),
            database: name,
            real: true,
        }
    }

    /// The real database to make for these credentials.
    fn make(&self, contents: Contents) -> Work {
        Work::Make(Make {
            name: self.database.clone(),
            password: Some(Password::new(self.password.clone())),
            contents,
        })
    }

    fn connections_json(&self, real: Option<&RealDatabases>) -> Value {
        if let Some(real) = real.filter(|_| self.real) {
            // No pooler in front of a real database: both URLs name the server.
            let url = real.uri(&self.database, &self.password);
            return json!({
                "connections": {
                    "direct_url": url,
                    "pooled_url": url,
                    "username": self.username,
                }
            });
        }
        json!({
            "connections": {
                "direct_url": format!(
                    "postgresql://{}:{}@{}:5432/{}?sslmode=require",
                    self.username, self.password, self.host, self.database
                ),
                "pooled_url": format!(
                    "postgresql://{}:{}@pooler.{}:6543/{}?sslmode=require&pgbouncer=true",
                    self.username, self.password, self.host, self.database
                ),
                "username": self.username,
            }
        })
    }
}

#[derive(serde::Serialize, serde::Deserialize)]
struct ProjectRecord {
    credentials: Credentials,
    /// The rotation job holding the project's lock, while one is in flight.
    locked_by: Option<String>,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct PreviewRecord {
    project_id: String,
    credentials: Credentials,
}

/// Where a rotation job is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
enum JobState {
    Pending,
    Running,
    Succeeded,
    Failed,
}

impl JobState {
    fn as_str(self) -> &'static str {
        match self {
            JobState::Pending => "pending",
            JobState::Running => "running",
            JobState::Succeeded => "succeeded",
            JobState::Failed => "failed",
        }
    }

    fn in_flight(self) -> bool {
        matches!(self, JobState::Pending | JobState::Running)
    }
}

#[derive(serde::Serialize, serde::Deserialize)]
struct JobRecord {
    id: String,
    project_id: String,
    state: JobState,
    attempts: u64,
    created_at: String,
    updated_at: String,
    claimed_at: Option<String>,
    started_at: Option<String>,
    completed_at: Option<String>,
    error: Option<String>,
    last_exit_code: Option<i64>,
    /// Set by [`CapyDbEmulator::fail_next_step`]: the job's next step fails with this error.
    fail_with: Option<String>,
}

impl JobRecord {
    fn json(&self) -> Value {
        let running_or_done = self.state != JobState::Pending;
        json!({
            "job": {
                "attempts": self.attempts,
                "claimed_at": self.claimed_at,
                "claimed_by": running_or_done.then_some(WORKER),
                "cluster_id": CLUSTER_ID,
                "completed_at": self.completed_at,
                "created_at": self.created_at,
                "error": self.error,
                "id": self.id,
                "last_exit_code": self.last_exit_code,
                "last_stderr": self.completed_at.as_ref().map(|_| ""),
                "last_stdout": self.completed_at.as_ref().map(|_| ""),
                "locked_resource": format!("project:{}", self.project_id),
                "max_attempts": MAX_ATTEMPTS,
                "organization_id": ORGANIZATION_ID,
                "preview_database_id": Value::Null,
                "project_id": self.project_id,
                "retry_classification": self.error.as_ref().map(|_| "permanent"),
                "started_at": self.started_at,
                "state": self.state.as_str(),
                "type": JOB_TYPE,
                "updated_at": self.updated_at,
            }
        })
    }
}

#[derive(Default, serde::Serialize, serde::Deserialize)]
struct CapyState {
    projects: HashMap<String, ProjectRecord>,
    previews: HashMap<String, PreviewRecord>,
    jobs: HashMap<String, JobRecord>,
}

impl CapyState {
    /// Whether the job's next step is its success.
    fn succeeds_next(&self, job_id: &str) -> bool {
        self.jobs
            .get(job_id)
            .is_some_and(|job| job.state == JobState::Running && job.fail_with.is_none())
    }

    /// Moves a job one step: pending -> running -> succeeded (or failed, when a
    /// failure was asked for). Success gives the project a new password
    /// (`password`, or a random one) and releases its lock; failure only
    /// releases the lock. Finished jobs stay put.
    fn advance(&mut self, job_id: &str, password: Option<String>) -> Option<JobState> {
        let job = self.jobs.get_mut(job_id)?;
        let now = now_rfc3339();
        let next = match job.state {
            JobState::Pending => {
                job.claimed_at = Some(now.clone());
                job.started_at = Some(now.clone());
                job.attempts += 1;
                JobState::Running
            }
            JobState::Running => {
                job.completed_at = Some(now.clone());
                match job.fail_with.take() {
                    Some(error) => {
                        job.error = Some(error);
                        job.last_exit_code = Some(1);
                        JobState::Failed
                    }
                    None => {
                        job.last_exit_code = Some(0);
                        JobState::Succeeded
                    }
                }
            }
            finished => return Some(finished),
        };
        job.state = next;
        job.updated_at = now;
        if !next.in_flight() {
            let project_id = job.project_id.clone();
            if let Some(project) = self.projects.get_mut(&project_id) {
                if next == JobState::Succeeded {
                    project.credentials.password = password.unwrap_or_else(|| random_token(24));
                }
                if project.locked_by.as_deref() == Some(job_id) {
                    project.locked_by = None;
                }
            }
        }
        Some(next)
    }
}

/// The emulated CapyDB account; every accepted API key sees the same account.
pub struct CapyDbEmulator {
    api_keys: ApiKeys,
    state: Store<CapyState>,
    /// The server seeded projects and previews are real databases on, if any.
    real: Option<Arc<RealDatabases>>,
}

impl CapyDbEmulator {
    /// An empty account accepting `api_keys`. Keys not of the documented
    /// `capy_live_` form are never accepted.
    pub fn new(api_keys: Vec<String>) -> Self {
        if api_keys.iter().any(|k| !k.starts_with(API_KEY_PREFIX)) {
            tracing::warn!(
                "some configured CapyDB emulator keys do not start with {API_KEY_PREFIX} and will be refused"
            );
        }
        Self {
            api_keys: ApiKeys::new(api_keys),
            state: Store::default(),
            real: None,
        }
    }

    /// `self` making a real database on `real` for every project and preview
    /// seeded with [`CapyDbEmulator::seed_project`] and [`CapyDbEmulator::seed_preview`].
    pub fn with_real(mut self, real: Option<Arc<RealDatabases>>) -> Self {
        self.real = real;
        self
    }

    /// The real database (and role) of project `id`.
    pub fn real_project_database(id: &str) -> String {
        real::name(API, id)
    }

    /// The real database (and role) of preview database `id`.
    pub fn real_preview_database(id: &str) -> String {
        real::name(PREVIEW_API, id)
    }

    /// Seeds a project, as [`CapyDbEmulator::add_project`] does, and with
    /// real databases makes its real database: the way to seed then.
    pub async fn seed_project(&self, id: &str) -> Result<String, String> {
        let real = self.real.as_deref();
        real::staged(
            &self.state,
            self.real.as_ref(),
            |state| {
                if let Some(project) = state.projects.get(id) {
                    return Ok(Step::Answer(project.credentials.password.clone()));
                }
                let credentials = match real {
                    Some(real) => Credentials::real(Self::real_project_database(id), real),
                    None => new_project_credentials(),
                };
                let work = credentials.make(Contents::Empty);
                Ok(Step::Go(credentials, work))
            },
            |state, credentials, _| {
                let project =
                    state
                        .projects
                        .entry(id.to_string())
                        .or_insert_with(|| ProjectRecord {
                            credentials,
                            locked_by: None,
                        });
                Ok(project.credentials.password.clone())
            },
        )
        .await
        .map_err(|e: CapyError| e.message)
    }

    /// Seeds a preview database, as [`CapyDbEmulator::add_preview`] does, and
    /// with real databases makes its real database, a copy of its project's.
    pub async fn seed_preview(
        &self,
        project_id: &str,
        preview_id: &str,
    ) -> Result<Option<String>, String> {
        let real = self.real.as_deref();
        real::staged(
            &self.state,
            self.real.as_ref(),
            |state| {
                let Some(project) = state.projects.get(project_id) else {
                    return Ok(Step::Answer(None));
                };
                if let Some(preview) = state.previews.get(preview_id) {
                    return Ok(Step::Answer(Some(preview.credentials.password.clone())));
                }
                let credentials = match real {
                    Some(real) => Credentials::real(Self::real_preview_database(preview_id), real),
                    None => new_preview_credentials(),
                };
                let contents = if project.credentials.real {
                    Contents::Copy(project.credentials.database.clone())
                } else {
                    Contents::Empty
                };
                let work = credentials.make(contents);
                Ok(Step::Go(credentials, work))
            },
            |state, credentials, _| {
                let preview = state
                    .previews
                    .entry(preview_id.to_string())
                    .or_insert_with(|| PreviewRecord {
                        project_id: project_id.to_string(),
                        credentials,
                    });
                Ok(Some(preview.credentials.password.clone()))
            },
        )
        .await
        .map_err(|e: CapyError| e.message)
    }

    /// Seeds a project (the API has no create) and returns its database password.
    /// An existing project is kept as it is. It has no real database, even
    /// when the emulator makes them: [`CapyDbEmulator::seed_project`] makes one.
    pub fn add_project(&self, id: &str) -> String {
        let mut state = self.state.lock();
        let project = state
            .projects
            .entry(id.to_string())
            .or_insert_with(|| ProjectRecord {
                credentials: new_project_credentials(),
                locked_by: None,
            });
        project.credentials.password.clone()
    }

    /// Seeds a preview database of `project_id` and returns its password; `None`
    /// when the project does not exist. An existing preview is kept as it is.
    /// It has no real database ([`CapyDbEmulator::seed_preview`] makes one).
    pub fn add_preview(&self, project_id: &str, preview_id: &str) -> Option<String> {
        let mut state = self.state.lock();
        if !state.projects.contains_key(project_id) {
            return None;
        }
        let preview = state
            .previews
            .entry(preview_id.to_string())
            .or_insert_with(|| PreviewRecord {
                project_id: project_id.to_string(),
                credentials: new_preview_credentials(),
            });
        Some(preview.credentials.password.clone())
    }

    /// A project's current database password.
    pub fn project_password(&self, id: &str) -> Option<String> {
        self.state
            .lock()
            .projects
            .get(id)
            .map(|p| p.credentials.password.clone())
    }

    /// A preview database's current password.
    pub fn preview_password(&self, id: &str) -> Option<String> {
        self.state
            .lock()
            .previews
            .get(id)
            .map(|p| p.credentials.password.clone())
    }

    /// The project a preview database belongs to.
    pub fn preview_project(&self, id: &str) -> Option<String> {
        self.state
            .lock()
            .previews
            .get(id)
            .map(|p| p.project_id.clone())
    }

    /// Number of rotation jobs ever started.
    pub fn job_count(&self) -> usize {
        self.state.lock().jobs.len()
    }

    /// A job's state (`pending`, `running`, `succeeded`, `failed`).
    pub fn job_state(&self, job_id: &str) -> Option<&'static str> {
        self.state.lock().jobs.get(job_id).map(|j| j.state.as_str())
    }

    /// Moves a job one step without anyone observing it, as CapyDB's worker
    /// would between two polls; returns the new state. The step that would
    /// make a job succeed on a project with a real database is left to the
    /// next read of the project's connections (it must set the real password
    /// first, which this cannot wait for): the state is then unchanged.
    pub fn advance_job(&self, job_id: &str) -> Option<&'static str> {
        let mut state = self.state.lock();
        let real_project = state
            .jobs
            .get(job_id)
            .and_then(|job| state.projects.get(&job.project_id))
            .is_some_and(|project| project.credentials.real);
        if self.real.is_some() && real_project && state.succeeds_next(job_id) {
            return state.jobs.get(job_id).map(|job| job.state.as_str());
        }
        state.advance(job_id, None).map(JobState::as_str)
    }

    /// Makes the job's completing step fail with `error` instead of succeeding
    /// (the password is then left unchanged). False for an unknown or finished job.
    pub fn fail_next_step(&self, job_id: &str, error: &str) -> bool {
        match self.state.lock().jobs.get_mut(job_id) {
            Some(job) if job.state.in_flight() => {
                job.fail_with = Some(error.to_string());
                true
            }
            _ => false,
        }
    }
}

fn new_project_credentials() -> Credentials {
    Credentials::new(
        format!("capy_{}", random_token(8)),
        format!("{}.db.capydb.emulator.invalid", random_token(10)),
    )
}

fn new_preview_credentials() -> Credentials {
    Credentials::new(
        format!("capy_preview_{}", random_token(8)),
        format!("{}.preview.capydb.emulator.invalid", random_token(10)),
    )
}

/// An error answer in CapyDB's shape: `{"error": "..."}`.
pub type CapyError = ApiError<CapyDbEmulator>;
type Shared = Arc<CapyDbEmulator>;

impl Vendor for CapyDbEmulator {
    fn routes() -> Router<Shared> {
        Router::new()
            .route("/v1/projects/{id}/connections", get(project_connections))
            .route(
                "/v1/preview-databases/{id}/connections",
                get(preview_connections),
            )
            .route("/v1/projects/{id}/credentials/rotate", post(rotate))
            .fallback(|| async { CapyError::new(StatusCode::NOT_FOUND, "not found") })
    }

    fn api_keys(&self) -> &ApiKeys {
        &self.api_keys
    }

    fn error_body(_code: &str, message: &str) -> Value {
        json!({ "error": message })
    }

    fn sections(&self) -> Vec<(&'static str, &dyn Persistent)> {
        vec![("capydb", &self.state)]
    }

    /// Only configured keys of the documented `capy_live_` form.
    fn authorize(&self, token: &str, _method: &Method) -> Result<(), Refusal> {
        if token.starts_with(API_KEY_PREFIX) && self.api_keys.accepts(token) {
            Ok(())
        } else {
            Err(Refusal::UnknownToken)
        }
    }
}

/// A read of a project's connections moves its rotation job (if any) one
/// step; a step that succeeds sets the real password first.
async fn project_connections(
    State(emu): State<Shared>,
    Path(id): Path<String>,
) -> Result<Json<Value>, CapyError> {
    let real = emu.real.as_deref();
    real::staged(
        &emu.state,
        emu.real.as_ref(),
        |state| {
            let project = state.projects.get(&id);
            let locked_by = project.and_then(|p| p.locked_by.clone());
            let Some(job_id) = locked_by else {
                return Ok(Step::Go((None, None), Work::Nothing));
            };
            if !state.succeeds_next(&job_id) {
                return Ok(Step::Go((Some(job_id), None), Work::Nothing));
            }
            let password = random_token(24);
            let work = match project.map(|p| &p.credentials) {
                Some(credentials) if credentials.real => Work::SetPassword {
                    name: credentials.username.clone(),
                    password: Password::new(password.clone()),
                },
                _ => Work::Nothing,
            };
            Ok(Step::Go((Some(job_id), Some(password)), work))
        },
        |state, (job_id, password), _| {
            if let Some(job_id) = job_id {
                state.advance(&job_id, password);
            }
            let project = state
                .projects
                .get(&id)
                .ok_or_else(|| CapyError::not_found("project", &id))?;
            Ok(Json(project.credentials.connections_json(real)))
        },
    )
    .await
}

async fn preview_connections(
    State(emu): State<Shared>,
    Path(id): Path<String>,
) -> Result<Json<Value>, CapyError> {
    let state = emu.state.lock();
    let preview = state
        .previews
        .get(&id)
        .ok_or_else(|| CapyError::not_found("preview database", &id))?;
    Ok(Json(
        preview.credentials.connections_json(emu.real.as_deref()),
    ))
}

/// `POST /v1/projects/{projectID}/credentials/rotate`.
///
/// A rotation job locks its project (the job's `locked_resource`) until it
/// finishes; while it is in flight, a rotate POST for the project starts
/// nothing and answers that same job (`200`). Only when no job holds the lock
/// does a POST start a new job (`202`, state `pending`). The project's password (in
/// `direct_url` and `pooled_url`) changes only when a job succeeds.
async fn rotate(State(emu): State<Shared>, Path(id): Path<String>) -> Result<Response, CapyError> {
    let mut state = emu.state.lock();
    let locked_by = state
        .projects
        .get(&id)
        .ok_or_else(|| CapyError::not_found("project", &id))?
        .locked_by
        .clone();
    if let Some(job) = locked_by.and_then(|job_id| state.jobs.get(&job_id)) {
        return Ok((StatusCode::OK, Json(job.json())).into_response());
    }
    let now = now_rfc3339();
    let job = JobRecord {
        id: format!("job_{}", random_token(16)),
        project_id: id.clone(),
        state: JobState::Pending,
        attempts: 0,
        created_at: now.clone(),
        updated_at: now,
        claimed_at: None,
        started_at: None,
        completed_at: None,
        error: None,
        last_exit_code: None,
        fail_with: None,
    };
    let body = job.json();
    if let Some(project) = state.projects.get_mut(&id) {
        project.locked_by = Some(job.id.clone());
    }
    state.jobs.insert(job.id.clone(), job);
    Ok((StatusCode::ACCEPTED, Json(body)).into_response())
}
