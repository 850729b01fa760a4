//! Emulated infrai `/v1/byok` API (`vendor-apis/infrai-byok.txt`): register,
//! list, get, update, enable, disable, test, revoke, bind, unbind, policy
//! get/set, quota set, usage, events, rotate, rotate.stage and rotate.commit.
//!
//! Credential values are write-only: no response ever contains them.
//!
//! Where the document's example and its parameter table disagree, the table is
//! the contract. The `byok.register` example sends
//! `{"provider", "module", "api_key"}`, but the table requires `provider`,
//! `alias` and `credentials` (a record of credential fields) and has no
//! `module`; this emulator (and the dbops client) follow the table, and answer
//! the example's shape with a 400 that says so.
//!
//! The document does not say how a credential is probed. Here a probe fails when
//! any credential value contains [`REJECTED_MARKER`], so tests and demos can
//! stage a bad key on purpose; every other value passes.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{delete, get, patch, post};
use serde_json::{Map, Value, json};

use crate::emulator::base::scaffold::{
    HasIdempotency, IdempotencyCache, PageQuery, Persistent, Sequence, Store, Vendor, oldest_first,
};
use crate::emulator::base::wire::{
    ApiError, json_object, now_rfc3339, optional_str, random_token, required_str, set_optional,
};

/// A credential value containing this string fails the emulator's probe.
pub const REJECTED_MARKER: &str = "invalid";
const POLICY_MODES: &[&str] = &["byok_only", "byok_then_pool"];
const QUOTA_WINDOWS: &[&str] = &["1d", "7d", "30d", "mtd", "ytd"];

#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
struct Binding {
    capability: Option<String>,
    module: Option<String>,
    model: Option<String>,
}

#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
struct Stage {
    api_key: String,
    probe_ok: bool,
}

#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
struct ByokRecord {
    seq: u64,
    id: String,
    provider: String,
    label: String,
    /// `active`, `disabled` or `revoked`.
    state: String,
    credentials: BTreeMap<String, String>,
    bindings: Vec<Binding>,
    quota: Option<Value>,
    created_at: String,
    stages: HashMap<String, Stage>,
    events: Vec<(u64, Value)>,
    spend_usd: f64,
    call_count: u64,
}

#[derive(Default, serde::Serialize, serde::Deserialize)]
struct ByokModel {
    seq: Sequence,
    keys: HashMap<String, ByokRecord>,
    policy: Option<Value>,
    idempotency: IdempotencyCache,
}

impl HasIdempotency for ByokModel {
    fn idempotency(&mut self) -> &mut IdempotencyCache {
        &mut self.idempotency
    }
}

/// State of the emulated BYOK module.
#[derive(Default)]
pub struct ByokState {
    model: Store<ByokModel>,
}

/// The vendor API the BYOK module is part of (infrai's): where the module's
/// state is, and how that API pages a list. The module's answers take the
/// API's error body. The BYOK module knows the infrai emulator only through
/// this trait, which the infrai emulator implements.
pub trait ByokHost: Vendor {
    /// The BYOK module's state.
    fn byok(&self) -> &ByokState;

    /// The page of `items` (sequence number, item) that `query` asks for, in
    /// the API's list shape.
    fn page(items: Vec<(u64, Value)>, query: &PageQuery) -> Answer<Self>;
}

impl ByokState {
    /// The module's state, as the state file keeps it.
    pub(super) fn persistent(&self) -> &dyn Persistent {
        &self.model
    }

    /// The credential fields in force for `id` (tests check rotations with this).
    pub fn active_credentials(&self, id: &str) -> Option<BTreeMap<String, String>> {
        self.model
            .lock()
            .keys
            .get(id)
            .map(|k| k.credentials.clone())
    }

