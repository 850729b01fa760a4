//! Client of the CapyDB API (`vendor-apis/capydb.txt`): connection strings of
//! projects and preview databases, and asynchronous credential rotation.
//!
//! The documented API only reads connections and rotates credentials:
//!
//! - Projects and preview databases cannot be created through it. Create them in
//!   CapyDB and adopt them with `externalId` (a `Project`'s `externalId` is the
//!   CapyDB project id, a `Branch`'s is the preview database id): adoption uses
//!   [`ProjectApi::get_project`] and [`BranchApi::get_branch`], which read the
//!   connections.
//! - Nothing can be deleted through it either, so `deletionPolicy: Delete` cannot
//!   be honoured: delete the project or preview database in CapyDB.
//! - Snapshots are not in the API.
//! - Rotation exists for projects only; a preview database's password cannot be
//!   rotated.
//!
//! Everything else answers [`ProviderError::Unsupported`].

use async_trait::async_trait;
use reqwest::Method;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::api::v1alpha1::ProviderApi;
use crate::providers::base::http::VendorHttp;
use crate::providers::base::{
    BranchApi, Build, ConnectionUri, CredentialApi, Operation, Password, ProjectApi, Provider,
    ProviderError, ResourceState, RotationProgress, RotationTarget, Vendor, VendorBranch,
    VendorProject,
};

// The CapyDB document shows only `https://example.com`, so there is no
// default endpoint: a CapyDB provider must set `spec.endpoint`.

/// This vendor's entry in the registry (`providers::registry::VENDORS`).
pub const VENDOR: Vendor = Vendor {
    api: ProviderApi::Capydb,
    default_endpoint: None,
    build: Build::Http(|http, _spec| std::sync::Arc::new(CapyDbClient::new(http))),
};

const OP_PROJECT_CONNECTIONS: &str = "projects.connections.get";
const OP_PREVIEW_CONNECTIONS: &str = "preview-databases.connections.get";
const OP_ROTATE: &str = "projects.credentials.rotate";

/// Separates the vendor job id from the connection fingerprint in a rotation handle.
const HANDLE_SEPARATOR: char = '#';
/// Hex characters of the connection fingerprint kept in a rotation handle.
const FINGERPRINT_LEN: usize = 16;

/// `{"connections": {...}}`.
#[derive(Deserialize)]
struct ConnectionsEnvelope {
    connections: ConnectionsWire,
}

/// `{"direct_url", "pooled_url", "username"}`; the URLs carry the password.
/// No `Debug`, on purpose.
#[derive(Deserialize)]
struct ConnectionsWire {
    #[serde(default)]
    direct_url: Option<String>,
    #[serde(default)]
    pooled_url: Option<String>,
}

impl ConnectionsWire {
    fn direct(&self) -> Option<ConnectionUri> {
        non_empty(&self.direct_url)
    }

    fn pooled(&self) -> Option<ConnectionUri> {
        non_empty(&self.pooled_url)
    }
}

fn non_empty(value: &Option<String>) -> Option<ConnectionUri> {
    value
        .as_deref()
        .filter(|v| !v.is_empty())
        .map(ConnectionUri::new)
}

/// `{"job": {...}}`.
#[derive(Deserialize)]
struct JobEnvelope {
    job: JobWire,
}

/// The fields of a rotation job the client uses. The job's `error`,
/// `last_stdout` and `last_stderr` are free text from the rotation run and are
/// never read, so that nothing they might hold reaches errors or logs.
#[derive(Deserialize)]
struct JobWire {
    id: String,
    state: String,
    #[serde(default)]
    attempts: Option<u64>,
    #[serde(default)]
    retry_classification: Option<String>,
}

/// What a job's `state` means. The document shows only `pending`; the other
/// names are the usual ones of job queues.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum JobPhase {
    InFlight,
    Succeeded,
    Failed,
}

fn job_phase(state: &str) -> Option<JobPhase> {
    match state.to_ascii_lowercase().as_str() {
        "pending" | "queued" | "claimed" | "running" | "in_progress" | "retrying" => {
            Some(JobPhase::InFlight)
        }
        "succeeded" | "success" | "completed" | "complete" | "done" => Some(JobPhase::Succeeded),
        "failed" | "failure" | "error" | "errored" | "cancelled" | "canceled" | "dead" => {
            Some(JobPhase::Failed)
        }
        _ => None,
    }
}

