//! Builds (and caches) the provider client for a `DatabaseProvider`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::vendors;
use crate::metrics::Metrics;
use crate::providers::base::Provider;
use crate::providers::base::http::VendorHttp;
use crate::providers::base::vendor::{BuildError, ProviderConfig};

// Where a configuration's requests go, and how long they may take: read
// through the registered vendors, so written here rather than with the
// struct (in `providers/base/vendor.rs`).
impl ProviderConfig {
    /// The endpoint requests go to: `spec.endpoint`, else the public one the
    /// vendor's document gives. Where the document gives none, there is no
    /// default to guess: the provider must name its endpoint.
    pub fn effective_endpoint(&self) -> Result<&str, BuildError> {
        match &self.spec.endpoint {
            Some(endpoint) => Ok(endpoint),
            None => vendors::vendor(self.spec.api)?
                .default_endpoint
                .ok_or(BuildError::EndpointRequired(self.spec.api)),
        }
    }

    fn request_timeout(&self) -> Duration {
        Duration::from_secs(u64::from(self.spec.request_timeout_seconds))
    }
}

/// Provider clients by `DatabaseProvider` name, rebuilt when the provider or its
/// Secret changes (the caller passes a fingerprint of both, e.g. their resourceVersions).
#[derive(Default)]
pub struct ProviderRegistry {
    metrics: Option<Arc<Metrics>>,
    /// Fixed addresses for vendor host names ([`VendorHttp::with_hosts`]).
    hosts: Vec<(String, std::net::SocketAddr)>,
    cache: Mutex<HashMap<String, CachedProvider>>,
}

/// A built client and the fingerprint of the configuration it was built from.
type CachedProvider = (String, Arc<dyn Provider>);

impl ProviderRegistry {
    pub fn new(metrics: Option<Arc<Metrics>>) -> Self {
        Self {
            metrics,
            hosts: Vec::new(),
            cache: Mutex::default(),
        }
    }

    /// Clients built from now on connect to a fixed address for each host
    /// name in `hosts` (the built-in emulator's in-cluster name, say).
    pub fn with_hosts(mut self, hosts: Vec<(String, std::net::SocketAddr)>) -> Self {
        self.hosts = hosts;
        self
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
        let provider = build_with_hosts(&config(), self.metrics.clone(), &self.hosts)?;
        cache.insert(
            name.to_string(),
            (fingerprint.to_string(), provider.clone()),
        );
        Ok(provider)
    }
}

/// A fresh provider client for `config`, through the vendor's registration.
pub fn build(
    config: &ProviderConfig,
    metrics: Option<Arc<Metrics>>,
) -> Result<Arc<dyn Provider>, BuildError> {
    build_with_hosts(config, metrics, &[])
}

/// [`build`], connecting to a fixed address for each host name in `hosts`.
pub fn build_with_hosts(
    config: &ProviderConfig,
    metrics: Option<Arc<Metrics>>,
    hosts: &[(String, std::net::SocketAddr)],
) -> Result<Arc<dyn Provider>, BuildError> {
    let vendor = vendors::vendor(config.spec.api)?;
    let build_http = match vendor.build {
        vendors::Build::Http(build_http) => build_http,
        vendors::Build::Direct(build_direct) => return build_direct(config),
    };
    let http = VendorHttp::with_hosts(
        config.spec.api,
        config.effective_endpoint()?,
        &config.api_key,
        config.request_timeout(),
        metrics,
        hosts,
    )?;
    let http = match &config.spec.request_budget {
        Some(budget) => http.with_budget(
            budget.requests_per_second,
            budget.burst.unwrap_or(budget.requests_per_second),
        ),
        None => http,
    };
    Ok(build_http(http, &config.spec))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::v1alpha1::ProviderApi;
    use secrecy::SecretString;

    #[test]
    fn only_documented_endpoints_are_defaults() {
        let key = || SecretString::from("k".to_string());
        let infrai = ProviderConfig::new(ProviderApi::Infrai, None, key());
        assert_eq!(
            infrai.effective_endpoint().unwrap(),
            "https://api.infrai.cc"
        );
        let capydb = ProviderConfig::new(ProviderApi::Capydb, None, key());
        assert_eq!(
            capydb.effective_endpoint().unwrap_err().to_string(),
            "spec.endpoint is required: the capydb API document gives no public endpoint to default to"
        );
        let named = ProviderConfig::new(
            ProviderApi::Supabase,
            Some("https://x.example".into()),
            key(),
        );
        assert_eq!(named.effective_endpoint().unwrap(), "https://x.example");
    }
}
