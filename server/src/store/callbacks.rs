//! The callback outbox: HTTP POSTs owed once a challenge is decided (a CIBA ping to a client's
//! notification endpoint, a Keycloak realm's CIBA callback). A job is enqueued in the same
//! transaction as the request that owes it, becomes due when its challenge leaves `pending`
//! (at once when it has no challenge), is leased to one worker at a time and ends once.

use async_trait::async_trait;
use time::OffsetDateTime;

use super::StoreError;
use super::codec::Columns;
use crate::audit::AuditEvent;
use crate::challenges::model::ChallengeState;
use crate::ids::ChallengeId;

/// What a callback tells, and to whom.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallbackKind {
    /// CIBA Core §10.2: `{"auth_req_id"}` to the client's notification endpoint, with the
    /// client's `client_notification_token` as bearer.
    CibaPing,
    /// Keycloak's HTTP authentication channel: `{"status"}` to the realm's CIBA callback, with
    /// the bearer token Keycloak sent.
    KeycloakOutcome,
}

impl CallbackKind {
    pub fn as_str(self) -> &'static str {
        match self {
            CallbackKind::CibaPing => "ciba_ping",
            CallbackKind::KeycloakOutcome => "keycloak_outcome",
        }
    }

    fn parse(s: &str) -> Result<Self, StoreError> {
        match s {
            "ciba_ping" => Ok(CallbackKind::CibaPing),
            "keycloak_outcome" => Ok(CallbackKind::KeycloakOutcome),
            other => Err(StoreError::Corrupt(format!("callback kind `{other}`"))),
        }
    }
}

/// A callback to enqueue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallbackJob {
    pub id: uuid::Uuid,
    pub kind: CallbackKind,
    /// The challenge whose decision it reports; `None` when the outcome was known when the job
    /// was made (a request refused at once), so it is due at once.
    pub challenge_id: Option<ChallengeId>,
    pub url: String,
    /// The bearer credential and body parts, sealed under the master key
    /// (`crate::callbacks::seal`).
    pub sealed: Vec<u8>,
    pub created_at: OffsetDateTime,
    /// Not sent before this (a request nobody was prompted for is reported when a prompt would
    /// have ended unanswered).
    pub not_before: OffsetDateTime,
    /// Not sent at or after this: the request it reports on is over.
    pub expires_at: OffsetDateTime,
}

/// A due job, leased to this worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimedCallback {
    pub job: CallbackJob,
    /// This claim's number: finishing is refused once another claim took over.
    pub attempts: i32,
    /// The challenge's state when claimed (`None` without a challenge).
    pub challenge_state: Option<ChallengeState>,
}

/// How a claimed job ends, or when it is tried again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallbackResult {
    Delivered,
    Retry {
        at: OffsetDateTime,
        error: String,
    },
    /// Gave up: refused by the receiver, or the request is over.
    Failed {
        error: String,
    },
}

impl CallbackResult {
    /// The job's new `state`, `next_attempt_at`, `last_error` and `finished_at`.
    pub(super) fn columns(
        self,
        now: OffsetDateTime,
    ) -> (&'static str, OffsetDateTime, Option<String>, Option<OffsetDateTime>) {
        match self {
            CallbackResult::Delivered => ("delivered", now, None, Some(now)),
            CallbackResult::Retry { at, error } => ("queued", at, Some(error), None),
            CallbackResult::Failed { error } => ("failed", now, Some(error), Some(now)),
        }
    }
}

/// A job's state as the store keeps it (for tests and the operator).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallbackStatus {
    pub id: uuid::Uuid,
    pub kind: CallbackKind,
    pub state: String,
    pub attempts: i32,
    pub last_error: Option<String>,
}

