//! `passkeys::ceremony` on its own, with a real software authenticator that keeps discoverable
//! credentials: the ceremonies the admin plane signs in with (resident key and user
//! verification required, no username), and the attacks they must refuse.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "common/resident_key.rs"]
mod resident_key;
#[path = "common/soft_key.rs"]
mod soft_key;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use countersign::passkeys::ceremony::{
    self, Asserted, CeremonyError, DiscoverableAssertion, NewCredential, ResidentKey, StoredCredential,
    UserEntity,
};
use countersign::passkeys::model::{Rejection, WebauthnConfig, WebauthnSettings};
use resident_key::{ResidentKeyAuthenticator, b64};
use serde_json::json;

fn settings() -> WebauthnSettings {
    WebauthnSettings::resolve(&WebauthnConfig::default(), "http://127.0.0.1:8080").unwrap()
}

const TTL: time::Duration = time::Duration::minutes(5);

/// The authenticator data's flags byte (after the 32-byte RP ID hash): user verified.
const UV: u8 = 0x04;

/// An admin-style credential: registered with resident key and user verification required.
struct Registered {
    key: ResidentKeyAuthenticator,
    handle: Vec<u8>,
    credential: NewCredential,
}

impl Registered {
    fn stored(&self) -> StoredCredential<'_> {
        StoredCredential {
            credential_id: &self.credential.credential_id,
            user_handle: &self.handle,
            static_state: &self.credential.static_state,
            dynamic_state: &self.credential.dynamic_state,
        }
    }

    /// A discoverable sign-in, verified after looking the credential up as a caller would.
    async fn sign_in(&mut self) -> Result<Asserted, CeremonyError> {
        let settings = settings();
        let begun = ceremony::discoverable_request_options(&settings, TTL).unwrap();
        let assertion = self.key.get(&begun.options).await;
        let parsed = DiscoverableAssertion::parse(&assertion)?;
        assert_eq!(parsed.credential_id(), self.credential.credential_id.as_slice());
        assert_eq!(parsed.user_handle(), self.handle.as_slice());
        parsed.verify(&settings, &begun.server_state, self.stored())
    }
}

async fn register() -> Registered {
    let settings = settings();
    let handle = ceremony::new_user_handle();
    let user = UserEntity { handle: &handle, name: "alice", display_name: Some("Alice") };
    let begun = ceremony::creation_options(&settings, user, Vec::new(), ResidentKey::Required).unwrap();
    let selection = &begun.options["authenticatorSelection"];
    assert_eq!(
        (selection["residentKey"].as_str(), selection["userVerification"].as_str()),
        (Some("required"), Some("required")),
        "{}",
        begun.options
    );
    let mut key = ResidentKeyAuthenticator::new();
    let response = key.create(&begun.options).await;
    let credential = ceremony::verify_registration(&settings, &begun.server_state, &response).unwrap();
    Registered { key, handle, credential }
}

#[tokio::test]
async fn a_discoverable_registration_then_a_discoverable_sign_in_verify() {
    let mut admin = register().await;
    let first = admin.credential.sign_count;
    let settings = settings();
    let begun = ceremony::discoverable_request_options(&settings, TTL).unwrap();
    let public_key = &begun.options;
    // No credential named: the authenticator offers its discoverable ones.
    assert!(public_key.get("allowCredentials").is_none_or(|a| a == &json!([])), "{public_key}");
    assert_eq!(public_key["userVerification"], "required");

    let assertion = admin.key.get(public_key).await;
    let parsed = DiscoverableAssertion::parse(&assertion).unwrap();
    assert_eq!(parsed.credential_id(), admin.credential.credential_id.as_slice());
    assert_eq!(parsed.user_handle(), admin.handle.as_slice());
    let asserted = parsed.verify(&settings, &begun.server_state, admin.stored()).unwrap();
    assert!(asserted.user_verified);
    assert!(i64::from(asserted.sign_count) > first);
    // What is stored back is what the next sign-in is verified against.
    admin.credential.dynamic_state = asserted.dynamic_state;
    let next = admin.sign_in().await.unwrap();
    assert!(next.sign_count > asserted.sign_count);
}

/// Attack: an assertion captured for one sign-in is replayed to another.
#[tokio::test]
async fn an_assertion_for_another_challenge_is_refused() {
    let mut admin = register().await;
    let settings = settings();
    let answered = ceremony::discoverable_request_options(&settings, TTL).unwrap();
    let other = ceremony::discoverable_request_options(&settings, TTL).unwrap();
    let assertion = admin.key.get(&answered.options).await;
    let parsed = DiscoverableAssertion::parse(&assertion).unwrap();
    match parsed.verify(&settings, &other.server_state, admin.stored()) {
        Err(CeremonyError::Rejected { rejection: Rejection::ChallengeMismatch, .. }) => {}
        other => panic!("{other:?}"),
    }
}

