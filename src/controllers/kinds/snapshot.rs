//! `DatabaseSnapshot`: a point-in-time snapshot of a `DatabaseProject`, taken
//! once the project is Ready. Snapshots are immutable (CEL refuses spec edits).
//! The steps are the shared [`pipeline`]; this module says what is particular
//! to snapshots.
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

use crate::api::v1alpha1::{
    ClaimedObject, DatabaseProject, DatabaseSnapshot, DatabaseSnapshotStatus, DeletionPolicy,
    ProviderRef,
};
use crate::controllers::pipeline::parent::{
    Dereferenced, child_cleanup_target, dereference, record_parent, recorded_parent,
    replay_child_create,
};
use crate::controllers::pipeline::{
    self, Created, Obtained, ParentProject, VendorKind, idempotency_key, project_id,
};
use crate::controllers::protection::ProviderHandle;
use crate::controllers::protection::tenancy::{self, Adoption};
use crate::controllers::runtime::conditions::{self, Health};
use crate::controllers::runtime::reconciler::{Lifecycle, Managed, apply_status_if_changed};
use crate::controllers::runtime::{Context, KubeCall, Scope, VendorCall, dependents, watch};
use crate::providers::{Operation, Provider, ProviderError, SnapshotRequest, VendorSnapshot};

/// Name of this controller in metrics and logs.
pub const CONTROLLER: &str = "databasesnapshot";

pub use crate::controllers::pipeline::error::{Error, Object};

crate::impl_managed!(DatabaseSnapshot, DatabaseSnapshotStatus, CONTROLLER, {
    fn derive_status(&self, status: &mut DatabaseSnapshotStatus) {
        status.deletion_policy = Some(self.spec.effective_deletion_policy());
    }
});

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
impl Lifecycle for DatabaseSnapshot {
    type Error = Error;

    fn defer_finalizer(&self) -> bool {
        pipeline::defers_finalizer(self)
    }

    async fn apply(&self, api: &Api<Self>, ctx: &Context) -> Result<Action, Error> {
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
        let vendor = match pipeline::obtain(self, api, ctx, &mut previous, &provider, Some(&parent))
            .await?
        {
            Obtained::Usable(vendor, created) => {
                if let Some(note) = created {
                    pipeline::publish_created(self, ctx, note).await;
                }
                vendor
            }
            Obtained::Requeue(action) => return Ok(action),
        };
        let mut message = ready_message(
            &vendor.id,
            &parent.project_id,
            &*provider,
            self.spec.effective_deletion_policy(),
        );
        if previous.adopted {
            message = format!("{message}; {}", pipeline::adopted_note(self));
        }
        let status = self.with_vendor(&previous, Some(&parent), &vendor);
        let status = self.status_with_health(&status, &Health::ready(message));
        apply_status_if_changed(api, self, &previous, &status)
            .await
            .map_err(KubeCall::Status)?;
        let was_ready = previous.conditions.is_true(conditions::READY);
        if let Some((reason, note)) =
            pipeline::plan::ready_event(Object::Snapshot, &vendor.id, was_ready, None)
        {
            ctx.publish(self, EventType::Normal, reason, "Reconcile", note)
                .await;
        }
        Ok(Action::requeue(ctx.jittered_resync()))
    }

    async fn cleanup(&self, _api: &Api<Self>, ctx: &Context) -> Result<Action, Error> {
        pipeline::cleanup(self, ctx).await
    }
}

#[async_trait]
impl VendorKind for DatabaseSnapshot {
    const OBJECT: Object = Object::Snapshot;
    const DELETE: Operation = Operation::SnapshotDelete;
    const CLAIM: ClaimedObject = ClaimedObject::Snapshot;
    /// A snapshot has no step between usable and Ready: the Ready write saves the id.
    type Vendor = VendorSnapshot;

    fn recorded_id(status: &DatabaseSnapshotStatus) -> Option<&str> {
        status.snapshot_id.as_deref()
    }
    fn create_requested(status: &DatabaseSnapshotStatus) -> bool {
        status.create_requested
    }
    fn set_create_requested(status: &mut DatabaseSnapshotStatus, requested: bool) {
        status.create_requested = requested;
    }
    fn adopted(status: &DatabaseSnapshotStatus) -> bool {
        status.adopted
    }
    fn set_adopted(status: &mut DatabaseSnapshotStatus, adopted: bool) {
        status.adopted = adopted;
    }
    fn external_id(&self) -> Option<&str> {
        self.spec.external_id.as_deref()
    }
    fn adoption(&self) -> Option<Adoption> {
        tenancy::snapshot_adoption(self)
    }
    fn deletion_policy(&self) -> DeletionPolicy {
        self.spec.effective_deletion_policy()
    }
    fn recorded_parent(&self, status: &DatabaseSnapshotStatus) -> Option<ParentProject> {
        let project = &self.spec.project_ref.name;
        let (provider, project_id) = (status.provider_name.as_ref(), status.project_id.as_ref());
        Some(recorded_parent(project, provider, project_id))
    }
    fn with_vendor(
        &self,
        status: &DatabaseSnapshotStatus,
        parent: Option<&ParentProject>,
        vendor: &VendorSnapshot,
    ) -> DatabaseSnapshotStatus {
        let mut status = status.clone();
        status.snapshot_id = Some(vendor.id.clone());
        status.created_at = vendor.created_at.clone().or(status.created_at);
        record_parent(&mut status.provider_name, &mut status.project_id, parent);
        status
    }
    fn record_for_create(status: &mut DatabaseSnapshotStatus, parent: Option<&ParentProject>) {
        record_parent(&mut status.provider_name, &mut status.project_id, parent);
    }

