//! The Supabase client against the Supabase emulator, over real HTTP on loopback.

use std::sync::Arc;
use std::time::Duration;

use dbops::api::v1alpha1::ProviderApi;
use dbops::emulator::{Emulator, EmulatorConfig};
use dbops::providers::http::VendorHttp;
use dbops::providers::supabase::SupabaseClient;
use dbops::providers::{
    BranchLifecycle, BranchRequest, CredentialApi, Operation, Password, ProjectApi,
    ProjectLifecycle, ProjectRequest, Provider, ProviderConfig, ProviderError, ResourceState,
    RestoreRequest, RotationProgress, RotationTarget, SnapshotRequest, VendorBranch, VendorProject,
};
use secrecy::SecretString;

const KEY: &str = "sbp_test_token";
const ORG: &str = "acme-org";
const INITIAL_PASSWORD: &str = "Initial-Passw0rd-for-tests";

async fn start() -> (Emulator, String) {
    let emulator = Emulator::new(
        &EmulatorConfig::default()
            .with_keys("supabase", [KEY])
            .unwrap(),
    );
    let (addr, _) = emulator.clone().spawn("127.0.0.1:0").await.unwrap();
    (emulator, format!("http://{addr}/supabase"))
}

fn client_in(endpoint: &str, key: &str, organization: Option<&str>) -> SupabaseClient {
    let http = VendorHttp::new(
        ProviderApi::Supabase,
        endpoint,
        &SecretString::from(key.to_string()),
        Duration::from_secs(5),
        None,
    )
    .unwrap();
    SupabaseClient::new(http, organization.map(str::to_string))
}

fn client(endpoint: &str) -> SupabaseClient {
    client_in(endpoint, KEY, Some(ORG))
}

fn project(name: &str) -> ProjectRequest {
    ProjectRequest {
        name: name.to_string(),
        region: Some("eu-west-1".into()),
        db_password: Some(Password::new(INITIAL_PASSWORD)),
        ..Default::default()
    }
}

fn branch(project_id: &str, name: &str) -> BranchRequest {
    BranchRequest {
        db_password: None,
        resumed: dbops::providers::Resume::First,
        project_id: project_id.to_string(),
        branch_name: name.to_string(),
        from_branch: None,
        schema_only: false,
    }
}

/// Reads the project until it is Ready; returns it and how many reads were not.
async fn until_ready(c: &SupabaseClient, id: &str) -> (VendorProject, Vec<ResourceState>) {
    let mut before = Vec::new();
    for _ in 0..10 {
        let p = c.get_project(id).await.unwrap();
        if p.state == ResourceState::Ready {
            return (p, before);
        }
        before.push(p.state);
    }
    panic!("project {id} never became ready: {before:?}");
}

async fn branch_until_ready(
    c: &SupabaseClient,
    project_id: &str,
    id: &str,
) -> (VendorBranch, Vec<ResourceState>) {
    let mut before = Vec::new();
    for _ in 0..10 {
        let b = c.get_branch(project_id, id).await.unwrap();
        if b.state == ResourceState::Ready {
            return (b, before);
        }
        before.push(b.state);
    }
    panic!("branch {id} never became ready: {before:?}");
}

fn coming_up() -> ResourceState {
    ResourceState::Provisioning("COMING_UP".into())
}

#[tokio::test]
async fn create_sends_the_operator_password_and_no_read_returns_it() {
    let (emu, endpoint) = start().await;
    let c = client(&endpoint);
    let created = c.create_project(&project("shop")).await.unwrap();
    assert_eq!(created.id.len(), 20, "a project ref: {}", created.id);
    assert!(created.id.chars().all(|ch| ch.is_ascii_lowercase()));
    assert_eq!(created.name, "shop");
    assert_eq!(created.region.as_deref(), Some("eu-west-1"));
    assert!(created.created_at.is_some());
    assert_eq!(created.state, coming_up());
    assert!(
        created.connection_uri.is_none(),
        "the create answer has no database host"
    );

    let views = emu.supabase.projects();
    assert_eq!(views.len(), 1);
    assert_eq!(views[0].reference, created.id);
    assert_eq!(views[0].organization_slug, ORG);
    assert_eq!(views[0].region, "eu-west-1");
    assert_eq!(
        emu.supabase.db_password(&created.id).as_deref(),
        Some(INITIAL_PASSWORD),
        "db_pass is the password the operator chose"
    );

    // Neither the project read nor the list carries the password.
    let http = reqwest::Client::new();
    for path in [format!("v1/projects/{}", created.id), "v1/projects".into()] {
        let body = http
            .get(format!("{endpoint}/{path}"))
            .bearer_auth(KEY)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(body.contains(&created.id), "{body}");
        assert!(
            !body.contains(INITIAL_PASSWORD),
            "{path} leaks the password"
        );
        assert!(!body.contains("db_pass"), "{path} has a db_pass field");
    }
}

