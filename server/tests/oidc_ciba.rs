//! Decoupled sign-in (OpenID CIBA Core 1.0) on both engines, in process: a client asks in the
//! back channel, the consumption device shows the number (the client's numeric
//! `binding_message`, or the `countersign_number` we answer), the phone (the reference test
//! device) answers with it, the client polls or is pinged, and gets tokens once. Attacks and
//! bad input are named tests.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[macro_use]
mod common;

use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use common::{Reply, TestApp, app_with_user, audit_actions, enrolled_device, signed_get};
use countersign::audit::Actor;
use countersign::callbacks::CallbackDelivery;
use countersign::oidc::client_admin::{NewClient, create_client, revoke_client};
use countersign::oidc::clients::{AuthMethod, CibaDelivery, ClientId, ClientKeys, IdTokenAlg};
use countersign_e2e::Engine;
use countersign_e2e::device::TestDevice;
use countersign_e2e::jose::TestKey;
use countersign_mobile_protocol::{Decision, PendingChallenges, PushRegistration};
use secrecy::ExposeSecret;
use serde_json::{Value, json};

const ISSUER: &str = "http://127.0.0.1:8080";
const GRANT: &str = "urn:openid:params:grant-type:ciba";

/// A CIBA client registered with `client_secret_basic`.
struct Client {
    id: String,
    secret: String,
}

impl Client {
    fn basic(&self) -> String {
        format!("Basic {}", STANDARD.encode(format!("{}:{}", self.id, self.secret)))
    }
}

async fn client(app: &TestApp, name: &str, ciba: Option<CibaDelivery>) -> Client {
    let new = NewClient {
        name: name.into(),
        redirect_uris: vec![],
        auth_method: AuthMethod::ClientSecretBasic,
        keys: ClientKeys::None,
        id_token_alg: IdTokenAlg::Es256,
        ciba: ciba.or(Some(CibaDelivery::Poll)),
    };
    let created = create_client(app.store.as_ref(), app.clock.as_ref(), Actor::Cli, new).await.unwrap();
    Client { id: created.client.client_id.0, secret: created.secret.unwrap().expose_secret().to_owned() }
}

async fn post_form(app: &TestApp, path: &str, authorization: Option<&str>, pairs: &[(&str, &str)]) -> Reply {
    let body = url::form_urlencoded::Serializer::new(String::new()).extend_pairs(pairs).finish();
    let mut request = Request::post(path).header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
    if let Some(authorization) = authorization {
        request = request.header(header::AUTHORIZATION, authorization);
    }
    app.send(request.body(Body::from(body)).unwrap()).await
}

async fn ask(app: &TestApp, client: &Client, pairs: &[(&str, &str)]) -> Reply {
    ask_from(app, client, pairs, CLIENT_ADDRESS).await
}

/// Where the client's server calls from (the connection's peer address).
const CLIENT_ADDRESS: &str = "198.51.100.7:40000";

async fn ask_from(app: &TestApp, client: &Client, pairs: &[(&str, &str)], from: &str) -> Reply {
    let mut all = vec![("scope", "openid profile")];
    all.extend_from_slice(pairs);
    let body = url::form_urlencoded::Serializer::new(String::new()).extend_pairs(&all).finish();
    let mut request = Request::post("/oidc/ciba")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .header(header::AUTHORIZATION, client.basic())
        .body(Body::from(body))
        .unwrap();
    let peer: std::net::SocketAddr = from.parse().unwrap();
    request.extensions_mut().insert(axum::extract::ConnectInfo(peer));
    app.send(request).await
}

/// A request for `alice` that must be acknowledged: its `auth_req_id` and the whole answer.
async fn acknowledged(app: &TestApp, client: &Client, pairs: &[(&str, &str)]) -> (String, Value) {
    let reply = ask(app, client, pairs).await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
    assert_eq!(reply.headers["cache-control"], "no-store");
    (reply.body["auth_req_id"].as_str().unwrap().to_owned(), reply.body)
}

async fn poll(app: &TestApp, client: &Client, auth_req_id: &str) -> Reply {
    post_form(
        app,
        "/oidc/token",
        Some(&client.basic()),
        &[("grant_type", GRANT), ("auth_req_id", auth_req_id)],
    )
    .await
}

fn error_of(reply: &Reply) -> (StatusCode, String) {
    (reply.status, reply.body["error"].as_str().unwrap_or_default().to_owned())
}

/// What the phone sees pending; the number is never in it.
async fn pending(app: &TestApp, phone: &TestDevice) -> PendingChallenges {
    let reply = signed_get(app, phone, "/device/v1/challenges").await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
    assert!(!reply.body.to_string().contains("\"number\""), "the number never reaches the phone");
    serde_json::from_value(reply.body).unwrap()
}

async fn phone_answers(app: &TestApp, phone: &mut TestDevice, number: &str, decision: Decision) -> Value {
    let pending = pending(app, phone).await;
    let details = phone.verify_details(pending.challenges.last().expect("a pending challenge")).clone();
    let id = details.challenge_id.as_str().to_owned();
    let response = phone.answer(&details, decision, number);
    let path = format!("/device/v1/challenges/{id}/response");
    app.device_post(&path, &serde_json::to_vec(&response).unwrap()).await.body
}

