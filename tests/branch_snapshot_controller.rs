//! DatabaseBranch, DatabaseSnapshot and restore-from-snapshot against the
//! in-memory Kubernetes API and the infrai emulator.

mod support;

use axum::http::Method;
use dbops::api::v1alpha1::{
    DatabaseBranch, DatabaseProject, DatabaseProjectSpec, DatabaseSnapshot, DatabaseSnapshotSpec,
    DeletionPolicy, LocalObjectRef, RestoreSource,
};
use dbops::controllers::conditions::{READY, RECONCILING, STALLED};
use dbops::controllers::{Managed, ReconcileError};
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::core::DeserializeGuard;
use serde::Serialize;
use serde::de::DeserializeOwned;
use support::{Harness, NS, condition, reconcile, reconcile_until_ready};

async fn create<K>(h: &Harness, obj: K) -> K
where
    K: kube::Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + Serialize
        + DeserializeOwned
        + std::fmt::Debug,
{
    let api: Api<K> = Api::namespaced(h.client.clone(), NS);
    api.create(&PostParams::default(), &obj).await.unwrap()
}

async fn get<K>(h: &Harness, name: &str) -> Option<K>
where
    K: kube::Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug,
{
    let api: Api<K> = Api::namespaced(h.client.clone(), NS);
    api.get_opt(name).await.unwrap()
}

async fn delete<K>(h: &Harness, name: &str)
where
    K: kube::Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug,
{
    let api: Api<K> = Api::namespaced(h.client.clone(), NS);
    api.delete(name, &DeleteParams::default()).await.unwrap();
}

fn project(name: &str) -> DatabaseProject {
    DatabaseProject::new(name, DatabaseProjectSpec::default())
}

use support::branch;

fn snapshot(name: &str, project: &str) -> DatabaseSnapshot {
    DatabaseSnapshot::new(
        name,
        DatabaseSnapshotSpec {
            project_ref: LocalObjectRef {
                name: project.into(),
            },
            label: Some("before-migration".into()),
            external_id: None,
            deletion_policy: Some(DeletionPolicy::Delete),
        },
    )
}

async fn secret_uri(h: &Harness, name: &str) -> String {
    let api: Api<Secret> = Api::namespaced(h.client.clone(), NS);
    let s = api.get(name).await.unwrap();
    String::from_utf8(s.data.unwrap()["uri"].0.clone()).unwrap()
}

#[tokio::test]
async fn a_branch_waits_for_its_project_then_becomes_ready() {
    let h = Harness::new().await;
    create(&h, branch("preview", "shop")).await;
    reconcile::<DatabaseBranch>(&h, "preview").await.unwrap(); // finalizer
    reconcile::<DatabaseBranch>(&h, "preview").await.unwrap();
    let b: DatabaseBranch = get(&h, "preview").await.unwrap();
    assert_eq!(
        condition(&b, RECONCILING),
        ("True".into(), "WaitingForProject".into())
    );
    assert_eq!(condition(&b, READY).0, "False");
    assert_eq!(condition(&b, STALLED).0, "False", "waiting is not an error");
    assert!(
        b.status
            .unwrap()
            .conditions
            .get(RECONCILING)
            .unwrap()
            .message
            .contains("does not exist yet")
    );

    // The project exists but is not Ready yet: still waiting, no vendor call, no error.
    create(&h, project("shop")).await;
    reconcile::<DatabaseBranch>(&h, "preview").await.unwrap();
    let b: DatabaseBranch = get(&h, "preview").await.unwrap();
    assert!(
        b.status
            .unwrap()
            .conditions
            .get(RECONCILING)
            .unwrap()
            .message
            .contains("to be Ready")
    );
    assert!(h.emulator.infrai.projects().is_empty());

    let p = reconcile_until_ready::<DatabaseProject>(&h, "shop", 3).await;
    let b = reconcile_until_ready::<DatabaseBranch>(&h, "preview", 2).await;
    let status = b.status.clone().unwrap();
    let project_id = p.status.unwrap().project_id.unwrap();
    assert_eq!(status.project_id.as_deref(), Some(project_id.as_str()));
    assert_eq!(status.provider_name.as_deref(), Some("default"));
    let branch_id = status.branch_id.unwrap();
    let (parent, _) = h.emulator.infrai.branch_data(&branch_id).unwrap();
    assert_eq!(
        parent,
        h.emulator.infrai.default_branch_id(&project_id),
        "branched from the default branch"
    );

    // The branch's Secret holds the branch's own endpoint, not the project's.
    let branch_uri = secret_uri(&h, "preview-db").await;
    let project_uri = secret_uri(&h, "shop-connection").await;
    assert!(branch_uri.starts_with("postgresql://"));
    assert_ne!(branch_uri, project_uri);
    assert!(branch_uri.contains(&branch_id));
    // Made and ready in one pass: one Event says both.
    assert!(h.event_reasons("preview").contains(&"Created".to_string()));
}

