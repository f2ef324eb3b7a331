//! Client authentication at a token-style endpoint (`/token`, PAR, CIBA): from the
//! `Authorization` header and the form fields `client_id`, `client_secret`,
//! `client_assertion_type`, `client_assertion` to an authenticated client or an RFC 6749 error.
//!
//! Rules (RFC 6749 §2.3, RFC 7521/7523, OIDC Core §9):
//! - exactly one method per request (two → `invalid_request`), and it must be the client's
//!   registered one;
//! - an unknown or revoked client, a wrong secret, a bad or replayed assertion → `invalid_client`
//!   (401; `WWW-Authenticate: Basic` when Basic was tried), the same answer whatever failed;
//! - secrets are compared in constant time against their hash, and a secret is hashed even for
//!   an unknown client id, so the two failures take the same time;
//! - `private_key_jwt`: `iss` = `sub` = client id, `aud` = the token endpoint URL or the issuer,
//!   `exp` required and at most [`ClientAuthSettings::max_assertion_lifetime`] away, `jti`
//!   single-use until the assertion expires, the key from the registered set or `jwks_uri`;
//! - a public client (`none`) is identified by `client_id` alone and must use PKCE.
//!
//! Every refusal is audited (`oidc_client.auth_refused`): a flood of bad secrets is a signal.

use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use jsonwebtoken::Algorithm;
use serde_json::json;
use time::Duration;

use super::client_jwks::{ClientJwksFetcher, JwksFetchError};
use super::clients::{AuthMethod, Client, ClientId, ClientKeys};
use super::jose::{self, JwtError, JwtPolicy};
use super::oauth_error::{BASIC_CHALLENGE, OAuthError};
use crate::api_keys::key_matches;
use crate::audit::{Action, Actor, AuditEvent, Subject};
use crate::clock::Clock;
use crate::store::{Store, StoreError};

/// The only `client_assertion_type` (RFC 7523 §2.2).
pub const JWT_BEARER_ASSERTION: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// Algorithms a client assertion may use: asymmetric only (no `client_secret_jwt`).
pub const ASSERTION_ALGORITHMS: [Algorithm; 9] = [
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::EdDSA,
];

/// What a request presented, as the endpoint received it (form fields already decoded).
#[derive(Debug, Clone, Copy, Default)]
pub struct ClientCredentials<'a> {
    pub authorization: Option<&'a str>,
    pub client_id: Option<&'a str>,
    pub client_secret: Option<&'a str>,
    pub client_assertion_type: Option<&'a str>,
    pub client_assertion: Option<&'a str>,
}

/// Authorization request parameters: a JWT carrying any is a request object (RFC 9101).
const REQUEST_PARAMETERS: [&str; 5] =
    ["response_type", "redirect_uri", "scope", "login_hint", "code_challenge"];

/// Where assertions must be addressed, and how long they may live.
#[derive(Debug, Clone)]
pub struct ClientAuthSettings {
    /// Our issuer (`public_url`), an accepted `aud`.
    pub issuer: String,
    /// The URL of the endpoint being called, an accepted `aud`.
    pub token_endpoint: String,
    /// The CIBA backchannel endpoint, an accepted `aud` too (CIBA Core §7.1).
    pub backchannel_endpoint: String,
    pub max_assertion_lifetime: Duration,
    pub leeway: Duration,
}

impl ClientAuthSettings {
    pub fn new(issuer: impl Into<String>, token_endpoint: impl Into<String>) -> Self {
        let issuer = issuer.into();
        Self {
            backchannel_endpoint: format!("{issuer}{}", super::flow::CIBA_PATH),
            issuer,
            token_endpoint: token_endpoint.into(),
            max_assertion_lifetime: Duration::minutes(5),
            leeway: Duration::seconds(30),
        }
    }
}

