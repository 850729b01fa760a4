//! One operator, many teams: what a namespace user can write never reaches
//! another namespace's vendor objects. Each test acts as two tenants, `team-a`
//! and `team-b`, against the fake API server and the built-in emulator; the
//! same cases run on a real API server, impersonating tenants, in
//! `tests/e2e.rs`.

mod support;

use std::sync::Arc;

use dbops::api::v1alpha1::{
    ClaimHolder, ClaimedObject, DatabaseBranch, DatabaseProject, DatabaseProvider,
    DatabaseSnapshot, ProviderApi,
};
use dbops::controllers::protection::claims::{ClaimError, ClaimKey};
use dbops::controllers::{Managed, ReconcileError};
use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use support::{Harness, condition};

const A: &str = "team-a";
const B: &str = "team-b";

async fn reconcile_in<K>(
    h: &Harness,
    ns: &str,
    name: &str,
) -> Result<kube::runtime::controller::Action, K::Error>
where
    K: dbops::controllers::Lifecycle,
{
    let api: Api<K> = Api::namespaced(h.client.clone(), ns);
    let obj = api.get(name).await.expect("object exists");
    dbops::controllers::reconcile(
        Arc::new(kube::core::DeserializeGuard(Ok(obj))),
        h.ctx.clone(),
    )
    .await
}

async fn ready_in<K>(h: &Harness, ns: &str, name: &str) -> K
where
    K: dbops::controllers::Lifecycle,
{
    let api: Api<K> = Api::namespaced(h.client.clone(), ns);
    let mut last = String::new();
    for _ in 0..5 {
        if let Err(e) = reconcile_in::<K>(h, ns, name).await {
            last = e.to_string();
        }
        let obj = api.get(name).await.unwrap();
        if obj.is_ready() {
            return obj;
        }
    }
    panic!("{ns}/{name} not Ready: {last}");
}

async fn get_in<K>(h: &Harness, ns: &str, name: &str) -> Option<K>
where
    K: dbops::controllers::Lifecycle,
{
    Api::<K>::namespaced(h.client.clone(), ns)
        .get_opt(name)
        .await
        .unwrap()
}

async fn create_in<K>(h: &Harness, ns: &str, value: Value) -> K
where
    K: dbops::controllers::Lifecycle,
{
    let mut value = value;
    value["apiVersion"] = json!("dbops.dev/v1alpha1");
    value["kind"] = json!(K::kind(&()));
    value["metadata"]["namespace"] = json!(ns);
    let obj: K = serde_json::from_value(value).unwrap();
    Api::<K>::namespaced(h.client.clone(), ns)
        .create(&PostParams::default(), &obj)
        .await
        .unwrap()
}

/// Deletes `K` `name` and runs its cleanup; asserts the deletion finished.
async fn delete_in<K>(h: &Harness, ns: &str, name: &str)
where
    K: dbops::controllers::Lifecycle,
{
    Api::<K>::namespaced(h.client.clone(), ns)
        .delete(name, &DeleteParams::default())
        .await
        .unwrap();
    if get_in::<K>(h, ns, name).await.is_some() {
        reconcile_in::<K>(h, ns, name).await.unwrap();
    }
    assert!(
        get_in::<K>(h, ns, name).await.is_none(),
        "deleting {ns}/{name} finished"
    );
}

async fn namespace(h: &Harness, name: &str, labels: Value) {
    let ns: Namespace =
        serde_json::from_value(json!({ "metadata": { "name": name, "labels": labels } })).unwrap();
    Api::<Namespace>::all(h.client.clone())
        .create(&PostParams::default(), &ns)
        .await
        .unwrap();
}

/// Sets provider `name`'s tenancy policies (`use_from`, `adopt_from` with
/// an optional selector each).
async fn policies(h: &Harness, name: &str, allowed: Value, adoption: Value) {
    Api::<DatabaseProvider>::all(h.client.clone())
        .patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({ "spec": {
                "allowedNamespaces": allowed,
                "adoption": { "allowedNamespaces": adoption },
            }})),
        )
        .await
        .unwrap();
}

fn stalled_reason<K: Managed>(obj: &K) -> String {
    let (status, reason) = condition(obj, "Stalled");
    assert_eq!(status, "True", "stalled");
    reason
}

fn message<K: Managed>(obj: &K, type_: &str) -> String {
    K::conditions(obj.status().unwrap())
        .get(type_)
        .map(|c| c.message.clone())
        .unwrap_or_default()
}

