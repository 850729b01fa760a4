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
//! a connection Secret, both in `kind.rs`); the steps here are written once.

use kube::api::Api;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::{Resource, ResourceExt};

use super::error::{Error, Object};
use super::kind::{Connected, Created, ParentProject, VendorKind, create_sent};
use super::plan::{self, Settle, Source};
use super::rotation;
use crate::api::v1alpha1::DeletionPolicy;
use crate::controllers::protection::ProviderHandle;
use crate::controllers::protection::claims::{ClaimError, holder_of};
use crate::controllers::runtime::conditions::{self, Health, reason};
use crate::controllers::runtime::reconciler::{
    self, Managed, apply_status, apply_status_if_changed, requeue,
};
use crate::controllers::runtime::{Context, KubeCall, VendorCall, kube_error};
use crate::controllers::secret::{self, ConnectionDetails, SecretWrite};
use crate::providers::{Operation, Provider, RotationTarget, VendorObject};

/// What the shared read-adopt-create step came to.
pub enum Obtained<V> {
    /// The vendor object is usable (its id is saved by the step that
    /// follows). When this pass created it, the `Created` Event's note,
    /// published together with the one that says it is ready.
    Usable(V, Option<String>),
    /// Not usable yet: status says why; look again then.
    Requeue(Action),
}

