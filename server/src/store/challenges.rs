//! Challenges: creation behind the fatigue gate, device answers, app and timer transitions, and change notifications.

use async_trait::async_trait;
use time::OffsetDateTime;

use super::codec::{Columns, Sql};
use super::{DeviceRecord, StoreError, UserRecord};
use crate::audit::AuditEvent;
use crate::challenges::model::ChallengeState;
use crate::fatigue::model::Policy;
use crate::ids::{AppId, ChallengeId, DeviceId, UserId};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChallengeRecord {
    pub id: ChallengeId,
    pub app_id: AppId,
    pub user_id: UserId,
    pub state: ChallengeState,
    pub number_tag: Vec<u8>,
    pub number_sealed: Vec<u8>,
    /// 2-6 for a push challenge; 0 for a passkey sign-in, which has no number and no push.
    pub number_digits: i16,
    pub server_nonce: Vec<u8>,
    pub app_name: String,
    pub ip: String,
    pub user_agent: String,
    pub location: Option<String>,
    pub created_at: OffsetDateTime,
    pub expires_at: OffsetDateTime,
    pub decided_at: Option<OffsetDateTime>,
    pub decided_by_device: Option<DeviceId>,
    pub redeemed_at: Option<OffsetDateTime>,
    pub idempotency_key: Option<String>,
    pub request_hash: Option<Vec<u8>>,
    pub is_silent: bool,
    /// The client network the prompt came from (for spray detection).
    pub source_prefix: Option<String>,
}

impl ChallengeRecord {
    /// A number-matching push prompt (not a passkey sign-in): only these move the push ladder,
    /// count against the push budget, supersede each other, and reach phones.
    pub fn is_push(&self) -> bool {
        self.number_digits > 0
    }
}

/// `… AND PUSH_ONLY`: the rows of push prompts (see [`ChallengeRecord::is_push`]).
pub(super) const PUSH_ONLY: &str = "number_digits > 0";

/// Whom a new prompt is for: the user, their active devices, their recent number tags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PromptTarget {
    pub user: UserRecord,
    pub devices: Vec<DeviceRecord>,
    pub recent_tags: Vec<Vec<u8>>,
}

/// A device's verified answer, to apply by compare-and-set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeviceDecision {
    pub challenge: ChallengeId,
    /// The challenge's user, who owns `device` (checked before deciding).
    pub user: UserId,
    pub device: DeviceId,
    /// Must exceed the device's last accepted counter.
    pub counter: i64,
    pub to: ChallengeState,
}

/// App-initiated or timed transitions; each is one conditional UPDATE. Where an engine has a
/// clock of its own (PostgreSQL), that clock decides what is fresh or due, not the caller's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChallengeTransition {
    /// `approved → redeemed`, by the app that created it, while the approval is younger than
    /// `window`.
    Redeem { app_id: AppId, window: time::Duration },
    /// `pending → cancelled`, by the app that created it.
    Cancel { app_id: AppId },
    /// `pending → expired`, once `expires_at` has passed.
    Expire,
}

/// Callback building the audit event of each challenge a bulk operation changes.
pub type ChallengeEvent<'a> = &'a (dyn Fn(&ChallengeRecord) -> AuditEvent + Send + Sync);

/// `state IN (…)` for a transition to `to`: the states the model's transition table
/// (`ChallengeState::can_become`) lets reach it. Every conditional UPDATE of a challenge guards
/// with this, so the table is what production enforces; no source state means no match.
pub(super) fn may_become(to: ChallengeState) -> String {
    let from: Vec<String> = ChallengeState::ALL
        .iter()
        .filter(|state| state.can_become(to))
        .map(|state| format!("'{}'", state.as_str()))
        .collect();
    if from.is_empty() { "FALSE".to_owned() } else { format!("state IN ({})", from.join(", ")) }
}

/// Every column of `challenges`, as [`challenge_from_row`] reads them (and in the order the
/// engines insert them).
pub(super) const CHALLENGE_COLUMNS: &str = "id, app_id, user_id, state, number_tag, number_sealed, number_digits, server_nonce, app_name, ip, user_agent, location, created_at, expires_at, decided_at, decided_by_device, redeemed_at, idempotency_key, request_hash, is_silent, source_prefix";

pub(super) fn challenge_from_row<R: Columns>(row: &R) -> Result<ChallengeRecord, StoreError> {
    let state: String = row.value("state")?;
    Ok(ChallengeRecord {
        id: ChallengeId(row.id("id")?),
        app_id: AppId(row.id("app_id")?),
        user_id: UserId(row.id("user_id")?),
        state: state.parse().map_err(StoreError::Corrupt)?,
        number_tag: row.value("number_tag")?,
        number_sealed: row.value("number_sealed")?,
        number_digits: row.value("number_digits")?,
        server_nonce: row.value("server_nonce")?,
        app_name: row.value("app_name")?,
        ip: row.value("ip")?,
        user_agent: row.value("user_agent")?,
        location: row.value("location")?,
        created_at: row.time("created_at")?,
        expires_at: row.time("expires_at")?,
        decided_at: row.optional_time("decided_at")?,
        decided_by_device: row.optional_id("decided_by_device")?.map(DeviceId),
        redeemed_at: row.optional_time("redeemed_at")?,
        idempotency_key: row.value("idempotency_key")?,
        request_hash: row.value("request_hash")?,
        is_silent: row.value("is_silent")?,
        source_prefix: row.value("source_prefix")?,
    })
}

