//! The CapyDB client against the CapyDB emulator, over real HTTP on loopback.

use std::time::Duration;

use dbops::api::v1alpha1::ProviderApi;
use dbops::emulator::{Emulator, EmulatorConfig};
use dbops::providers::capydb::CapyDbClient;
use dbops::providers::http::{VendorHttp, ensure_crypto_provider};
use dbops::providers::{
    BranchApi, BranchRequest, CredentialApi, Operation, Password, ProjectApi, ProjectRequest,
    Provider, ProviderError, ResourceState, RestoreRequest, RotationProgress, RotationTarget,
    SnapshotRequest,
};
use secrecy::SecretString;

const KEY: &str = "capy_live_test_key";
/// Configured in the emulator, but not of the documented `capy_live_` form.
const MALFORMED_KEY: &str = "sk_test_not_capy";

async fn start() -> (Emulator, String) {
    let emulator = Emulator::new(
        &EmulatorConfig::default()
            .with_keys("capydb", [KEY, MALFORMED_KEY])
            .unwrap(),
    );
    let (addr, _) = emulator.clone().spawn("127.0.0.1:0").await.unwrap();
    (emulator, format!("http://{addr}/capydb"))
}

fn client(endpoint: &str, key: &str) -> CapyDbClient {
    let http = VendorHttp::new(
        ProviderApi::Capydb,
        endpoint,
        &SecretString::from(key.to_string()),
        Duration::from_secs(5),
        None,
    )
    .unwrap();
    CapyDbClient::new(http)
}

fn project(id: &str) -> RotationTarget {
    RotationTarget::Project { id: id.into() }
}

/// Rotates, returning the handle of the pending job and its state.
async fn start_rotation(c: &CapyDbClient, id: &str) -> (String, String) {
    match c
        .rotate_credentials(&project(id), &Password::generate(), "key-1")
        .await
        .unwrap()
    {
        RotationProgress::Pending { job_id, state } => (job_id, state),
        other => panic!("expected a pending job, got {other:?}"),
    }
}

fn vendor_job_id(handle: &str) -> &str {
    handle.split('#').next().unwrap()
}

fn assert_done_with(progress: &RotationProgress, password: &str) {
    match progress {
        RotationProgress::Done {
            connection_uri: Some(direct),
            pooled_uri: Some(pooled),
            password: None,
        } => {
            assert!(direct.expose().contains(&format!(":{password}@")));
            assert!(pooled.expose().contains(&format!(":{password}@")));
        }
        other => panic!("expected Done with both URLs, got {other:?}"),
    }
}

#[tokio::test]
async fn project_connections_are_read() {
    let (emu, endpoint) = start().await;
    let password = emu.capydb.add_project("prj_shop");
    let c = client(&endpoint, KEY);

    let p = c.get_project("prj_shop").await.unwrap();
    assert_eq!(p.id, "prj_shop");
    assert_eq!(p.name, "prj_shop");
    assert_eq!(p.state, ResourceState::Ready);
    let direct = p.connection_uri.clone().unwrap();
    let pooled = p.pooled_uri.clone().unwrap();
    assert!(direct.expose().starts_with("postgresql://"));
    assert!(direct.expose().contains(&format!(":{password}@")));
    assert!(pooled.expose().contains(&format!(":{password}@")));
    assert_ne!(direct, pooled, "the pooled URL is a different endpoint");

    // Nothing secret in Debug output.
    let debug = format!("{p:?}");
    assert!(!debug.contains(&password), "{debug}");
    assert_eq!(c.get_project("prj_shop").await.unwrap(), p);
}

#[tokio::test]
async fn preview_database_connections_are_read_as_branches() {
    let (emu, endpoint) = start().await;
    let project_password = emu.capydb.add_project("prj_shop");
    let preview_password = emu.capydb.add_preview("prj_shop", "pv_42").unwrap();
    assert!(emu.capydb.add_preview("prj_nope", "pv_x").is_none());
    assert_eq!(
        emu.capydb.preview_project("pv_42").as_deref(),
        Some("prj_shop")
    );
    let c = client(&endpoint, KEY);

    let b = c.get_branch("prj_shop", "pv_42").await.unwrap();
    assert_eq!(b.id, "pv_42");
    assert_eq!(b.name, "pv_42");
    assert_eq!(
        b.project_id, "",
        "the API does not say the project, and the client does not guess it"
    );
    assert_eq!(b.state, ResourceState::Ready);
    let direct = b.connection_uri.unwrap();
    assert!(direct.expose().contains(&format!(":{preview_password}@")));
    assert!(!direct.expose().contains(&project_password));
    assert!(
        b.pooled_uri
            .unwrap()
            .expose()
            .contains(&format!(":{preview_password}@"))
    );

    let missing = c.get_branch("prj_shop", "pv_missing").await.unwrap_err();
    assert!(missing.is_not_found(), "{missing}");
}

