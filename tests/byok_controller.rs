//! ByokCredential, BYOK routing policy and `mode: byok` projects against the
//! in-memory Kubernetes API and the infrai emulator.

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use dbops::api::v1alpha1::{
    ByokBinding, ByokCredential, ByokCredentialSpec, ByokPolicyMode, ByokPolicySpec, ByokQuota,
    DatabaseProject, DatabaseProjectSpec, DatabaseProvider, DeletionPolicy, LocalObjectRef,
    ProjectMode, ProviderRef, QuotaWindow,
};
use dbops::controllers::byok::WATCH_LABEL;
use dbops::controllers::conditions::ROTATION_FAILED;
use dbops::controllers::conditions::{READY, RECONCILING, STALLED};
use dbops::controllers::{Context, Managed, ReconcileError, Settings};
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use support::{Harness, NS, condition, reconcile, reconcile_until_ready};

async fn put_secret(h: &Harness, name: &str, fields: &[(&str, &str)]) {
    let api: Api<Secret> = Api::namespaced(h.client.clone(), NS);
    let data: BTreeMap<String, k8s_openapi::ByteString> = fields
        .iter()
        .map(|(k, v)| {
            (
                k.to_string(),
                k8s_openapi::ByteString(v.as_bytes().to_vec()),
            )
        })
        .collect();
    match api.get_opt(name).await.unwrap() {
        Some(_) => {
            let patch = serde_json::json!({ "data": data });
            api.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
                .unwrap();
        }
        None => {
            let secret = Secret {
                metadata: kube::api::ObjectMeta {
                    name: Some(name.into()),
                    ..Default::default()
                },
                data: Some(data),
                ..Default::default()
            };
            api.create(&PostParams::default(), &secret).await.unwrap();
        }
    }
}

fn spec() -> ByokCredentialSpec {
    ByokCredentialSpec {
        provider_ref: ProviderRef::default(),
        vendor: "neon".into(),
        alias: "team-a-neon".into(),
        credentials_secret_ref: LocalObjectRef {
            name: "neon-key".into(),
        },
        enabled: true,
        bindings: vec![ByokBinding {
            capability: None,
            module: Some("db".into()),
            model: None,
        }],
        quota: None,
        test_interval: None,
        deletion_policy: DeletionPolicy::Delete,
    }
}

async fn create(h: &Harness, name: &str, spec: ByokCredentialSpec) {
    let api: Api<ByokCredential> = Api::namespaced(h.client.clone(), NS);
    api.create(&PostParams::default(), &ByokCredential::new(name, spec))
        .await
        .unwrap();
}

async fn get(h: &Harness, name: &str) -> Option<ByokCredential> {
    let api: Api<ByokCredential> = Api::namespaced(h.client.clone(), NS);
    api.get_opt(name).await.unwrap()
}

async fn edit(h: &Harness, name: &str, spec: serde_json::Value) {
    let api: Api<ByokCredential> = Api::namespaced(h.client.clone(), NS);
    api.patch(
        name,
        &PatchParams::default(),
        &Patch::Merge(&serde_json::json!({ "spec": spec })),
    )
    .await
    .unwrap();
}

async fn ready_credential(h: &Harness) -> (ByokCredential, String) {
    put_secret(
        h,
        "neon-key",
        &[("api_key", "sk-live-original"), ("org", "org-1")],
    )
    .await;
    create(h, "neon", spec()).await;
    let c = reconcile_until_ready::<ByokCredential>(h, "neon", 3).await;
    let id = c.status.clone().unwrap().byok_id.unwrap();
    (c, id)
}

