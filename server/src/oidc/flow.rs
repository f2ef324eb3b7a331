//! The authorization code flow up to the code: a client pushes its request (PAR, RFC 9126,
//! client-authenticated), the browser brings the `request_uri` to `/oidc/authorize`, the user
//! answers a number-matched push or a passkey on the sign-in page (bound to that browser by a
//! cookie), and the page sends the browser back with a single-use code.
//!
//! Who may be prompted: only a user the client vouched for in an authenticated request. A bare
//! `/authorize` with a `login_hint` prompts nobody (a public URL must not send pushes). Every
//! prompt goes through the challenge machinery as an app (the client's), so the push budget,
//! fatigue ladder, silent mode, spray detection and audit apply exactly as for REST prompts.

use std::sync::Arc;

use ring::rand::SystemRandom;
use secrecy::ExposeSecret;
use serde_json::json;
use subtle::ConstantTimeEq;
use time::{Duration, OffsetDateTime};

use super::authorization::{AuthorizationRequest, FactorPolicy, Params, ResponseKind, Target, TargetError};
use super::client_auth::{ASSERTION_ALGORITHMS, ClientAuthenticator, ClientCredentials};
use super::client_jwks::ClientJwksFetcher;
use super::clients::{Client, ClientId, ClientKeys};
use super::jose::{self, JwtPolicy};
use super::keys::SigningKeys;
use super::oauth_error::{OAuthError, OAuthErrorCode};
use super::tokens::{Grant, ID_TOKEN_TYP, Proof};
use super::upstream::UpstreamIssuers;
use crate::api_keys::service::{AuthenticatedApp, keyless_app};
use crate::api_keys::{Scopes, hash_key, random_urlsafe};
use crate::audit::{Action, Actor, AuditEvent, Subject};
use crate::challenges::model::ChallengeState;
use crate::challenges::service::{ChallengeContext, ChallengeError, ChallengeService};
use crate::clock::Clock;
use crate::fault::InternalError;
use crate::ids::AuthorizationId;
use crate::passkeys::service::{PasskeyError, PasskeyService};
use crate::secrets::MasterKey;
use crate::store::{AuthorizationRecord, CodeRecord, PushedRequest, Store, StoreError, UserRecord};

mod ciba;
mod passkey_instead;
pub use ciba::{CIBA_GRANT_TYPE, CIBA_PATH, CibaAcknowledgement};
pub use passkey_instead::SwitchError;

/// Paths of the provider's endpoints, relative to the issuer.
pub const DISCOVERY_PATH: &str = "/.well-known/openid-configuration";
pub const PAR_PATH: &str = "/oidc/par";
pub const AUTHORIZE_PATH: &str = "/oidc/authorize";
pub const TOKEN_PATH: &str = "/oidc/token";
pub const USERINFO_PATH: &str = "/oidc/userinfo";
/// The sign-in page of an authorization: `/oidc/sign-in/{id}`.
pub const SIGN_IN_PATH: &str = "/oidc/sign-in";

/// RFC 9126 §2.2: the `request_uri` a pushed request answers with.
pub const REQUEST_URI_PREFIX: &str = "urn:ietf:params:oauth:request_uri:";
/// How long a pushed request may wait for the browser (RFC 9126 suggests 5 to 600 s).
pub const PAR_TTL: Duration = Duration::seconds(90);
/// How long a code may wait for the token request (OAuth 2.0 Security BCP: short).
pub const CODE_TTL: Duration = Duration::seconds(60);
/// The longest a request object may live (RFC 9101 leaves it to the server; FAPI says 60 min).
const REQUEST_OBJECT_MAX_LIFETIME: Duration = Duration::minutes(10);
/// A request object's JWT claims, which are not authorization parameters.
const JWT_CLAIMS: [&str; 6] = ["iss", "aud", "exp", "iat", "nbf", "jti"];
/// The parameters of client authentication, which a pushed request never stores.
const CLIENT_AUTH_PARAMS: [&str; 3] = ["client_secret", "client_assertion", "client_assertion_type"];

/// The cookie binding a sign-in to the browser that started it: `__Host-` (Secure, no Domain,
/// Path=/), one per sign-in.
pub fn browser_cookie_name(id: AuthorizationId) -> String {
    format!("__Host-countersign-oidc-{id}")
}

/// Where the provider lives.
#[derive(Debug, Clone)]
pub struct OidcSettings {
    /// `public_url` without a trailing slash: the `iss` of every token and response.
    pub issuer: String,
}

impl OidcSettings {
    pub fn endpoint(&self, path: &str) -> String {
        format!("{}{path}", self.issuer)
    }
}

/// What the browser brings to `/oidc/authorize` and the sign-in page: who it seems to be.
#[derive(Debug, Clone, Default)]
pub struct Browser {
    pub ip: Option<std::net::IpAddr>,
    pub user_agent: Option<String>,
}

/// An error to send back to the client's registered redirect URI (RFC 6749 §4.1.2.1, with
/// RFC 9207's `iss`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorRedirect {
    pub redirect_uri: String,
    pub state: Option<String>,
    pub error: OAuthError,
    /// Posted back by form (`response_mode=form_post`) rather than in the query.
    pub form_post: bool,
}

