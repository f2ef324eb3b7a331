//! The run-time fatigue policy.

use async_trait::async_trait;
use sqlx::Row;
use time::OffsetDateTime;

use super::SqliteStore;
use super::alerts::insert_alert;
use crate::alerts::AlertKind;
use crate::audit::{AuditEvent, Subject};
use crate::clock::unix_micros;
use crate::ids::AdminRequestId;
use crate::store::StoreError;
use crate::store::codec::Columns;
use crate::store::fatigue_policy::{FatiguePolicyStore, READ, StoredPolicy, WRITE};

#[async_trait]
impl FatiguePolicyStore for SqliteStore {
    async fn fatigue_policy(&self) -> Result<Option<StoredPolicy>, StoreError> {
        let Some(row) = sqlx::query(READ).fetch_optional(&self.pool).await? else { return Ok(None) };
        Ok(Some(StoredPolicy {
            version: row.try_get("version")?,
            settings: row.try_get("settings")?,
            changed_by_request: AdminRequestId(row.id("changed_by_request")?),
            changed_at: row.time("changed_at")?,
        }))
    }

    async fn set_fatigue_policy(
        &self,
        settings: &str,
        request: AdminRequestId,
        at: OffsetDateTime,
        audit: AuditEvent,
        alert_details: &str,
    ) -> Result<i64, StoreError> {
        let mut tx = self.begin_write().await?;
        let version: i64 = sqlx::query_scalar(WRITE)
            .bind(settings)
            .bind(request.0.to_string())
            .bind(unix_micros(at))
            .fetch_one(&mut *tx)
            .await?;
        let subject = Subject::AdminRequest(request);
        insert_alert(&mut tx, AlertKind::FatiguePolicyChanged, &subject, alert_details, at).await?;
        self.append_audit(&mut tx, &audit).await?;
        self.commit(tx).await?;
        Ok(version)
    }
}
