//! Number-matching challenges over the real router, on SQLite and PostgreSQL: the state
//! machine, exactly-once redemption, the device side and the bad-input rules. Attack tests
//! state the attack in their doc comment.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[macro_use]
mod common;

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use common::{TestApp, assert_error, audit_actions, enrolled_device, signed_get};
use countersign::app::HttpLimits;
use countersign_e2e::Engine;
use countersign_e2e::device::TestDevice;
use countersign_mobile_protocol::{ChallengeDetails, Decision, PendingChallenges, PushRegistration};
use serde_json::{Value, json};

struct Setup {
    app: Arc<TestApp>,
    key: String,
    phone: TestDevice,
}

async fn setup(engine: Engine) -> Setup {
    let app = TestApp::build(engine, HttpLimits::default()).await;
    let key = app.key("portal", "users:read users:write challenges:write challenges:read").await;
    let phone = enrolled_device(&app, &key, "alice", PushRegistration::None).await;
    Setup { app: Arc::new(app), key, phone }
}

async fn start(s: &Setup) -> Value {
    let body = json!({ "username": "alice", "context": { "ip": "203.0.113.7", "user_agent": "Firefox", "location": "Berlin, DE" } });
    let reply = s.app.post_json("/v1/challenges", &s.key, body).await;
    assert_eq!(reply.status, StatusCode::CREATED, "{:?}", reply.body);
    reply.body
}

/// What the phone sees for the only pending challenge, after checking the server signature.
async fn details(s: &Setup) -> ChallengeDetails {
    let reply = signed_get(&s.app, &s.phone, "/device/v1/challenges").await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
    assert!(!reply.body.to_string().contains("\"number\""), "the number never reaches the phone");
    let pending: PendingChallenges = serde_json::from_value(reply.body).unwrap();
    assert_eq!(pending.challenges.len(), 1);
    s.phone.verify_details(&pending.challenges[0]).clone()
}

async fn answer(
    s: &mut Setup,
    details: &ChallengeDetails,
    decision: Decision,
    number: &str,
) -> common::Reply {
    let response = s.phone.answer(details, decision, number);
    let path = format!("/device/v1/challenges/{}/response", details.challenge_id.as_str());
    s.app.device_post(&path, &serde_json::to_vec(&response).unwrap()).await
}

async fn status(s: &Setup, id: &str) -> Value {
    s.app.get(&format!("/v1/challenges/{id}"), Some(&s.key)).await.body
}

fn wrong(number: &str) -> String {
    let n: u32 = number.parse().unwrap();
    format!("{:0width$}", (n + 1) % 10u32.pow(number.len() as u32), width = number.len())
}

async fn approve_then_redeem_exactly_once(engine: Engine) {
    let mut s = setup(engine).await;
    let created = start(&s).await;
    let number = created["number"].as_str().unwrap().to_owned();
    assert_eq!(number.len(), 3);
    assert_eq!(created["state"], "pending");
    let d = details(&s).await;
    assert_eq!(d.challenge_id.as_str(), created["id"]);
    assert_eq!(
        (d.app_name.as_str(), d.ip.as_str(), d.location.as_deref()),
        ("portal", "203.0.113.7", Some("Berlin, DE"))
    );

    let reply = answer(&mut s, &d, Decision::Approve, &number).await;
    assert_eq!((reply.status, &reply.body["outcome"]), (StatusCode::OK, &json!("approved")));
    let id = created["id"].as_str().unwrap();
    let current = status(&s, id).await;
    assert_eq!(current["state"], "approved");
    assert_eq!(current["decided_by_device"], s.phone.device_id().as_str());

    let redeemed = s.app.post_json(&format!("/v1/challenges/{id}/redeem"), &s.key, json!({})).await;
    assert_eq!((redeemed.status, &redeemed.body["state"]), (StatusCode::OK, &json!("redeemed")));
    let again = s.app.post_json(&format!("/v1/challenges/{id}/redeem"), &s.key, json!({})).await;
    assert_error(&again, StatusCode::CONFLICT, "already_redeemed");
    let audit = audit_actions(&s.app).await;
    let count = |action: &str| audit.iter().filter(|(a, _)| a == action).count();
    assert_eq!(
        (count("challenge.created"), count("challenge.approved"), count("challenge.redeemed")),
        (1, 1, 1)
    );
    assert_eq!(count("challenge.redeem_refused"), 1, "the second redeem is audited");
    assert!(audit.iter().all(|(_, d)| d.get("number").is_none()), "no number in the audit trail");
    assert!(!audit.iter().any(|(_, d)| d.to_string().contains(&format!("\"{number}\""))));
}

