//! From a `providerRef` to a ready-to-use provider client: the
//! `DatabaseProvider`, its credentials Secret, and the cached client.

use std::sync::Arc;

use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;
use kube::api::Api;
use kube::core::DeserializeGuard;
use kube::runtime::reflector::ObjectRef;
use secrecy::SecretString;

use crate::controllers::runtime::decode::{self, get_guarded};
use crate::controllers::runtime::{Context, conditions, kube_error};

fn is_forbidden(error: &kube::Error) -> bool {
    matches!(error, kube::Error::Api(status) if status.code == 403)
}
use super::claims::{self, ClaimKey};
use super::in_use::{self, Protected};
use super::tenancy::{self, Refusal};
use crate::api::v1alpha1::{ClaimedObject, DatabaseProvider, ProviderRef};
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
    #[error(
        "DatabaseProvider {provider:?} does not admit namespace {namespace}{}; an administrator of the provider must admit this namespace in its spec.allowedNamespaces",
        refusal_detail(.why)
    )]
    NotAllowed {
        provider: String,
        namespace: String,
        why: Refusal,
    },
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
    #[error("could not read DatabaseProvider {provider:?} or its Secret: {}", kube_error::describe(.source))]
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
        use conditions::reason;
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
            LookupError::NotAllowed { .. } => reason::PROVIDER_NOT_ALLOWED,
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

