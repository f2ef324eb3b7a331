//! Apps and their API keys.

use async_trait::async_trait;
use sqlx::Connection;
use time::OffsetDateTime;

use super::PgStore;
use crate::audit::AuditEvent;
use crate::ids::AppId;
use crate::store::apps::{ALL_APPS, APP_BY_KEY_ID, APP_BY_NAME, INSERT_APP, REVOKE_APP, app_from_row};
use crate::store::{AppRecord, AppStore, StoreError, map_unique_violation};

/// Inserts `app` in the caller's transaction; a taken name is `Conflict::AppName`.
pub(super) async fn insert_app(conn: &mut sqlx::PgConnection, app: &AppRecord) -> Result<(), StoreError> {
    sqlx::query(INSERT_APP)
        .bind(app.id.0)
        .bind(&app.name)
        .bind(&app.key_id)
        .bind(&app.key_hash)
        .bind(app.scopes.to_string())
        .bind(app.created_at)
        .execute(conn)
        .await
        .map_err(map_unique_violation)?;
    Ok(())
}

#[async_trait]
impl AppStore for PgStore {
    async fn create_app(&self, app: AppRecord, audit: AuditEvent) -> Result<AppRecord, StoreError> {
        let mut conn = self.conn().await?;
        let mut tx = conn.begin().await?;
        insert_app(&mut tx, &app).await?;
        self.append_audit(&mut tx, &audit).await?;
        self.commit(tx).await?;
        Ok(app)
    }

    async fn revoke_app(
        &self,
        id: AppId,
        at: OffsetDateTime,
        audit: AuditEvent,
    ) -> Result<AppRecord, StoreError> {
        let mut conn = self.conn().await?;
        let mut tx = conn.begin().await?;
        let row = sqlx::query(REVOKE_APP.as_str())
            .bind(id.0)
            .bind(at)
            .fetch_optional(&mut *tx)
            .await?
            .ok_or(StoreError::NotFound)?;
        let app = app_from_row(&row)?;
        self.append_audit(&mut tx, &audit).await?;
        self.commit(tx).await?;
        Ok(app)
    }

    async fn app_by_key_id(&self, key_id: &str) -> Result<Option<AppRecord>, StoreError> {
        sqlx::query(APP_BY_KEY_ID.as_str())
            .bind(key_id)
            .fetch_optional(&mut *self.conn().await?)
            .await?
            .as_ref()
            .map(app_from_row)
            .transpose()
    }

    async fn app_by_name(&self, name: &str) -> Result<Option<AppRecord>, StoreError> {
        sqlx::query(APP_BY_NAME.as_str())
            .bind(name)
            .fetch_optional(&mut *self.conn().await?)
            .await?
            .as_ref()
            .map(app_from_row)
            .transpose()
    }

    async fn list_apps(&self) -> Result<Vec<AppRecord>, StoreError> {
        sqlx::query(ALL_APPS.as_str())
            .fetch_all(&mut *self.conn().await?)
            .await?
            .iter()
            .map(app_from_row)
            .collect()
    }
}
