//! `DatabaseProject`: create (or adopt, or restore from a snapshot) a vendor
//! project, write its connection Secret, report kstatus conditions, and delete
//! or retain it.

use async_trait::async_trait;
use k8s_openapi::api::core::v1::Secret;
use kube::api::Api;
use kube::core::DeserializeGuard;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::EventType;
use kube::runtime::watcher;
use kube::{Resource, ResourceExt};

use super::conditions::{self, Health, reason};
use super::reconciler::{Managed, Reconcile, apply_status, apply_status_if_changed};
use super::rotation::{self};
use super::secret::{self, ConnectionDetails, SecretWrite};
use super::{Context, KubeCall, ProviderHandle, Scope, VendorCall, dependents, pipeline};
use crate::api::v1alpha1::{
    ByokCredential, DatabaseProject, DatabaseProjectStatus, DatabaseProvider, DatabaseSnapshot,
    DeletionPolicy, ProjectMode,
};
use crate::providers::{
    Operation, Password, ProjectRequest, Provider, ResourceState, RestoreProgress, RestoreRequest,
    RotationTarget, VendorProject,
};

/// Name of this controller in metrics and logs.
pub const CONTROLLER: &str = "databaseproject";

pub use super::error::{Error, Object};

crate::impl_managed!(DatabaseProject, DatabaseProjectStatus, CONTROLLER);

/// The idempotency key of one of this resource's create calls: derived from its
/// UID, so a retry after a crash returns what the first call made.
pub fn idempotency_key<K: Resource>(obj: &K, operation: &str) -> Option<String> {
    obj.meta()
        .uid
        .as_ref()
        .map(|uid| format!("dbops-{uid}-{operation}"))
}

