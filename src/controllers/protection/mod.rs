//! Who may use what, and what must stay: the in-use protection of providers
//! and their Secrets (`in_use.rs`, deciding in `plan.rs`), vendor claims
//! (`claims.rs`), the tenancy policy (`tenancy.rs`) and the provider lookup
//! that applies them (`provider_lookup.rs`). It uses only `controllers/runtime/`.

pub mod claims;
pub mod in_use;
pub mod plan;
pub(crate) mod provider_lookup;
pub mod tenancy;

pub use crate::controllers::runtime::DEFAULT_FINALIZER;
pub use in_use::*;
pub use provider_lookup::{LookupError, ProviderHandle};
