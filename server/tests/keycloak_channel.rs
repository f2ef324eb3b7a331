//! Keycloak's CIBA HTTP authentication channel (`POST /keycloak/ciba`), both engines, in
//! process: a fake realm signs its delegation tokens with its own key, published on a loopback
//! JWKS; every forgery and bad body Keycloak (or someone who copied its request) could send is
//! a named test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[macro_use]
mod common;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use common::{Reply, TestApp, assert_error, audit_actions, enrolled_device, signed_get};
use countersign::api_keys::Scopes;
use countersign::challenges::service::ChallengeSettings;
use countersign::keycloak::config::{KeycloakConfig, RealmConfig};
use countersign::store::{CallbackKind, RequestOutcome};
use countersign_e2e::Engine;
use countersign_e2e::device::TestDevice;
use countersign_e2e::jose::{JwksServer, TestKey, forge, hs256, jwks_json};
use countersign_mobile_protocol::{Decision, PendingChallenges, PushRegistration};
use serde_json::{Value, json};

const ISSUER: &str = "https://kc.example.com/realms/acme";
const CALLBACK: &str = "https://kc.example.com/realms/acme/protocol/openid-connect/ext/ciba/auth/callback";
const CLIENT: &str = "kiosk";
/// Keycloak's user id of alice (the token's `sub`).
const ALICE_SUB: &str = "4a1f6c2e-7d3b-4e55-9a0c-1b2d3e4f5a6b";
const BOB_SUB: &str = "0b9e8d7c-6b5a-4f3e-8d2c-1a0b9c8d7e6f";
const NUMBER: &str = "482913";

struct Realm {
    app: TestApp,
    key: TestKey,
    jwks: JwksServer,
    alice: TestDevice,
    bob: TestDevice,
}

/// Alice and bob with a phone each, carol without one; a realm "Acme" that lets client
/// `kiosk` ask, signing RS256; six-digit numbers (so a number in a payload cannot be chance).
async fn realm(engine: Engine) -> Realm {
    realm_with(engine, ChallengeSettings { number_digits: 6, ..ChallengeSettings::default() }).await
}

async fn realm_with(engine: Engine, challenges: ChallengeSettings) -> Realm {
    let key = TestKey::rs256("kc-1");
    let jwks = JwksServer::start(countersign_e2e::jose::keycloak_jwks(&key)).await;
    let config = KeycloakConfig {
        realms: vec![RealmConfig {
            issuer: ISSUER.into(),
            name: "Acme".into(),
            jwks_uri: Some(jwks.url()),
            callback_url: None,
            clients: Some(vec![CLIENT.into()]),
        }],
    };
    let app = TestApp::with_keycloak(engine, challenges, config.resolve().unwrap()).await;
    let admin = app.key("portal", "users:write challenges:write").await;
    let alice = enrolled_device(&app, &admin, "alice", PushRegistration::None).await;
    let bob = enrolled_device(&app, &admin, "bob", PushRegistration::None).await;
    let carol = app.post_json("/v1/users", &admin, json!({ "username": "carol" })).await;
    assert_eq!(carol.status, StatusCode::CREATED);
    Realm { app, key, jwks, alice, bob }
}

impl Realm {
    /// The claims Keycloak's `createBearerToken` writes (no `iat`), for `sub`, with a fresh `jti`.
    fn claims(&self, sub: &str) -> Value {
        let now = self.app.clock_now().unix_timestamp();
        json!({
            "typ": "Bearer", "iss": ISSUER, "aud": ISSUER, "jti": uuid::Uuid::new_v4().to_string(),
            "azp": CLIENT, "sub": sub, "exp": now + 120,
        })
    }

    fn token(&self, sub: &str) -> String {
        self.key.sign(&self.claims(sub))
    }

    fn token_with(&self, sub: &str, change: impl FnOnce(&mut Value)) -> String {
        let mut claims = self.claims(sub);
        change(&mut claims);
        self.key.sign(&claims)
    }

