//! The bottom of `providers/`: the provider traits and the types they speak
//! in, the errors, the HTTP plumbing every client shares, the neutral BYOK
//! model and the `Assumption` type. It uses only `api` and `metrics`.

pub mod assumption;
pub mod byok;
mod error;
pub mod http;
mod operation;
mod provider;
pub mod sql;
pub mod vendor;

pub use assumption::Assumption;
pub use byok::ByokApi;
pub use error::ProviderError;
pub use operation::Operation;
pub use provider::*;
pub use sql::{Rows, SqlApi, SqlChannel};
pub use vendor::{Build, BuildError, ProviderConfig, Vendor};
