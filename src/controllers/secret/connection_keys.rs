//! What a connection Secret holds: the keys of its preset and the user's
//! templates over the connection fields (pure; written by `writer.rs`).
//!
//! The templates are a namespace user's input, so rendering is bounded: only
//! the subset of Jinja in [`allowlist`] (no loops, variables or calls), a
//! step limit (fuel), at most [`MAX_VALUE_BYTES`] per key and
//! [`MAX_SECRET_DATA_BYTES`] for the whole Secret, and, through
//! [`render_bounded`], off the async workers and within [`RENDER_TIMEOUT`].

mod allowlist;

use std::collections::BTreeMap;
use std::io;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use minijinja::{Environment, ErrorKind, UndefinedBehavior, Value, filters};

use super::details::ConnectionDetails;
use crate::api::v1alpha1::{ConnectionSecretTarget, SecretPreset};

/// The Secret type of the `servicebinding` preset, from the Service Binding spec.
pub const SERVICE_BINDING_TYPE: &str = "servicebinding.io/postgresql";
/// The type of every other connection Secret.
pub const OPAQUE: &str = "Opaque";
/// libpq's own default `sslmode`, written when the vendor's URI names none.
const DEFAULT_SSLMODE: &str = "prefer";

/// The most one templated key's value may hold, in bytes.
pub const MAX_VALUE_BYTES: usize = 64 * 1024;
/// The most the whole Secret's data may hold (key names and values, preset
/// keys included): Kubernetes takes at most 1 MiB, and the rest is left for
/// the metadata.
pub const MAX_SECRET_DATA_BYTES: usize = 1024 * 1024 - 64 * 1024;
/// The most one template may be, in characters (as the CRD has it).
pub const MAX_TEMPLATE_CHARS: usize = 4096;
/// The most text the expressions of a Secret's templates may build in all,
/// by the bound [`allowlist::check`] finds before rendering.
pub const MAX_BUILT_BYTES: usize = 4 * 1024 * 1024;
/// Instructions one template may run: far more than any allowed template of
/// [`MAX_TEMPLATE_CHARS`] needs, a backstop should the allowlist miss one.
pub const RENDER_FUEL: u64 = 50_000;
/// How long rendering a Secret's templates may take.
pub const RENDER_TIMEOUT: Duration = Duration::from_secs(1);

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

/// [`render`] off the async workers, within [`RENDER_TIMEOUT`]: a template
/// that takes longer is refused (its rendering thread cannot be stopped, but
/// the [`allowlist`] and the fuel keep it short anyway). A Secret without
/// templates is rendered in place.
pub async fn render_bounded(
    details: &ConnectionDetails,
    target: Option<&ConnectionSecretTarget>,
    provider: &str,
) -> Result<Rendered, TemplateError> {
    if target.is_none_or(|t| t.keys.is_empty()) {
        return render(details, target, provider);
    }
    let current = Arc::new(Mutex::new(String::new()));
    let (progress, owned_details, target, provider) = (
        current.clone(),
        details.clone(),
        target.cloned(),
        provider.to_string(),
    );
    let work = move || {
        render_with(&owned_details, target.as_ref(), &provider, &|key| {
            if let Ok(mut current) = progress.lock() {
                current.clear();
                current.push_str(key);
            }
        })
    };
    match run_bounded(RENDER_TIMEOUT, work).await {
        Ok(result) => result,
        Err(unfinished) => {
            let key = current.lock().map(|k| k.clone()).unwrap_or_default();
            Err(unfinished_error(key, unfinished))
        }
    }
}

/// Why [`run_bounded`] has no result.
#[derive(Debug, PartialEq, Eq)]
pub enum Unfinished {
    TimedOut(Duration),
    Panicked,
}

/// Runs `work` on the blocking pool and waits for it at most `limit`. On a
/// timeout the work goes on in the background, unawaited.
pub async fn run_bounded<T, F>(limit: Duration, work: F) -> Result<T, Unfinished>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    match tokio::time::timeout(limit, tokio::task::spawn_blocking(work)).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(_)) => Err(Unfinished::Panicked),
        Err(_) => Err(Unfinished::TimedOut(limit)),
    }
}

