//! `DatabaseBranch`: a copy-on-write branch of a `DatabaseProject`, created once
//! the project is Ready, with its own connection Secret.

use async_trait::async_trait;
use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;
use kube::api::Api;
use kube::core::DeserializeGuard;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::EventType;
use kube::runtime::watcher;

use super::conditions::{self, Health, reason};
use super::parent::{Gate, child_cleanup_provider, gate};
use super::project::idempotency_key;
use super::reconciler::{
    Managed, Reconcile, apply_status, apply_status_if_changed, report_progress,
};
use super::rotation::{self};
use super::secret::{self, ConnectionDetails};
use super::{Context, KubeCall, ProviderHandle, Scope, VendorCall, dependents, pipeline};
use crate::api::v1alpha1::{DatabaseBranch, DatabaseBranchStatus, DatabaseProject, DeletionPolicy};
use crate::providers::{BranchRequest, Operation, ResourceState, RotationTarget, VendorBranch};

/// Name of this controller in metrics and logs.
pub const CONTROLLER: &str = "databasebranch";

pub use super::error::{Error, Object};

crate::impl_managed!(DatabaseBranch, DatabaseBranchStatus, CONTROLLER);

/// Name of the branch at the vendor: `spec.branchName`, else the resource name.
pub fn vendor_branch_name(branch: &DatabaseBranch) -> String {
    branch
        .spec
        .branch_name
        .clone()
        .unwrap_or_else(|| branch.name_any())
}

/// Name of the connection Secret: `spec.writeConnectionSecretTo.name`, else `<name>-connection`.
pub fn connection_secret_name(branch: &DatabaseBranch) -> String {
    match &branch.spec.write_connection_secret_to {
        Some(target) => target.name.clone(),
        None => format!("{}-connection", branch.name_any()),
    }
}

/// The vendor create request for this branch of vendor project `project_id`.
pub fn branch_request(branch: &DatabaseBranch, project_id: &str) -> BranchRequest {
    BranchRequest {
        project_id: project_id.to_string(),
        branch_name: vendor_branch_name(branch),
        from_branch: branch.spec.from_branch.clone(),
    }
}

#[async_trait]
impl Reconcile for DatabaseBranch {
    type Error = Error;

