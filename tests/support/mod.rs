//! Test support: an in-memory Kubernetes API and helpers to drive controllers.
#![allow(dead_code)]

pub mod fake_kube;
pub mod postgres;

use std::sync::Arc;
use std::time::Duration;

use dbops::api::v1alpha1::{
    AdoptionPolicy, AllowedNamespaces, DatabaseProvider, DatabaseProviderSpec, NamespacesFrom,
    ProviderApi, SecretKeySelector,
};
use dbops::controllers::{Context, Settings};
use dbops::emulator::{Emulator, EmulatorConfig};
use dbops::metrics::Metrics;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, PostParams};

pub const API_KEY: &str = "ifr_pk_proj_controller_tests";
pub const SUPABASE_KEY: &str = "sbp_controller_tests";
pub const DB9_KEY: &str = "db9_controller_tests";
pub const CAPYDB_KEY: &str = "capy_live_controller_tests";
pub const PROVIDER_NAMESPACE: &str = "dbops-system";
pub const NS: &str = "team-a";

/// A fake Kubernetes API, an infrai emulator, and a controller context wired to both.
pub struct Harness {
    pub kube: fake_kube::FakeKube,
    pub client: kube::Client,
    pub emulator: Emulator,
    pub emulator_url: String,
    pub ctx: Arc<Context>,
}

impl Harness {
    /// Everything running, but no `DatabaseProvider` yet.
    pub async fn bare() -> Self {
        Self::bare_with(None).await
    }

    /// [`Harness::bare`] with an emulator that makes real databases on the
    /// test server (`--emulator-postgres`).
    pub async fn with_emulator_postgres() -> Self {
        let databases = dbops::emulator::real::RealDatabases::new(
            &postgres::server().admin_url(),
            dbops::emulator::real::CONNECT_TIMEOUT,
        )
        .expect("the URL is valid");
        databases.check().await.expect("the test server is usable");
        Self::bare_with(Some(Arc::new(databases))).await
    }

    async fn bare_with(real: Option<Arc<dbops::emulator::real::RealDatabases>>) -> Self {
        let kube = fake_kube::FakeKube::start().await;
        let client = kube.client();
        let config = [
            ("infrai", API_KEY),
            ("supabase", SUPABASE_KEY),
            ("db9", DB9_KEY),
            ("capydb", CAPYDB_KEY),
        ]
        .into_iter()
        .fold(EmulatorConfig::default(), |config, (api, key)| {
            config.with_keys(api, [key]).unwrap()
        });
        let config = match real {
            Some(real) => config.with_real_databases(real),
            None => config,
        };
        let emulator = Emulator::new(&config);
        let (addr, _) = emulator.clone().spawn("127.0.0.1:0").await.unwrap();
        let settings = Settings {
            base_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_millis(500),
            provisioning_poll: Duration::from_millis(100),
            ..Settings::default()
        };
        let ctx = Arc::new(Context::new(
            client.clone(),
            Arc::new(Metrics::default()),
            settings,
            None,
        ));
        Self {
            kube,
            client,
            emulator,
            emulator_url: format!("http://{addr}/infrai"),
            ctx,
        }
    }

    /// Another operator's context on the same API server (nothing shared in
    /// memory with [`Harness::ctx`]).
    pub fn second_context(&self) -> Arc<Context> {
        Arc::new(Context::new(
            self.client.clone(),
            Arc::new(Metrics::default()),
            self.ctx.settings.clone(),
            None,
        ))
    }

    /// Everything running, with the `default` provider and its Secret in place.
    pub async fn new() -> Self {
        let h = Self::bare().await;
        h.create_provider_secret(API_KEY).await;
        h.create_provider("default", &h.emulator_url.clone()).await;
        h
    }

    pub async fn create_provider_secret(&self, key: &str) {
        let secrets: Api<Secret> = Api::namespaced(self.client.clone(), PROVIDER_NAMESPACE);
        let secret: Secret = serde_json::from_value(serde_json::json!({
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": { "name": "infrai-credentials", "namespace": PROVIDER_NAMESPACE },
            "data": { "apiKey": k8s_openapi::ByteString(key.as_bytes().to_vec()) },
        }))
        .unwrap();
        secrets
            .create(&PostParams::default(), &secret)
            .await
            .unwrap();
    }

