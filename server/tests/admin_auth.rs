//! Admin identity on both engines, with a real software authenticator keeping discoverable
//! credentials: the bootstrap token, invitations, discoverable sign-in, step-up and the admin's
//! own passkeys; each attack a named test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[macro_use]
mod common;
#[path = "common/resident_key.rs"]
mod resident_key;
#[path = "common/soft_key.rs"]
mod soft_key;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use common::admin::{ADMIN_ORIGIN, AdminClient};
use common::{Reply, TestApp, app_with_user, assert_error, audit_actions};
use countersign::admin::accounts::{AccountError, LOGIN_COOKIE, create_bootstrap_token, new_invitation};
use countersign::admin::model::{AdminStatus, Role};
use countersign::admin::sessions::{SESSION_COOKIE, secret_hash};
use countersign::app::HttpLimits;
use countersign::audit::{Action, Subject};
use countersign::ids::{AdminId, AdminPasskeyId, PasskeyId, RegistrationId};
use countersign::passkeys::ceremony::{self, ResidentKey, UserEntity};
use countersign::store::{
    AdminPasskeyRecord, AdminRecord, BootstrapSpend, Conflict, PasskeyRecord, StoreError,
};
use countersign_e2e::Engine;
use resident_key::ResidentKeyAuthenticator;
use secrecy::ExposeSecret;
use serde_json::{Value, json};
use soft_key::SoftKey;
use time::Duration;

async fn app(engine: Engine) -> TestApp {
    TestApp::build(engine, HttpLimits::default()).await
}

/// A POST as the admin pages send it before a session: our `Origin`, same-origin fetch, and
/// the cookies the browser holds.
fn browser_post(path: &str, body: Value, cookies: &[(&str, &str)]) -> Request<Body> {
    let mut request = Request::post(path)
        .header(header::ORIGIN, ADMIN_ORIGIN)
        .header("sec-fetch-site", "same-origin")
        .header(header::CONTENT_TYPE, "application/json");
    if !cookies.is_empty() {
        let jar: Vec<String> = cookies.iter().map(|(name, value)| format!("{name}={value}")).collect();
        request = request.header(header::COOKIE, jar.join("; "));
    }
    request.body(Body::from(body.to_string())).unwrap()
}

