//! Property tests over the public API: tampering always fails, honest signing always verifies,
//! and the canonical encoding never lets two different messages share bytes.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::LazyLock;

use countersign_mobile_protocol::request::HttpRequest;
use countersign_mobile_protocol::{
    ActivationCode, ChallengeAnswer, ChallengeDetails, ChallengeId, Decision, DeviceId, Enrollment,
    EnrollmentRequest, Nonce, ProtocolError, PublicKey, PushRegistration, RequestHeaders, ServerId,
    ServerUrl, Signature, generate_pkcs8, key_pair_from_pkcs8,
};
use proptest::prelude::*;
use ring::rand::SystemRandom;
use ring::signature::EcdsaKeyPair;

static RNG: LazyLock<SystemRandom> = LazyLock::new(SystemRandom::new);
static DEVICE: LazyLock<EcdsaKeyPair> =
    LazyLock::new(|| key_pair_from_pkcs8(&generate_pkcs8(&*RNG).unwrap(), &*RNG).unwrap());
static SERVER: LazyLock<EcdsaKeyPair> =
    LazyLock::new(|| key_pair_from_pkcs8(&generate_pkcs8(&*RNG).unwrap(), &*RNG).unwrap());

fn device_key() -> PublicKey {
    PublicKey::from_key_pair(&DEVICE).unwrap()
}

fn token() -> impl Strategy<Value = String> {
    "[A-Za-z0-9_-]{1,64}"
}

/// Display text: printable Unicode (no control, format or private-use characters, no line or
/// paragraph separators), ≤ 128 bytes.
fn text() -> impl Strategy<Value = String> {
    "[\\PC&&[^\\p{Zl}\\p{Zp}]]{1,32}"
}

fn nonce() -> impl Strategy<Value = Nonce> {
    prop::collection::vec(any::<u8>(), 16..=64).prop_map(|b| Nonce::from_bytes(&b).unwrap())
}

prop_compose! {
    fn details()(
        id in token(), server_nonce in nonce(), app_name in text(), ip in "[0-9a-f.:]{0,45}",
        user_agent in text(), location in prop::option::of(text()),
        created_at in any::<u64>(), ttl in 0u64..=3600,
    ) -> ChallengeDetails {
        ChallengeDetails {
            challenge_id: ChallengeId::new(id).unwrap(), server_nonce, app_name, ip, user_agent,
            location, created_at, expires_at: created_at.saturating_add(ttl),
        }
    }
}

prop_compose! {
    fn answer()(
        d in details(), device in token(), counter in any::<u64>(),
        decision in prop_oneof![Just(Decision::Approve), Just(Decision::Deny), Just(Decision::Report)],
        digits in "[0-9]{1,10}",
    ) -> ChallengeAnswer {
        let number = if decision == Decision::Approve { digits } else { String::new() };
        ChallengeAnswer::new(&d, decision, number, DeviceId::new(device).unwrap(), counter)
    }
}

