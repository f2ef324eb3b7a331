//! End-to-end in a real browser: headless Chromium with a virtual platform authenticator
//! (CTAP2, resident key, user verification) on the hosted pages of the real `countersign`
//! binary, RP ID `localhost` over plain http (a secure context), on SQLite and PostgreSQL.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use countersign_e2e::browser::{Browser, Page, serve_pages};
use countersign_e2e::{
    Engine, Server, authenticator, create_app, get_json, http, new_enrollment, stderr_of, stdout_of,
};
use serde_json::{Value, json};
use tokio::sync::mpsc;

/// `application/x-www-form-urlencoded` (openidconnect's `url`, a dev-dependency already).
fn form(pairs: &[(&str, &str)]) -> String {
    openidconnect::url::form_urlencoded::Serializer::new(String::new()).extend_pairs(pairs).finish()
}

/// alice, with a passkey the browser's virtual authenticator created on the hosted enrollment
/// page from an app's enrollment link; returns the link (used up now).
async fn alice_registers_a_passkey(server: &Server, key: &str, browser: &Browser) -> String {
    let client = http();
    let created = client.post(server.url("/v1/users")).bearer_auth(key).json(&json!({ "username": "alice" }));
    assert_eq!(created.send().await.unwrap().status(), 201);
    let link = client
        .post(server.url("/v1/users/alice/passkeys/enrollment-links"))
        .bearer_auth(key)
        .json(&json!({ "name": "Chromium" }))
        .send()
        .await
        .unwrap();
    assert_eq!(link.status(), 201);
    let link: serde_json::Value = link.json().await.unwrap();
    let url = link["url"].as_str().unwrap();
    let port = server.base_url.rsplit(':').next().unwrap();
    assert!(url.starts_with(&format!("http://localhost:{port}/passkeys/enroll?code=")), "{url}");

    browser.open(url).await;
    browser.click("#start").await;
    let (state, text) = browser.wait_for_state("#status", &["done", "error"]).await;
    assert_eq!(state, "done", "the page says: {text}");

    let passkeys = get_json(server, key, "/v1/users/alice/passkeys").await;
    assert_eq!(passkeys.as_array().unwrap().len(), 1, "{passkeys}");
    assert_eq!(passkeys[0]["name"], "Chromium");
    let factors = get_json(server, key, "/v1/users/alice/factors").await;
    let passkey = factors["factors"].as_array().unwrap().iter().find(|f| f["factor"] == "passkey").unwrap();
    assert_eq!(passkey["available"], true, "{factors}");
    url.to_owned()
}

/// The app makes an enrollment link; the user opens it and creates a passkey; the app sees it.
/// Then the app starts a passkey sign-in, the user answers it on its page, the app redeems it.
async fn a_passkey_registers_and_signs_in_on_the_hosted_pages(engine: Engine) {
    let server = Server::start(engine).await;
    let key = create_app(&server, "portal", "users:read users:write challenges:read challenges:write");
    let client = http();
    let port = server.base_url.rsplit(':').next().unwrap();
    let browser = Browser::start().await;
    let url = alice_registers_a_passkey(&server, &key, &browser).await;

    // The link is used up: opened again, the page says so and the button is gone.
    browser.open(&url).await;
    let shown = browser
        .eval(
            "return [document.querySelector('#error')?.dataset.code, !!document.querySelector('#start')];",
            json!([]),
        )
        .await;
    assert_eq!(shown, json!(["enrollment_link_used", false]));
    // The page answers 410 Gone on purpose, which Chromium logs as a failed load: that error,
    // and no other.
    let errors = browser.take_console_errors().await;
    assert!(errors.len() == 1 && errors[0].contains(&url) && errors[0].contains("410"), "{errors:#?}");

    // Sign-in: a passkey challenge's page answers it; the app redeems it once.
    let challenge = client
        .post(server.url("/v1/challenges"))
        .bearer_auth(&key)
        .json(&json!({ "username": "alice", "factor": "passkey", "context": { "app_name": "Portal" } }))
        .send()
        .await
        .unwrap();
    assert_eq!(challenge.status(), 201);
    let challenge: serde_json::Value = challenge.json().await.unwrap();
    let sign_in_url = challenge["sign_in_url"].as_str().unwrap();
    assert!(
        sign_in_url.starts_with(&format!("http://localhost:{port}/passkeys/sign-in?token=")),
        "{sign_in_url}"
    );
    browser.open(sign_in_url).await;
    browser.click("#start").await;
    let (state, text) = browser.wait_for_state("#status", &["done", "error"]).await;
    assert_eq!(state, "done", "the page says: {text}");
    let id = challenge["id"].as_str().unwrap();
    let redeem = server.url(&format!("/v1/challenges/{id}/redeem"));
    let first = client.post(&redeem).bearer_auth(&key).json(&json!({})).send().await.unwrap();
    assert_eq!(first.status(), 200);
    let second = client.post(&redeem).bearer_auth(&key).json(&json!({})).send().await.unwrap();
    assert_eq!(second.status(), 409, "redeemed once only");
    let passkeys = get_json(&server, &key, "/v1/users/alice/passkeys").await;
    assert!(passkeys[0]["last_used_at"].is_string(), "{passkeys}");
    browser.assert_no_console_errors().await;
    browser.quit().await;
}