    async fn apply(&self, api: &Api<Self>, ctx: &Context) -> Result<Action, Error> {
        let namespace = self.namespace().ok_or(Error::InvalidObject)?;
        let mut previous = self.current_status();
        let project_name = &self.spec.project_ref.name;
        let created_before = previous.branch_id.is_some() || previous.create_requested;
        let recorded = previous.project_id.as_deref();
        let (project, project_id) =
            match gate(ctx, &namespace, project_name, created_before, recorded)
                .await
                .map_err(KubeCall::Read)?
            {
                Gate::Proceed {
                    project,
                    project_id,
                } => (project, project_id),
                Gate::Wait(health) => {
                    report_progress(api, self, &health)
                        .await
                        .map_err(KubeCall::Status)?;
                    return Ok(Action::requeue(ctx.jittered_resync()));
                }
                Gate::ParentGone => {
                    return Err(Error::ProjectDeleted {
                        object: Object::Branch,
                        project: project_name.clone(),
                    });
                }
            };
        let provider = ctx.provider(&project.spec.provider_ref).await?;

        let vendor = if let Some(id) = &previous.branch_id {
            match provider.get_branch(&project_id, id).await {
                Ok(vendor) => vendor,
                Err(e) if e.is_not_found() => {
                    return Err(Error::VendorObjectDeleted {
                        object: Object::Branch,
                        id: id.clone(),
                    });
                }
                Err(source) => {
                    return Err(VendorCall::new(format!("reading branch {id}"), source).into());
                }
            }
        } else if let Some(id) = &self.spec.external_id {
            let vendor = match provider.get_branch(&project_id, id).await {
                Ok(vendor) => vendor,
                Err(e) if e.is_not_found() => {
                    return Err(Error::ExternalNotFound {
                        object: Object::Branch,
                        id: id.clone(),
                    });
                }
                Err(source) => {
                    return Err(VendorCall::new(format!("reading branch {id}"), source).into());
                }
            };
            if vendor.project_id != project_id {
                return Err(Error::ExternalMismatch {
                    object: Object::Branch,
                    id: id.clone(),
                    actual: vendor.project_id,
                    expected: project_id,
                    project: Some(project_name.clone()),
                });
            }
            ctx.publish(
                self,
                EventType::Normal,
                "Adopted",
                "Adopt",
                format!("adopted existing vendor branch {}", vendor.id),
            )
            .await;
            vendor
        } else {
            self.create(api, &mut previous, &project, &project_id, &provider, ctx)
                .await?
        };

        let with_ids =
            |status: &DatabaseBranchStatus, secret: Option<String>| DatabaseBranchStatus {
                branch_id: Some(vendor.id.clone()),
                project_id: Some(project_id.clone()),
                provider_name: Some(project.spec.provider_ref.name.clone()),
                connection_secret_name: secret.or(status.connection_secret_name.clone()),
                ..status.clone()
            };
        match &vendor.state {
            ResourceState::Ready => {}
            ResourceState::Provisioning(state) => {
                let health = Health::progressing(
                    reason::WAITING_FOR_VENDOR,
                    format!("the vendor reports the branch as {state}"),
                );
                let status = self.status_with_health(&with_ids(&previous, None), &health);
                apply_status_if_changed(api, self, &previous, &status)
                    .await
                    .map_err(KubeCall::Status)?;
                return Ok(Action::requeue(ctx.settings.provisioning_poll));
            }
            ResourceState::Failed(state) => {
                return Err(Error::VendorFailed {
                    object: Object::Branch,
                    id: vendor.id.clone(),
                    state: state.clone(),
                });
            }
        }
        // Save the ids before anything else can fail, so they are never lost.
        if previous.branch_id.as_deref() != Some(vendor.id.as_str()) {
            let health = Health::progressing(
                reason::CREATING,
                "branch exists at the vendor; writing the connection Secret",
            );
            let status = self.status_with_health(&with_ids(&previous, None), &health);
            apply_status(api, self, &status)
                .await
                .map_err(KubeCall::Status)?;
            previous = status;
        }

        let secret_name = connection_secret_name(self);
        let details =
            ConnectionDetails::parse(vendor.connection_uri.as_ref(), vendor.pooled_uri.as_ref())
                .map_err(|source| Error::Connection {
                    object: Object::Branch,
                    id: vendor.id.clone(),
                    source,
                })?;
        // Vendors that never return the password: keep the one in the Secret.
        let details = if details.password.is_empty() {
            match secret::read_owned_key(&ctx.client, self, &secret_name, secret::keys::PASSWORD)
                .await?
            {
                Some(password) => details.with_password(&password),
                None => details,
            }
        } else {
            details
        };
        secret::ensure_secret(&ctx.client, self, &secret_name, details.to_data()).await?;
        if let Some(old) = previous
            .connection_secret_name
            .as_deref()
            .filter(|old| *old != secret_name)
        {
            secret::delete_owned_secret(&ctx.client, self, old).await?;
        }

        let health = Health::ready(format!(
            "branch {} of project {project_id} is ready; connection details in Secret {secret_name}",
            vendor.id
        ));
        let mut status =
            self.status_with_health(&with_ids(&previous, Some(secret_name.clone())), &health);
        let created_at = self
            .metadata
            .creation_timestamp
            .as_ref()
            .map(|t| t.0.to_string());
        let outcome = rotation::reconcile(
            self,
            ctx,
            provider.as_ref(),
            rotation::Input {
                target: RotationTarget::Branch {
                    project_id: project_id.clone(),
                    id: vendor.id.clone(),
                },
                secret_name: &secret_name,
                details: &details,
                spec: self.spec.credential_rotation.as_ref(),
                state: previous.credential_rotation.as_ref(),
                created_at: created_at.as_deref(),
            },
        )
        .await?;
        let poll = rotation::record(
            outcome,
            &mut status.credential_rotation,
            &mut status.conditions,
            self.metadata.generation,
            ctx,
            self,
        )
        .await;
        let was_ready = previous.conditions.is_true(conditions::READY);
        apply_status_if_changed(api, self, &previous, &status)
            .await
            .map_err(KubeCall::Status)?;
        if !was_ready {
            ctx.publish(
                self,
                EventType::Normal,
                "Ready",
                "Reconcile",
                format!("branch {} is ready", vendor.id),
            )
            .await;
        }
        let next_rotation = rotation::next_due(
            self.spec.credential_rotation.as_ref(),
            status.credential_rotation.as_ref(),
            created_at.as_deref(),
            k8s_openapi::jiff::Timestamp::now(),
        );
        let delay = [Some(ctx.jittered_resync()), poll, next_rotation]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or(ctx.settings.resync_interval);
        Ok(Action::requeue(
            delay.max(std::time::Duration::from_millis(100)),
        ))
    }

