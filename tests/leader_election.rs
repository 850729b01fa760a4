//! High availability: several operator instances against one (in-memory)
//! Kubernetes API; only the Lease holder reconciles, a clean shutdown hands
//! over at once, and a killed leader is replaced once its Lease expires.

mod support;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use dbops::api::v1alpha1::{DatabaseProject, DatabaseProjectSpec};
use dbops::controllers::{Managed, Settings};
use dbops::operator::{LeaderElection, Options};
use k8s_openapi::api::coordination::v1::Lease;
use kube::api::{Api, PostParams};
use support::{Harness, NS};
use tokio::sync::oneshot;

const LEASE: &str = "dbops-leader";

fn election(identity: &str) -> LeaderElection {
    LeaderElection {
        lease_name: LEASE.into(),
        lease_namespace: support::PROVIDER_NAMESPACE.into(),
        identity: identity.into(),
        lease_duration: Duration::from_secs(2),
        renew_grace: Duration::from_secs(1),
    }
}

fn start(h: &Harness, identity: &str) -> (oneshot::Sender<()>, tokio::task::JoinHandle<()>) {
    let (stop, stopped) = oneshot::channel::<()>();
    let options = Options {
        settings: Settings {
            base_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(1),
            ..Settings::default()
        },
        instance: Some(identity.into()),
        leader_election: Some(election(identity)),
        ..Default::default()
    };
    let task = tokio::spawn(dbops::operator::run(
        h.client.clone(),
        options,
        async move {
            let _ = stopped.await;
        },
    ));
    (stop, task)
}

async fn holder(h: &Harness) -> Option<String> {
    let leases: Api<Lease> = Api::namespaced(h.client.clone(), support::PROVIDER_NAMESPACE);
    leases.get_opt(LEASE).await.unwrap()?.spec?.holder_identity
}

async fn wait_for_holder(h: &Harness, not: Option<&str>, within: Duration) -> String {
    let deadline = Instant::now() + within;
    loop {
        if let Some(who) = holder(h).await
            && Some(who.as_str()) != not
        {
            return who;
        }
        assert!(Instant::now() < deadline, "no new leader within {within:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn create_and_wait_ready(h: &Harness, name: &str) {
    let projects: Api<DatabaseProject> = Api::namespaced(h.client.clone(), NS);
    projects
        .create(
            &PostParams::default(),
            &DatabaseProject::new(name, DatabaseProjectSpec::default()),
        )
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !projects.get(name).await.unwrap().is_ready() {
        assert!(Instant::now() < deadline, "{name} never became Ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The instances that reported Events about `name`, once one has (Events
/// are written after the status that makes the object Ready).
async fn reporters(h: &Harness, name: &str) -> std::collections::BTreeSet<String> {
    support::wait_for(&format!("an Event about {name}"), || async {
        let seen = reported(h, name);
        (!seen.is_empty()).then_some(seen)
    })
    .await
}

/// The instances that reported Events about `name` so far.
fn reported(h: &Harness, name: &str) -> std::collections::BTreeSet<String> {
    h.kube
        .objects("apis/events.k8s.io/v1/events")
        .into_iter()
        .filter(|e| e["regarding"]["name"].as_str() == Some(name))
        .filter_map(|e| e["reportingInstance"].as_str().map(str::to_string))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_leader_reconciles_and_a_clean_shutdown_hands_over_at_once() {
    let h = Harness::new().await;
    let (stop_a, task_a) = start(&h, "instance-a");
    let (stop_b, task_b) = start(&h, "instance-b");
    let leader = wait_for_holder(&h, None, Duration::from_secs(10)).await;

    create_and_wait_ready(&h, "first").await;
    assert_eq!(
        reporters(&h, "first").await,
        [leader.clone()].into(),
        "only the leader reconciled"
    );
    assert_eq!(h.emulator.infrai.projects().len(), 1);

    // The leader shuts down cleanly: it releases the Lease and the standby takes over at once.
    let started = Instant::now();
    let (stop_leader, task_leader, stop_other, task_other) = if leader == "instance-a" {
        (stop_a, task_a, stop_b, task_b)
    } else {
        (stop_b, task_b, stop_a, task_a)
    };
    stop_leader.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(10), task_leader)
        .await
        .unwrap()
        .unwrap();
    let next = wait_for_holder(&h, Some(&leader), Duration::from_secs(10)).await;
    let handover = started.elapsed();
    assert_ne!(next, leader);
    assert!(
        handover < Duration::from_secs(2),
        "hand-over took {handover:?}, not immediate"
    );

    create_and_wait_ready(&h, "second").await;
    assert_eq!(reporters(&h, "second").await, [next].into());
    assert_eq!(
        h.emulator.infrai.projects().len(),
        2,
        "no duplicate from two instances"
    );
    let _ = stop_other.send(());
    let _ = tokio::time::timeout(Duration::from_secs(10), task_other).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_leader_is_replaced_when_its_lease_expires() {
    let h = Harness::new().await;
    // The first leader is a separate `dbops run` process, so it can be killed outright.
    let kubeconfig = std::env::temp_dir().join(format!("dbops-le-{}.yaml", std::process::id()));
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: f\n  cluster:\n    server: {}\nusers:\n- name: f\n  user: {{}}\ncontexts:\n- name: f\n  context:\n    cluster: f\n    user: f\ncurrent-context: f\n",
            h.kube.url
        ),
    )
    .unwrap();
    let mut doomed = Command::new(env!("CARGO_BIN_EXE_dbops"))
        .args([
            "run",
            "--emulator=false",
            "--metrics-listen",
            "127.0.0.1:0",
            "--leader-election=true",
            "--lease-namespace",
            support::PROVIDER_NAMESPACE,
            "--lease-duration",
            "2s",
        ])
        .env("KUBECONFIG", &kubeconfig)
        .env("POD_NAME", "doomed")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    assert_eq!(
        wait_for_holder(&h, None, Duration::from_secs(20)).await,
        "doomed"
    );
    let (stop, task) = start(&h, "survivor");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        holder(&h).await.as_deref(),
        Some("doomed"),
        "the standby does not steal a live Lease"
    );

    doomed.kill().unwrap();
    let _ = doomed.wait();
    let killed = Instant::now();
    assert_eq!(
        wait_for_holder(&h, Some("doomed"), Duration::from_secs(15)).await,
        "survivor"
    );
    let takeover = killed.elapsed();
    println!(
        "leader election: standby took over {takeover:?} after the leader was killed (lease 2s)"
    );
    assert!(takeover < Duration::from_secs(6), "took {takeover:?}");
    create_and_wait_ready(&h, "after-failover").await;
    assert_eq!(
        reporters(&h, "after-failover").await,
        ["survivor".to_string()].into()
    );
    let _ = stop.send(());
    let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
    let _ = std::fs::remove_file(kubeconfig);
}
