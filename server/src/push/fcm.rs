//! FCM over the HTTP v1 API, authorised by an OAuth2 access token for a service account.
//!
//! The access token comes from the JWT-bearer grant (RFC 7523) against the service account's
//! own `token_uri`: an RS256 assertion signed with its private key is exchanged for a bearer
//! token, cached until five minutes before it expires and dropped early if FCM answers 401.
//!
//! We implement this small flow ourselves rather than with `gcp_auth` (0.12): it does honour
//! `token_uri`, but it reads the wall clock (time here is injected), retries with sleeps inside
//! the call (the caller owns retries), sets no request timeout, offers no way to drop a token
//! FCM has rejected with 401, and brings a second HTTP stack (hyper-rustls, chrono).

use countersign_mobile_protocol::ChallengeId;
use countersign_mobile_protocol::PushPayload;
use countersign_mobile_protocol::push::{PUSH_BODY, PUSH_TITLE};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::StatusCode;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use time::{Duration, OffsetDateTime};

use super::outcome::{self, Provider};
use super::transport::{self, ProviderUrl};
use super::{PushMessage, PushOutcome};

/// Google's FCM endpoint.
pub const DEFAULT_BASE_URL: &str = "https://fcm.googleapis.com";
/// The only scope we ask for: sending messages.
pub const SCOPE: &str = "https://www.googleapis.com/auth/firebase.messaging";
/// How long an assertion is valid (Google's maximum).
const ASSERTION_LIFETIME: Duration = Duration::hours(1);
/// A cached access token is replaced this long before it expires, so a request never starts
/// with a token about to lapse in flight.
const ACCESS_TOKEN_MARGIN: Duration = Duration::minutes(5);
/// Longest access-token lifetime we believe (a day; Google issues one hour).
const MAX_ACCESS_TOKEN_LIFETIME_SECS: i64 = 86_400;
/// The form body's grant type, already form-encoded (`:` → `%3A`). The assertion needs no
/// encoding: a JWT is base64url and dots.
const GRANT_TYPE_FORM: &str = "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer";

/// The parts of a Google service-account key file (JSON) we use.
pub struct ServiceAccount {
    client_email: String,
    key: EncodingKey,
    token_uri: ProviderUrl,
    project_id: String,
}

/// Why a service-account file cannot be used. Never quotes the file's contents.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidServiceAccount {
    #[error("is not a JSON object")]
    NotJson,
    #[error("has no string field \"{0}\"")]
    MissingField(&'static str),
    #[error("\"private_key\" is not an RSA private key in PEM that can sign RS256")]
    BadPrivateKey,
    #[error("\"token_uri\" {0}")]
    BadTokenUri(transport::InvalidProviderUrl),
    #[error("\"project_id\" is not a Google Cloud project id")]
    BadProjectId,
}

impl ServiceAccount {
    /// Parses the key file Google Cloud hands out and proves the key can sign RS256.
    pub fn from_json(text: &str) -> Result<Self, InvalidServiceAccount> {
        let value: serde_json::Value =
            serde_json::from_str(text).map_err(|_| InvalidServiceAccount::NotJson)?;
        let object = value.as_object().ok_or(InvalidServiceAccount::NotJson)?;
        let field = |name: &'static str| {
            object
                .get(name)
                .and_then(|value| value.as_str())
                .filter(|value| !value.is_empty())
                .ok_or(InvalidServiceAccount::MissingField(name))
        };
        let client_email = field("client_email")?.to_owned();
        let key = EncodingKey::from_rsa_pem(field("private_key")?.as_bytes())
            .map_err(|_| InvalidServiceAccount::BadPrivateKey)?;
        jsonwebtoken::crypto::sign(b"probe", &key, Algorithm::RS256)
            .map_err(|_| InvalidServiceAccount::BadPrivateKey)?;
        let token_uri =
            ProviderUrl::parse(field("token_uri")?).map_err(InvalidServiceAccount::BadTokenUri)?;
        let project_id = field("project_id")?.to_owned();
        // It goes into the request path. Ids are lowercase letters, digits and hyphens; old
        // domain-scoped ones look like `example.com:project`.
        let is_path_safe =
            project_id.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-.:".contains(&b))
                && project_id.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
                && !project_id.contains("..");
        if !is_path_safe {
            return Err(InvalidServiceAccount::BadProjectId);
        }
        Ok(Self { client_email, key, token_uri, project_id })
    }

    pub fn token_uri(&self) -> &ProviderUrl {
        &self.token_uri
    }

    fn assertion(&self, now: OffsetDateTime) -> Result<String, jsonwebtoken::errors::Error> {
        let iat = now.unix_timestamp();
        let claims = AssertionClaims {
            iss: &self.client_email,
            scope: SCOPE,
            aud: self.token_uri.as_str(),
            iat,
            exp: iat + ASSERTION_LIFETIME.whole_seconds(),
        };
        jsonwebtoken::encode(&Header::new(Algorithm::RS256), &claims, &self.key)
    }
}

