//! The OIDC authorization code flow.

use async_trait::async_trait;
use sqlx::SqliteConnection;
use time::OffsetDateTime;

use super::SqliteStore;
use crate::audit::AuditEvent;
use crate::clock::unix_micros;
use crate::ids::{AppId, AuthorizationId, ChallengeId};
use crate::oidc::clients::ClientId;
use crate::store::apps::INSERT_APP;
use crate::store::oidc_flow::{
    AUTHORIZATION_BY_ID, CLIENT_APP, CODE_BY_HASH, FINISH_AUTHORIZATION, INSERT_AUTHORIZATION,
    INSERT_CLIENT_APP, INSERT_CODE, INSERT_PUSHED, INSERT_TOKEN, PURGE_FLOW, REDEEM_CODE, REVOKE_CODE_TOKENS,
    SWITCH_AUTHORIZATION, TAKE_PUSHED, TOKEN_BY_JTI, USE_HINT, authorization_from_row, code_from_row,
    lost_race, pushed_from_row, token_from_row,
};
use crate::store::{
    AccessTokenRecord, AppRecord, AuthorizationRecord, AuthorizationSwitch, CodeRecord, OidcFlowStore,
    PushedRequest, StoreError, map_unique_violation,
};

#[async_trait]
impl OidcFlowStore for SqliteStore {
    async fn oidc_client_app(&self, client: &ClientId) -> Result<Option<AppId>, StoreError> {
        let id: Option<String> =
            sqlx::query_scalar(CLIENT_APP).bind(&client.0).fetch_optional(&self.pool).await?;
        id.map(|id| {
            id.parse().map(AppId).map_err(|e| StoreError::Corrupt(format!("oidc client app id: {e}")))
        })
        .transpose()
    }

    async fn create_oidc_client_app(
        &self,
        client: &ClientId,
        app: AppRecord,
        audit: AuditEvent,
    ) -> Result<AppId, StoreError> {
        let mut tx = self.begin_write().await?;
        let inserted = sqlx::query(INSERT_APP)
            .bind(app.id.0.to_string())
            .bind(&app.name)
            .bind(&app.key_id)
            .bind(&app.key_hash)
            .bind(app.scopes.to_string())
            .bind(unix_micros(app.created_at))
            .execute(&mut *tx)
            .await
            .map_err(map_unique_violation);
        if let Err(error) = inserted {
            // A taken name: perhaps another instance made the client's app first.
            drop(tx);
            return lost_race(error, client, self).await;
        }
        let linked = sqlx::query(INSERT_CLIENT_APP)
            .bind(&client.0)
            .bind(app.id.0.to_string())
            .execute(&mut *tx)
            .await?;
        if linked.rows_affected() == 0 {
            // Another instance gave the client its app first: keep that one, add nothing.
            drop(tx);
            return self.oidc_client_app(client).await?.ok_or(StoreError::NotFound);
        }
        self.append_audit(&mut tx, &audit).await?;
        self.commit(tx).await?;
        Ok(app.id)
    }

    async fn push_authorization_request(
        &self,
        r: &PushedRequest,
        audit: AuditEvent,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        sqlx::query(INSERT_PUSHED.as_str())
            .bind(&r.request_hash)
            .bind(&r.client_id.0)
            .bind(&r.params)
            .bind(unix_micros(r.created_at))
            .bind(unix_micros(r.expires_at))
            .execute(&mut *tx)
            .await?;
        self.append_audit(&mut tx, &audit).await?;
        self.commit(tx).await
    }

    async fn take_pushed_request(
        &self,
        request_hash: &[u8],
        client: &ClientId,
        now: OffsetDateTime,
    ) -> Result<Option<PushedRequest>, StoreError> {
        sqlx::query(TAKE_PUSHED.as_str())
            .bind(request_hash)
            .bind(&client.0)
            .bind(unix_micros(now))
            .fetch_optional(&self.pool)
            .await?
            .as_ref()
            .map(pushed_from_row)
            .transpose()
    }

    async fn create_authorization(
        &self,
        r: &AuthorizationRecord,
        audit: AuditEvent,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        insert_authorization(&mut tx, r).await?;
        self.append_audit(&mut tx, &audit).await?;
        self.commit(tx).await
    }

    async fn authorization(&self, id: AuthorizationId) -> Result<Option<AuthorizationRecord>, StoreError> {
        sqlx::query(AUTHORIZATION_BY_ID.as_str())
            .bind(id.0.to_string())
            .fetch_optional(&self.pool)
            .await?
            .as_ref()
            .map(authorization_from_row)
            .transpose()
    }

    async fn finish_authorization(
        &self,
        id: AuthorizationId,
        now: OffsetDateTime,
        code: Option<&CodeRecord>,
        audit: AuditEvent,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        finish_with_code(&mut tx, id, now, code).await?;
        self.append_audit(&mut tx, &audit).await?;
        self.commit(tx).await
    }

    async fn switch_authorization(
        &self,
        id: AuthorizationId,
        from: ChallengeId,
        to: &AuthorizationSwitch,
        audit: AuditEvent,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        let switched = sqlx::query(SWITCH_AUTHORIZATION)
            .bind(id.0.to_string())
            .bind(from.0.to_string())
            .bind(to.challenge_id.0.to_string())
            .bind(&to.request)
            .bind(&to.page_secret_sealed)
            .bind(unix_micros(to.expires_at))
            .execute(&mut *tx)
            .await?;
        if switched.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        self.append_audit(&mut tx, &audit).await?;
        self.commit(tx).await
    }

