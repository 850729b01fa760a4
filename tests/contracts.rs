//! Contract tests: the vendor documents are the contract.
//!
//! - The examples of every document in `vendor-apis/` are extracted into
//!   `src/emulator/base/documented/` (checked here against the documents whenever
//!   they are at hand; `DBOPS_UPDATE_CONTRACTS=1` rewrites them).
//! - Every client is run against a server that answers with the documented
//!   examples and nothing else, and against each emulator in strict mode.

#[path = "contracts/extract.rs"]
mod extract;

use std::path::PathBuf;

use dbops::emulator::documented::{DOCUMENTS, Document};

fn documents_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/vendor-apis")
}

#[test]
fn the_extracted_examples_match_the_documents() {
    let dir = documents_dir();
    if !dir.is_dir() {
        eprintln!(
            "NOTE: {} is not here, so the extracted examples were not compared with the documents",
            dir.display()
        );
        return;
    }
    let update = std::env::var_os("DBOPS_UPDATE_CONTRACTS").is_some();
    for (name, committed) in DOCUMENTS {
        let text = std::fs::read_to_string(dir.join(name)).unwrap();
        let extracted = extract::extract(name, &text);
        let file = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("src/emulator/base/documented")
            .join(name.replace(".txt", ".json"));
        if update {
            let mut json = serde_json::to_string_pretty(&extracted).unwrap();
            json.push('\n');
            std::fs::write(&file, json).unwrap();
            continue;
        }
        let committed: Document = serde_json::from_str(committed).unwrap();
        assert!(
            committed == extracted,
            "{} no longer matches {name}: run DBOPS_UPDATE_CONTRACTS=1 cargo test --test contracts",
            file.display()
        );
    }
}

// ---------------------------------------------------------------------------
// Every client against the documents alone, and against the strict emulators.

mod walk {
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use axum::Router;
    use axum::body::Body;
    use axum::extract::{Request, State};
    use axum::response::{IntoResponse, Response};
    use dbops::api::v1alpha1::{DatabaseProviderSpec, ProviderApi, SupabaseSettings};
    use dbops::emulator::documented::Contract;
    use dbops::providers::http::VendorHttp;
    use dbops::providers::{
        BranchRequest, Operation, Password, ProjectRequest, Provider, ProviderError, ResourceState,
        RestoreProgress, RestoreRequest, RotationProgress, RotationTarget, SnapshotRequest,
        VendorObject,
    };
    use secrecy::SecretString;
    use serde_json::{Map, Value};

    /// One request a client sent.
    #[derive(Debug, Clone)]
    pub struct Sent {
        pub method: String,
        pub path: String,
        /// The documented path it matched, if any.
        pub endpoint: Option<String>,
        pub undocumented_field: Option<String>,
    }

    type Log = Arc<Mutex<Vec<Sent>>>;

    /// A server that knows only the documents: each documented endpoint
    /// answers its first documented example (no body where the document
    /// shows none), anything else 404.
    pub struct DocServer {
        pub endpoint: String,
        pub log: Arc<Mutex<Vec<Sent>>>,
    }

    /// A documented example as served. infrai's shapes name fields without a
    /// value or a type (`{ ok, latency_ms?, error? }`): such a field is served
    /// as what its name says it is, counts as numbers, objects the document
    /// never opens (`scope`, `quota`, `probe_result`, `test_result`) and
    /// `error` as absent values, `ok` as `true`, `mode` as the document's
    /// example value, and everything else (ids,
    /// names, URIs, states, times) as a string.
    fn fill(value: &Value, key: &str) -> Value {
        match value {
            Value::Null => match key {
                "ok" => Value::Bool(true),
                // The value the document's own `policy.set` example sends.
                "mode" => Value::String("byok_only".to_string()),
                "latency_ms" | "call_count" | "spend_usd" => Value::from(0),
                "scope" | "quota" | "probe_result" | "test_result" | "error" | "next_cursor" => {
                    Value::Null
                }
                _ => Value::String(format!("{key}-1")),
            },
            Value::Object(map) => Value::Object(
                map.iter()
                    .map(|(k, v)| (k.clone(), fill(v, k)))
                    .collect::<Map<String, Value>>(),
            ),
            Value::Array(items) => Value::Array(items.iter().map(|v| fill(v, key)).collect()),
            other => other.clone(),
        }
    }

