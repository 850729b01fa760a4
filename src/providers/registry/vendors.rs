//! The vendor registry: one [`Vendor`] per vendor API, listed in
//! [`VENDORS`]. The client builder, the capability matrix and the tests
//! iterate it; adding a vendor is its client module (which declares its
//! [`Vendor`]), its emulator module, its variant of [`ProviderApi`], and two
//! lines: its `mod` in `providers/clients/mod.rs` and its entry here.

use crate::api::v1alpha1::ProviderApi;
use crate::providers::base::vendor::BuildError;
pub use crate::providers::base::vendor::{Build, Vendor};
use crate::providers::clients::{capydb, db9, infrai, postgres, supabase};

/// Every vendor API dbops drives, in capability-matrix order: each client
/// module's [`Vendor`] descriptor.
pub static VENDORS: &[Vendor] = &[
    infrai::VENDOR,
    supabase::VENDOR,
    db9::VENDOR,
    capydb::VENDOR,
    postgres::VENDOR,
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
