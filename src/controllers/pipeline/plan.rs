//! The decisions of the pipeline, as pure functions of what was read: no API
//! server, no vendor, no clock. Each is tested here with plain `#[test]`s, the
//! way Linkerd tests its index; the steps in the parent module only carry them
//! out.

use std::time::Duration;

use k8s_openapi::jiff::Timestamp;

use super::error::{Error, Object, UNRECOGNIZED_STATE_LIMIT};
use super::kind::ParentProject;
use crate::api::v1alpha1::DeletionPolicy;
use crate::controllers::runtime::conditions::{Health, reason};
use crate::providers::ResourceState;

/// Where a pass gets its vendor object from.
#[derive(Debug, PartialEq, Eq)]
pub enum Source<'a> {
    /// The id saved in status: read it; gone means deleted outside dbops.
    Recorded(&'a str),
    /// `spec.externalId` and nothing saved yet: read it and adopt it.
    Adopt(&'a str),
    /// Neither: create it (or carry on with a create already requested).
    Create,
}

/// Where the vendor object comes from: the saved id wins over `spec.externalId`.
pub fn source<'a>(recorded: Option<&'a str>, external: Option<&'a str>) -> Source<'a> {
    match (recorded, external) {
        (Some(id), _) => Source::Recorded(id),
        (None, Some(id)) => Source::Adopt(id),
        (None, None) => Source::Create,
    }
}

/// The error for a vendor object that is not there: deleted outside dbops
/// when its id was saved, a wrong `spec.externalId` when it was being adopted.
pub fn not_found(object: Object, id: &str, adopting: bool) -> Error {
    let id = id.to_string();
    if adopting {
        Error::ExternalNotFound { object, id }
    } else {
        Error::VendorObjectDeleted { object, id }
    }
}

/// The error for an adopted branch or snapshot that is not shown to belong
/// to its `DatabaseProject`'s vendor project: another project's (`actual`),
/// or one the vendor does not say (`None`). A child adopts only an object of
/// its own parent, proved by what the vendor reports. The message never
/// names the other project.
pub fn adopted_elsewhere(
    object: Object,
    id: &str,
    parent: Option<&ParentProject>,
    actual: Option<&str>,
) -> Option<Error> {
    let parent = parent?;
    let unverifiable = actual.is_none_or(str::is_empty);
    (unverifiable || actual != Some(parent.project_id.as_str())).then(|| Error::ExternalMismatch {
        object,
        id: id.to_string(),
        project: parent.name.clone(),
        unverifiable,
    })
}

/// What a cleanup may do with child `object` `id` of `parent`, from what a
/// read of it reports (`Ok(project)`, the project it says it belongs to, if
/// it says) or that it is gone (`Err(())`): checked again before every
/// delete, so a child only ever deletes an object of its own parent.
#[derive(Debug, PartialEq, Eq)]
pub enum ChildCheck {
    /// Delete it.
    Delete,
    /// It is gone already.
    Gone,
    /// It belongs to another project: leave it.
    Foreign,
}

/// [`ChildCheck`] for a read that reported `read` of a child of `parent`.
/// A vendor that does not say the project (`Ok(None)`) is taken at its word
/// for an object this resource holds the claim of.
pub fn child_check(parent: &ParentProject, read: Result<Option<&str>, ()>) -> ChildCheck {
    match read {
        Err(()) => ChildCheck::Gone,
        Ok(Some(project)) if !project.is_empty() && project != parent.project_id => {
            ChildCheck::Foreign
        }
        Ok(_) => ChildCheck::Delete,
    }
}

/// What the vendor's report of the object means for this pass.
#[derive(Debug, PartialEq, Eq)]
pub enum Settle {
    /// Still being provisioned: show this and poll again.
    Wait(Health),
    /// Usable, but its id is not saved yet: save it before anything else can fail.
    SaveId,
    /// Usable and saved: go on.
    Proceed,
}

/// Reads the vendor's state of `object` `id` against the id saved in status.
/// `save_first` says whether the kind saves the id before its next step;
/// `waited` is how long the resource has been waiting for the vendor.
pub fn settle(
    object: Object,
    id: &str,
    state: &ResourceState,
    recorded: Option<&str>,
    save_first: bool,
    waited: Duration,
) -> Result<Settle, Error> {
    match state {
        ResourceState::Unrecognized(state) if waited >= UNRECOGNIZED_STATE_LIMIT => {
            Err(Error::VendorStateUnknown {
                object,
                id: id.to_string(),
                state: state.clone(),
            })
        }
        ResourceState::Unrecognized(state) => Ok(Settle::Wait(Health::progressing(
            reason::WAITING_FOR_VENDOR,
            format!(
                "the vendor reports the {object} as {state:?}, a state dbops does not know; it waits up to {} minutes for a known one",
                UNRECOGNIZED_STATE_LIMIT.as_secs() / 60
            ),
        ))),
        ResourceState::Failed(state) => Err(Error::VendorFailed {
            object,
            id: id.to_string(),
            state: state.clone(),
        }),
        ResourceState::Provisioning(state) => Ok(Settle::Wait(Health::progressing(
            reason::WAITING_FOR_VENDOR,
            format!("the vendor reports the {object} as {state}"),
        ))),
        ResourceState::Ready if save_first && recorded != Some(id) => Ok(Settle::SaveId),
        ResourceState::Ready => Ok(Settle::Proceed),
    }
}

/// How long a resource has been waiting, from its conditions: since
/// `Reconciling` turned True, or without end once it stalled on an unknown
/// vendor state (so it does not flap back to waiting).
pub fn waited(
    reconciling_since: Option<Timestamp>,
    stalled_on_unknown_state: bool,
    now: Timestamp,
) -> Duration {
    if stalled_on_unknown_state {
        return Duration::MAX;
    }
    reconciling_since
        .and_then(|since| Duration::try_from(now.duration_since(since)).ok())
        .unwrap_or_default()
}

/// The connection Secret a pass must delete: the one named before, when the
/// spec now names another.
pub fn stale_secret<'a>(previous: Option<&'a str>, current: &str) -> Option<&'a str> {
    previous.filter(|old| *old != current)
}

