//! The one reconcile of the kinds that stand for a vendor object: `kind.rs`,
//! the pure `plan.rs`, `steps.rs`, rotation, parents and the one error type.
//! It uses `controllers/secret/`, `protection/` and `runtime/`.

pub mod error;
pub mod grants;
pub mod kind;
pub mod masking;
pub mod parent;
pub mod plan;
pub mod rotation;
pub mod schedule;
pub mod steps;

pub use error::{Error, Object, RotationError};
pub use kind::*;
pub use parent::{Parent, parent_project};
pub use steps::*;
