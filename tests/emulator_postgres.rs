//! The emulated vendors with real databases (`--emulator-postgres`), against
//! a real PostgreSQL server (see `tests/support/postgres.rs`): the dbops
//! provider clients drive each emulated API, every URI handed out is
//! connected to, and every claim about data (branches, snapshots, restores),
//! passwords and deletion is checked on the server itself.

mod support;

use std::sync::Arc;
use std::time::Duration;

use dbops::api::v1alpha1::{ProviderApi, SupabaseSettings};
use dbops::emulator::capydb::CapyDbEmulator;
use dbops::emulator::db9::Db9Emulator;
use dbops::emulator::infrai::InfraiEmulator;
use dbops::emulator::real::{CONNECT_TIMEOUT, RealDatabases};
use dbops::emulator::supabase::SupabaseEmulator;
use dbops::emulator::{
    DEFAULT_CAPYDB_API_KEY, DEFAULT_DB9_API_KEY, DEFAULT_INFRAI_API_KEY, DEFAULT_SUPABASE_API_KEY,
    Emulator, EmulatorConfig,
};
use dbops::providers::{
    BranchRequest, Password, ProjectRequest, Provider, ProviderConfig, ProviderError,
    ResourceState, RestoreProgress, RestoreRequest, RotationProgress, RotationTarget,
    SnapshotRequest, VendorObject, build,
};
use secrecy::SecretString;
use serde_json::Value;
use support::postgres::server;
use tokio_postgres::{Client, NoTls};

const ORGANIZATION: &str = "emulator-org";

/// An emulator on a free port; with `real`, making real databases on the
/// test server. Returns it and its base URL.
async fn emulator(real: bool) -> (Emulator, String) {
    dbops::providers::http::ensure_crypto_provider();
    let mut config = EmulatorConfig::default();
    if real {
        let databases =
            RealDatabases::new(&server().admin_url(), CONNECT_TIMEOUT).expect("the URL is valid");
        databases.check().await.expect("the test server is usable");
        config = config.with_real_databases(Arc::new(databases));
    }
    let emulator = Emulator::new(&config);
    let (addr, _) = emulator.clone().spawn("127.0.0.1:0").await.unwrap();
    (emulator, format!("http://{addr}"))
}

fn key(api: ProviderApi) -> &'static str {
    match api {
        ProviderApi::Infrai => DEFAULT_INFRAI_API_KEY,
        ProviderApi::Supabase => DEFAULT_SUPABASE_API_KEY,
        ProviderApi::Db9 => DEFAULT_DB9_API_KEY,
        ProviderApi::Capydb => DEFAULT_CAPYDB_API_KEY,
        other => panic!("the emulator does not serve {other}"),
    }
}

/// The dbops client of `api` against the emulator at `base`.
fn provider(api: ProviderApi, base: &str) -> Arc<dyn Provider> {
    let mut config = ProviderConfig::new(
        api,
        Some(format!("{base}/{api}")),
        SecretString::from(key(api).to_string()),
    );
    config.spec.supabase = Some(SupabaseSettings {
        organization_slug: ORGANIZATION.to_string(),
    });
    build(&config, None).expect("the client builds")
}

fn name(what: &str) -> String {
    format!("{what}-{:08x}", rand::random::<u32>())
}

async fn connect(uri: &str) -> Result<Client, tokio_postgres::Error> {
    let (client, connection) = tokio_postgres::connect(uri, NoTls).await?;
    tokio::spawn(connection);
    Ok(client)
}

async fn admin() -> Client {
    connect(&server().admin_url())
        .await
        .expect("admin connects")
}

fn uri(object: &impl VendorObject) -> String {
    object
        .connection_uri()
        .expect("a connection URI")
        .expose()
        .to_string()
}

/// The rows of table `t`, in order.
async fn rows(client: &Client) -> Vec<String> {
    client
        .query("SELECT v FROM t ORDER BY id", &[])
        .await
        .expect("table t is readable")
        .iter()
        .map(|row| row.get(0))
        .collect()
}

async fn insert(client: &Client, id: i32, value: &str) {
    client
        .execute("INSERT INTO t VALUES ($1, $2)", &[&id, &value])
        .await
        .expect("a row is written");
}

/// Connects to `uri`, makes table `t` and writes `before` into it.
async fn seed(uri: &str) -> Client {
    let client = connect(uri).await.expect("the URI connects");
    client
        .batch_execute("CREATE TABLE t (id int PRIMARY KEY, v text)")
        .await
        .expect("the database's own role can create a table");
    insert(&client, 1, "before").await;
    client
}

