//! Which `DatabaseProvider`s and Secrets are in use, and what to change so
//! that exactly those carry the in-use finalizer. Pure: the loop in
//! [`super`] feeds it what the caches (or a live list) hold and applies the
//! [`Change`]s it returns.
//!
//! The rules:
//! - A resource that uses a provider (a `DatabaseProject` or `ByokCredential`
//!   through `providerRef`, a branch or snapshot through the provider recorded
//!   when its vendor object was made) counts as a dependent while it exists,
//!   and, once it is being deleted, while its cleanup still has to call the
//!   vendor (policy `Delete`, something made at the vendor, finalizer held).
//! - While a provider is being deleted it takes no new dependents: a live
//!   resource that has made nothing at the vendor stops counting once its
//!   controller has seen the deletion and said so (`Stalled` with reason
//!   `ProviderDeleting`). Until then it counts, so a resource that looked up
//!   the provider a moment before its deletion started can still create
//!   safely: the provider stays.
//! - A provider with a dependent is in use; so is the Secret it reads its key
//!   from. A Secret a live `ByokCredential` reads is in use too (and, while a
//!   deleted one may still replay its registration, for that).
//! - In use and not protected: protect (not possible once deletion started:
//!   the API server refuses new finalizers then). Protected and not in use:
//!   release.

use std::collections::{BTreeMap, BTreeSet};

use kube::{Resource, ResourceExt};

use crate::api::v1alpha1::{
    ByokCredential, Conditions, DatabaseBranch, DatabaseProject, DatabaseProvider,
    DatabaseSnapshot, DeletionPolicy,
};
use crate::controllers::runtime::FINALIZER;
use crate::controllers::runtime::conditions::{STALLED, reason};

/// A Secret, by namespace and name.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SecretKey {
    pub namespace: String,
    pub name: String,
}

impl std::fmt::Display for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// How one resource uses a provider.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Use {
    /// `Kind namespace/name`, for messages.
    pub who: String,
    /// The `DatabaseProvider` it goes through, if known.
    pub provider: Option<String>,
    /// Not being deleted.
    pub alive: bool,
    /// Something may exist at the vendor because of it (an id, an adopted
    /// object, or a create that may have been sent).
    pub vendor_state: bool,
    /// Once deleted, its cleanup calls the vendor (policy `Delete`, vendor state,
    /// the cleanup finalizer still held).
    pub cleanup_calls_vendor: bool,
    /// Its status says it will not create through its provider because that
    /// provider is being deleted (`Stalled`, reason `ProviderDeleting`).
    pub refused_deleting_provider: bool,
}

impl Use {
    /// Whether it keeps its provider in use; `provider_deleting` says whether
    /// that provider is being deleted.
    pub fn counts(&self, provider_deleting: bool) -> bool {
        if self.alive {
            self.vendor_state || !(provider_deleting && self.refused_deleting_provider)
        } else {
            self.cleanup_calls_vendor
        }
    }
}

fn holds_cleanup_finalizer<K: kube::Resource>(obj: &K) -> bool {
    obj.finalizers().iter().any(|f| f == FINALIZER)
}

fn who<K: kube::Resource<DynamicType = ()>>(obj: &K) -> String {
    format!(
        "{} {}/{}",
        K::kind(&()),
        obj.namespace().unwrap_or_default(),
        obj.name_any()
    )
}

fn make_use<K: kube::Resource<DynamicType = ()>>(
    obj: &K,
    provider: Option<String>,
    vendor_state: bool,
    policy: DeletionPolicy,
    conditions: Option<&Conditions>,
) -> Use {
    let alive = obj.meta().deletion_timestamp.is_none();
    let refused_deleting_provider = conditions
        .and_then(|c| c.get(STALLED))
        .is_some_and(|c| c.status == "True" && c.reason == reason::PROVIDER_DELETING);
    Use {
        who: who(obj),
        provider,
        alive,
        vendor_state,
        cleanup_calls_vendor: !alive
            && holds_cleanup_finalizer(obj)
            && policy == DeletionPolicy::Delete
            && vendor_state,
        refused_deleting_provider,
    }
}

