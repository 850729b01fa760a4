//! The `DatabaseProject` a branch or snapshot belongs to.

use kube::api::Api;
use kube::runtime::controller::Action;
use kube::{Resource, ResourceExt};

use super::error::{Error, Object};
use super::kind::{ParentProject, VendorKind, create_sent, project_id};
use crate::api::v1alpha1::DatabaseProject;
use crate::controllers::protection::{LookupError, ProviderHandle};
use crate::controllers::runtime::conditions;
use crate::controllers::runtime::reconciler::{Managed, report_progress, requeue};
use crate::controllers::runtime::{Context, KubeCall, VendorCall};

/// Where the parent project of a branch or snapshot is in its life.
#[derive(Debug)]
pub enum Parent {
    /// No `DatabaseProject` of that name in the namespace (not yet, or not any more).
    Missing,
    /// The project is being deleted.
    Deleting(Box<DatabaseProject>),
    /// The project exists but is not Ready yet.
    NotReady(Box<DatabaseProject>),
    /// The project is Ready at the vendor under `project_id`.
    Ready {
        project: Box<DatabaseProject>,
        project_id: String,
    },
}

/// Looks up `DatabaseProject` `name` in `namespace`.
pub async fn parent_project(
    ctx: &Context,
    namespace: &str,
    name: &str,
) -> Result<Parent, kube::Error> {
    let api: Api<DatabaseProject> = Api::namespaced(ctx.client.clone(), namespace);
    let Some(project) = api.get_opt(name).await? else {
        return Ok(Parent::Missing);
    };
    if project.meta().deletion_timestamp.is_some() {
        return Ok(Parent::Deleting(Box::new(project)));
    }
    let project_id = project.status.as_ref().and_then(|s| s.project_id.clone());
    match project_id {
        Some(project_id) if project.is_ready() => Ok(Parent::Ready {
            project: Box::new(project),
            project_id,
        }),
        _ => Ok(Parent::NotReady(Box::new(project))),
    }
}

/// The provider through which a child (branch or snapshot) of `project_name`
/// is cleaned up: the parent's provider while the parent resource exists, else
/// the provider recorded in the child's status when its vendor object was made.
pub enum CleanupProvider {
    /// Delete through this provider.
    Provider(ProviderHandle),
    /// The child never reached the vendor: nothing to delete.
    NeverCreated,
    /// The parent resource is gone and its provider cannot be used any more
    /// (the message says why); the vendor removed the child with its project
    /// unless that project was retained.
    Unreachable(String),
}

/// Finds the [`CleanupProvider`] of a child.
pub async fn cleanup_provider(
    ctx: &Context,
    namespace: &str,
    project_name: &str,
    recorded_provider: Option<&str>,
) -> Result<CleanupProvider, LookupError> {
    use crate::api::v1alpha1::ProviderRef;
    let parent = parent_project(ctx, namespace, project_name)
        .await
        .map_err(|source| LookupError::Kube {
            provider: recorded_provider.unwrap_or_default().to_string(),
            source,
        })?;
    let (provider_ref, parent_exists) = match (&parent, recorded_provider) {
        (Parent::Ready { project, .. }, _) => (project.spec.provider_ref.clone(), true),
        (Parent::NotReady(project) | Parent::Deleting(project), _) => {
            (project.spec.provider_ref.clone(), true)
        }
        (Parent::Missing, Some(name)) => (
            ProviderRef {
                name: name.to_string(),
            },
            false,
        ),
        (Parent::Missing, None) => return Ok(CleanupProvider::NeverCreated),
    };
    match ctx.provider_in(namespace, &provider_ref, false).await {
        Ok(provider) => Ok(CleanupProvider::Provider(provider)),
        // The provider no longer admits this namespace: nothing is sent to it.
        Err(e @ LookupError::NotAllowed { .. }) => Ok(CleanupProvider::Unreachable(e.to_string())),
        // Gone for good (in-use protection removed by hand), or the parent is
        // gone too and the provider cannot be used: nothing can be reached.
        Err(e) if e.is_gone() || (!parent_exists && !e.is_transient()) => {
            Ok(CleanupProvider::Unreachable(e.to_string()))
        }
        Err(e) => Err(e),
    }
}

