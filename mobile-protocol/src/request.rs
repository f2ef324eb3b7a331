//! Signed device requests: four headers that authenticate a device's HTTP request.
//!
//! Used for `GET /device/v1/challenges`, `GET /device/v1/challenges/{id}`,
//! `PUT /device/v1/push-token` and `DELETE /device/v1`. The signature binds the method, the
//! path and query, a timestamp, a random nonce, the device id and the SHA-256 of the body, so a
//! captured request can be neither altered nor redirected to another endpoint. The server
//! rejects timestamps outside its skew window and remembers each nonce until the timestamp
//! leaves that window, so within the window a replay is caught by the nonce and after it by the
//! timestamp. This crate never reads the clock: the caller passes `now`.

use ring::digest::{SHA256, digest};
use ring::rand::SecureRandom;
use ring::signature::EcdsaKeyPair;

use crate::canonical::{CanonicalWriter, Label};
use crate::error::ProtocolError;
use crate::fields::{DeviceId, Nonce};
use crate::keys::{self, PublicKey};
use crate::limits::{MAX_METHOD_LEN, MAX_PATH_AND_QUERY_LEN};
use crate::signature::Signature;

/// Header carrying the device id.
pub const HEADER_DEVICE_ID: &str = "countersign-device-id";
/// Header carrying the timestamp, decimal unix seconds.
pub const HEADER_TIMESTAMP: &str = "countersign-timestamp";
/// Header carrying the request nonce, unpadded base64url of 16..=64 random bytes.
pub const HEADER_NONCE: &str = "countersign-nonce";
/// Header carrying the signature, unpadded base64url of the DER bytes.
pub const HEADER_SIGNATURE: &str = "countersign-signature";

/// The parts of an HTTP request a device signature covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpRequest<'a> {
    /// Uppercase method, e.g. `GET`.
    pub method: &'a str,
    /// Path and query relative to the server base URL, exactly as sent (still percent-encoded),
    /// e.g. `/device/v1/challenges?limit=5`.
    pub path_and_query: &'a str,
    /// The exact body bytes (empty for `GET` and `DELETE`).
    pub body: &'a [u8],
}

impl HttpRequest<'_> {
    /// Canonical bytes: label, method, path_and_query, timestamp (u64), nonce (raw bytes),
    /// device_id, SHA-256(body) (32 raw bytes).
    pub fn canonical_bytes(
        &self,
        timestamp: u64,
        nonce: &Nonce,
        device_id: &DeviceId,
    ) -> Result<Vec<u8>, ProtocolError> {
        self.check()?;
        CanonicalWriter::new(Label::DeviceRequest)
            .text(self.method)
            .text(self.path_and_query)
            .u64(timestamp)
            .bytes(nonce.as_bytes())
            .text(device_id.as_str())
            .bytes(digest(&SHA256, self.body).as_ref())
            .finish()
    }

    fn check(&self) -> Result<(), ProtocolError> {
        if self.method.is_empty() || self.method.len() > MAX_METHOD_LEN {
            return Err(ProtocolError::InvalidField {
                field: "method",
                reason: "must be 1 to 16 uppercase letters",
            });
        }
        if !self.method.bytes().all(|b| b.is_ascii_uppercase()) {
            return Err(ProtocolError::InvalidField {
                field: "method",
                reason: "must be 1 to 16 uppercase letters",
            });
        }
        if self.path_and_query.len() > MAX_PATH_AND_QUERY_LEN {
            return Err(ProtocolError::FieldTooLong { field: "path_and_query", max: MAX_PATH_AND_QUERY_LEN });
        }
        if !self.path_and_query.starts_with('/') || !self.path_and_query.bytes().all(|b| b.is_ascii_graphic())
        {
            return Err(ProtocolError::InvalidField {
                field: "path_and_query",
                reason: "must start with '/' and hold only printable ASCII without spaces",
            });
        }
        Ok(())
    }
}

/// The four authentication headers of a signed device request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestHeaders {
    /// `countersign-device-id`.
    pub device_id: DeviceId,
    /// `countersign-timestamp`, unix seconds.
    pub timestamp: u64,
    /// `countersign-nonce`.
    pub nonce: Nonce,
    /// `countersign-signature`.
    pub signature: Signature,
}

