//! ECDSA P-256 signatures as they travel: ASN.1 DER, unpadded base64url.
//!
//! DER is what iOS (`SecKeyCreateSignature` with `.ecdsaSignatureMessageX962SHA256`) and Android
//! (`Signature.getInstance("SHA256withECDSA")`) produce natively, so phones send their output
//! unchanged. Parsing is strict DER (minimal lengths and integers, no trailing bytes) so that a
//! malformed signature is reported as such instead of as a failed verification.
//!
//! High-S signatures are accepted on purpose: phones do not normalise `s`, and nothing in the
//! protocol depends on a signature having a single encoding. Replay protection comes from the
//! server nonce, the per-device counter and the request nonce, all inside the signed bytes, and
//! never from remembering signature bytes; so the malleated twin `(r, n - s)` of a valid
//! signature is exactly as (un)usable as the original.

use serde::{Deserialize, Serialize};

use crate::encoding;
use crate::error::ProtocolError;

/// Longest DER encoding of a P-256 `ECDSA-Sig-Value`: 2 bytes of header + 2 × (2 + 33).
pub const MAX_DER_LEN: usize = 72;

/// A DER-encoded ECDSA P-256 signature, structurally valid (not yet verified).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Signature(Vec<u8>);

impl Signature {
    /// Accepts DER bytes after checking their structure.
    pub fn from_der(der: &[u8]) -> Result<Self, ProtocolError> {
        check_der(der)?;
        Ok(Self(der.to_vec()))
    }

    /// Parses the wire form (unpadded base64url of the DER bytes). Text that is not base64url, or
    /// too long to be a P-256 signature, is a malformed signature too (`signature_invalid` on the
    /// wire, PROTOCOL.md §9), like DER that breaks a rule.
    pub fn from_base64url(text: &str) -> Result<Self, ProtocolError> {
        let der = encoding::decode("signature", text, MAX_DER_LEN).map_err(|error| match error {
            ProtocolError::FieldTooLong { .. } => malformed("longer than 72 bytes"),
            _ => malformed("not canonical unpadded base64url"),
        })?;
        Self::from_der(&der)
    }

    /// The wire form.
    pub fn to_base64url(&self) -> String {
        encoding::encode(&self.0)
    }

    /// The DER bytes.
    pub fn as_der(&self) -> &[u8] {
        &self.0
    }
}

impl TryFrom<String> for Signature {
    type Error = ProtocolError;
    fn try_from(text: String) -> Result<Self, Self::Error> {
        Self::from_base64url(&text)
    }
}

impl From<Signature> for String {
    fn from(signature: Signature) -> Self {
        signature.to_base64url()
    }
}

fn malformed(reason: &'static str) -> ProtocolError {
    ProtocolError::SignatureMalformed { reason }
}

/// `SEQUENCE { r INTEGER, s INTEGER }` in strict DER, each integer positive and at most 256 bits.
/// Whether `r` and `s` are below the group order is left to ring's verification.
fn check_der(der: &[u8]) -> Result<(), ProtocolError> {
    if der.len() > MAX_DER_LEN {
        return Err(malformed("longer than 72 bytes"));
    }
    let (&tag, rest) = der.split_first().ok_or(malformed("empty"))?;
    if tag != 0x30 {
        return Err(malformed("does not start with a SEQUENCE tag (0x30)"));
    }
    let (&len, content) = rest.split_first().ok_or(malformed("truncated"))?;
    if len >= 0x80 {
        return Err(malformed("SEQUENCE length is not in DER short form"));
    }
    if usize::from(len) != content.len() {
        return Err(malformed("SEQUENCE length does not match the data"));
    }
    let content = check_integer(content)?;
    let content = check_integer(content)?;
    if !content.is_empty() {
        return Err(malformed("trailing bytes inside the SEQUENCE"));
    }
    Ok(())
}

/// Checks one INTEGER at the start of `input`, returns what follows it.
fn check_integer(input: &[u8]) -> Result<&[u8], ProtocolError> {
    let [tag, len, rest @ ..] = input else {
        return Err(malformed("truncated INTEGER"));
    };
    if *tag != 0x02 {
        return Err(malformed("expected an INTEGER tag (0x02)"));
    }
    let len = usize::from(*len);
    if len == 0 {
        return Err(malformed("empty INTEGER"));
    }
    if len > 33 {
        return Err(malformed("INTEGER longer than 256 bits"));
    }
    let (value, rest) = rest.split_at_checked(len).ok_or(malformed("INTEGER length exceeds the data"))?;
    match value {
        [first, ..] if first & 0x80 != 0 => Err(malformed("negative INTEGER")),
        [0] => Err(malformed("zero INTEGER")),
        [0, second, ..] if second & 0x80 == 0 => Err(malformed("INTEGER not minimally encoded")),
        [first, ..] if value.len() == 33 && *first != 0 => Err(malformed("INTEGER longer than 256 bits")),
        _ => Ok(rest),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    fn reason(der: &[u8]) -> &'static str {
        match Signature::from_der(der) {
            Err(ProtocolError::SignatureMalformed { reason }) => reason,
            other => panic!("expected malformed, got {other:?}"),
        }
    }

    #[test]
    fn text_that_is_not_a_signature_is_a_malformed_signature() {
        for text in ["!!!!", "MEUC=", &"A".repeat(200)] {
            assert!(
                matches!(Signature::from_base64url(text), Err(ProtocolError::SignatureMalformed { .. })),
                "{text}"
            );
        }
    }

    #[test]
    fn accepts_minimal_der() {
        assert!(Signature::from_der(&[0x30, 6, 2, 1, 1, 2, 1, 0x7f]).is_ok());
        let mut long = vec![0x30, 70, 2, 33, 0];
        long.extend_from_slice(&[0x80; 32]);
        long.extend_from_slice(&[2, 33, 0]);
        long.extend_from_slice(&[0xff; 32]);
        assert!(Signature::from_der(&long).is_ok());
    }

    #[test]
    fn rejects_each_der_rule() {
        assert_eq!(reason(&[]), "empty");
        assert_eq!(reason(&[0x31, 6, 2, 1, 1, 2, 1, 1]), "does not start with a SEQUENCE tag (0x30)");
        assert_eq!(reason(&[0x30, 7, 2, 1, 1, 2, 1, 1]), "SEQUENCE length does not match the data");
        assert_eq!(reason(&[0x30, 0x81, 6, 2, 1, 1, 2, 1, 1]), "SEQUENCE length is not in DER short form");
        assert_eq!(reason(&[0x30, 6, 3, 1, 1, 2, 1, 1]), "expected an INTEGER tag (0x02)");
        assert_eq!(reason(&[0x30, 6, 2, 1, 0x81, 2, 1, 1]), "negative INTEGER");
        assert_eq!(reason(&[0x30, 6, 2, 1, 0, 2, 1, 1]), "zero INTEGER");
        assert_eq!(reason(&[0x30, 7, 2, 2, 0, 1, 2, 1, 1]), "INTEGER not minimally encoded");
        assert_eq!(reason(&[0x30, 9, 2, 1, 1, 2, 1, 1, 5, 0, 0]), "trailing bytes inside the SEQUENCE");
        assert_eq!(reason(&[0x30, 4, 2, 1, 1, 2]), "truncated INTEGER");
        assert_eq!(reason(&[0x30, 5, 2, 1, 1, 2, 2]), "INTEGER length exceeds the data");
        assert_eq!(reason(&[0x30, 6, 2, 1, 1, 2, 2, 1]), "INTEGER length exceeds the data");
    }
}