/// Push-bombing with a guess: a wrong number ends the challenge; there is no second try.
async fn wrong_number_ends_the_challenge(engine: Engine) {
    let mut s = setup(engine).await;
    let created = start(&s).await;
    let d = details(&s).await;
    let reply = answer(&mut s, &d, Decision::Approve, &wrong(created["number"].as_str().unwrap())).await;
    assert_eq!(reply.body["outcome"], "denied_wrong_number");
    let retry = answer(&mut s, &d, Decision::Approve, created["number"].as_str().unwrap()).await;
    assert_error(&retry, StatusCode::CONFLICT, "challenge_not_pending");
    assert_eq!(status(&s, created["id"].as_str().unwrap()).await["state"], "denied_wrong_number");
    let id = created["id"].as_str().unwrap();
    let redeem = s.app.post_json(&format!("/v1/challenges/{id}/redeem"), &s.key, json!({})).await;
    assert_error(&redeem, StatusCode::CONFLICT, "challenge_not_approved");
}

async fn deny_and_report_are_final(engine: Engine) {
    let mut s = setup(engine).await;
    start(&s).await;
    let d = details(&s).await;
    assert_eq!(answer(&mut s, &d, Decision::Deny, "").await.body["outcome"], "denied");
    start(&s).await;
    let d = details(&s).await;
    assert_eq!(answer(&mut s, &d, Decision::Report, "").await.body["outcome"], "reported");
}

/// A response that arrives after expiry is refused and changes nothing; expiry is recorded
/// once.
async fn responses_after_expiry_are_refused(engine: Engine) {
    let mut s = setup(engine).await;
    let created = start(&s).await;
    let d = details(&s).await;
    s.app.advance(time::Duration::seconds(61)).await;
    let reply = answer(&mut s, &d, Decision::Approve, created["number"].as_str().unwrap()).await;
    assert_error(&reply, StatusCode::GONE, "challenge_expired");
    assert_eq!(status(&s, created["id"].as_str().unwrap()).await["state"], "expired");
    assert_eq!(s.app.state.challenges.expire_due(100).await.unwrap(), 0, "already expired on read");
    let expired = audit_actions(&s.app).await.iter().filter(|(a, _)| a == "challenge.expired").count();
    assert_eq!(expired, 1);
    let pending = signed_get(&s.app, &s.phone, "/device/v1/challenges").await;
    assert_eq!(pending.body["challenges"], json!([]));
}

async fn cancel_and_supersede(engine: Engine) {
    let s = setup(engine).await;
    let first = start(&s).await;
    let second = start(&s).await;
    assert_eq!(
        status(&s, first["id"].as_str().unwrap()).await["state"],
        "cancelled",
        "a new prompt cancels the old"
    );
    assert_ne!(first["number"], second["number"], "consecutive numbers differ");
    let id = second["id"].as_str().unwrap();
    let cancelled = s.app.post_json(&format!("/v1/challenges/{id}/cancel"), &s.key, json!({})).await;
    assert_eq!(cancelled.body["state"], "cancelled");
    let again = s.app.post_json(&format!("/v1/challenges/{id}/cancel"), &s.key, json!({})).await;
    assert_error(&again, StatusCode::CONFLICT, "challenge_not_pending");
}

