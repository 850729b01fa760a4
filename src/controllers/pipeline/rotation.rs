//! Declarative database password rotation, shared by `DatabaseProject` and
//! `DatabaseBranch`: a one-shot request (annotation `dbops.dev/rotate-credentials`
//! set to a new value) or an interval (`spec.credentialRotation.interval`).
//!
//! The connection Secret changes only after the vendor confirms the new
//! credentials, in one write, so readers see the old or the new complete value.
//! Where the operator chooses the password (Supabase), it is first kept in an
//! owned `<secret>-rotation` Secret, so a crash between the vendor's confirmation
//! and the Secret write cannot lose it: the retry sends the same password again.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::Resource;
use sha2::{Digest, Sha256};

use super::error::RotationError;
use super::kind::Connected;
use crate::api::v1alpha1::{
    CredentialRotationSpec, CredentialRotationStatus, ROTATE_ANNOTATION, Rfc3339,
};
use crate::controllers::runtime::conditions::{self, ROTATION_FAILED};
use crate::controllers::runtime::{Context, VendorCall};
use crate::controllers::secret::{self, ConnectionDetails};
use crate::providers::{Password, Provider, RotationProgress, RotationTarget};

/// What a rotation pass came to.
#[derive(Debug, PartialEq)]
pub enum Outcome {
    /// Nothing requested, nothing running.
    Idle,
    /// A rotation job is running at the vendor; save the status and poll again.
    Pending(CredentialRotationStatus),
    /// New credentials are confirmed and in the Secret.
    Rotated(CredentialRotationStatus),
    /// The request could not be carried out; the old credentials stay valid.
    Failed {
        status: CredentialRotationStatus,
        reason: &'static str,
        message: String,
    },
}

/// The request to act on now, if any (pure): a new annotation value, or the
/// interval having passed since the last rotation (or since creation).
pub fn pending_request(
    annotation: Option<&str>,
    spec: Option<&CredentialRotationSpec>,
    state: Option<&CredentialRotationStatus>,
    created_at: Option<Timestamp>,
    now: Timestamp,
) -> Option<String> {
    let handled = state.and_then(|s| s.handled_request.as_deref());
    if let Some(value) = annotation.filter(|v| !v.is_empty())
        && Some(value) != handled
    {
        return Some(value.to_string());
    }
    let due = interval_due(spec, state, created_at)?;
    (now >= due).then(|| format!("interval-{}", due.as_second()))
}

/// When the next interval rotation is due, for requeueing.
pub fn next_due(
    spec: Option<&CredentialRotationSpec>,
    state: Option<&CredentialRotationStatus>,
    created_at: Option<Timestamp>,
    now: Timestamp,
) -> Option<std::time::Duration> {
    let due = interval_due(spec, state, created_at)?;
    Some(std::time::Duration::try_from(due.duration_since(now)).unwrap_or_default())
}

/// When the interval, counted from the last rotation (or creation), runs out.
fn interval_due(
    spec: Option<&CredentialRotationSpec>,
    state: Option<&CredentialRotationStatus>,
    created_at: Option<Timestamp>,
) -> Option<Timestamp> {
    let interval = std::time::Duration::from(spec?.interval?);
    let since = state
        .and_then(|s| s.last_rotated_at)
        .map(|t| t.0)
        .or(created_at)?;
    since
        .checked_add(SignedDuration::try_from(interval).ok()?)
        .ok()
}

/// How long a vendor rotation job may run before it is given up.
pub const ROTATION_JOB_LIMIT: std::time::Duration = std::time::Duration::from_secs(30 * 60);

/// Whether a rotation job started at `since` has run past
/// [`ROTATION_JOB_LIMIT`] (pure). A job with no start time (saved by an
/// older version) counts from now on.
pub fn job_overdue(since: Option<Rfc3339>, now: Timestamp) -> bool {
    let limit = SignedDuration::try_from(ROTATION_JOB_LIMIT).unwrap_or(SignedDuration::MAX);
    since.is_some_and(|since| now.duration_since(since.0) >= limit)
}

fn short_hash(text: &str) -> String {
    Sha256::digest(text.as_bytes())
        .iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// What one rotation pass needs.
pub struct Input<'a> {
    pub target: RotationTarget,
    pub secret_name: &'a str,
    /// How the connection Secret is laid out, and for which API.
    pub layout: Option<&'a crate::api::v1alpha1::ConnectionSecretTarget>,
    pub provider_api: &'a str,
    /// The complete connection details now in the Secret.
    pub details: &'a ConnectionDetails,
    pub spec: Option<&'a CredentialRotationSpec>,
    pub state: Option<&'a CredentialRotationStatus>,
    pub created_at: Option<Timestamp>,
}

