//! The capability matrix (kinds x operations x providers), generated from each
//! provider's own [`Provider::capabilities`](super::Provider::capabilities)
//! declaration. The README embeds it; a test keeps the two identical.

use super::Operation;
use crate::api::v1alpha1::ProviderApi;

/// Every provider API, in matrix column order.
pub const APIS: [ProviderApi; 4] = [
    ProviderApi::Infrai,
    ProviderApi::Supabase,
    ProviderApi::Db9,
    ProviderApi::Capydb,
];

/// The operations a provider API declares.
pub fn capabilities(api: ProviderApi) -> &'static [Operation] {
    match api {
        ProviderApi::Infrai => super::infrai::CAPABILITIES,
        ProviderApi::Supabase => super::supabase::CAPABILITIES,
        ProviderApi::Db9 => super::db9::CAPABILITIES,
        ProviderApi::Capydb => super::capydb::CAPABILITIES,
    }
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
    ("DatabaseSnapshot", "create", Operation::SnapshotCreate),
    (
        "DatabaseSnapshot",
        "adopt (`externalId`) / read",
        Operation::SnapshotGet,
    ),
    ("DatabaseSnapshot", "delete", Operation::SnapshotDelete),
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
];

/// The matrix as a Markdown table.
pub fn markdown() -> String {
    let mut out = String::from("| kind | operation |");
    for api in APIS {
        out.push_str(&format!(" `{api}` |"));
    }
    out.push_str("\n|---|---|");
    for _ in APIS {
        out.push_str(":---:|");
    }
    out.push('\n');
    for (kind, what, operation) in ROWS {
        out.push_str(&format!("| {kind} | {what} |"));
        for api in APIS {
            out.push_str(if capabilities(api).contains(operation) {
                " yes |"
            } else {
                " no |"
            });
        }
        out.push('\n');
    }
    out
}