/// What a refused namespace's message adds: only a broken selector says more.
fn refusal_detail(why: &Refusal) -> String {
    match why {
        Refusal::NotAdmitted => String::new(),
        Refusal::InvalidSelector(problem) => {
            format!(" (its namespace selector cannot be used: {problem})")
        }
    }
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
        // A controller's provider watch may have seen a newer spec than the
        // cache (two watches): then read it, as it is now.
        let newest = self
            .provider_generations
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&provider_ref.name)
            .copied();
        match cached {
            Some(provider) if provider.metadata.generation >= newest => Ok(provider),
            _ => self.fetch_provider(provider_ref).await,
        }
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
                problem: decode::scrub(&invalid.error),
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
        let finalizer = &self.settings.protection_finalizer;
        let mut attempt = 0;
        loop {
            attempt += 1;
            match in_use::protect(api, name, finalizer).await {
                Ok(Protected::Yes) => return Ok(Protection::Protected),
                Ok(Protected::Deleting) => return Ok(Protection::Deleting),
                Ok(Protected::Gone) => return Ok(Protection::Gone),
                Err(e) if kube_error::conflict(&e, false) && attempt < 5 => continue,
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

    /// The client of the `DatabaseProvider` named by `provider_ref`, built from
    /// its current spec and Secret (cached while neither changes), with what
    /// in-use protection needs to know of both. For the provider's own
    /// controller: resources use [`Context::provider_in`].
    pub async fn provider(
        &self,
        provider_ref: &ProviderRef,
    ) -> Result<ProviderHandle, LookupError> {
        let provider = self.provider_object(provider_ref).await?;
        self.handle(provider, None).await
    }

    /// The provider named by `provider_ref`, for a resource in `namespace`:
    /// refused ([`LookupError::NotAllowed`]) unless the provider's
    /// `spec.allowedNamespaces` admits the namespace, checked on every call
    /// with the namespace's current labels. With `fresh`, the provider is read
    /// from the API server, not the watch cache: for a pass that may send a
    /// first create, which must use the provider as it is now (and must not
    /// miss that it is being deleted).
    pub async fn provider_in(
        &self,
        namespace: &str,
        provider_ref: &ProviderRef,
        fresh: bool,
    ) -> Result<ProviderHandle, LookupError> {
        let provider = if fresh {
            self.fetch_provider(provider_ref).await?
        } else {
            self.provider_object(provider_ref).await?
        };
        self.handle(provider, Some(namespace)).await
    }

    /// The labels of namespace `name`, from the watch cache or else read;
    /// `None` when it cannot be read (a selector then admits nothing that
    /// needs a label).
    pub async fn namespace_labels(
        &self,
        name: &str,
    ) -> Option<std::collections::BTreeMap<String, String>> {
        let cached = self.cached(|c| {
            c.namespaces
                .as_ref()
                .and_then(|store| store.get(&ObjectRef::new(name)))
        });
        if let Some(ns) = cached {
            return Some(ns.metadata.labels.clone().unwrap_or_default());
        }
        let api: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(self.client.clone());
        match api.get_metadata_opt(name).await {
            Ok(Some(ns)) => Some(ns.metadata.labels.unwrap_or_default()),
            _ => None,
        }
    }

    /// Whether resources in `namespace` may use and adopt through `provider`.
    async fn admission(
        &self,
        provider: &DatabaseProvider,
        namespace: &str,
    ) -> (Result<(), Refusal>, Result<(), Refusal>) {
        use crate::api::v1alpha1::NamespacesFrom::Selector;
        let spec = &provider.spec;
        let needs_labels = spec.allowed_namespaces.from == Selector
            || spec.adoption.allowed_namespaces.from == Selector;
        let labels = if needs_labels {
            self.namespace_labels(namespace).await
        } else {
            None
        };
        (
            tenancy::may_use(spec, namespace, labels.as_ref()),
            tenancy::may_adopt(spec, namespace, labels.as_ref()),
        )
    }

    /// The handle of `provider`: its credentials and its (cached) client;
    /// for a resource in `namespace`, once the provider admits it.
    async fn handle(
        &self,
        provider: DatabaseProvider,
        namespace: Option<&str>,
    ) -> Result<ProviderHandle, LookupError> {
        let adoption = match namespace {
            Some(namespace) => {
                let (usable, adoption) = self.admission(&provider, namespace).await;
                if let Err(why) = usable {
                    return Err(LookupError::NotAllowed {
                        provider: provider.name_any(),
                        namespace: namespace.to_string(),
                        why,
                    });
                }
                adoption
            }
            None => Ok(()),
        };
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
        let account = ProviderConfig {
            spec: spec.clone(),
            api_key: SecretString::from(String::new()),
        }
        .effective_endpoint()
        .map(|endpoint| claims::account(spec.api, endpoint))
        .unwrap_or_default();
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
            account,
            adoption,
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
    /// The vendor account the provider reaches ([`claims::account`]).
    account: String,
    /// Whether the namespace it was looked up for may adopt through it.
    adoption: Result<(), Refusal>,
    provider: Facts,
    secret: Facts,
    secret_key: (String, String),
}

impl ProviderHandle {
    /// The client, shared.
    pub fn client(&self) -> Arc<dyn Provider> {
        self.client.clone()
    }

    /// The `DatabaseProvider`'s name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The claim of vendor object `id` of kind `object` in this provider's account.
    pub fn claim_key(&self, object: ClaimedObject, id: &str) -> ClaimKey {
        ClaimKey {
            api: self.client.api(),
            account: self.account.clone(),
            object,
            id: id.to_string(),
        }
    }

    /// Whether the namespace the provider was looked up for may adopt
    /// existing vendor objects through it (`spec.adoption.allowedNamespaces`).
    pub fn adoption(&self) -> &Result<(), Refusal> {
        &self.adoption
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
    ///
    /// A provider that no longer admits the resource's namespace is not
    /// called either: the cleanup finishes, and the Event says the vendor
    /// object is left for the provider's owner.
    pub async fn provider_for_cleanup<K>(
        &self,
        owner: &K,
        provider_ref: &ProviderRef,
        left: &str,
    ) -> Result<Option<ProviderHandle>, LookupError>
    where
        K: kube::Resource<DynamicType = ()>,
    {
        let namespace = owner.meta().namespace.clone().unwrap_or_default();
        match self.provider_in(&namespace, provider_ref, false).await {
            Ok(provider) => Ok(Some(provider)),
            Err(error @ LookupError::NotAllowed { .. }) => {
                self.cleanup_skipped(
                    owner,
                    format!(
                        "{error}, so {left} was not deleted; it is left at the vendor for the provider's owner"
                    ),
                )
                .await;
                Ok(None)
            }
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
