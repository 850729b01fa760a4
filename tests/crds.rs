//! The generated CRDs: checked-in copies in sync, schemas useful to `kubectl`,
//! and the CEL rules doing what they say (evaluated with kube-cel, the same
//! rules the API server runs).

use std::collections::BTreeSet;
use std::path::Path;

use dbops::api::v1alpha1::all_crds;
use kube_cel::Validator;
use serde_json::{Value, json};

#[test]
fn checked_in_crds_match_the_rust_types() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("crds");
    let expected = dbops::crdgen::render_files().unwrap();
    for (name, yaml) in &expected {
        let on_disk = std::fs::read_to_string(dir.join(name)).unwrap_or_else(|_| {
            panic!("crds/{name} is missing: run `cargo run -- crdgen --out-dir crds`")
        });
        assert!(
            on_disk == *yaml,
            "crds/{name} is out of date: run `cargo run -- crdgen --out-dir crds`"
        );
    }
    let wanted: BTreeSet<_> = expected.iter().map(|(n, _)| n.clone()).collect();
    let present: BTreeSet<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(present, wanted, "crds/ holds exactly the generated CRDs");
}

fn schema(kind: &str) -> Value {
    let crd = all_crds()
        .into_iter()
        .find(|c| c.spec.names.kind == kind)
        .unwrap();
    serde_json::to_value(
        crd.spec.versions[0]
            .schema
            .as_ref()
            .unwrap()
            .open_api_v3_schema
            .as_ref()
            .unwrap(),
    )
    .unwrap()
}

fn object(kind: &str, spec: Value) -> Value {
    json!({ "apiVersion": "dbops.dev/v1alpha1", "kind": kind, "metadata": { "name": "x", "namespace": "ns" }, "spec": spec })
}

fn create_ok(kind: &str, spec: Value) -> bool {
    Validator::new()
        .validate(&schema(kind), &object(kind, spec), None)
        .is_ok()
}

fn update_ok(kind: &str, old: Value, new: Value) -> bool {
    Validator::new()
        .validate(&schema(kind), &object(kind, new), Some(&object(kind, old)))
        .is_ok()
}

fn project_defaults(mut spec: Value) -> Value {
    // What the API server's defaulting adds before validation.
    spec["providerRef"] = json!({ "name": "default" });
    spec["deletionPolicy"] = json!("Delete");
    spec
}

#[test]
fn project_fields_that_cannot_change_are_refused() {
    let old = project_defaults(json!({ "region": "eu-west-1", "vendor": "neon", "plan": "small" }));
    assert!(
        update_ok("DatabaseProject", old.clone(), old.clone()),
        "an unchanged spec is fine"
    );
    let mut retain = old.clone();
    retain["deletionPolicy"] = json!("Retain");
    assert!(
        update_ok("DatabaseProject", old.clone(), retain),
        "deletionPolicy may change"
    );
    let mut secret = old.clone();
    secret["writeConnectionSecretTo"] = json!({ "name": "other" });
    assert!(
        update_ok("DatabaseProject", old.clone(), secret),
        "the Secret name may change"
    );

    for (field, value) in [
        ("region", json!("us-east-1")),
        ("vendor", json!("supabase")),
        ("plan", json!("large")),
        ("postgresVersion", json!("17")),
        ("projectName", json!("renamed")),
        ("externalId", json!("prj_other")),
        ("providerRef", json!({ "name": "other" })),
    ] {
        let mut new = old.clone();
        new[field] = value;
        assert!(
            !update_ok("DatabaseProject", old.clone(), new),
            "{field} must be immutable"
        );
    }
    let mut removed = old.clone();
    removed.as_object_mut().unwrap().remove("region");
    assert!(
        !update_ok("DatabaseProject", old, removed),
        "removing region is a change too"
    );
}

#[test]
fn project_byok_needs_a_vendor_and_a_credential() {
    assert!(!create_ok(
        "DatabaseProject",
        project_defaults(json!({ "mode": "byok" }))
    ));
    assert!(!create_ok(
        "DatabaseProject",
        project_defaults(json!({ "mode": "byok", "vendor": "neon" }))
    ));
    assert!(create_ok(
        "DatabaseProject",
        project_defaults(
            json!({ "mode": "byok", "vendor": "neon", "byokCredentialRef": { "name": "k" } })
        )
    ));
    assert!(create_ok(
        "DatabaseProject",
        project_defaults(json!({ "mode": "managed" }))
    ));
}

