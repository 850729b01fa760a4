//! What a branch holds (`DatabaseBranch.spec.data`, issue #26): a full copy,
//! the schema only, or masked rows.
//!
//! The planner is `controllers/pipeline/masking.rs`; the branch controller
//! applies it before it writes the branch's connection Secret.

use std::collections::BTreeMap;

use kube::KubeSchema;
use serde::{Deserialize, Serialize};

/// What the branch's database holds.
#[derive(
    Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, schemars::JsonSchema,
)]
pub enum DataMode {
    /// Every row, as the vendor copies it.
    #[default]
    Full,
    /// Every table, sequence, constraint, index, view and function; no rows.
    SchemaOnly,
    /// Every row, with the columns in `masking` masked before anyone can connect.
    Masked,
}

/// How a masked column's values are replaced. Every function is
/// deterministic within one masking run of a branch (joins on masked keys
/// still match) and differs across branches and runs.
#[derive(
    Serialize,
    Deserialize,
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    schemars::JsonSchema,
    strum::Display,
)]
pub enum MaskFunction {
    /// `u<16 hex digits>@example.invalid`: unique per input.
    Email,
    /// 64 hex digits: unique per input.
    Hash,
    /// `NULL` (the column must allow it).
    Null,
    /// The rule's `value`, for every row.
    Constant,
    /// As many `*` as the value had characters.
    Redact,
    /// Each digit replaced by another, everything else kept (same length and format).
    Digits,
}

/// How one column is masked.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("self.with != 'Constant' || has(self.value)").message("with: Constant needs a value"),
    validation = Rule::new("self.with == 'Constant' || !has(self.value)").message("value is only for with: Constant")
)]
pub struct ColumnMask {
    pub with: MaskFunction,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    pub value: Option<String>,
}

/// The masked columns of one table.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct TableMask {
    /// `schema.table`, or `table` for `public`.
    #[schemars(length(min = 1, max = 127))]
    pub table: String,
    /// Column name to how it is masked.
    #[schemars(extend("maxProperties" = 128))]
    pub columns: BTreeMap<String, ColumnMask>,
}

/// What happens to columns that look like personal data and have no rule.
#[derive(
    Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, schemars::JsonSchema,
)]
pub enum UnmaskedColumns {
    /// The branch stalls (`UnmaskedColumns`), naming them, and hands out no Secret.
    #[default]
    Refuse,
    /// They are copied as they are.
    Allow,
}

/// `spec.data` of a branch.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct BranchData {
    #[serde(default)]
    pub mode: DataMode,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 256))]
    pub masking: Vec<TableMask>,
    #[serde(default)]
    pub unmasked_columns: UnmaskedColumns,
}

/// `spec.data` as applied to a vendor branch.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DataApplied {
    /// The vendor branch it was applied to.
    pub branch_id: String,
    pub mode: DataMode,
    /// When (RFC 3339).
    pub at: super::common::Rfc3339,
    /// Where dbops chooses the branch's password: it was set after the data
    /// was applied (the create's password is kept nowhere).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub password_set: bool,
}

/// Resets of a branch from its parent (`dbops.dev/reset-from-parent`,
/// `spec.resetSchedule`): what was handled, and the reset under way.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ResetStatus {
    /// The last value of the annotation that was handled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotation: Option<String>,
    /// The last scheduled time that was handled (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slot: Option<super::common::Rfc3339>,
    /// Why the last reset failed (the old branch kept serving).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_failure: Option<String>,
    /// The reset under way.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending: Option<PendingReset>,
    /// A vendor branch a reset replaced: deleted once the connection Secret
    /// names its successor.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retiring: Option<String>,
}

/// A reset under way: each step is saved before the next starts, so a crash
/// anywhere leaves nothing that a later pass or the cleanup does not find.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PendingReset {
    /// The annotation value it answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotation: Option<String>,
    /// The scheduled time it answers (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slot: Option<super::common::Rfc3339>,
    /// Names this reset's vendor objects and requests.
    pub token: String,
    /// In place: the staged copy (its id for the SQL channel, and the handle
    /// the swap checks).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub staged_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub staged_handle: Option<String>,
    /// A new branch: its create was sent.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub create_requested: bool,
    /// A new branch: its id and name at the vendor.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub new_branch_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub new_branch_name: Option<String>,
    /// `spec.data` was applied to the fresh copy.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub data_applied: bool,
}
