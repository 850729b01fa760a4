//! `DatabaseSnapshotSchedule`: makes `DatabaseSnapshot`s of a project on a
//! schedule and prunes them. When a run is due and what goes is the pure
//! `pipeline/schedule.rs`; this module reads the schedule's snapshots (by
//! label and owner), creates the one a run makes (named by the run's slot, so
//! a retried run finds it instead of making a second), deletes what retention
//! drops (each through its own deletion policy) and reports.

use std::time::Duration;

use async_trait::async_trait;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::core::DeserializeGuard;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::EventType;
use kube::runtime::watcher;
use kube::{Resource, ResourceExt};

use crate::api::v1alpha1::{
    DatabaseProject, DatabaseSnapshot, DatabaseSnapshotSchedule, DatabaseSnapshotScheduleStatus,
    DatabaseSnapshotSpec, DeletionPolicy, LocalObjectRef, Rfc3339, SCHEDULE_LABEL, expire_after,
};
use crate::controllers::pipeline::schedule::{
    Taken, cadence, due, may_start, next_slot, snapshot_name, to_prune,
};
use crate::controllers::pipeline::{Error, Parent, parent_project};
use crate::controllers::runtime::conditions::{Health, reason};
use crate::controllers::runtime::reconciler::{
    Lifecycle, Managed, apply_status_if_changed, report_progress, requeue,
};
use crate::controllers::runtime::{Context, KubeCall, Scope, dependents, watch};
use crate::providers::Operation;

/// Name of this controller in metrics and logs.
pub const CONTROLLER: &str = "databasesnapshotschedule";

/// How soon a pass looks again while a snapshot is being made.
const IN_PROGRESS_POLL: Duration = Duration::from_secs(10);

crate::impl_managed!(
    DatabaseSnapshotSchedule,
    DatabaseSnapshotScheduleStatus,
    CONTROLLER
);

/// The snapshots `schedule` made: labelled with its name and owned by it.
async fn owned_snapshots(
    schedule: &DatabaseSnapshotSchedule,
    api: &Api<DatabaseSnapshot>,
) -> Result<Vec<DatabaseSnapshot>, Error> {
    let uid = schedule.metadata.uid.clone().ok_or(Error::InvalidObject)?;
    let selector = format!("{SCHEDULE_LABEL}={}", schedule.name_any());
    let list = api
        .list(&ListParams::default().labels(&selector))
        .await
        .map_err(KubeCall::Read)?;
    Ok(list
        .items
        .into_iter()
        .filter(|s| s.owner_references().iter().any(|r| r.uid == uid))
        .collect())
}

fn taken(snapshot: &DatabaseSnapshot) -> Taken {
    let failed = snapshot
        .status
        .as_ref()
        .is_some_and(|s| s.conditions.is_true("Stalled"));
    Taken {
        name: snapshot.name_any(),
        taken_at: snapshot
            .metadata
            .creation_timestamp
            .as_ref()
            .map_or(Timestamp::UNIX_EPOCH, |t| t.0),
        ready: snapshot.is_ready(),
        failed,
    }
}

/// The snapshot a run at `slot` makes.
fn snapshot_for(
    schedule: &DatabaseSnapshotSchedule,
    slot: Timestamp,
) -> Result<DatabaseSnapshot, Error> {
    let owner = schedule
        .controller_owner_ref(&())
        .ok_or(Error::InvalidObject)?;
    let name = snapshot_name(&schedule.name_any(), slot);
    let mut snapshot = DatabaseSnapshot::new(
        &name,
        DatabaseSnapshotSpec {
            project_ref: LocalObjectRef {
                name: schedule.spec.project_ref.name.clone(),
            },
            label: Some(format!("{} {}", schedule.name_any(), slot)),
            external_id: None,
            deletion_policy: Some(
                schedule
                    .spec
                    .deletion_policy
                    .unwrap_or(DeletionPolicy::Delete),
            ),
        },
    );
    snapshot.metadata.namespace = schedule.namespace();
    snapshot.metadata.owner_references = Some(vec![owner]);
    snapshot.metadata.labels = Some(
        [(SCHEDULE_LABEL.to_string(), schedule.name_any())]
            .into_iter()
            .collect(),
    );
    Ok(snapshot)
}

#[async_trait]
impl Lifecycle for DatabaseSnapshotSchedule {
    type Error = Error;

