//! Passkeys over the REST API, with 1Password's `passkey` crate as a software authenticator
//! doing real WebAuthn crypto: registration (trust rule, single use, one user per credential),
//! management, `factors`, and every bad input as its own named test, on both engines.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[macro_use]
mod common;
#[path = "common/soft_key.rs"]
mod soft_key;

use axum::http::StatusCode;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use common::{
    TestApp, app_with_user, assert_error, audit_actions, audit_len, enrolled_device, fresh_approval,
    signed_get,
};
use countersign_e2e::Engine;
use serde_json::{Value, json};
use soft_key::SoftKey;

async fn begin(app: &TestApp, key: &str, username: &str, body: Value) -> common::Reply {
    app.post_json(&format!("/v1/users/{username}/passkeys/registrations"), key, body).await
}

async fn complete(app: &TestApp, key: &str, username: &str, id: &str, credential: &Value) -> common::Reply {
    let path = format!("/v1/users/{username}/passkeys/registrations/{id}");
    app.post_json(&path, key, credential.clone()).await
}

/// A begun registration: (ceremony id, creation options).
async fn begun(app: &TestApp, key: &str, username: &str, body: Value) -> (String, Value) {
    let reply = begin(app, key, username, body).await;
    assert_eq!(reply.status, StatusCode::CREATED, "{:?}", reply.body);
    (reply.body["id"].as_str().unwrap().to_owned(), reply.body["public_key"].clone())
}

/// Registers a passkey on `soft_key` for `username`; returns the stored passkey.
async fn register(app: &TestApp, key: &str, username: &str, soft_key: &mut SoftKey, body: Value) -> Value {
    let (id, options) = begun(app, key, username, body).await;
    let credential = soft_key.create(&options).await;
    let reply = complete(app, key, username, &id, &credential).await;
    assert_eq!(reply.status, StatusCode::CREATED, "{:?}", reply.body);
    reply.body
}

async fn passkeys(app: &TestApp, key: &str, username: &str) -> Vec<Value> {
    let reply = app.get(&format!("/v1/users/{username}/passkeys"), Some(key)).await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
    reply.body.as_array().unwrap().clone()
}

async fn passkey_factor(app: &TestApp, key: &str, username: &str) -> Value {
    let reply = app.get(&format!("/v1/users/{username}/factors"), Some(key)).await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
    reply.body["factors"].as_array().unwrap().iter().find(|f| f["factor"] == "passkey").unwrap().clone()
}

fn decode(value: &Value) -> Vec<u8> {
    URL_SAFE_NO_PAD.decode(value.as_str().unwrap()).unwrap()
}

/// The credential's `clientDataJSON`, decoded.
fn client_data(credential: &Value) -> Value {
    serde_json::from_slice(&decode(&credential["response"]["clientDataJSON"])).unwrap()
}

/// The credential with its `clientDataJSON` replaced. Attestation `none` signs nothing, so
/// only the relying party's checks stand between such a forgery and a registration.
fn with_client_data(credential: &Value, client_data: &Value) -> Value {
    let mut forged = credential.clone();
    forged["response"]["clientDataJSON"] = json!(URL_SAFE_NO_PAD.encode(client_data.to_string()));
    forged
}

/// The credential with one member of its `clientDataJSON` set to `value`.
fn with_client_data_field(credential: &Value, field: &str, value: Value) -> Value {
    let mut data = client_data(credential);
    data[field] = value;
    with_client_data(credential, &data)
}

/// The credential with its authenticator data patched where it starts (the RP ID hash), in
/// both places a registration response carries it.
fn with_auth_data(credential: &Value, patch: impl Fn(&mut [u8])) -> Value {
    let rp_id_hash = ring::digest::digest(&ring::digest::SHA256, b"localhost");
    let mut forged = credential.clone();
    for field in ["authenticatorData", "attestationObject"] {
        let mut bytes = decode(&credential["response"][field]);
        let at = bytes.windows(32).position(|w| w == rp_id_hash.as_ref()).unwrap();
        patch(&mut bytes[at..]);
        forged["response"][field] = json!(URL_SAFE_NO_PAD.encode(&bytes));
    }
    forged
}

/// The actions of the audit events recorded after the first `from`.
async fn actions_since(app: &TestApp, from: i64) -> Vec<(String, Value)> {
    audit_actions(app).await.into_iter().skip(usize::try_from(from).unwrap()).collect()
}

// ---------------------------------------------------------------------------------------------
// Registration and management

async fn a_first_passkey_registers_and_is_listed_renamed_and_revoked(engine: Engine) {
    let (app, key) = app_with_user(engine, "alice").await;
    assert_eq!(passkey_factor(&app, &key, "alice").await["available"], false);
    let (id, options) = begun(&app, &key, "alice", json!({ "name": "Laptop" })).await;
    assert_eq!(options["rp"]["id"], "localhost");
    assert_eq!(options["authenticatorSelection"]["userVerification"], "required");
    assert_eq!(options["authenticatorSelection"]["residentKey"], "preferred");
    let handle = decode(&options["user"]["id"]);
    assert_eq!(handle.len(), 64, "a random 64-byte user handle");
    assert!(!handle.windows(5).any(|w| w == b"alice"), "the handle never carries the username");

    let mut soft_key = SoftKey::new();
    let credential = soft_key.create(&options).await;
    let reply = complete(&app, &key, "alice", &id, &credential).await;
    assert_eq!(reply.status, StatusCode::CREATED, "{:?}", reply.body);
    let stored = reply.body;
    assert_eq!(stored["name"], "Laptop");
    assert_eq!(stored["aaguid"], "00000000-0000-0000-0000-000000000000");
    // The soft key says what a synced passkey says: backup eligible and backed up (BE, BS).
    assert_eq!((stored["backup_eligible"].clone(), stored["backed_up"].clone()), (json!(true), json!(true)));
    assert_eq!(stored["last_used_at"], Value::Null);
    assert_eq!(passkeys(&app, &key, "alice").await, vec![stored.clone()]);
    assert_eq!(passkey_factor(&app, &key, "alice").await["available"], true);
    let factors = app.get("/v1/users/alice/factors", Some(&key)).await;
    assert_eq!(factors.body["enrollment_required"], false, "a passkey is a factor");

    let path = format!("/v1/users/alice/passkeys/{}", stored["id"].as_str().unwrap());
    let request = axum::http::Request::patch(&path)
        .header("authorization", format!("Bearer {key}"))
        .header("content-type", "application/json")
        .body(axum::body::Body::from(json!({ "name": "Work laptop" }).to_string()))
        .unwrap();
    let renamed = app.send(request).await;
    assert_eq!((renamed.status, renamed.body["name"].clone()), (StatusCode::OK, json!("Work laptop")));
    assert_eq!(app.delete(&path, &key).await.status, StatusCode::NO_CONTENT);
    assert_error(&app.delete(&path, &key).await, StatusCode::NOT_FOUND, "passkey_not_found");
    assert!(passkeys(&app, &key, "alice").await[0]["revoked_at"].is_string());
    assert_eq!(passkey_factor(&app, &key, "alice").await["available"], false);

    let actions: Vec<String> = audit_actions(&app).await.into_iter().map(|(a, _)| a).collect();
    for action in ["passkey.registration_started", "passkey.registered", "passkey.renamed", "passkey.revoked"]
    {
        assert_eq!(actions.iter().filter(|a| *a == action).count(), 1, "{action} in {actions:?}");
    }
}