    async fn post(&self, token: Option<&str>, body: impl Into<Body>) -> Reply {
        let mut request = Request::post("/keycloak/ciba").header(header::CONTENT_TYPE, "application/json");
        if let Some(token) = token {
            request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        self.app.send(request.body(body.into()).unwrap()).await
    }

    /// Keycloak's delegation request for `login_hint` with the number as binding message.
    async fn ask(&self, token: &str, login_hint: &str) -> Reply {
        self.post(Some(token), body(login_hint, Some(NUMBER)).to_string()).await
    }

    async fn pending(&self, phone: &TestDevice) -> PendingChallenges {
        serde_json::from_value(signed_get(&self.app, phone, "/device/v1/challenges").await.body).unwrap()
    }

    /// The `keycloak.request_refused` events so far, by reason.
    async fn refusals(&self) -> Vec<String> {
        audit_actions(&self.app)
            .await
            .into_iter()
            .filter(|(action, _)| action == "keycloak.request_refused")
            .map(|(_, details)| details["reason"].as_str().unwrap().to_owned())
            .collect()
    }
}

fn body(login_hint: &str, binding_message: Option<&str>) -> Value {
    json!({
        "login_hint": login_hint, "scope": "openid profile", "is_consent_required": false,
        "binding_message": binding_message, "acr_values": null,
    })
}

/// A refusal: the status and code, nobody prompted.
async fn assert_refused(realm: &Realm, reply: &Reply, status: StatusCode, code: &str) {
    assert_error(reply, status, code);
    assert!(realm.pending(&realm.alice).await.challenges.is_empty(), "nobody is prompted");
}

async fn a_realm_request_prompts_the_user_with_the_clients_number(engine: Engine) {
    let mut realm = realm(engine).await;
    let token = realm.token(ALICE_SUB);
    let reply = realm.ask(&token, "alice").await;
    assert_eq!(reply.status, StatusCode::CREATED, "{:?}", reply.body);
    assert_eq!(reply.body, Value::String(String::new()), "Keycloak gets 201 with no body");

    // The phone sees the realm as the app, and never the number.
    let pending = realm.pending(&realm.alice).await;
    assert_eq!(pending.challenges.len(), 1);
    let text = serde_json::to_string(&pending).unwrap();
    assert!(!text.contains(NUMBER), "the number is not in the device's pending list: {text}");
    let details = realm.alice.verify_details(&pending.challenges[0]).clone();
    assert_eq!(details.app_name, "Acme");
    let id = details.challenge_id.as_str().to_owned();

    // The request is recorded by jti, charged to the realm's own scope-less app, and owes one
    // callback to the realm, due once the challenge is decided.
    let jti = countersign::oidc::jose::unverified_claim(&token, "jti").unwrap();
    let request = realm.app.store.keycloak_request(ISSUER, &jti).await.unwrap().unwrap();
    assert_eq!(request.outcome, RequestOutcome::Prompted);
    assert_eq!(request.challenge_id.unwrap().to_string(), id);
    assert_eq!((request.subject.as_str(), request.client_id.as_str()), (ALICE_SUB, CLIENT));
    let challenge = realm.app.store.challenge_by_id(request.challenge_id.unwrap()).await.unwrap().unwrap();
    assert!(challenge.expires_at <= realm.app.clock_now() + time::Duration::seconds(120));
    let app = realm.app.store.app_by_name("keycloak.Acme").await.unwrap().unwrap();
    assert_eq!((app.id, app.scopes), (challenge.app_id, Scopes::default()));
    let callbacks = realm.app.store.callbacks_for_challenge(challenge.id).await.unwrap();
    assert_eq!(callbacks.len(), 1);
    assert_eq!((callbacks[0].kind, callbacks[0].state.as_str()), (CallbackKind::KeycloakOutcome, "queued"));
    let due = realm.app.store.claim_callbacks(realm.app.clock_now(), time::Duration::seconds(1), 10).await;
    assert!(due.unwrap().is_empty(), "not due while the user has not answered");

    // The number the user types is the binding message.
    let response = realm.alice.answer(&details, Decision::Approve, NUMBER);
    let path = format!("/device/v1/challenges/{id}/response");
    let answered = realm.app.device_post(&path, &serde_json::to_vec(&response).unwrap()).await;
    assert_eq!(answered.body["outcome"], "approved", "{:?}", answered.body);
    let due = realm.app.store.claim_callbacks(realm.app.clock_now(), time::Duration::seconds(1), 10).await;
    let due = due.unwrap();
    assert_eq!(due.len(), 1);
    assert_eq!((due[0].job.url.as_str(), due[0].job.expires_at), (CALLBACK, request.expires_at));

    let accepted = audit_actions(&realm.app).await;
    let (_, details) = accepted.iter().find(|(action, _)| action == "keycloak.request_accepted").unwrap();
    assert_eq!(details["challenge_id"], json!(id));
    assert!(!details.to_string().contains(NUMBER), "the audit trail never holds the number");
}

/// Attack: a token signed by another key under the realm's `kid`.
async fn kc_jwt_signed_with_another_key_is_refused(engine: Engine) {
    let realm = realm(engine).await;
    let forged = TestKey::rs256("kc-1").sign(&realm.claims(ALICE_SUB));
    let reply = realm.ask(&forged, "alice").await;
    assert_refused(&realm, &reply, StatusCode::UNAUTHORIZED, "keycloak_token_invalid").await;
    assert_eq!(realm.refusals().await, ["bad_signature"]);
}

/// Attack: `alg: none` with no signature.
async fn kc_jwt_alg_none_is_refused(engine: Engine) {
    let realm = realm(engine).await;
    let forged = forge(&json!({ "alg": "none", "typ": "JWT", "kid": "kc-1" }), &realm.claims(ALICE_SUB), b"");
    let reply = realm.ask(&forged, "alice").await;
    assert_refused(&realm, &reply, StatusCode::UNAUTHORIZED, "keycloak_token_invalid").await;
    assert_eq!(realm.refusals().await, ["algorithm_not_allowed"]);
}

/// Attack: algorithm confusion, HS256 keyed with the realm's public key (which anyone can
/// fetch from its JWKS).
async fn kc_jwt_hs256_keyed_with_the_public_key_is_refused(engine: Engine) {
    let realm = realm(engine).await;
    let header = json!({ "alg": "HS256", "typ": "JWT", "kid": "kc-1" });
    for secret in [jwks_json(&[&realm.key]), realm.key.public_jwk()["n"].as_str().unwrap().to_owned()] {
        let forged = hs256(&header, &realm.claims(ALICE_SUB), secret.as_bytes());
        let reply = realm.ask(&forged, "alice").await;
        assert_refused(&realm, &reply, StatusCode::UNAUTHORIZED, "keycloak_token_invalid").await;
    }
    assert_eq!(realm.refusals().await, ["algorithm_not_allowed", "algorithm_not_allowed"]);
}

/// Attack: a request captured earlier, sent again after its token expired.
async fn kc_jwt_expired_is_refused(engine: Engine) {
    let realm = realm(engine).await;
    let token = realm.token(ALICE_SUB);
    realm.app.advance(time::Duration::seconds(131)).await;
    let reply = realm.ask(&token, "alice").await;
    assert_refused(&realm, &reply, StatusCode::UNAUTHORIZED, "keycloak_token_invalid").await;
    // Without `iat` (Keycloak sends none) the lifetime counts from now.
    let now = realm.app.clock_now().unix_timestamp();
    let long = realm.token_with(ALICE_SUB, |c| c["exp"] = json!(now + 3600));
    let reply = realm.ask(&long, "alice").await;
    assert_refused(&realm, &reply, StatusCode::UNAUTHORIZED, "keycloak_token_invalid").await;
    assert_eq!(realm.refusals().await, ["expired", "lifetime_too_long"]);
}

/// Attack: a token of the realm meant for someone else (an access token for a client).
async fn kc_jwt_for_another_audience_is_refused(engine: Engine) {
    let realm = realm(engine).await;
    let token = realm.token_with(ALICE_SUB, |c| c["aud"] = json!("account"));
    let reply = realm.ask(&token, "alice").await;
    assert_refused(&realm, &reply, StatusCode::UNAUTHORIZED, "keycloak_token_invalid").await;
    assert_eq!(realm.refusals().await, ["wrong_audience"]);
}

/// Attack: a token from a realm nobody configured (another realm of the same Keycloak,
/// or an issuer that only looks alike).
async fn kc_jwt_from_another_issuer_is_refused(engine: Engine) {
    let realm = realm(engine).await;
    for issuer in ["https://kc.example.com/realms/other", "https://kc.example.com/realms/acme/"] {
        let token = realm.token_with(ALICE_SUB, |c| {
            c["iss"] = json!(issuer);
            c["aud"] = json!(issuer);
        });
        let reply = realm.ask(&token, "alice").await;
        assert_refused(&realm, &reply, StatusCode::UNAUTHORIZED, "keycloak_token_invalid").await;
    }
    assert_eq!(realm.refusals().await, ["unknown_realm", "unknown_realm"]);
}

/// Attack: another kind of token of the realm (an ID token, a refresh token) as the bearer.
async fn kc_jwt_whose_typ_is_not_bearer_is_refused(engine: Engine) {
    let realm = realm(engine).await;
    for typ in [json!("ID"), json!("Refresh"), Value::Null] {
        let token = realm.token_with(ALICE_SUB, |c| c["typ"] = typ);
        let reply = realm.ask(&token, "alice").await;
        assert_refused(&realm, &reply, StatusCode::UNAUTHORIZED, "keycloak_token_invalid").await;
    }
    assert_eq!(realm.refusals().await, ["not_bearer", "not_bearer", "not_bearer"]);
}

/// Attack: a `kid` the realm never published: the key set is fetched again (once, rate
/// limited) and the token refused.
async fn kc_jwt_with_an_unknown_kid_is_refused(engine: Engine) {
    let realm = realm(engine).await;
    let good = realm.token(ALICE_SUB);
    assert_eq!(realm.ask(&good, "alice").await.status, StatusCode::CREATED);
    let fetched = realm.jwks.hits();
    let stranger = TestKey::rs256("kc-stranger");
    for _ in 0..3 {
        let reply = realm.ask(&stranger.sign(&realm.claims(ALICE_SUB)), "alice").await;
        assert_error(&reply, StatusCode::UNAUTHORIZED, "keycloak_token_invalid");
    }
    assert!(realm.jwks.hits() <= fetched + 1, "refetched at most once: {}", realm.jwks.hits());
    assert_eq!(realm.refusals().await, ["unknown_key", "unknown_key", "unknown_key"]);
}

/// Attack: a client of the realm the operator did not allow starts a sign-in.
async fn kc_jwt_from_a_client_not_allowed_is_refused(engine: Engine) {
    let realm = realm(engine).await;
    let token = realm.token_with(ALICE_SUB, |c| c["azp"] = json!("intruder"));
    let reply = realm.ask(&token, "alice").await;
    assert_refused(&realm, &reply, StatusCode::UNAUTHORIZED, "keycloak_token_invalid").await;
    let anonymous = realm.token_with(ALICE_SUB, |c| {
        c.as_object_mut().unwrap().remove("azp");
    });
    let reply = realm.ask(&anonymous, "alice").await;
    assert_refused(&realm, &reply, StatusCode::UNAUTHORIZED, "keycloak_token_invalid").await;
    let reply = realm.post(None, body("alice", Some(NUMBER)).to_string()).await;
    assert_refused(&realm, &reply, StatusCode::UNAUTHORIZED, "keycloak_token_invalid").await;
    assert_eq!(realm.refusals().await, ["client_not_allowed", "missing_claim", "no_token"]);
}

/// Attack: whoever saw one delegation request sends its token again with their own
/// `login_hint`, to approve on their own phone a sign-in Keycloak issues for alice.
async fn kc_replayed_jti_with_another_login_hint_is_refused(engine: Engine) {
    let realm = realm(engine).await;
    let token = realm.token(ALICE_SUB);
    assert_eq!(realm.ask(&token, "alice").await.status, StatusCode::CREATED);
    let reply = realm.post(Some(&token), body("bob", Some("730165")).to_string()).await;
    assert_error(&reply, StatusCode::CONFLICT, "keycloak_token_replayed");
    assert!(realm.pending(&realm.bob).await.challenges.is_empty(), "bob's phone is not prompted");
    assert_eq!(realm.refusals().await, ["jti_replayed"]);
}

/// Attack: the same, with a token of its own (a fresh request of alice's that the attacker
/// intercepts): alice's Keycloak user is pinned to alice on first use.
async fn kc_subject_pinned_to_another_user_is_refused(engine: Engine) {
    let realm = realm(engine).await;
    assert_eq!(realm.ask(&realm.token(ALICE_SUB), "alice").await.status, StatusCode::CREATED);
    let reply = realm.post(Some(&realm.token(ALICE_SUB)), body("bob", Some("730165")).to_string()).await;
    assert_error(&reply, StatusCode::FORBIDDEN, "keycloak_subject_mismatch");
    assert!(realm.pending(&realm.bob).await.challenges.is_empty(), "bob's phone is not prompted");
    let swapped_to_nobody =
        realm.post(Some(&realm.token(ALICE_SUB)), body("mallory", Some("730165")).to_string()).await;
    assert_error(&swapped_to_nobody, StatusCode::FORBIDDEN, "keycloak_subject_mismatch");
    // Bob's own Keycloak user still reaches bob.
    assert_eq!(realm.ask(&realm.token(BOB_SUB), "bob").await.status, StatusCode::CREATED);
    let pinned = realm.app.store.keycloak_subject(ISSUER, ALICE_SUB).await.unwrap();
    let alice = realm.app.store.user_by_username("alice").await.unwrap().unwrap();
    assert_eq!(pinned, Some(alice.id));
    assert_eq!(realm.refusals().await, ["subject_pinned_to_other_user", "subject_pinned_to_other_user"]);
}

/// Attack: a client that shows no number (or a word) would get a plain approve/deny prompt
/// if one were offered; none is: the request fails closed, and nobody is prompted.
async fn kc_binding_message_that_is_not_the_number_is_refused(engine: Engine) {
    let realm = realm(engine).await;
    let too_long = "4".repeat(51);
    let cases = [
        (None, "binding_message_missing"),
        (Some("48 291"), "binding_message_charset"),
        (Some("482<91"), "binding_message_charset"),
        (Some("\u{202e}482913"), "binding_message_charset"),
        (Some(too_long.as_str()), "binding_message_charset"),
        (Some("Approve-payment"), "binding_message_not_the_number"),
        (Some("482"), "binding_message_not_the_number"),
        (Some("4829130"), "binding_message_not_the_number"),
        (Some("48291a"), "binding_message_not_the_number"),
    ];
    for (message, _) in &cases {
        let reply = realm.post(Some(&realm.token(ALICE_SUB)), body("alice", *message).to_string()).await;
        assert_refused(&realm, &reply, StatusCode::BAD_REQUEST, "invalid_binding_message").await;
    }
    let reasons: Vec<&str> = cases.iter().map(|(_, reason)| *reason).collect();
    assert_eq!(realm.refusals().await, reasons);
}

/// Without a configured realm the channel is not served: junk posted at it is a 404, and
/// writes nothing to the audit trail.
async fn kc_channel_is_not_served_without_a_realm(engine: Engine) {
    let app = TestApp::build(engine, countersign::app::HttpLimits::default()).await;
    let before = common::audit_len(&app).await;
    let request = Request::post("/keycloak/ciba")
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::AUTHORIZATION, "Bearer x.y.z")
        .body(Body::from("{}"))
        .unwrap();
    assert_eq!(app.send(request).await.status, StatusCode::NOT_FOUND);
    assert_eq!(common::audit_len(&app).await, before);
}

