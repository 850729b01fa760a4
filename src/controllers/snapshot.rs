//! `DatabaseSnapshot`: a point-in-time snapshot of a `DatabaseProject`, taken
//! once the project is Ready. Snapshots are immutable (CEL refuses spec edits).
//!
//! Providers without a snapshot delete (infrai) cannot honour
//! `deletionPolicy: Delete` literally: the snapshot then stays at the vendor
//! until its project is deleted, which the Ready message and a `Normal` Event
//! on deletion say, and the resource is released without blocking.

use async_trait::async_trait;
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
use super::{Context, KubeCall, ProviderHandle, Scope, VendorCall, dependents, pipeline};
use crate::api::v1alpha1::{
    DatabaseProject, DatabaseSnapshot, DatabaseSnapshotStatus, DeletionPolicy,
};
use crate::providers::{Operation, Provider, ResourceState, SnapshotRequest, VendorSnapshot};

/// Name of this controller in metrics and logs.
pub const CONTROLLER: &str = "databasesnapshot";

pub use super::error::{Error, Object};

crate::impl_managed!(DatabaseSnapshot, DatabaseSnapshotStatus, CONTROLLER);

/// The vendor create request for a snapshot of vendor project `project_id`.
pub fn snapshot_request(snapshot: &DatabaseSnapshot, project_id: &str) -> SnapshotRequest {
    SnapshotRequest {
        project_id: project_id.to_string(),
        label: snapshot.spec.label.clone(),
    }
}

/// The Ready message, saying honestly what deletion will do on this provider.
pub fn ready_message(
    snapshot_id: &str,
    project_id: &str,
    provider: &dyn Provider,
    policy: DeletionPolicy,
) -> String {
    let mut message = format!("snapshot {snapshot_id} of project {project_id} is ready");
    if policy == DeletionPolicy::Delete && !provider.supports(Operation::SnapshotDelete) {
        message.push_str(&format!(
            "; note: {} has no snapshot delete, so deleting this resource leaves the snapshot until its project is deleted",
            provider.api()
        ));
    }
    message
}

#[async_trait]
impl Reconcile for DatabaseSnapshot {
    type Error = Error;

    async fn apply(&self, api: &Api<Self>, ctx: &Context) -> Result<Action, Error> {
        let namespace = self.namespace().ok_or(Error::InvalidObject)?;
        let mut previous = self.current_status();
        let project_name = &self.spec.project_ref.name;
        let created_before = previous.snapshot_id.is_some() || previous.create_requested;
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
                        object: Object::Snapshot,
                        project: project_name.clone(),
                    });
                }
            };
        let provider = ctx.provider(&project.spec.provider_ref).await?;

        let vendor = if let Some(id) = &previous.snapshot_id {
            match provider.get_snapshot(&project_id, id).await {
                Ok(vendor) => vendor,
                Err(e) if e.is_not_found() => {
                    return Err(Error::VendorObjectDeleted {
                        object: Object::Snapshot,
                        id: id.clone(),
                    });
                }
                Err(source) => {
                    return Err(VendorCall::new(format!("reading snapshot {id}"), source).into());
                }
            }
        } else if let Some(id) = &self.spec.external_id {
            let vendor = match provider.get_snapshot(&project_id, id).await {
                Ok(vendor) => vendor,
                Err(e) if e.is_not_found() => {
                    return Err(Error::ExternalNotFound {
                        object: Object::Snapshot,
                        id: id.clone(),
                    });
                }
                Err(source) => {
                    return Err(VendorCall::new(format!("reading snapshot {id}"), source).into());
                }
            };
            if vendor.project_id != project_id {
                return Err(Error::ExternalMismatch {
                    object: Object::Snapshot,
                    id: id.clone(),
                    actual: vendor.project_id,
                    expected: project_id,
                    project: None,
                });
            }
            ctx.publish(
                self,
                EventType::Normal,
                "Adopted",
                "Adopt",
                format!("adopted existing vendor snapshot {}", vendor.id),
            )
            .await;
            vendor
        } else {
            self.create(api, &mut previous, &project, &project_id, &provider, ctx)
                .await?
        };

        let with_ids = |status: &DatabaseSnapshotStatus| DatabaseSnapshotStatus {
            snapshot_id: Some(vendor.id.clone()),
            project_id: Some(project_id.clone()),
            provider_name: Some(project.spec.provider_ref.name.clone()),
            created_at: vendor.created_at.clone().or(status.created_at.clone()),
            ..status.clone()
        };
        let health = match &vendor.state {
            ResourceState::Ready => Health::ready(ready_message(
                &vendor.id,
                &project_id,
                provider.as_ref(),
                self.spec.deletion_policy,
            )),
            ResourceState::Provisioning(state) => Health::progressing(
                reason::WAITING_FOR_VENDOR,
                format!("the vendor reports the snapshot as {state}"),
            ),
            ResourceState::Failed(state) => {
                return Err(Error::VendorFailed {
                    object: Object::Snapshot,
                    id: vendor.id.clone(),
                    state: state.clone(),
                });
            }
        };
        let status = self.status_with_health(&with_ids(&previous), &health);
        let was_ready = previous.conditions.is_true(conditions::READY);
        apply_status_if_changed(api, self, &previous, &status)
            .await
            .map_err(KubeCall::Status)?;
        if matches!(vendor.state, ResourceState::Provisioning(_)) {
            return Ok(Action::requeue(ctx.settings.provisioning_poll));
        }
        if !was_ready {
            ctx.publish(
                self,
                EventType::Normal,
                "Ready",
                "Reconcile",
                format!("snapshot {} is ready", vendor.id),
            )
            .await;
        }
        Ok(Action::requeue(ctx.jittered_resync()))
    }

    async fn cleanup(&self, _api: &Api<Self>, ctx: &Context) -> Result<Action, Error> {
        let status = self.current_status();
        let id = status.snapshot_id.clone().or(self.spec.external_id.clone());
        if self.spec.deletion_policy == DeletionPolicy::Retain {
            ctx.publish(
                self,
                EventType::Normal,
                "Retained",
                "Delete",
                format!(
                    "deletionPolicy Retain: vendor snapshot {} left in place",
                    id.clone().unwrap_or_default()
                ),
            )
            .await;
            return Ok(Action::await_change());
        }
        if id.is_none() && !status.create_requested {
            // Nothing was ever sent to the vendor.
            return Ok(Action::await_change());
        }
        let Some(provider) = child_cleanup_provider(
            ctx,
            self,
            &self.spec.project_ref.name,
            status.provider_name.as_deref(),
            "snapshots",
        )
        .await?
        else {
            return Ok(Action::await_change());
        };
        if !provider.supports(Operation::SnapshotDelete) {
            if status.snapshot_id.is_some() || status.create_requested {
                ctx.publish(
                    self,
                    EventType::Normal,
                    "NotDeletedByProvider",
                    "Delete",
                    format!(
                        "{} has no snapshot delete: vendor snapshot {} stays until project {} is deleted",
                        provider.api(),
                        id.unwrap_or_default(),
                        status.project_id.unwrap_or_default()
                    ),
                )
                .await;
            }
            return Ok(Action::await_change());
        }
        let project_id = status.project_id.clone().unwrap_or_default();
        let id = match id {
            Some(id) => Some(id),
            None if status.create_requested && !project_id.is_empty() => {
                let key = idempotency_key(self, "snapshot-create").ok_or(Error::InvalidObject)?;
                match provider
                    .create_snapshot(&snapshot_request(self, &project_id), &key)
                    .await
                {
                    Ok(vendor) => Some(vendor.id),
                    Err(e) if e.is_not_found() => None,
                    Err(source) => {
                        return Err(VendorCall::new("replaying the snapshot create", source).into());
                    }
                }
            }
            None => None,
        };
        if let Some(id) = id {
            pipeline::delete_at_vendor(
                self,
                ctx,
                provider.as_ref(),
                Object::Snapshot,
                Operation::SnapshotDelete,
                &id,
                provider.delete_snapshot(&project_id, &id),
            )
            .await?;
        }
        Ok(Action::await_change())
    }
}

