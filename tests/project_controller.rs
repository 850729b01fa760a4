//! The DatabaseProject controller against an in-memory Kubernetes API and the
//! infrai emulator over HTTP.

mod support;

use std::sync::Arc;
use std::time::Duration;

use axum::http::Method;
use dbops::api::v1alpha1::{
    ConnectionSecretTarget, DatabaseProject, DatabaseProjectSpec, DeletionPolicy,
};
use dbops::controllers::conditions::{READY, RECONCILING, STALLED};

use dbops::controllers::{FINALIZER, ReconcileError};
use dbops::providers::ProjectRequest;
use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, PostParams};
use kube::runtime::controller::Action;
use serde_json::json;
use support::{Harness, NS};

fn spec() -> DatabaseProjectSpec {
    DatabaseProjectSpec {
        write_connection_secret_to: Some(ConnectionSecretTarget {
            name: "shop-db".into(),
            ..Default::default()
        }),
        region: Some("eu-central-1".into()),
        ..Default::default()
    }
}

async fn create(h: &Harness, name: &str, spec: DatabaseProjectSpec) -> DatabaseProject {
    let api: Api<DatabaseProject> = Api::namespaced(h.client.clone(), NS);
    api.create(&PostParams::default(), &DatabaseProject::new(name, spec))
        .await
        .unwrap()
}

async fn get(h: &Harness, name: &str) -> Option<DatabaseProject> {
    let api: Api<DatabaseProject> = Api::namespaced(h.client.clone(), NS);
    api.get_opt(name).await.unwrap()
}

/// One reconcile of the current state of `name`, as the controller would run it.
async fn reconcile(h: &Harness, name: &str) -> Result<Action, dbops::controllers::project::Error> {
    let obj = get(h, name).await.expect("object exists");
    dbops::controllers::reconcile(
        Arc::new(kube::core::DeserializeGuard(Ok(obj))),
        h.ctx.clone(),
    )
    .await
}

fn condition(p: &DatabaseProject, type_: &str) -> (String, String) {
    let c = p
        .status
        .as_ref()
        .unwrap()
        .conditions
        .get(type_)
        .unwrap_or_else(|| panic!("no {type_} condition"));
    (c.status.clone(), c.reason.clone())
}

async fn secret(h: &Harness, name: &str) -> Option<Secret> {
    let api: Api<Secret> = Api::namespaced(h.client.clone(), NS);
    api.get_opt(name).await.unwrap()
}

fn secret_str(s: &Secret, key: &str) -> String {
    String::from_utf8(s.data.as_ref().unwrap()[key].0.clone()).unwrap()
}