async fn idempotent_creation(engine: Engine) {
    let s = setup(engine).await;
    let send = |body: Value, key: &'static str| {
        let app = Arc::clone(&s.app);
        let api_key = s.key.clone();
        async move {
            let request = Request::post("/v1/challenges")
                .header(header::AUTHORIZATION, format!("Bearer {api_key}"))
                .header(header::CONTENT_TYPE, "application/json")
                .header("idempotency-key", key)
                .body(Body::from(body.to_string()))
                .unwrap();
            app.send(request).await
        }
    };
    let body = json!({ "username": "alice", "context": { "ip": "198.51.100.1" } });
    let first = send(body.clone(), "login-42").await;
    let retry = send(body, "login-42").await;
    assert_eq!(first.status, StatusCode::CREATED);
    assert_eq!((&retry.body["id"], &retry.body["number"]), (&first.body["id"], &first.body["number"]));
    let other = send(json!({ "username": "alice", "context": { "ip": "198.51.100.2" } }), "login-42").await;
    assert_error(&other, StatusCode::UNPROCESSABLE_ENTITY, "idempotency_key_reused");
}

/// Probing which usernames exist through challenge creation: unknown users and users without
/// a device get the same answer.
async fn unknown_users_are_not_enumerable(engine: Engine) {
    let s = setup(engine).await;
    s.app.post_json("/v1/users", &s.key, json!({ "username": "bob" })).await;
    let unknown = s.app.post_json("/v1/challenges", &s.key, json!({ "username": "mallory" })).await;
    let deviceless = s.app.post_json("/v1/challenges", &s.key, json!({ "username": "bob" })).await;
    assert_error(&unknown, StatusCode::CONFLICT, "no_enrolled_device");
    assert_error(&deviceless, StatusCode::CONFLICT, "no_enrolled_device");
    assert_eq!(unknown.body["message"], deviceless.body["message"]);
    let invalid = s.app.post_json("/v1/challenges", &s.key, json!({ "username": "not a name" })).await;
    assert_error(&invalid, StatusCode::CONFLICT, "no_enrolled_device");
}

/// Another app (or a stolen key of another app) cannot read or redeem someone else's approval.
async fn only_the_creating_app_sees_its_challenge(engine: Engine) {
    let mut s = setup(engine).await;
    let created = start(&s).await;
    let d = details(&s).await;
    answer(&mut s, &d, Decision::Approve, created["number"].as_str().unwrap()).await;
    let other = s.app.key("other", "challenges:write challenges:read").await;
    let id = created["id"].as_str().unwrap();
    assert_error(
        &s.app.get(&format!("/v1/challenges/{id}"), Some(&other)).await,
        StatusCode::NOT_FOUND,
        "challenge_not_found",
    );
    let stolen = s.app.post_json(&format!("/v1/challenges/{id}/redeem"), &other, json!({})).await;
    assert_error(&stolen, StatusCode::NOT_FOUND, "challenge_not_found");
    assert_eq!(status(&s, id).await["state"], "approved", "still redeemable by its own app");
}

async fn bad_input_changes_nothing(engine: Engine) {
    let mut s = setup(engine).await;
    let created = start(&s).await;
    let id = created["id"].as_str().unwrap().to_owned();
    assert_error(
        &s.app.get(&format!("/v1/challenges/{id}?wait=31"), Some(&s.key)).await,
        StatusCode::BAD_REQUEST,
        "invalid_wait",
    );
    assert_error(
        &s.app.get(&format!("/v1/challenges/{id}?wait=-1"), Some(&s.key)).await,
        StatusCode::BAD_REQUEST,
        "invalid_wait",
    );
    assert_error(
        &s.app.get("/v1/challenges/not-a-uuid", Some(&s.key)).await,
        StatusCode::BAD_REQUEST,
        "invalid_path",
    );
    let bad_ip = s
        .app
        .post_json("/v1/challenges", &s.key, json!({ "username": "alice", "context": { "ip": "nope" } }))
        .await;
    assert_error(&bad_ip, StatusCode::UNPROCESSABLE_ENTITY, "invalid_request");

    let d = details(&s).await;
    // Too few digits: a precise 400, and the challenge is still pending (no attempt used).
    let short = answer(&mut s, &d, Decision::Approve, "1").await;
    assert_error(&short, StatusCode::BAD_REQUEST, "invalid_request");
    // A signature that is valid DER but made over another answer (a forgery attempt).
    let mut response =
        serde_json::to_value(s.phone.answer(&d, Decision::Approve, created["number"].as_str().unwrap()))
            .unwrap();
    let other = serde_json::to_value(s.phone.answer(&d, Decision::Deny, "")).unwrap();
    response["signature"] = other["signature"].clone();
    let path = format!("/device/v1/challenges/{id}/response");
    assert_error(
        &s.app.device_post(&path, response.to_string().as_bytes()).await,
        StatusCode::UNAUTHORIZED,
        "signature_invalid",
    );
    // A response for another challenge id than the path.
    let other_path = format!("/device/v1/challenges/{}/response", uuid::Uuid::new_v4());
    let valid =
        serde_json::to_vec(&s.phone.answer(&d, Decision::Approve, created["number"].as_str().unwrap()))
            .unwrap();
    assert_error(&s.app.device_post(&other_path, &valid).await, StatusCode::NOT_FOUND, "challenge_not_found");
    assert_error(&s.app.device_post(&path, b"{}").await, StatusCode::BAD_REQUEST, "invalid_request");
    assert_eq!(status(&s, &id).await["state"], "pending", "nothing above changed the challenge");
    let reply = answer(&mut s, &d, Decision::Approve, created["number"].as_str().unwrap()).await;
    assert_eq!(reply.body["outcome"], "approved");
}

