//! A user's push standing: read (with its version), saved, and the fatigue-store operations.

use async_trait::async_trait;
use sqlx::{Connection, PgConnection, Row};
use time::OffsetDateTime;

use super::PgStore;
use super::alerts::insert_alert;
use crate::audit::{AuditEvent, Subject};
use crate::fatigue::model::{Policy, PushState, incident_alert_details};
use crate::ids::UserId;
use crate::store::fatigue::PUSH_STATE_COLUMNS;
use crate::store::fatigue::push_state_from_row;
use crate::store::fatigue::{PUSH_STATE, TROUBLED_USERS};
use crate::store::users::user_from_row;
use crate::store::{FatigueStore, PushStateChange, StoreError, UserRecord};

pub(super) async fn save_push_state(
    conn: &mut PgConnection,
    user: UserId,
    state: &PushState,
    now: OffsetDateTime,
) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE user_push_state SET version = version + 1, consecutive_failures = $2, freezes = $3, frozen_until = $4,
             needs_strong_factor = $5, needs_admin_review = $6, hard_locked = $7, last_wrong_number_at = $8,
             reason = $9, updated_at = $10, unanswered = $11, refused_prompts = $12, under_attack_since = $13,
             last_refused_at = $14
         WHERE user_id = $1",
    )
    .bind(user.0)
    .bind(state.consecutive_failures)
    .bind(state.freezes)
    .bind(state.frozen_until)
    .bind(state.needs_strong_factor)
    .bind(state.needs_admin_review)
    .bind(state.hard_locked)
    .bind(state.last_wrong_number_at)
    .bind(&state.reason)
    .bind(now)
    .bind(state.unanswered)
    .bind(state.refused_prompts)
    .bind(state.under_attack_since)
    .bind(state.last_refused_at)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Re-reads of a user's standing before a device answer gives up (each one means another
/// change for that user committed meanwhile).
pub(super) const STANDING_RETRIES: usize = 32;

/// Whether reading a user's standing also locks it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Lock {
    /// A plain read; a later statement checks the version under the lock (optimistic).
    None,
    /// Locked for the rest of the transaction: the per-user lock that serialises their prompts,
    /// answers, expiries and unfreezes across instances. Its own statement, so the statements
    /// after it read what the previous holder committed.
    ForUpdate,
}

/// The user's push standing and its version. The row is created on first use (users created
/// before migration 0004 have none), so there is always a row to read or lock.
pub(super) async fn read_standing(
    conn: &mut PgConnection,
    user: UserId,
    now: OffsetDateTime,
    lock: Lock,
) -> Result<(PushState, i64), StoreError> {
    let suffix = if lock == Lock::ForUpdate { " FOR UPDATE" } else { "" };
    let sql = format!("SELECT {PUSH_STATE_COLUMNS}, version FROM user_push_state WHERE user_id = $1{suffix}");
    for _ in 0..2 {
        if let Some(row) =
            sqlx::query(sqlx::AssertSqlSafe(sql.clone())).bind(user.0).fetch_optional(&mut *conn).await?
        {
            return Ok((push_state_from_row(&row)?, row.try_get("version")?));
        }
        sqlx::query(
            "INSERT INTO user_push_state (user_id, updated_at) VALUES ($1, $2) ON CONFLICT DO NOTHING",
        )
        .bind(user.0)
        .bind(now)
        .execute(&mut *conn)
        .await?;
    }
    Err(StoreError::Corrupt(format!("push state of user {user} vanished while being read")))
}

#[async_trait]
impl FatigueStore for PgStore {
    async fn push_state(&self, user: UserId) -> Result<PushState, StoreError> {
        let row =
            sqlx::query(PUSH_STATE.as_str()).bind(user.0).fetch_optional(&mut *self.conn().await?).await?;
        row.as_ref().map(push_state_from_row).transpose().map(Option::unwrap_or_default)
    }

    async fn change_push_state(
        &self,
        user: UserId,
        now: OffsetDateTime,
        change: PushStateChange<'_>,
    ) -> Result<(PushState, PushState), StoreError> {
        let mut conn = self.conn().await?;
        let mut tx = conn.begin().await?;
        let (before, _) = read_standing(&mut tx, user, now, Lock::ForUpdate).await?;
        let (after, audit) = change(&before);
        save_push_state(&mut tx, user, &after, now).await?;
        self.append_audit(&mut tx, &audit).await?;
        self.commit(tx).await?;
        Ok((before, after))
    }

    async fn troubled_users(&self, limit: u32) -> Result<Vec<(UserRecord, PushState)>, StoreError> {
        let rows = sqlx::query(TROUBLED_USERS.as_str())
            .bind(i64::from(limit))
            .fetch_all(&mut *self.conn().await?)
            .await?;
        rows.iter().map(|row| Ok((user_from_row(row)?, push_state_from_row(row)?))).collect()
    }

    async fn record_refused_prompt(
        &self,
        user: UserId,
        reason: &str,
        now: OffsetDateTime,
        audit: AuditEvent,
        policy: &Policy,
    ) -> Result<bool, StoreError> {
        let mut conn = self.conn().await?;
        let mut tx = conn.begin().await?;
        let (mut state, _) = read_standing(&mut tx, user, now, Lock::ForUpdate).await?;
        let opens_incident = crate::fatigue::model::refuse_prompt(&mut state, now, policy);
        save_push_state(&mut tx, user, &state, now).await?;
        if opens_incident {
            let details = incident_alert_details(user, &state, reason);
            insert_alert(&mut tx, "push_bombing", &Subject::User(user), &details, now).await?;
        }
        self.append_audit(&mut tx, &audit).await?;
        self.commit(tx).await?;
        Ok(opens_incident)
    }

    async fn record_signal(
        &self,
        audit: AuditEvent,
        (kind, subject, details): (&str, &Subject, &str),
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        let mut conn = self.conn().await?;
        let mut tx = conn.begin().await?;
        insert_alert(&mut tx, kind, subject, details, now).await?;
        self.append_audit(&mut tx, &audit).await?;
        self.commit(tx).await
    }
}
