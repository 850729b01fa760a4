//! How a vendor client is registered and built: the [`Vendor`] descriptor
//! each client module declares, and the [`ProviderConfig`] a client is built
//! from. The registry (`providers/registry/`) lists the descriptors and
//! builds the clients.

use std::sync::Arc;

use secrecy::SecretString;

use super::http::{ConfigError, VendorHttp};
use super::provider::Provider;
use crate::api::v1alpha1::{DatabaseProviderSpec, ProviderApi, SecretKeySelector};

/// How dbops talks to one vendor API.
pub struct Vendor {
    pub api: ProviderApi,
    /// Where requests go when a `DatabaseProvider` names no `endpoint`: the
    /// public endpoint the vendor's document gives. `None` when it gives none;
    /// then `endpoint` is required (admission refuses a provider without it).
    pub default_endpoint: Option<&'static str>,
    /// How the client for one account is built.
    pub build: Build,
}

/// How a vendor's client is built.
pub enum Build {
    /// An HTTP API: the client gets an authenticated HTTP client plus the
    /// provider's spec, for settings only this vendor reads. Each has an
    /// emulator under its name.
    Http(fn(VendorHttp, &DatabaseProviderSpec) -> Arc<dyn Provider>),
    /// Anything else (a database server's own protocol): the client is built
    /// from the whole configuration. There is no emulator: the real thing
    /// runs anywhere.
    Direct(fn(&ProviderConfig) -> Result<Arc<dyn Provider>, BuildError>),
}

impl Vendor {
    /// Whether this vendor is an HTTP API (and so has an emulator).
    pub fn is_http(&self) -> bool {
        matches!(self.build, Build::Http(_))
    }

    /// An endpoint a client can be built for without reaching anything (the
    /// capability matrix builds one to ask it what it offers).
    pub fn unreachable_endpoint(&self) -> &'static str {
        match self.build {
            Build::Http(_) => "http://127.0.0.1:9",
            Build::Direct(_) => "postgres://dbops@127.0.0.1:9/postgres",
        }
    }
}

/// `spec.requestTimeoutSeconds` when a configuration is made in code.
const DEFAULT_REQUEST_TIMEOUT_SECONDS: u32 = 30;

/// Everything needed to talk to one vendor account: the provider's spec and
/// the API key from its Secret.
#[derive(Clone)]
pub struct ProviderConfig {
    pub spec: DatabaseProviderSpec,
    pub api_key: SecretString,
}

impl ProviderConfig {
    /// A configuration for `api` at `endpoint` (the vendor's public one when
    /// `None`) with every other setting at its default; for tools and tests.
    pub fn new(api: ProviderApi, endpoint: Option<String>, api_key: SecretString) -> Self {
        Self {
            spec: DatabaseProviderSpec {
                api,
                endpoint,
                credentials_secret_ref: SecretKeySelector {
                    name: String::new(),
                    namespace: String::new(),
                    key: String::new(),
                },
                request_timeout_seconds: DEFAULT_REQUEST_TIMEOUT_SECONDS,
                supabase: None,
                postgres: None,
                byok_policy: None,
                request_budget: None,
                allowed_namespaces: Default::default(),
                adoption: Default::default(),
            },
            api_key,
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
    #[error(
        "spec.endpoint is required: the {0} API document gives no public endpoint to default to"
    )]
    EndpointRequired(ProviderApi),
    /// A configuration a non-HTTP client cannot use (one clear sentence).
    #[error("{0}")]
    Invalid(String),
}
