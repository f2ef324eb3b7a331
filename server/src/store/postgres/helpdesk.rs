//! Help-desk caller verifications.

use async_trait::async_trait;
use sqlx::Connection;

use super::PgStore;
use crate::audit::AuditEvent;
use crate::ids::ChallengeId;
use crate::store::StoreError;
use crate::store::helpdesk::{BY_CHALLENGE, CallerVerification, HelpDeskStore, INSERT, from_row};

#[async_trait]
impl HelpDeskStore for PgStore {
    async fn record_caller_verification(
        &self,
        v: &CallerVerification,
        audit: AuditEvent,
    ) -> Result<(), StoreError> {
        let mut conn = self.conn().await?;
        let mut tx = conn.begin().await?;
        sqlx::query(INSERT)
            .bind(v.challenge_id.0)
            .bind(v.admin_id.0)
            .bind(v.user_id.0)
            .bind(v.created_at)
            .execute(&mut *tx)
            .await?;
        self.append_audit(&mut tx, &audit).await?;
        self.commit(tx).await
    }

    async fn caller_verification(
        &self,
        challenge: ChallengeId,
    ) -> Result<Option<CallerVerification>, StoreError> {
        let row =
            sqlx::query(BY_CHALLENGE).bind(challenge.0).fetch_optional(&mut *self.conn().await?).await?;
        row.as_ref().map(from_row).transpose()
    }
}
