//! The infrai routing API (`/v1/db/...`): projects, branches and snapshots on
//! Neon, Supabase or PlanetScale. Contract: `vendor-apis/infrai-db.txt`.

use async_trait::async_trait;
use reqwest::Method;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::api::v1alpha1::ProviderApi;
use crate::providers::base::http::VendorHttp;
use crate::providers::base::{
    BranchApi, BranchLifecycle, BranchRequest, Build, ByokApi, ConnectionUri, Operation,
    ProjectApi, ProjectLifecycle, ProjectRequest, Provider, ProviderError, ResourceState,
    RestoreApi, RestoreProgress, RestoreRequest, SnapshotApi, SnapshotRequest, Vendor,
    VendorBranch, VendorProject, VendorSnapshot, nothing_to_poll,
};

/// Public endpoint of the infrai API.
pub const DEFAULT_ENDPOINT: &str = "https://api.infrai.cc";

/// This vendor's entry in the registry (`providers::registry::VENDORS`).
pub const VENDOR: Vendor = Vendor {
    api: ProviderApi::Infrai,
    default_endpoint: Some(DEFAULT_ENDPOINT),
    build: Build::Http(|http, _spec| std::sync::Arc::new(InfraiClient::new(http))),
};

/// A page of a list call: `{ items, next_cursor? }`.
#[derive(Debug)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

#[derive(Deserialize)]
struct PageWire<T> {
    items: Vec<T>,
    #[serde(default)]
    next_cursor: Option<String>,
}

/// `Project { id, name, region, connection_uri, created_at }`.
#[derive(Deserialize)]
struct ProjectWire {
    id: String,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    region: Option<String>,
    #[serde(default)]
    connection_uri: Option<String>,
    #[serde(default)]
    created_at: Option<String>,
}

/// `Branch { id, branch_name, project_id, connection_uri }`.
#[derive(Deserialize)]
struct BranchWire {
    id: String,
    branch_name: String,
    project_id: String,
    #[serde(default)]
    connection_uri: Option<String>,
}

/// `Snapshot { id, project_id, label?, created_at }`.
#[derive(Deserialize)]
struct SnapshotWire {
    id: String,
    project_id: String,
    #[serde(default)]
    label: Option<String>,
    #[serde(default)]
    created_at: Option<String>,
}

#[derive(Deserialize)]
struct OkWire {
    ok: bool,
}

impl From<ProjectWire> for VendorProject {
    fn from(w: ProjectWire) -> Self {
        VendorProject {
            name: w.name.unwrap_or_default(),
            id: w.id,
            region: w.region,
            created_at: w.created_at,
            // infrai answers once the project is usable; it has no provisioning states.
            state: ResourceState::Ready,
            connection_uri: w.connection_uri.map(ConnectionUri::new),
            pooled_uri: None,
        }
    }
}

impl From<BranchWire> for VendorBranch {
    fn from(w: BranchWire) -> Self {
        VendorBranch {
            id: w.id,
            name: w.branch_name,
            project_id: w.project_id,
            state: ResourceState::Ready,
            connection_uri: w.connection_uri.map(ConnectionUri::new),
            pooled_uri: None,
        }
    }
}

impl From<SnapshotWire> for VendorSnapshot {
    fn from(w: SnapshotWire) -> Self {
        VendorSnapshot {
            id: w.id,
            project_id: w.project_id,
            label: w.label,
            created_at: w.created_at,
            state: ResourceState::Ready,
        }
    }
}

/// Decodes `bytes` as each infrai answer shape (for the fuzzing entry point).
pub(crate) fn decode_for_fuzzing(bytes: &[u8]) -> usize {
    let mut decoded = 0;
    decoded += usize::from(
        serde_json::from_slice::<ProjectWire>(bytes)
            .map(VendorProject::from)
            .is_ok(),
    );
    decoded += usize::from(
        serde_json::from_slice::<BranchWire>(bytes)
            .map(VendorBranch::from)
            .is_ok(),
    );
    decoded += usize::from(
        serde_json::from_slice::<SnapshotWire>(bytes)
            .map(VendorSnapshot::from)
            .is_ok(),
    );
    decoded += usize::from(serde_json::from_slice::<PageWire<ProjectWire>>(bytes).is_ok());
    decoded += usize::from(serde_json::from_slice::<OkWire>(bytes).is_ok());
    decoded
}

/// A client of the infrai `/v1/db` API. It implements all twelve capabilities;
/// the [`Provider`] traits expose the ones the controllers use.
#[derive(Clone, Debug)]
pub struct InfraiClient {
    http: VendorHttp,
}