    async fn cleanup(&self, _api: &Api<Self>, ctx: &Context) -> Result<Action, Error> {
        let status = self.current_status();
        if self.spec.deletion_policy == DeletionPolicy::Retain {
            let id = status.branch_id.clone().unwrap_or_default();
            ctx.publish(
                self,
                EventType::Normal,
                "Retained",
                "Delete",
                format!("deletionPolicy Retain: vendor branch {id} left in place"),
            )
            .await;
            return Ok(Action::await_change());
        }
        let vendor_state = status.branch_id.is_some()
            || self.spec.external_id.is_some()
            || status.create_requested;
        if !vendor_state {
            // Nothing was ever sent to the vendor.
            return Ok(Action::await_change());
        }
        let Some(provider) = child_cleanup_provider(
            ctx,
            self,
            &self.spec.project_ref.name,
            status.provider_name.as_deref(),
            "branches",
        )
        .await?
        else {
            return Ok(Action::await_change());
        };
        let project_id = status.project_id.clone().unwrap_or_default();
        let id = match (&status.branch_id, &self.spec.external_id) {
            (Some(id), _) => Some(id.clone()),
            (None, Some(external)) => Some(external.clone()),
            (None, None) if status.create_requested && !project_id.is_empty() => {
                // The create may have reached the vendor before the id was saved:
                // replay it with the same key to learn the id. A gone project means
                // the branch went with it.
                let key = idempotency_key(self, "branch-create").ok_or(Error::InvalidObject)?;
                match provider
                    .create_branch(&branch_request(self, &project_id), &key)
                    .await
                {
                    Ok(vendor) => Some(vendor.id),
                    Err(e) if e.is_not_found() => None,
                    Err(source) => {
                        return Err(VendorCall::new("replaying the branch create", source).into());
                    }
                }
            }
            (None, None) => None,
        };
        if let Some(id) = id {
            pipeline::delete_at_vendor(
                self,
                ctx,
                provider.as_ref(),
                Object::Branch,
                Operation::BranchDelete,
                &id,
                provider.delete_branch(&project_id, &id),
            )
            .await?;
        }
        Ok(Action::await_change())
    }
}

impl DatabaseBranch {
    /// Creates the vendor branch; `createRequested`, the project id and the
    /// provider are saved first (see `DatabaseProject`).
    async fn create(
        &self,
        api: &Api<Self>,
        previous: &mut DatabaseBranchStatus,
        project: &DatabaseProject,
        project_id: &str,
        provider: &ProviderHandle,
        ctx: &Context,
    ) -> Result<VendorBranch, Error> {
        if !provider.supports(Operation::BranchCreate) {
            return Err(Error::Unsupported {
                provider: provider.api().to_string(),
                operation: Operation::BranchCreate,
                hint: provider
                    .unsupported_hint(Operation::BranchCreate)
                    .unwrap_or("adopt an existing branch with spec.externalId instead"),
            });
        }
        let key = idempotency_key(self, "branch-create").ok_or(Error::InvalidObject)?;
        if !previous.create_requested {
            // Refuses a provider (or namespace) being deleted; protects the
            // provider and its Secret before anything exists at the vendor.
            let namespace = self.namespace().ok_or(Error::InvalidObject)?;
            ctx.prepare_create(provider, &namespace).await?;
            let health = Health::progressing(
                reason::CREATING,
                format!("creating the branch at {}", provider.api()),
            );
            let mut status = self.status_with_health(previous, &health);
            status.create_requested = true;
            status.project_id = Some(project_id.to_string());
            status.provider_name = Some(project.spec.provider_ref.name.clone());
            apply_status(api, self, &status)
                .await
                .map_err(KubeCall::Status)?;
            *previous = status;
        }
        let vendor = provider
            .create_branch(&branch_request(self, project_id), &key)
            .await
            .map_err(|e| VendorCall::new("creating the branch", e))?;
        tracing::info!(branch_id = %vendor.id, "vendor branch created");
        ctx.publish(
            self,
            EventType::Normal,
            "Created",
            "Create",
            format!("created vendor branch {}", vendor.id),
        )
        .await;
        Ok(vendor)
    }
}

/// The `DatabaseBranch` controller, ready to run with [`drive`]. A change of a
/// `DatabaseProject` (becoming Ready, being deleted) wakes its branches at once.
pub fn controller(
    ctx: &Context,
    scope: &Scope,
    watcher_config: watcher::Config,
) -> Controller<DeserializeGuard<DatabaseBranch>> {
    let client = ctx.client.clone();
    let controller = Controller::new(
        scope.api::<DeserializeGuard<DatabaseBranch>>(client.clone()),
        watcher_config.clone(),
    );
    let by_project = dependents(controller.store(), |k: &DatabaseBranch| {
        Some(k.spec.project_ref.name.as_str())
    });
    controller
        .owns(
            scope.api::<Secret>(client.clone()),
            secret::owned_secrets_watch(),
        )
        .watches(
            scope.api::<DeserializeGuard<DatabaseProject>>(client),
            watcher_config,
            by_project,
        )
}
