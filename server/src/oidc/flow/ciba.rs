//! Decoupled sign-in: OpenID Connect Client-Initiated Backchannel Authentication (CIBA Core
//! 1.0), poll and ping modes, with number matching.
//!
//! A registered CIBA client (`countersign clients create --ciba poll|ping`) authenticates at
//! `POST /oidc/ciba` exactly as at the token endpoint and names the user with exactly one of
//! `login_hint` or `id_token_hint` (an ID token this provider issued to it; `login_hint_token`
//! is not supported). The user's phone gets a number-matched push; **the number is shown on
//! the consumption device, never on the phone**: a `binding_message` of exactly the configured
//! number of digits is that number (refused if the user saw it lately, so a client cannot pin
//! one), otherwise Countersign draws one and answers it as `countersign_number`, an extension
//! member of the acknowledgement (§7.3 lets clients ignore members they do not know) for the
//! client to display. Any other `binding_message` (≤ 64 characters, no control or
//! bidirectional-override characters) is shown on the phone after the client's name.
//!
//! The acknowledgement is the same whoever is named: an unknown user, one without a device, or
//! one whose push is frozen, locked or throttled gets an `auth_req_id` like anyone, whose first
//! token request answers `access_denied` (the audit trail says why). Every prompt is created
//! through the challenge machinery as the client's app, so the push budget, the fatigue ladder
//! (a wrong number is a terminal denial it counts), silent mode and spray detection apply as
//! for REST prompts.
//!
//! Poll (§7.3, §10.1, §11): `grant_type=urn:openid:params:grant-type:ciba` at `/oidc/token`
//! answers `authorization_pending` until the user answers, `slow_down` (and 5 s more interval
//! from then on) to a request sooner than the interval, `expired_token`, `access_denied`, or
//! the tokens — once. Ping (§10.2): when the challenge is decided (or at once for a request
//! nobody was prompted for), the callback outbox POSTs `{"auth_req_id"}` to the client's
//! registered notification endpoint with its `client_notification_token` as bearer, retrying
//! until the request expires; the client then fetches the tokens the same way.
//!
//! A request that prompted its user is an `oidc_authorizations` sign-in with no browser (its
//! browser hash is of a secret nobody was given), so the code flow's pages cannot reach it;
//! redeeming it stores a code already used, which userinfo and replay revocation read as for
//! the code flow.

use ring::rand::SystemRandom;
use serde_json::json;
use time::{Duration, OffsetDateTime};

use super::{OidcFlow, client_actor, page_secret_context, secret};
use crate::audit::{Action, AuditEvent, Subject};
use crate::callbacks::{CallbackSecret, seal};
use crate::challenges::model::ChallengeState;
use crate::challenges::service::{ChallengeContext, ChallengeError, CreatedChallenge, PromptOptions};
use crate::ids::{AuthorizationId, UserId};
use crate::oidc::authorization::{self, MAX_HINT_LEN, Params};
use crate::oidc::client_auth::ClientCredentials;
use crate::oidc::clients::{CibaDelivery, Client};
use crate::oidc::jose::{self, JwtPolicy};
use crate::oidc::oauth_error::{OAuthError, OAuthErrorCode};
use crate::oidc::token::{TokenResponse, invalid_grant};
use crate::oidc::tokens::{Grant, ID_TOKEN_TYP, Proof};
use crate::store::{
    AuthorizationRecord, CallbackJob, CallbackKind, CibaRequestRecord, CodeRecord, StoreError, UserRecord,
};

/// The backchannel authentication endpoint.
pub const CIBA_PATH: &str = "/oidc/ciba";
/// The CIBA grant type at the token endpoint (§10.1).
pub const CIBA_GRANT_TYPE: &str = "urn:openid:params:grant-type:ciba";
/// Seconds a client leaves between token requests (§7.3: clients assume 5 when it is absent).
const CIBA_INTERVAL_SECS: i32 = 5;
/// What a `slow_down` adds to the interval, for that and every later request (§11).
const SLOW_DOWN_STEP_SECS: i32 = 5;
/// Longest `binding_message`, in bytes (the phone's app line is 128 bytes: the client's
/// registered name always keeps the rest).
const MAX_BINDING_MESSAGE_BYTES: usize = 64;
/// Longest `client_notification_token` (§7.1: "MUST NOT exceed 1024 characters").
pub const MAX_NOTIFICATION_TOKEN_LEN: usize = 1024;
/// The shortest request lifetime granted, whatever `requested_expiry` says.
const MIN_EXPIRY: Duration = Duration::seconds(10);
/// How long a request outlives its prompt: an approval in the prompt's last seconds can still
/// be fetched one interval later, and a late poll is told `expired_token`, not `invalid_grant`.
const REDEEM_GRACE: Duration = Duration::seconds(30);
/// Clock difference between instances tolerated before a poll counts as too soon.
const POLL_LEEWAY: Duration = Duration::seconds(1);
/// How old an expired ID token may be and still name the user as `id_token_hint`.
const ID_TOKEN_HINT_MAX_AGE: Duration = Duration::days(7);
/// What may come beside a signed request (§7.1.1): the request and client authentication.
const BESIDE_SIGNED_REQUEST: [&str; 5] =
    ["request", "client_id", "client_secret", "client_assertion", "client_assertion_type"];

