//! Identifiers, nonces and the display-text rule shared by every message.
//!
//! Identifiers are newtypes validated on construction and on deserialisation, so a value of
//! these types is always safe to put in a header, a path or a log line. Free text (device name,
//! app name, ...) is checked by [`check_text`] when a message is signed or verified.

use ring::rand::SecureRandom;
use serde::{Deserialize, Serialize};

use crate::encoding;
use crate::error::ProtocolError;
use crate::limits::{
    GENERATED_NONCE_LEN, MAX_ACTIVATION_CODE_LEN, MAX_ID_LEN, MAX_NONCE_LEN, MAX_SERVER_ID_LEN, MIN_NONCE_LEN,
};

/// Defines a string newtype restricted to `[A-Za-z0-9_-]{1,max}`: URL-, header- and log-safe
/// without any escaping.
macro_rules! token_newtype {
    ($(#[$doc:meta])* $name:ident, $field:literal, $max:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            /// Validates and wraps the value.
            pub fn new(value: impl Into<String>) -> Result<Self, ProtocolError> {
                let value = value.into();
                check_token($field, &value, $max)?;
                Ok(Self(value))
            }

            /// The value as text (also its canonical bytes).
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = ProtocolError;
            fn try_from(value: String) -> Result<Self, Self::Error> {
                Self::new(value)
            }
        }

        impl From<$name> for String {
            fn from(value: $name) -> Self {
                value.0
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

token_newtype!(
    /// Device identifier assigned by the server at enrollment (e.g. a UUID).
    DeviceId,
    "device_id",
    MAX_ID_LEN
);
token_newtype!(
    /// Challenge identifier; the only thing a push notification carries besides generic text.
    ChallengeId,
    "challenge_id",
    MAX_ID_LEN
);
token_newtype!(
    /// Single-use activation code from the enrollment URI. The server generates it with at least
    /// 128 bits of entropy; the protocol only bounds its size and alphabet.
    ActivationCode,
    "activation_code",
    MAX_ACTIVATION_CODE_LEN
);

fn check_token(field: &'static str, value: &str, max: usize) -> Result<(), ProtocolError> {
    if value.is_empty() {
        return Err(ProtocolError::MissingField { field });
    }
    if value.len() > max {
        return Err(ProtocolError::FieldTooLong { field, max });
    }
    if !value.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
        return Err(ProtocolError::InvalidField {
            field,
            reason: "only A-Z, a-z, 0-9, '-' and '_' are allowed",
        });
    }
    Ok(())
}

/// The server's stable identifier, returned at enrollment (printable ASCII, no spaces). Phones
/// key their accounts by it, and it is bound into every challenge-details signature.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ServerId(String);

impl ServerId {
    /// Validates and wraps the value.
    pub fn new(value: impl Into<String>) -> Result<Self, ProtocolError> {
        let value = value.into();
        check_printable_ascii("server_id", &value, MAX_SERVER_ID_LEN)?;
        Ok(Self(value))
    }

    /// The value as text (also its canonical bytes).
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for ServerId {
    type Error = ProtocolError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::new(value)
    }
}

impl From<ServerId> for String {
    fn from(value: ServerId) -> Self {
        value.0
    }
}

/// Non-empty printable ASCII (0x21..=0x7E) up to `max` bytes: push tokens, server ids.
pub(crate) fn check_printable_ascii(
    field: &'static str,
    value: &str,
    max: usize,
) -> Result<(), ProtocolError> {
    if value.is_empty() {
        return Err(ProtocolError::MissingField { field });
    }
    if value.len() > max {
        return Err(ProtocolError::FieldTooLong { field, max });
    }
    if !value.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(ProtocolError::InvalidField {
            field,
            reason: "only printable ASCII without spaces is allowed",
        });
    }
    Ok(())
}

/// Display text shown to the user (device name, app name, location, ...): UTF-8 up to `max`
/// bytes with no control characters and no bidirectional overrides, so what a phone shows is
/// what the server meant (no "Microsoft" that renders reversed, no hidden second line).
pub(crate) fn check_text(
    field: &'static str,
    value: &str,
    max: usize,
    is_empty_allowed: bool,
) -> Result<(), ProtocolError> {
    if value.is_empty() && !is_empty_allowed {
        return Err(ProtocolError::MissingField { field });
    }
    if value.len() > max {
        return Err(ProtocolError::FieldTooLong { field, max });
    }
    if value.chars().any(is_forbidden_in_text) {
        return Err(ProtocolError::InvalidField {
            field,
            reason: "control characters and bidirectional overrides are not allowed",
        });
    }
    Ok(())
}

/// Server side: makes untrusted text (an app's user agent, app name, location) acceptable as
/// display text by dropping forbidden characters and truncating to `max` bytes on a character
/// boundary, so signing challenge details never fails on what a caller sent.
pub fn sanitize_display_text(value: &str, max: usize) -> String {
    let mut out = String::with_capacity(value.len().min(max));
    for c in value.chars().filter(|&c| !is_forbidden_in_text(c)) {
        if out.len() + c.len_utf8() > max {
            break;
        }
        out.push(c);
    }
    out
}

/// Characters display text may not hold: controls (`Cc`), bidirectional controls (which make
/// text read otherwise than it was written, CVE-2021-42574), and invisible separators and
/// zero-width characters (which hide or move text): what the phone shows is what was sent.
pub fn is_forbidden_in_text(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{202A}'..='\u{202E}'
                | '\u{2066}'..='\u{2069}'
                | '\u{200B}'..='\u{200F}'
                | '\u{061C}'
                | '\u{2028}'
                | '\u{2029}'
                | '\u{2060}'..='\u{2064}'
                | '\u{FEFF}'
        )
}

/// A random nonce of 16 to 64 bytes (at least 128 bits), unpadded base64url on the wire and raw
/// bytes in canonical encodings.
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Nonce(Vec<u8>);

impl Nonce {
    /// A fresh 256-bit nonce.
    pub fn generate(rng: &dyn SecureRandom) -> Result<Self, ProtocolError> {
        let mut bytes = vec![0u8; GENERATED_NONCE_LEN];
        rng.fill(&mut bytes).map_err(|_| ProtocolError::Random)?;
        Ok(Self(bytes))
    }

    /// Wraps raw bytes after checking the length.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, ProtocolError> {
        if bytes.len() < MIN_NONCE_LEN {
            return Err(ProtocolError::InvalidField {
                field: "nonce",
                reason: "must be at least 16 bytes (128 bits)",
            });
        }
        if bytes.len() > MAX_NONCE_LEN {
            return Err(ProtocolError::FieldTooLong { field: "nonce", max: MAX_NONCE_LEN });
        }
        Ok(Self(bytes.to_vec()))
    }

    /// Parses the wire form.
    pub fn from_base64url(text: &str) -> Result<Self, ProtocolError> {
        Self::from_bytes(&encoding::decode("nonce", text, MAX_NONCE_LEN)?)
    }

    /// The wire form.
    pub fn to_base64url(&self) -> String {
        encoding::encode(&self.0)
    }

    /// The raw bytes (what canonical encodings carry).
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl std::fmt::Debug for Nonce {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Nonce").field(&self.to_base64url()).finish()
    }
}