#[tokio::test]
async fn provisioning_is_visible_through_get_project() {
    let (emu, endpoint) = start().await;
    let c = client(&endpoint);
    let created = c.create_project(&project("app")).await.unwrap();
    let (ready, before) = until_ready(&c, &created.id).await;
    assert_eq!(before, vec![coming_up(), coming_up()]);
    assert_eq!(ready.id, created.id);
    assert_eq!(ready.name, "app");
    let uri = ready.connection_uri.clone().unwrap();
    assert_eq!(
        uri.expose(),
        format!(
            "postgresql://postgres@db.{}.supabase.co:5432/postgres",
            created.id
        ),
        "the direct connection, without the password the operator keeps"
    );
    // The pooled (Supavisor) connection, from the pooler config, also without it.
    let region = ready.region.clone().unwrap();
    assert_eq!(
        ready.pooled_uri.clone().unwrap().expose(),
        format!(
            "postgresql://postgres.{}@aws-0-{region}.pooler.supabase.com:6543/postgres",
            created.id
        )
    );
    // Stays ready.
    assert_eq!(c.get_project(&created.id).await.unwrap(), ready);

    // A project that fails to come up is reported as failed.
    let broken = c.create_project(&project("broken")).await.unwrap();
    assert!(emu.supabase.fail_project(&broken.id));
    assert_eq!(
        c.get_project(&broken.id).await.unwrap().state,
        ResourceState::Failed("INIT_FAILED".into())
    );

    // With no provisioning delay, the first read is ready.
    emu.supabase.set_provisioning_polls(0);
    let quick = c.create_project(&project("quick")).await.unwrap();
    assert_eq!(
        c.get_project(&quick.id).await.unwrap().state,
        ResourceState::Ready
    );
}

#[tokio::test]
async fn a_resumed_create_reuses_the_project_of_its_name_and_a_first_attempt_refuses_it() {
    let (emu, endpoint) = start().await;
    let c = client(&endpoint);
    let first = c.create_project(&project("shop")).await.unwrap();
    // A retry after a crash (resumed): same name, same organization.
    let resumed = ProjectRequest {
        resumed: dbops::providers::Resume::OwnName,
        ..project("shop")
    };
    let retry = ProjectLifecycle::create_project(&c, &resumed, "any-key")
        .await
        .unwrap();
    assert_eq!(retry.id, first.id);
    assert_eq!(emu.supabase.project_count(), 1);
    // A first attempt under the same name: someone else's project, not adopted.
    let conflict = c.create_project(&project("shop")).await.unwrap_err();
    assert!(conflict.is_name_conflict(), "{conflict}");
    assert_eq!(emu.supabase.project_count(), 1);

    // The same name in another organization is another project.
    let other_org = client_in(&endpoint, KEY, Some("other-org"));
    let elsewhere = other_org.create_project(&project("shop")).await.unwrap();
    assert_ne!(elsewhere.id, first.id);
    // Another name is another project.
    let other = c.create_project(&project("shop-2")).await.unwrap();
    assert_ne!(other.id, first.id);
    assert_eq!(emu.supabase.project_count(), 3);

    // Once the project is gone, the name can be used again.
    c.delete_project(&first.id).await.unwrap();
    let recreated = c.create_project(&project("shop")).await.unwrap();
    assert_ne!(recreated.id, first.id);
    assert_eq!(emu.supabase.project_count(), 3);
}

