//! Restarting the workloads that read a rotated Secret, the way
//! `kubectl rollout restart` does (a new `restartedAt` annotation on the pod
//! template), and telling when they are rolled out, the way
//! `kubectl rollout status` does. Used by `DatabaseRole`'s `Alternate`
//! rotation (`credentialRotation.rollout`).
//!
//! A namespace user who may write a `DatabaseRole` but not patch Deployments
//! must not be able to restart them through dbops: a workload is restarted
//! only when its pod template uses the role's own Secret (a volume, `env`
//! or `envFrom`), which is the one reason to restart it.

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::PodSpec;
use kube::api::{Api, Patch, PatchParams};
use kube::{Client, Resource};

use crate::api::v1alpha1::{WorkloadKind, WorkloadRef};
use crate::controllers::runtime::kube_error;

/// The annotation `kubectl rollout restart` sets on the pod template.
pub const RESTARTED_AT: &str = "kubectl.kubernetes.io/restartedAt";

/// How long a rollout may take before the rotation stops with both logins valid.
pub const ROLLOUT_LIMIT: std::time::Duration = std::time::Duration::from_secs(10 * 60);

/// Where the rollout of the workloads stands.
#[derive(Debug, PartialEq, Eq)]
pub enum RolloutState {
    /// Every workload runs pods made after the restart.
    Done,
    /// Still rolling out (the message says which).
    Waiting(String),
    /// It cannot finish: the message says why.
    Failed(String),
}

/// Whether `pod` reads Secret `secret` (volume, `env` or `envFrom`), in any
/// container or init container (pure).
pub fn uses_secret(pod: &PodSpec, secret: &str) -> bool {
    let volumes = pod.volumes.iter().flatten().any(|v| {
        v.secret
            .as_ref()
            .is_some_and(|s| s.secret_name.as_deref() == Some(secret))
            || v.projected.as_ref().is_some_and(|p| {
                p.sources
                    .iter()
                    .flatten()
                    .any(|s| s.secret.as_ref().is_some_and(|s| s.name == secret))
            })
    });
    let containers = pod
        .containers
        .iter()
        .chain(pod.init_containers.iter().flatten());
    volumes
        || containers.into_iter().any(|c| {
            c.env_from
                .iter()
                .flatten()
                .any(|e| e.secret_ref.as_ref().is_some_and(|s| s.name == secret))
                || c.env.iter().flatten().any(|e| {
                    e.value_from
                        .as_ref()
                        .and_then(|v| v.secret_key_ref.as_ref())
                        .is_some_and(|s| s.name == secret)
                })
        })
}

/// Whether a Deployment is rolled out, as `kubectl rollout status` says (pure).
pub fn deployment_state(deployment: &Deployment) -> RolloutState {
    let name = deployment.metadata.name.clone().unwrap_or_default();
    let waiting = |what: String| RolloutState::Waiting(format!("Deployment {name}: {what}"));
    let generation = deployment.metadata.generation.unwrap_or_default();
    let Some(status) = &deployment.status else {
        return waiting("no status yet".to_string());
    };
    if status.observed_generation.unwrap_or_default() < generation {
        return waiting("the restart is not observed yet".to_string());
    }
    let stuck = status.conditions.iter().flatten().any(|c| {
        c.type_ == "Progressing" && c.reason.as_deref() == Some("ProgressDeadlineExceeded")
    });
    if stuck {
        return RolloutState::Failed(format!("Deployment {name} exceeded its progress deadline"));
    }
    let wanted = deployment
        .spec
        .as_ref()
        .and_then(|s| s.replicas)
        .unwrap_or(1);
    let updated = status.updated_replicas.unwrap_or_default();
    let replicas = status.replicas.unwrap_or_default();
    let available = status.available_replicas.unwrap_or_default();
    if updated < wanted {
        return waiting(format!("{updated} of {wanted} new pods"));
    }
    if replicas > updated {
        return waiting(format!("{} old pods terminating", replicas - updated));
    }
    if available < updated {
        return waiting(format!("{available} of {updated} new pods available"));
    }
    RolloutState::Done
}

