//! The admin plane's accounts and sessions: admins (not users), their sessions by the SHA-256 of
//! the cookie, and one-time bootstrap tokens.

use async_trait::async_trait;
use time::OffsetDateTime;

use super::StoreError;
use super::codec::{Columns, Sql, aliased};
use crate::admin::model::{AdminStatus, Role};
use crate::audit::AuditEvent;
use crate::ids::AdminId;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminRecord {
    pub id: AdminId,
    pub name: String,
    pub role: Role,
    pub status: AdminStatus,
    /// The WebAuthn user handle of the admin's (discoverable) passkeys.
    pub webauthn_handle: Vec<u8>,
    pub created_at: OffsetDateTime,
    /// The audit actor who created the admin.
    pub created_by: String,
    pub removal_due_at: Option<OffsetDateTime>,
    pub removed_at: Option<OffsetDateTime>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminSessionRecord {
    /// SHA-256 of the cookie's value; the value itself is never stored.
    pub id_hash: Vec<u8>,
    pub admin_id: AdminId,
    pub created_at: OffsetDateTime,
    pub last_seen_at: OffsetDateTime,
    pub idle_expires_at: OffsetDateTime,
    pub absolute_expires_at: OffsetDateTime,
    pub step_up_at: Option<OffsetDateTime>,
    pub revoked_at: Option<OffsetDateTime>,
    pub user_agent: String,
}

/// What spending a bootstrap token found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BootstrapSpend {
    /// The token was unused and unexpired: it is spent now, by the admin just created.
    Spent,
    Unknown,
    Used,
    Expired,
    /// The plane already has its two active admins.
    Closed,
}

#[async_trait]
pub trait AdminStore: Send + Sync + std::fmt::Debug {
    /// Creates an admin with its audit event; `Conflict(AdminName)` if the name is taken.
    async fn create_admin(&self, admin: &AdminRecord, audit: AuditEvent) -> Result<(), StoreError>;

    async fn admin(&self, id: AdminId) -> Result<Option<AdminRecord>, StoreError>;

    /// The admin whose passkeys carry this WebAuthn user handle.
    async fn admin_by_handle(&self, handle: &[u8]) -> Result<Option<AdminRecord>, StoreError>;

    /// Every admin, by name.
    async fn admins(&self) -> Result<Vec<AdminRecord>, StoreError>;

    /// Admins with role `admin` who are active: the ones four-eyes rules count.
    async fn active_admin_count(&self) -> Result<u32, StoreError>;

    /// Records a bootstrap token (its SHA-256) with its audit event.
    async fn create_bootstrap_token(
        &self,
        token_hash: &[u8],
        created_at: OffsetDateTime,
        expires_at: OffsetDateTime,
        audit: AuditEvent,
    ) -> Result<(), StoreError>;

    /// Spends a bootstrap token, creates `admin` (active, role admin) with its first `passkey`
    /// and raises the `admin_bootstrapped` alert, in one transaction serialised with every other
    /// roster change; nothing changes unless `Spent`. `Conflict(PasskeyCredential)` if the
    /// credential id is bound already (to a user or an admin).
    async fn spend_bootstrap_token(
        &self,
        token_hash: &[u8],
        now: OffsetDateTime,
        admin: &AdminRecord,
        passkey: &super::AdminPasskeyRecord,
        audit: AuditEvent,
    ) -> Result<BootstrapSpend, StoreError>;

    /// Starts a session (with its audit event).
    async fn create_admin_session(
        &self,
        session: &AdminSessionRecord,
        audit: AuditEvent,
    ) -> Result<(), StoreError>;

    /// A session and its admin, in one read.
    async fn admin_session(
        &self,
        id_hash: &[u8],
    ) -> Result<Option<(AdminSessionRecord, AdminRecord)>, StoreError>;

    /// Moves a live session's idle deadline to `idle_expires_at`, unless it was seen after
    /// `seen_before` (at most one write a minute per session).
    async fn touch_admin_session(
        &self,
        id_hash: &[u8],
        now: OffsetDateTime,
        idle_expires_at: OffsetDateTime,
        seen_before: OffsetDateTime,
    ) -> Result<(), StoreError>;

    /// Revokes a live session with its audit event; `false` if it was already revoked or
    /// unknown (and then nothing is written).
    async fn revoke_admin_session(
        &self,
        id_hash: &[u8],
        now: OffsetDateTime,
        audit: AuditEvent,
    ) -> Result<bool, StoreError>;

    /// Revokes every live session of the admin `id` with its audit event, in one transaction;
    /// returns how many were live.
    async fn revoke_all_admin_sessions(
        &self,
        id: AdminId,
        now: OffsetDateTime,
        audit: AuditEvent,
    ) -> Result<u64, StoreError>;

    /// Records a fresh step-up assertion on a live session, for the one action `action`
    /// (`approve_request:<id>`, `add_passkey`, …), with its audit event.
    async fn set_admin_step_up(
        &self,
        id_hash: &[u8],
        at: OffsetDateTime,
        action: &str,
        audit: AuditEvent,
    ) -> Result<(), StoreError>;

    /// Spends the session's step-up if it was taken for `action` after `fresh_since`: one
    /// assertion, one sensitive action, the one it was taken for. `false` if there was none.
    async fn consume_admin_step_up(
        &self,
        id_hash: &[u8],
        fresh_since: OffsetDateTime,
        action: &str,
    ) -> Result<bool, StoreError>;
}

pub(super) const ADMIN_COLUMNS: &str =
    "id, name, role, status, webauthn_handle, created_at, created_by, removal_due_at, removed_at";