/// A client that proved who it is.
#[derive(Debug, Clone)]
pub struct AuthenticatedClient {
    pub client: Client,
    pub method: AuthMethod,
    /// A public client: the caller must require PKCE (it is the only proof there is).
    pub pkce_required: bool,
}

/// Why authentication was refused (for tests and the audit trail; the client sees only the
/// [`OAuthError`] it maps to).
#[derive(Debug, thiserror::Error)]
pub enum ClientAuthError {
    #[error("no client authentication was presented")]
    NoCredentials,
    #[error("more than one client authentication method was presented")]
    MultipleMethods,
    #[error("the Authorization header is not HTTP Basic with a form-encoded client id and secret")]
    MalformedBasic,
    #[error("client_id does not name the client that authenticated")]
    ClientIdMismatch,
    #[error("client_secret_post needs client_id")]
    MissingClientId,
    #[error("client_assertion_type must be {JWT_BEARER_ASSERTION}, with a client_assertion")]
    BadAssertionType,
    #[error("unknown client")]
    UnknownClient,
    #[error("the client has been revoked")]
    Revoked,
    #[error("the client is registered for {registered}, not {used}")]
    WrongMethod { registered: AuthMethod, used: AuthMethod },
    #[error("wrong client secret")]
    WrongSecret,
    #[error("the client assertion was refused: {0}")]
    BadAssertion(JwtError),
    #[error("the client assertion's jti was already used")]
    ReplayedAssertion,
    #[error(
        "the client assertion carries authorization request parameters: a request object is no client assertion"
    )]
    AssertionIsARequest,
    #[error(transparent)]
    KeysUnavailable(JwksFetchError),
    #[error(transparent)]
    Store(StoreError),
}

impl ClientAuthError {
    /// A stable name for the audit trail.
    pub fn reason(&self) -> &'static str {
        match self {
            ClientAuthError::NoCredentials => "no_credentials",
            ClientAuthError::MultipleMethods => "multiple_methods",
            ClientAuthError::MalformedBasic => "malformed_basic",
            ClientAuthError::ClientIdMismatch => "client_id_mismatch",
            ClientAuthError::MissingClientId => "missing_client_id",
            ClientAuthError::BadAssertionType => "bad_assertion_type",
            ClientAuthError::UnknownClient => "unknown_client",
            ClientAuthError::Revoked => "revoked",
            ClientAuthError::WrongMethod { .. } => "wrong_method",
            ClientAuthError::WrongSecret => "wrong_secret",
            ClientAuthError::BadAssertion(_) => "bad_assertion",
            ClientAuthError::ReplayedAssertion => "replayed_assertion",
            ClientAuthError::AssertionIsARequest => "assertion_is_a_request",
            ClientAuthError::KeysUnavailable(_) => "keys_unavailable",
            ClientAuthError::Store(_) => "store",
        }
    }
}

/// A refusal, with whether HTTP Basic was tried (the 401 then challenges for Basic).
#[derive(Debug, thiserror::Error)]
#[error("{reason}")]
pub struct ClientAuthFailure {
    pub reason: ClientAuthError,
    pub basic_attempted: bool,
}

impl ClientAuthFailure {
    /// The RFC 6749 error the endpoint answers with.
    pub fn oauth_error(&self) -> OAuthError {
        use ClientAuthError::*;
        let error = match &self.reason {
            MultipleMethods => {
                OAuthError::invalid_request("use exactly one client authentication method per request")
            }
            MalformedBasic => OAuthError::invalid_request(
                "the Authorization header must be Basic base64(urlencoded client_id:urlencoded client_secret)",
            ),
            ClientIdMismatch => {
                OAuthError::invalid_request("client_id does not match the authenticated client")
            }
            MissingClientId => OAuthError::invalid_request("client_secret_post requires client_id"),
            BadAssertionType => OAuthError::invalid_request(format!(
                "client_assertion_type must be {JWT_BEARER_ASSERTION}, sent with client_assertion"
            )),
            NoCredentials => OAuthError::invalid_client("client authentication is required"),
            WrongMethod { registered, .. } => {
                OAuthError::invalid_client(format!("this client must authenticate with {registered}"))
            }
            UnknownClient | Revoked | WrongSecret | BadAssertion(_) | ReplayedAssertion
            | AssertionIsARequest | KeysUnavailable(_) => {
                OAuthError::invalid_client("client authentication failed")
            }
            Store(_) => OAuthError::server_error(),
        };
        // RFC 6749 §5.2: a client that tried Basic is answered with a Basic challenge.
        if self.basic_attempted && error.status() == 401 {
            error.with_challenge(BASIC_CHALLENGE)
        } else {
            error
        }
    }
}

