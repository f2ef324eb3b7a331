//! The run-time fatigue policy (migration 0024): one row, written by an approved four-eyes
//! request. When it is absent the config file's policy applies.

use async_trait::async_trait;
use time::OffsetDateTime;

use super::StoreError;
use super::codec::Columns;
use crate::audit::AuditEvent;
use crate::ids::AdminRequestId;

/// The stored policy: `settings` is the policy's JSON (`fatigue::model::Policy`), kept as text
/// so the store knows nothing of its fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredPolicy {
    /// Counts the changes (1 after the first).
    pub version: i64,
    pub settings: String,
    pub changed_by_request: AdminRequestId,
    pub changed_at: OffsetDateTime,
}

#[async_trait]
pub trait FatiguePolicyStore: Send + Sync + std::fmt::Debug {
    async fn fatigue_policy(&self) -> Result<Option<StoredPolicy>, StoreError>;

    /// Replaces the policy with `settings`, records `audit` and raises the
    /// `fatigue_policy_changed` alert, in one transaction; returns the new version.
    async fn set_fatigue_policy(
        &self,
        settings: &str,
        request: AdminRequestId,
        at: OffsetDateTime,
        audit: AuditEvent,
        alert_details: &str,
    ) -> Result<i64, StoreError>;
}

pub(super) const READ: &str =
    "SELECT version, settings, changed_by_request, changed_at FROM fatigue_policy WHERE id = 1";
pub(super) const WRITE: &str = "INSERT INTO fatigue_policy (id, version, settings, changed_by_request, changed_at) \
     VALUES (1, 1, $1, $2, $3) ON CONFLICT (id) DO UPDATE SET version = fatigue_policy.version + 1, \
     settings = excluded.settings, changed_by_request = excluded.changed_by_request, \
     changed_at = excluded.changed_at RETURNING version";

/// The stored policy from a `READ` row, alike on both engines.
pub(super) fn policy_from_row<R: Columns>(row: &R) -> Result<StoredPolicy, StoreError> {
    Ok(StoredPolicy {
        version: row.value("version")?,
        settings: row.value("settings")?,
        changed_by_request: AdminRequestId(row.id("changed_by_request")?),
        changed_at: row.time("changed_at")?,
    })
}