fn project(name: &str) -> Value {
    json!({ "metadata": { "name": name }, "spec": { "writeConnectionSecretTo": { "name": format!("{name}-db") } } })
}

/// Team A's project, Ready; returns its vendor id and password.
async fn team_a_project(h: &Harness) -> (String, String) {
    create_in::<DatabaseProject>(h, A, project("shop")).await;
    let p = ready_in::<DatabaseProject>(h, A, "shop").await;
    let id = p.status.unwrap().project_id.unwrap();
    let secret = Api::<Secret>::namespaced(h.client.clone(), A)
        .get("shop-db")
        .await
        .unwrap();
    let password = String::from_utf8(secret.data.unwrap()["password"].0.clone()).unwrap();
    (id, password)
}

/// Every Secret in `ns`, as text: what a tenant of `ns` can read.
async fn secrets_text(h: &Harness, ns: &str) -> String {
    Api::<Secret>::namespaced(h.client.clone(), ns)
        .list(&Default::default())
        .await
        .unwrap()
        .items
        .iter()
        .map(|s| serde_json::to_string(s).unwrap())
        .collect()
}

#[tokio::test]
async fn a_provider_admits_only_the_namespace_of_its_credentials_by_default() {
    let h = Harness::new().await;
    let all = json!({ "from": "All" });
    // The harness's provider keeps its key in dbops-system.
    policies(&h, "default", json!({ "from": "Same" }), all.clone()).await;
    create_in::<DatabaseProject>(&h, B, project("shop")).await;
    let err = reconcile_in::<DatabaseProject>(&h, B, "shop")
        .await
        .unwrap_err();
    assert_eq!(err.category(), "ProviderNotAllowed");
    assert!(!err.is_transient());
    let p = get_in::<DatabaseProject>(&h, B, "shop").await.unwrap();
    assert_eq!(stalled_reason(&p), "ProviderNotAllowed");
    let text = message(&p, "Stalled");
    assert!(text.contains("an administrator"), "{text}");
    assert!(text.contains("team-b"), "{text}");
    assert!(h.emulator.infrai.projects().is_empty(), "nothing sent");
    delete_in::<DatabaseProject>(&h, B, "shop").await;
}

#[tokio::test]
async fn a_selector_admits_by_namespace_label_and_every_reconcile_enforces_it() {
    let h = Harness::new().await;
    namespace(&h, A, json!({ "tenant": "yes" })).await;
    namespace(&h, B, json!({})).await;
    let selector =
        json!({ "from": "Selector", "selector": { "matchLabels": { "tenant": "yes" } } });
    policies(&h, "default", selector, json!({ "from": "Same" })).await;
    let (_, _) = team_a_project(&h).await;
    create_in::<DatabaseProject>(&h, B, project("shop")).await;
    let err = reconcile_in::<DatabaseProject>(&h, B, "shop")
        .await
        .unwrap_err();
    assert_eq!(err.category(), "ProviderNotAllowed");
    assert_eq!(h.emulator.infrai.projects().len(), 1, "only A's");

    // Team B gets the label: the next reconcile goes ahead.
    Api::<Namespace>::all(h.client.clone())
        .patch(
            B,
            &PatchParams::default(),
            &Patch::Merge(json!({ "metadata": { "labels": { "tenant": "yes" } } })),
        )
        .await
        .unwrap();
    ready_in::<DatabaseProject>(&h, B, "shop").await;
    // Team A loses it: its Ready project stalls, nothing more is sent, and
    // deleting it finishes without calling the vendor (its project is left
    // for the provider's owner, and an Event says so).
    Api::<Namespace>::all(h.client.clone())
        .patch(
            A,
            &PatchParams::default(),
            &Patch::Merge(json!({ "metadata": { "labels": { "tenant": null } } })),
        )
        .await
        .unwrap();
    let err = reconcile_in::<DatabaseProject>(&h, A, "shop")
        .await
        .unwrap_err();
    assert_eq!(err.category(), "ProviderNotAllowed");
    let p = get_in::<DatabaseProject>(&h, A, "shop").await.unwrap();
    assert_eq!(stalled_reason(&p), "ProviderNotAllowed");
    let before = h.emulator.infrai.projects().len();
    delete_in::<DatabaseProject>(&h, A, "shop").await;
    assert_eq!(h.emulator.infrai.projects().len(), before);
    assert!(
        h.event_reasons("shop")
            .contains(&"VendorCleanupSkipped".to_string())
    );
}

