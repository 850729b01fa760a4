//! The `postgres` API: a PostgreSQL server of your own as the vendor.
//!
//! - A project is a database and a login role that owns it, both named
//!   after the resource ([`generated_name`]). The
//!   operator chooses the password and keeps it only in the connection
//!   Secret.
//! - A branch is a new database holding a copy of its parent's schema and
//!   data (or of `fromBranch`, another branch's database), with its own
//!   owner role. How it is copied is the provider's
//!   `spec.postgres.copyStrategy` ([`CopyStrategy`]).
//! - A snapshot is a frozen copy, owned by a role that cannot log in, in a
//!   database that allows no connections. A restore copies it (as a
//!   template: nobody is ever connected to it) into a new project.
//! - Rotation is `ALTER ROLE … PASSWORD`, sent as a SCRAM verifier.
//! - Deletion drops the database with its sessions (`WITH (FORCE)`), then the
//!   role. Deleting a project leaves its branches' databases: each is its
//!   own resource's to delete.
//!
//! Ids are database names. Every role and database carries its resource's
//! marker (see [`server`]), so a retried create finds its own work and a
//! foreign database or role of the same name is never adopted or dropped.

mod logical;
pub mod server;
pub mod sql;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use sha2::{Digest, Sha256};

use crate::api::v1alpha1::{CopyStrategy, ProviderApi};
use crate::providers::base::{
    BranchApi, BranchLifecycle, BranchRequest, BranchReset, Build, CredentialApi, Operation,
    Password, ProjectApi, ProjectLifecycle, ProjectRequest, Provider, ProviderConfig,
    ProviderError, ResourceState, RestoreApi, RestoreProgress, RestoreRequest, RotationProgress,
    RotationTarget, SnapshotApi, SnapshotDeletion, SnapshotRequest, StagedCopy, Vendor,
    VendorBranch, VendorProject, VendorSnapshot, generated_name,
};
pub use server::{Server, Source};
pub use sql::SqlError;

/// This vendor's entry in the registry (`providers::registry::VENDORS`).
pub const VENDOR: Vendor = Vendor {
    api: ProviderApi::Postgres,
    default_endpoint: None,
    build: Build::Direct(build),
};

const API: ProviderApi = ProviderApi::Postgres;

fn build(config: &ProviderConfig) -> Result<Arc<dyn Provider>, crate::providers::base::BuildError> {
    let endpoint = config.effective_endpoint()?;
    let settings = config.spec.postgres.clone().unwrap_or_default();
    let server = Server::new(
        endpoint,
        Some(&config.api_key),
        settings.connection_host.as_deref(),
        Duration::from_secs(u64::from(config.spec.request_timeout_seconds)),
    )
    .map_err(crate::providers::base::BuildError::Invalid)?;
    Ok(Arc::new(PostgresProvider {
        server,
        strategy: settings.copy_strategy,
    }))
}

/// A client of one PostgreSQL server.
#[derive(Debug)]
pub struct PostgresProvider {
    server: Server,
    strategy: CopyStrategy,
}

impl PostgresProvider {
    pub fn new(server: Server, strategy: CopyStrategy) -> Self {
        Self { server, strategy }
    }
}

/// A [`SqlError`] as a [`ProviderError`] of `operation` on `object` `name`.
fn failed(operation: &str, error: SqlError) -> ProviderError {
    match error {
        SqlError::Server {
            code,
            message,
            transient,
        } => ProviderError::Database {
            api: API,
            operation: operation.to_string(),
            code,
            message,
            transient,
        },
        SqlError::Conflict { object, name } => ProviderError::NameConflict {
            api: API,
            object,
            name,
        },
        SqlError::Missing { object, name } => ProviderError::NotFound {
            api: API,
            object,
            id: name,
        },
    }
}

fn refused(operation: &str, message: String) -> ProviderError {
    ProviderError::Database {
        api: API,
        operation: operation.to_string(),
        code: None,
        message,
        transient: false,
    }
}

