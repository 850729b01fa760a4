//! The Helm chart in a real cluster with a node, as a platform team installs
//! it: the image already loaded on the node, `helm install` into a namespace
//! that enforces Pod Security `restricted`, the project's own
//! `deploy/examples/` applied as written, a leader failover, an upgrade and
//! both kinds of uninstall.
//!
//! It needs a cluster whose pods run, and the image in it:
//!
//! ```sh
//! scripts/build-image.sh                         # target/image/dbops-<version>.tar
//! ctr -n k8s.io images import target/image/dbops-<version>.tar   # or kind load image-archive, k3d image import
//! KUBECONFIG=... DBOPS_E2E_IMAGE=dbops:<version> \
//!   cargo test --test e2e_chart -- --ignored --nocapture
//! ```
//!
//! `helm` comes from `HELM`, else `.tools/helm`, else `PATH`; `kubectl` from
//! `KUBECTL`, else `PATH`. On a cluster without a default StorageClass it
//! makes a hostPath PersistentVolume and installs with
//! `emulator.persistence.storageClassName=-`, as the chart README says.
//! It uses the release `dbops` in `dbops-system` and the examples' own
//! names in `default`, so run it on a cluster of its own. Without
//! `KUBECONFIG` and `DBOPS_E2E_IMAGE` a plain `cargo test` reports it as
//! ignored; asked for with `--ignored`, it fails with "e2e_chart DID NOT RUN".

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use dbops::api::v1alpha1::{
    ByokCredential, DatabaseBranch, DatabaseProject, DatabaseProvider, DatabaseSnapshot,
};
use dbops::controllers::Managed;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod, Secret};
use kube::api::{Api, ListParams};
use kube::{Client, ResourceExt};
use serde_json::Value;

const RELEASE: &str = "dbops";
const NS: &str = "dbops-system";
const EXAMPLES_NS: &str = "default";
const INFRAI_KEY: &str = "ifr_pk_proj_dbops_emulator";
const SELECTOR: &str = "app.kubernetes.io/instance=dbops";

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The image to install (`repository:tag`), or the reason the suite cannot run.
fn require_cluster() -> (String, String) {
    let image = std::env::var("DBOPS_E2E_IMAGE").ok();
    match (std::env::var_os("KUBECONFIG"), image) {
        (Some(_), Some(image)) => {
            dbops::providers::http::ensure_crypto_provider();
            let (repository, tag) = image
                .rsplit_once(':')
                .expect("DBOPS_E2E_IMAGE is repository:tag");
            (repository.to_string(), tag.to_string())
        }
        _ => panic!(
            "e2e_chart DID NOT RUN: it needs KUBECONFIG (a cluster whose pods run) and \
             DBOPS_E2E_IMAGE (an image built by scripts/build-image.sh and loaded there)."
        ),
    }
}