#[tokio::test]
async fn adoption_is_a_privilege_of_the_namespaces_the_provider_admits() {
    let h = Harness::new().await;
    policies(
        &h,
        "default",
        json!({ "from": "All" }),
        json!({ "from": "Same" }),
    )
    .await;
    let (a_id, a_password) = team_a_project(&h).await;
    // A DatabaseSnapshot of team A's, to be named by raw id.
    create_in::<DatabaseSnapshot>(
        &h,
        A,
        json!({ "metadata": { "name": "nightly" }, "spec": { "projectRef": { "name": "shop" } } }),
    )
    .await;
    let snap = ready_in::<DatabaseSnapshot>(&h, A, "nightly").await;
    let snap_id = snap.status.unwrap().snapshot_id.unwrap();
    let projects_before = h.emulator.infrai.projects().len();

    // externalId, restoreFrom.snapshotId, and a raw fromBranch: refused.
    create_in::<DatabaseProject>(
        &h,
        B,
        json!({ "metadata": { "name": "stolen" }, "spec": { "externalId": a_id, "deletionPolicy": "Delete" } }),
    )
    .await;
    create_in::<DatabaseProject>(
        &h,
        B,
        json!({ "metadata": { "name": "restored" }, "spec": { "restoreFrom": { "snapshotId": snap_id } } }),
    )
    .await;
    create_in::<DatabaseProject>(&h, B, project("own")).await;
    ready_in::<DatabaseProject>(&h, B, "own").await;
    create_in::<DatabaseBranch>(
        &h,
        B,
        json!({ "metadata": { "name": "raw" }, "spec": { "projectRef": { "name": "own" }, "fromBranch": "main" } }),
    )
    .await;
    for name in ["stolen", "restored"] {
        let err = reconcile_in::<DatabaseProject>(&h, B, name)
            .await
            .unwrap_err();
        assert_eq!(err.category(), "AdoptionNotAllowed", "{name}: {err}");
        let p = get_in::<DatabaseProject>(&h, B, name).await.unwrap();
        assert_eq!(stalled_reason(&p), "AdoptionNotAllowed");
        assert!(p.status.unwrap().project_id.is_none());
    }
    let err = reconcile_in::<DatabaseBranch>(&h, B, "raw")
        .await
        .unwrap_err();
    assert_eq!(err.category(), "AdoptionNotAllowed");
    // Team B got nothing of team A's, and team A's project is untouched.
    let b_secrets = secrets_text(&h, B).await;
    assert!(!b_secrets.contains(&a_id));
    assert!(!b_secrets.contains(&base64(&a_password)));
    assert_eq!(h.emulator.infrai.projects().len(), projects_before + 1);
    for name in ["stolen", "restored"] {
        delete_in::<DatabaseProject>(&h, B, name).await;
    }
    delete_in::<DatabaseBranch>(&h, B, "raw").await;
    assert!(
        h.emulator.infrai.projects().iter().any(|p| p.id == a_id),
        "deleting the refused resources left A's project"
    );
    ready_in::<DatabaseProject>(&h, A, "shop").await;
}

fn base64(text: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(text)
}

#[tokio::test]
async fn a_vendor_object_has_one_holder_in_the_whole_cluster() {
    let h = Harness::new().await;
    // Both teams may adopt: only the claim stands between them.
    let (a_id, a_password) = team_a_project(&h).await;
    create_in::<DatabaseProject>(
        &h,
        B,
        json!({ "metadata": { "name": "stolen" }, "spec": { "externalId": a_id, "deletionPolicy": "Delete", "writeConnectionSecretTo": { "name": "stolen-db" } } }),
    )
    .await;
    let err = reconcile_in::<DatabaseProject>(&h, B, "stolen")
        .await
        .unwrap_err();
    assert_eq!(err.category(), "AlreadyClaimed");
    let p = get_in::<DatabaseProject>(&h, B, "stolen").await.unwrap();
    assert_eq!(stalled_reason(&p), "AlreadyClaimed");
    let text = message(&p, "Stalled");
    assert!(
        !text.contains(A) && !text.contains("shop"),
        "never says who holds it: {text}"
    );
    assert!(!secrets_text(&h, B).await.contains(&base64(&a_password)));
    // Deleting it (policy Delete) never deletes what it does not hold.
    delete_in::<DatabaseProject>(&h, B, "stolen").await;
    assert!(h.emulator.infrai.projects().iter().any(|p| p.id == a_id));
    let a = ready_in::<DatabaseProject>(&h, A, "shop").await;
    assert_eq!(a.status.unwrap().project_id.as_deref(), Some(a_id.as_str()));

    // Once team A's resource is gone (Retain), the project is free to adopt.
    Api::<DatabaseProject>::namespaced(h.client.clone(), A)
        .patch(
            "shop",
            &PatchParams::default(),
            &Patch::Merge(json!({ "spec": { "deletionPolicy": "Retain" } })),
        )
        .await
        .unwrap();
    delete_in::<DatabaseProject>(&h, A, "shop").await;
    create_in::<DatabaseProject>(
        &h,
        B,
        json!({ "metadata": { "name": "adopted" }, "spec": { "externalId": a_id } }),
    )
    .await;
    let adopted = ready_in::<DatabaseProject>(&h, B, "adopted").await;
    let status = adopted.status.unwrap();
    assert!(status.adopted);
    assert_eq!(
        status.deletion_policy,
        Some(dbops::api::v1alpha1::DeletionPolicy::Retain)
    );
}

