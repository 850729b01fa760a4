//! `DatabaseProject`: create (or adopt, or restore from a snapshot) a vendor
//! project, write its connection Secret, report kstatus conditions, and delete
//! or retain it. The steps are the shared [`pipeline`]; this module says what
//! is particular to projects.

use async_trait::async_trait;
use kube::ResourceExt;
use kube::api::Api;
use kube::core::DeserializeGuard;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;

use crate::api::v1alpha1::{
    ByokCredential, ClaimedObject, CredentialRotationSpec, CredentialRotationStatus,
    DatabaseProject, DatabaseProjectStatus, DatabaseSnapshot, DeletionPolicy, ProjectMode,
    RestoreSource,
};
use crate::controllers::pipeline::{
    self, Connected, Created, Obtained, ParentProject, VendorKind, idempotency_key,
};
use crate::controllers::protection::tenancy::{self, Adoption};
use crate::controllers::protection::{ProviderHandle, claims};
use crate::controllers::runtime::conditions::{Health, reason};
use crate::controllers::runtime::reconciler::{Lifecycle, Managed, apply_status};
use crate::controllers::runtime::{Context, KubeCall, Scope, VendorCall, dependents, watch};
use crate::controllers::secret;
use crate::providers::{
    Operation, Password, ProjectRequest, Provider, ProviderError, RestoreProgress, RestoreRequest,
    RotationTarget, VendorProject,
};

/// Name of this controller in metrics and logs.
pub const CONTROLLER: &str = "databaseproject";

pub use crate::controllers::pipeline::error::{Error, Object};

crate::impl_managed!(DatabaseProject, DatabaseProjectStatus, CONTROLLER, {
    fn derive_status(&self, status: &mut DatabaseProjectStatus) {
        status.deletion_policy = Some(self.spec.effective_deletion_policy());
    }
});

/// Name of the project at the vendor: `spec.projectName`, else the provider's
/// default for this resource (unique to it: see [`crate::providers::generated_name`]).
pub fn vendor_project_name(project: &DatabaseProject, provider: &dyn Provider) -> String {
    match &project.spec.project_name {
        Some(name) => name.clone(),
        None => provider.default_project_name(
            &project.namespace().unwrap_or_default(),
            &project.name_any(),
            project.metadata.uid.as_deref().unwrap_or_default(),
        ),
    }
}

/// Name of the connection Secret: `spec.writeConnectionSecretTo.name`, else `<name>-connection`.
pub fn connection_secret_name(project: &DatabaseProject) -> String {
    match &project.spec.write_connection_secret_to {
        Some(target) => target.name.clone(),
        None => format!("{}-connection", project.name_any()),
    }
}

/// The vendor create request for this resource.
pub fn project_request(
    project: &DatabaseProject,
    provider: &dyn Provider,
    db_password: Option<Password>,
    resumed: bool,
) -> ProjectRequest {
    let spec = &project.spec;
    let name = vendor_project_name(project, provider);
    ProjectRequest {
        db_password,
        resumed: pipeline::resume_of(project, resumed, &name),
        name,
        vendor: spec.vendor.clone(),
        region: spec.region.clone(),
        plan: spec.plan.clone(),
        mode: spec.mode.map(|m| match m {
            ProjectMode::Managed => "managed".to_string(),
            ProjectMode::Byok => "byok".to_string(),
        }),
        postgres_version: spec.postgres_version.clone(),
    }
}

/// The restore request for this resource, from vendor snapshot `snapshot_id`.
pub fn restore_request(
    project: &DatabaseProject,
    provider: &dyn Provider,
    snapshot_id: &str,
    resumed: bool,
) -> RestoreRequest {
    let name = vendor_project_name(project, provider);
    RestoreRequest {
        snapshot_id: snapshot_id.to_string(),
        resumed: pipeline::resume_of(project, resumed, &name),
        new_name: Some(name),
        db_password: None,
    }
}

/// `previous` updated with what the vendor reports of `vendor` (pure).
pub fn status_with_vendor(
    previous: &DatabaseProjectStatus,
    vendor: &VendorProject,
) -> DatabaseProjectStatus {
    DatabaseProjectStatus {
        project_id: Some(vendor.id.clone()),
        project_name: Some(vendor.name.clone())
            .filter(|n| !n.is_empty())
            .or(previous.project_name.clone()),
        region: vendor.region.clone().or(previous.region.clone()),
        created_at: vendor.created_at.clone().or(previous.created_at.clone()),
        ..previous.clone()
    }
}

/// The snapshot a restore starts from: its vendor id, or why to wait for it.
enum SnapshotToRestore {
    Found(String),
    Waiting(Health),
}

