//! Device rules without I/O: activation codes, enrollment state, push registrations as stored.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use countersign_mobile_protocol::{ApnsEnvironment, PushRegistration, PushToken};
use ring::rand::{SecureRandom, SystemRandom};
use secrecy::SecretString;
use time::OffsetDateTime;

use crate::store::{EnrollmentRecord, StoredPush};

/// How recent an approval must be to prove a new device: the app prompts the user's existing
/// phone, the user approves, the app issues the enrollment right after.
pub const SECOND_DEVICE_APPROVAL_WINDOW: time::Duration = time::Duration::minutes(5);

/// 128 random bits, base64url: unguessable within its ten minutes even without rate limits.
const ACTIVATION_CODE_BYTES: usize = 16;

#[derive(Debug, thiserror::Error)]
#[error("the system random number generator failed")]
pub struct RandomFailure;

/// A fresh activation code and the hash it is found by.
pub fn new_activation_code() -> Result<(SecretString, [u8; 32]), RandomFailure> {
    let mut bytes = [0u8; ACTIVATION_CODE_BYTES];
    SystemRandom::new().fill(&mut bytes).map_err(|_| RandomFailure)?;
    let code = URL_SAFE_NO_PAD.encode(bytes);
    let hash = hash_activation_code(&code);
    Ok((SecretString::from(code), hash))
}

/// SHA-256 of the code, hashed as API keys are.
pub fn hash_activation_code(code: &str) -> [u8; 32] {
    crate::api_keys::hash_key(code)
}

/// What an enrollment can still be used for at `now`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EnrollmentState {
    Usable,
    Used,
    Expired,
}

pub fn enrollment_state(enrollment: &EnrollmentRecord, now: OffsetDateTime) -> EnrollmentState {
    if enrollment.used_at.is_some() {
        EnrollmentState::Used
    } else if enrollment.expires_at <= now {
        EnrollmentState::Expired
    } else {
        EnrollmentState::Usable
    }
}

pub fn to_stored(push: &PushRegistration) -> StoredPush {
    let environment = match push {
        PushRegistration::Apns { environment, .. } => Some(environment.as_str().to_owned()),
        PushRegistration::Fcm { .. } | PushRegistration::None => None,
    };
    StoredPush {
        provider: push.provider().as_str().to_owned(),
        token: push.token().map(|t| t.as_str().to_owned()),
        environment,
    }
}

/// The stored registration as the protocol type; `None` for a row the protocol would refuse.
pub fn from_stored(push: &StoredPush) -> Option<PushRegistration> {
    let token = || push.token.as_deref().and_then(|t| PushToken::new(t).ok());
    match push.provider.as_str() {
        "apns" => {
            let environment = match push.environment.as_deref()? {
                "production" => ApnsEnvironment::Production,
                "sandbox" => ApnsEnvironment::Sandbox,
                _ => return None,
            };
            Some(PushRegistration::Apns { token: token()?, environment })
        }
        "fcm" => Some(PushRegistration::Fcm { token: token()? }),
        "none" => Some(PushRegistration::None),
        _ => None,
    }
}

/// The key an unknown device id's signature is checked against: a P-256 point whose private key
/// was discarded when it was made, so nothing ever verifies under it. Checking unknown ids
/// against it does the same work as checking a known device's key, so neither the answer nor
/// its timing tells a caller without a key whether a device id exists.
pub const UNKNOWN_DEVICE_KEY: [u8; 65] = [
    0x04, 0xda, 0xaf, 0xbb, 0x20, 0x04, 0x3d, 0xff, 0xb1, 0xc7, 0x7b, 0x4b, 0x3e, 0x5d, 0x37, 0x9d, 0xf3,
    0x86, 0x66, 0x25, 0x98, 0xeb, 0x3e, 0x4a, 0x7b, 0x79, 0x4b, 0xa8, 0x65, 0x99, 0x20, 0x2e, 0x97, 0x6a,
    0x67, 0x08, 0x7a, 0xab, 0x71, 0x80, 0xb3, 0x0f, 0x49, 0xb2, 0x35, 0x3d, 0xa7, 0x90, 0xb8, 0xe3, 0x59,
    0x7f, 0x2f, 0x4e, 0xbc, 0xe6, 0x01, 0xdf, 0x65, 0x4f, 0xcb, 0x6e, 0x54, 0x9d, 0xd6,
];

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    #[test]
    fn activation_codes_are_unique_and_fit_the_protocol_alphabet() {
        let (a, hash_a) = new_activation_code().unwrap();
        let (b, _) = new_activation_code().unwrap();
        assert_ne!(a.expose_secret(), b.expose_secret());
        assert_eq!(hash_activation_code(a.expose_secret()), hash_a);
        assert!(countersign_mobile_protocol::ActivationCode::new(a.expose_secret()).is_ok());
        assert_eq!(a.expose_secret().len(), 22);
    }

    #[test]
    fn the_unknown_device_key_is_a_p256_point() {
        assert!(countersign_mobile_protocol::PublicKey::from_sec1(&UNKNOWN_DEVICE_KEY).is_ok());
    }

    #[test]
    fn push_registrations_round_trip_through_storage() {
        for push in [
            PushRegistration::None,
            PushRegistration::Fcm { token: PushToken::new("fcm-token").unwrap() },
            PushRegistration::Apns {
                token: PushToken::new("a1b2").unwrap(),
                environment: ApnsEnvironment::Sandbox,
            },
        ] {
            assert_eq!(from_stored(&to_stored(&push)), Some(push));
        }
        let broken = StoredPush { provider: "sms".into(), token: None, environment: None };
        assert_eq!(from_stored(&broken), None);
    }
}