async fn current_user(client: &Client) -> String {
    client
        .query_one("SELECT current_user", &[])
        .await
        .unwrap()
        .get(0)
}

/// Whether database `name` and role `name` exist, as the server says.
async fn on_server(admin: &Client, name: &str) -> (bool, bool) {
    let count = |sql: &'static str| async move {
        admin
            .query_one(sql, &[&name])
            .await
            .expect("catalog read")
            .get::<_, i64>(0)
            == 1
    };
    (
        count("SELECT count(*) FROM pg_database WHERE datname = $1").await,
        count("SELECT count(*) FROM pg_roles WHERE rolname = $1").await,
    )
}

/// `uri` with `password` instead of its own.
fn with_password(uri: &str, password: &str) -> String {
    let mut url = url::Url::parse(uri).unwrap();
    url.set_password(Some(password)).unwrap();
    url.to_string()
}

fn password_of(uri: &str) -> String {
    url::Url::parse(uri)
        .unwrap()
        .password()
        .expect("the URI carries a password")
        .to_string()
}

/// A connection refused for its password.
async fn refused(uri: &str) {
    let error = connect(uri)
        .await
        .expect_err("the old password no longer connects");
    let code = error.as_db_error().map(|db| db.code().code().to_string());
    assert_eq!(code.as_deref(), Some("28P01"), "{error}");
}

#[tokio::test]
async fn infrai_projects_branches_snapshots_and_restores_are_real_databases() {
    let (emulator, base) = emulator(true).await;
    let infrai = provider(ProviderApi::Infrai, &base);
    let admin = admin().await;

    let request = ProjectRequest {
        name: name("shop"),
        ..ProjectRequest::default()
    };
    let project = infrai
        .create_project(&request, &name("dbops-project"))
        .await
        .expect("project created");
    let project_uri = uri(&project);
    // The admin URL disables TLS, so the URIs handed out do too.
    assert!(project_uri.ends_with("?sslmode=disable"), "{project_uri}");
    let default_branch = emulator.infrai.default_branch_id(&project.id).unwrap();
    let main_db = InfraiEmulator::real_database(&default_branch);
    let parent = seed(&project_uri).await;
    assert_eq!(current_user(&parent).await, main_db, "its own role");
    // A read hands out the same URI.
    assert_eq!(
        uri(&infrai.get_project(&project.id).await.unwrap()),
        project_uri
    );

    // A branch is a copy; its writes stay in it.
    let branch = infrai
        .create_branch(
            &BranchRequest {
                project_id: project.id.clone(),
                branch_name: "dev".to_string(),
                ..BranchRequest::default()
            },
            &name("dbops-branch"),
        )
        .await
        .expect("branch created");
    let dev = connect(&uri(&branch)).await.expect("the branch connects");
    assert_eq!(rows(&dev).await, ["before"]);
    insert(&dev, 2, "branch-only").await;
    assert_eq!(rows(&parent).await, ["before"]);
    let branch_db = InfraiEmulator::real_database(&branch.id);
    assert_eq!(current_user(&dev).await, branch_db);

    // A snapshot is the data when it was taken; a restore is a new project
    // with that data.
    let snapshot = infrai
        .create_snapshot(
            &SnapshotRequest {
                project_id: project.id.clone(),
                label: None,
            },
            &name("dbops-snapshot"),
        )
        .await
        .expect("snapshot created");
    insert(&parent, 3, "after").await;
    let restore = RestoreRequest {
        snapshot_id: snapshot.id.clone(),
        new_name: Some(name("restored")),
        ..RestoreRequest::default()
    };
    let RestoreProgress::Done(restored) = infrai
        .restore_snapshot(&restore, &name("dbops-restore"))
        .await
        .expect("restored")
    else {
        panic!("an infrai restore is done at once");
    };
    let copy = connect(&uri(&restored))
        .await
        .expect("the restore connects");
    assert_eq!(rows(&copy).await, ["before"]);
    insert(&copy, 4, "restored-only").await;
    assert_eq!(rows(&parent).await, ["before", "after"]);
    drop(copy);

    // Deleting a branch drops its database and role; deleting a project drops
    // every branch's and snapshot's.
    infrai.delete_branch(&project.id, &branch.id).await.unwrap();
    assert_eq!(on_server(&admin, &branch_db).await, (false, false));
    let snapshot_db = InfraiEmulator::real_database(&snapshot.id);
    assert_eq!(on_server(&admin, &snapshot_db).await, (true, true));
    infrai.delete_project(&project.id).await.unwrap();
    for gone in [&main_db, &snapshot_db] {
        assert_eq!(on_server(&admin, gone).await, (false, false), "{gone}");
    }
    let restored_db =
        InfraiEmulator::real_database(&emulator.infrai.default_branch_id(&restored.id).unwrap());
    assert_eq!(on_server(&admin, &restored_db).await, (true, true));
    infrai.delete_project(&restored.id).await.unwrap();
    assert_eq!(on_server(&admin, &restored_db).await, (false, false));
}

