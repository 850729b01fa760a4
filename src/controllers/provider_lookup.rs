//! From a `providerRef` to a ready-to-use provider client: the
//! `DatabaseProvider`, its credentials Secret, and the cached client.

use std::sync::Arc;

use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;
use kube::api::Api;
use kube::core::DeserializeGuard;
use kube::runtime::reflector::{ObjectRef, Store};
use secrecy::SecretString;

use super::Context;
use super::decode::get_guarded;

fn is_forbidden(error: &kube::Error) -> bool {
    matches!(error, kube::Error::Api(status) if status.code == 403)
}
use crate::api::v1alpha1::{DatabaseProvider, ProviderRef};
use crate::providers::{BuildError, Provider, ProviderConfig};

/// Why a provider could not be used. None of the messages carry the key.
#[derive(Debug, thiserror::Error)]
pub enum LookupError {
    #[error("DatabaseProvider {name:?} not found")]
    ProviderNotFound { name: String },
    #[error(
        "DatabaseProvider {name:?} is being deleted and takes no new resources; name another provider, or re-create this one once it is gone"
    )]
    ProviderDeleting { name: String },
    #[error("namespace {namespace} is being deleted, so nothing is created at the vendor")]
    NamespaceTerminating { namespace: String },
    #[error("DatabaseProvider {name:?} cannot be read by the operator ({problem})")]
    ProviderUnreadable { name: String, problem: String },
    #[error(
        "Secret {namespace}/{secret} named by DatabaseProvider {provider:?} is being deleted; nothing new is created with it"
    )]
    SecretDeleting {
        provider: String,
        namespace: String,
        secret: String,
    },
    #[error("Secret {namespace}/{secret} named by DatabaseProvider {provider:?} not found")]
    SecretNotFound {
        provider: String,
        namespace: String,
        secret: String,
    },
    #[error(
        "Secret {namespace}/{secret} has no non-empty key {key:?} (DatabaseProvider {provider:?})"
    )]
    KeyMissing {
        provider: String,
        namespace: String,
        secret: String,
        key: String,
    },
    #[error("DatabaseProvider {provider:?} is invalid: {source}")]
    Invalid {
        provider: String,
        #[source]
        source: BuildError,
    },
    #[error("could not read DatabaseProvider {provider:?} or its Secret: {}", super::kube_error::describe(.source))]
    Kube {
        provider: String,
        #[source]
        source: kube::Error,
    },
}

impl LookupError {
    /// Whether a retry may succeed without a user change (only API-server trouble).
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            LookupError::Kube { .. } | LookupError::NamespaceTerminating { .. }
        )
    }

    /// The condition reason / metric category.
    pub fn category(&self) -> &'static str {
        use super::conditions::reason;
        match self {
            LookupError::ProviderNotFound { .. } => reason::PROVIDER_NOT_FOUND,
            LookupError::ProviderDeleting { .. } => reason::PROVIDER_DELETING,
            LookupError::SecretNotFound { .. }
            | LookupError::KeyMissing { .. }
            | LookupError::SecretDeleting { .. } => reason::CREDENTIALS_MISSING,
            LookupError::Invalid { .. } | LookupError::ProviderUnreadable { .. } => {
                reason::PROVIDER_INVALID
            }
            LookupError::NamespaceTerminating { .. } => reason::NAMESPACE_TERMINATING,
            LookupError::Kube { .. } => "KubernetesApiError",
        }
    }

    /// The provider or its Secret no longer exists. In-use protection keeps
    /// both while anything depends on them, so this only happens when someone
    /// removed the protection by hand: a cleanup cannot reach the vendor any
    /// more and says so instead of waiting forever.
    pub fn is_gone(&self) -> bool {
        matches!(
            self,
            LookupError::ProviderNotFound { .. } | LookupError::SecretNotFound { .. }
        )
    }
}

/// Watch caches the lookups read before asking the API server: every
/// `DatabaseProvider`, and the credential Secrets in-use protection labels
/// (so a provider's Secret is cached from its first dependent on).
#[derive(Clone)]
pub struct Caches {
    pub providers: Store<DeserializeGuard<DatabaseProvider>>,
    pub secrets: Vec<Store<Secret>>,
}

