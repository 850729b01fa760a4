//! Emulated infrai `/v1/db` API (`vendor-apis/infrai-db.txt`): the twelve
//! project, branch and snapshot capabilities, Bearer auth, idempotency keys,
//! cursor pagination and `{"error": {"code", "message"}}` error bodies.
//!
//! The document gives no error schema and no list limits; the emulator uses
//! upper-case error codes in the style the document shows (`INSUFFICIENT_CREDIT`),
//! a default page size of 20 and a maximum of 100.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use super::infrai_byok::{self, ByokHost, ByokState};
use crate::emulator::base::real::{self, Contents, Make, RealDatabases, Step, Work};
use crate::emulator::base::scaffold::{
    ApiKeys, HasIdempotency, IdempotencyCache, PageQuery, Paging, Persistent, Sequence, Store,
    Vendor, oldest_first,
};
use crate::emulator::base::wire::{
    ApiError, json_object, now_rfc3339, optional_str, random_token, required_str, set_optional,
};
use crate::providers::Password;

/// Vendors infrai routes to (its discovery endpoint's answer for `db.project.create`).
pub const VENDORS: &[&str] = &["neon", "supabase", "planetscale"];
const DEFAULT_VENDOR: &str = "neon";
const DEFAULT_REGION: &str = "us-east-1";
const DEFAULT_BRANCH: &str = "main";
/// The API's name among the emulated ones (in real database names).
const API: &str = "infrai";
/// Page sizes of the lists (the document gives none).
const PAGING: Paging = Paging {
    default_size: 20,
    max_size: 100,
};

#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
struct ProjectRecord {
    seq: u64,
    id: String,
    name: String,
    vendor: String,
    region: String,
    created_at: String,
    default_branch_id: String,
}

#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
struct BranchRecord {
    seq: u64,
    id: String,
    project_id: String,
    branch_name: String,
    /// The branch this one was copied from; `None` for a project's default branch.
    parent_branch_id: Option<String>,
    /// A branch is a copy: it starts with its parent's data.
    data: BTreeMap<String, String>,
    role: String,
    password: String,
    host: String,
    /// Backed by a real database ([`real`]).
    #[serde(default, skip_serializing_if = "real::is_false")]
    real: bool,
}

#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
struct SnapshotRecord {
    seq: u64,
    id: String,
    project_id: String,
    label: Option<String>,
    created_at: String,
    /// The default branch's data at the time of the snapshot.
    data: BTreeMap<String, String>,
    /// Backed by a real (frozen) database ([`real`]).
    #[serde(default, skip_serializing_if = "real::is_false")]
    real: bool,
}

#[derive(Default, serde::Serialize, serde::Deserialize)]
struct InfraiState {
    next_seq: Sequence,
    projects: HashMap<String, ProjectRecord>,
    branches: HashMap<String, BranchRecord>,
    snapshots: HashMap<String, SnapshotRecord>,
    idempotency: IdempotencyCache,
}

impl HasIdempotency for InfraiState {
    fn idempotency(&mut self) -> &mut IdempotencyCache {
        &mut self.idempotency
    }
}

/// The emulated infrai account(s); every accepted API key sees the same account.
pub struct InfraiEmulator {
    api_keys: ApiKeys,
    state: Store<InfraiState>,
    /// The account is out of credit: every billed call answers 402
    /// `INSUFFICIENT_CREDIT`, the one error the document names.
    out_of_credit: std::sync::atomic::AtomicBool,
    /// The `/v1/byok` module's state.
    pub byok: ByokState,
    /// The server branches and snapshots are real databases on, if any.
    real: Option<Arc<RealDatabases>>,
}

/// What a test can see of the emulator's model without going through HTTP.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProjectView {
    pub id: String,
    pub name: String,
    pub vendor: String,
    pub region: String,
}

impl InfraiEmulator {
    pub fn new(api_keys: Vec<String>) -> Self {
        Self {
            api_keys: ApiKeys::new(api_keys),
            state: Store::default(),
            out_of_credit: Default::default(),
            byok: ByokState::default(),
            real: None,
        }
    }

    /// `self` making a real database on `real` for every branch (a project's
    /// default branch included) and snapshot.
    pub fn with_real(mut self, real: Option<Arc<RealDatabases>>) -> Self {
        self.real = real;
        self
    }

