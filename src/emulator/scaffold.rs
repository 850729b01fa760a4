//! What every emulated vendor API is built on, written once: the state
//! container (one lock, saved to and loaded from the state file), record
//! sequence numbers and creation order, and Bearer auth.
//!
//! A vendor module keeps only its routes, its wire models and its rules: it
//! implements [`Vendor`] (routes, keys, error body, its auth rules where the
//! document has its own) and [`serve`] does the rest.

use std::sync::{Arc, Mutex, MutexGuard};

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::wire::ApiError;

/// One emulated vendor API: what its module supplies to be served.
pub trait Vendor: Send + Sync + Sized + 'static {
    /// The API's routes, relative to its path prefix, with their fallbacks;
    /// [`serve`] puts them behind Bearer auth.
    fn routes() -> Router<Arc<Self>>;

    /// The Bearer keys the account accepts.
    fn api_keys(&self) -> &ApiKeys;

    /// The body of an error answer, in the shape the vendor documents.
    fn error_body(code: &str, message: &str) -> Value;

    /// The parts of the state file this API keeps, each under its key.
    fn sections(&self) -> Vec<(&'static str, &dyn Persistent)>;

    /// Whether a request with the Bearer `token` may go on. By default: when
    /// the token is one of [`Vendor::api_keys`], whatever the method.
    fn authorize(&self, token: &str, _method: &Method) -> Result<(), Refusal> {
        if self.api_keys().accepts(token) {
            Ok(())
        } else {
            Err(Refusal::UnknownToken)
        }
    }

    /// The answer to a refused request. By default 401 `missing
    /// Authorization: Bearer header` or `invalid API key`, and 403 `token
    /// lacks required scope`.
    fn refuse(refusal: Refusal) -> ApiError<Self> {
        match refusal {
            Refusal::MissingToken => ApiError::new(
                StatusCode::UNAUTHORIZED,
                "missing Authorization: Bearer header",
            ),
            Refusal::UnknownToken => ApiError::new(StatusCode::UNAUTHORIZED, "invalid API key"),
            Refusal::LacksScope => {
                ApiError::new(StatusCode::FORBIDDEN, "token lacks required scope")
            }
        }
    }
}

/// The routes of `vendor`, behind its Bearer auth.
pub fn serve<V: Vendor>(vendor: Arc<V>) -> Router {
    V::routes()
        .layer(middleware::from_fn_with_state(
            vendor.clone(),
            authenticate::<V>,
        ))
        .with_state(vendor)
}

/// The Bearer keys an emulated account accepts; every accepted key sees the
/// same account.
pub struct ApiKeys(Vec<String>);

impl ApiKeys {
    pub fn new(keys: Vec<String>) -> Self {
        Self(keys)
    }

    /// Whether `token` is one of the keys.
    pub fn accepts(&self, token: &str) -> bool {
        self.0.iter().any(|k| k == token)
    }
}

/// Why a request is refused before it reaches the API.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// No `Authorization: Bearer` header.
    MissingToken,
    /// A token the account does not accept.
    UnknownToken,
    /// A token that may not make this request.
    LacksScope,
}

/// The Bearer token of a request, if it has one.
pub fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(str::trim)
}

/// Middleware: the request goes on only with a token `vendor` accepts.
async fn authenticate<V: Vendor>(
    State(vendor): State<Arc<V>>,
    request: Request,
    next: Next,
) -> Response {
    let verdict = match bearer_token(request.headers()) {
        None => Err(Refusal::MissingToken),
        Some(token) => vendor.authorize(token, request.method()),
    };
    match verdict {
        Ok(()) => next.run(request).await,
        Err(refusal) => V::refuse(refusal).into_response(),
    }
}

/// A vendor's model state behind one lock. Every request of the vendor holds
/// the lock for the whole of its change, so requests apply one at a time.
#[derive(Default)]
pub struct Store<S>(Mutex<S>);

impl<S> Store<S> {
    /// The state, locked. A handler that panicked while holding it leaves the
    /// state as it was at the panic; the emulator goes on serving it.
    pub fn lock(&self) -> MutexGuard<'_, S> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// A part of the emulator's state that the state file holds.
pub trait Persistent: Send + Sync {
    /// The whole state, as the state file holds it.
    fn save(&self) -> Result<Value, serde_json::Error>;
    /// Replaces the state with one read from the state file.
    fn load(&self, saved: Value) -> Result<(), serde_json::Error>;
}

impl<S: Serialize + DeserializeOwned + Send> Persistent for Store<S> {
    fn save(&self) -> Result<Value, serde_json::Error> {
        serde_json::to_value(&*self.lock())
    }

