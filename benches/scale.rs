//! Scale benchmark: `cargo bench --bench scale -- [--projects N] [--new M] [--concurrency C] [--faults]`.
//!
//! Runs the real `dbops` binary (without its embedded emulator) against an
//! in-memory Kubernetes API (the test suite's fake API server, over HTTP) and
//! the vendor emulators in this process, then reports:
//! - time from operator start until N pre-created projects are Ready;
//! - apply-to-Ready latency (p50/p99) of M new projects while N exist;
//! - the operator process's peak RSS (VmHWM of the child process);
//! - per object over one full resync: reconciles, Kubernetes requests and writes,
//!   vendor reads;
//! - with `--faults`: the same with 50 ms vendor latency and 10% 429s;
//! - with an operator built with `--features dhat-heap`: where the heap went
//!   at its peak, by component.
//!
//! Plus a micro-benchmark of the pure reconcile steps.
//!
//! The fake API is not a real API server (no etcd, no admission), so absolute
//! numbers are a lower bound on latency; the operator's own costs (CPU, memory,
//! requests) are what it measures.

#[path = "../tests/support/fake_kube.rs"]
#[allow(dead_code)]
mod fake_kube;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use dbops::api::v1alpha1::{DatabaseProject, DatabaseProvider};
use dbops::controllers::Managed;
use dbops::emulator::faults::FaultConfig;
use dbops::emulator::{Emulator, EmulatorConfig};
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, ListParams, PostParams};

use serde_json::json;

const KEY: &str = "ifr_pk_proj_bench";
const NS: &str = "bench";

struct Args {
    projects: usize,
    new: usize,
    faults: bool,
    /// Skip the timed teardown: stop the operator, take its finalizers off,
    /// and delete the namespace (for large runs, where only the figures
    /// before teardown are wanted).
    no_teardown: bool,
    resync_seconds: u64,
    /// The operator's `--concurrency`, and the floor client's.
    concurrency: usize,
}

fn args() -> Args {
    let mut out = Args {
        projects: 1000,
        new: 50,
        faults: false,
        no_teardown: false,
        resync_seconds: 30,
        concurrency: 16,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--projects" => {
                out.projects = it
                    .next()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(out.projects)
            }
            "--new" => out.new = it.next().and_then(|v| v.parse().ok()).unwrap_or(out.new),
            "--resync-seconds" => {
                out.resync_seconds = it
                    .next()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(out.resync_seconds)
            }
            "--faults" => out.faults = true,
            "--no-teardown" => out.no_teardown = true,
            "--concurrency" => {
                out.concurrency = it
                    .next()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(out.concurrency)
            }
            _ => {}
        }
    }
    out
}

struct Operator(Child);