#[async_trait]
impl Lifecycle for DatabaseProject {
    type Error = Error;

    fn defer_finalizer(&self) -> bool {
        pipeline::defers_finalizer(self)
    }

    async fn apply(&self, api: &Api<Self>, ctx: &Context) -> Result<Action, Error> {
        // A pass that may send a first create reads the provider fresh.
        let namespace = self.namespace().ok_or(Error::InvalidObject)?;
        let fresh = pipeline::defers_finalizer(self);
        let provider = ctx
            .provider_in(&namespace, &self.spec.provider_ref, fresh)
            .await?;
        let mut previous = self.current_status();
        match pipeline::obtain(self, api, ctx, &mut previous, &provider, None).await? {
            Obtained::Usable(vendor, created) => {
                pipeline::connect(
                    self, api, ctx, &*provider, &previous, None, &vendor, created,
                )
                .await
            }
            Obtained::Requeue(action) => Ok(action),
        }
    }

    /// Its `DatabaseRole`s go first: they drop their roles through this
    /// project's provider, while the database is still there.
    async fn cleanup(&self, _api: &Api<Self>, ctx: &Context) -> Result<Action, Error> {
        let name = self.name_any();
        super::role::roles_first(self, ctx, super::role::RoleParent::Project(&name)).await?;
        pipeline::cleanup(self, ctx).await
    }
}

#[async_trait]
impl VendorKind for DatabaseProject {
    const OBJECT: Object = Object::Project;
    const DELETE: Operation = Operation::ProjectDelete;
    const CLAIM: ClaimedObject = ClaimedObject::Project;
    type Vendor = VendorProject;

    fn recorded_id(status: &DatabaseProjectStatus) -> Option<&str> {
        status.project_id.as_deref()
    }
    fn create_requested(status: &DatabaseProjectStatus) -> bool {
        status.create_requested
    }
    fn set_create_requested(status: &mut DatabaseProjectStatus, requested: bool) {
        status.create_requested = requested;
    }
    fn adopted(status: &DatabaseProjectStatus) -> bool {
        status.adopted
    }
    fn set_adopted(status: &mut DatabaseProjectStatus, adopted: bool) {
        status.adopted = adopted;
    }
    fn external_id(&self) -> Option<&str> {
        self.spec.external_id.as_deref()
    }
    fn adoption(&self) -> Option<Adoption> {
        tenancy::project_adoption(self)
    }
    fn deletion_policy(&self) -> DeletionPolicy {
        self.spec.effective_deletion_policy()
    }
    fn with_vendor(
        &self,
        status: &DatabaseProjectStatus,
        _parent: Option<&ParentProject>,
        vendor: &VendorProject,
    ) -> DatabaseProjectStatus {
        status_with_vendor(status, vendor)
    }

    async fn read(
        provider: &dyn Provider,
        _parent: Option<&ParentProject>,
        id: &str,
    ) -> Result<VendorProject, ProviderError> {
        provider.get_project(id).await
    }

    /// Creates the vendor project, or restores it from a snapshot, once a
    /// BYOK credential and a snapshot to restore (when named) are Ready.
    async fn create(
        &self,
        api: &Api<Self>,
        previous: &mut DatabaseProjectStatus,
        provider: &ProviderHandle,
        _parent: Option<&ParentProject>,
        ctx: &Context,
    ) -> Result<Created<VendorProject>, Error> {
        if let Some(health) = self.byok_gate(ctx).await? {
            return Ok(Created::Waiting {
                health,
                poll: false,
            });
        }
        let snapshot_id = match &self.spec.restore_from {
            None => None,
            Some(source) => match self
                .snapshot_to_restore(source, previous, provider, ctx)
                .await?
            {
                SnapshotToRestore::Found(id) => Some(id),
                SnapshotToRestore::Waiting(health) => {
                    return Ok(Created::Waiting {
                        health,
                        poll: false,
                    });
                }
            },
        };
        let (operation, message) = match &snapshot_id {
            Some(id) => (
                Operation::SnapshotRestore,
                format!(
                    "restoring snapshot {id} into a new project at {}",
                    provider.api()
                ),
            ),
            None => (
                Operation::ProjectCreate,
                format!("creating the project at {}", provider.api()),
            ),
        };
        if !pipeline::create_sent(self, previous) {
            // Saved with createRequested, so a replay restores the same snapshot.
            previous.restored_from_snapshot_id = snapshot_id.clone();
        }
        let resumed =
            pipeline::begin_create(self, api, ctx, provider, None, previous, operation, message)
                .await?;
        let progress = match previous.restore_handle.clone() {
            Some(handle) => restore_status(&**provider, &handle).await?,
            None => {
                let call = Call {
                    replay: false,
                    resumed,
                };
                self.call_create(snapshot_id.as_deref(), &**provider, ctx, call)
                    .await?
            }
        };
        self.created(api, previous, progress, snapshot_id.as_deref())
            .await
    }

