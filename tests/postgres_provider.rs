//! The `postgres` provider against a real PostgreSQL server (see
//! `tests/support/postgres.rs`): every URI it hands out is connected to, and
//! every claim about data (branches, snapshots, restores), passwords and
//! deletion is checked on the server itself.

mod support;

use std::time::Duration;

use dbops::api::v1alpha1::{CopyStrategy, PostgresSettings, ProviderApi};
use dbops::providers::{
    BranchRequest, Password, ProjectRequest, Provider, ProviderConfig, ProviderError,
    RestoreProgress, RestoreRequest, RotationProgress, RotationTarget, SnapshotRequest, build,
};
use secrecy::SecretString;
use support::postgres::{TestServer, server};
use tokio_postgres::{Client, NoTls};

fn provider(server: &TestServer, strategy: CopyStrategy) -> std::sync::Arc<dyn Provider> {
    let mut config = ProviderConfig::new(
        ProviderApi::Postgres,
        Some(server.endpoint.clone()),
        SecretString::from(server.password.clone()),
    );
    config.spec.postgres = Some(PostgresSettings {
        copy_strategy: strategy,
        connection_host: None,
    });
    build(&config, None).expect("a postgres provider builds")
}

/// A unique name per test run, as the operator generates them.
fn name(what: &str) -> String {
    format!("t-{what}-{:08x}", rand::random::<u32>())
}

async fn connect(uri: &str) -> Result<Client, tokio_postgres::Error> {
    let (client, connection) = tokio_postgres::connect(uri, NoTls).await?;
    tokio::spawn(connection);
    Ok(client)
}

async fn admin(server: &TestServer) -> Client {
    connect(&server.admin_url()).await.expect("admin connects")
}

async fn count(client: &Client, sql: &str) -> i64 {
    client.query_one(sql, &[]).await.expect(sql).get(0)
}

async fn exists(admin: &Client, catalog: &str, column: &str, name: &str) -> bool {
    let sql = format!("SELECT count(*) FROM {catalog} WHERE {column} = $1");
    let row = admin.query_one(&sql, &[&name]).await.expect("catalog read");
    row.get::<_, i64>(0) == 1
}

async fn new_project(
    provider: &dyn Provider,
    name: &str,
) -> (dbops::providers::VendorProject, Password) {
    let password = Password::generate();
    let request = ProjectRequest {
        name: name.to_string(),
        db_password: Some(password.clone()),
        ..ProjectRequest::default()
    };
    let project = provider
        .create_project(&request, &format!("dbops-{name}-project-create"))
        .await
        .expect("project created");
    (project, password)
}

async fn new_branch(
    provider: &dyn Provider,
    project: &str,
    name: &str,
) -> Result<(dbops::providers::VendorBranch, Password), ProviderError> {
    let password = Password::generate();
    let request = BranchRequest {
        project_id: project.to_string(),
        branch_name: name.to_string(),
        db_password: Some(password.clone()),
        ..BranchRequest::default()
    };
    let branch = provider
        .create_branch(&request, &format!("dbops-{name}-branch-create"))
        .await?;
    Ok((branch, password))
}

fn uri(object: &impl dbops::providers::VendorObject) -> String {
    object
        .connection_uri()
        .expect("a connection URI")
        .expose()
        .to_string()
}

