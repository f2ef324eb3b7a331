//! Enrollment: `POST /device/v1/enroll`, the phone proving it holds the key it registers.
//!
//! The proof-of-possession signature binds the server URL from the QR code, the activation code,
//! the public key, the push registration and the device's name and platform. So a relay cannot
//! swap in its own push token or key, and a proof made for one server cannot be replayed to
//! another (the server compares the signed URL with its own base URL).

use ring::rand::SecureRandom;
use ring::signature::EcdsaKeyPair;
use serde::{Deserialize, Serialize};

use crate::canonical::{CanonicalWriter, Label};
use crate::error::ProtocolError;
use crate::fields::{ActivationCode, DeviceId, ServerId, check_text};
use crate::keys::{self, PublicKey};
use crate::limits::{MAX_DEVICE_NAME_LEN, MAX_PLATFORM_LEN};
use crate::push::PushRegistration;
use crate::signature::Signature;
use crate::uri::ServerUrl;

/// The signed content of an enrollment request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Enrollment {
    /// The `server` value of the enrollment URI, exactly.
    pub server: ServerUrl,
    /// The `code` value of the enrollment URI.
    pub activation_code: ActivationCode,
    /// The device's new P-256 public key.
    pub public_key: PublicKey,
    /// How to reach the device.
    pub push: PushRegistration,
    /// User-visible device name (1..=128 bytes of display text).
    pub device_name: String,
    /// Platform description such as "iOS 17.4" (1..=64 bytes of display text).
    pub platform: String,
}

impl Enrollment {
    /// Canonical bytes, after checking every field:
    /// label, server, activation_code, public_key (65 raw bytes), push provider, push token,
    /// APNs environment, device_name, platform.
    pub fn canonical_bytes(&self) -> Result<Vec<u8>, ProtocolError> {
        check_text("device_name", &self.device_name, MAX_DEVICE_NAME_LEN, false)?;
        check_text("platform", &self.platform, MAX_PLATFORM_LEN, false)?;
        let writer = CanonicalWriter::new(Label::Enrollment)
            .text(self.server.as_str())
            .text(self.activation_code.as_str())
            .bytes(self.public_key.as_bytes());
        self.push.write_canonical(writer).text(&self.device_name).text(&self.platform).finish()
    }

    /// Signs with the device key, which must be the key in `public_key`.
    pub fn sign(
        self,
        key_pair: &EcdsaKeyPair,
        rng: &dyn SecureRandom,
    ) -> Result<EnrollmentRequest, ProtocolError> {
        if PublicKey::from_key_pair(key_pair)? != self.public_key {
            return Err(ProtocolError::Mismatch { field: "public_key" });
        }
        let signature = keys::sign(key_pair, rng, &self.canonical_bytes()?)?;
        Ok(EnrollmentRequest { enrollment: self, signature })
    }
}

/// Body of `POST /device/v1/enroll`: the [`Enrollment`] fields plus `signature`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnrollmentRequest {
    /// The signed fields.
    #[serde(flatten)]
    pub enrollment: Enrollment,
    /// Proof of possession: the device key's signature over [`Enrollment::canonical_bytes`].
    pub signature: Signature,
}

impl EnrollmentRequest {
    /// Server side: checks that the request names this server and that the proof of possession
    /// verifies under the enclosed key (which also proves the key is a valid P-256 point).
    ///
    /// Does not check the activation code or bindings; that needs the store.
    pub fn verify(&self, this_server: &ServerUrl) -> Result<(), ProtocolError> {
        let canonical = self.enrollment.canonical_bytes()?;
        self.enrollment.public_key.verify(&canonical, &self.signature)?;
        if &self.enrollment.server != this_server {
            return Err(ProtocolError::Mismatch { field: "server" });
        }
        Ok(())
    }
}

/// Response to a successful enrollment (`201 Created`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnrollmentResponse {
    /// The device's id, sent in every signed request and response.
    pub device_id: DeviceId,
    /// The server's stable identifier, bound into every challenge-details signature.
    pub server_id: ServerId,
    /// The key the server signs challenge details with; the phone pins it for this account.
    pub server_public_key: PublicKey,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use crate::push::{ApnsEnvironment, PushToken};
    use ring::rand::SystemRandom;

    fn enrollment(key: PublicKey) -> Enrollment {
        Enrollment {
            server: ServerUrl::parse("https://mfa.example.com").unwrap(),
            activation_code: ActivationCode::new("K7Q2-MX9P").unwrap(),
            public_key: key,
            push: PushRegistration::Apns {
                token: PushToken::new("a1b2".repeat(16)).unwrap(),
                environment: ApnsEnvironment::Production,
            },
            device_name: "Alice's iPhone".into(),
            platform: "iOS 17.4".into(),
        }
    }

    #[test]
    fn sign_verify_and_server_binding() {
        let rng = SystemRandom::new();
        let pair = keys::key_pair_from_pkcs8(&keys::generate_pkcs8(&rng).unwrap(), &rng).unwrap();
        let request = enrollment(PublicKey::from_key_pair(&pair).unwrap()).sign(&pair, &rng).unwrap();
        let json = serde_json::to_string(&request).unwrap();
        let parsed: EnrollmentRequest = serde_json::from_str(&json).unwrap();
        let this = ServerUrl::parse("https://mfa.example.com").unwrap();
        assert_eq!(parsed.verify(&this), Ok(()));
        let other = ServerUrl::parse("https://evil.example.com").unwrap();
        assert_eq!(parsed.verify(&other), Err(ProtocolError::Mismatch { field: "server" }));
        let mut swapped = parsed;
        swapped.enrollment.push = PushRegistration::None;
        assert_eq!(swapped.verify(&this), Err(ProtocolError::SignatureInvalid));
    }

    #[test]
    fn refuses_to_sign_for_a_different_key() {
        let rng = SystemRandom::new();
        let pair = keys::key_pair_from_pkcs8(&keys::generate_pkcs8(&rng).unwrap(), &rng).unwrap();
        let other = keys::key_pair_from_pkcs8(&keys::generate_pkcs8(&rng).unwrap(), &rng).unwrap();
        let result = enrollment(PublicKey::from_key_pair(&other).unwrap()).sign(&pair, &rng);
        assert_eq!(result.unwrap_err(), ProtocolError::Mismatch { field: "public_key" });
    }
}
