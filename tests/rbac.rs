//! Least privilege: every Kubernetes API call the operator makes during a full
//! run of every controller is allowed by the chart's RBAC, and (almost) every
//! permission the chart grants is actually used.

mod support;
mod tools;

use std::collections::BTreeSet;
use std::time::Duration;

use dbops::api::v1alpha1::{
    ByokCredential, DatabaseBranch, DatabaseProject, DatabaseProvider, DatabaseRole,
    DatabaseSnapshot, DatabaseSnapshotSchedule,
};
use dbops::controllers::{Managed, Settings};
use dbops::operator::{LeaderElection, Options};
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use support::{Harness, NS};

/// (API group, resource[/subresource], verb, namespace or "" for cluster-scoped).
type Call = (String, String, String, String);

fn to_call(method: &str, path: &str, watch: bool) -> Option<Call> {
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (group, rest) = match segs.as_slice() {
        ["api", _, rest @ ..] => (String::new(), rest),
        ["apis", g, _, rest @ ..] => (g.to_string(), rest),
        _ => return None,
    };
    let (namespace, rest) = match rest {
        ["namespaces", ns, rest @ ..] if !rest.is_empty() => (ns.to_string(), rest),
        rest => (String::new(), rest),
    };
    let (resource, named) = match rest {
        [plural] => (plural.to_string(), false),
        [plural, _] => (plural.to_string(), true),
        [plural, _, sub] => (format!("{plural}/{sub}"), true),
        _ => return None,
    };
    let verb = match (method, named, watch) {
        ("GET", true, _) => "get",
        ("GET", false, true) => "watch",
        ("GET", false, false) => "list",
        ("POST", _, _) => "create",
        ("PUT", _, _) => "update",
        ("PATCH", _, _) => "patch",
        ("DELETE", _, _) => "delete",
        _ => return None,
    };
    Some((group, resource, verb.to_string(), namespace))
}

/// (group, resource, verb, namespace-or-"*") that the chart's default render
/// grants the operator's ServiceAccount: the rules of the roles bound to it
/// (the tenants' aggregated roles are bound to nobody and grant it nothing).
fn granted() -> BTreeSet<Call> {
    let docs = tools::render(&[]);
    let mut out = BTreeSet::new();
    for (doc, scope) in tools::roles_bound_to_operator(&docs) {
        for rule in doc["rules"].as_array().unwrap() {
            let strings = |v: &Value| -> Vec<String> {
                v.as_array()
                    .unwrap()
                    .iter()
                    .map(|s| s.as_str().unwrap().to_string())
                    .collect()
            };
            for g in strings(&rule["apiGroups"]) {
                for r in strings(&rule["resources"]) {
                    for v in strings(&rule["verbs"]) {
                        out.insert((g.clone(), r.clone(), v, scope.clone()));
                    }
                }
            }
        }
    }
    out
}

fn allowed(call: &Call, rules: &BTreeSet<Call>) -> bool {
    let (g, r, v, ns) = call;
    rules.contains(&(g.clone(), r.clone(), v.clone(), "*".to_string()))
        || (!ns.is_empty() && rules.contains(&(g.clone(), r.clone(), v.clone(), ns.clone())))
}

async fn wait<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..400 {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for {what}");
}

