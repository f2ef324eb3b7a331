//! Enrollment and device requests over the real router, on SQLite and PostgreSQL. Each attack
//! test's doc comment states the attack.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[macro_use]
mod common;

use axum::http::StatusCode;
use common::{
    PUBLIC_URL, TestApp, activation_uri, assert_error, audit_actions, enroll, enrolled_device, signed_get,
};
use countersign::app::HttpLimits;
use countersign_e2e::Engine;
use countersign_e2e::device::TestDevice;
use countersign_mobile_protocol::{
    ActivationCode, EnrollmentUri, PublicKey, PushRegistration, PushToken, ServerUrl,
};
use serde_json::{Value, json};

const LIST: &str = "/device/v1/challenges";

async fn app(engine: Engine) -> (TestApp, String) {
    let app = TestApp::build(engine, HttpLimits::default()).await;
    let key = app.key("idp", "users:read users:write").await;
    (app, key)
}

fn fcm(token: &str) -> PushRegistration {
    PushRegistration::Fcm { token: PushToken::new(token).unwrap() }
}

async fn enroll_list_and_revoke(engine: Engine) {
    let (app, key) = app(engine).await;
    let enrollment = activation_uri(&app, &key, "alice", false).await;
    let uri = enrollment["activation_uri"].as_str().unwrap();
    let parsed = EnrollmentUri::parse(uri).unwrap();
    assert_eq!(parsed.server.as_str(), PUBLIC_URL);
    assert_eq!(parsed.user, "alice");
    assert_eq!(parsed.code.as_str(), enrollment["activation_code"]);

    let mut device = TestDevice::new();
    let reply = enroll(&app, &mut device, uri, PushRegistration::None).await;
    assert_eq!(reply.status, StatusCode::CREATED, "{:?}", reply.body);
    let enrolled = device.enrolled.clone().unwrap();
    assert_eq!(enrolled.server_id.as_str(), PUBLIC_URL);
    assert_eq!(&enrolled.server_public_key, app.state.devices.server_key().public_key());

    let devices = app.get("/v1/users/alice/devices", Some(&key)).await;
    assert_eq!(devices.body.as_array().unwrap().len(), 1);
    assert_eq!(devices.body[0]["id"], enrolled.device_id.as_str());
    assert_eq!(devices.body[0]["revoked_at"], Value::Null);

    let pending = signed_get(&app, &device, LIST).await;
    assert_eq!(pending.status, StatusCode::OK, "{:?}", pending.body);
    assert_eq!(pending.body["challenges"], json!([]));

    let revoked = app.delete(&format!("/v1/users/alice/devices/{}", enrolled.device_id.as_str()), &key).await;
    assert_eq!(revoked.status, StatusCode::NO_CONTENT, "{:?}", revoked.body);
    let again = app.delete(&format!("/v1/users/alice/devices/{}", enrolled.device_id.as_str()), &key).await;
    assert_error(&again, StatusCode::NOT_FOUND, "device_not_found");
}

/// A revoked phone (lost, stolen, or a leaver's) keeps calling: every request is refused at
/// once and the attempt is audited.
async fn revoked_device_request_is_refused(engine: Engine) {
    let (app, key) = app(engine).await;
    let device = enrolled_device(&app, &key, "alice", PushRegistration::None).await;
    let path = format!("/v1/users/alice/devices/{}", device.device_id().as_str());
    assert_eq!(app.delete(&path, &key).await.status, StatusCode::NO_CONTENT);
    assert_error(&signed_get(&app, &device, LIST).await, StatusCode::UNAUTHORIZED, "device_revoked");
    app.state.devices.refusals().flush_all().await.unwrap();
    let refused = audit_actions(&app).await.into_iter().find(|(a, _)| a == "device.request_refused").unwrap();
    assert_eq!(refused.1["reasons"], json!({ "revoked": 1 }));
}