impl From<ClientAuthFailure> for OAuthError {
    fn from(failure: ClientAuthFailure) -> Self {
        failure.oauth_error()
    }
}

/// The one method a request used, with what it presented.
enum Presented<'a> {
    Basic { client_id: String, secret: String },
    Post { client_id: &'a str, secret: &'a str },
    Assertion { assertion: &'a str },
    PublicClient { client_id: &'a str },
}

impl Presented<'_> {
    fn method(&self) -> AuthMethod {
        match self {
            Presented::Basic { .. } => AuthMethod::ClientSecretBasic,
            Presented::Post { .. } => AuthMethod::ClientSecretPost,
            Presented::Assertion { .. } => AuthMethod::PrivateKeyJwt,
            Presented::PublicClient { .. } => AuthMethod::None,
        }
    }
}

/// Decodes `application/x-www-form-urlencoded` text (`+` is a space); `None` if malformed.
fn form_urldecode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 2;
            }
            other => out.push(other),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

/// Parses `Basic base64(urlencode(id):urlencode(secret))` (RFC 6749 §2.3.1).
fn parse_basic(header: &str) -> Result<(String, String), ClientAuthError> {
    let (scheme, encoded) = header.trim().split_once(' ').ok_or(ClientAuthError::MalformedBasic)?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return Err(ClientAuthError::MalformedBasic);
    }
    let decoded = STANDARD.decode(encoded.trim()).map_err(|_| ClientAuthError::MalformedBasic)?;
    let decoded = String::from_utf8(decoded).map_err(|_| ClientAuthError::MalformedBasic)?;
    let (id, secret) = decoded.split_once(':').ok_or(ClientAuthError::MalformedBasic)?;
    let (id, secret) = (form_urldecode(id), form_urldecode(secret));
    match (id, secret) {
        (Some(id), Some(secret)) if !id.is_empty() => Ok((id, secret)),
        _ => Err(ClientAuthError::MalformedBasic),
    }
}

/// Finds the one method a request used; refuses none or several.
fn presented<'a>(credentials: &ClientCredentials<'a>) -> Result<Presented<'a>, ClientAuthError> {
    let uses_assertion =
        credentials.client_assertion.is_some() || credentials.client_assertion_type.is_some();
    let methods = [credentials.authorization.is_some(), credentials.client_secret.is_some(), uses_assertion];
    if methods.iter().filter(|used| **used).count() > 1 {
        return Err(ClientAuthError::MultipleMethods);
    }
    let body_id = credentials.client_id;
    if let Some(header) = credentials.authorization {
        let (client_id, secret) = parse_basic(header)?;
        if body_id.is_some_and(|id| id != client_id) {
            return Err(ClientAuthError::ClientIdMismatch);
        }
        return Ok(Presented::Basic { client_id, secret });
    }
    if let Some(secret) = credentials.client_secret {
        let client_id = body_id.ok_or(ClientAuthError::MissingClientId)?;
        return Ok(Presented::Post { client_id, secret });
    }
    if uses_assertion {
        return match (credentials.client_assertion_type, credentials.client_assertion) {
            (Some(JWT_BEARER_ASSERTION), Some(assertion)) => Ok(Presented::Assertion { assertion }),
            _ => Err(ClientAuthError::BadAssertionType),
        };
    }
    body_id.map(|client_id| Presented::PublicClient { client_id }).ok_or(ClientAuthError::NoCredentials)
}

