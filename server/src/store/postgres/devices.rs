//! Enrollments, devices, request nonces, notices and the server key.

use async_trait::async_trait;
use sqlx::{Connection, PgConnection};
use time::OffsetDateTime;
use uuid::Uuid;

use super::PgStore;
use super::users::{has_any_factor, lock_user};
use crate::audit::AuditEvent;
use crate::challenges::model::ChallengeState;
use crate::ids::{DeviceId, EnrollmentId, UserId};
use crate::store::challenges::may_become;
use crate::store::devices::device_from_row;
use crate::store::devices::enrollment_from_row;
use crate::store::devices::notice_from_row;
use crate::store::devices::server_key_from_row;
use crate::store::devices::{
    DEVICE_BY_ID, DEVICE_NOTICES, DEVICES_OF_USER, ENROLLMENT_BY_CODE_HASH, ENROLLMENT_BY_ID, INSERT_DEVICE,
    INSERT_ENROLLMENT, INSERT_SERVER_KEY, NOTIFY_OTHER_DEVICES, PUBLIC_KEY_OWNER, PURGE_EXPIRED_NONCES,
    PUSH_TOKEN_OWNER, REMEMBER_NONCE, REVOKE_DEVICE, SERVER_KEY, UPDATE_PUSH, USE_ENROLLMENT,
};
use crate::store::{
    ApprovalProof, Conflict, DeviceRecord, DeviceStore, EnrollmentRecord, NoticeRecord, ServerKeyRecord,
    StoreError, StoredPush, map_unique_violation,
};

/// Moves an approval offered as proof `approved → redeemed` by compare-and-set, if it is the
/// user's, from the app, and decided within its window (fresh by the database clock, like a
/// redeem); `NotFound` otherwise. Used by every operation that adds a factor on the user's
/// approval, so one approval adds one.
pub(super) async fn consume_approval(
    conn: &mut PgConnection,
    approval: &ApprovalProof,
) -> Result<(), StoreError> {
    let consumed = sqlx::query(sqlx::AssertSqlSafe(format!(
        "UPDATE challenges SET state = 'redeemed', redeemed_at = now()
         WHERE id = $1 AND app_id = $2 AND user_id = $3 AND {}
           AND decided_at > now() - $4::bigint * interval '1 microsecond'",
        may_become(ChallengeState::Redeemed)
    )))
    .bind(approval.challenge.0)
    .bind(approval.app_id.0)
    .bind(approval.user.0)
    .bind(approval.window.whole_microseconds() as i64)
    .execute(&mut *conn)
    .await?;
    if consumed.rows_affected() == 0 {
        return Err(StoreError::NotFound);
    }
    Ok(())
}

#[async_trait]
impl DeviceStore for PgStore {
    async fn create_enrollment(
        &self,
        e: EnrollmentRecord,
        audit: AuditEvent,
    ) -> Result<EnrollmentRecord, StoreError> {
        let mut conn = self.conn().await?;
        let mut tx = conn.begin().await?;
        insert_enrollment(&mut tx, &e).await?;
        self.append_audit(&mut tx, &audit).await?;
        self.commit(tx).await?;
        Ok(e)
    }

    async fn create_enrollment_consuming_approval(
        &self,
        e: EnrollmentRecord,
        approval: ApprovalProof,
        redeemed: AuditEvent,
        audit: AuditEvent,
    ) -> Result<EnrollmentRecord, StoreError> {
        let mut conn = self.conn().await?;
        let mut tx = conn.begin().await?;
        consume_approval(&mut tx, &approval).await?;
        self.append_audit(&mut tx, &redeemed).await?;
        insert_enrollment(&mut tx, &e).await?;
        self.append_audit(&mut tx, &audit).await?;
        self.commit(tx).await?;
        Ok(e)
    }

    async fn enrollment_by_id(&self, id: EnrollmentId) -> Result<Option<EnrollmentRecord>, StoreError> {
        sqlx::query(ENROLLMENT_BY_ID.as_str())
            .bind(id.0)
            .fetch_optional(&mut *self.conn().await?)
            .await?
            .as_ref()
            .map(enrollment_from_row)
            .transpose()
    }

    async fn enrollment_by_code_hash(
        &self,
        code_hash: &[u8],
    ) -> Result<Option<EnrollmentRecord>, StoreError> {
        sqlx::query(ENROLLMENT_BY_CODE_HASH.as_str())
            .bind(code_hash)
            .fetch_optional(&mut *self.conn().await?)
            .await?
            .as_ref()
            .map(enrollment_from_row)
            .transpose()
    }

    async fn enroll_device(
        &self,
        enrollment: &EnrollmentRecord,
        d: DeviceRecord,
        notice: (&str, String),
        audit: AuditEvent,
    ) -> Result<DeviceRecord, StoreError> {
        let mut conn = self.conn().await?;
        let mut tx = conn.begin().await?;
        // Serialises enrollments of one user, so two first-device enrollments cannot both win.
        if !lock_user(&mut tx, d.user_id).await? {
            return Err(StoreError::NotFound);
        }
        let used = sqlx::query(USE_ENROLLMENT)
            .bind(enrollment.id.0)
            .bind(d.created_at)
            .bind(d.id.0)
            .execute(&mut *tx)
            .await?;
        if used.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        // Any active factor, a passkey too: only a first factor comes on the app's word alone.
        if !enrollment.is_second_device && has_any_factor(&mut tx, d.user_id).await? {
            return Err(StoreError::Conflict(Conflict::SecondDevice));
        }
        sqlx::query(INSERT_DEVICE)
            .bind(d.id.0)
            .bind(d.user_id.0)
            .bind(&d.public_key)
            .bind(&d.push.provider)
            .bind(&d.push.token)
            .bind(&d.push.environment)
            .bind(&d.name)
            .bind(&d.platform)
            .bind(d.created_at)
            .execute(&mut *tx)
            .await
            .map_err(map_unique_violation)?;
        sqlx::query(NOTIFY_OTHER_DEVICES)
            .bind(d.user_id.0)
            .bind(d.id.0)
            .bind(notice.0)
            .bind(&notice.1)
            .bind(d.created_at)
            .execute(&mut *tx)
            .await?;
        self.append_audit(&mut tx, &audit).await?;
        self.commit(tx).await?;
        Ok(d)
    }

