//! Passkeys: each user's WebAuthn user handle, registered credentials, and registration
//! ceremonies in flight (single use, expiring; in the database so any instance can finish one).

use async_trait::async_trait;
use time::OffsetDateTime;

use super::codec::{Columns, Sql};
use super::{ApprovalProof, StoreError};
use crate::audit::{Actor, AuditEvent};
use crate::ids::{AppId, ChallengeId, PasskeyId, RegistrationId, UserId};
use crate::store::ChallengeRecord;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasskeyRecord {
    pub id: PasskeyId,
    pub user_id: UserId,
    /// The WebAuthn credential id: bound to this user forever.
    pub credential_id: Vec<u8>,
    pub name: String,
    /// `webauthn_rp`'s encoding of the public key and static extensions.
    pub static_state: Vec<u8>,
    /// `webauthn_rp`'s encoding of UV, backup state, signature counter and attachment.
    pub dynamic_state: Vec<u8>,
    pub transports: i16,
    pub aaguid: Vec<u8>,
    pub backup_eligible: bool,
    pub backed_up: bool,
    pub sign_count: i64,
    pub created_at: OffsetDateTime,
    pub last_used_at: Option<OffsetDateTime>,
    pub revoked_at: Option<OffsetDateTime>,
}

impl PasskeyRecord {
    pub fn is_active(&self) -> bool {
        self.revoked_at.is_none()
    }
}

/// A registration ceremony begun and not yet completed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistrationCeremony {
    pub id: RegistrationId,
    pub user_id: UserId,
    /// The app that began it; `None`: the operator (a recovery link).
    pub app_id: Option<AppId>,
    /// The name the passkey will have.
    pub name: String,
    /// Begun for a user without any factor: completing it is refused if one appeared meanwhile.
    pub is_first_factor: bool,
    /// `webauthn_rp`'s encoding of the registration server state.
    pub server_state: Vec<u8>,
    pub created_at: OffsetDateTime,
    pub expires_at: OffsetDateTime,
}

/// How a registration may begin: for a user without any factor, with the user's approval
/// (consumed exactly once, like a second device's enrollment) and its audit event, or on the
/// operator's word (a recovery link).
#[derive(Debug, Clone)]
pub enum RegistrationProof {
    FirstFactor,
    Approval { proof: ApprovalProof, redeemed: Box<AuditEvent> },
    Operator,
}

/// A single-use link to the hosted registration page, carrying one registration ceremony.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnrollmentLink {
    /// SHA-256 of the code in the link: the code itself is never stored.
    pub code_hash: Vec<u8>,
    /// The ceremony the page completes; once it is gone (completed) the link is used.
    pub registration_id: RegistrationId,
    pub user_id: UserId,
    /// The user's name when the link was created: the link is void if it now names another.
    pub username: String,
    /// The app that created the link, the actor of what the page does; `None`: the operator.
    pub app_id: Option<AppId>,
    pub app_name: Option<String>,
    /// `PublicKeyCredentialCreationOptionsJSON`, as the page hands it to the browser.
    pub options: String,
    pub created_at: OffsetDateTime,
    pub expires_at: OffsetDateTime,
}

impl EnrollmentLink {
    /// Who the page acts as: the app that created the link, or the operator.
    pub fn actor(&self) -> Actor {
        match (self.app_id, &self.app_name) {
            (Some(id), Some(name)) => Actor::App { id, name: name.clone() },
            _ => Actor::Cli,
        }
    }
}

/// The WebAuthn request a passkey sign-in (a challenge) is answered by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasskeySignIn {
    pub challenge_id: ChallengeId,
    /// `webauthn_rp`'s encoding of the authentication server state.
    pub server_state: Vec<u8>,
    /// Assertions refused so far (the sign-in's own budget).
    pub failed_assertions: i32,
    /// The hosted sign-in page's (none for a sign-in created before pages existed).
    pub page: Option<SignInPage>,
}

/// What the hosted sign-in page of a passkey challenge needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignInPage {
    /// SHA-256 of the token in the page's URL: the token itself is never stored.
    pub token_hash: Vec<u8>,
    /// `PublicKeyCredentialRequestOptionsJSON`, as the page hands it to the browser.
    pub options: String,
    /// The app that created the challenge, the actor of what the page does.
    pub app_name: String,
}

