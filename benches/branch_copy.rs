//! How long a `postgres` branch copy takes, with each copy strategy, on a
//! real PostgreSQL server.
//!
//! `cargo bench --bench branch_copy -- [--megabytes 100] [--rounds 3] [--sessions 4]`
//!
//! Uses `DBOPS_TEST_POSTGRES_URL` when set, else starts a private server
//! (as the tests do). Fills a project with about `--megabytes` of rows (a
//! table with an index and a foreign key, like an application's), then times
//! branch creates through the provider, as the operator calls it:
//! `Template` with the parent idle, `Template` while `--sessions` clients are
//! connected to the parent (they are disconnected; the bench counts them),
//! and `Logical` with the same clients connected (they stay). Also times a
//! snapshot and a restore from it. Prints one line per measurement.

#[path = "../tests/support/postgres.rs"]
#[allow(dead_code)]
mod postgres;

use std::time::{Duration, Instant};

use dbops::api::v1alpha1::{CopyStrategy, PostgresSettings, ProviderApi};
use dbops::providers::{
    BranchRequest, Password, ProjectRequest, Provider, ProviderConfig, RestoreRequest,
    SnapshotRequest, build,
};
use secrecy::SecretString;
use tokio_postgres::{Client, NoTls};

struct Args {
    megabytes: u64,
    rounds: usize,
    sessions: usize,
}

fn args() -> Args {
    let mut args = Args {
        megabytes: 100,
        rounds: 3,
        sessions: 4,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().and_then(|v| v.parse::<u64>().ok());
        match flag.as_str() {
            "--megabytes" => args.megabytes = value().unwrap_or(args.megabytes),
            "--rounds" => args.rounds = value().unwrap_or(3) as usize,
            "--sessions" => args.sessions = value().unwrap_or(4) as usize,
            _ => {} // cargo bench passes --bench
        }
    }
    args
}

fn provider(server: &postgres::TestServer, strategy: CopyStrategy) -> std::sync::Arc<dyn Provider> {
    let mut config = ProviderConfig::new(
        ProviderApi::Postgres,
        Some(server.endpoint.clone()),
        SecretString::from(server.password.clone()),
    );
    config.spec.request_timeout_seconds = 60;
    config.spec.postgres = Some(PostgresSettings {
        copy_strategy: strategy,
        connection_host: None,
    });
    build(&config, None).expect("provider")
}

async fn connect(uri: &str) -> Client {
    let (client, connection) = tokio_postgres::connect(uri, NoTls).await.expect("connect");
    tokio::spawn(connection);
    client
}

fn median(mut times: Vec<Duration>) -> Duration {
    times.sort();
    times[times.len() / 2]
}

