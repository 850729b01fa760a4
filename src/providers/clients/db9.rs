//! Client of the DB9 customer API (`vendor-apis/db9.txt`).
//!
//! The operator's objects map onto DB9 like this:
//! - a project is a database (`/customer/databases`), created `ready` with an
//!   auto-generated admin password that the connection string carries;
//! - a branch is a database of its own, made by `POST .../{id}/branch`, whose
//!   `parent_database_id` is the project's database;
//! - a snapshot is a backup (`.../{id}/backups`), `creating` until it is done;
//! - a restore (`/customer/restores`) makes a new database from a backup,
//!   asynchronously;
//! - a credential rotation is `POST .../{id}/reset-password`.
//!
//! DB9 takes an idempotency key only on restores. Everything else this client
//! creates is made crash-safe by looking for it first (see each method).
//!
//! A branch's parent is known from the branch create answer (the document
//! shows `parent_database_id` there) and kept in the resource's status. The
//! document does not show the field on `GET /customer/databases/{id}`: where
//! a read shows it anyway, a branch delete or reset checks it; where it does
//! not, a delete or reset uses the parent the caller kept, and a read reports
//! no parent, so a database is adopted as a branch only where DB9 shows it is
//! one. The project's own database is never taken for a branch.

use async_trait::async_trait;
use reqwest::Method;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::api::v1alpha1::ProviderApi;
use crate::providers::base::http::VendorHttp;
use crate::providers::base::{
    BranchApi, BranchLifecycle, BranchRequest, Build, ConnectionUri, CredentialApi, Operation,
    Password, ProjectApi, ProjectLifecycle, ProjectRequest, Provider, ProviderError, ResourceState,
    RestoreApi, RestoreProgress, RestoreRequest, RotationProgress, RotationTarget, SnapshotApi,
    SnapshotDeletion, SnapshotRequest, Vendor, VendorBranch, VendorProject, VendorSnapshot,
    nothing_to_poll,
};

/// Public endpoint of the DB9 API; request paths start with `customer/`.
pub const DEFAULT_ENDPOINT: &str = "https://api.db9.ai";

/// This vendor's entry in the registry (`providers::registry::VENDORS`).
pub const VENDOR: Vendor = Vendor {
    api: ProviderApi::Db9,
    default_endpoint: Some(DEFAULT_ENDPOINT),
    build: Build::Http(|http, _spec| std::sync::Arc::new(Db9Client::new(http))),
};

const CUSTOMER: &str = "customer";
const DATABASES: &str = "databases";
/// Longest name the client makes up itself (a restore without `new_name`).
const MAX_GENERATED_NAME_CHARS: usize = 63;

/// An entry of `GET /customer/databases` (no connection string there).
#[derive(Deserialize)]
struct DatabaseSummaryWire {
    id: String,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    state: Option<String>,
}

/// A database as create, get and branch answer it. No `Debug`: the connection
/// string holds the admin password.
#[derive(Deserialize)]
struct DatabaseWire {
    id: String,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    region: Option<String>,
    #[serde(default)]
    state: Option<String>,
    #[serde(default)]
    connection_string: Option<String>,
    /// Set on branches (shown by the branch create answer).
    #[serde(default)]
    parent_database_id: Option<String>,
    #[serde(default)]
    created_at: Option<String>,
}

/// A backup: `{ id, database_id, state, label?, created_at }`.
#[derive(Deserialize)]
struct BackupWire {
    id: String,
    #[serde(default)]
    database_id: Option<String>,
    #[serde(default)]
    label: Option<String>,
    #[serde(default)]
    state: Option<String>,
    #[serde(default)]
    created_at: Option<String>,
}

/// A restore, where an answer shows one. The document shows neither its
/// answer nor its states: the client uses it only to learn the restore's id
/// and a failure (see [`ASSUMED`]).
#[derive(Deserialize)]
struct RestoreWire {
    id: String,
    #[serde(default)]
    state: Option<String>,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    message: Option<String>,
}

/// `reset-password`'s answer. No `Debug`: it is all secret.
#[derive(Deserialize)]
struct CredentialsWire {
    #[serde(default)]
    admin_password: Option<String>,
    #[serde(default)]
    connection_string: Option<String>,
}

/// `uri` with `password` in place of the one it carries (unchanged if `uri`
/// is no URL).
fn with_password(uri: &str, password: &str) -> String {
    let Ok(mut url) = url::Url::parse(uri) else {
        return uri.to_string();
    };
    match url.set_password(Some(password)) {
        Ok(()) => url.to_string(),
        Err(()) => uri.to_string(),
    }
}

