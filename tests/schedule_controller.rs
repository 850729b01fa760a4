//! `DatabaseSnapshotSchedule` against the in-memory Kubernetes API and the
//! emulator: a run makes one snapshot it owns and labels, repeated passes in
//! the same slot make no other (no overlap, no burst), a suspended schedule
//! makes none, retention prunes, and deleting the schedule leaves its
//! snapshots (or deletes them when asked).

mod support;

use dbops::api::v1alpha1::{
    DatabaseProject, DatabaseSnapshot, DatabaseSnapshotSchedule, SCHEDULE_LABEL,
};
use dbops::controllers::Managed;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use serde_json::json;
use support::{Harness, NS, reconcile, reconcile_until_ready};

async fn setup(h: &Harness, schedule: serde_json::Value) {
    let projects: Api<DatabaseProject> = Api::namespaced(h.client.clone(), NS);
    projects
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({ "metadata": { "name": "shop" }, "spec": {} })).unwrap(),
        )
        .await
        .unwrap();
    reconcile_until_ready::<DatabaseProject>(h, "shop", 5).await;
    let schedules: Api<DatabaseSnapshotSchedule> = Api::namespaced(h.client.clone(), NS);
    schedules
        .create(
            &PostParams::default(),
            &serde_json::from_value(schedule).unwrap(),
        )
        .await
        .unwrap();
}

async fn snapshots(h: &Harness) -> Vec<DatabaseSnapshot> {
    Api::<DatabaseSnapshot>::namespaced(h.client.clone(), NS)
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
}

fn schedule(extra: serde_json::Value) -> serde_json::Value {
    let mut spec =
        json!({ "projectRef": { "name": "shop" }, "interval": "1h", "keep": { "last": 2 } });
    for (k, v) in extra.as_object().unwrap() {
        spec[k] = v.clone();
    }
    json!({ "metadata": { "name": "nightly" }, "spec": spec })
}

#[tokio::test]
async fn a_run_makes_one_owned_snapshot_and_a_slot_makes_no_other() {
    let h = Harness::new().await;
    setup(&h, schedule(json!({}))).await;
    for _ in 0..3 {
        reconcile::<DatabaseSnapshotSchedule>(&h, "nightly")
            .await
            .unwrap();
    }
    let made = snapshots(&h).await;
    assert_eq!(made.len(), 1, "one run, one snapshot");
    let snapshot = &made[0];
    assert!(snapshot.name_any().starts_with("nightly-"));
    assert_eq!(snapshot.labels()[SCHEDULE_LABEL], "nightly");
    assert_eq!(
        snapshot.owner_references()[0].kind,
        "DatabaseSnapshotSchedule"
    );
    let schedule: DatabaseSnapshotSchedule = Api::namespaced(h.client.clone(), NS)
        .get("nightly")
        .await
        .unwrap();
    let status = schedule.status.clone().unwrap();
    assert!(schedule.is_ready());
    assert_eq!(status.snapshot_count, 1);
    assert_eq!(
        status.last_snapshot.as_deref(),
        Some(snapshot.name_any().as_str())
    );
    assert!(status.next_run_at.is_some() && status.last_run_at.is_some());
    // The snapshot becomes Ready; the schedule reports it.
    reconcile_until_ready::<DatabaseSnapshot>(&h, &snapshot.name_any(), 6).await;
    reconcile::<DatabaseSnapshotSchedule>(&h, "nightly")
        .await
        .unwrap();
    let status = Api::<DatabaseSnapshotSchedule>::namespaced(h.client.clone(), NS)
        .get("nightly")
        .await
        .unwrap()
        .status
        .unwrap();
    assert_eq!(status.last_successful_snapshot, Some(snapshot.name_any()));

    // Deleting the schedule leaves its snapshot, no longer owned.
    Api::<DatabaseSnapshotSchedule>::namespaced(h.client.clone(), NS)
        .delete("nightly", &DeleteParams::default())
        .await
        .unwrap();
    reconcile::<DatabaseSnapshotSchedule>(&h, "nightly")
        .await
        .unwrap();
    let left = snapshots(&h).await;
    assert_eq!(left.len(), 1);
    assert!(left[0].owner_references().is_empty(), "orphaned, so kept");
}