#[tokio::test]
async fn two_resources_racing_for_one_id_never_both_win() {
    let h = Harness::new().await;
    let key = ClaimKey {
        api: ProviderApi::Infrai,
        account: "https://api.example:443".into(),
        object: ClaimedObject::Project,
        id: "prj_contested".into(),
    };
    // Real holders, so neither claim looks stale to the other.
    let a = create_in::<DatabaseProject>(&h, A, project("one")).await;
    let b = create_in::<DatabaseProject>(&h, B, project("two")).await;
    let holder = |p: &DatabaseProject, ns: &str| ClaimHolder {
        kind: "DatabaseProject".into(),
        namespace: ns.into(),
        name: p.metadata.name.clone().unwrap(),
        uid: p.metadata.uid.clone().unwrap(),
    };
    for _ in 0..20 {
        // Two operators' contexts (no shared memory), at the same moment.
        let other = h.second_context();
        let (holder_a, holder_b) = (holder(&a, A), holder(&b, B));
        let (first, second) = tokio::join!(
            h.ctx.claim(&key, &holder_a, "default"),
            other.claim(&key, &holder_b, "default"),
        );
        let won = [first.is_ok(), second.is_ok()];
        assert_eq!(won.iter().filter(|w| **w).count(), 1, "{won:?}");
        let loser = if won[0] { second } else { first };
        assert!(matches!(loser, Err(ClaimError::Taken { .. })));
        let claims = h.kube.objects("apis/dbops.dev/v1alpha1/vendorclaims");
        assert_eq!(claims.len(), 1);
        // Released by its holder, the next race is open again.
        let uid = claims[0]["spec"]["holder"]["uid"]
            .as_str()
            .unwrap()
            .to_string();
        h.ctx.release(&key, &uid).await.unwrap();
        other.release(&key, &uid).await.unwrap();
        assert!(
            h.kube
                .objects("apis/dbops.dev/v1alpha1/vendorclaims")
                .is_empty()
        );
    }
}

#[tokio::test]
async fn a_claim_whose_holder_is_gone_is_taken_over_and_swept() {
    let h = Harness::new().await;
    let key = ClaimKey {
        api: ProviderApi::Infrai,
        account: "https://api.example:443".into(),
        object: ClaimedObject::Project,
        id: "prj_orphan".into(),
    };
    let gone = ClaimHolder {
        kind: "DatabaseProject".into(),
        namespace: A.into(),
        name: "deleted-long-ago".into(),
        uid: "00000000-dead-0000-0000-000000000000".into(),
    };
    h.ctx.claim(&key, &gone, "default").await.unwrap();
    let b = create_in::<DatabaseProject>(&h, B, project("heir")).await;
    let heir = ClaimHolder {
        kind: "DatabaseProject".into(),
        namespace: B.into(),
        name: "heir".into(),
        uid: b.metadata.uid.clone().unwrap(),
    };
    h.ctx.claim(&key, &heir, "default").await.unwrap();
    let claims = h.kube.objects("apis/dbops.dev/v1alpha1/vendorclaims");
    assert_eq!(claims.len(), 1);
    assert_eq!(claims[0]["spec"]["holder"]["uid"], json!(heir.uid));
    // The sweep releases claims of holders that are gone, and only those.
    let other = ClaimKey {
        id: "prj_other".into(),
        ..key.clone()
    };
    h.ctx.claim(&other, &gone, "default").await.unwrap();
    let stale: Vec<dbops::api::v1alpha1::VendorClaim> = h
        .kube
        .objects("apis/dbops.dev/v1alpha1/vendorclaims")
        .into_iter()
        .map(|v| serde_json::from_value(v).unwrap())
        .collect();
    assert_eq!(h.ctx.sweep_claims(&stale).await, 1);
    let left = h.kube.objects("apis/dbops.dev/v1alpha1/vendorclaims");
    assert_eq!(left.len(), 1);
    assert_eq!(left[0]["spec"]["holder"]["uid"], json!(heir.uid));
}

