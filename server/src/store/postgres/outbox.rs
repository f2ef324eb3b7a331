//! The push outbox.

use async_trait::async_trait;
use sqlx::Connection;
use time::OffsetDateTime;

use super::PgStore;
use crate::audit::AuditEvent;
use crate::ids::DeviceId;
use crate::store::outbox::push_job_from_row;
use crate::store::outbox::{DISABLE_PUSH_TOKEN, FINISH_PUSH_JOB};
use crate::store::{PushJob, PushJobResult, PushOutbox, StoreError};

#[async_trait]
impl PushOutbox for PgStore {
    async fn claim_push_jobs(
        &self,
        now: OffsetDateTime,
        lease: time::Duration,
        limit: u32,
    ) -> Result<Vec<PushJob>, StoreError> {
        let rows = sqlx::query(
            "WITH claimed AS (
                 UPDATE push_outbox SET next_attempt_at = $2, attempts = attempts + 1, updated_at = $1
                 WHERE id IN (SELECT id FROM push_outbox WHERE state = 'queued' AND next_attempt_at <= $1
                              ORDER BY next_attempt_at LIMIT $3 FOR UPDATE SKIP LOCKED)
                 RETURNING id, challenge_id, device_id, attempts)
             SELECT claimed.id, claimed.challenge_id, claimed.device_id, claimed.attempts,
                    d.push_provider, d.push_token, d.push_environment, c.expires_at
             FROM claimed JOIN devices d ON d.id = claimed.device_id JOIN challenges c ON c.id = claimed.challenge_id",
        )
        .bind(now)
        .bind(now + lease)
        .bind(i64::from(limit))
        .fetch_all(&mut *self.conn().await?)
        .await?;
        rows.iter().map(push_job_from_row).collect()
    }

    async fn finish_push_job(
        &self,
        job: &PushJob,
        result: PushJobResult,
        now: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        let (state, next, error) = result.columns(now);
        let finished = sqlx::query(FINISH_PUSH_JOB)
            .bind(job.id)
            .bind(state)
            .bind(next)
            .bind(error)
            .bind(now)
            .bind(job.attempts)
            .execute(&mut *self.conn().await?)
            .await?;
        Ok(finished.rows_affected() == 1)
    }

    async fn disable_push_token(&self, device: DeviceId, audit: AuditEvent) -> Result<(), StoreError> {
        let mut conn = self.conn().await?;
        let mut tx = conn.begin().await?;
        let updated = sqlx::query(DISABLE_PUSH_TOKEN).bind(device.0).execute(&mut *tx).await?;
        if updated.rows_affected() == 1 {
            self.append_audit(&mut tx, &audit).await?;
        }
        self.commit(tx).await?;
        Ok(())
    }
}