#[tokio::test]
async fn a_branch_of_a_branch_copies_its_parent() {
    let h = Harness::new().await;
    create(&h, project("shop")).await;
    reconcile_until_ready::<DatabaseProject>(&h, "shop", 3).await;
    create(&h, branch("dev", "shop")).await;
    let dev = reconcile_until_ready::<DatabaseBranch>(&h, "dev", 3).await;
    let mut feature = branch("feature", "shop");
    feature.spec.branch_name = Some("feature-x".into());
    feature.spec.from_branch = Some("dev".into());
    create(&h, feature).await;
    let feature = reconcile_until_ready::<DatabaseBranch>(&h, "feature", 3).await;
    let (parent, _) = h
        .emulator
        .infrai
        .branch_data(&feature.status.unwrap().branch_id.unwrap())
        .unwrap();
    assert_eq!(parent, dev.status.unwrap().branch_id);
}

#[tokio::test]
async fn branch_crash_after_vendor_create_does_not_duplicate() {
    let h = Harness::new().await;
    create(&h, project("shop")).await;
    reconcile_until_ready::<DatabaseProject>(&h, "shop", 3).await;
    let branches_before = h.emulator.infrai.branch_count();
    create(&h, branch("preview", "shop")).await;
    h.kube
        .fail_after(Method::PATCH, "/databasebranches/preview/status", 1, 500, 1);
    let err = reconcile::<DatabaseBranch>(&h, "preview")
        .await
        .unwrap_err();
    assert!(err.is_transient());
    assert_eq!(h.emulator.infrai.branch_count(), branches_before + 1);
    reconcile_until_ready::<DatabaseBranch>(&h, "preview", 2).await;
    assert_eq!(
        h.emulator.infrai.branch_count(),
        branches_before + 1,
        "no second branch"
    );
}

