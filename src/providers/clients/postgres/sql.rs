//! SQL text and its failures: quoting identifiers and literals, and
//! [`SqlError`], shared by the server's administration (`server.rs`) and the
//! logical copy (`logical.rs`).

/// A failed statement or connection.
#[derive(Debug, thiserror::Error)]
pub enum SqlError {
    /// The server refused a statement, or the connection failed. `message` is
    /// the server's primary message (it names objects, never a password).
    #[error("{message}")]
    Server {
        code: Option<String>,
        message: String,
        transient: bool,
    },
    /// An object under the requested name exists and carries no marker of
    /// this resource.
    #[error("{object} {name:?} exists and dbops did not create it for this resource")]
    Conflict { object: &'static str, name: String },
    /// The object does not exist.
    #[error("{object} {name:?} does not exist")]
    Missing { object: &'static str, name: String },
}

impl From<tokio_postgres::Error> for SqlError {
    fn from(error: tokio_postgres::Error) -> Self {
        match error.as_db_error() {
            Some(db) => {
                let code = db.code().code().to_string();
                // 08: connection exception; 40: rollback (serialization,
                // deadlock); 53: insufficient resources; 57: operator
                // intervention; 55006: object in use (a template copy's source).
                // "tuple concurrently updated" (XX000) is two catalog
                // writers racing on one row; the next attempt goes through.
                let transient = matches!(code.get(..2), Some("08" | "40" | "53" | "57"))
                    || code == "55006"
                    || db.message() == "tuple concurrently updated";
                Self::Server {
                    code: Some(code),
                    message: db.message().to_string(),
                    transient,
                }
            }
            // No server answer: the connection could not be made or broke.
            // tokio-postgres describes these by kind and OS error only.
            None => Self::Server {
                code: None,
                message: format!("the server could not be reached: {error}"),
                transient: true,
            },
        }
    }
}

type Result<T> = std::result::Result<T, SqlError>;

/// `name` as a quoted SQL identifier.
pub fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// `value` as a SQL string literal. Backslashes are refused rather than
/// escaped, so the literal means the same whatever
/// `standard_conforming_strings` says (dbops never writes one).
pub fn literal(value: &str) -> Result<String> {
    if value.contains('\\') || value.contains('\0') {
        return Err(SqlError::Server {
            code: None,
            message: "a value for a statement contains a backslash or NUL, which dbops never sends"
                .into(),
            transient: false,
        });
    }
    Ok(format!("'{}'", value.replace('\'', "''")))
}

/// A `DO` block with `declarations` (each line `  name type;`) around
/// `body`, dollar-quoted with a tag neither contains, so no name in them can
/// end the block early.
pub fn do_block(declarations: &str, body: &str) -> String {
    let mut tag = String::from("$dbops$");
    let mut n = 0;
    while body.contains(&tag) || declarations.contains(&tag) {
        n += 1;
        tag = format!("$dbops{n}$");
    }
    format!("DO {tag}\nDECLARE\n{declarations}BEGIN\n{body}END\n{tag}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting() {
        assert_eq!(ident("a-b"), "\"a-b\"");
        assert_eq!(ident("we\"ird"), "\"we\"\"ird\"");
        assert_eq!(literal("it's").unwrap(), "'it''s'");
        assert!(literal("a\\b").is_err());
    }
}
