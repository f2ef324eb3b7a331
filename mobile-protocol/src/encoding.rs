//! Unpadded base64url (RFC 4648 §5), the only binary-to-text encoding on the wire.
//!
//! Decoding is strict: padding, the standard alphabet, whitespace and non-zero trailing bits are
//! all rejected, so every byte string has exactly one textual form.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::error::ProtocolError;

/// Encodes `bytes` as unpadded base64url.
pub(crate) fn encode(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Decodes unpadded base64url, refusing input longer than needed for `max_bytes` before decoding.
pub(crate) fn decode(field: &'static str, text: &str, max_bytes: usize) -> Result<Vec<u8>, ProtocolError> {
    if text.len() > max_bytes.div_ceil(3) * 4 {
        return Err(ProtocolError::FieldTooLong { field, max: max_bytes });
    }
    URL_SAFE_NO_PAD.decode(text).map_err(|_| ProtocolError::Base64 { field })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn rejects_padding_standard_alphabet_and_trailing_bits() {
        assert_eq!(decode("f", "AQI", 8).unwrap(), vec![1, 2]);
        assert!(decode("f", "AQI=", 8).is_err());
        assert!(decode("f", "+/8", 8).is_err());
        assert!(decode("f", "AQJ", 8).is_err(), "non-zero trailing bits");
        assert!(decode("f", " AQI", 8).is_err());
        assert_eq!(decode("f", "AAAAAAAA", 3), Err(ProtocolError::FieldTooLong { field: "f", max: 3 }));
    }
}