/// A database's life-cycle state. The document shows `ready` (and `ACTIVE` in
/// an adoption preflight); a missing state means ready, since create "returns
/// credentials and connection string immediately". `disabled` is what a delete
/// leaves ("Database disabled"): the database is unusable.
fn database_state(state: Option<&str>) -> ResourceState {
    let Some(state) = state else {
        return ResourceState::Ready;
    };
    match state.to_ascii_lowercase().as_str() {
        "ready" | "active" | "available" => ResourceState::Ready,
        "failed" | "error" | "disabled" | "deleted" => ResourceState::Failed(state.to_string()),
        // The document's one in-progress word (it shows it on a backup).
        "creating" => ResourceState::Provisioning(state.to_string()),
        _ => ResourceState::Unrecognized(state.to_string()),
    }
}

/// Whether a listed database is gone in all but name (it cannot be adopted).
fn is_gone(state: Option<&str>) -> bool {
    state.is_some_and(|s| matches!(s.to_ascii_lowercase().as_str(), "disabled" | "deleted"))
}

/// A backup's state: the document shows `creating`; its finished names are guessed broadly.
fn backup_state(state: Option<&str>) -> ResourceState {
    let Some(state) = state else {
        return ResourceState::Unrecognized("no state".to_string());
    };
    match state.to_ascii_lowercase().as_str() {
        "completed" | "complete" | "ready" | "available" | "succeeded" | "success" | "done" => {
            ResourceState::Ready
        }
        "failed" | "error" => ResourceState::Failed(state.to_string()),
        // `creating` is the one in-progress state the document shows.
        "creating" => ResourceState::Provisioning(state.to_string()),
        _ => ResourceState::Unrecognized(state.to_string()),
    }
}

enum RestoreState {
    Done,
    Failed,
    Running,
}

fn restore_state(state: &str) -> RestoreState {
    match state.to_ascii_lowercase().as_str() {
        "completed" | "complete" | "succeeded" | "success" | "done" | "ready" => RestoreState::Done,
        "failed" | "error" | "cancelled" | "canceled" => RestoreState::Failed,
        _ => RestoreState::Running,
    }
}

impl DatabaseWire {
    fn into_project(self) -> VendorProject {
        VendorProject {
            state: database_state(self.state.as_deref()),
            name: self.name.unwrap_or_default(),
            id: self.id,
            region: self.region,
            created_at: self.created_at,
            connection_uri: self.connection_string.map(ConnectionUri::new),
            pooled_uri: None,
        }
    }

    /// The branch, reported as a branch of its `parent_database_id` when the
    /// answer shows one, else of `kept_parent` (what the caller knows).
    fn into_branch(self, kept_parent: &str) -> VendorBranch {
        VendorBranch {
            state: database_state(self.state.as_deref()),
            name: self.name.unwrap_or_default(),
            project_id: self
                .parent_database_id
                .unwrap_or_else(|| kept_parent.to_string()),
            id: self.id,
            connection_uri: self.connection_string.map(ConnectionUri::new),
            pooled_uri: None,
        }
    }
}

impl BackupWire {
    fn into_snapshot(self, project_id: &str) -> VendorSnapshot {
        VendorSnapshot {
            state: backup_state(self.state.as_deref()),
            id: self.id,
            project_id: self.database_id.unwrap_or_else(|| project_id.to_string()),
            label: self.label,
            created_at: self.created_at,
        }
    }
}

/// A client of the DB9 customer API.
#[derive(Clone, Debug)]
pub struct Db9Client {
    http: VendorHttp,
}

impl Db9Client {
    pub fn new(http: VendorHttp) -> Self {
        Self { http }
    }

    /// A request the client refuses itself, shaped like the vendor's `422`
    /// ("valid JSON but semantic error") so controllers treat it as permanent.
    fn refuse(operation: &str, message: String) -> ProviderError {
        ProviderError::Http {
            api: ProviderApi::Db9,
            operation: operation.to_string(),
            status: 422,
            code: None,
            message,
            retry_after: None,
        }
    }

    fn invalid(operation: &str, message: &str) -> ProviderError {
        ProviderError::InvalidResponse {
            api: ProviderApi::Db9,
            operation: operation.to_string(),
            message: message.to_string(),
        }
    }