// Portable statements: the same text on both engines.

pub(super) static CHALLENGE_BY_ID: Sql =
    Sql::new(|| format!("SELECT {CHALLENGE_COLUMNS} FROM challenges WHERE id = $1"));

pub(super) static CHALLENGE_BY_IDEMPOTENCY_KEY: Sql = Sql::new(|| {
    format!("SELECT {CHALLENGE_COLUMNS} FROM challenges WHERE app_id = $1 AND idempotency_key = $2")
});

pub(super) const RECENT_NUMBER_TAGS: &str =
    "SELECT number_tag FROM challenges WHERE user_id = $1 ORDER BY created_at DESC LIMIT $2";

pub(super) static RECENT_CHALLENGES: Sql = Sql::new(|| {
    format!(
        "SELECT {CHALLENGE_COLUMNS} FROM challenges WHERE user_id = $1 ORDER BY created_at DESC, id LIMIT $2"
    )
});

pub(super) static INSERT_CHALLENGE: Sql = Sql::new(|| {
    format!(
        "INSERT INTO challenges ({CHALLENGE_COLUMNS})
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21)"
    )
});

pub(super) const DEVICE_REVOKED_AT: &str = "SELECT revoked_at FROM devices WHERE id = $1";

#[async_trait]
pub trait ChallengeStore: Send + Sync + std::fmt::Debug {
    /// The user named `username` with their active devices and the number tags of their
    /// `recent` latest challenges (one round trip where the engine allows).
    async fn prompt_target(&self, username: &str, recent: u32) -> Result<Option<PromptTarget>, StoreError>;

    /// A device and a challenge, each if it exists (one round trip where the engine allows).
    async fn device_and_challenge(
        &self,
        device: DeviceId,
        challenge: ChallengeId,
    ) -> Result<(Option<DeviceRecord>, Option<ChallengeRecord>), StoreError>;

    /// Creates a challenge and its push jobs; the user's other pending challenges are
    /// cancelled in the same transaction (one audit event each, from `superseded`).
    async fn create_challenge(
        &self,
        challenge: ChallengeRecord,
        push_devices: &[DeviceId],
        audit: AuditEvent,
        superseded: ChallengeEvent<'_>,
        policy: &Policy,
    ) -> Result<ChallengeRecord, StoreError>;

    async fn challenge_by_id(&self, id: ChallengeId) -> Result<Option<ChallengeRecord>, StoreError>;

    async fn challenge_by_idempotency_key(
        &self,
        app: AppId,
        key: &str,
    ) -> Result<Option<ChallengeRecord>, StoreError>;

    /// The user's pending, unexpired challenges, oldest first.
    async fn pending_challenges(
        &self,
        user: UserId,
        now: OffsetDateTime,
    ) -> Result<Vec<ChallengeRecord>, StoreError>;

    /// Number tags of the user's most recent challenges.
    async fn recent_number_tags(&self, user: UserId, limit: u32) -> Result<Vec<Vec<u8>>, StoreError>;

    /// The user's most recent challenges, newest first.
    async fn recent_challenges(&self, user: UserId, limit: u32) -> Result<Vec<ChallengeRecord>, StoreError>;

    /// A device's answer: advances the device counter and moves `pending → to`, both by
    /// compare-and-set in one transaction with the audit event.
    async fn decide_challenge(
        &self,
        decision: DeviceDecision,
        now: OffsetDateTime,
        audit: AuditEvent,
        policy: &Policy,
    ) -> Result<ChallengeRecord, StoreError>;

    /// Applies an app or timer transition; `NotFound` if the challenge is not in the required
    /// state (or not the app's).
    async fn transition_challenge(
        &self,
        id: ChallengeId,
        transition: ChallengeTransition,
        now: OffsetDateTime,
        audit: AuditEvent,
        policy: &Policy,
    ) -> Result<ChallengeRecord, StoreError>;

    /// Expires up to `limit` pending challenges past their expiry (skipping rows another
    /// instance is handling).
    async fn expire_due_challenges(
        &self,
        now: OffsetDateTime,
        limit: u32,
        event: ChallengeEvent<'_>,
        policy: &Policy,
    ) -> Result<Vec<ChallengeRecord>, StoreError>;

    /// Calls `on_change` with the id of every challenge that changes state on any instance
    /// sharing the database, until the process ends. A hint only: callers re-read the row.
    /// Single-instance engines return at once (in-process notification is enough).
    async fn watch_challenges(
        &self,
        on_change: std::sync::Arc<dyn Fn(ChallengeId) + Send + Sync>,
    ) -> Result<(), StoreError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The SQL guards are the model's transition table read backwards.
    #[test]
    fn transition_guards_come_from_the_model() {
        assert_eq!(may_become(ChallengeState::Redeemed), "state IN ('approved')");
        assert_eq!(may_become(ChallengeState::Expired), "state IN ('pending')");
        assert_eq!(may_become(ChallengeState::Pending), "FALSE");
        for to in ChallengeState::ALL {
            for from in ChallengeState::ALL {
                let guard = may_become(to);
                assert_eq!(
                    guard.contains(&format!("'{}'", from.as_str())),
                    from.can_become(to),
                    "{from} -> {to}"
                );
            }
        }
    }
}
