//! Client of the infrai BYOK API (`/v1/byok/...`, `vendor-apis/infrai-byok.txt`).
//!
//! Document conflict: the `byok.register` example sends
//! `{"provider", "module", "api_key"}`; the parameter table (the contract)
//! requires `provider`, `alias` and a `credentials` record. This client sends
//! what the table says.

use std::collections::BTreeMap;
use std::fmt;

use async_trait::async_trait;
use reqwest::Method;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::ProviderError;
use super::infrai::InfraiClient;

/// Credential fields, write-only: `Debug` shows the field names, never the values.
#[derive(Clone, Default)]
pub struct Credentials(pub BTreeMap<String, SecretString>);

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.0.keys()).finish()
    }
}

impl Credentials {
    fn to_json(&self) -> Value {
        Value::Object(
            self.0
                .iter()
                .map(|(k, v)| (k.clone(), Value::String(v.expose_secret().to_string())))
                .collect(),
        )
    }
}

/// `{ ok, latency_ms?, error? }` of a test or a rotation probe.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
pub struct ProbeResult {
    pub ok: bool,
    #[serde(default)]
    pub latency_ms: Option<u64>,
    #[serde(default)]
    pub error: Option<String>,
}

/// `ByokKey { byok_id, provider, alias, state, created_at, test_result? }`.
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct ByokKey {
    pub byok_id: String,
    #[serde(default)]
    pub provider: Option<String>,
    #[serde(default)]
    pub alias: Option<String>,
    #[serde(default)]
    pub state: Option<String>,
    #[serde(default)]
    pub created_at: Option<String>,
    #[serde(default)]
    pub test_result: Option<ProbeResult>,
}

/// One routing binding.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Binding {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capability: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub module: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
}

/// `ByokConfig { byok_id, provider?, label?, state?, bindings[], created_at?, quota? }`;
/// each call returns the subset the document lists for it.
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct ByokConfig {
    pub byok_id: String,
    #[serde(default)]
    pub provider: Option<String>,
    #[serde(default)]
    pub label: Option<String>,
    #[serde(default)]
    pub state: Option<String>,
    #[serde(default)]
    pub bindings: Vec<Binding>,
    #[serde(default)]
    pub created_at: Option<String>,
    #[serde(default)]
    pub quota: Option<Value>,
}

/// `{ items: ByokKey[] }`.
#[derive(Debug, Deserialize)]
struct KeyList {
    items: Vec<ByokKey>,
}

/// `{ stage_id, probe_result? }` of `byok.rotate.stage`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct StagedRotation {
    pub stage_id: String,
    #[serde(default)]
    pub probe_result: Option<ProbeResult>,
}

/// `ByokUsage { byok_id, spend_usd, call_count, period }`.
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct ByokUsage {
    pub byok_id: String,
    pub spend_usd: f64,
    pub call_count: u64,
    pub period: String,
}

/// `ByokPolicy { mode, scope? }`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ByokPolicy {
    pub mode: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<PolicyScope>,
}

/// Scope of a routing policy.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyScope {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capability: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub module: Option<String>,
}

/// A `byok.quota.set` request.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct QuotaRequest {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub spend_limit_usd: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub call_limit: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub window: Option<String>,
}

/// A page of `byok.events`.
#[derive(Debug, Deserialize)]
pub struct EventPage {
    pub items: Vec<Value>,
    #[serde(default)]
    pub next_cursor: Option<String>,
}

#[derive(Deserialize)]
struct OkWire {
    ok: bool,
}

fn with_key(mut body: Value, idempotency_key: Option<&str>) -> Value {
    if let (Some(key), Some(map)) = (idempotency_key, body.as_object_mut()) {
        map.insert("idempotency_key".to_string(), json!(key));
    }
    body
}

impl InfraiClient {
    async fn byok<T: serde::de::DeserializeOwned>(
        &self,
        operation: &str,
        method: Method,
        path: &[&str],
        query: &[(&str, String)],
        body: Option<&Value>,
    ) -> Result<T, ProviderError> {
        let mut full = vec!["v1", "byok"];
        full.extend_from_slice(path);
        self.http()
            .call(operation, method, &full, query, body)
            .await
    }

