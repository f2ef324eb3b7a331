//! The OpenID Connect authorization code flow: the app each client acts as, pushed requests,
//! sign-ins in progress, codes, and the access tokens issued for them. Every step is used once,
//! by compare-and-set; secrets are kept only as SHA-256.

use async_trait::async_trait;
use time::OffsetDateTime;

use super::codec::{Columns, Sql};
use super::{AppRecord, Conflict, StoreError};
use crate::audit::AuditEvent;
use crate::ids::{AppId, AuthorizationId, ChallengeId, UserId};
use crate::oidc::clients::ClientId;

/// A pushed authorization request (RFC 9126).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushedRequest {
    /// SHA-256 of the random part of its `request_uri`.
    pub request_hash: Vec<u8>,
    pub client_id: ClientId,
    /// The pushed parameters, a JSON object of strings.
    pub params: String,
    pub created_at: OffsetDateTime,
    pub expires_at: OffsetDateTime,
}

/// A sign-in in progress: a validated request, its user and the challenge answering it, bound
/// to the browser that opened it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthorizationRecord {
    pub id: AuthorizationId,
    pub client_id: ClientId,
    pub user_id: UserId,
    /// The validated request (JSON).
    pub request: String,
    pub challenge_id: ChallengeId,
    /// What the page shows or uses again on reload, sealed under the master key: a push's
    /// number, or a passkey sign-in's page token.
    pub page_secret_sealed: Vec<u8>,
    /// SHA-256 of the secret in the browser's cookie.
    pub browser_hash: Vec<u8>,
    pub created_at: OffsetDateTime,
    pub expires_at: OffsetDateTime,
    pub finished_at: Option<OffsetDateTime>,
}

/// A sign-in moved to another challenge (the user chose a passkey instead of the push): what
/// the row says from then on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthorizationSwitch {
    pub challenge_id: ChallengeId,
    /// The validated request, now naming the new proof (JSON).
    pub request: String,
    pub page_secret_sealed: Vec<u8>,
    pub expires_at: OffsetDateTime,
}

/// An authorization code, known only by its hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodeRecord {
    pub code_hash: Vec<u8>,
    pub authorization_id: AuthorizationId,
    pub client_id: ClientId,
    pub user_id: UserId,
    /// What the code grants (JSON): redirect URI, PKCE challenge, nonce, scope, acr, amr,
    /// auth_time.
    pub grant_details: String,
    pub created_at: OffsetDateTime,
    pub expires_at: OffsetDateTime,
    pub redeemed_at: Option<OffsetDateTime>,
}

/// An access token issued for a code, by its `jti`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessTokenRecord {
    pub jti: String,
    pub code_hash: Vec<u8>,
    pub client_id: ClientId,
    pub user_id: UserId,
    pub expires_at: OffsetDateTime,
    pub revoked_at: Option<OffsetDateTime>,
}

#[async_trait]
pub trait OidcFlowStore: Send + Sync + std::fmt::Debug {
    /// The app a client acts as, if it has one yet.
    async fn oidc_client_app(&self, client: &ClientId) -> Result<Option<AppId>, StoreError>;

    /// Gives `client` the app `app` (with its audit event) unless it has one already; returns
    /// the client's app either way (two instances racing agree on one).
    async fn create_oidc_client_app(
        &self,
        client: &ClientId,
        app: AppRecord,
        audit: AuditEvent,
    ) -> Result<AppId, StoreError>;

    async fn push_authorization_request(
        &self,
        request: &PushedRequest,
        audit: AuditEvent,
    ) -> Result<(), StoreError>;

    /// Uses a pushed request of `client` once, before it expires; `None` if it is unknown,
    /// another client's, used or expired.
    async fn take_pushed_request(
        &self,
        request_hash: &[u8],
        client: &ClientId,
        now: OffsetDateTime,
    ) -> Result<Option<PushedRequest>, StoreError>;

    async fn create_authorization(
        &self,
        record: &AuthorizationRecord,
        audit: AuditEvent,
    ) -> Result<(), StoreError>;

    async fn authorization(&self, id: AuthorizationId) -> Result<Option<AuthorizationRecord>, StoreError>;

    /// Finishes an unfinished sign-in once, storing the code it yields (none when it failed);
    /// `NotFound` if it was finished already.
    async fn finish_authorization(
        &self,
        id: AuthorizationId,
        now: OffsetDateTime,
        code: Option<&CodeRecord>,
        audit: AuditEvent,
    ) -> Result<(), StoreError>;

