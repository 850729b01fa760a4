//! End-to-end tests against a real Kubernetes API server.
//!
//! They need a cluster: point `KUBECONFIG` at one and run
//! `cargo test --test e2e -- --ignored --test-threads=1` (`kubectl` on `PATH`,
//! or named by `KUBECTL`). Without a cluster they are reported as ignored by
//! a plain `cargo test`, and fail with an explicit "DID NOT RUN" when asked for
//! with `--ignored`, so a missing cluster never counts as a pass.
//!
//! Each test is hermetic: its own namespace, its own provider names, the
//! operator's built-in emulator on a free port with its own state file, and a
//! guard that deletes everything it made (and, should the operator be gone,
//! strips finalizers) even when the test fails. Tests apply the project's own
//! example YAML (`deploy/examples/`), rewritten into that namespace.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use dbops::api::v1alpha1::{
    ByokCredential, DatabaseBranch, DatabaseProject, DatabaseProvider, DatabaseRole,
    DatabaseSnapshot, DatabaseSnapshotSchedule,
};
use dbops::controllers::{Managed, conditions};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;
use kube::api::{Api, ListParams, PostParams};
use serde::Deserialize;
use serde_json::{Value, json};

const EMULATOR_PORT_IN_EXAMPLES: &str = "http://dbops-emulator.dbops-system.svc:8470";
const INFRAI_KEY: &str = "ifr_pk_proj_dbops_emulator";

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn require_cluster() {
    if std::env::var_os("KUBECONFIG").is_none() {
        panic!(
            "e2e DID NOT RUN: KUBECONFIG is not set. These tests need a real cluster; \
             point KUBECONFIG at one and run `cargo test --test e2e -- --ignored --test-threads=1`."
        );
    }
    dbops::providers::http::ensure_crypto_provider();
}

fn kubectl_bin() -> String {
    std::env::var("KUBECTL").unwrap_or_else(|_| "kubectl".to_string())
}

/// Runs kubectl; `Err(stderr)` when it fails.
fn try_kubectl(args: &[&str]) -> Result<String, String> {
    let out = Command::new(kubectl_bin())
        .args(args)
        .current_dir(repo())
        .output()
        .expect("kubectl is installed (or named by KUBECTL)");
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

fn kubectl(args: &[&str]) -> String {
    try_kubectl(args).unwrap_or_else(|e| panic!("kubectl {}: {e}", args.join(" ")))
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The tests share the CRDs (one of them loosens a schema for a moment), so
/// they run one at a time.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn install_crds() {
    kubectl(&["apply", "-f", "crds/"]);
    kubectl(&[
        "wait",
        "--for",
        "condition=established",
        "--timeout=60s",
        "-f",
        "crds/",
    ]);
}

/// One test's world: a namespace, a prefix for cluster-scoped names, an
/// emulator port and a scratch directory. Dropping it deletes what the test
/// made, waiting for the operator's cleanup, and strips finalizers if that
/// does not finish (say, because the test failed with the operator gone).
struct TestEnv {
    ns: String,
    emulator_port: u16,
    dir: tempfile::TempDir,
    client: kube::Client,
}

impl TestEnv {
    async fn new(name: &str) -> Self {
        require_cluster();
        install_crds();
        let suffix: String = format!("{:08x}", rand::random::<u32>());
        let ns = format!("e2e-{name}-{suffix}");
        kubectl(&["create", "namespace", &ns]);
        let client = kube::Client::try_default()
            .await
            .expect("cluster reachable");
        Self {
            ns,
            emulator_port: free_port(),
            dir: tempfile::tempdir().unwrap(),
            client,
        }
    }

    fn emulator(&self) -> String {
        format!("http://127.0.0.1:{}", self.emulator_port)
    }

    /// Name of the test's copy of provider `name` from the examples.
    fn provider(&self, name: &str) -> String {
        format!("{}-{name}", self.ns)
    }

    fn api<K>(&self) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
    {
        Api::namespaced(self.client.clone(), &self.ns)
    }

    /// Rewrites example files into this test's namespace, providers and
    /// emulator, into `<dir>/<subdir>/`; returns that directory.
    fn examples(&self, subdir: &str, files: &[&str]) -> PathBuf {
        let out = self.dir.path().join(subdir);
        std::fs::create_dir_all(&out).unwrap();
        for file in files {
            let text = std::fs::read_to_string(repo().join(file)).unwrap();
            let mut docs = Vec::new();
            for doc in serde_yaml_ng::Deserializer::from_str(&text) {
                let mut value = Value::deserialize(doc).unwrap();
                if value.is_null() {
                    continue;
                }
                self.rewrite(&mut value);
                docs.push(serde_yaml_ng::to_string(&value).unwrap());
            }
            let name = Path::new(file).file_name().unwrap();
            std::fs::write(out.join(name), docs.join("---\n")).unwrap();
        }
        out
    }

    fn rewrite(&self, value: &mut Value) {
        let kind = value["kind"].as_str().unwrap_or_default().to_string();
        match kind.as_str() {
            "DatabaseProvider" => {
                let name = value["metadata"]["name"].as_str().unwrap().to_string();
                value["metadata"]["name"] = json!(self.provider(&name));
                value["spec"]["credentialsSecretRef"]["namespace"] = json!(self.ns);
                if let Some(endpoint) = value["spec"]["endpoint"].as_str() {
                    value["spec"]["endpoint"] =
                        json!(endpoint.replace(EMULATOR_PORT_IN_EXAMPLES, &self.emulator()));
                }
            }
            _ => {
                value["metadata"]["namespace"] = json!(self.ns);
                if matches!(kind.as_str(), "DatabaseProject" | "ByokCredential") {
                    let name = value["spec"]["providerRef"]["name"]
                        .as_str()
                        .unwrap_or("default")
                        .to_string();
                    value["spec"]["providerRef"] = json!({ "name": self.provider(&name) });
                }
            }
        }
    }

    /// Every Event and status message in the namespace: one sentence each,
    /// nothing that looks like Rust `Debug` output or a raw API error.
    fn assert_messages_are_for_people(&self) {
        assert_messages_are_for_people(&[&self.ns]);
    }
}

/// Every Event and status message in `namespaces`: one sentence each,
/// nothing that looks like Rust `Debug` output or a raw API error.
fn assert_messages_are_for_people(namespaces: &[&str]) {
    let mut messages = Vec::new();
    for ns in namespaces {
        let events: Value = serde_json::from_str(&kubectl(&[
            "get",
            "events.events.k8s.io",
            "-n",
            ns,
            "-o",
            "json",
        ]))
        .unwrap();
        for e in events["items"].as_array().unwrap() {
            messages.push(e["note"].as_str().unwrap_or_default().to_string());
        }
        for kind in [
            "databaseprojects",
            "databasebranches",
            "databasesnapshots",
            "byokcredentials",
            "databaseroles",
            "databasesnapshotschedules",
        ] {
            let list: Value =
                serde_json::from_str(&kubectl(&["get", kind, "-n", ns, "-o", "json"])).unwrap();
            for item in list["items"].as_array().unwrap() {
                for c in item["status"]["conditions"]
                    .as_array()
                    .into_iter()
                    .flatten()
                {
                    messages.push(c["message"].as_str().unwrap_or_default().to_string());
                }
            }
        }
    }
    assert!(!messages.is_empty());
    for m in &messages {
        for debug in [
            "Status {",
            "Some(",
            "ApiError",
            "ErrorResponse",
            "{ ",
            "\\n",
            "Error(\"",
        ] {
            assert!(!m.contains(debug), "not for people ({debug:?}): {m}");
        }
        assert!(!m.contains('\n'), "one line: {m}");
    }
    println!("e2e: {} Event and status messages checked", messages.len());
}

impl TestEnv {
    /// Deletes the namespace and the test's providers; true if all went
    /// within `timeout`.
    fn delete_all(&self, timeout: Duration) -> bool {
        let _ = try_kubectl(&["delete", "namespace", &self.ns, "--wait=false"]);
        let _ = self.providers().iter().try_for_each(|p| {
            try_kubectl(&["delete", "databaseprovider", p, "--wait=false"]).map(drop)
        });
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            let ns_gone = try_kubectl(&["get", "namespace", &self.ns]).is_err();
            if ns_gone && self.providers().is_empty() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        false
    }

    fn providers(&self) -> Vec<String> {
        try_kubectl(&["get", "databaseproviders", "-o", "name"])
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.strip_prefix("databaseprovider.dbops.dev/"))
            .filter(|n| n.starts_with(&self.ns))
            .map(str::to_string)
            .collect()
    }

    fn strip_finalizers(&self) {
        let null = r#"{"metadata":{"finalizers":null}}"#;
        for kind in [
            "databaseprojects",
            "databasebranches",
            "databasesnapshots",
            "byokcredentials",
            "secrets",
        ] {
            for name in try_kubectl(&["get", kind, "-n", &self.ns, "-o", "name"])
                .unwrap_or_default()
                .lines()
            {
                let _ =
                    try_kubectl(&["patch", name, "-n", &self.ns, "--type", "merge", "-p", null]);
            }
        }
        for p in self.providers() {
            let _ = try_kubectl(&[
                "patch",
                "databaseprovider",
                &p,
                "--type",
                "merge",
                "-p",
                null,
            ]);
        }
    }
}

impl Drop for TestEnv {
    fn drop(&mut self) {
        if !self.delete_all(Duration::from_secs(30)) {
            eprintln!(
                "e2e cleanup: {} did not finish deleting; removing finalizers",
                self.ns
            );
            self.strip_finalizers();
            let _ = self.delete_all(Duration::from_secs(30));
        }
        // A test that loosened a CRD puts it back even when it failed.
        let _ = try_kubectl(&["replace", "-f", "crds/databaseprojects.dbops.dev.yaml"]);
    }
}

/// A `dbops run` process whose log goes to a file.
struct Operator {
    child: Child,
    log: PathBuf,
    metrics: u16,
}

impl Operator {
    fn start(env: &TestEnv, tag: &str, extra: &[&str]) -> Self {
        let log = env.dir.path().join(format!("operator-{tag}.log"));
        let metrics = free_port();
        let emulator_listen = format!("127.0.0.1:{}", env.emulator_port);
        let state = env.dir.path().join("emulator-state.json");
        // Logs go to stdout; everything the process prints lands in one file.
        let out = std::fs::File::create(&log).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_dbops"))
            .args(["run", "--metrics-listen", &format!("127.0.0.1:{metrics}")])
            .args([
                "--resync-interval",
                "30s",
                "--emulator-listen",
                &emulator_listen,
            ])
            .arg("--emulator-state")
            .arg(&state)
            .args(extra)
            .env("RUST_LOG", "info")
            .env("POD_NAME", format!("{}-{tag}", env.ns))
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .expect("dbops binary starts");
        Self {
            child,
            log,
            metrics,
        }
    }

    fn log_of(env: &TestEnv, tag: &str) -> String {
        std::fs::read_to_string(env.dir.path().join(format!("operator-{tag}.log")))
            .unwrap_or_default()
    }

    fn log(&self) -> String {
        let mut text = String::new();
        if let Ok(mut f) = std::fs::File::open(&self.log) {
            let _ = f.read_to_string(&mut text);
        }
        text
    }

    async fn wait_ready(&self) {
        let url = format!("http://127.0.0.1:{}/readyz", self.metrics);
        wait_until("/readyz 200", Duration::from_secs(60), || {
            let url = url.clone();
            async move {
                let r = reqwest::get(url).await.ok()?;
                (r.status().as_u16() == 200).then_some(())
            }
        })
        .await;
    }

    fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &self.child.id().to_string()])
            .status()
            .expect("kill(1) is installed");
        assert!(status.success());
    }

    /// Sends `signal` and waits (without blocking the runtime, which may
    /// serve the vendor emulator) for a clean exit; how long it took.
    async fn stop_with(&mut self, signal: &str) -> Duration {
        let sent = Instant::now();
        self.signal(signal);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                assert!(
                    status.success(),
                    "the operator exited with {status} on SIG{signal}"
                );
                return sent.elapsed();
            }
            assert!(
                sent.elapsed() < Duration::from_secs(30),
                "the operator ignored SIG{signal} for 30 s"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn terminate(&mut self) -> Duration {
        self.stop_with("TERM").await
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        self.kill();
    }
}

async fn wait_until<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn is_ready<K: Managed>(k: &K) -> bool {
    k.is_ready()
        && k.status().is_some_and(|s| {
            K::conditions(s)
                .get("Ready")
                .is_some_and(|c| c.observed_generation == k.meta().generation)
        })
}

async fn wait_ready<K>(env: &TestEnv, name: &str, timeout: Duration) -> K
where
    K: Managed + kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
{
    let api: Api<K> = env.api();
    wait_until(
        &format!("{} {name} Ready", K::kind(&())),
        timeout,
        || async { api.get_opt(name).await.ok().flatten().filter(is_ready) },
    )
    .await
}

/// Every `K` in the namespace, as `Kind/name`, with whether it is Ready.
async fn readiness_of<K>(env: &TestEnv) -> Vec<(String, bool)>
where
    K: Managed + kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
{
    let list = env.api::<K>().list(&ListParams::default()).await.unwrap();
    list.items
        .iter()
        .map(|k| {
            (
                format!(
                    "{}/{}",
                    K::kind(&()),
                    k.meta().name.clone().unwrap_or_default()
                ),
                k.is_ready(),
            )
        })
        .collect()
}

/// Every dbops object in the namespace, by kind and name, with whether it is Ready.
async fn readiness(env: &TestEnv) -> Vec<(String, bool)> {
    let mut out = readiness_of::<DatabaseProject>(env).await;
    out.extend(readiness_of::<DatabaseBranch>(env).await);
    out.extend(readiness_of::<DatabaseSnapshot>(env).await);
    out.extend(readiness_of::<ByokCredential>(env).await);
    out.sort();
    out
}

async fn wait_all_ready(env: &TestEnv, expected: usize, timeout: Duration) {
    wait_until("every object Ready", timeout, || async {
        let all = readiness(env).await;
        (all.len() == expected && all.iter().all(|(_, r)| *r)).then_some(())
    })
    .await;
}

async fn vendor_status(base: &str, path: &str, key: &str) -> u16 {
    reqwest::Client::new()
        .get(format!("{base}{path}"))
        .bearer_auth(key)
        .send()
        .await
        .map(|r| r.status().as_u16())
        .unwrap_or(0)
}

async fn infrai_project_count(env: &TestEnv) -> usize {
    let body: Value = reqwest::Client::new()
        .get(format!(
            "{}/infrai/v1/db/project/list?limit=100",
            env.emulator()
        ))
        .bearer_auth(INFRAI_KEY)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    body["items"].as_array().map(Vec::len).unwrap_or(0)
}

async fn secret_value(env: &TestEnv, name: &str, key: &str) -> String {
    let secret = env.api::<Secret>().get(name).await.expect("Secret written");
    String::from_utf8(secret.data.expect("data")[key].0.clone()).unwrap()
}

/// The usual start of a test: its turn, a fresh environment, the operator,
/// and `files` applied. Bind it as `let (_turn, operator, env, dir) = ...`:
/// bindings drop in reverse order, so the environment is cleaned up while the
/// operator still runs.
async fn started(
    name: &str,
    files: &[&str],
) -> (
    tokio::sync::MutexGuard<'static, ()>,
    Operator,
    TestEnv,
    PathBuf,
) {
    let turn = ONE_AT_A_TIME.lock().await;
    let env = TestEnv::new(name).await;
    let operator = Operator::start(&env, "1", &[]);
    let dir = env.examples("m", files);
    kubectl(&["apply", "-f", dir.to_str().unwrap()]);
    (turn, operator, env, dir)
}