/// What `/oidc/ciba` answers (CIBA Core §7.3).
#[derive(Debug, Clone, serde::Serialize)]
pub struct CibaAcknowledgement {
    pub auth_req_id: String,
    /// Seconds until the request expires.
    pub expires_in: i64,
    /// Seconds the client leaves between token requests.
    pub interval: i32,
    /// Countersign's extension: the number the consumption device must show, when the client
    /// did not send its own as `binding_message`. The user types it on the phone.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub countersign_number: Option<String>,
}

/// What a CIBA sign-in keeps of its request.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct CibaStored {
    username: String,
    scope: Vec<String>,
    acr_values: Vec<String>,
    amr_values: Vec<String>,
}

/// How the user is named.
enum Hint<'a> {
    Login(&'a str),
    IdToken(&'a str),
}

/// What the `binding_message` is.
#[derive(Debug, PartialEq, Eq)]
enum Binding {
    /// The number the consumption device shows.
    Number(String),
    /// Text shown on the phone beside the client's name; Countersign draws the number.
    Message(String),
    None,
}

fn invalid_binding(description: impl Into<String>) -> OAuthError {
    OAuthError::new(OAuthErrorCode::InvalidBindingMessage, description)
}

fn binding(params: &Params, digits: u8) -> Result<Binding, OAuthError> {
    let Some(message) = params.get("binding_message") else { return Ok(Binding::None) };
    if message.is_empty()
        || message.len() > MAX_BINDING_MESSAGE_BYTES
        || message.trim() != message
        || message.chars().any(countersign_mobile_protocol::is_forbidden_in_text)
    {
        return Err(invalid_binding(format!(
            "`binding_message` must be plain text of at most {MAX_BINDING_MESSAGE_BYTES} bytes: no control, direction or invisible characters, no outer spaces"
        )));
    }
    // Exactly the configured digits: the number the user types. Other text, digits of another
    // length included (an order number), is shown on the phone, and we draw the number.
    if message.len() == usize::from(digits) && message.bytes().all(|b| b.is_ascii_digit()) {
        return Ok(Binding::Number(message.to_owned()));
    }
    Ok(Binding::Message(message.to_owned()))
}

/// RFC 6750 §2.1 `b64token`: `1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="`.
fn is_b64token(token: &str) -> bool {
    let body = token.trim_end_matches('=');
    !body.is_empty()
        && body
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'+' | b'/'))
}

fn notification_token(params: &Params, delivery: &CibaDelivery) -> Result<Option<String>, OAuthError> {
    let token = params.get("client_notification_token");
    match (delivery, token) {
        (CibaDelivery::Poll, None) => Ok(None),
        (CibaDelivery::Poll, Some(_)) => Err(OAuthError::invalid_request(
            "`client_notification_token` is for ping mode; this client is registered for poll",
        )),
        (CibaDelivery::Ping { .. }, None) => {
            Err(OAuthError::invalid_request("a ping-mode client must send `client_notification_token`"))
        }
        (CibaDelivery::Ping { .. }, Some(token)) if token.len() > MAX_NOTIFICATION_TOKEN_LEN => {
            Err(OAuthError::invalid_request(format!(
                "`client_notification_token` is longer than {MAX_NOTIFICATION_TOKEN_LEN} characters"
            )))
        }
        (CibaDelivery::Ping { .. }, Some(token)) if !is_b64token(token) => Err(OAuthError::invalid_request(
            "`client_notification_token` must be an RFC 6750 bearer token (b64token characters)",
        )),
        (CibaDelivery::Ping { .. }, Some(token)) => Ok(Some(token.to_owned())),
    }
}