    impl DocServer {
        pub async fn start(files: &'static [&'static str]) -> Self {
            let contract = Arc::new(Contract::new(files, vec![]));
            let log: Arc<Mutex<Vec<Sent>>> = Arc::default();
            let state = (contract, log.clone());
            let app = Router::new().fallback(
                |State((contract, log)): State<(Arc<Contract>, Log)>, request: Request| async move {
                    let method = request.method().to_string();
                    let path = request.uri().path().to_string();
                    let bytes = axum::body::to_bytes(request.into_body(), 1 << 20)
                        .await
                        .unwrap_or_default();
                    let body: Option<Value> = serde_json::from_slice(&bytes).ok();
                    let endpoint = contract.endpoint(&method, &path).cloned();
                    log.lock().unwrap().push(Sent {
                        method: method.clone(),
                        path: path.clone(),
                        endpoint: endpoint.as_ref().map(|e| e.path.clone()),
                        undocumented_field: body
                            .as_ref()
                            .and_then(|b| contract.undocumented_field(&method, &path, b)),
                    });
                    let Some(endpoint) = endpoint else {
                        return (axum::http::StatusCode::NOT_FOUND, "not in the document")
                            .into_response();
                    };
                    match endpoint.responses.first() {
                        Some(example) => axum::Json(fill(&example.body, "")).into_response(),
                        None => Response::new(Body::empty()),
                    }
                },
            );
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            tokio::spawn(async move {
                let _ = axum::serve(listener, app.with_state(state)).await;
            });
            Self {
                endpoint: format!("http://{addr}"),
                log,
            }
        }