    async fn cleanup_target(
        &self,
        ctx: &Context,
        _status: &DatabaseProjectStatus,
        left: &str,
    ) -> Result<Option<(ProviderHandle, Option<ParentProject>)>, Error> {
        let provider = ctx
            .provider_for_cleanup(self, &self.spec.provider_ref, left)
            .await?;
        Ok(provider.map(|p| (p, None)))
    }

    /// Replays the create (or restore) whose result was never saved, to learn the id.
    async fn replay_create(
        &self,
        status: &DatabaseProjectStatus,
        provider: &dyn Provider,
        _parent: Option<&ParentProject>,
        ctx: &Context,
    ) -> Result<Option<String>, Error> {
        let progress = match &status.restore_handle {
            Some(handle) => restore_status(provider, handle).await?,
            None => {
                let snapshot_id = status.restored_from_snapshot_id.as_deref();
                let call = Call {
                    replay: true,
                    resumed: true,
                };
                self.call_create(snapshot_id, provider, ctx, call).await?
            }
        };
        match progress {
            RestoreProgress::Done(vendor) => Ok(Some(vendor.id)),
            RestoreProgress::Failed(_) => Ok(None),
            RestoreProgress::Pending { handle, .. } => Err(Error::RestoreInProgress { handle }),
        }
    }

    async fn delete(
        provider: &dyn Provider,
        _parent: Option<&ParentProject>,
        id: &str,
    ) -> Result<(), ProviderError> {
        provider.delete_project(id).await
    }
}

impl Connected for DatabaseProject {
    fn secret_name(&self) -> String {
        connection_secret_name(self)
    }
    fn recorded_secret(status: &DatabaseProjectStatus) -> Option<&str> {
        status.connection_secret_name.as_deref()
    }
    fn set_secret(status: &mut DatabaseProjectStatus, name: &str) {
        status.connection_secret_name = Some(name.to_string());
        status.binding = Some(crate::api::v1alpha1::Binding {
            name: name.to_string(),
        });
    }
    fn connection_target(&self) -> Option<&crate::api::v1alpha1::ConnectionSecretTarget> {
        self.spec.write_connection_secret_to.as_ref()
    }
    fn rotation_spec(&self) -> Option<&CredentialRotationSpec> {
        self.spec.credential_rotation.as_ref()
    }
    fn rotation(status: &DatabaseProjectStatus) -> Option<&CredentialRotationStatus> {
        status.credential_rotation.as_ref()
    }
    fn rotation_mut(status: &mut DatabaseProjectStatus) -> &mut Option<CredentialRotationStatus> {
        &mut status.credential_rotation
    }
    fn rotation_target(vendor: &VendorProject, _parent: Option<&ParentProject>) -> RotationTarget {
        RotationTarget::Project {
            id: vendor.id.clone(),
        }
    }
    fn ready_message(
        vendor: &VendorProject,
        _parent: Option<&ParentProject>,
        secret: &str,
    ) -> String {
        format!(
            "project {} is ready; connection details in Secret {secret}",
            vendor.id
        )
    }
}

/// How a create call is made: as a `replay` during cleanup (only to learn
/// what a lost create made), and whether it is `resumed` (see
/// [`crate::providers::ProjectRequest::resumed`]).
#[derive(Clone, Copy)]
struct Call {
    replay: bool,
    resumed: bool,
}

/// Polls restore job `handle`.
async fn restore_status(provider: &dyn Provider, handle: &str) -> Result<RestoreProgress, Error> {
    let progress = provider
        .restore_status(handle)
        .await
        .map_err(|e| VendorCall::new(format!("reading restore {handle}"), e))?;
    Ok(progress)
}