    /// The real database of the branch or snapshot `id`.
    pub fn real_database(id: &str) -> String {
        real::name(API, id)
    }

    /// Every project, oldest first.
    pub fn projects(&self) -> Vec<ProjectView> {
        let state = self.state.lock();
        oldest_first(state.projects.values(), |p| p.seq)
            .into_iter()
            .map(|p| ProjectView {
                id: p.id.clone(),
                name: p.name.clone(),
                vendor: p.vendor.clone(),
                region: p.region.clone(),
            })
            .collect()
    }

    /// Spends (or tops up) the account's credit. The document bills every
    /// call and names 402 `INSUFFICIENT_CREDIT` for an empty account; it gives
    /// no prices, so the emulator is either funded or not.
    pub fn set_out_of_credit(&self, out: bool) {
        self.out_of_credit
            .store(out, std::sync::atomic::Ordering::SeqCst);
    }

    /// Number of branches (default branches included).
    pub fn branch_count(&self) -> usize {
        self.state.lock().branches.len()
    }

    /// Number of snapshots.
    pub fn snapshot_count(&self) -> usize {
        self.state.lock().snapshots.len()
    }

    /// Deletes a project as if someone did it in the vendor's console.
    pub fn delete_project_out_of_band(&self, id: &str) -> bool {
        let mut state = self.state.lock();
        let existed = state.projects.contains_key(id);
        let databases = state.real_databases_of(id);
        remove_project(&mut state, id);
        if let Some(real) = &self.real {
            real.drop_later(databases);
        }
        existed
    }

    /// Writes a row into a branch's data (the emulator's stand-in for SQL).
    pub fn write_branch_data(&self, branch_id: &str, key: &str, value: &str) -> bool {
        match self.state.lock().branches.get_mut(branch_id) {
            Some(branch) => {
                branch.data.insert(key.to_string(), value.to_string());
                true
            }
            None => false,
        }
    }

    /// A branch's data and parent, if it exists.
    pub fn branch_data(
        &self,
        branch_id: &str,
    ) -> Option<(Option<String>, BTreeMap<String, String>)> {
        self.state
            .lock()
            .branches
            .get(branch_id)
            .map(|b| (b.parent_branch_id.clone(), b.data.clone()))
    }

    /// The id of a project's default branch.
    pub fn default_branch_id(&self, project_id: &str) -> Option<String> {
        self.state
            .lock()
            .projects
            .get(project_id)
            .map(|p| p.default_branch_id.clone())
    }
}

impl InfraiState {
    fn seq(&mut self) -> u64 {
        self.next_seq.next()
    }

    fn project_json(&self, p: &ProjectRecord, real: Option<&RealDatabases>) -> Value {
        let uri = self
            .branches
            .get(&p.default_branch_id)
            .map(|b| connection_uri(b, real))
            .unwrap_or_default();
        json!({
            "id": p.id,
            "name": p.name,
            "region": p.region,
            "connection_uri": uri,
            "created_at": p.created_at,
        })
    }

    /// The real databases of project `id`: its branches' and snapshots'.
    fn real_databases_of(&self, id: &str) -> Vec<String> {
        let branches = self
            .branches
            .values()
            .filter(|b| b.project_id == id && b.real)
            .map(|b| &b.id);
        let snapshots = self
            .snapshots
            .values()
            .filter(|s| s.project_id == id && s.real)
            .map(|s| &s.id);
        branches
            .chain(snapshots)
            .map(|id| InfraiEmulator::real_database(id))
            .collect()
    }

    /// Numbers and records a planned branch.
    fn add_branch(&mut self, mut branch: BranchRecord, real: bool) -> BranchRecord {
        branch.seq = self.seq();
        branch.real = real;
        self.branches.insert(branch.id.clone(), branch.clone());
        branch
    }

    /// Numbers and records a planned project and its default branch, holding `data`.
    fn add_project(
        &mut self,
        mut project: ProjectRecord,
        mut branch: BranchRecord,
        data: BTreeMap<String, String>,
        real: bool,
    ) -> ProjectRecord {
        project.seq = self.seq();
        branch.data = data;
        let branch = self.add_branch(branch, real);
        project.default_branch_id = branch.id;
        self.projects.insert(project.id.clone(), project.clone());
        project
    }
}

