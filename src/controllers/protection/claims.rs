//! One vendor object, one owner: every vendor object a dbops resource creates
//! or adopts is claimed by exactly that resource, cluster-wide, through a
//! cluster-scoped `VendorClaim` whose name is derived from the vendor account
//! and the object's id. Creating it is the atomic step: of two resources
//! racing for one id, the API server lets exactly one create succeed. Claims
//! are objects in the API server, so they survive restarts and leader changes.
//!
//! A claim is released when its holder is gone: by the holder's cleanup,
//! under either deletion policy, and otherwise (a holder whose finalizer was
//! stripped) by the in-use loop's sweep or by the next resource that wants
//! the object, once a live read shows the holder is gone. Only the operator
//! writes claims; namespace users have no access to them.

use kube::api::{Api, DeleteParams, ListParams, PostParams, Preconditions};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Resource, ResourceExt};
use sha2::{Digest, Sha256};

use crate::api::v1alpha1::{
    ByokCredential, ClaimHolder, ClaimedObject, DatabaseBranch, DatabaseProject, DatabaseSnapshot,
    ProviderApi, VendorClaim, VendorClaimSpec,
};
use crate::controllers::runtime::{Context, kube_error};

/// Label on every claim: the holder's UID, so a holder finds (and releases)
/// all of its claims with one list.
pub const HOLDER_LABEL: &str = "dbops.dev/claim-holder";

/// A vendor object as a claim names it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ClaimKey {
    pub api: ProviderApi,
    /// The vendor account ([`account`]).
    pub account: String,
    pub object: ClaimedObject,
    pub id: String,
}

impl ClaimKey {
    /// The claim's object name: the kind of object and a hash of the account
    /// and the id (ids are not valid object names, and need not be shown).
    pub fn name(&self) -> String {
        let mut hash = Sha256::new();
        for part in [
            self.api.as_str(),
            self.account.as_str(),
            self.object.as_str(),
            self.id.as_str(),
        ] {
            hash.update(part.as_bytes());
            hash.update(b"\0");
        }
        let hex: String = hash
            .finalize()
            .iter()
            .take(20)
            .map(|b| format!("{b:02x}"))
            .collect();
        format!("{}-{hex}", self.object.as_str())
    }
}

/// The vendor account an endpoint reaches, as claims key it: scheme, host
/// (lowercase) and port, and the path for HTTP APIs (the emulator serves each
/// API under its own prefix). Credentials, query and fragment are left out;
/// for `postgres`, whose objects are databases of one server, so is the
/// database in the path. Two providers reaching one account share claims.
pub fn account(api: ProviderApi, endpoint: &str) -> String {
    let Ok(url) = url::Url::parse(endpoint) else {
        return endpoint.trim_end_matches('/').to_string();
    };
    let host = url.host_str().unwrap_or_default().to_ascii_lowercase();
    let port = url
        .port_or_known_default()
        .or_else(|| (api == ProviderApi::Postgres).then_some(5432))
        .map(|p| format!(":{p}"))
        .unwrap_or_default();
    match api {
        ProviderApi::Postgres => format!("postgres://{host}{port}"),
        _ => format!(
            "{}://{host}{port}{}",
            url.scheme(),
            url.path().trim_end_matches('/')
        ),
    }
}

/// The holder a claim of `obj` records.
pub fn holder_of<K: Resource<DynamicType = ()>>(obj: &K) -> Option<ClaimHolder> {
    Some(ClaimHolder {
        kind: K::kind(&()).to_string(),
        namespace: obj.meta().namespace.clone()?,
        name: obj.meta().name.clone()?,
        uid: obj.meta().uid.clone()?,
    })
}

/// Why a claim could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum ClaimError {
    /// Another resource holds the object. The message does not say which.
    #[error("{object} {id} is already held by another dbops resource")]
    Taken { object: &'static str, id: String },
    #[error("could not claim {object} {id}: {}", kube_error::describe(.source))]
    Kube {
        object: &'static str,
        id: String,
        #[source]
        source: kube::Error,
    },
}

impl ClaimError {
    pub fn is_transient(&self) -> bool {
        matches!(self, ClaimError::Kube { .. })
    }
}

/// What claims say of one object, as a pure decision over what was read.
#[derive(Debug, PartialEq, Eq)]
pub enum Standing {
    /// This holder has it.
    Held,
    /// Nobody has it.
    Free,
    /// Someone else has it.
    Taken,
}