    /// `GET /customer/databases/{id}`.
    /// `GET /customer/databases/{id}`. A database the read shows `disabled`
    /// (or `deleted`) is gone: the document calls a delete permanent and
    /// answers it "Database disabled", so a soft-deleted database is reported
    /// as not found, never as a failure to fix.
    async fn get_database(&self, id: &str) -> Result<DatabaseWire, ProviderError> {
        let database: DatabaseWire = self
            .http
            .call(
                "databases.get",
                Method::GET,
                &[CUSTOMER, DATABASES, id],
                &[],
                None,
            )
            .await?;
        if is_gone(database.state.as_deref()) {
            return Err(ProviderError::Http {
                api: ProviderApi::Db9,
                operation: "databases.get".to_string(),
                status: 404,
                code: Some("DATABASE_DISABLED".to_string()),
                message: format!("database {id} is disabled (deleted)"),
                retry_after: None,
            });
        }
        Ok(database)
    }

    /// Database `id` with its connection string from `GET
    /// .../{id}/credentials`, the document's source of "stored admin
    /// credentials" (the details' connection string need not carry the
    /// password). A database not ready yet is answered as read.
    async fn get_database_with_credentials(&self, id: &str) -> Result<DatabaseWire, ProviderError> {
        let mut database = self.get_database(id).await?;
        if database_state(database.state.as_deref()) != ResourceState::Ready {
            return Ok(database);
        }
        let credentials: CredentialsWire = self
            .http
            .call(
                "databases.credentials",
                Method::GET,
                &[CUSTOMER, DATABASES, id, "credentials"],
                &[],
                None,
            )
            .await?;
        database.connection_string =
            match (credentials.connection_string, credentials.admin_password) {
                (Some(uri), _) => Some(uri),
                (None, Some(password)) => database
                    .connection_string
                    .map(|uri| with_password(&uri, &password)),
                (None, None) => database.connection_string,
            };
        Ok(database)
    }

    /// The id of the live database named `name`, from `GET /customer/databases`.
    async fn find_database(&self, name: &str) -> Result<Option<String>, ProviderError> {
        let databases: Vec<DatabaseSummaryWire> = self
            .http
            .call(
                "databases.list",
                Method::GET,
                &[CUSTOMER, DATABASES],
                &[],
                None,
            )
            .await?;
        Ok(databases
            .into_iter()
            .find(|d| d.name.as_deref() == Some(name) && !is_gone(d.state.as_deref()))
            .map(|d| d.id))
    }

    /// Reads database `id` and checks, as far as the answer shows, that it is
    /// a branch of `project_id` before `operation` changes it: never the
    /// project's own database, never a branch the answer shows belongs to
    /// another project. A local `422` otherwise.
    async fn branch_database(
        &self,
        operation: &str,
        project_id: &str,
        id: &str,
    ) -> Result<DatabaseWire, ProviderError> {
        if id == project_id {
            return Err(Self::refuse(
                operation,
                format!("database {id} is the project's own database, not a branch"),
            ));
        }
        let database = self.get_database(id).await?;
        match database.parent_database_id.as_deref() {
            Some(parent) if parent != project_id => Err(Self::refuse(
                operation,
                format!("database {id} is a branch of {parent}, not of {project_id}"),
            )),
            _ => Ok(database),
        }
    }

    /// `DELETE` of `path`; the answer's body (`{"message": ...}`) is not needed.
    async fn delete(&self, operation: &str, path: &[&str]) -> Result<(), ProviderError> {
        self.http
            .call_raw(operation, Method::DELETE, path, &[], None)
            .await
            .map(|_| ())
    }

    /// Where the restore into the database named `target` is. The document
    /// shows no answer for `POST /customer/restores` nor for `GET
    /// /customer/restores/{id}`; what it does show is that a restore "creates
    /// a new database" named `target_name`. So a restore is done once a live
    /// database of that name is listed (`GET /customer/databases`). A restore
    /// answer that does read as failed is reported as such.
    async fn restore_progress(
        &self,
        handle: &RestoreHandle,
        answer: Option<RestoreWire>,
    ) -> Result<RestoreProgress, ProviderError> {
        if let Some(wire) = &answer
            && let Some(state) = wire.state.as_deref()
            && matches!(restore_state(state), RestoreState::Failed)
        {
            return Ok(RestoreProgress::Failed(
                wire.error
                    .clone()
                    .or(wire.message.clone())
                    .unwrap_or(state.to_string()),
            ));
        }
        if let Some(id) = self.find_database(&handle.target).await? {
            let database = self.get_database_with_credentials(&id).await?;
            return Ok(RestoreProgress::Done(database.into_project()));
        }
        Ok(RestoreProgress::Pending {
            handle: handle.to_string(),
            state: answer
                .and_then(|w| w.state)
                .unwrap_or_else(|| "restoring".to_string()),
        })
    }
}

