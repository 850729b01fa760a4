//! The Supabase Management API: projects, preview branches and database
//! passwords. Contract: `vendor-apis/supabase-management.txt` (the product is
//! called "Assistance" there).
//!
//! The document lists paths, bodies and status codes but no methods and no
//! response schemas. Methods and response field names follow the public
//! Supabase Management API reference (its OpenAPI models `V1ProjectResponse`,
//! `V1ProjectWithDatabaseResponse`, `BranchResponse`, `BranchDetailResponse`,
//! `V1BackupsResponse`, as generated into `supabase/cli`'s `pkg/api/types.gen.go`);
//! the database password endpoint is `PATCH`, as in that reference.
//!
//! What Supabase does not offer, and this provider therefore leaves
//! unsupported: on-demand snapshots and restoring a snapshot into a new
//! project. What it offers instead is daily backups and point-in-time recovery
//! *in place*; [`SupabaseClient::list_backups`] and [`SupabaseClient::restore_pitr`]
//! expose those, outside the [`Provider`] traits.

use async_trait::async_trait;
use reqwest::Method;
use serde::Deserialize;
use serde_json::{Value, json};
use url::Url;

use crate::api::v1alpha1::ProviderApi;
use crate::providers::base::http::VendorHttp;
use crate::providers::base::{
    BranchApi, BranchLifecycle, BranchRequest, Build, ConnectionUri, CredentialApi, Operation,
    Password, ProjectApi, ProjectLifecycle, ProjectRequest, Provider, ProviderError, ResourceState,
    RotationProgress, RotationTarget, Vendor, VendorBranch, VendorProject, nothing_to_poll,
};

// The Management API document names no base URL, so there is no default
// endpoint: a Supabase provider must set `spec.endpoint`.

/// This vendor's entry in the registry (`providers::registry::VENDORS`).
pub const VENDOR: Vendor = Vendor {
    api: ProviderApi::Supabase,
    default_endpoint: None,
    build: Build::Http(|http, spec| {
        std::sync::Arc::new(SupabaseClient::new(
            http,
            spec.supabase.as_ref().map(|s| s.organization_slug.clone()),
        ))
    }),
};

/// The database role, port and database name of every Supabase project's direct
/// connection (`postgresql://postgres@db.<ref>.supabase.co:5432/postgres`).
const DB_USER: &str = "postgres";
const DB_PORT: u16 = 5432;
const DB_NAME: &str = "postgres";

/// `V1ProjectResponse` (create) and `V1ProjectWithDatabaseResponse` (get, list).
/// Neither carries the database password.
#[derive(Deserialize)]
struct ProjectWire {
    /// The project ref (older responses have only `id`).
    id: String,
    #[serde(default, rename = "ref")]
    reference: Option<String>,
    /// The organization slug (documented as "Slug of your organization").
    #[serde(default)]
    organization_id: Option<String>,
    #[serde(default)]
    organization_slug: Option<String>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    region: Option<String>,
    #[serde(default)]
    created_at: Option<String>,
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    database: Option<DatabaseWire>,
}

/// `V1DatabaseResponse { host, version, postgres_engine, release_channel }`.
#[derive(Deserialize)]
struct DatabaseWire {
    #[serde(default)]
    host: Option<String>,
}

impl ProjectWire {
    fn in_organization(&self, organization: &str) -> bool {
        self.organization_slug.as_deref() == Some(organization)
            || self.organization_id.as_deref() == Some(organization)
    }

    /// Being deleted or gone: never reused by a create.
    fn is_going_away(&self) -> bool {
        matches!(self.status.as_deref(), Some("GOING_DOWN" | "REMOVED"))
    }
}

/// `BranchResponse { id, name, project_ref, parent_project_ref, status, ... }`.
/// Its `status` is the preview workflow's (`CREATING_PROJECT`, `RUNNING_MIGRATIONS`,
/// ...), not the branch database's.
#[derive(Deserialize)]
struct BranchWire {
    id: String,
    name: String,
    /// The branch's own project ref.
    project_ref: String,
    parent_project_ref: String,
    #[serde(default)]
    status: Option<String>,
}

/// `BranchDetailResponse { ref, status, db_host, db_port, db_user?, db_pass?, ... }`.
/// No `Debug`: it holds the branch's password.
#[derive(Deserialize)]
struct BranchConfigWire {
    #[serde(default)]
    status: Option<String>,
    db_host: String,
    db_port: u16,
    #[serde(default)]
    db_user: Option<String>,
    #[serde(default)]
    db_pass: Option<String>,
}