/// Where a finished sign-in sends the browser.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// A 303 to this URL (the code flow, and its errors).
    Redirect(String),
    /// A form posted to `action` with `fields` (`response_mode=form_post`).
    FormPost { action: String, fields: Vec<(String, String)> },
}

impl ErrorRedirect {
    /// The answer carrying this error, with `state` and `iss` (RFC 9207).
    pub fn answer(&self, issuer: &str) -> Result<Answer, InternalError> {
        if self.form_post {
            let mut fields = vec![
                ("error".to_owned(), self.error.code.as_str().to_owned()),
                ("error_description".to_owned(), self.error.description.clone()),
            ];
            if let Some(state) = &self.state {
                fields.push(("state".to_owned(), state.clone()));
            }
            fields.push(("iss".to_owned(), issuer.to_owned()));
            return Ok(Answer::FormPost { action: self.redirect_uri.clone(), fields });
        }
        error_location(self, issuer).map(Answer::Redirect)
    }
}

/// Why `/oidc/authorize` did not start a sign-in.
#[derive(Debug)]
pub enum AuthorizeFailure {
    /// Shown on our page and never redirected: the client or redirect URI is not established.
    Page(TargetError),
    /// The pushed request is unknown, used, expired or another client's.
    RequestUri,
    /// The signed request object does not verify (its redirect URI cannot be trusted either).
    RequestObject(OAuthError),
    /// Sent back to the client.
    Redirect(Box<ErrorRedirect>),
    /// The user cannot sign in here now (no factor, push frozen with no passkey, …): said on a
    /// page, with a way back to the client carrying `access_denied`.
    Refused {
        message: String,
        back: Box<ErrorRedirect>,
    },
    Internal(InternalError),
}

impl From<StoreError> for AuthorizeFailure {
    fn from(error: StoreError) -> Self {
        AuthorizeFailure::Internal(InternalError::caused_by("the OIDC store", error))
    }
}

/// A sign-in that began: the browser gets `browser_secret` in its cookie and goes to its page.
#[derive(Debug)]
pub struct Started {
    pub id: AuthorizationId,
    pub browser_secret: String,
    pub expires_at: OffsetDateTime,
}

/// What the sign-in page shows.
#[derive(Debug)]
pub struct SignInView {
    pub id: AuthorizationId,
    pub client_name: String,
    pub username: String,
    pub expires_at: OffsetDateTime,
    pub state: ChallengeState,
    pub factor: PageFactor,
    /// A pending push whose user has a passkey: the page offers "use a passkey instead".
    pub passkey_instead: bool,
    /// The client's redirect URI, where the page's finish form ends up (its policy must allow it).
    pub redirect_uri: String,
}

#[derive(Debug)]
pub enum PageFactor {
    /// The number to type on the phone.
    Push { number: String },
    /// The passkey sign-in's page token (for the page's WebAuthn ceremony).
    Passkey { token: String },
}

/// Why a sign-in page request is refused.
#[derive(Debug, thiserror::Error)]
pub enum SignInError {
    /// Unknown, or not this browser's: the same answer, so ids cannot be probed.
    #[error("this sign-in is not known in this browser: start again from the application")]
    NotFound,
    #[error("this sign-in is over: start again from the application")]
    Finished,
    #[error("the sign-in has not been answered yet")]
    Pending,
    #[error("internal failure")]
    Internal(#[from] InternalError),
}

impl From<StoreError> for SignInError {
    fn from(error: StoreError) -> Self {
        SignInError::Internal(InternalError::caused_by("the OIDC store", error))
    }
}

/// The stored form of a validated request (what the sign-in and the code need of it).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct StoredRequest {
    /// The user as named when the sign-in began.
    username: String,
    /// An upstream hint's `sub`, which the ID token must carry back.
    subject: Option<String>,
    response: ResponseKind,
    amr_values: Vec<String>,
    redirect_uri: String,
    state: Option<String>,
    nonce: Option<String>,
    code_challenge: Option<String>,
    scope: Vec<String>,
    acr_values: Vec<String>,
    acr_essential: bool,
    proof: Proof,
}

/// Who may ask: clients (authenticated at PAR and token) and the upstream issuers whose hints
/// name a user on a client's behalf.
#[derive(Debug)]
pub struct Clients {
    pub auth: ClientAuthenticator,
    pub upstream: UpstreamIssuers,
    /// Fetches the key sets of clients registered with a `jwks_uri` (request objects).
    pub jwks: Arc<ClientJwksFetcher>,
}

/// How users are asked: a number-matched push, or a passkey.
#[derive(Debug)]
pub struct Factors {
    pub challenges: Arc<ChallengeService>,
    pub passkeys: Arc<PasskeyService>,
}

#[derive(Debug)]
pub struct OidcFlow {
    pub(super) store: Arc<dyn Store>,
    pub(super) clock: Arc<dyn Clock>,
    master: Arc<MasterKey>,
    pub(super) keys: Arc<SigningKeys>,
    pub(super) clients: ClientAuthenticator,
    upstream: UpstreamIssuers,
    client_jwks: Arc<ClientJwksFetcher>,
    challenges: Arc<ChallengeService>,
    passkeys: Arc<PasskeyService>,
    pub(super) settings: OidcSettings,
}