/// Someone who captured a signed device request replays it: the nonce is refused the second
/// time and the replay is audited.
async fn replayed_device_request_is_refused(engine: Engine) {
    let (app, key) = app(engine).await;
    let device = enrolled_device(&app, &key, "alice", PushRegistration::None).await;
    let headers = device.sign_request("GET", LIST, b"", app.now_unix());
    assert_eq!(app.signed("GET", LIST, b"", &headers).await.status, StatusCode::OK);
    let replay = app.signed("GET", LIST, b"", &headers).await;
    assert_error(&replay, StatusCode::CONFLICT, "request_replayed");
    app.state.devices.refusals().flush_all().await.unwrap();
    let refused = audit_actions(&app).await.into_iter().find(|(a, _)| a == "device.request_refused").unwrap();
    assert_eq!(refused.1["reasons"], json!({ "replayed": 1 }));

    // Outside the clock-skew window the timestamp alone refuses it.
    let stale = device.sign_request("GET", LIST, b"", app.now_unix() - 301);
    assert_error(&app.signed("GET", LIST, b"", &stale).await, StatusCode::UNAUTHORIZED, "request_expired");
    let future = device.sign_request("GET", LIST, b"", app.now_unix() + 301);
    assert_error(&app.signed("GET", LIST, b"", &future).await, StatusCode::UNAUTHORIZED, "request_expired");
    // Once their windows have closed, remembered nonces are purged (timestamps refuse them).
    app.advance(time::Duration::minutes(11)).await;
    assert!(app.store.purge_expired_nonces(app.clock_now()).await.unwrap() >= 1);
    assert_error(&app.signed("GET", LIST, b"", &headers).await, StatusCode::UNAUTHORIZED, "request_expired");
}

/// Requests signed with the wrong key, for another path, or with a changed body are refused;
/// unknown device ids look the same as bad signatures (no probing).
async fn forged_device_requests_are_refused(engine: Engine) {
    let (app, key) = app(engine).await;
    let alice = enrolled_device(&app, &key, "alice", PushRegistration::None).await;
    let mut impostor = TestDevice::new();
    impostor.enrolled = alice.enrolled.clone();
    let forged = impostor.sign_request("GET", LIST, b"", app.now_unix());
    assert_error(&app.signed("GET", LIST, b"", &forged).await, StatusCode::UNAUTHORIZED, "signature_invalid");

    let other_path = alice.sign_request("GET", "/device/v1/notices", b"", app.now_unix());
    assert_error(
        &app.signed("GET", LIST, b"", &other_path).await,
        StatusCode::UNAUTHORIZED,
        "signature_invalid",
    );

    let body = serde_json::to_vec(&fcm("token-a")).unwrap();
    let signed = alice.sign_request("PUT", "/device/v1/push-token", &body, app.now_unix());
    let changed = serde_json::to_vec(&fcm("token-b")).unwrap();
    let reply = app.signed("PUT", "/device/v1/push-token", &changed, &signed).await;
    assert_error(&reply, StatusCode::UNAUTHORIZED, "signature_invalid");

    let mut stranger = TestDevice::new();
    let mut fake = alice.enrolled.clone().unwrap();
    fake.device_id = countersign_mobile_protocol::DeviceId::new(uuid::Uuid::new_v4().to_string()).unwrap();
    stranger.enrolled = Some(fake);
    let unknown = stranger.sign_request("GET", LIST, b"", app.now_unix());
    assert_error(
        &app.signed("GET", LIST, b"", &unknown).await,
        StatusCode::UNAUTHORIZED,
        "signature_invalid",
    );

    assert_error(&app.signed("GET", LIST, b"", &[]).await, StatusCode::BAD_REQUEST, "invalid_request");
    let bad_signature = alice
        .sign_request("GET", LIST, b"", app.now_unix())
        .into_iter()
        .map(|(k, v)| if k == "countersign-signature" { (k, "MEUC".into()) } else { (k, v) })
        .collect::<Vec<_>>();
    assert_error(
        &app.signed("GET", LIST, b"", &bad_signature).await,
        StatusCode::UNAUTHORIZED,
        "signature_invalid",
    );
}