    async fn device_by_id(&self, id: DeviceId) -> Result<Option<DeviceRecord>, StoreError> {
        sqlx::query(DEVICE_BY_ID.as_str())
            .bind(id.0)
            .fetch_optional(&mut *self.conn().await?)
            .await?
            .as_ref()
            .map(device_from_row)
            .transpose()
    }

    async fn devices_for_user(&self, user: UserId) -> Result<Vec<DeviceRecord>, StoreError> {
        sqlx::query(DEVICES_OF_USER.as_str())
            .bind(user.0)
            .fetch_all(&mut *self.conn().await?)
            .await?
            .iter()
            .map(device_from_row)
            .collect()
    }

    async fn public_key_owner(&self, public_key: &[u8]) -> Result<Option<UserId>, StoreError> {
        let owner: Option<Uuid> = sqlx::query_scalar(PUBLIC_KEY_OWNER)
            .bind(public_key)
            .fetch_optional(&mut *self.conn().await?)
            .await?;
        Ok(owner.map(UserId))
    }

    async fn push_token_owner(&self, provider: &str, token: &str) -> Result<Option<UserId>, StoreError> {
        let owner: Option<Uuid> = sqlx::query_scalar(PUSH_TOKEN_OWNER)
            .bind(provider)
            .bind(token)
            .fetch_optional(&mut *self.conn().await?)
            .await?;
        Ok(owner.map(UserId))
    }

    async fn revoke_device(
        &self,
        id: DeviceId,
        at: OffsetDateTime,
        audit: AuditEvent,
    ) -> Result<DeviceRecord, StoreError> {
        let mut conn = self.conn().await?;
        let mut tx = conn.begin().await?;
        let row = sqlx::query(REVOKE_DEVICE.as_str())
            .bind(id.0)
            .bind(at)
            .fetch_optional(&mut *tx)
            .await?
            .ok_or(StoreError::NotFound)?;
        let device = device_from_row(&row)?;
        self.append_audit(&mut tx, &audit).await?;
        self.commit(tx).await?;
        Ok(device)
    }

    async fn update_push(&self, id: DeviceId, push: StoredPush, audit: AuditEvent) -> Result<(), StoreError> {
        let mut conn = self.conn().await?;
        let mut tx = conn.begin().await?;
        let updated = sqlx::query(UPDATE_PUSH)
            .bind(id.0)
            .bind(&push.provider)
            .bind(&push.token)
            .bind(&push.environment)
            .execute(&mut *tx)
            .await
            .map_err(map_unique_violation)?;
        if updated.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        self.append_audit(&mut tx, &audit).await?;
        self.commit(tx).await?;
        Ok(())
    }

    async fn remember_request_nonce(
        &self,
        device: DeviceId,
        nonce: &[u8],
        expires_at: OffsetDateTime,
        _now: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        // One autocommitted statement on the hot path; expired nonces are purged in the
        // background (`purge_expired_nonces`).
        let inserted = sqlx::query(REMEMBER_NONCE)
            .bind(device.0)
            .bind(nonce)
            .bind(expires_at)
            .execute(&mut *self.conn().await?)
            .await?;
        Ok(inserted.rows_affected() == 1)
    }

    async fn purge_expired_nonces(&self, now: OffsetDateTime) -> Result<u64, StoreError> {
        Ok(sqlx::query(PURGE_EXPIRED_NONCES)
            .bind(now)
            .execute(&mut *self.conn().await?)
            .await?
            .rows_affected())
    }

    async fn device_notices(
        &self,
        device: DeviceId,
        since: OffsetDateTime,
    ) -> Result<Vec<NoticeRecord>, StoreError> {
        let rows = sqlx::query(DEVICE_NOTICES)
            .bind(device.0)
            .bind(since)
            .fetch_all(&mut *self.conn().await?)
            .await?;
        rows.iter().map(notice_from_row).collect()
    }

    async fn server_key(&self) -> Result<Option<ServerKeyRecord>, StoreError> {
        let row = sqlx::query(SERVER_KEY).fetch_optional(&mut *self.conn().await?).await?;
        row.as_ref().map(server_key_from_row).transpose()
    }

    async fn insert_server_key(&self, key: ServerKeyRecord) -> Result<ServerKeyRecord, StoreError> {
        sqlx::query(INSERT_SERVER_KEY)
            .bind(&key.public_key)
            .bind(&key.sealed_pkcs8)
            .bind(key.created_at)
            .execute(&mut *self.conn().await?)
            .await?;
        self.server_key().await?.ok_or_else(|| StoreError::Corrupt("server key vanished after insert".into()))
    }
}

pub(super) async fn insert_enrollment(
    conn: &mut PgConnection,
    e: &EnrollmentRecord,
) -> Result<(), StoreError> {
    sqlx::query(INSERT_ENROLLMENT)
        .bind(e.id.0)
        .bind(e.user_id.0)
        .bind(&e.code_hash)
        .bind(&e.code_sealed)
        .bind(e.is_second_device)
        .bind(&e.created_by)
        .bind(e.created_at)
        .bind(e.expires_at)
        .execute(&mut *conn)
        .await?;
    Ok(())
}
