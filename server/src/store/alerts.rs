//! Security alerts queued for the webhook, and its delivery cursor.

use async_trait::async_trait;
use time::OffsetDateTime;

use super::StoreError;
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
}

#[async_trait]
pub trait AlertStore: Send + Sync {
    /// Queues an alert that no state change carries (e.g. a throttled spraying source).
    async fn raise_alert(
        &self,
        kind: &str,
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

    /// Releases the lease: `delivered` moves the cursor on; otherwise a retry at `retry_at`.
    async fn release_alert_cursor(
        &self,
        delivered: Option<i64>,
        retry_at: Option<OffsetDateTime>,
        error: Option<String>,
    ) -> Result<(), StoreError>;
}