fn required_password<'a>(
    operation: &str,
    password: Option<&'a Password>,
) -> Result<&'a Password, ProviderError> {
    password.ok_or_else(|| {
        refused(
            operation,
            "the operator must choose the role's password".to_string(),
        )
    })
}

/// The names an in-place reset of branch database `id` works under: the
/// staged copy (a database and the role that owns it until the swap) and
/// the swapped-out database, until it is dropped. Derived from the id alone,
/// so whatever a reset cut short leaves is found again.
fn reset_names(id: &str) -> (String, String) {
    let digest = Sha256::digest(id.as_bytes());
    let hash: String = digest.iter().take(8).map(|b| format!("{b:02x}")).collect();
    (format!("dbops-reset-{hash}"), format!("dbops-old-{hash}"))
}

/// A snapshot's database name: its project's, cut to fit, then `-snap-` and
/// a hash of the snapshot's create key (unique per resource).
fn snapshot_name(project_id: &str, key: &str) -> String {
    let digest = Sha256::digest(key.as_bytes());
    let hash: String = digest.iter().take(4).map(|b| format!("{b:02x}")).collect();
    let room = crate::providers::base::MAX_GENERATED_NAME - "-snap-".len() - hash.len();
    let prefix: String = project_id.chars().take(room).collect();
    format!("{}-snap-{hash}", prefix.trim_end_matches('-'))
}

impl PostgresProvider {
    /// A connectable database as a project (or branch) with its URI (the
    /// password only when given: reads leave it to the Secret).
    async fn read(&self, operation: &str, id: &str) -> Result<server::DatabaseInfo, ProviderError> {
        self.server
            .database(id)
            .await
            .map_err(|e| failed(operation, e))?
            .ok_or_else(|| ProviderError::NotFound {
                api: API,
                object: "database",
                id: id.to_string(),
            })
    }

    fn project(&self, db: &server::DatabaseInfo, password: Option<&Password>) -> VendorProject {
        VendorProject {
            id: db.name.clone(),
            name: db.name.clone(),
            region: None,
            created_at: None,
            state: connectable_state(db),
            connection_uri: Some(self.server.uri(&db.owner, password, &db.name)),
            pooled_uri: None,
        }
    }

    /// Makes `name` (role and database, marked with `key`) hold what `source`
    /// says; the role logs in with `password` (`None`: cannot log in).
    #[allow(clippy::too_many_arguments)]
    async fn make(
        &self,
        operation: &str,
        name: &str,
        key: &str,
        parent: Option<&str>,
        password: Option<&Password>,
        source: Source<'_>,
    ) -> Result<server::DatabaseInfo, ProviderError> {
        let fail = |e| failed(operation, e);
        self.server
            .ensure_role(name, key, password)
            .await
            .map_err(fail)?;
        self.server
            .ensure_database(name, name, key, parent, source, password.is_some())
            .await
            .map_err(fail)?;
        self.read(operation, name).await
    }

    /// Drops database `id` (the caller holds its claim: made or adopted by
    /// this resource) and the role dbops made together with it, never
    /// another role: an adopted database's owner stays.
    async fn drop(&self, operation: &str, id: &str) -> Result<(), ProviderError> {
        let db = self
            .server
            .database(id)
            .await
            .map_err(|e| failed(operation, e))?;
        self.server
            .drop_database(id)
            .await
            .map_err(|e| failed(operation, e))?;
        let Some(db) = db else {
            return Ok(());
        };
        let Some(marker) = db.marker() else {
            return Ok(());
        };
        self.server
            .drop_role_made_with(&db.owner, marker)
            .await
            .map_err(|e| failed(operation, e))
    }