impl OidcFlow {
    pub fn new(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        master: Arc<MasterKey>,
        keys: Arc<SigningKeys>,
        clients: Clients,
        factors: Factors,
        settings: OidcSettings,
    ) -> Self {
        let Factors { challenges, passkeys } = factors;
        let Clients { auth: clients, upstream, jwks: client_jwks } = clients;
        Self { store, clock, master, keys, clients, upstream, client_jwks, challenges, passkeys, settings }
    }

    pub fn settings(&self) -> &OidcSettings {
        &self.settings
    }

    /// `POST /oidc/par`: an authenticated client pushes its request; answers the
    /// `request_uri` for the browser and how long it lives.
    pub async fn push(
        &self,
        credentials: &ClientCredentials<'_>,
        params: Params,
    ) -> Result<(String, Duration), OAuthError> {
        let authenticated = self.clients.authenticate(credentials).await.map_err(OAuthError::from)?;
        // A public client proves nothing (its id is public): it may not name whom to prompt, or
        // anyone could push-bomb anyone through it.
        if authenticated.pkce_required {
            return Err(OAuthError::new(
                OAuthErrorCode::UnauthorizedClient,
                "a public client cannot name the user to prompt: push requests with client authentication",
            ));
        }
        let client = authenticated.client;
        if params.get("request_uri").is_some() {
            return Err(OAuthError::invalid_request("a pushed request cannot carry `request_uri`"));
        }
        // A signed request object (RFC 9101) replaces the other parameters (§6.3).
        let params = match params.get("request") {
            Some(jwt) => self.request_object(&client, jwt, &[]).await?,
            None => params,
        };
        if params.get("client_id").is_some_and(|id| id != client.client_id.0) {
            return Err(OAuthError::invalid_request("`client_id` is not the authenticated client"));
        }
        // With HTTP Basic or an assertion the form may not repeat the client id.
        let redirect_uri = params
            .get("redirect_uri")
            .ok_or_else(|| OAuthError::invalid_request(TargetError::MissingRedirectUri.to_string()))?;
        let target = Target { client_id: client.client_id.0.clone(), redirect_uri: redirect_uri.to_owned() };
        if !client.redirect_uri_matches(&target.redirect_uri) {
            return Err(OAuthError::invalid_request("the redirect_uri is not one this client registered"));
        }
        let request = AuthorizationRequest::validate(target, &params)?;
        if request.login_hint.is_none() {
            return Err(OAuthError::invalid_request("name the user to prompt with `login_hint`"));
        }
        let mut stored: serde_json::Map<String, serde_json::Value> = params
            .into_pairs()
            .filter(|(name, _)| !CLIENT_AUTH_PARAMS.contains(&name.as_str()))
            .map(|(name, value)| (name, serde_json::Value::String(value)))
            .collect();
        stored.insert("client_id".into(), serde_json::Value::String(client.client_id.0.clone()));
        let (reference, request_hash) = secret().map_err(|_| OAuthError::server_error())?;
        let now = self.clock.now();
        let pushed = PushedRequest {
            request_hash: request_hash.to_vec(),
            client_id: client.client_id.clone(),
            params: serde_json::Value::Object(stored).to_string(),
            created_at: now,
            expires_at: now + PAR_TTL,
        };
        let event = AuditEvent::new(now, client_actor(&client), Action::OidcRequestPushed, Subject::OidcClient(client.client_id.clone()))
            .with_details(json!({ "client_id": client.client_id.0, "scope": request.scope, "acr_values": request.acr_values }));
        self.store
            .push_authorization_request(&pushed, event)
            .await
            .map_err(|_| OAuthError::server_error())?;
        Ok((format!("{REQUEST_URI_PREFIX}{reference}"), PAR_TTL))
    }

