//! Fault injection for the emulated APIs, configurable at runtime per API
//! (programmatically, or with `PUT /_faults/<api>` on the emulator itself):
//! HTTP 429 with `Retry-After`, 500/503, added latency, timeouts (the answer
//! is held far longer than any client waits), and "apply the change, then
//! drop the response" (the request is served, the client gets a 502 instead).
//!
//! Who may send `PUT /_faults/<api>` is [`FaultsAccess`]: by default only a
//! request carrying one of that API's own keys (`Authorization: Bearer`, as
//! the API itself asks), or only a dedicated faults key, or (for local
//! development and tests) anyone.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use std::collections::BTreeMap;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

/// What to inject, each a probability between 0 and 1 of each request.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct FaultConfig {
    /// Answer 429 with `Retry-After: retryAfterSeconds`.
    pub rate_limit: f64,
    /// Seconds sent in `Retry-After`.
    pub retry_after_seconds: u64,
    /// Answer 500 or 503 (alternating).
    pub server_error: f64,
    /// Hold the answer for `timeoutSeconds`, longer than clients wait.
    pub timeout: f64,
    /// How long a timed-out answer is held.
    pub timeout_seconds: u64,
    /// Serve the request (the change happens), then answer 502 instead of the result.
    pub drop_after_apply: f64,
    /// Added latency on every request, in milliseconds.
    pub latency_ms: u64,
}

/// The faults of one API, and counts of what was injected.
#[derive(Default)]
pub struct Faults {
    config: Mutex<FaultConfig>,
    requests: AtomicU64,
    injected: AtomicU64,
    served: AtomicU64,
    /// Crash simulation: (served count to signal at, signal).
    crash: Mutex<Option<(u64, Arc<tokio::sync::Notify>)>>,
}

impl Faults {
    pub fn set(&self, config: FaultConfig) {
        *self.config.lock().unwrap_or_else(|p| p.into_inner()) = config;
    }

    pub fn clear(&self) {
        self.set(FaultConfig::default());
    }

    pub fn config(&self) -> FaultConfig {
        self.config
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Requests seen since start.
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    /// Signals once `n` more requests have been served (the change applied, the
    /// answer about to leave): a test drops the reconcile at that moment to
    /// simulate a crash right after a vendor call.
    pub fn signal_after(&self, n: u64) -> Arc<tokio::sync::Notify> {
        let notify = Arc::new(tokio::sync::Notify::new());
        let target = self.served.load(Ordering::SeqCst) + n;
        *self.crash.lock().unwrap_or_else(|p| p.into_inner()) = Some((target, notify.clone()));
        notify
    }

    /// Requests served (answered by the API, faults excluded) since start.
    pub fn served(&self) -> u64 {
        self.served.load(Ordering::SeqCst)
    }

    /// Faults injected since start.
    pub fn injected(&self) -> u64 {
        self.injected.load(Ordering::Relaxed)
    }
}

fn roll(probability: f64) -> bool {
    probability > 0.0 && rand::random::<f64>() < probability
}

/// The faults of one API and how that API words its errors: an injected
/// fault answers in the same body as the API's own errors.
#[derive(Clone)]
pub struct Injection {
    pub faults: Arc<Faults>,
    pub error_body: super::scaffold::ErrorBody,
}

impl Injection {
    fn error(&self, status: StatusCode, code: &str, message: &str) -> Response {
        (status, Json((self.error_body)(code, message))).into_response()
    }
}

/// The middleware that applies an API's faults to every request of it.
pub async fn inject(State(injection): State<Injection>, request: Request, next: Next) -> Response {
    let faults = &injection.faults;
    faults.requests.fetch_add(1, Ordering::Relaxed);
    let config = faults.config();
    if config.latency_ms > 0 {
        tokio::time::sleep(Duration::from_millis(config.latency_ms)).await;
    }
    if roll(config.rate_limit) {
        faults.injected.fetch_add(1, Ordering::Relaxed);
        let mut response = injection.error(
            StatusCode::TOO_MANY_REQUESTS,
            "RATE_LIMITED",
            "rate limited (injected)",
        );
        if let Ok(value) = HeaderValue::from_str(&config.retry_after_seconds.to_string()) {
            response.headers_mut().insert("retry-after", value);
        }
        return response;
    }
    if roll(config.server_error) {
        let n = faults.injected.fetch_add(1, Ordering::Relaxed);
        let status = if n % 2 == 0 {
            StatusCode::INTERNAL_SERVER_ERROR
        } else {
            StatusCode::SERVICE_UNAVAILABLE
        };
        return injection.error(status, "INTERNAL_ERROR", "server error (injected)");
    }
    if roll(config.timeout) {
        faults.injected.fetch_add(1, Ordering::Relaxed);
        tokio::time::sleep(Duration::from_secs(config.timeout_seconds.max(1))).await;
        return injection.error(
            StatusCode::GATEWAY_TIMEOUT,
            "TIMEOUT",
            "timed out (injected)",
        );
    }
    let response = next.run(request).await;
    let served = faults.served.fetch_add(1, Ordering::SeqCst) + 1;
    let signal = {
        let crash = faults.crash.lock().unwrap_or_else(|p| p.into_inner());
        crash
            .as_ref()
            .filter(|(target, _)| *target == served)
            .map(|(_, n)| n.clone())
    };
    if let Some(notify) = signal {
        notify.notify_one();
        // Hold the answer a moment so the signalled test drops the caller first.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    if roll(config.drop_after_apply) {
        faults.injected.fetch_add(1, Ordering::Relaxed);
        return injection.error(
            StatusCode::BAD_GATEWAY,
            "BAD_GATEWAY",
            "response dropped after the change was applied (injected)",
        );
    }
    response
}

/// Who may set faults with `PUT /_faults/<api>`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum FaultsAccess {
    /// A request with one of the keys of the API whose faults it sets, sent
    /// as that API asks for it (`Authorization: Bearer <key>`): whoever may
    /// use an emulated API may make it misbehave, nobody else. The default.
    #[default]
    ApiKeys,
    /// A request with one of these keys (`Authorization: Bearer <key>`), for
    /// every API; the APIs' own keys are refused. For an emulator whose
    /// clients hold the API keys but must not inject faults.
    Keys(Vec<String>),
    /// Anyone who reaches the emulator, without a key: for local development
    /// and tests on loopback only.
    Open,
}

