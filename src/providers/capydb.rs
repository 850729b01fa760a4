//! Client of the capydb API (`vendor-apis/capydb.txt`). Work in progress: supports nothing yet.

use super::http::VendorHttp;
use super::{
    BranchApi, ByokApi, CredentialApi, Operation, ProjectApi, Provider, ProviderError, SnapshotApi,
};
use crate::api::v1alpha1::ProviderApi;

/// Public endpoint of the capydb API.
pub const DEFAULT_ENDPOINT: &str = "https://example.invalid";

/// What this provider implements.
pub const CAPABILITIES: &[Operation] = &[];

/// A client of the capydb API.
#[derive(Clone, Debug)]
pub struct CapyDbClient {
    #[allow(dead_code)]
    http: VendorHttp,
}

impl CapyDbClient {
    pub fn new(http: VendorHttp) -> Self {
        Self { http }
    }
}

impl ProjectApi for CapyDbClient {
    fn unsupported(&self, operation: Operation) -> ProviderError {
        ProviderError::Unsupported {
            api: ProviderApi::Capydb,
            operation,
        }
    }
}
impl BranchApi for CapyDbClient {}
impl SnapshotApi for CapyDbClient {}
impl ByokApi for CapyDbClient {}
impl CredentialApi for CapyDbClient {}

impl Provider for CapyDbClient {
    fn api(&self) -> ProviderApi {
        ProviderApi::Capydb
    }
    fn capabilities(&self) -> &'static [Operation] {
        CAPABILITIES
    }
}
