//! The Argo CD health checks, run by a real Lua interpreter against sample
//! resource states, and their ConfigMap patch kept in sync with the script.

mod tools;

#[test]
fn health_checks_map_conditions_to_argo_health() {
    let lua = tools::lua();
    let output = tools::run(
        &lua,
        &["tests/argocd/health_test.lua", "deploy/argocd/health.lua"],
    );
    assert_eq!(
        output.lines().filter(|l| l.starts_with("ok ")).count(),
        8,
        "{output}"
    );
    assert!(!output.contains("FAIL"), "{output}");
}

#[test]
fn the_configmap_patch_carries_the_script_for_every_kind() {
    let script = std::fs::read_to_string(tools::repo().join("deploy/argocd/health.lua")).unwrap();
    let patch =
        std::fs::read_to_string(tools::repo().join("deploy/argocd/argocd-cm-patch.yaml")).unwrap();
    let doc = &tools::documents(&patch)[0];
    // Every kind with a status (VendorClaim, the operator's own record,
    // has none: nothing in Git makes one).
    let with_status = dbops::api::v1alpha1::all_crds().into_iter().filter(|crd| {
        crd.spec.versions[0]
            .subresources
            .as_ref()
            .is_some_and(|s| s.status.is_some())
    });
    for crd in with_status {
        let key = format!(
            "resource.customizations.health.dbops.dev_{}",
            crd.spec.names.kind
        );
        let embedded = doc["data"][&key]
            .as_str()
            .unwrap_or_else(|| panic!("{key} missing"));
        assert_eq!(
            embedded.trim_end(),
            script.trim_end(),
            "{key} differs from health.lua"
        );
    }
}
