//! A user's push standing and the ladder move of a challenge outcome.

use async_trait::async_trait;
use sqlx::SqliteConnection;
use time::OffsetDateTime;

use super::SqliteStore;
use super::alerts::insert_alert;
use crate::audit::{AuditEvent, Subject};
use crate::challenges::model::ChallengeState;
use crate::clock::unix_micros;
use crate::fatigue::model::{Policy, PushState, incident_alert_details, ladder_move};
use crate::ids::UserId;
use crate::store::fatigue::push_state_from_row;
use crate::store::fatigue::{PUSH_STATE, TROUBLED_USERS};
use crate::store::users::user_from_row;
use crate::store::{FatigueStore, PushStateChange, StoreError, UserRecord};

/// The user's push standing (write transactions are exclusive on SQLite).
pub(super) async fn load_push_state(
    conn: &mut SqliteConnection,
    user: UserId,
) -> Result<PushState, StoreError> {
    let row = sqlx::query(PUSH_STATE.as_str()).bind(user.0.to_string()).fetch_optional(&mut *conn).await?;
    row.as_ref().map(push_state_from_row).transpose().map(Option::unwrap_or_default)
}

pub(super) async fn save_push_state(
    conn: &mut SqliteConnection,
    user: UserId,
    state: &PushState,
    now: OffsetDateTime,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO user_push_state (user_id, consecutive_failures, freezes, frozen_until, needs_strong_factor,
                                      needs_admin_review, hard_locked, last_wrong_number_at, reason, updated_at,
                                      unanswered, refused_prompts, under_attack_since, last_refused_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)
         ON CONFLICT (user_id) DO UPDATE SET consecutive_failures = ?2, freezes = ?3, frozen_until = ?4,
             needs_strong_factor = ?5, needs_admin_review = ?6, hard_locked = ?7, last_wrong_number_at = ?8,
             reason = ?9, updated_at = ?10, unanswered = ?11, refused_prompts = ?12, under_attack_since = ?13,
             last_refused_at = ?14",
    )
    .bind(user.0.to_string())
    .bind(state.consecutive_failures)
    .bind(state.freezes)
    .bind(state.frozen_until.map(unix_micros))
    .bind(state.needs_strong_factor)
    .bind(state.needs_admin_review)
    .bind(state.hard_locked)
    .bind(state.last_wrong_number_at.map(unix_micros))
    .bind(&state.reason)
    .bind(unix_micros(now))
    .bind(state.unanswered)
    .bind(state.refused_prompts)
    .bind(state.under_attack_since.map(unix_micros))
    .bind(state.last_refused_at.map(unix_micros))
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Moves the user's ladder for a challenge that reached `to` (no-op for neutral states).
pub(super) async fn record_outcome(
    conn: &mut SqliteConnection,
    user: UserId,
    to: ChallengeState,
    now: OffsetDateTime,
    policy: &Policy,
) -> Result<(), StoreError> {
    if crate::fatigue::model::PushEvent::from_state(to).is_none() {
        return Ok(());
    }
    let state = load_push_state(conn, user).await?;
    // The same ladder move and alert as on PostgreSQL (`fatigue::model::ladder_move`).
    if let Some(step) = ladder_move(&state, to, now, policy) {
        save_push_state(conn, user, &step.next, now).await?;
        if let Some(kind) = step.alert {
            insert_alert(conn, kind, &Subject::User(user), &step.alert_details(user), now).await?;
            metrics::counter!("countersign_push_escalations_total", "kind" => kind).increment(1);
        }
    }
    Ok(())
}

#[async_trait]
impl FatigueStore for SqliteStore {
    async fn push_state(&self, user: UserId) -> Result<PushState, StoreError> {
        let row =
            sqlx::query(PUSH_STATE.as_str()).bind(user.0.to_string()).fetch_optional(&self.pool).await?;
        row.as_ref().map(push_state_from_row).transpose().map(Option::unwrap_or_default)
    }

    async fn change_push_state(
        &self,
        user: UserId,
        now: OffsetDateTime,
        change: PushStateChange<'_>,
    ) -> Result<(PushState, PushState), StoreError> {
        // BEGIN IMMEDIATE: the one writer, so the standing read here holds still.
        let mut tx = self.begin_write().await?;
        let before = load_push_state(&mut tx, user).await?;
        let (after, audit) = change(&before);
        save_push_state(&mut tx, user, &after, now).await?;
        self.append_audit(&mut tx, &audit).await?;
        self.commit(tx).await?;
        Ok((before, after))
    }

    async fn troubled_users(&self, limit: u32) -> Result<Vec<(UserRecord, PushState)>, StoreError> {
        let rows = sqlx::query(TROUBLED_USERS.as_str()).bind(i64::from(limit)).fetch_all(&self.pool).await?;
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
        let mut tx = self.begin_write().await?;
        let mut state = load_push_state(&mut tx, user).await?;
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
        let mut tx = self.begin_write().await?;
        insert_alert(&mut tx, kind, subject, details, now).await?;
        self.append_audit(&mut tx, &audit).await?;
        self.commit(tx).await
    }
}
