//! The canonical byte encoding that every signature in the protocol covers.
//!
//! One writer, used by every message, so there is exactly one encoding to review and to
//! implement on a phone. The layout is a sequence of items:
//!
//! * byte strings and text (UTF-8): `u32` big-endian length, then the bytes;
//! * integers: `u64` big-endian, 8 bytes, no length prefix (their size is fixed);
//! * enums: their fixed ASCII name, encoded as text;
//! * absent optional values: the empty byte string (each message states why that is unambiguous).
//!
//! The first item is always a [`Label`] (encoded as text) naming the message type and protocol
//! version. Length prefixes make the encoding injective for a fixed field list (`("ab","c")` and
//! `("a","bc")` differ), and the label makes it injective across message types, so a signature
//! can only ever be valid for the one message it was made for.

use crate::error::ProtocolError;

/// Domain-separation label: the first item of every signed message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Label {
    /// Device → server: proof of possession at enrollment.
    Enrollment,
    /// Device → server: a signed HTTP request (headers).
    DeviceRequest,
    /// Device → server: approve / deny / report for one challenge.
    ChallengeResponse,
    /// Server → device: details of a pending challenge. The only label the server signs, so no
    /// server signature can ever be mistaken for a device's and vice versa.
    ChallengeDetails,
}

impl Label {
    /// Every label.
    pub const ALL: [Label; 4] =
        [Self::Enrollment, Self::DeviceRequest, Self::ChallengeResponse, Self::ChallengeDetails];

    /// The label's exact ASCII bytes.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Enrollment => "countersign/v1/enrollment",
            Self::DeviceRequest => "countersign/v1/device-request",
            Self::ChallengeResponse => "countersign/v1/challenge-response",
            Self::ChallengeDetails => "countersign/v1/challenge-details",
        }
    }
}

/// Builds canonical bytes. Field order is the message's definition; see each message type.
///
/// Methods chain; a field too long for a `u32` length (impossible after validation, but never
/// silently truncated) makes [`CanonicalWriter::finish`] fail.
#[derive(Debug)]
pub(crate) struct CanonicalWriter {
    buf: Vec<u8>,
    is_overflowed: bool,
}

impl CanonicalWriter {
    /// Starts a message with its label.
    pub(crate) fn new(label: Label) -> Self {
        Self { buf: Vec::with_capacity(256), is_overflowed: false }.bytes(label.as_str().as_bytes())
    }

    /// Appends a length-prefixed byte string.
    pub(crate) fn bytes(mut self, value: &[u8]) -> Self {
        match u32::try_from(value.len()) {
            Ok(len) => {
                self.buf.extend_from_slice(&len.to_be_bytes());
                self.buf.extend_from_slice(value);
            }
            Err(_) => self.is_overflowed = true,
        }
        self
    }

    /// Appends length-prefixed UTF-8 text.
    pub(crate) fn text(self, value: &str) -> Self {
        self.bytes(value.as_bytes())
    }

    /// Appends an unsigned integer as 8 bytes, big-endian.
    pub(crate) fn u64(mut self, value: u64) -> Self {
        self.buf.extend_from_slice(&value.to_be_bytes());
        self
    }

    /// The finished canonical bytes.
    pub(crate) fn finish(self) -> Result<Vec<u8>, ProtocolError> {
        if self.is_overflowed {
            return Err(ProtocolError::FieldTooLong { field: "canonical field", max: u32::MAX as usize });
        }
        Ok(self.buf)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn layout_is_length_prefixed_big_endian() {
        let bytes =
            CanonicalWriter::new(Label::DeviceRequest).text("ab").u64(0x0102).bytes(&[]).finish().unwrap();
        let mut expected = vec![0, 0, 0, 29];
        expected.extend_from_slice(b"countersign/v1/device-request");
        expected.extend_from_slice(&[0, 0, 0, 2, b'a', b'b']);
        expected.extend_from_slice(&[0, 0, 0, 0, 0, 0, 1, 2]);
        expected.extend_from_slice(&[0, 0, 0, 0]);
        assert_eq!(bytes, expected);
    }

    #[test]
    fn labels_are_distinct_and_versioned() {
        for (i, a) in Label::ALL.iter().enumerate() {
            assert!(a.as_str().starts_with("countersign/v1/"));
            for b in &Label::ALL[i + 1..] {
                assert_ne!(a.as_str(), b.as_str());
            }
        }
    }
}
