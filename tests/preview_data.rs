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
use std::sync::Arc;

use dbops::controllers::{Context, Managed};
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, PostParams};
use kube::core::DeserializeGuard;
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

// Reset from parent.

/// Asks branch `name` for a reset, with annotation value `value`.
async fn ask_reset(h: &Harness, name: &str, value: &str) {
    let patch =
        json!({ "metadata": { "annotations": { dbops::api::v1alpha1::RESET_ANNOTATION: value } } });
    Api::<DatabaseBranch>::namespaced(h.client.clone(), NS)
        .patch(
            name,
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(&patch),
        )
        .await
        .unwrap();
}

/// Whether branch `b` has handled the reset asked for with `value` and is Ready.
fn reset_done(b: &DatabaseBranch, value: &str) -> bool {
    let reset = b.status.as_ref().and_then(|s| s.reset.as_ref());
    b.is_ready()
        && reset.is_some_and(|r| r.pending.is_none() && r.annotation.as_deref() == Some(value))
        && b.status
            .as_ref()
            .is_some_and(|s| s.reset.as_ref().is_some_and(|r| r.retiring.is_none()))
}

/// Reconciles branch `name` with `ctx` until the reset asked with `value` is done.
async fn until_reset(h: &Harness, ctx: Arc<Context>, name: &str, value: &str) -> DatabaseBranch {
    let api = Api::<DatabaseBranch>::namespaced(h.client.clone(), NS);
    let mut last = String::new();
    for _ in 0..12 {
        let b = api.get(name).await.unwrap();
        if reset_done(&b, value) {
            return b;
        }
        if let Err(e) =
            dbops::controllers::reconcile(Arc::new(DeserializeGuard(Ok(b))), ctx.clone()).await
        {
            last = e.to_string();
        }
    }
    panic!("the reset of {name} ({value}) did not finish (last error: {last})");
}

/// The databases and roles an in-place reset of branch database `id` works
/// under, left on the server (none once it is done).
async fn reset_leftovers(id: &str) -> i64 {
    use sha2::Digest;
    let hash: String = sha2::Sha256::digest(id.as_bytes())
        .iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect();
    let admin = connect(&support::postgres::server().admin_url()).await;
    let sql = format!(
        "SELECT (SELECT count(*) FROM pg_database WHERE datname IN ('dbops-reset-{hash}', 'dbops-old-{hash}'))
              + (SELECT count(*) FROM pg_roles WHERE rolname IN ('dbops-reset-{hash}', 'dbops-old-{hash}'))"
    );
    count(&admin, &sql).await
}

/// What is left at the vendor of the parent and its branches, beyond the
/// project and the one branch (0: no orphan).
async fn orphans(h: &Harness, provider: &str, branch: &DatabaseBranch) -> i64 {
    let id = branch
        .status
        .as_ref()
        .and_then(|s| s.branch_id.clone())
        .unwrap();
    match provider {
        "db9" => h.emulator.db9.database_count() as i64 - 2,
        _ => reset_leftovers(&id).await,
    }
}