/// A branch about to be made: its id and password are chosen; [`InfraiState::add_branch`]
/// numbers and records it.
fn planned_branch(
    project: &ProjectRecord,
    branch_name: &str,
    parent: Option<&BranchRecord>,
) -> BranchRecord {
    let id = format!("br_{}", random_token(12));
    BranchRecord {
        seq: 0,
        host: format!(
            "{id}.{}.{}.emulator.invalid",
            project.region, project.vendor
        ),
        id,
        project_id: project.id.clone(),
        branch_name: branch_name.to_string(),
        parent_branch_id: parent.map(|p| p.id.clone()),
        data: parent.map(|p| p.data.clone()).unwrap_or_default(),
        role: "app_owner".to_string(),
        password: random_token(24),
        real: false,
    }
}

/// A project about to be made, with its default branch; [`InfraiState::add_project`]
/// numbers and records them.
fn planned_project(name: String, vendor: String, region: String) -> (ProjectRecord, BranchRecord) {
    let mut project = ProjectRecord {
        seq: 0,
        id: format!("prj_{}", random_token(12)),
        name,
        vendor,
        region,
        created_at: now_rfc3339(),
        default_branch_id: String::new(),
    };
    let branch = planned_branch(&project, DEFAULT_BRANCH, None);
    project.default_branch_id = branch.id.clone();
    (project, branch)
}

/// The real database of a planned branch: made from `contents`, its role
/// logging in with the branch's password.
fn make_branch(branch: &BranchRecord, contents: Contents) -> Work {
    Work::Make(Make {
        name: InfraiEmulator::real_database(&branch.id),
        password: Some(Password::new(branch.password.clone())),
        contents,
    })
}

/// A copy of `branch`'s real database (empty when it has none).
fn copy_of(branch: &BranchRecord) -> Contents {
    if branch.real {
        Contents::Copy(InfraiEmulator::real_database(&branch.id))
    } else {
        Contents::Empty
    }
}

fn connection_uri(b: &BranchRecord, real: Option<&RealDatabases>) -> String {
    if let Some(real) = real.filter(|_| b.real) {
        return real.uri(&InfraiEmulator::real_database(&b.id), &b.password);
    }
    format!(
        "postgresql://{}:{}@{}:5432/{}?sslmode=require",
        b.role, b.password, b.host, "appdb"
    )
}

fn branch_json(b: &BranchRecord, real: Option<&RealDatabases>) -> Value {
    json!({
        "id": b.id,
        "branch_name": b.branch_name,
        "project_id": b.project_id,
        "connection_uri": connection_uri(b, real),
    })
}

fn snapshot_json(s: &SnapshotRecord) -> Value {
    let mut v = json!({
        "id": s.id,
        "project_id": s.project_id,
        "created_at": s.created_at,
    });
    set_optional(&mut v, "label", s.label.as_deref());
    v
}

/// Refuses a billed call when the account is out of credit.
fn billed(emu: &InfraiEmulator) -> Result<(), InfraiError> {
    if emu.out_of_credit.load(std::sync::atomic::Ordering::SeqCst) {
        return Err(InfraiError::coded(
            StatusCode::PAYMENT_REQUIRED,
            "INSUFFICIENT_CREDIT",
            "the account has no credit left; POST /v1/account/topup",
        ));
    }
    Ok(())
}

fn remove_project(state: &mut InfraiState, id: &str) {
    state.projects.remove(id);
    state.branches.retain(|_, b| b.project_id != id);
    state.snapshots.retain(|_, s| s.project_id != id);
}

/// An error answer in infrai's shape: `{"error": {"code", "message"}}`.
pub type InfraiError = ApiError<InfraiEmulator>;
type Shared = Arc<InfraiEmulator>;
type Answer = Result<Json<Value>, InfraiError>;