/// What a child (branch or snapshot) does about its parent project.
pub enum Gate {
    /// The project is Ready under `project_id`: go ahead.
    Proceed {
        project: Box<DatabaseProject>,
        project_id: String,
    },
    /// Not yet: show this and look again when the project changes.
    Wait(conditions::Health),
    /// The project this child was made in is gone (deleted, being deleted, or
    /// replaced by a new vendor project).
    ParentGone,
}

/// The [`Gate`] for a child of `project_name` (pure): `parent` is what the
/// lookup found; the child has (`created_before`) or has not reached the
/// vendor yet, in vendor project `recorded_project_id`.
pub fn gate(
    parent: Parent,
    project_name: &str,
    created_before: bool,
    recorded_project_id: Option<&str>,
) -> Gate {
    use conditions::{Health, reason};
    let waiting =
        |message: String| Gate::Wait(Health::progressing(reason::WAITING_FOR_PROJECT, message));
    match parent {
        Parent::Ready { project_id, .. }
            if recorded_project_id.is_some_and(|old| old != project_id) =>
        {
            Gate::ParentGone
        }
        Parent::Ready {
            project,
            project_id,
        } => Gate::Proceed {
            project,
            project_id,
        },
        Parent::Missing if !created_before => {
            waiting(format!("DatabaseProject {project_name} does not exist yet"))
        }
        Parent::Missing | Parent::Deleting(_) => Gate::ParentGone,
        Parent::NotReady(_) => waiting(format!(
            "waiting for DatabaseProject {project_name} to be Ready"
        )),
    }
}

/// What dereferencing the parent of a branch or snapshot found.
pub enum Dereferenced {
    /// The parent project is Ready.
    Parent(ParentProject),
    /// Not yet; status says why. Look again then (or when the project changes).
    Requeue(Action),
}

/// Dereferences the parent project of branch or snapshot `obj`: its ids once
/// it is Ready; else status shows why the child waits, or the child is gone
/// with its project (an error).
pub async fn dereference<K: VendorKind>(
    obj: &K,
    api: &Api<K>,
    ctx: &Context,
) -> Result<Dereferenced, Error> {
    let namespace = obj.namespace().ok_or(Error::InvalidObject)?;
    let status = obj.current_status();
    let recorded = obj.recorded_parent(&status).ok_or(Error::InvalidObject)?;
    let created_before = K::recorded_id(&status).is_some() || create_sent(obj, &status);
    let recorded_id = Some(recorded.project_id.as_str()).filter(|id| !id.is_empty());
    let found = parent_project(ctx, &namespace, &recorded.name)
        .await
        .map_err(KubeCall::Read)?;
    match gate(found, &recorded.name, created_before, recorded_id) {
        Gate::Proceed {
            project,
            project_id,
        } => Ok(Dereferenced::Parent(ParentProject {
            provider_name: project.spec.provider_ref.name.clone(),
            project_id,
            name: recorded.name,
        })),
        Gate::Wait(health) => {
            report_progress(api, obj, &health)
                .await
                .map_err(KubeCall::Status)?;
            Ok(Dereferenced::Requeue(requeue(obj, ctx.jittered_resync())))
        }
        Gate::ParentGone => Err(Error::ProjectDeleted {
            object: K::OBJECT,
            project: recorded.name,
        }),
    }
}

/// The parent a child's spec and status record (ids empty until saved).
pub fn recorded_parent(
    project_name: &str,
    provider_name: Option<&String>,
    project_id: Option<&String>,
) -> ParentProject {
    ParentProject {
        name: project_name.to_string(),
        provider_name: provider_name.cloned().unwrap_or_default(),
        project_id: project_id.cloned().unwrap_or_default(),
    }
}

/// Records `parent`'s provider and vendor project in a child's status fields.
pub fn record_parent(
    provider_name: &mut Option<String>,
    project_id: &mut Option<String>,
    parent: Option<&ParentProject>,
) {
    if let Some(parent) = parent {
        *provider_name = Some(parent.provider_name.clone());
        *project_id = Some(parent.project_id.clone());
    }
}

