//! Users: provisioning, lookup and deletion.

use async_trait::async_trait;
use time::OffsetDateTime;

use super::StoreError;
use crate::audit::AuditEvent;
use crate::ids::UserId;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRecord {
    pub id: UserId,
    pub username: String,
    pub display_name: Option<String>,
    pub is_privileged: bool,
    pub created_at: OffsetDateTime,
}

#[async_trait]
pub trait UserStore: Send + Sync {
    async fn create_user(&self, user: UserRecord, audit: AuditEvent) -> Result<UserRecord, StoreError>;

    /// An active (not deleted) user.
    async fn user_by_username(&self, username: &str) -> Result<Option<UserRecord>, StoreError>;

    /// Deletes a user: revokes every device, voids pending enrollments and frees the username
    /// (the id and the audit trail stay). Returns how many devices were revoked.
    async fn delete_user(&self, id: UserId, at: OffsetDateTime, audit: AuditEvent)
    -> Result<u64, StoreError>;
}
