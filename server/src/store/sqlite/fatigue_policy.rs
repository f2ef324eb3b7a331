//! The run-time fatigue policy.

use async_trait::async_trait;
use time::OffsetDateTime;

use super::SqliteStore;
use super::alerts::insert_alert;
use crate::alerts::AlertKind;
use crate::audit::{AuditEvent, Subject};
use crate::clock::unix_micros;
use crate::ids::AdminRequestId;
use crate::store::StoreError;
use crate::store::fatigue_policy::{FatiguePolicyStore, READ, StoredPolicy, WRITE, policy_from_row};

#[async_trait]
impl FatiguePolicyStore for SqliteStore {
    async fn fatigue_policy(&self) -> Result<Option<StoredPolicy>, StoreError> {
        let Some(row) = sqlx::query(READ).fetch_optional(&self.pool).await? else { return Ok(None) };
        Ok(Some(policy_from_row(&row)?))
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