async fn setup(engine: Engine) -> (TestApp, String, TestDevice, Client) {
    let (app, key) = app_with_user(engine, "alice").await;
    let phone = enrolled_device(&app, &key, "alice", PushRegistration::None).await;
    let client = client(&app, "Call centre", None).await;
    (app, key, phone, client)
}

fn claims_of(token: &str) -> Value {
    let payload = token.split('.').nth(1).unwrap();
    serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).unwrap())
        .unwrap()
}

async fn poll_mode_with_the_clients_number(engine: Engine) {
    let (app, _, mut phone, client) = setup(engine).await;
    let (id, ack) = acknowledged(&app, &client, &[("login_hint", "alice"), ("binding_message", "482")]).await;
    assert_eq!(ack["expires_in"], 60);
    assert_eq!(ack["interval"], 5);
    assert!(ack.get("countersign_number").is_none(), "the client chose the number: {ack}");
    assert!(id.len() >= 43, "auth_req_id carries 256 bits");
    let shown = pending(&app, &phone).await;
    assert_eq!(shown.challenges.len(), 1);
    assert_eq!(
        error_of(&poll(&app, &client, &id).await),
        (StatusCode::BAD_REQUEST, "authorization_pending".into())
    );
    app.advance(time::Duration::seconds(5)).await;
    assert_eq!(phone_answers(&app, &mut phone, "482", Decision::Approve).await["outcome"], "approved");
    let tokens = poll(&app, &client, &id).await;
    assert_eq!(tokens.status, StatusCode::OK, "{:?}", tokens.body);
    let claims = claims_of(tokens.body["id_token"].as_str().unwrap());
    let alice = app.store.user_by_username("alice").await.unwrap().unwrap();
    assert_eq!(claims["sub"], alice.id.to_string());
    assert_eq!(claims["aud"], client.id);
    assert_eq!(claims["acr"], countersign::oidc::authorization::ACR_NUMBER_MATCHED_PUSH);
    assert_eq!(claims["preferred_username"], "alice");
    let info = app.get("/oidc/userinfo", Some(tokens.body["access_token"].as_str().unwrap())).await;
    assert_eq!(info.body, json!({ "sub": alice.id.to_string(), "preferred_username": "alice" }));
    // Once: the second redemption is refused and audited.
    app.advance(time::Duration::seconds(5)).await;
    assert_eq!(error_of(&poll(&app, &client, &id).await), (StatusCode::BAD_REQUEST, "invalid_grant".into()));
    let actions: Vec<String> = audit_actions(&app).await.into_iter().map(|(a, _)| a).collect();
    for expected in ["oidc.ciba_requested", "oidc.tokens_issued", "oidc.ciba_refused"] {
        assert!(actions.iter().any(|a| a == expected), "{expected} in {actions:?}");
    }
}

/// An approval in the prompt's last second is not lost: the client's next poll, an interval
/// after the prompt ended, still gets the tokens; a poll after the grace gets `expired_token`.
async fn an_approval_in_the_last_second_can_still_be_fetched(engine: Engine) {
    let (app, _, mut phone, client) = setup(engine).await;
    let (id, _) = acknowledged(&app, &client, &[("login_hint", "alice"), ("binding_message", "482")]).await;
    let (late, _) = acknowledged(&app, &client, &[("login_hint", "alice"), ("binding_message", "517")]).await;
    app.advance(time::Duration::seconds(59)).await;
    assert_eq!(phone_answers(&app, &mut phone, "517", Decision::Approve).await["outcome"], "approved");
    app.advance(time::Duration::seconds(5)).await;
    assert_eq!(poll(&app, &client, &late).await.status, StatusCode::OK);
    // The first request was superseded by the second, unanswered: it is over.
    assert_eq!(error_of(&poll(&app, &client, &id).await).1, "access_denied");
    app.advance(time::Duration::seconds(30)).await;
    assert_eq!(error_of(&poll(&app, &client, &id).await).1, "expired_token");
}

/// Without a numeric `binding_message` Countersign draws the number and answers it, for the
/// client to show; a text message goes to the phone after the client's name.
async fn a_generated_number_is_answered_to_the_client_only(engine: Engine) {
    let (app, _, mut phone, client) = setup(engine).await;
    let (id, ack) =
        acknowledged(&app, &client, &[("login_hint", "alice"), ("binding_message", "Ticket A-17")]).await;
    let number = ack["countersign_number"].as_str().unwrap().to_owned();
    assert_eq!(number.len(), 3);
    let shown = pending(&app, &phone).await;
    let details = phone.verify_details(&shown.challenges[0]).clone();
    assert_eq!(details.app_name, "Call centre: Ticket A-17");
    assert_eq!(details.ip, "", "the client's server address is not where the user is");
    assert!(!details.app_name.contains(&number));
    assert_eq!(phone_answers(&app, &mut phone, &number, Decision::Approve).await["outcome"], "approved");
    assert_eq!(poll(&app, &client, &id).await.status, StatusCode::OK);
}

