//! dbops: a Kubernetes operator for managed Postgres.

pub mod api;
pub mod controllers;
pub mod crdgen;
pub mod emulator;
pub mod fuzzing;
pub mod metrics;
pub mod operator;
pub mod providers;
pub mod uninstall;
