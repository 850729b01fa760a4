//! The `DatabaseRole` grants planner (`controllers/pipeline/grants.rs`)
//! against a real PostgreSQL server: the scripts it writes do what the spec
//! says, in a database owned by a tenant's owner role, as the `postgres`
//! provider and the emulators' real databases lay them out.

mod support;

use std::collections::BTreeSet;

use dbops::api::v1alpha1::{Grant, Privilege, RotationStrategy};
use dbops::controllers::pipeline::grants::{
    Converge, Layout, Login, Unit, converge_script, desired, disable_script, drop_script, marker,
    missing_sql, observe_sql, observed_units, unmanaged,
};
use dbops::providers::Password;
use dbops::providers::postgres::server::verifier;
use support::postgres::server;
use tokio_postgres::{Client, NoTls};

async fn connect(uri: &str) -> Result<Client, tokio_postgres::Error> {
    let (client, connection) = tokio_postgres::connect(uri, NoTls).await?;
    tokio::spawn(connection);
    Ok(client)
}

/// A URI for `user` with `password` on the test server, in `database`.
fn uri(user: &str, password: &str, database: &str) -> String {
    let mut url = url::Url::parse(&server().endpoint).unwrap();
    url.set_username(user).unwrap();
    url.set_password(Some(password)).unwrap();
    url.set_path(database);
    url.to_string()
}

/// A fresh database `name` owned by login role `<name>_owner` (closed to
/// PUBLIC, as dbops makes them), with the admin connected to it.
struct Db {
    name: String,
    owner: Client,
    admin: Client,
}

async fn database(name: &str) -> Db {
    let admin = connect(&server().admin_url()).await.unwrap();
    let owner = format!("{name}_owner");
    // One statement at a time: `CREATE DATABASE` cannot run in a transaction.
    for statement in [
        format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
        format!(
            "DO $$ DECLARE r text; BEGIN \
               FOR r IN SELECT rolname FROM pg_roles WHERE rolname LIKE '{name}%' LOOP \
                 EXECUTE format('DROP ROLE %I', r); \
               END LOOP; END $$"
        ),
        format!("CREATE ROLE {owner} LOGIN PASSWORD 'owner-pw'"),
        format!("CREATE DATABASE {name} OWNER {owner}"),
        format!("REVOKE CONNECT, TEMPORARY ON DATABASE {name} FROM PUBLIC"),
    ] {
        admin.batch_execute(&statement).await.unwrap();
    }
    let owner = connect(&uri(&owner, "owner-pw", name)).await.unwrap();
    let mut admin_url = url::Url::parse(&server().admin_url()).unwrap();
    admin_url.set_path(name);
    let admin = connect(admin_url.as_str()).await.unwrap();
    Db {
        name: name.to_string(),
        owner,
        admin,
    }
}

fn grant(schema: &str, privileges: &[Privilege], tables: Option<&[&str]>, future: bool) -> Grant {
    Grant {
        schema: schema.to_string(),
        privileges: privileges.to_vec(),
        tables: tables.map(|t| t.iter().map(|s| s.to_string()).collect()),
        future_tables: future.then_some(true),
    }
}

/// Runs a converge of `layout` for `grants` (after `applied`) as the admin;
/// returns what it applied.
async fn converge(
    db: &Db,
    layout: &Layout,
    logins: &[Login],
    grants: &[Grant],
    applied: &BTreeSet<Unit>,
) -> Result<BTreeSet<Unit>, tokio_postgres::Error> {
    let wanted = desired(grants).unwrap();
    let script = converge_script(&Converge {
        layout,
        marker: &marker("uid-1"),
        logins,
        connection_limit: Some(5),
        desired: &wanted,
        applied,
    })
    .unwrap();
    db.admin.batch_execute(&script).await?;
    Ok(wanted)
}

fn login(name: &str, password: &str) -> Login {
    Login {
        name: name.to_string(),
        can_login: true,
        verifier: Some(verifier(&Password::new(password))),
    }
}