async fn a_registration_completes_once(engine: Engine) {
    let (app, key) = app_with_user(engine, "alice").await;
    let (id, options) = begun(&app, &key, "alice", json!({})).await;
    let credential = SoftKey::new().create(&options).await;
    let (first, second) = tokio::join!(
        complete(&app, &key, "alice", &id, &credential),
        complete(&app, &key, "alice", &id, &credential)
    );
    let mut statuses = [first.status, second.status];
    statuses.sort();
    assert_eq!(statuses, [StatusCode::CREATED, StatusCode::NOT_FOUND], "{:?} {:?}", first.body, second.body);
    assert_eq!(passkeys(&app, &key, "alice").await.len(), 1);
    let again = complete(&app, &key, "alice", &id, &credential).await;
    assert_error(&again, StatusCode::NOT_FOUND, "registration_not_found");
}

async fn a_user_with_a_factor_needs_an_approval_which_counts_once(engine: Engine) {
    let (app, key) = app_with_user(engine, "alice").await;
    let mut phone =
        enrolled_device(&app, &key, "alice", countersign_mobile_protocol::PushRegistration::None).await;
    let before = audit_len(&app).await;
    let refused = begin(&app, &key, "alice", json!({})).await;
    assert_error(&refused, StatusCode::FORBIDDEN, "second_factor_proof_required");
    let events = actions_since(&app, before).await;
    assert_eq!(events.len(), 1);
    assert_eq!(
        (events[0].0.as_str(), events[0].1["reason"].clone()),
        ("passkey.registration_refused", json!("second_factor_proof_required"))
    );

    let approval = fresh_approval(&app, &key, "alice", &mut phone).await;
    let mut soft_key = SoftKey::new();
    register(&app, &key, "alice", &mut soft_key, json!({ "approval": approval })).await;
    let reused = begin(&app, &key, "alice", json!({ "approval": approval })).await;
    assert_error(&reused, StatusCode::FORBIDDEN, "approval_invalid");
    let redeem = app.post_json(&format!("/v1/challenges/{approval}/redeem"), &key, json!({})).await;
    assert_error(&redeem, StatusCode::CONFLICT, "already_redeemed");

    // The phone is told a passkey was added.
    let notices = signed_get(&app, &phone, "/device/v1/notices").await;
    let kinds: Vec<&str> =
        notices.body["notices"].as_array().unwrap().iter().filter_map(|n| n["kind"].as_str()).collect();
    assert!(kinds.contains(&"passkey_added"), "{:?}", notices.body);

    // A user whose only factor is a passkey needs an approval too.
    let (app2, key2) = app_with_user(engine, "bob").await;
    register(&app2, &key2, "bob", &mut SoftKey::new(), json!({})).await;
    assert_error(
        &begin(&app2, &key2, "bob", json!({})).await,
        StatusCode::FORBIDDEN,
        "second_factor_proof_required",
    );
}

async fn a_credential_is_bound_to_one_user_forever(engine: Engine) {
    let (app, key) = app_with_user(engine, "alice").await;
    assert_eq!(
        app.post_json("/v1/users", &key, json!({ "username": "bob" })).await.status,
        StatusCode::CREATED
    );
    let (id, options) = begun(&app, &key, "alice", json!({})).await;
    let credential = SoftKey::new().create(&options).await;
    let alice = complete(&app, &key, "alice", &id, &credential).await.body;

    // Bob presents alice's credential, answering his own ceremony.
    let (bob_id, bob_options) = begun(&app, &key, "bob", json!({})).await;
    let mut data = client_data(&credential);
    data["challenge"] = bob_options["challenge"].clone();
    let before = audit_len(&app).await;
    let shared = complete(&app, &key, "bob", &bob_id, &with_client_data(&credential, &data)).await;
    assert_error(&shared, StatusCode::CONFLICT, "factor_already_bound");
    assert!(passkeys(&app, &key, "bob").await.is_empty());
    let events = actions_since(&app, before).await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0].0, "device.factor_refused");
    assert_eq!(events[0].1["factor"], "passkey");
    assert_eq!(events[0].1["username"], "bob");
    let alice_id = app.get("/v1/users/alice", Some(&key)).await.body["id"].clone();
    assert_eq!(events[0].1["bound_to_user_id"], alice_id, "both users are named");
    assert_eq!(events[0].1["bound_passkey_id"], alice["id"]);

    // Revoked, it stays bound: alice cannot register it again either.
    let path = format!("/v1/users/alice/passkeys/{}", alice["id"].as_str().unwrap());
    assert_eq!(app.delete(&path, &key).await.status, StatusCode::NO_CONTENT);
    let (id2, options2) = begun(&app, &key, "alice", json!({})).await;
    let mut data = client_data(&credential);
    data["challenge"] = options2["challenge"].clone();
    let again = complete(&app, &key, "alice", &id2, &with_client_data(&credential, &data)).await;
    assert_error(&again, StatusCode::CONFLICT, "factor_already_bound");
}

async fn an_aaguid_allow_list_refuses_other_authenticators(engine: Engine) {
    let only_security_keys = countersign::passkeys::model::WebauthnConfig {
        allowed_aaguids: vec![uuid::Uuid::from_bytes([7; 16])],
        ..Default::default()
    };
    let app = TestApp::with_webauthn(engine, only_security_keys).await;
    let key = app.key("portal", "users:read users:write").await;
    assert_eq!(
        app.post_json("/v1/users", &key, json!({ "username": "alice" })).await.status,
        StatusCode::CREATED
    );
    let (id, options) = begun(&app, &key, "alice", json!({})).await;
    let credential = SoftKey::new().create(&options).await;
    let before = audit_len(&app).await;
    let refused = complete(&app, &key, "alice", &id, &credential).await;
    assert_error(&refused, StatusCode::FORBIDDEN, "authenticator_not_allowed");
    assert!(passkeys(&app, &key, "alice").await.is_empty());
    let events = actions_since(&app, before).await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(
        (events[0].0.as_str(), events[0].1["reason"].clone()),
        ("passkey.registration_refused", json!("authenticator_not_allowed"))
    );
    assert_eq!(events[0].1["aaguid"], "00000000-0000-0000-0000-000000000000");
}

