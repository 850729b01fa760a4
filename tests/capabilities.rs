//! The capability matrix: each provider's declaration matches what its client
//! does, and the README shows exactly the matrix generated from them.

use dbops::api::v1alpha1::{ProviderApi, SupabaseSettings};
use dbops::providers::VENDORS;
use dbops::providers::byok::Credentials;
use dbops::providers::matrix;
use dbops::providers::{
    BranchRequest, Operation, Password, ProjectRequest, ProviderConfig, ProviderError,
    RestoreRequest, RotationTarget, SnapshotRequest, build,
};
use secrecy::SecretString;
use strum::IntoEnumIterator;

#[tokio::test]
async fn declarations_match_behaviour() {
    for vendor in VENDORS {
        let api = vendor.api;
        // Nothing listens there: a declared operation fails on the network (or
        // on a local check), an undeclared one answers Unsupported at once.
        let mut config = ProviderConfig::new(
            api,
            Some(vendor.unreachable_endpoint().into()),
            SecretString::from("k".to_string()),
        );
        config.spec.request_timeout_seconds = 2;
        config.spec.supabase = Some(SupabaseSettings {
            organization_slug: "org".into(),
        });
        let provider = build(&config, None).unwrap();
        let p = provider.as_ref();
        for op in Operation::iter() {
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
                            db_password: None,
                            resumed: dbops::providers::Resume::First,
                            project_id: "p".into(),
                            branch_name: "b".into(),
                            from_branch: None,
                            schema_only: false,
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
                            db_password: None,
                            resumed: dbops::providers::Resume::First,
                            snapshot_id: "s".into(),
                            new_name: None,
                        },
                        "k",
                    )
                    .await
                    .map(|_| ()),
                Operation::CredentialRotate | Operation::BranchCredentialRotate => {
                    let target = if op == Operation::CredentialRotate {
                        RotationTarget::Project { id: "p".into() }
                    } else {
                        RotationTarget::Branch {
                            project_id: "p".into(),
                            id: "b".into(),
                        }
                    };
                    match p.credentials_for(&target) {
                        Ok(c) => c.rotate_credentials(&target, &pw, "k").await.map(|_| ()),
                        Err(e) => Err(e),
                    }
                }
                Operation::RoleManage => p.run_sql("p", "SELECT 1").await.map(|_| ()),
                Operation::BranchResetInPlace => match p.branch_reset() {
                    Some(reset) => reset.discard_reset("b").await,
                    None => Err(p.unsupported(op)),
                },
                Operation::ByokRegister
                | Operation::ByokRotate
                | Operation::ByokRevoke
                | Operation::ByokPolicy => match p.byok_for(op) {
                    Err(e) => Err(e),
                    Ok(b) => match op {
                        Operation::ByokRegister => b
                            .register_credential("neon", "a", &Credentials::default(), "k")
                            .await
                            .map(|_| ()),
                        Operation::ByokRotate => b
                            .stage_rotation("x", &SecretString::from("n".to_string()), "k")
                            .await
                            .map(|_| ()),
                        Operation::ByokRevoke => b.revoke_credential("x").await,
                        _ => b.routing_policy().await.map(|_| ()),
                    },
                },
            };
            let unsupported = matches!(result, Err(ProviderError::Unsupported { .. }));
            let declared = matrix::capabilities(vendor).contains(&op);
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
    assert!(matches!(VENDORS[0].api, ProviderApi::Infrai));
}
