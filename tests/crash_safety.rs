//! Crash safety: for every create and delete path, the reconcile is dropped
//! (as if the operator process died) right after each vendor call in turn, then
//! a fresh operator (new in-memory state) carries on. The end state must be the
//! same every time: exactly one vendor object per resource, the right Secret,
//! and no orphan after deletion.

mod support;

use std::sync::Arc;
use std::time::Duration;

use dbops::api::v1alpha1::{
    ByokCredential, DatabaseBranch, DatabaseProject, DatabaseSnapshot, ProviderApi,
};
use dbops::controllers::{Context, Lifecycle, Settings};
use dbops::emulator::faults::Faults;
use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, DeleteParams, PostParams};
use serde_json::{Value, json};
use support::{Harness, NS};

#[derive(Clone, Copy, PartialEq)]
enum Want {
    Ready,
    Gone,
}

fn fresh_context(h: &Harness) -> Arc<Context> {
    let settings = Settings {
        base_backoff: Duration::from_millis(10),
        ..Settings::default()
    };
    Arc::new(Context::new(
        h.client.clone(),
        Arc::new(dbops::metrics::Metrics::default()),
        settings,
        None,
    ))
}

/// Reconciles `name` until it is Ready (or gone), as the controller would.
async fn converge<K>(h: &Harness, ctx: Arc<Context>, name: &str, want: Want)
where
    K: Lifecycle,
{
    let api: Api<K> = Api::namespaced(h.client.clone(), NS);
    for _ in 0..30 {
        let Some(obj) = api.get_opt(name).await.unwrap() else {
            assert!(want == Want::Gone, "{name} vanished");
            return;
        };
        if want == Want::Ready && obj.is_ready() {
            return;
        }
        let _ = dbops::controllers::reconcile(
            Arc::new(kube::core::DeserializeGuard(Ok(obj))),
            ctx.clone(),
        )
        .await;
    }
    panic!("{name} did not converge");
}

/// Converges with a crash right after the `k`-th vendor call; returns whether
/// the crash point was reached (false: the path has fewer than `k` calls).
async fn converge_with_crash<K>(
    h: &Harness,
    faults: &Faults,
    name: &str,
    want: Want,
    k: u64,
) -> bool
where
    K: Lifecycle,
{
    let signal = faults.signal_after(k);
    let crashed = tokio::select! {
        _ = converge::<K>(h, fresh_context(h), name, want) => false,
        _ = signal.notified() => true,
    };
    if crashed {
        // A new process: nothing kept in memory.
        converge::<K>(h, fresh_context(h), name, want).await;
    }
    crashed
}

async fn create<K>(h: &Harness, value: Value)
where
    K: kube::Resource<DynamicType = (), Scope = NamespaceResourceScope>
        + Clone
        + serde::Serialize
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    let api: Api<K> = Api::namespaced(h.client.clone(), NS);
    api.create(
        &PostParams::default(),
        &serde_json::from_value(value).unwrap(),
    )
    .await
    .unwrap();
}

async fn delete<K>(h: &Harness, name: &str)
where
    K: kube::Resource<DynamicType = (), Scope = NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    Api::<K>::namespaced(h.client.clone(), NS)
        .delete(name, &DeleteParams::default())
        .await
        .unwrap();
}

async fn secret_field(h: &Harness, name: &str, key: &str) -> String {
    let secret = Api::<Secret>::namespaced(h.client.clone(), NS)
        .get(name)
        .await
        .unwrap();
    String::from_utf8(secret.data.unwrap()[key].0.clone()).unwrap()
}

#[derive(Clone, Copy, Debug)]
enum Scenario {
    InfraiProject,
    InfraiBranch,
    InfraiSnapshot,
    InfraiRestore,
    Byok,
    Db9Project,
    SupabaseProject,
}