/// A phone answer with another number ends the request (`access_denied`) and counts on the
/// fatigue ladder: push is frozen, so the next request prompts nobody.
async fn a_wrong_number_is_a_terminal_denial_the_ladder_counts(engine: Engine) {
    let (app, _, mut phone, client) = setup(engine).await;
    let (id, _) = acknowledged(&app, &client, &[("login_hint", "alice"), ("binding_message", "482")]).await;
    phone_answers(&app, &mut phone, "483", Decision::Approve).await;
    assert_eq!(error_of(&poll(&app, &client, &id).await), (StatusCode::BAD_REQUEST, "access_denied".into()));
    let (next, ack) =
        acknowledged(&app, &client, &[("login_hint", "alice"), ("binding_message", "517")]).await;
    assert!(ack.get("countersign_number").is_none());
    assert!(pending(&app, &phone).await.challenges.is_empty(), "push is frozen: nobody prompted");
    assert_eq!(error_of(&poll(&app, &client, &next).await).1, "authorization_pending");
    let refusal = audit_actions(&app)
        .await
        .into_iter()
        .filter(|(a, _)| a == "oidc.ciba_requested")
        .map(|(_, d)| d["refusal"].clone())
        .collect::<Vec<_>>();
    assert_eq!(refusal, [Value::Null, json!("push_frozen")]);
}

/// Attack: a client probes which usernames exist, or which users can be prompted. An unknown
/// user, a user without a device and a user who does not answer look alike: the same
/// acknowledgement, `authorization_pending` until the prompt's end, then `expired_token`.
async fn unknown_users_look_like_users_who_do_not_answer(engine: Engine) {
    let (app, key, _phone, client) = setup(engine).await;
    let made = app.post_json("/v1/users", &key, json!({ "username": "bob" })).await;
    assert_eq!(made.status, StatusCode::CREATED);
    let mut requests = Vec::new();
    for user in ["alice", "bob", "nobody-here"] {
        let (id, ack) = acknowledged(&app, &client, &[("login_hint", user)]).await;
        let mut members: Vec<String> = ack.as_object().unwrap().keys().cloned().collect();
        members.sort();
        let shape = (
            members,
            ack["expires_in"].clone(),
            ack["interval"].clone(),
            ack["countersign_number"].as_str().unwrap().len(),
        );
        requests.push((id, shape));
    }
    let mut answers = Vec::new();
    for (id, shape) in &requests {
        answers.push((shape.clone(), error_of(&poll(&app, &client, id).await)));
    }
    app.advance(time::Duration::seconds(61)).await;
    for (i, (id, _)) in requests.iter().enumerate() {
        let late = error_of(&poll(&app, &client, id).await);
        answers[i].1 = (answers[i].1.0, format!("{} then {}", answers[i].1.1, late.1));
    }
    assert_eq!(answers[0], answers[1]);
    assert_eq!(answers[1], answers[2]);
    assert_eq!(answers[0].1.1, "authorization_pending then expired_token");
}

async fn hints_are_exactly_one_of_login_hint_and_id_token_hint(engine: Engine) {
    let (app, _, mut phone, client) = setup(engine).await;
    for pairs in [
        vec![],
        vec![("login_hint", "alice"), ("id_token_hint", "x.y.z")],
        vec![("login_hint_token", "x.y.z")],
        vec![("login_hint", "alice"), ("login_hint_token", "x.y.z")],
    ] {
        assert_eq!(
            error_of(&ask(&app, &client, &pairs).await),
            (StatusCode::BAD_REQUEST, "invalid_request".into()),
            "{pairs:?}"
        );
    }
    // An ID token this provider issued to the client names its user again.
    let (id, _) = acknowledged(&app, &client, &[("login_hint", "alice"), ("binding_message", "482")]).await;
    phone_answers(&app, &mut phone, "482", Decision::Approve).await;
    let tokens = poll(&app, &client, &id).await;
    let id_token = tokens.body["id_token"].as_str().unwrap().to_owned();
    let (again, _) =
        acknowledged(&app, &client, &[("id_token_hint", &id_token), ("binding_message", "517")]).await;
    phone_answers(&app, &mut phone, "517", Decision::Approve).await;
    assert_eq!(poll(&app, &client, &again).await.status, StatusCode::OK);
    // Another client's ID token, or a forged one, is refused.
    let other = client_named(&app, "Other").await;
    assert_eq!(error_of(&ask(&app, &other, &[("id_token_hint", &id_token)]).await).1, "invalid_request");
    let forged = TestKey::es256(&jsonwebtoken::decode_header(&id_token).unwrap().kid.unwrap())
        .sign(&claims_of(&id_token));
    assert_eq!(error_of(&ask(&app, &client, &[("id_token_hint", &forged)]).await).1, "invalid_request");
}

async fn client_named(app: &TestApp, name: &str) -> Client {
    client(app, name, None).await
}

