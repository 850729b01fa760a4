//! The kinds: one controller per custom resource (`DatabaseProject`,
//! `DatabaseBranch` with its expiry, `DatabaseSnapshot`, `ByokCredential`,
//! `DatabaseProvider`). They use every layer below: `controllers/pipeline/`,
//! `controllers/secret/`, `controllers/protection/` and `controllers/runtime/`.

pub mod branch;
pub mod byok;
pub mod expiry;
pub mod project;
pub mod provider;
pub mod snapshot;
