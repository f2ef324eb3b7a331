//! Four-eyes requests and roster changes.

use async_trait::async_trait;
use sqlx::SqliteConnection;
use time::OffsetDateTime;

use super::SqliteStore;
use super::admin::{insert_admin, lock_roster};
use super::alerts::insert_alert;
use crate::admin::model::{AdminStatus, Role};
use crate::alerts::AlertKind;
use crate::audit::{AuditEvent, Subject};
use crate::clock::unix_micros;
use crate::ids::{AdminId, AdminRequestId};
use crate::store::AdminRecord;
use crate::store::admin::CONSUME_STEP_UP;
use crate::store::admin_requests::{
    ADMIN_BY_NAME, ADMIN_FOR_CHANGE, APPLIED, APPLY_REFUSED, APPROVE, AdminRequestRecord, AdminRequestStore,
    Approval, CANCEL, CANCEL_REMOVAL, DELETE_INVITATIONS, EXPIRE, INSERT_INVITATION, INSERT_REQUEST, REJECT,
    REMOVE_INVITED, REQUEST_BY_ID, REQUEST_PAGE, REVOKE_ALL_SESSIONS, RequestCursor, RosterChange,
    SCHEDULE_REMOVAL, SET_ROLE, Transition, first_page, request_from_row, roster_plan, target_from_row,
};
use crate::store::{Conflict, StoreError};

/// The admin a roster change is about, read under the roster lock, with the active count.
async fn locked_target(
    conn: &mut SqliteConnection,
    id: AdminId,
) -> Result<(u32, Option<AdminRecord>), StoreError> {
    let active = lock_roster(conn).await?;
    let row =
        sqlx::query(ADMIN_FOR_CHANGE.as_str()).bind(id.0.to_string()).fetch_optional(&mut *conn).await?;
    Ok((active, target_from_row(row.as_ref())?))
}

#[async_trait]
impl AdminRequestStore for SqliteStore {
    async fn insert_admin_request(
        &self,
        r: &AdminRequestRecord,
        audit: AuditEvent,
        alert_details: &str,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        sqlx::query(INSERT_REQUEST.as_str())
            .bind(r.id.0.to_string())
            .bind(r.kind.as_str())
            .bind(&r.payload)
            .bind(r.state.as_str())
            .bind(r.requested_by.0.to_string())
            .bind(unix_micros(r.requested_at))
            .bind(unix_micros(r.expires_at))
            .bind(r.decided_by.map(|a| a.0.to_string()))
            .bind(r.decided_at.map(unix_micros))
            .bind(r.applied_at.map(unix_micros))
            .bind(&r.result)
            .execute(&mut *tx)
            .await?;
        let subject = Subject::AdminRequest(r.id);
        insert_alert(&mut tx, AlertKind::AdminRequestPending, &subject, alert_details, r.requested_at)
            .await?;
        self.append_audit(&mut tx, &audit).await?;
        self.commit(tx).await
    }

    async fn admin_request(&self, id: AdminRequestId) -> Result<Option<AdminRequestRecord>, StoreError> {
        let row =
            sqlx::query(REQUEST_BY_ID.as_str()).bind(id.0.to_string()).fetch_optional(&self.pool).await?;
        row.as_ref().map(request_from_row).transpose()
    }

    async fn admin_requests(
        &self,
        state: Option<crate::admin::model::RequestState>,
        before: Option<RequestCursor>,
        limit: u32,
    ) -> Result<Vec<AdminRequestRecord>, StoreError> {
        let (at, id) = before.unwrap_or_else(first_page);
        let rows = sqlx::query(REQUEST_PAGE.as_str())
            .bind(state.map(|s| s.as_str()))
            .bind(unix_micros(at))
            .bind(id.0.to_string())
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(request_from_row).collect()
    }

    async fn approve_admin_request(
        &self,
        id: AdminRequestId,
        approver: AdminId,
        session_hash: &[u8],
        fresh_since: OffsetDateTime,
        step_up_action: &str,
        now: OffsetDateTime,
        audit: AuditEvent,
    ) -> Result<Approval, StoreError> {
        let mut tx = self.begin_write().await?;
        let spent = sqlx::query(CONSUME_STEP_UP)
            .bind(session_hash)
            .bind(unix_micros(fresh_since))
            .bind(step_up_action)
            .execute(&mut *tx)
            .await?;
        if spent.rows_affected() != 1 {
            return Ok(Approval::StepUpMissing);
        }
        let approved = sqlx::query(APPROVE)
            .bind(id.0.to_string())
            .bind(approver.0.to_string())
            .bind(unix_micros(now))
            .execute(&mut *tx)
            .await?;
        if approved.rows_affected() != 1 {
            // Dropping the transaction rolls the spent step-up back too.
            return Ok(Approval::NotPending);
        }
        self.append_audit(&mut tx, &audit).await?;
        self.commit(tx).await?;
        Ok(Approval::Approved)
    }