#[tokio::test]
async fn a_forged_create_mark_or_a_failed_first_create_never_takes_anothers_project() {
    let h = Harness::new().await;
    let (a_id, a_password) = team_a_project(&h).await;
    let a_name = h
        .emulator
        .infrai
        .projects()
        .into_iter()
        .find(|p| p.id == a_id)
        .unwrap()
        .name;
    // Team B asks for A's vendor name, with a vendor no document lists (its
    // first create is refused), and forges the old annotation mark.
    let mut forged = json!({ "metadata": { "name": "copycat" }, "spec": {
        "projectName": a_name, "vendor": "nosuchvendor", "writeConnectionSecretTo": { "name": "copycat-db" } } });
    create_in::<DatabaseProject>(&h, B, forged.clone()).await;
    let uid = get_in::<DatabaseProject>(&h, B, "copycat")
        .await
        .unwrap()
        .metadata
        .uid
        .unwrap();
    Api::<DatabaseProject>::namespaced(h.client.clone(), B)
        .patch(
            "copycat",
            &PatchParams::default(),
            &Patch::Merge(
                json!({ "metadata": { "annotations": { "dbops.dev/create-requested": uid } } }),
            ),
        )
        .await
        .unwrap();
    for _ in 0..3 {
        let err = reconcile_in::<DatabaseProject>(&h, B, "copycat")
            .await
            .unwrap_err();
        assert_eq!(err.category(), "VendorRejected", "{err}");
        // Any spec edit, then again.
        Api::<DatabaseProject>::namespaced(h.client.clone(), B)
            .patch(
                "copycat",
                &PatchParams::default(),
                &Patch::Merge(json!({ "spec": { "writeConnectionSecretTo": { "labels": { "edit": uid.clone() } } } })),
            )
            .await
            .unwrap();
    }
    let p = get_in::<DatabaseProject>(&h, B, "copycat").await.unwrap();
    let status = p.status.unwrap();
    assert!(status.project_id.is_none(), "nothing taken");
    assert!(
        !status.create_requested,
        "a refused first create is unmarked"
    );
    assert!(!secrets_text(&h, B).await.contains(&base64(&a_password)));
    delete_in::<DatabaseProject>(&h, B, "copycat").await;
    assert!(h.emulator.infrai.projects().iter().any(|p| p.id == a_id));
    let _ = &mut forged;
}

#[tokio::test]
async fn a_resumed_create_under_a_chosen_name_never_takes_what_it_finds() {
    // Supabase takes no idempotency key: a create that may have reached it
    // finds projects by name, and a name the user chose proves nothing.
    let h = Harness::bare().await;
    h.create_provider_for(
        "supa",
        ProviderApi::Supabase,
        support::SUPABASE_KEY,
        Some("acme"),
    )
    .await;
    let supa = |name: &str, project_name: &str| json!({ "metadata": { "name": name }, "spec": { "providerRef": { "name": "supa" }, "projectName": project_name } });
    create_in::<DatabaseProject>(&h, A, supa("shop", "shared-name")).await;
    ready_in::<DatabaseProject>(&h, A, "shop").await;
    // Team B's create of the same name was marked, then its answer lost.
    create_in::<DatabaseProject>(&h, B, supa("shop", "shared-name")).await;
    let err = reconcile_in::<DatabaseProject>(&h, B, "shop")
        .await
        .unwrap_err();
    assert_eq!(err.category(), "NameConflict", "a first attempt: {err}");
    let api = Api::<DatabaseProject>::namespaced(h.client.clone(), B);
    let mut p = api.get("shop").await.unwrap();
    let mut status = p.status.take().unwrap();
    assert!(!status.create_requested);
    status.create_requested = true;
    api.patch_status(
        "shop",
        &PatchParams::default(),
        &Patch::Merge(json!({ "status": status })),
    )
    .await
    .unwrap();
    let err = reconcile_in::<DatabaseProject>(&h, B, "shop")
        .await
        .unwrap_err();
    assert_eq!(err.category(), "CreateUncertain", "{err}");
    let p = api.get("shop").await.unwrap();
    assert_eq!(stalled_reason(&p), "CreateUncertain");
    assert!(message(&p, "Stalled").contains("spec.externalId"));
    assert!(p.status.unwrap().project_id.is_none());
    // Deleting it finishes, and deletes nothing it cannot prove it made.
    let before = h.emulator.supabase.project_count();
    delete_in::<DatabaseProject>(&h, B, "shop").await;
    assert_eq!(h.emulator.supabase.project_count(), before);
    ready_in::<DatabaseProject>(&h, A, "shop").await;
}