/// The lifetime granted: `requested_expiry` (a positive integer of seconds) within
/// `[MIN_EXPIRY, longest]`, else the longest (the challenge TTL).
fn expiry(params: &Params, longest: Duration) -> Result<Duration, OAuthError> {
    let Some(raw) = params.get("requested_expiry") else { return Ok(longest) };
    let seconds = raw.parse::<u32>().ok().filter(|s| *s > 0).ok_or_else(|| {
        OAuthError::invalid_request("`requested_expiry` must be a positive integer of seconds")
    })?;
    Ok(Duration::seconds(i64::from(seconds)).clamp(MIN_EXPIRY.min(longest), longest))
}

fn hint(params: &Params) -> Result<Hint<'_>, OAuthError> {
    let named = ["login_hint", "id_token_hint", "login_hint_token"]
        .into_iter()
        .filter(|name| params.get(name).is_some())
        .count();
    if named != 1 {
        return Err(OAuthError::invalid_request(
            "name the user with exactly one of `login_hint` and `id_token_hint`",
        ));
    }
    if params.get("login_hint_token").is_some() {
        return Err(OAuthError::invalid_request(
            "`login_hint_token` is not supported: send `login_hint` or `id_token_hint`",
        ));
    }
    if let Some(login) = authorization::bounded(params, "login_hint", MAX_HINT_LEN)? {
        return Ok(Hint::Login(login));
    }
    let token = authorization::bounded(params, "id_token_hint", MAX_HINT_LEN)?.unwrap_or_default();
    Ok(Hint::IdToken(token))
}

/// What the phone shows as the app: the client's registered name, then its binding message
/// (at most 64 bytes), within the protocol's 128 bytes. The name is the part the user can
/// trust, so it is never pushed out: a long name is cut to the room the message leaves.
fn shown_app_name(client: &str, message: Option<&str>) -> String {
    let Some(message) = message else { return client.to_owned() };
    let room = countersign_mobile_protocol::limits::MAX_APP_NAME_LEN.saturating_sub(message.len() + 2);
    let name = countersign_mobile_protocol::sanitize_display_text(client, room);
    format!("{}: {message}", name.trim_end())
}

/// Why nobody was prompted, in a word for the audit trail; an internal failure stays one.
fn refusal_reason(error: ChallengeError) -> Result<&'static str, OAuthError> {
    Ok(match error {
        ChallengeError::NoDevice => "no_device",
        ChallengeError::PushFrozen { .. } => "push_frozen",
        ChallengeError::PushLocked => "push_locked",
        ChallengeError::PasskeyRequired => "passkey_required",
        ChallengeError::PushRateLimited { .. } => "push_rate_limited",
        ChallengeError::SourceRateLimited { .. } => "source_rate_limited",
        // Said as a refusal, not as `invalid_binding_message`: only a user with a device has
        // recent numbers, so saying it would tell the client the user exists.
        ChallengeError::NumberRecentlyUsed => "number_recently_used",
        ChallengeError::InvalidInput(message) => return Err(invalid_binding(message)),
        other => return Err(OAuthError::internal(other)),
    })
}

/// A validated backchannel request: who asks, for whom, and how the answer travels.
struct Ask<'a> {
    client: Client,
    delivery: CibaDelivery,
    scope: Vec<String>,
    acr_values: Vec<String>,
    amr_values: Vec<String>,
    hint: Hint<'a>,
    binding: Binding,
    notification_token: Option<String>,
    lifetime: Duration,
}

