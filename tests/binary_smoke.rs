//! The `dbops` binary as a newcomer runs it: `dbops run` with its defaults
//! (built-in emulator on 127.0.0.1:8470), pointed by KUBECONFIG at the
//! in-memory Kubernetes API, with the project's own `deploy/examples/` applied.
//! This is the README quick start minus the real cluster (see tests/e2e.rs).

mod support;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use dbops::api::v1alpha1::{
    ByokCredential, DatabaseBranch, DatabaseProject, DatabaseProvider, DatabaseSnapshot,
};
use dbops::controllers::Managed;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, DeleteParams, PostParams};
use serde::Deserialize;

struct Operator(Child);

impl Drop for Operator {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn apply_examples(client: &kube::Client) -> Vec<String> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/examples");
    // Only the quick-start files at the top (kubectl apply -f deploy/examples/ is not recursive).
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    let mut applied = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        for doc in serde_yaml_ng::Deserializer::from_str(&text) {
            let value = serde_json::Value::deserialize(doc).unwrap();
            if value.is_null() {
                continue;
            }
            let kind = value["kind"].as_str().unwrap().to_string();
            let ns = value["metadata"]["namespace"]
                .as_str()
                .unwrap_or("default")
                .to_string();
            let pp = PostParams::default();
            match kind.as_str() {
                "Secret" => {
                    Api::<Secret>::namespaced(client.clone(), &ns)
                        .create(&pp, &serde_json::from_value(value).unwrap())
                        .await
                        .unwrap();
                }
                "DatabaseProvider" => {
                    Api::<DatabaseProvider>::all(client.clone())
                        .create(&pp, &serde_json::from_value(value).unwrap())
                        .await
                        .unwrap();
                }
                "DatabaseProject" => {
                    Api::<DatabaseProject>::namespaced(client.clone(), &ns)
                        .create(&pp, &serde_json::from_value(value).unwrap())
                        .await
                        .unwrap();
                }
                "DatabaseBranch" => {
                    Api::<DatabaseBranch>::namespaced(client.clone(), &ns)
                        .create(&pp, &serde_json::from_value(value).unwrap())
                        .await
                        .unwrap();
                }
                "DatabaseSnapshot" => {
                    Api::<DatabaseSnapshot>::namespaced(client.clone(), &ns)
                        .create(&pp, &serde_json::from_value(value).unwrap())
                        .await
                        .unwrap();
                }
                "ByokCredential" => {
                    Api::<ByokCredential>::namespaced(client.clone(), &ns)
                        .create(&pp, &serde_json::from_value(value).unwrap())
                        .await
                        .unwrap();
                }
                other => panic!("deploy/examples has a {other} this test does not know"),
            }
            applied.push(kind);
        }
    }
    applied
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dbops_run_with_defaults_brings_every_example_to_ready() {
    let kube = support::fake_kube::FakeKube::start().await;
    let kubeconfig = std::env::temp_dir().join(format!("dbops-smoke-{}.yaml", std::process::id()));
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: {}\nusers:\n- name: fake\n  user: {{}}\ncontexts:\n- name: fake\n  context:\n    cluster: fake\n    user: fake\ncurrent-context: fake\n",
            kube.url
        ),
    )
    .unwrap();
    // The emulator's state file goes where the test says, not into the user's state directory.
    let state_dir = tempfile::tempdir().unwrap();
    let state_file = state_dir.path().join("emulator-state.json");
    let _operator = Operator(
        Command::new(env!("CARGO_BIN_EXE_dbops"))
            .args(["run", "--metrics-listen", "127.0.0.1:0"])
            .env("KUBECONFIG", &kubeconfig)
            .env("DBOPS_EMULATOR_STATE", &state_file)
            .env_remove("DBOPS_EMULATOR_LISTEN")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap(),
    );
    let client = kube.client();
    let applied = Instant::now();
    let kinds = apply_examples(&client).await;
    assert!(kinds.contains(&"DatabaseProject".to_string()), "{kinds:?}");

    let projects: Api<DatabaseProject> = Api::namespaced(client.clone(), "default");
    let deadline = Instant::now() + Duration::from_secs(30);
    let project = loop {
        if let Some(p) = projects.get_opt("quickstart").await.unwrap()
            && p.status
                .as_ref()
                .is_some_and(|s| s.conditions.is_true("Ready"))
        {
            break p;
        }
        assert!(Instant::now() < deadline, "quickstart never became Ready");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    println!(
        "smoke: apply-to-Ready (operator start included) took {:?}",
        applied.elapsed()
    );
    let secrets = Api::<Secret>::namespaced(client.clone(), "default");
    let uri = |name: &'static str| {
        let secrets = secrets.clone();
        async move {
            let secret = secrets.get(name).await.unwrap();
            String::from_utf8(secret.data.unwrap()["uri"].0.clone()).unwrap()
        }
    };
    assert!(uri("quickstart-db").await.starts_with("postgresql://"));
    let id = project
        .status
        .as_ref()
        .and_then(|s| s.project_id.clone())
        .unwrap();
    let saved = std::fs::read_to_string(&state_file).expect("the emulator keeps a state file");
    assert!(
        saved.contains(&id),
        "the vendor project is in the emulator's state file"
    );

    // The branch, the snapshot and the restore from the other examples follow.
    let branches: Api<DatabaseBranch> = Api::namespaced(client.clone(), "default");
    let snapshots: Api<DatabaseSnapshot> = Api::namespaced(client.clone(), "default");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let branch_ready = branches
            .get_opt("quickstart-preview")
            .await
            .unwrap()
            .is_some_and(|b| b.is_ready());
        let snapshot_ready = snapshots
            .get_opt("quickstart-before-migration")
            .await
            .unwrap()
            .is_some_and(|s| s.is_ready());
        let restore_ready = projects
            .get_opt("quickstart-restored")
            .await
            .unwrap()
            .is_some_and(|p| p.is_ready());
        let byok_ready = projects
            .get_opt("quickstart-byok")
            .await
            .unwrap()
            .is_some_and(|p| p.is_ready());
        if branch_ready && snapshot_ready && restore_ready && byok_ready {
            break;
        }
        if Instant::now() >= deadline {
            for name in ["quickstart-restored", "quickstart-byok"] {
                eprintln!(
                    "{name}: {:?}",
                    projects.get_opt(name).await.unwrap().and_then(|p| p.status)
                );
            }
            eprintln!(
                "branch: {:?}",
                branches
                    .get_opt("quickstart-preview")
                    .await
                    .unwrap()
                    .and_then(|p| p.status)
            );
            eprintln!(
                "snapshot: {:?}",
                snapshots
                    .get_opt("quickstart-before-migration")
                    .await
                    .unwrap()
                    .and_then(|p| p.status)
            );
            eprintln!(
                "byok: {:?}",
                Api::<ByokCredential>::namespaced(client.clone(), "default")
                    .get_opt("neon")
                    .await
                    .unwrap()
                    .and_then(|p| p.status)
            );
            panic!("examples never all became Ready");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!("smoke: all examples Ready after {:?}", applied.elapsed());
    assert_ne!(
        uri("quickstart-preview-db").await,
        uri("quickstart-db").await
    );
    assert_ne!(
        uri("quickstart-restored-db").await,
        uri("quickstart-db").await
    );

    // The project really exists in the emulator the binary serves.
    let id = project.status.unwrap().project_id.unwrap();
    let vendor = |id: String| async move {
        reqwest::Client::new()
            .get(format!(
                "http://127.0.0.1:8470/infrai/v1/db/project/get/{id}"
            ))
            .bearer_auth("ifr_pk_proj_dbops_emulator")
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    };
    assert_eq!(vendor(id.clone()).await, 200);
    // `dbops run`'s built-in emulator listens on loopback only, so its fault
    // injection is open there (no key), for local experiments.
    let faults = reqwest::Client::new()
        .put("http://127.0.0.1:8470/_faults/infrai")
        .json(&serde_json::json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(faults.status().as_u16(), 204);

    projects
        .delete("quickstart", &DeleteParams::default())
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while projects.get_opt("quickstart").await.unwrap().is_some() {
        assert!(Instant::now() < deadline, "quickstart was never deleted");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(vendor(id).await, 404);
    let _ = std::fs::remove_file(kubeconfig);
}
