use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use super::common::{
    Binding, Conditions, ConnectionSecretTarget, CredentialRotationSpec, CredentialRotationStatus,
    DURATION_PATTERN, DeletionPolicy, LocalObjectRef, Rfc3339, interval,
};

/// A copy-on-write branch of a `DatabaseProject` in the same namespace.
///
/// The branch is created through the project's provider once the project is
/// `Ready`; its own connection details go into `writeConnectionSecretTo`.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "dbops.dev",
    doc = "A copy-on-write branch of a DatabaseProject, with its own connection Secret.",
    version = "v1alpha1",
    kind = "DatabaseBranch",
    namespaced,
    status = "DatabaseBranchStatus",
    shortname = "dbbr",
    category = "dbops",
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = r#".status.conditions[?(@.type=="Ready")].status"#
    ),
    printcolumn(
        name = "Reason",
        type_ = "string",
        json_path = r#".status.conditions[?(@.type=="Ready")].reason"#
    ),
    printcolumn(
        name = "Project",
        type_ = "string",
        json_path = ".spec.projectRef.name"
    ),
    printcolumn(name = "Branch ID", type_ = "string", json_path = ".status.branchId"),
    // A string, not a date: kubectl shows a `date` column in the future as `<invalid>`.
    printcolumn(name = "Expires", type_ = "string", json_path = ".status.expiresAt"),
    printcolumn(name = "Reset", type_ = "date", json_path = ".status.lastResetAt"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
// Immutability per field, plus presence checks for the optional fields (see `DatabaseProject`).
#[x_kube(
    validation = Rule::new("has(self.branchName) == has(oldSelf.branchName)").message("branchName is immutable"),
    validation = Rule::new("has(self.fromBranch) == has(oldSelf.fromBranch)").message("fromBranch is immutable"),
    validation = Rule::new("has(self.fromBranchRef) == has(oldSelf.fromBranchRef)").message("fromBranchRef is immutable"),
    validation = Rule::new("!(has(self.fromBranch) && has(self.fromBranchRef))").message("set at most one of fromBranch and fromBranchRef"),
    validation = Rule::new("has(self.externalId) == has(oldSelf.externalId)").message("externalId is immutable"),
    validation = Rule::new("has(self.data) == has(oldSelf.data)").message("data is immutable: it says what the branch was made with"),
    validation = Rule::new("!has(self.data) || self.data.mode == 'Full' || !has(self.externalId)").message("an adopted branch (externalId) is not dbops's to mask or empty: leave out data"),
    validation = Rule::new("!has(self.resetSchedule) || !has(self.externalId)").message("an adopted branch (externalId) is not dbops's to reset: leave out resetSchedule")
)]
pub struct DatabaseBranchSpec {
    /// The `DatabaseProject` (same namespace) to branch. Immutable.
    #[x_kube(validation = Rule::new("self == oldSelf").message("projectRef is immutable"))]
    pub project_ref: LocalObjectRef,

    /// Name of the branch at the vendor. Defaults to the resource name (on DB9,
    /// whose branch names are account-wide, `<namespace>-<name>-<uid>`). Immutable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63))]
    #[x_kube(validation = Rule::new("self == oldSelf").message("branchName is immutable"))]
    pub branch_name: Option<String>,

    /// A `DatabaseBranch` in the same namespace, of the same project, to
    /// copy from instead of the project's default branch. Immutable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self == oldSelf").message("fromBranchRef is immutable"))]
    pub from_branch_ref: Option<LocalObjectRef>,

    /// The vendor's own name of a branch to copy from, for branches no
    /// `DatabaseBranch` manages; the project's default branch when left out.
    /// Naming a vendor object directly is adoption: allowed only in
    /// namespaces the provider's `spec.adoption.allowedNamespaces` admits
    /// (prefer `fromBranchRef`). Immutable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 63))]
    #[x_kube(validation = Rule::new("self == oldSelf").message("fromBranch is immutable"))]
    pub from_branch: Option<String>,

    /// Adopt an existing vendor branch of this project by its id instead of
    /// creating one: allowed only in namespaces the provider admits for
    /// adoption, and only while no other dbops resource holds the branch.
    /// Kept at the vendor on deletion unless `deletionPolicy` says `Delete`.
    /// Immutable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 256))]
    #[x_kube(validation = Rule::new("self == oldSelf").message("externalId is immutable"))]
    pub external_id: Option<String>,

    /// What happens at the vendor when this resource is deleted: `Delete` or
    /// `Retain`. Defaults to `Delete`, or to `Retain` when `externalId`
    /// adopts an existing object (dbops did not make it); `status.deletionPolicy`
    /// shows the policy in force.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deletion_policy: Option<DeletionPolicy>,

    /// The Secret to write the branch's connection details into. Defaults to `<name>-connection`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub write_connection_secret_to: Option<ConnectionSecretTarget>,
    /// Rotate the database password periodically (providers that support it;
    /// see the capability matrix). One rotation can also be requested with the
    /// annotation `dbops.dev/rotate-credentials`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential_rotation: Option<CredentialRotationSpec>,