fn object<K: serde::de::DeserializeOwned>(value: Value) -> K {
    serde_json::from_value(value).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_call_is_allowed_by_the_chart_and_every_grant_is_used() {
    let h = Harness::new().await;
    h.kube.clear_log(); // the harness's own setup (provider, its Secret)
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let options = Options {
        settings: Settings {
            base_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_millis(300),
            ..Settings::default()
        },
        instance: Some("rbac".into()),
        leader_election: Some(LeaderElection {
            lease_name: "dbops-leader".into(),
            // The chart's release namespace in the default render.
            lease_namespace: support::PROVIDER_NAMESPACE.into(),
            identity: "rbac".into(),
            lease_duration: Duration::from_secs(5),
            renew_grace: Duration::from_secs(2),
        }),
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
    let test = h.kube.test_client();
    let projects: Api<DatabaseProject> = Api::namespaced(test.clone(), NS);
    let branches: Api<DatabaseBranch> = Api::namespaced(test.clone(), NS);
    let snapshots: Api<DatabaseSnapshot> = Api::namespaced(test.clone(), NS);
    let credentials: Api<ByokCredential> = Api::namespaced(test.clone(), NS);
    let secrets: Api<Secret> = Api::namespaced(test.clone(), NS);
    let roles: Api<DatabaseRole> = Api::namespaced(test.clone(), NS);

    // Every kind, through create, Ready, a rename of a Secret, a rotation and deletion.
    let providers: Api<DatabaseProvider> = Api::all(test.clone());
    providers
        .patch(
            "default",
            &PatchParams::default(),
            &Patch::Merge(&json!({ "spec": { "byokPolicy": { "mode": "byok_only" } } })),
        )
        .await
        .unwrap();
    projects
        .create(
            &pp,
            &object(json!({ "metadata": { "name": "p" }, "spec": {} })),
        )
        .await
        .unwrap();
    branches
        .create(
            &pp,
            &object(
                json!({ "metadata": { "name": "b" }, "spec": { "projectRef": { "name": "p" } } }),
            ),
        )
        .await
        .unwrap();
    // A branch that fails (its external id does not exist): failures are reported
    // from the latest object, which needs `get` on branches.
    branches
        .create(
            &pp,
            &object(json!({ "metadata": { "name": "bad" }, "spec": { "projectRef": { "name": "p" }, "externalId": "br_nope" } })),
        )
        .await
        .unwrap();
    // A branch that expires: the operator deletes the resource itself.
    branches
        .create(
            &pp,
            &object(json!({ "metadata": { "name": "e" }, "spec": { "projectRef": { "name": "p" }, "expireAfter": "1s" } })),
        )
        .await
        .unwrap();
    snapshots
        .create(
            &pp,
            &object(
                json!({ "metadata": { "name": "s" }, "spec": { "projectRef": { "name": "p" } } }),
            ),
        )
        .await
        .unwrap();
    projects
        .create(
            &pp,
            &object(json!({ "metadata": { "name": "r" }, "spec": { "restoreFrom": { "snapshotRef": { "name": "s" } } } })),
        )
        .await
        .unwrap();
    secrets
        .create(
            &pp,
            &object(
                json!({ "metadata": { "name": "key" }, "stringData": { "api_key": "sk-one" } }),
            ),
        )
        .await
        .unwrap();
    credentials
        .create(
            &pp,
            &object(json!({ "metadata": { "name": "c" }, "spec": { "vendor": "neon", "alias": "a", "credentialsSecretRef": { "name": "key" } } })),
        )
        .await
        .unwrap();
    projects
        .create(
            &pp,
            &object(json!({ "metadata": { "name": "bp" }, "spec": { "mode": "byok", "vendor": "neon", "byokCredentialRef": { "name": "c" } } })),
        )
        .await
        .unwrap();
    wait("everything Ready", || async {
        projects.get("bp").await.is_ok_and(|p| p.is_ready())
            && projects.get("r").await.is_ok_and(|p| p.is_ready())
            && branches.get("b").await.is_ok_and(|b| b.is_ready())
            && credentials.get("c").await.is_ok_and(|c| c.is_ready())
            && providers
                .get("default")
                .await
                .is_ok_and(|p| p.status.is_some_and(|s| s.conditions.is_true("Ready")))
    })
    .await;
    wait("the expired branch gone", || async {
        branches.get_opt("e").await.unwrap().is_none()
    })
    .await;
    projects
        .patch(
            "p",
            &PatchParams::default(),
            &Patch::Merge(&json!({ "spec": { "writeConnectionSecretTo": { "name": "renamed" } } })),
        )
        .await
        .unwrap();
    wait("Secret renamed", || async {
        secrets.get_opt("p-connection").await.unwrap().is_none()
    })
    .await;
    secrets
        .patch(
            "key",
            &PatchParams::default(),
            &Patch::Merge(&json!({ "stringData": { "api_key": "sk-two" } })),
        )
        .await
        .unwrap();
    wait("rotated", || async {
        credentials
            .get("c")
            .await
            .is_ok_and(|c| c.status.is_some_and(|s| s.last_rotated_at.is_some()))
    })
    .await;
    // A schedule of project p takes a snapshot at once; deleted with its
    // snapshots.
    let schedules: Api<DatabaseSnapshotSchedule> = Api::namespaced(test.clone(), NS);
    schedules
        .create(
            &pp,
            &object(json!({ "metadata": { "name": "sched" }, "spec": { "projectRef": { "name": "p" }, "interval": "1h", "deleteSnapshotsWithSchedule": true } })),
        )
        .await
        .unwrap();
    wait("the schedule's first snapshot", || async {
        schedules.get("sched").await.is_ok_and(|s| {
            s.status
                .is_some_and(|s| s.last_successful_snapshot.is_some())
        })
    })
    .await;
    // One that fails (a bad cron expression) is reported from the latest
    // object, which needs `get`.
    schedules
        .create(
            &pp,
            &object(json!({ "metadata": { "name": "bad-sched" }, "spec": { "projectRef": { "name": "p" }, "schedule": "every night at three" } })),
        )
        .await
        .unwrap();
    wait("the bad schedule reported", || async {
        schedules
            .get("bad-sched")
            .await
            .is_ok_and(|s| s.status.is_some_and(|s| s.conditions.is_true("Stalled")))
    })
    .await;
    for name in ["sched", "bad-sched"] {
        schedules
            .delete(name, &DeleteParams::default())
            .await
            .unwrap();
    }
    wait("the schedules gone", || async {
        schedules.get_opt("sched").await.unwrap().is_none()
            && schedules.get_opt("bad-sched").await.unwrap().is_none()
    })
    .await;
    // A role of project p: the emulated vendor has no SQL channel, so it
    // stalls; deleting p deletes it first.
    roles
        .create(
            &pp,
            &object(
                json!({ "metadata": { "name": "rl" }, "spec": { "projectRef": { "name": "p" } } }),
            ),
        )
        .await
        .unwrap();
    wait("the role reported", || async {
        roles
            .get("rl")
            .await
            .is_ok_and(|r| r.status.is_some_and(|s| s.conditions.is_true("Stalled")))
    })
    .await;
    for name in ["r", "p", "bp"] {
        projects
            .delete(name, &DeleteParams::default())
            .await
            .unwrap();
    }
    wait("the failing branch reported", || async {
        branches
            .get("bad")
            .await
            .is_ok_and(|b| b.status.is_some_and(|s| s.conditions.is_true("Stalled")))
    })
    .await;
    branches
        .delete("b", &DeleteParams::default())
        .await
        .unwrap();
    branches
        .delete("bad", &DeleteParams::default())
        .await
        .unwrap();
    snapshots
        .delete("s", &DeleteParams::default())
        .await
        .unwrap();
    credentials
        .delete("c", &DeleteParams::default())
        .await
        .unwrap();
    wait("all deleted", || async {
        projects
            .list(&Default::default())
            .await
            .unwrap()
            .items
            .is_empty()
            && branches
                .list(&Default::default())
                .await
                .unwrap()
                .items
                .is_empty()
            && credentials
                .list(&Default::default())
                .await
                .unwrap()
                .items
                .is_empty()
            && roles
                .list(&Default::default())
                .await
                .unwrap()
                .items
                .is_empty()
    })
    .await;
    let _ = stop.send(());
    let _ = tokio::time::timeout(Duration::from_secs(10), task).await;

    // Only the operator's own requests (the test's client marks its own).
    let operator_calls: BTreeSet<Call> = h
        .kube
        .requests()
        .into_iter()
        .filter(|r| !r.from_test)
        .filter_map(|r| to_call(r.method.as_str(), &r.path, r.watch))
        .collect();
    let rules = granted();
    let mut denied = Vec::new();
    for call in &operator_calls {
        if !allowed(call, &rules) {
            denied.push(call.clone());
        }
    }
    assert!(
        denied.is_empty(),
        "calls the chart does not allow: {denied:#?}"
    );

    // Every grant is used, except these (with reasons).
    let unused_by_design: &[(&str, &str, &str, &str)] = &[
        // Server-side apply can create a Secret; clusters check `create` for that.
        ("", "secrets", "create", "*"),
        // The operator's own Events in its namespace (when it reports about itself).
        ("events.k8s.io", "events", "create", "dbops-system"),
        ("events.k8s.io", "events", "patch", "dbops-system"),
        // Event series updates happen only when the same Event repeats within minutes.
        ("events.k8s.io", "events", "patch", "*"),
        // Provider credential Secrets are read through the cluster-wide `get` here.
        ("", "secrets", "get", "dbops-system"),
        // kube-lease-manager creates the Lease only when it does not exist yet.
        ("coordination.k8s.io", "leases", "create", "dbops-system"),
    ];
    let used: BTreeSet<(String, String, String)> = operator_calls
        .iter()
        .map(|(g, r, v, _)| (g.clone(), r.clone(), v.clone()))
        .collect();
    let mut unused = Vec::new();
    for (g, r, v, scope) in &rules {
        if used.contains(&(g.clone(), r.clone(), v.clone())) {
            continue;
        }
        if unused_by_design
            .iter()
            .any(|(ug, ur, uv, us)| ug == g && ur == r && uv == v && us == scope)
        {
            continue;
        }
        unused.push((g.clone(), r.clone(), v.clone(), scope.clone()));
    }
    assert!(
        unused.is_empty(),
        "the chart grants permissions nothing used: {unused:#?}"
    );
}
