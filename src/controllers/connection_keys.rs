//! What a connection Secret holds: the keys of its preset and the user's
//! templates over the connection fields (pure; written by [`super::secret`]).

use std::collections::BTreeMap;

use minijinja::{Environment, UndefinedBehavior, Value};

use super::secret::ConnectionDetails;
use crate::api::v1alpha1::{ConnectionSecretTarget, SecretPreset};

/// The Secret type of the `servicebinding` preset, from the Service Binding spec.
pub const SERVICE_BINDING_TYPE: &str = "servicebinding.io/postgresql";
/// The type of every other connection Secret.
pub const OPAQUE: &str = "Opaque";
/// libpq's own default `sslmode`, written when the vendor's URI names none.
const DEFAULT_SSLMODE: &str = "prefer";

/// A connection Secret's content, rendered.
#[derive(Clone, PartialEq, Eq)]
pub struct Rendered {
    pub data: BTreeMap<String, String>,
    pub type_: &'static str,
    /// Where the password is, for reading it back: a key holding it as it
    /// is, or `uri:<key>` for a key holding a URI with it. `None` when no key
    /// holds it.
    pub password_at: Option<String>,
    /// What the user should know about the result, in one sentence (the
    /// `prisma` preset on a vendor without a pooler).
    pub note: Option<String>,
}

impl std::fmt::Debug for Rendered {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rendered")
            .field("keys", &self.data.keys().collect::<Vec<_>>())
            .field("type_", &self.type_)
            .field("password_at", &self.password_at)
            .finish_non_exhaustive()
    }
}

/// A template in `writeConnectionSecretTo.keys` that cannot be rendered.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("the template of connection Secret key {key:?} is invalid: {message}")]
pub struct TemplateError {
    pub key: String,
    pub message: String,
}

/// The fields a template can use, by name.
fn fields(details: &ConnectionDetails, provider: &str) -> BTreeMap<&'static str, Value> {
    let sslmode = sslmode(&details.uri);
    let pooled = details.pooled_uri.clone();
    BTreeMap::from([
        ("uri", Value::from(details.uri.clone())),
        ("directUri", Value::from(details.uri.clone())),
        (
            "pooledUri",
            Value::from(pooled.clone().unwrap_or_else(|| details.uri.clone())),
        ),
        ("hasPooler", Value::from(pooled.is_some())),
        ("host", Value::from(details.host.clone())),
        ("port", Value::from(details.port)),
        ("database", Value::from(details.database.clone())),
        ("username", Value::from(details.username.clone())),
        ("password", Value::from(details.password.clone())),
        ("sslmode", Value::from(sslmode)),
        ("provider", Value::from(provider.to_string())),
        ("jdbcUri", Value::from(jdbc_uri(details))),
    ])
}

/// The `sslmode` of a URI's query, or libpq's default.
fn sslmode(uri: &str) -> String {
    url::Url::parse(uri)
        .ok()
        .and_then(|u| {
            u.query_pairs()
                .find(|(k, _)| k == "sslmode")
                .map(|(_, v)| v.into_owned())
        })
        .unwrap_or_else(|| DEFAULT_SSLMODE.to_string())
}

/// The JDBC form: `jdbc:postgresql://host:port/database?user=..&password=..`
/// (the driver takes no user info in the authority).
fn jdbc_uri(details: &ConnectionDetails) -> String {
    let mut query = url::form_urlencoded::Serializer::new(String::new());
    query.append_pair("user", &details.username);
    query.append_pair("password", &details.password);
    let ssl = sslmode(&details.uri);
    if ssl != DEFAULT_SSLMODE {
        query.append_pair("sslmode", &ssl);
    }
    let database: String =
        url::form_urlencoded::byte_serialize(details.database.as_bytes()).collect();
    let host = if details.host.contains(':') {
        format!("[{}]", details.host)
    } else {
        details.host.clone()
    };
    format!(
        "jdbc:postgresql://{host}:{}/{database}?{}",
        details.port,
        query.finish()
    )
}

