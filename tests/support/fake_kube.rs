//! An in-memory Kubernetes API server for controller tests.
//!
//! It speaks enough of the real API for kube-rs clients and controllers:
//! get, list (label and name selectors), watch (with history from a
//! resourceVersion), create, replace, delete with finalizers and
//! `deletionTimestamp`, merge / JSON / server-side-apply patches, the `status`
//! subresource, `metadata.generation`, owner-reference garbage collection,
//! `resourceVersion` preconditions on patches, `uid` and `resourceVersion`
//! preconditions on deletes, JSON-patch `test` failures (422),
//! and namespaces that terminate as the namespace controller does them
//! (creates refused with 403 `NamespaceTerminating`, contents deleted, the
//! namespace gone once empty). Objects are stored as sent, without schema
//! checks, so tests can store objects the operator cannot decode. Faults can be
//! injected per request, and every request is logged so tests can count writes.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex, MutexGuard};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Query, Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use serde_json::{Value, json};
use tokio::sync::broadcast;

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Key {
    /// `api/v1/secrets`, `apis/dbops.dev/v1alpha1/databaseprojects`, ...
    collection: String,
    namespace: String,
    name: String,
}

#[derive(Clone, Debug)]
struct WatchEvent {
    rv: u64,
    collection: String,
    namespace: String,
    kind: &'static str,
    object: Value,
}

/// A request the fake answers with an error instead of serving it.
#[derive(Clone, Debug)]
struct Fault {
    method: Method,
    path_contains: String,
    status: u16,
    /// Matching requests to let through before failing.
    skip: usize,
    remaining: usize,
}

/// One request as the fake saw it.
#[derive(Clone, Debug)]
pub struct Logged {
    pub method: Method,
    pub path: String,
    /// Whether the request was a watch (`?watch=true`).
    pub watch: bool,
    /// Whether it came from a [`FakeKube::test_client`] (the test, not the operator).
    pub from_test: bool,
}

#[derive(Default)]
struct State_ {
    rv: u64,
    uid: u64,
    objects: BTreeMap<Key, Value>,
    history: Vec<WatchEvent>,
    faults: Vec<Fault>,
    log: Vec<Logged>,
    /// Server-side apply ownership of `spec` leaves: (object, field) -> manager.
    owners: BTreeMap<(Key, String), String>,
}

struct Inner {
    state: Mutex<State_>,
    events: broadcast::Sender<WatchEvent>,
}

/// A running fake API server.
#[derive(Clone)]
pub struct FakeKube {
    inner: Arc<Inner>,
    pub url: String,
}

fn status_body(code: u16, reason: &str, message: &str) -> Value {
    json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    })
}

fn error(code: u16, reason: &str, message: impl Into<String>) -> Response {
    let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (
        status,
        axum::Json(status_body(code, reason, &message.into())),
    )
        .into_response()
}