#[tokio::test]
async fn create_needs_an_organization_a_password_and_managed_mode() {
    let (emu, endpoint) = start().await;
    let no_org = client_in(&endpoint, KEY, None);
    let err = no_org.create_project(&project("p")).await.unwrap_err();
    assert_eq!(err.status(), Some(400));
    assert!(!err.is_transient());
    assert!(
        matches!(&err, ProviderError::Http { code: Some(code), .. } if code == "ORGANIZATION_REQUIRED"),
        "{err:?}"
    );
    assert!(
        err.to_string()
            .contains("spec.supabase.organizationSlug is required on the DatabaseProvider"),
        "{err}"
    );

    let c = client(&endpoint);
    let no_password = ProjectRequest {
        db_password: None,
        ..project("p")
    };
    let err = c.create_project(&no_password).await.unwrap_err();
    assert_eq!(err.status(), Some(400));
    assert!(err.to_string().contains("DB_PASSWORD_REQUIRED"), "{err}");

    let byok = ProjectRequest {
        mode: Some("byok".into()),
        ..project("p")
    };
    let err = c.create_project(&byok).await.unwrap_err();
    assert!(err.to_string().contains("MODE_UNSUPPORTED"), "{err}");

    // The document gives no way to ask for a version: refused, not dropped.
    let versioned = ProjectRequest {
        postgres_version: Some("16".into()),
        ..project("p")
    };
    let err = c.create_project(&versioned).await.unwrap_err();
    assert!(
        err.to_string().contains("remove spec.postgresVersion"),
        "{err}"
    );
    assert!(!err.is_transient());
    assert_eq!(emu.supabase.project_count(), 0, "nothing reached Supabase");
}

#[tokio::test]
async fn get_and_delete_a_project() {
    let (emu, endpoint) = start().await;
    let c = client(&endpoint);
    let p = c.create_project(&project("gone-soon")).await.unwrap();
    let got = c.get_project(&p.id).await.unwrap();
    assert_eq!(
        (got.id.as_str(), got.name.as_str()),
        (p.id.as_str(), "gone-soon")
    );
    let b = c.create_branch(&branch(&p.id, "preview")).await.unwrap();
    assert_eq!(emu.supabase.branch_count(), 1);

    c.delete_project(&p.id).await.unwrap();
    assert_eq!(emu.supabase.project_count(), 0);
    assert_eq!(
        emu.supabase.branch_count(),
        0,
        "branches go with their project"
    );
    let gone = c.get_project(&p.id).await.unwrap_err();
    assert!(gone.is_not_found(), "{gone}");
    assert!(!gone.is_transient());
    assert!(c.get_branch(&p.id, &b.id).await.unwrap_err().is_not_found());
    let again = c.delete_project(&p.id).await.unwrap_err();
    assert!(again.is_not_found(), "{again}");
}

