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

fn root_schema(
    crd: &k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
) -> Value {
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

fn schema(kind: &str) -> Value {
    let crd = all_crds()
        .into_iter()
        .find(|c| c.spec.names.kind == kind)
        .unwrap();
    root_schema(&crd)
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
fn connection_secret_keys_are_secret_keys_and_go_templates_are_explained() {
    let with_keys = |keys: Value| {
        project_defaults(json!({ "writeConnectionSecretTo": { "name": "db", "keys": keys } }))
    };
    assert!(create_ok(
        "DatabaseProject",
        with_keys(json!({ "DB_URL": "{{ pooledUri }}", "x.y-z_1": "{{host}}" }))
    ));
    assert!(!create_ok(
        "DatabaseProject",
        with_keys(json!({ "bad key": "{{ uri }}" }))
    ));
    assert!(!create_ok(
        "DatabaseProject",
        with_keys(json!({ "DB_URL": "{{ .pooledUri }}" }))
    ));
    assert!(!create_ok(
        "DatabaseProject",
        with_keys(json!({ "DB_URL": "{{- .uri }}" }))
    ));
    let preset = |name: &str| {
        project_defaults(json!({ "writeConnectionSecretTo": { "name": "db", "preset": name } }))
    };
    for name in ["default", "libpq", "prisma", "servicebinding", "jdbc"] {
        assert!(create_ok("DatabaseProject", preset(name)), "{name}");
    }
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
        if kind == "VendorClaim" {
            // The operator's own record, for cluster admins: no status, and
            // not in the `dbops` category that lists what users make.
            assert_eq!(crd.spec.scope, "Cluster");
            assert!(crd.spec.names.categories.is_none());
            continue;
        }
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

/// The schema a CEL path (`a.b.c`, from the rule's node) resolves to.
fn resolve<'a>(node: &'a Value, path: &[&str]) -> Option<&'a Value> {
    let mut current = node;
    for segment in path {
        current = current.get("properties")?.get(*segment)?;
    }
    Some(current)
}

/// Where `schema` lets a rule read an unbounded amount of data: a string
/// without `maxLength`, a list without `maxItems`, a map without
/// `maxProperties` (anywhere below it).
fn unbounded(schema: &Value, at: &str) -> Vec<String> {
    let mut out = Vec::new();
    match schema["type"].as_str() {
        Some("string") if schema.get("maxLength").is_none() => out.push(at.to_string()),
        Some("array") => {
            if schema.get("maxItems").is_none() {
                out.push(at.to_string());
            }
            out.extend(unbounded(&schema["items"], &format!("{at}[]")));
        }
        Some("object") => {
            if let Some(extra) = schema.get("additionalProperties").filter(|v| v.is_object()) {
                if schema.get("maxProperties").is_none() {
                    out.push(at.to_string());
                }
                out.extend(unbounded(extra, &format!("{at}{{}}")));
            }
            if let Some(props) = schema["properties"].as_object() {
                for (name, prop) in props {
                    out.extend(unbounded(prop, &format!("{at}.{name}")));
                }
            }
        }
        _ => {}
    }
    out
}

/// The paths a rule reads: every `self.a.b` / `oldSelf.a.b` (a bare `self` is
/// the whole node), except inside `has(...)`, which only tests presence.
fn reads(rule: &str) -> Vec<Vec<String>> {
    let bytes = rule.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let rest = &rule[i..];
        let word = if rest.starts_with("oldSelf") {
            "oldSelf"
        } else if rest.starts_with("self") {
            "self"
        } else {
            ""
        };
        let boundary = i == 0
            || !(bytes[i - 1].is_ascii_alphanumeric()
                || bytes[i - 1] == b'_'
                || bytes[i - 1] == b'.');
        if word.is_empty() || !boundary {
            i += 1;
            continue;
        }
        let mut j = i + word.len();
        let mut path = Vec::new();
        while j < bytes.len() && bytes[j] == b'.' {
            let start = j + 1;
            let mut end = start;
            while end < bytes.len() && (bytes[end].is_ascii_alphanumeric() || bytes[end] == b'_') {
                end += 1;
            }
            if bytes.get(end) == Some(&b'(') {
                // `self.all(...)`, `self.matches(...)`: a call on what came before.
                break;
            }
            path.push(rule[start..end].to_string());
            j = end;
        }
        if !rule[..i].trim_end().ends_with("has(") {
            out.push(path);
        }
        i = j;
    }
    out
}