/// What the operator keeps of a restore in flight: the restore's id when
/// the answer had one, and the name of the database it makes
/// (`<id>#<target name>`).
struct RestoreHandle {
    id: Option<String>,
    target: String,
}

impl RestoreHandle {
    fn parse(handle: &str) -> Option<Self> {
        let (id, target) = handle.split_once('#')?;
        (!target.is_empty()).then(|| Self {
            id: (!id.is_empty()).then(|| id.to_string()),
            target: target.to_string(),
        })
    }
}

impl std::fmt::Display for RestoreHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}#{}",
            self.id.as_deref().unwrap_or_default(),
            self.target
        )
    }
}

/// A body that may be absent or of any shape: read as `T` when it can be.
fn tolerant<T: serde::de::DeserializeOwned>(body: &[u8]) -> Option<T> {
    serde_json::from_slice(body).ok()
}

#[async_trait]
impl ProjectLifecycle for Db9Client {
    /// `POST /customer/databases` with the request's name (and region, and
    /// `admin_password` if the operator chose one; it does not for DB9).
    ///
    /// DB9 takes no idempotency key here and names are unique per account, so
    /// the deterministic name is the key: on a resumed create, an existing
    /// live database of that name (not a branch) is returned instead of
    /// creating a second one, which makes a retry after a lost answer safe. On
    /// a first attempt the name must be free: a database already holding it
    /// is someone else's ([`ProviderError::NameConflict`]), never adopted.
    async fn create_project(
        &self,
        req: &ProjectRequest,
        _idempotency_key: &str,
    ) -> Result<VendorProject, ProviderError> {
        if let Some(id) = self.find_database(&req.name).await? {
            req.resumed.found(ProviderApi::Db9, "database", &req.name)?;
            let existing = self.get_database(&id).await?;
            if existing.parent_database_id.is_none() {
                return Ok(existing.into_project());
            }
            // A branch holds the name: the create below gets DB9's own 409.
        }
        let mut body = Map::new();
        body.insert("name".to_string(), json!(req.name));
        if let Some(region) = &req.region {
            body.insert("region".to_string(), json!(region));
        }
        if let Some(password) = &req.db_password {
            body.insert("admin_password".to_string(), json!(password.expose()));
        }
        let created: DatabaseWire = self
            .http
            .call(
                "databases.create",
                Method::POST,
                &[CUSTOMER, DATABASES],
                &[],
                Some(&Value::Object(body)),
            )
            .await?;
        Ok(created.into_project())
    }

    /// `DELETE /customer/databases/{id}` (the database's backups go with it;
    /// its branches are databases of their own).
    async fn delete_project(&self, id: &str) -> Result<(), ProviderError> {
        self.delete("databases.delete", &[CUSTOMER, DATABASES, id])
            .await
    }
}

#[async_trait]
impl ProjectApi for Db9Client {
    /// `GET /customer/databases/{id}`, with the connection string of its
    /// stored credentials (`GET .../credentials`) once it is ready.
    async fn get_project(&self, id: &str) -> Result<VendorProject, ProviderError> {
        Ok(self.get_database_with_credentials(id).await?.into_project())
    }
}

#[async_trait]
impl RestoreApi for Db9Client {
    /// `POST /customer/restores` with the idempotency key: a retry is the same
    /// restore. Without `new_name`, the key names the new database (cut to 63
    /// characters), so a retry asks for the same name.
    async fn restore_snapshot(
        &self,
        req: &RestoreRequest,
        idempotency_key: &str,
    ) -> Result<RestoreProgress, ProviderError> {
        let target_name: String = req.new_name.clone().unwrap_or_else(|| {
            idempotency_key
                .chars()
                .take(MAX_GENERATED_NAME_CHARS)
                .collect()
        });
        if self.find_database(&target_name).await?.is_some() {
            // A restore is followed by the database of its name: another one
            // would be taken for it, unless the name proves it is this
            // resource's (a resumed restore whose answer was lost).
            req.resumed
                .found(ProviderApi::Db9, "database", &target_name)?;
        }
        let body = json!({
            "backup_id": req.snapshot_id,
            "target_name": target_name,
            "idempotency_key": idempotency_key,
        });
        let answer = self
            .http
            .call_raw(
                "restores.create",
                Method::POST,
                &[CUSTOMER, "restores"],
                &[],
                Some(&body),
            )
            .await?;
        let wire: Option<RestoreWire> = tolerant(&answer);
        let handle = RestoreHandle {
            id: wire.as_ref().map(|w| w.id.clone()),
            target: target_name,
        };
        self.restore_progress(&handle, wire).await
    }

