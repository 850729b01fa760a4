//! Connection Secrets: what goes in them (pure) and writing them (one apply,
//! only when the content differs, never over a Secret someone else owns).

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::api::{Api, Patch, PatchParams};
use kube::{Client, Resource, ResourceExt};

use super::connection_keys;
use super::details::ConnectionDetails;
use crate::api::v1alpha1::ConnectionSecretTarget;
use crate::controllers::runtime::{FIELD_MANAGER, freshness, kube_error};

/// Label on every object the operator creates.
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
pub const MANAGED_BY_VALUE: &str = "dbops";
/// Labels naming the resource a Secret belongs to.
pub const OWNER_KIND_LABEL: &str = "dbops.dev/owner-kind";
pub const OWNER_NAME_LABEL: &str = "dbops.dev/owner-name";

/// The watch of the Secrets the operator owns: only those carrying its label.
pub fn owned_secrets_watch() -> kube::runtime::watcher::Config {
    kube::runtime::watcher::Config::default()
        .labels(&format!("{MANAGED_BY_LABEL}={MANAGED_BY_VALUE}"))
}

/// The Secrets the operator owns, as triggers of their owners: metadata only
/// (a Secret's data is never decoded for this), and without the echo of the
/// operator's own writes, which would only wake the owner that just wrote them.
/// Changes by anyone else, and deletions, wake the owner.
pub fn owned_secret_triggers(
    api: Api<kube::core::PartialObjectMeta<Secret>>,
    echoes: std::sync::Arc<freshness::Writes>,
) -> impl futures::Stream<
    Item = Result<kube::core::PartialObjectMeta<Secret>, kube::runtime::watcher::Error>,
> + Send
+ 'static {
    use futures::TryStreamExt;
    use kube::runtime::WatchStreamExt;
    kube::runtime::watcher(api, owned_secrets_watch())
        .default_backoff()
        .try_filter_map(move |event| std::future::ready(Ok(wakes_owner(event, &echoes))))
}

/// The Secret a watch event of an owned Secret wakes the owner for, if any.
/// A deletion always does, whatever resourceVersion the event carries: the
/// Secret must be put back. A change does unless it is the echo of this
/// process's own write.
fn wakes_owner<S: Resource>(
    event: kube::runtime::watcher::Event<S>,
    echoes: &freshness::Writes,
) -> Option<S> {
    use kube::runtime::watcher::Event;
    match event {
        Event::Delete(secret) => Some(secret),
        Event::Apply(secret) | Event::InitApply(secret) => {
            let key = format!(
                "{}/{}",
                secret.namespace().unwrap_or_default(),
                secret.name_any()
            );
            let meta = secret.meta();
            let echo = meta.deletion_timestamp.is_none()
                && echoes.is_echo(&key, meta.resource_version.as_deref());
            (!echo).then_some(secret)
        }
        Event::Init | Event::InitDone => None,
    }
}

/// The keys of a connection Secret.
pub mod keys {
    pub const URI: &str = "uri";
    pub const HOST: &str = "host";
    pub const PORT: &str = "port";
    pub const DATABASE: &str = "database";
    pub const USERNAME: &str = "username";
    pub const PASSWORD: &str = "password";
    pub const POOLED_URI: &str = "pooledUri";
}

/// The Secret for `owner`, owned by it (controller reference) and labelled.
pub fn build_secret<K>(owner: &K, name: &str, content: SecretContent) -> Option<Secret>
where
    K: Resource<DynamicType = ()>,
{
    let owner_ref: OwnerReference = owner.controller_owner_ref(&())?;
    // The user's labels and annotations first; the operator's own win.
    let mut labels = content.labels;
    labels.extend([
        (MANAGED_BY_LABEL.to_string(), MANAGED_BY_VALUE.to_string()),
        (OWNER_KIND_LABEL.to_string(), K::kind(&()).to_lowercase()),
        (OWNER_NAME_LABEL.to_string(), owner.meta().name.clone()?),
    ]);
    let mut annotations = content.annotations;
    annotations.remove(PASSWORD_AT_ANNOTATION);
    if let Some(at) = content.password_at {
        annotations.insert(PASSWORD_AT_ANNOTATION.to_string(), at);
    }
    Some(Secret {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            namespace: owner.meta().namespace.clone(),
            labels: Some(labels),
            annotations: (!annotations.is_empty()).then_some(annotations),
            owner_references: Some(vec![owner_ref]),
            ..Default::default()
        },
        type_: Some(content.type_.to_string()),
        data: Some(content.data),
        ..Default::default()
    })
}

