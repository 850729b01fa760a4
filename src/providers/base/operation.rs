//! The unit of the capability matrix: one operation a provider may support.

use std::fmt;

/// One operation a provider may support; the unit of the capability matrix.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, strum::EnumIter)]
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
    /// Run role administration SQL in a project's or branch's database.
    RoleManage,
    /// Reset a branch from its parent in place: same name, role and password.
    BranchResetInPlace,
}

impl Operation {
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
            Operation::RoleManage => "role.manage",
            Operation::BranchResetInPlace => "branch.reset.in-place",
        }
    }
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