    /// `/oidc/authorize`: resolves the pushed request, prompts the user it names, and begins a
    /// sign-in bound to this browser.
    pub async fn authorize(&self, params: Params, browser: Browser) -> Result<Started, AuthorizeFailure> {
        let client_id = params.get("client_id").ok_or(AuthorizeFailure::Page(TargetError::MissingClient))?;
        let client = self.active_client(client_id).await?;
        // A pushed request (RFC 9126 §4) or a signed request object (RFC 9101 §6.3): only its
        // parameters count, and the client vouched for them.
        let (params, vouched) = match (params.get("request_uri"), params.get("request")) {
            (Some(request_uri), _) => (self.take_pushed(&client, request_uri).await?, true),
            (None, Some(jwt)) => {
                let resolved =
                    self.request_object(&client, jwt, &[]).await.map_err(AuthorizeFailure::RequestObject)?;
                (resolved, true)
            }
            (None, None) => (params, false),
        };
        let target = Target::presented(&params).map_err(AuthorizeFailure::Page)?;
        let target = target
            .clone()
            .check_redirect_uri(client.redirect_uri_matches(&target.redirect_uri))
            .map_err(AuthorizeFailure::Page)?;
        let state = params.get("state").map(str::to_owned);
        let form_post = params.get("response_mode") == Some("form_post");
        let back = |error: OAuthError| {
            Box::new(ErrorRedirect {
                redirect_uri: target.redirect_uri.clone(),
                state: state.clone(),
                error,
                form_post,
            })
        };
        if params.get("request").is_some() || params.get("request_uri").is_some() {
            let error =
                OAuthError::invalid_request("a pushed request or request object cannot carry another");
            return Err(AuthorizeFailure::Redirect(back(error)));
        }
        let request = AuthorizationRequest::validate(target.clone(), &params)
            .map_err(|e| AuthorizeFailure::Redirect(back(e)))?;
        // Only an authenticated request may name whom to prompt: a pushed request's login_hint, or
        // a configured upstream issuer's signed hint. A bare login_hint prompts nobody.
        let (hint, subject) = match (&request.id_token_hint, &request.login_hint, vouched) {
            (Some(id_token_hint), _, _) => match self.upstream_hint(&client, id_token_hint).await? {
                Ok(hint) => (hint.username, Some(hint.subject)),
                Err(reason) => {
                    let error =
                        OAuthError::invalid_request(format!("the id_token_hint is refused ({reason})"));
                    return Err(AuthorizeFailure::Redirect(back(error)));
                }
            },
            (None, Some(hint), true) => (hint.clone(), None),
            _ => {
                let error = OAuthError::invalid_request(format!(
                    "push the request to {PAR_PATH} (client-authenticated) and send its request_uri: this provider prompts only a user the client vouched for"
                ));
                return Err(AuthorizeFailure::Redirect(back(error)));
            }
        };
        let app = self.client_app(&client).await?;
        let refused = |message: &str| AuthorizeFailure::Refused {
            message: message.to_owned(),
            back: back(OAuthError::new(OAuthErrorCode::AccessDenied, message)),
        };
        // Unknown users and users without a usable factor get the same answer.
        const NO_FACTOR: &str = "This account cannot confirm a sign-in here. Ask your help desk.";
        let Some(user) = self.user(&hint).await? else { return Err(refused(NO_FACTOR)) };
        let context = ChallengeContext {
            ip: browser.ip.map(|ip| ip.to_string()),
            user_agent: browser.user_agent.clone(),
            app_name: Some(client.name.clone()),
            location: None,
        };
        let passkey_only = request.factor_policy() == FactorPolicy::PasskeyOnly
            || crate::users::model::passkey_required(&user);
        let (challenge, proof, page_secret) = if passkey_only {
            match self.passkeys.begin_sign_in(&app, &user.username, context).await {
                Ok(begun) => (begun.record, Proof::Passkey, begun.page_token.expose_secret().to_owned()),
                Err(PasskeyError::NoPasskey) => {
                    return Err(refused(
                        "This sign-in needs a passkey, and this account has none. Ask your help desk.",
                    ));
                }
                Err(other) => {
                    return Err(AuthorizeFailure::Internal(InternalError::caused_by(
                        "starting a passkey sign-in",
                        other,
                    )));
                }
            }
        } else {
            match self.challenges.create(&app, &user.username, context.clone(), None).await {
                Ok(created) => (created.record, Proof::NumberMatchedPush, created.number),
                Err(refusal) => {
                    // Push refused (frozen, locked, throttled, no phone): a passkey still works.
                    let why = push_refusal(refusal)?;
                    match self.passkeys.begin_sign_in(&app, &user.username, context).await {
                        Ok(begun) => {
                            (begun.record, Proof::Passkey, begun.page_token.expose_secret().to_owned())
                        }
                        Err(PasskeyError::NoPasskey) => return Err(refused(why)),
                        Err(other) => {
                            return Err(AuthorizeFailure::Internal(InternalError::caused_by(
                                "starting a passkey sign-in",
                                other,
                            )));
                        }
                    }
                }
            }
        };
        let stored = StoredRequest {
            username: user.username.clone(),
            subject,
            response: request.response,
            amr_values: request.amr_values.clone(),
            redirect_uri: request.target.redirect_uri.clone(),
            state: request.state.clone(),
            nonce: request.nonce.clone(),
            code_challenge: request.code_challenge.clone(),
            scope: request.scope.clone(),
            acr_values: request.acr_values.clone(),
            acr_essential: request.acr_essential,
            proof,
        };
        let id = AuthorizationId::random();
        let sealed = self.master.encrypt(&page_secret_context(id), page_secret.as_bytes()).map_err(|e| {
            AuthorizeFailure::Internal(InternalError::caused_by("sealing the page secret", e))
        })?;
        let (browser_secret, browser_hash) = secret().map_err(AuthorizeFailure::Internal)?;
        let now = self.clock.now();
        let record = AuthorizationRecord {
            id,
            client_id: client.client_id.clone(),
            user_id: user.id,
            request: serde_json::to_string(&stored).map_err(|e| {
                AuthorizeFailure::Internal(InternalError::caused_by("storing the request", e))
            })?,
            challenge_id: challenge.id,
            page_secret_sealed: sealed,
            browser_hash: browser_hash.to_vec(),
            created_at: now,
            expires_at: challenge.expires_at,
            finished_at: None,
        };
        let event = AuditEvent::new(now, app.actor(), Action::OidcSignInStarted, Subject::User(user.id))
            .with_details(json!({
                "authorization_id": id,
                "client_id": client.client_id.0,
                "challenge_id": challenge.id,
                "factor": match proof { Proof::Passkey => "passkey", Proof::NumberMatchedPush => "push" },
                "acr_values": request.acr_values,
            }));
        self.store.create_authorization(&record, event).await?;
        Ok(Started { id, browser_secret, expires_at: record.expires_at })
    }