impl OidcFlow {
    /// `POST /oidc/ciba`: an authenticated CIBA client asks to authenticate a user.
    /// `requester` is the address the request came from (audited).
    pub async fn backchannel(
        &self,
        credentials: &ClientCredentials<'_>,
        params: Params,
        requester: Option<std::net::IpAddr>,
    ) -> Result<CibaAcknowledgement, OAuthError> {
        let authenticated = self.clients.authenticate(credentials).await.map_err(OAuthError::from)?;
        let client = authenticated.client;
        let delivery = match (&client.ciba, authenticated.pkce_required) {
            (Some(delivery), false) => delivery.clone(),
            _ => {
                return Err(OAuthError::new(
                    OAuthErrorCode::UnauthorizedClient,
                    "this client is not registered for CIBA (`countersign clients create --ciba poll|ping`)",
                ));
            }
        };
        let params = self.backchannel_params(&client, params).await?;
        let ask = self.validate_ask(client, delivery, &params)?;
        let app = self.client_app(&ask.client).await.map_err(|e| OAuthError::internal(format!("{e:?}")))?;
        let now = self.clock.now();
        let chosen = match &ask.binding {
            Binding::Number(number) => Some(number.clone()),
            _ => None,
        };
        let prompted = self.prompt(&app, &ask, chosen.clone(), now).await?;
        let shown_number = match (&chosen, &prompted) {
            (Some(_), _) => None,
            (None, Ok((created, _))) => Some(created.number.clone()),
            // Nobody was prompted: a number all the same, so the answer looks alike.
            (None, Err(_)) => Some(
                crate::challenges::model::draw_number(
                    self.challenges.settings().number_digits,
                    &SystemRandom::new(),
                    |_| false,
                )
                .map_err(|_| OAuthError::internal("the system random number generator failed"))?,
            ),
        };
        // When the prompt ends: its challenge's expiry, or (nobody prompted) when it would have.
        let deadline = prompted.as_ref().map_or(now + ask.lifetime, |(created, _)| created.record.expires_at);
        let stored = self.store_ask(&ask, &prompted, chosen.is_some(), requester, now, deadline).await;
        if let Err(error) = stored {
            // Nobody can fetch what this prompt decides: take it back from the phone.
            if let Ok((created, _)) = &prompted
                && let Err(cancel) = self.challenges.cancel(&app, created.record.id).await
            {
                tracing::error!(error = %cancel, "a CIBA prompt whose request was not stored could not be cancelled");
            }
            return Err(error);
        }
        let auth_req_id = stored?;
        Ok(CibaAcknowledgement {
            auth_req_id,
            expires_in: (deadline - now).whole_seconds().max(1),
            interval: CIBA_INTERVAL_SECS,
            countersign_number: shown_number,
        })
    }

    /// The request's parameters: as sent, or (§7.1.1) those inside its signed `request`, with
    /// only client authentication beside it. A refused signed request is `invalid_request`
    /// here (§13 has no request-object errors).
    async fn backchannel_params(&self, client: &Client, params: Params) -> Result<Params, OAuthError> {
        if params.get("request_uri").is_some() {
            return Err(OAuthError::invalid_request("`request_uri` is not supported here: send `request`"));
        }
        let Some(jwt) = params.get("request") else { return Ok(params) };
        if let Some(name) = params.names().find(|name| !BESIDE_SIGNED_REQUEST.contains(name)) {
            return Err(OAuthError::invalid_request(format!(
                "with a signed request every parameter goes inside it; `{name}` came beside it"
            )));
        }
        let inner = self.request_object(client, jwt, &["iat", "nbf"]).await.map_err(|error| {
            OAuthError::invalid_request(format!("the signed request is refused: {}", error.description))
        })?;
        if inner.get("request").is_some() || inner.get("request_uri").is_some() {
            return Err(OAuthError::invalid_request("a signed request cannot carry another"));
        }
        Ok(inner)
    }

