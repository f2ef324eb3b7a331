//! End-to-end in a real browser: headless Chromium with a virtual platform authenticator
//! (CTAP2, resident key, user verification) on the hosted pages of the real `countersign`
//! binary, RP ID `localhost` over plain http (a secure context), on SQLite and PostgreSQL.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use countersign_e2e::browser::Browser;
use countersign_e2e::{Engine, Server, create_app, get_json, http, stderr_of, stdout_of};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
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
    browser.quit().await;
}

/// A relying party's callback page on a loopback port: answers every request with a small
/// page and sends the request target of each `/cb` request down the channel.
async fn callback_page() -> (String, mpsc::UnboundedReceiver<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let redirect_uri = format!("http://{}/cb", listener.local_addr().unwrap());
    let (sender, receiver) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let mut head = Vec::new();
            let mut buffer = [0u8; 1024];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                match stream.read(&mut buffer).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => head.extend_from_slice(&buffer[..n]),
                }
            }
            let head = String::from_utf8_lossy(&head).into_owned();
            let target = head.split(' ').nth(1).unwrap_or_default().to_owned();
            let body = "<!doctype html><title>Acme</title><p>Signed in.</p>";
            let answer = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = stream.write_all(answer.as_bytes()).await;
            if target.starts_with("/cb") {
                let _ = sender.send(target);
            }
        }
    });
    (redirect_uri, receiver)
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

    let (redirect_uri, mut landed) = callback_page().await;
    let args = ["clients", "create", "--name", "Acme SSO", "--auth", "client_secret_basic"];
    let output = server.cli(&[&args[..], &["--redirect-uri", &redirect_uri]].concat());
    assert!(output.status.success(), "clients create: {}", stderr_of(&output));
    let printed = stdout_of(&output);
    let field = |name: &str| {
        let found = printed.lines().find_map(|line| line.strip_prefix(&format!("{name}=")));
        found.unwrap_or_else(|| panic!("no {name} in {printed}")).to_owned()
    };
    let (client_id, secret) = (field("client_id"), field("client_secret"));

    let verifier = URL_SAFE_NO_PAD.encode(uuid::Uuid::new_v4().as_bytes().repeat(2));
    let challenge = URL_SAFE_NO_PAD.encode(ring::digest::digest(&ring::digest::SHA256, verifier.as_bytes()));
    let nonce = uuid::Uuid::new_v4().simple().to_string();
    let client = http();
    let pushed = client
        .post(server.url("/oidc/par"))
        .basic_auth(&client_id, Some(&secret))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form(&[
            ("response_type", "code"),
            ("redirect_uri", redirect_uri.as_str()),
            ("scope", "openid"),
            ("state", "st-1"),
            ("nonce", nonce.as_str()),
            ("code_challenge", challenge.as_str()),
            ("code_challenge_method", "S256"),
            ("login_hint", "alice"),
            ("acr_values", "phr"),
        ]))
        .send()
        .await
        .unwrap();
    assert_eq!(pushed.status(), 201);
    let pushed: Value = pushed.json().await.unwrap();
    let request_uri = pushed["request_uri"].as_str().unwrap();

    // Through `localhost`, the passkeys' origin (RP ID `localhost`), as an SSO's link would be.
    let port = server.base_url.rsplit(':').next().unwrap();
    let query = form(&[("client_id", client_id.as_str()), ("request_uri", request_uri)]);
    browser.open(&format!("http://localhost:{port}/oidc/authorize?{query}")).await;
    let shown =
        browser.eval("return [!!document.querySelector('#number'), document.title];", json!([])).await;
    assert_eq!(shown[0], false, "no number for acr=phr: {shown}");
    browser.click("#start").await;
    let Ok(Some(target)) = tokio::time::timeout(Duration::from_secs(60), landed.recv()).await else {
        let page = browser.eval("return [location.href, document.body.innerText];", json!([])).await;
        panic!("the browser did not reach the redirect URI: {page}\n{}", server.logs());
    };
    let back = openidconnect::url::Url::parse(&format!("http://callback{target}")).unwrap();
    let param = |name: &str| back.query_pairs().find(|(n, _)| n == name).map(|(_, v)| v.into_owned());
    assert_eq!(param("state").as_deref(), Some("st-1"), "{target}");
    assert_eq!(param("iss").as_deref(), Some(server.base_url.as_str()), "RFC 9207");
    let code = param("code").unwrap_or_else(|| panic!("no code in {target}"));

    let tokens = client
        .post(server.url("/oidc/token"))
        .basic_auth(&client_id, Some(&secret))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form(&[
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
            ("redirect_uri", redirect_uri.as_str()),
            ("code_verifier", verifier.as_str()),
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
    validation.set_audience(&[&client_id]);
    validation.set_issuer(&[&server.base_url]);
    let key = jsonwebtoken::DecodingKey::from_jwk(jwk).unwrap();
    let claims = jsonwebtoken::decode::<Value>(id_token, &key, &validation).unwrap().claims;
    assert_eq!(claims["acr"], "phr", "{claims}");
    assert_eq!(claims["nonce"], nonce.as_str());
    assert!(claims["amr"].as_array().unwrap().contains(&json!("user")), "{claims}");
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