#[tokio::test]
async fn branches_come_up_with_their_own_database_and_credentials() {
    let (emu, endpoint) = start().await;
    let c = client(&endpoint);
    let p = c.create_project(&project("main-app")).await.unwrap();

    let created = ProjectApi::get_project(&c, &p.id).await.unwrap();
    assert_eq!(created.state, coming_up());
    let b = BranchLifecycle::create_branch(&c, &branch(&p.id, "preview"), "k")
        .await
        .unwrap();
    assert_eq!(b.name, "preview");
    assert_eq!(b.project_id, p.id);
    assert_eq!(b.id.len(), 36, "a branch id is a UUID: {}", b.id);
    assert_eq!(
        b.state,
        ResourceState::Provisioning("CREATING_PROJECT".into())
    );
    assert!(b.connection_uri.is_none());

    let (ready, before) = branch_until_ready(&c, &p.id, &b.id).await;
    assert_eq!(before, vec![coming_up(), coming_up()]);
    assert_eq!(
        (ready.id.as_str(), ready.name.as_str()),
        (b.id.as_str(), "preview")
    );
    assert_eq!(ready.project_id, p.id);
    let details = url::Url::parse(ready.connection_uri.as_ref().unwrap().expose()).unwrap();
    assert_eq!(details.username(), "postgres");
    assert_eq!(
        Some(details.password().unwrap().to_string()),
        emu.supabase.db_password(&b.id),
        "the branch config's own db_pass"
    );
    let host = details.host_str().unwrap();
    assert!(
        host.starts_with("db.") && host.ends_with(".supabase.co"),
        "{host}"
    );
    assert_ne!(host, format!("db.{}.supabase.co", p.id), "its own database");
    assert_eq!(details.port(), Some(5432));
    assert_eq!(details.path(), "/postgres");

    // A resumed retry with the same name is the same branch; a first attempt is refused.
    assert!(
        c.create_branch(&branch(&p.id, "preview"))
            .await
            .unwrap_err()
            .is_name_conflict()
    );
    let resumed = BranchRequest {
        resumed: dbops::providers::Resume::OwnName,
        ..branch(&p.id, "preview")
    };
    let retry = c.create_branch(&resumed).await.unwrap();
    assert_eq!(retry.id, b.id);
    assert_eq!(retry.state, ResourceState::Ready);
    assert_eq!(emu.supabase.branch_count(), 1);

    // Supabase branches start from production only.
    let from = BranchRequest {
        from_branch: Some("preview".into()),
        ..branch(&p.id, "feature")
    };
    let err = c.create_branch(&from).await.unwrap_err();
    assert_eq!(err.status(), Some(400));
    assert!(err.to_string().contains("FROM_BRANCH_UNSUPPORTED"), "{err}");
    assert_eq!(emu.supabase.branch_count(), 1);

    // A branch is looked up within its project.
    let other = c.create_project(&project("other")).await.unwrap();
    assert!(
        c.get_branch(&other.id, &b.id)
            .await
            .unwrap_err()
            .is_not_found()
    );

    BranchLifecycle::delete_branch(&c, &p.id, &b.id)
        .await
        .unwrap();
    assert_eq!(emu.supabase.branch_count(), 0);
    assert!(c.get_branch(&p.id, &b.id).await.unwrap_err().is_not_found());
    // The document lists no 404 for a branch delete: a branch no longer
    // listed counts as deleted, so a second delete succeeds.
    c.delete_branch(&p.id, &b.id).await.unwrap();
    // A branch of a missing project.
    assert!(
        c.create_branch(&branch("nosuchprojectrefxxxxx", "x"))
            .await
            .unwrap_err()
            .is_not_found()
    );
}

#[tokio::test]
async fn rotation_sets_the_proposed_password() {
    let (emu, endpoint) = start().await;
    let c = client(&endpoint);
    let p = c.create_project(&project("rotating")).await.unwrap();
    let proposed = Password::generate();
    let progress = c
        .rotate_credentials(
            &RotationTarget::Project { id: p.id.clone() },
            &proposed,
            "k",
        )
        .await
        .unwrap();
    assert_eq!(
        progress,
        RotationProgress::Done {
            connection_uri: None,
            pooled_uri: None,
            password: Some(proposed.clone()),
        }
    );
    assert_eq!(
        emu.supabase.db_password(&p.id).as_deref(),
        Some(proposed.expose())
    );
    assert_ne!(proposed.expose(), INITIAL_PASSWORD);

    // A branch is rotated through its own ref; its config then has the new password.
    let b = c.create_branch(&branch(&p.id, "preview")).await.unwrap();
    let branch_password = Password::generate();
    let progress = c
        .rotate_credentials(
            &RotationTarget::Branch {
                project_id: p.id.clone(),
                id: b.id.clone(),
            },
            &branch_password,
            "k2",
        )
        .await
        .unwrap();
    assert!(
        matches!(progress, RotationProgress::Done { password: Some(ref pw), .. } if *pw == branch_password)
    );
    assert_eq!(
        emu.supabase.db_password(&b.id).as_deref(),
        Some(branch_password.expose())
    );
    assert_eq!(
        emu.supabase.db_password(&p.id).as_deref(),
        Some(proposed.expose()),
        "the project's password is untouched"
    );
    let (ready, _) = branch_until_ready(&c, &p.id, &b.id).await;
    let uri = url::Url::parse(ready.connection_uri.unwrap().expose()).unwrap();
    assert_eq!(uri.password(), Some(branch_password.expose()));

    // Unknown project; empty password refused by Supabase.
    let err = c
        .rotate_credentials(
            &RotationTarget::Project {
                id: "nosuchprojectrefxxxxx".into(),
            },
            &proposed,
            "k3",
        )
        .await
        .unwrap_err();
    assert!(err.is_not_found(), "{err}");
    let err = c
        .rotate_credentials(
            &RotationTarget::Project { id: p.id.clone() },
            &Password::new(""),
            "k4",
        )
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(400));
    assert_eq!(
        emu.supabase.db_password(&p.id).as_deref(),
        Some(proposed.expose())
    );
    // The error never shows the password.
    let err = c
        .rotate_credentials(
            &RotationTarget::Project {
                id: "nosuchprojectrefxxxxx".into(),
            },
            &proposed,
            "k5",
        )
        .await
        .unwrap_err();
    assert!(!err.to_string().contains(proposed.expose()));
    assert!(!format!("{err:?}").contains(proposed.expose()));
}

