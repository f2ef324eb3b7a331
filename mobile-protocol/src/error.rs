//! [`ProtocolError`]: everything that can go wrong while parsing, signing or verifying.
//!
//! Variants are precise so that a mobile developer sees exactly which rule their bytes broke;
//! [`ProtocolError::error_code`] collapses them to the stable wire codes a client may match on,
//! so the server maps them to HTTP in one place and never leaks more than the code implies.

use crate::api_error::ErrorCode;

/// Error from parsing, validating, signing or verifying a protocol message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProtocolError {
    /// A field that must be unpadded base64url (RFC 4648 §5) is not.
    #[error("{field}: not canonical unpadded base64url")]
    Base64 {
        /// Which field.
        field: &'static str,
    },
    /// A public key that is not 65 bytes long (and not a recognisable compressed point).
    #[error("public key must be a 65-byte uncompressed SEC1 point (0x04 || X || Y), got {len} bytes")]
    PublicKeyLength {
        /// Length received.
        len: usize,
    },
    /// A 33-byte compressed SEC1 point; the protocol only carries uncompressed points.
    #[error(
        "public key is a compressed SEC1 point (prefix 0x{prefix:02x}); send the 65-byte uncompressed form"
    )]
    PublicKeyCompressed {
        /// First byte received (0x02 or 0x03).
        prefix: u8,
    },
    /// A 65-byte key whose first byte is not 0x04.
    #[error("public key must start with 0x04 (uncompressed SEC1), got 0x{prefix:02x}")]
    PublicKeyPrefix {
        /// First byte received.
        prefix: u8,
    },
    /// The signature is not a strict ASN.1 DER `ECDSA-Sig-Value` for P-256.
    #[error("signature is not a DER ECDSA-Sig-Value: {reason}")]
    SignatureMalformed {
        /// Which DER rule was broken.
        reason: &'static str,
    },
    /// Well-formed signature that does not verify under the given key and message
    /// (or the public key is not a point on P-256).
    #[error("signature does not verify")]
    SignatureInvalid,
    /// A required field is absent.
    #[error("{field} is missing")]
    MissingField {
        /// Which field.
        field: &'static str,
    },
    /// A field exceeds its size limit (see [`crate::limits`]).
    #[error("{field} is longer than {max} bytes")]
    FieldTooLong {
        /// Which field.
        field: &'static str,
        /// The limit in bytes.
        max: usize,
    },
    /// A field breaks a syntax rule.
    #[error("{field} is invalid: {reason}")]
    InvalidField {
        /// Which field.
        field: &'static str,
        /// The rule that was broken.
        reason: &'static str,
    },
    /// A signed field does not match what the verifier expected (e.g. the challenge id in the
    /// body differs from the one in the path, or the server URL is not this server's).
    #[error("{field} does not match the expected value")]
    Mismatch {
        /// Which field.
        field: &'static str,
    },
    /// A signed request's timestamp is too far from the verifier's clock.
    #[error("request timestamp {timestamp} is more than {max_skew_secs} s away from the server time {now}")]
    TimestampOutOfWindow {
        /// Timestamp in the request (unix seconds).
        timestamp: u64,
        /// Verifier's time (unix seconds).
        now: u64,
        /// Allowed skew in seconds.
        max_skew_secs: u64,
    },
    /// A message or URI names a protocol version this crate does not speak.
    #[error("unsupported protocol version {version}")]
    UnsupportedVersion {
        /// Version received (as text, since it may not even be a number).
        version: String,
    },
    /// The key pair is not ECDSA P-256 with SHA-256 and ASN.1 DER signatures.
    #[error("key pair must be ECDSA P-256 SHA-256 with ASN.1 (DER) signatures")]
    WrongKeyAlgorithm,
    /// ring refused a PKCS#8 document.
    #[error("private key rejected: {0}")]
    KeyRejected(String),
    /// Signing failed (ring reports no detail).
    #[error("signing failed")]
    SigningFailed,
    /// The random number generator failed.
    #[error("random number generator failed")]
    Random,
}

impl ProtocolError {
    /// The stable wire code the server returns for this error on a device endpoint.
    ///
    /// Errors that only a signer can hit (key and RNG failures) map to `internal_error`: if the
    /// server hits them with its own key, that is its fault, not the phone's.
    pub fn error_code(&self) -> ErrorCode {
        match self {
            Self::SignatureInvalid | Self::SignatureMalformed { .. } => ErrorCode::SignatureInvalid,
            Self::TimestampOutOfWindow { .. } => ErrorCode::RequestExpired,
            Self::UnsupportedVersion { .. } => ErrorCode::UnsupportedProtocolVersion,
            Self::Base64 { .. }
            | Self::PublicKeyLength { .. }
            | Self::PublicKeyCompressed { .. }
            | Self::PublicKeyPrefix { .. }
            | Self::MissingField { .. }
            | Self::FieldTooLong { .. }
            | Self::InvalidField { .. }
            | Self::Mismatch { .. } => ErrorCode::InvalidRequest,
            Self::WrongKeyAlgorithm | Self::KeyRejected(_) | Self::SigningFailed | Self::Random => {
                ErrorCode::InternalError
            }
        }
    }
}
