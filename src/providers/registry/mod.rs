//! The top of `providers/`: the registered vendors ([`VENDORS`]), the client
//! builder and its cache, the contract lists and the capability matrix. It
//! uses the layers below: `providers/clients/` and `providers/base/`.

mod build;
pub mod contract;
pub mod matrix;
pub mod vendors;

pub use build::{ProviderRegistry, build};
pub use vendors::{VENDORS, vendor};