#[tokio::test]
async fn a_branch_is_adopted_by_external_id_once_free_and_kept_unless_told_otherwise() {
    let h = Harness::new().await;
    create(&h, project("shop")).await;
    let p = reconcile_until_ready::<DatabaseProject>(&h, "shop", 3).await;
    let mut first = branch("first", "shop");
    first.spec.deletion_policy = Some(DeletionPolicy::Retain);
    create(&h, first).await;
    let first = reconcile_until_ready::<DatabaseBranch>(&h, "first", 3).await;
    let first_id = first.status.unwrap().branch_id.unwrap();

    // While "first" holds it, nobody else can adopt it, and is not told who has it.
    let mut rival = branch("rival", "shop");
    rival.spec.external_id = Some(first_id.clone());
    create(&h, rival).await;
    let err = reconcile::<DatabaseBranch>(&h, "rival").await.unwrap_err();
    assert_eq!(err.category(), "AlreadyClaimed");
    let rival = get::<DatabaseBranch>(&h, "rival").await.unwrap();
    assert_eq!(
        condition(&rival, "Stalled"),
        ("True".into(), "AlreadyClaimed".into())
    );
    assert!(!err.to_string().contains("first"), "{err}");
    assert!(rival.status.unwrap().branch_id.is_none());
    delete::<DatabaseBranch>(&h, "rival").await;
    reconcile::<DatabaseBranch>(&h, "rival").await.unwrap();
    assert!(get::<DatabaseBranch>(&h, "rival").await.is_none());
    assert!(
        h.emulator.infrai.branch_data(&first_id).is_some(),
        "untouched"
    );

    // "first" goes (Retain): the vendor branch stays, free to adopt.
    delete::<DatabaseBranch>(&h, "first").await;
    reconcile::<DatabaseBranch>(&h, "first").await.unwrap();
    assert!(h.emulator.infrai.branch_data(&first_id).is_some());

    // Adopted without a policy: Retain by default, said in status.
    let mut adopter = branch("adopter", "shop");
    adopter.spec.external_id = Some(first_id.clone());
    adopter.spec.deletion_policy = None;
    create(&h, adopter).await;
    let count = h.emulator.infrai.branch_count();
    let adopted = reconcile_until_ready::<DatabaseBranch>(&h, "adopter", 3).await;
    let status = adopted.status.clone().unwrap();
    assert_eq!(status.branch_id.as_deref(), Some(first_id.as_str()));
    assert!(status.adopted);
    assert_eq!(status.deletion_policy, Some(DeletionPolicy::Retain));
    let ready = &status.conditions.get("Ready").unwrap().message;
    assert!(ready.contains("kept at the vendor"), "{ready}");
    assert_eq!(
        h.emulator.infrai.branch_count(),
        count,
        "adoption creates nothing"
    );
    assert!(h.event_reasons("adopter").contains(&"Adopted".to_string()));
    delete::<DatabaseBranch>(&h, "adopter").await;
    reconcile::<DatabaseBranch>(&h, "adopter").await.unwrap();
    assert!(get::<DatabaseBranch>(&h, "adopter").await.is_none());
    assert!(h.emulator.infrai.branch_data(&first_id).is_some(), "kept");

    // Adopted with an explicit Delete: the vendor branch goes with it.
    let mut deleter = branch("deleter", "shop");
    deleter.spec.external_id = Some(first_id.clone());
    deleter.spec.deletion_policy = Some(DeletionPolicy::Delete);
    create(&h, deleter).await;
    reconcile_until_ready::<DatabaseBranch>(&h, "deleter", 3).await;
    delete::<DatabaseBranch>(&h, "deleter").await;
    reconcile::<DatabaseBranch>(&h, "deleter").await.unwrap();
    assert!(get::<DatabaseBranch>(&h, "deleter").await.is_none());
    assert!(h.emulator.infrai.branch_data(&first_id).is_none());
    let project_id = p.status.unwrap().project_id.unwrap();
    assert!(
        h.emulator.infrai.default_branch_id(&project_id).is_some(),
        "the project is untouched"
    );
    assert!(
        h.kube
            .objects("apis/dbops.dev/v1alpha1/vendorclaims")
            .iter()
            .all(|c| { c["spec"]["id"] != serde_json::json!(first_id) }),
        "every claim of the branch was released with its holder"
    );

    // An id from another project is refused, without naming that project,
    // and deleting the refused resource leaves that branch alone.
    create(&h, project("other")).await;
    let other = reconcile_until_ready::<DatabaseProject>(&h, "other", 3).await;
    let other_project = other.status.unwrap().project_id.unwrap();
    let other_main = h.emulator.infrai.default_branch_id(&other_project).unwrap();
    let mut wrong = branch("wrong", "shop");
    wrong.spec.external_id = Some(other_main.clone());
    wrong.spec.deletion_policy = Some(DeletionPolicy::Delete);
    create(&h, wrong).await;
    let err = reconcile::<DatabaseBranch>(&h, "wrong").await.unwrap_err();
    assert_eq!(err.category(), "InvalidSpec");
    assert!(!err.to_string().contains(&other_project), "{err}");
    delete::<DatabaseBranch>(&h, "wrong").await;
    reconcile::<DatabaseBranch>(&h, "wrong").await.unwrap();
    assert!(get::<DatabaseBranch>(&h, "wrong").await.is_none());
    assert!(
        h.emulator.infrai.branch_data(&other_main).is_some(),
        "a refused adoption never deletes what it named"
    );
}

#[tokio::test]
async fn a_snapshot_is_taken_once_the_project_is_ready_and_says_what_delete_does() {
    let h = Harness::new().await;
    create(&h, snapshot("nightly", "shop")).await;
    create(&h, project("shop")).await;
    reconcile::<DatabaseSnapshot>(&h, "nightly").await.unwrap();
    reconcile::<DatabaseSnapshot>(&h, "nightly").await.unwrap();
    let s: DatabaseSnapshot = get(&h, "nightly").await.unwrap();
    assert_eq!(
        condition(&s, RECONCILING),
        ("True".into(), "WaitingForProject".into())
    );
    assert_eq!(h.emulator.infrai.snapshot_count(), 0);

    let p = reconcile_until_ready::<DatabaseProject>(&h, "shop", 3).await;
    let s = reconcile_until_ready::<DatabaseSnapshot>(&h, "nightly", 2).await;
    let status = s.status.clone().unwrap();
    assert!(
        status
            .snapshot_id
            .as_deref()
            .is_some_and(|id| id.starts_with("snap_"))
    );
    assert_eq!(status.project_id, p.status.unwrap().project_id);
    assert!(status.created_at.is_some());
    let ready = status.conditions.get(READY).unwrap();
    assert!(
        ready.message.contains("no snapshot delete"),
        "{}",
        ready.message
    );
    assert_eq!(h.emulator.infrai.snapshot_count(), 1);

    // Steady state: nothing written, nothing created.
    h.kube.clear_log();
    reconcile::<DatabaseSnapshot>(&h, "nightly").await.unwrap();
    assert_eq!(h.kube.writes(), 0);
    assert_eq!(h.emulator.infrai.snapshot_count(), 1);

    // infrai cannot delete snapshots: the resource is released, the snapshot stays, an Event says so.
    delete::<DatabaseSnapshot>(&h, "nightly").await;
    reconcile::<DatabaseSnapshot>(&h, "nightly").await.unwrap();
    assert!(get::<DatabaseSnapshot>(&h, "nightly").await.is_none());
    assert_eq!(h.emulator.infrai.snapshot_count(), 1);
    assert!(
        h.event_reasons("nightly")
            .contains(&"NotDeletedByProvider".to_string())
    );
}

