//! The one error type of the namespaced controllers, and the errors it
//! wraps that belong to the pipeline (a rotation's). Kind-specific context
//! lives in the variants (which vendor object, which field); what the error
//! policy needs (category, transient or not, the vendor's wait) is derived
//! here once.

use std::fmt;
use std::time::Duration;

use crate::controllers::protection::LookupError;
use crate::controllers::protection::claims::ClaimError;
use crate::controllers::protection::tenancy::Adoption;
use crate::controllers::runtime::conditions::reason;
use crate::controllers::runtime::reconciler::ControllerError;
use crate::controllers::runtime::{KubeCall, ReconcileError, VendorCall};
use crate::controllers::secret::connection_keys::TemplateError;
use crate::controllers::secret::{ConnectionError, SecretWriteError};
use crate::providers::Operation;

/// How long a vendor object may stay in a state no document names before
/// the resource is shown as needing a person.
pub const UNRECOGNIZED_STATE_LIMIT: Duration = Duration::from_secs(30 * 60);

/// The vendor object a resource stands for, as messages name it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Object {
    Project,
    Branch,
    Snapshot,
    Credential,
}

impl Object {
    /// What a user can do once this object was deleted outside dbops, after
    /// deleting the resource.
    fn recreate_advice(self) -> &'static str {
        match self {
            Object::Project => ", or re-create it to provision a new project",
            Object::Branch => ", or re-create it for a new branch",
            Object::Snapshot | Object::Credential => "",
        }
    }

    pub fn plural(self) -> &'static str {
        match self {
            Object::Project => "projects",
            Object::Branch => "branches",
            Object::Snapshot => "snapshots",
            Object::Credential => "BYOK credentials",
        }
    }
}

impl fmt::Display for Object {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Object::Project => "project",
            Object::Branch => "branch",
            Object::Snapshot => "snapshot",
            Object::Credential => "BYOK credential",
        })
    }
}