/// Annotation naming where in the Secret the password is
/// ([`connection_keys::Rendered::password_at`]); absent means `password`.
pub const PASSWORD_AT_ANNOTATION: &str = "dbops.dev/password-key";

/// What a Secret the operator writes holds.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct SecretContent {
    pub data: BTreeMap<String, ByteString>,
    pub type_: &'static str,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    /// Where the password is, when it is not under `password`.
    pub password_at: Option<String>,
}

impl SecretContent {
    /// An `Opaque` Secret with `data` and nothing else.
    pub fn opaque(data: BTreeMap<String, ByteString>) -> Self {
        Self {
            data,
            type_: connection_keys::OPAQUE,
            ..Default::default()
        }
    }

    /// The connection Secret for `details` as `target` lays it out, for a
    /// provider of API `provider` (its templates rendered off the async
    /// workers, within a time bound: [`connection_keys::render_bounded`]).
    pub async fn connection(
        details: &ConnectionDetails,
        target: Option<&ConnectionSecretTarget>,
        provider: &str,
    ) -> Result<(Self, connection_keys::Rendered), connection_keys::TemplateError> {
        let rendered = connection_keys::render_bounded(details, target, provider).await?;
        let content = Self {
            data: rendered
                .data
                .iter()
                .map(|(k, v)| (k.clone(), ByteString(v.as_bytes().to_vec())))
                .collect(),
            type_: rendered.type_,
            labels: target.map(|t| t.labels.clone()).unwrap_or_default(),
            annotations: target.map(|t| t.annotations.clone()).unwrap_or_default(),
            // `password` is where a reader looks without the annotation.
            password_at: rendered
                .password_at
                .clone()
                .filter(|at| at != keys::PASSWORD),
        };
        Ok((content, rendered))
    }
}

/// Why a connection Secret was not written.
#[derive(Debug, thiserror::Error)]
pub enum SecretWriteError {
    #[error(
        "Secret {name:?} already exists and is not owned by this resource; choose another writeConnectionSecretTo.name or delete it"
    )]
    NotOwned { name: String },
    #[error("cannot build the Secret: the owner has no name or uid")]
    NoOwnerIdentity,
    #[error("could not write Secret {name}: {}", kube_error::describe(.source))]
    Kube {
        name: String,
        #[source]
        source: kube::Error,
    },
}

/// What [`ensure_secret`] did.
#[derive(Debug, PartialEq, Eq)]
pub enum SecretWrite {
    Unchanged,
    Written,
}

/// Writes `data` into Secret `name` owned by `owner`, unless it already holds exactly that.
///
/// A Secret of that name that exists without an ownerReference to `owner` is left
/// alone ([`SecretWriteError::NotOwned`]): the operator never takes over a Secret
/// it did not create. The write is one server-side apply, so readers see either
/// the old or the new complete content.
pub async fn ensure_secret<K>(
    client: &Client,
    owner: &K,
    name: &str,
    content: SecretContent,
) -> Result<SecretWrite, SecretWriteError>
where
    K: Resource<DynamicType = ()>,
{
    let (api, owner_uid) = secrets_of(client, owner)?;
    let kube_err = |source| SecretWriteError::Kube {
        name: name.to_string(),
        source,
    };
    let desired = build_secret(owner, name, content).ok_or(SecretWriteError::NoOwnerIdentity)?;
    if let Some(existing) = api.get_opt(name).await.map_err(kube_err)? {
        if !existing
            .owner_references()
            .iter()
            .any(|r| r.uid == owner_uid)
        {
            return Err(SecretWriteError::NotOwned {
                name: name.to_string(),
            });
        }
        if holds(&existing, &desired) {
            return Ok(SecretWrite::Unchanged);
        }
        if existing.type_ != desired.type_ {
            // Kubernetes does not let a Secret's type change: this one change
            // replaces the Secret (the only moment it is missing).
            let precondition = kube::api::DeleteParams {
                preconditions: Some(kube::api::Preconditions {
                    uid: existing.metadata.uid.clone(),
                    resource_version: None,
                }),
                ..Default::default()
            };
            match api.delete(name, &precondition).await {
                Ok(_) => {}
                Err(kube::Error::Api(status)) if status.code == 404 => {}
                Err(source) => return Err(kube_err(source)),
            }
        }
    }
    let mut body =
        serde_json::to_value(&desired).map_err(|e| kube_err(kube::Error::SerdeError(e)))?;
    body["apiVersion"] = "v1".into();
    body["kind"] = "Secret".into();
    let echo_key = format!("{}/{name}", owner.namespace().unwrap_or_default());
    freshness::writing_secret(&echo_key);
    let written = api
        .patch(
            name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&body),
        )
        .await;
    freshness::wrote_secret(
        &echo_key,
        written
            .as_ref()
            .ok()
            .and_then(|s| s.metadata.resource_version.as_deref()),
    );
    written.map_err(kube_err)?;
    Ok(SecretWrite::Written)
}