fn rules_in(schema: &Value, at: &str, out: &mut Vec<(String, String, Value)>) {
    for rule in schema["x-kubernetes-validations"]
        .as_array()
        .into_iter()
        .flatten()
    {
        out.push((
            at.to_string(),
            rule["rule"].as_str().unwrap().to_string(),
            schema.clone(),
        ));
    }
    if let Some(props) = schema["properties"].as_object() {
        for (name, prop) in props {
            rules_in(prop, &format!("{at}.{name}"), out);
        }
    }
    if schema.get("items").is_some() {
        rules_in(&schema["items"], &format!("{at}[]"), out);
    }
}

#[test]
fn every_cel_rule_reads_only_bounded_fields() {
    let mut checked = 0;
    for crd in all_crds() {
        let kind = crd.spec.names.kind.clone();
        let root = root_schema(&crd);
        let mut rules = Vec::new();
        rules_in(&root, "", &mut rules);
        for (at, rule, node) in rules {
            for path in reads(&rule) {
                let segments: Vec<&str> = path.iter().map(String::as_str).collect();
                let target = resolve(&node, &segments).unwrap_or_else(|| {
                    panic!("{kind}{at}: rule {rule:?} reads {path:?}, not in the schema")
                });
                let loose = unbounded(target, &format!("{at}.{}", path.join(".")));
                assert!(
                    loose.is_empty(),
                    "{kind}{at}: rule {rule:?} reads unbounded {loose:?}; add maxLength/maxItems/maxProperties"
                );
                checked += 1;
            }
        }
    }
    assert!(checked > 20, "the scan found the rules ({checked} reads)");
}

#[test]
fn the_bounded_field_check_catches_an_unbounded_read() {
    let node = json!({ "type": "object", "properties": {
        "free": { "type": "string" },
        "tags": { "type": "array", "items": { "type": "string", "maxLength": 5 } },
        "ok": { "type": "string", "maxLength": 10 },
    }});
    assert_eq!(
        reads("has(self.free) && self.ok == oldSelf.ok"),
        vec![vec!["ok".to_string()], vec!["ok".to_string()]]
    );
    assert_eq!(
        unbounded(resolve(&node, &["free"]).unwrap(), "x"),
        vec!["x"]
    );
    assert_eq!(
        unbounded(resolve(&node, &["tags"]).unwrap(), "x"),
        vec!["x"]
    );
    assert!(unbounded(resolve(&node, &["ok"]).unwrap(), "x").is_empty());
    assert_eq!(
        reads("self == oldSelf"),
        vec![Vec::<String>::new(), Vec::new()]
    );
}

#[test]
fn no_format_the_api_server_does_not_know() {
    let known = ["int32", "int64", "double", "float", "date-time", "byte"];
    for crd in all_crds() {
        let text = serde_json::to_value(&crd).unwrap();
        let mut formats = Vec::new();
        fn collect(v: &Value, out: &mut Vec<String>) {
            match v {
                Value::Object(map) => {
                    if let Some(Value::String(f)) = map.get("format") {
                        out.push(f.clone());
                    }
                    map.values().for_each(|v| collect(v, out));
                }
                Value::Array(items) => items.iter().for_each(|v| collect(v, out)),
                _ => {}
            }
        }
        collect(&text, &mut formats);
        for f in formats {
            assert!(
                known.contains(&f.as_str()),
                "{}: format {f:?}",
                crd.spec.names.kind
            );
        }
    }
    let provider = schema("DatabaseProvider");
    let rps = &provider["properties"]["spec"]["properties"]["requestBudget"]["properties"]["requestsPerSecond"];
    assert_eq!(rps["format"], "int64");
    assert!(rps["maximum"].as_f64().unwrap() <= f64::from(u32::MAX));
}

