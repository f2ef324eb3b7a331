//! Users.

use async_trait::async_trait;
use sqlx::SqliteConnection;
use time::OffsetDateTime;

use super::SqliteStore;
use crate::audit::AuditEvent;
use crate::clock::unix_micros;
use crate::ids::UserId;
use crate::store::users::{
    DELETE_USER, HAS_ANY_FACTOR, REVOKE_USER_DEVICES, SET_PASSKEY_REQUIRED, USER_BY_ID, USER_BY_USERNAME,
    VOID_USER_ENROLLMENTS, VOID_USER_PASSKEY_FACTORS,
};
use crate::store::users::{FactorReset, USER_EXISTS, refused_delete, user_from_row, with_counts};
use crate::store::{StoreError, UserRecord, UserStore, map_unique_violation};

/// Revokes a user's devices and passkeys and voids what could still bind new ones.
async fn void_factors(
    conn: &mut SqliteConnection,
    id: UserId,
    at: OffsetDateTime,
) -> Result<FactorReset, StoreError> {
    let (user, at) = (id.0.to_string(), unix_micros(at));
    let devices_revoked =
        sqlx::query(REVOKE_USER_DEVICES).bind(&user).bind(at).execute(&mut *conn).await?.rows_affected();
    sqlx::query(VOID_USER_ENROLLMENTS).bind(&user).bind(at).execute(&mut *conn).await?;
    let mut passkeys_revoked = None;
    for statement in VOID_USER_PASSKEY_FACTORS {
        let voided = sqlx::query(statement).bind(&user).bind(at).execute(&mut *conn).await?.rows_affected();
        passkeys_revoked.get_or_insert(voided);
    }
    Ok(FactorReset { devices_revoked, passkeys_revoked: passkeys_revoked.unwrap_or_default() })
}

#[async_trait]
impl UserStore for SqliteStore {
    async fn create_user(&self, user: UserRecord, audit: AuditEvent) -> Result<UserRecord, StoreError> {
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "INSERT INTO users (id, username, display_name, is_privileged, created_at, passkey_required)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )
        .bind(user.id.0.to_string())
        .bind(&user.username)
        .bind(&user.display_name)
        .bind(user.is_privileged)
        .bind(unix_micros(user.created_at))
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
            .fetch_optional(&self.pool)
            .await?
            .as_ref()
            .map(user_from_row)
            .transpose()
    }

    async fn user_by_id(&self, id: UserId) -> Result<Option<UserRecord>, StoreError> {
        sqlx::query(USER_BY_ID.as_str())
            .bind(id.0.to_string())
            .fetch_optional(&self.pool)
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
        let mut tx = self.begin_write().await?;
        let freed_name = format!("deleted:{}", id.0);
        let deleted = sqlx::query(DELETE_USER)
            .bind(id.0.to_string())
            .bind(unix_micros(at))
            .bind(freed_name)
            .execute(&mut *tx)
            .await?;
        if deleted.rows_affected() == 0 {
            let exists: i64 =
                sqlx::query_scalar(USER_EXISTS).bind(id.0.to_string()).fetch_one(&mut *tx).await?;
            return Err(refused_delete(exists));
        }
        let reset = void_factors(&mut tx, id, at).await?;
        let audit = with_counts(audit, reset);
        self.append_audit(&mut tx, &audit).await?;
        self.commit(tx).await?;
        Ok(reset.devices_revoked)
    }

    async fn has_any_factor(&self, id: UserId) -> Result<bool, StoreError> {
        has_any_factor(&mut *self.pool.acquire().await?, id).await
    }

    async fn set_passkey_required(
        &self,
        id: UserId,
        required: Option<bool>,
        audit: AuditEvent,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        let set =
            sqlx::query(SET_PASSKEY_REQUIRED).bind(id.0.to_string()).bind(required).execute(&mut *tx).await?;
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
        let mut tx = self.begin_write().await?;
        let live = sqlx::query(USER_BY_ID.as_str()).bind(id.0.to_string()).fetch_optional(&mut *tx).await?;
        if live.is_none() {
            return Err(StoreError::NotFound);
        }
        let reset = void_factors(&mut tx, id, at).await?;
        self.append_audit(&mut tx, &with_counts(audit, reset)).await?;
        self.commit(tx).await?;
        Ok(reset)
    }
}

/// Whether the user has an active device or passkey ([`HAS_ANY_FACTOR`]), inside a transaction.
pub(super) async fn has_any_factor(conn: &mut SqliteConnection, user: UserId) -> Result<bool, StoreError> {
    Ok(sqlx::query_scalar(HAS_ANY_FACTOR).bind(user.0.to_string()).fetch_one(&mut *conn).await?)
}
