//! Passkeys, user handles and registration ceremonies.

use async_trait::async_trait;
use sqlx::{Connection, PgConnection};
use time::OffsetDateTime;

use super::PgStore;
use super::challenges::bind_challenge;
use super::devices::consume_approval;
use super::users::{has_any_factor, lock_user};
use crate::audit::AuditEvent;
use crate::challenges::model::ChallengeState;
use crate::ids::{ChallengeId, PasskeyId, RegistrationId, UserId};
use crate::store::challenges::{CHALLENGE_COLUMNS, INSERT_CHALLENGE, challenge_from_row, may_become};
use crate::store::passkeys::{
    COUNT_FAILED_ASSERTION, DELETE_REGISTRATION, INSERT_LINK, INSERT_PASSKEY, INSERT_REGISTRATION,
    INSERT_SIGN_IN, INSERT_USER_HANDLE, LINK_BY_CODE_HASH, NOTIFY_DEVICES, PASSKEY_ACTIVE,
    PASSKEY_BY_CREDENTIAL_ID, PASSKEYS_OF_USER, PURGE_EXPIRED_LINKS, PURGE_EXPIRED_REGISTRATIONS,
    REGISTRATION_BY_ID, SIGN_IN, SIGN_IN_BY_PAGE_TOKEN, USE_PASSKEY, USER_HANDLE, link_from_row,
    passkey_from_row, registration_from_row, set_active_passkey_column, sign_in_from_row,
};
use crate::store::{
    ChallengeRecord, Conflict, EnrollmentLink, PasskeyAssertion, PasskeyRecord, PasskeySignIn, PasskeyStore,
    Precondition, RegistrationCeremony, RegistrationProof, SignInPage, StoreError, map_unique_violation,
};

#[async_trait]
impl PasskeyStore for PgStore {
    async fn ensure_user_handle(&self, user: UserId, candidate: &[u8]) -> Result<Vec<u8>, StoreError> {
        let mut conn = self.conn().await?;
        sqlx::query(INSERT_USER_HANDLE).bind(user.0).bind(candidate).execute(&mut *conn).await?;
        Ok(sqlx::query_scalar(USER_HANDLE).bind(user.0).fetch_one(&mut *conn).await?)
    }