/// A fingerprint of a project's connection URLs, salted with the job id: the
/// first 64 bits of a SHA-256, so the handle says whether the URLs changed
/// without holding anything that reveals them.
fn fingerprint(job_id: &str, connections: &ConnectionsWire) -> String {
    let mut hash = Sha256::new();
    hash.update(b"dbops-capydb-rotation-v1\0");
    hash.update(job_id.as_bytes());
    hash.update(b"\0");
    hash.update(connections.direct_url.as_deref().unwrap_or_default());
    hash.update(b"\0");
    hash.update(connections.pooled_url.as_deref().unwrap_or_default());
    hash.finalize()
        .iter()
        .take(FINGERPRINT_LEN / 2)
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The handle handed to the controller for a job in flight: `<job id>#<fingerprint>`.
fn handle(job_id: &str, before: &ConnectionsWire) -> String {
    format!("{job_id}{HANDLE_SEPARATOR}{}", fingerprint(job_id, before))
}

/// Splits a handle into the vendor job id and, when present, the fingerprint of
/// the connections before the rotation. A bare job id is accepted too.
fn parse_handle(handle: &str) -> (&str, Option<&str>) {
    match handle.rsplit_once(HANDLE_SEPARATOR) {
        Some((job_id, fp))
            if !job_id.is_empty()
                && fp.len() == FINGERPRINT_LEN
                && fp.bytes().all(|b| b.is_ascii_hexdigit()) =>
        {
            (job_id, Some(fp))
        }
        _ => (handle, None),
    }
}

/// A client of the CapyDB API.
///
/// # Credential rotation without a job GET
///
/// `POST /v1/projects/{id}/credentials/rotate` answers an asynchronous job, and
/// the document has no way to read a job back. It does not say what a second
/// POST does while a job runs, so the client never posts again to learn a
/// job's state (a vendor that starts a new job on each POST would be rotated
/// without end):
///
/// 1. [`CredentialApi::rotate_credentials`] reads the project's connections
///    *before* posting, then posts once. The job it gets back is handed to the
///    controller as `<job id>#<fingerprint>`, where the fingerprint is a salted,
///    truncated SHA-256 of the connection URLs before the rotation (it reveals
///    nothing of them).
/// 2. [`CredentialApi::rotation_status`] only reads the connections (a GET,
///    which never starts anything). When they differ from the fingerprint, the
///    job has succeeded: `Done` with the new URLs. While they are unchanged the
///    rotation is `Pending`; the controller gives it up after
///    `rotation::ROTATION_JOB_LIMIT` and keeps the current credentials.
///
/// A job that fails is therefore seen only as a rotation that never finishes
/// (see [`ASSUMED`]). A handle without a fingerprint (a bare job id) takes the
/// connections as they are.
#[derive(Clone, Debug)]
pub struct CapyDbClient {
    http: VendorHttp,
}

impl CapyDbClient {
    pub fn new(http: VendorHttp) -> Self {
        Self { http }
    }

    async fn connections(
        &self,
        operation: &str,
        path: &[&str],
    ) -> Result<ConnectionsWire, ProviderError> {
        let envelope: ConnectionsEnvelope = self
            .http
            .call(operation, Method::GET, path, &[], None)
            .await?;
        Ok(envelope.connections)
    }

    /// `GET /v1/projects/{projectID}/connections`.
    async fn project_connections(&self, id: &str) -> Result<ConnectionsWire, ProviderError> {
        self.connections(
            OP_PROJECT_CONNECTIONS,
            &["v1", "projects", id, "connections"],
        )
        .await
    }

    /// `GET /v1/preview-databases/{previewID}/connections`.
    async fn preview_connections(&self, id: &str) -> Result<ConnectionsWire, ProviderError> {
        self.connections(
            OP_PREVIEW_CONNECTIONS,
            &["v1", "preview-databases", id, "connections"],
        )
        .await
    }

    /// `POST /v1/projects/{projectID}/credentials/rotate` (no body).
    async fn post_rotate(&self, project_id: &str) -> Result<JobWire, ProviderError> {
        let envelope: JobEnvelope = self
            .http
            .call(
                OP_ROTATE,
                Method::POST,
                &["v1", "projects", project_id, "credentials", "rotate"],
                &[],
                None,
            )
            .await?;
        Ok(envelope.job)
    }

    fn invalid(&self, operation: &str, message: String) -> ProviderError {
        ProviderError::InvalidResponse {
            api: ProviderApi::Capydb,
            operation: operation.to_string(),
            message,
        }
    }

    /// `Done` with the connections read after the job succeeded.
    fn done(&self, connections: &ConnectionsWire) -> Result<RotationProgress, ProviderError> {
        let Some(direct) = connections.direct() else {
            return Err(self.invalid(
                OP_PROJECT_CONNECTIONS,
                "no direct_url after a successful rotation".to_string(),
            ));
        };
        Ok(RotationProgress::Done {
            connection_uri: Some(direct),
            pooled_uri: connections.pooled(),
            password: None,
        })
    }

    /// What a job answered by the rotate POST means. `pending_handle` is the
    /// handle to report while the job is in flight.
    async fn progress(
        &self,
        project_id: &str,
        job: &JobWire,
        pending_handle: String,
    ) -> Result<RotationProgress, ProviderError> {
        match job_phase(&job.state) {
            Some(JobPhase::InFlight) => Ok(RotationProgress::Pending {
                job_id: pending_handle,
                state: job.state.clone(),
            }),
            Some(JobPhase::Succeeded) => {
                let after = self.project_connections(project_id).await?;
                self.done(&after)
            }
            Some(JobPhase::Failed) => {
                let mut message = format!("CapyDB rotation job {} ended {}", job.id, job.state);
                if let Some(attempts) = job.attempts {
                    message.push_str(&format!(" after {attempts} attempt(s)"));
                }
                if let Some(class) = job
                    .retry_classification
                    .as_deref()
                    .filter(|c| !c.is_empty())
                {
                    message.push_str(&format!(" ({class})"));
                }
                Ok(RotationProgress::Failed(message))
            }
            // A state the document does not show: still running, as far as
            // anyone can tell; the controller bounds how long it waits.
            None => Ok(RotationProgress::Pending {
                job_id: pending_handle,
                state: job.state.clone(),
            }),
        }
    }

    fn project_target<'a>(&self, target: &'a RotationTarget) -> Result<&'a str, ProviderError> {
        match target {
            RotationTarget::Project { id } => Ok(id),
            // The API rotates projects only, not preview databases.
            RotationTarget::Branch { .. } => Err(self.unsupported(Operation::CredentialRotate)),
        }
    }
}

