//! The hosted passkey pages — registration through an enrollment link, sign-in for a passkey
//! challenge — driven as the page's script drives them, with 1Password's `passkey` crate as the authenticator, on both engines. (The
//! real browser runs the same page in `tests/tests/browser.rs`.)
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[macro_use]
mod common;
#[path = "common/soft_key.rs"]
mod soft_key;

use axum::http::StatusCode;
use common::{
    TestApp, app_with_user, assert_error, audit_actions, audit_len, enrolled_device, fresh_approval,
    signed_get,
};
use countersign_e2e::Engine;
use serde_json::{Value, json};
use soft_key::{ORIGIN, SoftKey};

const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

async fn create_link(app: &TestApp, key: &str, username: &str, body: Value) -> common::Reply {
    app.post_json(&format!("/v1/users/{username}/passkeys/enrollment-links"), key, body).await
}

/// A new link's code (from its URL).
async fn link_code(app: &TestApp, key: &str, username: &str, body: Value) -> String {
    let reply = create_link(app, key, username, body).await;
    assert_eq!(reply.status, StatusCode::CREATED, "{:?}", reply.body);
    let url = reply.body["url"].as_str().unwrap();
    url.strip_prefix(&format!("{ORIGIN}/passkeys/enroll?code=")).unwrap().to_owned()
}

/// What the page's script posts (no API key: the code is the credential).
async fn page_post(app: &TestApp, path: &str, body: Value) -> common::Reply {
    app.device_post(path, body.to_string().as_bytes()).await
}

/// The page's ceremony: options, `navigator.credentials.create`, the credential posted.
async fn enroll(app: &TestApp, code: &str, soft_key: &mut SoftKey) -> common::Reply {
    let options = page_post(app, "/passkeys/enroll/options", json!({ "code": code })).await;
    assert_eq!(options.status, StatusCode::OK, "{:?}", options.body);
    // Enforced credProtect makes browsers refuse authenticators without it (Chromium's own).
    assert_eq!(options.body["public_key"]["extensions"]["enforceCredentialProtectionPolicy"], false);
    let credential = soft_key.create(&options.body["public_key"]).await;
    page_post(app, "/passkeys/enroll/credential", json!({ "code": code, "credential": credential })).await
}

async fn passkey_count(app: &TestApp, key: &str, username: &str) -> usize {
    let reply = app.get(&format!("/v1/users/{username}/passkeys"), Some(key)).await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
    reply.body.as_array().unwrap().len()
}

/// An HTML page as (status, body), checking the pages' security headers.
async fn page(app: &TestApp, path: &str) -> (StatusCode, String) {
    let reply = app.get(path, None).await;
    let header = |name: &str| reply.headers.get(name).map(|v| v.to_str().unwrap().to_owned());
    assert_eq!(header("content-security-policy").as_deref(), Some(CSP), "{path}");
    assert_eq!(header("referrer-policy").as_deref(), Some("no-referrer"), "{path}");
    assert_eq!(header("cache-control").as_deref(), Some("no-store"), "{path}");
    assert_eq!(header("content-type").as_deref(), Some("text/html; charset=utf-8"), "{path}");
    (reply.status, reply.body.as_str().unwrap().to_owned())
}

