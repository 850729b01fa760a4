//! What every emulated vendor API is built on, written once: the state
//! container (one lock, saved to and loaded from the state file), record
//! sequence numbers and creation order, Bearer auth, cursor pagination and
//! idempotency keys.
//!
//! A vendor module keeps only its routes, its wire models and its rules: it
//! implements [`Vendor`] (routes, keys, error body, its auth rules where the
//! document has its own) and [`serve`] does the rest.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::wire::{ApiError, optional_str};

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

/// An error of vendor `V` is answered in the body `V` documents.
impl<V: Vendor> IntoResponse for ApiError<V> {
    fn into_response(self) -> Response {
        (self.status, Json(V::error_body(self.code, &self.message))).into_response()
    }
}

/// A vendor API as the emulator holds it, whatever the vendor.
/// How an API words an error body: `(code, message)` to its documented shape.
pub type ErrorBody = fn(&str, &str) -> Value;

pub trait Served: Send + Sync {
    /// The API's routes, behind its auth, on its state.
    fn router(self: Arc<Self>) -> Router;
    /// Its error body, for answers made outside its routes (injected faults).
    fn error_body(&self) -> ErrorBody;
    /// The parts of the state file this API keeps, each under its key.
    fn sections(&self) -> Vec<(&'static str, &dyn Persistent)>;
}

impl<V: Vendor> Served for V {
    fn router(self: Arc<Self>) -> Router {
        serve(self)
    }

    fn error_body(&self) -> ErrorBody {
        V::error_body
    }

    fn sections(&self) -> Vec<(&'static str, &dyn Persistent)> {
        Vendor::sections(self)
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
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
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

/// The query of a paginated list: `?cursor=...&limit=...`.
#[derive(Debug, Default, Deserialize)]
pub struct PageQuery {
    pub cursor: Option<String>,
    pub limit: Option<String>,
}

/// Page sizes of a vendor's paginated lists.
pub struct Paging {
    /// Items on a page when the request does not say.
    pub default_size: usize,
    /// The largest `limit` a request may ask for.
    pub max_size: usize,
}

impl Paging {
    /// Cursor pagination over `(sequence number, item)` pairs, oldest first:
    /// the page the query asks for, and the cursor of the next page if there
    /// are more items. The cursor is opaque to clients and names the last item
    /// returned. A `limit` out of `1..=max_size` or a cursor not made here is a 400.
    pub fn page<T, V>(
        &self,
        mut items: Vec<(u64, T)>,
        query: &PageQuery,
    ) -> Result<(Vec<T>, Option<String>), ApiError<V>> {
        let limit = match &query.limit {
            None => self.default_size,
            Some(raw) => match raw.parse::<usize>() {
                Ok(n) if (1..=self.max_size).contains(&n) => n,
                _ => {
                    return Err(ApiError::bad_request(format!(
                        "limit must be between 1 and {}",
                        self.max_size
                    )));
                }
            },
        };
        let after = match &query.cursor {
            None => 0,
            Some(cursor) => cursor
                .strip_prefix("cur_")
                .and_then(|s| s.parse::<u64>().ok())
                .ok_or_else(|| ApiError::bad_request("invalid cursor"))?,
        };
        items.sort_by_key(|(seq, _)| *seq);
        let mut rest = items.into_iter().filter(|(seq, _)| *seq > after).peekable();
        let mut page = Vec::new();
        let mut last = after;
        while page.len() < limit {
            match rest.next() {
                Some((seq, item)) => {
                    last = seq;
                    page.push(item);
                }
                None => break,
            }
        }
        let next = rest.peek().map(|_| format!("cur_{last}"));
        Ok((page, next))
    }
}

/// What idempotent calls did, by idempotency key: (the request without its
/// key, the outcome: by default the response). String keys, so the cache is
/// saved with the rest of the state.
pub type IdempotencyCache<T = Value> = HashMap<String, (Value, T)>;

/// A model state that remembers idempotent calls.
pub trait HasIdempotency {
    fn idempotency(&mut self) -> &mut IdempotencyCache;
}

/// Takes the `idempotency_key` field out of a request body (400 when it is not
/// a string); what is left is the request a retry must repeat.
pub fn take_idempotency_key<V>(
    request: &mut Map<String, Value>,
) -> Result<Option<String>, ApiError<V>> {
    let key = optional_str(request, "idempotency_key")?;
    request.remove("idempotency_key");
    Ok(key)
}

/// What an earlier call with idempotency key `key` left: nothing for a new
/// key, its outcome when `request` is the same, and a 409 when it differs.
pub fn replay<'a, T, V>(
    cache: &'a IdempotencyCache<T>,
    key: &str,
    request: &Value,
) -> Result<Option<&'a T>, ApiError<V>> {
    match cache.get(key) {
        None => Ok(None),
        Some((previous, outcome)) if previous == request => Ok(Some(outcome)),
        Some(_) => Err(ApiError::coded(
            StatusCode::CONFLICT,
            "IDEMPOTENCY_CONFLICT",
            "idempotency_key was already used with a different request",
        )),
    }
}

impl<S: HasIdempotency> Store<S> {
    /// Runs `create` on the locked state once per (capability, idempotency
    /// key): a retry with the same key and the same request answers the first
    /// response; a different request is a 409. Without a key, every call runs.
    /// A failed call is not remembered.
    pub fn idempotent<V>(
        &self,
        capability: &'static str,
        mut request: Map<String, Value>,
        create: impl FnOnce(&mut S, &Map<String, Value>) -> Result<Value, ApiError<V>>,
    ) -> Result<Json<Value>, ApiError<V>> {
        let mut state = self.lock();
        let Some(key) = take_idempotency_key(&mut request)? else {
            return create(&mut *state, &request).map(Json);
        };
        let key = format!("{capability} {key}");
        let fingerprint = Value::Object(request.clone());
        if let Some(response) = replay(state.idempotency(), &key, &fingerprint)? {
            return Ok(Json(response.clone()));
        }
        let response = create(&mut *state, &request)?;
        state
            .idempotency()
            .insert(key, (fingerprint, response.clone()));
        Ok(Json(response))
    }
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