    async fn apply(&self, api: &Api<Self>, ctx: &Context) -> Result<Action, Error> {
        let namespace = self.namespace().ok_or(Error::InvalidObject)?;
        let spec = &self.spec;
        let cadence = cadence(spec.schedule.as_deref(), spec.interval.map(Duration::from))
            .map_err(|e| Error::InvalidSpec {
                message: e.to_string(),
            })?;
        let within = match spec.keep.as_ref().and_then(|k| k.within.as_deref()) {
            Some(text) => Some(
                expire_after::parse(text)
                    .ok()
                    .and_then(|d| Duration::try_from(d).ok())
                    .ok_or_else(|| Error::InvalidSpec {
                        message: format!("keep.within {}", expire_after::NOT_A_DURATION),
                    })?,
            ),
            None => None,
        };
        // The project, Ready, and a provider that can snapshot.
        let project_name = &spec.project_ref.name;
        let project = match parent_project(ctx, &namespace, project_name)
            .await
            .map_err(KubeCall::Read)?
        {
            Parent::Ready { project, .. } => project,
            _ => {
                let health = Health::progressing(
                    reason::WAITING_FOR_PROJECT,
                    format!("waiting for DatabaseProject {project_name} to be Ready"),
                );
                report_progress(api, self, &health)
                    .await
                    .map_err(KubeCall::Status)?;
                return Ok(requeue(self, ctx.jittered_resync()));
            }
        };
        let provider = ctx
            .provider_in(&namespace, &project.spec.provider_ref, false)
            .await?;
        if !provider.supports(Operation::SnapshotCreate) {
            return Err(Error::Unsupported {
                provider: provider.api().to_string(),
                operation: Operation::SnapshotCreate,
                hint: "a schedule needs a provider that can snapshot (see the capability matrix)",
            });
        }

        let snapshots: Api<DatabaseSnapshot> = Api::namespaced(ctx.client.clone(), &namespace);
        let mut owned: Vec<Taken> = owned_snapshots(self, &snapshots)
            .await?
            .iter()
            .map(taken)
            .collect();
        let previous = self.current_status();
        let mut status = previous.clone();
        let now = Timestamp::now();
        let anchor = self
            .metadata
            .creation_timestamp
            .as_ref()
            .map_or(now, |t| t.0);
        let last_run = previous.last_run_at.map(|t| t.0);
        let mut events = Vec::new();
        let suspended = spec.suspend.unwrap_or(false);
        if !suspended && let Some(slot) = due(&cadence, anchor, last_run, now) {
            if may_start(&owned) {
                let snapshot = snapshot_for(self, slot)?;
                let name = snapshot.name_any();
                match snapshots.create(&PostParams::default(), &snapshot).await {
                    Ok(_) => events.push((
                        EventType::Normal,
                        "SnapshotCreated",
                        format!("created DatabaseSnapshot {name} for the run at {slot}"),
                    )),
                    // A retried run: the snapshot of this slot exists.
                    Err(kube::Error::Api(e)) if e.code == 409 => {}
                    Err(e) => return Err(KubeCall::Write(e).into()),
                }
                if !owned.iter().any(|t| t.name == name) {
                    owned.push(Taken {
                        name: name.clone(),
                        taken_at: now,
                        ready: false,
                        failed: false,
                    });
                }
                status.last_snapshot = Some(name);
            } else {
                events.push((
                    EventType::Warning,
                    "RunSkipped",
                    format!(
                        "the run at {slot} was skipped: the previous snapshot is still being made (runs never overlap)"
                    ),
                ));
            }
            status.last_run_at = Some(Rfc3339(slot));
        }
        // Retention, each snapshot through its own deletion policy.
        let last = spec.keep.as_ref().and_then(|k| k.last);
        for name in to_prune(&owned, last, within, now) {
            match snapshots.delete(&name, &DeleteParams::background()).await {
                Ok(_) => events.push((
                    EventType::Normal,
                    "SnapshotPruned",
                    format!("deleted DatabaseSnapshot {name} (retention)"),
                )),
                Err(kube::Error::Api(e)) if e.code == 404 => {}
                Err(e) => return Err(KubeCall::Write(e).into()),
            }
            owned.retain(|t| t.name != name);
        }
        status.snapshot_count = u32::try_from(owned.len()).unwrap_or(u32::MAX);
        status.last_successful_snapshot = owned
            .iter()
            .filter(|t| t.ready)
            .max_by_key(|t| t.taken_at)
            .map(|t| t.name.clone());
        let after = status.last_run_at.map_or(now, |t| t.0.max(now));
        let next = if suspended {
            None
        } else {
            next_slot(&cadence, anchor, after)
        };
        status.next_run_at = next.map(Rfc3339);
        let message = match (&next, suspended) {
            (_, true) => "suspended: no snapshot is taken; retention still runs".to_string(),
            (Some(next), false) => format!(
                "{} snapshots of DatabaseProject {project_name}; next run at {next}",
                owned.len()
            ),
            (None, false) => format!(
                "{} snapshots of DatabaseProject {project_name}",
                owned.len()
            ),
        };
        let status = self.status_with_health(&status, &Health::ready(message));
        apply_status_if_changed(api, self, &previous, &status)
            .await
            .map_err(KubeCall::Status)?;
        for (type_, why, note) in events {
            ctx.publish(self, type_, why, "Reconcile", note).await;
        }
        let until_next = next
            .and_then(|n| Duration::try_from(n.duration_since(Timestamp::now())).ok())
            .unwrap_or(Duration::from_secs(1))
            .max(Duration::from_secs(1));
        let in_progress = owned.iter().any(|t| !t.ready && !t.failed);
        let mut delay = ctx.jittered_resync().min(until_next);
        if in_progress {
            delay = delay.min(IN_PROGRESS_POLL);
        }
        Ok(requeue(self, delay))
    }

