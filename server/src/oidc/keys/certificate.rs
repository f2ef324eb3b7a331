//! The self-signed X.509 certificate every published key carries in the JWKS: `x5c` (RFC 7517
//! §4.7) with its thumbprints `x5t` and `x5t#S256`. Microsoft Entra ID requires `x5c` on every
//! key of an external authentication method's JWKS.
//!
//! These certificates are key carriers, not trust anchors: nothing chains to them, and a relying
//! party trusts the key because our `jwks_uri` serves it over TLS, not because of the
//! certificate. So each is self-signed by the key it carries, names the key
//! (`CN=Countersign OIDC signing key <kid>`), has a random serial and is valid from the key's
//! creation for [`VALIDITY`], well past any key's life. Its public key must be the JWK's: a stored
//! certificate of any other key makes the key fail to open (see [`check`]).

use aws_lc_rs::digest::{Algorithm, SHA1_FOR_LEGACY_USE_ONLY, SHA256, digest};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair, KeyUsagePurpose, PublicKeyData as _};
use ring::rand::{SecureRandom, SystemRandom};
use time::{Duration, OffsetDateTime};

use super::crypto::CryptoError;
use super::model::{Jwk, SigningAlg};

/// How long a key's certificate is valid from the key's creation: far longer than keys live
/// (they rotate in months). The date is a formality for a key carrier, but Entra reads it.
pub const VALIDITY: Duration = Duration::days(3653);

/// Bytes of a certificate's random serial number (RFC 5280: positive, at most 20 bytes).
const SERIAL_BYTES: usize = 16;

const SEQUENCE: u8 = 0x30;
/// `[0] EXPLICIT Version` at the start of a TBSCertificate.
const VERSION_TAG: u8 = 0xa0;

/// The key, as rcgen signs with it, from its PKCS#8.
pub(super) fn key_pair(alg: SigningAlg, kid: &str, pkcs8: &[u8]) -> Result<KeyPair, CryptoError> {
    let sign_alg = match alg {
        SigningAlg::Es256 => &rcgen::PKCS_ECDSA_P256_SHA256,
        SigningAlg::Rs256 => &rcgen::PKCS_RSA_SHA256,
    };
    KeyPair::from_pkcs8_der_and_sign_algo(&pkcs8.into(), sign_alg).map_err(|_| CryptoError::Invalid {
        kid: kid.to_owned(),
        reason: "the key does not load for certificates",
    })
}

/// A new self-signed certificate (DER) for `key`, valid from `not_before` for [`VALIDITY`].
pub(super) fn issue(kid: &str, key: &KeyPair, not_before: OffsetDateTime) -> Result<Vec<u8>, CryptoError> {
    let mut serial = [0u8; SERIAL_BYTES];
    SystemRandom::new().fill(&mut serial).map_err(|_| CryptoError::Random)?;
    serial[0] &= 0x7f;
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, format!("Countersign OIDC signing key {kid}"));
    let mut params = CertificateParams::default();
    params.distinguished_name = name;
    params.serial_number = Some(serial.to_vec().into());
    params.not_before = not_before;
    params.not_after = not_before + VALIDITY;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    let certificate = params.self_signed(key).map_err(|_| CryptoError::Certificate)?;
    Ok(certificate.der().to_vec())
}

/// `jwk` carrying `certificate` (DER): `x5c` in standard base64 (RFC 7517 §4.7, not base64url)
/// and its thumbprints in base64url. `x5t` is SHA-1 because that is what the member is (Entra's
/// own keys carry it); a thumbprint names the certificate, it is no security check.
pub(super) fn attach(jwk: Jwk, certificate: &[u8]) -> Jwk {
    Jwk {
        x5c: Some(vec![STANDARD.encode(certificate)]),
        x5t: Some(thumbprint(&SHA1_FOR_LEGACY_USE_ONLY, certificate)),
        x5t_s256: Some(thumbprint(&SHA256, certificate)),
        ..jwk
    }
}

/// `jwk` without its certificate members (what the private key alone determines).
pub(super) fn detach(jwk: &Jwk) -> Jwk {
    Jwk { x5c: None, x5t: None, x5t_s256: None, ..jwk.clone() }
}

/// Whether the certificate members of a stored JWK are a certificate of `key`: exactly one
/// certificate, whose SubjectPublicKeyInfo is the key's and whose thumbprints are its own.
pub(super) fn check(jwk: &Jwk, key: &KeyPair) -> Result<(), &'static str> {
    let Some([encoded]) = jwk.x5c.as_deref() else {
        return Err("x5c must hold exactly one certificate");
    };
    let der = STANDARD.decode(encoded).map_err(|_| "x5c is not base64")?;
    if subject_public_key_info(&der) != Some(key.subject_public_key_info().as_slice()) {
        return Err("the x5c certificate is not of this key");
    }
    let sha1 = thumbprint(&SHA1_FOR_LEGACY_USE_ONLY, &der);
    let sha256 = thumbprint(&SHA256, &der);
    if jwk.x5t.as_deref() != Some(sha1.as_str()) || jwk.x5t_s256.as_deref() != Some(sha256.as_str()) {
        return Err("x5t and x5t#S256 must be the certificate's thumbprints");
    }
    Ok(())
}

fn thumbprint(algorithm: &'static Algorithm, der: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(digest(algorithm, der))
}

/// The SubjectPublicKeyInfo (whole DER element) of an X.509 certificate; `None` if `der` is not
/// shaped like one. Reads only the structure (RFC 5280 §4.1): Certificate ::= SEQUENCE {
/// TBSCertificate ::= SEQUENCE { [0] version?, serialNumber, signature, issuer, validity,
/// subject, subjectPublicKeyInfo, … }, … }.
pub fn subject_public_key_info(der: &[u8]) -> Option<&[u8]> {
    let certificate = Element::first(der).filter(|e| e.tag == SEQUENCE && e.rest.is_empty())?;
    let tbs = Element::first(certificate.contents).filter(|e| e.tag == SEQUENCE)?;
    let first = Element::first(tbs.contents)?;
    let mut rest = if first.tag == VERSION_TAG { first.rest } else { tbs.contents };
    for _ in 0..5 {
        rest = Element::first(rest)?.rest;
    }
    Element::first(rest).filter(|e| e.tag == SEQUENCE).map(|spki| spki.whole)
}

/// A DER element at the start of some bytes.
struct Element<'a> {
    tag: u8,
    contents: &'a [u8],
    /// Tag, length and contents.
    whole: &'a [u8],
    /// What follows it.
    rest: &'a [u8],
}

impl<'a> Element<'a> {
    fn first(input: &'a [u8]) -> Option<Self> {
        let (&tag, rest) = input.split_first()?;
        let (&first, rest) = rest.split_first()?;
        let (length, rest) = if first < 0x80 {
            (usize::from(first), rest)
        } else {
            let size = usize::from(first & 0x7f);
            if size == 0 || size > 4 || rest.len() < size {
                return None;
            }
            let (bytes, rest) = rest.split_at(size);
            (bytes.iter().fold(0usize, |length, &b| (length << 8) | usize::from(b)), rest)
        };
        if rest.len() < length {
            return None;
        }
        let (contents, after) = rest.split_at(length);
        let whole = input.get(..input.len() - after.len())?;
        Some(Self { tag, contents, whole, rest: after })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn malformed_der_has_no_public_key() {
        for der in
            [&[][..], &[0x30], &[0x30, 0x05, 0x30], &[0x30, 0x84, 0xff, 0xff, 0xff, 0xff], &[0x02, 0x00]]
        {
            assert_eq!(subject_public_key_info(der), None, "{der:?}");
        }
    }
}