    /// Delete this branch this long after it was created: a duration such as
    /// `30m`, `72h`, `1h30m`, `90s` or `7d` (whole numbers of `d` (24 hours),
    /// `h`, `m` and `s`, largest first), at most `365d`. dbops then deletes
    /// this resource itself, and the vendor branch with it as
    /// `deletionPolicy` says. It may be changed: the expiry moves with it
    /// (`status.expiresAt`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = expire_after::MAX_LENGTH))]
    #[x_kube(
        validation = expire_after::syntax_rule(),
        validation = expire_after::minimum_rule(),
        validation = expire_after::maximum_rule()
    )]
    pub expire_after: Option<String>,
    /// What the branch holds: `Full` (the vendor's copy, the default),
    /// `SchemaOnly` (no rows) or `Masked` (the columns in `masking` masked).
    /// Applied through the provider's SQL channel after the copy and before
    /// the connection Secret is written: no one can connect to the branch
    /// through dbops before it is done. Immutable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self == oldSelf").message("data is immutable: it says what the branch was made with"))]
    pub data: Option<super::branch_data::BranchData>,

    /// Reset the branch from its parent (or `fromBranchRef`) this often, as
    /// the annotation `dbops.dev/reset-from-parent` does once: a fresh copy,
    /// with `spec.data` applied again, under the same connection Secret. At
    /// least 1m. Leave out to reset only on request.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "interval::deserialize"
    )]
    #[schemars(regex(pattern = DURATION_PATTERN), length(max = 64))]
    #[x_kube(validation = Rule::new("duration(self) >= duration('1m')").message("resetSchedule must be at least 1m"))]
    pub reset_schedule: Option<kube::core::Duration>,
}

/// `spec.expireAfter`: its syntax, its bounds, and the same checks at
/// admission (CEL) and in the operator ([`parse`]), which must agree.
pub mod expire_after {
    use k8s_openapi::jiff::{SignedDuration, Span, SpanRelativeTo};
    use kube::core::{Message, Rule};

    /// What admission accepts: whole numbers of days, hours, minutes and
    /// seconds, largest first, each at most once (`1d12h`, `90m`). Every
    /// duration up to [`LONGEST`] can be written in any one unit.
    pub const PATTERN: &str = "^([0-9]{1,3}d)?([0-9]{1,4}h)?([0-9]{1,6}m)?([0-9]{1,8}s)?$";
    /// The longest expiry.
    pub const LONGEST: SignedDuration = SignedDuration::from_hours(365 * 24);
    /// Longest value accepted (the schema's `maxLength`).
    pub const MAX_LENGTH: usize = 32;

    /// What is wrong with a value that does not parse.
    pub const NOT_A_DURATION: &str = "is not a duration such as 30m, 72h, 1h30m or 7d (whole numbers of d, h, m and s, largest first)";
    /// What is wrong with a zero duration.
    pub const NOT_POSITIVE: &str = "must be longer than 0s";
    /// What is wrong with a duration beyond [`LONGEST`].
    pub const TOO_LONG: &str = "must be at most 365d";

    static SYNTAX: std::sync::LazyLock<Option<regex::Regex>> =
        std::sync::LazyLock::new(|| regex::Regex::new(PATTERN).ok());