/// A relying party's callback page on a loopback port: answers every request with a small
/// page and sends the request target of each `/cb` request down the channel.
async fn callback_page() -> (String, mpsc::UnboundedReceiver<String>) {
    let (sender, receiver) = mpsc::unbounded_channel();
    let base = serve_pages(move |target| {
        if target.starts_with("/cb") {
            let _ = sender.send(target.to_owned());
        }
        let body = "<!doctype html><title>Acme</title><p>Signed in.</p>".to_owned();
        Page { status: "200 OK", headers: String::new(), body }
    })
    .await;
    (format!("{base}/cb"), receiver)
}

/// A client registered with the real CLI (`client_secret_basic`), its callback page on a
/// loopback port, and the PKCE verifier and nonce of its one request.
struct Sso {
    client_id: String,
    secret: String,
    redirect_uri: String,
    landed: mpsc::UnboundedReceiver<String>,
    verifier: String,
    nonce: String,
}

impl Sso {
    async fn register(server: &Server) -> Self {
        let (redirect_uri, landed) = callback_page().await;
        let args = ["clients", "create", "--name", "Acme SSO", "--auth", "client_secret_basic"];
        let output = server.cli(&[&args[..], &["--redirect-uri", &redirect_uri]].concat());
        assert!(output.status.success(), "clients create: {}", stderr_of(&output));
        let printed = stdout_of(&output);
        let field = |name: &str| {
            let found = printed.lines().find_map(|line| line.strip_prefix(&format!("{name}=")));
            found.unwrap_or_else(|| panic!("no {name} in {printed}")).to_owned()
        };
        Self {
            client_id: field("client_id"),
            secret: field("client_secret"),
            redirect_uri,
            landed,
            verifier: URL_SAFE_NO_PAD.encode(uuid::Uuid::new_v4().as_bytes().repeat(2)),
            nonce: uuid::Uuid::new_v4().simple().to_string(),
        }
    }

