//! The provider traits and the types they speak in.
//!
//! Controllers talk to an `Arc<dyn Provider>` and never learn which vendor is
//! behind it. Each capability family has its own trait ([`ProjectLifecycle`],
//! [`BranchApi`], [`SnapshotApi`], [`ByokApi`], ...); a vendor implements
//! exactly the families its API offers and hands them out through the
//! [`Provider`] accessors, which are the one source of its capabilities.

use std::fmt;

use async_trait::async_trait;
use secrecy::{ExposeSecret, SecretString};

use super::byok::ByokApi;
use super::error::ProviderError;
use super::operation::Operation;
use super::sql::SqlApi;
use crate::api::v1alpha1::ProviderApi;

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

/// Whether a create may already have reached the vendor, and what an object
/// found under the name it asks for is to it.
///
/// A create that was marked in status (`createRequested`, which only the
/// operator writes) and is sent again is *resumed*: the vendor may hold what
/// the earlier attempt made. It takes an object found under its name for its
/// own only with proof: the name carries the resource's UID
/// ([`name_is_own`]), or the vendor stores a marker of the resource (the
/// `postgres` API), or the vendor replays the idempotency key. Without proof
/// it stops ([`ProviderError::CreateUncertain`]): no failure after the mark
/// ever turns someone else's object into this resource's.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Resume {
    /// Nothing was sent before: an object under the name is someone else's
    /// ([`ProviderError::NameConflict`]).
    #[default]
    First,
    /// Sent before, and the name carries the resource's UID: an object under
    /// it is the earlier attempt's.
    OwnName,
    /// Sent before, but the name (the user's own choice) proves nothing: an
    /// object under it may be anyone's ([`ProviderError::CreateUncertain`]).
    Unproven,
}

impl Resume {
    /// How a create of `name` for a resource with UID `uid` resumes, if it
    /// was sent before (`sent`).
    pub fn of(sent: bool, name: &str, uid: &str) -> Self {
        match (sent, name_is_own(name, uid)) {
            (false, _) => Self::First,
            (true, true) => Self::OwnName,
            (true, false) => Self::Unproven,
        }
    }

    /// Whether the create may have reached the vendor before.
    pub fn is_resumed(self) -> bool {
        self != Self::First
    }

    /// What a create does about `object` found under `name` at `api`:
    /// `Ok(())` takes it as the earlier attempt's, an error refuses it.
    pub fn found(self, api: ProviderApi, object: &'static str, name: &str) -> Result<()> {
        match self {
            Self::OwnName => Ok(()),
            Self::First => Err(ProviderError::NameConflict {
                api,
                object,
                name: name.to_string(),
            }),
            Self::Unproven => Err(ProviderError::CreateUncertain {
                api,
                object,
                name: name.to_string(),
            }),
        }
    }
}

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
    /// Whether this create may already have reached the vendor, and what
    /// proves that an object found under the requested name is this
    /// resource's own ([`Resume`]).
    pub resumed: Resume,
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
    /// The new project's database password, for APIs where the operator
    /// chooses it ([`Provider::needs_operator_password`]).
    pub db_password: Option<Password>,
    /// Whether this create may already have reached the vendor, and what
    /// proves that an object found under the requested name is this
    /// resource's own ([`Resume`]).
    pub resumed: Resume,
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
    /// The project the vendor shows it belongs to (empty: the vendor does
    /// not say; never filled in from what the caller asked for).
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

/// The longest name dbops generates for a vendor object (the strictest
/// vendor limit it knows: Postgres identifiers, DNS labels).
pub const MAX_GENERATED_NAME: usize = 63;