impl Vendor for InfraiEmulator {
    /// `/v1/db/...` and `/v1/byok/...`.
    fn routes() -> Router<Shared> {
        Router::new()
            .route("/v1/db/project/create", post(project_create))
            .route("/v1/db/project/get/{id}", get(project_get))
            .route("/v1/db/project/list", get(project_list))
            .route("/v1/db/project/delete/{id}", delete(project_delete))
            .route("/v1/db/branch/create", post(branch_create))
            .route("/v1/db/branch/get/{id}", get(branch_get))
            .route("/v1/db/branch/list", get(branch_list))
            .route("/v1/db/branch/delete/{id}", delete(branch_delete))
            .route("/v1/db/snapshot/create", post(snapshot_create))
            .route("/v1/db/snapshot/get/{id}", get(snapshot_get))
            .route("/v1/db/snapshot/list", get(snapshot_list))
            .route("/v1/db/snapshot/restore/{id}", post(snapshot_restore))
            .merge(infrai_byok::routes::<InfraiEmulator>())
            .fallback(|| async { InfraiError::new(StatusCode::NOT_FOUND, "no such capability") })
    }

    fn api_keys(&self) -> &ApiKeys {
        &self.api_keys
    }

    fn error_body(code: &str, message: &str) -> Value {
        json!({ "error": { "code": code, "message": message } })
    }

    /// The `/v1/db` and the `/v1/byok` modules.
    fn sections(&self) -> Vec<(&'static str, &dyn Persistent)> {
        vec![
            ("infrai", &self.state),
            ("infrai_byok", self.byok.persistent()),
        ]
    }
}

/// The `/v1/byok` module, on this account and in this API's shapes.
impl ByokHost for InfraiEmulator {
    fn byok(&self) -> &ByokState {
        &self.byok
    }

    fn page(items: Vec<(u64, Value)>, query: &PageQuery) -> Answer {
        page(items, query)
    }
}

async fn project_create(State(emu): State<Shared>, body: Bytes) -> Answer {
    billed(&emu)?;
    let body = json_object(&body)?;
    let real = emu.real.as_deref();
    real::idempotent(
        &emu.state,
        emu.real.as_ref(),
        "db.project.create",
        body,
        |_, body| {
            let name = required_str(body, "name")?;
            let mode = optional_str(body, "mode")?.unwrap_or_else(|| "managed".to_string());
            if mode != "managed" && mode != "byok" {
                return Err(InfraiError::bad_request(
                    "mode must be \"managed\" or \"byok\"",
                ));
            }
            let vendor = optional_str(body, "vendor")?;
            if mode == "byok" && vendor.is_none() {
                return Err(InfraiError::coded(
                    StatusCode::BAD_REQUEST,
                    "VENDOR_REQUIRED",
                    "vendor is required when mode=byok",
                ));
            }
            let vendor = vendor.unwrap_or_else(|| DEFAULT_VENDOR.to_string());
            if !VENDORS.contains(&vendor.as_str()) {
                return Err(InfraiError::coded(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "UNKNOWN_VENDOR",
                    format!("vendor {vendor:?} is not available for db.project.create"),
                ));
            }
            for field in ["region", "plan", "postgres_version"] {
                optional_str(body, field)?;
            }
            let region =
                optional_str(body, "region")?.unwrap_or_else(|| DEFAULT_REGION.to_string());
            let (project, branch) = planned_project(name, vendor, region);
            let work = make_branch(&branch, Contents::Empty);
            Ok(((project, branch), work))
        },
        |state, _, (project, branch), on| {
            let project = state.add_project(project, branch, BTreeMap::new(), on);
            Ok(state.project_json(&project, real))
        },
    )
    .await
}

async fn project_get(State(emu): State<Shared>, Path(id): Path<String>) -> Answer {
    billed(&emu)?;
    let state = emu.state.lock();
    let project = state
        .projects
        .get(&id)
        .ok_or_else(|| InfraiError::not_found("project", &id))?;
    Ok(Json(state.project_json(project, emu.real.as_deref())))
}

/// The `project_id` filter of the branch and snapshot lists.
#[derive(Deserialize)]
struct ProjectFilter {
    project_id: Option<String>,
}

impl ProjectFilter {
    /// Whether an item of project `project_id` is listed.
    fn admits(&self, project_id: &str) -> bool {
        self.project_id.as_ref().is_none_or(|p| p == project_id)
    }
}

/// The page of `items` (sequence number, item) that `query` asks for:
/// `{"items": [...], "next_cursor"?}`.
fn page(items: Vec<(u64, Value)>, query: &PageQuery) -> Answer {
    let (items, next) = PAGING.page(items, query)?;
    let mut v = json!({ "items": items });
    set_optional(&mut v, "next_cursor", next);
    Ok(Json(v))
}

