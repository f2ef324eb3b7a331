//! The OpenAPI description of the device API (`/device/v1/openapi.json`): documentation-only
//! types for what PROTOCOL.md specifies and the handlers read by hand (signed-request headers,
//! self-signed bodies, the protocol's refusals).

use std::borrow::Cow;

use serde_json::json;
use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};
use utoipa::{PartialSchema, ToSchema};

use crate::http::ErrorBody;

/// Canonical unpadded base64url of 16-64 bytes (PROTOCOL.md §2, §10): the length fixes the
/// byte count, and the last character carries no stray bits.
const NONCE_PATTERN: &str = r"^(?:(?:[A-Za-z0-9_-]{4}){5}(?:[A-Za-z0-9_-][AQgw]|[A-Za-z0-9_-]{2}[AEIMQUYcgkosw048])|(?:[A-Za-z0-9_-]{4}){6,20}(?:[A-Za-z0-9_-][AQgw]|[A-Za-z0-9_-]{2}[AEIMQUYcgkosw048])?|(?:[A-Za-z0-9_-]{4}){21}(?:[A-Za-z0-9_-][AQgw])?)$";

/// A protocol token (ids): 1-64 of `A-Z a-z 0-9 - _`.
const TOKEN_PATTERN: &str = "^[A-Za-z0-9_-]{1,64}$";

/// A nonce as the protocol accepts it.
#[derive(Debug)]
pub struct Nonce;

impl PartialSchema for Nonce {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new().schema_type(Type::String).pattern(Some(NONCE_PATTERN)).into()
    }
}

impl ToSchema for Nonce {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("Nonce")
    }
}

/// The body of `POST /device/v1/challenges/{id}/response` (PROTOCOL.md §6.4): the answer's
/// fields and the device's signature over their canonical bytes (§7). `number` is the typed
/// digits for `approve` and empty otherwise.
#[derive(Debug)]
pub struct ChallengeResponseBody;

impl PartialSchema for ChallengeResponseBody {
    fn schema() -> RefOr<Schema> {
        let answer = |decision: serde_json::Value, number: &str| {
            json!({
                "type": "object",
                "required": ["protocol_version", "challenge_id", "server_nonce", "decision", "number", "device_id", "counter", "signature"],
                "properties": {
                    "protocol_version": { "type": "integer", "enum": [1] },
                    "challenge_id": { "type": "string", "pattern": TOKEN_PATTERN },
                    "server_nonce": { "type": "string", "pattern": NONCE_PATTERN },
                    "decision": decision,
                    "number": { "type": "string", "pattern": number },
                    "device_id": { "type": "string", "pattern": TOKEN_PATTERN },
                    "counter": { "type": "integer", "minimum": 0, "maximum": u64::MAX },
                    "signature": { "type": "string", "pattern": "^[A-Za-z0-9_-]+$" }
                },
                "additionalProperties": false
            })
        };
        let schema = json!({ "oneOf": [
            answer(json!({ "type": "string", "enum": ["approve"] }), "^[0-9]{1,10}$"),
            answer(json!({ "type": "string", "enum": ["deny", "report"] }), "^$"),
        ]});
        serde_json::from_value(schema).unwrap_or_else(|_| RefOr::T(Schema::default()))
    }
}

impl ToSchema for ChallengeResponseBody {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("ChallengeResponse")
    }
}

/// Display text (device name, platform): no control or bidirectional formatting characters.
/// At most a quarter of the byte limit in characters, so any characters fit it.
fn display_text(max_bytes: usize) -> serde_json::Value {
    json!({
        "type": "string",
        "minLength": 1,
        "maxLength": max_bytes / 4,
        "pattern": r"^[^\x00-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]+$"
    })
}

/// The body of `POST /device/v1/enroll` (PROTOCOL.md §6.1): the enrollment's fields and the
/// new key's signature over their canonical bytes (§7). Where the protocol's rule is more
/// than a pattern can say (the server URL, byte limits), the schema asks for a strict subset.
#[derive(Debug)]
pub struct EnrollmentRequestBody;