/// Unknown, revoked and wrong-secret clients get `invalid_client`; a client not registered for
/// CIBA gets `unauthorized_client`. Nobody is prompted.
async fn only_registered_ciba_clients_may_ask(engine: Engine) {
    let (app, _, phone, client) = setup(engine).await;
    let pairs = [("login_hint", "alice")];
    let unknown = Client { id: "AAAAAAAAAAAAAAAAAAAAAA".into(), secret: "x".into() };
    let wrong = Client { id: client.id.clone(), secret: "not-the-secret".into() };
    for who in [&unknown, &wrong] {
        let reply = ask(&app, who, &pairs).await;
        assert_eq!(error_of(&reply), (StatusCode::UNAUTHORIZED, "invalid_client".into()));
    }
    let code_flow_only = NewClient {
        name: "Portal".into(),
        redirect_uris: vec!["https://rp.example/cb".into()],
        auth_method: AuthMethod::ClientSecretBasic,
        keys: ClientKeys::None,
        id_token_alg: IdTokenAlg::Es256,
        ciba: None,
    };
    let created =
        create_client(app.store.as_ref(), app.clock.as_ref(), Actor::Cli, code_flow_only).await.unwrap();
    let portal =
        Client { id: created.client.client_id.0, secret: created.secret.unwrap().expose_secret().to_owned() };
    assert_eq!(
        error_of(&ask(&app, &portal, &pairs).await),
        (StatusCode::BAD_REQUEST, "unauthorized_client".into())
    );
    revoke_client(app.store.as_ref(), app.clock.as_ref(), Actor::Cli, &ClientId(client.id.clone()))
        .await
        .unwrap();
    assert_eq!(error_of(&ask(&app, &client, &pairs).await).0, StatusCode::UNAUTHORIZED);
    assert!(pending(&app, &phone).await.challenges.is_empty(), "nobody was prompted");
}

/// Bad input is refused precisely and prompts nobody.
async fn bad_requests_prompt_nobody(engine: Engine) {
    let (app, _, phone, client) = setup(engine).await;
    let long = "m".repeat(65);
    let token = "t".repeat(10);
    let cases: Vec<(Vec<(&str, &str)>, &str)> = vec![
        (vec![("login_hint", "alice"), ("binding_message", &long)], "invalid_binding_message"),
        (vec![("login_hint", "alice"), ("binding_message", "Pay\u{202E}lapyap")], "invalid_binding_message"),
        (vec![("login_hint", "alice"), ("binding_message", "a\u{7}b")], "invalid_binding_message"),
        (vec![("login_hint", "alice"), ("binding_message", "zero\u{200B}width")], "invalid_binding_message"),
        (vec![("login_hint", "alice"), ("requested_expiry", "0")], "invalid_request"),
        (vec![("login_hint", "alice"), ("requested_expiry", "-5")], "invalid_request"),
        (vec![("login_hint", "alice"), ("requested_expiry", "soon")], "invalid_request"),
        (vec![("login_hint", "alice"), ("user_code", "1234")], "invalid_request"),
        (vec![("login_hint", "alice"), ("client_notification_token", &token)], "invalid_request"),
        (vec![("login_hint", "alice"), ("request_uri", "urn:x")], "invalid_request"),
    ];
    for (pairs, error) in cases {
        assert_eq!(
            error_of(&ask(&app, &client, &pairs).await),
            (StatusCode::BAD_REQUEST, error.into()),
            "{pairs:?}"
        );
    }
    let no_openid = post_form(
        &app,
        "/oidc/ciba",
        Some(&client.basic()),
        &[("scope", "profile"), ("login_hint", "alice")],
    )
    .await;
    assert_eq!(error_of(&no_openid).1, "invalid_scope");
    let twice = post_form(
        &app,
        "/oidc/ciba",
        Some(&client.basic()),
        &[("scope", "openid"), ("login_hint", "alice"), ("login_hint", "bob")],
    )
    .await;
    assert_eq!(error_of(&twice).1, "invalid_request");
    assert!(pending(&app, &phone).await.challenges.is_empty(), "nobody was prompted");
    assert!(!audit_actions(&app).await.iter().any(|(a, _)| a == "oidc.ciba_requested"));
}

/// Attack: a client pins one number so the user learns to type it blind. A number the user saw
/// lately prompts nobody (answered like any refusal, so it says nothing about the user).
async fn a_client_cannot_pin_a_number(engine: Engine) {
    let (app, _, mut phone, client) = setup(engine).await;
    let (first, _) =
        acknowledged(&app, &client, &[("login_hint", "alice"), ("binding_message", "482")]).await;
    phone_answers(&app, &mut phone, "482", Decision::Approve).await;
    assert_eq!(poll(&app, &client, &first).await.status, StatusCode::OK);
    let (again, _) =
        acknowledged(&app, &client, &[("login_hint", "alice"), ("binding_message", "482")]).await;
    assert!(pending(&app, &phone).await.challenges.is_empty(), "not prompted with a pinned number");
    assert_eq!(error_of(&poll(&app, &client, &again).await).1, "authorization_pending");
    let (_, details) =
        audit_actions(&app).await.into_iter().rfind(|(a, _)| a == "oidc.ciba_requested").unwrap();
    assert_eq!(details["refusal"], "number_recently_used");
}

/// Polling sooner than the interval is `slow_down`, and the interval grows by 5 s each time.
async fn polling_too_fast_slows_the_client_down(engine: Engine) {
    let (app, _, _, client) = setup(engine).await;
    let (id, _) = acknowledged(&app, &client, &[("login_hint", "alice")]).await;
    assert_eq!(error_of(&poll(&app, &client, &id).await).1, "authorization_pending");
    let fast = poll(&app, &client, &id).await;
    assert_eq!(error_of(&fast).1, "slow_down");
    assert!(fast.body["error_description"].as_str().unwrap().contains("10 seconds"), "{:?}", fast.body);
    app.advance(time::Duration::seconds(6)).await;
    let still = poll(&app, &client, &id).await;
    assert!(still.body["error_description"].as_str().unwrap().contains("15 seconds"), "{:?}", still.body);
    app.advance(time::Duration::seconds(15)).await;
    assert_eq!(error_of(&poll(&app, &client, &id).await).1, "authorization_pending");
}

