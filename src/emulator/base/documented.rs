//! What the vendor documents show, as data: every endpoint of
//! `vendor-apis/*.txt` with its parameters, its request and response
//! examples and its response codes.
//!
//! The files under `documented/` are extracted from the documents by
//! `tests/contracts.rs` (which also checks they still match the documents).
//! They serve two purposes:
//! - the contract tests run every client against answers made only of the
//!   documented examples;
//! - an emulator in **strict mode** ([`Strict`]) serves only documented
//!   fields: each answer is cut down to the fields the document shows for that
//!   endpoint, plus the fields a client is known to assume where the document
//!   shows no body ([`Assumption`]). An endpoint
//!   the document does not list answers 404, and an answer the document shows
//!   no body for goes out empty.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::providers::Assumption;

/// One vendor document, as extracted.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Document {
    /// Its file name under `vendor-apis/`.
    pub document: String,
    pub endpoints: Vec<Endpoint>,
}

/// One documented endpoint.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Endpoint {
    /// The line of the document where it starts (1-based).
    pub line: usize,
    /// Its HTTP method; empty where the document names none (Supabase).
    pub method: String,
    /// Its path, with `{placeholders}`.
    pub path: String,
    /// Its title, where the document gives one.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub title: String,
    /// The request fields its parameter table lists, with whether each is required.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub parameters: Vec<Parameter>,
    /// Documented request bodies.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub requests: Vec<Example>,
    /// Documented success bodies.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub responses: Vec<Example>,
    /// Documented error bodies.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<Example>,
    /// The response codes it lists, where the document lists them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub codes: Vec<u16>,
}

/// A request field from a parameter table.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Parameter {
    pub name: String,
    pub required: bool,
}

/// A documented body, at the line where the document shows it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Example {
    pub line: usize,
    pub body: Value,
    /// Top-level fields the document marks optional (`next_cursor?`): the
    /// body holds them, an answer may leave them out.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub optional: Vec<String>,
}

impl Endpoint {
    /// An endpoint with nothing documented yet.
    pub fn new(line: usize, method: &str, path: &str) -> Self {
        Self {
            line,
            method: method.to_string(),
            path: path.to_string(),
            title: String::new(),
            parameters: vec![],
            requests: vec![],
            responses: vec![],
            errors: vec![],
            codes: vec![],
        }
    }

    /// Whether `method` and `path` (without the API's prefix) are this endpoint.
    /// `{placeholder}` segments match any one segment.
    pub fn matches(&self, method: &str, path: &str) -> bool {
        if !self.method.is_empty() && !self.method.eq_ignore_ascii_case(method) {
            return false;
        }
        let ours: Vec<&str> = self.path.trim_matches('/').split('/').collect();
        let theirs: Vec<&str> = path.trim_matches('/').split('/').collect();
        ours.len() == theirs.len()
            && ours
                .iter()
                .zip(&theirs)
                .all(|(a, b)| is_placeholder(a) || a == b)
    }

    /// How many of its path segments are literal (the most specific match wins).
    fn literal_segments(&self) -> usize {
        self.path.split('/').filter(|s| !is_placeholder(s)).count()
    }
}

fn is_placeholder(segment: &str) -> bool {
    segment.starts_with('{') && segment.ends_with('}')
}

/// The documented endpoints of one emulated API, and what its clients assume
/// beyond them.
pub struct Contract {
    endpoints: Vec<Endpoint>,
    assumptions: Vec<&'static Assumption>,
}

/// The allowed fields of a JSON answer.
#[derive(Clone, Debug, PartialEq)]
pub enum Shape {
    /// A value the document shows no inside of: served as it is.
    Leaf,
    Object(BTreeMap<String, Shape>),
    Array(Box<Shape>),
}

impl Shape {
    /// The shape of a documented example.
    pub fn of(value: &Value) -> Self {
        match value {
            Value::Object(map) => {
                Shape::Object(map.iter().map(|(k, v)| (k.clone(), Shape::of(v))).collect())
            }
            Value::Array(items) => Shape::Array(Box::new(
                items
                    .iter()
                    .map(Shape::of)
                    .reduce(Shape::merge)
                    .unwrap_or(Shape::Leaf),
            )),
            _ => Shape::Leaf,
        }
    }

    /// The shape of dotted field paths (`database.host`, `[].id`).
    pub fn of_paths(paths: &[&str]) -> Option<Self> {
        paths
            .iter()
            .map(|path| Self::of_path(&path.split('.').collect::<Vec<_>>()))
            .reduce(Shape::merge)
    }