/// The `Set-Cookie` line that sets `name`, if any.
fn set_cookie(reply: &Reply, name: &str) -> Option<String> {
    reply
        .headers
        .get_all(header::SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .find(|line| line.starts_with(&format!("{name}=")))
}

fn cookie_value(reply: &Reply, name: &str) -> Option<String> {
    let line = set_cookie(reply, name)?;
    let value = line.split(';').next().unwrap().split_once('=').unwrap().1.to_owned();
    Some(value).filter(|v| !v.is_empty())
}

/// The signed-in admin a 200/201 sign-in answer names.
fn client_of(reply: &Reply) -> AdminClient {
    AdminClient {
        id: AdminId(reply.body["admin_id"].as_str().unwrap().parse().unwrap()),
        cookie: cookie_value(reply, SESSION_COOKIE).expect("a session cookie"),
        csrf: reply.body["csrf_token"].as_str().unwrap().to_owned(),
    }
}

async fn token(app: &TestApp, ttl: Duration) -> String {
    let token = create_bootstrap_token(app.store.as_ref(), app.state.clock.as_ref(), ttl).await.unwrap();
    token.expose_secret().to_owned()
}

/// `bootstrap/options`: the reply and the login-ceremony cookie it set.
async fn bootstrap_options(app: &TestApp, token: &str, name: &str) -> (Reply, Option<String>) {
    let reply = app
        .send(browser_post("/admin/api/bootstrap/options", json!({ "token": token, "name": name }), &[]))
        .await;
    let login = cookie_value(&reply, LOGIN_COOKIE);
    (reply, login)
}

/// The bootstrap as the page runs it; the final reply.
async fn bootstrap(app: &TestApp, token: &str, name: &str, key: &mut ResidentKeyAuthenticator) -> Reply {
    let (options, login) = bootstrap_options(app, token, name).await;
    assert_eq!(options.status, StatusCode::OK, "{:?}", options.body);
    let credential = key.create(&options.body["public_key"]).await;
    let login = login.unwrap();
    app.send(browser_post(
        "/admin/api/bootstrap",
        json!({ "credential": credential }),
        &[(LOGIN_COOKIE, &login)],
    ))
    .await
}

/// A bootstrapped admin, signed in.
async fn bootstrapped(app: &TestApp, name: &str) -> (AdminClient, ResidentKeyAuthenticator) {
    let mut key = ResidentKeyAuthenticator::new();
    let token = token(app, Duration::minutes(15)).await;
    let reply = bootstrap(app, &token, name, &mut key).await;
    assert_eq!(reply.status, StatusCode::CREATED, "{:?}", reply.body);
    (client_of(&reply), key)
}

/// A discoverable sign-in with `key`, the browser also presenting `cookies`.
async fn sign_in(app: &TestApp, key: &mut ResidentKeyAuthenticator, cookies: &[(&str, &str)]) -> Reply {
    let options = app.send(browser_post("/admin/api/sign-in/options", json!({}), &[])).await;
    assert_eq!(options.status, StatusCode::OK, "{:?}", options.body);
    let login = cookie_value(&options, LOGIN_COOKIE).unwrap();
    let assertion = key.get(&options.body["public_key"]).await;
    let mut jar = vec![(LOGIN_COOKIE, login.as_str())];
    jar.extend_from_slice(cookies);
    app.send(browser_post("/admin/api/sign-in", json!({ "credential": assertion }), &jar)).await
}

/// A step-up for `action` with `key` (whose `allowCredentials` filter is ignored, as a client
/// could).
async fn step_up(
    app: &TestApp,
    admin: &AdminClient,
    key: &mut ResidentKeyAuthenticator,
    action: &str,
) -> Reply {
    let options =
        app.admin_post(admin, "/admin/api/session/step-up/options", json!({ "action": action })).await;
    assert_eq!(options.status, StatusCode::OK, "{:?}", options.body);
    let mut public_key = options.body["public_key"].clone();
    public_key.as_object_mut().unwrap().remove("allowCredentials");
    let assertion = key.get(&public_key).await;
    app.admin_post(admin, "/admin/api/session/step-up", json!({ "credential": assertion })).await
}

/// Registers `key` as another passkey of `admin` (after a step-up with `current`).
async fn add_passkey(
    app: &TestApp,
    admin: &AdminClient,
    current: &mut ResidentKeyAuthenticator,
    key: &mut ResidentKeyAuthenticator,
) -> Reply {
    assert_eq!(step_up(app, admin, current, "add_passkey").await.status, StatusCode::NO_CONTENT);
    let options = app.admin_post(admin, "/admin/api/passkeys/options", json!({ "name": "spare" })).await;
    assert_eq!(options.status, StatusCode::OK, "{:?}", options.body);
    let credential = key.create(&options.body["public_key"]).await;
    app.admin_post(admin, "/admin/api/passkeys", json!({ "credential": credential })).await
}

async fn session_status(app: &TestApp, cookie: &str) -> StatusCode {
    let request = Request::get("/admin/api/session")
        .header(header::COOKIE, format!("{SESSION_COOKIE}={cookie}"))
        .body(Body::empty())
        .unwrap();
    app.send(request).await.status
}

async fn events_about(app: &TestApp, subject: &Subject, action: Action) -> Vec<Value> {
    countersign::audit::flush(app.store.as_ref()).await.unwrap();
    let events = app.store.audit_events_about(subject, action, 100).await.unwrap();
    events.iter().map(|e| serde_json::from_str(&e.details).unwrap()).collect()
}

fn count(events: &[(String, Value)], action: &str) -> usize {
    events.iter().filter(|(a, _)| a == action).count()
}

/// Attack: a bootstrap token used twice — once after it was spent, and by a second ceremony
/// begun before it was spent. Only one admin is ever created.
async fn bootstrap_token_reuse_is_refused(engine: Engine) {
    let app = app(engine).await;
    let token = token(&app, Duration::minutes(15)).await;
    let mut first = ResidentKeyAuthenticator::new();
    let mut racer = ResidentKeyAuthenticator::new();
    // A second ceremony with the same token, begun before the first is finished.
    let (racing, racing_login) = bootstrap_options(&app, &token, "mallory").await;
    assert_eq!(racing.status, StatusCode::OK);
    let reply = bootstrap(&app, &token, "alice", &mut first).await;
    assert_eq!(reply.status, StatusCode::CREATED, "{:?}", reply.body);

    let credential = racer.create(&racing.body["public_key"]).await;
    let login = racing_login.unwrap();
    let raced = app
        .send(browser_post(
            "/admin/api/bootstrap",
            json!({ "credential": credential }),
            &[(LOGIN_COOKIE, &login)],
        ))
        .await;
    assert_error(&raced, StatusCode::GONE, "bootstrap_token_used");
    assert!(set_cookie(&raced, SESSION_COOKIE).is_none());
    let (again, login) = bootstrap_options(&app, &token, "mallory").await;
    assert_error(&again, StatusCode::GONE, "bootstrap_token_used");
    assert!(login.is_none(), "a refused token begins no ceremony");

    let admins = app.store.admins().await.unwrap();
    assert_eq!(admins.iter().map(|a| a.name.as_str()).collect::<Vec<_>>(), ["alice"]);
    let events = audit_actions(&app).await;
    assert_eq!(count(&events, "admin.bootstrapped"), 1);
    assert_eq!(count(&events, "admin.bootstrap_refused"), 2);
    // Tokens nobody created: refused, audited together (anyone can send them).
    for _ in 0..3 {
        let (unknown, _) = bootstrap_options(&app, "not-a-token", "mallory").await;
        assert_error(&unknown, StatusCode::NOT_FOUND, "bootstrap_token_invalid");
    }
    let refusals = events_about(&app, &Subject::AdminBootstrap, Action::AdminBootstrapRefused).await;
    let unknown: Vec<&Value> = refusals.iter().filter(|e| e["reason"] == "unknown").collect();
    assert_eq!(unknown.len(), 1, "{refusals:?}");
    assert_eq!(unknown[0]["refusals"], 1);
}

/// Attack: a token found after its lifetime, at the options and at the registration.
async fn bootstrap_token_expired_is_refused(engine: Engine) {
    let app = app(engine).await;
    let token = token(&app, Duration::minutes(1)).await;
    let mut key = ResidentKeyAuthenticator::new();
    let (options, login) = bootstrap_options(&app, &token, "alice").await;
    assert_eq!(options.status, StatusCode::OK);
    app.advance(Duration::seconds(61)).await;
    let credential = key.create(&options.body["public_key"]).await;
    let late = app
        .send(browser_post(
            "/admin/api/bootstrap",
            json!({ "credential": credential }),
            &[(LOGIN_COOKIE, &login.unwrap())],
        ))
        .await;
    assert_error(&late, StatusCode::GONE, "bootstrap_token_expired");
    let (again, _) = bootstrap_options(&app, &token, "alice").await;
    assert_error(&again, StatusCode::GONE, "bootstrap_token_expired");
    assert!(app.store.admins().await.unwrap().is_empty());
}

/// With two active admins the bootstrap is closed: no new token, and a token made earlier no
/// longer creates an admin.
async fn bootstrap_closed_with_two_admins(engine: Engine) {
    let app = app(engine).await;
    let early = token(&app, Duration::minutes(15)).await;
    bootstrapped(&app, "alice").await;
    bootstrapped(&app, "bob").await;
    match create_bootstrap_token(app.store.as_ref(), app.state.clock.as_ref(), Duration::minutes(15)).await {
        Err(AccountError::BootstrapClosed) => {}
        other => panic!("{other:?}"),
    }
    let (refused, login) = bootstrap_options(&app, &early, "mallory").await;
    assert_error(&refused, StatusCode::CONFLICT, "bootstrap_closed");
    assert!(login.is_none());
    assert_eq!(app.store.active_admin_count().await.unwrap(), 2);
}

/// The first admin registers with the token, then signs in without typing a name; each sign-in
/// is a new session, audited, and the bootstrap raised its alert.
async fn bootstrap_then_discoverable_sign_in_mints_a_fresh_session(engine: Engine) {
    let app = app(engine).await;
    let (first, mut key) = bootstrapped(&app, "alice").await;
    assert_eq!(session_status(&app, &first.cookie).await, StatusCode::OK);
    let me = app.admin_get(&first, "/admin/api/session").await;
    assert_eq!((me.body["name"].as_str(), me.body["role"].as_str()), (Some("alice"), Some("admin")));

    let options = app.send(browser_post("/admin/api/sign-in/options", json!({}), &[])).await;
    let public_key = &options.body["public_key"];
    assert!(public_key.get("allowCredentials").is_none_or(|a| a == &json!([])), "{public_key}");
    assert_eq!(public_key["userVerification"], "required");

    let reply = sign_in(&app, &mut key, &[]).await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
    let second = client_of(&reply);
    assert_eq!(second.id, first.id);
    assert_ne!(second.cookie, first.cookie);
    assert_ne!(second.csrf, first.csrf);
    assert_eq!(app.admin_get(&second, "/admin/api/session").await.body["name"], "alice");
    let again = client_of(&sign_in(&app, &mut key, &[]).await);
    assert_ne!(again.cookie, second.cookie);

    let events = audit_actions(&app).await;
    assert_eq!(count(&events, "admin.bootstrapped"), 1);
    assert_eq!(count(&events, "admin.signed_in"), 3);
    let mut alerts = Vec::new();
    let mut after = 0;
    while let Some(alert) = app.store.next_alert(after).await.unwrap() {
        after = alert.id;
        alerts.push((alert.kind, alert.subject));
    }
    assert_eq!(alerts, [("admin_bootstrapped".to_owned(), format!("admin:{}", first.id))]);
    let passkeys = app.admin_get(&again, "/admin/api/passkeys").await;
    assert_eq!(passkeys.body.as_array().unwrap().len(), 1);
    assert!(passkeys.body[0]["last_used_at"].is_string(), "{:?}", passkeys.body);
}

/// Attack: session fixation. A session cookie the browser presents at sign-in (planted, or
/// left over) is never adopted: the answer sets a new one, and a live presented session ends.
async fn session_fixation_a_presented_cookie_is_never_adopted(engine: Engine) {
    let app = app(engine).await;
    let (old, mut key) = bootstrapped(&app, "alice").await;
    let reply = sign_in(&app, &mut key, &[(SESSION_COOKIE, &old.cookie)]).await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
    let new = client_of(&reply);
    assert_ne!(new.cookie, old.cookie);
    assert_eq!(session_status(&app, &old.cookie).await, StatusCode::UNAUTHORIZED);
    assert_eq!(session_status(&app, &new.cookie).await, StatusCode::OK);

    let planted = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
    let reply = sign_in(&app, &mut key, &[(SESSION_COOKIE, planted)]).await;
    let fresh = client_of(&reply);
    assert_ne!(fresh.cookie, planted);
    assert_eq!(session_status(&app, planted).await, StatusCode::UNAUTHORIZED);
    assert_eq!(session_status(&app, &fresh.cookie).await, StatusCode::OK);
}

/// The admin cookies: `__Host-` (Secure, Path=/, no Domain), HttpOnly, SameSite=Strict; the
/// session cookie dies with the browser, the login-ceremony cookie after five minutes.
async fn admin_cookie_attributes_are_host_secure_httponly_strict(engine: Engine) {
    let app = app(engine).await;
    let token = token(&app, Duration::minutes(15)).await;
    let mut key = ResidentKeyAuthenticator::new();
    let (options, _) = bootstrap_options(&app, &token, "alice").await;
    let attributes =
        |line: &str| -> Vec<String> { line.split(';').skip(1).map(|a| a.trim().to_owned()).collect() };
    let login = set_cookie(&options, LOGIN_COOKIE).unwrap();
    assert!(LOGIN_COOKIE.starts_with("__Host-") && SESSION_COOKIE.starts_with("__Host-"));
    assert_eq!(attributes(&login), ["Path=/", "Secure", "HttpOnly", "SameSite=Strict", "Max-Age=300"]);
    let login_value = cookie_value(&options, LOGIN_COOKIE).unwrap();
    assert_eq!(login_value.len(), 43, "256 random bits");

    let credential = key.create(&options.body["public_key"]).await;
    let reply = app
        .send(browser_post(
            "/admin/api/bootstrap",
            json!({ "credential": credential }),
            &[(LOGIN_COOKIE, &login_value)],
        ))
        .await;
    assert_eq!(reply.status, StatusCode::CREATED);
    let session = set_cookie(&reply, SESSION_COOKIE).unwrap();
    assert_eq!(attributes(&session), ["Path=/", "Secure", "HttpOnly", "SameSite=Strict"]);
    assert_eq!(cookie_value(&reply, SESSION_COOKIE).unwrap().len(), 43);
    let cleared = set_cookie(&reply, LOGIN_COOKIE).unwrap();
    assert!(cleared.starts_with(&format!("{LOGIN_COOKIE}=;")) && cleared.ends_with("Max-Age=0"), "{cleared}");

    let signed_in = sign_in(&app, &mut key, &[]).await;
    assert_eq!(
        attributes(&set_cookie(&signed_in, SESSION_COOKIE).unwrap()),
        ["Path=/", "Secure", "HttpOnly", "SameSite=Strict"]
    );
    let sign_in_options = app.send(browser_post("/admin/api/sign-in/options", json!({}), &[])).await;
    assert_eq!(
        attributes(&set_cookie(&sign_in_options, LOGIN_COOKIE).unwrap()).last().unwrap(),
        "Max-Age=300"
    );
}

/// Attack: a user's passkey (registered through an app) offered to the admin sign-in.
async fn a_user_passkey_cannot_sign_in_as_admin(engine: Engine) {
    let (app, key) = app_with_user(engine, "alice").await;
    let mut users_key = ResidentKeyAuthenticator::new();
    let begun = app.post_json("/v1/users/alice/passkeys/registrations", &key, json!({})).await;
    assert_eq!(begun.status, StatusCode::CREATED, "{:?}", begun.body);
    let credential = users_key.create(&begun.body["public_key"]).await;
    let id = begun.body["id"].as_str().unwrap();
    let done = app.post_json(&format!("/v1/users/alice/passkeys/registrations/{id}"), &key, credential).await;
    assert_eq!(done.status, StatusCode::CREATED, "{:?}", done.body);
    bootstrapped(&app, "root").await;

    let reply = sign_in(&app, &mut users_key, &[]).await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN, "{:?}", reply.body);
    assert!(reply.body["error"].as_str().unwrap().starts_with("webauthn_"), "{:?}", reply.body);
    assert!(set_cookie(&reply, SESSION_COOKIE).is_none());
}