#[async_trait]
impl ProjectApi for CapyDbClient {
    /// The project's connections. CapyDB reports no name, region or state: the
    /// name is the id, and a project whose connections can be read is `Ready`.
    async fn get_project(&self, id: &str) -> Result<VendorProject, ProviderError> {
        let connections = self.project_connections(id).await?;
        Ok(VendorProject {
            id: id.to_string(),
            name: id.to_string(),
            region: None,
            created_at: None,
            state: ResourceState::Ready,
            connection_uri: connections.direct(),
            pooled_uri: connections.pooled(),
        })
    }
}

/// Preview databases are dbops branches. Only reading them is possible.
#[async_trait]
impl BranchApi for CapyDbClient {
    /// The preview database's connections. The API does not say which project a
    /// preview database belongs to, and the client does not guess: the branch
    /// is reported under no project, so it cannot be adopted as a branch of
    /// one (a child adopts only what its vendor shows to be its parent's).
    async fn get_branch(&self, _project_id: &str, id: &str) -> Result<VendorBranch, ProviderError> {
        let connections = self.preview_connections(id).await?;
        Ok(VendorBranch {
            id: id.to_string(),
            name: id.to_string(),
            project_id: String::new(),
            state: ResourceState::Ready,
            connection_uri: connections.direct(),
            pooled_uri: connections.pooled(),
        })
    }
}

/// Project password rotation through CapyDB's asynchronous job; see
/// [`CapyDbClient`] for how polling avoids starting a second rotation.
#[async_trait]
impl CredentialApi for CapyDbClient {
    /// CapyDB generates the new password itself, so `proposed` is ignored; the
    /// API takes no idempotency key, but a retry while the job runs answers the
    /// same job (the project is locked by it).
    async fn rotate_credentials(
        &self,
        target: &RotationTarget,
        proposed: &Password,
        idempotency_key: &str,
    ) -> Result<RotationProgress, ProviderError> {
        let _ = (proposed, idempotency_key);
        let project_id = self.project_target(target)?;
        let before = self.project_connections(project_id).await?;
        let job = self.post_rotate(project_id).await?;
        let pending = handle(&job.id, &before);
        self.progress(project_id, &job, pending).await
    }