#[tokio::test]
async fn creates_the_project_writes_the_secret_and_becomes_ready() {
    let h = Harness::new().await;
    create(&h, "shop", spec()).await;

    // One pass does it all, in the fewest writes: the in-use protection of
    // the provider and its Secret (once, for their first dependent), the
    // create mark in status (which a tenant cannot write) and the finalizer
    // before the vendor call, the claim of what the vendor made, then the
    // Secret, then status once, and one Event.
    h.kube.clear_log();
    reconcile(&h, "shop").await.unwrap();
    let writes: Vec<String> = h
        .kube
        .requests()
        .iter()
        .filter(|r| r.method != Method::GET)
        .map(|r| format!("{} {}", r.method, r.path))
        .collect();
    assert_eq!(
        writes,
        [
            "PATCH /apis/dbops.dev/v1alpha1/databaseproviders/default".to_string(),
            "PATCH /api/v1/namespaces/dbops-system/secrets/infrai-credentials".to_string(),
            format!("PATCH /apis/dbops.dev/v1alpha1/namespaces/{NS}/databaseprojects/shop/status"),
            format!("PATCH /apis/dbops.dev/v1alpha1/namespaces/{NS}/databaseprojects/shop"),
            "POST /apis/dbops.dev/v1alpha1/vendorclaims".to_string(),
            format!("PATCH /api/v1/namespaces/{NS}/secrets/shop-db"),
            format!("PATCH /apis/dbops.dev/v1alpha1/namespaces/{NS}/databaseprojects/shop/status"),
            format!("POST /apis/events.k8s.io/v1/namespaces/{NS}/events"),
        ]
    );
    let p = get(&h, "shop").await.unwrap();
    assert_eq!(
        p.metadata.finalizers.as_deref(),
        Some(&[FINALIZER.to_string()][..])
    );
    let status = p.status.clone().unwrap();
    assert!(status.create_requested, "the create mark is in status");
    assert!(
        p.annotations().get("dbops.dev/create-requested").is_none(),
        "no mark a tenant could forge"
    );
    let claims = h.kube.objects("apis/dbops.dev/v1alpha1/vendorclaims");
    assert_eq!(claims.len(), 1, "the new project is claimed");
    assert_eq!(claims[0]["spec"]["holder"]["uid"], json!(p.metadata.uid));
    assert_eq!(claims[0]["spec"]["id"], json!(status.project_id));
    let vendor = h.emulator.infrai.projects();
    assert_eq!(vendor.len(), 1);
    // `<namespace>-<name>-<last 8 hex of the UID>`: unique, and this resource's own.
    let full_uid = p.metadata.uid.clone().unwrap();
    let uid = &full_uid[full_uid.len() - 8..];
    assert_eq!(vendor[0].name, format!("team-a-shop-{uid}"));
    assert_eq!(vendor[0].region, "eu-central-1");
    assert_eq!(status.project_id.as_deref(), Some(vendor[0].id.as_str()));
    assert_eq!(status.observed_generation, p.metadata.generation);
    assert_eq!(status.connection_secret_name.as_deref(), Some("shop-db"));
    assert_eq!(condition(&p, READY), ("True".into(), "Ready".into()));
    assert_eq!(condition(&p, RECONCILING).0, "False");
    assert_eq!(condition(&p, STALLED).0, "False");

    // The Secret holds the vendor's own connection details and is owned by the project.
    let s = secret(&h, "shop-db")
        .await
        .expect("connection Secret written");
    let uri = secret_str(&s, "uri");
    assert!(uri.starts_with("postgresql://app_owner:"), "{uri}");
    assert!(uri.contains(&vendor[0].id.replace("prj_", "")) || uri.contains(".emulator.invalid"));
    assert_eq!(secret_str(&s, "port"), "5432");
    assert_eq!(secret_str(&s, "database"), "appdb");
    assert_eq!(secret_str(&s, "username"), "app_owner");
    assert!(uri.contains(&format!(":{}@", secret_str(&s, "password"))));
    assert!(uri.contains(&secret_str(&s, "host")));
    let owners = s.metadata.owner_references.clone().unwrap();
    assert_eq!(owners.len(), 1);
    assert_eq!(owners[0].uid, p.metadata.uid.clone().unwrap());
    assert_eq!(owners[0].kind, "DatabaseProject");
    assert_eq!(owners[0].controller, Some(true));
    assert_eq!(
        s.metadata.labels.as_ref().unwrap()["app.kubernetes.io/managed-by"],
        "dbops"
    );

    let reasons = h.event_reasons("shop");
    assert_eq!(
        reasons,
        ["Created"],
        "made and ready in one pass: one Event"
    );
    assert!(
        h.event_notes("shop")[0].contains("is ready"),
        "{:?}",
        h.event_notes("shop")
    );
    // No Event or status message carries the password.
    let password = secret_str(&s, "password");
    for note in h.event_notes("shop") {
        assert!(!note.contains(&password));
    }
    let status_json = serde_json::to_string(&status).unwrap();
    assert!(!status_json.contains(&password));
}