    /// Parses `text` as an expiry: jiff reads the units (`d` as 24 hours);
    /// [`PATTERN`] and the bounds keep to what admission accepts. The error
    /// says what is wrong with it, after the words `spec.expireAfter`.
    pub fn parse(text: &str) -> Result<SignedDuration, &'static str> {
        let well_formed = !text.is_empty()
            && text.len() <= MAX_LENGTH
            && SYNTAX.as_ref().is_some_and(|p| p.is_match(text));
        if !well_formed {
            return Err(NOT_A_DURATION);
        }
        let span: Span = text.parse().map_err(|_| NOT_A_DURATION)?;
        let duration = span
            .to_duration(SpanRelativeTo::days_are_24_hours())
            .map_err(|_| TOO_LONG)?;
        if duration <= SignedDuration::ZERO {
            return Err(NOT_POSITIVE);
        }
        if duration > LONGEST {
            return Err(TOO_LONG);
        }
        Ok(duration)
    }

    /// The value's length in seconds, in CEL, for a value that matches
    /// [`PATTERN`]: the days before `d`, plus what follows them as a Go
    /// duration (CEL's `duration()` has no days).
    const SECONDS: &str = "((self.contains('d') ? int(self.substring(0, self.indexOf('d'))) * 86400 : 0) \
         + (self.endsWith('d') ? 0 : duration(self.substring(self.indexOf('d') + 1)).getSeconds()))";

    /// The bound rules apply only to a value of the right syntax (the syntax
    /// rule reports the others).
    fn well_formed() -> String {
        format!("self.size() > 0 && self.matches('{PATTERN}')")
    }

    /// Admission: the syntax.
    pub fn syntax_rule() -> Rule {
        Rule::new(well_formed()).message(Message::Message(format!("expireAfter {NOT_A_DURATION}")))
    }

    /// Admission: longer than zero.
    pub fn minimum_rule() -> Rule {
        Rule::new(format!("!({}) || {SECONDS} > 0", well_formed()))
            .message(Message::Message(format!("expireAfter {NOT_POSITIVE}")))
    }

    /// Admission: at most [`LONGEST`].
    pub fn maximum_rule() -> Rule {
        Rule::new(format!(
            "!({}) || {SECONDS} <= {}",
            well_formed(),
            LONGEST.as_secs()
        ))
        .message(Message::Message(format!("expireAfter {TOO_LONG}")))
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn go_durations_and_days_parse_to_their_length() {
            let h = |n: i64| SignedDuration::from_hours(n);
            for (text, expected) in [
                ("30m", SignedDuration::from_mins(30)),
                ("72h", h(72)),
                ("1h30m", SignedDuration::from_mins(90)),
                ("90s", SignedDuration::from_secs(90)),
                ("7d", h(7 * 24)),
                ("1d12h", h(36)),
                ("1d0h0m1s", h(24) + SignedDuration::from_secs(1)),
                ("365d", LONGEST),
                ("8760h", LONGEST),
                ("525600m", LONGEST),
                ("31536000s", LONGEST),
                ("1s", SignedDuration::from_secs(1)),
                ("007d", h(7 * 24)),
            ] {
                assert_eq!(parse(text), Ok(expected), "{text}");
            }
        }

        #[test]
        fn anything_else_says_what_is_wrong() {
            for text in [
                "", "7", "d", "1w", "1y", "1mo", "1.5h", "-1h", "+1h", "1h 30m", " 1h", "1H",
                "30m1h", "1h1h", "1ms", "1µs", "P1D", "1 day", "1000d", "99999h",
            ] {
                assert_eq!(parse(text), Err(NOT_A_DURATION), "{text:?}");
            }
            assert_eq!(parse("0s"), Err(NOT_POSITIVE));
            assert_eq!(parse("0d0h0m0s"), Err(NOT_POSITIVE));
            assert_eq!(parse("366d"), Err(TOO_LONG));
            assert_eq!(parse("365d1s"), Err(TOO_LONG));
            assert_eq!(parse("8761h"), Err(TOO_LONG));
            assert_eq!(parse("999d9999h999999m99999999s"), Err(TOO_LONG));
        }
    }
}

/// Observed state of a `DatabaseBranch`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DatabaseBranchStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready`, `Reconciling` and `Stalled`, kstatus style.
    #[serde(default)]
    pub conditions: Conditions,
    /// The vendor's branch id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub branch_id: Option<String>,
    /// The vendor's id of the project this branch belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project_id: Option<String>,
    /// Name of the Secret holding the connection details, once written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection_secret_name: Option<String>,
    /// The connection Secret, where the Service Binding spec looks for it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub binding: Option<Binding>,
    /// Set just before the vendor create call is sent (see `DatabaseProject`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub create_requested: bool,
    /// Whether the vendor object was adopted (`spec.externalId`) rather
    /// than created by dbops. An adopted object is kept at the vendor on
    /// deletion unless `spec.deletionPolicy` says `Delete`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub adopted: bool,
    /// The deletion policy in force (`spec.deletionPolicy`, or its default:
    /// `Retain` for an adopted object, `Delete` otherwise).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deletion_policy: Option<DeletionPolicy>,
    /// The `DatabaseProvider` the vendor object was made through, so that it can
    /// still be deleted after its `DatabaseProject` resource is gone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider_name: Option<String>,
    /// Credential rotation state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential_rotation: Option<CredentialRotationStatus>,
    /// When this branch expires (RFC 3339): `metadata.creationTimestamp`
    /// plus `spec.expireAfter`. dbops deletes the resource then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<Rfc3339>,
    /// `spec.data` as applied to the vendor branch: until it names the
    /// branch's id, no connection Secret is written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_applied: Option<super::branch_data::DataApplied>,
    /// When the branch was last reset from its parent (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_reset_at: Option<Rfc3339>,
    /// The vendor branch's name, where a reset made a new branch under a new
    /// name (`None`: the name the spec gives it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub branch_name: Option<String>,
    /// Resets from the parent: requests handled, the one under way.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reset: Option<super::branch_data::ResetStatus>,
}

impl DatabaseBranchSpec {
    /// The deletion policy in force ([`super::common::effective_deletion_policy`]).
    pub fn effective_deletion_policy(&self) -> DeletionPolicy {
        super::common::effective_deletion_policy(self.deletion_policy, self.external_id.is_some())
    }
}
