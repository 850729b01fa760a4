//! The SQL channel family: how a provider runs role administration
//! (`DatabaseRole`) in the database of a project or branch.
//!
//! Every vendor offers at most one channel, declared by implementing
//! [`SqlApi`] and shown in the capability matrix (`role.manage`):
//! - the vendor's documented SQL endpoint (DB9's
//!   `POST /customer/databases/{id}/sql`, Supabase's
//!   `POST /v1/projects/{ref}/database/query`);
//! - the server itself (the `postgres` API).
//!
//! infrai and CapyDB have none. The operator could connect as the owner
//! over the URI they return, but neither document says that owner may
//! create roles (`CREATEROLE`), and the client must not depend on a guess:
//! a `DatabaseRole` there stalls with `UnsupportedByProvider` instead of
//! failing half-way at the vendor.
//!
//! The statements come from `controllers/pipeline/grants.rs`, which writes
//! each pass as one statement, so a channel only carries text.

use async_trait::async_trait;

use secrecy::SecretString;

use super::error::ProviderError;

/// What carries a provider's SQL.
#[derive(Clone, Copy, Debug, PartialEq, Eq, strum::Display)]
pub enum SqlChannel {
    /// The vendor's documented SQL endpoint.
    #[strum(serialize = "the vendor's SQL endpoint")]
    VendorEndpoint,
    /// A connection to the server as its admin role.
    #[strum(serialize = "the server's admin connection")]
    Server,
}

/// The rows a statement answered, each cell as text (`None`: SQL `NULL`).
pub type Rows = Vec<Vec<Option<String>>>;

/// Running SQL in the database of a project or branch.
#[async_trait]
pub trait SqlApi: Send + Sync {
    /// What carries the statements.
    fn channel(&self) -> SqlChannel;

    /// Whether the channel returns rows. A channel whose document does not
    /// describe its answer cannot be read: dbops runs statements through
    /// it, and never depends on what comes back.
    fn returns_rows(&self) -> bool;

    /// Whether [`SqlApi::run_sql`] reaches a branch's database by the branch's
    /// id. Supabase's query endpoint takes a project ref, and its document
    /// does not say how a branch's is found, so it reaches projects only.
    fn reaches_branches(&self) -> bool {
        true
    }

    /// Runs one statement in the database of vendor object `database_id` (a
    /// project's or a branch's id); the rows, where [`SqlApi::returns_rows`].
    async fn run_sql(&self, database_id: &str, sql: &str) -> Result<Rows, ProviderError>;

    /// The login users of the database, where the vendor documents a users
    /// endpoint (DB9); `None`: it has none, and roles are read by SQL.
    async fn list_users(&self, _database_id: &str) -> Result<Option<Vec<String>>, ProviderError> {
        Ok(None)
    }

    /// Makes login user `name` through the vendor's users endpoint, where it
    /// has one (DB9): the URI it connects with, carrying the password the
    /// vendor generated (returned once), never shown by `Debug`. `None`: no
    /// users endpoint; roles are made by SQL.
    async fn create_user(
        &self,
        _database_id: &str,
        _name: &str,
    ) -> Result<Option<SecretString>, ProviderError> {
        Ok(None)
    }

    /// Deletes login user `name` through the users endpoint: `false` where
    /// there is none. Gone already is [`ProviderError::is_not_found`].
    async fn delete_user(&self, _database_id: &str, _name: &str) -> Result<bool, ProviderError> {
        Ok(false)
    }
}