/// `V1BackupsResponse`.
#[derive(Deserialize)]
struct BackupsWire {
    #[serde(default)]
    region: Option<String>,
    #[serde(default)]
    walg_enabled: bool,
    #[serde(default)]
    pitr_enabled: bool,
    #[serde(default)]
    backups: Vec<BackupWire>,
    #[serde(default)]
    physical_backup_data: Option<PhysicalBackupWire>,
}

/// `V1Backup { inserted_at, status, is_physical_backup }`.
#[derive(Deserialize)]
struct BackupWire {
    inserted_at: String,
    status: String,
    #[serde(default)]
    is_physical_backup: bool,
}

/// `V1PhysicalBackup`: the point-in-time recovery window, in Unix seconds
/// (numbers; the reference types them as floats).
#[derive(Deserialize)]
struct PhysicalBackupWire {
    #[serde(default)]
    earliest_physical_backup_date_unix: Option<f64>,
    #[serde(default)]
    latest_physical_backup_date_unix: Option<f64>,
}

/// A project's backups and point-in-time recovery window.
#[derive(Clone, Debug, PartialEq)]
pub struct Backups {
    pub region: Option<String>,
    pub walg_enabled: bool,
    /// Whether point-in-time recovery (the PITR add-on) is enabled.
    pub pitr_enabled: bool,
    pub backups: Vec<Backup>,
    /// Earliest `recovery_time_target_unix` a PITR restore accepts.
    pub earliest_recovery_unix: Option<i64>,
    /// Latest `recovery_time_target_unix` a PITR restore accepts.
    pub latest_recovery_unix: Option<i64>,
}

/// One backup of a project.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Backup {
    pub inserted_at: String,
    /// `COMPLETED`, `PENDING`, `FAILED`, ...
    pub status: String,
    pub is_physical_backup: bool,
}

impl From<BackupsWire> for Backups {
    fn from(w: BackupsWire) -> Self {
        let window = w.physical_backup_data;
        let unix = |v: Option<f64>| v.filter(|v| v.is_finite()).map(|v| v as i64);
        Backups {
            region: w.region,
            walg_enabled: w.walg_enabled,
            pitr_enabled: w.pitr_enabled,
            backups: w
                .backups
                .into_iter()
                .map(|b| Backup {
                    inserted_at: b.inserted_at,
                    status: b.status,
                    is_physical_backup: b.is_physical_backup,
                })
                .collect(),
            earliest_recovery_unix: unix(
                window
                    .as_ref()
                    .and_then(|w| w.earliest_physical_backup_date_unix),
            ),
            latest_recovery_unix: unix(
                window
                    .as_ref()
                    .and_then(|w| w.latest_physical_backup_date_unix),
            ),
        }
    }
}

/// A project (or branch database) status to a life-cycle state.
///
/// The document names only `ACTIVE_HEALTHY` and `INACTIVE` (in the project
/// list's `statuses` filter). `ACTIVE_HEALTHY` is ready; a paused project's
/// `INACTIVE` is not usable yet and may become so. The usual failure states
/// (`INIT_FAILED`, `RESTORE_FAILED`, `PAUSE_FAILED`, `REMOVED`) fail at once,
/// and the usual transitional ones (`COMING_UP`, `RESTORING`, `RESTARTING`,
/// `UPGRADING`, `RESIZING`, `ACTIVE_UNHEALTHY`, `GOING_DOWN`) are polled; these
/// names are not in the document. Anything else, or no status, is a state
/// dbops does not know: polled for a bounded time, then shown as stalled.
pub fn project_state(status: Option<&str>) -> ResourceState {
    match status {
        Some("ACTIVE_HEALTHY") => ResourceState::Ready,
        Some(failed @ ("INIT_FAILED" | "RESTORE_FAILED" | "PAUSE_FAILED" | "REMOVED")) => {
            ResourceState::Failed(failed.to_string())
        }
        Some(
            transitional @ ("INACTIVE" | "COMING_UP" | "RESTORING" | "RESTARTING" | "UPGRADING"
            | "RESIZING" | "ACTIVE_UNHEALTHY" | "GOING_DOWN"),
        ) => ResourceState::Provisioning(transitional.to_string()),
        Some(other) => ResourceState::Unrecognized(other.to_string()),
        None => ResourceState::Unrecognized("no status".to_string()),
    }
}