#[tokio::test]
async fn rotation_is_pending_until_the_connections_change_and_then_done() {
    let (emu, endpoint) = start().await;
    let old = emu.capydb.add_project("prj_shop");
    let preview_password = emu.capydb.add_preview("prj_shop", "pv_1").unwrap();
    let c = client(&endpoint, KEY);
    let target = project("prj_shop");

    let (handle, state) = start_rotation(&c, "prj_shop").await;
    assert_eq!(state, "pending");
    assert!(handle.starts_with("job_"));
    assert!(!handle.contains(&old), "the handle holds no password");
    assert_eq!(emu.capydb.job_count(), 1);
    assert_eq!(emu.capydb.project_password("prj_shop").unwrap(), old);

    // The worker has not finished: the connections are unchanged.
    let running = c.rotation_status(&target, &handle).await.unwrap();
    assert_eq!(
        running,
        RotationProgress::Pending {
            job_id: handle.clone(),
            state: "pending".into()
        }
    );
    assert_eq!(emu.capydb.project_password("prj_shop").unwrap(), old);

    let done = c.rotation_status(&target, &handle).await.unwrap();
    let new = emu.capydb.project_password("prj_shop").unwrap();
    assert_ne!(new, old, "the password changed when the job succeeded");
    assert_done_with(&done, &new);
    assert!(
        !format!("{done:?}").contains(&new),
        "Done's Debug is redacted"
    );
    assert_eq!(
        emu.capydb.job_state(vendor_job_id(&handle)),
        Some("succeeded")
    );

    // The connections now carry the new password; the preview database is untouched.
    let p = c.get_project("prj_shop").await.unwrap();
    assert!(p.connection_uri.unwrap().expose().contains(&new));
    assert_eq!(
        emu.capydb.preview_password("pv_1").unwrap(),
        preview_password
    );
    assert_eq!(emu.capydb.job_count(), 1);
}

#[tokio::test]
async fn polling_only_reads_and_never_starts_a_second_job() {
    let (emu, endpoint) = start().await;
    emu.capydb.add_project("prj_shop");
    let c = client(&endpoint, KEY);
    let target = project("prj_shop");
    let faults = emu.faults_of("capydb").unwrap();

    let (handle, _) = start_rotation(&c, "prj_shop").await;
    let requests_before = faults.requests();
    let mut done = 0;
    for _ in 0..6 {
        if let RotationProgress::Done { .. } = c.rotation_status(&target, &handle).await.unwrap() {
            done += 1;
        }
    }
    assert_eq!(
        done, 5,
        "the second poll sees the success, every later poll answers Done"
    );
    assert_eq!(
        faults.requests() - requests_before,
        6,
        "each poll is one read of the connections, nothing else"
    );
    assert_eq!(emu.capydb.job_count(), 1, "no second rotation was started");
}

#[tokio::test]
async fn a_job_that_finished_between_two_polls_is_seen_at_the_next_read() {
    let (emu, endpoint) = start().await;
    let old = emu.capydb.add_project("prj_shop");
    let c = client(&endpoint, KEY);
    let target = project("prj_shop");

    let (handle, _) = start_rotation(&c, "prj_shop").await;
    // CapyDB's worker runs the job to the end before the operator polls.
    assert_eq!(
        emu.capydb.advance_job(vendor_job_id(&handle)),
        Some("running")
    );
    assert_eq!(
        emu.capydb.advance_job(vendor_job_id(&handle)),
        Some("succeeded")
    );
    let new = emu.capydb.project_password("prj_shop").unwrap();
    assert_ne!(new, old);

    let done = c.rotation_status(&target, &handle).await.unwrap();
    assert_done_with(&done, &new);
    assert_eq!(emu.capydb.job_count(), 1);
}