async fn expired_registrations_are_purged(engine: Engine) {
    let (app, key) = app_with_user(engine, "alice").await;
    let (id, _) = begun(&app, &key, "alice", json!({})).await;
    let id = countersign::ids::RegistrationId(id.parse().unwrap());
    assert_eq!(app.store.purge_expired_registrations(app.clock_now()).await.unwrap(), 0, "not yet expired");
    app.advance(time::Duration::minutes(5)).await;
    assert_eq!(app.store.purge_expired_registrations(app.clock_now()).await.unwrap(), 1);
    assert!(app.store.registration(id).await.unwrap().is_none());
}

// ---------------------------------------------------------------------------------------------
// Sign-in: a challenge with `"factor": "passkey"`

/// A passkey challenge for `username`: (id, request options).
async fn passkey_challenge(app: &TestApp, key: &str, username: &str) -> (String, Value) {
    let body = json!({ "username": username, "factor": "passkey", "context": { "ip": "203.0.113.7" } });
    let reply = app.post_json("/v1/challenges", key, body).await;
    assert_eq!(reply.status, StatusCode::CREATED, "{:?}", reply.body);
    assert_eq!(reply.body["factor"], "passkey");
    assert!(reply.body.get("number").is_none(), "a passkey challenge has no number: {:?}", reply.body);
    (reply.body["id"].as_str().unwrap().to_owned(), reply.body["webauthn"].clone())
}

async fn answer(app: &TestApp, key: &str, id: &str, assertion: &Value) -> common::Reply {
    app.post_json(&format!("/v1/challenges/{id}/webauthn"), key, assertion.clone()).await
}

/// alice with a registered passkey on `soft_key`, and an app key for everything.
async fn alice_with_passkey(engine: Engine) -> (TestApp, String, SoftKey) {
    let (app, key) = app_with_user(engine, "alice").await;
    let mut soft_key = SoftKey::new();
    register(&app, &key, "alice", &mut soft_key, json!({})).await;
    (app, key, soft_key)
}

async fn count_actions(app: &TestApp, action: &str, challenge: &str) -> usize {
    audit_actions(app).await.iter().filter(|(a, d)| a == action && d["challenge_id"] == challenge).count()
}

async fn alerts(app: &TestApp) -> Vec<String> {
    let mut kinds = Vec::new();
    let mut after = 0;
    while let Some(alert) = app.store.next_alert(after).await.unwrap() {
        after = alert.id;
        kinds.push(alert.kind);
    }
    kinds
}

async fn a_passkey_sign_in_is_approved_once_and_redeemed_once(engine: Engine) {
    let (app, key, mut soft_key) = alice_with_passkey(engine).await;
    let (id, options) = passkey_challenge(&app, &key, "alice").await;
    assert_eq!(options["rpId"], "localhost");
    assert_eq!(options["userVerification"], "required");
    assert_eq!(options["allowCredentials"].as_array().unwrap().len(), 1);
    assert_eq!(options["timeout"], 60_000, "the challenge TTL");
    let assertion = soft_key.get(&options).await;
    let approved = answer(&app, &key, &id, &assertion).await;
    assert_eq!(
        (approved.status, approved.body["state"].clone()),
        (StatusCode::OK, json!("approved")),
        "{:?}",
        approved.body
    );
    assert_eq!(app.get(&format!("/v1/challenges/{id}"), Some(&key)).await.body["state"], "approved");
    let redeem = format!("/v1/challenges/{id}/redeem");
    assert_eq!(app.post_json(&redeem, &key, json!({})).await.status, StatusCode::OK);
    assert_error(&app.post_json(&redeem, &key, json!({})).await, StatusCode::CONFLICT, "already_redeemed");
    // The same assertion again (a replay) finds nothing to approve.
    assert_error(&answer(&app, &key, &id, &assertion).await, StatusCode::CONFLICT, "challenge_not_pending");
    let used = &passkeys(&app, &key, "alice").await[0];
    assert!(used["last_used_at"].is_string(), "{used:?}");
    assert_eq!(count_actions(&app, "challenge.approved", &id).await, 1);
    assert_eq!(count_actions(&app, "challenge.created", &id).await, 1);
}

async fn two_concurrent_assertions_approve_once(engine: Engine) {
    let (app, key, mut soft_key) = alice_with_passkey(engine).await;
    let (id, options) = passkey_challenge(&app, &key, "alice").await;
    let first = soft_key.get(&options).await;
    let second = soft_key.get(&options).await;
    let (a, b) = tokio::join!(answer(&app, &key, &id, &first), answer(&app, &key, &id, &second));
    let mut statuses = [a.status, b.status];
    statuses.sort();
    assert_eq!(statuses, [StatusCode::OK, StatusCode::CONFLICT], "{:?} {:?}", a.body, b.body);
    assert_eq!(count_actions(&app, "challenge.approved", &id).await, 1, "one approval, one audit event");
}

async fn a_signature_counter_that_does_not_rise_is_refused_and_alerted(engine: Engine) {
    let (app, key, mut soft_key) = alice_with_passkey(engine).await;
    let backup = soft_key.snapshot();
    for _ in 0..2 {
        let (id, options) = passkey_challenge(&app, &key, "alice").await;
        let assertion = soft_key.get(&options).await;
        assert_eq!(answer(&app, &key, &id, &assertion).await.status, StatusCode::OK);
    }
    // A clone restored from the backup signs with a counter the server has already seen.
    soft_key.restore(backup);
    let (id, options) = passkey_challenge(&app, &key, "alice").await;
    let cloned = soft_key.get(&options).await;
    let refused = answer(&app, &key, &id, &cloned).await;
    assert_error(&refused, StatusCode::FORBIDDEN, "webauthn_counter_not_increasing");
    assert_eq!(app.get(&format!("/v1/challenges/{id}"), Some(&key)).await.body["state"], "denied");
    assert_eq!(count_actions(&app, "device.possible_clone", &id).await, 1);
    assert!(alerts(&app).await.contains(&"possible_clone".to_owned()));
}