/// Attack: a client pins one number so the user learns to type it blind; a number the user
/// saw lately prompts nobody, and is answered like an unknown user.
async fn kc_number_the_user_saw_lately_prompts_nobody_and_says_nothing(engine: Engine) {
    let realm = realm(engine).await;
    assert_eq!(realm.ask(&realm.token(ALICE_SUB), "alice").await.status, StatusCode::CREATED);
    // Only a user with a device has recent numbers: a 400 would say alice exists. The same
    // 201 as for nobody, and the outcome CANCELLED.
    let reply = realm.ask(&realm.token(ALICE_SUB), "alice").await;
    assert_eq!(reply.status, StatusCode::CREATED, "{:?}", reply.body);
    assert_eq!(realm.refusals().await, ["number_recently_used"]);
}

/// Attack: a body too large to be Keycloak's, and bodies of the wrong shape.
async fn kc_oversized_or_malformed_body_is_refused(engine: Engine) {
    let realm = realm(engine).await;
    let mut big = body("alice", Some(NUMBER));
    big["padding"] = json!("x".repeat(17 * 1024));
    let reply = realm.post(Some(&realm.token(ALICE_SUB)), big.to_string()).await;
    assert_refused(&realm, &reply, StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large").await;
    for bad in [
        json!({ "login_hint": "alice", "scope": "openid", "binding_message": NUMBER }),
        json!({ "login_hint": 7, "scope": "openid", "is_consent_required": false, "binding_message": NUMBER }),
        json!(["alice"]),
    ] {
        let reply = realm.post(Some(&realm.token(ALICE_SUB)), bad.to_string()).await;
        assert_refused(&realm, &reply, StatusCode::BAD_REQUEST, "keycloak_request_invalid").await;
    }
    let reply = realm.post(Some(&realm.token(ALICE_SUB)), "not json").await;
    assert_refused(&realm, &reply, StatusCode::BAD_REQUEST, "keycloak_request_invalid").await;
}

/// Keycloak spreads the client's unrecognised parameters at the top level: ignored.
async fn kc_unknown_body_members_are_ignored(engine: Engine) {
    let realm = realm(engine).await;
    let mut request = body("alice", Some(NUMBER));
    request["claims"] = json!({ "id_token": { "acr": null } });
    request["x-tenant"] = json!("blue");
    request["requested_expiry"] = json!("60");
    let reply = realm.post(Some(&realm.token(ALICE_SUB)), request.to_string()).await;
    assert_eq!(reply.status, StatusCode::CREATED, "{:?}", reply.body);
    assert_eq!(realm.pending(&realm.alice).await.challenges.len(), 1);
}

/// Attack: user enumeration. An unknown user and a user without a phone get the same 201 as
/// anyone; the callback says `CANCELLED` when an unanswered prompt would have expired.
async fn kc_unknown_user_and_user_without_device_get_the_same_201(engine: Engine) {
    let realm = realm(engine).await;
    let nobody = realm.token_with("5f5f5f5f-0000-4000-8000-000000000001", |_| {});
    let unknown = realm.ask(&nobody, "nobody").await;
    let carol = realm.token_with("5f5f5f5f-0000-4000-8000-000000000002", |_| {});
    let no_device = realm.ask(&carol, "carol").await;
    for reply in [&unknown, &no_device] {
        assert_eq!((reply.status, &reply.body), (StatusCode::CREATED, &Value::String(String::new())));
    }
    let names = |reply: &Reply| {
        let mut names: Vec<String> =
            reply.headers.keys().map(|k| k.as_str().to_owned()).filter(|k| k != "x-request-id").collect();
        names.sort();
        names
    };
    assert_eq!(names(&unknown), names(&no_device));
    for token in [&nobody, &carol] {
        let jti = countersign::oidc::jose::unverified_claim(token, "jti").unwrap();
        let request = realm.app.store.keycloak_request(ISSUER, &jti).await.unwrap().unwrap();
        assert_eq!((request.outcome, request.challenge_id), (RequestOutcome::Cancelled, None));
    }
    // CANCELLED when an unanswered prompt would have expired, not at once: the timing tells
    // Keycloak's client nothing either.
    assert!(due_status(&realm).await.is_empty(), "not yet");
    realm.app.advance(time::Duration::seconds(60)).await;
    let due = realm.app.store.claim_callbacks(realm.app.clock_now(), time::Duration::seconds(1), 10).await;
    let due = due.unwrap();
    assert_eq!(due.len(), 2, "both owe CANCELLED");
    assert!(due.iter().all(|c| c.job.challenge_id.is_none() && c.job.url == CALLBACK));
    assert_eq!(countersign::callbacks::keycloak_status(due[0].challenge_state), "CANCELLED");
    assert_eq!(realm.refusals().await, ["unknown_user", "no_device"]);
}

/// The outcome each decision owes Keycloak, as the callback worker will read it (claimed for
/// a day: each job is read once here).
async fn due_status(realm: &Realm) -> Vec<&'static str> {
    let due = realm.app.store.claim_callbacks(realm.app.clock_now(), time::Duration::days(1), 10).await;
    due.unwrap().iter().map(|c| countersign::callbacks::keycloak_status(c.challenge_state)).collect()
}

