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
