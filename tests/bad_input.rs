//! Bad input: vendor answers that are malformed, truncated or huge are refused
//! with a clear error (never a panic), and bad resources never block good ones.

mod support;

use std::time::{Duration, Instant};

use axum::Router;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use dbops::api::v1alpha1::{DatabaseProject, ProviderApi};
use dbops::controllers::{Managed, Settings};
use dbops::providers::ProviderError;
use dbops::providers::http::{MAX_RESPONSE_BYTES, VendorHttp};
use dbops::providers::infrai::InfraiClient;
use kube::api::{Api, PostParams};
use secrecy::SecretString;
use serde_json::json;
use support::{Harness, NS};

async fn vendor_answering(status: StatusCode, body: Vec<u8>) -> InfraiClient {
    let app = Router::new().fallback(get(move || {
        let body = body.clone();
        async move { (status, [("content-type", "application/json")], body).into_response() }
    }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    InfraiClient::new(
        VendorHttp::new(
            ProviderApi::Infrai,
            &format!("http://{addr}"),
            &SecretString::from("k".to_string()),
            Duration::from_secs(5),
            None,
        )
        .unwrap(),
    )
}

#[tokio::test]
async fn malformed_truncated_and_huge_vendor_answers_are_refused_clearly() {
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("not JSON", b"<html>oops</html>".to_vec()),
        (
            "truncated",
            br#"{"id": "prj_1", "name": "x", "connection_ur"#.to_vec(),
        ),
        ("wrong types", br#"{"id": 42, "name": ["x"]}"#.to_vec()),
        ("missing id", br#"{"name": "x"}"#.to_vec()),
        ("empty", Vec::new()),
        (
            "deeply nested",
            format!("{}{}", "[".repeat(10_000), "]".repeat(10_000)).into_bytes(),
        ),
    ];
    for (what, body) in cases {
        let client = vendor_answering(StatusCode::OK, body).await;
        let err = client.get_project("prj_1").await.unwrap_err();
        assert!(
            matches!(err, ProviderError::InvalidResponse { .. }),
            "{what}: {err:?}"
        );
        assert!(!err.is_transient(), "{what}");
        assert!(
            err.to_string().contains("invalid response"),
            "{what}: {err}"
        );
    }
    let huge = vec![b' '; MAX_RESPONSE_BYTES + 1];
    let client = vendor_answering(StatusCode::OK, huge).await;
    let err = client.get_project("prj_1").await.unwrap_err();
    assert!(err.to_string().contains("larger than"), "{err}");

    // An error status with a body that is not JSON keeps the status and a readable message.
    let client = vendor_answering(
        StatusCode::BAD_GATEWAY,
        b"<html>bad gateway</html>".to_vec(),
    )
    .await;
    let err = client.get_project("prj_1").await.unwrap_err();
    assert_eq!(err.status(), Some(502));
    assert!(err.is_transient());
    assert!(err.to_string().contains("Bad Gateway"), "{err}");
}

#[tokio::test]
async fn random_bytes_never_panic_the_parsers() {
    // A deterministic stream of random and mutated inputs through every parser
    // a vendor answer reaches (see also fuzz/ for a coverage-guided target).
    let seeds: &[&[u8]] = &[
        br#"{"id":"prj_1","name":"n","region":"r","connection_uri":"postgresql://u:p@h:5432/d","created_at":"t"}"#,
        br#"{"items":[{"id":"b","branch_name":"x","project_id":"p"}],"next_cursor":"c"}"#,
        br#"{"error":{"code":"NOT_FOUND","message":"m"}}"#,
        br#"{"byok_id":"b","state":"active","bindings":[{"module":"db"}]}"#,
    ];
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for i in 0..20_000 {
        let mut input = seeds[i % seeds.len()].to_vec();
        for _ in 0..(next() % 8) {
            let pos = (next() as usize) % (input.len() + 1);
            match next() % 3 {
                0 if !input.is_empty() => {
                    input.remove(pos.min(input.len() - 1));
                }
                1 => input.insert(pos, (next() % 256) as u8),
                _ => input.truncate(pos),
            }
        }
        dbops::fuzzing::parse_vendor_answer(&input);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_resources_never_block_good_ones() {
    let h = Harness::new().await;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let options = dbops::operator::Options {
        settings: Settings {
            base_backoff: Duration::from_millis(50),
            ..Settings::default()
        },
        ..Default::default()
    };
    let task = tokio::spawn(dbops::operator::run(
        h.client.clone(),
        options,
        async move {
            let _ = stopped.await;
        },
    ));
    let projects: Api<DatabaseProject> = Api::namespaced(h.client.clone(), NS);
    let pp = PostParams::default();
    let long_name = "x".repeat(253);
    let bad = [
        json!({ "metadata": { "name": "no-provider" }, "spec": { "providerRef": { "name": "missing" } } }),
        json!({ "metadata": { "name": "ghost" }, "spec": { "externalId": "prj_does_not_exist" } }),
        json!({ "metadata": { "name": "bad-vendor" }, "spec": { "vendor": "oracle" } }),
        json!({ "metadata": { "name": "bad-snapshot" }, "spec": { "restoreFrom": { "snapshotId": "snap_nope" } } }),
        json!({ "metadata": { "name": long_name.clone() }, "spec": { "projectName": "ünïcødé-名前" } }),
    ];
    for (i, object) in bad.iter().enumerate() {
        projects
            .create(&pp, &serde_json::from_value(object.clone()).unwrap())
            .await
            .unwrap();
        let good = json!({ "metadata": { "name": format!("good-{i}") }, "spec": {} });
        projects
            .create(&pp, &serde_json::from_value(good).unwrap())
            .await
            .unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let list = projects.list(&Default::default()).await.unwrap().items;
        let good_ready = list
            .iter()
            .filter(|p| {
                p.metadata
                    .name
                    .as_deref()
                    .unwrap_or("")
                    .starts_with("good-")
            })
            .all(|p| p.is_ready());
        let bad_reported = list
            .iter()
            .filter(|p| {
                !p.metadata
                    .name
                    .as_deref()
                    .unwrap_or("")
                    .starts_with("good-")
            })
            .filter(|p| p.metadata.name.as_deref() != Some(long_name.as_str()))
            .all(|p| {
                p.status
                    .as_ref()
                    .is_some_and(|s| s.conditions.is_true("Stalled"))
            });
        if good_ready && bad_reported {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "good projects blocked or bad ones unreported"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for (name, reason) in [
        ("no-provider", "ProviderNotFound"),
        ("ghost", "ExternalNotFound"),
        ("bad-vendor", "VendorRejected"),
        ("bad-snapshot", "VendorNotFound"),
    ] {
        let p = projects.get(name).await.unwrap();
        let stalled = p.status.unwrap().conditions.get("Stalled").unwrap().clone();
        assert_eq!(stalled.reason, reason, "{name}: {}", stalled.message);
    }
    let _ = stop.send(());
    let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
}