/// An expired request answers `expired_token`; an unknown `auth_req_id` or another client's
/// answers `invalid_grant`.
async fn expired_unknown_and_foreign_requests(engine: Engine) {
    let (app, _, _, client) = setup(engine).await;
    let other = client_named(&app, "Other").await;
    let (id, _) = acknowledged(&app, &client, &[("login_hint", "alice"), ("requested_expiry", "30")]).await;
    assert_eq!(error_of(&poll(&app, &other, &id).await).1, "invalid_grant");
    assert_eq!(error_of(&poll(&app, &client, "made-up-auth-req-id").await).1, "invalid_grant");
    let refused = poll(&app, &other, &id).await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST);
    app.advance(time::Duration::seconds(31)).await;
    assert_eq!(error_of(&poll(&app, &client, &id).await).1, "expired_token");
    let (long, ack) =
        acknowledged(&app, &client, &[("login_hint", "alice"), ("requested_expiry", "600")]).await;
    assert_eq!(ack["expires_in"], 60, "never longer than a challenge lives");
    assert_eq!(error_of(&poll(&app, &client, &long).await).1, "authorization_pending");
}

/// CIBA prompts and REST prompts spend one push budget per user.
async fn ciba_shares_the_push_budget_with_rest(engine: Engine) {
    let (app, key, _, client) = setup(engine).await;
    for _ in 0..5 {
        let made = app.post_json("/v1/challenges", &key, json!({ "username": "alice" })).await;
        assert_eq!(made.status, StatusCode::CREATED, "{:?}", made.body);
    }
    let (id, _) = acknowledged(&app, &client, &[("login_hint", "alice")]).await;
    assert_eq!(error_of(&poll(&app, &client, &id).await).1, "authorization_pending");
    let (_, details) =
        audit_actions(&app).await.into_iter().rfind(|(a, _)| a == "oidc.ciba_requested").unwrap();
    assert_eq!(details["refusal"], "push_rate_limited");
}

/// Attack: a stolen client credential prompts every user it can name, from many addresses.
/// Spray detection counts the users one client prompts (wherever it calls from: clients sit
/// behind proxies), as it counts the users prompted from one network for REST prompts.
async fn a_client_prompting_many_users_is_throttled_as_a_spray(engine: Engine) {
    let mut settings = countersign::challenges::service::ChallengeSettings::default();
    settings.policy.spray_users = 2;
    let app = TestApp::build_with(engine, countersign::app::HttpLimits::default(), settings).await;
    let key = app.key("portal", "users:read users:write challenges:write").await;
    for user in ["alice", "bob", "carol"] {
        let made = app.post_json("/v1/users", &key, json!({ "username": user })).await;
        assert_eq!(made.status, StatusCode::CREATED);
        enrolled_device(&app, &key, user, PushRegistration::None).await;
    }
    let client = client_named(&app, "Stolen").await;
    let mut refusals = Vec::new();
    for (user, from) in
        [("alice", "203.0.113.9:5000"), ("bob", "198.51.100.1:5000"), ("carol", "192.0.2.1:5000")]
    {
        let reply = ask_from(&app, &client, &[("login_hint", user)], from).await;
        assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
        let (_, details) =
            audit_actions(&app).await.into_iter().rfind(|(a, _)| a == "oidc.ciba_requested").unwrap();
        refusals.push(details["refusal"].clone());
    }
    assert_eq!(refusals, [Value::Null, Value::Null, json!("source_rate_limited")]);
    let alert = app.store.next_alert(0).await.unwrap().expect("a spray alert");
    assert_eq!(alert.kind, "push_spray");
    assert_eq!(alert.subject, format!("network:oidc-client:{}", client.id));
    // Another client is not throttled by this one.
    let other = client_named(&app, "Honest").await;
    let reply = ask_from(&app, &other, &[("login_hint", "carol")], "203.0.113.9:5000").await;
    assert_eq!(reply.status, StatusCode::OK);
    let (_, details) =
        audit_actions(&app).await.into_iter().rfind(|(a, _)| a == "oidc.ciba_requested").unwrap();
    assert_eq!(details["refusal"], Value::Null);
}

async fn discovery_names_the_ciba_endpoint_and_modes(engine: Engine) {
    let (app, _) = app_with_user(engine, "alice").await;
    let document = app.get("/.well-known/openid-configuration", None).await.body;
    assert_eq!(document["backchannel_authentication_endpoint"], format!("{ISSUER}/oidc/ciba"));
    assert_eq!(document["backchannel_token_delivery_modes_supported"], json!(["poll", "ping"]));
    assert_eq!(document["backchannel_user_code_parameter_supported"], false);
    assert!(document["grant_types_supported"].as_array().unwrap().contains(&json!(GRANT)));
    let algs =
        document["backchannel_authentication_request_signing_alg_values_supported"].as_array().unwrap();
    assert!(!algs.is_empty() && !algs.contains(&json!("none")));
}

