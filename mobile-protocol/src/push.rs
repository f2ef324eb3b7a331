//! Push registration (how the server can wake the phone) and what a push may carry.
//!
//! A push travels through Apple or Google and may be shown on a lock screen, so it carries only
//! an opaque challenge id and fixed generic text. Everything else (app, IP, place) is fetched by
//! the phone over a signed request, and the number is never sent to the phone at all. Push is a
//! wake-up hint: a phone with provider `none` polls, and approval never depends on push.

use serde::{Deserialize, Serialize};

use crate::canonical::CanonicalWriter;
use crate::error::ProtocolError;
use crate::fields::{ChallengeId, check_printable_ascii};
use crate::limits::MAX_PUSH_TOKEN_LEN;

/// Fixed title of every challenge notification (no user, app or location in it).
pub const PUSH_TITLE: &str = "Sign-in request";
/// Fixed body of every challenge notification.
pub const PUSH_BODY: &str = "Open Countersign to review it.";

/// Push provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PushProvider {
    /// Apple Push Notification service.
    Apns,
    /// Firebase Cloud Messaging (HTTP v1).
    Fcm,
    /// No push: the phone polls `GET /device/v1/challenges`.
    None,
}

impl PushProvider {
    /// Wire and canonical name.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Apns => "apns",
            Self::Fcm => "fcm",
            Self::None => "none",
        }
    }
}

/// APNs environment the token belongs to (development builds get sandbox tokens).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ApnsEnvironment {
    /// `api.push.apple.com`.
    Production,
    /// `api.sandbox.push.apple.com`.
    Sandbox,
}

impl ApnsEnvironment {
    /// Wire and canonical name.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Production => "production",
            Self::Sandbox => "sandbox",
        }
    }
}

/// An APNs device token or FCM registration token: printable ASCII, no spaces.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct PushToken(String);

impl PushToken {
    /// Validates and wraps a token.
    pub fn new(token: impl Into<String>) -> Result<Self, ProtocolError> {
        let token = token.into();
        check_printable_ascii("push.token", &token, MAX_PUSH_TOKEN_LEN)?;
        Ok(Self(token))
    }

    /// The token as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for PushToken {
    type Error = ProtocolError;
    fn try_from(token: String) -> Result<Self, Self::Error> {
        Self::new(token)
    }
}

impl From<PushToken> for String {
    fn from(token: PushToken) -> Self {
        token.0
    }
}

/// Shortest APNs device token, in hex digits (32 bytes, the length Apple issues today).
pub const MIN_APNS_TOKEN_HEX_LEN: usize = 64;
/// Longest APNs device token, in hex digits (100 bytes: Apple warns the length may grow).
pub const MAX_APNS_TOKEN_HEX_LEN: usize = 200;

/// Checks an APNs device token: an even number of lower-case hex digits, 64 to 200 of them.
/// One spelling per token, so a token cannot be bound twice by changing its case.
pub fn check_apns_token(token: &PushToken) -> Result<(), ProtocolError> {
    let token = token.as_str();
    let is_hex = token.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    let is_sane_length = (MIN_APNS_TOKEN_HEX_LEN..=MAX_APNS_TOKEN_HEX_LEN).contains(&token.len())
        && token.len().is_multiple_of(2);
    if is_hex && is_sane_length {
        Ok(())
    } else {
        Err(ProtocolError::InvalidField {
            field: "push.token",
            reason: "an APNs device token must be 64 to 200 lower-case hex digits (an even number)",
        })
    }
}

/// How the server reaches this phone. On the wire:
/// `{"provider":"apns","token":"…","environment":"production"}`, `{"provider":"fcm","token":"…"}`
/// or `{"provider":"none"}`; any other combination is refused.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "PushRegistrationWire", into = "PushRegistrationWire")]
pub enum PushRegistration {
    /// APNs token and the environment it was issued for.
    Apns {
        /// Device token: lower-case hex ([`check_apns_token`]; checked when parsed).
        token: PushToken,
        /// Production or sandbox.
        environment: ApnsEnvironment,
    },
    /// FCM registration token.
    Fcm {
        /// Registration token.
        token: PushToken,
    },
    /// No push; the phone polls.
    None,
}

impl PushRegistration {
    /// An APNs registration, after checking the token is hex ([`check_apns_token`]).
    pub fn apns(token: PushToken, environment: ApnsEnvironment) -> Result<Self, ProtocolError> {
        check_apns_token(&token)?;
        Ok(Self::Apns { token, environment })
    }

    /// The provider.
    pub fn provider(&self) -> PushProvider {
        match self {
            Self::Apns { .. } => PushProvider::Apns,
            Self::Fcm { .. } => PushProvider::Fcm,
            Self::None => PushProvider::None,
        }
    }

    /// The token, if any.
    pub fn token(&self) -> Option<&PushToken> {
        match self {
            Self::Apns { token, .. } | Self::Fcm { token } => Some(token),
            Self::None => None,
        }
    }

