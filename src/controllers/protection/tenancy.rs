//! The tenancy policy, as pure decisions: which namespaces a
//! `DatabaseProvider` admits (`spec.allowedNamespaces`), which may adopt
//! existing vendor objects through it (`spec.adoption.allowedNamespaces`),
//! and what a resource asks for that counts as adoption.
//!
//! The cluster admin and a provider's owner are trusted; a namespace user is
//! not. Every field a namespace user writes is read here as a request that
//! the provider's owner may refuse. The controllers feed these functions what
//! they read (the provider, the namespace's labels) and carry out the answer.

use std::collections::BTreeMap;

use kube::core::SelectorExt;

use crate::api::v1alpha1::{
    AllowedNamespaces, DatabaseBranch, DatabaseProject, DatabaseProviderSpec, DatabaseSnapshot,
    NamespacesFrom,
};

/// Why a namespace is not admitted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The policy does not admit the namespace.
    NotAdmitted,
    /// The policy's selector cannot be read (admits nothing).
    InvalidSelector(String),
}

/// Whether `policy`, on a provider whose credentials live in `home`, admits
/// namespace `namespace` with `labels` (`None`: the namespace's labels are
/// not known, which admits it only where labels do not matter).
pub fn admits(
    policy: &AllowedNamespaces,
    home: &str,
    namespace: &str,
    labels: Option<&BTreeMap<String, String>>,
) -> Result<(), Refusal> {
    match policy.from {
        NamespacesFrom::All => Ok(()),
        NamespacesFrom::Same if namespace == home => Ok(()),
        NamespacesFrom::Same => Err(Refusal::NotAdmitted),
        NamespacesFrom::Selector => {
            let Some(selector) = &policy.selector else {
                return Err(Refusal::InvalidSelector(
                    "from: Selector has no selector".to_string(),
                ));
            };
            let selector = kube::core::Selector::try_from(selector.clone())
                .map_err(|e| Refusal::InvalidSelector(e.to_string()))?;
            let empty = BTreeMap::new();
            if selector.matches(labels.unwrap_or(&empty)) {
                Ok(())
            } else {
                Err(Refusal::NotAdmitted)
            }
        }
    }
}

/// Whether resources in `namespace` may use the provider `spec`.
pub fn may_use(
    spec: &DatabaseProviderSpec,
    namespace: &str,
    labels: Option<&BTreeMap<String, String>>,
) -> Result<(), Refusal> {
    admits(
        &spec.allowed_namespaces,
        &spec.credentials_secret_ref.namespace,
        namespace,
        labels,
    )
}

/// Whether resources in `namespace` may adopt existing vendor objects through
/// the provider `spec`: the namespace must be admitted by both policies.
pub fn may_adopt(
    spec: &DatabaseProviderSpec,
    namespace: &str,
    labels: Option<&BTreeMap<String, String>>,
) -> Result<(), Refusal> {
    may_use(spec, namespace, labels)?;
    admits(
        &spec.adoption.allowed_namespaces,
        &spec.credentials_secret_ref.namespace,
        namespace,
        labels,
    )
}

/// A field of a resource that names an existing vendor object.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Adoption {
    /// `spec.externalId`.
    ExternalId,
    /// `spec.restoreFrom.snapshotId`.
    SnapshotId,
    /// `spec.fromBranch` (a raw vendor branch name).
    FromBranch,
}

impl Adoption {
    /// The field, as a message names it.
    pub fn field(self) -> &'static str {
        match self {
            Adoption::ExternalId => "spec.externalId",
            Adoption::SnapshotId => "spec.restoreFrom.snapshotId",
            Adoption::FromBranch => "spec.fromBranch",
        }
    }
}

/// The first field of `project` that names an existing vendor object.
pub fn project_adoption(project: &DatabaseProject) -> Option<Adoption> {
    let spec = &project.spec;
    if spec.external_id.is_some() {
        return Some(Adoption::ExternalId);
    }
    spec.restore_from
        .as_ref()
        .and_then(|r| r.snapshot_id.as_ref())
        .map(|_| Adoption::SnapshotId)
}

