//! The audit trail: pending events, chaining and reads.

use std::sync::Arc;

use async_trait::async_trait;
use sqlx::Row;
use tokio::sync::Notify;

use super::SqliteStore;
use crate::audit::chain::{StoredEvent, StoredHead};
use crate::audit::{AuditEvent, Subject};
use crate::store::audit::pending_event_from_row;
use crate::store::audit::stored_event_from_row;
use crate::store::audit::{
    AUDIT_EVENTS_ABOUT, AUDIT_EVENTS_IN_RANGE, AUDIT_HEAD, COUNT_PENDING_EVENTS, MOVE_AUDIT_HEAD,
    OLDEST_PENDING_EVENTS,
};
use crate::store::audit::{DUPLICATE_EVENT_SQL, link_pending};
use crate::store::{AuditStore, StoreError};

#[async_trait]
impl AuditStore for SqliteStore {
    async fn record_audit(&self, audit: AuditEvent) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        self.append_audit(&mut tx, &audit).await?;
        self.commit(tx).await?;
        Ok(())
    }

    fn audit_pending_signal(&self) -> Arc<Notify> {
        Arc::clone(&self.audit_pending)
    }

    async fn chain_pending_audit(&self, limit: u32) -> Result<u64, StoreError> {
        // BEGIN IMMEDIATE: the one writer, so the head and the pending rows hold still.
        let mut tx = self.begin_write().await?;
        let head = sqlx::query("SELECT seq, hash FROM audit_head WHERE id = 1").fetch_one(&mut *tx).await?;
        let rows = sqlx::query(OLDEST_PENDING_EVENTS).bind(i64::from(limit)).fetch_all(&mut *tx).await?;
        if rows.is_empty() {
            return Ok(0);
        }
        let pending = rows.iter().map(pending_event_from_row).collect::<Result<Vec<_>, StoreError>>()?;
        // A pending event whose id is already on the chain is a captured copy: one lookup for
        // the whole batch (the same rows, read in the same write transaction).
        let chained: Vec<(Vec<u8>, i64)> = sqlx::query_as(
            "SELECT e.event_id, e.seq FROM audit_events e
             JOIN (SELECT event_id FROM audit_pending ORDER BY id LIMIT ?1) p ON p.event_id = e.event_id",
        )
        .bind(i64::from(limit))
        .fetch_all(&mut *tx)
        .await?;
        let batch = link_pending(
            &self.sealer,
            head.try_get("seq")?,
            &head.try_get::<Vec<u8>, _>("hash")?,
            &pending,
            &chained,
        )?;
        for (event, p) in batch.events.iter().zip(&pending) {
            sqlx::query(
                "INSERT INTO audit_events (seq, occurred_at, actor, action, subject, details, prev_hash, hash, event_id)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            )
            .bind(event.seq)
            .bind(event.occurred_at_micros)
            .bind(&event.actor)
            .bind(&event.action)
            .bind(&event.subject)
            .bind(&event.details)
            .bind(&event.prev_hash)
            .bind(&event.hash)
            .bind(&event.event_id)
            .execute(&mut *tx)
            .await?;
            sqlx::query("DELETE FROM audit_pending WHERE id = ?1").bind(p.id).execute(&mut *tx).await?;
        }
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
        Ok(sqlx::query_scalar(COUNT_PENDING_EVENTS).fetch_one(&self.pool).await?)
    }

    async fn audit_head(&self) -> Result<StoredHead, StoreError> {
        let row = sqlx::query(AUDIT_HEAD).fetch_optional(&self.pool).await?;
        let row = row.ok_or_else(|| StoreError::Corrupt("the audit head row is missing".into()))?;
        Ok(StoredHead { seq: row.try_get("seq")?, hash: row.try_get("hash")?, mac: row.try_get("mac")? })
    }

    async fn audit_events(&self, after: i64, up_to: i64, limit: u32) -> Result<Vec<StoredEvent>, StoreError> {
        let rows = sqlx::query(AUDIT_EVENTS_IN_RANGE.as_str())
            .bind(after)
            .bind(up_to)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
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
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(stored_event_from_row).collect()
    }

    async fn audit_max_seq(&self) -> Result<i64, StoreError> {
        Ok(sqlx::query_scalar("SELECT COALESCE(MAX(seq), 0) FROM audit_events").fetch_one(&self.pool).await?)
    }

    async fn audit_duplicate_event(&self, up_to: i64) -> Result<Option<(i64, i64)>, StoreError> {
        let row = sqlx::query(DUPLICATE_EVENT_SQL).bind(up_to).fetch_optional(&self.pool).await?;
        row.map(|row| Ok((row.try_get("seq")?, row.try_get("first_seq")?))).transpose()
    }
}
