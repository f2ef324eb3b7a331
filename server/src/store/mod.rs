//! The storage boundary. Services talk to `dyn Store`; only this module knows SQL.
//!
//! Methods are shaped like operations, not tables: each state change runs in one transaction
//! together with the audit event that records it, so a change whose audit event cannot be written
//! does not happen. Two implementations, chosen once at start-up: [`sqlite::SqliteStore`] (the
//! embedded default, single instance) and [`postgres::PgStore`] (production, many instances).

mod pg_pool;
pub mod postgres;
pub mod sqlite;

use std::fmt;

use async_trait::async_trait;
use secrecy::{ExposeSecret, SecretString};
use time::OffsetDateTime;

use crate::api_keys::Scopes;
use crate::audit::chain::{AuditSealer, StoredEvent, StoredHead};
use crate::audit::{AuditEvent, Subject};
use crate::challenges::model::ChallengeState;
use crate::fatigue::model::{Policy, PushState};
use crate::ids::{AppId, ChallengeId, DeviceId, EnrollmentId, UserId};

/// Which database engine a store runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    Sqlite,
    Postgres,
}

impl fmt::Display for Engine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Engine::Sqlite => "sqlite",
            Engine::Postgres => "postgres",
        })
    }
}

/// A uniqueness rule the database refused to break, named by what it protects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Conflict {
    AppName,
    Username,
    /// The public key is already bound to a device (of any user).
    DeviceKey,
    /// The push token is already bound to another active device.
    PushToken,
    /// The user already has an active device and the enrollment was not issued for a second one.
    SecondDevice,
    /// The app already used this idempotency key.
    IdempotencyKey,
}

pub use crate::fatigue::model::Refusal;

/// A compare-and-set found the row in another state than the operation requires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Precondition {
    /// The response counter is not above the device's last accepted one.
    CounterNotIncreasing,
    /// The device was revoked.
    DeviceInactive,
    /// The challenge is no longer pending (or has expired).
    ChallengeNotPending,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("conflict: {0:?} already exists")]
    Conflict(Conflict),
    #[error("record not found")]
    NotFound,
    #[error("precondition failed: {0:?}")]
    PreconditionFailed(Precondition),
    #[error("refused by the fatigue policy: {0:?}")]
    Refused(Refusal),
    #[error("database error")]
    Database(#[source] sqlx::Error),
    #[error("migration failed")]
    Migrate(#[source] sqlx::migrate::MigrateError),
    #[error("database schema is not up to date: {0}")]
    NotMigrated(String),
    #[error("stored data is invalid: {0}")]
    Corrupt(String),
    #[error("invalid database URL: {0}")]
    InvalidUrl(String),
    #[error("pending audit event {0} fails its seal: it was forged or altered in the database")]
    PendingAuditInvalid(i64),
    #[error("pending audit event {pending} repeats chained event {seq}: a captured event was inserted again")]
    PendingAuditReplayed { pending: i64, seq: i64 },
    /// Other changes for the same user kept winning; the caller may try again.
    #[error("too many concurrent changes for the same user")]
    Contended,
}

/// Connection pool figures for `/metrics`.
#[derive(Debug, Clone, Copy)]
pub struct PoolStats {
    pub size: u32,
    pub idle: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppRecord {
    pub id: AppId,
    pub name: String,
    pub key_id: String,
    pub key_hash: Vec<u8>,
    pub scopes: Scopes,
    pub created_at: OffsetDateTime,
    pub revoked_at: Option<OffsetDateTime>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRecord {
    pub id: UserId,
    pub username: String,
    pub display_name: Option<String>,
    pub is_privileged: bool,
    pub created_at: OffsetDateTime,
}

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

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChallengeRecord {
    pub id: ChallengeId,
    pub app_id: AppId,
    pub user_id: UserId,
    pub state: ChallengeState,
    pub number_tag: Vec<u8>,
    pub number_sealed: Vec<u8>,
    pub number_digits: i16,
    pub server_nonce: Vec<u8>,
    pub app_name: String,
    pub ip: String,
    pub user_agent: String,
    pub location: Option<String>,
    pub created_at: OffsetDateTime,
    pub expires_at: OffsetDateTime,
    pub decided_at: Option<OffsetDateTime>,
    pub decided_by_device: Option<DeviceId>,
    pub redeemed_at: Option<OffsetDateTime>,
    pub idempotency_key: Option<String>,
    pub request_hash: Option<Vec<u8>>,
    pub is_silent: bool,
    /// The client network the prompt came from (for spray detection).
    pub source_prefix: Option<String>,
}

/// Whom a new prompt is for: the user, their active devices, their recent number tags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PromptTarget {
    pub user: UserRecord,
    pub devices: Vec<DeviceRecord>,
    pub recent_tags: Vec<Vec<u8>>,
}

/// A device's verified answer, to apply by compare-and-set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeviceDecision {
    pub challenge: ChallengeId,
    /// The challenge's user, who owns `device` (checked before deciding).
    pub user: UserId,
    pub device: DeviceId,
    /// Must exceed the device's last accepted counter.
    pub counter: i64,
    pub to: ChallengeState,
}

/// App-initiated or timed transitions; each is one conditional UPDATE. Where an engine has a
/// clock of its own (PostgreSQL), that clock decides what is fresh or due, not the caller's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChallengeTransition {
    /// `approved → redeemed`, by the app that created it, while the approval is younger than
    /// `window`.
    Redeem { app_id: AppId, window: time::Duration },
    /// `pending → cancelled`, by the app that created it.
    Cancel { app_id: AppId },
    /// `pending → expired`, once `expires_at` has passed.
    Expire,
}