    /// `byok.register`.
    pub async fn byok_register(
        &self,
        provider: &str,
        alias: &str,
        credentials: &Credentials,
        idempotency_key: &str,
    ) -> Result<ByokKey, ProviderError> {
        let body = with_key(
            json!({ "provider": provider, "alias": alias, "credentials": credentials.to_json() }),
            Some(idempotency_key),
        );
        self.byok(
            "byok.register",
            Method::POST,
            &["register"],
            &[],
            Some(&body),
        )
        .await
    }

    /// `byok.list`.
    pub async fn byok_list(&self) -> Result<Vec<ByokKey>, ProviderError> {
        let list: KeyList = self
            .byok("byok.list", Method::GET, &["list"], &[], None)
            .await?;
        Ok(list.items)
    }

    /// `byok.get`.
    pub async fn byok_get(&self, id: &str) -> Result<ByokConfig, ProviderError> {
        self.byok("byok.get", Method::GET, &["get", id], &[], None)
            .await
    }

    /// `byok.update` (the label).
    pub async fn byok_update_label(
        &self,
        id: &str,
        label: &str,
        idempotency_key: Option<&str>,
    ) -> Result<ByokConfig, ProviderError> {
        let body = with_key(json!({ "label": label }), idempotency_key);
        self.byok(
            "byok.update",
            Method::PATCH,
            &["update", id],
            &[],
            Some(&body),
        )
        .await
    }

    /// `byok.enable` or `byok.disable`.
    pub async fn byok_set_enabled(
        &self,
        id: &str,
        enabled: bool,
        idempotency_key: Option<&str>,
    ) -> Result<ByokConfig, ProviderError> {
        let (operation, verb) = if enabled {
            ("byok.enable", "enable")
        } else {
            ("byok.disable", "disable")
        };
        let body = with_key(json!({}), idempotency_key);
        self.byok(operation, Method::POST, &[verb, id], &[], Some(&body))
            .await
    }

    /// `byok.test`.
    pub async fn byok_test(&self, id: &str) -> Result<ProbeResult, ProviderError> {
        self.byok(
            "byok.test",
            Method::POST,
            &["test", id],
            &[],
            Some(&json!({})),
        )
        .await
    }

    /// `byok.revoke`; `Ok(())` only when the vendor confirms.
    pub async fn byok_revoke(&self, id: &str) -> Result<(), ProviderError> {
        let answer: OkWire = self
            .byok("byok.revoke", Method::DELETE, &["revoke", id], &[], None)
            .await?;
        if answer.ok {
            Ok(())
        } else {
            Err(ProviderError::NotConfirmed {
                api: crate::api::v1alpha1::ProviderApi::Infrai,
                operation: "byok.revoke".to_string(),
            })
        }
    }

    /// `byok.bind`.
    pub async fn byok_bind(
        &self,
        id: &str,
        binding: &Binding,
        idempotency_key: Option<&str>,
    ) -> Result<ByokConfig, ProviderError> {
        let body = with_key(
            serde_json::to_value(binding).unwrap_or_default(),
            idempotency_key,
        );
        self.byok("byok.bind", Method::POST, &["bind", id], &[], Some(&body))
            .await
    }

    /// `byok.unbind` (by capability and module; a binding's model is not part of its identity).
    pub async fn byok_unbind(
        &self,
        id: &str,
        binding: &Binding,
        idempotency_key: Option<&str>,
    ) -> Result<ByokConfig, ProviderError> {
        let scope = Binding {
            model: None,
            ..binding.clone()
        };
        let body = with_key(
            serde_json::to_value(&scope).unwrap_or_default(),
            idempotency_key,
        );
        self.byok(
            "byok.unbind",
            Method::POST,
            &["unbind", id],
            &[],
            Some(&body),
        )
        .await
    }

    /// `byok.policy.get`.
    pub async fn byok_policy_get(&self) -> Result<ByokPolicy, ProviderError> {
        self.byok(
            "byok.policy.get",
            Method::GET,
            &["policy", "get"],
            &[],
            None,
        )
        .await
    }

    /// `byok.policy.set`.
    pub async fn byok_policy_set(
        &self,
        policy: &ByokPolicy,
        idempotency_key: Option<&str>,
    ) -> Result<ByokPolicy, ProviderError> {
        let body = with_key(
            serde_json::to_value(policy).unwrap_or_default(),
            idempotency_key,
        );
        self.byok(
            "byok.policy.set",
            Method::POST,
            &["policy", "set"],
            &[],
            Some(&body),
        )
        .await
    }

