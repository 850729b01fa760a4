//! What a kind that stands for one vendor object says about itself: the
//! [`VendorKind`] trait (and [`Connected`] when it has a connection Secret),
//! and the [`ParentProject`] of a branch or snapshot. The steps
//! (`steps.rs`) are written once against these.

use async_trait::async_trait;
use kube::api::Api;
use kube::runtime::events::EventType;

use super::error::{Error, Object};
use crate::api::v1alpha1::{
    ClaimedObject, ConnectionSecretTarget, CredentialRotationSpec, CredentialRotationStatus,
    DeletionPolicy,
};
use crate::controllers::protection::ProviderHandle;
use crate::controllers::protection::tenancy::Adoption;
use crate::controllers::runtime::conditions::Health;
use crate::controllers::runtime::{Context, Managed};
use crate::providers::{Operation, Provider, ProviderError, RotationTarget, VendorObject};

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

/// What differs between the kinds that stand for one vendor object.
#[async_trait]
pub trait VendorKind: Managed {
    /// How messages name the vendor object.
    const OBJECT: Object;
    /// The operation that deletes it.
    const DELETE: Operation;
    /// What a claim of it names.
    const CLAIM: ClaimedObject;
    /// Whether the id is saved in its own status write before the steps that
    /// follow. No kind needs it: a [`Connected`] kind saves the id with its one
    /// status write, and `steps::connect` saves it alone when a step before that
    /// write fails, so nothing made at the vendor is forgotten.
    const SAVE_ID_FIRST: bool = false;
    /// The vendor object as the provider reports it.
    type Vendor: VendorObject + Send + Sync;

    fn recorded_id(status: &Self::Status) -> Option<&str>;
    /// The create mark: status, which only the operator writes.
    fn create_requested(status: &Self::Status) -> bool;
    fn set_create_requested(status: &mut Self::Status, requested: bool);
    /// Whether the vendor object was adopted rather than made by dbops.
    fn adopted(status: &Self::Status) -> bool;
    fn set_adopted(status: &mut Self::Status, adopted: bool);
    fn external_id(&self) -> Option<&str>;
    /// The first field of the spec that names an existing vendor object
    /// (adoption, a privilege the provider grants), if any.
    fn adoption(&self) -> Option<Adoption>;
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
    /// Records in `status` what a replay or cleanup of a create about to be
    /// sent needs to know (a branch's or snapshot's parent); nothing by default.
    fn record_for_create(_status: &mut Self::Status, _parent: Option<&ParentProject>) {}

    /// Reads vendor object `id`.
    async fn read(
        provider: &dyn Provider,
        parent: Option<&ParentProject>,
        id: &str,
    ) -> Result<Self::Vendor, ProviderError>;

    /// Creates the vendor object; starts with `steps::begin_create`.
    async fn create(
        &self,
        api: &Api<Self>,
        previous: &mut Self::Status,
        provider: &ProviderHandle,
        parent: Option<&ParentProject>,
        ctx: &Context,
    ) -> Result<Created<Self::Vendor>, Error>;

    /// The provider (and parent) a cleanup goes through, or `None` when it
    /// cannot be reached any more (an Event has said why). A child's goes
    /// through its parent project's provider (`parent::child_cleanup_target`).
    async fn cleanup_target(
        &self,
        ctx: &Context,
        status: &Self::Status,
        left: &str,
    ) -> Result<Option<(ProviderHandle, Option<ParentProject>)>, Error>;

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
    fn connection_target(&self) -> Option<&ConnectionSecretTarget>;
    fn rotation_spec(&self) -> Option<&CredentialRotationSpec>;
    fn rotation(status: &Self::Status) -> Option<&CredentialRotationStatus>;
    fn rotation_mut(status: &mut Self::Status) -> &mut Option<CredentialRotationStatus>;
    fn rotation_target(vendor: &Self::Vendor, parent: Option<&ParentProject>) -> RotationTarget;
    /// The Ready message.
    fn ready_message(vendor: &Self::Vendor, parent: Option<&ParentProject>, secret: &str)
    -> String;
}

/// Whether a create was ever sent for `obj`: the mark in status, which only
/// the operator writes (a namespace user who can edit the resource's
/// metadata and spec cannot forge it).
pub fn create_sent<K: VendorKind>(_obj: &K, status: &K::Status) -> bool {
    K::create_requested(status)
}