impl RequestHeaders {
    /// Device side: signs `request` with a fresh 256-bit nonce.
    pub fn sign(
        key_pair: &EcdsaKeyPair,
        rng: &dyn SecureRandom,
        device_id: DeviceId,
        request: &HttpRequest<'_>,
        timestamp: u64,
    ) -> Result<Self, ProtocolError> {
        let nonce = Nonce::generate(rng)?;
        let canonical = request.canonical_bytes(timestamp, &nonce, &device_id)?;
        let signature = keys::sign(key_pair, rng, &canonical)?;
        Ok(Self { device_id, timestamp, nonce, signature })
    }

    /// Header names and values, ready to add to a request.
    pub fn to_pairs(&self) -> [(&'static str, String); 4] {
        [
            (HEADER_DEVICE_ID, self.device_id.to_string()),
            (HEADER_TIMESTAMP, self.timestamp.to_string()),
            (HEADER_NONCE, self.nonce.to_base64url()),
            (HEADER_SIGNATURE, self.signature.to_base64url()),
        ]
    }

    /// Server side: parses the header values (`None` when a header is absent).
    pub fn parse(
        device_id: Option<&str>,
        timestamp: Option<&str>,
        nonce: Option<&str>,
        signature: Option<&str>,
    ) -> Result<Self, ProtocolError> {
        fn required<'a>(value: Option<&'a str>, field: &'static str) -> Result<&'a str, ProtocolError> {
            value.ok_or(ProtocolError::MissingField { field })
        }
        let timestamp = required(timestamp, HEADER_TIMESTAMP)?;
        let is_decimal =
            !timestamp.is_empty() && timestamp.len() <= 20 && timestamp.bytes().all(|b| b.is_ascii_digit());
        let timestamp =
            timestamp.parse::<u64>().ok().filter(|_| is_decimal).ok_or(ProtocolError::InvalidField {
                field: HEADER_TIMESTAMP,
                reason: "must be decimal unix seconds",
            })?;
        Ok(Self {
            device_id: DeviceId::new(required(device_id, HEADER_DEVICE_ID)?)?,
            timestamp,
            nonce: Nonce::from_base64url(required(nonce, HEADER_NONCE)?)?,
            signature: Signature::from_base64url(required(signature, HEADER_SIGNATURE)?)?,
        })
    }

    /// Server side: checks the signature under the device's key, then the clock skew.
    ///
    /// The signature comes first so that a caller without the key learns nothing from the
    /// timestamp check: for a server that verifies unknown device ids against a dummy key, a
    /// stale request then gets `signature_invalid` whether or not the device id exists.
    ///
    /// On success the caller must still record `(device_id, nonce)` until `timestamp +
    /// max_skew_secs` has passed and reject the request if the pair was already recorded
    /// (`409 request_replayed`); and check that the device is not revoked.
    pub fn verify(
        &self,
        device_key: &PublicKey,
        request: &HttpRequest<'_>,
        now: u64,
        max_skew_secs: u64,
    ) -> Result<VerifiedRequest, ProtocolError> {
        let canonical = request.canonical_bytes(self.timestamp, &self.nonce, &self.device_id)?;
        device_key.verify(&canonical, &self.signature)?;
        if self.timestamp.abs_diff(now) > max_skew_secs {
            return Err(ProtocolError::TimestampOutOfWindow {
                timestamp: self.timestamp,
                now,
                max_skew_secs,
            });
        }
        Ok(VerifiedRequest {
            device_id: self.device_id.clone(),
            nonce: self.nonce.clone(),
            timestamp: self.timestamp,
            replay_window_ends_at: self.timestamp.saturating_add(max_skew_secs),
        })
    }
}

/// A request whose signature and timestamp checked out; the replay check is the caller's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedRequest {
    /// The authenticated device.
    pub device_id: DeviceId,
    /// Nonce to record; a second request with the same `(device_id, nonce)` is a replay.
    pub nonce: Nonce,
    /// The request's timestamp.
    pub timestamp: u64,
    /// Unix second after which this request would fail the skew check anyway, so the nonce
    /// record may be dropped.
    pub replay_window_ends_at: u64,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use ring::rand::SystemRandom;