/// How a `DatabaseProject` uses its provider.
pub fn project_use(p: &DatabaseProject) -> Use {
    let status = p.status.as_ref();
    let vendor_state = p.spec.external_id.is_some()
        || status.is_some_and(|s| s.project_id.is_some() || s.create_requested);
    make_use(
        p,
        Some(p.spec.provider_ref.name.clone()),
        vendor_state,
        p.spec.effective_deletion_policy(),
        status.map(|s| &s.conditions),
    )
}

/// How a `DatabaseBranch` uses a provider: the one recorded in status when its
/// vendor object was made (before that, it depends on its project, which counts).
pub fn branch_use(b: &DatabaseBranch) -> Use {
    let status = b.status.as_ref();
    let vendor_state = b.spec.external_id.is_some()
        || status.is_some_and(|s| s.branch_id.is_some() || s.create_requested);
    make_use(
        b,
        status.and_then(|s| s.provider_name.clone()),
        vendor_state,
        b.spec.effective_deletion_policy(),
        status.map(|s| &s.conditions),
    )
}

/// How a `DatabaseSnapshot` uses a provider (see [`branch_use`]).
pub fn snapshot_use(s: &DatabaseSnapshot) -> Use {
    let status = s.status.as_ref();
    let vendor_state = s.spec.external_id.is_some()
        || status.is_some_and(|st| st.snapshot_id.is_some() || st.create_requested);
    make_use(
        s,
        status.and_then(|st| st.provider_name.clone()),
        vendor_state,
        s.spec.effective_deletion_policy(),
        status.map(|st| &st.conditions),
    )
}

/// How a `ByokCredential` uses its provider.
pub fn byok_use(c: &ByokCredential) -> Use {
    let status = c.status.as_ref();
    let vendor_state = status.is_some_and(|s| s.byok_id.is_some() || s.create_requested);
    make_use(
        c,
        Some(c.spec.provider_ref.name.clone()),
        vendor_state,
        c.spec.deletion_policy,
        status.map(|s| &s.conditions),
    )
}

/// The Secret a `ByokCredential` needs, if it needs it now: while it exists,
/// and after deletion while its cleanup may replay the registration (which
/// resends the credential).
pub fn byok_secret_use(c: &ByokCredential) -> Option<SecretKey> {
    let key = SecretKey {
        namespace: c.namespace()?,
        name: c.spec.credentials_secret_ref.name.clone(),
    };
    if c.meta().deletion_timestamp.is_none() {
        return Some(key);
    }
    let status = c.status.as_ref();
    let replay = holds_cleanup_finalizer(c)
        && c.spec.deletion_policy == DeletionPolicy::Delete
        && status.is_some_and(|s| s.byok_id.is_none() && s.create_requested);
    replay.then_some(key)
}

/// What the planner knows of a provider.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProviderFacts {
    pub name: String,
    pub deleting: bool,
    /// Carries the in-use finalizer.
    pub protected: bool,
    pub secret: SecretKey,
}

impl ProviderFacts {
    pub fn of(p: &DatabaseProvider, finalizer: &str) -> Self {
        let selector = &p.spec.credentials_secret_ref;
        Self {
            name: p.name_any(),
            deleting: p.meta().deletion_timestamp.is_some(),
            protected: p.finalizers().iter().any(|f| f == finalizer),
            secret: SecretKey {
                namespace: selector.namespace.clone(),
                name: selector.name.clone(),
            },
        }
    }
}

/// What the planner knows of a Secret that carries (or carried) the in-use finalizer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SecretFacts {
    pub key: SecretKey,
    pub protected: bool,
}

/// Everything the planner looks at.
#[derive(Clone, Debug, Default)]
pub struct View {
    pub providers: Vec<ProviderFacts>,
    /// Every resource's use of a provider.
    pub uses: Vec<Use>,
    /// Secrets named by `ByokCredential`s that need them now.
    pub byok_secrets: Vec<SecretKey>,
    /// Secrets known to carry the protection label (protected now or before).
    pub secrets: Vec<SecretFacts>,
}