/// A verified assertion, applied by compare-and-set: the challenge must still be pending and
/// unexpired, the passkey active and its counter still `previous_sign_count`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasskeyAssertion {
    pub challenge: ChallengeId,
    pub user: UserId,
    pub passkey: PasskeyId,
    pub previous_sign_count: i64,
    pub sign_count: i64,
    pub dynamic_state: Vec<u8>,
    pub backed_up: bool,
}

pub(super) const PASSKEY_COLUMNS: &str = "id, user_id, credential_id, name, static_state, dynamic_state, transports, aaguid, backup_eligible, backed_up, sign_count, created_at, last_used_at, revoked_at";

pub(super) fn passkey_from_row<R: Columns>(row: &R) -> Result<PasskeyRecord, StoreError> {
    Ok(PasskeyRecord {
        id: PasskeyId(row.id("id")?),
        user_id: UserId(row.id("user_id")?),
        credential_id: row.value("credential_id")?,
        name: row.value("name")?,
        static_state: row.value("static_state")?,
        dynamic_state: row.value("dynamic_state")?,
        transports: row.value("transports")?,
        aaguid: row.value("aaguid")?,
        backup_eligible: row.value("backup_eligible")?,
        backed_up: row.value("backed_up")?,
        sign_count: row.value("sign_count")?,
        created_at: row.time("created_at")?,
        last_used_at: row.optional_time("last_used_at")?,
        revoked_at: row.optional_time("revoked_at")?,
    })
}

pub(super) const REGISTRATION_COLUMNS: &str =
    "id, user_id, app_id, name, is_first_factor, server_state, created_at, expires_at";

pub(super) fn registration_from_row<R: Columns>(row: &R) -> Result<RegistrationCeremony, StoreError> {
    Ok(RegistrationCeremony {
        id: RegistrationId(row.id("id")?),
        user_id: UserId(row.id("user_id")?),
        app_id: row.optional_id("app_id")?.map(AppId),
        name: row.value("name")?,
        is_first_factor: row.value("is_first_factor")?,
        server_state: row.value("server_state")?,
        created_at: row.time("created_at")?,
        expires_at: row.time("expires_at")?,
    })
}

pub(super) const LINK_COLUMNS: &str =
    "code_hash, registration_id, user_id, username, app_id, app_name, options, created_at, expires_at";

pub(super) fn link_from_row<R: Columns>(row: &R) -> Result<EnrollmentLink, StoreError> {
    Ok(EnrollmentLink {
        code_hash: row.value("code_hash")?,
        registration_id: RegistrationId(row.id("registration_id")?),
        user_id: UserId(row.id("user_id")?),
        username: row.value("username")?,
        app_id: row.optional_id("app_id")?.map(AppId),
        app_name: row.value("app_name")?,
        options: row.value("options")?,
        created_at: row.time("created_at")?,
        expires_at: row.time("expires_at")?,
    })
}

// Portable statements: the same text on both engines.

pub(super) const USER_HANDLE: &str = "SELECT handle FROM webauthn_user_handles WHERE user_id = $1";

pub(super) const INSERT_USER_HANDLE: &str =
    "INSERT INTO webauthn_user_handles (user_id, handle) VALUES ($1, $2) ON CONFLICT (user_id) DO NOTHING";

pub(super) static PASSKEYS_OF_USER: Sql =
    Sql::new(|| format!("SELECT {PASSKEY_COLUMNS} FROM passkeys WHERE user_id = $1 ORDER BY created_at, id"));

pub(super) static PASSKEY_BY_CREDENTIAL_ID: Sql =
    Sql::new(|| format!("SELECT {PASSKEY_COLUMNS} FROM passkeys WHERE credential_id = $1"));

pub(super) static REGISTRATION_BY_ID: Sql =
    Sql::new(|| format!("SELECT {REGISTRATION_COLUMNS} FROM webauthn_registrations WHERE id = $1"));

pub(super) const INSERT_REGISTRATION: &str = "INSERT INTO webauthn_registrations (id, user_id, app_id, name, is_first_factor, server_state, created_at, expires_at)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8)";

pub(super) const INSERT_LINK: &str = "INSERT INTO passkey_enrollment_links (code_hash, registration_id, user_id, username, app_id, app_name, options, created_at, expires_at)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)";