impl FaultsAccess {
    /// How it reads in a log line.
    pub fn describe(&self) -> &'static str {
        match self {
            Self::ApiKeys => "needs the key of the API whose faults it sets",
            Self::Keys(_) => "needs the faults key",
            Self::Open => "open to anyone who reaches the emulator",
        }
    }
}

/// The `PUT /_faults/<api>` route's state: every API's faults, and the keys
/// that may set them (`None`: anyone).
#[derive(Clone)]
pub struct FaultsRoute {
    faults: Arc<BTreeMap<&'static str, Arc<Faults>>>,
    keys: Option<Arc<BTreeMap<&'static str, Vec<String>>>>,
}

impl FaultsRoute {
    /// `access` resolved against each API's own keys (`api_keys`, by name).
    pub fn new(
        faults: Arc<BTreeMap<&'static str, Arc<Faults>>>,
        access: &FaultsAccess,
        api_keys: impl Fn(&str) -> Vec<String>,
    ) -> Self {
        let keys = match access {
            FaultsAccess::Open => None,
            FaultsAccess::ApiKeys => Some(faults.keys().map(|api| (*api, api_keys(api))).collect()),
            FaultsAccess::Keys(keys) => {
                Some(faults.keys().map(|api| (*api, keys.clone())).collect())
            }
        };
        Self {
            faults,
            keys: keys.map(Arc::new),
        }
    }

    /// Why a request with `headers` may not set the faults of `api`, if it may not.
    fn refused(&self, api: &str, headers: &HeaderMap) -> Option<Response> {
        let keys = self.keys.as_ref()?;
        let Some(token) = super::scaffold::bearer_token(headers) else {
            let mut response = refusal(
                StatusCode::UNAUTHORIZED,
                "setting faults needs Authorization: Bearer <key>",
            );
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"dbops-emulator-faults\""),
            );
            return Some(response);
        };
        let accepted = keys
            .get(api)
            .is_some_and(|keys| keys.iter().any(|key| same_key(key, token)));
        (!accepted).then(|| {
            refusal(
                StatusCode::FORBIDDEN,
                "this key may not set the faults of this API",
            )
        })
    }
}

fn refusal(status: StatusCode, message: &str) -> Response {
    (status, Json(serde_json::json!({ "error": message }))).into_response()
}

/// Key comparison whose time does not depend on where the keys differ.
fn same_key(expected: &str, given: &str) -> bool {
    let (expected, given) = (expected.as_bytes(), given.as_bytes());
    expected.len() == given.len()
        && expected
            .iter()
            .zip(given)
            .fold(0u8, |diff, (a, b)| diff | (a ^ b))
            == 0
}

/// `PUT /_faults/<api>` with a [`FaultConfig`] body: 204 once set, 404 for
/// an API the emulator does not serve, 401 without a key, 403 with a key
/// that may not, 400 for a body that is not a fault configuration.
pub async fn set(
    State(route): State<FaultsRoute>,
    Path(api): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(faults) = route.faults.get(api.as_str()) else {
        return refusal(StatusCode::NOT_FOUND, "the emulator serves no such API");
    };
    if let Some(refused) = route.refused(&api, &headers) {
        return refused;
    }
    match serde_json::from_slice::<FaultConfig>(&body) {
        Ok(config) => {
            faults.set(config);
            StatusCode::NO_CONTENT.into_response()
        }
        Err(error) => refusal(
            StatusCode::BAD_REQUEST,
            &format!("not a fault configuration: {error}"),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_compare_equal_only_when_equal() {
        assert!(same_key("k1", "k1"));
        assert!(!same_key("k1", "k2"));
        assert!(!same_key("k1", "k10"));
        assert!(!same_key("k1", ""));
    }
}