    /// Pushes alice's request (PAR, HTTP Basic) with `extra` parameters; the URL of
    /// `/oidc/authorize` for the browser, through `localhost`, the passkeys' origin (RP ID
    /// `localhost`), as an SSO's link would name the public URL.
    async fn push(&self, server: &Server, extra: &[(&str, &str)]) -> String {
        let challenge =
            URL_SAFE_NO_PAD.encode(ring::digest::digest(&ring::digest::SHA256, self.verifier.as_bytes()));
        let mut pairs = vec![
            ("response_type", "code"),
            ("redirect_uri", self.redirect_uri.as_str()),
            ("scope", "openid"),
            ("state", "st-1"),
            ("nonce", self.nonce.as_str()),
            ("code_challenge", challenge.as_str()),
            ("code_challenge_method", "S256"),
            ("login_hint", "alice"),
        ];
        pairs.extend_from_slice(extra);
        let pushed = http()
            .post(server.url("/oidc/par"))
            .basic_auth(&self.client_id, Some(&self.secret))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form(&pairs))
            .send()
            .await
            .unwrap();
        assert_eq!(pushed.status(), 201);
        let pushed: Value = pushed.json().await.unwrap();
        let query =
            form(&[("client_id", &self.client_id), ("request_uri", pushed["request_uri"].as_str().unwrap())]);
        let port = server.base_url.rsplit(':').next().unwrap();
        format!("http://localhost:{port}/oidc/authorize?{query}")
    }

    /// Waits for the browser to land on the callback; the code it carries.
    async fn code(&mut self, server: &Server, browser: &Browser) -> String {
        let Ok(Some(target)) = tokio::time::timeout(Duration::from_secs(60), self.landed.recv()).await else {
            let page = browser.eval("return [location.href, document.body.innerText];", json!([])).await;
            panic!("the browser did not reach the redirect URI: {page}\n{}", server.logs());
        };
        let back = openidconnect::url::Url::parse(&format!("http://callback{target}")).unwrap();
        let param = |name: &str| back.query_pairs().find(|(n, _)| n == name).map(|(_, v)| v.into_owned());
        assert_eq!(param("state").as_deref(), Some("st-1"), "{target}");
        assert_eq!(param("iss").as_deref(), Some(server.base_url.as_str()), "RFC 9207");
        param("code").unwrap_or_else(|| panic!("no code in {target}"))
    }

    /// Exchanges `code` at the token endpoint: the ID token's claims, signature, issuer,
    /// audience and nonce checked.
    async fn id_token(&self, server: &Server, code: &str) -> Value {
        let client = http();
        let tokens = client
            .post(server.url("/oidc/token"))
            .basic_auth(&self.client_id, Some(&self.secret))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form(&[
                ("grant_type", "authorization_code"),
                ("code", code),
                ("redirect_uri", &self.redirect_uri),
                ("code_verifier", &self.verifier),
            ]))
            .send()
            .await
            .unwrap();
        assert_eq!(tokens.status(), 200);
        let tokens: Value = tokens.json().await.unwrap();
        let id_token = tokens["id_token"].as_str().unwrap();
        let jwks: jsonwebtoken::jwk::JwkSet =
            client.get(server.url("/oidc/jwks")).send().await.unwrap().json().await.unwrap();
        let header = jsonwebtoken::decode_header(id_token).unwrap();
        let jwk = jwks.find(header.kid.as_deref().unwrap()).unwrap();
        let mut validation = jsonwebtoken::Validation::new(header.alg);
        validation.set_audience(&[&self.client_id]);
        validation.set_issuer(&[&server.base_url]);
        let key = jsonwebtoken::DecodingKey::from_jwk(jwk).unwrap();
        let claims = jsonwebtoken::decode::<Value>(id_token, &key, &validation).unwrap().claims;
        assert_eq!(claims["nonce"], self.nonce.as_str());
        claims
    }
}

/// An SSO signs alice in through Countersign's OIDC provider with her passkey, in Chromium:
/// the client registered with the real CLI pushes an `acr_values=phr` request (PAR, HTTP
/// Basic), the browser opens `/oidc/authorize`, alice uses her passkey on the sign-in page, the
/// browser lands on the client's redirect URI with a code, and the ID token says `phr`.
async fn an_sso_signs_alice_in_with_her_passkey_in_chromium(engine: Engine) {
    let server = Server::start(engine).await;
    let key = create_app(&server, "directory", "users:read users:write");
    let browser = Browser::start().await;
    alice_registers_a_passkey(&server, &key, &browser).await;
    let mut sso = Sso::register(&server).await;
    browser.open(&sso.push(&server, &[("acr_values", "phr")]).await).await;
    let shown = browser.eval("return !!document.querySelector('#number');", json!([])).await;
    assert_eq!(shown, false, "no number for acr=phr");
    browser.click("#start").await;
    let code = sso.code(&server, &browser).await;
    let claims = sso.id_token(&server, &code).await;
    assert_eq!(claims["acr"], "phr", "{claims}");
    assert!(claims["amr"].as_array().unwrap().contains(&json!("user")), "{claims}");
    browser.assert_no_console_errors().await;
    browser.quit().await;
}

