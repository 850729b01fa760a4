//! Steps every vendor-object controller shares, written once.

use std::future::Future;

use kube::Resource;
use kube::runtime::events::EventType;

use super::error::{Error, Object};
use super::{Context, VendorCall};
use crate::providers::{Operation, Provider, ProviderError};

/// The last step of a cleanup: deletes vendor `object` `id` with `delete`
/// (only polled when the provider can do `operation`) and says what happened
/// in an Event. A provider that cannot delete leaves the object in place, with
/// a Warning saying so; an object already gone counts as deleted.
#[allow(clippy::too_many_arguments)]
pub async fn delete_at_vendor<K>(
    obj: &K,
    ctx: &Context,
    provider: &dyn Provider,
    object: Object,
    operation: Operation,
    id: &str,
    delete: impl Future<Output = Result<(), ProviderError>>,
) -> Result<(), Error>
where
    K: Resource<DynamicType = ()>,
{
    let (type_, reason, note) = if !provider.supports(operation) {
        (
            EventType::Warning,
            "NotDeletedByProvider",
            format!(
                "{} cannot delete a {object} through its API: vendor {object} {id} is left in place (set deletionPolicy: Retain to say so up front)",
                provider.api()
            ),
        )
    } else {
        match delete.await {
            Ok(()) => (
                EventType::Normal,
                "Deleted",
                format!("deleted vendor {object} {id}{}", object.deleted_with()),
            ),
            Err(e) if e.is_not_found() => (
                EventType::Normal,
                "Deleted",
                format!("vendor {object} {id} was already gone"),
            ),
            Err(source) => {
                return Err(VendorCall::new(format!("deleting {object} {id}"), source).into());
            }
        }
    };
    ctx.publish(obj, type_, reason, "Delete", note).await;
    Ok(())
}