/// Attack: whoever holds the phone guesses the number: a terminal wrong-number denial, counted
/// by the ladder like any other, and Keycloak is told `UNAUTHORIZED`.
async fn kc_wrong_number_on_the_phone_is_unauthorized(engine: Engine) {
    let mut realm = realm(engine).await;
    assert_eq!(realm.ask(&realm.token(ALICE_SUB), "alice").await.status, StatusCode::CREATED);
    let pending = realm.pending(&realm.alice).await;
    let details = realm.alice.verify_details(&pending.challenges[0]).clone();
    let id = details.challenge_id.as_str().to_owned();
    let response = realm.alice.answer(&details, Decision::Approve, "111111");
    let path = format!("/device/v1/challenges/{id}/response");
    let answered = realm.app.device_post(&path, &serde_json::to_vec(&response).unwrap()).await;
    assert_eq!(answered.body["outcome"], "denied_wrong_number", "{:?}", answered.body);
    assert_eq!(due_status(&realm).await, ["UNAUTHORIZED"]);
    // The ladder froze push at once: the next request prompts nobody and owes CANCELLED.
    let next = realm.post(Some(&realm.token(ALICE_SUB)), body("alice", Some("730165")).to_string()).await;
    assert_eq!(next.status, StatusCode::CREATED, "{:?}", next.body);
    assert!(realm.pending(&realm.alice).await.challenges.is_empty());
    assert_eq!(realm.refusals().await, ["push_frozen"]);
    realm.app.advance(time::Duration::seconds(60)).await;
    assert_eq!(due_status(&realm).await, ["CANCELLED"]);
}