/// Where `holder_uid` stands with the claim `found` (if any).
pub fn standing(found: Option<&VendorClaim>, holder_uid: &str) -> Standing {
    match found {
        None => Standing::Free,
        Some(claim) if claim.spec.holder.uid == holder_uid => Standing::Held,
        Some(_) => Standing::Taken,
    }
}

/// The word messages use for a claimed object.
fn object_word(object: ClaimedObject) -> &'static str {
    match object {
        ClaimedObject::Project => "project",
        ClaimedObject::Branch => "branch",
        ClaimedObject::Snapshot => "snapshot",
        ClaimedObject::ByokCredential => "BYOK credential",
    }
}

/// How many times a claim is tried when a stale one (holder gone) is in the way.
const ATTEMPTS: usize = 3;

impl Context {
    fn claims_api(&self) -> Api<VendorClaim> {
        Api::all(self.client.clone())
    }

    /// Whether claim `name` is known to be held by `uid` without asking the
    /// API server: the claims' watch cache says so, or (before the cache is
    /// there, or it has not caught up) this process took or found it itself.
    /// Either way a claim is
    /// only ever taken from a holder that is gone, so a stale "held" can
    /// only be about a holder that no longer reconciles.
    fn known_held(&self, name: &str, uid: &str) -> bool {
        let cached = self.cached(|c| {
            c.claims
                .as_ref()
                .map(|s: &Store<VendorClaim>| s.get(&ObjectRef::new(name)))
        });
        let remembered = || {
            self.held_claims
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get(name)
                .is_some_and(|held| held == uid)
        };
        match cached.flatten() {
            Some(found) => standing(Some(&found), uid) == Standing::Held,
            // Not in the cache (there is none yet, or it lags this process's
            // own write): what this process knows.
            None => remembered(),
        }
    }

    fn remember_held(&self, name: &str, uid: &str) {
        let mut held = self.held_claims.lock().unwrap_or_else(|p| p.into_inner());
        held.insert(name.to_string(), uid.to_string());
    }

    fn forget_held(&self, name: &str) {
        let mut held = self.held_claims.lock().unwrap_or_else(|p| p.into_inner());
        held.remove(name);
    }

    /// Claims `key` for `holder`, through provider `provider` (recorded for
    /// people). Taking a claim one already holds is a no-op (read from the
    /// watch cache when it has it); a stale claim whose holder is gone is
    /// removed first. Of two holders racing for one key, one wins.
    pub async fn claim(
        &self,
        key: &ClaimKey,
        holder: &ClaimHolder,
        provider: &str,
    ) -> Result<(), ClaimError> {
        let name = key.name();
        let object = object_word(key.object);
        let kube = |source| ClaimError::Kube {
            object,
            id: key.id.clone(),
            source,
        };
        if self.known_held(&name, &holder.uid) {
            return Ok(());
        }
        let api = self.claims_api();
        let mut claim = VendorClaim::new(
            &name,
            VendorClaimSpec {
                api: key.api,
                account: key.account.clone(),
                object: key.object,
                id: key.id.clone(),
                holder: holder.clone(),
                provider: provider.to_string(),
            },
        );
        claim.metadata.labels = Some([(HOLDER_LABEL.to_string(), holder.uid.clone())].into());
        for _ in 0..ATTEMPTS {
            match api.create(&PostParams::default(), &claim).await {
                Ok(_) => {
                    tracing::debug!(claim = %name, "claimed");
                    self.remember_held(&name, &holder.uid);
                    return Ok(());
                }
                Err(e) if kube_error::already_exists(&e) => {}
                Err(e) => return Err(kube(e)),
            }
            let Some(existing) = api.get_opt(&name).await.map_err(kube)? else {
                continue;
            };
            match standing(Some(&existing), &holder.uid) {
                Standing::Held => {
                    self.remember_held(&name, &holder.uid);
                    return Ok(());
                }
                Standing::Free => continue,
                Standing::Taken => {}
            }
            if self
                .holder_exists(&existing.spec.holder)
                .await
                .map_err(kube)?
            {
                return Err(ClaimError::Taken {
                    object,
                    id: key.id.clone(),
                });
            }
            self.delete_claim(&existing).await.map_err(kube)?;
        }
        Err(ClaimError::Taken {
            object,
            id: key.id.clone(),
        })
    }

