//! Security alerts and the webhook cursor.

use async_trait::async_trait;
use sqlx::SqliteConnection;
use time::OffsetDateTime;

use super::SqliteStore;
use crate::alerts::AlertKind;
use crate::audit::Subject;
use crate::clock::unix_micros;
use crate::store::alerts::alert_cursor_from_row;
use crate::store::alerts::alert_from_row;
use crate::store::alerts::{
    ALERT_DELIVERED, ALERT_RETRY_LATER, INSERT_ALERT, LEASE_ALERT_CURSOR, NEXT_ALERT,
};
use crate::store::{AlertCursor, AlertRecord, AlertStore, StoreError};

pub(super) async fn insert_alert(
    conn: &mut SqliteConnection,
    kind: AlertKind,
    subject: &Subject,
    details: &str,
    now: OffsetDateTime,
) -> Result<(), StoreError> {
    sqlx::query(INSERT_ALERT)
        .bind(kind.as_str())
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
        kind: AlertKind,
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
        let row = sqlx::query(LEASE_ALERT_CURSOR)
            .bind(unix_micros(now))
            .bind(unix_micros(now + lease))
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(alert_cursor_from_row).transpose()
    }

    async fn next_alert(&self, after: i64) -> Result<Option<AlertRecord>, StoreError> {
        let row = sqlx::query(NEXT_ALERT).bind(after).fetch_optional(&self.pool).await?;
        row.as_ref().map(alert_from_row).transpose()
    }

    async fn release_alert_cursor(
        &self,
        lease: &AlertCursor,
        delivered: Option<i64>,
        retry_at: Option<OffsetDateTime>,
        error: Option<String>,
    ) -> Result<bool, StoreError> {
        let released = match delivered {
            Some(id) => {
                sqlx::query(ALERT_DELIVERED)
                    .bind(id)
                    .bind(unix_micros(lease.lease_until))
                    .execute(&self.pool)
                    .await?
            }
            None => {
                sqlx::query(ALERT_RETRY_LATER)
                    .bind(retry_at.map(unix_micros))
                    .bind(error)
                    .bind(unix_micros(lease.lease_until))
                    .execute(&self.pool)
                    .await?
            }
        };
        Ok(released.rows_affected() == 1)
    }
}