fn page_query(cursor: Option<&str>, limit: Option<u32>) -> Vec<(&'static str, String)> {
    let mut query = Vec::new();
    if let Some(cursor) = cursor {
        query.push(("cursor", cursor.to_string()));
    }
    if let Some(limit) = limit {
        query.push(("limit", limit.to_string()));
    }
    query
}

/// Puts the optional fields that are set into a JSON body.
fn with_optional(mut body: Value, fields: &[(&str, &Option<String>)]) -> Value {
    if let Some(map) = body.as_object_mut() {
        for (key, value) in fields {
            if let Some(value) = value {
                map.insert((*key).to_string(), Value::String(value.clone()));
            }
        }
    }
    body
}

impl InfraiClient {
    pub fn new(http: VendorHttp) -> Self {
        Self { http }
    }

    pub(super) fn http(&self) -> &VendorHttp {
        &self.http
    }

    /// `db.<resource>.create` with `body`.
    async fn create<W, T>(&self, resource: &str, body: &Value) -> Result<T, ProviderError>
    where
        W: serde::de::DeserializeOwned + Into<T>,
    {
        let operation = format!("db.{resource}.create");
        let path = ["v1", "db", resource, "create"];
        let wire: W = self
            .http
            .call(&operation, Method::POST, &path, &[], Some(body))
            .await?;
        Ok(wire.into())
    }

    /// `db.<resource>.get`: one object by id.
    async fn get<W, T>(&self, resource: &str, id: &str) -> Result<T, ProviderError>
    where
        W: serde::de::DeserializeOwned + Into<T>,
    {
        let operation = format!("db.{resource}.get");
        let path = ["v1", "db", resource, "get", id];
        let wire: W = self
            .http
            .call(&operation, Method::GET, &path, &[], None)
            .await?;
        Ok(wire.into())
    }

    /// `db.<resource>.list`: one page, of one project when `project_id` is set.
    async fn list<W, T>(
        &self,
        resource: &str,
        project_id: Option<&str>,
        cursor: Option<&str>,
        limit: Option<u32>,
    ) -> Result<Page<T>, ProviderError>
    where
        W: serde::de::DeserializeOwned + Into<T>,
    {
        let mut query = page_query(cursor, limit);
        if let Some(project_id) = project_id {
            query.push(("project_id", project_id.to_string()));
        }
        let operation = format!("db.{resource}.list");
        let path = ["v1", "db", resource, "list"];
        let wire: PageWire<W> = self
            .http
            .call(&operation, Method::GET, &path, &query, None)
            .await?;
        Ok(Page {
            items: wire.items.into_iter().map(Into::into).collect(),
            next_cursor: wire.next_cursor,
        })
    }

    /// The first object of `resource` (of `project_id`, when set) that
    /// `wanted` picks, over the pages of `db.<resource>.list` (at most
    /// [`MAX_SEARCH_PAGES`] of them).
    async fn find<W, T>(
        &self,
        resource: &str,
        project_id: Option<&str>,
        wanted: impl Fn(&T) -> bool,
    ) -> Result<Option<T>, ProviderError>
    where
        W: serde::de::DeserializeOwned + Into<T>,
    {
        let mut cursor: Option<String> = None;
        for _ in 0..MAX_SEARCH_PAGES {
            let page = self
                .list::<W, T>(resource, project_id, cursor.as_deref(), Some(SEARCH_PAGE))
                .await?;
            if let Some(found) = page.items.into_iter().find(|item| wanted(item)) {
                return Ok(Some(found));
            }
            match page.next_cursor.filter(|c| !c.is_empty()) {
                Some(next) => cursor = Some(next),
                None => break,
            }
        }
        Ok(None)
    }

    /// `db.<resource>.delete`, which answers `{"ok": true}` when done.
    async fn delete(&self, resource: &str, id: &str) -> Result<(), ProviderError> {
        let operation = format!("db.{resource}.delete");
        let path = ["v1", "db", resource, "delete", id];
        let answer: OkWire = self
            .http
            .call(&operation, Method::DELETE, &path, &[], None)
            .await?;
        if answer.ok {
            Ok(())
        } else {
            Err(ProviderError::NotConfirmed {
                api: ProviderApi::Infrai,
                operation,
            })
        }
    }

    /// `db.project.create`.
    pub async fn create_project(
        &self,
        req: &ProjectRequest,
        idempotency_key: &str,
    ) -> Result<VendorProject, ProviderError> {
        let body = with_optional(
            json!({ "name": req.name, "idempotency_key": idempotency_key }),
            &[
                ("vendor", &req.vendor),
                ("region", &req.region),
                ("plan", &req.plan),
                ("mode", &req.mode),
                ("postgres_version", &req.postgres_version),
            ],
        );
        self.create::<ProjectWire, _>("project", &body).await
    }

    /// `db.project.get`.
    pub async fn get_project(&self, id: &str) -> Result<VendorProject, ProviderError> {
        self.get::<ProjectWire, _>("project", id).await
    }