    /// Its snapshots are left as ordinary `DatabaseSnapshot`s (their owner
    /// reference removed, so garbage collection keeps them), unless
    /// `deleteSnapshotsWithSchedule` says to delete them.
    async fn cleanup(&self, _api: &Api<Self>, ctx: &Context) -> Result<Action, Error> {
        let namespace = self.namespace().ok_or(Error::InvalidObject)?;
        let snapshots: Api<DatabaseSnapshot> = Api::namespaced(ctx.client.clone(), &namespace);
        let owned = owned_snapshots(self, &snapshots).await?;
        let uid = self.metadata.uid.clone().unwrap_or_default();
        let delete = self.spec.delete_snapshots_with_schedule.unwrap_or(false);
        for snapshot in &owned {
            let name = snapshot.name_any();
            let result = if delete {
                snapshots
                    .delete(&name, &DeleteParams::background())
                    .await
                    .map(|_| ())
            } else {
                let kept: Vec<_> = snapshot
                    .owner_references()
                    .iter()
                    .filter(|r| r.uid != uid)
                    .cloned()
                    .collect();
                let patch = serde_json::json!({
                    "metadata": {
                        "ownerReferences": kept,
                        "resourceVersion": snapshot.metadata.resource_version,
                    }
                });
                snapshots
                    .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await
                    .map(|_| ())
            };
            match result {
                Ok(()) => {}
                Err(kube::Error::Api(e)) if e.code == 404 => {}
                Err(e) => return Err(KubeCall::Write(e).into()),
            }
        }
        let note = if delete {
            format!("deleted its {} snapshots", owned.len())
        } else {
            format!("left its {} snapshots in place", owned.len())
        };
        ctx.publish(self, EventType::Normal, "Deleted", "Delete", note)
            .await;
        Ok(Action::await_change())
    }
}

/// The `DatabaseSnapshotSchedule` controller, ready to run with
/// [`drive`](crate::controllers::runtime::drive). Its snapshots' changes
/// wake it (a snapshot becoming Ready lets the next run start).
pub fn controller(
    ctx: &Context,
    scope: &Scope,
    watcher_config: watcher::Config,
) -> Controller<DeserializeGuard<DatabaseSnapshotSchedule>> {
    let client = ctx.client.clone();
    let controller = watch::lean_controller(
        scope.api::<DeserializeGuard<DatabaseSnapshotSchedule>>(client.clone()),
        watcher_config.clone(),
    );
    let by_project = dependents(controller.store(), |k: &DatabaseSnapshotSchedule| {
        Some(k.spec.project_ref.name.as_str())
    });
    controller
        .owns(
            scope.api::<DeserializeGuard<DatabaseSnapshot>>(client.clone()),
            watcher_config.clone().labels(SCHEDULE_LABEL),
        )
        .watches(
            scope.api::<DeserializeGuard<DatabaseProject>>(client),
            watcher_config,
            by_project,
        )
}