    fn of_path(parts: &[&str]) -> Self {
        match parts.split_first() {
            None => Shape::Leaf,
            Some((&"[]", rest)) => Shape::Array(Box::new(Self::of_path(rest))),
            Some((first, rest)) => Shape::Object(BTreeMap::from([(
                (*first).to_string(),
                Self::of_path(rest),
            )])),
        }
    }

    /// Every field either shape allows.
    pub fn merge(self, other: Shape) -> Shape {
        match (self, other) {
            (Shape::Object(mut a), Shape::Object(b)) => {
                for (key, shape) in b {
                    let merged = match a.remove(&key) {
                        Some(existing) => existing.merge(shape),
                        None => shape,
                    };
                    a.insert(key, merged);
                }
                Shape::Object(a)
            }
            (Shape::Array(a), Shape::Array(b)) => Shape::Array(Box::new(a.merge(*b))),
            (Shape::Leaf, other) | (other, Shape::Leaf) => other,
            (a, _) => a,
        }
    }

    /// The fields this shape has that `value` lacks, as dotted paths
    /// (`[]` for the items of an array).
    pub fn missing(&self, value: &Value) -> Vec<String> {
        match (self, value) {
            (Shape::Object(fields), Value::Object(map)) => fields
                .iter()
                .flat_map(|(key, shape)| match map.get(key) {
                    None => vec![key.clone()],
                    Some(inner) => shape
                        .missing(inner)
                        .into_iter()
                        .map(|path| format!("{key}.{path}"))
                        .collect(),
                })
                .collect(),
            (Shape::Array(item), Value::Array(items)) => items
                .iter()
                .flat_map(|v| item.missing(v))
                .map(|path| format!("[].{path}"))
                .collect(),
            _ => vec![],
        }
    }

    /// `value` with only the fields this shape allows.
    pub fn prune(&self, value: Value) -> Value {
        match (self, value) {
            (Shape::Object(fields), Value::Object(map)) => Value::Object(
                map.into_iter()
                    .filter_map(|(k, v)| fields.get(&k).map(|shape| (k, shape.prune(v))))
                    .collect(),
            ),
            (Shape::Array(item), Value::Array(items)) => {
                Value::Array(items.into_iter().map(|v| item.prune(v)).collect())
            }
            (_, value) => value,
        }
    }
}

/// What strict mode does with one answer.
#[derive(Debug, PartialEq)]
pub enum Served {
    /// Only these fields.
    Fields(Shape),
    /// The document shows no body: none goes out.
    NoBody,
    /// The document does not list the endpoint.
    Undocumented,
}

impl Contract {
    /// The contract of the documents `files` (JSON of [`Document`]) and the
    /// client's `assumptions`. A file that does not parse is a build defect,
    /// caught by the tests; here it counts as empty.
    pub fn new(files: &[&str], assumptions: Vec<&'static Assumption>) -> Self {
        let endpoints = files
            .iter()
            .filter_map(|file| serde_json::from_str::<Document>(file).ok())
            .flat_map(|document| document.endpoints)
            .collect();
        Self {
            endpoints,
            assumptions,
        }
    }

    /// The documented endpoint `method path` is, the most specific first.
    pub fn endpoint(&self, method: &str, path: &str) -> Option<&Endpoint> {
        self.endpoints
            .iter()
            .filter(|e| e.matches(method, path))
            .max_by_key(|e| e.literal_segments())
    }

    /// The first field of a request body to `method path` that its document
    /// neither lists in the parameter table nor shows in a request example.
    pub fn undocumented_field(&self, method: &str, path: &str, body: &Value) -> Option<String> {
        let endpoint = self.endpoint(method, path)?;
        let fields = body.as_object()?;
        let documented = |name: &str| {
            self.endpoints
                .iter()
                .filter(|e| e.path == endpoint.path && e.matches(method, path))
                .any(|e| {
                    e.parameters.iter().any(|p| p.name == name)
                        || e.requests.iter().any(|r| r.body.get(name).is_some())
                })
        };
        fields.keys().find(|name| !documented(name)).cloned()
    }

    /// The fields every documented answer of `method path` shows (the ones
    /// it marks optional left out), if the document shows one.
    pub fn documented_fields(&self, method: &str, path: &str) -> Option<Shape> {
        let endpoint = self.endpoint(method, path)?;
        self.endpoints
            .iter()
            .filter(|e| e.path == endpoint.path && e.matches(method, path))
            .flat_map(|e| &e.responses)
            .map(|example| {
                let mut body = example.body.clone();
                if let Some(map) = body.as_object_mut() {
                    for optional in &example.optional {
                        map.remove(optional);
                    }
                }
                Shape::of(&body)
            })
            .reduce(Shape::merge)
    }