/// The keys of `preset`, each with the field of [`fields`] it holds.
fn preset_keys(preset: SecretPreset, has_pooler: bool) -> Vec<(&'static str, &'static str)> {
    let mut keys = match preset {
        SecretPreset::Default | SecretPreset::Jdbc => vec![
            ("uri", "uri"),
            ("host", "host"),
            ("port", "port"),
            ("database", "database"),
            ("username", "username"),
            ("password", "password"),
        ],
        SecretPreset::Libpq => vec![
            ("PGHOST", "host"),
            ("PGPORT", "port"),
            ("PGUSER", "username"),
            ("PGPASSWORD", "password"),
            ("PGDATABASE", "database"),
            ("PGSSLMODE", "sslmode"),
            ("DATABASE_URL", "uri"),
        ],
        SecretPreset::Prisma => vec![("DATABASE_URL", "pooledUri"), ("DIRECT_URL", "directUri")],
        SecretPreset::ServiceBinding => vec![
            ("type", "type"),
            ("provider", "provider"),
            ("host", "host"),
            ("port", "port"),
            ("database", "database"),
            ("username", "username"),
            ("password", "password"),
            ("uri", "uri"),
        ],
    };
    if matches!(preset, SecretPreset::Default | SecretPreset::Jdbc) && has_pooler {
        keys.push(("pooledUri", "pooledUri"));
    }
    if preset == SecretPreset::Jdbc {
        keys.push(("jdbc-uri", "jdbcUri"));
    }
    keys
}

/// The content of the connection Secret for `details`, as `target` asks:
/// its preset's keys, then its own `keys` (which win).
pub fn render(
    details: &ConnectionDetails,
    target: Option<&ConnectionSecretTarget>,
    provider: &str,
) -> Result<Rendered, TemplateError> {
    let preset = target.and_then(|t| t.preset).unwrap_or_default();
    let context = fields(details, provider);
    let has_pooler = details.pooled_uri.is_some();
    let mut data = BTreeMap::new();
    for (key, field) in preset_keys(preset, has_pooler) {
        let value = match field {
            // The Service Binding spec's type, not a connection field.
            "type" => "postgresql".to_string(),
            field => context.get(field).map(Value::to_string).unwrap_or_default(),
        };
        data.insert(key.to_string(), value);
    }
    let templates = target.map(|t| &t.keys).filter(|keys| !keys.is_empty());
    if let Some(templates) = templates {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        // Values are written as they are: no HTML escaping.
        env.set_auto_escape_callback(|_| minijinja::AutoEscape::None);
        for (key, template) in templates {
            let value = env
                .render_str(template, &context)
                .map_err(|e| template_error(key, &e, details))?;
            data.insert(key.clone(), value);
        }
    }
    let note = (preset == SecretPreset::Prisma && !has_pooler).then(|| {
        "the vendor has no connection pooler, so DATABASE_URL is the direct connection, like DIRECT_URL".to_string()
    });
    Ok(Rendered {
        password_at: password_at(&data, &details.password),
        data,
        type_: match preset {
            SecretPreset::ServiceBinding => SERVICE_BINDING_TYPE,
            _ => OPAQUE,
        },
        note,
    })
}

/// One line of a template error, without the template's source listing,
/// and with nothing of the credentials, should the engine ever quote a value.
fn template_error(
    key: &str,
    error: &minijinja::Error,
    details: &ConnectionDetails,
) -> TemplateError {
    let mut message = match error.detail() {
        Some(detail) => format!("{} ({detail})", error.kind()),
        None => error.kind().to_string(),
    };
    let secrets = [
        Some(&details.password),
        Some(&details.uri),
        details.pooled_uri.as_ref(),
    ];
    for secret in secrets.into_iter().flatten().filter(|s| !s.is_empty()) {
        message = message.replace(secret.as_str(), "(hidden)");
    }
    TemplateError {
        key: key.to_string(),
        message: message.replace('\n', " "),
    }
}

/// Where `password` is in `data`: a key holding exactly it (the preset's
/// own first), else a key holding a URI with it.
fn password_at(data: &BTreeMap<String, String>, password: &str) -> Option<String> {
    if password.is_empty() {
        return None;
    }
    let exact = ["password", "PGPASSWORD"]
        .into_iter()
        .map(str::to_string)
        .chain(data.keys().cloned())
        .find(|k| data.get(k).is_some_and(|v| v == password));
    exact.or_else(|| {
        data.iter()
            .find(|(_, v)| password_in_uri(v).is_some_and(|p| p == password))
            .map(|(k, _)| format!("uri:{k}"))
    })
}