#[tokio::test]
async fn snapshot_crash_after_vendor_create_does_not_duplicate() {
    let h = Harness::new().await;
    create(&h, project("shop")).await;
    reconcile_until_ready::<DatabaseProject>(&h, "shop", 3).await;
    create(&h, snapshot("nightly", "shop")).await;
    h.kube.fail_after(
        Method::PATCH,
        "/databasesnapshots/nightly/status",
        1,
        500,
        1,
    );
    reconcile::<DatabaseSnapshot>(&h, "nightly")
        .await
        .unwrap_err();
    assert_eq!(h.emulator.infrai.snapshot_count(), 1);
    reconcile_until_ready::<DatabaseSnapshot>(&h, "nightly", 2).await;
    assert_eq!(h.emulator.infrai.snapshot_count(), 1);
}

#[tokio::test]
async fn restore_waits_for_the_snapshot_then_makes_a_new_project_with_its_data() {
    let h = Harness::new().await;
    create(&h, project("shop")).await;
    let source = reconcile_until_ready::<DatabaseProject>(&h, "shop", 3).await;
    let source_id = source.status.unwrap().project_id.unwrap();
    let main = h.emulator.infrai.default_branch_id(&source_id).unwrap();
    h.emulator.infrai.write_branch_data(&main, "orders", "42");

    let restored = DatabaseProject::new(
        "shop-restored",
        DatabaseProjectSpec {
            restore_from: Some(RestoreSource {
                snapshot_ref: Some(LocalObjectRef {
                    name: "nightly".into(),
                }),
                snapshot_id: None,
            }),
            ..Default::default()
        },
    );
    create(&h, restored).await;
    reconcile::<DatabaseProject>(&h, "shop-restored")
        .await
        .unwrap();
    reconcile::<DatabaseProject>(&h, "shop-restored")
        .await
        .unwrap();
    let r: DatabaseProject = get(&h, "shop-restored").await.unwrap();
    assert_eq!(
        condition(&r, RECONCILING),
        ("True".into(), "WaitingForSnapshot".into())
    );
    assert_eq!(h.emulator.infrai.projects().len(), 1);

    create(&h, snapshot("nightly", "shop")).await;
    reconcile_until_ready::<DatabaseSnapshot>(&h, "nightly", 3).await;
    h.emulator.infrai.write_branch_data(&main, "orders", "43");
    let r = reconcile_until_ready::<DatabaseProject>(&h, "shop-restored", 3).await;
    let status = r.status.unwrap();
    let new_id = status.project_id.unwrap();
    assert_ne!(new_id, source_id);
    assert!(status.restored_from_snapshot_id.is_some());
    let vendor = h.emulator.infrai.projects();
    assert_eq!(vendor.len(), 2);
    let uid = r.metadata.uid.unwrap();
    let expected = dbops::providers::generated_name("team-a", "shop-restored", &uid);
    assert!(expected.starts_with("team-a-shop-restored-"));
    assert!(vendor.iter().any(|p| p.id == new_id && p.name == expected));
    let (_, data) = h
        .emulator
        .infrai
        .branch_data(&h.emulator.infrai.default_branch_id(&new_id).unwrap())
        .unwrap();
    assert_eq!(
        data.get("orders").map(String::as_str),
        Some("42"),
        "the restore has the snapshot's data"
    );
    assert!(
        secret_uri(&h, "shop-restored-connection")
            .await
            .starts_with("postgresql://")
    );

    // A restored project deletes like any other.
    delete::<DatabaseProject>(&h, "shop-restored").await;
    reconcile::<DatabaseProject>(&h, "shop-restored")
        .await
        .unwrap();
    assert_eq!(h.emulator.infrai.projects().len(), 1);
}