/// A leaked QR code is used twice: the second use is refused.
async fn enrollment_code_reuse_is_refused(engine: Engine) {
    let (app, key) = app(engine).await;
    let enrollment = activation_uri(&app, &key, "alice", false).await;
    let uri = enrollment["activation_uri"].as_str().unwrap();
    assert_eq!(
        enroll(&app, &mut TestDevice::new(), uri, PushRegistration::None).await.status,
        StatusCode::CREATED
    );
    let reply = enroll(&app, &mut TestDevice::new(), uri, PushRegistration::None).await;
    assert_error(&reply, StatusCode::GONE, "activation_code_used");
    assert_eq!(app.get("/v1/users/alice/devices", Some(&key)).await.body.as_array().unwrap().len(), 1);
}

/// An old activation code (found in a mailbox, a screenshot) is used after it expired.
async fn enrollment_after_expiry_is_refused(engine: Engine) {
    let (app, key) = app(engine).await;
    let enrollment = activation_uri(&app, &key, "alice", false).await;
    let qr = format!("/v1/users/alice/enrollments/{}/qr.svg", enrollment["id"].as_str().unwrap());
    let svg = app.get(&qr, Some(&key)).await;
    assert_eq!(svg.status, StatusCode::OK);
    assert_eq!(svg.headers["content-type"], "image/svg+xml");
    assert!(svg.body.as_str().unwrap().contains("<svg"));

    app.advance(time::Duration::seconds(601)).await;
    let reply = enroll(
        &app,
        &mut TestDevice::new(),
        enrollment["activation_uri"].as_str().unwrap(),
        PushRegistration::None,
    )
    .await;
    assert_error(&reply, StatusCode::GONE, "activation_code_expired");
    assert_error(&app.get(&qr, Some(&key)).await, StatusCode::GONE, "enrollment_gone");
    assert_eq!(app.get("/v1/users/alice/devices", Some(&key)).await.body, json!([]));
}

/// Two phones scan the same QR code at once: exactly one becomes the user's device.
async fn two_devices_racing_one_code_exactly_one_wins(engine: Engine) {
    let (app, key) = app(engine).await;
    let enrollment = activation_uri(&app, &key, "alice", false).await;
    let uri = enrollment["activation_uri"].as_str().unwrap().to_owned();
    let bodies: Vec<Vec<u8>> = (0..8)
        .map(|_| serde_json::to_vec(&TestDevice::new().enrollment(&uri, PushRegistration::None)).unwrap())
        .collect();
    let app = std::sync::Arc::new(app);
    let tasks: Vec<_> = bodies
        .into_iter()
        .map(|body| {
            let app = std::sync::Arc::clone(&app);
            tokio::spawn(async move { app.device_post("/device/v1/enroll", &body).await })
        })
        .collect();
    let mut created = 0;
    for task in tasks {
        let reply = task.await.unwrap();
        match reply.status {
            StatusCode::CREATED => created += 1,
            _ => assert_error(&reply, StatusCode::GONE, "activation_code_used"),
        }
    }
    assert_eq!(created, 1, "exactly one device wins the code");
    assert_eq!(app.get("/v1/users/alice/devices", Some(&key)).await.body.as_array().unwrap().len(), 1);
    let enrolled = audit_actions(&app).await.into_iter().filter(|(a, _)| a == "device.enrolled").count();
    assert_eq!(enrolled, 1, "one enrollment, one audit event");
}

