//! Key material: generating a key pair (PKCS#8), sealing and opening it under the master key,
//! its public JWK (with its certificate, see [`super::certificate`]), and compact JWS
//! signatures.
//!
//! ES256 keys come from ring, RS256 keys (2048-bit) from aws-lc-rs (ring cannot generate RSA
//! keys). Signing is done here rather than by `jsonwebtoken::encode`: its RS256 signer wants a
//! PKCS#1 key re-parsed on every call, while a key here is parsed once, from the PKCS#8 we
//! store, and both algorithms take one path. Relying parties (and our tests) verify the result
//! with `jsonwebtoken`.

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::signature::KeyPair as _;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::rand::{SecureRandom, SystemRandom};
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair as _};
use serde::Serialize;
use time::OffsetDateTime;

use super::certificate;
use super::model::{Jwk, SigningAlg};
use crate::secrets::MasterKey;

/// Bytes of randomness in a kid (22 base64url characters).
const KID_BYTES: usize = 16;

/// RSA modulus size of RS256 keys.
const RSA_KEY_SIZE: aws_lc_rs::rsa::KeySize = aws_lc_rs::rsa::KeySize::Rsa2048;

#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    #[error("the system random number generator failed")]
    Random,
    #[error("key generation failed")]
    Generate,
    #[error("the stored private key of {kid} cannot be decrypted: wrong master key or tampered row")]
    Sealed { kid: String },
    #[error("the stored key {kid} is invalid: {reason}")]
    Invalid { kid: String, reason: &'static str },
    #[error("signing failed")]
    Sign,
    #[error("the key's certificate could not be made")]
    Certificate,
    #[error("the claims do not serialize to JSON")]
    Claims(#[source] serde_json::Error),
}

/// A random, URL-safe key id.
pub fn new_kid() -> Result<String, CryptoError> {
    let mut bytes = [0u8; KID_BYTES];
    SystemRandom::new().fill(&mut bytes).map_err(|_| CryptoError::Random)?;
    Ok(URL_SAFE_NO_PAD.encode(bytes))
}

/// The authenticated context a key's private half is sealed under: its kid and algorithm, so a
/// sealed key moved to another row (or relabelled) does not open.
fn seal_context(kid: &str, alg: SigningAlg) -> Vec<u8> {
    format!("countersign/v1/oidc-signing-key/{kid}/{alg}").into_bytes()
}

/// A new key pair for `alg`: its PKCS#8 private key sealed under `master`, and its public JWK
/// carrying a certificate valid from `created_at`.
pub fn generate(
    alg: SigningAlg,
    kid: &str,
    master: &MasterKey,
    created_at: OffsetDateTime,
) -> Result<(Vec<u8>, Jwk), CryptoError> {
    let pkcs8 = match alg {
        SigningAlg::Es256 => {
            EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new())
                .map_err(|_| CryptoError::Generate)?
                .as_ref()
                .to_vec()
        }
        SigningAlg::Rs256 => aws_lc_rs::rsa::KeyPair::generate(RSA_KEY_SIZE)
            .and_then(|pair| pair.as_der())
            .map_err(|_| CryptoError::Generate)?
            .as_ref()
            .to_vec(),
    };
    let opened = OpenedKey::from_pkcs8(alg, kid, &pkcs8)?;
    let jwk = certified(opened.jwk, alg, kid, &pkcs8, created_at)?;
    let sealed = master.encrypt(&seal_context(kid, alg), &pkcs8).map_err(|_| CryptoError::Random)?;
    Ok((sealed, jwk))
}

/// `jwk` with a new certificate of the key `pkcs8`, valid from `not_before`.
fn certified(
    jwk: Jwk,
    alg: SigningAlg,
    kid: &str,
    pkcs8: &[u8],
    not_before: OffsetDateTime,
) -> Result<Jwk, CryptoError> {
    let key = certificate::key_pair(alg, kid, pkcs8)?;
    Ok(certificate::attach(jwk, &certificate::issue(kid, &key, not_before)?))
}

enum Signer {
    Es256(EcdsaKeyPair),
    Rs256(aws_lc_rs::rsa::KeyPair),
}

/// A key opened for signing. Its private half never leaves this type; `Debug` shows the kid.
pub struct OpenedKey {
    pub kid: String,
    pub alg: SigningAlg,
    /// The public key, derived from the private one, with its certificate.
    pub jwk: Jwk,
    signer: Signer,
}

impl std::fmt::Debug for OpenedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenedKey").field("kid", &self.kid).field("alg", &self.alg).finish_non_exhaustive()
    }
}

