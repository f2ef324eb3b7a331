//! The admin plane's accounts and sessions.

use async_trait::async_trait;
use sqlx::{Connection, PgConnection};
use time::OffsetDateTime;

use super::PgStore;
use super::admin_passkeys::insert_admin_passkey;
use super::alerts::insert_alert;
use crate::alerts::AlertKind;
use crate::audit::{AuditEvent, Subject};
use crate::ids::AdminId;
use crate::store::admin::{
    ACTIVE_ADMINS, ADMIN_BY_HANDLE, ADMIN_BY_ID, ALL_ADMINS, AdminRecord, AdminSessionRecord, AdminStore,
    BOOTSTRAP_TOKEN, BootstrapSpend, CONSUME_STEP_UP, INSERT_ADMIN, INSERT_BOOTSTRAP_TOKEN, INSERT_SESSION,
    LOCK_ROSTER, REVOKE_SESSION, SESSION_WITH_ADMIN, SET_STEP_UP, SPEND_BOOTSTRAP_TOKEN, TOUCH_SESSION,
    admin_from_row, session_from_row,
};
use crate::store::admin_passkeys::{AdminPasskeyRecord, judge_bootstrap_token};
use crate::store::admin_requests::REVOKE_ALL_SESSIONS;
use crate::store::{StoreError, map_unique_violation};

pub(super) async fn insert_admin(conn: &mut PgConnection, a: &AdminRecord) -> Result<(), StoreError> {
    sqlx::query(INSERT_ADMIN.as_str())
        .bind(a.id.0)
        .bind(&a.name)
        .bind(a.role.as_str())
        .bind(a.status.as_str())
        .bind(&a.webauthn_handle)
        .bind(a.created_at)
        .bind(&a.created_by)
        .bind(a.removal_due_at)
        .bind(a.removed_at)
        .execute(conn)
        .await
        .map_err(map_unique_violation)?;
    Ok(())
}

/// Takes the roster lock for the rest of the transaction and counts the active admins.
pub(super) async fn lock_roster(conn: &mut PgConnection) -> Result<u32, StoreError> {
    sqlx::query(LOCK_ROSTER).execute(&mut *conn).await?;
    let count: i64 = sqlx::query_scalar(ACTIVE_ADMINS).fetch_one(conn).await?;
    Ok(u32::try_from(count).unwrap_or(u32::MAX))
}

#[async_trait]
impl AdminStore for PgStore {
    async fn create_admin(&self, admin: &AdminRecord, audit: AuditEvent) -> Result<(), StoreError> {
        let mut conn = self.conn().await?;
        let mut tx = conn.begin().await?;
        insert_admin(&mut tx, admin).await?;
        self.append_audit(&mut tx, &audit).await?;
        self.commit(tx).await
    }

    async fn admin(&self, id: AdminId) -> Result<Option<AdminRecord>, StoreError> {
        let row =
            sqlx::query(ADMIN_BY_ID.as_str()).bind(id.0).fetch_optional(&mut *self.conn().await?).await?;
        row.as_ref().map(admin_from_row).transpose()
    }

    async fn admin_by_handle(&self, handle: &[u8]) -> Result<Option<AdminRecord>, StoreError> {
        let row = sqlx::query(ADMIN_BY_HANDLE.as_str())
            .bind(handle)
            .fetch_optional(&mut *self.conn().await?)
            .await?;
        row.as_ref().map(admin_from_row).transpose()
    }

    async fn admins(&self) -> Result<Vec<AdminRecord>, StoreError> {
        let rows = sqlx::query(ALL_ADMINS.as_str()).fetch_all(&mut *self.conn().await?).await?;
        rows.iter().map(admin_from_row).collect()
    }

    async fn active_admin_count(&self) -> Result<u32, StoreError> {
        let count: i64 = sqlx::query_scalar(ACTIVE_ADMINS).fetch_one(&mut *self.conn().await?).await?;
        Ok(u32::try_from(count).unwrap_or(u32::MAX))
    }

    async fn create_bootstrap_token(
        &self,
        token_hash: &[u8],
        created_at: OffsetDateTime,
        expires_at: OffsetDateTime,
        audit: AuditEvent,
    ) -> Result<(), StoreError> {
        let mut conn = self.conn().await?;
        let mut tx = conn.begin().await?;
        sqlx::query(INSERT_BOOTSTRAP_TOKEN)
            .bind(token_hash)
            .bind(created_at)
            .bind(expires_at)
            .execute(&mut *tx)
            .await?;
        self.append_audit(&mut tx, &audit).await?;
        self.commit(tx).await
    }