/// Authenticates clients against the store; holds the `jwks_uri` cache.
#[derive(Debug)]
pub struct ClientAuthenticator {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    jwks: Arc<ClientJwksFetcher>,
    settings: ClientAuthSettings,
}

impl ClientAuthenticator {
    pub fn new(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        jwks: Arc<ClientJwksFetcher>,
        settings: ClientAuthSettings,
    ) -> Self {
        Self { store, clock, jwks, settings }
    }

    /// Authenticates the client a request names, or says why not (audited).
    pub async fn authenticate(
        &self,
        credentials: &ClientCredentials<'_>,
    ) -> Result<AuthenticatedClient, ClientAuthFailure> {
        let basic_attempted = credentials.authorization.is_some();
        let mut named: Option<ClientId> = None;
        let result = self.check(credentials, &mut named).await;
        match result {
            Ok(client) => Ok(client),
            Err(reason) => {
                self.audit_refusal(&reason, credentials, named).await;
                Err(ClientAuthFailure { reason, basic_attempted })
            }
        }
    }

    async fn check(
        &self,
        credentials: &ClientCredentials<'_>,
        named: &mut Option<ClientId>,
    ) -> Result<AuthenticatedClient, ClientAuthError> {
        let presented = presented(credentials)?;
        let method = presented.method();
        let client_id = match &presented {
            Presented::Basic { client_id, .. } => client_id.clone(),
            Presented::Post { client_id, .. } | Presented::PublicClient { client_id } => {
                (*client_id).to_owned()
            }
            Presented::Assertion { assertion } => assertion_subject(assertion, credentials.client_id)?,
        };
        let client = self.lookup(&client_id).await?;
        if client.is_some() {
            *named = Some(ClientId(client_id));
        }
        match presented {
            Presented::Basic { ref secret, .. } => Self::check_secret(client, method, secret),
            Presented::Post { secret, .. } => Self::check_secret(client, method, secret),
            Presented::Assertion { assertion } => {
                let client = usable(client, method)?;
                self.check_assertion(&client, assertion).await?;
                Ok(client)
            }
            Presented::PublicClient { .. } => usable(client, method),
        }
        .map(|client| AuthenticatedClient { pkce_required: client.is_public(), client, method })
    }

    async fn lookup(&self, client_id: &str) -> Result<Option<Client>, ClientAuthError> {
        if !ClientId::is_well_formed(client_id) {
            return Ok(None);
        }
        self.store.oidc_client(&ClientId(client_id.to_owned())).await.map_err(ClientAuthError::Store)
    }

    /// Checks a secret; hashes it even when there is no client, so timing tells nothing.
    fn check_secret(
        client: Option<Client>,
        method: AuthMethod,
        secret: &str,
    ) -> Result<Client, ClientAuthError> {
        let stored = client.as_ref().and_then(|c| c.secret_hash.as_deref()).unwrap_or(&[0u8; 32]);
        let matches = key_matches(secret, stored);
        let client = usable(client, method)?;
        if matches { Ok(client) } else { Err(ClientAuthError::WrongSecret) }
    }