/// The challenges waiting on the reference authenticator's phone.
fn phone_pending(phone: &std::path::Path) -> Vec<Value> {
    let pending = authenticator(phone, &["pending", "--json"]);
    assert!(pending.status.success(), "{}", stderr_of(&pending));
    serde_json::from_str::<Value>(&stdout_of(&pending)).unwrap().as_array().unwrap().clone()
}

/// alice has a passkey and a phone (enrolled with the reference authenticator, her passkey
/// approving the second factor in Chromium); the SSO's push sign-in shows the number, she
/// presses "Use a passkey instead": the push leaves her phone, the page runs the passkey
/// ceremony, and the ID token says `phr`.
async fn an_sso_push_sign_in_switches_to_a_passkey_in_chromium(engine: Engine) {
    let server = Server::start(engine).await;
    let key = create_app(&server, "directory", "users:read users:write challenges:read challenges:write");
    let browser = Browser::start().await;
    alice_registers_a_passkey(&server, &key, &browser).await;
    let approval = http()
        .post(server.url("/v1/challenges"))
        .bearer_auth(&key)
        .json(&json!({ "username": "alice", "factor": "passkey" }))
        .send()
        .await
        .unwrap();
    assert_eq!(approval.status(), 201);
    let approval: Value = approval.json().await.unwrap();
    browser.open(approval["sign_in_url"].as_str().unwrap()).await;
    browser.click("#start").await;
    let (state, text) = browser.wait_for_state("#status", &["done", "error"]).await;
    assert_eq!(state, "done", "the page says: {text}");
    let enrollment = new_enrollment(&server, &key, "alice", approval["id"].as_str()).await;
    let dir = tempfile::tempdir().unwrap();
    let phone = dir.path().join("alice.json");
    let enrolled =
        authenticator(&phone, &["enroll", enrollment["activation_uri"].as_str().unwrap(), "--yes"]);
    assert!(enrolled.status.success(), "{}", stderr_of(&enrolled));

    let mut sso = Sso::register(&server).await;
    browser.open(&sso.push(&server, &[]).await).await;
    let shown = browser.eval("return document.querySelector('#number')?.textContent;", json!([])).await;
    assert!(shown.as_str().is_some_and(|n| n.trim().len() == 3), "the number: {shown}");
    assert_eq!(phone_pending(&phone).len(), 1, "the push is on the phone");
    browser.click("#passkey-instead button").await;
    browser.click("#start").await;
    let code = sso.code(&server, &browser).await;
    assert!(phone_pending(&phone).is_empty(), "the push left the phone");
    let claims = sso.id_token(&server, &code).await;
    assert_eq!(claims["acr"], "phr", "{claims}");
    browser.assert_no_console_errors().await;
    browser.quit().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_a_passkey_registers_and_signs_in_on_the_hosted_pages() {
    a_passkey_registers_and_signs_in_on_the_hosted_pages(Engine::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_passkey_registers_and_signs_in_on_the_hosted_pages() {
    a_passkey_registers_and_signs_in_on_the_hosted_pages(Engine::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_an_sso_signs_alice_in_with_her_passkey_in_chromium() {
    an_sso_signs_alice_in_with_her_passkey_in_chromium(Engine::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_an_sso_signs_alice_in_with_her_passkey_in_chromium() {
    an_sso_signs_alice_in_with_her_passkey_in_chromium(Engine::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_an_sso_push_sign_in_switches_to_a_passkey_in_chromium() {
    an_sso_push_sign_in_switches_to_a_passkey_in_chromium(Engine::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_an_sso_push_sign_in_switches_to_a_passkey_in_chromium() {
    an_sso_push_sign_in_switches_to_a_passkey_in_chromium(Engine::Postgres).await;
}