#[tokio::test]
async fn a_failed_job_stays_pending_keeps_the_old_password_and_starts_nothing() {
    let (emu, endpoint) = start().await;
    let old = emu.capydb.add_project("prj_shop");
    let c = client(&endpoint, KEY);
    let target = project("prj_shop");

    let (handle, _) = start_rotation(&c, "prj_shop").await;
    let first = vendor_job_id(&handle).to_string();
    emu.capydb.fail_next_step(&first, "boom");
    emu.capydb.advance_job(&first);
    assert_eq!(emu.capydb.advance_job(&first), Some("failed"));

    // The document has no way to read the job: the connections never change,
    // so the rotation stays pending (the controller gives it up after its
    // limit), and no poll starts another rotation.
    for _ in 0..4 {
        let progress = c.rotation_status(&target, &handle).await.unwrap();
        assert!(
            matches!(progress, RotationProgress::Pending { ref job_id, .. } if *job_id == handle),
            "{progress:?}"
        );
    }
    assert_eq!(emu.capydb.project_password("prj_shop").unwrap(), old);
    assert_eq!(emu.capydb.job_count(), 1);
}

#[tokio::test]
async fn after_a_failed_job_a_new_rotation_can_start() {
    let (emu, endpoint) = start().await;
    let old = emu.capydb.add_project("prj_shop");
    let c = client(&endpoint, KEY);
    let (handle, _) = start_rotation(&c, "prj_shop").await;
    let job = vendor_job_id(&handle).to_string();
    emu.capydb.fail_next_step(&job, "ALTER ROLE failed");
    emu.capydb.advance_job(&job);
    emu.capydb.advance_job(&job);
    // A failed job releases the project, so a new rotate starts a new job.
    assert_eq!(emu.capydb.job_state(&job), Some("failed"));
    match c
        .rotate_credentials(&project("prj_shop"), &Password::generate(), "key-2")
        .await
        .unwrap()
    {
        RotationProgress::Pending { job_id, state } => {
            assert_ne!(vendor_job_id(&job_id), job);
            assert_eq!(state, "pending");
        }
        other => panic!("expected a new pending job, got {other:?}"),
    }
    assert_eq!(emu.capydb.project_password("prj_shop").unwrap(), old);
}

#[tokio::test]
async fn a_bare_job_id_takes_the_connections_as_they_are() {
    let (emu, endpoint) = start().await;
    emu.capydb.add_project("prj_shop");
    let c = client(&endpoint, KEY);
    let target = project("prj_shop");
    let (handle, _) = start_rotation(&c, "prj_shop").await;
    let bare = vendor_job_id(&handle).to_string();

    let done = c.rotation_status(&target, &bare).await.unwrap();
    let password = emu.capydb.project_password("prj_shop").unwrap();
    assert_done_with(&done, &password);
    assert_eq!(emu.capydb.job_count(), 1);
}

#[tokio::test]
async fn errors_arrive_in_capydb_shape() {
    let (emu, endpoint) = start().await;
    ensure_crypto_provider();
    let raw = reqwest::Client::new();

    let answer = raw
        .get(format!("{endpoint}/v1/projects/prj_shop/connections"))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 401);
    let body: serde_json::Value = answer.json().await.unwrap();
    assert!(body["error"].is_string(), "{body}");

    let answer = raw
        .get(format!("{endpoint}/v1/projects/prj_shop/connections"))
        .bearer_auth(KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 404);
    let body: serde_json::Value = answer.json().await.unwrap();
    assert!(body["error"].as_str().unwrap().contains("not found"));

    // A job carries the documented fields.
    emu.capydb.add_project("prj_shop");
    let answer = raw
        .post(format!(
            "{endpoint}/v1/projects/prj_shop/credentials/rotate"
        ))
        .bearer_auth(KEY)
        .send()
        .await
        .unwrap();
    assert!(answer.status().is_success());
    let body: serde_json::Value = answer.json().await.unwrap();
    let job = &body["job"];
    for field in [
        "attempts",
        "claimed_at",
        "claimed_by",
        "cluster_id",
        "completed_at",
        "created_at",
        "error",
        "id",
        "last_exit_code",
        "last_stderr",
        "last_stdout",
        "locked_resource",
        "max_attempts",
        "organization_id",
        "preview_database_id",
        "project_id",
        "retry_classification",
        "started_at",
        "state",
        "type",
        "updated_at",
    ] {
        assert!(job.get(field).is_some(), "job lacks {field}: {job}");
    }
    assert_eq!(job["state"], "pending");
    assert_eq!(job["project_id"], "prj_shop");
}