impl TryFrom<String> for Nonce {
    type Error = ProtocolError;
    fn try_from(text: String) -> Result<Self, Self::Error> {
        Self::from_base64url(&text)
    }
}

impl From<Nonce> for String {
    fn from(nonce: Nonce) -> Self {
        nonce.to_base64url()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn tokens_are_bounded_and_header_safe() {
        assert!(DeviceId::new("3f2a9c1e-7b4d-4e8f-9a0b-1c2d3e4f5a6b").is_ok());
        assert_eq!(DeviceId::new(""), Err(ProtocolError::MissingField { field: "device_id" }));
        assert!(matches!(DeviceId::new("a\r\nb"), Err(ProtocolError::InvalidField { .. })));
        assert!(matches!(ChallengeId::new("x".repeat(65)), Err(ProtocolError::FieldTooLong { max: 64, .. })));
        assert!(serde_json::from_str::<DeviceId>("\"a b\"").is_err());
    }

    #[test]
    fn text_rejects_controls_and_bidi_overrides() {
        assert!(check_text("t", "Alice's iPhone 📱", 64, false).is_ok());
        assert!(check_text("t", "two\nlines", 64, false).is_err());
        assert!(check_text("t", "\u{202E}tfosorciM", 64, false).is_err());
        for hidden in ["pay\u{200B}pal", "a\u{2028}b", "a\u{2029}b", "\u{FEFF}bom", "a\u{2060}b", "\u{061C}x"]
        {
            assert!(check_text("t", hidden, 64, false).is_err(), "{hidden:?}");
        }
        assert!(check_text("t", "", 64, false).is_err());
        assert!(check_text("t", "", 64, true).is_ok());
        assert!(check_text("t", "ééé", 5, false).is_err(), "limit is in bytes");
    }

    #[test]
    fn sanitized_text_always_passes_the_check() {
        let dirty = "Mozilla\u{202E}/5.0\r\nX-Evil: ü€𝄞";
        for max in 0..40 {
            let clean = sanitize_display_text(dirty, max);
            assert!(clean.len() <= max);
            assert!(check_text("t", &clean, max, true).is_ok(), "{clean:?}");
        }
        assert_eq!(sanitize_display_text(dirty, 100), "Mozilla/5.0X-Evil: ü€𝄞");
    }

    #[test]
    fn nonce_needs_128_bits() {
        assert!(Nonce::from_bytes(&[0; 15]).is_err());
        assert!(Nonce::from_bytes(&[0; 16]).is_ok());
        assert!(Nonce::from_bytes(&[0; 65]).is_err());
        let n = Nonce::generate(&ring::rand::SystemRandom::new()).unwrap();
        assert_eq!(Nonce::from_base64url(&n.to_base64url()).unwrap(), n);
    }
}