    /// Whether `holder` holds `key` now (read live: for a cleanup about to
    /// delete, the cache is not enough).
    pub async fn holds(&self, key: &ClaimKey, holder_uid: &str) -> Result<bool, kube::Error> {
        let found = self.claims_api().get_opt(&key.name()).await?;
        Ok(standing(found.as_ref(), holder_uid) == Standing::Held)
    }

    /// Who holds `key` now, if anyone (read live).
    pub async fn claim_holder(&self, key: &ClaimKey) -> Result<Option<ClaimHolder>, kube::Error> {
        Ok(self
            .claims_api()
            .get_opt(&key.name())
            .await?
            .map(|claim| claim.spec.holder))
    }

    /// Releases `key` if `holder_uid` holds it.
    pub async fn release(&self, key: &ClaimKey, holder_uid: &str) -> Result<(), kube::Error> {
        let found = self.claims_api().get_opt(&key.name()).await?;
        match found {
            Some(claim) if standing(Some(&claim), holder_uid) == Standing::Held => {
                self.delete_claim(&claim).await
            }
            _ => Ok(()),
        }
    }

    /// Releases every claim `obj` holds (its cleanup is done, or it never
    /// got to use them). Read live, by the holder label.
    pub async fn release_all<K: Resource<DynamicType = ()>>(
        &self,
        obj: &K,
    ) -> Result<(), kube::Error> {
        let Some(uid) = obj.meta().uid.as_deref() else {
            return Ok(());
        };
        let params = ListParams::default().labels(&format!("{HOLDER_LABEL}={uid}"));
        for claim in self.claims_api().list(&params).await? {
            if claim.spec.holder.uid == uid {
                self.delete_claim(&claim).await?;
            }
        }
        Ok(())
    }

