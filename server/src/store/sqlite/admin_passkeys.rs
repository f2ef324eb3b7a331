//! The admin plane's credentials: admins' passkeys, ceremonies, invitations.

use async_trait::async_trait;
use sqlx::SqliteConnection;
use time::OffsetDateTime;

use super::SqliteStore;
use crate::audit::AuditEvent;
use crate::clock::unix_micros;
use crate::ids::{AdminId, AdminPasskeyId};
use crate::store::admin::{ACTIVE_ADMINS, ADMIN_BY_ID, BOOTSTRAP_TOKEN, admin_from_row};
use crate::store::admin_passkeys::{
    ACTIVATE_INVITED, ACTIVE_PASSKEY_COUNT, ADMIN_PASSKEY_BY_CREDENTIAL, ADMIN_PASSKEYS,
    AdminAssertionUpdate, AdminCeremonyRecord, AdminPasskeyRecord, AdminPasskeyRevoke, AdminPasskeyStore,
    CREDENTIAL_BOUND, CeremonyKind, INSERT_ADMIN_PASSKEY, INSERT_CEREMONY, INSERT_INVITATION, INVITATION,
    InvitationRecord, InvitationRedeem, PURGE_CEREMONIES, RECORD_ASSERTION, REVOKE_ADMIN_PASSKEY,
    SPEND_INVITATION, TAKE_CEREMONY, admin_passkey_from_row, ceremony_from_row, invitation_from_row,
    invitation_refusal, judge_bootstrap_token, refuse_if_bound,
};
use crate::store::{BootstrapSpend, StoreError, map_unique_violation};

/// Refuses a credential id bound in either table (the write transaction serialises registrations).
pub(super) async fn refuse_bound_credential(
    conn: &mut SqliteConnection,
    credential_id: &[u8],
) -> Result<(), StoreError> {
    let bound: i64 = sqlx::query_scalar(CREDENTIAL_BOUND).bind(credential_id).fetch_one(conn).await?;
    refuse_if_bound(bound)
}

/// Binds an admin passkey after checking both tables.
pub(super) async fn insert_admin_passkey(
    conn: &mut SqliteConnection,
    p: &AdminPasskeyRecord,
) -> Result<(), StoreError> {
    refuse_bound_credential(&mut *conn, &p.credential_id).await?;
    sqlx::query(INSERT_ADMIN_PASSKEY.as_str())
        .bind(p.id.0.to_string())
        .bind(p.admin_id.0.to_string())
        .bind(&p.credential_id)
        .bind(&p.name)
        .bind(&p.static_state)
        .bind(&p.dynamic_state)
        .bind(&p.aaguid)
        .bind(p.backup_eligible)
        .bind(p.backed_up)
        .bind(p.sign_count)
        .bind(unix_micros(p.created_at))
        .bind(p.last_used_at.map(unix_micros))
        .bind(p.revoked_at.map(unix_micros))
        .execute(conn)
        .await
        .map_err(map_unique_violation)?;
    Ok(())
}

#[async_trait]
impl AdminPasskeyStore for SqliteStore {
    async fn admin_passkeys(&self, admin: AdminId) -> Result<Vec<AdminPasskeyRecord>, StoreError> {
        let rows =
            sqlx::query(ADMIN_PASSKEYS.as_str()).bind(admin.0.to_string()).fetch_all(&self.pool).await?;
        rows.iter().map(admin_passkey_from_row).collect()
    }

    async fn admin_passkey_by_credential_id(
        &self,
        credential_id: &[u8],
    ) -> Result<Option<AdminPasskeyRecord>, StoreError> {
        let row = sqlx::query(ADMIN_PASSKEY_BY_CREDENTIAL.as_str())
            .bind(credential_id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(admin_passkey_from_row).transpose()
    }

    async fn add_admin_passkey(
        &self,
        passkey: &AdminPasskeyRecord,
        audit: AuditEvent,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        insert_admin_passkey(&mut tx, passkey).await?;
        self.append_audit(&mut tx, &audit).await?;
        self.commit(tx).await
    }

    async fn record_admin_assertion(&self, u: &AdminAssertionUpdate) -> Result<bool, StoreError> {
        let updated = sqlx::query(RECORD_ASSERTION)
            .bind(u.passkey.0.to_string())
            .bind(&u.previous_dynamic_state)
            .bind(&u.dynamic_state)
            .bind(u.sign_count)
            .bind(u.backed_up)
            .bind(unix_micros(u.at))
            .execute(&self.pool)
            .await?;
        Ok(updated.rows_affected() == 1)
    }

    async fn revoke_admin_passkey(
        &self,
        admin: AdminId,
        passkey: AdminPasskeyId,
        now: OffsetDateTime,
        audit: AuditEvent,
    ) -> Result<AdminPasskeyRevoke, StoreError> {
        let mut tx = self.begin_write().await?;
        let active: i64 =
            sqlx::query_scalar(ACTIVE_PASSKEY_COUNT).bind(admin.0.to_string()).fetch_one(&mut *tx).await?;
        let revoked = sqlx::query(REVOKE_ADMIN_PASSKEY)
            .bind(passkey.0.to_string())
            .bind(admin.0.to_string())
            .bind(unix_micros(now))
            .execute(&mut *tx)
            .await?;
        if revoked.rows_affected() == 0 {
            return Ok(AdminPasskeyRevoke::NotFound);
        }
        if active <= 1 {
            return Ok(AdminPasskeyRevoke::LastOne);
        }
        self.append_audit(&mut tx, &audit).await?;
        self.commit(tx).await?;
        Ok(AdminPasskeyRevoke::Revoked)
    }

    async fn insert_admin_ceremony(&self, c: &AdminCeremonyRecord) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        sqlx::query(PURGE_CEREMONIES)
            .bind(unix_micros(c.created_at))
            .bind(&c.binding_hash)
            .bind(c.kind.as_str())
            .execute(&mut *tx)
            .await?;
        sqlx::query(INSERT_CEREMONY.as_str())
            .bind(c.id.0.to_string())
            .bind(c.kind.as_str())
            .bind(c.admin_id.map(|a| a.0.to_string()))
            .bind(&c.binding_hash)
            .bind(&c.state)
            .bind(unix_micros(c.created_at))
            .bind(unix_micros(c.expires_at))
            .execute(&mut *tx)
            .await?;
        self.commit(tx).await
    }