#[tokio::test]
async fn steady_state_makes_no_kubernetes_writes_and_one_vendor_read() {
    let h = Harness::new().await;
    create(&h, "shop", spec()).await;
    reconcile(&h, "shop").await.unwrap();
    reconcile(&h, "shop").await.unwrap();
    h.kube.clear_log();
    let before = h.ctx.metrics.encode();
    let action = reconcile(&h, "shop").await.unwrap();
    assert_ne!(
        action,
        Action::await_change(),
        "a Ready project is resynced periodically"
    );
    assert_eq!(h.kube.writes(), 0, "requests: {:?}", h.kube.requests());
    let after = h.ctx.metrics.encode();
    let reads = |m: &str| {
        m.lines()
            .find(|l| l.starts_with("dbops_vendor_requests_total{") && l.contains("db.project.get"))
            .and_then(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .unwrap_or(0)
    };
    assert_eq!(reads(&after) - reads(&before), 1);
    assert_eq!(h.emulator.infrai.projects().len(), 1);
}

#[tokio::test]
async fn the_secret_is_restored_when_someone_changes_it() {
    let h = Harness::new().await;
    create(&h, "shop", spec()).await;
    reconcile(&h, "shop").await.unwrap();
    reconcile(&h, "shop").await.unwrap();
    let original = secret_str(&secret(&h, "shop-db").await.unwrap(), "uri");

    let api: Api<Secret> = Api::namespaced(h.client.clone(), NS);
    let patch = serde_json::json!({ "data": { "uri": k8s_openapi::ByteString(b"postgresql://tampered".to_vec()) } });
    api.patch(
        "shop-db",
        &kube::api::PatchParams::default(),
        &kube::api::Patch::Merge(&patch),
    )
    .await
    .unwrap();
    reconcile(&h, "shop").await.unwrap();
    assert_eq!(
        secret_str(&secret(&h, "shop-db").await.unwrap(), "uri"),
        original
    );
    assert!(
        h.event_reasons("shop")
            .contains(&"SecretUpdated".to_string())
    );

    api.delete("shop-db", &DeleteParams::default())
        .await
        .unwrap();
    reconcile(&h, "shop").await.unwrap();
    assert_eq!(
        secret_str(&secret(&h, "shop-db").await.unwrap(), "uri"),
        original
    );
}

#[tokio::test]
async fn a_secret_owned_by_someone_else_is_never_overwritten() {
    let h = Harness::new().await;
    let api: Api<Secret> = Api::namespaced(h.client.clone(), NS);
    let mine: Secret = serde_json::from_value(serde_json::json!({
        "metadata": { "name": "shop-db" },
        "data": { "uri": k8s_openapi::ByteString(b"keep me".to_vec()) },
    }))
    .unwrap();
    api.create(&PostParams::default(), &mine).await.unwrap();
    create(&h, "shop", spec()).await;
    let err = reconcile(&h, "shop").await.unwrap_err();
    assert_eq!(err.category(), "SecretConflict");
    assert_eq!(
        secret_str(&secret(&h, "shop-db").await.unwrap(), "uri"),
        "keep me"
    );
    let p = get(&h, "shop").await.unwrap();
    assert_eq!(
        condition(&p, STALLED),
        ("True".into(), "SecretConflict".into())
    );
    // The vendor project exists and its id was kept, so nothing is lost.
    assert!(p.status.unwrap().project_id.is_some());
}

#[tokio::test]
async fn adopts_an_existing_vendor_project_by_external_id() {
    let h = Harness::new().await;
    let vendor = dbops::providers::infrai::InfraiClient::new(
        dbops::providers::http::VendorHttp::new(
            dbops::api::v1alpha1::ProviderApi::Infrai,
            &h.emulator_url,
            &secrecy::SecretString::from(support::API_KEY.to_string()),
            Duration::from_secs(5),
            None,
        )
        .unwrap(),
    );
    let existing = vendor
        .create_project(
            &ProjectRequest {
                name: "legacy".into(),
                ..Default::default()
            },
            "outside",
        )
        .await
        .unwrap();
    create(
        &h,
        "legacy",
        DatabaseProjectSpec {
            external_id: Some(existing.id.clone()),
            ..Default::default()
        },
    )
    .await;
    reconcile(&h, "legacy").await.unwrap();
    reconcile(&h, "legacy").await.unwrap();
    let p = get(&h, "legacy").await.unwrap();
    assert_eq!(
        p.status.as_ref().unwrap().project_id.as_deref(),
        Some(existing.id.as_str())
    );
    assert_eq!(condition(&p, READY).0, "True");
    assert_eq!(
        h.emulator.infrai.projects().len(),
        1,
        "adoption creates nothing"
    );
    let s = secret(&h, "legacy-connection")
        .await
        .expect("default Secret name");
    assert_eq!(
        secret_str(&s, "uri"),
        existing.connection_uri.unwrap().expose()
    );
    assert!(h.event_reasons("legacy").contains(&"Adopted".to_string()));

    // An id the vendor does not know: Stalled, nothing created.
    create(
        &h,
        "ghost",
        DatabaseProjectSpec {
            external_id: Some("prj_doesnotexist".into()),
            ..Default::default()
        },
    )
    .await;
    let err = reconcile(&h, "ghost").await.unwrap_err();
    assert!(!err.is_transient());
    let p = get(&h, "ghost").await.unwrap();
    assert_eq!(
        condition(&p, STALLED),
        ("True".into(), "ExternalNotFound".into())
    );
    assert_eq!(condition(&p, READY).0, "False");
    assert_eq!(h.emulator.infrai.projects().len(), 1);
}

async fn delete_and_reconcile(h: &Harness, name: &str) {
    let api: Api<DatabaseProject> = Api::namespaced(h.client.clone(), NS);
    api.delete(name, &DeleteParams::default()).await.unwrap();
    let obj = get(h, name).await.expect("held by the finalizer");
    assert!(obj.metadata.deletion_timestamp.is_some());
    dbops::controllers::reconcile(
        Arc::new(kube::core::DeserializeGuard(Ok(obj))),
        h.ctx.clone(),
    )
    .await
    .unwrap();
}

#[tokio::test]
async fn deletion_policy_delete_removes_the_vendor_project_then_the_finalizer() {
    let h = Harness::new().await;
    create(&h, "shop", spec()).await;
    reconcile(&h, "shop").await.unwrap();
    reconcile(&h, "shop").await.unwrap();
    assert_eq!(h.emulator.infrai.projects().len(), 1);

    let id = get(&h, "shop")
        .await
        .unwrap()
        .status
        .unwrap()
        .project_id
        .unwrap();
    delete_and_reconcile(&h, "shop").await;

    assert!(
        h.emulator.infrai.projects().is_empty(),
        "vendor project {id} deleted"
    );
    assert!(
        get(&h, "shop").await.is_none(),
        "finalizer removed, resource gone"
    );
    assert!(
        secret(&h, "shop-db").await.is_none(),
        "owned Secret garbage-collected"
    );
    assert!(h.event_reasons("shop").contains(&"Deleted".to_string()));
}

#[tokio::test]
async fn a_failed_vendor_delete_keeps_the_finalizer() {
    let h = Harness::bare().await;
    h.create_provider_secret(support::API_KEY).await;
    h.create_provider("default", &h.emulator_url).await;
    create(&h, "shop", spec()).await;
    reconcile(&h, "shop").await.unwrap();
    reconcile(&h, "shop").await.unwrap();
    // Point the provider at a dead endpoint: the delete cannot be confirmed.
    let providers: Api<dbops::api::v1alpha1::DatabaseProvider> = Api::all(h.client.clone());
    let patch = serde_json::json!({ "spec": { "endpoint": "http://127.0.0.1:9/infrai" } });
    providers
        .patch(
            "default",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(&patch),
        )
        .await
        .unwrap();
    let api: Api<DatabaseProject> = Api::namespaced(h.client.clone(), NS);
    api.delete("shop", &DeleteParams::default()).await.unwrap();
    let err = reconcile(&h, "shop").await.unwrap_err();
    assert!(err.is_transient(), "{err}");
    let p = get(&h, "shop")
        .await
        .expect("finalizer still holds the resource");
    assert!(
        p.metadata
            .finalizers
            .unwrap()
            .contains(&FINALIZER.to_string())
    );
    assert_eq!(h.emulator.infrai.projects().len(), 1);
    // Status says what holds the deletion; it no longer claims to be Ready.
    let status = p.status.unwrap();
    assert!(!status.conditions.is_true("Ready"));
    let reconciling = status.conditions.get("Reconciling").unwrap();
    assert_eq!(reconciling.status, "True");
    assert!(
        reconciling.message.contains("deleting project"),
        "{}",
        reconciling.message
    );
}

#[tokio::test]
async fn deletion_policy_retain_leaves_the_vendor_project() {
    let h = Harness::new().await;
    create(
        &h,
        "keep",
        DatabaseProjectSpec {
            deletion_policy: Some(DeletionPolicy::Retain),
            ..spec()
        },
    )
    .await;
    reconcile(&h, "keep").await.unwrap();
    reconcile(&h, "keep").await.unwrap();
    delete_and_reconcile(&h, "keep").await;
    assert!(get(&h, "keep").await.is_none());
    assert_eq!(
        h.emulator.infrai.projects().len(),
        1,
        "vendor project retained"
    );
    assert!(h.event_reasons("keep").contains(&"Retained".to_string()));
}

#[tokio::test]
async fn a_project_deleted_at_the_vendor_is_reported_not_recreated() {
    let h = Harness::new().await;
    create(&h, "shop", spec()).await;
    reconcile(&h, "shop").await.unwrap();
    reconcile(&h, "shop").await.unwrap();
    let id = h.emulator.infrai.projects()[0].id.clone();
    assert!(h.emulator.infrai.delete_project_out_of_band(&id));

    let err = reconcile(&h, "shop").await.unwrap_err();
    assert_eq!(err.category(), "VendorObjectDeleted");
    assert!(!err.is_transient());
    let p = get(&h, "shop").await.unwrap();
    assert_eq!(
        condition(&p, STALLED),
        ("True".into(), "VendorObjectDeleted".into())
    );
    assert_eq!(condition(&p, READY).0, "False");
    assert!(
        h.event_reasons("shop")
            .contains(&"VendorObjectDeleted".to_string())
    );
    // Again on the next resync: still reported, still not recreated.
    let _ = reconcile(&h, "shop").await;
    assert!(h.emulator.infrai.projects().is_empty());

    // Deleting the resource completes: the vendor's 404 counts as done.
    delete_and_reconcile(&h, "shop").await;
    assert!(get(&h, "shop").await.is_none());
}

#[tokio::test]
async fn a_missing_provider_or_secret_stalls_then_recovers() {
    let h = Harness::bare().await;
    create(&h, "shop", spec()).await;
    let err = reconcile(&h, "shop").await.unwrap_err();
    assert!(!err.is_transient());
    let p = get(&h, "shop").await.unwrap();
    assert_eq!(
        condition(&p, STALLED),
        ("True".into(), "ProviderNotFound".into())
    );
    // The error policy waits instead of spinning.
    let action = dbops::controllers::error_policy("t", &p, &err, &h.ctx);
    assert_eq!(action, Action::requeue(h.ctx.settings.stalled_recheck));

    h.create_provider("default", &h.emulator_url).await;
    let err = reconcile(&h, "shop").await.unwrap_err();
    let p = get(&h, "shop").await.unwrap();
    assert_eq!(
        condition(&p, STALLED),
        ("True".into(), "CredentialsMissing".into())
    );
    assert!(err.to_string().contains("infrai-credentials"), "{err}");

    h.create_provider_secret(support::API_KEY).await;
    reconcile(&h, "shop").await.unwrap();
    let p = get(&h, "shop").await.unwrap();
    assert_eq!(condition(&p, READY).0, "True");
    assert_eq!(condition(&p, STALLED).0, "False");
    assert_eq!(h.emulator.infrai.projects().len(), 1);
}

#[tokio::test]
async fn a_wrong_api_key_stalls_with_the_vendor_reason() {
    let h = Harness::bare().await;
    h.create_provider_secret("ifr_pk_proj_wrong").await;
    h.create_provider("default", &h.emulator_url).await;
    create(&h, "shop", spec()).await;
    let err = reconcile(&h, "shop").await.unwrap_err();
    assert_eq!(err.category(), "VendorUnauthorized");
    let p = get(&h, "shop").await.unwrap();
    assert_eq!(
        condition(&p, STALLED),
        ("True".into(), "VendorUnauthorized".into())
    );
    let status = p.status.unwrap();
    let message = &status.conditions.get(STALLED).unwrap().message;
    assert!(
        !message.contains("ifr_pk_proj_wrong"),
        "the key never shows: {message}"
    );
}

#[tokio::test]
async fn crash_after_vendor_create_does_not_make_a_second_project() {
    let h = Harness::new().await;
    create(&h, "shop", spec()).await;
    // Fail the one write that would save the id (the Ready status, after the
    // create mark), as a crash right after the vendor create would lose it.
    h.kube
        .fail_after(Method::PATCH, "/databaseprojects/shop/status", 1, 500, 1);
    let err = reconcile(&h, "shop").await.unwrap_err();
    assert!(err.is_transient(), "{err}");
    assert_eq!(
        h.emulator.infrai.projects().len(),
        1,
        "the vendor create went through"
    );
    let p = get(&h, "shop").await.unwrap();
    assert!(
        p.status.and_then(|s| s.project_id).is_none(),
        "the id was never saved"
    );

    reconcile(&h, "shop").await.unwrap();
    let vendor = h.emulator.infrai.projects();
    assert_eq!(
        vendor.len(),
        1,
        "the retry found the same project through the idempotency key"
    );
    let p = get(&h, "shop").await.unwrap();
    assert_eq!(
        p.status.as_ref().unwrap().project_id.as_deref(),
        Some(vendor[0].id.as_str())
    );
    assert_eq!(condition(&p, READY).0, "True");
}

#[tokio::test]
async fn delete_after_a_crash_before_the_id_was_saved_leaves_no_orphan() {
    let h = Harness::new().await;
    create(&h, "shop", spec()).await;
    h.kube
        .fail_after(Method::PATCH, "/databaseprojects/shop/status", 1, 500, 1);
    reconcile(&h, "shop").await.unwrap_err();
    let p = get(&h, "shop").await.unwrap();
    assert!(
        p.status.and_then(|s| s.project_id).is_none(),
        "the id was never saved"
    );
    assert_eq!(h.emulator.infrai.projects().len(), 1);

    delete_and_reconcile(&h, "shop").await;
    assert!(
        h.emulator.infrai.projects().is_empty(),
        "no orphaned vendor project"
    );
    assert!(get(&h, "shop").await.is_none());
}

#[tokio::test]
async fn a_transient_vendor_outage_backs_off_and_shows_reconciling() {
    let h = Harness::bare().await;
    h.create_provider_secret(support::API_KEY).await;
    h.create_provider("default", "http://127.0.0.1:9/infrai")
        .await;
    create(&h, "shop", spec()).await;
    let err = reconcile(&h, "shop").await.unwrap_err();
    assert!(err.is_transient());
    assert_eq!(err.category(), "VendorUnreachable");
    let p = get(&h, "shop").await.unwrap();
    assert_eq!(
        condition(&p, RECONCILING),
        ("True".into(), "VendorUnreachable".into())
    );
    assert_eq!(condition(&p, STALLED).0, "False");
    // Transient: retried soon (not after the stalled re-check period, not never).
    let action = dbops::controllers::error_policy("t", &p, &err, &h.ctx);
    assert_ne!(action, Action::await_change());
    assert_ne!(action, Action::requeue(h.ctx.settings.stalled_recheck));
}

#[tokio::test]
async fn an_account_out_of_credit_stalls_with_a_reason_and_recovers_after_a_top_up() {
    let h = Harness::new().await;
    h.emulator.infrai.set_out_of_credit(true);
    create(&h, "broke", spec()).await;
    let mut error = None;
    for _ in 0..3 {
        if let Err(e) = reconcile(&h, "broke").await {
            error = Some(e);
            break;
        }
    }
    let error = error.expect("the create is refused");
    assert_eq!(error.category(), "InsufficientCredit");
    assert!(
        !error.is_transient(),
        "needs the user: Stalled, not retried hot"
    );
    let p = get(&h, "broke").await.unwrap();
    assert_eq!(
        condition(&p, STALLED),
        ("True".to_string(), "InsufficientCredit".to_string())
    );
    let status = p.status.unwrap();
    let message = &status.conditions.get(STALLED).unwrap().message;
    assert!(
        message.contains("out of credit: top it up"),
        "says what to do: {message}"
    );
    assert!(h.emulator.infrai.projects().is_empty());

    h.emulator.infrai.set_out_of_credit(false);
    let p = support::reconcile_until_ready::<DatabaseProject>(&h, "broke", 3).await;
    assert_eq!(condition(&p, READY).0, "True");
    assert_eq!(h.emulator.infrai.projects().len(), 1);
}
