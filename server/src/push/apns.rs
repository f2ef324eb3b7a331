//! APNs over the HTTP/2 provider API with token (`.p8` key) authentication.
//!
//! One request per push: `POST {base}/3/device/{token}` with a provider JWT (ES256, `kid` =
//! key id, `iss` = team id, `iat`) that is cached and re-minted after 50 minutes, because Apple
//! rejects tokens older than an hour and throttles providers that mint more often than every
//! 20 minutes. Production and sandbox devices go to different hosts.

use std::sync::{Mutex, PoisonError};

use countersign_mobile_protocol::ChallengeId;
use countersign_mobile_protocol::PushPayload;
use countersign_mobile_protocol::limits::MAX_PUSH_TOKEN_LEN;
use countersign_mobile_protocol::push::{PUSH_BODY, PUSH_TITLE};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use time::{Duration, OffsetDateTime};

use super::outcome::{self, Provider};
use super::transport::{self, ProviderUrl};
use super::{PushMessage, PushOutcome};

/// Apple's production endpoint.
pub const DEFAULT_BASE_URL: &str = "https://api.push.apple.com";
/// Apple's development (sandbox) endpoint, for app builds signed for development.
pub const DEFAULT_SANDBOX_BASE_URL: &str = "https://api.sandbox.push.apple.com";
/// Provider tokens are re-minted after this long: under Apple's one-hour limit, over its
/// 20-minute minimum between refreshes.
pub const PROVIDER_TOKEN_LIFETIME: Duration = Duration::minutes(50);

/// The team's APNs auth key (the `.p8` file): an EC P-256 private key in PKCS#8 PEM, with the
/// key id and team id Apple issued it under.
pub struct ApnsSigningKey {
    key: EncodingKey,
    key_id: String,
    team_id: String,
}

/// Why an APNs key cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidApnsKey {
    #[error("is not an EC P-256 private key in PKCS#8 PEM (the .p8 file Apple issues)")]
    NotP256Pkcs8,
    #[error("the key id must be Apple's 10-character identifier (letters and digits)")]
    BadKeyId,
    #[error("the team id must be Apple's 10-character identifier (letters and digits)")]
    BadTeamId,
}

impl ApnsSigningKey {
    /// Loads the key and proves it can sign ES256 now, so a wrong file stops the server at
    /// start-up rather than failing every push later.
    pub fn from_pkcs8_pem(pem: &[u8], key_id: &str, team_id: &str) -> Result<Self, InvalidApnsKey> {
        let key = EncodingKey::from_ec_pem(pem).map_err(|_| InvalidApnsKey::NotP256Pkcs8)?;
        jsonwebtoken::crypto::sign(b"probe", &key, Algorithm::ES256)
            .map_err(|_| InvalidApnsKey::NotP256Pkcs8)?;
        let is_apple_id = |id: &str| id.len() == 10 && id.bytes().all(|b| b.is_ascii_alphanumeric());
        if !is_apple_id(key_id) {
            return Err(InvalidApnsKey::BadKeyId);
        }
        if !is_apple_id(team_id) {
            return Err(InvalidApnsKey::BadTeamId);
        }
        Ok(Self { key, key_id: key_id.to_owned(), team_id: team_id.to_owned() })
    }

    fn mint(&self, now: OffsetDateTime) -> Result<SecretString, jsonwebtoken::errors::Error> {
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(self.key_id.clone());
        let claims = ProviderClaims { iss: &self.team_id, iat: now.unix_timestamp() };
        jsonwebtoken::encode(&header, &claims, &self.key).map(SecretString::from)
    }
}

impl std::fmt::Debug for ApnsSigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApnsSigningKey")
            .field("key_id", &self.key_id)
            .field("team_id", &self.team_id)
            .finish()
    }
}

#[derive(Serialize)]
struct ProviderClaims<'a> {
    iss: &'a str,
    iat: i64,
}

/// A minted provider token and when it was minted.
struct ProviderToken {
    jwt: SecretString,
    issued_at: OffsetDateTime,
}

/// Where to reach APNs: production and sandbox hosts, replaceable for tests.
#[derive(Debug, Clone)]
pub struct ApnsEndpoints {
    pub production: ProviderUrl,
    pub sandbox: ProviderUrl,
}

/// Sends challenge pushes to iOS devices. Cheap to share: one HTTP/2 connection per host is
/// reused across pushes, as Apple asks.
pub struct ApnsClient {
    key: ApnsSigningKey,
    topic: String,
    production: Host,
    sandbox: Host,
    token: Mutex<Option<ProviderToken>>,
}

#[derive(Debug)]
struct Host {
    url: ProviderUrl,
    http: reqwest::Client,
}

impl Host {
    fn new(url: ProviderUrl) -> Result<Self, reqwest::Error> {
        Ok(Self { http: transport::client_for(&url)?, url })
    }
}

impl std::fmt::Debug for ApnsClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApnsClient")
            .field("key", &self.key)
            .field("topic", &self.topic)
            .field("production", &self.production.url)
            .field("sandbox", &self.sandbox.url)
            .finish_non_exhaustive()
    }
}

