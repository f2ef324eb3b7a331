//! The push outbox: leased delivery jobs and dead push tokens.

use async_trait::async_trait;
use time::OffsetDateTime;

use super::{StoreError, StoredPush};
use crate::audit::AuditEvent;
use crate::ids::{ChallengeId, DeviceId};

/// A claimed push delivery: where to send what, until when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushJob {
    pub id: i64,
    pub challenge_id: ChallengeId,
    pub device_id: DeviceId,
    pub attempts: i32,
    pub push: StoredPush,
    pub expires_at: OffsetDateTime,
}

/// How a push job ends, or when it is tried again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PushJobResult {
    Sent,
    Retry {
        at: OffsetDateTime,
        error: String,
    },
    /// Gave up: permanent failure, or the challenge is over.
    Failed {
        error: String,
    },
}

#[async_trait]
pub trait PushOutbox: Send + Sync {
    /// Leases due push jobs for `lease` (another worker takes them over if this one dies).
    async fn claim_push_jobs(
        &self,
        now: OffsetDateTime,
        lease: time::Duration,
        limit: u32,
    ) -> Result<Vec<PushJob>, StoreError>;

    async fn finish_push_job(
        &self,
        id: i64,
        result: PushJobResult,
        now: OffsetDateTime,
    ) -> Result<(), StoreError>;

    /// The provider says this token is dead: the device falls back to pulling.
    async fn disable_push_token(&self, device: DeviceId, audit: AuditEvent) -> Result<(), StoreError>;
}