impl DatabaseProject {
    /// What a create or restore call came to. A restore still running saves
    /// its handle, to be polled.
    async fn created(
        &self,
        api: &Api<Self>,
        previous: &mut DatabaseProjectStatus,
        progress: RestoreProgress,
        snapshot_id: Option<&str>,
    ) -> Result<Created<VendorProject>, Error> {
        match progress {
            RestoreProgress::Done(vendor) => {
                let note = match snapshot_id {
                    Some(id) => format!("restored snapshot {id} into vendor project {}", vendor.id),
                    None => format!("created vendor project {}", vendor.id),
                };
                Ok(Created::New { vendor, note })
            }
            RestoreProgress::Failed(state) => Err(Error::VendorFailed {
                object: Object::Project,
                id: previous.restore_handle.clone().unwrap_or_default(),
                state,
            }),
            RestoreProgress::Pending { handle, state } => {
                if previous.restore_handle.as_deref() != Some(handle.as_str()) {
                    let mut status = previous.clone();
                    status.restore_handle = Some(handle.clone());
                    apply_status(api, self, &status)
                        .await
                        .map_err(KubeCall::Status)?;
                    *previous = status;
                }
                Ok(Created::Waiting {
                    health: Health::progressing(
                        reason::WAITING_FOR_VENDOR,
                        format!("the vendor is restoring (restore {handle} is {state})"),
                    ),
                    poll: true,
                })
            }
        }
    }

    /// The create or restore call itself, with this resource's idempotency key.
    /// An asynchronous restore answers `Pending` with a handle to poll. A
    /// `replay` (during cleanup) writes nothing to Kubernetes.
    async fn call_create(
        &self,
        snapshot_id: Option<&str>,
        provider: &dyn Provider,
        ctx: &Context,
        call: Call,
    ) -> Result<RestoreProgress, Error> {
        match snapshot_id {
            None => {
                let key = idempotency_key(self, "project-create")?;
                let password = pipeline::operator_password(
                    self,
                    &connection_secret_name(self),
                    provider,
                    ctx,
                    call.replay,
                )
                .await?;
                let request = project_request(self, provider, password, call.resumed);
                provider
                    .create_project(&request, &key)
                    .await
                    .map(RestoreProgress::Done)
                    .map_err(|e| VendorCall::new("creating the project", e).into())
            }
            Some(snapshot_id) => {
                let key = idempotency_key(self, "project-restore")?;
                let password = pipeline::operator_password(
                    self,
                    &connection_secret_name(self),
                    provider,
                    ctx,
                    call.replay,
                )
                .await?;
                let mut request = restore_request(self, provider, snapshot_id, call.resumed);
                request.db_password = password;
                provider
                    .restore_snapshot(&request, &key)
                    .await
                    .map_err(|e| {
                        let action = format!("restoring snapshot {snapshot_id} into a new project");
                        VendorCall::new(action, e).into()
                    })
            }
        }
    }

    /// With `mode: byok`, the reason to wait until the named `ByokCredential` is
    /// Ready (for the same vendor and provider); `None` when there is none.
    async fn byok_gate(&self, ctx: &Context) -> Result<Option<Health>, Error> {
        if self.spec.mode != Some(ProjectMode::Byok) {
            return Ok(None);
        }
        let Some(credential_ref) = &self.spec.byok_credential_ref else {
            return Err(Error::ByokMismatch {
                credential: String::new(),
                problem: "is required with mode: byok (spec.byokCredentialRef)".to_string(),
            });
        };
        let namespace = self.namespace().ok_or(Error::InvalidObject)?;
        let credentials: Api<ByokCredential> = Api::namespaced(ctx.client.clone(), &namespace);
        let name = &credential_ref.name;
        let waiting = |message: String| {
            Ok(Some(Health::progressing(
                reason::WAITING_FOR_CREDENTIAL,
                message,
            )))
        };
        let Some(credential) = credentials.get_opt(name).await.map_err(KubeCall::Read)? else {
            return waiting(format!("ByokCredential {name} does not exist yet"));
        };
        if let Some(problem) = self.byok_mismatch(&credential) {
            return Err(Error::ByokMismatch {
                credential: name.clone(),
                problem,
            });
        }
        if !credential.is_ready() {
            return waiting(format!("waiting for ByokCredential {name} to be Ready"));
        }
        Ok(None)
    }

    /// What makes `credential` unusable for this project (pure), if anything.
    fn byok_mismatch(&self, credential: &ByokCredential) -> Option<String> {
        if self.spec.vendor.as_deref() != Some(credential.spec.vendor.as_str()) {
            return Some(format!(
                "is for vendor {:?}, but this project pins vendor {:?}",
                credential.spec.vendor,
                self.spec.vendor.as_deref().unwrap_or_default()
            ));
        }
        if credential.spec.provider_ref != self.spec.provider_ref {
            return Some(format!(
                "is registered through provider {:?}, not {:?}",
                credential.spec.provider_ref.name, self.spec.provider_ref.name
            ));
        }
        None
    }