/// A vendor name for resource `namespace/name` with UID `uid`:
/// `<namespace>-<name>` (dots made dashes: not every vendor takes them), cut
/// to fit, then `-` and the first 8 hex digits of the UID. The suffix makes
/// the name unique where the readable part is not (`a.b` and `a-b`;
/// namespace `a-b` name `c` and namespace `a` name `b-c`; names sharing a long
/// prefix), and it marks the object as this resource's own: finding it by
/// name after a lost answer can only find what this resource made.
pub fn generated_name(namespace: &str, name: &str, uid: &str) -> String {
    let readable = format!("{namespace}-{name}").replace('.', "-");
    let Some(suffix) = uid_suffix(uid) else {
        // Only objects never stored have no UID.
        return readable.chars().take(MAX_GENERATED_NAME).collect();
    };
    let room = MAX_GENERATED_NAME - suffix.len() - 1;
    let readable: String = readable.chars().take(room).collect();
    format!("{}-{suffix}", readable.trim_end_matches('-'))
}

/// The suffix [`generated_name`] gives a resource with UID `uid`: `-` and the
/// last 8 hex digits of the UID (`None` for a UID without hex digits).
fn uid_suffix(uid: &str) -> Option<String> {
    let hex: Vec<char> = uid.chars().filter(char::is_ascii_hexdigit).collect();
    let suffix: String = hex[hex.len().saturating_sub(8)..]
        .iter()
        .collect::<String>()
        .to_ascii_lowercase();
    (!suffix.is_empty()).then_some(suffix)
}

/// Whether vendor name `name` carries the UID of the resource with `uid`,
/// as every name dbops generates does ([`generated_name`]): an object under
/// it can only be that resource's.
pub fn name_is_own(name: &str, uid: &str) -> bool {
    uid_suffix(uid).is_some_and(|suffix| name.ends_with(&format!("-{suffix}")))
}

/// What the pipeline reads of every vendor object: its id, its life-cycle
/// state, the project it belongs to (branches, snapshots) and how to connect
/// to it (projects, branches).
pub trait VendorObject {
    fn id(&self) -> &str;
    fn state(&self) -> &ResourceState;
    fn project_id(&self) -> Option<&str> {
        None
    }
    fn connection_uri(&self) -> Option<&ConnectionUri> {
        None
    }
    fn pooled_uri(&self) -> Option<&ConnectionUri> {
        None
    }
}

/// The [`VendorObject`] methods read straight from a struct's fields.
macro_rules! vendor_object_fields {
    () => {
        fn id(&self) -> &str {
            &self.id
        }
        fn state(&self) -> &ResourceState {
            &self.state
        }
    };
    (connectable) => {
        vendor_object_fields!();
        fn connection_uri(&self) -> Option<&ConnectionUri> {
            self.connection_uri.as_ref()
        }
        fn pooled_uri(&self) -> Option<&ConnectionUri> {
            self.pooled_uri.as_ref()
        }
    };
}

impl VendorObject for VendorProject {
    vendor_object_fields!(connectable);
}

impl VendorObject for VendorBranch {
    vendor_object_fields!(connectable);
    /// The project the vendor reports, `None` where it reports none.
    fn project_id(&self) -> Option<&str> {
        Some(self.project_id.as_str()).filter(|p| !p.is_empty())
    }
}

impl VendorObject for VendorSnapshot {
    vendor_object_fields!();
    /// The project the vendor reports, `None` where it reports none.
    fn project_id(&self) -> Option<&str> {
        Some(self.project_id.as_str()).filter(|p| !p.is_empty())
    }
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
    /// A state no document names (or none at all), as the vendor sent it.
    /// Treated as in progress for a bounded time, then as needing a person.
    Unrecognized(String),
}

/// A create call's branch request.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BranchRequest {
    pub project_id: String,
    pub branch_name: String,
    pub from_branch: Option<String>,
    /// The branch's database password, for APIs where the operator chooses
    /// it ([`Provider::needs_operator_password`]).
    pub db_password: Option<Password>,
    /// Whether this create may already have reached the vendor, and what
    /// proves that an object found under the requested name is this
    /// resource's own ([`Resume`]).
    pub resumed: Resume,
    /// Only the schema is wanted (`spec.data.mode: SchemaOnly`): an API that
    /// can copy without rows does; the others copy everything, and the rows
    /// are removed before anyone can connect.
    pub schema_only: bool,
}

