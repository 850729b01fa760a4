//! In-memory emulators of the vendor APIs, served over HTTP on loopback, in
//! three layers that use only the ones below them (and `providers`, `api`):
//! [`base`], then [`vendors`], then this module's [`Emulator`].
//!
//! [`base`] has the wire helpers, the scaffold every API is built on, real
//! databases, injected faults, strict mode and the state file; [`vendors`] one
//! module per vendor API; the [`Emulator`] serves every API behind one
//! listener, with its keys and its state file.
//!
//! Each API lives under its own path prefix (`/infrai`, ...), so one listener
//! serves them all: a `DatabaseProvider` with `endpoint: http://127.0.0.1:8470/infrai`
//! talks to the emulated infrai API. The emulators follow the documents in
//! `vendor-apis/`: paths, methods, bodies, error shapes and auth.
//!
//! State lives in memory and, when served with a state file
//! ([`Emulator::with_state_file`]), survives restarts ([`persist`]).
//!
//! With a PostgreSQL server ([`EmulatorConfig::with_real_databases`], the
//! `--emulator-postgres` flag), every emulated project, branch and restore is
//! also a real database on it, and the URIs the emulators hand out connect
//! ([`real`]).

pub mod base;
pub mod vendors;

pub use base::{documented, faults, persist, real};
pub use vendors::{capydb, db9, infrai, infrai_byok, supabase};

use base::scaffold;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use tokio::net::TcpListener;

/// API key the emulated infrai API accepts unless told otherwise.
pub const DEFAULT_INFRAI_API_KEY: &str = "ifr_pk_proj_dbops_emulator";
/// Access token the emulated Supabase Management API accepts unless told otherwise.
pub const DEFAULT_SUPABASE_API_KEY: &str = "sbp_dbops_emulator";
/// API key the emulated DB9 API accepts unless told otherwise.
pub const DEFAULT_DB9_API_KEY: &str = "db9_dbops_emulator";
/// API key the emulated CapyDB API accepts unless told otherwise (its documented `capy_live_` form).
pub const DEFAULT_CAPYDB_API_KEY: &str = "capy_live_dbops_emulator";
/// Default listen address of `dbops emulator` and of the emulator inside `dbops run`.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8470";

/// The host name of the chart's emulator Service (release `dbops` in
/// `dbops-system`). `dbops run` sends requests for it to its built-in
/// emulator, so deploy/examples/ name one endpoint that works in a cluster
/// with the chart and out of one with `dbops run`.
pub const IN_CLUSTER_HOST: &str = "dbops-emulator.dbops-system.svc";

/// Settings of an emulator instance: the bearer keys each API accepts, by
/// API name (`infrai`, `supabase`, `db9`, `capydb`), and the PostgreSQL server
/// the emulated vendors make real databases on, if any.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EmulatorConfig {
    api_keys: BTreeMap<&'static str, Vec<String>>,
    real: Option<Arc<real::RealDatabases>>,
    faults_access: faults::FaultsAccess,
}

impl Default for EmulatorConfig {
    /// Every API accepts its documented-form default key, and its faults
    /// are set only with that key ([`faults::FaultsAccess::ApiKeys`]).
    fn default() -> Self {
        Self {
            api_keys: APIS
                .iter()
                .map(|api| (api.name, vec![api.default_key.to_string()]))
                .collect(),
            real: None,
            faults_access: faults::FaultsAccess::default(),
        }
    }
}

/// An `API=KEY` setting naming an API the emulator does not serve.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("the emulator serves no API named {0:?} (it serves {list})", list = api_names().join(", "))]
pub struct UnknownApi(pub String);

/// The names of the emulated APIs, in serving order.
pub fn api_names() -> Vec<&'static str> {
    APIS.iter().map(|api| api.name).collect()
}

impl EmulatorConfig {
    /// The bearer keys `api` accepts.
    pub fn keys(&self, api: &str) -> Vec<String> {
        self.api_keys.get(api).cloned().unwrap_or_default()
    }