        pub fn sent(&self) -> Vec<Sent> {
            self.log.lock().unwrap().clone()
        }
    }

    pub fn provider(api: ProviderApi, endpoint: &str, key: &str) -> Arc<dyn Provider> {
        dbops::providers::http::ensure_crypto_provider();
        let http = VendorHttp::new(
            api,
            endpoint,
            &SecretString::from(key.to_string()),
            Duration::from_secs(5),
            None,
        )
        .unwrap();
        let spec = DatabaseProviderSpec {
            api,
            endpoint: Some(endpoint.to_string()),
            supabase: Some(SupabaseSettings {
                organization_slug: "contract-org".to_string(),
            }),
            ..serde_json::from_value(serde_json::json!({
                "api": api.to_string(),
                "credentialsSecretRef": {"name": "k", "namespace": "default", "key": "k"}
            }))
            .unwrap()
        };
        let vendor = dbops::providers::vendors::vendor(api).unwrap();
        let dbops::providers::vendors::Build::Http(build) = vendor.build else {
            panic!("{api} has no HTTP API document");
        };
        build(http, &spec)
    }

    /// What each step of a walk came to: `Ok(summary)` or the error's text.
    pub type Outcomes = Vec<(&'static str, Result<String, String>)>;

    /// How many times a step that is still in progress is read again.
    const POLLS: usize = 40;

    /// Every operation the provider offers, in the order an operator uses
    /// them: create and read a project, branch it, snapshot and restore it,
    /// rotate its password, delete everything. `polls` reads in-progress
    /// steps again (against an emulator that moves on).
    pub async fn walk(p: &dyn Provider, existing: &str, polls: bool) -> Outcomes {
        let mut out: Outcomes = vec![];
        let polls = if polls { POLLS } else { 0 };
        let project = if p.supports(Operation::ProjectCreate) {
            let req = ProjectRequest {
                name: "contract-project".to_string(),
                region: Some("us-east-1".to_string()),
                db_password: p.needs_operator_password().then(Password::generate),
                ..Default::default()
            };
            let id = note_created(
                &mut out,
                "project.create",
                p.create_project(&req, "contract-key-1").await,
            );
            id.unwrap_or_else(|| existing.to_string())
        } else {
            existing.to_string()
        };
        let got = ready_after(polls, || p.get_project(&project)).await;
        note_read(&mut out, "project.get", got);
        if p.supports(Operation::BranchCreate) {
            let req = BranchRequest {
                db_password: None,
                resumed: dbops::providers::Resume::First,
                project_id: project.clone(),
                branch_name: "contract-branch".to_string(),
                from_branch: None,
                schema_only: false,
            };
            let id = note_created(
                &mut out,
                "branch.create",
                p.create_branch(&req, "contract-key-2").await,
            );
            if let Some(id) = id {
                let got = ready_after(polls, || p.get_branch(&project, &id)).await;
                note_read(&mut out, "branch.get", got);
                if p.supports(Operation::BranchCredentialRotate) {
                    let target = RotationTarget::Branch {
                        project_id: project.clone(),
                        id: id.clone(),
                    };
                    out.push(("branch.rotate", rotate(p, &target, polls).await));
                }
                if p.supports(Operation::BranchDelete) {
                    out.push((
                        "branch.delete",
                        summary(p.delete_branch(&project, &id).await, |_| "ok".into()),
                    ));
                }
            }
        } else if p.supports(Operation::BranchGet) {
            out.push((
                "branch.get",
                summary(p.get_branch(&project, "pv_contract").await, |v| {
                    format!("{} uri={}", v.id, v.connection_uri.is_some())
                }),
            ));
        }
        if p.supports(Operation::SnapshotCreate) {
            let req = SnapshotRequest {
                project_id: project.clone(),
                label: None,
            };
            let id = note_created(
                &mut out,
                "snapshot.create",
                p.create_snapshot(&req, "contract-key-3").await,
            );
            if let Some(id) = id {
                let got = ready_after(polls, || p.get_snapshot(&project, &id)).await;
                note_read(&mut out, "snapshot.get", got);
                if p.supports(Operation::SnapshotRestore) {
                    out.push(("snapshot.restore", restore(p, &id, polls).await));
                }
                if p.supports(Operation::SnapshotDelete) {
                    out.push((
                        "snapshot.delete",
                        summary(p.delete_snapshot(&project, &id).await, |_| "ok".into()),
                    ));
                }
            }
        }
        if p.supports(Operation::CredentialRotate) {
            let target = RotationTarget::Project {
                id: project.clone(),
            };
            out.push(("project.rotate", rotate(p, &target, polls).await));
        }
        if p.supports(Operation::ProjectDelete) {
            out.push((
                "project.delete",
                summary(p.delete_project(&project).await, |_| "ok".into()),
            ));
        }
        out
    }

    /// Notes a create's outcome; the new object's id, if it was made.
    fn note_created<T: VendorObject>(
        out: &mut Outcomes,
        step: &'static str,
        created: Result<T, ProviderError>,
    ) -> Option<String> {
        let id = created.as_ref().ok().map(|v| v.id().to_string());
        out.push((
            step,
            summary(created, |v| format!("{} {:?}", v.id(), v.state())),
        ));
        id
    }

    /// Notes a read's outcome: id, state and whether it has a connection URI.
    fn note_read<T: VendorObject>(
        out: &mut Outcomes,
        step: &'static str,
        got: Result<T, ProviderError>,
    ) {
        let summary = summary(got, |v| {
            format!(
                "{} {:?} uri={}",
                v.id(),
                v.state(),
                v.connection_uri().is_some()
            )
        });
        out.push((step, summary));
    }

    /// `read` until what it reads is Ready (at most `polls` more times).
    async fn ready_after<T, F, Fut>(polls: usize, read: F) -> Result<T, ProviderError>
    where
        T: VendorObject,
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<T, ProviderError>>,
    {
        let mut got = read().await;
        for _ in 0..polls {
            match &got {
                Ok(v) if *v.state() != ResourceState::Ready => {
                    tokio::time::sleep(Duration::from_millis(25)).await;
                    got = read().await;
                }
                _ => break,
            }
        }
        got
    }

    async fn restore(p: &dyn Provider, snapshot: &str, polls: usize) -> Result<String, String> {
        let req = RestoreRequest {
            db_password: None,
            resumed: dbops::providers::Resume::First,
            snapshot_id: snapshot.to_string(),
            new_name: None,
        };
        let mut progress = p.restore_snapshot(&req, "contract-restore-key").await;
        for _ in 0..polls {
            match &progress {
                Ok(RestoreProgress::Pending { handle, .. }) => {
                    tokio::time::sleep(Duration::from_millis(25)).await;
                    progress = p.restore_status(handle).await;
                }
                _ => break,
            }
        }
        summary(progress, |r| match r {
            RestoreProgress::Done(v) => format!("done {} uri={}", v.id, v.connection_uri.is_some()),
            RestoreProgress::Pending { state, .. } => format!("pending {state}"),
            RestoreProgress::Failed(why) => format!("failed {why}"),
        })
    }

    async fn rotate(
        p: &dyn Provider,
        target: &RotationTarget,
        polls: usize,
    ) -> Result<String, String> {
        let api = match target {
            RotationTarget::Project { .. } => p.project_credentials(),
            RotationTarget::Branch { .. } => p.branch_credentials(),
        };
        let Some(api) = api else {
            return Err("no credential rotation".to_string());
        };
        let mut progress = api
            .rotate_credentials(target, &Password::generate(), "contract-rotate-key")
            .await;
        for _ in 0..polls {
            match &progress {
                Ok(RotationProgress::Pending { job_id, .. }) => {
                    tokio::time::sleep(Duration::from_millis(25)).await;
                    progress = api.rotation_status(target, job_id).await;
                }
                _ => break,
            }
        }
        summary(progress, |r| match r {
            RotationProgress::Done {
                connection_uri,
                password,
                ..
            } => format!(
                "done uri={} password={}",
                connection_uri.is_some(),
                password.is_some()
            ),
            RotationProgress::Pending { state, .. } => format!("pending {state}"),
            RotationProgress::Failed(why) => format!("failed {why}"),
        })
    }

    fn summary<T, E: std::fmt::Display>(
        result: Result<T, E>,
        ok: impl FnOnce(&T) -> String,
    ) -> Result<String, String> {
        result.as_ref().map(ok).map_err(|e| e.to_string())
    }
}