fn byok_spec(test_interval: &str) -> Value {
    json!({
        "providerRef": { "name": "default" }, "vendor": "neon", "alias": "a",
        "credentialsSecretRef": { "name": "s" }, "enabled": true, "deletionPolicy": "Delete",
        "testInterval": test_interval,
    })
}

/// What the API server admits for a duration field: its pattern and length
/// (checked here with the same regex) and its CEL minimum (kube-cel).
fn admitted(test_interval: &str) -> bool {
    let field = &schema("ByokCredential")["properties"]["spec"]["properties"]["testInterval"];
    let pattern = regex::Regex::new(field["pattern"].as_str().unwrap()).unwrap();
    let max = field["maxLength"].as_u64().unwrap() as usize;
    test_interval.chars().count() <= max
        && pattern.is_match(test_interval)
        && create_ok("ByokCredential", byok_spec(test_interval))
}

#[test]
fn every_duration_the_api_server_admits_is_one_the_operator_decodes() {
    for sample in [
        "1h",
        "90s",
        "1m",
        "59s",
        "0s",
        "1h30m",
        "1.5h",
        "720h",
        "abc",
        "",
        "-1h",
        "1d",
        "99999999999999999999h",
        "999999h",
        "1h1m1s1ms",
        "1h1m1s1ms1us",
        "60000ms",
        "5µs",
        "10m0s",
        " 1h",
        "1H",
    ] {
        let decoded = dbops::api::v1alpha1::interval::parse(sample).is_ok();
        assert_eq!(
            admitted(sample),
            decoded,
            "{sample:?}: admitted and decodable must agree"
        );
    }
    assert!(admitted("1h") && !admitted("59s") && !admitted("99999999999999999999h"));
}

fn branch_spec(expire_after: &str) -> Value {
    json!({
        "projectRef": { "name": "p" }, "deletionPolicy": "Delete", "expireAfter": expire_after,
    })
}

/// Why the API server refuses `expireAfter` (the failed rules' messages), or
/// `None` when it admits it (kube-cel runs the same rules).
fn expire_after_refused(expire_after: &str) -> Option<String> {
    let spec = branch_spec(expire_after);
    let errors = Validator::new()
        .validate(
            &schema("DatabaseBranch"),
            &object("DatabaseBranch", spec),
            None,
        )
        .err()?;
    Some(format!("{errors:?}"))
}

#[test]
fn a_branch_expire_after_is_a_duration_up_to_365_days() {
    for admitted in [
        "30m",
        "72h",
        "1h30m",
        "90s",
        "7d",
        "1d12h",
        "365d",
        "8760h",
        "525600m",
        "31536000s",
        "1s",
    ] {
        assert_eq!(expire_after_refused(admitted), None, "{admitted}");
    }
    for (refused, says) in [
        ("0s", "expireAfter must be longer than 0s"),
        ("0d0h", "expireAfter must be longer than 0s"),
        ("366d", "expireAfter must be at most 365d"),
        ("365d1s", "expireAfter must be at most 365d"),
        ("8761h", "expireAfter must be at most 365d"),
        (
            "3 days",
            "expireAfter is not a duration such as 30m, 72h, 1h30m or 7d",
        ),
        ("1w", "expireAfter is not a duration"),
        ("1.5h", "expireAfter is not a duration"),
        ("30m1h", "expireAfter is not a duration"),
        ("-1h", "expireAfter is not a duration"),
        ("", "expireAfter is not a duration"),
        ("1000d", "expireAfter is not a duration"),
    ] {
        let why = expire_after_refused(refused).unwrap_or_else(|| panic!("{refused:?} admitted"));
        assert!(why.contains(says), "{refused:?}: {why}");
    }
    // It may change: the expiry moves with it (no transition rule).
    let old = branch_spec("72h");
    assert!(update_ok("DatabaseBranch", old.clone(), branch_spec("96h")));
    let mut removed = old.clone();
    removed.as_object_mut().unwrap().remove("expireAfter");
    assert!(update_ok("DatabaseBranch", old, removed));
    let status = &schema("DatabaseBranch")["properties"]["status"]["properties"]["expiresAt"];
    assert_eq!(status["format"], "date-time");
}

