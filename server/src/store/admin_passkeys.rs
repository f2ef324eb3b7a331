//! The admin plane's credentials: admins' passkeys, their WebAuthn ceremonies in flight, and
//! invitations. A credential id is bound once across users' `passkeys` and `admin_passkeys`:
//! every registering transaction checks both tables (on PostgreSQL under a transaction lock
//! keyed by the credential id, so two registrations of one id in the two tables cannot both
//! pass the check).

use async_trait::async_trait;
use time::OffsetDateTime;

use super::StoreError;
use super::admin::AdminRecord;
use super::codec::{Columns, Sql};
use crate::audit::AuditEvent;
use crate::ids::{AdminCeremonyId, AdminId, AdminPasskeyId};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminPasskeyRecord {
    pub id: AdminPasskeyId,
    pub admin_id: AdminId,
    pub credential_id: Vec<u8>,
    pub name: String,
    pub static_state: Vec<u8>,
    pub dynamic_state: Vec<u8>,
    pub aaguid: Vec<u8>,
    pub backup_eligible: bool,
    pub backed_up: bool,
    pub sign_count: i64,
    pub created_at: OffsetDateTime,
    pub last_used_at: Option<OffsetDateTime>,
    pub revoked_at: Option<OffsetDateTime>,
}

/// What an admin ceremony answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CeremonyKind {
    /// A passkey registration (bootstrap, invitation, another passkey).
    Register,
    SignIn,
    StepUp,
}

impl CeremonyKind {
    pub const fn as_str(self) -> &'static str {
        match self {
            CeremonyKind::Register => "register",
            CeremonyKind::SignIn => "sign_in",
            CeremonyKind::StepUp => "step_up",
        }
    }
}

/// A ceremony in flight: single use, expiring, bound to a browser or a session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminCeremonyRecord {
    pub id: AdminCeremonyId,
    pub kind: CeremonyKind,
    pub admin_id: Option<AdminId>,
    /// SHA-256 of what binds it: the login-ceremony cookie, or the session cookie.
    pub binding_hash: Vec<u8>,
    /// The ceremony's state, sealed under the master key.
    pub state: Vec<u8>,
    pub created_at: OffsetDateTime,
    pub expires_at: OffsetDateTime,
}

/// An invitation of an approved admin (its value is never stored, only its SHA-256).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvitationRecord {
    pub token_hash: Vec<u8>,
    pub admin_id: AdminId,
    pub created_at: OffsetDateTime,
    pub expires_at: OffsetDateTime,
    pub used_at: Option<OffsetDateTime>,
}

/// What redeeming an invitation found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InvitationRedeem {
    /// Spent now: the admin (active from now on) has their first passkey.
    Redeemed(AdminRecord),
    Unknown,
    Used,
    Expired,
}

/// What revoking an admin's own passkey found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdminPasskeyRevoke {
    Revoked,
    /// No active passkey of this admin has that id.
    NotFound,
    /// It is the admin's last active passkey: revoking it would lock them out.
    LastOne,
}

/// A verified assertion to store back, compared against the state it was verified with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminAssertionUpdate {
    pub passkey: AdminPasskeyId,
    /// The dynamic state the assertion was verified against: a concurrent use of the same
    /// assertion finds it changed and loses.
    pub previous_dynamic_state: Vec<u8>,
    pub dynamic_state: Vec<u8>,
    pub sign_count: i64,
    pub backed_up: bool,
    pub at: OffsetDateTime,
}

#[async_trait]
pub trait AdminPasskeyStore: Send + Sync + std::fmt::Debug {
    /// An admin's passkeys, revoked ones included, oldest first.
    async fn admin_passkeys(&self, admin: AdminId) -> Result<Vec<AdminPasskeyRecord>, StoreError>;

    async fn admin_passkey_by_credential_id(
        &self,
        credential_id: &[u8],
    ) -> Result<Option<AdminPasskeyRecord>, StoreError>;

    /// Binds another passkey to an active admin, with its audit event;
    /// `Conflict(PasskeyCredential)` if the credential id is bound in either table.
    async fn add_admin_passkey(
        &self,
        passkey: &AdminPasskeyRecord,
        audit: AuditEvent,
    ) -> Result<(), StoreError>;

    /// Stores a verified assertion's counter and flags; `false` (nothing written) if the passkey
    /// was revoked or its state changed since it was read.
    async fn record_admin_assertion(&self, update: &AdminAssertionUpdate) -> Result<bool, StoreError>;

