//! The push outbox: leased delivery jobs and dead push tokens.

use async_trait::async_trait;
use time::OffsetDateTime;

use super::codec::Columns;
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

pub(super) fn push_job_from_row<R: Columns>(row: &R) -> Result<PushJob, StoreError> {
    Ok(PushJob {
        id: row.value("id")?,
        challenge_id: ChallengeId(row.id("challenge_id")?),
        device_id: DeviceId(row.id("device_id")?),
        attempts: row.value("attempts")?,
        push: StoredPush {
            provider: row.value("push_provider")?,
            token: row.value("push_token")?,
            environment: row.value("push_environment")?,
        },
        expires_at: row.time("expires_at")?,
    })
}

// Portable statements: the same text on both engines.

/// Only the claim that is still current: a worker whose lease ran out (the job was claimed
/// again, so `attempts` moved on) cannot re-queue a job another worker has sent.
pub(super) const FINISH_PUSH_JOB: &str =
    "UPDATE push_outbox SET state = $2, next_attempt_at = $3, last_error = $4, updated_at = $5
     WHERE id = $1 AND attempts = $6 AND state = 'queued'";

pub(super) const DISABLE_PUSH_TOKEN: &str =
    "UPDATE devices SET push_provider = 'none', push_token = NULL, push_environment = NULL
     WHERE id = $1 AND push_provider <> 'none'";

impl PushJobResult {
    /// The job's new `state`, `next_attempt_at` and `last_error`.
    pub(super) fn columns(self, now: OffsetDateTime) -> (&'static str, OffsetDateTime, Option<String>) {
        match self {
            PushJobResult::Sent => ("sent", now, None),
            PushJobResult::Retry { at, error } => ("queued", at, Some(error)),
            PushJobResult::Failed { error } => ("failed", now, Some(error)),
        }
    }
}

#[async_trait]
pub trait PushOutbox: Send + Sync + std::fmt::Debug {
    /// Leases due push jobs for `lease` (another worker takes them over if this one dies).
    async fn claim_push_jobs(
        &self,
        now: OffsetDateTime,
        lease: time::Duration,
        limit: u32,
    ) -> Result<Vec<PushJob>, StoreError>;

    /// Ends or reschedules the claimed `job`. `Ok(false)`, and nothing changed, if the claim
    /// is no longer current (its lease ran out and another worker claimed the job).
    async fn finish_push_job(
        &self,
        job: &PushJob,
        result: PushJobResult,
        now: OffsetDateTime,
    ) -> Result<bool, StoreError>;

    /// The provider says this token is dead: the device falls back to pulling.
    async fn disable_push_token(&self, device: DeviceId, audit: AuditEvent) -> Result<(), StoreError>;
}