/// A captured response replayed later, or an old counter reused: never a second transition.
async fn replayed_responses_never_transition_twice(engine: Engine) {
    let mut s = setup(engine).await;
    let created = start(&s).await;
    let d = details(&s).await;
    let response =
        serde_json::to_vec(&s.phone.answer(&d, Decision::Approve, created["number"].as_str().unwrap()))
            .unwrap();
    let path = format!("/device/v1/challenges/{}/response", created["id"].as_str().unwrap());
    assert_eq!(s.app.device_post(&path, &response).await.status, StatusCode::OK);
    let replay = s.app.device_post(&path, &response).await;
    assert_eq!(replay.status, StatusCode::CONFLICT, "{:?}", replay.body);
    assert!(
        ["challenge_not_pending", "counter_not_increasing"].contains(&replay.body["error"].as_str().unwrap())
    );

    // A fresh challenge answered with a counter that is not above the last one.
    let next = start(&s).await;
    let d2 = details(&s).await;
    let signed = s.phone.answer_with_counter(&d2, Decision::Approve, next["number"].as_str().unwrap(), 1);
    let path2 = format!("/device/v1/challenges/{}/response", next["id"].as_str().unwrap());
    assert_error(
        &s.app.device_post(&path2, &serde_json::to_vec(&signed).unwrap()).await,
        StatusCode::CONFLICT,
        "counter_not_increasing",
    );
    assert_eq!(status(&s, next["id"].as_str().unwrap()).await["state"], "pending");
    let decided = audit_actions(&s.app).await.iter().filter(|(a, _)| a == "challenge.approved").count();
    assert_eq!(decided, 1);
}

/// An answer refused because its challenge is over writes nothing: not even the device
/// counter, so the phone's next answer with that same counter still counts.
async fn refused_answers_do_not_advance_the_counter(engine: Engine) {
    let s = setup(engine).await;
    let first = start(&s).await;
    let d1 = details(&s).await;
    let id1 = first["id"].as_str().unwrap();
    let cancelled = s.app.post_json(&format!("/v1/challenges/{id1}/cancel"), &s.key, json!({})).await;
    assert_eq!(cancelled.body["state"], "cancelled");
    let late = s.phone.answer_with_counter(&d1, Decision::Approve, first["number"].as_str().unwrap(), 5);
    let path1 = format!("/device/v1/challenges/{id1}/response");
    assert_error(
        &s.app.device_post(&path1, &serde_json::to_vec(&late).unwrap()).await,
        StatusCode::CONFLICT,
        "challenge_not_pending",
    );

    let second = start(&s).await;
    let d2 = details(&s).await;
    let answer = s.phone.answer_with_counter(&d2, Decision::Approve, second["number"].as_str().unwrap(), 5);
    let path2 = format!("/device/v1/challenges/{}/response", second["id"].as_str().unwrap());
    let reply = s.app.device_post(&path2, &serde_json::to_vec(&answer).unwrap()).await;
    assert_eq!(
        reply.status,
        StatusCode::OK,
        "counter 5 was not used up by the refused answer: {:?}",
        reply.body
    );
    assert_eq!(reply.body["outcome"], "approved");
}