async fn project_list(State(emu): State<Shared>, Query(query): Query<PageQuery>) -> Answer {
    billed(&emu)?;
    let state = emu.state.lock();
    let items = state
        .projects
        .values()
        .map(|p| (p.seq, state.project_json(p, emu.real.as_deref())))
        .collect();
    page(items, &query)
}

async fn project_delete(State(emu): State<Shared>, Path(id): Path<String>) -> Answer {
    billed(&emu)?;
    real::staged(
        &emu.state,
        emu.real.as_ref(),
        |state| {
            if !state.projects.contains_key(&id) {
                return Err(InfraiError::not_found("project", &id));
            }
            Ok(Step::Go((), Work::Drop(state.real_databases_of(&id))))
        },
        |state, (), _| {
            remove_project(state, &id);
            Ok(Json(json!({ "ok": true })))
        },
    )
    .await
}

async fn branch_create(State(emu): State<Shared>, body: Bytes) -> Answer {
    billed(&emu)?;
    let body = json_object(&body)?;
    let real = emu.real.as_deref();
    real::idempotent(
        &emu.state,
        emu.real.as_ref(),
        "db.branch.create",
        body,
        |state, body| {
            let project_id = required_str(body, "project_id")?;
            let branch_name = required_str(body, "branch_name")?;
            let from =
                optional_str(body, "from_branch")?.unwrap_or_else(|| DEFAULT_BRANCH.to_string());
            let project = state
                .projects
                .get(&project_id)
                .cloned()
                .ok_or_else(|| InfraiError::not_found("project", &project_id))?;
            let in_project = |b: &&BranchRecord| b.project_id == project_id;
            if state
                .branches
                .values()
                .filter(in_project)
                .any(|b| b.branch_name == branch_name)
            {
                return Err(InfraiError::coded(
                    StatusCode::CONFLICT,
                    "ALREADY_EXISTS",
                    format!("branch {branch_name:?} already exists in project {project_id}"),
                ));
            }
            let parent = state
                .branches
                .values()
                .filter(in_project)
                .find(|b| b.branch_name == from)
                .cloned()
                .ok_or_else(|| InfraiError::not_found("branch", &from))?;
            let branch = planned_branch(&project, &branch_name, Some(&parent));
            let work = make_branch(&branch, copy_of(&parent));
            Ok((branch, work))
        },
        |state, _, branch, on| {
            let branch = state.add_branch(branch, on);
            Ok(branch_json(&branch, real))
        },
    )
    .await
}

async fn branch_get(State(emu): State<Shared>, Path(id): Path<String>) -> Answer {
    billed(&emu)?;
    let state = emu.state.lock();
    let branch = state
        .branches
        .get(&id)
        .ok_or_else(|| InfraiError::not_found("branch", &id))?;
    Ok(Json(branch_json(branch, emu.real.as_deref())))
}

async fn branch_list(
    State(emu): State<Shared>,
    Query(query): Query<PageQuery>,
    Query(filter): Query<ProjectFilter>,
) -> Answer {
    billed(&emu)?;
    let state = emu.state.lock();
    let items = state
        .branches
        .values()
        .filter(|b| filter.admits(&b.project_id))
        .map(|b| (b.seq, branch_json(b, emu.real.as_deref())))
        .collect();
    page(items, &query)
}

async fn branch_delete(State(emu): State<Shared>, Path(id): Path<String>) -> Answer {
    billed(&emu)?;
    real::staged(
        &emu.state,
        emu.real.as_ref(),
        |state| {
            let branch = state
                .branches
                .get(&id)
                .ok_or_else(|| InfraiError::not_found("branch", &id))?;
            if branch.parent_branch_id.is_none() {
                return Err(InfraiError::coded(
                    StatusCode::CONFLICT,
                    "DEFAULT_BRANCH",
                    "the default branch is deleted with its project",
                ));
            }
            let databases = if branch.real {
                vec![InfraiEmulator::real_database(&id)]
            } else {
                Vec::new()
            };
            Ok(Step::Go((), Work::Drop(databases)))
        },
        |state, (), _| {
            state.branches.remove(&id);
            Ok(Json(json!({ "ok": true })))
        },
    )
    .await
}