/// Reads a Supabase object until it is ready (the emulator reports new ones
/// as coming up for a few reads).
async fn ready<T: VendorObject, F: Future<Output = T>>(mut read: impl FnMut() -> F) -> T {
    for _ in 0..10 {
        let object = read().await;
        if *object.state() == ResourceState::Ready {
            return object;
        }
    }
    panic!("never ready");
}

/// The pooler entry of a Supabase project: its user, host, port and database.
async fn supabase_pooler(base: &str, reference: &str) -> Value {
    let answer: Value = reqwest::Client::new()
        .get(format!(
            "{base}/supabase/v1/projects/{reference}/config/database/pooler"
        ))
        .bearer_auth(DEFAULT_SUPABASE_API_KEY)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    answer[0].clone()
}

#[tokio::test]
async fn supabase_projects_and_branches_are_real_databases_with_the_chosen_password() {
    let (_emulator, base) = emulator(true).await;
    let supabase = provider(ProviderApi::Supabase, &base);
    let admin = admin().await;
    let test_server = url::Url::parse(&server().endpoint).unwrap();

    let password = Password::generate();
    let request = ProjectRequest {
        name: name("shop"),
        db_password: Some(password.clone()),
        ..ProjectRequest::default()
    };
    let created = supabase
        .create_project(&request, &name("dbops-project"))
        .await
        .expect("project created");
    let project = ready(|| async {
        supabase
            .get_project(&created.id)
            .await
            .expect("project read")
    })
    .await;
    let project_db = SupabaseEmulator::real_database(&project.id);
    // The project names the server as its database host.
    let direct = url::Url::parse(&uri(&project)).unwrap();
    assert_eq!(direct.host_str(), test_server.host_str());
    // Supabase answers carry no database name (every project's is
    // `postgres`); the emulator's pooler entry names the real one: the
    // database its own role owns, with the password the client chose.
    let pooler = supabase_pooler(&base, &project.id).await;
    assert_eq!(pooler["db_name"], project_db.as_str());
    assert_eq!(pooler["db_user"], project_db.as_str());
    assert_eq!(pooler["db_port"], test_server.port().unwrap());
    let project_uri = format!(
        "postgresql://{project_db}:{}@{}:{}/{project_db}?sslmode=disable",
        password.expose(),
        pooler["db_host"].as_str().unwrap(),
        pooler["db_port"]
    );
    let parent = seed(&project_uri).await;

    // A branch is a project of its own, holding a copy of its parent's data,
    // reached with its own user, password and host from its config.
    let created = supabase
        .create_branch(
            &BranchRequest {
                project_id: project.id.clone(),
                branch_name: "dev".to_string(),
                ..BranchRequest::default()
            },
            &name("dbops-branch"),
        )
        .await
        .expect("branch created");
    let branch = ready(|| async {
        supabase
            .get_branch(&project.id, &created.id)
            .await
            .expect("branch read")
    })
    .await;
    let mut branch_url = url::Url::parse(&uri(&branch)).unwrap();
    let branch_db = branch_url.username().to_string();
    assert!(branch_db.starts_with("emu_supabase_"), "{branch_db}");
    assert_eq!(
        branch_url.port(),
        test_server.port(),
        "the branch config names the server's port"
    );
    // Its database is named after its role (the client assumes `postgres`).
    branch_url.set_path(&branch_db);
    branch_url.set_query(Some("sslmode=disable"));
    let dev = connect(branch_url.as_str())
        .await
        .expect("the branch connects");
    assert_eq!(rows(&dev).await, ["before"]);
    insert(&dev, 2, "branch-only").await;
    assert_eq!(rows(&parent).await, ["before"]);
    drop(dev);

    // The password endpoint changes the real role's password, for a project
    // and for a branch.
    let rotated = Password::generate();
    let credentials = supabase.project_credentials().unwrap();
    let RotationProgress::Done { .. } = credentials
        .rotate_credentials(
            &RotationTarget::Project {
                id: project.id.clone(),
            },
            &rotated,
            "rotate-1",
        )
        .await
        .unwrap()
    else {
        panic!("a Supabase rotation is done at once");
    };
    refused(&project_uri).await;
    connect(&with_password(&project_uri, rotated.expose()))
        .await
        .expect("the new password connects");
    let branch_rotated = Password::generate();
    supabase
        .branch_credentials()
        .unwrap()
        .rotate_credentials(
            &RotationTarget::Branch {
                project_id: project.id.clone(),
                id: branch.id.clone(),
            },
            &branch_rotated,
            "rotate-2",
        )
        .await
        .unwrap();
    refused(branch_url.as_str()).await;
    connect(&with_password(branch_url.as_str(), branch_rotated.expose()))
        .await
        .expect("the branch's new password connects");

    // Deleting the project drops its database and its branches'.
    drop(parent);
    supabase.delete_project(&project.id).await.unwrap();
    for gone in [&project_db, &branch_db] {
        assert_eq!(on_server(&admin, gone).await, (false, false), "{gone}");
    }
}