/// Name of the project at the vendor: `spec.projectName`, else `<namespace>-<name>`
/// with dots made dashes, cut to 63 characters.
pub fn vendor_project_name(project: &DatabaseProject) -> String {
    if let Some(name) = &project.spec.project_name {
        return name.clone();
    }
    let full = format!(
        "{}-{}",
        project.namespace().unwrap_or_default(),
        project.name_any()
    )
    // Dots are legal in Kubernetes names but not in every vendor's (Supabase).
    .replace('.', "-");
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
pub fn project_request(project: &DatabaseProject, db_password: Option<Password>) -> ProjectRequest {
    let spec = &project.spec;
    ProjectRequest {
        db_password,
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

/// The restore request for this resource, from vendor snapshot `snapshot_id`.
pub fn restore_request(project: &DatabaseProject, snapshot_id: &str) -> RestoreRequest {
    RestoreRequest {
        snapshot_id: snapshot_id.to_string(),
        new_name: Some(vendor_project_name(project)),
    }
}

/// `previous` updated with what the vendor reports of `vendor` (pure).
pub fn status_with_vendor(
    previous: &DatabaseProjectStatus,
    vendor: &VendorProject,
    secret_name: Option<String>,
) -> DatabaseProjectStatus {
    DatabaseProjectStatus {
        project_id: Some(vendor.id.clone()),
        project_name: Some(vendor.name.clone())
            .filter(|n| !n.is_empty())
            .or(previous.project_name.clone()),
        region: vendor.region.clone().or(previous.region.clone()),
        created_at: vendor.created_at.clone().or(previous.created_at.clone()),
        connection_secret_name: secret_name.or(previous.connection_secret_name.clone()),
        ..previous.clone()
    }
}

/// What a create step came to: a vendor project, or a reason to wait.
enum Created {
    Project(VendorProject),
    Waiting(Health),
}

#[async_trait]
impl Reconcile for DatabaseProject {
    type Error = Error;

    async fn apply(&self, api: &Api<Self>, ctx: &Context) -> Result<Action, Error> {
        let previous = self.current_status();
        let provider = ctx.provider(&self.spec.provider_ref).await?;

        let mut previous = previous;
        let vendor = if let Some(id) = &previous.project_id {
            match provider.get_project(id).await {
                Ok(vendor) => vendor,
                Err(e) if e.is_not_found() => {
                    return Err(Error::VendorObjectDeleted {
                        object: Object::Project,
                        id: id.clone(),
                    });
                }
                Err(source) => {
                    return Err(VendorCall::new(format!("reading project {id}"), source).into());
                }
            }
        } else if let Some(id) = &self.spec.external_id {
            let vendor = match provider.get_project(id).await {
                Ok(vendor) => vendor,
                Err(e) if e.is_not_found() => {
                    return Err(Error::ExternalNotFound {
                        object: Object::Project,
                        id: id.clone(),
                    });
                }
                Err(source) => {
                    return Err(VendorCall::new(format!("reading project {id}"), source).into());
                }
            };
            ctx.publish(
                self,
                EventType::Normal,
                "Adopted",
                "Adopt",
                format!("adopted existing vendor project {}", vendor.id),
            )
            .await;
            vendor
        } else {
            match self.create(api, &mut previous, &provider, ctx).await? {
                Created::Project(vendor) => vendor,
                Created::Waiting(health) => {
                    // Build on what create() may have written (e.g. a restore handle).
                    let status = self.status_with_health(&previous, &health);
                    apply_status_if_changed(api, self, &previous, &status)
                        .await
                        .map_err(KubeCall::Status)?;
                    // A running restore job has no watch event to wake us: poll it.
                    let delay = if status.restore_handle.is_some() {
                        ctx.settings.provisioning_poll
                    } else {
                        ctx.jittered_resync()
                    };
                    return Ok(Action::requeue(delay));
                }
            }
        };

        match &vendor.state {
            ResourceState::Ready => {}
            ResourceState::Provisioning(state) => {
                let health = Health::progressing(
                    reason::WAITING_FOR_VENDOR,
                    format!("the vendor reports the project as {state}"),
                );
                let status =
                    self.status_with_health(&status_with_vendor(&previous, &vendor, None), &health);
                apply_status_if_changed(api, self, &previous, &status)
                    .await
                    .map_err(KubeCall::Status)?;
                return Ok(Action::requeue(ctx.settings.provisioning_poll));
            }
            ResourceState::Failed(state) => {
                return Err(Error::VendorFailed {
                    object: Object::Project,
                    id: vendor.id.clone(),
                    state: state.clone(),
                });
            }
        }

        // Save the id before anything else can fail, so it is never lost.
        let previous = if previous.project_id.as_deref() != Some(vendor.id.as_str()) {
            let health = Health::progressing(
                reason::CREATING,
                "project exists at the vendor; writing the connection Secret",
            );
            let status =
                self.status_with_health(&status_with_vendor(&previous, &vendor, None), &health);
            apply_status(api, self, &status)
                .await
                .map_err(KubeCall::Status)?;
            status
        } else {
            previous
        };

        let secret_name = connection_secret_name(self);
        let details =
            ConnectionDetails::parse(vendor.connection_uri.as_ref(), vendor.pooled_uri.as_ref())
                .map_err(|source| Error::Connection {
                    object: Object::Project,
                    id: vendor.id.clone(),
                    source,
                })?;
        // Vendors that never return the password (the operator chose it): keep ours.
        let details = if details.password.is_empty() {
            match secret::read_owned_key(&ctx.client, self, &secret_name, secret::keys::PASSWORD)
                .await?
            {
                Some(password) => details.with_password(&password),
                None => details,
            }
        } else {
            details
        };
        let written =
            secret::ensure_secret(&ctx.client, self, &secret_name, details.to_data()).await?;
        if let Some(old) = previous
            .connection_secret_name
            .as_deref()
            .filter(|old| *old != secret_name)
        {
            secret::delete_owned_secret(&ctx.client, self, old).await?;
        }

        let health = Health::ready(format!(
            "project {} is ready; connection details in Secret {secret_name}",
            vendor.id
        ));
        let mut status = self.status_with_health(
            &status_with_vendor(&previous, &vendor, Some(secret_name.clone())),
            &health,
        );
        let created_at = self
            .metadata
            .creation_timestamp
            .as_ref()
            .map(|t| t.0.to_string());
        let outcome = rotation::reconcile(
            self,
            ctx,
            provider.as_ref(),
            rotation::Input {
                target: RotationTarget::Project {
                    id: vendor.id.clone(),
                },
                secret_name: &secret_name,
                details: &details,
                spec: self.spec.credential_rotation.as_ref(),
                state: previous.credential_rotation.as_ref(),
                created_at: created_at.as_deref(),
            },
        )
        .await?;
        let poll = rotation::record(
            outcome,
            &mut status.credential_rotation,
            &mut status.conditions,
            self.metadata.generation,
            ctx,
            self,
        )
        .await;
        let was_ready = previous.conditions.is_true(conditions::READY);
        apply_status_if_changed(api, self, &previous, &status)
            .await
            .map_err(KubeCall::Status)?;
        if !was_ready {
            ctx.publish(
                self,
                EventType::Normal,
                "Ready",
                "Reconcile",
                format!("project {} is ready", vendor.id),
            )
            .await;
        } else if written == SecretWrite::Written {
            ctx.publish(
                self,
                EventType::Normal,
                "SecretUpdated",
                "Reconcile",
                format!("connection Secret {secret_name} brought back in sync"),
            )
            .await;
        }
        let next_rotation = rotation::next_due(
            self.spec.credential_rotation.as_ref(),
            status.credential_rotation.as_ref(),
            created_at.as_deref(),
            k8s_openapi::jiff::Timestamp::now(),
        );
        let delay = [Some(ctx.jittered_resync()), poll, next_rotation]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or(ctx.settings.resync_interval);
        Ok(Action::requeue(
            delay.max(std::time::Duration::from_millis(100)),
        ))
    }

    async fn cleanup(&self, _api: &Api<Self>, ctx: &Context) -> Result<Action, Error> {
        if self.spec.deletion_policy == DeletionPolicy::Retain {
            let id = self
                .status
                .as_ref()
                .and_then(|s| s.project_id.clone())
                .unwrap_or_default();
            ctx.publish(
                self,
                EventType::Normal,
                "Retained",
                "Delete",
                format!("deletionPolicy Retain: vendor project {id} left in place"),
            )
            .await;
            return Ok(Action::await_change());
        }
        let status = self.current_status();
        let left = match (&status.project_id, &self.spec.external_id) {
            (Some(id), _) | (None, Some(id)) => format!("vendor project {id}"),
            (None, None) if status.create_requested => {
                "the vendor project an unconfirmed create may have made".to_string()
            }
            // Nothing was ever sent to the vendor.
            (None, None) => return Ok(Action::await_change()),
        };
        let Some(provider) = ctx
            .provider_for_cleanup(self, &self.spec.provider_ref, &left)
            .await?
        else {
            return Ok(Action::await_change());
        };
        let id = match (&status.project_id, &self.spec.external_id) {
            (Some(id), _) => Some(id.clone()),
            (None, Some(external)) => Some(external.clone()),
            (None, None) if status.create_requested => {
                self.replay_create(&status, provider.as_ref(), ctx).await?
            }
            (None, None) => None,
        };
        if let Some(id) = id {
            pipeline::delete_at_vendor(
                self,
                ctx,
                provider.as_ref(),
                Object::Project,
                Operation::ProjectDelete,
                &id,
                provider.delete_project(&id),
            )
            .await?;
        }
        Ok(Action::await_change())
    }
}

impl DatabaseProject {
    /// Creates the vendor project, or restores it from a snapshot.
    ///
    /// `createRequested` (and the snapshot id of a restore) is saved first, so that
    /// a delete before the id is saved can still find the project by replaying the
    /// call with the same idempotency key. `previous` is updated with what was written.
    async fn create(
        &self,
        api: &Api<Self>,
        previous: &mut DatabaseProjectStatus,
        provider: &ProviderHandle,
        ctx: &Context,
    ) -> Result<Created, Error> {
        if let Some(waiting) = self.byok_gate(ctx).await? {
            return Ok(Created::Waiting(waiting));
        }
        let (operation, snapshot_id) = match &self.spec.restore_from {
            None => (Operation::ProjectCreate, None),
            Some(source) => match self.snapshot_to_restore(source, previous, ctx).await? {
                Ok(snapshot_id) => (Operation::SnapshotRestore, Some(snapshot_id)),
                Err(waiting) => return Ok(Created::Waiting(waiting)),
            },
        };
        if !provider.supports(operation) {
            return Err(Error::Unsupported {
                provider: provider.api().to_string(),
                operation,
                hint: provider
                    .unsupported_hint(operation)
                    .unwrap_or("adopt an existing project with spec.externalId instead"),
            });
        }
        if !previous.create_requested {
            // Refuses a provider that is being deleted (and a namespace being
            // deleted), and protects the provider and its Secret before
            // anything exists at the vendor.
            let namespace = self.namespace().ok_or(Error::InvalidObject)?;
            ctx.prepare_create(provider, &namespace).await?;
            let message = match &snapshot_id {
                Some(id) => format!(
                    "restoring snapshot {id} into a new project at {}",
                    provider.api()
                ),
                None => format!("creating the project at {}", provider.api()),
            };
            let mut status =
                self.status_with_health(previous, &Health::progressing(reason::CREATING, message));
            status.create_requested = true;
            status.restored_from_snapshot_id = snapshot_id.clone();
            apply_status(api, self, &status)
                .await
                .map_err(KubeCall::Status)?;
            *previous = status;
        }
        let progress = match &previous.restore_handle {
            Some(handle) => provider
                .restore_status(handle)
                .await
                .map_err(|e| VendorCall::new(format!("reading restore {handle}"), e))?,
            None => {
                self.call_create(snapshot_id.as_deref(), provider.as_ref(), ctx, false)
                    .await?
            }
        };
        let vendor = match progress {
            RestoreProgress::Done(vendor) => vendor,
            RestoreProgress::Failed(state) => {
                return Err(Error::VendorFailed {
                    object: Object::Project,
                    id: previous.restore_handle.clone().unwrap_or_default(),
                    state,
                });
            }
            RestoreProgress::Pending { handle, state } => {
                if previous.restore_handle.as_deref() != Some(handle.as_str()) {
                    let mut status = previous.clone();
                    status.restore_handle = Some(handle.clone());
                    apply_status(api, self, &status)
                        .await
                        .map_err(KubeCall::Status)?;
                    *previous = status;
                }
                return Ok(Created::Waiting(Health::progressing(
                    reason::WAITING_FOR_VENDOR,
                    format!("the vendor is restoring (restore {handle} is {state})"),
                )));
            }
        };
        let what = match &snapshot_id {
            Some(id) => format!("restored snapshot {id} into vendor project {}", vendor.id),
            None => format!("created vendor project {}", vendor.id),
        };
        tracing::info!(project_id = %vendor.id, "{what}");
        ctx.publish(self, EventType::Normal, "Created", "Create", what)
            .await;
        Ok(Created::Project(vendor))
    }

    /// The create or restore call itself, with this resource's idempotency key.
    /// An asynchronous restore answers `Pending` with a handle to poll. A
    /// `replay` (during cleanup) writes nothing to Kubernetes.
    async fn call_create(
        &self,
        snapshot_id: Option<&str>,
        provider: &dyn Provider,
        ctx: &Context,
        replay: bool,
    ) -> Result<RestoreProgress, Error> {
        match snapshot_id {
            None => {
                let key = idempotency_key(self, "project-create").ok_or(Error::InvalidObject)?;
                let password = self.operator_password(provider, ctx, replay).await?;
                provider
                    .create_project(&project_request(self, password), &key)
                    .await
                    .map(RestoreProgress::Done)
                    .map_err(|e| VendorCall::new("creating the project", e).into())
            }
            Some(snapshot_id) => {
                let key = idempotency_key(self, "project-restore").ok_or(Error::InvalidObject)?;
                provider
                    .restore_snapshot(&restore_request(self, snapshot_id), &key)
                    .await
                    .map_err(|e| {
                        VendorCall::new(
                            format!("restoring snapshot {snapshot_id} into a new project"),
                            e,
                        )
                        .into()
                    })
            }
        }
    }

    /// Replays the create (or restore) whose result was never saved, to learn the id.
    async fn replay_create(
        &self,
        status: &DatabaseProjectStatus,
        provider: &dyn Provider,
        ctx: &Context,
    ) -> Result<Option<String>, Error> {
        let progress = match &status.restore_handle {
            Some(handle) => provider
                .restore_status(handle)
                .await
                .map_err(|e| VendorCall::new(format!("reading restore {handle}"), e))?,
            None => {
                self.call_create(
                    status.restored_from_snapshot_id.as_deref(),
                    provider,
                    ctx,
                    true,
                )
                .await?
            }
        };
        match progress {
            RestoreProgress::Done(vendor) => Ok(Some(vendor.id)),
            RestoreProgress::Failed(_) => Ok(None),
            RestoreProgress::Pending { handle, .. } => Err(Error::RestoreInProgress { handle }),
        }
    }

    /// The password the operator chose for providers that take one on create. It
    /// lives only in the connection Secret, written before the create call so a
    /// crash never loses it; a retry reads it back from there.
    ///
    /// A `replay` during cleanup only learns the id of what a lost create made
    /// (by idempotency key or name), which is deleted right after: it never
    /// writes the Secret (in a namespace being deleted it could not), and a
    /// throwaway password does when there is none to read.
    async fn operator_password(
        &self,
        provider: &dyn Provider,
        ctx: &Context,
        replay: bool,
    ) -> Result<Option<Password>, Error> {
        if !provider.needs_operator_password() {
            return Ok(None);
        }
        let name = connection_secret_name(self);
        if let Some(existing) =
            secret::read_owned_key(&ctx.client, self, &name, secret::keys::PASSWORD).await?
        {
            return Ok(Some(Password::new(existing)));
        }
        let password = Password::generate();
        if replay {
            return Ok(Some(password));
        }
        let data = std::collections::BTreeMap::from([(
            secret::keys::PASSWORD.to_string(),
            k8s_openapi::ByteString(password.expose().as_bytes().to_vec()),
        )]);
        secret::ensure_secret(&ctx.client, self, &name, data).await?;
        Ok(Some(password))
    }

    /// With `mode: byok`, the reason to wait until the named `ByokCredential` is
    /// Ready (for the same vendor and provider); `None` when there is none.
    async fn byok_gate(&self, ctx: &Context) -> Result<Option<Health>, Error> {
        if self.spec.mode != Some(ProjectMode::Byok) {
            return Ok(None);
        }
        let Some(credential_ref) = &self.spec.byok_credential_ref else {
            return Err(Error::ByokMismatch {
                credential: String::new(),
                problem: "is required with mode: byok (spec.byokCredentialRef)".to_string(),
            });
        };
        let namespace = self.namespace().ok_or(Error::InvalidObject)?;
        let credentials: Api<ByokCredential> = Api::namespaced(ctx.client.clone(), &namespace);
        let name = &credential_ref.name;
        let waiting = |message: String| {
            Ok(Some(Health::progressing(
                reason::WAITING_FOR_CREDENTIAL,
                message,
            )))
        };
        let Some(credential) = credentials.get_opt(name).await.map_err(KubeCall::Read)? else {
            return waiting(format!("ByokCredential {name} does not exist yet"));
        };
        if self.spec.vendor.as_deref() != Some(credential.spec.vendor.as_str()) {
            return Err(Error::ByokMismatch {
                credential: name.clone(),
                problem: format!(
                    "is for vendor {:?}, but this project pins vendor {:?}",
                    credential.spec.vendor,
                    self.spec.vendor.as_deref().unwrap_or_default()
                ),
            });
        }
        if credential.spec.provider_ref != self.spec.provider_ref {
            return Err(Error::ByokMismatch {
                credential: name.clone(),
                problem: format!(
                    "is registered through provider {:?}, not {:?}",
                    credential.spec.provider_ref.name, self.spec.provider_ref.name
                ),
            });
        }
        if !credential.is_ready() {
            return waiting(format!("waiting for ByokCredential {name} to be Ready"));
        }
        Ok(None)
    }

    /// The vendor snapshot id to restore, or the reason to wait for it.
    async fn snapshot_to_restore(
        &self,
        source: &crate::api::v1alpha1::RestoreSource,
        previous: &DatabaseProjectStatus,
        ctx: &Context,
    ) -> Result<Result<String, Health>, Error> {
        if let Some(id) = &previous.restored_from_snapshot_id {
            return Ok(Ok(id.clone()));
        }
        if let Some(id) = &source.snapshot_id {
            return Ok(Ok(id.clone()));
        }
        let Some(snapshot_ref) = &source.snapshot_ref else {
            return Err(Error::InvalidObject);
        };
        let namespace = self.namespace().ok_or(Error::InvalidObject)?;
        let snapshots: Api<DatabaseSnapshot> = Api::namespaced(ctx.client.clone(), &namespace);
        let waiting = |message: String| {
            Ok(Err(Health::progressing(
                reason::WAITING_FOR_SNAPSHOT,
                message,
            )))
        };
        let Some(snapshot) = snapshots
            .get_opt(&snapshot_ref.name)
            .await
            .map_err(KubeCall::Read)?
        else {
            return waiting(format!(
                "DatabaseSnapshot {} does not exist yet",
                snapshot_ref.name
            ));
        };
        let snapshot_id = snapshot.status.as_ref().and_then(|s| s.snapshot_id.clone());
        let (Some(snapshot_id), true) = (snapshot_id, snapshot.is_ready()) else {
            return waiting(format!(
                "waiting for DatabaseSnapshot {} to be Ready",
                snapshot_ref.name
            ));
        };
        if let Some(snapshot_provider) = snapshot
            .status
            .as_ref()
            .and_then(|s| s.provider_name.clone())
            && snapshot_provider != self.spec.provider_ref.name
        {
            return Err(Error::SnapshotProviderMismatch {
                snapshot: snapshot_ref.name.clone(),
                snapshot_provider,
                provider: self.spec.provider_ref.name.clone(),
            });
        }
        Ok(Ok(snapshot_id))
    }
}

/// The `DatabaseProject` controller, ready to run with [`drive`]. Providers
/// and snapshots are watched, so a project waiting for either starts at once.
pub fn controller(
    ctx: &Context,
    scope: &Scope,
    watcher_config: watcher::Config,
) -> Controller<DeserializeGuard<DatabaseProject>> {
    let client = ctx.client.clone();
    let controller = Controller::new(
        scope.api::<DeserializeGuard<DatabaseProject>>(client.clone()),
        watcher_config.clone(),
    );
    let by_provider = dependents(controller.store(), |p: &DatabaseProject| {
        Some(p.spec.provider_ref.name.as_str())
    });
    let by_snapshot = dependents(controller.store(), |p: &DatabaseProject| {
        p.spec
            .restore_from
            .as_ref()?
            .snapshot_ref
            .as_ref()
            .map(|r| r.name.as_str())
    });
    let by_credential = dependents(controller.store(), |p: &DatabaseProject| {
        p.spec.byok_credential_ref.as_ref().map(|r| r.name.as_str())
    });
    controller
        .owns(
            scope.api::<Secret>(client.clone()),
            secret::owned_secrets_watch(),
        )
        .watches(
            Api::<DeserializeGuard<DatabaseProvider>>::all(client.clone()),
            watcher::Config::default(),
            by_provider,
        )
        .watches(
            scope.api::<DeserializeGuard<DatabaseSnapshot>>(client.clone()),
            watcher_config.clone(),
            by_snapshot,
        )
        .watches(
            scope.api::<DeserializeGuard<ByokCredential>>(client),
            watcher_config,
            by_credential,
        )
}