/// Runs `scenario` with a crash after vendor call `k` on create and on delete;
/// returns how many crashes were injected (0, 1 or 2).
async fn run(scenario: Scenario, k: u64) -> usize {
    let h = Harness::new().await;
    let (api_name, name) = match scenario {
        Scenario::Db9Project => ("db9", "app"),
        Scenario::SupabaseProject => ("supabase", "app"),
        _ => ("infrai", "it"),
    };
    let faults = h.emulator.faults_of(api_name).unwrap();
    let mut crashes = 0;
    let ready = |crashed: bool| if crashed { 1 } else { 0 };
    match scenario {
        Scenario::InfraiProject => {
            create::<DatabaseProject>(&h, json!({ "metadata": { "name": name }, "spec": {} }))
                .await;
            crashes += ready(
                converge_with_crash::<DatabaseProject>(&h, &faults, name, Want::Ready, k).await,
            );
            let vendor = h.emulator.infrai.projects();
            assert_eq!(vendor.len(), 1, "k={k}: one project");
            assert!(
                secret_field(&h, "it-connection", "uri")
                    .await
                    .starts_with("postgresql://")
            );
            delete::<DatabaseProject>(&h, name).await;
            crashes += ready(
                converge_with_crash::<DatabaseProject>(&h, &faults, name, Want::Gone, k).await,
            );
            assert!(h.emulator.infrai.projects().is_empty(), "k={k}: no orphan");
        }
        Scenario::InfraiBranch | Scenario::InfraiSnapshot | Scenario::InfraiRestore => {
            create::<DatabaseProject>(&h, json!({ "metadata": { "name": "parent" }, "spec": {} }))
                .await;
            converge::<DatabaseProject>(&h, fresh_context(&h), "parent", Want::Ready).await;
            match scenario {
                Scenario::InfraiBranch => {
                    create::<DatabaseBranch>(&h, json!({ "metadata": { "name": name }, "spec": { "projectRef": { "name": "parent" } } })).await;
                    crashes += ready(
                        converge_with_crash::<DatabaseBranch>(&h, &faults, name, Want::Ready, k)
                            .await,
                    );
                    assert_eq!(
                        h.emulator.infrai.branch_count(),
                        2,
                        "k={k}: the default branch and one more"
                    );
                    delete::<DatabaseBranch>(&h, name).await;
                    crashes += ready(
                        converge_with_crash::<DatabaseBranch>(&h, &faults, name, Want::Gone, k)
                            .await,
                    );
                    assert_eq!(
                        h.emulator.infrai.branch_count(),
                        1,
                        "k={k}: no orphaned branch"
                    );
                }
                Scenario::InfraiSnapshot => {
                    create::<DatabaseSnapshot>(&h, json!({ "metadata": { "name": name }, "spec": { "projectRef": { "name": "parent" } } })).await;
                    crashes += ready(
                        converge_with_crash::<DatabaseSnapshot>(&h, &faults, name, Want::Ready, k)
                            .await,
                    );
                    assert_eq!(h.emulator.infrai.snapshot_count(), 1, "k={k}: one snapshot");
                    delete::<DatabaseSnapshot>(&h, name).await;
                    crashes += ready(
                        converge_with_crash::<DatabaseSnapshot>(&h, &faults, name, Want::Gone, k)
                            .await,
                    );
                    assert_eq!(
                        h.emulator.infrai.snapshot_count(),
                        1,
                        "k={k}: infrai keeps snapshots until the project goes"
                    );
                }
                _ => {
                    create::<DatabaseSnapshot>(&h, json!({ "metadata": { "name": "snap" }, "spec": { "projectRef": { "name": "parent" } } })).await;
                    converge::<DatabaseSnapshot>(&h, fresh_context(&h), "snap", Want::Ready).await;
                    create::<DatabaseProject>(&h, json!({ "metadata": { "name": name }, "spec": { "restoreFrom": { "snapshotRef": { "name": "snap" } } } })).await;
                    crashes += ready(
                        converge_with_crash::<DatabaseProject>(&h, &faults, name, Want::Ready, k)
                            .await,
                    );
                    assert_eq!(
                        h.emulator.infrai.projects().len(),
                        2,
                        "k={k}: one restored project"
                    );
                    delete::<DatabaseProject>(&h, name).await;
                    crashes += ready(
                        converge_with_crash::<DatabaseProject>(&h, &faults, name, Want::Gone, k)
                            .await,
                    );
                    assert_eq!(
                        h.emulator.infrai.projects().len(),
                        1,
                        "k={k}: no orphaned restore"
                    );
                }
            }
        }
        Scenario::Byok => {
            let secret: Secret = serde_json::from_value(
                json!({ "metadata": { "name": "key" }, "stringData": { "api_key": "sk-crash" } }),
            )
            .unwrap();
            Api::<Secret>::namespaced(h.client.clone(), NS)
                .create(&PostParams::default(), &secret)
                .await
                .unwrap();
            create::<ByokCredential>(
                &h,
                json!({ "metadata": { "name": name }, "spec": { "vendor": "neon", "alias": "a", "credentialsSecretRef": { "name": "key" }, "bindings": [{ "module": "db" }], "quota": { "callLimit": 10 } } }),
            )
            .await;
            crashes += ready(
                converge_with_crash::<ByokCredential>(&h, &faults, name, Want::Ready, k).await,
            );
            assert_eq!(h.emulator.infrai.byok.count(), 1, "k={k}: registered once");
            let id = Api::<ByokCredential>::namespaced(h.client.clone(), NS)
                .get(name)
                .await
                .unwrap()
                .status
                .unwrap()
                .byok_id
                .unwrap();
            delete::<ByokCredential>(&h, name).await;
            crashes += ready(
                converge_with_crash::<ByokCredential>(&h, &faults, name, Want::Gone, k).await,
            );
            assert_eq!(
                h.emulator.infrai.byok.summary(&id).unwrap().0,
                "revoked",
                "k={k}: revoked"
            );
        }
        Scenario::Db9Project => {
            h.create_provider_for("db9", ProviderApi::Db9, support::DB9_KEY, None)
                .await;
            create::<DatabaseProject>(&h, json!({ "metadata": { "name": name }, "spec": { "providerRef": { "name": "db9" } } })).await;
            crashes += ready(
                converge_with_crash::<DatabaseProject>(&h, &faults, name, Want::Ready, k).await,
            );
            assert_eq!(h.emulator.db9.database_count(), 1, "k={k}: one database");
            let id = Api::<DatabaseProject>::namespaced(h.client.clone(), NS)
                .get(name)
                .await
                .unwrap()
                .status
                .unwrap()
                .project_id
                .unwrap();
            assert_eq!(
                secret_field(&h, "app-connection", "password").await,
                h.emulator.db9.admin_password(&id).unwrap()
            );
            delete::<DatabaseProject>(&h, name).await;
            crashes += ready(
                converge_with_crash::<DatabaseProject>(&h, &faults, name, Want::Gone, k).await,
            );
            assert_eq!(h.emulator.db9.database_count(), 0, "k={k}: no orphan");
        }
        Scenario::SupabaseProject => {
            h.emulator.supabase.set_provisioning_polls(1);
            h.create_provider_for(
                "supa",
                ProviderApi::Supabase,
                support::SUPABASE_KEY,
                Some("acme"),
            )
            .await;
            create::<DatabaseProject>(&h, json!({ "metadata": { "name": name }, "spec": { "providerRef": { "name": "supa" } } })).await;
            crashes += ready(
                converge_with_crash::<DatabaseProject>(&h, &faults, name, Want::Ready, k).await,
            );
            assert_eq!(h.emulator.supabase.project_count(), 1, "k={k}: one project");
            let id = Api::<DatabaseProject>::namespaced(h.client.clone(), NS)
                .get(name)
                .await
                .unwrap()
                .status
                .unwrap()
                .project_id
                .unwrap();
            assert_eq!(
                secret_field(&h, "app-connection", "password").await,
                h.emulator.supabase.db_password(&id).unwrap(),
                "k={k}: the Secret holds the password the vendor has"
            );
            delete::<DatabaseProject>(&h, name).await;
            crashes += ready(
                converge_with_crash::<DatabaseProject>(&h, &faults, name, Want::Gone, k).await,
            );
            assert_eq!(h.emulator.supabase.project_count(), 0, "k={k}: no orphan");
        }
    }
    crashes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_after_any_vendor_call_leaves_exactly_one_object_and_no_orphan() {
    let scenarios = [
        Scenario::InfraiProject,
        Scenario::InfraiBranch,
        Scenario::InfraiSnapshot,
        Scenario::InfraiRestore,
        Scenario::Byok,
        Scenario::Db9Project,
        Scenario::SupabaseProject,
    ];
    // Every crash point of every path, in several rounds (fresh ids and
    // timings each round), so that a run injects well over 100 crashes.
    const ROUNDS: usize = 5;
    let mut total = 0;
    let mut points = 0;
    for round in 0..ROUNDS {
        for scenario in scenarios {
            let mut k = 1;
            loop {
                let crashes = run(scenario, k).await;
                total += crashes;
                if crashes == 0 {
                    break;
                }
                k += 1;
                assert!(
                    k < 40,
                    "{scenario:?} never completed without reaching the crash point"
                );
            }
            if round == 0 {
                points += k - 1;
                println!(
                    "crash safety: {scenario:?}: a crash after each of vendor calls 1..{}",
                    k - 1
                );
            }
        }
    }
    println!(
        "crash safety: {total} crashes injected ({points} crash points x {ROUNDS} rounds, create and delete)"
    );
    assert!(total >= 100, "only {total} crashes were injected");
}