/// Reads a DB9 backup until it is completed.
async fn completed_backup(db9: &dyn Provider, project: &str, id: &str) {
    for _ in 0..10 {
        if db9.get_snapshot(project, id).await.unwrap().state == ResourceState::Ready {
            return;
        }
    }
    panic!("backup {id} never completed");
}

#[tokio::test]
async fn db9_databases_branches_backups_restores_and_password_resets_are_real() {
    let (_emulator, base) = emulator(true).await;
    let db9 = provider(ProviderApi::Db9, &base);
    let admin = admin().await;

    let project = db9
        .create_project(
            &ProjectRequest {
                name: name("shop"),
                ..ProjectRequest::default()
            },
            &name("dbops-project"),
        )
        .await
        .expect("database created");
    let project_uri = uri(&project);
    let project_db = Db9Emulator::real_database(&project.id);
    let parent = seed(&project_uri).await;
    assert_eq!(current_user(&parent).await, project_db);

    // A password the client chooses is the role's.
    let chosen = Password::generate();
    let other = db9
        .create_project(
            &ProjectRequest {
                name: name("chosen"),
                db_password: Some(chosen.clone()),
                ..ProjectRequest::default()
            },
            &name("dbops-project"),
        )
        .await
        .expect("database created");
    assert_eq!(password_of(&uri(&other)), chosen.expose());
    connect(&uri(&other))
        .await
        .expect("the chosen password connects");
    db9.delete_project(&other.id).await.unwrap();

    let branch = db9
        .create_branch(
            &BranchRequest {
                project_id: project.id.clone(),
                branch_name: name("dev"),
                ..BranchRequest::default()
            },
            &name("dbops-branch"),
        )
        .await
        .expect("branch created");
    let dev = connect(&uri(&branch)).await.expect("the branch connects");
    assert_eq!(rows(&dev).await, ["before"]);
    insert(&dev, 2, "branch-only").await;
    assert_eq!(rows(&parent).await, ["before"]);
    drop(dev);

    // A backup is the data when it was taken; a restore (by `target_name`)
    // is a new database holding it.
    let backup = db9
        .create_snapshot(
            &SnapshotRequest {
                project_id: project.id.clone(),
                label: None,
            },
            &name("dbops-snapshot"),
        )
        .await
        .expect("backup created");
    insert(&parent, 3, "after").await;
    completed_backup(&*db9, &project.id, &backup.id).await;
    let restore = RestoreRequest {
        snapshot_id: backup.id.clone(),
        new_name: Some(name("restored")),
        ..RestoreRequest::default()
    };
    let mut progress = db9
        .restore_snapshot(&restore, &name("dbops-restore"))
        .await
        .expect("restore started");
    for _ in 0..10 {
        let RestoreProgress::Pending { handle, .. } = &progress else {
            break;
        };
        progress = db9.restore_status(handle).await.unwrap();
    }
    let RestoreProgress::Done(restored) = progress else {
        panic!("the restore finishes: {progress:?}");
    };
    let copy = connect(&uri(&restored))
        .await
        .expect("the restored database connects");
    assert_eq!(rows(&copy).await, ["before"]);
    drop(copy);

    // Reset-password changes the real role's password.
    let credentials = db9.project_credentials().unwrap();
    let RotationProgress::Done {
        connection_uri,
        password,
        ..
    } = credentials
        .rotate_credentials(
            &RotationTarget::Project {
                id: project.id.clone(),
            },
            &Password::generate(),
            "rotate-1",
        )
        .await
        .unwrap()
    else {
        panic!("a DB9 reset is done at once");
    };
    let new_uri = connection_uri
        .map(|uri| uri.expose().to_string())
        .unwrap_or_else(|| with_password(&project_uri, password.unwrap().expose()));
    refused(&project_uri).await;
    let after = connect(&new_uri).await.expect("the new password connects");
    assert_eq!(rows(&after).await, ["before", "after"]);
    drop((after, parent));

    // Deleting a backup drops its frozen copy; deleting a database drops it
    // (its branch is a database of its own and stays).
    let backup_db = Db9Emulator::real_database(&backup.id);
    assert_eq!(on_server(&admin, &backup_db).await, (true, true));
    db9.snapshot_deletion()
        .unwrap()
        .delete_snapshot(&project.id, &backup.id)
        .await
        .unwrap();
    assert_eq!(on_server(&admin, &backup_db).await, (false, false));
    db9.delete_project(&project.id).await.unwrap();
    assert_eq!(on_server(&admin, &project_db).await, (false, false));
    let branch_db = Db9Emulator::real_database(&branch.id);
    assert_eq!(on_server(&admin, &branch_db).await, (true, true));
    for id in [&branch.id, &restored.id] {
        db9.delete_project(id).await.unwrap();
        let gone = Db9Emulator::real_database(id);
        assert_eq!(on_server(&admin, &gone).await, (false, false), "{gone}");
    }
}

