//! The `DatabaseProject` a branch or snapshot belongs to.

use kube::Resource;
use kube::api::Api;

use super::Context;
use super::reconciler::Managed;
use crate::api::v1alpha1::DatabaseProject;

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
    Provider(std::sync::Arc<dyn crate::providers::Provider>),
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
) -> Result<CleanupProvider, super::LookupError> {
    use crate::api::v1alpha1::ProviderRef;
    let parent = parent_project(ctx, namespace, project_name)
        .await
        .map_err(|source| super::LookupError::Kube {
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
    match ctx.provider(&provider_ref).await {
        Ok(provider) => Ok(CleanupProvider::Provider(provider.client())),
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
    Wait(super::conditions::Health),
    /// The project this child was made in is gone (deleted, being deleted, or
    /// replaced by a new vendor project).
    ParentGone,
}

/// Decides the [`Gate`] for a child of `project_name` that has (`created_before`)
/// or has not reached the vendor yet, in vendor project `recorded_project_id`.
pub async fn gate(
    ctx: &Context,
    namespace: &str,
    project_name: &str,
    created_before: bool,
    recorded_project_id: Option<&str>,
) -> Result<Gate, kube::Error> {
    use super::conditions::{Health, reason};
    let waiting =
        |message: String| Gate::Wait(Health::progressing(reason::WAITING_FOR_PROJECT, message));
    Ok(match parent_project(ctx, namespace, project_name).await? {
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
    })
}

/// [`cleanup_provider`] for a child's finalizer: the provider to delete through,
/// or `None` when there is nothing to do (never created) or nothing that can be
/// done (parent and provider gone; a Warning Event says so).
pub async fn child_cleanup_provider<K>(
    ctx: &Context,
    owner: &K,
    project_name: &str,
    recorded_provider: Option<&str>,
    what: &str,
) -> Result<Option<std::sync::Arc<dyn crate::providers::Provider>>, super::LookupError>
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
