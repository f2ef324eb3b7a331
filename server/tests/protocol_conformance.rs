//! Where PROTOCOL.md and the server disagreed, found by writing a phone from the spec alone; on
//! SQLite and PostgreSQL. Each test names the rule of the spec it holds the server to.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[macro_use]
mod common;

use axum::http::StatusCode;
use common::{TestApp, activation_uri, assert_error, enroll, enrolled_device, signed_get};
use countersign::app::HttpLimits;
use countersign_e2e::Engine;
use countersign_e2e::device::TestDevice;
use countersign_mobile_protocol::{
    ApnsEnvironment, ChallengeDetails, Decision, PendingChallenges, PushRegistration, PushToken,
};
use serde_json::{Value, json};

const LIST: &str = "/device/v1/challenges";
/// Base64url of three zero bytes: text a phone could send, but not a DER signature.
const NOT_DER: &str = "AAAA";

async fn app(engine: Engine) -> (TestApp, String) {
    let app = TestApp::build(engine, HttpLimits::default()).await;
    let key = app.key("portal", "users:read users:write challenges:write challenges:read").await;
    (app, key)
}

async fn start(app: &TestApp, key: &str) -> String {
    let reply = app.post_json("/v1/challenges", key, json!({ "username": "alice" })).await;
    assert_eq!(reply.status, StatusCode::CREATED, "{:?}", reply.body);
    reply.body["id"].as_str().unwrap().to_owned()
}

async fn pending(app: &TestApp, device: &TestDevice) -> Vec<ChallengeDetails> {
    let reply = signed_get(app, device, LIST).await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
    let pending: PendingChallenges = serde_json::from_value(reply.body).unwrap();
    pending.challenges.iter().map(|signed| device.verify_details(signed).clone()).collect()
}

fn with_signature(message: &impl serde::Serialize, signature: &str) -> Vec<u8> {
    let mut json: Value = serde_json::to_value(message).unwrap();
    json["signature"] = Value::String(signature.to_owned());
    serde_json::to_vec(&json).unwrap()
}

/// §9: `signature_invalid` (401) is "a signature [that] does not verify, is not DER". A non-DER
/// signature inside a JSON body (challenge response, enrollment proof) used to get
/// `400 invalid_request`, so a phone could not tell a broken signer from a broken body.
async fn a_signature_that_is_not_der_in_a_json_body_is_signature_invalid(engine: Engine) {
    let (app, key) = app(engine).await;
    let mut alice = enrolled_device(&app, &key, "alice", PushRegistration::None).await;
    let id = start(&app, &key).await;
    let details = pending(&app, &alice).await.remove(0);
    let response = alice.answer(&details, Decision::Deny, "");
    let path = format!("/device/v1/challenges/{id}/response");
    for bad in [NOT_DER, "not base64!"] {
        let reply = app.device_post(&path, &with_signature(&response, bad)).await;
        assert_error(&reply, StatusCode::UNAUTHORIZED, "signature_invalid");
    }
    // Other malformed bodies are still 400.
    let mut broken: Value = serde_json::to_value(&response).unwrap();
    broken["decision"] = json!("maybe");
    let reply = app.device_post(&path, &serde_json::to_vec(&broken).unwrap()).await;
    assert_error(&reply, StatusCode::BAD_REQUEST, "invalid_request");
    // The signed answer itself still works.
    assert_eq!(app.device_post(&path, &serde_json::to_vec(&response).unwrap()).await.status, StatusCode::OK);

    let enrollment = activation_uri(&app, &key, "bob", false).await;
    let phone = TestDevice::new();
    let request = phone.enrollment(enrollment["activation_uri"].as_str().unwrap(), PushRegistration::None);
    let reply = app.device_post("/device/v1/enroll", &with_signature(&request, NOT_DER)).await;
    assert_error(&reply, StatusCode::UNAUTHORIZED, "signature_invalid");
}

fn apns(token: &str) -> PushRegistration {
    PushRegistration::Apns { token: PushToken::new(token).unwrap(), environment: ApnsEnvironment::Production }
}

/// §6.1: an APNs token is "hex". Any printable token used to be accepted, at enrollment and at
/// `PUT /device/v1/push-token`; now anything but 64 to 200 lower-case hex digits is
/// `400 invalid_request` and nothing is stored.
async fn apns_tokens_that_are_not_hex_are_refused(engine: Engine) {
    let (app, key) = app(engine).await;
    let not_hex = "this-is-not-an-apns-device-token-but-it-is-long-enough-for-one";
    let upper = "AB".repeat(32);

    for bad in [not_hex, upper.as_str()] {
        let enrollment = activation_uri(&app, &key, "alice", false).await;
        let mut phone = TestDevice::new();
        let reply = enroll(&app, &mut phone, enrollment["activation_uri"].as_str().unwrap(), apns(bad)).await;
        assert_error(&reply, StatusCode::BAD_REQUEST, "invalid_request");
    }
    let devices = app.get("/v1/users/alice/devices", Some(&key)).await;
    assert_eq!(devices.body, json!([]), "nothing was enrolled");

    let good = "0f".repeat(32);
    let phone = enrolled_device(&app, &key, "alice", apns(&good)).await;
    for bad in [not_hex, upper.as_str()] {
        let body = serde_json::to_vec(&apns(bad)).unwrap();
        let headers = phone.sign_request("PUT", "/device/v1/push-token", &body, app.now_unix());
        let reply = app.signed("PUT", "/device/v1/push-token", &body, &headers).await;
        assert_error(&reply, StatusCode::BAD_REQUEST, "invalid_request");
    }
    let body = serde_json::to_vec(&apns(&"1e".repeat(32))).unwrap();
    let headers = phone.sign_request("PUT", "/device/v1/push-token", &body, app.now_unix());
    assert_eq!(
        app.signed("PUT", "/device/v1/push-token", &body, &headers).await.status,
        StatusCode::NO_CONTENT
    );
}

/// §6.2: a new sign-in supersedes the pending one. The phone sees only the new challenge, and an
/// answer to the superseded one gets `409 challenge_not_pending` without using up its counter
/// (§6.4: only an accepted answer uses a counter).
async fn a_new_challenge_supersedes_the_pending_one(engine: Engine) {
    let (app, key) = app(engine).await;
    let alice = enrolled_device(&app, &key, "alice", PushRegistration::None).await;
    let first = start(&app, &key).await;
    let first_details = pending(&app, &alice).await.remove(0);
    let second = start(&app, &key).await;
    let listed = pending(&app, &alice).await;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].challenge_id.as_str(), second);

    let late = alice.answer_with_counter(&first_details, Decision::Deny, "", 5);
    let reply = app
        .device_post(&format!("/device/v1/challenges/{first}/response"), &serde_json::to_vec(&late).unwrap())
        .await;
    assert_error(&reply, StatusCode::CONFLICT, "challenge_not_pending");
    // Counter 5 was not used up: the accepted answer to the second challenge may reuse it.
    let answer = alice.answer_with_counter(&listed[0], Decision::Deny, "", 5);
    let reply = app
        .device_post(
            &format!("/device/v1/challenges/{second}/response"),
            &serde_json::to_vec(&answer).unwrap(),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
}

on_both_engines!(
    a_signature_that_is_not_der_in_a_json_body_is_signature_invalid,
    apns_tokens_that_are_not_hex_are_refused,
    a_new_challenge_supersedes_the_pending_one,
);
