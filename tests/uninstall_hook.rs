//! `dbops before-uninstall`, the chart's pre-delete hook, against the
//! in-memory Kubernetes API: it deletes the chart's kept objects only when no
//! dbops resource is left, and otherwise touches nothing.

mod support;

use dbops::api::v1alpha1::{DatabaseProject, DatabaseProjectSpec, DatabaseProvider};
use dbops::uninstall::{Kept, Outcome, before_uninstall};
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Secret};
use kube::api::{Api, PostParams};
use support::{Harness, NS, PROVIDER_NAMESPACE};

/// The chart's kept objects, as the harness names them: provider `default`,
/// its Secret `infrai-credentials`, and a claim `dbops-emulator`.
async fn kept(h: &Harness) -> Kept {
    let claim: PersistentVolumeClaim = serde_json::from_value(serde_json::json!({
        "metadata": { "name": "dbops-emulator" },
        "spec": { "accessModes": ["ReadWriteOnce"], "resources": { "requests": { "storage": "64Mi" } } },
    }))
    .unwrap();
    Api::<PersistentVolumeClaim>::namespaced(h.client.clone(), PROVIDER_NAMESPACE)
        .create(&PostParams::default(), &claim)
        .await
        .unwrap();
    Kept {
        namespace: PROVIDER_NAMESPACE.into(),
        provider: Some("default".into()),
        secret: Some("infrai-credentials".into()),
        volume_claim: Some("dbops-emulator".into()),
    }
}

async fn present(h: &Harness) -> (bool, bool, bool) {
    let provider = Api::<DatabaseProvider>::all(h.client.clone())
        .get_opt("default")
        .await
        .unwrap();
    let secret = Api::<Secret>::namespaced(h.client.clone(), PROVIDER_NAMESPACE)
        .get_opt("infrai-credentials")
        .await
        .unwrap();
    let claim = Api::<PersistentVolumeClaim>::namespaced(h.client.clone(), PROVIDER_NAMESPACE)
        .get_opt("dbops-emulator")
        .await
        .unwrap();
    (provider.is_some(), secret.is_some(), claim.is_some())
}

#[tokio::test]
async fn with_a_resource_left_everything_is_kept() {
    let h = Harness::new().await;
    let kept = kept(&h).await;
    Api::<DatabaseProject>::namespaced(h.client.clone(), NS)
        .create(
            &PostParams::default(),
            &DatabaseProject::new("left", DatabaseProjectSpec::default()),
        )
        .await
        .unwrap();
    let outcome = before_uninstall(&h.client, &kept).await.unwrap();
    assert_eq!(outcome, Outcome::KeptInUse(1));
    assert_eq!(present(&h).await, (true, true, true));
    assert!(outcome.to_string().contains("1 dbops resource(s) are left"));
}

#[tokio::test]
async fn with_nothing_left_the_kept_objects_are_deleted() {
    let h = Harness::new().await;
    let kept = kept(&h).await;
    let outcome = before_uninstall(&h.client, &kept).await.unwrap();
    assert_eq!(
        outcome,
        Outcome::Deleted(vec![
            "DatabaseProvider default".into(),
            format!("Secret {PROVIDER_NAMESPACE}/infrai-credentials"),
            format!("PersistentVolumeClaim {PROVIDER_NAMESPACE}/dbops-emulator"),
        ])
    );
    assert_eq!(present(&h).await, (false, false, false));
    // Run again (a retried hook): nothing left to delete, and no error.
    let again = before_uninstall(&h.client, &kept).await.unwrap();
    assert_eq!(again, Outcome::Deleted(vec![]));
}
