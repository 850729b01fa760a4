//! Request/response helpers shared by the emulated APIs: the error answer
//! (each vendor gives it its documented body) and JSON body fields.

use std::marker::PhantomData;

use axum::http::StatusCode;
use serde_json::{Map, Value};

/// An error answer of vendor `V`: a status, a code and a message, answered in
/// the body `V` documents (its `Vendor::error_body`, in `scaffold.rs`);
/// vendors whose errors carry no code leave it out.
pub struct ApiError<V> {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    vendor: PhantomData<fn() -> V>,
}

impl<V> ApiError<V> {
    /// An error with the code its status stands for (`NOT_FOUND`, `INVALID_REQUEST`, ...).
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self::coded(status, code_of(status), message)
    }

    /// An error with its own code.
    pub fn coded(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            vendor: PhantomData,
        }
    }

    /// 404: `{what} {id} not found`.
    pub fn not_found(what: &str, id: &str) -> Self {
        Self::new(StatusCode::NOT_FOUND, format!("{what} {id} not found"))
    }

    /// 400.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    /// 409.
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, message)
    }

    /// 422.
    pub fn unprocessable(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, message)
    }
}

/// The code an error of `status` carries unless it says otherwise.
fn code_of(status: StatusCode) -> &'static str {
    match status {
        StatusCode::BAD_REQUEST => "INVALID_REQUEST",
        StatusCode::UNAUTHORIZED => "UNAUTHORIZED",
        StatusCode::FORBIDDEN => "FORBIDDEN",
        StatusCode::NOT_FOUND => "NOT_FOUND",
        StatusCode::METHOD_NOT_ALLOWED => "METHOD_NOT_ALLOWED",
        StatusCode::CONFLICT => "CONFLICT",
        StatusCode::UNPROCESSABLE_ENTITY => "UNPROCESSABLE_ENTITY",
        _ => "ERROR",
    }
}

impl<V> std::fmt::Debug for ApiError<V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiError")
            .field("status", &self.status)
            .field("code", &self.code)
            .field("message", &self.message)
            .finish()
    }
}

/// Parses a JSON request body into an object (an empty body is an empty
/// object), or answers 400.
pub fn json_object<V>(body: &[u8]) -> Result<Map<String, Value>, ApiError<V>> {
    if body.is_empty() {
        return Ok(Map::new());
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(ApiError::bad_request("request body must be a JSON object")),
        Err(e) => Err(ApiError::bad_request(format!("invalid JSON body: {e}"))),
    }
}

/// A required string field of a JSON body: present and not empty.
pub fn required_str<V>(body: &Map<String, Value>, field: &str) -> Result<String, ApiError<V>> {
    match body.get(field) {
        Some(Value::String(s)) if !s.is_empty() => Ok(s.clone()),
        Some(Value::String(_)) | None => Err(ApiError::bad_request(format!("{field} is required"))),
        Some(_) => Err(ApiError::bad_request(format!("{field} must be a string"))),
    }
}

/// An optional string field of a JSON body (`null` is absent).
pub fn optional_str<V>(
    body: &Map<String, Value>,
    field: &str,
) -> Result<Option<String>, ApiError<V>> {
    optional(body, field, "a string", |v| v.as_str().map(str::to_string))
}

/// An optional boolean field of a JSON body (`null` is absent).
pub fn optional_bool<V>(
    body: &Map<String, Value>,
    field: &str,
) -> Result<Option<bool>, ApiError<V>> {
    optional(body, field, "a boolean", Value::as_bool)
}

/// An optional field of a JSON body that `read` reads, a 400 that says it
/// must be `kind` when it cannot.
fn optional<T, V>(
    body: &Map<String, Value>,
    field: &str,
    kind: &str,
    read: impl Fn(&Value) -> Option<T>,
) -> Result<Option<T>, ApiError<V>> {
    match body.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(value) => read(value)
            .map(Some)
            .ok_or_else(|| ApiError::bad_request(format!("{field} must be {kind}"))),
    }
}