/// Attack: a stolen or misused CIBA client of the realm prompts every user it can name, each
/// within their own budget. Spray detection counts the users each client of a realm prompts.
async fn kc_realm_prompting_many_users_is_throttled_as_a_spray(engine: Engine) {
    let mut settings = ChallengeSettings { number_digits: 6, ..ChallengeSettings::default() };
    settings.policy.spray_users = 2;
    let realm = realm_with(engine, settings).await;
    let admin = realm.app.key("directory", "users:write challenges:write").await;
    enrolled_device(&realm.app, &admin, "dave", PushRegistration::None).await;
    for (i, user) in ["alice", "bob", "dave"].into_iter().enumerate() {
        let token = realm.token(&format!("5f5f5f5f-0000-4000-8000-00000000000{i}"));
        let reply = realm.post(Some(&token), body(user, Some(&format!("48291{i}"))).to_string()).await;
        assert_eq!(reply.status, StatusCode::CREATED, "the same answer for all");
    }
    assert_eq!(realm.refusals().await, ["source_rate_limited"]);
    let alert = realm.app.store.next_alert(0).await.unwrap().expect("a spray alert");
    let source = format!("network:keycloak:{ISSUER} {CLIENT}");
    assert_eq!((alert.kind.as_str(), alert.subject.as_str()), ("push_spray", source.as_str()));
}

