//! `DatabaseBranch`: a copy-on-write branch of a `DatabaseProject`, created once
//! the project is Ready, with its own connection Secret. The steps are the
//! shared [`pipeline`]; this module says what is particular to branches.

use async_trait::async_trait;
use kube::ResourceExt;
use kube::api::Api;
use kube::core::DeserializeGuard;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;

use super::expiry;
use crate::api::v1alpha1::{
    ClaimedObject, CredentialRotationSpec, CredentialRotationStatus, DatabaseBranch,
    DatabaseBranchStatus, DatabaseProject, DeletionPolicy, ProviderRef,
};
use crate::controllers::pipeline::parent::{
    Dereferenced, child_cleanup_target, dereference, record_parent, recorded_parent,
    replay_child_create,
};
use crate::controllers::pipeline::{
    self, Connected, Created, Obtained, ParentProject, VendorKind, idempotency_key, project_id,
};
use crate::controllers::protection::ProviderHandle;
use crate::controllers::protection::tenancy::{self, Adoption};
use crate::controllers::runtime::conditions::{Health, reason};
use crate::controllers::runtime::reconciler::{Lifecycle, Managed};
use crate::controllers::runtime::{Context, KubeCall, Scope, VendorCall, dependents, watch};
use crate::controllers::secret;
use crate::providers::{
    BranchRequest, Operation, Provider, ProviderError, Resume, RotationTarget, VendorBranch,
};

/// Name of this controller in metrics and logs.
pub const CONTROLLER: &str = "databasebranch";

pub use crate::controllers::pipeline::error::{Error, Object};

crate::impl_managed!(DatabaseBranch, DatabaseBranchStatus, CONTROLLER, {
    fn derive_status(&self, status: &mut DatabaseBranchStatus) {
        expiry::derive_status(self, status);
        status.deletion_policy = Some(self.spec.effective_deletion_policy());
    }
    fn due_by(&self) -> Option<k8s_openapi::jiff::Timestamp> {
        let expiry = expiry::of(self).ok().flatten();
        [expiry, super::reset::due(self)]
            .into_iter()
            .flatten()
            .min()
    }
});

/// Name of the branch at the vendor: `spec.branchName`, else the provider's
/// default for this resource (its name, or a unique name where branch names
/// are account-wide).
pub fn vendor_branch_name(branch: &DatabaseBranch, provider: &dyn Provider) -> String {
    match &branch.spec.branch_name {
        Some(name) => name.clone(),
        None => provider.default_branch_name(
            &branch.namespace().unwrap_or_default(),
            &branch.name_any(),
            branch.metadata.uid.as_deref().unwrap_or_default(),
        ),
    }
}

/// Name of the connection Secret: `spec.writeConnectionSecretTo.name`, else `<name>-connection`.
pub fn connection_secret_name(branch: &DatabaseBranch) -> String {
    match &branch.spec.write_connection_secret_to {
        Some(target) => target.name.clone(),
        None => format!("{}-connection", branch.name_any()),
    }
}

/// The vendor create request for this branch of vendor project `project_id`,
/// copied from vendor branch `from_branch` (the project's default when `None`).
pub fn branch_request(
    branch: &DatabaseBranch,
    provider: &dyn Provider,
    project_id: &str,
    from_branch: Option<String>,
    resumed: bool,
) -> BranchRequest {
    let branch_name = vendor_branch_name(branch, provider);
    // A branch is made inside its project, which a resource of this same
    // namespace holds the claim of: nobody of another namespace can have made
    // anything under this name in it through dbops, and a second branch of
    // this namespace taking the same vendor branch is stopped by its claim.
    // So a resumed branch create may take what it finds under its name.
    let resumed = if resumed {
        Resume::OwnName
    } else {
        Resume::First
    };
    BranchRequest {
        project_id: project_id.to_string(),
        resumed,
        branch_name,
        from_branch,
        db_password: None,
        schema_only: branch
            .spec
            .data
            .as_ref()
            .is_some_and(|d| d.mode == crate::api::v1alpha1::DataMode::SchemaOnly),
    }
}

/// What [`DatabaseBranch::source_branch`] found.
pub enum SourceBranch {
    /// Copy from this vendor branch (`None`: the project's default).
    Found(Option<String>),
    /// The branch named in `fromBranchRef` is not Ready yet.
    Waiting(String),
}