/// Reads the saved vendor object, adopts `spec.externalId`, or creates one;
/// then waits until the vendor reports it usable and saves its id.
///
/// Adoption is a privilege the provider grants ([`check_adoption`], on every
/// pass), and every vendor object is claimed by this resource before
/// anything of it is revealed or changed: the saved one on every pass (which
/// the claims' watch cache makes free), an adopted one before it is read, a
/// new one as soon as the vendor answers.
pub async fn obtain<K: VendorKind>(
    obj: &K,
    api: &Api<K>,
    ctx: &Context,
    previous: &mut K::Status,
    provider: &ProviderHandle,
    parent: Option<&ParentProject>,
) -> Result<Obtained<K::Vendor>, Error> {
    check_adoption(obj, provider)?;
    let recorded = K::recorded_id(previous).map(str::to_string);
    let (vendor, created) = match plan::source(recorded.as_deref(), obj.external_id()) {
        Source::Create => match create(obj, api, ctx, previous, provider, parent).await? {
            Obtained::Usable(vendor, created) => (vendor, created),
            requeue => return Ok(requeue),
        },
        Source::Recorded(id) => {
            claim(obj, ctx, provider, id).await?;
            (read_recorded::<K>(&**provider, parent, id).await?, None)
        }
        Source::Adopt(id) => {
            let vendor = adopt(obj, ctx, provider, parent, id).await?;
            K::set_adopted(previous, true);
            (vendor, None)
        }
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
            if let Some(note) = created {
                publish_created(obj, ctx, note).await;
            }
            Ok(Obtained::Requeue(requeue(
                obj,
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
            Ok(Obtained::Usable(vendor, created))
        }
        Settle::Proceed => Ok(Obtained::Usable(vendor, created)),
    }
}

/// Refuses a spec that names an existing vendor object (`externalId`, a
/// raw snapshot id or branch name) in a namespace the provider does not
/// admit for adoption: nothing is sent to the vendor for it.
pub fn check_adoption<K: VendorKind>(obj: &K, provider: &ProviderHandle) -> Result<(), Error> {
    match (obj.adoption(), provider.adoption()) {
        (Some(adoption), Err(_)) => Err(Error::AdoptionNotAllowed {
            adoption,
            provider: provider.name().to_string(),
            namespace: obj.namespace().unwrap_or_default(),
        }),
        _ => Ok(()),
    }
}

/// Claims vendor object `id` for `obj` ([`Context::claim`]).
pub async fn claim<K: VendorKind>(
    obj: &K,
    ctx: &Context,
    provider: &ProviderHandle,
    id: &str,
) -> Result<(), Error> {
    let holder = holder_of(obj).ok_or(Error::InvalidObject)?;
    ctx.claim(&provider.claim_key(K::CLAIM, id), &holder, provider.name())
        .await?;
    Ok(())
}

/// Takes over `spec.externalId`: claims it, reads it, and for a branch or
/// snapshot checks that the vendor shows it to be a child of the parent's
/// project. A claim that leads nowhere (gone, another project's) is released
/// again at once, so it never keeps the object from its rightful owner.
async fn adopt<K: VendorKind>(
    obj: &K,
    ctx: &Context,
    provider: &ProviderHandle,
    parent: Option<&ParentProject>,
    id: &str,
) -> Result<K::Vendor, Error> {
    claim(obj, ctx, provider, id).await?;
    let read = match K::read(&**provider, parent, id).await {
        Ok(vendor) => match plan::adopted_elsewhere(K::OBJECT, id, parent, vendor.project_id()) {
            None => Ok(vendor),
            Some(error) => Err(error),
        },
        Err(e) if e.is_not_found() => Err(plan::not_found(K::OBJECT, id, true)),
        Err(e) => return Err(VendorCall::new(format!("reading {} {id}", K::OBJECT), e).into()),
    };
    match read {
        Ok(vendor) => {
            ctx.publish(
                obj,
                EventType::Normal,
                "Adopted",
                "Adopt",
                format!("adopted existing vendor {} {}", K::OBJECT, vendor.id()),
            )
            .await;
            Ok(vendor)
        }
        Err(error) => {
            let uid = obj.meta().uid.as_deref().unwrap_or_default();
            ctx.release(&provider.claim_key(K::CLAIM, id), uid)
                .await
                .map_err(KubeCall::Write)?;
            Err(error)
        }
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

/// Creates the vendor object, or shows why it waits. What the vendor made is
/// claimed at once; a first attempt the vendor refused outright is unmarked,
/// so the next one is a first attempt again.
async fn create<K: VendorKind>(
    obj: &K,
    api: &Api<K>,
    ctx: &Context,
    previous: &mut K::Status,
    provider: &ProviderHandle,
    parent: Option<&ParentProject>,
) -> Result<Obtained<K::Vendor>, Error> {
    let before = previous.clone();
    let first = !K::create_requested(&before);
    let created = match obj.create(api, previous, provider, parent, ctx).await {
        Err(error) if first && error.made_nothing() => {
            // Nothing was made: the next attempt is a first attempt again, and
            // must not take another object for its own.
            if before != obj.current_status() || K::create_requested(previous) {
                let mut undone = before.clone();
                K::set_create_requested(&mut undone, false);
                apply_status(api, obj, &undone)
                    .await
                    .map_err(KubeCall::Status)?;
            }
            *previous = before;
            return Err(error);
        }
        created => created?,
    };
    match created {
        Created::New { vendor, note } => {
            tracing::info!(object = %K::OBJECT, id = %vendor.id(), "created at the vendor");
            claim(obj, ctx, provider, vendor.id()).await?;
            Ok(Obtained::Usable(vendor, Some(note)))
        }
        Created::Waiting { health, poll } => {
            let status = obj.status_with_health(previous, &health);
            write_if_changed(api, obj, previous, &status).await?;
            let delay = if poll {
                ctx.settings.provisioning_poll
            } else {
                ctx.jittered_resync()
            };
            Ok(Obtained::Requeue(requeue(obj, delay)))
        }
    }
}

/// Says that this pass created the vendor object (a `Created` Event).
pub async fn publish_created<K: Resource<DynamicType = ()>>(obj: &K, ctx: &Context, note: String) {
    ctx.publish(obj, EventType::Normal, "Created", "Create", note)
        .await;
}

/// Reads the saved vendor object; gone means deleted outside dbops.
async fn read_recorded<K: VendorKind>(
    provider: &dyn Provider,
    parent: Option<&ParentProject>,
    id: &str,
) -> Result<K::Vendor, Error> {
    match K::read(provider, parent, id).await {
        Ok(vendor) => Ok(vendor),
        Err(e) if e.is_not_found() => Err(plan::not_found(K::OBJECT, id, false)),
        Err(e) => Err(VendorCall::new(format!("reading {} {id}", K::OBJECT), e).into()),
    }
}

/// Whether `obj` may go without the cleanup finalizer for now: nothing has
/// been sent to the vendor for it, and it adopts nothing. [`begin_create`]
/// adds the finalizer with its marker.
pub fn defers_finalizer<K: VendorKind>(obj: &K) -> bool {
    let status = obj.current_status();
    matches!(
        plan::source(K::recorded_id(&status), obj.external_id()),
        Source::Create
    ) && !create_sent(obj, &status)
}

/// The common start of every create: refuses an operation the provider lacks;
/// before the first call, refuses a deleting provider or namespace, protects
/// the provider and its Secret, and marks the object: `createRequested` in
/// status (with what a replay needs, such as a branch's parent), then the
/// cleanup finalizer, so a delete before the answer is saved can still find
/// what was made.
///
/// Returns whether the create is *resumed*: an earlier reconcile already sent
/// it, so the vendor may hold what it made. The cached object is never older
/// than this process's last write to it (`runtime::freshness`), and a new
/// leader starts from a fresh list, so the mark is seen when it was made.
/// Only a resumed create may take an object found under its name for its own,
/// and only with proof ([`crate::providers::Resume`]).
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
    if create_sent(obj, previous) {
        return Ok(true);
    }
    let namespace = obj.namespace().ok_or(Error::InvalidObject)?;
    ctx.prepare_create(provider, &namespace).await?;
    let mut recorded = previous.clone();
    K::record_for_create(&mut recorded, parent);
    K::set_create_requested(&mut recorded, true);
    let status = obj.status_with_health(&recorded, &Health::progressing(reason::CREATING, message));
    let written = apply_status(api, obj, &status)
        .await
        .map_err(KubeCall::Status)?;
    if !reconciler::has_finalizer(written.meta()) {
        let patch = reconciler::metadata_patch(written.meta(), Some(true), &[]);
        reconciler::patch_metadata(api, &written, &patch)
            .await
            .map_err(KubeCall::Finalizer)?;
    }
    *previous = status;
    Ok(false)
}

/// How a create of vendor name `name` for `obj` resumes ([`crate::providers::Resume`]).
pub fn resume_of<K: Resource>(obj: &K, resumed: bool, name: &str) -> crate::providers::Resume {
    crate::providers::Resume::of(resumed, name, obj.meta().uid.as_deref().unwrap_or_default())
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

/// The password the operator chose for providers that take one on create
/// ([`Provider::needs_operator_password`]), for `obj`'s connection Secret
/// `secret_name`. It lives only in that Secret, written before the create
/// call so a crash never loses it; a retry reads it back from there.
///
/// A `replay` during cleanup only learns the id of what a lost create made
/// (by idempotency key or name), which is deleted right after: it never
/// writes the Secret (in a namespace being deleted it could not), and a
/// throwaway password does when there is none to read.
pub async fn operator_password<K>(
    obj: &K,
    secret_name: &str,
    provider: &dyn Provider,
    ctx: &Context,
    replay: bool,
) -> Result<Option<crate::providers::Password>, Error>
where
    K: Resource<DynamicType = ()>,
{
    use crate::providers::Password;
    if !provider.needs_operator_password() {
        return Ok(None);
    }
    if let Some(existing) = secret::read_kept_password(&ctx.client, obj, secret_name).await? {
        return Ok(Some(Password::new(existing)));
    }
    let password = Password::generate();
    if replay {
        return Ok(Some(password));
    }
    let data = std::collections::BTreeMap::from([(
        secret::keys::PASSWORD.to_string(),
        k8s_openapi::ByteString(password.expose().as_bytes().to_vec()),
    )]);
    secret::ensure_secret(
        &ctx.client,
        obj,
        secret_name,
        secret::SecretContent::opaque(data),
    )
    .await?;
    Ok(Some(password))
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
#[allow(clippy::too_many_arguments)]
pub async fn connect<K: Connected>(
    obj: &K,
    api: &Api<K>,
    ctx: &Context,
    provider: &dyn Provider,
    previous: &K::Status,
    parent: Option<&ParentProject>,
    vendor: &K::Vendor,
    created: Option<String>,
) -> Result<Action, Error> {
    let secret_name = obj.secret_name();
    let steps = async {
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
        if K::adopted(previous) {
            message = format!("{message}; {}", adopted_note::<K>(obj));
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
        Ok::<_, Error>((status, written, poll))
    };
    // Boxed: the steps' future is large, and debug builds poll it on the stack.
    let (status, written, poll) = match Box::pin(steps).await {
        Ok(done) => done,
        Err(error) => {
            save_vendor_id(obj, api, previous, parent, vendor).await;
            if let Some(note) = created {
                publish_created(obj, ctx, note).await;
            }
            return Err(error);
        }
    };
    let was_ready = K::conditions(previous).is_true(conditions::READY);
    write_if_changed(api, obj, previous, &status).await?;
    let secret = Some((secret_name.as_str(), written == SecretWrite::Written));
    let ready = plan::ready_event(K::OBJECT, vendor.id(), was_ready, secret);
    match (created, ready) {
        // Made and ready in one pass: one Event says both.
        (Some(note), Some((_, ready))) => {
            publish_created(obj, ctx, format!("{note}; {ready}")).await
        }
        (Some(note), None) => publish_created(obj, ctx, note).await,
        (None, Some((reason, note))) => {
            ctx.publish(obj, EventType::Normal, reason, "Reconcile", note)
                .await
        }
        (None, None) => {}
    }
    let due = rotation::next_due(
        obj.rotation_spec(),
        K::rotation(&status),
        created_at(obj),
        k8s_openapi::jiff::Timestamp::now(),
    );
    Ok(requeue(
        obj,
        plan::next_pass(ctx.jittered_resync(), poll, due),
    ))
}

/// What the Ready message says of an adopted object: it is kept at the
/// vendor unless the spec says `Delete`.
pub fn adopted_note<K: VendorKind>(obj: &K) -> String {
    let kept = match obj.deletion_policy() {
        DeletionPolicy::Retain => "it is kept at the vendor when this resource is deleted",
        DeletionPolicy::Delete => "spec.deletionPolicy Delete: it is deleted with this resource",
    };
    format!("adopted {}: {kept}", K::OBJECT)
}

/// Saves the vendor object's id (with what else the vendor reports) when a
/// step after it was made failed before status was written: what was made is
/// never forgotten. Best effort: the failure that led here is what is
/// reported, and a create resumed later finds the object again anyway.
async fn save_vendor_id<K: VendorKind>(
    obj: &K,
    api: &Api<K>,
    previous: &K::Status,
    parent: Option<&ParentProject>,
    vendor: &K::Vendor,
) {
    let status = obj.with_vendor(previous, parent, vendor);
    if K::recorded_id(previous) == K::recorded_id(&status) {
        return;
    }
    let health = Health::progressing(
        reason::CREATING,
        format!("{} exists at the vendor; finishing its setup", K::OBJECT),
    );
    let status = obj.status_with_health(&status, &health);
    if let Err(error) = apply_status(api, obj, &status).await {
        tracing::warn!(error = %kube_error::describe(&error), "could not save the vendor id");
    }
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
    )
    .await?;
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
    // An adopted object is rotated too: this resource holds its claim (no
    // other dbops resource can use it), and adopting it was a privilege the
    // provider's owner granted. The `postgres` API never changes the
    // password of a role it did not make with the database.
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
/// whose answer was lost by replaying it). Gone counts as deleted. Either
/// way, every claim the resource holds is released last.
///
/// Nothing is deleted that this resource cannot show is its own: it must
/// hold (or be able to take) the object's claim, a child's object must
/// still belong to its parent's project, and a replay must prove what it
/// found ([`crate::providers::Resume`]). Where it cannot, the cleanup leaves
/// the object, says so in a Warning Event, and finishes.
pub async fn cleanup<K: VendorKind>(obj: &K, ctx: &Context) -> Result<Action, Error> {
    let status = obj.current_status();
    let plan = plan::cleanup(
        obj.deletion_policy(),
        K::recorded_id(&status),
        create_sent(obj, &status),
    );
    match plan {
        plan::Cleanup::NothingSent => {}
        plan::Cleanup::Retain(id) => {
            let note = format!(
                "deletionPolicy Retain: vendor {} {} left in place",
                K::OBJECT,
                id.unwrap_or_default()
            );
            ctx.publish(obj, EventType::Normal, "Retained", "Delete", note)
                .await;
        }
        plan::Cleanup::Delete(_) | plan::Cleanup::ReplayCreate => {
            delete_at_vendor(obj, ctx, &status, &plan).await?;
        }
    }
    ctx.release_all(obj).await.map_err(KubeCall::Write)?;
    Ok(Action::await_change())
}

/// The vendor part of a cleanup with `deletionPolicy: Delete`.
async fn delete_at_vendor<K: VendorKind>(
    obj: &K,
    ctx: &Context,
    status: &K::Status,
    plan: &plan::Cleanup<'_>,
) -> Result<(), Error> {
    let left = plan::left_behind(K::OBJECT, plan);
    let Some((provider, parent)) = obj.cleanup_target(ctx, status, &left).await? else {
        return Ok(());
    };
    let parent = parent.as_ref();
    if !provider.supports(K::DELETE) {
        let (type_, note) = K::not_deletable(&*provider, &left, parent);
        ctx.publish(obj, type_, "NotDeletedByProvider", "Delete", note)
            .await;
        return Ok(());
    }
    let id = match plan {
        plan::Cleanup::Delete(id) => id.to_string(),
        _ => match obj.replay_create(status, &*provider, parent, ctx).await {
            Ok(Some(id)) => id,
            Ok(None) => return Ok(()),
            Err(error) if error.is_create_uncertain() => {
                let note = format!("{error}, so it was not deleted");
                ctx.cleanup_skipped(obj, note).await;
                return Ok(());
            }
            Err(error) => return Err(error),
        },
    };
    match claim(obj, ctx, &provider, &id).await {
        Ok(()) => {}
        Err(Error::Claim(ClaimError::Taken { .. })) => {
            let note = format!(
                "vendor {} {id} is held by another dbops resource, so it was not deleted",
                K::OBJECT
            );
            ctx.cleanup_skipped(obj, note).await;
            return Ok(());
        }
        Err(error) => return Err(error),
    }
    if let Some(parent) = parent {
        let read = match K::read(&*provider, Some(parent), &id).await {
            Ok(vendor) => Ok(vendor.project_id().map(str::to_string)),
            Err(e) if e.is_not_found() => Err(()),
            Err(e) => {
                return Err(VendorCall::new(format!("reading {} {id}", K::OBJECT), e).into());
            }
        };
        match plan::child_check(parent, read.as_ref().map(|p| p.as_deref()).map_err(|_| ())) {
            plan::ChildCheck::Delete => {}
            plan::ChildCheck::Gone => {
                let note = format!("vendor {} {id} was already gone", K::OBJECT);
                ctx.publish(obj, EventType::Normal, "Deleted", "Delete", note)
                    .await;
                return Ok(());
            }
            plan::ChildCheck::Foreign => {
                let note = format!(
                    "vendor {} {id} does not belong to the project of DatabaseProject {:?}, so it was not deleted",
                    K::OBJECT,
                    parent.name
                );
                ctx.cleanup_skipped(obj, note).await;
                return Ok(());
            }
        }
    }
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
    Ok(())
}
