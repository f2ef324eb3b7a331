//! Enrollments, devices, signed-request nonces, device notices and the server's device-signing key.

use async_trait::async_trait;
use time::OffsetDateTime;

use super::StoreError;
use super::codec::{Columns, Sql};
use crate::audit::AuditEvent;
use crate::ids::{AppId, ChallengeId, DeviceId, EnrollmentId, UserId};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnrollmentRecord {
    pub id: EnrollmentId,
    pub user_id: UserId,
    /// SHA-256 of the activation code: finds the row without storing the code.
    pub code_hash: Vec<u8>,
    /// The code sealed under the master key, so the QR code can be shown again; cleared on use.
    pub code_sealed: Option<Vec<u8>>,
    pub is_second_device: bool,
    pub created_by: String,
    pub created_at: OffsetDateTime,
    pub expires_at: OffsetDateTime,
    pub used_at: Option<OffsetDateTime>,
    pub device_id: Option<DeviceId>,
}

/// An approval offered as proof for adding a device: it must be a challenge of `user`, created
/// by `app_id`, approved (not redeemed) and decided within `window` (by the store's clock).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApprovalProof {
    pub challenge: ChallengeId,
    pub app_id: AppId,
    pub user: UserId,
    pub window: time::Duration,
}

/// A device's push registration as stored: provider `apns` | `fcm` | `none`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredPush {
    pub provider: String,
    pub token: Option<String>,
    pub environment: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceRecord {
    pub id: DeviceId,
    pub user_id: UserId,
    /// Uncompressed SEC1 P-256 point.
    pub public_key: Vec<u8>,
    pub push: StoredPush,
    pub name: String,
    pub platform: String,
    pub created_at: OffsetDateTime,
    pub revoked_at: Option<OffsetDateTime>,
    /// Highest challenge-response counter accepted so far.
    pub last_counter: i64,
}

impl DeviceRecord {
    pub fn is_active(&self) -> bool {
        self.revoked_at.is_none()
    }
}

/// A security notice for one device, e.g. "a new device was enrolled on your account".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoticeRecord {
    pub id: i64,
    pub device_id: DeviceId,
    pub kind: String,
    pub details: String,
    pub created_at: OffsetDateTime,
}

/// The server's device-signing key: public half and the PKCS#8 sealed under the master key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerKeyRecord {
    pub public_key: Vec<u8>,
    pub sealed_pkcs8: Vec<u8>,
    pub created_at: OffsetDateTime,
}

/// Every column of `enrollments`, as [`enrollment_from_row`] reads them.
pub(super) const ENROLLMENT_COLUMNS: &str = "id, user_id, code_hash, code_sealed, is_second_device, created_by, created_at, expires_at, used_at, device_id";
/// Every column of `devices`, as [`device_from_row`] reads them.
pub(super) const DEVICE_COLUMNS: &str = "id, user_id, public_key, push_provider, push_token, push_environment, name, platform, created_at, revoked_at, last_counter";

pub(super) fn enrollment_from_row<R: Columns>(row: &R) -> Result<EnrollmentRecord, StoreError> {
    Ok(EnrollmentRecord {
        id: EnrollmentId(row.id("id")?),
        user_id: UserId(row.id("user_id")?),
        code_hash: row.value("code_hash")?,
        code_sealed: row.value("code_sealed")?,
        is_second_device: row.value("is_second_device")?,
        created_by: row.value("created_by")?,
        created_at: row.time("created_at")?,
        expires_at: row.time("expires_at")?,
        used_at: row.optional_time("used_at")?,
        device_id: row.optional_id("device_id")?.map(DeviceId),
    })
}

pub(super) fn device_from_row<R: Columns>(row: &R) -> Result<DeviceRecord, StoreError> {
    device_from_prefixed(row, "")
}