/// Whether `existing` already holds what the operator wants in it: the same
/// type, every desired key, label and annotation with its value, and none of
/// the keys, labels or annotations the operator wrote before and no longer
/// wants. What others added is not the operator's business.
fn holds(existing: &Secret, desired: &Secret) -> bool {
    let owned = owned_fields(existing);
    let subset = |want: Option<&BTreeMap<String, String>>,
                  have: Option<&BTreeMap<String, String>>| {
        want.into_iter()
            .flatten()
            .all(|(k, v)| have.and_then(|h| h.get(k)) == Some(v))
    };
    let no_leftovers = |section: &str, want: Vec<&String>| {
        owned
            .get(section)
            .into_iter()
            .flatten()
            .all(|k| want.contains(&k))
    };
    let want_data = desired.data.as_ref();
    let have_data = existing.data.as_ref();
    existing.type_ == desired.type_
        && want_data
            .into_iter()
            .flatten()
            .all(|(k, v)| have_data.and_then(|h| h.get(k)) == Some(v))
        && subset(
            desired.metadata.labels.as_ref(),
            existing.metadata.labels.as_ref(),
        )
        && subset(
            desired.metadata.annotations.as_ref(),
            existing.metadata.annotations.as_ref(),
        )
        && no_leftovers(
            "data",
            want_data.into_iter().flatten().map(|(k, _)| k).collect(),
        )
        && no_leftovers(
            "labels",
            desired
                .metadata
                .labels
                .iter()
                .flatten()
                .map(|(k, _)| k)
                .collect(),
        )
        && no_leftovers(
            "annotations",
            desired
                .metadata
                .annotations
                .iter()
                .flatten()
                .map(|(k, _)| k)
                .collect(),
        )
}

/// The data keys, labels and annotations the operator's field manager owns
/// in `secret` (from its managed fields), by section.
fn owned_fields(secret: &Secret) -> BTreeMap<&'static str, Vec<String>> {
    let mut owned: BTreeMap<&'static str, Vec<String>> = BTreeMap::new();
    let entries = secret.metadata.managed_fields.iter().flatten();
    for entry in entries.filter(|e| e.manager.as_deref() == Some(FIELD_MANAGER)) {
        let Some(fields) = entry.fields_v1.as_ref().map(|f| &f.0) else {
            continue;
        };
        let keys_of = |value: Option<&serde_json::Value>| -> Vec<String> {
            value
                .and_then(|v| v.as_object())
                .map(|map| {
                    map.keys()
                        .filter_map(|k| k.strip_prefix("f:").map(str::to_string))
                        .collect()
                })
                .unwrap_or_default()
        };
        let metadata = fields.get("f:metadata");
        for (section, found) in [
            ("data", keys_of(fields.get("f:data"))),
            ("labels", keys_of(metadata.and_then(|m| m.get("f:labels")))),
            (
                "annotations",
                keys_of(metadata.and_then(|m| m.get("f:annotations"))),
            ),
        ] {
            owned.entry(section).or_default().extend(found);
        }
    }
    owned
}

/// The Secrets of `owner`'s namespace, and its UID (what its Secrets'
/// ownerReferences carry).
fn secrets_of<K>(client: &Client, owner: &K) -> Result<(Api<Secret>, String), SecretWriteError>
where
    K: Resource<DynamicType = ()>,
{
    let meta = owner.meta();
    let (Some(namespace), Some(uid)) = (meta.namespace.as_deref(), meta.uid.clone()) else {
        return Err(SecretWriteError::NoOwnerIdentity);
    };
    Ok((Api::namespaced(client.clone(), namespace), uid))
}

/// The password kept in connection Secret `name` (see
/// [`PASSWORD_AT_ANNOTATION`]), if `owner` owns that Secret and it holds one.
pub async fn read_kept_password<K>(
    client: &Client,
    owner: &K,
    name: &str,
) -> Result<Option<String>, SecretWriteError>
where
    K: Resource<DynamicType = ()>,
{
    let Some(secret) = read_owned(client, owner, name).await? else {
        return Ok(None);
    };
    let at = secret
        .annotations()
        .get(PASSWORD_AT_ANNOTATION)
        .cloned()
        .unwrap_or_else(|| keys::PASSWORD.to_string());
    let data = text_data(secret.data);
    Ok(connection_keys::read_password(&data, &at).filter(|p| !p.is_empty()))
}

