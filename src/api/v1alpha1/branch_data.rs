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
