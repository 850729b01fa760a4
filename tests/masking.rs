//! The masking planner (`controllers/pipeline/masking.rs`) against a real
//! PostgreSQL: a copy of a database (as a `postgres` branch is made, from a
//! template) masked by one statement keeps no original value in a masked
//! column, leaves its parent alone, keeps joins, foreign keys, unique
//! constraints and triggers, and a schema-only copy keeps the schema with no
//! rows.

mod support;

use std::collections::BTreeMap;

use dbops::api::v1alpha1::{ColumnMask, MaskFunction, TableMask};
use dbops::controllers::pipeline::masking::{
    columns, columns_sql, mask_script, plan, schema_only_script, suspects,
};
use support::postgres::server;
use tokio_postgres::{Client, NoTls};

async fn connect(uri: &str) -> Client {
    let (client, connection) = tokio_postgres::connect(uri, NoTls).await.unwrap();
    tokio::spawn(connection);
    client
}

async fn admin_in(database: &str) -> Client {
    let mut url = url::Url::parse(&server().admin_url()).unwrap();
    url.set_path(database);
    connect(url.as_str()).await
}

/// Database `name`, with users, orders (a foreign key on the email), a
/// trigger, a view, a function and an index; then `copy`, made from it as a
/// template (as a `postgres` branch is).
async fn source_and_copy(name: &str, copy: &str) {
    let admin = connect(&server().admin_url()).await;
    for db in [copy, name] {
        admin
            .batch_execute(&format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"))
            .await
            .unwrap();
    }
    admin
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .await
        .unwrap();
    let src = admin_in(name).await;
    src.batch_execute(
        "CREATE TABLE users (id serial PRIMARY KEY, email text UNIQUE NOT NULL, full_name text, phone varchar(20), card_last4 text, active boolean);
         CREATE TABLE orders (id serial PRIMARY KEY, customer_email text REFERENCES users (email), cents int);
         CREATE TABLE audit (note text);
         CREATE FUNCTION audit_users() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN INSERT INTO audit VALUES (OLD.email); RETURN NEW; END $$;
         CREATE TRIGGER users_audit AFTER UPDATE ON users FOR EACH ROW EXECUTE FUNCTION audit_users();
         CREATE VIEW big_orders AS SELECT * FROM orders WHERE cents > 1000;
         CREATE INDEX orders_cents ON orders (cents);
         INSERT INTO users (email, full_name, phone, card_last4, active)
           SELECT 'person' || n || '@shop.example', 'Person Number ' || n, '+1 (555) 01' || lpad(n::text, 2, '0'), lpad(n::text, 4, '0'), true
           FROM generate_series(1, 50) AS n;
         INSERT INTO orders (customer_email, cents) SELECT 'person' || (n % 50 + 1) || '@shop.example', n * 10 FROM generate_series(1, 200) AS n;",
    )
    .await
    .unwrap();
    drop(src);
    admin
        .batch_execute(&format!("CREATE DATABASE {copy} TEMPLATE {name}"))
        .await
        .unwrap();
}

async fn strings(client: &Client, sql: &str) -> Vec<String> {
    client
        .query(sql, &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get::<_, Option<String>>(0).unwrap_or_default())
        .collect()
}

async fn count(client: &Client, sql: &str) -> i64 {
    client.query_one(sql, &[]).await.unwrap().get(0)
}

/// The catalog rows of `client`'s database, as the SQL channel answers them.
async fn catalog(client: &Client) -> Vec<dbops::controllers::pipeline::masking::Column> {
    let rows = client.simple_query(columns_sql()).await.unwrap();
    let rows: Vec<Vec<Option<String>>> = rows
        .iter()
        .filter_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(row) => Some(
                (0..row.len())
                    .map(|i| row.get(i).map(str::to_string))
                    .collect(),
            ),
            _ => None,
        })
        .collect();
    columns(&rows)
}

fn rules() -> Vec<TableMask> {
    let mask = |with| ColumnMask { with, value: None };
    vec![
        TableMask {
            table: "public.users".into(),
            columns: BTreeMap::from([
                ("email".to_string(), mask(MaskFunction::Email)),
                ("full_name".to_string(), mask(MaskFunction::Redact)),
                ("phone".to_string(), mask(MaskFunction::Digits)),
                (
                    "card_last4".to_string(),
                    ColumnMask {
                        with: MaskFunction::Constant,
                        value: Some("0000".into()),
                    },
                ),
            ]),
        },
        TableMask {
            table: "orders".into(),
            columns: BTreeMap::from([("customer_email".to_string(), mask(MaskFunction::Email))]),
        },
    ]
}