impl OpenedKey {
    /// Opens a stored key: decrypts it under `master` (fails closed with any other master key)
    /// and checks that the stored public JWK is the private key's, certificate included. A
    /// stored JWK without a certificate (a key created before certificates) gets one valid from
    /// `created_at`, made now from the private key: the JWK text to store is returned with the
    /// key (`None` when the stored JWK is served as it is).
    pub fn open(
        alg: SigningAlg,
        kid: &str,
        sealed_pkcs8: &[u8],
        public_jwk: &str,
        created_at: OffsetDateTime,
        master: &MasterKey,
    ) -> Result<(Self, Option<String>), CryptoError> {
        let pkcs8 = master
            .decrypt(&seal_context(kid, alg), sealed_pkcs8)
            .map_err(|_| CryptoError::Sealed { kid: kid.to_owned() })?;
        let mut opened = Self::from_pkcs8(alg, kid, &pkcs8)?;
        let invalid = |reason| CryptoError::Invalid { kid: kid.to_owned(), reason };
        let stored: Jwk =
            serde_json::from_str(public_jwk).map_err(|_| invalid("the public JWK does not parse"))?;
        if certificate::detach(&stored) != opened.jwk {
            return Err(invalid("the public JWK is not the private key's"));
        }
        if stored.x5c.is_none() && stored.x5t.is_none() && stored.x5t_s256.is_none() {
            opened.jwk = certified(opened.jwk, alg, kid, &pkcs8, created_at)?;
            let to_store = serde_json::to_string(&opened.jwk).map_err(CryptoError::Claims)?;
            return Ok((opened, Some(to_store)));
        }
        certificate::check(&stored, &certificate::key_pair(alg, kid, &pkcs8)?).map_err(invalid)?;
        opened.jwk = stored;
        Ok((opened, None))
    }

    fn from_pkcs8(alg: SigningAlg, kid: &str, pkcs8: &[u8]) -> Result<Self, CryptoError> {
        let invalid = |reason| CryptoError::Invalid { kid: kid.to_owned(), reason };
        let (signer, jwk) = match alg {
            SigningAlg::Es256 => {
                let pair =
                    EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8, &SystemRandom::new())
                        .map_err(|_| invalid("not a P-256 PKCS#8 key"))?;
                let point = pair.public_key().as_ref();
                // Uncompressed SEC1: 0x04 ‖ x ‖ y.
                if point.len() != 65 || point[0] != 4 {
                    return Err(invalid("not an uncompressed P-256 point"));
                }
                let jwk = Jwk {
                    crv: Some("P-256".into()),
                    x: Some(URL_SAFE_NO_PAD.encode(&point[1..33])),
                    y: Some(URL_SAFE_NO_PAD.encode(&point[33..])),
                    ..public_jwk("EC", alg, kid)
                };
                (Signer::Es256(pair), jwk)
            }
            SigningAlg::Rs256 => {
                let pair = aws_lc_rs::rsa::KeyPair::from_pkcs8(pkcs8)
                    .map_err(|_| invalid("not an RSA PKCS#8 key"))?;
                let components =
                    aws_lc_rs::signature::RsaPublicKeyComponents::<Vec<u8>>::from(pair.public_key());
                let jwk = Jwk {
                    n: Some(URL_SAFE_NO_PAD.encode(&components.n)),
                    e: Some(URL_SAFE_NO_PAD.encode(&components.e)),
                    ..public_jwk("RSA", alg, kid)
                };
                (Signer::Rs256(pair), jwk)
            }
        };
        Ok(Self { kid: kid.to_owned(), alg, jwk, signer })
    }

    /// A compact JWS of `claims` with the header `{"alg", "kid", "typ"}`.
    pub fn sign(&self, typ: &str, claims: &impl Serialize) -> Result<String, CryptoError> {
        let header = serde_json::json!({ "alg": self.alg.as_str(), "kid": self.kid, "typ": typ });
        let header = serde_json::to_vec(&header).map_err(CryptoError::Claims)?;
        let claims = serde_json::to_vec(claims).map_err(CryptoError::Claims)?;
        let input = format!("{}.{}", URL_SAFE_NO_PAD.encode(header), URL_SAFE_NO_PAD.encode(claims));
        let signature = match &self.signer {
            Signer::Es256(pair) => pair
                .sign(&SystemRandom::new(), input.as_bytes())
                .map_err(|_| CryptoError::Sign)?
                .as_ref()
                .to_vec(),
            Signer::Rs256(pair) => {
                let mut signature = vec![0; pair.public_modulus_len()];
                let rng = aws_lc_rs::rand::SystemRandom::new();
                pair.sign(&aws_lc_rs::signature::RSA_PKCS1_SHA256, &rng, input.as_bytes(), &mut signature)
                    .map_err(|_| CryptoError::Sign)?;
                signature
            }
        };
        Ok(format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature)))
    }

    /// The public key, for checking a token this service signed.
    pub fn decoding_key(&self) -> Result<jsonwebtoken::DecodingKey, CryptoError> {
        let invalid =
            || CryptoError::Invalid { kid: self.kid.clone(), reason: "the public JWK is incomplete" };
        let member = |value: &Option<String>| value.clone().ok_or_else(invalid);
        let key = match self.alg {
            SigningAlg::Es256 => {
                jsonwebtoken::DecodingKey::from_ec_components(&member(&self.jwk.x)?, &member(&self.jwk.y)?)
            }
            SigningAlg::Rs256 => {
                jsonwebtoken::DecodingKey::from_rsa_components(&member(&self.jwk.n)?, &member(&self.jwk.e)?)
            }
        };
        key.map_err(|_| invalid())
    }
}