    async fn active_client(&self, client_id: &str) -> Result<Client, AuthorizeFailure> {
        if !ClientId::is_well_formed(client_id) {
            return Err(AuthorizeFailure::Page(TargetError::UnknownClient));
        }
        match self.store.oidc_client(&ClientId(client_id.to_owned())).await? {
            Some(client) if client.is_active() => Ok(client),
            _ => Err(AuthorizeFailure::Page(TargetError::UnknownClient)),
        }
    }

    /// A signed request object (RFC 9101) of `client`, verified with the keys it registered
    /// (`private_key_jwt` clients): `iss` = the client, `aud` = this issuer, `exp` and a
    /// single-use `jti` required (it may name whom to prompt, so it is never replayed). Its
    /// claims become the request's parameters.
    /// `required`: claims the caller's profile demands beyond `exp` and `jti` (CIBA: `iat`,
    /// `nbf`).
    async fn request_object(
        &self,
        client: &Client,
        jwt: &str,
        required: &[&str],
    ) -> Result<Params, OAuthError> {
        let invalid = |why: String| OAuthError::new(OAuthErrorCode::InvalidRequestObject, why);
        let audiences = [self.settings.issuer.as_str()];
        let policy = JwtPolicy {
            algorithms: &ASSERTION_ALGORITHMS,
            issuer: &client.client_id.0,
            audiences: &audiences,
            subject: None,
            typ: None,
            max_lifetime: REQUEST_OBJECT_MAX_LIFETIME,
            leeway: Duration::seconds(30),
            require_jti: true,
            expired_grace: Duration::ZERO,
        };
        if matches!(client.keys, ClientKeys::None) {
            return Err(OAuthError::new(
                OAuthErrorCode::RequestNotSupported,
                "request objects are taken from clients that registered keys (private_key_jwt)",
            ));
        }
        let now = self.clock.now();
        let verified = match self.verify_request_object(client, jwt, &policy, now).await {
            Ok(verified) => verified,
            Err(reason) => {
                let event = AuditEvent::new(
                    now,
                    client_actor(client),
                    Action::OidcRequestObjectRefused,
                    Subject::OidcClient(client.client_id.clone()),
                )
                .with_details(json!({ "client_id": client.client_id.0, "reason": reason }));
                self.store.record_audit(event).await.map_err(|_| OAuthError::server_error())?;
                return Err(invalid(format!("it does not verify: {reason}")));
            }
        };
        // With `sub` = the client it would also pass as a client assertion (RFC 7523 asks for
        // exactly that, with the issuer as an accepted `aud`): whoever's browser carries the
        // object could authenticate as the client and prompt anyone. A request object names
        // no subject.
        if verified.claims.get("sub").and_then(|v| v.as_str()) == Some(client.client_id.0.as_str()) {
            return Err(invalid("a request object must not carry `sub` = the client id".into()));
        }
        if let Some(missing) = required.iter().find(|claim| !verified.claims.contains_key(**claim)) {
            return Err(invalid(format!("it lacks the `{missing}` claim")));
        }
        let jti = verified.jti.clone().unwrap_or_default();
        let replay = AuditEvent::new(
            now,
            client_actor(client),
            Action::OidcRequestObjectRefused,
            Subject::OidcClient(client.client_id.clone()),
        )
        .with_details(json!({ "client_id": client.client_id.0, "reason": "replayed" }));
        let first_use = self
            .store
            .use_client_assertion_jti(
                &client.client_id,
                &jti,
                verified.expires_at + policy.leeway,
                now,
                replay,
            )
            .await
            .map_err(|_| OAuthError::server_error())?;
        if !first_use {
            return Err(invalid("it was used before".into()));
        }
        if verified
            .claims
            .get("client_id")
            .and_then(|v| v.as_str())
            .is_some_and(|id| id != client.client_id.0)
        {
            return Err(invalid("its client_id is not the client's".into()));
        }
        let pairs = verified.claims.into_iter().filter(|(name, _)| !JWT_CLAIMS.contains(&name.as_str())).map(
            |(name, value)| {
                let value = match value {
                    serde_json::Value::String(text) => text,
                    // `claims` is an object, `max_age` a number: as they would be in a form.
                    other => other.to_string(),
                };
                (name, value)
            },
        );
        let mut params = Params::from_pairs(pairs).map_err(|e| invalid(e.to_string()))?;
        params.insert_if_absent("client_id", &client.client_id.0);
        Ok(params)
    }

