//! Help-desk caller verifications: which agent started which verification push for whom.

use async_trait::async_trait;
use time::OffsetDateTime;

use super::StoreError;
use super::codec::Columns;
use crate::audit::AuditEvent;
use crate::ids::{AdminId, ChallengeId, UserId};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallerVerification {
    /// The number-matching challenge sent to the caller's phone.
    pub challenge_id: ChallengeId,
    /// The agent who started it (and the only one who may act on it).
    pub admin_id: AdminId,
    pub user_id: UserId,
    pub created_at: OffsetDateTime,
}

#[async_trait]
pub trait HelpDeskStore: Send + Sync + std::fmt::Debug {
    /// Records a verification with its audit event.
    async fn record_caller_verification(
        &self,
        verification: &CallerVerification,
        audit: AuditEvent,
    ) -> Result<(), StoreError>;

    async fn caller_verification(
        &self,
        challenge: ChallengeId,
    ) -> Result<Option<CallerVerification>, StoreError>;
}

pub(super) const INSERT: &str =
    "INSERT INTO caller_verifications (challenge_id, admin_id, user_id, created_at) VALUES ($1, $2, $3, $4)";
pub(super) const BY_CHALLENGE: &str =
    "SELECT challenge_id, admin_id, user_id, created_at FROM caller_verifications WHERE challenge_id = $1";

pub(super) fn from_row<R: Columns>(row: &R) -> Result<CallerVerification, StoreError> {
    Ok(CallerVerification {
        challenge_id: ChallengeId(row.id("challenge_id")?),
        admin_id: AdminId(row.id("admin_id")?),
        user_id: UserId(row.id("user_id")?),
        created_at: row.time("created_at")?,
    })
}