/// The documents of the README's worked platform setup.
fn platform_example() -> Vec<Value> {
    use serde::Deserialize;
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("deploy/examples/multi-tenant/platform.yaml");
    let text = std::fs::read_to_string(path).unwrap();
    serde_yaml_ng::Deserializer::from_str(&text)
        .map(|doc| Value::deserialize(doc).unwrap())
        .filter(|v| !v.is_null())
        .collect()
}

#[tokio::test]
async fn the_worked_platform_setup_admits_labelled_teams_and_keeps_adoption_home() {
    let h = Harness::new().await;
    let docs = platform_example();
    let of =
        |kind: &str| -> Vec<Value> { docs.iter().filter(|d| d["kind"] == kind).cloned().collect() };
    // The key lives in the operator's namespace, out of every team's reach.
    let [secret] = &of("Secret")[..] else {
        panic!("one Secret")
    };
    assert_eq!(secret["metadata"]["namespace"], "dbops-system");
    // The harness already keeps its emulator's key under the same name and
    // key there, which the example's provider reads.
    assert_eq!(secret["metadata"]["name"], "infrai-credentials");
    assert!(secret["stringData"]["apiKey"].is_string());
    let [provider] = &of("DatabaseProvider")[..] else {
        panic!("one DatabaseProvider")
    };
    let mut provider: DatabaseProvider = serde_json::from_value(provider.clone()).unwrap();
    provider.spec.endpoint = Some(h.emulator_url.clone());
    Api::<DatabaseProvider>::all(h.client.clone())
        .create(&PostParams::default(), &provider)
        .await
        .unwrap();
    for ns in of("Namespace") {
        let ns: Namespace = serde_json::from_value(ns).unwrap();
        Api::<Namespace>::all(h.client.clone())
            .create(&PostParams::default(), &ns)
            .await
            .unwrap();
    }
    namespace(&h, "team-c", json!({})).await;

    // Team A's project, as the example has it, goes Ready.
    let [project_doc] = &of("DatabaseProject")[..] else {
        panic!("one DatabaseProject")
    };
    assert_eq!(project_doc["metadata"]["namespace"], A);
    create_in::<DatabaseProject>(&h, A, project_doc.clone()).await;
    let orders = ready_in::<DatabaseProject>(&h, A, "orders").await;
    let id = orders.status.unwrap().project_id.unwrap();

    // A namespace without the label is not admitted.
    let shared = |name: &str, extra: Value| {
        let mut v = json!({ "metadata": { "name": name }, "spec": { "providerRef": { "name": "shared" } } });
        for (k, val) in extra.as_object().unwrap() {
            v["spec"][k] = val.clone();
        }
        v
    };
    create_in::<DatabaseProject>(&h, "team-c", shared("shop", json!({}))).await;
    let err = reconcile_in::<DatabaseProject>(&h, "team-c", "shop")
        .await
        .unwrap_err();
    assert_eq!(err.category(), "ProviderNotAllowed");
    // A labelled team may create, but not adopt: adoption stays with the
    // platform team's namespace.
    create_in::<DatabaseProject>(&h, B, shared("stolen", json!({ "externalId": id }))).await;
    let err = reconcile_in::<DatabaseProject>(&h, B, "stolen")
        .await
        .unwrap_err();
    assert_eq!(err.category(), "AdoptionNotAllowed");
    create_in::<DatabaseProject>(&h, B, shared("own", json!({}))).await;
    ready_in::<DatabaseProject>(&h, B, "own").await;
    assert_eq!(h.emulator.infrai.projects().len(), 2, "A's and B's own");
    delete_in::<DatabaseProject>(&h, "team-c", "shop").await;
    delete_in::<DatabaseProject>(&h, B, "stolen").await;
    assert!(h.emulator.infrai.projects().iter().any(|p| p.id == id));
}
