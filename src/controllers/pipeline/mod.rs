//! One reconcile pipeline for the kinds that stand for a vendor object
//! (`DatabaseProject`, `DatabaseBranch`, `DatabaseSnapshot`):
//!
//! ```text
//! dereference (the kind: provider, parent project)
//!   → decide  (plan: pure, unit-tested)
//!   → execute (read, adopt or create at the vendor; delete on cleanup)
//!   → report  (status, connection Secret, rotation, Events)
//! ```
//!
//! A kind says what differs in [`VendorKind`] (and [`Connected`] when it has
//! a connection Secret); the steps here are written once.

pub mod plan;

use std::sync::Arc;

use async_trait::async_trait;
use kube::api::Api;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::{Resource, ResourceExt};

use super::conditions::{self, Health, reason};
use super::error::{Error, Object};
use super::reconciler::{Managed, apply_status, apply_status_if_changed};
use super::rotation;
use super::secret::{self, ConnectionDetails, SecretWrite};
use super::{Context, KubeCall, ProviderHandle, VendorCall};
use crate::api::v1alpha1::{CredentialRotationSpec, CredentialRotationStatus, DeletionPolicy};
use crate::providers::{Operation, Provider, ProviderError, RotationTarget, VendorObject};
use plan::{Settle, Source};

/// The parent project of a branch or snapshot.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ParentProject {
    /// The `DatabaseProject` resource.
    pub name: String,
    /// Its `DatabaseProvider`.
    pub provider_name: String,
    /// Its id at the vendor (empty when a cleanup finds none saved).
    pub project_id: String,
}

/// The vendor project id of `parent`, empty for a project itself.
pub fn project_id(parent: Option<&ParentProject>) -> &str {
    parent.map_or("", |p| p.project_id.as_str())
}

/// What a create step came to.
pub enum Created<V> {
    /// The vendor object exists; `note` says so in the `Created` Event.
    New { vendor: V, note: String },
    /// Not yet. `poll` when a vendor job runs that no watch event will report.
    Waiting { health: Health, poll: bool },
}

/// What the shared read-adopt-create step came to.
pub enum Obtained<V> {
    /// The vendor object is usable and its id saved.
    Usable(V),
    /// Not usable yet: status says why; look again then.
    Requeue(Action),
}

/// What differs between the kinds that stand for one vendor object.
#[async_trait]
pub trait VendorKind: Managed {
    /// How messages name the vendor object.
    const OBJECT: Object;
    /// The operation that deletes it.
    const DELETE: Operation;
    /// Whether the id is saved, in its own status write, before the steps
    /// that follow (a Secret write) can fail.
    const SAVE_ID_FIRST: bool = true;
    /// The vendor object as the provider reports it.
    type Vendor: VendorObject + Send + Sync;

    fn recorded_id(status: &Self::Status) -> Option<&str>;
    fn create_requested(status: &Self::Status) -> bool;
    fn external_id(&self) -> Option<&str>;
    fn deletion_policy(&self) -> DeletionPolicy;
    /// For a branch or snapshot: its parent as spec and status record it
    /// (ids empty until saved). `None` for a project.
    fn recorded_parent(&self, _status: &Self::Status) -> Option<ParentProject> {
        None
    }
    /// `status` updated with what the vendor reports (pure).
    fn with_vendor(
        &self,
        status: &Self::Status,
        parent: Option<&ParentProject>,
        vendor: &Self::Vendor,
    ) -> Self::Status;
    /// Records in `status` that a create is about to be sent.
    fn mark_create_requested(status: &mut Self::Status, parent: Option<&ParentProject>);

    /// Reads vendor object `id`.
    async fn read(
        provider: &dyn Provider,
        parent: Option<&ParentProject>,
        id: &str,
    ) -> Result<Self::Vendor, ProviderError>;

    /// Creates the vendor object; starts with [`begin_create`].
    async fn create(
        &self,
        api: &Api<Self>,
        previous: &mut Self::Status,
        provider: &ProviderHandle,
        parent: Option<&ParentProject>,
        ctx: &Context,
    ) -> Result<Created<Self::Vendor>, Error>;

