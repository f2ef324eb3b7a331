//! The push outbox.

use async_trait::async_trait;
use time::OffsetDateTime;

use super::SqliteStore;
use crate::audit::AuditEvent;
use crate::clock::unix_micros;
use crate::ids::DeviceId;
use crate::store::outbox::push_job_from_row;
use crate::store::outbox::{DISABLE_PUSH_TOKEN, FINISH_PUSH_JOB};
use crate::store::{PushJob, PushJobResult, PushOutbox, StoreError};

#[async_trait]
impl PushOutbox for SqliteStore {
    async fn claim_push_jobs(
        &self,
        now: OffsetDateTime,
        lease: time::Duration,
        limit: u32,
    ) -> Result<Vec<PushJob>, StoreError> {
        let mut tx = self.begin_write().await?;
        let ids: Vec<i64> = sqlx::query_scalar(
            "UPDATE push_outbox SET next_attempt_at = ?2, attempts = attempts + 1, updated_at = ?1
             WHERE id IN (SELECT id FROM push_outbox WHERE state = 'queued' AND next_attempt_at <= ?1
                          ORDER BY next_attempt_at LIMIT ?3)
             RETURNING id",
        )
        .bind(unix_micros(now))
        .bind(unix_micros(now + lease))
        .bind(i64::from(limit))
        .fetch_all(&mut *tx)
        .await?;
        let mut jobs = Vec::with_capacity(ids.len());
        for id in ids {
            let row = sqlx::query(
                "SELECT o.id, o.challenge_id, o.device_id, o.attempts, d.push_provider, d.push_token,
                        d.push_environment, c.expires_at
                 FROM push_outbox o JOIN devices d ON d.id = o.device_id JOIN challenges c ON c.id = o.challenge_id
                 WHERE o.id = ?1",
            )
            .bind(id)
            .fetch_one(&mut *tx)
            .await?;
            jobs.push(push_job_from_row(&row)?);
        }
        self.commit(tx).await?;
        Ok(jobs)
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
            .bind(unix_micros(next))
            .bind(error)
            .bind(unix_micros(now))
            .bind(job.attempts)
            .execute(&self.pool)
            .await?;
        Ok(finished.rows_affected() == 1)
    }

    async fn disable_push_token(&self, device: DeviceId, audit: AuditEvent) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        let updated = sqlx::query(DISABLE_PUSH_TOKEN).bind(device.0.to_string()).execute(&mut *tx).await?;
        if updated.rows_affected() == 1 {
            self.append_audit(&mut tx, &audit).await?;
        }
        self.commit(tx).await?;
        Ok(())
    }
}