    /// What strict mode serves for a success answer to `method path`.
    pub fn served(&self, method: &str, path: &str) -> Served {
        let Some(endpoint) = self.endpoint(method, path) else {
            return Served::Undocumented;
        };
        // Supabase names no methods: every documented endpoint on the path counts.
        let documented = self
            .endpoints
            .iter()
            .filter(|e| e.path == endpoint.path && e.matches(method, path))
            .flat_map(|e| &e.responses)
            .map(|example| Shape::of(&example.body))
            .reduce(Shape::merge);
        let assumed = self
            .assumptions
            .iter()
            .filter(|a| a.applies_to(method, &endpoint.path))
            .filter_map(|a| Shape::of_paths(a.reads))
            .reduce(Shape::merge);
        match (documented, assumed) {
            (Some(a), Some(b)) => Served::Fields(a.merge(b)),
            (Some(shape), None) | (None, Some(shape)) => Served::Fields(shape),
            (None, None) => Served::NoBody,
        }
    }
}

/// Strict mode of one emulated API: off until [`Strict::set`].
pub struct Strict {
    on: AtomicBool,
    contract: Contract,
    /// Documented fields the emulator's own answers lacked, while on.
    gaps: std::sync::Mutex<Vec<String>>,
    /// The API's error body, for the 404 of an undocumented endpoint.
    error_body: super::scaffold::ErrorBody,
}

impl Strict {
    pub fn new(contract: Contract, error_body: super::scaffold::ErrorBody) -> Arc<Self> {
        Arc::new(Self {
            on: AtomicBool::new(false),
            contract,
            gaps: Default::default(),
            error_body,
        })
    }

    pub fn set(&self, on: bool) {
        self.on.store(on, Ordering::SeqCst);
    }

    pub fn is_on(&self) -> bool {
        self.on.load(Ordering::SeqCst)
    }

    /// Where the emulator's answers lacked a documented field, while strict
    /// mode was on: `METHOD path: field`. Empty for a faithful emulator.
    pub fn gaps(&self) -> Vec<String> {
        self.gaps.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn note_gaps(&self, method: &Method, path: &str, value: &Value) {
        let Some(documented) = self.contract.documented_fields(method.as_str(), path) else {
            return;
        };
        let missing = documented.missing(value);
        if !missing.is_empty() {
            let mut gaps = self.gaps.lock().unwrap_or_else(|p| p.into_inner());
            gaps.extend(
                missing
                    .into_iter()
                    .map(|field| format!("{method} {path}: {field}")),
            );
        }
    }
}

/// Biggest answer strict mode reads to cut down.
const MAX_BODY: usize = 16 * 1024 * 1024;

/// The strict-mode layer: answers cut to what the document shows.
pub async fn enforce(State(strict): State<Arc<Strict>>, request: Request, next: Next) -> Response {
    if !strict.is_on() {
        return next.run(request).await;
    }
    let method = request.method().clone();
    let path = request.uri().path().to_string();
    let served = strict.contract.served(method.as_str(), &path);
    if served == Served::Undocumented {
        let body = (strict.error_body)("NOT_FOUND", "no such endpoint in the API's document");
        return (StatusCode::NOT_FOUND, axum::Json(body)).into_response();
    }
    let (parts, body) = request.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, MAX_BODY).await else {
        return StatusCode::PAYLOAD_TOO_LARGE.into_response();
    };
    if let Ok(sent) = serde_json::from_slice::<Value>(&bytes)
        && let Some(field) = strict
            .contract
            .undocumented_field(method.as_str(), &path, &sent)
    {
        let message = format!("the request field {field:?} is not in the API's document");
        let body = (strict.error_body)("VALIDATION_FAILED", &message);
        return (StatusCode::BAD_REQUEST, axum::Json(body)).into_response();
    }
    let request = Request::from_parts(parts, Body::from(bytes));
    let response = next.run(request).await;
    if !response.status().is_success() || method == Method::HEAD {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    parts.headers.remove(axum::http::header::CONTENT_LENGTH);
    let shape = match served {
        Served::Fields(shape) => shape,
        Served::NoBody | Served::Undocumented => {
            parts.headers.remove(axum::http::header::CONTENT_TYPE);
            return Response::from_parts(parts, Body::empty());
        }
    };
    let Ok(bytes) = axum::body::to_bytes(body, MAX_BODY).await else {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    };
    let pruned = match serde_json::from_slice::<Value>(&bytes) {
        Ok(value) => {
            strict.note_gaps(&method, &path, &value);
            serde_json::to_vec(&shape.prune(value)).unwrap_or_default()
        }
        Err(_) => bytes.to_vec(),
    };
    Response::from_parts(parts, Body::from(pruned))
}

/// The extracted documents, by file name.
pub const INFRAI_DB: &str = include_str!("documented/infrai-db.json");
pub const INFRAI_BYOK: &str = include_str!("documented/infrai-byok.json");
pub const SUPABASE: &str = include_str!("documented/supabase-management.json");
pub const DB9: &str = include_str!("documented/db9.json");
pub const CAPYDB: &str = include_str!("documented/capydb.json");

/// Every extracted document, with its file name under `vendor-apis/`.
pub const DOCUMENTS: &[(&str, &str)] = &[
    ("infrai-db.txt", INFRAI_DB),
    ("infrai-byok.txt", INFRAI_BYOK),
    ("supabase-management.txt", SUPABASE),
    ("db9.txt", DB9),
    ("capydb.txt", CAPYDB),
];

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn pruning_keeps_only_documented_fields_at_every_depth() {
        let shape = Shape::of(&json!({"id": "x", "items": [{"a": 1}], "nested": {"b": 2}}));
        let served = shape.prune(json!({
            "id": "p1", "extra": true,
            "items": [{"a": 1, "secret": "s"}, {"a": 2}],
            "nested": {"b": 3, "c": 4},
        }));
        assert_eq!(
            served,
            json!({"id": "p1", "items": [{"a": 1}, {"a": 2}], "nested": {"b": 3}})
        );
    }

