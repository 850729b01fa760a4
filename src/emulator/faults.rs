//! Fault injection for the emulated APIs, configurable at runtime per API
//! (programmatically, or with `PUT /_faults/<api>` on the emulator itself):
//! HTTP 429 with `Retry-After`, 500/503, added latency, timeouts (the answer
//! is held far longer than any client waits), and "apply the change, then
//! drop the response" (the request is served, the client gets a 502 instead).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Json;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode};
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