    async fn spend_bootstrap_token(
        &self,
        token_hash: &[u8],
        now: OffsetDateTime,
        admin: &AdminRecord,
        passkey: &AdminPasskeyRecord,
        audit: AuditEvent,
    ) -> Result<BootstrapSpend, StoreError> {
        let mut conn = self.conn().await?;
        let mut tx = conn.begin().await?;
        let active = lock_roster(&mut tx).await?;
        let token: Option<(OffsetDateTime, Option<OffsetDateTime>)> =
            sqlx::query_as(BOOTSTRAP_TOKEN).bind(token_hash).fetch_optional(&mut *tx).await?;
        let found = token.map(|(expires_at, used_at)| (expires_at <= now, used_at.is_some()));
        let spend = judge_bootstrap_token(found, active);
        if spend != BootstrapSpend::Spent {
            return Ok(spend);
        }
        insert_admin(&mut tx, admin).await?;
        let spent = sqlx::query(SPEND_BOOTSTRAP_TOKEN)
            .bind(token_hash)
            .bind(now)
            .bind(admin.id.0)
            .execute(&mut *tx)
            .await?;
        if spent.rows_affected() == 0 {
            return Ok(BootstrapSpend::Used);
        }
        insert_admin_passkey(&mut tx, passkey).await?;
        let details = serde_json::json!({ "name": admin.name }).to_string();
        insert_alert(&mut tx, AlertKind::AdminBootstrapped, &Subject::Admin(admin.id), &details, now).await?;
        self.append_audit(&mut tx, &audit).await?;
        self.commit(tx).await?;
        Ok(BootstrapSpend::Spent)
    }

    async fn create_admin_session(
        &self,
        s: &AdminSessionRecord,
        audit: AuditEvent,
    ) -> Result<(), StoreError> {
        let mut conn = self.conn().await?;
        let mut tx = conn.begin().await?;
        sqlx::query(INSERT_SESSION.as_str())
            .bind(&s.id_hash)
            .bind(s.admin_id.0)
            .bind(s.created_at)
            .bind(s.last_seen_at)
            .bind(s.idle_expires_at)
            .bind(s.absolute_expires_at)
            .bind(s.step_up_at)
            .bind(s.revoked_at)
            .bind(&s.user_agent)
            .execute(&mut *tx)
            .await?;
        self.append_audit(&mut tx, &audit).await?;
        self.commit(tx).await
    }

    async fn admin_session(
        &self,
        id_hash: &[u8],
    ) -> Result<Option<(AdminSessionRecord, AdminRecord)>, StoreError> {
        let row = sqlx::query(SESSION_WITH_ADMIN.as_str())
            .bind(id_hash)
            .fetch_optional(&mut *self.conn().await?)
            .await?;
        row.as_ref().map(session_from_row).transpose()
    }

    async fn touch_admin_session(
        &self,
        id_hash: &[u8],
        now: OffsetDateTime,
        idle_expires_at: OffsetDateTime,
        seen_before: OffsetDateTime,
    ) -> Result<(), StoreError> {
        sqlx::query(TOUCH_SESSION)
            .bind(id_hash)
            .bind(now)
            .bind(idle_expires_at)
            .bind(seen_before)
            .execute(&mut *self.conn().await?)
            .await?;
        Ok(())
    }

    async fn revoke_admin_session(
        &self,
        id_hash: &[u8],
        now: OffsetDateTime,
        audit: AuditEvent,
    ) -> Result<bool, StoreError> {
        let mut conn = self.conn().await?;
        let mut tx = conn.begin().await?;
        let revoked = sqlx::query(REVOKE_SESSION).bind(id_hash).bind(now).execute(&mut *tx).await?;
        if revoked.rows_affected() == 0 {
            return Ok(false);
        }
        self.append_audit(&mut tx, &audit).await?;
        self.commit(tx).await?;
        Ok(true)
    }

    async fn revoke_all_admin_sessions(
        &self,
        id: AdminId,
        now: OffsetDateTime,
        audit: AuditEvent,
    ) -> Result<u64, StoreError> {
        let mut conn = self.conn().await?;
        let mut tx = conn.begin().await?;
        let ended = sqlx::query(REVOKE_ALL_SESSIONS).bind(id.0).bind(now).execute(&mut *tx).await?;
        self.append_audit(&mut tx, &audit).await?;
        self.commit(tx).await?;
        Ok(ended.rows_affected())
    }

    async fn set_admin_step_up(
        &self,
        id_hash: &[u8],
        at: OffsetDateTime,
        action: &str,
        audit: AuditEvent,
    ) -> Result<(), StoreError> {
        let mut conn = self.conn().await?;
        let mut tx = conn.begin().await?;
        let set = sqlx::query(SET_STEP_UP).bind(id_hash).bind(at).bind(action).execute(&mut *tx).await?;
        if set.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        self.append_audit(&mut tx, &audit).await?;
        self.commit(tx).await
    }

    async fn consume_admin_step_up(
        &self,
        id_hash: &[u8],
        fresh_since: OffsetDateTime,
        action: &str,
    ) -> Result<bool, StoreError> {
        let spent = sqlx::query(CONSUME_STEP_UP)
            .bind(id_hash)
            .bind(fresh_since)
            .bind(action)
            .execute(&mut *self.conn().await?)
            .await?;
        Ok(spent.rows_affected() == 1)
    }
}