/// Answers a push prompt for alice on her phone: approve with the right number, or `decision`
/// with a wrong one.
async fn push_answer(
    app: &TestApp,
    key: &str,
    phone: &mut countersign_e2e::device::TestDevice,
    decision: countersign_mobile_protocol::Decision,
    right_number: bool,
) -> String {
    let created = app.post_json("/v1/challenges", key, json!({ "username": "alice" })).await;
    assert_eq!(created.status, StatusCode::CREATED, "{:?}", created.body);
    let number = created.body["number"].as_str().unwrap().to_owned();
    let typed = match decision {
        countersign_mobile_protocol::Decision::Approve if right_number => number,
        countersign_mobile_protocol::Decision::Approve => {
            format!("{:03}", (number.parse::<u32>().unwrap() + 1) % 1000)
        }
        _ => String::new(),
    };
    let pending: countersign_mobile_protocol::PendingChallenges =
        serde_json::from_value(signed_get(app, phone, "/device/v1/challenges").await.body).unwrap();
    assert_eq!(pending.challenges.len(), 1, "phones see push prompts only");
    let details = phone.verify_details(&pending.challenges[0]).clone();
    let response = phone.answer(&details, decision, &typed);
    let path = format!("/device/v1/challenges/{}/response", details.challenge_id.as_str());
    let reply = app.device_post(&path, &serde_json::to_vec(&response).unwrap()).await;
    reply.body["outcome"].as_str().unwrap_or_default().to_owned()
}

async fn push_factor(app: &TestApp, key: &str) -> Value {
    let reply = app.get("/v1/users/alice/factors", Some(key)).await;
    reply.body["factors"].as_array().unwrap().iter().find(|f| f["factor"] == "push").unwrap().clone()
}

async fn a_passkey_sign_in_lifts_a_freeze_but_not_a_quarantine(engine: Engine) {
    use countersign_mobile_protocol::Decision;
    let (app, key) = app_with_user(engine, "alice").await;
    let mut phone =
        enrolled_device(&app, &key, "alice", countersign_mobile_protocol::PushRegistration::None).await;
    let approval = fresh_approval(&app, &key, "alice", &mut phone).await;
    let mut soft_key = SoftKey::new();
    register(&app, &key, "alice", &mut soft_key, json!({ "approval": approval })).await;

    assert_eq!(push_answer(&app, &key, &mut phone, Decision::Approve, false).await, "denied_wrong_number");
    let frozen = app.post_json("/v1/challenges", &key, json!({ "username": "alice" })).await;
    assert_error(&frozen, StatusCode::LOCKED, "push_frozen");
    assert_eq!(push_factor(&app, &key).await["available"], false);
    // Push lockouts never hold a passkey sign-in, which lifts the freeze.
    let (id, options) = passkey_challenge(&app, &key, "alice").await;
    let assertion = soft_key.get(&options).await;
    assert_eq!(answer(&app, &key, &id, &assertion).await.status, StatusCode::OK);
    assert_eq!(push_factor(&app, &key).await["available"], true);
    assert_eq!(push_answer(&app, &key, &mut phone, Decision::Approve, true).await, "approved");

    // "Not me" quarantines push until an admin; a passkey sign-in still works but lifts nothing.
    assert_eq!(push_answer(&app, &key, &mut phone, Decision::Report, true).await, "reported");
    let (id, options) = passkey_challenge(&app, &key, "alice").await;
    let assertion = soft_key.get(&options).await;
    assert_eq!(answer(&app, &key, &id, &assertion).await.status, StatusCode::OK);
    let push = push_factor(&app, &key).await;
    assert_eq!(push["available"], false, "{push:?}");
    assert!(push["reason"].as_str().unwrap().contains("reported_not_me"), "{push:?}");
}

async fn a_passkey_challenge_leaves_push_alone(engine: Engine) {
    let (app, key) = app_with_user(engine, "alice").await;
    let mut phone =
        enrolled_device(&app, &key, "alice", countersign_mobile_protocol::PushRegistration::None).await;
    let approval = fresh_approval(&app, &key, "alice", &mut phone).await;
    register(&app, &key, "alice", &mut SoftKey::new(), json!({ "approval": approval })).await;
    // Unanswered passkey challenges neither supersede push prompts, nor spend the push
    // budget, nor count as push failures when they expire.
    let mut earlier = Vec::new();
    for _ in 0..6 {
        earlier.push(passkey_challenge(&app, &key, "alice").await.0);
    }
    let push = app.post_json("/v1/challenges", &key, json!({ "username": "alice" })).await;
    assert_eq!(
        push.status,
        StatusCode::CREATED,
        "six passkey challenges spent no push budget: {:?}",
        push.body
    );
    for id in &earlier {
        assert_eq!(app.get(&format!("/v1/challenges/{id}"), Some(&key)).await.body["state"], "pending");
    }
    let (id, _) = passkey_challenge(&app, &key, "alice").await;
    let push_id = push.body["id"].as_str().unwrap();
    assert_eq!(app.get(&format!("/v1/challenges/{push_id}"), Some(&key)).await.body["state"], "pending");
    app.advance(time::Duration::minutes(2)).await;
    app.state.challenges.expire_due(100).await.unwrap();
    assert_eq!(app.get(&format!("/v1/challenges/{id}"), Some(&key)).await.body["state"], "expired");
    // Seven passkey challenges expired without an answer: push is not frozen for it.
    assert_eq!(push_factor(&app, &key).await["available"], true);
}

async fn a_user_without_a_passkey_gets_no_passkey(engine: Engine) {
    let (app, key) = app_with_user(engine, "alice").await;
    for username in ["alice", "nobody"] {
        let reply =
            app.post_json("/v1/challenges", &key, json!({ "username": username, "factor": "passkey" })).await;
        assert_error(&reply, StatusCode::CONFLICT, "no_passkey");
    }
    let bad = app.post_json("/v1/challenges", &key, json!({ "username": "alice", "factor": "sms" })).await;
    assert_error(&bad, StatusCode::UNPROCESSABLE_ENTITY, "invalid_request");
}

/// A refused assertion changes nothing but its own count: the genuine one still approves.
async fn assertion_refused_then_genuine_approves(
    engine: Engine,
    forge: impl Fn(&SoftKey, &Value) -> Value,
    status: StatusCode,
    code: &str,
) {
    let (app, key, mut soft_key) = alice_with_passkey(engine).await;
    let (id, options) = passkey_challenge(&app, &key, "alice").await;
    let assertion = soft_key.get(&options).await;
    let before = audit_len(&app).await;
    assert_error(&answer(&app, &key, &id, &forge(&soft_key, &assertion)).await, status, code);
    assert_eq!(app.get(&format!("/v1/challenges/{id}"), Some(&key)).await.body["state"], "pending");
    let events = actions_since(&app, before).await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0].0, "passkey.assertion_refused");
    assert_eq!(answer(&app, &key, &id, &assertion).await.status, StatusCode::OK);
}

