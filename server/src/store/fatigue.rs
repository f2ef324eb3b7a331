//! A user's push standing (the fatigue ladder), refused prompts and security signals.
//!
//! Every change to a standing follows one protocol on both engines: read the standing with its
//! version ([`FatigueStore::standing`]), let `fatigue::model` decide, write the decision by
//! compare-and-set on that version ([`FatigueStore::apply_standing`]), and on a stale version
//! read again and decide again. Every write to a standing bumps its version (PostgreSQL's
//! single-statement answers and prompts included), so a decision made from a stale read never
//! lands.

use async_trait::async_trait;
use time::OffsetDateTime;

use super::codec::{Columns, Sql};
use super::users::USER_COLUMNS;
use super::{StoreError, UserRecord};
use crate::alerts::AlertKind;
use crate::audit::{AuditEvent, Subject};
use crate::fatigue::model::{Policy, PushState, incident_alert_details, refuse_prompt};
use crate::ids::UserId;

/// A change to a user's push standing, decided from the standing as read: the new standing and
/// the audit event recording it (see [`FatigueStore::change_push_state`]). Called again if the
/// standing changed before the decision could be written.
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

/// Reads of a user's standing before a change gives up (each one means another change for that
/// user committed meanwhile).
pub(super) const STANDING_RETRIES: usize = 32;

/// A user's push standing as read, with the version every write to it bumps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Standing {
    pub state: PushState,
    pub version: i64,
}

/// A new standing decided from the one read at `version`, with what records it.
#[derive(Debug, Clone, Copy)]
pub struct StandingUpdate<'a> {
    pub user: UserId,
    /// The version the decision was made from: the write applies only while it is current.
    pub version: i64,
    pub next: &'a PushState,
    pub now: OffsetDateTime,
    pub audit: &'a AuditEvent,
    /// An alert about the user raised with the change: its kind and details.
    pub alert: Option<(AlertKind, &'a str)>,
}

// Portable statements: the same text on both engines.

/// The standing and its version.
pub(super) static STANDING: Sql =
    Sql::new(|| format!("SELECT {PUSH_STATE_COLUMNS}, version FROM user_push_state WHERE user_id = $1"));

/// Creates a default standing (users created before migration 0004, and on SQLite every user,
/// have none until it first changes).
pub(super) const CREATE_STANDING: &str =
    "INSERT INTO user_push_state (user_id, updated_at) VALUES ($1, $2) ON CONFLICT DO NOTHING";

/// The compare-and-set: `$1` the user, `$2` the version read, then the standing's columns and
/// `updated_at` in the order each engine's `bind_standing` binds them.
pub(super) const APPLY_STANDING: &str =
    "UPDATE user_push_state SET version = version + 1, consecutive_failures = $3, freezes = $4,
         frozen_until = $5, needs_strong_factor = $6, needs_admin_review = $7, hard_locked = $8,
         last_wrong_number_at = $9, reason = $10, updated_at = $11, unanswered = $12,
         refused_prompts = $13, under_attack_since = $14, last_refused_at = $15
     WHERE user_id = $1 AND version = $2";

pub(super) static PUSH_STATE: Sql =
    Sql::new(|| format!("SELECT {PUSH_STATE_COLUMNS} FROM user_push_state WHERE user_id = $1"));

pub(super) static TROUBLED_USERS: Sql = Sql::new(|| {
    format!(
        "SELECT {}, {PUSH_STATE_COLUMNS}
     FROM user_push_state s JOIN users u ON u.id = s.user_id
     WHERE u.deleted_at IS NULL AND (s.consecutive_failures > 0 OR s.frozen_until IS NOT NULL
     OR s.needs_strong_factor OR s.needs_admin_review OR s.hard_locked
     OR s.unanswered >= 2 OR s.under_attack_since IS NOT NULL)
     ORDER BY s.hard_locked DESC, s.needs_admin_review DESC, s.needs_strong_factor DESC,
     s.consecutive_failures DESC LIMIT $1",
        // The user's columns as `user_from_row` reads them, so the two cannot drift apart.
        super::codec::qualified(USER_COLUMNS, "u")
    )
});

#[async_trait]
pub trait FatigueStore: Send + Sync + std::fmt::Debug {
    /// The user's push standing (default when nothing happened yet).
    async fn push_state(&self, user: UserId) -> Result<PushState, StoreError>;

    /// The user's push standing with its version (a default standing is created on first use,
    /// so there is always a version to compare with).
    async fn standing(&self, user: UserId, now: OffsetDateTime) -> Result<Standing, StoreError>;

    /// Writes `update.next` with its audit event (and alert) in one transaction if the standing
    /// is still at `update.version`; `Ok(false)`, and nothing written, if another change came
    /// first.
    async fn apply_standing(&self, update: StandingUpdate<'_>) -> Result<bool, StoreError>;

    /// Changes the user's push standing by compare-and-set: `change` is given the standing as
    /// read and returns the new one with the audit event that records it; if the standing moved
    /// meanwhile, `change` decides again from the fresh one (so a wrong number racing an
    /// unfreeze is never overwritten by a stale read). Returns the standing before and after;
    /// `Contended` if other changes kept winning.
    async fn change_push_state(
        &self,
        user: UserId,
        now: OffsetDateTime,
        change: PushStateChange<'_>,
    ) -> Result<(PushState, PushState), StoreError> {
        for _ in 0..STANDING_RETRIES {
            let Standing { state: before, version } = self.standing(user, now).await?;
            let (after, audit) = change(&before);
            let update = StandingUpdate { user, version, next: &after, now, audit: &audit, alert: None };
            if self.apply_standing(update).await? {
                return Ok((before, after));
            }
        }
        Err(StoreError::Contended)
    }

    /// Users whose standing is not clean (failures, freezes, locks), worst first.
    async fn troubled_users(&self, limit: u32) -> Result<Vec<(UserRecord, PushState)>, StoreError>;

    /// A prompt for `user` was refused (budget or spray): counts it on the user's standing (the
    /// attack incident, as `fatigue::model::refuse_prompt` decides), writes `audit`, and raises a
    /// `push_bombing` alert when it opens a new incident — all in one transaction, by
    /// compare-and-set like [`FatigueStore::change_push_state`]. Returns whether an alert was
    /// raised.
    async fn record_refused_prompt(
        &self,
        user: UserId,
        reason: &str,
        now: OffsetDateTime,
        audit: AuditEvent,
        policy: &Policy,
    ) -> Result<bool, StoreError> {
        for _ in 0..STANDING_RETRIES {
            let Standing { state: mut next, version } = self.standing(user, now).await?;
            let opens_incident = refuse_prompt(&mut next, now, policy);
            let details = opens_incident.then(|| incident_alert_details(user, &next, reason));
            let alert = details.as_deref().map(|details| (AlertKind::PushBombing, details));
            let update = StandingUpdate { user, version, next: &next, now, audit: &audit, alert };
            if self.apply_standing(update).await? {
                return Ok(opens_incident);
            }
        }
        Err(StoreError::Contended)
    }

    /// Writes a security signal that changes no state: its audit event and its alert, in one
    /// transaction (e.g. a cloned device key).
    async fn record_signal(
        &self,
        audit: AuditEvent,
        alert: (AlertKind, &Subject, &str),
        now: OffsetDateTime,
    ) -> Result<(), StoreError>;
}