    /// The request object's signature and claims under `policy`, with the client's keys; the
    /// refusal's reason in a word.
    async fn verify_request_object(
        &self,
        client: &Client,
        jwt: &str,
        policy: &JwtPolicy<'_>,
        now: OffsetDateTime,
    ) -> Result<jose::VerifiedJwt, &'static str> {
        let header = jose::read_header(jwt, policy).map_err(|e| e.reason())?;
        let fetched;
        let keys = match &client.keys {
            ClientKeys::Inline(jwks) => jwks.keys(),
            ClientKeys::Uri(uri) => {
                fetched = self
                    .client_jwks
                    .keys(uri, header.kid.as_deref())
                    .await
                    .map_err(|_| "client_keys_unavailable")?;
                fetched.keys()
            }
            ClientKeys::None => return Err("no_client_keys"),
        };
        jose::verify(jwt, keys, policy, now).map_err(|e| e.reason())
    }

    async fn take_pushed(&self, client: &Client, request_uri: &str) -> Result<Params, AuthorizeFailure> {
        let reference = request_uri.strip_prefix(REQUEST_URI_PREFIX).ok_or(AuthorizeFailure::RequestUri)?;
        let hash = hash_key(reference);
        let pushed = self
            .store
            .take_pushed_request(&hash, &client.client_id, self.clock.now())
            .await?
            .ok_or(AuthorizeFailure::RequestUri)?;
        let stored: serde_json::Map<String, serde_json::Value> = serde_json::from_str(&pushed.params)
            .map_err(|e| {
                AuthorizeFailure::Internal(InternalError::caused_by("reading a pushed request", e))
            })?;
        let pairs = stored
            .into_iter()
            .filter_map(|(name, value)| value.as_str().map(|v| (name.clone(), v.to_owned())));
        Params::from_pairs(pairs)
            .map_err(|e| AuthorizeFailure::Internal(InternalError::caused_by("reading a pushed request", e)))
    }

    async fn user(&self, hint: &str) -> Result<Option<UserRecord>, StoreError> {
        match crate::users::model::normalize_username(hint) {
            Ok(username) => self.store.user_by_username(&username).await,
            Err(_) => Ok(None),
        }
    }

    /// The app a client acts as in the challenge machinery, made on its first sign-in (an app
    /// row with no scopes and a key nobody was ever shown).
    pub(super) async fn client_app(&self, client: &Client) -> Result<AuthenticatedApp, AuthorizeFailure> {
        let name = format!("oidc-client.{}", client.client_id);
        let id = match self.store.oidc_client_app(&client.client_id).await? {
            Some(id) => id,
            None => {
                let details = json!({ "oidc_client": client.client_id.0 });
                let (app, event) = keyless_app(name.clone(), details, self.clock.now()).map_err(|_| {
                    AuthorizeFailure::Internal(InternalError::new(
                        "the system random number generator failed",
                    ))
                })?;
                self.store.create_oidc_client_app(&client.client_id, app, event).await?
            }
        };
        Ok(AuthenticatedApp { id, name: client.name.clone(), scopes: Scopes::default() })
    }

    /// The unfinished sign-in `id` as this browser (holding `browser_secret`) may see it:
    /// unknown and another browser's look alike.
    pub(super) async fn open_sign_in(
        &self,
        id: AuthorizationId,
        browser_secret: Option<&str>,
    ) -> Result<AuthorizationRecord, SignInError> {
        let record = self.store.authorization(id).await?.ok_or(SignInError::NotFound)?;
        let presented = hash_key(browser_secret.unwrap_or_default());
        if !bool::from(presented.as_slice().ct_eq(&record.browser_hash)) {
            return Err(SignInError::NotFound);
        }
        if record.finished_at.is_some() {
            return Err(SignInError::Finished);
        }
        Ok(record)
    }

    /// The client of a sign-in and the app it acts as.
    pub(super) async fn client_of(
        &self,
        record: &AuthorizationRecord,
    ) -> Result<(Client, AuthenticatedApp), SignInError> {
        // A client revoked mid-sign-in gets nothing more: no code, no posted ID token.
        let client = self
            .store
            .oidc_client(&record.client_id)
            .await?
            .filter(Client::is_active)
            .ok_or(SignInError::NotFound)?;
        let app = self.client_app(&client).await.map_err(|_| InternalError::new("the client's app"))?;
        Ok((client, app))
    }

    /// What the sign-in page shows (changes nothing).
    pub async fn sign_in_view(
        &self,
        id: AuthorizationId,
        browser_secret: Option<&str>,
    ) -> Result<SignInView, SignInError> {
        let record = self.open_sign_in(id, browser_secret).await?;
        let stored = stored_request(&record)?;
        let client = self.store.oidc_client(&record.client_id).await?.ok_or(SignInError::NotFound)?;
        let challenge =
            self.store.challenge_by_id(record.challenge_id).await?.ok_or(SignInError::NotFound)?;
        let secret = self
            .master
            .decrypt(&page_secret_context(id), &record.page_secret_sealed)
            .map_err(|e| InternalError::caused_by("opening the page secret", e))?;
        let secret =
            String::from_utf8(secret).map_err(|e| InternalError::caused_by("reading the page secret", e))?;
        let passkey_instead = self.passkey_offered(&record, stored.proof, &challenge).await?;
        let factor = match stored.proof {
            Proof::NumberMatchedPush => PageFactor::Push { number: secret },
            Proof::Passkey => PageFactor::Passkey { token: secret },
        };
        Ok(SignInView {
            passkey_instead,
            redirect_uri: stored.redirect_uri,
            id,
            client_name: client.name,
            username: stored.username,
            expires_at: record.expires_at,
            state: challenge.state,
            factor,
        })
    }

    /// `GET /oidc/sign-in/{id}/status?wait=N`: the challenge's state, once it leaves pending
    /// or after `wait` seconds.
    pub async fn sign_in_status(
        &self,
        id: AuthorizationId,
        browser_secret: Option<&str>,
        wait: u64,
    ) -> Result<ChallengeState, SignInError> {
        let record = self.open_sign_in(id, browser_secret).await?;
        let (_, app) = self.client_of(&record).await?;
        let wait = wait.min(self.challenges.settings().max_wait.as_secs());
        match self.challenges.status(&app, record.challenge_id, wait).await {
            Ok(challenge) => Ok(challenge.state),
            Err(error) => Err(InternalError::caused_by("reading the sign-in's challenge", error).into()),
        }
    }

    /// `POST /oidc/sign-in/{id}/finish`: once the challenge is decided, ends the sign-in and
    /// answers where to send the browser: back to the client with a code (or, for the Entra
    /// profile, a posted ID token) when approved, else with `access_denied`. Exactly once.
    pub async fn finish(
        &self,
        id: AuthorizationId,
        browser_secret: Option<&str>,
    ) -> Result<Answer, SignInError> {
        let record = self.open_sign_in(id, browser_secret).await?;
        let stored = stored_request(&record)?;
        let (client, app) = self.client_of(&record).await?;
        let challenge =
            self.store.challenge_by_id(record.challenge_id).await?.ok_or(SignInError::NotFound)?;
        let now = self.clock.now();
        let denied = |why: &str| ErrorRedirect {
            redirect_uri: stored.redirect_uri.clone(),
            state: stored.state.clone(),
            error: OAuthError::new(OAuthErrorCode::AccessDenied, why),
            form_post: stored.response == ResponseKind::IdToken,
        };
        let outcome = match challenge.state {
            ChallengeState::Pending if challenge.expires_at > now => return Err(SignInError::Pending),
            ChallengeState::Approved => match self.challenges.redeem(&app, challenge.id).await {
                Ok(redeemed) => Ok(redeemed),
                Err(
                    ChallengeError::AlreadyRedeemed
                    | ChallengeError::ApprovalStale
                    | ChallengeError::NotApproved(_),
                ) => Err("the approval could not be used"),
                Err(other) => {
                    return Err(InternalError::caused_by("redeeming the sign-in's approval", other).into());
                }
            },
            ChallengeState::Denied => Err("the sign-in was denied"),
            _ => Err("the sign-in was not answered in time"),
        };
        let proof = stored.proof;
        let outcome = outcome.and_then(|redeemed| {
            // An essential acr the proof does not meet fails the sign-in (OIDC Core §5.5.1.1).
            let met = !stored.acr_essential || stored.acr_values.iter().any(|acr| proof.satisfies(acr));
            if met { Ok(redeemed) } else { Err("the essential acr could not be met") }
        });
        let (answer, code, details) = match outcome {
            Ok(redeemed) => {
                let grant = Grant {
                    username: stored.username.clone(),
                    subject: stored.subject.clone(),
                    redirect_uri: stored.redirect_uri.clone(),
                    code_challenge: stored.code_challenge.clone(),
                    nonce: stored.nonce.clone(),
                    scope: stored.scope.clone(),
                    proof,
                    acr: proof.acr_for(&stored.acr_values),
                    amr: proof.amr_for(&stored.amr_values),
                    auth_time: redeemed.decided_at.unwrap_or(now).unix_timestamp(),
                };
                let details = json!({ "outcome": "approved", "response": stored.response, "acr": grant.acr, "amr": grant.amr });
                match stored.response {
                    ResponseKind::Code => {
                        let (code, code_hash) = secret()?;
                        let record_code = CodeRecord {
                            code_hash: code_hash.to_vec(),
                            authorization_id: id,
                            client_id: client.client_id.clone(),
                            user_id: record.user_id,
                            grant_details: serde_json::to_string(&grant)
                                .map_err(|e| InternalError::caused_by("storing a grant", e))?,
                            created_at: now,
                            expires_at: now + CODE_TTL,
                            redeemed_at: None,
                        };
                        let location = success_location(
                            &stored.redirect_uri,
                            &code,
                            stored.state.as_deref(),
                            &self.settings.issuer,
                        )?;
                        (Answer::Redirect(location), Some(record_code), details)
                    }
                    ResponseKind::IdToken => {
                        let id_token = self.id_token(&client, &grant, record.user_id, now).await?;
                        let mut fields = vec![("id_token".to_owned(), id_token)];
                        if let Some(state) = &stored.state {
                            fields.push(("state".to_owned(), state.clone()));
                        }
                        (Answer::FormPost { action: stored.redirect_uri.clone(), fields }, None, details)
                    }
                }
            }
            Err(why) => (
                denied(why).answer(&self.settings.issuer)?,
                None,
                json!({ "outcome": "access_denied", "reason": why }),
            ),
        };
        let mut details = details;
        details["authorization_id"] = json!(id);
        details["client_id"] = json!(client.client_id.0);
        details["challenge_id"] = json!(challenge.id);
        let event =
            AuditEvent::new(now, app.actor(), Action::OidcSignInFinished, Subject::User(record.user_id))
                .with_details(details);
        match self.store.finish_authorization(id, now, code.as_ref(), event).await {
            Ok(()) => Ok(answer),
            Err(StoreError::NotFound) => Err(SignInError::Finished),
            Err(other) => Err(other.into()),
        }
    }

    /// An ID token for `grant`, signed as the client registered (the Entra profile's answer).
    async fn id_token(
        &self,
        client: &Client,
        grant: &Grant,
        user: crate::ids::UserId,
        now: OffsetDateTime,
    ) -> Result<String, InternalError> {
        let issue = self.issue(client, user, grant, now, String::new());
        self.keys
            .sign(signing_alg(client), ID_TOKEN_TYP, &issue.id_token())
            .await
            .map_err(|e| InternalError::caused_by("signing an ID token", e))
    }

    /// Verifies an upstream issuer's hint on `client`'s request and spends it; the refusal
    /// (audited) says why in a word.
    async fn upstream_hint(
        &self,
        client: &Client,
        hint: &str,
    ) -> Result<Result<super::upstream::Hint, &'static str>, AuthorizeFailure> {
        let now = self.clock.now();
        let verified = match self.upstream.verify(&client.client_id, hint, now).await {
            Ok(verified) => verified,
            Err(error) => {
                let reason = error.reason();
                let event = AuditEvent::new(
                    now,
                    client_actor(client),
                    Action::OidcHintRefused,
                    Subject::OidcClient(client.client_id.clone()),
                )
                .with_details(
                    json!({ "client_id": client.client_id.0, "reason": reason, "cause": error.to_string() }),
                );
                self.store.record_audit(event).await?;
                return Ok(Err(reason));
            }
        };
        if !self.store.use_upstream_hint(&hash_key(signing_input(hint)), verified.usable_until).await? {
            let event = AuditEvent::new(
                now,
                client_actor(client),
                Action::OidcHintRefused,
                Subject::OidcClient(client.client_id.clone()),
            )
            .with_details(
                json!({ "client_id": client.client_id.0, "reason": "replayed", "issuer": verified.issuer }),
            );
            self.store.record_audit(event).await?;
            return Ok(Err("replayed"));
        }
        Ok(Ok(verified))
    }
}