/// One phone key is registered for two users (a shared or stolen factor): refused with 409,
/// audited naming both users, and nothing of the refused enrollment is written.
async fn key_shared_across_users_is_refused(engine: Engine) {
    let (app, key) = app(engine).await;
    let alice = enrolled_device(&app, &key, "alice", PushRegistration::None).await;
    let bob_enrollment = activation_uri(&app, &key, "bob", false).await;
    let bob_uri = EnrollmentUri::parse(bob_enrollment["activation_uri"].as_str().unwrap()).unwrap();
    let body = alice.enrollment_with(
        bob_uri.server.clone(),
        bob_uri.code.clone(),
        alice.public_key(),
        PushRegistration::None,
    );
    let reply = app.device_post("/device/v1/enroll", &serde_json::to_vec(&body).unwrap()).await;
    assert_error(&reply, StatusCode::CONFLICT, "factor_already_bound");

    let alice_id = app.get("/v1/users/alice", Some(&key)).await.body["id"].clone();
    let bob_id = app.get("/v1/users/bob", Some(&key)).await.body["id"].clone();
    let (_, details) =
        audit_actions(&app).await.into_iter().find(|(a, _)| a == "device.factor_refused").unwrap();
    assert_eq!((details["user_id"].clone(), details["bound_to_user_id"].clone()), (bob_id, alice_id));
    assert_eq!(details["factor"], "public_key");

    // The refused attempt used nothing up: Bob can still enroll his own phone with that code.
    let mut bobs_phone = TestDevice::new();
    let reply = enroll(
        &app,
        &mut bobs_phone,
        bob_enrollment["activation_uri"].as_str().unwrap(),
        PushRegistration::None,
    )
    .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{:?}", reply.body);
}

/// One push token is registered for two users, so one phone would receive both users'
/// prompts: refused at enrollment and on token update, audited.
async fn push_token_shared_across_users_is_refused(engine: Engine) {
    let (app, key) = app(engine).await;
    let _alice = enrolled_device(&app, &key, "alice", fcm("shared-token")).await;
    let bob_enrollment = activation_uri(&app, &key, "bob", false).await;
    let uri = bob_enrollment["activation_uri"].as_str().unwrap();
    let reply = enroll(&app, &mut TestDevice::new(), uri, fcm("shared-token")).await;
    assert_error(&reply, StatusCode::CONFLICT, "factor_already_bound");

    let bob = {
        let mut bob = TestDevice::new();
        assert_eq!(enroll(&app, &mut bob, uri, fcm("bobs-token")).await.status, StatusCode::CREATED);
        bob
    };
    let body = serde_json::to_vec(&fcm("shared-token")).unwrap();
    let headers = bob.sign_request("PUT", "/device/v1/push-token", &body, app.now_unix());
    assert_error(
        &app.signed("PUT", "/device/v1/push-token", &body, &headers).await,
        StatusCode::CONFLICT,
        "factor_already_bound",
    );
    let refusals: Vec<Value> = audit_actions(&app)
        .await
        .into_iter()
        .filter(|(a, _)| a == "device.factor_refused")
        .map(|(_, d)| d)
        .collect();
    assert_eq!(refusals.len(), 2);
    assert!(refusals.iter().all(|d| d["factor"] == "push_token" && !d["bound_to_user_id"].is_null()));

    // Bob's own new token is fine.
    let body = serde_json::to_vec(&fcm("bobs-new-token")).unwrap();
    let headers = bob.sign_request("PUT", "/device/v1/push-token", &body, app.now_unix());
    assert_eq!(
        app.signed("PUT", "/device/v1/push-token", &body, &headers).await.status,
        StatusCode::NO_CONTENT
    );
}