/// Carries a rotation forward: starts one when requested, polls a running one,
/// and writes the Secret once the vendor confirms.
pub async fn carry_forward<K>(
    owner: &K,
    ctx: &Context,
    provider: &dyn Provider,
    input: Input<'_>,
) -> Result<Outcome, RotationError>
where
    K: Resource<DynamicType = ()>,
{
    let annotation = owner
        .meta()
        .annotations
        .as_ref()
        .and_then(|a| a.get(ROTATE_ANNOTATION))
        .map(String::as_str);
    let mut state = input.state.cloned().unwrap_or_default();
    let pending_name = format!("{}-rotation", input.secret_name);
    let progress = if let Some(job) = state.pending_job.clone() {
        if job_overdue(state.pending_since, Timestamp::now()) {
            // Never poll without end: a vendor that keeps starting new jobs
            // (or never ends one) leaves the current credentials in force.
            state.pending_job = None;
            state.pending_since = None;
            state.handled_request = annotation.map(str::to_string);
            let _ = secret::delete_owned_secret(&ctx.client, owner, &pending_name).await;
            return Ok(Outcome::Failed {
                status: state,
                reason: "RotationTimedOut",
                message: format!(
                    "the vendor's rotation job {job} did not finish within {} minutes",
                    ROTATION_JOB_LIMIT.as_secs() / 60
                ),
            });
        }
        let polled = match provider.credentials_for(&input.target) {
            Ok(credentials) => credentials.rotation_status(&input.target, &job).await,
            Err(unsupported) => Err(unsupported),
        };
        polled.map_err(|e| VendorCall::new(format!("polling credential rotation {job}"), e))?
    } else {
        let now = Timestamp::now();
        let request = pending_request(annotation, input.spec, input.state, input.created_at, now);
        let Some(request) = request else {
            return Ok(Outcome::Idle);
        };
        let started = start(owner, ctx, provider, &input, &request, &pending_name).await?;
        match started {
            Ok(progress) => progress,
            Err(unsupported) => {
                state.handled_request = annotation.map(str::to_string);
                return Ok(Outcome::Failed {
                    status: state,
                    reason: "UnsupportedByProvider",
                    message: unsupported.to_string(),
                });
            }
        }
    };
    let handled = annotation.map(str::to_string);
    finish(owner, ctx, progress, state, handled, &input, &pending_name).await
}

/// Sends the rotate call for `request`. The password the operator proposes
/// (where it chooses it) is kept first in the owned `pending_name` Secret, so
/// a retry proposes the same one. The inner error is a provider that cannot rotate.
async fn start<K>(
    owner: &K,
    ctx: &Context,
    provider: &dyn Provider,
    input: &Input<'_>,
    request: &str,
    pending_name: &str,
) -> Result<Result<RotationProgress, crate::providers::ProviderError>, RotationError>
where
    K: Resource<DynamicType = ()>,
{
    let credentials = match provider.credentials_for(&input.target) {
        Ok(credentials) => credentials,
        Err(unsupported) => return Ok(Err(unsupported)),
    };
    let proposed = if provider.needs_operator_password() {
        kept_password(owner, ctx, pending_name).await?
    } else {
        Password::generate()
    };
    let uid = owner.meta().uid.clone().unwrap_or_default();
    let key = format!("dbops-{uid}-rotate-{}", short_hash(request));
    let progress = credentials
        .rotate_credentials(&input.target, &proposed, &key)
        .await
        .map_err(|e| VendorCall::new("rotating the database credentials", e))?;
    Ok(Ok(progress))
}

/// The password kept in `name` for a rotation in flight, or a new one kept there.
async fn kept_password<K>(owner: &K, ctx: &Context, name: &str) -> Result<Password, RotationError>
where
    K: Resource<DynamicType = ()>,
{
    if let Some(kept) =
        secret::read_owned_key(&ctx.client, owner, name, secret::keys::PASSWORD).await?
    {
        return Ok(Password::new(kept));
    }
    let fresh = Password::generate();
    let data = BTreeMap::from([(
        secret::keys::PASSWORD.to_string(),
        ByteString(fresh.expose().as_bytes().to_vec()),
    )]);
    secret::ensure_secret(
        &ctx.client,
        owner,
        name,
        secret::SecretContent::opaque(data),
    )
    .await?;
    Ok(fresh)
}

/// What the vendor's answer means: poll again, a failure, or new credentials
/// written to the Secret in one write.
async fn finish<K>(
    owner: &K,
    ctx: &Context,
    progress: RotationProgress,
    mut state: CredentialRotationStatus,
    handled: Option<String>,
    input: &Input<'_>,
    pending_name: &str,
) -> Result<Outcome, RotationError>
where
    K: Resource<DynamicType = ()>,
{
    match progress {
        RotationProgress::Pending { job_id, .. } => {
            // The request counts as handled only once the job ends.
            state.pending_job = Some(job_id);
            state.pending_since = state.pending_since.or(Some(Rfc3339::now()));
            Ok(Outcome::Pending(state))
        }
        RotationProgress::Failed(message) => {
            state.pending_job = None;
            state.pending_since = None;
            state.handled_request = handled;
            let _ = secret::delete_owned_secret(&ctx.client, owner, pending_name).await;
            Ok(Outcome::Failed {
                status: state,
                reason: "RotationFailed",
                message: format!("the vendor reports the rotation failed: {message}"),
            })
        }
        RotationProgress::Done {
            connection_uri,
            pooled_uri,
            password,
        } => {
            let details = confirmed_details(input.details, connection_uri, pooled_uri, password)?;
            let (content, _) =
                secret::SecretContent::connection(&details, input.layout, input.provider_api)
                    .await
                    .map_err(RotationError::Template)?;
            secret::ensure_secret(&ctx.client, owner, input.secret_name, content).await?;
            secret::delete_owned_secret(&ctx.client, owner, pending_name).await?;
            state.pending_job = None;
            state.pending_since = None;
            state.handled_request = handled;
            state.last_rotated_at = Some(Rfc3339::now());
            Ok(Outcome::Rotated(state))
        }
    }
}

