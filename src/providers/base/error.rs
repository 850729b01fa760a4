use std::time::Duration;

use crate::api::v1alpha1::ProviderApi;

use super::operation::Operation;

/// A failed vendor call, classified so the controllers know whether to retry.
///
/// Messages never include credentials: requests are described by method and
/// path only, and vendor error text is cut to a bounded length.
#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    /// The vendor answered with an HTTP error status.
    #[error("{api} {operation} failed: HTTP {status}{}: {message}", code.as_deref().map(|c| format!(" {c}")).unwrap_or_default())]
    Http {
        api: ProviderApi,
        operation: String,
        status: u16,
        code: Option<String>,
        message: String,
        retry_after: Option<Duration>,
    },
    /// The request did not complete (connection refused, reset, timeout).
    #[error("{api} {operation} failed: {}", if *timeout { "request timed out".to_string() } else { format!("transport error: {message}") })]
    Transport {
        api: ProviderApi,
        operation: String,
        timeout: bool,
        message: String,
    },
    /// The vendor answered 2xx with a body we cannot use.
    #[error("{api} {operation} returned an invalid response: {message}")]
    InvalidResponse {
        api: ProviderApi,
        operation: String,
        message: String,
    },
    /// The vendor accepted a delete but did not confirm it (`ok: false`); retried.
    #[error("{api} {operation} was not confirmed by the vendor")]
    NotConfirmed { api: ProviderApi, operation: String },
    /// The provider's request budget (`spec.requestBudget`) is spent: nothing
    /// was sent. The reconcile is requeued after `wait`, quietly.
    #[error("{api} {operation} waits for the provider's request budget")]
    Throttled {
        api: ProviderApi,
        operation: String,
        wait: Duration,
    },
    /// An object with the requested name exists at the vendor and nothing
    /// shows it is this resource's: it is neither adopted nor touched.
    #[error(
        "{api} already has a {object} named {name:?} that dbops did not create for this resource"
    )]
    NameConflict {
        api: ProviderApi,
        object: &'static str,
        name: String,
    },
    /// A resumed create found an object under its name but cannot prove the
    /// earlier attempt made it (the name is the user's own choice): it is
    /// neither adopted nor touched.
    #[error(
        "{api} has a {object} named {name:?}, and dbops cannot prove that this resource's earlier create made it; nothing was adopted"
    )]
    CreateUncertain {
        api: ProviderApi,
        object: &'static str,
        name: String,
    },
    /// A database server (the `postgres` API) refused or failed a statement.
    /// `code` is the SQLSTATE when the server sent one; `message` is the
    /// server's primary message, which names objects but never a password
    /// (passwords are sent as SCRAM verifiers, never in statement text).
    #[error("{api} {operation} failed: {message}")]
    Database {
        api: ProviderApi,
        operation: String,
        code: Option<String>,
        message: String,
        transient: bool,
    },
    /// The object does not exist (APIs that answer without HTTP statuses).
    #[error("{api} has no {object} {id:?}")]
    NotFound {
        api: ProviderApi,
        object: &'static str,
        id: String,
    },
    /// The provider has no such operation.
    #[error("{api} does not support {operation}")]
    Unsupported {
        api: ProviderApi,
        operation: Operation,
    },
}

