use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use super::common::{
    Binding, Conditions, ConnectionSecretTarget, CredentialRotationSpec, CredentialRotationStatus,
    DeletionPolicy, LocalObjectRef, ProviderRef,
};

/// A managed Postgres project at a vendor.
///
/// The operator creates the project through the `DatabaseProvider` named in
/// `providerRef` (or adopts an existing one through `externalId`), writes its
/// connection details into the Secret named in `writeConnectionSecretTo`, and
/// reports `Ready`, `Reconciling` and `Stalled` conditions.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[kube(
    group = "dbops.dev",
    doc = "A managed Postgres project at a vendor, created or adopted by dbops.",
    version = "v1alpha1",
    kind = "DatabaseProject",
    namespaced,
    status = "DatabaseProjectStatus",
    shortname = "dbproj",
    shortname = "dbp",
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
    printcolumn(name = "Project ID", type_ = "string", json_path = ".status.projectId"),
    printcolumn(
        name = "Provider",
        type_ = "string",
        json_path = ".spec.providerRef.name",
        priority = 1
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
// Immutability is checked per field (`self == oldSelf` on the field, which the
// API server only evaluates when the field is set before and after), plus a
// presence check here for the optional ones: cheap rules on bounded fields.
#[x_kube(
    validation = Rule::new("has(self.projectName) == has(oldSelf.projectName)").message("projectName is immutable"),
    validation = Rule::new("has(self.vendor) == has(oldSelf.vendor)").message("vendor is immutable"),
    validation = Rule::new("has(self.region) == has(oldSelf.region)").message("region is immutable"),
    validation = Rule::new("has(self.plan) == has(oldSelf.plan)").message("plan is immutable: dbops sets the size only when it creates the project; resize it at the vendor (for Supabase, its billing add-ons) and leave spec.plan as it was"),
    validation = Rule::new("has(self.postgresVersion) == has(oldSelf.postgresVersion)").message("postgresVersion is immutable"),
    validation = Rule::new("(has(self.mode) ? self.mode : 'managed') == (has(oldSelf.mode) ? oldSelf.mode : 'managed')").message("mode is immutable"),
    validation = Rule::new("has(self.restoreFrom) == has(oldSelf.restoreFrom)").message("restoreFrom is immutable"),
    validation = Rule::new("has(self.externalId) == has(oldSelf.externalId)").message("externalId is immutable"),
    validation = Rule::new("!has(self.mode) || self.mode != 'byok' || has(self.vendor)").message("mode byok requires vendor"),
    validation = Rule::new("!has(self.mode) || self.mode != 'byok' || has(self.byokCredentialRef)").message("mode byok requires byokCredentialRef"),
    validation = Rule::new("!(has(self.externalId) && has(self.restoreFrom))").message("externalId and restoreFrom are mutually exclusive")
)]
pub struct DatabaseProjectSpec {
    /// The `DatabaseProvider` (cluster-scoped) to create the project through. Defaults to `default`.
    #[serde(default)]
    #[x_kube(validation = Rule::new("self == oldSelf").message("providerRef is immutable: create a new DatabaseProject to move to another provider"))]
    pub provider_ref: ProviderRef,

    /// Name of the project at the vendor. Defaults to `<namespace>-<name>-<uid>`
    /// (the last 8 hex digits of the UID: unique to this resource). Immutable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63))]
    #[x_kube(validation = Rule::new("self == oldSelf").message("projectName is immutable"))]
    pub project_name: Option<String>,

    /// Vendor pin for routing APIs such as infrai (`neon`, `supabase`, `planetscale`).
    /// Optional for `mode: managed`, required for `mode: byok`. Immutable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    #[x_kube(validation = Rule::new("self == oldSelf").message("vendor is immutable"))]
    pub vendor: Option<String>,

    /// Region to provision in, as the vendor names it. Immutable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    #[x_kube(validation = Rule::new("self == oldSelf").message("region is immutable"))]
    pub region: Option<String>,

    /// Provisioning plan or size, as the vendor names it, used when the
    /// project is created. Immutable: no vendor document shows a resize dbops
    /// could make without guessing (Supabase's billing add-on endpoint lists
    /// no add-on variants), so resize at the vendor.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    #[x_kube(validation = Rule::new("self == oldSelf").message("plan is immutable: dbops sets the size only when it creates the project; resize it at the vendor (for Supabase, its billing add-ons) and leave spec.plan as it was"))]
    pub plan: Option<String>,