    /// `db.project.list`, one page.
    pub async fn list_projects(
        &self,
        cursor: Option<&str>,
        limit: Option<u32>,
    ) -> Result<Page<VendorProject>, ProviderError> {
        self.list::<ProjectWire, _>("project", None, cursor, limit)
            .await
    }

    /// `db.project.delete` (also removes the project's branches and snapshots).
    pub async fn delete_project(&self, id: &str) -> Result<(), ProviderError> {
        self.delete("project", id).await
    }

    /// `db.branch.create`.
    pub async fn create_branch(
        &self,
        req: &BranchRequest,
        idempotency_key: &str,
    ) -> Result<VendorBranch, ProviderError> {
        let body = with_optional(
            json!({
                "project_id": req.project_id,
                "branch_name": req.branch_name,
                "idempotency_key": idempotency_key,
            }),
            &[("from_branch", &req.from_branch)],
        );
        self.create::<BranchWire, _>("branch", &body).await
    }

    /// `db.branch.get`.
    pub async fn get_branch(&self, id: &str) -> Result<VendorBranch, ProviderError> {
        self.get::<BranchWire, _>("branch", id).await
    }

    /// `db.branch.list`, one page, optionally of one project.
    pub async fn list_branches(
        &self,
        project_id: Option<&str>,
        cursor: Option<&str>,
        limit: Option<u32>,
    ) -> Result<Page<VendorBranch>, ProviderError> {
        self.list::<BranchWire, _>("branch", project_id, cursor, limit)
            .await
    }

    /// `db.branch.delete`.
    pub async fn delete_branch(&self, id: &str) -> Result<(), ProviderError> {
        self.delete("branch", id).await
    }

    /// `db.snapshot.create`.
    pub async fn create_snapshot(
        &self,
        req: &SnapshotRequest,
        idempotency_key: &str,
    ) -> Result<VendorSnapshot, ProviderError> {
        let body = with_optional(
            json!({ "project_id": req.project_id, "idempotency_key": idempotency_key }),
            &[("label", &req.label)],
        );
        self.create::<SnapshotWire, _>("snapshot", &body).await
    }

    /// `db.snapshot.get`.
    pub async fn get_snapshot(&self, id: &str) -> Result<VendorSnapshot, ProviderError> {
        self.get::<SnapshotWire, _>("snapshot", id).await
    }

    /// `db.snapshot.list`, one page, optionally of one project.
    pub async fn list_snapshots(
        &self,
        project_id: Option<&str>,
        cursor: Option<&str>,
        limit: Option<u32>,
    ) -> Result<Page<VendorSnapshot>, ProviderError> {
        self.list::<SnapshotWire, _>("snapshot", project_id, cursor, limit)
            .await
    }

    /// `db.snapshot.restore`: a new project from a snapshot. The snapshot id goes
    /// both in the path and in the body, as the document shows.
    pub async fn restore_snapshot(
        &self,
        req: &RestoreRequest,
        idempotency_key: &str,
    ) -> Result<VendorProject, ProviderError> {
        let body = with_optional(
            json!({ "snapshot_id": req.snapshot_id, "idempotency_key": idempotency_key }),
            &[("new_name", &req.new_name)],
        );
        let wire: ProjectWire = self
            .http
            .call(
                "db.snapshot.restore",
                Method::POST,
                &["v1", "db", "snapshot", "restore", &req.snapshot_id],
                &[],
                Some(&body),
            )
            .await?;
        Ok(wire.into())
    }
}

#[async_trait]
impl ProjectApi for InfraiClient {
    async fn get_project(&self, id: &str) -> Result<VendorProject, ProviderError> {
        InfraiClient::get_project(self, id).await
    }
}

/// Pages a resumed create looks through for what a lost create made, and
/// their size.
const MAX_SEARCH_PAGES: usize = 50;
const SEARCH_PAGE: u32 = 100;

/// Creates are sent with an idempotency key, but the document does not say
/// how long infrai keeps one. So a *resumed* create (one that may have
/// reached infrai before, see [`ProjectRequest::resumed`]) first looks for
/// what it made, by name, in the documented list; only a first attempt, or a
/// resumed one that finds nothing, is sent. A project is searched for only
/// under a name that carries the resource's UID ([`Resume::OwnName`]): under
/// a name the user chose, a project found may be anyone's, so such a resumed
/// create is sent again with its idempotency key instead, and what infrai
/// answers to that key is this resource's own (the earlier project, replayed,
/// or a new one). A branch found under its name is taken only where its
/// request says so ([`Resume::found`]). Nothing is ever adopted by name on a
/// first attempt.
#[async_trait]
impl ProjectLifecycle for InfraiClient {
    async fn create_project(
        &self,
        req: &ProjectRequest,
        idempotency_key: &str,
    ) -> Result<VendorProject, ProviderError> {
        if req.resumed == Resume::OwnName
            && let Some(made) = self
                .find::<ProjectWire, VendorProject>("project", None, |p| p.name == req.name)
                .await?
        {
            return Ok(made);
        }
        InfraiClient::create_project(self, req, idempotency_key).await
    }
    async fn delete_project(&self, id: &str) -> Result<(), ProviderError> {
        InfraiClient::delete_project(self, id).await
    }
}