/// A claimed push delivery: where to send what, until when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushJob {
    pub id: i64,
    pub challenge_id: ChallengeId,
    pub device_id: DeviceId,
    pub attempts: i32,
    pub push: StoredPush,
    pub expires_at: OffsetDateTime,
}

/// How a push job ends, or when it is tried again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PushJobResult {
    Sent,
    Retry {
        at: OffsetDateTime,
        error: String,
    },
    /// Gave up: permanent failure, or the challenge is over.
    Failed {
        error: String,
    },
}

/// A security alert, as queued for the webhook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlertRecord {
    pub id: i64,
    pub kind: String,
    pub subject: String,
    pub details: String,
    pub created_at: OffsetDateTime,
}

/// The webhook delivery cursor, leased by one worker at a time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AlertCursor {
    pub last_delivered: i64,
    pub attempts: i32,
}

/// A change to a user's push standing decided under the user's lock: the new standing and the
/// audit event recording it (see [`Store::change_push_state`]).
pub type PushStateChange<'a> = &'a (dyn Fn(&PushState) -> (PushState, AuditEvent) + Send + Sync);

/// Callback building the audit event of each challenge a bulk operation changes.
pub type ChallengeEvent<'a> = &'a (dyn Fn(&ChallengeRecord) -> AuditEvent + Send + Sync);

#[async_trait]
pub trait Store: Send + Sync + fmt::Debug {
    fn engine(&self) -> Engine;

    /// Figures for the pool gauges.
    fn pool_stats(&self) -> PoolStats;

    /// Applies the embedded migrations (idempotent; serialised across instances).
    async fn migrate(&self) -> Result<(), StoreError>;

    /// The database answers and every embedded migration has been applied.
    async fn check_ready(&self) -> Result<(), StoreError>;

    /// The database's own clock, where it has one that can differ from this instance's
    /// (PostgreSQL, shared by many instances); `None` for SQLite.
    async fn database_now(&self) -> Result<Option<OffsetDateTime>, StoreError>;

    async fn create_app(&self, app: AppRecord, audit: AuditEvent) -> Result<AppRecord, StoreError>;