    /// The database a branch of project `project_id` is copied from: the
    /// project's own, or `from`, which must be a branch dbops made of the
    /// same project (its comment says so). Never any other database of the
    /// server.
    async fn branch_source<'a>(
        &self,
        project_id: &'a str,
        from: Option<&'a str>,
    ) -> Result<&'a str, ProviderError> {
        const OPERATION: &str = "branch.create";
        let Some(from) = from.filter(|f| *f != project_id) else {
            return Ok(project_id);
        };
        let source = self.read(OPERATION, from).await?;
        if source.parent() != Some(project_id) || !source.allows_connections {
            return Err(refused(
                OPERATION,
                format!(
                    "database {from:?} is not a branch of this project; fromBranch names a branch of the same project only"
                ),
            ));
        }
        Ok(from)
    }
}

fn connectable_state(db: &server::DatabaseInfo) -> ResourceState {
    if db.allows_connections {
        ResourceState::Ready
    } else {
        ResourceState::Failed(format!(
            "database {} allows no connections (it is a snapshot, or was closed by hand)",
            db.name
        ))
    }
}

#[async_trait]
impl ProjectApi for PostgresProvider {
    /// A database as a project. One made by an earlier version of dbops,
    /// still open to `PUBLIC`, is closed on the way.
    async fn get_project(&self, id: &str) -> Result<VendorProject, ProviderError> {
        let db = self.read("project.get", id).await?;
        if db.marker().is_some() {
            self.server
                .close_to_public(id)
                .await
                .map_err(|e| failed("project.get", e))?;
        }
        Ok(self.project(&db, None))
    }
}

#[async_trait]
impl ProjectLifecycle for PostgresProvider {
    async fn create_project(
        &self,
        req: &ProjectRequest,
        idempotency_key: &str,
    ) -> Result<VendorProject, ProviderError> {
        const OPERATION: &str = "project.create";
        for (field, value) in [
            ("vendor", &req.vendor),
            ("region", &req.region),
            ("plan", &req.plan),
        ] {
            if value.is_some() {
                return Err(refused(
                    OPERATION,
                    format!("a postgres provider has no {field}s: remove spec.{field}"),
                ));
            }
        }
        if req.mode.as_deref() == Some("byok") {
            return Err(refused(
                OPERATION,
                "mode: byok is an infrai setting and means nothing to a postgres provider"
                    .to_string(),
            ));
        }
        if let Some(wanted) = &req.postgres_version {
            let running = self
                .server
                .major_version()
                .await
                .map_err(|e| failed(OPERATION, e))?;
            if wanted.split('.').next() != Some(running.to_string().as_str()) {
                return Err(refused(
                    OPERATION,
                    format!(
                        "the server runs PostgreSQL {running}, not {wanted}: change or remove spec.postgresVersion"
                    ),
                ));
            }
        }
        let password = required_password(OPERATION, req.db_password.as_ref())?;
        let db = self
            .make(
                OPERATION,
                &req.name,
                idempotency_key,
                None,
                Some(password),
                Source::Empty,
            )
            .await?;
        Ok(self.project(&db, Some(password)))
    }

    async fn delete_project(&self, id: &str) -> Result<(), ProviderError> {
        self.drop("project.delete", id).await
    }
}

#[async_trait]
impl RestoreApi for PostgresProvider {
    async fn restore_snapshot(
        &self,
        req: &RestoreRequest,
        idempotency_key: &str,
    ) -> Result<RestoreProgress, ProviderError> {
        const OPERATION: &str = "snapshot.restore";
        let password = required_password(OPERATION, req.db_password.as_ref())?;
        let Some(name) = req.new_name.as_deref() else {
            return Err(refused(
                OPERATION,
                "a restore needs the new database's name".to_string(),
            ));
        };
        // Nobody can be connected to a snapshot, so a template copy never
        // disconnects anyone.
        let source = Source::Copy {
            from: &req.snapshot_id,
            strategy: CopyStrategy::Template,
        };
        let db = self
            .make(
                OPERATION,
                name,
                idempotency_key,
                None,
                Some(password),
                source,
            )
            .await?;
        Ok(RestoreProgress::Done(self.project(&db, Some(password))))
    }

