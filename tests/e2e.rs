//! End-to-end tests against a real Kubernetes cluster.
//!
//! They need a cluster: point `KUBECONFIG` at one and run
//! `cargo test --test e2e -- --ignored --test-threads=1`.
//! Without `KUBECONFIG` they are reported as ignored by a plain `cargo test`, and
//! fail with an explicit "did not run" message when asked for with `--ignored`,
//! so a missing cluster never counts as a pass.
//!
//! Each test installs `crds/`, runs the `dbops` binary out of cluster (with its
//! built-in emulator on 127.0.0.1:8470, where `deploy/examples/` points), applies
//! the project's own example YAML with `kubectl`, and checks Secrets and vendor state.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use dbops::api::v1alpha1::{DatabaseBranch, DatabaseProject, DatabaseSnapshot};
use dbops::controllers::Managed;
use k8s_openapi::api::core::v1::Secret;
use kube::api::Api;

const EMULATOR_KEY: &str = "ifr_pk_proj_dbops_emulator";
const EMULATOR: &str = "http://127.0.0.1:8470/infrai";

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
}

fn kubectl(args: &[&str]) -> String {
    let out = Command::new("kubectl")
        .args(args)
        .current_dir(repo())
        .output()
        .expect("kubectl is installed");
    assert!(
        out.status.success(),
        "kubectl {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The operator process, killed when dropped.
struct Operator(Child);

impl Operator {
    fn start() -> Self {
        Self::start_with(&[])
    }

    fn start_with(extra: &[&str]) -> Self {
        let child = Command::new(env!("CARGO_BIN_EXE_dbops"))
            .args([
                "run",
                "--metrics-listen",
                "127.0.0.1:0",
                "--resync-interval",
                "30s",
            ])
            .args(extra)
            .stdout(Stdio::inherit())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("dbops binary starts");
        Operator(child)
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
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
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn is_ready(p: &DatabaseProject) -> bool {
    p.status.as_ref().is_some_and(|s| {
        s.conditions.is_true("Ready") && s.observed_generation == p.metadata.generation
    })
}

async fn vendor_status(path: &str) -> u16 {
    reqwest::Client::new()
        .get(format!("{EMULATOR}{path}"))
        .bearer_auth(EMULATOR_KEY)
        .send()
        .await
        .map(|r| r.status().as_u16())
        .unwrap_or(0)
}

/// The tests share port 8470 (where the examples point), so they run one at a time.
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

#[tokio::test]
#[ignore = "needs a Kubernetes cluster: set KUBECONFIG and run with --ignored"]
async fn quickstart_project_becomes_ready_and_is_deleted_at_the_vendor() {
    require_cluster();
    let _turn = ONE_AT_A_TIME.lock().await;
    dbops::providers::http::ensure_crypto_provider();
    install_crds();
    let _operator = Operator::start();
    let client = kube::Client::try_default()
        .await
        .expect("cluster reachable");
    let projects: Api<DatabaseProject> = Api::namespaced(client.clone(), "default");
    let secrets: Api<Secret> = Api::namespaced(client.clone(), "default");

    let applied = Instant::now();
    kubectl(&["apply", "-f", "deploy/examples/00-provider.yaml"]);
    kubectl(&["apply", "-f", "deploy/examples/10-project.yaml"]);
    let project = wait_until("quickstart Ready", Duration::from_secs(120), || async {
        projects
            .get_opt("quickstart")
            .await
            .ok()
            .flatten()
            .filter(is_ready)
    })
    .await;
    println!(
        "e2e: apply-to-Ready for DatabaseProject quickstart took {:?}",
        applied.elapsed()
    );

    let secret = secrets
        .get("quickstart-db")
        .await
        .expect("connection Secret written");
    let data = secret.data.expect("Secret has data");
    let uri = String::from_utf8(data["uri"].0.clone()).unwrap();
    assert!(
        uri.starts_with("postgresql://"),
        "Secret uri is a postgres URL"
    );
    for key in ["host", "port", "database", "username", "password"] {
        assert!(data.contains_key(key), "Secret has {key}");
    }
    let id = project
        .status
        .unwrap()
        .project_id
        .expect("project id in status");
    assert_eq!(
        vendor_status(&format!("/v1/db/project/get/{id}")).await,
        200
    );

    kubectl(&[
        "delete",
        "-f",
        "deploy/examples/10-project.yaml",
        "--wait=true",
        "--timeout=120s",
    ]);
    assert_eq!(
        vendor_status(&format!("/v1/db/project/get/{id}")).await,
        404,
        "the vendor project is gone after the resource is deleted"
    );
}

async fn secret_uri(secrets: &Api<Secret>, name: &str) -> String {
    let secret = secrets.get(name).await.expect("Secret written");
    String::from_utf8(secret.data.expect("data")["uri"].0.clone()).unwrap()
}

#[tokio::test]
#[ignore = "needs a Kubernetes cluster: set KUBECONFIG and run with --ignored"]
async fn preview_branch_snapshot_and_restore_examples() {
    require_cluster();
    let _turn = ONE_AT_A_TIME.lock().await;
    dbops::providers::http::ensure_crypto_provider();
    install_crds();
    let _operator = Operator::start();
    let client = kube::Client::try_default()
        .await
        .expect("cluster reachable");
    let projects: Api<DatabaseProject> = Api::namespaced(client.clone(), "default");
    let branches: Api<DatabaseBranch> = Api::namespaced(client.clone(), "default");
    let snapshots: Api<DatabaseSnapshot> = Api::namespaced(client.clone(), "default");
    let secrets: Api<Secret> = Api::namespaced(client.clone(), "default");

    let applied = Instant::now();
    kubectl(&["apply", "-f", "deploy/examples/"]);
    let branch = wait_until("branch Ready", Duration::from_secs(120), || async {
        branches
            .get_opt("quickstart-preview")
            .await
            .ok()
            .flatten()
            .filter(|b| b.is_ready())
    })
    .await;
    let snapshot = wait_until("snapshot Ready", Duration::from_secs(120), || async {
        snapshots
            .get_opt("quickstart-before-migration")
            .await
            .ok()
            .flatten()
            .filter(|s| s.is_ready())
    })
    .await;
    let restored = wait_until(
        "restored project Ready",
        Duration::from_secs(120),
        || async {
            projects
                .get_opt("quickstart-restored")
                .await
                .ok()
                .flatten()
                .filter(is_ready)
        },
    )
    .await;
    println!(
        "e2e: every example Ready {:?} after apply",
        applied.elapsed()
    );

    let project_uri = secret_uri(&secrets, "quickstart-db").await;
    let branch_uri = secret_uri(&secrets, "quickstart-preview-db").await;
    let restored_uri = secret_uri(&secrets, "quickstart-restored-db").await;
    assert!(branch_uri.starts_with("postgresql://") && restored_uri.starts_with("postgresql://"));
    assert_ne!(branch_uri, project_uri, "the branch has its own endpoint");
    assert_ne!(restored_uri, project_uri, "the restore is a new project");

    let branch_id = branch.status.unwrap().branch_id.unwrap();
    let snapshot_id = snapshot.status.unwrap().snapshot_id.unwrap();
    let restored_id = restored.status.unwrap().project_id.unwrap();
    assert_eq!(
        vendor_status(&format!("/v1/db/branch/get/{branch_id}")).await,
        200
    );
    assert_eq!(
        vendor_status(&format!("/v1/db/snapshot/get/{snapshot_id}")).await,
        200
    );
    assert_eq!(
        vendor_status(&format!("/v1/db/project/get/{restored_id}")).await,
        200
    );

    kubectl(&[
        "delete",
        "-f",
        "deploy/examples/20-preview-branch.yaml",
        "--wait=true",
        "--timeout=120s",
    ]);
    assert_eq!(
        vendor_status(&format!("/v1/db/branch/get/{branch_id}")).await,
        404
    );
    kubectl(&[
        "delete",
        "-f",
        "deploy/examples/30-snapshot-restore.yaml",
        "--wait=true",
        "--timeout=120s",
    ]);
    assert_eq!(
        vendor_status(&format!("/v1/db/project/get/{restored_id}")).await,
        404
    );
    // infrai cannot delete snapshots: it stays until its project goes.
    assert_eq!(
        vendor_status(&format!("/v1/db/snapshot/get/{snapshot_id}")).await,
        200
    );
    kubectl(&[
        "delete",
        "-f",
        "deploy/examples/10-project.yaml",
        "--wait=true",
        "--timeout=120s",
    ]);
    assert_eq!(
        vendor_status(&format!("/v1/db/snapshot/get/{snapshot_id}")).await,
        404
    );
}

#[tokio::test]
#[ignore = "needs a Kubernetes cluster: set KUBECONFIG and run with --ignored"]
async fn byok_credential_rotation_and_byok_project() {
    require_cluster();
    let _turn = ONE_AT_A_TIME.lock().await;
    dbops::providers::http::ensure_crypto_provider();
    install_crds();
    let _operator = Operator::start();
    let client = kube::Client::try_default()
        .await
        .expect("cluster reachable");
    let credentials: Api<dbops::api::v1alpha1::ByokCredential> =
        Api::namespaced(client.clone(), "default");
    let projects: Api<DatabaseProject> = Api::namespaced(client.clone(), "default");

    kubectl(&["apply", "-f", "deploy/examples/00-provider.yaml"]);
    kubectl(&["apply", "-f", "deploy/examples/40-byok.yaml"]);
    let credential = wait_until("ByokCredential Ready", Duration::from_secs(120), || async {
        credentials
            .get_opt("neon")
            .await
            .ok()
            .flatten()
            .filter(|c| c.is_ready())
    })
    .await;
    wait_until("BYOK project Ready", Duration::from_secs(120), || async {
        projects
            .get_opt("quickstart-byok")
            .await
            .ok()
            .flatten()
            .filter(is_ready)
    })
    .await;
    let id = credential.status.unwrap().byok_id.unwrap();

    // Rotate by changing the Secret; the Secret watch picks it up.
    kubectl(&[
        "patch",
        "secret",
        "neon-byok-key",
        "-n",
        "default",
        "--type",
        "merge",
        "-p",
        r#"{"stringData":{"api_key":"sk-demo-rotated-key"}}"#,
    ]);
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

    kubectl(&[
        "delete",
        "-f",
        "deploy/examples/40-byok.yaml",
        "--wait=true",
        "--timeout=120s",
    ]);
    let body = reqwest::Client::new()
        .get(format!("{EMULATOR}/v1/byok/get/{id}"))
        .bearer_auth(EMULATOR_KEY)
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

async fn secret_password(secrets: &Api<Secret>, name: &str) -> String {
    let secret = secrets.get(name).await.expect("Secret written");
    String::from_utf8(secret.data.expect("data")["password"].0.clone()).unwrap()
}

#[tokio::test]
#[ignore = "needs a Kubernetes cluster: set KUBECONFIG and run with --ignored"]
async fn supabase_and_db9_examples() {
    require_cluster();
    let _turn = ONE_AT_A_TIME.lock().await;
    dbops::providers::http::ensure_crypto_provider();
    install_crds();
    let _operator = Operator::start();
    let client = kube::Client::try_default()
        .await
        .expect("cluster reachable");
    let projects: Api<DatabaseProject> = Api::namespaced(client.clone(), "default");
    let secrets: Api<Secret> = Api::namespaced(client.clone(), "default");
    kubectl(&[
        "apply",
        "-f",
        "deploy/examples/vendors/supabase.yaml",
        "-f",
        "deploy/examples/vendors/db9.yaml",
    ]);
    for name in ["supabase-app", "db9-app", "db9-app-restored"] {
        wait_until(name, Duration::from_secs(180), || async {
            projects.get_opt(name).await.ok().flatten().filter(is_ready)
        })
        .await;
    }
    // Rotate Supabase's password on request; the Secret follows once the vendor confirms.
    let before = secret_password(&secrets, "supabase-app-db").await;
    kubectl(&[
        "annotate",
        "--overwrite",
        "databaseproject/supabase-app",
        "-n",
        "default",
        "dbops.dev/rotate-credentials=e2e",
    ]);
    wait_until("rotated password", Duration::from_secs(60), || async {
        let now = secret_password(&secrets, "supabase-app-db").await;
        (now != before).then_some(())
    })
    .await;
    kubectl(&[
        "delete",
        "-f",
        "deploy/examples/vendors/supabase.yaml",
        "-f",
        "deploy/examples/vendors/db9.yaml",
        "--wait=true",
        "--timeout=180s",
    ]);
}

#[tokio::test]
#[ignore = "needs a Kubernetes cluster: set KUBECONFIG and run with --ignored"]
async fn capydb_adoption_example() {
    require_cluster();
    let _turn = ONE_AT_A_TIME.lock().await;
    dbops::providers::http::ensure_crypto_provider();
    install_crds();
    // CapyDB's API cannot create projects, so this test runs the emulator itself
    // (seeded with the example's project) and the operator without its own.
    let emulator = dbops::emulator::Emulator::new(&dbops::emulator::EmulatorConfig::default());
    emulator.capydb.add_project("prj_example");
    let (_addr, _server) = emulator
        .clone()
        .spawn("127.0.0.1:8470")
        .await
        .expect("port 8470 free");
    let _operator = Operator::start_with(&["--emulator=false"]);
    let client = kube::Client::try_default()
        .await
        .expect("cluster reachable");
    let projects: Api<DatabaseProject> = Api::namespaced(client.clone(), "default");
    let secrets: Api<Secret> = Api::namespaced(client.clone(), "default");
    kubectl(&["apply", "-f", "deploy/examples/vendors/capydb.yaml"]);
    wait_until("capydb-app Ready", Duration::from_secs(120), || async {
        projects
            .get_opt("capydb-app")
            .await
            .ok()
            .flatten()
            .filter(is_ready)
    })
    .await;
    let secret = secrets.get("capydb-app-db").await.unwrap();
    assert!(secret.data.unwrap().contains_key("pooledUri"));
    kubectl(&[
        "delete",
        "-f",
        "deploy/examples/vendors/capydb.yaml",
        "--wait=true",
        "--timeout=120s",
    ]);
    assert!(
        emulator.capydb.project_password("prj_example").is_some(),
        "Retain: still at CapyDB"
    );
}

#[tokio::test]
#[ignore = "needs a Kubernetes cluster: set KUBECONFIG and run with --ignored"]
async fn two_replicas_elect_one_leader_and_fail_over() {
    require_cluster();
    let _turn = ONE_AT_A_TIME.lock().await;
    install_crds();
    let client = kube::Client::try_default()
        .await
        .expect("cluster reachable");
    let leases: Api<k8s_openapi::api::coordination::v1::Lease> =
        Api::namespaced(client.clone(), "default");
    let holder = || {
        let leases = leases.clone();
        async move {
            leases
                .get_opt("dbops-e2e-leader")
                .await
                .ok()
                .flatten()?
                .spec?
                .holder_identity
        }
    };
    let le = [
        "--emulator=false",
        "--leader-election=true",
        "--lease-name",
        "dbops-e2e-leader",
        "--lease-namespace",
        "default",
        "--lease-duration",
        "5s",
    ];
    let first = Command::new(env!("CARGO_BIN_EXE_dbops"))
        .args(["run", "--metrics-listen", "127.0.0.1:0"])
        .args(le)
        .env("POD_NAME", "e2e-first")
        .spawn()
        .expect("starts");
    let mut first = Operator(first);
    wait_until("first leader", Duration::from_secs(30), || async {
        holder().await.filter(|h| h == "e2e-first")
    })
    .await;
    let _second = Operator(
        Command::new(env!("CARGO_BIN_EXE_dbops"))
            .args(["run", "--metrics-listen", "127.0.0.1:0"])
            .args(le)
            .env("POD_NAME", "e2e-second")
            .spawn()
            .expect("starts"),
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        holder().await.as_deref(),
        Some("e2e-first"),
        "the standby waits"
    );
    // Kill the leader without letting it release the Lease: the standby takes over after expiry.
    let _ = first.0.kill();
    let killed = Instant::now();
    wait_until("failover", Duration::from_secs(30), || async {
        holder().await.filter(|h| h == "e2e-second")
    })
    .await;
    println!(
        "e2e: standby took over {:?} after the leader was killed (lease 5s)",
        killed.elapsed()
    );
}
