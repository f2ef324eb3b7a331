//! The bearer token of a delegation request, verified: Keycloak signs it with the realm's
//! active key (`DefaultTokenManager.encode`, RS256 unless the realm says otherwise) and
//! addresses it to itself (`aud` = the realm issuer). The realm is chosen by the token's
//! unverified `iss`, the key by `kid` from that realm's published key set, and everything
//! else is checked only once the signature holds ([`crate::oidc::jose`]).

use std::sync::Arc;

use jsonwebtoken::Algorithm;
use time::{Duration, OffsetDateTime};

use super::config::{MAX_CLIENT_ID_LEN, Realm};
use crate::oidc::client_auth::ASSERTION_ALGORITHMS;
use crate::oidc::client_jwks::ClientJwksFetcher;
use crate::oidc::jose::{self, JwtError, JwtPolicy};

/// Asymmetric algorithms a realm key may sign with: the client-assertion set (`none` and HMAC
/// never; the jose verifier refuses them whatever a list says).
const ALGORITHMS: [Algorithm; 9] = ASSERTION_ALGORITHMS;

/// Longest token life accepted (`exp - iat`): Keycloak's default "Expires In" is 120 s; a
/// client's `requested_expiry` may ask for more, but a sign-in prompt is not an hour-long thing.
pub const MAX_LIFETIME: Duration = Duration::minutes(15);
/// Clock skew tolerated between Keycloak and this server.
pub const LEEWAY: Duration = Duration::seconds(10);
/// Longest `sub` accepted (Keycloak's are UUIDs).
const MAX_SUBJECT_LEN: usize = 255;

/// A delegation token that checked out.
#[derive(Debug, Clone)]
pub struct ChannelToken {
    /// Index of the realm in [`Realms`].
    pub realm: usize,
    /// `auth_result_id`: Keycloak's key for the callback, single use here.
    pub jti: String,
    /// Keycloak's user id.
    pub subject: String,
    /// The Keycloak client asking (the consumption device).
    pub client: String,
    pub expires_at: OffsetDateTime,
}

/// Why a token is refused (401); the variants are for the audit trail.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("no bearer token")]
    Missing,
    #[error("the token's issuer is not a configured realm")]
    UnknownRealm,
    #[error("the token does not verify: {0}")]
    Invalid(#[from] JwtError),
    #[error("the token's `typ` claim is not `Bearer`")]
    NotBearer,
    #[error("the token has no usable `{0}` claim")]
    MissingClaim(&'static str),
    #[error("Keycloak client `{0}` may not start sign-ins here")]
    ClientNotAllowed(String),
    #[error("the realm's keys could not be fetched: {0}")]
    Keys(String),
}

impl TokenError {
    /// A stable snake_case name for the audit trail.
    pub fn reason(&self) -> &'static str {
        match self {
            TokenError::Missing => "no_token",
            TokenError::UnknownRealm => "unknown_realm",
            TokenError::Invalid(error) => error.reason(),
            TokenError::NotBearer => "not_bearer",
            TokenError::MissingClaim(_) => "missing_claim",
            TokenError::ClientNotAllowed(_) => "client_not_allowed",
            TokenError::Keys(_) => "realm_keys_unavailable",
        }
    }
}

/// The configured realms and the fetcher of their key sets.
#[derive(Debug)]
pub struct Realms {
    realms: Vec<Realm>,
    fetcher: Arc<ClientJwksFetcher>,
}

impl Realms {
    pub fn new(realms: Vec<Realm>, fetcher: Arc<ClientJwksFetcher>) -> Self {
        Self { realms, fetcher }
    }

    pub fn is_empty(&self) -> bool {
        self.realms.is_empty()
    }

    pub fn get(&self, index: usize) -> Option<&Realm> {
        self.realms.get(index)
    }

    /// The realm whose issuer the token claims (unverified: only to pick the keys).
    pub fn claimed(&self, token: &str) -> Option<&Realm> {
        let issuer = jose::unverified_claim(token, "iss").ok()?;
        self.realms.iter().find(|r| r.issuer == issuer)
    }

    /// Verifies a delegation token at `now`.
    pub async fn verify(&self, token: &str, now: OffsetDateTime) -> Result<ChannelToken, TokenError> {
        let issuer = jose::unverified_claim(token, "iss")?;
        let index = self.realms.iter().position(|r| r.issuer == issuer).ok_or(TokenError::UnknownRealm)?;
        let realm = &self.realms[index];
        let audiences = [realm.issuer.as_str()];
        let policy = JwtPolicy {
            algorithms: &ALGORITHMS,
            issuer: &realm.issuer,
            audiences: &audiences,
            subject: None,
            // The header says `JWT`; the kind of token is the `typ` claim, checked below.
            typ: None,
            max_lifetime: MAX_LIFETIME,
            leeway: LEEWAY,
            require_jti: true,
            expired_grace: Duration::ZERO,
        };
        let header = jose::read_header(token, &policy)?;
        let keys = self
            .fetcher
            .keys(&realm.jwks_uri, header.kid.as_deref())
            .await
            .map_err(|e| TokenError::Keys(e.to_string()))?;
        let verified = jose::verify(token, keys.keys(), &policy, now)?;
        if verified.claim_str("typ") != Some("Bearer") {
            return Err(TokenError::NotBearer);
        }
        let bounded = |name: &'static str, max: usize| {
            verified
                .claim_str(name)
                .filter(|value| (1..=max).contains(&value.len()))
                .map(str::to_owned)
                .ok_or(TokenError::MissingClaim(name))
        };
        let subject = bounded("sub", MAX_SUBJECT_LEN)?;
        let client = bounded("azp", MAX_CLIENT_ID_LEN)?;
        if !realm.allows_client(&client) {
            return Err(TokenError::ClientNotAllowed(client));
        }
        let jti = verified.jti.ok_or(TokenError::MissingClaim("jti"))?;
        Ok(ChannelToken { realm: index, jti, subject, client, expires_at: verified.expires_at })
    }
}
