use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use super::common::{
    Binding, Conditions, ConnectionSecretTarget, CredentialRotationSpec, CredentialRotationStatus,
    DeletionPolicy, LocalObjectRef,
};

/// A copy-on-write branch of a `DatabaseProject` in the same namespace.
///
/// The branch is created through the project's provider once the project is
/// `Ready`; its own connection details go into `writeConnectionSecretTo`.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "dbops.dev",
    doc = "A copy-on-write branch of a DatabaseProject, with its own connection Secret.",
    version = "v1alpha1",
    kind = "DatabaseBranch",
    namespaced,
    status = "DatabaseBranchStatus",
    shortname = "dbbr",
    category = "dbops",
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = r#".status.conditions[?(@.type=="Ready")].status"#
    ),
    printcolumn(
        name = "Reason",
        type_ = "string",
        json_path = r#".status.conditions[?(@.type=="Ready")].reason"#
    ),
    printcolumn(
        name = "Project",
        type_ = "string",
        json_path = ".spec.projectRef.name"
    ),
    printcolumn(name = "Branch ID", type_ = "string", json_path = ".status.branchId"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
// Immutability per field, plus presence checks for the optional fields (see `DatabaseProject`).
#[x_kube(
    validation = Rule::new("has(self.branchName) == has(oldSelf.branchName)").message("branchName is immutable"),
    validation = Rule::new("has(self.fromBranch) == has(oldSelf.fromBranch)").message("fromBranch is immutable"),
    validation = Rule::new("has(self.externalId) == has(oldSelf.externalId)").message("externalId is immutable")
)]
pub struct DatabaseBranchSpec {
    /// The `DatabaseProject` (same namespace) to branch. Immutable.
    #[x_kube(validation = Rule::new("self == oldSelf").message("projectRef is immutable"))]
    pub project_ref: LocalObjectRef,

    /// Name of the branch at the vendor. Defaults to the resource name (on DB9,
    /// whose branch names are account-wide, `<namespace>-<name>-<uid>`). Immutable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63))]
    #[x_kube(validation = Rule::new("self == oldSelf").message("branchName is immutable"))]
    pub branch_name: Option<String>,

    /// Vendor name of the branch to copy from; the project's default branch when left out. Immutable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 63))]
    #[x_kube(validation = Rule::new("self == oldSelf").message("fromBranch is immutable"))]
    pub from_branch: Option<String>,

    /// Adopt an existing vendor branch by its id instead of creating one. Immutable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 256))]
    #[x_kube(validation = Rule::new("self == oldSelf").message("externalId is immutable"))]
    pub external_id: Option<String>,

    /// What happens at the vendor when this resource is deleted: `Delete` (default) or `Retain`.
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,

    /// The Secret to write the branch's connection details into. Defaults to `<name>-connection`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub write_connection_secret_to: Option<ConnectionSecretTarget>,
    /// Rotate the database password periodically (providers that support it;
    /// see the capability matrix). One rotation can also be requested with the
    /// annotation `dbops.dev/rotate-credentials`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential_rotation: Option<CredentialRotationSpec>,
}

/// Observed state of a `DatabaseBranch`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DatabaseBranchStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready`, `Reconciling` and `Stalled`, kstatus style.
    #[serde(default)]
    pub conditions: Conditions,
    /// The vendor's branch id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub branch_id: Option<String>,
    /// The vendor's id of the project this branch belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project_id: Option<String>,
    /// Name of the Secret holding the connection details, once written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection_secret_name: Option<String>,
    /// The connection Secret, where the Service Binding spec looks for it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub binding: Option<Binding>,
    /// Set just before the vendor create call is sent (see `DatabaseProject`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub create_requested: bool,
    /// The `DatabaseProvider` the vendor object was made through, so that it can
    /// still be deleted after its `DatabaseProject` resource is gone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider_name: Option<String>,
    /// Credential rotation state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential_rotation: Option<CredentialRotationStatus>,
}