    /// The vendor snapshot id to restore, or the reason to wait for it.
    async fn snapshot_to_restore(
        &self,
        source: &RestoreSource,
        previous: &DatabaseProjectStatus,
        provider: &ProviderHandle,
        ctx: &Context,
    ) -> Result<SnapshotToRestore, Error> {
        if let Some(id) = &previous.restored_from_snapshot_id {
            return Ok(SnapshotToRestore::Found(id.clone()));
        }
        if let Some(id) = &source.snapshot_id {
            // Adoption (checked with the provider before this): and even
            // then, never a snapshot another namespace's resource holds.
            self.check_foreign_snapshot(provider, id, ctx).await?;
            return Ok(SnapshotToRestore::Found(id.clone()));
        }
        let Some(snapshot_ref) = &source.snapshot_ref else {
            return Err(Error::InvalidObject);
        };
        let namespace = self.namespace().ok_or(Error::InvalidObject)?;
        let snapshots: Api<DatabaseSnapshot> = Api::namespaced(ctx.client.clone(), &namespace);
        let name = &snapshot_ref.name;
        let Some(snapshot) = snapshots.get_opt(name).await.map_err(KubeCall::Read)? else {
            let message = format!("DatabaseSnapshot {name} does not exist yet");
            return Ok(waiting_for_snapshot(message));
        };
        let status = snapshot.status.clone().unwrap_or_default();
        let (Some(snapshot_id), true) = (status.snapshot_id, snapshot.is_ready()) else {
            let message = format!("waiting for DatabaseSnapshot {name} to be Ready");
            return Ok(waiting_for_snapshot(message));
        };
        if let Some(snapshot_provider) = status.provider_name
            && snapshot_provider != self.spec.provider_ref.name
        {
            return Err(Error::SnapshotProviderMismatch {
                snapshot: name.clone(),
                snapshot_provider,
                provider: self.spec.provider_ref.name.clone(),
            });
        }
        Ok(SnapshotToRestore::Found(snapshot_id))
    }
}

impl DatabaseProject {
    /// Refuses vendor snapshot `id` when a resource of another namespace
    /// holds its claim: restoring it would copy that namespace's data.
    async fn check_foreign_snapshot(
        &self,
        provider: &ProviderHandle,
        id: &str,
        ctx: &Context,
    ) -> Result<(), Error> {
        let key = provider.claim_key(ClaimedObject::Snapshot, id);
        let holder = ctx.claim_holder(&key).await.map_err(KubeCall::Read)?;
        match holder {
            Some(holder) if Some(&holder.namespace) != self.metadata.namespace.as_ref() => {
                Err(claims::ClaimError::Taken {
                    object: "snapshot",
                    id: id.to_string(),
                }
                .into())
            }
            _ => Ok(()),
        }
    }
}

fn waiting_for_snapshot(message: String) -> SnapshotToRestore {
    SnapshotToRestore::Waiting(Health::progressing(reason::WAITING_FOR_SNAPSHOT, message))
}

/// The `DatabaseProject` controller, ready to run with
/// [`drive`](crate::controllers::runtime::drive). Providers
/// and snapshots are watched, so a project waiting for either starts at once.
pub fn controller(
    ctx: &Context,
    scope: &Scope,
    watcher_config: watcher::Config,
) -> Controller<DeserializeGuard<DatabaseProject>> {
    let client = ctx.client.clone();
    let controller = watch::lean_controller(
        scope.api::<DeserializeGuard<DatabaseProject>>(client.clone()),
        watcher_config.clone(),
    );
    let controller_store = controller.store();
    let by_provider = dependents(controller.store(), |p: &DatabaseProject| {
        Some(p.spec.provider_ref.name.as_str())
    });
    let by_snapshot = dependents(controller.store(), |p: &DatabaseProject| {
        p.spec
            .restore_from
            .as_ref()?
            .snapshot_ref
            .as_ref()
            .map(|r| r.name.as_str())
    });
    let by_credential = dependents(controller.store(), |p: &DatabaseProject| {
        p.spec.byok_credential_ref.as_ref().map(|r| r.name.as_str())
    });
    controller
        .owns_stream(secret::owned_secret_triggers(
            scope.api(client.clone()),
            ctx.secret_echoes.clone(),
        ))
        .watches_stream(watch::provider_triggers(ctx), by_provider)
        .watches_stream(
            watch::namespace_triggers(client.clone(), scope),
            watch::in_namespace(controller_store.clone()),
        )
        .watches(
            scope.api::<DeserializeGuard<DatabaseSnapshot>>(client.clone()),
            watcher_config.clone(),
            by_snapshot,
        )
        .watches(
            scope.api::<DeserializeGuard<ByokCredential>>(client),
            watcher_config,
            by_credential,
        )
}
