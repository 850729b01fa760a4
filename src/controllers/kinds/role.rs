//! `DatabaseRole`: a least-privilege login role in the database of a
//! `DatabaseProject` or `DatabaseBranch` of the same namespace, holding
//! exactly the privileges its spec declares, with its own connection Secret.
//!
//! One pass:
//! 1. dereferences the parent (same namespace) and its provider (tenancy
//!    rules apply), and reads the database's address from the vendor, never
//!    from a Secret a tenant could edit;
//! 2. keeps every password in the owned Secret `<name>-dbrole-logins` before
//!    the database hears of it, so a crash never loses one;
//! 3. runs one `DO` block through the provider's SQL channel
//!    (`pipeline/grants.rs`): roles marked as this resource's, logins,
//!    revokes, grants;
//! 4. reads what is missing and what others granted, where the channel
//!    returns rows;
//! 5. writes the connection Secret, logs in with it, and reports.
//!
//! Rotation: `InPlace` changes the one login's password. `Alternate` gives
//! the idle member a new password, checks that it logs in, switches the
//! Secret to it in one write, restarts the workloads in `rollout` and waits
//! for them (`rollout.rs`), and disables the previous member after the grace
//! period.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use async_trait::async_trait;
use k8s_openapi::ByteString;
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, ListParams};
use kube::core::DeserializeGuard;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::EventType;
use kube::runtime::watcher;
use secrecy::SecretString;
use sha2::{Digest, Sha256};

use super::rollout::{self, RolloutState};
use crate::api::v1alpha1::{
    CredentialRotationSpec, CredentialRotationStatus, DatabaseBranch, DatabaseProject,
    DatabaseRole, DatabaseRoleStatus, DeletionPolicy, GrantedPrivilege, ProviderRef,
    ROTATE_ANNOTATION, Rfc3339, RoleRotationStatus, RotationPhase, RotationStrategy,
};
use crate::controllers::pipeline::grants::{self, Converge, Layout, Login, Unit};
use crate::controllers::pipeline::rotation::{next_due, pending_request};
use crate::controllers::pipeline::{Error, Object, Parent, parent_project};
use crate::controllers::protection::{LookupError, ProviderHandle};
use crate::controllers::runtime::conditions::{Health, reason};
use crate::controllers::runtime::reconciler::{
    Lifecycle, Managed, apply_status_if_changed, report_progress, requeue,
};
use crate::controllers::runtime::{Context, KubeCall, Scope, VendorCall, dependents, watch};
use crate::controllers::secret::{self, ConnectionDetails, SecretContent};
use crate::providers::base::{Rows, SqlApi};
use crate::providers::postgres::server::{LoginError, try_login, verifier};
use crate::providers::{Operation, Password, ProviderError, VendorObject};

/// Name of this controller in metrics and logs.
pub const CONTROLLER: &str = "databaserole";

/// How long a login check may take.
const LOGIN_TIMEOUT: Duration = Duration::from_secs(10);
/// How soon a pass looks again while a rollout or a check is under way.
const SHORT_POLL: Duration = Duration::from_secs(5);
/// How soon a pass looks again for declared objects a migration may create.
const OBJECTS_POLL: Duration = Duration::from_secs(30);

crate::impl_managed!(DatabaseRole, DatabaseRoleStatus, CONTROLLER);

/// Name of the connection Secret: `spec.writeConnectionSecretTo.name`, else `<name>-connection`.
pub fn connection_secret_name(role: &DatabaseRole) -> String {
    match &role.spec.write_connection_secret_to {
        Some(target) => target.name.clone(),
        None => format!("{}-connection", role.name_any()),
    }
}

/// Name of the owned Secret that keeps the logins' passwords.
pub fn logins_secret_name(role: &DatabaseRole) -> String {
    format!("{}-dbrole-logins", role.name_any())
}

/// The role name dbops picks when `spec.roleName` is left out (pure):
/// namespace and name in lowercase with `_` for anything else, cut to fit,
/// and 8 characters of the UID, so two resources never share one.
pub fn generated_role_name(namespace: &str, name: &str, uid: &str) -> String {
    let readable: String = format!("{namespace}_{name}")
        .chars()
        .map(|c| {
            let c = c.to_ascii_lowercase();
            if c.is_ascii_lowercase() || c.is_ascii_digit() {
                c
            } else {
                '_'
            }
        })
        .take(48)
        .collect();
    let suffix: String = uid
        .chars()
        .filter(char::is_ascii_hexdigit)
        .take(8)
        .collect::<String>()
        .to_ascii_lowercase();
    let readable =
        if readable.starts_with("pg_") || readable.starts_with(|c: char| c.is_ascii_digit()) {
            format!("r_{readable}")
        } else {
            readable
        };
    format!("{readable}_{suffix}")
}

