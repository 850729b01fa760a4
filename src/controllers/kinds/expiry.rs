//! Expiring branches (`DatabaseBranch.spec.expireAfter`).
//!
//! A branch with `expireAfter` expires at its creation time plus that
//! duration (`status.expiresAt`). Until then every pass runs again by that
//! time at the latest, whatever it comes to ([`Managed::due_by`](crate::controllers::runtime::Managed::due_by));
//! from then on, any pass (Ready, waiting or stalled alike) deletes the
//! `DatabaseBranch` resource itself, and the finalizer deletes the vendor
//! branch as `deletionPolicy` says. Deleting the resource, not only the
//! vendor branch, lets GitOps tools and `kubectl get` see that it is gone.

use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, Preconditions};
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::{Resource, ResourceExt};

use crate::api::v1alpha1::{DatabaseBranch, DeletionPolicy, Rfc3339, expire_after};
use crate::controllers::pipeline::Error;
use crate::controllers::runtime::{Context, KubeCall, freshness};

/// When a branch created at `created` with `spec.expireAfter` `expire_after`
/// expires (pure): `None` without `expireAfter`, or before the API server has
/// given the object a creation time. A value admission should have refused
/// is an error that says what is wrong with it.
pub fn expires_at(
    created: Option<Timestamp>,
    expire_after: Option<&str>,
) -> Result<Option<Timestamp>, Error> {
    let Some(text) = expire_after else {
        return Ok(None);
    };
    let after =
        expire_after::parse(text).map_err(|problem| Error::InvalidExpireAfter { problem })?;
    let Some(created) = created else {
        return Ok(None);
    };
    created
        .checked_add(after)
        .map(Some)
        .map_err(|_| Error::InvalidExpireAfter {
            problem: expire_after::TOO_LONG,
        })
}

/// When `branch` expires ([`expires_at`]).
pub fn of(branch: &DatabaseBranch) -> Result<Option<Timestamp>, Error> {
    let created = branch.meta().creation_timestamp.as_ref().map(|t| t.0);
    expires_at(created, branch.spec.expire_after.as_deref())
}

/// Whether a branch that expires at `at` has expired at `now` (pure).
pub fn expired(at: Timestamp, now: Timestamp) -> bool {
    now >= at
}

/// `status.expiresAt` as `branch`'s spec and creation time say (none for a
/// value admission should have refused: the pass reports that).
pub fn derive_status(
    branch: &DatabaseBranch,
    status: &mut crate::api::v1alpha1::DatabaseBranchStatus,
) {
    status.expires_at = of(branch).ok().flatten().map(Rfc3339);
}

/// The Event note for `branch`, deleted because it expired at `at` (pure).
pub fn expired_note(branch: &DatabaseBranch, at: Timestamp) -> String {
    let after = branch.spec.expire_after.as_deref().unwrap_or_default();
    let vendor = branch
        .status
        .as_ref()
        .and_then(|s| s.branch_id.as_deref())
        .map(|id| format!("vendor branch {id}"))
        .unwrap_or_else(|| "its vendor branch, if one was made,".to_string());
    let fate = match branch.spec.effective_deletion_policy() {
        DeletionPolicy::Delete => format!("{vendor} is deleted with it (deletionPolicy Delete)"),
        DeletionPolicy::Retain => format!("{vendor} is kept (deletionPolicy Retain)"),
    };
    format!(
        "expired at {at} (spec.expireAfter {after} after creation), so dbops deleted this DatabaseBranch; {fate}"
    )
}