fn run(program: &str, args: &[&str]) -> Result<String, String> {
    let out = Command::new(program)
        .args(args)
        .current_dir(repo())
        .output()
        .unwrap_or_else(|e| panic!("{program} cannot be started: {e}"));
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

fn kubectl_bin() -> String {
    std::env::var("KUBECTL").unwrap_or_else(|_| "kubectl".into())
}

fn kubectl(args: &[&str]) -> String {
    run(&kubectl_bin(), args).unwrap_or_else(|e| panic!("kubectl {}: {e}", args.join(" ")))
}

fn helm_bin() -> String {
    if let Ok(helm) = std::env::var("HELM") {
        return helm;
    }
    let local = repo().join(".tools/helm");
    if local.exists() {
        return local.display().to_string();
    }
    "helm".into()
}

fn helm(args: &[&str]) -> String {
    run(&helm_bin(), args).unwrap_or_else(|e| panic!("helm {}: {e}", args.join(" ")))
}

/// Polls `check` every 100 ms until it returns something, at most `within`.
async fn wait_for<T, F, Fut>(what: &str, within: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out ({within:?}) waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Every dbops object of the examples (kind/name), and whether all are Ready.
async fn examples_state(client: &Client) -> (Vec<String>, bool) {
    async fn kind<K: Managed>(client: &Client, out: &mut Vec<String>, ready: &mut bool) {
        let api: Api<K> = Api::namespaced(client.clone(), EXAMPLES_NS);
        for obj in api.list(&ListParams::default()).await.unwrap().items {
            *ready &= obj.is_ready();
            out.push(format!("{}/{}", K::kind(&()), obj.name_any()));
        }
    }
    let (mut names, mut ready) = (Vec::new(), true);
    kind::<DatabaseProject>(client, &mut names, &mut ready).await;
    kind::<DatabaseBranch>(client, &mut names, &mut ready).await;
    kind::<DatabaseSnapshot>(client, &mut names, &mut ready).await;
    kind::<ByokCredential>(client, &mut names, &mut ready).await;
    (names, ready)
}

/// The vendor ids the examples' statuses record (projects, branches, snapshots).
async fn recorded_ids(client: &Client) -> BTreeSet<String> {
    let mut ids = BTreeSet::new();
    let projects: Api<DatabaseProject> = Api::namespaced(client.clone(), EXAMPLES_NS);
    for p in projects.list(&ListParams::default()).await.unwrap().items {
        ids.extend(p.status.and_then(|s| s.project_id));
    }
    let branches: Api<DatabaseBranch> = Api::namespaced(client.clone(), EXAMPLES_NS);
    for b in branches.list(&ListParams::default()).await.unwrap().items {
        ids.extend(b.status.and_then(|s| s.branch_id));
    }
    let snapshots: Api<DatabaseSnapshot> = Api::namespaced(client.clone(), EXAMPLES_NS);
    for s in snapshots.list(&ListParams::default()).await.unwrap().items {
        ids.extend(s.status.and_then(|s| s.snapshot_id));
    }
    ids
}

/// The project ids the emulator holds, read from its pod (from the node:
/// the emulator's NetworkPolicy admits the node and the operator's pods).
async fn vendor_projects(client: &Client) -> BTreeSet<String> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), NS);
    let list = pods
        .list(&ListParams::default().labels("app.kubernetes.io/name=dbops-emulator"))
        .await
        .unwrap();
    let ip = list
        .items
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .find_map(|p| p.status.as_ref()?.pod_ip.clone())
        .expect("the emulator pod has an IP");
    let body: Value = reqwest::Client::new()
        .get(format!(
            "http://{ip}:8470/infrai/v1/db/project/list?limit=100"
        ))
        .bearer_auth(INFRAI_KEY)
        .send()
        .await
        .expect("the emulator answers from the node")
        .json()
        .await
        .unwrap();
    let mut ids = BTreeSet::new();
    collect_ids(&body, &mut ids);
    ids
}

fn collect_ids(value: &Value, ids: &mut BTreeSet<String>) {
    match value {
        Value::Array(items) => items.iter().for_each(|v| collect_ids(v, ids)),
        Value::Object(map) => {
            if let Some(Value::String(id)) = map.get("id") {
                ids.insert(id.clone());
            }
            map.values()
                .filter(|v| v.is_array() || v.is_object())
                .for_each(|v| collect_ids(v, ids));
        }
        _ => {}
    }
}

/// The Lease holder, once the Lease is held.
async fn leader(client: &Client) -> Option<String> {
    let leases: Api<Lease> = Api::namespaced(client.clone(), NS);
    leases
        .get_opt("dbops-leader")
        .await
        .unwrap()
        .and_then(|l| l.spec?.holder_identity)
        .filter(|h| !h.is_empty())
}

/// Names of the operator's running, Ready pods.
async fn ready_operator_pods(client: &Client) -> Vec<String> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), NS);
    pods.list(&ListParams::default().labels("app.kubernetes.io/name=dbops"))
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter(|p| {
            p.status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
        })
        .map(|p| p.name_any())
        .collect()
}

/// Whether the cluster has a default StorageClass.
fn has_default_storage_class() -> bool {
    kubectl(&[
        "get",
        "storageclass",
        "-o",
        "jsonpath={range .items[*]}{.metadata.annotations.storageclass\\.kubernetes\\.io/is-default-class}{\"\\n\"}{end}",
    ])
    .lines()
    .any(|l| l.trim() == "true")
}

/// `helm install` (or upgrade) arguments for `image`, with `extra` values.
fn install_args<'a>(verb: &'a str, image: &'a (String, String), extra: &[&'a str]) -> Vec<String> {
    let mut args: Vec<String> = vec![
        verb.into(),
        RELEASE.into(),
        "charts/dbops".into(),
        "--namespace".into(),
        NS.into(),
        "--wait".into(),
        "--timeout".into(),
        "3m".into(),
        "--set".into(),
        format!("image.repository={}", image.0),
        "--set".into(),
        format!("image.tag={}", image.1),
        "--set".into(),
        "image.pullPolicy=Never".into(),
        "--set".into(),
        "emulator.enabled=true".into(),
        "--set".into(),
        "leaderElection.leaseDuration=5s".into(),
    ];
    if !has_default_storage_class() {
        args.extend([
            "--set".into(),
            "emulator.persistence.storageClassName=-".into(),
        ]);
    }
    for value in extra {
        args.extend(["--set".into(), (*value).into()]);
    }
    args
}