    async fn rotation_status(
        &self,
        target: &RotationTarget,
        job_handle: &str,
    ) -> Result<RotationProgress, ProviderError> {
        let project_id = self.project_target(target)?;
        let (job_id, before) = parse_handle(job_handle);
        let now = self.project_connections(project_id).await?;
        match before {
            Some(before) if fingerprint(job_id, &now) == before => Ok(RotationProgress::Pending {
                job_id: job_handle.to_string(),
                state: "pending".to_string(),
            }),
            // The URLs changed: the job succeeded.
            _ => self.done(&now),
        }
    }
}

/// CapyDB reads connections and rotates a project's password; it cannot
/// create or delete, and has no snapshots and no BYOK.
impl Provider for CapyDbClient {
    fn api(&self) -> ProviderApi {
        ProviderApi::Capydb
    }
    fn branches(&self) -> Option<&dyn BranchApi> {
        Some(self)
    }
    fn project_credentials(&self) -> Option<&dyn CredentialApi> {
        Some(self)
    }
    fn unsupported_hint(&self, operation: Operation) -> Option<&'static str> {
        match operation {
            Operation::ProjectCreate | Operation::BranchCreate => Some(
                "CapyDB's API cannot create projects or preview databases: create it in CapyDB, then adopt it here with spec.externalId",
            ),
            Operation::ProjectDelete | Operation::BranchDelete => Some(
                "CapyDB's API cannot delete; delete it in CapyDB and use deletionPolicy: Retain",
            ),
            _ => None,
        }
    }
}

/// Where the document is silent and this client reads or relies on something
/// anyway (see [`Assumption`](crate::providers::base::Assumption)).
pub const ASSUMED: &[crate::providers::base::Assumption] = &[
    crate::providers::base::Assumption {
        method: "GET",
        path: "/v1/projects/{projectID}/connections",
        reads: &[],
        why: "the document shows `direct_url`, `pooled_url` and `username` but no password: the client assumes the URLs carry it, and that they change when a rotation succeeds (that is how it sees a rotation finish)",
    },
    crate::providers::base::Assumption {
        method: "POST",
        path: "/v1/projects/{projectID}/credentials/rotate",
        reads: &[],
        why: "the document shows only the job state `pending` and no way to read a job back: the client posts once, reads `succeeded`/`failed` and the usual job-queue names when the answer has them, takes any other state for in flight, and never posts again to poll",
    },
];

#[cfg(test)]
mod tests {
    use super::*;

    fn conn(direct: &str, pooled: &str) -> ConnectionsWire {
        ConnectionsWire {
            direct_url: Some(direct.to_string()),
            pooled_url: Some(pooled.to_string()),
        }
    }

    #[test]
    fn handles_carry_the_job_id_and_a_fingerprint_that_reveals_no_password() {
        let before = conn(
            "postgresql://u:SECRETPW@h/db",
            "postgresql://u:SECRETPW@p/db",
        );
        let h = handle("job_1", &before);
        assert!(!h.contains("SECRETPW"));
        let (job, fp) = parse_handle(&h);
        assert_eq!(job, "job_1");
        assert_eq!(fp.map(str::len), Some(FINGERPRINT_LEN));
        assert_eq!(fp, Some(fingerprint("job_1", &before).as_str()));
        let after = conn("postgresql://u:NEWPW@h/db", "postgresql://u:NEWPW@p/db");
        assert_ne!(fp, Some(fingerprint("job_1", &after).as_str()));
    }

    #[test]
    fn bare_job_ids_are_accepted() {
        assert_eq!(parse_handle("job_1"), ("job_1", None));
        assert_eq!(parse_handle("a#b"), ("a#b", None));
        assert_eq!(
            parse_handle("#0123456789abcdef"),
            ("#0123456789abcdef", None)
        );
    }

    #[test]
    fn job_states_are_classified() {
        assert_eq!(job_phase("pending"), Some(JobPhase::InFlight));
        assert_eq!(job_phase("running"), Some(JobPhase::InFlight));
        assert_eq!(job_phase("succeeded"), Some(JobPhase::Succeeded));
        assert_eq!(job_phase("FAILED"), Some(JobPhase::Failed));
        assert_eq!(job_phase("mystery"), None);
    }
}