    /// Lists the databases for the restore's target; reads the restore
    /// itself (`GET /customer/restores/{id}`) only to learn of a failure,
    /// and only when its answer shows one.
    async fn restore_status(&self, handle: &str) -> Result<RestoreProgress, ProviderError> {
        let Some(parsed) = RestoreHandle::parse(handle) else {
            return Err(Self::invalid(
                "restores.get",
                "the restore handle names no target database",
            ));
        };
        let answer = match &parsed.id {
            Some(id) => self
                .http
                .call_raw(
                    "restores.get",
                    Method::GET,
                    &[CUSTOMER, "restores", id],
                    &[],
                    None,
                )
                .await
                .ok()
                .and_then(|body| tolerant::<RestoreWire>(&body)),
            None => None,
        };
        self.restore_progress(&parsed, answer).await
    }
}

#[async_trait]
impl BranchLifecycle for Db9Client {
    /// `POST /customer/databases/{project_id}/branch` with the branch name.
    ///
    /// DB9 branches a whole database, so `from_branch` is refused (a local
    /// `422`): branch from the project itself. There is no idempotency key; as
    /// names are unique per account, an existing branch of this project with
    /// this name is returned instead of creating another.
    async fn create_branch(
        &self,
        req: &BranchRequest,
        _idempotency_key: &str,
    ) -> Result<VendorBranch, ProviderError> {
        if let Some(from) = &req.from_branch {
            return Err(Self::refuse(
                "databases.branch",
                format!(
                    "DB9 branches whole databases: cannot branch from {from:?}; \
                     leave fromBranch unset to branch from the project's database"
                ),
            ));
        }
        if let Some(id) = self.find_database(&req.branch_name).await? {
            req.resumed
                .found(ProviderApi::Db9, "database", &req.branch_name)?;
            let existing = self.get_database(&id).await?;
            // Ours when the read shows our project as its parent, or shows no
            // parent at all (the document does not promise the field).
            let parent = existing.parent_database_id.as_deref();
            if parent.is_none_or(|p| p == req.project_id) && id != req.project_id {
                return Ok(existing.into_branch(&req.project_id));
            }
            // Another database holds the name: the create below gets DB9's own 409.
        }
        let body = json!({ "name": req.branch_name });
        let created: DatabaseWire = self
            .http
            .call(
                "databases.branch",
                Method::POST,
                &[CUSTOMER, DATABASES, &req.project_id, "branch"],
                &[],
                Some(&body),
            )
            .await?;
        Ok(created.into_branch(&req.project_id))
    }

    /// `DELETE /customer/databases/{id}`, after checking that `id` is a branch
    /// of `project_id` (a local `422` otherwise: never a project's database).
    async fn delete_branch(&self, project_id: &str, id: &str) -> Result<(), ProviderError> {
        self.branch_database("databases.delete", project_id, id)
            .await?;
        self.delete("databases.delete", &[CUSTOMER, DATABASES, id])
            .await
    }
}

#[async_trait]
impl BranchApi for Db9Client {
    /// `GET /customer/databases/{id}`. The branch is reported under the
    /// `parent_database_id` the answer shows, and under no project when it
    /// shows none (the document does not promise the field on a read): the
    /// caller learns only what DB9 says, so a database that is nobody's
    /// branch is never taken for a branch of `project_id`.
    async fn get_branch(&self, _project_id: &str, id: &str) -> Result<VendorBranch, ProviderError> {
        let database = self.get_database_with_credentials(id).await?;
        Ok(database.into_branch(""))
    }
}

