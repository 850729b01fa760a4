//! The controllers on the direct vendor APIs (Supabase, DB9, CapyDB), against
//! the in-memory Kubernetes API and each vendor's emulator: async provisioning,
//! crash safety without idempotency keys, snapshots/restore or their honest
//! refusal, adoption, and declarative credential rotation.

mod support;

use std::collections::BTreeMap;

use axum::http::Method;
use dbops::api::v1alpha1::{
    DatabaseBranch, DatabaseProject, DatabaseSnapshot, ProviderApi, ROTATE_ANNOTATION,
};
use dbops::controllers::conditions::{READY, RECONCILING, STALLED};
use dbops::controllers::{Managed, ReconcileError};
use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use serde_json::json;
use support::{Harness, NS, condition, reconcile, reconcile_until_ready};

async fn create<K>(h: &Harness, value: serde_json::Value)
where
    K: kube::Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + serde::Serialize
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    let api: Api<K> = Api::namespaced(h.client.clone(), NS);
    api.create(
        &PostParams::default(),
        &serde_json::from_value(value).unwrap(),
    )
    .await
    .unwrap();
}

async fn get<K>(h: &Harness, name: &str) -> K
where
    K: kube::Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    Api::<K>::namespaced(h.client.clone(), NS)
        .get(name)
        .await
        .unwrap()
}

async fn secret_data(h: &Harness, name: &str) -> BTreeMap<String, String> {
    let secret = Api::<Secret>::namespaced(h.client.clone(), NS)
        .get(name)
        .await
        .unwrap();
    secret
        .data
        .unwrap()
        .into_iter()
        .map(|(k, v)| (k, String::from_utf8(v.0).unwrap()))
        .collect()
}

async fn request_rotation(h: &Harness, kind_plural: &str, name: &str, value: &str) {
    let patch = json!({ "metadata": { "annotations": { ROTATE_ANNOTATION: value } } });
    match kind_plural {
        "projects" => {
            Api::<DatabaseProject>::namespaced(h.client.clone(), NS)
                .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
                .unwrap();
        }
        _ => {
            Api::<DatabaseBranch>::namespaced(h.client.clone(), NS)
                .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
                .unwrap();
        }
    }
}

/// Merges `status` into the status of project `name` (tests move times back).
async fn patch_project_status(h: &Harness, name: &str, status: serde_json::Value) {
    let api: kube::Api<DatabaseProject> = kube::Api::namespaced(h.client.clone(), support::NS);
    let patch = kube::api::Patch::Merge(status);
    api.patch_status(name, &kube::api::PatchParams::default(), &patch)
        .await
        .unwrap();
}

/// The `supa` provider: the emulated Supabase API, organization `acme`.
async fn supabase_provider(h: &Harness) {
    h.create_provider_for(
        "supa",
        ProviderApi::Supabase,
        support::SUPABASE_KEY,
        Some("acme"),
    )
    .await;
}

fn project(name: &str, provider: &str) -> serde_json::Value {
    json!({ "apiVersion": "dbops.dev/v1alpha1", "kind": "DatabaseProject", "metadata": { "name": name }, "spec": { "providerRef": { "name": provider } } })
}

// ---------------------------------------------------------------- Supabase

