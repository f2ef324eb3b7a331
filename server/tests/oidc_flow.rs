//! The OIDC authorization code flow on both engines, in process: PAR → authorize → the sign-in
//! page shows the number → the phone (the reference test device) approves with it → the page
//! finishes → code → tokens → userinfo; and the attacks on each step, each a named test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[macro_use]
mod common;
#[path = "common/soft_key.rs"]
mod soft_key;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use common::{Reply, TestApp, app_with_user, audit_actions, enrolled_device, signed_get};
use countersign::audit::Actor;
use countersign::oidc::client_admin::{NewClient, create_client};
use countersign::oidc::clients::{AuthMethod, ClientKeys, IdTokenAlg};
use countersign_e2e::Engine;
use countersign_e2e::device::TestDevice;
use countersign_e2e::jose::TestKey;
use countersign_mobile_protocol::{Decision, PendingChallenges, PushRegistration};
use secrecy::ExposeSecret;
use serde_json::{Value, json};
use soft_key::{ORIGIN, SoftKey};

const ISSUER: &str = "http://127.0.0.1:8080";
const REDIRECT_URI: &str = "https://rp.example/cb";
const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";

/// A relying party registered with `client_secret_basic`.
struct Rp {
    client_id: String,
    secret: String,
}

impl Rp {
    fn basic(&self) -> String {
        format!("Basic {}", STANDARD.encode(format!("{}:{}", self.client_id, self.secret)))
    }
}

async fn rp(app: &TestApp, name: &str) -> Rp {
    let new = NewClient {
        name: name.into(),
        redirect_uris: vec![REDIRECT_URI.into(), "https://rp.example/cb?tenant=1".into()],
        auth_method: AuthMethod::ClientSecretBasic,
        keys: ClientKeys::None,
        id_token_alg: IdTokenAlg::Es256,
        ciba: None,
    };
    let created = create_client(app.store.as_ref(), app.clock.as_ref(), Actor::Cli, new).await.unwrap();
    Rp { client_id: created.client.client_id.0, secret: created.secret.unwrap().expose_secret().to_owned() }
}

fn form_body(pairs: &[(&str, &str)]) -> String {
    url::form_urlencoded::Serializer::new(String::new()).extend_pairs(pairs).finish()
}

async fn post_form(app: &TestApp, path: &str, authorization: Option<&str>, pairs: &[(&str, &str)]) -> Reply {
    let mut request = Request::post(path).header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
    if let Some(authorization) = authorization {
        request = request.header(header::AUTHORIZATION, authorization);
    }
    app.send(request.body(Body::from(form_body(pairs))).unwrap()).await
}

/// The authorization request alice's SSO pushes: code flow, PKCE S256, state and nonce.
fn request_params<'a>(extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut pairs = vec![
        ("response_type", "code"),
        ("redirect_uri", REDIRECT_URI),
        ("scope", "openid profile"),
        ("state", "xyz-state"),
        ("nonce", "n-0S6_WzA2Mj"),
        ("code_challenge", CHALLENGE),
        ("code_challenge_method", "S256"),
        ("login_hint", "alice"),
    ];
    for (name, value) in extra {
        pairs.retain(|(n, _)| n != name);
        if !value.is_empty() {
            pairs.push((name, value));
        }
    }
    pairs
}

async fn par(app: &TestApp, rp: &Rp, extra: &[(&str, &str)]) -> Reply {
    post_form(app, "/oidc/par", Some(&rp.basic()), &request_params(extra)).await
}

async fn request_uri(app: &TestApp, rp: &Rp, extra: &[(&str, &str)]) -> String {
    let pushed = par(app, rp, extra).await;
    assert_eq!(pushed.status, StatusCode::CREATED, "{:?}", pushed.body);
    assert_eq!(pushed.body["expires_in"], 90);
    pushed.body["request_uri"].as_str().unwrap().to_owned()
}

fn query(path: &str, pairs: &[(&str, &str)]) -> String {
    format!("{path}?{}", form_body(pairs))
}

async fn get(app: &TestApp, path: &str, cookie: Option<&str>) -> Reply {
    let mut request = Request::get(path);
    if let Some(cookie) = cookie {
        request = request.header(header::COOKIE, cookie);
    }
    app.send(request.body(Body::empty()).unwrap()).await
}

/// A sign-in begun in a browser: its page path and the cookie binding it to that browser.
struct Browser {
    page: String,
    cookie: String,
}

async fn begin(app: &TestApp, rp: &Rp, request_uri: &str) -> Browser {
    let reply = get(
        app,
        &query("/oidc/authorize", &[("client_id", &rp.client_id), ("request_uri", request_uri)]),
        None,
    )
    .await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER, "{:?}", reply.body);
    let page = reply.headers[header::LOCATION].to_str().unwrap().to_owned();
    let set_cookie = reply.headers[header::SET_COOKIE].to_str().unwrap();
    assert!(set_cookie.starts_with("__Host-countersign-oidc-"), "{set_cookie}");
    for attribute in ["Path=/", "Secure", "HttpOnly", "SameSite=Lax"] {
        assert!(set_cookie.contains(attribute), "{set_cookie}");
    }
    let cookie = set_cookie.split(';').next().unwrap().to_owned();
    Browser { page, cookie }
}

/// The number the sign-in page shows.
async fn shown_number(app: &TestApp, browser: &Browser) -> String {
    let page = get(app, &browser.page, Some(&browser.cookie)).await;
    assert_eq!(page.status, StatusCode::OK, "{:?}", page.body);
    assert_eq!(page.headers["cache-control"], "no-store");
    let html = page.body.as_str().unwrap();
    let start = html.find(r#"id="number""#).unwrap();
    let number = &html[start..];
    let number = &number[number.find('>').unwrap() + 1..number.find("</p>").unwrap()];
    number.trim().to_owned()
}

/// The phone answers its pending challenge with `number`.
async fn phone_answers(app: &TestApp, phone: &mut TestDevice, number: &str, decision: Decision) -> Value {
    let pending = signed_get(app, phone, "/device/v1/challenges").await;
    let pending: PendingChallenges = serde_json::from_value(pending.body).unwrap();
    let signed = pending.challenges.last().expect("a pending challenge");
    let details = phone.verify_details(signed).clone();
    let id = details.challenge_id.as_str().to_owned();
    let response = phone.answer(&details, decision, number);
    let reply = app
        .device_post(&format!("/device/v1/challenges/{id}/response"), &serde_json::to_vec(&response).unwrap())
        .await;
    reply.body
}

async fn finish(app: &TestApp, browser: &Browser) -> Reply {
    let request = Request::post(format!("{}/finish", browser.page))
        .header(header::COOKIE, &browser.cookie)
        .header(header::ORIGIN, ISSUER);
    app.send(request.body(Body::empty()).unwrap()).await
}

/// The query of the redirect back to the client.
fn redirect_query(reply: &Reply) -> Vec<(String, String)> {
    assert_eq!(reply.status, StatusCode::SEE_OTHER, "{:?}", reply.body);
    let location = url::Url::parse(reply.headers[header::LOCATION].to_str().unwrap()).unwrap();
    assert_eq!(
        format!("{}://{}{}", location.scheme(), location.host_str().unwrap(), location.path()),
        REDIRECT_URI
    );
    location.query_pairs().into_owned().collect()
}

fn param<'a>(query: &'a [(String, String)], name: &str) -> Option<&'a str> {
    query.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
}

async fn exchange(app: &TestApp, rp: &Rp, code: &str, verifier: &str) -> Reply {
    let pairs = [
        ("grant_type", "authorization_code"),
        ("code", code),
        ("redirect_uri", REDIRECT_URI),
        ("code_verifier", verifier),
    ];
    post_form(app, "/oidc/token", Some(&rp.basic()), &pairs).await
}