    /// Marks an active app revoked; `NotFound` if there is no such app or it is already revoked.
    async fn revoke_app(
        &self,
        id: AppId,
        at: OffsetDateTime,
        audit: AuditEvent,
    ) -> Result<AppRecord, StoreError>;

    async fn app_by_key_id(&self, key_id: &str) -> Result<Option<AppRecord>, StoreError>;

    async fn app_by_name(&self, name: &str) -> Result<Option<AppRecord>, StoreError>;

    async fn list_apps(&self) -> Result<Vec<AppRecord>, StoreError>;

    async fn create_user(&self, user: UserRecord, audit: AuditEvent) -> Result<UserRecord, StoreError>;

    /// An active (not deleted) user.
    async fn user_by_username(&self, username: &str) -> Result<Option<UserRecord>, StoreError>;

    /// Deletes a user: revokes every device, voids pending enrollments and frees the username
    /// (the id and the audit trail stay). Returns how many devices were revoked.
    async fn delete_user(&self, id: UserId, at: OffsetDateTime, audit: AuditEvent)
    -> Result<u64, StoreError>;

    async fn create_enrollment(
        &self,
        enrollment: EnrollmentRecord,
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

    /// The user named `username` with their active devices and the number tags of their
    /// `recent` latest challenges (one round trip where the engine allows).
    async fn prompt_target(&self, username: &str, recent: u32) -> Result<Option<PromptTarget>, StoreError> {
        let Some(user) = self.user_by_username(username).await? else {
            return Ok(None);
        };
        let devices =
            self.devices_for_user(user.id).await?.into_iter().filter(DeviceRecord::is_active).collect();
        let recent_tags = self.recent_number_tags(user.id, recent).await?;
        Ok(Some(PromptTarget { user, devices, recent_tags }))
    }

    /// A device and a challenge, each if it exists (one round trip where the engine allows).
    async fn device_and_challenge(
        &self,
        device: DeviceId,
        challenge: ChallengeId,
    ) -> Result<(Option<DeviceRecord>, Option<ChallengeRecord>), StoreError> {
        Ok((self.device_by_id(device).await?, self.challenge_by_id(challenge).await?))
    }

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

    /// Appends an audit event that records no state change (a refused attempt).
    async fn record_audit(&self, audit: AuditEvent) -> Result<(), StoreError>;

    /// Creates a challenge and its push jobs; the user's other pending challenges are
    /// cancelled in the same transaction (one audit event each, from `superseded`).
    async fn create_challenge(
        &self,
        challenge: ChallengeRecord,
        push_devices: &[DeviceId],
        audit: AuditEvent,
        superseded: ChallengeEvent<'_>,
        policy: &Policy,
    ) -> Result<ChallengeRecord, StoreError>;

    async fn challenge_by_id(&self, id: ChallengeId) -> Result<Option<ChallengeRecord>, StoreError>;

    async fn challenge_by_idempotency_key(
        &self,
        app: AppId,
        key: &str,
    ) -> Result<Option<ChallengeRecord>, StoreError>;

    /// The user's pending, unexpired challenges, oldest first.
    async fn pending_challenges(
        &self,
        user: UserId,
        now: OffsetDateTime,
    ) -> Result<Vec<ChallengeRecord>, StoreError>;

    /// Number tags of the user's most recent challenges.
    async fn recent_number_tags(&self, user: UserId, limit: u32) -> Result<Vec<Vec<u8>>, StoreError>;

    /// A device's answer: advances the device counter and moves `pending → to`, both by
    /// compare-and-set in one transaction with the audit event.
    async fn decide_challenge(
        &self,
        decision: DeviceDecision,
        now: OffsetDateTime,
        audit: AuditEvent,
        policy: &Policy,
    ) -> Result<ChallengeRecord, StoreError>;

    /// Applies an app or timer transition; `NotFound` if the challenge is not in the required
    /// state (or not the app's).
    async fn transition_challenge(
        &self,
        id: ChallengeId,
        transition: ChallengeTransition,
        now: OffsetDateTime,
        audit: AuditEvent,
        policy: &Policy,
    ) -> Result<ChallengeRecord, StoreError>;

    /// Expires up to `limit` pending challenges past their expiry (skipping rows another
    /// instance is handling).
    async fn expire_due_challenges(
        &self,
        now: OffsetDateTime,
        limit: u32,
        event: ChallengeEvent<'_>,
        policy: &Policy,
    ) -> Result<Vec<ChallengeRecord>, StoreError>;

    /// The user's push standing (default when nothing happened yet).
    async fn push_state(&self, user: UserId) -> Result<PushState, StoreError>;

    /// Changes the user's push standing under the user's lock: `change` is given the standing
    /// as it is at that moment and returns the new one with the audit event that records it,
    /// both written in the same transaction (so a wrong number racing an unfreeze is never
    /// overwritten by a stale read). Returns the standing before and after.
    async fn change_push_state(
        &self,
        user: UserId,
        now: OffsetDateTime,
        change: PushStateChange<'_>,
    ) -> Result<(PushState, PushState), StoreError>;

    /// Users whose standing is not clean (failures, freezes, locks), worst first.
    async fn troubled_users(&self, limit: u32) -> Result<Vec<(UserRecord, PushState)>, StoreError>;

    /// A prompt for `user` was refused (budget or spray): counts it on the user's standing (the
    /// attack incident), writes `audit`, and raises a `push_bombing` alert when it opens a new
    /// incident — all in one transaction. Returns whether an alert was raised.
    async fn record_refused_prompt(
        &self,
        user: UserId,
        reason: &str,
        now: OffsetDateTime,
        audit: AuditEvent,
        policy: &Policy,
    ) -> Result<bool, StoreError>;

    /// Writes a security signal that changes no state: its audit event and its alert, in one
    /// transaction (e.g. a cloned device key).
    async fn record_signal(
        &self,
        audit: AuditEvent,
        alert: (&str, &Subject, &str),
        now: OffsetDateTime,
    ) -> Result<(), StoreError>;

    /// Queues an alert that no state change carries (e.g. a throttled spraying source).
    async fn raise_alert(
        &self,
        kind: &str,
        subject: &Subject,
        details: &str,
        now: OffsetDateTime,
    ) -> Result<(), StoreError>;

    /// Leases the webhook cursor if it is free and due; `None` if another worker holds it or a
    /// retry is not due yet.
    async fn lease_alert_cursor(
        &self,
        now: OffsetDateTime,
        lease: time::Duration,
    ) -> Result<Option<AlertCursor>, StoreError>;

    async fn next_alert(&self, after: i64) -> Result<Option<AlertRecord>, StoreError>;

    /// Releases the lease: `delivered` moves the cursor on; otherwise a retry at `retry_at`.
    async fn release_alert_cursor(
        &self,
        delivered: Option<i64>,
        retry_at: Option<OffsetDateTime>,
        error: Option<String>,
    ) -> Result<(), StoreError>;

    /// The user's most recent challenges, newest first.
    async fn recent_challenges(&self, user: UserId, limit: u32) -> Result<Vec<ChallengeRecord>, StoreError>;

    /// Calls `on_change` with the id of every challenge that changes state on any instance
    /// sharing the database, until the process ends. A hint only: callers re-read the row.
    /// Single-instance engines return at once (in-process notification is enough).
    async fn watch_challenges(
        &self,
        on_change: std::sync::Arc<dyn Fn(ChallengeId) + Send + Sync>,
    ) -> Result<(), StoreError>;

    /// Leases due push jobs for `lease` (another worker takes them over if this one dies).
    async fn claim_push_jobs(
        &self,
        now: OffsetDateTime,
        lease: time::Duration,
        limit: u32,
    ) -> Result<Vec<PushJob>, StoreError>;

    async fn finish_push_job(
        &self,
        id: i64,
        result: PushJobResult,
        now: OffsetDateTime,
    ) -> Result<(), StoreError>;

    /// The provider says this token is dead: the device falls back to pulling.
    async fn disable_push_token(&self, device: DeviceId, audit: AuditEvent) -> Result<(), StoreError>;

    async fn server_key(&self) -> Result<Option<ServerKeyRecord>, StoreError>;

    /// Stores `key` unless a key exists already; returns the stored key (the first one wins, so
    /// instances starting together agree).
    async fn insert_server_key(&self, key: ServerKeyRecord) -> Result<ServerKeyRecord, StoreError>;

    /// Signalled after every commit that may have left audit events waiting to be chained.
    fn audit_pending_signal(&self) -> std::sync::Arc<tokio::sync::Notify>;

    /// Moves up to `limit` pending audit events, oldest first, onto the chain under the head
    /// lock; returns how many. `PendingAuditInvalid` if one fails its seal (nothing is chained).
    async fn chain_pending_audit(&self, limit: u32) -> Result<u64, StoreError>;

    /// How many audit events wait to be chained.
    async fn audit_pending_count(&self) -> Result<i64, StoreError>;

    /// The sealed head of the audit chain.
    async fn audit_head(&self) -> Result<StoredHead, StoreError>;

    /// Audit events with `after < seq <= up_to`, in sequence order, at most `limit`.
    async fn audit_events(&self, after: i64, up_to: i64, limit: u32) -> Result<Vec<StoredEvent>, StoreError>;

    /// The newest audit events about `subject` with `action`, newest first.
    async fn audit_events_about(
        &self,
        subject: &Subject,
        action: crate::audit::Action,
        limit: u32,
    ) -> Result<Vec<StoredEvent>, StoreError>;

    /// The highest stored sequence number (0 when empty).
    async fn audit_max_seq(&self) -> Result<i64, StoreError>;

    /// The first chained event (up to `up_to`) whose id an earlier event already has, as
    /// (its seq, the earlier seq).
    async fn audit_duplicate_event(&self, up_to: i64) -> Result<Option<(i64, i64)>, StoreError>;
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
}

/// Opens the store a database URL names: `sqlite:` or `postgres(ql)://`.
pub async fn connect(
    url: &SecretString,
    max_connections: u32,
    sealer: AuditSealer,
) -> Result<Box<dyn Store>, StoreError> {
    let raw = url.expose_secret();
    if raw.starts_with("sqlite:") {
        Ok(Box::new(sqlite::SqliteStore::connect(raw, max_connections, sealer).await?))
    } else if raw.starts_with("postgres://") || raw.starts_with("postgresql://") {
        Ok(Box::new(postgres::PgStore::connect(raw, max_connections, sealer).await?))
    } else {
        Err(StoreError::InvalidUrl("expected sqlite:PATH or postgres://USER@HOST/DB".to_owned()))
    }
}

/// The URL with any password replaced, safe to log.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let userinfo = &url[scheme_end + 3..at];
            let user = userinfo.split(':').next().unwrap_or("");
            let masked = if userinfo.contains(':') { format!("{user}:***") } else { user.to_owned() };
            format!("{}{}{}", &url[..scheme_end + 3], masked, &url[at..])
        }
        _ => url.to_owned(),
    }
}