#[tokio::test]
async fn supabase_project_waits_through_provisioning_and_keeps_the_password_it_chose() {
    let h = Harness::bare().await;
    supabase_provider(&h).await;
    create::<DatabaseProject>(&h, project("app", "supa")).await;
    reconcile::<DatabaseProject>(&h, "app").await.unwrap(); // finalizer
    reconcile::<DatabaseProject>(&h, "app").await.unwrap(); // create: COMING_UP
    let p: DatabaseProject = get(&h, "app").await;
    assert_eq!(
        condition(&p, RECONCILING),
        ("True".into(), "WaitingForVendor".into())
    );
    assert!(
        p.status.unwrap().project_id.is_some(),
        "the id is saved while provisioning"
    );
    let p = reconcile_until_ready::<DatabaseProject>(&h, "app", 5).await;
    let id = p.status.unwrap().project_id.unwrap();
    assert_eq!(h.emulator.supabase.project_count(), 1);
    let data = secret_data(&h, "app-connection").await;
    let vendor_password = h.emulator.supabase.db_password(&id).unwrap();
    assert_eq!(
        data["password"], vendor_password,
        "the Secret holds the password the operator sent"
    );
    assert!(data["password"].len() >= 32);
    assert!(data["uri"].contains(&format!(":{vendor_password}@")));
    assert_eq!(data["username"], "postgres");

    // One rotation on request: new password at the vendor and in the Secret, once.
    request_rotation(&h, "projects", "app", "2026-11-23").await;
    reconcile::<DatabaseProject>(&h, "app").await.unwrap();
    let rotated = h.emulator.supabase.db_password(&id).unwrap();
    assert_ne!(rotated, vendor_password);
    assert_eq!(secret_data(&h, "app-connection").await["password"], rotated);
    let p: DatabaseProject = get(&h, "app").await;
    let state = p.status.unwrap().credential_rotation.unwrap();
    assert!(state.last_rotated_at.is_some());
    assert_eq!(state.handled_request.as_deref(), Some("2026-11-23"));
    assert!(
        h.event_reasons("app")
            .contains(&"CredentialsRotated".to_string())
    );
    reconcile::<DatabaseProject>(&h, "app").await.unwrap();
    assert_eq!(
        h.emulator.supabase.db_password(&id).unwrap(),
        rotated,
        "the same request is not repeated"
    );
    assert!(
        Api::<Secret>::namespaced(h.client.clone(), NS)
            .get_opt("app-connection-rotation")
            .await
            .unwrap()
            .is_none(),
        "the kept password is cleaned up"
    );
}