    #[test]
    fn assumed_paths_make_a_shape_that_merges_with_the_documented_one() {
        let assumed = Shape::of_paths(&["[].id", "[].database.host"]).unwrap();
        let documented = Shape::of(&json!([{"name": "n"}]));
        let shape = documented.merge(assumed);
        assert_eq!(
            shape.prune(
                json!([{"id": "i", "name": "n", "database": {"host": "h", "x": 1}, "y": 2}])
            ),
            json!([{"id": "i", "name": "n", "database": {"host": "h"}}])
        );
    }

    #[test]
    fn the_most_specific_endpoint_wins_and_placeholders_match_one_segment() {
        let endpoint = |method: &str, path: &str| Endpoint::new(1, method, path);
        let contract = Contract {
            endpoints: vec![
                endpoint("GET", "/customer/databases/{database_id}"),
                endpoint("POST", "/customer/databases/batch"),
                endpoint("POST", "/customer/databases/{database_id}"),
            ],
            assumptions: vec![],
        };
        assert_eq!(
            contract
                .endpoint("POST", "/customer/databases/batch")
                .unwrap()
                .path,
            "/customer/databases/batch"
        );
        assert!(
            contract
                .endpoint("GET", "/customer/databases/a/b")
                .is_none()
        );
        assert!(
            contract
                .endpoint("DELETE", "/customer/databases/a")
                .is_none()
        );
        assert_eq!(
            contract.served("GET", "/customer/databases/db_1"),
            Served::NoBody
        );
        assert_eq!(contract.served("GET", "/nope"), Served::Undocumented);
    }

    #[test]
    fn documented_fields_an_answer_lacks_are_found_and_optional_ones_are_not() {
        let contract = Contract::new(&[DB9, INFRAI_DB], vec![]);
        let shown = contract
            .documented_fields("GET", "/customer/databases/db_1")
            .unwrap();
        let answer = json!({"id": "db_1", "name": "n", "state": "ready",
            "connection_string": "postgresql://x", "created_at": "t"});
        assert_eq!(shown.missing(&answer), ["region"]);
        // infrai's list marks `next_cursor` optional.
        let list = contract
            .documented_fields("GET", "/v1/db/project/list")
            .unwrap();
        let page = json!({"items": [{"id": "p", "name": "n", "region": "r",
            "connection_uri": "u", "created_at": "t"}]});
        assert!(list.missing(&page).is_empty(), "{:?}", list.missing(&page));
        let short = json!({"items": [{"id": "p"}]});
        assert_eq!(
            list.missing(&short),
            [
                "items.[].connection_uri",
                "items.[].created_at",
                "items.[].name",
                "items.[].region"
            ]
        );
    }

    #[test]
    fn every_extracted_document_parses() {
        for (name, file) in DOCUMENTS {
            let document: Document = serde_json::from_str(file)
                .unwrap_or_else(|e| panic!("documented/{name} does not parse: {e}"));
            assert_eq!(&document.document, name);
            assert!(!document.endpoints.is_empty(), "{name} has no endpoints");
        }
    }
}
