use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use super::common::{Conditions, DeletionPolicy, LocalObjectRef};

/// A point-in-time snapshot of a `DatabaseProject` in the same namespace.
///
/// A snapshot is immutable: its spec cannot change after creation. Restore it
/// with a `DatabaseProject` whose `spec.restoreFrom.snapshotRef` names it.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "dbops.dev",
    doc = "An immutable point-in-time snapshot of a DatabaseProject; restore it with spec.restoreFrom on a new DatabaseProject.",
    version = "v1alpha1",
    kind = "DatabaseSnapshot",
    namespaced,
    status = "DatabaseSnapshotStatus",
    shortname = "dbsnap",
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
    printcolumn(
        name = "Snapshot ID",
        type_ = "string",
        json_path = ".status.snapshotId"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self == oldSelf").message("a DatabaseSnapshot is immutable: create a new one instead"))]
pub struct DatabaseSnapshotSpec {
    /// The `DatabaseProject` (same namespace) to snapshot.
    pub project_ref: LocalObjectRef,

    /// Human-readable label stored with the snapshot at the vendor.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 128))]
    pub label: Option<String>,

    /// Adopt an existing vendor snapshot of this project by its id instead of
    /// taking a new one: allowed only in namespaces the provider admits for
    /// adoption, and only while no other dbops resource holds the snapshot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 256))]
    pub external_id: Option<String>,

    /// What happens at the vendor when this resource is deleted: `Delete` or
    /// `Retain`. Defaults to `Delete`, or to `Retain` when `externalId` adopts
    /// an existing snapshot. Providers without a snapshot delete operation
    /// (infrai) keep the snapshot until its project is deleted, and say so in
    /// an Event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deletion_policy: Option<DeletionPolicy>,
}

/// Observed state of a `DatabaseSnapshot`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DatabaseSnapshotStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready`, `Reconciling` and `Stalled`, kstatus style.
    #[serde(default)]
    pub conditions: Conditions,
    /// The vendor's snapshot id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot_id: Option<String>,
    /// The vendor's id of the snapshotted project.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project_id: Option<String>,
    /// When the vendor took the snapshot (vendor's clock, RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<String>,
    /// Set just before the vendor create call is sent (see `DatabaseProject`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub create_requested: bool,
    /// Whether the vendor object was adopted (`spec.externalId`) rather
    /// than created by dbops. An adopted object is kept at the vendor on
    /// deletion unless `spec.deletionPolicy` says `Delete`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub adopted: bool,
    /// The deletion policy in force (`spec.deletionPolicy`, or its default:
    /// `Retain` for an adopted object, `Delete` otherwise).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deletion_policy: Option<DeletionPolicy>,
    /// The `DatabaseProvider` the vendor object was made through, so that it can
    /// still be deleted after its `DatabaseProject` resource is gone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider_name: Option<String>,
}

impl DatabaseSnapshotSpec {
    /// The deletion policy in force ([`super::common::effective_deletion_policy`]).
    pub fn effective_deletion_policy(&self) -> DeletionPolicy {
        super::common::effective_deletion_policy(self.deletion_policy, self.external_id.is_some())
    }
}
