//! The capability matrix (kinds x operations x providers), generated from each
//! registered vendor's client ([`Provider::capabilities`](crate::providers::base::Provider::capabilities),
//! which asks the capability accessors). The README embeds it; a test keeps
//! the two identical.

use super::vendors::{VENDORS, Vendor};
use crate::providers::base::{Operation, ProviderConfig};

/// The operations a vendor's client implements, asked of a client that is
/// built but never used (it points at a port nothing listens on).
pub fn capabilities(vendor: &Vendor) -> Vec<Operation> {
    let config = ProviderConfig::new(
        vendor.api,
        Some(vendor.unreachable_endpoint().to_string()),
        secrecy::SecretString::from("unused".to_string()),
    );
    super::build::build(&config, None)
        .map(|client| client.capabilities())
        .unwrap_or_default()
}

/// Matrix rows: (kind, what the user does, the operation it needs).
pub const ROWS: &[(&str, &str, Operation)] = &[
    ("DatabaseProject", "create", Operation::ProjectCreate),
    (
        "DatabaseProject",
        "adopt (`externalId`) / read",
        Operation::ProjectGet,
    ),
    (
        "DatabaseProject",
        "delete (`deletionPolicy: Delete`)",
        Operation::ProjectDelete,
    ),
    (
        "DatabaseProject",
        "restore from a snapshot",
        Operation::SnapshotRestore,
    ),
    (
        "DatabaseProject",
        "rotate credentials",
        Operation::CredentialRotate,
    ),
    ("DatabaseBranch", "create", Operation::BranchCreate),
    (
        "DatabaseBranch",
        "adopt (`externalId`) / read",
        Operation::BranchGet,
    ),
    ("DatabaseBranch", "delete", Operation::BranchDelete),
    (
        "DatabaseBranch",
        "rotate credentials",
        Operation::BranchCredentialRotate,
    ),
    (
        "DatabaseBranch",
        "reset from parent keeping the URI (else: a new branch, the Secret switched)",
        Operation::BranchResetInPlace,
    ),
    ("DatabaseSnapshot", "create", Operation::SnapshotCreate),
    (
        "DatabaseSnapshot",
        "adopt (`externalId`) / read",
        Operation::SnapshotGet,
    ),
    ("DatabaseSnapshot", "delete", Operation::SnapshotDelete),
    (
        "DatabaseSnapshotSchedule",
        "scheduled snapshots (with retention)",
        Operation::SnapshotCreate,
    ),
    (
        "ByokCredential",
        "register / update / test",
        Operation::ByokRegister,
    ),
    (
        "ByokCredential",
        "rotate (stage, probe, commit)",
        Operation::ByokRotate,
    ),
    ("ByokCredential", "revoke", Operation::ByokRevoke),
    (
        "DatabaseProvider",
        "BYOK routing policy",
        Operation::ByokPolicy,
    ),
    (
        "DatabaseRole",
        "roles, grants and rotation (SQL channel)",
        Operation::RoleManage,
    ),
];

/// The matrix as a Markdown table.
pub fn markdown() -> String {
    let mut out = String::from("| kind | operation |");
    let columns: Vec<_> = VENDORS.iter().map(|v| (v.api, capabilities(v))).collect();
    for (api, _) in &columns {
        out.push_str(&format!(" `{api}` |"));
    }
    out.push_str("\n|---|---|");
    for _ in &columns {
        out.push_str(":---:|");
    }
    out.push('\n');
    for (kind, what, operation) in ROWS {
        out.push_str(&format!("| {kind} | {what} |"));
        for (_, capabilities) in &columns {
            out.push_str(if capabilities.contains(operation) {
                " yes |"
            } else {
                " no |"
            });
        }
        out.push('\n');
    }
    out
}