/// `postgresql://user[:password]@host:port/postgres`, with user and password
/// percent-encoded; `None` when the host is not a valid host name.
/// A not-found the client concluded from a list (the document lists no 404).
fn not_found(operation: &str, message: String) -> ProviderError {
    ProviderError::Http {
        api: ProviderApi::Supabase,
        operation: operation.to_string(),
        status: 404,
        code: Some("NOT_FOUND".to_string()),
        message,
        retry_after: None,
    }
}

/// Whether a refusal could mean the object does not exist: a 4xx other than
/// 401, 403 and 429 (the document lists 404 for none of the endpoints used).
fn could_mean_gone(error: &ProviderError) -> bool {
    matches!(error, ProviderError::Http { status, .. }
        if (400..500).contains(status) && !matches!(status, 401 | 403 | 429))
}

fn connection_uri(
    user: &str,
    password: Option<&str>,
    host: &str,
    port: u16,
) -> Option<ConnectionUri> {
    let mut url = Url::parse(&format!("postgresql://localhost/{DB_NAME}")).ok()?;
    url.set_host(Some(host)).ok()?;
    url.set_port(Some(port)).ok()?;
    url.set_username(user).ok()?;
    if let Some(password) = password.filter(|p| !p.is_empty()) {
        url.set_password(Some(password)).ok()?;
    }
    Some(ConnectionUri::new(url.to_string()))
}

impl From<ProjectWire> for VendorProject {
    fn from(w: ProjectWire) -> Self {
        let state = project_state(w.status.as_deref());
        // Supabase never returns the password; the operator chose it on create
        // and fills it in from the connection Secret.
        let connection_uri = w
            .database
            .and_then(|d| d.host)
            .and_then(|host| connection_uri(DB_USER, None, &host, DB_PORT));
        VendorProject {
            id: w.reference.unwrap_or(w.id),
            name: w.name.unwrap_or_default(),
            region: w.region,
            created_at: w.created_at,
            state,
            connection_uri,
            pooled_uri: None,
        }
    }
}

/// A branch just created: its database is not up yet and has no config to read.
impl From<BranchWire> for VendorBranch {
    fn from(w: BranchWire) -> Self {
        VendorBranch {
            id: w.id,
            name: w.name,
            project_id: w.parent_project_ref,
            state: ResourceState::Provisioning(
                w.status.unwrap_or_else(|| "CREATING_PROJECT".to_string()),
            ),
            connection_uri: None,
            pooled_uri: None,
        }
    }
}

/// A branch and its database config: the state is the database's status, the
/// connection its own host and credentials.
impl From<(BranchWire, BranchConfigWire)> for VendorBranch {
    fn from((branch, config): (BranchWire, BranchConfigWire)) -> Self {
        VendorBranch {
            id: branch.id,
            name: branch.name,
            project_id: branch.parent_project_ref,
            state: project_state(config.status.as_deref()),
            connection_uri: connection_uri(
                config.db_user.as_deref().unwrap_or(DB_USER),
                config.db_pass.as_deref(),
                &config.db_host,
                config.db_port,
            ),
            pooled_uri: None,
        }
    }
}

/// A client of the Supabase Management API for one access token and one
/// organization.
#[derive(Clone, Debug)]
pub struct SupabaseClient {
    http: VendorHttp,
    /// Organization slug new projects are created in (`spec.supabase.organizationSlug`).
    organization: Option<String>,
}

/// A request refused before it reaches Supabase, shaped like the 400 Supabase
/// would answer (permanent; the message says what to fix).
fn rejected(operation: &str, code: &str, message: &str) -> ProviderError {
    ProviderError::Http {
        api: ProviderApi::Supabase,
        operation: operation.to_string(),
        status: 400,
        code: Some(code.to_string()),
        message: message.to_string(),
        retry_after: None,
    }
}

impl SupabaseClient {
    pub fn new(http: VendorHttp, organization: Option<String>) -> Self {
        Self { http, organization }
    }

    /// The organization slug new projects go into, if configured.
    pub fn organization(&self) -> Option<&str> {
        self.organization.as_deref()
    }

    async fn list_project_wires(&self) -> Result<Vec<ProjectWire>, ProviderError> {
        self.http
            .call("projects.list", Method::GET, &["v1", "projects"], &[], None)
            .await
    }

