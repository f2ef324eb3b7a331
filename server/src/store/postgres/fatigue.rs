//! A user's push standing: read with its version, written by compare-and-set.

use async_trait::async_trait;
use sqlx::{Connection, PgConnection, Row};
use time::OffsetDateTime;

use super::PgStore;
use super::alerts::insert_alert;
use super::statements::bind_standing;
use crate::alerts::AlertKind;
use crate::audit::{AuditEvent, Subject};
use crate::fatigue::model::PushState;
use crate::ids::UserId;
use crate::store::fatigue::{
    APPLY_STANDING, CREATE_STANDING, PUSH_STATE, STANDING, TROUBLED_USERS, push_state_from_row,
};
use crate::store::users::user_from_row;
use crate::store::{FatigueStore, Standing, StandingUpdate, StoreError, UserRecord};

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
    let sql = format!("{}{suffix}", STANDING.as_str());
    for _ in 0..2 {
        if let Some(row) =
            sqlx::query(sqlx::AssertSqlSafe(sql.clone())).bind(user.0).fetch_optional(&mut *conn).await?
        {
            return Ok((push_state_from_row(&row)?, row.try_get("version")?));
        }
        sqlx::query(CREATE_STANDING).bind(user.0).bind(now).execute(&mut *conn).await?;
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

    async fn standing(&self, user: UserId, now: OffsetDateTime) -> Result<Standing, StoreError> {
        let (state, version) = read_standing(&mut *self.conn().await?, user, now, Lock::None).await?;
        Ok(Standing { state, version })
    }

    async fn apply_standing(&self, update: StandingUpdate<'_>) -> Result<bool, StoreError> {
        let StandingUpdate { user, version, next, now, audit, alert } = update;
        let mut conn = self.conn().await?;
        let mut tx = conn.begin().await?;
        // The UPDATE waits for the row lock of a concurrent change, then re-checks the version.
        let query = sqlx::query(APPLY_STANDING).bind(user.0).bind(version);
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
        let rows = sqlx::query(TROUBLED_USERS.as_str())
            .bind(i64::from(limit))
            .fetch_all(&mut *self.conn().await?)
            .await?;
        rows.iter().map(|row| Ok((user_from_row(row)?, push_state_from_row(row)?))).collect()
    }

    async fn record_signal(
        &self,
        audit: AuditEvent,
        (kind, subject, details): (AlertKind, &Subject, &str),
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        let mut conn = self.conn().await?;
        let mut tx = conn.begin().await?;
        insert_alert(&mut tx, kind, subject, details, now).await?;
        self.append_audit(&mut tx, &audit).await?;
        self.commit(tx).await
    }
}
