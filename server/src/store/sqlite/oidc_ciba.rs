//! CIBA backchannel authentication requests.

use async_trait::async_trait;
use sqlx::Row;
use time::OffsetDateTime;

use super::SqliteStore;
use super::oidc_flow::{finish_with_code, insert_authorization, insert_token};
use crate::audit::AuditEvent;
use crate::clock::unix_micros;
use crate::ids::AuthorizationId;
use crate::oidc::clients::ClientId;
use crate::store::oidc_ciba::{
    CIBA_BY_HASH, CIBA_POLLED, CODE_REDEEMED, INSERT_CIBA, REDEEM_CIBA, ciba_from_row,
};
use crate::store::{
    AccessTokenRecord, AuthorizationRecord, CallbackJob, CibaRequestRecord, CibaStore, CodeRecord, StoreError,
};

#[async_trait]
impl CibaStore for SqliteStore {
    async fn create_ciba_request(
        &self,
        r: &CibaRequestRecord,
        sign_in: Option<&AuthorizationRecord>,
        ping: Option<&CallbackJob>,
        audit: AuditEvent,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        if let Some(sign_in) = sign_in {
            insert_authorization(&mut tx, sign_in).await?;
        }
        sqlx::query(INSERT_CIBA.as_str())
            .bind(&r.request_hash)
            .bind(&r.client_id.0)
            .bind(r.authorization_id.map(|id| id.0.to_string()))
            .bind(&r.refusal)
            .bind(r.interval_secs)
            .bind(unix_micros(r.next_poll_at))
            .bind(unix_micros(r.created_at))
            .bind(unix_micros(r.expires_at))
            .execute(&mut *tx)
            .await?;
        if let Some(ping) = ping {
            super::callbacks::insert(&mut tx, ping).await?;
        }
        self.append_audit(&mut tx, &audit).await?;
        self.commit(tx).await
    }

    async fn ciba_request(&self, request_hash: &[u8]) -> Result<Option<CibaRequestRecord>, StoreError> {
        sqlx::query(CIBA_BY_HASH.as_str())
            .bind(request_hash)
            .fetch_optional(&self.pool)
            .await?
            .as_ref()
            .map(ciba_from_row)
            .transpose()
    }

    async fn ciba_polled(
        &self,
        request_hash: &[u8],
        next_poll_at: OffsetDateTime,
        interval_secs: i32,
    ) -> Result<(), StoreError> {
        sqlx::query(CIBA_POLLED)
            .bind(request_hash)
            .bind(unix_micros(next_poll_at))
            .bind(interval_secs)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn redeem_ciba_request(
        &self,
        request_hash: &[u8],
        client: &ClientId,
        now: OffsetDateTime,
        code: &CodeRecord,
        token: &AccessTokenRecord,
        audit: AuditEvent,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        let row = sqlx::query(REDEEM_CIBA)
            .bind(request_hash)
            .bind(&client.0)
            .bind(unix_micros(now))
            .fetch_optional(&mut *tx)
            .await?
            .ok_or(StoreError::NotFound)?;
        let id: String = row.try_get("authorization_id")?;
        let id: uuid::Uuid = id.parse().map_err(|e| StoreError::Corrupt(format!("sign-in id: {e}")))?;
        finish_with_code(&mut tx, AuthorizationId(id), now, Some(code)).await?;
        sqlx::query(CODE_REDEEMED).bind(&code.code_hash).bind(unix_micros(now)).execute(&mut *tx).await?;
        insert_token(&mut tx, token).await?;
        self.append_audit(&mut tx, &audit).await?;
        self.commit(tx).await
    }
}
