//! From a `providerRef` to a ready-to-use provider client: the
//! `DatabaseProvider`, its credentials Secret, and the cached client.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;
use kube::api::Api;
use secrecy::SecretString;

use super::Context;
use crate::api::v1alpha1::{DatabaseProvider, ProviderRef};
use crate::providers::{BuildError, Provider, ProviderConfig};

/// Why a provider could not be used. None of the messages carry the key.
#[derive(Debug, thiserror::Error)]
pub enum LookupError {
    #[error("DatabaseProvider {name:?} not found")]
    ProviderNotFound { name: String },
    #[error("Secret {namespace}/{secret} named by DatabaseProvider {provider:?} not found")]
    SecretNotFound {
        provider: String,
        namespace: String,
        secret: String,
    },
    #[error(
        "Secret {namespace}/{secret} has no non-empty key {key:?} (DatabaseProvider {provider:?})"
    )]
    KeyMissing {
        provider: String,
        namespace: String,
        secret: String,
        key: String,
    },
    #[error("DatabaseProvider {provider:?} is invalid: {source}")]
    Invalid {
        provider: String,
        #[source]
        source: BuildError,
    },
    #[error("reading DatabaseProvider {provider:?} or its Secret: {source}")]
    Kube {
        provider: String,
        #[source]
        source: kube::Error,
    },
}

impl LookupError {
    /// Whether a retry may succeed without a user change (only API-server trouble).
    pub fn is_transient(&self) -> bool {
        matches!(self, LookupError::Kube { .. })
    }

    /// The condition reason / metric category.
    pub fn category(&self) -> &'static str {
        match self {
            LookupError::ProviderNotFound { .. } => super::conditions::reason::PROVIDER_NOT_FOUND,
            LookupError::SecretNotFound { .. } | LookupError::KeyMissing { .. } => {
                super::conditions::reason::CREDENTIALS_MISSING
            }
            LookupError::Invalid { .. } => super::conditions::reason::PROVIDER_INVALID,
            LookupError::Kube { .. } => "KubernetesApiError",
        }
    }
}

impl Context {
    /// The `DatabaseProvider` named by `provider_ref`.
    pub async fn provider_object(
        &self,
        provider_ref: &ProviderRef,
    ) -> Result<DatabaseProvider, LookupError> {
        let api: Api<DatabaseProvider> = Api::all(self.client.clone());
        api.get_opt(&provider_ref.name)
            .await
            .map_err(|source| LookupError::Kube {
                provider: provider_ref.name.clone(),
                source,
            })?
            .ok_or_else(|| LookupError::ProviderNotFound {
                name: provider_ref.name.clone(),
            })
    }

    /// The client of the `DatabaseProvider` named by `provider_ref`, built from
    /// its current spec and Secret (cached while neither changes).
    pub async fn provider(
        &self,
        provider_ref: &ProviderRef,
    ) -> Result<Arc<dyn Provider>, LookupError> {
        let provider = self.provider_object(provider_ref).await?;
        let name = provider.name_any();
        let selector = &provider.spec.credentials_secret_ref;
        let secrets: Api<Secret> = Api::namespaced(self.client.clone(), &selector.namespace);
        let secret = secrets
            .get_opt(&selector.name)
            .await
            .map_err(|source| LookupError::Kube {
                provider: name.clone(),
                source,
            })?
            .ok_or_else(|| LookupError::SecretNotFound {
                provider: name.clone(),
                namespace: selector.namespace.clone(),
                secret: selector.name.clone(),
            })?;
        let key = secret
            .data
            .as_ref()
            .and_then(|d| d.get(&selector.key))
            .and_then(|v| String::from_utf8(v.0.clone()).ok())
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
            .ok_or_else(|| LookupError::KeyMissing {
                provider: name.clone(),
                namespace: selector.namespace.clone(),
                secret: selector.name.clone(),
                key: selector.key.clone(),
            })?;
        let fingerprint = format!(
            "{}/{}/{}",
            provider.metadata.uid.as_deref().unwrap_or_default(),
            provider.resource_version().unwrap_or_default(),
            secret.resource_version().unwrap_or_default()
        );
        let spec = provider.spec.clone();
        self.providers
            .get_or_build(&name, &fingerprint, move || ProviderConfig {
                api: spec.api,
                endpoint: spec.endpoint.clone(),
                api_key: SecretString::from(key),
                request_timeout: Duration::from_secs(u64::from(spec.request_timeout_seconds)),
                supabase_organization: spec.supabase.as_ref().map(|s| s.organization_slug.clone()),
                request_budget: spec.request_budget.as_ref().map(|b| {
                    (
                        b.requests_per_second,
                        b.burst.unwrap_or(b.requests_per_second),
                    )
                }),
            })
            .map_err(|source| LookupError::Invalid {
                provider: name,
                source,
            })
    }
}
