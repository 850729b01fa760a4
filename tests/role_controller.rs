//! The `DatabaseRole` controller against the in-memory Kubernetes API and
//! the vendor emulators: with `--emulator-postgres` (a real PostgreSQL
//! behind DB9's SQL endpoint and Supabase's query endpoint) the role's
//! Secret connects and holds exactly its grants, and deleting the role drops
//! it; without a database the role stalls and says how to get one; a vendor
//! with no SQL channel stalls with `UnsupportedByProvider`.

mod support;

use std::collections::BTreeMap;

use dbops::api::v1alpha1::{DatabaseProject, DatabaseRole, ProviderApi};
use dbops::controllers::Managed;
use dbops::controllers::conditions::{READY, STALLED};
use dbops::emulator::supabase::SupabaseEmulator;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, DeleteParams, PostParams};
use serde_json::json;
use support::{Harness, NS, reconcile, reconcile_until_ready};
use tokio_postgres::NoTls;

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

async fn secret_data(h: &Harness, name: &str) -> BTreeMap<String, String> {
    Api::<Secret>::namespaced(h.client.clone(), NS)
        .get(name)
        .await
        .unwrap()
        .data
        .unwrap()
        .into_iter()
        .map(|(k, v)| (k, String::from_utf8(v.0).unwrap()))
        .collect()
}

/// Status, reason and message of condition `type_` of `role`.
fn condition(role: &DatabaseRole, type_: &str) -> (String, String, String) {
    let c = role
        .status
        .as_ref()
        .and_then(|s| s.conditions.get(type_))
        .unwrap_or_else(|| panic!("no {type_} condition"));
    (c.status.clone(), c.reason.clone(), c.message.clone())
}

async fn connect(uri: &str) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    let (client, connection) = tokio_postgres::connect(uri, NoTls).await?;
    tokio::spawn(connection);
    Ok(client)
}

/// A role name no other test uses (roles are server-wide).
fn unique(prefix: &str) -> String {
    format!("{prefix}_{:08x}", rand::random::<u32>())
}

/// A provider `name` for `api` on the emulator.
async fn provider(h: &Harness, name: &str, api: ProviderApi) {
    let (key, org) = match api {
        ProviderApi::Supabase => (support::SUPABASE_KEY, Some("acme")),
        ProviderApi::Db9 => (support::DB9_KEY, None),
        _ => (support::API_KEY, None),
    };
    h.create_provider_for(name, api, key, org).await;
}

/// Project `name` through provider `provider`, Ready; its owner's URI.
async fn ready_project(h: &Harness, name: &str, provider: &str) -> String {
    create::<DatabaseProject>(
        h,
        json!({ "apiVersion": "dbops.dev/v1alpha1", "kind": "DatabaseProject",
            "metadata": { "name": name }, "spec": { "providerRef": { "name": provider },
                "projectName": format!("{name}-{:08x}", rand::random::<u32>()) } }),
    )
    .await;
    reconcile_until_ready::<DatabaseProject>(h, name, 8).await;
    let secret = secret_data(h, &format!("{name}-connection")).await;
    secret["uri"].clone()
}

/// A SELECT-only role on `public.orders`.
fn reader(name: &str, project: &str, role_name: &str) -> serde_json::Value {
    json!({ "apiVersion": "dbops.dev/v1alpha1", "kind": "DatabaseRole",
        "metadata": { "name": name },
        "spec": { "projectRef": { "name": project }, "roleName": role_name,
            "grants": [
                { "schema": "public", "privileges": ["USAGE"] },
                { "schema": "public", "privileges": ["SELECT"], "tables": ["orders"] } ],
            "writeConnectionSecretTo": { "name": format!("{name}-db") } } })
}

async fn role_exists(role: &str) -> bool {
    let admin = connect(&support::postgres::server().admin_url())
        .await
        .unwrap();
    admin
        .query_one("SELECT count(*) FROM pg_roles WHERE rolname = $1", &[&role])
        .await
        .unwrap()
        .get::<_, i64>(0)
        == 1
}

/// Project `shop` through `provider` with a table `orders`, and a Ready
/// SELECT-only `DatabaseRole` `reader` on it: the role's name.
async fn ready_reader(h: &Harness, provider: &str) -> String {
    let owner = connect(&ready_project(h, "shop", provider).await)
        .await
        .unwrap();
    owner
        .batch_execute("CREATE TABLE orders (id int)")
        .await
        .unwrap();
    let role_name = unique("reader");
    create::<DatabaseRole>(h, reader("reader", "shop", &role_name)).await;
    reconcile_until_ready::<DatabaseRole>(h, "reader", 4).await;
    role_name
}