/// A `private_key_jwt` CIBA client signs its request (§7.1.1): accepted once; replayed, with a
/// parameter beside it, or unsigned (`alg: none`) it is refused.
async fn signed_requests_are_verified_and_spent_once(engine: Engine) {
    let (app, _, phone, _) = setup(engine).await;
    let signer = TestKey::es256("ciba-key");
    let jwks =
        countersign::oidc::clients::validate_jwks(&countersign_e2e::jose::jwks_json(&[&signer])).unwrap();
    let new = NewClient {
        name: "Signed".into(),
        redirect_uris: vec![],
        auth_method: AuthMethod::PrivateKeyJwt,
        keys: ClientKeys::Inline(jwks),
        id_token_alg: IdTokenAlg::Es256,
        ciba: Some(CibaDelivery::Poll),
    };
    let id = create_client(app.store.as_ref(), app.clock.as_ref(), Actor::Cli, new)
        .await
        .unwrap()
        .client
        .client_id
        .0;
    let now = app.clock_now().unix_timestamp();
    let assertion = |jti: &str| {
        signer.sign(&json!({ "iss": id, "sub": id, "aud": format!("{ISSUER}/oidc/token"), "iat": now, "exp": now + 60, "jti": jti }))
    };
    let request = |jti: &str| {
        signer.sign(&json!({ "iss": id, "aud": ISSUER, "iat": now, "nbf": now, "exp": now + 60, "jti": jti,
            "scope": "openid", "login_hint": "alice", "binding_message": "482", "requested_expiry": 30 }))
    };
    let assertion_type = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
    let send = |request: String, assertion: String, extra: Option<(&'static str, &'static str)>| {
        let app = &app;
        async move {
            let mut pairs = vec![
                ("client_assertion_type", assertion_type.to_owned()),
                ("client_assertion", assertion),
                ("request", request),
            ];
            if let Some((name, value)) = extra {
                pairs.push((name, value.to_owned()));
            }
            let pairs: Vec<(&str, &str)> = pairs.iter().map(|(n, v)| (*n, v.as_str())).collect();
            post_form(app, "/oidc/ciba", None, &pairs).await
        }
    };
    let beside = send(request("r-0"), assertion("a-0"), Some(("login_hint", "bob"))).await;
    assert_eq!(error_of(&beside).1, "invalid_request");
    let unsigned = countersign_e2e::jose::forge(
        &json!({ "alg": "none", "kid": "ciba-key" }),
        &claims_of(&request("r-1")),
        b"",
    );
    // §13 has no request-object errors: a refused signed request is `invalid_request`.
    assert_eq!(error_of(&send(unsigned, assertion("a-1"), None).await).1, "invalid_request");
    // §7.1.1 requires `iat` and `nbf`.
    for claim in ["iat", "nbf"] {
        let mut claims = claims_of(&request(&format!("r-no-{claim}")));
        claims.as_object_mut().unwrap().remove(claim);
        let reply = send(signer.sign(&claims), assertion(&format!("a-no-{claim}")), None).await;
        assert_eq!(error_of(&reply).1, "invalid_request", "without {claim}");
    }
    assert!(pending(&app, &phone).await.challenges.is_empty());
    let accepted = send(request("r-2"), assertion("a-2"), None).await;
    assert_eq!(accepted.status, StatusCode::OK, "{:?}", accepted.body);
    assert_eq!(accepted.body["expires_in"], 30, "requested_expiry may be a number inside the JWT");
    assert_eq!(pending(&app, &phone).await.challenges.len(), 1);
    let replayed = send(request("r-2"), assertion("a-3"), None).await;
    assert_eq!(error_of(&replayed).1, "invalid_request");
    // §7.1: the backchannel endpoint is an audience a client assertion may name.
    let to_backchannel = signer.sign(&json!({ "iss": id, "sub": id, "aud": format!("{ISSUER}/oidc/ciba"),
        "iat": now, "exp": now + 60, "jti": "a-4" }));
    assert_eq!(send(request("r-4"), to_backchannel, None).await.status, StatusCode::OK);
}

/// A client's notification endpoint on loopback: answers each POST with the next status of
/// its script (the last one repeats) and records what it got.
/// What an endpoint received: the `Authorization` header and the JSON body of each POST.
type Received = Arc<Mutex<Vec<(Option<String>, Value)>>>;

#[derive(Clone)]
struct Endpoint {
    url: String,
    got: Received,
}