#[tokio::test]
async fn restore_by_raw_snapshot_id_survives_a_crash_without_duplicating() {
    let h = Harness::new().await;
    create(&h, project("shop")).await;
    reconcile_until_ready::<DatabaseProject>(&h, "shop", 3).await;
    create(&h, snapshot("nightly", "shop")).await;
    let snap = reconcile_until_ready::<DatabaseSnapshot>(&h, "nightly", 3).await;
    let snapshot_id = snap.status.unwrap().snapshot_id.unwrap();

    let restored = DatabaseProject::new(
        "copy",
        DatabaseProjectSpec {
            restore_from: Some(RestoreSource {
                snapshot_ref: None,
                snapshot_id: Some(snapshot_id.clone()),
            }),
            ..Default::default()
        },
    );
    create(&h, restored).await;
    h.kube
        .fail_after(Method::PATCH, "/databaseprojects/copy/status", 1, 500, 1);
    reconcile::<DatabaseProject>(&h, "copy").await.unwrap_err();
    assert_eq!(h.emulator.infrai.projects().len(), 2);
    let r = reconcile_until_ready::<DatabaseProject>(&h, "copy", 2).await;
    assert_eq!(
        h.emulator.infrai.projects().len(),
        2,
        "the retried restore did not make a third project"
    );
    assert_eq!(
        r.status.unwrap().restored_from_snapshot_id.as_deref(),
        Some(snapshot_id.as_str())
    );
}

#[tokio::test]
async fn deleting_a_project_with_live_children_leaves_nothing_stuck() {
    let h = Harness::new().await;
    create(&h, project("shop")).await;
    reconcile_until_ready::<DatabaseProject>(&h, "shop", 3).await;
    create(&h, branch("preview", "shop")).await;
    create(&h, snapshot("nightly", "shop")).await;
    reconcile_until_ready::<DatabaseBranch>(&h, "preview", 3).await;
    reconcile_until_ready::<DatabaseSnapshot>(&h, "nightly", 3).await;

    // The project goes first; the vendor deletes its branches and snapshots with it.
    delete::<DatabaseProject>(&h, "shop").await;
    reconcile::<DatabaseProject>(&h, "shop").await.unwrap();
    assert!(get::<DatabaseProject>(&h, "shop").await.is_none());
    assert!(h.emulator.infrai.projects().is_empty());
    assert_eq!(h.emulator.infrai.branch_count(), 0);
    assert_eq!(h.emulator.infrai.snapshot_count(), 0);

    // The children say so, clearly.
    let err = reconcile::<DatabaseBranch>(&h, "preview")
        .await
        .unwrap_err();
    assert_eq!(err.category(), "ProjectDeleted");
    let b: DatabaseBranch = get(&h, "preview").await.unwrap();
    assert_eq!(
        condition(&b, STALLED),
        ("True".into(), "ProjectDeleted".into())
    );
    let s_err = reconcile::<DatabaseSnapshot>(&h, "nightly")
        .await
        .unwrap_err();
    assert_eq!(s_err.category(), "ProjectDeleted");

    // And their deletion completes: the vendor's "not found" counts as done.
    delete::<DatabaseBranch>(&h, "preview").await;
    reconcile::<DatabaseBranch>(&h, "preview").await.unwrap();
    assert!(get::<DatabaseBranch>(&h, "preview").await.is_none());
    delete::<DatabaseSnapshot>(&h, "nightly").await;
    reconcile::<DatabaseSnapshot>(&h, "nightly").await.unwrap();
    assert!(get::<DatabaseSnapshot>(&h, "nightly").await.is_none());
}

#[tokio::test]
async fn children_of_a_retained_project_are_still_deleted_through_the_recorded_provider() {
    let h = Harness::new().await;
    let mut keep = project("keep");
    keep.spec.deletion_policy = Some(DeletionPolicy::Retain);
    create(&h, keep).await;
    reconcile_until_ready::<DatabaseProject>(&h, "keep", 3).await;
    create(&h, branch("preview", "keep")).await;
    let b = reconcile_until_ready::<DatabaseBranch>(&h, "preview", 3).await;
    let branch_id = b.status.unwrap().branch_id.unwrap();

    delete::<DatabaseProject>(&h, "keep").await;
    reconcile::<DatabaseProject>(&h, "keep").await.unwrap();
    assert_eq!(
        h.emulator.infrai.projects().len(),
        1,
        "retained at the vendor"
    );

    delete::<DatabaseBranch>(&h, "preview").await;
    reconcile::<DatabaseBranch>(&h, "preview").await.unwrap();
    assert!(get::<DatabaseBranch>(&h, "preview").await.is_none());
    assert!(
        h.emulator.infrai.branch_data(&branch_id).is_none(),
        "vendor branch deleted through status.providerName"
    );
}