#[tokio::test]
async fn a_masked_copy_keeps_no_original_value_and_every_join_key_and_constraint() {
    source_and_copy("mask_src", "mask_copy").await;
    let src = admin_in("mask_src").await;
    let copy = admin_in("mask_copy").await;
    let before = strings(
        &src,
        "SELECT email || full_name || phone || card_last4 FROM users ORDER BY id",
    )
    .await;
    let originals: Vec<String> = strings(
        &src,
        "SELECT v FROM users, LATERAL (VALUES (email), (full_name), (phone), (card_last4)) AS x (v)",
    )
    .await;

    // Before: the check names the personal-looking columns no rule covers.
    let found = catalog(&copy).await;
    assert_eq!(
        suspects(&found, &[]),
        [
            "public.orders.customer_email",
            "public.users.email",
            "public.users.full_name",
            "public.users.phone",
            "public.users.card_last4",
        ]
    );
    assert!(suspects(&found, &rules()).is_empty());

    let planned = plan(&rules(), &found).unwrap();
    let started = std::time::Instant::now();
    copy.batch_execute(&mask_script(&planned, "run-key-1").unwrap())
        .await
        .expect("the masking run");
    println!("masked 250 rows in {:?}", started.elapsed());

    // No original value is left in a masked column.
    let masked = strings(
        &copy,
        "SELECT v FROM users, LATERAL (VALUES (email), (full_name), (phone), (card_last4)) AS x (v) \
         UNION ALL SELECT customer_email FROM orders",
    )
    .await;
    for value in &originals {
        assert!(!masked.contains(value), "{value} is still there");
    }
    assert_eq!(
        count(
            &copy,
            "SELECT count(*) FROM users WHERE email NOT LIKE 'u%@example.invalid'"
        )
        .await,
        0
    );
    // Digits keeps the format; Redact the length.
    let phones = strings(&copy, "SELECT phone FROM users ORDER BY id").await;
    let old_phones = strings(&src, "SELECT phone FROM users ORDER BY id").await;
    for (new, old) in phones.iter().zip(&old_phones) {
        assert_eq!(new.len(), old.len());
        assert!(new.starts_with("+") && new.contains(") "), "{new}");
        assert_ne!(new, old);
    }
    assert_eq!(
        count(
            &copy,
            "SELECT count(*) FROM users WHERE full_name !~ '^\\*+$'"
        )
        .await,
        0
    );
    // Joins on the masked key still match, the foreign key and unique
    // constraint hold (re-added and checked), the trigger is back and did
    // not fire, the schema is whole.
    assert_eq!(
        count(
            &copy,
            "SELECT count(*) FROM orders JOIN users ON users.email = orders.customer_email"
        )
        .await,
        200
    );
    assert_eq!(
        count(&copy, "SELECT count(DISTINCT email) FROM users").await,
        50
    );
    assert_eq!(
        count(&copy, "SELECT count(*) FROM pg_constraint WHERE contype = 'f' AND conrelid = 'orders'::regclass").await,
        1
    );
    assert_eq!(
        count(
            &copy,
            "SELECT count(*) FROM pg_trigger WHERE tgname = 'users_audit' AND tgenabled = 'O'"
        )
        .await,
        1
    );
    assert_eq!(count(&copy, "SELECT count(*) FROM audit").await, 0);
    assert!(
        copy.batch_execute("INSERT INTO orders (customer_email) VALUES ('nobody@x')")
            .await
            .is_err(),
        "the foreign key is enforced again"
    );
    // The parent is unchanged.
    assert_eq!(
        strings(
            &src,
            "SELECT email || full_name || phone || card_last4 FROM users ORDER BY id"
        )
        .await,
        before
    );
    // Another run (another branch, or a reset) gives other values.
    let first = strings(&copy, "SELECT email FROM users ORDER BY id").await;
    drop(copy);
    let admin = connect(&server().admin_url()).await;
    admin
        .batch_execute("DROP DATABASE mask_copy WITH (FORCE)")
        .await
        .unwrap();
    drop(src);
    admin
        .batch_execute("CREATE DATABASE mask_copy TEMPLATE mask_src")
        .await
        .unwrap();
    let again = admin_in("mask_copy").await;
    again
        .batch_execute(&mask_script(&planned, "run-key-2").unwrap())
        .await
        .unwrap();
    let other = strings(&again, "SELECT email FROM users ORDER BY id").await;
    assert_ne!(other, first, "a run's key is its own");
}

#[tokio::test]
async fn a_schema_only_copy_has_the_schema_and_no_rows() {
    source_and_copy("mask_schema_src", "mask_schema_copy").await;
    let copy = admin_in("mask_schema_copy").await;
    copy.batch_execute(&schema_only_script())
        .await
        .expect("the schema-only run");
    for table in ["users", "orders", "audit"] {
        assert_eq!(
            count(&copy, &format!("SELECT count(*) FROM {table}")).await,
            0,
            "{table} is empty"
        );
    }
    let src = admin_in("mask_schema_src").await;
    let shape = "SELECT (SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'public') \
                 + (SELECT count(*) FROM pg_constraint c JOIN pg_namespace n ON n.oid = c.connamespace WHERE n.nspname = 'public') \
                 + (SELECT count(*) FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = 'public') \
                 + (SELECT count(*) FROM pg_trigger WHERE NOT tgisinternal)";
    assert_eq!(count(&copy, shape).await, count(&src, shape).await);
    assert!(
        count(&src, "SELECT count(*) FROM orders").await > 0,
        "the parent keeps its rows"
    );
    // The sequences start again.
    copy.batch_execute("INSERT INTO users (email) VALUES ('a@b')")
        .await
        .unwrap();
    assert_eq!(count(&copy, "SELECT max(id)::bigint FROM users").await, 1);
}