async fn snapshot_create(State(emu): State<Shared>, body: Bytes) -> Answer {
    billed(&emu)?;
    let body = json_object(&body)?;
    real::idempotent(
        &emu.state,
        emu.real.as_ref(),
        "db.snapshot.create",
        body,
        |state, body| {
            let project_id = required_str(body, "project_id")?;
            let label = optional_str(body, "label")?;
            let project = state
                .projects
                .get(&project_id)
                .cloned()
                .ok_or_else(|| InfraiError::not_found("project", &project_id))?;
            let branch = state.branches.get(&project.default_branch_id);
            let data = branch.map(|b| b.data.clone()).unwrap_or_default();
            let snapshot = SnapshotRecord {
                seq: 0,
                id: format!("snap_{}", random_token(12)),
                project_id,
                label,
                created_at: now_rfc3339(),
                data,
                real: false,
            };
            // A frozen copy of the default branch as it is now.
            let work = Work::Make(Make {
                name: InfraiEmulator::real_database(&snapshot.id),
                password: None,
                contents: branch.map(copy_of).unwrap_or(Contents::Empty),
            });
            Ok((snapshot, work))
        },
        |state, _, mut snapshot, on| {
            snapshot.seq = state.seq();
            snapshot.real = on;
            state
                .snapshots
                .insert(snapshot.id.clone(), snapshot.clone());
            Ok(snapshot_json(&snapshot))
        },
    )
    .await
}

async fn snapshot_get(State(emu): State<Shared>, Path(id): Path<String>) -> Answer {
    billed(&emu)?;
    let state = emu.state.lock();
    let snapshot = state
        .snapshots
        .get(&id)
        .ok_or_else(|| InfraiError::not_found("snapshot", &id))?;
    Ok(Json(snapshot_json(snapshot)))
}

async fn snapshot_list(
    State(emu): State<Shared>,
    Query(query): Query<PageQuery>,
    Query(filter): Query<ProjectFilter>,
) -> Answer {
    billed(&emu)?;
    let state = emu.state.lock();
    let items = state
        .snapshots
        .values()
        .filter(|s| filter.admits(&s.project_id))
        .map(|s| (s.seq, snapshot_json(s)))
        .collect();
    page(items, &query)
}

async fn snapshot_restore(
    State(emu): State<Shared>,
    Path(id): Path<String>,
    body: Bytes,
) -> Answer {
    billed(&emu)?;
    let mut body = json_object(&body)?;
    // The document puts the snapshot id both in the path and in the body.
    match optional_str(&body, "snapshot_id")? {
        Some(in_body) if in_body != id => {
            return Err(InfraiError::bad_request(
                "snapshot_id in the body does not match the path",
            ));
        }
        _ => {
            body.insert("snapshot_id".to_string(), json!(id));
        }
    }
    let real = emu.real.as_deref();
    real::idempotent(
        &emu.state,
        emu.real.as_ref(),
        "db.snapshot.restore",
        body,
        |state, body| {
            let snapshot_id = required_str(body, "snapshot_id")?;
            let snapshot = state
                .snapshots
                .get(&snapshot_id)
                .cloned()
                .ok_or_else(|| InfraiError::not_found("snapshot", &snapshot_id))?;
            let source = state
                .projects
                .get(&snapshot.project_id)
                .cloned()
                .ok_or_else(|| InfraiError::not_found("project", &snapshot.project_id))?;
            let name = optional_str(body, "new_name")?
                .unwrap_or_else(|| format!("{}-restored", source.name));
            let (project, branch) =
                planned_project(name, source.vendor.clone(), source.region.clone());
            // The new default branch is a copy of the snapshot's frozen database.
            let contents = if snapshot.real {
                Contents::Snapshot(InfraiEmulator::real_database(&snapshot.id))
            } else {
                Contents::Empty
            };
            let work = make_branch(&branch, contents);
            Ok(((project, branch, snapshot.data), work))
        },
        |state, _, (project, branch, data), on| {
            let project = state.add_project(project, branch, data, on);
            let full = state.project_json(&project, real);
            // `db.snapshot.restore` returns `Project { id, name, connection_uri }`.
            Ok(json!({
                "id": full["id"],
                "name": full["name"],
                "connection_uri": full["connection_uri"],
            }))
        },
    )
    .await
}