/// A device from columns named `{prefix}id`, `{prefix}user_id`, … (for rows that join it).
pub(super) fn device_from_prefixed<R: Columns>(row: &R, prefix: &str) -> Result<DeviceRecord, StoreError> {
    let column = |name: &str| format!("{prefix}{name}");
    Ok(DeviceRecord {
        id: DeviceId(row.id(&column("id"))?),
        user_id: UserId(row.id(&column("user_id"))?),
        public_key: row.value(&column("public_key"))?,
        push: StoredPush {
            provider: row.value(&column("push_provider"))?,
            token: row.value(&column("push_token"))?,
            environment: row.value(&column("push_environment"))?,
        },
        name: row.value(&column("name"))?,
        platform: row.value(&column("platform"))?,
        created_at: row.time(&column("created_at"))?,
        revoked_at: row.optional_time(&column("revoked_at"))?,
        last_counter: row.value(&column("last_counter"))?,
    })
}

/// `DEVICE_COLUMNS` of table alias `d`, renamed `d_…` so they can sit beside another table's.
pub(super) fn prefixed_device_columns() -> String {
    super::codec::aliased(DEVICE_COLUMNS, "d")
}

pub(super) fn notice_from_row<R: Columns>(row: &R) -> Result<NoticeRecord, StoreError> {
    Ok(NoticeRecord {
        id: row.value("id")?,
        device_id: DeviceId(row.id("device_id")?),
        kind: row.value("kind")?,
        details: row.value("details")?,
        created_at: row.time("created_at")?,
    })
}

pub(super) fn server_key_from_row<R: Columns>(row: &R) -> Result<ServerKeyRecord, StoreError> {
    Ok(ServerKeyRecord {
        public_key: row.value("public_key")?,
        sealed_pkcs8: row.value("sealed_pkcs8")?,
        created_at: row.time("created_at")?,
    })
}

// Portable statements: the same text on both engines.

pub(super) static ENROLLMENT_BY_ID: Sql =
    Sql::new(|| format!("SELECT {ENROLLMENT_COLUMNS} FROM enrollments WHERE id = $1"));

pub(super) static ENROLLMENT_BY_CODE_HASH: Sql =
    Sql::new(|| format!("SELECT {ENROLLMENT_COLUMNS} FROM enrollments WHERE code_hash = $1"));

pub(super) const USE_ENROLLMENT: &str =
    "UPDATE enrollments SET used_at = $2, device_id = $3, code_sealed = NULL
     WHERE id = $1 AND used_at IS NULL AND expires_at > $2";

pub(super) const INSERT_DEVICE: &str = "INSERT INTO devices (id, user_id, public_key, push_provider, push_token, push_environment, name, platform, created_at)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)";

pub(super) const NOTIFY_OTHER_DEVICES: &str =
    "INSERT INTO device_notices (device_id, kind, details, created_at)
     SELECT id, $3, $4, $5 FROM devices WHERE user_id = $1 AND revoked_at IS NULL AND id <> $2";

pub(super) static DEVICE_BY_ID: Sql =
    Sql::new(|| format!("SELECT {DEVICE_COLUMNS} FROM devices WHERE id = $1"));

pub(super) static DEVICES_OF_USER: Sql =
    Sql::new(|| format!("SELECT {DEVICE_COLUMNS} FROM devices WHERE user_id = $1 ORDER BY created_at, id"));

pub(super) const PUBLIC_KEY_OWNER: &str = "SELECT user_id FROM devices WHERE public_key = $1";

pub(super) const PUSH_TOKEN_OWNER: &str =
    "SELECT user_id FROM devices WHERE push_provider = $1 AND push_token = $2 AND revoked_at IS NULL";

pub(super) static REVOKE_DEVICE: Sql = Sql::new(|| {
    format!(
        "UPDATE devices SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL RETURNING {DEVICE_COLUMNS}"
    )
});

pub(super) const UPDATE_PUSH: &str =
    "UPDATE devices SET push_provider = $2, push_token = $3, push_environment = $4
     WHERE id = $1 AND revoked_at IS NULL";

pub(super) const REMEMBER_NONCE: &str =
    "INSERT INTO device_request_nonces (device_id, nonce, expires_at) VALUES ($1, $2, $3)
     ON CONFLICT DO NOTHING";

pub(super) const PURGE_EXPIRED_NONCES: &str = "DELETE FROM device_request_nonces WHERE expires_at < $1";

pub(super) const DEVICE_NOTICES: &str = "SELECT id, device_id, kind, details, created_at FROM device_notices
     WHERE device_id = $1 AND created_at >= $2 ORDER BY id";