fn unfinished_error(key: String, unfinished: Unfinished) -> TemplateError {
    TemplateError {
        key,
        message: match unfinished {
            Unfinished::TimedOut(limit) => {
                format!("the template took longer than {limit:?} to render")
            }
            Unfinished::Panicked => "the template engine failed on this template".to_string(),
        },
    }
}

/// The content of the connection Secret for `details`, as `target` asks:
/// its preset's keys, then its own `keys` (which win). Synchronous: see
/// [`render_bounded`] for where it may run.
pub fn render(
    details: &ConnectionDetails,
    target: Option<&ConnectionSecretTarget>,
    provider: &str,
) -> Result<Rendered, TemplateError> {
    render_with(details, target, provider, &|_| {})
}

/// [`render`], telling `progress` each key before rendering it.
fn render_with(
    details: &ConnectionDetails,
    target: Option<&ConnectionSecretTarget>,
    provider: &str,
    progress: &dyn Fn(&str),
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
        let env = environment();
        let lengths: BTreeMap<&str, usize> = context
            .iter()
            .map(|(name, value)| (*name, value.to_string().len()))
            .collect();
        let mut size: usize = data.iter().map(|(k, v)| k.len() + v.len()).sum();
        let mut built = 0usize;
        for (key, template) in templates {
            progress(key);
            let fail = |message: String| TemplateError {
                key: key.clone(),
                message: scrub(message, details),
            };
            if template.chars().count() > MAX_TEMPLATE_CHARS {
                return Err(fail(format!(
                    "the template is longer than {MAX_TEMPLATE_CHARS} characters"
                )));
            }
            built = built.saturating_add(
                allowlist::check(template, &lengths, MAX_VALUE_BYTES).map_err(|r| match r {
                    allowlist::Refusal::Syntax(e) => template_error(key, &e, details),
                    allowlist::Refusal::Construct(reason) => fail(reason),
                })?,
            );
            if built > MAX_BUILT_BYTES {
                return Err(fail(format!(
                    "the templates of this Secret could build more than {} MiB of text",
                    MAX_BUILT_BYTES >> 20
                )));
            }
            let replaced = data.get(key).map_or(0, |v| key.len() + v.len());
            let room = MAX_SECRET_DATA_BYTES
                .saturating_sub(size.saturating_sub(replaced))
                .saturating_sub(key.len());
            let value = render_capped(&env, template, &context, MAX_VALUE_BYTES.min(room))
                .map_err(|e| match e {
                    Capped::Engine(e) => template_error(key, &e, details),
                    Capped::Over if room < MAX_VALUE_BYTES => fail(format!(
                        "the connection Secret would hold more than {} KiB, near the 1 MiB Kubernetes allows",
                        MAX_SECRET_DATA_BYTES / 1024
                    )),
                    Capped::Over => fail(format!(
                        "the value would be longer than {} KiB",
                        MAX_VALUE_BYTES / 1024
                    )),
                })?;
            size = size.saturating_sub(replaced) + key.len() + value.len();
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

/// The engine for connection templates: strict about undefined names, no
/// HTML escaping, the step limit, and nothing but the [`allowlist`]'s
/// filters and tests (no globals such as `range`).
fn environment() -> Environment<'static> {
    let mut env = Environment::empty();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    // Values are written as they are: no HTML escaping.
    env.set_auto_escape_callback(|_| minijinja::AutoEscape::None);
    // No debug info: it would keep the context (credentials) with an error.
    env.set_debug(false);
    env.set_fuel(Some(RENDER_FUEL));
    env.add_filter("d", filters::default);
    env.add_filter("default", filters::default);
    env.add_filter("lower", filters::lower);
    env.add_filter("string", filters::string);
    env.add_filter("trim", filters::trim);
    env.add_filter("upper", filters::upper);
    env.add_filter("urlencode", filters::urlencode);
    env.add_test("defined", minijinja::tests::is_defined);
    env.add_test("endingwith", minijinja::tests::is_endingwith);
    env.add_test("false", minijinja::tests::is_false);
    env.add_test("none", minijinja::tests::is_none);
    env.add_test("number", minijinja::tests::is_number);
    env.add_test("startingwith", minijinja::tests::is_startingwith);
    env.add_test("string", minijinja::tests::is_string);
    env.add_test("true", minijinja::tests::is_true);
    env.add_test("undefined", minijinja::tests::is_undefined);
    env
}

/// Why [`render_capped`] has no value.
enum Capped {
    Engine(minijinja::Error),
    Over,
}

/// Renders `template` into at most `limit` bytes.
fn render_capped(
    env: &Environment<'_>,
    template: &str,
    context: &BTreeMap<&'static str, Value>,
    limit: usize,
) -> Result<String, Capped> {
    let template = env.template_from_str(template).map_err(Capped::Engine)?;
    let mut out = CappedWriter {
        buf: Vec::new(),
        limit,
        over: false,
    };
    match template.render_captured_to(context, &mut out) {
        Ok(_) => String::from_utf8(out.buf).map_err(|_| {
            Capped::Engine(minijinja::Error::new(
                ErrorKind::WriteFailure,
                "the output is not UTF-8",
            ))
        }),
        Err(_) if out.over => Err(Capped::Over),
        Err(e) => Err(Capped::Engine(e)),
    }
}

/// A writer that refuses to hold more than `limit` bytes.
struct CappedWriter {
    buf: Vec<u8>,
    limit: usize,
    over: bool,
}

impl io::Write for CappedWriter {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        if self.buf.len().saturating_add(bytes.len()) > self.limit {
            self.over = true;
            return Err(io::Error::other("over the size limit"));
        }
        self.buf.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// One line of a template error, without the template's source listing,
/// and with nothing of the credentials, should the engine ever quote a value.
fn template_error(
    key: &str,
    error: &minijinja::Error,
    details: &ConnectionDetails,
) -> TemplateError {
    let message = match (error.kind(), error.detail()) {
        (ErrorKind::OutOfFuel, _) => {
            format!("the template took more than {RENDER_FUEL} steps to render")
        }
        (kind, Some(detail)) => format!("{kind} ({detail})"),
        (kind, None) => kind.to_string(),
    };
    TemplateError {
        key: key.to_string(),
        message: scrub(message, details),
    }
}

/// `message` on one line, with the credentials in it hidden.
fn scrub(mut message: String, details: &ConnectionDetails) -> String {
    let secrets = [
        Some(&details.password),
        Some(&details.uri),
        details.pooled_uri.as_ref(),
    ];
    for secret in secrets.into_iter().flatten().filter(|s| !s.is_empty()) {
        message = message.replace(secret.as_str(), "(hidden)");
    }
    message.replace('\n', " ")
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
            ("{{ password | int }}", "the filter `int` is not allowed"),
            ("{{ password + 1 }}", "`+` is not allowed"),
            ("{{ password[99] }}", "item access (`[...]`) is not allowed"),
            ("{{ -password }}", "invalid operation"),
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

    /// Details whose password is `len` characters long.
    fn long_password(len: usize) -> ConnectionDetails {
        details(false).with_password(&"x".repeat(len))
    }

    fn refusal(d: &ConnectionDetails, keys: &[(&str, &str)]) -> TemplateError {
        let t = target(None, keys);
        render(d, Some(&t), "x").expect_err("refused")
    }

    #[test]
    fn every_allowed_filter_and_test_is_there_to_use() {
        for filter in allowlist::FILTERS {
            let t = target(None, &[("K", &format!("{{{{ port | {filter} }}}}"))]);
            let r = render(&details(true), Some(&t), "x");
            assert!(r.is_ok(), "{filter}: {r:?}");
        }
        for test in allowlist::TESTS {
            let args = if test.ends_with("with") { "('p')" } else { "" };
            let source = format!("{{% if uri is {test}{args} %}}y{{% endif %}}");
            let t = target(None, &[("K", source.as_str())]);
            let r = render(&details(true), Some(&t), "x");
            assert!(r.is_ok(), "{test}: {r:?}");
        }
        let t = target(
            None,
            &[
                ("ENC", "{{ password | urlencode }}"),
                (
                    "UP",
                    "{{ username | upper ~ '/' ~ nothing | default('none') }}",
                ),
                ("POOLER", "{{ 'yes' if hasPooler else 'no' }}"),
                ("SSL", "{% if 'sslmode' in uri %}{{ sslmode }}{% endif %}"),
                ("RAW", "{% raw %}{{ uri }}{% endraw %}"),
            ],
        );
        let r = render(&details(false), Some(&t), "x").unwrap();
        assert_eq!(r.data["ENC"], "p%40ss");
        assert_eq!(r.data["UP"], "APP/none");
        assert_eq!(r.data["POOLER"], "no");
        assert_eq!(r.data["SSL"], "require");
        assert_eq!(r.data["RAW"], "{{ uri }}");
    }

    /// The template of the issue (two nested loops writing output), which
    /// took 11 GiB: refused before it runs, at once.
    #[test]
    fn the_issues_runaway_template_is_refused_at_once() {
        let runaway = "{% for i in range(100000) %}{% for j in range(100000) %}{{ uri }}{% endfor %}{% endfor %}";
        let over_strings = "{% for a in uri %}{% for b in uri %}{{ uri }}{% endfor %}{% endfor %}";
        for template in [runaway, over_strings] {
            let started = std::time::Instant::now();
            let error = refusal(&details(true), &[("RUNAWAY", template)]);
            assert!(started.elapsed() < Duration::from_millis(100));
            assert_eq!(error.key, "RUNAWAY");
            assert_eq!(
                error.message,
                "loops (`{% for %}`) are not allowed in connection templates"
            );
        }
        let doubling =
            "{% set a = password ~ password %}{% set b = a ~ a %}{% set c = b ~ b %}{{ c }}";
        assert!(
            refusal(&details(true), &[("K", doubling)])
                .message
                .contains("`{% set %}`")
        );
        let nested = "{{ uri | replace('', uri) | replace('', uri) | replace('', uri) }}";
        assert!(
            refusal(&details(true), &[("K", nested)])
                .message
                .contains("`replace`")
        );
    }

    #[test]
    fn the_fuel_stops_what_the_allowlist_would_miss() {
        // Rendered without the allowlist's check: a million steps.
        let d = long_password(1000);
        let context = fields(&d, "x");
        let runaway =
            "{% for a in password %}{% for b in password %}{{ a }}{% endfor %}{% endfor %}";
        let started = std::time::Instant::now();
        let Err(Capped::Engine(e)) = render_capped(&environment(), runaway, &context, usize::MAX)
        else {
            panic!("rendered");
        };
        assert!(started.elapsed() < Duration::from_secs(1));
        assert_eq!(
            template_error("K", &e, &d).message,
            "the template took more than 50000 steps to render"
        );
        // No globals either: `range` is not there.
        let Err(Capped::Engine(e)) =
            render_capped(&environment(), "{{ range(3) }}", &context, usize::MAX)
        else {
            panic!("rendered");
        };
        assert_eq!(e.kind(), ErrorKind::UnknownFunction, "{e}");
        // The densest allowed template of the largest size runs well within
        // the fuel (about one step per character).
        let chunk = format!("{{{{1{}}}}}", "~1".repeat(allowlist::MAX_DEPTH - 5));
        let longest = chunk.repeat(MAX_TEMPLATE_CHARS / chunk.len());
        assert!(longest.len() > MAX_TEMPLATE_CHARS - chunk.len());
        let t = target(None, &[("K", longest.as_str())]);
        assert!(render(&details(true), Some(&t), "x").is_ok());
    }

    #[test]
    fn a_value_longer_than_the_key_cap_is_refused() {
        // 585 URIs of about 1 KiB each, from a template within the CRD's 4096 characters.
        let d = long_password(1000);
        let template = "{{uri}}".repeat(585);
        let error = refusal(&d, &[("BIG", &template)]);
        assert_eq!(error.key, "BIG");
        assert_eq!(error.message, "the value would be longer than 64 KiB");
        assert!(!error.to_string().contains("xxxx"));
        // Just under the cap is fine.
        let fits = "{{uri}}".repeat(MAX_VALUE_BYTES / d.uri.len());
        let t = target(None, &[("BIG", fits.as_str())]);
        assert!(render(&d, Some(&t), "x").unwrap().data["BIG"].len() <= MAX_VALUE_BYTES);
    }

    #[test]
    fn the_whole_secret_stays_under_a_mebibyte() {
        let d = long_password(1000);
        let template = "{{uri}}".repeat(MAX_VALUE_BYTES / d.uri.len());
        let names: Vec<String> = (0..20).map(|i| format!("K{i:02}")).collect();
        let keys: Vec<(&str, &str)> = names
            .iter()
            .map(|n| (n.as_str(), template.as_str()))
            .collect();
        let error = refusal(&d, &keys);
        assert_eq!(
            error.message,
            "the connection Secret would hold more than 960 KiB, near the 1 MiB Kubernetes allows"
        );
        // The preset's keys count: they are in the Secret too.
        let fitting = keys.len()
            - 1
            - keys
                .iter()
                .position(|(k, _)| *k == error.key)
                .map_or(0, |i| keys.len() - 1 - i);
        let t = target(None, &keys[..fitting]);
        let r = render(&d, Some(&t), "x").unwrap();
        let total: usize = r.data.iter().map(|(k, v)| k.len() + v.len()).sum();
        assert!(total <= MAX_SECRET_DATA_BYTES, "{total}");
        // Overriding a key replaces its size rather than adding to it.
        let t = target(None, &[("uri", "{{ uri }}")]);
        assert!(render(&d, Some(&t), "x").is_ok());
    }

    #[test]
    fn what_the_expressions_could_build_is_capped_for_the_secret() {
        // Nothing written, but each `~` makes a new string: with a URI of
        // about 1 KiB, some 1.9 MB per `if`.
        let d = long_password(1000);
        let template = format!("{{% if (uri{}) == '' %}}{{% endif %}}", " ~ uri".repeat(59));
        let one = render(&d, Some(&target(None, &[("A", &template)])), "x");
        assert!(one.is_ok(), "{one:?}");
        let error = refusal(&d, &[("HIDDEN", &template.repeat(3))]);
        assert_eq!(
            error.message,
            "the templates of this Secret could build more than 4 MiB of text"
        );
        // A template longer than the CRD allows, should one get past it.
        let long = "x".repeat(MAX_TEMPLATE_CHARS + 1);
        assert_eq!(
            refusal(&details(true), &[("LONG", &long)]).message,
            "the template is longer than 4096 characters"
        );
    }

    #[tokio::test]
    async fn run_bounded_gives_up_on_slow_work_without_blocking_the_runtime() {
        let started = std::time::Instant::now();
        let slow = run_bounded(Duration::from_millis(100), || {
            std::thread::sleep(Duration::from_millis(600));
            1
        });
        // This test's runtime has one thread: a tick that gets through while
        // the slow work runs (600 ms) shows the work is not on it.
        let ticker = async {
            tokio::time::sleep(Duration::from_millis(20)).await;
            std::time::Instant::now()
        };
        let (result, ticked) = tokio::join!(slow, ticker);
        assert_eq!(
            result,
            Err(Unfinished::TimedOut(Duration::from_millis(100)))
        );
        assert!(started.elapsed() < Duration::from_secs(1));
        assert!(ticked.duration_since(started) < Duration::from_millis(500));
        assert_eq!(run_bounded(Duration::from_secs(1), || 7).await, Ok(7));
        let panicked = run_bounded(Duration::from_secs(1), || -> u8 { panic!("engine bug") }).await;
        assert_eq!(panicked, Err(Unfinished::Panicked));
        let error = unfinished_error("K".into(), Unfinished::TimedOut(RENDER_TIMEOUT));
        assert_eq!(
            error.to_string(),
            "the template of connection Secret key \"K\" is invalid: the template took longer than 1s to render"
        );
    }

    #[tokio::test]
    async fn render_bounded_renders_as_render_does() {
        let d = details(true);
        let presets = target(Some(SecretPreset::Libpq), &[]);
        assert_eq!(
            render_bounded(&d, Some(&presets), "x").await,
            render(&d, Some(&presets), "x")
        );
        let templated = target(None, &[("DB_URL", "{{ pooledUri }}")]);
        assert_eq!(
            render_bounded(&d, Some(&templated), "x").await,
            render(&d, Some(&templated), "x")
        );
        let runaway = target(
            None,
            &[("A", "{{ uri }}"), ("B", "{% for x in uri %}{% endfor %}")],
        );
        let error = render_bounded(&d, Some(&runaway), "x").await.unwrap_err();
        assert_eq!(error.key, "B");
        assert!(error.message.contains("loops"));
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