/// alice with a phone, a registered relying party, and a code from a full approved sign-in.
async fn signed_in(engine: Engine) -> (TestApp, Rp, TestDevice, String) {
    let (app, key) = app_with_user(engine, "alice").await;
    let mut phone = enrolled_device(&app, &key, "alice", PushRegistration::None).await;
    let rp = rp(&app, "Acme SSO").await;
    let uri = request_uri(&app, &rp, &[]).await;
    let browser = begin(&app, &rp, &uri).await;
    let number = shown_number(&app, &browser).await;
    assert_eq!(phone_answers(&app, &mut phone, &number, Decision::Approve).await["outcome"], "approved");
    let status = get(&app, &format!("{}/status", browser.page), Some(&browser.cookie)).await;
    assert_eq!(status.body["state"], "approved");
    let back = finish(&app, &browser).await;
    let query = redirect_query(&back);
    assert_eq!(param(&query, "state"), Some("xyz-state"));
    assert_eq!(param(&query, "iss"), Some(ISSUER), "RFC 9207: iss in every authorization response");
    let code = param(&query, "code").unwrap().to_owned();
    (app, rp, phone, code)
}

/// The JWKS as jsonwebtoken keys.
async fn jwks(app: &TestApp) -> jsonwebtoken::jwk::JwkSet {
    let reply = app.get("/oidc/jwks", None).await;
    serde_json::from_value(reply.body).unwrap()
}

async fn verify(app: &TestApp, token: &str, audience: &str) -> Value {
    let header = jsonwebtoken::decode_header(token).unwrap();
    let set = jwks(app).await;
    let jwk = set.find(header.kid.as_deref().unwrap()).unwrap();
    let key = jsonwebtoken::DecodingKey::from_jwk(jwk).unwrap();
    let mut validation = jsonwebtoken::Validation::new(header.alg);
    validation.set_audience(&[audience]);
    validation.set_issuer(&[ISSUER]);
    // The test clock is in 2026-11-28; the tokens are dated by it.
    validation.validate_exp = false;
    jsonwebtoken::decode::<Value>(token, &key, &validation).unwrap().claims
}

async fn the_code_flow_signs_alice_in_with_a_number_on_her_phone(engine: Engine) {
    let (app, rp, _, code) = signed_in(engine).await;
    let tokens = exchange(&app, &rp, &code, VERIFIER).await;
    assert_eq!(tokens.status, StatusCode::OK, "{:?}", tokens.body);
    assert_eq!(tokens.headers["cache-control"], "no-store");
    assert_eq!(
        (tokens.body["token_type"].clone(), tokens.body["scope"].clone()),
        (json!("Bearer"), json!("openid profile"))
    );
    let id_token = tokens.body["id_token"].as_str().unwrap();
    assert_eq!(jsonwebtoken::decode_header(id_token).unwrap().typ.as_deref(), Some("JWT"));
    let claims = verify(&app, id_token, &rp.client_id).await;
    let alice = app.store.user_by_username("alice").await.unwrap().unwrap();
    assert_eq!(claims["sub"], alice.id.to_string(), "sub is the user's id, never the name");
    assert_eq!(claims["nonce"], "n-0S6_WzA2Mj");
    assert_eq!(claims["acr"], countersign::oidc::authorization::ACR_NUMBER_MATCHED_PUSH);
    assert_eq!(claims["amr"], json!(["mca", "swk"]));
    assert_eq!(claims["preferred_username"], "alice");
    assert_eq!(claims["auth_time"], app.clock_now().unix_timestamp());

    let access = tokens.body["access_token"].as_str().unwrap();
    assert_eq!(jsonwebtoken::decode_header(access).unwrap().typ.as_deref(), Some("at+jwt"));
    let info = app.get("/oidc/userinfo", Some(access)).await;
    assert_eq!(info.status, StatusCode::OK, "{:?}", info.body);
    assert_eq!(info.body, json!({ "sub": alice.id.to_string(), "preferred_username": "alice" }));
    // An ID token is never an access token.
    let refused = app.get("/oidc/userinfo", Some(id_token)).await;
    assert_eq!(
        (refused.status, refused.body["error"].clone()),
        (StatusCode::UNAUTHORIZED, json!("invalid_token"))
    );
    assert_eq!(refused.headers["www-authenticate"], r#"Bearer error="invalid_token""#);

    let actions: Vec<String> = audit_actions(&app).await.into_iter().map(|(a, _)| a).collect();
    for expected in [
        "oidc.request_pushed",
        "oidc.sign_in_started",
        "challenge.redeemed",
        "oidc.sign_in_finished",
        "oidc.tokens_issued",
    ] {
        assert!(actions.iter().any(|a| a == expected), "{expected} missing: {actions:?}");
    }
}

/// A code presented twice leaked: the second use is refused and revokes the tokens the first
/// issued (RFC 6749 §4.1.2).
async fn a_second_redemption_revokes_what_the_first_issued(engine: Engine) {
    let (app, rp, _, code) = signed_in(engine).await;
    let first = exchange(&app, &rp, &code, VERIFIER).await;
    let access = first.body["access_token"].as_str().unwrap().to_owned();
    assert_eq!(app.get("/oidc/userinfo", Some(&access)).await.status, StatusCode::OK);
    let again = exchange(&app, &rp, &code, VERIFIER).await;
    assert_eq!(
        (again.status, again.body["error"].clone()),
        (StatusCode::BAD_REQUEST, json!("invalid_grant"))
    );
    let revoked = app.get("/oidc/userinfo", Some(&access)).await;
    assert_eq!(revoked.status, StatusCode::UNAUTHORIZED, "{:?}", revoked.body);
    let refusals: Vec<Value> = audit_actions(&app)
        .await
        .into_iter()
        .filter(|(a, _)| a == "oidc.code_refused")
        .map(|(_, d)| d)
        .collect();
    assert_eq!(refusals.last().unwrap()["reason"], "replayed");
}

/// A code is bound to its client: client B presenting client A's code gets nothing, and the
/// code still works for A.
async fn a_code_of_client_a_is_refused_to_client_b(engine: Engine) {
    let (app, rp_a, _, code) = signed_in(engine).await;
    let rp_b = rp(&app, "Other SSO").await;
    let stolen = exchange(&app, &rp_b, &code, VERIFIER).await;
    assert_eq!(
        (stolen.status, stolen.body["error"].clone()),
        (StatusCode::BAD_REQUEST, json!("invalid_grant"))
    );
    assert_eq!(exchange(&app, &rp_a, &code, VERIFIER).await.status, StatusCode::OK);
}

/// PKCE: a wrong verifier, or none, gets nothing; the right one still works afterwards.
async fn the_code_needs_its_pkce_verifier(engine: Engine) {
    let (app, rp, _, code) = signed_in(engine).await;
    let wrong = exchange(&app, &rp, &code, "wrong-verifier-wrong-verifier-wrong-verifier-00").await;
    assert_eq!(wrong.body["error"], "invalid_grant");
    let pairs =
        [("grant_type", "authorization_code"), ("code", code.as_str()), ("redirect_uri", REDIRECT_URI)];
    let missing = post_form(&app, "/oidc/token", Some(&rp.basic()), &pairs).await;
    assert_eq!(missing.body["error"], "invalid_grant");
    let other_redirect = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", "https://rp.example/cb?tenant=1"),
        ("code_verifier", VERIFIER),
    ];
    assert_eq!(
        post_form(&app, "/oidc/token", Some(&rp.basic()), &other_redirect).await.body["error"],
        "invalid_grant"
    );
    assert_eq!(exchange(&app, &rp, &code, VERIFIER).await.status, StatusCode::OK);
}

/// A code lives 60 seconds.
async fn an_expired_code_is_refused(engine: Engine) {
    let (app, rp, _, code) = signed_in(engine).await;
    app.advance(time::Duration::seconds(61)).await;
    assert_eq!(exchange(&app, &rp, &code, VERIFIER).await.body["error"], "invalid_grant");
}