/// A short hash of a password, to tell whether the one kept was set in the
/// database (pure). Never the password, and not enough to guess it.
pub fn password_version(password: &str) -> String {
    Sha256::digest(password.as_bytes())
        .iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// `base` (the database's address as the vendor reports it) for `login`
/// with `password` (pure): user and password replaced in every URI. A
/// pooler that names its users `<user>.<tenant>` (the pooled URI's user is
/// the direct user with a suffix) gets `<login>.<tenant>`.
pub fn login_details(base: &ConnectionDetails, login: &str, password: &str) -> ConnectionDetails {
    let with_user = |uri: &str, user: &str| -> String {
        match url::Url::parse(uri) {
            Ok(mut url) => {
                let _ = url.set_username(user);
                let _ = url.set_password(Some(password));
                url.to_string()
            }
            Err(_) => uri.to_string(),
        }
    };
    let pooled = base.pooled_uri.as_deref().map(|pooled| {
        let user = url::Url::parse(pooled)
            .ok()
            .map(|u| u.username().to_string())
            .unwrap_or_default();
        let tenant = user
            .strip_prefix(base.username.as_str())
            .filter(|rest| rest.starts_with('.') && !base.username.is_empty());
        match tenant {
            Some(tenant) => with_user(pooled, &format!("{login}{tenant}")),
            None => with_user(pooled, login),
        }
    });
    ConnectionDetails {
        uri: with_user(&base.uri, login),
        host: base.host.clone(),
        port: base.port,
        database: base.database.clone(),
        username: login.to_string(),
        password: password.to_string(),
        pooled_uri: pooled,
    }
}

/// What each login is to be in this pass (pure): those in `live` may log in;
/// a live login whose kept password differs from the version last set gets
/// it set (as a SCRAM verifier). Idle logins keep their password.
pub fn plan_logins(
    layout: &Layout,
    live: &BTreeSet<String>,
    passwords: &BTreeMap<String, String>,
    versions: &BTreeMap<String, String>,
) -> Vec<Login> {
    layout
        .logins
        .iter()
        .map(|name| {
            let can_login = live.contains(name);
            let verifier = passwords
                .get(name)
                .filter(|p| can_login && versions.get(name) != Some(&password_version(p)))
                .map(|p| verifier(&Password::new(p.as_str())));
            Login {
                name: name.clone(),
                can_login,
                verifier,
            }
        })
        .collect()
}

/// The other member of an `Alternate` pair (pure).
pub fn other_login(layout: &Layout, login: &str) -> String {
    layout
        .logins
        .iter()
        .find(|l| *l != login)
        .cloned()
        .unwrap_or_else(|| login.to_string())
}

/// The database a role is in.
struct Database {
    /// How messages name the parent resource.
    parent: String,
    provider_name: String,
    provider: ProviderHandle,
    project_id: String,
    database_id: String,
    /// The database's address, from the vendor.
    address: ConnectionDetails,
}

/// What looking up the database found.
enum Lookup {
    Found(Box<Database>),
    Wait(Health),
    /// The parent resource is gone, and the database the role was made in with it.
    Gone(String),
}

/// The parent resource's provider and ids, or why there are none yet.
enum ParentIds {
    Ids {
        parent: String,
        provider: ProviderRef,
        project_id: String,
        database_id: String,
        branch: bool,
    },
    Wait(Health),
    Gone(String),
}

async fn parent_ids(
    role: &DatabaseRole,
    ctx: &Context,
    namespace: &str,
) -> Result<ParentIds, Error> {
    let made = role
        .status
        .as_ref()
        .is_some_and(|s| s.database_id.is_some());
    if let Some(reference) = &role.spec.project_ref {
        let parent = format!("DatabaseProject {}", reference.name);
        let wait = |message: String| {
            Ok(ParentIds::Wait(Health::progressing(
                reason::WAITING_FOR_PROJECT,
                message,
            )))
        };
        return match parent_project(ctx, namespace, &reference.name)
            .await
            .map_err(KubeCall::Read)?
        {
            Parent::Ready {
                project,
                project_id,
            } => Ok(ParentIds::Ids {
                parent,
                provider: project.spec.provider_ref.clone(),
                database_id: project_id.clone(),
                project_id,
                branch: false,
            }),
            Parent::Missing if made => Ok(ParentIds::Gone(parent)),
            Parent::Missing => wait(format!("{parent} does not exist yet")),
            Parent::Deleting(_) => wait(format!("{parent} is being deleted")),
            Parent::NotReady(_) => wait(format!("waiting for {parent} to be Ready")),
        };
    }
    let reference = role.spec.branch_ref.as_ref().ok_or(Error::InvalidObject)?;
    let parent = format!("DatabaseBranch {}", reference.name);
    let wait = |message: String| {
        Ok(ParentIds::Wait(Health::progressing(
            reason::WAITING_FOR_BRANCH,
            message,
        )))
    };
    let api: Api<DatabaseBranch> = Api::namespaced(ctx.client.clone(), namespace);
    let Some(branch) = api.get_opt(&reference.name).await.map_err(KubeCall::Read)? else {
        return if made {
            Ok(ParentIds::Gone(parent))
        } else {
            wait(format!("{parent} does not exist yet"))
        };
    };
    if branch.metadata.deletion_timestamp.is_some() {
        return wait(format!("{parent} is being deleted"));
    }
    let status = branch.status.clone().unwrap_or_default();
    match (status.provider_name, status.project_id, status.branch_id) {
        (Some(provider), Some(project_id), Some(branch_id)) if branch.is_ready() => {
            Ok(ParentIds::Ids {
                parent,
                provider: ProviderRef { name: provider },
                project_id,
                database_id: branch_id,
                branch: true,
            })
        }
        _ => wait(format!("waiting for {parent} to be Ready")),
    }
}

/// Finds the database of `role`: its parent, provider and address.
async fn lookup(role: &DatabaseRole, ctx: &Context, namespace: &str) -> Result<Lookup, Error> {
    let (parent, provider_ref, project_id, database_id, branch) =
        match parent_ids(role, ctx, namespace).await? {
            ParentIds::Ids {
                parent,
                provider,
                project_id,
                database_id,
                branch,
            } => (parent, provider, project_id, database_id, branch),
            ParentIds::Wait(health) => return Ok(Lookup::Wait(health)),
            ParentIds::Gone(parent) => return Ok(Lookup::Gone(parent)),
        };
    let provider = ctx.provider_in(namespace, &provider_ref, false).await?;
    let (object, read) = if branch {
        let read = provider.get_branch(&project_id, &database_id).await;
        (Object::Branch, read.map(|v| address_of(&v)))
    } else {
        let read = provider.get_project(&project_id).await;
        (Object::Project, read.map(|v| address_of(&v)))
    };
    let address = read
        .map_err(|e| VendorCall::new(format!("reading the {object} of {parent}"), e))?
        .map_err(|source| Error::Connection {
            object,
            id: database_id.clone(),
            source,
        })?;
    Ok(Lookup::Found(Box::new(Database {
        parent,
        provider_name: provider_ref.name,
        provider,
        project_id,
        database_id,
        address,
    })))
}

fn address_of<V: VendorObject>(vendor: &V) -> Result<ConnectionDetails, secret::ConnectionError> {
    ConnectionDetails::parse(vendor.connection_uri(), vendor.pooled_uri())
}

/// A statement through the SQL channel, its failures said plainly.
async fn run(
    sql: &dyn SqlApi,
    provider: &str,
    database_id: &str,
    what: &str,
    statement: &str,
    role_name: &str,
) -> Result<Rows, Error> {
    sql.run_sql(database_id, statement)
        .await
        .map_err(|e| sql_error(e, provider, what, role_name))
}

fn sql_error(error: ProviderError, provider: &str, what: &str, role_name: &str) -> Error {
    match &error {
        ProviderError::Database {
            code: Some(code), ..
        } if code == "42710" => Error::RoleTaken {
            role: role_name.to_string(),
        },
        ProviderError::Http {
            status: 501,
            message,
            ..
        } => Error::SqlUnavailable {
            provider: provider.to_string(),
            message: message.clone(),
        },
        _ => VendorCall::new(what.to_string(), error).into(),
    }
}

/// Text cells of `rows`, `None` as empty.
fn cells(rows: &Rows) -> Vec<Vec<String>> {
    rows.iter()
        .map(|row| row.iter().map(|c| c.clone().unwrap_or_default()).collect())
        .collect()
}

#[async_trait]
impl Lifecycle for DatabaseRole {
    type Error = Error;

    async fn apply(&self, api: &Api<Self>, ctx: &Context) -> Result<Action, Error> {
        let namespace = self.namespace().ok_or(Error::InvalidObject)?;
        let uid = self.metadata.uid.clone().ok_or(Error::InvalidObject)?;
        let desired = grants::desired(&self.spec.grants)?;
        let db = match lookup(self, ctx, &namespace).await? {
            Lookup::Found(db) => db,
            Lookup::Wait(health) => {
                report_progress(api, self, &health)
                    .await
                    .map_err(KubeCall::Status)?;
                return Ok(requeue(self, ctx.jittered_resync()));
            }
            Lookup::Gone(parent) => return Err(Error::RoleParentGone { parent }),
        };
        let api_name = db.provider.api().to_string();
        let Some(sql) = db.provider.sql() else {
            return Err(Error::Unsupported {
                provider: api_name,
                operation: Operation::RoleManage,
                hint: "its API documents no SQL endpoint, and nothing says its owner role may create roles, so dbops manages no roles there (see the capability matrix in the README)",
            });
        };
        if self.spec.branch_ref.is_some() && !sql.reaches_branches() {
            return Err(Error::Unsupported {
                provider: api_name,
                operation: Operation::RoleManage,
                hint: "its SQL endpoint reaches projects only (the document does not say how to address a branch's database): name the project in projectRef",
            });
        }
        Box::pin(converge(
            self, api, ctx, &namespace, &uid, &desired, &db, sql,
        ))
        .await
    }

    async fn cleanup(&self, _api: &Api<Self>, ctx: &Context) -> Result<Action, Error> {
        drop_role(self, ctx).await
    }
}

/// The pass once the database and its SQL channel are known.
#[allow(clippy::too_many_arguments)]
async fn converge(
    role: &DatabaseRole,
    api: &Api<DatabaseRole>,
    ctx: &Context,
    namespace: &str,
    uid: &str,
    desired: &BTreeSet<Unit>,
    db: &Database,
    sql: &dyn SqlApi,
) -> Result<Action, Error> {
    let previous = role.current_status();
    let mut status = previous.clone();
    if status.database_id.as_deref() != Some(db.database_id.as_str()) {
        // A new database (first pass, or the parent was replaced): nothing
        // was granted or set in it yet.
        status.applied_grants.clear();
        status.password_versions.clear();
        status.active_login = None;
    }
    let role_name = status
        .role_name
        .clone()
        .or_else(|| role.spec.role_name.clone())
        .unwrap_or_else(|| generated_role_name(namespace, &role.name_any(), uid));
    status.role_name = Some(role_name.clone());
    status.provider_name = Some(db.provider_name.clone());
    status.project_id = Some(db.project_id.clone());
    status.database_id = Some(db.database_id.clone());
    let strategy = role.spec.strategy();
    let layout = Layout::of(&role_name, strategy);
    let marker = grants::marker(uid);
    let api_name = db.provider.api().to_string();
    let mut previous = previous;
    if previous.role_name.as_deref() != Some(role_name.as_str())
        || previous.database_id != status.database_id
    {
        // What the cleanup needs to drop the role is saved before the role
        // can exist: a pass that fails after this never leaves it unknown.
        let health = Health::progressing(
            reason::CREATING,
            format!("creating role {role_name} in the database of {}", db.parent),
        );
        let saved = role.status_with_health(&status, &health);
        apply_status_if_changed(api, role, &previous, &saved)
            .await
            .map_err(KubeCall::Status)?;
        previous = saved;
    }
    let run = |what: &'static str, statement: String| {
        let (api_name, database_id, role_name) = (&api_name, &db.database_id, &role_name);
        async move { run(sql, api_name, database_id, what, &statement, role_name).await }
    };

    // Passwords: kept before the database hears of them.
    let logins_name = logins_secret_name(role);
    let mut passwords = read_logins(ctx, role, &logins_name).await?;
    let mut rotation = status.credential_rotation.clone().unwrap_or_default();
    let first = layout
        .logins
        .first()
        .cloned()
        .unwrap_or_else(|| role_name.clone());
    let active = status
        .active_login
        .clone()
        .filter(|l| layout.logins.contains(l))
        .unwrap_or(first);
    let now = Timestamp::now();
    let request = rotation_request(role, &rotation, now);
    let mut switch_to = None;
    if let Some(request) = &request {
        let target = match strategy {
            RotationStrategy::InPlace => active.clone(),
            RotationStrategy::Alternate => other_login(&layout, &active),
        };
        passwords.insert(target.clone(), Password::generate().expose().to_string());
        rotation.request = Some(request.clone());
        if strategy == RotationStrategy::Alternate {
            switch_to = Some(target);
        }
    }
    passwords
        .entry(active.clone())
        .or_insert_with(|| Password::generate().expose().to_string());
    write_logins(ctx, role, &logins_name, &passwords).await?;

    // Which logins may log in now.
    let grace = role
        .spec
        .credential_rotation
        .as_ref()
        .map(|r| r.grace())
        .unwrap_or(crate::api::v1alpha1::DEFAULT_GRACE);
    let mut live: BTreeSet<String> = BTreeSet::from([active.clone()]);
    live.extend(switch_to.clone());
    let previous_login = rotation.previous_login.clone();
    let drained = rotation.phase == Some(RotationPhase::Draining)
        && rotation
            .draining_since
            .is_some_and(|since| elapsed(since.0, now) >= grace);
    if let Some(previous_login) = &previous_login
        && rotation.phase.is_some()
        && !drained
    {
        live.insert(previous_login.clone());
    }
    let logins = plan_logins(&layout, &live, &passwords, &status.password_versions);

    // The database.
    if sql.returns_rows() {
        let rows = run(
            "reading the role",
            grants::roles_sql(&layout).map_err(sql_input)?,
        )
        .await?;
        if let Some(role) = grants::foreign_roles(&rows, &marker).into_iter().next() {
            return Err(Error::RoleTaken { role });
        }
    }
    let missing = missing_objects(sql, &run, desired).await?;
    let applied: BTreeSet<Unit> = status
        .applied_grants
        .iter()
        .filter_map(Unit::from_status)
        .collect();
    let script = grants::converge_script(&Converge {
        layout: &layout,
        marker: &marker,
        logins: &logins,
        connection_limit: role.spec.connection_limit,
        desired,
        applied: &applied,
    })
    .map_err(sql_input)?;
    run("setting up the role and its grants", script).await?;
    status.applied_grants = desired.iter().map(GrantedPrivilege::from).collect();
    for login in logins.iter().filter(|l| l.verifier.is_some()) {
        if let Some(password) = passwords.get(&login.name) {
            status
                .password_versions
                .insert(login.name.clone(), password_version(password));
        }
    }
    let unmanaged = unmanaged_privileges(sql, &run, &layout, desired).await?;
    // The channel returns no rows: missing objects and others' grants are unknown.
    let blind = !sql.returns_rows();
    status.missing_objects = missing.clone();
    status.unmanaged_privileges = unmanaged.clone();

    // An Alternate rotation's grace period is over: the previous login goes.
    let mut events: Vec<(EventType, &'static str, String)> = Vec::new();
    if drained && let Some(old) = &previous_login {
        let script = grants::disable_script(old, &marker).map_err(sql_input)?;
        run("disabling the previous login", script).await?;
        finish_rotation(&mut rotation, now);
        events.push((
            EventType::Normal,
            "Rotated",
            format!("rotation done: login {old} is disabled and its sessions ended; the Secret holds {active}"),
        ));
    }

    // The switch: only to a login that is shown to work.
    let secret_name = connection_secret_name(role);
    let mut active = active;
    if let Some(next) = &switch_to {
        let password = passwords.get(next).cloned().unwrap_or_default();
        if let Err(problem) = check_login(&db.address, next, &password).await {
            let health = Health::progressing(
                reason::ROTATING,
                format!(
                    "the new login {next} does not work yet ({problem}); the Secret keeps {active}"
                ),
            );
            return save(role, api, ctx, &previous, status, &health, Some(SHORT_POLL)).await;
        }
        rotation.previous_login = Some(active.clone());
        rotation.switched_at = Some(Rfc3339(now));
        rotation.draining_since = None;
        rotation.phase = Some(RotationPhase::RollingOut);
        events.push((
            EventType::Normal,
            "Switched",
            format!("Secret {secret_name} now holds login {next}; login {active} stays valid until the rotation ends"),
        ));
        active = next.clone();
    } else if strategy == RotationStrategy::InPlace && request.is_some() {
        finish_rotation(&mut rotation, now);
        events.push((
            EventType::Normal,
            "Rotated",
            format!("the password of login {active} was changed"),
        ));
    }
    status.active_login = Some(active.clone());

    // The connection Secret.
    let password = passwords.get(&active).cloned().unwrap_or_default();
    let details = login_details(&db.address, &active, &password);
    let target = role.spec.write_connection_secret_to.as_ref();
    let (content, _) = SecretContent::connection(&details, target, &api_name).await?;
    let written = secret::ensure_secret(&ctx.client, role, &secret_name, content).await?;
    if let Some(old) = previous
        .connection_secret_name
        .as_deref()
        .filter(|old| *old != secret_name)
    {
        secret::delete_owned_secret(&ctx.client, role, old).await?;
    }
    status.connection_secret_name = Some(secret_name.clone());
    status.binding = Some(crate::api::v1alpha1::Binding {
        name: secret_name.clone(),
    });

    // The rollout, then the grace period.
    let mut poll = None;
    let mut rotation_note = None;
    if rotation.phase == Some(RotationPhase::RollingOut) {
        let workloads = role
            .spec
            .credential_rotation
            .as_ref()
            .map(|r| r.rollout.clone())
            .unwrap_or_default();
        let switched = rotation.switched_at.map_or(now, |t| t.0);
        let state = if workloads.is_empty() {
            RolloutState::Done
        } else {
            let mark = switched.to_string();
            rollout::advance(&ctx.client, namespace, &workloads, &secret_name, &mark)
                .await
                .map_err(KubeCall::Write)?
        };
        let state = match state {
            RolloutState::Waiting(message) if elapsed(switched, now) >= rollout::ROLLOUT_LIMIT => {
                RolloutState::Failed(format!(
                    "the rollout did not finish within {} minutes ({message})",
                    rollout::ROLLOUT_LIMIT.as_secs() / 60
                ))
            }
            state => state,
        };
        match state {
            RolloutState::Done => {
                rotation.phase = Some(RotationPhase::Draining);
                rotation.draining_since = Some(Rfc3339(now));
                if !workloads.is_empty() {
                    events.push((
                        EventType::Normal,
                        "RolledOut",
                        format!("the workloads using Secret {secret_name} are rolled out"),
                    ));
                }
            }
            RolloutState::Waiting(message) => {
                rotation_note = Some(format!("rotation: waiting for the rollout ({message})"));
                poll = Some(SHORT_POLL);
            }
            RolloutState::Failed(message) => {
                rotation.phase = Some(RotationPhase::RolloutFailed);
                rotation.handled_request = rotation.request.take();
                let both = format!(
                    "{message}; the rotation stopped with both logins {} and {active} valid (set the {ROTATE_ANNOTATION} annotation to a new value to try again)",
                    rotation.previous_login.clone().unwrap_or_default()
                );
                events.push((EventType::Warning, "RolloutFailed", both));
            }
        }
    }
    match rotation.phase {
        Some(RotationPhase::Draining) => {
            let since = rotation.draining_since.map_or(now, |t| t.0);
            let left = grace.saturating_sub(elapsed(since, now));
            rotation_note = Some(format!(
                "rotation: login {} is disabled in {}s",
                rotation.previous_login.clone().unwrap_or_default(),
                left.as_secs()
            ));
            poll = Some(
                poll.map_or(left, |p: Duration| p.min(left))
                    .max(Duration::from_secs(1)),
            );
        }
        Some(RotationPhase::RolloutFailed) => {
            rotation_note = Some(format!(
                "the last rotation's rollout failed: logins {} and {active} are both valid",
                rotation.previous_login.clone().unwrap_or_default()
            ));
        }
        _ => {}
    }
    status.credential_rotation = (rotation != RoleRotationStatus::default()).then_some(rotation);

    // Ready: the role holds its grants and the Secret logs in.
    // A login just switched to was checked before the switch.
    let login = if switch_to.as_deref() == Some(active.as_str()) {
        Ok(())
    } else {
        check_login(&db.address, &active, &password).await
    };
    let health = if let Err(problem) = login {
        if problem == LoginError::Refused {
            // Set it again next pass.
            status.password_versions.remove(&active);
        }
        poll = Some(SHORT_POLL);
        Health::progressing(
            reason::LOGIN_FAILED,
            format!("Secret {secret_name} does not connect yet: {problem}"),
        )
    } else if !missing.is_empty() {
        poll = Some(poll.map_or(OBJECTS_POLL, |p| p.min(OBJECTS_POLL)));
        Health::progressing(
            reason::WAITING_FOR_OBJECTS,
            format!(
                "waiting for {} to exist; their privileges are granted once they do",
                missing.join(", ")
            ),
        )
    } else {
        let mut message = format!(
            "role {role_name} holds its {} declared privileges in the database of {}; login {active} is in Secret {secret_name}",
            desired.len(),
            db.parent
        );
        if !unmanaged.is_empty() {
            message.push_str(&format!(
                "; {} privileges granted outside dbops are left alone (status.unmanagedPrivileges)",
                unmanaged.len()
            ));
        }
        if blind {
            message.push_str(&format!(
                "; {api_name}'s SQL endpoint returns no rows, so missing objects and grants made outside dbops cannot be seen"
            ));
        }
        if let Some(note) = &rotation_note {
            message.push_str(&format!("; {note}"));
        }
        Health::ready(message)
    };
    let was_ready = role.is_ready();
    let becomes_ready = !was_ready && health.reason() == reason::READY;
    let action = save(role, api, ctx, &previous, status, &health, poll).await?;
    for (type_, reason, note) in events {
        ctx.publish(role, type_, reason, "Reconcile", note).await;
    }
    if becomes_ready || written == secret::SecretWrite::Written && was_ready {
        ctx.publish(
            role,
            EventType::Normal,
            "Ready",
            "Reconcile",
            format!("role {role_name} is ready; credentials in Secret {secret_name}"),
        )
        .await;
    }
    Ok(action)
}

/// The declared schemas and tables that do not exist, where the channel
/// answers. Read before the grants are applied: an object created in
/// between is granted, and reported missing until the next pass, never the
/// other way round.
async fn missing_objects<F, Fut>(
    sql: &dyn SqlApi,
    run: &F,
    desired: &BTreeSet<Unit>,
) -> Result<Vec<String>, Error>
where
    F: Fn(&'static str, String) -> Fut,
    Fut: std::future::Future<Output = Result<Rows, Error>>,
{
    if !sql.returns_rows() {
        return Ok(Vec::new());
    }
    let missing = run(
        "looking for the declared schemas and tables",
        grants::missing_sql(desired).map_err(sql_input)?,
    )
    .await?;
    Ok(cells(&missing)
        .into_iter()
        .filter_map(|row| row.into_iter().next())
        .collect())
}

/// The privileges the role holds that someone else granted, where the channel answers.
async fn unmanaged_privileges<F, Fut>(
    sql: &dyn SqlApi,
    run: &F,
    layout: &Layout,
    desired: &BTreeSet<Unit>,
) -> Result<Vec<String>, Error>
where
    F: Fn(&'static str, String) -> Fut,
    Fut: std::future::Future<Output = Result<Rows, Error>>,
{
    if !sql.returns_rows() {
        return Ok(Vec::new());
    }
    let observed = run(
        "reading the role's privileges",
        grants::observe_sql(&layout.grantee).map_err(sql_input)?,
    )
    .await?;
    let rows: Vec<(String, String, String)> = cells(&observed)
        .into_iter()
        .filter_map(|row| {
            let mut row = row.into_iter();
            Some((row.next()?, row.next()?, row.next()?))
        })
        .collect();
    let observed = grants::observed_units(&rows);
    Ok(grants::unmanaged(&observed, desired)
        .iter()
        .map(ToString::to_string)
        .collect())
}

/// A name that cannot be written into SQL (admission refuses these; this is the second check).
fn sql_input(error: crate::providers::postgres::sql::SqlError) -> Error {
    Error::InvalidSpec {
        message: error.to_string(),
    }
}

/// How long from `since` to `now`, zero if `since` is later.
fn elapsed(since: Timestamp, now: Timestamp) -> Duration {
    Duration::try_from(now.duration_since(since)).unwrap_or_default()
}

/// The rotation to start now, if any: a new annotation value, or the
/// interval. None while one runs; after a failed rollout, only a new
/// annotation value starts one.
fn rotation_request(
    role: &DatabaseRole,
    rotation: &RoleRotationStatus,
    now: Timestamp,
) -> Option<String> {
    if matches!(
        rotation.phase,
        Some(RotationPhase::RollingOut | RotationPhase::Draining)
    ) {
        return None;
    }
    let annotation = role
        .annotations()
        .get(ROTATE_ANNOTATION)
        .map(String::as_str);
    let interval = match rotation.phase {
        Some(RotationPhase::RolloutFailed) => None,
        _ => role
            .spec
            .credential_rotation
            .as_ref()
            .and_then(|r| r.interval)
            .map(|interval| CredentialRotationSpec {
                interval: Some(interval),
            }),
    };
    let state = CredentialRotationStatus {
        last_rotated_at: rotation.last_rotated_at,
        handled_request: rotation.handled_request.clone(),
        ..Default::default()
    };
    let created = role.metadata.creation_timestamp.as_ref().map(|t| t.0);
    pending_request(annotation, interval.as_ref(), Some(&state), created, now)
}

fn finish_rotation(rotation: &mut RoleRotationStatus, now: Timestamp) {
    rotation.last_rotated_at = Some(Rfc3339(now));
    rotation.handled_request = rotation.request.take().or(rotation.handled_request.take());
    rotation.phase = None;
    rotation.previous_login = None;
    rotation.switched_at = None;
    rotation.draining_since = None;
}

/// Logs in as `login` with `password` at the database's address: the direct
/// URI, else (when it cannot be reached) the pooled one, as a client of the
/// Secret may use either.
async fn check_login(
    address: &ConnectionDetails,
    login: &str,
    password: &str,
) -> Result<(), LoginError> {
    let details = login_details(address, login, password);
    let direct = try_login(&SecretString::from(details.uri), LOGIN_TIMEOUT).await;
    match (direct, details.pooled_uri) {
        (Err(LoginError::Unreachable(why)), Some(pooled)) => {
            match try_login(&SecretString::from(pooled), LOGIN_TIMEOUT).await {
                Ok(()) => Ok(()),
                Err(LoginError::Unreachable(_)) => Err(LoginError::Unreachable(why)),
                Err(other) => Err(other),
            }
        }
        (direct, _) => direct,
    }
}

/// The passwords kept in the owned logins Secret.
async fn read_logins(
    ctx: &Context,
    role: &DatabaseRole,
    name: &str,
) -> Result<BTreeMap<String, String>, Error> {
    // A Secret of that name that is not the role's is refused by the write
    // that follows every read.
    let data = secret::read_owned_data(&ctx.client, role, name).await?;
    Ok(data
        .unwrap_or_default()
        .into_iter()
        .filter(|(_, v)| !v.is_empty())
        .collect())
}

async fn write_logins(
    ctx: &Context,
    role: &DatabaseRole,
    name: &str,
    passwords: &BTreeMap<String, String>,
) -> Result<(), Error> {
    let data = passwords
        .iter()
        .map(|(k, v)| (k.clone(), ByteString(v.as_bytes().to_vec())))
        .collect();
    secret::ensure_secret(&ctx.client, role, name, SecretContent::opaque(data)).await?;
    Ok(())
}

/// Writes `status` with `health` (if anything changed) and picks the next pass.
async fn save(
    role: &DatabaseRole,
    api: &Api<DatabaseRole>,
    ctx: &Context,
    previous: &DatabaseRoleStatus,
    status: DatabaseRoleStatus,
    health: &Health,
    poll: Option<Duration>,
) -> Result<Action, Error> {
    let status = role.status_with_health(&status, health);
    apply_status_if_changed(api, role, previous, &status)
        .await
        .map_err(KubeCall::Status)?;
    let rotation = status.credential_rotation.as_ref();
    let due = role.spec.credential_rotation.as_ref().and_then(|spec| {
        let spec = CredentialRotationSpec {
            interval: spec.interval,
        };
        let state = CredentialRotationStatus {
            last_rotated_at: rotation.and_then(|r| r.last_rotated_at),
            ..Default::default()
        };
        let created = role.metadata.creation_timestamp.as_ref().map(|t| t.0);
        next_due(Some(&spec), Some(&state), created, Timestamp::now())
    });
    let resync = ctx.jittered_resync();
    let next = [poll, due]
        .into_iter()
        .flatten()
        .fold(resync, |a, b| a.min(b.max(Duration::from_secs(1))));
    Ok(requeue(role, next))
}

/// Drops the role (and its logins) from the database, unless the policy
/// retains it. A database that cannot be reached any more is said so, and
/// the deletion finishes.
async fn drop_role(role: &DatabaseRole, ctx: &Context) -> Result<Action, Error> {
    let status = role.current_status();
    let (Some(role_name), Some(database_id)) =
        (status.role_name.clone(), status.database_id.clone())
    else {
        return Ok(Action::await_change());
    };
    if role.spec.effective_deletion_policy() == DeletionPolicy::Retain {
        let note = format!("deletionPolicy Retain: role {role_name} is left in the database");
        ctx.publish(role, EventType::Normal, "Retained", "Delete", note)
            .await;
        return Ok(Action::await_change());
    }
    let namespace = role.namespace().ok_or(Error::InvalidObject)?;
    let provider_ref = match cleanup_provider_ref(role, ctx, &namespace, &status).await? {
        Some(reference) => reference,
        None => {
            let note = format!(
                "the parent resource is gone, and its database with it (unless it was retained); role {role_name} was not dropped"
            );
            ctx.cleanup_skipped(role, note).await;
            return Ok(Action::await_change());
        }
    };
    let provider = match ctx.provider_in(&namespace, &provider_ref, false).await {
        Ok(provider) => provider,
        Err(e @ LookupError::NotAllowed { .. }) => {
            ctx.cleanup_skipped(role, format!("{e}; role {role_name} was not dropped"))
                .await;
            return Ok(Action::await_change());
        }
        Err(e) if e.is_gone() => {
            ctx.cleanup_skipped(role, format!("{e}; role {role_name} was not dropped"))
                .await;
            return Ok(Action::await_change());
        }
        Err(e) => return Err(e.into()),
    };
    let api_name = provider.api().to_string();
    let Some(sql) = provider.sql() else {
        return Ok(Action::await_change());
    };
    let layout = Layout::of(&role_name, role.spec.strategy());
    let marker = grants::marker(role.metadata.uid.as_deref().unwrap_or_default());
    let script = grants::drop_script(&layout, &marker).map_err(sql_input)?;
    match sql.run_sql(&database_id, &script).await {
        Ok(_) => {
            let left = if sql.returns_rows() {
                let check = grants::roles_sql(&layout).map_err(sql_input)?;
                let rows = sql
                    .run_sql(&database_id, &check)
                    .await
                    .map_err(|e| sql_error(e, &api_name, "checking the drop", &role_name))?;
                rows.iter()
                    .filter(|row| row.get(1).cloned().flatten().as_deref() == Some(marker.as_str()))
                    .filter_map(|row| row.first().cloned().flatten())
                    .collect()
            } else {
                Vec::new()
            };
            if left.is_empty() {
                let note = format!("dropped role {role_name} and its logins from the database");
                ctx.publish(role, EventType::Normal, "Deleted", "Delete", note)
                    .await;
            } else {
                let note = format!(
                    "role {} is disabled, not dropped: it still holds privileges in another database of the server (a copy of this one, such as a branch); drop it once that copy is gone",
                    left.join(", ")
                );
                ctx.publish(role, EventType::Warning, "NotDropped", "Delete", note)
                    .await;
            }
        }
        Err(e) if e.is_not_found() => {}
        Err(ProviderError::Http {
            status: 501,
            message,
            ..
        }) => {
            let note = format!(
                "{api_name} cannot run SQL for this database ({message}); role {role_name} was not dropped"
            );
            ctx.cleanup_skipped(role, note).await;
        }
        Err(e) => return Err(sql_error(e, &api_name, "dropping the role", &role_name)),
    }
    Ok(Action::await_change())
}

/// The provider a cleanup goes through: the parent resource's while it
/// exists; `None` once it is gone.
async fn cleanup_provider_ref(
    role: &DatabaseRole,
    ctx: &Context,
    namespace: &str,
    status: &DatabaseRoleStatus,
) -> Result<Option<ProviderRef>, Error> {
    if let Some(reference) = &role.spec.project_ref {
        let api: Api<DatabaseProject> = Api::namespaced(ctx.client.clone(), namespace);
        let found = api.get_opt(&reference.name).await.map_err(KubeCall::Read)?;
        return Ok(found.map(|p| p.spec.provider_ref));
    }
    let Some(reference) = &role.spec.branch_ref else {
        return Ok(None);
    };
    let api: Api<DatabaseBranch> = Api::namespaced(ctx.client.clone(), namespace);
    let found = api.get_opt(&reference.name).await.map_err(KubeCall::Read)?;
    Ok(found
        .and(status.provider_name.clone())
        .map(|name| ProviderRef { name }))
}

/// What a `DatabaseRole` names as its database.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RoleParent<'a> {
    Project(&'a str),
    Branch(&'a str),
}

/// Whether `role` names `parent` (pure).
pub fn names_parent(role: &DatabaseRole, parent: RoleParent<'_>) -> bool {
    match parent {
        RoleParent::Project(name) => role
            .spec
            .project_ref
            .as_ref()
            .is_some_and(|r| r.name == name),
        RoleParent::Branch(name) => role
            .spec
            .branch_ref
            .as_ref()
            .is_some_and(|r| r.name == name),
    }
}

/// Deleting a project or branch deletes its `DatabaseRole`s first and waits
/// for them (they drop their roles through the parent's provider): while
/// any is left, this fails with [`Error::RolesRemain`] (transient, so the
/// finalizer stays and the pass is retried).
pub async fn roles_first<K: Managed>(
    owner: &K,
    ctx: &Context,
    parent: RoleParent<'_>,
) -> Result<(), Error> {
    let namespace = owner.namespace().ok_or(Error::InvalidObject)?;
    let roles: Api<DatabaseRole> = Api::namespaced(ctx.client.clone(), &namespace);
    let list = match roles.list(&ListParams::default()).await {
        Ok(list) => list.items,
        // The kind is not installed (CRDs older than the operator): no roles.
        Err(kube::Error::Api(status)) if status.code == 404 => Vec::new(),
        Err(e) => return Err(KubeCall::Read(e).into()),
    };
    let left: Vec<DatabaseRole> = list
        .into_iter()
        .filter(|r| names_parent(r, parent))
        .collect();
    if left.is_empty() {
        return Ok(());
    }
    for role in left
        .iter()
        .filter(|r| r.metadata.deletion_timestamp.is_none())
    {
        match roles
            .delete(&role.name_any(), &DeleteParams::background())
            .await
        {
            Ok(_) => {}
            Err(kube::Error::Api(status)) if status.code == 404 => {}
            Err(e) => return Err(KubeCall::Write(e).into()),
        }
    }
    let names: Vec<String> = left.iter().map(|r| r.name_any()).collect();
    Err(Error::RolesRemain {
        names: names.join(", "),
    })
}

/// The `DatabaseRole` controller, ready to run with
/// [`drive`](crate::controllers::runtime::drive). A change of its project or
/// branch wakes it at once.
pub fn controller(
    ctx: &Context,
    scope: &Scope,
    watcher_config: watcher::Config,
) -> Controller<DeserializeGuard<DatabaseRole>> {
    let client = ctx.client.clone();
    let controller = watch::lean_controller(
        scope.api::<DeserializeGuard<DatabaseRole>>(client.clone()),
        watcher_config.clone(),
    );
    let by_project = dependents(controller.store(), |k: &DatabaseRole| {
        k.spec.project_ref.as_ref().map(|r| r.name.as_str())
    });
    let by_branch = dependents(controller.store(), |k: &DatabaseRole| {
        k.spec.branch_ref.as_ref().map(|r| r.name.as_str())
    });
    let by_provider = dependents(controller.store(), |k: &DatabaseRole| {
        k.status.as_ref()?.provider_name.as_deref()
    });
    let by_namespace = watch::in_namespace(controller.store());
    controller
        .owns_stream(secret::owned_secret_triggers(
            scope.api(client.clone()),
            ctx.secret_echoes.clone(),
        ))
        .watches_stream(watch::provider_triggers(ctx), by_provider)
        .watches_stream(
            watch::namespace_triggers(client.clone(), scope),
            by_namespace,
        )
        .watches(
            scope.api::<DeserializeGuard<DatabaseProject>>(client.clone()),
            watcher_config.clone(),
            by_project,
        )
        .watches(
            scope.api::<DeserializeGuard<DatabaseBranch>>(client),
            watcher_config,
            by_branch,
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_names_are_valid_role_names_and_unique_per_resource() {
        let pattern = regex::Regex::new(crate::api::v1alpha1::ROLE_NAME_PATTERN).unwrap();
        let uid = "0f3c2a9e-1b2d-4c5e-8f90-123456789abc";
        let name = generated_role_name("shop", "reporting-db", uid);
        assert_eq!(name, "shop_reporting_db_0f3c2a9e");
        assert!(pattern.is_match(&name));
        let long = generated_role_name(&"n".repeat(63), &"x".repeat(253), uid);
        assert!(long.len() <= crate::api::v1alpha1::MAX_ROLE_NAME, "{long}");
        assert!(pattern.is_match(&long));
        let odd = generated_role_name("pg_team", "9", uid);
        assert!(odd.starts_with("r_pg_team_9_"), "{odd}");
        assert_ne!(
            generated_role_name("a", "b", uid),
            generated_role_name("a", "b", "99999999-0000")
        );
    }

    fn address() -> ConnectionDetails {
        ConnectionDetails {
            uri: "postgresql://owner:secret@db.example:5433/shop?sslmode=require".into(),
            host: "db.example".into(),
            port: 5433,
            database: "shop".into(),
            username: "owner".into(),
            password: "secret".into(),
            pooled_uri: Some("postgresql://owner:secret@pool.example:6543/shop".into()),
        }
    }

    #[test]
    fn a_login_gets_the_databases_address_with_its_own_user_and_password() {
        let details = login_details(&address(), "reporting_a", "p@ss/word");
        assert_eq!(
            details.uri,
            "postgresql://reporting_a:p%40ss%2Fword@db.example:5433/shop?sslmode=require"
        );
        assert_eq!(
            details.pooled_uri.as_deref(),
            Some("postgresql://reporting_a:p%40ss%2Fword@pool.example:6543/shop")
        );
        assert_eq!(details.username, "reporting_a");
        assert_eq!(details.password, "p@ss/word");
        assert_eq!((details.host.as_str(), details.port), ("db.example", 5433));
        assert!(!format!("{details:?}").contains("p@ss"));
        // A pooler whose users carry the tenant: `<user>.<tenant>`.
        let tenant_pooler = ConnectionDetails {
            pooled_uri: Some("postgresql://owner.abc:secret@pool.example:6543/shop".into()),
            ..address()
        };
        let details = login_details(&tenant_pooler, "reporting", "pw");
        assert_eq!(
            details.pooled_uri.as_deref(),
            Some("postgresql://reporting.abc:pw@pool.example:6543/shop")
        );
    }

    #[test]
    fn only_live_logins_log_in_and_a_password_is_set_only_when_it_changed() {
        let layout = Layout::of("app", RotationStrategy::Alternate);
        let passwords = BTreeMap::from([
            ("app_a".to_string(), "one".to_string()),
            ("app_b".to_string(), "two".to_string()),
        ]);
        let versions = BTreeMap::from([("app_a".to_string(), password_version("one"))]);
        let live = BTreeSet::from(["app_a".to_string()]);
        let logins = plan_logins(&layout, &live, &passwords, &versions);
        assert_eq!(logins.len(), 2);
        assert!(logins[0].can_login && logins[0].verifier.is_none());
        assert!(!logins[1].can_login && logins[1].verifier.is_none());
        let live = BTreeSet::from(["app_a".to_string(), "app_b".to_string()]);
        let logins = plan_logins(&layout, &live, &passwords, &versions);
        assert!(logins[1].can_login);
        let set = logins[1].verifier.as_deref().unwrap_or_default();
        assert!(set.starts_with("SCRAM-SHA-256$"), "{set}");
        assert!(!set.contains("two"));
        assert_eq!(other_login(&layout, "app_a"), "app_b");
        assert_eq!(other_login(&layout, "app_b"), "app_a");
    }

    fn role(project: Option<&str>, branch: Option<&str>) -> DatabaseRole {
        let reference = |n: &str| crate::api::v1alpha1::LocalObjectRef { name: n.into() };
        DatabaseRole::new(
            "r",
            crate::api::v1alpha1::DatabaseRoleSpec {
                project_ref: project.map(reference),
                branch_ref: branch.map(reference),
                role_name: None,
                connection_limit: None,
                grants: vec![],
                write_connection_secret_to: None,
                credential_rotation: None,
                deletion_policy: None,
            },
        )
    }

    #[test]
    fn a_role_belongs_to_the_project_or_branch_it_names_only() {
        let of_project = role(Some("shop"), None);
        assert!(names_parent(&of_project, RoleParent::Project("shop")));
        assert!(!names_parent(&of_project, RoleParent::Branch("shop")));
        assert!(!names_parent(&of_project, RoleParent::Project("other")));
        let of_branch = role(None, Some("preview"));
        assert!(names_parent(&of_branch, RoleParent::Branch("preview")));
        assert!(!names_parent(&of_branch, RoleParent::Project("preview")));
    }

    #[test]
    fn a_rotation_starts_on_a_new_annotation_and_never_while_one_runs() {
        let mut r = role(Some("shop"), None);
        let now = Timestamp::now();
        assert_eq!(
            rotation_request(&r, &RoleRotationStatus::default(), now),
            None
        );
        r.metadata.annotations = Some(BTreeMap::from([(
            ROTATE_ANNOTATION.to_string(),
            "1".to_string(),
        )]));
        assert_eq!(
            rotation_request(&r, &RoleRotationStatus::default(), now).as_deref(),
            Some("1")
        );
        let running = RoleRotationStatus {
            phase: Some(RotationPhase::Draining),
            ..Default::default()
        };
        assert_eq!(rotation_request(&r, &running, now), None);
        let handled = RoleRotationStatus {
            handled_request: Some("1".into()),
            phase: Some(RotationPhase::RolloutFailed),
            ..Default::default()
        };
        assert_eq!(rotation_request(&r, &handled, now), None);
    }
}