/// Why a rotation pass stopped early (to be retried).
#[derive(Debug, thiserror::Error)]
pub enum RotationError {
    #[error(transparent)]
    Vendor(#[from] VendorCall),
    #[error(transparent)]
    Secret(#[from] SecretWriteError),
    #[error("the vendor's new connection URI is unusable: {0}")]
    Connection(#[from] ConnectionError),
    #[error(transparent)]
    Template(TemplateError),
}

/// Everything that can stop a reconcile of a `DatabaseProject`,
/// `DatabaseBranch`, `DatabaseSnapshot` or `ByokCredential`.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Provider(#[from] LookupError),
    #[error(transparent)]
    Vendor(#[from] VendorCall),
    #[error("{0}")]
    Kube(#[from] KubeCall),
    #[error(transparent)]
    Secret(#[from] SecretWriteError),
    #[error("rotating credentials: {0}")]
    Rotation(#[from] RotationError),
    #[error(
        "{object} {id} no longer exists at the vendor (deleted outside dbops); delete this resource{}",
        object.recreate_advice()
    )]
    VendorObjectDeleted { object: Object, id: String },
    #[error("{object} {id} named in spec.externalId does not exist at the vendor")]
    ExternalNotFound { object: Object, id: String },
    #[error(
        "{object} {id} named in spec.externalId {} DatabaseProject {project:?}; a {object} can only adopt an object of its own project, and nothing was adopted",
        if *unverifiable { "cannot be shown to belong to the vendor project of" } else { "does not belong to the vendor project of" }
    )]
    ExternalMismatch {
        object: Object,
        id: String,
        project: String,
        /// The vendor does not say which project the object belongs to.
        unverifiable: bool,
    },
    #[error(
        "{} names an existing vendor object, and DatabaseProvider {provider:?} does not allow adoption in namespace {namespace}; create a new one instead, or ask an administrator of the provider to admit this namespace in spec.adoption.allowedNamespaces",
        adoption.field()
    )]
    AdoptionNotAllowed {
        adoption: Adoption,
        provider: String,
        namespace: String,
    },
    #[error("DatabaseBranch {name:?} named in spec.fromBranchRef {problem}")]
    FromBranchRef { name: String, problem: String },
    #[error(transparent)]
    Claim(#[from] ClaimError),
    #[error("the vendor reports {object} {id} as failed: {state}")]
    VendorFailed {
        object: Object,
        id: String,
        state: String,
    },
    #[error("{provider} cannot {operation}; {hint}")]
    Unsupported {
        provider: String,
        operation: Operation,
        hint: &'static str,
    },
    #[error(
        "DatabaseProject {project:?} was deleted (or replaced); the vendor deletes a project's {} with it, so this {object} is gone too. Delete this resource",
        object.plural()
    )]
    ProjectDeleted { object: Object, project: String },
    #[error("{object} {id}: {source}")]
    Connection {
        object: Object,
        id: String,
        #[source]
        source: ConnectionError,
    },
    #[error(
        "DatabaseSnapshot {snapshot:?} belongs to provider {snapshot_provider:?}, but this project uses {provider:?}; a snapshot can only be restored through its own provider"
    )]
    SnapshotProviderMismatch {
        snapshot: String,
        snapshot_provider: String,
        provider: String,
    },
    #[error("ByokCredential {credential:?} {problem}")]
    ByokMismatch { credential: String, problem: String },
    #[error(
        "restore {handle} is still running at the vendor; the project will be deleted once it exists"
    )]
    RestoreInProgress { handle: String },
    #[error("Secret {secret:?} named in spec.credentialsSecretRef {problem}")]
    CredentialsMissing {
        secret: String,
        problem: &'static str,
    },
    #[error(
        "BYOK credential {id} was revoked outside dbops; delete this resource and create a new one"
    )]
    Revoked { id: String },
    #[error(
        "the vendor has reported {object} {id} as {state:?}, a state dbops does not know, for over {} minutes; check it at the vendor (dbops looks again on its own)",
        UNRECOGNIZED_STATE_LIMIT.as_secs() / 60
    )]
    VendorStateUnknown {
        object: Object,
        id: String,
        state: String,
    },
    #[error("the resource has no namespace, name or uid")]
    InvalidObject,
    #[error("spec.expireAfter {problem}; this branch is left as it is until that is fixed")]
    InvalidExpireAfter { problem: &'static str },
    #[error(transparent)]
    Template(#[from] TemplateError),
    #[error(
        "the connection Secret must hold the database password: {provider} never returns it and dbops keeps it only there; add a key with {{{{ password }}}} or use a preset that has one"
    )]
    PasswordNotInSecret { provider: String },
    #[error(
        "role {role} exists in the database and dbops did not create it for this DatabaseRole; it is left untouched: choose another spec.roleName"
    )]
    RoleTaken { role: String },
    #[error(transparent)]
    Grants(#[from] super::grants::GrantError),
    #[error(
        "{parent} was deleted (or replaced), and the role's database with it; delete this resource"
    )]
    RoleParentGone { parent: String },
    #[error("{message}")]
    InvalidSpec { message: String },
    #[error(
        "deleting its DatabaseRoles first ({names}); they drop their roles from the database while it is still there"
    )]
    RolesRemain { names: String },
    #[error(
        "the branch has columns that look like personal data and that no masking rule covers: {columns}; add rules for them in spec.data.masking (or set unmaskedColumns: Allow). No connection Secret is written until then"
    )]
    UnmaskedColumns { columns: String },
    #[error("{0}; no connection Secret is written until it is fixed")]
    Masking(#[from] super::masking::MaskError),
    #[error(
        "{provider} cannot make a {mode} branch: {why}. A branch is never handed out with data other than spec.data asks for"
    )]
    DataUnsupported {
        provider: String,
        mode: String,
        why: &'static str,
    },
    #[error("{provider} cannot run SQL for this database: {message}")]
    SqlUnavailable { provider: String, message: String },
}

impl Error {
    /// A create found another object under its name
    /// ([`crate::providers::ProviderError::NameConflict`]).
    pub fn is_name_conflict(&self) -> bool {
        matches!(self, Error::Vendor(e) if e.source.is_name_conflict())
    }

    /// The vendor's answer shows the call made nothing
    /// ([`crate::providers::ProviderError::made_nothing`]).
    pub fn made_nothing(&self) -> bool {
        matches!(self, Error::Vendor(e) if e.source.made_nothing())
    }

    /// A resumed create could not prove an object under its name is its own.
    pub fn is_create_uncertain(&self) -> bool {
        matches!(self, Error::Vendor(e) if e.source.is_create_uncertain())
    }
}

