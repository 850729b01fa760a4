//! Request/response helpers shared by the emulated APIs.

use std::collections::HashMap;

use axum::Json;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

/// An error answer in infrai's shape: `{"error": {"code", "message"}}`.
#[derive(Debug)]
pub struct InfraiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

impl InfraiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }

    pub fn not_found(what: &str, id: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            format!("{what} {id} not found"),
        )
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "INVALID_REQUEST", message)
    }
}

impl IntoResponse for InfraiError {
    fn into_response(self) -> Response {
        (
            self.status,
            Json(json!({ "error": { "code": self.code, "message": self.message } })),
        )
            .into_response()
    }
}

/// The bearer token of a request, if it has one.
pub fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(str::trim)
}

/// Parses a JSON request body into an object, or answers 400.
pub fn json_object(body: &[u8]) -> Result<serde_json::Map<String, Value>, InfraiError> {
    if body.is_empty() {
        return Ok(serde_json::Map::new());
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(InfraiError::bad_request(
            "request body must be a JSON object",
        )),
        Err(e) => Err(InfraiError::bad_request(format!("invalid JSON body: {e}"))),
    }
}

/// A required string field of a JSON body.
pub fn required_str(
    body: &serde_json::Map<String, Value>,
    field: &str,
) -> Result<String, InfraiError> {
    match body.get(field) {
        Some(Value::String(s)) if !s.is_empty() => Ok(s.clone()),
        Some(Value::String(_)) | None => {
            Err(InfraiError::bad_request(format!("{field} is required")))
        }
        Some(_) => Err(InfraiError::bad_request(format!(
            "{field} must be a string"
        ))),
    }
}

/// An optional string field of a JSON body.
pub fn optional_str(
    body: &serde_json::Map<String, Value>,
    field: &str,
) -> Result<Option<String>, InfraiError> {
    match body.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(InfraiError::bad_request(format!(
            "{field} must be a string"
        ))),
    }
}

/// A random lowercase alphanumeric string.
pub fn random_token(len: usize) -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    (0..len)
        .map(|_| ALPHABET[rand::random_range(0..ALPHABET.len())] as char)
        .collect()
}

/// Now, RFC 3339, UTC.
pub fn now_rfc3339() -> String {
    jiff::Timestamp::now().to_string()
}

/// Responses of idempotent calls: `"<capability> <key>"` -> (request without
/// the key, response). String keys, so the cache is saved with the rest of
/// the state.
pub type IdempotencyCache = HashMap<String, (Value, Value)>;

fn cache_key(capability: &str, key: &str) -> String {
    format!("{capability} {key}")
}

/// A model state that remembers idempotent calls.
pub trait HasIdempotency {
    fn idempotency(&mut self) -> &mut IdempotencyCache;
}

/// Runs `create` once per (capability, idempotency key): a retry with the same key
/// and the same request answers the first response; a different request is a 409.
/// Without a key, every call runs.
pub fn idempotent<S: HasIdempotency>(
    state: &mut S,
    capability: &'static str,
    mut request: serde_json::Map<String, Value>,
    create: impl FnOnce(&mut S, &serde_json::Map<String, Value>) -> Result<Value, InfraiError>,
) -> Result<Json<Value>, InfraiError> {
    let key = optional_str(&request, "idempotency_key")?;
    request.remove("idempotency_key");
    let Some(key) = key else {
        return create(state, &request).map(Json);
    };
    let fingerprint = Value::Object(request.clone());
    if let Some((previous, response)) = state.idempotency().get(&cache_key(capability, &key)) {
        if *previous == fingerprint {
            return Ok(Json(response.clone()));
        }
        return Err(InfraiError::new(
            axum::http::StatusCode::CONFLICT,
            "IDEMPOTENCY_CONFLICT",
            "idempotency_key was already used with a different request",
        ));
    }
    let response = create(state, &request)?;
    state
        .idempotency()
        .insert(cache_key(capability, &key), (fingerprint, response.clone()));
    Ok(Json(response))
}