/// How long a namespace seen not terminating is taken to be so without
/// another read. A create in a namespace that began terminating meanwhile is
/// refused by Kubernetes at its first write, and cleaned up by the finalizer.
const LIVE_NAMESPACE_FOR: std::time::Duration = std::time::Duration::from_secs(5);

/// What [`Context::protect_dependency`] found.
enum Protection {
    Protected,
    Deleting,
    Gone,
}

impl Context {
    /// The `DatabaseProvider` named by `provider_ref`.
    pub async fn provider_object(
        &self,
        provider_ref: &ProviderRef,
    ) -> Result<DatabaseProvider, LookupError> {
        let cached = self.cached(|c| {
            c.providers
                .get(&ObjectRef::new(&provider_ref.name))
                .and_then(|g| g.0.as_ref().ok().cloned())
        });
        if let Some(provider) = cached {
            return Ok(provider);
        }
        self.fetch_provider(provider_ref).await
    }

    /// The `DatabaseProvider` named by `provider_ref`, read from the API server.
    async fn fetch_provider(
        &self,
        provider_ref: &ProviderRef,
    ) -> Result<DatabaseProvider, LookupError> {
        let api: Api<DeserializeGuard<DatabaseProvider>> = Api::all(self.client.clone());
        let name = provider_ref.name.clone();
        match get_guarded(&api, &name).await {
            Err(source) => Err(LookupError::Kube {
                provider: name,
                source,
            }),
            Ok(None) => Err(LookupError::ProviderNotFound { name }),
            Ok(Some(Err(invalid))) => Err(LookupError::ProviderUnreadable {
                name,
                problem: super::decode::scrub(&invalid.error),
            }),
            Ok(Some(Ok(provider))) => Ok(provider),
        }
    }

    /// Gets a resource ready for its first create at the vendor, through the
    /// provider it looked up (`provider`, read once for the whole reconcile):
    /// refuses a namespace, provider or credentials Secret being deleted, and
    /// puts the in-use finalizer on the provider and its Secret if they lack
    /// it (a write only the first time), so neither can go away while the new
    /// vendor object exists. From the moment the resource exists it counts as
    /// a dependent of an existing provider (see `protection::plan`), so no
    /// second read is needed after `createRequested` is saved.
    pub async fn prepare_create(
        &self,
        provider: &ProviderHandle,
        namespace: &str,
    ) -> Result<(), LookupError> {
        if self.namespace_terminating(namespace).await {
            return Err(LookupError::NamespaceTerminating {
                namespace: namespace.to_string(),
            });
        }
        let name = provider.name.clone();
        // `provider` was read afresh for this pass ([`Context::provider_fresh`]).
        if provider.provider.deleting {
            return Err(LookupError::ProviderDeleting { name });
        }
        let (secret_namespace, secret_name) = &provider.secret_key;
        if provider.secret.deleting {
            return Err(LookupError::SecretDeleting {
                provider: name,
                namespace: secret_namespace.clone(),
                secret: secret_name.clone(),
            });
        }
        if !provider.provider.protected {
            let providers: Api<DatabaseProvider> = Api::all(self.client.clone());
            match self.protect_dependency(&providers, &name).await? {
                Protection::Protected => {}
                Protection::Gone => return Err(LookupError::ProviderNotFound { name }),
                Protection::Deleting => return Err(LookupError::ProviderDeleting { name }),
            }
        }
        if !provider.secret.protected {
            let secrets: Api<Secret> = Api::namespaced(self.client.clone(), secret_namespace);
            match self.protect_dependency(&secrets, secret_name).await {
                Ok(Protection::Protected) | Ok(Protection::Gone) => {}
                Ok(Protection::Deleting) => {
                    return Err(LookupError::SecretDeleting {
                        provider: name,
                        namespace: secret_namespace.clone(),
                        secret: secret_name.clone(),
                    });
                }
                // Not allowed to write that Secret (RBAC): go on; the provider
                // itself is protected, and the in-use loop keeps trying.
                Err(LookupError::Kube { source, .. }) if is_forbidden(&source) => {
                    tracing::debug!(provider = %name, "no permission to protect the provider's Secret");
                }
                Err(error) => return Err(error),
            }
        }
        Ok(())
    }

