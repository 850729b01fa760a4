//! The infrai BYOK client against the emulator over real HTTP: every `/v1/byok`
//! capability, idempotency, and credentials never coming back.

use std::collections::BTreeMap;
use std::time::Duration;

use dbops::api::v1alpha1::ProviderApi;
use dbops::emulator::{Emulator, EmulatorConfig};
use dbops::providers::http::VendorHttp;
use dbops::providers::infrai::InfraiClient;
use dbops::providers::infrai_byok::{Binding, ByokPolicy, Credentials, PolicyScope, QuotaRequest};
use secrecy::SecretString;

const KEY: &str = "ifr_pk_proj_byok_tests";
const CANARY: &str = "sk-canary-3f9d1c7e";

async fn start() -> (Emulator, String, InfraiClient) {
    let emulator = Emulator::new(
        &EmulatorConfig::default()
            .with_keys("infrai", [KEY])
            .unwrap(),
    );
    let (addr, _) = emulator.clone().spawn("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{addr}/infrai");
    let http = VendorHttp::new(
        ProviderApi::Infrai,
        &endpoint,
        &SecretString::from(KEY.to_string()),
        Duration::from_secs(5),
        None,
    )
    .unwrap();
    (emulator, endpoint, InfraiClient::new(http))
}

fn creds(api_key: &str) -> Credentials {
    Credentials(BTreeMap::from([
        (
            "api_key".to_string(),
            SecretString::from(api_key.to_string()),
        ),
        ("org".to_string(), SecretString::from("org-1".to_string())),
    ]))
}

fn binding(capability: Option<&str>, module: Option<&str>, model: Option<&str>) -> Binding {
    Binding {
        capability: capability.map(str::to_string),
        module: module.map(str::to_string),
        model: model.map(str::to_string),
    }
}

#[tokio::test]
async fn register_get_list_update_enable_disable_revoke() {
    let (emu, _, c) = start().await;
    let key = c
        .byok_register("neon", "team-a", &creds(CANARY), "k1")
        .await
        .unwrap();
    assert!(key.byok_id.starts_with("byok_"));
    assert_eq!(key.alias.as_deref(), Some("team-a"));
    assert_eq!(key.state.as_deref(), Some("active"));
    assert!(key.test_result.unwrap().ok);
    // Idempotent register.
    let again = c
        .byok_register("neon", "team-a", &creds(CANARY), "k1")
        .await
        .unwrap();
    assert_eq!(again.byok_id, key.byok_id);
    assert_eq!(emu.infrai.byok.count(), 1);

    let config = c.byok_get(&key.byok_id).await.unwrap();
    assert_eq!(config.provider.as_deref(), Some("neon"));
    assert_eq!(config.label.as_deref(), Some("team-a"));
    assert!(config.bindings.is_empty());
    assert_eq!(c.byok_list().await.unwrap().len(), 1);

    let updated = c
        .byok_update_label(&key.byok_id, "team-a-prod", None)
        .await
        .unwrap();
    assert_eq!(updated.label.as_deref(), Some("team-a-prod"));
    let disabled = c
        .byok_set_enabled(&key.byok_id, false, Some("d1"))
        .await
        .unwrap();
    assert_eq!(disabled.state.as_deref(), Some("disabled"));
    let test = c.byok_test(&key.byok_id).await.unwrap();
    assert!(!test.ok, "a disabled credential does not pass its test");
    let enabled = c
        .byok_set_enabled(&key.byok_id, true, Some("e1"))
        .await
        .unwrap();
    assert_eq!(enabled.state.as_deref(), Some("active"));
    assert!(c.byok_test(&key.byok_id).await.unwrap().ok);

    c.byok_revoke(&key.byok_id).await.unwrap();
    c.byok_revoke(&key.byok_id).await.unwrap(); // idempotent
    assert_eq!(
        c.byok_get(&key.byok_id).await.unwrap().state.as_deref(),
        Some("revoked")
    );
    let err = c
        .byok_set_enabled(&key.byok_id, true, None)
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(409));
    assert!(c.byok_get("byok_missing").await.unwrap_err().is_not_found());
    assert!(
        c.byok_revoke("byok_missing")
            .await
            .unwrap_err()
            .is_not_found()
    );
}