/// infrai restores synchronously: the answer is the new project.
#[async_trait]
impl RestoreApi for InfraiClient {
    async fn restore_snapshot(
        &self,
        req: &RestoreRequest,
        idempotency_key: &str,
    ) -> Result<RestoreProgress, ProviderError> {
        if req.resumed == Resume::OwnName
            && let Some(name) = &req.new_name
            && let Some(made) = self
                .find::<ProjectWire, VendorProject>("project", None, |p| &p.name == name)
                .await?
        {
            return Ok(RestoreProgress::Done(made));
        }
        InfraiClient::restore_snapshot(self, req, idempotency_key)
            .await
            .map(RestoreProgress::Done)
    }
    /// Never asked: [`RestoreApi::restore_snapshot`] never answers `Pending` here.
    async fn restore_status(&self, handle: &str) -> Result<RestoreProgress, ProviderError> {
        Err(nothing_to_poll(
            ProviderApi::Infrai,
            Operation::SnapshotRestore,
            handle,
        ))
    }
}

#[async_trait]
impl BranchApi for InfraiClient {
    async fn get_branch(&self, _project_id: &str, id: &str) -> Result<VendorBranch, ProviderError> {
        InfraiClient::get_branch(self, id).await
    }
}

#[async_trait]
impl BranchLifecycle for InfraiClient {
    async fn create_branch(
        &self,
        req: &BranchRequest,
        idempotency_key: &str,
    ) -> Result<VendorBranch, ProviderError> {
        if req.resumed.is_resumed()
            && let Some(made) = self
                .find::<BranchWire, VendorBranch>("branch", Some(&req.project_id), |b| {
                    b.name == req.branch_name
                })
                .await?
        {
            req.resumed
                .found(ProviderApi::Infrai, "branch", &req.branch_name)?;
            return Ok(made);
        }
        InfraiClient::create_branch(self, req, idempotency_key).await
    }
    async fn delete_branch(&self, _project_id: &str, id: &str) -> Result<(), ProviderError> {
        InfraiClient::delete_branch(self, id).await
    }
}

/// Snapshots can be taken and read; the document has no snapshot delete.
#[async_trait]
impl SnapshotApi for InfraiClient {
    async fn create_snapshot(
        &self,
        req: &SnapshotRequest,
        idempotency_key: &str,
    ) -> Result<VendorSnapshot, ProviderError> {
        InfraiClient::create_snapshot(self, req, idempotency_key).await
    }
    async fn get_snapshot(
        &self,
        _project_id: &str,
        id: &str,
    ) -> Result<VendorSnapshot, ProviderError> {
        InfraiClient::get_snapshot(self, id).await
    }
}

/// infrai has no password rotation endpoint, so no credential family.
impl Provider for InfraiClient {
    fn api(&self) -> ProviderApi {
        ProviderApi::Infrai
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
    fn byok(&self) -> Option<&dyn ByokApi> {
        Some(self)
    }
}

/// Where the document is silent and this client reads or relies on something
/// anyway (see [`Assumption`]).
pub const ASSUMED: &[crate::providers::base::Assumption] = &[
    Assumption {
        method: "POST",
        path: "/v1/db/project/create",
        reads: &[],
        why: "the document does not say how long an idempotency key is kept: a resumed create of a project whose name carries the resource's UID looks for it by name in the list before sending it again, so nothing depends on the key outliving a crash. Under a name the user chose, a project found by name proves nothing, so the create is sent again with its key: were the key forgotten, that makes a second project of this resource's own, never takes someone else's. Snapshots have no name to look for, so a snapshot create resumed after infrai forgot its key would take a second snapshot",
    },
    Assumption {
        method: "POST",
        path: "/v1/db/branch/create",
        reads: &[],
        why: "the document does not say whether `from_branch` is a branch name or an id: the client sends spec.fromBranch exactly as written and never converts one into the other",
    },
    Assumption {
        method: "POST",
        path: "/v1/db/snapshot/restore/{id}",
        reads: &[],
        why: "the document's curl example sends `snapshot_id` in the body although the path already carries the id; the client sends both, as the example does",
    },
];

use crate::providers::base::Assumption;
use crate::providers::base::Resume;