/// Apple's error body: `{"reason": "BadDeviceToken"}` (plus `timestamp` for 410).
#[derive(Deserialize)]
struct ErrorBody {
    reason: Option<String>,
}

#[derive(Serialize)]
struct Notification<'a> {
    aps: Aps,
    #[serde(flatten)]
    data: &'a PushPayload,
}

#[derive(Serialize)]
struct Aps {
    alert: Alert,
    sound: &'static str,
}

#[derive(Serialize)]
struct Alert {
    title: &'static str,
    body: &'static str,
}

impl ApnsClient {
    /// `topic` is the app's bundle id.
    pub fn new(key: ApnsSigningKey, topic: String, endpoints: ApnsEndpoints) -> Result<Self, reqwest::Error> {
        Ok(Self {
            key,
            topic,
            production: Host::new(endpoints.production)?,
            sandbox: Host::new(endpoints.sandbox)?,
            token: Mutex::new(None),
        })
    }

    /// One delivery attempt to one device token.
    pub async fn send(
        &self,
        device_token: &str,
        is_sandbox: bool,
        message: &PushMessage,
        now: OffsetDateTime,
    ) -> PushOutcome {
        let outcome = self.attempt(device_token, is_sandbox, message, now).await;
        outcome::record(Provider::Apns, &message.challenge_id, &outcome);
        outcome
    }

    async fn attempt(
        &self,
        device_token: &str,
        is_sandbox: bool,
        message: &PushMessage,
        now: OffsetDateTime,
    ) -> PushOutcome {
        if let Some(expired) = outcome::already_expired(message, now) {
            return expired;
        }
        // The token goes into the URL path: anything but hex could change the request's target.
        if device_token.is_empty()
            || device_token.len() > MAX_PUSH_TOKEN_LEN
            || !device_token.bytes().all(|b| b.is_ascii_hexdigit())
        {
            return PushOutcome::TokenInvalid { reason: "malformed APNs device token (not hex)".to_owned() };
        }
        let Ok(challenge_id) = ChallengeId::new(message.challenge_id.clone()) else {
            return PushOutcome::Failed { reason: "challenge id is not a protocol ChallengeId".to_owned() };
        };
        let body = Notification {
            aps: Aps { alert: Alert { title: PUSH_TITLE, body: PUSH_BODY }, sound: "default" },
            data: &PushPayload { challenge_id },
        };
        let (jwt, issued_at) = match self.provider_token(now) {
            Ok(token) => token,
            Err(_) => {
                return PushOutcome::Failed { reason: "could not sign the APNs provider token".to_owned() };
            }
        };
        let Some(authorization) = transport::authorization("bearer", jwt.expose_secret()) else {
            return PushOutcome::Failed { reason: "provider token is not a valid header value".to_owned() };
        };
        let host = if is_sandbox { &self.sandbox } else { &self.production };
        let request = host
            .http
            .post(host.url.join(&format!("/3/device/{device_token}")))
            .header(reqwest::header::AUTHORIZATION, authorization)
            .header("apns-topic", &self.topic)
            .header("apns-push-type", "alert")
            .header("apns-priority", "10")
            .header("apns-expiration", message.expires_at.unix_timestamp().to_string())
            .json(&body);
        let transport::Rejection { status, headers, body } = match transport::send(request).await {
            Ok(None) => return PushOutcome::Delivered,
            Ok(Some(rejection)) => rejection,
            Err(outcome) => return outcome,
        };
        let reason = serde_json::from_slice::<ErrorBody>(&body).ok().and_then(|body| body.reason);
        let reason = outcome::reason_code(reason.as_deref());
        let described = format!("apns {} {reason}", status.as_u16());
        match (status.as_u16(), reason) {
            (410, _) | (_, "BadDeviceToken" | "DeviceTokenNotForTopic" | "Unregistered") => {
                PushOutcome::TokenInvalid { reason: described }
            }
            (403, "ExpiredProviderToken") => {
                self.forget_provider_token(issued_at);
                PushOutcome::Retry { after: None, reason: described }
            }
            _ if outcome::is_transient(status) => outcome::retry(&headers, now, described),
            _ => PushOutcome::Failed { reason: described },
        }
    }

    /// The cached provider token, or a new one if there is none or it is 50 minutes old (or
    /// from the future: the clock moved back). Returns its mint time so a rejection can drop
    /// exactly that token and not a newer one another task just minted.
    fn provider_token(
        &self,
        now: OffsetDateTime,
    ) -> Result<(SecretString, OffsetDateTime), jsonwebtoken::errors::Error> {
        let mut cached = self.token.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(token) = cached.as_ref() {
            let age = now - token.issued_at;
            if age >= Duration::ZERO && age < PROVIDER_TOKEN_LIFETIME {
                return Ok((token.jwt.clone(), token.issued_at));
            }
        }
        let jwt = self.key.mint(now)?;
        *cached = Some(ProviderToken { jwt: jwt.clone(), issued_at: now });
        Ok((jwt, now))
    }

    fn forget_provider_token(&self, issued_at: OffsetDateTime) {
        let mut cached = self.token.lock().unwrap_or_else(PoisonError::into_inner);
        if cached.as_ref().is_some_and(|token| token.issued_at == issued_at) {
            *cached = None;
        }
    }
}