#[tokio::test]
async fn registers_binds_tests_and_reports() {
    let h = Harness::new().await;
    let (c, id) = ready_credential(&h).await;
    let status = c.status.clone().unwrap();
    assert_eq!(h.emulator.infrai.byok.count(), 1);
    assert_eq!(status.state.as_deref(), Some("active"));
    let test = status.last_test.clone().unwrap();
    assert!(test.ok && test.latency_ms.is_some());
    assert_eq!(status.usage.as_ref().unwrap().call_count, 0);
    assert!(status.credential_fingerprints.contains_key("api_key"));
    assert!(
        status
            .credential_fingerprints
            .values()
            .all(|f| f.starts_with("sha256:"))
    );
    let (state, label, bindings) = h.emulator.infrai.byok.summary(&id).unwrap();
    assert_eq!((state.as_str(), label.as_str()), ("active", "team-a-neon"));
    assert_eq!(bindings, vec![(None, Some("db".into()), None)]);
    assert_eq!(
        h.emulator.infrai.byok.active_credentials(&id).unwrap()["api_key"],
        "sk-live-original"
    );
    // The operator labelled the Secret so that its (filtered) watch sees it.
    let secret = Api::<Secret>::namespaced(h.client.clone(), NS)
        .get("neon-key")
        .await
        .unwrap();
    assert_eq!(secret.metadata.labels.unwrap()[WATCH_LABEL], "true");
    assert!(h.event_reasons("neon").contains(&"Registered".to_string()));

    // Usage shows up on the next pass; steady state otherwise writes nothing.
    h.emulator.infrai.byok.record_usage(&id, 2.5, 12);
    reconcile::<ByokCredential>(&h, "neon").await.unwrap();
    assert_eq!(
        get(&h, "neon")
            .await
            .unwrap()
            .status
            .unwrap()
            .usage
            .unwrap()
            .call_count,
        12
    );
    h.kube.clear_log();
    reconcile::<ByokCredential>(&h, "neon").await.unwrap();
    assert_eq!(h.kube.writes(), 0, "{:?}", h.kube.requests());
    assert_eq!(h.emulator.infrai.byok.count(), 1);
}

#[tokio::test]
async fn bindings_label_quota_and_enabled_follow_the_spec() {
    let h = Harness::new().await;
    let (_, id) = ready_credential(&h).await;
    edit(
        &h,
        "neon",
        serde_json::json!({
            "alias": "renamed",
            "bindings": [
                { "capability": "db.project.create" },
                { "module": "db", "model": "pg16" },
            ],
            "quota": { "spendLimitUsd": 50.0, "callLimit": 1000, "window": "30d" },
        }),
    )
    .await;
    reconcile::<ByokCredential>(&h, "neon").await.unwrap();
    let (_, label, mut bindings) = h.emulator.infrai.byok.summary(&id).unwrap();
    bindings.sort();
    assert_eq!(label, "renamed");
    assert_eq!(
        bindings,
        vec![
            (None, Some("db".into()), Some("pg16".into())),
            (Some("db.project.create".into()), None, None),
        ]
    );
    let quota = h.emulator.infrai.byok.quota(&id).unwrap();
    assert_eq!(quota["call_limit"], 1000);
    assert_eq!(quota["window"], "30d");
    let c = get(&h, "neon").await.unwrap();
    assert_eq!(
        c.status.unwrap().applied_quota,
        Some(ByokQuota {
            spend_limit_usd: Some(50.0),
            call_limit: Some(1000),
            window: Some(QuotaWindow::Month),
        })
    );

    // A binding added at the vendor by hand is removed: the spec is the truth.
    let client = dbops::providers::infrai::InfraiClient::new(
        dbops::providers::http::VendorHttp::new(
            dbops::api::v1alpha1::ProviderApi::Infrai,
            &h.emulator_url,
            &secrecy::SecretString::from(support::API_KEY.to_string()),
            Duration::from_secs(5),
            None,
        )
        .unwrap(),
    );
    let stray = dbops::providers::infrai_byok::Binding {
        capability: None,
        module: Some("ai-runtime".into()),
        model: None,
    };
    client.byok_bind(&id, &stray, None).await.unwrap();
    let quota_sets = |h: &Harness| {
        h.emulator
            .infrai
            .byok
            .event_types(&id)
            .iter()
            .filter(|t| *t == "quota_set")
            .count()
    };
    let before = quota_sets(&h);
    reconcile::<ByokCredential>(&h, "neon").await.unwrap();
    let (_, _, bindings) = h.emulator.infrai.byok.summary(&id).unwrap();
    assert_eq!(bindings.len(), 2);
    assert!(
        !bindings
            .iter()
            .any(|b| b.1.as_deref() == Some("ai-runtime"))
    );
    assert_eq!(
        quota_sets(&h),
        before,
        "an unchanged quota is not sent again"
    );

    // Disable, then enable.
    edit(&h, "neon", serde_json::json!({ "enabled": false })).await;
    reconcile::<ByokCredential>(&h, "neon").await.unwrap();
    assert_eq!(h.emulator.infrai.byok.summary(&id).unwrap().0, "disabled");
    let c = get(&h, "neon").await.unwrap();
    assert_eq!(
        c.status.as_ref().unwrap().state.as_deref(),
        Some("disabled")
    );
    assert!(c.is_ready(), "disabled as asked is a Ready state");
    edit(&h, "neon", serde_json::json!({ "enabled": true })).await;
    reconcile::<ByokCredential>(&h, "neon").await.unwrap();
    assert_eq!(h.emulator.infrai.byok.summary(&id).unwrap().0, "active");
}

