//! Security alerts queued for the webhook, and its delivery cursor.

use async_trait::async_trait;
use time::OffsetDateTime;

use super::StoreError;
use super::codec::Columns;
use crate::alerts::AlertKind;
use crate::audit::Subject;

/// A security alert, as queued for the webhook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlertRecord {
    pub id: i64,
    pub kind: String,
    pub subject: String,
    pub details: String,
    pub created_at: OffsetDateTime,
}

/// The webhook delivery cursor, leased by one worker at a time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AlertCursor {
    pub last_delivered: i64,
    pub attempts: i32,
    /// The end of this lease, as stored: it identifies the lease when it is released, so a
    /// worker whose lease ran out (and was taken over) cannot move the cursor.
    pub lease_until: OffsetDateTime,
}

pub(super) fn alert_from_row<R: Columns>(row: &R) -> Result<AlertRecord, StoreError> {
    Ok(AlertRecord {
        id: row.value("id")?,
        kind: row.value("kind")?,
        subject: row.value("subject")?,
        details: row.value("details")?,
        created_at: row.time("created_at")?,
    })
}

pub(super) fn alert_cursor_from_row<R: Columns>(row: &R) -> Result<AlertCursor, StoreError> {
    Ok(AlertCursor {
        last_delivered: row.value("last_delivered")?,
        attempts: row.value("attempts")?,
        lease_until: row.time("lease_until")?,
    })
}

// Portable statements: the same text on both engines.

pub(super) const INSERT_ALERT: &str =
    "INSERT INTO alerts (kind, subject, details, created_at) VALUES ($1, $2, $3, $4)";

pub(super) const LEASE_ALERT_CURSOR: &str = "UPDATE alert_cursor SET lease_until = $2
     WHERE id = 1 AND (lease_until IS NULL OR lease_until < $1) AND (next_attempt_at IS NULL OR next_attempt_at <= $1)
     RETURNING last_delivered, attempts, lease_until";

pub(super) const NEXT_ALERT: &str =
    "SELECT id, kind, subject, details, created_at FROM alerts WHERE id > $1 ORDER BY id LIMIT 1";

pub(super) const ALERT_DELIVERED: &str = "UPDATE alert_cursor SET last_delivered = $1, attempts = 0, next_attempt_at = NULL, lease_until = NULL, last_error = NULL WHERE id = 1 AND lease_until = $2";

pub(super) const ALERT_RETRY_LATER: &str = "UPDATE alert_cursor SET attempts = attempts + 1, next_attempt_at = $1, lease_until = NULL, last_error = $2 WHERE id = 1 AND lease_until = $3";

#[async_trait]
pub trait AlertStore: Send + Sync + std::fmt::Debug {
    /// Queues an alert that no state change carries (e.g. a throttled spraying source).
    async fn raise_alert(
        &self,
        kind: AlertKind,
        subject: &Subject,
        details: &str,
        now: OffsetDateTime,
    ) -> Result<(), StoreError>;

    /// Leases the webhook cursor if it is free and due; `None` if another worker holds it or a
    /// retry is not due yet.
    async fn lease_alert_cursor(
        &self,
        now: OffsetDateTime,
        lease: time::Duration,
    ) -> Result<Option<AlertCursor>, StoreError>;

    async fn next_alert(&self, after: i64) -> Result<Option<AlertRecord>, StoreError>;

    /// Releases `lease`: `delivered` moves the cursor on; otherwise a retry at `retry_at`.
    /// `Ok(false)`, and nothing changed, if the lease is no longer this one (it ran out and
    /// another worker took the cursor over).
    async fn release_alert_cursor(
        &self,
        lease: &AlertCursor,
        delivered: Option<i64>,
        retry_at: Option<OffsetDateTime>,
        error: Option<String>,
    ) -> Result<bool, StoreError>;
}