    fn validate_ask<'a>(
        &self,
        client: Client,
        delivery: CibaDelivery,
        params: &'a Params,
    ) -> Result<Ask<'a>, OAuthError> {
        if params.get("client_id").is_some_and(|id| id != client.client_id.0) {
            return Err(OAuthError::invalid_request("`client_id` is not the authenticated client"));
        }
        let scope = authorization::scope(params)?;
        let (acr_values, acr_essential, amr_values) = authorization::acr(params)?;
        if acr_essential && !acr_values.iter().any(|acr| Proof::NumberMatchedPush.satisfies(acr)) {
            return Err(OAuthError::invalid_request(
                "a decoupled sign-in here is a number-matched push: the essential `acr` cannot be met",
            ));
        }
        if params.get("user_code").is_some() {
            return Err(OAuthError::invalid_request("`user_code` is not supported here"));
        }
        let settings = self.challenges.settings();
        Ok(Ask {
            hint: hint(params)?,
            binding: binding(params, settings.number_digits)?,
            notification_token: notification_token(params, &delivery)?,
            lifetime: expiry(params, settings.ttl)?,
            client,
            delivery,
            scope,
            acr_values,
            amr_values,
        })
    }

    /// Prompts the user the request names, as the client's app: the challenge and its user,
    /// or why nobody was prompted. Unknown users go the same way as users without a device (the
    /// challenge machinery's one read), so the two cannot be told apart, not even by time.
    async fn prompt(
        &self,
        app: &crate::api_keys::service::AuthenticatedApp,
        ask: &Ask<'_>,
        number: Option<String>,
        now: OffsetDateTime,
    ) -> Result<Result<(CreatedChallenge, UserRecord), &'static str>, OAuthError> {
        let username = match &ask.hint {
            Hint::Login(name) => (*name).to_owned(),
            Hint::IdToken(token) => match self.id_token_hint_user(&ask.client, token).await? {
                Some(user) => user.username,
                None => return Ok(Err("no_device")),
            },
        };
        let message = match &ask.binding {
            Binding::Message(message) => Some(message.as_str()),
            _ => None,
        };
        let context = ChallengeContext {
            ip: None,
            user_agent: None,
            app_name: Some(shown_app_name(&ask.client.name, message)),
            location: None,
        };
        let options = PromptOptions {
            number,
            expires_at: Some(now + ask.lifetime),
            idempotency_key: None,
            // Clients sit behind proxies: the client itself is the source spray detection counts.
            source: Some(format!("oidc-client:{}", ask.client.client_id)),
        };
        let created = match self.challenges.create_with(app, &username, context, options).await {
            Ok(created) => created,
            Err(error) => return Ok(Err(refusal_reason(error)?)),
        };
        match self.store.user_by_id(created.record.user_id).await.map_err(OAuthError::internal)? {
            Some(user) => Ok(Ok((created, user))),
            None => Err(OAuthError::internal("a prompted user vanished")),
        }
    }

    /// Stores the request (its sign-in when a prompt was sent, its ping in ping mode) with its
    /// audit event, in one transaction; answers the `auth_req_id`.
    async fn store_ask(
        &self,
        ask: &Ask<'_>,
        prompted: &Result<(CreatedChallenge, UserRecord), &'static str>,
        number_chosen: bool,
        requester: Option<std::net::IpAddr>,
        now: OffsetDateTime,
        deadline: OffsetDateTime,
    ) -> Result<String, OAuthError> {
        let client = &ask.client;
        let (auth_req_id, request_hash) = secret().map_err(OAuthError::internal)?;
        // The request outlives its prompt a little: an approval in the prompt's last seconds
        // can still be fetched, and a late poll learns `expired_token`.
        let expires_at = deadline + REDEEM_GRACE;
        let sign_in = match prompted {
            Ok((created, user)) => {
                let stored = CibaStored {
                    username: user.username.clone(),
                    scope: ask.scope.clone(),
                    acr_values: ask.acr_values.clone(),
                    amr_values: ask.amr_values.clone(),
                };
                Some(self.ciba_sign_in(client, user, created.record.id, &stored, now, expires_at)?)
            }
            Err(_) => None,
        };
        let refusal = prompted.as_ref().err().map(|reason| (*reason).to_owned());
        let record = CibaRequestRecord {
            request_hash: request_hash.to_vec(),
            client_id: client.client_id.clone(),
            authorization_id: sign_in.as_ref().map(|s| s.id),
            refusal: refusal.clone(),
            interval_secs: CIBA_INTERVAL_SECS,
            // The first request may come at once: a ping client asks only after its ping.
            next_poll_at: now,
            created_at: now,
            expires_at,
            redeemed_at: None,
        };
        let challenge_id = prompted.as_ref().ok().map(|(created, _)| created.record.id);
        let ping = match (&ask.delivery, &ask.notification_token) {
            (CibaDelivery::Ping { notification_endpoint }, Some(bearer)) => {
                let id = uuid::Uuid::new_v4();
                let secret =
                    CallbackSecret { bearer: bearer.clone(), auth_req_id: Some(auth_req_id.clone()) };
                Some(CallbackJob {
                    id,
                    kind: CallbackKind::CibaPing,
                    challenge_id,
                    url: notification_endpoint.clone(),
                    sealed: seal(&self.master, id, &secret).map_err(OAuthError::internal)?,
                    created_at: now,
                    // Nobody prompted: pinged when a prompt would have ended unanswered.
                    not_before: if challenge_id.is_some() { now } else { deadline },
                    expires_at,
                })
            }
            _ => None,
        };
        let subject = match prompted {
            Ok((_, user)) => Subject::User(user.id),
            Err(_) => Subject::OidcClient(client.client_id.clone()),
        };
        let message = match &ask.binding {
            Binding::Message(message) => Some(message.as_str()),
            _ => None,
        };
        let event = AuditEvent::new(now, client_actor(client), Action::OidcCibaRequested, subject)
            .with_details(json!({
                "client_id": client.client_id.0,
                "mode": ask.delivery.mode(),
                "challenge_id": challenge_id,
                "refusal": refusal,
                "number_from": if number_chosen { "binding_message" } else { "countersign" },
                "binding_message": message,
                "scope": ask.scope,
                "acr_values": ask.acr_values,
                "expires_at": deadline.unix_timestamp(),
                "requester_ip": requester.map(|ip| ip.to_string()),
            }));
        self.store
            .create_ciba_request(&record, sign_in.as_ref(), ping.as_ref(), event)
            .await
            .map_err(OAuthError::internal)?;
        Ok(auth_req_id)
    }

    /// The sign-in a CIBA request's challenge answers: no browser can open it.
    fn ciba_sign_in(
        &self,
        client: &Client,
        user: &UserRecord,
        challenge: crate::ids::ChallengeId,
        stored: &CibaStored,
        now: OffsetDateTime,
        expires_at: OffsetDateTime,
    ) -> Result<AuthorizationRecord, OAuthError> {
        let id = AuthorizationId::random();
        // No page shows it: sealed empty (the column holds a page's number or token).
        let page_secret_sealed =
            self.master.encrypt(&page_secret_context(id), b"").map_err(OAuthError::internal)?;
        // The hash of a secret nobody is given: no cookie matches it.
        let (_, browser_hash) = secret().map_err(OAuthError::internal)?;
        Ok(AuthorizationRecord {
            id,
            client_id: client.client_id.clone(),
            user_id: user.id,
            request: serde_json::to_string(stored).map_err(OAuthError::internal)?,
            challenge_id: challenge,
            page_secret_sealed,
            browser_hash: browser_hash.to_vec(),
            created_at: now,
            expires_at,
            finished_at: None,
        })
    }

    /// The user an `id_token_hint` names: an ID token this provider signed for this client,
    /// perhaps expired (up to a week). One that does not verify is the client's mistake; one
    /// whose user is gone names nobody (the same acknowledgement as an unknown user).
    async fn id_token_hint_user(
        &self,
        client: &Client,
        token: &str,
    ) -> Result<Option<UserRecord>, OAuthError> {
        let jwks = self.own_keys().await?;
        let audiences = [client.client_id.0.as_str()];
        let policy = JwtPolicy {
            algorithms: &[jsonwebtoken::Algorithm::ES256, jsonwebtoken::Algorithm::RS256],
            issuer: &self.settings.issuer,
            audiences: &audiences,
            subject: None,
            typ: Some(ID_TOKEN_TYP),
            max_lifetime: self.keys.timings().id_token_lifetime,
            leeway: Duration::seconds(30),
            require_jti: false,
            expired_grace: ID_TOKEN_HINT_MAX_AGE,
        };
        let verified = jose::verify(token, &jwks, &policy, self.clock.now()).map_err(|error| {
            OAuthError::invalid_request(format!(
                "the `id_token_hint` is not an ID token issued here to this client: {error}"
            ))
        })?;
        let Some(id) = verified.claim_str("sub").and_then(|sub| sub.parse::<uuid::Uuid>().ok()) else {
            return Ok(None);
        };
        self.store.user_by_id(UserId(id)).await.map_err(OAuthError::internal)
    }

    /// The CIBA grant at `/oidc/token` (§10.1, §11), for an authenticated client.
    pub(in crate::oidc) async fn ciba_token(
        &self,
        client: &Client,
        form: &Params,
    ) -> Result<TokenResponse, OAuthError> {
        if client.ciba.is_none() {
            return Err(OAuthError::new(
                OAuthErrorCode::UnauthorizedClient,
                "this client is not registered for CIBA",
            ));
        }
        let auth_req_id = form
            .get("auth_req_id")
            .ok_or_else(|| OAuthError::invalid_request("`auth_req_id` is required"))?;
        let request_hash = crate::api_keys::hash_key(auth_req_id);
        let Some(request) = self.store.ciba_request(&request_hash).await.map_err(OAuthError::internal)?
        else {
            return Err(invalid_grant("the auth_req_id is unknown or expired"));
        };
        if request.client_id != client.client_id {
            self.refuse_ciba(client, &request, "another_client").await?;
            return Err(invalid_grant("the auth_req_id was not issued to this client"));
        }
        if request.redeemed_at.is_some() {
            self.refuse_ciba(client, &request, "redeemed").await?;
            return Err(invalid_grant("the auth_req_id was already used"));
        }
        let now = self.clock.now();
        if request.expires_at <= now {
            return Err(OAuthError::new(OAuthErrorCode::ExpiredToken, "the request expired: start again"));
        }
        let denied = || OAuthError::new(OAuthErrorCode::AccessDenied, "the user did not approve the sign-in");
        let expired =
            || OAuthError::new(OAuthErrorCode::ExpiredToken, "the user did not answer in time: start again");
        let Some(sign_in_id) = request.authorization_id else {
            // Nobody was prompted: it answers as a prompt nobody answers would.
            return Err(if now < request.expires_at - REDEEM_GRACE {
                self.pending(&request, now).await
            } else {
                expired()
            });
        };
        let sign_in = self
            .store
            .authorization(sign_in_id)
            .await
            .map_err(OAuthError::internal)?
            .ok_or_else(|| OAuthError::internal("a CIBA request lost its sign-in"))?;
        let challenge = self
            .store
            .challenge_by_id(sign_in.challenge_id)
            .await
            .map_err(OAuthError::internal)?
            .ok_or_else(|| OAuthError::internal("a CIBA sign-in lost its challenge"))?;
        match challenge.state {
            ChallengeState::Pending if challenge.expires_at > now => Err(self.pending(&request, now).await),
            ChallengeState::Pending | ChallengeState::Expired => Err(OAuthError::new(
                OAuthErrorCode::ExpiredToken,
                "the user did not answer in time: start again",
            )),
            ChallengeState::Approved => self.redeem_ciba(client, &request, &sign_in, now).await,
            ChallengeState::Redeemed => Err(invalid_grant("the approval was already used")),
            ChallengeState::Denied
            | ChallengeState::DeniedWrongNumber
            | ChallengeState::Reported
            | ChallengeState::Cancelled => Err(denied()),
        }
    }

    /// Not decided yet: the answer is `authorization_pending`, or `slow_down` (and a longer
    /// interval from now on) to a client asking sooner than its interval.
    async fn pending(&self, request: &CibaRequestRecord, now: OffsetDateTime) -> OAuthError {
        let too_soon = now + POLL_LEEWAY < request.next_poll_at;
        let interval = if too_soon {
            request.interval_secs.saturating_add(SLOW_DOWN_STEP_SECS)
        } else {
            request.interval_secs
        };
        let next = now + Duration::seconds(i64::from(interval));
        if let Err(error) = self.store.ciba_polled(&request.request_hash, next, interval).await {
            return OAuthError::internal(error);
        }
        if too_soon {
            OAuthError::new(
                OAuthErrorCode::SlowDown,
                format!(
                    "polled sooner than the interval: wait {interval} seconds between requests from now on"
                ),
            )
        } else {
            OAuthError::new(OAuthErrorCode::AuthorizationPending, "the user has not answered yet")
        }
    }

    async fn redeem_ciba(
        &self,
        client: &Client,
        request: &CibaRequestRecord,
        sign_in: &AuthorizationRecord,
        now: OffsetDateTime,
    ) -> Result<TokenResponse, OAuthError> {
        let app = self.client_app(client).await.map_err(|e| OAuthError::internal(format!("{e:?}")))?;
        let redeemed = match self.challenges.redeem(&app, sign_in.challenge_id).await {
            Ok(redeemed) => redeemed,
            Err(
                ChallengeError::AlreadyRedeemed
                | ChallengeError::ApprovalStale
                | ChallengeError::NotApproved(_),
            ) => {
                return Err(invalid_grant("the approval could not be used"));
            }
            Err(other) => return Err(OAuthError::internal(other)),
        };
        let stored: CibaStored = serde_json::from_str(&sign_in.request).map_err(OAuthError::internal)?;
        let proof = Proof::NumberMatchedPush;
        let grant = Grant {
            username: stored.username,
            subject: None,
            redirect_uri: String::new(),
            code_challenge: None,
            nonce: None,
            scope: stored.scope,
            proof,
            acr: proof.acr_for(&stored.acr_values),
            amr: proof.amr_for(&stored.amr_values),
            auth_time: redeemed.decided_at.unwrap_or(now).unix_timestamp(),
        };
        let (_, code_hash) = secret().map_err(OAuthError::internal)?;
        let code = CodeRecord {
            code_hash: code_hash.to_vec(),
            authorization_id: sign_in.id,
            client_id: client.client_id.clone(),
            user_id: sign_in.user_id,
            grant_details: serde_json::to_string(&grant).map_err(OAuthError::internal)?,
            created_at: now,
            expires_at: now + super::CODE_TTL,
            redeemed_at: None,
        };
        let (response, token) =
            self.mint(client, sign_in.user_id, &grant, code.code_hash.clone(), now).await?;
        let event = AuditEvent::new(
            now,
            client_actor(client),
            Action::OidcTokensIssued,
            Subject::User(sign_in.user_id),
        )
        .with_details(json!({
            "client_id": client.client_id.0,
            "authorization_id": sign_in.id,
            "challenge_id": sign_in.challenge_id,
            "grant_type": CIBA_GRANT_TYPE,
            "acr": grant.acr,
            "amr": grant.amr,
            "scope": grant.scope,
        }));
        match self
            .store
            .redeem_ciba_request(&request.request_hash, &client.client_id, now, &code, &token, event)
            .await
        {
            Ok(()) => Ok(response),
            Err(StoreError::NotFound) => Err(invalid_grant("the auth_req_id was already used")),
            Err(other) => Err(OAuthError::internal(other)),
        }
    }

    async fn refuse_ciba(
        &self,
        client: &Client,
        request: &CibaRequestRecord,
        reason: &str,
    ) -> Result<(), OAuthError> {
        let event = AuditEvent::new(
            self.clock.now(),
            client_actor(client),
            Action::OidcCibaRefused,
            Subject::OidcClient(client.client_id.clone()),
        )
        .with_details(json!({
            "client_id": client.client_id.0,
            "request_client_id": request.client_id.0,
            "authorization_id": request.authorization_id,
            "reason": reason,
        }));
        self.store.record_audit(event).await.map_err(OAuthError::internal)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> Params {
        Params::from_pairs(pairs.iter().copied()).unwrap()
    }

    #[test]
    fn a_binding_message_of_the_digit_count_is_the_number() {
        assert_eq!(
            binding(&params(&[("binding_message", "482")]), 3).unwrap(),
            Binding::Number("482".into())
        );
        assert_eq!(binding(&params(&[]), 3).unwrap(), Binding::None);
        assert_eq!(
            binding(&params(&[("binding_message", "Order #A-17")]), 3).unwrap(),
            Binding::Message("Order #A-17".into())
        );
        assert_eq!(
            binding(&params(&[("binding_message", "4821")]), 3).unwrap(),
            Binding::Message("4821".into()),
            "digits of another length are a message"
        );
        for bad in [
            " 482",
            "Pay\u{202E}moc",
            "a\nb",
            "zero\u{200B}width",
            "line\u{2028}break",
            &"x".repeat(65),
            &"Ｍ".repeat(22),
        ] {
            let error = binding(&params(&[("binding_message", bad)]), 3).unwrap_err();
            assert_eq!(error.code, OAuthErrorCode::InvalidBindingMessage, "{bad:?}");
        }
    }

    #[test]
    fn notification_tokens_follow_rfc_6750_and_the_mode() {
        let ping = CibaDelivery::Ping { notification_endpoint: "https://rp.example/ping".into() };
        let ok =
            notification_token(&params(&[("client_notification_token", "abc.DEF-_~+/==")]), &ping).unwrap();
        assert_eq!(ok.as_deref(), Some("abc.DEF-_~+/=="));
        for bad in ["a b", "==", "tok\u{e9}n", &"a".repeat(1025)] {
            assert!(
                notification_token(&params(&[("client_notification_token", bad)]), &ping).is_err(),
                "{bad:?}"
            );
        }
        assert!(notification_token(&params(&[]), &ping).is_err());
        assert!(
            notification_token(&params(&[("client_notification_token", "abc")]), &CibaDelivery::Poll)
                .is_err()
        );
        assert_eq!(notification_token(&params(&[]), &CibaDelivery::Poll).unwrap(), None);
    }

    #[test]
    fn requested_expiry_is_a_positive_integer_within_bounds() {
        let longest = Duration::seconds(60);
        assert_eq!(expiry(&params(&[]), longest).unwrap(), longest);
        assert_eq!(expiry(&params(&[("requested_expiry", "30")]), longest).unwrap(), Duration::seconds(30));
        assert_eq!(expiry(&params(&[("requested_expiry", "600")]), longest).unwrap(), longest);
        assert_eq!(expiry(&params(&[("requested_expiry", "1")]), longest).unwrap(), MIN_EXPIRY);
        for bad in ["0", "-5", "ten", "1.5"] {
            assert!(expiry(&params(&[("requested_expiry", bad)]), longest).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_phone_shows_the_whole_message_and_as_much_of_the_name_as_fits() {
        assert_eq!(shown_app_name("Call centre", Some("Ticket 4411")), "Call centre: Ticket 4411");
        assert_eq!(shown_app_name("Call centre", None), "Call centre");
        let long = shown_app_name(&"Ä".repeat(100), Some(&"m".repeat(64)));
        assert!(long.len() <= 128 && long.ends_with(&"m".repeat(64)), "{long}");
        assert!(long.starts_with(&"Ä".repeat(31)), "the registered name keeps its room: {long}");
    }
}