#[tokio::test]
async fn backups_and_point_in_time_restore_in_place() {
    let (emu, endpoint) = start().await;
    let c = client(&endpoint);
    let p = c.create_project(&project("pitr")).await.unwrap();
    until_ready(&c, &p.id).await;

    let backups = c.list_backups(&p.id).await.unwrap();
    assert!(backups.pitr_enabled);
    assert_eq!(backups.region.as_deref(), Some("eu-west-1"));
    assert_eq!(backups.backups.len(), 1);
    assert_eq!(backups.backups[0].status, "COMPLETED");
    let earliest = backups.earliest_recovery_unix.unwrap();
    let latest = backups.latest_recovery_unix.unwrap();
    assert!(earliest <= latest);

    // Outside the window: refused, nothing restored.
    let err = c.restore_pitr(&p.id, earliest - 3600).await.unwrap_err();
    assert_eq!(err.status(), Some(400));
    assert!(emu.supabase.pitr_restores(&p.id).is_empty());

    c.restore_pitr(&p.id, latest).await.unwrap();
    assert_eq!(emu.supabase.pitr_restores(&p.id), vec![latest]);
    let (back, before) = until_ready(&c, &p.id).await;
    assert_eq!(
        before,
        vec![
            ResourceState::Provisioning("RESTORING".into()),
            ResourceState::Provisioning("RESTORING".into())
        ]
    );
    assert_eq!(back.id, p.id, "restored in place");
    assert_eq!(emu.supabase.project_count(), 1);

    assert!(emu.supabase.set_pitr_enabled(&p.id, false));
    let err = c.restore_pitr(&p.id, latest).await.unwrap_err();
    assert_eq!(err.status(), Some(400));
    assert!(err.to_string().contains("not enabled"), "{err}");
    assert!(
        c.list_backups("nosuchprojectrefxxxxx")
            .await
            .unwrap_err()
            .is_not_found()
    );
}

#[tokio::test]
async fn requests_without_a_valid_token_get_401() {
    let (emu, endpoint) = start().await;
    let c = client_in(&endpoint, "sbp_wrong_token", Some(ORG));
    let err = c.create_project(&project("p")).await.unwrap_err();
    assert_eq!(err.status(), Some(401));
    assert_eq!(err.category(), "VendorUnauthorized");
    assert!(!err.is_transient());
    assert_eq!(emu.supabase.project_count(), 0);
    let err = c.get_project("abcdefghijklmnopqrst").await.unwrap_err();
    assert_eq!(err.status(), Some(401));

    // No header at all.
    let raw = reqwest::Client::new()
        .get(format!("{endpoint}/v1/projects"))
        .send()
        .await
        .unwrap();
    assert_eq!(raw.status(), 401);
    let body: serde_json::Value = raw.json().await.unwrap();
    assert_eq!(body, serde_json::json!({ "message": "Unauthorized" }));
}

#[tokio::test]
async fn vendor_errors_keep_their_status_and_message() {
    let (_emu, endpoint) = start().await;
    let c = client(&endpoint);
    // 404: unknown ref, also when the ref would climb out of its path segment.
    let err = c.get_project("nosuchprojectrefxxxxx").await.unwrap_err();
    assert!(err.is_not_found(), "{err}");
    assert_eq!(err.category(), "VendorNotFound");
    assert!(err.to_string().contains("not found"), "{err}");
    c.create_project(&project("p")).await.unwrap();
    let err = c.get_project("../projects").await.unwrap_err();
    assert!(err.is_not_found(), "{err}");

    // 400: Supabase refuses names with dots; the message comes from its body.
    let err = c.create_project(&project("a.b")).await.unwrap_err();
    assert_eq!(err.status(), Some(400));
    assert_eq!(err.category(), "VendorRejected");
    assert!(err.to_string().contains("must not contain dots"), "{err}");

    // 400: a missing required field, sent raw.
    let raw = reqwest::Client::new()
        .post(format!("{endpoint}/v1/projects"))
        .bearer_auth(KEY)
        .json(&serde_json::json!({ "name": "x", "organization_slug": ORG }))
        .send()
        .await
        .unwrap();
    assert_eq!(raw.status(), 400);
    let body: serde_json::Value = raw.json().await.unwrap();
    assert_eq!(body["message"], "db_pass is required");

    // Nobody listening: transient.
    let dead = client_in("http://127.0.0.1:9/supabase", KEY, Some(ORG));
    let err = dead.get_project("abcdefghijklmnopqrst").await.unwrap_err();
    assert!(matches!(err, ProviderError::Transport { .. }), "{err:?}");
    assert!(err.is_transient());
}