    /// `byok.quota.set`.
    pub async fn byok_quota_set(
        &self,
        id: &str,
        quota: &QuotaRequest,
        idempotency_key: Option<&str>,
    ) -> Result<ByokConfig, ProviderError> {
        let body = with_key(
            serde_json::to_value(quota).unwrap_or_default(),
            idempotency_key,
        );
        self.byok(
            "byok.quota.set",
            Method::POST,
            &["quota", "set", id],
            &[],
            Some(&body),
        )
        .await
    }

    /// `byok.usage`.
    pub async fn byok_usage(&self, id: &str) -> Result<ByokUsage, ProviderError> {
        self.byok("byok.usage", Method::GET, &["usage", id], &[], None)
            .await
    }

    /// `byok.events`, one page.
    pub async fn byok_events(
        &self,
        id: &str,
        cursor: Option<&str>,
        limit: Option<u32>,
    ) -> Result<EventPage, ProviderError> {
        let mut query = Vec::new();
        if let Some(cursor) = cursor {
            query.push(("cursor", cursor.to_string()));
        }
        if let Some(limit) = limit {
            query.push(("limit", limit.to_string()));
        }
        self.byok("byok.events", Method::GET, &["events", id], &query, None)
            .await
    }

    /// `byok.rotate`: replace the key in place, no probe.
    pub async fn byok_rotate(
        &self,
        id: &str,
        api_key: &SecretString,
        idempotency_key: Option<&str>,
    ) -> Result<ByokConfig, ProviderError> {
        let body = with_key(
            json!({ "api_key": api_key.expose_secret() }),
            idempotency_key,
        );
        self.byok(
            "byok.rotate",
            Method::POST,
            &["rotate", id],
            &[],
            Some(&body),
        )
        .await
    }

    /// `byok.rotate.stage`: stage and probe a candidate key without switching traffic.
    pub async fn byok_rotate_stage(
        &self,
        id: &str,
        api_key: &SecretString,
        idempotency_key: Option<&str>,
    ) -> Result<StagedRotation, ProviderError> {
        let body = with_key(
            json!({ "api_key": api_key.expose_secret() }),
            idempotency_key,
        );
        self.byok(
            "byok.rotate.stage",
            Method::POST,
            &["rotate", "stage", id],
            &[],
            Some(&body),
        )
        .await
    }

    /// `byok.rotate.commit`: switch traffic to a staged key.
    pub async fn byok_rotate_commit(
        &self,
        id: &str,
        stage_id: &str,
        idempotency_key: Option<&str>,
    ) -> Result<ByokConfig, ProviderError> {
        let body = with_key(json!({ "stage_id": stage_id }), idempotency_key);
        self.byok(
            "byok.rotate.commit",
            Method::POST,
            &["rotate", "commit", id],
            &[],
            Some(&body),
        )
        .await
    }
}