#[tokio::main]
async fn main() {
    let args = args();
    let server = postgres::server();
    let template = provider(server, CopyStrategy::Template);
    let logical = provider(server, CopyStrategy::Logical);
    let run = format!("{:06x}", rand::random::<u32>() & 0xff_ffff);
    let project = format!("bench-{run}");
    let password = Password::generate();
    let made = template
        .create_project(
            &ProjectRequest {
                name: project.clone(),
                db_password: Some(password.clone()),
                ..ProjectRequest::default()
            },
            &format!("dbops-{project}-project-create"),
        )
        .await
        .expect("project");
    let uri = made.connection_uri.expect("uri").expose().to_string();
    let app = connect(&uri).await;
    // About 1 KB per row with its index entries.
    let rows = args.megabytes * 1024 * 1024 / 1100;
    let filled = Instant::now();
    app.batch_execute(&format!(
        "CREATE TABLE accounts (id bigint PRIMARY KEY, name text NOT NULL);
         CREATE TABLE events (id bigserial PRIMARY KEY, account bigint NOT NULL REFERENCES accounts(id),
                              at timestamptz NOT NULL DEFAULT now(), body text NOT NULL);
         INSERT INTO accounts SELECT g, 'account ' || g FROM generate_series(1, 1000) g;
         INSERT INTO events (account, body) SELECT 1 + g % 1000, repeat(md5(g::text), 28)
           FROM generate_series(1, {rows}) g;
         CREATE INDEX events_by_account ON events (account, at);"
    ))
    .await
    .expect("fill");
    app.batch_execute("VACUUM ANALYZE").await.expect("vacuum");
    let size: i64 = app
        .query_one("SELECT pg_database_size(current_database())", &[])
        .await
        .unwrap()
        .get(0);
    println!(
        "branch_copy: source database {} MB ({rows} rows), filled in {:.1} s",
        size / 1024 / 1024,
        filled.elapsed().as_secs_f64()
    );
    drop(app);

    let mut n = 0;
    let mut branch = |provider: std::sync::Arc<dyn Provider>| {
        n += 1;
        let name = format!("bench-{run}-b{n}");
        let project = project.clone();
        async move {
            let started = Instant::now();
            provider
                .create_branch(
                    &BranchRequest {
                        project_id: project.clone(),
                        branch_name: name.clone(),
                        db_password: Some(Password::generate()),
                        ..BranchRequest::default()
                    },
                    &format!("dbops-{name}-branch-create"),
                )
                .await
                .expect("branch");
            let took = started.elapsed();
            provider.delete_branch(&project, &name).await.expect("drop");
            took
        }
    };

    for (label, strategy, sessions) in [
        ("Template, parent idle", CopyStrategy::Template, 0),
        (
            "Template, parent in use",
            CopyStrategy::Template,
            args.sessions,
        ),
        (
            "Logical, parent in use",
            CopyStrategy::Logical,
            args.sessions,
        ),
    ] {
        let mut times = Vec::new();
        let mut disconnected = 0;
        for _ in 0..args.rounds {
            let mut clients = Vec::new();
            for _ in 0..sessions {
                clients.push(connect(&uri).await);
            }
            let provider = match strategy {
                CopyStrategy::Template => template.clone(),
                CopyStrategy::Logical => logical.clone(),
            };
            times.push(branch(provider).await);
            for client in &clients {
                if client.simple_query("SELECT 1").await.is_err() {
                    disconnected += 1;
                }
            }
        }
        println!(
            "branch_copy: {label}: median {:.2} s, min {:.2} s, max {:.2} s over {} copies; \
             parent sessions disconnected: {disconnected} of {}",
            median(times.clone()).as_secs_f64(),
            times.iter().min().unwrap().as_secs_f64(),
            times.iter().max().unwrap().as_secs_f64(),
            times.len(),
            sessions * args.rounds,
        );
    }

    for (label, provider) in [("Template", &template), ("Logical", &logical)] {
        let started = Instant::now();
        let key = format!("dbops-{project}-{label}-snapshot-create");
        let snapshot = provider
            .create_snapshot(
                &SnapshotRequest {
                    project_id: project.clone(),
                    label: None,
                },
                &key,
            )
            .await
            .expect("snapshot");
        let took = started.elapsed();
        let restored = format!("bench-{run}-r-{}", label.to_lowercase());
        let started = Instant::now();
        provider
            .restore_snapshot(
                &RestoreRequest {
                    snapshot_id: snapshot.id.clone(),
                    new_name: Some(restored.clone()),
                    db_password: Some(Password::generate()),
                    resumed: dbops::providers::Resume::First,
                },
                &format!("dbops-{restored}-project-restore"),
            )
            .await
            .expect("restore");
        println!(
            "branch_copy: snapshot ({label}) {:.2} s; restore from it (always a template copy) {:.2} s",
            took.as_secs_f64(),
            started.elapsed().as_secs_f64()
        );
        provider.delete_project(&restored).await.expect("drop");
        provider
            .delete_snapshot(&project, &snapshot.id)
            .await
            .expect("drop");
    }
    template.delete_project(&project).await.expect("drop");
}