/// A create call's snapshot request.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SnapshotRequest {
    pub project_id: String,
    pub label: Option<String>,
}

type Result<T> = std::result::Result<T, ProviderError>;

// Capabilities come from the type system: each family of operations is a
// trait, and a vendor offers a family by implementing its trait and returning
// `Some(self)` from the matching [`Provider`] accessor. There is no second list
// to keep in sync: [`Provider::supports`], the capability matrix and the
// controllers all ask the accessors.

/// Reading projects; every vendor API can.
#[async_trait]
pub trait ProjectApi: Send + Sync {
    /// Read a project; [`ProviderError::is_not_found`] when it does not exist.
    async fn get_project(&self, id: &str) -> Result<VendorProject>;
}

/// Creating and deleting projects.
#[async_trait]
pub trait ProjectLifecycle: Send + Sync {
    /// Create a project. `idempotency_key` makes a retry return the same project.
    async fn create_project(
        &self,
        req: &ProjectRequest,
        idempotency_key: &str,
    ) -> Result<VendorProject>;

    /// Delete a project (and, at every vendor so far, its branches and snapshots).
    async fn delete_project(&self, id: &str) -> Result<()>;
}

/// Restoring a snapshot into a new project.
#[async_trait]
pub trait RestoreApi: Send + Sync {
    /// Restore a snapshot into a new project (possibly asynchronously).
    async fn restore_snapshot(
        &self,
        req: &RestoreRequest,
        idempotency_key: &str,
    ) -> Result<RestoreProgress>;

    /// Polls an asynchronous restore whose [`RestoreApi::restore_snapshot`]
    /// answered [`RestoreProgress::Pending`].
    async fn restore_status(&self, handle: &str) -> Result<RestoreProgress>;
}

/// Reading copy-on-write branches.
#[async_trait]
pub trait BranchApi: Send + Sync {
    async fn get_branch(&self, project_id: &str, id: &str) -> Result<VendorBranch>;
}

/// Creating and deleting branches.
#[async_trait]
pub trait BranchLifecycle: Send + Sync {
    async fn create_branch(
        &self,
        req: &BranchRequest,
        idempotency_key: &str,
    ) -> Result<VendorBranch>;

    async fn delete_branch(&self, project_id: &str, id: &str) -> Result<()>;
}

/// A fresh copy staged for an in-place reset ([`BranchReset`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StagedCopy {
    /// Its id for the SQL channel ([`super::sql::SqlApi::run_sql`]), where
    /// `spec.data` is applied to it before the swap.
    pub id: String,
    /// What [`BranchReset::swap_reset`] checks, to tell a copy swapped in
    /// from one that was lost.
    pub handle: String,
}

/// Resetting a branch from its parent in place: a fresh copy is staged
/// beside the branch, then swapped in under the branch's own name, owner and
/// password, so its connection URI does not change. A vendor without this
/// family is reset by making a new branch and switching the Secret to it.
#[async_trait]
pub trait BranchReset: Send + Sync {
    /// Stages a fresh copy of what `req` copies (its project, or
    /// `from_branch`; schema only if it says so) for branch `id`, owned by
    /// no one who can log in. A copy staged before for `id` is dropped first:
    /// every stage starts from scratch.
    async fn stage_reset(&self, req: &BranchRequest, id: &str) -> Result<StagedCopy>;

    /// Swaps `staged` in as branch `id` and drops what it held, ending the
    /// branch's sessions. Done already is fine; a staged copy that is gone
    /// without having been swapped in is [`ProviderError::is_not_found`].
    async fn swap_reset(&self, id: &str, staged: &StagedCopy) -> Result<()>;