    /// Moves an unfinished sign-in still answered by challenge `from` to `to`, with its audit
    /// event, by compare-and-set; `NotFound` if it finished or moved on already.
    async fn switch_authorization(
        &self,
        id: AuthorizationId,
        from: ChallengeId,
        to: &AuthorizationSwitch,
        audit: AuditEvent,
    ) -> Result<(), StoreError>;

    async fn oidc_code(&self, code_hash: &[u8]) -> Result<Option<CodeRecord>, StoreError>;

    /// Redeems `client`'s code once, before it expires, recording the access token issued for
    /// it in the same transaction (so a replay that comes later can revoke it); `NotFound` if
    /// the code is unknown, another client's, redeemed or expired.
    async fn redeem_oidc_code(
        &self,
        code_hash: &[u8],
        client: &ClientId,
        now: OffsetDateTime,
        token: &AccessTokenRecord,
        audit: AuditEvent,
    ) -> Result<CodeRecord, StoreError>;

    /// Revokes every access token issued for a code (presented again: it leaked); returns how
    /// many were still live. The audit event is written either way.
    async fn revoke_code_tokens(
        &self,
        code_hash: &[u8],
        now: OffsetDateTime,
        audit: AuditEvent,
    ) -> Result<u64, StoreError>;

    async fn access_token(&self, jti: &str) -> Result<Option<AccessTokenRecord>, StoreError>;

    /// Spends an upstream issuer's hint (by hash) until `expires_at`: true the first time,
    /// false if it was used before.
    async fn use_upstream_hint(
        &self,
        hint_hash: &[u8],
        expires_at: OffsetDateTime,
    ) -> Result<bool, StoreError>;

    /// Deletes pushed requests, codes, tokens and sign-ins that ended before `before`.
    async fn purge_oidc_flow(&self, before: OffsetDateTime) -> Result<u64, StoreError>;
}

/// What `create_oidc_client_app` answers when the app could not be added: the app another
/// instance made for the client first (under the same name, so it took the name), else the
/// error as it was (the name is some other app's).
pub(super) async fn lost_race(
    error: StoreError,
    client: &ClientId,
    store: &dyn OidcFlowStore,
) -> Result<AppId, StoreError> {
    match error {
        StoreError::Conflict(Conflict::AppName) => store.oidc_client_app(client).await?.ok_or(error),
        error => Err(error),
    }
}

pub(super) const PUSHED_COLUMNS: &str = "request_hash, client_id, params, created_at, expires_at";

pub(super) fn pushed_from_row<R: Columns>(row: &R) -> Result<PushedRequest, StoreError> {
    Ok(PushedRequest {
        request_hash: row.value("request_hash")?,
        client_id: ClientId(row.value("client_id")?),
        params: row.value("params")?,
        created_at: row.time("created_at")?,
        expires_at: row.time("expires_at")?,
    })
}

pub(super) const AUTHORIZATION_COLUMNS: &str = "id, client_id, user_id, request, challenge_id, page_secret_sealed, browser_hash, created_at, expires_at, finished_at";

pub(super) fn authorization_from_row<R: Columns>(row: &R) -> Result<AuthorizationRecord, StoreError> {
    Ok(AuthorizationRecord {
        id: AuthorizationId(row.id("id")?),
        client_id: ClientId(row.value("client_id")?),
        user_id: UserId(row.id("user_id")?),
        request: row.value("request")?,
        challenge_id: ChallengeId(row.id("challenge_id")?),
        page_secret_sealed: row.value("page_secret_sealed")?,
        browser_hash: row.value("browser_hash")?,
        created_at: row.time("created_at")?,
        expires_at: row.time("expires_at")?,
        finished_at: row.optional_time("finished_at")?,
    })
}

pub(super) const CODE_COLUMNS: &str =
    "code_hash, authorization_id, client_id, user_id, grant_details, created_at, expires_at, redeemed_at";

pub(super) fn code_from_row<R: Columns>(row: &R) -> Result<CodeRecord, StoreError> {
    Ok(CodeRecord {
        code_hash: row.value("code_hash")?,
        authorization_id: AuthorizationId(row.id("authorization_id")?),
        client_id: ClientId(row.value("client_id")?),
        user_id: UserId(row.id("user_id")?),
        grant_details: row.value("grant_details")?,
        created_at: row.time("created_at")?,
        expires_at: row.time("expires_at")?,
        redeemed_at: row.optional_time("redeemed_at")?,
    })
}

pub(super) const TOKEN_COLUMNS: &str = "jti, code_hash, client_id, user_id, expires_at, revoked_at";