impl PartialSchema for EnrollmentRequestBody {
    fn schema() -> RefOr<Schema> {
        let push = json!({ "oneOf": [
            {
                "type": "object",
                "required": ["provider", "token", "environment"],
                "properties": {
                    "provider": { "type": "string", "enum": ["apns"] },
                    "token": { "type": "string", "pattern": "^(?:[0-9a-f]{2}){32,100}$" },
                    "environment": { "type": "string", "enum": ["production", "sandbox"] }
                },
                "additionalProperties": false
            },
            {
                "type": "object",
                "required": ["provider", "token"],
                "properties": {
                    "provider": { "type": "string", "enum": ["fcm"] },
                    "token": { "type": "string", "pattern": "^[!-~]{1,1024}$" }
                },
                "additionalProperties": false
            },
            {
                "type": "object",
                "required": ["provider"],
                "properties": { "provider": { "type": "string", "enum": ["none"] } },
                "additionalProperties": false
            }
        ]});
        let schema = json!({
            "type": "object",
            "required": ["server", "activation_code", "public_key", "push", "device_name", "platform", "signature"],
            "properties": {
                "server": {
                    "type": "string",
                    "description": "The `server` of the enrollment URI, exactly (PROTOCOL.md §4)",
                    "pattern": "^https://[a-z0-9-]{1,63}(\\.[a-z0-9-]{1,63}){0,3}(/[A-Za-z0-9_~-]{1,32}){0,4}$"
                },
                "activation_code": { "type": "string", "pattern": TOKEN_PATTERN },
                "public_key": {
                    "type": "string",
                    "description": "Uncompressed SEC1 P-256 point (65 bytes, 0x04 first), base64url",
                    "pattern": "^B[A-P][A-Za-z0-9_-]{84}[AEIMQUYcgkosw048]$"
                },
                "push": push,
                "device_name": display_text(128),
                "platform": display_text(64),
                "signature": { "type": "string", "pattern": "^[A-Za-z0-9_-]+$" }
            },
            "additionalProperties": false
        });
        serde_json::from_value(schema).unwrap_or_else(|_| RefOr::T(Schema::default()))
    }
}

impl ToSchema for EnrollmentRequestBody {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("EnrollmentRequest")
    }
}

/// The four headers of a signed device request (PROTOCOL.md §5; the signature covers the
/// method, the path and query, the timestamp, the nonce, the device id and the body's SHA-256).
/// Documentation only: `signed_device` reads them.
#[derive(Debug, utoipa::IntoParams)]
#[into_params(parameter_in = Header)]
#[expect(dead_code, reason = "documents the OpenAPI parameters only")]
pub struct SignedRequestHeaders {
    /// The `device_id` from enrollment.
    #[param(rename = "Countersign-Device-Id", pattern = "^[A-Za-z0-9_-]{1,64}$")]
    device_id: String,
    /// Current unix seconds, decimal digits only.
    #[param(rename = "Countersign-Timestamp", pattern = "^[0-9]{1,19}$")]
    timestamp: String,
    /// A fresh random nonce of 16-64 bytes, canonical base64url without padding.
    #[param(rename = "Countersign-Nonce")]
    nonce: Nonce,
    /// The device's ECDSA P-256 signature over the canonical bytes, DER, base64url.
    #[param(rename = "Countersign-Signature", pattern = "^[A-Za-z0-9_-]+$")]
    signature: String,
}

/// Refusals every device endpoint shares (PROTOCOL.md §9).
#[derive(Debug, utoipa::IntoResponses)]
pub enum DeviceRefusals {
    /// `invalid_request`: malformed JSON, header or field, or a limit exceeded;
    /// `unsupported_protocol_version`.
    #[response(status = 400)]
    InvalidRequest(ErrorBody),
    /// `signature_invalid` (also for an unknown device), `request_expired`, `device_revoked`.
    #[response(status = 401)]
    Unauthenticated(ErrorBody),
    /// `payload_too_large`: the body is larger than 16 KiB.
    #[response(status = 413)]
    PayloadTooLarge(ErrorBody),
    /// `internal_error`: a server fault; quote `request_id`.
    #[response(status = 500)]
    Internal(ErrorBody),
    /// `timeout` or `busy`: retry later.
    #[response(status = 503)]
    Unavailable(ErrorBody),
}

/// Refusals of the requests authenticated by the signed-request headers (PROTOCOL.md §5).
#[derive(Debug, utoipa::IntoResponses)]
pub enum SignedRequestRefusals {
    /// `request_replayed`: this nonce was already used by this device; also
    /// `challenge_not_pending` (challenge details) and `factor_already_bound` (push token).
    #[response(status = 409)]
    Replayed(ErrorBody),
    /// `rate_limited`: too many refused requests for this device id or from this network;
    /// honour `Retry-After`.
    #[response(status = 429)]
    RateLimited(ErrorBody),
}