/// `/oidc/authorize` is public: a bare `login_hint` must never send a push, or it is a
/// push-bombing endpoint. The client is told to push its request; nobody is prompted.
async fn a_bare_login_hint_sends_no_push(engine: Engine) {
    let (app, key) = app_with_user(engine, "alice").await;
    let phone = enrolled_device(&app, &key, "alice", PushRegistration::None).await;
    let rp = rp(&app, "Acme SSO").await;
    let mut pairs = request_params(&[]);
    pairs.push(("client_id", rp.client_id.as_str()));
    let reply = get(&app, &query("/oidc/authorize", &pairs), None).await;
    let back = redirect_query(&reply);
    assert_eq!(param(&back, "error"), Some("invalid_request"));
    assert_eq!(param(&back, "state"), Some("xyz-state"));
    assert_eq!(param(&back, "iss"), Some(ISSUER));
    assert!(reply.headers.get(header::SET_COOKIE).is_none());
    let pending = signed_get(&app, &phone, "/device/v1/challenges").await;
    assert_eq!(pending.body["challenges"], json!([]), "no prompt reached the phone");
    let actions = audit_actions(&app).await;
    assert!(
        !actions.iter().any(|(a, _)| a == "challenge.pending" || a == "oidc.sign_in_started"),
        "{actions:?}"
    );
}

/// A redirect URI is matched byte for byte: every near miss gets our error page, never a
/// redirect (an open redirector would hand codes or errors to an attacker's site).
async fn redirect_uri_mutations_get_a_page_and_no_location(engine: Engine) {
    let (app, _key) = app_with_user(engine, "alice").await;
    let rp = rp(&app, "Acme SSO").await;
    let mutations = [
        "https://rp.example/cb/",
        "https://RP.example/cb",
        "https://rp.example/CB",
        "https://rp.example/cb?x=1",
        "https://rp.example/cb#frag",
        "https://user@rp.example/cb",
        "https://rp.example/%63b",
        "https://rp.example/a/../cb",
        "https://rp.example/./cb",
        "https://rp.example:443/cb",
        "https://rp.example:8443/cb",
        "http://rp.example/cb",
        " https://rp.example/cb",
        "https://rp.example/cb ",
        "https://rp.example/cb%20",
        "https://rp.example.evil.test/cb",
        "https://evil.test/cb",
        "https://rp.example/cb?tenant=2",
        "https://rp.example/cb?tenant=1&tenant=1",
        "https://rp.example//cb",
    ];
    for mutated in mutations {
        let mut pairs = request_params(&[("redirect_uri", mutated)]);
        pairs.push(("client_id", rp.client_id.as_str()));
        let reply = get(&app, &query("/oidc/authorize", &pairs), None).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{mutated}: {:?}", reply.body);
        assert!(reply.headers.get(header::LOCATION).is_none(), "{mutated}");
        // PAR refuses it too (a JSON error to the client, nothing stored).
        let pushed = par(&app, &rp, &[("redirect_uri", mutated)]).await;
        assert_eq!(
            (pushed.status, pushed.body["error"].clone()),
            (StatusCode::BAD_REQUEST, json!("invalid_request")),
            "{mutated}"
        );
    }
    // A duplicated redirect_uri parameter is no match either.
    let reply = get(
        &app,
        &format!(
            "/oidc/authorize?client_id={}&redirect_uri={REDIRECT_URI}&redirect_uri={REDIRECT_URI}",
            rp.client_id
        ),
        None,
    )
    .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert!(reply.headers.get(header::LOCATION).is_none());
    // An unknown client: a page too.
    let mut pairs = request_params(&[]);
    pairs.push(("client_id", "AAAAAAAAAAAAAAAAAAAAAA"));
    let reply = get(&app, &query("/oidc/authorize", &pairs), None).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert!(reply.headers.get(header::LOCATION).is_none());
}

/// The sign-in is bound to the browser that started it: a forwarded page link, another
/// browser's cookie or none at all shows nothing and finishes nothing.
async fn another_browser_cannot_see_or_finish_the_sign_in(engine: Engine) {
    let (app, key) = app_with_user(engine, "alice").await;
    let _phone = enrolled_device(&app, &key, "alice", PushRegistration::None).await;
    let rp = rp(&app, "Acme SSO").await;
    let uri = request_uri(&app, &rp, &[]).await;
    let browser = begin(&app, &rp, &uri).await;
    let forged = format!("{}=AAAA", browser.cookie.split('=').next().unwrap());
    for cookie in [None, Some(forged.as_str())] {
        let page = get(&app, &browser.page, cookie).await;
        assert_eq!(page.status, StatusCode::NOT_FOUND);
        assert!(!page.body.as_str().unwrap().contains("id=\"number\""));
        let status = get(&app, &format!("{}/status", browser.page), cookie).await;
        assert_eq!(status.status, StatusCode::NOT_FOUND);
    }
    let request = Request::post(format!("{}/finish", browser.page)).header(header::COOKIE, &forged);
    assert_eq!(app.send(request.body(Body::empty()).unwrap()).await.status, StatusCode::NOT_FOUND);
    // A post from another site's page is refused even with the cookie.
    let request = Request::post(format!("{}/finish", browser.page))
        .header(header::COOKIE, &browser.cookie)
        .header(header::ORIGIN, "https://evil.test");
    assert_eq!(app.send(request.body(Body::empty()).unwrap()).await.status, StatusCode::FORBIDDEN);
    // A pushed request is used once.
    let again =
        get(&app, &query("/oidc/authorize", &[("client_id", &rp.client_id), ("request_uri", &uri)]), None)
            .await;
    assert_eq!(again.status, StatusCode::BAD_REQUEST);
    assert!(again.headers.get(header::LOCATION).is_none());
}

/// The phone says no: the client gets `access_denied`, with state and iss; nothing to redeem.
async fn a_denied_push_sends_access_denied(engine: Engine) {
    let (app, key) = app_with_user(engine, "alice").await;
    let mut phone = enrolled_device(&app, &key, "alice", PushRegistration::None).await;
    let rp = rp(&app, "Acme SSO").await;
    let uri = request_uri(&app, &rp, &[]).await;
    let browser = begin(&app, &rp, &uri).await;
    assert_eq!(shown_number(&app, &browser).await.len(), 3);
    assert_eq!(phone_answers(&app, &mut phone, "", Decision::Deny).await["outcome"], "denied");
    let back = redirect_query(&finish(&app, &browser).await);
    assert_eq!(param(&back, "error"), Some("access_denied"));
    assert_eq!((param(&back, "state"), param(&back, "iss")), (Some("xyz-state"), Some(ISSUER)));
    assert!(param(&back, "code").is_none());
    // Over: the page says so, a second finish changes nothing.
    assert_eq!(get(&app, &browser.page, Some(&browser.cookie)).await.status, StatusCode::GONE);
    assert_eq!(finish(&app, &browser).await.status, StatusCode::GONE);
}

/// Before the phone answers, finishing is refused and nothing is issued.
async fn an_unanswered_sign_in_cannot_finish(engine: Engine) {
    let (app, key) = app_with_user(engine, "alice").await;
    let _phone = enrolled_device(&app, &key, "alice", PushRegistration::None).await;
    let rp = rp(&app, "Acme SSO").await;
    let uri = request_uri(&app, &rp, &[]).await;
    let browser = begin(&app, &rp, &uri).await;
    assert_eq!(finish(&app, &browser).await.status, StatusCode::CONFLICT);
    assert_eq!(get(&app, &browser.page, Some(&browser.cookie)).await.status, StatusCode::OK, "still open");
}

