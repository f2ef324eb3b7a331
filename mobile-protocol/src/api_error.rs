//! The error body every `/device/v1/...` endpoint returns, and its stable codes.
//!
//! Clients match on [`ErrorCode`] strings, never on messages or on HTTP status alone, so the codes
//! are part of the protocol: they are only ever added, never renamed or reused.

use serde::{Deserialize, Serialize};

/// Stable error codes of the device endpoints, each with exactly one HTTP status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ErrorCode {
    /// 400: the body, a header or a field is malformed or out of bounds.
    InvalidRequest,
    /// 400: the message names a protocol version the server does not speak.
    UnsupportedProtocolVersion,
    /// 401: the signature (request headers, enrollment proof or challenge response) does not
    /// verify, or the device id is unknown. Unknown devices are not distinguished on purpose.
    SignatureInvalid,
    /// 401: the signed request's timestamp is outside the allowed clock skew.
    RequestExpired,
    /// 401: the device was revoked (by the user, an admin or a factor reset); re-enroll.
    DeviceRevoked,
    /// 403: the user already has a device and this enrollment was not issued for a second one.
    EnrollmentNotAllowed,
    /// 404: no enrollment with this activation code.
    ActivationCodeInvalid,
    /// 404: no such challenge for this device's user.
    ChallengeNotFound,
    /// 409: the request nonce was already used by this device.
    RequestReplayed,
    /// 409: the public key or push token is already bound to another user (audited).
    FactorAlreadyBound,
    /// 409: the challenge was already decided, cancelled or redeemed.
    ChallengeNotPending,
    /// 409: the response counter is not greater than the last one the server accepted.
    CounterNotIncreasing,
    /// 410: the activation code expired before it was used.
    ActivationCodeExpired,
    /// 410: the activation code was already used.
    ActivationCodeUsed,
    /// 410: the challenge expired before the response arrived.
    ChallengeExpired,
    /// 413: the body exceeds [`crate::limits::MAX_DEVICE_REQUEST_BODY_LEN`].
    PayloadTooLarge,
    /// 429: too many refused attempts (e.g. signatures that do not verify); honour `Retry-After`.
    RateLimited,
    /// 500: server fault; details are in the server log under the request id.
    InternalError,
}

impl ErrorCode {
    /// Every code, for documentation and exhaustive tests.
    pub const ALL: [ErrorCode; 18] = [
        Self::InvalidRequest,
        Self::UnsupportedProtocolVersion,
        Self::SignatureInvalid,
        Self::RequestExpired,
        Self::DeviceRevoked,
        Self::EnrollmentNotAllowed,
        Self::ActivationCodeInvalid,
        Self::ChallengeNotFound,
        Self::RequestReplayed,
        Self::FactorAlreadyBound,
        Self::ChallengeNotPending,
        Self::CounterNotIncreasing,
        Self::ActivationCodeExpired,
        Self::ActivationCodeUsed,
        Self::ChallengeExpired,
        Self::PayloadTooLarge,
        Self::RateLimited,
        Self::InternalError,
    ];

    /// The code as it appears in the `error` field.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::InvalidRequest => "invalid_request",
            Self::UnsupportedProtocolVersion => "unsupported_protocol_version",
            Self::SignatureInvalid => "signature_invalid",
            Self::RequestExpired => "request_expired",
            Self::DeviceRevoked => "device_revoked",
            Self::EnrollmentNotAllowed => "enrollment_not_allowed",
            Self::ActivationCodeInvalid => "activation_code_invalid",
            Self::ChallengeNotFound => "challenge_not_found",
            Self::RequestReplayed => "request_replayed",
            Self::FactorAlreadyBound => "factor_already_bound",
            Self::ChallengeNotPending => "challenge_not_pending",
            Self::CounterNotIncreasing => "counter_not_increasing",
            Self::ActivationCodeExpired => "activation_code_expired",
            Self::ActivationCodeUsed => "activation_code_used",
            Self::ChallengeExpired => "challenge_expired",
            Self::PayloadTooLarge => "payload_too_large",
            Self::RateLimited => "rate_limited",
            Self::InternalError => "internal_error",
        }
    }

    /// The HTTP status that always accompanies this code.
    pub const fn http_status(self) -> u16 {
        match self {
            Self::InvalidRequest | Self::UnsupportedProtocolVersion => 400,
            Self::SignatureInvalid | Self::RequestExpired | Self::DeviceRevoked => 401,
            Self::EnrollmentNotAllowed => 403,
            Self::ActivationCodeInvalid | Self::ChallengeNotFound => 404,
            Self::RequestReplayed
            | Self::FactorAlreadyBound
            | Self::ChallengeNotPending
            | Self::CounterNotIncreasing => 409,
            Self::ActivationCodeExpired | Self::ActivationCodeUsed | Self::ChallengeExpired => 410,
            Self::PayloadTooLarge => 413,
            Self::RateLimited => 429,
            Self::InternalError => 500,
        }
    }

    /// Parses a code; `None` for codes this version does not know (clients then fall back to the
    /// HTTP status).
    pub fn parse(code: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.as_str() == code)
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Error body of every device endpoint:
/// `{"error": "<code>", "message": "<human text>", "request_id": "<optional>"}`.
///
/// `error` is kept as a string so an older client still parses a body carrying a code added
/// later; use [`ErrorBody::code`] to match on it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// Stable snake_case code (see [`ErrorCode`]).
    pub error: String,
    /// Human-readable explanation; never parsed, never contains secrets.
    pub message: String,
    /// Server request id to quote when reporting a problem.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
}

impl ErrorBody {
    /// Body for `code` with a human-readable message.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self { error: code.as_str().to_owned(), message: message.into(), request_id: None }
    }

    /// The code, if this client knows it.
    pub fn code(&self) -> Option<ErrorCode> {
        ErrorCode::parse(&self.error)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn serde_name_equals_as_str_and_parse_round_trips() {
        for code in ErrorCode::ALL {
            let json = serde_json::to_string(&code).unwrap();
            assert_eq!(json, format!("\"{}\"", code.as_str()));
            assert_eq!(ErrorCode::parse(code.as_str()), Some(code));
        }
    }

    #[test]
    fn body_shape_is_stable() {
        let body = ErrorBody::new(ErrorCode::ChallengeExpired, "too late");
        assert_eq!(
            serde_json::to_string(&body).unwrap(),
            r#"{"error":"challenge_expired","message":"too late"}"#
        );
        let unknown: ErrorBody = serde_json::from_str(r#"{"error":"brand_new","message":"x"}"#).unwrap();
        assert_eq!(unknown.code(), None);
    }
}