#[tokio::test]
async fn a_project_uri_connects_and_can_create_a_table_and_reads_leave_the_password_out() {
    let server = server();
    let provider = provider(server, CopyStrategy::Template);
    let name = name("proj");
    let (project, password) = new_project(&*provider, &name).await;
    assert_eq!(project.id, name);
    let app = connect(&uri(&project))
        .await
        .expect("the project URI connects");
    app.batch_execute("CREATE TABLE t (id int PRIMARY KEY, v text); INSERT INTO t VALUES (1, 'a')")
        .await
        .expect("the owner can create a table");
    assert_eq!(count(&app, "SELECT count(*) FROM t").await, 1);
    let who: String = app
        .query_one("SELECT current_user", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(who, name, "the project's own role, not the admin");

    // A read names the role but carries no password: the Secret keeps it.
    let read = provider.get_project(&name).await.unwrap();
    let read_uri = uri(&read);
    assert!(!read_uri.contains(password.expose()));
    assert!(read_uri.starts_with(&format!("postgresql://{name}@127.0.0.1:")));

    // The password never reached the server as text.
    let admin = admin(server).await;
    let stored: String = admin
        .query_one(
            "SELECT rolpassword FROM pg_authid WHERE rolname = $1",
            &[&name],
        )
        .await
        .unwrap()
        .get(0);
    assert!(stored.starts_with("SCRAM-SHA-256$"));
    provider.delete_project(&name).await.unwrap();
}

async fn seeded_project(provider: &dyn Provider, what: &str) -> (String, Client) {
    let name = name(what);
    let (project, _) = new_project(provider, &name).await;
    let parent = connect(&uri(&project)).await.unwrap();
    parent
        .batch_execute(
            "CREATE TYPE mood AS ENUM ('happy', 'sad');
             CREATE TABLE customers (id serial PRIMARY KEY, email text UNIQUE NOT NULL, m mood DEFAULT 'happy');
             CREATE TABLE orders (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                                  customer int NOT NULL REFERENCES customers(id),
                                  cents int CHECK (cents > 0),
                                  doubled int GENERATED ALWAYS AS (cents * 2) STORED);
             CREATE INDEX orders_by_customer ON orders (customer);
             CREATE FUNCTION total(c int) RETURNS bigint LANGUAGE sql AS $$ SELECT sum(cents) FROM public.orders WHERE customer = c $$;
             CREATE VIEW big AS SELECT * FROM orders WHERE cents > 100;
             CREATE MATERIALIZED VIEW per_customer AS SELECT customer, count(*) AS n FROM orders GROUP BY customer;
             CREATE UNIQUE INDEX per_customer_key ON per_customer (customer);
             CREATE FUNCTION stamp() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN NEW.email := lower(NEW.email); RETURN NEW; END $$;
             CREATE TRIGGER lower_email BEFORE INSERT ON customers FOR EACH ROW EXECUTE FUNCTION stamp();
             INSERT INTO customers (email) VALUES ('A@x'), ('B@x');
             INSERT INTO orders (customer, cents) VALUES (1, 50), (1, 150), (2, 200);
             REFRESH MATERIALIZED VIEW per_customer;",
        )
        .await
        .expect("seed the parent");
    (name, parent)
}

async fn branch_copies_the_parent(strategy: CopyStrategy) {
    let server = server();
    let provider = provider(server, strategy);
    let (project, parent) = seeded_project(&*provider, "par").await;
    let branch_name = name("br");
    let (branch, _) = new_branch(&*provider, &project, &branch_name)
        .await
        .expect("branch created");
    let copy = connect(&uri(&branch))
        .await
        .expect("the branch URI connects");

    // Everything is there, owned by the branch's role.
    assert_eq!(count(&copy, "SELECT count(*) FROM customers").await, 2);
    assert_eq!(count(&copy, "SELECT count(*) FROM orders").await, 3);
    assert_eq!(count(&copy, "SELECT count(*) FROM big").await, 2);
    assert_eq!(count(&copy, "SELECT total(1)").await, 200);
    assert_eq!(
        count(&copy, "SELECT n FROM per_customer WHERE customer = 1").await,
        2
    );
    assert_eq!(count(&copy, "SELECT sum(doubled) FROM orders").await, 800);
    // Sequences continue where the parent's were; the trigger, the enum and
    // the constraints work.
    copy.batch_execute("INSERT INTO customers (email) VALUES ('C@X')")
        .await
        .expect("the branch's role owns its tables");
    assert_eq!(
        count(
            &copy,
            "SELECT id::bigint FROM customers WHERE email = 'c@x'"
        )
        .await,
        3
    );
    copy.batch_execute("INSERT INTO orders (customer, cents) VALUES (3, 10)")
        .await
        .unwrap();
    assert_eq!(count(&copy, "SELECT max(id) FROM orders").await, 4);
    assert!(
        copy.batch_execute("INSERT INTO orders (customer, cents) VALUES (99, 10)")
            .await
            .is_err(),
        "the foreign key was copied"
    );
    assert!(
        copy.batch_execute("INSERT INTO orders (customer, cents) VALUES (1, -1)")
            .await
            .is_err(),
        "the check was copied"
    );
    assert!(
        copy.batch_execute("INSERT INTO customers (email) VALUES ('a@x')")
            .await
            .is_err(),
        "the unique constraint was copied"
    );
    let owners: Vec<String> = copy
        .query(
            "SELECT DISTINCT pg_get_userbyid(relowner)::text FROM pg_class \
             WHERE relnamespace = 'public'::regnamespace",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(owners, vec![branch_name.clone()]);

    // A template copy ends the parent's other sessions (they reconnect); a
    // logical copy leaves them be.
    let parent_alive = parent.simple_query("SELECT 1").await.is_ok();
    assert_eq!(parent_alive, strategy == CopyStrategy::Logical);

    // The branch's writes do not reach the parent.
    let admin = admin(server).await;
    let admin_parent = connect(
        &server
            .admin_url()
            .replace("/postgres?", &format!("/{project}?")),
    )
    .await
    .unwrap();
    assert_eq!(
        count(&admin_parent, "SELECT count(*) FROM customers").await,
        2
    );
    assert_eq!(count(&admin_parent, "SELECT count(*) FROM orders").await, 3);
    drop(admin_parent);

    // Both roles can still be dropped: nothing in the copy ties to the parent's.
    provider.delete_project(&project).await.unwrap();
    assert!(!exists(&admin, "pg_roles", "rolname", &project).await);
    provider
        .delete_branch(&project, &branch_name)
        .await
        .unwrap();
    assert!(!exists(&admin, "pg_database", "datname", &branch_name).await);
    assert!(!exists(&admin, "pg_roles", "rolname", &branch_name).await);
}

#[tokio::test]
async fn a_template_branch_sees_the_parents_rows_and_its_writes_stay_its_own() {
    branch_copies_the_parent(CopyStrategy::Template).await;
}

#[tokio::test]
async fn a_logical_branch_copies_everything_without_disconnecting_the_parent() {
    branch_copies_the_parent(CopyStrategy::Logical).await;
}

#[tokio::test]
async fn a_restore_has_the_snapshots_rows_and_not_later_ones() {
    restore_has_the_snapshots_rows(CopyStrategy::Logical).await;
}

#[tokio::test]
async fn a_template_snapshot_and_its_restore() {
    restore_has_the_snapshots_rows(CopyStrategy::Template).await;
}

async fn restore_has_the_snapshots_rows(strategy: CopyStrategy) {
    let server = server();
    let provider = provider(server, strategy);
    let name = name("snap");
    let (project, _) = new_project(&*provider, &name).await;
    let app = connect(&uri(&project)).await.unwrap();
    app.batch_execute("CREATE TABLE t (v int); INSERT INTO t VALUES (1), (2)")
        .await
        .unwrap();
    let key = format!("dbops-{name}-snapshot-create");
    let request = SnapshotRequest {
        project_id: name.clone(),
        label: None,
    };
    let snapshot = provider.create_snapshot(&request, &key).await.unwrap();
    // A retried create is the same snapshot.
    assert_eq!(
        provider.create_snapshot(&request, &key).await.unwrap().id,
        snapshot.id
    );
    // A template copy ended the project's sessions.
    let app = connect(&uri(&project)).await.unwrap();
    app.batch_execute("INSERT INTO t VALUES (3)").await.unwrap();

    // The snapshot cannot be connected to, even by its owner's name.
    let admin = admin(server).await;
    let allows: bool = admin
        .query_one(
            "SELECT datallowconn FROM pg_database WHERE datname = $1",
            &[&snapshot.id],
        )
        .await
        .unwrap()
        .get(0);
    assert!(!allows);

    let restored_name = format!("{name}-r");
    let password = Password::generate();
    let restore = RestoreRequest {
        snapshot_id: snapshot.id.clone(),
        new_name: Some(restored_name.clone()),
        db_password: Some(password),
        resumed: dbops::providers::Resume::First,
    };
    let RestoreProgress::Done(restored) = provider
        .restore_snapshot(&restore, &format!("dbops-{name}-project-restore"))
        .await
        .unwrap()
    else {
        panic!("a postgres restore finishes at once");
    };
    let copy = connect(&uri(&restored))
        .await
        .expect("the restored URI connects");
    assert_eq!(count(&copy, "SELECT count(*) FROM t").await, 2);
    assert_eq!(count(&copy, "SELECT max(v)::bigint FROM t").await, 2);
    copy.batch_execute("INSERT INTO t VALUES (9)")
        .await
        .expect("the new role owns it");
    assert_eq!(
        count(&app, "SELECT count(*) FROM t").await,
        3,
        "the project went on"
    );

    for id in [&restored_name, &snapshot.id] {
        provider.delete_project(id).await.unwrap();
        assert!(!exists(&admin, "pg_database", "datname", id).await);
        assert!(!exists(&admin, "pg_roles", "rolname", id).await);
    }
    provider.delete_project(&name).await.unwrap();
}

#[tokio::test]
async fn rotation_makes_the_old_password_fail_and_the_new_one_work() {
    let server = server();
    let provider = provider(server, CopyStrategy::Template);
    let name = name("rot");
    let (project, old) = new_project(&*provider, &name).await;
    let old_uri = uri(&project);
    connect(&old_uri)
        .await
        .expect("the old password works first");
    let new = Password::generate();
    let progress = provider
        .credentials_for(&RotationTarget::Project { id: name.clone() })
        .unwrap()
        .rotate_credentials(&RotationTarget::Project { id: name.clone() }, &new, "k")
        .await
        .unwrap();
    assert_eq!(
        progress,
        RotationProgress::Done {
            connection_uri: None,
            pooled_uri: None,
            password: Some(new.clone()),
        }
    );
    let Err(error) = connect(&old_uri).await else {
        panic!("the old password still works");
    };
    assert_eq!(
        error.as_db_error().map(|e| e.code().code()),
        Some("28P01"),
        "invalid_password"
    );
    connect(&old_uri.replace(old.expose(), new.expose()))
        .await
        .expect("the new password works");
    provider.delete_project(&name).await.unwrap();
}

#[tokio::test]
async fn deletion_drops_database_and_role_even_with_sessions_open() {
    let server = server();
    let provider = provider(server, CopyStrategy::Template);
    let name = name("del");
    let (project, _) = new_project(&*provider, &name).await;
    let session = connect(&uri(&project)).await.unwrap();
    provider
        .delete_project(&name)
        .await
        .expect("dropped with a session open");
    let admin = admin(server).await;
    assert!(!exists(&admin, "pg_database", "datname", &name).await);
    assert!(!exists(&admin, "pg_roles", "rolname", &name).await);
    assert!(
        session.simple_query("SELECT 1").await.is_err(),
        "its session was ended"
    );
    // Gone already is fine; reads say not found.
    provider.delete_project(&name).await.unwrap();
    assert!(
        provider
            .get_project(&name)
            .await
            .unwrap_err()
            .is_not_found()
    );
}

#[tokio::test]
async fn a_foreign_database_or_role_of_the_same_name_is_never_adopted_or_dropped() {
    let server = server();
    let provider = provider(server, CopyStrategy::Template);
    let admin = admin(server).await;

    // A database someone else made.
    let taken = name("foreign");
    admin
        .batch_execute(&format!("CREATE DATABASE \"{taken}\""))
        .await
        .unwrap();
    let request = ProjectRequest {
        name: taken.clone(),
        db_password: Some(Password::generate()),
        resumed: dbops::providers::Resume::OwnName,
        ..ProjectRequest::default()
    };
    let error = provider
        .create_project(&request, "dbops-someone-project-create")
        .await
        .unwrap_err();
    assert!(error.is_name_conflict(), "{error}");
    assert!(
        exists(&admin, "pg_database", "datname", &taken).await,
        "left alone"
    );

    // A role someone else made: neither its password nor the role is touched.
    let role = name("role");
    admin
        .batch_execute(&format!("CREATE ROLE \"{role}\" LOGIN PASSWORD 'theirs'"))
        .await
        .unwrap();
    let request = ProjectRequest {
        name: role.clone(),
        db_password: Some(Password::generate()),
        ..ProjectRequest::default()
    };
    let error = provider
        .create_project(&request, "dbops-someone-project-create")
        .await
        .unwrap_err();
    assert_eq!(error.category(), "NameConflict");
    assert!(!exists(&admin, "pg_database", "datname", &role).await);
    provider.delete_project(&role).await.unwrap();
    assert!(
        exists(&admin, "pg_roles", "rolname", &role).await,
        "an unmarked role is never dropped"
    );
    admin
        .batch_execute(&format!("DROP ROLE \"{role}\""))
        .await
        .unwrap();
    admin
        .batch_execute(&format!("DROP DATABASE \"{taken}\""))
        .await
        .unwrap();
}

#[tokio::test]
async fn a_retried_create_finds_its_own_work_and_redoes_a_cut_short_copy() {
    let server = server();
    let provider = provider(server, CopyStrategy::Logical);
    let admin = admin(server).await;
    let (project, _) = seeded_project(&*provider, "crash").await;

    // A branch copy cut short: the role and an unmarked, empty database.
    let branch = name("cut");
    let key = format!("dbops-{branch}-branch-create");
    admin
        .batch_execute(&format!(
            "CREATE ROLE \"{branch}\" LOGIN; COMMENT ON ROLE \"{branch}\" IS '{key}'"
        ))
        .await
        .unwrap();
    admin
        .batch_execute(&format!("CREATE DATABASE \"{branch}\" OWNER \"{branch}\""))
        .await
        .unwrap();
    let (made, password) = new_branch(&*provider, &project, &branch)
        .await
        .expect("the retry completes the branch");
    let copy = connect(&uri(&made)).await.unwrap();
    assert_eq!(count(&copy, "SELECT count(*) FROM orders").await, 3);

    // Retried again after it finished (the answer was lost): the same
    // branch, with the password the resource keeps now.
    let request = BranchRequest {
        project_id: project.clone(),
        branch_name: branch.clone(),
        db_password: Some(password.clone()),
        resumed: dbops::providers::Resume::OwnName,
        ..BranchRequest::default()
    };
    let again = provider.create_branch(&request, &key).await.unwrap();
    assert_eq!(again.id, made.id);
    connect(&uri(&again))
        .await
        .expect("same password still works");
    assert_eq!(
        count(&copy, "SELECT count(*) FROM customers").await,
        2,
        "not copied twice"
    );

    // Another resource's create of the same name conflicts.
    let error = provider
        .create_branch(&request, "dbops-other-branch-create")
        .await
        .unwrap_err();
    assert!(error.is_name_conflict());

    provider.delete_branch(&project, &branch).await.unwrap();
    provider.delete_project(&project).await.unwrap();
}

#[tokio::test]
async fn unsupported_project_fields_are_refused_with_a_reason() {
    let server = server();
    let provider = provider(server, CopyStrategy::Template);
    let request = ProjectRequest {
        name: name("bad"),
        region: Some("us-east-1".into()),
        db_password: Some(Password::generate()),
        ..ProjectRequest::default()
    };
    let error = provider
        .create_project(&request, "dbops-x-project-create")
        .await
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        "postgres project.create failed: a postgres provider has no regions: remove spec.region"
    );
    let request = ProjectRequest {
        name: name("ver"),
        postgres_version: Some("9".into()),
        db_password: Some(Password::generate()),
        ..ProjectRequest::default()
    };
    let error = provider
        .create_project(&request, "dbops-y-project-create")
        .await
        .unwrap_err();
    assert!(
        error
            .to_string()
            .contains("not 9: change or remove spec.postgresVersion"),
        "{error}"
    );
    assert!(!error.is_transient());
}

#[tokio::test]
async fn an_unreachable_server_is_a_transient_error_without_secrets() {
    let mut config = ProviderConfig::new(
        ProviderApi::Postgres,
        Some("postgres://admin@127.0.0.1:9/postgres?sslmode=disable".into()),
        SecretString::from("hunter2".to_string()),
    );
    config.spec.request_timeout_seconds = 2;
    let provider = build(&config, None).unwrap();
    let error = tokio::time::timeout(Duration::from_secs(10), provider.get_project("x"))
        .await
        .unwrap()
        .unwrap_err();
    assert!(error.is_transient());
    assert_eq!(error.category(), "VendorUnreachable");
    assert!(!error.to_string().contains("hunter2"));
}

mod through_the_operator {
    //! The whole operator (on the in-memory Kubernetes API) with a `postgres`
    //! provider: the URIs in the Secrets it writes connect, and deleting the
    //! resources drops what they made.

    use super::*;
    use dbops::api::v1alpha1::{
        DatabaseBranch, DatabaseProject, DatabaseProjectSpec, DatabaseSnapshot,
        DatabaseSnapshotSpec, DeletionPolicy, LocalObjectRef, RestoreSource,
    };
    use dbops::controllers::Managed;
    use k8s_openapi::api::core::v1::Secret;
    use kube::api::{Api, DeleteParams, PostParams};
    use support::{Harness, NS, wait_for};

    async fn ready<K>(h: &Harness, name: &str) -> K
    where
        K: Managed
            + kube::Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
            + Clone
            + serde::de::DeserializeOwned
            + std::fmt::Debug,
    {
        let api: Api<K> = Api::namespaced(h.client.clone(), NS);
        wait_for(&format!("{name} Ready"), || {
            let api = api.clone();
            async move {
                api.get_opt(name)
                    .await
                    .ok()
                    .flatten()
                    .filter(|o| o.is_ready())
            }
        })
        .await
    }

    async fn secret_uri(h: &Harness, name: &str) -> String {
        let api: Api<Secret> = Api::namespaced(h.client.clone(), NS);
        let secret = api.get(name).await.unwrap();
        String::from_utf8(secret.data.unwrap()["uri"].0.clone()).unwrap()
    }

    #[tokio::test]
    async fn project_branch_snapshot_restore_and_delete() {
        let server = server();
        let h = Harness::bare().await;
        h.create_postgres_provider("default", server, CopyStrategy::Logical)
            .await;
        let (stop, operator) = support::start_operator(&h);

        let projects: Api<DatabaseProject> = Api::namespaced(h.client.clone(), NS);
        projects
            .create(
                &PostParams::default(),
                &DatabaseProject::new("shop", DatabaseProjectSpec::default()),
            )
            .await
            .unwrap();
        let project: DatabaseProject = ready(&h, "shop").await;
        let project_db = project.status.unwrap().project_id.unwrap();
        let app = connect(&secret_uri(&h, "shop-connection").await)
            .await
            .expect("the project's Secret URI connects");
        app.batch_execute("CREATE TABLE t (v int); INSERT INTO t VALUES (1)")
            .await
            .unwrap();

        let branches: Api<DatabaseBranch> = Api::namespaced(h.client.clone(), NS);
        branches
            .create(&PostParams::default(), &support::branch("preview", "shop"))
            .await
            .unwrap();
        let branch: DatabaseBranch = ready(&h, "preview").await;
        let branch_db = branch.status.unwrap().branch_id.unwrap();
        assert_ne!(branch_db, project_db);
        let copy = connect(&secret_uri(&h, "preview-db").await)
            .await
            .expect("the branch's Secret URI connects");
        assert_eq!(count(&copy, "SELECT count(*) FROM t").await, 1);
        copy.batch_execute("INSERT INTO t VALUES (2)")
            .await
            .unwrap();
        assert_eq!(count(&app, "SELECT count(*) FROM t").await, 1);

        let snapshots: Api<DatabaseSnapshot> = Api::namespaced(h.client.clone(), NS);
        snapshots
            .create(
                &PostParams::default(),
                &DatabaseSnapshot::new(
                    "nightly",
                    DatabaseSnapshotSpec {
                        project_ref: LocalObjectRef {
                            name: "shop".into(),
                        },
                        label: None,
                        external_id: None,
                        deletion_policy: Some(DeletionPolicy::Delete),
                    },
                ),
            )
            .await
            .unwrap();
        let snapshot: DatabaseSnapshot = ready(&h, "nightly").await;
        let snapshot_db = snapshot.status.unwrap().snapshot_id.unwrap();
        app.batch_execute("INSERT INTO t VALUES (3)").await.unwrap();
        projects
            .create(
                &PostParams::default(),
                &DatabaseProject::new(
                    "shop-restored",
                    DatabaseProjectSpec {
                        restore_from: Some(RestoreSource {
                            snapshot_ref: Some(LocalObjectRef {
                                name: "nightly".into(),
                            }),
                            snapshot_id: None,
                        }),
                        ..Default::default()
                    },
                ),
            )
            .await
            .unwrap();
        let restored: DatabaseProject = ready(&h, "shop-restored").await;
        let restored_db = restored.status.unwrap().project_id.unwrap();
        let back = connect(&secret_uri(&h, "shop-restored-connection").await)
            .await
            .expect("the restored project's Secret URI connects");
        assert_eq!(count(&back, "SELECT count(*) FROM t").await, 1);

        // Deleting the resources drops every database and role they made.
        drop((app, copy, back));
        branches
            .delete("preview", &DeleteParams::default())
            .await
            .unwrap();
        snapshots
            .delete("nightly", &DeleteParams::default())
            .await
            .unwrap();
        for name in ["shop", "shop-restored"] {
            projects
                .delete(name, &DeleteParams::default())
                .await
                .unwrap();
        }
        let admin = admin(server).await;
        for db in [&project_db, &branch_db, &snapshot_db, &restored_db] {
            wait_for(&format!("{db} dropped"), || {
                let admin = &admin;
                async move {
                    (!exists(admin, "pg_database", "datname", db).await
                        && !exists(admin, "pg_roles", "rolname", db).await)
                        .then_some(())
                }
            })
            .await;
        }
        let _ = stop.send(());
        let _ = operator.await;
    }
}

#[tokio::test]
async fn branches_and_snapshots_copied_at_once_from_one_parent_all_finish() {
    // Template copies of one parent made together: each ends the others'
    // sessions and hands its objects over from the parent's role, which
    // rewrites the parent database's catalog row; none may fail for it.
    let server = server();
    let provider = provider(server, CopyStrategy::Template);
    let (project, parent) = seeded_project(&*provider, "many").await;
    drop(parent);
    let branches: Vec<String> = (0..4).map(|i| name(&format!("many{i}"))).collect();
    let snapshot_keys: Vec<String> = (0..4)
        .map(|i| format!("dbops-{project}-{i}-snapshot-create"))
        .collect();
    let snapshot = SnapshotRequest {
        project_id: project.clone(),
        label: None,
    };
    // As the controllers do, a transient error (the parent still busy
    // after every retry) is tried again; anything else fails the test.
    async fn retried<T, F, Fut>(mut call: F) -> Result<T, ProviderError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, ProviderError>>,
    {
        let mut attempts = 0;
        loop {
            match call().await {
                Err(e) if e.is_transient() && attempts < 10 => attempts += 1,
                other => return other,
            }
        }
    }
    let (made, snaps) = tokio::join!(
        futures::future::join_all(
            branches
                .iter()
                .map(|branch| retried(|| new_branch(&*provider, &project, branch)))
        ),
        futures::future::join_all(
            snapshot_keys
                .iter()
                .map(|key| retried(|| provider.create_snapshot(&snapshot, key)))
        )
    );
    for branch in made {
        let (branch, _) = branch.expect("every branch finishes");
        let copy = connect(&uri(&branch)).await.unwrap();
        assert_eq!(count(&copy, "SELECT count(*) FROM orders").await, 3);
    }
    let snaps: Vec<_> = snaps
        .into_iter()
        .map(|s| s.expect("every snapshot finishes"))
        .collect();
    let admin = admin(server).await;
    let owner: String = admin
        .query_one(
            "SELECT pg_get_userbyid(datdba)::text FROM pg_database WHERE datname = $1",
            &[&project],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(owner, project, "the parent keeps its owner");
    for branch in &branches {
        provider.delete_branch(&project, branch).await.unwrap();
    }
    for snap in &snaps {
        provider.delete_snapshot(&project, &snap.id).await.unwrap();
    }
    provider.delete_project(&project).await.unwrap();
}

#[tokio::test]
async fn drop_own_drops_only_what_carries_the_marker() {
    use dbops::providers::postgres::{Server, Source};
    let server = server();
    let pg = Server::new(
        &server.endpoint,
        Some(&SecretString::from(server.password.clone())),
        None,
        Duration::from_secs(5),
    )
    .unwrap();
    let admin = admin(server).await;
    // Someone else's database and role under the name.
    let foreign = name("notours");
    admin
        .batch_execute(&format!("CREATE ROLE \"{foreign}\" LOGIN"))
        .await
        .unwrap();
    admin
        .batch_execute(&format!(
            "CREATE DATABASE \"{foreign}\" OWNER \"{foreign}\""
        ))
        .await
        .unwrap();
    pg.drop_own(&foreign, "dbops-emulator-x").await.unwrap();
    assert!(exists(&admin, "pg_database", "datname", &foreign).await);
    assert!(exists(&admin, "pg_roles", "rolname", &foreign).await);
    admin
        .batch_execute(&format!("DROP DATABASE \"{foreign}\""))
        .await
        .unwrap();
    admin
        .batch_execute(&format!("DROP ROLE \"{foreign}\""))
        .await
        .unwrap();

    // Its own: dropped, database and role.
    let own = name("ours");
    let marker = format!("dbops-emulator-{own}");
    pg.ensure_role(&own, &marker, None).await.unwrap();
    pg.ensure_database(&own, &own, &marker, None, Source::Empty, true)
        .await
        .unwrap();
    pg.drop_own(&own, &marker).await.unwrap();
    assert!(!exists(&admin, "pg_database", "datname", &own).await);
    assert!(!exists(&admin, "pg_roles", "rolname", &own).await);
}

#[tokio::test]
async fn a_tenants_role_can_connect_only_to_its_own_databases() {
    let server = server();
    let provider = provider(server, CopyStrategy::Template);
    let (a, _) = new_project(&*provider, &name("tenant-a")).await;
    let (b, b_password) = new_project(&*provider, &name("tenant-b")).await;
    let (branch, _) = new_branch(&*provider, &a.id, &name("tenant-a-br"))
        .await
        .unwrap();
    // B's role, with B's own password, against A's database and branch.
    for foreign in [&a.id, &branch.id] {
        let mut url = url::Url::parse(&uri(&b)).unwrap();
        url.set_password(Some(b_password.expose())).unwrap();
        url.set_path(&format!("/{foreign}"));
        let refused = connect(url.as_str()).await.expect_err("refused");
        let code = refused.as_db_error().map(|e| e.code().code().to_string());
        assert_eq!(code.as_deref(), Some("42501"), "{refused}");
    }
    // Its own, still fine.
    connect(&uri(&b)).await.expect("its own database");
}

#[tokio::test]
async fn from_branch_names_only_a_branch_of_the_same_project() {
    let server = server();
    let provider = provider(server, CopyStrategy::Template);
    let (a, _) = new_project(&*provider, &name("fb-a")).await;
    let (a_branch, _) = new_branch(&*provider, &a.id, &name("fb-a-br"))
        .await
        .unwrap();
    let (b, _) = new_project(&*provider, &name("fb-b")).await;
    let admin = admin(server).await;
    let hand_made = name("fb-hand");
    admin
        .batch_execute(&format!("CREATE DATABASE \"{hand_made}\""))
        .await
        .unwrap();
    for from in [
        a.id.clone(),
        a_branch.id.clone(),
        hand_made.clone(),
        "postgres".into(),
    ] {
        let target = name("fb-steal");
        let request = BranchRequest {
            project_id: b.id.clone(),
            branch_name: target.clone(),
            from_branch: Some(from.clone()),
            db_password: Some(Password::generate()),
            ..BranchRequest::default()
        };
        let err = provider
            .create_branch(&request, &format!("dbops-{target}-branch-create"))
            .await
            .expect_err("another project's or any other database is refused");
        assert!(
            err.to_string()
                .contains("fromBranch names a branch of the same project only"),
            "{err}"
        );
        assert!(!exists(&admin, "pg_database", "datname", &target).await);
    }
    // A branch of B's own project is a fine source.
    let (b_branch, _) = new_branch(&*provider, &b.id, &name("fb-b-br"))
        .await
        .unwrap();
    let target = name("fb-ok");
    let request = BranchRequest {
        project_id: b.id.clone(),
        branch_name: target.clone(),
        from_branch: Some(b_branch.id.clone()),
        db_password: Some(Password::generate()),
        ..BranchRequest::default()
    };
    let copy = provider
        .create_branch(&request, &format!("dbops-{target}-branch-create"))
        .await
        .unwrap();
    assert_eq!(copy.project_id, b.id);
    // A read reports a branch under the project recorded at the vendor, and
    // a database dbops did not make as a branch under none.
    let read = provider.get_branch(&b.id, &b_branch.id).await.unwrap();
    assert_eq!(read.project_id, b.id);
    let read = provider.get_branch(&b.id, &hand_made).await.unwrap();
    assert_eq!(read.project_id, "", "no project to adopt it under");
    let read = provider.get_branch(&b.id, &a_branch.id).await.unwrap();
    assert_eq!(read.project_id, a.id);
}

#[tokio::test]
async fn rotation_never_changes_the_password_of_a_role_dbops_did_not_make_with_the_database() {
    let server = server();
    let provider = provider(server, CopyStrategy::Template);
    let admin = admin(server).await;
    let owner = name("someone");
    let database = name("theirs");
    admin
        .batch_execute(&format!(
            "CREATE ROLE \"{owner}\" LOGIN PASSWORD 'their-own'"
        ))
        .await
        .unwrap();
    admin
        .batch_execute(&format!("CREATE DATABASE \"{database}\" OWNER \"{owner}\""))
        .await
        .unwrap();
    let err = provider
        .credentials_for(&RotationTarget::Project {
            id: database.clone(),
        })
        .unwrap()
        .rotate_credentials(
            &RotationTarget::Project {
                id: database.clone(),
            },
            &Password::generate(),
            "k",
        )
        .await
        .expect_err("refused");
    assert!(matches!(err, ProviderError::NameConflict { .. }), "{err}");
    let mut parsed = url::Url::parse(&server.admin_url()).unwrap();
    parsed.set_username(&owner).unwrap();
    parsed.set_password(Some("their-own")).unwrap();
    parsed.set_path(&format!("/{database}"));
    connect(parsed.as_str())
        .await
        .expect("the owner still logs in with their password");
    // Deleting it (as an adopter with deletionPolicy Delete would) drops the
    // database but never the role dbops did not make.
    provider.delete_project(&database).await.unwrap();
    assert!(!exists(&admin, "pg_database", "datname", &database).await);
    assert!(exists(&admin, "pg_roles", "rolname", &owner).await);
}

#[tokio::test]
async fn a_logical_copy_is_made_entirely_as_the_branchs_role() {
    let server = server();
    let provider = provider(server, CopyStrategy::Logical);
    let (project, _) = new_project(&*provider, &name("asrole")).await;
    let tenant = connect(&uri(&project)).await.unwrap();
    // The tenant's own schema and objects, and a search_path of its own for
    // every session in its database (the admin's sessions set theirs at
    // connection start, which overrides it).
    tenant
        .batch_execute(&format!(
            "CREATE SCHEMA app;
             CREATE FUNCTION app.whoami() RETURNS text LANGUAGE sql AS $$ SELECT current_user::text $$;
             CREATE TABLE app.t (id int, by text DEFAULT app.whoami());
             INSERT INTO app.t (id) VALUES (1);
             ALTER DATABASE \"{}\" SET search_path = app, pg_catalog;",
            project.id
        ))
        .await
        .unwrap();
    let (branch, _) = new_branch(&*provider, &project.id, &name("asrole-br"))
        .await
        .unwrap();
    let copy = connect(&uri(&branch)).await.unwrap();
    let by: String = copy
        .query_one("SELECT by FROM app.t", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(by, project.id, "the row as the parent's owner wrote it");
    // Every schema and relation of the copy is the branch role's: nothing
    // in it was created by the admin.
    let foreign = count(
        &copy,
        "SELECT count(*) FROM pg_namespace n WHERE n.nspname NOT LIKE 'pg\\_%' \
         AND n.nspname NOT IN ('information_schema', 'public') \
         AND pg_get_userbyid(n.nspowner) <> current_user",
    )
    .await;
    assert_eq!(foreign, 0, "schemas made by another role");
    let foreign = count(
        &copy,
        "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE n.nspname = 'app' AND pg_get_userbyid(c.relowner) <> current_user",
    )
    .await;
    assert_eq!(foreign, 0, "relations made by another role");
}