    fn load(&self, saved: Value) -> Result<(), serde_json::Error> {
        *self.lock() = serde_json::from_value(saved)?;
        Ok(())
    }
}

/// Numbers records in creation order (saved as a bare number).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct Sequence(u64);

impl Sequence {
    /// The next number: 1 for the first record, never repeated.
    pub fn next(&mut self) -> u64 {
        self.0 += 1;
        self.0
    }
}

/// `items` sorted by their sequence number, oldest first.
pub fn oldest_first<T>(items: impl IntoIterator<Item = T>, seq: impl Fn(&T) -> u64) -> Vec<T> {
    let mut items: Vec<T> = items.into_iter().collect();
    items.sort_by_key(|item| seq(item));
    items
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default, Serialize, serde::Deserialize, PartialEq, Debug)]
    struct Model {
        next_seq: Sequence,
        names: Vec<String>,
    }

    #[test]
    fn a_store_saves_and_loads_its_whole_state() {
        let store = Store::<Model>::default();
        {
            let mut model = store.lock();
            assert_eq!(model.next_seq.next(), 1);
            assert_eq!(model.next_seq.next(), 2);
            model.names.push("a".into());
        }
        let saved = store.save().unwrap();
        // The sequence is saved as a bare number, as the state file always held it.
        assert_eq!(saved, serde_json::json!({ "next_seq": 2, "names": ["a"] }));

        let other = Store::<Model>::default();
        other.load(saved).unwrap();
        assert_eq!(other.lock().names, ["a"]);
        assert_eq!(other.lock().next_seq.next(), 3);
        // A state of the wrong shape is refused and leaves the state alone.
        assert!(other.load(serde_json::json!({ "names": 7 })).is_err());
        assert_eq!(other.lock().names, ["a"]);
    }

    #[test]
    fn a_store_survives_a_panic_while_locked() {
        let store = std::sync::Arc::new(Store::<Model>::default());
        let held = store.clone();
        let _ = std::thread::spawn(move || {
            held.lock().names.push("before".into());
            let _guard = held.lock();
            panic!("handler bug");
        })
        .join();
        assert_eq!(store.lock().names, ["before"]);
    }

    /// `GET` and `POST /thing`, and a fallback in the vendor's shape.
    fn thing_routes<V: Vendor>() -> Router<Arc<V>> {
        Router::new()
            .route(
                "/thing",
                axum::routing::get(|| async { "got" }).post(|| async { "posted" }),
            )
            .fallback(|| async { ApiError::<V>::new(StatusCode::NOT_FOUND, "nothing here") })
    }

    /// A vendor with the default auth rules and an error body of its own.
    struct Plain {
        keys: ApiKeys,
    }

    impl Vendor for Plain {
        fn routes() -> Router<Arc<Self>> {
            thing_routes()
        }
        fn api_keys(&self) -> &ApiKeys {
            &self.keys
        }
        fn error_body(code: &str, message: &str) -> Value {
            serde_json::json!({ "c": code, "m": message })
        }
        fn sections(&self) -> Vec<(&'static str, &dyn Persistent)> {
            Vec::new()
        }
    }

    /// A vendor whose read-only token may only `GET`, with its own refusals.
    struct Scoped {
        keys: ApiKeys,
    }

    impl Vendor for Scoped {
        fn routes() -> Router<Arc<Self>> {
            thing_routes()
        }
        fn api_keys(&self) -> &ApiKeys {
            &self.keys
        }
        fn error_body(_code: &str, message: &str) -> Value {
            serde_json::json!({ "message": message })
        }
        fn sections(&self) -> Vec<(&'static str, &dyn Persistent)> {
            Vec::new()
        }
        fn authorize(&self, token: &str, method: &Method) -> Result<(), Refusal> {
            match token {
                "reader" if method == Method::GET => Ok(()),
                "reader" => Err(Refusal::LacksScope),
                _ if self.keys.accepts(token) => Ok(()),
                _ => Err(Refusal::UnknownToken),
            }
        }
        fn refuse(refusal: Refusal) -> ApiError<Self> {
            ApiError::new(StatusCode::UNAUTHORIZED, format!("refused: {refusal:?}"))
        }
    }

    /// Serves `router` on a free port and makes one request; (status, body).
    async fn call(
        router: Router,
        method: reqwest::Method,
        authorization: Option<&str>,
        path: &str,
    ) -> (u16, String) {
        crate::providers::http::ensure_crypto_provider();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move { axum::serve(listener, router).await });
        let mut request = reqwest::Client::new().request(method, format!("http://{addr}{path}"));
        if let Some(value) = authorization {
            request = request.header("authorization", value);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let body = response.text().await.unwrap();
        server.abort();
        (status, body)
    }

    fn plain() -> Router {
        serve(Arc::new(Plain {
            keys: ApiKeys::new(vec!["k1".into(), "k2".into()]),
        }))
    }

    #[tokio::test]
    async fn bearer_auth_lets_only_the_accounts_keys_in() {
        let get = reqwest::Method::GET;
        assert_eq!(
            call(plain(), get.clone(), Some("Bearer k2"), "/thing").await,
            (200, "got".into())
        );
        // White space around the token does not matter; the scheme does.
        assert_eq!(
            call(plain(), get.clone(), Some("Bearer  k1 "), "/thing")
                .await
                .0,
            200
        );
        let missing = r#"{"c":"UNAUTHORIZED","m":"missing Authorization: Bearer header"}"#;
        let invalid = r#"{"c":"UNAUTHORIZED","m":"invalid API key"}"#;
        for (authorization, body) in [
            (None, missing),
            (Some("k1"), missing),
            (Some("bearer k1"), missing),
            (Some("Basic azE6"), missing),
            (Some("Bearer k3"), invalid),
            (Some("Bearer k1 k2"), invalid),
        ] {
            assert_eq!(
                call(plain(), get.clone(), authorization, "/thing").await,
                (401, body.to_string()),
                "{authorization:?}"
            );
        }
        // Unknown paths are refused before the vendor's fallback is reached.
        assert_eq!(
            call(plain(), get.clone(), None, "/nope").await,
            (401, missing.to_string())
        );
        assert_eq!(
            call(plain(), get, Some("Bearer k1"), "/nope").await,
            (404, r#"{"c":"NOT_FOUND","m":"nothing here"}"#.to_string())
        );
    }

    #[tokio::test]
    async fn a_vendor_can_scope_tokens_and_word_its_refusals() {
        let scoped = || {
            serve(Arc::new(Scoped {
                keys: ApiKeys::new(vec!["writer".into()]),
            }))
        };
        let (get, post) = (reqwest::Method::GET, reqwest::Method::POST);
        assert_eq!(
            call(scoped(), get.clone(), Some("Bearer reader"), "/thing").await,
            (200, "got".into())
        );
        assert_eq!(
            call(scoped(), post.clone(), Some("Bearer reader"), "/thing").await,
            (401, r#"{"message":"refused: LacksScope"}"#.into())
        );
        assert_eq!(
            call(scoped(), post.clone(), Some("Bearer writer"), "/thing").await,
            (200, "posted".into())
        );
        assert_eq!(
            call(scoped(), post.clone(), Some("Bearer other"), "/thing").await,
            (401, r#"{"message":"refused: UnknownToken"}"#.into())
        );
        assert_eq!(
            call(scoped(), post, None, "/thing").await,
            (401, r#"{"message":"refused: MissingToken"}"#.into())
        );
    }

    #[test]
    fn the_bearer_token_is_what_follows_the_scheme_trimmed() {
        let token = |value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(header::AUTHORIZATION, value.parse().unwrap());
            bearer_token(&headers).map(str::to_string)
        };
        assert_eq!(token("Bearer abc"), Some("abc".into()));
        assert_eq!(token("Bearer \tabc  "), Some("abc".into()));
        assert_eq!(token("Bearer "), Some(String::new()));
        assert_eq!(token("Token abc"), None);
        assert_eq!(bearer_token(&HeaderMap::new()), None);
    }

    #[test]
    fn the_default_refusals() {
        let body = |r| {
            let e = Plain::refuse(r);
            (e.status.as_u16(), e.code, e.message)
        };
        assert_eq!(
            body(Refusal::LacksScope),
            (403, "FORBIDDEN", "token lacks required scope".into())
        );
        assert_eq!(
            body(Refusal::UnknownToken),
            (401, "UNAUTHORIZED", "invalid API key".into())
        );
    }

    #[test]
    fn oldest_first_orders_by_sequence() {
        let items = vec![(3, "c"), (1, "a"), (2, "b")];
        let sorted = oldest_first(items, |(seq, _)| *seq);
        assert_eq!(sorted, [(1, "a"), (2, "b"), (3, "c")]);
    }
}