/// A phone enrolled for Bob answers Alice's challenge.
async fn another_users_device_cannot_answer(engine: Engine) {
    let mut s = setup(engine).await;
    let created = start(&s).await;
    let d = details(&s).await;
    let mut bobs = enrolled_device(&s.app, &s.key, "bob", PushRegistration::None).await;
    let response = bobs.answer(&d, Decision::Approve, created["number"].as_str().unwrap());
    let path = format!("/device/v1/challenges/{}/response", created["id"].as_str().unwrap());
    assert_error(
        &s.app.device_post(&path, &serde_json::to_vec(&response).unwrap()).await,
        StatusCode::NOT_FOUND,
        "challenge_not_found",
    );
    let foreign =
        signed_get(&s.app, &bobs, &format!("/device/v1/challenges/{}", created["id"].as_str().unwrap()))
            .await;
    assert_error(&foreign, StatusCode::NOT_FOUND, "challenge_not_found");
    let _ = answer(&mut s, &d, Decision::Deny, "").await;
}

/// Many responders race on one challenge (approve, deny, replays): exactly one transition and
/// one audit event.
async fn racing_responders_make_one_transition(engine: Engine) {
    let mut s = setup(engine).await;
    let mut tablet = common::approved_second_device(&s.app, &s.key, "alice", &mut s.phone).await;
    let created = start(&s).await;
    let number = created["number"].as_str().unwrap().to_owned();
    let d = details(&s).await;
    let path = format!("/device/v1/challenges/{}/response", created["id"].as_str().unwrap());
    let mut bodies = Vec::new();
    for i in 0..6 {
        let approve = s.phone.answer(&d, Decision::Approve, &number);
        bodies.push(serde_json::to_vec(&approve).unwrap());
        bodies.push(serde_json::to_vec(&approve).unwrap()); // a replay of the same bytes
        let deny = tablet.answer(&d, if i % 2 == 0 { Decision::Deny } else { Decision::Report }, "");
        bodies.push(serde_json::to_vec(&deny).unwrap());
    }
    let tasks: Vec<_> = bodies
        .into_iter()
        .map(|body| {
            let app = Arc::clone(&s.app);
            let path = path.clone();
            tokio::spawn(async move { app.device_post(&path, &body).await })
        })
        .collect();
    let mut ok = 0;
    for task in tasks {
        let reply = task.await.unwrap();
        if reply.status == StatusCode::OK {
            ok += 1;
        } else {
            assert_eq!(reply.status, StatusCode::CONFLICT, "{:?}", reply.body);
        }
    }
    assert_eq!(ok, 1, "exactly one responder wins");
    let id = created["id"].as_str().unwrap();
    let decided: Vec<String> = audit_actions(&s.app)
        .await
        .into_iter()
        .filter(|(a, d)| a.starts_with("challenge.") && a != "challenge.created" && d["challenge_id"] == id)
        .map(|(a, _)| a)
        .collect();
    assert_eq!(decided.len(), 1, "one transition, one audit event: {decided:?}");
    let _ = answer(&mut s, &d, Decision::Deny, "").await;
}

/// The app's long-poll returns as soon as the phone answers, not at the end of the wait.
async fn long_poll_wakes_on_decision(engine: Engine) {
    let mut s = setup(engine).await;
    let created = start(&s).await;
    let id = created["id"].as_str().unwrap().to_owned();
    let waiter = {
        let app = Arc::clone(&s.app);
        let key = s.key.clone();
        let id = id.clone();
        tokio::spawn(async move {
            let started = std::time::Instant::now();
            let reply = app.get(&format!("/v1/challenges/{id}?wait=20"), Some(&key)).await;
            (reply, started.elapsed())
        })
    };
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    let d = details(&s).await;
    answer(&mut s, &d, Decision::Approve, created["number"].as_str().unwrap()).await;
    let (reply, waited) = waiter.await.unwrap();
    assert_eq!(reply.body["state"], "approved");
    assert!(
        waited < std::time::Duration::from_secs(10),
        "woke on the decision, not the timeout ({waited:?})"
    );
    let quick = s.app.get(&format!("/v1/challenges/{id}?wait=0"), Some(&s.key)).await;
    assert_eq!(quick.body["state"], "approved");
}

