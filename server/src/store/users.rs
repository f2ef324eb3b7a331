//! Users: provisioning, lookup and deletion.

use async_trait::async_trait;
use time::OffsetDateTime;

use super::StoreError;
use super::codec::{Columns, Sql};
use crate::audit::AuditEvent;
use crate::ids::UserId;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRecord {
    pub id: UserId,
    pub username: String,
    pub display_name: Option<String>,
    pub is_privileged: bool,
    /// The user's passkey policy: `Some(true)` requires a passkey, `Some(false)` allows push
    /// whatever the privilege, `None` follows the privilege (see
    /// [`crate::users::model::passkey_required`]).
    pub passkey_required: Option<bool>,
    pub created_at: OffsetDateTime,
}

/// The columns of `users` a [`UserRecord`] holds, as [`user_from_row`] reads them.
pub(super) const USER_COLUMNS: &str =
    "id, username, display_name, is_privileged, passkey_required, created_at";

pub(super) fn user_from_row<R: Columns>(row: &R) -> Result<UserRecord, StoreError> {
    user_from_prefixed(row, "")
}

/// A user read from columns named `{prefix}{column}` (see [`super::codec::aliased`]).
pub(super) fn user_from_prefixed<R: Columns>(row: &R, prefix: &str) -> Result<UserRecord, StoreError> {
    let column = |name: &str| format!("{prefix}{name}");
    Ok(UserRecord {
        id: UserId(row.id(&column("id"))?),
        username: row.value(&column("username"))?,
        display_name: row.value(&column("display_name"))?,
        is_privileged: row.value(&column("is_privileged"))?,
        passkey_required: row.value(&column("passkey_required"))?,
        created_at: row.time(&column("created_at"))?,
    })
}

// Portable statements: the same text on both engines.

/// A live user by id (a deleted user's id names nobody).
pub(super) static USER_BY_ID: Sql =
    Sql::new(|| format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1 AND deleted_at IS NULL"));
pub(super) static USER_BY_USERNAME: Sql =
    Sql::new(|| format!("SELECT {USER_COLUMNS} FROM users WHERE username = $1"));

/// A user whose push is held for admin review (a "not me" quarantine, a hard lock) is not
/// deleted: deleting and creating the name again would be an unfreeze without the review.
pub(super) const DELETE_USER: &str = "UPDATE users SET deleted_at = $2, username = $3
     WHERE id = $1 AND deleted_at IS NULL AND NOT EXISTS (
         SELECT 1 FROM user_push_state s WHERE s.user_id = $1 AND (s.needs_admin_review OR s.hard_locked))";
/// After a refused delete: whether the user is there (then held for review) or gone.
pub(super) const USER_EXISTS: &str = "SELECT COUNT(*) FROM users WHERE id = $1 AND deleted_at IS NULL";

/// Why a delete found nothing to delete.
pub(super) fn refused_delete(exists: i64) -> StoreError {
    if exists > 0 {
        StoreError::PreconditionFailed(super::Precondition::HeldForReview)
    } else {
        StoreError::NotFound
    }
}

pub(super) const SET_PASSKEY_REQUIRED: &str =
    "UPDATE users SET passkey_required = $2 WHERE id = $1 AND deleted_at IS NULL";

pub(super) const REVOKE_USER_DEVICES: &str =
    "UPDATE devices SET revoked_at = $2 WHERE user_id = $1 AND revoked_at IS NULL";

/// What else a deleted user loses, each bound to `($1 user, $2 at)`: their passkeys are
/// revoked (a pending passkey sign-in can no longer be approved) and their unfinished passkey
/// ceremonies and enrollment links expire. Returns the passkeys revoked first.
pub(super) const VOID_USER_PASSKEY_FACTORS: [&str; 3] = [
    "UPDATE passkeys SET revoked_at = $2 WHERE user_id = $1 AND revoked_at IS NULL",
    "UPDATE webauthn_registrations SET expires_at = $2 WHERE user_id = $1 AND expires_at > $2",
    "UPDATE passkey_enrollment_links SET expires_at = $2 WHERE user_id = $1 AND expires_at > $2",
];

/// Whether the user has any active factor (a device or a passkey): the one rule for "a first
/// factor needs only the app's word; any later one needs proof from the user".
/// An active user's row, locked until the transaction ends (PostgreSQL).
pub(super) const LOCK_USER: &str = "SELECT id FROM users WHERE id = $1 AND deleted_at IS NULL FOR UPDATE";

pub(super) const HAS_ANY_FACTOR: &str =
    "SELECT EXISTS (SELECT 1 FROM devices WHERE user_id = $1 AND revoked_at IS NULL)
     OR EXISTS (SELECT 1 FROM passkeys WHERE user_id = $1 AND revoked_at IS NULL)";

pub(super) const VOID_USER_ENROLLMENTS: &str = "UPDATE enrollments SET expires_at = $2, code_sealed = NULL WHERE user_id = $1 AND used_at IS NULL AND expires_at > $2";

/// What resetting a user's factors revoked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FactorReset {
    pub devices_revoked: u64,
    pub passkeys_revoked: u64,
}

/// The audit event of a deletion or reset, with what it revoked.
pub(super) fn with_counts(mut audit: AuditEvent, reset: FactorReset) -> AuditEvent {
    if let serde_json::Value::Object(details) = &mut audit.details {
        details.insert("devices_revoked".into(), reset.devices_revoked.into());
        details.insert("passkeys_revoked".into(), reset.passkeys_revoked.into());
    }
    audit
}

#[async_trait]
pub trait UserStore: Send + Sync + std::fmt::Debug {
    async fn create_user(&self, user: UserRecord, audit: AuditEvent) -> Result<UserRecord, StoreError>;

    /// An active (not deleted) user.
    async fn user_by_username(&self, username: &str) -> Result<Option<UserRecord>, StoreError>;

    /// A live user by id (what an ID token's `sub` names).
    async fn user_by_id(&self, id: UserId) -> Result<Option<UserRecord>, StoreError>;

    /// Deletes a user: revokes every device, voids pending enrollments and frees the username
    /// (the id and the audit trail stay). Returns how many devices were revoked.
    async fn delete_user(&self, id: UserId, at: OffsetDateTime, audit: AuditEvent)
    -> Result<u64, StoreError>;

    /// Whether the user has an active device or passkey (see [`HAS_ANY_FACTOR`]).
    async fn has_any_factor(&self, id: UserId) -> Result<bool, StoreError>;

    /// Sets the user's passkey policy, with its audit event; `NotFound` for a deleted user.
    async fn set_passkey_required(
        &self,
        id: UserId,
        required: Option<bool>,
        audit: AuditEvent,
    ) -> Result<(), StoreError>;

    /// Takes every factor from a live user, as a deletion does but keeping the user: devices
    /// and passkeys revoked, pending enrollments, passkey ceremonies and links voided, with the
    /// audit event (its details gain the counts); `NotFound` for a deleted user.
    async fn reset_user_factors(
        &self,
        id: UserId,
        at: OffsetDateTime,
        audit: AuditEvent,
    ) -> Result<FactorReset, StoreError>;
}