#[tokio::test]
async fn capydb_seeded_projects_connect_and_a_rotation_sets_the_real_password() {
    let (emulator, base) = emulator(true).await;
    let capydb = provider(ProviderApi::Capydb, &base);
    let admin = admin().await;
    let id = format!("prj_{:08x}", rand::random::<u32>());
    let password = emulator.capydb.seed_project(&id).await.expect("seeded");
    // Seeding again keeps the project as it is.
    assert_eq!(emulator.capydb.seed_project(&id).await.unwrap(), password);

    let project = capydb.get_project(&id).await.unwrap();
    let project_uri = uri(&project);
    assert_eq!(password_of(&project_uri), password);
    let parent = seed(&project_uri).await;
    let project_db = CapyDbEmulator::real_project_database(&id);
    assert_eq!(current_user(&parent).await, project_db);
    // There is no pooler in front of a real database.
    assert_eq!(
        project.pooled_uri.as_ref().map(|u| u.expose().to_string()),
        Some(project_uri.clone())
    );

    // A preview starts as a copy of its project.
    let preview_id = format!("pv_{:08x}", rand::random::<u32>());
    emulator
        .capydb
        .seed_preview(&id, &preview_id)
        .await
        .unwrap()
        .expect("the project exists");
    let preview = capydb.get_branch(&id, &preview_id).await.unwrap();
    let copy = connect(&uri(&preview)).await.expect("the preview connects");
    assert_eq!(rows(&copy).await, ["before"]);
    insert(&copy, 2, "preview-only").await;
    assert_eq!(rows(&parent).await, ["before"]);

    // A rotation job that succeeds changes the real password.
    let credentials = capydb.project_credentials().unwrap();
    let target = RotationTarget::Project { id: id.clone() };
    let mut progress = credentials
        .rotate_credentials(&target, &Password::generate(), "rotate-1")
        .await
        .unwrap();
    for _ in 0..10 {
        let RotationProgress::Pending { job_id, .. } = &progress else {
            break;
        };
        progress = credentials.rotation_status(&target, job_id).await.unwrap();
    }
    let RotationProgress::Done {
        connection_uri: Some(rotated),
        ..
    } = progress
    else {
        panic!("the rotation finishes with a new URI: {progress:?}");
    };
    let rotated = rotated.expose().to_string();
    assert_ne!(password_of(&rotated), password);
    refused(&project_uri).await;
    let after = connect(&rotated).await.expect("the new password connects");
    assert_eq!(rows(&after).await, ["before"]);
    drop((after, parent, copy));

    // The emulated-only seeding still works beside it.
    let plain = format!("prj_{:08x}", rand::random::<u32>());
    emulator.capydb.add_project(&plain);
    let plain_uri = uri(&capydb.get_project(&plain).await.unwrap());
    assert!(plain_uri.contains(".emulator.invalid"), "{plain_uri}");
    assert_eq!(on_server(&admin, &project_db).await, (true, true));
}