/// The Event a Ready pass publishes: `Ready` when the object just became
/// ready, `SecretUpdated` when its Secret had drifted and was written back,
/// else none. Returns the reason and the message.
pub fn ready_event(
    object: Object,
    id: &str,
    was_ready: bool,
    secret: Option<(&str, bool)>,
) -> Option<(&'static str, String)> {
    match (was_ready, secret) {
        (false, _) => Some(("Ready", format!("{object} {id} is ready"))),
        (true, Some((name, true))) => Some((
            "SecretUpdated",
            format!("connection Secret {name} brought back in sync"),
        )),
        (true, _) => None,
    }
}

/// The shortest wait before the next pass must not go below this.
pub const MIN_REQUEUE: Duration = Duration::from_millis(100);

/// When to look again: at the resync, or sooner when a rotation job is
/// polled or an interval rotation falls due.
pub fn next_pass(
    resync: Duration,
    poll: Option<Duration>,
    rotation_due: Option<Duration>,
) -> Duration {
    [Some(resync), poll, rotation_due]
        .into_iter()
        .flatten()
        .min()
        .unwrap_or(resync)
        .max(MIN_REQUEUE)
}

/// What a cleanup does.
#[derive(Debug, PartialEq, Eq)]
pub enum Cleanup<'a> {
    /// `deletionPolicy: Retain`: leave the vendor object (its id when known)
    /// and say so.
    Retain(Option<&'a str>),
    /// Nothing was ever sent to the vendor: nothing to do.
    NothingSent,
    /// Delete this vendor object.
    Delete(&'a str),
    /// A create was sent but its answer never saved: replay it with the same
    /// idempotency key to learn the id, then delete that.
    ReplayCreate,
}

/// What a cleanup does, from the policy, the saved id and whether a create
/// was ever sent. `spec.externalId` alone is never deleted: only an id saved
/// once the object was claimed and checked (adopted or made) is.
pub fn cleanup(
    policy: DeletionPolicy,
    recorded: Option<&str>,
    create_requested: bool,
) -> Cleanup<'_> {
    match (policy, recorded) {
        (DeletionPolicy::Retain, id) => Cleanup::Retain(id),
        (DeletionPolicy::Delete, Some(id)) => Cleanup::Delete(id),
        (DeletionPolicy::Delete, None) if create_requested => Cleanup::ReplayCreate,
        (DeletionPolicy::Delete, None) => Cleanup::NothingSent,
    }
}