    /// `self` with `api` accepting exactly `keys`.
    pub fn with_keys<S: Into<String>>(
        mut self,
        api: &str,
        keys: impl IntoIterator<Item = S>,
    ) -> Result<Self, UnknownApi> {
        let name = APIS
            .iter()
            .map(|a| a.name)
            .find(|name| *name == api)
            .ok_or_else(|| UnknownApi(api.to_string()))?;
        self.api_keys
            .insert(name, keys.into_iter().map(Into::into).collect());
        Ok(self)
    }

    /// `self` with every emulated vendor making real databases on `server`
    /// for its projects, branches and restores (see [`real`]).
    pub fn with_real_databases(mut self, server: Arc<real::RealDatabases>) -> Self {
        self.real = Some(server);
        self
    }

    /// The server the emulated vendors make real databases on, if any.
    pub fn real_databases(&self) -> Option<&Arc<real::RealDatabases>> {
        self.real.as_ref()
    }

    /// `self` with `PUT /_faults/<api>` open to whom `access` says.
    pub fn with_faults_access(mut self, access: faults::FaultsAccess) -> Self {
        self.faults_access = access;
        self
    }

    /// Who may set faults with `PUT /_faults/<api>`.
    pub fn faults_access(&self) -> &faults::FaultsAccess {
        &self.faults_access
    }
}

/// One emulated vendor API, as the emulator serves it.
struct Api {
    /// Its path prefix (`/infrai`), its key in [`Emulator::faults`] and in
    /// [`EmulatorConfig`].
    name: &'static str,
    /// The key it accepts unless told otherwise.
    default_key: &'static str,
    /// The API in an emulator: its routes and its parts of the state file.
    of: fn(&Emulator) -> Arc<dyn scaffold::Served>,
    /// The documents it follows, as extracted ([`documented`]).
    documents: &'static [&'static str],
}

impl Api {
    const fn new(
        name: &'static str,
        default_key: &'static str,
        of: fn(&Emulator) -> Arc<dyn scaffold::Served>,
        documents: &'static [&'static str],
    ) -> Self {
        Self {
            name,
            default_key,
            of,
            documents,
        }
    }
}

/// Every emulated vendor API. The router, fault injection, the keys and the
/// state file all go through this list: a new vendor is its module, a line
/// here, and its field in [`Emulator`].
const APIS: &[Api] = &[
    Api::new(
        "infrai",
        DEFAULT_INFRAI_API_KEY,
        |e| e.infrai.clone(),
        &[documented::INFRAI_DB, documented::INFRAI_BYOK],
    ),
    Api::new(
        "supabase",
        DEFAULT_SUPABASE_API_KEY,
        |e| e.supabase.clone(),
        &[documented::SUPABASE],
    ),
    Api::new(
        "db9",
        DEFAULT_DB9_API_KEY,
        |e| e.db9.clone(),
        &[documented::DB9],
    ),
    Api::new(
        "capydb",
        DEFAULT_CAPYDB_API_KEY,
        |e| e.capydb.clone(),
        &[documented::CAPYDB],
    ),
];

/// The state of every emulated API; cloning shares it.
#[derive(Clone)]
pub struct Emulator {
    /// Injected faults, by API name (`infrai`, `supabase`, `db9`, `capydb`).
    pub faults: Arc<std::collections::BTreeMap<&'static str, Arc<faults::Faults>>>,
    /// Strict mode, by API name: only documented fields are served.
    strict: Arc<BTreeMap<&'static str, Arc<documented::Strict>>>,
    pub infrai: Arc<infrai::InfraiEmulator>,
    pub supabase: Arc<supabase::SupabaseEmulator>,
    pub db9: Arc<db9::Db9Emulator>,
    pub capydb: Arc<capydb::CapyDbEmulator>,
    /// The `PUT /_faults/<api>` route: every API's faults and who may set them.
    faults_route: faults::FaultsRoute,
    /// Saves the state after every change, when the emulator has a state file.
    persister: Option<Arc<persist::Persister>>,
}

