//! How long masking a branch takes, on a real PostgreSQL server: the one
//! statement of `controllers/pipeline/masking.rs` over a database of about
//! `--megabytes` (users with an email, a name, a phone and a card; orders
//! whose foreign key names the email), and a schema-only run.
//!
//! `cargo bench --bench masking -- [--megabytes 100] [--rounds 3]`
//!
//! Uses `DBOPS_TEST_POSTGRES_URL` when set, else starts a private server (as
//! the tests do). Each round copies the filled database (as a `postgres`
//! branch is made, from a template) and masks the copy. Prints one line per
//! measurement.

#[path = "../tests/support/postgres.rs"]
#[allow(dead_code)]
mod postgres;

use std::collections::BTreeMap;
use std::time::Instant;

use dbops::api::v1alpha1::{ColumnMask, MaskFunction, TableMask};
use dbops::controllers::pipeline::masking::{
    columns, columns_sql, mask_script, plan, schema_only_script,
};
use tokio_postgres::{Client, NoTls, SimpleQueryMessage};

fn args() -> (u64, usize) {
    let (mut megabytes, mut rounds) = (100, 3);
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().and_then(|v| v.parse::<u64>().ok());
        match flag.as_str() {
            "--megabytes" => megabytes = value.unwrap_or(megabytes),
            "--rounds" => rounds = value.map_or(rounds, |v| v as usize),
            _ => {}
        }
    }
    (megabytes, rounds)
}

async fn connect(url: &str) -> Client {
    let (client, connection) = tokio_postgres::connect(url, NoTls).await.expect("connect");
    tokio::spawn(connection);
    client
}

async fn admin_in(server: &postgres::TestServer, database: &str) -> Client {
    let mut url = url::Url::parse(&server.admin_url()).expect("url");
    url.set_path(database);
    connect(url.as_str()).await
}

fn rules() -> Vec<TableMask> {
    let mask = |with| ColumnMask { with, value: None };
    vec![
        TableMask {
            table: "users".into(),
            columns: BTreeMap::from([
                ("email".to_string(), mask(MaskFunction::Email)),
                ("full_name".to_string(), mask(MaskFunction::Redact)),
                ("phone".to_string(), mask(MaskFunction::Digits)),
                ("card".to_string(), mask(MaskFunction::Hash)),
            ]),
        },
        TableMask {
            table: "orders".into(),
            columns: BTreeMap::from([("customer_email".to_string(), mask(MaskFunction::Email))]),
        },
    ]
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let (megabytes, rounds) = args();
    let server = postgres::server();
    let admin = connect(&server.admin_url()).await;
    for db in ["bench_mask_copy", "bench_mask_src"] {
        admin
            .batch_execute(&format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"))
            .await
            .expect("drop");
    }
    admin
        .batch_execute("CREATE DATABASE bench_mask_src")
        .await
        .expect("create");
    let src = admin_in(server, "bench_mask_src").await;
    // About 660 bytes a user with its 3 orders, indexes included.
    let users = megabytes * 1024 * 1024 / 660;
    let filled = Instant::now();
    src.batch_execute(&format!(
        "CREATE TABLE users (id bigserial PRIMARY KEY, email text UNIQUE NOT NULL, full_name text, phone text, card text, note text);
         CREATE TABLE orders (id bigserial PRIMARY KEY, customer_email text REFERENCES users (email), cents int);
         INSERT INTO users (email, full_name, phone, card, note)
           SELECT 'person' || n || '@shop.example', 'Person Number ' || n, '+1 (555) ' || lpad((n % 10000000)::text, 7, '0'),
                  lpad(n::text, 16, '4'), repeat('x', 120)
           FROM generate_series(1, {users}) AS n;
         INSERT INTO orders (customer_email, cents) SELECT 'person' || (n % {users} + 1) || '@shop.example', n FROM generate_series(1, {users} * 3) AS n;
         ANALYZE;"
    ))
    .await
    .expect("fill");
    let size: i64 = src
        .query_one("SELECT pg_database_size(current_database())", &[])
        .await
        .expect("size")
        .get(0);
    println!(
        "filled {} users, {} orders: {:.1} MB in {:.1?}",
        users,
        users * 3,
        size as f64 / 1048576.0,
        filled.elapsed()
    );
    drop(src);
    for round in 1..=rounds {
        admin
            .batch_execute("DROP DATABASE IF EXISTS bench_mask_copy WITH (FORCE)")
            .await
            .expect("drop copy");
        admin
            .batch_execute("CREATE DATABASE bench_mask_copy TEMPLATE bench_mask_src")
            .await
            .expect("copy");
        let copy = admin_in(server, "bench_mask_copy").await;
        let rows: Vec<Vec<Option<String>>> = copy
            .simple_query(columns_sql())
            .await
            .expect("catalog")
            .iter()
            .filter_map(|m| match m {
                SimpleQueryMessage::Row(r) => {
                    Some((0..r.len()).map(|i| r.get(i).map(str::to_string)).collect())
                }
                _ => None,
            })
            .collect();
        let planned = plan(&rules(), &columns(&rows)).expect("plan");
        let started = Instant::now();
        copy.batch_execute(&mask_script(&planned, &format!("bench-{round}")).expect("script"))
            .await
            .expect("mask");
        let masked = started.elapsed();
        println!(
            "round {round}: masked 5 columns of {} rows ({:.1} MB) in {masked:.2?} ({:.1} MB/s)",
            users * 4,
            size as f64 / 1048576.0,
            size as f64 / 1048576.0 / masked.as_secs_f64()
        );
    }
    let copy = admin_in(server, "bench_mask_copy").await;
    let started = Instant::now();
    copy.batch_execute(&schema_only_script())
        .await
        .expect("schema only");
    println!(
        "schema-only run over the same database: {:.2?}",
        started.elapsed()
    );
    drop(copy);
    for db in ["bench_mask_copy", "bench_mask_src"] {
        admin
            .batch_execute(&format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"))
            .await
            .expect("drop");
    }
}