#[async_trait]
impl SnapshotApi for Db9Client {
    /// `POST /customer/databases/{project_id}/backups`.
    ///
    /// There is no idempotency key. Without a label, the idempotency key is the
    /// backup's label and an existing backup with that label is returned, so a
    /// retry makes no second backup. With a label of the user's, each call is a
    /// new backup (DB9 labels need not be unique).
    async fn create_snapshot(
        &self,
        req: &SnapshotRequest,
        idempotency_key: &str,
    ) -> Result<VendorSnapshot, ProviderError> {
        let path = [CUSTOMER, DATABASES, req.project_id.as_str(), "backups"];
        if req.label.is_none() {
            // The document shows no answer for the backup list: when it does
            // not read as backups, the retry check is skipped rather than the
            // snapshot refused.
            let listed = self
                .http
                .call::<Vec<BackupWire>>("backups.list", Method::GET, &path, &[], None)
                .await;
            let backups = match listed {
                Ok(backups) => backups,
                Err(ProviderError::InvalidResponse { .. }) => vec![],
                Err(error) => return Err(error),
            };
            if let Some(existing) = backups
                .into_iter()
                .find(|b| b.label.as_deref() == Some(idempotency_key))
            {
                return Ok(existing.into_snapshot(&req.project_id));
            }
        }
        let label = req.label.as_deref().unwrap_or(idempotency_key);
        let created: BackupWire = self
            .http
            .call(
                "backups.create",
                Method::POST,
                &path,
                &[],
                Some(&json!({ "label": label })),
            )
            .await?;
        Ok(created.into_snapshot(&req.project_id))
    }

    /// `GET /customer/databases/{project_id}/backups/{id}`; `Provisioning`
    /// while the backup is being made.
    async fn get_snapshot(
        &self,
        project_id: &str,
        id: &str,
    ) -> Result<VendorSnapshot, ProviderError> {
        let wire: BackupWire = self
            .http
            .call(
                "backups.get",
                Method::GET,
                &[CUSTOMER, DATABASES, project_id, "backups", id],
                &[],
                None,
            )
            .await?;
        Ok(wire.into_snapshot(project_id))
    }
}

#[async_trait]
impl SnapshotDeletion for Db9Client {
    /// `DELETE /customer/databases/{project_id}/backups/{id}`.
    async fn delete_snapshot(&self, project_id: &str, id: &str) -> Result<(), ProviderError> {
        self.delete(
            "backups.delete",
            &[CUSTOMER, DATABASES, project_id, "backups", id],
        )
        .await
    }
}

#[async_trait]
impl CredentialApi for Db9Client {
    /// `POST /customer/databases/{id}/reset-password`: DB9 generates the new
    /// password (`proposed` is not used) and answers it with the new connection
    /// string, so the rotation is done at once. A branch is checked to belong
    /// to the project first. There is no idempotency key: a retry resets the
    /// password again, which only makes the latest answer the one to keep.
    async fn rotate_credentials(
        &self,
        target: &RotationTarget,
        _proposed: &Password,
        _idempotency_key: &str,
    ) -> Result<RotationProgress, ProviderError> {
        let id = match target {
            RotationTarget::Project { id } => id,
            RotationTarget::Branch { project_id, id } => {
                self.branch_database("databases.reset-password", project_id, id)
                    .await?;
                id
            }
        };
        let answer: CredentialsWire = self
            .http
            .call(
                "databases.reset-password",
                Method::POST,
                &[CUSTOMER, DATABASES, id, "reset-password"],
                &[],
                None,
            )
            .await?;
        if answer.admin_password.is_none() && answer.connection_string.is_none() {
            return Err(Self::invalid(
                "databases.reset-password",
                "the answer holds neither admin_password nor connection_string",
            ));
        }
        Ok(RotationProgress::Done {
            connection_uri: answer.connection_string.map(ConnectionUri::new),
            pooled_uri: None,
            password: answer.admin_password.map(Password::new),
        })
    }

    /// Never asked: [`CredentialApi::rotate_credentials`] finishes at once here.
    async fn rotation_status(
        &self,
        _target: &RotationTarget,
        job_id: &str,
    ) -> Result<RotationProgress, ProviderError> {
        Err(nothing_to_poll(
            ProviderApi::Db9,
            Operation::BranchCredentialRotate,
            job_id,
        ))
    }
}

/// `POST /customer/databases/{id}/sql`: "column names + row arrays".
#[derive(Deserialize)]
struct SqlAnswerWire {
    rows: Vec<Vec<Value>>,
}

/// A cell of a DB9 SQL answer as text: strings as they are, numbers and
/// booleans as PostgreSQL prints them, `null` as `None`.
fn cell(value: Value) -> Option<String> {
    match value {
        Value::Null => None,
        Value::String(text) => Some(text),
        Value::Bool(b) => Some(if b { "t" } else { "f" }.to_string()),
        other => Some(other.to_string()),
    }
}