impl DatabaseBranch {
    /// The vendor branch to copy from: `spec.fromBranch` as written (an
    /// adoption, allowed only where the provider admits it: checked before),
    /// or the vendor name of the `DatabaseBranch` `spec.fromBranchRef` names,
    /// which must be a branch of the same project, in this namespace.
    async fn source_branch(
        &self,
        ctx: &Context,
        provider: &dyn Provider,
        parent: Option<&ParentProject>,
    ) -> Result<SourceBranch, Error> {
        if let Some(raw) = &self.spec.from_branch {
            return Ok(SourceBranch::Found(Some(raw.clone())));
        }
        let Some(reference) = &self.spec.from_branch_ref else {
            return Ok(SourceBranch::Found(None));
        };
        let namespace = self.namespace().ok_or(Error::InvalidObject)?;
        let api: Api<DatabaseBranch> = Api::namespaced(ctx.client.clone(), &namespace);
        let name = &reference.name;
        let problem = |problem: &str| Error::FromBranchRef {
            name: name.clone(),
            problem: problem.to_string(),
        };
        let Some(source) = api.get_opt(name).await.map_err(KubeCall::Read)? else {
            return Ok(SourceBranch::Waiting(format!(
                "DatabaseBranch {name} named in spec.fromBranchRef does not exist yet"
            )));
        };
        if source.spec.project_ref != self.spec.project_ref {
            return Err(problem(
                "is a branch of another DatabaseProject; a branch can only be copied from a branch of its own project",
            ));
        }
        if source.metadata.uid == self.metadata.uid {
            return Err(problem("is this branch itself"));
        }
        let status = source.status.clone().unwrap_or_default();
        let same_project = status.project_id.as_deref() == parent.map(|p| p.project_id.as_str());
        if !source.is_ready() || status.branch_id.is_none() || !same_project {
            return Ok(SourceBranch::Waiting(format!(
                "waiting for DatabaseBranch {name} named in spec.fromBranchRef to be Ready"
            )));
        }
        // A reset may have moved it to a vendor branch of another name.
        let name = match status.branch_name {
            Some(name) => name,
            None => vendor_branch_name(&source, provider),
        };
        Ok(SourceBranch::Found(Some(name)))
    }
}

#[async_trait]
impl Lifecycle for DatabaseBranch {
    type Error = Error;

    fn defer_finalizer(&self) -> bool {
        pipeline::defers_finalizer(self)
    }

    async fn apply(&self, api: &Api<Self>, ctx: &Context) -> Result<Action, Error> {
        // An expired branch goes, whatever state it is in.
        if let Some(at) = expiry::of(self)?
            && expiry::expired(at, k8s_openapi::jiff::Timestamp::now())
        {
            return expiry::expire(self, api, ctx, at).await;
        }
        let parent = match dereference(self, api, ctx).await? {
            Dereferenced::Parent(parent) => parent,
            Dereferenced::Requeue(action) => return Ok(action),
        };
        let provider_ref = ProviderRef {
            name: parent.provider_name.clone(),
        };
        // A pass that may send a first create reads the provider fresh.
        let namespace = self.namespace().ok_or(Error::InvalidObject)?;
        let fresh = pipeline::defers_finalizer(self);
        let provider = ctx.provider_in(&namespace, &provider_ref, fresh).await?;
        let mut previous = self.current_status();
        let parent = Some(&parent);
        match pipeline::obtain(self, api, ctx, &mut previous, &provider, parent).await? {
            Obtained::Usable(mut vendor, created) => {
                // A reset from the parent asked for, or one under way.
                if super::reset::wanted(self, &previous) {
                    let source = match self.source_branch(ctx, &*provider, parent).await? {
                        SourceBranch::Found(from) => super::reset::Source::Found(from),
                        SourceBranch::Waiting(_) => super::reset::Source::Waiting,
                    };
                    let how = (source, branch_request as super::reset::MakeRequest);
                    let reset = super::reset::apply(
                        self,
                        api,
                        ctx,
                        &provider,
                        &mut previous,
                        parent,
                        &mut vendor,
                        how,
                    );
                    if let Some(action) = Box::pin(reset).await? {
                        return Ok(action);
                    }
                }
                // What spec.data says the branch holds, before anyone can connect.
                super::preview_data::apply(
                    self,
                    api,
                    ctx,
                    &*provider,
                    &mut previous,
                    parent,
                    &mut vendor,
                    &connection_secret_name(self),
                )
                .await?;
                let action = pipeline::connect(
                    self, api, ctx, &*provider, &previous, parent, &vendor, created,
                )
                .await?;
                // The Secret names the reset's new branch: the old one goes.
                if previous
                    .reset
                    .as_ref()
                    .is_some_and(|r| r.retiring.is_some())
                {
                    let current = api
                        .get_status(&self.name_any())
                        .await
                        .map_err(KubeCall::Read)?;
                    super::reset::finish(&current, api, ctx, &provider, parent).await?;
                }
                Ok(action)
            }
            Obtained::Requeue(action) => Ok(action),
        }
    }

