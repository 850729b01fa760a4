//! Objects the operator cannot decode.
//!
//! The API server admits anything its schema allows; an object that the Rust
//! types refuse anyway (an older schema, a value out of range, a hand-edited
//! status) must not stop every other object of its kind. Every watch and every
//! read of a dbops kind therefore goes through kube's [`DeserializeGuard`]
//! (the pattern from Stackable's operators): a list with one bad object still
//! decodes, and the bad object is reported on its own, as a Warning Event and
//! `Stalled` with reason `InvalidSpec`.
//!
//! Messages name the field and the problem, never the object's body.

use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, ApiResource, DynamicObject, Patch, PatchParams};
use kube::core::{DeserializeGuard, error_boundary::InvalidObject};
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::{Resource, ResourceExt};
use serde::de::DeserializeOwned;

use super::conditions::{self, Health, reason};
use super::context::{Context, FIELD_MANAGER};
use super::policy::object_key;
use crate::api::v1alpha1::Conditions;

/// Longest decode problem quoted in a message.
const MAX_PROBLEM_LEN: usize = 200;

/// Reads `name` through a [`DeserializeGuard`]: `Ok(None)` when it does not
/// exist, `Ok(Some(Err(_)))` when it exists but cannot be decoded.
pub async fn get_guarded<K>(
    api: &Api<DeserializeGuard<K>>,
    name: &str,
) -> Result<Option<Result<K, Box<InvalidObject>>>, kube::Error>
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug,
    K::DynamicType: Default,
{
    Ok(api
        .get_opt(name)
        .await?
        .map(|guard| guard.0.map_err(Box::new)))
}

/// Where and why `raw` does not decode as a `K`: `spec.testInterval: ...`.
/// String values are left out of the text, so nothing of the object's content
/// beyond field names, numbers and allowed values is repeated.
pub fn problem<K: DeserializeOwned>(raw: &serde_json::Value) -> Option<String> {
    match serde_path_to_error::deserialize::<_, K>(raw) {
        Ok(_) => None,
        Err(error) => {
            let path = error.path().to_string();
            let inner = scrub(&error.into_inner().to_string());
            Some(if path.is_empty() || path == "." {
                inner
            } else {
                format!("{path}: {inner}")
            })
        }
    }
}

/// `message` without double-quoted string literals, cut to a bounded length.
pub fn scrub(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut in_quotes = false;
    for c in message.chars() {
        match c {
            '"' => {
                if !in_quotes {
                    out.push('…');
                }
                in_quotes = !in_quotes;
            }
            _ if in_quotes => {}
            c => out.push(c),
        }
    }
    let out = out.replace("string …", "a string");
    if out.chars().count() > MAX_PROBLEM_LEN {
        let mut cut: String = out.chars().take(MAX_PROBLEM_LEN).collect();
        cut.push('…');
        cut
    } else {
        out
    }
}

/// The human message for an object of `kind` that cannot be decoded.
pub fn invalid_message(kind: &str, problem: &str, deleting: bool) -> String {
    let tail = if deleting {
        "fix that field so the operator can finish deleting it"
    } else {
        "fix that field; other objects are not affected"
    };
    format!("The operator cannot read this {kind} ({problem}); {tail}.")
}

/// Reports an object that cannot be decoded: `Stalled`/`InvalidSpec` in status
/// (where the status subresource can be written) and a Warning Event, once per
/// generation and problem. Never fails: the next change to the object brings it
/// back here or, once fixed, to its controller.
pub async fn report_invalid<K>(guard: &DeserializeGuard<K>, invalid: &InvalidObject, ctx: &Context)
where
    K: Resource<DynamicType = ()> + DeserializeOwned + Clone + std::fmt::Debug,
{
    let kind = K::kind(&()).into_owned();
    let name = guard.name_any();
    let resource = ApiResource::erase::<K>(&());
    let api: Api<DynamicObject> = match guard.namespace() {
        Some(ns) => Api::namespaced_with(ctx.client.clone(), &ns, &resource),
        None => Api::all_with(ctx.client.clone(), &resource),
    };
    let raw = match api.get_opt(&name).await {
        Ok(Some(raw)) => serde_json::to_value(&raw).ok(),
        Ok(None) => return,
        Err(error) => {
            tracing::warn!(kind, name, error = %super::kube_error::describe(&error), "could not read an object that failed to decode");
            None
        }
    };
    let problem = raw
        .as_ref()
        .and_then(problem::<K>)
        .unwrap_or_else(|| scrub(&invalid.error));
    let deleting = guard.meta().deletion_timestamp.is_some();
    let message = invalid_message(&kind, &problem, deleting);
    tracing::warn!(
        kind,
        name,
        problem,
        "object cannot be decoded; reporting it as InvalidSpec"
    );

    if !write_invalid_status(&api, guard, raw.as_ref(), &message).await {
        // Already reported for this generation and problem.
        return;
    }
    ctx.publish(
        guard,
        EventType::Warning,
        reason::INVALID_SPEC,
        "Reconcile",
        message,
    )
    .await;
}

