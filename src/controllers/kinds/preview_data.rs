//! What a branch holds (`spec.data`): a `SchemaOnly` or `Masked` branch is
//! emptied or masked through the provider's SQL channel after the vendor
//! made the copy and before the branch's connection Secret is written, so no
//! one can connect through dbops to rows that `spec.data` says must not be
//! there. The planner is `pipeline/masking.rs`; this is its one use.

use k8s_openapi::jiff::Timestamp;
use kube::api::Api;
use kube::runtime::events::EventType;

use crate::api::v1alpha1::{
    DataApplied, DataMode, DatabaseBranch, DatabaseBranchStatus, Rfc3339, UnmaskedColumns,
};
use crate::controllers::pipeline::masking::{
    columns, columns_sql, mask_script, plan, schema_only_script, suspects,
};
use crate::controllers::pipeline::{Error, ParentProject, VendorKind};
use crate::controllers::runtime::conditions::{Health, reason};
use crate::controllers::runtime::reconciler::{Managed, apply_status};
use crate::controllers::runtime::{Context, KubeCall, VendorCall};
use crate::providers::{
    ConnectionUri, Password, Provider, RotationProgress, RotationTarget, VendorBranch,
};

/// Applies `spec.data` to vendor branch `vendor`, once: a no-op for `Full`
/// and for a branch it was applied to. Saves the mark in status at once (so a
/// later failure never repeats it) and updates `previous` to what was saved.
#[allow(clippy::too_many_arguments)]
pub async fn apply(
    branch: &DatabaseBranch,
    api: &Api<DatabaseBranch>,
    ctx: &Context,
    provider: &dyn Provider,
    previous: &mut DatabaseBranchStatus,
    parent: Option<&ParentProject>,
    vendor: &mut VendorBranch,
    secret: &str,
) -> Result<(), Error> {
    let Some(data) = &branch.spec.data else {
        return Ok(());
    };
    if sets_password_after(branch, provider) {
        // The create's password is kept nowhere and replaced: what the
        // vendor answered with it is not handed out.
        vendor.connection_uri = vendor.connection_uri.as_ref().map(without_password);
        vendor.pooled_uri = vendor.pooled_uri.as_ref().map(without_password);
    }
    let vendor = &*vendor;
    let id = vendor.id.as_str();
    if data.mode == DataMode::Full {
        return Ok(());
    }
    let applied = previous.data_applied.clone().filter(|d| d.branch_id == id);
    let needs_password = sets_password_after(branch, provider);
    if let Some(applied) = &applied {
        if applied.password_set || !needs_password {
            return Ok(());
        }
        set_password(branch, ctx, provider, parent, (id, secret)).await?;
        let mut status = previous.clone();
        if let Some(applied) = status.data_applied.as_mut() {
            applied.password_set = true;
        }
        apply_status(api, branch, &status)
            .await
            .map_err(KubeCall::Status)?;
        *previous = status;
        return Ok(());
    }
    let changed = async {
        let note = change(branch, provider, id).await?;
        if needs_password {
            set_password(branch, ctx, provider, parent, (id, secret)).await?;
        }
        Ok::<_, Error>(note)
    };
    match changed.await {
        Ok(note) => {
            let mut status = branch.with_vendor(previous, parent, vendor);
            status.data_applied = Some(DataApplied {
                branch_id: id.to_string(),
                mode: data.mode,
                at: Rfc3339(Timestamp::now()),
                password_set: needs_password,
            });
            let health = Health::progressing(
                reason::CREATING,
                format!("{note}; writing its connection Secret"),
            );
            let status = branch.status_with_health(&status, &health);
            apply_status(api, branch, &status)
                .await
                .map_err(KubeCall::Status)?;
            *previous = status;
            ctx.publish(branch, EventType::Normal, "DataApplied", "Reconcile", note)
                .await;
            Ok(())
        }
        Err(error) => {
            // The vendor branch is not forgotten: its id is saved (best
            // effort; a resumed create finds it anyway).
            if previous.branch_id.as_deref() != Some(id) {
                let status = branch.with_vendor(previous, parent, vendor);
                let health = Health::progressing(
                    reason::CREATING,
                    format!("branch {id} exists at the vendor; applying spec.data"),
                );
                let status = branch.status_with_health(&status, &health);
                if apply_status(api, branch, &status).await.is_ok() {
                    *previous = status;
                }
            }
            Err(error)
        }
    }
}

/// `uri` with its password left out.
fn without_password(uri: &ConnectionUri) -> ConnectionUri {
    match url::Url::parse(uri.expose()) {
        Ok(mut url) => {
            let _ = url.set_password(None);
            ConnectionUri::new(url.to_string())
        }
        Err(_) => uri.clone(),
    }
}

/// Whether the branch is created with a password kept nowhere, and its real
/// one set only once `spec.data` is applied: a non-`Full` branch at an API
/// where dbops chooses the password (which would otherwise sit in the
/// connection Secret before the copy is masked).
pub fn sets_password_after(branch: &DatabaseBranch, provider: &dyn Provider) -> bool {
    provider.needs_operator_password()
        && branch
            .spec
            .data
            .as_ref()
            .is_some_and(|d| d.mode != DataMode::Full)
}