#[tokio::test]
async fn without_a_server_every_uri_names_the_emulators_hosts() {
    let (emulator, base) = emulator(false).await;
    let invalid = |uri: &str| {
        assert!(uri.contains(".emulator.invalid"), "{uri}");
    };

    let infrai = provider(ProviderApi::Infrai, &base);
    let request = ProjectRequest {
        name: name("shop"),
        ..ProjectRequest::default()
    };
    let project = infrai.create_project(&request, "k-1").await.unwrap();
    invalid(&uri(&project));
    let branch = infrai
        .create_branch(
            &BranchRequest {
                project_id: project.id.clone(),
                branch_name: "dev".to_string(),
                ..BranchRequest::default()
            },
            "k-2",
        )
        .await
        .unwrap();
    invalid(&uri(&branch));

    let db9 = provider(ProviderApi::Db9, &base);
    let database = db9.create_project(&request, "k-3").await.unwrap();
    invalid(&uri(&database));
    assert!(uri(&database).starts_with("postgresql://admin:"));

    let supabase = provider(ProviderApi::Supabase, &base);
    let created = supabase
        .create_project(
            &ProjectRequest {
                db_password: Some(Password::generate()),
                ..request.clone()
            },
            "k-4",
        )
        .await
        .unwrap();
    let read = ready(|| async { supabase.get_project(&created.id).await.unwrap() }).await;
    assert!(
        uri(&read).contains(&format!("@db.{}.supabase.co:5432/", created.id)),
        "{}",
        uri(&read)
    );

    emulator.capydb.add_project("prj_plain");
    let capydb = provider(ProviderApi::Capydb, &base);
    invalid(&uri(&capydb.get_project("prj_plain").await.unwrap()));
    // Seeding without a server is the same as adding.
    emulator.capydb.seed_project("prj_seeded").await.unwrap();
    invalid(&uri(&capydb.get_project("prj_seeded").await.unwrap()));
}

#[tokio::test]
async fn a_failing_server_is_a_retryable_error_in_each_vendors_shape_and_records_nothing() {
    dbops::providers::http::ensure_crypto_provider();
    // Nothing listens on this port.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let unreachable = RealDatabases::new(
        &format!("postgres://postgres:pw@127.0.0.1:{port}/postgres?sslmode=disable"),
        Duration::from_secs(2),
    )
    .unwrap();
    assert!(unreachable.check().await.is_err());
    let emulator =
        Emulator::new(&EmulatorConfig::default().with_real_databases(Arc::new(unreachable)));
    let (addr, _) = emulator.clone().spawn("127.0.0.1:0").await.unwrap();
    let http = reqwest::Client::new();
    let post = |path: &str, key: &str, body: Value| {
        http.post(format!("http://{addr}{path}"))
            .bearer_auth(key)
            .json(&body)
            .send()
    };

    let answer = post(
        "/infrai/v1/db/project/create",
        DEFAULT_INFRAI_API_KEY,
        serde_json::json!({ "name": "shop", "idempotency_key": "k-1" }),
    )
    .await
    .unwrap();
    assert_eq!(answer.status().as_u16(), 503);
    let body: Value = answer.json().await.unwrap();
    assert_eq!(body["error"]["code"], "UNAVAILABLE", "{body}");
    assert!(emulator.infrai.projects().is_empty());
    assert_eq!(emulator.infrai.branch_count(), 0);

    let answer = post(
        "/supabase/v1/projects",
        DEFAULT_SUPABASE_API_KEY,
        serde_json::json!({ "name": "shop", "organization_slug": "o", "db_pass": "secret-pass" }),
    )
    .await
    .unwrap();
    assert_eq!(answer.status().as_u16(), 503);
    let body: Value = answer.json().await.unwrap();
    let message = body["message"].as_str().unwrap();
    assert!(message.contains("retry"), "{message}");
    assert!(!message.contains("secret-pass"), "{message}");
    assert_eq!(emulator.supabase.project_count(), 0);

    let answer = post(
        "/db9/customer/databases",
        DEFAULT_DB9_API_KEY,
        serde_json::json!({ "name": "shop" }),
    )
    .await
    .unwrap();
    assert_eq!(answer.status().as_u16(), 503);
    let body: Value = answer.json().await.unwrap();
    assert!(body["message"].is_string(), "{body}");
    assert_eq!(emulator.db9.database_count(), 0);

    let error = emulator.capydb.seed_project("prj_x").await.unwrap_err();
    assert!(error.contains("retry"), "{error}");
    assert!(emulator.capydb.project_password("prj_x").is_none());
}