    /// Verifies a `private_key_jwt` assertion and spends its `jti`.
    async fn check_assertion(&self, client: &Client, assertion: &str) -> Result<(), ClientAuthError> {
        let client_id = client.client_id.0.as_str();
        let audiences = [
            self.settings.token_endpoint.as_str(),
            self.settings.issuer.as_str(),
            self.settings.backchannel_endpoint.as_str(),
        ];
        let policy = JwtPolicy {
            algorithms: &ASSERTION_ALGORITHMS,
            issuer: client_id,
            audiences: &audiences,
            subject: Some(client_id),
            typ: None,
            max_lifetime: self.settings.max_assertion_lifetime,
            leeway: self.settings.leeway,
            require_jti: true,
            expired_grace: Duration::ZERO,
        };
        let header = jose::read_header(assertion, &policy).map_err(ClientAuthError::BadAssertion)?;
        let fetched;
        let keys = match &client.keys {
            ClientKeys::Inline(jwks) => jwks.keys(),
            ClientKeys::Uri(uri) => {
                fetched = self
                    .jwks
                    .keys(uri, header.kid.as_deref())
                    .await
                    .map_err(ClientAuthError::KeysUnavailable)?;
                fetched.keys()
            }
            // The schema forbids a private_key_jwt client without keys; refuse, never trust.
            ClientKeys::None => {
                return Err(ClientAuthError::WrongMethod {
                    registered: client.auth_method,
                    used: AuthMethod::PrivateKeyJwt,
                });
            }
        };
        let now = self.clock.now();
        let verified = jose::verify(assertion, keys, &policy, now).map_err(ClientAuthError::BadAssertion)?;
        // Both kinds are signed by the client's keys and may be addressed to the issuer: a
        // signed authorization request seen in a browser must not authenticate as the client.
        if REQUEST_PARAMETERS.iter().any(|name| verified.claims.contains_key(*name)) {
            return Err(ClientAuthError::AssertionIsARequest);
        }
        let jti =
            verified.jti.as_deref().ok_or(ClientAuthError::BadAssertion(JwtError::MissingClaim("jti")))?;
        let subject = Subject::OidcClient(client.client_id.clone());
        let details = json!({
            "reason": ClientAuthError::ReplayedAssertion.reason(),
            "method": AuthMethod::PrivateKeyJwt.as_str(),
        });
        let replay =
            AuditEvent::new(now, Actor::System, Action::OidcClientAuthRefused, subject).with_details(details);
        // Remembered past `exp` by the leeway `exp` is checked with.
        let remember_until = verified.expires_at + self.settings.leeway;
        let first_use = self
            .store
            .use_client_assertion_jti(&client.client_id, jti, remember_until, now, replay)
            .await
            .map_err(ClientAuthError::Store)?;
        if first_use { Ok(()) } else { Err(ClientAuthError::ReplayedAssertion) }
    }

    /// Records a refusal; a replay was recorded with the `jti` it spent, a store failure is
    /// not a refusal.
    async fn audit_refusal(
        &self,
        reason: &ClientAuthError,
        credentials: &ClientCredentials<'_>,
        named: Option<ClientId>,
    ) {
        if matches!(reason, ClientAuthError::Store(_)) {
            return;
        }
        metrics::counter!("countersign_oidc_client_auth_refusals_total", "reason" => reason.reason())
            .increment(1);
        if matches!(reason, ClientAuthError::ReplayedAssertion) {
            return;
        }
        let method = presented(credentials).map(|p| p.method().as_str()).unwrap_or("unclear");
        let subject = named.map_or(Subject::UnknownOidcClients, Subject::OidcClient);
        let mut details = json!({ "reason": reason.reason(), "method": method });
        if let ClientAuthError::BadAssertion(jwt) = reason {
            details["assertion"] = json!(jwt.reason());
        }
        let event = AuditEvent::new(self.clock.now(), Actor::System, Action::OidcClientAuthRefused, subject)
            .with_details(details);
        if let Err(error) = self.store.record_audit(event).await {
            tracing::error!(error = %error, "could not audit a refused client authentication");
        }
    }
}

/// The client a usable credential names: known, active, registered for `method`.
fn usable(client: Option<Client>, method: AuthMethod) -> Result<Client, ClientAuthError> {
    let client = client.ok_or(ClientAuthError::UnknownClient)?;
    if !client.is_active() {
        return Err(ClientAuthError::Revoked);
    }
    if client.auth_method != method {
        return Err(ClientAuthError::WrongMethod { registered: client.auth_method, used: method });
    }
    Ok(client)
}