#[tokio::test]
async fn a_supabase_password_is_kept_under_whatever_key_the_layout_puts_it() {
    let h = Harness::bare().await;
    supabase_provider(&h).await;
    let mut value = project("app", "supa");
    value["spec"]["writeConnectionSecretTo"] = json!({ "name": "app-db", "preset": "libpq" });
    create::<DatabaseProject>(&h, value).await;
    let p = reconcile_until_ready::<DatabaseProject>(&h, "app", 6).await;
    let status = p.status.unwrap();
    assert_eq!(status.binding.unwrap().name, "app-db");
    let id = status.project_id.unwrap();
    let data = secret_data(&h, "app-db").await;
    let vendor_password = h.emulator.supabase.db_password(&id).unwrap();
    assert_eq!(data["PGPASSWORD"], vendor_password);
    assert!(data["DATABASE_URL"].contains(&format!(":{vendor_password}@")));
    // Read back from PGPASSWORD on every pass: a rotation still works.
    request_rotation(&h, "projects", "app", "r1").await;
    reconcile::<DatabaseProject>(&h, "app").await.unwrap();
    let rotated = h.emulator.supabase.db_password(&id).unwrap();
    assert_ne!(rotated, vendor_password);
    assert_eq!(secret_data(&h, "app-db").await["PGPASSWORD"], rotated);
    reconcile::<DatabaseProject>(&h, "app").await.unwrap();
    assert_eq!(secret_data(&h, "app-db").await["PGPASSWORD"], rotated);

    // Switching to prisma: the password moves into the URLs, and is read
    // back from there (the Secret's annotation says where).
    let api: Api<DatabaseProject> = Api::namespaced(h.client.clone(), NS);
    let patch = json!({ "spec": { "writeConnectionSecretTo": { "preset": "prisma" } } });
    api.patch("app", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    reconcile::<DatabaseProject>(&h, "app").await.unwrap();
    let secret = Api::<Secret>::namespaced(h.client.clone(), NS)
        .get("app-db")
        .await
        .unwrap();
    assert_eq!(
        secret.metadata.annotations.unwrap()["dbops.dev/password-key"],
        "uri:DATABASE_URL"
    );
    let data = secret_data(&h, "app-db").await;
    assert!(data["DIRECT_URL"].contains(&format!(":{rotated}@")));
    reconcile::<DatabaseProject>(&h, "app").await.unwrap();
    let data = secret_data(&h, "app-db").await;
    assert!(
        data["DATABASE_URL"].contains(&format!(":{rotated}@")),
        "still the kept password"
    );
    assert_eq!(h.emulator.supabase.db_password(&id).unwrap(), rotated);
}

#[tokio::test]
async fn a_vendor_state_dbops_does_not_know_is_waited_on_then_stalls_without_flapping() {
    let h = Harness::bare().await;
    supabase_provider(&h).await;
    create::<DatabaseProject>(&h, project("odd", "supa")).await;
    let p = reconcile_until_ready::<DatabaseProject>(&h, "odd", 6).await;
    let id = p.status.unwrap().project_id.unwrap();
    assert!(h.emulator.supabase.set_unlisted_status(&id, true));

    reconcile::<DatabaseProject>(&h, "odd").await.unwrap();
    let p: DatabaseProject = get(&h, "odd").await;
    assert_eq!(
        condition(&p, RECONCILING),
        ("True".into(), "WaitingForVendor".into())
    );
    let message = &p
        .status
        .as_ref()
        .unwrap()
        .conditions
        .get(RECONCILING)
        .unwrap()
        .message;
    assert!(message.contains("a state dbops does not know"), "{message}");

    // Thirty minutes and more of it (the wait moved back rather than sleeping).
    let earlier =
        k8s_openapi::jiff::Timestamp::now() - k8s_openapi::jiff::SignedDuration::from_mins(31);
    let mut conditions = p.status.unwrap().conditions;
    for c in conditions.0.iter_mut().filter(|c| c.type_ == RECONCILING) {
        c.last_transition_time = k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(earlier);
    }
    patch_project_status(
        &h,
        "odd",
        serde_json::json!({ "status": { "conditions": conditions } }),
    )
    .await;
    for _ in 0..2 {
        let error = reconcile::<DatabaseProject>(&h, "odd").await.unwrap_err();
        assert_eq!(error.category(), "VendorStateUnknown");
        let p: DatabaseProject = get(&h, "odd").await;
        assert_eq!(
            condition(&p, STALLED),
            ("True".into(), "VendorStateUnknown".into()),
            "stays stalled: no flapping back to waiting"
        );
    }
    // A known state again: back to Ready.
    assert!(h.emulator.supabase.set_unlisted_status(&id, false));
    let p = reconcile_until_ready::<DatabaseProject>(&h, "odd", 3).await;
    assert_eq!(condition(&p, READY).0, "True");
}

#[tokio::test]
async fn supabase_crash_after_create_reuses_the_project_by_name() {
    let h = Harness::bare().await;
    supabase_provider(&h).await;
    create::<DatabaseProject>(&h, project("app", "supa")).await;
    // The status write after the create mark is the one that saves the id:
    // fail it, as a crash right after the vendor create would.
    h.kube
        .fail_after(Method::PATCH, "/databaseprojects/app/status", 1, 500, 1);
    reconcile::<DatabaseProject>(&h, "app").await.unwrap_err();
    assert_eq!(h.emulator.supabase.project_count(), 1);
    reconcile_until_ready::<DatabaseProject>(&h, "app", 5).await;
    assert_eq!(h.emulator.supabase.project_count(), 1, "no second project");
    let id = get::<DatabaseProject>(&h, "app")
        .await
        .status
        .unwrap()
        .project_id
        .unwrap();
    assert_eq!(
        secret_data(&h, "app-connection").await["password"],
        h.emulator.supabase.db_password(&id).unwrap(),
        "the password chosen before the crash is the one in use"
    );
}

#[tokio::test]
async fn supabase_refuses_snapshots_and_restores_honestly() {
    let h = Harness::bare().await;
    supabase_provider(&h).await;
    create::<DatabaseProject>(&h, project("app", "supa")).await;
    reconcile_until_ready::<DatabaseProject>(&h, "app", 6).await;
    create::<DatabaseSnapshot>(
        &h,
        json!({ "apiVersion": "dbops.dev/v1alpha1", "kind": "DatabaseSnapshot", "metadata": { "name": "s" }, "spec": { "projectRef": { "name": "app" } } }),
    )
    .await;
    let err = reconcile::<DatabaseSnapshot>(&h, "s").await.unwrap_err();
    assert_eq!(err.category(), "UnsupportedByProvider");
    let s: DatabaseSnapshot = get(&h, "s").await;
    let stalled = s.status.unwrap().conditions.get(STALLED).unwrap().clone();
    assert_eq!(stalled.reason, "UnsupportedByProvider");
    assert!(
        stalled.message.contains("supabase cannot snapshot.create"),
        "{}",
        stalled.message
    );

    let mut restore = project("copy", "supa");
    restore["spec"]["restoreFrom"] = json!({ "snapshotId": "anything" });
    create::<DatabaseProject>(&h, restore).await;
    let err = reconcile::<DatabaseProject>(&h, "copy").await.unwrap_err();
    assert_eq!(err.category(), "UnsupportedByProvider");
    assert_eq!(h.emulator.supabase.project_count(), 1);
}

#[tokio::test]
async fn supabase_branches_get_their_own_credentials() {
    let h = Harness::bare().await;
    supabase_provider(&h).await;
    create::<DatabaseProject>(&h, project("app", "supa")).await;
    reconcile_until_ready::<DatabaseProject>(&h, "app", 6).await;
    create::<DatabaseBranch>(
        &h,
        json!({ "apiVersion": "dbops.dev/v1alpha1", "kind": "DatabaseBranch", "metadata": { "name": "preview" }, "spec": { "projectRef": { "name": "app" } } }),
    )
    .await;
    reconcile_until_ready::<DatabaseBranch>(&h, "preview", 8).await;
    assert_eq!(h.emulator.supabase.branch_count(), 1);
    let branch = secret_data(&h, "preview-connection").await;
    let main = secret_data(&h, "app-connection").await;
    assert_ne!(branch["uri"], main["uri"]);
    assert!(!branch["password"].is_empty());
    let api: Api<DatabaseBranch> = Api::namespaced(h.client.clone(), NS);
    api.delete("preview", &DeleteParams::default())
        .await
        .unwrap();
    reconcile::<DatabaseBranch>(&h, "preview").await.unwrap();
    assert_eq!(h.emulator.supabase.branch_count(), 0);
}

// ---------------------------------------------------------------- DB9

#[tokio::test]
async fn db9_project_snapshot_restore_and_rotation() {
    let h = Harness::bare().await;
    h.create_provider_for("db9", ProviderApi::Db9, support::DB9_KEY, None)
        .await;
    create::<DatabaseProject>(&h, project("app", "db9")).await;
    let p = reconcile_until_ready::<DatabaseProject>(&h, "app", 3).await;
    let id = p.status.unwrap().project_id.unwrap();
    let data = secret_data(&h, "app-connection").await;
    assert_eq!(
        data["password"],
        h.emulator.db9.admin_password(&id).unwrap()
    );
    h.emulator.db9.write_data(&id, "orders", "42");

    // Backups are asynchronous: the snapshot waits, then becomes Ready.
    create::<DatabaseSnapshot>(
        &h,
        json!({ "apiVersion": "dbops.dev/v1alpha1", "kind": "DatabaseSnapshot", "metadata": { "name": "s" }, "spec": { "projectRef": { "name": "app" } } }),
    )
    .await;
    reconcile::<DatabaseSnapshot>(&h, "s").await.unwrap();
    reconcile::<DatabaseSnapshot>(&h, "s").await.unwrap();
    let s: DatabaseSnapshot = get(&h, "s").await;
    assert_eq!(
        condition(&s, RECONCILING),
        ("True".into(), "WaitingForVendor".into())
    );
    reconcile_until_ready::<DatabaseSnapshot>(&h, "s", 5).await;
    assert_eq!(h.emulator.db9.backup_count(), 1);

    // Restore is an asynchronous job with an idempotency key; the handle is kept in status.
    let mut restore = project("copy", "db9");
    restore["spec"]["restoreFrom"] = json!({ "snapshotRef": { "name": "s" } });
    create::<DatabaseProject>(&h, restore).await;
    reconcile::<DatabaseProject>(&h, "copy").await.unwrap();
    reconcile::<DatabaseProject>(&h, "copy").await.unwrap();
    let c: DatabaseProject = get(&h, "copy").await;
    assert!(c.status.as_ref().unwrap().restore_handle.is_some());
    assert_eq!(condition(&c, RECONCILING).1, "WaitingForVendor");
    let c = reconcile_until_ready::<DatabaseProject>(&h, "copy", 6).await;
    let copy_id = c.status.unwrap().project_id.unwrap();
    assert_eq!(
        h.emulator.db9.restore_count(),
        1,
        "one restore despite the polls"
    );
    assert_eq!(
        h.emulator
            .db9
            .data(&copy_id)
            .unwrap()
            .get("orders")
            .map(String::as_str),
        Some("42")
    );

    // Rotation: DB9 resets the password and returns it; the Secret follows.
    request_rotation(&h, "projects", "app", "now").await;
    reconcile::<DatabaseProject>(&h, "app").await.unwrap();
    let new = h.emulator.db9.admin_password(&id).unwrap();
    assert_ne!(new, data["password"]);
    assert_eq!(secret_data(&h, "app-connection").await["password"], new);

    // A snapshot with deletionPolicy Delete goes at the vendor too.
    Api::<DatabaseSnapshot>::namespaced(h.client.clone(), NS)
        .delete("s", &DeleteParams::default())
        .await
        .unwrap();
    reconcile::<DatabaseSnapshot>(&h, "s").await.unwrap();
    assert_eq!(h.emulator.db9.backup_count(), 0);
}

#[tokio::test]
async fn db9_crash_after_create_finds_the_database_by_name() {
    let h = Harness::bare().await;
    h.create_provider_for("db9", ProviderApi::Db9, support::DB9_KEY, None)
        .await;
    create::<DatabaseProject>(&h, project("app", "db9")).await;
    // The status write after the create mark is the one that saves the id:
    // fail it, as a crash right after the vendor create would.
    h.kube
        .fail_after(Method::PATCH, "/databaseprojects/app/status", 1, 500, 1);
    reconcile::<DatabaseProject>(&h, "app").await.unwrap_err();
    reconcile_until_ready::<DatabaseProject>(&h, "app", 3).await;
    assert_eq!(h.emulator.db9.database_count(), 1);
    assert_eq!(
        h.emulator.db9.database_create_count(),
        1,
        "the retry did not call create again"
    );
}

#[tokio::test]
async fn a_name_someone_else_holds_is_never_adopted_nor_deleted() {
    use dbops::providers::{ProjectLifecycle, ProjectRequest};
    let h = Harness::bare().await;
    h.create_provider_for("db9", ProviderApi::Db9, support::DB9_KEY, None)
        .await;
    // Someone else's database, made outside dbops.
    let http = dbops::providers::http::VendorHttp::new(
        ProviderApi::Db9,
        &h.endpoint("db9"),
        &secrecy::SecretString::from(support::DB9_KEY.to_string()),
        std::time::Duration::from_secs(5),
        None,
    )
    .unwrap();
    let theirs = dbops::providers::db9::Db9Client::new(http)
        .create_project(
            &ProjectRequest {
                name: "shared-db".into(),
                ..Default::default()
            },
            "outside",
        )
        .await
        .unwrap();
    let mut value = project("app", "db9");
    value["spec"]["projectName"] = json!("shared-db");
    value["spec"]["deletionPolicy"] = json!("Delete");
    create::<DatabaseProject>(&h, value).await;
    for _ in 0..2 {
        let error = reconcile::<DatabaseProject>(&h, "app").await.unwrap_err();
        assert_eq!(error.category(), "NameConflict", "{error}");
        let p: DatabaseProject = get(&h, "app").await;
        assert_eq!(
            condition(&p, STALLED),
            ("True".into(), "NameConflict".into())
        );
        assert!(
            !p.annotations().contains_key("dbops.dev/create-requested"),
            "nothing was made, so the next attempt is a first attempt again"
        );
        let status = p.status.unwrap();
        assert!(status.project_id.is_none(), "nothing is adopted");
        assert!(!status.create_requested);
    }
    assert_eq!(h.emulator.db9.database_count(), 1);
    assert_eq!(
        h.emulator.db9.database_create_count(),
        1,
        "only theirs was made"
    );
    // Deleting the resource finishes and leaves their database alone.
    let api: Api<DatabaseProject> = Api::namespaced(h.client.clone(), NS);
    api.delete("app", &DeleteParams::default()).await.unwrap();
    reconcile::<DatabaseProject>(&h, "app").await.unwrap();
    assert!(
        api.get_opt("app").await.unwrap().is_none(),
        "the finalizer is gone"
    );
    assert_eq!(h.emulator.db9.database_count(), 1);
    assert!(h.emulator.db9.admin_password(&theirs.id).is_some());
}

// ---------------------------------------------------------------- CapyDB

#[tokio::test]
async fn capydb_creation_is_refused_with_the_way_out() {
    let h = Harness::bare().await;
    h.create_provider_for("capy", ProviderApi::Capydb, support::CAPYDB_KEY, None)
        .await;
    create::<DatabaseProject>(&h, project("app", "capy")).await;
    let err = reconcile::<DatabaseProject>(&h, "app").await.unwrap_err();
    assert!(!err.is_transient());
    let p: DatabaseProject = get(&h, "app").await;
    let stalled = p.status.unwrap().conditions.get(STALLED).unwrap().clone();
    assert_eq!(stalled.reason, "UnsupportedByProvider");
    assert!(
        stalled.message.contains("externalId"),
        "{}",
        stalled.message
    );
}

#[tokio::test]
async fn a_rotation_job_that_runs_too_long_is_given_up_and_the_password_kept() {
    let h = Harness::bare().await;
    h.create_provider_for("capy", ProviderApi::Capydb, support::CAPYDB_KEY, None)
        .await;
    h.emulator.capydb.add_project("prj_slow");
    let mut adopted = project("slow", "capy");
    adopted["spec"]["externalId"] = json!("prj_slow");
    create::<DatabaseProject>(&h, adopted).await;
    reconcile_until_ready::<DatabaseProject>(&h, "slow", 3).await;
    let before = secret_data(&h, "slow-connection").await["password"].clone();
    request_rotation(&h, "projects", "slow", "r1").await;
    reconcile::<DatabaseProject>(&h, "slow").await.unwrap();
    let p: DatabaseProject = get(&h, "slow").await;
    let state = p.status.unwrap().credential_rotation.unwrap();
    assert!(state.pending_job.is_some() && state.pending_since.is_some());

    // The job started over half an hour ago (moved back rather than waited for).
    let long_ago =
        k8s_openapi::jiff::Timestamp::now() - k8s_openapi::jiff::SignedDuration::from_mins(31);
    patch_project_status(
        &h,
        "slow",
        json!({ "status": { "credentialRotation": { "pendingSince": long_ago.to_string() } } }),
    )
    .await;
    reconcile::<DatabaseProject>(&h, "slow").await.unwrap();
    let p: DatabaseProject = get(&h, "slow").await;
    let status = p.status.unwrap();
    let state = status.credential_rotation.unwrap();
    assert!(state.pending_job.is_none() && state.pending_since.is_none());
    assert_eq!(
        state.handled_request.as_deref(),
        Some("r1"),
        "not retried without a new request"
    );
    let failed = status.conditions.get("RotationFailed").unwrap();
    assert_eq!(failed.reason, "RotationTimedOut");
    assert!(
        failed.message.contains("did not finish within 30 minutes"),
        "{}",
        failed.message
    );
    assert!(
        status.conditions.is_true(READY),
        "the current credentials stay valid"
    );
    assert_eq!(secret_data(&h, "slow-connection").await["password"], before);
    // No more polling: the next pass leaves the vendor alone.
    let jobs = h.emulator.capydb.job_count();
    reconcile::<DatabaseProject>(&h, "slow").await.unwrap();
    assert_eq!(h.emulator.capydb.job_count(), jobs);
}

#[tokio::test]
async fn capydb_adoption_and_rotation_through_a_job() {
    let h = Harness::bare().await;
    h.create_provider_for("capy", ProviderApi::Capydb, support::CAPYDB_KEY, None)
        .await;
    h.emulator.capydb.add_project("prj_capy1");
    h.emulator.capydb.add_preview("prj_capy1", "pvw_1");
    let mut adopted = project("app", "capy");
    adopted["spec"]["externalId"] = json!("prj_capy1");
    adopted["spec"]["deletionPolicy"] = json!("Delete");
    create::<DatabaseProject>(&h, adopted).await;
    reconcile_until_ready::<DatabaseProject>(&h, "app", 3).await;
    let data = secret_data(&h, "app-connection").await;
    assert!(data.contains_key("pooledUri"), "CapyDB gives a pooled URL");
    let before = h.emulator.capydb.project_password("prj_capy1").unwrap();
    assert_eq!(data["password"], before);

    // A preview database cannot be adopted as a branch: the API does not
    // say which project it belongs to, and a branch adopts only what is
    // shown to be its own project's. Deleting the refused resource leaves
    // the preview database alone.
    create::<DatabaseBranch>(
        &h,
        json!({ "apiVersion": "dbops.dev/v1alpha1", "kind": "DatabaseBranch", "metadata": { "name": "pr-1" }, "spec": { "projectRef": { "name": "app" }, "externalId": "pvw_1", "deletionPolicy": "Delete" } }),
    )
    .await;
    let err = reconcile::<DatabaseBranch>(&h, "pr-1").await.unwrap_err();
    assert_eq!(err.category(), "InvalidSpec");
    assert!(
        err.to_string().contains("cannot be shown to belong"),
        "{err}"
    );
    Api::<DatabaseBranch>::namespaced(h.client.clone(), NS)
        .delete("pr-1", &Default::default())
        .await
        .unwrap();
    reconcile::<DatabaseBranch>(&h, "pr-1").await.unwrap();
    assert!(h.emulator.capydb.preview_project("pvw_1").is_some());

    // Rotation: a job moves through its states; the Secret changes only at the end.
    request_rotation(&h, "projects", "app", "r1").await;
    reconcile::<DatabaseProject>(&h, "app").await.unwrap();
    let p: DatabaseProject = get(&h, "app").await;
    assert!(
        p.status
            .as_ref()
            .unwrap()
            .credential_rotation
            .as_ref()
            .unwrap()
            .pending_job
            .is_some()
    );
    assert_eq!(
        secret_data(&h, "app-connection").await["password"],
        before,
        "not before the job is done"
    );
    for _ in 0..5 {
        reconcile::<DatabaseProject>(&h, "app").await.unwrap();
    }
    let after = h.emulator.capydb.project_password("prj_capy1").unwrap();
    assert_ne!(after, before);
    let data = secret_data(&h, "app-connection").await;
    assert_eq!(data["password"], after);
    assert!(data["pooledUri"].contains(&after));
    let p: DatabaseProject = get(&h, "app").await;
    let state = p.status.unwrap().credential_rotation.unwrap();
    assert!(state.pending_job.is_none() && state.last_rotated_at.is_some());
    assert_eq!(
        h.emulator.capydb.job_count(),
        1,
        "polling never started a second rotation"
    );
    assert!(get::<DatabaseProject>(&h, "app").await.is_ready());

    // No delete in the API: deletion releases the resource and says so.
    Api::<DatabaseProject>::namespaced(h.client.clone(), NS)
        .delete("app", &DeleteParams::default())
        .await
        .unwrap();
    reconcile::<DatabaseProject>(&h, "app").await.unwrap();
    assert!(
        Api::<DatabaseProject>::namespaced(h.client.clone(), NS)
            .get_opt("app")
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        h.event_reasons("app")
            .contains(&"NotDeletedByProvider".to_string())
    );
    assert!(
        h.emulator.capydb.project_password("prj_capy1").is_some(),
        "still there at CapyDB"
    );
    let _ = READY;
}