pub(super) fn signing_alg(client: &Client) -> super::keys::SigningAlg {
    match client.id_token_alg {
        super::clients::IdTokenAlg::Es256 => super::keys::SigningAlg::Es256,
        super::clients::IdTokenAlg::Rs256 => super::keys::SigningAlg::Rs256,
    }
}

pub(super) fn client_actor(client: &Client) -> Actor {
    Actor::OidcClient { id: client.client_id.clone() }
}

/// Why a push could not be sent, in words for the page (the challenge machinery has audited
/// it); an internal failure stays one.
fn push_refusal(error: ChallengeError) -> Result<&'static str, AuthorizeFailure> {
    Ok(match error {
        ChallengeError::NoDevice => "This account cannot confirm a sign-in here. Ask your help desk.",
        ChallengeError::PushFrozen { .. } => {
            "Push sign-in is frozen for this account after unanswered or refused prompts. Use a passkey, or ask your help desk."
        }
        ChallengeError::PushLocked => {
            "Push sign-in is locked for this account. Only an administrator can lift it."
        }
        ChallengeError::PasskeyRequired => {
            "This account signs in with a passkey only, and has none. Ask your help desk."
        }
        ChallengeError::PushRateLimited { .. } | ChallengeError::SourceRateLimited { .. } => {
            "Too many sign-in prompts right now. Wait a few minutes and try again."
        }
        other => {
            return Err(AuthorizeFailure::Internal(InternalError::caused_by(
                "creating a push challenge",
                other,
            )));
        }
    })
}

