//! Apps and their API keys.

use async_trait::async_trait;
use time::OffsetDateTime;

use super::StoreError;
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

#[async_trait]
pub trait AppStore: Send + Sync {
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