    const GET: HttpRequest<'static> =
        HttpRequest { method: "GET", path_and_query: "/device/v1/challenges", body: b"" };

    fn setup() -> (SystemRandom, EcdsaKeyPair, PublicKey, DeviceId) {
        let rng = SystemRandom::new();
        let pair = keys::key_pair_from_pkcs8(&keys::generate_pkcs8(&rng).unwrap(), &rng).unwrap();
        let key = PublicKey::from_key_pair(&pair).unwrap();
        (rng, pair, key, DeviceId::new("dev-1").unwrap())
    }

    #[test]
    fn headers_round_trip_and_verify() {
        let (rng, pair, key, id) = setup();
        let headers = RequestHeaders::sign(&pair, &rng, id, &GET, 1_700_000_000).unwrap();
        let pairs = headers.to_pairs();
        let value = |name: &str| pairs.iter().find(|(n, _)| *n == name).map(|(_, v)| v.as_str());
        let parsed = RequestHeaders::parse(
            value(HEADER_DEVICE_ID),
            value(HEADER_TIMESTAMP),
            value(HEADER_NONCE),
            value(HEADER_SIGNATURE),
        )
        .unwrap();
        assert_eq!(parsed, headers);
        let verified = parsed.verify(&key, &GET, 1_700_000_100, 300).unwrap();
        assert_eq!(verified.nonce, headers.nonce);
        assert_eq!(verified.replay_window_ends_at, 1_700_000_300);
    }

    #[test]
    fn skew_is_enforced_both_ways() {
        let (rng, pair, key, id) = setup();
        let headers = RequestHeaders::sign(&pair, &rng, id, &GET, 1_000).unwrap();
        assert!(headers.verify(&key, &GET, 1_300, 300).is_ok());
        assert!(headers.verify(&key, &GET, 700, 300).is_ok());
        for now in [1_301, 699, 0, u64::MAX] {
            assert!(matches!(
                headers.verify(&key, &GET, now, 300),
                Err(ProtocolError::TimestampOutOfWindow { .. })
            ));
        }
    }

    /// Attack: probing with a stale timestamp and no key. Checking the timestamp first told a
    /// caller holding no key that the signature was never looked at.
    #[test]
    fn the_signature_is_checked_before_the_timestamp() {
        let (rng, pair, _, id) = setup();
        let (_, _, other_key, _) = setup();
        let headers = RequestHeaders::sign(&pair, &rng, id, &GET, 1_000).unwrap();
        assert_eq!(headers.verify(&other_key, &GET, 1_000_000, 300), Err(ProtocolError::SignatureInvalid));
    }

    #[test]
    fn method_path_and_body_are_bound() {
        let (rng, pair, key, id) = setup();
        let put = HttpRequest {
            method: "PUT",
            path_and_query: "/device/v1/push-token",
            body: br#"{"provider":"none"}"#,
        };
        let headers = RequestHeaders::sign(&pair, &rng, id, &put, 5_000).unwrap();
        assert!(headers.verify(&key, &put, 5_000, 300).is_ok());
        for altered in [
            HttpRequest { method: "POST", ..put },
            HttpRequest { path_and_query: "/device/v1/push-token?x", ..put },
            HttpRequest { body: br#"{"provider":"fcm"}"#, ..put },
        ] {
            assert_eq!(headers.verify(&key, &altered, 5_000, 300), Err(ProtocolError::SignatureInvalid));
        }
    }

    #[test]
    fn parse_reports_missing_and_bad_headers() {
        assert_eq!(
            RequestHeaders::parse(Some("d"), None, Some("x"), Some("y")),
            Err(ProtocolError::MissingField { field: HEADER_TIMESTAMP })
        );
        for bad in ["", "+5", "-1", "1.0", "99999999999999999999999"] {
            assert!(RequestHeaders::parse(Some("d"), Some(bad), Some("x"), Some("y")).is_err());
        }
    }
}