/// DB9's documented SQL endpoint, on a project's or a branch's database
/// (DB9 branches are databases).
#[async_trait]
impl crate::providers::base::SqlApi for Db9Client {
    fn channel(&self) -> crate::providers::base::SqlChannel {
        crate::providers::base::SqlChannel::VendorEndpoint
    }
    fn returns_rows(&self) -> bool {
        true
    }
    async fn run_sql(
        &self,
        database_id: &str,
        sql: &str,
    ) -> Result<crate::providers::base::Rows, ProviderError> {
        let answer: SqlAnswerWire = self
            .http
            .call(
                "databases.sql",
                Method::POST,
                &[CUSTOMER, DATABASES, database_id, "sql"],
                &[],
                Some(&json!({ "query": sql })),
            )
            .await?;
        Ok(answer
            .rows
            .into_iter()
            .map(|row| row.into_iter().map(cell).collect())
            .collect())
    }

    /// `GET /customer/databases/{id}/users`: each user's `name`.
    async fn list_users(&self, database_id: &str) -> Result<Option<Vec<String>>, ProviderError> {
        let users: Vec<UserWire> = self
            .http
            .call(
                "databases.users.list",
                Method::GET,
                &[CUSTOMER, DATABASES, database_id, "users"],
                &[],
                None,
            )
            .await?;
        Ok(Some(users.into_iter().map(|u| u.name).collect()))
    }

    /// `POST /customer/databases/{id}/users` with `username` only, as the
    /// request example shows (its curl example also sends a `password`; with
    /// no parameter table, the client sends what both show). The answer's
    /// `connection_string_with_password`, else its `connection_string` with
    /// its `password`.
    async fn create_user(
        &self,
        database_id: &str,
        name: &str,
    ) -> Result<Option<secrecy::SecretString>, ProviderError> {
        const OPERATION: &str = "databases.users.create";
        let answer: UserCreatedWire = self
            .http
            .call(
                OPERATION,
                Method::POST,
                &[CUSTOMER, DATABASES, database_id, "users"],
                &[],
                Some(&json!({ "username": name })),
            )
            .await?;
        if let Some(uri) = answer.connection_string_with_password {
            return Ok(Some(secrecy::SecretString::from(uri)));
        }
        let (Some(uri), Some(password)) = (answer.connection_string, answer.password) else {
            return Err(Self::invalid(
                OPERATION,
                "the answer holds no connection string with a password",
            ));
        };
        let mut url = url::Url::parse(&uri)
            .map_err(|_| Self::invalid(OPERATION, "the connection string is not a URL"))?;
        url.set_password(Some(&password))
            .map_err(|_| Self::invalid(OPERATION, "the connection string takes no password"))?;
        Ok(Some(secrecy::SecretString::from(url.to_string())))
    }

    /// `DELETE /customer/databases/{id}/users/{username}`.
    async fn delete_user(&self, database_id: &str, name: &str) -> Result<bool, ProviderError> {
        self.http
            .call_raw(
                "databases.users.delete",
                Method::DELETE,
                &[CUSTOMER, DATABASES, database_id, "users", name],
                &[],
                None,
            )
            .await?;
        Ok(true)
    }
}

/// A user as `GET /customer/databases/{id}/users` lists it.
#[derive(Deserialize)]
struct UserWire {
    name: String,
}

/// `POST /customer/databases/{id}/users`: the password is returned once.
#[derive(Deserialize)]
struct UserCreatedWire {
    password: Option<String>,
    connection_string: Option<String>,
    connection_string_with_password: Option<String>,
}

/// DB9 generates the admin password itself and returns it in the connection
/// string, so the operator never has to choose one (`needs_operator_password`
/// keeps its default, `false`).
/// DB9 has no BYOK API.
impl Provider for Db9Client {
    /// DB9 branches are databases, whose names are unique per account: a
    /// branch's default name carries its namespace and UID, like a project's.
    fn default_branch_name(&self, namespace: &str, name: &str, uid: &str) -> String {
        crate::providers::base::generated_name(namespace, name, uid)
    }
    fn api(&self) -> ProviderApi {
        ProviderApi::Db9
    }
    fn project_lifecycle(&self) -> Option<&dyn ProjectLifecycle> {
        Some(self)
    }
    fn restores(&self) -> Option<&dyn RestoreApi> {
        Some(self)
    }
    fn branches(&self) -> Option<&dyn BranchApi> {
        Some(self)
    }
    fn branch_lifecycle(&self) -> Option<&dyn BranchLifecycle> {
        Some(self)
    }
    fn snapshots(&self) -> Option<&dyn SnapshotApi> {
        Some(self)
    }
    fn snapshot_deletion(&self) -> Option<&dyn SnapshotDeletion> {
        Some(self)
    }
    fn project_credentials(&self) -> Option<&dyn CredentialApi> {
        Some(self)
    }
    fn branch_credentials(&self) -> Option<&dyn CredentialApi> {
        Some(self)
    }
    fn sql(&self) -> Option<&dyn crate::providers::base::SqlApi> {
        Some(self)
    }
}