/// Checks that every embedded migration is recorded as applied.
fn check_migrations_applied(migrator: &sqlx::migrate::Migrator, applied: &[i64]) -> Result<(), StoreError> {
    let missing: Vec<String> = migrator
        .iter()
        .filter(|m| m.migration_type.is_up_migration() || !m.migration_type.is_down_migration())
        .filter(|m| !applied.contains(&m.version))
        .map(|m| m.version.to_string())
        .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(StoreError::NotMigrated(format!("pending migrations: {}", missing.join(", "))))
    }
}

/// Migrations after which the server seals the genesis head of a still-empty trail: the one that
/// creates the trail, and the one that began sealing genesis (for trails created before it).
/// Any later start finds them applied, so a trail emptied and reset to an unsealed genesis head
/// is never sealed again: it stays a break.
const GENESIS_SEALING_MIGRATIONS: [i64; 2] = [1, 8];

/// Whether this migration run (which found `applied_before`) must seal the genesis head.
fn seals_genesis(applied_before: &[i64]) -> bool {
    GENESIS_SEALING_MIGRATIONS.iter().any(|version| !applied_before.contains(version))
}

/// The seal of the genesis head.
fn genesis_mac(sealer: &AuditSealer) -> Vec<u8> {
    sealer.seal(0, &crate::audit::chain::GENESIS_HASH)
}