use dbops::api::v1alpha1::ProviderApi;
use dbops::emulator::documented;
use dbops::emulator::{Emulator, EmulatorConfig};

fn show(outcomes: &walk::Outcomes) -> String {
    outcomes
        .iter()
        .map(|(step, result)| match result {
            Ok(summary) => format!("{step}: ok {summary}"),
            Err(error) => format!("{step}: ERROR {error}"),
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Every request went to a documented endpoint with only documented fields.
fn assert_documented_requests(sent: &[walk::Sent]) {
    assert!(!sent.is_empty());
    for request in sent {
        assert!(
            request.endpoint.is_some(),
            "{} {} is not in the document",
            request.method,
            request.path
        );
        assert_eq!(
            request.undocumented_field, None,
            "{} {} sends a field the document does not list",
            request.method, request.path
        );
    }
}

async fn against_the_document(
    api: ProviderApi,
    files: &'static [&'static str],
    existing: &str,
) -> (walk::Outcomes, Vec<walk::Sent>) {
    let server = walk::DocServer::start(files).await;
    let p = walk::provider(api, &server.endpoint, "contract-key");
    let outcomes = walk::walk(&*p, existing, false).await;
    eprintln!("{api} against its document:\n{}", show(&outcomes));
    let sent = server.sent();
    assert_documented_requests(&sent);
    (outcomes, sent)
}

async fn against_the_strict_emulator(
    api: ProviderApi,
    seed: impl FnOnce(&Emulator) -> String,
) -> walk::Outcomes {
    let emulator = Emulator::new(&EmulatorConfig::default());
    emulator.set_strict(true);
    let existing = seed(&emulator);
    let (addr, _server) = emulator.clone().spawn("127.0.0.1:0").await.unwrap();
    let key = match api {
        ProviderApi::Infrai => dbops::emulator::DEFAULT_INFRAI_API_KEY,
        ProviderApi::Supabase => dbops::emulator::DEFAULT_SUPABASE_API_KEY,
        ProviderApi::Db9 => dbops::emulator::DEFAULT_DB9_API_KEY,
        ProviderApi::Capydb => dbops::emulator::DEFAULT_CAPYDB_API_KEY,
        ProviderApi::Postgres => unreachable!("postgres has no HTTP emulator"),
    };
    let p = walk::provider(api, &format!("http://{addr}/{api}"), key);
    let outcomes = walk::walk(&*p, &existing, true).await;
    eprintln!("{api} against its strict emulator:\n{}", show(&outcomes));
    // The emulator serves every field its document shows.
    assert_eq!(emulator.documented_gaps(), Vec::<String>::new(), "{api}");
    outcomes
}

fn assert_all_ok(outcomes: &walk::Outcomes) {
    for (step, result) in outcomes {
        let summary = result
            .as_ref()
            .unwrap_or_else(|e| panic!("{step} failed: {e}"));
        assert!(
            !summary.starts_with("pending") && !summary.starts_with("failed"),
            "{step} did not finish: {summary}"
        );
    }
}

/// The steps of a walk as `step: ok` or `step: error`, with the summaries
/// of the ok ones.
fn verdicts(outcomes: &walk::Outcomes) -> Vec<String> {
    outcomes
        .iter()
        .map(|(step, result)| match result {
            Ok(summary) => format!("{step}: {summary}"),
            Err(_) => format!("{step}: error"),
        })
        .collect()
}

#[tokio::test]
async fn db9_reads_every_documented_answer_and_needs_nothing_undocumented_but_the_backup_read() {
    let (outcomes, sent) = against_the_document(
        ProviderApi::Db9,
        &[documented::DB9],
        "db_01h9xxxxxxxxxxxxxxxx",
    )
    .await;
    assert_eq!(
        verdicts(&outcomes),
        [
            "project.create: db_01h9xxxxxxxxxxxxxxxx Ready",
            "project.get: db_01h9xxxxxxxxxxxxxxxx Ready uri=true",
            "branch.create: db_01h9yyyyyyyyyyyyyyyy Ready",
            // The document's one database read answers the project's database.
            "branch.get: db_01h9xxxxxxxxxxxxxxxx Ready uri=true",
            "branch.rotate: done uri=true password=true",
            "branch.delete: ok",
            "snapshot.create: bkp_01... Provisioning(\"creating\")",
            // No answer is documented for a backup read (an ASSUMED entry).
            "snapshot.get: error",
            // A restore is followed by the database it makes; none is listed.
            "snapshot.restore: pending restoring",
            "snapshot.delete: ok",
            "project.rotate: done uri=true password=true",
            "project.delete: ok",
        ]
    );
    // The password comes from the documented credentials read.
    assert!(sent.iter().any(|s| s.path.ends_with("/credentials")));
}

#[tokio::test]
async fn infrai_reads_every_documented_answer() {
    let (outcomes, sent) =
        against_the_document(ProviderApi::Infrai, &[documented::INFRAI_DB], "project-1").await;
    assert_eq!(
        verdicts(&outcomes),
        [
            "project.create: id-1 Ready",
            "project.get: id-1 Ready uri=true",
            "branch.create: id-1 Ready",
            "branch.get: id-1 Ready uri=true",
            "branch.delete: ok",
            "snapshot.create: id-1 Ready",
            "snapshot.get: id-1 Ready uri=false",
            "snapshot.restore: done id-1 uri=true",
            "project.delete: ok",
        ]
    );
    let endpoints: std::collections::BTreeSet<_> =
        sent.iter().filter_map(|s| s.endpoint.clone()).collect();
    assert!(
        endpoints.contains("/v1/db/snapshot/restore/{id}"),
        "{endpoints:?}"
    );
}

#[tokio::test]
async fn capydb_reads_every_documented_answer_and_never_posts_to_poll() {
    let (outcomes, sent) =
        against_the_document(ProviderApi::Capydb, &[documented::CAPYDB], "prj_1").await;
    assert_eq!(
        verdicts(&outcomes),
        [
            "project.get: prj_1 Ready uri=true",
            "branch.get: pv_contract uri=true",
            "project.rotate: pending pending",
        ]
    );
    let posts = sent.iter().filter(|s| s.method == "POST").count();
    assert_eq!(posts, 1, "one rotate POST: {sent:?}");
}

#[tokio::test]
async fn supabase_sends_only_documented_requests_though_no_answer_is_documented() {
    let (outcomes, sent) =
        against_the_document(ProviderApi::Supabase, &[documented::SUPABASE], "ref_1").await;
    // Every read fails against the document alone: it shows no answer bodies
    // at all, so every field the client reads is an ASSUMED entry.
    assert_eq!(
        verdicts(&outcomes),
        [
            "project.create: error",
            "project.get: error",
            "branch.create: error",
            "project.rotate: done uri=false password=true",
            "project.delete: ok",
        ]
    );
    assert!(
        sent.iter()
            .any(|s| s.method == "PATCH" && s.path.ends_with("/database/password"))
    );
}

#[tokio::test]
async fn every_client_works_end_to_end_against_its_strict_emulator() {
    for api in [
        ProviderApi::Infrai,
        ProviderApi::Supabase,
        ProviderApi::Db9,
        ProviderApi::Capydb,
    ] {
        let outcomes = against_the_strict_emulator(api, |e| {
            e.capydb.add_project("prj_contract");
            e.capydb.add_preview("prj_contract", "pv_contract");
            "prj_contract".to_string()
        })
        .await;
        assert_all_ok(&outcomes);
        let steps: Vec<&str> = outcomes.iter().map(|(step, _)| *step).collect();
        let expected: &[&str] = match api {
            ProviderApi::Capydb => &["project.get", "branch.get", "project.rotate"],
            ProviderApi::Supabase => &[
                "project.create",
                "project.get",
                "branch.create",
                "branch.get",
                "branch.rotate",
                "branch.delete",
                "project.rotate",
                "project.delete",
            ],
            ProviderApi::Db9 => &[
                "project.create",
                "project.get",
                "branch.create",
                "branch.get",
                "branch.rotate",
                "branch.delete",
                "snapshot.create",
                "snapshot.get",
                "snapshot.restore",
                "snapshot.delete",
                "project.rotate",
                "project.delete",
            ],
            ProviderApi::Infrai => &[
                "project.create",
                "project.get",
                "branch.create",
                "branch.get",
                "branch.delete",
                "snapshot.create",
                "snapshot.get",
                "snapshot.restore",
                "project.delete",
            ],
            ProviderApi::Postgres => unreachable!("not in the list above"),
        };
        assert_eq!(steps, expected, "{api}");
    }
}

#[tokio::test]
async fn the_strict_emulator_refuses_undocumented_endpoints_and_fields_and_prunes_answers() {
    let emulator = Emulator::new(&EmulatorConfig::default());
    emulator.set_strict(true);
    let (addr, _server) = emulator.clone().spawn("127.0.0.1:0").await.unwrap();
    let http = reqwest::Client::new();
    let auth = format!("Bearer {}", dbops::emulator::DEFAULT_DB9_API_KEY);
    // One DB9 call: its status and its JSON answer (null when it has none).
    let call = |method: reqwest::Method, path: &str, body: Option<serde_json::Value>| {
        let mut request = http
            .request(method, format!("http://{addr}/db9{path}"))
            .header("authorization", &auth);
        if let Some(body) = body {
            request = request.json(&body);
        }
        async move {
            let response = request.send().await.unwrap();
            let status = response.status().as_u16();
            let text = response.text().await.unwrap();
            (
                status,
                serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text)),
            )
        }
    };
    use reqwest::Method;
    // An undocumented request field is refused, in DB9's error body.
    let body = serde_json::json!({"name": "x", "colour": "blue"});
    let (status, refused) = call(Method::POST, "/customer/databases", Some(body)).await;
    assert_eq!(status, 400);
    assert!(refused.to_string().contains("colour"), "{refused}");
    // A documented create answers only the documented fields.
    let body = serde_json::json!({"name": "strict-db"});
    let (_, created) = call(Method::POST, "/customer/databases", Some(body)).await;
    let documented = [
        "admin_password",
        "admin_user",
        "connection_string",
        "created_at",
        "id",
        "name",
        "region",
        "state",
    ];
    let keys: Vec<&String> = created.as_object().unwrap().keys().collect();
    assert!(
        keys.iter().all(|k| documented.contains(&k.as_str())),
        "{keys:?}"
    );
    // The branch create answer shows `parent_database_id`; the database read does not.
    let id = created["id"].as_str().unwrap();
    let body = serde_json::json!({"name": "strict-branch"});
    let path = format!("/customer/databases/{id}/branch");
    let (_, branch) = call(Method::POST, &path, Some(body)).await;
    assert_eq!(branch["parent_database_id"], id);
    let read_path = format!("/customer/databases/{}", branch["id"].as_str().unwrap());
    let (_, read) = call(Method::GET, &read_path, None).await;
    assert!(read.get("parent_database_id").is_none(), "{read}");
    assert_eq!(read["name"], "strict-branch");
    // An endpoint no document lists answers 404.
    let (status, _) = call(Method::GET, "/customer/databases/x/not-documented", None).await;
    assert_eq!(status, 404);
    // Strict mode off: the emulator's own fields come back.
    emulator.set_strict(false);
    let (_, loose) = call(Method::GET, &read_path, None).await;
    assert_eq!(loose["parent_database_id"], id);
}

