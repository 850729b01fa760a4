//! Emulated supabase API (`vendor-apis/supabase.txt`). Work in progress: answers 404 to everything.

use std::sync::Arc;

use axum::Router;
use axum::http::StatusCode;

/// The emulated supabase account(s).
pub struct SupabaseEmulator {
    #[allow(dead_code)]
    api_keys: Vec<String>,
}

impl SupabaseEmulator {
    pub fn new(api_keys: Vec<String>) -> Self {
        Self { api_keys }
    }
}

/// Routes of the emulated supabase API.
pub fn router(emulator: Arc<SupabaseEmulator>) -> Router {
    let _ = emulator;
    Router::new().fallback(|| async { StatusCode::NOT_FOUND })
}