    async fn restore_status(&self, handle: &str) -> Result<RestoreProgress, ProviderError> {
        Err(crate::providers::base::nothing_to_poll(
            API,
            Operation::SnapshotRestore,
            handle,
        ))
    }
}

#[async_trait]
impl BranchApi for PostgresProvider {
    /// A database as a branch, under the project dbops recorded in its
    /// comment (none for a database dbops did not make as a branch, so it
    /// cannot be adopted as one).
    async fn get_branch(&self, _project_id: &str, id: &str) -> Result<VendorBranch, ProviderError> {
        let db = self.read("branch.get", id).await?;
        if db.marker().is_some() {
            self.server
                .close_to_public(id)
                .await
                .map_err(|e| failed("branch.get", e))?;
        }
        let parent = db.parent().unwrap_or_default().to_string();
        let project = self.project(&db, None);
        Ok(VendorBranch {
            id: project.id,
            name: project.name,
            project_id: parent,
            state: project.state,
            connection_uri: project.connection_uri,
            pooled_uri: None,
        })
    }
}

#[async_trait]
impl BranchLifecycle for PostgresProvider {
    async fn create_branch(
        &self,
        req: &BranchRequest,
        idempotency_key: &str,
    ) -> Result<VendorBranch, ProviderError> {
        const OPERATION: &str = "branch.create";
        let password = required_password(OPERATION, req.db_password.as_ref())?;
        let source = self.copy_source(req).await?;
        let db = self
            .make(
                OPERATION,
                &req.branch_name,
                idempotency_key,
                Some(&req.project_id),
                Some(password),
                source,
            )
            .await?;
        let project = self.project(&db, Some(password));
        Ok(VendorBranch {
            id: project.id,
            name: project.name,
            project_id: req.project_id.clone(),
            state: project.state,
            connection_uri: project.connection_uri,
            pooled_uri: None,
        })
    }

    /// A reset cut short leaves nothing behind either.
    async fn delete_branch(&self, _project_id: &str, id: &str) -> Result<(), ProviderError> {
        self.discard_reset(id).await?;
        self.drop("branch.delete", id).await
    }
}

/// In place: the fresh copy is staged in a database of its own, owned by a
/// role that cannot log in (no client of the branch reaches it before
/// `spec.data` is applied), then handed to the branch's role and renamed to
/// the branch's name in one transaction. Same database, role and password:
/// the connection URI does not change.
#[async_trait]
impl BranchReset for PostgresProvider {
    async fn stage_reset(
        &self,
        req: &BranchRequest,
        id: &str,
    ) -> Result<StagedCopy, ProviderError> {
        const OPERATION: &str = "branch.reset";
        let fail = |e| failed(OPERATION, e);
        let (marker, _) = self
            .reset_marker(OPERATION, id, Some(&req.project_id))
            .await?;
        let (staging, _) = reset_names(id);
        self.server
            .drop_own(&staging, &marker)
            .await
            .map_err(fail)?;
        let source = self.copy_source(req).await?;
        self.server
            .ensure_role(&staging, &marker, None)
            .await
            .map_err(fail)?;
        self.server
            .ensure_database(
                &staging,
                &staging,
                &marker,
                Some(&req.project_id),
                source,
                true,
            )
            .await
            .map_err(fail)?;
        let oid = self.staged_oid(OPERATION, &staging).await?;
        Ok(StagedCopy {
            id: staging.clone(),
            handle: format!("{staging}:{oid}"),
        })
    }