    async fn oidc_code(&self, code_hash: &[u8]) -> Result<Option<CodeRecord>, StoreError> {
        sqlx::query(CODE_BY_HASH.as_str())
            .bind(code_hash)
            .fetch_optional(&self.pool)
            .await?
            .as_ref()
            .map(code_from_row)
            .transpose()
    }

    async fn redeem_oidc_code(
        &self,
        code_hash: &[u8],
        client: &ClientId,
        now: OffsetDateTime,
        token: &AccessTokenRecord,
        audit: AuditEvent,
    ) -> Result<CodeRecord, StoreError> {
        let mut tx = self.begin_write().await?;
        let row = sqlx::query(REDEEM_CODE.as_str())
            .bind(code_hash)
            .bind(&client.0)
            .bind(unix_micros(now))
            .fetch_optional(&mut *tx)
            .await?
            .ok_or(StoreError::NotFound)?;
        let code = code_from_row(&row)?;
        insert_token(&mut tx, token).await?;
        self.append_audit(&mut tx, &audit).await?;
        self.commit(tx).await?;
        Ok(code)
    }

    async fn revoke_code_tokens(
        &self,
        code_hash: &[u8],
        now: OffsetDateTime,
        audit: AuditEvent,
    ) -> Result<u64, StoreError> {
        let mut tx = self.begin_write().await?;
        let revoked =
            sqlx::query(REVOKE_CODE_TOKENS).bind(code_hash).bind(unix_micros(now)).execute(&mut *tx).await?;
        self.append_audit(&mut tx, &audit).await?;
        self.commit(tx).await?;
        Ok(revoked.rows_affected())
    }

    async fn access_token(&self, jti: &str) -> Result<Option<AccessTokenRecord>, StoreError> {
        sqlx::query(TOKEN_BY_JTI.as_str())
            .bind(jti)
            .fetch_optional(&self.pool)
            .await?
            .as_ref()
            .map(token_from_row)
            .transpose()
    }

    async fn use_upstream_hint(
        &self,
        hint_hash: &[u8],
        expires_at: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        let used =
            sqlx::query(USE_HINT).bind(hint_hash).bind(unix_micros(expires_at)).execute(&self.pool).await?;
        Ok(used.rows_affected() == 1)
    }

    async fn purge_oidc_flow(&self, before: OffsetDateTime) -> Result<u64, StoreError> {
        let mut tx = self.begin_write().await?;
        let mut purged = 0;
        for statement in PURGE_FLOW {
            purged +=
                sqlx::query(statement).bind(unix_micros(before)).execute(&mut *tx).await?.rows_affected();
        }
        tx.commit().await?;
        Ok(purged)
    }
}

/// Inserts a sign-in in the caller's transaction.
pub(super) async fn insert_authorization(
    conn: &mut SqliteConnection,
    r: &AuthorizationRecord,
) -> Result<(), StoreError> {
    sqlx::query(INSERT_AUTHORIZATION.as_str())
        .bind(r.id.0.to_string())
        .bind(&r.client_id.0)
        .bind(r.user_id.0.to_string())
        .bind(&r.request)
        .bind(r.challenge_id.0.to_string())
        .bind(&r.page_secret_sealed)
        .bind(&r.browser_hash)
        .bind(unix_micros(r.created_at))
        .bind(unix_micros(r.expires_at))
        .execute(conn)
        .await?;
    Ok(())
}

/// Finishes an unfinished sign-in once (`NotFound` if finished already) with the code it
/// yields, in the caller's transaction.
pub(super) async fn finish_with_code(
    conn: &mut SqliteConnection,
    id: AuthorizationId,
    now: OffsetDateTime,
    code: Option<&CodeRecord>,
) -> Result<(), StoreError> {
    let finished = sqlx::query(FINISH_AUTHORIZATION)
        .bind(id.0.to_string())
        .bind(unix_micros(now))
        .execute(&mut *conn)
        .await?;
    if finished.rows_affected() == 0 {
        return Err(StoreError::NotFound);
    }
    if let Some(c) = code {
        sqlx::query(INSERT_CODE.as_str())
            .bind(&c.code_hash)
            .bind(c.authorization_id.0.to_string())
            .bind(&c.client_id.0)
            .bind(c.user_id.0.to_string())
            .bind(&c.grant_details)
            .bind(unix_micros(c.created_at))
            .bind(unix_micros(c.expires_at))
            .execute(conn)
            .await?;
    }
    Ok(())
}

/// Records an access token in the caller's transaction.
pub(super) async fn insert_token(
    conn: &mut SqliteConnection,
    token: &AccessTokenRecord,
) -> Result<(), StoreError> {
    sqlx::query(INSERT_TOKEN.as_str())
        .bind(&token.jti)
        .bind(&token.code_hash)
        .bind(&token.client_id.0)
        .bind(token.user_id.0.to_string())
        .bind(unix_micros(token.expires_at))
        .execute(conn)
        .await?;
    Ok(())
}
