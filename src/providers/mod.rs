//! Vendor APIs behind one set of traits, in three layers that use only the
//! ones below them (and `api`, `metrics`): [`base`], then [`clients`], then
//! [`registry`].
//!
//! - [`base`]: the traits (`Provider` and its capability families), errors,
//!   HTTP plumbing, the neutral BYOK model and the `Assumption` type;
//! - [`clients`]: one client per vendor API, built on `base` alone;
//! - [`registry`]: the registered vendors ([`VENDORS`]), the client builder,
//!   the contract lists and the capability matrix.
//!
//! Controllers talk to an `Arc<dyn Provider>` and never learn which vendor is
//! behind it. The names below are the crate's paths into the three layers.

pub mod base;
pub mod clients;
pub mod registry;

pub use base::{
    Assumption, BranchApi, BranchLifecycle, BranchRequest, BuildError, ByokApi, ConnectionUri,
    CredentialApi, MAX_GENERATED_NAME, Operation, Password, ProjectApi, ProjectLifecycle,
    ProjectRequest, Provider, ProviderConfig, ProviderError, ResourceState, RestoreApi,
    RestoreProgress, RestoreRequest, Resume, RotationProgress, RotationTarget, SnapshotApi,
    SnapshotDeletion, SnapshotRequest, VendorBranch, VendorObject, VendorProject, VendorSnapshot,
    byok, generated_name, http, name_is_own,
};
pub use clients::{capydb, db9, infrai, infrai_byok, postgres, supabase};
pub use registry::{ProviderRegistry, VENDORS, build, contract, matrix, vendors};