    /// The provider (and parent) a cleanup goes through, or `None` when it
    /// cannot be reached any more (an Event has said why). By default, a
    /// child's: through its parent project's provider.
    async fn cleanup_target(
        &self,
        ctx: &Context,
        status: &Self::Status,
        _left: &str,
    ) -> Result<Option<(Arc<dyn Provider>, Option<ParentProject>)>, Error> {
        super::parent::child_cleanup_target(self, ctx, status).await
    }

    /// Replays a create whose answer was never saved (same idempotency key),
    /// to learn the id; `None` when it made nothing.
    async fn replay_create(
        &self,
        status: &Self::Status,
        provider: &dyn Provider,
        parent: Option<&ParentProject>,
        ctx: &Context,
    ) -> Result<Option<String>, Error>;

    /// Deletes vendor object `id`.
    async fn delete(
        provider: &dyn Provider,
        parent: Option<&ParentProject>,
        id: &str,
    ) -> Result<(), ProviderError>;

    /// The Event for a provider that cannot delete this kind.
    fn not_deletable(
        provider: &dyn Provider,
        left: &str,
        _parent: Option<&ParentProject>,
    ) -> (EventType, String) {
        (
            EventType::Warning,
            format!(
                "{} cannot delete a {} through its API: {left} is left in place (set deletionPolicy: Retain to say so up front)",
                provider.api(),
                Self::OBJECT
            ),
        )
    }
}

/// A kind with a connection Secret and credential rotation.
pub trait Connected: VendorKind {
    fn secret_name(&self) -> String;
    fn recorded_secret(status: &Self::Status) -> Option<&str>;
    fn set_secret(status: &mut Self::Status, name: &str);
    /// How the connection Secret is laid out (`writeConnectionSecretTo`).
    fn connection_target(&self) -> Option<&crate::api::v1alpha1::ConnectionSecretTarget>;
    fn rotation_spec(&self) -> Option<&CredentialRotationSpec>;
    fn rotation(status: &Self::Status) -> Option<&CredentialRotationStatus>;
    fn rotation_mut(status: &mut Self::Status) -> &mut Option<CredentialRotationStatus>;
    fn rotation_target(vendor: &Self::Vendor, parent: Option<&ParentProject>) -> RotationTarget;
    /// The Ready message.
    fn ready_message(vendor: &Self::Vendor, parent: Option<&ParentProject>, secret: &str)
    -> String;
}

/// Reads the saved vendor object, adopts `spec.externalId`, or creates one;
/// then waits until the vendor reports it usable and saves its id.
pub async fn obtain<K: VendorKind>(
    obj: &K,
    api: &Api<K>,
    ctx: &Context,
    previous: &mut K::Status,
    provider: &ProviderHandle,
    parent: Option<&ParentProject>,
) -> Result<Obtained<K::Vendor>, Error> {
    let recorded = K::recorded_id(previous).map(str::to_string);
    let vendor = match plan::source(recorded.as_deref(), obj.external_id()) {
        Source::Create => match create(obj, api, ctx, previous, provider, parent).await? {
            Obtained::Usable(vendor) => vendor,
            requeue => return Ok(requeue),
        },
        source => read_existing(obj, ctx, &**provider, parent, &source).await?,
    };
    let recorded = K::recorded_id(previous);
    let waited = waited_for_vendor(K::conditions(previous));
    match plan::settle(
        K::OBJECT,
        vendor.id(),
        vendor.state(),
        recorded,
        K::SAVE_ID_FIRST,
        waited,
    )? {
        Settle::Wait(health) => {
            let status =
                obj.status_with_health(&obj.with_vendor(previous, parent, &vendor), &health);
            write_if_changed(api, obj, previous, &status).await?;
            Ok(Obtained::Requeue(Action::requeue(
                ctx.settings.provisioning_poll,
            )))
        }
        Settle::SaveId => {
            let health = Health::progressing(
                reason::CREATING,
                format!("{} exists at the vendor; finishing its setup", K::OBJECT),
            );
            let status =
                obj.status_with_health(&obj.with_vendor(previous, parent, &vendor), &health);
            apply_status(api, obj, &status)
                .await
                .map_err(KubeCall::Status)?;
            *previous = status;
            Ok(Obtained::Usable(vendor))
        }
        Settle::Proceed => Ok(Obtained::Usable(vendor)),
    }
}

