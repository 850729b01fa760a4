//! HTTP plumbing shared by every vendor client: auth, timeouts, bounded
//! response bodies, error classification and request metrics.

use std::sync::{Arc, Once};
use std::time::{Duration, Instant};

use reqwest::header::{AUTHORIZATION, HeaderMap, HeaderValue, RETRY_AFTER};
use reqwest::{Method, StatusCode};
use secrecy::{ExposeSecret, SecretString};
use serde::de::DeserializeOwned;
use url::Url;

use super::error::ProviderError;
use crate::api::v1alpha1::ProviderApi;
use crate::metrics::Metrics;

/// Largest response body accepted from a vendor; anything bigger is refused, not buffered.
pub const MAX_RESPONSE_BYTES: usize = 4 * 1024 * 1024;
/// Longest vendor error message kept (in errors, conditions and Events).
const MAX_ERROR_MESSAGE_CHARS: usize = 300;

static CRYPTO_PROVIDER: Once = Once::new();

/// Installs rustls' ring provider once per process (reqwest is built without one,
/// so that the operator carries a single crypto library, the one kube uses).
pub fn ensure_crypto_provider() {
    CRYPTO_PROVIDER.call_once(|| {
        // Err means another provider is installed already, which is fine.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

tokio::task_local! {
    /// Whether the current reconcile has already made a vendor call.
    static RECONCILE_ADMITTED: std::cell::Cell<bool>;
}

/// Runs `work` as one reconcile for the request budget: its first vendor call
/// over a provider's budget fails fast with [`ProviderError::Throttled`]
/// instead of waiting (see [`VendorHttp`]'s budget).
pub async fn reconcile_scope<F: std::future::Future>(work: F) -> F::Output {
    RECONCILE_ADMITTED
        .scope(std::cell::Cell::new(false), work)
        .await
}

/// An authenticated HTTP client for one vendor API account.
#[derive(Clone)]
pub struct VendorHttp {
    api: ProviderApi,
    client: reqwest::Client,
    base: Url,
    metrics: Option<Arc<Metrics>>,
    /// The provider's request budget (`spec.requestBudget`), shared by every
    /// controller that talks to it.
    budget: Option<Arc<governor::DefaultDirectRateLimiter>>,
}

impl std::fmt::Debug for VendorHttp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VendorHttp")
            .field("api", &self.api)
            .field("base", &self.base.as_str())
            .finish_non_exhaustive()
    }
}

/// The invalid piece of a provider's configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("endpoint {endpoint:?} is not a valid http(s) URL")]
    InvalidEndpoint { endpoint: String },
    #[error("the API key contains characters not allowed in an HTTP header")]
    InvalidApiKey,
    #[error("cannot build the HTTP client: {0}")]
    Client(String),
}

impl VendorHttp {
    /// A client for `endpoint` that sends `Authorization: Bearer <api_key>` on every request.
    pub fn new(
        api: ProviderApi,
        endpoint: &str,
        api_key: &SecretString,
        timeout: Duration,
        metrics: Option<Arc<Metrics>>,
    ) -> Result<Self, ConfigError> {
        Self::with_hosts(api, endpoint, api_key, timeout, metrics, &[])
    }

