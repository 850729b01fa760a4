//! kstatus-style conditions: `Ready`, `Reconciling` and `Stalled`.
//!
//! Exactly one of three states holds at a time:
//! - ready: `Ready=True`, `Reconciling=False`, `Stalled=False`;
//! - progressing: `Ready=False`, `Reconciling=True` (creating, waiting for the vendor or a parent);
//! - stalled: `Ready=False`, `Stalled=True` (needs a change from the user).
//!
//! `lastTransitionTime` only moves when a condition's status changes, so writing
//! the same state twice is a no-op and steady state makes no writes.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;

use crate::api::v1alpha1::Conditions;

pub const READY: &str = "Ready";
pub const RECONCILING: &str = "Reconciling";
pub const STALLED: &str = "Stalled";
/// Set while the last credential rotation failed; the credentials in force
/// (the old password, the old BYOK key) stay valid.
pub const ROTATION_FAILED: &str = "RotationFailed";

/// Condition reasons (CamelCase constants, part of the API).
pub mod reason {
    pub const READY: &str = "Ready";
    pub const CREATING: &str = "Creating";
    pub const ADOPTING: &str = "Adopting";
    pub const DELETING: &str = "Deleting";
    pub const WAITING_FOR_VENDOR: &str = "WaitingForVendor";
    pub const VENDOR_STATE_UNKNOWN: &str = "VendorStateUnknown";
    pub const WAITING_FOR_PROJECT: &str = "WaitingForProject";
    pub const WAITING_FOR_BRANCH: &str = "WaitingForBranch";
    pub const WAITING_FOR_SNAPSHOT: &str = "WaitingForSnapshot";
    pub const WAITING_FOR_CREDENTIAL: &str = "WaitingForCredential";
    pub const PROJECT_DELETED: &str = "ProjectDeleted";
    pub const PROVIDER_NOT_FOUND: &str = "ProviderNotFound";
    pub const PROVIDER_DELETING: &str = "ProviderDeleting";
    pub const PROVIDER_NOT_ALLOWED: &str = "ProviderNotAllowed";
    pub const ADOPTION_NOT_ALLOWED: &str = "AdoptionNotAllowed";
    pub const ALREADY_CLAIMED: &str = "AlreadyClaimed";
    pub const CREATE_UNCERTAIN: &str = "CreateUncertain";
    pub const NAMESPACE_TERMINATING: &str = "NamespaceTerminating";
    pub const PROVIDER_INVALID: &str = "ProviderInvalid";
    pub const CREDENTIALS_MISSING: &str = "CredentialsMissing";
    pub const VENDOR_OBJECT_DELETED: &str = "VendorObjectDeleted";
    pub const EXTERNAL_NOT_FOUND: &str = "ExternalNotFound";
    pub const SECRET_CONFLICT: &str = "SecretConflict";
    pub const UNSUPPORTED_BY_PROVIDER: &str = "UnsupportedByProvider";
    pub const INVALID_SPEC: &str = "InvalidSpec";
    /// A `writeConnectionSecretTo` template that cannot be rendered, or a
    /// layout that leaves out a password only the Secret keeps.
    pub const INVALID_CONNECTION_TEMPLATE: &str = "InvalidConnectionTemplate";
    pub const IDLE: &str = "Idle";
    /// A `DatabaseRole` waits for declared schemas or tables to be created.
    pub const WAITING_FOR_OBJECTS: &str = "WaitingForObjects";
    /// A `DatabaseRole`'s Secret did not connect.
    pub const LOGIN_FAILED: &str = "LoginFailed";
    /// A `DatabaseRole`'s new login is being checked before the Secret switches to it.
    pub const ROTATING: &str = "Rotating";
}

/// Where a resource is, as the three kstatus conditions express it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Health {
    Ready { reason: String, message: String },
    Progressing { reason: String, message: String },
    Stalled { reason: String, message: String },
}

impl Health {
    pub fn ready(message: impl Into<String>) -> Self {
        Health::Ready {
            reason: reason::READY.to_string(),
            message: message.into(),
        }
    }

    pub fn progressing(reason: &str, message: impl Into<String>) -> Self {
        Health::Progressing {
            reason: reason.to_string(),
            message: message.into(),
        }
    }

    pub fn stalled(reason: &str, message: impl Into<String>) -> Self {
        Health::Stalled {
            reason: reason.to_string(),
            message: message.into(),
        }
    }

    pub fn reason(&self) -> &str {
        match self {
            Health::Ready { reason, .. }
            | Health::Progressing { reason, .. }
            | Health::Stalled { reason, .. } => reason,
        }
    }
}