fn stored_request(record: &AuthorizationRecord) -> Result<StoredRequest, SignInError> {
    Ok(serde_json::from_str(&record.request)
        .map_err(|e| InternalError::caused_by("reading a stored request", e))?)
}

fn page_secret_context(id: AuthorizationId) -> Vec<u8> {
    format!("countersign/v1/oidc-page-secret/{id}").into_bytes()
}

/// A JWS's `header.payload`, what its signature covers. A token is spent by this, not by its
/// whole text: ECDSA signatures are malleable (`s` → `n - s` verifies too), so the same hint
/// can be presented with other signature bytes.
fn signing_input(token: &str) -> &str {
    token.rsplit_once('.').map_or(token, |(input, _)| input)
}

/// 256 random bits, URL-safe, and their SHA-256 (what is stored): made and hashed as API keys
/// are.
pub(super) fn secret() -> Result<(String, [u8; 32]), InternalError> {
    let text = random_urlsafe(&SystemRandom::new(), 32)
        .map_err(|_| InternalError::new("the system random number generator failed"))?;
    let hash = hash_key(&text);
    Ok((text, hash))
}

/// `redirect_uri` with `params` added to its query (it may have one already).
fn with_query(redirect_uri: &str, params: &[(&str, &str)]) -> Result<String, InternalError> {
    let mut url = url::Url::parse(redirect_uri)
        .map_err(|e| InternalError::caused_by("a registered redirect URI", e))?;
    {
        let mut query = url.query_pairs_mut();
        for (name, value) in params {
            query.append_pair(name, value);
        }
    }
    Ok(url.into())
}

fn success_location(
    redirect_uri: &str,
    code: &str,
    state: Option<&str>,
    issuer: &str,
) -> Result<String, InternalError> {
    let mut params = vec![("code", code)];
    if let Some(state) = state {
        params.push(("state", state));
    }
    params.push(("iss", issuer));
    with_query(redirect_uri, &params)
}

/// Where an error goes back to the client: `error`, `error_description`, `state`, `iss`.
pub fn error_location(redirect: &ErrorRedirect, issuer: &str) -> Result<String, InternalError> {
    let mut params = vec![
        ("error", redirect.error.code.as_str()),
        ("error_description", redirect.error.description.as_str()),
    ];
    if let Some(state) = &redirect.state {
        params.push(("state", state));
    }
    params.push(("iss", issuer));
    with_query(&redirect.redirect_uri, &params)
}
