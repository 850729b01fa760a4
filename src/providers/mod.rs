//! Vendor APIs behind one set of traits.
//!
//! Controllers talk to an `Arc<dyn Provider>` and never learn which vendor is
//! behind it. Each capability family has its own trait ([`ProjectApi`],
//! [`BranchApi`], [`SnapshotApi`]); every method has a default that answers
//! [`ProviderError::Unsupported`], so a vendor implements exactly what its API
//! offers and declares it in [`Provider::capabilities`].

pub mod capydb;
pub mod db9;
mod error;
pub mod fuzzing;
pub mod http;
pub mod infrai;
pub mod infrai_byok;
pub mod matrix;
mod registry;
pub mod supabase;

use std::fmt;

use async_trait::async_trait;
use secrecy::{ExposeSecret, SecretString};

pub use error::ProviderError;
pub use registry::{BuildError, ProviderConfig, ProviderRegistry, build};

use crate::api::v1alpha1::ProviderApi;

/// One operation a provider may support; the unit of the capability matrix.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Operation {
    ProjectCreate,
    ProjectGet,
    ProjectDelete,
    BranchCreate,
    BranchGet,
    BranchDelete,
    SnapshotCreate,
    SnapshotGet,
    SnapshotDelete,
    SnapshotRestore,
    ByokRegister,
    ByokRotate,
    ByokRevoke,
    ByokPolicy,
    /// Rotate a project's database password.
    CredentialRotate,
    /// Rotate a branch's database password.
    BranchCredentialRotate,
}

impl Operation {
    /// Every operation, in matrix order.
    pub const ALL: [Operation; 16] = [
        Operation::ProjectCreate,
        Operation::ProjectGet,
        Operation::ProjectDelete,
        Operation::BranchCreate,
        Operation::BranchGet,
        Operation::BranchDelete,
        Operation::SnapshotCreate,
        Operation::SnapshotGet,
        Operation::SnapshotDelete,
        Operation::SnapshotRestore,
        Operation::ByokRegister,
        Operation::ByokRotate,
        Operation::ByokRevoke,
        Operation::ByokPolicy,
        Operation::CredentialRotate,
        Operation::BranchCredentialRotate,
    ];

    /// A stable, human-readable name (`project.create`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::ProjectCreate => "project.create",
            Operation::ProjectGet => "project.get",
            Operation::ProjectDelete => "project.delete",
            Operation::BranchCreate => "branch.create",
            Operation::BranchGet => "branch.get",
            Operation::BranchDelete => "branch.delete",
            Operation::SnapshotCreate => "snapshot.create",
            Operation::SnapshotGet => "snapshot.get",
            Operation::SnapshotDelete => "snapshot.delete",
            Operation::SnapshotRestore => "snapshot.restore",
            Operation::ByokRegister => "byok.register",
            Operation::ByokRotate => "byok.rotate",
            Operation::ByokRevoke => "byok.revoke",
            Operation::ByokPolicy => "byok.policy",
            Operation::CredentialRotate => "credentials.rotate",
            Operation::BranchCredentialRotate => "branch.credentials.rotate",
        }
    }
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A connection URI. Its `Debug` never shows the value (it carries a password).
#[derive(Clone)]
pub struct ConnectionUri(SecretString);

impl ConnectionUri {
    pub fn new(uri: impl Into<String>) -> Self {
        Self(SecretString::from(uri.into()))
    }

    /// The full URI, password included. Only the Secret builder should call this.
    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }
}

impl fmt::Debug for ConnectionUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ConnectionUri([REDACTED])")
    }
}

impl PartialEq for ConnectionUri {
    fn eq(&self, other: &Self) -> bool {
        self.expose() == other.expose()
    }
}

/// A database password. Its `Debug` never shows the value.
#[derive(Clone)]
pub struct Password(SecretString);

impl Password {
    pub fn new(password: impl Into<String>) -> Self {
        Self(SecretString::from(password.into()))
    }

    /// A strong random password (32 characters from a 62-letter alphabet, about 190 bits).
    pub fn generate() -> Self {
        const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
        let password: String = (0..32)
            .map(|_| ALPHABET[rand::random_range(0..ALPHABET.len())] as char)
            .collect();
        Self::new(password)
    }

    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password([REDACTED])")
    }
}