/// The password a `postgres://` URI carries, decoded.
pub fn password_in_uri(uri: &str) -> Option<String> {
    let url = url::Url::parse(uri).ok()?;
    let password = url.password()?;
    percent_encoding::percent_decode_str(password)
        .decode_utf8()
        .ok()
        .map(|p| p.into_owned())
}

/// The password in Secret `data` at `at` ([`Rendered::password_at`]).
pub fn read_password(data: &BTreeMap<String, String>, at: &str) -> Option<String> {
    match at.strip_prefix("uri:") {
        Some(key) => password_in_uri(data.get(key)?),
        None => data.get(at).cloned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::ConnectionUri;

    fn details(pooled: bool) -> ConnectionDetails {
        let direct =
            ConnectionUri::new("postgresql://app:p%40ss@db.example:5432/shop?sslmode=require");
        let pooler = ConnectionUri::new("postgresql://app:p%40ss@pool.example:6543/shop");
        ConnectionDetails::parse(Some(&direct), pooled.then_some(&pooler)).unwrap()
    }

    fn target(preset: Option<SecretPreset>, keys: &[(&str, &str)]) -> ConnectionSecretTarget {
        ConnectionSecretTarget {
            name: "db".into(),
            preset,
            keys: keys
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..Default::default()
        }
    }

    fn keys(r: &Rendered) -> Vec<&str> {
        r.data.keys().map(String::as_str).collect()
    }

    #[test]
    fn the_default_preset_is_todays_keys() {
        let r = render(&details(true), None, "supabase").unwrap();
        assert_eq!(
            keys(&r),
            [
                "database",
                "host",
                "password",
                "pooledUri",
                "port",
                "uri",
                "username"
            ]
        );
        assert_eq!(r.data["password"], "p@ss");
        assert_eq!(r.data["port"], "5432");
        assert_eq!(r.type_, OPAQUE);
        assert_eq!(r.password_at.as_deref(), Some("password"));
        // No pooler, no pooledUri key.
        let r = render(&details(false), None, "db9").unwrap();
        assert!(!r.data.contains_key("pooledUri"));
    }

    #[test]
    fn libpq_writes_the_pg_environment() {
        let r = render(
            &details(false),
            Some(&target(Some(SecretPreset::Libpq), &[])),
            "x",
        )
        .unwrap();
        assert_eq!(
            keys(&r),
            [
                "DATABASE_URL",
                "PGDATABASE",
                "PGHOST",
                "PGPASSWORD",
                "PGPORT",
                "PGSSLMODE",
                "PGUSER"
            ]
        );
        assert_eq!(r.data["PGSSLMODE"], "require");
        assert_eq!(r.data["PGUSER"], "app");
        assert_eq!(r.password_at.as_deref(), Some("PGPASSWORD"));
    }

    #[test]
    fn prisma_is_pooled_where_the_vendor_pools_and_says_so_where_it_does_not() {
        let prisma = target(Some(SecretPreset::Prisma), &[]);
        let r = render(&details(true), Some(&prisma), "x").unwrap();
        assert!(r.data["DATABASE_URL"].contains("pool.example:6543"));
        assert!(r.data["DIRECT_URL"].contains("db.example:5432"));
        assert_eq!(r.note, None);
        assert_eq!(r.password_at.as_deref(), Some("uri:DATABASE_URL"));
        let r = render(&details(false), Some(&prisma), "x").unwrap();
        assert_eq!(r.data["DATABASE_URL"], r.data["DIRECT_URL"]);
        assert!(r.note.unwrap().contains("no connection pooler"));
    }

    #[test]
    fn servicebinding_has_the_specs_keys_and_type() {
        let r = render(
            &details(false),
            Some(&target(Some(SecretPreset::ServiceBinding), &[])),
            "infrai",
        )
        .unwrap();
        assert_eq!(r.type_, SERVICE_BINDING_TYPE);
        assert_eq!(r.data["type"], "postgresql");
        assert_eq!(r.data["provider"], "infrai");
        assert_eq!(
            keys(&r),
            [
                "database", "host", "password", "port", "provider", "type", "uri", "username"
            ]
        );
    }

    #[test]
    fn jdbc_adds_a_jdbc_uri_with_the_credentials_as_parameters() {
        let r = render(
            &details(false),
            Some(&target(Some(SecretPreset::Jdbc), &[])),
            "x",
        )
        .unwrap();
        assert_eq!(
            r.data["jdbc-uri"],
            "jdbc:postgresql://db.example:5432/shop?user=app&password=p%40ss&sslmode=require"
        );
        assert!(r.data.contains_key("uri"));
    }

    #[test]
    fn templates_add_and_override_keys() {
        let t = target(
            None,
            &[
                ("DB_URL", "{{ pooledUri }}"),
                ("uri", "{{ directUri }}?application_name=shop"),
                ("HOSTPORT", "{{ host }}:{{ port }}"),
                ("POOLED", "{% if hasPooler %}yes{% else %}no{% endif %}"),
            ],
        );
        let r = render(&details(true), Some(&t), "x").unwrap();
        assert!(r.data["DB_URL"].contains("pool.example"));
        assert!(r.data["uri"].ends_with("?application_name=shop"));
        assert_eq!(r.data["HOSTPORT"], "db.example:5432");
        assert_eq!(r.data["POOLED"], "yes");
        // No HTML escaping of what goes into a Secret.
        let t = target(None, &[("X", "{{ password }}&<>")]);
        assert_eq!(
            render(&details(false), Some(&t), "x").unwrap().data["X"],
            "p@ss&<>"
        );
    }

    #[test]
    fn a_bad_template_names_its_key_and_the_problem_and_never_a_value() {
        for (template, problem) in [
            ("{{ password | int }}", "invalid operation"),
            ("{{ password + 1 }}", "invalid operation"),
            ("{{ password[99] }}", "undefined"),
            ("{{ pooledUri ", "syntax error"),
            ("{{ nosuchfield }}", "undefined value"),
            ("{% if %}", "syntax error"),
        ] {
            let t = target(None, &[("BROKEN", template)]);
            let error = render(&details(true), Some(&t), "x").unwrap_err();
            assert_eq!(error.key, "BROKEN");
            let text = error.to_string();
            assert!(text.contains(problem), "{text}");
            assert!(!text.contains("p@ss") && !text.contains('\n'), "{text}");
        }
    }

    #[test]
    fn an_engine_error_quoting_a_credential_is_scrubbed() {
        let d = details(true);
        let quoting = minijinja::Error::new(
            minijinja::ErrorKind::InvalidOperation,
            format!("cannot use {} or {}\nat all", d.password, d.uri),
        );
        let error = template_error("K", &quoting, &d);
        assert!(!error.message.contains("p@ss") && !error.message.contains("db.example"));
        assert!(!error.message.contains('\n'), "{}", error.message);
        assert!(error.message.contains("(hidden)"), "{}", error.message);
    }

    #[test]
    fn switching_presets_changes_the_whole_set_at_once() {
        let before = render(&details(true), None, "x").unwrap();
        let after = render(
            &details(true),
            Some(&target(Some(SecretPreset::Libpq), &[])),
            "x",
        )
        .unwrap();
        assert!(before.data.keys().all(|k| !after.data.contains_key(k)));
        // The password is found in either, for reading it back.
        assert_eq!(
            read_password(&before.data, before.password_at.as_deref().unwrap()).as_deref(),
            Some("p@ss")
        );
        assert_eq!(
            read_password(&after.data, after.password_at.as_deref().unwrap()).as_deref(),
            Some("p@ss")
        );
    }

    #[test]
    fn a_layout_without_the_password_says_so() {
        let t = target(Some(SecretPreset::Prisma), &[]);
        let mut d = details(false);
        d.uri = "postgresql://app@db.example:5432/shop".into();
        d.pooled_uri = None;
        let r = render(&d, Some(&t), "x").unwrap();
        assert_eq!(r.password_at, None);
    }
}
