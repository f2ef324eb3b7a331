//! CIBA backchannel authentication requests (OpenID CIBA Core 1.0), by the SHA-256 of their
//! `auth_req_id`. A request that could prompt its user has a sign-in (an `oidc_authorizations`
//! row whose challenge the phone answers, unreachable from any browser); one that could not
//! carries only why, and is answered like a denial. Redeemed once, by compare-and-set.

use async_trait::async_trait;
use time::OffsetDateTime;

use super::codec::{Columns, Sql};
use super::{AccessTokenRecord, AuthorizationRecord, CallbackJob, CodeRecord, StoreError};
use crate::audit::AuditEvent;
use crate::ids::AuthorizationId;
use crate::oidc::clients::ClientId;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CibaRequestRecord {
    pub request_hash: Vec<u8>,
    pub client_id: ClientId,
    /// The sign-in answering it; `None` if nobody could be prompted.
    pub authorization_id: Option<AuthorizationId>,
    /// Why nobody was prompted (for the audit trail and operators, never for the client).
    pub refusal: Option<String>,
    /// Seconds the client must leave between token requests.
    pub interval_secs: i32,
    /// The earliest time the next token request is not `slow_down`.
    pub next_poll_at: OffsetDateTime,
    pub created_at: OffsetDateTime,
    pub expires_at: OffsetDateTime,
    pub redeemed_at: Option<OffsetDateTime>,
}

#[async_trait]
pub trait CibaStore: Send + Sync + std::fmt::Debug {
    /// Stores a request with its sign-in (when a prompt was sent) and its ping (ping mode),
    /// with the audit event, in one transaction.
    async fn create_ciba_request(
        &self,
        request: &CibaRequestRecord,
        sign_in: Option<&AuthorizationRecord>,
        ping: Option<&CallbackJob>,
        audit: AuditEvent,
    ) -> Result<(), StoreError>;

    async fn ciba_request(&self, request_hash: &[u8]) -> Result<Option<CibaRequestRecord>, StoreError>;

    /// Records a token request: when the next may come, and the interval from now on.
    async fn ciba_polled(
        &self,
        request_hash: &[u8],
        next_poll_at: OffsetDateTime,
        interval_secs: i32,
    ) -> Result<(), StoreError>;

    /// Redeems `client`'s request once, before it expires: finishes its sign-in with `code`
    /// (stored already redeemed: it never leaves the server, userinfo reads its grant) and
    /// records `token`, with the audit event. `NotFound` if it is unknown, another client's,
    /// redeemed, expired or without a sign-in.
    async fn redeem_ciba_request(
        &self,
        request_hash: &[u8],
        client: &ClientId,
        now: OffsetDateTime,
        code: &CodeRecord,
        token: &AccessTokenRecord,
        audit: AuditEvent,
    ) -> Result<(), StoreError>;
}

pub(super) const CIBA_COLUMNS: &str = "request_hash, client_id, authorization_id, refusal, interval_secs, \
     next_poll_at, created_at, expires_at, redeemed_at";

pub(super) fn ciba_from_row<R: Columns>(row: &R) -> Result<CibaRequestRecord, StoreError> {
    Ok(CibaRequestRecord {
        request_hash: row.value("request_hash")?,
        client_id: ClientId(row.value("client_id")?),
        authorization_id: row.optional_id("authorization_id")?.map(AuthorizationId),
        refusal: row.value("refusal")?,
        interval_secs: row.value("interval_secs")?,
        next_poll_at: row.time("next_poll_at")?,
        created_at: row.time("created_at")?,
        expires_at: row.time("expires_at")?,
        redeemed_at: row.optional_time("redeemed_at")?,
    })
}

// Portable statements: the same text on both engines.

pub(super) static INSERT_CIBA: Sql = Sql::new(|| {
    format!("INSERT INTO oidc_ciba_requests ({CIBA_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, NULL)")
});
pub(super) static CIBA_BY_HASH: Sql =
    Sql::new(|| format!("SELECT {CIBA_COLUMNS} FROM oidc_ciba_requests WHERE request_hash = $1"));
pub(super) const CIBA_POLLED: &str =
    "UPDATE oidc_ciba_requests SET next_poll_at = $2, interval_secs = $3 WHERE request_hash = $1";
pub(super) const REDEEM_CIBA: &str = "UPDATE oidc_ciba_requests SET redeemed_at = $3
     WHERE request_hash = $1 AND client_id = $2 AND redeemed_at IS NULL AND expires_at > $3
       AND authorization_id IS NOT NULL
     RETURNING authorization_id";
/// The code a CIBA grant stores for userinfo: redeemed as it is made.
pub(super) const CODE_REDEEMED: &str = "UPDATE oidc_codes SET redeemed_at = $2 WHERE code_hash = $1";
