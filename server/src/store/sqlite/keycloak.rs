//! Keycloak's CIBA HTTP authentication channel.

use async_trait::async_trait;
use sqlx::SqliteConnection;
use time::OffsetDateTime;

use super::SqliteStore;
use crate::audit::AuditEvent;
use crate::clock::unix_micros;
use crate::ids::{AppId, ChallengeId, UserId};
use crate::store::keycloak::{
    Admission, FINISH_REQUEST, INSERT_REALM_APP, INSERT_REQUEST, KeycloakRequestRecord, KeycloakStore,
    PIN_SUBJECT, PURGE_REQUESTS, REALM_APP, REQUEST_BY_JTI, SUBJECT_USER, finished_outcome, request_from_row,
};
use crate::store::{AppRecord, CallbackJob, Conflict, StoreError};

fn parse_id(id: Option<String>, what: &str) -> Result<Option<uuid::Uuid>, StoreError> {
    id.map(|id| id.parse().map_err(|e| StoreError::Corrupt(format!("{what}: {e}")))).transpose()
}

async fn pinned_user(
    conn: &mut SqliteConnection,
    issuer: &str,
    subject: &str,
) -> Result<Option<UserId>, StoreError> {
    let id: Option<String> =
        sqlx::query_scalar(SUBJECT_USER).bind(issuer).bind(subject).fetch_optional(conn).await?;
    Ok(parse_id(id, "keycloak subject user id")?.map(UserId))
}

#[async_trait]
impl KeycloakStore for SqliteStore {
    async fn keycloak_realm_app(&self, realm_issuer: &str) -> Result<Option<AppId>, StoreError> {
        let id: Option<String> =
            sqlx::query_scalar(REALM_APP).bind(realm_issuer).fetch_optional(&self.pool).await?;
        Ok(parse_id(id, "keycloak realm app id")?.map(AppId))
    }

    async fn create_keycloak_realm_app(
        &self,
        realm_issuer: &str,
        app: AppRecord,
        audit: AuditEvent,
    ) -> Result<AppId, StoreError> {
        let mut tx = self.begin_write().await?;
        let linked = match super::apps::insert_app(&mut tx, &app).await {
            Ok(_) => {
                sqlx::query(INSERT_REALM_APP)
                    .bind(realm_issuer)
                    .bind(app.id.0.to_string())
                    .execute(&mut *tx)
                    .await?
            }
            // A taken name: the realm's app (made before) or some other app's name.
            Err(StoreError::Conflict(Conflict::AppName)) => {
                drop(tx);
                return self
                    .keycloak_realm_app(realm_issuer)
                    .await?
                    .ok_or(StoreError::Conflict(Conflict::AppName));
            }
            Err(error) => return Err(error),
        };
        if linked.rows_affected() == 0 {
            drop(tx);
            return self.keycloak_realm_app(realm_issuer).await?.ok_or(StoreError::NotFound);
        }
        self.append_audit(&mut tx, &audit).await?;
        self.commit(tx).await?;
        Ok(app.id)
    }

    async fn admit_keycloak_request(&self, r: &KeycloakRequestRecord) -> Result<Admission, StoreError> {
        let mut tx = self.begin_write().await?;
        let spent = sqlx::query(INSERT_REQUEST.as_str())
            .bind(&r.realm_issuer)
            .bind(&r.jti)
            .bind(&r.subject)
            .bind(&r.client_id)
            .bind(r.user_id.map(|u| u.0.to_string()))
            .bind(unix_micros(r.created_at))
            .bind(unix_micros(r.expires_at))
            .execute(&mut *tx)
            .await?;
        if spent.rows_affected() == 0 {
            return Ok(Admission::Replayed);
        }
        if let Some(user) = r.user_id {
            sqlx::query(PIN_SUBJECT)
                .bind(&r.realm_issuer)
                .bind(&r.subject)
                .bind(user.0.to_string())
                .bind(unix_micros(r.created_at))
                .execute(&mut *tx)
                .await?;
        }
        let pinned = pinned_user(&mut tx, &r.realm_issuer, &r.subject).await?;
        if pinned.is_some() && pinned != r.user_id {
            return Ok(Admission::PinnedToOther);
        }
        self.commit(tx).await?;
        Ok(Admission::Admitted)
    }

    async fn finish_keycloak_request(
        &self,
        realm_issuer: &str,
        jti: &str,
        challenge: Option<ChallengeId>,
        callback: Option<&CallbackJob>,
        audit: AuditEvent,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        let finished = sqlx::query(FINISH_REQUEST)
            .bind(realm_issuer)
            .bind(jti)
            .bind(challenge.map(|c| c.0.to_string()))
            .bind(finished_outcome(challenge).as_str())
            .execute(&mut *tx)
            .await?;
        if finished.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        if let Some(job) = callback {
            super::callbacks::insert(&mut tx, job).await?;
        }
        self.append_audit(&mut tx, &audit).await?;
        self.commit(tx).await
    }

    async fn keycloak_request(
        &self,
        realm_issuer: &str,
        jti: &str,
    ) -> Result<Option<KeycloakRequestRecord>, StoreError> {
        sqlx::query(REQUEST_BY_JTI.as_str())
            .bind(realm_issuer)
            .bind(jti)
            .fetch_optional(&self.pool)
            .await?
            .as_ref()
            .map(request_from_row)
            .transpose()
    }

    async fn keycloak_subject(
        &self,
        realm_issuer: &str,
        subject: &str,
    ) -> Result<Option<UserId>, StoreError> {
        pinned_user(&mut *self.pool.acquire().await?, realm_issuer, subject).await
    }

    async fn purge_keycloak_requests(&self, before: OffsetDateTime) -> Result<u64, StoreError> {
        let purged = sqlx::query(PURGE_REQUESTS).bind(unix_micros(before)).execute(&self.pool).await?;
        Ok(purged.rows_affected())
    }
}
