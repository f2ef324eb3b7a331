//! OIDC clients and their assertions' single-use ids.

use async_trait::async_trait;
use sqlx::Connection;
use time::OffsetDateTime;

use super::PgStore;
use crate::audit::AuditEvent;
use crate::oidc::clients::{Client, ClientId};
use crate::store::oidc_clients::{
    ALL_CLIENTS, CLIENT_BY_ID, ClientText, INSERT_CLIENT, PURGE_EXPIRED_JTIS, REMEMBER_JTI, REVOKE_CLIENT,
    client_from_row,
};
use crate::store::{ClientStore, StoreError};

#[async_trait]
impl ClientStore for PgStore {
    async fn create_oidc_client(&self, client: Client, audit: AuditEvent) -> Result<Client, StoreError> {
        let text = ClientText::of(&client)?;
        let mut conn = self.conn().await?;
        let mut tx = conn.begin().await?;
        sqlx::query(INSERT_CLIENT.as_str())
            .bind(&client.client_id.0)
            .bind(&client.name)
            .bind(&text.redirect_uris)
            .bind(client.auth_method.as_str())
            .bind(&client.secret_hash)
            .bind(&text.jwks)
            .bind(&text.jwks_uri)
            .bind(client.id_token_alg.as_str())
            .bind(client.created_at)
            .bind(&client.created_by)
            .bind(text.ciba_mode)
            .bind(&text.ciba_notification_endpoint)
            .execute(&mut *tx)
            .await?;
        self.append_audit(&mut tx, &audit).await?;
        self.commit(tx).await?;
        Ok(client)
    }

    async fn revoke_oidc_client(
        &self,
        client_id: &ClientId,
        at: OffsetDateTime,
        audit: AuditEvent,
    ) -> Result<Client, StoreError> {
        let mut conn = self.conn().await?;
        let mut tx = conn.begin().await?;
        let row = sqlx::query(REVOKE_CLIENT.as_str())
            .bind(&client_id.0)
            .bind(at)
            .fetch_optional(&mut *tx)
            .await?
            .ok_or(StoreError::NotFound)?;
        let client = client_from_row(&row)?;
        self.append_audit(&mut tx, &audit).await?;
        self.commit(tx).await?;
        Ok(client)
    }

    async fn oidc_client(&self, client_id: &ClientId) -> Result<Option<Client>, StoreError> {
        sqlx::query(CLIENT_BY_ID.as_str())
            .bind(&client_id.0)
            .fetch_optional(&mut *self.conn().await?)
            .await?
            .as_ref()
            .map(client_from_row)
            .transpose()
    }

    async fn list_oidc_clients(&self) -> Result<Vec<Client>, StoreError> {
        sqlx::query(ALL_CLIENTS.as_str())
            .fetch_all(&mut *self.conn().await?)
            .await?
            .iter()
            .map(client_from_row)
            .collect()
    }

    async fn use_client_assertion_jti(
        &self,
        client_id: &ClientId,
        jti: &str,
        expires_at: OffsetDateTime,
        now: OffsetDateTime,
        replay_audit: AuditEvent,
    ) -> Result<bool, StoreError> {
        let mut conn = self.conn().await?;
        let mut tx = conn.begin().await?;
        sqlx::query(PURGE_EXPIRED_JTIS).bind(now).execute(&mut *tx).await?;
        let inserted = sqlx::query(REMEMBER_JTI)
            .bind(&client_id.0)
            .bind(jti)
            .bind(expires_at)
            .execute(&mut *tx)
            .await?
            .rows_affected()
            == 1;
        if !inserted {
            self.append_audit(&mut tx, &replay_audit).await?;
        }
        self.commit(tx).await?;
        Ok(inserted)
    }
}