/// How long the resource has been waiting for its vendor ([`plan::waited`]).
fn waited_for_vendor(conditions: &crate::api::v1alpha1::Conditions) -> std::time::Duration {
    let since = |type_: &str| {
        conditions
            .get(type_)
            .filter(|c| c.status == "True")
            .map(|c| (c.reason.clone(), c.last_transition_time.0))
    };
    let stalled = since(conditions::STALLED)
        .is_some_and(|(reason, _)| reason == reason::VENDOR_STATE_UNKNOWN);
    let reconciling = since(conditions::RECONCILING).map(|(_, t)| t);
    plan::waited(reconciling, stalled, k8s_openapi::jiff::Timestamp::now())
}

/// Creates the vendor object, or shows why it waits.
async fn create<K: VendorKind>(
    obj: &K,
    api: &Api<K>,
    ctx: &Context,
    previous: &mut K::Status,
    provider: &ProviderHandle,
    parent: Option<&ParentProject>,
) -> Result<Obtained<K::Vendor>, Error> {
    let before = previous.clone();
    let created = match obj.create(api, previous, provider, parent, ctx).await {
        Err(error) if error.is_name_conflict() => {
            // Nothing was made: the next attempt is a first attempt again, and
            // must not take the other object for its own.
            apply_status(api, obj, &before)
                .await
                .map_err(KubeCall::Status)?;
            *previous = before;
            return Err(error);
        }
        created => created?,
    };
    match created {
        Created::New { vendor, note } => {
            tracing::info!(object = %K::OBJECT, id = %vendor.id(), "created at the vendor");
            ctx.publish(obj, EventType::Normal, "Created", "Create", note)
                .await;
            Ok(Obtained::Usable(vendor))
        }
        Created::Waiting { health, poll } => {
            let status = obj.status_with_health(previous, &health);
            write_if_changed(api, obj, previous, &status).await?;
            let delay = if poll {
                ctx.settings.provisioning_poll
            } else {
                ctx.jittered_resync()
            };
            Ok(Obtained::Requeue(Action::requeue(delay)))
        }
    }
}

/// Reads the saved or the adopted vendor object.
async fn read_existing<K: VendorKind>(
    obj: &K,
    ctx: &Context,
    provider: &dyn Provider,
    parent: Option<&ParentProject>,
    source: &Source<'_>,
) -> Result<K::Vendor, Error> {
    let (Source::Recorded(id) | Source::Adopt(id)) = *source else {
        return Err(Error::InvalidObject);
    };
    let vendor = match K::read(provider, parent, id).await {
        Ok(vendor) => vendor,
        Err(e) if e.is_not_found() => {
            return Err(plan::not_found(
                K::OBJECT,
                id,
                matches!(source, Source::Adopt(_)),
            ));
        }
        Err(e) => {
            return Err(VendorCall::new(format!("reading {} {id}", K::OBJECT), e).into());
        }
    };
    if let Source::Adopt(id) = *source {
        if let Some(error) = plan::adopted_elsewhere(K::OBJECT, id, parent, vendor.project_id()) {
            return Err(error);
        }
        ctx.publish(
            obj,
            EventType::Normal,
            "Adopted",
            "Adopt",
            format!("adopted existing vendor {} {}", K::OBJECT, vendor.id()),
        )
        .await;
    }
    Ok(vendor)
}

/// The common start of every create: refuses an operation the provider lacks;
/// before the first call, refuses a deleting provider or namespace, protects
/// the provider and its Secret, and saves `createRequested` (with `message`)
/// so a delete before the answer is saved can still find what was made.
///
/// Returns whether the create is *resumed*: an earlier reconcile already
/// saved `createRequested`, so the vendor may hold what it made. The cache can
/// lag behind that write, so when `previous` does not show it the object is
/// read fresh first. Only a resumed create may take an object found under its
/// name for its own.
#[allow(clippy::too_many_arguments)]
pub async fn begin_create<K: VendorKind>(
    obj: &K,
    api: &Api<K>,
    ctx: &Context,
    provider: &ProviderHandle,
    parent: Option<&ParentProject>,
    previous: &mut K::Status,
    operation: Operation,
    message: String,
) -> Result<bool, Error> {
    if !provider.supports(operation) {
        return Err(Error::Unsupported {
            provider: provider.api().to_string(),
            operation,
            hint: provider
                .unsupported_hint(operation)
                .unwrap_or(adopt_hint(K::OBJECT)),
        });
    }
    if K::create_requested(previous) {
        return Ok(true);
    }
    let fresh = api
        .get_opt(&obj.name_any())
        .await
        .map_err(KubeCall::Read)?
        .map(|fresh| fresh.current_status());
    if let Some(fresh) = fresh.filter(|s| K::create_requested(s)) {
        *previous = fresh;
        return Ok(true);
    }
    let namespace = obj.namespace().ok_or(Error::InvalidObject)?;
    ctx.prepare_create(provider, &namespace).await?;
    let mut status =
        obj.status_with_health(previous, &Health::progressing(reason::CREATING, message));
    K::mark_create_requested(&mut status, parent);
    apply_status(api, obj, &status)
        .await
        .map_err(KubeCall::Status)?;
    *previous = status;
    Ok(false)
}

