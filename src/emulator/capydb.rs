//! Emulated capydb API (`vendor-apis/capydb.txt`). Work in progress: answers 404 to everything.

use std::sync::Arc;

use axum::Router;
use axum::http::StatusCode;

/// The emulated capydb account(s).
pub struct CapyDbEmulator {
    #[allow(dead_code)]
    api_keys: Vec<String>,
}

impl CapyDbEmulator {
    pub fn new(api_keys: Vec<String>) -> Self {
        Self { api_keys }
    }
}

/// Routes of the emulated capydb API.
pub fn router(emulator: Arc<CapyDbEmulator>) -> Router {
    let _ = emulator;
    Router::new().fallback(|| async { StatusCode::NOT_FOUND })
}
