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

    /// Faults injected since start.
    pub fn injected(&self) -> u64 {
        self.injected.load(Ordering::Relaxed)
    }
}

fn roll(probability: f64) -> bool {
    probability > 0.0 && rand::random::<f64>() < probability
}

fn error(status: StatusCode, message: &str) -> Response {
    (
        status,
        Json(serde_json::json!({ "message": message, "error": message })),
    )
        .into_response()
}

/// The middleware that applies `faults` to every request of one API.
pub async fn inject(State(faults): State<Arc<Faults>>, request: Request, next: Next) -> Response {
    faults.requests.fetch_add(1, Ordering::Relaxed);
    let config = faults.config();
    if config.latency_ms > 0 {
        tokio::time::sleep(Duration::from_millis(config.latency_ms)).await;
    }
    if roll(config.rate_limit) {
        faults.injected.fetch_add(1, Ordering::Relaxed);
        let mut response = error(StatusCode::TOO_MANY_REQUESTS, "rate limited (injected)");
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
        return error(status, "server error (injected)");
    }
    if roll(config.timeout) {
        faults.injected.fetch_add(1, Ordering::Relaxed);
        tokio::time::sleep(Duration::from_secs(config.timeout_seconds.max(1))).await;
        return error(StatusCode::GATEWAY_TIMEOUT, "timed out (injected)");
    }
    let response = next.run(request).await;
    if roll(config.drop_after_apply) {
        faults.injected.fetch_add(1, Ordering::Relaxed);
        return error(
            StatusCode::BAD_GATEWAY,
            "response dropped after the change was applied (injected)",
        );
    }
    response
}