/// The first field of `branch` that names an existing vendor object.
pub fn branch_adoption(branch: &DatabaseBranch) -> Option<Adoption> {
    if branch.spec.external_id.is_some() {
        return Some(Adoption::ExternalId);
    }
    branch
        .spec
        .from_branch
        .as_ref()
        .map(|_| Adoption::FromBranch)
}

/// The field of `snapshot` that names an existing vendor object.
pub fn snapshot_adoption(snapshot: &DatabaseSnapshot) -> Option<Adoption> {
    snapshot
        .spec
        .external_id
        .as_ref()
        .map(|_| Adoption::ExternalId)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::v1alpha1::{
        AdoptionPolicy, DatabaseBranchSpec, DatabaseProjectSpec, DatabaseSnapshotSpec,
        LocalObjectRef, ProviderApi, RestoreSource, SecretKeySelector,
    };
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement};

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn policy(from: NamespacesFrom, selector: Option<LabelSelector>) -> AllowedNamespaces {
        AllowedNamespaces { from, selector }
    }

    fn match_labels(pairs: &[(&str, &str)]) -> LabelSelector {
        LabelSelector {
            match_labels: Some(labels(pairs)),
            ..Default::default()
        }
    }

    #[test]
    fn same_admits_only_the_namespace_of_the_credentials() {
        let same = AllowedNamespaces::default();
        assert_eq!(same.from, NamespacesFrom::Same, "the default");
        assert_eq!(admits(&same, "platform", "platform", None), Ok(()));
        assert_eq!(
            admits(&same, "platform", "team-b", Some(&labels(&[("team", "b")]))),
            Err(Refusal::NotAdmitted)
        );
    }

    #[test]
    fn all_admits_every_namespace() {
        let all = policy(NamespacesFrom::All, None);
        assert_eq!(admits(&all, "platform", "anything", None), Ok(()));
    }

    #[test]
    fn a_selector_admits_the_namespaces_whose_labels_match() {
        let teams = policy(
            NamespacesFrom::Selector,
            Some(match_labels(&[("dbops.dev/tenant", "true")])),
        );
        let tenant = labels(&[("dbops.dev/tenant", "true"), ("team", "a")]);
        assert_eq!(admits(&teams, "platform", "team-a", Some(&tenant)), Ok(()));
        assert_eq!(
            admits(
                &teams,
                "platform",
                "team-b",
                Some(&labels(&[("team", "b")]))
            ),
            Err(Refusal::NotAdmitted)
        );
        assert_eq!(
            admits(&teams, "platform", "team-c", None),
            Err(Refusal::NotAdmitted),
            "unknown labels match no selector with requirements"
        );
        // Not even the provider's own namespace, unless it matches.
        assert_eq!(
            admits(&teams, "platform", "platform", Some(&labels(&[]))),
            Err(Refusal::NotAdmitted)
        );
        let expressions = policy(
            NamespacesFrom::Selector,
            Some(LabelSelector {
                match_expressions: Some(vec![LabelSelectorRequirement {
                    key: "team".into(),
                    operator: "In".into(),
                    values: Some(vec!["a".into(), "c".into()]),
                }]),
                ..Default::default()
            }),
        );
        assert_eq!(
            admits(&expressions, "p", "x", Some(&labels(&[("team", "c")]))),
            Ok(())
        );
        assert_eq!(
            admits(&expressions, "p", "x", Some(&labels(&[("team", "b")]))),
            Err(Refusal::NotAdmitted)
        );
        let everything = policy(NamespacesFrom::Selector, Some(LabelSelector::default()));
        assert_eq!(
            admits(&everything, "p", "x", None),
            Ok(()),
            "{{}} matches all"
        );
    }

    #[test]
    fn a_broken_selector_admits_nothing_and_says_why() {
        let broken = policy(
            NamespacesFrom::Selector,
            Some(LabelSelector {
                match_expressions: Some(vec![LabelSelectorRequirement {
                    key: "team".into(),
                    operator: "Sometimes".into(),
                    values: None,
                }]),
                ..Default::default()
            }),
        );
        assert!(matches!(
            admits(&broken, "p", "x", Some(&labels(&[("team", "a")]))),
            Err(Refusal::InvalidSelector(_))
        ));
        let missing = policy(NamespacesFrom::Selector, None);
        assert!(matches!(
            admits(&missing, "p", "p", None),
            Err(Refusal::InvalidSelector(_))
        ));
    }

    fn provider(allowed: AllowedNamespaces, adoption: AllowedNamespaces) -> DatabaseProviderSpec {
        DatabaseProviderSpec {
            api: ProviderApi::Infrai,
            endpoint: None,
            credentials_secret_ref: SecretKeySelector {
                name: "key".into(),
                namespace: "platform".into(),
                key: "apiKey".into(),
            },
            request_timeout_seconds: 30,
            supabase: None,
            postgres: None,
            byok_policy: None,
            request_budget: None,
            allowed_namespaces: allowed,
            adoption: AdoptionPolicy {
                allowed_namespaces: adoption,
            },
        }
    }

    #[test]
    fn adoption_needs_both_policies() {
        let tenants = labels(&[("tenant", "yes")]);
        let by_label = || {
            policy(
                NamespacesFrom::Selector,
                Some(match_labels(&[("tenant", "yes")])),
            )
        };
        // Tenants may use it, but adopt only in the platform's namespace (the default).
        let p = provider(by_label(), AllowedNamespaces::default());
        assert_eq!(may_use(&p, "team-a", Some(&tenants)), Ok(()));
        assert_eq!(
            may_adopt(&p, "team-a", Some(&tenants)),
            Err(Refusal::NotAdmitted)
        );
        // Adoption open to all, use only to tenants: a non-tenant adopts nothing.
        let p = provider(by_label(), policy(NamespacesFrom::All, None));
        assert_eq!(may_adopt(&p, "team-a", Some(&tenants)), Ok(()));
        assert_eq!(
            may_adopt(&p, "other", Some(&labels(&[]))),
            Err(Refusal::NotAdmitted)
        );
        // The defaults: the platform namespace may do both, nobody else either.
        let p = provider(AllowedNamespaces::default(), AllowedNamespaces::default());
        assert_eq!(may_adopt(&p, "platform", None), Ok(()));
        assert_eq!(may_use(&p, "team-a", None), Err(Refusal::NotAdmitted));
    }

    #[test]
    fn the_fields_that_name_existing_vendor_objects_are_adoption() {
        let mut project = DatabaseProject::new("p", DatabaseProjectSpec::default());
        assert_eq!(project_adoption(&project), None);
        project.spec.restore_from = Some(RestoreSource {
            snapshot_ref: Some(LocalObjectRef { name: "s".into() }),
            snapshot_id: None,
        });
        assert_eq!(
            project_adoption(&project),
            None,
            "a DatabaseSnapshot of the same namespace is no adoption"
        );
        project.spec.restore_from = Some(RestoreSource {
            snapshot_ref: None,
            snapshot_id: Some("snap_1".into()),
        });
        assert_eq!(project_adoption(&project), Some(Adoption::SnapshotId));
        project.spec.restore_from = None;
        project.spec.external_id = Some("prj_1".into());
        assert_eq!(project_adoption(&project), Some(Adoption::ExternalId));

        let mut branch = DatabaseBranch::new(
            "b",
            DatabaseBranchSpec {
                project_ref: LocalObjectRef { name: "p".into() },
                branch_name: None,
                from_branch_ref: Some(LocalObjectRef { name: "dev".into() }),
                from_branch: None,
                external_id: None,
                deletion_policy: None,
                write_connection_secret_to: None,
                credential_rotation: None,
                expire_after: None,
                data: None,
                reset_schedule: None,
            },
        );
        assert_eq!(
            branch_adoption(&branch),
            None,
            "fromBranchRef is no adoption"
        );
        branch.spec.from_branch = Some("dev".into());
        assert_eq!(branch_adoption(&branch), Some(Adoption::FromBranch));
        branch.spec.external_id = Some("br_1".into());
        assert_eq!(branch_adoption(&branch), Some(Adoption::ExternalId));

        let snapshot = DatabaseSnapshot::new(
            "s",
            DatabaseSnapshotSpec {
                project_ref: LocalObjectRef { name: "p".into() },
                label: None,
                external_id: Some("snap_1".into()),
                deletion_policy: None,
            },
        );
        assert_eq!(snapshot_adoption(&snapshot), Some(Adoption::ExternalId));
        assert_eq!(Adoption::FromBranch.field(), "spec.fromBranch");
    }
}