/// A branch of `project` that expires `expire_after` after its creation.
fn expiring_branch(name: &str, project: &str, expire_after: &str) -> DatabaseBranch {
    let mut b = branch(name, project);
    b.spec.expire_after = Some(expire_after.to_string());
    b
}

async fn set_expire_after(h: &Harness, name: &str, expire_after: &str) {
    let api: Api<DatabaseBranch> = Api::namespaced(h.client.clone(), NS);
    let patch = serde_json::json!({ "spec": { "expireAfter": expire_after } });
    api.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
}

fn created(b: &DatabaseBranch) -> Timestamp {
    b.metadata.creation_timestamp.as_ref().unwrap().0
}

fn expires_at(b: &DatabaseBranch) -> Option<Timestamp> {
    b.status.as_ref()?.expires_at.map(|t| t.0)
}

/// Shortens `name`'s expireAfter to one second and waits until that second
/// since its creation has passed: the branch has expired.
async fn let_expire(h: &Harness, name: &str) {
    set_expire_after(h, name, "1s").await;
    let b: DatabaseBranch = get(h, name).await.unwrap();
    let expiry = created(&b) + SignedDuration::from_secs(1);
    let left = Timestamp::now().duration_until(expiry);
    if left.is_positive() {
        tokio::time::sleep(std::time::Duration::try_from(left).unwrap()).await;
    }
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
}

/// Ready, made at the vendor, with an expiry three days out; returns the branch and its vendor id.
async fn ready_expiring_branch(h: &Harness, policy: DeletionPolicy) -> (DatabaseBranch, String) {
    create(h, project("shop")).await;
    reconcile_until_ready::<DatabaseProject>(h, "shop", 3).await;
    let mut b = expiring_branch("preview", "shop", "72h");
    b.spec.deletion_policy = Some(policy);
    create(h, b).await;
    let b = reconcile_until_ready::<DatabaseBranch>(h, "preview", 3).await;
    let id = b.status.as_ref().unwrap().branch_id.clone().unwrap();
    assert!(h.emulator.infrai.branch_data(&id).is_some());
    (b, id)
}

#[tokio::test]
async fn an_expiring_branch_shows_its_expiry_and_is_left_alone_until_then() {
    let h = Harness::new().await;
    let (b, id) = ready_expiring_branch(&h, DeletionPolicy::Delete).await;
    assert_eq!(
        expires_at(&b),
        Some(created(&b) + SignedDuration::from_hours(72)),
        "creationTimestamp + expireAfter, written with Ready"
    );

    // Steady state: no write, nothing deleted, no Event.
    h.kube.clear_log();
    reconcile::<DatabaseBranch>(&h, "preview").await.unwrap();
    reconcile::<DatabaseBranch>(&h, "preview").await.unwrap();
    assert_eq!(h.kube.writes(), 0, "{:?}", h.kube.requests());
    let still: DatabaseBranch = get(&h, "preview").await.unwrap();
    assert!(still.metadata.deletion_timestamp.is_none());
    assert!(still.is_ready());
    assert!(h.emulator.infrai.branch_data(&id).is_some());
    assert!(!h.event_reasons("preview").contains(&"Expired".to_string()));

    // expireAfter may change: the expiry moves, in the one status write of the pass.
    set_expire_after(&h, "preview", "7d").await;
    h.kube.clear_log();
    reconcile::<DatabaseBranch>(&h, "preview").await.unwrap();
    assert_eq!(h.kube.writes(), 1);
    let moved: DatabaseBranch = get(&h, "preview").await.unwrap();
    assert_eq!(
        expires_at(&moved),
        Some(created(&b) + SignedDuration::from_hours(7 * 24))
    );
    assert!(moved.is_ready());
}

