//! External tools some tests drive (helm, lua, kubectl). A missing tool fails
//! the test with instructions; it never counts as a pass.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn find(names: &[&str], local: &str) -> Option<PathBuf> {
    let local = repo().join(local);
    if local.is_file() {
        return Some(local);
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .flat_map(|dir| names.iter().map(move |n| dir.join(n)))
        .find(|p| p.is_file())
}

/// The helm binary: `helm` on PATH or `.tools/helm` (see scripts/fetch-tools.sh).
pub fn helm() -> PathBuf {
    find(&["helm"], ".tools/helm").unwrap_or_else(|| {
        panic!(
            "helm not found: run ./scripts/fetch-tools.sh (or install helm) to run the chart tests"
        )
    })
}

/// A Lua 5.x interpreter.
pub fn lua() -> PathBuf {
    find(&["lua5.4", "lua5.3", "lua"], ".tools/lua").unwrap_or_else(|| {
        panic!("lua not found: apt-get install lua5.4 (or run ./scripts/fetch-tools.sh as root)")
    })
}

/// kubectl (client only), for `kubectl kustomize`.
pub fn kubectl() -> PathBuf {
    find(&["kubectl"], ".tools/kubectl")
        .unwrap_or_else(|| panic!("kubectl not found: install the kubectl client to run this test"))
}

/// Runs `program args...` in the repository and returns stdout, or panics with stderr.
pub fn run(program: &Path, args: &[&str]) -> String {
    let out = Command::new(program)
        .args(args)
        .current_dir(repo())
        .output()
        .expect("tool runs");
    assert!(
        out.status.success(),
        "{} {} failed: {}",
        program.display(),
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs and returns (success, stdout+stderr) without panicking.
pub fn try_run(program: &Path, args: &[&str]) -> (bool, String) {
    let out = Command::new(program)
        .args(args)
        .current_dir(repo())
        .output()
        .expect("tool runs");
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

/// The YAML documents of a stream, as JSON values (empty documents dropped).
pub fn documents(yaml: &str) -> Vec<serde_json::Value> {
    use serde::Deserialize;
    serde_yaml_ng::Deserializer::from_str(yaml)
        .map(|d| serde_json::Value::deserialize(d).expect("valid YAML"))
        .filter(|v| !v.is_null())
        .collect()
}

/// `helm template` of the chart with `extra` arguments.
pub fn render(extra: &[&str]) -> Vec<serde_json::Value> {
    let helm = helm();
    let mut args = vec![
        "template",
        "dbops",
        "charts/dbops",
        "--namespace",
        "dbops-system",
        "--kube-version",
        "1.33.0",
    ];
    args.extend_from_slice(extra);
    documents(&run(&helm, &args))
}

/// The ServiceAccount the operator's pods run as in a render: (namespace, name),
/// from the Deployment running `dbops run`.
pub fn operator_service_account(docs: &[serde_json::Value]) -> (String, String) {
    let operator = docs
        .iter()
        .find(|d| {
            d["kind"] == "Deployment"
                && d["spec"]["template"]["spec"]["containers"][0]["args"][0] == "run"
        })
        .expect("the render has the operator's Deployment");
    let namespace = operator["metadata"]["namespace"]
        .as_str()
        .expect("the Deployment has a namespace");
    let name = operator["spec"]["template"]["spec"]["serviceAccountName"]
        .as_str()
        .expect("the operator runs as a named ServiceAccount");
    (namespace.to_string(), name.to_string())
}

/// The Roles and ClusterRoles of a render that its bindings give the
/// operator's ServiceAccount, each with the scope it is granted in: `*` for
/// a ClusterRole bound by a ClusterRoleBinding, else the namespace of the
/// RoleBinding. Roles bound to nobody (the tenants' aggregated roles) grant
/// the operator nothing and are left out. A binding of the operator to a
/// role the render does not hold fails the test (its grants would be unseen).
pub fn roles_bound_to_operator(docs: &[serde_json::Value]) -> Vec<(&serde_json::Value, String)> {
    let (sa_namespace, sa_name) = operator_service_account(docs);
    let mut out = Vec::new();
    for binding in docs {
        let cluster_wide = match binding["kind"].as_str() {
            Some("ClusterRoleBinding") => true,
            Some("RoleBinding") => false,
            _ => continue,
        };
        let to_operator = binding["subjects"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|s| {
                s["kind"] == "ServiceAccount"
                    && s["name"] == sa_name
                    && s["namespace"] == sa_namespace
            });
        if !to_operator {
            continue;
        }
        let scope = if cluster_wide {
            "*".to_string()
        } else {
            binding["metadata"]["namespace"]
                .as_str()
                .expect("a RoleBinding has a namespace")
                .to_string()
        };
        let role_ref = &binding["roleRef"];
        let role = docs
            .iter()
            .find(|r| {
                r["kind"] == role_ref["kind"]
                    && r["metadata"]["name"] == role_ref["name"]
                    && (r["kind"] == "ClusterRole"
                        || r["metadata"]["namespace"].as_str() == Some(&scope))
            })
            .unwrap_or_else(|| {
                panic!(
                    "{} {} binds the operator to {} {}, which the chart does not render",
                    binding["kind"],
                    binding["metadata"]["name"],
                    role_ref["kind"],
                    role_ref["name"]
                )
            });
        out.push((role, scope));
    }
    out
}
