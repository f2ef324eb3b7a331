//! Upstream issuers: identity providers whose signed `id_token_hint` may name the user to
//! prompt, in place of a pushed request. This is how Microsoft Entra ID calls an external
//! authentication method ("Microsoft Entra multifactor authentication external method provider
//! reference", learn.microsoft.com/entra/identity/authentication/concept-authentication-external-method-provider):
//! a form POST to `/authorize` with `response_type=id_token`, `response_mode=form_post`, an
//! `id_token_hint` Entra signed for the user (issued already expired: it is a hint, not an
//! authentication), a `claims` request for `acr`/`amr`, `nonce` and `state`.
//!
//! A hint is trusted only from a configured issuer (`[[oidc.upstream]]`), for the one client
//! configured with it, verified strictly (signature with that issuer's keys, `iss` byte for
//! byte, `aud`, age from `iat`), and used once.

use std::path::PathBuf;
use std::sync::Arc;

use jsonwebtoken::Algorithm;
use jsonwebtoken::jwk::Jwk;
use serde::Deserialize;
use time::{Duration, OffsetDateTime};

use super::client_jwks::ClientJwksFetcher;
use super::clients::{ClientId, validate_jwks, validate_jwks_uri};
use super::jose::{self, JwtError, JwtPolicy};

/// Algorithms an upstream hint may be signed with (Entra signs RS256).
const HINT_ALGORITHMS: [Algorithm; 5] =
    [Algorithm::RS256, Algorithm::RS384, Algorithm::PS256, Algorithm::ES256, Algorithm::ES384];

/// `[oidc]`: the provider's configuration.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OidcConfig {
    /// `[[oidc.upstream]]`: issuers whose `id_token_hint` names the user to prompt.
    #[serde(default)]
    pub upstream: Vec<UpstreamConfig>,
}

/// One upstream issuer.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamConfig {
    /// The issuer exactly as its tokens say (Entra: `https://login.microsoftonline.com/<tenant
    /// id>/v2.0`, which also pins the tenant).
    pub issuer: String,
    /// The `aud` its hints carry (Entra: the application ID of the provider's app registration).
    pub audience: String,
    /// The Countersign client it calls as (`countersign clients create`); hints are accepted
    /// only on that client's requests.
    pub client_id: String,
    /// Where its signing keys are published (Entra: `https://login.microsoftonline.com/<tenant
    /// id>/discovery/v2.0/keys`); or `jwks_file`.
    pub jwks_uri: Option<String>,
    pub jwks_file: Option<PathBuf>,
    /// The hint claim holding the Countersign username (default `preferred_username`).
    #[serde(default = "default_user_claim")]
    pub user_claim: String,
    /// How old (from `iat`) a hint may be; Entra abandons a sign-in after about 10 minutes.
    #[serde(default = "default_max_hint_age")]
    pub max_hint_age_secs: u64,
}

fn default_user_claim() -> String {
    "preferred_username".into()
}

fn default_max_hint_age() -> u64 {
    600
}

#[derive(Debug, Clone)]
enum UpstreamKeys {
    Inline(Vec<Jwk>),
    Uri(String),
}

/// A validated upstream issuer.
#[derive(Debug, Clone)]
pub struct Upstream {
    pub issuer: String,
    pub audience: String,
    pub client_id: ClientId,
    keys: UpstreamKeys,
    pub user_claim: String,
    pub max_age: Duration,
}