async fn missing(db: &Db, grants: &[Grant]) -> Vec<String> {
    let sql = missing_sql(&desired(grants).unwrap()).unwrap();
    db.admin
        .query(&sql, &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

#[tokio::test]
async fn a_select_only_role_reads_cannot_write_and_loses_what_is_removed() {
    let db = database("grants_select").await;
    db.owner
        .batch_execute(
            "CREATE TABLE orders (id int); INSERT INTO orders VALUES (1);
             CREATE TABLE customers (id int); CREATE TABLE secrets (id int);",
        )
        .await
        .unwrap();
    let layout = Layout::of("grants_select_reporting", RotationStrategy::InPlace);
    let logins = [login("grants_select_reporting", "pw-1")];
    let spec = [grant(
        "public",
        &[Privilege::Select],
        Some(&["orders", "customers"]),
        false,
    )];
    let applied = converge(&db, &layout, &logins, &spec, &BTreeSet::new())
        .await
        .unwrap();
    let reporting = connect(&uri("grants_select_reporting", "pw-1", &db.name))
        .await
        .expect("the role connects to its database");
    let row = reporting
        .query_one("SELECT count(*) FROM orders", &[])
        .await
        .unwrap();
    assert_eq!(row.get::<_, i64>(0), 1);
    let write = reporting
        .batch_execute("INSERT INTO orders VALUES (2)")
        .await;
    assert_eq!(
        write.unwrap_err().code(),
        Some(&tokio_postgres::error::SqlState::INSUFFICIENT_PRIVILEGE)
    );
    assert!(
        reporting
            .batch_execute("SELECT * FROM secrets")
            .await
            .is_err()
    );
    assert!(
        reporting
            .batch_execute("CREATE TABLE mine (id int)")
            .await
            .is_err(),
        "no CREATE on public was granted"
    );

    // Someone else grants UPDATE: reported, not revoked.
    db.owner
        .batch_execute("GRANT UPDATE ON customers TO grants_select_reporting")
        .await
        .unwrap();
    let rows: Vec<(String, String, String)> = db
        .admin
        .query(&observe_sql("grants_select_reporting").unwrap(), &[])
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    let observed = observed_units(&rows);
    let extra: Vec<String> = unmanaged(&observed, &desired(&spec).unwrap())
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(extra, ["UPDATE on table public.customers"]);

    // Removing customers from the spec revokes it; orders stays.
    let spec = [grant(
        "public",
        &[Privilege::Select],
        Some(&["orders"]),
        false,
    )];
    converge(&db, &layout, &[], &spec, &applied).await.unwrap();
    reporting
        .batch_execute("SELECT * FROM orders")
        .await
        .unwrap();
    assert!(
        reporting
            .batch_execute("SELECT * FROM customers")
            .await
            .is_err(),
        "the removed grant is revoked"
    );
    assert!(
        reporting
            .batch_execute("UPDATE customers SET id = 1 WHERE false")
            .await
            .is_ok(),
        "what someone else granted is left alone"
    );
}

#[tokio::test]
async fn future_tables_and_objects_that_appear_later() {
    let db = database("grants_future").await;
    let layout = Layout::of("grants_future_app", RotationStrategy::InPlace);
    let logins = [login("grants_future_app", "pw-f")];
    let spec = [
        grant(
            "analytics",
            &[Privilege::Usage, Privilege::Select],
            None,
            true,
        ),
        grant("public", &[Privilege::Insert], Some(&["events"]), false),
    ];
    // Neither the schema nor the table exists yet: the pass applies what it
    // can and names what is missing.
    let applied = converge(&db, &layout, &logins, &spec, &BTreeSet::new())
        .await
        .unwrap();
    assert_eq!(
        missing(&db, &spec).await,
        ["schema analytics", "table public.events"]
    );
    // A migration creates them, as the owner.
    db.owner
        .batch_execute(
            "CREATE SCHEMA analytics; CREATE TABLE analytics.daily (n int);
             CREATE TABLE events (n int);",
        )
        .await
        .unwrap();
    assert!(missing(&db, &spec).await.is_empty());
    converge(&db, &layout, &[], &spec, &applied).await.unwrap();
    // A table created after the grant, by the owner, is covered.
    db.owner
        .batch_execute(
            "CREATE TABLE analytics.later (n int); INSERT INTO analytics.later VALUES (7)",
        )
        .await
        .unwrap();
    let app = connect(&uri("grants_future_app", "pw-f", &db.name))
        .await
        .unwrap();
    app.batch_execute("SELECT * FROM analytics.daily")
        .await
        .unwrap();
    let row = app
        .query_one("SELECT n FROM analytics.later", &[])
        .await
        .expect("futureTables covers a table created later");
    assert_eq!(row.get::<_, i32>(0), 7);
    app.batch_execute("INSERT INTO events VALUES (1)")
        .await
        .unwrap();
}

#[tokio::test]
async fn another_resources_role_is_never_touched_and_a_drop_leaves_nothing() {
    let db = database("grants_drop").await;
    db.admin
        .batch_execute("CREATE ROLE grants_drop_taken LOGIN PASSWORD 'theirs'")
        .await
        .unwrap();
    let taken = Layout::of("grants_drop_taken", RotationStrategy::InPlace);
    let error = converge(
        &db,
        &taken,
        &[login("grants_drop_taken", "mine")],
        &[],
        &BTreeSet::new(),
    )
    .await
    .unwrap_err();
    assert!(
        error
            .as_db_error()
            .unwrap()
            .message()
            .contains("exists and dbops did not create it"),
        "{error}"
    );
    connect(&uri("grants_drop_taken", "theirs", "postgres"))
        .await
        .expect("the other role's password is unchanged");
    // Its drop leaves the other role alone too.
    db.admin
        .batch_execute(&drop_script(&taken, &marker("uid-1")).unwrap())
        .await
        .unwrap();
    let exists = db
        .admin
        .query_opt(
            "SELECT 1 FROM pg_roles WHERE rolname = 'grants_drop_taken'",
            &[],
        )
        .await
        .unwrap();
    assert!(exists.is_some());

    // A migration role that owns what it made, in an Alternate pair.
    let layout = Layout::of("grants_drop_mig", RotationStrategy::Alternate);
    let spec = [grant(
        "public",
        &[Privilege::Usage, Privilege::Create],
        None,
        false,
    )];
    db.admin
        .batch_execute("GRANT CREATE ON SCHEMA public TO grants_drop_owner")
        .await
        .unwrap();
    converge(
        &db,
        &layout,
        &[login("grants_drop_mig_a", "pw-a")],
        &spec,
        &BTreeSet::new(),
    )
    .await
    .unwrap();
    let mig = connect(&uri("grants_drop_mig_a", "pw-a", &db.name))
        .await
        .unwrap();
    mig.batch_execute("CREATE TABLE made_by_mig (n int)")
        .await
        .unwrap();
    drop(mig);
    db.admin
        .batch_execute(&drop_script(&layout, &marker("uid-1")).unwrap())
        .await
        .expect("the drop never fails on what the role owns");
    let left = db
        .admin
        .query(
            "SELECT rolname FROM pg_roles WHERE rolname LIKE 'grants_drop_mig%'",
            &[],
        )
        .await
        .unwrap();
    assert!(left.is_empty(), "no role is left behind");
    let owner: String = db
        .admin
        .query_one(
            "SELECT tableowner::text FROM pg_tables WHERE tablename = 'made_by_mig'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        owner, "grants_drop_owner",
        "what it owned went to the owner"
    );
}

#[tokio::test]
async fn an_alternate_switch_keeps_a_reconnecting_client_up_and_disables_the_old_member() {
    let db = database("grants_alt").await;
    db.owner
        .batch_execute("CREATE TABLE t (n int); INSERT INTO t VALUES (1)")
        .await
        .unwrap();
    let layout = Layout::of("grants_alt_app", RotationStrategy::Alternate);
    let spec = [grant("public", &[Privilege::Select], None, false)];
    let applied = converge(
        &db,
        &layout,
        &[login("grants_alt_app_a", "pw-a")],
        &spec,
        &BTreeSet::new(),
    )
    .await
    .unwrap();
    // The "Secret": what a client reconnecting in a loop reads each time.
    let current = std::sync::Arc::new(std::sync::Mutex::new(uri(
        "grants_alt_app_a",
        "pw-a",
        &db.name,
    )));
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let client = {
        let (current, stop) = (current.clone(), stop.clone());
        tokio::spawn(async move {
            let (mut ok, mut failed) = (0u32, 0u32);
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let target = current.lock().unwrap().clone();
                match connect(&target).await {
                    Ok(c) if c.batch_execute("SELECT * FROM t").await.is_ok() => ok += 1,
                    _ => failed += 1,
                }
            }
            (ok, failed)
        })
    };
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    // The rotation: refresh the idle member, switch the Secret, then
    // disable the old member.
    converge(
        &db,
        &layout,
        &[login("grants_alt_app_b", "pw-b")],
        &spec,
        &applied,
    )
    .await
    .unwrap();
    *current.lock().unwrap() = uri("grants_alt_app_b", "pw-b", &db.name);
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let old = connect(&uri("grants_alt_app_a", "pw-a", &db.name))
        .await
        .unwrap();
    db.admin
        .batch_execute(&disable_script("grants_alt_app_a", &marker("uid-1")).unwrap())
        .await
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (ok, failed) = client.await.unwrap();
    assert!(ok > 3, "the client kept connecting ({ok})");
    assert_eq!(failed, 0, "no connection failed during the rotation");
    assert!(
        old.batch_execute("SELECT 1").await.is_err(),
        "the old member's session was ended"
    );
    assert!(
        connect(&uri("grants_alt_app_a", "pw-a", &db.name))
            .await
            .is_err(),
        "the old member can no longer log in"
    );
}

#[tokio::test]
async fn a_role_with_privileges_in_a_copy_of_its_database_is_disabled_and_the_drop_finishes() {
    let db = database("grants_copy").await;
    db.owner
        .batch_execute("CREATE TABLE t (n int)")
        .await
        .unwrap();
    let layout = Layout::of("grants_copy_r", RotationStrategy::InPlace);
    let spec = [grant("public", &[Privilege::Select], Some(&["t"]), false)];
    converge(
        &db,
        &layout,
        &[login("grants_copy_r", "pw")],
        &spec,
        &BTreeSet::new(),
    )
    .await
    .unwrap();
    // A branch made from the database as a template holds the same grants:
    // privileges of the server-wide role in a second database.
    let copy = database("grants_copy_b").await;
    copy.owner
        .batch_execute("CREATE TABLE t (n int)")
        .await
        .unwrap();
    copy.admin
        .batch_execute("GRANT CONNECT ON DATABASE grants_copy_b TO grants_copy_r; GRANT SELECT ON t TO grants_copy_r")
        .await
        .unwrap();
    db.admin
        .batch_execute(&drop_script(&layout, &marker("uid-1")).unwrap())
        .await
        .expect("the drop finishes");
    let left: bool = db
        .admin
        .query_one(
            "SELECT rolcanlogin FROM pg_roles WHERE rolname = 'grants_copy_r'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(!left, "the role is left, and may not log in");
    connect(&uri("grants_copy_r", "pw", "grants_copy_b"))
        .await
        .expect_err("not even into the copy");
    // Once the copy is gone, the drop removes it.
    drop(copy);
    let admin = connect(&server().admin_url()).await.unwrap();
    admin
        .batch_execute("DROP DATABASE grants_copy_b WITH (FORCE)")
        .await
        .unwrap();
    db.admin
        .batch_execute(&drop_script(&layout, &marker("uid-1")).unwrap())
        .await
        .unwrap();
    let gone = db
        .admin
        .query_opt(
            "SELECT 1 FROM pg_roles WHERE rolname = 'grants_copy_r'",
            &[],
        )
        .await
        .unwrap();
    assert!(gone.is_none());
}
