//! Keycloak's CIBA HTTP authentication channel.

use async_trait::async_trait;
use sqlx::{Connection, PgConnection};
use time::OffsetDateTime;

use super::PgStore;
use crate::audit::AuditEvent;
use crate::ids::{AppId, ChallengeId, UserId};
use crate::store::keycloak::{
    Admission, FINISH_REQUEST, INSERT_REALM_APP, INSERT_REQUEST, KeycloakRequestRecord, KeycloakStore,
    PIN_SUBJECT, PURGE_REQUESTS, REALM_APP, REQUEST_BY_JTI, SUBJECT_USER, finished_outcome, request_from_row,
};
use crate::store::{AppRecord, CallbackJob, Conflict, StoreError};

async fn pinned_user(
    conn: &mut PgConnection,
    issuer: &str,
    subject: &str,
) -> Result<Option<UserId>, StoreError> {
    let id: Option<uuid::Uuid> =
        sqlx::query_scalar(SUBJECT_USER).bind(issuer).bind(subject).fetch_optional(conn).await?;
    Ok(id.map(UserId))
}

#[async_trait]
impl KeycloakStore for PgStore {
    async fn keycloak_realm_app(&self, realm_issuer: &str) -> Result<Option<AppId>, StoreError> {
        let id: Option<uuid::Uuid> =
            sqlx::query_scalar(REALM_APP).bind(realm_issuer).fetch_optional(&mut *self.conn().await?).await?;
        Ok(id.map(AppId))
    }

    async fn create_keycloak_realm_app(
        &self,
        realm_issuer: &str,
        app: AppRecord,
        audit: AuditEvent,
    ) -> Result<AppId, StoreError> {
        let mut conn = self.conn().await?;
        let mut tx = conn.begin().await?;
        let linked = match super::apps::insert_app(&mut tx, &app).await {
            Ok(_) => {
                sqlx::query(INSERT_REALM_APP).bind(realm_issuer).bind(app.id.0).execute(&mut *tx).await?
            }
            // A taken name: perhaps another instance made the realm's app first.
            Err(StoreError::Conflict(Conflict::AppName)) => {
                drop(tx);
                drop(conn);
                return self
                    .keycloak_realm_app(realm_issuer)
                    .await?
                    .ok_or(StoreError::Conflict(Conflict::AppName));
            }
            Err(error) => return Err(error),
        };
        if linked.rows_affected() == 0 {
            drop(tx);
            drop(conn);
            return self.keycloak_realm_app(realm_issuer).await?.ok_or(StoreError::NotFound);
        }
        self.append_audit(&mut tx, &audit).await?;
        self.commit(tx).await?;
        Ok(app.id)
    }

    async fn admit_keycloak_request(&self, r: &KeycloakRequestRecord) -> Result<Admission, StoreError> {
        let mut conn = self.conn().await?;
        let mut tx = conn.begin().await?;
        let spent = sqlx::query(INSERT_REQUEST.as_str())
            .bind(&r.realm_issuer)
            .bind(&r.jti)
            .bind(&r.subject)
            .bind(&r.client_id)
            .bind(r.user_id.map(|u| u.0))
            .bind(r.created_at)
            .bind(r.expires_at)
            .execute(&mut *tx)
            .await?;
        if spent.rows_affected() == 0 {
            return Ok(Admission::Replayed);
        }
        if let Some(user) = r.user_id {
            sqlx::query(PIN_SUBJECT)
                .bind(&r.realm_issuer)
                .bind(&r.subject)
                .bind(user.0)
                .bind(r.created_at)
                .execute(&mut *tx)
                .await?;
        }
        // Read after pinning: a pin another request made first (or concurrently) decides.
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
        let mut conn = self.conn().await?;
        let mut tx = conn.begin().await?;
        let finished = sqlx::query(FINISH_REQUEST)
            .bind(realm_issuer)
            .bind(jti)
            .bind(challenge.map(|c| c.0))
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
            .fetch_optional(&mut *self.conn().await?)
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
        pinned_user(&mut *self.conn().await?, realm_issuer, subject).await
    }

    async fn purge_keycloak_requests(&self, before: OffsetDateTime) -> Result<u64, StoreError> {
        let purged = sqlx::query(PURGE_REQUESTS).bind(before).execute(&mut *self.conn().await?).await?;
        Ok(purged.rows_affected())
    }
}