    /// Revokes one of the admin's active passkeys, never the last one.
    async fn revoke_admin_passkey(
        &self,
        admin: AdminId,
        passkey: AdminPasskeyId,
        now: OffsetDateTime,
        audit: AuditEvent,
    ) -> Result<AdminPasskeyRevoke, StoreError>;

    /// Keeps a ceremony, replacing any other of its binding and kind (one in flight per browser
    /// or session) and purging expired ones.
    async fn insert_admin_ceremony(&self, ceremony: &AdminCeremonyRecord) -> Result<(), StoreError>;

    /// Takes the ceremony of this binding and kind, once: it is deleted whether or not it is
    /// still valid; `None` if there was none or it had expired.
    async fn take_admin_ceremony(
        &self,
        binding_hash: &[u8],
        kind: CeremonyKind,
        now: OffsetDateTime,
    ) -> Result<Option<AdminCeremonyRecord>, StoreError>;

    /// What spending this bootstrap token now would find (`Spent` = it would be spent); a read,
    /// changing nothing.
    async fn check_bootstrap_token(
        &self,
        token_hash: &[u8],
        now: OffsetDateTime,
    ) -> Result<super::BootstrapSpend, StoreError>;

    /// Records an invitation (the four-eyes applier's, or a test's).
    async fn insert_invitation(&self, invitation: &InvitationRecord) -> Result<(), StoreError>;

    /// An invitation and its admin.
    async fn invitation(
        &self,
        token_hash: &[u8],
    ) -> Result<Option<(InvitationRecord, AdminRecord)>, StoreError>;

    /// Spends an invitation (compare-and-set on `used_at`), activates its invited admin and binds
    /// their first passkey, in one transaction; nothing changes unless `Redeemed`.
    async fn redeem_invitation(
        &self,
        token_hash: &[u8],
        now: OffsetDateTime,
        passkey: &AdminPasskeyRecord,
        audit: AuditEvent,
    ) -> Result<InvitationRedeem, StoreError>;
}

pub(super) const ADMIN_PASSKEY_COLUMNS: &str = "id, admin_id, credential_id, name, static_state, dynamic_state, \
     aaguid, backup_eligible, backed_up, sign_count, created_at, last_used_at, revoked_at";
pub(super) const CEREMONY_COLUMNS: &str = "id, kind, admin_id, binding_hash, state, created_at, expires_at";
pub(super) const INVITATION_COLUMNS: &str = "token_hash, admin_id, created_at, expires_at, used_at";

pub(super) fn admin_passkey_from_row<R: Columns>(row: &R) -> Result<AdminPasskeyRecord, StoreError> {
    Ok(AdminPasskeyRecord {
        id: AdminPasskeyId(row.id("id")?),
        admin_id: AdminId(row.id("admin_id")?),
        credential_id: row.value("credential_id")?,
        name: row.value("name")?,
        static_state: row.value("static_state")?,
        dynamic_state: row.value("dynamic_state")?,
        aaguid: row.value("aaguid")?,
        backup_eligible: row.value("backup_eligible")?,
        backed_up: row.value("backed_up")?,
        sign_count: row.value("sign_count")?,
        created_at: row.time("created_at")?,
        last_used_at: row.optional_time("last_used_at")?,
        revoked_at: row.optional_time("revoked_at")?,
    })
}

pub(super) fn ceremony_from_row<R: Columns>(row: &R) -> Result<AdminCeremonyRecord, StoreError> {
    let kind: String = row.value("kind")?;
    let kind = match kind.as_str() {
        "register" => CeremonyKind::Register,
        "sign_in" => CeremonyKind::SignIn,
        "step_up" => CeremonyKind::StepUp,
        other => return Err(StoreError::Corrupt(format!("admin ceremony kind `{other}`"))),
    };
    Ok(AdminCeremonyRecord {
        id: AdminCeremonyId(row.id("id")?),
        kind,
        admin_id: row.optional_id("admin_id")?.map(AdminId),
        binding_hash: row.value("binding_hash")?,
        state: row.value("state")?,
        created_at: row.time("created_at")?,
        expires_at: row.time("expires_at")?,
    })
}

pub(super) fn invitation_from_row<R: Columns>(row: &R) -> Result<InvitationRecord, StoreError> {
    Ok(InvitationRecord {
        token_hash: row.value("token_hash")?,
        admin_id: AdminId(row.id("admin_id")?),
        created_at: row.time("created_at")?,
        expires_at: row.time("expires_at")?,
        used_at: row.optional_time("used_at")?,
    })
}

/// What the registering transaction concludes from [`CREDENTIAL_BOUND`]'s count.
pub(super) fn refuse_if_bound(bound: i64) -> Result<(), StoreError> {
    if bound > 0 { Err(StoreError::Conflict(super::Conflict::PasskeyCredential)) } else { Ok(()) }
}