fn helm_install(verb: &str, image: &(String, String), extra: &[&str]) -> Duration {
    let args = install_args(verb, image, extra);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let started = Instant::now();
    helm(&args);
    started.elapsed()
}

/// A hostPath PersistentVolume for the emulator's claim, on a cluster with
/// no provisioner (what the chart README says to do there).
fn ensure_volume() {
    if has_default_storage_class() {
        return;
    }
    let _ = run(
        &kubectl_bin(),
        &["delete", "pv", "dbops-e2e-emulator", "--wait=true"],
    );
    let path = std::env::temp_dir().join(format!("dbops-e2e-pv-{:08x}", rand::random::<u32>()));
    std::fs::create_dir_all(&path).unwrap();
    // The emulator runs as 65532; the volume must be writable for it.
    let _ = run("chown", &["65532:65532", path.to_str().unwrap()]);
    let pv = format!(
        r#"{{"apiVersion":"v1","kind":"PersistentVolume","metadata":{{"name":"dbops-e2e-emulator"}},
        "spec":{{"capacity":{{"storage":"64Mi"}},"accessModes":["ReadWriteOnce"],
        "persistentVolumeReclaimPolicy":"Retain","storageClassName":"",
        "claimRef":{{"namespace":"{NS}","name":"dbops-emulator"}},
        "hostPath":{{"path":"{}","type":"Directory"}}}}}}"#,
        path.display()
    );
    let file = std::env::temp_dir().join("dbops-e2e-pv.json");
    std::fs::write(&file, pv).unwrap();
    kubectl(&["apply", "-f", file.to_str().unwrap()]);
}

/// Whatever a previous, failed run left: examples, release, namespace.
fn clean_slate() {
    let _ = run(
        &kubectl_bin(),
        &[
            "delete",
            "-f",
            "deploy/examples/",
            "--ignore-not-found",
            "--wait=true",
            "--timeout=60s",
        ],
    );
    let _ = run(
        &helm_bin(),
        &["uninstall", RELEASE, "--namespace", NS, "--wait"],
    );
    let _ = run(
        &kubectl_bin(),
        &[
            "delete",
            "namespace",
            NS,
            "--ignore-not-found",
            "--wait=true",
            "--timeout=120s",
        ],
    );
    let _ = run(
        &kubectl_bin(),
        &[
            "delete",
            "databaseprovider",
            "emulator",
            "--ignore-not-found",
            "--wait=false",
        ],
    );
    let _ = run(
        &kubectl_bin(),
        &["delete", "pv", "dbops-e2e-emulator", "--ignore-not-found"],
    );
    // The tenant roles tests/e2e.rs applies from deploy/dbops.yaml: the
    // chart makes its own and would refuse to take these over.
    let _ = run(
        &kubectl_bin(),
        &[
            "delete",
            "clusterrole",
            "dbops-edit",
            "dbops-view",
            "--ignore-not-found",
        ],
    );
}

/// Every object of the release left in its namespace (and cluster-wide
/// kinds the chart makes), as `kind/name`.
fn release_leftovers() -> Vec<String> {
    let namespaced = kubectl(&[
        "get",
        "deployments,replicasets,pods,services,serviceaccounts,secrets,configmaps,persistentvolumeclaims,roles,rolebindings,jobs,networkpolicies,poddisruptionbudgets",
        "-n",
        NS,
        "-l",
        SELECTOR,
        "-o",
        "name",
    ]);
    let cluster = kubectl(&[
        "get",
        "clusterroles,clusterrolebindings,databaseproviders",
        "-l",
        SELECTOR,
        "-o",
        "name",
    ]);
    namespaced
        .lines()
        .chain(cluster.lines())
        .filter(|l| !l.trim().is_empty())
        .map(str::to_string)
        .collect()
}

/// Samples the examples' readiness every 100 ms until `done` is set; the
/// number of samples in which one was not Ready.
fn watch_ready(
    client: Client,
) -> (
    tokio::sync::watch::Sender<bool>,
    tokio::task::JoinHandle<(u32, u32)>,
) {
    let (stop, mut stopped) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(async move {
        let (mut samples, mut flaps) = (0, 0);
        loop {
            let (_, ready) = examples_state(&client).await;
            samples += 1;
            if !ready {
                flaps += 1;
            }
            tokio::select! {
                _ = stopped.changed() => return (samples, flaps),
                _ = tokio::time::sleep(Duration::from_millis(100)) => {}
            }
        }
    });
    (stop, task)
}

