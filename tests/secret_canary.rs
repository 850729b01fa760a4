//! Canary test: credential values planted in Secrets must never show up in
//! anything the operator writes or says: logs (at debug level), Events, status
//! of any object, error messages, or metrics. The whole operator runs (every
//! controller, watches included) through registration, a failed and a
//! successful rotation, a failing test, a wrong provider key, and deletion.

mod support;

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use dbops::api::v1alpha1::{
    ByokCredential, ByokCredentialSpec, DatabaseProject, DatabaseProjectSpec, DeletionPolicy,
    LocalObjectRef, ProviderRef,
};
use dbops::controllers::{Managed, Settings};
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use support::{Harness, NS};

const GOOD: &str = "sk-canary-7Hq2mXv9Lp";
const REJECTED: &str = "sk-canary-invalid-Zt4Rw8";
const ROTATED: &str = "sk-canary-rotated-Kd3Ns1";
const FAILING: &str = "sk-canary-invalid-first-Qm6Yb2";
const WRONG_PROVIDER_KEY: &str = "ifr_pk_proj_canary_wrong_Vb7Gc5";

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

async fn put_secret(h: &Harness, name: &str, api_key: &str) {
    let api: Api<Secret> = Api::namespaced(h.client.clone(), NS);
    let data =
        serde_json::json!({ "api_key": k8s_openapi::ByteString(api_key.as_bytes().to_vec()) });
    if api.get_opt(name).await.unwrap().is_some() {
        api.patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(&serde_json::json!({ "data": data })),
        )
        .await
        .unwrap();
    } else {
        let secret: Secret = serde_json::from_value(
            serde_json::json!({ "metadata": { "name": name }, "data": data }),
        )
        .unwrap();
        api.create(&PostParams::default(), &secret).await.unwrap();
    }
}

fn credential(secret: &str) -> ByokCredential {
    ByokCredential::new(
        secret,
        ByokCredentialSpec {
            provider_ref: ProviderRef::default(),
            vendor: "neon".into(),
            alias: "canary".into(),
            credentials_secret_ref: LocalObjectRef {
                name: secret.into(),
            },
            enabled: true,
            bindings: vec![],
            quota: None,
            test_interval: None,
            deletion_policy: DeletionPolicy::Delete,
        },
    )
}

async fn wait_until<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..300 {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for {what}");
}

