//! The capability matrix: each provider's declaration matches what its client
//! does, and the README shows exactly the matrix generated from them.

use std::time::Duration;

use dbops::api::v1alpha1::ProviderApi;
use dbops::providers::infrai_byok::Credentials;
use dbops::providers::matrix::{self, APIS};
use dbops::providers::{
    BranchRequest, Operation, Password, ProjectRequest, ProviderConfig, ProviderError,
    RestoreRequest, RotationTarget, SnapshotRequest, build,
};
use secrecy::SecretString;

#[tokio::test]
async fn declarations_match_behaviour() {
    for api in APIS {
        // Nothing listens there: a declared operation fails on the network (or
        // on a local check), an undeclared one answers Unsupported at once.
        let provider = build(
            &ProviderConfig {
                api,
                endpoint: Some("http://127.0.0.1:9/".into()),
                api_key: SecretString::from("k".to_string()),
                request_timeout: Duration::from_secs(2),
                supabase_organization: Some("org".into()),
                request_budget: None,
            },
            None,
        )
        .unwrap();
        let p = provider.as_ref();
        for op in Operation::ALL {
            let pw = Password::new("proposed-password");
            let result: Result<(), ProviderError> = match op {
                Operation::ProjectCreate => p
                    .create_project(
                        &ProjectRequest {
                            name: "x".into(),
                            db_password: Some(pw.clone()),
                            ..Default::default()
                        },
                        "k",
                    )
                    .await
                    .map(|_| ()),
                Operation::ProjectGet => p.get_project("x").await.map(|_| ()),
                Operation::ProjectDelete => p.delete_project("x").await,
                Operation::BranchCreate => p
                    .create_branch(
                        &BranchRequest {
                            project_id: "p".into(),
                            branch_name: "b".into(),
                            from_branch: None,
                        },
                        "k",
                    )
                    .await
                    .map(|_| ()),
                Operation::BranchGet => p.get_branch("p", "b").await.map(|_| ()),
                Operation::BranchDelete => p.delete_branch("p", "b").await,
                Operation::SnapshotCreate => p
                    .create_snapshot(
                        &SnapshotRequest {
                            project_id: "p".into(),
                            label: None,
                        },
                        "k",
                    )
                    .await
                    .map(|_| ()),
                Operation::SnapshotGet => p.get_snapshot("p", "s").await.map(|_| ()),
                Operation::SnapshotDelete => p.delete_snapshot("p", "s").await,
                Operation::SnapshotRestore => p
                    .restore_snapshot(
                        &RestoreRequest {
                            snapshot_id: "s".into(),
                            new_name: None,
                        },
                        "k",
                    )
                    .await
                    .map(|_| ()),
                Operation::CredentialRotate => p
                    .rotate_credentials(&RotationTarget::Project { id: "p".into() }, &pw, "k")
                    .await
                    .map(|_| ()),
                Operation::BranchCredentialRotate => p
                    .rotate_credentials(
                        &RotationTarget::Branch {
                            project_id: "p".into(),
                            id: "b".into(),
                        },
                        &pw,
                        "k",
                    )
                    .await
                    .map(|_| ()),
                Operation::ByokRegister => p
                    .register_credential("neon", "a", &Credentials::default(), "k")
                    .await
                    .map(|_| ()),
                Operation::ByokRotate => p
                    .stage_rotation("x", &SecretString::from("n".to_string()), "k")
                    .await
                    .map(|_| ()),
                Operation::ByokRevoke => p.revoke_credential("x").await,
                Operation::ByokPolicy => p.routing_policy().await.map(|_| ()),
            };
            let unsupported = matches!(result, Err(ProviderError::Unsupported { .. }));
            let declared = matrix::capabilities(api).contains(&op);
            assert_eq!(
                declared, !unsupported,
                "{api}: declares {op} = {declared}, but the client answered {result:?}"
            );
            assert_eq!(provider.supports(op), declared);
        }
    }
}

#[test]
fn the_readme_shows_the_generated_matrix() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let start = readme
        .find("<!-- capability-matrix:start -->")
        .expect("matrix start marker");
    let end = readme
        .find("<!-- capability-matrix:end -->")
        .expect("matrix end marker");
    let shown = readme[start..end]
        .trim_start_matches("<!-- capability-matrix:start -->")
        .trim();
    assert_eq!(
        shown,
        matrix::markdown().trim(),
        "README capability matrix is out of date; paste the output of dbops::providers::matrix::markdown()"
    );
    assert!(matches!(APIS[0], ProviderApi::Infrai));
}
