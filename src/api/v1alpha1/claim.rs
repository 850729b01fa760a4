use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::provider::ProviderApi;

/// Which dbops resource holds one vendor object.
///
/// Cluster-scoped and written only by the operator: every vendor object
/// (project, branch, snapshot, BYOK credential) that a dbops resource creates
/// or adopts is claimed by exactly one resource in the whole cluster. The
/// claim is taken atomically (creating this object under a name derived from
/// the vendor account and the object's id), before anything is revealed or
/// changed at the vendor for a second resource, and released when its holder
/// is gone. Namespace users have no access to claims.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "dbops.dev",
    doc = "The one dbops resource that holds a vendor object (written by the operator only).",
    version = "v1alpha1",
    kind = "VendorClaim",
    shortname = "vclaim",
    printcolumn(name = "API", type_ = "string", json_path = ".spec.api"),
    printcolumn(name = "Object", type_ = "string", json_path = ".spec.object"),
    printcolumn(name = "ID", type_ = "string", json_path = ".spec.id"),
    printcolumn(
        name = "Namespace",
        type_ = "string",
        json_path = ".spec.holder.namespace"
    ),
    printcolumn(name = "Holder", type_ = "string", json_path = ".spec.holder.name"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self == oldSelf").message("a VendorClaim is immutable"))]
pub struct VendorClaimSpec {
    /// The vendor API.
    pub api: ProviderApi,
    /// The vendor account: the API's endpoint, without credentials, query or
    /// (for `postgres`) database, so that two providers reaching the same
    /// account share one set of claims.
    #[schemars(length(min = 1, max = 2048))]
    pub account: String,
    /// What kind of vendor object is claimed.
    pub object: ClaimedObject,
    /// The vendor's id of the object.
    #[schemars(length(min = 1, max = 256))]
    pub id: String,
    /// The resource that holds it.
    pub holder: ClaimHolder,
    /// The `DatabaseProvider` it was claimed through (for people; the claim
    /// holds for every provider of the same account).
    #[schemars(length(max = 253))]
    pub provider: String,
}

/// The kind of a claimed vendor object.
#[derive(
    Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, JsonSchema,
)]
pub enum ClaimedObject {
    Project,
    Branch,
    Snapshot,
    ByokCredential,
}

impl ClaimedObject {
    /// Lowercase, for object names.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Project => "project",
            Self::Branch => "branch",
            Self::Snapshot => "snapshot",
            Self::ByokCredential => "byok",
        }
    }
}

/// The dbops resource holding a claim.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClaimHolder {
    /// `DatabaseProject`, `DatabaseBranch`, `DatabaseSnapshot` or `ByokCredential`.
    #[schemars(length(min = 1, max = 63))]
    pub kind: String,
    #[schemars(length(min = 1, max = 63))]
    pub namespace: String,
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// The holder's UID: a new resource under the same name is another holder.
    #[schemars(length(min = 1, max = 128))]
    pub uid: String,
}
