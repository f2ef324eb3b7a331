//! The audit trail: pending events, chaining and reads.

use std::sync::Arc;

use async_trait::async_trait;
use sqlx::{Connection, Row};
use tokio::sync::Notify;

use super::PgStore;
use crate::audit::chain::{StoredEvent, StoredHead};
use crate::audit::{AuditEvent, Subject};
use crate::store::audit::pending_event_from_row;
use crate::store::audit::stored_event_from_row;
use crate::store::audit::{
    AUDIT_EVENTS_ABOUT, AUDIT_EVENTS_IN_RANGE, AUDIT_HEAD, COUNT_PENDING_EVENTS, MOVE_AUDIT_HEAD,
    OLDEST_PENDING_EVENTS,
};
use crate::store::audit::{DUPLICATE_EVENT_SQL, link_pending};
use crate::store::codec::micros_to_time;
use crate::store::{AuditStore, StoreError};

#[async_trait]
impl AuditStore for PgStore {
    async fn record_audit(&self, audit: AuditEvent) -> Result<(), StoreError> {
        let mut conn = self.conn().await?;
        let mut tx = conn.begin().await?;
        self.append_audit(&mut tx, &audit).await?;
        self.commit(tx).await?;
        Ok(())
    }

    fn audit_pending_signal(&self) -> Arc<Notify> {
        Arc::clone(&self.audit_pending)
    }

    async fn chain_pending_audit(&self, limit: u32) -> Result<u64, StoreError> {
        let mut conn = self.conn().await?;
        let mut tx = conn.begin().await?;
        // The head row lock makes chainers (one per instance) take turns.
        let head = sqlx::query("SELECT seq, hash FROM audit_head WHERE id = 1 FOR UPDATE")
            .fetch_one(&mut *tx)
            .await?;
        let rows = sqlx::query(OLDEST_PENDING_EVENTS).bind(i64::from(limit)).fetch_all(&mut *tx).await?;
        if rows.is_empty() {
            return Ok(0);
        }
        let pending = rows.iter().map(pending_event_from_row).collect::<Result<Vec<_>, StoreError>>()?;
        // A pending event whose id is already on the chain is a captured copy (checked here, not
        // left to the unique index, which a database attacker can drop).
        let chained: Vec<(Vec<u8>, i64)> =
            sqlx::query_as("SELECT event_id, seq FROM audit_events WHERE event_id = ANY($1::bytea[])")
                .bind(pending.iter().map(|p| p.event_id.as_slice()).collect::<Vec<_>>())
                .fetch_all(&mut *tx)
                .await?;
        let batch = link_pending(
            &self.sealer,
            head.try_get("seq")?,
            &head.try_get::<Vec<u8>, _>("hash")?,
            &pending,
            &chained,
        )?;
        let times = batch
            .events
            .iter()
            .map(|e| micros_to_time(e.occurred_at_micros, "occurred_at"))
            .collect::<Result<Vec<_>, _>>()?;
        sqlx::query(
            "INSERT INTO audit_events (seq, occurred_at, actor, action, subject, details, prev_hash, hash, event_id)
             SELECT * FROM UNNEST($1::bigint[], $2::timestamptz[], $3::text[], $4::text[], $5::text[],
                                  $6::text[], $7::bytea[], $8::bytea[], $9::bytea[])",
        )
        .bind(batch.events.iter().map(|e| e.seq).collect::<Vec<_>>())
        .bind(times)
        .bind(batch.events.iter().map(|e| e.actor.as_str()).collect::<Vec<_>>())
        .bind(batch.events.iter().map(|e| e.action.as_str()).collect::<Vec<_>>())
        .bind(batch.events.iter().map(|e| e.subject.as_str()).collect::<Vec<_>>())
        .bind(batch.events.iter().map(|e| e.details.as_str()).collect::<Vec<_>>())
        .bind(batch.events.iter().map(|e| e.prev_hash.as_slice()).collect::<Vec<_>>())
        .bind(batch.events.iter().map(|e| e.hash.as_slice()).collect::<Vec<_>>())
        .bind(batch.events.iter().map(|e| e.event_id.as_deref()).collect::<Vec<_>>())
        .execute(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM audit_pending WHERE id = ANY($1)")
            .bind(pending.iter().map(|p| p.id).collect::<Vec<_>>())
            .execute(&mut *tx)
            .await?;
        sqlx::query(MOVE_AUDIT_HEAD)
            .bind(batch.head.seq)
            .bind(&batch.head.hash)
            .bind(&batch.head.mac)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(batch.events.len() as u64)
    }

    async fn audit_pending_count(&self) -> Result<i64, StoreError> {
        Ok(sqlx::query_scalar(COUNT_PENDING_EVENTS).fetch_one(&mut *self.conn().await?).await?)
    }

    async fn audit_head(&self) -> Result<StoredHead, StoreError> {
        let row = sqlx::query(AUDIT_HEAD).fetch_optional(&mut *self.conn().await?).await?;
        let row = row.ok_or_else(|| StoreError::Corrupt("the audit head row is missing".into()))?;
        Ok(StoredHead { seq: row.try_get("seq")?, hash: row.try_get("hash")?, mac: row.try_get("mac")? })
    }

    async fn audit_events(&self, after: i64, up_to: i64, limit: u32) -> Result<Vec<StoredEvent>, StoreError> {
        let rows = sqlx::query(AUDIT_EVENTS_IN_RANGE.as_str())
            .bind(after)
            .bind(up_to)
            .bind(i64::from(limit))
            .fetch_all(&mut *self.conn().await?)
            .await?;
        rows.iter().map(stored_event_from_row).collect()
    }

    async fn audit_events_about(
        &self,
        subject: &Subject,
        action: crate::audit::Action,
        limit: u32,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        let rows = sqlx::query(AUDIT_EVENTS_ABOUT.as_str())
            .bind(subject.to_string())
            .bind(action.as_str())
            .bind(i64::from(limit))
            .fetch_all(&mut *self.conn().await?)
            .await?;
        rows.iter().map(stored_event_from_row).collect()
    }

    async fn audit_max_seq(&self) -> Result<i64, StoreError> {
        Ok(sqlx::query_scalar("SELECT COALESCE(MAX(seq), 0)::BIGINT FROM audit_events")
            .fetch_one(&mut *self.conn().await?)
            .await?)
    }

    async fn audit_duplicate_event(&self, up_to: i64) -> Result<Option<(i64, i64)>, StoreError> {
        let row =
            sqlx::query(DUPLICATE_EVENT_SQL).bind(up_to).fetch_optional(&mut *self.conn().await?).await?;
        row.map(|row| Ok((row.try_get("seq")?, row.try_get("first_seq")?))).transpose()
    }
}