impl ProviderError {
    /// Worth retrying later without any change from the user: 408, 429, 5xx, timeouts, transport errors.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Http { status, .. } => *status == 408 || *status == 429 || *status >= 500,
            Self::Transport { .. } | Self::NotConfirmed { .. } | Self::Throttled { .. } => true,
            Self::Database { transient, .. } => *transient,
            Self::InvalidResponse { .. }
            | Self::Unsupported { .. }
            | Self::NameConflict { .. }
            | Self::CreateUncertain { .. }
            | Self::NotFound { .. } => false,
        }
    }

    /// Another object holds the requested name ([`ProviderError::NameConflict`]).
    pub fn is_name_conflict(&self) -> bool {
        matches!(self, Self::NameConflict { .. })
    }

    /// A resumed create cannot prove an object under its name is its own
    /// ([`ProviderError::CreateUncertain`]).
    pub fn is_create_uncertain(&self) -> bool {
        matches!(self, Self::CreateUncertain { .. })
    }

    /// Whether the vendor's answer shows the call made nothing: it was
    /// refused outright (a 4xx other than a timeout, a conflict the vendor
    /// may have caused itself, or a rate limit; a local refusal; a name held
    /// by someone else). A first create that failed so can start over as a
    /// first attempt. (A call the request budget held back made nothing
    /// either, but is not counted: it is retried at once, and undoing the
    /// create mark each time would only add writes.)
    pub fn made_nothing(&self) -> bool {
        match self {
            Self::Http { status, .. } => {
                (400..500).contains(status) && !matches!(status, 408 | 409 | 429)
            }
            Self::Unsupported { .. } | Self::NameConflict { .. } => true,
            _ => false,
        }
    }

    /// The vendor says the object does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(self, Self::Http { status: 404, .. } | Self::NotFound { .. })
    }

    /// How long the vendor asked us to wait (`Retry-After`), if it did.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Http { retry_after, .. } => *retry_after,
            Self::Throttled { wait, .. } => Some(*wait),
            _ => None,
        }
    }

    /// How long until the provider's request budget allows this call, when
    /// it was held back ([`ProviderError::Throttled`]).
    pub fn throttled(&self) -> Option<Duration> {
        match self {
            Self::Throttled { wait, .. } => Some(*wait),
            _ => None,
        }
    }

    /// The HTTP status, if the vendor answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Http { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// What the user can do about this failure, when there is something to say.
    pub fn advice(&self) -> Option<&'static str> {
        match self {
            Self::Http { status: 402, .. } => Some(
                "the vendor account is out of credit: top it up, and dbops tries again on its own",
            ),
            Self::NameConflict { .. } => Some(
                "choose another name, or adopt the existing one with spec.externalId; nothing was changed at the vendor",
            ),
            Self::CreateUncertain { .. } => Some(
                "if it is this resource's, adopt it on purpose with spec.externalId (where the provider allows adoption); otherwise delete it at the vendor or give this resource another name",
            ),
            _ => None,
        }
    }

    /// A short, static label for metrics and Event reasons.
    pub fn category(&self) -> &'static str {
        match self {
            Self::Http { status: 401, .. } => "VendorUnauthorized",
            // infrai names it `INSUFFICIENT_CREDIT`; judged by status alone,
            // as no document shows the error body.
            Self::Http { status: 402, .. } => "InsufficientCredit",
            Self::Http { status: 403, .. } => "VendorForbidden",
            Self::Http { status: 404, .. } => "VendorNotFound",
            Self::Http { status: 409, .. } => "VendorConflict",
            Self::Http { status: 429, .. } => "VendorRateLimited",
            Self::Http { status, .. } if *status >= 500 => "VendorUnavailable",
            Self::Http { .. } => "VendorRejected",
            Self::Transport { timeout: true, .. } => "VendorTimeout",
            Self::Transport { .. } => "VendorUnreachable",
            Self::InvalidResponse { .. } => "VendorInvalidResponse",
            Self::NotConfirmed { .. } => "VendorNotConfirmed",
            Self::Throttled { .. } => "RequestBudgetExhausted",
            Self::Unsupported { .. } => "UnsupportedByProvider",
            Self::NameConflict { .. } => "NameConflict",
            Self::CreateUncertain { .. } => "CreateUncertain",
            Self::NotFound { .. } => "VendorNotFound",
            Self::Database {
                code: None,
                transient: true,
                ..
            } => "VendorUnreachable",
            Self::Database { code, .. } => match code.as_deref().map(|c| c.get(..2).unwrap_or(c)) {
                // Class 28: invalid authorization; 42501: insufficient privilege.
                Some("28") => "VendorUnauthorized",
                _ if code.as_deref() == Some("42501") => "VendorForbidden",
                // Class 08: connection exceptions; 53: insufficient resources;
                // 57: operator intervention (shutdown, admin_shutdown).
                Some("08" | "53" | "57") => "VendorUnavailable",
                Some("55") => "VendorConflict",
                _ => "VendorRejected",
            },
        }
    }
}