    /// Puts the in-use finalizer on `name`, retrying a few lost races.
    async fn protect_dependency<K>(
        &self,
        api: &Api<K>,
        name: &str,
    ) -> Result<Protection, LookupError>
    where
        K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
        K::DynamicType: Default,
    {
        use super::protection::Protected;
        let finalizer = &self.settings.protection_finalizer;
        let mut attempt = 0;
        loop {
            attempt += 1;
            match super::protection::protect(api, name, finalizer).await {
                Ok(Protected::Yes) => return Ok(Protection::Protected),
                Ok(Protected::Deleting) => return Ok(Protection::Deleting),
                Ok(Protected::Gone) => return Ok(Protection::Gone),
                Err(e) if super::kube_error::conflict(&e, false) && attempt < 5 => continue,
                Err(source) => {
                    return Err(LookupError::Kube {
                        provider: name.to_string(),
                        source,
                    });
                }
            }
        }
    }

    /// Whether namespace `namespace` is being deleted. Unknown (not allowed to
    /// read it, or an error) counts as no: the writes that follow then say so.
    pub async fn namespace_terminating(&self, namespace: &str) -> bool {
        let recently_live = {
            let live = self
                .live_namespaces
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            live.get(namespace)
                .is_some_and(|at| at.elapsed() < LIVE_NAMESPACE_FOR)
        };
        if recently_live {
            return false;
        }
        let api: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(self.client.clone());
        let terminating = match api.get_opt(namespace).await {
            Ok(Some(ns)) => {
                ns.metadata.deletion_timestamp.is_some()
                    || ns.status.and_then(|s| s.phase).as_deref() == Some("Terminating")
            }
            _ => false,
        };
        let mut live = self
            .live_namespaces
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if terminating {
            live.remove(namespace);
        } else {
            live.retain(|_, at| at.elapsed() < LIVE_NAMESPACE_FOR);
            live.insert(namespace.to_string(), std::time::Instant::now());
        }
        terminating
    }

    /// Gives the lookups the protection loop's watch caches.
    pub fn set_caches(&self, caches: Option<Caches>) {
        *self.caches.write().unwrap_or_else(|p| p.into_inner()) = caches;
    }

    /// `read` applied to the watch caches, if they are there.
    fn cached<T>(&self, read: impl FnOnce(&Caches) -> Option<T>) -> Option<T> {
        self.caches
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .and_then(read)
    }

    /// The client of the `DatabaseProvider` named by `provider_ref`, built from
    /// its current spec and Secret (cached while neither changes), with what
    /// in-use protection needs to know of both.
    pub async fn provider(
        &self,
        provider_ref: &ProviderRef,
    ) -> Result<ProviderHandle, LookupError> {
        let provider = self.provider_object(provider_ref).await?;
        self.handle(provider).await
    }

    /// As [`Context::provider`], but the `DatabaseProvider` is read from the
    /// API server, not the watch cache: for a pass that may send a first
    /// create, which must use the provider as it is now (and must not miss
    /// that it is being deleted).
    pub async fn provider_fresh(
        &self,
        provider_ref: &ProviderRef,
    ) -> Result<ProviderHandle, LookupError> {
        let provider = self.fetch_provider(provider_ref).await?;
        self.handle(provider).await
    }

    /// The handle of `provider`: its credentials and its (cached) client.
    async fn handle(&self, provider: DatabaseProvider) -> Result<ProviderHandle, LookupError> {
        let name = provider.name_any();
        let selector = &provider.spec.credentials_secret_ref;
        let (secret, key) = self.api_key(&name, selector).await?;
        let fingerprint = format!(
            "{}/{}/{}",
            provider.metadata.uid.as_deref().unwrap_or_default(),
            provider.resource_version().unwrap_or_default(),
            secret.resource_version().unwrap_or_default()
        );
        let finalizer = &self.settings.protection_finalizer;
        let facts = |meta: &kube::core::ObjectMeta| Facts {
            deleting: meta.deletion_timestamp.is_some(),
            protected: meta.finalizers.iter().flatten().any(|f| f == finalizer),
        };
        let provider_facts = facts(&provider.metadata);
        let secret_facts = facts(&secret.metadata);
        let secret_key = (selector.namespace.clone(), selector.name.clone());
        let spec = provider.spec.clone();
        let client = self
            .providers
            .get_or_build(&name, &fingerprint, move || ProviderConfig {
                spec,
                api_key: SecretString::from(key),
            })
            .map_err(|source| LookupError::Invalid {
                provider: name.clone(),
                source,
            })?;
        Ok(ProviderHandle {
            client,
            name,
            provider: provider_facts,
            secret: secret_facts,
            secret_key,
        })
    }
}