pub(super) fn token_from_row<R: Columns>(row: &R) -> Result<AccessTokenRecord, StoreError> {
    Ok(AccessTokenRecord {
        jti: row.value("jti")?,
        code_hash: row.value("code_hash")?,
        client_id: ClientId(row.value("client_id")?),
        user_id: UserId(row.id("user_id")?),
        expires_at: row.time("expires_at")?,
        revoked_at: row.optional_time("revoked_at")?,
    })
}

// Portable statements: the same text on both engines.

pub(super) const CLIENT_APP: &str = "SELECT app_id FROM oidc_client_apps WHERE client_id = $1";
pub(super) const INSERT_CLIENT_APP: &str =
    "INSERT INTO oidc_client_apps (client_id, app_id) VALUES ($1, $2) ON CONFLICT (client_id) DO NOTHING";

pub(super) static INSERT_PUSHED: Sql =
    Sql::new(|| format!("INSERT INTO oidc_pushed_requests ({PUSHED_COLUMNS}) VALUES ($1, $2, $3, $4, $5)"));
pub(super) static TAKE_PUSHED: Sql = Sql::new(|| {
    format!(
        "UPDATE oidc_pushed_requests SET used_at = $3
         WHERE request_hash = $1 AND client_id = $2 AND used_at IS NULL AND expires_at > $3
         RETURNING {PUSHED_COLUMNS}"
    )
});

pub(super) static INSERT_AUTHORIZATION: Sql = Sql::new(|| {
    format!(
        "INSERT INTO oidc_authorizations ({AUTHORIZATION_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, NULL)"
    )
});
pub(super) static AUTHORIZATION_BY_ID: Sql =
    Sql::new(|| format!("SELECT {AUTHORIZATION_COLUMNS} FROM oidc_authorizations WHERE id = $1"));
pub(super) const FINISH_AUTHORIZATION: &str =
    "UPDATE oidc_authorizations SET finished_at = $2 WHERE id = $1 AND finished_at IS NULL";

pub(super) const SWITCH_AUTHORIZATION: &str = "UPDATE oidc_authorizations
     SET challenge_id = $3, request = $4, page_secret_sealed = $5, expires_at = $6
     WHERE id = $1 AND challenge_id = $2 AND finished_at IS NULL";

pub(super) static INSERT_CODE: Sql =
    Sql::new(|| format!("INSERT INTO oidc_codes ({CODE_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, NULL)"));
pub(super) static CODE_BY_HASH: Sql =
    Sql::new(|| format!("SELECT {CODE_COLUMNS} FROM oidc_codes WHERE code_hash = $1"));
pub(super) static REDEEM_CODE: Sql = Sql::new(|| {
    format!(
        "UPDATE oidc_codes SET redeemed_at = $3
         WHERE code_hash = $1 AND client_id = $2 AND redeemed_at IS NULL AND expires_at > $3
         RETURNING {CODE_COLUMNS}"
    )
});

pub(super) static INSERT_TOKEN: Sql = Sql::new(|| {
    format!("INSERT INTO oidc_access_tokens ({TOKEN_COLUMNS}) VALUES ($1, $2, $3, $4, $5, NULL)")
});
pub(super) static TOKEN_BY_JTI: Sql =
    Sql::new(|| format!("SELECT {TOKEN_COLUMNS} FROM oidc_access_tokens WHERE jti = $1"));
pub(super) const REVOKE_CODE_TOKENS: &str =
    "UPDATE oidc_access_tokens SET revoked_at = $2 WHERE code_hash = $1 AND revoked_at IS NULL";

pub(super) const USE_HINT: &str =
    "INSERT INTO oidc_used_hints (hint_hash, expires_at) VALUES ($1, $2) ON CONFLICT (hint_hash) DO NOTHING";

/// Purged children first (foreign keys): CIBA requests, tokens, codes, sign-ins, pushed
/// requests, used hints.
pub(super) const PURGE_FLOW: [&str; 6] = [
    "DELETE FROM oidc_ciba_requests WHERE expires_at < $1",
    "DELETE FROM oidc_access_tokens WHERE expires_at < $1",
    "DELETE FROM oidc_codes WHERE expires_at < $1
         AND NOT EXISTS (SELECT 1 FROM oidc_access_tokens t WHERE t.code_hash = oidc_codes.code_hash)",
    "DELETE FROM oidc_authorizations WHERE expires_at < $1
         AND NOT EXISTS (SELECT 1 FROM oidc_codes c WHERE c.authorization_id = oidc_authorizations.id)",
    "DELETE FROM oidc_pushed_requests WHERE expires_at < $1",
    "DELETE FROM oidc_used_hints WHERE expires_at < $1",
];