/// Attack: an admin's passkey answering a user's passkey challenge (a client that drops
/// `allowCredentials` can offer any credential it holds).
async fn an_admin_passkey_cannot_sign_in_as_a_user(engine: Engine) {
    let (app, key) = app_with_user(engine, "alice").await;
    let mut alices = SoftKey::new();
    let begun = app.post_json("/v1/users/alice/passkeys/registrations", &key, json!({})).await;
    let credential = alices.create(&begun.body["public_key"]).await;
    let id = begun.body["id"].as_str().unwrap();
    app.post_json(&format!("/v1/users/alice/passkeys/registrations/{id}"), &key, credential).await;
    let (_, mut admins_key) = bootstrapped(&app, "root").await;

    let body = json!({ "username": "alice", "factor": "passkey", "context": { "ip": "203.0.113.7" } });
    let challenge = app.post_json("/v1/challenges", &key, body).await;
    assert_eq!(challenge.status, StatusCode::CREATED, "{:?}", challenge.body);
    let mut options = challenge.body["webauthn"].clone();
    options.as_object_mut().unwrap().remove("allowCredentials");
    let assertion = admins_key.get(&options).await;
    let id = challenge.body["id"].as_str().unwrap();
    let reply = app.post_json(&format!("/v1/challenges/{id}/webauthn"), &key, assertion).await;
    assert_error(&reply, StatusCode::FORBIDDEN, "webauthn_unknown_credential");
    assert_eq!(app.get(&format!("/v1/challenges/{id}"), Some(&key)).await.body["state"], "pending");
}

