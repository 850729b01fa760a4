//! Reset from parent: the annotation `dbops.dev/reset-from-parent` (set to
//! a new value) or `spec.resetSchedule` copies the branch again from its
//! parent (or `fromBranchRef`) and applies `spec.data` to the fresh copy,
//! under the same connection Secret.
//!
//! - **In place**, where the provider can ([`BranchReset`], the `postgres`
//!   API): the copy is staged beside the branch, `spec.data` is applied to
//!   it, then it is swapped in under the branch's own name, role and
//!   password. The connection URI does not change.
//! - **A new branch** elsewhere: dbops makes one, applies `spec.data`,
//!   switches the Secret to it in one write, then deletes the old vendor
//!   branch.
//!
//! Each step is saved in `status.reset.pending` before the next begins, so a
//! crash anywhere is carried on from where it stopped, and the cleanup of a
//! deleted branch finds whatever a reset had made. A reset that fails for
//! good is undone and the old branch keeps serving; a Warning Event says why.

use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::ResourceExt;
use kube::api::Api;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use sha2::{Digest, Sha256};

use super::preview_data;
use crate::api::v1alpha1::{
    ClaimedObject, DataApplied, DataMode, DatabaseBranch, DatabaseBranchStatus, PendingReset,
    RESET_ANNOTATION, ResetStatus, Rfc3339,
};
use crate::controllers::pipeline::{
    self, Connected, Error, ParentProject, VendorKind, idempotency_key, project_id,
};
use crate::controllers::protection::ProviderHandle;
use crate::controllers::runtime::policy::ReconcileError;
use crate::controllers::runtime::reconciler::{Managed, apply_status, requeue};
use crate::controllers::runtime::{Context, KubeCall, VendorCall};
use crate::providers::base::StagedCopy;
use crate::providers::{BranchRequest, Provider, ResourceState, Resume, VendorBranch};

/// How the branch controller builds a create request for `branch` in vendor
/// project `project_id`, copied from `from_branch`, resumed or not.
pub type MakeRequest =
    fn(&DatabaseBranch, &dyn Provider, &str, Option<String>, bool) -> BranchRequest;

/// Where a reset copies from, as the branch controller found it.
pub enum Source {
    /// This vendor branch (`None`: the project's default).
    Found(Option<String>),
    /// Not Ready: the reset fails, the old branch keeps serving.
    Waiting,
}

fn secret_name(branch: &DatabaseBranch) -> String {
    <DatabaseBranch as Connected>::secret_name(branch)
}

/// Event reasons.
pub const RESET: &str = "Reset";
pub const RESET_FAILED: &str = "ResetFailed";
pub const RESET_REFUSED: &str = "ResetRefused";

/// A reset asked for and not handled yet: the annotation value, the
/// scheduled time, or both.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ask {
    pub annotation: Option<String>,
    pub slot: Option<Timestamp>,
}

/// When the next scheduled reset is due (pure): `spec.resetSchedule` after
/// the last reset, the last handled slot or the branch's creation, whichever
/// is latest. After downtime that is one reset, never a burst.
pub fn next_scheduled(
    interval: Option<std::time::Duration>,
    status: &DatabaseBranchStatus,
    created: Option<Timestamp>,
) -> Option<Timestamp> {
    let interval = SignedDuration::try_from(interval?).ok()?;
    let handled = status.reset.as_ref().and_then(|r| r.slot).map(|t| t.0);
    let base = [status.last_reset_at.map(|t| t.0), handled, created]
        .into_iter()
        .flatten()
        .max()?;
    base.checked_add(interval).ok()
}

/// The reset `branch` asks for at `now` and has not had (pure).
pub fn requested(
    annotation: Option<&str>,
    interval: Option<std::time::Duration>,
    status: &DatabaseBranchStatus,
    created: Option<Timestamp>,
    now: Timestamp,
) -> Option<Ask> {
    let handled = status.reset.as_ref().and_then(|r| r.annotation.as_deref());
    let annotation = annotation
        .filter(|value| !value.is_empty() && Some(*value) != handled)
        .map(str::to_string);
    let slot = next_scheduled(interval, status, created).filter(|due| *due <= now);
    (annotation.is_some() || slot.is_some()).then_some(Ask { annotation, slot })
}

