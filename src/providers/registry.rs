//! Builds (and caches) the provider client for a `DatabaseProvider`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use secrecy::SecretString;

use super::Provider;
use super::http::{ConfigError, VendorHttp};
use super::infrai::{self, InfraiClient};
use crate::api::v1alpha1::ProviderApi;
use crate::metrics::Metrics;

/// Everything needed to talk to one vendor account.
#[derive(Clone)]
pub struct ProviderConfig {
    pub api: ProviderApi,
    /// Base URL; the vendor's public endpoint when `None`.
    pub endpoint: Option<String>,
    pub api_key: SecretString,
    pub request_timeout: Duration,
    /// Supabase organization slug new projects go into.
    pub supabase_organization: Option<String>,
    /// Request budget: (requests per second, burst).
    pub request_budget: Option<(u32, u32)>,
}

impl ProviderConfig {
    /// The endpoint requests go to.
    pub fn effective_endpoint(&self) -> &str {
        match &self.endpoint {
            Some(endpoint) => endpoint,
            None => match self.api {
                ProviderApi::Infrai => infrai::DEFAULT_ENDPOINT,
                ProviderApi::Supabase => super::supabase::DEFAULT_ENDPOINT,
                ProviderApi::Db9 => super::db9::DEFAULT_ENDPOINT,
                ProviderApi::Capydb => super::capydb::DEFAULT_ENDPOINT,
            },
        }
    }
}

/// Why a provider client could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("the {0} API is not implemented by this version of dbops")]
    NotImplemented(ProviderApi),
}

/// Provider clients by `DatabaseProvider` name, rebuilt when the provider or its
/// Secret changes (the caller passes a fingerprint of both, e.g. their resourceVersions).
#[derive(Default)]
pub struct ProviderRegistry {
    metrics: Option<Arc<Metrics>>,
    cache: Mutex<HashMap<String, CachedProvider>>,
}

/// A built client and the fingerprint of the configuration it was built from.
type CachedProvider = (String, Arc<dyn Provider>);

impl ProviderRegistry {
    pub fn new(metrics: Option<Arc<Metrics>>) -> Self {
        Self {
            metrics,
            cache: Mutex::default(),
        }
    }

    /// The client for provider `name`, built from `config` unless one built from
    /// the same `fingerprint` is cached.
    pub fn get_or_build(
        &self,
        name: &str,
        fingerprint: &str,
        config: impl FnOnce() -> ProviderConfig,
    ) -> Result<Arc<dyn Provider>, BuildError> {
        let mut cache = self
            .cache
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some((cached_fingerprint, provider)) = cache.get(name)
            && cached_fingerprint == fingerprint
        {
            return Ok(provider.clone());
        }
        let provider = build(&config(), self.metrics.clone())?;
        cache.insert(
            name.to_string(),
            (fingerprint.to_string(), provider.clone()),
        );
        Ok(provider)
    }
}

/// A fresh provider client for `config`.
pub fn build(
    config: &ProviderConfig,
    metrics: Option<Arc<Metrics>>,
) -> Result<Arc<dyn Provider>, BuildError> {
    let http = VendorHttp::new(
        config.api,
        config.effective_endpoint(),
        &config.api_key,
        config.request_timeout,
        metrics,
    )?;
    let http = match config.request_budget {
        Some((per_second, burst)) => http.with_budget(per_second, burst),
        None => http,
    };
    match config.api {
        ProviderApi::Infrai => Ok(Arc::new(InfraiClient::new(http))),
        ProviderApi::Supabase => Ok(Arc::new(super::supabase::SupabaseClient::new(
            http,
            config.supabase_organization.clone(),
        ))),
        ProviderApi::Db9 => Ok(Arc::new(super::db9::Db9Client::new(http))),
        ProviderApi::Capydb => Ok(Arc::new(super::capydb::CapyDbClient::new(http))),
    }
}
