//! The callback outbox.

use async_trait::async_trait;
use sqlx::{Connection, PgConnection};
use time::OffsetDateTime;

use super::PgStore;
use crate::audit::AuditEvent;
use crate::ids::ChallengeId;
use crate::store::StoreError;
use crate::store::callbacks::{
    CALLBACKS_FOR_CHALLENGE, CLAIMED_COLUMNS, CallbackJob, CallbackResult, CallbackStatus, CallbackStore,
    ClaimedCallback, DUE_CALLBACKS, FINISH_CALLBACK, INSERT_CALLBACK, PURGE_CALLBACKS, claimed_from_row,
    status_from_row,
};
use crate::store::codec::Sql;

static CLAIM: Sql = Sql::new(|| {
    format!(
        "WITH claimed AS (
             UPDATE callbacks SET next_attempt_at = $2, attempts = attempts + 1
             WHERE id IN ({DUE_CALLBACKS} FOR UPDATE OF cb SKIP LOCKED)
             RETURNING *)
         SELECT {CLAIMED_COLUMNS} FROM claimed cb LEFT JOIN challenges c ON c.id = cb.challenge_id"
    )
});

/// Enqueues `job` in the caller's transaction (with the request that owes it).
pub(in crate::store) async fn insert(conn: &mut PgConnection, job: &CallbackJob) -> Result<(), StoreError> {
    sqlx::query(INSERT_CALLBACK)
        .bind(job.id)
        .bind(job.kind.as_str())
        .bind(job.challenge_id.map(|c| c.0))
        .bind(&job.url)
        .bind(&job.sealed)
        .bind(job.created_at)
        .bind(job.expires_at)
        .bind(job.not_before)
        .execute(conn)
        .await?;
    Ok(())
}

#[async_trait]
impl CallbackStore for PgStore {
    async fn claim_callbacks(
        &self,
        now: OffsetDateTime,
        lease: time::Duration,
        limit: u32,
    ) -> Result<Vec<ClaimedCallback>, StoreError> {
        let rows = sqlx::query(CLAIM.as_str())
            .bind(now)
            .bind(now + lease)
            .bind(i64::from(limit))
            .fetch_all(&mut *self.conn().await?)
            .await?;
        rows.iter().map(claimed_from_row).collect()
    }

    async fn finish_callback(
        &self,
        claimed: &ClaimedCallback,
        result: CallbackResult,
        now: OffsetDateTime,
        audit: Option<AuditEvent>,
    ) -> Result<bool, StoreError> {
        let (state, next, error, finished) = result.columns(now);
        let mut conn = self.conn().await?;
        let mut tx = conn.begin().await?;
        let done = sqlx::query(FINISH_CALLBACK)
            .bind(claimed.job.id)
            .bind(state)
            .bind(next)
            .bind(error)
            .bind(finished)
            .bind(claimed.attempts)
            .execute(&mut *tx)
            .await?;
        if done.rows_affected() != 1 {
            return Ok(false);
        }
        if let Some(audit) = &audit {
            self.append_audit(&mut tx, audit).await?;
        }
        self.commit(tx).await?;
        Ok(true)
    }

    async fn purge_callbacks(&self, before: OffsetDateTime) -> Result<u64, StoreError> {
        let purged = sqlx::query(PURGE_CALLBACKS).bind(before).execute(&mut *self.conn().await?).await?;
        Ok(purged.rows_affected())
    }

    async fn callbacks_for_challenge(
        &self,
        challenge: ChallengeId,
    ) -> Result<Vec<CallbackStatus>, StoreError> {
        let rows = sqlx::query(CALLBACKS_FOR_CHALLENGE)
            .bind(challenge.0)
            .fetch_all(&mut *self.conn().await?)
            .await?;
        rows.iter().map(status_from_row).collect()
    }
}