/// The token that names one reset's vendor objects and requests: the same
/// for the same request of the same branch, different across requests.
pub fn token(uid: &str, ask: &Ask) -> String {
    let mut hasher = Sha256::new();
    hasher.update(uid.as_bytes());
    hasher.update([0]);
    hasher.update(ask.annotation.as_deref().unwrap_or_default().as_bytes());
    hasher.update([0]);
    if let Some(slot) = ask.slot {
        hasher.update(slot.as_second().to_string().as_bytes());
    }
    hasher
        .finalize()
        .iter()
        .take(6)
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// `status` with `pending`'s request marked handled (pure): the annotation
/// value and slot are recorded, the pending reset goes.
pub fn handled(
    status: &DatabaseBranchStatus,
    ask: &Ask,
    failure: Option<String>,
) -> DatabaseBranchStatus {
    let mut status = status.clone();
    let reset = status.reset.get_or_insert_with(ResetStatus::default);
    if let Some(annotation) = &ask.annotation {
        reset.annotation = Some(annotation.clone());
    }
    if let Some(slot) = ask.slot {
        reset.slot = Some(Rfc3339(slot));
    }
    reset.pending = None;
    reset.last_failure = failure;
    status
}

fn ask_of(pending: &PendingReset) -> Ask {
    Ask {
        annotation: pending.annotation.clone(),
        slot: pending.slot.map(|t| t.0),
    }
}

fn interval(branch: &DatabaseBranch) -> Option<std::time::Duration> {
    branch.spec.reset_schedule.map(std::time::Duration::from)
}

fn created(branch: &DatabaseBranch) -> Option<Timestamp> {
    branch.metadata.creation_timestamp.as_ref().map(|t| t.0)
}

/// When the branch must be looked at again for its schedule.
pub fn due(branch: &DatabaseBranch) -> Option<Timestamp> {
    next_scheduled(interval(branch), &branch.current_status(), created(branch))
}

/// Whether `branch` has a reset under way or asks for one now: the branch
/// controller then finds the [`Source`] for [`apply`].
pub fn wanted(branch: &DatabaseBranch, status: &DatabaseBranchStatus) -> bool {
    let under_way = status.reset.as_ref().is_some_and(|r| r.pending.is_some());
    let annotation = branch
        .annotations()
        .get(RESET_ANNOTATION)
        .map(String::as_str);
    under_way
        || requested(
            annotation,
            interval(branch),
            status,
            created(branch),
            Timestamp::now(),
        )
        .is_some()
}

/// Carries out a reset `branch` asks for, or the one under way, before the
/// connection Secret is written. Returns an action when the pass must end
/// here (waiting for the vendor); `vendor` becomes the new branch when a
/// reset switched to one, and `previous` what was saved.
#[allow(clippy::too_many_arguments)]
pub async fn apply(
    branch: &DatabaseBranch,
    api: &Api<DatabaseBranch>,
    ctx: &Context,
    provider: &ProviderHandle,
    previous: &mut DatabaseBranchStatus,
    parent: Option<&ParentProject>,
    vendor: &mut VendorBranch,
    (source, make): (Source, MakeRequest),
) -> Result<Option<Action>, Error> {
    let pending = previous.reset.as_ref().and_then(|r| r.pending.clone());
    let pending = match pending {
        Some(pending) => pending,
        None => {
            let annotation = branch
                .annotations()
                .get(RESET_ANNOTATION)
                .map(String::as_str);
            let now = Timestamp::now();
            let Some(ask) = requested(annotation, interval(branch), previous, created(branch), now)
            else {
                return Ok(None);
            };
            if previous.connection_secret_name.is_none() {
                // Never handed out: it is as fresh as a reset would make it.
                save(api, branch, previous, handled(previous, &ask, None)).await?;
                return Ok(None);
            }
            if previous.adopted {
                let why =
                    "the branch was adopted (spec.externalId): it is not dbops's to copy again"
                        .to_string();
                save(
                    api,
                    branch,
                    previous,
                    handled(previous, &ask, Some(why.clone())),
                )
                .await?;
                let note = format!("did not reset the branch: {why}");
                ctx.publish(branch, EventType::Warning, RESET_REFUSED, "Reset", note)
                    .await;
                return Ok(None);
            }
            let uid = branch.metadata.uid.as_deref().ok_or(Error::InvalidObject)?;
            let pending = PendingReset {
                annotation: ask.annotation.clone(),
                slot: ask.slot.map(Rfc3339),
                token: token(uid, &ask),
                ..PendingReset::default()
            };
            let mut status = previous.clone();
            status
                .reset
                .get_or_insert_with(ResetStatus::default)
                .pending = Some(pending.clone());
            save(api, branch, previous, status).await?;
            pending
        }
    };
    let (from_branch, waiting) = match source {
        Source::Found(from) => (from, false),
        Source::Waiting => (None, true),
    };
    let steps = Steps {
        branch,
        api,
        ctx,
        provider,
        parent,
        from_branch,
        make,
    };
    let outcome = match provider.branch_reset() {
        // Nothing to copy from: the reset fails (and is undone), the old
        // branch keeps serving, and a later request tries again.
        _ if waiting => Err(Error::FromBranchRef {
            name: branch
                .spec
                .from_branch_ref
                .as_ref()
                .map(|r| r.name.clone())
                .unwrap_or_default(),
            problem: "is not Ready, so there is nothing to reset from".to_string(),
        }),
        Some(_) => steps.in_place(previous, pending.clone(), vendor).await,
        None => steps.replace(previous, pending.clone(), vendor).await,
    };
    match outcome {
        Ok(action) => Ok(action),
        Err(error) if error.is_transient() => Err(error),
        Err(error) => {
            steps.undo(&pending, vendor, &error).await?;
            let why = error.to_string();
            let status = handled(previous, &ask_of(&pending), Some(why.clone()));
            save(api, branch, previous, status).await?;
            let note = format!(
                "the reset from the parent failed and was undone; the branch keeps serving its old data: {why}"
            );
            ctx.publish(branch, EventType::Warning, RESET_FAILED, "Reset", note)
                .await;
            Ok(None)
        }
    }
}

/// Deletes the vendor branch a reset replaced, once the connection Secret
/// names its successor (after [`pipeline::connect`]). `branch` is read
/// fresh: its status is what the Secret's write left.
pub async fn finish(
    branch: &DatabaseBranch,
    api: &Api<DatabaseBranch>,
    ctx: &Context,
    provider: &ProviderHandle,
    parent: Option<&ParentProject>,
) -> Result<(), Error> {
    let retiring = branch
        .status
        .as_ref()
        .and_then(|s| s.reset.as_ref())
        .and_then(|r| r.retiring.clone());
    let Some(old) = retiring else {
        return Ok(());
    };
    delete_vendor_branch(branch, ctx, provider, parent, &old).await?;
    let mut current = branch.current_status();
    let mut status = current.clone();
    if let Some(reset) = status.reset.as_mut() {
        reset.retiring = None;
    }
    save(api, branch, &mut current, status).await
}

/// Before the branch's own cleanup: deletes what a reset under way made and
/// the branch a finished reset replaced, whatever `deletionPolicy` says of
/// the branch (they are dbops's intermediate copies, never the user's).
pub async fn cleanup(
    branch: &DatabaseBranch,
    ctx: &Context,
    make: MakeRequest,
) -> Result<(), Error> {
    let status = branch.current_status();
    let Some(reset) = status.reset.as_ref() else {
        return Ok(());
    };
    if reset.pending.is_none() && reset.retiring.is_none() {
        return Ok(());
    }
    let Some((provider, parent)) =
        <DatabaseBranch as VendorKind>::cleanup_target(branch, ctx, &status, "").await?
    else {
        return Ok(());
    };
    let parent = parent.as_ref();
    // In place: a staged copy, even one whose name was not saved yet (a
    // branch kept under deletionPolicy Retain keeps only itself).
    if let (Some(_), Some(in_place), Some(id)) = (
        reset.pending.as_ref(),
        provider.branch_reset(),
        status.branch_id.as_deref(),
    ) {
        in_place
            .discard_reset(id)
            .await
            .map_err(|e| VendorCall::new("discarding a reset's staged copy", e))?;
    }
    let pending_new = reset.pending.as_ref().filter(|p| p.create_requested);
    if let Some(pending) = pending_new {
        let id = match &pending.new_branch_id {
            Some(id) => Some(id.clone()),
            None => replay_new(branch, ctx, (&provider, make), parent, pending).await?,
        };
        if let Some(id) = id {
            delete_vendor_branch(branch, ctx, &provider, parent, &id).await?;
        }
    }
    if let Some(old) = &reset.retiring {
        delete_vendor_branch(branch, ctx, &provider, parent, old).await?;
    }
    Ok(())
}

/// Learns the id of a reset's new branch whose create answer was lost, by
/// sending it again with the same key (`None`: the project is gone).
async fn replay_new(
    branch: &DatabaseBranch,
    ctx: &Context,
    (provider, make): (&ProviderHandle, MakeRequest),
    parent: Option<&ParentProject>,
    pending: &PendingReset,
) -> Result<Option<String>, Error> {
    let key = idempotency_key(branch, &format!("branch-reset-{}", pending.token))?;
    let name = new_name(branch, &**provider, &pending.token);
    let password =
        pipeline::operator_password(branch, &secret_name(branch), &**provider, ctx, true).await?;
    let from_branch = branch.spec.from_branch.clone();
    let provider = &**provider;
    pipeline::parent::replay_child_create(
        pipeline::Object::Branch,
        parent,
        |project_id| async move {
            let mut request = make(branch, provider, &project_id, from_branch, true);
            request.branch_name = name;
            request.resumed = Resume::OwnName;
            request.db_password = password;
            provider.create_branch(&request, &key).await
        },
    )
    .await
}

/// Deletes vendor branch `id` (gone is fine) and releases its claim.
async fn delete_vendor_branch(
    branch: &DatabaseBranch,
    ctx: &Context,
    provider: &ProviderHandle,
    parent: Option<&ParentProject>,
    id: &str,
) -> Result<(), Error> {
    match provider.delete_branch(project_id(parent), id).await {
        Ok(()) => {}
        Err(e) if e.is_not_found() => {}
        Err(e) => return Err(VendorCall::new("deleting the branch a reset replaced", e).into()),
    }
    let uid = branch.metadata.uid.as_deref().unwrap_or_default();
    ctx.release(&provider.claim_key(ClaimedObject::Branch, id), uid)
        .await
        .map_err(KubeCall::Write)?;
    Ok(())
}

/// The vendor name of a reset's new branch: the branch's own, with the
/// reset's token.
fn new_name(branch: &DatabaseBranch, provider: &dyn Provider, token: &str) -> String {
    let short = &token[..token.len().min(6)];
    match &branch.spec.branch_name {
        Some(name) => format!("{name}-r{short}"),
        None => provider.default_branch_name(
            &branch.namespace().unwrap_or_default(),
            &format!("{}-r{short}", branch.name_any()),
            branch.metadata.uid.as_deref().unwrap_or_default(),
        ),
    }
}

/// Writes `status` (conditions as they are: the old branch keeps serving
/// while a reset runs) and makes it `previous`.
async fn save(
    api: &Api<DatabaseBranch>,
    branch: &DatabaseBranch,
    previous: &mut DatabaseBranchStatus,
    status: DatabaseBranchStatus,
) -> Result<(), Error> {
    apply_status(api, branch, &status)
        .await
        .map_err(KubeCall::Status)?;
    *previous = status;
    Ok(())
}

fn with_pending(status: &DatabaseBranchStatus, pending: &PendingReset) -> DatabaseBranchStatus {
    let mut status = status.clone();
    status
        .reset
        .get_or_insert_with(ResetStatus::default)
        .pending = Some(pending.clone());
    status
}

/// What every step needs.
struct Steps<'a> {
    branch: &'a DatabaseBranch,
    api: &'a Api<DatabaseBranch>,
    ctx: &'a Context,
    provider: &'a ProviderHandle,
    parent: Option<&'a ParentProject>,
    from_branch: Option<String>,
    make: MakeRequest,
}