#[tokio::test]
#[ignore = "needs a cluster with a node and the image loaded (KUBECONFIG, DBOPS_E2E_IMAGE)"]
async fn the_chart_on_a_real_node() {
    let image = require_cluster();
    let client = Client::try_default().await.expect("cluster reachable");
    clean_slate();

    // 1. Install into a namespace enforcing Pod Security `restricted`.
    kubectl(&["create", "namespace", NS]);
    kubectl(&[
        "label",
        "namespace",
        NS,
        "pod-security.kubernetes.io/enforce=restricted",
    ]);
    ensure_volume();
    let took = helm_install("install", &image, &[]);
    eprintln!("helm install --wait: {took:?}");
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), NS);
    let operator = deployments.get("dbops").await.unwrap();
    assert_eq!(
        operator.status.and_then(|s| s.ready_replicas),
        Some(2),
        "both replicas Ready"
    );
    let pods = ready_operator_pods(&client).await;
    assert_eq!(pods.len(), 2, "{pods:?}");
    let holder = wait_for("a Lease holder", Duration::from_secs(30), || {
        leader(&client)
    })
    .await;
    assert!(
        pods.contains(&holder),
        "the Lease holder {holder} is one of {pods:?}"
    );

    // 2. The examples, as written, go Ready and get their Secrets.
    let started = Instant::now();
    kubectl(&["apply", "-f", "deploy/examples/"]);
    let names = wait_for("every example Ready", Duration::from_secs(120), || async {
        let (names, ready) = examples_state(&client).await;
        (ready && names.len() == 6).then_some(names)
    })
    .await;
    eprintln!(
        "examples Ready {:?} after apply: {names:?}",
        started.elapsed()
    );
    let secrets: Api<Secret> = Api::namespaced(client.clone(), EXAMPLES_NS);
    for secret in [
        "quickstart-db",
        "quickstart-preview-db",
        "quickstart-restored-db",
        "quickstart-byok-db",
    ] {
        let s = secrets
            .get(secret)
            .await
            .unwrap_or_else(|_| panic!("{secret} written"));
        assert!(
            s.data.unwrap_or_default().contains_key("uri"),
            "{secret} has a uri"
        );
    }
    let ids = recorded_ids(&client).await;
    let vendor = vendor_projects(&client).await;
    assert!(!vendor.is_empty());

    // 3. The leader pod is deleted: the standby takes over, nothing flaps,
    // no vendor object is made again.
    let (stop, flaps) = watch_ready(client.clone());
    let killed = Instant::now();
    kubectl(&["delete", "pod", "-n", NS, &holder, "--wait=false"]);
    let next = wait_for("a new Lease holder", Duration::from_secs(60), || async {
        leader(&client).await.filter(|h| *h != holder)
    })
    .await;
    eprintln!(
        "leader {holder} deleted; {next} holds the Lease {:?} later",
        killed.elapsed()
    );
    tokio::time::sleep(Duration::from_secs(5)).await;
    let _ = stop.send(true);
    let (samples, not_ready) = flaps.await.unwrap();
    assert_eq!(
        not_ready, 0,
        "{not_ready} of {samples} samples saw an example not Ready"
    );
    assert_eq!(recorded_ids(&client).await, ids, "the same vendor objects");
    assert_eq!(
        vendor_projects(&client).await,
        vendor,
        "no vendor create repeated"
    );

    // 4. An upgrade with a changed value rolls the pods: no flap, no create.
    let before: BTreeSet<String> = ready_operator_pods(&client).await.into_iter().collect();
    let (stop, flaps) = watch_ready(client.clone());
    let took = helm_install("upgrade", &image, &["resyncInterval=5m"]);
    wait_for("two Ready pods", Duration::from_secs(120), || async {
        (ready_operator_pods(&client).await.len() == 2).then_some(())
    })
    .await;
    let _ = stop.send(true);
    let (samples, not_ready) = flaps.await.unwrap();
    let after: BTreeSet<String> = ready_operator_pods(&client).await.into_iter().collect();
    eprintln!("helm upgrade --wait: {took:?}; pods {before:?} -> {after:?}");
    assert!(before.is_disjoint(&after), "every pod replaced");
    assert_eq!(
        not_ready, 0,
        "{not_ready} of {samples} samples saw an example not Ready"
    );
    assert_eq!(recorded_ids(&client).await, ids);
    assert_eq!(
        vendor_projects(&client).await,
        vendor,
        "no vendor create repeated"
    );

    // 5. Resources deleted, then uninstall: nothing of the release is left.
    let started = Instant::now();
    kubectl(&[
        "delete",
        "-f",
        "deploy/examples/",
        "--wait=true",
        "--timeout=120s",
    ]);
    eprintln!(
        "kubectl delete -f deploy/examples/: {:?}",
        started.elapsed()
    );
    assert!(
        vendor_projects(&client).await.is_empty(),
        "vendor projects deleted"
    );
    let started = Instant::now();
    helm(&["uninstall", RELEASE, "--namespace", NS, "--wait"]);
    eprintln!("helm uninstall (nothing left): {:?}", started.elapsed());
    wait_for("the release gone", Duration::from_secs(60), || async {
        release_leftovers().is_empty().then_some(())
    })
    .await;
    let providers: Api<DatabaseProvider> = Api::all(client.clone());
    assert!(providers.get_opt("emulator").await.unwrap().is_none());

    // 6. Install again, leave a resource on the chart's own provider, uninstall.
    ensure_volume();
    helm_install("install", &image, &[]);
    let project = serde_json::json!({
        "apiVersion": "dbops.dev/v1alpha1", "kind": "DatabaseProject",
        "metadata": {"name": "left-behind", "namespace": EXAMPLES_NS},
        "spec": {"providerRef": {"name": "emulator"}, "vendor": "neon",
                 "writeConnectionSecretTo": {"name": "left-behind-db"}},
    });
    let file = std::env::temp_dir().join("dbops-e2e-left-behind.json");
    std::fs::write(&file, project.to_string()).unwrap();
    kubectl(&["apply", "-f", file.to_str().unwrap()]);
    let projects: Api<DatabaseProject> = Api::namespaced(client.clone(), EXAMPLES_NS);
    let ready = wait_for("left-behind Ready", Duration::from_secs(60), || async {
        projects
            .get_opt("left-behind")
            .await
            .unwrap()
            .filter(|p| p.is_ready())
    })
    .await;
    let id = ready.status.and_then(|s| s.project_id).unwrap();
    let started = Instant::now();
    helm(&["uninstall", RELEASE, "--namespace", NS, "--wait"]);
    eprintln!("helm uninstall (a resource left): {:?}", started.elapsed());
    let kept = providers
        .get("emulator")
        .await
        .expect("the chart's provider is kept");
    assert!(
        kept.metadata.deletion_timestamp.is_none(),
        "not half-deleted"
    );
    let secret = Api::<Secret>::namespaced(client.clone(), NS)
        .get("dbops-emulator-credentials")
        .await
        .expect("its Secret is kept");
    assert!(secret.metadata.deletion_timestamp.is_none());
    let claim = Api::<PersistentVolumeClaim>::namespaced(client.clone(), NS)
        .get("dbops-emulator")
        .await
        .expect("the emulator's volume is kept");
    assert!(claim.metadata.deletion_timestamp.is_none());
    let left = projects.get("left-behind").await.unwrap();
    assert!(left.metadata.deletion_timestamp.is_none() && left.is_ready());

    // 7. Install again: the release takes the kept objects over, and the
    // resource left behind is still served, by the same vendor project.
    let took = helm_install("install", &image, &[]);
    eprintln!("helm install over kept objects: {took:?}");
    let kept = providers.get("emulator").await.unwrap();
    assert!(kept.metadata.deletion_timestamp.is_none());
    assert_eq!(
        kept.annotations()
            .get("meta.helm.sh/release-name")
            .map(String::as_str),
        Some(RELEASE)
    );
    assert!(
        vendor_projects(&client).await.contains(&id),
        "the vendor project survived"
    );
    // The new operator reads every object again at start.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let again = wait_for("left-behind Ready", Duration::from_secs(60), || async {
        projects
            .get_opt("left-behind")
            .await
            .unwrap()
            .filter(|p| p.is_ready())
    })
    .await;
    assert_eq!(again.status.and_then(|s| s.project_id), Some(id));

    // Clean up: the resource, then the release (nothing left behind).
    kubectl(&[
        "delete",
        "-f",
        file.to_str().unwrap(),
        "--wait=true",
        "--timeout=60s",
    ]);
    helm(&["uninstall", RELEASE, "--namespace", NS, "--wait"]);
    wait_for("the release gone", Duration::from_secs(60), || async {
        release_leftovers().is_empty().then_some(())
    })
    .await;
    clean_slate();
}
