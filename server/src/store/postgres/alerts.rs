//! Security alerts and the webhook cursor.

use async_trait::async_trait;
use sqlx::PgConnection;
use time::OffsetDateTime;

use super::PgStore;
use crate::alerts::AlertKind;
use crate::audit::Subject;
use crate::store::alerts::alert_cursor_from_row;
use crate::store::alerts::alert_from_row;
use crate::store::alerts::{
    ALERT_DELIVERED, ALERT_RETRY_LATER, INSERT_ALERT, LEASE_ALERT_CURSOR, NEXT_ALERT,
};
use crate::store::{AlertCursor, AlertRecord, AlertStore, StoreError};

pub(super) async fn insert_alert(
    conn: &mut PgConnection,
    kind: AlertKind,
    subject: &Subject,
    details: &str,
    now: OffsetDateTime,
) -> Result<(), StoreError> {
    sqlx::query(INSERT_ALERT)
        .bind(kind.as_str())
        .bind(subject.to_string())
        .bind(details)
        .bind(now)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

#[async_trait]
impl AlertStore for PgStore {
    async fn raise_alert(
        &self,
        kind: AlertKind,
        subject: &Subject,
        details: &str,
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        let mut conn = self.conn().await?;
        insert_alert(&mut conn, kind, subject, details, now).await
    }

    async fn lease_alert_cursor(
        &self,
        now: OffsetDateTime,
        lease: time::Duration,
    ) -> Result<Option<AlertCursor>, StoreError> {
        let row = sqlx::query(LEASE_ALERT_CURSOR)
            .bind(now)
            .bind(now + lease)
            .fetch_optional(&mut *self.conn().await?)
            .await?;
        row.as_ref().map(alert_cursor_from_row).transpose()
    }

    async fn next_alert(&self, after: i64) -> Result<Option<AlertRecord>, StoreError> {
        let row = sqlx::query(NEXT_ALERT).bind(after).fetch_optional(&mut *self.conn().await?).await?;
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
                    .bind(lease.lease_until)
                    .execute(&mut *self.conn().await?)
                    .await?
            }
            None => {
                sqlx::query(ALERT_RETRY_LATER)
                    .bind(retry_at)
                    .bind(error)
                    .bind(lease.lease_until)
                    .execute(&mut *self.conn().await?)
                    .await?
            }
        };
        Ok(released.rows_affected() == 1)
    }
}