    const PAGING: Paging = Paging {
        default_size: 20,
        max_size: 100,
    };

    fn q(cursor: Option<&str>, limit: Option<&str>) -> PageQuery {
        PageQuery {
            cursor: cursor.map(str::to_string),
            limit: limit.map(str::to_string),
        }
    }

    fn page(
        items: Vec<(u64, u64)>,
        query: &PageQuery,
    ) -> Result<(Vec<u64>, Option<String>), ApiError<()>> {
        PAGING.page(items, query)
    }

    #[test]
    fn pagination_walks_every_item_once_in_creation_order() {
        let items: Vec<(u64, u64)> = (1..=45).rev().map(|i| (i, i * 10)).collect();
        let mut seen = Vec::new();
        let mut sizes = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let (items, next) = page(items.clone(), &q(cursor.as_deref(), None)).unwrap();
            sizes.push(items.len());
            seen.extend(items);
            match next {
                Some(next) => cursor = Some(next),
                None => break,
            }
        }
        assert_eq!(seen, (1..=45).map(|i| i * 10).collect::<Vec<_>>());
        // Pages of the default size; the last page says there is no next one.
        assert_eq!(sizes, [20, 20, 5]);
    }

    #[test]
    fn pagination_honours_the_limit_and_names_the_last_item_in_the_cursor() {
        let items = vec![(4, 40), (9, 90), (2, 20)];
        assert_eq!(
            page(items.clone(), &q(None, Some("2"))).unwrap(),
            (vec![20, 40], Some("cur_4".to_string()))
        );
        assert_eq!(
            page(items.clone(), &q(Some("cur_4"), Some("2"))).unwrap(),
            (vec![90], None)
        );
        // Exactly a page left: no cursor to an empty page.
        assert_eq!(
            page(items.clone(), &q(None, Some("3"))).unwrap(),
            (vec![20, 40, 90], None)
        );
        // A cursor past the end is an empty page, not an error.
        assert_eq!(
            page(items, &q(Some("cur_99"), None)).unwrap(),
            (vec![], None)
        );
    }

    #[test]
    fn pagination_rejects_bad_limits_and_cursors() {
        let message = |query| page(vec![(1, 1)], &query).unwrap_err().message;
        assert_eq!(
            message(q(None, Some("0"))),
            "limit must be between 1 and 100"
        );
        assert_eq!(
            message(q(None, Some("101"))),
            "limit must be between 1 and 100"
        );
        assert_eq!(
            message(q(None, Some("ten"))),
            "limit must be between 1 and 100"
        );
        assert_eq!(message(q(Some("garbage"), None)), "invalid cursor");
        assert_eq!(message(q(Some("cur_x"), None)), "invalid cursor");
        assert!(page(vec![(1, 1)], &q(None, Some("100"))).is_ok());
    }

    #[derive(Default)]
    struct Remembers {
        idempotency: IdempotencyCache,
        creates: u64,
    }

    impl HasIdempotency for Remembers {
        fn idempotency(&mut self) -> &mut IdempotencyCache {
            &mut self.idempotency
        }
    }

    fn body(value: Value) -> Map<String, Value> {
        match value {
            Value::Object(map) => map,
            _ => unreachable!(),
        }
    }