/// A credential id is bound once across users and admins: each table's registering transaction
/// refuses an id the other table holds, and a refused bootstrap changes nothing.
async fn credential_bound_in_either_table_is_refused(engine: Engine) {
    let (app, key) = app_with_user(engine, "alice").await;
    let (admin, _) = bootstrapped(&app, "root").await;
    let admins_passkey = app.store.admin_passkeys(admin.id).await.unwrap().remove(0);

    // A user's registration carrying the admin's credential id.
    let begun = app.post_json("/v1/users/alice/passkeys/registrations", &key, json!({})).await;
    let id = RegistrationId(begun.body["id"].as_str().unwrap().parse().unwrap());
    let ceremony = app.store.registration(id).await.unwrap().unwrap();
    let users = PasskeyRecord {
        id: PasskeyId::random(),
        user_id: ceremony.user_id,
        credential_id: admins_passkey.credential_id.clone(),
        name: "copied".into(),
        static_state: admins_passkey.static_state.clone(),
        dynamic_state: admins_passkey.dynamic_state.clone(),
        transports: 0,
        aaguid: admins_passkey.aaguid.clone(),
        backup_eligible: false,
        backed_up: false,
        sign_count: 0,
        created_at: app.clock_now(),
        last_used_at: None,
        revoked_at: None,
    };
    let audit = countersign::audit::AuditEvent::new(
        app.clock_now(),
        countersign::audit::Actor::Cli,
        Action::PasskeyRegistered,
        Subject::User(ceremony.user_id),
    );
    let refused = app
        .store
        .complete_registration(&ceremony, users.clone(), ("passkey_added", "{}".into()), audit)
        .await;
    assert!(matches!(refused, Err(StoreError::Conflict(Conflict::PasskeyCredential))), "{refused:?}");

    // The user's passkey, for real; then an admin passkey carrying its credential id.
    let mut alices = SoftKey::new();
    let begun = app.post_json("/v1/users/alice/passkeys/registrations", &key, json!({})).await;
    let credential = alices.create(&begun.body["public_key"]).await;
    let id = begun.body["id"].as_str().unwrap();
    let stored =
        app.post_json(&format!("/v1/users/alice/passkeys/registrations/{id}"), &key, credential).await;
    assert_eq!(stored.status, StatusCode::CREATED, "{:?}", stored.body);
    let users_credential =
        app.store.passkeys_for_user(ceremony.user_id).await.unwrap().remove(0).credential_id;
    let copied = AdminPasskeyRecord {
        id: AdminPasskeyId::random(),
        credential_id: users_credential.clone(),
        ..admins_passkey.clone()
    };
    let audit = countersign::audit::AuditEvent::new(
        app.clock_now(),
        countersign::audit::Actor::Admin { id: admin.id },
        Action::AdminPasskeyRegistered,
        Subject::Admin(admin.id),
    );
    let refused = app.store.add_admin_passkey(&copied, audit.clone()).await;
    assert!(matches!(refused, Err(StoreError::Conflict(Conflict::PasskeyCredential))), "{refused:?}");

    // A bootstrap whose passkey is bound already: refused, the token unspent, no admin.
    let token = token(&app, Duration::minutes(15)).await;
    let newcomer = AdminRecord {
        id: AdminId::random(),
        name: "mallory".into(),
        role: Role::Admin,
        status: AdminStatus::Active,
        webauthn_handle: ceremony::new_user_handle(),
        created_at: app.clock_now(),
        created_by: "cli".into(),
        removal_due_at: None,
        removed_at: None,
    };
    let copied = AdminPasskeyRecord { admin_id: newcomer.id, ..copied };
    let hash = secret_hash(&token);
    let refused = app.store.spend_bootstrap_token(&hash, app.clock_now(), &newcomer, &copied, audit).await;
    assert!(matches!(refused, Err(StoreError::Conflict(Conflict::PasskeyCredential))), "{refused:?}");
    assert_eq!(app.store.check_bootstrap_token(&hash, app.clock_now()).await.unwrap(), BootstrapSpend::Spent);
    assert!(app.store.admin(newcomer.id).await.unwrap().is_none());
    assert_eq!(app.store.admin_passkeys(admin.id).await.unwrap().len(), 1);
}