#[tokio::test]
async fn a_failing_test_is_reported_without_the_key() {
    let h = Harness::new().await;
    put_secret(&h, "neon-key", &[("api_key", "sk-invalid-from-the-start")]).await;
    create(&h, "neon", spec()).await;
    reconcile::<ByokCredential>(&h, "neon").await.unwrap();
    reconcile::<ByokCredential>(&h, "neon").await.unwrap();
    let c = get(&h, "neon").await.unwrap();
    assert_eq!(
        condition(&c, STALLED),
        ("True".into(), "CredentialTestFailed".into())
    );
    let status = c.status.unwrap();
    let test = status.last_test.unwrap();
    assert!(!test.ok);
    assert!(
        test.error
            .as_deref()
            .is_some_and(|e| e.contains("rejected"))
    );
    let message = &status.conditions.get(STALLED).unwrap().message;
    assert!(!message.contains("sk-invalid-from-the-start"), "{message}");
}

fn rotation_stages(h: &Harness, id: &str) -> usize {
    h.emulator
        .infrai
        .byok
        .event_types(id)
        .iter()
        .filter(|t| *t == "rotation_staged")
        .count()
}

#[tokio::test]
async fn a_changed_secret_is_staged_probed_and_committed() {
    let h = Harness::new().await;
    let (before, id) = ready_credential(&h).await;
    put_secret(
        &h,
        "neon-key",
        &[("api_key", "sk-live-rotated"), ("org", "org-1")],
    )
    .await;
    reconcile::<ByokCredential>(&h, "neon").await.unwrap();
    assert_eq!(
        h.emulator.infrai.byok.active_credentials(&id).unwrap()["api_key"],
        "sk-live-rotated"
    );
    let after = get(&h, "neon").await.unwrap();
    let status = after.status.clone().unwrap();
    assert!(status.last_rotated_at.is_some());
    assert_ne!(
        status.credential_fingerprints,
        before.status.unwrap().credential_fingerprints
    );
    assert!(after.is_ready());
    assert!(status.conditions.get(ROTATION_FAILED).is_none());
    assert!(h.event_reasons("neon").contains(&"Rotated".to_string()));
    assert_eq!(rotation_stages(&h, &id), 1);
    let types = h.emulator.infrai.byok.event_types(&id);
    assert_eq!(types.iter().filter(|t| *t == "rotated").count(), 1);

    // A restarted operator (fresh context, same status) does not rotate again.
    let restarted = std::sync::Arc::new(Context::new(
        h.client.clone(),
        std::sync::Arc::new(dbops::metrics::Metrics::default()),
        Settings::default(),
        None,
    ));
    let obj = get(&h, "neon").await.unwrap();
    dbops::controllers::reconcile(
        std::sync::Arc::new(kube::core::DeserializeGuard(Ok(obj))),
        restarted,
    )
    .await
    .unwrap();
    assert_eq!(
        rotation_stages(&h, &id),
        1,
        "no second rotation for an unchanged Secret"
    );
}

#[tokio::test]
async fn a_key_the_probe_rejects_is_never_committed() {
    let h = Harness::new().await;
    let (_, id) = ready_credential(&h).await;
    put_secret(
        &h,
        "neon-key",
        &[("api_key", "sk-invalid-typo"), ("org", "org-1")],
    )
    .await;
    reconcile::<ByokCredential>(&h, "neon").await.unwrap();
    assert_eq!(
        h.emulator.infrai.byok.active_credentials(&id).unwrap()["api_key"],
        "sk-live-original",
        "the old key stays in force"
    );
    let c = get(&h, "neon").await.unwrap();
    assert_eq!(
        condition(&c, READY).0,
        "True",
        "still usable with the old key"
    );
    assert_eq!(
        condition(&c, ROTATION_FAILED),
        ("True".into(), "ProbeFailed".into())
    );
    let message = c
        .status
        .as_ref()
        .unwrap()
        .conditions
        .get(ROTATION_FAILED)
        .unwrap()
        .message
        .clone();
    assert!(
        message.contains("previous key stays in force") && !message.contains("sk-invalid-typo"),
        "{message}"
    );
    assert!(
        h.event_reasons("neon")
            .contains(&ROTATION_FAILED.to_string())
    );

    // Not retried in a loop for the same content.
    reconcile::<ByokCredential>(&h, "neon").await.unwrap();
    reconcile::<ByokCredential>(&h, "neon").await.unwrap();
    assert_eq!(rotation_stages(&h, &id), 1);

    // A fixed Secret rotates and clears the condition.
    put_secret(
        &h,
        "neon-key",
        &[("api_key", "sk-live-fixed"), ("org", "org-1")],
    )
    .await;
    reconcile::<ByokCredential>(&h, "neon").await.unwrap();
    assert_eq!(
        h.emulator.infrai.byok.active_credentials(&id).unwrap()["api_key"],
        "sk-live-fixed"
    );
    let c = get(&h, "neon").await.unwrap();
    assert!(c.status.unwrap().conditions.get(ROTATION_FAILED).is_none());
}

