//! Help-desk caller verifications.

use async_trait::async_trait;

use super::SqliteStore;
use crate::audit::AuditEvent;
use crate::clock::unix_micros;
use crate::ids::ChallengeId;
use crate::store::StoreError;
use crate::store::helpdesk::{BY_CHALLENGE, CallerVerification, HelpDeskStore, INSERT, from_row};

#[async_trait]
impl HelpDeskStore for SqliteStore {
    async fn record_caller_verification(
        &self,
        v: &CallerVerification,
        audit: AuditEvent,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        sqlx::query(INSERT)
            .bind(v.challenge_id.0.to_string())
            .bind(v.admin_id.0.to_string())
            .bind(v.user_id.0.to_string())
            .bind(unix_micros(v.created_at))
            .execute(&mut *tx)
            .await?;
        self.append_audit(&mut tx, &audit).await?;
        self.commit(tx).await
    }

    async fn caller_verification(
        &self,
        challenge: ChallengeId,
    ) -> Result<Option<CallerVerification>, StoreError> {
        let row = sqlx::query(BY_CHALLENGE).bind(challenge.0.to_string()).fetch_optional(&self.pool).await?;
        row.as_ref().map(from_row).transpose()
    }
}