pub(super) static LINK_BY_CODE_HASH: Sql =
    Sql::new(|| format!("SELECT {LINK_COLUMNS} FROM passkey_enrollment_links WHERE code_hash = $1"));

pub(super) const PURGE_EXPIRED_LINKS: &str = "DELETE FROM passkey_enrollment_links WHERE expires_at <= $1";

/// Uses a ceremony once, and only before it expires (the service checks too; this closes the race).
pub(super) const DELETE_REGISTRATION: &str =
    "DELETE FROM webauthn_registrations WHERE id = $1 AND expires_at > $2";

pub(super) const PURGE_EXPIRED_REGISTRATIONS: &str =
    "DELETE FROM webauthn_registrations WHERE expires_at <= $1";

pub(super) const INSERT_PASSKEY: &str = "INSERT INTO passkeys (id, user_id, credential_id, name, static_state, dynamic_state, transports, aaguid, backup_eligible, backed_up, sign_count, created_at)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)";

/// Sets one column of an active passkey of the user (rename, revoke), returning the row.
pub(super) fn set_active_passkey_column(column: &str) -> String {
    format!(
        "UPDATE passkeys SET {column} = $3 WHERE id = $1 AND user_id = $2 AND revoked_at IS NULL
         RETURNING {PASSKEY_COLUMNS}"
    )
}

pub(super) const INSERT_SIGN_IN: &str =
    "INSERT INTO passkey_sign_ins (challenge_id, server_state, page_token_hash, options, app_name)
     VALUES ($1, $2, $3, $4, $5)";

const SIGN_IN_COLUMNS: &str =
    "challenge_id, server_state, failed_assertions, page_token_hash, options, app_name";

pub(super) static SIGN_IN: Sql =
    Sql::new(|| format!("SELECT {SIGN_IN_COLUMNS} FROM passkey_sign_ins WHERE challenge_id = $1"));

pub(super) static SIGN_IN_BY_PAGE_TOKEN: Sql =
    Sql::new(|| format!("SELECT {SIGN_IN_COLUMNS} FROM passkey_sign_ins WHERE page_token_hash = $1"));

pub(super) const COUNT_FAILED_ASSERTION: &str =
    "UPDATE passkey_sign_ins SET failed_assertions = failed_assertions + 1
     WHERE challenge_id = $1 RETURNING failed_assertions";

pub(super) const USE_PASSKEY: &str =
    "UPDATE passkeys SET dynamic_state = $3, sign_count = $4, backed_up = $5, last_used_at = $6
     WHERE id = $1 AND sign_count = $2 AND revoked_at IS NULL AND user_id = $7";

pub(super) const PASSKEY_ACTIVE: &str =
    "SELECT revoked_at IS NULL FROM passkeys WHERE id = $1 AND user_id = $2";

pub(super) fn sign_in_from_row<R: Columns>(row: &R) -> Result<PasskeySignIn, StoreError> {
    Ok(PasskeySignIn {
        challenge_id: ChallengeId(row.id("challenge_id")?),
        server_state: row.value("server_state")?,
        failed_assertions: row.value("failed_assertions")?,
        page: match (row.value("page_token_hash")?, row.value("options")?, row.value("app_name")?) {
            (Some(token_hash), Some(options), Some(app_name)) => {
                Some(SignInPage { token_hash, options, app_name })
            }
            _ => None,
        },
    })
}

/// Tells every active device of the user about a change to their factors.
pub(super) const NOTIFY_DEVICES: &str = "INSERT INTO device_notices (device_id, kind, details, created_at)
     SELECT id, $2, $3, $4 FROM devices WHERE user_id = $1 AND revoked_at IS NULL";

#[async_trait]
pub trait PasskeyStore: Send + Sync + std::fmt::Debug {
    /// The user's WebAuthn user handle, storing `candidate` if they have none yet (the first one
    /// stored wins, so concurrent first registrations agree).
    async fn ensure_user_handle(&self, user: UserId, candidate: &[u8]) -> Result<Vec<u8>, StoreError>;

    /// The user's WebAuthn user handle if they have one (read only: a sign-in needs no write).
    async fn user_handle(&self, user: UserId) -> Result<Option<Vec<u8>>, StoreError>;

    /// The user's passkeys, revoked ones included, oldest first.
    async fn passkeys_for_user(&self, user: UserId) -> Result<Vec<PasskeyRecord>, StoreError>;