/// The client an assertion claims to come from (its `sub`, RFC 7523 §3), read before
/// verification only to find the keys; `client_id`, if sent too, must agree.
fn assertion_subject(assertion: &str, client_id: Option<&str>) -> Result<String, ClientAuthError> {
    let sub = jose::unverified_claim(assertion, "sub").map_err(ClientAuthError::BadAssertion)?;
    if client_id.is_some_and(|id| id != sub) {
        return Err(ClientAuthError::ClientIdMismatch);
    }
    Ok(sub)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn basic(id: &str, secret: &str) -> String {
        format!("Basic {}", STANDARD.encode(format!("{id}:{secret}")))
    }

    #[test]
    fn basic_credentials_are_form_decoded() {
        assert_eq!(
            parse_basic(&basic("my%20id", "s%3Ac+r")).unwrap(),
            ("my id".to_owned(), "s:c r".to_owned())
        );
        assert_eq!(parse_basic(&basic("id", "a:b")).unwrap().1, "a:b", "only the first colon splits");
        for bad in [
            "Basic",
            "Bearer abc",
            "Basic !!!",
            &basic("", "x"),
            &basic("id", "%zz"),
            &format!("Basic {}", STANDARD.encode("no-colon")),
        ] {
            assert!(parse_basic(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn exactly_one_method_is_accepted() {
        let header = basic("id", "secret");
        let two = [
            ClientCredentials {
                authorization: Some(&header),
                client_secret: Some("s"),
                ..Default::default()
            },
            ClientCredentials {
                authorization: Some(&header),
                client_assertion: Some("x.y.z"),
                ..Default::default()
            },
            ClientCredentials {
                client_secret: Some("s"),
                client_assertion_type: Some(JWT_BEARER_ASSERTION),
                ..Default::default()
            },
        ];
        for credentials in two {
            assert!(matches!(presented(&credentials), Err(ClientAuthError::MultipleMethods)));
        }
        assert!(matches!(presented(&ClientCredentials::default()), Err(ClientAuthError::NoCredentials)));
        let other_id = ClientCredentials {
            authorization: Some(&header),
            client_id: Some("other"),
            ..Default::default()
        };
        assert!(matches!(presented(&other_id), Err(ClientAuthError::ClientIdMismatch)));
        let wrong_type = ClientCredentials {
            client_assertion_type: Some("urn:other"),
            client_assertion: Some("x"),
            ..Default::default()
        };
        assert!(matches!(presented(&wrong_type), Err(ClientAuthError::BadAssertionType)));
        let public = ClientCredentials { client_id: Some("id"), ..Default::default() };
        assert!(matches!(presented(&public), Ok(Presented::PublicClient { client_id: "id" })));
    }

    #[test]
    fn refusals_map_to_rfc_6749_errors() {
        let failure = |reason, basic_attempted| ClientAuthFailure { reason, basic_attempted }.oauth_error();
        let wrong = failure(ClientAuthError::WrongSecret, true);
        assert_eq!(
            (wrong.code.as_str(), wrong.status(), wrong.www_authenticate.as_deref()),
            ("invalid_client", 401, Some(BASIC_CHALLENGE))
        );
        let two_with_basic = failure(ClientAuthError::MultipleMethods, true);
        assert_eq!(two_with_basic.www_authenticate, None, "a 400 carries no challenge");
        assert_eq!(wrong.body()["error_description"], "client authentication failed");
        let two = failure(ClientAuthError::MultipleMethods, false);
        assert_eq!((two.code.as_str(), two.status()), ("invalid_request", 400));
        let store = failure(ClientAuthError::Store(StoreError::NotFound), false);
        assert_eq!((store.code.as_str(), store.status()), ("server_error", 500));
    }
}