async fn an_assertion_with_a_bad_signature_is_refused(engine: Engine) {
    let forge = |_: &SoftKey, assertion: &Value| {
        let mut forged = assertion.clone();
        let mut signature = decode(&assertion["response"]["signature"]);
        let last = signature.len() - 2;
        signature[last] ^= 0x01;
        forged["response"]["signature"] = json!(URL_SAFE_NO_PAD.encode(signature));
        forged
    };
    assertion_refused_then_genuine_approves(
        engine,
        forge,
        StatusCode::FORBIDDEN,
        "webauthn_signature_invalid",
    )
    .await;
}

async fn an_assertion_from_a_wrong_origin_is_refused(engine: Engine) {
    let forge = |soft_key: &SoftKey, assertion: &Value| {
        let mut data = client_data(assertion);
        data["origin"] = json!("https://evil.example");
        soft_key.resign(assertion, &decode(&assertion["response"]["authenticatorData"]), &data)
    };
    assertion_refused_then_genuine_approves(engine, forge, StatusCode::FORBIDDEN, "webauthn_origin_mismatch")
        .await;
}

async fn an_assertion_without_user_verification_is_refused(engine: Engine) {
    let forge = |soft_key: &SoftKey, assertion: &Value| {
        let mut data = decode(&assertion["response"]["authenticatorData"]);
        data[32] &= !0x04;
        soft_key.resign(assertion, &data, &client_data(assertion))
    };
    assertion_refused_then_genuine_approves(
        engine,
        forge,
        StatusCode::FORBIDDEN,
        "webauthn_user_not_verified",
    )
    .await;
}

async fn an_assertion_with_a_wrong_rp_id_hash_is_refused(engine: Engine) {
    let forge = |soft_key: &SoftKey, assertion: &Value| {
        let mut data = decode(&assertion["response"]["authenticatorData"]);
        data[..32].copy_from_slice(ring::digest::digest(&ring::digest::SHA256, b"evil.example").as_ref());
        soft_key.resign(assertion, &data, &client_data(assertion))
    };
    assertion_refused_then_genuine_approves(engine, forge, StatusCode::FORBIDDEN, "webauthn_rp_id_mismatch")
        .await;
}

async fn an_assertion_for_another_users_challenge_is_refused(engine: Engine) {
    let (app, key, mut alice_key) = alice_with_passkey(engine).await;
    assert_eq!(
        app.post_json("/v1/users", &key, json!({ "username": "bob" })).await.status,
        StatusCode::CREATED
    );
    let mut bob_key = SoftKey::new();
    let (registration, creation) = begun(&app, &key, "bob", json!({})).await;
    let bob_credential = bob_key.create(&creation).await;
    assert_eq!(complete(&app, &key, "bob", &registration, &bob_credential).await.status, StatusCode::CREATED);
    let (id, options) = passkey_challenge(&app, &key, "alice").await;
    // Bob's authenticator answers alice's challenge with his own passkey.
    let mut bobs_options = options.clone();
    bobs_options["allowCredentials"] = json!([{ "type": "public-key", "id": bob_credential["rawId"] }]);
    let bobs = bob_key.get(&bobs_options).await;
    let before = audit_len(&app).await;
    assert_error(&answer(&app, &key, &id, &bobs).await, StatusCode::FORBIDDEN, "webauthn_unknown_credential");
    let events = actions_since(&app, before).await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0].0, "passkey.assertion_refused");
    let bob_id = app.get("/v1/users/bob", Some(&key)).await.body["id"].clone();
    assert_eq!(events[0].1["credential_owner"], bob_id, "the credential's owner is named");
    let alices = alice_key.get(&options).await;
    assert_eq!(answer(&app, &key, &id, &alices).await.status, StatusCode::OK);
}

async fn passkey_challenge_bad_input_is_precise(engine: Engine) {
    let (app, key, mut soft_key) = alice_with_passkey(engine).await;
    let (id, options) = passkey_challenge(&app, &key, "alice").await;
    let assertion = soft_key.get(&options).await;
    let path = format!("/v1/challenges/{id}/webauthn");
    assert_error(
        &app.post_raw(&path, &key, Some("application/json"), "{").await,
        StatusCode::BAD_REQUEST,
        "invalid_json",
    );
    let mut wrong = assertion.clone();
    wrong["response"]["signature"] = json!(7);
    assert_error(&answer(&app, &key, &id, &wrong).await, StatusCode::UNPROCESSABLE_ENTITY, "invalid_request");
    let mut big = client_data(&assertion);
    big["padding"] = json!("x".repeat(4096));
    let big = with_client_data(&assertion, &big);
    assert_error(
        &answer(&app, &key, &id, &big).await,
        StatusCode::PAYLOAD_TOO_LARGE,
        "client_data_too_large",
    );
    let unknown = uuid::Uuid::new_v4().to_string();
    assert_error(
        &answer(&app, &key, &unknown, &assertion).await,
        StatusCode::NOT_FOUND,
        "challenge_not_found",
    );
    let other_app = app.key("other", "challenges:write").await;
    assert_error(
        &answer(&app, &other_app, &id, &assertion).await,
        StatusCode::NOT_FOUND,
        "challenge_not_found",
    );
    let keyed = axum::http::Request::post("/v1/challenges")
        .header("authorization", format!("Bearer {key}"))
        .header("content-type", "application/json")
        .header("idempotency-key", "login-1")
        .body(axum::body::Body::from(json!({ "username": "alice", "factor": "passkey" }).to_string()))
        .unwrap();
    // A second passkey challenge (an Idempotency-Key is not kept for them) does not supersede
    // the first, and nothing above used it up.
    assert_eq!(app.send(keyed).await.status, StatusCode::CREATED);
    assert_eq!(answer(&app, &key, &id, &assertion).await.status, StatusCode::OK);
}

async fn an_expired_passkey_challenge_is_gone(engine: Engine) {
    let (app, key, mut soft_key) = alice_with_passkey(engine).await;
    let (id, options) = passkey_challenge(&app, &key, "alice").await;
    let assertion = soft_key.get(&options).await;
    app.advance(time::Duration::seconds(61)).await;
    assert_error(&answer(&app, &key, &id, &assertion).await, StatusCode::GONE, "challenge_expired");
}