impl Operator {
    /// Stops the operator as Kubernetes would (SIGTERM), so a heap profile
    /// is written; killed if it is not gone in 30 s.
    fn stop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// Where a heap profile's bytes at its peak went, by component: each
/// allocation site is put under the first component one of its frames names.
fn heap_breakdown(profile: &serde_json::Value) -> Vec<(&'static str, u64)> {
    const COMPONENTS: &[(&str, &[&str])] = &[
        ("Event recorder", &["dbops::controllers::events"]),
        (
            "freshness and echo tables",
            &["dbops::controllers::freshness"],
        ),
        ("metrics", &["dbops::metrics", "prometheus_client"]),
        ("predicate caches", &["kube_runtime::utils::predicate"]),
        (
            "controller queues and scheduler",
            &["kube_runtime::scheduler", "kube_runtime::controller"],
        ),
        (
            "watched objects (decoded by watchers, held in the stores)",
            &[
                "kube_runtime::watcher",
                "kube_runtime::reflector",
                "kube_client::client::Client::request_events",
            ],
        ),
        ("vendor clients", &["dbops::providers"]),
        (
            "HTTP and TLS (hyper, h2, rustls)",
            &["hyper", "h2::", "rustls"],
        ),
        ("tokio runtime", &["tokio::"]),
    ];
    let frames: Vec<&str> = profile["ftbl"]
        .as_array()
        .map(|f| f.iter().filter_map(|v| v.as_str()).collect())
        .unwrap_or_default();
    let mut totals: Vec<(&'static str, u64)> = COMPONENTS
        .iter()
        .map(|(name, _)| (*name, 0))
        .chain([("other", 0)])
        .collect();
    for pp in profile["pps"].as_array().into_iter().flatten() {
        let bytes = pp["gb"].as_u64().unwrap_or(0);
        if bytes == 0 {
            continue;
        }
        let names: Vec<&str> = pp["fs"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|i| frames.get(i.as_u64()? as usize).copied())
            .collect();
        let component = COMPONENTS
            .iter()
            .position(|(_, patterns)| {
                names
                    .iter()
                    .any(|frame| patterns.iter().any(|p| frame.contains(p)))
            })
            .unwrap_or(COMPONENTS.len());
        totals[component].1 += bytes;
    }
    totals.sort_by_key(|t| std::cmp::Reverse(t.1));
    totals
}

impl Drop for Operator {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

async fn ready_count(projects: &Api<DatabaseProject>) -> usize {
    projects
        .list(&ListParams::default())
        .await
        .map(|l| l.items.iter().filter(|p| p.is_ready()).count())
        .unwrap_or(0)
}

fn metric(text: &str, prefix: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(prefix))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// The samples of `metric` summed by the value of `label`, from an OpenMetrics text.
fn by_label(text: &str, metric: &str, label: &str) -> std::collections::BTreeMap<String, f64> {
    let mut out = std::collections::BTreeMap::new();
    let prefix = format!("{metric}{{");
    for line in text.lines().filter(|l| l.starts_with(&prefix)) {
        let Some((labels, value)) = line[prefix.len()..].split_once("} ") else {
            continue;
        };
        let Ok(value) = value.trim().parse::<f64>() else {
            continue;
        };
        let key = labels
            .split(',')
            .filter_map(|kv| kv.split_once('='))
            .find(|(k, _)| *k == label)
            .map(|(_, v)| v.trim_matches('"').to_string())
            .unwrap_or_default();
        *out.entry(key).or_default() += value;
    }
    out
}

/// `after - before` per key, divided by `objects`, as `key=value` pairs.
fn per_object(
    before: &std::collections::BTreeMap<String, f64>,
    after: &std::collections::BTreeMap<String, f64>,
    objects: f64,
) -> String {
    let parts: Vec<String> = after
        .iter()
        .map(|(k, v)| (k, v - before.get(k).copied().unwrap_or(0.0)))
        .filter(|(_, v)| *v > 0.0)
        .map(|(k, v)| format!("{k} {:.2}", v / objects))
        .collect();
    if parts.is_empty() {
        "none".to_string()
    } else {
        parts.join(", ")
    }
}

/// Kubernetes requests by `verb resource`, from the operator's client metrics.
fn kube_requests(text: &str) -> std::collections::BTreeMap<String, f64> {
    let mut out = std::collections::BTreeMap::new();
    for line in text
        .lines()
        .filter(|l| l.starts_with("dbops_kube_requests_total{"))
    {
        let verb = by_label(line, "dbops_kube_requests_total", "verb");
        let resource = by_label(line, "dbops_kube_requests_total", "resource");
        if let (Some((verb, value)), Some((resource, _))) =
            (verb.into_iter().next(), resource.into_iter().next())
        {
            *out.entry(format!("{verb} {resource}")).or_default() += value;
        }
    }
    out
}

/// The verbs of `requests` (`verb resource` keys) summed.
fn by_verb(
    requests: &std::collections::BTreeMap<String, f64>,
) -> std::collections::BTreeMap<String, f64> {
    let mut out = std::collections::BTreeMap::new();
    for (key, value) in requests {
        let verb = key.split(' ').next().unwrap_or_default().to_string();
        *out.entry(verb).or_default() += value;
    }
    out
}

fn micro_benchmarks() {
    use dbops::api::v1alpha1::Conditions;
    use dbops::controllers::conditions::{Health, conditions_for};
    use dbops::controllers::secret::ConnectionDetails;
    use dbops::providers::ConnectionUri;
    let rounds = 100_000u32;
    let started = Instant::now();
    let mut previous = Conditions::default();
    for i in 0..rounds {
        let health = if i % 2 == 0 {
            Health::ready("ok")
        } else {
            Health::progressing("Creating", "creating")
        };
        previous = conditions_for(
            &health,
            Some(1),
            &previous,
            k8s_openapi::jiff::Timestamp::now(),
        );
    }
    let conditions = started.elapsed() / rounds;
    let uri = ConnectionUri::new(
        "postgresql://app_owner:s3cr3tpassword@br-123.us-east-1.neon.emulator.invalid:5432/appdb?sslmode=require",
    );
    let started = Instant::now();
    for _ in 0..rounds {
        let details = ConnectionDetails::parse(Some(&uri), None).unwrap();
        // No templates: rendered in place, nothing spawned.
        std::hint::black_box(
            futures::executor::block_on(dbops::controllers::secret::SecretContent::connection(
                &details, None, "infrai",
            ))
            .unwrap(),
        );
    }
    let secret = started.elapsed() / rounds;
    println!(
        "micro: conditions_for {conditions:?}/op, connection URI parse + Secret data {secret:?}/op"
    );
}

/// The writes the operator needs per new project on the happy path: the
/// create mark (status), the finalizer, the vendor claim, the Secret, the
/// status, one Event.
const WRITES_PER_OBJECT: usize = 6;
/// The other namespace of the fairness probe.
const OTHER_NS: &str = "bench-other";

/// Once the operator has a backlog (a tenth of `total` Ready, so its queue
/// is full of this namespace's work), applies one project in [`OTHER_NS`]
/// and times it to Ready; with how many of [`NS`]'s were not Ready then.
/// `None` when the backlog was gone before.
async fn fairness_probe(
    client: kube::Client,
    projects: Api<DatabaseProject>,
    total: usize,
) -> Option<(usize, Duration)> {
    let apply = kube::api::PatchParams::apply("dbops-bench").force();
    let namespace =
        json!({ "apiVersion": "v1", "kind": "Namespace", "metadata": { "name": OTHER_NS } });
    Api::<k8s_openapi::api::core::v1::Namespace>::all(client.clone())
        .patch(OTHER_NS, &apply, &kube::api::Patch::Apply(&namespace))
        .await
        .ok()?;
    while ready_count(&projects).await < total / 10 {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let backlog = total - ready_count(&projects).await;
    if backlog == 0 {
        return None;
    }
    let other: Api<DatabaseProject> = Api::namespaced(client, OTHER_NS);
    let project: DatabaseProject =
        serde_json::from_value(json!({ "metadata": { "name": "probe" }, "spec": {} })).ok()?;
    let applied = Instant::now();
    other.create(&PostParams::default(), &project).await.ok()?;
    loop {
        if other
            .get("probe")
            .await
            .map(|p| p.is_ready())
            .unwrap_or(false)
        {
            return Some((backlog, applied.elapsed()));
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Finalizer the floor adds (and takes off again) instead of the operator's.
const FLOOR_FINALIZER: &str = "bench.dbops.dev/floor";

/// How long a plain client takes to make the writes a cold start needs, for
/// every project in `names`, `concurrency` at a time: the same number and
/// kinds of writes as the operator makes (a status, a finalizer, a claim, a
/// Secret, a status, an Event). What it wrote is undone afterwards (not timed), so the operator
/// then starts from fresh projects.
async fn write_floor(client: &kube::Client, names: &[String], concurrency: usize) -> Duration {
    use futures::StreamExt;
    use k8s_openapi::api::events::v1::Event;
    let projects: Api<DatabaseProject> = Api::namespaced(client.clone(), NS);
    let secrets: Api<Secret> = Api::namespaced(client.clone(), NS);
    let events: Api<Event> = Api::namespaced(client.clone(), NS);
    let claims: Api<dbops::api::v1alpha1::VendorClaim> = Api::all(client.clone());
    let merge = kube::api::PatchParams::default();
    let started = Instant::now();
    futures::stream::iter(names.iter().map(|name| {
        let (projects, secrets, events, claims, merge) = (
            projects.clone(),
            secrets.clone(),
            events.clone(),
            claims.clone(),
            merge.clone(),
        );
        async move {
            let mark = json!({ "status": { "createRequested": true } });
            projects
                .patch_status(name, &merge, &kube::api::Patch::Merge(&mark))
                .await
                .unwrap();
            let finalizer = json!({ "metadata": { "finalizers": [FLOOR_FINALIZER] } });
            projects
                .patch(name, &merge, &kube::api::Patch::Merge(&finalizer))
                .await
                .unwrap();
            let claim: dbops::api::v1alpha1::VendorClaim = serde_json::from_value(json!({
                "metadata": { "name": format!("floor-{name}") },
                "spec": { "api": "infrai", "account": "floor", "object": "Project", "id": name,
                    "holder": { "kind": "DatabaseProject", "namespace": NS, "name": name, "uid": "floor" },
                    "provider": "floor" },
            }))
            .unwrap();
            claims.create(&PostParams::default(), &claim).await.unwrap();
            let secret: Secret = serde_json::from_value(json!({
                "metadata": { "name": format!("floor-{name}") },
                "stringData": { "uri": "postgresql://u:p@h:5432/d", "host": "h", "port": "5432",
                    "database": "d", "username": "u", "password": "p" },
            }))
            .unwrap();
            secrets
                .create(&PostParams::default(), &secret)
                .await
                .unwrap();
            let status = json!({ "status": { "projectName": "floor", "projectId": "floor" } });
            projects
                .patch_status(name, &merge, &kube::api::Patch::Merge(&status))
                .await
                .unwrap();
            let event: Event = serde_json::from_value(json!({
                "metadata": { "name": format!("floor-{name}") },
                "eventTime": k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime(k8s_openapi::jiff::Timestamp::now()),
                "reportingController": "bench", "reportingInstance": "bench",
                "action": "Create", "reason": "Created", "type": "Normal", "note": "floor",
                "regarding": { "apiVersion": "dbops.dev/v1alpha1", "kind": "DatabaseProject", "name": name, "namespace": NS },
            }))
            .unwrap();
            events
                .create(&PostParams::default(), &event)
                .await
                .unwrap();
        }
    }))
    .buffer_unordered(concurrency)
    .collect::<Vec<()>>()
    .await;
    let floor = started.elapsed();
    futures::stream::iter(names.iter().map(|name| {
        let (projects, secrets, events, claims, merge) = (
            projects.clone(),
            secrets.clone(),
            events.clone(),
            claims.clone(),
            merge.clone(),
        );
        async move {
            claims
                .delete(&format!("floor-{name}"), &Default::default())
                .await
                .unwrap();
            let clear = json!({ "status": null });
            projects
                .patch_status(name, &merge, &kube::api::Patch::Merge(&clear))
                .await
                .unwrap();
            let finalizer = json!({ "metadata": { "finalizers": null } });
            projects
                .patch(name, &merge, &kube::api::Patch::Merge(&finalizer))
                .await
                .unwrap();
            let floor_name = format!("floor-{name}");
            secrets
                .delete(&floor_name, &Default::default())
                .await
                .unwrap();
            events
                .delete(&floor_name, &Default::default())
                .await
                .unwrap();
        }
    }))
    .buffer_unordered(concurrency)
    .collect::<Vec<()>>()
    .await;
    floor
}

/// Prints the heap breakdown when the operator wrote a profile into `workdir`
/// (built with `--features dhat-heap`); else removes `workdir`.
fn report_heap(workdir: &std::path::Path) {
    let profile_path = workdir.join("dhat-heap.json");
    if let Ok(text) = std::fs::read_to_string(&profile_path) {
        let profile: serde_json::Value = serde_json::from_str(&text).unwrap();
        let breakdown = heap_breakdown(&profile);
        let total: u64 = breakdown.iter().map(|(_, b)| b).sum();
        println!(
            "heap at its peak: {:.1} MiB in all (dhat; {})",
            total as f64 / 1048576.0,
            profile_path.display()
        );
        for (component, bytes) in breakdown.iter().filter(|(_, b)| *b > 0) {
            println!(
                "heap:   {:>7.2} MiB  {:>4.1}%  {component}",
                *bytes as f64 / 1048576.0,
                *bytes as f64 * 100.0 / total.max(1) as f64
            );
        }
    } else {
        let _ = std::fs::remove_dir_all(workdir);
    }
}

/// Removes what the run made without the operator: every finalizer in the
/// bench namespace and on the provider comes off, then the namespace goes.
async fn untimed_teardown(client: &kube::Client) {
    use futures::StreamExt;
    let projects: Api<DatabaseProject> = Api::namespaced(client.clone(), NS);
    let strip = kube::api::Patch::Merge(json!({ "metadata": { "finalizers": null } }));
    let names: Vec<String> = projects
        .list(&Default::default())
        .await
        .map(|l| l.items.iter().map(kube::ResourceExt::name_any).collect())
        .unwrap_or_default();
    futures::stream::iter(names.iter().map(|name| {
        let (projects, strip) = (projects.clone(), strip.clone());
        async move {
            let _ = projects.patch(name, &Default::default(), &strip).await;
        }
    }))
    .buffer_unordered(64)
    .collect::<Vec<()>>()
    .await;
    let _ = Api::<Secret>::namespaced(client.clone(), NS)
        .patch("infrai", &Default::default(), &strip)
        .await;
    let providers: Api<DatabaseProvider> = Api::all(client.clone());
    let _ = providers
        .patch("default", &Default::default(), &strip)
        .await;
    let _ = providers.delete("default", &Default::default()).await;
    let _ = Api::<k8s_openapi::api::core::v1::Namespace>::all(client.clone())
        .delete(NS, &Default::default())
        .await;
    println!("teardown: skipped (--no-teardown); finalizers taken off and namespace {NS} deleted");
}

#[tokio::main]
async fn main() {
    dbops::providers::http::ensure_crypto_provider();
    let args = args();
    micro_benchmarks();

    // A real cluster when KUBECONFIG is set (CRDs installed, out-of-cluster
    // operator), else the in-memory API.
    let real_cluster = std::env::var_os("KUBECONFIG").is_some();
    let fake = if real_cluster {
        None
    } else {
        Some(fake_kube::FakeKube::start().await)
    };
    let client = match &fake {
        Some(fake) => fake.client(),
        None => kube::Client::try_default()
            .await
            .expect("KUBECONFIG points at a reachable cluster"),
    };
    println!(
        "api: {}",
        if real_cluster {
            "the cluster from KUBECONFIG"
        } else {
            "in-memory (set KUBECONFIG to use a real cluster)"
        }
    );
    let emulator = Emulator::new(
        &EmulatorConfig::default()
            .with_keys("infrai", [KEY])
            .unwrap(),
    );
    let (addr, _) = emulator.clone().spawn("127.0.0.1:0").await.unwrap();
    let apply = kube::api::PatchParams::apply("dbops-bench").force();
    let namespace = json!({ "apiVersion": "v1", "kind": "Namespace", "metadata": { "name": NS } });
    Api::<k8s_openapi::api::core::v1::Namespace>::all(client.clone())
        .patch(NS, &apply, &kube::api::Patch::Apply(&namespace))
        .await
        .unwrap();
    let secret = json!({ "apiVersion": "v1", "kind": "Secret", "metadata": { "name": "infrai", "namespace": NS }, "data": { "apiKey": k8s_openapi::ByteString(KEY.as_bytes().to_vec()) } });
    Api::<Secret>::namespaced(client.clone(), NS)
        .patch("infrai", &apply, &kube::api::Patch::Apply(&secret))
        .await
        .unwrap();
    let provider = json!({
        "apiVersion": "dbops.dev/v1alpha1", "kind": "DatabaseProvider", "metadata": { "name": "default" },
        "spec": { "api": "infrai", "endpoint": format!("http://{addr}/infrai"), "credentialsSecretRef": { "name": "infrai", "namespace": NS, "key": "apiKey" },
            "allowedNamespaces": { "from": "All" } }
    });
    Api::<DatabaseProvider>::all(client.clone())
        .patch("default", &apply, &kube::api::Patch::Apply(&provider))
        .await
        .unwrap();
    if args.faults {
        emulator.faults_of("infrai").unwrap().set(FaultConfig {
            rate_limit: 0.1,
            retry_after_seconds: 1,
            latency_ms: 50,
            ..Default::default()
        });
    }

    let projects: Api<DatabaseProject> = Api::namespaced(client.clone(), NS);
    let created = Instant::now();
    let names: Vec<String> = (0..args.projects).map(|i| format!("p{i:05}")).collect();
    for chunk in names.chunks(64) {
        futures::future::join_all(chunk.iter().map(|name| {
            let projects = projects.clone();
            let project: DatabaseProject =
                serde_json::from_value(json!({ "metadata": { "name": name }, "spec": {} }))
                    .unwrap();
            async move {
                projects
                    .create(&PostParams::default(), &project)
                    .await
                    .unwrap()
            }
        }))
        .await;
    }
    println!(
        "setup: {} projects applied in {:?}",
        args.projects,
        created.elapsed()
    );

    let floor = write_floor(&client, &names, args.concurrency).await;
    println!(
        "floor: a plain client makes the {} writes of a cold start ({WRITES_PER_OBJECT} per project: create mark, finalizer, claim, Secret, status, Event) at concurrency {} in {floor:?} ({:.0} writes/s)",
        names.len() * WRITES_PER_OBJECT,
        args.concurrency,
        (names.len() * WRITES_PER_OBJECT) as f64 / floor.as_secs_f64()
    );

    let kubeconfig = match &fake {
        Some(fake) => {
            let path =
                std::env::temp_dir().join(format!("dbops-bench-{}.yaml", std::process::id()));
            std::fs::write(
                &path,
                format!(
                    "apiVersion: v1\nkind: Config\nclusters:\n- name: f\n  cluster:\n    server: {}\nusers:\n- name: f\n  user: {{}}\ncontexts:\n- name: f\n  context:\n    cluster: f\n    user: f\ncurrent-context: f\n",
                    fake.url
                ),
            )
            .unwrap();
            path
        }
        None => std::path::PathBuf::from(std::env::var_os("KUBECONFIG").unwrap_or_default()),
    };
    let metrics_port = 18000 + (std::process::id() % 1000) as u16;
    let binary = std::env::var("DBOPS_BIN").unwrap_or_else(|_| "target/release/dbops".to_string());
    let binary = std::fs::canonicalize(&binary)
        .unwrap_or_else(|e| panic!("run `cargo build --release` first ({binary}): {e}"));
    let kubeconfig = std::fs::canonicalize(&kubeconfig).unwrap_or(kubeconfig);
    // The operator's working directory: a heap profile (a build with
    // `--features dhat-heap`) is written there.
    let workdir = std::env::temp_dir().join(format!("dbops-bench-run-{}", std::process::id()));
    std::fs::create_dir_all(&workdir).unwrap();
    let started = Instant::now();
    let child = Command::new(&binary)
        .current_dir(&workdir)
        .args([
            "run",
            "--emulator=false",
            "--metrics-listen",
            &format!("127.0.0.1:{metrics_port}"),
            "--resync-interval",
            &format!("{}s", args.resync_seconds),
            "--concurrency",
            &args.concurrency.to_string(),
        ])
        .env("KUBECONFIG", &kubeconfig)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", binary.display()));
    let pid = child.id();
    let mut operator = Operator(child);
    // Fairness: while this namespace cold-starts, a new project of another
    // namespace, applied once the backlog has built up.
    let probe = tokio::spawn(fairness_probe(
        client.clone(),
        projects.clone(),
        args.projects,
    ));
    loop {
        if ready_count(&projects).await == args.projects {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(1800),
            "not all Ready after 30 minutes"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let all_ready = started.elapsed();
    println!(
        "result: {} projects Ready {:?} after operator start",
        args.projects, all_ready
    );
    match probe.await {
        Ok(Some((backlog, took))) => println!(
            "result: fairness: a project in namespace {OTHER_NS}, applied while {backlog} of {NS}'s {} were not Ready yet, went Ready in {took:?}",
            args.projects
        ),
        Ok(None) => println!(
            "result: fairness: not measured (the cold start was over before the probe was applied)"
        ),
        Err(e) => println!("result: fairness probe failed: {e}"),
    }
    // The probe goes again (its vendor project with it), out of the figures below.
    let other: Api<DatabaseProject> = Api::namespaced(client.clone(), OTHER_NS);
    if other.delete("probe", &Default::default()).await.is_ok() {
        while other.get_opt("probe").await.ok().flatten().is_some() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    if real_cluster {
        let _ = Api::<k8s_openapi::api::core::v1::Namespace>::all(client.clone())
            .delete(OTHER_NS, &Default::default())
            .await;
    }
    println!(
        "result: cold start is {:.1}x the API server's write floor ({all_ready:?} / {floor:?})",
        all_ready.as_secs_f64() / floor.as_secs_f64()
    );
    let scrape = || async {
        reqwest::get(format!("http://127.0.0.1:{metrics_port}/metrics"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    };
    let cold = scrape().await;
    let none = std::collections::BTreeMap::new();
    let cold_requests = kube_requests(&cold);
    let n = args.projects as f64;
    println!(
        "result: cold start, Kubernetes requests per project by verb: {}",
        per_object(&none, &by_verb(&cold_requests), n)
    );
    println!(
        "result: cold start, Kubernetes requests per project by verb and resource: {}",
        per_object(&none, &cold_requests, n)
    );
    println!(
        "result: cold start, vendor calls per project by operation: {}",
        per_object(
            &none,
            &by_label(&cold, "dbops_vendor_requests_total", "operation"),
            n
        )
    );

    // Apply-to-Ready latency of new objects while N exist.
    let mut latencies = Vec::new();
    for batch in (0..args.new).collect::<Vec<_>>().chunks(10) {
        let results = futures::future::join_all(batch.iter().map(|i| {
            let projects = projects.clone();
            let name = format!("new{i:04}");
            async move {
                let project: DatabaseProject =
                    serde_json::from_value(json!({ "metadata": { "name": name }, "spec": {} }))
                        .unwrap();
                let applied = Instant::now();
                projects
                    .create(&PostParams::default(), &project)
                    .await
                    .unwrap();
                loop {
                    if projects
                        .get(&name)
                        .await
                        .map(|p| p.is_ready())
                        .unwrap_or(false)
                    {
                        return applied.elapsed();
                    }
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
        }))
        .await;
        latencies.extend(results);
    }
    latencies.sort();
    println!(
        "result: apply-to-Ready with {} existing: p50 {:?}, p99 {:?}, max {:?} ({} samples)",
        args.projects,
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99),
        latencies.last().copied().unwrap_or_default(),
        latencies.len()
    );

    // Steady state over one full resync period (jittered +-10%).
    // Let the last creations settle before measuring steady state.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let before = scrape().await;
    if let Some(fake) = &fake {
        fake.clear_log();
    }
    tokio::time::sleep(Duration::from_secs(
        args.resync_seconds + args.resync_seconds / 10 + 2,
    ))
    .await;
    let after = scrape().await;
    let objects = (args.projects + args.new) as f64;
    // Requests as the operator counted them (its client metrics), so the same
    // figures come from a real API server and the in-memory one.
    let steady = {
        let (before, after) = (kube_requests(&before), kube_requests(&after));
        let mut delta = std::collections::BTreeMap::new();
        for (key, value) in &after {
            let d = value - before.get(key).copied().unwrap_or(0.0);
            if d > 0.0 {
                delta.insert(key.clone(), d);
            }
        }
        delta
    };
    let writes: f64 = by_verb(&steady)
        .iter()
        .filter(|(verb, _)| !matches!(verb.as_str(), "get" | "list" | "watch"))
        .map(|(_, v)| v)
        .sum();
    if writes > 0.0 {
        println!("steady-state writes: {steady:?}");
    }
    let reconciles = metric(
        &after,
        "dbops_reconciles_total{controller=\"databaseproject\"}",
    ) - metric(
        &before,
        "dbops_reconciles_total{controller=\"databaseproject\"}",
    );
    let reads = metric(
        &after,
        "dbops_vendor_requests_total{api=\"infrai\",operation=\"db.project.get\"",
    ) - metric(
        &before,
        "dbops_vendor_requests_total{api=\"infrai\",operation=\"db.project.get\"",
    );
    // The window is the interval plus its 10% jitter and a margin; scale to one interval.
    let window = (args.resync_seconds + args.resync_seconds / 10 + 2) as f64;
    let per_interval = args.resync_seconds as f64 / window;
    let none = std::collections::BTreeMap::new();
    println!(
        "result: steady state, per object per resync interval ({}s): {:.2} reconciles, {:.2} vendor reads, Kubernetes requests by verb and resource: {}; {:.0} Kubernetes writes in total",
        args.resync_seconds,
        reconciles / objects * per_interval,
        reads / objects * per_interval,
        per_object(&none, &steady, objects / per_interval),
        writes.max(0.0),
    );
    println!(
        "result: operator peak RSS {} MiB with {} projects and their Secrets",
        peak_rss_kib(pid).unwrap_or(0) / 1024,
        args.projects + args.new
    );
    if let Some(faults) = emulator.faults_of("infrai") {
        println!(
            "faults: {} injected over {} vendor requests",
            faults.injected(),
            faults.requests()
        );
    }
    if args.no_teardown && real_cluster {
        operator.stop();
        report_heap(&workdir);
        untimed_teardown(&client).await;
        return;
    }
    // Delete everything at once, as `kubectl delete namespace` does, while the
    // operator and the emulator still run: every vendor project is deleted and
    // the namespace and provider are left behind on neither side.
    let deleting = Instant::now();
    let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client.clone());
    let providers: Api<DatabaseProvider> = Api::all(client.clone());
    if real_cluster {
        namespaces.delete(NS, &Default::default()).await.unwrap();
    } else {
        // The in-memory API has no namespace object: delete the contents.
        projects
            .delete_collection(&Default::default(), &Default::default())
            .await
            .unwrap();
        Api::<Secret>::namespaced(client.clone(), NS)
            .delete("infrai", &Default::default())
            .await
            .unwrap();
    }
    providers
        .delete("default", &Default::default())
        .await
        .unwrap();
    let mut projects_gone = None;
    loop {
        let projects_left = projects
            .list(&Default::default())
            .await
            .map(|l| l.items.len())
            .unwrap_or(0);
        if projects_left == 0 && projects_gone.is_none() {
            projects_gone = Some(deleting.elapsed());
        }
        let namespace_left = real_cluster && namespaces.get_opt(NS).await.ok().flatten().is_some();
        let provider_left = providers.get_opt("default").await.ok().flatten().is_some();
        if projects_left == 0 && !namespace_left && !provider_left {
            break;
        }
        assert!(
            deleting.elapsed() < Duration::from_secs(1800),
            "deletion did not finish in 30 minutes ({projects_left} projects left)"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    println!(
        "result: deleting the {} projects, their provider and its Secret at once took {:?} (the projects were gone after {:?}; the rest is the namespace controller's pace); vendor projects left: {}",
        args.projects + args.new,
        deleting.elapsed(),
        projects_gone.unwrap_or_default(),
        emulator.infrai.projects().len()
    );
    operator.stop();
    report_heap(&workdir);
    if fake.is_some() {
        let _ = std::fs::remove_file(kubeconfig);
    }
}
