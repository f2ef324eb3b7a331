//! P-256 public keys on the wire, key pairs, and the one place that signs and verifies.
//!
//! Keys are ECDSA P-256 with SHA-256 because that is what the Secure Enclave and Android
//! StrongBox hold. Public keys travel as the uncompressed SEC1 point `0x04 || X || Y` (65 bytes),
//! which both platforms export directly (`SecKeyCopyExternalRepresentation` on iOS; the last 65
//! bytes of the X.509 SubjectPublicKeyInfo from `PublicKey.getEncoded()` on Android). Compressed
//! points and any other length are refused with an error that says which rule was broken.

use ring::rand::SecureRandom;
use ring::signature::{
    ECDSA_P256_SHA256_ASN1, ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair, KeyPair as _, UnparsedPublicKey,
};
use serde::{Deserialize, Serialize};

use crate::encoding;
use crate::error::ProtocolError;
use crate::signature::Signature;

/// Length of an uncompressed SEC1 P-256 point.
pub const PUBLIC_KEY_LEN: usize = 65;

/// A P-256 public key as an uncompressed SEC1 point; a device's key or the server's.
///
/// Construction checks length and prefix only. Whether the point lies on the curve is checked by
/// ring on every verification, and enrollment verifies a proof-of-possession signature before a
/// key is stored, so an off-curve key can never be enrolled.
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct PublicKey([u8; PUBLIC_KEY_LEN]);

impl PublicKey {
    /// Accepts the 65-byte uncompressed SEC1 encoding.
    pub fn from_sec1(bytes: &[u8]) -> Result<Self, ProtocolError> {
        match (bytes.len(), bytes.first()) {
            (PUBLIC_KEY_LEN, Some(0x04)) => {
                let mut point = [0u8; PUBLIC_KEY_LEN];
                point.copy_from_slice(bytes);
                Ok(Self(point))
            }
            (PUBLIC_KEY_LEN, Some(&prefix)) => Err(ProtocolError::PublicKeyPrefix { prefix }),
            (33, Some(&prefix @ (0x02 | 0x03))) => Err(ProtocolError::PublicKeyCompressed { prefix }),
            (len, _) => Err(ProtocolError::PublicKeyLength { len }),
        }
    }

    /// Parses the wire form (unpadded base64url of the SEC1 bytes).
    pub fn from_base64url(text: &str) -> Result<Self, ProtocolError> {
        // Allow a little more than 65 bytes through so an oversized key gets a length error.
        Self::from_sec1(&encoding::decode("public_key", text, 2 * PUBLIC_KEY_LEN)?)
    }

    /// The public half of a ring key pair, which must be P-256.
    pub fn from_key_pair(key_pair: &EcdsaKeyPair) -> Result<Self, ProtocolError> {
        Self::from_sec1(key_pair.public_key().as_ref()).map_err(|_| ProtocolError::WrongKeyAlgorithm)
    }

    /// The wire form.
    pub fn to_base64url(&self) -> String {
        encoding::encode(&self.0)
    }

    /// The 65 SEC1 bytes.
    pub fn as_bytes(&self) -> &[u8; PUBLIC_KEY_LEN] {
        &self.0
    }

    /// Verifies `signature` over `message` (already canonical bytes).
    ///
    /// Low level: callers normally use a message type's `verify`, which builds the canonical
    /// bytes (label included) itself. High-S signatures verify; see [`crate::signature`].
    pub fn verify(&self, message: &[u8], signature: &Signature) -> Result<(), ProtocolError> {
        UnparsedPublicKey::new(&ECDSA_P256_SHA256_ASN1, &self.0[..])
            .verify(message, signature.as_der())
            .map_err(|_| ProtocolError::SignatureInvalid)
    }
}

impl std::fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("PublicKey").field(&self.to_base64url()).finish()
    }
}

impl TryFrom<String> for PublicKey {
    type Error = ProtocolError;
    fn try_from(text: String) -> Result<Self, Self::Error> {
        Self::from_base64url(&text)
    }
}

impl From<PublicKey> for String {
    fn from(key: PublicKey) -> Self {
        key.to_base64url()
    }
}

/// Generates a new P-256 key pair as a PKCS#8 document (for the reference authenticator and for
/// the server's challenge-signing key; a real phone generates its key inside secure hardware).
pub fn generate_pkcs8(rng: &dyn SecureRandom) -> Result<Vec<u8>, ProtocolError> {
    EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, rng)
        .map(|doc| doc.as_ref().to_vec())
        .map_err(|_| ProtocolError::Random)
}

/// Loads a PKCS#8 P-256 key pair that produces DER signatures, the only kind this protocol uses.
pub fn key_pair_from_pkcs8(pkcs8: &[u8], rng: &dyn SecureRandom) -> Result<EcdsaKeyPair, ProtocolError> {
    EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, pkcs8, rng)
        .map_err(|e| ProtocolError::KeyRejected(e.to_string()))
}

/// Signs canonical bytes. The result is parsed back as DER, which also catches a key pair built
/// for fixed-length (`r || s`) signatures: those are not what the protocol carries.
pub(crate) fn sign(
    key_pair: &EcdsaKeyPair,
    rng: &dyn SecureRandom,
    canonical: &[u8],
) -> Result<Signature, ProtocolError> {
    PublicKey::from_key_pair(key_pair)?;
    let signature = key_pair.sign(rng, canonical).map_err(|_| ProtocolError::SigningFailed)?;
    Signature::from_der(signature.as_ref()).map_err(|_| ProtocolError::WrongKeyAlgorithm)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use ring::rand::SystemRandom;
    use ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING;

    #[test]
    fn rejects_wrong_shapes_precisely() {
        let mut point = [4u8; 65];
        assert!(PublicKey::from_sec1(&point).is_ok());
        point[0] = 0x05;
        assert_eq!(PublicKey::from_sec1(&point), Err(ProtocolError::PublicKeyPrefix { prefix: 5 }));
        assert_eq!(PublicKey::from_sec1(&[2u8; 33]), Err(ProtocolError::PublicKeyCompressed { prefix: 2 }));
        assert_eq!(PublicKey::from_sec1(&[4u8; 64]), Err(ProtocolError::PublicKeyLength { len: 64 }));
        assert_eq!(PublicKey::from_sec1(&[]), Err(ProtocolError::PublicKeyLength { len: 0 }));
    }

    #[test]
    fn sign_refuses_fixed_length_key_pairs() {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        let fixed = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng).unwrap();
        assert_eq!(sign(&fixed, &rng, b"x"), Err(ProtocolError::WrongKeyAlgorithm));
    }

    #[test]
    fn sign_then_verify() {
        let rng = SystemRandom::new();
        let pair = key_pair_from_pkcs8(&generate_pkcs8(&rng).unwrap(), &rng).unwrap();
        let key = PublicKey::from_key_pair(&pair).unwrap();
        let sig = sign(&pair, &rng, b"message").unwrap();
        assert_eq!(key.verify(b"message", &sig), Ok(()));
        assert_eq!(key.verify(b"messagf", &sig), Err(ProtocolError::SignatureInvalid));
    }
}
