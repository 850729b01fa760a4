//! `dbops before-uninstall`: the Helm chart's pre-delete hook.
//!
//! The chart's emulator `DatabaseProvider`, its credentials Secret and the
//! emulator's volume carry `helm.sh/resource-policy: keep`, so `helm
//! uninstall` never deletes them while dbops resources still use them (with
//! no operator left to release the in-use finalizer they would stay
//! Terminating, and a later install would take over half-deleted objects).
//! This hook runs before the uninstall, while the operator still runs: when
//! no dbops resource is left anywhere, it deletes those kept objects itself,
//! so the uninstall leaves nothing behind. When some are left, it keeps them,
//! and a later `helm install` of the same release adopts them as they are.

use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Secret};
use kube::api::{Api, DeleteParams, ListParams};
use kube::{Client, Resource};
use serde::de::DeserializeOwned;

use crate::api::v1alpha1::{
    ByokCredential, DatabaseBranch, DatabaseProject, DatabaseProvider, DatabaseRole,
    DatabaseSnapshot, DatabaseSnapshotSchedule,
};
use crate::controllers::kube_error;

/// The chart's kept objects: the provider (cluster-scoped), and the Secret
/// and volume claim in the release namespace. `None`: not part of this release.
#[derive(Clone, Debug, Default)]
pub struct Kept {
    pub namespace: String,
    pub provider: Option<String>,
    pub secret: Option<String>,
    pub volume_claim: Option<String>,
}

/// What the hook did.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Nothing uses them: these were deleted (or already gone).
    Deleted(Vec<String>),
    /// dbops resources remain (this many, at least): everything was kept.
    KeptInUse(usize),
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Outcome::Deleted(names) if names.is_empty() => {
                write!(
                    f,
                    "no dbops resource is left and nothing was kept to delete"
                )
            }
            Outcome::Deleted(names) => write!(
                f,
                "no dbops resource is left, so the chart's kept objects were deleted: {}",
                names.join(", ")
            ),
            Outcome::KeptInUse(n) => write!(
                f,
                "{n} dbops resource(s) are left, so the chart's emulator provider, its Secret and \
                 volume are kept; a later helm install of this release takes them over"
            ),
        }
    }
}

/// Why the hook could not decide (it then deletes nothing).
#[derive(Debug, thiserror::Error)]
#[error("cannot {action}: {reason}")]
pub struct Error {
    action: String,
    reason: String,
}

impl Error {
    fn new(action: impl Into<String>, error: &kube::Error) -> Self {
        Self {
            action: action.into(),
            reason: kube_error::describe(error),
        }
    }
}

/// How many objects of kind `K` exist in the whole cluster, up to `limit`.
async fn count<K>(client: &Client, limit: u32) -> Result<usize, Error>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug,
{
    let api: Api<kube::core::PartialObjectMeta<K>> = Api::all(client.clone());
    let list = api
        .list_metadata(&ListParams::default().limit(limit))
        .await
        .map_err(|e| Error::new(format!("list {}", K::plural(&())), &e))?;
    Ok(list.items.len())
}

/// dbops resources left in the cluster (each kind counted up to 100).
pub async fn resources_left(client: &Client) -> Result<usize, Error> {
    Ok(count::<DatabaseProject>(client, 100).await?
        + count::<DatabaseBranch>(client, 100).await?
        + count::<DatabaseSnapshot>(client, 100).await?
        + count::<ByokCredential>(client, 100).await?
        + count::<DatabaseRole>(client, 100).await?
        + count::<DatabaseSnapshotSchedule>(client, 100).await?)
}

/// Deletes `name` through `api`; `Ok(false)` if it was already gone.
async fn delete<K>(api: &Api<K>, name: &str) -> Result<bool, Error>
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug,
{
    match api.delete(name, &DeleteParams::background()).await {
        Ok(_) => Ok(true),
        Err(e) if kube_error::not_found(&e) => Ok(false),
        Err(e) => Err(Error::new(format!("delete {name}"), &e)),
    }
}

/// Whether `name` is still there.
async fn exists<K>(api: &Api<K>, name: &str) -> Result<bool, Error>
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug,
{
    api.get_metadata_opt(name)
        .await
        .map(|found| found.is_some())
        .map_err(|e| Error::new(format!("read {name}"), &e))
}

/// The hook: deletes the kept objects when no dbops resource is left.
pub async fn before_uninstall(client: &Client, kept: &Kept) -> Result<Outcome, Error> {
    let left = resources_left(client).await?;
    if left > 0 {
        return Ok(Outcome::KeptInUse(left));
    }
    let mut deleted = Vec::new();
    if let Some(name) = &kept.provider {
        let api: Api<DatabaseProvider> = Api::all(client.clone());
        if delete(&api, name).await? {
            deleted.push(format!("DatabaseProvider {name}"));
        }
    }
    if let Some(name) = &kept.secret {
        let api: Api<Secret> = Api::namespaced(client.clone(), &kept.namespace);
        if delete(&api, name).await? {
            deleted.push(format!("Secret {}/{name}", kept.namespace));
        }
    }
    if let Some(name) = &kept.volume_claim {
        let api: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), &kept.namespace);
        if delete(&api, name).await? {
            deleted.push(format!("PersistentVolumeClaim {}/{name}", kept.namespace));
        }
    }
    // The operator still runs: it releases its in-use finalizer, if one is
    // still on them, before the uninstall removes it.
    wait_gone(client, kept, GONE_WITHIN).await?;
    Ok(Outcome::Deleted(deleted))
}

/// How long [`before_uninstall`] waits for the deleted objects to go.
pub const GONE_WITHIN: std::time::Duration = std::time::Duration::from_secs(60);

/// Waits until the kept provider and Secret are gone (their in-use finalizer released).
async fn wait_gone(client: &Client, kept: &Kept, within: std::time::Duration) -> Result<(), Error> {
    let deadline = tokio::time::Instant::now() + within;
    let providers: Api<DatabaseProvider> = Api::all(client.clone());
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &kept.namespace);
    loop {
        let mut waiting = Vec::new();
        if let Some(name) = &kept.provider
            && exists(&providers, name).await?
        {
            waiting.push(format!("DatabaseProvider {name}"));
        }
        if let Some(name) = &kept.secret
            && exists(&secrets, name).await?
        {
            waiting.push(format!("Secret {}/{name}", kept.namespace));
        }
        if waiting.is_empty() {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(Error {
                action: format!("finish deleting {}", waiting.join(", ")),
                reason: "they are still there; their in-use finalizer was not released".into(),
            });
        }
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
}