#[test]
fn every_assumption_is_about_a_documented_endpoint() {
    let documents: Vec<Document> = DOCUMENTS
        .iter()
        .map(|(_, file)| serde_json::from_str(file).unwrap())
        .collect();
    let mut count = 0;
    for (api, assumed) in dbops::providers::contract::ALL {
        for assumption in *assumed {
            count += 1;
            let listed = documents.iter().flat_map(|d| &d.endpoints).any(|e| {
                e.path == assumption.path
                    && (e.method.is_empty() || e.method.eq_ignore_ascii_case(assumption.method))
            });
            assert!(
                listed,
                "{api}: {} {} is assumed about but no document lists it",
                assumption.method, assumption.path
            );
            assert!(!assumption.why.is_empty());
        }
    }
    assert!(count >= 15, "{count}");
}

/// A call that answers nothing worth showing, as `ok`.
fn ok<T>(
    result: Result<T, dbops::providers::ProviderError>,
) -> Result<String, dbops::providers::ProviderError> {
    result.map(|_| "ok".to_string())
}

/// Every BYOK call the operator makes, in order; the outcome of each.
async fn byok_walk(p: &dyn dbops::providers::Provider) -> Vec<String> {
    use dbops::providers::byok::{Binding, Credentials, Quota, RoutingPolicy};
    use secrecy::SecretString;
    let byok = p.byok().unwrap();
    let mut out = vec![];
    let mut note = |step: &str, result: Result<String, dbops::providers::ProviderError>| {
        out.push(match result {
            Ok(summary) => format!("{step}: {summary}"),
            Err(e) => {
                eprintln!("{step}: {e}");
                format!("{step}: error")
            }
        })
    };
    let credentials = Credentials(std::collections::BTreeMap::from([(
        "api_key".to_string(),
        SecretString::from("sk-contract".to_string()),
    )]));
    let registered = byok
        .register_credential("openai", "contract", &credentials, "byok-key-1")
        .await;
    let id = registered
        .as_ref()
        .map(|r| r.id.clone())
        .unwrap_or_else(|_| "byok_1".into());
    note("register", registered.map(|r| r.id));
    let got = byok.get_credential(&id).await;
    note("get", got.map(|c| format!("{} bindings", c.bindings.len())));
    note(
        "label",
        ok(byok.set_credential_label(&id, "contract").await),
    );
    note("disable", ok(byok.set_credential_enabled(&id, false).await));
    note("enable", ok(byok.set_credential_enabled(&id, true).await));
    let binding = Binding {
        capability: Some("llm".to_string()),
        ..Default::default()
    };
    note("bind", ok(byok.bind_credential(&id, &binding).await));
    note("unbind", ok(byok.unbind_credential(&id, &binding).await));
    let quota = Quota {
        spend_limit_usd: Some(5.0),
        ..Default::default()
    };
    note("quota", ok(byok.set_credential_quota(&id, &quota).await));
    let tested = byok.test_credential(&id).await;
    note("test", tested.map(|r| format!("ok={}", r.ok)));
    note("usage", ok(byok.credential_usage(&id).await));
    let staged = byok
        .stage_rotation(
            &id,
            &SecretString::from("sk-next".to_string()),
            "byok-key-2",
        )
        .await;
    let stage = staged
        .as_ref()
        .map(|s| s.stage_id.clone())
        .unwrap_or_default();
    note("stage", ok(staged));
    note(
        "commit",
        ok(byok.commit_rotation(&id, &stage, "byok-key-3").await),
    );
    note("policy.get", ok(byok.routing_policy().await));
    let policy = RoutingPolicy {
        mode: dbops::api::v1alpha1::ByokPolicyMode::ByokOnly,
        scope: None,
    };
    note("policy.set", ok(byok.set_routing_policy(&policy).await));
    note("revoke", ok(byok.revoke_credential(&id).await));
    out
}