impl std::fmt::Debug for ServiceAccount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceAccount")
            .field("client_email", &self.client_email)
            .field("project_id", &self.project_id)
            .field("token_uri", &self.token_uri)
            .finish_non_exhaustive()
    }
}

#[derive(Serialize)]
struct AssertionClaims<'a> {
    iss: &'a str,
    scope: &'a str,
    aud: &'a str,
    iat: i64,
    exp: i64,
}

/// The token endpoint's answer (RFC 6749 §5.1).
#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    expires_in: i64,
    token_type: String,
}

/// The token endpoint's error (RFC 6749 §5.2), for the log line.
#[derive(Deserialize)]
struct TokenError {
    error: Option<String>,
}

struct AccessToken {
    token: SecretString,
    refresh_at: OffsetDateTime,
}

/// A Google API error: `{"error": {"status": "NOT_FOUND", "details": [{"errorCode": …}]}}`.
#[derive(Deserialize)]
struct GoogleErrorBody {
    error: GoogleError,
}

#[derive(Deserialize)]
struct GoogleError {
    status: Option<String>,
    #[serde(default)]
    details: Vec<GoogleErrorDetail>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct GoogleErrorDetail {
    error_code: Option<String>,
    #[serde(default)]
    field_violations: Vec<FieldViolation>,
}

#[derive(Deserialize)]
struct FieldViolation {
    field: Option<String>,
}

impl GoogleError {
    fn error_code(&self) -> Option<&str> {
        self.details.iter().find_map(|detail| detail.error_code.as_deref())
    }

    /// FCM names the offending field of an `INVALID_ARGUMENT`; only `message.token` means the
    /// device token is bad (anything else is our request, and must not disable the token).
    fn blames_the_token(&self) -> bool {
        self.details
            .iter()
            .flat_map(|detail| &detail.field_violations)
            .any(|violation| violation.field.as_deref() == Some("message.token"))
    }
}

#[derive(Serialize)]
struct SendRequest<'a> {
    message: Message<'a>,
}

#[derive(Serialize)]
struct Message<'a> {
    token: &'a str,
    data: &'a PushPayload,
    notification: Notification,
    android: AndroidConfig,
}

#[derive(Serialize)]
struct Notification {
    title: &'static str,
    body: &'static str,
}

#[derive(Serialize)]
struct AndroidConfig {
    /// A protobuf `Duration` in JSON: whole seconds with an `s` suffix.
    ttl: String,
    priority: &'static str,
}

/// Sends challenge pushes to Android devices through one Firebase project.
pub struct FcmClient {
    account: ServiceAccount,
    send_url: String,
    fcm_http: reqwest::Client,
    token_http: reqwest::Client,
    /// An async mutex held across the token fetch, so concurrent sends wait for one fetch
    /// instead of each asking the token endpoint.
    access_token: tokio::sync::Mutex<Option<AccessToken>>,
}

impl std::fmt::Debug for FcmClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FcmClient")
            .field("account", &self.account)
            .field("send_url", &self.send_url)
            .finish_non_exhaustive()
    }
}

/// Whether a fetch produced a token or an outcome for the message.
type TokenResult = Result<(SecretString, OffsetDateTime), PushOutcome>;

impl FcmClient {
    pub fn new(account: ServiceAccount, base_url: ProviderUrl) -> Result<Self, reqwest::Error> {
        Ok(Self {
            send_url: base_url.join(&format!("/v1/projects/{}/messages:send", account.project_id)),
            fcm_http: transport::client_for(&base_url)?,
            token_http: transport::client_for(&account.token_uri)?,
            account,
            access_token: tokio::sync::Mutex::new(None),
        })
    }

    /// One delivery attempt to one registration token. When the access token needs renewing
    /// this makes two requests (token endpoint, then FCM), each bounded by
    /// [`transport::REQUEST_TIMEOUT`].
    pub async fn send(
        &self,
        registration_token: &str,
        message: &PushMessage,
        now: OffsetDateTime,
    ) -> PushOutcome {
        let outcome = self.attempt(registration_token, message, now).await;
        outcome::record(Provider::Fcm, &message.challenge_id, &outcome);
        outcome
    }