    pub async fn create_provider(&self, name: &str, endpoint: &str) {
        let providers: Api<DatabaseProvider> = Api::all(self.client.clone());
        let provider = DatabaseProvider::new(
            name,
            DatabaseProviderSpec {
                api: ProviderApi::Infrai,
                endpoint: Some(endpoint.to_string()),
                credentials_secret_ref: SecretKeySelector {
                    name: "infrai-credentials".into(),
                    namespace: PROVIDER_NAMESPACE.into(),
                    key: "apiKey".into(),
                },
                request_timeout_seconds: 5,
                supabase: None,
                postgres: None,
                byok_policy: None,
                request_budget: None,
                allowed_namespaces: open_to_all(),
                adoption: AdoptionPolicy {
                    allowed_namespaces: open_to_all(),
                },
            },
        );
        providers
            .create(&PostParams::default(), &provider)
            .await
            .unwrap();
    }

    /// Base URL of the emulated `api` (`infrai`, `supabase`, `db9`, `capydb`).
    pub fn endpoint(&self, api: &str) -> String {
        self.emulator_url.replace("/infrai", &format!("/{api}"))
    }

    /// A `DatabaseProvider` `name` for `api`, with its own Secret holding `key`.
    pub async fn create_provider_for(
        &self,
        name: &str,
        api: ProviderApi,
        key: &str,
        supabase_org: Option<&str>,
    ) {
        let mut spec = provider_spec(api, self.endpoint(api.as_str()), name, "apiKey");
        spec.supabase = supabase_org.map(|org| dbops::api::v1alpha1::SupabaseSettings {
            organization_slug: org.to_string(),
        });
        self.create_provider_with_secret(name, "apiKey", key, spec)
            .await;
    }

    /// A `postgres` `DatabaseProvider` `name` on the test server, copying
    /// with `strategy`, with its own Secret holding the admin password.
    pub async fn create_postgres_provider(
        &self,
        name: &str,
        server: &postgres::TestServer,
        strategy: dbops::api::v1alpha1::CopyStrategy,
    ) {
        let mut spec = provider_spec(
            ProviderApi::Postgres,
            server.endpoint.clone(),
            name,
            "password",
        );
        spec.request_timeout_seconds = 10;
        spec.postgres = Some(dbops::api::v1alpha1::PostgresSettings {
            copy_strategy: strategy,
            connection_host: None,
        });
        self.create_provider_with_secret(name, "password", &server.password, spec)
            .await;
    }

    /// Secret `<name>-credentials` holding `value` under `key`, then
    /// `DatabaseProvider` `name` with `spec`.
    async fn create_provider_with_secret(
        &self,
        name: &str,
        key: &str,
        value: &str,
        spec: DatabaseProviderSpec,
    ) {
        let secrets: Api<Secret> = Api::namespaced(self.client.clone(), PROVIDER_NAMESPACE);
        let secret: Secret = serde_json::from_value(serde_json::json!({
            "metadata": { "name": format!("{name}-credentials"), "namespace": PROVIDER_NAMESPACE },
            "data": { key: k8s_openapi::ByteString(value.as_bytes().to_vec()) },
        }))
        .unwrap();
        secrets
            .create(&PostParams::default(), &secret)
            .await
            .unwrap();
        let providers: Api<DatabaseProvider> = Api::all(self.client.clone());
        providers
            .create(&PostParams::default(), &DatabaseProvider::new(name, spec))
            .await
            .unwrap();
    }

    /// Reasons of the Events recorded about objects named `name`.
    pub fn event_reasons(&self, name: &str) -> Vec<String> {
        self.kube
            .objects("apis/events.k8s.io/v1/events")
            .into_iter()
            .filter(|e| e["regarding"]["name"].as_str() == Some(name))
            .filter_map(|e| e["reason"].as_str().map(str::to_string))
            .collect()
    }

    /// Notes of the Events recorded about objects named `name`.
    pub fn event_notes(&self, name: &str) -> Vec<String> {
        self.kube
            .objects("apis/events.k8s.io/v1/events")
            .into_iter()
            .filter(|e| e["regarding"]["name"].as_str() == Some(name))
            .filter_map(|e| e["note"].as_str().map(str::to_string))
            .collect()
    }
}

/// The spec of provider `name` for `api` at `endpoint`, whose credentials are
/// `key` of Secret `<name>-credentials` (every other setting at its default).
fn provider_spec(
    api: ProviderApi,
    endpoint: String,
    name: &str,
    key: &str,
) -> DatabaseProviderSpec {
    DatabaseProviderSpec {
        api,
        endpoint: Some(endpoint),
        credentials_secret_ref: SecretKeySelector {
            name: format!("{name}-credentials"),
            namespace: PROVIDER_NAMESPACE.into(),
            key: key.into(),
        },
        request_timeout_seconds: 5,
        supabase: None,
        postgres: None,
        byok_policy: None,
        request_budget: None,
        allowed_namespaces: open_to_all(),
        adoption: AdoptionPolicy {
            allowed_namespaces: open_to_all(),
        },
    }
}