    /// Creates a project in the configured organization with the operator's
    /// database password (`db_pass`).
    ///
    /// Supabase takes no idempotency key, so `idempotency_key` is not sent.
    /// Instead the create is made safe to retry by name: the projects of the
    /// account are listed first, and on a resumed create a project with the
    /// same name in the same organization (not being deleted) is returned
    /// instead of creating a second one. A crash between the create and the
    /// status update therefore never duplicates the project, and the reused
    /// project has the password the operator kept (it wrote it before the
    /// first attempt). On a first attempt the name must be free: a project
    /// already holding it is someone else's ([`ProviderError::NameConflict`]).
    ///
    /// `region` is sent as `region`: the document marks it deprecated in
    /// favour of `region_selection`, but shows none of `region_selection`'s
    /// options, so sending those would be a guess. `plan` goes as
    /// `desired_instance_size`. `vendor` is not sent (Supabase is the vendor);
    /// `postgres_version` and `mode: byok` are refused with a clear reason.
    pub async fn create_project(
        &self,
        req: &ProjectRequest,
    ) -> Result<VendorProject, ProviderError> {
        const OPERATION: &str = "projects.create";
        let (organization, password) = self.creatable(req)?;
        if let Some(existing) = self.list_project_wires().await?.into_iter().find(|p| {
            p.name.as_deref() == Some(req.name.as_str())
                && p.in_organization(organization)
                && !p.is_going_away()
        }) {
            req.resumed
                .found(ProviderApi::Supabase, "project", &req.name)?;
            return Ok(existing.into());
        }
        let mut body = json!({
            "name": req.name,
            "organization_slug": organization,
            "db_pass": password.expose(),
        });
        if let Some(region) = &req.region {
            body["region"] = Value::String(region.clone());
        }
        if let Some(size) = &req.plan {
            body["desired_instance_size"] = Value::String(size.clone());
        }
        let wire: ProjectWire = self
            .http
            .call(
                OPERATION,
                Method::POST,
                &["v1", "projects"],
                &[],
                Some(&body),
            )
            .await?;
        let project: VendorProject = wire.into();
        // The create answer has no `database`; a project ready at once needs its host.
        if project.state == ResourceState::Ready && project.connection_uri.is_none() {
            return self.get_project(&project.id).await;
        }
        Ok(project)
    }