    /// Drops whatever a reset of branch `id` left: a staged copy, a swapped
    /// out one. Nothing left is fine.
    async fn discard_reset(&self, id: &str) -> Result<()>;
}

/// Point-in-time snapshots: taking and reading them.
#[async_trait]
pub trait SnapshotApi: Send + Sync {
    async fn create_snapshot(
        &self,
        req: &SnapshotRequest,
        idempotency_key: &str,
    ) -> Result<VendorSnapshot>;

    async fn get_snapshot(&self, project_id: &str, id: &str) -> Result<VendorSnapshot>;
}

/// Deleting snapshots.
#[async_trait]
pub trait SnapshotDeletion: Send + Sync {
    async fn delete_snapshot(&self, project_id: &str, id: &str) -> Result<()>;
}

/// Database password rotation.
#[async_trait]
pub trait CredentialApi: Send + Sync {
    /// Rotates the database password of `target`. `proposed` is a fresh strong
    /// password for APIs that take one (Supabase); APIs that generate their own
    /// ignore it. `idempotency_key` is sent where the API takes one.
    async fn rotate_credentials(
        &self,
        target: &RotationTarget,
        proposed: &Password,
        idempotency_key: &str,
    ) -> Result<RotationProgress>;

    /// Polls a rotation whose [`CredentialApi::rotate_credentials`] answered
    /// [`RotationProgress::Pending`].
    async fn rotation_status(
        &self,
        target: &RotationTarget,
        job_id: &str,
    ) -> Result<RotationProgress>;
}

/// The answer of a poll (`restore_status`, `rotation_status`) on an API whose
/// call always finishes at once and so never hands out anything to poll.
pub(crate) fn nothing_to_poll(
    api: ProviderApi,
    operation: Operation,
    handle: &str,
) -> ProviderError {
    ProviderError::InvalidResponse {
        api,
        operation: operation.to_string(),
        message: format!("{api} finishes {operation} at once; there is no {handle} to poll"),
    }
}

/// A vendor API account, as the controllers see it: project reads, plus the
/// capability families the vendor offers (`None`: it has no such operations).
pub trait Provider: ProjectApi {
    /// Which vendor API this is.
    fn api(&self) -> ProviderApi;

    fn project_lifecycle(&self) -> Option<&dyn ProjectLifecycle> {
        None
    }
    fn restores(&self) -> Option<&dyn RestoreApi> {
        None
    }
    fn branches(&self) -> Option<&dyn BranchApi> {
        None
    }
    fn branch_lifecycle(&self) -> Option<&dyn BranchLifecycle> {
        None
    }
    fn snapshots(&self) -> Option<&dyn SnapshotApi> {
        None
    }
    fn snapshot_deletion(&self) -> Option<&dyn SnapshotDeletion> {
        None
    }
    /// Rotation of a project's database password.
    fn project_credentials(&self) -> Option<&dyn CredentialApi> {
        None
    }
    /// Rotation of a branch's database password.
    fn branch_credentials(&self) -> Option<&dyn CredentialApi> {
        None
    }
    /// Resetting a branch in place.
    fn branch_reset(&self) -> Option<&dyn BranchReset> {
        None
    }
    /// Bring-your-own-key credentials and the routing policy.
    fn byok(&self) -> Option<&dyn ByokApi> {
        None
    }
    /// The SQL channel role administration runs through.
    fn sql(&self) -> Option<&dyn SqlApi> {
        None
    }

    /// Whether the operator must choose the database password on create (the
    /// API takes one and never returns it, e.g. Supabase's `db_pass`).
    fn needs_operator_password(&self) -> bool {
        false
    }

    /// The name a new project gets at this vendor when the spec names none
    /// ([`generated_name`]): unique to the resource, and carrying its identity.
    fn default_project_name(&self, namespace: &str, name: &str, uid: &str) -> String {
        generated_name(namespace, name, uid)
    }