fn public_jwk(kty: &str, alg: SigningAlg, kid: &str) -> Jwk {
    Jwk {
        kty: kty.into(),
        use_: "sig".into(),
        alg: alg.as_str().into(),
        kid: kid.into(),
        crv: None,
        x: None,
        y: None,
        n: None,
        e: None,
        x5c: None,
        x5t: None,
        x5t_s256: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CREATED: OffsetDateTime = time::macros::datetime!(2026-11-30 09:00 UTC);

    fn master() -> MasterKey {
        MasterKey::from_bytes(&[5; 32])
    }

    fn open(
        alg: SigningAlg,
        kid: &str,
        sealed: &[u8],
        stored: &str,
    ) -> Result<(OpenedKey, Option<String>), CryptoError> {
        OpenedKey::open(alg, kid, sealed, stored, CREATED, &master())
    }

    /// A stored public JWK that gained a private member (or any other member) is refused: what
    /// is served comes from the private key itself, never from text that could carry `d`.
    #[test]
    fn a_stored_jwk_with_a_private_member_does_not_open() {
        let (sealed, jwk) = generate(SigningAlg::Es256, "k1", &master(), CREATED).unwrap();
        let stored = serde_json::to_string(&jwk).unwrap();
        assert!(open(SigningAlg::Es256, "k1", &sealed, &stored).is_ok());
        let mut leaky = serde_json::to_value(&jwk).unwrap();
        leaky["d"] = serde_json::json!("AAAA");
        let refused = open(SigningAlg::Es256, "k1", &sealed, &leaky.to_string());
        assert!(matches!(refused, Err(CryptoError::Invalid { .. })), "{refused:?}");
    }

    /// The sealed key opens only under its own kid and algorithm, and only with its master key.
    #[test]
    fn a_sealed_key_opens_only_as_itself() {
        let (sealed, jwk) = generate(SigningAlg::Es256, "k1", &master(), CREATED).unwrap();
        let stored = serde_json::to_string(&jwk).unwrap();
        for (alg, kid, key) in [
            (SigningAlg::Es256, "k2", master()),
            (SigningAlg::Rs256, "k1", master()),
            (SigningAlg::Es256, "k1", MasterKey::from_bytes(&[6; 32])),
        ] {
            let opened = OpenedKey::open(alg, kid, &sealed, &stored, CREATED, &key);
            assert!(matches!(opened, Err(CryptoError::Sealed { .. })), "{alg} {kid}: {opened:?}");
        }
    }

    /// Attack: a row whose JWK carries the certificate of another key (or thumbprints of another
    /// certificate) would make relying parties that read `x5c` use the wrong key: it does not
    /// open.
    #[test]
    fn a_stored_certificate_of_another_key_does_not_open() {
        let (sealed, jwk) = generate(SigningAlg::Es256, "k1", &master(), CREATED).unwrap();
        let (_, other) = generate(SigningAlg::Es256, "k1", &master(), CREATED).unwrap();
        let swapped = Jwk {
            x5c: other.x5c.clone(),
            x5t: other.x5t.clone(),
            x5t_s256: other.x5t_s256.clone(),
            ..jwk.clone()
        };
        let wrong_thumbprint = Jwk { x5t_s256: other.x5t_s256.clone(), ..jwk.clone() };
        let two =
            Jwk { x5c: Some([jwk.x5c.clone().unwrap(), other.x5c.clone().unwrap()].concat()), ..jwk.clone() };
        let no_thumbprints = Jwk { x5t: None, x5t_s256: None, ..jwk.clone() };
        for bad in [swapped, wrong_thumbprint, two, no_thumbprints] {
            let refused = open(SigningAlg::Es256, "k1", &sealed, &serde_json::to_string(&bad).unwrap());
            assert!(matches!(refused, Err(CryptoError::Invalid { .. })), "{bad:?}: {refused:?}");
        }
    }

    /// A key stored before certificates opens with a certificate of itself, made from its
    /// private key; once stored, it opens as it is.
    #[test]
    fn a_key_stored_without_a_certificate_opens_with_one() {
        for alg in [SigningAlg::Es256, SigningAlg::Rs256] {
            let (sealed, jwk) = generate(alg, "k1", &master(), CREATED).unwrap();
            let old = serde_json::to_string(&certificate::detach(&jwk)).unwrap();
            assert!(!old.contains("x5c"), "{old}");
            let (opened, to_store) = open(alg, "k1", &sealed, &old).unwrap();
            let to_store = to_store.expect("a certificate to store");
            assert_eq!(serde_json::to_string(&opened.jwk).unwrap(), to_store);
            assert_ne!(opened.jwk.x5c, jwk.x5c, "a new certificate");
            let (reopened, again) = open(alg, "k1", &sealed, &to_store).unwrap();
            assert_eq!((reopened.jwk, again), (opened.jwk, None), "{alg}: served as stored");
        }
    }

    #[test]
    fn kids_are_random_and_url_safe() {
        let (a, b) = (new_kid().unwrap(), new_kid().unwrap());
        assert_ne!(a, b);
        assert_eq!(a.len(), 22);
        assert!(a.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_'), "{a}");
    }
}