/// The first chained event (seq <= $1) repeating an earlier event's id, with that earlier seq.
/// Portable: the same text on both engines.
const DUPLICATE_EVENT_SQL: &str = "SELECT e.seq AS seq, MIN(f.seq) AS first_seq FROM audit_events e
     JOIN audit_events f ON f.event_id = e.event_id AND f.seq < e.seq
     WHERE e.seq <= $1 AND e.event_id IS NOT NULL
     GROUP BY e.seq ORDER BY e.seq LIMIT 1";

/// `state IN (…)` for a transition to `to`: the states the model's transition table
/// (`ChallengeState::can_become`) lets reach it. Every conditional UPDATE of a challenge guards
/// with this, so the table is what production enforces; no source state means no match.
fn may_become(to: ChallengeState) -> String {
    let from: Vec<String> = ChallengeState::ALL
        .iter()
        .filter(|state| state.can_become(to))
        .map(|state| format!("'{}'", state.as_str()))
        .collect();
    if from.is_empty() { "FALSE".to_owned() } else { format!("state IN ({})", from.join(", ")) }
}

fn hash32(bytes: &[u8], what: &str) -> Result<[u8; 32], StoreError> {
    bytes.try_into().map_err(|_| StoreError::Corrupt(format!("{what} is {} bytes, expected 32", bytes.len())))
}

