//! Enrollments, devices, signed-request nonces, device notices and the server's device-signing key.

use async_trait::async_trait;
use time::OffsetDateTime;

use super::StoreError;
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

#[async_trait]
pub trait DeviceStore: Send + Sync {
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