impl PartialEq for Password {
    fn eq(&self, other: &Self) -> bool {
        self.expose() == other.expose()
    }
}

impl Eq for Password {}

/// What the operator asks for when it creates a project.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProjectRequest {
    pub name: String,
    pub vendor: Option<String>,
    pub region: Option<String>,
    pub plan: Option<String>,
    pub mode: Option<String>,
    pub postgres_version: Option<String>,
    /// A database password the operator generated, for APIs that take one on
    /// create (Supabase's `db_pass`, DB9's `admin_password`). The operator keeps
    /// it only in the connection Secret.
    pub db_password: Option<Password>,
}

/// Where a restore into a new project is.
#[derive(Clone, Debug, PartialEq)]
pub enum RestoreProgress {
    /// The new project exists (it may still be provisioning; see its `state`).
    Done(VendorProject),
    /// The vendor is still restoring; poll [`ProjectApi::restore_status`] with `handle`.
    Pending { handle: String, state: String },
    /// The vendor gave up; the string is its state or error.
    Failed(String),
}

/// What to rotate the database password of.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RotationTarget {
    Project { id: String },
    Branch { project_id: String, id: String },
}

/// Where a credential rotation is.
#[derive(Clone, Debug, PartialEq)]
pub enum RotationProgress {
    /// The vendor confirmed the new credentials. `connection_uri` is the full new
    /// URI when the vendor returns one; otherwise `password` is the new password
    /// (the rest of the connection details are unchanged).
    Done {
        connection_uri: Option<ConnectionUri>,
        pooled_uri: Option<ConnectionUri>,
        password: Option<Password>,
    },
    /// An asynchronous rotation job is running; poll [`CredentialApi::rotation_status`].
    Pending { job_id: String, state: String },
    /// The vendor reports the rotation as failed (old credentials still valid).
    Failed(String),
}

/// A restore of a snapshot into a new project.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RestoreRequest {
    pub snapshot_id: String,
    pub new_name: Option<String>,
}

/// A project as the vendor reports it.
#[derive(Clone, Debug, PartialEq)]
pub struct VendorProject {
    pub id: String,
    pub name: String,
    pub region: Option<String>,
    pub created_at: Option<String>,
    /// Where the project is in its life at the vendor.
    pub state: ResourceState,
    /// Direct connection URI, when the vendor returns one.
    pub connection_uri: Option<ConnectionUri>,
    /// Pooled connection URI, when the vendor offers one.
    pub pooled_uri: Option<ConnectionUri>,
}

/// A branch as the vendor reports it.
#[derive(Clone, Debug, PartialEq)]
pub struct VendorBranch {
    pub id: String,
    pub name: String,
    pub project_id: String,
    pub state: ResourceState,
    pub connection_uri: Option<ConnectionUri>,
    pub pooled_uri: Option<ConnectionUri>,
}

/// A snapshot as the vendor reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VendorSnapshot {
    pub id: String,
    pub project_id: String,
    pub label: Option<String>,
    pub created_at: Option<String>,
    pub state: ResourceState,
}

/// The life-cycle state of an asynchronously provisioned vendor object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ResourceState {
    /// Usable now.
    Ready,
    /// Still being provisioned; poll again. The string is the vendor's own state name.
    Provisioning(String),
    /// The vendor gave up on it; the string is the vendor's state or error.
    Failed(String),
}

/// A create call's branch request.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BranchRequest {
    pub project_id: String,
    pub branch_name: String,
    pub from_branch: Option<String>,
}

/// A create call's snapshot request.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SnapshotRequest {
    pub project_id: String,
    pub label: Option<String>,
}

type Result<T> = std::result::Result<T, ProviderError>;

/// Projects: create, read, delete, restore from a snapshot.
#[async_trait]
pub trait ProjectApi: Send + Sync {
    /// Create a project. `idempotency_key` makes a retry return the same project.
    async fn create_project(
        &self,
        req: &ProjectRequest,
        idempotency_key: &str,
    ) -> Result<VendorProject> {
        let _ = (req, idempotency_key);
        Err(self.unsupported(Operation::ProjectCreate))
    }

    /// Read a project; [`ProviderError::is_not_found`] when it does not exist.
    async fn get_project(&self, id: &str) -> Result<VendorProject> {
        let _ = id;
        Err(self.unsupported(Operation::ProjectGet))
    }