async fn an_enrollment_link_registers_a_passkey_once(engine: Engine) {
    let (app, key) = app_with_user(engine, "alice").await;
    let reply = create_link(&app, &key, "alice", json!({ "name": "Work laptop" })).await;
    assert_eq!(reply.status, StatusCode::CREATED, "{:?}", reply.body);
    let expires_at = time::OffsetDateTime::parse(
        reply.body["expires_at"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    assert_eq!(expires_at, app.clock_now() + time::Duration::minutes(10));
    let url = reply.body["url"].as_str().unwrap();
    let code = url.strip_prefix(&format!("{ORIGIN}/passkeys/enroll?code=")).unwrap().to_owned();
    assert!(code.len() >= 22, "at least 128 random bits: {code}");

    let (status, html) = page(&app, &format!("/passkeys/enroll?code={code}")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("alice") && html.contains(r#"<script src="/assets/passkeys.js" defer></script>"#));
    assert!(html.contains("Requested by <strong>portal</strong>"), "who asked is on the page: {html}");
    assert!(!html.contains("<script>") && !html.contains("style="), "no inline script or style");
    assert!(!html.contains(&code), "the page does not repeat its secret");

    let before = audit_len(&app).await;
    let registered = enroll(&app, &code, &mut SoftKey::new()).await;
    assert_eq!(registered.status, StatusCode::CREATED, "{:?}", registered.body);
    assert_eq!(registered.body["name"], "Work laptop");
    assert_eq!(passkey_count(&app, &key, "alice").await, 1);
    let events = audit_actions(&app).await;
    let registered_events: Vec<_> = events
        .iter()
        .skip(usize::try_from(before).unwrap())
        .filter(|(a, _)| a == "passkey.registered")
        .collect();
    assert_eq!(registered_events.len(), 1, "{events:?}");

    // Used: the page says so, the endpoints refuse, nothing more is stored.
    let (status, html) = page(&app, &format!("/passkeys/enroll?code={code}")).await;
    assert_eq!(status, StatusCode::GONE);
    assert!(html.contains("enrollment_link_used"), "{html}");
    let again = enroll_with_fresh_options_refused(&app, &code).await;
    assert_error(&again, StatusCode::GONE, "enrollment_link_used");
    assert_eq!(passkey_count(&app, &key, "alice").await, 1);
}

/// The options endpoint of a link that cannot be used.
async fn enroll_with_fresh_options_refused(app: &TestApp, code: &str) -> common::Reply {
    page_post(app, "/passkeys/enroll/options", json!({ "code": code })).await
}

/// Two credentials posted for one link (a replayed or raced completion): one passkey.
async fn an_enrollment_link_completes_once(engine: Engine) {
    let (app, key) = app_with_user(engine, "alice").await;
    let code = link_code(&app, &key, "alice", json!({})).await;
    let options = page_post(&app, "/passkeys/enroll/options", json!({ "code": code })).await;
    let credential = SoftKey::new().create(&options.body["public_key"]).await;
    let body = json!({ "code": code, "credential": credential });
    let (a, b) = tokio::join!(
        page_post(&app, "/passkeys/enroll/credential", body.clone()),
        page_post(&app, "/passkeys/enroll/credential", body.clone()),
    );
    let mut statuses = [a.status, b.status];
    statuses.sort();
    assert_eq!(statuses, [StatusCode::CREATED, StatusCode::GONE], "{:?} {:?}", a.body, b.body);
    let loser = if a.status == StatusCode::GONE { a } else { b };
    assert_error(&loser, StatusCode::GONE, "enrollment_link_used");
    assert_eq!(passkey_count(&app, &key, "alice").await, 1);
}

async fn unknown_and_expired_links_change_nothing(engine: Engine) {
    let (app, key) = app_with_user(engine, "alice").await;
    let code = link_code(&app, &key, "alice", json!({})).await;
    let options = page_post(&app, "/passkeys/enroll/options", json!({ "code": code })).await;
    let credential = SoftKey::new().create(&options.body["public_key"]).await;
    let before = audit_len(&app).await;

    for path in ["/passkeys/enroll", "/passkeys/enroll?code=", "/passkeys/enroll?code=AAAAAAAAAAAAAAAAAAAAAA"]
    {
        let (status, html) = page(&app, path).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
        assert!(html.contains("enrollment_link_invalid"), "{html}");
    }
    let unknown = json!({ "code": "AAAAAAAAAAAAAAAAAAAAAA", "credential": credential });
    assert_error(
        &page_post(&app, "/passkeys/enroll/credential", unknown).await,
        StatusCode::NOT_FOUND,
        "enrollment_link_invalid",
    );

    app.advance(time::Duration::minutes(10)).await;
    let (status, html) = page(&app, &format!("/passkeys/enroll?code={code}")).await;
    assert_eq!(status, StatusCode::GONE);
    assert!(html.contains("enrollment_link_expired"), "{html}");
    assert_error(
        &page_post(&app, "/passkeys/enroll/options", json!({ "code": code })).await,
        StatusCode::GONE,
        "enrollment_link_expired",
    );
    let late = json!({ "code": code, "credential": credential });
    assert_error(
        &page_post(&app, "/passkeys/enroll/credential", late).await,
        StatusCode::GONE,
        "enrollment_link_expired",
    );
    assert_eq!(passkey_count(&app, &key, "alice").await, 0);
    assert_eq!(audit_len(&app).await, before, "bad links are not state changes");
}

/// A user who has a factor gets a link only with their approval, consumed once — the page can
/// do nothing the app could not.
async fn an_enrollment_link_follows_the_trust_rule(engine: Engine) {
    let (app, key) = app_with_user(engine, "alice").await;
    let mut phone =
        enrolled_device(&app, &key, "alice", countersign_mobile_protocol::PushRegistration::None).await;
    assert_error(
        &create_link(&app, &key, "alice", json!({})).await,
        StatusCode::FORBIDDEN,
        "second_factor_proof_required",
    );
    let approval = fresh_approval(&app, &key, "alice", &mut phone).await;
    let code = link_code(&app, &key, "alice", json!({ "approval": approval })).await;
    assert_error(
        &create_link(&app, &key, "alice", json!({ "approval": approval })).await,
        StatusCode::FORBIDDEN,
        "approval_invalid",
    );
    let registered = enroll(&app, &code, &mut SoftKey::new()).await;
    assert_eq!(registered.status, StatusCode::CREATED, "{:?}", registered.body);
}

/// A credential the relying party refuses does not use the link up: the user can try again.
async fn a_refused_credential_leaves_the_link_usable(engine: Engine) {
    let (app, key) = app_with_user(engine, "alice").await;
    let code = link_code(&app, &key, "alice", json!({})).await;
    let options = page_post(&app, "/passkeys/enroll/options", json!({ "code": code })).await;
    let mut credential = SoftKey::new().create(&options.body["public_key"]).await;
    credential["response"]["clientDataJSON"] = json!("e30"); // `{}`
    let refused =
        page_post(&app, "/passkeys/enroll/credential", json!({ "code": code, "credential": credential }))
            .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "{:?}", refused.body);
    let registered = enroll(&app, &code, &mut SoftKey::new()).await;
    assert_eq!(registered.status, StatusCode::CREATED, "{:?}", registered.body);
}

async fn enrollment_link_bad_input_is_precise(engine: Engine) {
    let (app, key) = app_with_user(engine, "alice").await;
    assert_error(
        &create_link(&app, &key, "nobody", json!({})).await,
        StatusCode::NOT_FOUND,
        "user_not_found",
    );
    assert_error(
        &create_link(&app, &key, "alice", json!({ "name": "" })).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_request",
    );
    let reader = app.key("reader", "users:read").await;
    assert_error(
        &create_link(&app, &reader, "alice", json!({})).await,
        StatusCode::FORBIDDEN,
        "insufficient_scope",
    );
    let code = link_code(&app, &key, "alice", json!({})).await;
    for body in [json!({ "code": 5 }), json!({}), json!({ "code": code, "extra": 1 }), json!([code])] {
        let reply = page_post(&app, "/passkeys/enroll/options", body.clone()).await;
        assert_error(&reply, StatusCode::UNPROCESSABLE_ENTITY, "invalid_request");
    }
    for credential in
        [json!({}), json!("x"), json!({ "id": "a", "rawId": "a", "type": "other", "response": {} })]
    {
        let body = json!({ "code": code, "credential": credential });
        let reply = page_post(&app, "/passkeys/enroll/credential", body).await;
        assert_error(&reply, StatusCode::UNPROCESSABLE_ENTITY, "invalid_request");
    }
    let malformed = app.device_post("/passkeys/enroll/options", b"{").await;
    assert_error(&malformed, StatusCode::BAD_REQUEST, "invalid_json");
    assert_eq!(passkey_count(&app, &key, "alice").await, 0);
}

async fn the_page_assets_carry_the_same_headers(engine: Engine) {
    let (app, _) = app_with_user(engine, "alice").await;
    for (path, content_type) in [
        ("/assets/passkeys.js", "text/javascript; charset=utf-8"),
        ("/assets/pages.css", "text/css; charset=utf-8"),
    ] {
        let reply = app.get(path, None).await;
        assert_eq!(reply.status, StatusCode::OK, "{path}");
        assert_eq!(reply.headers["content-type"], content_type);
        assert_eq!(reply.headers["content-security-policy"], CSP);
        assert_eq!(reply.headers["x-content-type-options"], "nosniff");
    }
}

/// What the pages' script fetches carries secrets too (the options name the user; the code or
/// token is in the body): never cached, never sent on as a referrer, like the pages.
async fn the_page_endpoints_are_never_cached(engine: Engine) {
    let (app, key) = app_with_user(engine, "alice").await;
    let code = link_code(&app, &key, "alice", json!({})).await;
    let options = page_post(&app, "/passkeys/enroll/options", json!({ "code": code })).await;
    assert_eq!(options.status, StatusCode::OK);
    assert_eq!(options.headers["cache-control"], "no-store");
    assert_eq!(options.headers["referrer-policy"], "no-referrer");
    assert_eq!(options.headers["x-content-type-options"], "nosniff");
    for path in ["/passkeys/enroll/credential", "/passkeys/sign-in/options", "/passkeys/sign-in/assertion"] {
        let reply = page_post(&app, path, json!({})).await;
        assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY, "{path}");
        assert_eq!(reply.headers["cache-control"], "no-store", "{path}");
    }
}

/// A database dump must not hand out usable links: the link code and the page token are kept
/// only as their SHA-256, and nothing else in their rows repeats them.
async fn link_codes_and_page_tokens_are_stored_only_hashed(engine: Engine) {
    let (app, key) = app_with_user(engine, "alice").await;
    let sha256 =
        |secret: &str| ring::digest::digest(&ring::digest::SHA256, secret.as_bytes()).as_ref().to_vec();
    let code = link_code(&app, &key, "alice", json!({})).await;
    let link = app.store.enrollment_link(&sha256(&code)).await.unwrap().expect("found by its hash");
    assert_eq!(link.code_hash, sha256(&code));
    assert!(!format!("{link:?}").contains(&code), "{link:?}");
    assert!(app.store.enrollment_link(code.as_bytes()).await.unwrap().is_none());
    assert_eq!(enroll(&app, &code, &mut SoftKey::new()).await.status, StatusCode::CREATED);

    let (id, token, _) = passkey_challenge(&app, &key, "alice").await;
    let challenge = countersign::ids::ChallengeId(id.parse().unwrap());
    let sign_in = app.store.passkey_sign_in(challenge).await.unwrap().unwrap();
    let page = sign_in.page.clone().unwrap();
    assert_eq!(page.token_hash, sha256(&token));
    assert!(!format!("{sign_in:?}").contains(&token), "{sign_in:?}");
}

// ---------------------------------------------------------------------------------------------
// The hosted sign-in page of a passkey challenge

/// A passkey challenge for `username`: (id, page token, the create response's options).
async fn passkey_challenge(app: &TestApp, key: &str, username: &str) -> (String, String, Value) {
    let body = json!({ "username": username, "factor": "passkey", "context": { "app_name": "Portal" } });
    let reply = app.post_json("/v1/challenges", key, body).await;
    assert_eq!(reply.status, StatusCode::CREATED, "{:?}", reply.body);
    let url = reply.body["sign_in_url"].as_str().unwrap();
    let token = url.strip_prefix(&format!("{ORIGIN}/passkeys/sign-in?token=")).unwrap().to_owned();
    (reply.body["id"].as_str().unwrap().to_owned(), token, reply.body["webauthn"].clone())
}

/// The page's ceremony: options, `navigator.credentials.get`, the assertion posted.
async fn sign_in(app: &TestApp, token: &str, soft_key: &mut SoftKey) -> common::Reply {
    let options = page_post(app, "/passkeys/sign-in/options", json!({ "token": token })).await;
    assert_eq!(options.status, StatusCode::OK, "{:?}", options.body);
    let assertion = soft_key.get(&options.body["public_key"]).await;
    page_post(app, "/passkeys/sign-in/assertion", json!({ "token": token, "credential": assertion })).await
}

/// alice with a passkey registered on the enrollment page.
async fn alice_with_passkey(engine: Engine) -> (TestApp, String, SoftKey) {
    let (app, key) = app_with_user(engine, "alice").await;
    let code = link_code(&app, &key, "alice", json!({})).await;
    let mut soft_key = SoftKey::new();
    assert_eq!(enroll(&app, &code, &mut soft_key).await.status, StatusCode::CREATED);
    (app, key, soft_key)
}

async fn a_passkey_signs_in_on_the_hosted_page_and_the_app_redeems_once(engine: Engine) {
    let (app, key, mut soft_key) = alice_with_passkey(engine).await;
    let (id, token, webauthn) = passkey_challenge(&app, &key, "alice").await;
    assert!(token.len() >= 22, "at least 128 random bits: {token}");
    let (status, html) = page(&app, &format!("/passkeys/sign-in?token={token}")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("Portal") && html.contains(r#"data-ceremony="sign-in""#), "{html}");
    assert!(!html.contains(&token) && !html.contains("<script>"), "{html}");
    let options = page_post(&app, "/passkeys/sign-in/options", json!({ "token": token })).await;
    assert_eq!(options.body["public_key"], webauthn, "the page runs the challenge's own request");

    let approved = sign_in(&app, &token, &mut soft_key).await;
    assert_eq!((approved.status, approved.body["state"].clone()), (StatusCode::OK, json!("approved")));
    assert_eq!(approved.body["id"], id.as_str());
    let redeem = format!("/v1/challenges/{id}/redeem");
    assert_eq!(app.post_json(&redeem, &key, json!({})).await.status, StatusCode::OK);
    assert_error(&app.post_json(&redeem, &key, json!({})).await, StatusCode::CONFLICT, "already_redeemed");

    // Over: the page says so, and another assertion approves nothing.
    let (status, html) = page(&app, &format!("/passkeys/sign-in?token={token}")).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert!(html.contains("challenge_not_pending"), "{html}");
    let options = webauthn.clone();
    let late = soft_key.get(&options).await;
    let again =
        page_post(&app, "/passkeys/sign-in/assertion", json!({ "token": token, "credential": late })).await;
    assert_error(&again, StatusCode::CONFLICT, "challenge_not_pending");

    // A push challenge has no sign-in page.
    let push = app.post_json("/v1/challenges", &key, json!({ "username": "alice" })).await;
    assert!(push.body.get("sign_in_url").is_none(), "{:?}", push.body);
}

/// The sign-in link is worth an approval to whoever holds it, so the page says whose sign-in
/// it is: the place and device the app saw (a user sent an attacker's link sees the attacker's),
/// when it was asked, and a plain warning. App-supplied text is escaped.
async fn the_sign_in_page_shows_where_the_request_came_from(engine: Engine) {
    let (app, key, _) = alice_with_passkey(engine).await;
    let context = json!({
        "app_name": "Portal",
        "ip": "203.0.113.7",
        "location": "Lisbon, PT",
        "user_agent": "<img src=x onerror=alert(1)> Firefox",
    });
    let body = json!({ "username": "alice", "factor": "passkey", "context": context });
    let reply = app.post_json("/v1/challenges", &key, body).await;
    assert_eq!(reply.status, StatusCode::CREATED, "{:?}", reply.body);
    let url = reply.body["sign_in_url"].as_str().unwrap();
    let path = url.strip_prefix(ORIGIN).unwrap();
    let (status, html) = page(&app, path).await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("203.0.113.7 (Lisbon, PT)"), "{html}");
    assert!(html.contains("&#60;img src=x onerror=alert(1)&#62; Firefox"), "escaped: {html}");
    assert!(!html.contains("<img"), "{html}");
    let now = app.clock_now();
    assert!(html.contains(&format!("{:02}:{:02} UTC", now.hour(), now.minute())), "{html}");
    assert!(html.contains("If someone sent you this link"), "{html}");
}

async fn unknown_and_expired_sign_in_pages_change_nothing(engine: Engine) {
    let (app, key, mut soft_key) = alice_with_passkey(engine).await;
    let (_, token, webauthn) = passkey_challenge(&app, &key, "alice").await;
    let assertion = soft_key.get(&webauthn).await;
    let before = audit_len(&app).await;
    for path in ["/passkeys/sign-in", "/passkeys/sign-in?token=AAAAAAAAAAAAAAAAAAAAAA"] {
        let (status, html) = page(&app, path).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
        assert!(html.contains("sign_in_page_invalid"), "{html}");
    }
    let unknown = json!({ "token": "AAAAAAAAAAAAAAAAAAAAAA", "credential": assertion });
    assert_error(
        &page_post(&app, "/passkeys/sign-in/assertion", unknown).await,
        StatusCode::NOT_FOUND,
        "sign_in_page_invalid",
    );
    for body in [json!({ "token": 5 }), json!({}), json!({ "token": token, "extra": 1 })] {
        let reply = page_post(&app, "/passkeys/sign-in/options", body).await;
        assert_error(&reply, StatusCode::UNPROCESSABLE_ENTITY, "invalid_request");
    }
    app.advance(time::Duration::minutes(1)).await;
    let (status, html) = page(&app, &format!("/passkeys/sign-in?token={token}")).await;
    assert_eq!(status, StatusCode::GONE);
    assert!(html.contains("challenge_expired"), "{html}");
    let late = json!({ "token": token, "credential": assertion });
    assert_error(
        &page_post(&app, "/passkeys/sign-in/assertion", late).await,
        StatusCode::GONE,
        "challenge_expired",
    );
    assert_eq!(audit_len(&app).await, before, "nothing was answered or recorded");
}

/// The upgrade lock-out and its way out. alice's only factor is a phone and she becomes
/// passkey-only: push is refused, so she can prove no approval, and an app's link is refused.
/// The operator's recovery link (`countersign enrollments passkey-link --recovery`) adds her
/// passkey: audited with the operator as actor, announced on her phone as operator-issued,
/// and the page says plainly that the help desk issued it. Without `recovery` the operator is
/// held to the same rule as an app.
async fn an_operator_recovery_link_gives_a_passkey_only_user_a_passkey(engine: Engine) {
    let (app, key) = app_with_user(engine, "alice").await;
    let phone =
        enrolled_device(&app, &key, "alice", countersign_mobile_protocol::PushRegistration::None).await;
    let raised = app.post_json("/v1/users/alice/passkey-required", &key, json!({})).await;
    assert_eq!(raised.body["passkey_required"], true, "{:?}", raised.body);
    let push = app.post_json("/v1/challenges", &key, json!({ "username": "alice" })).await;
    assert_error(&push, StatusCode::CONFLICT, "passkey_required");
    let by_app = create_link(&app, &key, "alice", json!({})).await;
    assert_error(&by_app, StatusCode::FORBIDDEN, "second_factor_proof_required");

    let plain = app.state.passkeys.create_operator_link("alice", false, None).await;
    assert!(
        matches!(plain, Err(countersign::passkeys::service::PasskeyError::SecondFactorProofRequired)),
        "{plain:?}"
    );
    let link = app.state.passkeys.create_operator_link("alice", true, Some("Laptop".into())).await.unwrap();
    let url = secrecy::ExposeSecret::expose_secret(&link.url).to_owned();
    let code = url.strip_prefix(&format!("{ORIGIN}/passkeys/enroll?code=")).unwrap().to_owned();
    let (status, html) = page(&app, &format!("/passkeys/enroll?code={code}")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("Issued by your administrator"), "{html}");

    let mut soft_key = SoftKey::new();
    let registered = enroll(&app, &code, &mut soft_key).await;
    assert_eq!((registered.status, registered.body["name"].clone()), (StatusCode::CREATED, json!("Laptop")));
    countersign::audit::flush(app.store.as_ref()).await.unwrap();
    let head = app.store.audit_head().await.unwrap();
    let events = app.store.audit_events(0, head.seq, 100_000).await.unwrap();
    let by_operator = |action: &str| {
        events.iter().filter(|e| e.action == action).map(|e| (e.actor.clone(), e.details.clone())).next_back()
    };
    let (actor, details) = by_operator("passkey.registration_started").unwrap();
    assert_eq!(actor, "cli");
    assert_eq!(serde_json::from_str::<Value>(&details).unwrap()["recovery"], true, "{details}");
    let (actor, details) = by_operator("passkey.registered").unwrap();
    assert_eq!(actor, "cli");
    assert_eq!(serde_json::from_str::<Value>(&details).unwrap()["operator_issued"], true, "{details}");

    let notices = signed_get(&app, &phone, "/device/v1/notices").await;
    let added: Vec<_> =
        notices.body["notices"].as_array().unwrap().iter().filter(|n| n["kind"] == "passkey_added").collect();
    assert_eq!(added.len(), 1, "{:?}", notices.body);
    assert_eq!(added[0]["details"]["operator_issued"], true, "{:?}", added[0]);

    // And she is in: a passkey sign-in on the hosted page approves.
    let (_, token, _) = passkey_challenge(&app, &key, "alice").await;
    assert_eq!(sign_in(&app, &token, &mut soft_key).await.body["state"], "approved");
}

on_both_engines!(
    a_passkey_signs_in_on_the_hosted_page_and_the_app_redeems_once,
    unknown_and_expired_sign_in_pages_change_nothing,
    an_enrollment_link_registers_a_passkey_once,
    an_enrollment_link_completes_once,
    unknown_and_expired_links_change_nothing,
    an_enrollment_link_follows_the_trust_rule,
    a_refused_credential_leaves_the_link_usable,
    enrollment_link_bad_input_is_precise,
    the_page_assets_carry_the_same_headers,
    an_operator_recovery_link_gives_a_passkey_only_user_a_passkey,
    the_page_endpoints_are_never_cached,
    link_codes_and_page_tokens_are_stored_only_hashed,
    the_sign_in_page_shows_where_the_request_came_from,
);