/// The BYOK operations the controllers use, behind the provider traits.
#[async_trait]
pub trait ByokApi: super::ProjectApi {
    async fn register_credential(
        &self,
        vendor: &str,
        alias: &str,
        credentials: &Credentials,
        idempotency_key: &str,
    ) -> Result<ByokKey, ProviderError> {
        let _ = (vendor, alias, credentials, idempotency_key);
        Err(self.unsupported(super::Operation::ByokRegister))
    }
    async fn get_credential(&self, id: &str) -> Result<ByokConfig, ProviderError> {
        let _ = id;
        Err(self.unsupported(super::Operation::ByokRegister))
    }
    async fn set_credential_label(&self, id: &str, label: &str) -> Result<(), ProviderError> {
        let _ = (id, label);
        Err(self.unsupported(super::Operation::ByokRegister))
    }
    async fn set_credential_enabled(&self, id: &str, enabled: bool) -> Result<(), ProviderError> {
        let _ = (id, enabled);
        Err(self.unsupported(super::Operation::ByokRegister))
    }
    async fn bind_credential(&self, id: &str, binding: &Binding) -> Result<(), ProviderError> {
        let _ = (id, binding);
        Err(self.unsupported(super::Operation::ByokRegister))
    }
    async fn unbind_credential(&self, id: &str, binding: &Binding) -> Result<(), ProviderError> {
        let _ = (id, binding);
        Err(self.unsupported(super::Operation::ByokRegister))
    }
    async fn set_credential_quota(
        &self,
        id: &str,
        quota: &QuotaRequest,
    ) -> Result<(), ProviderError> {
        let _ = (id, quota);
        Err(self.unsupported(super::Operation::ByokRegister))
    }
    async fn test_credential(&self, id: &str) -> Result<ProbeResult, ProviderError> {
        let _ = id;
        Err(self.unsupported(super::Operation::ByokRegister))
    }
    async fn credential_usage(&self, id: &str) -> Result<ByokUsage, ProviderError> {
        let _ = id;
        Err(self.unsupported(super::Operation::ByokRegister))
    }
    async fn stage_rotation(
        &self,
        id: &str,
        api_key: &SecretString,
        idempotency_key: &str,
    ) -> Result<StagedRotation, ProviderError> {
        let _ = (id, api_key, idempotency_key);
        Err(self.unsupported(super::Operation::ByokRotate))
    }
    async fn commit_rotation(
        &self,
        id: &str,
        stage_id: &str,
        idempotency_key: &str,
    ) -> Result<(), ProviderError> {
        let _ = (id, stage_id, idempotency_key);
        Err(self.unsupported(super::Operation::ByokRotate))
    }
    async fn revoke_credential(&self, id: &str) -> Result<(), ProviderError> {
        let _ = id;
        Err(self.unsupported(super::Operation::ByokRevoke))
    }
    async fn routing_policy(&self) -> Result<ByokPolicy, ProviderError> {
        Err(self.unsupported(super::Operation::ByokPolicy))
    }
    async fn set_routing_policy(&self, policy: &ByokPolicy) -> Result<(), ProviderError> {
        let _ = policy;
        Err(self.unsupported(super::Operation::ByokPolicy))
    }
}

#[async_trait]
impl ByokApi for InfraiClient {
    async fn register_credential(
        &self,
        vendor: &str,
        alias: &str,
        credentials: &Credentials,
        idempotency_key: &str,
    ) -> Result<ByokKey, ProviderError> {
        self.byok_register(vendor, alias, credentials, idempotency_key)
            .await
    }
    async fn get_credential(&self, id: &str) -> Result<ByokConfig, ProviderError> {
        self.byok_get(id).await
    }
    async fn set_credential_label(&self, id: &str, label: &str) -> Result<(), ProviderError> {
        self.byok_update_label(id, label, None).await.map(|_| ())
    }
    async fn set_credential_enabled(&self, id: &str, enabled: bool) -> Result<(), ProviderError> {
        self.byok_set_enabled(id, enabled, None).await.map(|_| ())
    }
    async fn bind_credential(&self, id: &str, binding: &Binding) -> Result<(), ProviderError> {
        self.byok_bind(id, binding, None).await.map(|_| ())
    }
    async fn unbind_credential(&self, id: &str, binding: &Binding) -> Result<(), ProviderError> {
        self.byok_unbind(id, binding, None).await.map(|_| ())
    }
    async fn set_credential_quota(
        &self,
        id: &str,
        quota: &QuotaRequest,
    ) -> Result<(), ProviderError> {
        self.byok_quota_set(id, quota, None).await.map(|_| ())
    }
    async fn test_credential(&self, id: &str) -> Result<ProbeResult, ProviderError> {
        self.byok_test(id).await
    }
    async fn credential_usage(&self, id: &str) -> Result<ByokUsage, ProviderError> {
        self.byok_usage(id).await
    }
    async fn stage_rotation(
        &self,
        id: &str,
        api_key: &SecretString,
        idempotency_key: &str,
    ) -> Result<StagedRotation, ProviderError> {
        self.byok_rotate_stage(id, api_key, Some(idempotency_key))
            .await
    }
    async fn commit_rotation(
        &self,
        id: &str,
        stage_id: &str,
        idempotency_key: &str,
    ) -> Result<(), ProviderError> {
        self.byok_rotate_commit(id, stage_id, Some(idempotency_key))
            .await
            .map(|_| ())
    }
    async fn revoke_credential(&self, id: &str) -> Result<(), ProviderError> {
        self.byok_revoke(id).await
    }
    async fn routing_policy(&self) -> Result<ByokPolicy, ProviderError> {
        self.byok_policy_get().await
    }
    async fn set_routing_policy(&self, policy: &ByokPolicy) -> Result<(), ProviderError> {
        self.byok_policy_set(policy, None).await.map(|_| ())
    }
}