#[tokio::test]
async fn changing_a_field_other_than_api_key_is_refused_clearly() {
    let h = Harness::new().await;
    let (_, id) = ready_credential(&h).await;
    put_secret(
        &h,
        "neon-key",
        &[("api_key", "sk-live-original"), ("org", "org-2")],
    )
    .await;
    reconcile::<ByokCredential>(&h, "neon").await.unwrap();
    let c = get(&h, "neon").await.unwrap();
    assert_eq!(
        condition(&c, ROTATION_FAILED),
        ("True".into(), "RotationUnsupported".into())
    );
    assert_eq!(rotation_stages(&h, &id), 0);
    assert_eq!(
        h.emulator.infrai.byok.active_credentials(&id).unwrap()["org"],
        "org-1"
    );
}

#[tokio::test]
async fn delete_revokes_and_retain_keeps() {
    let h = Harness::new().await;
    let (_, id) = ready_credential(&h).await;
    let api: Api<ByokCredential> = Api::namespaced(h.client.clone(), NS);
    api.delete("neon", &DeleteParams::default()).await.unwrap();
    reconcile::<ByokCredential>(&h, "neon").await.unwrap();
    assert!(get(&h, "neon").await.is_none());
    assert_eq!(h.emulator.infrai.byok.summary(&id).unwrap().0, "revoked");
    assert!(h.event_reasons("neon").contains(&"Revoked".to_string()));

    let mut keep = spec();
    keep.deletion_policy = DeletionPolicy::Retain;
    create(&h, "kept", keep).await;
    let kept = reconcile_until_ready::<ByokCredential>(&h, "kept", 3).await;
    let kept_id = kept.status.unwrap().byok_id.unwrap();
    api.delete("kept", &DeleteParams::default()).await.unwrap();
    reconcile::<ByokCredential>(&h, "kept").await.unwrap();
    assert!(get(&h, "kept").await.is_none());
    assert_eq!(
        h.emulator.infrai.byok.summary(&kept_id).unwrap().0,
        "active"
    );
}

#[tokio::test]
async fn the_test_runs_again_after_its_interval() {
    let h = Harness::new().await;
    put_secret(&h, "neon-key", &[("api_key", "sk-live-original")]).await;
    let mut s = spec();
    s.test_interval = Some("1m".parse().unwrap());
    create(&h, "neon", s).await;
    let c = reconcile_until_ready::<ByokCredential>(&h, "neon", 3).await;
    let first = c.status.unwrap().last_test.unwrap().tested_at;
    let tested_at =
        |c: Option<ByokCredential>| c.unwrap().status.unwrap().last_test.unwrap().tested_at;
    reconcile::<ByokCredential>(&h, "neon").await.unwrap();
    assert_eq!(tested_at(get(&h, "neon").await), first, "not yet due");
    // A minute and a bit later (the last test moved back rather than waiting).
    let earlier = (k8s_openapi::jiff::Timestamp::now()
        - k8s_openapi::jiff::SignedDuration::from_secs(61))
    .to_string();
    let api: Api<ByokCredential> = Api::namespaced(h.client.clone(), NS);
    api.patch_status(
        "neon",
        &kube::api::PatchParams::default(),
        &kube::api::Patch::Merge(
            serde_json::json!({ "status": { "lastTest": { "ok": true, "testedAt": earlier } } }),
        ),
    )
    .await
    .unwrap();
    reconcile::<ByokCredential>(&h, "neon").await.unwrap();
    let again = tested_at(get(&h, "neon").await);
    assert_ne!(again.to_string(), earlier, "the test ran again once due");
    assert_ne!(again, first);
}