const QUICKSTART: &[&str] = &[
    "deploy/examples/00-provider.yaml",
    "deploy/examples/10-project.yaml",
    "deploy/examples/20-preview-branch.yaml",
    "deploy/examples/30-snapshot-restore.yaml",
    "deploy/examples/40-byok.yaml",
];
/// Projects (3), branch, snapshot and credential of the quick start.
const QUICKSTART_OBJECTS: usize = 6;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a Kubernetes cluster: set KUBECONFIG and run with --ignored"]
async fn quickstart_project_becomes_ready_and_is_deleted_at_the_vendor() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let _operator;
    let env = TestEnv::new("quickstart").await;
    _operator = Operator::start(&env, "1", &[]);
    let dir = env.examples("m", &QUICKSTART[..2]);
    let applied = Instant::now();
    kubectl(&["apply", "-f", dir.to_str().unwrap()]);
    let project: DatabaseProject = wait_ready(&env, "quickstart", Duration::from_secs(60)).await;
    println!(
        "e2e: apply-to-Ready of DatabaseProject quickstart: {:?}",
        applied.elapsed()
    );
    let uri = secret_value(&env, "quickstart-db", "uri").await;
    assert!(uri.starts_with("postgresql://"));
    let id = project.status.unwrap().project_id.unwrap();
    let path = format!("/infrai/v1/db/project/get/{id}");
    assert_eq!(vendor_status(&env.emulator(), &path, INFRAI_KEY).await, 200);

    let file = dir.join("10-project.yaml");
    kubectl(&["delete", "-f", file.to_str().unwrap(), "--timeout=60s"]);
    assert_eq!(vendor_status(&env.emulator(), &path, INFRAI_KEY).await, 404);
    env.assert_messages_are_for_people();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a Kubernetes cluster: set KUBECONFIG and run with --ignored"]