    /// The passkey (active or revoked) holding this credential id.
    async fn passkey_by_credential_id(
        &self,
        credential_id: &[u8],
    ) -> Result<Option<PasskeyRecord>, StoreError>;

    /// Stores a ceremony (and the enrollment link carrying it, if any) with its audit event.
    /// With an approval, the approval moves `approved → redeemed` by compare-and-set in the same
    /// transaction (the second-device rule): `NotFound`, and nothing written, if it does not
    /// qualify or was used meanwhile.
    async fn begin_registration(
        &self,
        ceremony: RegistrationCeremony,
        proof: RegistrationProof,
        link: Option<&EnrollmentLink>,
        audit: AuditEvent,
    ) -> Result<(), StoreError>;

    /// The enrollment link whose code hashes to `code_hash` (used or not, until purged).
    async fn enrollment_link(&self, code_hash: &[u8]) -> Result<Option<EnrollmentLink>, StoreError>;

    async fn registration(&self, id: RegistrationId) -> Result<Option<RegistrationCeremony>, StoreError>;

    /// Completes a ceremony: deletes it by compare-and-set (`NotFound` if another request used
    /// it first), stores the passkey, tells the user's devices (`notice`: kind, details) and
    /// writes `audit`, in one transaction. `Conflict::PasskeyCredential` when the credential id
    /// is bound already; `Conflict::SecondDevice` when a first-factor ceremony finds a factor.
    async fn complete_registration(
        &self,
        ceremony: &RegistrationCeremony,
        passkey: PasskeyRecord,
        notice: (&str, String),
        audit: AuditEvent,
    ) -> Result<PasskeyRecord, StoreError>;

    /// Renames an active passkey of the user; `NotFound` if there is none with that id.
    async fn rename_passkey(
        &self,
        user: UserId,
        id: PasskeyId,
        name: &str,
        audit: AuditEvent,
    ) -> Result<PasskeyRecord, StoreError>;

    /// Deletes registration ceremonies and enrollment links that expired (they can no longer
    /// complete anyway).
    async fn purge_expired_registrations(&self, now: OffsetDateTime) -> Result<u64, StoreError>;

    /// Creates a passkey sign-in: its challenge (no number, no push, outside the push budget
    /// and ladder) and the WebAuthn request state, with the audit event.
    async fn create_passkey_challenge(
        &self,
        challenge: ChallengeRecord,
        server_state: &[u8],
        page: &SignInPage,
        audit: AuditEvent,
    ) -> Result<ChallengeRecord, StoreError>;

    async fn passkey_sign_in(&self, challenge: ChallengeId) -> Result<Option<PasskeySignIn>, StoreError>;

    /// The sign-in whose page token hashes to `token_hash`.
    async fn passkey_sign_in_by_page_token(
        &self,
        token_hash: &[u8],
    ) -> Result<Option<PasskeySignIn>, StoreError>;

    /// Counts a refused assertion for the sign-in, with its audit event; returns the count.
    async fn count_failed_assertion(
        &self,
        challenge: ChallengeId,
        audit: AuditEvent,
    ) -> Result<i32, StoreError>;

    /// `pending → approved` and the passkey's new state, in one transaction with `audit`.
    /// `PreconditionFailed(ChallengeNotPending)` if the challenge is no longer pending (or has
    /// expired, or is not the user's passkey sign-in); `PreconditionFailed(CounterNotIncreasing)`
    /// if the passkey was used meanwhile; `PreconditionFailed(DeviceInactive)` if it was revoked
    /// (or is not the user's): nothing is written in any case.
    async fn approve_with_passkey(
        &self,
        assertion: &PasskeyAssertion,
        now: OffsetDateTime,
        audit: AuditEvent,
    ) -> Result<ChallengeRecord, StoreError>;

    /// `pending → denied`: the sign-in is refused (audited). `NotFound` if it is not pending.
    async fn deny_passkey_challenge(
        &self,
        challenge: ChallengeId,
        now: OffsetDateTime,
        audit: AuditEvent,
    ) -> Result<ChallengeRecord, StoreError>;

    /// Revokes an active passkey of the user; `NotFound` if there is none with that id.
    async fn revoke_passkey(
        &self,
        user: UserId,
        id: PasskeyId,
        at: OffsetDateTime,
        audit: AuditEvent,
    ) -> Result<PasskeyRecord, StoreError>;
}