/// Masked branch `name` of a fresh `shop` through `provider`, Ready; the
/// parent gains a row after it was made.
async fn masked_branch_gone_stale(h: &Harness, provider: &str, name: &str) -> DatabaseBranch {
    shop(h, provider).await;
    create::<DatabaseBranch>(h, branch(name, masked())).await;
    let ready = reconcile_until_ready::<DatabaseBranch>(h, name, 8).await;
    owner(h)
        .await
        .batch_execute("INSERT INTO users (email, full_name, plan) VALUES ('newcomer@shop.example', 'New Comer', 'pro');
                        INSERT INTO orders (customer_email, cents) VALUES ('newcomer@shop.example', 99);")
        .await
        .unwrap();
    ready
}

/// The branch behind `uri` holds the parent's rows as they are now, masked.
async fn holds_the_parent_masked(h: &Harness, uri: &str) {
    let owner = owner(h).await;
    let originals = strings(
        &owner,
        "SELECT email FROM users UNION ALL SELECT full_name FROM users",
    )
    .await;
    assert_eq!(originals.len(), 42, "the parent has its new row");
    let preview = connect(uri).await;
    assert_eq!(
        count(&preview, "SELECT count(*) FROM users").await,
        21,
        "the parent's new row arrived"
    );
    let now = strings(&preview, "SELECT email FROM users UNION ALL SELECT full_name FROM users UNION ALL SELECT customer_email FROM orders").await;
    for value in &originals {
        assert!(!now.contains(value), "{value} reached the branch");
    }
    assert_eq!(
        count(
            &preview,
            "SELECT count(*) FROM orders JOIN users ON users.email = orders.customer_email"
        )
        .await,
        61,
        "joins on the masked key still match"
    );
}

/// The reset case: the parent's new rows arrive, masked, under the same
/// Secret; the branch's own changes are gone; nothing is left behind.
async fn reset_through(h: &Harness, provider: &str, name: &str, keeps_uri: bool) {
    let made = masked_branch_gone_stale(h, provider, name).await;
    let secret_name = format!("{name}-db");
    let before = secret(h, &secret_name).await.unwrap()["uri"].clone();
    connect(&before)
        .await
        .batch_execute("CREATE TABLE scratch (x int)")
        .await
        .unwrap();
    ask_reset(h, name, "first").await;
    let reset = until_reset(h, h.ctx.clone(), name, "first").await;
    let status = reset.status.clone().unwrap();
    assert!(status.last_reset_at.is_some());
    assert!(status.reset.as_ref().unwrap().last_failure.is_none());
    let after = secret(h, &secret_name).await.expect("the same Secret")["uri"].clone();
    assert_eq!(after == before, keeps_uri, "the URI is kept only in place");
    let same_branch = status.branch_id == made.status.as_ref().unwrap().branch_id;
    assert_eq!(
        same_branch, keeps_uri,
        "in place keeps the vendor branch; else a new one"
    );
    holds_the_parent_masked(h, &after).await;
    let preview = connect(&after).await;
    assert_eq!(
        count(
            &preview,
            "SELECT count(*) FROM pg_tables WHERE tablename = 'scratch'"
        )
        .await,
        0,
        "the branch's own changes went with the reset"
    );
    assert_eq!(orphans(h, provider, &reset).await, 0, "nothing left behind");
    assert!(h.event_reasons(name).contains(&"Reset".to_string()));
    // Handled once: another pass resets nothing.
    reconcile::<DatabaseBranch>(h, name).await.unwrap();
    let again: DatabaseBranch = Api::namespaced(h.client.clone(), NS)
        .get(name)
        .await
        .unwrap();
    assert_eq!(again.status.unwrap().last_reset_at, status.last_reset_at);
}

#[tokio::test]
async fn a_postgres_reset_brings_the_parents_new_rows_masked_under_the_same_uri() {
    let h = Harness::bare().await;
    h.create_postgres_provider("pg", support::postgres::server(), CopyStrategy::Template)
        .await;
    reset_through(&h, "pg", "reset-pg", true).await;
}

#[tokio::test]
async fn a_db9_reset_switches_the_same_secret_to_a_new_masked_branch_and_deletes_the_old() {
    let h = Harness::with_emulator_postgres().await;
    h.create_provider_for("db9", ProviderApi::Db9, support::DB9_KEY, None)
        .await;
    reset_through(&h, "db9", "reset-db9", false).await;
}

#[tokio::test]
async fn a_reset_that_fails_is_undone_and_the_old_branch_keeps_serving() {
    let h = Harness::bare().await;
    h.create_postgres_provider("pg", support::postgres::server(), CopyStrategy::Template)
        .await;
    let made = masked_branch_gone_stale(&h, "pg", "reset-fails").await;
    // A personal column no rule covers: the fresh copy cannot be handed out.
    owner(&h)
        .await
        .batch_execute("ALTER TABLE users ADD COLUMN phone text")
        .await
        .unwrap();
    let before = secret(&h, "reset-fails-db").await.unwrap();
    ask_reset(&h, "reset-fails", "try").await;
    let done = until_reset(&h, h.ctx.clone(), "reset-fails", "try").await;
    let status = done.status.clone().unwrap();
    let failure = status
        .reset
        .as_ref()
        .unwrap()
        .last_failure
        .clone()
        .expect("the failure is kept");
    assert!(failure.contains("users.phone"), "{failure}");
    assert_eq!(status.last_reset_at, None);
    assert_eq!(status.branch_id, made.status.unwrap().branch_id);
    assert_eq!(
        secret(&h, "reset-fails-db").await.unwrap(),
        before,
        "the Secret is untouched"
    );
    let preview = connect(&before["uri"]).await;
    assert_eq!(
        count(&preview, "SELECT count(*) FROM users").await,
        20,
        "the old copy serves"
    );
    assert_eq!(orphans(&h, "pg", &done).await, 0);
    assert!(
        h.event_reasons("reset-fails")
            .contains(&"ResetFailed".to_string())
    );
}

/// `fut`, dropped (as if the process died) when it waits with no `budget`
/// left (`None` then); each wait spends one.
async fn crash_after<F: std::future::Future>(fut: F, budget: &mut usize) -> Option<F::Output> {
    let mut fut = std::pin::pin!(fut);
    std::future::poll_fn(|cx| match fut.as_mut().poll(cx) {
        std::task::Poll::Ready(out) => std::task::Poll::Ready(Some(out)),
        std::task::Poll::Pending if *budget == 0 => std::task::Poll::Ready(None),
        std::task::Poll::Pending => {
            *budget -= 1;
            std::task::Poll::Pending
        }
    })
    .await
}

/// A context with nothing in memory, as after a restart.
fn restarted(h: &Harness) -> Arc<Context> {
    Arc::new(Context::new(
        h.client.clone(),
        Arc::new(dbops::metrics::Metrics::default()),
        h.ctx.settings.clone(),
        None,
    ))
}

/// Wait points between two crashes: a `postgres` reset waits about 120
/// times, DB9's about 55 (its vendor calls are fewer and farther apart).
fn stride(provider: &str) -> usize {
    if provider == "db9" { 3 } else { 6 }
}

/// Deletes branch `name` and reconciles it (with restarted operators)
/// until its deletion finished.
async fn delete_branch(h: &Harness, name: &str) {
    let api = Api::<DatabaseBranch>::namespaced(h.client.clone(), NS);
    api.delete(name, &kube::api::DeleteParams::default())
        .await
        .unwrap();
    for _ in 0..8 {
        let Some(b) = api.get_opt(name).await.unwrap() else {
            return;
        };
        let _ =
            dbops::controllers::reconcile(Arc::new(DeserializeGuard(Ok(b))), restarted(h)).await;
    }
    assert!(
        api.get_opt(name).await.unwrap().is_none(),
        "the deletion of {name} finished"
    );
}

/// A reset cut short after each wait point of its passes in turn, then
/// carried on by a restarted operator (or, with `delete`, the branch deleted):
/// one branch, the parent's rows masked under the same Secret, no orphan.
async fn crash_each_step(h: &Harness, provider: &str, name: &str, delete: bool) {
    masked_branch_gone_stale(h, provider, name).await;
    let api = Api::<DatabaseBranch>::namespaced(h.client.clone(), NS);
    let mut crashes = 0;
    for k in 0.. {
        let value = format!("crash-{k}");
        ask_reset(h, name, &value).await;
        // Cut short at wait point k of the passes, counting across them.
        let mut budget = k * stride(provider);
        let mut crashed = false;
        for _ in 0..8 {
            let b = api.get(name).await.unwrap();
            if reset_done(&b, &value) {
                break;
            }
            let pass =
                dbops::controllers::reconcile(Arc::new(DeserializeGuard(Ok(b))), restarted(h));
            if crash_after(pass, &mut budget).await.is_none() {
                crashed = true;
                break;
            }
        }
        if !crashed {
            break;
        }
        crashes += 1;
        if delete {
            let id = api
                .get(name)
                .await
                .unwrap()
                .status
                .unwrap()
                .branch_id
                .unwrap();
            delete_branch(h, name).await;
            match provider {
                "db9" => assert_eq!(
                    h.emulator.db9.database_count(),
                    1,
                    "k={k}: only the project is left"
                ),
                _ => assert_eq!(reset_leftovers(&id).await, 0, "k={k}: no orphan"),
            }
            create::<DatabaseBranch>(h, branch(name, masked())).await;
            reconcile_until_ready::<DatabaseBranch>(h, name, 8).await;
            continue;
        }
        let done = until_reset(h, restarted(h), name, &value).await;
        let uri = secret(h, &format!("{name}-db")).await.unwrap()["uri"].clone();
        holds_the_parent_masked(h, &uri).await;
        assert_eq!(orphans(h, provider, &done).await, 0, "k={k}: no orphan");
    }
    eprintln!("{name}: cut short at {crashes} points");
    assert!(
        crashes >= 5,
        "the reset was cut short at {crashes} points only"
    );
}

#[tokio::test]
async fn a_postgres_reset_cut_short_at_each_step_leaves_one_branch_and_no_orphan() {
    let h = Harness::bare().await;
    h.create_postgres_provider("pg", support::postgres::server(), CopyStrategy::Template)
        .await;
    crash_each_step(&h, "pg", "crash-pg", false).await;
}

#[tokio::test]
async fn a_db9_reset_cut_short_at_each_step_leaves_one_branch_and_no_orphan() {
    let h = Harness::with_emulator_postgres().await;
    h.create_provider_for("db9", ProviderApi::Db9, support::DB9_KEY, None)
        .await;
    crash_each_step(&h, "db9", "crash-db9", false).await;
}

#[tokio::test]
async fn a_branch_deleted_mid_reset_leaves_no_orphan() {
    let h = Harness::with_emulator_postgres().await;
    h.create_provider_for("db9", ProviderApi::Db9, support::DB9_KEY, None)
        .await;
    crash_each_step(&h, "db9", "crash-del-db9", true).await;
    let pg = Harness::bare().await;
    pg.create_postgres_provider("pg", support::postgres::server(), CopyStrategy::Template)
        .await;
    crash_each_step(&pg, "pg", "crash-del-pg", true).await;
}

#[tokio::test]
async fn a_reset_schedule_resets_once_when_due_and_not_before() {
    let h = Harness::bare().await;
    h.create_postgres_provider("pg", support::postgres::server(), CopyStrategy::Template)
        .await;
    shop(&h, "pg").await;
    let mut scheduled = branch("nightly", json!({ "mode": "SchemaOnly" }));
    scheduled["spec"]["resetSchedule"] = json!("1m");
    create::<DatabaseBranch>(&h, scheduled).await;
    reconcile_until_ready::<DatabaseBranch>(&h, "nightly", 8).await;
    let api = Api::<DatabaseBranch>::namespaced(h.client.clone(), NS);
    reconcile::<DatabaseBranch>(&h, "nightly").await.unwrap();
    let fresh = api.get("nightly").await.unwrap().status.unwrap();
    assert_eq!(fresh.last_reset_at, None, "not due a minute after creation");

    // As if it was made three minutes ago, with the operator down since:
    // the pass reads the creation time from the object it is given.
    let created =
        k8s_openapi::jiff::Timestamp::now() - k8s_openapi::jiff::SignedDuration::from_secs(180);
    let aged = || async {
        let mut b = api.get("nightly").await.unwrap();
        b.metadata.creation_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            created,
        ));
        dbops::controllers::reconcile(Arc::new(DeserializeGuard(Ok(b))), h.ctx.clone())
            .await
            .unwrap();
    };
    owner(&h)
        .await
        .batch_execute("CREATE TABLE added_later (id int)")
        .await
        .unwrap();
    let before = k8s_openapi::jiff::Timestamp::now();
    aged().await;
    let reset = api.get("nightly").await.unwrap().status.unwrap();
    let at = reset.last_reset_at.expect("reset when due").0;
    assert!(at >= before);
    let slot = reset
        .reset
        .as_ref()
        .unwrap()
        .slot
        .expect("the slot handled")
        .0;
    assert_eq!(
        slot,
        created + k8s_openapi::jiff::SignedDuration::from_secs(60),
        "one catch-up run, for the first slot missed"
    );
    let uri = secret(&h, "nightly-db").await.unwrap()["uri"].clone();
    let branch_db = connect(&uri).await;
    assert_eq!(
        count(
            &branch_db,
            "SELECT count(*) FROM pg_tables WHERE tablename = 'added_later'"
        )
        .await,
        1,
        "the parent's new schema arrived"
    );
    assert_eq!(
        count(&branch_db, "SELECT count(*) FROM users").await,
        0,
        "schema only, again"
    );
    // No burst for the two other slots missed: the next is a minute after this one.
    aged().await;
    let again = api.get("nightly").await.unwrap().status.unwrap();
    assert_eq!(again.last_reset_at, reset.last_reset_at);
    assert_eq!(
        h.event_reasons("nightly")
            .iter()
            .filter(|r| *r == "Reset")
            .count(),
        1
    );
}

