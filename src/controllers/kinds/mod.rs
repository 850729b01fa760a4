//! One controller per custom resource: project, branch (with its expiry),
//! snapshot, byok, role (with its workload rollouts) and provider. They use every layer below them in
//! `controllers/`: `pipeline/`, `secret/`, `protection/` and `runtime/`.

pub mod branch;
pub mod byok;
pub mod expiry;
pub mod preview_data;
pub mod project;
pub mod provider;
pub mod reset;
pub mod role;
pub mod rollout;
pub mod schedule;
pub mod snapshot;
