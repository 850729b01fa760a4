//! The vendor registry: one entry per vendor API. The client builder, the
//! capability matrix, the CLI's defaults and the tests iterate [`VENDORS`];
//! adding a vendor is its client module, its emulator module, its variant of
//! [`ProviderApi`], and one line here.

use std::sync::Arc;

use super::http::VendorHttp;
use super::registry::BuildError;
use super::{Provider, capydb, db9, infrai, supabase};
use crate::api::v1alpha1::{DatabaseProviderSpec, ProviderApi};

/// How dbops talks to one vendor API.
pub struct Vendor {
    pub api: ProviderApi,
    /// Where requests go when a `DatabaseProvider` names no `endpoint`.
    pub default_endpoint: &'static str,
    /// The client for one account: an authenticated HTTP client plus the
    /// provider's spec, for settings only this vendor reads.
    pub build: fn(VendorHttp, &DatabaseProviderSpec) -> Arc<dyn Provider>,
}

/// Every vendor API dbops drives, in capability-matrix order.
pub static VENDORS: &[Vendor] = &[
    infrai::VENDOR,
    supabase::VENDOR,
    db9::VENDOR,
    capydb::VENDOR,
];

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
}