    /// The organization and the password of a create of `req`, or why
    /// Supabase cannot make it.
    fn creatable<'a>(
        &'a self,
        req: &'a ProjectRequest,
    ) -> Result<(&'a str, &'a Password), ProviderError> {
        const OPERATION: &str = "projects.create";
        let Some(organization) = self.organization.as_deref() else {
            return Err(rejected(
                OPERATION,
                "ORGANIZATION_REQUIRED",
                "spec.supabase.organizationSlug is required on the DatabaseProvider",
            ));
        };
        let Some(password) = req.db_password.as_ref() else {
            return Err(rejected(
                OPERATION,
                "DB_PASSWORD_REQUIRED",
                "Supabase needs the database password (db_pass) chosen by the operator",
            ));
        };
        if req.mode.as_deref() == Some("byok") {
            return Err(rejected(
                OPERATION,
                "MODE_UNSUPPORTED",
                "mode: byok is not available on the Supabase Management API",
            ));
        }
        if req.postgres_version.is_some() {
            // The create body's only engine field, `postgres_engine`, is
            // deprecated and the document lists none of its values: sending a
            // version would be a guess, and dropping it would hide the request.
            return Err(rejected(
                OPERATION,
                "POSTGRES_VERSION_UNSUPPORTED",
                "Supabase picks the Postgres version of a new project and its Management API takes none; remove spec.postgresVersion",
            ));
        }
        Ok((organization, password))
    }

    /// Reads a project; its connection URIs have no password. A ready
    /// project also gets its pooled (Supavisor) URI, when the pooler config
    /// can be read.
    ///
    /// The document lists no 404 for this read, so a refusal is not taken to
    /// mean the project is gone: that is decided by the project list (see
    /// [`SupabaseClient::unless_listed`]).
    pub async fn get_project(&self, reference: &str) -> Result<VendorProject, ProviderError> {
        let read = self
            .http
            .call::<ProjectWire>(
                "projects.get",
                Method::GET,
                &["v1", "projects", reference],
                &[],
                None,
            )
            .await;
        let wire = match read {
            Ok(wire) => wire,
            Err(error) => return Err(self.unless_listed(reference, error).await),
        };
        let mut project: VendorProject = wire.into();
        if project.state == ResourceState::Ready {
            project.pooled_uri = self.pooler_uri(reference).await;
        }
        Ok(project)
    }

    /// `error` from a read or delete of the project `reference`; when the
    /// refusal could mean the project does not exist (a 4xx other than auth
    /// and rate limits), the project list decides: not listed is not found.
    async fn unless_listed(&self, reference: &str, error: ProviderError) -> ProviderError {
        if !could_mean_gone(&error) || error.is_not_found() {
            return error;
        }
        match self.list_project_wires().await {
            Ok(projects)
                if !projects
                    .iter()
                    .any(|p| p.reference.as_deref().unwrap_or(&p.id) == reference) =>
            {
                not_found("projects.get", format!("no project {reference} is listed"))
            }
            _ => error,
        }
    }

    /// The pooled connection of a project from its Supavisor config (`GET
    /// .../config/database/pooler`), without a password. The document shows
    /// no answer for it: the client reads the public reference's
    /// `db_host`, `db_port`, `db_user` and `db_name` of the `PRIMARY` entry
    /// (see [`ASSUMED`]), and goes without a pooled URI when it cannot.
    async fn pooler_uri(&self, reference: &str) -> Option<ConnectionUri> {
        let config: Value = self
            .http
            .call(
                "pooler.get",
                Method::GET,
                &["v1", "projects", reference, "config", "database", "pooler"],
                &[],
                None,
            )
            .await
            .ok()?;
        let entries = match config {
            Value::Array(entries) => entries,
            single @ Value::Object(_) => vec![single],
            _ => return None,
        };
        let entry = entries
            .iter()
            .find(|e| e.get("database_type").and_then(Value::as_str) == Some("PRIMARY"))
            .or_else(|| entries.first())?;
        let host = entry.get("db_host")?.as_str()?;
        let port = u16::try_from(entry.get("db_port")?.as_u64()?).ok()?;
        let user = entry
            .get("db_user")
            .and_then(Value::as_str)
            .unwrap_or(DB_USER);
        connection_uri(user, None, host, port)
    }

    /// Deletes a project and its branches. The answer (`{id, ref, name}`) is not needed.
    pub async fn delete_project(&self, reference: &str) -> Result<(), ProviderError> {
        self.http
            .call_raw(
                "projects.delete",
                Method::DELETE,
                &["v1", "projects", reference],
                &[],
                None,
            )
            .await
            .map(drop)
    }

    async fn list_branch_wires(&self, project: &str) -> Result<Vec<BranchWire>, ProviderError> {
        self.http
            .call(
                "branches.list",
                Method::GET,
                &["v1", "projects", project, "branches"],
                &[],
                None,
            )
            .await
    }

    /// The branch of `project` whose id (or own project ref) is `id`.
    async fn find_branch(&self, project: &str, id: &str) -> Result<BranchWire, ProviderError> {
        self.list_branch_wires(project)
            .await?
            .into_iter()
            .find(|b| b.id == id || b.project_ref == id)
            .ok_or_else(|| {
                not_found(
                    "branches.list",
                    format!("project {project} has no branch {id}"),
                )
            })
    }

    /// Creates a preview branch of `req.project_id`.
    ///
    /// Supabase branches always start from the project's production database,
    /// so `from_branch` is refused. Like projects, branches are reused by name:
    /// a branch with the requested name in the project is returned instead of
    /// creating another (Supabase takes no idempotency key).
    pub async fn create_branch(&self, req: &BranchRequest) -> Result<VendorBranch, ProviderError> {
        const OPERATION: &str = "branches.create";
        if req.from_branch.is_some() {
            return Err(rejected(
                OPERATION,
                "FROM_BRANCH_UNSUPPORTED",
                "Supabase branches always start from the project's production database; \
                 fromBranch is not supported",
            ));
        }
        if let Some(existing) = self
            .list_branch_wires(&req.project_id)
            .await?
            .into_iter()
            .find(|b| b.name == req.branch_name)
        {
            req.resumed
                .found(ProviderApi::Supabase, "branch", &req.branch_name)?;
            return self.get_branch(&req.project_id, &existing.id).await;
        }
        let body = json!({ "branch_name": req.branch_name });
        let wire: BranchWire = self
            .http
            .call(
                OPERATION,
                Method::POST,
                &["v1", "projects", &req.project_id, "branches"],
                &[],
                Some(&body),
            )
            .await?;
        Ok(wire.into())
    }

    /// Reads a branch of `project`: its name from the project's branch list, its
    /// state and connection (with the branch's own user and password) from its config.
    pub async fn get_branch(&self, project: &str, id: &str) -> Result<VendorBranch, ProviderError> {
        let branch = self.find_branch(project, id).await?;
        let config: BranchConfigWire = self
            .http
            .call(
                "branches.config",
                Method::GET,
                &["v1", "branches", &branch.id],
                &[],
                None,
            )
            .await?;
        Ok((branch, config).into())
    }

    /// Deletes a branch (by id or ref) at once (`force` left at its default).
    /// The document lists only 200 and 500 for it: a refusal that could mean
    /// the branch is gone is checked against the project's branch list, and a
    /// branch no longer listed counts as deleted.
    pub async fn delete_branch(&self, project: &str, id: &str) -> Result<(), ProviderError> {
        let deleted = self
            .http
            .call_raw(
                "branches.delete",
                Method::DELETE,
                &["v1", "branches", id],
                &[],
                None,
            )
            .await;
        match deleted {
            Ok(_) => Ok(()),
            Err(error) if could_mean_gone(&error) => match self.find_branch(project, id).await {
                Err(listed) if listed.is_not_found() => Ok(()),
                _ => Err(error),
            },
            Err(error) => Err(error),
        }
    }

    /// Sets the database password of a project (or of a branch, by its own ref).
    pub async fn update_database_password(
        &self,
        reference: &str,
        password: &Password,
    ) -> Result<(), ProviderError> {
        let body = json!({ "password": password.expose() });
        self.http
            .call_raw(
                "database.password.update",
                Method::PATCH,
                &["v1", "projects", reference, "database", "password"],
                &[],
                Some(&body),
            )
            .await
            .map(drop)
    }

    /// The backups of a project and its point-in-time recovery window.
    pub async fn list_backups(&self, reference: &str) -> Result<Backups, ProviderError> {
        let wire: BackupsWire = self
            .http
            .call(
                "database.backups.list",
                Method::GET,
                &["v1", "projects", reference, "database", "backups"],
                &[],
                None,
            )
            .await?;
        Ok(wire.into())
    }

    /// Restores a project *in place* to `recovery_time_target_unix` (Unix
    /// seconds, inside the window [`SupabaseClient::list_backups`] reports). The
    /// project reports `RESTORING` until it is back (see [`project_state`]).
    pub async fn restore_pitr(
        &self,
        reference: &str,
        recovery_time_target_unix: i64,
    ) -> Result<(), ProviderError> {
        let body = json!({ "recovery_time_target_unix": recovery_time_target_unix });
        self.http
            .call_raw(
                "database.backups.restore_pitr",
                Method::POST,
                &[
                    "v1",
                    "projects",
                    reference,
                    "database",
                    "backups",
                    "restore-pitr",
                ],
                &[],
                Some(&body),
            )
            .await
            .map(drop)
    }
}

