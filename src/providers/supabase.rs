//! Client of the supabase API (`vendor-apis/supabase.txt`). Work in progress: supports nothing yet.

use super::http::VendorHttp;
use super::{
    BranchApi, ByokApi, CredentialApi, Operation, ProjectApi, Provider, ProviderError, SnapshotApi,
};
use crate::api::v1alpha1::ProviderApi;

/// Public endpoint of the supabase API.
pub const DEFAULT_ENDPOINT: &str = "https://example.invalid";

/// What this provider implements.
pub const CAPABILITIES: &[Operation] = &[];

/// A client of the supabase API.
#[derive(Clone, Debug)]
pub struct SupabaseClient {
    #[allow(dead_code)]
    http: VendorHttp,
    /// Organization slug new projects are created in (`spec.supabase.organizationSlug`).
    #[allow(dead_code)]
    organization: Option<String>,
}

impl SupabaseClient {
    pub fn new(http: VendorHttp, organization: Option<String>) -> Self {
        Self { http, organization }
    }
}

impl ProjectApi for SupabaseClient {
    fn unsupported(&self, operation: Operation) -> ProviderError {
        ProviderError::Unsupported {
            api: ProviderApi::Supabase,
            operation,
        }
    }
}
impl BranchApi for SupabaseClient {}
impl SnapshotApi for SupabaseClient {}
impl ByokApi for SupabaseClient {}
impl CredentialApi for SupabaseClient {}

impl Provider for SupabaseClient {
    fn api(&self) -> ProviderApi {
        ProviderApi::Supabase
    }
    fn capabilities(&self) -> &'static [Operation] {
        CAPABILITIES
    }
}
