//! The run-time fatigue policy.

use async_trait::async_trait;
use sqlx::Connection;
use time::OffsetDateTime;

use super::PgStore;
use super::alerts::insert_alert;
use crate::alerts::AlertKind;
use crate::audit::{AuditEvent, Subject};
use crate::ids::AdminRequestId;
use crate::store::StoreError;
use crate::store::fatigue_policy::{FatiguePolicyStore, READ, StoredPolicy, WRITE, policy_from_row};

#[async_trait]
impl FatiguePolicyStore for PgStore {
    async fn fatigue_policy(&self) -> Result<Option<StoredPolicy>, StoreError> {
        let row = sqlx::query(READ).fetch_optional(&mut *self.conn().await?).await?;
        let Some(row) = row else { return Ok(None) };
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
        let mut conn = self.conn().await?;
        let mut tx = conn.begin().await?;
        let version: i64 =
            sqlx::query_scalar(WRITE).bind(settings).bind(request.0).bind(at).fetch_one(&mut *tx).await?;
        let subject = Subject::AdminRequest(request);
        insert_alert(&mut tx, AlertKind::FatiguePolicyChanged, &subject, alert_details, at).await?;
        self.append_audit(&mut tx, &audit).await?;
        self.commit(tx).await?;
        Ok(version)
    }
}
