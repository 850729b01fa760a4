//! `DatabaseProvider`: checks that the provider is usable (its Secret, its
//! endpoint, its key) and reconciles account-level settings, today the infrai
//! BYOK routing policy. Cluster-scoped, no finalizer: deleting a provider
//! touches nothing at the vendor.

use std::sync::Arc;
use std::time::Instant;

use futures::StreamExt;
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams};
use kube::core::DeserializeGuard;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::EventType;
use kube::runtime::watcher;
use tracing::Instrument;

use crate::api::v1alpha1::{ByokPolicyMode, DatabaseProvider, DatabaseProviderStatus, ProviderRef};
use crate::controllers::protection::LookupError;
use crate::controllers::runtime::conditions::{self, Health, reason};
use crate::controllers::runtime::{
    Context, FIELD_MANAGER, ReconcileError, VendorCall, decode, error_policy, kube_error,
    object_key,
};
use crate::providers::Operation;
use crate::providers::byok::{PolicyScope, RoutingPolicy};

/// Name of this controller in metrics and logs.
pub const CONTROLLER: &str = "databaseprovider";

/// Everything that can stop a `DatabaseProvider` reconcile.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Lookup(#[from] LookupError),
    #[error(transparent)]
    Vendor(#[from] VendorCall),
    #[error("{api} has no BYOK routing policy; {hint}")]
    PolicyUnsupported { api: String, hint: &'static str },
    #[error("could not write status: {}", kube_error::describe(.0))]
    Status(#[source] kube::Error),
}

impl ReconcileError for Error {
    fn category(&self) -> &'static str {
        match self {
            Error::Lookup(e) => e.category(),
            Error::Vendor(e) => e.source.category(),
            Error::PolicyUnsupported { .. } => reason::UNSUPPORTED_BY_PROVIDER,
            Error::Status(_) => "KubernetesApiError",
        }
    }
    fn is_transient(&self) -> bool {
        match self {
            Error::Lookup(e) => e.is_transient(),
            Error::Vendor(e) => e.source.is_transient(),
            Error::PolicyUnsupported { .. } => false,
            Error::Status(_) => true,
        }
    }
    fn retry_after(&self) -> Option<std::time::Duration> {
        match self {
            Error::Vendor(e) => e.source.retry_after(),
            _ => None,
        }
    }
}

/// The routing policy `spec.byokPolicy` asks for.
pub fn desired_policy(provider: &DatabaseProvider) -> Option<RoutingPolicy> {
    let spec = provider.spec.byok_policy.as_ref()?;
    Some(RoutingPolicy {
        mode: spec.mode,
        scope: spec
            .scope
            .as_ref()
            .map(|s| PolicyScope {
                capability: s.capability.clone(),
                module: s.module.clone(),
            })
            .filter(|s| s.capability.is_some() || s.module.is_some()),
    })
}

/// The policy mode as the CRD spells it.
fn mode_name(mode: ByokPolicyMode) -> &'static str {
    match mode {
        ByokPolicyMode::ByokOnly => "byok_only",
        ByokPolicyMode::ByokThenPool => "byok_then_pool",
    }
}

async fn apply(provider: &DatabaseProvider, ctx: &Context) -> Result<String, Error> {
    let client = ctx
        .provider(&ProviderRef {
            name: provider.name_any(),
        })
        .await?;
    let Some(desired) = desired_policy(provider) else {
        return Ok(format!("{} provider is configured", client.api()));
    };
    let Some(byok) = client.byok() else {
        return Err(Error::PolicyUnsupported {
            api: client.api().to_string(),
            hint: client
                .unsupported_hint(Operation::ByokPolicy)
                .unwrap_or("remove spec.byokPolicy, or use a provider whose API offers BYOK"),
        });
    };
    let current = byok
        .routing_policy()
        .await
        .map_err(|e| VendorCall::new("reading the BYOK routing policy", e))?;
    if current != desired {
        byok.set_routing_policy(&desired)
            .await
            .map_err(|e| VendorCall::new("setting the BYOK routing policy", e))?;
        ctx.publish(
            provider,
            EventType::Normal,
            "PolicyApplied",
            "Reconcile",
            format!("BYOK routing policy set to {}", mode_name(desired.mode)),
        )
        .await;
    }
    Ok(format!(
        "{} provider is configured; BYOK routing policy is {}",
        client.api(),
        mode_name(desired.mode)
    ))
}

async fn write_status(
    api: &Api<DatabaseProvider>,
    provider: &DatabaseProvider,
    health: &Health,
) -> Result<(), Error> {
    let previous = provider.status.clone().unwrap_or_default();
    let generation = provider.metadata.generation;
    let status = DatabaseProviderStatus {
        observed_generation: generation,
        conditions: conditions::conditions_for(
            health,
            generation,
            &previous.conditions,
            Timestamp::now(),
        ),
    };
    if status == previous {
        return Ok(());
    }
    let body = serde_json::json!({ "apiVersion": "dbops.dev/v1alpha1", "kind": "DatabaseProvider", "status": status });
    api.patch_status(
        &provider.name_any(),
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&body),
    )
    .await
    .map(|_| ())
    .map_err(Error::Status)
}

/// Reconciles one `DatabaseProvider`.
pub async fn reconcile(
    guard: Arc<DeserializeGuard<DatabaseProvider>>,
    ctx: Arc<Context>,
) -> Result<Action, Error> {
    let provider = match &guard.0 {
        Ok(provider) => provider,
        Err(invalid) => {
            return Ok(decode::handle_invalid(&*guard, invalid, CONTROLLER, &ctx).await);
        }
    };
    let started = Instant::now();
    let span =
        tracing::info_span!("reconcile", controller = CONTROLLER, name = %provider.name_any());
    let result = crate::providers::http::reconcile_scope(async {
        let api: Api<DatabaseProvider> = Api::all(ctx.client.clone());
        if provider.metadata.deletion_timestamp.is_some() {
            // In-use protection holds it until its dependents are cleaned up;
            // nothing to configure at the vendor meanwhile.
            let health = Health::progressing(
                reason::DELETING,
                "being deleted; it stays until the resources that use it are cleaned up at the vendor",
            );
            write_status(&api, provider, &health).await?;
            return Ok(Action::await_change());
        }
        let outcome = apply(provider, &ctx).await;
        if let Err(e) = &outcome
            && e.throttled().is_some()
        {
            // Nothing was sent; requeued quietly once the budget allows.
            return outcome.map(|_| Action::await_change());
        }
        let health = match &outcome {
            Ok(message) => Health::ready(message.clone()),
            Err(e) if e.is_transient() => Health::progressing(e.category(), e.to_string()),
            Err(e) => Health::stalled(e.category(), e.to_string()),
        };
        write_status(&api, provider, &health).await?;
        match outcome {
            Ok(_) => {
                ctx.reset_failures(&object_key(provider));
                Ok(Action::requeue(ctx.jittered_resync()))
            }
            Err(e) => Err(e),
        }
    })
    .instrument(span)
    .await;
    ctx.metrics.observe_reconcile(CONTROLLER, started.elapsed());
    result
}

/// Runs the `DatabaseProvider` controller until `shutdown` resolves.
pub async fn run(
    ctx: Arc<Context>,
    watcher_config: watcher::Config,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    let controller = Controller::new(
        Api::<DeserializeGuard<DatabaseProvider>>::all(ctx.client.clone()),
        watcher_config,
    );
    ctx.readiness.track(controller.store());
    controller
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