async fn factors_report_push(engine: Engine) {
    let s = setup(engine).await;
    let factors = s.app.get("/v1/users/alice/factors", Some(&s.key)).await;
    assert_eq!(factors.body["factors"][0], json!({ "factor": "push", "available": true, "reason": null }));
    assert_eq!(factors.body["enrollment_required"], false);
    s.app.post_json("/v1/users", &s.key, json!({ "username": "bob" })).await;
    let bob = s.app.get("/v1/users/bob/factors", Some(&s.key)).await;
    assert_eq!(bob.body["enrollment_required"], true);
}

/// An attacker holding any `users:read` key probes `/v1/users/{u}/factors` to learn which
/// usernames exist (404 for unknown, 200 for known): an unknown user must answer exactly like a
/// known user without a device.
async fn factors_do_not_enumerate_users(engine: Engine) {
    let s = setup(engine).await;
    s.app.post_json("/v1/users", &s.key, json!({ "username": "bob" })).await;
    let deviceless = s.app.get("/v1/users/bob/factors", Some(&s.key)).await;
    let unknown = s.app.get("/v1/users/mallory/factors", Some(&s.key)).await;
    assert_eq!(unknown.status, StatusCode::OK, "{:?}", unknown.body);
    assert_eq!(deviceless.status, StatusCode::OK, "{:?}", deviceless.body);
    assert_eq!(deviceless.body["enrollment_required"], true);
    assert_eq!(unknown.body["username"], "mallory");
    let mut as_bob = unknown.body.clone();
    as_bob["username"] = json!("bob");
    assert_eq!(as_bob, deviceless.body, "same fields, same values, only the name differs");
    let impossible = s.app.get("/v1/users/..%2F/factors", Some(&s.key)).await;
    assert_eq!(impossible.status, StatusCode::OK, "{:?}", impossible.body);
    assert_eq!(impossible.body["enrollment_required"], true);
}

/// A long-poll (`?wait=N`, N up to the configured maximum) must answer with the challenge's
/// state, not `503 timeout`: the general request timeout must not cut the route that waits by
/// design. Here the request timeout (1 s) is shorter than the longest wait (2 s).
async fn long_poll_outlives_the_request_timeout(engine: Engine) {
    let limits = HttpLimits { request_timeout: std::time::Duration::from_secs(1), ..HttpLimits::default() };
    let settings = countersign::challenges::service::ChallengeSettings {
        max_wait: std::time::Duration::from_secs(2),
        ..Default::default()
    };
    let app = TestApp::build_with(engine, limits, settings).await;
    let key = app.key("portal", "users:read users:write challenges:write challenges:read").await;
    let _phone = enrolled_device(&app, &key, "alice", PushRegistration::None).await;
    let created = app.post_json("/v1/challenges", &key, json!({ "username": "alice" })).await;
    assert_eq!(created.status, StatusCode::CREATED, "{:?}", created.body);
    let id = created.body["id"].as_str().unwrap();
    let started = std::time::Instant::now();
    let waited = app.get(&format!("/v1/challenges/{id}?wait=2"), Some(&key)).await;
    assert_eq!(waited.status, StatusCode::OK, "{:?}", waited.body);
    assert_eq!(waited.body["state"], "pending");
    assert!(started.elapsed() >= std::time::Duration::from_secs(2), "it waited the whole wait");
    let too_long = app.get(&format!("/v1/challenges/{id}?wait=3"), Some(&key)).await;
    assert_error(&too_long, StatusCode::BAD_REQUEST, "invalid_wait");
}

/// An approval left lying around (a stolen session id, a replayed callback) cannot be redeemed
/// once it is stale.
async fn stale_approvals_cannot_be_redeemed(engine: Engine) {
    let mut s = setup(engine).await;
    let created = start(&s).await;
    let d = details(&s).await;
    assert_eq!(
        answer(&mut s, &d, Decision::Approve, created["number"].as_str().unwrap()).await.body["outcome"],
        "approved"
    );
    s.app.advance(time::Duration::seconds(121)).await;
    let id = created["id"].as_str().unwrap();
    let redeem = s.app.post_json(&format!("/v1/challenges/{id}/redeem"), &s.key, json!({})).await;
    assert_error(&redeem, StatusCode::CONFLICT, "approval_stale");
}

