//! `DatabaseProject`: create (or adopt, or restore) a vendor project, write its
//! connection Secret, report kstatus conditions, and delete or retain it.

use std::sync::Arc;
use std::time::Instant;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::jiff::Timestamp;
use kube::api::Api;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::EventType;
use kube::runtime::finalizer::{Event as FinalizerEvent, finalizer};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Resource, ResourceExt};
use tracing::Instrument;

use super::conditions::{self, Health, reason};
use super::secret::{self, ConnectionDetails, ConnectionError, SecretWrite, SecretWriteError};
use super::{
    Context, FINALIZER, LookupError, ReconcileError, apply_status, error_policy, object_key,
};
use crate::api::v1alpha1::{
    DatabaseProject, DatabaseProjectStatus, DatabaseProvider, DeletionPolicy, ProjectMode,
};
use crate::providers::{
    Operation, ProjectRequest, Provider, ProviderError, ResourceState, VendorProject,
};

/// Name of this controller in metrics and logs.
pub const CONTROLLER: &str = "databaseproject";

/// Everything that can stop a `DatabaseProject` reconcile.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Provider(#[from] LookupError),
    #[error("creating the project at the vendor: {0}")]
    Create(#[source] ProviderError),
    #[error("reading project {id} from the vendor: {source}")]
    Read {
        id: String,
        #[source]
        source: ProviderError,
    },
    #[error("deleting project {id} at the vendor: {source}")]
    Delete {
        id: String,
        #[source]
        source: ProviderError,
    },
    #[error(
        "project {id} no longer exists at the vendor (deleted outside dbops); delete this resource, or re-create it to provision a new project"
    )]
    VendorObjectDeleted { id: String },
    #[error("project {id} named in spec.externalId does not exist at the vendor")]
    ExternalNotFound { id: String },
    #[error("the vendor reports project {id} as failed: {state}")]
    VendorFailed { id: String, state: String },
    #[error(
        "{provider} cannot {operation}; adopt an existing project with spec.externalId instead"
    )]
    Unsupported {
        provider: String,
        operation: Operation,
    },
    #[error("project {id}: {source}")]
    Connection {
        id: String,
        #[source]
        source: ConnectionError,
    },
    #[error(transparent)]
    Secret(#[from] SecretWriteError),
    #[error("writing status: {0}")]
    Status(#[source] kube::Error),
    #[error("updating the finalizer: {0}")]
    Finalizer(#[source] kube::Error),
    #[error("the resource has no namespace or name")]
    InvalidObject,
}

impl ReconcileError for Error {
    fn category(&self) -> &'static str {
        match self {
            Error::Provider(e) => e.category(),
            Error::Create(e) | Error::Read { source: e, .. } | Error::Delete { source: e, .. } => {
                e.category()
            }
            Error::VendorObjectDeleted { .. } => reason::VENDOR_OBJECT_DELETED,
            Error::ExternalNotFound { .. } => reason::EXTERNAL_NOT_FOUND,
            Error::VendorFailed { .. } => "VendorFailed",
            Error::Unsupported { .. } => reason::UNSUPPORTED_BY_PROVIDER,
            Error::Connection { .. } => "VendorInvalidResponse",
            Error::Secret(SecretWriteError::NotOwned { .. }) => reason::SECRET_CONFLICT,
            Error::Secret(_) | Error::Status(_) | Error::Finalizer(_) => "KubernetesApiError",
            Error::InvalidObject => reason::INVALID_SPEC,
        }
    }

    fn is_transient(&self) -> bool {
        match self {
            Error::Provider(e) => e.is_transient(),
            Error::Create(e) | Error::Read { source: e, .. } | Error::Delete { source: e, .. } => {
                e.is_transient()
            }
            Error::Secret(SecretWriteError::Kube { .. })
            | Error::Status(_)
            | Error::Finalizer(_) => true,
            _ => false,
        }
    }

    fn retry_after(&self) -> Option<std::time::Duration> {
        match self {
            Error::Create(e) | Error::Read { source: e, .. } | Error::Delete { source: e, .. } => {
                e.retry_after()
            }
            _ => None,
        }
    }
}

/// The idempotency key of this resource's create call: derived from its UID, so a
/// retry after a crash returns the project the first call made.
pub fn idempotency_key(project: &DatabaseProject, operation: &str) -> Option<String> {
    project
        .metadata
        .uid
        .as_ref()
        .map(|uid| format!("dbops-{uid}-{operation}"))
}

/// Name of the project at the vendor: `spec.projectName`, else `<namespace>-<name>` (cut to 63 characters).
pub fn vendor_project_name(project: &DatabaseProject) -> String {
    if let Some(name) = &project.spec.project_name {
        return name.clone();
    }
    let full = format!(
        "{}-{}",
        project.namespace().unwrap_or_default(),
        project.name_any()
    );
    full.chars().take(63).collect()
}

/// Name of the connection Secret: `spec.writeConnectionSecretTo.name`, else `<name>-connection`.
pub fn connection_secret_name(project: &DatabaseProject) -> String {
    match &project.spec.write_connection_secret_to {
        Some(target) => target.name.clone(),
        None => format!("{}-connection", project.name_any()),
    }
}

/// The vendor create request for this resource.
pub fn project_request(project: &DatabaseProject) -> ProjectRequest {
    let spec = &project.spec;
    ProjectRequest {
        name: vendor_project_name(project),
        vendor: spec.vendor.clone(),
        region: spec.region.clone(),
        plan: spec.plan.clone(),
        mode: spec.mode.map(|m| match m {
            ProjectMode::Managed => "managed".to_string(),
            ProjectMode::Byok => "byok".to_string(),
        }),
        postgres_version: spec.postgres_version.clone(),
    }
}

/// The status after a successful read of `vendor`, with `health` (pure).
pub fn status_with(
    project: &DatabaseProject,
    previous: &DatabaseProjectStatus,
    vendor: &VendorProject,
    health: &Health,
    secret_name: Option<String>,
    now: Timestamp,
) -> DatabaseProjectStatus {
    DatabaseProjectStatus {
        observed_generation: project.metadata.generation,
        conditions: conditions::conditions_for(
            health,
            project.metadata.generation,
            &previous.conditions,
            now,
        ),
        project_id: Some(vendor.id.clone()),
        project_name: Some(vendor.name.clone())
            .filter(|n| !n.is_empty())
            .or(previous.project_name.clone()),
        region: vendor.region.clone().or(previous.region.clone()),
        created_at: vendor.created_at.clone().or(previous.created_at.clone()),
        connection_secret_name: secret_name.or(previous.connection_secret_name.clone()),
        create_requested: previous.create_requested,
    }
}

/// Reconciles one `DatabaseProject`.
pub async fn reconcile(project: Arc<DatabaseProject>, ctx: Arc<Context>) -> Result<Action, Error> {
    let started = Instant::now();
    let namespace = project.namespace().ok_or(Error::InvalidObject)?;
    let span = tracing::info_span!("reconcile", controller = CONTROLLER, namespace = %namespace, name = %project.name_any());
    let result = async {
        let api: Api<DatabaseProject> = Api::namespaced(ctx.client.clone(), &namespace);
        let outcome = finalizer(&api, FINALIZER, project.clone(), |event| async {
            match event {
                FinalizerEvent::Apply(p) => apply(&p, &api, &ctx).await,
                FinalizerEvent::Cleanup(p) => cleanup(&p, &ctx).await,
            }
        })
        .await
        .map_err(|e| match e {
            kube::runtime::finalizer::Error::ApplyFailed(e)
            | kube::runtime::finalizer::Error::CleanupFailed(e) => e,
            kube::runtime::finalizer::Error::AddFinalizer(e)
            | kube::runtime::finalizer::Error::RemoveFinalizer(e) => Error::Finalizer(e),
            kube::runtime::finalizer::Error::UnnamedObject
            | kube::runtime::finalizer::Error::InvalidFinalizer => Error::InvalidObject,
        });
        match &outcome {
            Ok(_) => ctx.reset_failures(&object_key(&*project)),
            Err(error) => report_failure(&project, &api, error, &ctx).await,
        }
        outcome
    }
    .instrument(span)
    .await;
    ctx.metrics.observe_reconcile(CONTROLLER, started.elapsed());
    result
}

async fn apply(
    project: &DatabaseProject,
    api: &Api<DatabaseProject>,
    ctx: &Context,
) -> Result<Action, Error> {
    let provider = ctx.provider(&project.spec.provider_ref).await?;
    let previous = project.status.clone().unwrap_or_default();

    let vendor = if let Some(id) = &previous.project_id {
        match provider.get_project(id).await {
            Ok(vendor) => vendor,
            Err(e) if e.is_not_found() => {
                return Err(Error::VendorObjectDeleted { id: id.clone() });
            }
            Err(source) => {
                return Err(Error::Read {
                    id: id.clone(),
                    source,
                });
            }
        }
    } else if let Some(id) = &project.spec.external_id {
        let vendor = match provider.get_project(id).await {
            Ok(vendor) => vendor,
            Err(e) if e.is_not_found() => return Err(Error::ExternalNotFound { id: id.clone() }),
            Err(source) => {
                return Err(Error::Read {
                    id: id.clone(),
                    source,
                });
            }
        };
        ctx.publish(
            project,
            EventType::Normal,
            "Adopted",
            "Adopt",
            format!("adopted existing vendor project {}", vendor.id),
        )
        .await;
        vendor
    } else {
        create(project, api, &previous, provider.as_ref(), ctx).await?
    };

    let now = Timestamp::now();
    match &vendor.state {
        ResourceState::Ready => {}
        ResourceState::Provisioning(state) => {
            let health = Health::progressing(
                reason::WAITING_FOR_VENDOR,
                format!("the vendor reports the project as {state}"),
            );
            let status = status_with(project, &previous, &vendor, &health, None, now);
            write_status_if_changed(api, project, &previous, &status).await?;
            return Ok(Action::requeue(ctx.settings.provisioning_poll));
        }
        ResourceState::Failed(state) => {
            return Err(Error::VendorFailed {
                id: vendor.id.clone(),
                state: state.clone(),
            });
        }
    }

    // Save the id before anything else can fail, so it is never lost.
    if previous.project_id.as_deref() != Some(vendor.id.as_str()) {
        let health = Health::progressing(
            reason::CREATING,
            "project exists at the vendor; writing the connection Secret",
        );
        let status = status_with(project, &previous, &vendor, &health, None, now);
        apply_status(api, project, &status)
            .await
            .map_err(Error::Status)?;
    }

    let secret_name = connection_secret_name(project);
    let details =
        ConnectionDetails::parse(vendor.connection_uri.as_ref(), vendor.pooled_uri.as_ref())
            .map_err(|source| Error::Connection {
                id: vendor.id.clone(),
                source,
            })?;
    let written =
        secret::ensure_secret(&ctx.client, project, &secret_name, details.to_data()).await?;
    if let Some(old) = previous
        .connection_secret_name
        .as_deref()
        .filter(|old| *old != secret_name)
    {
        secret::delete_owned_secret(&ctx.client, project, old).await?;
    }

    let health = Health::ready(format!(
        "project {} is ready; connection details in Secret {secret_name}",
        vendor.id
    ));
    let status = status_with(
        project,
        &previous,
        &vendor,
        &health,
        Some(secret_name.clone()),
        now,
    );
    let was_ready = previous.conditions.is_true(conditions::READY);
    write_status_if_changed(api, project, &previous, &status).await?;
    if !was_ready {
        ctx.publish(
            project,
            EventType::Normal,
            "Ready",
            "Reconcile",
            format!("project {} is ready", vendor.id),
        )
        .await;
    } else if written == SecretWrite::Written {
        ctx.publish(
            project,
            EventType::Normal,
            "SecretUpdated",
            "Reconcile",
            format!("connection Secret {secret_name} brought back in sync"),
        )
        .await;
    }
    Ok(Action::requeue(ctx.jittered_resync()))
}

/// Creates the vendor project. `createRequested` is saved first, so that a delete
/// before the id is saved can still find the project through the idempotency key.
async fn create(
    project: &DatabaseProject,
    api: &Api<DatabaseProject>,
    previous: &DatabaseProjectStatus,
    provider: &dyn Provider,
    ctx: &Context,
) -> Result<VendorProject, Error> {
    if !provider.supports(Operation::ProjectCreate) {
        return Err(Error::Unsupported {
            provider: provider.api().to_string(),
            operation: Operation::ProjectCreate,
        });
    }
    let key = idempotency_key(project, "project-create").ok_or(Error::InvalidObject)?;
    if !previous.create_requested {
        let mut status = previous.clone();
        status.create_requested = true;
        status.observed_generation = project.metadata.generation;
        status.conditions = conditions::conditions_for(
            &Health::progressing(
                reason::CREATING,
                format!("creating the project at {}", provider.api()),
            ),
            project.metadata.generation,
            &previous.conditions,
            Timestamp::now(),
        );
        apply_status(api, project, &status)
            .await
            .map_err(Error::Status)?;
    }
    let vendor = provider
        .create_project(&project_request(project), &key)
        .await
        .map_err(Error::Create)?;
    tracing::info!(project_id = %vendor.id, "vendor project created");
    ctx.publish(
        project,
        EventType::Normal,
        "Created",
        "Create",
        format!("created vendor project {}", vendor.id),
    )
    .await;
    Ok(vendor)
}

async fn write_status_if_changed(
    api: &Api<DatabaseProject>,
    project: &DatabaseProject,
    previous: &DatabaseProjectStatus,
    status: &DatabaseProjectStatus,
) -> Result<(), Error> {
    if status != previous {
        apply_status(api, project, status)
            .await
            .map_err(Error::Status)?;
    }
    Ok(())
}

async fn cleanup(project: &DatabaseProject, ctx: &Context) -> Result<Action, Error> {
    if project.spec.deletion_policy == DeletionPolicy::Retain {
        let id = project
            .status
            .as_ref()
            .and_then(|s| s.project_id.clone())
            .unwrap_or_default();
        ctx.publish(
            project,
            EventType::Normal,
            "Retained",
            "Delete",
            format!("deletionPolicy Retain: vendor project {id} left in place"),
        )
        .await;
        return Ok(Action::await_change());
    }
    let provider = ctx.provider(&project.spec.provider_ref).await?;
    let status = project.status.clone().unwrap_or_default();
    let id = match (&status.project_id, &project.spec.external_id) {
        (Some(id), _) => Some(id.clone()),
        (None, Some(external)) => Some(external.clone()),
        (None, None) if status.create_requested => {
            // The create may have reached the vendor before the id was saved: replay
            // it with the same idempotency key to learn the id (no duplicate is made).
            let key = idempotency_key(project, "project-create").ok_or(Error::InvalidObject)?;
            let vendor = provider
                .create_project(&project_request(project), &key)
                .await
                .map_err(Error::Create)?;
            Some(vendor.id)
        }
        (None, None) => None,
    };
    if let Some(id) = id {
        match provider.delete_project(&id).await {
            Ok(()) => {
                ctx.publish(
                    project,
                    EventType::Normal,
                    "Deleted",
                    "Delete",
                    format!("deleted vendor project {id}"),
                )
                .await;
            }
            Err(e) if e.is_not_found() => {
                ctx.publish(
                    project,
                    EventType::Normal,
                    "Deleted",
                    "Delete",
                    format!("vendor project {id} was already gone"),
                )
                .await;
            }
            Err(source) => return Err(Error::Delete { id, source }),
        }
    }
    Ok(Action::await_change())
}

/// Reflects a failed reconcile in status and an Event. Transient failures of an
/// object that is already Ready leave its status alone (no flapping); everything
/// else is shown: permanent errors as `Stalled`, transient ones as `Reconciling`.
async fn report_failure(
    project: &DatabaseProject,
    api: &Api<DatabaseProject>,
    error: &Error,
    ctx: &Context,
) {
    // Status may have moved during this reconcile (e.g. the id was saved before a
    // later step failed); build on the latest so nothing written is lost.
    let latest = match api.get_opt(&project.name_any()).await {
        Ok(Some(latest)) => latest,
        Ok(None) => return,
        Err(_) => project.clone(),
    };
    let project = &latest;
    let previous = project.status.clone().unwrap_or_default();
    let first_failure = ctx.failure_count(&object_key(project)) == 0;
    let message = error.to_string();
    let health = if error.is_transient() {
        Health::progressing(error.category(), message.clone())
    } else {
        Health::stalled(error.category(), message.clone())
    };
    let keep_ready = error.is_transient() && previous.conditions.is_true(conditions::READY);
    let deleting = project.meta().deletion_timestamp.is_some();
    let mut changed = false;
    if !keep_ready && !matches!(error, Error::Status(_)) {
        let mut status = previous.clone();
        status.observed_generation = project.metadata.generation;
        status.conditions = conditions::conditions_for(
            &health,
            project.metadata.generation,
            &previous.conditions,
            Timestamp::now(),
        );
        if status != previous {
            changed = true;
            if let Err(error) = apply_status(api, project, &status).await {
                tracing::warn!(%error, "could not write the failure into status");
            }
        }
    }
    if changed || first_failure {
        let action = if deleting { "Delete" } else { "Reconcile" };
        ctx.publish(
            project,
            EventType::Warning,
            error.category(),
            action,
            message,
        )
        .await;
    }
}

/// Runs the `DatabaseProject` controller until shutdown.
pub async fn run(
    ctx: Arc<Context>,
    watcher_config: watcher::Config,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    let projects: Api<DatabaseProject> = Api::all(ctx.client.clone());
    let secrets: Api<Secret> = Api::all(ctx.client.clone());
    let providers: Api<DatabaseProvider> = Api::all(ctx.client.clone());
    let controller = Controller::new(projects, watcher_config.clone());
    let store = controller.store();
    let owned_secrets = watcher::Config::default().labels(&format!(
        "{}={}",
        secret::MANAGED_BY_LABEL,
        secret::MANAGED_BY_VALUE
    ));
    controller
        .owns(secrets, owned_secrets)
        .watches(providers, watcher::Config::default(), move |provider| {
            let name = provider.name_any();
            store
                .state()
                .into_iter()
                .filter(|p| p.spec.provider_ref.name == name)
                .map(|p| ObjectRef::from_obj(&*p))
                .collect::<Vec<_>>()
        })
        .graceful_shutdown_on(shutdown)
        .run(
            reconcile,
            |obj, error, ctx| error_policy(CONTROLLER, &*obj, error, &ctx),
            ctx,
        )
        .for_each(|result| async move {
            if let Err(error) = result {
                tracing::debug!(%error, "reconcile loop");
            }
        })
        .await;
}