/// Whether a StatefulSet is rolled out, as `kubectl rollout status` says (pure).
pub fn stateful_set_state(set: &StatefulSet) -> RolloutState {
    let name = set.metadata.name.clone().unwrap_or_default();
    let waiting = |what: String| RolloutState::Waiting(format!("StatefulSet {name}: {what}"));
    let spec = set.spec.as_ref();
    if spec
        .and_then(|s| s.update_strategy.as_ref())
        .and_then(|u| u.type_.as_deref())
        == Some("OnDelete")
    {
        return RolloutState::Failed(format!(
            "StatefulSet {name} uses the OnDelete update strategy, so a restart never rolls out on its own"
        ));
    }
    let generation = set.metadata.generation.unwrap_or_default();
    let Some(status) = &set.status else {
        return waiting("no status yet".to_string());
    };
    if status.observed_generation.unwrap_or_default() < generation {
        return waiting("the restart is not observed yet".to_string());
    }
    let wanted = spec.and_then(|s| s.replicas).unwrap_or(1);
    let ready = status.ready_replicas.unwrap_or_default();
    if ready < wanted {
        return waiting(format!("{ready} of {wanted} pods ready"));
    }
    if status.update_revision.is_some() && status.update_revision != status.current_revision {
        let updated = status.updated_replicas.unwrap_or_default();
        return waiting(format!("{updated} of {wanted} pods updated"));
    }
    RolloutState::Done
}

/// Restarts each workload in `workloads` (of `namespace`) whose template
/// does not carry restart mark `mark` yet, and reports where the rollout
/// stands. A workload that is missing, does not use `secret`, or may not be
/// patched fails the rollout.
pub async fn advance(
    client: &Client,
    namespace: &str,
    workloads: &[WorkloadRef],
    secret: &str,
    mark: &str,
) -> Result<RolloutState, kube::Error> {
    let mut waiting = Vec::new();
    for workload in workloads {
        let state = match workload.kind {
            WorkloadKind::Deployment => {
                let api: Api<Deployment> = Api::namespaced(client.clone(), namespace);
                step(&api, workload, secret, mark, |d: &Deployment| {
                    let template = d.spec.as_ref().map(|s| &s.template);
                    let state = deployment_state(d);
                    (template.cloned(), state)
                })
                .await?
            }
            WorkloadKind::StatefulSet => {
                let api: Api<StatefulSet> = Api::namespaced(client.clone(), namespace);
                step(&api, workload, secret, mark, |s: &StatefulSet| {
                    let template = s.spec.as_ref().map(|s| &s.template);
                    (template.cloned(), stateful_set_state(s))
                })
                .await?
            }
        };
        match state {
            RolloutState::Done => {}
            RolloutState::Waiting(message) => waiting.push(message),
            failed @ RolloutState::Failed(_) => return Ok(failed),
        }
    }
    if waiting.is_empty() {
        Ok(RolloutState::Done)
    } else {
        Ok(RolloutState::Waiting(waiting.join("; ")))
    }
}