impl Emulator {
    pub fn new(config: &EmulatorConfig) -> Self {
        let all_faults: Arc<BTreeMap<_, _>> = Arc::new(
            APIS.iter()
                .map(|api| (api.name, Arc::new(faults::Faults::default())))
                .collect(),
        );
        Self {
            faults_route: faults::FaultsRoute::new(
                all_faults.clone(),
                &config.faults_access,
                |api| config.keys(api),
            ),
            faults: all_faults,
            strict: Arc::new(BTreeMap::new()),
            infrai: Arc::new(
                infrai::InfraiEmulator::new(config.keys("infrai")).with_real(config.real.clone()),
            ),
            supabase: Arc::new(
                supabase::SupabaseEmulator::new(config.keys("supabase"))
                    .with_real(config.real.clone()),
            ),
            db9: Arc::new(db9::Db9Emulator::new(config.keys("db9")).with_real(config.real.clone())),
            capydb: Arc::new(
                capydb::CapyDbEmulator::new(config.keys("capydb")).with_real(config.real.clone()),
            ),
            persister: None,
        }
        .with_contracts()
    }

    /// Builds each API's strict mode (off) from its documents and its
    /// client's assumptions.
    fn with_contracts(mut self) -> Self {
        let strict = APIS
            .iter()
            .map(|api| {
                let contract = documented::Contract::new(
                    api.documents,
                    crate::providers::contract::of(api.name),
                );
                (
                    api.name,
                    documented::Strict::new(contract, (api.of)(&self).error_body()),
                )
            })
            .collect();
        self.strict = Arc::new(strict);
        self
    }

    /// Documented fields the emulated APIs' answers lacked while in strict
    /// mode, as `api: METHOD path: field`. Empty for faithful emulators.
    pub fn documented_gaps(&self) -> Vec<String> {
        self.strict
            .iter()
            .flat_map(|(api, strict)| {
                strict
                    .gaps()
                    .into_iter()
                    .map(move |gap| format!("{api}: {gap}"))
            })
            .collect()
    }

    /// Switches strict mode on or off for every API: each answer carries only
    /// the fields its document shows (plus the documented assumptions of the
    /// dbops clients), and endpoints the documents do not list answer 404.
    pub fn set_strict(&self, on: bool) {
        for strict in self.strict.values() {
            strict.set(on);
        }
        self.db9.set_strict(on);
    }

    /// An emulator whose state is loaded from, and saved after every change
    /// to, the file at `path` (locked for this process). Needs a Tokio runtime.
    pub fn with_state_file(
        config: &EmulatorConfig,
        path: &std::path::Path,
    ) -> Result<Self, persist::StateFileError> {
        let mut emulator = Self::new(config);
        let apis: Vec<_> = emulator.apis().map(|(_, api)| api).collect();
        let file = persist::StateFile::open(path, &apis)?;
        emulator.persister = Some(persist::Persister::start(apis, file));
        Ok(emulator)
    }