    /// The name a new branch gets when the spec names none: the resource's
    /// name, where branch names are scoped to their project. A vendor whose
    /// branch names share one account-wide space overrides this.
    fn default_branch_name(&self, namespace: &str, name: &str, uid: &str) -> String {
        let _ = (namespace, uid);
        name.to_string()
    }

    /// What to do instead of `operation` when this provider lacks it, for the
    /// `UnsupportedByProvider` message (`None`: no specific advice).
    fn unsupported_hint(&self, operation: Operation) -> Option<&'static str> {
        let _ = operation;
        None
    }

    /// Whether `operation` is implemented: whether its family's accessor answers.
    fn supports(&self, operation: Operation) -> bool {
        use Operation::*;
        match operation {
            ProjectGet => true,
            ProjectCreate | ProjectDelete => self.project_lifecycle().is_some(),
            SnapshotRestore => self.restores().is_some(),
            BranchGet => self.branches().is_some(),
            BranchCreate | BranchDelete => self.branch_lifecycle().is_some(),
            SnapshotCreate | SnapshotGet => self.snapshots().is_some(),
            SnapshotDelete => self.snapshot_deletion().is_some(),
            CredentialRotate => self.project_credentials().is_some(),
            BranchCredentialRotate => self.branch_credentials().is_some(),
            ByokRegister | ByokRotate | ByokRevoke | ByokPolicy => self.byok().is_some(),
            RoleManage => self.sql().is_some(),
            BranchResetInPlace => self.branch_reset().is_some(),
        }
    }

    /// Every operation this provider implements, in matrix order.
    fn capabilities(&self) -> Vec<Operation> {
        use strum::IntoEnumIterator;
        Operation::iter().filter(|op| self.supports(*op)).collect()
    }

    /// The error for an operation this provider lacks.
    fn unsupported(&self, operation: Operation) -> ProviderError {
        ProviderError::Unsupported {
            api: self.api(),
            operation,
        }
    }
}

/// Each operation of a capability family, called through the [`Provider`]
/// accessor that offers it, or answered with [`ProviderError::Unsupported`]
/// when the vendor lacks the family. Controllers call these and check
/// [`Provider::supports`] first where they want a better message.
macro_rules! through_family {
    ($( $(#[$doc:meta])* $family:ident => $operation:ident:
        fn $name:ident(&self $(, $arg:ident: $ty:ty)*) -> $out:ty; )*) => {
        impl dyn Provider + '_ {
            $(
                $(#[$doc])*
                pub async fn $name(&self $(, $arg: $ty)*) -> Result<$out> {
                    match self.$family() {
                        Some(family) => family.$name($($arg),*).await,
                        None => Err(self.unsupported(Operation::$operation)),
                    }
                }
            )*
        }
    };
}

through_family! {
    project_lifecycle => ProjectCreate:
        fn create_project(&self, req: &ProjectRequest, idempotency_key: &str) -> VendorProject;
    project_lifecycle => ProjectDelete:
        fn delete_project(&self, id: &str) -> ();
    restores => SnapshotRestore:
        fn restore_snapshot(&self, req: &RestoreRequest, idempotency_key: &str) -> RestoreProgress;
    restores => SnapshotRestore:
        fn restore_status(&self, handle: &str) -> RestoreProgress;
    branches => BranchGet:
        fn get_branch(&self, project_id: &str, id: &str) -> VendorBranch;
    branch_lifecycle => BranchCreate:
        fn create_branch(&self, req: &BranchRequest, idempotency_key: &str) -> VendorBranch;
    branch_lifecycle => BranchDelete:
        fn delete_branch(&self, project_id: &str, id: &str) -> ();
    snapshots => SnapshotCreate:
        fn create_snapshot(&self, req: &SnapshotRequest, idempotency_key: &str) -> VendorSnapshot;
    snapshots => SnapshotGet:
        fn get_snapshot(&self, project_id: &str, id: &str) -> VendorSnapshot;
    snapshot_deletion => SnapshotDelete:
        fn delete_snapshot(&self, project_id: &str, id: &str) -> ();
    sql => RoleManage:
        fn run_sql(&self, database_id: &str, sql: &str) -> super::sql::Rows;
}

impl dyn Provider + '_ {
    /// The credential family that rotates `target` (a project's or a branch's).
    pub fn credentials_for(&self, target: &RotationTarget) -> Result<&dyn CredentialApi> {
        let (family, operation) = match target {
            RotationTarget::Project { .. } => {
                (self.project_credentials(), Operation::CredentialRotate)
            }
            RotationTarget::Branch { .. } => {
                (self.branch_credentials(), Operation::BranchCredentialRotate)
            }
        };
        family.ok_or_else(|| self.unsupported(operation))
    }

    /// The BYOK family, or the error for lacking `operation`.
    pub fn byok_for(&self, operation: Operation) -> Result<&dyn ByokApi> {
        self.byok().ok_or_else(|| self.unsupported(operation))
    }
}