    /// Appends provider, token and environment as three canonical items. An absent token or
    /// environment is the empty string; that is unambiguous because the provider, written first,
    /// determines which are present and present ones are never empty.
    pub(crate) fn write_canonical(&self, writer: CanonicalWriter) -> CanonicalWriter {
        let environment = match self {
            Self::Apns { environment, .. } => environment.as_str(),
            Self::Fcm { .. } | Self::None => "",
        };
        writer
            .text(self.provider().as_str())
            .text(self.token().map_or("", PushToken::as_str))
            .text(environment)
    }
}

/// Flat JSON shape of [`PushRegistration`]; unknown fields are refused.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct PushRegistrationWire {
    provider: PushProvider,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    token: Option<PushToken>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    environment: Option<ApnsEnvironment>,
}

impl TryFrom<PushRegistrationWire> for PushRegistration {
    type Error = ProtocolError;
    fn try_from(wire: PushRegistrationWire) -> Result<Self, Self::Error> {
        let unexpected =
            |field| ProtocolError::InvalidField { field, reason: "not allowed for this provider" };
        match (wire.provider, wire.token, wire.environment) {
            (PushProvider::Apns, Some(token), Some(environment)) => Self::apns(token, environment),
            (PushProvider::Apns, None, _) | (PushProvider::Fcm, None, _) => {
                Err(ProtocolError::MissingField { field: "push.token" })
            }
            (PushProvider::Apns, Some(_), None) => {
                Err(ProtocolError::MissingField { field: "push.environment" })
            }
            (PushProvider::Fcm, Some(token), None) => Ok(Self::Fcm { token }),
            (PushProvider::Fcm, Some(_), Some(_)) => Err(unexpected("push.environment")),
            (PushProvider::None, None, None) => Ok(Self::None),
            (PushProvider::None, Some(_), _) => Err(unexpected("push.token")),
            (PushProvider::None, None, Some(_)) => Err(unexpected("push.environment")),
        }
    }
}

impl From<PushRegistration> for PushRegistrationWire {
    fn from(registration: PushRegistration) -> Self {
        match registration {
            PushRegistration::Apns { token, environment } => {
                Self { provider: PushProvider::Apns, token: Some(token), environment: Some(environment) }
            }
            PushRegistration::Fcm { token } => {
                Self { provider: PushProvider::Fcm, token: Some(token), environment: None }
            }
            PushRegistration::None => Self { provider: PushProvider::None, token: None, environment: None },
        }
    }
}

/// The custom data of a challenge push: the opaque challenge id and nothing else.
///
/// For APNs it sits next to `aps` (whose alert is [`PUSH_TITLE`] / [`PUSH_BODY`]); for FCM it is
/// the `data` map. The phone treats it as a hint only and fetches the details over a signed
/// request; it must not trust or display anything else a push carries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PushPayload {
    /// Which challenge to fetch.
    pub challenge_id: ChallengeId,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    fn parse(json: &str) -> Result<PushRegistration, serde_json::Error> {
        serde_json::from_str(json)
    }

    #[test]
    fn accepts_the_three_shapes_and_round_trips() {
        for json in [
            r#"{"provider":"apns","token":"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef","environment":"sandbox"}"#,
            r#"{"provider":"fcm","token":"x:y_z-1"}"#,
            r#"{"provider":"none"}"#,
        ] {
            let registration = parse(json).unwrap();
            assert_eq!(serde_json::to_string(&registration).unwrap(), json);
        }
    }

    /// PROTOCOL.md §6.1 says an APNs token is hex, and any token used to be accepted.
    #[test]
    fn apns_tokens_must_be_lower_case_hex_of_a_sane_length() {
        let apns = |token: &str| {
            parse(&format!(r#"{{"provider":"apns","token":"{token}","environment":"production"}}"#))
        };
        assert!(apns(&"ab".repeat(32)).is_ok());
        assert!(apns(&"ab".repeat(100)).is_ok());
        for bad in [
            "ab12".to_owned(),                // too short
            "AB".repeat(32),                  // upper case: a second spelling of the same token
            "zz".repeat(32),                  // not hex
            format!("{}a", "ab".repeat(32)),  // odd length
            "ab".repeat(101),                 // too long
            "apns-token-goes-here".repeat(4), // anything printable used to pass
        ] {
            assert!(apns(&bad).is_err(), "{bad}");
        }
        assert!(parse(r#"{"provider":"fcm","token":"not:hex_at-all"}"#).is_ok(), "FCM tokens are not hex");
    }

    #[test]
    fn refuses_inconsistent_shapes() {
        for json in [
            r#"{"provider":"apns","token":"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"}"#,
            r#"{"provider":"apns","environment":"sandbox"}"#,
            r#"{"provider":"fcm"}"#,
            r#"{"provider":"fcm","token":"t","environment":"production"}"#,
            r#"{"provider":"none","token":"t"}"#,
            r#"{"provider":"none","environment":"sandbox"}"#,
            r#"{"provider":"fcm","token":""}"#,
            r#"{"provider":"fcm","token":"a b"}"#,
            r#"{"provider":"webpush","token":"t"}"#,
            r#"{"provider":"none","extra":1}"#,
        ] {
            assert!(parse(json).is_err(), "{json}");
        }
    }
}