pub(super) const SESSION_COLUMNS: &str = "id_hash, admin_id, created_at, last_seen_at, idle_expires_at, \
     absolute_expires_at, step_up_at, revoked_at, user_agent";

fn admin_from<R: Columns>(row: &R, prefix: &str) -> Result<AdminRecord, StoreError> {
    let column = |name: &str| format!("{prefix}{name}");
    let role: String = row.value(&column("role"))?;
    let status: String = row.value(&column("status"))?;
    Ok(AdminRecord {
        id: AdminId(row.id(&column("id"))?),
        name: row.value(&column("name"))?,
        role: Role::parse(&role).ok_or_else(|| StoreError::Corrupt(format!("admin role `{role}`")))?,
        status: AdminStatus::parse(&status)
            .ok_or_else(|| StoreError::Corrupt(format!("admin status `{status}`")))?,
        webauthn_handle: row.value(&column("webauthn_handle"))?,
        created_at: row.time(&column("created_at"))?,
        created_by: row.value(&column("created_by"))?,
        removal_due_at: row.optional_time(&column("removal_due_at"))?,
        removed_at: row.optional_time(&column("removed_at"))?,
    })
}

pub(super) fn admin_from_row<R: Columns>(row: &R) -> Result<AdminRecord, StoreError> {
    admin_from(row, "")
}

/// A row of [`SESSION_WITH_ADMIN`].
pub(super) fn session_from_row<R: Columns>(row: &R) -> Result<(AdminSessionRecord, AdminRecord), StoreError> {
    let session = AdminSessionRecord {
        id_hash: row.value("admin_sessions_id_hash")?,
        admin_id: AdminId(row.id("admin_sessions_admin_id")?),
        created_at: row.time("admin_sessions_created_at")?,
        last_seen_at: row.time("admin_sessions_last_seen_at")?,
        idle_expires_at: row.time("admin_sessions_idle_expires_at")?,
        absolute_expires_at: row.time("admin_sessions_absolute_expires_at")?,
        step_up_at: row.optional_time("admin_sessions_step_up_at")?,
        revoked_at: row.optional_time("admin_sessions_revoked_at")?,
        user_agent: row.value("admin_sessions_user_agent")?,
    };
    Ok((session, admin_from(row, "admins_")?))
}

// Portable statements: the same text on both engines.

pub(super) static INSERT_ADMIN: Sql =
    Sql::new(|| format!("INSERT INTO admins ({ADMIN_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"));
pub(super) static ADMIN_BY_ID: Sql = Sql::new(|| format!("SELECT {ADMIN_COLUMNS} FROM admins WHERE id = $1"));
pub(super) static ADMIN_BY_HANDLE: Sql =
    Sql::new(|| format!("SELECT {ADMIN_COLUMNS} FROM admins WHERE webauthn_handle = $1"));
pub(super) static ALL_ADMINS: Sql = Sql::new(|| format!("SELECT {ADMIN_COLUMNS} FROM admins ORDER BY name"));
pub(super) const ACTIVE_ADMINS: &str =
    "SELECT COUNT(*) FROM admins WHERE role = 'admin' AND status = 'active'";

/// Taking this row's lock serialises changes to the roster of active admins (PostgreSQL; on
/// SQLite the write transaction already does).
pub(super) const LOCK_ROSTER: &str = "UPDATE admin_roster SET version = version + 1 WHERE id = 1";

pub(super) const INSERT_BOOTSTRAP_TOKEN: &str =
    "INSERT INTO admin_bootstrap_tokens (token_hash, created_at, expires_at) VALUES ($1, $2, $3)";
pub(super) const BOOTSTRAP_TOKEN: &str =
    "SELECT expires_at, used_at FROM admin_bootstrap_tokens WHERE token_hash = $1";
pub(super) const SPEND_BOOTSTRAP_TOKEN: &str = "UPDATE admin_bootstrap_tokens SET used_at = $2, used_by = $3
     WHERE token_hash = $1 AND used_at IS NULL AND expires_at > $2";

pub(super) static INSERT_SESSION: Sql = Sql::new(|| {
    format!("INSERT INTO admin_sessions ({SESSION_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)")
});
pub(super) static SESSION_WITH_ADMIN: Sql = Sql::new(|| {
    format!(
        "SELECT {}, {} FROM admin_sessions JOIN admins ON admins.id = admin_sessions.admin_id
         WHERE admin_sessions.id_hash = $1",
        aliased(SESSION_COLUMNS, "admin_sessions"),
        aliased(ADMIN_COLUMNS, "admins")
    )
});
pub(super) const TOUCH_SESSION: &str = "UPDATE admin_sessions SET last_seen_at = $2, idle_expires_at = $3
     WHERE id_hash = $1 AND revoked_at IS NULL AND last_seen_at < $4";
pub(super) const REVOKE_SESSION: &str =
    "UPDATE admin_sessions SET revoked_at = $2 WHERE id_hash = $1 AND revoked_at IS NULL";
pub(super) const SET_STEP_UP: &str =
    "UPDATE admin_sessions SET step_up_at = $2, step_up_for = $3 WHERE id_hash = $1 AND revoked_at IS NULL";
/// Spends a step-up taken for this very action ($3) and no other.
pub(super) const CONSUME_STEP_UP: &str = "UPDATE admin_sessions SET step_up_at = NULL, step_up_for = NULL
     WHERE id_hash = $1 AND revoked_at IS NULL AND step_up_at > $2 AND step_up_for = $3";
