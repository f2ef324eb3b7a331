//! The storage boundary: only this module knows SQL.
//!
//! One repository trait per capability, each in its own module with its records, row mappers,
//! column lists and the statements whose text is the same on both engines:
//! [`UserStore`] (`users.rs`), [`AppStore`] (`apps.rs`), [`DeviceStore`] (`devices.rs`:
//! enrollments, devices, request nonces, notices, the server key), [`ChallengeStore`]
//! (`challenges.rs`), [`FatigueStore`] (`fatigue.rs`: push standing, refused prompts, signals),
//! [`AuditStore`] (`audit.rs`), [`AlertStore`] (`alerts.rs`), [`PushOutbox`] (`outbox.rs`),
//! [`CallbackStore`] (`callbacks.rs`: HTTP callbacks owed once a challenge is decided) and
//! [`PasskeyStore`] (`passkeys.rs`: user handles, passkeys, registration ceremonies, passkey
//! sign-ins), [`SigningKeyStore`] (`signing_keys.rs`: the OIDC provider's signing keys) and
//! [`ClientStore`] (`oidc_clients.rs`: OIDC clients, used client-assertion ids) and
//! [`OidcFlowStore`] (`oidc_flow.rs`: pushed requests, sign-ins in progress, codes, tokens) and
//! [`CibaStore`] (`oidc_ciba.rs`: CIBA backchannel requests) and
//! [`KeycloakStore`] (`keycloak.rs`: Keycloak realms' apps, pinned realm users, delegation
//! requests by `jti`), [`AdminStore`] (`admin.rs`: the admin plane's admins, sessions and
//! bootstrap tokens), [`AdminPasskeyStore`] (`admin_passkeys.rs`: admins' passkeys, ceremonies,
//! invitations), [`AdminRequestStore`] (`admin_requests.rs`: four-eyes requests and the
//! roster changes they make), [`HelpDeskStore`] (`helpdesk.rs`: caller verifications),
//! [`FatiguePolicyStore`] (`fatigue_policy.rs`: the run-time fatigue policy) and
//! [`DashboardStore`] (`dashboard.rs`: the admin dashboard's keyset-paged reads: alert feed,
//! prompt charts, push health, user search, audit search, prompt timeline).
//! [`Store`] only composes them (plus migrations, readiness, pool figures) for wiring; a service
//! takes the narrow trait it needs (`&dyn Store` coerces to it).
//!
//! Methods are shaped like operations, not tables: each state change runs in one transaction
//! together with the audit event that records it, so a change whose audit event cannot be written
//! does not happen. Two engines, chosen once at start-up: [`sqlite::SqliteStore`] (the embedded
//! default, single instance) and [`postgres::PgStore`] (production, many instances), each with one
//! file per capability (`sqlite/<capability>.rs`, `postgres/<capability>.rs`). `codec.rs` reads a
//! row alike on both (ids and times through each engine's codec); the engines differ only in
//! binds and in what really differs: PostgreSQL's single-statement hot paths
//! (`postgres/statements.rs`), `SKIP LOCKED`, `LISTEN/NOTIFY`, row locks and `now()`; SQLite's
//! `BEGIN IMMEDIATE` transactions.

mod admin;
mod admin_passkeys;
mod admin_requests;
mod alerts;
mod apps;
mod audit;
mod callbacks;
mod challenges;
mod codec;
mod dashboard;
mod devices;
mod fatigue;
mod fatigue_policy;
mod helpdesk;
mod keycloak;
mod oidc_ciba;
mod oidc_clients;
mod oidc_flow;
mod outbox;
mod passkeys;
mod pg_pool;
pub mod postgres;
mod signing_keys;
pub mod sqlite;
mod users;

use std::fmt;

use async_trait::async_trait;
use secrecy::{ExposeSecret, SecretString};
use time::OffsetDateTime;

use crate::audit::chain::AuditSealer;