#[tokio::test]
async fn register_follows_the_parameter_table_not_the_example() {
    let (_, endpoint, _) = start().await;
    // The document's example body: refused with a message naming the conflict.
    let response = reqwest::Client::new()
        .post(format!("{endpoint}/v1/byok/register"))
        .bearer_auth(KEY)
        .json(
            &serde_json::json!({ "provider": "openai", "module": "ai-runtime", "api_key": CANARY }),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let body = response.text().await.unwrap();
    assert!(body.contains("alias is required"), "{body}");
    assert!(!body.contains(CANARY));
}

#[tokio::test]
async fn bind_unbind_quota_usage_events_and_policy() {
    let (emu, _, c) = start().await;
    let id = c
        .byok_register("neon", "a", &creds(CANARY), "k")
        .await
        .unwrap()
        .byok_id;
    c.byok_bind(&id, &binding(Some("db.project.create"), None, None), None)
        .await
        .unwrap();
    let config = c
        .byok_bind(&id, &binding(None, Some("db"), Some("m1")), Some("b2"))
        .await
        .unwrap();
    assert_eq!(config.bindings.len(), 2);
    // Rebinding the same scope replaces its model.
    let config = c
        .byok_bind(&id, &binding(None, Some("db"), Some("m2")), None)
        .await
        .unwrap();
    assert_eq!(config.bindings.len(), 2);
    assert!(
        config
            .bindings
            .contains(&binding(None, Some("db"), Some("m2")))
    );
    let config = c
        .byok_unbind(&id, &binding(None, Some("db"), Some("m2")), None)
        .await
        .unwrap();
    assert_eq!(
        config.bindings,
        vec![binding(Some("db.project.create"), None, None)]
    );
    let err = c
        .byok_bind(&id, &binding(None, None, Some("m")), None)
        .await
        .unwrap_err();
    assert_eq!(
        err.status(),
        Some(400),
        "a binding needs a capability or module"
    );

    let quota = QuotaRequest {
        spend_limit_usd: Some(25.5),
        call_limit: Some(1000),
        window: Some("30d".into()),
    };
    let config = c.byok_quota_set(&id, &quota, None).await.unwrap();
    assert_eq!(config.quota.unwrap()["call_limit"], 1000);
    let bad = QuotaRequest {
        spend_limit_usd: Some(-1.0),
        ..Default::default()
    };
    assert_eq!(
        c.byok_quota_set(&id, &bad, None)
            .await
            .unwrap_err()
            .status(),
        Some(400)
    );
    let bad_window = QuotaRequest {
        window: Some("1y".into()),
        ..Default::default()
    };
    assert_eq!(
        c.byok_quota_set(&id, &bad_window, None)
            .await
            .unwrap_err()
            .status(),
        Some(400)
    );

    emu.infrai.byok.record_usage(&id, 1.25, 7);
    let usage = c.byok_usage(&id).await.unwrap();
    assert_eq!((usage.call_count, usage.period.as_str()), (7, "30d"));
    assert!((usage.spend_usd - 1.25).abs() < 1e-9);

    let mut types = Vec::new();
    let mut cursor = None;
    loop {
        let page = c
            .byok_events(&id, cursor.as_deref(), Some(2))
            .await
            .unwrap();
        types.extend(
            page.items
                .iter()
                .map(|e| e["type"].as_str().unwrap().to_string()),
        );
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    assert_eq!(types.first().map(String::as_str), Some("registered"));
    assert!(types.iter().any(|t| t == "bound") && types.iter().any(|t| t == "quota_set"));

    assert_eq!(c.byok_policy_get().await.unwrap().mode, "byok_then_pool");
    let policy = ByokPolicy {
        mode: "byok_only".into(),
        scope: Some(PolicyScope {
            capability: None,
            module: Some("db".into()),
        }),
    };
    assert_eq!(
        c.byok_policy_set(&policy, Some("p1")).await.unwrap(),
        policy
    );
    assert_eq!(c.byok_policy_get().await.unwrap(), policy);
    let bad = ByokPolicy {
        mode: "sometimes".into(),
        scope: None,
    };
    assert_eq!(
        c.byok_policy_set(&bad, None).await.unwrap_err().status(),
        Some(400)
    );
}

#[tokio::test]
async fn rotation_stage_probe_and_commit() {
    let (emu, _, c) = start().await;
    let id = c
        .byok_register("neon", "a", &creds("sk-old"), "k")
        .await
        .unwrap()
        .byok_id;
    c.byok_bind(&id, &binding(None, Some("db"), None), None)
        .await
        .unwrap();

    // A candidate the vendor rejects: staged, probe fails, the old key stays.
    let bad = c
        .byok_rotate_stage(
            &id,
            &SecretString::from("sk-invalid-new".to_string()),
            Some("s1"),
        )
        .await
        .unwrap();
    let probe = bad.probe_result.unwrap();
    assert!(!probe.ok);
    assert!(probe.error.is_some_and(|e| !e.contains("sk-invalid-new")));
    assert_eq!(
        emu.infrai.byok.active_credentials(&id).unwrap()["api_key"],
        "sk-old"
    );

    // A good candidate: staged, probed, committed; bindings and id preserved.
    let good = c
        .byok_rotate_stage(&id, &SecretString::from("sk-new".to_string()), Some("s2"))
        .await
        .unwrap();
    assert!(good.probe_result.unwrap().ok);
    let config = c
        .byok_rotate_commit(&id, &good.stage_id, Some("c2"))
        .await
        .unwrap();
    assert_eq!(config.byok_id, id);
    assert_eq!(config.bindings.len(), 1);
    assert_eq!(
        emu.infrai.byok.active_credentials(&id).unwrap()["api_key"],
        "sk-new"
    );
    // Committing the same request again is idempotent; an unknown stage is a 404.
    c.byok_rotate_commit(&id, &good.stage_id, Some("c2"))
        .await
        .unwrap();
    assert!(
        c.byok_rotate_commit(&id, "stg_nope", None)
            .await
            .unwrap_err()
            .is_not_found()
    );

    // Direct rotate, without a probe.
    c.byok_rotate(&id, &SecretString::from("sk-newer".to_string()), None)
        .await
        .unwrap();
    assert_eq!(
        emu.infrai.byok.active_credentials(&id).unwrap()["api_key"],
        "sk-newer"
    );
    assert!(
        emu.infrai
            .byok
            .event_types(&id)
            .iter()
            .filter(|t| *t == "rotated")
            .count()
            >= 2
    );
}

#[tokio::test]
async fn no_response_ever_carries_a_credential() {
    let (_, endpoint, c) = start().await;
    let id = c
        .byok_register("neon", "a", &creds(CANARY), "k")
        .await
        .unwrap()
        .byok_id;
    let stage = c
        .byok_rotate_stage(&id, &SecretString::from(format!("{CANARY}-2")), None)
        .await
        .unwrap();
    let http = reqwest::Client::new();
    let get = |path: String| {
        let http = http.clone();
        async move {
            http.get(path)
                .bearer_auth(KEY)
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap()
        }
    };
    let post = |path: String, body: serde_json::Value| {
        let http = http.clone();
        async move {
            http.post(path)
                .bearer_auth(KEY)
                .json(&body)
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap()
        }
    };
    let bodies = vec![
        post(
            format!("{endpoint}/v1/byok/register"),
            serde_json::json!({"provider":"neon","alias":"b","credentials":{"api_key": CANARY}}),
        )
        .await,
        get(format!("{endpoint}/v1/byok/list")).await,
        get(format!("{endpoint}/v1/byok/get/{id}")).await,
        post(
            format!("{endpoint}/v1/byok/test/{id}"),
            serde_json::json!({}),
        )
        .await,
        get(format!("{endpoint}/v1/byok/usage/{id}")).await,
        get(format!("{endpoint}/v1/byok/events/{id}")).await,
        post(
            format!("{endpoint}/v1/byok/rotate/stage/{id}"),
            serde_json::json!({"api_key": CANARY}),
        )
        .await,
        post(
            format!("{endpoint}/v1/byok/rotate/commit/{id}"),
            serde_json::json!({"stage_id": stage.stage_id}),
        )
        .await,
        post(
            format!("{endpoint}/v1/byok/rotate/{id}"),
            serde_json::json!({"api_key": CANARY}),
        )
        .await,
        post(
            format!("{endpoint}/v1/byok/bind/{id}"),
            serde_json::json!({"module": "db"}),
        )
        .await,
    ];
    for body in bodies {
        assert!(
            !body.contains(CANARY),
            "a response carried the credential: {body}"
        );
    }
}