fn adopt_hint(object: Object) -> &'static str {
    match object {
        Object::Project => "adopt an existing project with spec.externalId instead",
        Object::Branch => "adopt an existing branch with spec.externalId instead",
        Object::Snapshot => "adopt an existing snapshot with spec.externalId instead",
        Object::Credential => {
            "use a DatabaseProvider whose API offers it (see the capability matrix)"
        }
    }
}

/// The idempotency key of one of `obj`'s create calls: derived from its UID,
/// so a retry after a crash returns what the first call made.
pub fn idempotency_key<K: Resource>(obj: &K, operation: &str) -> Result<String, Error> {
    obj.meta()
        .uid
        .as_ref()
        .map(|uid| format!("dbops-{uid}-{operation}"))
        .ok_or(Error::InvalidObject)
}

/// The last steps of a kind with a connection Secret, once its vendor object
/// is usable: writes the Secret, carries a credential rotation forward, writes
/// status, says what changed, and picks the next pass.
pub async fn connect<K: Connected>(
    obj: &K,
    api: &Api<K>,
    ctx: &Context,
    provider: &dyn Provider,
    previous: &K::Status,
    parent: Option<&ParentProject>,
    vendor: &K::Vendor,
) -> Result<Action, Error> {
    let secret_name = obj.secret_name();
    let (details, written, note) =
        write_connection(obj, ctx, provider, vendor, &secret_name).await?;
    if let Some(old) = plan::stale_secret(K::recorded_secret(previous), &secret_name) {
        secret::delete_owned_secret(&ctx.client, obj, old).await?;
    }
    let mut status = obj.with_vendor(previous, parent, vendor);
    K::set_secret(&mut status, &secret_name);
    let mut message = K::ready_message(vendor, parent, &secret_name);
    if let Some(note) = note {
        message = format!("{message}; {note}");
    }
    let health = Health::ready(message);
    let mut status = obj.status_with_health(&status, &health);
    let target = K::rotation_target(vendor, parent);
    let poll = rotate(
        obj,
        ctx,
        provider,
        &mut status,
        target,
        &secret_name,
        &details,
    )
    .await?;
    let was_ready = K::conditions(previous).is_true(conditions::READY);
    write_if_changed(api, obj, previous, &status).await?;
    let secret = Some((secret_name.as_str(), written == SecretWrite::Written));
    if let Some((reason, note)) = plan::ready_event(K::OBJECT, vendor.id(), was_ready, secret) {
        ctx.publish(obj, EventType::Normal, reason, "Reconcile", note)
            .await;
    }
    let due = rotation::next_due(
        obj.rotation_spec(),
        K::rotation(&status),
        created_at(obj),
        k8s_openapi::jiff::Timestamp::now(),
    );
    Ok(Action::requeue(plan::next_pass(
        ctx.jittered_resync(),
        poll,
        due,
    )))
}

/// Writes the connection Secret from what the vendor reports, laid out as
/// `writeConnectionSecretTo` asks. Vendors that never return the password
/// (the operator chose it) keep the one in the Secret. Also returns what the
/// layout says to the user, if anything.
async fn write_connection<K: Connected>(
    obj: &K,
    ctx: &Context,
    provider: &dyn Provider,
    vendor: &K::Vendor,
    secret_name: &str,
) -> Result<(ConnectionDetails, SecretWrite, Option<String>), Error> {
    let details = ConnectionDetails::parse(vendor.connection_uri(), vendor.pooled_uri()).map_err(
        |source| Error::Connection {
            object: K::OBJECT,
            id: vendor.id().to_string(),
            source,
        },
    )?;
    let details = if details.password.is_empty() {
        match secret::read_kept_password(&ctx.client, obj, secret_name).await? {
            Some(password) => details.with_password(&password),
            None => details,
        }
    } else {
        details
    };
    let (content, rendered) = secret::SecretContent::connection(
        &details,
        obj.connection_target(),
        provider.api().as_str(),
    )?;
    if provider.needs_operator_password() && rendered.password_at.is_none() {
        return Err(Error::PasswordNotInSecret {
            provider: provider.api().to_string(),
        });
    }
    let written = secret::ensure_secret(&ctx.client, obj, secret_name, content).await?;
    Ok((details, written, rendered.note))
}