#[async_trait]
impl ProjectApi for SupabaseClient {
    async fn get_project(&self, id: &str) -> Result<VendorProject, ProviderError> {
        SupabaseClient::get_project(self, id).await
    }
}

/// Supabase restores only in place, never into a new project: no restore family.
#[async_trait]
impl ProjectLifecycle for SupabaseClient {
    /// See [`SupabaseClient::create_project`]: reuse by name replaces the idempotency key.
    async fn create_project(
        &self,
        req: &ProjectRequest,
        _idempotency_key: &str,
    ) -> Result<VendorProject, ProviderError> {
        SupabaseClient::create_project(self, req).await
    }
    async fn delete_project(&self, id: &str) -> Result<(), ProviderError> {
        SupabaseClient::delete_project(self, id).await
    }
}

#[async_trait]
impl BranchApi for SupabaseClient {
    async fn get_branch(&self, project_id: &str, id: &str) -> Result<VendorBranch, ProviderError> {
        SupabaseClient::get_branch(self, project_id, id).await
    }
}

#[async_trait]
impl BranchLifecycle for SupabaseClient {
    /// See [`SupabaseClient::create_branch`]: reuse by name replaces the idempotency key.
    async fn create_branch(
        &self,
        req: &BranchRequest,
        _idempotency_key: &str,
    ) -> Result<VendorBranch, ProviderError> {
        SupabaseClient::create_branch(self, req).await
    }
    async fn delete_branch(&self, project_id: &str, id: &str) -> Result<(), ProviderError> {
        SupabaseClient::delete_branch(self, project_id, id).await
    }
}

