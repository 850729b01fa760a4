//! Bring-your-own-key credentials, vendor-neutral: what the `ByokCredential`
//! and `DatabaseProvider` controllers ask of any API that routes through a
//! customer's own vendor key. Wire shapes and mappings live in the vendor
//! modules (today the infrai client's `infrai_byok`).

use std::collections::BTreeMap;
use std::fmt;

use async_trait::async_trait;
use secrecy::SecretString;
use serde::{Deserialize, Serialize};

use super::error::ProviderError;
use crate::api::v1alpha1::{ByokPolicyMode, QuotaWindow};

type Result<T> = std::result::Result<T, ProviderError>;

/// Credential fields, write-only: `Debug` shows the field names, never the values.
#[derive(Clone, Default)]
pub struct Credentials(pub BTreeMap<String, SecretString>);

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.0.keys()).finish()
    }
}

/// Where a registered credential is in its life.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CredentialState {
    /// Used for routing.
    Active,
    /// Registered but not used (`spec.enabled: false`).
    Disabled,
    /// Revoked for good; a revoked credential cannot come back.
    Revoked,
    /// A state this version of dbops does not know, as the vendor named it.
    Other(String),
}

impl CredentialState {
    /// The state a credential should be in.
    pub fn wanted(enabled: bool) -> Self {
        if enabled {
            Self::Active
        } else {
            Self::Disabled
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            Self::Active => "active",
            Self::Disabled => "disabled",
            Self::Revoked => "revoked",
            Self::Other(state) => state,
        }
    }

    /// The state a vendor reports by name (`active`, `disabled`, `revoked`).
    pub fn from_name(name: &str) -> Self {
        match name {
            "active" => Self::Active,
            "disabled" => Self::Disabled,
            "revoked" => Self::Revoked,
            other => Self::Other(other.to_string()),
        }
    }
}

impl fmt::Display for CredentialState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the vendor's test of a credential (or of a staged rotation) found.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
pub struct ProbeResult {
    pub ok: bool,
    #[serde(default)]
    pub latency_ms: Option<u64>,
    #[serde(default)]
    pub error: Option<String>,
}

/// A credential just registered.
#[derive(Clone, Debug, PartialEq)]
pub struct Registered {
    pub id: String,
    pub state: Option<CredentialState>,
}

/// A registered credential's settings at the vendor.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CredentialConfig {
    pub label: Option<String>,
    pub state: Option<CredentialState>,
    pub bindings: Vec<Binding>,
}

/// One routing binding: which capability, module or model uses the credential.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Binding {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capability: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub module: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
}

/// A new key, staged and probed but not yet in force.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StagedRotation {
    pub stage_id: String,
    pub probe: Option<ProbeResult>,
}

/// What a credential has been used for in its current period.
#[derive(Clone, Debug, PartialEq)]
pub struct Usage {
    pub spend_usd: f64,
    pub call_count: u64,
    pub period: String,
}

/// Spending and call limits of a credential; all `None` clears them.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Quota {
    pub spend_limit_usd: Option<f64>,
    pub call_limit: Option<u64>,
    pub window: Option<QuotaWindow>,
}

/// The account's routing policy between BYOK credentials and the shared pool.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RoutingPolicy {
    pub mode: ByokPolicyMode,
    pub scope: Option<PolicyScope>,
}

/// Which part of the account a routing policy covers.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PolicyScope {
    pub capability: Option<String>,
    pub module: Option<String>,
}

/// BYOK operations. A provider that offers them returns `Some(self)` from
/// `Provider::byok`.
#[async_trait]
pub trait ByokApi: Send + Sync {
    /// Registers a credential; `idempotency_key` makes a retry return the same one.
    async fn register_credential(
        &self,
        vendor: &str,
        alias: &str,
        credentials: &Credentials,
        idempotency_key: &str,
    ) -> Result<Registered>;
    async fn get_credential(&self, id: &str) -> Result<CredentialConfig>;
    async fn set_credential_label(&self, id: &str, label: &str) -> Result<()>;
    async fn set_credential_enabled(&self, id: &str, enabled: bool) -> Result<()>;
    async fn bind_credential(&self, id: &str, binding: &Binding) -> Result<()>;
    async fn unbind_credential(&self, id: &str, binding: &Binding) -> Result<()>;
    async fn set_credential_quota(&self, id: &str, quota: &Quota) -> Result<()>;
    async fn test_credential(&self, id: &str) -> Result<ProbeResult>;
    async fn credential_usage(&self, id: &str) -> Result<Usage>;
    /// Stages (and probes) a new key without putting it in force.
    async fn stage_rotation(
        &self,
        id: &str,
        api_key: &SecretString,
        idempotency_key: &str,
    ) -> Result<StagedRotation>;
    /// Puts a staged key in force.
    async fn commit_rotation(&self, id: &str, stage_id: &str, idempotency_key: &str) -> Result<()>;
    async fn revoke_credential(&self, id: &str) -> Result<()>;
    async fn routing_policy(&self) -> Result<RoutingPolicy>;
    async fn set_routing_policy(&self, policy: &RoutingPolicy) -> Result<()>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credential_states_round_trip_by_name() {
        for state in [
            CredentialState::Active,
            CredentialState::Disabled,
            CredentialState::Revoked,
            CredentialState::Other("suspended".into()),
        ] {
            assert_eq!(CredentialState::from_name(state.as_str()), state);
        }
        assert_eq!(CredentialState::wanted(true), CredentialState::Active);
        assert_eq!(CredentialState::wanted(false), CredentialState::Disabled);
    }

    #[test]
    fn credentials_never_show_their_values() {
        let credentials = Credentials(BTreeMap::from([(
            "api_key".to_string(),
            SecretString::from("sk-very-secret".to_string()),
        )]));
        let shown = format!("{credentials:?}");
        assert!(shown.contains("api_key"));
        assert!(!shown.contains("sk-very-secret"));
    }
}