/// A Secret's data as text (values that are not UTF-8 left out).
fn text_data(data: Option<BTreeMap<String, ByteString>>) -> BTreeMap<String, String> {
    data.unwrap_or_default()
        .into_iter()
        .filter_map(|(k, v)| String::from_utf8(v.0).ok().map(|v| (k, v)))
        .collect()
}

/// The data of Secret `name` as text, if `owner` owns it.
pub async fn read_owned_data<K>(
    client: &Client,
    owner: &K,
    name: &str,
) -> Result<Option<BTreeMap<String, String>>, SecretWriteError>
where
    K: Resource<DynamicType = ()>,
{
    Ok(read_owned(client, owner, name)
        .await?
        .map(|secret| text_data(secret.data)))
}

/// Secret `name`, if `owner` owns it.
async fn read_owned<K>(
    client: &Client,
    owner: &K,
    name: &str,
) -> Result<Option<Secret>, SecretWriteError>
where
    K: Resource<DynamicType = ()>,
{
    let (api, owner_uid) = secrets_of(client, owner)?;
    let existing = api
        .get_opt(name)
        .await
        .map_err(|source| SecretWriteError::Kube {
            name: name.to_string(),
            source,
        })?;
    Ok(existing.filter(|s| s.owner_references().iter().any(|r| r.uid == owner_uid)))
}

/// The value of `key` in Secret `name`, if `owner` owns that Secret and it has the key.
pub async fn read_owned_key<K>(
    client: &Client,
    owner: &K,
    name: &str,
    key: &str,
) -> Result<Option<String>, SecretWriteError>
where
    K: Resource<DynamicType = ()>,
{
    Ok(read_owned(client, owner, name)
        .await?
        .and_then(|s| s.data?.remove(key))
        .and_then(|v| String::from_utf8(v.0).ok())
        .filter(|v| !v.is_empty()))
}