#[tokio::test]
async fn byok_sends_only_documented_requests_and_reads_the_documented_answers() {
    let server = walk::DocServer::start(&[documented::INFRAI_BYOK]).await;
    let p = walk::provider(ProviderApi::Infrai, &server.endpoint, "contract-key");
    let outcomes = byok_walk(&*p).await;
    eprintln!("{outcomes:#?}");
    assert_documented_requests(&server.sent());
    let errors: Vec<&String> = outcomes.iter().filter(|o| o.ends_with("error")).collect();
    assert!(errors.is_empty(), "{errors:?}");
}

#[tokio::test]
async fn byok_works_end_to_end_against_the_strict_emulator() {
    let emulator = Emulator::new(&EmulatorConfig::default());
    emulator.set_strict(true);
    let (addr, _server) = emulator.clone().spawn("127.0.0.1:0").await.unwrap();
    let p = walk::provider(
        ProviderApi::Infrai,
        &format!("http://{addr}/infrai"),
        dbops::emulator::DEFAULT_INFRAI_API_KEY,
    );
    let outcomes = byok_walk(&*p).await;
    eprintln!("{outcomes:#?}");
    let errors: Vec<&String> = outcomes.iter().filter(|o| o.ends_with("error")).collect();
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(outcomes.len(), 15);
    assert_eq!(emulator.documented_gaps(), Vec::<String>::new());
}