    /// Its `DatabaseRole`s go first: they drop their roles through this
    /// branch's provider, while the database is still there.
    async fn cleanup(&self, _api: &Api<Self>, ctx: &Context) -> Result<Action, Error> {
        let name = self.name_any();
        super::role::roles_first(self, ctx, super::role::RoleParent::Branch(&name)).await?;
        super::reset::cleanup(self, ctx, branch_request).await?;
        pipeline::cleanup(self, ctx).await
    }
}

#[async_trait]
impl VendorKind for DatabaseBranch {
    const OBJECT: Object = Object::Branch;
    const DELETE: Operation = Operation::BranchDelete;
    const CLAIM: ClaimedObject = ClaimedObject::Branch;
    type Vendor = VendorBranch;

    fn recorded_id(status: &DatabaseBranchStatus) -> Option<&str> {
        status.branch_id.as_deref()
    }
    fn create_requested(status: &DatabaseBranchStatus) -> bool {
        status.create_requested
    }
    fn set_create_requested(status: &mut DatabaseBranchStatus, requested: bool) {
        status.create_requested = requested;
    }
    fn adopted(status: &DatabaseBranchStatus) -> bool {
        status.adopted
    }
    fn set_adopted(status: &mut DatabaseBranchStatus, adopted: bool) {
        status.adopted = adopted;
    }
    fn external_id(&self) -> Option<&str> {
        self.spec.external_id.as_deref()
    }
    fn adoption(&self) -> Option<Adoption> {
        tenancy::branch_adoption(self)
    }
    fn deletion_policy(&self) -> DeletionPolicy {
        self.spec.effective_deletion_policy()
    }
    fn recorded_parent(&self, status: &DatabaseBranchStatus) -> Option<ParentProject> {
        let project = &self.spec.project_ref.name;
        let (provider, project_id) = (status.provider_name.as_ref(), status.project_id.as_ref());
        Some(recorded_parent(project, provider, project_id))
    }
    fn with_vendor(
        &self,
        status: &DatabaseBranchStatus,
        parent: Option<&ParentProject>,
        vendor: &VendorBranch,
    ) -> DatabaseBranchStatus {
        let mut status = status.clone();
        status.branch_id = Some(vendor.id.clone());
        record_parent(&mut status.provider_name, &mut status.project_id, parent);
        status
    }
    fn record_for_create(status: &mut DatabaseBranchStatus, parent: Option<&ParentProject>) {
        record_parent(&mut status.provider_name, &mut status.project_id, parent);
    }

    async fn read(
        provider: &dyn Provider,
        parent: Option<&ParentProject>,
        id: &str,
    ) -> Result<VendorBranch, ProviderError> {
        provider.get_branch(project_id(parent), id).await
    }

    async fn create(
        &self,
        api: &Api<Self>,
        previous: &mut DatabaseBranchStatus,
        provider: &ProviderHandle,
        parent: Option<&ParentProject>,
        ctx: &Context,
    ) -> Result<Created<VendorBranch>, Error> {
        // Nothing is copied that spec.data could not then be applied to.
        super::preview_data::supported(self, &**provider)?;
        let from_branch = match self.source_branch(ctx, &**provider, parent).await? {
            SourceBranch::Found(from) => from,
            SourceBranch::Waiting(message) => {
                return Ok(Created::Waiting {
                    health: Health::progressing(reason::WAITING_FOR_BRANCH, message),
                    poll: false,
                });
            }
        };
        let message = format!("creating the branch at {}", provider.api());
        let resumed = pipeline::begin_create(
            self,
            api,
            ctx,
            provider,
            parent,
            previous,
            Operation::BranchCreate,
            message,
        )
        .await?;
        let key = idempotency_key(self, "branch-create")?;
        let mut request =
            branch_request(self, &**provider, project_id(parent), from_branch, resumed);
        request.db_password = if super::preview_data::sets_password_after(self, &**provider) {
            // Kept nowhere: the password is set again once spec.data is
            // applied, so no Secret opens the copy before that.
            Some(crate::providers::Password::generate())
        } else {
            pipeline::operator_password(
                self,
                &connection_secret_name(self),
                &**provider,
                ctx,
                false,
            )
            .await?
        };
        let vendor = provider
            .create_branch(&request, &key)
            .await
            .map_err(|e| VendorCall::new("creating the branch", e))?;
        let note = format!("created vendor branch {}", vendor.id);
        Ok(Created::New { vendor, note })
    }

