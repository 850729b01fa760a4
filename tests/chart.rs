//! The Helm chart and the plain manifests: generated files in sync, the default
//! install equal in both, Pod Security `restricted`, values validated.

mod tools;

use std::collections::BTreeSet;

use serde_json::Value;
use tools::{documents, helm, kubectl, render, repo, roles_bound_to_operator, run, try_run};

fn of_kind<'a>(docs: &'a [Value], kind: &str) -> Vec<&'a Value> {
    docs.iter().filter(|d| d["kind"] == kind).collect()
}

#[test]
fn chart_crds_are_the_generated_crds() {
    for (name, yaml) in dbops::crdgen::render_files().unwrap() {
        let in_chart = std::fs::read_to_string(repo().join("charts/dbops/crds").join(&name))
            .unwrap_or_else(|_| {
                panic!("charts/dbops/crds/{name} missing: run ./scripts/generate.sh")
            });
        assert!(
            in_chart == yaml,
            "charts/dbops/crds/{name} is out of date: run ./scripts/generate.sh"
        );
    }
    let in_chart: BTreeSet<_> = std::fs::read_dir(repo().join("charts/dbops/crds"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(in_chart.len(), dbops::crdgen::render_files().unwrap().len());
    let deploy_crds = std::fs::read_to_string(repo().join("deploy/crds.yaml")).unwrap();
    assert!(
        deploy_crds == dbops::crdgen::render_all().unwrap(),
        "deploy/crds.yaml is out of date: run ./scripts/generate.sh"
    );
}

#[test]
fn the_values_schema_offers_exactly_the_registered_vendor_apis() {
    use strum::IntoEnumIterator;
    let schema: Value = serde_json::from_str(
        &std::fs::read_to_string(repo().join("charts/dbops/values.schema.json")).unwrap(),
    )
    .unwrap();
    let offered: Vec<&str> = schema["properties"]["defaultProvider"]["properties"]["api"]["enum"]
        .as_array()
        .expect("defaultProvider.api has an enum")
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    let registered: Vec<String> = dbops::api::v1alpha1::ProviderApi::iter()
        .map(|api| api.to_string())
        .collect();
    assert_eq!(
        offered, registered,
        "charts/dbops/values.schema.json defaultProvider.api must list every vendor API"
    );
}

#[test]
fn the_plain_manifests_are_the_charts_default_install() {
    let rendered = render(&[]);
    let checked_in = documents(&std::fs::read_to_string(repo().join("deploy/dbops.yaml")).unwrap());
    assert_eq!(
        checked_in, rendered,
        "deploy/dbops.yaml differs from the chart's default render: run ./scripts/generate.sh"
    );
    // The tenants' roles are part of the plain install too.
    let cluster_roles: BTreeSet<&str> = of_kind(&checked_in, "ClusterRole")
        .iter()
        .filter_map(|r| r["metadata"]["name"].as_str())
        .collect();
    for name in tenant_role_names() {
        assert!(
            cluster_roles.contains(name),
            "deploy/dbops.yaml lacks {name}"
        );
    }
    // And kustomize assembles namespace, CRDs and the install.
    let built = documents(&run(&kubectl(), &["kustomize", "deploy"]));
    assert_eq!(of_kind(&built, "Namespace").len(), 1);
    assert_eq!(of_kind(&built, "CustomResourceDefinition").len(), 8);
    assert_eq!(of_kind(&built, "Deployment").len(), 1);
}

/// The tenants' aggregated ClusterRoles in the default install (release `dbops`).
fn tenant_role_names() -> [&'static str; 2] {
    ["dbops-edit", "dbops-view"]
}

/// The plurals of the chart's dbops CRDs of one scope (`Namespaced` or `Cluster`).
fn crd_plurals(scope: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for entry in std::fs::read_dir(repo().join("charts/dbops/crds")).unwrap() {
        let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        for crd in documents(&text) {
            assert_eq!(crd["spec"]["group"], "dbops.dev");
            if crd["spec"]["scope"] == scope {
                out.insert(crd["spec"]["names"]["plural"].as_str().unwrap().to_string());
            }
        }
    }
    out
}

fn strings(value: &Value) -> BTreeSet<&str> {
    value
        .as_array()
        .unwrap_or_else(|| panic!("{value} is a list"))
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect()
}

#[test]
fn tenant_roles_aggregate_into_edit_admin_and_view_for_the_namespaced_kinds_only() {
    let namespaced = crd_plurals("Namespaced");
    let cluster_scoped = crd_plurals("Cluster");
    assert_eq!(
        namespaced,
        BTreeSet::from(
            [
                "byokcredentials",
                "databasebranches",
                "databaseroles",
                "databasesnapshotschedules",
                "databaseprojects",
                "databasesnapshots"
            ]
            .map(String::from)
        )
    );
    assert!(cluster_scoped.contains("databaseproviders"));
    let docs = render(&[]);
    let role = |name: &str| -> &Value {
        of_kind(&docs, "ClusterRole")
            .into_iter()
            .find(|r| r["metadata"]["name"] == name)
            .unwrap_or_else(|| panic!("no ClusterRole {name}"))
    };
    let aggregation_labels = |role: &Value| -> BTreeSet<String> {
        role["metadata"]["labels"]
            .as_object()
            .unwrap()
            .iter()
            .filter(|(k, _)| k.starts_with("rbac.authorization.k8s.io/aggregate-to-"))
            .map(|(k, v)| {
                assert_eq!(v, "true", "{k}");
                k.trim_start_matches("rbac.authorization.k8s.io/aggregate-to-")
                    .to_string()
            })
            .collect()
    };
    let edit = role("dbops-edit");
    let view = role("dbops-view");
    assert_eq!(
        aggregation_labels(edit),
        BTreeSet::from(["admin".to_string(), "edit".to_string()])
    );
    assert_eq!(
        aggregation_labels(view),
        BTreeSet::from(["view".to_string()])
    );
    for (role, verbs) in [
        (
            edit,
            BTreeSet::from([
                "get",
                "list",
                "watch",
                "create",
                "update",
                "patch",
                "delete",
                "deletecollection",
            ]),
        ),
        (view, BTreeSet::from(["get", "list", "watch"])),
    ] {
        let name = role["metadata"]["name"].as_str().unwrap();
        let rules = role["rules"].as_array().unwrap();
        assert!(!rules.is_empty(), "{name}");
        let mut resources = BTreeSet::new();
        for rule in rules {
            assert_eq!(
                strings(&rule["apiGroups"]),
                BTreeSet::from(["dbops.dev"]),
                "{name}"
            );
            assert_eq!(strings(&rule["verbs"]), verbs, "{name}");
            assert!(rule.get("resourceNames").is_none(), "{name}");
            for resource in strings(&rule["resources"]) {
                assert!(
                    !resource.contains('/') && resource != "*",
                    "{name} grants {resource}: tenants never write (or need) a subresource"
                );
                assert!(
                    !cluster_scoped.contains(resource),
                    "{name} grants the cluster-scoped {resource}"
                );
                resources.insert(resource.to_string());
            }
        }
        assert_eq!(
            resources, namespaced,
            "{name} covers exactly the namespaced kinds"
        );
        assert!(!role.to_string().contains("databaseproviders"), "{name}");
        // Nothing in the chart binds it: it reaches users only through
        // edit/admin/view, and never the operator.
        for binding in of_kind(&docs, "ClusterRoleBinding")
            .into_iter()
            .chain(of_kind(&docs, "RoleBinding"))
        {
            assert_ne!(binding["roleRef"]["name"], name);
        }
    }
    // Named after the release's full name.
    let other = documents(&run(
        &helm(),
        &[
            "template",
            "platform",
            "charts/dbops",
            "--namespace",
            "dbops-system",
            "--kube-version",
            "1.33.0",
        ],
    ));
    let names: BTreeSet<&str> = of_kind(&other, "ClusterRole")
        .iter()
        .filter_map(|r| r["metadata"]["name"].as_str())
        .collect();
    assert!(
        names.contains("platform-dbops-edit") && names.contains("platform-dbops-view"),
        "{names:?}"
    );
    // And off with tenantRoles.enabled=false.
    let docs = render(&["--set", "tenantRoles.enabled=false"]);
    for role in of_kind(&docs, "ClusterRole") {
        assert!(
            !tenant_role_names().contains(&role["metadata"]["name"].as_str().unwrap()),
            "{}",
            role["metadata"]["name"]
        );
    }
}

#[test]
fn the_chart_lints_and_rejects_bad_values() {
    let helm = helm();
    let (ok, output) = try_run(&helm, &["lint", "charts/dbops"]);
    assert!(ok, "{output}");
    for bad in [
        "replicaCount=0",
        "logFormat=yaml",
        "defaultProvider.api=oracle",
        "nonsense=1",
    ] {
        let (ok, output) = try_run(
            &helm,
            &[
                "template",
                "dbops",
                "charts/dbops",
                "--kube-version",
                "1.33.0",
                "--set",
                bad,
            ],
        );
        assert!(
            !ok,
            "--set {bad} should be refused by values.schema.json: {output}"
        );
    }
}

#[test]
fn a_default_provider_without_a_documented_endpoint_must_name_one() {
    let helm = helm();
    let template = |sets: &[&str]| {
        let mut args = vec![
            "template",
            "dbops",
            "charts/dbops",
            "--kube-version",
            "1.33.0",
        ];
        for set in sets {
            args.extend(["--set", set]);
        }
        try_run(&helm, &args)
    };
    let on = "defaultProvider.enabled=true";
    for api in ["supabase", "capydb"] {
        let api = format!("defaultProvider.api={api}");
        let (ok, output) = template(&[on, &api]);
        assert!(!ok, "{api} without an endpoint must be refused: {output}");
        assert!(output.contains("endpoint"), "{output}");
        let (ok, output) = template(&[on, &api, "defaultProvider.endpoint=https://x.example"]);
        assert!(ok, "{api} with an endpoint renders: {output}");
    }
    for api in ["infrai", "db9"] {
        let (ok, output) = template(&[on, &format!("defaultProvider.api={api}")]);
        assert!(ok, "{api} has a documented endpoint: {output}");
    }
}

#[test]
fn the_pod_runs_under_pod_security_restricted() {
    let docs = render(&[]);
    let deployment = of_kind(&docs, "Deployment")[0];
    let pod = &deployment["spec"]["template"]["spec"];
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_eq!(
        pod["securityContext"]["seccompProfile"]["type"],
        "RuntimeDefault"
    );
    let container = &pod["containers"][0];
    let sc = &container["securityContext"];
    assert_eq!(sc["allowPrivilegeEscalation"], false);
    assert_eq!(sc["readOnlyRootFilesystem"], true);
    assert_eq!(sc["capabilities"]["drop"], serde_json::json!(["ALL"]));
    assert!(container["resources"]["requests"]["memory"].is_string());
    assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert_eq!(container["livenessProbe"]["httpGet"]["path"], "/healthz");
    let args: Vec<&str> = container["args"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(args.contains(&"--leader-election=true"), "{args:?}");
    assert_eq!(deployment["spec"]["replicas"], 2);
    assert_eq!(of_kind(&docs, "PodDisruptionBudget").len(), 1);
    assert!(
        of_kind(&docs, "ServiceMonitor").is_empty(),
        "off by default"
    );
    assert!(
        of_kind(&docs, "DatabaseProvider").is_empty(),
        "off by default"
    );
}

#[test]
fn namespace_scoped_mode_uses_roles_only_where_it_watches() {
    let docs = render(&["--set", "watchNamespaces={team-a,team-b}"]);
    let roles: BTreeSet<String> = of_kind(&docs, "Role")
        .iter()
        .map(|r| r["metadata"]["namespace"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        roles,
        ["dbops-system", "team-a", "team-b"]
            .map(String::from)
            .into()
    );
    // Of the operator's roles only the provider ClusterRole stays cluster-wide;
    // it grants nothing on Secrets.
    let bound = roles_bound_to_operator(&docs);
    let cluster_wide: Vec<&Value> = bound
        .iter()
        .filter(|(_, scope)| scope == "*")
        .map(|(role, _)| *role)
        .collect();
    assert_eq!(cluster_wide.len(), 1, "{cluster_wide:#?}");
    assert_eq!(cluster_wide[0]["metadata"]["name"], "dbops-providers");
    assert!(!cluster_wide[0]["rules"].to_string().contains("secrets"));
    let scopes: BTreeSet<&str> = bound.iter().map(|(_, scope)| scope.as_str()).collect();
    assert_eq!(
        scopes,
        BTreeSet::from(["*", "dbops-system", "team-a", "team-b"])
    );
    // The other ClusterRoles are the tenants' (bound to nobody), and their
    // rules hold no Secrets either.
    for role in of_kind(&docs, "ClusterRole") {
        if role["metadata"]["name"] != "dbops-providers" {
            assert!(tenant_role_names().contains(&role["metadata"]["name"].as_str().unwrap()));
            assert!(!role["rules"].to_string().contains("secrets"));
        }
    }
    let args = of_kind(&docs, "Deployment")[0]["spec"]["template"]["spec"]["containers"][0]["args"]
        .to_string();
    assert!(args.contains("--namespace=team-a") && args.contains("--namespace=team-b"));
}

#[test]
fn optional_parts_render_when_enabled() {
    let docs = render(&[
        "--set",
        "metrics.serviceMonitor.enabled=true",
        "--set",
        "defaultProvider.enabled=true",
        "--set",
        "defaultProvider.endpoint=https://api.infrai.cc",
    ]);
    assert_eq!(of_kind(&docs, "ServiceMonitor").len(), 1);
    let provider = of_kind(&docs, "DatabaseProvider")[0];
    assert_eq!(provider["spec"]["endpoint"], "https://api.infrai.cc");
    assert_eq!(
        provider["spec"]["credentialsSecretRef"]["namespace"],
        "dbops-system"
    );
}

fn args_of(deployment: &Value) -> Vec<String> {
    deployment["spec"]["template"]["spec"]["containers"][0]["args"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|a| a.as_str().map(str::to_string))
        .collect()
}

fn labels_match(selector: &Value, labels: &Value) -> bool {
    selector
        .as_object()
        .unwrap()
        .iter()
        .all(|(k, v)| labels.get(k) == Some(v))
}

#[test]
fn the_emulator_is_its_own_deployment_and_never_inside_an_operator_pod() {
    // Off by default, and operator replicas never serve one of their own.
    let docs = render(&[]);
    assert_eq!(of_kind(&docs, "Deployment").len(), 1);
    assert!(args_of(of_kind(&docs, "Deployment")[0]).contains(&"--emulator=false".to_string()));

    let docs = render(&["--set", "emulator.enabled=true"]);
    let deployments = of_kind(&docs, "Deployment");
    assert_eq!(deployments.len(), 2);
    let (emulator, operator): (Vec<&Value>, Vec<&Value>) = deployments
        .into_iter()
        .partition(|d| args_of(d).first().map(String::as_str) == Some("emulator"));
    let (emulator, operator) = (emulator[0], operator[0]);
    assert!(args_of(operator).contains(&"--emulator=false".to_string()));
    assert_eq!(emulator["spec"]["replicas"], 1);
    assert_eq!(emulator["spec"]["strategy"]["type"], "Recreate");
    let args = args_of(emulator);
    assert!(
        args.iter()
            .any(|a| a.starts_with("--emulator-state=/var/lib/")),
        "{args:?}"
    );
    // Its state is on a claim, mounted where the state file goes.
    let pod = &emulator["spec"]["template"]["spec"];
    let claim = pod["volumes"][0]["persistentVolumeClaim"]["claimName"]
        .as_str()
        .unwrap();
    assert!(
        of_kind(&docs, "PersistentVolumeClaim")
            .iter()
            .any(|c| c["metadata"]["name"] == claim)
    );
    assert_eq!(
        pod["containers"][0]["volumeMounts"][0]["mountPath"],
        "/var/lib/dbops-emulator"
    );
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_eq!(
        pod["containers"][0]["securityContext"]["readOnlyRootFilesystem"],
        true
    );
    // No operator selector (Deployment, metrics Service, PDB) picks up the emulator pod.
    let emulator_labels = &emulator["spec"]["template"]["metadata"]["labels"];
    let operator_labels = &operator["spec"]["template"]["metadata"]["labels"];
    assert!(!labels_match(
        &operator["spec"]["selector"]["matchLabels"],
        emulator_labels
    ));
    for service in of_kind(&docs, "Service") {
        let selector = &service["spec"]["selector"];
        assert!(
            labels_match(selector, emulator_labels) != labels_match(selector, operator_labels),
            "Service {} selects exactly one of operator and emulator",
            service["metadata"]["name"]
        );
    }
    for pdb in of_kind(&docs, "PodDisruptionBudget") {
        assert!(!labels_match(
            &pdb["spec"]["selector"]["matchLabels"],
            emulator_labels
        ));
    }
    // A provider pointing at the emulator's Service, with the demo key.
    let provider = of_kind(&docs, "DatabaseProvider")[0];
    let service = of_kind(&docs, "Service")
        .into_iter()
        .find(|s| labels_match(&s["spec"]["selector"], emulator_labels))
        .unwrap();
    let endpoint = provider["spec"]["endpoint"].as_str().unwrap();
    assert!(
        endpoint.starts_with(&format!(
            "http://{}.",
            service["metadata"]["name"].as_str().unwrap()
        )),
        "{endpoint}"
    );

    // A demo provider: every namespace may use it and adopt through it.
    assert_eq!(provider["spec"]["allowedNamespaces"]["from"], "All");
    assert_eq!(
        provider["spec"]["adoption"]["allowedNamespaces"]["from"],
        "All"
    );

    // Without persistence, an emptyDir and no claim.
    let docs = render(&[
        "--set",
        "emulator.enabled=true",
        "--set",
        "emulator.persistence.enabled=false",
    ]);
    assert!(of_kind(&docs, "PersistentVolumeClaim").is_empty());
}

/// The emulator's and the operator's Deployments of a render.
fn emulator_and_operator(docs: &[Value]) -> (&Value, &Value) {
    let deployments = of_kind(docs, "Deployment");
    let find = |first: &str| {
        *deployments
            .iter()
            .find(|d| args_of(d).first().map(String::as_str) == Some(first))
            .unwrap_or_else(|| panic!("no Deployment running `dbops {first}`"))
    };
    (find("emulator"), find("run"))
}

#[test]
fn only_the_operator_pods_reach_the_emulator() {
    // No emulator, no policy; an emulator comes with one unless turned off.
    assert!(of_kind(&render(&[]), "NetworkPolicy").is_empty());
    let off = render(&[
        "--set",
        "emulator.enabled=true",
        "--set",
        "emulator.networkPolicy.enabled=false",
    ]);
    assert!(of_kind(&off, "NetworkPolicy").is_empty());

    let docs = render(&["--set", "emulator.enabled=true"]);
    let (emulator, operator) = emulator_and_operator(&docs);
    let emulator_labels = &emulator["spec"]["template"]["metadata"]["labels"];
    let operator_labels = &operator["spec"]["template"]["metadata"]["labels"];
    let policies = of_kind(&docs, "NetworkPolicy");
    assert_eq!(policies.len(), 1);
    let policy = policies[0];
    assert_eq!(
        policy["metadata"]["namespace"],
        emulator["metadata"]["namespace"]
    );
    assert_eq!(
        policy["metadata"]["namespace"], operator["metadata"]["namespace"],
        "a podSelector peer selects pods in the policy's own namespace"
    );
    // It isolates the emulator pod (and not the operator's) for ingress ...
    let selected = &policy["spec"]["podSelector"]["matchLabels"];
    assert!(labels_match(selected, emulator_labels));
    assert!(!labels_match(selected, operator_labels));
    assert!(
        policy["spec"]["podSelector"]
            .get("matchExpressions")
            .is_none()
    );
    assert_eq!(
        policy["spec"]["policyTypes"],
        serde_json::json!(["Ingress"])
    );
    // ... and lets in exactly one peer: the operator's pods, on the emulator's port.
    let rules = policy["spec"]["ingress"].as_array().unwrap();
    assert_eq!(rules.len(), 1, "{rules:#?}");
    let peers = rules[0]["from"].as_array().unwrap();
    assert_eq!(peers.len(), 1, "{peers:#?}");
    let peer = peers[0].as_object().unwrap();
    assert_eq!(
        peer.keys().map(String::as_str).collect::<Vec<_>>(),
        ["podSelector"],
        "no namespaceSelector or ipBlock widens it"
    );
    let from = &peer["podSelector"]["matchLabels"];
    assert!(!from.as_object().unwrap().is_empty());
    assert!(labels_match(from, operator_labels));
    assert!(!labels_match(from, emulator_labels));
    assert_eq!(from, &operator["spec"]["selector"]["matchLabels"]);
    let container_port =
        &emulator["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"];
    assert_eq!(
        rules[0]["ports"],
        serde_json::json!([{ "port": container_port, "protocol": "TCP" }])
    );
}

/// A `PUT` with a fault configuration to `http://addr{path}`, with `Bearer
/// key` if given; the answer's status.
fn put_fault(addr: std::net::SocketAddr, path: &str, key: Option<&str>) -> u16 {
    use std::io::{Read, Write};
    let body = r#"{"latencyMs":1}"#;
    let auth = key
        .map(|k| format!("Authorization: Bearer {k}\r\n"))
        .unwrap_or_default();
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    write!(
        stream,
        "PUT {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    answer
        .split_whitespace()
        .nth(1)
        .and_then(|status| status.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP answer: {answer:?}"))
}

/// The chart's emulator container, run as the chart runs it (its args, its
/// env with `env` for what Kubernetes would fill in), on a free loopback port.
struct ChartEmulator {
    child: std::process::Child,
    addr: std::net::SocketAddr,
    _state: tempfile::TempDir,
}

impl Drop for ChartEmulator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn run_chart_emulator(emulator: &Value, env: &[(&str, &str)]) -> ChartEmulator {
    let state = tempfile::tempdir().unwrap();
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let args: Vec<String> = args_of(emulator)
        .into_iter()
        .map(|arg| {
            if arg.starts_with("--emulator-listen=") {
                format!("--emulator-listen={addr}")
            } else if arg.starts_with("--emulator-state=") {
                format!(
                    "--emulator-state={}",
                    state.path().join("state.json").display()
                )
            } else {
                arg
            }
        })
        .collect();
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_dbops"));
    command
        .args(&args)
        .env_remove("DBOPS_EMULATOR_FAULTS_KEY")
        .env_remove("DBOPS_EMULATOR_LISTEN")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::inherit());
    // Only the env the chart sets; its Secret references are filled in by `env`.
    let chart_env = emulator["spec"]["template"]["spec"]["containers"][0]["env"]
        .as_array()
        .unwrap();
    for var in chart_env {
        let name = var["name"].as_str().unwrap();
        if let Some(value) = var["value"].as_str() {
            command.env(name, value);
        } else {
            let (_, value) = env
                .iter()
                .find(|(n, _)| *n == name)
                .unwrap_or_else(|| panic!("the test gives no value for {name}"));
            command.env(name, value);
        }
    }
    for (name, value) in env {
        command.env(name, value);
    }
    let child = command.spawn().unwrap();
    let running = ChartEmulator {
        child,
        addr,
        _state: state,
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while std::net::TcpStream::connect(addr).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "the emulator never listened on {addr} (args {args:?})"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    running
}

#[test]
fn the_charts_emulator_sets_faults_only_with_a_key() {
    let docs = render(&["--set", "emulator.enabled=true"]);
    let (emulator, _) = emulator_and_operator(&docs);
    let args = args_of(emulator);
    assert!(
        args.contains(&"--emulator-allow-faults=false".to_string()),
        "{args:?}"
    );
    let demo_key = of_kind(&docs, "Secret")
        .into_iter()
        .find_map(|s| s["stringData"]["apiKey"].as_str())
        .expect("the provider's Secret holds the demo key");
    // Even with the environment asking for open faults, the chart's explicit
    // flag wins: no key, 401; the infrai API's own key sets infrai's faults.
    let running = run_chart_emulator(emulator, &[("DBOPS_EMULATOR_ALLOW_FAULTS", "true")]);
    assert_eq!(put_fault(running.addr, "/_faults/infrai", None), 401);
    assert_eq!(
        put_fault(running.addr, "/_faults/infrai", Some("guess")),
        403
    );
    assert_eq!(put_fault(running.addr, "/_faults/db9", Some(demo_key)), 403);
    assert_eq!(
        put_fault(running.addr, "/_faults/infrai", Some(demo_key)),
        204
    );
    drop(running);

    // With a faults key from a Secret, only that key.
    let docs = render(&[
        "--set",
        "emulator.enabled=true",
        "--set",
        "emulator.faultsKey.secretName=emulator-faults",
    ]);
    let (emulator, _) = emulator_and_operator(&docs);
    let env = &emulator["spec"]["template"]["spec"]["containers"][0]["env"];
    let from_secret = env
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == "DBOPS_EMULATOR_FAULTS_KEY")
        .expect("the faults key is passed in the environment");
    assert_eq!(
        from_secret["valueFrom"]["secretKeyRef"],
        serde_json::json!({ "name": "emulator-faults", "key": "faultsKey" })
    );
    let running = run_chart_emulator(emulator, &[("DBOPS_EMULATOR_FAULTS_KEY", "k-faults")]);
    assert_eq!(put_fault(running.addr, "/_faults/infrai", None), 401);
    assert_eq!(
        put_fault(running.addr, "/_faults/infrai", Some(demo_key)),
        403
    );
    assert_eq!(
        put_fault(running.addr, "/_faults/capydb", Some("k-faults")),
        204
    );
}

#[test]
fn the_emulator_claim_takes_a_storage_class_name_or_none() {
    let claim_class = |extra: &[&str]| {
        let mut args = vec!["--set", "emulator.enabled=true"];
        args.extend_from_slice(extra);
        let docs = render(&args);
        let claims = of_kind(&docs, "PersistentVolumeClaim");
        assert_eq!(claims.len(), 1);
        claims[0]["spec"].get("storageClassName").cloned()
    };
    // Unset: the cluster's default StorageClass.
    assert_eq!(claim_class(&[]), None);
    assert_eq!(
        claim_class(&["--set", "emulator.persistence.storageClassName=fast"]),
        Some(Value::from("fast"))
    );
    // "-": no class at all, so the claim binds a PersistentVolume made by hand.
    assert_eq!(
        claim_class(&["--set", "emulator.persistence.storageClassName=-"]),
        Some(Value::from(""))
    );
    // The older name still works.
    assert_eq!(
        claim_class(&["--set", "emulator.persistence.storageClass=slow"]),
        Some(Value::from("slow"))
    );
}

#[test]
fn uninstall_keeps_the_emulators_objects_and_the_hook_may_touch_only_those() {
    let docs = render(&["--set", "emulator.enabled=true"]);
    let keep = |kind: &str| {
        of_kind(&docs, kind)
            .iter()
            .filter(|d| d["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep")
            .map(|d| d["metadata"]["name"].as_str().unwrap().to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(keep("DatabaseProvider"), ["emulator"]);
    assert_eq!(keep("Secret"), ["dbops-emulator-credentials"]);
    assert_eq!(keep("PersistentVolumeClaim"), ["dbops-emulator"]);
    assert!(keep("Deployment").is_empty() && keep("ClusterRole").is_empty());

    let hooks: Vec<&Value> = docs
        .iter()
        .filter(|d| d["metadata"]["annotations"]["helm.sh/hook"] == "pre-delete")
        .collect();
    let job = hooks
        .iter()
        .find(|d| d["kind"] == "Job")
        .expect("a hook Job");
    let args: Vec<&str> = job["spec"]["template"]["spec"]["containers"][0]["args"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(
        &args[..5],
        [
            "before-uninstall",
            "--namespace=dbops-system",
            "--provider=emulator",
            "--secret=dbops-emulator-credentials",
            "--volume-claim=dbops-emulator",
        ]
    );
    // Every write the hook may make names its object: it can delete nothing else.
    for role in hooks
        .iter()
        .filter(|d| d["kind"] == "Role" || d["kind"] == "ClusterRole")
    {
        for rule in role["rules"].as_array().unwrap() {
            let verbs = strings(&rule["verbs"]);
            if verbs.contains("delete") || verbs.contains("get") {
                assert!(
                    rule["resourceNames"]
                        .as_array()
                        .is_some_and(|n| !n.is_empty()),
                    "{rule}"
                );
            } else {
                assert_eq!(verbs, BTreeSet::from(["list"]), "{rule}");
            }
        }
    }
    // The hook's pod passes Pod Security `restricted` like the operator's.
    let pod = &job["spec"]["template"]["spec"];
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    let container = &pod["containers"][0]["securityContext"];
    assert_eq!(container["allowPrivilegeEscalation"], false);
    assert_eq!(container["capabilities"]["drop"][0], "ALL");

    // Without the emulator there is nothing to keep and no hook.
    let plain = render(&[]);
    assert!(
        plain
            .iter()
            .all(|d| d["metadata"]["annotations"]["helm.sh/hook"].is_null())
    );
}

/// The rules that grant `verb` on `resource` of API group `group`, in `docs`.
fn rules_granting<'a>(
    docs: &'a [Value],
    group: &str,
    resource: &str,
    verb: &str,
) -> Vec<&'a Value> {
    docs.iter()
        .filter(|d| matches!(d["kind"].as_str(), Some("ClusterRole" | "Role")))
        .flat_map(|d| d["rules"].as_array().into_iter().flatten())
        .filter(|r| {
            strings(&r["apiGroups"]).contains(group)
                && strings(&r["resources"]).contains(resource)
                && strings(&r["verbs"]).contains(verb)
        })
        .collect()
}

#[test]
fn restarting_workloads_on_rotation_is_granted_only_when_the_value_says_so() {
    let default = render(&[]);
    for resource in ["deployments", "statefulsets"] {
        assert!(
            rules_granting(&default, "apps", resource, "patch").is_empty(),
            "no {resource} patch by default"
        );
    }
    let enabled = render(&["--set", "rollout.enabled=true"]);
    for resource in ["deployments", "statefulsets"] {
        for verb in ["get", "patch"] {
            assert!(
                !rules_granting(&enabled, "apps", resource, verb).is_empty(),
                "rollout.enabled grants {verb} on {resource}"
            );
        }
    }
    // In namespace-scoped mode, only in the listed namespaces (Roles).
    let scoped = render(&[
        "--set",
        "rollout.enabled=true",
        "--set",
        "watchNamespaces={team-a}",
    ]);
    let granting = rules_granting(&scoped, "apps", "deployments", "patch");
    assert!(!granting.is_empty());
    let cluster_wide = of_kind(&scoped, "ClusterRole")
        .into_iter()
        .flat_map(|d| d["rules"].as_array().into_iter().flatten())
        .any(|r| strings(&r["apiGroups"]).contains("apps"));
    assert!(
        !cluster_wide,
        "no cluster-wide grant on apps in namespace-scoped mode"
    );
}