impl OidcConfig {
    /// Checks every upstream issuer (reading key files now): the key at fault and why.
    pub fn resolve(&self) -> Result<Vec<Upstream>, (&'static str, String)> {
        let mut resolved: Vec<Upstream> = Vec::new();
        for (index, upstream) in self.upstream.iter().enumerate() {
            let problem =
                |what: String| ("oidc.upstream", format!("entry {index} ({}): {what}", upstream.issuer));
            validate_jwks_uri(&upstream.issuer).map_err(|e| problem(format!("issuer: {e}")))?;
            if upstream.audience.trim().is_empty() {
                return Err(problem("audience must not be empty".into()));
            }
            if !ClientId::is_well_formed(&upstream.client_id) {
                return Err(problem("client_id is not a Countersign client id".into()));
            }
            if upstream.user_claim.trim().is_empty() {
                return Err(problem("user_claim must not be empty".into()));
            }
            if !(60..=3600).contains(&upstream.max_hint_age_secs) {
                return Err(problem("max_hint_age_secs must be between 60 and 3600".into()));
            }
            let keys = match (&upstream.jwks_uri, &upstream.jwks_file) {
                (Some(uri), None) => {
                    validate_jwks_uri(uri).map_err(|e| problem(e.to_string()))?;
                    UpstreamKeys::Uri(uri.clone())
                }
                (None, Some(path)) => {
                    let text = std::fs::read_to_string(path)
                        .map_err(|e| problem(format!("jwks_file {}: {e}", path.display())))?;
                    UpstreamKeys::Inline(
                        validate_jwks(&text).map_err(|e| problem(e.to_string()))?.keys().to_vec(),
                    )
                }
                _ => return Err(problem("set exactly one of jwks_uri and jwks_file".into())),
            };
            if resolved.iter().any(|r| r.issuer == upstream.issuer && r.client_id.0 == upstream.client_id) {
                return Err(problem("configured twice for the same client".into()));
            }
            resolved.push(Upstream {
                issuer: upstream.issuer.clone(),
                audience: upstream.audience.clone(),
                client_id: ClientId(upstream.client_id.clone()),
                keys,
                user_claim: upstream.user_claim.clone(),
                max_age: Duration::seconds(upstream.max_hint_age_secs as i64),
            });
        }
        Ok(resolved)
    }
}

/// A hint that checked out: whom it names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hint {
    pub issuer: String,
    /// The hint's `sub`, which the answer's ID token must carry.
    pub subject: String,
    /// The value of the configured user claim: the Countersign username.
    pub username: String,
    /// When it expires as a hint (`iat` + the issuer's max age): how long it is remembered as
    /// used.
    pub usable_until: OffsetDateTime,
}

/// Why a hint is refused (for the audit trail; the client sees `invalid_request`).
#[derive(Debug, thiserror::Error)]
pub enum HintError {
    #[error("no upstream issuer is configured for this client with the hint's issuer")]
    UnknownIssuer,
    #[error("the hint does not verify: {0}")]
    Invalid(#[from] JwtError),
    #[error("the issuer's keys could not be fetched: {0}")]
    Keys(String),
    #[error("the hint has no `{0}` claim")]
    MissingClaim(String),
}

impl HintError {
    pub fn reason(&self) -> &'static str {
        match self {
            HintError::UnknownIssuer => "unknown_issuer",
            HintError::Invalid(error) => error.reason(),
            HintError::Keys(_) => "issuer_keys_unavailable",
            HintError::MissingClaim(_) => "missing_user_claim",
        }
    }
}

/// The configured upstream issuers and the fetcher for their published keys.
#[derive(Debug)]
pub struct UpstreamIssuers {
    issuers: Vec<Upstream>,
    fetcher: Arc<ClientJwksFetcher>,
}

impl UpstreamIssuers {
    pub fn new(issuers: Vec<Upstream>, fetcher: Arc<ClientJwksFetcher>) -> Self {
        Self { issuers, fetcher }
    }

