//! The whole operator (`dbops::operator::run`: watches, queues, finalizers)
//! against the in-memory Kubernetes API and the infrai emulator.

mod support;

use std::time::Duration;

use dbops::api::v1alpha1::{
    DatabaseBranch, DatabaseBranchSpec, DatabaseProject, DatabaseProjectSpec, DatabaseSnapshot,
    DatabaseSnapshotSpec, DeletionPolicy, LocalObjectRef, RestoreSource,
};
use dbops::controllers::Managed;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, DeleteParams, PostParams};
use support::{Harness, NS, start_operator, start_operator_full, wait_for};

fn is_ready(p: &DatabaseProject) -> bool {
    p.status
        .as_ref()
        .is_some_and(|s| s.conditions.is_true("Ready"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_to_ready_then_delete_through_the_running_operator() {
    let h = Harness::new().await;
    let (stop, task) = start_operator(&h);
    let projects: Api<DatabaseProject> = Api::namespaced(h.client.clone(), NS);
    let secrets: Api<Secret> = Api::namespaced(h.client.clone(), NS);
    projects
        .create(
            &PostParams::default(),
            &DatabaseProject::new("shop", DatabaseProjectSpec::default()),
        )
        .await
        .unwrap();

    let ready = wait_for("Ready", || async {
        projects.get_opt("shop").await.unwrap().filter(is_ready)
    })
    .await;
    assert_eq!(h.emulator.infrai.projects().len(), 1);
    let secret = secrets.get("shop-connection").await.unwrap();
    assert!(secret.data.unwrap().contains_key("uri"));
    assert_eq!(
        ready.status.unwrap().observed_generation,
        ready.metadata.generation
    );

    // Someone deletes the Secret: the owned-Secret watch puts it back promptly.
    secrets
        .delete("shop-connection", &DeleteParams::default())
        .await
        .unwrap();
    wait_for("Secret restored", || async {
        secrets.get_opt("shop-connection").await.unwrap()
    })
    .await;

    projects
        .delete("shop", &DeleteParams::default())
        .await
        .unwrap();
    wait_for("resource gone", || async {
        projects
            .get_opt("shop")
            .await
            .unwrap()
            .is_none()
            .then_some(())
    })
    .await;
    assert!(
        h.emulator.infrai.projects().is_empty(),
        "vendor project deleted"
    );

    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("operator stops on shutdown")
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_project_waiting_for_its_provider_starts_as_soon_as_the_provider_appears() {
    let h = Harness::bare().await;
    h.create_provider_secret(support::API_KEY).await;
    let (stop, _task) = start_operator(&h);
    let projects: Api<DatabaseProject> = Api::namespaced(h.client.clone(), NS);
    projects
        .create(
            &PostParams::default(),
            &DatabaseProject::new("early", DatabaseProjectSpec::default()),
        )
        .await
        .unwrap();
    wait_for("ProviderNotFound", || async {
        projects.get_opt("early").await.unwrap().filter(|p| {
            p.status.as_ref().is_some_and(|s| {
                s.conditions
                    .get("Stalled")
                    .is_some_and(|c| c.reason == "ProviderNotFound")
            })
        })
    })
    .await;
    // The stalled re-check is minutes away; only the provider watch can make this prompt.
    let started = std::time::Instant::now();
    h.create_provider("default", &h.emulator_url).await;
    wait_for("Ready", || async {
        projects.get_opt("early").await.unwrap().filter(is_ready)
    })
    .await;
    assert!(started.elapsed() < Duration::from_secs(10));
    let _ = stop.send(());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn branches_snapshots_and_restores_follow_their_parents_promptly() {
    let h = Harness::new().await;
    let (stop, _task) = start_operator(&h);
    let pp = PostParams::default();
    let projects: Api<DatabaseProject> = Api::namespaced(h.client.clone(), NS);
    let branches: Api<DatabaseBranch> = Api::namespaced(h.client.clone(), NS);
    let snapshots: Api<DatabaseSnapshot> = Api::namespaced(h.client.clone(), NS);
    let started = std::time::Instant::now();
    // Applied children first, parents last, as a GitOps sync may do.
    let restore = DatabaseProject::new(
        "restored",
        DatabaseProjectSpec {
            restore_from: Some(RestoreSource {
                snapshot_ref: Some(LocalObjectRef {
                    name: "nightly".into(),
                }),
                snapshot_id: None,
            }),
            ..Default::default()
        },
    );
    projects.create(&pp, &restore).await.unwrap();
    let branch = DatabaseBranch::new(
        "preview",
        DatabaseBranchSpec {
            project_ref: LocalObjectRef {
                name: "shop".into(),
            },
            branch_name: None,
            from_branch_ref: None,
            from_branch: None,
            external_id: None,
            deletion_policy: Some(DeletionPolicy::Delete),
            write_connection_secret_to: None,
            credential_rotation: None,
            expire_after: None,
            data: None,
            reset_schedule: None,
        },
    );
    branches.create(&pp, &branch).await.unwrap();
    let snapshot = DatabaseSnapshot::new(
        "nightly",
        DatabaseSnapshotSpec {
            project_ref: LocalObjectRef {
                name: "shop".into(),
            },
            label: None,
            external_id: None,
            deletion_policy: Some(DeletionPolicy::Delete),
        },
    );
    snapshots.create(&pp, &snapshot).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    projects
        .create(
            &pp,
            &DatabaseProject::new("shop", DatabaseProjectSpec::default()),
        )
        .await
        .unwrap();

    // The resync period is 10 minutes: only the cross-kind watches can make these prompt.
    wait_for("branch Ready", || async {
        branches
            .get_opt("preview")
            .await
            .unwrap()
            .filter(|b| b.is_ready())
    })
    .await;
    wait_for("snapshot Ready", || async {
        snapshots
            .get_opt("nightly")
            .await
            .unwrap()
            .filter(|s| s.is_ready())
    })
    .await;
    wait_for("restore Ready", || async {
        projects.get_opt("restored").await.unwrap().filter(is_ready)
    })
    .await;
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "took {:?}",
        started.elapsed()
    );
    assert_eq!(h.emulator.infrai.projects().len(), 2);

    // Deleting the project: the branch reports it promptly.
    projects
        .delete("shop", &DeleteParams::default())
        .await
        .unwrap();
    wait_for("branch Stalled ProjectDeleted", || async {
        branches.get_opt("preview").await.unwrap().filter(|b| {
            b.status.as_ref().is_some_and(|s| {
                s.conditions
                    .get("Stalled")
                    .is_some_and(|c| c.reason == "ProjectDeleted")
            })
        })
    })
    .await;
    let _ = stop.send(());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_turns_ready_once_every_watch_has_synced() {
    let h = Harness::new().await;
    let metrics = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let (_stop, _task) = support::start_operator_with(&h, Some(metrics));
    wait_for("/readyz 200", || async {
        let ready = reqwest::get(format!("http://{metrics}/readyz"))
            .await
            .ok()?;
        (ready.status().as_u16() == 200).then_some(())
    })
    .await;
}

/// A provider whose request budget is spent must not hold the reconcile slots:
/// objects of other providers keep going (issue 11: non-blocking budget).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_throttled_provider_does_not_starve_the_others() {
    use dbops::api::v1alpha1::RequestBudget;
    use dbops::controllers::Settings;

    let h = Harness::new().await;
    // A second provider on the same emulator, allowed two requests per second.
    let providers: Api<dbops::api::v1alpha1::DatabaseProvider> = Api::all(h.client.clone());
    let mut slow = providers.get("default").await.unwrap();
    slow.metadata = kube::api::ObjectMeta {
        name: Some("slow".into()),
        ..Default::default()
    };
    slow.spec.request_budget = Some(RequestBudget {
        requests_per_second: 2,
        burst: Some(1),
    });
    providers
        .create(&PostParams::default(), &slow)
        .await
        .unwrap();

    let projects: Api<DatabaseProject> = Api::namespaced(h.client.clone(), NS);
    let slow_names: Vec<String> = (0..6).map(|i| format!("slow-{i}")).collect();
    for name in &slow_names {
        let mut p = DatabaseProject::new(name, DatabaseProjectSpec::default());
        p.spec.provider_ref.name = "slow".into();
        projects.create(&PostParams::default(), &p).await.unwrap();
    }
    // One reconcile at a time: a slot parked on the slow provider's budget
    // would hold everything behind it.
    let (stop, task) = support::start_operator_full(
        &h,
        None,
        Settings {
            base_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(1),
            concurrency: 1,
            ..Settings::default()
        },
    );
    // In progress: marked for its create (the finalizer and the mark go on in
    // one write just before the vendor call, which the budget then holds).
    wait_for("a slow project in progress", || async {
        projects
            .list(&Default::default())
            .await
            .unwrap()
            .items
            .iter()
            .any(|p| p.metadata.finalizers.is_some())
            .then_some(())
    })
    .await;
    projects
        .create(
            &PostParams::default(),
            &DatabaseProject::new("fast", DatabaseProjectSpec::default()),
        )
        .await
        .unwrap();
    let slow_ready_when_fast_was = wait_for("the fast project Ready", || async {
        let all = projects.list(&Default::default()).await.unwrap().items;
        let fast = all
            .iter()
            .find(|p| p.metadata.name.as_deref() == Some("fast"))?;
        fast.is_ready()
            .then(|| all.iter().filter(|p| p.is_ready()).count() - 1)
    })
    .await;
    // Not starved: Ready while the throttled ones still trickle through at
    // 2 a second (how many got there first depends on the machine's load).
    assert!(
        slow_ready_when_fast_was < slow_names.len() - 1,
        "the fast provider's project waited behind {slow_ready_when_fast_was} throttled ones"
    );
    // The throttled ones still all get there, quietly: no Warning about the budget.
    wait_for("every slow project Ready", || async {
        projects
            .list(&Default::default())
            .await
            .unwrap()
            .items
            .iter()
            .all(|p| p.is_ready())
            .then_some(())
    })
    .await;
    for name in &slow_names {
        assert!(
            !h.event_reasons(name)
                .iter()
                .any(|r| r == "RequestBudgetExhausted"),
            "{:?}",
            h.event_reasons(name)
        );
    }
    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .unwrap()
        .unwrap();
}

/// Whether `obj`'s `Ready` condition is False for `reason`.
fn failing_with<K: Managed>(obj: &K, reason: &str) -> bool {
    obj.status().is_some_and(|s| {
        K::conditions(s)
            .get("Ready")
            .is_some_and(|r| r.status == "False" && r.reason == reason)
    })
}

/// Every kind watches its provider: fixing a broken provider makes each
/// dependent retry at once, instead of after its error backoff (here a
/// minute, so only the provider watch can make the wait short).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_kind_retries_at_once_when_its_provider_is_fixed() {
    use dbops::api::v1alpha1::DatabaseProvider;
    use dbops::api::v1alpha1::{ByokBinding, ByokCredential, ByokCredentialSpec, ProviderRef};
    use kube::api::{Patch, PatchParams};

    let h = Harness::new().await;
    let (stop, _task) = start_operator_full(
        &h,
        None,
        dbops::controllers::Settings {
            base_backoff: Duration::from_secs(60),
            max_backoff: Duration::from_secs(120),
            ..Default::default()
        },
    );
    let pp = PostParams::default();
    let projects: Api<DatabaseProject> = Api::namespaced(h.client.clone(), NS);
    let branches: Api<DatabaseBranch> = Api::namespaced(h.client.clone(), NS);
    let snapshots: Api<DatabaseSnapshot> = Api::namespaced(h.client.clone(), NS);
    let byok: Api<ByokCredential> = Api::namespaced(h.client.clone(), NS);
    let providers: Api<DatabaseProvider> = Api::all(h.client.clone());
    projects
        .create(
            &pp,
            &DatabaseProject::new("shop", DatabaseProjectSpec::default()),
        )
        .await
        .unwrap();
    wait_for("shop Ready", || async {
        projects.get_opt("shop").await.unwrap().filter(is_ready)
    })
    .await;

    // The provider breaks (a port nothing listens on); new dependents fail.
    let endpoint = |url: &str| Patch::Merge(serde_json::json!({ "spec": { "endpoint": url } }));
    providers
        .patch(
            "default",
            &PatchParams::default(),
            &endpoint("http://127.0.0.1:1/infrai"),
        )
        .await
        .unwrap();
    projects
        .create(
            &pp,
            &DatabaseProject::new("late", DatabaseProjectSpec::default()),
        )
        .await
        .unwrap();
    branches
        .create(&pp, &support::branch("preview", "shop"))
        .await
        .unwrap();
    let snapshot = DatabaseSnapshot::new(
        "nightly",
        DatabaseSnapshotSpec {
            project_ref: LocalObjectRef {
                name: "shop".into(),
            },
            label: None,
            external_id: None,
            deletion_policy: Some(DeletionPolicy::Delete),
        },
    );
    snapshots.create(&pp, &snapshot).await.unwrap();
    // Once these fail, every watch cache has the broken provider (a
    // credential made sooner could still be registered with the old one).
    wait_for("the first dependents failing", || async {
        let late = projects.get_opt("late").await.unwrap();
        late.is_some_and(|o| failing_with(&o, "VendorUnreachable"))
            .then_some(())
    })
    .await;
    let key: Secret = serde_json::from_value(serde_json::json!({
        "metadata": { "name": "neon-key" },
        "stringData": { "api_key": "sk-live-1" },
    }))
    .unwrap();
    Api::<Secret>::namespaced(h.client.clone(), NS)
        .create(&pp, &key)
        .await
        .unwrap();
    let credential = ByokCredential::new(
        "neon",
        ByokCredentialSpec {
            provider_ref: ProviderRef::default(),
            vendor: "neon".into(),
            alias: "team-a-neon".into(),
            credentials_secret_ref: LocalObjectRef {
                name: "neon-key".into(),
            },
            enabled: true,
            bindings: vec![ByokBinding {
                capability: None,
                module: Some("db".into()),
                model: None,
            }],
            quota: None,
            test_interval: None,
            deletion_policy: DeletionPolicy::Delete,
        },
    );
    byok.create(&pp, &credential).await.unwrap();
    wait_for("every dependent failing", || async {
        let late = projects.get_opt("late").await.unwrap();
        let preview = branches.get_opt("preview").await.unwrap();
        let nightly = snapshots.get_opt("nightly").await.unwrap();
        let neon = byok.get_opt("neon").await.unwrap();
        (late.is_some_and(|o| failing_with(&o, "VendorUnreachable"))
            && preview.is_some_and(|o| failing_with(&o, "VendorUnreachable"))
            && nightly.is_some_and(|o| failing_with(&o, "VendorUnreachable"))
            && neon.is_some_and(|o| failing_with(&o, "VendorUnreachable")))
        .then_some(())
    })
    .await;

    // Fixed: all four go Ready long before a 45 s (60 s - 25%) backoff ends.
    let fixed = std::time::Instant::now();
    providers
        .patch(
            "default",
            &PatchParams::default(),
            &endpoint(&h.emulator_url),
        )
        .await
        .unwrap();
    wait_for("every dependent Ready", || async {
        let late = projects.get_opt("late").await.unwrap();
        let preview = branches.get_opt("preview").await.unwrap();
        let nightly = snapshots.get_opt("nightly").await.unwrap();
        let neon = byok.get_opt("neon").await.unwrap();
        (late.is_some_and(|o| o.is_ready())
            && preview.is_some_and(|o| o.is_ready())
            && nightly.is_some_and(|o| o.is_ready())
            && neon.is_some_and(|o| o.is_ready()))
        .then_some(())
    })
    .await;
    // wait_for gives up after 15 s, well inside the backoff; say how long it took.
    eprintln!("every dependent Ready {:?} after the fix", fixed.elapsed());
    let _ = stop.send(());
}