// Supabase has no on-demand snapshots (backups and in-place PITR are on
// [`SupabaseClient`] itself) and no BYOK: no snapshot or BYOK family.

#[async_trait]
impl CredentialApi for SupabaseClient {
    /// Sets `proposed` as the database password, synchronously. A branch is
    /// rotated through its own project ref. The URIs are not returned: only the
    /// password changes.
    async fn rotate_credentials(
        &self,
        target: &RotationTarget,
        proposed: &Password,
        _idempotency_key: &str,
    ) -> Result<RotationProgress, ProviderError> {
        match target {
            RotationTarget::Project { id } => self.update_database_password(id, proposed).await?,
            RotationTarget::Branch { project_id, id } => {
                let branch = self.find_branch(project_id, id).await?;
                self.update_database_password(&branch.project_ref, proposed)
                    .await?;
            }
        }
        Ok(RotationProgress::Done {
            connection_uri: None,
            pooled_uri: None,
            password: Some(proposed.clone()),
        })
    }
    /// Never asked: [`CredentialApi::rotate_credentials`] finishes synchronously here.
    async fn rotation_status(
        &self,
        _target: &RotationTarget,
        job_id: &str,
    ) -> Result<RotationProgress, ProviderError> {
        Err(nothing_to_poll(
            ProviderApi::Supabase,
            Operation::CredentialRotate,
            job_id,
        ))
    }
}

/// Supabase's `POST /v1/projects/{ref}/database/query`, on a project's or a
/// branch's ref (a branch has its own). The document gives the answer's code
/// (`201`) and no body, so the client never reads one: statements only.
#[async_trait]
impl crate::providers::base::SqlApi for SupabaseClient {
    fn channel(&self) -> crate::providers::base::SqlChannel {
        crate::providers::base::SqlChannel::VendorEndpoint
    }
    fn returns_rows(&self) -> bool {
        false
    }
    /// The query endpoint's `{ref}` is a project ref; the document shows no
    /// answer body for a branch read, so a branch's own ref is not known.
    fn reaches_branches(&self) -> bool {
        false
    }
    async fn run_sql(
        &self,
        database_id: &str,
        sql: &str,
    ) -> Result<crate::providers::base::Rows, ProviderError> {
        self.http
            .call_raw(
                "database.query",
                Method::POST,
                &["v1", "projects", database_id, "database", "query"],
                &[],
                Some(&serde_json::json!({ "query": sql })),
            )
            .await?;
        Ok(Vec::new())
    }
}

impl Provider for SupabaseClient {
    fn api(&self) -> ProviderApi {
        ProviderApi::Supabase
    }
    fn project_lifecycle(&self) -> Option<&dyn ProjectLifecycle> {
        Some(self)
    }
    fn branches(&self) -> Option<&dyn BranchApi> {
        Some(self)
    }
    fn branch_lifecycle(&self) -> Option<&dyn BranchLifecycle> {
        Some(self)
    }
    fn project_credentials(&self) -> Option<&dyn CredentialApi> {
        Some(self)
    }
    fn branch_credentials(&self) -> Option<&dyn CredentialApi> {
        Some(self)
    }
    /// Supabase takes `db_pass` on create and never returns it.
    fn unsupported_hint(&self, operation: Operation) -> Option<&'static str> {
        match operation {
            Operation::SnapshotCreate | Operation::SnapshotGet | Operation::SnapshotDelete => Some(
                "Supabase takes scheduled backups by itself (list them with GET /v1/projects/{ref}/database/backups) and has no on-demand snapshot; use point-in-time recovery instead",
            ),
            Operation::SnapshotRestore => Some(
                "Supabase restores only in place (POST /v1/projects/{ref}/database/backups/restore-pitr), never into a new project; restore the source project in the Supabase dashboard or API",
            ),
            _ => None,
        }
    }

    fn sql(&self) -> Option<&dyn crate::providers::base::SqlApi> {
        Some(self)
    }
    fn needs_operator_password(&self) -> bool {
        true
    }
}

