//! Security alerts and the webhook cursor.

use async_trait::async_trait;
use sqlx::{Row, SqliteConnection};
use time::OffsetDateTime;

use super::SqliteStore;
use super::codec::time_at;
use crate::audit::Subject;
use crate::clock::unix_micros;
use crate::store::{AlertCursor, AlertRecord, AlertStore, StoreError};

pub(super) async fn insert_alert(
    conn: &mut SqliteConnection,
    kind: &str,
    subject: &Subject,
    details: &str,
    now: OffsetDateTime,
) -> Result<(), StoreError> {
    sqlx::query("INSERT INTO alerts (kind, subject, details, created_at) VALUES (?1, ?2, ?3, ?4)")
        .bind(kind)
        .bind(subject.to_string())
        .bind(details)
        .bind(unix_micros(now))
        .execute(&mut *conn)
        .await?;
    Ok(())
}

#[async_trait]
impl AlertStore for SqliteStore {
    async fn raise_alert(
        &self,
        kind: &str,
        subject: &Subject,
        details: &str,
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        let mut conn = self.pool.acquire().await?;
        insert_alert(&mut conn, kind, subject, details, now).await
    }

    async fn lease_alert_cursor(
        &self,
        now: OffsetDateTime,
        lease: time::Duration,
    ) -> Result<Option<AlertCursor>, StoreError> {
        let row = sqlx::query(
            "UPDATE alert_cursor SET lease_until = ?2
             WHERE id = 1 AND (lease_until IS NULL OR lease_until < ?1) AND (next_attempt_at IS NULL OR next_attempt_at <= ?1)
             RETURNING last_delivered, attempts",
        )
        .bind(unix_micros(now))
        .bind(unix_micros(now + lease))
        .fetch_optional(&self.pool)
        .await?;
        row.map(|row| {
            Ok(AlertCursor {
                last_delivered: row.try_get("last_delivered")?,
                attempts: row.try_get("attempts")?,
            })
        })
        .transpose()
    }

    async fn next_alert(&self, after: i64) -> Result<Option<AlertRecord>, StoreError> {
        let row = sqlx::query(
            "SELECT id, kind, subject, details, created_at FROM alerts WHERE id > ?1 ORDER BY id LIMIT 1",
        )
        .bind(after)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|row| {
            Ok(AlertRecord {
                id: row.try_get("id")?,
                kind: row.try_get("kind")?,
                subject: row.try_get("subject")?,
                details: row.try_get("details")?,
                created_at: time_at(&row, "created_at")?,
            })
        })
        .transpose()
    }

    async fn release_alert_cursor(
        &self,
        delivered: Option<i64>,
        retry_at: Option<OffsetDateTime>,
        error: Option<String>,
    ) -> Result<(), StoreError> {
        match delivered {
            Some(id) => sqlx::query(
                "UPDATE alert_cursor SET last_delivered = ?1, attempts = 0, next_attempt_at = NULL, lease_until = NULL, last_error = NULL WHERE id = 1",
            )
            .bind(id)
            .execute(&self.pool)
            .await?,
            None => sqlx::query(
                "UPDATE alert_cursor SET attempts = attempts + 1, next_attempt_at = ?1, lease_until = NULL, last_error = ?2 WHERE id = 1",
            )
            .bind(retry_at.map(unix_micros))
            .bind(error)
            .execute(&self.pool)
            .await?,
        };
        Ok(())
    }
}