/// Carries a credential rotation forward and folds it into `status`. Returns
/// a short delay while a vendor job runs.
async fn rotate<K: Connected>(
    obj: &K,
    ctx: &Context,
    provider: &dyn Provider,
    status: &mut K::Status,
    target: RotationTarget,
    secret_name: &str,
    details: &ConnectionDetails,
) -> Result<Option<std::time::Duration>, Error> {
    let created_at = created_at(obj);
    let input = rotation::Input {
        target,
        secret_name,
        layout: obj.connection_target(),
        provider_api: provider.api().as_str(),
        details,
        spec: obj.rotation_spec(),
        state: K::rotation(status),
        created_at,
    };
    let outcome = rotation::carry_forward(obj, ctx, provider, input).await?;
    Ok(rotation::record(outcome, obj, status, ctx).await)
}

fn created_at<K: Resource>(obj: &K) -> Option<k8s_openapi::jiff::Timestamp> {
    obj.meta().creation_timestamp.as_ref().map(|t| t.0)
}

async fn write_if_changed<K: Managed>(
    api: &Api<K>,
    obj: &K,
    previous: &K::Status,
    status: &K::Status,
) -> Result<(), Error> {
    apply_status_if_changed(api, obj, previous, status)
        .await
        .map_err(KubeCall::Status)?;
    Ok(())
}

/// Releases the vendor object before the finalizer goes: leaves it under
/// `deletionPolicy: Retain`, else deletes it (learning the id of a create
/// whose answer was lost by replaying it). Gone counts as deleted.
pub async fn cleanup<K: VendorKind>(obj: &K, ctx: &Context) -> Result<Action, Error> {
    let status = obj.current_status();
    let plan = plan::cleanup(
        obj.deletion_policy(),
        K::recorded_id(&status),
        obj.external_id(),
        K::create_requested(&status),
    );
    let left = plan::left_behind(K::OBJECT, &plan);
    let id = match plan {
        plan::Cleanup::NothingSent => return Ok(Action::await_change()),
        plan::Cleanup::Retain(id) => {
            let note = format!(
                "deletionPolicy Retain: vendor {} {} left in place",
                K::OBJECT,
                id.unwrap_or_default()
            );
            ctx.publish(obj, EventType::Normal, "Retained", "Delete", note)
                .await;
            return Ok(Action::await_change());
        }
        plan::Cleanup::Delete(id) => Some(id.to_string()),
        plan::Cleanup::ReplayCreate => None,
    };
    let Some((provider, parent)) = obj.cleanup_target(ctx, &status, &left).await? else {
        return Ok(Action::await_change());
    };
    let parent = parent.as_ref();
    if !provider.supports(K::DELETE) {
        let (type_, note) = K::not_deletable(&*provider, &left, parent);
        ctx.publish(obj, type_, "NotDeletedByProvider", "Delete", note)
            .await;
        return Ok(Action::await_change());
    }
    let id = match id {
        Some(id) => Some(id),
        None => obj.replay_create(&status, &*provider, parent, ctx).await?,
    };
    let Some(id) = id else {
        return Ok(Action::await_change());
    };
    let note = match K::delete(&*provider, parent, &id).await {
        // What goes with it (a project's branches, snapshots) is the vendor's
        // business, and not every document says: the note claims nothing more.
        Ok(()) => format!("deleted vendor {} {id}", K::OBJECT),
        Err(e) if e.is_not_found() => format!("vendor {} {id} was already gone", K::OBJECT),
        Err(source) => {
            return Err(VendorCall::new(format!("deleting {} {id}", K::OBJECT), source).into());
        }
    };
    ctx.publish(obj, EventType::Normal, "Deleted", "Delete", note)
        .await;
    Ok(Action::await_change())
}