    /// `(state, label, bindings as (capability, module, model))` of `id`.
    #[allow(clippy::type_complexity)]
    pub fn summary(
        &self,
        id: &str,
    ) -> Option<(
        String,
        String,
        Vec<(Option<String>, Option<String>, Option<String>)>,
    )> {
        self.model.lock().keys.get(id).map(|k| {
            (
                k.state.to_string(),
                k.label.clone(),
                k.bindings
                    .iter()
                    .map(|b| (b.capability.clone(), b.module.clone(), b.model.clone()))
                    .collect(),
            )
        })
    }

    /// The quota last set on `id`, as the request carried it.
    pub fn quota(&self, id: &str) -> Option<Value> {
        self.model.lock().keys.get(id).and_then(|k| k.quota.clone())
    }

    /// Number of registered credentials (revoked ones included).
    pub fn count(&self) -> usize {
        self.model.lock().keys.len()
    }

    /// Types of the events of `id`, oldest first.
    pub fn event_types(&self, id: &str) -> Vec<String> {
        self.model
            .lock()
            .keys
            .get(id)
            .map(|k| {
                k.events
                    .iter()
                    .filter_map(|(_, e)| e["type"].as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Records usage as if routed calls had gone through `id`.
    pub fn record_usage(&self, id: &str, spend_usd: f64, calls: u64) {
        if let Some(k) = self.model.lock().keys.get_mut(id) {
            k.spend_usd += spend_usd;
            k.call_count += calls;
        }
    }

    /// The account's routing policy, as `policy.get` answers it.
    pub fn policy(&self) -> Value {
        policy_json(&self.model.lock())
    }
}

fn probe(credentials: &BTreeMap<String, String>) -> (bool, Value) {
    let ok = !credentials.values().any(|v| v.contains(REJECTED_MARKER));
    let latency = rand::random_range(15..80u64);
    let result = if ok {
        json!({ "ok": true, "latency_ms": latency })
    } else {
        // Never echo the credential: say what failed, not with what.
        json!({ "ok": false, "latency_ms": latency, "error": "the vendor rejected the credential (HTTP 401)" })
    };
    (ok, result)
}

fn bindings_json(k: &ByokRecord) -> Value {
    Value::Array(
        k.bindings
            .iter()
            .map(|b| {
                let mut v = Map::new();
                for (field, value) in [
                    ("capability", &b.capability),
                    ("module", &b.module),
                    ("model", &b.model),
                ] {
                    if let Some(value) = value {
                        v.insert(field.to_string(), json!(value));
                    }
                }
                Value::Object(v)
            })
            .collect(),
    )
}

/// `ByokConfig { byok_id, provider, label?, state, bindings[], created_at }` (plus `quota` once set).
fn config_json(k: &ByokRecord) -> Value {
    let mut v = json!({
        "byok_id": k.id,
        "provider": k.provider,
        "label": k.label,
        "state": k.state,
        "bindings": bindings_json(k),
        "created_at": k.created_at,
    });
    set_optional(&mut v, "quota", k.quota.clone());
    v
}

/// `ByokKey { byok_id, provider, alias, state, created_at, test_result? }`.
fn key_json(k: &ByokRecord, test_result: Option<Value>) -> Value {
    let mut v = json!({
        "byok_id": k.id,
        "provider": k.provider,
        "alias": k.label,
        "state": k.state,
        "created_at": k.created_at,
    });
    set_optional(&mut v, "test_result", test_result);
    v
}

fn policy_json(model: &ByokModel) -> Value {
    model
        .policy
        .clone()
        .unwrap_or_else(|| json!({ "mode": "byok_then_pool" }))
}

impl ByokModel {
    fn seq(&mut self) -> u64 {
        self.seq.next()
    }

    fn event(&mut self, id: &str, kind: &str, detail: Value) {
        let seq = self.seq();
        if let Some(k) = self.keys.get_mut(id) {
            k.events.push((
                seq,
                json!({ "id": format!("evt_{seq}"), "type": kind, "created_at": now_rfc3339(), "detail": detail }),
            ));
        }
    }

    /// The credential `id`, which must not be revoked.
    fn live<H>(&mut self, id: &str) -> Result<&mut ByokRecord, ApiError<H>> {
        match self.keys.get_mut(id) {
            None => Err(ApiError::not_found("BYOK credential", id)),
            Some(k) if k.state == "revoked" => Err(ApiError::coded(
                StatusCode::CONFLICT,
                "REVOKED",
                format!("BYOK credential {id} is revoked"),
            )),
            Some(k) => Ok(k),
        }
    }
}

type Answer<H> = Result<Json<Value>, ApiError<H>>;

/// Routes of `/v1/byok/...` (mounted with the rest of infrai, behind its auth).
pub(super) fn routes<H: ByokHost>() -> Router<Arc<H>> {
    Router::new()
        .route("/v1/byok/register", post(register::<H>))
        .route("/v1/byok/list", get(list::<H>))
        .route("/v1/byok/test/{id}", post(test::<H>))
        .route("/v1/byok/revoke/{id}", delete(revoke::<H>))
        .route("/v1/byok/get/{id}", get(get_config::<H>))
        .route("/v1/byok/update/{id}", patch(update::<H>))
        .route("/v1/byok/enable/{id}", post(enable::<H>))
        .route("/v1/byok/disable/{id}", post(disable::<H>))
        .route("/v1/byok/bind/{id}", post(bind::<H>))
        .route("/v1/byok/unbind/{id}", post(unbind::<H>))
        .route("/v1/byok/policy/get", get(policy_get::<H>))
        .route("/v1/byok/policy/set", post(policy_set::<H>))
        .route("/v1/byok/quota/set/{id}", post(quota_set::<H>))
        .route("/v1/byok/usage/{id}", get(usage::<H>))
        .route("/v1/byok/events/{id}", get(events::<H>))
        .route("/v1/byok/rotate/{id}", post(rotate::<H>))
        .route("/v1/byok/rotate/stage/{id}", post(rotate_stage::<H>))
        .route("/v1/byok/rotate/commit/{id}", post(rotate_commit::<H>))
}

/// The body of a per-credential call, with the path id folded in so that an
/// idempotency key is scoped to its credential.
fn body_with_id<H>(body: &[u8], id: &str) -> Result<Map<String, Value>, ApiError<H>> {
    let mut body = json_object(body)?;
    body.insert("id".to_string(), json!(id));
    Ok(body)
}

async fn register<H: ByokHost>(State(emu): State<Arc<H>>, body: Bytes) -> Answer<H> {
    let body = json_object(&body)?;
    emu.byok().model.idempotent("byok.register", body, |model, body| {
        let provider = required_str(body, "provider")?;
        let Some(alias) = optional_str(body, "alias")?.filter(|a| !a.is_empty()) else {
            return Err(ApiError::bad_request(
                "alias is required (the register example omits it; the parameter table requires it)",
            ));
        };
        let credentials = match body.get("credentials") {
            Some(Value::Object(fields)) if !fields.is_empty() => {
                let mut out = BTreeMap::new();
                for (k, v) in fields {
                    let Some(v) = v.as_str() else {
                        return Err(ApiError::bad_request(format!(
                            "credentials.{k} must be a string"
                        )));
                    };
                    out.insert(k.clone(), v.to_string());
                }
                out
            }
            Some(_) => {
                return Err(ApiError::bad_request(
                    "credentials must be a non-empty record of strings",
                ));
            }
            None if body.contains_key("api_key") => {
                return Err(ApiError::bad_request(
                    "credentials is required: send {\"credentials\": {\"api_key\": ...}} as the parameter table says, not a top-level api_key",
                ));
            }
            None => return Err(ApiError::bad_request("credentials is required")),
        };
        let (_, test_result) = probe(&credentials);
        let seq = model.seq();
        let record = ByokRecord {
            seq,
            id: format!("byok_{}", random_token(12)),
            provider,
            label: alias,
            state: "active".to_string(),
            credentials,
            bindings: Vec::new(),
            quota: None,
            created_at: now_rfc3339(),
            stages: HashMap::new(),
            events: Vec::new(),
            spend_usd: 0.0,
            call_count: 0,
        };
        let id = record.id.clone();
        let response = key_json(&record, Some(test_result));
        model.keys.insert(id.clone(), record);
        model.event(&id, "registered", json!({}));
        Ok(response)
    })
}

async fn list<H: ByokHost>(State(emu): State<Arc<H>>) -> Answer<H> {
    let model = emu.byok().model.lock();
    let keys = oldest_first(model.keys.values(), |k| k.seq);
    Ok(Json(
        json!({ "items": keys.into_iter().map(|k| key_json(k, None)).collect::<Vec<_>>() }),
    ))
}

async fn test<H: ByokHost>(State(emu): State<Arc<H>>, Path(id): Path<String>) -> Answer<H> {
    let mut model = emu.byok().model.lock();
    let key = model.live(&id)?;
    let result = if key.state == "disabled" {
        json!({ "ok": false, "error": "credential is disabled" })
    } else {
        probe(&key.credentials).1
    };
    model.event(&id, "tested", json!({ "ok": result["ok"] }));
    Ok(Json(result))
}

async fn revoke<H: ByokHost>(State(emu): State<Arc<H>>, Path(id): Path<String>) -> Answer<H> {
    let mut model = emu.byok().model.lock();
    let key = model
        .keys
        .get_mut(&id)
        .ok_or_else(|| ApiError::not_found("BYOK credential", &id))?;
    if key.state != "revoked" {
        key.state = "revoked".to_string();
        key.bindings.clear();
        model.event(&id, "revoked", json!({}));
    }
    Ok(Json(json!({ "ok": true })))
}

async fn get_config<H: ByokHost>(State(emu): State<Arc<H>>, Path(id): Path<String>) -> Answer<H> {
    let model = emu.byok().model.lock();
    let key = model
        .keys
        .get(&id)
        .ok_or_else(|| ApiError::not_found("BYOK credential", &id))?;
    Ok(Json(config_json(key)))
}

async fn update<H: ByokHost>(
    State(emu): State<Arc<H>>,
    Path(id): Path<String>,
    body: Bytes,
) -> Answer<H> {
    let body = body_with_id(&body, &id)?;
    emu.byok()
        .model
        .idempotent("byok.update", body, |model, body| {
            let label = optional_str(body, "label")?;
            let key = model.live(&id)?;
            if let Some(label) = label {
                key.label = label;
            }
            let response = config_json(key);
            model.event(&id, "updated", json!({}));
            Ok(response)
        })
}

fn set_state<H: ByokHost>(
    emu: &Arc<H>,
    id: &str,
    body: &[u8],
    capability: &'static str,
    state: &'static str,
) -> Answer<H> {
    let body = body_with_id(body, id)?;
    emu.byok().model.idempotent(capability, body, |model, _| {
        let key = model.live(id)?;
        let changed = key.state != state;
        key.state = state.to_string();
        let response =
            json!({ "byok_id": key.id, "state": key.state, "bindings": bindings_json(key) });
        if changed {
            model.event(
                id,
                if state == "active" {
                    "enabled"
                } else {
                    "disabled"
                },
                json!({}),
            );
        }
        Ok(response)
    })
}

async fn enable<H: ByokHost>(
    State(emu): State<Arc<H>>,
    Path(id): Path<String>,
    body: Bytes,
) -> Answer<H> {
    set_state(&emu, &id, &body, "byok.enable", "active")
}

async fn disable<H: ByokHost>(
    State(emu): State<Arc<H>>,
    Path(id): Path<String>,
    body: Bytes,
) -> Answer<H> {
    set_state(&emu, &id, &body, "byok.disable", "disabled")
}

fn scope_of<H>(body: &Map<String, Value>) -> Result<(Option<String>, Option<String>), ApiError<H>> {
    let capability = optional_str(body, "capability")?;
    let module = optional_str(body, "module")?;
    if capability.is_none() && module.is_none() {
        return Err(ApiError::bad_request(
            "pass at least one of capability and module",
        ));
    }
    Ok((capability, module))
}

async fn bind<H: ByokHost>(
    State(emu): State<Arc<H>>,
    Path(id): Path<String>,
    body: Bytes,
) -> Answer<H> {
    let body = body_with_id(&body, &id)?;
    emu.byok()
        .model
        .idempotent("byok.bind", body, |model, body| {
            let (capability, module) = scope_of(body)?;
            let model_pin = optional_str(body, "model")?;
            let key = model.live(&id)?;
            key.bindings
                .retain(|b| !(b.capability == capability && b.module == module));
            key.bindings.push(Binding {
                capability,
                module,
                model: model_pin,
            });
            let response = json!({ "byok_id": key.id, "bindings": bindings_json(key) });
            model.event(&id, "bound", json!({}));
            Ok(response)
        })
}

async fn unbind<H: ByokHost>(
    State(emu): State<Arc<H>>,
    Path(id): Path<String>,
    body: Bytes,
) -> Answer<H> {
    let body = body_with_id(&body, &id)?;
    emu.byok()
        .model
        .idempotent("byok.unbind", body, |model, body| {
            let (capability, module) = scope_of(body)?;
            let key = model.live(&id)?;
            key.bindings
                .retain(|b| !(b.capability == capability && b.module == module));
            let response = json!({ "byok_id": key.id, "bindings": bindings_json(key) });
            model.event(&id, "unbound", json!({}));
            Ok(response)
        })
}

async fn policy_get<H: ByokHost>(State(emu): State<Arc<H>>) -> Answer<H> {
    Ok(Json(policy_json(&emu.byok().model.lock())))
}

async fn policy_set<H: ByokHost>(State(emu): State<Arc<H>>, body: Bytes) -> Answer<H> {
    let body = json_object(&body)?;
    emu.byok()
        .model
        .idempotent("byok.policy.set", body, |model, body| {
            let mode = required_str(body, "mode")?;
            if !POLICY_MODES.contains(&mode.as_str()) {
                return Err(ApiError::bad_request(
                    "mode must be byok_only or byok_then_pool",
                ));
            }
            let mut policy = json!({ "mode": mode });
            match body.get("scope") {
                None | Some(Value::Null) => {}
                Some(Value::Object(scope)) => {
                    let mut out = Map::new();
                    for field in ["capability", "module"] {
                        if let Some(v) = optional_str(scope, field)? {
                            out.insert(field.to_string(), json!(v));
                        }
                    }
                    if !out.is_empty() {
                        policy["scope"] = Value::Object(out);
                    }
                }
                Some(_) => return Err(ApiError::bad_request("scope must be an object")),
            }
            model.policy = Some(policy.clone());
            Ok(policy)
        })
}

async fn quota_set<H: ByokHost>(
    State(emu): State<Arc<H>>,
    Path(id): Path<String>,
    body: Bytes,
) -> Answer<H> {
    let body = body_with_id(&body, &id)?;
    emu.byok()
        .model
        .idempotent("byok.quota.set", body, |model, body| {
            let mut quota = Map::new();
            for field in ["spend_limit_usd", "call_limit"] {
                match body.get(field) {
                    None | Some(Value::Null) => {}
                    Some(Value::Number(n)) if n.as_f64().is_some_and(|v| v >= 0.0) => {
                        quota.insert(field.to_string(), Value::Number(n.clone()));
                    }
                    Some(_) => {
                        return Err(ApiError::bad_request(format!(
                            "{field} must be a number of at least 0"
                        )));
                    }
                }
            }
            if let Some(window) = optional_str(body, "window")? {
                if !QUOTA_WINDOWS.contains(&window.as_str()) {
                    return Err(ApiError::bad_request(
                        "window must be one of 1d, 7d, 30d, mtd, ytd",
                    ));
                }
                quota.insert("window".to_string(), json!(window));
            }
            let key = model.live(&id)?;
            key.quota = Some(Value::Object(quota));
            let response = json!({ "byok_id": key.id, "quota": key.quota });
            model.event(&id, "quota_set", json!({}));
            Ok(response)
        })
}

async fn usage<H: ByokHost>(State(emu): State<Arc<H>>, Path(id): Path<String>) -> Answer<H> {
    let model = emu.byok().model.lock();
    let key = model
        .keys
        .get(&id)
        .ok_or_else(|| ApiError::not_found("BYOK credential", &id))?;
    let period = key
        .quota
        .as_ref()
        .and_then(|q| q["window"].as_str())
        .unwrap_or("mtd")
        .to_string();
    Ok(Json(json!({
        "byok_id": key.id,
        "spend_usd": key.spend_usd,
        "call_count": key.call_count,
        "period": period,
    })))
}

async fn events<H: ByokHost>(
    State(emu): State<Arc<H>>,
    Path(id): Path<String>,
    Query(query): Query<PageQuery>,
) -> Answer<H> {
    let model = emu.byok().model.lock();
    let key = model
        .keys
        .get(&id)
        .ok_or_else(|| ApiError::not_found("BYOK credential", &id))?;
    H::page(key.events.clone(), &query)
}

async fn rotate<H: ByokHost>(
    State(emu): State<Arc<H>>,
    Path(id): Path<String>,
    body: Bytes,
) -> Answer<H> {
    let body = body_with_id(&body, &id)?;
    emu.byok()
        .model
        .idempotent("byok.rotate", body, |model, body| {
            let api_key = required_str(body, "api_key")?;
            let key = model.live(&id)?;
            key.credentials.insert("api_key".to_string(), api_key);
            let response =
                json!({ "byok_id": key.id, "state": key.state, "bindings": bindings_json(key) });
            model.event(&id, "rotated", json!({}));
            Ok(response)
        })
}

async fn rotate_stage<H: ByokHost>(
    State(emu): State<Arc<H>>,
    Path(id): Path<String>,
    body: Bytes,
) -> Answer<H> {
    let body = body_with_id(&body, &id)?;
    emu.byok()
        .model
        .idempotent("byok.rotate.stage", body, |model, body| {
            let api_key = required_str(body, "api_key")?;
            let key = model.live(&id)?;
            let mut candidate = key.credentials.clone();
            candidate.insert("api_key".to_string(), api_key.clone());
            let (probe_ok, probe_result) = probe(&candidate);
            let stage_id = format!("stg_{}", random_token(10));
            key.stages
                .insert(stage_id.clone(), Stage { api_key, probe_ok });
            model.event(&id, "rotation_staged", json!({ "probe_ok": probe_ok }));
            Ok(json!({ "stage_id": stage_id, "probe_result": probe_result }))
        })
}

async fn rotate_commit<H: ByokHost>(
    State(emu): State<Arc<H>>,
    Path(id): Path<String>,
    body: Bytes,
) -> Answer<H> {
    let body = body_with_id(&body, &id)?;
    emu.byok()
        .model
        .idempotent("byok.rotate.commit", body, |model, body| {
            let stage_id = required_str(body, "stage_id")?;
            let key = model.live(&id)?;
            let stage = key
                .stages
                .remove(&stage_id)
                .ok_or_else(|| ApiError::not_found("staged rotation", &stage_id))?;
            key.credentials.insert("api_key".to_string(), stage.api_key);
            key.stages.clear();
            let response =
                json!({ "byok_id": key.id, "state": key.state, "bindings": bindings_json(key) });
            model.event(&id, "rotated", json!({ "probe_ok": stage.probe_ok }));
            Ok(response)
        })
}