async fn refused_assertions_have_a_budget(engine: Engine) {
    let (app, key, mut soft_key) = alice_with_passkey(engine).await;
    let (id, options) = passkey_challenge(&app, &key, "alice").await;
    let assertion = soft_key.get(&options).await;
    let mut forged = client_data(&assertion);
    forged["origin"] = json!("https://evil.example");
    let forged = soft_key.resign(&assertion, &decode(&assertion["response"]["authenticatorData"]), &forged);
    for _ in 0..3 {
        assert_error(
            &answer(&app, &key, &id, &forged).await,
            StatusCode::FORBIDDEN,
            "webauthn_origin_mismatch",
        );
    }
    assert_eq!(app.get(&format!("/v1/challenges/{id}"), Some(&key)).await.body["state"], "denied");
    assert_error(&answer(&app, &key, &id, &assertion).await, StatusCode::CONFLICT, "challenge_not_pending");
    assert_eq!(count_actions(&app, "passkey.assertion_refused", &id).await, 3);
}

// ---------------------------------------------------------------------------------------------
// Bad input: each a precise JSON 4xx with a stable code, and nothing changes (the good
// credential still registers afterwards).

/// Begins a ceremony, makes a genuine credential, and checks that `forge`'s version of it is
/// refused with `code`, leaves no passkey, and (when `audited`) is audited; then the genuine
/// credential still completes the same ceremony.
async fn refused_then_genuine_registers(
    engine: Engine,
    forge: impl Fn(&Value, &Value) -> Value,
    status: StatusCode,
    code: &str,
    audited: bool,
) {
    let (app, key) = app_with_user(engine, "alice").await;
    let (id, options) = begun(&app, &key, "alice", json!({})).await;
    let credential = SoftKey::new().create(&options).await;
    let before = audit_len(&app).await;
    let reply = complete(&app, &key, "alice", &id, &forge(&credential, &options)).await;
    assert_error(&reply, status, code);
    assert!(passkeys(&app, &key, "alice").await.is_empty());
    let events = actions_since(&app, before).await;
    if audited {
        assert_eq!(events.len(), 1, "{events:?}");
        assert_eq!(events[0].0, "passkey.registration_refused");
    } else {
        assert!(events.is_empty(), "{events:?}");
    }
    let genuine = complete(&app, &key, "alice", &id, &credential).await;
    assert_eq!(
        genuine.status,
        StatusCode::CREATED,
        "the refused attempt used nothing up: {:?}",
        genuine.body
    );
}

async fn registration_with_malformed_json_is_invalid_json(engine: Engine) {
    let (app, key) = app_with_user(engine, "alice").await;
    let (id, _) = begun(&app, &key, "alice", json!({})).await;
    let path = format!("/v1/users/alice/passkeys/registrations/{id}");
    let reply = app.post_raw(&path, &key, Some("application/json"), "{\"id\": ").await;
    assert_error(&reply, StatusCode::BAD_REQUEST, "invalid_json");
}

async fn registration_with_wrong_types_is_invalid_request(engine: Engine) {
    refused_then_genuine_registers(
        engine,
        |credential, _| {
            let mut wrong = credential.clone();
            wrong["response"]["clientDataJSON"] = json!(42);
            wrong
        },
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_request",
        false,
    )
    .await;
    let (app, key) = app_with_user(engine, "alice").await;
    let (id, _) = begun(&app, &key, "alice", json!({})).await;
    let path = format!("/v1/users/alice/passkeys/registrations/{id}");
    let array = app.post_raw(&path, &key, Some("application/json"), "[1, 2]").await;
    assert_error(&array, StatusCode::UNPROCESSABLE_ENTITY, "invalid_request");
    let no_type =
        complete(&app, &key, "alice", &id, &json!({ "id": "AA", "rawId": "AA", "response": {} })).await;
    assert_error(&no_type, StatusCode::UNPROCESSABLE_ENTITY, "invalid_request");
}

async fn registration_whose_contents_do_not_decode_is_refused(engine: Engine) {
    refused_then_genuine_registers(
        engine,
        |credential, _| {
            let mut garbage = credential.clone();
            garbage["response"]["attestationObject"] = json!(URL_SAFE_NO_PAD.encode(b"not CBOR"));
            garbage
        },
        StatusCode::FORBIDDEN,
        "webauthn_response_invalid",
        false,
    )
    .await;
}

async fn registration_from_a_wrong_origin_is_refused(engine: Engine) {
    refused_then_genuine_registers(
        engine,
        |credential, _| with_client_data_field(credential, "origin", json!("https://evil.example")),
        StatusCode::FORBIDDEN,
        "webauthn_origin_mismatch",
        true,
    )
    .await;
}

async fn registration_with_a_wrong_rp_id_hash_is_refused(engine: Engine) {
    refused_then_genuine_registers(
        engine,
        |credential, _| {
            let evil = ring::digest::digest(&ring::digest::SHA256, b"evil.example");
            with_auth_data(credential, |data| data[..32].copy_from_slice(evil.as_ref()))
        },
        StatusCode::FORBIDDEN,
        "webauthn_rp_id_mismatch",
        true,
    )
    .await;
}

async fn registration_without_user_verification_is_refused(engine: Engine) {
    refused_then_genuine_registers(
        engine,
        |credential, _| with_auth_data(credential, |data| data[32] &= !0x04),
        StatusCode::FORBIDDEN,
        "webauthn_user_not_verified",
        true,
    )
    .await;
}

async fn registration_answering_another_challenge_is_refused(engine: Engine) {
    refused_then_genuine_registers(
        engine,
        |credential, _| {
            let mut data = client_data(credential);
            data["challenge"] = json!(URL_SAFE_NO_PAD.encode([1u8; 16]));
            with_client_data(credential, &data)
        },
        StatusCode::FORBIDDEN,
        "webauthn_challenge_mismatch",
        true,
    )
    .await;
}

async fn registration_with_oversized_client_data_is_refused(engine: Engine) {
    refused_then_genuine_registers(
        engine,
        |credential, _| with_client_data_field(credential, "padding", json!("x".repeat(4096))),
        StatusCode::PAYLOAD_TOO_LARGE,
        "client_data_too_large",
        false,
    )
    .await;
}

async fn an_expired_registration_is_gone(engine: Engine) {
    let (app, key) = app_with_user(engine, "alice").await;
    let (id, options) = begun(&app, &key, "alice", json!({})).await;
    let credential = SoftKey::new().create(&options).await;
    app.advance(time::Duration::minutes(5) + time::Duration::seconds(1)).await;
    let reply = complete(&app, &key, "alice", &id, &credential).await;
    assert_error(&reply, StatusCode::GONE, "registration_expired");
    assert!(passkeys(&app, &key, "alice").await.is_empty());
}