    async fn take_admin_ceremony(
        &self,
        binding_hash: &[u8],
        kind: CeremonyKind,
        now: OffsetDateTime,
    ) -> Result<Option<AdminCeremonyRecord>, StoreError> {
        let rows = sqlx::query(TAKE_CEREMONY.as_str())
            .bind(binding_hash)
            .bind(kind.as_str())
            .fetch_all(&self.pool)
            .await?;
        let taken: Vec<AdminCeremonyRecord> = rows.iter().map(ceremony_from_row).collect::<Result<_, _>>()?;
        Ok(taken.into_iter().filter(|c| c.expires_at > now).max_by_key(|c| c.created_at))
    }

    async fn check_bootstrap_token(
        &self,
        token_hash: &[u8],
        now: OffsetDateTime,
    ) -> Result<BootstrapSpend, StoreError> {
        let mut conn = self.pool.acquire().await?;
        let token: Option<(i64, Option<i64>)> =
            sqlx::query_as(BOOTSTRAP_TOKEN).bind(token_hash).fetch_optional(&mut *conn).await?;
        let active: i64 = sqlx::query_scalar(ACTIVE_ADMINS).fetch_one(&mut *conn).await?;
        let found = token.map(|(expires_at, used_at)| (expires_at <= unix_micros(now), used_at.is_some()));
        Ok(judge_bootstrap_token(found, u32::try_from(active).unwrap_or(u32::MAX)))
    }

    async fn insert_invitation(&self, i: &InvitationRecord) -> Result<(), StoreError> {
        sqlx::query(INSERT_INVITATION.as_str())
            .bind(&i.token_hash)
            .bind(i.admin_id.0.to_string())
            .bind(unix_micros(i.created_at))
            .bind(unix_micros(i.expires_at))
            .bind(i.used_at.map(unix_micros))
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn invitation(
        &self,
        token_hash: &[u8],
    ) -> Result<Option<(InvitationRecord, crate::store::AdminRecord)>, StoreError> {
        let mut conn = self.pool.acquire().await?;
        let Some(row) = sqlx::query(INVITATION.as_str()).bind(token_hash).fetch_optional(&mut *conn).await?
        else {
            return Ok(None);
        };
        let invitation = invitation_from_row(&row)?;
        let admin = sqlx::query(ADMIN_BY_ID.as_str())
            .bind(invitation.admin_id.0.to_string())
            .fetch_one(&mut *conn)
            .await?;
        Ok(Some((invitation, admin_from_row(&admin)?)))
    }

    async fn redeem_invitation(
        &self,
        token_hash: &[u8],
        now: OffsetDateTime,
        passkey: &AdminPasskeyRecord,
        audit: AuditEvent,
    ) -> Result<InvitationRedeem, StoreError> {
        let mut tx = self.begin_write().await?;
        let Some(row) = sqlx::query(INVITATION.as_str()).bind(token_hash).fetch_optional(&mut *tx).await?
        else {
            return Ok(InvitationRedeem::Unknown);
        };
        let invitation = invitation_from_row(&row)?;
        if let Some(refusal) = invitation_refusal(&invitation, now) {
            return Ok(refusal);
        }
        let spent =
            sqlx::query(SPEND_INVITATION).bind(token_hash).bind(unix_micros(now)).execute(&mut *tx).await?;
        let activated =
            sqlx::query(ACTIVATE_INVITED).bind(invitation.admin_id.0.to_string()).execute(&mut *tx).await?;
        if spent.rows_affected() == 0 || activated.rows_affected() == 0 {
            return Ok(InvitationRedeem::Used);
        }
        insert_admin_passkey(&mut tx, passkey).await?;
        let admin = sqlx::query(ADMIN_BY_ID.as_str())
            .bind(invitation.admin_id.0.to_string())
            .fetch_one(&mut *tx)
            .await?;
        let admin = admin_from_row(&admin)?;
        self.append_audit(&mut tx, &audit).await?;
        self.commit(tx).await?;
        Ok(InvitationRedeem::Redeemed(admin))
    }
}
