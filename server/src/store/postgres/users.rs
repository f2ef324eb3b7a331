//! Users.

use async_trait::async_trait;
use sqlx::{Connection, PgConnection};
use time::OffsetDateTime;

use super::PgStore;
use crate::audit::AuditEvent;
use crate::ids::UserId;
use crate::store::users::{
    DELETE_USER, HAS_ANY_FACTOR, LOCK_USER, REVOKE_USER_DEVICES, SET_PASSKEY_REQUIRED, USER_BY_ID,
    USER_BY_USERNAME, VOID_USER_ENROLLMENTS, VOID_USER_PASSKEY_FACTORS,
};
use crate::store::users::{FactorReset, USER_EXISTS, refused_delete, user_from_row, with_counts};
use crate::store::{StoreError, UserRecord, UserStore, map_unique_violation};

/// Revokes a user's devices and passkeys and voids what could still bind new ones.
async fn void_factors(
    conn: &mut PgConnection,
    id: UserId,
    at: OffsetDateTime,
) -> Result<FactorReset, StoreError> {
    let devices_revoked =
        sqlx::query(REVOKE_USER_DEVICES).bind(id.0).bind(at).execute(&mut *conn).await?.rows_affected();
    sqlx::query(VOID_USER_ENROLLMENTS).bind(id.0).bind(at).execute(&mut *conn).await?;
    let mut passkeys_revoked = None;
    for statement in VOID_USER_PASSKEY_FACTORS {
        let voided = sqlx::query(statement).bind(id.0).bind(at).execute(&mut *conn).await?.rows_affected();
        passkeys_revoked.get_or_insert(voided);
    }
    Ok(FactorReset { devices_revoked, passkeys_revoked: passkeys_revoked.unwrap_or_default() })
}

#[async_trait]
impl UserStore for PgStore {
    async fn create_user(&self, user: UserRecord, audit: AuditEvent) -> Result<UserRecord, StoreError> {
        let mut conn = self.conn().await?;
        let mut tx = conn.begin().await?;
        // With the push-standing row the user's prompts will lock.
        sqlx::query(
            "WITH u AS (INSERT INTO users (id, username, display_name, is_privileged, created_at, passkey_required)
                        VALUES ($1, $2, $3, $4, $5, $6))
             INSERT INTO user_push_state (user_id, updated_at) VALUES ($1, $5)",
        )
        .bind(user.id.0)
        .bind(&user.username)
        .bind(&user.display_name)
        .bind(user.is_privileged)
        .bind(user.created_at)
        .bind(user.passkey_required)
        .execute(&mut *tx)
        .await
        .map_err(map_unique_violation)?;
        self.append_audit(&mut tx, &audit).await?;
        self.commit(tx).await?;
        Ok(user)
    }

    async fn user_by_username(&self, username: &str) -> Result<Option<UserRecord>, StoreError> {
        sqlx::query(USER_BY_USERNAME.as_str())
            .bind(username)
            .fetch_optional(&mut *self.conn().await?)
            .await?
            .as_ref()
            .map(user_from_row)
            .transpose()
    }

    async fn user_by_id(&self, id: UserId) -> Result<Option<UserRecord>, StoreError> {
        sqlx::query(USER_BY_ID.as_str())
            .bind(id.0)
            .fetch_optional(&mut *self.conn().await?)
            .await?
            .as_ref()
            .map(user_from_row)
            .transpose()
    }

    async fn delete_user(
        &self,
        id: UserId,
        at: OffsetDateTime,
        audit: AuditEvent,
    ) -> Result<u64, StoreError> {
        let mut conn = self.conn().await?;
        let mut tx = conn.begin().await?;
        let freed_name = format!("deleted:{}", id.0);
        let deleted = sqlx::query(DELETE_USER).bind(id.0).bind(at).bind(freed_name).execute(&mut *tx).await?;
        if deleted.rows_affected() == 0 {
            let exists: i64 = sqlx::query_scalar(USER_EXISTS).bind(id.0).fetch_one(&mut *tx).await?;
            return Err(refused_delete(exists));
        }
        let reset = void_factors(&mut tx, id, at).await?;
        let audit = with_counts(audit, reset);
        self.append_audit(&mut tx, &audit).await?;
        self.commit(tx).await?;
        Ok(reset.devices_revoked)
    }

    async fn has_any_factor(&self, id: UserId) -> Result<bool, StoreError> {
        has_any_factor(&mut *self.conn().await?, id).await
    }

    async fn set_passkey_required(
        &self,
        id: UserId,
        required: Option<bool>,
        audit: AuditEvent,
    ) -> Result<(), StoreError> {
        let mut conn = self.conn().await?;
        let mut tx = conn.begin().await?;
        let set = sqlx::query(SET_PASSKEY_REQUIRED).bind(id.0).bind(required).execute(&mut *tx).await?;
        if set.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        self.append_audit(&mut tx, &audit).await?;
        self.commit(tx).await?;
        Ok(())
    }

    async fn reset_user_factors(
        &self,
        id: UserId,
        at: OffsetDateTime,
        audit: AuditEvent,
    ) -> Result<FactorReset, StoreError> {
        let mut conn = self.conn().await?;
        let mut tx = conn.begin().await?;
        if !lock_user(&mut tx, id).await? {
            return Err(StoreError::NotFound);
        }
        let reset = void_factors(&mut tx, id, at).await?;
        self.append_audit(&mut tx, &with_counts(audit, reset)).await?;
        self.commit(tx).await?;
        Ok(reset)
    }
}

/// Whether the user has an active device or passkey ([`HAS_ANY_FACTOR`]), inside a transaction.
pub(super) async fn has_any_factor(conn: &mut PgConnection, user: UserId) -> Result<bool, StoreError> {
    Ok(sqlx::query_scalar(HAS_ANY_FACTOR).bind(user.0).fetch_one(&mut *conn).await?)
}

/// Locks an active user's row until the transaction ends, so changes to their first factor are
/// serialised; `false` if the user is gone.
pub(super) async fn lock_user(conn: &mut PgConnection, user: UserId) -> Result<bool, StoreError> {
    Ok(sqlx::query(LOCK_USER).bind(user.0).fetch_optional(&mut *conn).await?.is_some())
}