/// RFC 7386 JSON merge patch.
fn merge(target: &mut Value, patch: &Value) {
    match patch {
        Value::Object(patch_map) => {
            if !target.is_object() {
                *target = json!({});
            }
            let map = target.as_object_mut().expect("object");
            for (k, v) in patch_map {
                if v.is_null() {
                    map.remove(k);
                } else {
                    merge(map.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        other => *target = other.clone(),
    }
}

struct Parsed {
    collection: String,
    namespace: String,
    name: Option<String>,
    subresource: Option<String>,
}

fn parse_path(path: &str) -> Option<Parsed> {
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (prefix, rest) = match segs.as_slice() {
        ["api", v, rest @ ..] => (format!("api/{v}"), rest),
        ["apis", g, v, rest @ ..] => (format!("apis/{g}/{v}"), rest),
        _ => return None,
    };
    let (namespace, rest) = match rest {
        ["namespaces", ns, rest @ ..] if !rest.is_empty() => (ns.to_string(), rest),
        rest => (String::new(), rest),
    };
    let (plural, name, sub) = match rest {
        [plural] => (plural, None, None),
        [plural, name] => (plural, Some(name.to_string()), None),
        [plural, name, sub] => (plural, Some(name.to_string()), Some(sub.to_string())),
        _ => return None,
    };
    Some(Parsed {
        collection: format!("{prefix}/{plural}"),
        namespace,
        name,
        subresource: sub,
    })
}

fn labels_match(object: &Value, selector: Option<&str>) -> bool {
    let Some(selector) = selector.filter(|s| !s.is_empty()) else {
        return true;
    };
    let labels = &object["metadata"]["labels"];
    selector.split(',').all(|term| match term.split_once('=') {
        Some((k, v)) => labels[k.trim_end_matches('=')].as_str() == Some(v),
        None => labels.get(term).is_some(),
    })
}

fn fields_match(object: &Value, selector: Option<&str>) -> bool {
    let Some(selector) = selector.filter(|s| !s.is_empty()) else {
        return true;
    };
    selector.split(',').all(|term| match term.split_once('=') {
        Some(("metadata.name", v)) => {
            object["metadata"]["name"].as_str() == Some(v.trim_start_matches('='))
        }
        Some(("metadata.namespace", v)) => {
            object["metadata"]["namespace"].as_str() == Some(v.trim_start_matches('='))
        }
        _ => true,
    })
}

impl FakeKube {
    /// Starts the server on a random loopback port.
    pub async fn start() -> Self {
        let (events, _) = broadcast::channel(4096);
        let inner = Arc::new(Inner {
            state: Mutex::default(),
            events,
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let app = Router::new().fallback(handle).with_state(inner.clone());
        tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Self { inner, url }
    }

    /// A kube client talking to this server.
    pub fn client(&self) -> kube::Client {
        let config = kube::Config::new(self.url.parse().unwrap());
        kube::Client::try_from(config).unwrap()
    }

    /// A kube client whose requests are marked as the test's own in the log.
    pub fn test_client(&self) -> kube::Client {
        let mut config = kube::Config::new(self.url.parse().unwrap());
        config.headers.push((
            axum::http::HeaderName::from_static("x-dbops-test"),
            axum::http::HeaderValue::from_static("1"),
        ));
        kube::Client::try_from(config).unwrap()
    }

    fn state(&self) -> MutexGuard<'_, State_> {
        self.inner.state.lock().unwrap()
    }

    /// Answers the next `count` requests with `method` whose path contains
    /// `path_contains` with HTTP `status`, without serving them.
    pub fn fail_next(&self, method: Method, path_contains: &str, status: u16, count: usize) {
        self.fail_after(method, path_contains, 0, status, count);
    }

    /// Like [`FakeKube::fail_next`], but lets the first `skip` matching requests through.
    pub fn fail_after(
        &self,
        method: Method,
        path_contains: &str,
        skip: usize,
        status: u16,
        count: usize,
    ) {
        self.state().faults.push(Fault {
            method,
            path_contains: path_contains.to_string(),
            status,
            skip,
            remaining: count,
        });
    }

    /// Every request so far.
    pub fn requests(&self) -> Vec<Logged> {
        self.state().log.clone()
    }

    /// Number of write requests (POST, PUT, PATCH, DELETE) so far, Events excluded.
    pub fn writes(&self) -> usize {
        self.state()
            .log
            .iter()
            .filter(|r| r.method != Method::GET && !r.path.contains("/events"))
            .count()
    }

    /// Clears the request log.
    pub fn clear_log(&self) {
        self.state().log.clear();
    }

    /// Raw stored objects of a collection (e.g. `apis/events.k8s.io/v1/events`).
    pub fn objects(&self, collection: &str) -> Vec<Value> {
        self.state()
            .objects
            .iter()
            .filter(|(k, _)| k.collection == collection)
            .map(|(_, v)| v.clone())
            .collect()
    }
}

impl Inner {
    fn commit(&self, state: &mut State_, key: &Key, kind: &'static str, object: Value) {
        let event = WatchEvent {
            rv: state.rv,
            collection: key.collection.clone(),
            namespace: key.namespace.clone(),
            kind,
            object,
        };
        state.history.push(event.clone());
        let _ = self.events.send(event);
    }

    fn next_rv(state: &mut State_) -> u64 {
        state.rv += 1;
        state.rv
    }

    /// Stores `object` under `key`, removing it instead when it is being deleted
    /// and has no finalizers left. Returns what the client should see.
    fn store(&self, state: &mut State_, key: &Key, mut object: Value, created: bool) -> Value {
        // Like the API server, fold a Secret's `stringData` into `data`.
        if let Some(Value::Object(strings)) =
            object.as_object_mut().and_then(|o| o.remove("stringData"))
        {
            use base64::Engine;
            for (k, v) in strings {
                let encoded = base64::engine::general_purpose::STANDARD
                    .encode(v.as_str().unwrap_or_default());
                object["data"][k] = json!(encoded);
            }
        }
        let rv = Self::next_rv(state);
        object["metadata"]["resourceVersion"] = json!(rv.to_string());
        // A namespace's own finalizer is `spec.finalizers` (the namespace
        // controller's), removed in `finish_namespaces`.
        let finalizers_left = ["/metadata/finalizers", "/spec/finalizers"]
            .iter()
            .any(|p| {
                object
                    .pointer(p)
                    .and_then(Value::as_array)
                    .is_some_and(|f| !f.is_empty())
            });
        if object["metadata"]["deletionTimestamp"].is_string() && !finalizers_left {
            state.objects.remove(key);
            self.commit(state, key, "DELETED", object.clone());
            self.collect_garbage(state, &object);
            self.finish_namespaces(state);
            return object;
        }
        state.objects.insert(key.clone(), object.clone());
        self.commit(
            state,
            key,
            if created { "ADDED" } else { "MODIFIED" },
            object.clone(),
        );
        object
    }

    /// Deletes every object owned by `owner` (background cascading deletion).
    fn collect_garbage(&self, state: &mut State_, owner: &Value) {
        let Some(uid) = owner["metadata"]["uid"].as_str() else {
            return;
        };
        let owned: Vec<Key> = state
            .objects
            .iter()
            .filter(|(_, v)| {
                v["metadata"]["ownerReferences"]
                    .as_array()
                    .is_some_and(|refs| refs.iter().any(|r| r["uid"].as_str() == Some(uid)))
            })
            .map(|(k, _)| k.clone())
            .collect();
        for key in owned {
            self.delete(state, &key);
        }
    }

    /// Deletes a namespace as the namespace controller does: marks it
    /// terminating (new objects in it are refused), deletes everything in it
    /// (finalizers still hold what they hold), and removes the namespace once
    /// it is empty.
    fn terminate_namespace(&self, state: &mut State_, name: &str) -> Option<Value> {
        let key = Key {
            collection: "api/v1/namespaces".into(),
            namespace: String::new(),
            name: name.to_string(),
        };
        let mut ns = state.objects.get(&key)?.clone();
        if !ns["metadata"]["deletionTimestamp"].is_string() {
            ns["metadata"]["deletionTimestamp"] = json!(jiff::Timestamp::now().to_string());
            ns["spec"]["finalizers"] = json!(["kubernetes"]);
            ns["status"]["phase"] = json!("Terminating");
            ns = self.store(state, &key, ns, false);
        }
        let contents: Vec<Key> = state
            .objects
            .keys()
            .filter(|k| k.namespace == name)
            .cloned()
            .collect();
        for k in contents {
            self.delete(state, &k);
        }
        self.finish_namespaces(state);
        Some(ns)
    }

    /// Removes terminating namespaces that have become empty.
    fn finish_namespaces(&self, state: &mut State_) {
        let done: Vec<Key> = state
            .objects
            .iter()
            .filter(|(k, v)| {
                k.collection == "api/v1/namespaces"
                    && v["metadata"]["deletionTimestamp"].is_string()
                    && !state.objects.keys().any(|o| o.namespace == k.name)
            })
            .map(|(k, _)| k.clone())
            .collect();
        for key in done {
            if let Some(object) = state.objects.remove(&key) {
                Self::next_rv(state);
                self.commit(state, &key, "DELETED", object);
            }
        }
    }

    fn delete(&self, state: &mut State_, key: &Key) -> Option<Value> {
        let mut object = state.objects.get(key)?.clone();
        let has_finalizers = object["metadata"]["finalizers"]
            .as_array()
            .is_some_and(|f| !f.is_empty());
        if has_finalizers {
            if !object["metadata"]["deletionTimestamp"].is_string() {
                object["metadata"]["deletionTimestamp"] = json!(jiff::Timestamp::now().to_string());
                return Some(self.store(state, key, object, false));
            }
            return Some(object);
        }
        // Like the API server, the DELETED event carries the deletion's
        // resourceVersion, not the last write's.
        let rv = Self::next_rv(state);
        object["metadata"]["resourceVersion"] = json!(rv.to_string());
        state.objects.remove(key);
        self.commit(state, key, "DELETED", object.clone());
        self.collect_garbage(state, &object);
        self.finish_namespaces(state);
        Some(object)
    }
}

async fn handle(
    State(inner): State<Arc<Inner>>,
    Query(query): Query<BTreeMap<String, String>>,
    headers: HeaderMap,
    request: Request,
) -> Response {
    let method = request.method().clone();
    let path = request.uri().path().to_string();
    let body: Bytes = match axum::body::to_bytes(request.into_body(), 16 * 1024 * 1024).await {
        Ok(b) => b,
        Err(_) => return error(400, "BadRequest", "unreadable body"),
    };
    {
        let mut state = inner.state.lock().unwrap();
        state.log.push(Logged {
            method: method.clone(),
            path: path.clone(),
            watch: query.get("watch").is_some_and(|w| w == "true" || w == "1"),
            from_test: headers.contains_key("x-dbops-test"),
        });
        if let Some(fault) = state
            .faults
            .iter_mut()
            .find(|f| f.remaining > 0 && f.method == method && path.contains(&f.path_contains))
        {
            if fault.skip > 0 {
                fault.skip -= 1;
            } else {
                fault.remaining -= 1;
                let status = fault.status;
                return error(status, "InternalError", "injected fault");
            }
        }
    }
    if path == "/version" {
        return axum::Json(json!({
            "major": "1", "minor": "33", "gitVersion": "v1.33.0-dbops-fake",
            "platform": "linux/amd64", "buildDate": "", "compiler": "", "gitCommit": "",
            "gitTreeState": "", "goVersion": "",
        }))
        .into_response();
    }
    let Some(parsed) = parse_path(&path) else {
        return error(404, "NotFound", format!("unknown path {path}"));
    };
    let is_watch = query.get("watch").is_some_and(|w| w == "true" || w == "1");
    match (method.clone(), &parsed.name) {
        (Method::GET, None) if is_watch => watch(inner, parsed, query),
        (Method::GET, None) => list(&inner, &parsed, &query),
        (Method::GET, Some(name)) => {
            let state = inner.state.lock().unwrap();
            let key = Key {
                collection: parsed.collection.clone(),
                namespace: parsed.namespace.clone(),
                name: name.clone(),
            };
            match state.objects.get(&key) {
                Some(v) => axum::Json(v.clone()).into_response(),
                None => error(
                    404,
                    "NotFound",
                    format!("{} {name} not found", parsed.collection),
                ),
            }
        }
        (Method::POST, None) => create(&inner, &parsed, &body),
        (Method::PUT, Some(name)) => replace(&inner, &parsed, name, &body),
        (Method::PATCH, Some(name)) => {
            let content_type = headers
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_string();
            patch(&inner, &parsed, name, &content_type, &body, &query)
        }
        (Method::DELETE, None) => {
            // deletecollection: every object of the collection (in the namespace).
            let mut state = inner.state.lock().unwrap();
            let keys: Vec<Key> = state
                .objects
                .keys()
                .filter(|k| {
                    k.collection == parsed.collection
                        && (parsed.namespace.is_empty() || k.namespace == parsed.namespace)
                })
                .cloned()
                .collect();
            for key in keys {
                inner.delete(&mut state, &key);
            }
            axum::Json(status_body(200, "", "")).into_response()
        }
        (Method::DELETE, Some(name)) if parsed.collection == "api/v1/namespaces" => {
            let mut state = inner.state.lock().unwrap();
            match inner.terminate_namespace(&mut state, name) {
                Some(v) => axum::Json(v).into_response(),
                None => error(404, "NotFound", format!("namespace {name} not found")),
            }
        }
        (Method::DELETE, Some(name)) => {
            let mut state = inner.state.lock().unwrap();
            let key = Key {
                collection: parsed.collection.clone(),
                namespace: parsed.namespace.clone(),
                name: name.clone(),
            };
            // DeleteOptions' preconditions, as the API server checks them.
            let options: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            if let Some(current) = state.objects.get(&key) {
                for (field, at) in [("uid", "uid"), ("resourceVersion", "resourceVersion")] {
                    let wanted = options["preconditions"][field].as_str();
                    let actual = current["metadata"][at].as_str();
                    if wanted.is_some() && wanted != actual {
                        return error(
                            409,
                            "Conflict",
                            format!(
                                "Precondition failed: {field} in precondition: {}, {field} in object meta: {}",
                                wanted.unwrap_or_default(),
                                actual.unwrap_or_default()
                            ),
                        );
                    }
                }
            }
            match inner.delete(&mut state, &key) {
                Some(v) => axum::Json(v).into_response(),
                None => error(404, "NotFound", format!("{name} not found")),
            }
        }
        _ => error(405, "MethodNotAllowed", format!("{method} {path}")),
    }
}

fn list(inner: &Inner, parsed: &Parsed, query: &BTreeMap<String, String>) -> Response {
    let state = inner.state.lock().unwrap();
    let items: Vec<Value> = state
        .objects
        .iter()
        .filter(|(k, _)| {
            k.collection == parsed.collection
                && (parsed.namespace.is_empty() || k.namespace == parsed.namespace)
        })
        .map(|(_, v)| v)
        .filter(|v| labels_match(v, query.get("labelSelector").map(String::as_str)))
        .filter(|v| fields_match(v, query.get("fieldSelector").map(String::as_str)))
        .cloned()
        .collect();
    // Paginated like the API server: `limit` items from the `continue` offset.
    let offset: usize = query
        .get("continue")
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let limit: usize = query
        .get("limit")
        .and_then(|l| l.parse().ok())
        .filter(|l| *l > 0)
        .unwrap_or(usize::MAX);
    let total = items.len();
    let page: Vec<Value> = items.into_iter().skip(offset).take(limit).collect();
    let mut metadata = json!({ "resourceVersion": state.rv.to_string() });
    if offset.saturating_add(limit) < total {
        metadata["continue"] = json!((offset + limit).to_string());
    }
    axum::Json(json!({
        "apiVersion": "v1",
        "kind": "List",
        "metadata": metadata,
        "items": page,
    }))
    .into_response()
}

fn watch(inner: Arc<Inner>, parsed: Parsed, query: BTreeMap<String, String>) -> Response {
    let from: u64 = query
        .get("resourceVersion")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let labels = query.get("labelSelector").cloned();
    let fields = query.get("fieldSelector").cloned();
    let matches = move |e: &WatchEvent| {
        e.collection == parsed.collection
            && (parsed.namespace.is_empty() || e.namespace == parsed.namespace)
            && labels_match(&e.object, labels.as_deref())
            && fields_match(&e.object, fields.as_deref())
    };
    let (backlog, receiver) = {
        let state = inner.state.lock().unwrap();
        let backlog: Vec<WatchEvent> = state
            .history
            .iter()
            .filter(|e| e.rv > from)
            .cloned()
            .collect();
        (backlog, inner.events.subscribe())
    };
    let last_backlog = backlog.last().map(|e| e.rv).unwrap_or(from);
    let matches_live = matches.clone();
    let live = futures::stream::unfold(receiver, |mut rx| async move {
        loop {
            match rx.recv().await {
                Ok(event) => return Some((event, rx)),
                Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    })
    .filter(move |e| futures::future::ready(e.rv > last_backlog && matches_live(e)));
    let stream = futures::stream::iter(backlog.into_iter().filter(move |e| matches(e)))
        .chain(live)
        .map(|e| {
            let mut line =
                serde_json::to_vec(&json!({ "type": e.kind, "object": e.object })).unwrap();
            line.push(b'\n');
            Ok::<_, Infallible>(Bytes::from(line))
        });
    Response::builder()
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from_stream(stream))
        .unwrap()
}

fn new_metadata(
    state: &mut State_,
    object: &mut Value,
    parsed: &Parsed,
) -> Result<String, Box<Response>> {
    let name = match object["metadata"]["name"].as_str() {
        Some(n) => n.to_string(),
        None => match object["metadata"]["generateName"].as_str() {
            Some(prefix) => {
                state.uid += 1;
                format!("{prefix}{:05}", state.uid)
            }
            None => return Err(Box::new(error(422, "Invalid", "metadata.name is required"))),
        },
    };
    state.uid += 1;
    let meta = &mut object["metadata"];
    meta["name"] = json!(name);
    if !parsed.namespace.is_empty() {
        meta["namespace"] = json!(parsed.namespace);
    }
    meta["uid"] = json!(format!("00000000-0000-0000-0000-{:012}", state.uid));
    meta["creationTimestamp"] = json!(jiff::Timestamp::now().to_string());
    meta["generation"] = json!(1);
    Ok(name)
}

/// The 403 the API server's NamespaceLifecycle admission answers for new
/// objects in a namespace being deleted.
fn namespace_terminating(namespace: &str) -> Response {
    let mut body = status_body(
        403,
        "Forbidden",
        &format!(
            "unable to create new content in namespace {namespace} because it is being terminated"
        ),
    );
    body["details"] = json!({
        "name": namespace,
        "kind": "namespaces",
        "causes": [{
            "reason": "NamespaceTerminating",
            "message": format!("namespace {namespace} is being terminated"),
            "field": "metadata.namespace",
        }],
    });
    (StatusCode::FORBIDDEN, axum::Json(body)).into_response()
}

fn terminating(state: &State_, namespace: &str) -> bool {
    !namespace.is_empty()
        && state
            .objects
            .get(&Key {
                collection: "api/v1/namespaces".into(),
                namespace: String::new(),
                name: namespace.to_string(),
            })
            .is_some_and(|ns| ns["metadata"]["deletionTimestamp"].is_string())
}

fn create(inner: &Inner, parsed: &Parsed, body: &[u8]) -> Response {
    let Ok(mut object) = serde_json::from_slice::<Value>(body) else {
        return error(400, "BadRequest", "invalid JSON");
    };
    let mut state = inner.state.lock().unwrap();
    if terminating(&state, &parsed.namespace) {
        return namespace_terminating(&parsed.namespace);
    }
    let name = match new_metadata(&mut state, &mut object, parsed) {
        Ok(n) => n,
        Err(r) => return *r,
    };
    let key = Key {
        collection: parsed.collection.clone(),
        namespace: parsed.namespace.clone(),
        name: name.clone(),
    };
    if state.objects.contains_key(&key) {
        return error(409, "AlreadyExists", format!("{name} already exists"));
    }
    let stored = inner.store(&mut state, &key, object, true);
    (StatusCode::CREATED, axum::Json(stored)).into_response()
}

/// Applies the rules of a write to an existing object: the status subresource
/// changes only status, the main resource never changes status, identity fields
/// stay, and `generation` counts spec changes.
fn finish_update(old: &Value, mut new: Value, subresource: Option<&str>) -> Value {
    if subresource == Some("status") {
        let mut out = old.clone();
        out["status"] = new["status"].take();
        return out;
    }
    if old.get("status").is_some() || new.get("status").is_some() {
        match old.get("status") {
            Some(s) => new["status"] = s.clone(),
            None => {
                if let Some(map) = new.as_object_mut() {
                    map.remove("status");
                }
            }
        }
    }
    for field in [
        "uid",
        "creationTimestamp",
        "namespace",
        "name",
        "deletionTimestamp",
    ] {
        match old["metadata"].get(field) {
            Some(v) => new["metadata"][field] = v.clone(),
            None => {
                if let Some(meta) = new["metadata"].as_object_mut() {
                    meta.remove(field);
                }
            }
        }
    }
    let generation = old["metadata"]["generation"].as_i64().unwrap_or(1);
    let spec_changed = old.get("spec") != new.get("spec");
    new["metadata"]["generation"] = json!(if spec_changed {
        generation + 1
    } else {
        generation
    });
    new
}

fn replace(inner: &Inner, parsed: &Parsed, name: &str, body: &[u8]) -> Response {
    let Ok(new) = serde_json::from_slice::<Value>(body) else {
        return error(400, "BadRequest", "invalid JSON");
    };
    let mut state = inner.state.lock().unwrap();
    let key = Key {
        collection: parsed.collection.clone(),
        namespace: parsed.namespace.clone(),
        name: name.to_string(),
    };
    let Some(old) = state.objects.get(&key).cloned() else {
        return error(404, "NotFound", format!("{name} not found"));
    };
    if let Some(rv) = new["metadata"]["resourceVersion"].as_str()
        && Some(rv) != old["metadata"]["resourceVersion"].as_str()
    {
        return error(409, "Conflict", "the object has been modified");
    }
    let updated = finish_update(&old, new, parsed.subresource.as_deref());
    axum::Json(inner.store(&mut state, &key, updated, false)).into_response()
}

fn patch(
    inner: &Inner,
    parsed: &Parsed,
    name: &str,
    content_type: &str,
    body: &[u8],
    query: &BTreeMap<String, String>,
) -> Response {
    let Ok(patch) = serde_json::from_slice::<Value>(body) else {
        return error(400, "BadRequest", "invalid patch JSON");
    };
    let mut state = inner.state.lock().unwrap();
    let key = Key {
        collection: parsed.collection.clone(),
        namespace: parsed.namespace.clone(),
        name: name.to_string(),
    };
    let is_apply = content_type.starts_with("application/apply-patch");
    let old = match state.objects.get(&key).cloned() {
        Some(old) => old,
        None if is_apply && parsed.subresource.is_none() => {
            if terminating(&state, &parsed.namespace) {
                return namespace_terminating(&parsed.namespace);
            }
            // Server-side apply creates missing objects.
            let mut object = patch.clone();
            if let Err(r) = new_metadata(&mut state, &mut object, parsed) {
                return *r;
            }
            return axum::Json(inner.store(&mut state, &key, object, true)).into_response();
        }
        None => return error(404, "NotFound", format!("{name} not found")),
    };
    // Server-side apply conflicts, for `spec` leaves (enough for Lease-based
    // leader election): applying a value over one another manager set is a 409
    // unless forced.
    let manager = query.get("fieldManager").cloned().unwrap_or_default();
    let force = query.get("force").is_some_and(|f| f == "true");
    let spec_leaves: Vec<(String, Value)> = patch
        .get("spec")
        .and_then(Value::as_object)
        .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
        .unwrap_or_default();
    if is_apply && !force {
        for (field, value) in &spec_leaves {
            let current = &old["spec"][field.as_str()];
            let owner = state.owners.get(&(key.clone(), field.clone()));
            if !current.is_null() && current != value && owner.is_some_and(|o| *o != manager) {
                return error(
                    409,
                    "Conflict",
                    format!("Apply failed with 1 conflict: conflict with {owner:?}: .spec.{field}"),
                );
            }
        }
    }
    for (field, value) in &spec_leaves {
        if value.is_null() {
            state.owners.remove(&(key.clone(), field.clone()));
        } else {
            state
                .owners
                .insert((key.clone(), field.clone()), manager.clone());
        }
    }
    let mut new = old.clone();
    if content_type.starts_with("application/json-patch") {
        let Ok(mut ops) = serde_json::from_value::<json_patch::Patch>(patch) else {
            return error(400, "BadRequest", "invalid JSON patch");
        };
        // Like the API server, a `test` for null passes when the path is absent.
        ops.0.retain(|op| match op {
            json_patch::PatchOperation::Test(t) => {
                !(t.value.is_null() && new.pointer(t.path.as_str()).is_none())
            }
            _ => true,
        });
        if let Err(e) = json_patch::patch(&mut new, &ops) {
            return error(422, "Invalid", format!("JSON patch failed: {e}"));
        }
    } else if !is_apply
        && let Some(rv) = patch["metadata"]["resourceVersion"].as_str()
        && Some(rv) != old["metadata"]["resourceVersion"].as_str()
    {
        // A resourceVersion in a patch is a precondition, as on the API server.
        return error(
            409,
            "Conflict",
            "Operation cannot be fulfilled: the object has been modified; please apply your changes to the latest version and try again",
        );
    } else if is_apply {
        // One field manager writes each object here, so applying its full intent
        // replaces `status` and Secret `data` wholesale and merges the rest.
        let mut patch = patch;
        for field in ["status", "data"] {
            if let Some(v) = patch.as_object_mut().and_then(|m| m.remove(field)) {
                new[field] = v;
            }
        }
        merge(&mut new, &patch);
    } else {
        merge(&mut new, &patch);
    }
    let updated = finish_update(&old, new, parsed.subresource.as_deref());
    axum::Json(inner.store(&mut state, &key, updated, false)).into_response()
}