impl Steps<'_> {
    /// Saves the step `pending` has reached.
    async fn save_pending(
        &self,
        previous: &mut DatabaseBranchStatus,
        pending: &PendingReset,
    ) -> Result<(), Error> {
        let status = with_pending(previous, pending);
        save(self.api, self.branch, previous, status).await
    }

    fn request(&self, name: String, resumed: bool) -> crate::providers::BranchRequest {
        let mut request = (self.make)(
            self.branch,
            &**self.provider,
            project_id(self.parent),
            self.from_branch.clone(),
            resumed,
        );
        request.branch_name = name;
        request
    }

    /// `status` once reset `pending` is done.
    fn done(
        &self,
        previous: &DatabaseBranchStatus,
        pending: &PendingReset,
        id: &str,
        password_set: bool,
    ) -> DatabaseBranchStatus {
        let now = Timestamp::now();
        let mut status = handled(previous, &ask_of(pending), None);
        status.last_reset_at = Some(Rfc3339(now));
        if let Some(data) = self
            .branch
            .spec
            .data
            .as_ref()
            .filter(|d| d.mode != DataMode::Full)
        {
            status.data_applied = Some(DataApplied {
                branch_id: id.to_string(),
                mode: data.mode,
                at: Rfc3339(now),
                password_set,
            });
        }
        status
    }

    async fn publish_done(&self, note: String) {
        self.ctx
            .publish(self.branch, EventType::Normal, RESET, "Reset", note)
            .await;
    }

    /// In place: stage, apply `spec.data`, swap.
    async fn in_place(
        &self,
        previous: &mut DatabaseBranchStatus,
        mut pending: PendingReset,
        vendor: &VendorBranch,
    ) -> Result<Option<Action>, Error> {
        let reset = self.provider.branch_reset().ok_or(Error::InvalidObject)?;
        let id = vendor.id.as_str();
        let staged = match (&pending.staged_id, &pending.staged_handle) {
            (Some(staged_id), Some(handle)) => StagedCopy {
                id: staged_id.clone(),
                handle: handle.clone(),
            },
            _ => {
                let request = self.request(vendor.name.clone(), false);
                let staged = reset
                    .stage_reset(&request, id)
                    .await
                    .map_err(|e| VendorCall::new("staging a fresh copy of the parent", e))?;
                pending.staged_id = Some(staged.id.clone());
                pending.staged_handle = Some(staged.handle.clone());
                pending.data_applied = false;
                self.save_pending(previous, &pending).await?;
                staged
            }
        };
        if !pending.data_applied {
            preview_data::change(self.branch, &**self.provider, &staged.id).await?;
            pending.data_applied = true;
            self.save_pending(previous, &pending).await?;
        }
        match reset.swap_reset(id, &staged).await {
            Ok(()) => {}
            Err(e) if e.is_not_found() => {
                // The staged copy was lost before it was swapped in: stage again.
                pending.staged_id = None;
                pending.staged_handle = None;
                pending.data_applied = false;
                self.save_pending(previous, &pending).await?;
                return Ok(Some(Action::requeue(std::time::Duration::from_millis(1))));
            }
            Err(e) => return Err(VendorCall::new("swapping in the fresh copy", e).into()),
        }
        let status = self.done(previous, &pending, id, true);
        save(self.api, self.branch, previous, status).await?;
        self.publish_done(format!(
            "reset branch {id} from its parent in place; its connection details are unchanged"
        ))
        .await;
        Ok(None)
    }

    /// A new branch: create it, wait for it, apply `spec.data`, then switch
    /// status (and so the Secret, in the same pass) to it.
    async fn replace(
        &self,
        previous: &mut DatabaseBranchStatus,
        mut pending: PendingReset,
        vendor: &mut VendorBranch,
    ) -> Result<Option<Action>, Error> {
        let provider = &**self.provider;
        let name = new_name(self.branch, provider, &pending.token);
        let new = match &pending.new_branch_id {
            Some(id) => provider
                .get_branch(project_id(self.parent), id)
                .await
                .map_err(|e| VendorCall::new("reading the reset's new branch", e))?,
            None => {
                let resumed = pending.create_requested;
                if !resumed {
                    pending.create_requested = true;
                    self.save_pending(previous, &pending).await?;
                }
                let mut request = self.request(name.clone(), resumed);
                request.db_password = if preview_data::sets_password_after(self.branch, provider) {
                    // Kept nowhere: the branch's own is set once spec.data is applied.
                    Some(crate::providers::Password::generate())
                } else {
                    pipeline::operator_password(
                        self.branch,
                        &secret_name(self.branch),
                        provider,
                        self.ctx,
                        false,
                    )
                    .await?
                };
                let key = idempotency_key(self.branch, &format!("branch-reset-{}", pending.token))?;
                let new = provider
                    .create_branch(&request, &key)
                    .await
                    .map_err(|e| VendorCall::new("creating the reset's new branch", e))?;
                pending.new_branch_id = Some(new.id.clone());
                pending.new_branch_name = Some(new.name.clone());
                self.save_pending(previous, &pending).await?;
                pipeline::claim(self.branch, self.ctx, self.provider, &new.id).await?;
                new
            }
        };
        match &new.state {
            ResourceState::Ready => {}
            ResourceState::Failed(state) => {
                return Err(Error::VendorFailed {
                    object: pipeline::Object::Branch,
                    id: new.id.clone(),
                    state: state.clone(),
                });
            }
            // The old branch keeps serving meanwhile.
            _ => {
                return Ok(Some(requeue(
                    self.branch,
                    self.ctx.settings.provisioning_poll,
                )));
            }
        }
        let needs_password = preview_data::sets_password_after(self.branch, provider);
        if !pending.data_applied {
            preview_data::change(self.branch, provider, &new.id).await?;
            if needs_password {
                preview_data::set_password(
                    self.branch,
                    self.ctx,
                    provider,
                    self.parent,
                    (&new.id, &secret_name(self.branch)),
                )
                .await?;
            }
            pending.data_applied = true;
            self.save_pending(previous, &pending).await?;
        }
        let old = vendor.id.clone();
        let mut status = self.done(previous, &pending, &new.id, needs_password);
        status.branch_id = Some(new.id.clone());
        status.branch_name = Some(new.name.clone());
        status
            .reset
            .get_or_insert_with(ResetStatus::default)
            .retiring = Some(old.clone());
        save(self.api, self.branch, previous, status).await?;
        *vendor = new;
        self.publish_done(format!(
            "reset the branch from its parent as vendor branch {}; its connection Secret now points there and vendor branch {old} is deleted",
            vendor.id
        ))
        .await;
        Ok(None)
    }

    /// Undoes what reset `pending` made, after it failed for good with `error`.
    async fn undo(
        &self,
        pending: &PendingReset,
        vendor: &VendorBranch,
        error: &Error,
    ) -> Result<(), Error> {
        if let Some(reset) = self.provider.branch_reset() {
            return reset
                .discard_reset(&vendor.id)
                .await
                .map_err(|e| VendorCall::new("discarding the staged copy", e).into());
        }
        let id = match &pending.new_branch_id {
            Some(id) => Some(id.clone()),
            // The create's answer was lost: learn what it made, if anything.
            None if pending.create_requested && !error.made_nothing() => {
                match replay_new(
                    self.branch,
                    self.ctx,
                    (self.provider, self.make),
                    self.parent,
                    pending,
                )
                .await
                {
                    Ok(id) => id,
                    Err(e) if e.is_transient() => return Err(e),
                    // The vendor refuses it again: it made nothing.
                    Err(_) => None,
                }
            }
            None => None,
        };
        match id {
            Some(id) if id != vendor.id => {
                delete_vendor_branch(self.branch, self.ctx, self.provider, self.parent, &id).await
            }
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    const HOUR: Option<std::time::Duration> = Some(std::time::Duration::from_secs(3600));

    #[test]
    fn a_new_annotation_value_asks_for_one_reset_and_a_handled_one_for_none() {
        let created = Some(t("2026-01-01T00:00:00Z"));
        let now = t("2026-01-01T00:10:00Z");
        let status = DatabaseBranchStatus::default();
        assert_eq!(requested(None, None, &status, created, now), None);
        assert_eq!(
            requested(Some(""), None, &status, created, now),
            None,
            "an empty value asks for nothing"
        );
        let ask = requested(Some("monday"), None, &status, created, now).unwrap();
        assert_eq!(
            ask,
            Ask {
                annotation: Some("monday".into()),
                slot: None
            }
        );
        let status = handled(&status, &ask, None);
        assert_eq!(requested(Some("monday"), None, &status, created, now), None);
        assert_eq!(
            requested(Some("tuesday"), None, &status, created, now).map(|a| a.annotation),
            Some(Some("tuesday".to_string()))
        );
    }

    #[test]
    fn the_schedule_counts_from_the_last_reset_or_handled_slot_and_never_bursts() {
        let created = Some(t("2026-01-01T00:00:00Z"));
        let mut status = DatabaseBranchStatus::default();
        assert_eq!(
            requested(None, HOUR, &status, created, t("2026-01-01T00:59:59Z")),
            None
        );
        let ask = requested(None, HOUR, &status, created, t("2026-01-01T01:00:00Z")).unwrap();
        assert_eq!(ask.slot, Some(t("2026-01-01T01:00:00Z")));
        // Down for a day: one reset at once, then an hour after it.
        let late = t("2026-01-02T05:30:00Z");
        let ask = requested(None, HOUR, &status, created, late).unwrap();
        assert_eq!(ask.slot, Some(t("2026-01-01T01:00:00Z")));
        status = handled(&status, &ask, None);
        status.last_reset_at = Some(Rfc3339(late));
        assert_eq!(requested(None, HOUR, &status, created, late), None);
        assert_eq!(
            next_scheduled(HOUR, &status, created),
            Some(t("2026-01-02T06:30:00Z"))
        );
        // A failed one is handled too: the next counts from its slot.
        let mut failed = DatabaseBranchStatus::default();
        let ask = requested(None, HOUR, &failed, created, t("2026-01-01T01:00:05Z")).unwrap();
        failed = handled(&failed, &ask, Some("the parent is gone".into()));
        assert_eq!(
            failed.reset.as_ref().unwrap().last_failure.as_deref(),
            Some("the parent is gone")
        );
        assert_eq!(
            next_scheduled(HOUR, &failed, created),
            Some(t("2026-01-01T02:00:00Z"))
        );
    }

    #[test]
    fn both_asks_at_once_are_one_reset_and_both_are_marked_handled() {
        let created = Some(t("2026-01-01T00:00:00Z"));
        let now = t("2026-01-01T03:00:00Z");
        let status = DatabaseBranchStatus::default();
        let ask = requested(Some("x"), HOUR, &status, created, now).unwrap();
        assert!(ask.annotation.is_some() && ask.slot.is_some());
        let mut status = handled(&status, &ask, None);
        status.last_reset_at = Some(Rfc3339(now));
        assert_eq!(requested(Some("x"), HOUR, &status, created, now), None);
    }

    #[test]
    fn a_token_is_the_same_for_one_request_and_differs_across_requests_and_branches() {
        let ask = |a: &str| Ask {
            annotation: Some(a.into()),
            slot: None,
        };
        assert_eq!(token("uid-1", &ask("a")), token("uid-1", &ask("a")));
        assert_ne!(token("uid-1", &ask("a")), token("uid-1", &ask("b")));
        assert_ne!(token("uid-1", &ask("a")), token("uid-2", &ask("a")));
        let slot = Ask {
            annotation: None,
            slot: Some(t("2026-01-01T01:00:00Z")),
        };
        let later = Ask {
            annotation: None,
            slot: Some(t("2026-01-01T02:00:00Z")),
        };
        assert_ne!(token("uid-1", &slot), token("uid-1", &later));
        assert_eq!(token("uid-1", &slot).len(), 12);
        assert!(token("uid-1", &slot).chars().all(|c| c.is_ascii_hexdigit()));
    }

    #[test]
    fn handling_a_request_ends_the_pending_reset_and_keeps_the_rest() {
        let status = DatabaseBranchStatus {
            reset: Some(ResetStatus {
                annotation: Some("old".into()),
                retiring: Some("br-old".into()),
                pending: Some(PendingReset {
                    token: "abc".into(),
                    ..PendingReset::default()
                }),
                ..ResetStatus::default()
            }),
            ..DatabaseBranchStatus::default()
        };
        let ask = Ask {
            annotation: None,
            slot: Some(t("2026-01-01T01:00:00Z")),
        };
        let done = handled(&status, &ask, None).reset.unwrap();
        assert_eq!(done.pending, None);
        assert_eq!(
            done.annotation.as_deref(),
            Some("old"),
            "an annotation not asked about stays"
        );
        assert_eq!(done.slot, Some(Rfc3339(t("2026-01-01T01:00:00Z"))));
        assert_eq!(done.retiring.as_deref(), Some("br-old"));
    }
}