/// The connection details after the vendor confirmed new credentials (pure):
/// its new URIs where it sent them, the password it chose or confirmed.
pub fn confirmed_details(
    current: &ConnectionDetails,
    connection_uri: Option<crate::providers::ConnectionUri>,
    pooled_uri: Option<crate::providers::ConnectionUri>,
    password: Option<Password>,
) -> Result<ConnectionDetails, secret::ConnectionError> {
    Ok(match connection_uri {
        Some(uri) => {
            let pooled = pooled_uri.or_else(|| {
                current
                    .pooled_uri
                    .clone()
                    .map(crate::providers::ConnectionUri::new)
            });
            let parsed = ConnectionDetails::parse(Some(&uri), pooled.as_ref())?;
            match (&password, parsed.password.is_empty()) {
                (Some(p), true) => parsed.with_password(p.expose()),
                _ => parsed,
            }
        }
        None => match &password {
            Some(p) => current.clone().with_password(p.expose()),
            None => current.clone(),
        },
    })
}

/// Folds `outcome` into `status` (`credentialRotation` and the
/// `RotationFailed` condition) and publishes its Event. Returns a short delay
/// when a rotation job is still running.
pub async fn record<K: Connected>(
    outcome: Outcome,
    owner: &K,
    status: &mut K::Status,
    ctx: &Context,
) -> Option<std::time::Duration> {
    use kube::runtime::events::EventType;
    match outcome {
        Outcome::Idle => None,
        Outcome::Pending(state) => {
            *K::rotation_mut(status) = Some(state);
            Some(ctx.settings.provisioning_poll)
        }
        Outcome::Rotated(state) => {
            *K::rotation_mut(status) = Some(state);
            conditions::remove_condition(K::conditions_mut(status), ROTATION_FAILED);
            ctx.publish(
                owner,
                EventType::Normal,
                "CredentialsRotated",
                "Rotate",
                "the vendor confirmed new credentials; the connection Secret was updated"
                    .to_string(),
            )
            .await;
            None
        }
        Outcome::Failed {
            status: state,
            reason,
            message,
        } => {
            *K::rotation_mut(status) = Some(state);
            conditions::set_condition(
                K::conditions_mut(status),
                ROTATION_FAILED,
                true,
                reason,
                &format!("{message}; the current credentials stay valid"),
                owner.meta().generation,
                Timestamp::now(),
            );
            ctx.publish(
                owner,
                EventType::Warning,
                ROTATION_FAILED,
                "Rotate",
                message,
            )
            .await;
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: i64) -> Timestamp {
        Timestamp::from_second(s).unwrap()
    }

    #[test]
    fn a_rotation_job_is_given_up_after_its_limit() {
        let started = Some(Rfc3339(ts(1_000)));
        let limit = ROTATION_JOB_LIMIT.as_secs() as i64;
        assert!(!job_overdue(started, ts(1_000 + limit - 1)));
        assert!(job_overdue(started, ts(1_000 + limit)));
        assert!(
            !job_overdue(None, ts(1_000_000)),
            "no start time: counts from now"
        );
    }

    #[test]
    fn a_new_annotation_value_is_one_request() {
        let handled = CredentialRotationStatus {
            handled_request: Some("2026-01-01".into()),
            ..Default::default()
        };
        assert_eq!(
            pending_request(Some("2026-01-01"), None, Some(&handled), None, ts(0)),
            None
        );
        assert_eq!(
            pending_request(Some("2026-02-01"), None, Some(&handled), None, ts(0)),
            Some("2026-02-01".into())
        );
        assert_eq!(pending_request(None, None, None, None, ts(0)), None);
    }

    #[test]
    fn the_interval_counts_from_the_last_rotation_or_creation() {
        let spec = CredentialRotationSpec {
            interval: Some("1h".parse().unwrap()),
        };
        let created = ts(1_000);
        assert_eq!(
            pending_request(None, Some(&spec), None, Some(created), ts(1_000 + 3599)),
            None
        );
        assert!(
            pending_request(None, Some(&spec), None, Some(created), ts(1_000 + 3600)).is_some()
        );
        let rotated = CredentialRotationStatus {
            last_rotated_at: Some(Rfc3339(ts(5_000))),
            ..Default::default()
        };
        assert_eq!(
            pending_request(None, Some(&spec), Some(&rotated), Some(created), ts(6_000)),
            None
        );
        assert_eq!(
            next_due(Some(&spec), Some(&rotated), Some(created), ts(6_000)),
            Some(std::time::Duration::from_secs(2_600))
        );
    }
}
