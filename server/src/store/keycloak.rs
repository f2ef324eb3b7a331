//! Keycloak's CIBA HTTP authentication channel: the app each realm acts as, the realm users
//! pinned to Countersign users, and the delegation requests by `jti` (single use).

use async_trait::async_trait;
use time::OffsetDateTime;

use super::codec::{Columns, Sql};
use super::{AppRecord, CallbackJob, StoreError};
use crate::audit::AuditEvent;
use crate::ids::{AppId, ChallengeId, UserId};

/// What became of a delegation request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestOutcome {
    /// Its token is spent; nothing is decided yet.
    Admitted,
    /// A challenge was created for it.
    Prompted,
    /// Keycloak was answered 201 but nobody was prompted (unknown user, no device, push
    /// refused): the callback says `CANCELLED`.
    Cancelled,
}

impl RequestOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            RequestOutcome::Admitted => "admitted",
            RequestOutcome::Prompted => "prompted",
            RequestOutcome::Cancelled => "cancelled",
        }
    }

    fn parse(text: &str) -> Result<Self, StoreError> {
        match text {
            "admitted" => Ok(RequestOutcome::Admitted),
            "prompted" => Ok(RequestOutcome::Prompted),
            "cancelled" => Ok(RequestOutcome::Cancelled),
            other => Err(StoreError::Corrupt(format!("keycloak request outcome `{other}`"))),
        }
    }
}

/// A delegation request from a realm.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeycloakRequestRecord {
    pub realm_issuer: String,
    /// The token's `jti` (Keycloak's `auth_result_id`).
    pub jti: String,
    /// The token's `sub`: Keycloak's user id.
    pub subject: String,
    /// The token's `azp`: the Keycloak client asking.
    pub client_id: String,
    /// The Countersign user `login_hint` names, if any.
    pub user_id: Option<UserId>,
    pub challenge_id: Option<ChallengeId>,
    pub outcome: RequestOutcome,
    pub created_at: OffsetDateTime,
    /// The token's `exp`: until then the `jti` stays spent.
    pub expires_at: OffsetDateTime,
}

/// What admitting a request found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// The token is spent now, and its subject pinned to the user (if there is one).
    Admitted,
    /// The realm sent this `jti` before.
    Replayed,
    /// The realm's user is pinned to another Countersign user than `login_hint` names.
    PinnedToOther,
}

#[async_trait]
pub trait KeycloakStore: Send + Sync + std::fmt::Debug {
    /// The app a realm acts as, if it has one yet.
    async fn keycloak_realm_app(&self, realm_issuer: &str) -> Result<Option<AppId>, StoreError>;

    /// Gives the realm the app `app` (with its audit event) unless it has one already; returns
    /// the realm's app either way (two instances racing agree on one).
    async fn create_keycloak_realm_app(
        &self,
        realm_issuer: &str,
        app: AppRecord,
        audit: AuditEvent,
    ) -> Result<AppId, StoreError>;

    /// Spends the request's `jti` (recording the request as admitted) and pins its subject to
    /// its user on first use, in one transaction; changes nothing unless `Admitted`. A request
    /// naming no user is refused if the subject is pinned at all.
    async fn admit_keycloak_request(&self, request: &KeycloakRequestRecord) -> Result<Admission, StoreError>;

    /// Records what became of an admitted request (`Prompted` with its challenge, or
    /// `Cancelled`) with its audit event and the outcome callback it owes Keycloak (none when
    /// Keycloak was refused the request), in one transaction; `NotFound` unless it is still
    /// admitted.
    async fn finish_keycloak_request(
        &self,
        realm_issuer: &str,
        jti: &str,
        challenge: Option<ChallengeId>,
        callback: Option<&CallbackJob>,
        audit: AuditEvent,
    ) -> Result<(), StoreError>;

    async fn keycloak_request(
        &self,
        realm_issuer: &str,
        jti: &str,
    ) -> Result<Option<KeycloakRequestRecord>, StoreError>;

    /// The Countersign user a realm's user is pinned to.
    async fn keycloak_subject(&self, realm_issuer: &str, subject: &str)
    -> Result<Option<UserId>, StoreError>;

    /// Deletes requests whose token expired before `before`.
    async fn purge_keycloak_requests(&self, before: OffsetDateTime) -> Result<u64, StoreError>;
}

pub(super) const REQUEST_COLUMNS: &str =
    "realm_issuer, jti, subject, client_id, user_id, challenge_id, outcome, created_at, expires_at";

pub(super) fn request_from_row<R: Columns>(row: &R) -> Result<KeycloakRequestRecord, StoreError> {
    let outcome: String = row.value("outcome")?;
    Ok(KeycloakRequestRecord {
        realm_issuer: row.value("realm_issuer")?,
        jti: row.value("jti")?,
        subject: row.value("subject")?,
        client_id: row.value("client_id")?,
        user_id: row.optional_id("user_id")?.map(UserId),
        challenge_id: row.optional_id("challenge_id")?.map(ChallengeId),
        outcome: RequestOutcome::parse(&outcome)?,
        created_at: row.time("created_at")?,
        expires_at: row.time("expires_at")?,
    })
}

/// What a finished request's outcome is.
pub(super) fn finished_outcome(challenge: Option<ChallengeId>) -> RequestOutcome {
    if challenge.is_some() { RequestOutcome::Prompted } else { RequestOutcome::Cancelled }
}

// Portable statements: the same text on both engines.

pub(super) const REALM_APP: &str = "SELECT app_id FROM keycloak_realm_apps WHERE realm_issuer = $1";
pub(super) const INSERT_REALM_APP: &str =
    "INSERT INTO keycloak_realm_apps (realm_issuer, app_id) VALUES ($1, $2)
     ON CONFLICT (realm_issuer) DO NOTHING";

pub(super) static INSERT_REQUEST: Sql = Sql::new(|| {
    format!(
        "INSERT INTO keycloak_requests ({REQUEST_COLUMNS}) VALUES ($1, $2, $3, $4, $5, NULL, 'admitted', $6, $7)
         ON CONFLICT (realm_issuer, jti) DO NOTHING"
    )
});
pub(super) static REQUEST_BY_JTI: Sql = Sql::new(|| {
    format!("SELECT {REQUEST_COLUMNS} FROM keycloak_requests WHERE realm_issuer = $1 AND jti = $2")
});
pub(super) const FINISH_REQUEST: &str = "UPDATE keycloak_requests SET challenge_id = $3, outcome = $4
     WHERE realm_issuer = $1 AND jti = $2 AND outcome = 'admitted'";

pub(super) const SUBJECT_USER: &str =
    "SELECT user_id FROM keycloak_subjects WHERE realm_issuer = $1 AND subject = $2";
pub(super) const PIN_SUBJECT: &str =
    "INSERT INTO keycloak_subjects (realm_issuer, subject, user_id, pinned_at)
     VALUES ($1, $2, $3, $4) ON CONFLICT (realm_issuer, subject) DO NOTHING";

pub(super) const PURGE_REQUESTS: &str = "DELETE FROM keycloak_requests WHERE expires_at < $1";
