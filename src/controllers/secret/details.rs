//! The connection details the vendor hands out, split into the parts a
//! connection Secret holds (pure): what the Secret writer, the templates and
//! rotation read.

use crate::providers::ConnectionUri;

/// A connection URI the vendor sent that we cannot use. The message never holds the URI.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConnectionError {
    #[error("the vendor returned no connection URI")]
    Missing,
    #[error("the vendor's connection URI is not a postgres URL ({0})")]
    Invalid(&'static str),
}

/// The parts of a connection URI, as the Secret's keys hold them.
#[derive(Clone, PartialEq, Eq)]
pub struct ConnectionDetails {
    pub uri: String,
    pub host: String,
    pub port: u16,
    pub database: String,
    pub username: String,
    pub password: String,
    pub pooled_uri: Option<String>,
}

impl std::fmt::Debug for ConnectionDetails {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectionDetails")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("database", &self.database)
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

impl ConnectionDetails {
    /// Splits a `postgresql://user:password@host:port/database?...` URI.
    pub fn parse(
        uri: Option<&ConnectionUri>,
        pooled: Option<&ConnectionUri>,
    ) -> Result<Self, ConnectionError> {
        let raw = uri.ok_or(ConnectionError::Missing)?.expose();
        let url = url::Url::parse(raw).map_err(|_| ConnectionError::Invalid("unparsable"))?;
        if !matches!(url.scheme(), "postgres" | "postgresql") {
            return Err(ConnectionError::Invalid(
                "scheme is not postgres/postgresql",
            ));
        }
        let host = url
            .host_str()
            .filter(|h| !h.is_empty())
            .ok_or(ConnectionError::Invalid("no host"))?;
        let decode =
            |s: &str| percent_decode(s).ok_or(ConnectionError::Invalid("bad percent-encoding"));
        Ok(Self {
            uri: raw.to_string(),
            host: host.to_string(),
            port: url.port().unwrap_or(5432),
            database: decode(url.path().trim_start_matches('/'))?,
            username: decode(url.username())?,
            password: decode(url.password().unwrap_or_default())?,
            pooled_uri: pooled.map(|p| p.expose().to_string()),
        })
    }

    /// Puts `password` into the details and the URI (for vendors whose URIs
    /// carry no password: the operator chose it and keeps it in the Secret).
    pub fn with_password(mut self, password: &str) -> Self {
        if let Ok(mut url) = url::Url::parse(&self.uri)
            && url.set_password(Some(password)).is_ok()
        {
            self.uri = url.to_string();
        }
        if let Some(pooled) = &self.pooled_uri
            && let Ok(mut url) = url::Url::parse(pooled)
            && url.password().is_none()
            && url.set_password(Some(password)).is_ok()
        {
            self.pooled_uri = Some(url.to_string());
        }
        self.password = password.to_string();
        self
    }
}

fn percent_decode(s: &str) -> Option<String> {
    percent_encoding::percent_decode_str(s)
        .decode_utf8()
        .ok()
        .map(|c| c.into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn uri(s: &str) -> ConnectionUri {
        ConnectionUri::new(s)
    }

    #[test]
    fn the_kept_password_goes_into_the_direct_and_the_pooled_uri() {
        let direct = ConnectionUri::new("postgresql://postgres@db.x.supabase.co:5432/postgres");
        let pooled =
            ConnectionUri::new("postgresql://postgres.x@aws-0-r.pooler.supabase.com:6543/postgres");
        let details = ConnectionDetails::parse(Some(&direct), Some(&pooled))
            .unwrap()
            .with_password("p@ss");
        assert_eq!(
            details.uri,
            "postgresql://postgres:p%40ss@db.x.supabase.co:5432/postgres"
        );
        assert_eq!(
            details.pooled_uri.as_deref(),
            Some("postgresql://postgres.x:p%40ss@aws-0-r.pooler.supabase.com:6543/postgres")
        );
        // A pooled URI that carries its own password keeps it.
        let own = ConnectionUri::new("postgresql://u:theirs@pooler:6543/db");
        let details = ConnectionDetails::parse(Some(&direct), Some(&own))
            .unwrap()
            .with_password("mine");
        assert_eq!(
            details.pooled_uri.as_deref(),
            Some("postgresql://u:theirs@pooler:6543/db")
        );
    }

    #[test]
    fn unusable_uris_are_refused_without_echoing_them() {
        assert_eq!(
            ConnectionDetails::parse(None, None),
            Err(ConnectionError::Missing)
        );
        let err = ConnectionDetails::parse(Some(&uri("mysql://u:hunter2@h/db")), None).unwrap_err();
        assert!(!err.to_string().contains("hunter2"));
        assert!(ConnectionDetails::parse(Some(&uri("not a url")), None).is_err());
        assert!(
            ConnectionDetails::parse(Some(&uri("postgresql://u:p%ff@h/db")), None).is_err(),
            "not UTF-8"
        );
    }

    #[test]
    fn debug_output_hides_the_password_and_uri() {
        let d = ConnectionDetails::parse(Some(&uri("postgresql://u:hunter2@h/db")), None).unwrap();
        let shown = format!("{d:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
    }
}
