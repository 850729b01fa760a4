//! `dbops.dev/v1alpha1`: the first version of the dbops API.
//!
//! Every type here documents itself with `///` comments; they become the
//! OpenAPI descriptions in the generated CRDs, so `kubectl explain` is useful.

// clippy reads repeated `printcolumn(type_ = ...)` arguments of the kube derive
// as duplicated attributes; they are separate columns.
#![allow(clippy::duplicated_attributes)]

mod branch;
mod branch_data;
mod byok;
mod claim;
mod common;
mod project;
mod provider;
mod role;
mod schedule;
mod snapshot;

pub use branch::*;
pub use branch_data::*;
pub use byok::*;
pub use claim::*;
pub use common::*;
pub use project::*;
pub use provider::*;
pub use role::*;
pub use schedule::*;
pub use snapshot::*;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    CustomResourceDefinition, JSONSchemaProps, JSONSchemaPropsOrArray, JSONSchemaPropsOrBool,
};
use kube::CustomResourceExt;

/// All CRDs of this version, in a stable order (the order of `crds/`).
///
/// The generated schemas are adjusted for the API server:
/// - optional fields are generated as `nullable: true`; that is stripped, so a
///   `null` sent by a client is pruned by the API server instead of stored (the
///   CEL rules use `has()`, which a stored `null` would defeat);
/// - Rust's unsigned formats (`uint32`, `uint64`), which the API server does
///   not know (it warns, and admits values the operator cannot decode), become
///   `int64` with the unsigned type's bounds;
/// - string enums get a `maxLength`, so the CEL cost estimator sees them bounded.
pub fn all_crds() -> Vec<CustomResourceDefinition> {
    let mut crds = vec![
        DatabaseProvider::crd(),
        DatabaseProject::crd(),
        DatabaseBranch::crd(),
        DatabaseSnapshot::crd(),
        ByokCredential::crd(),
        DatabaseRole::crd(),
        DatabaseSnapshotSchedule::crd(),
        VendorClaim::crd(),
    ];
    for crd in &mut crds {
        for version in &mut crd.spec.versions {
            if let Some(schema) = version
                .schema
                .as_mut()
                .and_then(|s| s.open_api_v3_schema.as_mut())
            {
                strip_nullable(schema);
            }
        }
    }
    crds
}

fn strip_nullable(schema: &mut JSONSchemaProps) {
    schema.nullable = None;
    match schema.format.as_deref() {
        Some("uint32") => {
            schema.format = Some("int64".to_string());
            schema.minimum = Some(schema.minimum.unwrap_or(0.0).max(0.0));
            schema.maximum = Some(
                schema
                    .maximum
                    .unwrap_or(f64::from(u32::MAX))
                    .min(f64::from(u32::MAX)),
            );
        }
        Some("uint64") => {
            schema.format = Some("int64".to_string());
            schema.minimum = Some(schema.minimum.unwrap_or(0.0).max(0.0));
        }
        _ => {}
    }
    if schema.type_.as_deref() == Some("string") && schema.max_length.is_none() {
        let longest = schema
            .enum_
            .iter()
            .flatten()
            .filter_map(|v| v.0.as_str().map(str::len))
            .max();
        if let Some(longest) = longest {
            schema.max_length = Some(longest as i64);
        }
    }
    for prop in schema.properties.iter_mut().flat_map(|p| p.values_mut()) {
        strip_nullable(prop);
    }
    if let Some(JSONSchemaPropsOrArray::Schema(items)) = schema.items.as_mut() {
        strip_nullable(items);
    }
    if let Some(JSONSchemaPropsOrBool::Schema(extra)) = schema.additional_properties.as_mut() {
        strip_nullable(extra);
    }
}