pub use admin::{AdminRecord, AdminSessionRecord, AdminStore, BootstrapSpend};
pub use admin_passkeys::{
    AdminAssertionUpdate, AdminCeremonyRecord, AdminPasskeyRecord, AdminPasskeyRevoke, AdminPasskeyStore,
    CeremonyKind, InvitationRecord, InvitationRedeem,
};
pub use admin_requests::{
    AdminRequestRecord, AdminRequestStore, Approval, RequestCursor, RosterChange, Transition,
};
pub use alerts::{AlertCursor, AlertRecord, AlertStore};
pub use apps::{AppRecord, AppStore};
pub use audit::AuditStore;
pub use callbacks::{
    CallbackJob, CallbackKind, CallbackResult, CallbackStatus, CallbackStore, ClaimedCallback,
};
pub use challenges::{
    ChallengeEvent, ChallengeRecord, ChallengeStore, ChallengeTransition, DeviceDecision, PromptTarget,
};
pub use dashboard::{
    AuditFilter, DashboardStore, NumberMatch, PromptBucket, ProviderHealth, RefusalCount, TimelineCursor,
    TimelineRow, UserListing,
};
pub use devices::{
    ApprovalProof, DeviceRecord, DeviceStore, EnrollmentRecord, NoticeRecord, ServerKeyRecord, StoredPush,
};
pub use fatigue::{FatigueStore, PushStateChange, Standing, StandingUpdate};
pub use fatigue_policy::{FatiguePolicyStore, StoredPolicy};
pub use helpdesk::{CallerVerification, HelpDeskStore};
pub use keycloak::{Admission, KeycloakRequestRecord, KeycloakStore, RequestOutcome};
pub use oidc_ciba::{CibaRequestRecord, CibaStore};
pub use oidc_clients::ClientStore;
pub use oidc_flow::{
    AccessTokenRecord, AuthorizationRecord, AuthorizationSwitch, CodeRecord, OidcFlowStore, PushedRequest,
};
pub use outbox::{PushJob, PushJobResult, PushOutbox};
pub use passkeys::{
    EnrollmentLink, PasskeyAssertion, PasskeyRecord, PasskeySignIn, PasskeyStore, RegistrationCeremony,
    RegistrationProof, SignInPage,
};
pub use signing_keys::{Replacement, SigningKeyRecord, SigningKeyStore};
pub use users::{FactorReset, UserRecord, UserStore};

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
    /// The WebAuthn credential id is already bound to a passkey (of any user).
    PasskeyCredential,
    /// Another key of the algorithm took this generation first (a concurrent start or rotation).
    SigningKeyGeneration,
    AdminName,
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
    /// The user's push is held for admin review (quarantine, hard lock).
    HeldForReview,
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

#[async_trait]
pub trait Store:
    UserStore
    + AppStore
    + DeviceStore
    + ChallengeStore
    + FatigueStore
    + AuditStore
    + AlertStore
    + PushOutbox
    + CallbackStore
    + PasskeyStore
    + SigningKeyStore
    + ClientStore
    + OidcFlowStore
    + KeycloakStore
    + CibaStore
    + AdminStore
    + AdminPasskeyStore
    + DashboardStore
    + HelpDeskStore
    + FatiguePolicyStore
    + AdminRequestStore
    + Send
    + Sync
    + fmt::Debug
{
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

/// Maps a unique violation to the rule it protects, by constraint name (PostgreSQL) or by the
/// `table.column` SQLite names in its message.
fn map_unique_violation(error: sqlx::Error) -> StoreError {
    const RULES: &[(&str, &str, Conflict)] = &[
        ("apps_name_key", "apps.name", Conflict::AppName),
        ("users_username_key", "users.username", Conflict::Username),
        ("devices_public_key_key", "devices.public_key", Conflict::DeviceKey),
        ("devices_push_token_active_key", "devices.push_token", Conflict::PushToken),
        ("challenges_idempotency_key", "challenges.idempotency_key", Conflict::IdempotencyKey),
        ("passkeys_credential_id_key", "passkeys.credential_id", Conflict::PasskeyCredential),
        ("oidc_signing_keys_generation_key", "oidc_signing_keys.generation", Conflict::SigningKeyGeneration),
        ("admins_name_key", "admins.name", Conflict::AdminName),
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

    #[test]
    fn redacts_passwords_only() {
        assert_eq!(redact_url("postgres://cs:hunter2@db:5432/cs"), "postgres://cs:***@db:5432/cs");
        assert_eq!(redact_url("postgres://cs@db/cs"), "postgres://cs@db/cs");
        assert_eq!(redact_url("sqlite:data/countersign.db"), "sqlite:data/countersign.db");
    }
}