    /// Postgres major version, e.g. `"16"`. Immutable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    #[x_kube(validation = Rule::new("self == oldSelf").message("postgresVersion is immutable"))]
    pub postgres_version: Option<String>,

    /// Provisioning mode: `managed` (the vendor account of the provider) or `byok`
    /// (your own vendor credential, see `byokCredentialRef`). Immutable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<ProjectMode>,

    /// The `ByokCredential` (same namespace) to provision with when `mode: byok`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub byok_credential_ref: Option<LocalObjectRef>,

    /// Create this project by restoring a snapshot instead of creating an empty one. Immutable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self == oldSelf").message("restoreFrom is immutable"))]
    pub restore_from: Option<RestoreSource>,

    /// Adopt an existing vendor project by its id instead of creating one:
    /// allowed only in namespaces the provider admits for adoption
    /// (`spec.adoption.allowedNamespaces`), and only while no other dbops
    /// resource holds the project. An adopted project is kept at the vendor
    /// when this resource is deleted, unless `deletionPolicy` says `Delete`.
    /// Immutable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 256))]
    #[x_kube(validation = Rule::new("self == oldSelf").message("externalId is immutable"))]
    pub external_id: Option<String>,

    /// What happens at the vendor when this resource is deleted: `Delete` or
    /// `Retain`. Defaults to `Delete`, or to `Retain` when `externalId`
    /// adopts an existing object (dbops did not make it); `status.deletionPolicy`
    /// shows the policy in force.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deletion_policy: Option<DeletionPolicy>,

    /// The Secret to write the connection details into. Defaults to `<name>-connection`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub write_connection_secret_to: Option<ConnectionSecretTarget>,
    /// Rotate the database password periodically (providers that support it;
    /// see the capability matrix). One rotation can also be requested with the
    /// annotation `dbops.dev/rotate-credentials`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential_rotation: Option<CredentialRotationSpec>,
}

/// Provisioning mode of a project.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ProjectMode {
    /// The provider's own vendor account.
    Managed,
    /// Your own vendor credential, registered as a `ByokCredential`.
    Byok,
}

/// The snapshot a project is restored from: a `DatabaseSnapshot` or a raw vendor snapshot id.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.snapshotRef) != has(self.snapshotId)").message("set exactly one of snapshotRef and snapshotId"))]
pub struct RestoreSource {
    /// A `DatabaseSnapshot` in the same namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot_ref: Option<LocalObjectRef>,
    /// A vendor snapshot id, for snapshots not managed by a `DatabaseSnapshot`:
    /// naming a vendor object directly is adoption, allowed only in namespaces
    /// the provider admits for it, and never a snapshot that a resource of
    /// another namespace holds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 256))]
    pub snapshot_id: Option<String>,
}

/// Observed state of a `DatabaseProject`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DatabaseProjectStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready`, `Reconciling` and `Stalled`, kstatus style.
    #[serde(default)]
    pub conditions: Conditions,
    /// The vendor's project id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project_id: Option<String>,
    /// Name of the project at the vendor.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project_name: Option<String>,
    /// Region the vendor reports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// When the vendor created the project (vendor's clock, RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<String>,
    /// Name of the Secret holding the connection details, once written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection_secret_name: Option<String>,
    /// The connection Secret, where the Service Binding spec looks for it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub binding: Option<Binding>,
    /// Set (in status, which only the operator writes) just before the
    /// vendor create call is sent, so that deleting the resource before its
    /// id was saved still finds (through the idempotency key) and removes
    /// the vendor project instead of orphaning it. A resumed create takes
    /// over only what it can prove it made.
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
    /// The vendor snapshot id this project was restored from (saved before the restore call).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restored_from_snapshot_id: Option<String>,
    /// The vendor's handle of an asynchronous restore still in progress.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restore_handle: Option<String>,
    /// Credential rotation state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential_rotation: Option<CredentialRotationStatus>,
}

impl DatabaseProjectSpec {
    /// The deletion policy in force ([`super::common::effective_deletion_policy`]).
    pub fn effective_deletion_policy(&self) -> DeletionPolicy {
        super::common::effective_deletion_policy(self.deletion_policy, self.external_id.is_some())
    }
}