    async fn read(
        provider: &dyn Provider,
        parent: Option<&ParentProject>,
        id: &str,
    ) -> Result<VendorSnapshot, ProviderError> {
        provider.get_snapshot(project_id(parent), id).await
    }

    async fn create(
        &self,
        api: &Api<Self>,
        previous: &mut DatabaseSnapshotStatus,
        provider: &ProviderHandle,
        parent: Option<&ParentProject>,
        ctx: &Context,
    ) -> Result<Created<VendorSnapshot>, Error> {
        let message = format!("taking the snapshot at {}", provider.api());
        pipeline::begin_create(
            self,
            api,
            ctx,
            provider,
            parent,
            previous,
            Operation::SnapshotCreate,
            message,
        )
        .await?;
        let key = idempotency_key(self, "snapshot-create")?;
        let vendor = provider
            .create_snapshot(&snapshot_request(self, project_id(parent)), &key)
            .await
            .map_err(|e| VendorCall::new("creating the snapshot", e))?;
        let note = format!("took vendor snapshot {}", vendor.id);
        Ok(Created::New { vendor, note })
    }

    /// Through its parent project's provider.
    async fn cleanup_target(
        &self,
        ctx: &Context,
        status: &DatabaseSnapshotStatus,
        _left: &str,
    ) -> Result<Option<(ProviderHandle, Option<ParentProject>)>, Error> {
        child_cleanup_target(self, ctx, status).await
    }

    async fn replay_create(
        &self,
        _status: &DatabaseSnapshotStatus,
        provider: &dyn Provider,
        parent: Option<&ParentProject>,
        _ctx: &Context,
    ) -> Result<Option<String>, Error> {
        let key = idempotency_key(self, "snapshot-create")?;
        replay_child_create(Object::Snapshot, parent, |project_id| async move {
            let request = snapshot_request(self, &project_id);
            provider.create_snapshot(&request, &key).await
        })
        .await
    }

    async fn delete(
        provider: &dyn Provider,
        parent: Option<&ParentProject>,
        id: &str,
    ) -> Result<(), ProviderError> {
        provider.delete_snapshot(project_id(parent), id).await
    }

    /// Documented behaviour, not a fault: the snapshot goes with its project.
    fn not_deletable(
        provider: &dyn Provider,
        left: &str,
        parent: Option<&ParentProject>,
    ) -> (EventType, String) {
        (
            EventType::Normal,
            format!(
                "{} has no snapshot delete: {left} stays until project {} is deleted",
                provider.api(),
                project_id(parent)
            ),
        )
    }
}

/// The `DatabaseSnapshot` controller, ready to run with
/// [`drive`](crate::controllers::runtime::drive). A change of
/// a `DatabaseProject` wakes its snapshots at once.
pub fn controller(
    ctx: &Context,
    scope: &Scope,
    watcher_config: watcher::Config,
) -> Controller<DeserializeGuard<DatabaseSnapshot>> {
    let client = ctx.client.clone();
    let controller = watch::lean_controller(
        scope.api::<DeserializeGuard<DatabaseSnapshot>>(client.clone()),
        watcher_config.clone(),
    );
    let by_project = dependents(controller.store(), |k: &DatabaseSnapshot| {
        Some(k.spec.project_ref.name.as_str())
    });
    // Snapshots not taken yet follow their project, which watches providers.
    let by_provider = dependents(controller.store(), |k: &DatabaseSnapshot| {
        k.status.as_ref()?.provider_name.as_deref()
    });
    let by_namespace = watch::in_namespace(controller.store());
    controller
        .watches(
            scope.api::<DeserializeGuard<DatabaseProject>>(client.clone()),
            watcher_config,
            by_project,
        )
        .watches_stream(watch::provider_triggers(ctx), by_provider)
        .watches_stream(watch::namespace_triggers(client, scope), by_namespace)
}