    /// [`VendorHttp::new`], connecting to a fixed address for each host name
    /// in `hosts` instead of looking it up (like curl's `--resolve`; the port
    /// still comes from the endpoint).
    pub fn with_hosts(
        api: ProviderApi,
        endpoint: &str,
        api_key: &SecretString,
        timeout: Duration,
        metrics: Option<Arc<Metrics>>,
        hosts: &[(String, std::net::SocketAddr)],
    ) -> Result<Self, ConfigError> {
        ensure_crypto_provider();
        let mut base = Url::parse(endpoint).map_err(|_| ConfigError::InvalidEndpoint {
            endpoint: endpoint.to_string(),
        })?;
        if !matches!(base.scheme(), "http" | "https") || base.cannot_be_a_base() {
            return Err(ConfigError::InvalidEndpoint {
                endpoint: endpoint.to_string(),
            });
        }
        if !base.path().ends_with('/') {
            let path = format!("{}/", base.path());
            base.set_path(&path);
        }
        let mut auth = HeaderValue::from_str(&format!("Bearer {}", api_key.expose_secret()))
            .map_err(|_| ConfigError::InvalidApiKey)?;
        auth.set_sensitive(true);
        let mut headers = HeaderMap::new();
        headers.insert(AUTHORIZATION, auth);
        let mut builder = reqwest::Client::builder();
        for (host, addr) in hosts {
            builder = builder.resolve(host, *addr);
        }
        let client = builder
            .default_headers(headers)
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(10)))
            .user_agent(concat!("dbops/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ConfigError::Client(e.to_string()))?;
        Ok(Self {
            api,
            client,
            base,
            metrics,
            budget: None,
        })
    }

    /// Limits this client to `per_second` requests per second with bursts of
    /// `burst`. Requests over the budget are never dropped: they wait their
    /// turn, or, as the first call of a reconcile, fail fast with
    /// [`ProviderError::Throttled`] so the reconcile is requeued.
    pub fn with_budget(mut self, per_second: u32, burst: u32) -> Self {
        if let (Some(rate), Some(burst)) = (
            std::num::NonZeroU32::new(per_second),
            std::num::NonZeroU32::new(burst.max(1)),
        ) {
            let quota = governor::Quota::per_second(rate).allow_burst(burst);
            self.budget = Some(Arc::new(governor::RateLimiter::direct(quota)));
        }
        self
    }

    /// Which API this client talks to.
    pub fn api(&self) -> ProviderApi {
        self.api
    }

    /// Sends one request and decodes a JSON answer.
    ///
    /// `operation` names the call in errors and metrics (e.g. `db.project.get`);
    /// `path` is the list of path segments below the endpoint. Each segment is
    /// percent-encoded, so an id such as `../x` cannot leave its place.
    pub async fn call<T: DeserializeOwned>(
        &self,
        operation: &str,
        method: Method,
        path: &[&str],
        query: &[(&str, String)],
        body: Option<&serde_json::Value>,
    ) -> Result<T, ProviderError> {
        let bytes = self.call_raw(operation, method, path, query, body).await?;
        serde_json::from_slice(&bytes).map_err(|e| ProviderError::InvalidResponse {
            api: self.api,
            operation: operation.to_string(),
            message: format!("cannot decode JSON: {e}"),
        })
    }

    /// Like [`VendorHttp::call`], returning the raw body of a 2xx answer.
    pub async fn call_raw(
        &self,
        operation: &str,
        method: Method,
        path: &[&str],
        query: &[(&str, String)],
        body: Option<&serde_json::Value>,
    ) -> Result<Vec<u8>, ProviderError> {
        let url = self.url(path);
        let mut request = self.client.request(method, url);
        if !query.is_empty() {
            request = request.query(query);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        if let Some(budget) = &self.budget {
            self.admit(budget, operation).await?;
        }
        let started = Instant::now();
        let result = self.exchange(operation, request).await;
        if let Some(metrics) = &self.metrics {
            let status = match &result {
                Ok((status, _)) => status.as_u16().to_string(),
                Err(ProviderError::Http { status, .. }) => status.to_string(),
                Err(ProviderError::Transport { timeout: true, .. }) => "timeout".to_string(),
                Err(_) => "error".to_string(),
            };
            metrics.observe_vendor_request(self.api, operation, &status, started.elapsed());
        }
        result.map(|(_, body)| body)
    }

    /// Takes one request from the budget. The first vendor call of a
    /// reconcile ([`reconcile_scope`]) does not wait: over budget, it fails at
    /// once with [`ProviderError::Throttled`] and the reconcile is requeued for
    /// when the budget allows, so a throttled provider never parks reconcile
    /// slots that other providers' objects could use. Once a reconcile has
    /// made a call it is committed, and its later calls wait their turn
    /// (otherwise a reconcile of several calls could be cut short forever).
    /// Outside a reconcile every call waits.
    async fn admit(
        &self,
        budget: &governor::DefaultDirectRateLimiter,
        operation: &str,
    ) -> Result<(), ProviderError> {
        if let Err(not_until) = budget.check() {
            let first_call = RECONCILE_ADMITTED
                .try_with(|admitted| !admitted.get())
                .unwrap_or(false);
            if first_call {
                use governor::clock::Clock;
                let now = governor::clock::DefaultClock::default().now();
                return Err(ProviderError::Throttled {
                    api: self.api,
                    operation: operation.to_string(),
                    wait: not_until.wait_time_from(now),
                });
            }
            budget.until_ready().await;
        }
        let _ = RECONCILE_ADMITTED.try_with(|admitted| admitted.set(true));
        Ok(())
    }

    fn url(&self, path: &[&str]) -> Url {
        let mut url = self.base.clone();
        if let Ok(mut segments) = url.path_segments_mut() {
            // The base ends with '/', which leaves an empty last segment to replace.
            segments.pop_if_empty().extend(path);
        }
        url
    }

    async fn exchange(
        &self,
        operation: &str,
        request: reqwest::RequestBuilder,
    ) -> Result<(StatusCode, Vec<u8>), ProviderError> {
        let transport = |e: reqwest::Error| ProviderError::Transport {
            api: self.api,
            operation: operation.to_string(),
            timeout: e.is_timeout(),
            // reqwest's Display holds the URL (ids, never credentials: the key is a header).
            message: e.without_url().to_string(),
        };
        let mut response = request.send().await.map_err(transport)?;
        let status = response.status();
        let retry_after = parse_retry_after(response.headers().get(RETRY_AFTER));
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(transport)? {
            if body.len() + chunk.len() > MAX_RESPONSE_BYTES {
                return Err(ProviderError::InvalidResponse {
                    api: self.api,
                    operation: operation.to_string(),
                    message: format!("response body larger than {MAX_RESPONSE_BYTES} bytes"),
                });
            }
            body.extend_from_slice(&chunk);
        }
        if status.is_success() {
            return Ok((status, body));
        }
        let (code, message) = parse_error_body(&body);
        Err(ProviderError::Http {
            api: self.api,
            operation: operation.to_string(),
            status: status.as_u16(),
            code,
            message: message.unwrap_or_else(|| {
                status
                    .canonical_reason()
                    .unwrap_or("unexpected status")
                    .to_string()
            }),
            retry_after,
        })
    }
}

/// [`parse_error_body`] for the fuzzing entry point.
pub(crate) fn parse_error_body_for_fuzzing(body: &[u8]) -> (Option<String>, Option<String>) {
    parse_error_body(body)
}

/// `Retry-After` in delta-seconds (the form vendors use for 429/503); HTTP dates are ignored.
fn parse_retry_after(value: Option<&HeaderValue>) -> Option<Duration> {
    let seconds: u64 = value?.to_str().ok()?.trim().parse().ok()?;
    Some(Duration::from_secs(seconds.min(3600)))
}

/// Pulls `(code, message)` out of the error shapes the vendors use:
/// `{"error": {"code", "message"}}` (infrai), `{"message"}` (DB9, Supabase),
/// `{"error": "..."}` (CapyDB).
fn parse_error_body(body: &[u8]) -> (Option<String>, Option<String>) {
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(body) else {
        return (None, None);
    };
    let text = |v: Option<&serde_json::Value>| v.and_then(|v| v.as_str()).map(truncate);
    match value.get("error") {
        Some(serde_json::Value::Object(inner)) => {
            (text(inner.get("code")), text(inner.get("message")))
        }
        Some(serde_json::Value::String(message)) => {
            (text(value.get("code")), Some(truncate(message)))
        }
        _ => (text(value.get("code")), text(value.get("message"))),
    }
}

fn truncate(s: &str) -> String {
    let mut out: String = s.chars().take(MAX_ERROR_MESSAGE_CHARS).collect();
    if out.len() < s.len() {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_shapes_of_every_vendor_are_understood() {
        assert_eq!(
            parse_error_body(br#"{"error":{"code":"NOT_FOUND","message":"no such project"}}"#),
            (Some("NOT_FOUND".into()), Some("no such project".into()))
        );
        assert_eq!(
            parse_error_body(br#"{"message":"database not found"}"#),
            (None, Some("database not found".into()))
        );
        assert_eq!(
            parse_error_body(br#"{"error":"job failed"}"#),
            (None, Some("job failed".into()))
        );
        assert_eq!(parse_error_body(b"<html>bad gateway</html>"), (None, None));
    }

    #[test]
    fn long_vendor_messages_are_cut() {
        let long = format!(r#"{{"message":"{}"}}"#, "x".repeat(10_000));
        let (_, message) = parse_error_body(long.as_bytes());
        let message = message.unwrap();
        assert!(message.chars().count() <= MAX_ERROR_MESSAGE_CHARS + 1);
        assert!(message.ends_with('…'));
    }

    #[test]
    fn retry_after_seconds_are_read_and_capped() {
        let v = HeaderValue::from_static("7");
        assert_eq!(parse_retry_after(Some(&v)), Some(Duration::from_secs(7)));
        let v = HeaderValue::from_static("999999");
        assert_eq!(parse_retry_after(Some(&v)), Some(Duration::from_secs(3600)));
        let v = HeaderValue::from_static("Wed, 21 Oct 2015 07:28:00 GMT");
        assert_eq!(parse_retry_after(Some(&v)), None);
        assert_eq!(parse_retry_after(None), None);
    }

    #[test]
    fn endpoints_must_be_http_urls() {
        let key = SecretString::from("k".to_string());
        let t = Duration::from_secs(1);
        assert!(VendorHttp::new(ProviderApi::Infrai, "ftp://x", &key, t, None).is_err());
        assert!(VendorHttp::new(ProviderApi::Infrai, "not a url", &key, t, None).is_err());
        let ok = VendorHttp::new(
            ProviderApi::Infrai,
            "http://127.0.0.1:1/infrai",
            &key,
            t,
            None,
        )
        .unwrap();
        assert_eq!(ok.base.as_str(), "http://127.0.0.1:1/infrai/");
        assert_eq!(
            ok.url(&["v1", "db", "project", "get", "../../admin?x=1"])
                .as_str(),
            "http://127.0.0.1:1/infrai/v1/db/project/get/..%2F..%2Fadmin%3Fx=1"
        );
    }

    #[test]
    fn debug_output_never_shows_the_key() {
        let key = SecretString::from("ifr_pk_proj_SUPERSECRET".to_string());
        let http = VendorHttp::new(
            ProviderApi::Infrai,
            "http://127.0.0.1:1",
            &key,
            Duration::from_secs(1),
            None,
        )
        .unwrap();
        assert!(!format!("{http:?}").contains("SUPERSECRET"));
    }
}