/// The three conditions for `health`, keeping `lastTransitionTime` of every
/// condition whose status did not change. Other condition types in `previous`
/// (e.g. `RotationFailed`) are kept as they are.
pub fn conditions_for(
    health: &Health,
    generation: Option<i64>,
    previous: &Conditions,
    now: Timestamp,
) -> Conditions {
    let (ready, reconciling, stalled, reason, message) = match health {
        Health::Ready { reason, message } => (true, false, false, reason, message),
        Health::Progressing { reason, message } => (false, true, false, reason, message),
        Health::Stalled { reason, message } => (false, false, true, reason, message),
    };
    let idle = |t: &str| {
        format!(
            "no {} in progress",
            if t == RECONCILING { "work" } else { "blocker" }
        )
    };
    let mut out: Vec<Condition> = vec![
        condition(READY, ready, reason, message, generation, previous, now),
        condition(
            RECONCILING,
            reconciling,
            if reconciling { reason } else { reason::IDLE },
            &if reconciling {
                message.clone()
            } else {
                idle(RECONCILING)
            },
            generation,
            previous,
            now,
        ),
        condition(
            STALLED,
            stalled,
            if stalled { reason } else { reason::IDLE },
            &if stalled {
                message.clone()
            } else {
                idle(STALLED)
            },
            generation,
            previous,
            now,
        ),
    ];
    out.extend(
        previous
            .0
            .iter()
            .filter(|c| ![READY, RECONCILING, STALLED].contains(&c.type_.as_str()))
            .cloned(),
    );
    Conditions(out)
}

/// Sets (or replaces) one extra condition type, keeping its transition time when
/// the status is unchanged.
pub fn set_condition(
    conditions: &mut Conditions,
    type_: &str,
    status: bool,
    reason: &str,
    message: &str,
    generation: Option<i64>,
    now: Timestamp,
) {
    let new = condition(type_, status, reason, message, generation, conditions, now);
    match conditions.0.iter_mut().find(|c| c.type_ == type_) {
        Some(existing) => *existing = new,
        None => conditions.0.push(new),
    }
}

/// Removes one condition type.
pub fn remove_condition(conditions: &mut Conditions, type_: &str) {
    conditions.0.retain(|c| c.type_ != type_);
}

fn condition(
    type_: &str,
    status: bool,
    reason: &str,
    message: &str,
    generation: Option<i64>,
    previous: &Conditions,
    now: Timestamp,
) -> Condition {
    let status = if status { "True" } else { "False" }.to_string();
    let last_transition_time = previous
        .get(type_)
        .filter(|c| c.status == status)
        .map(|c| c.last_transition_time.clone())
        .unwrap_or(Time(now));
    Condition {
        type_: type_.to_string(),
        status,
        reason: reason.to_string(),
        message: message.to_string(),
        observed_generation: generation,
        last_transition_time,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: i64) -> Timestamp {
        Timestamp::from_second(s).unwrap()
    }

    #[test]
    fn exactly_one_state_is_true() {
        let none = Conditions::default();
        for (health, true_type) in [
            (Health::ready("up"), READY),
            (
                Health::progressing(reason::CREATING, "creating"),
                RECONCILING,
            ),
            (
                Health::stalled(reason::PROVIDER_NOT_FOUND, "no provider"),
                STALLED,
            ),
        ] {
            let c = conditions_for(&health, Some(3), &none, ts(1));
            let trues: Vec<_> =
                c.0.iter()
                    .filter(|c| c.status == "True")
                    .map(|c| c.type_.as_str())
                    .collect();
            assert_eq!(trues, [true_type]);
            assert!(c.0.iter().all(|c| c.observed_generation == Some(3)));
            assert!(
                c.0.iter().all(|c| !c.reason.is_empty()),
                "reasons may not be empty"
            );
        }
    }

    #[test]
    fn transition_time_moves_only_when_status_changes() {
        let first = conditions_for(
            &Health::progressing(reason::CREATING, "a"),
            Some(1),
            &Conditions::default(),
            ts(10),
        );
        let again = conditions_for(
            &Health::progressing(reason::WAITING_FOR_VENDOR, "b"),
            Some(1),
            &first,
            ts(20),
        );
        assert_eq!(again.get(READY).unwrap().last_transition_time, Time(ts(10)));
        assert_eq!(
            again.get(RECONCILING).unwrap().reason,
            reason::WAITING_FOR_VENDOR
        );
        let ready = conditions_for(&Health::ready("ok"), Some(1), &again, ts(30));
        assert_eq!(ready.get(READY).unwrap().last_transition_time, Time(ts(30)));
        assert_eq!(
            ready.get(STALLED).unwrap().last_transition_time,
            Time(ts(10))
        );
        // Same state again: identical conditions, so nothing to write.
        assert_eq!(
            conditions_for(&Health::ready("ok"), Some(1), &ready, ts(40)),
            ready
        );
    }

    #[test]
    fn other_condition_types_are_kept() {
        let mut c = conditions_for(&Health::ready("ok"), Some(1), &Conditions::default(), ts(1));
        set_condition(
            &mut c,
            "RotationFailed",
            true,
            "ProbeFailed",
            "probe failed",
            Some(1),
            ts(2),
        );
        let next = conditions_for(&Health::ready("ok"), Some(2), &c, ts(3));
        assert!(next.is_true("RotationFailed"));
        remove_condition(&mut c, "RotationFailed");
        assert!(c.get("RotationFailed").is_none());
    }
}
