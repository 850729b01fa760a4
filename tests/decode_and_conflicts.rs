//! One object the operator cannot decode never stops the others, and a write
//! that loses a race with the cache is retried quietly. Against the in-memory
//! API, which stores objects without schema checks, as an API server does
//! for anything admitted under an older or looser schema.

mod support;

use dbops::api::v1alpha1::{DatabaseProject, DatabaseProjectSpec, DatabaseProvider};
use dbops::controllers::{CONFLICT_RETRY, Managed, ReconcileError, error_policy, failure_delay};
use kube::api::{Api, ApiResource, DynamicObject, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use support::{Harness, NS, start_operator_with, wait_for};

async fn create_raw(h: &Harness, kind: &str, plural: &str, namespace: Option<&str>, object: Value) {
    let resource = ApiResource {
        group: "dbops.dev".into(),
        version: "v1alpha1".into(),
        api_version: "dbops.dev/v1alpha1".into(),
        kind: kind.into(),
        plural: plural.into(),
    };
    let api: Api<DynamicObject> = match namespace {
        Some(ns) => Api::namespaced_with(h.client.clone(), ns, &resource),
        None => Api::all_with(h.client.clone(), &resource),
    };
    let object: DynamicObject = serde_json::from_value(object).unwrap();
    api.create(&PostParams::default(), &object).await.unwrap();
}

fn free_port() -> std::net::SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap()
}

fn condition(status: &Value, type_: &str) -> Option<(String, String, String)> {
    status["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_)
        .map(|c| {
            (
                c["status"].as_str().unwrap_or_default().to_string(),
                c["reason"].as_str().unwrap_or_default().to_string(),
                c["message"].as_str().unwrap_or_default().to_string(),
            )
        })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_object_that_cannot_be_decoded_is_reported_and_the_rest_carry_on() {
    let h = Harness::new().await;
    let projects: Api<DatabaseProject> = Api::namespaced(h.client.clone(), NS);
    // Present before the operator starts: its first list must still succeed.
    create_raw(
        &h,
        "DatabaseProject",
        "databaseprojects",
        Some(NS),
        json!({
            "apiVersion": "dbops.dev/v1alpha1", "kind": "DatabaseProject",
            "metadata": { "name": "broken", "namespace": NS },
            "spec": { "deletionPolicy": "Nope", "region": 42 },
        }),
    )
    .await;
    // And a provider nobody can decode (an API this version does not know).
    create_raw(
        &h,
        "DatabaseProvider",
        "databaseproviders",
        None,
        json!({
            "apiVersion": "dbops.dev/v1alpha1", "kind": "DatabaseProvider",
            "metadata": { "name": "future" },
            "spec": { "api": "oracle", "credentialsSecretRef": { "name": "x", "namespace": "y" } },
        }),
    )
    .await;
    projects
        .create(
            &PostParams::default(),
            &DatabaseProject::new("healthy", DatabaseProjectSpec::default()),
        )
        .await
        .unwrap();
    let metrics = free_port();
    let (_stop, _task) = start_operator_with(&h, Some(metrics));

    wait_for("healthy Ready", || async {
        projects
            .get("healthy")
            .await
            .unwrap()
            .is_ready()
            .then_some(())
    })
    .await;
    let raw: Api<DynamicObject> = Api::namespaced_with(
        h.client.clone(),
        NS,
        &ApiResource::erase::<DatabaseProject>(&()),
    );
    let (status, reason, message) = wait_for("broken reported", || async {
        let o = raw.get("broken").await.unwrap();
        condition(&o.data["status"], "Stalled").filter(|(s, _, _)| s == "True")
    })
    .await;
    assert_eq!((status.as_str(), reason.as_str()), ("True", "InvalidSpec"));
    assert!(message.contains("spec."), "names the field: {message}");
    assert!(
        !message.contains("Status {") && !message.contains('\n'),
        "{message}"
    );
    assert!(
        h.event_reasons("broken")
            .contains(&"InvalidSpec".to_string()),
        "{:?}",
        h.event_reasons("broken")
    );
    let providers: Api<DynamicObject> = Api::all_with(
        h.client.clone(),
        &ApiResource::erase::<DatabaseProvider>(&()),
    );
    wait_for("provider reported", || async {
        let o = providers.get("future").await.unwrap();
        condition(&o.data["status"], "Stalled").filter(|(_, r, _)| r == "InvalidSpec")
    })
    .await;
    // Readiness is not held up by either.
    wait_for("/readyz 200", || async {
        let ready = reqwest::get(format!("http://{metrics}/readyz"))
            .await
            .unwrap();
        (ready.status().as_u16() == 200).then_some(())
    })
    .await;

    // Fixed, it is reconciled like any other.
    raw.patch(
        "broken",
        &PatchParams::default(),
        &Patch::Merge(json!({ "spec": { "deletionPolicy": "Delete", "region": "eu-west-1" } })),
    )
    .await
    .unwrap();
    wait_for("fixed Ready", || async {
        projects
            .get("broken")
            .await
            .unwrap()
            .is_ready()
            .then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_finalizer_patch_is_a_quiet_prompt_retry() {
    let h = Harness::new().await;
    let projects: Api<DatabaseProject> = Api::namespaced(h.client.clone(), NS);
    // An adopting project: its finalizer goes on first, conditional on the
    // copy the reconcile was handed (a create puts it on after its status
    // write, with the version that write returned).
    let made: serde_json::Value = reqwest::Client::new()
        .post(format!("{}/v1/db/project/create", h.emulator_url))
        .bearer_auth(support::API_KEY)
        .json(&json!({ "name": "made-elsewhere" }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let adopting = DatabaseProjectSpec {
        external_id: made["id"].as_str().map(str::to_string),
        ..DatabaseProjectSpec::default()
    };
    projects
        .create(
            &PostParams::default(),
            &DatabaseProject::new("shop", adopting),
        )
        .await
        .unwrap();
    // What the cache holds...
    let stale = projects.get("shop").await.unwrap();
    // ...while the object has moved on: another controller added its finalizer.
    projects
        .patch(
            "shop",
            &PatchParams::default(),
            &Patch::Merge(json!({ "metadata": { "finalizers": ["example.com/other"] } })),
        )
        .await
        .unwrap();

    let result = dbops::controllers::reconcile(
        std::sync::Arc::new(kube::core::DeserializeGuard(Ok(stale.clone()))),
        h.ctx.clone(),
    )
    .await;
    let error = result.expect_err("the JSON-patch test fails against the stale copy");
    assert!(error.is_conflict(), "{error}");
    assert!(
        !error.to_string().contains("Status {") && !error.to_string().contains("ApiError"),
        "{error}"
    );
    // No Warning Event, nothing in status, and a prompt retry without backoff.
    assert!(
        h.event_reasons("shop").is_empty(),
        "{:?}",
        h.event_reasons("shop")
    );
    assert!(projects.get("shop").await.unwrap().status.is_none());
    // However often it happens: no growing backoff.
    for attempt in [1, 5, 20] {
        let delay = failure_delay(&error, attempt, &h.ctx.settings);
        assert!(
            delay <= CONFLICT_RETRY * 2,
            "{delay:?}: conflicts do not back off"
        );
    }
    let _ = error_policy("databaseproject", &stale, &error, &h.ctx);
    // The retry, reading the current object, goes through.
    support::reconcile_until_ready::<DatabaseProject>(&h, "shop", 5).await;
}