/// Where the document is silent and this client reads or relies on something
/// anyway (see [`Assumption`]).
pub const ASSUMED: &[crate::providers::base::Assumption] = &[
    Assumption {
        method: "GET",
        path: "/customer/databases/{database_id}/backups/{backup_id}",
        reads: &["id", "database_id", "label", "state", "created_at"],
        why: "the backup read: no body documented; read as the backup the create answer shows. Only `creating` is a documented state: `completed`-like names are ready, `failed`/`error` failed, others wait (bounded) and then stall",
    },
    Assumption {
        method: "GET",
        path: "/customer/databases/{database_id}/backups",
        reads: &[
            "[].id",
            "[].label",
            "[].state",
            "[].database_id",
            "[].created_at",
        ],
        why: "the backup list: no body documented; used only to find the backup a lost create made (by its label), and skipped when it does not read as a list of backups",
    },
    Assumption {
        method: "POST",
        path: "/customer/restores",
        reads: &["id", "state", "error", "message"],
        why: "the restore answer: no body documented; the restore is followed by the database it makes (`target_name`, in the documented list), and the answer is read only, when it can be, for the restore's id and a failure",
    },
    Assumption {
        method: "GET",
        path: "/customer/restores/{restore_id}",
        reads: &["id", "state", "error", "message"],
        why: "the restore read: no body documented; read only, when it can be, to learn of a failed restore (`failed`, `error`, `cancelled`)",
    },
    Assumption {
        method: "DELETE",
        path: "/customer/databases/{database_id}",
        reads: &[],
        why: "the answer is `Database disabled`, which suggests a soft delete: a database listed `disabled` or `deleted` counts as gone and is never adopted; the document does not say whether a database's branches go with it, so a project's branches are deleted by their own resources",
    },
];

use crate::providers::base::Assumption;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_states_map_onto_resource_states() {
        assert_eq!(database_state(Some("ready")), ResourceState::Ready);
        assert_eq!(database_state(Some("ACTIVE")), ResourceState::Ready);
        assert_eq!(database_state(None), ResourceState::Ready);
        assert_eq!(
            database_state(Some("creating")),
            ResourceState::Provisioning("creating".into())
        );
        assert_eq!(
            database_state(Some("failed")),
            ResourceState::Failed("failed".into())
        );
        assert_eq!(
            database_state(Some("disabled")),
            ResourceState::Failed("disabled".into())
        );
        assert_eq!(
            database_state(Some("migrating")),
            ResourceState::Unrecognized("migrating".into()),
            "a state no document names is waited on for a bounded time"
        );
    }

    #[test]
    fn backup_and_restore_states() {
        assert_eq!(
            backup_state(Some("creating")),
            ResourceState::Provisioning("creating".into())
        );
        assert_eq!(backup_state(Some("completed")), ResourceState::Ready);
        assert_eq!(
            backup_state(Some("failed")),
            ResourceState::Failed("failed".into())
        );
        assert!(matches!(restore_state("pending"), RestoreState::Running));
        assert!(matches!(restore_state("running"), RestoreState::Running));
        assert!(matches!(restore_state("completed"), RestoreState::Done));
        assert!(matches!(restore_state("failed"), RestoreState::Failed));
    }

    /// A client whose endpoint answers nothing: for what it decides alone.
    fn unreachable_client() -> Db9Client {
        let key = secrecy::SecretString::from("k".to_string());
        let timeout = std::time::Duration::from_secs(1);
        let http = VendorHttp::new(ProviderApi::Db9, "http://127.0.0.1:1", &key, timeout, None);
        Db9Client::new(http.unwrap())
    }

    #[test]
    fn branch_names_are_account_wide_so_they_carry_namespace_and_uid() {
        let client = unreachable_client();
        let uid_a = "00000000-0000-0000-0000-0000000000a1";
        let uid_b = "00000000-0000-0000-0000-0000000000b2";
        let a = client.default_branch_name("team-a", "preview", uid_a);
        let b = client.default_branch_name("team-b", "preview", uid_b);
        assert_eq!(a, "team-a-preview-000000a1");
        assert_ne!(a, b);
    }

    #[test]
    fn capabilities_have_no_byok() {
        let client = unreachable_client();
        assert!(!client.supports(crate::providers::base::Operation::ByokRegister));
        assert_eq!(client.capabilities().len(), 13);
    }
}