/// Sets the branch's password (kept first in its connection Secret, as
/// every password dbops chooses) after `spec.data` was applied.
pub(crate) async fn set_password(
    branch: &DatabaseBranch,
    ctx: &Context,
    provider: &dyn Provider,
    parent: Option<&ParentProject>,
    (id, secret): (&str, &str),
) -> Result<(), Error> {
    let password =
        crate::controllers::pipeline::operator_password(branch, secret, provider, ctx, false)
            .await?
            .ok_or(Error::InvalidObject)?;
    let target = RotationTarget::Branch {
        project_id: crate::controllers::pipeline::project_id(parent).to_string(),
        id: id.to_string(),
    };
    let key = crate::controllers::pipeline::idempotency_key(branch, "branch-data-password")?;
    let credentials = provider
        .credentials_for(&target)
        .map_err(|e| VendorCall::new("setting the branch's password", e))?;
    match credentials
        .rotate_credentials(&target, &password, &key)
        .await
        .map_err(|e| VendorCall::new("setting the branch's password", e))?
    {
        RotationProgress::Done {
            password: Some(set),
            ..
        } if set.expose() != password.expose() => {
            // The API chose its own: that one is kept.
            let data = std::collections::BTreeMap::from([(
                crate::controllers::secret::keys::PASSWORD.to_string(),
                k8s_openapi::ByteString(set.expose().as_bytes().to_vec()),
            )]);
            crate::controllers::secret::ensure_secret(
                &ctx.client,
                branch,
                secret,
                crate::controllers::secret::SecretContent::opaque(data),
            )
            .await?;
            Ok(())
        }
        RotationProgress::Done { .. } => Ok(()),
        RotationProgress::Pending { .. } | RotationProgress::Failed(_) => {
            Err(Error::DataUnsupported {
                provider: provider.api().to_string(),
                mode: "masked or schema-only".to_string(),
                why: "it did not set the branch's password at once",
            })
        }
    }
}

/// The SQL channel `spec.data` is applied through (`None` for `Full`), or
/// why `provider` cannot make such a branch. Checked before the vendor
/// branch is created too, so nothing is copied that could not be masked.
pub fn supported<'p>(
    branch: &DatabaseBranch,
    provider: &'p dyn Provider,
) -> Result<Option<&'p dyn crate::providers::base::SqlApi>, Error> {
    let Some(data) = branch
        .spec
        .data
        .as_ref()
        .filter(|d| d.mode != DataMode::Full)
    else {
        return Ok(None);
    };
    let unsupported = |why| Error::DataUnsupported {
        provider: provider.api().to_string(),
        mode: format!("{:?}", data.mode),
        why,
    };
    let sql = provider.sql().ok_or_else(|| {
        unsupported("it has no SQL channel dbops can use (see the capability matrix)")
    })?;
    if provider.needs_operator_password()
        && !provider.supports(crate::providers::Operation::BranchCredentialRotate)
    {
        return Err(unsupported(
            "dbops chooses the branch's password there and cannot set it again once spec.data is applied, so the copy would be open before that",
        ));
    }
    if !sql.reaches_branches() {
        return Err(unsupported(
            "its SQL endpoint reaches projects only: the document does not say how to address a branch's database",
        ));
    }
    if data.mode == DataMode::Masked && !sql.returns_rows() {
        return Err(unsupported(
            "its SQL endpoint returns no rows, so dbops cannot read the branch's tables to check the rules and look for unmasked personal data",
        ));
    }
    Ok(Some(sql))
}

/// Empties or masks vendor branch `id` as `spec.data` says; what was done.
pub(crate) async fn change(
    branch: &DatabaseBranch,
    provider: &dyn Provider,
    id: &str,
) -> Result<String, Error> {
    let Some(data) = &branch.spec.data else {
        return Ok(String::new());
    };
    let sql = supported(branch, provider)?.ok_or(Error::InvalidObject)?;
    let run = |what: &'static str, statement: String| async move {
        sql.run_sql(id, &statement)
            .await
            .map_err(|e| Error::from(VendorCall::new(what, e)))
    };
    let note = match data.mode {
        DataMode::Full => String::new(),
        DataMode::SchemaOnly => {
            run("emptying the branch", schema_only_script()).await?;
            format!("emptied branch {id}: its schema, no rows")
        }
        DataMode::Masked => {
            let rows = run("reading the branch's tables", columns_sql().to_string()).await?;
            let found = columns(&rows);
            if data.unmasked_columns == UnmaskedColumns::Refuse {
                let left = suspects(&found, &data.masking);
                if !left.is_empty() {
                    return Err(Error::UnmaskedColumns {
                        columns: left.join(", "),
                    });
                }
            }
            let planned = plan(&data.masking, &found)?;
            // A key for this run only, never stored.
            let key = Password::generate();
            let script = mask_script(&planned, key.expose()).map_err(|e| Error::InvalidSpec {
                message: format!("spec.data.masking: {e}"),
            })?;
            run("masking the branch", script).await?;
            let columns: usize = planned.tables.values().map(Vec::len).sum();
            format!("masked {columns} columns of branch {id}")
        }
    };
    Ok(note)
}