/// Reconciles role `reader` twice: it, and its Stalled condition.
async fn stalled_reader(h: &Harness) -> (DatabaseRole, (String, String, String)) {
    for _ in 0..2 {
        let _ = reconcile::<DatabaseRole>(h, "reader").await;
    }
    let role: DatabaseRole = Api::namespaced(h.client.clone(), NS)
        .get("reader")
        .await
        .unwrap();
    let stalled = condition(&role, STALLED);
    (role, stalled)
}

/// The SELECT-only case through `api`'s SQL channel, then the deletion.
async fn select_only_through(api: ProviderApi) {
    let h = Harness::with_emulator_postgres().await;
    let provider_name = api.as_str().to_string();
    provider(&h, &provider_name, api).await;
    let owner_uri = ready_project(&h, "shop", &provider_name).await;
    // The emulator makes each project a database of its own on the one
    // server; Supabase's URIs always name `postgres`, so its real name
    // comes from the emulator.
    let project: DatabaseProject = Api::namespaced(h.client.clone(), NS)
        .get("shop")
        .await
        .unwrap();
    let project_id = project.status.unwrap().project_id.unwrap();
    let database = match api {
        ProviderApi::Supabase => SupabaseEmulator::real_database(&project_id),
        _ => url::Url::parse(&owner_uri)
            .unwrap()
            .path()
            .trim_start_matches('/')
            .to_string(),
    };
    // The tables, made as the server's admin in the project's database.
    let mut admin_url = url::Url::parse(&support::postgres::server().admin_url()).unwrap();
    admin_url.set_path(&database);
    let owner = connect(admin_url.as_str())
        .await
        .expect("the admin connects");
    owner
        .batch_execute("CREATE TABLE orders (id int); INSERT INTO orders VALUES (1), (2)")
        .await
        .unwrap();
    let role_name = unique("reader");
    create::<DatabaseRole>(&h, reader("reader", "shop", &role_name)).await;
    let role = reconcile_until_ready::<DatabaseRole>(&h, "reader", 4).await;
    let status = role.status.clone().unwrap();
    assert_eq!(status.applied_grants.len(), 2);
    assert_eq!(status.active_login.as_deref(), Some(role_name.as_str()));
    let (_, _, message) = condition(&role, READY);
    if api == ProviderApi::Supabase {
        assert!(message.contains("returns no rows"), "{message}");
    }
    let secret = secret_data(&h, "reader-db").await;
    assert_eq!(secret["username"], role_name);
    // The emulator's pooler entry names the server's real port.
    let mut uri = url::Url::parse(secret.get("pooledUri").unwrap_or(&secret["uri"])).unwrap();
    assert_ne!(uri.as_str(), owner_uri);
    uri.set_path(&database);
    let reader = connect(uri.as_str())
        .await
        .expect("the role's Secret connects");
    let count: i64 = reader
        .query_one("SELECT count(*) FROM orders", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(count, 2);
    let denied = reader
        .batch_execute("INSERT INTO orders VALUES (3)")
        .await
        .expect_err("SELECT only");
    assert_eq!(denied.code().map(|c| c.code()), Some("42501"));
    drop(reader);

    // A privilege someone else grants is reported, and left alone.
    if api != ProviderApi::Supabase {
        owner
            .batch_execute(&format!("GRANT UPDATE ON orders TO {role_name}"))
            .await
            .unwrap();
        reconcile::<DatabaseRole>(&h, "reader").await.unwrap();
        let role: DatabaseRole = Api::namespaced(h.client.clone(), NS)
            .get("reader")
            .await
            .unwrap();
        let status = role.status.clone().unwrap();
        assert_eq!(
            status.unmanaged_privileges,
            ["UPDATE on table public.orders"]
        );
        assert!(
            role.is_ready(),
            "someone else's grant does not make it unready"
        );
        reconcile::<DatabaseRole>(&h, "reader").await.unwrap();
        let kept: bool = owner
            .query_one(
                "SELECT has_table_privilege($1, 'public.orders', 'UPDATE')",
                &[&role_name],
            )
            .await
            .unwrap()
            .get(0);
        assert!(kept, "and not revoked");
    }

    // Deleting the role drops it from the server.
    let roles: Api<DatabaseRole> = Api::namespaced(h.client.clone(), NS);
    roles
        .delete("reader", &DeleteParams::default())
        .await
        .unwrap();
    reconcile::<DatabaseRole>(&h, "reader").await.unwrap();
    assert!(roles.get_opt("reader").await.unwrap().is_none());
    assert!(!role_exists(&role_name).await, "{role_name} is dropped");
    assert!(h.event_reasons("reader").contains(&"Deleted".to_string()));
}

#[tokio::test]
async fn a_role_at_db9_reads_and_cannot_write_and_goes_with_its_resource() {
    select_only_through(ProviderApi::Db9).await;
}

#[tokio::test]
async fn a_role_at_supabase_reads_and_cannot_write_and_goes_with_its_resource() {
    select_only_through(ProviderApi::Supabase).await;
}

#[tokio::test]
async fn without_a_database_behind_the_emulator_a_role_stalls_and_says_how_to_get_one() {
    let h = Harness::bare().await;
    provider(&h, "db9", ProviderApi::Db9).await;
    ready_project(&h, "shop", "db9").await;
    create::<DatabaseRole>(&h, reader("reader", "shop", &unique("reader"))).await;
    let (role, (state, reason, message)) = stalled_reader(&h).await;
    assert_eq!(
        (state.as_str(), reason.as_str()),
        ("True", "UnsupportedByProvider"),
        "{message}"
    );
    assert!(message.contains("--emulator-postgres"), "{message}");
    assert!(!role.is_ready());
}

#[tokio::test]
async fn a_vendor_without_a_sql_channel_stalls_with_unsupported_by_provider() {
    let h = Harness::new().await;
    ready_project(&h, "shop", "default").await;
    create::<DatabaseRole>(&h, reader("reader", "shop", "reader")).await;
    let (_, (state, reason, message)) = stalled_reader(&h).await;
    assert_eq!(
        (state.as_str(), reason.as_str()),
        ("True", "UnsupportedByProvider"),
        "{message}"
    );
    assert!(message.contains("infrai cannot role.manage"), "{message}");
    // Nothing was made, so its deletion has nothing to drop and finishes.
    let roles: Api<DatabaseRole> = Api::namespaced(h.client.clone(), NS);
    roles
        .delete("reader", &DeleteParams::default())
        .await
        .unwrap();
    reconcile::<DatabaseRole>(&h, "reader").await.unwrap();
    assert!(roles.get_opt("reader").await.unwrap().is_none());
}

#[tokio::test]
async fn a_project_is_deleted_only_after_its_roles() {
    let h = Harness::with_emulator_postgres().await;
    provider(&h, "db9", ProviderApi::Db9).await;
    let role_name = ready_reader(&h, "db9").await;
    let projects: Api<DatabaseProject> = Api::namespaced(h.client.clone(), NS);
    projects
        .delete("shop", &DeleteParams::default())
        .await
        .unwrap();
    let waiting = reconcile::<DatabaseProject>(&h, "shop")
        .await
        .expect_err("the project waits for its role");
    assert!(waiting.to_string().contains("reader"), "{waiting}");
    assert!(
        projects.get_opt("shop").await.unwrap().is_some(),
        "the project is kept while its role exists"
    );
    let roles: Api<DatabaseRole> = Api::namespaced(h.client.clone(), NS);
    let deleting = roles.get("reader").await.unwrap();
    assert!(
        deleting.metadata.deletion_timestamp.is_some(),
        "its role is being deleted"
    );
    reconcile::<DatabaseRole>(&h, "reader").await.unwrap();
    assert!(!role_exists(&role_name).await);
    reconcile::<DatabaseProject>(&h, "shop").await.unwrap();
    assert!(projects.get_opt("shop").await.unwrap().is_none());
}

#[tokio::test]
async fn an_in_place_rotation_changes_the_one_logins_password() {
    let h = Harness::with_emulator_postgres().await;
    provider(&h, "db9", ProviderApi::Db9).await;
    let role_name = ready_reader(&h, "db9").await;
    let before = secret_data(&h, "reader-db").await;
    connect(&before["uri"])
        .await
        .expect("the first password works");

    let roles: Api<DatabaseRole> = Api::namespaced(h.client.clone(), NS);
    let patch =
        json!({ "metadata": { "annotations": { dbops::api::v1alpha1::ROTATE_ANNOTATION: "r1" } } });
    roles
        .patch(
            "reader",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(&patch),
        )
        .await
        .unwrap();
    reconcile::<DatabaseRole>(&h, "reader").await.unwrap();
    let after = secret_data(&h, "reader-db").await;
    assert_eq!(after["username"], role_name, "the same login");
    assert_ne!(after["password"], before["password"]);
    connect(&after["uri"])
        .await
        .expect("the new password works");
    let refused = connect(&before["uri"])
        .await
        .expect_err("the old one does not");
    assert_eq!(refused.code().map(|c| c.code()), Some("28P01"));
    let status = roles.get("reader").await.unwrap().status.unwrap();
    let rotation = status.credential_rotation.unwrap();
    assert_eq!(rotation.handled_request.as_deref(), Some("r1"));
    assert!(rotation.last_rotated_at.is_some() && rotation.phase.is_none());
    assert!(h.event_reasons("reader").contains(&"Rotated".to_string()));
    // The same request again changes nothing.
    reconcile::<DatabaseRole>(&h, "reader").await.unwrap();
    assert_eq!(
        secret_data(&h, "reader-db").await["password"],
        after["password"]
    );
}

#[tokio::test]
async fn a_role_copied_into_a_branch_is_disabled_not_dropped_and_its_deletion_finishes() {
    use dbops::api::v1alpha1::{CopyStrategy, DatabaseBranch};
    let h = Harness::bare().await;
    h.create_postgres_provider("pg", support::postgres::server(), CopyStrategy::Template)
        .await;
    let role_name = ready_reader(&h, "pg").await;
    // A branch copies the database, and with it the role's grants there.
    Api::<DatabaseBranch>::namespaced(h.client.clone(), NS)
        .create(&PostParams::default(), &support::branch("preview", "shop"))
        .await
        .unwrap();
    reconcile_until_ready::<DatabaseBranch>(&h, "preview", 6).await;

    let roles: Api<DatabaseRole> = Api::namespaced(h.client.clone(), NS);
    roles
        .delete("reader", &DeleteParams::default())
        .await
        .unwrap();
    reconcile::<DatabaseRole>(&h, "reader").await.unwrap();
    assert!(
        roles.get_opt("reader").await.unwrap().is_none(),
        "the deletion finished"
    );
    let admin = connect(&support::postgres::server().admin_url())
        .await
        .unwrap();
    let can_login: bool = admin
        .query_one(
            "SELECT rolcanlogin FROM pg_roles WHERE rolname = $1",
            &[&role_name],
        )
        .await
        .unwrap()
        .get(0);
    assert!(!can_login, "the role is left disabled");
    let notes = h.event_notes("reader");
    assert!(
        notes.iter().any(|n| n.contains("is disabled, not dropped")),
        "{notes:?}"
    );
}

#[tokio::test]
async fn a_rollout_restarts_only_workloads_that_read_the_roles_secret() {
    use dbops::api::v1alpha1::{WorkloadKind, WorkloadRef};
    use dbops::controllers::kinds::rollout::{RESTARTED_AT, RolloutState, advance};
    use k8s_openapi::api::apps::v1::Deployment;
    let h = Harness::bare().await;
    let deployments: Api<Deployment> = Api::namespaced(h.client.clone(), NS);
    for (name, secret) in [("web", "app-db"), ("other", "something-else")] {
        deployments
            .create(
                &PostParams::default(),
                &serde_json::from_value(json!({ "metadata": { "name": name },
                    "spec": { "selector": { "matchLabels": { "app": name } },
                        "template": { "metadata": { "labels": { "app": name } },
                            "spec": { "containers": [{ "name": "c", "image": "x",
                                "envFrom": [{ "secretRef": { "name": secret } }] }] } } } }))
                .unwrap(),
            )
            .await
            .unwrap();
    }
    let workload = |name: &str| WorkloadRef {
        kind: WorkloadKind::Deployment,
        name: name.into(),
    };
    // A workload that does not read the role's Secret is never restarted.
    let refused = advance(&h.client, NS, &[workload("other")], "app-db", "mark-1")
        .await
        .unwrap();
    assert!(
        matches!(&refused, RolloutState::Failed(m) if m.contains("does not use Secret app-db")),
        "{refused:?}"
    );
    let other = deployments.get("other").await.unwrap();
    let annotations = other.spec.unwrap().template.metadata.unwrap().annotations;
    assert!(annotations.is_none_or(|a| !a.contains_key(RESTARTED_AT)));
    // One that does is restarted once, with the rotation's mark.
    let started = advance(&h.client, NS, &[workload("web")], "app-db", "mark-1")
        .await
        .unwrap();
    assert!(matches!(started, RolloutState::Waiting(_)), "{started:?}");
    let web = deployments.get("web").await.unwrap();
    let annotations = web
        .spec
        .unwrap()
        .template
        .metadata
        .unwrap()
        .annotations
        .unwrap();
    assert_eq!(annotations[RESTARTED_AT], "mark-1");
    let missing = advance(&h.client, NS, &[workload("gone")], "app-db", "mark-1")
        .await
        .unwrap();
    assert!(matches!(missing, RolloutState::Failed(_)), "{missing:?}");
}

/// A role on a branch keeps its grants through a reset of the branch from
/// its parent: in place (`postgres`, the same database name) and as a new
/// branch (DB9, a new database); woken by the branch's status, it converges
/// on the fresh copy.
async fn a_role_on_a_reset_branch(h: &Harness, provider: &str, branch: &str) {
    use dbops::api::v1alpha1::DatabaseBranch;
    let owner = connect(&ready_project(h, "shop", provider).await)
        .await
        .unwrap();
    owner
        .batch_execute("CREATE TABLE orders (id int); INSERT INTO orders VALUES (1), (2)")
        .await
        .unwrap();
    Api::<DatabaseBranch>::namespaced(h.client.clone(), NS)
        .create(&PostParams::default(), &support::branch(branch, "shop"))
        .await
        .unwrap();
    reconcile_until_ready::<DatabaseBranch>(h, branch, 6).await;
    let role_name = unique("breader");
    let mut role = reader("breader", "shop", &role_name);
    role["spec"].as_object_mut().unwrap().remove("projectRef");
    role["spec"]["branchRef"] = json!({ "name": branch });
    create::<DatabaseRole>(h, role).await;
    reconcile_until_ready::<DatabaseRole>(h, "breader", 4).await;
    let count = |uri: String| async move {
        let client = connect(&uri).await.unwrap();
        client
            .query_one("SELECT count(*) FROM orders", &[])
            .await
            .map(|r| r.get::<_, i64>(0))
    };
    assert_eq!(
        count(secret_data(h, "breader-db").await["uri"].clone())
            .await
            .unwrap(),
        2
    );

    // The parent gains a row; the branch is reset.
    let owner = connect(&secret_data(h, "shop-connection").await["uri"])
        .await
        .unwrap();
    owner
        .batch_execute("INSERT INTO orders VALUES (3)")
        .await
        .unwrap();
    let patch = json!({ "metadata": { "annotations": { "dbops.dev/reset-from-parent": "1" } } });
    let branches = Api::<DatabaseBranch>::namespaced(h.client.clone(), NS);
    branches
        .patch(
            branch,
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(&patch),
        )
        .await
        .unwrap();
    for _ in 0..6 {
        let _ = reconcile::<DatabaseBranch>(h, branch).await;
    }
    let reset = branches.get(branch).await.unwrap();
    assert!(
        reset.status.as_ref().unwrap().last_reset_at.is_some(),
        "the branch was reset"
    );
    for _ in 0..3 {
        let _ = reconcile::<DatabaseRole>(h, "breader").await;
    }
    let role: DatabaseRole = Api::namespaced(h.client.clone(), NS)
        .get("breader")
        .await
        .unwrap();
    assert_eq!(
        condition(&role, READY).0,
        "True",
        "{:?}",
        condition(&role, READY)
    );
    let uri = secret_data(h, "breader-db").await["uri"].clone();
    assert_eq!(
        count(uri).await.unwrap(),
        3,
        "the role reads the fresh copy"
    );
}

#[tokio::test]
async fn a_role_on_a_postgres_branch_keeps_its_grants_through_a_reset() {
    use dbops::api::v1alpha1::CopyStrategy;
    let h = Harness::bare().await;
    h.create_postgres_provider("pg", support::postgres::server(), CopyStrategy::Template)
        .await;
    a_role_on_a_reset_branch(&h, "pg", "rb-pg").await;
}

#[tokio::test]
async fn a_role_on_a_db9_branch_keeps_its_grants_through_a_reset() {
    let h = Harness::with_emulator_postgres().await;
    provider(&h, "db9", ProviderApi::Db9).await;
    a_role_on_a_reset_branch(&h, "db9", "rb-db9").await;
}