#[tokio::test]
async fn snapshots_restores_and_byok_are_unsupported() {
    let (emu, endpoint) = start().await;
    let provider: Arc<dyn Provider> = dbops::providers::build(
        &ProviderConfig {
            spec: dbops::api::v1alpha1::DatabaseProviderSpec {
                request_timeout_seconds: 5,
                supabase: Some(dbops::api::v1alpha1::SupabaseSettings {
                    organization_slug: ORG.into(),
                }),
                ..ProviderConfig::new(
                    ProviderApi::Supabase,
                    Some(endpoint.clone()),
                    SecretString::default(),
                )
                .spec
            },
            api_key: SecretString::from(KEY.to_string()),
        },
        None,
    )
    .unwrap();
    assert_eq!(provider.api(), ProviderApi::Supabase);
    assert!(provider.needs_operator_password());
    for op in <Operation as strum::IntoEnumIterator>::iter() {
        let expected = matches!(
            op,
            Operation::ProjectCreate
                | Operation::ProjectGet
                | Operation::ProjectDelete
                | Operation::BranchCreate
                | Operation::BranchGet
                | Operation::BranchDelete
                | Operation::CredentialRotate
                | Operation::BranchCredentialRotate
                | Operation::RoleManage
        );
        assert_eq!(provider.supports(op), expected, "{op}");
    }

    // The provider works through the trait object.
    let p = provider
        .create_project(&project("via-trait"), "k")
        .await
        .unwrap();
    assert_eq!(provider.get_project(&p.id).await.unwrap().id, p.id);

    let unsupported = |err: ProviderError, expected: Operation| {
        assert!(
            matches!(err, ProviderError::Unsupported { api: ProviderApi::Supabase, operation } if operation == expected),
            "{err:?}"
        );
        assert_eq!(err.category(), "UnsupportedByProvider");
    };
    let snap = SnapshotRequest {
        project_id: p.id.clone(),
        label: None,
    };
    unsupported(
        provider.create_snapshot(&snap, "k").await.unwrap_err(),
        Operation::SnapshotCreate,
    );
    unsupported(
        provider.get_snapshot(&p.id, "s").await.unwrap_err(),
        Operation::SnapshotGet,
    );
    unsupported(
        provider.delete_snapshot(&p.id, "s").await.unwrap_err(),
        Operation::SnapshotDelete,
    );
    let restore = RestoreRequest {
        db_password: None,
        resumed: dbops::providers::Resume::First,
        snapshot_id: "s".into(),
        new_name: None,
    };
    unsupported(
        provider.restore_snapshot(&restore, "k").await.unwrap_err(),
        Operation::SnapshotRestore,
    );
    unsupported(
        provider.restore_status("h").await.unwrap_err(),
        Operation::SnapshotRestore,
    );
    // Rotation is synchronous: there is no job to poll.
    let polled = provider
        .credentials_for(&RotationTarget::Project { id: p.id.clone() })
        .unwrap()
        .rotation_status(&RotationTarget::Project { id: p.id.clone() }, "job")
        .await
        .unwrap_err();
    assert!(
        matches!(polled, ProviderError::InvalidResponse { .. }),
        "{polled:?}"
    );
    unsupported(
        provider
            .byok_for(Operation::ByokRegister)
            .map(|_| ())
            .unwrap_err(),
        Operation::ByokRegister,
    );
    assert_eq!(emu.supabase.project_count(), 1, "no call created anything");
}