#[tokio::test]
async fn an_unknown_project_maps_to_not_found() {
    let (emu, endpoint) = start().await;
    let c = client(&endpoint, KEY);

    let err = c.get_project("prj_missing").await.unwrap_err();
    assert!(err.is_not_found(), "{err}");
    assert!(!err.is_transient());
    match &err {
        ProviderError::Http {
            api,
            status,
            message,
            ..
        } => {
            assert_eq!(*api, ProviderApi::Capydb);
            assert_eq!(*status, 404);
            assert_eq!(message, "project prj_missing not found");
        }
        other => panic!("expected an HTTP error, got {other:?}"),
    }

    let err = c
        .rotate_credentials(&project("prj_missing"), &Password::generate(), "k")
        .await
        .unwrap_err();
    assert!(err.is_not_found(), "{err}");
    let err = c
        .rotation_status(&project("prj_missing"), "job_x")
        .await
        .unwrap_err();
    assert!(err.is_not_found(), "{err}");
    assert_eq!(emu.capydb.job_count(), 0);

    // Ids are one path segment each: no escaping into other routes.
    emu.capydb.add_project("prj_shop");
    let err = c.get_project("../projects/prj_shop").await.unwrap_err();
    assert!(err.is_not_found(), "{err}");
}

fn assert_unsupported<T: std::fmt::Debug>(result: Result<T, ProviderError>, expected: Operation) {
    match result {
        Err(ProviderError::Unsupported { api, operation }) => {
            assert_eq!(api, ProviderApi::Capydb);
            assert_eq!(operation, expected);
        }
        other => panic!("expected Unsupported({expected}), got {other:?}"),
    }
}

#[tokio::test]
async fn what_the_api_lacks_is_unsupported() {
    let (emu, endpoint) = start().await;
    emu.capydb.add_project("prj_shop");
    emu.capydb.add_preview("prj_shop", "pv_1");
    let c = client(&endpoint, KEY);

    assert_eq!(c.api(), ProviderApi::Capydb);
    assert_eq!(
        c.capabilities(),
        &[
            Operation::ProjectGet,
            Operation::BranchGet,
            Operation::CredentialRotate
        ]
    );
    assert!(!c.needs_operator_password());
    for op in <Operation as strum::IntoEnumIterator>::iter() {
        assert_eq!(c.supports(op), c.capabilities().contains(&op), "{op}");
    }
    // What the client lacks it does not even have: only the trait object
    // answers those operations, with Unsupported.
    let p: &dyn Provider = &c;

    let req = ProjectRequest {
        name: "shop".into(),
        ..Default::default()
    };
    assert_unsupported(p.create_project(&req, "k").await, Operation::ProjectCreate);
    assert_unsupported(p.delete_project("prj_shop").await, Operation::ProjectDelete);
    let restore = RestoreRequest {
        db_password: None,
        resumed: dbops::providers::Resume::First,
        snapshot_id: "s".into(),
        new_name: None,
    };
    assert_unsupported(
        p.restore_snapshot(&restore, "k").await,
        Operation::SnapshotRestore,
    );
    let breq = BranchRequest {
        db_password: None,
        resumed: dbops::providers::Resume::First,
        project_id: "prj_shop".into(),
        branch_name: "dev".into(),
        from_branch: None,
        schema_only: false,
    };
    assert_unsupported(p.create_branch(&breq, "k").await, Operation::BranchCreate);
    assert_unsupported(
        p.delete_branch("prj_shop", "pv_1").await,
        Operation::BranchDelete,
    );
    let sreq = SnapshotRequest {
        project_id: "prj_shop".into(),
        label: None,
    };
    assert_unsupported(
        p.create_snapshot(&sreq, "k").await,
        Operation::SnapshotCreate,
    );
    assert_unsupported(
        p.get_snapshot("prj_shop", "s").await,
        Operation::SnapshotGet,
    );
    assert_unsupported(
        p.delete_snapshot("prj_shop", "s").await,
        Operation::SnapshotDelete,
    );

    // Preview databases cannot be rotated.
    let branch = RotationTarget::Branch {
        project_id: "prj_shop".into(),
        id: "pv_1".into(),
    };
    assert_unsupported(
        p.credentials_for(&branch).map(|_| ()),
        Operation::BranchCredentialRotate,
    );
    // Asked directly, the client refuses a branch target too.
    assert_unsupported(
        c.rotate_credentials(&branch, &Password::generate(), "k")
            .await,
        Operation::CredentialRotate,
    );
    assert_eq!(emu.capydb.job_count(), 0);
    // The previews and the project are untouched.
    assert!(c.get_project("prj_shop").await.is_ok());
    assert!(c.get_branch("prj_shop", "pv_1").await.is_ok());
}
