//! The dbops Kubernetes API (group `dbops.dev`).

pub mod v1alpha1;

/// The API group of every dbops kind.
pub const GROUP: &str = "dbops.dev";