/// What PAR refuses, each with an RFC 6749 code and nothing stored.
async fn pushed_requests_are_checked(engine: Engine) {
    let (app, _key) = app_with_user(engine, "alice").await;
    let rp = rp(&app, "Acme SSO").await;
    let unauthenticated = post_form(&app, "/oidc/par", None, &request_params(&[])).await;
    assert_eq!(
        (unauthenticated.status, unauthenticated.body["error"].clone()),
        (StatusCode::UNAUTHORIZED, json!("invalid_client"))
    );
    let wrong_secret = Rp { client_id: rp.client_id.clone(), secret: "nope".into() };
    assert_eq!(par(&app, &wrong_secret, &[]).await.body["error"], "invalid_client");
    for (extra, error) in [
        (&[("login_hint", "")][..], "invalid_request"),
        (&[("code_challenge_method", "plain")][..], "invalid_request"),
        (&[("code_challenge_method", ""), ("code_challenge", "")][..], "invalid_request"),
        (&[("scope", "profile")][..], "invalid_scope"),
        (&[("response_type", "token")][..], "unsupported_response_type"),
        (&[("request_uri", "urn:ietf:params:oauth:request_uri:x")][..], "invalid_request"),
        (&[("request", "eyJhbGciOiJub25lIn0.e30.")][..], "request_not_supported"),
        (&[("prompt", "none")][..], "login_required"),
        (&[("client_id", "AAAAAAAAAAAAAAAAAAAAAA")][..], "invalid_request"),
    ] {
        let reply = par(&app, &rp, extra).await;
        assert_eq!(reply.body["error"], error, "{extra:?}: {:?}", reply.body);
        assert!(reply.status.is_client_error(), "{extra:?}");
    }
    let not_a_form = app
        .send(
            Request::post("/oidc/par")
                .header(header::AUTHORIZATION, rp.basic())
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from("{}"))
                .unwrap(),
        )
        .await;
    assert_eq!(not_a_form.body["error"], "invalid_request");
    let repeated = post_form(&app, "/oidc/par", Some(&rp.basic()), &[("state", "a"), ("state", "b")]).await;
    assert_eq!(repeated.body["error"], "invalid_request");
    let pushed: Vec<_> =
        audit_actions(&app).await.into_iter().filter(|(a, _)| a == "oidc.request_pushed").collect();
    assert!(pushed.is_empty(), "nothing was pushed: {pushed:?}");
}

/// Unknown users and users with no factor look alike, and nobody is prompted.
async fn an_unknown_user_is_refused_like_one_without_a_factor(engine: Engine) {
    let (app, _key) = app_with_user(engine, "alice").await;
    let rp = rp(&app, "Acme SSO").await;
    let mut pages = Vec::new();
    for user in ["alice", "nobody"] {
        let uri = request_uri(&app, &rp, &[("login_hint", user)]).await;
        let reply = get(
            &app,
            &query("/oidc/authorize", &[("client_id", &rp.client_id), ("request_uri", &uri)]),
            None,
        )
        .await;
        assert_eq!(reply.status, StatusCode::FORBIDDEN, "{user}");
        let html = reply.body.as_str().unwrap().to_owned();
        assert!(html.contains("error=access_denied"), "a way back to the client: {html}");
        pages.push(html);
    }
    assert_eq!(pages[0], pages[1], "no enumeration");
}

/// A passkey for alice, registered through the operator's enrollment link with a soft
/// authenticator.
async fn register_passkey(app: &TestApp) -> SoftKey {
    let mut soft_key = SoftKey::new();
    let begun = app.state.passkeys.create_operator_link("alice", true, None).await.unwrap();
    let url = begun.url.expose_secret().to_owned();
    let code = url.strip_prefix(&format!("{ORIGIN}/passkeys/enroll?code=")).unwrap().to_owned();
    let options =
        app.device_post("/passkeys/enroll/options", json!({ "code": code }).to_string().as_bytes()).await;
    let credential = soft_key.create(&options.body["public_key"]).await;
    let body = json!({ "code": code, "credential": credential }).to_string();
    assert_eq!(
        app.device_post("/passkeys/enroll/credential", body.as_bytes()).await.status,
        StatusCode::CREATED
    );
    soft_key
}

