//! The one reconcile pipeline of the kinds that stand for a vendor object:
//! what a kind says about itself (`kind.rs`), the pure decisions (`plan.rs`),
//! the steps (`steps.rs`), rotation, parents and the one error type. It uses
//! `controllers/secret/`, `controllers/protection/` and `controllers/runtime/`.

pub mod error;
pub mod kind;
pub mod parent;
pub mod plan;
pub mod rotation;
pub mod steps;

pub use error::{Error, Object, RotationError};
pub use kind::*;
pub use parent::{Parent, parent_project};
pub use steps::*;