#[tokio::test]
async fn real_databases_outlive_a_restart_of_an_emulator_with_a_state_file() {
    dbops::providers::http::ensure_crypto_provider();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.json");
    let real = Arc::new(RealDatabases::new(&server().admin_url(), CONNECT_TIMEOUT).unwrap());
    let config = EmulatorConfig::default().with_real_databases(real);

    let first = Emulator::with_state_file(&config, &path).unwrap();
    let (addr, server_task) = first.clone().spawn("127.0.0.1:0").await.unwrap();
    let db9 = provider(ProviderApi::Db9, &format!("http://{addr}"));
    let request = ProjectRequest {
        name: name("kept"),
        ..ProjectRequest::default()
    };
    let project = db9.create_project(&request, "k-1").await.unwrap();
    seed(&uri(&project)).await;
    server_task.abort();
    drop(first);

    let second = loop {
        match Emulator::with_state_file(&config, &path) {
            Ok(emulator) => break emulator,
            Err(dbops::emulator::persist::StateFileError::Locked { .. }) => {
                tokio::time::sleep(Duration::from_millis(20)).await
            }
            Err(e) => panic!("{e}"),
        }
    };
    let (addr, _) = second.spawn("127.0.0.1:0").await.unwrap();
    let db9 = provider(ProviderApi::Db9, &format!("http://{addr}"));
    let read = db9.get_project(&project.id).await.unwrap();
    let again = connect(&uri(&read))
        .await
        .expect("the database is still there");
    assert_eq!(rows(&again).await, ["before"]);
    drop(again);
    db9.delete_project(&project.id).await.unwrap();
    let admin = admin().await;
    let gone = Db9Emulator::real_database(&project.id);
    assert_eq!(on_server(&admin, &gone).await, (false, false));
}

/// A new project at `p` with a password of the client's choosing (the APIs
/// that take none ignore it).
async fn new_project(p: &dyn Provider) -> dbops::providers::VendorProject {
    p.create_project(
        &ProjectRequest {
            name: name("roles"),
            db_password: Some(Password::generate()),
            ..ProjectRequest::default()
        },
        &name("dbops-project"),
    )
    .await
    .expect("project created")
}

/// The grants planner's converge for a SELECT-only login role on table `t`.
fn select_only_role(role: &str, password: &Password) -> String {
    use dbops::api::v1alpha1::{Grant, Privilege, RotationStrategy};
    use dbops::controllers::pipeline::grants::{Converge, Layout, Login, converge_script, desired};
    let layout = Layout::of(role, RotationStrategy::InPlace);
    let wanted = desired(&[Grant {
        schema: "public".into(),
        privileges: vec![Privilege::Select],
        tables: Some(vec!["t".into()]),
        future_tables: None,
    }])
    .unwrap();
    converge_script(&Converge {
        layout: &layout,
        marker: "dbops-role-test",
        logins: &[Login {
            name: role.to_string(),
            can_login: true,
            verifier: Some(dbops::providers::postgres::server::verifier(password)),
        }],
        connection_limit: None,
        desired: &wanted,
        applied: &Default::default(),
    })
    .unwrap()
}

#[tokio::test]
async fn the_db9_sql_and_supabase_query_endpoints_run_role_sql_on_the_real_database() {
    let (_emulator, base) = emulator(true).await;
    for api in [ProviderApi::Db9, ProviderApi::Supabase] {
        let p = provider(api, &base);
        let created = new_project(&*p).await;
        let project = ready(|| async { p.get_project(&created.id).await.unwrap() }).await;
        let database = match api {
            ProviderApi::Db9 => Db9Emulator::real_database(&project.id),
            _ => SupabaseEmulator::real_database(&project.id),
        };
        // The tables, made as the server's admin in the project's database.
        let mut admin_url = url::Url::parse(&server().admin_url()).unwrap();
        admin_url.set_path(&database);
        let owner = connect(admin_url.as_str()).await.unwrap();
        owner
            .batch_execute(
                "CREATE TABLE t (n int); INSERT INTO t VALUES (1); CREATE TABLE u (n int)",
            )
            .await
            .unwrap();
        let owner_url = admin_url;

        let sql = p.sql().expect("a SQL channel");
        let role = format!("reader_{:08x}", rand::random::<u32>());
        let role_password = Password::generate();
        let rows = sql
            .run_sql(&project.id, &select_only_role(&role, &role_password))
            .await
            .expect("the channel runs the converge");
        assert!(rows.is_empty());
        if sql.returns_rows() {
            let rows = sql
                .run_sql(
                    &project.id,
                    "SELECT current_database()::text, 2 + 2, NULL::text",
                )
                .await
                .unwrap();
            assert_eq!(
                rows,
                [[Some(database.clone()), Some("4".into()), None]],
                "{api}"
            );
        }
        let mut reader_url = owner_url.clone();
        reader_url.set_username(&role).unwrap();
        reader_url
            .set_password(Some(role_password.expose()))
            .unwrap();
        let reader = connect(reader_url.as_str())
            .await
            .expect("the role connects");
        reader
            .batch_execute("SELECT * FROM t")
            .await
            .expect("it reads t");
        assert!(
            reader
                .batch_execute("INSERT INTO t VALUES (2)")
                .await
                .is_err()
        );
        assert!(reader.batch_execute("SELECT * FROM u").await.is_err());
        // A statement the server refuses is a client error, not a retry.
        let error = sql
            .run_sql(&project.id, "SELECT * FROM no_such_table")
            .await
            .unwrap_err();
        assert!(
            matches!(error, ProviderError::Http { status: 400, .. }),
            "{api}: {error:?}"
        );
    }
}