    /// Verifies `hint` as presented on `client`'s request.
    pub async fn verify(
        &self,
        client: &ClientId,
        hint: &str,
        now: OffsetDateTime,
    ) -> Result<Hint, HintError> {
        let claimed_issuer = jose::unverified_claim(hint, "iss")?;
        let upstream = self
            .issuers
            .iter()
            .find(|u| u.issuer == claimed_issuer && &u.client_id == client)
            .ok_or(HintError::UnknownIssuer)?;
        let audiences = [upstream.audience.as_str()];
        let policy = JwtPolicy {
            algorithms: &HINT_ALGORITHMS,
            issuer: &upstream.issuer,
            audiences: &audiences,
            subject: None,
            typ: None,
            max_lifetime: upstream.max_age,
            leeway: Duration::seconds(30),
            require_jti: false,
            expired_grace: upstream.max_age,
        };
        let header = jose::read_header(hint, &policy)?;
        let fetched;
        let keys: &[Jwk] = match &upstream.keys {
            UpstreamKeys::Inline(keys) => keys,
            UpstreamKeys::Uri(uri) => {
                fetched = self
                    .fetcher
                    .keys(uri, header.kid.as_deref())
                    .await
                    .map_err(|e| HintError::Keys(e.to_string()))?;
                fetched.keys()
            }
        };
        let verified = jose::verify(hint, keys, &policy, now)?;
        let claim = |name: &str| verified.claims.get(name).and_then(|v| v.as_str()).map(str::to_owned);
        let subject = claim("sub").ok_or_else(|| HintError::MissingClaim("sub".into()))?;
        let username = claim(&upstream.user_claim)
            .ok_or_else(|| HintError::MissingClaim(upstream.user_claim.clone()))?;
        let iat = verified.claims.get("iat").and_then(serde_json::Value::as_i64).unwrap_or_default();
        let usable_until = OffsetDateTime::from_unix_timestamp(iat).map_or(now, |iat| iat + upstream.max_age)
            + policy.leeway;
        Ok(Hint { issuer: upstream.issuer.clone(), subject, username, usable_until })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> UpstreamConfig {
        UpstreamConfig {
            issuer: "https://login.microsoftonline.com/14c2f153-90a7-4689-9db7-9543bf084dad/v2.0".into(),
            audience: "600b719b-3766-4dc5-95a6-3c4a8dc31885".into(),
            client_id: "AAAAAAAAAAAAAAAAAAAAAA".into(),
            jwks_uri: Some(
                "https://login.microsoftonline.com/14c2f153-90a7-4689-9db7-9543bf084dad/discovery/v2.0/keys"
                    .into(),
            ),
            jwks_file: None,
            user_claim: default_user_claim(),
            max_hint_age_secs: default_max_hint_age(),
        }
    }

    fn problem(upstream: UpstreamConfig) -> String {
        let (key, problem) = OidcConfig { upstream: vec![upstream] }.resolve().unwrap_err();
        assert_eq!(key, "oidc.upstream");
        problem
    }

    #[test]
    fn an_upstream_issuer_is_checked_at_start() {
        assert_eq!(OidcConfig { upstream: vec![config()] }.resolve().unwrap().len(), 1);
        assert!(
            problem(UpstreamConfig { jwks_uri: None, ..config() })
                .contains("exactly one of jwks_uri and jwks_file")
        );
        let both = UpstreamConfig { jwks_file: Some("/nonexistent".into()), ..config() };
        assert!(problem(both).contains("exactly one"));
        assert!(
            problem(UpstreamConfig { issuer: "http://idp.example.com".into(), ..config() })
                .contains("issuer")
        );
        assert!(
            problem(UpstreamConfig { client_id: "not a client".into(), ..config() }).contains("client_id")
        );
        assert!(problem(UpstreamConfig { max_hint_age_secs: 5, ..config() }).contains("max_hint_age_secs"));
        assert!(problem(UpstreamConfig { audience: " ".into(), ..config() }).contains("audience"));
        let missing =
            UpstreamConfig { jwks_uri: None, jwks_file: Some("/nonexistent/keys.json".into()), ..config() };
        assert!(problem(missing).contains("/nonexistent/keys.json"));
        let twice = OidcConfig { upstream: vec![config(), config()] }.resolve().unwrap_err();
        assert!(twice.1.contains("twice"), "{twice:?}");
    }
}