#[test]
fn project_restore_source_is_one_of_ref_or_id() {
    let both = json!({ "restoreFrom": { "snapshotRef": { "name": "s" }, "snapshotId": "snap_1" } });
    assert!(!create_ok("DatabaseProject", project_defaults(both)));
    let none = json!({ "restoreFrom": {} });
    assert!(!create_ok("DatabaseProject", project_defaults(none)));
    let one = json!({ "restoreFrom": { "snapshotRef": { "name": "s" } } });
    assert!(create_ok("DatabaseProject", project_defaults(one)));
    let adopt_and_restore =
        json!({ "externalId": "prj_1", "restoreFrom": { "snapshotId": "snap_1" } });
    assert!(!create_ok(
        "DatabaseProject",
        project_defaults(adopt_and_restore)
    ));
}

#[test]
fn a_snapshot_cannot_change_at_all() {
    let old =
        json!({ "projectRef": { "name": "p" }, "label": "nightly", "deletionPolicy": "Delete" });
    assert!(update_ok("DatabaseSnapshot", old.clone(), old.clone()));
    let mut relabel = old.clone();
    relabel["label"] = json!("weekly");
    assert!(!update_ok("DatabaseSnapshot", old, relabel));
}

#[test]
fn a_branch_keeps_its_project_and_name() {
    let old = json!({ "projectRef": { "name": "p" }, "branchName": "preview", "deletionPolicy": "Delete" });
    let mut moved = old.clone();
    moved["projectRef"] = json!({ "name": "q" });
    assert!(!update_ok("DatabaseBranch", old.clone(), moved));
    let mut renamed = old.clone();
    renamed["branchName"] = json!("other");
    assert!(!update_ok("DatabaseBranch", old.clone(), renamed));
    let mut retain = old.clone();
    retain["deletionPolicy"] = json!("Retain");
    assert!(update_ok("DatabaseBranch", old, retain));
}

#[test]
fn byok_bindings_need_a_scope_and_vendor_is_fixed() {
    let base = json!({
        "providerRef": { "name": "default" }, "vendor": "neon", "alias": "a",
        "credentialsSecretRef": { "name": "s" }, "enabled": true, "deletionPolicy": "Delete",
    });
    let mut empty_binding = base.clone();
    empty_binding["bindings"] = json!([{ "model": "m" }]);
    assert!(!create_ok("ByokCredential", empty_binding));
    let mut good = base.clone();
    good["bindings"] = json!([{ "module": "db" }]);
    assert!(create_ok("ByokCredential", good));
    let mut revendor = base.clone();
    revendor["vendor"] = json!("supabase");
    assert!(!update_ok("ByokCredential", base, revendor));
}

#[test]
fn every_kind_is_usable_from_kubectl() {
    for crd in all_crds() {
        let kind = &crd.spec.names.kind;
        assert_eq!(crd.spec.group, "dbops.dev");
        assert!(
            crd.spec
                .names
                .short_names
                .as_ref()
                .is_some_and(|s| !s.is_empty()),
            "{kind} has a short name"
        );
        assert_eq!(
            crd.spec.names.categories.as_deref(),
            Some(&["dbops".to_string()][..])
        );
        let version = &crd.spec.versions[0];
        assert!(
            version.subresources.as_ref().unwrap().status.is_some(),
            "{kind} has a status subresource"
        );
        let columns: Vec<_> = version
            .additional_printer_columns
            .as_ref()
            .unwrap()
            .iter()
            .map(|c| c.name.as_str())
            .collect();
        assert!(columns.contains(&"Age"), "{kind}: {columns:?}");
        if kind != "DatabaseProvider" {
            assert!(columns.contains(&"Ready"), "{kind}: {columns:?}");
            assert_eq!(crd.spec.scope, "Namespaced");
        } else {
            assert_eq!(crd.spec.scope, "Cluster");
        }
        let schema = serde_json::to_value(version.schema.as_ref().unwrap()).unwrap();
        let text = schema.to_string();
        assert!(
            !text.contains("nullable"),
            "{kind}: optional fields are not nullable"
        );
        assert!(
            !text.contains("Auto-generated derived type"),
            "{kind}: the root has a real description"
        );
        if kind != "DatabaseProvider" {
            let conditions =
                &schema["openAPIV3Schema"]["properties"]["status"]["properties"]["conditions"];
            assert_eq!(conditions["x-kubernetes-list-type"], "map", "{kind}");
            assert_eq!(
                conditions["x-kubernetes-list-map-keys"],
                json!(["type"]),
                "{kind}"
            );
        }
    }
}