impl DatabaseSnapshot {
    /// Takes the vendor snapshot; `createRequested`, the project id and the
    /// provider are saved first (see `DatabaseProject`).
    async fn create(
        &self,
        api: &Api<Self>,
        previous: &mut DatabaseSnapshotStatus,
        project: &DatabaseProject,
        project_id: &str,
        provider: &ProviderHandle,
        ctx: &Context,
    ) -> Result<VendorSnapshot, Error> {
        if !provider.supports(Operation::SnapshotCreate) {
            return Err(Error::Unsupported {
                provider: provider.api().to_string(),
                operation: Operation::SnapshotCreate,
                hint: provider
                    .unsupported_hint(Operation::SnapshotCreate)
                    .unwrap_or("adopt an existing snapshot with spec.externalId instead"),
            });
        }
        let key = idempotency_key(self, "snapshot-create").ok_or(Error::InvalidObject)?;
        if !previous.create_requested {
            // Refuses a provider (or namespace) being deleted; protects the
            // provider and its Secret before anything exists at the vendor.
            let namespace = self.namespace().ok_or(Error::InvalidObject)?;
            ctx.prepare_create(provider, &namespace).await?;
            let health = Health::progressing(
                reason::CREATING,
                format!("taking the snapshot at {}", provider.api()),
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
            .create_snapshot(&snapshot_request(self, project_id), &key)
            .await
            .map_err(|e| VendorCall::new("creating the snapshot", e))?;
        tracing::info!(snapshot_id = %vendor.id, "vendor snapshot created");
        ctx.publish(
            self,
            EventType::Normal,
            "Created",
            "Create",
            format!("took vendor snapshot {}", vendor.id),
        )
        .await;
        Ok(vendor)
    }
}

/// The `DatabaseSnapshot` controller, ready to run with [`drive`]. A change of
/// a `DatabaseProject` wakes its snapshots at once.
pub fn controller(
    ctx: &Context,
    scope: &Scope,
    watcher_config: watcher::Config,
) -> Controller<DeserializeGuard<DatabaseSnapshot>> {
    let client = ctx.client.clone();
    let controller = Controller::new(
        scope.api::<DeserializeGuard<DatabaseSnapshot>>(client.clone()),
        watcher_config.clone(),
    );
    let by_project = dependents(controller.store(), |k: &DatabaseSnapshot| {
        Some(k.spec.project_ref.name.as_str())
    });
    controller.watches(
        scope.api::<DeserializeGuard<DatabaseProject>>(client),
        watcher_config,
        by_project,
    )
}