/// How a cleanup names what it may leave behind, for Events.
pub fn left_behind(object: Object, plan: &Cleanup<'_>) -> String {
    match plan {
        Cleanup::Retain(Some(id)) | Cleanup::Delete(id) => format!("vendor {object} {id}"),
        _ => format!("the vendor {object} an unconfirmed create may have made"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_saved_id_wins_over_the_external_id() {
        assert_eq!(source(Some("a"), Some("b")), Source::Recorded("a"));
        assert_eq!(source(None, Some("b")), Source::Adopt("b"));
        assert_eq!(source(None, None), Source::Create);
    }

    #[test]
    fn a_missing_object_is_deleted_outside_or_a_bad_external_id() {
        assert!(matches!(
            not_found(Object::Branch, "br_1", false),
            Error::VendorObjectDeleted { object: Object::Branch, id } if id == "br_1"
        ));
        assert!(matches!(
            not_found(Object::Project, "p", true),
            Error::ExternalNotFound { object: Object::Project, id } if id == "p"
        ));
    }

    fn parent() -> ParentProject {
        ParentProject {
            name: "app".into(),
            provider_name: "default".into(),
            project_id: "prj_1".into(),
        }
    }

    #[test]
    fn an_adopted_child_must_be_shown_to_belong_to_its_parent_project() {
        let parent = parent();
        assert!(adopted_elsewhere(Object::Branch, "b", Some(&parent), Some("prj_1")).is_none());
        assert!(
            adopted_elsewhere(Object::Project, "p", None, None).is_none(),
            "a project has no parent"
        );
        let foreign = adopted_elsewhere(Object::Snapshot, "s", Some(&parent), Some("prj_2"));
        assert!(matches!(
            &foreign,
            Some(Error::ExternalMismatch { project, unverifiable: false, .. }) if project == "app"
        ));
        let text = foreign.unwrap().to_string();
        assert!(
            !text.contains("prj_2"),
            "never names the other project: {text}"
        );
        for unknown in [None, Some("")] {
            assert!(
                matches!(
                    adopted_elsewhere(Object::Branch, "b", Some(&parent), unknown),
                    Some(Error::ExternalMismatch {
                        unverifiable: true,
                        ..
                    })
                ),
                "a vendor that does not say the parent proves nothing"
            );
        }
    }

    #[test]
    fn a_child_deletes_only_an_object_of_its_own_parent() {
        let parent = parent();
        assert_eq!(child_check(&parent, Ok(Some("prj_1"))), ChildCheck::Delete);
        assert_eq!(child_check(&parent, Ok(None)), ChildCheck::Delete);
        assert_eq!(child_check(&parent, Ok(Some("prj_2"))), ChildCheck::Foreign);
        assert_eq!(child_check(&parent, Err(())), ChildCheck::Gone);
    }

    #[test]
    fn settle_waits_fails_saves_or_proceeds() {
        let ready = ResourceState::Ready;
        assert_eq!(
            settle(Object::Project, "p", &ready, None, true, Duration::ZERO).unwrap(),
            Settle::SaveId
        );
        assert_eq!(
            settle(
                Object::Project,
                "p",
                &ready,
                Some("other"),
                true,
                Duration::ZERO
            )
            .unwrap(),
            Settle::SaveId,
            "a different saved id is replaced"
        );
        assert_eq!(
            settle(
                Object::Project,
                "p",
                &ready,
                Some("p"),
                true,
                Duration::ZERO
            )
            .unwrap(),
            Settle::Proceed
        );
        assert_eq!(
            settle(Object::Snapshot, "s", &ready, None, false, Duration::ZERO).unwrap(),
            Settle::Proceed,
            "kinds without a step before Ready save the id with it"
        );
        let provisioning = ResourceState::Provisioning("init".into());
        assert_eq!(
            settle(
                Object::Branch,
                "b",
                &provisioning,
                Some("b"),
                true,
                Duration::ZERO
            )
            .unwrap(),
            Settle::Wait(Health::progressing(
                reason::WAITING_FOR_VENDOR,
                "the vendor reports the branch as init"
            ))
        );
        let failed = ResourceState::Failed("error".into());
        assert!(matches!(
            settle(Object::Project, "p", &failed, Some("p"), true, Duration::ZERO),
            Err(Error::VendorFailed { object: Object::Project, id, state }) if id == "p" && state == "error"
        ));
    }

    #[test]
    fn waiting_counts_from_reconciling_and_a_stall_on_an_unknown_state_stays() {
        let t = |s| Timestamp::from_second(s).unwrap();
        assert_eq!(waited(Some(t(100)), false, t(160)), Duration::from_secs(60));
        assert_eq!(waited(None, false, t(160)), Duration::ZERO);
        assert_eq!(
            waited(Some(t(200)), false, t(160)),
            Duration::ZERO,
            "clock skew"
        );
        assert_eq!(waited(None, true, t(160)), Duration::MAX);
    }

    #[test]
    fn an_unknown_state_is_waited_on_for_a_bounded_time() {
        let odd = ResourceState::Unrecognized("PAUSING_SOMEHOW".into());
        let minute = Duration::from_secs(60);
        match settle(Object::Project, "p", &odd, Some("p"), true, minute).unwrap() {
            Settle::Wait(health) => {
                assert_eq!(health.reason(), reason::WAITING_FOR_VENDOR);
            }
            other => panic!("waits at first: {other:?}"),
        }
        let late = UNRECOGNIZED_STATE_LIMIT;
        assert!(matches!(
            settle(Object::Project, "p", &odd, Some("p"), true, late),
            Err(Error::VendorStateUnknown { state, .. }) if state == "PAUSING_SOMEHOW"
        ));
    }

    #[test]
    fn only_a_renamed_secret_is_stale() {
        assert_eq!(stale_secret(Some("old"), "new"), Some("old"));
        assert_eq!(stale_secret(Some("same"), "same"), None);
        assert_eq!(stale_secret(None, "new"), None);
    }

    #[test]
    fn ready_events_mark_transitions_and_repairs_only() {
        assert_eq!(
            ready_event(Object::Project, "p", false, Some(("s", true))),
            Some(("Ready", "project p is ready".to_string()))
        );
        assert_eq!(
            ready_event(Object::Branch, "b", true, Some(("s", true))),
            Some((
                "SecretUpdated",
                "connection Secret s brought back in sync".to_string()
            ))
        );
        assert_eq!(
            ready_event(Object::Branch, "b", true, Some(("s", false))),
            None
        );
        assert_eq!(ready_event(Object::Snapshot, "s", true, None), None);
    }

    #[test]
    fn the_next_pass_is_the_soonest_but_never_immediate() {
        let s = Duration::from_secs;
        assert_eq!(next_pass(s(300), None, None), s(300));
        assert_eq!(next_pass(s(300), Some(s(5)), Some(s(60))), s(5));
        assert_eq!(next_pass(s(300), None, Some(s(60))), s(60));
        assert_eq!(next_pass(s(300), None, Some(s(0))), MIN_REQUEUE);
    }

    #[test]
    fn cleanup_follows_policy_then_what_was_sent() {
        use DeletionPolicy::{Delete, Retain};
        assert_eq!(cleanup(Retain, Some("a"), true), Cleanup::Retain(Some("a")));
        assert_eq!(cleanup(Retain, None, false), Cleanup::Retain(None));
        assert_eq!(cleanup(Delete, Some("a"), true), Cleanup::Delete("a"));
        assert_eq!(cleanup(Delete, None, true), Cleanup::ReplayCreate);
        assert_eq!(
            cleanup(Delete, None, false),
            Cleanup::NothingSent,
            "an externalId never adopted (refused, foreign, missing) is never deleted"
        );
    }

    #[test]
    fn what_is_left_behind_is_named_by_id_when_known() {
        assert_eq!(
            left_behind(Object::Project, &Cleanup::Delete("p1")),
            "vendor project p1"
        );
        assert_eq!(
            left_behind(Object::Branch, &Cleanup::ReplayCreate),
            "the vendor branch an unconfirmed create may have made"
        );
    }
}
