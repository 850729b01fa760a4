//! Connection Secrets: what goes in them (pure) and writing them (one apply,
//! only when the content differs, never over a Secret someone else owns).

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::api::{Api, Patch, PatchParams};
use kube::{Client, Resource, ResourceExt};

use crate::providers::ConnectionUri;

/// Field manager of every write the operator makes.
pub const FIELD_MANAGER: &str = "dbops";
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

/// A connection URI the vendor sent that we cannot use. The message never holds the URI.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConnectionError {
    #[error("the vendor returned no connection URI")]
    Missing,
    #[error("the vendor's connection URI is not a postgres URL ({0})")]
    Invalid(&'static str),
}

/// The parts of a connection URI, as the Secret's keys hold them.
#[derive(Clone, PartialEq, Eq)]
pub struct ConnectionDetails {
    pub uri: String,
    pub host: String,
    pub port: u16,
    pub database: String,
    pub username: String,
    pub password: String,
    pub pooled_uri: Option<String>,
}

impl std::fmt::Debug for ConnectionDetails {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectionDetails")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("database", &self.database)
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

impl ConnectionDetails {
    /// Splits a `postgresql://user:password@host:port/database?...` URI.
    pub fn parse(
        uri: Option<&ConnectionUri>,
        pooled: Option<&ConnectionUri>,
    ) -> Result<Self, ConnectionError> {
        let raw = uri.ok_or(ConnectionError::Missing)?.expose();
        let url = url::Url::parse(raw).map_err(|_| ConnectionError::Invalid("unparsable"))?;
        if !matches!(url.scheme(), "postgres" | "postgresql") {
            return Err(ConnectionError::Invalid(
                "scheme is not postgres/postgresql",
            ));
        }
        let host = url
            .host_str()
            .filter(|h| !h.is_empty())
            .ok_or(ConnectionError::Invalid("no host"))?;
        let decode =
            |s: &str| percent_decode(s).ok_or(ConnectionError::Invalid("bad percent-encoding"));
        Ok(Self {
            uri: raw.to_string(),
            host: host.to_string(),
            port: url.port().unwrap_or(5432),
            database: decode(url.path().trim_start_matches('/'))?,
            username: decode(url.username())?,
            password: decode(url.password().unwrap_or_default())?,
            pooled_uri: pooled.map(|p| p.expose().to_string()),
        })
    }

    /// Puts `password` into the details and the URI (for vendors whose URIs
    /// carry no password: the operator chose it and keeps it in the Secret).
    pub fn with_password(mut self, password: &str) -> Self {
        if let Ok(mut url) = url::Url::parse(&self.uri)
            && url.set_password(Some(password)).is_ok()
        {
            self.uri = url.to_string();
        }
        if let Some(pooled) = &self.pooled_uri
            && let Ok(mut url) = url::Url::parse(pooled)
            && url.password().is_none()
            && url.set_password(Some(password)).is_ok()
        {
            self.pooled_uri = Some(url.to_string());
        }
        self.password = password.to_string();
        self
    }

