//! Connection templates are a namespace user's input: a runaway one stalls
//! its own resource at once, through the whole operator
//! (`dbops::operator::run`), and every other resource goes on.

mod support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use dbops::api::v1alpha1::{ConnectionSecretTarget, DatabaseProject, DatabaseProjectSpec};
use dbops::controllers::conditions::{READY, STALLED, reason};
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, PostParams};
use support::{Harness, NS, start_operator, wait_for};

/// The template of the issue: two nested loops writing output, which took
/// the operator to 11 GiB and held every other reconcile for a minute.
const RUNAWAY: &str =
    "{% for i in range(100000) %}{% for j in range(100000) %}{{ uri }}{% endfor %}{% endfor %}";

fn project(name: &str, keys: &[(&str, &str)]) -> DatabaseProject {
    DatabaseProject::new(
        name,
        DatabaseProjectSpec {
            write_connection_secret_to: Some(ConnectionSecretTarget {
                name: format!("{name}-db"),
                keys: keys
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect::<BTreeMap<_, _>>(),
                ..Default::default()
            }),
            ..Default::default()
        },
    )
}

/// `(status, reason, message)` of condition `type_`, if there is one.
fn condition(p: &DatabaseProject, type_: &str) -> Option<(String, String, String)> {
    let c = p.status.as_ref()?.conditions.get(type_)?;
    Some((c.status.clone(), c.reason.clone(), c.message.clone()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runaway_template_stalls_its_own_project_at_once_and_the_others_go_on() {
    let h = Harness::new().await;
    let (stop, task) = start_operator(&h);
    let projects: Api<DatabaseProject> = Api::namespaced(h.client.clone(), NS);
    let secrets: Api<Secret> = Api::namespaced(h.client.clone(), NS);

    let started = Instant::now();
    projects
        .create(
            &PostParams::default(),
            &project("runaway", &[("RUNAWAY", RUNAWAY), ("DB_URL", "{{ uri }}")]),
        )
        .await
        .unwrap();
    projects
        .create(
            &PostParams::default(),
            &project(
                "good",
                &[
                    ("DB_URL", "{{ pooledUri }}"),
                    ("POOLED", "{% if hasPooler %}yes{% else %}no{% endif %}"),
                ],
            ),
        )
        .await
        .unwrap();

    let (_, _, message) = wait_for("the runaway project Stalled", || async {
        let p = projects.get("runaway").await.unwrap();
        condition(&p, STALLED).filter(|(status, _, _)| status == "True")
    })
    .await;
    let stalled_after = started.elapsed();
    let p = projects.get("runaway").await.unwrap();
    assert_eq!(
        condition(&p, STALLED)
            .map(|(_, reason, _)| reason)
            .as_deref(),
        Some(reason::INVALID_CONNECTION_TEMPLATE)
    );
    assert!(
        message.contains("\"RUNAWAY\"")
            && message.contains("loops (`{% for %}`) are not allowed in connection templates"),
        "{message}"
    );
    // Within a second of its creation, with the vendor project made first
    // (about a second: the machine may be busy with other builds).
    assert!(
        stalled_after < Duration::from_secs(2),
        "stalled after {stalled_after:?}"
    );
    eprintln!("the runaway project was Stalled {stalled_after:?} after its creation");

    let good = wait_for("the good project Ready", || async {
        let p = projects.get("good").await.unwrap();
        p.status
            .as_ref()
            .is_some_and(|s| s.conditions.is_true(READY))
            .then_some(p)
    })
    .await;
    let ready_after = started.elapsed();
    eprintln!("the good project was Ready {ready_after:?} after the runaway one's creation");
    assert!(ready_after < Duration::from_secs(5), "{ready_after:?}");
    assert_eq!(
        condition(&good, STALLED).map(|(status, _, _)| status),
        Some("False".into())
    );
    let secret = secrets.get("good-db").await.unwrap();
    let data = secret.data.unwrap();
    assert!(data.contains_key("DB_URL") && data.contains_key("uri"));
    let pooled: &[u8] = if data.contains_key("pooledUri") {
        b"yes"
    } else {
        b"no"
    };
    assert_eq!(data["POOLED"].0, pooled);

    // The runaway project wrote no Secret, and still stalls on its template.
    assert!(secrets.get_opt("runaway-db").await.unwrap().is_none());
    let p = projects.get("runaway").await.unwrap();
    assert_eq!(
        condition(&p, READY).map(|(status, _, _)| status),
        Some("False".into())
    );

    // Shutdown is not held by anything the template started.
    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("operator stops on shutdown")
        .unwrap();
}