#[tokio::test]
async fn a_retained_branch_deleted_mid_reset_keeps_itself_and_no_staged_copy() {
    let h = Harness::bare().await;
    h.create_postgres_provider("pg", support::postgres::server(), CopyStrategy::Template)
        .await;
    shop(&h, "pg").await;
    let mut kept = branch("retain-reset", masked());
    kept["spec"]["deletionPolicy"] = json!("Retain");
    create::<DatabaseBranch>(&h, kept).await;
    let ready = reconcile_until_ready::<DatabaseBranch>(&h, "retain-reset", 8).await;
    let id = ready.status.unwrap().branch_id.unwrap();
    ask_reset(&h, "retain-reset", "1").await;
    let api = Api::<DatabaseBranch>::namespaced(h.client.clone(), NS);
    // Cut the reset short once its copy is staged (and so on the server).
    let mut staged = false;
    for budget in (0..400).step_by(4) {
        let b = api.get("retain-reset").await.unwrap();
        let pass = dbops::controllers::reconcile(Arc::new(DeserializeGuard(Ok(b))), restarted(&h));
        let mut budget = budget;
        let finished = crash_after(pass, &mut budget).await.is_some();
        let status = api.get("retain-reset").await.unwrap().status.unwrap();
        let pending = status.reset.and_then(|r| r.pending);
        if pending.is_some_and(|p| p.staged_id.is_some()) && reset_leftovers(&id).await > 0 {
            staged = true;
            break;
        }
        assert!(
            !finished,
            "the reset finished before its copy was seen staged"
        );
    }
    assert!(staged, "a staged copy was seen");
    delete_branch(&h, "retain-reset").await;
    assert_eq!(reset_leftovers(&id).await, 0, "no staged copy is left");
    let admin = connect(&support::postgres::server().admin_url()).await;
    let kept: i64 = admin
        .query_one(
            "SELECT count(*) FROM pg_database WHERE datname = $1",
            &[&id],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(kept, 1, "deletionPolicy Retain keeps the branch itself");
    admin
        .batch_execute(&format!("DROP DATABASE \"{id}\" WITH (FORCE)"))
        .await
        .unwrap();
}

#[tokio::test]
async fn a_reset_whose_source_branch_is_gone_fails_and_the_branch_keeps_serving() {
    let h = Harness::bare().await;
    h.create_postgres_provider("pg", support::postgres::server(), CopyStrategy::Template)
        .await;
    shop(&h, "pg").await;
    create::<DatabaseBranch>(&h, branch("src-gone", json!({ "mode": "Full" }))).await;
    reconcile_until_ready::<DatabaseBranch>(&h, "src-gone", 8).await;
    let mut dependent = branch("from-gone", json!({ "mode": "SchemaOnly" }));
    dependent["spec"]["fromBranchRef"] = json!({ "name": "src-gone" });
    create::<DatabaseBranch>(&h, dependent).await;
    reconcile_until_ready::<DatabaseBranch>(&h, "from-gone", 8).await;
    let before = secret(&h, "from-gone-db").await.unwrap();
    delete_branch(&h, "src-gone").await;
    ask_reset(&h, "from-gone", "1").await;
    let done = until_reset(&h, h.ctx.clone(), "from-gone", "1").await;
    let status = done.status.unwrap();
    let failure = status
        .reset
        .unwrap()
        .last_failure
        .expect("the reset failed");
    assert!(
        failure.contains("src-gone") && failure.contains("not Ready"),
        "{failure}"
    );
    assert_eq!(status.last_reset_at, None);
    assert_eq!(secret(&h, "from-gone-db").await.unwrap(), before);
    connect(&before["uri"]).await;
    assert!(
        h.event_reasons("from-gone")
            .contains(&"ResetFailed".to_string())
    );
}
