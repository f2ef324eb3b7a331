//! The callback outbox.

use async_trait::async_trait;
use sqlx::SqliteConnection;
use time::OffsetDateTime;

use super::SqliteStore;
use crate::audit::AuditEvent;
use crate::clock::unix_micros;
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
        "UPDATE callbacks SET next_attempt_at = $2, attempts = attempts + 1
         WHERE id IN ({DUE_CALLBACKS}) RETURNING id"
    )
});
static CLAIMED: Sql = Sql::new(|| {
    format!(
        "SELECT {CLAIMED_COLUMNS} FROM callbacks cb LEFT JOIN challenges c ON c.id = cb.challenge_id
         WHERE cb.id = $1"
    )
});

/// Enqueues `job` in the caller's transaction (with the request that owes it).
pub(in crate::store) async fn insert(
    conn: &mut SqliteConnection,
    job: &CallbackJob,
) -> Result<(), StoreError> {
    sqlx::query(INSERT_CALLBACK)
        .bind(job.id.to_string())
        .bind(job.kind.as_str())
        .bind(job.challenge_id.map(|c| c.0.to_string()))
        .bind(&job.url)
        .bind(&job.sealed)
        .bind(unix_micros(job.created_at))
        .bind(unix_micros(job.expires_at))
        .bind(unix_micros(job.not_before))
        .execute(conn)
        .await?;
    Ok(())
}

#[async_trait]
impl CallbackStore for SqliteStore {
    async fn claim_callbacks(
        &self,
        now: OffsetDateTime,
        lease: time::Duration,
        limit: u32,
    ) -> Result<Vec<ClaimedCallback>, StoreError> {
        // Most rounds find nothing: look first, without the write lock every prompt needs.
        let due: Option<String> = sqlx::query_scalar(DUE_CALLBACKS)
            .bind(unix_micros(now))
            .bind(unix_micros(now + lease))
            .bind(1_i64)
            .fetch_optional(&self.pool)
            .await?;
        if due.is_none() {
            return Ok(Vec::new());
        }
        let mut tx = self.begin_write().await?;
        let ids: Vec<String> = sqlx::query_scalar(CLAIM.as_str())
            .bind(unix_micros(now))
            .bind(unix_micros(now + lease))
            .bind(i64::from(limit))
            .fetch_all(&mut *tx)
            .await?;
        let mut claimed = Vec::with_capacity(ids.len());
        for id in ids {
            let row = sqlx::query(CLAIMED.as_str()).bind(id).fetch_one(&mut *tx).await?;
            claimed.push(claimed_from_row(&row)?);
        }
        self.commit(tx).await?;
        Ok(claimed)
    }

    async fn finish_callback(
        &self,
        claimed: &ClaimedCallback,
        result: CallbackResult,
        now: OffsetDateTime,
        audit: Option<AuditEvent>,
    ) -> Result<bool, StoreError> {
        let (state, next, error, finished) = result.columns(now);
        let mut tx = self.begin_write().await?;
        let done = sqlx::query(FINISH_CALLBACK)
            .bind(claimed.job.id.to_string())
            .bind(state)
            .bind(unix_micros(next))
            .bind(error)
            .bind(finished.map(unix_micros))
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
        let purged = sqlx::query(PURGE_CALLBACKS).bind(unix_micros(before)).execute(&self.pool).await?;
        Ok(purged.rows_affected())
    }

    async fn callbacks_for_challenge(
        &self,
        challenge: ChallengeId,
    ) -> Result<Vec<CallbackStatus>, StoreError> {
        let rows =
            sqlx::query(CALLBACKS_FOR_CHALLENGE).bind(challenge.0.to_string()).fetch_all(&self.pool).await?;
        rows.iter().map(status_from_row).collect()
    }
}