    async fn user_handle(&self, user: UserId) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(sqlx::query_scalar(USER_HANDLE).bind(user.0).fetch_optional(&mut *self.conn().await?).await?)
    }

    async fn passkeys_for_user(&self, user: UserId) -> Result<Vec<PasskeyRecord>, StoreError> {
        sqlx::query(PASSKEYS_OF_USER.as_str())
            .bind(user.0)
            .fetch_all(&mut *self.conn().await?)
            .await?
            .iter()
            .map(passkey_from_row)
            .collect()
    }

    async fn passkey_by_credential_id(
        &self,
        credential_id: &[u8],
    ) -> Result<Option<PasskeyRecord>, StoreError> {
        sqlx::query(PASSKEY_BY_CREDENTIAL_ID.as_str())
            .bind(credential_id)
            .fetch_optional(&mut *self.conn().await?)
            .await?
            .as_ref()
            .map(passkey_from_row)
            .transpose()
    }

    async fn begin_registration(
        &self,
        c: RegistrationCeremony,
        proof: RegistrationProof,
        link: Option<&EnrollmentLink>,
        audit: AuditEvent,
    ) -> Result<(), StoreError> {
        let mut conn = self.conn().await?;
        let mut tx = conn.begin().await?;
        if let RegistrationProof::Approval { proof, redeemed } = &proof {
            consume_approval(&mut tx, proof).await?;
            self.append_audit(&mut tx, redeemed).await?;
        }
        sqlx::query(INSERT_REGISTRATION)
            .bind(c.id.0)
            .bind(c.user_id.0)
            .bind(c.app_id.map(|app| app.0))
            .bind(&c.name)
            .bind(c.is_first_factor)
            .bind(&c.server_state)
            .bind(c.created_at)
            .bind(c.expires_at)
            .execute(&mut *tx)
            .await?;
        if let Some(link) = link {
            sqlx::query(INSERT_LINK)
                .bind(&link.code_hash)
                .bind(link.registration_id.0)
                .bind(link.user_id.0)
                .bind(&link.username)
                .bind(link.app_id.map(|app| app.0))
                .bind(&link.app_name)
                .bind(&link.options)
                .bind(link.created_at)
                .bind(link.expires_at)
                .execute(&mut *tx)
                .await?;
        }
        self.append_audit(&mut tx, &audit).await?;
        self.commit(tx).await
    }

    async fn enrollment_link(&self, code_hash: &[u8]) -> Result<Option<EnrollmentLink>, StoreError> {
        sqlx::query(LINK_BY_CODE_HASH.as_str())
            .bind(code_hash)
            .fetch_optional(&mut *self.conn().await?)
            .await?
            .as_ref()
            .map(link_from_row)
            .transpose()
    }

    async fn registration(&self, id: RegistrationId) -> Result<Option<RegistrationCeremony>, StoreError> {
        sqlx::query(REGISTRATION_BY_ID.as_str())
            .bind(id.0)
            .fetch_optional(&mut *self.conn().await?)
            .await?
            .as_ref()
            .map(registration_from_row)
            .transpose()
    }

    async fn complete_registration(
        &self,
        ceremony: &RegistrationCeremony,
        p: PasskeyRecord,
        notice: (&str, String),
        audit: AuditEvent,
    ) -> Result<PasskeyRecord, StoreError> {
        let mut conn = self.conn().await?;
        let mut tx = conn.begin().await?;
        let used =
            sqlx::query(DELETE_REGISTRATION).bind(ceremony.id.0).bind(p.created_at).execute(&mut *tx).await?;
        if used.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        // Serialises the user's first factors (as enroll_device does), so a first passkey and a
        // first device, or two first passkeys, cannot both win.
        if ceremony.is_first_factor && !lock_user(&mut tx, p.user_id).await? {
            return Err(StoreError::NotFound);
        }
        if ceremony.is_first_factor && has_any_factor(&mut tx, p.user_id).await? {
            return Err(StoreError::Conflict(Conflict::SecondDevice));
        }
        insert_passkey(&mut tx, &p).await?;
        sqlx::query(NOTIFY_DEVICES)
            .bind(p.user_id.0)
            .bind(notice.0)
            .bind(&notice.1)
            .bind(p.created_at)
            .execute(&mut *tx)
            .await?;
        self.append_audit(&mut tx, &audit).await?;
        self.commit(tx).await?;
        Ok(p)
    }

    async fn rename_passkey(
        &self,
        user: UserId,
        id: PasskeyId,
        name: &str,
        audit: AuditEvent,
    ) -> Result<PasskeyRecord, StoreError> {
        self.update_active_passkey(user, id, ("name", name.to_owned()), audit).await
    }

    async fn purge_expired_registrations(&self, now: OffsetDateTime) -> Result<u64, StoreError> {
        let mut conn = self.conn().await?;
        let mut purged = 0;
        for statement in [PURGE_EXPIRED_REGISTRATIONS, PURGE_EXPIRED_LINKS] {
            purged += sqlx::query(statement).bind(now).execute(&mut *conn).await?.rows_affected();
        }
        Ok(purged)
    }

    async fn create_passkey_challenge(
        &self,
        c: ChallengeRecord,
        server_state: &[u8],
        page: &SignInPage,
        audit: AuditEvent,
    ) -> Result<ChallengeRecord, StoreError> {
        let mut conn = self.conn().await?;
        let mut tx = conn.begin().await?;
        bind_challenge(sqlx::query(INSERT_CHALLENGE.as_str()), &c).execute(&mut *tx).await?;
        sqlx::query(INSERT_SIGN_IN)
            .bind(c.id.0)
            .bind(server_state)
            .bind(&page.token_hash)
            .bind(&page.options)
            .bind(&page.app_name)
            .execute(&mut *tx)
            .await?;
        self.append_audit(&mut tx, &audit).await?;
        self.commit(tx).await?;
        Ok(c)
    }

    async fn passkey_sign_in_by_page_token(
        &self,
        token_hash: &[u8],
    ) -> Result<Option<PasskeySignIn>, StoreError> {
        sqlx::query(SIGN_IN_BY_PAGE_TOKEN.as_str())
            .bind(token_hash)
            .fetch_optional(&mut *self.conn().await?)
            .await?
            .as_ref()
            .map(sign_in_from_row)
            .transpose()
    }

    async fn passkey_sign_in(&self, challenge: ChallengeId) -> Result<Option<PasskeySignIn>, StoreError> {
        sqlx::query(SIGN_IN.as_str())
            .bind(challenge.0)
            .fetch_optional(&mut *self.conn().await?)
            .await?
            .as_ref()
            .map(sign_in_from_row)
            .transpose()
    }

    async fn count_failed_assertion(
        &self,
        challenge: ChallengeId,
        audit: AuditEvent,
    ) -> Result<i32, StoreError> {
        let mut conn = self.conn().await?;
        let mut tx = conn.begin().await?;
        let count: i32 = sqlx::query_scalar(COUNT_FAILED_ASSERTION)
            .bind(challenge.0)
            .fetch_optional(&mut *tx)
            .await?
            .ok_or(StoreError::NotFound)?;
        self.append_audit(&mut tx, &audit).await?;
        self.commit(tx).await?;
        Ok(count)
    }

    async fn approve_with_passkey(
        &self,
        a: &PasskeyAssertion,
        _now: OffsetDateTime,
        audit: AuditEvent,
    ) -> Result<ChallengeRecord, StoreError> {
        let mut conn = self.conn().await?;
        let mut tx = conn.begin().await?;
        // Fresh by the database clock, like every challenge transition.
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE challenges SET state = 'approved', decided_at = now()
             WHERE id = $1 AND user_id = $2 AND {} AND expires_at > now() AND number_digits = 0
             RETURNING {CHALLENGE_COLUMNS}",
            may_become(ChallengeState::Approved)
        )))
        .bind(a.challenge.0)
        .bind(a.user.0)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or(StoreError::PreconditionFailed(Precondition::ChallengeNotPending))?;
        let used = sqlx::query(USE_PASSKEY)
            .bind(a.passkey.0)
            .bind(a.previous_sign_count)
            .bind(&a.dynamic_state)
            .bind(a.sign_count)
            .bind(a.backed_up)
            .bind(challenge_from_row(&row)?.decided_at)
            .bind(a.user.0)
            .execute(&mut *tx)
            .await?;
        if used.rows_affected() == 0 {
            let active: Option<bool> = sqlx::query_scalar(PASSKEY_ACTIVE)
                .bind(a.passkey.0)
                .bind(a.user.0)
                .fetch_optional(&mut *tx)
                .await?;
            return Err(StoreError::PreconditionFailed(match active {
                Some(true) => Precondition::CounterNotIncreasing,
                _ => Precondition::DeviceInactive,
            }));
        }
        self.append_audit(&mut tx, &audit).await?;
        self.commit(tx).await?;
        challenge_from_row(&row)
    }

    async fn deny_passkey_challenge(
        &self,
        challenge: ChallengeId,
        _now: OffsetDateTime,
        audit: AuditEvent,
    ) -> Result<ChallengeRecord, StoreError> {
        let mut conn = self.conn().await?;
        let mut tx = conn.begin().await?;
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE challenges SET state = 'denied', decided_at = now()
             WHERE id = $1 AND {} AND number_digits = 0 RETURNING {CHALLENGE_COLUMNS}",
            may_become(ChallengeState::Denied)
        )))
        .bind(challenge.0)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or(StoreError::NotFound)?;
        self.append_audit(&mut tx, &audit).await?;
        self.commit(tx).await?;
        challenge_from_row(&row)
    }

    async fn revoke_passkey(
        &self,
        user: UserId,
        id: PasskeyId,
        at: OffsetDateTime,
        audit: AuditEvent,
    ) -> Result<PasskeyRecord, StoreError> {
        self.update_active_passkey(user, id, ("revoked_at", at), audit).await
    }
}