/// Sets `field` of the JSON object `object` when there is a `value`: the
/// documents show such fields only when they are set.
pub fn set_optional(object: &mut Value, field: &str, value: Option<impl Into<Value>>) {
    if let Some(value) = value {
        object[field] = value.into();
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::emulator::base::scaffold::Vendor;
    use crate::emulator::vendors::infrai::InfraiEmulator;
    use crate::emulator::vendors::supabase::SupabaseEmulator;
    use axum::response::IntoResponse;

    async fn answer<V: Vendor>(error: ApiError<V>) -> (u16, Value) {
        let response = error.into_response();
        let status = response.status().as_u16();
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 16)
            .await
            .unwrap();
        (status, serde_json::from_slice(&bytes).unwrap())
    }

    #[tokio::test]
    async fn an_error_is_answered_in_the_vendors_shape() {
        assert_eq!(
            answer(ApiError::<InfraiEmulator>::not_found("project", "p1")).await,
            (
                404,
                serde_json::json!({ "error": { "code": "NOT_FOUND", "message": "project p1 not found" } })
            )
        );
        assert_eq!(
            answer(ApiError::<SupabaseEmulator>::not_found("project", "p1")).await,
            (
                404,
                serde_json::json!({ "message": "project p1 not found" })
            )
        );
        let coded = ApiError::<InfraiEmulator>::coded(StatusCode::CONFLICT, "REVOKED", "gone");
        assert_eq!(answer(coded).await.1["error"]["code"], "REVOKED");
    }

    #[test]
    fn errors_carry_the_code_of_their_status() {
        let code = |e: ApiError<()>| (e.status.as_u16(), e.code);
        assert_eq!(code(ApiError::bad_request("x")), (400, "INVALID_REQUEST"));
        assert_eq!(code(ApiError::not_found("a", "b")), (404, "NOT_FOUND"));
        assert_eq!(code(ApiError::conflict("x")), (409, "CONFLICT"));
        assert_eq!(
            code(ApiError::unprocessable("x")),
            (422, "UNPROCESSABLE_ENTITY")
        );
        assert_eq!(
            code(ApiError::new(StatusCode::UNAUTHORIZED, "x")),
            (401, "UNAUTHORIZED")
        );
        assert_eq!(
            code(ApiError::new(StatusCode::IM_A_TEAPOT, "x")),
            (418, "ERROR")
        );
    }

    #[test]
    fn optional_answer_fields_appear_only_when_set() {
        let mut v = serde_json::json!({ "id": "x" });
        set_optional(&mut v, "label", None::<&str>);
        assert_eq!(v, serde_json::json!({ "id": "x" }));
        set_optional(&mut v, "label", Some("l"));
        set_optional(
            &mut v,
            "quota",
            Some(serde_json::json!({ "call_limit": 3 })),
        );
        assert_eq!(
            v,
            serde_json::json!({ "id": "x", "label": "l", "quota": { "call_limit": 3 } })
        );
    }

    #[test]
    fn body_fields_are_checked() {
        let body: Map<String, Value> =
            json_object::<()>(br#"{"name": "a", "empty": "", "n": 1, "none": null, "flag": true}"#)
                .unwrap();
        assert_eq!(json_object::<()>(b"").unwrap(), Map::new());
        let message = |e: ApiError<()>| (e.status.as_u16(), e.message);
        assert_eq!(
            message(json_object::<()>(b"[1]").unwrap_err()),
            (400, "request body must be a JSON object".into())
        );
        assert!(
            message(json_object::<()>(b"{").unwrap_err())
                .1
                .starts_with("invalid JSON body: ")
        );

        assert_eq!(required_str::<()>(&body, "name").unwrap(), "a");
        for (field, problem) in [
            ("empty", "empty is required"),
            ("missing", "missing is required"),
            ("n", "n must be a string"),
        ] {
            assert_eq!(
                message(required_str::<()>(&body, field).unwrap_err()),
                (400, problem.into())
            );
        }
        assert_eq!(optional_str::<()>(&body, "none").unwrap(), None);
        assert_eq!(
            optional_str::<()>(&body, "empty").unwrap(),
            Some(String::new())
        );
        assert!(optional_str::<()>(&body, "n").is_err());
        assert_eq!(optional_bool::<()>(&body, "flag").unwrap(), Some(true));
        assert_eq!(optional_bool::<()>(&body, "missing").unwrap(), None);
        assert_eq!(
            message(optional_bool::<()>(&body, "name").unwrap_err()).1,
            "name must be a boolean"
        );
    }
}
