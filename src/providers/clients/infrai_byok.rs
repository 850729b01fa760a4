//! Client of the infrai BYOK API (`/v1/byok/...`, `vendor-apis/infrai-byok.txt`).
//!
//! Document conflict: the `byok.register` example sends
//! `{"provider", "module", "api_key"}`; the parameter table (the contract)
//! requires `provider`, `alias` and a `credentials` record. This client sends
//! what the table says.

use async_trait::async_trait;
use reqwest::Method;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::infrai::InfraiClient;
use crate::api::v1alpha1::{ByokPolicyMode, QuotaWindow};
use crate::providers::base::ProviderError;
use crate::providers::base::byok::{
    self, ByokApi, CredentialConfig, CredentialState, Quota, Registered, RoutingPolicy, Usage,
};

pub use crate::providers::base::byok::{Binding, Credentials, ProbeResult};

fn credentials_json(credentials: &Credentials) -> Value {
    Value::Object(
        credentials
            .0
            .iter()
            .map(|(k, v)| (k.clone(), Value::String(v.expose_secret().to_string())))
            .collect(),
    )
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
            json!({ "provider": provider, "alias": alias, "credentials": credentials_json(credentials) }),
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

/// The infrai wire names of the neutral BYOK model.
fn policy_mode(mode: ByokPolicyMode) -> &'static str {
    match mode {
        ByokPolicyMode::ByokOnly => "byok_only",
        ByokPolicyMode::ByokThenPool => "byok_then_pool",
    }
}

fn quota_window(window: QuotaWindow) -> &'static str {
    match window {
        QuotaWindow::Day => "1d",
        QuotaWindow::Week => "7d",
        QuotaWindow::Month => "30d",
        QuotaWindow::MonthToDate => "mtd",
        QuotaWindow::YearToDate => "ytd",
    }
}

impl From<&RoutingPolicy> for ByokPolicy {
    fn from(policy: &RoutingPolicy) -> Self {
        ByokPolicy {
            mode: policy_mode(policy.mode).to_string(),
            scope: policy.scope.as_ref().map(|s| PolicyScope {
                capability: s.capability.clone(),
                module: s.module.clone(),
            }),
        }
    }
}

impl ByokPolicy {
    /// The neutral policy, or why this one cannot be read.
    fn to_neutral(&self) -> Result<RoutingPolicy, ProviderError> {
        let mode = match self.mode.as_str() {
            "byok_only" => ByokPolicyMode::ByokOnly,
            "byok_then_pool" => ByokPolicyMode::ByokThenPool,
            other => {
                return Err(ProviderError::InvalidResponse {
                    api: crate::api::v1alpha1::ProviderApi::Infrai,
                    operation: "byok.policy.get".to_string(),
                    message: format!("unknown policy mode {other:?}"),
                });
            }
        };
        Ok(RoutingPolicy {
            mode,
            scope: self.scope.as_ref().map(|s| byok::PolicyScope {
                capability: s.capability.clone(),
                module: s.module.clone(),
            }),
        })
    }
}

impl From<&Quota> for QuotaRequest {
    fn from(quota: &Quota) -> Self {
        QuotaRequest {
            spend_limit_usd: quota.spend_limit_usd,
            call_limit: quota.call_limit,
            window: quota.window.map(|w| quota_window(w).to_string()),
        }
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
    ) -> Result<Registered, ProviderError> {
        let key = self
            .byok_register(vendor, alias, credentials, idempotency_key)
            .await?;
        Ok(Registered {
            id: key.byok_id,
            state: key.state.as_deref().map(CredentialState::from_name),
        })
    }
    async fn get_credential(&self, id: &str) -> Result<CredentialConfig, ProviderError> {
        let config = self.byok_get(id).await?;
        Ok(CredentialConfig {
            label: config.label,
            state: config.state.as_deref().map(CredentialState::from_name),
            bindings: config.bindings,
        })
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
    async fn set_credential_quota(&self, id: &str, quota: &Quota) -> Result<(), ProviderError> {
        self.byok_quota_set(id, &QuotaRequest::from(quota), None)
            .await
            .map(|_| ())
    }
    async fn test_credential(&self, id: &str) -> Result<ProbeResult, ProviderError> {
        self.byok_test(id).await
    }
    async fn credential_usage(&self, id: &str) -> Result<Usage, ProviderError> {
        let usage = self.byok_usage(id).await?;
        Ok(Usage {
            spend_usd: usage.spend_usd,
            call_count: usage.call_count,
            period: usage.period,
        })
    }
    async fn stage_rotation(
        &self,
        id: &str,
        api_key: &SecretString,
        idempotency_key: &str,
    ) -> Result<byok::StagedRotation, ProviderError> {
        let staged = self
            .byok_rotate_stage(id, api_key, Some(idempotency_key))
            .await?;
        Ok(byok::StagedRotation {
            stage_id: staged.stage_id,
            probe: staged.probe_result,
        })
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
    async fn routing_policy(&self) -> Result<RoutingPolicy, ProviderError> {
        self.byok_policy_get().await?.to_neutral()
    }
    async fn set_routing_policy(&self, policy: &RoutingPolicy) -> Result<(), ProviderError> {
        self.byok_policy_set(&ByokPolicy::from(policy), None)
            .await
            .map(|_| ())
    }
}

/// Where the document is silent and this client reads or relies on something
/// anyway (see [`Assumption`](crate::providers::base::Assumption)).
pub const ASSUMED: &[crate::providers::base::Assumption] = &[];
