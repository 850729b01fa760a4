//! The emulator's state file: what the emulated vendors hold survives a
//! restart of the process serving them, writes are atomic, and one file
//! serves one process.

use std::time::Duration;

use dbops::emulator::persist::StateFileError;
use dbops::emulator::{DEFAULT_INFRAI_API_KEY, Emulator, EmulatorConfig};
use serde_json::{Value, json};

async fn post(base: &str, path: &str, body: Value) -> (u16, Value) {
    let response = reqwest::Client::new()
        .post(format!("{base}{path}"))
        .bearer_auth(DEFAULT_INFRAI_API_KEY)
        .json(&body)
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn get(base: &str, path: &str) -> u16 {
    reqwest::Client::new()
        .get(format!("{base}{path}"))
        .bearer_auth(DEFAULT_INFRAI_API_KEY)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// Serves `emulator` on a free port; the server stops when the handle is aborted.
async fn serve(emulator: Emulator) -> (String, tokio::task::JoinHandle<()>) {
    let (addr, handle) = emulator.spawn("127.0.0.1:0").await.unwrap();
    (format!("http://{addr}/infrai"), handle)
}

#[tokio::test]
async fn vendor_state_survives_a_restart() {
    dbops::providers::http::ensure_crypto_provider();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nested/state.json");
    let config = EmulatorConfig::default();

    let first = Emulator::with_state_file(&config, &path).unwrap();
    let (base, server) = serve(first.clone()).await;
    let (status, project) = post(
        &base,
        "/v1/db/project/create",
        json!({ "name": "keep-me", "idempotency_key": "k-1" }),
    )
    .await;
    assert_eq!(status, 200, "{project}");
    let id = project["id"].as_str().unwrap().to_string();
    let (status, credential) = post(
        &base,
        "/v1/byok/register",
        json!({ "provider": "neon", "alias": "l", "credentials": { "api_key": "sk-1" }, "idempotency_key": "b-1" }),
    )
    .await;
    assert_eq!(status, 200, "{credential}");
    // The answer came after the save: the file already holds the project.
    assert!(std::fs::read_to_string(&path).unwrap().contains(&id));
    server.abort();
    drop(first);

    // Once every handle is gone, the writer releases the file (at once in a
    // real restart: the process exits).
    let second = loop {
        match Emulator::with_state_file(&config, &path) {
            Ok(emulator) => break emulator,
            Err(StateFileError::Locked { .. }) => {
                tokio::time::sleep(Duration::from_millis(20)).await
            }
            Err(e) => panic!("{e}"),
        }
    };
    let (base, _server) = serve(second).await;
    assert_eq!(get(&base, &format!("/v1/db/project/get/{id}")).await, 200);
    // Idempotency keys are kept too: a retry after the restart returns the same project.
    let (_, again) = post(
        &base,
        "/v1/db/project/create",
        json!({ "name": "keep-me", "idempotency_key": "k-1" }),
    )
    .await;
    assert_eq!(again["id"], project["id"]);
    let byok_id = credential["byok_id"].as_str().unwrap();
    assert_eq!(get(&base, &format!("/v1/byok/get/{byok_id}")).await, 200);
    // Nothing but the state file and its lock is left in the directory.
    let mut names: Vec<String> = std::fs::read_dir(path.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["state.json", "state.json.lock"]);
}

#[tokio::test]
async fn one_state_file_serves_one_process() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.json");
    let config = EmulatorConfig::default();
    let _first = Emulator::with_state_file(&config, &path).unwrap();
    let second = Emulator::with_state_file(&config, &path);
    let Err(error) = second else {
        panic!("a second emulator must not share the state file");
    };
    assert!(matches!(error, StateFileError::Locked { .. }), "{error}");
    assert!(error.to_string().contains("--emulator-state"), "{error}");
}

#[tokio::test]
async fn an_unreadable_state_file_is_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.json");
    std::fs::write(&path, b"{ not json").unwrap();
    let Err(error) = Emulator::with_state_file(&EmulatorConfig::default(), &path) else {
        panic!("a corrupt state file must not be replaced by an empty state");
    };
    assert!(
        matches!(error, StateFileError::Unreadable { .. }),
        "{error}"
    );
    assert!(error.to_string().contains("move it away"), "{error}");
    assert_eq!(std::fs::read(&path).unwrap(), b"{ not json");
}

#[tokio::test]
async fn concurrent_writes_are_all_saved() {
    dbops::providers::http::ensure_crypto_provider();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.json");
    let emulator = Emulator::with_state_file(&EmulatorConfig::default(), &path).unwrap();
    let (base, _server) = serve(emulator).await;
    let creates = (0..40).map(|i| {
        let base = base.clone();
        async move {
            let (status, body) = post(
                &base,
                "/v1/db/project/create",
                json!({ "name": format!("p{i}"), "idempotency_key": format!("k{i}") }),
            )
            .await;
            assert_eq!(status, 200, "{body}");
            body["id"].as_str().unwrap().to_string()
        }
    });
    let ids = futures::future::join_all(creates).await;
    let saved = std::fs::read_to_string(&path).unwrap();
    for id in ids {
        assert!(saved.contains(&id), "{id} answered before it was saved");
    }
}