/// Attack: a step-up used after its two minutes, or twice; and a step-up assertion replayed.
async fn stale_or_reused_step_up_is_refused(engine: Engine) {
    let app = app(engine).await;
    let (admin, mut key) = bootstrapped(&app, "alice").await;
    let mut spare = ResidentKeyAuthenticator::new();
    let added = add_passkey(&app, &admin, &mut key, &mut spare).await;
    assert_eq!(added.status, StatusCode::CREATED, "{:?}", added.body);
    let spare_id = added.body["id"].as_str().unwrap().to_owned();
    let revoke = format!("/admin/api/passkeys/{spare_id}/revoke");

    // One step-up, one action: the add above spent it.
    assert_error(
        &app.admin_post(&admin, &revoke, json!({})).await,
        StatusCode::FORBIDDEN,
        "step_up_required",
    );
    // Stale: 121 s after the assertion.
    let revoke_spare = format!("revoke_passkey:{spare_id}");
    assert_eq!(step_up(&app, &admin, &mut key, &revoke_spare).await.status, StatusCode::NO_CONTENT);
    app.advance(Duration::seconds(121)).await;
    assert_error(
        &app.admin_post(&admin, &revoke, json!({})).await,
        StatusCode::FORBIDDEN,
        "step_up_required",
    );

    // A step-up assertion replayed: its ceremony is gone.
    let options =
        app.admin_post(&admin, "/admin/api/session/step-up/options", json!({ "action": revoke_spare })).await;
    let assertion = key.get(&options.body["public_key"]).await;
    let body = json!({ "credential": assertion });
    assert_eq!(
        app.admin_post(&admin, "/admin/api/session/step-up", body.clone()).await.status,
        StatusCode::NO_CONTENT
    );
    assert_error(
        &app.admin_post(&admin, "/admin/api/session/step-up", body).await,
        StatusCode::FORBIDDEN,
        "ceremony_invalid",
    );
    assert_eq!(app.admin_post(&admin, &revoke, json!({})).await.status, StatusCode::NO_CONTENT);
    assert_error(
        &app.admin_post(&admin, &revoke, json!({})).await,
        StatusCode::FORBIDDEN,
        "step_up_required",
    );
    let passkeys = app.admin_get(&admin, "/admin/api/passkeys").await.body;
    let active: Vec<(bool, bool)> = passkeys
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["id"] == spare_id.as_str(), p["active"].as_bool().unwrap()))
        .collect();
    assert!(
        active.len() == 2 && active.contains(&(true, false)) && active.contains(&(false, true)),
        "{passkeys}"
    );
}

/// Attack: another admin's passkey answering this admin's step-up.
async fn step_up_with_another_admins_passkey_is_refused(engine: Engine) {
    let app = app(engine).await;
    let (alice, _) = bootstrapped(&app, "alice").await;
    let (_, mut bobs_key) = bootstrapped(&app, "bob").await;
    let reply = step_up(&app, &alice, &mut bobs_key, "add_passkey").await;
    assert_error(&reply, StatusCode::FORBIDDEN, "webauthn_unknown_credential");
    let events = events_about(&app, &Subject::Admin(alice.id), Action::AdminSignInRefused).await;
    assert_eq!(events[0]["reason"], "not_own_passkey");
    assert_eq!(count(&audit_actions(&app).await, "admin.stepped_up"), 0);
}

/// Attack: a sign-in assertion sent from a browser that did not begin the ceremony (no login
/// cookie, or another browser's).
async fn sign_in_ceremony_from_another_browser_is_refused(engine: Engine) {
    let app = app(engine).await;
    let (_, mut key) = bootstrapped(&app, "alice").await;
    let options = app.send(browser_post("/admin/api/sign-in/options", json!({}), &[])).await;
    let login = cookie_value(&options, LOGIN_COOKIE).unwrap();
    let assertion = key.get(&options.body["public_key"]).await;
    let body = json!({ "credential": assertion });

    let bare = app.send(browser_post("/admin/api/sign-in", body.clone(), &[])).await;
    assert_error(&bare, StatusCode::FORBIDDEN, "ceremony_invalid");
    let other = app.send(browser_post("/admin/api/sign-in/options", json!({}), &[])).await;
    let others_login = cookie_value(&other, LOGIN_COOKIE).unwrap();
    let foreign =
        app.send(browser_post("/admin/api/sign-in", body.clone(), &[(LOGIN_COOKIE, &others_login)])).await;
    assert_error(&foreign, StatusCode::FORBIDDEN, "webauthn_challenge_mismatch");
    assert!(set_cookie(&foreign, SESSION_COOKIE).is_none());

    // The browser that began it still can, once.
    let own = app.send(browser_post("/admin/api/sign-in", body.clone(), &[(LOGIN_COOKIE, &login)])).await;
    assert_eq!(own.status, StatusCode::OK, "{:?}", own.body);
    let replay = app.send(browser_post("/admin/api/sign-in", body, &[(LOGIN_COOKIE, &login)])).await;
    assert_error(&replay, StatusCode::FORBIDDEN, "ceremony_invalid");
}

