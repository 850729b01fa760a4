//! Kubernetes API errors, as people and the error policy need them.
//!
//! `kube::Error`'s own `Display` embeds the `Debug` form of the API server's
//! `Status`; that must never reach an Event or a status message. [`Described`]
//! wraps an error so that it displays as one plain clause ("the API server
//! answered 409 Conflict") and keeps the original as its `source()` for logs.
//! [`conflict`] and [`namespace_terminating`] classify the errors the
//! controllers treat specially.

use std::fmt;

/// The API server refused a write because the object moved on since it was
/// read: a 409 (`Conflict`, `AlreadyExists`), or a 422 from a failed
/// precondition. Retrying promptly with a fresh read is the whole remedy.
///
/// A 422 only counts when the request was a precondition (`precondition`):
/// a JSON-patch `test` or a `resourceVersion` check. Elsewhere a 422 is a
/// validation failure, which a retry does not fix.
pub fn conflict(error: &kube::Error, precondition: bool) -> bool {
    match error {
        kube::Error::Api(status) => status.code == 409 || (precondition && status.code == 422),
        _ => false,
    }
}

/// The write was refused because the object's namespace is being deleted
/// (403 with cause `NamespaceTerminating`): nothing new may be created there.
pub fn namespace_terminating(error: &kube::Error) -> bool {
    let kube::Error::Api(status) = error else {
        return false;
    };
    status.code == 403
        && (status
            .details
            .as_ref()
            .is_some_and(|d| d.causes.iter().any(|c| c.reason == "NamespaceTerminating"))
            // Older servers say it only in the message.
            || status.message.contains("because it is being terminated"))
}

/// Whether a create found the name taken (409 `AlreadyExists`).
pub fn already_exists(error: &kube::Error) -> bool {
    matches!(error, kube::Error::Api(status) if status.code == 409 && status.reason == "AlreadyExists")
}

/// Whether the object was not found (404).
pub fn not_found(error: &kube::Error) -> bool {
    matches!(error, kube::Error::Api(status) if status.code == 404)
}

/// One plain clause describing `error`, without the API server's raw text.
pub fn describe(error: &kube::Error) -> String {
    match error {
        kube::Error::Api(status) => {
            let code = status.code;
            let reason = if status.reason.is_empty() {
                http_reason(code)
            } else {
                status.reason.as_str()
            };
            if namespace_terminating(error) {
                return "the API server refused it because the namespace is being deleted"
                    .to_string();
            }
            let what = match code {
                401 => "the operator's Kubernetes credentials were refused",
                403 => "the operator is not allowed to do this (check its RBAC)",
                404 => "the object does not exist",
                409 => "the object changed while it was being written",
                410 => "the watch fell too far behind",
                422 => "the API server refused the change as invalid",
                429 => "the API server is throttling requests",
                c if c >= 500 => "the API server is unavailable",
                _ => "the API server refused the request",
            };
            format!("{what} (HTTP {code} {reason})")
        }
        kube::Error::HyperError(_) | kube::Error::Service(_) => {
            "the Kubernetes API server could not be reached".to_string()
        }
        kube::Error::SerdeError(_) => "the API server's answer could not be read".to_string(),
        kube::Error::Auth(_) => "the operator could not authenticate to Kubernetes".to_string(),
        _ => "the Kubernetes client failed".to_string(),
    }
}

fn http_reason(code: u16) -> &'static str {
    axum::http::StatusCode::from_u16(code)
        .ok()
        .and_then(|c| c.canonical_reason())
        .unwrap_or("error")
}

/// A `kube::Error` that displays as [`describe`] and keeps the original as its source.
#[derive(Debug)]
pub struct Described(pub kube::Error);

impl fmt::Display for Described {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&describe(&self.0))
    }
}

impl std::error::Error for Described {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.0)
    }
}

impl From<kube::Error> for Described {
    fn from(error: kube::Error) -> Self {
        Described(error)
    }
}

impl Described {
    /// The wrapped error.
    pub fn inner(&self) -> &kube::Error {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::core::response::{StatusCause, StatusDetails};

    fn api(code: u16, reason: &str, message: &str) -> kube::Error {
        kube::Error::Api(Box::new(kube::core::Status {
            status: Some(kube::core::response::StatusSummary::Failure),
            code,
            message: message.to_string(),
            reason: reason.to_string(),
            metadata: None,
            details: None,
        }))
    }

    #[test]
    fn described_errors_carry_no_debug_text_or_raw_message() {
        let raw = api(
            422,
            "Invalid",
            "the server rejected our request: secret-ish detail",
        );
        let shown = Described(raw).to_string();
        assert_eq!(
            shown,
            "the API server refused the change as invalid (HTTP 422 Invalid)"
        );
        for needle in ["Status {", "Some(", "ApiError", "secret-ish"] {
            assert!(!shown.contains(needle), "{shown}");
        }
        assert_eq!(
            describe(&api(500, "", "")),
            "the API server is unavailable (HTTP 500 Internal Server Error)"
        );
    }

    #[test]
    fn conflicts_are_409s_and_failed_preconditions() {
        assert!(conflict(&api(409, "Conflict", ""), false));
        assert!(conflict(&api(409, "AlreadyExists", ""), false));
        assert!(conflict(&api(422, "Invalid", ""), true));
        assert!(!conflict(&api(422, "Invalid", ""), false));
        assert!(!conflict(&api(500, "", ""), true));
    }

    #[test]
    fn a_terminating_namespace_is_recognised_by_cause_or_message() {
        let mut status = kube::core::Status::failure("forbidden", "Forbidden");
        status.code = 403;
        status.details = Some(StatusDetails {
            causes: vec![StatusCause {
                reason: "NamespaceTerminating".into(),
                message: "namespace x is being terminated".into(),
                field: "metadata.namespace".into(),
            }],
            name: "x".into(),
            group: String::new(),
            kind: "secrets".into(),
            uid: String::new(),
            retry_after_seconds: 0,
        });
        let by_cause = kube::Error::Api(Box::new(status));
        assert!(namespace_terminating(&by_cause));
        assert!(describe(&by_cause).contains("namespace is being deleted"));
        let by_message = api(
            403,
            "Forbidden",
            "unable to create new content in namespace x because it is being terminated",
        );
        assert!(namespace_terminating(&by_message));
        assert!(!namespace_terminating(&api(
            403,
            "Forbidden",
            "rbac says no"
        )));
    }
}