#[tokio::test]
async fn a_suspended_schedule_takes_nothing() {
    let h = Harness::new().await;
    setup(&h, schedule(json!({ "suspend": true }))).await;
    reconcile::<DatabaseSnapshotSchedule>(&h, "nightly")
        .await
        .unwrap();
    assert!(snapshots(&h).await.is_empty());
    let schedule: DatabaseSnapshotSchedule = Api::namespaced(h.client.clone(), NS)
        .get("nightly")
        .await
        .unwrap();
    assert!(schedule.status.unwrap().next_run_at.is_none());
}

#[tokio::test]
async fn retention_prunes_to_keep_last_and_deletion_can_take_the_snapshots_along() {
    let h = Harness::new().await;
    setup(
        &h,
        schedule(json!({ "deleteSnapshotsWithSchedule": true, "suspend": true })),
    )
    .await;
    let schedules: Api<DatabaseSnapshotSchedule> = Api::namespaced(h.client.clone(), NS);
    let owner = schedules.get("nightly").await.unwrap();
    let uid = owner.metadata.uid.clone().unwrap();
    // Four snapshots earlier runs made, Ready.
    let api: Api<DatabaseSnapshot> = Api::namespaced(h.client.clone(), NS);
    for n in 1..=4 {
        let name = format!("nightly-earlier-{n}");
        api.create(
            &PostParams::default(),
            &serde_json::from_value(json!({ "metadata": { "name": name,
                "labels": { SCHEDULE_LABEL: "nightly" },
                "ownerReferences": [{ "apiVersion": "dbops.dev/v1alpha1", "kind": "DatabaseSnapshotSchedule",
                    "name": "nightly", "uid": uid, "controller": true }] },
                "spec": { "projectRef": { "name": "shop" } } }))
            .unwrap(),
        )
        .await
        .unwrap();
        reconcile_until_ready::<DatabaseSnapshot>(&h, &name, 6).await;
        tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    }
    // A snapshot of the same project that the schedule does not own.
    api.create(
        &PostParams::default(),
        &serde_json::from_value(json!({ "metadata": { "name": "manual" },
            "spec": { "projectRef": { "name": "shop" } } }))
        .unwrap(),
    )
    .await
    .unwrap();
    reconcile::<DatabaseSnapshotSchedule>(&h, "nightly")
        .await
        .unwrap();
    let mut left: Vec<String> = snapshots(&h)
        .await
        .iter()
        .filter(|s| s.metadata.deletion_timestamp.is_none())
        .map(|s| s.name_any())
        .collect();
    left.sort();
    assert_eq!(
        left,
        ["manual", "nightly-earlier-3", "nightly-earlier-4"],
        "the two newest are kept, and what it does not own is not its business"
    );
    assert!(
        h.event_reasons("nightly")
            .contains(&"SnapshotPruned".to_string())
    );
    let status = schedules.get("nightly").await.unwrap().status.unwrap();
    assert_eq!(status.snapshot_count, 2);
    assert_eq!(
        status.last_successful_snapshot.as_deref(),
        Some("nightly-earlier-4")
    );

    schedules
        .delete("nightly", &DeleteParams::default())
        .await
        .unwrap();
    reconcile::<DatabaseSnapshotSchedule>(&h, "nightly")
        .await
        .unwrap();
    for s in snapshots(&h).await {
        let going = s.metadata.deletion_timestamp.is_some()
            || api.get_opt(&s.name_any()).await.unwrap().is_none();
        assert_eq!(going, s.name_any() != "manual", "{}", s.name_any());
    }
}