    async fn swap_reset(&self, id: &str, staged: &StagedCopy) -> Result<(), ProviderError> {
        const OPERATION: &str = "branch.reset";
        let fail = |e| failed(OPERATION, e);
        let (marker, owner) = self.reset_marker(OPERATION, id, None).await?;
        let (staging, old) = reset_names(id);
        let oid = staged
            .handle
            .strip_prefix(&format!("{staging}:"))
            .and_then(|oid| oid.parse::<u32>().ok())
            .ok_or_else(|| {
                refused(
                    OPERATION,
                    format!("{:?} is not a copy staged for branch {id:?}", staged.id),
                )
            })?;
        let swapped = self.server.database_oid(id).await.map_err(fail)? == Some(oid);
        if !swapped {
            if self.server.database_oid(&staging).await.map_err(fail)? != Some(oid) {
                return Err(ProviderError::NotFound {
                    api: API,
                    object: "staged copy",
                    id: staging,
                });
            }
            // A database swapped out by an earlier reset that was cut short.
            self.server.drop_own(&old, &marker).await.map_err(fail)?;
            self.server
                .hand_over(&staging, &staging, &owner)
                .await
                .map_err(fail)?;
            self.server
                .swap_in(id, &staging, &old)
                .await
                .map_err(fail)?;
        }
        self.discard_reset(id).await
    }

    async fn discard_reset(&self, id: &str) -> Result<(), ProviderError> {
        const OPERATION: &str = "branch.reset";
        let fail = |e| failed(OPERATION, e);
        let (staging, old) = reset_names(id);
        // The branch's marker, or (the branch gone) the one its staged copy
        // carries: both names are derived from this branch's id.
        let marker = match self.server.database(id).await.map_err(fail)? {
            Some(db) => db.marker().map(str::to_string),
            None => self
                .server
                .role(&staging)
                .await
                .map_err(fail)?
                .flatten()
                .filter(|m| m.starts_with(server::MARKER_PREFIX)),
        };
        let Some(marker) = marker else {
            return Ok(());
        };
        for name in [&staging, &old] {
            self.server.drop_own(name, &marker).await.map_err(fail)?;
        }
        Ok(())
    }
}

impl PostgresProvider {
    /// What a copy `req` asks for is made from. A schema-only branch with
    /// the Logical strategy copies no row at all; a Template copy is whole,
    /// and its rows are removed before anyone can connect.
    async fn copy_source<'a>(&self, req: &'a BranchRequest) -> Result<Source<'a>, ProviderError> {
        let from = self
            .branch_source(&req.project_id, req.from_branch.as_deref())
            .await?;
        Ok(match (req.schema_only, self.strategy) {
            (true, CopyStrategy::Logical) => Source::Schema { from },
            _ => Source::Copy {
                from,
                strategy: self.strategy,
            },
        })
    }

    /// The marker and owner of branch database `id`, which must be one dbops
    /// made (of `project`, when given): only such a branch is reset.
    async fn reset_marker(
        &self,
        operation: &str,
        id: &str,
        project: Option<&str>,
    ) -> Result<(String, String), ProviderError> {
        let db = self.read(operation, id).await?;
        match db.marker() {
            Some(marker) if project.is_none_or(|p| db.parent() == Some(p)) => {
                Ok((marker.to_string(), db.owner.clone()))
            }
            _ => Err(refused(
                operation,
                format!(
                    "database {id:?} is not a branch dbops made of this project; only such a branch is reset"
                ),
            )),
        }
    }

    async fn staged_oid(&self, operation: &str, name: &str) -> Result<u32, ProviderError> {
        self.server
            .database_oid(name)
            .await
            .map_err(|e| failed(operation, e))?
            .ok_or_else(|| ProviderError::NotFound {
                api: API,
                object: "staged copy",
                id: name.to_string(),
            })
    }
}

#[async_trait]
impl SnapshotApi for PostgresProvider {
    async fn create_snapshot(
        &self,
        req: &SnapshotRequest,
        idempotency_key: &str,
    ) -> Result<VendorSnapshot, ProviderError> {
        let name = snapshot_name(&req.project_id, idempotency_key);
        let source = Source::Copy {
            from: &req.project_id,
            strategy: self.strategy,
        };
        self.make(
            "snapshot.create",
            &name,
            idempotency_key,
            Some(&req.project_id),
            None,
            source,
        )
        .await?;
        Ok(VendorSnapshot {
            id: name,
            project_id: req.project_id.clone(),
            label: req.label.clone(),
            created_at: None,
            state: ResourceState::Ready,
        })
    }

