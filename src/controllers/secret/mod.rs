//! The connection Secret: the connection details (`details.rs`, pure), the
//! keys and templates that lay them out (`connection_keys/`, pure), and the
//! writer of owned Secrets (`writer.rs`). It uses only `controllers/runtime/`.

pub mod connection_keys;
pub mod details;
pub mod writer;

pub use details::{ConnectionDetails, ConnectionError};
pub use writer::*;