/// Attack: a signature altered in transit (or made without the key).
#[tokio::test]
async fn a_tampered_signature_is_refused() {
    let mut admin = register().await;
    let settings = settings();
    let begun = ceremony::discoverable_request_options(&settings, TTL).unwrap();
    let mut assertion = admin.key.get(&begun.options).await;
    let mut signature = b64(&assertion["response"]["signature"]);
    let last = signature.len() - 1;
    signature[last] ^= 0x01;
    assertion["response"]["signature"] = json!(URL_SAFE_NO_PAD.encode(signature));
    let parsed = DiscoverableAssertion::parse(&assertion).unwrap();
    match parsed.verify(&settings, &begun.server_state, admin.stored()) {
        Err(CeremonyError::Rejected { rejection: Rejection::SignatureInvalid, .. }) => {}
        other => panic!("{other:?}"),
    }
}

/// Attack: a correctly signed assertion that says the user was not verified (no PIN or
/// biometrics) where the sign-in requires it.
#[tokio::test]
async fn an_assertion_without_user_verification_is_refused() {
    let mut admin = register().await;
    let settings = settings();
    let begun = ceremony::discoverable_request_options(&settings, TTL).unwrap();
    let assertion = admin.key.get(&begun.options).await;
    let mut auth_data = b64(&assertion["response"]["authenticatorData"]);
    assert_ne!(auth_data[32] & UV, 0);
    auth_data[32] &= !UV;
    let forged = admin.key.resign(&assertion, &auth_data);
    let parsed = DiscoverableAssertion::parse(&forged).unwrap();
    match parsed.verify(&settings, &begun.server_state, admin.stored()) {
        Err(CeremonyError::Rejected { rejection: Rejection::UserNotVerified, .. }) => {}
        other => panic!("{other:?}"),
    }
    // Resigned with the flag as it was, it verifies: the refusal is for the flag alone.
    let again = ceremony::discoverable_request_options(&settings, TTL).unwrap();
    let assertion = admin.key.get(&again.options).await;
    let resigned = admin.key.resign(&assertion, &b64(&assertion["response"]["authenticatorData"]));
    let parsed = DiscoverableAssertion::parse(&resigned).unwrap();
    assert!(parsed.verify(&settings, &again.server_state, admin.stored()).is_ok());
}

/// Attack: a registration whose authenticator did not verify the user, where registration
/// requires it (attestation `none` signs nothing, so the flag is all there is).
#[tokio::test]
async fn a_registration_without_user_verification_is_refused() {
    let settings = settings();
    let handle = ceremony::new_user_handle();
    let user = UserEntity { handle: &handle, name: "alice", display_name: None };
    let begun = ceremony::creation_options(&settings, user, Vec::new(), ResidentKey::Required).unwrap();
    let mut key = ResidentKeyAuthenticator::new();
    let mut response = key.create(&begun.options).await;
    let rp_id_hash = ring::digest::digest(&ring::digest::SHA256, b"localhost");
    for field in ["attestationObject", "authenticatorData"] {
        let Some(value) = response["response"].get(field) else { continue };
        let mut bytes = b64(value);
        let at = bytes.windows(32).position(|w| w == rp_id_hash.as_ref()).unwrap() + 32;
        bytes[at] &= !UV;
        response["response"][field] = json!(URL_SAFE_NO_PAD.encode(bytes));
    }
    match ceremony::verify_registration(&settings, &begun.server_state, &response) {
        Err(CeremonyError::Rejected { rejection: Rejection::UserNotVerified, .. }) => {}
        other => panic!("{other:?}"),
    }
}

/// Attack: a cloned key (a restored backup) answers with a counter that does not rise.
#[tokio::test]
async fn a_signature_counter_going_backwards_is_reported() {
    let mut admin = register().await;
    let backup = admin.key.key();
    let asserted = admin.sign_in().await.unwrap();
    admin.credential.dynamic_state = asserted.dynamic_state;
    admin.key.restore(backup);
    match admin.sign_in().await {
        Err(CeremonyError::CounterNotIncreasing) => {}
        other => panic!("{other:?}"),
    }
}

/// Attack: an assertion verified against a credential looked up under another account's
/// handle (a caller that trusted only the credential id, or only the handle).
#[tokio::test]
async fn a_stored_credential_of_another_handle_or_id_is_refused() {
    let mut admin = register().await;
    let settings = settings();
    let other_handle = ceremony::new_user_handle();
    for (handle, id) in
        [(&other_handle, &admin.credential.credential_id.clone()), (&admin.handle.clone(), &vec![7; 16])]
    {
        let begun = ceremony::discoverable_request_options(&settings, TTL).unwrap();
        let assertion = admin.key.get(&begun.options).await;
        let parsed = DiscoverableAssertion::parse(&assertion).unwrap();
        let stored = StoredCredential { user_handle: handle, credential_id: id, ..admin.stored() };
        match parsed.verify(&settings, &begun.server_state, stored) {
            Err(CeremonyError::Rejected { rejection: Rejection::Invalid, .. }) => {}
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn an_assertion_that_is_not_one_is_invalid_input() {
    for bad in
        [json!({}), json!([]), json!({ "id": "x", "rawId": "x", "type": "public-key", "response": {} })]
    {
        assert!(
            matches!(DiscoverableAssertion::parse(&bad), Err(CeremonyError::ResponseInvalid(_))),
            "{bad}"
        );
        assert!(matches!(ceremony::Assertion::parse(&bad), Err(CeremonyError::ResponseInvalid(_))), "{bad}");
    }
}
