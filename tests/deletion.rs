//! Deletion that always finishes, with the running operator against the
//! in-memory API: everything deleted at once (a `kubectl delete -f` of a
//! directory, a GitOps prune), a namespace deleted with the provider's Secret
//! inside it, a provider being deleted while new resources name it, and a
//! resource caught mid-create while its namespace terminates.

mod support;

use dbops::api::v1alpha1::{
    DatabaseBranch, DatabaseProject, DatabaseProjectSpec, DatabaseProvider, ProviderApi,
    ProviderRef,
};
use dbops::controllers::protection::DEFAULT_FINALIZER;
use dbops::controllers::{FINALIZER, Managed, ReconcileError};
use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use serde_json::json;
use support::{Harness, NS, PROVIDER_NAMESPACE, branch, start_operator, wait_for, wait_gone};

fn project(name: &str) -> DatabaseProject {
    DatabaseProject::new(name, DatabaseProjectSpec::default())
}

async fn create_namespace(h: &Harness, name: &str) {
    let namespaces: Api<Namespace> = Api::all(h.client.clone());
    let ns: Namespace = serde_json::from_value(json!({ "metadata": { "name": name } })).unwrap();
    namespaces
        .create(&PostParams::default(), &ns)
        .await
        .unwrap();
}

fn reasons(h: &Harness) -> Vec<String> {
    h.kube
        .objects("apis/events.k8s.io/v1/events")
        .into_iter()
        .filter_map(|e| e["reason"].as_str().map(str::to_string))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provider_secret_and_resources_deleted_at_once_all_go_and_nothing_is_orphaned() {
    let h = Harness::new().await;
    let (_stop, _task) = start_operator(&h);
    let projects: Api<DatabaseProject> = Api::namespaced(h.client.clone(), NS);
    let branches: Api<DatabaseBranch> = Api::namespaced(h.client.clone(), NS);
    let providers: Api<DatabaseProvider> = Api::all(h.client.clone());
    let secrets: Api<Secret> = Api::namespaced(h.client.clone(), PROVIDER_NAMESPACE);
    let pp = PostParams::default();
    projects.create(&pp, &project("shop")).await.unwrap();
    projects.create(&pp, &project("blog")).await.unwrap();
    branches
        .create(&pp, &branch("shop-preview", "shop"))
        .await
        .unwrap();
    wait_for("everything Ready", || async {
        let ready = projects.get("shop").await.unwrap().is_ready()
            && projects.get("blog").await.unwrap().is_ready()
            && branches.get("shop-preview").await.unwrap().is_ready();
        ready.then_some(())
    })
    .await;
    assert_eq!(h.emulator.infrai.projects().len(), 2);
    // In use: the provider and its Secret are protected.
    let has = |finalizers: &[String]| finalizers.iter().any(|f| f == DEFAULT_FINALIZER);
    wait_for("protection", || async {
        let p = providers.get("default").await.unwrap();
        let s = secrets.get("infrai-credentials").await.unwrap();
        (has(p.finalizers()) && has(s.finalizers())).then_some(())
    })
    .await;

    // `kubectl delete -f dir/`: the provider and its Secret go first.
    let dp = DeleteParams::default();
    secrets.delete("infrai-credentials", &dp).await.unwrap();
    providers.delete("default", &dp).await.unwrap();
    projects.delete("shop", &dp).await.unwrap();
    branches.delete("shop-preview", &dp).await.unwrap();
    projects.delete("blog", &dp).await.unwrap();

    wait_for("every object gone", || async {
        let gone = projects.get_opt("shop").await.unwrap().is_none()
            && projects.get_opt("blog").await.unwrap().is_none()
            && branches.get_opt("shop-preview").await.unwrap().is_none()
            && providers.get_opt("default").await.unwrap().is_none()
            && secrets
                .get_opt("infrai-credentials")
                .await
                .unwrap()
                .is_none();
        gone.then_some(())
    })
    .await;
    assert!(
        h.emulator.infrai.projects().is_empty(),
        "every vendor project was deleted"
    );
    let reasons = reasons(&h);
    for bad in [
        "ProviderNotFound",
        "CredentialsMissing",
        "VendorCleanupSkipped",
    ] {
        assert!(!reasons.iter().any(|r| r == bad), "{bad} in {reasons:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_namespace_with_the_providers_secret_inside_finishes() {
    let h = Harness::bare().await;
    create_namespace(&h, NS).await;
    // The provider reads its key from a Secret in the very namespace deleted.
    let secrets: Api<Secret> = Api::namespaced(h.client.clone(), NS);
    let secret: Secret = serde_json::from_value(json!({
        "metadata": { "name": "creds", "namespace": NS },
        "stringData": { "apiKey": support::API_KEY },
    }))
    .unwrap();
    secrets
        .create(&PostParams::default(), &secret)
        .await
        .unwrap();
    let mut provider: DatabaseProvider = serde_json::from_value(json!({
        "apiVersion": "dbops.dev/v1alpha1", "kind": "DatabaseProvider",
        "metadata": { "name": "default" },
        "spec": { "api": "infrai", "endpoint": h.emulator_url,
                  "credentialsSecretRef": { "name": "creds", "namespace": NS } },
    }))
    .unwrap();
    provider.spec.request_timeout_seconds = 5;
    let providers: Api<DatabaseProvider> = Api::all(h.client.clone());
    providers
        .create(&PostParams::default(), &provider)
        .await
        .unwrap();
    let (_stop, _task) = start_operator(&h);
    let projects: Api<DatabaseProject> = Api::namespaced(h.client.clone(), NS);
    for name in ["a", "b", "c"] {
        projects
            .create(&PostParams::default(), &project(name))
            .await
            .unwrap();
    }
    wait_for("all Ready", || async {
        let list = projects.list(&Default::default()).await.unwrap();
        list.items.iter().all(|p| p.is_ready()).then_some(())
    })
    .await;
    assert_eq!(h.emulator.infrai.projects().len(), 3);

    let namespaces: Api<Namespace> = Api::all(h.client.clone());
    namespaces
        .delete(NS, &DeleteParams::default())
        .await
        .unwrap();
    wait_gone(&namespaces, NS).await;
    assert!(h.emulator.infrai.projects().is_empty());
    // The provider no longer has dependents: it lost its protection.
    wait_for("provider released", || async {
        let p = providers.get("default").await.unwrap();
        (!p.finalizers().iter().any(|f| f == DEFAULT_FINALIZER)).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_being_deleted_takes_no_new_dependents() {
    let h = Harness::new().await;
    let (_stop, _task) = start_operator(&h);
    let projects: Api<DatabaseProject> = Api::namespaced(h.client.clone(), NS);
    let providers: Api<DatabaseProvider> = Api::all(h.client.clone());
    projects
        .create(&PostParams::default(), &project("old"))
        .await
        .unwrap();
    wait_for("old Ready", || async {
        projects.get("old").await.unwrap().is_ready().then_some(())
    })
    .await;
    providers
        .delete("default", &DeleteParams::default())
        .await
        .unwrap();
    // Still there: "old" uses it.
    assert!(providers.get_opt("default").await.unwrap().is_some());

    projects
        .create(&PostParams::default(), &project("new"))
        .await
        .unwrap();
    let stalled = wait_for("new Stalled", || async {
        let p = projects.get("new").await.unwrap();
        p.status.filter(|s| s.conditions.is_true("Stalled"))
    })
    .await;
    let stalled_reason = stalled.conditions.get("Stalled").unwrap();
    assert_eq!(stalled_reason.reason, "ProviderDeleting");
    assert!(
        stalled_reason.message.contains("is being deleted"),
        "{}",
        stalled_reason.message
    );
    assert_eq!(
        h.emulator.infrai.projects().len(),
        1,
        "nothing new at the vendor"
    );

    // Once "old" is gone, so is the provider; "new" then deletes at once.
    projects
        .delete("old", &DeleteParams::default())
        .await
        .unwrap();
    wait_gone(&providers, "default").await;
    projects
        .delete("new", &DeleteParams::default())
        .await
        .unwrap();
    wait_gone(&projects, "new").await;
    assert!(h.emulator.infrai.projects().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resource_in_a_terminating_namespace_makes_nothing_at_the_vendor() {
    let h = Harness::new().await;
    let projects: Api<DatabaseProject> = Api::namespaced(h.client.clone(), NS);
    projects
        .create(&PostParams::default(), &project("late"))
        .await
        .unwrap();
    // The namespace controller has marked the namespace, but not yet deleted its contents.
    let namespaces: Api<Namespace> = Api::all(h.client.clone());
    let ns: Namespace = serde_json::from_value(json!({
        "metadata": { "name": NS, "deletionTimestamp": "2026-01-01T00:00:00Z" },
        "spec": { "finalizers": ["kubernetes"] },
        "status": { "phase": "Terminating" },
    }))
    .unwrap();
    namespaces
        .create(&PostParams::default(), &ns)
        .await
        .unwrap();

    // Refused before anything is written or sent.
    let error = support::reconcile::<DatabaseProject>(&h, "late")
        .await
        .unwrap_err();
    assert!(error.namespace_terminating(), "{error}");
    assert!(h.emulator.infrai.projects().is_empty(), "nothing created");
    let late = projects.get("late").await.unwrap();
    assert!(
        late.metadata.finalizers.is_none(),
        "nothing to clean up, so no finalizer: {:?}",
        late.metadata.finalizers
    );
    // Quiet: no Warning, nothing for a person to act on.
    assert!(
        h.event_reasons("late").is_empty(),
        "{:?}",
        h.event_reasons("late")
    );
    let action =
        dbops::controllers::error_policy("databaseproject", &project("late"), &error, &h.ctx);
    assert_eq!(
        action,
        kube::runtime::controller::Action::requeue(
            dbops::controllers::NAMESPACE_TERMINATING_RECHECK
        )
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unconfirmed_create_is_cleaned_up_in_a_terminating_namespace_without_writing_secrets() {
    // Supabase takes an operator-chosen password, which normally goes into the
    // connection Secret first; in a namespace being deleted no Secret can be
    // written, and the cleanup must not try.
    let h = Harness::bare().await;
    h.create_provider_for(
        "sb",
        ProviderApi::Supabase,
        support::SUPABASE_KEY,
        Some("org"),
    )
    .await;
    create_namespace(&h, NS).await;
    let projects: Api<DatabaseProject> = Api::namespaced(h.client.clone(), NS);
    let mut p = project("mid-create");
    p.spec.provider_ref = ProviderRef { name: "sb".into() };
    p.metadata.finalizers = Some(vec![FINALIZER.to_string()]);
    projects.create(&PostParams::default(), &p).await.unwrap();
    // A crash right after `createRequested` was saved: no id, no Secret.
    projects
        .patch_status(
            "mid-create",
            &PatchParams::default(),
            &Patch::Merge(json!({ "status": { "createRequested": true } })),
        )
        .await
        .unwrap();
    let namespaces: Api<Namespace> = Api::all(h.client.clone());
    namespaces
        .delete(NS, &DeleteParams::default())
        .await
        .unwrap();
    h.kube.clear_log();

    support::reconcile::<DatabaseProject>(&h, "mid-create")
        .await
        .unwrap();
    assert!(projects.get_opt("mid-create").await.unwrap().is_none());
    assert!(
        namespaces.get_opt(NS).await.unwrap().is_none(),
        "the namespace finished"
    );
    let secret_writes: Vec<_> = h
        .kube
        .requests()
        .into_iter()
        .filter(|r| r.path.contains("/secrets") && r.method != axum::http::Method::GET)
        .collect();
    assert!(secret_writes.is_empty(), "{secret_writes:?}");
    assert!(
        h.emulator.supabase.projects().is_empty(),
        "whatever the lost create made was deleted"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_removed_by_force_does_not_hold_deletion_forever() {
    let h = Harness::new().await;
    let projects: Api<DatabaseProject> = Api::namespaced(h.client.clone(), NS);
    projects
        .create(&PostParams::default(), &project("shop"))
        .await
        .unwrap();
    support::reconcile_until_ready::<DatabaseProject>(&h, "shop", 5).await;
    // Someone strips the protection and deletes provider and Secret.
    let providers: Api<DatabaseProvider> = Api::all(h.client.clone());
    providers
        .patch(
            "default",
            &PatchParams::default(),
            &Patch::Merge(json!({ "metadata": { "finalizers": null } })),
        )
        .await
        .unwrap();
    providers
        .delete("default", &DeleteParams::default())
        .await
        .unwrap();
    projects
        .delete("shop", &DeleteParams::default())
        .await
        .unwrap();

    support::reconcile::<DatabaseProject>(&h, "shop")
        .await
        .unwrap();
    assert!(
        projects.get_opt("shop").await.unwrap().is_none(),
        "deletion finished"
    );
    let notes = h.event_notes("shop");
    assert!(
        notes
            .iter()
            .any(|n| n.contains("could not be deleted; delete it at the vendor")),
        "{notes:?}"
    );
}