#[tokio::test]
async fn an_expired_branch_deletes_its_resource_then_its_vendor_branch() {
    let h = Harness::new().await;
    let (_, id) = ready_expiring_branch(&h, DeletionPolicy::Delete).await;
    let_expire(&h, "preview").await;

    // The pass that finds it expired deletes the resource itself.
    reconcile::<DatabaseBranch>(&h, "preview").await.unwrap();
    let deleting: DatabaseBranch = get(&h, "preview").await.unwrap();
    assert!(
        deleting.metadata.deletion_timestamp.is_some(),
        "the DatabaseBranch is being deleted"
    );
    assert!(
        h.kube
            .requests()
            .iter()
            .any(|r| r.method == Method::DELETE && r.path.ends_with("/databasebranches/preview")),
        "deleted through the API, where GitOps tools see it go"
    );
    let notes = h.event_notes("preview");
    let note = notes
        .iter()
        .find(|n| n.starts_with("expired at "))
        .unwrap_or_else(|| panic!("an Expired Event: {notes:?}"));
    assert!(
        note.contains(&format!(
            "vendor branch {id} is deleted with it (deletionPolicy Delete)"
        )),
        "{note}"
    );
    assert!(h.event_reasons("preview").contains(&"Expired".to_string()));

    // The finalizer then deletes the vendor branch, and the resource goes.
    reconcile::<DatabaseBranch>(&h, "preview").await.unwrap();
    assert!(get::<DatabaseBranch>(&h, "preview").await.is_none());
    assert!(h.emulator.infrai.branch_data(&id).is_none());
    assert!(h.event_reasons("preview").contains(&"Deleted".to_string()));
}

#[tokio::test]
async fn an_expired_branch_with_retain_keeps_its_vendor_branch() {
    let h = Harness::new().await;
    let (_, id) = ready_expiring_branch(&h, DeletionPolicy::Retain).await;
    let_expire(&h, "preview").await;
    reconcile::<DatabaseBranch>(&h, "preview").await.unwrap();
    reconcile::<DatabaseBranch>(&h, "preview").await.unwrap();
    assert!(get::<DatabaseBranch>(&h, "preview").await.is_none());
    assert!(
        h.emulator.infrai.branch_data(&id).is_some(),
        "Retain keeps the vendor branch"
    );
    let reasons = h.event_reasons("preview");
    assert!(reasons.contains(&"Expired".to_string()), "{reasons:?}");
    assert!(reasons.contains(&"Retained".to_string()), "{reasons:?}");
    assert!(h.event_notes("preview").iter().any(|n| n.contains(&format!(
        "vendor branch {id} is kept (deletionPolicy Retain)"
    ))));
}

#[tokio::test]
async fn a_branch_that_is_not_ready_still_expires() {
    let h = Harness::new().await;
    // Waiting for a project that does not exist: nothing at the vendor, no finalizer.
    create(&h, expiring_branch("waiting", "nowhere", "72h")).await;
    reconcile::<DatabaseBranch>(&h, "waiting").await.unwrap();
    let waiting: DatabaseBranch = get(&h, "waiting").await.unwrap();
    assert_eq!(condition(&waiting, RECONCILING).1, "WaitingForProject");
    assert!(expires_at(&waiting).is_some(), "shown while waiting too");
    let_expire(&h, "waiting").await;
    reconcile::<DatabaseBranch>(&h, "waiting").await.unwrap();
    assert!(get::<DatabaseBranch>(&h, "waiting").await.is_none());

    // Stalled on an adopted id that does not exist.
    create(&h, project("shop")).await;
    reconcile_until_ready::<DatabaseProject>(&h, "shop", 3).await;
    let mut stalled = expiring_branch("stalled", "shop", "72h");
    stalled.spec.external_id = Some("br_nope".into());
    create(&h, stalled).await;
    let err = reconcile::<DatabaseBranch>(&h, "stalled")
        .await
        .unwrap_err();
    assert_eq!(err.category(), "ExternalNotFound");
    let stalled: DatabaseBranch = get(&h, "stalled").await.unwrap();
    assert_eq!(condition(&stalled, STALLED).0, "True");
    assert!(expires_at(&stalled).is_some(), "shown while stalled too");
    let_expire(&h, "stalled").await;
    reconcile::<DatabaseBranch>(&h, "stalled").await.unwrap();
    reconcile::<DatabaseBranch>(&h, "stalled").await.unwrap();
    assert!(get::<DatabaseBranch>(&h, "stalled").await.is_none());
    assert!(h.event_reasons("stalled").contains(&"Expired".to_string()));
}