async fn another_users_registration_is_not_found(engine: Engine) {
    let (app, key) = app_with_user(engine, "alice").await;
    assert_eq!(
        app.post_json("/v1/users", &key, json!({ "username": "bob" })).await.status,
        StatusCode::CREATED
    );
    let (id, options) = begun(&app, &key, "alice", json!({})).await;
    let credential = SoftKey::new().create(&options).await;
    assert_error(
        &complete(&app, &key, "bob", &id, &credential).await,
        StatusCode::NOT_FOUND,
        "registration_not_found",
    );
    let other_app = app.key("other", "users:write").await;
    assert_error(
        &complete(&app, &other_app, "alice", &id, &credential).await,
        StatusCode::NOT_FOUND,
        "registration_not_found",
    );
    let unknown = uuid::Uuid::new_v4().to_string();
    assert_error(
        &complete(&app, &key, "alice", &unknown, &credential).await,
        StatusCode::NOT_FOUND,
        "registration_not_found",
    );
    assert_eq!(complete(&app, &key, "alice", &id, &credential).await.status, StatusCode::CREATED);
}

async fn bad_registration_requests_are_precise(engine: Engine) {
    let (app, key) = app_with_user(engine, "alice").await;
    assert_error(&begin(&app, &key, "nobody", json!({})).await, StatusCode::NOT_FOUND, "user_not_found");
    assert_error(
        &begin(&app, &key, "alice", json!({ "name": "" })).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_request",
    );
    assert_error(
        &begin(&app, &key, "alice", json!({ "name": 5 })).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_request",
    );
    assert_error(
        &begin(&app, &key, "alice", json!({ "extra": 1 })).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_request",
    );
    let approval = json!({ "approval": uuid::Uuid::new_v4() });
    assert_error(&begin(&app, &key, "alice", approval).await, StatusCode::FORBIDDEN, "approval_invalid");
    let reader = app.key("reader", "users:read").await;
    assert_error(
        &begin(&app, &reader, "alice", json!({})).await,
        StatusCode::FORBIDDEN,
        "insufficient_scope",
    );
}

/// The operator's CLI sets any passkey policy (`countersign users passkey-policy`).
async fn operator_sets_passkey_policy(app: &TestApp, username: &str, required: Option<bool>) {
    countersign::users::service::set_passkey_required(
        app.store.as_ref(),
        app.clock.as_ref(),
        countersign::audit::Actor::Cli,
        username,
        required,
    )
    .await
    .unwrap();
}

fn policy_changes(actions: &[(String, Value)]) -> Vec<Value> {
    actions
        .iter()
        .filter(|(a, _)| a == "user.policy_changed")
        .map(|(_, d)| d["passkey_required"].clone())
        .collect()
}

/// An attacker who holds alice's password push-bombs her; the app makes her passkey-only. From
/// then on no push reaches her phone (409 `passkey_required`, audited, before any budget), and
/// `factors` tells the app to get her a passkey. Apps cannot undo it; the operator can.
async fn a_passkey_only_user_gets_no_push(engine: Engine) {
    let (app, key) = app_with_user(engine, "alice").await;
    let mut phone =
        enrolled_device(&app, &key, "alice", countersign_mobile_protocol::PushRegistration::None).await;
    let raised = app.post_json("/v1/users/alice/passkey-required", &key, json!({})).await;
    assert_eq!((raised.status, raised.body["passkey_required"].clone()), (StatusCode::OK, json!(true)));
    let before = audit_len(&app).await;
    let again = app.post_json("/v1/users/alice/passkey-required", &key, json!({})).await;
    assert_eq!(again.status, StatusCode::OK);
    assert_eq!(audit_len(&app).await, before, "idempotent: nothing changed, nothing audited");

    let push = json!({ "username": "alice", "context": { "ip": "203.0.113.7" } });
    assert_error(
        &app.post_json("/v1/challenges", &key, push.clone()).await,
        StatusCode::CONFLICT,
        "passkey_required",
    );
    let pending = signed_get(&app, &phone, "/device/v1/challenges").await;
    assert_eq!(pending.body["challenges"], json!([]), "nothing reaches the phone");
    let refused = actions_since(&app, before).await;
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert_eq!(
        (refused[0].0.as_str(), &refused[0].1["reason"]),
        ("fatigue.prompt_refused", &json!("passkey_required"))
    );
    assert_eq!(
        app.store.push_state(alice_id(&app).await).await.unwrap().refused_prompts,
        0,
        "a policy, not an attack"
    );
    let factors = app.get("/v1/users/alice/factors", Some(&key)).await;
    assert_eq!(factors.body["enrollment_required"], true, "{:?}", factors.body);
    assert!(push_factor(&app, &key).await["reason"].as_str().unwrap().contains("passkey only"));

    operator_sets_passkey_policy(&app, "alice", Some(false)).await;
    assert_eq!(app.get("/v1/users/alice", Some(&key)).await.body["passkey_required"], false);
    let outcome =
        push_answer(&app, &key, &mut phone, countersign_mobile_protocol::Decision::Approve, true).await;
    assert_eq!(outcome, "approved", "push works again");
    let changes = policy_changes(&audit_actions(&app).await);
    assert_eq!(changes.len(), 2, "raised by the app, lowered by the operator: {changes:?}");
    assert_eq!((changes[0]["is"].clone(), changes[1]["is"].clone()), (json!(true), json!(false)));
}

/// Privileged users are passkey-only unless an operator says otherwise; an app can ask for it
/// for anyone at creation. A passkey-only user still signs in with a passkey.
async fn privileged_users_are_passkey_only_by_default(engine: Engine) {
    let app = TestApp::build(engine, countersign::app::HttpLimits::default()).await;
    let key = app.key("portal", "users:read users:write challenges:write").await;
    let root = app.post_json("/v1/users", &key, json!({ "username": "root", "privileged": true })).await;
    assert_eq!((root.status, root.body["passkey_required"].clone()), (StatusCode::CREATED, json!(true)));
    let carol =
        app.post_json("/v1/users", &key, json!({ "username": "carol", "passkey_required": true })).await;
    assert_eq!(carol.body["passkey_required"], true);
    let dave = app.post_json("/v1/users", &key, json!({ "username": "dave" })).await;
    assert_eq!(dave.body["passkey_required"], false);

    let mut soft_key = SoftKey::new();
    register(&app, &key, "root", &mut soft_key, json!({})).await;
    let (id, options) = passkey_challenge(&app, &key, "root").await;
    let assertion = soft_key.get(&options).await;
    assert_eq!(answer(&app, &key, &id, &assertion).await.body["state"], "approved");
    let factors = app.get("/v1/users/root/factors", Some(&key)).await;
    assert_eq!(factors.body["enrollment_required"], false, "{:?}", factors.body);

    operator_sets_passkey_policy(&app, "root", Some(false)).await;
    assert_eq!(app.get("/v1/users/root", Some(&key)).await.body["passkey_required"], false);
    operator_sets_passkey_policy(&app, "root", None).await;
    assert_eq!(
        app.get("/v1/users/root", Some(&key)).await.body["passkey_required"],
        true,
        "back to the privilege"
    );
}