/// Attack: flooding the sign-in with unknown passkeys does not flood the audit trail: one event
/// a minute, carrying the count.
async fn unknown_passkey_sign_ins_are_aggregated(engine: Engine) {
    let app = app(engine).await;
    bootstrapped(&app, "alice").await;
    // A passkey of this relying party that no admin (or user) registered.
    let handle = ceremony::new_user_handle();
    let user = UserEntity { handle: &handle, name: "stranger", display_name: None };
    let begun =
        ceremony::creation_options(app.state.passkeys.settings(), user, Vec::new(), ResidentKey::Required)
            .unwrap();
    let mut stranger = ResidentKeyAuthenticator::new();
    stranger.create(&begun.options).await;

    for _ in 0..5 {
        let reply = sign_in(&app, &mut stranger, &[]).await;
        assert_error(&reply, StatusCode::FORBIDDEN, "webauthn_unknown_credential");
    }
    let events = events_about(&app, &Subject::UnknownAdmins, Action::AdminSignInRefused).await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["refusals"], 1);
    app.advance(Duration::seconds(61)).await;
    sign_in(&app, &mut stranger, &[]).await;
    let events = events_about(&app, &Subject::UnknownAdmins, Action::AdminSignInRefused).await;
    assert_eq!(events.len(), 2, "{events:?}");
    assert_eq!(events[0]["refusals"], 5, "the newest carries the four held back and itself");
}

/// An admin cannot revoke their last active passkey (they could never sign in again).
async fn last_own_passkey_cannot_be_revoked(engine: Engine) {
    let app = app(engine).await;
    let (admin, mut key) = bootstrapped(&app, "alice").await;
    let first = app.admin_get(&admin, "/admin/api/passkeys").await.body[0]["id"].as_str().unwrap().to_owned();
    assert_eq!(
        step_up(&app, &admin, &mut key, &format!("revoke_passkey:{first}")).await.status,
        StatusCode::NO_CONTENT
    );
    let reply = app.admin_post(&admin, &format!("/admin/api/passkeys/{first}/revoke"), json!({})).await;
    assert_error(&reply, StatusCode::CONFLICT, "last_admin_passkey");

    let mut spare = ResidentKeyAuthenticator::new();
    let added = add_passkey(&app, &admin, &mut key, &mut spare).await;
    let second = added.body["id"].as_str().unwrap().to_owned();
    assert_eq!(
        step_up(&app, &admin, &mut spare, &format!("revoke_passkey:{first}")).await.status,
        StatusCode::NO_CONTENT
    );
    let reply = app.admin_post(&admin, &format!("/admin/api/passkeys/{first}/revoke"), json!({})).await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT, "{:?}", reply.body);
    assert_eq!(
        step_up(&app, &admin, &mut spare, &format!("revoke_passkey:{second}")).await.status,
        StatusCode::NO_CONTENT
    );
    let reply = app.admin_post(&admin, &format!("/admin/api/passkeys/{second}/revoke"), json!({})).await;
    assert_error(&reply, StatusCode::CONFLICT, "last_admin_passkey");
    // The revoked passkey no longer signs in; the spare does.
    assert_eq!(sign_in(&app, &mut key, &[]).await.status, StatusCode::FORBIDDEN);
    assert_eq!(sign_in(&app, &mut spare, &[]).await.status, StatusCode::OK);
    let events = audit_actions(&app).await;
    assert_eq!(count(&events, "admin.passkey_revoked"), 1);
    assert_eq!(count(&events, "admin.passkey_registered"), 1);
}

/// An invitation registers the invited admin's first passkey once: a second use, or a second
/// ceremony begun before the first finished, is refused.
async fn an_invited_admin_registers_once(engine: Engine) {
    let app = app(engine).await;
    // What the four-eyes applier creates: an invited admin and an invitation.
    let invited = AdminRecord {
        id: AdminId::random(),
        name: "carol".into(),
        role: Role::Helpdesk,
        status: AdminStatus::Invited,
        webauthn_handle: ceremony::new_user_handle(),
        created_at: app.clock_now(),
        created_by: "admin:test".into(),
        removal_due_at: None,
        removed_at: None,
    };
    let audit = countersign::audit::AuditEvent::new(
        app.clock_now(),
        countersign::audit::Actor::Cli,
        Action::AdminInvited,
        Subject::Admin(invited.id),
    );
    app.store.create_admin(&invited, audit).await.unwrap();
    let (token, invitation) = new_invitation(invited.id, app.clock_now()).unwrap();
    let token = token.expose_secret().to_owned();
    app.store.insert_invitation(&invitation).await.unwrap();

    let invite_options = json!({ "token": token });
    let open = || app.send(browser_post("/admin/api/invite/options", invite_options.clone(), &[]));
    let first = open().await;
    let racing = open().await;
    assert_eq!((first.status, racing.status), (StatusCode::OK, StatusCode::OK), "{:?}", first.body);
    let mut key = ResidentKeyAuthenticator::new();
    let credential = key.create(&first.body["public_key"]).await;
    let login = cookie_value(&first, LOGIN_COOKIE).unwrap();
    let reply = app
        .send(browser_post(
            "/admin/api/invite",
            json!({ "credential": credential }),
            &[(LOGIN_COOKIE, &login)],
        ))
        .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{:?}", reply.body);
    let carol = client_of(&reply);
    assert_eq!(carol.id, invited.id);
    assert_eq!(app.admin_get(&carol, "/admin/api/session").await.body["role"], "helpdesk");
    assert_eq!(app.store.admin(invited.id).await.unwrap().unwrap().status, AdminStatus::Active);

    let mut other = ResidentKeyAuthenticator::new();
    let credential = other.create(&racing.body["public_key"]).await;
    let login = cookie_value(&racing, LOGIN_COOKIE).unwrap();
    let raced = app
        .send(browser_post(
            "/admin/api/invite",
            json!({ "credential": credential }),
            &[(LOGIN_COOKIE, &login)],
        ))
        .await;
    assert_error(&raced, StatusCode::GONE, "invitation_used");
    assert_error(&open().await, StatusCode::GONE, "invitation_used");
    assert_eq!(app.store.admin_passkeys(invited.id).await.unwrap().len(), 1);
    let unknown = app.send(browser_post("/admin/api/invite/options", json!({ "token": "nope" }), &[])).await;
    assert_error(&unknown, StatusCode::NOT_FOUND, "invitation_invalid");
    // The invited admin signs in with the passkey they registered.
    assert_eq!(sign_in(&app, &mut key, &[]).await.status, StatusCode::OK);
}

