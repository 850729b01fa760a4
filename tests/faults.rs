//! Vendor faults: with 429s (Retry-After), 500/503s, latency, timeouts and
//! responses dropped after the change was applied, every controller still
//! converges, with exactly one vendor object per resource and no orphan.

mod support;

use std::time::{Duration, Instant};

use dbops::api::v1alpha1::{DatabaseBranch, DatabaseProject, DatabaseSnapshot};
use dbops::controllers::{Managed, Settings};
use dbops::emulator::faults::FaultConfig;
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use serde_json::json;
use support::{Harness, NS};

const PROJECTS: usize = 12;

async fn wait<F, Fut>(what: &str, within: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + within;
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn controllers_converge_through_vendor_faults_without_duplicates_or_orphans() {
    let h = Harness::new().await;
    let faults = h.emulator.faults_of("infrai").unwrap();
    faults.set(FaultConfig {
        rate_limit: 0.15,
        retry_after_seconds: 1,
        server_error: 0.15,
        timeout: 0.02,
        timeout_seconds: 7,
        drop_after_apply: 0.2,
        latency_ms: 5,
    });
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let options = dbops::operator::Options {
        settings: Settings {
            base_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(2),
            ..Settings::default()
        },
        ..Default::default()
    };
    let task = tokio::spawn(dbops::operator::run(
        h.client.clone(),
        options,
        async move {
            let _ = stopped.await;
        },
    ));
    let pp = PostParams::default();
    let projects: Api<DatabaseProject> = Api::namespaced(h.client.clone(), NS);
    let branches: Api<DatabaseBranch> = Api::namespaced(h.client.clone(), NS);
    let snapshots: Api<DatabaseSnapshot> = Api::namespaced(h.client.clone(), NS);
    for i in 0..PROJECTS {
        let project = json!({ "metadata": { "name": format!("p{i}") }, "spec": {} });
        projects
            .create(&pp, &serde_json::from_value(project).unwrap())
            .await
            .unwrap();
        let branch = json!({ "metadata": { "name": format!("b{i}") }, "spec": { "projectRef": { "name": format!("p{i}") } } });
        branches
            .create(&pp, &serde_json::from_value(branch).unwrap())
            .await
            .unwrap();
        if i % 3 == 0 {
            let snapshot = json!({ "metadata": { "name": format!("s{i}") }, "spec": { "projectRef": { "name": format!("p{i}") } } });
            snapshots
                .create(&pp, &serde_json::from_value(snapshot).unwrap())
                .await
                .unwrap();
        }
    }
    wait("every resource Ready", Duration::from_secs(120), || async {
        let p = projects.list(&ListParams::default()).await.unwrap().items;
        let b = branches.list(&ListParams::default()).await.unwrap().items;
        let s = snapshots.list(&ListParams::default()).await.unwrap().items;
        p.iter().all(|x| x.is_ready())
            && b.iter().all(|x| x.is_ready())
            && s.iter().all(|x| x.is_ready())
    })
    .await;
    let injected = faults.injected();
    println!(
        "faults: {injected} injected over {} vendor requests",
        faults.requests()
    );
    assert!(injected >= 10, "the run really met faults ({injected})");

    // Exactly one vendor object per resource.
    assert_eq!(
        h.emulator.infrai.projects().len(),
        PROJECTS,
        "no duplicate project"
    );
    assert_eq!(
        h.emulator.infrai.branch_count(),
        PROJECTS * 2,
        "one branch each, plus the default branches"
    );
    assert_eq!(h.emulator.infrai.snapshot_count(), PROJECTS.div_ceil(3));
    for p in projects.list(&ListParams::default()).await.unwrap().items {
        let id = p.status.unwrap().project_id.unwrap();
        assert!(
            h.emulator.infrai.projects().iter().any(|v| v.id == id),
            "status points at a live project"
        );
    }

    // Delete everything, still under faults: nothing is left at the vendor.
    for i in 0..PROJECTS {
        branches
            .delete(&format!("b{i}"), &DeleteParams::default())
            .await
            .unwrap();
        projects
            .delete(&format!("p{i}"), &DeleteParams::default())
            .await
            .unwrap();
        if i % 3 == 0 {
            snapshots
                .delete(&format!("s{i}"), &DeleteParams::default())
                .await
                .unwrap();
        }
    }
    wait("every resource gone", Duration::from_secs(120), || async {
        projects
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .is_empty()
            && branches
                .list(&ListParams::default())
                .await
                .unwrap()
                .items
                .is_empty()
            && snapshots
                .list(&ListParams::default())
                .await
                .unwrap()
                .items
                .is_empty()
    })
    .await;
    assert!(
        h.emulator.infrai.projects().is_empty(),
        "no orphaned vendor project"
    );
    assert_eq!(h.emulator.infrai.branch_count(), 0);
    let _ = stop.send(());
    let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
}

#[tokio::test]
async fn faults_can_be_set_over_http_and_429_carries_retry_after() {
    let h = Harness::new().await;
    let base = h.emulator_url.trim_end_matches("/infrai").to_string();
    let http = reqwest::Client::new();
    let faults = h.emulator.faults_of("infrai").unwrap();
    let fault = json!({ "rateLimit": 1.0, "retryAfterSeconds": 7 });
    // Without a key, or with a key that is not infrai's, nothing is set.
    let unauthenticated = http
        .put(format!("{base}/_faults/infrai"))
        .json(&fault)
        .send()
        .await
        .unwrap();
    assert_eq!(unauthenticated.status(), 401);
    let other_api = http
        .put(format!("{base}/_faults/infrai"))
        .bearer_auth(support::DB9_KEY)
        .json(&fault)
        .send()
        .await
        .unwrap();
    assert_eq!(other_api.status(), 403);
    assert_eq!(faults.config(), FaultConfig::default(), "nothing was set");
    // With infrai's key (the same Bearer header the API asks for), it is.
    let set = http
        .put(format!("{base}/_faults/infrai"))
        .bearer_auth(support::API_KEY)
        .json(&fault)
        .send()
        .await
        .unwrap();
    assert_eq!(set.status(), 204);
    assert_eq!(faults.config().rate_limit, 1.0);
    let response = http
        .get(format!("{}/v1/db/project/list", h.emulator_url))
        .bearer_auth(support::API_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 429);
    assert_eq!(response.headers()["retry-after"], "7");
    assert_eq!(
        http.put(format!("{base}/_faults/nope"))
            .bearer_auth(support::API_KEY)
            .json(&json!({}))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
}
