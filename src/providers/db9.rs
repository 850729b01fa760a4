//! Client of the db9 API (`vendor-apis/db9.txt`). Work in progress: supports nothing yet.

use super::http::VendorHttp;
use super::{
    BranchApi, ByokApi, CredentialApi, Operation, ProjectApi, Provider, ProviderError, SnapshotApi,
};
use crate::api::v1alpha1::ProviderApi;

/// Public endpoint of the db9 API.
pub const DEFAULT_ENDPOINT: &str = "https://example.invalid";

/// What this provider implements.
pub const CAPABILITIES: &[Operation] = &[];

/// A client of the db9 API.
#[derive(Clone, Debug)]
pub struct Db9Client {
    #[allow(dead_code)]
    http: VendorHttp,
}

impl Db9Client {
    pub fn new(http: VendorHttp) -> Self {
        Self { http }
    }
}

impl ProjectApi for Db9Client {
    fn unsupported(&self, operation: Operation) -> ProviderError {
        ProviderError::Unsupported {
            api: ProviderApi::Db9,
            operation,
        }
    }
}
impl BranchApi for Db9Client {}
impl SnapshotApi for Db9Client {}
impl ByokApi for Db9Client {}
impl CredentialApi for Db9Client {}

impl Provider for Db9Client {
    fn api(&self) -> ProviderApi {
        ProviderApi::Db9
    }
    fn capabilities(&self) -> &'static [Operation] {
        CAPABILITIES
    }
}