/// Malformed or mis-bound enrollment requests change nothing.
async fn bad_enrollments_are_refused_without_state_change(engine: Engine) {
    let (app, key) = app(engine).await;
    let enrollment = activation_uri(&app, &key, "alice", false).await;
    let uri = EnrollmentUri::parse(enrollment["activation_uri"].as_str().unwrap()).unwrap();
    let device = TestDevice::new();

    // A proof made for another server (a phishing relay forwarding the QR code).
    let other = ServerUrl::parse("https://mfa.evil.example").unwrap();
    let body = device.enrollment_with(other, uri.code.clone(), device.public_key(), PushRegistration::None);
    let reply = app.device_post("/device/v1/enroll", &serde_json::to_vec(&body).unwrap()).await;
    assert_error(&reply, StatusCode::BAD_REQUEST, "invalid_request");

    // A relay swaps its own key in after the phone signed.
    let someone_else = TestDevice::new();
    let mut swapped = serde_json::to_value(device.enrollment_with(
        uri.server.clone(),
        uri.code.clone(),
        device.public_key(),
        PushRegistration::None,
    ))
    .unwrap();
    swapped["public_key"] = json!(someone_else.public_key().to_base64url());
    let reply = app.device_post("/device/v1/enroll", swapped.to_string().as_bytes()).await;
    assert_error(&reply, StatusCode::UNAUTHORIZED, "signature_invalid");

    // An unknown code.
    let body = device.enrollment_with(
        uri.server.clone(),
        ActivationCode::new("not-a-real-code").unwrap(),
        device.public_key(),
        PushRegistration::None,
    );
    let reply = app.device_post("/device/v1/enroll", &serde_json::to_vec(&body).unwrap()).await;
    assert_error(&reply, StatusCode::NOT_FOUND, "activation_code_invalid");

    // Malformed keys: compressed point, wrong curve size, garbage; malformed JSON; huge body.
    let good = serde_json::to_value(device.enrollment_with(
        uri.server.clone(),
        uri.code.clone(),
        device.public_key(),
        PushRegistration::None,
    ))
    .unwrap();
    let compressed = {
        let raw = device.public_key().as_bytes().to_vec();
        let mut c = vec![0x02 | (raw[64] & 1)];
        c.extend_from_slice(&raw[1..33]);
        base64_url(&c)
    };
    for bad_key in [compressed, base64_url(&[4u8; 97]), "!!!".to_owned()] {
        let mut body = good.clone();
        body["public_key"] = json!(bad_key);
        let reply = app.device_post("/device/v1/enroll", body.to_string().as_bytes()).await;
        assert_error(&reply, StatusCode::BAD_REQUEST, "invalid_request");
    }
    let mut wrong_type = good.clone();
    wrong_type["push"] = json!({ "provider": "sms", "token": "+15550100" });
    assert_error(
        &app.device_post("/device/v1/enroll", wrong_type.to_string().as_bytes()).await,
        StatusCode::BAD_REQUEST,
        "invalid_request",
    );
    assert_error(
        &app.device_post("/device/v1/enroll", b"{not json").await,
        StatusCode::BAD_REQUEST,
        "invalid_request",
    );
    let mut huge = good.clone();
    huge["device_name"] = json!("x".repeat(20_000));
    let reply = app.device_post("/device/v1/enroll", huge.to_string().as_bytes()).await;
    assert_error(&reply, StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large");
    let mut long_name = good.clone();
    long_name["device_name"] = json!("x".repeat(200));
    assert_error(
        &app.device_post("/device/v1/enroll", long_name.to_string().as_bytes()).await,
        StatusCode::BAD_REQUEST,
        "invalid_request",
    );

    assert_eq!(app.get("/v1/users/alice/devices", Some(&key)).await.body, json!([]), "nothing was enrolled");
    // The genuine request still works: none of the above used the code up.
    let reply = app.device_post("/device/v1/enroll", good.to_string().as_bytes()).await;
    assert_eq!(reply.status, StatusCode::CREATED, "{:?}", reply.body);
}

fn base64_url(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// How many enrollments the audit trail records as created.
async fn enrollments_created(app: &TestApp) -> usize {
    audit_actions(app).await.iter().filter(|(a, _)| a == "enrollment.created").count()
}

/// Any app with `users:write` (or a stolen key of one) tries to add an attacker's phone to a
/// user who already has a device: `second_device: true` alone used to be enough. Without proof
/// from the user it is refused, audited, and no enrollment is written; a first-device code
/// issued before the user's phone existed cannot add a second one either.
async fn app_alone_cannot_add_a_second_device(engine: Engine) {
    let (app, key) = app(engine).await;
    let first = activation_uri(&app, &key, "alice", false).await;
    let stale_first = app.post_json("/v1/users/alice/enrollments", &key, json!({})).await.body;
    let mut phone = TestDevice::new();
    let reply =
        enroll(&app, &mut phone, first["activation_uri"].as_str().unwrap(), PushRegistration::None).await;
    assert_eq!(reply.status, StatusCode::CREATED, "{:?}", reply.body);
    let created_before = enrollments_created(&app).await;

    for body in [json!({}), json!({ "second_device": true })] {
        let refused = app.post_json("/v1/users/alice/enrollments", &key, body).await;
        assert_error(&refused, StatusCode::FORBIDDEN, "second_factor_proof_required");
    }
    assert_eq!(enrollments_created(&app).await, created_before, "no enrollment was written");
    let refusals: Vec<Value> = audit_actions(&app)
        .await
        .into_iter()
        .filter(|(a, _)| a == "enrollment.refused")
        .map(|(_, d)| d)
        .collect();
    assert_eq!(refusals.len(), 2, "each attempt is audited");
    assert_eq!(refusals[0]["reason"], "second_factor_proof_required");
    let reply = enroll(
        &app,
        &mut TestDevice::new(),
        stale_first["activation_uri"].as_str().unwrap(),
        PushRegistration::None,
    )
    .await;
    assert_error(&reply, StatusCode::FORBIDDEN, "enrollment_not_allowed");
    let devices = app.get("/v1/users/alice/devices", Some(&key)).await;
    assert_eq!(devices.body.as_array().unwrap().len(), 1, "still only Alice's phone");
}

/// The legitimate way to add a device: the user approves a prompt on their existing phone, and
/// the app presents that approval. It works once: the enrollment consumes it (the challenge is
/// `redeemed`, audited), so it can neither add a third device nor be redeemed for a sign-in.
/// The existing phone is told about the new one.
async fn fresh_approval_adds_one_device_once(engine: Engine) {
    let (app, _) = app(engine).await;
    let key = app.key("portal", "users:read users:write challenges:read challenges:write").await;
    let mut phone = enrolled_device(&app, &key, "alice", PushRegistration::None).await;
    let approval = common::fresh_approval(&app, &key, "alice", &mut phone).await;

    let second = app.post_json("/v1/users/alice/enrollments", &key, json!({ "approval": approval })).await;
    assert_eq!(second.status, StatusCode::CREATED, "{:?}", second.body);
    assert_eq!(second.body["second_device"], true);
    let mut tablet = TestDevice::new();
    let reply =
        enroll(&app, &mut tablet, second.body["activation_uri"].as_str().unwrap(), PushRegistration::None)
            .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{:?}", reply.body);

    let again = app.post_json("/v1/users/alice/enrollments", &key, json!({ "approval": approval })).await;
    assert_error(&again, StatusCode::FORBIDDEN, "approval_invalid");
    let redeem = app.post_json(&format!("/v1/challenges/{approval}/redeem"), &key, json!({})).await;
    assert_error(&redeem, StatusCode::CONFLICT, "already_redeemed");
    let state = app.get(&format!("/v1/challenges/{approval}"), Some(&key)).await;
    assert_eq!(state.body["state"], "redeemed");

    let notices = signed_get(&app, &phone, "/device/v1/notices").await;
    let list = notices.body["notices"].as_array().unwrap();
    assert_eq!(list.len(), 1, "{list:?}");
    assert_eq!(list[0]["kind"], "device_enrolled");
    assert_eq!(list[0]["details"]["device_id"], tablet.device_id().as_str());
    let audit = audit_actions(&app).await;
    let consumed: Vec<&Value> = audit
        .iter()
        .filter(|(a, d)| a == "challenge.redeemed" && d["challenge_id"] == approval.as_str())
        .map(|(_, d)| d)
        .collect();
    assert_eq!(consumed.len(), 1, "one redemption, by the enrollment: {consumed:?}");
    assert_eq!(consumed[0]["purpose"], "second_device_enrollment");
    let created = audit.iter().rfind(|(a, _)| a == "enrollment.created").unwrap();
    assert_eq!(created.1["approval"], approval.as_str(), "the proof is audited");
}

/// Approvals that prove nothing about this user, now, to this app: one older than 5 minutes,
/// another user's, another app's, one never answered, and a denial. Each is refused with
/// nothing written, and the challenge keeps its state.
async fn stale_or_foreign_approvals_are_refused(engine: Engine) {
    let (app, _) = app(engine).await;
    let key = app.key("portal", "users:read users:write challenges:read challenges:write").await;
    let other_app = app.key("intranet", "users:read users:write challenges:read challenges:write").await;
    let mut alice = enrolled_device(&app, &key, "alice", PushRegistration::None).await;
    let mut bob = enrolled_device(&app, &key, "bob", PushRegistration::None).await;
    let enroll_alice = |approval: String| {
        let app = &app;
        let key = key.clone();
        async move { app.post_json("/v1/users/alice/enrollments", &key, json!({ "approval": approval })).await }
    };

    let stale = common::fresh_approval(&app, &key, "alice", &mut alice).await;
    app.advance(time::Duration::minutes(5) + time::Duration::seconds(1)).await;
    let bobs = common::fresh_approval(&app, &key, "bob", &mut bob).await;
    let other_apps = common::fresh_approval(&app, &other_app, "alice", &mut alice).await;
    let unanswered = app.post_json("/v1/challenges", &key, json!({ "username": "alice" })).await;
    let unanswered = unanswered.body["id"].as_str().unwrap().to_owned();
    let created_before = enrollments_created(&app).await;

    for (what, approval) in [
        ("stale", stale.clone()),
        ("another user's", bobs.clone()),
        ("another app's", other_apps.clone()),
        ("unanswered", unanswered.clone()),
        ("unknown", uuid::Uuid::new_v4().to_string()),
    ] {
        let reply = enroll_alice(approval).await;
        assert_eq!(reply.body["error"], "approval_invalid", "{what}: {:?}", reply.body);
        assert_error(&reply, StatusCode::FORBIDDEN, "approval_invalid");
    }
    assert_eq!(enrollments_created(&app).await, created_before, "no enrollment was written");
    for (approval, owner, state) in [
        (&stale, &key, "approved"),
        (&bobs, &key, "approved"),
        (&other_apps, &other_app, "approved"),
        (&unanswered, &key, "pending"),
    ] {
        let reply = app.get(&format!("/v1/challenges/{approval}"), Some(owner)).await;
        assert_eq!(reply.body["state"], state, "untouched: {:?}", reply.body);
    }
    let devices = app.get("/v1/users/alice/devices", Some(&key)).await;
    assert_eq!(devices.body.as_array().unwrap().len(), 1);
}

/// A proxy in front of Countersign normalises URLs: `/v1/users/../enrollments` reaches another
/// route, `/v1/users/alice./devices` may reach `alice`. A username must be a path segment no
/// normaliser rewrites, so such names are refused at provisioning and written nowhere.
async fn usernames_a_url_normaliser_would_rewrite_are_refused(engine: Engine) {
    let (app, key) = app(engine).await;
    let before = audit_actions(&app).await.len();
    for name in [".", "..", "...", ".alice", "alice.", "al..ice", "a%2e", "a/b", "a;b", "~alice"] {
        let reply = app.post_json("/v1/users", &key, json!({ "username": name })).await;
        assert_error(&reply, StatusCode::UNPROCESSABLE_ENTITY, "invalid_request");
    }
    assert_eq!(audit_actions(&app).await.len(), before, "nothing was provisioned");
    let fine = app.post_json("/v1/users", &key, json!({ "username": "Alice.Smith+mfa@example.com" })).await;
    assert_eq!(fine.status, StatusCode::CREATED, "{:?}", fine.body);
}

/// A leaver is deleted: every device stops working at once.
async fn deleting_a_user_revokes_everything(engine: Engine) {
    let (app, key) = app(engine).await;
    // Issued before the phone enrolled: still pending when the user is deleted.
    let pending = activation_uri(&app, &key, "alice", false).await;
    let phone = enrolled_device(&app, &key, "alice", PushRegistration::None).await;
    let reply = app.delete("/v1/users/alice", &key).await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT, "{:?}", reply.body);
    assert_error(&signed_get(&app, &phone, LIST).await, StatusCode::UNAUTHORIZED, "device_revoked");
    assert_error(&app.get("/v1/users/alice", Some(&key)).await, StatusCode::NOT_FOUND, "user_not_found");
    let reply = enroll(
        &app,
        &mut TestDevice::new(),
        pending["activation_uri"].as_str().unwrap(),
        PushRegistration::None,
    )
    .await;
    assert_eq!(reply.status, StatusCode::GONE, "the pending enrollment died with the user: {:?}", reply.body);
    assert_error(&app.delete("/v1/users/alice", &key).await, StatusCode::NOT_FOUND, "user_not_found");
    let again = app.post_json("/v1/users", &key, json!({ "username": "alice" })).await;
    assert_eq!(again.status, StatusCode::CREATED, "the username is free again, with a new id");
}

/// The phone removes itself; its key is useless afterwards.
async fn unenroll_revokes_the_device(engine: Engine) {
    let (app, key) = app(engine).await;
    let phone = enrolled_device(&app, &key, "alice", PushRegistration::None).await;
    let headers = phone.sign_request("DELETE", "/device/v1", b"", app.now_unix());
    assert_eq!(app.signed("DELETE", "/device/v1", b"", &headers).await.status, StatusCode::NO_CONTENT);
    assert_error(&signed_get(&app, &phone, LIST).await, StatusCode::UNAUTHORIZED, "device_revoked");
    let devices = app.get("/v1/users/alice/devices", Some(&key)).await;
    assert!(!devices.body[0]["revoked_at"].is_null());
}

/// Activation codes are stored only as a hash and a ciphertext: a database reader cannot
/// enroll a phone with them.
async fn activation_codes_are_not_stored_in_clear(engine: Engine) {
    let (app, key) = app(engine).await;
    let enrollment = activation_uri(&app, &key, "alice", false).await;
    let code = enrollment["activation_code"].as_str().unwrap();
    let id = countersign::ids::EnrollmentId(enrollment["id"].as_str().unwrap().parse().unwrap());
    let stored = app.store.enrollment_by_id(id).await.unwrap().unwrap();
    let contains = |haystack: &[u8]| haystack.windows(code.len()).any(|w| w == code.as_bytes());
    assert!(!contains(&stored.code_hash));
    assert!(!contains(stored.code_sealed.as_deref().unwrap()));
    assert!(
        !audit_actions(&app).await.iter().any(|(_, d)| d.to_string().contains(code)),
        "nor in the audit trail"
    );
    let _ = PublicKey::from_sec1(app.state.devices.server_key().public_key().as_bytes()).unwrap();
}

on_both_engines!(
    enroll_list_and_revoke,
    revoked_device_request_is_refused,
    replayed_device_request_is_refused,
    forged_device_requests_are_refused,
    enrollment_code_reuse_is_refused,
    enrollment_after_expiry_is_refused,
    two_devices_racing_one_code_exactly_one_wins,
    key_shared_across_users_is_refused,
    push_token_shared_across_users_is_refused,
    bad_enrollments_are_refused_without_state_change,
    app_alone_cannot_add_a_second_device,
    fresh_approval_adds_one_device_once,
    stale_or_foreign_approvals_are_refused,
    usernames_a_url_normaliser_would_rewrite_are_refused,
    deleting_a_user_revokes_everything,
    unenroll_revokes_the_device,
    activation_codes_are_not_stored_in_clear,
);