/// What spending a bootstrap token would find: `found` is `(expired, used)` if it exists.
pub(super) fn judge_bootstrap_token(
    found: Option<(bool, bool)>,
    active_admins: u32,
) -> super::BootstrapSpend {
    use super::BootstrapSpend;
    match found {
        None => BootstrapSpend::Unknown,
        Some((_, true)) => BootstrapSpend::Used,
        Some((true, false)) => BootstrapSpend::Expired,
        Some(_) if active_admins >= crate::admin::model::MIN_ACTIVE_ADMINS => BootstrapSpend::Closed,
        Some(_) => BootstrapSpend::Spent,
    }
}

/// Why an invitation found by its hash cannot be redeemed at `now`, if it cannot.
pub(super) fn invitation_refusal(
    invitation: &InvitationRecord,
    now: OffsetDateTime,
) -> Option<InvitationRedeem> {
    if invitation.used_at.is_some() {
        Some(InvitationRedeem::Used)
    } else if invitation.expires_at <= now {
        Some(InvitationRedeem::Expired)
    } else {
        None
    }
}

/// The key of the PostgreSQL transaction lock that serialises registrations of one credential
/// id across both tables: the first 8 bytes of its SHA-256.
pub(super) fn credential_lock_key(credential_id: &[u8]) -> i64 {
    let digest = ring::digest::digest(&ring::digest::SHA256, credential_id);
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest.as_ref()[..8]);
    i64::from_be_bytes(first)
}

// Portable statements: the same text on both engines.

/// How many rows of either table bind the credential id.
pub(super) const CREDENTIAL_BOUND: &str = "SELECT (SELECT COUNT(*) FROM passkeys WHERE credential_id = $1)
     + (SELECT COUNT(*) FROM admin_passkeys WHERE credential_id = $1)";
pub(super) static INSERT_ADMIN_PASSKEY: Sql = Sql::new(|| {
    format!(
        "INSERT INTO admin_passkeys ({ADMIN_PASSKEY_COLUMNS})
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)"
    )
});
pub(super) static ADMIN_PASSKEYS: Sql = Sql::new(|| {
    format!("SELECT {ADMIN_PASSKEY_COLUMNS} FROM admin_passkeys WHERE admin_id = $1 ORDER BY created_at, id")
});
pub(super) static ADMIN_PASSKEY_BY_CREDENTIAL: Sql =
    Sql::new(|| format!("SELECT {ADMIN_PASSKEY_COLUMNS} FROM admin_passkeys WHERE credential_id = $1"));
pub(super) const RECORD_ASSERTION: &str = "UPDATE admin_passkeys
     SET dynamic_state = $3, sign_count = $4, backed_up = $5, last_used_at = $6
     WHERE id = $1 AND dynamic_state = $2 AND revoked_at IS NULL";
pub(super) const ACTIVE_PASSKEY_COUNT: &str =
    "SELECT COUNT(*) FROM admin_passkeys WHERE admin_id = $1 AND revoked_at IS NULL";
pub(super) const REVOKE_ADMIN_PASSKEY: &str =
    "UPDATE admin_passkeys SET revoked_at = $3 WHERE id = $1 AND admin_id = $2 AND revoked_at IS NULL";

pub(super) const PURGE_CEREMONIES: &str =
    "DELETE FROM admin_ceremonies WHERE expires_at <= $1 OR (binding_hash = $2 AND kind = $3)";
pub(super) static INSERT_CEREMONY: Sql = Sql::new(|| {
    format!("INSERT INTO admin_ceremonies ({CEREMONY_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7)")
});
pub(super) static TAKE_CEREMONY: Sql = Sql::new(|| {
    format!("DELETE FROM admin_ceremonies WHERE binding_hash = $1 AND kind = $2 RETURNING {CEREMONY_COLUMNS}")
});

pub(super) static INSERT_INVITATION: Sql =
    Sql::new(|| format!("INSERT INTO admin_invitations ({INVITATION_COLUMNS}) VALUES ($1, $2, $3, $4, $5)"));
pub(super) static INVITATION: Sql =
    Sql::new(|| format!("SELECT {INVITATION_COLUMNS} FROM admin_invitations WHERE token_hash = $1"));
pub(super) const SPEND_INVITATION: &str = "UPDATE admin_invitations SET used_at = $2
     WHERE token_hash = $1 AND used_at IS NULL AND expires_at > $2";
pub(super) const ACTIVATE_INVITED: &str =
    "UPDATE admins SET status = 'active' WHERE id = $1 AND status = 'invited'";