/// Scopes: a key that may only read users cannot start challenges; a write key may read its own.
async fn challenge_scopes_are_enforced(engine: Engine) {
    let s = setup(engine).await;
    let reader = s.app.key("directory", "users:read").await;
    let refused = s.app.post_json("/v1/challenges", &reader, json!({ "username": "alice" })).await;
    assert_error(&refused, StatusCode::FORBIDDEN, "insufficient_scope");
    let writer = s.app.key("login", "challenges:write").await;
    let created = s.app.post_json("/v1/challenges", &writer, json!({ "username": "alice" })).await;
    assert_eq!(created.status, StatusCode::CREATED);
    let id = created.body["id"].as_str().unwrap();
    assert_eq!(s.app.get(&format!("/v1/challenges/{id}"), Some(&writer)).await.status, StatusCode::OK);
    assert_error(
        &s.app.get(&format!("/v1/challenges/{id}"), Some(&reader)).await,
        StatusCode::FORBIDDEN,
        "insufficient_scope",
    );
}

/// A revoked phone (lost, stolen) still holds its key and answers a prompt: refused.
async fn revoked_device_cannot_answer(engine: Engine) {
    let mut s = setup(engine).await;
    let mut stolen = common::approved_second_device(&s.app, &s.key, "alice", &mut s.phone).await;
    let revoked =
        s.app.delete(&format!("/v1/users/alice/devices/{}", stolen.device_id().as_str()), &s.key).await;
    assert_eq!(revoked.status, StatusCode::NO_CONTENT);
    let created = start(&s).await;
    let d = details(&s).await;
    let response = stolen.answer(&d, Decision::Approve, created["number"].as_str().unwrap());
    let path = format!("/device/v1/challenges/{}/response", created["id"].as_str().unwrap());
    assert_error(
        &s.app.device_post(&path, &serde_json::to_vec(&response).unwrap()).await,
        StatusCode::UNAUTHORIZED,
        "device_revoked",
    );
    assert_eq!(status(&s, created["id"].as_str().unwrap()).await["state"], "pending");
    assert_eq!(answer(&mut s, &d, Decision::Deny, "").await.body["outcome"], "denied");
}

/// Attack: a cloned device key. A correctly signed answer whose counter is not above the last
/// accepted one means a second holder of the key (or a key restored from a backup): it is
/// refused (409), audited as `device.possible_clone` and raises a `possible_clone` alert. A
/// phone re-sending the answer that already decided the challenge (a network retry) is not.
async fn an_old_counter_from_a_cloned_key_raises_possible_clone(engine: Engine) {
    let mut s = setup(engine).await;
    let created = start(&s).await;
    let d = details(&s).await;
    let number = created["number"].as_str().unwrap().to_owned();
    let response = serde_json::to_vec(&s.phone.answer(&d, Decision::Approve, &number)).unwrap();
    let path = format!("/device/v1/challenges/{}/response", created["id"].as_str().unwrap());
    assert_eq!(s.app.device_post(&path, &response).await.body["outcome"], "approved");
    let retry = s.app.device_post(&path, &response).await;
    assert_error(&retry, StatusCode::CONFLICT, "challenge_not_pending");
    let clones =
        |audit: &[(String, Value)]| audit.iter().filter(|(a, _)| a == "device.possible_clone").count();
    assert_eq!(clones(&audit_actions(&s.app).await), 0, "a retry is no clone");

    let next = start(&s).await;
    let d2 = details(&s).await;
    let cloned = s.phone.answer_with_counter(&d2, Decision::Approve, next["number"].as_str().unwrap(), 1);
    let path2 = format!("/device/v1/challenges/{}/response", next["id"].as_str().unwrap());
    let refused = s.app.device_post(&path2, &serde_json::to_vec(&cloned).unwrap()).await;
    assert_error(&refused, StatusCode::CONFLICT, "counter_not_increasing");
    let audit = audit_actions(&s.app).await;
    assert_eq!(clones(&audit), 1);
    let (_, details) = audit.iter().find(|(a, _)| a == "device.possible_clone").unwrap();
    assert_eq!((details["counter"].as_i64(), details["last_accepted_counter"].as_i64()), (Some(1), Some(1)));
    let mut after = 0;
    let mut kinds = Vec::new();
    while let Some(alert) = s.app.store.next_alert(after).await.unwrap() {
        kinds.push(alert.kind.clone());
        after = alert.id;
    }
    assert_eq!(kinds, vec!["possible_clone".to_owned()]);
    assert_eq!(status(&s, next["id"].as_str().unwrap()).await["state"], "pending", "nothing changed");
}