proptest! {
    /// Flipping any bit pattern in any single byte of the signed bytes breaks verification.
    #[test]
    fn any_flipped_message_byte_fails(a in answer(), index in any::<prop::sample::Index>(), mask in 1u8..=255) {
        let response = a.sign(&DEVICE, &*RNG).unwrap();
        let mut bytes = response.answer.canonical_bytes().unwrap();
        let i = index.index(bytes.len());
        bytes[i] ^= mask;
        prop_assert_eq!(device_key().verify(&bytes, &response.signature), Err(ProtocolError::SignatureInvalid));
    }

    /// Flipping any single byte of the DER signature makes it malformed or invalid, never valid.
    #[test]
    fn any_flipped_signature_byte_fails(a in answer(), index in any::<prop::sample::Index>(), mask in 1u8..=255) {
        let response = a.sign(&DEVICE, &*RNG).unwrap();
        let mut der = response.signature.as_der().to_vec();
        let i = index.index(der.len());
        der[i] ^= mask;
        let result = Signature::from_der(&der)
            .and_then(|sig| device_key().verify(&response.answer.canonical_bytes().unwrap(), &sig));
        prop_assert!(matches!(
            result,
            Err(ProtocolError::SignatureInvalid | ProtocolError::SignatureMalformed { .. })
        ), "{:?}", result);
    }

    /// Honest challenge responses verify, through JSON, for any valid field values.
    #[test]
    fn response_sign_then_verify(a in answer()) {
        let (id, nonce) = (a.challenge_id.clone(), a.server_nonce.clone());
        let response = a.sign(&DEVICE, &*RNG).unwrap();
        let json = serde_json::to_vec(&response).unwrap();
        let parsed: countersign_mobile_protocol::ChallengeResponse = serde_json::from_slice(&json).unwrap();
        prop_assert!(parsed.verify(&device_key(), &id, &nonce).is_ok());
    }

    /// Honest challenge details verify, through JSON, for any valid field values.
    #[test]
    fn details_sign_then_verify(d in details(), server_id in "[!-~]{1,64}", device in token()) {
        let (server_id, device) = (ServerId::new(server_id).unwrap(), DeviceId::new(device).unwrap());
        let signed = d.sign(&server_id, &device, &SERVER, &*RNG).unwrap();
        let json = serde_json::to_vec(&signed).unwrap();
        let parsed: countersign_mobile_protocol::SignedChallengeDetails = serde_json::from_slice(&json).unwrap();
        let server_key = PublicKey::from_key_pair(&SERVER).unwrap();
        prop_assert!(parsed.verify(&server_key, &server_id, &device).is_ok());
    }

    /// Honest enrollments verify, through JSON, for any valid field values.
    #[test]
    fn enrollment_sign_then_verify(code in token(), name in text(), platform in "[\\PC&&[^\\p{Zl}\\p{Zp}]]{1,16}", host in "[a-z0-9]{1,20}") {
        let server = ServerUrl::parse(&format!("https://{host}.example")).unwrap();
        let request = Enrollment {
            server: server.clone(),
            activation_code: ActivationCode::new(code).unwrap(),
            public_key: device_key(),
            push: PushRegistration::None,
            device_name: name,
            platform,
        }
        .sign(&DEVICE, &*RNG)
        .unwrap();
        let parsed: EnrollmentRequest = serde_json::from_slice(&serde_json::to_vec(&request).unwrap()).unwrap();
        prop_assert!(parsed.verify(&server).is_ok());
    }

    /// Honest signed requests verify for any method, path, body and time within the skew.
    #[test]
    fn request_sign_then_verify(
        method in "[A-Z]{1,16}", path in "/[!-~]{0,100}", body in prop::collection::vec(any::<u8>(), 0..512),
        device in token(), timestamp in 0u64..=u64::MAX / 2, offset in 0u64..=600,
    ) {
        let request = HttpRequest { method: &method, path_and_query: &path, body: &body };
        let headers = RequestHeaders::sign(&DEVICE, &*RNG, DeviceId::new(device).unwrap(), &request, timestamp).unwrap();
        let now = timestamp + offset;
        let result = headers.verify(&device_key(), &request, now, 300);
        if offset <= 300 {
            prop_assert!(result.is_ok());
        } else {
            prop_assert!(
                matches!(result, Err(ProtocolError::TimestampOutOfWindow { .. })),
                "{:?}", result
            );
        }
    }

    /// Moving the boundary between two adjacent text fields always changes the canonical bytes,
    /// e.g. (ip "ab", user_agent "c") vs (ip "a", user_agent "bc").
    #[test]
    fn adjacent_fields_are_injective(d in details(), joined in "[a-z0-9.:]{1,40}", i in any::<prop::sample::Index>(), j in any::<prop::sample::Index>()) {
        let (i, j) = (i.index(joined.len() + 1), j.index(joined.len() + 1));
        prop_assume!(i != j);
        let split = |at: usize| ChallengeDetails {
            ip: joined[..at].to_owned(),
            user_agent: joined[at..].to_owned(),
            ..d.clone()
        };
        let (server_id, device) = (ServerId::new("s").unwrap(), DeviceId::new("d").unwrap());
        prop_assert_ne!(
            split(i).canonical_bytes(&server_id, &device).unwrap(),
            split(j).canonical_bytes(&server_id, &device).unwrap()
        );
    }

    /// The same holds for device name and platform in an enrollment.
    #[test]
    fn adjacent_enrollment_fields_are_injective(joined in "[A-Za-z0-9 ]{2,40}", i in any::<prop::sample::Index>(), j in any::<prop::sample::Index>()) {
        let (i, j) = (1 + i.index(joined.len() - 1), 1 + j.index(joined.len() - 1));
        prop_assume!(i != j);
        let split = |at: usize| Enrollment {
            server: ServerUrl::parse("https://a.example").unwrap(),
            activation_code: ActivationCode::new("c").unwrap(),
            public_key: device_key(),
            push: PushRegistration::None,
            device_name: joined[..at].to_owned(),
            platform: joined[at..].to_owned(),
        };
        prop_assert_ne!(split(i).canonical_bytes().unwrap(), split(j).canonical_bytes().unwrap());
    }
}

/// A signature made for one message type never verifies as another, even over identical field
/// bytes: the attack is replaying an enrollment or request signature as a challenge approval.
#[test]
fn signatures_do_not_cross_message_types() {
    let details = ChallengeDetails {
        challenge_id: ChallengeId::new("c").unwrap(),
        server_nonce: Nonce::from_bytes(&[1; 16]).unwrap(),
        app_name: "a".into(),
        ip: String::new(),
        user_agent: String::new(),
        location: None,
        created_at: 0,
        expires_at: 0,
    };
    let (server_id, device) = (ServerId::new("s").unwrap(), DeviceId::new("d").unwrap());
    // The device signs something; the server-label bytes of the same content must not verify.
    let as_details = details.canonical_bytes(&server_id, &device).unwrap();
    let response =
        ChallengeAnswer::new(&details, Decision::Deny, "", device.clone(), 1).sign(&DEVICE, &*RNG).unwrap();
    assert_eq!(device_key().verify(&as_details, &response.signature), Err(ProtocolError::SignatureInvalid));
}