/// Maps a unique violation to the rule it protects, by constraint name (PostgreSQL) or by the
/// `table.column` SQLite names in its message.
fn map_unique_violation(error: sqlx::Error) -> StoreError {
    const RULES: &[(&str, &str, Conflict)] = &[
        ("apps_name_key", "apps.name", Conflict::AppName),
        ("users_username_key", "users.username", Conflict::Username),
        ("devices_public_key_key", "devices.public_key", Conflict::DeviceKey),
        ("devices_push_token_active_key", "devices.push_token", Conflict::PushToken),
        ("challenges_idempotency_key", "challenges.idempotency_key", Conflict::IdempotencyKey),
    ];
    if let sqlx::Error::Database(db) = &error
        && db.is_unique_violation()
    {
        let message = db.message();
        if let Some((_, _, conflict)) = RULES
            .iter()
            .find(|(constraint, column, _)| db.constraint() == Some(constraint) || message.ends_with(column))
        {
            return StoreError::Conflict(*conflict);
        }
    }
    StoreError::Database(error)
}

impl From<sqlx::Error> for StoreError {
    fn from(error: sqlx::Error) -> Self {
        pg_pool::note_error(&error);
        StoreError::Database(error)
    }
}

/// An audit event as the changing transaction writes it: sealed, not chained yet.
struct PendingRow {
    event_id: [u8; 16],
    row: crate::audit::EventRow,
    mac: Vec<u8>,
}

fn pending_row(sealer: &AuditSealer, event: &AuditEvent) -> PendingRow {
    let event_id = *uuid::Uuid::new_v4().as_bytes();
    let row = event.to_row();
    let mac = sealer.seal_pending(&event_id, &row.content(0));
    PendingRow { event_id, row, mac }
}

/// A pending audit event read back by the chainer.
struct PendingEvent {
    id: i64,
    event_id: Vec<u8>,
    row: crate::audit::EventRow,
    mac: Vec<u8>,
}

/// Pending events linked onto the chain head: the rows to append and the new sealed head.
struct LinkedBatch {
    events: Vec<StoredEvent>,
    head: StoredHead,
}