/// Deletes Secret `name` if `owner` owns it (used when `writeConnectionSecretTo` is renamed).
pub async fn delete_owned_secret<K>(
    client: &Client,
    owner: &K,
    name: &str,
) -> Result<(), SecretWriteError>
where
    K: Resource<DynamicType = ()>,
{
    let (api, owner_uid) = secrets_of(client, owner)?;
    let kube_err = |source| SecretWriteError::Kube {
        name: name.to_string(),
        source,
    };
    if let Some(existing) = api.get_opt(name).await.map_err(kube_err)?
        && existing
            .owner_references()
            .iter()
            .any(|r| r.uid == owner_uid)
    {
        match api.delete(name, &Default::default()).await {
            Ok(_) => {}
            Err(kube::Error::Api(status)) if status.code == 404 => {}
            Err(source) => return Err(kube_err(source)),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_deleted_secret_always_wakes_its_owner_and_an_echo_does_not() {
        use kube::runtime::watcher::Event;
        let secret = |rv: &str| {
            let mut s = k8s_openapi::api::core::v1::Secret::default();
            s.metadata.name = Some("app-db".into());
            s.metadata.namespace = Some("team-a".into());
            s.metadata.resource_version = Some(rv.into());
            s
        };
        let echoes = freshness::Writes::default();
        // Our own write, still in flight: its events are echoes...
        echoes.record("team-a/app-db", String::new());
        assert!(wakes_owner(Event::Apply(secret("7")), &echoes).is_none());
        // ...but a deletion is not, even one carrying our write's version.
        assert!(wakes_owner(Event::Delete(secret("7")), &echoes).is_some());
        echoes.record("team-a/app-db", "7".into());
        assert!(wakes_owner(Event::Delete(secret("7")), &echoes).is_some());
        assert!(wakes_owner(Event::Apply(secret("7")), &echoes).is_none());
        // Someone else's change wakes the owner.
        assert!(wakes_owner(Event::Apply(secret("9")), &echoes).is_some());
        assert!(
            wakes_owner(
                Event::<k8s_openapi::api::core::v1::Secret>::InitDone,
                &echoes
            )
            .is_none()
        );
    }

    use super::*;
    use crate::api::v1alpha1::{DatabaseProject, DatabaseProjectSpec};
    use crate::providers::ConnectionUri;

    fn secret_with(data: &[(&str, &str)], owned: &[&str], type_: &str) -> Secret {
        let fields: serde_json::Map<String, serde_json::Value> = owned
            .iter()
            .map(|k| (format!("f:{k}"), serde_json::json!({})))
            .collect();
        serde_json::from_value(serde_json::json!({
            "metadata": {
                "name": "s",
                "managedFields": [
                    { "manager": FIELD_MANAGER, "operation": "Apply", "fieldsType": "FieldsV1",
                      "fieldsV1": { "f:data": fields } },
                    { "manager": "kubectl-patch", "operation": "Update", "fieldsType": "FieldsV1",
                      "fieldsV1": { "f:data": { "f:theirs": {} } } },
                ],
            },
            "type": type_,
            "data": data.iter().map(|(k, v)| (k.to_string(), base64_of(v))).collect::<serde_json::Map<_, _>>(),
        }))
        .unwrap()
    }

    fn base64_of(v: &str) -> serde_json::Value {
        serde_json::to_value(ByteString(v.as_bytes().to_vec())).unwrap()
    }

    #[test]
    fn a_secret_holds_what_is_wanted_whatever_others_added_but_not_what_the_operator_dropped() {
        let desired = secret_with(&[("PGHOST", "h")], &[], "Opaque");
        // Someone else's key does not make a write.
        let existing = secret_with(&[("PGHOST", "h"), ("theirs", "x")], &["PGHOST"], "Opaque");
        assert!(holds(&existing, &desired));
        // A key the operator wrote before and no longer wants does.
        let existing = secret_with(
            &[("PGHOST", "h"), ("host", "h")],
            &["PGHOST", "host"],
            "Opaque",
        );
        assert!(!holds(&existing, &desired));
        // So do a changed value and a changed type.
        let existing = secret_with(&[("PGHOST", "other")], &["PGHOST"], "Opaque");
        assert!(!holds(&existing, &desired));
        let existing = secret_with(
            &[("PGHOST", "h")],
            &["PGHOST"],
            "servicebinding.io/postgresql",
        );
        assert!(!holds(&existing, &desired));
    }

    fn uri(s: &str) -> ConnectionUri {
        ConnectionUri::new(s)
    }

    #[tokio::test]
    async fn a_full_uri_is_split_into_the_secret_keys() {
        let u = uri("postgresql://app%40owner:p%2Fss@db.example.com:6543/shop?sslmode=require");
        let d = ConnectionDetails::parse(Some(&u), Some(&uri("postgresql://x:y@pool:6432/shop")))
            .unwrap();
        assert_eq!(d.host, "db.example.com");
        assert_eq!(d.port, 6543);
        assert_eq!(d.database, "shop");
        assert_eq!(d.username, "app@owner");
        assert_eq!(d.password, "p/ss");
        let (content, _) = SecretContent::connection(&d, None, "infrai").await.unwrap();
        let data = content.data;
        let s = |k: &str| String::from_utf8(data[k].0.clone()).unwrap();
        assert_eq!(s(keys::URI), u.expose());
        assert_eq!(s(keys::PORT), "6543");
        assert_eq!(s(keys::POOLED_URI), "postgresql://x:y@pool:6432/shop");
        assert_eq!(data.len(), 7);
        assert_eq!(
            content.password_at, None,
            "under `password`, needing no annotation"
        );
    }

    #[tokio::test]
    async fn the_port_defaults_to_5432_and_pooled_uri_is_optional() {
        let d = ConnectionDetails::parse(Some(&uri("postgres://u:p@h/db")), None).unwrap();
        assert_eq!(d.port, 5432);
        let (content, _) = SecretContent::connection(&d, None, "infrai").await.unwrap();
        assert!(!content.data.contains_key(keys::POOLED_URI));
    }

    #[test]
    fn the_secret_is_owned_and_labelled() {
        let mut owner = DatabaseProject::new("shop", DatabaseProjectSpec::default());
        owner.metadata.namespace = Some("team-a".into());
        owner.metadata.uid = Some("uid-1".into());
        let secret =
            build_secret(&owner, "shop-db", SecretContent::opaque(BTreeMap::new())).unwrap();
        assert_eq!(secret.metadata.namespace.as_deref(), Some("team-a"));
        let refs = secret.metadata.owner_references.unwrap();
        assert_eq!(refs.len(), 1);
        assert_eq!(refs[0].uid, "uid-1");
        assert_eq!(refs[0].kind, "DatabaseProject");
        assert_eq!(refs[0].controller, Some(true));
        let labels = secret.metadata.labels.unwrap();
        assert_eq!(labels[MANAGED_BY_LABEL], "dbops");
        assert_eq!(labels[OWNER_NAME_LABEL], "shop");
        // No uid: no owner reference can be built, so no Secret.
        owner.metadata.uid = None;
        assert!(build_secret(&owner, "x", SecretContent::opaque(BTreeMap::new())).is_none());
    }
}