    /// Every vendor API this emulator serves, by name.
    fn apis(&self) -> impl Iterator<Item = (&'static str, Arc<dyn scaffold::Served>)> + '_ {
        APIS.iter().map(|api| (api.name, (api.of)(self)))
    }

    /// The fault injection of one API (`infrai`, `supabase`, `db9`, `capydb`).
    pub fn faults_of(&self, api: &str) -> Option<Arc<faults::Faults>> {
        self.faults.get(api).cloned()
    }

    /// The HTTP routes of all emulated APIs.
    pub fn router(&self) -> Router {
        let mut router = Router::new();
        for (name, api) in self.apis() {
            let error_body = api.error_body();
            let mut routes = api.router();
            if let Some(strict) = self.strict.get(name) {
                routes = routes.layer(axum::middleware::from_fn_with_state(
                    strict.clone(),
                    documented::enforce,
                ));
            }
            if let Some(faults) = self.faults.get(name) {
                let injection = faults::Injection {
                    faults: faults.clone(),
                    error_body,
                };
                routes = routes.layer(axum::middleware::from_fn_with_state(
                    injection,
                    faults::inject,
                ));
            }
            router = router.nest(&format!("/{name}"), routes);
        }
        let router = router.route(
            "/_faults/{api}",
            axum::routing::put(faults::set).with_state(self.faults_route.clone()),
        );
        match &self.persister {
            Some(persister) => router.layer(axum::middleware::from_fn_with_state(
                persister.clone(),
                persist::commit,
            )),
            None => router,
        }
    }

    /// Serves on `listener` until the future is dropped.
    pub async fn serve(self, listener: TcpListener) -> std::io::Result<()> {
        axum::serve(listener, self.router()).await
    }

    /// Binds `addr` and serves in a background task; returns the bound address.
    pub async fn spawn(
        self,
        addr: &str,
    ) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
        let listener = TcpListener::bind(addr).await?;
        let local = listener.local_addr()?;
        let handle = tokio::spawn(async move {
            if let Err(error) = self.serve(listener).await {
                tracing::error!(%error, "emulator stopped");
            }
        });
        Ok((local, handle))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_set_per_api_and_unknown_apis_are_refused() {
        let config = EmulatorConfig::default();
        assert_eq!(config.keys("db9"), [DEFAULT_DB9_API_KEY]);
        let config = config.with_keys("db9", ["a", "b"]).unwrap();
        assert_eq!(config.keys("db9"), ["a", "b"]);
        assert_eq!(config.keys("infrai"), [DEFAULT_INFRAI_API_KEY]);
        let error = EmulatorConfig::default()
            .with_keys("nope", ["k"])
            .unwrap_err();
        assert_eq!(
            error.to_string(),
            "the emulator serves no API named \"nope\" (it serves infrai, supabase, db9, capydb)"
        );
    }

    #[test]
    fn every_api_has_its_faults_and_distinct_state_file_keys() {
        let emulator = Emulator::new(&EmulatorConfig::default());
        let names: Vec<&str> = emulator.faults.keys().copied().collect();
        assert_eq!(names, ["capydb", "db9", "infrai", "supabase"]);
        let mut keys: Vec<&str> = emulator
            .apis()
            .flat_map(|(_, api)| {
                api.sections()
                    .into_iter()
                    .map(|(key, _)| key)
                    .collect::<Vec<_>>()
            })
            .collect();
        keys.sort_unstable();
        let before = keys.len();
        keys.dedup();
        assert_eq!(before, keys.len(), "a state file key is used twice");
        assert_eq!(keys, ["capydb", "db9", "infrai", "infrai_byok", "supabase"]);
    }

    /// A default emulator on a free port, and an HTTP client.
    async fn serving() -> (
        Emulator,
        SocketAddr,
        tokio::task::JoinHandle<()>,
        reqwest::Client,
    ) {
        crate::providers::http::ensure_crypto_provider();
        let emulator = Emulator::new(&EmulatorConfig::default());
        let (addr, server) = emulator.clone().spawn("127.0.0.1:0").await.unwrap();
        (emulator, addr, server, reqwest::Client::new())
    }

    #[tokio::test]
    async fn every_api_is_served_under_its_name_with_its_faults() {
        let (emulator, addr, server, http) = serving().await;
        // Each API answers (its own 401, unauthenticated) under its prefix.
        for (prefix, body) in [
            (
                "infrai",
                r#"{"error":{"code":"UNAUTHORIZED","message":"missing Authorization: Bearer header"}}"#,
            ),
            ("supabase", r#"{"message":"Unauthorized"}"#),
            (
                "db9",
                r#"{"message":"missing Authorization: Bearer token"}"#,
            ),
            (
                "capydb",
                r#"{"error":"missing Authorization: Bearer header"}"#,
            ),
        ] {
            let response = http
                .get(format!("http://{addr}/{prefix}/v1/anything"))
                .send()
                .await
                .unwrap();
            assert_eq!(response.status().as_u16(), 401, "{prefix}");
            assert_eq!(response.text().await.unwrap(), body, "{prefix}");
        }
        // Faults are set per API (with its key), and only for APIs the emulator has.
        let set = |api: &str| {
            http.put(format!("http://{addr}/_faults/{api}"))
                .bearer_auth(DEFAULT_DB9_API_KEY)
                .json(&serde_json::json!({ "latencyMs": 1 }))
                .send()
        };
        assert_eq!(set("db9").await.unwrap().status().as_u16(), 204);
        assert_eq!(set("nope").await.unwrap().status().as_u16(), 404);
        let db9 = emulator.faults_of("db9").unwrap();
        assert_eq!(db9.config().latency_ms, 1);
        assert_eq!(emulator.faults_of("infrai").unwrap().config().latency_ms, 0);
        // Requests are counted by the faults of their own API.
        assert_eq!(db9.requests(), 1);
        assert_eq!(emulator.faults_of("capydb").unwrap().requests(), 1);
        server.abort();
    }

    /// `PUT /_faults/<api>` on an emulator with `access`: the status of an
    /// unauthenticated request, and of one with each of `keys`, then the
    /// latency each left on that API (0: not set).
    async fn faults_put(
        access: faults::FaultsAccess,
        api: &str,
        keys: &[Option<&str>],
    ) -> Vec<(u16, u64)> {
        crate::providers::http::ensure_crypto_provider();
        let emulator = Emulator::new(&EmulatorConfig::default().with_faults_access(access));
        let (addr, server) = emulator.clone().spawn("127.0.0.1:0").await.unwrap();
        let http = reqwest::Client::new();
        let mut out = Vec::new();
        for key in keys {
            emulator.faults_of(api).unwrap().clear();
            let mut request = http
                .put(format!("http://{addr}/_faults/{api}"))
                .json(&serde_json::json!({ "latencyMs": 3 }));
            if let Some(key) = key {
                request = request.bearer_auth(key);
            }
            let status = request.send().await.unwrap().status().as_u16();
            out.push((status, emulator.faults_of(api).unwrap().config().latency_ms));
        }
        server.abort();
        out
    }

    #[tokio::test]
    async fn faults_are_set_only_with_the_apis_key_by_default() {
        assert_eq!(
            EmulatorConfig::default().faults_access(),
            &faults::FaultsAccess::ApiKeys
        );
        let results = faults_put(
            faults::FaultsAccess::ApiKeys,
            "infrai",
            &[
                None,
                Some("wrong"),
                Some(DEFAULT_DB9_API_KEY), // another API's key
                Some(DEFAULT_INFRAI_API_KEY),
            ],
        )
        .await;
        assert_eq!(results, [(401, 0), (403, 0), (403, 0), (204, 3)]);
    }

    #[tokio::test]
    async fn a_faults_key_replaces_the_api_keys() {
        let results = faults_put(
            faults::FaultsAccess::Keys(vec!["faults-secret".into()]),
            "capydb",
            &[
                None,
                Some(DEFAULT_CAPYDB_API_KEY),
                Some("faults-secre"),
                Some("faults-secret"),
            ],
        )
        .await;
        assert_eq!(results, [(401, 0), (403, 0), (403, 0), (204, 3)]);
    }

    #[tokio::test]
    async fn open_faults_need_no_key() {
        let results = faults_put(faults::FaultsAccess::Open, "supabase", &[None]).await;
        assert_eq!(results, [(204, 3)]);
    }

    #[tokio::test]
    async fn an_unauthenticated_faults_request_says_how_to_authenticate() {
        crate::providers::http::ensure_crypto_provider();
        let (_, addr, server, http) = serving().await;
        let response = http
            .put(format!("http://{addr}/_faults/infrai"))
            .body("not json")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 401);
        assert!(
            response.headers()["www-authenticate"]
                .to_str()
                .unwrap()
                .starts_with("Bearer")
        );
        // Authenticated, the body is checked.
        let response = http
            .put(format!("http://{addr}/_faults/infrai"))
            .bearer_auth(DEFAULT_INFRAI_API_KEY)
            .body("not json")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 400);
        server.abort();
    }

    #[tokio::test]
    async fn an_injected_fault_answers_in_the_apis_own_error_body() {
        let (emulator, addr, server, http) = serving().await;
        for (prefix, body) in [
            (
                "infrai",
                r#"{"error":{"code":"RATE_LIMITED","message":"rate limited (injected)"}}"#,
            ),
            ("supabase", r#"{"message":"rate limited (injected)"}"#),
            ("db9", r#"{"message":"rate limited (injected)"}"#),
            ("capydb", r#"{"error":"rate limited (injected)"}"#),
        ] {
            emulator
                .faults_of(prefix)
                .unwrap()
                .set(faults::FaultConfig {
                    rate_limit: 1.0,
                    retry_after_seconds: 2,
                    ..Default::default()
                });
            let response = http
                .get(format!("http://{addr}/{prefix}/v1/anything"))
                .send()
                .await
                .unwrap();
            assert_eq!(response.status().as_u16(), 429, "{prefix}");
            assert_eq!(response.headers()["retry-after"], "2", "{prefix}");
            assert_eq!(response.text().await.unwrap(), body, "{prefix}");
        }
        server.abort();
    }
}