    /// A snapshot database, under the project dbops recorded in its comment.
    async fn get_snapshot(
        &self,
        _project_id: &str,
        id: &str,
    ) -> Result<VendorSnapshot, ProviderError> {
        let db = self.read("snapshot.get", id).await?;
        Ok(VendorSnapshot {
            id: id.to_string(),
            project_id: db.parent().unwrap_or_default().to_string(),
            label: None,
            created_at: None,
            state: ResourceState::Ready,
        })
    }
}

#[async_trait]
impl SnapshotDeletion for PostgresProvider {
    async fn delete_snapshot(&self, _project_id: &str, id: &str) -> Result<(), ProviderError> {
        self.drop("snapshot.delete", id).await
    }
}

#[async_trait]
impl CredentialApi for PostgresProvider {
    /// Sets the new password at once; the Secret is written only after this
    /// answers, as for every provider.
    async fn rotate_credentials(
        &self,
        target: &RotationTarget,
        proposed: &Password,
        _idempotency_key: &str,
    ) -> Result<RotationProgress, ProviderError> {
        const OPERATION: &str = "credentials.rotate";
        let id = match target {
            RotationTarget::Project { id } | RotationTarget::Branch { id, .. } => id,
        };
        let db = self.read(OPERATION, id).await?;
        self.server
            .set_password(&db, proposed)
            .await
            .map_err(|e| failed(OPERATION, e))?;
        Ok(RotationProgress::Done {
            connection_uri: None,
            pooled_uri: None,
            password: Some(proposed.clone()),
        })
    }

    async fn rotation_status(
        &self,
        _target: &RotationTarget,
        job_id: &str,
    ) -> Result<RotationProgress, ProviderError> {
        Err(crate::providers::base::nothing_to_poll(
            API,
            Operation::CredentialRotate,
            job_id,
        ))
    }
}

#[async_trait]
impl crate::providers::base::SqlApi for PostgresProvider {
    fn channel(&self) -> crate::providers::base::SqlChannel {
        crate::providers::base::SqlChannel::Server
    }
    fn returns_rows(&self) -> bool {
        true
    }
    /// Only in a database dbops made (it carries a marker): never in one
    /// someone else made on the same server.
    async fn run_sql(
        &self,
        database_id: &str,
        sql: &str,
    ) -> Result<crate::providers::base::Rows, ProviderError> {
        const OPERATION: &str = "role.manage";
        let db = self.read(OPERATION, database_id).await?;
        if db.marker().is_none() {
            return Err(failed(
                OPERATION,
                SqlError::Conflict {
                    object: "database",
                    name: db.name,
                },
            ));
        }
        self.server
            .run_in(&db.name, sql)
            .await
            .map(|answer| answer.rows)
            .map_err(|e| failed(OPERATION, e))
    }
}

impl Provider for PostgresProvider {
    fn api(&self) -> ProviderApi {
        API
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
    fn branch_reset(&self) -> Option<&dyn BranchReset> {
        Some(self)
    }
    fn needs_operator_password(&self) -> bool {
        true
    }
    /// Database names are server-wide, so branch names carry the resource's
    /// namespace and UID like project names.
    fn default_branch_name(&self, namespace: &str, name: &str, uid: &str) -> String {
        generated_name(namespace, name, uid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_names_fit_and_differ_per_key() {
        let project = "x".repeat(63);
        let a = snapshot_name(&project, "dbops-uid-a-snapshot-create");
        let b = snapshot_name(&project, "dbops-uid-b-snapshot-create");
        assert_ne!(a, b);
        assert!(a.len() <= crate::providers::base::MAX_GENERATED_NAME, "{a}");
        assert!(snapshot_name("team-shop-1234", "k").starts_with("team-shop-1234-snap-"));
    }
}