    /// Deletes `claim`, only as it was read (UID and resourceVersion).
    async fn delete_claim(&self, claim: &VendorClaim) -> Result<(), kube::Error> {
        self.forget_held(&claim.name_any());
        let params = DeleteParams {
            preconditions: Some(Preconditions {
                uid: claim.metadata.uid.clone(),
                resource_version: claim.metadata.resource_version.clone(),
            }),
            ..DeleteParams::default()
        };
        match self.claims_api().delete(&claim.name_any(), &params).await {
            Ok(_) => Ok(()),
            Err(e) if kube_error::not_found(&e) || kube_error::conflict(&e, true) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Whether the resource `holder` names still exists (same UID). A holder
    /// the operator may not read (another installation's namespace) counts as
    /// existing: its claim is never taken away.
    pub async fn holder_exists(&self, holder: &ClaimHolder) -> Result<bool, kube::Error> {
        let client = self.client.clone();
        let ns = &holder.namespace;
        let uid = match holder.kind.as_str() {
            "DatabaseProject" => {
                uid_of(Api::<DatabaseProject>::namespaced(client, ns), holder).await
            }
            "DatabaseBranch" => uid_of(Api::<DatabaseBranch>::namespaced(client, ns), holder).await,
            "DatabaseSnapshot" => {
                uid_of(Api::<DatabaseSnapshot>::namespaced(client, ns), holder).await
            }
            "ByokCredential" => uid_of(Api::<ByokCredential>::namespaced(client, ns), holder).await,
            // Unknown kinds are never taken to be gone.
            _ => return Ok(true),
        };
        match uid {
            Ok(uid) => Ok(uid.as_deref() == Some(holder.uid.as_str())),
            Err(kube::Error::Api(status)) if status.code == 403 => Ok(true),
            Err(e) => Err(e),
        }
    }

    /// Removes the claims in `stale` whose holders a live read shows gone
    /// (the in-use loop's sweep). Returns how many were removed.
    pub async fn sweep_claims(&self, stale: &[VendorClaim]) -> usize {
        let mut removed = 0;
        for claim in stale {
            match self.holder_exists(&claim.spec.holder).await {
                Ok(false) => match self.delete_claim(claim).await {
                    Ok(()) => {
                        removed += 1;
                        tracing::info!(claim = %claim.name_any(), "released the claim of a resource that is gone");
                    }
                    Err(e) => {
                        tracing::info!(error = %kube_error::describe(&e), "could not release a stale claim")
                    }
                },
                Ok(true) => {}
                Err(e) => {
                    tracing::debug!(error = %kube_error::describe(&e), "could not check a claim's holder")
                }
            }
        }
        removed
    }
}

/// The UID of the resource `holder` names, if it exists.
async fn uid_of<K>(api: Api<K>, holder: &ClaimHolder) -> Result<Option<String>, kube::Error>
where
    K: Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    // A resource the operator cannot decode still exists: read metadata only.
    Ok(api
        .get_metadata_opt(&holder.name)
        .await?
        .and_then(|m| m.metadata.uid))
}

/// The claims (among `claims`) whose holders are in `reach` but not among
/// `live_uids`: candidates for the sweep, to be confirmed by a live read.
pub fn stale_candidates<'a>(
    claims: impl IntoIterator<Item = &'a VendorClaim>,
    in_reach: impl Fn(&str) -> bool,
    live_uids: &std::collections::HashSet<&str>,
) -> Vec<VendorClaim> {
    claims
        .into_iter()
        .filter(|c| c.metadata.deletion_timestamp.is_none())
        .filter(|c| in_reach(&c.spec.holder.namespace))
        .filter(|c| !live_uids.contains(c.spec.holder.uid.as_str()))
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(account: &str, id: &str) -> ClaimKey {
        ClaimKey {
            api: ProviderApi::Infrai,
            account: account.into(),
            object: ClaimedObject::Project,
            id: id.into(),
        }
    }

    fn claim(uid: &str, namespace: &str) -> VendorClaim {
        VendorClaim::new(
            "project-x",
            VendorClaimSpec {
                api: ProviderApi::Infrai,
                account: "a".into(),
                object: ClaimedObject::Project,
                id: "prj_1".into(),
                holder: ClaimHolder {
                    kind: "DatabaseProject".into(),
                    namespace: namespace.into(),
                    name: "shop".into(),
                    uid: uid.into(),
                },
                provider: "default".into(),
            },
        )
    }

    #[test]
    fn claim_names_are_stable_valid_and_per_account_and_id() {
        let a = key("https://api.infrai.cc", "prj_1").name();
        assert_eq!(a, key("https://api.infrai.cc", "prj_1").name());
        assert_ne!(a, key("https://api.infrai.cc", "prj_2").name());
        assert_ne!(a, key("http://127.0.0.1:8470/infrai", "prj_1").name());
        let mut branch = key("https://api.infrai.cc", "prj_1");
        branch.object = ClaimedObject::Branch;
        assert_ne!(a, branch.name(), "another kind of object with the same id");
        assert!(a.starts_with("project-") && a.len() == "project-".len() + 40);
        assert!(
            a.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        );
    }

    #[test]
    fn one_account_however_its_endpoint_is_written() {
        let infrai = |e| account(ProviderApi::Infrai, e);
        assert_eq!(
            infrai("https://API.infrai.cc/"),
            "https://api.infrai.cc:443"
        );
        assert_eq!(
            infrai("https://api.infrai.cc:443"),
            "https://api.infrai.cc:443"
        );
        assert_eq!(
            infrai("http://127.0.0.1:8470/infrai/"),
            "http://127.0.0.1:8470/infrai"
        );
        assert_ne!(
            infrai("http://127.0.0.1:8470/infrai"),
            infrai("http://127.0.0.1:8470/db9"),
            "the emulator serves each API under its own prefix"
        );
        let pg = |e| account(ProviderApi::Postgres, e);
        assert_eq!(
            pg("postgres://admin@DB.example:5432/postgres?sslmode=require"),
            "postgres://db.example:5432"
        );
        assert_eq!(
            pg("postgres://other@db.example/template1"),
            "postgres://db.example:5432",
            "another admin or admin database is the same server"
        );
    }

    #[test]
    fn standing_is_held_free_or_taken() {
        assert_eq!(standing(None, "u1"), Standing::Free);
        assert_eq!(standing(Some(&claim("u1", "a")), "u1"), Standing::Held);
        assert_eq!(standing(Some(&claim("u2", "b")), "u1"), Standing::Taken);
    }

    #[test]
    fn the_sweep_looks_only_at_claims_of_missing_holders_in_reach() {
        let claims = [
            claim("live", "a"),
            claim("gone", "a"),
            claim("elsewhere", "z"),
        ];
        let live: std::collections::HashSet<&str> = ["live"].into();
        let stale = stale_candidates(&claims, |ns| ns == "a", &live);
        assert_eq!(stale.len(), 1);
        assert_eq!(stale[0].spec.holder.uid, "gone");
    }
}