/// Deletes `branch`, which expired at `at`, and says so in an `Expired`
/// Event. The delete carries the branch's UID as a precondition, so a new
/// `DatabaseBranch` made under the same name meanwhile is never deleted by
/// mistake; gone or replaced counts as done. The deletion that follows
/// wakes the branch, and its finalizer releases the vendor branch.
pub async fn expire(
    branch: &DatabaseBranch,
    api: &Api<DatabaseBranch>,
    ctx: &Context,
    at: Timestamp,
) -> Result<Action, Error> {
    let uid = branch.meta().uid.clone().ok_or(Error::InvalidObject)?;
    let params = DeleteParams {
        preconditions: Some(Preconditions {
            uid: Some(uid),
            resource_version: None,
        }),
        ..DeleteParams::default()
    };
    match api.delete(&branch.name_any(), &params).await {
        Ok(deleted) => {
            // Still there while the finalizer holds it: later passes wait
            // for the cache to show the deletion.
            if let Some(deleting) = deleted.left() {
                freshness::wrote(deleting.meta().resource_version.as_deref());
            }
        }
        // Gone already, or (409, the UID precondition) replaced by a new object.
        Err(kube::Error::Api(status)) if status.code == 404 || status.code == 409 => {
            return Ok(Action::await_change());
        }
        Err(error) => return Err(KubeCall::Write(error).into()),
    }
    tracing::info!(expired_at = %at, "branch expired; deleted");
    ctx.publish(
        branch,
        EventType::Normal,
        "Expired",
        "Delete",
        expired_note(branch, at),
    )
    .await;
    Ok(Action::await_change())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::v1alpha1::{DatabaseBranchSpec, DatabaseBranchStatus};
    use crate::controllers::runtime::ReconcileError;

    fn t(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    #[test]
    fn a_branch_expires_its_expire_after_past_its_creation() {
        let created = Some(t("2025-03-01T10:00:00Z"));
        assert_eq!(expires_at(created, None).unwrap(), None);
        assert_eq!(
            expires_at(created, Some("72h")).unwrap(),
            Some(t("2025-03-04T10:00:00Z"))
        );
        assert_eq!(
            expires_at(created, Some("7d")).unwrap(),
            Some(t("2025-03-08T10:00:00Z")),
            "a day is 24 hours"
        );
        assert_eq!(
            expires_at(created, Some("1h30m")).unwrap(),
            Some(t("2025-03-01T11:30:00Z"))
        );
        // Across a leap day and a daylight saving change: still 24-hour days.
        assert_eq!(
            expires_at(Some(t("2024-02-28T12:00:00Z")), Some("30d")).unwrap(),
            Some(t("2024-03-29T12:00:00Z"))
        );
        assert_eq!(
            expires_at(None, Some("72h")).unwrap(),
            None,
            "no creation time yet"
        );
    }

    #[test]
    fn a_bad_expire_after_is_one_clear_sentence_that_stalls() {
        let created = Some(t("2025-03-01T10:00:00Z"));
        for (text, says) in [
            ("3 days", "is not a duration such as 30m, 72h, 1h30m or 7d"),
            ("0s", "must be longer than 0s"),
            ("1000d", "is not a duration"),
            ("400d", "must be at most 365d"),
        ] {
            let error = expires_at(created, Some(text)).unwrap_err();
            let message = error.to_string();
            assert!(message.starts_with("spec.expireAfter "), "{message}");
            assert!(message.contains(says), "{text}: {message}");
            assert!(
                !message.contains(text) || text == "0s",
                "no value quoted: {message}"
            );
            assert!(!message.contains('\n') && !message.contains("Some("));
            assert_eq!(error.category(), "InvalidSpec");
            assert!(!error.is_transient(), "a person must fix it");
        }
        // Even without a creation time, a bad value is reported.
        assert!(expires_at(None, Some("soon")).is_err());
    }

    #[test]
    fn expired_from_the_expiry_on() {
        let at = t("2025-03-04T10:00:00Z");
        assert!(!expired(at, t("2025-03-04T09:59:59Z")));
        assert!(expired(at, at));
        assert!(expired(at, t("2025-03-05T00:00:00Z")));
    }

    fn branch(expire_after: Option<&str>) -> DatabaseBranch {
        let mut b = DatabaseBranch::new(
            "preview",
            DatabaseBranchSpec {
                project_ref: crate::api::v1alpha1::LocalObjectRef { name: "app".into() },
                branch_name: None,
                from_branch_ref: None,
                from_branch: None,
                external_id: None,
                deletion_policy: Some(DeletionPolicy::Delete),
                write_connection_secret_to: None,
                credential_rotation: None,
                expire_after: expire_after.map(str::to_string),
                data: None,
                reset_schedule: None,
            },
        );
        b.metadata.creation_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            t("2025-03-01T10:00:00Z"),
        ));
        b
    }

    #[test]
    fn status_shows_the_expiry_and_follows_the_spec() {
        let mut status = DatabaseBranchStatus::default();
        derive_status(&branch(Some("72h")), &mut status);
        assert_eq!(
            status.expires_at.map(|t| t.to_string()),
            Some("2025-03-04T10:00:00Z".to_string())
        );
        derive_status(&branch(Some("96h")), &mut status);
        assert_eq!(
            status.expires_at.map(|t| t.to_string()),
            Some("2025-03-05T10:00:00Z".to_string()),
            "a changed expireAfter moves it"
        );
        derive_status(&branch(None), &mut status);
        assert_eq!(status.expires_at, None, "taken out: no expiry");
        let mut status = DatabaseBranchStatus::default();
        derive_status(&branch(Some("soon")), &mut status);
        assert_eq!(status.expires_at, None);
    }

    #[test]
    fn the_event_says_when_why_and_what_happens_at_the_vendor() {
        let at = t("2025-03-04T10:00:00Z");
        let mut b = branch(Some("72h"));
        assert_eq!(
            expired_note(&b, at),
            "expired at 2025-03-04T10:00:00Z (spec.expireAfter 72h after creation), so dbops deleted this DatabaseBranch; its vendor branch, if one was made, is deleted with it (deletionPolicy Delete)"
        );
        b.status = Some(DatabaseBranchStatus {
            branch_id: Some("br_1".into()),
            ..Default::default()
        });
        b.spec.deletion_policy = Some(DeletionPolicy::Retain);
        assert_eq!(
            expired_note(&b, at),
            "expired at 2025-03-04T10:00:00Z (spec.expireAfter 72h after creation), so dbops deleted this DatabaseBranch; vendor branch br_1 is kept (deletionPolicy Retain)"
        );
    }
}