/// Replays a child's create (with the same idempotency key, inside `create`)
/// to learn the id of what a lost answer made. Without a saved project there
/// is nothing to replay; a gone project means the child went with it.
pub async fn replay_child_create<V, Fut>(
    object: Object,
    parent: Option<&ParentProject>,
    create: impl FnOnce(String) -> Fut,
) -> Result<Option<String>, Error>
where
    V: crate::providers::VendorObject,
    Fut: std::future::Future<Output = Result<V, crate::providers::ProviderError>>,
{
    let project_id = project_id(parent);
    if project_id.is_empty() {
        return Ok(None);
    }
    match create(project_id.to_string()).await {
        Ok(vendor) => Ok(Some(vendor.id().to_string())),
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(VendorCall::new(format!("replaying the {object} create"), e).into()),
    }
}

/// The provider and parent a child's cleanup goes through, or `None` when
/// there is nothing to do (never created) or nothing that can be done (parent
/// and provider gone; a Warning Event says so).
pub async fn child_cleanup_target<K: VendorKind>(
    obj: &K,
    ctx: &Context,
    status: &K::Status,
) -> Result<Option<(ProviderHandle, Option<ParentProject>)>, Error> {
    let recorded = obj.recorded_parent(status).ok_or(Error::InvalidObject)?;
    let provider_name = Some(recorded.provider_name.as_str()).filter(|p| !p.is_empty());
    let provider =
        child_cleanup_provider(ctx, obj, &recorded.name, provider_name, K::OBJECT.plural()).await?;
    Ok(provider.map(|p| (p, Some(recorded))))
}

/// [`cleanup_provider`] for a child's finalizer: the provider to delete through,
/// or `None` when there is nothing to do (never created) or nothing that can be
/// done (parent and provider gone; a Warning Event says so).
async fn child_cleanup_provider<K>(
    ctx: &Context,
    owner: &K,
    project_name: &str,
    recorded_provider: Option<&str>,
    what: &str,
) -> Result<Option<ProviderHandle>, LookupError>
where
    K: kube::Resource<DynamicType = ()>,
{
    let namespace = owner.meta().namespace.clone().unwrap_or_default();
    match cleanup_provider(ctx, &namespace, project_name, recorded_provider).await? {
        CleanupProvider::Provider(provider) => Ok(Some(provider)),
        CleanupProvider::NeverCreated => Ok(None),
        CleanupProvider::Unreachable(why) => {
            ctx.cleanup_skipped(
                owner,
                format!(
                    "the provider of DatabaseProject {project_name} cannot be used any more ({why}); the vendor deletes {what} with their project, unless that project was retained"
                ),
            )
            .await;
            Ok(None)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn project() -> Box<DatabaseProject> {
        Box::new(DatabaseProject::new("app", Default::default()))
    }

    fn ready(id: &str) -> Parent {
        Parent::Ready {
            project: project(),
            project_id: id.to_string(),
        }
    }

    #[test]
    fn a_ready_parent_lets_a_child_proceed() {
        assert!(matches!(
            gate(ready("prj_1"), "app", false, None),
            Gate::Proceed { project_id, .. } if project_id == "prj_1"
        ));
        assert!(matches!(
            gate(ready("prj_1"), "app", true, Some("prj_1")),
            Gate::Proceed { .. }
        ));
    }

    #[test]
    fn a_child_waits_for_a_parent_that_is_not_there_or_not_ready() {
        assert!(matches!(
            gate(Parent::Missing, "app", false, None),
            Gate::Wait(h) if h.reason() == "WaitingForProject"
        ));
        assert!(matches!(
            gate(Parent::NotReady(project()), "app", true, Some("prj_1")),
            Gate::Wait(_)
        ));
    }

    #[test]
    fn a_child_made_in_a_parent_that_went_or_was_replaced_is_gone() {
        assert!(matches!(
            gate(Parent::Missing, "app", true, Some("prj_1")),
            Gate::ParentGone
        ));
        assert!(matches!(
            gate(Parent::Deleting(project()), "app", false, None),
            Gate::ParentGone
        ));
        assert!(matches!(
            gate(ready("prj_2"), "app", true, Some("prj_1")),
            Gate::ParentGone,
        ));
    }
}