/// Links pending events, oldest first, onto the head the chaining transaction holds locked.
/// Every pending seal is checked first: a forged or altered event stops the chain (fail closed)
/// instead of being sealed into it, and so does a copy of an event already chained (`chained`:
/// the pending ids found on the chain, with their seq) or of one earlier in the batch. Shared by
/// both engines so the chain is computed one way only.
fn link_pending(
    sealer: &AuditSealer,
    head_seq: i64,
    head_hash: &[u8],
    pending: &[PendingEvent],
    chained: &[(Vec<u8>, i64)],
) -> Result<LinkedBatch, StoreError> {
    let mut prev_hash = hash32(head_hash, "audit head hash")?;
    let mut seq = head_seq;
    let mut events = Vec::with_capacity(pending.len());
    let mut seen: std::collections::HashMap<&[u8], i64> =
        chained.iter().map(|(id, seq)| (id.as_slice(), *seq)).collect();
    for p in pending {
        let valid = <[u8; 16]>::try_from(p.event_id.as_slice())
            .is_ok_and(|id| sealer.is_pending_valid(&id, &p.row.content(0), &p.mac));
        if !valid {
            return Err(StoreError::PendingAuditInvalid(p.id));
        }
        seq += 1;
        if let Some(first) = seen.insert(&p.event_id, seq) {
            return Err(StoreError::PendingAuditReplayed { pending: p.id, seq: first });
        }
        let content = crate::audit::chain::EventContent { event_id: Some(&p.event_id), ..p.row.content(seq) };
        let hash = crate::audit::chain::event_hash(&content, &prev_hash);
        events.push(StoredEvent {
            seq,
            event_id: Some(p.event_id.clone()),
            occurred_at_micros: p.row.occurred_at_micros,
            actor: p.row.actor.clone(),
            action: p.row.action.clone(),
            subject: p.row.subject.clone(),
            details: p.row.details.clone(),
            prev_hash: prev_hash.to_vec(),
            hash: hash.to_vec(),
        });
        prev_hash = hash;
    }
    let head = StoredHead { seq, hash: prev_hash.to_vec(), mac: sealer.seal(seq, &prev_hash) };
    Ok(LinkedBatch { events, head })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The genesis head is sealed only by the migration run that creates the trail (0001) or
    /// adds sealed genesis to an older one (0008): a later start never seals an emptied trail.
    #[test]
    fn only_the_creating_or_upgrading_run_seals_genesis() {
        assert!(seals_genesis(&[]), "a new database");
        assert!(seals_genesis(&[1, 2, 3, 4, 5, 6, 7]), "a trail created before sealed genesis");
        assert!(!seals_genesis(&[1, 2, 3, 4, 5, 6, 7, 8]), "any later start");
        assert!(!seals_genesis(&[1, 2, 3, 4, 5, 6, 7, 8, 9]), "any later start");
    }

    /// The SQL guards are the model's transition table read backwards.
    #[test]
    fn transition_guards_come_from_the_model() {
        assert_eq!(may_become(ChallengeState::Redeemed), "state IN ('approved')");
        assert_eq!(may_become(ChallengeState::Expired), "state IN ('pending')");
        assert_eq!(may_become(ChallengeState::Pending), "FALSE");
        for to in ChallengeState::ALL {
            for from in ChallengeState::ALL {
                let guard = may_become(to);
                assert_eq!(
                    guard.contains(&format!("'{}'", from.as_str())),
                    from.can_become(to),
                    "{from} -> {to}"
                );
            }
        }
    }

    #[test]
    fn redacts_passwords_only() {
        assert_eq!(redact_url("postgres://cs:hunter2@db:5432/cs"), "postgres://cs:***@db:5432/cs");
        assert_eq!(redact_url("postgres://cs@db/cs"), "postgres://cs@db/cs");
        assert_eq!(redact_url("sqlite:data/countersign.db"), "sqlite:data/countersign.db");
    }
}
