//! `DatabaseBranch.spec.data` through the branch controller, against the
//! in-memory Kubernetes API and a real PostgreSQL: behind the `postgres`
//! provider and behind DB9's emulator with `--emulator-postgres`, a masked
//! branch hands out only masked rows (joins on masked keys still match, the
//! parent is unchanged), a branch with an unmasked personal-looking column
//! stalls with no Secret, a schema-only branch has no rows; a provider that
//! cannot read the branch's tables refuses to make one.

mod support;

use std::collections::BTreeMap;

use dbops::api::v1alpha1::{CopyStrategy, DatabaseBranch, DatabaseProject, ProviderApi};
use dbops::controllers::Managed;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, PostParams};
use serde_json::json;
use support::{Harness, NS, reconcile, reconcile_until_ready};
use tokio_postgres::{Client, NoTls};

async fn create<K>(h: &Harness, value: serde_json::Value)
where
    K: kube::Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + serde::Serialize
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    Api::<K>::namespaced(h.client.clone(), NS)
        .create(
            &PostParams::default(),
            &serde_json::from_value(value).unwrap(),
        )
        .await
        .unwrap();
}

async fn secret(h: &Harness, name: &str) -> Option<BTreeMap<String, String>> {
    let found = Api::<Secret>::namespaced(h.client.clone(), NS)
        .get_opt(name)
        .await
        .unwrap()?;
    Some(
        found
            .data
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| (k, String::from_utf8(v.0).unwrap()))
            .collect(),
    )
}

