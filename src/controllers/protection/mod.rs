//! Who may use what, and what must stay: in-use protection (`in_use.rs`, the
//! pure `plan.rs`), vendor claims, the tenancy policy and the provider lookup
//! that applies them. It uses only `controllers/runtime/`.

pub mod claims;
pub mod in_use;
pub mod plan;
pub(crate) mod provider_lookup;
pub mod tenancy;

pub use crate::controllers::runtime::DEFAULT_FINALIZER;
pub use in_use::*;
pub use provider_lookup::{LookupError, ProviderHandle};