/// A namespace policy that admits every namespace: the tests' providers
/// live in [`PROVIDER_NAMESPACE`] and their resources in [`NS`] and others,
/// so they open use and adoption to all (the tenancy tests set their own).
pub fn open_to_all() -> AllowedNamespaces {
    AllowedNamespaces {
        from: NamespacesFrom::All,
        selector: None,
    }
}

/// One reconcile of the current state of `K` `name` in [`NS`], as the controller would run it.
pub async fn reconcile<K>(
    h: &Harness,
    name: &str,
) -> Result<kube::runtime::controller::Action, K::Error>
where
    K: dbops::controllers::Lifecycle,
{
    let api: Api<K> = Api::namespaced(h.client.clone(), NS);
    let obj = api.get(name).await.expect("object exists");
    dbops::controllers::reconcile(
        Arc::new(kube::core::DeserializeGuard(Ok(obj))),
        h.ctx.clone(),
    )
    .await
}

/// Reconciles `K` `name` until it is Ready (at most `rounds` times).
pub async fn reconcile_until_ready<K>(h: &Harness, name: &str, rounds: usize) -> K
where
    K: dbops::controllers::Lifecycle,
{
    let api: Api<K> = Api::namespaced(h.client.clone(), NS);
    let mut last = String::new();
    for _ in 0..rounds {
        if let Err(error) = reconcile::<K>(h, name).await {
            last = error.to_string();
        }
        let obj = api.get(name).await.unwrap();
        if obj.is_ready() {
            return obj;
        }
    }
    panic!("{name} did not become Ready in {rounds} reconciles (last error: {last})");
}

/// `(status, reason)` of condition `type_` of `obj`.
pub fn condition<K: dbops::controllers::Managed>(obj: &K, type_: &str) -> (String, String) {
    let status = obj.status().expect("has status");
    let c = K::conditions(status)
        .get(type_)
        .unwrap_or_else(|| panic!("no {type_} condition"));
    (c.status.clone(), c.reason.clone())
}

/// Polls `check` until it returns something (at most 15 s).
pub async fn wait_for<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The whole operator (`dbops::operator::run`) against the harness, stopped
/// by sending on (or dropping) the returned sender.
pub fn start_operator(
    h: &Harness,
) -> (
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<()>,
) {
    start_operator_with(h, None)
}

/// [`start_operator`], serving `/metrics` and `/readyz` on `metrics`.
pub fn start_operator_with(
    h: &Harness,
    metrics: Option<std::net::SocketAddr>,
) -> (
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<()>,
) {
    start_operator_full(
        h,
        metrics,
        Settings {
            base_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(1),
            ..Settings::default()
        },
    )
}

/// [`start_operator_with`], with these controller settings.
pub fn start_operator_full(
    h: &Harness,
    metrics: Option<std::net::SocketAddr>,
    settings: Settings,
) -> (
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<()>,
) {
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let options = dbops::operator::Options {
        settings,
        metrics_listen: metrics,
        instance: Some("test".into()),
        ..Default::default()
    };
    let client = h.client.clone();
    let task = tokio::spawn(dbops::operator::run(client, options, async move {
        let _ = stopped.await;
    }));
    (stop, task)
}

/// A `DatabaseBranch` `name` of project `project`, writing its Secret to `<name>-db`.
pub fn branch(name: &str, project: &str) -> dbops::api::v1alpha1::DatabaseBranch {
    use dbops::api::v1alpha1::{
        ConnectionSecretTarget, DatabaseBranch, DatabaseBranchSpec, DeletionPolicy, LocalObjectRef,
    };
    DatabaseBranch::new(
        name,
        DatabaseBranchSpec {
            project_ref: LocalObjectRef {
                name: project.into(),
            },
            branch_name: None,
            from_branch_ref: None,
            from_branch: None,
            external_id: None,
            deletion_policy: Some(DeletionPolicy::Delete),
            write_connection_secret_to: Some(ConnectionSecretTarget {
                name: format!("{name}-db"),
                ..Default::default()
            }),
            credential_rotation: None,
            expire_after: None,
            data: None,
            reset_schedule: None,
        },
    )
}

/// Waits (at most 15 s) until `name` no longer exists.
pub async fn wait_gone<K>(api: &Api<K>, name: &str)
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
    K::DynamicType: Default,
{
    wait_for(&format!("{name} gone"), || async {
        api.get_opt(name).await.unwrap().is_none().then_some(())
    })
    .await;
}
