//! The vendor registry: one [`Vendor`] per vendor API, listed in
//! [`VENDORS`](super::VENDORS) next to the module declarations. The client
//! builder, the capability matrix and the tests iterate it; adding a vendor is
//! its client module, its emulator module, its variant of [`ProviderApi`],
//! and two lines in `providers/mod.rs` (its `mod` and its registration).

use std::sync::Arc;

use super::http::VendorHttp;
use super::registry::{BuildError, ProviderConfig};
use super::{Provider, VENDORS};
use crate::api::v1alpha1::{DatabaseProviderSpec, ProviderApi};

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

/// The registration of `api`.
pub fn vendor(api: ProviderApi) -> Result<&'static Vendor, BuildError> {
    VENDORS
        .iter()
        .find(|v| v.api == api)
        .ok_or(BuildError::NotImplemented(api))
}

#[cfg(test)]
mod tests {
    use super::*;
    use strum::IntoEnumIterator;

    #[test]
    fn every_api_in_the_crd_is_registered_once() {
        for api in ProviderApi::iter() {
            assert_eq!(
                VENDORS.iter().filter(|v| v.api == api).count(),
                1,
                "{api} must be registered exactly once"
            );
        }
        assert_eq!(VENDORS.len(), ProviderApi::iter().count());
    }

    #[test]
    fn the_crd_requires_an_endpoint_exactly_where_no_default_is_documented() {
        let with_default: Vec<String> = VENDORS
            .iter()
            .filter(|v| v.default_endpoint.is_some())
            .map(|v| format!("'{}'", v.api))
            .collect();
        assert_eq!(
            crate::api::v1alpha1::ENDPOINT_RULE,
            format!(
                "self.api in [{}] || has(self.endpoint)",
                with_default.join(", ")
            ),
            "the CEL rule on DatabaseProvider.spec must list the APIs with a documented endpoint"
        );
    }

    #[test]
    fn every_registered_vendor_has_its_emulator_under_its_name() {
        let registered: Vec<String> = VENDORS
            .iter()
            .filter(|v| v.is_http())
            .map(|v| v.api.to_string())
            .collect();
        assert_eq!(crate::emulator::api_names(), registered);
    }
}