/// One workload: restart it once (marked with `mark`), then read its state.
async fn step<K>(
    api: &Api<K>,
    workload: &WorkloadRef,
    secret: &str,
    mark: &str,
    parts: impl Fn(
        &K,
    ) -> (
        Option<k8s_openapi::api::core::v1::PodTemplateSpec>,
        RolloutState,
    ),
) -> Result<RolloutState, kube::Error>
where
    K: Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let (kind, name) = (workload.kind, &workload.name);
    let Some(found) = api.get_opt(name).await? else {
        return Ok(RolloutState::Failed(format!(
            "{kind} {name} named in credentialRotation.rollout does not exist"
        )));
    };
    let (template, state) = parts(&found);
    let Some(template) = template else {
        return Ok(RolloutState::Waiting(format!(
            "{kind} {name} has no pod template yet"
        )));
    };
    let pod = template.spec.clone().unwrap_or_default();
    if !uses_secret(&pod, secret) {
        return Ok(RolloutState::Failed(format!(
            "{kind} {name} does not use Secret {secret}; dbops restarts only workloads that read the role's Secret"
        )));
    }
    let marked = template
        .metadata
        .as_ref()
        .and_then(|m| m.annotations.as_ref())
        .and_then(|a| a.get(RESTARTED_AT))
        .map(String::as_str)
        == Some(mark);
    if marked {
        return Ok(state);
    }
    let patch = serde_json::json!({
        "spec": {"template": {"metadata": {"annotations": {RESTARTED_AT: mark}}}}
    });
    match api
        .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
    {
        Ok(_) => Ok(RolloutState::Waiting(format!("{kind} {name}: restarting"))),
        Err(kube::Error::Api(status)) if status.code == 403 => Ok(RolloutState::Failed(format!(
            "dbops may not restart {kind} {name}: the chart's rollout.enabled value is off"
        ))),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(RolloutState::Failed(format!(
            "{kind} {name} named in credentialRotation.rollout does not exist"
        ))),
        Err(error) => {
            tracing::debug!(error = %kube_error::describe(&error), "restarting a workload failed");
            Err(error)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::{DeploymentCondition, DeploymentSpec, DeploymentStatus};
    use k8s_openapi::api::core::v1::{
        Container, EnvFromSource, EnvVar, EnvVarSource, SecretEnvSource, SecretKeySelector,
        SecretVolumeSource, Volume,
    };

    fn container() -> Container {
        Container {
            name: "app".into(),
            ..Default::default()
        }
    }

    #[test]
    fn a_workload_uses_a_secret_through_a_volume_env_or_env_from() {
        let mut pod = PodSpec {
            containers: vec![container()],
            ..Default::default()
        };
        assert!(!uses_secret(&pod, "app-db"));
        pod.volumes = Some(vec![Volume {
            name: "db".into(),
            secret: Some(SecretVolumeSource {
                secret_name: Some("app-db".into()),
                ..Default::default()
            }),
            ..Default::default()
        }]);
        assert!(uses_secret(&pod, "app-db"));
        assert!(!uses_secret(&pod, "other"));
        let mut pod = PodSpec {
            containers: vec![container()],
            ..Default::default()
        };
        pod.containers[0].env_from = Some(vec![EnvFromSource {
            secret_ref: Some(SecretEnvSource {
                name: "app-db".into(),
                ..Default::default()
            }),
            ..Default::default()
        }]);
        assert!(uses_secret(&pod, "app-db"));
        let mut pod = PodSpec {
            containers: vec![container()],
            ..Default::default()
        };
        pod.containers[0].env = Some(vec![EnvVar {
            name: "PGPASSWORD".into(),
            value_from: Some(EnvVarSource {
                secret_key_ref: Some(SecretKeySelector {
                    name: "app-db".into(),
                    key: "password".into(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }]);
        assert!(uses_secret(&pod, "app-db"));
    }

    fn deployment(generation: i64, status: DeploymentStatus) -> Deployment {
        let mut d = Deployment {
            spec: Some(DeploymentSpec {
                replicas: Some(2),
                ..Default::default()
            }),
            status: Some(status),
            ..Default::default()
        };
        d.metadata.name = Some("web".into());
        d.metadata.generation = Some(generation);
        d
    }

    #[test]
    fn a_deployment_is_rolled_out_when_every_new_pod_is_available_and_no_old_one_is_left() {
        let rolling = DeploymentStatus {
            observed_generation: Some(3),
            replicas: Some(3),
            updated_replicas: Some(2),
            available_replicas: Some(2),
            ..Default::default()
        };
        assert_eq!(
            deployment_state(&deployment(3, rolling.clone())),
            RolloutState::Waiting("Deployment web: 1 old pods terminating".into())
        );
        assert_eq!(
            deployment_state(&deployment(4, rolling.clone())),
            RolloutState::Waiting("Deployment web: the restart is not observed yet".into())
        );
        let done = DeploymentStatus {
            replicas: Some(2),
            ..rolling.clone()
        };
        assert_eq!(deployment_state(&deployment(3, done)), RolloutState::Done);
        let stuck = DeploymentStatus {
            conditions: Some(vec![DeploymentCondition {
                type_: "Progressing".into(),
                status: "False".into(),
                reason: Some("ProgressDeadlineExceeded".into()),
                ..Default::default()
            }]),
            ..rolling
        };
        assert!(matches!(
            deployment_state(&deployment(3, stuck)),
            RolloutState::Failed(m) if m == "Deployment web exceeded its progress deadline"
        ));
    }
}