impl ReconcileError for Error {
    fn category(&self) -> &'static str {
        match self {
            Error::Provider(e) => e.category(),
            Error::Vendor(e) | Error::Rotation(RotationError::Vendor(e)) => e.source.category(),
            Error::Connection { .. } | Error::Rotation(RotationError::Connection(_)) => {
                "VendorInvalidResponse"
            }
            Error::Secret(SecretWriteError::NotOwned { .. }) => reason::SECRET_CONFLICT,
            Error::Kube(_) | Error::Secret(_) | Error::Rotation(RotationError::Secret(_)) => {
                "KubernetesApiError"
            }
            Error::VendorObjectDeleted { .. } => reason::VENDOR_OBJECT_DELETED,
            Error::AdoptionNotAllowed { .. } => reason::ADOPTION_NOT_ALLOWED,
            Error::Claim(ClaimError::Taken { .. }) => reason::ALREADY_CLAIMED,
            Error::Claim(_) => "KubernetesApiError",
            Error::ExternalNotFound { .. } => reason::EXTERNAL_NOT_FOUND,
            Error::VendorFailed { .. } => "VendorFailed",
            Error::VendorStateUnknown { .. } => reason::VENDOR_STATE_UNKNOWN,
            Error::Unsupported { .. } => reason::UNSUPPORTED_BY_PROVIDER,
            Error::ProjectDeleted { .. } => reason::PROJECT_DELETED,
            Error::ExternalMismatch { .. }
            | Error::SnapshotProviderMismatch { .. }
            | Error::ByokMismatch { .. }
            | Error::InvalidExpireAfter { .. }
            | Error::FromBranchRef { .. }
            | Error::InvalidObject => reason::INVALID_SPEC,
            Error::RestoreInProgress { .. } => reason::WAITING_FOR_VENDOR,
            Error::RolesRemain { .. } => reason::DELETING,
            Error::CredentialsMissing { .. } => reason::CREDENTIALS_MISSING,
            Error::Revoked { .. } => "Revoked",
            Error::RoleTaken { .. } => "RoleConflict",
            Error::Grants(_) | Error::InvalidSpec { .. } | Error::Masking(_) => {
                reason::INVALID_SPEC
            }
            Error::UnmaskedColumns { .. } => "UnmaskedColumns",
            Error::DataUnsupported { .. } => reason::UNSUPPORTED_BY_PROVIDER,
            Error::RoleParentGone { .. } => reason::PROJECT_DELETED,
            Error::SqlUnavailable { .. } => reason::UNSUPPORTED_BY_PROVIDER,
            Error::Template(_)
            | Error::Rotation(RotationError::Template(_))
            | Error::PasswordNotInSecret { .. } => reason::INVALID_CONNECTION_TEMPLATE,
        }
    }

    fn is_transient(&self) -> bool {
        match self {
            Error::Provider(e) => e.is_transient(),
            Error::Vendor(e) | Error::Rotation(RotationError::Vendor(e)) => e.source.is_transient(),
            Error::Claim(e) => e.is_transient(),
            Error::Kube(_)
            | Error::RestoreInProgress { .. }
            | Error::RolesRemain { .. }
            | Error::Secret(SecretWriteError::Kube { .. })
            | Error::Rotation(RotationError::Secret(SecretWriteError::Kube { .. })) => true,
            _ => false,
        }
    }

    fn retry_after(&self) -> Option<Duration> {
        match self {
            Error::Vendor(e) | Error::Rotation(RotationError::Vendor(e)) => e.source.retry_after(),
            _ => None,
        }
    }
}

impl ControllerError for Error {
    fn finalizer(error: kube::Error) -> Self {
        Error::Kube(KubeCall::Finalizer(error))
    }
    fn invalid_object() -> Self {
        Error::InvalidObject
    }
    fn is_status_write(&self) -> bool {
        matches!(self, Error::Kube(KubeCall::Status(_)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_the_object_and_what_to_do() {
        let gone = Error::VendorObjectDeleted {
            object: Object::Branch,
            id: "br_1".into(),
        };
        assert_eq!(
            gone.to_string(),
            "branch br_1 no longer exists at the vendor (deleted outside dbops); delete this resource, or re-create it for a new branch"
        );
        assert_eq!(gone.category(), reason::VENDOR_OBJECT_DELETED);
        assert!(!gone.is_transient());
        let parent = Error::ProjectDeleted {
            object: Object::Snapshot,
            project: "shop".into(),
        };
        assert!(
            parent
                .to_string()
                .contains("deletes a project's snapshots with it, so this snapshot is gone too")
        );
        let mismatch = Error::ExternalMismatch {
            object: Object::Snapshot,
            id: "s".into(),
            project: "shop".into(),
            unverifiable: false,
        };
        assert_eq!(
            mismatch.to_string(),
            "snapshot s named in spec.externalId does not belong to the vendor project of DatabaseProject \"shop\"; a snapshot can only adopt an object of its own project, and nothing was adopted"
        );
        assert_eq!(mismatch.category(), reason::INVALID_SPEC);
        assert!(Error::RestoreInProgress { handle: "h".into() }.is_transient());
    }
}