#[test]
fn every_expire_after_the_api_server_admits_is_one_the_operator_parses() {
    let max =
        schema("DatabaseBranch")["properties"]["spec"]["properties"]["expireAfter"]["maxLength"]
            .as_u64()
            .unwrap() as usize;
    for sample in [
        "1s",
        "59s",
        "0s",
        "00s",
        "1m",
        "1h",
        "1d",
        "007d",
        "1d0h0m0s",
        "1d1h1m1s",
        "999d",
        "364d23h59m59s",
        "365d",
        "365d0s",
        "365d1s",
        "366d",
        "9999h",
        "99999h",
        "999999m",
        "99999999s",
        "999d9999h999999m99999999s",
        "1ms",
        "1µs",
        "1h1h",
        "h",
        "d",
        "1",
        "1D",
        " 1h",
        "1h ",
        "+1h",
        "P1D",
        "1 day",
        "1.5d",
        "",
    ] {
        let admitted = sample.chars().count() <= max && expire_after_refused(sample).is_none();
        let parsed = dbops::api::v1alpha1::expire_after::parse(sample).is_ok();
        assert_eq!(
            admitted, parsed,
            "{sample:?}: admitted and parsed must agree"
        );
    }
}

/// The `DatabaseRole` spec's admission rules (the kind ships no CRD until
/// its controller does; its schema is checked here already).
fn role_schema() -> Value {
    let settings = schemars::generate::SchemaSettings::openapi3().with(|s| {
        s.inline_subschemas = true;
    });
    let spec = serde_json::to_value(
        settings
            .into_generator()
            .into_root_schema_for::<dbops::api::v1alpha1::DatabaseRoleSpec>(),
    )
    .unwrap();
    json!({ "type": "object", "properties": { "spec": spec } })
}

fn role_ok(old: Option<Value>, spec: Value) -> bool {
    let old = old.map(|o| object("DatabaseRole", o));
    Validator::new()
        .validate(&role_schema(), &object("DatabaseRole", spec), old.as_ref())
        .is_ok()
}

#[test]
fn a_role_names_one_database_and_grants_only_what_it_may() {
    let good = json!({
        "projectRef": {"name": "shop"},
        "roleName": "reporting",
        "grants": [
            {"schema": "public", "privileges": ["SELECT"], "tables": ["orders"]},
            {"schema": "analytics", "privileges": ["USAGE", "SELECT"], "futureTables": true}
        ]
    });
    assert!(role_ok(None, good.clone()));
    let mut both = good.clone();
    both["branchRef"] = json!({"name": "preview"});
    assert!(!role_ok(None, both), "projectRef and branchRef together");
    let mut neither = good.clone();
    neither.as_object_mut().unwrap().remove("projectRef");
    assert!(!role_ok(None, neither), "no database at all");
    for schema in ["pg_catalog", "information_schema", "pg_toast"] {
        let mut system = good.clone();
        system["grants"][0]["schema"] = json!(schema);
        assert!(!role_ok(None, system), "{schema}");
    }
    for name in ["pg_monitor_x", "Reporting", "a-b", "1st", &"x".repeat(62)] {
        let mut bad = good.clone();
        bad["roleName"] = json!(name);
        assert!(!role_ok(None, bad), "{name}");
    }
    let mut schema_only_tables = good.clone();
    schema_only_tables["grants"][0]["privileges"] = json!(["USAGE"]);
    assert!(
        !role_ok(None, schema_only_tables),
        "tables need a table privilege"
    );
    let mut future_with_tables = good.clone();
    future_with_tables["grants"][0]["futureTables"] = json!(true);
    assert!(!role_ok(None, future_with_tables));
    let mut renamed = good.clone();
    renamed["roleName"] = json!("other");
    assert!(
        !role_ok(Some(good.clone()), renamed),
        "roleName is immutable"
    );
    let mut moved = good.clone();
    moved["projectRef"] = json!({"name": "elsewhere"});
    assert!(
        !role_ok(Some(good.clone()), moved),
        "projectRef is immutable"
    );
    let mut regranted = good.clone();
    regranted["grants"][0]["privileges"] = json!(["SELECT", "INSERT"]);
    assert!(role_ok(Some(good), regranted), "grants may change");
}