    /// Delete a project (and, at every vendor so far, its branches and snapshots).
    async fn delete_project(&self, id: &str) -> Result<()> {
        let _ = id;
        Err(self.unsupported(Operation::ProjectDelete))
    }

    /// Restore a snapshot into a new project (possibly asynchronously).
    async fn restore_snapshot(
        &self,
        req: &RestoreRequest,
        idempotency_key: &str,
    ) -> Result<RestoreProgress> {
        let _ = (req, idempotency_key);
        Err(self.unsupported(Operation::SnapshotRestore))
    }

    /// Polls an asynchronous restore started by [`ProjectApi::restore_snapshot`].
    async fn restore_status(&self, handle: &str) -> Result<RestoreProgress> {
        let _ = handle;
        Err(self.unsupported(Operation::SnapshotRestore))
    }

    /// The error every unimplemented operation answers with.
    fn unsupported(&self, operation: Operation) -> ProviderError;
}

/// Copy-on-write branches.
#[async_trait]
pub trait BranchApi: ProjectApi {
    async fn create_branch(
        &self,
        req: &BranchRequest,
        idempotency_key: &str,
    ) -> Result<VendorBranch> {
        let _ = (req, idempotency_key);
        Err(self.unsupported(Operation::BranchCreate))
    }

    async fn get_branch(&self, project_id: &str, id: &str) -> Result<VendorBranch> {
        let _ = (project_id, id);
        Err(self.unsupported(Operation::BranchGet))
    }

    async fn delete_branch(&self, project_id: &str, id: &str) -> Result<()> {
        let _ = (project_id, id);
        Err(self.unsupported(Operation::BranchDelete))
    }
}

/// Point-in-time snapshots.
#[async_trait]
pub trait SnapshotApi: ProjectApi {
    async fn create_snapshot(
        &self,
        req: &SnapshotRequest,
        idempotency_key: &str,
    ) -> Result<VendorSnapshot> {
        let _ = (req, idempotency_key);
        Err(self.unsupported(Operation::SnapshotCreate))
    }

    async fn get_snapshot(&self, project_id: &str, id: &str) -> Result<VendorSnapshot> {
        let _ = (project_id, id);
        Err(self.unsupported(Operation::SnapshotGet))
    }

    async fn delete_snapshot(&self, project_id: &str, id: &str) -> Result<()> {
        let _ = (project_id, id);
        Err(self.unsupported(Operation::SnapshotDelete))
    }
}

/// Database password rotation.
#[async_trait]
pub trait CredentialApi: ProjectApi {
    /// Rotates the database password of `target`. `proposed` is a fresh strong
    /// password for APIs that take one (Supabase); APIs that generate their own
    /// ignore it. `idempotency_key` is sent where the API takes one.
    async fn rotate_credentials(
        &self,
        target: &RotationTarget,
        proposed: &Password,
        idempotency_key: &str,
    ) -> Result<RotationProgress> {
        let _ = (target, proposed, idempotency_key);
        Err(self.unsupported(Operation::CredentialRotate))
    }

    /// Polls an asynchronous rotation.
    async fn rotation_status(
        &self,
        target: &RotationTarget,
        job_id: &str,
    ) -> Result<RotationProgress> {
        let _ = (target, job_id);
        Err(self.unsupported(Operation::CredentialRotate))
    }
}

pub use infrai_byok::ByokApi;

/// A vendor API account, as the controllers see it.
pub trait Provider: ProjectApi + BranchApi + SnapshotApi + ByokApi + CredentialApi {
    /// Which vendor API this is.
    fn api(&self) -> ProviderApi;

    /// The operations this provider implements; everything else answers `Unsupported`.
    fn capabilities(&self) -> &'static [Operation];

    /// Whether the operator must choose the database password on create (the
    /// API takes one and never returns it, e.g. Supabase's `db_pass`).
    fn needs_operator_password(&self) -> bool {
        false
    }

    /// What to do instead of `operation` when this provider lacks it, for the
    /// `UnsupportedByProvider` message (`None`: no specific advice).
    fn unsupported_hint(&self, operation: Operation) -> Option<&'static str> {
        let _ = operation;
        None
    }

    /// Whether `operation` is implemented.
    fn supports(&self, operation: Operation) -> bool {
        self.capabilities().contains(&operation)
    }
}
