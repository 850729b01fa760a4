//! `DatabaseSnapshotSchedule`: `DatabaseSnapshot`s of a project on a
//! schedule, with retention. The controller is
//! `controllers/kinds/schedule.rs`; when it runs and what it prunes is
//! `controllers/pipeline/schedule.rs`.

use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use super::branch::expire_after;
use super::common::{
    Conditions, DURATION_PATTERN, DeletionPolicy, LocalObjectRef, Rfc3339, interval,
};

/// Label on the snapshots a schedule made: the schedule's name.
pub const SCHEDULE_LABEL: &str = "dbops.dev/schedule";

/// Snapshots of a `DatabaseProject` (same namespace) on a schedule, pruned
/// by `keep`.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[kube(
    group = "dbops.dev",
    doc = "DatabaseSnapshots of a DatabaseProject on a schedule, with retention.",
    version = "v1alpha1",
    kind = "DatabaseSnapshotSchedule",
    namespaced,
    status = "DatabaseSnapshotScheduleStatus",
    shortname = "dbsched",
    category = "dbops",
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = r#".status.conditions[?(@.type=="Ready")].status"#
    ),
    printcolumn(
        name = "Project",
        type_ = "string",
        json_path = ".spec.projectRef.name"
    ),
    printcolumn(name = "Last run", type_ = "string", json_path = ".status.lastRunAt"),
    printcolumn(name = "Next run", type_ = "string", json_path = ".status.nextRunAt"),
    printcolumn(
        name = "Last snapshot",
        type_ = "string",
        json_path = ".status.lastSuccessfulSnapshot"
    ),
    printcolumn(
        name = "Snapshots",
        type_ = "integer",
        json_path = ".status.snapshotCount"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("has(self.schedule) != has(self.interval)").message("set exactly one of schedule and interval")
)]
pub struct DatabaseSnapshotScheduleSpec {
    /// The `DatabaseProject` (same namespace) to snapshot. Immutable.
    #[x_kube(validation = Rule::new("self == oldSelf").message("projectRef is immutable"))]
    pub project_ref: LocalObjectRef,
    /// A five-field cron expression, in UTC (`0 3 * * *`: 03:00 every day).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 9, max = 128))]
    pub schedule: Option<String>,
    /// Or an interval (`6h`, at least `1m`): a first snapshot at once, then
    /// one every interval.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "interval::deserialize"
    )]
    #[schemars(regex(pattern = DURATION_PATTERN), length(max = 64))]
    #[x_kube(validation = Rule::new("duration(self) >= duration('1m')").message("interval must be at least 1m"))]
    pub interval: Option<kube::core::Duration>,
    /// Which snapshots to keep: the newest `last`, none older than
    /// `within`. The newest Ready one is always kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep: Option<Retention>,
    /// The deletion policy of the snapshots it makes (default `Delete`: a
    /// pruned snapshot is deleted at the vendor too).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deletion_policy: Option<DeletionPolicy>,
    /// Take no snapshots while true (retention still runs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suspend: Option<bool>,
    /// Delete its snapshots with the schedule. By default they are left,
    /// as ordinary `DatabaseSnapshot`s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delete_snapshots_with_schedule: Option<bool>,
}

/// Retention of a schedule's snapshots.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct Retention {
    /// Keep at most this many (the newest).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1000))]
    pub last: Option<u32>,
    /// Keep none older than this (`30d`, `72h`; at most `365d`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = expire_after::PATTERN), length(max = 32))]
    pub within: Option<String>,
}

/// Where a schedule stands.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DatabaseSnapshotScheduleStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    #[serde(default)]
    pub conditions: Conditions,
    /// The slot of the last run (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_run_at: Option<Rfc3339>,
    /// The snapshot the last run made.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_snapshot: Option<String>,
    /// When the next run is due (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_run_at: Option<Rfc3339>,
    /// The newest of its snapshots that is Ready.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_successful_snapshot: Option<String>,
    /// How many of its snapshots exist.
    #[serde(default)]
    pub snapshot_count: u32,
}
