//! The OpenID Connect provider's signing keys.

use async_trait::async_trait;
use sqlx::SqliteConnection;
use time::OffsetDateTime;

use super::SqliteStore;
use crate::audit::AuditEvent;
use crate::clock::unix_micros;
use crate::store::signing_keys::{
    ALL_KEYS, INSERT_KEY, REPLACE_JWK, REVOKE_KEY, Replacement, signing_key_from_row,
};
use crate::store::{SigningKeyRecord, SigningKeyStore, StoreError, map_unique_violation};

async fn insert_key(conn: &mut SqliteConnection, key: &SigningKeyRecord) -> Result<(), StoreError> {
    sqlx::query(INSERT_KEY)
        .bind(&key.kid)
        .bind(key.alg.as_str())
        .bind(key.generation)
        .bind(&key.public_jwk)
        .bind(&key.sealed_pkcs8)
        .bind(unix_micros(key.created_at))
        .bind(unix_micros(key.activates_at))
        .execute(&mut *conn)
        .await
        .map_err(map_unique_violation)?;
    Ok(())
}

#[async_trait]
impl SigningKeyStore for SqliteStore {
    async fn signing_keys(&self) -> Result<Vec<SigningKeyRecord>, StoreError> {
        sqlx::query(ALL_KEYS.as_str()).fetch_all(&self.pool).await?.iter().map(signing_key_from_row).collect()
    }

    async fn add_signing_key(&self, key: &SigningKeyRecord, audit: AuditEvent) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        insert_key(&mut tx, key).await?;
        self.append_audit(&mut tx, &audit).await?;
        self.commit(tx).await
    }

    async fn replace_signing_key_jwk(
        &self,
        kid: &str,
        expected: &str,
        public_jwk: &str,
    ) -> Result<bool, StoreError> {
        let done =
            sqlx::query(REPLACE_JWK).bind(kid).bind(expected).bind(public_jwk).execute(&self.pool).await?;
        Ok(done.rows_affected() == 1)
    }

    async fn revoke_signing_key(
        &self,
        kid: &str,
        at: OffsetDateTime,
        audit: AuditEvent,
        replacement: Option<Replacement>,
    ) -> Result<SigningKeyRecord, StoreError> {
        let mut tx = self.begin_write().await?;
        let row = sqlx::query(REVOKE_KEY.as_str())
            .bind(kid)
            .bind(unix_micros(at))
            .fetch_optional(&mut *tx)
            .await?
            .ok_or(StoreError::NotFound)?;
        let revoked = signing_key_from_row(&row)?;
        self.append_audit(&mut tx, &audit).await?;
        if let Some(replacement) = replacement {
            insert_key(&mut tx, &replacement.key).await?;
            self.append_audit(&mut tx, &replacement.audit).await?;
        }
        self.commit(tx).await?;
        Ok(revoked)
    }
}