/// Where the document is silent and this client reads or relies on something
/// anyway (see [`Assumption`]).
///
/// The Supabase document lists paths, parameter tables and response codes,
/// but no methods and no answer bodies at all: every field the client reads is
/// taken from the public Management API reference (see the module header).
pub const ASSUMED: &[crate::providers::base::Assumption] = &[
    Assumption {
        method: "GET",
        path: "/v1/projects",
        reads: &[
            "[].id",
            "[].ref",
            "[].organization_id",
            "[].organization_slug",
            "[].name",
            "[].region",
            "[].created_at",
            "[].status",
        ],
        why: "the project list: no answer body documented; read as the public reference's V1ProjectWithDatabaseResponse, to reuse a project by name after a lost create and to tell a deleted project",
    },
    Assumption {
        method: "POST",
        path: "/v1/projects",
        reads: &[
            "id",
            "ref",
            "organization_id",
            "organization_slug",
            "name",
            "region",
            "created_at",
            "status",
        ],
        why: "the create answer: no body documented; read as V1ProjectResponse. `region` is sent, not `region_selection`: the document marks `region` deprecated but lists none of `region_selection`'s options",
    },
    Assumption {
        method: "GET",
        path: "/v1/projects/{ref}",
        reads: &[
            "id",
            "ref",
            "organization_id",
            "organization_slug",
            "name",
            "region",
            "created_at",
            "status",
            "database.host",
        ],
        why: "the project read: no body documented; `status` names follow the public reference, unknown ones wait (bounded) and then stall; the direct host is `database.host`",
    },
    Assumption {
        method: "GET",
        path: "/v1/projects/{ref}/config/database/pooler",
        reads: &[
            "[].database_type",
            "[].db_host",
            "[].db_port",
            "[].db_user",
            "[].db_name",
        ],
        why: "the Supavisor config: no body documented; read as the public reference's list of pooler entries, and left out of the Secret when it does not read so",
    },
    Assumption {
        method: "GET",
        path: "/v1/projects/{ref}/branches",
        reads: &[
            "[].id",
            "[].name",
            "[].project_ref",
            "[].parent_project_ref",
            "[].status",
        ],
        why: "the branch list: no body documented; read as BranchResponse. A branch missing from it is not found (the document lists no 404 for branch reads or deletes)",
    },
    Assumption {
        method: "POST",
        path: "/v1/projects/{ref}/branches",
        reads: &["id", "name", "project_ref", "parent_project_ref", "status"],
        why: "the branch create answer: no body documented; read as BranchResponse",
    },
    Assumption {
        method: "GET",
        path: "/v1/branches/{branch_id_or_ref}",
        reads: &["status", "db_host", "db_port", "db_user", "db_pass"],
        why: "the branch config: no body documented; read as BranchDetailResponse (the branch's own host and credentials)",
    },
    Assumption {
        method: "GET",
        path: "/v1/projects/{ref}/database/backups",
        reads: &[
            "region",
            "walg_enabled",
            "pitr_enabled",
            "backups.[].inserted_at",
            "backups.[].status",
            "backups.[].is_physical_backup",
            "physical_backup_data.earliest_physical_backup_date_unix",
            "physical_backup_data.latest_physical_backup_date_unix",
        ],
        why: "the backup list: no body documented; read as V1BackupsResponse",
    },
];

use crate::providers::base::Assumption;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_map_to_states() {
        assert_eq!(project_state(Some("ACTIVE_HEALTHY")), ResourceState::Ready);
        for transitional in ["COMING_UP", "RESTORING", "INACTIVE", "UPGRADING"] {
            assert_eq!(
                project_state(Some(transitional)),
                ResourceState::Provisioning(transitional.to_string())
            );
        }
        assert_eq!(
            project_state(Some("NEW_STATE")),
            ResourceState::Unrecognized("NEW_STATE".to_string())
        );
        for failed in ["INIT_FAILED", "RESTORE_FAILED", "PAUSE_FAILED", "REMOVED"] {
            assert_eq!(
                project_state(Some(failed)),
                ResourceState::Failed(failed.to_string())
            );
        }
        assert_eq!(
            project_state(None),
            ResourceState::Unrecognized("no status".to_string())
        );
    }

    #[test]
    fn connection_uris_encode_credentials_and_refuse_bad_hosts() {
        let uri = connection_uri("postgres", None, "db.abc.supabase.co", 5432).unwrap();
        assert_eq!(
            uri.expose(),
            "postgresql://postgres@db.abc.supabase.co:5432/postgres"
        );
        let uri =
            connection_uri("postgres", Some("p@ss/word"), "db.abc.supabase.co", 6543).unwrap();
        assert_eq!(
            uri.expose(),
            "postgresql://postgres:p%40ss%2Fword@db.abc.supabase.co:6543/postgres"
        );
        assert!(connection_uri("postgres", None, "bad host/x", 5432).is_none());
    }
}