/// CIBA and the Keycloak channel: the consumption device shows a number it chose, and the
/// phone must be typed that one. Attack: a requester pins one number ("123" every time) so the
/// user learns to type it without looking; a number the user saw lately is refused.
async fn a_requester_chosen_number_is_the_number_and_cannot_be_pinned(engine: Engine) {
    use countersign::challenges::service::{ChallengeContext, ChallengeError, PromptOptions};
    use countersign::clock::Clock;
    let mut s = setup(engine).await;
    let record = s.app.store.app_by_name("portal").await.unwrap().unwrap();
    let app = countersign::api_keys::service::AuthenticatedApp {
        id: record.id,
        name: record.name,
        scopes: Default::default(),
    };
    let service = Arc::clone(&s.app.state.challenges);
    let deadline = s.app.clock.now() + time::Duration::seconds(20);
    let options = |number: &str| PromptOptions {
        number: Some(number.to_owned()),
        expires_at: Some(deadline),
        ..PromptOptions::default()
    };
    for bad in ["12", "1234", "12a", "１２３"] {
        let refused = service.create_with(&app, "alice", ChallengeContext::default(), options(bad)).await;
        assert!(matches!(refused, Err(ChallengeError::InvalidInput(_))), "{bad}: {refused:?}");
    }
    let created =
        service.create_with(&app, "alice", ChallengeContext::default(), options("482")).await.unwrap();
    assert_eq!(created.number, "482");
    assert_eq!(created.record.expires_at, deadline, "the requester's deadline is sooner than the TTL");
    let d = details(&s).await;
    let wrong_answer = answer(&mut s, &d, Decision::Approve, "481").await;
    assert_eq!(wrong_answer.status, StatusCode::OK, "{:?}", wrong_answer.body);
    assert_eq!(status(&s, d.challenge_id.as_str()).await["state"], "denied_wrong_number");
    let again = service.create_with(&app, "alice", ChallengeContext::default(), options("482")).await;
    assert!(matches!(again, Err(ChallengeError::NumberRecentlyUsed)), "{again:?}");
    // Another number passes that check, and meets the ladder: the wrong number froze push.
    let other = service.create_with(&app, "alice", ChallengeContext::default(), options("517")).await;
    assert!(
        matches!(&other, Err(ChallengeError::PushFrozen { reason, .. }) if reason == "wrong_number"),
        "{other:?}"
    );
}

on_both_engines!(
    a_requester_chosen_number_is_the_number_and_cannot_be_pinned,
    an_old_counter_from_a_cloned_key_raises_possible_clone,
    approve_then_redeem_exactly_once,
    wrong_number_ends_the_challenge,
    deny_and_report_are_final,
    responses_after_expiry_are_refused,
    cancel_and_supersede,
    idempotent_creation,
    unknown_users_are_not_enumerable,
    only_the_creating_app_sees_its_challenge,
    bad_input_changes_nothing,
    replayed_responses_never_transition_twice,
    refused_answers_do_not_advance_the_counter,
    another_users_device_cannot_answer,
    racing_responders_make_one_transition,
    long_poll_wakes_on_decision,
    factors_report_push,
    factors_do_not_enumerate_users,
    long_poll_outlives_the_request_timeout,
    stale_approvals_cannot_be_redeemed,
    challenge_scopes_are_enforced,
    revoked_device_cannot_answer,
);