async fn connect(uri: &str) -> Client {
    let (client, connection) = tokio_postgres::connect(uri, NoTls).await.expect("connects");
    tokio::spawn(connection);
    client
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

/// Project `shop` through `provider`, Ready, with users and orders (a
/// foreign key on the email); its owner's connection. Its database is named
/// apart from other tests' on the same server (branches are named from the
/// namespace, name and UID, which the in-memory API numbers alike in every
/// test: each test's branches have names of their own).
async fn shop(h: &Harness, provider: &str) -> Client {
    create::<DatabaseProject>(
        h,
        json!({ "apiVersion": "dbops.dev/v1alpha1", "kind": "DatabaseProject",
            "metadata": { "name": "shop" },
            "spec": { "providerRef": { "name": provider }, "writeConnectionSecretTo": { "name": "shop-db" },
                "projectName": format!("shop-{:08x}", rand::random::<u32>()) } }),
    )
    .await;
    reconcile_until_ready::<DatabaseProject>(h, "shop", 8).await;
    let owner = owner(h).await;
    owner
        .batch_execute(
            "CREATE TABLE users (id serial PRIMARY KEY, email text UNIQUE NOT NULL, full_name text, plan text);
             CREATE TABLE orders (id serial PRIMARY KEY, customer_email text REFERENCES users (email), cents int);
             INSERT INTO users (email, full_name, plan) SELECT 'person' || n || '@shop.example', 'Person ' || n, 'pro' FROM generate_series(1, 20) n;
             INSERT INTO orders (customer_email, cents) SELECT 'person' || (n % 20 + 1) || '@shop.example', n FROM generate_series(1, 60) n;",
        )
        .await
        .unwrap();
    owner
}

/// The owner's connection to `shop` (a `Template` copy ends the sessions
/// on its source: connect again after a branch).
async fn owner(h: &Harness) -> Client {
    connect(&secret(h, "shop-db").await.unwrap()["uri"]).await
}

fn branch(name: &str, data: serde_json::Value) -> serde_json::Value {
    json!({ "apiVersion": "dbops.dev/v1alpha1", "kind": "DatabaseBranch",
        "metadata": { "name": name },
        "spec": { "projectRef": { "name": "shop" }, "writeConnectionSecretTo": { "name": format!("{name}-db") },
            "data": data } })
}

fn masked() -> serde_json::Value {
    json!({ "mode": "Masked", "masking": [
        { "table": "public.users", "columns": { "email": { "with": "Email" }, "full_name": { "with": "Redact" } } },
        { "table": "orders", "columns": { "customer_email": { "with": "Email" } } } ] })
}

/// The masked case: only masked rows reach the Secret's holder.
async fn masked_branch_through(h: &Harness, provider: &str) {
    let owner = shop(h, provider).await;
    let originals = strings(
        &owner,
        "SELECT email FROM users UNION ALL SELECT full_name FROM users",
    )
    .await;
    create::<DatabaseBranch>(h, branch("preview", masked())).await;
    let ready = reconcile_until_ready::<DatabaseBranch>(h, "preview", 8).await;
    let owner = self::owner(h).await;
    let applied = ready
        .status
        .unwrap()
        .data_applied
        .expect("spec.data applied");
    assert_eq!(format!("{:?}", applied.mode), "Masked");
    let preview = connect(&secret(h, "preview-db").await.unwrap()["uri"]).await;
    let now = strings(
        &preview,
        "SELECT email FROM users UNION ALL SELECT full_name FROM users UNION ALL SELECT customer_email FROM orders",
    )
    .await;
    assert_eq!(now.len(), 100);
    for value in &originals {
        assert!(!now.contains(value), "{value} reached the branch");
    }
    assert_eq!(
        count(
            &preview,
            "SELECT count(*) FROM orders JOIN users ON users.email = orders.customer_email"
        )
        .await,
        60,
        "joins on the masked key still match"
    );
    assert_eq!(
        count(&preview, "SELECT count(*) FROM users WHERE plan = 'pro'").await,
        20,
        "unmasked columns are copied"
    );
    assert_eq!(
        strings(
            &owner,
            "SELECT email FROM users UNION ALL SELECT full_name FROM users"
        )
        .await,
        originals,
        "the parent is unchanged"
    );
    assert!(
        h.event_reasons("preview")
            .contains(&"DataApplied".to_string())
    );
}

#[tokio::test]
async fn a_masked_postgres_branch_hands_out_only_masked_rows() {
    let h = Harness::bare().await;
    h.create_postgres_provider("pg", support::postgres::server(), CopyStrategy::Template)
        .await;
    masked_branch_through(&h, "pg").await;
}

#[tokio::test]
async fn a_masked_db9_branch_with_a_real_database_hands_out_only_masked_rows() {
    let h = Harness::with_emulator_postgres().await;
    h.create_provider_for("db9", ProviderApi::Db9, support::DB9_KEY, None)
        .await;
    masked_branch_through(&h, "db9").await;
}

#[tokio::test]
async fn an_unmasked_personal_column_stalls_the_branch_with_no_secret() {
    let h = Harness::bare().await;
    h.create_postgres_provider("pg", support::postgres::server(), CopyStrategy::Template)
        .await;
    let _owner = shop(&h, "pg").await;
    let data = json!({ "mode": "Masked", "masking": [
        { "table": "users", "columns": { "full_name": { "with": "Redact" } } } ] });
    create::<DatabaseBranch>(&h, branch("leaky", data)).await;
    let (leaky, (state, reason, message)) = stalled(&h, "leaky", 4).await;
    assert_eq!(
        (state.as_str(), reason.as_str()),
        ("True", "UnmaskedColumns")
    );
    assert!(
        message.contains("public.orders.customer_email, public.users.email"),
        "{message}"
    );
    assert!(!leaky.is_ready());
    assert!(
        secret(&h, "leaky-db").await.is_none(),
        "no Secret is handed out"
    );
    assert!(leaky.status.unwrap().data_applied.is_none());
}

#[tokio::test]
async fn a_schema_only_branch_has_the_schema_and_no_rows() {
    let h = Harness::bare().await;
    h.create_postgres_provider("pg", support::postgres::server(), CopyStrategy::Template)
        .await;
    let owner = shop(&h, "pg").await;
    create::<DatabaseBranch>(&h, branch("empty", json!({ "mode": "SchemaOnly" }))).await;
    reconcile_until_ready::<DatabaseBranch>(&h, "empty", 8).await;
    drop(owner);
    let owner = self::owner(&h).await;
    let empty = connect(&secret(&h, "empty-db").await.unwrap()["uri"]).await;
    assert_eq!(count(&empty, "SELECT count(*) FROM users").await, 0);
    assert_eq!(count(&empty, "SELECT count(*) FROM orders").await, 0);
    assert_eq!(
        count(&empty, "SELECT count(*) FROM pg_constraint WHERE conrelid = 'orders'::regclass AND contype = 'f'").await,
        1,
        "the schema is whole"
    );
    assert_eq!(count(&owner, "SELECT count(*) FROM orders").await, 60);
}

/// Reconciles branch `name` `rounds` times: the branch, and its Stalled
/// condition (status, reason, message).
async fn stalled(
    h: &Harness,
    name: &str,
    rounds: usize,
) -> (DatabaseBranch, (String, String, String)) {
    for _ in 0..rounds {
        let _ = reconcile::<DatabaseBranch>(h, name).await;
    }
    let branch: DatabaseBranch = Api::namespaced(h.client.clone(), NS)
        .get(name)
        .await
        .unwrap();
    let c = branch
        .status
        .as_ref()
        .and_then(|s| s.conditions.get("Stalled"))
        .cloned()
        .expect("a Stalled condition");
    (branch, (c.status, c.reason, c.message))
}

/// A branch asking for `data` at Supabase: refused before anything is copied.
async fn supabase_refuses(data: serde_json::Value) {
    let h = Harness::with_emulator_postgres().await;
    h.create_provider_for(
        "supa",
        ProviderApi::Supabase,
        support::SUPABASE_KEY,
        Some("acme"),
    )
    .await;
    create::<DatabaseProject>(
        &h,
        json!({ "apiVersion": "dbops.dev/v1alpha1", "kind": "DatabaseProject",
            "metadata": { "name": "shop" }, "spec": { "providerRef": { "name": "supa" } } }),
    )
    .await;
    reconcile_until_ready::<DatabaseProject>(&h, "shop", 8).await;
    create::<DatabaseBranch>(&h, branch("preview", data)).await;
    let (preview, (state, reason, message)) = stalled(&h, "preview", 4).await;
    assert_eq!(
        (state.as_str(), reason.as_str()),
        ("True", "UnsupportedByProvider"),
        "{message}"
    );
    assert!(message.contains("reaches projects only"), "{message}");
    let status = preview.status.unwrap();
    assert!(
        status.branch_id.is_none() && !status.create_requested,
        "nothing was copied"
    );
    assert!(secret(&h, "preview-db").await.is_none());
}

#[tokio::test]
async fn a_provider_that_cannot_read_the_branch_refuses_to_make_a_masked_one() {
    supabase_refuses(masked()).await;
}

#[tokio::test]
async fn a_supabase_branch_is_never_made_schema_only_through_a_channel_that_cannot_reach_it() {
    supabase_refuses(json!({ "mode": "SchemaOnly" })).await;
}

#[tokio::test]
async fn a_schema_only_branch_with_the_logical_strategy_copies_no_row_at_all() {
    let h = Harness::bare().await;
    h.create_postgres_provider("pg", support::postgres::server(), CopyStrategy::Logical)
        .await;
    let owner = shop(&h, "pg").await;
    create::<DatabaseBranch>(&h, branch("empty-logical", json!({ "mode": "SchemaOnly" }))).await;
    let ready = reconcile_until_ready::<DatabaseBranch>(&h, "empty-logical", 8).await;
    let branch_db = ready.status.unwrap().branch_id.unwrap();
    let mut admin_url = url::Url::parse(&support::postgres::server().admin_url()).unwrap();
    admin_url.set_path(&branch_db);
    let admin = connect(admin_url.as_str()).await;
    assert_eq!(count(&admin, "SELECT count(*) FROM users").await, 0);
    assert_eq!(
        count(&admin, "SELECT count(*) FROM pg_constraint WHERE conrelid = 'orders'::regclass AND contype = 'f'").await,
        1
    );
    // No row was ever written into the branch (a copy then a TRUNCATE
    // would have counted its inserts).
    let inserted = count(
        &admin,
        "SELECT coalesce(sum(n_tup_ins), 0)::bigint FROM pg_stat_user_tables",
    )
    .await;
    assert_eq!(inserted, 0);
    assert_eq!(count(&owner, "SELECT count(*) FROM orders").await, 60);
}