impl PgStore {
    /// Sets `column` of an active passkey of the user, with its audit event; `NotFound` if
    /// there is none with that id.
    async fn update_active_passkey<V>(
        &self,
        user: UserId,
        id: PasskeyId,
        (column, value): (&str, V),
        audit: AuditEvent,
    ) -> Result<PasskeyRecord, StoreError>
    where
        V: for<'q> sqlx::Encode<'q, sqlx::Postgres> + sqlx::Type<sqlx::Postgres> + Send,
    {
        let mut conn = self.conn().await?;
        let mut tx = conn.begin().await?;
        let row = sqlx::query(sqlx::AssertSqlSafe(set_active_passkey_column(column)))
            .bind(id.0)
            .bind(user.0)
            .bind(value)
            .fetch_optional(&mut *tx)
            .await?
            .ok_or(StoreError::NotFound)?;
        let changed = passkey_from_row(&row)?;
        self.append_audit(&mut tx, &audit).await?;
        self.commit(tx).await?;
        Ok(changed)
    }
}

async fn insert_passkey(conn: &mut PgConnection, p: &PasskeyRecord) -> Result<(), StoreError> {
    // A credential id is bound once across users and admins.
    super::admin_passkeys::refuse_bound_credential(&mut *conn, &p.credential_id).await?;
    sqlx::query(INSERT_PASSKEY)
        .bind(p.id.0)
        .bind(p.user_id.0)
        .bind(&p.credential_id)
        .bind(&p.name)
        .bind(&p.static_state)
        .bind(&p.dynamic_state)
        .bind(p.transports)
        .bind(&p.aaguid)
        .bind(p.backup_eligible)
        .bind(p.backed_up)
        .bind(p.sign_count)
        .bind(p.created_at)
        .execute(&mut *conn)
        .await
        .map_err(map_unique_violation)?;
    Ok(())
}