/// The SQL channels (`role.manage`) against the documents: DB9's SQL and
/// users endpoints answer their documented examples, and Supabase's query
/// endpoint is sent only documented fields (its answer is not documented, so
/// nothing is read from it).
#[tokio::test]
async fn sql_channels_send_documented_requests_and_read_documented_answers() {
    let server = walk::DocServer::start(&[documented::DB9]).await;
    let p = walk::provider(ProviderApi::Db9, &server.endpoint, "contract-key");
    let sql = p.sql().expect("DB9 has a SQL channel");
    let rows = sql.run_sql("db_01h9xx", "SELECT 1").await.unwrap();
    assert_eq!(
        rows,
        [
            [Some("1".to_string()), Some("alice@example.com".to_string())],
            [Some("2".to_string()), Some("bob@example.com".to_string())],
        ]
    );
    let users = sql.list_users("db_01h9xx").await.unwrap().unwrap();
    assert_eq!(users, ["admin", "app_user"]);
    let login = sql
        .create_user("db_01h9xx", "app_user")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        secrecy::ExposeSecret::expose_secret(&login),
        "postgresql://tenant_id.app_user:generated-password@db-01h9xx.db9.ai:5433/postgres"
    );
    assert!(sql.delete_user("db_01h9xx", "app_user").await.unwrap());
    let sent = server.sent();
    assert_documented_requests(&sent);
    assert_eq!(sent.len(), 4);

    let server = walk::DocServer::start(&[documented::SUPABASE]).await;
    let p = walk::provider(ProviderApi::Supabase, &server.endpoint, "contract-key");
    let sql = p.sql().expect("Supabase has a SQL channel");
    assert!(!sql.returns_rows());
    assert_eq!(
        sql.run_sql("ref_1", "SELECT 1").await.unwrap(),
        Vec::<Vec<Option<String>>>::new()
    );
    assert!(
        sql.create_user("ref_1", "x").await.unwrap().is_none(),
        "no users endpoint"
    );
    let sent = server.sent();
    assert_documented_requests(&sent);
    assert_eq!(sent.len(), 1);
    assert!(sent[0].path.ends_with("/v1/projects/ref_1/database/query"));
}
