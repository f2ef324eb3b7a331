//! A user's push standing and the ladder move of a challenge outcome.

use async_trait::async_trait;
use sqlx::SqliteConnection;
use time::OffsetDateTime;

use super::SqliteStore;
use super::alerts::insert_alert;
use crate::alerts::AlertKind;
use crate::audit::{AuditEvent, Subject};
use crate::challenges::model::ChallengeState;
use crate::clock::unix_micros;
use crate::fatigue::model::{Policy, PushState, ladder_move};
use crate::ids::UserId;
use crate::store::codec::Columns;
use crate::store::fatigue::{
    APPLY_STANDING, CREATE_STANDING, PUSH_STATE, STANDING, TROUBLED_USERS, push_state_from_row,
};
use crate::store::users::user_from_row;
use crate::store::{FatigueStore, Standing, StandingUpdate, StoreError, UserRecord};

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
    // Every write bumps the version, so a compare-and-set decided from an older read fails.
    let query = sqlx::query(
        "INSERT INTO user_push_state (user_id, consecutive_failures, freezes, frozen_until, needs_strong_factor,
                                      needs_admin_review, hard_locked, last_wrong_number_at, reason, updated_at,
                                      unanswered, refused_prompts, under_attack_since, last_refused_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)
         ON CONFLICT (user_id) DO UPDATE SET consecutive_failures = ?2, freezes = ?3, frozen_until = ?4,
             needs_strong_factor = ?5, needs_admin_review = ?6, hard_locked = ?7, last_wrong_number_at = ?8,
             reason = ?9, updated_at = ?10, unanswered = ?11, refused_prompts = ?12, under_attack_since = ?13,
             last_refused_at = ?14, version = version + 1",
    );
    bind_standing(query.bind(user.0.to_string()), state, now).execute(&mut *conn).await?;
    Ok(())
}

/// Binds a standing's columns and `updated_at` (`now`), in the order of `save_push_state` and
/// of `APPLY_STANDING`.
fn bind_standing<'q>(query: SqliteQuery<'q>, state: &'q PushState, now: OffsetDateTime) -> SqliteQuery<'q> {
    query
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
}

pub(super) type SqliteQuery<'q> = sqlx::query::Query<'q, sqlx::Sqlite, sqlx::sqlite::SqliteArguments>;

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
            metrics::counter!("countersign_push_escalations_total", "kind" => kind.as_str()).increment(1);
        }
    }
    Ok(())
}

#[async_trait]
impl FatigueStore for SqliteStore {
    async fn push_state(&self, user: UserId) -> Result<PushState, StoreError> {
        load_push_state(&mut *self.pool.acquire().await?, user).await
    }

    async fn standing(&self, user: UserId, now: OffsetDateTime) -> Result<Standing, StoreError> {
        let mut conn = self.pool.acquire().await?;
        for _ in 0..2 {
            let row =
                sqlx::query(STANDING.as_str()).bind(user.0.to_string()).fetch_optional(&mut *conn).await?;
            if let Some(row) = row {
                return Ok(Standing { state: push_state_from_row(&row)?, version: row.value("version")? });
            }
            sqlx::query(CREATE_STANDING)
                .bind(user.0.to_string())
                .bind(unix_micros(now))
                .execute(&mut *conn)
                .await?;
        }
        Err(StoreError::Corrupt(format!("push state of user {user} vanished while being read")))
    }

    async fn apply_standing(&self, update: StandingUpdate<'_>) -> Result<bool, StoreError> {
        let StandingUpdate { user, version, next, now, audit, alert } = update;
        let mut tx = self.begin_write().await?;
        let query = sqlx::query(APPLY_STANDING).bind(user.0.to_string()).bind(version);
        if bind_standing(query, next, now).execute(&mut *tx).await?.rows_affected() == 0 {
            return Ok(false);
        }
        if let Some((kind, details)) = alert {
            insert_alert(&mut tx, kind, &Subject::User(user), details, now).await?;
        }
        self.append_audit(&mut tx, audit).await?;
        self.commit(tx).await?;
        Ok(true)
    }

    async fn troubled_users(&self, limit: u32) -> Result<Vec<(UserRecord, PushState)>, StoreError> {
        let rows = sqlx::query(TROUBLED_USERS.as_str()).bind(i64::from(limit)).fetch_all(&self.pool).await?;
        rows.iter().map(|row| Ok((user_from_row(row)?, push_state_from_row(row)?))).collect()
    }

    async fn record_signal(
        &self,
        audit: AuditEvent,
        (kind, subject, details): (AlertKind, &Subject, &str),
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        insert_alert(&mut tx, kind, subject, details, now).await?;
        self.append_audit(&mut tx, &audit).await?;
        self.commit(tx).await
    }
}