#[tokio::test]
async fn a_byok_project_waits_for_its_credential() {
    let h = Harness::new().await;
    let project = DatabaseProject::new(
        "byok-db",
        DatabaseProjectSpec {
            mode: Some(ProjectMode::Byok),
            vendor: Some("neon".into()),
            byok_credential_ref: Some(LocalObjectRef {
                name: "neon".into(),
            }),
            ..Default::default()
        },
    );
    Api::<DatabaseProject>::namespaced(h.client.clone(), NS)
        .create(&PostParams::default(), &project)
        .await
        .unwrap();
    reconcile::<DatabaseProject>(&h, "byok-db").await.unwrap();
    reconcile::<DatabaseProject>(&h, "byok-db").await.unwrap();
    let p: DatabaseProject = Api::namespaced(h.client.clone(), NS)
        .get("byok-db")
        .await
        .unwrap();
    assert_eq!(
        condition(&p, RECONCILING),
        ("True".into(), "WaitingForCredential".into())
    );
    assert!(h.emulator.infrai.projects().is_empty());

    ready_credential(&h).await;
    reconcile_until_ready::<DatabaseProject>(&h, "byok-db", 3).await;
    assert_eq!(h.emulator.infrai.projects()[0].vendor, "neon");

    // A credential for another vendor is refused with a clear reason.
    let mismatched = DatabaseProject::new(
        "wrong-vendor",
        DatabaseProjectSpec {
            mode: Some(ProjectMode::Byok),
            vendor: Some("supabase".into()),
            byok_credential_ref: Some(LocalObjectRef {
                name: "neon".into(),
            }),
            ..Default::default()
        },
    );
    Api::<DatabaseProject>::namespaced(h.client.clone(), NS)
        .create(&PostParams::default(), &mismatched)
        .await
        .unwrap();
    // Refused on the first pass (nothing is sent, so no finalizer is needed first).
    let err = reconcile::<DatabaseProject>(&h, "wrong-vendor")
        .await
        .unwrap_err();
    assert_eq!(err.category(), "InvalidSpec");
    assert!(err.to_string().contains("is for vendor"), "{err}");
}

#[tokio::test]
async fn the_provider_applies_the_byok_routing_policy() {
    let h = Harness::new().await;
    let providers: Api<DatabaseProvider> = Api::all(h.client.clone());
    let patch = serde_json::json!({ "spec": { "byokPolicy": { "mode": "byok_only", "scope": { "module": "db" } } } });
    providers
        .patch("default", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    let provider = providers.get("default").await.unwrap();
    assert_eq!(
        provider.spec.byok_policy.as_ref().unwrap().mode,
        ByokPolicyMode::ByokOnly
    );
    dbops::controllers::provider::reconcile(
        std::sync::Arc::new(kube::core::DeserializeGuard(Ok(provider))),
        h.ctx.clone(),
    )
    .await
    .unwrap();
    let policy = h.emulator.infrai.byok.policy();
    assert_eq!(policy["mode"], "byok_only");
    assert_eq!(policy["scope"]["module"], "db");
    let provider = providers.get("default").await.unwrap();
    assert!(provider.status.unwrap().conditions.is_true(READY));

    // In sync: no second set.
    let patch = serde_json::json!({ "spec": { "byokPolicy": ByokPolicySpec { mode: ByokPolicyMode::ByokThenPool, scope: None } } });
    providers
        .patch("default", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    let provider = providers.get("default").await.unwrap();
    dbops::controllers::provider::reconcile(
        std::sync::Arc::new(kube::core::DeserializeGuard(Ok(provider))),
        h.ctx.clone(),
    )
    .await
    .unwrap();
    assert_eq!(h.emulator.infrai.byok.policy()["mode"], "byok_then_pool");

    // A provider whose Secret is missing is Stalled, not crashing.
    h.create_provider("broken", "http://127.0.0.1:9/infrai")
        .await;
    let patch = serde_json::json!({ "spec": { "credentialsSecretRef": { "name": "nope", "namespace": "nowhere" } } });
    providers
        .patch("broken", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    let broken = providers.get("broken").await.unwrap();
    let err = dbops::controllers::provider::reconcile(
        std::sync::Arc::new(kube::core::DeserializeGuard(Ok(broken))),
        h.ctx.clone(),
    )
    .await
    .unwrap_err();
    assert_eq!(err.category(), "CredentialsMissing");
    let broken = providers.get("broken").await.unwrap();
    assert!(broken.status.unwrap().conditions.is_true(STALLED));
}
