//! Emulated db9 API (`vendor-apis/db9.txt`). Work in progress: answers 404 to everything.

use std::sync::Arc;

use axum::Router;
use axum::http::StatusCode;

/// The emulated db9 account(s).
pub struct Db9Emulator {
    #[allow(dead_code)]
    api_keys: Vec<String>,
}

impl Db9Emulator {
    pub fn new(api_keys: Vec<String>) -> Self {
        Self { api_keys }
    }
}

/// Routes of the emulated db9 API.
pub fn router(emulator: Arc<Db9Emulator>) -> Router {
    let _ = emulator;
    Router::new().fallback(|| async { StatusCode::NOT_FOUND })
}