/// One finalizer to add or remove.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Change {
    ProtectProvider(String),
    ReleaseProvider(String),
    ProtectSecret(SecretKey),
    ReleaseSecret(SecretKey),
}

impl std::fmt::Display for Change {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Change::ProtectProvider(name) => write!(f, "protect DatabaseProvider {name}"),
            Change::ReleaseProvider(name) => write!(f, "release DatabaseProvider {name}"),
            Change::ProtectSecret(key) => write!(f, "protect Secret {key}"),
            Change::ReleaseSecret(key) => write!(f, "release Secret {key}"),
        }
    }
}

impl Change {
    /// Whether this change removes a finalizer (and must be confirmed first).
    pub fn is_release(&self) -> bool {
        matches!(self, Change::ReleaseProvider(_) | Change::ReleaseSecret(_))
    }
}

/// What [`plan`] found, with the changes to make.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// The dependents of each provider in use (sorted), for messages.
    pub dependents: BTreeMap<String, Vec<String>>,
    /// The Secrets in use.
    pub secrets_in_use: BTreeSet<SecretKey>,
    /// The changes, in a stable order.
    pub changes: Vec<Change>,
}

impl Plan {
    /// Whether `provider` is in use.
    pub fn provider_in_use(&self, provider: &str) -> bool {
        self.dependents.contains_key(provider)
    }
}