/// Attack: an invitation link leaks (or the wrong person was invited) before it is redeemed.
/// Removing the invited admin (four eyes) withdraws it at once, not after the 24-hour removal
/// delay: the link is unknown from then on and the invitee never becomes an admin.
async fn removing_an_invited_admin_withdraws_the_invitation_at_once(engine: Engine) {
    let app = app(engine).await;
    let alice = app.signed_in_admin("alice", Role::Admin).await;
    let bob = app.signed_in_admin("bob", Role::Admin).await;
    let invite = json!({ "name": "mallory", "role": "admin" });
    let asked = app.admin_post(&alice, "/admin/api/admins/invite", invite).await;
    let id = asked.body["id"].as_str().unwrap().to_owned();
    app.step_up(&bob, &id).await;
    let approved = app.admin_post(&bob, &format!("/admin/api/requests/{id}/approve"), json!({})).await;
    assert_eq!(approved.status, StatusCode::OK, "{}", approved.body);
    let token = approved.body["invitation"]["token"].as_str().unwrap().to_owned();
    let invited = approved.body["invitation"]["admin_id"].as_str().unwrap().to_owned();
    let options = || app.send(browser_post("/admin/api/invite/options", json!({ "token": token }), &[]));
    assert_eq!(options().await.status, StatusCode::OK, "the link works until withdrawn");

    let removal = app.admin_post(&bob, &format!("/admin/api/admins/{invited}/remove"), json!({})).await;
    assert_eq!(removal.status, StatusCode::ACCEPTED, "{}", removal.body);
    let id = removal.body["id"].as_str().unwrap().to_owned();
    assert_eq!(options().await.status, StatusCode::OK, "nothing changes before a second admin approves");
    app.step_up(&alice, &id).await;
    let approved = app.admin_post(&alice, &format!("/admin/api/requests/{id}/approve"), json!({})).await;
    assert_eq!(approved.status, StatusCode::OK, "{}", approved.body);
    assert_eq!(approved.body["request"]["result"]["status"], "removed", "{}", approved.body);

    assert_error(&options().await, StatusCode::NOT_FOUND, "invitation_invalid");
    let admins = app.admin_get(&alice, "/admin/api/admins").await.body;
    let listed = admins.as_array().unwrap().iter().find(|a| a["name"] == "mallory").unwrap().clone();
    assert_eq!(listed["status"], "removed", "{listed}");
    let events = audit_actions(&app).await;
    assert_eq!(count(&events, "admin.invitation_withdrawn"), 1);
    assert_eq!(count(&events, "admin.removal_scheduled"), 0, "no delay for an invitation");
}

