//! A user's push standing (the fatigue ladder), refused prompts and security signals.

use async_trait::async_trait;
use time::OffsetDateTime;

use super::codec::{Columns, Sql};
use super::{StoreError, UserRecord};
use crate::audit::{AuditEvent, Subject};
use crate::fatigue::model::{Policy, PushState};
use crate::ids::UserId;

/// A change to a user's push standing decided under the user's lock: the new standing and the
/// audit event recording it (see [`FatigueStore::change_push_state`]).
pub type PushStateChange<'a> = &'a (dyn Fn(&PushState) -> (PushState, AuditEvent) + Send + Sync);

/// The columns of `user_push_state` a [`PushState`] holds, as [`push_state_from_row`] reads them.
pub(super) const PUSH_STATE_COLUMNS: &str = "consecutive_failures, freezes, frozen_until, needs_strong_factor, needs_admin_review, hard_locked, last_wrong_number_at, reason, unanswered, refused_prompts, under_attack_since, last_refused_at";

pub(super) fn push_state_from_row<R: Columns>(row: &R) -> Result<PushState, StoreError> {
    Ok(PushState {
        consecutive_failures: row.value("consecutive_failures")?,
        freezes: row.value("freezes")?,
        frozen_until: row.optional_time("frozen_until")?,
        needs_strong_factor: row.value("needs_strong_factor")?,
        needs_admin_review: row.value("needs_admin_review")?,
        hard_locked: row.value("hard_locked")?,
        last_wrong_number_at: row.optional_time("last_wrong_number_at")?,
        reason: row.value("reason")?,
        unanswered: row.value("unanswered")?,
        refused_prompts: row.value("refused_prompts")?,
        under_attack_since: row.optional_time("under_attack_since")?,
        last_refused_at: row.optional_time("last_refused_at")?,
    })
}

// Portable statements: the same text on both engines.

pub(super) static PUSH_STATE: Sql =
    Sql::new(|| format!("SELECT {PUSH_STATE_COLUMNS} FROM user_push_state WHERE user_id = $1"));

pub(super) static TROUBLED_USERS: Sql = Sql::new(|| {
    format!(
        "SELECT u.id, u.username, u.display_name, u.is_privileged, u.created_at, {PUSH_STATE_COLUMNS}
     FROM user_push_state s JOIN users u ON u.id = s.user_id
     WHERE u.deleted_at IS NULL AND (s.consecutive_failures > 0 OR s.frozen_until IS NOT NULL
     OR s.needs_strong_factor OR s.needs_admin_review OR s.hard_locked
     OR s.unanswered >= 2 OR s.under_attack_since IS NOT NULL)
     ORDER BY s.hard_locked DESC, s.needs_admin_review DESC, s.needs_strong_factor DESC,
     s.consecutive_failures DESC LIMIT $1"
    )
});

#[async_trait]
pub trait FatigueStore: Send + Sync + std::fmt::Debug {
    /// The user's push standing (default when nothing happened yet).
    async fn push_state(&self, user: UserId) -> Result<PushState, StoreError>;

    /// Changes the user's push standing under the user's lock: `change` is given the standing
    /// as it is at that moment and returns the new one with the audit event that records it,
    /// both written in the same transaction (so a wrong number racing an unfreeze is never
    /// overwritten by a stale read). Returns the standing before and after.
    async fn change_push_state(
        &self,
        user: UserId,
        now: OffsetDateTime,
        change: PushStateChange<'_>,
    ) -> Result<(PushState, PushState), StoreError>;

    /// Users whose standing is not clean (failures, freezes, locks), worst first.
    async fn troubled_users(&self, limit: u32) -> Result<Vec<(UserRecord, PushState)>, StoreError>;

    /// A prompt for `user` was refused (budget or spray): counts it on the user's standing (the
    /// attack incident), writes `audit`, and raises a `push_bombing` alert when it opens a new
    /// incident — all in one transaction. Returns whether an alert was raised.
    async fn record_refused_prompt(
        &self,
        user: UserId,
        reason: &str,
        now: OffsetDateTime,
        audit: AuditEvent,
        policy: &Policy,
    ) -> Result<bool, StoreError>;

    /// Writes a security signal that changes no state: its audit event and its alert, in one
    /// transaction (e.g. a cloned device key).
    async fn record_signal(
        &self,
        audit: AuditEvent,
        alert: (&str, &Subject, &str),
        now: OffsetDateTime,
    ) -> Result<(), StoreError>;
}