    /// Through its parent project's provider.
    async fn cleanup_target(
        &self,
        ctx: &Context,
        status: &DatabaseBranchStatus,
        _left: &str,
    ) -> Result<Option<(ProviderHandle, Option<ParentProject>)>, Error> {
        child_cleanup_target(self, ctx, status).await
    }

    /// The create may have reached the vendor before the id was saved: replay
    /// it with the same key to learn the id. A gone project means the branch
    /// went with it.
    async fn replay_create(
        &self,
        _status: &DatabaseBranchStatus,
        provider: &dyn Provider,
        parent: Option<&ParentProject>,
        ctx: &Context,
    ) -> Result<Option<String>, Error> {
        let key = idempotency_key(self, "branch-create")?;
        let password =
            pipeline::operator_password(self, &connection_secret_name(self), provider, ctx, true)
                .await?;
        // The source made no difference to what was made under this name.
        let from_branch = self.spec.from_branch.clone();
        replay_child_create(Object::Branch, parent, |project_id| async move {
            let mut request = branch_request(self, provider, &project_id, from_branch, true);
            request.db_password = password;
            provider.create_branch(&request, &key).await
        })
        .await
    }

    async fn delete(
        provider: &dyn Provider,
        parent: Option<&ParentProject>,
        id: &str,
    ) -> Result<(), ProviderError> {
        provider.delete_branch(project_id(parent), id).await
    }
}

impl Connected for DatabaseBranch {
    fn secret_name(&self) -> String {
        connection_secret_name(self)
    }
    fn recorded_secret(status: &DatabaseBranchStatus) -> Option<&str> {
        status.connection_secret_name.as_deref()
    }
    fn set_secret(status: &mut DatabaseBranchStatus, name: &str) {
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
    fn rotation(status: &DatabaseBranchStatus) -> Option<&CredentialRotationStatus> {
        status.credential_rotation.as_ref()
    }
    fn rotation_mut(status: &mut DatabaseBranchStatus) -> &mut Option<CredentialRotationStatus> {
        &mut status.credential_rotation
    }
    fn rotation_target(vendor: &VendorBranch, parent: Option<&ParentProject>) -> RotationTarget {
        RotationTarget::Branch {
            project_id: project_id(parent).to_string(),
            id: vendor.id.clone(),
        }
    }
    fn ready_message(
        vendor: &VendorBranch,
        parent: Option<&ParentProject>,
        secret: &str,
    ) -> String {
        format!(
            "branch {} of project {} is ready; connection details in Secret {secret}",
            vendor.id,
            project_id(parent)
        )
    }
}

/// The `DatabaseBranch` controller, ready to run with
/// [`drive`](crate::controllers::runtime::drive). A change of a
/// `DatabaseProject` (becoming Ready, being deleted) wakes its branches at once.
pub fn controller(
    ctx: &Context,
    scope: &Scope,
    watcher_config: watcher::Config,
) -> Controller<DeserializeGuard<DatabaseBranch>> {
    let client = ctx.client.clone();
    let controller = watch::lean_controller(
        scope.api::<DeserializeGuard<DatabaseBranch>>(client.clone()),
        watcher_config.clone(),
    );
    let by_project = dependents(controller.store(), |k: &DatabaseBranch| {
        Some(k.spec.project_ref.name.as_str())
    });
    // Branches not made yet follow their project, which watches providers.
    let by_provider = dependents(controller.store(), |k: &DatabaseBranch| {
        k.status.as_ref()?.provider_name.as_deref()
    });
    let by_namespace = watch::in_namespace(controller.store());
    controller
        .owns_stream(secret::owned_secret_triggers(
            scope.api(client.clone()),
            ctx.secret_echoes.clone(),
        ))
        .watches_stream(watch::provider_triggers(ctx), by_provider)
        .watches_stream(
            watch::namespace_triggers(client.clone(), scope),
            by_namespace,
        )
        .watches(
            scope.api::<DeserializeGuard<DatabaseProject>>(client),
            watcher_config,
            by_project,
        )
}