async fn an_expiring_branch_deletes_itself_and_its_vendor_branch() {
    let (_turn, _operator, env, _dir) = started("expire", &QUICKSTART[..2]).await;
    wait_ready::<DatabaseProject>(&env, "quickstart", Duration::from_secs(60)).await;

    // The preview branch example, expiring ten seconds after its creation.
    let file = env
        .examples("expiring", &["deploy/examples/20-preview-branch.yaml"])
        .join("20-preview-branch.yaml");
    let mut branch: Value =
        serde_yaml_ng::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    branch["spec"]["expireAfter"] = json!("10s");
    std::fs::write(&file, serde_yaml_ng::to_string(&branch).unwrap()).unwrap();
    kubectl(&["apply", "-f", file.to_str().unwrap()]);
    let ready: DatabaseBranch =
        wait_ready(&env, "quickstart-preview", Duration::from_secs(10)).await;
    let created = ready.metadata.creation_timestamp.as_ref().unwrap().0;
    let status = ready.status.clone().unwrap();
    let expires_at = status.expires_at.expect("status.expiresAt").0;
    assert_eq!(
        expires_at,
        created + k8s_openapi::jiff::SignedDuration::from_secs(10)
    );
    let id = status.branch_id.unwrap();
    let vendor_branch = format!("/infrai/v1/db/branch/get/{id}");
    assert_eq!(
        vendor_status(&env.emulator(), &vendor_branch, INFRAI_KEY).await,
        200
    );
    // kubectl shows when it expires (a string column: a date one would say <invalid>).
    let table = kubectl(&["get", "databasebranch", "quickstart-preview", "-n", &env.ns]);
    assert!(table.contains("EXPIRES"), "{table}");
    assert!(table.contains(&expires_at.to_string()), "{table}");
    assert!(!table.contains("<invalid>"), "{table}");

    // Nobody touches it: it goes by itself, then its vendor branch.
    let branches = env.api::<DatabaseBranch>();
    wait_until(
        "the branch gone by itself",
        Duration::from_secs(40),
        || async {
            branches
                .get_opt("quickstart-preview")
                .await
                .unwrap()
                .is_none()
                .then_some(())
        },
    )
    .await;
    let gone = k8s_openapi::jiff::Timestamp::now();
    assert!(gone >= expires_at, "not before its expiry");
    println!(
        "e2e: the expiring branch was gone {:?} after its expiry",
        Duration::try_from(gone.duration_since(expires_at)).unwrap_or_default()
    );
    assert_eq!(
        vendor_status(&env.emulator(), &vendor_branch, INFRAI_KEY).await,
        404
    );
    let events: Value = serde_json::from_str(&kubectl(&[
        "get",
        "events.events.k8s.io",
        "-n",
        &env.ns,
        "-o",
        "json",
    ]))
    .unwrap();
    let reasons: Vec<&str> = events["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["regarding"]["name"] == "quickstart-preview")
        .filter_map(|e| e["reason"].as_str())
        .collect();
    assert!(reasons.contains(&"Expired"), "{reasons:?}");
    assert!(reasons.contains(&"Deleted"), "{reasons:?}");
    env.assert_messages_are_for_people();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a Kubernetes cluster: set KUBECONFIG and run with --ignored"]
async fn every_example_then_delete_the_directory_at_once() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let _operator;
    let env = TestEnv::new("delete-dir").await;
    _operator = Operator::start(&env, "1", &[]);
    let dir = env.examples("m", QUICKSTART);
    let applied = Instant::now();
    kubectl(&["apply", "-f", dir.to_str().unwrap()]);
    wait_all_ready(&env, QUICKSTART_OBJECTS, Duration::from_secs(120)).await;
    println!(
        "e2e: every quick-start example Ready {:?} after apply",
        applied.elapsed()
    );
    let branch_uri = secret_value(&env, "quickstart-preview-db", "uri").await;
    let project_uri = secret_value(&env, "quickstart-db", "uri").await;
    assert_ne!(branch_uri, project_uri, "the branch has its own endpoint");
    assert_eq!(infrai_project_count(&env).await, 3);
    env.assert_messages_are_for_people();

    // `kubectl delete -f deploy/examples/`: provider, its Secret and every resource at once.
    let started = Instant::now();
    kubectl(&["delete", "-f", dir.to_str().unwrap(), "--timeout=60s"]);
    println!(
        "e2e: kubectl delete -f of the examples directory finished in {:?}",
        started.elapsed()
    );
    assert!(readiness(&env).await.is_empty());
    assert!(env.providers().is_empty(), "the provider went too");
    assert_eq!(
        infrai_project_count(&env).await,
        0,
        "every vendor project deleted"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a Kubernetes cluster: set KUBECONFIG and run with --ignored"]
async fn deleting_the_namespace_finishes_and_deletes_every_vendor_object() {
    let (_turn, _operator, env, _dir) = started("delete-ns", QUICKSTART).await;
    wait_all_ready(&env, QUICKSTART_OBJECTS, Duration::from_secs(120)).await;
    // The provider's credentials Secret is in the namespace being deleted.
    let started = Instant::now();
    kubectl(&["delete", "namespace", &env.ns, "--timeout=90s"]);
    println!(
        "e2e: kubectl delete namespace finished in {:?}",
        started.elapsed()
    );
    assert_eq!(
        infrai_project_count(&env).await,
        0,
        "every vendor project deleted"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a Kubernetes cluster: set KUBECONFIG and run with --ignored"]
async fn an_operator_restart_keeps_every_object_ready() {
    let (_turn, mut operator, env, _dir) = started("restart", QUICKSTART).await;
    wait_all_ready(&env, QUICKSTART_OBJECTS, Duration::from_secs(120)).await;
    let before = infrai_project_count(&env).await;

    for (tag, how) in [("2", "SIGTERM"), ("3", "SIGKILL")] {
        if how == "SIGTERM" {
            operator.terminate().await;
        } else {
            operator.kill();
        }
        let restarted = Instant::now();
        operator = Operator::start(&env, tag, &[]);
        operator.wait_ready().await;
        println!(
            "e2e: after a {how} restart the operator was ready in {:?}",
            restarted.elapsed()
        );
        // Watch a while: nothing leaves Ready, nothing at the vendor changes.
        let watch_until = Instant::now() + Duration::from_secs(8);
        while Instant::now() < watch_until {
            let all = readiness(&env).await;
            assert!(
                all.iter().all(|(_, r)| *r),
                "after a {how} restart: {all:?}"
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        assert_eq!(infrai_project_count(&env).await, before);
        let log = operator.log();
        assert!(!log.contains("VendorObjectDeleted"), "{how}: {log}");
    }
    env.assert_messages_are_for_people();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a Kubernetes cluster: set KUBECONFIG and run with --ignored"]
async fn an_undecodable_object_does_not_stop_the_others() {
    let (_turn, mut operator, env, _dir) = started("poison", &QUICKSTART[..2]).await;
    wait_ready::<DatabaseProject>(&env, "quickstart", Duration::from_secs(60)).await;

    // An object admitted under a looser schema (an older CRD, say): loosen the
    // schema for a moment, store it, put the real schema back.
    let loosen = r#"[{"op":"replace","path":"/spec/versions/0/schema/openAPIV3Schema/properties/spec","value":{"type":"object","x-kubernetes-preserve-unknown-fields":true}}]"#;
    kubectl(&[
        "patch",
        "crd",
        "databaseprojects.dbops.dev",
        "--type",
        "json",
        "-p",
        loosen,
    ]);
    let marker = "body-marker-7f3a";
    let broken = json!({
        "apiVersion": "dbops.dev/v1alpha1", "kind": "DatabaseProject",
        "metadata": { "name": "broken", "namespace": env.ns, "annotations": { "note": marker } },
        "spec": { "providerRef": { "name": env.provider("default") }, "region": { "not": "a string" } },
    });
    let file = env.dir.path().join("broken.json");
    std::fs::write(&file, broken.to_string()).unwrap();
    wait_until(
        "the loose schema in force",
        Duration::from_secs(30),
        || async { try_kubectl(&["create", "-f", file.to_str().unwrap()]).ok() },
    )
    .await;
    kubectl(&["replace", "-f", "crds/databaseprojects.dbops.dev.yaml"]);

    // Restarted, the operator must list the kind with the bad object in it.
    operator.terminate().await;
    operator = Operator::start(&env, "2", &[]);
    operator.wait_ready().await;
    let raw = || {
        kubectl(&[
            "get",
            "databaseproject",
            "broken",
            "-n",
            &env.ns,
            "-o",
            "json",
        ])
    };
    let stalled = wait_until(
        "broken reported InvalidSpec",
        Duration::from_secs(60),
        || async {
            let o: Value = serde_json::from_str(&raw()).ok()?;
            let c = o["status"]["conditions"]
                .as_array()?
                .iter()
                .find(|c| c["type"] == "Stalled")?
                .clone();
            (c["status"] == "True" && c["reason"] == "InvalidSpec").then_some(c)
        },
    )
    .await;
    let message = stalled["message"].as_str().unwrap();
    assert!(message.contains("spec.region"), "{message}");
    println!("e2e: the undecodable object reads: {message}");
    // A new healthy object still goes Ready next to it.
    let more = env.examples("more", &["deploy/examples/20-preview-branch.yaml"]);
    kubectl(&["apply", "-f", more.to_str().unwrap()]);
    wait_ready::<DatabaseBranch>(&env, "quickstart-preview", Duration::from_secs(60)).await;
    assert!(is_ready(
        &env.api::<DatabaseProject>()
            .get("quickstart")
            .await
            .unwrap()
    ));
    let events = kubectl(&["get", "events.events.k8s.io", "-n", &env.ns, "-o", "json"]);
    assert!(events.contains("InvalidSpec"));
    // Nothing of the object's body in the logs.
    let sigterm = operator.terminate().await;
    for (tag, log) in [("1", Operator::log_of(&env, "1")), ("2", operator.log())] {
        assert!(
            !log.contains(marker),
            "operator log {tag} holds the object's body"
        );
    }
    println!("e2e: SIGTERM with an undecodable object present: exited in {sigterm:?}");
    assert!(sigterm < Duration::from_secs(5), "{sigterm:?}");
    // Deleting it works (it never got a finalizer).
    kubectl(&[
        "delete",
        "databaseproject",
        "broken",
        "-n",
        &env.ns,
        "--timeout=30s",
    ]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a Kubernetes cluster: set KUBECONFIG and run with --ignored"]
async fn sigterm_stops_the_operator_within_seconds() {
    let (_turn, mut operator, env, _dir) = started("sigterm", QUICKSTART).await;
    wait_all_ready(&env, QUICKSTART_OBJECTS, Duration::from_secs(120)).await;
    // Busy: new objects are being created when the signal comes.
    let more = env.examples("more", &["deploy/examples/vendors/db9.yaml"]);
    kubectl(&["apply", "-f", more.to_str().unwrap()]);
    let took = operator.terminate().await;
    println!("e2e: SIGTERM to exit: {took:?}");
    assert!(took < Duration::from_secs(5), "{took:?}");
    let log = operator.log();
    assert!(
        log.contains("shutdown requested"),
        "{}",
        &log[log.len().saturating_sub(3000)..]
    );
    // SIGINT (Ctrl-C in the quick start) as well.
    operator = Operator::start(&env, "2", &[]);
    operator.wait_ready().await;
    let took = operator.stop_with("INT").await;
    println!("e2e: SIGINT to exit: {took:?}");
    assert!(took < Duration::from_secs(5), "{took:?}");
    // What was interrupted finishes after a restart.
    operator = Operator::start(&env, "3", &[]);
    wait_all_ready(&env, QUICKSTART_OBJECTS + 3, Duration::from_secs(120)).await;
    operator.wait_ready().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a Kubernetes cluster: set KUBECONFIG and run with --ignored"]
async fn an_immutable_field_edit_is_refused_by_the_api_server() {
    let (_turn, _operator, env, _dir) = started("immutable", &QUICKSTART[..2]).await;
    wait_ready::<DatabaseProject>(&env, "quickstart", Duration::from_secs(60)).await;
    let edit = |patch_type: &str, patch: &str| {
        try_kubectl(&[
            "patch",
            "databaseproject",
            "quickstart",
            "-n",
            &env.ns,
            "--type",
            patch_type,
            "-p",
            patch,
        ])
    };
    let changed = edit("merge", r#"{"spec":{"region":"eu-west-1"}}"#).unwrap_err();
    assert!(changed.contains("region is immutable"), "{changed}");
    let removed = edit("json", r#"[{"op":"remove","path":"/spec/region"}]"#).unwrap_err();
    assert!(removed.contains("region is immutable"), "{removed}");
    // The plan is set at create only, and the refusal says where to resize.
    let plan = edit("merge", r#"{"spec":{"plan":"large"}}"#).unwrap_err();
    assert!(plan.contains("resize it at the vendor"), "{plan}");
    let provider = edit("merge", r#"{"spec":{"providerRef":{"name":"other"}}}"#).unwrap_err();
    assert!(provider.contains("providerRef is immutable"), "{provider}");
    // A mutable field may change.
    edit("merge", r#"{"spec":{"deletionPolicy":"Retain"}}"#).unwrap();
    edit("merge", r#"{"spec":{"deletionPolicy":"Delete"}}"#).unwrap();
    // Values the operator could not decode are refused too.
    let bad_interval = edit(
        "merge",
        r#"{"spec":{"credentialRotation":{"interval":"99999999999h"}}}"#,
    )
    .unwrap_err();
    assert!(
        bad_interval.contains("credentialRotation.interval"),
        "{bad_interval}"
    );
    // A provider of an API whose document gives no public endpoint must name one.
    let providers: Api<DatabaseProvider> = Api::all(env.client.clone());
    let provider = |api: &str, endpoint: Option<&str>| -> DatabaseProvider {
        let mut spec = json!({
            "api": api,
            "credentialsSecretRef": { "name": "k", "namespace": env.ns, "key": "apiKey" },
        });
        if let Some(endpoint) = endpoint {
            spec["endpoint"] = json!(endpoint);
        }
        serde_json::from_value(json!({
            "apiVersion": "dbops.dev/v1alpha1",
            "kind": "DatabaseProvider",
            "metadata": { "name": format!("{}-{api}", env.ns) },
            "spec": spec,
        }))
        .unwrap()
    };
    let dry_run = PostParams {
        dry_run: true,
        ..PostParams::default()
    };
    for api in ["supabase", "capydb"] {
        let refused = providers
            .create(&dry_run, &provider(api, None))
            .await
            .unwrap_err()
            .to_string();
        assert!(refused.contains("spec.endpoint is required"), "{refused}");
        providers
            .create(&dry_run, &provider(api, Some("https://vendor.example")))
            .await
            .unwrap();
    }
    for api in ["infrai", "db9"] {
        providers
            .create(&dry_run, &provider(api, None))
            .await
            .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a Kubernetes cluster: set KUBECONFIG and run with --ignored"]
async fn byok_credential_rotation_and_byok_project() {
    let (_turn, _operator, env, dir) = started(
        "byok",
        &[
            "deploy/examples/00-provider.yaml",
            "deploy/examples/40-byok.yaml",
        ],
    )
    .await;
    let credential: ByokCredential = wait_ready(&env, "neon", Duration::from_secs(60)).await;
    wait_ready::<DatabaseProject>(&env, "quickstart-byok", Duration::from_secs(60)).await;
    let id = credential.status.unwrap().byok_id.unwrap();
    // The Secret it reads is protected while the credential exists (by the
    // in-use protection loop, which runs on its own, debounced, schedule).
    wait_until(
        "the BYOK key Secret protected",
        Duration::from_secs(15),
        || async {
            kubectl(&[
                "get",
                "secret",
                "neon-byok-key",
                "-n",
                &env.ns,
                "-o",
                "jsonpath={.metadata.finalizers}",
            ])
            .contains("dbops.dev/in-use")
            .then_some(())
        },
    )
    .await;

    kubectl(&[
        "patch",
        "secret",
        "neon-byok-key",
        "-n",
        &env.ns,
        "--type",
        "merge",
        "-p",
        r#"{"stringData":{"api_key":"sk-demo-rotated-key"}}"#,
    ]);
    let credentials: Api<ByokCredential> = env.api();
    wait_until("rotation committed", Duration::from_secs(60), || async {
        credentials
            .get_opt("neon")
            .await
            .ok()
            .flatten()
            .filter(|c| {
                c.status
                    .as_ref()
                    .is_some_and(|s| s.last_rotated_at.is_some())
            })
    })
    .await;
    kubectl(&["delete", "-f", dir.to_str().unwrap(), "--timeout=60s"]);
    let body = reqwest::Client::new()
        .get(format!("{}/infrai/v1/byok/get/{id}", env.emulator()))
        .bearer_auth(INFRAI_KEY)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        body.contains("\"revoked\""),
        "credential revoked at the vendor: {body}"
    );
}

/// The keys of Secret `name`, its type, and the whole object.
async fn secret_keys(env: &TestEnv, name: &str) -> (Vec<String>, String, Secret) {
    let secret = env.api::<Secret>().get(name).await.expect("Secret written");
    let keys = secret
        .data
        .clone()
        .unwrap_or_default()
        .into_keys()
        .collect();
    (keys, secret.type_.clone().unwrap_or_default(), secret)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a Kubernetes cluster: set KUBECONFIG and run with --ignored"]
async fn connection_secret_presets_templates_and_service_binding() {
    let (_turn, _operator, env, _dir) = started(
        "secrets",
        &[&QUICKSTART[..2], &["deploy/examples/apps/preview-app.yaml"]].concat(),
    )
    .await;
    let branch =
        wait_ready::<DatabaseBranch>(&env, "quickstart-app-preview", Duration::from_secs(90)).await;
    let secret = "quickstart-app-preview-db";
    assert_eq!(
        branch
            .status
            .as_ref()
            .unwrap()
            .binding
            .as_ref()
            .unwrap()
            .name,
        secret,
        ".status.binding.name points at the Secret"
    );
    let (keys, type_, object) = secret_keys(&env, secret).await;
    assert_eq!(
        keys,
        [
            "DATABASE_URL",
            "PGDATABASE",
            "PGHOST",
            "PGPASSWORD",
            "PGPORT",
            "PGSSLMODE",
            "PGUSER",
            "POOLED_DATABASE_URL",
        ]
    );
    assert_eq!(type_, "Opaque");
    assert_eq!(object.annotations()["reloader.stakater.com/match"], "true");
    assert_eq!(object.annotations()["dbops.dev/password-key"], "PGPASSWORD");
    let password = secret_value(&env, secret, "PGPASSWORD").await;
    assert!(
        secret_value(&env, secret, "DATABASE_URL")
            .await
            .contains(&format!(":{password}@"))
    );
    // The example's Deployment is accepted as it is.
    kubectl(&["get", "deployment", "preview-app", "-n", &env.ns]);

    // Someone else adds a key; it survives the operator's writes.
    kubectl(&[
        "patch",
        "secret",
        secret,
        "-n",
        &env.ns,
        "--type",
        "merge",
        "-p",
        r#"{"stringData":{"ADDED_BY_SOMEONE":"keep-me"}}"#,
    ]);
    let patch_spec = |patch: &str| {
        kubectl(&[
            "patch",
            "databasebranch",
            "quickstart-app-preview",
            "-n",
            &env.ns,
            "--type",
            "merge",
            "-p",
            patch,
        ])
    };
    // Preset libpq -> prisma: one write, the PG* keys gone, the other key kept.
    patch_spec(
        r#"{"spec":{"writeConnectionSecretTo":{"preset":"prisma","keys":null,"labels":{"team":"a"}}}}"#,
    );
    let keys = wait_until("the prisma keys", Duration::from_secs(30), || async {
        let (keys, _, object) = secret_keys(&env, secret).await;
        (keys.contains(&"DIRECT_URL".to_string()) && object.labels().get("team").is_some())
            .then_some(keys)
    })
    .await;
    assert_eq!(keys, ["ADDED_BY_SOMEONE", "DATABASE_URL", "DIRECT_URL"]);
    let b: DatabaseBranch = env.api().get("quickstart-app-preview").await.unwrap();
    let ready = b
        .status
        .as_ref()
        .unwrap()
        .conditions
        .get(conditions::READY)
        .unwrap()
        .clone();
    assert!(
        ready.message.contains("no connection pooler"),
        "{}",
        ready.message
    );

    // A bad template stalls with the template's error, and the Secret stays whole.
    patch_spec(r#"{"spec":{"writeConnectionSecretTo":{"keys":{"BROKEN":"{{ nosuchfield }}"}}}}"#);
    let message = wait_until(
        "the bad template stalls",
        Duration::from_secs(30),
        || async {
            let b: DatabaseBranch = env.api().get("quickstart-app-preview").await.ok()?;
            let stalled = b
                .status
                .as_ref()?
                .conditions
                .get(conditions::STALLED)?
                .clone();
            (stalled.status == "True" && stalled.reason == "InvalidConnectionTemplate")
                .then_some(stalled.message)
        },
    )
    .await;
    assert!(
        message.contains("BROKEN") && message.contains("undefined"),
        "{message}"
    );
    let (keys, _, _) = secret_keys(&env, secret).await;
    assert_eq!(keys, ["ADDED_BY_SOMEONE", "DATABASE_URL", "DIRECT_URL"]);

    // The Service Binding preset: the spec's keys and Secret type.
    patch_spec(r#"{"spec":{"writeConnectionSecretTo":{"preset":"servicebinding","keys":null}}}"#);
    let (keys, type_) = wait_until(
        "the servicebinding Secret",
        Duration::from_secs(30),
        || async {
            let (keys, type_, _) = secret_keys(&env, secret).await;
            (type_ == "servicebinding.io/postgresql").then_some((keys, type_))
        },
    )
    .await;
    assert_eq!(type_, "servicebinding.io/postgresql");
    assert_eq!(
        keys,
        [
            "database", "host", "password", "port", "provider", "type", "uri", "username"
        ]
    );
    assert_eq!(secret_value(&env, secret, "type").await, "postgresql");
    assert_eq!(secret_value(&env, secret, "provider").await, "infrai");
    wait_ready::<DatabaseBranch>(&env, "quickstart-app-preview", Duration::from_secs(30)).await;

    // jdbc, then default: each preset's keys, back to an Opaque Secret.
    patch_spec(r#"{"spec":{"writeConnectionSecretTo":{"preset":"jdbc"}}}"#);
    let keys = wait_until("the jdbc Secret", Duration::from_secs(30), || async {
        let (keys, type_, _) = secret_keys(&env, secret).await;
        (type_ == "Opaque" && keys.contains(&"jdbc-uri".to_string())).then_some(keys)
    })
    .await;
    assert_eq!(
        keys,
        [
            "database", "host", "jdbc-uri", "password", "port", "uri", "username"
        ]
    );
    assert!(
        secret_value(&env, secret, "jdbc-uri")
            .await
            .starts_with("jdbc:postgresql://")
    );
    patch_spec(r#"{"spec":{"writeConnectionSecretTo":{"preset":"default"}}}"#);
    let keys = wait_until("the default Secret", Duration::from_secs(30), || async {
        let (keys, _, _) = secret_keys(&env, secret).await;
        (!keys.contains(&"jdbc-uri".to_string())).then_some(keys)
    })
    .await;
    assert_eq!(
        keys,
        ["database", "host", "password", "port", "uri", "username"]
    );
    wait_ready::<DatabaseBranch>(&env, "quickstart-app-preview", Duration::from_secs(30)).await;
    env.assert_messages_are_for_people();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a Kubernetes cluster: set KUBECONFIG and run with --ignored"]
async fn supabase_and_db9_examples() {
    // The emulators serve only what the vendor documents show (and what the
    // clients list as assumed): the whole flow must work on that alone.
    let turn = ONE_AT_A_TIME.lock().await;
    let env = TestEnv::new("vendors").await;
    let _operator = Operator::start(&env, "1", &["--emulator-strict"]);
    let dir = env.examples(
        "m",
        &[
            "deploy/examples/vendors/supabase.yaml",
            "deploy/examples/vendors/db9.yaml",
        ],
    );
    kubectl(&["apply", "-f", dir.to_str().unwrap()]);
    let _turn = turn;
    for name in ["supabase-app", "db9-app", "db9-app-restored"] {
        wait_ready::<DatabaseProject>(&env, name, Duration::from_secs(120)).await;
    }
    wait_ready::<DatabaseBranch>(&env, "supabase-app-preview", Duration::from_secs(120)).await;
    let before = secret_value(&env, "supabase-app-db", "password").await;
    // Supabase's pooled (Supavisor) connection, with the same password.
    let pooled = secret_value(&env, "supabase-app-db", "pooledUri").await;
    assert!(pooled.contains(".pooler.supabase.com:6543/"), "{pooled}");
    let pooled_url = url::Url::parse(&pooled).unwrap();
    let password = percent_encoding::percent_decode_str(pooled_url.password().unwrap())
        .decode_utf8()
        .unwrap();
    assert_eq!(password, before);

    // A second resource naming the first one's vendor database is refused
    // (Stalled/NameConflict): nothing is adopted, and deleting it leaves the
    // database alone.
    let projects: Api<DatabaseProject> = Api::namespaced(env.client.clone(), &env.ns);
    let owner = projects.get("db9-app").await.unwrap();
    let taken = owner.status.as_ref().unwrap().project_name.clone().unwrap();
    let squatter: DatabaseProject = serde_json::from_value(json!({
        "apiVersion": "dbops.dev/v1alpha1",
        "kind": "DatabaseProject",
        "metadata": { "name": "db9-squatter", "namespace": env.ns },
        "spec": {
            "providerRef": owner.spec.provider_ref,
            "projectName": taken,
            "deletionPolicy": "Delete",
        },
    }))
    .unwrap();
    projects
        .create(&PostParams::default(), &squatter)
        .await
        .unwrap();
    wait_until(
        "the squatter stalls on the name",
        Duration::from_secs(60),
        || async {
            let p = projects.get("db9-squatter").await.ok()?;
            let stalled = p.status.as_ref()?.conditions.get(conditions::STALLED)?;
            (stalled.status == "True" && stalled.reason == "NameConflict").then_some(())
        },
    )
    .await;
    let p = projects.get("db9-squatter").await.unwrap();
    assert!(p.status.unwrap().project_id.is_none());
    kubectl(&[
        "delete",
        "databaseproject",
        "db9-squatter",
        "-n",
        &env.ns,
        "--timeout=60s",
    ]);
    wait_ready::<DatabaseProject>(&env, "db9-app", Duration::from_secs(30)).await;
    let still = projects.get("db9-app").await.unwrap();
    assert_eq!(
        still.status.unwrap().project_id,
        owner.status.unwrap().project_id
    );
    kubectl(&[
        "annotate",
        "--overwrite",
        "databaseproject/supabase-app",
        "-n",
        &env.ns,
        "dbops.dev/rotate-credentials=e2e",
    ]);
    wait_until("rotated password", Duration::from_secs(60), || async {
        let now = secret_value(&env, "supabase-app-db", "password").await;
        (now != before).then_some(())
    })
    .await;
    env.assert_messages_are_for_people();
    // This delete used to hang: the providers go in the same command.
    let started = Instant::now();
    kubectl(&["delete", "-f", dir.to_str().unwrap(), "--timeout=90s"]);
    println!(
        "e2e: kubectl delete -f of the Supabase and DB9 examples finished in {:?}",
        started.elapsed()
    );
    assert!(env.providers().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a Kubernetes cluster: set KUBECONFIG and run with --ignored"]
async fn capydb_adoption_example() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let _operator;
    let env = TestEnv::new("capydb").await;
    // CapyDB's API cannot create projects: the test runs the emulator itself,
    // seeded with the example's project, and the operator without its own.
    let emulator = dbops::emulator::Emulator::new(&dbops::emulator::EmulatorConfig::default());
    emulator.capydb.add_project("prj_example");
    let (_addr, _server) = emulator
        .clone()
        .spawn(&format!("127.0.0.1:{}", env.emulator_port))
        .await
        .expect("port free");
    _operator = Operator::start(&env, "1", &["--emulator=false"]);
    let dir = env.examples("m", &["deploy/examples/vendors/capydb.yaml"]);
    kubectl(&["apply", "-f", dir.to_str().unwrap()]);
    wait_ready::<DatabaseProject>(&env, "capydb-app", Duration::from_secs(60)).await;
    let secret = env.api::<Secret>().get("capydb-app-db").await.unwrap();
    assert!(secret.data.unwrap().contains_key("pooledUri"));
    kubectl(&["delete", "-f", dir.to_str().unwrap(), "--timeout=60s"]);
    assert!(
        emulator.capydb.project_password("prj_example").is_some(),
        "Retain: still at CapyDB"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a Kubernetes cluster: set KUBECONFIG and run with --ignored"]
async fn leader_failover_hands_over_and_keeps_reconciling() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let env = TestEnv::new("failover").await;
    // The vendor is shared, as with the chart's emulator Deployment: replicas
    // run no emulator of their own.
    let emulator = dbops::emulator::Emulator::with_state_file(
        &dbops::emulator::EmulatorConfig::default(),
        &env.dir.path().join("shared-emulator.json"),
    )
    .unwrap();
    let (_addr, _server) = emulator
        .spawn(&format!("127.0.0.1:{}", env.emulator_port))
        .await
        .expect("port free");
    let lease = format!("{}-leader", env.ns);
    let le = [
        "--emulator=false",
        "--leader-election=true",
        "--lease-name",
        &lease,
        "--lease-namespace",
        &env.ns,
        "--lease-duration",
        "5s",
    ];
    let start = |tag: &str| Operator::start(&env, tag, &le);
    let leases: Api<Lease> = env.api();
    let holder = || {
        let leases = leases.clone();
        let lease = lease.clone();
        async move {
            leases
                .get_opt(&lease)
                .await
                .ok()
                .flatten()?
                .spec?
                .holder_identity
        }
    };
    // POD_NAME is the identity: `<namespace>-<tag>`.
    let mut first = start("a");
    let first_id = wait_until("a leader", Duration::from_secs(30), holder).await;
    let mut second = start("b");
    second.wait_ready().await; // a standby is ready: it waits its turn
    let dir = env.examples("m", &QUICKSTART[..2]);
    kubectl(&["apply", "-f", dir.to_str().unwrap()]);
    wait_ready::<DatabaseProject>(&env, "quickstart", Duration::from_secs(60)).await;
    assert_eq!(
        holder().await.as_deref(),
        Some(first_id.as_str()),
        "the standby waits"
    );

    // Clean shutdown: the Lease is released and the standby takes over at once.
    let stopped = Instant::now();
    first.terminate().await;
    let second_id = wait_until("clean hand-over", Duration::from_secs(30), || async {
        holder().await.filter(|h| *h != first_id)
    })
    .await;
    println!(
        "e2e: standby took over {:?} after the leader's SIGTERM (lease 5s)",
        stopped.elapsed()
    );
    let took = stopped.elapsed();
    if took >= Duration::from_secs(4) {
        for tag in ["a", "b"] {
            eprintln!("--- operator {tag}:\n{}", Operator::log_of(&env, tag));
        }
    }
    assert!(
        took < Duration::from_secs(4),
        "the Lease was released, not left to expire"
    );

    // A crash: the next standby takes over once the Lease expires, and reconciles.
    let third = start("c");
    third.wait_ready().await;
    let killed = Instant::now();
    second.kill();
    wait_until(
        "failover after a crash",
        Duration::from_secs(30),
        || async { holder().await.filter(|h| *h != second_id) },
    )
    .await;
    println!(
        "e2e: standby took over {:?} after the leader was killed (lease 5s)",
        killed.elapsed()
    );
    let more = env.examples("more", &["deploy/examples/20-preview-branch.yaml"]);
    kubectl(&["apply", "-f", more.to_str().unwrap()]);
    wait_ready::<DatabaseBranch>(&env, "quickstart-preview", Duration::from_secs(60)).await;
    assert!(is_ready(
        &env.api::<DatabaseProject>()
            .get("quickstart")
            .await
            .unwrap()
    ));
    // The new leader also finishes deleting everything the test made.
    assert!(
        env.delete_all(Duration::from_secs(60)),
        "deleting the namespace under the new leader did not finish"
    );
    drop(third);
}

/// The tests' PostgreSQL server (a private one unless
/// `DBOPS_TEST_POSTGRES_URL` names one): the operator runs on this machine,
/// so it reaches the server on loopback as the tests do.
#[path = "support/postgres.rs"]
#[allow(dead_code)]
mod pg_support;

async fn pg_connect(uri: &str) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    let (client, connection) = tokio_postgres::connect(uri, tokio_postgres::NoTls).await?;
    tokio::spawn(connection);
    Ok(client)
}

/// Operator log "1" holds none of `secrets`, and no connection URI.
fn assert_log_holds_none(env: &TestEnv, secrets: &[String]) {
    let log = Operator::log_of(env, "1");
    assert!(!log.is_empty(), "the operator logged something");
    for secret in secrets {
        assert!(
            !log.contains(secret.as_str()),
            "a password is in the operator's log"
        );
    }
    assert!(
        !log.contains("postgresql://") && !log.contains("postgres://"),
        "a connection URI is in the operator's log"
    );
}

async fn pg_count(client: &tokio_postgres::Client, sql: &str) -> i64 {
    client.query_one(sql, &[]).await.expect(sql).get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a Kubernetes cluster: set KUBECONFIG and run with --ignored"]
async fn postgres_provider_example_hands_out_databases_that_connect() {
    let server = pg_support::server();
    let _turn = ONE_AT_A_TIME.lock().await;
    let env = TestEnv::new("postgres").await;
    let _operator = Operator::start(&env, "1", &[]);

    // The example, less its demo server (this cluster need not run pods):
    // the provider points at the tests' server instead.
    let dir = env.examples("pg", &["deploy/examples/vendors/postgres.yaml"]);
    let file = dir.join("postgres.yaml");
    let text = std::fs::read_to_string(&file).unwrap();
    let mut docs = Vec::new();
    for doc in serde_yaml_ng::Deserializer::from_str(&text) {
        let mut value = Value::deserialize(doc).unwrap();
        match value["kind"].as_str().unwrap_or_default() {
            "Namespace" | "Deployment" | "Service" => continue,
            "Secret" => value["stringData"]["password"] = json!(server.password),
            "DatabaseProvider" => {
                value["spec"]["endpoint"] = json!(server.endpoint);
                value["spec"]["postgres"]
                    .as_object_mut()
                    .unwrap()
                    .remove("connectionHost");
            }
            _ => {}
        }
        docs.push(serde_yaml_ng::to_string(&value).unwrap());
    }
    std::fs::write(&file, docs.join("---\n")).unwrap();
    // The project first, alone, so that the branch and snapshot copy rows.
    let first = dir.join("first.yaml");
    let project_only: Vec<&String> = docs
        .iter()
        .filter(|doc| {
            !doc.contains("kind: DatabaseBranch")
                && !doc.contains("kind: DatabaseSnapshot")
                && !doc.contains("pg-app-restored")
        })
        .collect();
    std::fs::write(
        &first,
        project_only
            .iter()
            .map(|d| d.as_str())
            .collect::<Vec<_>>()
            .join("---\n"),
    )
    .unwrap();
    let applied = Instant::now();
    kubectl(&["apply", "-f", first.to_str().unwrap()]);

    let project: DatabaseProject = wait_ready(&env, "pg-app", Duration::from_secs(60)).await;
    println!(
        "e2e: postgres project Ready {:?} after apply",
        applied.elapsed()
    );
    let project_db = project.status.unwrap().project_id.unwrap();
    // The libpq preset's DATABASE_URL connects as it is.
    let url = secret_value(&env, "pg-app-db", "DATABASE_URL").await;
    let app = pg_connect(&url)
        .await
        .expect("the project's DATABASE_URL connects");
    app.batch_execute("CREATE TABLE orders (id serial PRIMARY KEY, cents int); INSERT INTO orders (cents) VALUES (100), (250)")
        .await
        .expect("the project's role can create a table");

    // Then the whole example: a branch, a snapshot and a restore of it.
    kubectl(&["apply", "-f", file.to_str().unwrap()]);
    let branch: DatabaseBranch = wait_ready(&env, "pg-app-preview", Duration::from_secs(60)).await;
    let branch_db = branch.status.unwrap().branch_id.unwrap();
    let preview = pg_connect(&secret_value(&env, "pg-app-preview-db", "DATABASE_URL").await)
        .await
        .expect("the branch's DATABASE_URL connects");
    assert_eq!(pg_count(&preview, "SELECT count(*) FROM orders").await, 2);
    preview
        .batch_execute("INSERT INTO orders (cents) VALUES (1)")
        .await
        .unwrap();
    let app = pg_connect(&url)
        .await
        .expect("the parent reconnects after a template copy");
    assert_eq!(
        pg_count(&app, "SELECT count(*) FROM orders").await,
        2,
        "the branch's write stays in the branch"
    );

    let snapshot: DatabaseSnapshot =
        wait_ready(&env, "pg-app-nightly", Duration::from_secs(60)).await;
    let snapshot_db = snapshot.status.unwrap().snapshot_id.unwrap();
    let restored: DatabaseProject =
        wait_ready(&env, "pg-app-restored", Duration::from_secs(60)).await;
    let restored_db = restored.status.unwrap().project_id.unwrap();
    let back = pg_connect(&secret_value(&env, "pg-app-restored-db", "DATABASE_URL").await)
        .await
        .expect("the restored project's DATABASE_URL connects");
    assert_eq!(pg_count(&back, "SELECT count(*) FROM orders").await, 2);

    // Rotation: the old password stops working, the Secret's new one works.
    let old_password = secret_value(&env, "pg-app-db", "PGPASSWORD").await;
    kubectl(&[
        "annotate",
        "--overwrite",
        "databaseproject",
        "pg-app",
        "-n",
        &env.ns,
        "dbops.dev/rotate-credentials=e2e-1",
    ]);
    let new_url = wait_until(
        "the Secret to hold a new password",
        Duration::from_secs(60),
        || async {
            let password = secret_value(&env, "pg-app-db", "PGPASSWORD").await;
            (password != old_password).then_some(())?;
            Some(secret_value(&env, "pg-app-db", "DATABASE_URL").await)
        },
    )
    .await;
    pg_connect(&new_url).await.expect("the new password works");
    let Err(refused) = pg_connect(&url).await else {
        panic!("the old password still works after rotation");
    };
    assert_eq!(
        refused.as_db_error().map(|e| e.code().code()),
        Some("28P01")
    );

    // No password or connection URI ever reached the operator's log.
    let mut secrets = vec![server.password.clone(), old_password];
    for secret in ["pg-app-db", "pg-app-preview-db", "pg-app-restored-db"] {
        secrets.push(secret_value(&env, secret, "PGPASSWORD").await);
    }
    assert_log_holds_none(&env, &secrets);

    // Deleting the example drops every database and role it made.
    drop((app, preview, back));
    kubectl(&["delete", "-f", file.to_str().unwrap(), "--timeout=120s"]);
    let admin = pg_connect(&server.admin_url()).await.unwrap();
    for db in [&project_db, &branch_db, &snapshot_db, &restored_db] {
        let left: i64 = admin
            .query_one(
                "SELECT (SELECT count(*) FROM pg_database WHERE datname = $1) + (SELECT count(*) FROM pg_roles WHERE rolname = $1)",
                &[db],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(left, 0, "{db} and its role are dropped");
    }
    env.assert_messages_are_for_people();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a Kubernetes cluster: set KUBECONFIG and run with --ignored"]
async fn the_quickstart_with_emulator_postgres_hands_out_uris_that_connect() {
    let server = pg_support::server();
    let _turn = ONE_AT_A_TIME.lock().await;
    let env = TestEnv::new("emupg").await;
    let admin_url = server.admin_url();
    let _operator = Operator::start(&env, "1", &["--emulator-postgres", &admin_url]);
    let dir = env.examples("m", &QUICKSTART[..3]);
    kubectl(&[
        "apply",
        "-f",
        dir.join("00-provider.yaml").to_str().unwrap(),
    ]);
    kubectl(&["apply", "-f", dir.join("10-project.yaml").to_str().unwrap()]);
    wait_ready::<DatabaseProject>(&env, "quickstart", Duration::from_secs(60)).await;
    let uri = secret_value(&env, "quickstart-db", "uri").await;
    let app = pg_connect(&uri)
        .await
        .expect("the quick start's URI connects to a real database");
    app.batch_execute("CREATE TABLE notes (body text); INSERT INTO notes VALUES ('from main')")
        .await
        .unwrap();

    // The preview branch copies the project's data at the (emulated) vendor.
    kubectl(&[
        "apply",
        "-f",
        dir.join("20-preview-branch.yaml").to_str().unwrap(),
    ]);
    let branch: DatabaseBranch =
        wait_ready(&env, "quickstart-preview", Duration::from_secs(60)).await;
    let secret = branch
        .status
        .unwrap()
        .connection_secret_name
        .expect("the branch's Secret");
    let preview = pg_connect(&secret_value(&env, &secret, "uri").await)
        .await
        .expect("the branch's URI connects");
    assert_eq!(pg_count(&preview, "SELECT count(*) FROM notes").await, 1);
    preview
        .batch_execute("INSERT INTO notes VALUES ('from the preview')")
        .await
        .unwrap();
    assert_eq!(pg_count(&app, "SELECT count(*) FROM notes").await, 1);

    // Reset from parent at a vendor that cannot reset in place: a new vendor
    // branch, the same Secret switched to it in one write, the old one deleted.
    let old_uri = secret_value(&env, &secret, "uri").await;
    app.batch_execute("INSERT INTO notes VALUES ('from main, later')")
        .await
        .unwrap();
    drop(preview);
    let asked = Instant::now();
    kubectl(&[
        "annotate",
        "databasebranch",
        "quickstart-preview",
        "-n",
        &env.ns,
        "dbops.dev/reset-from-parent=e2e-1",
        "--overwrite",
    ]);
    let branches: Api<DatabaseBranch> = Api::namespaced(env.client.clone(), &env.ns);
    wait_until(
        "the reset of quickstart-preview",
        Duration::from_secs(90),
        || async {
            let status = branches.get("quickstart-preview").await.ok()?.status?;
            let reset = status.reset.as_ref()?;
            let done = reset.annotation.as_deref() == Some("e2e-1")
                && reset.pending.is_none()
                && reset.retiring.is_none();
            done.then_some(())
        },
    )
    .await;
    println!(
        "e2e: reset from parent as a new vendor branch done {:?} after the annotation",
        asked.elapsed()
    );
    let reset = branches
        .get("quickstart-preview")
        .await
        .unwrap()
        .status
        .unwrap();
    assert!(
        reset.last_reset_at.is_some() && reset.reset.as_ref().unwrap().last_failure.is_none(),
        "{:?}",
        reset.reset
    );
    assert_eq!(
        reset.connection_secret_name.as_deref(),
        Some(secret.as_str()),
        "the same Secret"
    );
    let new_uri = secret_value(&env, &secret, "uri").await;
    assert_ne!(new_uri, old_uri, "a new vendor branch, a new database");
    let preview = pg_connect(&new_uri)
        .await
        .expect("the switched Secret connects");
    assert_eq!(
        pg_count(&preview, "SELECT count(*) FROM notes").await,
        2,
        "the parent's rows as they are now, none of the preview's own"
    );
    let old_database = url::Url::parse(&old_uri)
        .unwrap()
        .path()
        .trim_start_matches('/')
        .to_string();
    let admin = pg_connect(&admin_url).await.unwrap();
    let left: i64 = admin
        .query_one(
            "SELECT count(*) FROM pg_database WHERE datname = $1",
            &[&old_database],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(left, 0, "the old vendor branch ({old_database}) is deleted");
    drop(admin);

    let passwords: Vec<String> = [
        uri.as_str(),
        &old_uri,
        &secret_value(&env, &secret, "uri").await,
    ]
    .iter()
    .map(|u| url::Url::parse(u).unwrap().password().unwrap().to_string())
    .chain([server.password.clone()])
    .collect();
    assert_log_holds_none(&env, &passwords);

    // Deleting drops them at the emulated vendor, and so on the server.
    let database = |uri: &str| {
        url::Url::parse(uri)
            .unwrap()
            .path()
            .trim_start_matches('/')
            .to_string()
    };
    let databases = [
        database(&uri),
        database(&secret_value(&env, &secret, "uri").await),
    ];
    drop((app, preview));
    kubectl(&["delete", "-f", dir.to_str().unwrap(), "--timeout=120s"]);
    let admin = pg_connect(&admin_url).await.unwrap();
    for db in &databases {
        let left: i64 = admin
            .query_one("SELECT count(*) FROM pg_database WHERE datname = $1", &[db])
            .await
            .unwrap()
            .get(0);
        assert_eq!(left, 0, "{db} is dropped");
    }
    env.assert_messages_are_for_people();
}

// ---------------------------------------------------------------------------
// Tenancy: one operator, two teams. The platform (this test, as cluster
// admin) keeps the provider and its key in its own namespace and admits the
// teams' namespaces by label; each team acts as a ServiceAccount with the
// built-in `edit` role in its namespace (which aggregates `dbops-edit`) and
// nothing else, through impersonation.
// ---------------------------------------------------------------------------

const TENANT_SA: &str = "dev";

/// Two tenant namespaces next to the test's platform namespace.
struct Tenancy {
    env: TestEnv,
    a: String,
    b: String,
}

impl Tenancy {
    async fn new(name: &str) -> Self {
        let env = TestEnv::new(name).await;
        apply_tenant_roles();
        let a = format!("{}-a", env.ns);
        let b = format!("{}-b", env.ns);
        for ns in [&a, &b] {
            kubectl(&["create", "namespace", ns]);
            kubectl(&[
                "label",
                "namespace",
                ns,
                &format!("dbops.dev/tenant-of={}", env.ns),
            ]);
            kubectl(&["create", "serviceaccount", TENANT_SA, "-n", ns]);
            kubectl(&[
                "create",
                "rolebinding",
                "team-edit",
                "--clusterrole=edit",
                &format!("--serviceaccount={ns}:{TENANT_SA}"),
                "-n",
                ns,
            ]);
        }
        // The platform's key, in the platform's namespace.
        kubectl_stdin(
            &["apply", "-f", "-"],
            &json!({ "apiVersion": "v1", "kind": "Secret",
                "metadata": { "name": "vendor-key", "namespace": env.ns },
                "stringData": { "apiKey": INFRAI_KEY } }),
            None,
        )
        .unwrap();
        let tenants = json!({ "from": "Selector", "selector": { "matchLabels": { "dbops.dev/tenant-of": env.ns } } });
        let only_a = json!({ "from": "Selector", "selector": { "matchLabels": { "kubernetes.io/metadata.name": a } } });
        let same = json!({ "from": "Same" });
        // `shared`: every team may use it, none may adopt; `adopting`: every
        // team may adopt (only claims stand between them); `team-a`: A's alone.
        for (provider, allowed, adoption) in [
            ("shared", &tenants, &same),
            ("adopting", &tenants, &tenants),
            ("team-a", &only_a, &same),
        ] {
            kubectl_stdin(
                &["apply", "-f", "-"],
                &json!({ "apiVersion": "dbops.dev/v1alpha1", "kind": "DatabaseProvider",
                    "metadata": { "name": env.provider(provider) },
                    "spec": { "api": "infrai", "endpoint": format!("{}/infrai", env.emulator()),
                        "credentialsSecretRef": { "name": "vendor-key", "namespace": env.ns, "key": "apiKey" },
                        "allowedNamespaces": allowed,
                        "adoption": { "allowedNamespaces": adoption } } }),
                None,
            )
            .unwrap();
        }
        // Impersonation works, and a team has namespace rights only.
        assert_eq!(
            can_i(
                &a,
                &["auth", "can-i", "create", "databaseprojects", "-n", &a]
            )
            .trim(),
            "yes"
        );
        for (verb, what, ns) in [
            ("get", "secrets", Some(&a)),
            ("patch", "databaseprojects --subresource=status", Some(&b)),
            ("list", "vendorclaims", None),
            ("create", "databaseproviders", None),
        ] {
            let mut args = vec!["auth", "can-i", verb];
            args.extend(what.split(' '));
            if let Some(ns) = ns {
                args.extend(["-n", ns.as_str()]);
            }
            let answer = can_i(&b, &args);
            assert!(answer.trim() == "no", "team B may {verb} {what}: {answer}");
        }
        Self { env, a, b }
    }

    fn provider(&self, name: &str) -> String {
        self.env.provider(name)
    }

    /// The `postgres` provider `pg` on `server`, admitting the teams, with
    /// its admin password in the platform's namespace.
    fn postgres_provider(&self, server: &pg_support::TestServer) {
        kubectl_stdin(
            &["apply", "-f", "-"],
            &json!({ "apiVersion": "v1", "kind": "Secret",
            "metadata": { "name": "pg-admin", "namespace": self.env.ns },
            "stringData": { "password": server.password } }),
            None,
        )
        .unwrap();
        let tenants = json!({ "from": "Selector", "selector": { "matchLabels": { "dbops.dev/tenant-of": self.env.ns } } });
        kubectl_stdin(&["apply", "-f", "-"], &json!({ "apiVersion": "dbops.dev/v1alpha1", "kind": "DatabaseProvider",
            "metadata": { "name": self.provider("pg") },
            "spec": { "api": "postgres", "endpoint": server.endpoint,
                "credentialsSecretRef": { "name": "pg-admin", "namespace": self.env.ns, "key": "password" },
                "allowedNamespaces": tenants } }), None).unwrap();
    }

    /// Applies `object` in `ns`, as that namespace's team.
    fn apply_as(&self, ns: &str, mut object: Value) {
        object["metadata"]["namespace"] = json!(ns);
        kubectl_stdin(&["apply", "-f", "-"], &object, Some(ns))
            .unwrap_or_else(|e| panic!("team {ns} could not apply: {e}"));
    }

    async fn get<K>(&self, ns: &str, name: &str) -> Option<K>
    where
        K: Managed + kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
    {
        Api::<K>::namespaced(self.env.client.clone(), ns)
            .get_opt(name)
            .await
            .unwrap()
    }

    async fn ready<K>(&self, ns: &str, name: &str) -> K
    where
        K: Managed + kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
    {
        let api: Api<K> = Api::namespaced(self.env.client.clone(), ns);
        wait_until(
            &format!("{ns}/{name} Ready"),
            Duration::from_secs(60),
            || async { api.get_opt(name).await.ok().flatten().filter(is_ready) },
        )
        .await
    }

    /// Waits until `K` `name` in `ns` is `Stalled` with `reason`; its message.
    async fn stalled<K>(&self, ns: &str, name: &str, reason: &str) -> String
    where
        K: Managed + kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
    {
        let api: Api<K> = Api::namespaced(self.env.client.clone(), ns);
        wait_until(
            &format!("{ns}/{name} Stalled with {reason}"),
            Duration::from_secs(60),
            || async {
                let obj = api.get_opt(name).await.ok().flatten()?;
                let stalled = K::conditions(obj.status()?)
                    .get(conditions::STALLED)?
                    .clone();
                (stalled.status == "True" && stalled.reason == reason).then_some(stalled.message)
            },
        )
        .await
    }

    /// Deletes `kind` `name` as the team of `ns`; asserts it finished.
    fn delete_as(&self, ns: &str, kind: &str, name: &str) -> Duration {
        let started = Instant::now();
        kubectl_as(ns, &["delete", kind, name, "-n", ns, "--timeout=30s"])
            .unwrap_or_else(|e| panic!("deleting {kind} {name}: {e}"));
        assert!(
            kubectl_as(ns, &["get", kind, name, "-n", ns]).is_err(),
            "{ns}/{name} is gone"
        );
        started.elapsed()
    }

    /// What team `ns` can read of its own namespace: its Secrets' values,
    /// and its resources' status.
    fn readable_by(&self, ns: &str) -> (String, String) {
        let mut text = String::new();
        let mut statuses = String::new();
        for kind in [
            "secrets",
            "databaseprojects",
            "databasebranches",
            "databasesnapshots",
        ] {
            let list = kubectl_as(ns, &["get", kind, "-n", ns, "-o", "json"]).unwrap();
            let list: Value = serde_json::from_str(&list).unwrap();
            for item in list["items"].as_array().unwrap() {
                if kind == "secrets" {
                    for value in item["data"]
                        .as_object()
                        .into_iter()
                        .flatten()
                        .map(|(_, v)| v)
                    {
                        use base64::Engine;
                        let bytes = base64::engine::general_purpose::STANDARD
                            .decode(value.as_str().unwrap_or_default())
                            .unwrap_or_default();
                        text.push_str(&String::from_utf8_lossy(&bytes));
                        text.push('\n');
                    }
                } else {
                    statuses.push_str(&item["status"].to_string());
                }
            }
        }
        (text, statuses)
    }

    async fn vendor_projects(&self) -> Vec<(String, String)> {
        let body: Value = reqwest::Client::new()
            .get(format!(
                "{}/infrai/v1/db/project/list?limit=100",
                self.env.emulator()
            ))
            .bearer_auth(INFRAI_KEY)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        body["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| {
                (
                    p["id"].as_str().unwrap().to_string(),
                    p["name"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    }

    /// Team A's project `shop` (its branch `preview` and snapshot `nightly`),
    /// Ready: the ids and password team B is after.
    async fn team_a(&self) -> TeamA {
        let a = &self.a;
        self.apply_as(a, json!({ "apiVersion": "dbops.dev/v1alpha1", "kind": "DatabaseProject",
            "metadata": { "name": "shop" },
            "spec": { "providerRef": { "name": self.provider("shared") }, "writeConnectionSecretTo": { "name": "shop-db" } } }));
        self.apply_as(
            a,
            json!({ "apiVersion": "dbops.dev/v1alpha1", "kind": "DatabaseBranch",
            "metadata": { "name": "preview" }, "spec": { "projectRef": { "name": "shop" } } }),
        );
        self.apply_as(
            a,
            json!({ "apiVersion": "dbops.dev/v1alpha1", "kind": "DatabaseSnapshot",
            "metadata": { "name": "nightly" }, "spec": { "projectRef": { "name": "shop" } } }),
        );
        let project: DatabaseProject = self.ready(a, "shop").await;
        let branch: DatabaseBranch = self.ready(a, "preview").await;
        let snapshot: DatabaseSnapshot = self.ready(a, "nightly").await;
        let project_id = project.status.unwrap().project_id.unwrap();
        let secret = Api::<Secret>::namespaced(self.env.client.clone(), a)
            .get("shop-db")
            .await
            .unwrap();
        let password = String::from_utf8(secret.data.unwrap()["password"].0.clone()).unwrap();
        let vendor_name = self
            .vendor_projects()
            .await
            .into_iter()
            .find(|(id, _)| *id == project_id)
            .unwrap()
            .1;
        TeamA {
            project_id,
            vendor_name,
            branch_id: branch.status.unwrap().branch_id.unwrap(),
            snapshot_id: snapshot.status.unwrap().snapshot_id.unwrap(),
            password,
        }
    }

    /// Team A's objects are all still there, untouched, and its resources Ready.
    async fn team_a_untouched(&self, team_a: &TeamA) {
        let path = format!("/infrai/v1/db/project/get/{}", team_a.project_id);
        assert_eq!(
            vendor_status(&self.env.emulator(), &path, INFRAI_KEY).await,
            200
        );
        let path = format!("/infrai/v1/db/branch/get/{}", team_a.branch_id);
        assert_eq!(
            vendor_status(&self.env.emulator(), &path, INFRAI_KEY).await,
            200
        );
        let p: DatabaseProject = self.ready(&self.a, "shop").await;
        assert_eq!(
            p.status.unwrap().project_id.as_deref(),
            Some(team_a.project_id.as_str())
        );
        self.ready::<DatabaseBranch>(&self.a, "preview").await;
        self.ready::<DatabaseSnapshot>(&self.a, "nightly").await;
    }

    /// Team B got nothing of team A's: no id, name or password of A's in
    /// its Secrets, and no password of A's in what it can read of its
    /// resources (their status may repeat an id or name B wrote in a spec).
    fn team_b_has_nothing_of(&self, team_a: &TeamA) {
        let (secrets, statuses) = self.readable_by(&self.b);
        for (what, value) in [
            ("project id", &team_a.project_id),
            ("vendor name", &team_a.vendor_name),
            ("branch id", &team_a.branch_id),
            ("snapshot id", &team_a.snapshot_id),
            ("password", &team_a.password),
        ] {
            assert!(
                !secrets.contains(value.as_str()),
                "team B's Secrets hold team A's {what}"
            );
        }
        assert!(
            !statuses.contains(&team_a.password),
            "team B reads team A's password"
        );
    }
}

struct TeamA {
    project_id: String,
    vendor_name: String,
    branch_id: String,
    snapshot_id: String,
    password: String,
}

impl Drop for Tenancy {
    fn drop(&mut self) {
        for ns in [&self.a, &self.b] {
            let _ = try_kubectl(&["delete", "namespace", ns, "--wait=false"]);
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline
            && [&self.a, &self.b]
                .iter()
                .any(|ns| try_kubectl(&["get", "namespace", ns]).is_ok())
        {
            std::thread::sleep(Duration::from_millis(250));
        }
        for ns in [&self.a, &self.b] {
            if try_kubectl(&["get", "namespace", ns]).is_ok() {
                eprintln!("e2e cleanup: {ns} did not finish deleting; removing finalizers");
                for kind in ["databaseprojects", "databasebranches", "databasesnapshots"] {
                    for name in try_kubectl(&["get", kind, "-n", ns, "-o", "name"])
                        .unwrap_or_default()
                        .lines()
                    {
                        let _ = try_kubectl(&[
                            "patch",
                            name,
                            "-n",
                            ns,
                            "--type",
                            "merge",
                            "-p",
                            r#"{"metadata":{"finalizers":null}}"#,
                        ]);
                    }
                }
            }
        }
    }
}

/// The aggregated tenant roles of the default install (`dbops-edit`,
/// `dbops-view`), from `deploy/dbops.yaml`.
fn apply_tenant_roles() {
    let text = std::fs::read_to_string(repo().join("deploy/dbops.yaml")).unwrap();
    for doc in serde_yaml_ng::Deserializer::from_str(&text) {
        let value = Value::deserialize(doc).unwrap();
        let name = value["metadata"]["name"].as_str().unwrap_or_default();
        if value["kind"] == "ClusterRole" && matches!(name, "dbops-edit" | "dbops-view") {
            kubectl_stdin(&["apply", "-f", "-"], &value, None).unwrap();
        }
    }
}

/// kubectl with `object` on stdin, as the team of namespace `as_team` when given.
fn kubectl_stdin(args: &[&str], object: &Value, as_team: Option<&str>) -> Result<String, String> {
    use std::io::Write;
    let mut command = Command::new(kubectl_bin());
    command.args(args).current_dir(repo());
    if let Some(ns) = as_team {
        command.arg(format!("--as=system:serviceaccount:{ns}:{TENANT_SA}"));
    }
    let mut child = command
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("kubectl runs");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(object.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// `kubectl auth can-i` as the team of namespace `ns`: its answer (it exits
/// non-zero on "no").
fn can_i(ns: &str, args: &[&str]) -> String {
    let out = Command::new(kubectl_bin())
        .args(args)
        .arg(format!("--as=system:serviceaccount:{ns}:{TENANT_SA}"))
        .output()
        .expect("kubectl runs");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// kubectl as the team of namespace `ns`.
fn kubectl_as(ns: &str, args: &[&str]) -> Result<String, String> {
    let who = format!("--as=system:serviceaccount:{ns}:{TENANT_SA}");
    let mut all: Vec<&str> = args.to_vec();
    all.push(&who);
    try_kubectl(&all)
}

fn project_as_b(name: &str, provider: &str, extra: Value) -> Value {
    let mut spec = json!({ "providerRef": { "name": provider }, "writeConnectionSecretTo": { "name": format!("{name}-db") } });
    for (k, v) in extra.as_object().unwrap() {
        spec[k] = v.clone();
    }
    json!({ "apiVersion": "dbops.dev/v1alpha1", "kind": "DatabaseProject", "metadata": { "name": name }, "spec": spec })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a Kubernetes cluster: set KUBECONFIG and run with --ignored"]
async fn tenant_adoption_of_another_teams_objects_is_refused_and_its_deletion_harms_nothing() {
    let _turn = ONE_AT_A_TIME.lock().await;
    // Declared first, dropped last: the teams are cleaned up while it runs.
    let _operator;
    let t = Tenancy::new("adopt").await;
    _operator = Operator::start(&t.env, "1", &[]);
    let team_a = t.team_a().await;
    let b = t.b.clone();

    // externalId of A's project: not a privilege of B's namespace...
    t.apply_as(
        &b,
        project_as_b(
            "stolen",
            &t.provider("shared"),
            json!({ "externalId": team_a.project_id, "deletionPolicy": "Delete" }),
        ),
    );
    let message = t
        .stalled::<DatabaseProject>(&b, "stolen", "AdoptionNotAllowed")
        .await;
    assert!(
        message.contains("spec.externalId") && message.contains("administrator"),
        "{message}"
    );
    // ...and where adoption is allowed, A holds the project: refused, without naming A.
    t.apply_as(
        &b,
        project_as_b(
            "stolen2",
            &t.provider("adopting"),
            json!({ "externalId": team_a.project_id, "deletionPolicy": "Delete" }),
        ),
    );
    let message = t
        .stalled::<DatabaseProject>(&b, "stolen2", "AlreadyClaimed")
        .await;
    assert!(
        !message.contains(&t.a) && !message.contains("shop"),
        "{message}"
    );
    // restoreFrom.snapshotId of A's snapshot, both ways.
    t.apply_as(
        &b,
        project_as_b(
            "restored",
            &t.provider("shared"),
            json!({ "restoreFrom": { "snapshotId": team_a.snapshot_id } }),
        ),
    );
    t.stalled::<DatabaseProject>(&b, "restored", "AdoptionNotAllowed")
        .await;
    t.apply_as(
        &b,
        project_as_b(
            "restored2",
            &t.provider("adopting"),
            json!({ "restoreFrom": { "snapshotId": team_a.snapshot_id } }),
        ),
    );
    t.stalled::<DatabaseProject>(&b, "restored2", "AlreadyClaimed")
        .await;
    // A branch adopting A's branch, under a project of B's own.
    t.apply_as(&b, project_as_b("own", &t.provider("adopting"), json!({})));
    t.ready::<DatabaseProject>(&b, "own").await;
    t.apply_as(&b, json!({ "apiVersion": "dbops.dev/v1alpha1", "kind": "DatabaseBranch",
        "metadata": { "name": "br-stolen" },
        "spec": { "projectRef": { "name": "own" }, "externalId": team_a.branch_id, "deletionPolicy": "Delete" } }));
    t.stalled::<DatabaseBranch>(&b, "br-stolen", "AlreadyClaimed")
        .await;
    // A snapshot adopting A's snapshot.
    t.apply_as(&b, json!({ "apiVersion": "dbops.dev/v1alpha1", "kind": "DatabaseSnapshot",
        "metadata": { "name": "snap-stolen" },
        "spec": { "projectRef": { "name": "own" }, "externalId": team_a.snapshot_id, "deletionPolicy": "Delete" } }));
    t.stalled::<DatabaseSnapshot>(&b, "snap-stolen", "AlreadyClaimed")
        .await;
    // A raw fromBranch, where adoption is not allowed.
    t.apply_as(
        &b,
        project_as_b("own-shared", &t.provider("shared"), json!({})),
    );
    t.ready::<DatabaseProject>(&b, "own-shared").await;
    t.apply_as(
        &b,
        json!({ "apiVersion": "dbops.dev/v1alpha1", "kind": "DatabaseBranch",
        "metadata": { "name": "br-raw" },
        "spec": { "projectRef": { "name": "own-shared" }, "fromBranch": "main" } }),
    );
    t.stalled::<DatabaseBranch>(&b, "br-raw", "AdoptionNotAllowed")
        .await;

    t.team_b_has_nothing_of(&team_a);
    // Deleting every refused resource finishes (policy Delete where set),
    // and team A's objects are untouched.
    for (kind, name) in [
        ("databaseproject", "stolen"),
        ("databaseproject", "stolen2"),
        ("databaseproject", "restored"),
        ("databaseproject", "restored2"),
        ("databasebranch", "br-stolen"),
        ("databasesnapshot", "snap-stolen"),
        ("databasebranch", "br-raw"),
    ] {
        let took = t.delete_as(&b, kind, name);
        println!("e2e: tenant B deleted refused {kind} {name} in {took:?}");
    }
    t.team_a_untouched(&team_a).await;
    assert_messages_are_for_people(&[&t.a, &t.b]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a Kubernetes cluster: set KUBECONFIG and run with --ignored"]
async fn tenant_create_marks_cannot_be_forged_and_a_failed_create_never_adopts_by_name() {
    let _turn = ONE_AT_A_TIME.lock().await;
    // Declared first, dropped last: the teams are cleaned up while it runs.
    let _operator;
    let t = Tenancy::new("mark").await;
    _operator = Operator::start(&t.env, "1", &[]);
    let team_a = t.team_a().await;
    let b = t.b.clone();

    // The create mark is in status: a team cannot write it.
    t.apply_as(&b, project_as_b("own", &t.provider("shared"), json!({})));
    t.ready::<DatabaseProject>(&b, "own").await;
    let refused = kubectl_as(
        &b,
        &[
            "patch",
            "databaseproject",
            "own",
            "-n",
            &b,
            "--subresource=status",
            "--type=merge",
            "-p",
            r#"{"status":{"createRequested":true}}"#,
        ],
    );
    assert!(
        refused.is_err_and(|e| e.contains("forbidden")),
        "a team writes no status"
    );

    // A's vendor name, a vendor no document lists (the first create is
    // refused), then any spec edit: never A's project.
    t.apply_as(
        &b,
        project_as_b(
            "copycat",
            &t.provider("shared"),
            json!({ "projectName": team_a.vendor_name, "vendor": "nosuchvendor" }),
        ),
    );
    t.stalled::<DatabaseProject>(&b, "copycat", "VendorRejected")
        .await;
    kubectl_as(
        &b,
        &[
            "patch",
            "databaseproject",
            "copycat",
            "-n",
            &b,
            "--type=merge",
            "-p",
            r#"{"spec":{"writeConnectionSecretTo":{"labels":{"edited":"yes"}}}}"#,
        ],
    )
    .unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let copycat: DatabaseProject = t.get(&b, "copycat").await.unwrap();
    assert!(copycat.status.unwrap().project_id.is_none());

    // A forged annotation mark on a project waiting for a snapshot that does
    // not exist yet, asking for A's vendor name: when the snapshot comes, the
    // restore is a first create of B's own, never A's project.
    t.apply_as(&b, project_as_b("forger", &t.provider("shared"), json!({ "projectName": team_a.vendor_name, "restoreFrom": { "snapshotRef": { "name": "later" } } })));
    t.waiting::<DatabaseProject>(&b, "forger", "WaitingForSnapshot")
        .await;
    let uid = t
        .get::<DatabaseProject>(&b, "forger")
        .await
        .unwrap()
        .metadata
        .uid
        .unwrap();
    kubectl_as(
        &b,
        &[
            "annotate",
            "databaseproject",
            "forger",
            "-n",
            &b,
            &format!("dbops.dev/create-requested={uid}"),
        ],
    )
    .unwrap();
    t.apply_as(
        &b,
        json!({ "apiVersion": "dbops.dev/v1alpha1", "kind": "DatabaseSnapshot",
        "metadata": { "name": "later" }, "spec": { "projectRef": { "name": "own" } } }),
    );
    let forger: DatabaseProject = t.ready(&b, "forger").await;
    let forger_id = forger.status.unwrap().project_id.unwrap();
    assert_ne!(forger_id, team_a.project_id, "its own new project");

    t.team_b_has_nothing_of(&team_a);
    for name in ["copycat", "forger", "own"] {
        t.delete_as(&b, "databaseproject", name);
    }
    t.team_a_untouched(&team_a).await;
    assert_messages_are_for_people(&[&t.a, &t.b]);
}

impl Tenancy {
    /// Waits until `K` `name` in `ns` shows `reason` on `Reconciling` or
    /// `Stalled` (a wait is not a stall).
    async fn waiting<K>(&self, ns: &str, name: &str, reason: &str)
    where
        K: Managed + kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
    {
        let api: Api<K> = Api::namespaced(self.env.client.clone(), ns);
        wait_until(
            &format!("{ns}/{name} {reason}"),
            Duration::from_secs(60),
            || async {
                let obj = api.get_opt(name).await.ok().flatten()?;
                let conditions = K::conditions(obj.status()?);
                [conditions::RECONCILING, conditions::STALLED]
                    .iter()
                    .any(|c| {
                        conditions
                            .get(c)
                            .is_some_and(|c| c.status == "True" && c.reason == reason)
                    })
                    .then_some(())
            },
        )
        .await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a Kubernetes cluster: set KUBECONFIG and run with --ignored"]
async fn tenant_provider_admission_is_enforced_at_once_and_one_bad_template_hurts_nobody() {
    let _turn = ONE_AT_A_TIME.lock().await;
    // Declared first, dropped last: the teams are cleaned up while it runs.
    let mut operator;
    let t = Tenancy::new("admit").await;
    operator = Operator::start(&t.env, "1", &[]);
    let team_a = t.team_a().await;
    let b = t.b.clone();

    // A provider meant for team A only.
    let before = t.vendor_projects().await.len();
    t.apply_as(
        &b,
        project_as_b("borrowed", &t.provider("team-a"), json!({})),
    );
    let message = t
        .stalled::<DatabaseProject>(&b, "borrowed", "ProviderNotAllowed")
        .await;
    assert!(message.contains("administrator"), "{message}");
    assert_eq!(
        t.vendor_projects().await.len(),
        before,
        "nothing sent to the vendor"
    );
    t.delete_as(&b, "databaseproject", "borrowed");

    // A template with two nested loops: its own resource stalls within a
    // second; everything else keeps going.
    let bomb = "{% for i in range(100000) %}{% for j in range(100000) %}{{ password }}{% endfor %}{% endfor %}";
    let applied = Instant::now();
    t.apply_as(
        &b,
        json!({ "apiVersion": "dbops.dev/v1alpha1", "kind": "DatabaseProject",
        "metadata": { "name": "bomb" },
        "spec": { "providerRef": { "name": t.provider("shared") },
            "writeConnectionSecretTo": { "name": "bomb-db", "keys": { "BOOM": bomb } } } }),
    );
    t.apply_as(
        &t.a,
        json!({ "apiVersion": "dbops.dev/v1alpha1", "kind": "DatabaseProject",
        "metadata": { "name": "meanwhile" },
        "spec": { "providerRef": { "name": t.provider("shared") } } }),
    );
    t.stalled::<DatabaseProject>(&b, "bomb", "InvalidConnectionTemplate")
        .await;
    let stalled_after = applied.elapsed();
    t.ready::<DatabaseProject>(&t.a, "meanwhile").await;
    let other_ready_after = applied.elapsed();
    println!(
        "e2e: runaway template Stalled {stalled_after:?} after apply; another team's project Ready after {other_ready_after:?}"
    );
    assert!(
        Api::<Secret>::namespaced(t.env.client.clone(), &b)
            .get_opt("bomb-db")
            .await
            .unwrap()
            .is_none_or(|s| !s.data.unwrap_or_default().contains_key("BOOM")),
        "no runaway output written"
    );
    t.delete_as(&b, "databaseproject", "bomb");

    // B's own project, then B's namespace loses its label: the project
    // stalls at once (the label change wakes it), and its deletion finishes
    // without touching the vendor.
    t.apply_as(&b, project_as_b("own", &t.provider("shared"), json!({})));
    let own: DatabaseProject = t.ready(&b, "own").await;
    let own_id = own.status.unwrap().project_id.unwrap();
    let unlabelled = Instant::now();
    kubectl(&["label", "namespace", &b, "dbops.dev/tenant-of-"]);
    t.stalled::<DatabaseProject>(&b, "own", "ProviderNotAllowed")
        .await;
    println!(
        "e2e: a namespace's label removed: its project Stalled/ProviderNotAllowed after {:?}",
        unlabelled.elapsed()
    );
    t.delete_as(&b, "databaseproject", "own");
    let path = format!("/infrai/v1/db/project/get/{own_id}");
    assert_eq!(
        vendor_status(&t.env.emulator(), &path, INFRAI_KEY).await,
        200,
        "no call on behalf of a namespace the provider no longer admits"
    );
    t.team_a_untouched(&team_a).await;
    assert_messages_are_for_people(&[&t.a, &t.b]);
    let took = operator.terminate().await;
    println!("e2e: SIGTERM after the runaway template: exited in {took:?}");
    assert!(took < Duration::from_secs(10));
    // A fresh one cleans the teams up.
    operator = Operator::start(&t.env, "2", &[]);
    operator.wait_ready().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a Kubernetes cluster: set KUBECONFIG and run with --ignored"]
async fn tenant_postgres_databases_stay_apart() {
    let server = pg_support::server();
    let _turn = ONE_AT_A_TIME.lock().await;
    // Declared first, dropped last: the teams are cleaned up while it runs.
    let _operator;
    let t = Tenancy::new("pgtenant").await;
    _operator = Operator::start(&t.env, "1", &[]);
    kubectl_stdin(
        &["apply", "-f", "-"],
        &json!({ "apiVersion": "v1", "kind": "Secret",
        "metadata": { "name": "pg-admin", "namespace": t.env.ns },
        "stringData": { "password": server.password } }),
        None,
    )
    .unwrap();
    let tenants = json!({ "from": "Selector", "selector": { "matchLabels": { "dbops.dev/tenant-of": t.env.ns } } });
    for (name, adoption) in [
        ("pg", json!({ "from": "Same" })),
        ("pg-adopting", tenants.clone()),
    ] {
        kubectl_stdin(&["apply", "-f", "-"], &json!({ "apiVersion": "dbops.dev/v1alpha1", "kind": "DatabaseProvider",
            "metadata": { "name": t.provider(name) },
            "spec": { "api": "postgres", "endpoint": server.endpoint,
                "credentialsSecretRef": { "name": "pg-admin", "namespace": t.env.ns, "key": "password" },
                "allowedNamespaces": tenants, "adoption": { "allowedNamespaces": adoption } } }), None).unwrap();
    }
    let (a, b) = (t.a.clone(), t.b.clone());
    for ns in [&a, &b] {
        t.apply_as(ns, json!({ "apiVersion": "dbops.dev/v1alpha1", "kind": "DatabaseProject",
            "metadata": { "name": "app" },
            "spec": { "providerRef": { "name": t.provider("pg") }, "writeConnectionSecretTo": { "name": "app-db", "preset": "libpq" } } }));
    }
    let pa: DatabaseProject = t.ready(&a, "app").await;
    t.ready::<DatabaseProject>(&b, "app").await;
    let a_db = pa.status.unwrap().project_id.unwrap();
    let b_uri = {
        let s = Api::<Secret>::namespaced(t.env.client.clone(), &b)
            .get("app-db")
            .await
            .unwrap();
        String::from_utf8(s.data.unwrap()["DATABASE_URL"].0.clone()).unwrap()
    };
    // B's role cannot connect to A's database.
    let mut foreign = url::Url::parse(&b_uri).unwrap();
    foreign.set_path(&format!("/{a_db}"));
    let refused = pg_connect(foreign.as_str()).await.expect_err("refused");
    assert_eq!(
        refused.as_db_error().map(|e| e.code().code()),
        Some("42501"),
        "{refused}"
    );
    pg_connect(&b_uri).await.expect("its own database");
    // B names A's database: as a project to adopt, and as a branch source.
    t.apply_as(&b, json!({ "apiVersion": "dbops.dev/v1alpha1", "kind": "DatabaseProject",
        "metadata": { "name": "stolen" },
        "spec": { "providerRef": { "name": t.provider("pg") }, "externalId": a_db, "deletionPolicy": "Delete" } }));
    t.stalled::<DatabaseProject>(&b, "stolen", "AdoptionNotAllowed")
        .await;
    t.apply_as(&b, json!({ "apiVersion": "dbops.dev/v1alpha1", "kind": "DatabaseProject",
        "metadata": { "name": "stolen2" },
        "spec": { "providerRef": { "name": t.provider("pg-adopting") }, "externalId": a_db, "deletionPolicy": "Delete" } }));
    t.stalled::<DatabaseProject>(&b, "stolen2", "AlreadyClaimed")
        .await;
    t.apply_as(&b, json!({ "apiVersion": "dbops.dev/v1alpha1", "kind": "DatabaseBranch",
        "metadata": { "name": "copy" }, "spec": { "projectRef": { "name": "app" }, "fromBranch": a_db } }));
    t.stalled::<DatabaseBranch>(&b, "copy", "AdoptionNotAllowed")
        .await;
    for (kind, name) in [
        ("databaseproject", "stolen"),
        ("databaseproject", "stolen2"),
        ("databasebranch", "copy"),
    ] {
        t.delete_as(&b, kind, name);
    }
    let admin = pg_connect(&server.admin_url()).await.unwrap();
    let left = admin
        .query_one(
            "SELECT count(*) FROM pg_database WHERE datname = $1",
            &[&a_db],
        )
        .await
        .unwrap()
        .get::<_, i64>(0);
    assert_eq!(left, 1, "A's database is still there");
    t.ready::<DatabaseProject>(&a, "app").await;
    for ns in [&a, &b] {
        t.delete_as(ns, "databaseproject", "app");
    }
}

// ---------------------------------------------------------------------------
// DatabaseRole: the example's roles, applied by a tenant, against a real
// PostgreSQL behind the `postgres` provider.
// ---------------------------------------------------------------------------

/// Value of `key` in Secret `name` of namespace `ns`.
async fn secret_in(env: &TestEnv, ns: &str, name: &str, key: &str) -> String {
    let secret = Api::<Secret>::namespaced(env.client.clone(), ns)
        .get(name)
        .await
        .expect("Secret written");
    String::from_utf8(secret.data.expect("data")[key].0.clone()).unwrap()
}

/// The example's `DatabaseRole`s (`deploy/examples/roles/postgres-roles.yaml`),
/// named by resource name.
fn example_roles() -> Vec<(String, Value)> {
    let text =
        std::fs::read_to_string(repo().join("deploy/examples/roles/postgres-roles.yaml")).unwrap();
    serde_yaml_ng::Deserializer::from_str(&text)
        .map(|doc| Value::deserialize(doc).unwrap())
        .filter(|v| v["kind"] == "DatabaseRole")
        .map(|v| (v["metadata"]["name"].as_str().unwrap().to_string(), v))
        .collect()
}

/// SQLSTATE of a failed statement or connection.
fn sqlstate(error: &tokio_postgres::Error) -> Option<&str> {
    error.as_db_error().map(|e| e.code().code())
}

/// A client that, until stopped, reads the Secret's `DATABASE_URL` and
/// connects with it every 100 ms, as an application that reconnects does:
/// its count of attempts and of failures.
fn reconnecting_client(
    env: &TestEnv,
    ns: &str,
    secret: &str,
) -> (
    tokio::sync::watch::Sender<bool>,
    tokio::task::JoinHandle<(u32, Vec<String>)>,
) {
    let (stop, mut stopped) = tokio::sync::watch::channel(false);
    let api = Api::<Secret>::namespaced(env.client.clone(), ns);
    let secret = secret.to_string();
    let task = tokio::spawn(async move {
        let (mut attempts, mut failures) = (0u32, Vec::new());
        while !*stopped.borrow() {
            attempts += 1;
            let url = api
                .get(&secret)
                .await
                .ok()
                .and_then(|s| String::from_utf8(s.data?.get("DATABASE_URL")?.0.clone()).ok());
            let outcome = match url {
                None => Err("the Secret could not be read".to_string()),
                Some(url) => match pg_connect(&url).await {
                    Ok(client) => client
                        .simple_query("SELECT 1")
                        .await
                        .map(|_| ())
                        .map_err(|e| e.to_string()),
                    Err(e) => Err(e.to_string()),
                },
            };
            if let Err(e) = outcome {
                failures.push(e);
            }
            let _ = tokio::time::timeout(Duration::from_millis(100), stopped.changed()).await;
        }
        (attempts, failures)
    });
    (stop, task)
}

/// Requests a rotation of role `name` (as the team of `ns`) and waits until
/// it is done: the Secret holds the other login and the previous one is
/// disabled. How long until the Secret switched and until the rotation was
/// done, and the login the Secret holds now.
async fn rotate_role(
    t: &Tenancy,
    ns: &str,
    name: &str,
    request: &str,
) -> (Duration, Duration, String) {
    let api: Api<DatabaseRole> = Api::namespaced(t.env.client.clone(), ns);
    let before = api.get(name).await.unwrap().status.unwrap();
    let old = before.active_login.clone().unwrap();
    let handled_before = before
        .credential_rotation
        .as_ref()
        .and_then(|r| r.handled_request.clone());
    assert_ne!(handled_before.as_deref(), Some(request));
    let started = Instant::now();
    kubectl_as(
        ns,
        &[
            "annotate",
            "--overwrite",
            "databaserole",
            name,
            "-n",
            ns,
            &format!("dbops.dev/rotate-credentials={request}"),
        ],
    )
    .unwrap();
    let secret = api
        .get(name)
        .await
        .unwrap()
        .status
        .unwrap()
        .connection_secret_name
        .unwrap();
    wait_until(
        &format!("{ns}/{name}'s Secret to switch logins"),
        Duration::from_secs(60),
        || async {
            let user = secret_in(&t.env, ns, &secret, "PGUSER").await;
            (user != old).then_some(())
        },
    )
    .await;
    let switched = started.elapsed();
    let new = wait_until(
        &format!("{ns}/{name} to finish rotation {request}"),
        Duration::from_secs(180),
        || async {
            let status = api.get(name).await.ok()?.status?;
            let rotation = status.credential_rotation?;
            (rotation.handled_request.as_deref() == Some(request) && rotation.phase.is_none())
                .then_some(status.active_login?)
        },
    )
    .await;
    assert_ne!(new, old, "the Secret switched logins");
    (switched, started.elapsed(), new)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a Kubernetes cluster: set KUBECONFIG and run with --ignored"]
async fn database_roles_hold_exactly_their_grants_and_rotate_without_a_failed_connection() {
    let server = pg_support::server();
    // A workload image the node can run (`../shared/real-node/`): without
    // one (an API server with no node) the rollout part says it did not run.
    let workload_image = std::env::var("DBOPS_E2E_WORKLOAD_IMAGE").ok();
    let _turn = ONE_AT_A_TIME.lock().await;
    let _operator;
    let t = Tenancy::new("roles").await;
    _operator = Operator::start(&t.env, "1", &[]);
    t.postgres_provider(server);
    let (a, b) = (t.a.clone(), t.b.clone());
    assert_eq!(
        can_i(&a, &["auth", "can-i", "create", "databaseroles", "-n", &a]).trim(),
        "yes",
        "a team may create DatabaseRoles in its namespace"
    );
    for ns in [&a, &b] {
        t.apply_as(ns, json!({ "apiVersion": "dbops.dev/v1alpha1", "kind": "DatabaseProject",
            "metadata": { "name": "pg-app" },
            "spec": { "providerRef": { "name": t.provider("pg") }, "writeConnectionSecretTo": { "name": "pg-app-db", "preset": "libpq" } } }));
    }
    t.ready::<DatabaseProject>(&a, "pg-app").await;
    t.ready::<DatabaseProject>(&b, "pg-app").await;
    let owner = pg_connect(&secret_in(&t.env, &a, "pg-app-db", "DATABASE_URL").await)
        .await
        .expect("the owner connects");
    owner
        .batch_execute("CREATE TABLE orders (id serial PRIMARY KEY, cents int); INSERT INTO orders (cents) VALUES (100), (250)")
        .await
        .unwrap();

    // The example's roles, applied by team A (gracePeriod shortened, and
    // the rollout left out until the workload exists).
    let roles = example_roles();
    let role_spec = |name: &str| roles.iter().find(|(n, _)| n == name).unwrap().1.clone();
    let mut app = role_spec("app");
    app["spec"]["credentialRotation"]["gracePeriod"] = json!("5s");
    let rollout = app["spec"]["credentialRotation"]
        .as_object_mut()
        .unwrap()
        .remove("rollout")
        .unwrap();
    let applied = Instant::now();
    t.apply_as(&a, role_spec("reporting"));
    t.apply_as(&a, app.clone());

    // reporting names a table that does not exist yet: it waits, and says which.
    let api: Api<DatabaseRole> = Api::namespaced(t.env.client.clone(), &a);
    let waiting = wait_until(
        "reporting to wait for table customers",
        Duration::from_secs(60),
        || async {
            let role = api.get("reporting").await.ok()?;
            let ready = role.status?.conditions.get(conditions::READY)?.clone();
            (ready.reason == "WaitingForObjects").then_some(ready.message)
        },
    )
    .await;
    assert!(waiting.contains("table public.customers"), "{waiting}");
    owner
        .batch_execute("CREATE TABLE customers (id int)")
        .await
        .unwrap();
    let reporting: DatabaseRole = t.ready(&a, "reporting").await;
    println!(
        "e2e: DatabaseRole reporting Ready {:?} after apply (it waited for a table)",
        applied.elapsed()
    );
    assert_eq!(reporting.status.as_ref().unwrap().applied_grants.len(), 3);
    let reporting_url = secret_in(&t.env, &a, "reporting-db", "DATABASE_URL").await;
    assert_eq!(
        secret_in(&t.env, &a, "reporting-db", "PGUSER").await,
        "reporting"
    );
    let rep = pg_connect(&reporting_url)
        .await
        .expect("the reporting Secret connects");
    assert_eq!(pg_count(&rep, "SELECT count(*) FROM orders").await, 2);
    assert_eq!(pg_count(&rep, "SELECT count(*) FROM customers").await, 0);
    for statement in [
        "INSERT INTO orders (cents) VALUES (1)",
        "DELETE FROM orders",
        "CREATE TABLE mine (id int)",
    ] {
        let denied = rep.batch_execute(statement).await.expect_err(statement);
        assert_eq!(sqlstate(&denied), Some("42501"), "{statement}: {denied}");
    }

    // Removing a grant revokes it.
    let mut narrower = role_spec("reporting");
    narrower["spec"]["grants"][1]["tables"] = json!(["orders"]);
    t.apply_as(&a, narrower);
    wait_until(
        "reporting to lose SELECT on customers",
        Duration::from_secs(60),
        || async {
            let role = api.get("reporting").await.ok()?;
            let status = role.status.clone()?;
            (status.observed_generation == role.metadata.generation
                && role.is_ready()
                && status.applied_grants.len() == 2)
                .then_some(())
        },
    )
    .await;
    let denied = rep
        .batch_execute("SELECT * FROM customers")
        .await
        .expect_err("revoked");
    assert_eq!(sqlstate(&denied), Some("42501"));
    assert_eq!(pg_count(&rep, "SELECT count(*) FROM orders").await, 2);

    // app: every table, also those created later; no DDL.
    let app_role: DatabaseRole = t.ready(&a, "app").await;
    assert_eq!(
        app_role.status.unwrap().active_login.as_deref(),
        Some("app_a")
    );
    owner
        .batch_execute("CREATE TABLE events (id int)")
        .await
        .unwrap();
    let app_db = pg_connect(&secret_in(&t.env, &a, "app-db", "DATABASE_URL").await)
        .await
        .expect("the app Secret connects");
    app_db
        .batch_execute("INSERT INTO events VALUES (1); UPDATE orders SET cents = cents + 1")
        .await
        .expect("futureTables covers a table created later");
    let denied = app_db
        .batch_execute("DROP TABLE orders")
        .await
        .expect_err("no DDL");
    assert_eq!(sqlstate(&denied), Some("42501"));

    // Team B names A's role in its own database on the same server: roles
    // are server-wide, and B's DatabaseRole stalls without touching it.
    t.apply_as(
        &b,
        json!({ "apiVersion": "dbops.dev/v1alpha1", "kind": "DatabaseRole",
        "metadata": { "name": "thief" },
        "spec": { "projectRef": { "name": "pg-app" }, "roleName": "reporting",
            "grants": [{ "schema": "public", "privileges": ["USAGE"] }] } }),
    );
    let message = t.stalled::<DatabaseRole>(&b, "thief", "RoleConflict").await;
    assert!(message.contains("role reporting exists"), "{message}");
    t.delete_as(&b, "databaserole", "thief");
    pg_connect(&reporting_url)
        .await
        .expect("A's role is untouched by B's DatabaseRole and its deletion");

    // Alternate rotation, no rollout: a client that reconnects in a loop
    // never fails; the old login stops working after the grace period.
    let old_url = secret_in(&t.env, &a, "app-db", "DATABASE_URL").await;
    let (stop, client) = reconnecting_client(&t.env, &a, "app-db");
    let (plain_switch, plain, login) = rotate_role(&t, &a, "app", "e2e-1").await;
    assert_eq!(login, "app_b");
    let refused = pg_connect(&old_url)
        .await
        .expect_err("the old login is disabled");
    assert_eq!(sqlstate(&refused), Some("28000"), "{refused}");
    let _ = stop.send(true);
    let (attempts, failures) = client.await.unwrap();
    assert!(attempts > 20, "the client kept reconnecting ({attempts})");
    assert!(failures.is_empty(), "connections failed: {failures:?}");
    println!(
        "e2e: Alternate rotation without a rollout: Secret switched {plain_switch:?} after the request, old login disabled after {plain:?} (gracePeriod 5s; {attempts} reconnects, none failed)"
    );

    // Alternate rotation with a rollout of a Deployment that reads the Secret.
    match &workload_image {
        None => println!(
            "e2e: DID NOT RUN the rollout part: set DBOPS_E2E_WORKLOAD_IMAGE to an image the node runs (../shared/real-node/)"
        ),
        Some(image) => {
            t.apply_as(&a, json!({ "apiVersion": "apps/v1", "kind": "Deployment",
                "metadata": { "name": "web" },
                "spec": { "replicas": 1, "selector": { "matchLabels": { "app": "web" } },
                    "template": { "metadata": { "labels": { "app": "web" } },
                        "spec": { "terminationGracePeriodSeconds": 1, "containers": [{ "name": "web", "image": image,
                            "imagePullPolicy": "IfNotPresent", "command": ["sh", "-c", "sleep 3600"],
                            "envFrom": [{ "secretRef": { "name": "app-db" } }] }] } } } }));
            kubectl(&[
                "rollout",
                "status",
                "deployment/web",
                "-n",
                &a,
                "--timeout=120s",
            ]);
            let mut with_rollout = app.clone();
            with_rollout["spec"]["credentialRotation"]["rollout"] = rollout;
            t.apply_as(&a, with_rollout);
            let old_url = secret_in(&t.env, &a, "app-db", "DATABASE_URL").await;
            let (stop, client) = reconnecting_client(&t.env, &a, "app-db");
            let (rolled_switch, rolled, login) = rotate_role(&t, &a, "app", "e2e-2").await;
            assert_eq!(login, "app_a");
            let web: k8s_openapi::api::apps::v1::Deployment =
                Api::namespaced(t.env.client.clone(), &a)
                    .get("web")
                    .await
                    .unwrap();
            let template = web.spec.unwrap().template.metadata.unwrap();
            assert!(
                template
                    .annotations
                    .unwrap_or_default()
                    .contains_key("kubectl.kubernetes.io/restartedAt"),
                "the Deployment was restarted"
            );
            let status = web.status.unwrap();
            assert_eq!(status.updated_replicas, Some(1), "and rolled out");
            let refused = pg_connect(&old_url)
                .await
                .expect_err("the old login is disabled");
            assert_eq!(sqlstate(&refused), Some("28000"), "{refused}");
            let _ = stop.send(true);
            let (attempts, failures) = client.await.unwrap();
            assert!(failures.is_empty(), "connections failed: {failures:?}");
            println!(
                "e2e: Alternate rotation with a rollout of Deployment web on the node: Secret switched {rolled_switch:?} after the request, old login disabled after {rolled:?} (gracePeriod 5s; {attempts} reconnects, none failed)"
            );
            t.delete_as(&a, "deployment", "web");
        }
    }

    // Deleting the project deletes its roles first; no role is left behind.
    drop((rep, app_db, owner));
    let took = t.delete_as(&a, "databaseproject", "pg-app");
    println!("e2e: project with two DatabaseRoles deleted in {took:?}");
    assert!(
        api.list(&ListParams::default())
            .await
            .unwrap()
            .items
            .is_empty(),
        "the project waited for its roles"
    );
    let admin = pg_connect(&server.admin_url()).await.unwrap();
    let left = admin
        .query_one(
            "SELECT count(*) FROM pg_roles WHERE rolname IN ('reporting', 'app', 'app_a', 'app_b')",
            &[],
        )
        .await
        .unwrap()
        .get::<_, i64>(0);
    assert_eq!(left, 0, "every role of the DatabaseRoles is dropped");
    assert_messages_are_for_people(&[&a, &b]);
    t.delete_as(&b, "databaseproject", "pg-app");
}

// ---------------------------------------------------------------------------
// Preview data: masked and schema-only branches, applied by a tenant, with a
// real PostgreSQL behind the `postgres` provider.
// ---------------------------------------------------------------------------

/// The example's `DatabaseBranch`es (`deploy/examples/previews/masked-branch.yaml`).
fn example_preview_branches() -> Vec<(String, Value)> {
    let text = std::fs::read_to_string(repo().join("deploy/examples/previews/masked-branch.yaml"))
        .unwrap();
    serde_yaml_ng::Deserializer::from_str(&text)
        .map(|doc| Value::deserialize(doc).unwrap())
        .filter(|v| v["kind"] == "DatabaseBranch")
        .map(|v| (v["metadata"]["name"].as_str().unwrap().to_string(), v))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a Kubernetes cluster: set KUBECONFIG and run with --ignored"]
async fn masked_and_schema_only_branches_hand_out_only_what_spec_data_allows() {
    let server = pg_support::server();
    let _turn = ONE_AT_A_TIME.lock().await;
    let _operator;
    let t = Tenancy::new("previews").await;
    _operator = Operator::start(&t.env, "1", &[]);
    t.postgres_provider(server);
    let a = t.a.clone();
    t.apply_as(&a, json!({ "apiVersion": "dbops.dev/v1alpha1", "kind": "DatabaseProject",
        "metadata": { "name": "pg-app" },
        "spec": { "providerRef": { "name": t.provider("pg") }, "writeConnectionSecretTo": { "name": "pg-app-db", "preset": "libpq" } } }));
    t.ready::<DatabaseProject>(&a, "pg-app").await;
    let owner_url = secret_in(&t.env, &a, "pg-app-db", "DATABASE_URL").await;
    let owner = pg_connect(&owner_url).await.unwrap();
    owner
        .batch_execute(
            "CREATE TABLE users (id serial PRIMARY KEY, email text UNIQUE NOT NULL, full_name text, phone text);
             CREATE TABLE orders (id serial PRIMARY KEY, customer_email text REFERENCES users (email), cents int);
             INSERT INTO users (email, full_name, phone) SELECT 'person' || n || '@shop.example', 'Person ' || n, '+1 (555) 01' || lpad(n::text, 2, '0') FROM generate_series(1, 30) n;
             INSERT INTO orders (customer_email, cents) SELECT 'person' || (n % 30 + 1) || '@shop.example', n FROM generate_series(1, 90) n;",
        )
        .await
        .unwrap();
    let originals: Vec<String> = owner
        .query("SELECT email FROM users UNION ALL SELECT full_name FROM users UNION ALL SELECT phone FROM users", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    drop(owner);

    // The example's branches, as the team. A branch that leaves `phone`
    // unmasked stalls and gets no Secret.
    let branches = example_preview_branches();
    let spec = |name: &str| branches.iter().find(|(n, _)| n == name).unwrap().1.clone();
    let applied = Instant::now();
    t.apply_as(&a, spec("pg-app-masked"));
    t.apply_as(&a, spec("pg-app-empty"));
    let mut leaky = spec("pg-app-masked");
    leaky["metadata"]["name"] = json!("pg-app-leaky");
    leaky["spec"]["writeConnectionSecretTo"]["name"] = json!("pg-app-leaky-db");
    leaky["spec"]["data"]["masking"][0]["columns"]
        .as_object_mut()
        .unwrap()
        .remove("phone");
    t.apply_as(&a, leaky);

    let masked: DatabaseBranch = t.ready(&a, "pg-app-masked").await;
    println!(
        "e2e: masked branch Ready {:?} after apply",
        applied.elapsed()
    );
    assert!(masked.status.unwrap().data_applied.is_some());
    let preview = pg_connect(&secret_in(&t.env, &a, "pg-app-masked-db", "DATABASE_URL").await)
        .await
        .expect("the masked branch's Secret connects");
    let seen: Vec<String> = preview
        .query("SELECT email FROM users UNION ALL SELECT full_name FROM users UNION ALL SELECT phone FROM users UNION ALL SELECT customer_email FROM orders", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(seen.len(), 180);
    for value in &originals {
        assert!(!seen.contains(value), "{value} reached the preview");
    }
    assert_eq!(
        pg_count(
            &preview,
            "SELECT count(*) FROM orders JOIN users ON users.email = orders.customer_email"
        )
        .await,
        90,
        "joins on the masked key still match"
    );
    let parent = pg_connect(&owner_url).await.unwrap();
    assert_eq!(
        pg_count(
            &parent,
            "SELECT count(*) FROM users WHERE email LIKE 'person%@shop.example'"
        )
        .await,
        30,
        "the parent is unchanged"
    );

    let empty: DatabaseBranch = t.ready(&a, "pg-app-empty").await;
    assert!(empty.status.unwrap().data_applied.is_some());
    let schema_only = pg_connect(&secret_in(&t.env, &a, "pg-app-empty-db", "DATABASE_URL").await)
        .await
        .unwrap();
    assert_eq!(
        pg_count(&schema_only, "SELECT count(*) FROM users").await,
        0
    );
    assert_eq!(
        pg_count(&schema_only, "SELECT count(*) FROM orders").await,
        0
    );

    let message = t
        .stalled::<DatabaseBranch>(&a, "pg-app-leaky", "UnmaskedColumns")
        .await;
    assert!(message.contains("public.users.phone"), "{message}");
    assert!(
        Api::<Secret>::namespaced(t.env.client.clone(), &a)
            .get_opt("pg-app-leaky-db")
            .await
            .unwrap()
            .is_none(),
        "no Secret for a branch that would leak"
    );
    drop((preview, parent, schema_only));

    // Reset from parent, as the team: the parent gains a row and the branch
    // a table of its own; after the reset the branch has the parent's rows,
    // masked, under the same Secret and the same URI, and not its table.
    let uri = secret_in(&t.env, &a, "pg-app-masked-db", "DATABASE_URL").await;
    pg_connect(&uri)
        .await
        .unwrap()
        .batch_execute("CREATE TABLE scratch (x int)")
        .await
        .unwrap();
    pg_connect(&owner_url)
        .await
        .unwrap()
        .batch_execute("INSERT INTO users (email, full_name, phone) VALUES ('newcomer@shop.example', 'New Comer', '+1 (555) 0199')")
        .await
        .unwrap();
    let asked = Instant::now();
    kubectl_as(
        &a,
        &[
            "annotate",
            "databasebranch",
            "pg-app-masked",
            "-n",
            &a,
            "dbops.dev/reset-from-parent=e2e-1",
            "--overwrite",
        ],
    )
    .expect("the team may annotate its branch");
    let status = wait_until(
        "the reset of pg-app-masked",
        Duration::from_secs(90),
        || async {
            let b = t.get::<DatabaseBranch>(&a, "pg-app-masked").await?;
            let status = b.status?;
            let reset = status.reset.as_ref()?;
            (reset.annotation.as_deref() == Some("e2e-1") && reset.pending.is_none())
                .then_some(status)
        },
    )
    .await;
    println!(
        "e2e: reset from parent done {:?} after the annotation",
        asked.elapsed()
    );
    assert!(status.last_reset_at.is_some(), "{:?}", status.reset);
    assert!(
        status.reset.as_ref().unwrap().last_failure.is_none(),
        "{:?}",
        status.reset
    );
    assert_eq!(
        secret_in(&t.env, &a, "pg-app-masked-db", "DATABASE_URL").await,
        uri,
        "in place: the same Secret, the same URI"
    );
    let preview = pg_connect(&uri)
        .await
        .expect("the same URI connects after the reset");
    assert_eq!(
        pg_count(&preview, "SELECT count(*) FROM users").await,
        31,
        "the parent's new row arrived"
    );
    assert_eq!(
        pg_count(&preview, "SELECT count(*) FROM users WHERE email LIKE '%@shop.example' OR full_name = 'New Comer'").await,
        0,
        "masked, the new row too"
    );
    assert_eq!(
        pg_count(
            &preview,
            "SELECT count(*) FROM pg_tables WHERE tablename = 'scratch'"
        )
        .await,
        0,
        "the branch's own table went with the reset"
    );
    let events = kubectl(&[
        "get",
        "events",
        "-n",
        &a,
        "--field-selector",
        "involvedObject.name=pg-app-masked,reason=Reset",
        "-o",
        "name",
    ]);
    assert!(!events.trim().is_empty(), "a Reset Event");
    drop(preview);
    for name in ["pg-app-leaky", "pg-app-masked", "pg-app-empty"] {
        t.delete_as(&a, "databasebranch", name);
    }
    t.delete_as(&a, "databaseproject", "pg-app");
    assert_messages_are_for_people(&[&a]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a Kubernetes cluster: set KUBECONFIG and run with --ignored"]
async fn a_snapshot_schedule_runs_every_minute_prunes_and_survives_a_restart() {
    let server = pg_support::server();
    let _turn = ONE_AT_A_TIME.lock().await;
    let mut operator;
    let t = Tenancy::new("schedule").await;
    operator = Operator::start(&t.env, "1", &[]);
    t.postgres_provider(server);
    let a = t.a.clone();
    t.apply_as(
        &a,
        json!({ "apiVersion": "dbops.dev/v1alpha1", "kind": "DatabaseProject",
        "metadata": { "name": "pg-app" },
        "spec": { "providerRef": { "name": t.provider("pg") } } }),
    );
    t.ready::<DatabaseProject>(&a, "pg-app").await;

    // The example, every minute and keeping 2, applied by the team.
    let text =
        std::fs::read_to_string(repo().join("deploy/examples/previews/nightly-snapshots.yaml"))
            .unwrap();
    let mut schedule: Value = serde_yaml_ng::from_str(&text).unwrap();
    let spec = schedule["spec"].as_object_mut().unwrap();
    spec.remove("schedule");
    spec.insert("interval".into(), json!("1m"));
    spec.insert("keep".into(), json!({ "last": 2 }));
    t.apply_as(&a, schedule);
    let snapshots: Api<DatabaseSnapshot> = Api::namespaced(t.env.client.clone(), &a);
    let owned = || async {
        let mut names: Vec<String> = snapshots
            .list(&ListParams::default().labels("dbops.dev/schedule=pg-app-nightly"))
            .await
            .unwrap()
            .items
            .iter()
            .filter(|s| s.metadata.deletion_timestamp.is_none())
            .map(|s| s.name_any())
            .collect();
        names.sort();
        names
    };
    let first = wait_until("the first run", Duration::from_secs(60), || async {
        let names = owned().await;
        (names.len() == 1).then(|| names[0].clone())
    })
    .await;
    t.ready::<DatabaseSnapshot>(&a, &first).await;

    // A restart in the middle of the interval takes no extra snapshot.
    operator.kill();
    operator = Operator::start(&t.env, "2", &[]);
    operator.wait_ready().await;
    tokio::time::sleep(Duration::from_secs(10)).await;
    let after_restart = owned().await;
    let schedule: DatabaseSnapshotSchedule = Api::namespaced(t.env.client.clone(), &a)
        .get("pg-app-nightly")
        .await
        .unwrap();
    let next = schedule.status.clone().unwrap().next_run_at.unwrap().0;
    assert!(
        k8s_openapi::jiff::Timestamp::now() < next,
        "the restart and its check fit before the next slot ({next})"
    );
    assert_eq!(
        after_restart,
        std::slice::from_ref(&first),
        "no snapshot before the next slot"
    );

    // Three runs later there are two: the newest.
    let started = Instant::now();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(std::collections::BTreeSet::from([
        first.clone(),
    ])));
    let kept = wait_until(
        "three more runs, pruned to 2",
        Duration::from_secs(240),
        || {
            let seen = seen.clone();
            async move {
                let names = owned().await;
                let mut all = seen.lock().unwrap();
                all.extend(names.iter().cloned());
                (all.len() >= 4 && names.len() == 2).then_some(names)
            }
        },
    )
    .await;
    let seen = seen.lock().unwrap().clone();
    println!(
        "e2e: a 1m schedule made {} snapshots in {:?} and kept {kept:?}",
        seen.len(),
        started.elapsed()
    );
    let newest: Vec<String> = seen.iter().rev().take(2).rev().cloned().collect();
    assert_eq!(kept, newest, "retention keeps the newest");
    assert!(!kept.contains(&first), "the oldest went");
    let status = Api::<DatabaseSnapshotSchedule>::namespaced(t.env.client.clone(), &a)
        .get("pg-app-nightly")
        .await
        .unwrap()
        .status
        .unwrap();
    assert!(status.snapshot_count <= 3);

    // Deleting the schedule leaves its snapshots.
    t.delete_as(&a, "databasesnapshotschedule", "pg-app-nightly");
    let left = owned().await;
    assert!(!left.is_empty(), "the snapshots stay");
    for name in &left {
        let s = snapshots.get(name).await.unwrap();
        assert!(s.owner_references().is_empty(), "{name} is no longer owned");
    }
    for name in &left {
        t.delete_as(&a, "databasesnapshot", name);
    }
    t.delete_as(&a, "databaseproject", "pg-app");
    assert_messages_are_for_people(&[&a]);
}
