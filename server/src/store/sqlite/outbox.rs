//! The push outbox.

use async_trait::async_trait;
use sqlx::Row;
use time::OffsetDateTime;

use super::SqliteStore;
use super::codec::{time_at, uuid_at};
use crate::audit::AuditEvent;
use crate::clock::unix_micros;
use crate::ids::{ChallengeId, DeviceId};
use crate::store::{PushJob, PushJobResult, PushOutbox, StoreError, StoredPush};

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
            jobs.push(PushJob {
                id: row.try_get("id")?,
                challenge_id: ChallengeId(uuid_at(&row, "challenge_id")?),
                device_id: DeviceId(uuid_at(&row, "device_id")?),
                attempts: row.try_get("attempts")?,
                push: StoredPush {
                    provider: row.try_get("push_provider")?,
                    token: row.try_get("push_token")?,
                    environment: row.try_get("push_environment")?,
                },
                expires_at: time_at(&row, "expires_at")?,
            });
        }
        self.commit(tx).await?;
        Ok(jobs)
    }

    async fn finish_push_job(
        &self,
        id: i64,
        result: PushJobResult,
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        let (state, next, error) = match result {
            PushJobResult::Sent => ("sent", now, None),
            PushJobResult::Retry { at, error } => ("queued", at, Some(error)),
            PushJobResult::Failed { error } => ("failed", now, Some(error)),
        };
        sqlx::query("UPDATE push_outbox SET state = ?2, next_attempt_at = ?3, last_error = ?4, updated_at = ?5 WHERE id = ?1")
            .bind(id)
            .bind(state)
            .bind(unix_micros(next))
            .bind(error)
            .bind(unix_micros(now))
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn disable_push_token(&self, device: DeviceId, audit: AuditEvent) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        let updated = sqlx::query(
            "UPDATE devices SET push_provider = 'none', push_token = NULL, push_environment = NULL
             WHERE id = ?1 AND push_provider <> 'none'",
        )
        .bind(device.0.to_string())
        .execute(&mut *tx)
        .await?;
        if updated.rows_affected() == 1 {
            self.append_audit(&mut tx, &audit).await?;
        }
        self.commit(tx).await?;
        Ok(())
    }
}