#[cfg(test)]
mod generated_name_tests {
    use super::*;

    const UID_A: &str = "3f2a9c1e-0b7d-4e55-9a61-2c8d7e4f1a09";
    const UID_B: &str = "7c41d2aa-95e0-4b3f-8f12-6d0e9b3c5a77";

    #[test]
    fn names_carry_the_resource_and_its_uid() {
        assert_eq!(
            generated_name("team-a", "shop", UID_A),
            "team-a-shop-7e4f1a09"
        );
        assert_eq!(
            generated_name("team-a", "shop", UID_A),
            generated_name("team-a", "shop", UID_A)
        );
    }

    #[test]
    fn readable_collisions_are_told_apart() {
        // Dots made dashes, and dashes on either side of the join.
        assert_ne!(
            generated_name("a", "b.c", UID_A),
            generated_name("a", "b-c", UID_B)
        );
        assert_ne!(
            generated_name("a-b", "c", UID_A),
            generated_name("a", "b-c", UID_B)
        );
        // A shared 63-character prefix.
        let long = "x".repeat(80);
        let one = generated_name("ns", &format!("{long}1"), UID_A);
        let two = generated_name("ns", &format!("{long}2"), UID_B);
        assert_ne!(one, two);
        assert!(one.len() <= MAX_GENERATED_NAME && two.len() <= MAX_GENERATED_NAME);
    }

    #[test]
    fn only_a_name_with_the_resources_uid_is_its_own() {
        let name = generated_name("team-a", "shop", UID_A);
        assert!(name_is_own(&name, UID_A));
        assert!(!name_is_own(&name, UID_B), "another resource's name");
        assert!(!name_is_own("shop", UID_A), "a name the user chose");
        assert!(!name_is_own("shop-7e4f1a0", UID_A), "part of the suffix");
        assert!(!name_is_own("anything", ""), "no UID, no proof");
        assert_eq!(Resume::of(false, &name, UID_A), Resume::First);
        assert_eq!(Resume::of(true, &name, UID_A), Resume::OwnName);
        assert_eq!(Resume::of(true, "shop", UID_A), Resume::Unproven);
        assert!(
            Resume::OwnName
                .found(ProviderApi::Infrai, "project", "x")
                .is_ok()
        );
        assert!(matches!(
            Resume::First.found(ProviderApi::Infrai, "project", "x"),
            Err(ProviderError::NameConflict { .. })
        ));
        assert!(matches!(
            Resume::Unproven.found(ProviderApi::Infrai, "project", "x"),
            Err(ProviderError::CreateUncertain { .. })
        ));
    }

    #[test]
    fn a_cut_never_leaves_a_double_dash() {
        // "n-" and 51 x: the cut at 54 characters ends on the dash before "y".
        let name = format!("{}-y", "x".repeat(51));
        let generated = generated_name("n", &name, UID_A);
        assert!(!generated.contains("--"), "{generated}");
        assert!(generated.ends_with("-7e4f1a09"));
    }
}