#[tokio::test]
async fn an_expired_copy_never_deletes_a_new_branch_of_the_same_name() {
    let h = Harness::new().await;
    create(&h, expiring_branch("preview", "nowhere", "1s")).await;
    let old: DatabaseBranch = get(&h, "preview").await.unwrap();
    // The old object goes and a new one takes its name, while a reconcile
    // still holds the old, expired copy (a lagging cache).
    delete::<DatabaseBranch>(&h, "preview").await;
    create(&h, expiring_branch("preview", "nowhere", "72h")).await;
    let new: DatabaseBranch = get(&h, "preview").await.unwrap();
    assert_ne!(new.metadata.uid, old.metadata.uid);
    let left = Timestamp::now().duration_until(created(&old) + SignedDuration::from_secs(1));
    if left.is_positive() {
        tokio::time::sleep(std::time::Duration::try_from(left).unwrap()).await;
    }
    h.kube.clear_log();
    dbops::controllers::reconcile(
        std::sync::Arc::new(DeserializeGuard(Ok(old))),
        h.ctx.clone(),
    )
    .await
    .unwrap();
    assert!(
        h.kube.requests().iter().any(|r| r.method == Method::DELETE),
        "the expired copy asked for its delete"
    );
    let survivor: DatabaseBranch = get(&h, "preview").await.unwrap();
    assert_eq!(survivor.metadata.uid, new.metadata.uid);
    assert!(
        survivor.metadata.deletion_timestamp.is_none(),
        "the UID precondition kept the new branch"
    );
    assert!(!h.event_reasons("preview").contains(&"Expired".to_string()));
}

#[tokio::test]
async fn an_expire_after_admission_should_have_refused_stalls_the_branch_in_one_sentence() {
    let h = Harness::new().await;
    create(&h, project("shop")).await;
    reconcile_until_ready::<DatabaseProject>(&h, "shop", 3).await;
    let branches = h.emulator.infrai.branch_count();
    // The in-memory API server runs no CEL: as if the CRD lacked the rules.
    create(&h, expiring_branch("preview", "shop", "3 days")).await;
    let err = reconcile::<DatabaseBranch>(&h, "preview")
        .await
        .unwrap_err();
    assert_eq!(err.category(), "InvalidSpec");
    assert!(!err.is_transient());
    let b: DatabaseBranch = get(&h, "preview").await.unwrap();
    assert_eq!(
        condition(&b, STALLED),
        ("True".into(), "InvalidSpec".into())
    );
    let message = b
        .status
        .as_ref()
        .unwrap()
        .conditions
        .get(STALLED)
        .unwrap()
        .message
        .clone();
    assert_eq!(
        message,
        "spec.expireAfter is not a duration such as 30m, 72h, 1h30m or 7d (whole numbers of d, h, m and s, largest first); this branch is left as it is until that is fixed"
    );
    assert_eq!(expires_at(&b), None);
    assert_eq!(h.emulator.infrai.branch_count(), branches, "nothing made");
    assert!(h.event_notes("preview").contains(&message));

    // Fixed: the branch carries on, with its expiry.
    set_expire_after(&h, "preview", "72h").await;
    let b = reconcile_until_ready::<DatabaseBranch>(&h, "preview", 3).await;
    assert_eq!(
        expires_at(&b),
        Some(created(&b) + SignedDuration::from_hours(72))
    );
}

/// The whole operator: nothing but the expiry wakes the branch (the resync
/// is ten minutes away), and it goes on time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_running_operator_deletes_a_branch_when_it_expires() {
    let h = Harness::new().await;
    let (stop, task) = support::start_operator(&h);
    let branches: Api<DatabaseBranch> = Api::namespaced(h.client.clone(), NS);
    create(&h, project("shop")).await;
    create(&h, expiring_branch("preview", "shop", "4s")).await;
    let ready = support::wait_for("the branch Ready with its expiry", || async {
        branches
            .get_opt("preview")
            .await
            .unwrap()
            .filter(|b| b.is_ready() && expires_at(b).is_some())
    })
    .await;
    let expiry = expires_at(&ready).unwrap();
    let id = ready.status.unwrap().branch_id.unwrap();
    assert!(Timestamp::now() < expiry, "Ready before it expired");
    support::wait_gone(&branches, "preview").await;
    let gone_at = Timestamp::now();
    assert!(gone_at >= expiry);
    assert!(
        gone_at.duration_since(expiry) < SignedDuration::from_secs(5),
        "gone {} after its expiry",
        gone_at.duration_since(expiry)
    );
    assert!(h.emulator.infrai.branch_data(&id).is_none());
    assert!(h.event_reasons("preview").contains(&"Expired".to_string()));
    let _ = stop.send(());
    let _ = tokio::time::timeout(std::time::Duration::from_secs(10), task).await;
}
