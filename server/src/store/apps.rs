//! Apps and their API keys.

use async_trait::async_trait;
use time::OffsetDateTime;

use super::StoreError;
use super::codec::{Columns, Sql};
use crate::api_keys::Scopes;
use crate::audit::AuditEvent;
use crate::ids::AppId;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppRecord {
    pub id: AppId,
    pub name: String,
    pub key_id: String,
    pub key_hash: Vec<u8>,
    pub scopes: Scopes,
    pub created_at: OffsetDateTime,
    pub revoked_at: Option<OffsetDateTime>,
}

/// Every column of `apps`, as [`app_from_row`] reads them.
const APP_COLUMNS: &str = "id, name, key_id, key_hash, scopes, created_at, revoked_at";

pub(super) const INSERT_APP: &str =
    "INSERT INTO apps (id, name, key_id, key_hash, scopes, created_at) VALUES ($1, $2, $3, $4, $5, $6)";
pub(super) static REVOKE_APP: Sql = Sql::new(|| {
    format!("UPDATE apps SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL RETURNING {APP_COLUMNS}")
});
pub(super) static APP_BY_KEY_ID: Sql =
    Sql::new(|| format!("SELECT {APP_COLUMNS} FROM apps WHERE key_id = $1"));
pub(super) static APP_BY_NAME: Sql = Sql::new(|| format!("SELECT {APP_COLUMNS} FROM apps WHERE name = $1"));
pub(super) static ALL_APPS: Sql = Sql::new(|| format!("SELECT {APP_COLUMNS} FROM apps ORDER BY name"));

pub(super) fn app_from_row<R: Columns>(row: &R) -> Result<AppRecord, StoreError> {
    let scopes: String = row.value("scopes")?;
    Ok(AppRecord {
        id: AppId(row.id("id")?),
        name: row.value("name")?,
        key_id: row.value("key_id")?,
        key_hash: row.value("key_hash")?,
        scopes: scopes.parse().map_err(|e| StoreError::Corrupt(format!("app scopes: {e}")))?,
        created_at: row.time("created_at")?,
        revoked_at: row.optional_time("revoked_at")?,
    })
}

#[async_trait]
pub trait AppStore: Send + Sync + std::fmt::Debug {
    async fn create_app(&self, app: AppRecord, audit: AuditEvent) -> Result<AppRecord, StoreError>;

    /// Marks an active app revoked; `NotFound` if there is no such app or it is already revoked.
    async fn revoke_app(
        &self,
        id: AppId,
        at: OffsetDateTime,
        audit: AuditEvent,
    ) -> Result<AppRecord, StoreError>;

    async fn app_by_key_id(&self, key_id: &str) -> Result<Option<AppRecord>, StoreError>;

    async fn app_by_name(&self, name: &str) -> Result<Option<AppRecord>, StoreError>;

    async fn list_apps(&self) -> Result<Vec<AppRecord>, StoreError>;
}