async fn alice_id(app: &TestApp) -> countersign::ids::UserId {
    app.store.user_by_username("alice").await.unwrap().unwrap().id
}

/// A user is deleted (they left; their account was taken over) while a passkey sign-in is
/// pending. Whoever holds the passkey must not approve it afterwards: deletion revokes the
/// user's passkeys as it revokes their devices, and audits how many.
async fn a_deleted_users_pending_passkey_sign_in_cannot_be_approved(engine: Engine) {
    let (app, key, mut soft_key) = alice_with_passkey(engine).await;
    let (id, options) = passkey_challenge(&app, &key, "alice").await;
    let assertion = soft_key.get(&options).await;
    assert_eq!(app.delete("/v1/users/alice", &key).await.status, StatusCode::NO_CONTENT);
    let deleted = audit_actions(&app).await.into_iter().rev().find(|(a, _)| a == "user.deleted").unwrap().1;
    assert_eq!(deleted["passkeys_revoked"], 1, "{deleted:?}");
    assert_error(
        &answer(&app, &key, &id, &assertion).await,
        StatusCode::FORBIDDEN,
        "webauthn_unknown_credential",
    );
    assert_eq!(app.get(&format!("/v1/challenges/{id}"), Some(&key)).await.body["state"], "pending");
    assert_eq!(count_actions(&app, "challenge.approved", &id).await, 0);
}

/// A passkey revoked (lost, stolen) while a sign-in with it is pending cannot answer it.
async fn a_revoked_passkey_cannot_answer_a_pending_sign_in(engine: Engine) {
    let (app, key, mut soft_key) = alice_with_passkey(engine).await;
    let (id, options) = passkey_challenge(&app, &key, "alice").await;
    let assertion = soft_key.get(&options).await;
    let passkey = passkeys(&app, &key, "alice").await[0]["id"].as_str().unwrap().to_owned();
    assert_eq!(
        app.delete(&format!("/v1/users/alice/passkeys/{passkey}"), &key).await.status,
        StatusCode::NO_CONTENT
    );
    assert_error(
        &answer(&app, &key, &id, &assertion).await,
        StatusCode::FORBIDDEN,
        "webauthn_unknown_credential",
    );
    assert_eq!(count_actions(&app, "challenge.approved", &id).await, 0);
}

/// The attacker holds alice's password; alice's only factor is a passkey. The attacker asks the
/// app to "enroll your first phone" for alice: a user with any factor gets no first-device
/// enrollment on the app's word, and a first-device code issued before the passkey existed
/// cannot enroll a phone once it does.
async fn a_passkey_user_gets_no_first_device_on_the_apps_word(engine: Engine) {
    let (app, key) = app_with_user(engine, "alice").await;
    let early = app.post_json("/v1/users/alice/enrollments", &key, json!({})).await;
    assert_eq!(early.status, StatusCode::CREATED, "{:?}", early.body);
    let mut soft_key = SoftKey::new();
    register(&app, &key, "alice", &mut soft_key, json!({})).await;

    let refused = app.post_json("/v1/users/alice/enrollments", &key, json!({})).await;
    assert_error(&refused, StatusCode::FORBIDDEN, "second_factor_proof_required");
    let mut phone = countersign_e2e::device::TestDevice::new();
    let uri = early.body["activation_uri"].as_str().unwrap();
    let late =
        common::enroll(&app, &mut phone, uri, countersign_mobile_protocol::PushRegistration::None).await;
    assert_error(&late, StatusCode::FORBIDDEN, "enrollment_not_allowed");
    let factors = app.get("/v1/users/alice/factors", Some(&key)).await;
    assert_eq!(factors.body["factors"][0]["available"], false, "still no phone: {:?}", factors.body);
}

on_both_engines!(
    a_deleted_users_pending_passkey_sign_in_cannot_be_approved,
    a_revoked_passkey_cannot_answer_a_pending_sign_in,
    a_passkey_user_gets_no_first_device_on_the_apps_word,
    a_passkey_only_user_gets_no_push,
    privileged_users_are_passkey_only_by_default,
    a_first_passkey_registers_and_is_listed_renamed_and_revoked,
    a_registration_completes_once,
    a_user_with_a_factor_needs_an_approval_which_counts_once,
    a_credential_is_bound_to_one_user_forever,
    registration_with_malformed_json_is_invalid_json,
    registration_with_wrong_types_is_invalid_request,
    registration_whose_contents_do_not_decode_is_refused,
    registration_from_a_wrong_origin_is_refused,
    registration_with_a_wrong_rp_id_hash_is_refused,
    registration_without_user_verification_is_refused,
    registration_answering_another_challenge_is_refused,
    registration_with_oversized_client_data_is_refused,
    an_expired_registration_is_gone,
    another_users_registration_is_not_found,
    bad_registration_requests_are_precise,
    an_aaguid_allow_list_refuses_other_authenticators,
    expired_registrations_are_purged,
    a_passkey_sign_in_is_approved_once_and_redeemed_once,
    two_concurrent_assertions_approve_once,
    a_signature_counter_that_does_not_rise_is_refused_and_alerted,
    a_passkey_sign_in_lifts_a_freeze_but_not_a_quarantine,
    a_passkey_challenge_leaves_push_alone,
    a_user_without_a_passkey_gets_no_passkey,
    an_assertion_with_a_bad_signature_is_refused,
    an_assertion_from_a_wrong_origin_is_refused,
    an_assertion_without_user_verification_is_refused,
    an_assertion_with_a_wrong_rp_id_hash_is_refused,
    an_assertion_for_another_users_challenge_is_refused,
    passkey_challenge_bad_input_is_precise,
    an_expired_passkey_challenge_is_gone,
    refused_assertions_have_a_budget,
);