/// The page token of the passkey ceremony the sign-in page runs (and no number shown).
async fn shown_passkey_token(app: &TestApp, browser: &Browser) -> String {
    let page = get(app, &browser.page, Some(&browser.cookie)).await;
    assert_eq!(page.status, StatusCode::OK, "{:?}", page.body);
    let html = page.body.as_str().unwrap();
    assert!(!html.contains(r#"id="number""#), "no number for a passkey sign-in");
    assert!(!html.contains("Use a passkey instead"));
    let start = html.find(r#"data-token=""#).unwrap() + r#"data-token=""#.len();
    html[start..start + html[start..].find('"').unwrap()].to_owned()
}

/// The soft authenticator answers the passkey sign-in of page token `token`.
async fn passkey_approves(app: &TestApp, soft_key: &mut SoftKey, token: &str) {
    let options =
        app.device_post("/passkeys/sign-in/options", json!({ "token": token }).to_string().as_bytes()).await;
    let assertion = soft_key.get(&options.body["public_key"]).await;
    let body = json!({ "token": token, "credential": assertion }).to_string();
    assert_eq!(
        app.device_post("/passkeys/sign-in/assertion", body.as_bytes()).await.body["state"],
        "approved"
    );
}

/// `acr_values=phr` allows only a passkey: the page runs the passkey ceremony (no number, no
/// push), and the ID token says `phr`.
async fn acr_phr_signs_in_with_a_passkey_only(engine: Engine) {
    let (app, key) = app_with_user(engine, "alice").await;
    let phone = enrolled_device(&app, &key, "alice", PushRegistration::None).await;
    let mut soft_key = register_passkey(&app).await;

    let rp = rp(&app, "Acme SSO").await;
    let uri = request_uri(&app, &rp, &[("acr_values", "phr")]).await;
    let browser = begin(&app, &rp, &uri).await;
    let token = shown_passkey_token(&app, &browser).await;
    let pending = signed_get(&app, &phone, "/device/v1/challenges").await;
    assert_eq!(pending.body["challenges"], json!([]), "no push for acr=phr");

    passkey_approves(&app, &mut soft_key, &token).await;
    let query = redirect_query(&finish(&app, &browser).await);
    let tokens = exchange(&app, &rp, param(&query, "code").unwrap(), VERIFIER).await;
    let claims = verify(&app, tokens.body["id_token"].as_str().unwrap(), &rp.client_id).await;
    assert_eq!((claims["acr"].clone(), claims["amr"].clone()), (json!("phr"), json!(["mfa", "user"])));
}

/// The discovery document names this issuer byte for byte, and only what is served.
async fn discovery_names_the_issuer_and_what_is_served(engine: Engine) {
    let (app, _key) = app_with_user(engine, "alice").await;
    let doc = app.get("/.well-known/openid-configuration", None).await;
    assert_eq!(doc.status, StatusCode::OK);
    assert_eq!(doc.body["issuer"], ISSUER);
    assert_eq!(doc.body["jwks_uri"], format!("{ISSUER}/oidc/jwks"));
    assert_eq!(doc.body["code_challenge_methods_supported"], json!(["S256"]));
    assert_eq!(doc.body["response_types_supported"], json!(["code", "id_token"]));
    assert_eq!(doc.body["require_pushed_authorization_requests"], true);
    assert_eq!(doc.body["authorization_response_iss_parameter_supported"], true);
    assert!(
        doc.body.get("refresh_token").is_none()
            && !doc.body["grant_types_supported"].to_string().contains("refresh")
    );
    for endpoint in [
        "authorization_endpoint",
        "token_endpoint",
        "userinfo_endpoint",
        "pushed_authorization_request_endpoint",
    ] {
        let url = doc.body[endpoint].as_str().unwrap();
        let path = url.strip_prefix(ISSUER).unwrap();
        let probe = app.get(path, None).await;
        assert_ne!(probe.status, StatusCode::NOT_FOUND, "{endpoint} is served");
    }
    let verifier = URL_SAFE_NO_PAD.encode([7u8; 32]);
    assert!(!countersign::oidc::authorization::pkce_matches(&verifier, CHALLENGE));
}

/// A client registered with keys (`private_key_jwt`) may sign its request (RFC 9101): the
/// request object's `login_hint` is vouched for like a pushed one, so it prompts the user.
async fn a_signed_request_object_names_the_user(engine: Engine) {
    let (app, key) = app_with_user(engine, "alice").await;
    let mut phone = enrolled_device(&app, &key, "alice", PushRegistration::None).await;
    let (client_id, signer) = keyed_rp(&app).await;
    let object = signer.sign(&request_object(&app, &client_id, "ro-1"));
    let reply =
        get(&app, &query("/oidc/authorize", &[("client_id", &client_id), ("request", &object)]), None).await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER, "{:?}", reply.body);
    let page = reply.headers[header::LOCATION].to_str().unwrap().to_owned();
    let cookie = reply.headers[header::SET_COOKIE].to_str().unwrap().split(';').next().unwrap().to_owned();
    let browser = Browser { page, cookie };
    let number = shown_number(&app, &browser).await;
    assert_eq!(phone_answers(&app, &mut phone, &number, Decision::Approve).await["outcome"], "approved");
    let back = redirect_query(&finish(&app, &browser).await);
    assert_eq!(param(&back, "state"), Some("ro-state"));
    assert!(param(&back, "code").is_some());
}

/// Forged, stale, misaddressed and replayed request objects prompt nobody: an error page (the
/// redirect URI inside cannot be trusted), no cookie, audited.
async fn forged_request_objects_prompt_nobody(engine: Engine) {
    let (app, key) = app_with_user(engine, "alice").await;
    let phone = enrolled_device(&app, &key, "alice", PushRegistration::None).await;
    let (client_id, signer) = keyed_rp(&app).await;
    let other = TestKey::es256("rp-key");
    let claims = request_object(&app, &client_id, "ro-2");
    let with = |name: &str, value: Value| {
        let mut c = claims.clone();
        c[name] = value;
        c
    };
    let now = app.clock_now().unix_timestamp();
    let good = signer.sign(&claims);
    let forged = [
        ("another key", other.sign(&claims)),
        ("alg none", countersign_e2e::jose::forge(&json!({ "alg": "none", "kid": "rp-key" }), &claims, b"")),
        (
            "embedded jwk",
            signer.sign_raw(&json!({ "alg": "ES256", "kid": "rp-key", "jwk": other.public_jwk() }), &claims),
        ),
        ("expired", signer.sign(&with("exp", json!(now - 120)))),
        ("string exp", signer.sign(&with("exp", json!((now + 60).to_string())))),
        ("another audience", signer.sign(&with("aud", json!("https://elsewhere.example")))),
        ("another issuer", signer.sign(&with("iss", json!("AAAAAAAAAAAAAAAAAAAAAA")))),
        (
            "no jti",
            signer.sign(&{
                let mut c = claims.clone();
                c.as_object_mut().unwrap().remove("jti");
                c
            }),
        ),
    ];
    for (what, object) in forged {
        let reply =
            get(&app, &query("/oidc/authorize", &[("client_id", &client_id), ("request", &object)]), None)
                .await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{what}");
        assert!(
            reply.headers.get(header::LOCATION).is_none() && reply.headers.get(header::SET_COOKIE).is_none(),
            "{what}"
        );
        assert!(reply.body.as_str().unwrap().contains("invalid_request_object"), "{what}");
    }
    assert_eq!(
        get(&app, &query("/oidc/authorize", &[("client_id", &client_id), ("request", &good)]), None)
            .await
            .status,
        StatusCode::SEE_OTHER
    );
    let replayed =
        get(&app, &query("/oidc/authorize", &[("client_id", &client_id), ("request", &good)]), None).await;
    assert_eq!(replayed.status, StatusCode::BAD_REQUEST, "a request object is used once");
    let pending = signed_get(&app, &phone, "/device/v1/challenges").await;
    assert_eq!(pending.body["challenges"].as_array().unwrap().len(), 1, "only the good one prompted");
    // A client without keys cannot sign requests at all.
    let secret_rp = rp(&app, "Acme SSO").await;
    let reply = get(
        &app,
        &query("/oidc/authorize", &[("client_id", &secret_rp.client_id), ("request", &good)]),
        None,
    )
    .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    let refused =
        audit_actions(&app).await.into_iter().filter(|(a, _)| a == "oidc.request_object_refused").count();
    assert!(refused >= 8, "{refused}");
}

/// A `private_key_jwt` client and the key it signs with.
async fn keyed_rp(app: &TestApp) -> (String, TestKey) {
    let signer = TestKey::es256("rp-key");
    let jwks =
        countersign::oidc::clients::validate_jwks(&countersign_e2e::jose::jwks_json(&[&signer])).unwrap();
    let new = NewClient {
        name: "Keyed SSO".into(),
        redirect_uris: vec![REDIRECT_URI.into()],
        auth_method: AuthMethod::PrivateKeyJwt,
        keys: ClientKeys::Inline(jwks),
        id_token_alg: IdTokenAlg::Es256,
        ciba: None,
    };
    let created = create_client(app.store.as_ref(), app.clock.as_ref(), Actor::Cli, new).await.unwrap();
    (created.client.client_id.0, signer)
}

fn request_object(app: &TestApp, client_id: &str, jti: &str) -> Value {
    let now = app.clock_now().unix_timestamp();
    json!({
        "iss": client_id, "aud": ISSUER, "iat": now, "exp": now + 60, "jti": jti,
        "client_id": client_id, "response_type": "code", "redirect_uri": REDIRECT_URI, "scope": "openid",
        "state": "ro-state", "nonce": "ro-nonce", "code_challenge": CHALLENGE, "code_challenge_method": "S256",
        "login_hint": "alice",
    })
}

/// No input makes an OIDC endpoint fail with a 500: junk, wrong types, invalid percent-encoding,
/// non-UTF-8, huge or repeated parameters, wrong content types, at every endpoint.
async fn no_input_makes_an_oidc_endpoint_fail(engine: Engine) {
    let (app, _key) = app_with_user(engine, "alice").await;
    let rp = rp(&app, "Acme SSO").await;
    let huge = "x".repeat(20_000);
    let bodies: Vec<Vec<u8>> = vec![
        b"".to_vec(),
        b"%".to_vec(),
        b"%zz=%zz".to_vec(),
        vec![0xff, 0xfe, b'=', 0x80],
        b"grant_type=authorization_code&code=&code_verifier=".to_vec(),
        b"grant_type=authorization_code&grant_type=authorization_code".to_vec(),
        format!("code={huge}&grant_type=authorization_code").into_bytes(),
        b"{\"grant_type\":\"authorization_code\"}".to_vec(),
        b"request=a.b.c&client_id=x".to_vec(),
        b"client_assertion_type=urn:ietf:params:oauth:client-assertion-type:jwt-bearer&client_assertion=a.b.c".to_vec(),
        (0..100).map(|i| format!("p{i}=v&")).collect::<String>().into_bytes(),
    ];
    for path in ["/oidc/par", "/oidc/token", "/oidc/authorize", "/oidc/userinfo"] {
        for body in &bodies {
            for (content_type, authorization) in [
                ("application/x-www-form-urlencoded", Some(rp.basic())),
                ("application/x-www-form-urlencoded", Some("Basic !!!".to_owned())),
                ("application/json", None),
                ("text/plain; charset=utf-8", Some("Bearer a.b.c".to_owned())),
            ] {
                let mut request = Request::post(path).header(header::CONTENT_TYPE, content_type);
                if let Some(authorization) = &authorization {
                    request = request.header(header::AUTHORIZATION, authorization.as_str());
                }
                let reply = app.send(request.body(Body::from(body.clone())).unwrap()).await;
                assert!(
                    reply.status.is_client_error() || reply.status.is_redirection(),
                    "{path} {content_type}: {} {:?}",
                    reply.status,
                    reply.body
                );
            }
        }
    }
    for query in [
        "",
        "?%",
        "?client_id=%ff",
        "?client_id=x&client_id=y",
        &format!("?client_id={}&request_uri={huge}", rp.client_id),
    ] {
        for path in [
            "/oidc/authorize",
            "/oidc/sign-in/not-a-uuid",
            "/oidc/sign-in/00000000-0000-0000-0000-000000000000/status",
        ] {
            let reply = get(&app, &format!("{path}{query}"), Some("__Host-countersign-oidc-x=y")).await;
            assert!(reply.status.is_client_error(), "{path}{query}: {}", reply.status);
        }
    }
}

/// "Use a passkey instead", posted from the sign-in page by `browser` (with `cookie`, from
/// `origin`).
async fn use_passkey_instead(app: &TestApp, browser: &Browser, cookie: Option<&str>, origin: &str) -> Reply {
    let mut request = Request::post(format!("{}/passkey", browser.page)).header(header::ORIGIN, origin);
    if let Some(cookie) = cookie {
        request = request.header(header::COOKIE, cookie);
    }
    app.send(request.body(Body::empty()).unwrap()).await
}

/// Whether the sign-in page offers "Use a passkey instead".
async fn offers_passkey_instead(app: &TestApp, browser: &Browser) -> bool {
    let page = get(app, &browser.page, Some(&browser.cookie)).await;
    assert_eq!(page.status, StatusCode::OK, "{:?}", page.body);
    let html = page.body.as_str().unwrap();
    html.contains(&format!(r#"action="{}/passkey""#, browser.page)) && html.contains("Use a passkey instead")
}

/// A push sign-in of alice (phone and passkey) in a browser: the page shows the number and
/// offers the passkey instead.
async fn push_sign_in_with_a_passkey(engine: Engine) -> (TestApp, Rp, TestDevice, SoftKey, Browser) {
    let (app, key) = app_with_user(engine, "alice").await;
    let phone = enrolled_device(&app, &key, "alice", PushRegistration::None).await;
    let soft_key = register_passkey(&app).await;
    let rp = rp(&app, "Acme SSO").await;
    let uri = request_uri(&app, &rp, &[]).await;
    let browser = begin(&app, &rp, &uri).await;
    assert_eq!(shown_number(&app, &browser).await.len(), 3);
    assert!(offers_passkey_instead(&app, &browser).await);
    (app, rp, phone, soft_key, browser)
}

/// The page's finish form ends in a 303 to the client, which browsers check against the page's
/// `form-action`: the policy allows the page itself and the client's redirect origin, nothing
/// else.
async fn the_sign_in_page_lets_its_form_reach_only_the_client(engine: Engine) {
    let (app, _rp, _phone, _soft_key, browser) = push_sign_in_with_a_passkey(engine).await;
    let page = get(&app, &browser.page, Some(&browser.cookie)).await;
    let policy = page.headers[header::CONTENT_SECURITY_POLICY].to_str().unwrap();
    let form_action: Vec<&str> =
        policy.split(';').map(str::trim).filter(|d| d.starts_with("form-action")).collect();
    assert_eq!(form_action, ["form-action 'self' https://rp.example"], "{policy}");
    assert!(policy.contains("default-src 'none'") && policy.contains("script-src 'self'"), "{policy}");
}

/// The user trades the push for a passkey: the push is cancelled (audited, gone from the
/// phone), the page runs the passkey ceremony, and the ID token says `phr`.
async fn a_push_sign_in_switches_to_a_passkey_and_ends_with_phr(engine: Engine) {
    let (app, rp, phone, mut soft_key, browser) = push_sign_in_with_a_passkey(engine).await;
    // Posted from the page as the passkeys' origin (`localhost` for a loopback server).
    assert_ne!(ORIGIN, ISSUER);
    let switched = use_passkey_instead(&app, &browser, Some(&browser.cookie), ORIGIN).await;
    assert_eq!(switched.status, StatusCode::SEE_OTHER, "{:?}", switched.body);
    assert_eq!(switched.headers[header::LOCATION], browser.page.as_str());
    let pending = signed_get(&app, &phone, "/device/v1/challenges").await;
    assert_eq!(pending.body["challenges"], json!([]), "the phone no longer shows the push");
    let actions: Vec<String> = audit_actions(&app).await.into_iter().map(|(a, _)| a).collect();
    let cancelled = actions.iter().position(|a| a == "challenge.cancelled").expect("the push cancelled");
    let switched = actions.iter().position(|a| a == "oidc.sign_in_switched").expect("the switch audited");
    assert!(cancelled < switched, "{actions:?}");

    let token = shown_passkey_token(&app, &browser).await;
    let status = get(&app, &format!("{}/status", browser.page), Some(&browser.cookie)).await;
    assert_eq!(status.body["state"], "pending", "the page follows the passkey sign-in now");
    assert_eq!(finish(&app, &browser).await.status, StatusCode::CONFLICT, "not answered yet");
    passkey_approves(&app, &mut soft_key, &token).await;
    let query = redirect_query(&finish(&app, &browser).await);
    assert_eq!(param(&query, "state"), Some("xyz-state"));
    let tokens = exchange(&app, &rp, param(&query, "code").unwrap(), VERIFIER).await;
    assert_eq!(tokens.status, StatusCode::OK, "{:?}", tokens.body);
    let claims = verify(&app, tokens.body["id_token"].as_str().unwrap(), &rp.client_id).await;
    assert_eq!((claims["acr"].clone(), claims["amr"].clone()), (json!("phr"), json!(["mfa", "user"])));
    assert_eq!(claims["nonce"], "n-0S6_WzA2Mj");
}

/// The phone had the push on screen when the user switched: its late approval is refused, and
/// the sign-in stays a passkey one (the approval cannot finish it).
async fn a_cancelled_push_can_no_longer_be_approved_by_the_phone(engine: Engine) {
    let (app, _rp, mut phone, _soft_key, browser) = push_sign_in_with_a_passkey(engine).await;
    let number = shown_number(&app, &browser).await;
    let pending = signed_get(&app, &phone, "/device/v1/challenges").await;
    let pending: PendingChallenges = serde_json::from_value(pending.body).unwrap();
    let details = phone.verify_details(pending.challenges.last().expect("the push")).clone();
    let switched = use_passkey_instead(&app, &browser, Some(&browser.cookie), ISSUER).await;
    assert_eq!(switched.status, StatusCode::SEE_OTHER, "{:?}", switched.body);

    let answer = phone.answer(&details, Decision::Approve, &number);
    let path = format!("/device/v1/challenges/{}/response", details.challenge_id.as_str());
    let late = app.device_post(&path, &serde_json::to_vec(&answer).unwrap()).await;
    assert_eq!(late.status, StatusCode::CONFLICT, "{:?}", late.body);
    assert_eq!(late.body["error"], "challenge_not_pending");
    assert!(!audit_actions(&app).await.iter().any(|(a, _)| a == "challenge.approved"));
    shown_passkey_token(&app, &browser).await;
    assert_eq!(finish(&app, &browser).await.status, StatusCode::CONFLICT, "the passkey is still awaited");
}

/// Once the phone approved, the switch is refused with a page and changes nothing: the
/// approval still finishes the sign-in as a number-matched push.
async fn a_switch_after_the_phone_approved_is_refused(engine: Engine) {
    let (app, rp, mut phone, _soft_key, browser) = push_sign_in_with_a_passkey(engine).await;
    let number = shown_number(&app, &browser).await;
    assert_eq!(phone_answers(&app, &mut phone, &number, Decision::Approve).await["outcome"], "approved");
    assert!(!offers_passkey_instead(&app, &browser).await, "nothing to trade once answered");
    let events = audit_actions(&app).await.len();
    let refused = use_passkey_instead(&app, &browser, Some(&browser.cookie), ISSUER).await;
    assert_eq!(refused.status, StatusCode::CONFLICT);
    assert!(refused.headers.get(header::LOCATION).is_none());
    assert!(refused.body.as_str().unwrap().contains("passkey_switch_refused"), "{:?}", refused.body);
    assert_eq!(audit_actions(&app).await.len(), events, "nothing changed, nothing audited");
    assert_eq!(shown_number(&app, &browser).await, number, "still the push's page");

    let query = redirect_query(&finish(&app, &browser).await);
    let tokens = exchange(&app, &rp, param(&query, "code").unwrap(), VERIFIER).await;
    let claims = verify(&app, tokens.body["id_token"].as_str().unwrap(), &rp.client_id).await;
    assert_ne!(claims["acr"], "phr");
    assert!(claims["acr"].as_str().unwrap().starts_with("urn:"), "{claims}");
    // Over: no switch either.
    let over = use_passkey_instead(&app, &browser, Some(&browser.cookie), ISSUER).await;
    assert_eq!(over.status, StatusCode::GONE);
}

/// Without this browser's cookie, or from another site's page, nobody can switch the sign-in:
/// the push stays pending on the phone and the page unchanged.
async fn another_browser_cannot_switch_to_a_passkey(engine: Engine) {
    let (app, _rp, phone, _soft_key, browser) = push_sign_in_with_a_passkey(engine).await;
    let forged = format!("{}=AAAA", browser.cookie.split('=').next().unwrap());
    for cookie in [None, Some(forged.as_str())] {
        let refused = use_passkey_instead(&app, &browser, cookie, ISSUER).await;
        assert_eq!(refused.status, StatusCode::NOT_FOUND, "{cookie:?}");
    }
    let cross = use_passkey_instead(&app, &browser, Some(&browser.cookie), "https://evil.test").await;
    assert_eq!(cross.status, StatusCode::FORBIDDEN);
    let pending = signed_get(&app, &phone, "/device/v1/challenges").await;
    assert_eq!(pending.body["challenges"].as_array().unwrap().len(), 1, "the push is still on the phone");
    assert!(offers_passkey_instead(&app, &browser).await);
    let actions = audit_actions(&app).await;
    assert!(!actions.iter().any(|(a, _)| a == "oidc.sign_in_switched" || a == "challenge.cancelled"));
}

/// A user with no passkey is not offered one, and a hand-made switch is refused, changing
/// nothing.
async fn a_user_without_a_passkey_cannot_switch(engine: Engine) {
    let (app, key) = app_with_user(engine, "alice").await;
    let mut phone = enrolled_device(&app, &key, "alice", PushRegistration::None).await;
    let rp = rp(&app, "Acme SSO").await;
    let uri = request_uri(&app, &rp, &[]).await;
    let browser = begin(&app, &rp, &uri).await;
    assert!(!offers_passkey_instead(&app, &browser).await);
    let refused = use_passkey_instead(&app, &browser, Some(&browser.cookie), "null").await;
    assert_eq!(refused.status, StatusCode::CONFLICT);
    let number = shown_number(&app, &browser).await;
    assert_eq!(phone_answers(&app, &mut phone, &number, Decision::Approve).await["outcome"], "approved");
    let query = redirect_query(&finish(&app, &browser).await);
    assert!(param(&query, "code").is_some(), "the push still signs in");
}

/// Attack: whoever holds one client's secret (or the SSO's session) pushes requests for alice all
/// day. OIDC prompts go through the same gate as REST ones: they spend alice's push budget and
/// move her fatigue ladder, so the flood stops at the budget for OIDC and REST alike, and the
/// refused sign-in prompts nobody.
async fn a_client_cannot_push_bomb_past_the_users_budget(engine: Engine) {
    let (app, key) = app_with_user(engine, "alice").await;
    let phone = enrolled_device(&app, &key, "alice", PushRegistration::None).await;
    let rp = rp(&app, "Acme SSO").await;
    let mut started = 0;
    for _ in 0..20 {
        let uri = request_uri(&app, &rp, &[]).await;
        let reply = get(
            &app,
            &query("/oidc/authorize", &[("client_id", &rp.client_id), ("request_uri", &uri)]),
            None,
        )
        .await;
        if reply.status != StatusCode::SEE_OTHER {
            assert_eq!(reply.status, StatusCode::FORBIDDEN, "{:?}", reply.body);
            assert!(reply.headers.get(header::SET_COOKIE).is_none());
            break;
        }
        started += 1;
    }
    let budget = countersign::fatigue::model::Policy::default().push_budget;
    assert!(started <= budget as usize, "{started} prompts got through a budget of {budget}");
    let rest = app.post_json("/v1/challenges", &key, json!({ "username": "alice" })).await;
    assert!(
        rest.status == StatusCode::TOO_MANY_REQUESTS || rest.status == StatusCode::CONFLICT,
        "the REST app is refused too: {:?}",
        rest.body
    );
    let prompted = audit_actions(&app).await.into_iter().filter(|(a, _)| a == "oidc.sign_in_started").count();
    assert_eq!(prompted, started);
    let pending = signed_get(&app, &phone, "/device/v1/challenges").await;
    assert!(
        pending.body["challenges"].as_array().unwrap().len() <= 1,
        "superseded prompts are not stacked on the phone"
    );
}

/// Attack: a public client's id is public, so if it could name whom to prompt, anyone could
/// push-bomb anyone through it (and phish the approval into their own browser). Its pushed
/// requests are refused; nobody is prompted.
async fn a_public_client_cannot_name_whom_to_prompt(engine: Engine) {
    let (app, key) = app_with_user(engine, "alice").await;
    let phone = enrolled_device(&app, &key, "alice", PushRegistration::None).await;
    let new = NewClient {
        name: "CLI tool".into(),
        redirect_uris: vec!["http://127.0.0.1:8765/cb".into()],
        auth_method: AuthMethod::None,
        keys: ClientKeys::None,
        id_token_alg: IdTokenAlg::Es256,
        ciba: None,
    };
    let public = create_client(app.store.as_ref(), app.clock.as_ref(), Actor::Cli, new).await.unwrap().client;
    let mut pairs = request_params(&[("redirect_uri", "http://127.0.0.1:8765/cb")]);
    pairs.push(("client_id", public.client_id.0.as_str()));
    let pushed = post_form(&app, "/oidc/par", None, &pairs).await;
    assert_eq!(
        (pushed.status, pushed.body["error"].clone()),
        (StatusCode::BAD_REQUEST, json!("unauthorized_client"))
    );
    let pending = signed_get(&app, &phone, "/device/v1/challenges").await;
    assert_eq!(pending.body["challenges"], json!([]));
}

/// Attack: a request object and a client assertion are both JWTs signed by the client's key and
/// may be addressed to the issuer. Whoever's browser carries a request object (it rides in the
/// URL) must not be able to post it as a client assertion and so authenticate as the client.
async fn a_request_object_cannot_double_as_a_client_assertion(engine: Engine) {
    let (app, _key) = app_with_user(engine, "alice").await;
    let (client_id, signer) = keyed_rp(&app).await;
    let mut claims = request_object(&app, &client_id, "ro-confused");
    claims["sub"] = json!(client_id);
    let object = signer.sign(&claims);
    let as_assertion = [
        ("client_assertion_type", "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"),
        ("client_assertion", object.as_str()),
        ("client_id", client_id.as_str()),
        ("response_type", "code"),
        ("redirect_uri", REDIRECT_URI),
        ("scope", "openid"),
        ("code_challenge", CHALLENGE),
        ("code_challenge_method", "S256"),
        ("login_hint", "alice"),
    ];
    let pushed = post_form(&app, "/oidc/par", None, &as_assertion).await;
    assert_eq!(
        (pushed.status, pushed.body["error"].clone()),
        (StatusCode::UNAUTHORIZED, json!("invalid_client"))
    );
    let refused =
        audit_actions(&app).await.into_iter().rev().find(|(a, _)| a == "oidc_client.auth_refused").unwrap().1;
    assert_eq!(refused["reason"], "assertion_is_a_request");
    let reply =
        get(&app, &query("/oidc/authorize", &[("client_id", &client_id), ("request", &object)]), None).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert!(reply.body.as_str().unwrap().contains("invalid_request_object"));
}

/// A database copy must not hold client credentials: a pushed request is stored without the
/// `client_secret` (or assertion) a `client_secret_post` client sent with it.
async fn a_pushed_request_is_stored_without_client_credentials(engine: Engine) {
    let (app, _key) = app_with_user(engine, "alice").await;
    let new = NewClient {
        name: "Post SSO".into(),
        redirect_uris: vec![REDIRECT_URI.into()],
        auth_method: AuthMethod::ClientSecretPost,
        keys: ClientKeys::None,
        id_token_alg: IdTokenAlg::Es256,
        ciba: None,
    };
    let created = create_client(app.store.as_ref(), app.clock.as_ref(), Actor::Cli, new).await.unwrap();
    let (client_id, secret) =
        (created.client.client_id.clone(), created.secret.unwrap().expose_secret().to_owned());
    let mut pairs = request_params(&[]);
    pairs.push(("client_id", client_id.0.as_str()));
    pairs.push(("client_secret", secret.as_str()));
    let pushed = post_form(&app, "/oidc/par", None, &pairs).await;
    assert_eq!(pushed.status, StatusCode::CREATED, "{:?}", pushed.body);
    let reference = pushed.body["request_uri"]
        .as_str()
        .unwrap()
        .strip_prefix("urn:ietf:params:oauth:request_uri:")
        .unwrap();
    let hash = countersign::api_keys::hash_key(reference);
    let stored = app.store.take_pushed_request(&hash, &client_id, app.clock_now()).await.unwrap().unwrap();
    assert!(!stored.params.contains(&secret), "{}", stored.params);
    assert!(!stored.params.contains("client_secret"), "{}", stored.params);
    assert!(stored.params.contains("login_hint"), "the request itself is kept: {}", stored.params);
}

/// A code replayed after it expired still revokes what its first use issued (the replay is
/// recognised before the expiry).
async fn a_code_replayed_after_it_expired_still_revokes(engine: Engine) {
    let (app, rp, _, code) = signed_in(engine).await;
    let access = exchange(&app, &rp, &code, VERIFIER).await.body["access_token"].as_str().unwrap().to_owned();
    app.advance(time::Duration::seconds(61)).await;
    assert_eq!(exchange(&app, &rp, &code, VERIFIER).await.body["error"], "invalid_grant");
    assert_eq!(app.get("/oidc/userinfo", Some(&access)).await.status, StatusCode::UNAUTHORIZED);
}

/// Userinfo takes `at+jwt` only: the very claims of a live access token, signed by our own key
/// but typed as an ID token (`JWT`), are refused.
async fn userinfo_takes_only_tokens_typed_as_access_tokens(engine: Engine) {
    let (app, rp, _, code) = signed_in(engine).await;
    let access = exchange(&app, &rp, &code, VERIFIER).await.body["access_token"].as_str().unwrap().to_owned();
    assert_eq!(app.get("/oidc/userinfo", Some(&access)).await.status, StatusCode::OK);
    let claims: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(access.split('.').nth(1).unwrap()).unwrap()).unwrap();
    let retyped = app
        .state
        .signing_keys
        .sign(countersign::oidc::keys::SigningAlg::Es256, "JWT", &claims)
        .await
        .unwrap();
    let refused = app.get("/oidc/userinfo", Some(&retyped)).await;
    assert_eq!(
        (refused.status, refused.body["error"].clone()),
        (StatusCode::UNAUTHORIZED, json!("invalid_token"))
    );
}

/// A client revoked while its user is signing in gets nothing more: the finish shows no code.
async fn a_client_revoked_mid_sign_in_gets_no_code(engine: Engine) {
    let (app, key) = app_with_user(engine, "alice").await;
    let mut phone = enrolled_device(&app, &key, "alice", PushRegistration::None).await;
    let rp = rp(&app, "Acme SSO").await;
    let uri = request_uri(&app, &rp, &[]).await;
    let browser = begin(&app, &rp, &uri).await;
    let number = shown_number(&app, &browser).await;
    assert_eq!(phone_answers(&app, &mut phone, &number, Decision::Approve).await["outcome"], "approved");
    let id = countersign::oidc::clients::ClientId(rp.client_id.clone());
    countersign::oidc::client_admin::revoke_client(app.store.as_ref(), app.clock.as_ref(), Actor::Cli, &id)
        .await
        .unwrap();
    let finished = finish(&app, &browser).await;
    assert_eq!(finished.status, StatusCode::NOT_FOUND);
    assert!(finished.headers.get(header::LOCATION).is_none());
}

/// An essential `acr` the proof does not meet fails the sign-in (OIDC Core 5.5.1.1): a client
/// that insists on the number-matched push gets `access_denied` when a passkey-only user
/// answers with a passkey, however valid the passkey.
async fn an_essential_acr_not_met_is_denied(engine: Engine) {
    let (app, key) = app_with_user(engine, "alice").await;
    let mut soft_key = register_passkey(&app).await;
    let raised = app.post_json("/v1/users/alice/passkey-required", &key, json!({})).await;
    assert_eq!(raised.body["passkey_required"], true);
    let rp = rp(&app, "Acme SSO").await;
    let claims =
        r#"{"id_token":{"acr":{"essential":true,"values":["urn:countersign:acr:push:number-matching"]}}}"#;
    let uri = request_uri(&app, &rp, &[("claims", claims)]).await;
    let browser = begin(&app, &rp, &uri).await;
    let token = shown_passkey_token(&app, &browser).await;
    passkey_approves(&app, &mut soft_key, &token).await;
    let back = redirect_query(&finish(&app, &browser).await);
    assert_eq!(param(&back, "error"), Some("access_denied"));
    assert!(param(&back, "code").is_none());
}

on_both_engines!(
    the_code_flow_signs_alice_in_with_a_number_on_her_phone,
    a_second_redemption_revokes_what_the_first_issued,
    a_code_of_client_a_is_refused_to_client_b,
    the_code_needs_its_pkce_verifier,
    an_expired_code_is_refused,
    a_bare_login_hint_sends_no_push,
    redirect_uri_mutations_get_a_page_and_no_location,
    another_browser_cannot_see_or_finish_the_sign_in,
    a_denied_push_sends_access_denied,
    an_unanswered_sign_in_cannot_finish,
    pushed_requests_are_checked,
    an_unknown_user_is_refused_like_one_without_a_factor,
    acr_phr_signs_in_with_a_passkey_only,
    discovery_names_the_issuer_and_what_is_served,
    a_signed_request_object_names_the_user,
    forged_request_objects_prompt_nobody,
    no_input_makes_an_oidc_endpoint_fail,
    a_client_cannot_push_bomb_past_the_users_budget,
    a_public_client_cannot_name_whom_to_prompt,
    a_request_object_cannot_double_as_a_client_assertion,
    a_pushed_request_is_stored_without_client_credentials,
    a_code_replayed_after_it_expired_still_revokes,
    userinfo_takes_only_tokens_typed_as_access_tokens,
    a_client_revoked_mid_sign_in_gets_no_code,
    an_essential_acr_not_met_is_denied,
    a_push_sign_in_switches_to_a_passkey_and_ends_with_phr,
    a_cancelled_push_can_no_longer_be_approved_by_the_phone,
    a_switch_after_the_phone_approved_is_refused,
    another_browser_cannot_switch_to_a_passkey,
    a_user_without_a_passkey_cannot_switch,
    the_sign_in_page_lets_its_form_reach_only_the_client,
);