async fn endpoint(script: Vec<u16>) -> Endpoint {
    let got: Received = Arc::default();
    let script = Arc::new(Mutex::new(script));
    let (seen, statuses) = (Arc::clone(&got), Arc::clone(&script));
    let router = axum::Router::new().route(
        "/ping",
        axum::routing::post(move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
            let (seen, statuses) = (Arc::clone(&seen), Arc::clone(&statuses));
            async move {
                let bearer = headers.get(header::AUTHORIZATION).map(|v| v.to_str().unwrap().to_owned());
                seen.lock().unwrap().push((bearer, serde_json::from_slice(&body).unwrap_or(Value::Null)));
                let mut script = statuses.lock().unwrap();
                let status = if script.len() > 1 { script.remove(0) } else { script[0] };
                let mut response = axum::response::Response::new(Body::empty());
                *response.status_mut() = StatusCode::from_u16(status).unwrap();
                if status == 302 {
                    response.headers_mut().insert(header::LOCATION, "/elsewhere".parse().unwrap());
                }
                response
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/ping", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    Endpoint { url, got }
}

fn delivery(app: &TestApp) -> CallbackDelivery {
    CallbackDelivery::new(Arc::clone(&app.store), app.clock.clone(), Arc::clone(&app.master)).unwrap()
}

/// Ping mode: nothing is sent while the user has not answered; then the endpoint fails twice
/// and accepts the third POST, which carries the client's token and the `auth_req_id`; it gets
/// nothing more, and the client fetches its tokens once.
async fn ping_mode_retries_until_the_client_takes_it_once(engine: Engine) {
    let (app, _, mut phone, _) = setup(engine).await;
    let endpoint = endpoint(vec![503, 500, 204]).await;
    let client =
        client(&app, "Kiosk", Some(CibaDelivery::Ping { notification_endpoint: endpoint.url.clone() })).await;
    let token = "bm90aWZpY2F0aW9uLXRva2Vu";
    let (id, _) = acknowledged(
        &app,
        &client,
        &[("login_hint", "alice"), ("binding_message", "482"), ("client_notification_token", token)],
    )
    .await;
    let worker = delivery(&app);
    assert_eq!(worker.deliver_due().await.unwrap(), 0, "nothing is due while the user has not answered");
    phone_answers(&app, &mut phone, "482", Decision::Approve).await;
    for _ in 0..3 {
        assert_eq!(worker.deliver_due().await.unwrap(), 1);
        app.advance(time::Duration::seconds(2)).await;
    }
    app.advance(time::Duration::seconds(20)).await;
    assert_eq!(worker.deliver_due().await.unwrap(), 0, "delivered: nothing more to send");
    let got = endpoint.got.lock().unwrap().clone();
    assert_eq!(got.len(), 3);
    for (bearer, body) in &got {
        assert_eq!(bearer.as_deref(), Some(format!("Bearer {token}").as_str()));
        assert_eq!(body, &json!({ "auth_req_id": id }));
    }
    assert_eq!(poll(&app, &client, &id).await.status, StatusCode::OK);
    let actions: Vec<String> = audit_actions(&app).await.into_iter().map(|(a, _)| a).collect();
    assert_eq!(actions.iter().filter(|a| *a == "callback.delivered").count(), 1);
}

/// Attack: someone with a copy of the database redeems a pending request, or impersonates the
/// server to the client's notification endpoint. The `auth_req_id` is kept only as its
/// SHA-256, and the notification token and `auth_req_id` a ping carries are sealed under the
/// master key: no stored row repeats either.
async fn a_database_copy_holds_no_usable_auth_req_id_or_notification_token(engine: Engine) {
    let (app, _, mut phone, _) = setup(engine).await;
    let endpoint = endpoint(vec![204]).await;
    let notification_endpoint = endpoint.url.clone();
    let client = client(&app, "Kiosk", Some(CibaDelivery::Ping { notification_endpoint })).await;
    let token = "c2VjcmV0LW5vdGlmaWNhdGlvbi10b2tlbg";
    let (id, _) =
        acknowledged(&app, &client, &[("login_hint", "alice"), ("client_notification_token", token)]).await;
    let sha256 =
        |secret: &str| ring::digest::digest(&ring::digest::SHA256, secret.as_bytes()).as_ref().to_vec();
    let request = app.store.ciba_request(&sha256(&id)).await.unwrap().expect("found by its hash");
    assert!(app.store.ciba_request(id.as_bytes()).await.unwrap().is_none());
    let sign_in = app.store.authorization(request.authorization_id.unwrap()).await.unwrap().unwrap();
    let (_, details) =
        audit_actions(&app).await.into_iter().rfind(|(a, _)| a == "oidc.ciba_requested").unwrap();
    let challenge: uuid::Uuid = details["challenge_id"].as_str().unwrap().parse().unwrap();
    let jobs = app.store.callbacks_for_challenge(countersign::ids::ChallengeId(challenge)).await.unwrap();
    assert_eq!(jobs.len(), 1);
    // Decided: the ping is due, and is read back with everything it will send.
    phone_answers(&app, &mut phone, "", Decision::Deny).await;
    let claimed = app.store.claim_callbacks(app.clock_now(), time::Duration::seconds(1), 10).await.unwrap();
    assert_eq!(claimed.len(), 1);
    let sealed = &claimed[0].job.sealed;
    let stored = format!("{request:?} {sign_in:?} {claimed:?} {details}");
    for secret in [id.as_str(), token] {
        assert!(!stored.contains(secret), "{secret} is stored readable");
        assert!(!sealed.windows(secret.len()).any(|w| w == secret.as_bytes()), "{secret} is sealed");
    }
}

/// Ping endpoints that redirect are not followed (§10.2) and not retried; one that is down is
/// retried with backoff until the request expires, then given up, audited.
async fn ping_redirects_are_not_followed_and_retries_stop_at_expiry(engine: Engine) {
    let (app, _, mut phone, _) = setup(engine).await;
    let redirecting = endpoint(vec![302]).await;
    let client_a = client(
        &app,
        "Redirecting",
        Some(CibaDelivery::Ping { notification_endpoint: redirecting.url.clone() }),
    )
    .await;
    let (_, ack) =
        acknowledged(&app, &client_a, &[("login_hint", "alice"), ("client_notification_token", "abc")]).await;
    assert!(ack["countersign_number"].is_string());
    phone_answers(&app, &mut phone, "", Decision::Deny).await;
    let worker = delivery(&app);
    assert_eq!(worker.deliver_due().await.unwrap(), 1);
    app.advance(time::Duration::seconds(30)).await;
    let due = worker.deliver_due().await.unwrap();
    let (_, requested) =
        audit_actions(&app).await.into_iter().rfind(|(a, _)| a == "oidc.ciba_requested").unwrap();
    let challenge: uuid::Uuid = requested["challenge_id"].as_str().unwrap().parse().unwrap();
    let jobs = app.store.callbacks_for_challenge(countersign::ids::ChallengeId(challenge)).await.unwrap();
    assert_eq!(due, 0, "a redirect is final: {jobs:?}");
    assert_eq!((jobs[0].state.as_str(), jobs[0].attempts), ("failed", 1));
    assert_eq!(redirecting.got.lock().unwrap().len(), 1);

    let down = endpoint(vec![503]).await;
    let client_b =
        client(&app, "Down", Some(CibaDelivery::Ping { notification_endpoint: down.url.clone() })).await;
    // A request for nobody is pinged when a prompt would have ended (20 s), then retried.
    acknowledged(
        &app,
        &client_b,
        &[("login_hint", "nobody"), ("client_notification_token", "abc"), ("requested_expiry", "20")],
    )
    .await;
    // 40 s of rounds, twice the request's life.
    for _ in 0..10 {
        worker.deliver_due().await.unwrap();
        app.advance(time::Duration::seconds(4)).await;
    }
    let tries = down.got.lock().unwrap().len();
    assert!((2..=8).contains(&tries), "retried with backoff, then stopped: {tries}");
    app.advance(time::Duration::seconds(60)).await;
    worker.deliver_due().await.unwrap();
    assert_eq!(down.got.lock().unwrap().len(), tries, "nothing after expiry");
    assert_eq!(worker.deliver_due().await.unwrap(), 0, "given up: nothing due any more");
    let failed = audit_actions(&app).await.into_iter().filter(|(a, _)| a == "callback.failed").count();
    assert_eq!(failed, 2);
}

/// Registration: a ping client needs an https (or loopback) notification endpoint; a public
/// client cannot use CIBA.
async fn ciba_registration_rules(engine: Engine) {
    let (app, _) = app_with_user(engine, "alice").await;
    let register = |auth_method, ciba| NewClient {
        name: "X".into(),
        redirect_uris: vec![],
        auth_method,
        keys: ClientKeys::None,
        id_token_alg: IdTokenAlg::Es256,
        ciba,
    };
    let ping = |url: &str| Some(CibaDelivery::Ping { notification_endpoint: url.into() });
    for (method, ciba) in [
        (AuthMethod::None, Some(CibaDelivery::Poll)),
        (AuthMethod::ClientSecretBasic, ping("http://rp.example/ping")),
        (AuthMethod::ClientSecretBasic, ping("https://user@rp.example/ping")),
        (AuthMethod::ClientSecretBasic, None),
    ] {
        let refused =
            create_client(app.store.as_ref(), app.clock.as_ref(), Actor::Cli, register(method, ciba.clone()))
                .await;
        assert!(refused.is_err(), "{method:?} {ciba:?}");
    }
    let ok = create_client(
        app.store.as_ref(),
        app.clock.as_ref(),
        Actor::Cli,
        register(AuthMethod::ClientSecretPost, ping("https://rp.example/ping")),
    )
    .await
    .unwrap();
    let stored = app.store.oidc_client(&ok.client.client_id).await.unwrap().unwrap();
    assert_eq!(stored.ciba, ping("https://rp.example/ping"));
}

on_both_engines!(
    poll_mode_with_the_clients_number,
    an_approval_in_the_last_second_can_still_be_fetched,
    a_generated_number_is_answered_to_the_client_only,
    a_wrong_number_is_a_terminal_denial_the_ladder_counts,
    unknown_users_look_like_users_who_do_not_answer,
    hints_are_exactly_one_of_login_hint_and_id_token_hint,
    only_registered_ciba_clients_may_ask,
    bad_requests_prompt_nobody,
    a_client_cannot_pin_a_number,
    polling_too_fast_slows_the_client_down,
    expired_unknown_and_foreign_requests,
    ciba_shares_the_push_budget_with_rest,
    discovery_names_the_ciba_endpoint_and_modes,
    a_client_prompting_many_users_is_throttled_as_a_spray,
    signed_requests_are_verified_and_spent_once,
    ping_mode_retries_until_the_client_takes_it_once,
    a_database_copy_holds_no_usable_auth_req_id_or_notification_token,
    ping_redirects_are_not_followed_and_retries_stop_at_expiry,
    ciba_registration_rules,
);