/// The plan for `view`.
pub fn plan(view: &View) -> Plan {
    let deleting: BTreeMap<&str, bool> = view
        .providers
        .iter()
        .map(|p| (p.name.as_str(), p.deleting))
        .collect();
    let mut dependents: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for u in &view.uses {
        let Some(provider) = u.provider.as_deref() else {
            continue;
        };
        // A provider that does not exist has nothing to protect; a use of it
        // counts as if it were not being deleted.
        let provider_deleting = deleting.get(provider).copied().unwrap_or(false);
        if u.counts(provider_deleting) {
            dependents
                .entry(provider.to_string())
                .or_default()
                .push(u.who.clone());
        }
    }
    for list in dependents.values_mut() {
        list.sort();
        list.dedup();
    }
    // Only providers that exist are "in use".
    dependents.retain(|name, _| deleting.contains_key(name.as_str()));

    let mut secrets_in_use: BTreeSet<SecretKey> = view.byok_secrets.iter().cloned().collect();
    let mut changes = BTreeSet::new();
    for p in &view.providers {
        let in_use = dependents.contains_key(&p.name);
        if in_use {
            secrets_in_use.insert(p.secret.clone());
        }
        match (in_use, p.protected) {
            (true, false) if !p.deleting => {
                changes.insert(Change::ProtectProvider(p.name.clone()));
            }
            (false, true) => {
                changes.insert(Change::ReleaseProvider(p.name.clone()));
            }
            _ => {}
        }
    }
    let protected: BTreeMap<&SecretKey, bool> =
        view.secrets.iter().map(|s| (&s.key, s.protected)).collect();
    for key in &secrets_in_use {
        if !protected.get(key).copied().unwrap_or(false) {
            changes.insert(Change::ProtectSecret(key.clone()));
        }
    }
    for s in &view.secrets {
        if s.protected && !secrets_in_use.contains(&s.key) {
            changes.insert(Change::ReleaseSecret(s.key.clone()));
        }
    }
    Plan {
        dependents,
        secrets_in_use,
        changes: changes.into_iter().collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(ns: &str, name: &str) -> SecretKey {
        SecretKey {
            namespace: ns.into(),
            name: name.into(),
        }
    }

    fn provider(name: &str, deleting: bool, protected: bool, secret: SecretKey) -> ProviderFacts {
        ProviderFacts {
            name: name.into(),
            deleting,
            protected,
            secret,
        }
    }

    fn live(who: &str, provider: &str, vendor_state: bool) -> Use {
        Use {
            who: who.into(),
            provider: Some(provider.into()),
            alive: true,
            vendor_state,
            cleanup_calls_vendor: false,
            refused_deleting_provider: false,
        }
    }

    /// A live resource that made nothing and has said it will not, the provider being deleted.
    fn refused(who: &str, provider: &str) -> Use {
        Use {
            refused_deleting_provider: true,
            ..live(who, provider, false)
        }
    }

    fn deleted(who: &str, provider: &str, cleanup_calls_vendor: bool) -> Use {
        Use {
            who: who.into(),
            provider: Some(provider.into()),
            alive: false,
            vendor_state: true,
            cleanup_calls_vendor,
            refused_deleting_provider: false,
        }
    }

    fn secret(k: SecretKey, protected: bool) -> SecretFacts {
        SecretFacts { key: k, protected }
    }

    #[test]
    fn a_used_provider_and_its_secret_are_protected() {
        let view = View {
            providers: vec![provider("default", false, false, key("ops", "creds"))],
            uses: vec![live("DatabaseProject team/a", "default", false)],
            ..View::default()
        };
        let plan = plan(&view);
        assert_eq!(
            plan.changes,
            vec![
                Change::ProtectProvider("default".into()),
                Change::ProtectSecret(key("ops", "creds")),
            ]
        );
        assert_eq!(plan.dependents["default"], vec!["DatabaseProject team/a"]);
    }

    #[test]
    fn protection_holds_while_cleanup_needs_the_vendor_and_is_released_after() {
        let providers = vec![provider("default", true, true, key("ops", "creds"))];
        let secrets = vec![secret(key("ops", "creds"), true)];
        // Everything deleted at once: the project still has to delete its vendor project.
        let cleaning = View {
            providers: providers.clone(),
            uses: vec![deleted("DatabaseProject team/a", "default", true)],
            secrets: secrets.clone(),
            ..View::default()
        };
        assert_eq!(plan(&cleaning).changes, vec![]);
        // Its cleanup is done (or it never made anything): both are released.
        let done = View {
            providers,
            uses: vec![deleted("DatabaseProject team/a", "default", false)],
            secrets,
            ..View::default()
        };
        assert_eq!(
            plan(&done).changes,
            vec![
                Change::ReleaseProvider("default".into()),
                Change::ReleaseSecret(key("ops", "creds")),
            ]
        );
    }

    #[test]
    fn a_deleting_provider_takes_no_new_dependents() {
        let view = View {
            providers: vec![provider("default", true, true, key("ops", "creds"))],
            uses: vec![
                // Applied after the provider's deletion started: made nothing,
                // and said it will not.
                refused("DatabaseProject team/new", "default"),
            ],
            secrets: vec![secret(key("ops", "creds"), true)],
            ..View::default()
        };
        assert_eq!(
            plan(&view).changes,
            vec![
                Change::ReleaseProvider("default".into()),
                Change::ReleaseSecret(key("ops", "creds")),
            ]
        );
        // One that has not yet seen the deletion may be about to create: it
        // keeps the provider until it has said it will not.
        let mut racing = view.clone();
        racing
            .uses
            .push(live("DatabaseProject team/racing", "default", false));
        assert_eq!(plan(&racing).changes, vec![]);
        // One that reached the vendor before keeps it.
        let mut kept = view.clone();
        kept.uses
            .push(live("DatabaseProject team/old", "default", true));
        assert_eq!(plan(&kept).changes, vec![]);
    }

    #[test]
    fn a_deleting_provider_is_never_given_the_finalizer_again() {
        let view = View {
            providers: vec![provider("default", true, false, key("ops", "creds"))],
            uses: vec![live("DatabaseProject team/old", "default", true)],
            ..View::default()
        };
        // The API server would refuse it; the Secret is still protected.
        assert_eq!(
            plan(&view).changes,
            vec![Change::ProtectSecret(key("ops", "creds"))]
        );
    }

    #[test]
    fn a_secret_shared_by_two_providers_stays_while_either_is_in_use() {
        let shared = key("ops", "creds");
        let view = View {
            providers: vec![
                provider("a", false, false, shared.clone()),
                provider("b", false, true, shared.clone()),
            ],
            uses: vec![live("DatabaseProject team/x", "a", true)],
            secrets: vec![secret(shared.clone(), true)],
            ..View::default()
        };
        assert_eq!(
            plan(&view).changes,
            vec![
                Change::ProtectProvider("a".into()),
                Change::ReleaseProvider("b".into()),
            ]
        );
    }

    #[test]
    fn byok_secrets_are_protected_while_their_credential_needs_them() {
        let view = View {
            byok_secrets: vec![key("team", "neon-key")],
            secrets: vec![secret(key("team", "old-key"), true)],
            ..View::default()
        };
        assert_eq!(
            plan(&view).changes,
            vec![
                Change::ProtectSecret(key("team", "neon-key")),
                Change::ReleaseSecret(key("team", "old-key")),
            ]
        );
    }

    #[test]
    fn uses_of_unknown_providers_and_unrecorded_children_change_nothing() {
        let mut child = live("DatabaseBranch team/b", "x", false);
        child.provider = None;
        let view = View {
            uses: vec![live("DatabaseProject team/a", "missing", true), child],
            secrets: vec![secret(key("ops", "unprotected"), false)],
            ..View::default()
        };
        let plan = plan(&view);
        assert_eq!(plan.changes, vec![]);
        assert!(plan.dependents.is_empty());
    }

    #[test]
    fn what_counts_as_a_dependent() {
        let mut project = DatabaseProject::new("a", Default::default());
        project.metadata.namespace = Some("team".into());
        let u = project_use(&project);
        assert_eq!(u.who, "DatabaseProject team/a");
        assert_eq!(u.provider.as_deref(), Some("default"));
        assert!(u.counts(false), "a new project will use its provider");
        assert!(u.counts(true), "until it has seen the provider's deletion");
        project.status = Some(crate::api::v1alpha1::DatabaseProjectStatus {
            conditions: crate::controllers::runtime::conditions::conditions_for(
                &crate::controllers::runtime::conditions::Health::stalled(
                    reason::PROVIDER_DELETING,
                    "the provider is being deleted",
                ),
                Some(1),
                &Conditions::default(),
                k8s_openapi::jiff::Timestamp::now(),
            ),
            ..Default::default()
        });
        assert!(
            !project_use(&project).counts(true),
            "and said it will not create"
        );

        project.status = Some(crate::api::v1alpha1::DatabaseProjectStatus {
            create_requested: true,
            ..Default::default()
        });
        assert!(
            project_use(&project).counts(true),
            "a create may have been sent"
        );

        project.metadata.deletion_timestamp =
            Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                k8s_openapi::jiff::Timestamp::now(),
            ));
        assert!(
            !project_use(&project).counts(false),
            "deleted, and its finalizer is gone: cleanup is over"
        );
        project.metadata.finalizers = Some(vec![FINALIZER.to_string()]);
        assert!(project_use(&project).counts(true), "cleanup still to do");
        project.spec.deletion_policy = Some(DeletionPolicy::Retain);
        assert!(
            !project_use(&project).counts(false),
            "Retain never calls the vendor"
        );
    }

    #[test]
    fn a_deleted_credential_needs_its_secret_only_to_replay_a_registration() {
        let mut c = ByokCredential::new(
            "neon",
            crate::api::v1alpha1::ByokCredentialSpec {
                provider_ref: Default::default(),
                vendor: "neon".into(),
                alias: "a".into(),
                credentials_secret_ref: crate::api::v1alpha1::LocalObjectRef {
                    name: "neon-key".into(),
                },
                enabled: true,
                bindings: vec![],
                quota: None,
                test_interval: None,
                deletion_policy: DeletionPolicy::Delete,
            },
        );
        c.metadata.namespace = Some("team".into());
        assert_eq!(byok_secret_use(&c), Some(key("team", "neon-key")));
        c.metadata.deletion_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            k8s_openapi::jiff::Timestamp::now(),
        ));
        c.metadata.finalizers = Some(vec![FINALIZER.to_string()]);
        assert_eq!(byok_secret_use(&c), None, "revoking needs only the id");
        c.status = Some(crate::api::v1alpha1::ByokCredentialStatus {
            create_requested: true,
            ..Default::default()
        });
        assert_eq!(byok_secret_use(&c), Some(key("team", "neon-key")));
    }
}
