//! Rendering the CRDs as YAML (`dbops crdgen` and the checked-in `crds/`).

use crate::api::v1alpha1::all_crds;

/// All CRDs as one multi-document YAML stream, as `dbops crdgen` prints it.
pub fn render_all() -> Result<String, serde_yaml_ng::Error> {
    let mut out = String::new();
    for crd in all_crds() {
        out.push_str("---\n");
        out.push_str(&serde_yaml_ng::to_string(&crd)?);
    }
    Ok(out)
}

/// Each CRD as `(file name, YAML)`, the layout of `crds/`.
pub fn render_files() -> Result<Vec<(String, String)>, serde_yaml_ng::Error> {
    all_crds()
        .into_iter()
        .map(|crd| {
            let name = format!("{}.yaml", crd.metadata.name.clone().unwrap_or_default());
            Ok((name, serde_yaml_ng::to_string(&crd)?))
        })
        .collect()
}
