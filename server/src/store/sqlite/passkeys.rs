//! Passkeys, user handles and registration ceremonies.

use async_trait::async_trait;
use sqlx::SqliteConnection;
use time::OffsetDateTime;

use super::SqliteStore;
use super::devices::consume_approval;
use crate::audit::AuditEvent;
use crate::clock::unix_micros;
use crate::ids::{PasskeyId, RegistrationId, UserId};
use crate::store::passkeys::{
    DELETE_REGISTRATION, HAS_ANY_FACTOR, INSERT_PASSKEY, INSERT_REGISTRATION, INSERT_USER_HANDLE,
    NOTIFY_DEVICES, PASSKEY_BY_CREDENTIAL_ID, PASSKEY_COLUMNS, PASSKEYS_OF_USER, PURGE_EXPIRED_REGISTRATIONS,
    REGISTRATION_BY_ID, USER_HANDLE, passkey_from_row, registration_from_row,
};
use crate::store::{
    Conflict, PasskeyRecord, PasskeyStore, RegistrationCeremony, RegistrationProof, StoreError,
    map_unique_violation,
};

#[async_trait]
impl PasskeyStore for SqliteStore {
    async fn user_handle(&self, user: UserId, candidate: &[u8]) -> Result<Vec<u8>, StoreError> {
        sqlx::query(INSERT_USER_HANDLE).bind(user.0.to_string()).bind(candidate).execute(&self.pool).await?;
        Ok(sqlx::query_scalar(USER_HANDLE).bind(user.0.to_string()).fetch_one(&self.pool).await?)
    }

    async fn passkeys_for_user(&self, user: UserId) -> Result<Vec<PasskeyRecord>, StoreError> {
        sqlx::query(PASSKEYS_OF_USER.as_str())
            .bind(user.0.to_string())
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(passkey_from_row)
            .collect()
    }

    async fn passkey_by_credential_id(
        &self,
        credential_id: &[u8],
    ) -> Result<Option<PasskeyRecord>, StoreError> {
        sqlx::query(PASSKEY_BY_CREDENTIAL_ID.as_str())
            .bind(credential_id)
            .fetch_optional(&self.pool)
            .await?
            .as_ref()
            .map(passkey_from_row)
            .transpose()
    }

    async fn begin_registration(
        &self,
        c: RegistrationCeremony,
        proof: RegistrationProof,
        audit: AuditEvent,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        if let RegistrationProof::Approval { proof, redeemed } = &proof {
            consume_approval(&mut tx, proof, c.created_at).await?;
            self.append_audit(&mut tx, redeemed).await?;
        }
        sqlx::query(INSERT_REGISTRATION)
            .bind(c.id.0.to_string())
            .bind(c.user_id.0.to_string())
            .bind(c.app_id.0.to_string())
            .bind(&c.name)
            .bind(c.is_first_factor)
            .bind(&c.server_state)
            .bind(unix_micros(c.created_at))
            .bind(unix_micros(c.expires_at))
            .execute(&mut *tx)
            .await?;
        self.append_audit(&mut tx, &audit).await?;
        self.commit(tx).await
    }

    async fn registration(&self, id: RegistrationId) -> Result<Option<RegistrationCeremony>, StoreError> {
        sqlx::query(REGISTRATION_BY_ID.as_str())
            .bind(id.0.to_string())
            .fetch_optional(&self.pool)
            .await?
            .as_ref()
            .map(registration_from_row)
            .transpose()
    }

    async fn complete_registration(
        &self,
        ceremony: &RegistrationCeremony,
        p: PasskeyRecord,
        notice: (&str, String),
        audit: AuditEvent,
    ) -> Result<PasskeyRecord, StoreError> {
        let mut tx = self.begin_write().await?;
        let used = sqlx::query(DELETE_REGISTRATION).bind(ceremony.id.0.to_string()).execute(&mut *tx).await?;
        if used.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        if ceremony.is_first_factor && has_any_factor(&mut tx, p.user_id).await? {
            return Err(StoreError::Conflict(Conflict::SecondDevice));
        }
        insert_passkey(&mut tx, &p).await?;
        sqlx::query(NOTIFY_DEVICES)
            .bind(p.user_id.0.to_string())
            .bind(notice.0)
            .bind(&notice.1)
            .bind(unix_micros(p.created_at))
            .execute(&mut *tx)
            .await?;
        self.append_audit(&mut tx, &audit).await?;
        self.commit(tx).await?;
        Ok(p)
    }

    async fn rename_passkey(
        &self,
        user: UserId,
        id: PasskeyId,
        name: &str,
        audit: AuditEvent,
    ) -> Result<PasskeyRecord, StoreError> {
        let mut tx = self.begin_write().await?;
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE passkeys SET name = $3 WHERE id = $1 AND user_id = $2 AND revoked_at IS NULL
             RETURNING {PASSKEY_COLUMNS}"
        )))
        .bind(id.0.to_string())
        .bind(user.0.to_string())
        .bind(name)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or(StoreError::NotFound)?;
        let renamed = passkey_from_row(&row)?;
        self.append_audit(&mut tx, &audit).await?;
        self.commit(tx).await?;
        Ok(renamed)
    }

    async fn purge_expired_registrations(&self, now: OffsetDateTime) -> Result<u64, StoreError> {
        Ok(sqlx::query(PURGE_EXPIRED_REGISTRATIONS)
            .bind(unix_micros(now))
            .execute(&self.pool)
            .await?
            .rows_affected())
    }

    async fn revoke_passkey(
        &self,
        user: UserId,
        id: PasskeyId,
        at: OffsetDateTime,
        audit: AuditEvent,
    ) -> Result<PasskeyRecord, StoreError> {
        let mut tx = self.begin_write().await?;
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE passkeys SET revoked_at = $3 WHERE id = $1 AND user_id = $2 AND revoked_at IS NULL
             RETURNING {PASSKEY_COLUMNS}"
        )))
        .bind(id.0.to_string())
        .bind(user.0.to_string())
        .bind(unix_micros(at))
        .fetch_optional(&mut *tx)
        .await?
        .ok_or(StoreError::NotFound)?;
        let revoked = passkey_from_row(&row)?;
        self.append_audit(&mut tx, &audit).await?;
        self.commit(tx).await?;
        Ok(revoked)
    }
}

async fn has_any_factor(conn: &mut SqliteConnection, user: UserId) -> Result<bool, StoreError> {
    Ok(sqlx::query_scalar(HAS_ANY_FACTOR).bind(user.0.to_string()).fetch_one(&mut *conn).await?)
}

async fn insert_passkey(conn: &mut SqliteConnection, p: &PasskeyRecord) -> Result<(), StoreError> {
    sqlx::query(INSERT_PASSKEY)
        .bind(p.id.0.to_string())
        .bind(p.user_id.0.to_string())
        .bind(&p.credential_id)
        .bind(&p.name)
        .bind(&p.static_state)
        .bind(&p.dynamic_state)
        .bind(p.transports)
        .bind(&p.aaguid)
        .bind(p.backup_eligible)
        .bind(p.backed_up)
        .bind(p.sign_count)
        .bind(unix_micros(p.created_at))
        .execute(&mut *conn)
        .await
        .map_err(map_unique_violation)?;
    Ok(())
}