    async fn transition_admin_request(
        &self,
        id: AdminRequestId,
        transition: &Transition,
        now: OffsetDateTime,
        audit: AuditEvent,
    ) -> Result<bool, StoreError> {
        let query = match transition {
            Transition::Reject { by } => {
                sqlx::query(REJECT).bind(id.0.to_string()).bind(by.0.to_string()).bind(unix_micros(now))
            }
            Transition::Cancel { by } => {
                sqlx::query(CANCEL).bind(id.0.to_string()).bind(by.0.to_string()).bind(unix_micros(now))
            }
            Transition::Expire => sqlx::query(EXPIRE).bind(id.0.to_string()).bind(unix_micros(now)),
            Transition::Applied { result } => {
                sqlx::query(APPLIED).bind(id.0.to_string()).bind(unix_micros(now)).bind(result.clone())
            }
            Transition::ApplyRefused { result } => {
                sqlx::query(APPLY_REFUSED).bind(id.0.to_string()).bind(result.clone())
            }
        };
        let mut tx = self.begin_write().await?;
        if query.execute(&mut *tx).await?.rows_affected() != 1 {
            return Ok(false);
        }
        self.append_audit(&mut tx, &audit).await?;
        self.commit(tx).await?;
        Ok(true)
    }

    async fn set_admin_role(
        &self,
        id: AdminId,
        role: Role,
        audit: AuditEvent,
    ) -> Result<RosterChange, StoreError> {
        let mut tx = self.begin_write().await?;
        let (active, target) = locked_target(&mut tx, id).await?;
        let plan = roster_plan(active, target.as_ref(), Some(role));
        if plan != RosterChange::Changed {
            return Ok(plan);
        }
        sqlx::query(SET_ROLE).bind(id.0.to_string()).bind(role.as_str()).execute(&mut *tx).await?;
        self.append_audit(&mut tx, &audit).await?;
        self.commit(tx).await?;
        Ok(RosterChange::Changed)
    }

    async fn schedule_admin_removal(
        &self,
        id: AdminId,
        due_at: OffsetDateTime,
        now: OffsetDateTime,
        audit: AuditEvent,
        alert_details: &str,
    ) -> Result<RosterChange, StoreError> {
        let mut tx = self.begin_write().await?;
        let (active, target) = locked_target(&mut tx, id).await?;
        let plan = roster_plan(active, target.as_ref(), None);
        if plan != RosterChange::Changed {
            return Ok(plan);
        }
        sqlx::query(SCHEDULE_REMOVAL)
            .bind(id.0.to_string())
            .bind(unix_micros(due_at))
            .execute(&mut *tx)
            .await?;
        sqlx::query(REVOKE_ALL_SESSIONS)
            .bind(id.0.to_string())
            .bind(unix_micros(now))
            .execute(&mut *tx)
            .await?;
        insert_alert(&mut tx, AlertKind::AdminRemovalScheduled, &Subject::Admin(id), alert_details, now)
            .await?;
        self.append_audit(&mut tx, &audit).await?;
        self.commit(tx).await?;
        Ok(RosterChange::Changed)
    }

    async fn cancel_admin_removal(
        &self,
        id: AdminId,
        now: OffsetDateTime,
        audit: AuditEvent,
        alert_details: &str,
    ) -> Result<bool, StoreError> {
        let mut tx = self.begin_write().await?;
        lock_roster(&mut tx).await?;
        if sqlx::query(CANCEL_REMOVAL)
            .bind(id.0.to_string())
            .bind(unix_micros(now))
            .execute(&mut *tx)
            .await?
            .rows_affected()
            != 1
        {
            return Ok(false);
        }
        insert_alert(&mut tx, AlertKind::AdminRemovalCancelled, &Subject::Admin(id), alert_details, now)
            .await?;
        self.append_audit(&mut tx, &audit).await?;
        self.commit(tx).await?;
        Ok(true)
    }

    async fn withdraw_invitation(&self, id: AdminId, audit: AuditEvent) -> Result<bool, StoreError> {
        let mut tx = self.begin_write().await?;
        if sqlx::query(REMOVE_INVITED).bind(id.0.to_string()).execute(&mut *tx).await?.rows_affected() != 1 {
            return Ok(false);
        }
        sqlx::query(DELETE_INVITATIONS).bind(id.0.to_string()).execute(&mut *tx).await?;
        self.append_audit(&mut tx, &audit).await?;
        self.commit(tx).await?;
        Ok(true)
    }

    async fn invite_admin(
        &self,
        admin: &AdminRecord,
        token_hash: &[u8],
        expires_at: OffsetDateTime,
        audit: AuditEvent,
    ) -> Result<AdminId, StoreError> {
        let mut tx = self.begin_write().await?;
        let existing: Option<(String, String)> =
            sqlx::query_as(ADMIN_BY_NAME).bind(&admin.name).fetch_optional(&mut *tx).await?;
        let id = match existing {
            None => {
                insert_admin(&mut tx, admin).await?;
                admin.id
            }
            Some((id, status)) if status == AdminStatus::Invited.as_str() => {
                AdminId(id.parse().map_err(|_| StoreError::Corrupt(format!("admin id `{id}`")))?)
            }
            Some(_) => return Err(StoreError::Conflict(Conflict::AdminName)),
        };
        sqlx::query(INSERT_INVITATION)
            .bind(token_hash)
            .bind(id.0.to_string())
            .bind(unix_micros(admin.created_at))
            .bind(unix_micros(expires_at))
            .execute(&mut *tx)
            .await?;
        self.append_audit(&mut tx, &audit).await?;
        self.commit(tx).await?;
        Ok(id)
    }
}