#[tokio::test]
async fn no_credential_reaches_logs_events_status_errors_or_metrics() {
    let logs = Captured::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::DEBUG)
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let h = Harness::new().await;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let options = dbops::operator::Options {
        settings: Settings {
            base_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_millis(200),
            ..Settings::default()
        },
        metrics_listen: None,
        instance: None,
        ..Default::default()
    };
    let task = tokio::spawn(dbops::operator::run(
        h.client.clone(),
        options,
        async move {
            let _ = stopped.await;
        },
    ));
    let credentials: Api<ByokCredential> = Api::namespaced(h.client.clone(), NS);
    let get = |name: &'static str| {
        let credentials = credentials.clone();
        async move { credentials.get_opt(name).await.unwrap() }
    };

    // Registered and Ready.
    put_secret(&h, "good", GOOD).await;
    credentials
        .create(&PostParams::default(), &credential("good"))
        .await
        .unwrap();
    wait_until("Ready", || async {
        get("good").await.is_some_and(|c| c.is_ready())
    })
    .await;

    // A rotation the probe rejects, then one that succeeds (noticed through the Secret watch).
    put_secret(&h, "good", REJECTED).await;
    wait_until("RotationFailed", || async {
        get("good")
            .await
            .is_some_and(|c| c.status.unwrap().conditions.is_true("RotationFailed"))
    })
    .await;
    put_secret(&h, "good", ROTATED).await;
    wait_until("rotated", || async {
        get("good").await.is_some_and(|c| {
            let status = c.status.unwrap();
            status.last_rotated_at.is_some() && !status.conditions.is_true("RotationFailed")
        })
    })
    .await;

    // A credential whose test fails from the start.
    put_secret(&h, "failing", FAILING).await;
    credentials
        .create(&PostParams::default(), &credential("failing"))
        .await
        .unwrap();
    wait_until("Stalled", || async {
        get("failing")
            .await
            .is_some_and(|c| c.status.is_some_and(|s| s.conditions.is_true("Stalled")))
    })
    .await;

    // A provider with a wrong key: the vendor's 401 travels through errors, status, Events and logs.
    let secrets: Api<Secret> = Api::namespaced(h.client.clone(), support::PROVIDER_NAMESPACE);
    let wrong: Secret = serde_json::from_value(serde_json::json!({
        "metadata": { "name": "wrong-credentials" },
        "data": { "apiKey": k8s_openapi::ByteString(WRONG_PROVIDER_KEY.as_bytes().to_vec()) },
    }))
    .unwrap();
    secrets
        .create(&PostParams::default(), &wrong)
        .await
        .unwrap();
    h.create_provider("wrong", &h.emulator_url).await;
    let providers: Api<dbops::api::v1alpha1::DatabaseProvider> = Api::all(h.client.clone());
    providers
        .patch(
            "wrong",
            &PatchParams::default(),
            &Patch::Merge(&serde_json::json!({ "spec": { "credentialsSecretRef": { "name": "wrong-credentials" } } })),
        )
        .await
        .unwrap();
    let projects: Api<DatabaseProject> = Api::namespaced(h.client.clone(), NS);
    let project = DatabaseProject::new(
        "unauthorized",
        DatabaseProjectSpec {
            provider_ref: ProviderRef {
                name: "wrong".into(),
            },
            ..Default::default()
        },
    );
    projects
        .create(&PostParams::default(), &project)
        .await
        .unwrap();
    wait_until("VendorUnauthorized", || async {
        projects
            .get_opt("unauthorized")
            .await
            .unwrap()
            .is_some_and(|p| {
                p.status.is_some_and(|s| {
                    s.conditions
                        .get("Stalled")
                        .is_some_and(|c| c.reason == "VendorUnauthorized")
                })
            })
    })
    .await;
    // A project with a real password in its connection Secret.
    projects
        .create(
            &PostParams::default(),
            &DatabaseProject::new("db", DatabaseProjectSpec::default()),
        )
        .await
        .unwrap();
    wait_until("project Ready", || async {
        projects
            .get_opt("db")
            .await
            .unwrap()
            .is_some_and(|p| p.is_ready())
    })
    .await;
    let connection = Api::<Secret>::namespaced(h.client.clone(), NS)
        .get("db-connection")
        .await
        .unwrap();
    let db_password = String::from_utf8(connection.data.unwrap()["password"].0.clone()).unwrap();

    // Deletion revokes.
    credentials
        .delete("good", &DeleteParams::default())
        .await
        .unwrap();
    wait_until("revoked", || async { get("good").await.is_none() }).await;
    let _ = stop.send(());
    let _ = tokio::time::timeout(Duration::from_secs(10), task).await;

    // Everything the operator wrote: every stored object except Secrets.
    let mut written = String::new();
    for collection in [
        "apis/events.k8s.io/v1/events",
        "apis/dbops.dev/v1alpha1/byokcredentials",
        "apis/dbops.dev/v1alpha1/databaseprojects",
        "apis/dbops.dev/v1alpha1/databaseproviders",
    ] {
        for object in h.kube.objects(collection) {
            written.push_str(&object.to_string());
        }
    }
    assert!(
        written.contains("RotationFailed") && written.contains("VendorUnauthorized"),
        "the flows ran"
    );
    let metrics = h.ctx.metrics.encode();
    let logs = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    assert!(logs.contains("reconcile"), "logs were captured");
    for secret in [
        GOOD,
        REJECTED,
        ROTATED,
        FAILING,
        WRONG_PROVIDER_KEY,
        support::API_KEY,
        db_password.as_str(),
    ] {
        assert!(
            !written.contains(secret),
            "{secret} leaked into an Event, status or spec"
        );
        assert!(!metrics.contains(secret), "{secret} leaked into metrics");
        assert!(!logs.contains(secret), "{secret} leaked into the logs");
    }
}