#[tokio::test]
async fn without_a_server_the_sql_endpoints_say_so_and_run_nothing() {
    let (_emulator, base) = emulator(false).await;
    for api in [ProviderApi::Db9, ProviderApi::Supabase] {
        let p = provider(api, &base);
        let created = new_project(&*p).await;
        let error = p.run_sql(&created.id, "SELECT 1").await.unwrap_err();
        let text = error.to_string();
        assert!(
            matches!(error, ProviderError::Http { status: 501, .. }),
            "{api}: {error:?}"
        );
        assert!(text.contains("--emulator-postgres"), "{api}: {text}");
    }
}

#[tokio::test]
async fn db9_users_are_real_login_roles_that_connect_until_deleted() {
    let (_emulator, base) = emulator(true).await;
    let db9 = provider(ProviderApi::Db9, &base);
    let project = new_project(&*db9).await;
    let sql = db9.sql().expect("DB9 has a SQL channel");
    let user = format!("app_{:08x}", rand::random::<u32>());
    let before = sql.list_users(&project.id).await.unwrap().unwrap();
    assert_eq!(before.len(), 1, "only the admin: {before:?}");
    let login = sql
        .create_user(&project.id, &user)
        .await
        .unwrap()
        .expect("DB9 has a users endpoint");
    let client = connect(secrecy::ExposeSecret::expose_secret(&login))
        .await
        .expect("the new user connects");
    assert_eq!(current_user(&client).await, user);
    let listed = sql.list_users(&project.id).await.unwrap().unwrap();
    assert!(listed.contains(&user), "{listed:?}");
    // A second user of the same name is refused.
    let again = sql.create_user(&project.id, &user).await.unwrap_err();
    assert!(
        matches!(again, ProviderError::Http { status: 409, .. }),
        "{again:?}"
    );
    // It owns something: the delete still goes through.
    client.batch_execute("CREATE TABLE mine (n int)").await.ok();
    drop(client);
    assert!(sql.delete_user(&project.id, &user).await.unwrap());
    refused(secrecy::ExposeSecret::expose_secret(&login)).await;
    let gone = sql.delete_user(&project.id, &user).await.unwrap_err();
    assert!(gone.is_not_found(), "{gone:?}");
    assert_eq!(sql.list_users(&project.id).await.unwrap().unwrap(), before);

    // Deleting the database deletes its users' roles with it.
    let other = format!("app_{:08x}", rand::random::<u32>());
    sql.create_user(&project.id, &other).await.unwrap();
    db9.delete_project(&project.id).await.unwrap();
    let admin = admin().await;
    let left = admin
        .query_opt("SELECT 1 FROM pg_roles WHERE rolname = $1", &[&other])
        .await
        .unwrap();
    assert!(left.is_none(), "the user's role went with its database");
}

#[tokio::test]
async fn db9_users_without_a_server_name_the_emulators_host() {
    let (_emulator, base) = emulator(false).await;
    let db9 = provider(ProviderApi::Db9, &base);
    let project = new_project(&*db9).await;
    let sql = db9.sql().unwrap();
    let login = sql
        .create_user(&project.id, "app_user")
        .await
        .unwrap()
        .unwrap();
    let url = url::Url::parse(secrecy::ExposeSecret::expose_secret(&login)).unwrap();
    assert_eq!(url.username(), "app_user");
    assert!(!url.password().unwrap_or_default().is_empty());
    assert!(url.host_str().unwrap().ends_with(".db9.emulator.invalid"));
    let bad = sql
        .create_user(&project.id, "Robert'); DROP")
        .await
        .unwrap_err();
    assert!(
        matches!(bad, ProviderError::Http { status: 422, .. }),
        "{bad:?}"
    );
}