pub(super) const SERVER_KEY: &str =
    "SELECT public_key, sealed_pkcs8, created_at FROM server_keys WHERE id = 1";

pub(super) const INSERT_SERVER_KEY: &str =
    "INSERT INTO server_keys (id, public_key, sealed_pkcs8, created_at) VALUES (1, $1, $2, $3)
     ON CONFLICT (id) DO NOTHING";

pub(super) const INSERT_ENROLLMENT: &str = "INSERT INTO enrollments (id, user_id, code_hash, code_sealed, is_second_device, created_by, created_at, expires_at)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8)";

#[async_trait]
pub trait DeviceStore: Send + Sync + std::fmt::Debug {
    async fn create_enrollment(
        &self,
        enrollment: EnrollmentRecord,
        audit: AuditEvent,
    ) -> Result<EnrollmentRecord, StoreError>;

    /// Creates an enrollment that consumes `approval`: the challenge moves `approved →
    /// redeemed` by compare-and-set in the same transaction (with `redeemed`, its audit event),
    /// so it proves one enrollment only and can no longer be redeemed for a sign-in. `NotFound`
    /// (and nothing written) if the approval does not qualify or was used meanwhile.
    async fn create_enrollment_consuming_approval(
        &self,
        enrollment: EnrollmentRecord,
        approval: ApprovalProof,
        redeemed: AuditEvent,
        audit: AuditEvent,
    ) -> Result<EnrollmentRecord, StoreError>;

    async fn enrollment_by_id(&self, id: EnrollmentId) -> Result<Option<EnrollmentRecord>, StoreError>;

    async fn enrollment_by_code_hash(&self, code_hash: &[u8])
    -> Result<Option<EnrollmentRecord>, StoreError>;

    /// Uses an enrollment and creates its device, in one transaction with `notice` written for
    /// the user's other active devices. `NotFound` if the enrollment was used or expired
    /// meanwhile (compare-and-set); `Conflict` for a bound key or push token, or a first-device
    /// enrollment when the user already has a device.
    async fn enroll_device(
        &self,
        enrollment: &EnrollmentRecord,
        device: DeviceRecord,
        notice: (&str, String),
        audit: AuditEvent,
    ) -> Result<DeviceRecord, StoreError>;

    async fn device_by_id(&self, id: DeviceId) -> Result<Option<DeviceRecord>, StoreError>;

    async fn devices_for_user(&self, user: UserId) -> Result<Vec<DeviceRecord>, StoreError>;

    /// The user whose device holds this public key (active or revoked).
    async fn public_key_owner(&self, public_key: &[u8]) -> Result<Option<UserId>, StoreError>;

    /// The user whose active device holds this push token.
    async fn push_token_owner(&self, provider: &str, token: &str) -> Result<Option<UserId>, StoreError>;

    /// Revokes an active device; `NotFound` if there is none with that id.
    async fn revoke_device(
        &self,
        id: DeviceId,
        at: OffsetDateTime,
        audit: AuditEvent,
    ) -> Result<DeviceRecord, StoreError>;

    /// Replaces an active device's push registration.
    async fn update_push(&self, id: DeviceId, push: StoredPush, audit: AuditEvent) -> Result<(), StoreError>;

    /// Remembers a signed request's nonce until `expires_at`; `false` if it was already seen.
    async fn remember_request_nonce(
        &self,
        device: DeviceId,
        nonce: &[u8],
        expires_at: OffsetDateTime,
        now: OffsetDateTime,
    ) -> Result<bool, StoreError>;

    /// Deletes request nonces whose replay window has closed (timestamps alone refuse them).
    async fn purge_expired_nonces(&self, now: OffsetDateTime) -> Result<u64, StoreError>;

    /// Notices for a device created at or after `since`, oldest first.
    async fn device_notices(
        &self,
        device: DeviceId,
        since: OffsetDateTime,
    ) -> Result<Vec<NoticeRecord>, StoreError>;

    async fn server_key(&self) -> Result<Option<ServerKeyRecord>, StoreError>;

    /// Stores `key` unless a key exists already; returns the stored key (the first one wins, so
    /// instances starting together agree).
    async fn insert_server_key(&self, key: ServerKeyRecord) -> Result<ServerKeyRecord, StoreError>;
}