    /// The Secret's `data`.
    pub fn to_data(&self) -> BTreeMap<String, ByteString> {
        let mut data = BTreeMap::new();
        let mut put = |k: &str, v: &str| {
            data.insert(k.to_string(), ByteString(v.as_bytes().to_vec()));
        };
        put(keys::URI, &self.uri);
        put(keys::HOST, &self.host);
        put(keys::PORT, &self.port.to_string());
        put(keys::DATABASE, &self.database);
        put(keys::USERNAME, &self.username);
        put(keys::PASSWORD, &self.password);
        if let Some(pooled) = &self.pooled_uri {
            put(keys::POOLED_URI, pooled);
        }
        data
    }
}

fn percent_decode(s: &str) -> Option<String> {
    percent_encoding::percent_decode_str(s)
        .decode_utf8()
        .ok()
        .map(|c| c.into_owned())
}

/// The Secret for `owner`, owned by it (controller reference) and labelled.
pub fn build_secret<K>(owner: &K, name: &str, data: BTreeMap<String, ByteString>) -> Option<Secret>
where
    K: Resource<DynamicType = ()>,
{
    let owner_ref: OwnerReference = owner.controller_owner_ref(&())?;
    let labels = BTreeMap::from([
        (MANAGED_BY_LABEL.to_string(), MANAGED_BY_VALUE.to_string()),
        (OWNER_KIND_LABEL.to_string(), K::kind(&()).to_lowercase()),
        (OWNER_NAME_LABEL.to_string(), owner.meta().name.clone()?),
    ]);
    Some(Secret {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            namespace: owner.meta().namespace.clone(),
            labels: Some(labels),
            owner_references: Some(vec![owner_ref]),
            ..Default::default()
        },
        type_: Some("Opaque".to_string()),
        data: Some(data),
        ..Default::default()
    })
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
    #[error("could not write Secret {name}: {}", super::kube_error::describe(.source))]
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
    data: BTreeMap<String, ByteString>,
) -> Result<SecretWrite, SecretWriteError>
where
    K: Resource<DynamicType = ()>,
{
    let namespace = owner
        .meta()
        .namespace
        .clone()
        .ok_or(SecretWriteError::NoOwnerIdentity)?;
    let owner_uid = owner
        .meta()
        .uid
        .clone()
        .ok_or(SecretWriteError::NoOwnerIdentity)?;
    let api: Api<Secret> = Api::namespaced(client.clone(), &namespace);
    let kube_err = |source| SecretWriteError::Kube {
        name: name.to_string(),
        source,
    };
    let desired = build_secret(owner, name, data).ok_or(SecretWriteError::NoOwnerIdentity)?;
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
        if existing.data == desired.data
            && existing.labels() == desired.labels()
            && existing.type_ == desired.type_
        {
            return Ok(SecretWrite::Unchanged);
        }
    }
    let mut body =
        serde_json::to_value(&desired).map_err(|e| kube_err(kube::Error::SerdeError(e)))?;
    body["apiVersion"] = "v1".into();
    body["kind"] = "Secret".into();
    api.patch(
        name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&body),
    )
    .await
    .map_err(kube_err)?;
    Ok(SecretWrite::Written)
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
    let namespace = owner
        .meta()
        .namespace
        .clone()
        .ok_or(SecretWriteError::NoOwnerIdentity)?;
    let owner_uid = owner
        .meta()
        .uid
        .clone()
        .ok_or(SecretWriteError::NoOwnerIdentity)?;
    let api: Api<Secret> = Api::namespaced(client.clone(), &namespace);
    let existing = api
        .get_opt(name)
        .await
        .map_err(|source| SecretWriteError::Kube {
            name: name.to_string(),
            source,
        })?;
    Ok(existing
        .filter(|s| s.owner_references().iter().any(|r| r.uid == owner_uid))
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
    let namespace = owner
        .meta()
        .namespace
        .clone()
        .ok_or(SecretWriteError::NoOwnerIdentity)?;
    let owner_uid = owner
        .meta()
        .uid
        .clone()
        .ok_or(SecretWriteError::NoOwnerIdentity)?;
    let api: Api<Secret> = Api::namespaced(client.clone(), &namespace);
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
    use super::*;
    use crate::api::v1alpha1::{DatabaseProject, DatabaseProjectSpec};

    #[test]
    fn the_kept_password_goes_into_the_direct_and_the_pooled_uri() {
        let direct = ConnectionUri::new("postgresql://postgres@db.x.supabase.co:5432/postgres");
        let pooled =
            ConnectionUri::new("postgresql://postgres.x@aws-0-r.pooler.supabase.com:6543/postgres");
        let details = ConnectionDetails::parse(Some(&direct), Some(&pooled))
            .unwrap()
            .with_password("p@ss");
        assert_eq!(
            details.uri,
            "postgresql://postgres:p%40ss@db.x.supabase.co:5432/postgres"
        );
        assert_eq!(
            details.pooled_uri.as_deref(),
            Some("postgresql://postgres.x:p%40ss@aws-0-r.pooler.supabase.com:6543/postgres")
        );
        // A pooled URI that carries its own password keeps it.
        let own = ConnectionUri::new("postgresql://u:theirs@pooler:6543/db");
        let details = ConnectionDetails::parse(Some(&direct), Some(&own))
            .unwrap()
            .with_password("mine");
        assert_eq!(
            details.pooled_uri.as_deref(),
            Some("postgresql://u:theirs@pooler:6543/db")
        );
    }

    fn uri(s: &str) -> ConnectionUri {
        ConnectionUri::new(s)
    }

    #[test]
    fn a_full_uri_is_split_into_the_secret_keys() {
        let u = uri("postgresql://app%40owner:p%2Fss@db.example.com:6543/shop?sslmode=require");
        let d = ConnectionDetails::parse(Some(&u), Some(&uri("postgresql://x:y@pool:6432/shop")))
            .unwrap();
        assert_eq!(d.host, "db.example.com");
        assert_eq!(d.port, 6543);
        assert_eq!(d.database, "shop");
        assert_eq!(d.username, "app@owner");
        assert_eq!(d.password, "p/ss");
        let data = d.to_data();
        let s = |k: &str| String::from_utf8(data[k].0.clone()).unwrap();
        assert_eq!(s(keys::URI), u.expose());
        assert_eq!(s(keys::PORT), "6543");
        assert_eq!(s(keys::POOLED_URI), "postgresql://x:y@pool:6432/shop");
        assert_eq!(data.len(), 7);
    }

    #[test]
    fn the_port_defaults_to_5432_and_pooled_uri_is_optional() {
        let d = ConnectionDetails::parse(Some(&uri("postgres://u:p@h/db")), None).unwrap();
        assert_eq!(d.port, 5432);
        assert!(!d.to_data().contains_key(keys::POOLED_URI));
    }

    #[test]
    fn unusable_uris_are_refused_without_echoing_them() {
        assert_eq!(
            ConnectionDetails::parse(None, None),
            Err(ConnectionError::Missing)
        );
        let err = ConnectionDetails::parse(Some(&uri("mysql://u:hunter2@h/db")), None).unwrap_err();
        assert!(!err.to_string().contains("hunter2"));
        assert!(ConnectionDetails::parse(Some(&uri("not a url")), None).is_err());
        assert!(
            ConnectionDetails::parse(Some(&uri("postgresql://u:p%ff@h/db")), None).is_err(),
            "not UTF-8"
        );
    }

    #[test]
    fn debug_output_hides_the_password_and_uri() {
        let d = ConnectionDetails::parse(Some(&uri("postgresql://u:hunter2@h/db")), None).unwrap();
        let shown = format!("{d:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
    }

    #[test]
    fn the_secret_is_owned_and_labelled() {
        let mut owner = DatabaseProject::new("shop", DatabaseProjectSpec::default());
        owner.metadata.namespace = Some("team-a".into());
        owner.metadata.uid = Some("uid-1".into());
        let secret = build_secret(&owner, "shop-db", BTreeMap::new()).unwrap();
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
        assert!(build_secret(&owner, "x", BTreeMap::new()).is_none());
    }
}