    /// Creates a record numbered by the call, named as the request says.
    fn create(
        store: &Store<Remembers>,
        capability: &'static str,
        request: Value,
    ) -> Result<Value, ApiError<()>> {
        store
            .idempotent(capability, body(request), |state, request| {
                if request.contains_key("fail") {
                    return Err(ApiError::bad_request("asked to fail"));
                }
                state.creates += 1;
                Ok(serde_json::json!({ "n": state.creates, "name": request["name"] }))
            })
            .map(|Json(v)| v)
    }

    #[test]
    fn a_retry_with_the_same_key_and_request_answers_the_first_response() {
        let store = Store::<Remembers>::default();
        let first = create(
            &store,
            "x.create",
            serde_json::json!({ "name": "a", "idempotency_key": "k" }),
        )
        .unwrap();
        let again = create(
            &store,
            "x.create",
            serde_json::json!({ "name": "a", "idempotency_key": "k" }),
        )
        .unwrap();
        assert_eq!(first, serde_json::json!({ "n": 1, "name": "a" }));
        assert_eq!(again, first);
        assert_eq!(store.lock().creates, 1);

        // The key is scoped to its capability.
        let other = create(
            &store,
            "y.create",
            serde_json::json!({ "name": "a", "idempotency_key": "k" }),
        )
        .unwrap();
        assert_eq!(other["n"], 2);
        // Without a key every call runs, and the key is not part of the request.
        create(&store, "x.create", serde_json::json!({ "name": "a" })).unwrap();
        create(&store, "x.create", serde_json::json!({ "name": "a" })).unwrap();
        assert_eq!(store.lock().creates, 4);
    }

    #[test]
    fn a_reused_key_with_another_request_is_a_conflict() {
        let store = Store::<Remembers>::default();
        create(
            &store,
            "x.create",
            serde_json::json!({ "name": "a", "idempotency_key": "k" }),
        )
        .unwrap();
        let error = create(
            &store,
            "x.create",
            serde_json::json!({ "name": "b", "idempotency_key": "k" }),
        )
        .unwrap_err();
        assert_eq!(
            (error.status, error.code, error.message.as_str()),
            (
                StatusCode::CONFLICT,
                "IDEMPOTENCY_CONFLICT",
                "idempotency_key was already used with a different request"
            )
        );
        assert_eq!(store.lock().creates, 1);
    }

    #[test]
    fn a_failed_call_is_not_remembered_and_a_bad_key_is_refused() {
        let store = Store::<Remembers>::default();
        let error = create(
            &store,
            "x.create",
            serde_json::json!({ "fail": true, "idempotency_key": "k" }),
        )
        .unwrap_err();
        assert_eq!(error.message, "asked to fail");
        // The key is free: a different request with it now runs.
        assert_eq!(
            create(
                &store,
                "x.create",
                serde_json::json!({ "name": "a", "idempotency_key": "k" })
            )
            .unwrap()["n"],
            1
        );
        let error = create(
            &store,
            "x.create",
            serde_json::json!({ "name": "a", "idempotency_key": 7 }),
        )
        .unwrap_err();
        assert_eq!(
            (error.status, error.message.as_str()),
            (StatusCode::BAD_REQUEST, "idempotency_key must be a string")
        );
    }

    #[test]
    fn replay_returns_the_saved_outcome_of_the_same_request_only() {
        let mut cache: IdempotencyCache<String> = HashMap::new();
        let request = serde_json::json!({ "backup_id": "b1" });
        cache.insert("k".into(), (request.clone(), "rst_1".into()));
        let found: Option<&String> = replay::<_, ()>(&cache, "k", &request).unwrap();
        assert_eq!(found.map(String::as_str), Some("rst_1"));
        assert_eq!(replay::<_, ()>(&cache, "other", &request).unwrap(), None);
        let other = serde_json::json!({ "backup_id": "b2" });
        assert_eq!(
            replay::<_, ()>(&cache, "k", &other).unwrap_err().status,
            StatusCode::CONFLICT
        );

        let mut request = body(serde_json::json!({ "a": 1, "idempotency_key": "k" }));
        assert_eq!(
            take_idempotency_key::<()>(&mut request).unwrap(),
            Some("k".into())
        );
        assert_eq!(Value::Object(request), serde_json::json!({ "a": 1 }));
    }

    #[test]
    fn oldest_first_orders_by_sequence() {
        let items = vec![(3, "c"), (1, "a"), (2, "b")];
        let sorted = oldest_first(items, |(seq, _)| *seq);
        assert_eq!(sorted, [(1, "a"), (2, "b"), (3, "c")]);
    }
}