    async fn attempt(
        &self,
        registration_token: &str,
        message: &PushMessage,
        now: OffsetDateTime,
    ) -> PushOutcome {
        if let Some(expired) = outcome::already_expired(message, now) {
            return expired;
        }
        let Ok(challenge_id) = ChallengeId::new(message.challenge_id.clone()) else {
            return PushOutcome::Failed { reason: "challenge id is not a protocol ChallengeId".to_owned() };
        };
        let body = SendRequest {
            message: Message {
                token: registration_token,
                data: &PushPayload { challenge_id },
                notification: Notification { title: PUSH_TITLE, body: PUSH_BODY },
                android: AndroidConfig {
                    ttl: format!("{}s", (message.expires_at - now).whole_seconds()),
                    priority: "high",
                },
            },
        };
        let (token, refresh_at) = match self.access_token(now).await {
            Ok(token) => token,
            Err(outcome) => return outcome,
        };
        let Some(authorization) = transport::authorization("Bearer", token.expose_secret()) else {
            return PushOutcome::Failed { reason: "access token is not a valid header value".to_owned() };
        };
        let request = self.fcm_http.post(&self.send_url).header(AUTHORIZATION, authorization).json(&body);
        let transport::Rejection { status, headers, body } = match transport::send(request).await {
            Ok(None) => return PushOutcome::Delivered,
            Ok(Some(rejection)) => rejection,
            Err(outcome) => return outcome,
        };
        let error = serde_json::from_slice::<GoogleErrorBody>(&body).ok().map(|body| body.error);
        let code = error.as_ref().and_then(|error| error.error_code().or(error.status.as_deref()));
        let described = format!("fcm {} {}", status.as_u16(), outcome::reason_code(code));
        let error_code = error.as_ref().and_then(GoogleError::error_code);
        let blames_token = error.as_ref().is_some_and(GoogleError::blames_the_token);
        match (status.as_u16(), error_code) {
            (_, Some("UNREGISTERED")) => PushOutcome::TokenInvalid { reason: described },
            (400, Some("INVALID_ARGUMENT")) if blames_token => {
                PushOutcome::TokenInvalid { reason: described }
            }
            (401, _) => {
                self.forget_access_token(refresh_at).await;
                PushOutcome::Retry { after: None, reason: described }
            }
            _ if outcome::is_transient(status) => outcome::retry(&headers, now, described),
            _ => PushOutcome::Failed { reason: described },
        }
    }

    /// The cached access token, or a fresh one from the token endpoint. Returns the token's
    /// refresh time, which identifies it if FCM rejects it later.
    async fn access_token(&self, now: OffsetDateTime) -> TokenResult {
        let mut cached = self.access_token.lock().await;
        if let Some(token) = cached.as_ref().filter(|token| now < token.refresh_at) {
            return Ok((token.token.clone(), token.refresh_at));
        }
        let fresh = self.fetch_access_token(now).await?;
        let result = (fresh.token.clone(), fresh.refresh_at);
        *cached = Some(fresh);
        Ok(result)
    }

    async fn forget_access_token(&self, refresh_at: OffsetDateTime) {
        let mut cached = self.access_token.lock().await;
        if cached.as_ref().is_some_and(|token| token.refresh_at == refresh_at) {
            *cached = None;
        }
    }

    /// The JWT-bearer grant: one POST of a signed assertion to the account's `token_uri`.
    async fn fetch_access_token(&self, now: OffsetDateTime) -> Result<AccessToken, PushOutcome> {
        let Ok(assertion) = self.account.assertion(now) else {
            return Err(PushOutcome::Failed { reason: "could not sign the OAuth assertion".to_owned() });
        };
        let request = self
            .token_http
            .post(self.account.token_uri.as_str())
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(format!("{GRANT_TYPE_FORM}&assertion={assertion}"));
        let response = request.send().await.map_err(outcome::from_request_error)?;
        let status = response.status();
        if status != StatusCode::OK {
            let headers = response.headers().clone();
            let body = transport::read_body(response).await;
            let code = serde_json::from_slice::<TokenError>(&body).ok().and_then(|body| body.error);
            let described =
                format!("fcm oauth {} {}", status.as_u16(), outcome::reason_code(code.as_deref()));
            return Err(if outcome::is_transient(status) {
                outcome::retry(&headers, now, described)
            } else {
                PushOutcome::Failed { reason: described }
            });
        }
        let body = transport::read_body(response).await;
        let parsed = serde_json::from_slice::<TokenResponse>(&body).ok().filter(|token| {
            token.token_type.eq_ignore_ascii_case("bearer") && !token.access_token.is_empty()
        });
        let Some(token) = parsed else {
            return Err(PushOutcome::Retry {
                after: None,
                reason: "fcm oauth: unreadable token response".to_owned(),
            });
        };
        // Google says 3599 s; bound it so a misbehaving endpoint cannot overflow the clock.
        let expires_at = now + Duration::seconds(token.expires_in.clamp(0, MAX_ACCESS_TOKEN_LIFETIME_SECS));
        Ok(AccessToken {
            token: SecretString::from(token.access_token),
            refresh_at: expires_at - ACCESS_TOKEN_MARGIN,
        })
    }
}