impl Context {
    /// The provider's credentials Secret and the API key in it.
    async fn api_key(
        &self,
        provider: &str,
        selector: &crate::api::v1alpha1::SecretKeySelector,
    ) -> Result<(Secret, String), LookupError> {
        let cached = self.cached(|c| {
            let key = ObjectRef::new(&selector.name).within(&selector.namespace);
            c.secrets.iter().find_map(|store| store.get(&key))
        });
        let secret = match cached {
            Some(secret) => Some((*secret).clone()),
            None => {
                let secrets: Api<Secret> =
                    Api::namespaced(self.client.clone(), &selector.namespace);
                secrets
                    .get_opt(&selector.name)
                    .await
                    .map_err(|source| LookupError::Kube {
                        provider: provider.to_string(),
                        source,
                    })?
            }
        };
        let secret = secret.ok_or_else(|| LookupError::SecretNotFound {
            provider: provider.to_string(),
            namespace: selector.namespace.clone(),
            secret: selector.name.clone(),
        })?;
        let key = secret
            .data
            .as_ref()
            .and_then(|d| d.get(&selector.key))
            .and_then(|v| String::from_utf8(v.0.clone()).ok())
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
            .ok_or_else(|| LookupError::KeyMissing {
                provider: provider.to_string(),
                namespace: selector.namespace.clone(),
                secret: selector.name.clone(),
                key: selector.key.clone(),
            })?;
        Ok((secret, key))
    }
}

/// Whether a provider or Secret is being deleted and carries the in-use finalizer.
#[derive(Clone, Copy, Debug)]
struct Facts {
    deleting: bool,
    protected: bool,
}

/// A provider's client, with what the lookup saw of the `DatabaseProvider` and
/// its Secret. Dereferences to the client.
pub struct ProviderHandle {
    client: Arc<dyn Provider>,
    name: String,
    provider: Facts,
    secret: Facts,
    secret_key: (String, String),
}

impl ProviderHandle {
    /// The client, shared.
    pub fn client(&self) -> Arc<dyn Provider> {
        self.client.clone()
    }
}

impl std::ops::Deref for ProviderHandle {
    type Target = dyn Provider;
    fn deref(&self) -> &Self::Target {
        &*self.client
    }
}

impl AsRef<dyn Provider> for ProviderHandle {
    fn as_ref(&self) -> &(dyn Provider + 'static) {
        &*self.client
    }
}

impl Context {
    /// The provider a cleanup deletes through, or `None` when the provider or
    /// its Secret no longer exists (in-use protection was removed by hand): a
    /// Warning Event then says that `left` (e.g. "vendor project prj_1") may
    /// still exist at the vendor, and the cleanup finishes rather than waiting
    /// for something that will not come back.
    pub async fn provider_for_cleanup<K>(
        &self,
        owner: &K,
        provider_ref: &ProviderRef,
        left: &str,
    ) -> Result<Option<Arc<dyn Provider>>, LookupError>
    where
        K: kube::Resource<DynamicType = ()>,
    {
        match self.provider(provider_ref).await {
            Ok(provider) => Ok(Some(provider.client())),
            Err(error) if error.is_gone() => {
                self.cleanup_skipped(
                    owner,
                    format!(
                        "{error}, so {left} could not be deleted; delete it at the vendor if it still exists"
                    ),
                )
                .await;
                Ok(None)
            }
            Err(error) => Err(error),
        }
    }

    /// Says, in a Warning Event, why a cleanup finishes without reaching the vendor.
    pub async fn cleanup_skipped<K>(&self, owner: &K, note: String)
    where
        K: kube::Resource<DynamicType = ()>,
    {
        self.publish(
            owner,
            kube::runtime::events::EventType::Warning,
            "VendorCleanupSkipped",
            "Delete",
            note,
        )
        .await;
    }
}