/// The sign-in pages: served without a session, under the strict CSP (their one script is ours,
/// nothing inline), never cached or framed, each naming its ceremony and starting `ready`.
async fn admin_sign_in_pages_are_served_under_the_strict_policy(engine: Engine) {
    let app = app(engine).await;
    for (path, ceremony) in [
        ("/admin/login", "sign-in"),
        ("/admin/bootstrap", "bootstrap"),
        ("/admin/invite?token=abc", "invite"),
    ] {
        let reply = app.send(Request::get(path).body(Body::empty()).unwrap()).await;
        assert_eq!(reply.status, StatusCode::OK, "{path}");
        let page = reply.body.as_str().unwrap();
        assert!(page.contains(&format!(r#"<main data-state="ready" data-ceremony="{ceremony}">"#)), "{page}");
        assert!(page.contains(r#"<script src="/assets/admin-auth.js" defer></script>"#), "{page}");
        assert_eq!(page.matches("<script").count(), 1, "no inline script: {page}");
        assert!(!page.contains("style="), "no inline style: {page}");
        let csp = reply.headers[header::CONTENT_SECURITY_POLICY].to_str().unwrap();
        assert!(csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"), "{csp}");
        assert_eq!(reply.headers[header::CACHE_CONTROL], "no-store");
        assert!(!page.contains("abc"), "the invitation token stays in the URL, not the page");
    }
    let script = app.send(Request::get("/assets/admin-auth.js").body(Body::empty()).unwrap()).await;
    assert_eq!(script.status, StatusCode::OK);
    assert!(script.headers[header::CONTENT_TYPE].to_str().unwrap().starts_with("text/javascript"));
    assert!(script.body.as_str().unwrap().contains(r#"credentials: "same-origin""#));
}

/// The whole way in for a new admin, with real passkeys throughout: one admin asks, the same
/// admin cannot approve, a second admin approves with a fresh passkey and alone sees the
/// invitation once, and the invited admin registers their own passkey with it.
async fn a_new_admin_joins_only_through_two_admins_and_their_invitation(engine: Engine) {
    let app = app(engine).await;
    let (alice, mut alice_key) = bootstrapped(&app, "alice").await;
    let (bob, mut bob_key) = bootstrapped(&app, "bob").await;
    let asked = app
        .admin_post(&alice, "/admin/api/admins/invite", json!({ "name": "carol", "role": "helpdesk" }))
        .await;
    assert_eq!(asked.status, StatusCode::ACCEPTED, "{:?}", asked.body);
    let approve = format!("/admin/api/requests/{}/approve", asked.body["id"].as_str().unwrap());
    assert_eq!(
        step_up(
            &app,
            &alice,
            &mut alice_key,
            &format!("approve_request:{}", asked.body["id"].as_str().unwrap())
        )
        .await
        .status,
        StatusCode::NO_CONTENT
    );
    assert_error(
        &app.admin_post(&alice, &approve, json!({})).await,
        StatusCode::FORBIDDEN,
        "self_approval_forbidden",
    );
    assert_eq!(
        step_up(&app, &bob, &mut bob_key, &format!("approve_request:{}", asked.body["id"].as_str().unwrap()))
            .await
            .status,
        StatusCode::NO_CONTENT
    );
    let approved = app.admin_post(&bob, &approve, json!({})).await;
    assert_eq!(approved.status, StatusCode::OK, "{:?}", approved.body);
    let token = approved.body["invitation"]["token"].as_str().unwrap().to_owned();
    let shown_again =
        app.admin_get(&bob, &format!("/admin/api/requests/{}", asked.body["id"].as_str().unwrap())).await;
    assert!(!shown_again.body.to_string().contains(&token), "the invitation is shown once");

    let options = app.send(browser_post("/admin/api/invite/options", json!({ "token": token }), &[])).await;
    assert_eq!(options.status, StatusCode::OK, "{:?}", options.body);
    let mut carol_key = ResidentKeyAuthenticator::new();
    let credential = carol_key.create(&options.body["public_key"]).await;
    let login = cookie_value(&options, LOGIN_COOKIE).unwrap();
    let joined = app
        .send(browser_post(
            "/admin/api/invite",
            json!({ "credential": credential }),
            &[(LOGIN_COOKIE, &login)],
        ))
        .await;
    assert_eq!(joined.status, StatusCode::CREATED, "{:?}", joined.body);
    let carol = client_of(&joined);
    assert_eq!(app.admin_get(&carol, "/admin/api/session").await.body["role"], "helpdesk");
    assert_eq!(sign_in(&app, &mut carol_key, &[]).await.status, StatusCode::OK, "her passkey signs her in");
}

/// Attack: someone with a stolen admin session waits for the admin's own step-up (taken to
/// approve one request) and spends it first: on registering their own passkey (a lasting
/// takeover), or on approving another request. A step-up is spent only by the action it was
/// taken for.
async fn step_up_taken_for_one_approval_cannot_add_a_passkey_or_approve_another_request(engine: Engine) {
    let app = app(engine).await;
    let (alice, _) = bootstrapped(&app, "alice").await;
    let (bob, mut bob_key) = bootstrapped(&app, "bob").await;
    let meant = app
        .admin_post(&alice, "/admin/api/admins/invite", json!({ "name": "carol", "role": "auditor" }))
        .await;
    let other = app
        .admin_post(&alice, "/admin/api/admins/invite", json!({ "name": "mallory", "role": "admin" }))
        .await;
    let (meant, other) =
        (meant.body["id"].as_str().unwrap().to_owned(), other.body["id"].as_str().unwrap().to_owned());
    let stepped = step_up(&app, &bob, &mut bob_key, &format!("approve_request:{meant}")).await;
    assert_eq!(stepped.status, StatusCode::NO_CONTENT);

    // The thief, holding bob's cookie and CSRF token, with a passkey of their own.
    let mut thief_key = ResidentKeyAuthenticator::new();
    let options = app.admin_post(&bob, "/admin/api/passkeys/options", json!({ "name": "backup" })).await;
    assert_eq!(options.status, StatusCode::OK, "{:?}", options.body);
    let credential = thief_key.create(&options.body["public_key"]).await;
    let added = app.admin_post(&bob, "/admin/api/passkeys", json!({ "credential": credential })).await;
    assert_error(&added, StatusCode::FORBIDDEN, "step_up_required");
    let approved_other =
        app.admin_post(&bob, &format!("/admin/api/requests/{other}/approve"), json!({})).await;
    assert_error(&approved_other, StatusCode::FORBIDDEN, "step_up_required");
    // Bob's own approval still finds his step-up.
    let approved = app.admin_post(&bob, &format!("/admin/api/requests/{meant}/approve"), json!({})).await;
    assert_eq!(approved.status, StatusCode::OK, "{:?}", approved.body);
    assert_eq!(app.admin_get(&bob, "/admin/api/passkeys").await.body.as_array().unwrap().len(), 1);
    let unnamed = app
        .admin_post(&bob, "/admin/api/session/step-up/options", json!({ "action": "Approve everything" }))
        .await;
    assert_error(&unnamed, StatusCode::UNPROCESSABLE_ENTITY, "invalid_request");
}

on_both_engines!(
    step_up_taken_for_one_approval_cannot_add_a_passkey_or_approve_another_request,
    a_new_admin_joins_only_through_two_admins_and_their_invitation,
    admin_sign_in_pages_are_served_under_the_strict_policy,
    bootstrap_token_reuse_is_refused,
    bootstrap_token_expired_is_refused,
    bootstrap_closed_with_two_admins,
    bootstrap_then_discoverable_sign_in_mints_a_fresh_session,
    session_fixation_a_presented_cookie_is_never_adopted,
    admin_cookie_attributes_are_host_secure_httponly_strict,
    a_user_passkey_cannot_sign_in_as_admin,
    an_admin_passkey_cannot_sign_in_as_a_user,
    credential_bound_in_either_table_is_refused,
    stale_or_reused_step_up_is_refused,
    step_up_with_another_admins_passkey_is_refused,
    sign_in_ceremony_from_another_browser_is_refused,
    unknown_passkey_sign_ins_are_aggregated,
    last_own_passkey_cannot_be_revoked,
    an_invited_admin_registers_once,
    removing_an_invited_admin_withdraws_the_invitation_at_once,
);