/// A prompt nobody answers ends with the challenge (60 s), before Keycloak's request (120 s):
/// Keycloak is told `CANCELLED` then, so its client stops polling.
async fn kc_prompt_expiring_before_the_token_is_cancelled(engine: Engine) {
    let realm = realm(engine).await;
    assert_eq!(realm.ask(&realm.token(ALICE_SUB), "alice").await.status, StatusCode::CREATED);
    assert!(due_status(&realm).await.is_empty());
    realm.app.advance(time::Duration::seconds(61)).await;
    assert_eq!(realm.app.state.challenges.expire_due(10).await.unwrap(), 1);
    assert_eq!(due_status(&realm).await, ["CANCELLED"]);
}

on_both_engines!(
    a_realm_request_prompts_the_user_with_the_clients_number,
    kc_jwt_signed_with_another_key_is_refused,
    kc_jwt_alg_none_is_refused,
    kc_jwt_hs256_keyed_with_the_public_key_is_refused,
    kc_jwt_expired_is_refused,
    kc_jwt_for_another_audience_is_refused,
    kc_jwt_from_another_issuer_is_refused,
    kc_jwt_whose_typ_is_not_bearer_is_refused,
    kc_jwt_with_an_unknown_kid_is_refused,
    kc_jwt_from_a_client_not_allowed_is_refused,
    kc_replayed_jti_with_another_login_hint_is_refused,
    kc_subject_pinned_to_another_user_is_refused,
    kc_binding_message_that_is_not_the_number_is_refused,
    kc_channel_is_not_served_without_a_realm,
    kc_number_the_user_saw_lately_prompts_nobody_and_says_nothing,
    kc_oversized_or_malformed_body_is_refused,
    kc_unknown_body_members_are_ignored,
    kc_unknown_user_and_user_without_device_get_the_same_201,
    kc_wrong_number_on_the_phone_is_unauthorized,
    kc_prompt_expiring_before_the_token_is_cancelled,
    kc_realm_prompting_many_users_is_throttled_as_a_spray,
);