#[tokio::test]
async fn no_vendor_key_or_database_password_leaks_on_the_direct_apis() {
    let logs = Captured::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::DEBUG)
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let h = Harness::bare().await;
    use dbops::api::v1alpha1::ProviderApi;
    h.create_provider_for(
        "supa",
        ProviderApi::Supabase,
        support::SUPABASE_KEY,
        Some("acme"),
    )
    .await;
    h.create_provider_for("db9", ProviderApi::Db9, support::DB9_KEY, None)
        .await;
    h.create_provider_for("capy", ProviderApi::Capydb, support::CAPYDB_KEY, None)
        .await;
    h.emulator.capydb.add_project("prj_canary");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let options = dbops::operator::Options {
        settings: Settings {
            base_backoff: Duration::from_millis(50),
            provisioning_poll: Duration::from_millis(100),
            ..Settings::default()
        },
        ..Default::default()
    };
    let task = tokio::spawn(dbops::operator::run(
        h.client.clone(),
        options,
        async move {
            let _ = stopped.await;
        },
    ));
    let projects: Api<DatabaseProject> = Api::namespaced(h.client.clone(), NS);
    let pp = PostParams::default();
    for (name, spec) in [
        (
            "supa-app",
            serde_json::json!({ "providerRef": { "name": "supa" } }),
        ),
        (
            "db9-app",
            serde_json::json!({ "providerRef": { "name": "db9" } }),
        ),
        (
            "capy-app",
            serde_json::json!({ "providerRef": { "name": "capy" }, "externalId": "prj_canary", "deletionPolicy": "Retain" }),
        ),
    ] {
        let object = serde_json::json!({ "metadata": { "name": name, "annotations": { "dbops.dev/rotate-credentials": "once" } }, "spec": spec });
        projects
            .create(&pp, &serde_json::from_value(object).unwrap())
            .await
            .unwrap();
    }
    let mut passwords = Vec::new();
    for name in ["supa-app", "db9-app", "capy-app"] {
        wait_until("rotated", || async {
            projects.get_opt(name).await.unwrap().is_some_and(|p| {
                p.is_ready()
                    && p.status
                        .and_then(|s| s.credential_rotation)
                        .is_some_and(|r| r.last_rotated_at.is_some())
            })
        })
        .await;
        let secret = Api::<Secret>::namespaced(h.client.clone(), NS)
            .get(&format!("{name}-connection"))
            .await
            .unwrap();
        passwords.push(String::from_utf8(secret.data.unwrap()["password"].0.clone()).unwrap());
    }
    let _ = stop.send(());
    let _ = tokio::time::timeout(Duration::from_secs(10), task).await;

    let mut written = String::new();
    for collection in [
        "apis/events.k8s.io/v1/events",
        "apis/dbops.dev/v1alpha1/databaseprojects",
        "apis/dbops.dev/v1alpha1/databaseproviders",
    ] {
        for object in h.kube.objects(collection) {
            written.push_str(&object.to_string());
        }
    }
    assert!(written.contains("CredentialsRotated"), "the rotations ran");
    let metrics = h.ctx.metrics.encode();
    let logs = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    let mut secrets: Vec<&str> = vec![support::SUPABASE_KEY, support::DB9_KEY, support::CAPYDB_KEY];
    secrets.extend(passwords.iter().map(String::as_str));
    for secret in secrets {
        assert!(secret.len() >= 8);
        assert!(
            !written.contains(secret),
            "{secret} leaked into an Event, status or spec"
        );
        assert!(!metrics.contains(secret), "{secret} leaked into metrics");
        assert!(!logs.contains(secret), "{secret} leaked into the logs");
    }
}
