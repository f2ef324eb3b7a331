//! Probing device ids and challenge ids without a key, on SQLite and PostgreSQL. Each test's doc
//! comment states the attack: a caller who holds no device key must not learn whether a device
//! id or a challenge exists before a signature verifies (same status, same code, same work).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[macro_use]
mod common;

use axum::http::StatusCode;
use common::{Reply, TestApp, assert_error, enrolled_device, impostor, signed_get};
use countersign::app::HttpLimits;
use countersign_e2e::Engine;
use countersign_e2e::device::TestDevice;
use countersign_mobile_protocol::{
    ChallengeDetails, Decision, DeviceId, PendingChallenges, PushRegistration,
};
use serde_json::json;

const LIST: &str = "/device/v1/challenges";

async fn app(engine: Engine) -> (TestApp, String) {
    let app = TestApp::build(engine, HttpLimits::default()).await;
    let key = app.key("portal", "users:read users:write challenges:write challenges:read").await;
    (app, key)
}

fn random_device_id() -> DeviceId {
    DeviceId::new(uuid::Uuid::new_v4().to_string()).unwrap()
}

fn same_answer(a: &Reply, b: &Reply) {
    assert_eq!((a.status, &a.body["error"]), (b.status, &b.body["error"]), "{:?} vs {:?}", a.body, b.body);
}

/// Attack: an attacker with no key sends a signed-looking request with a stale timestamp under
/// a device id. The server used to check the timestamp before the signature, so a known id
/// answered `request_expired` and an unknown one `signature_invalid`: device ids could be
/// probed. Both must answer `401 signature_invalid`.
async fn stale_timestamps_do_not_reveal_whether_a_device_id_exists(engine: Engine) {
    let (app, key) = app(engine).await;
    let alice = enrolled_device(&app, &key, "alice", PushRegistration::None).await;
    let stale = app.now_unix() - 3_600;
    let known = impostor(&alice, alice.device_id()).sign_request("GET", LIST, b"", stale);
    let unknown = impostor(&alice, random_device_id()).sign_request("GET", LIST, b"", stale);
    let malformed =
        impostor(&alice, DeviceId::new("not-a-uuid").unwrap()).sign_request("GET", LIST, b"", stale);

    let known = app.signed("GET", LIST, b"", &known).await;
    let unknown = app.signed("GET", LIST, b"", &unknown).await;
    let malformed = app.signed("GET", LIST, b"", &malformed).await;
    assert_error(&known, StatusCode::UNAUTHORIZED, "signature_invalid");
    same_answer(&known, &unknown);
    same_answer(&known, &malformed);

    // The real phone, whose signature verifies, still learns that its clock is off.
    let honest = alice.sign_request("GET", LIST, b"", stale);
    assert_error(&app.signed("GET", LIST, b"", &honest).await, StatusCode::UNAUTHORIZED, "request_expired");
}

async fn start(app: &TestApp, key: &str, username: &str) -> String {
    let reply = app.post_json("/v1/challenges", key, json!({ "username": username })).await;
    assert_eq!(reply.status, StatusCode::CREATED, "{:?}", reply.body);
    reply.body["id"].as_str().unwrap().to_owned()
}

async fn pending(app: &TestApp, device: &TestDevice) -> ChallengeDetails {
    let reply = signed_get(app, device, LIST).await;
    let pending: PendingChallenges = serde_json::from_value(reply.body).unwrap();
    device.verify_details(&pending.challenges[0]).clone()
}

/// Details as they would look for challenge `id` (an attacker can make these up).
fn made_up(template: &ChallengeDetails, id: &str) -> ChallengeDetails {
    ChallengeDetails {
        challenge_id: countersign_mobile_protocol::ChallengeId::new(id).unwrap(),
        ..template.clone()
    }
}

async fn respond(
    app: &TestApp,
    id: &str,
    response: &countersign_mobile_protocol::ChallengeResponse,
) -> Reply {
    let path = format!("/device/v1/challenges/{id}/response");
    app.device_post(&path, &serde_json::to_vec(response).unwrap()).await
}

/// Attack: an attacker who knows a device id but not its key posts answers to challenge ids.
/// The server used to look the challenge up before checking the signature, so an unknown
/// challenge answered `404` and a live one `401`: challenge ids (and through them, sign-ins in
/// progress) could be probed. Until a signature verifies, every combination of known or
/// unknown device and known, unknown or another user's challenge must answer the same. After
/// it verifies, another user's challenge still looks like no challenge at all.
async fn answers_do_not_reveal_whether_a_challenge_exists_before_the_signature_verifies(engine: Engine) {
    let (app, key) = app(engine).await;
    let mut alice = enrolled_device(&app, &key, "alice", PushRegistration::None).await;
    let mut bob = enrolled_device(&app, &key, "bob", PushRegistration::None).await;
    let alices = start(&app, &key, "alice").await;
    let details = pending(&app, &alice).await;
    let unknown_challenge = uuid::Uuid::new_v4().to_string();

    let posing_as_alice = impostor(&alice, alice.device_id());
    let posing_as_nobody = impostor(&alice, random_device_id());
    let mut replies = Vec::new();
    for attacker in [&posing_as_alice, &posing_as_nobody] {
        for id in [alices.as_str(), unknown_challenge.as_str()] {
            let forged = attacker.answer_with_counter(&made_up(&details, id), Decision::Deny, "", 99);
            replies.push(respond(&app, id, &forged).await);
        }
    }
    assert_error(&replies[0], StatusCode::UNAUTHORIZED, "signature_invalid");
    for reply in &replies[1..] {
        same_answer(&replies[0], reply);
    }

    // Bob's device verifies, and still cannot tell Alice's challenge from a made-up one.
    let bobs_try = bob.answer(&made_up(&details, &alices), Decision::Deny, "");
    let to_alices = respond(&app, &alices, &bobs_try).await;
    let bobs_try = bob.answer(&made_up(&details, &unknown_challenge), Decision::Deny, "");
    let to_nothing = respond(&app, &unknown_challenge, &bobs_try).await;
    assert_error(&to_alices, StatusCode::NOT_FOUND, "challenge_not_found");
    same_answer(&to_alices, &to_nothing);

    // Alice's own answer still works.
    let deny = alice.answer(&details, Decision::Deny, "");
    let reply = respond(&app, &alices, &deny).await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
}

on_both_engines!(
    stale_timestamps_do_not_reveal_whether_a_device_id_exists,
    answers_do_not_reveal_whether_a_challenge_exists_before_the_signature_verifies,
);