#[async_trait]
pub trait CallbackStore: Send + Sync + std::fmt::Debug {
    /// Leases due jobs for `lease`: queued, their time come, their challenge decided.
    async fn claim_callbacks(
        &self,
        now: OffsetDateTime,
        lease: time::Duration,
        limit: u32,
    ) -> Result<Vec<ClaimedCallback>, StoreError>;

    /// Ends or reschedules a claimed job, with its audit event. `Ok(false)`, and nothing
    /// changed, if the claim is no longer current (its lease ran out and another worker
    /// claimed the job).
    async fn finish_callback(
        &self,
        claimed: &ClaimedCallback,
        result: CallbackResult,
        now: OffsetDateTime,
        audit: Option<AuditEvent>,
    ) -> Result<bool, StoreError>;

    /// Deletes ended jobs whose request ended before `before`.
    async fn purge_callbacks(&self, before: OffsetDateTime) -> Result<u64, StoreError>;

    /// The jobs reporting on `challenge`, oldest first.
    async fn callbacks_for_challenge(
        &self,
        challenge: ChallengeId,
    ) -> Result<Vec<CallbackStatus>, StoreError>;
}

pub(super) fn claimed_from_row<R: Columns>(row: &R) -> Result<ClaimedCallback, StoreError> {
    let state: Option<String> = row.value("challenge_state")?;
    let challenge_state =
        state.map(|s| s.parse::<ChallengeState>().map_err(StoreError::Corrupt)).transpose()?;
    Ok(ClaimedCallback {
        job: CallbackJob {
            id: row.id("id")?,
            kind: CallbackKind::parse(&row.value::<String>("kind")?)?,
            challenge_id: row.optional_id("challenge_id")?.map(ChallengeId),
            url: row.value("url")?,
            sealed: row.value("sealed")?,
            created_at: row.time("created_at")?,
            not_before: row.time("not_before")?,
            expires_at: row.time("expires_at")?,
        },
        attempts: row.value("attempts")?,
        challenge_state,
    })
}

pub(super) fn status_from_row<R: Columns>(row: &R) -> Result<CallbackStatus, StoreError> {
    Ok(CallbackStatus {
        id: row.id("id")?,
        kind: CallbackKind::parse(&row.value::<String>("kind")?)?,
        state: row.value("state")?,
        attempts: row.value("attempts")?,
        last_error: row.value("last_error")?,
    })
}

// Portable statements: the same text on both engines.

pub(super) const INSERT_CALLBACK: &str = "INSERT INTO callbacks
     (id, kind, challenge_id, url, sealed, created_at, expires_at, not_before, next_attempt_at)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8)";

/// Due: queued, its time come, its challenge no longer pending (or none).
pub(super) const DUE_CALLBACKS: &str =
    "SELECT cb.id FROM callbacks cb LEFT JOIN challenges c ON c.id = cb.challenge_id
     WHERE cb.state = 'queued' AND cb.next_attempt_at <= $1
       AND (cb.challenge_id IS NULL OR c.state <> 'pending')
     ORDER BY cb.next_attempt_at LIMIT $3";

pub(super) const CLAIMED_COLUMNS: &str = "cb.id, cb.kind, cb.challenge_id, cb.url, cb.sealed, cb.created_at, \
     cb.not_before, cb.expires_at, cb.attempts, c.state AS challenge_state";

/// Only the claim that is still current: a worker whose lease ran out cannot end or re-queue
/// a job another worker claimed since.
pub(super) const FINISH_CALLBACK: &str =
    "UPDATE callbacks SET state = $2, next_attempt_at = $3, last_error = $4, finished_at = $5
     WHERE id = $1 AND attempts = $6 AND state = 'queued'";

pub(super) const CALLBACKS_FOR_CHALLENGE: &str =
    "SELECT id, kind, state, attempts, last_error FROM callbacks WHERE challenge_id = $1
     ORDER BY created_at, id";

pub(super) const PURGE_CALLBACKS: &str = "DELETE FROM callbacks WHERE expires_at < $1 AND state <> 'queued'";