/// Writes `Stalled`/`InvalidSpec` with `message` into the status of the
/// object (`raw` as read), unless it already says so. Returns whether it
/// was new (the write itself is best effort).
async fn write_invalid_status<K>(
    api: &Api<DynamicObject>,
    guard: &DeserializeGuard<K>,
    raw: Option<&serde_json::Value>,
    message: &str,
) -> bool
where
    K: Resource<DynamicType = ()> + DeserializeOwned + Clone + std::fmt::Debug,
{
    let generation = guard.meta().generation;
    let previous: Conditions = raw
        .and_then(|r| r.pointer("/status/conditions"))
        .and_then(|c| serde_json::from_value(c.clone()).ok())
        .unwrap_or_default();
    let health = Health::stalled(reason::INVALID_SPEC, message);
    let next = conditions::conditions_for(&health, generation, &previous, Timestamp::now());
    if next == previous {
        return false;
    }
    // A merge patch of just these two fields: an apply would drop every other
    // status field the operator owns (the vendor id among them).
    let patch = serde_json::json!({
        "status": { "observedGeneration": generation, "conditions": next }
    });
    let params = PatchParams {
        field_manager: Some(FIELD_MANAGER.to_string()),
        ..PatchParams::default()
    };
    let name = guard.name_any();
    if let Err(error) = api
        .patch_status(&name, &params, &Patch::Merge(&patch))
        .await
    {
        let kind = K::kind(&());
        tracing::warn!(%kind, name, error = %super::kube_error::describe(&error), "could not write InvalidSpec into status");
    }
    true
}

/// What a controller does with an object it could not decode.
pub async fn handle_invalid<K>(
    guard: &DeserializeGuard<K>,
    invalid: &InvalidObject,
    controller: &'static str,
    ctx: &Context,
) -> Action
where
    K: Resource<DynamicType = ()> + DeserializeOwned + Clone + std::fmt::Debug,
{
    ctx.metrics
        .observe_failure(controller, reason::INVALID_SPEC);
    ctx.metrics
        .observe_object(controller, &object_key(guard), Some(conditions::STALLED));
    report_invalid(guard, invalid, ctx).await;
    // Any edit of the object wakes its controller; nothing to poll for.
    Action::await_change()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::v1alpha1::{ByokCredential, DatabaseProject};
    use serde_json::json;

    #[test]
    fn the_problem_names_the_field_and_hides_string_values() {
        let raw = json!({
            "apiVersion": "dbops.dev/v1alpha1", "kind": "ByokCredential",
            "metadata": { "name": "x", "namespace": "ns" },
            "spec": {
                "vendor": "neon", "alias": "a", "credentialsSecretRef": { "name": "s" },
                "testInterval": "every-tuesday-hunter2",
            },
        });
        let problem = problem::<ByokCredential>(&raw).unwrap();
        assert!(problem.starts_with("spec.testInterval: "), "{problem}");
        assert!(!problem.contains("hunter2"), "{problem}");
    }

    #[test]
    fn an_unknown_enum_value_lists_the_allowed_ones() {
        let raw = json!({
            "apiVersion": "dbops.dev/v1alpha1", "kind": "DatabaseProject",
            "metadata": { "name": "x", "namespace": "ns" },
            "spec": { "deletionPolicy": "Nope" },
        });
        let problem = problem::<DatabaseProject>(&raw).unwrap();
        assert!(
            problem.starts_with("spec.deletionPolicy: unknown variant"),
            "{problem}"
        );
        assert!(problem.contains("`Delete`"), "{problem}");
        let message = invalid_message("DatabaseProject", &problem, false);
        assert!(
            message
                .starts_with("The operator cannot read this DatabaseProject (spec.deletionPolicy")
        );
        assert!(!message.contains('\n'));
    }

    #[test]
    fn a_decodable_object_has_no_problem() {
        let raw = json!({
            "apiVersion": "dbops.dev/v1alpha1", "kind": "DatabaseProject",
            "metadata": { "name": "x", "namespace": "ns" },
            "spec": {},
        });
        assert_eq!(problem::<DatabaseProject>(&raw), None);
    }

    #[test]
    fn scrub_drops_quoted_strings_and_bounds_length() {
        assert_eq!(
            scrub(r#"invalid type: string "p@ss", expected u32"#),
            "invalid type: a string, expected u32"
        );
        let long = "x".repeat(1000);
        assert!(scrub(&long).chars().count() <= MAX_PROBLEM_LEN + 1);
    }
}
