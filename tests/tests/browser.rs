//! End-to-end in a real browser: headless Chromium with a virtual platform authenticator
//! (CTAP2, resident key, user verification) on the hosted pages of the real `countersign`
//! binary, RP ID `localhost` over plain http (a secure context), on SQLite and PostgreSQL.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use countersign_e2e::browser::Browser;
use countersign_e2e::{Engine, Server, create_app, get_json, http};
use serde_json::json;

/// The app makes an enrollment link; the user opens it and creates a passkey; the app sees it.
/// Then the app starts a passkey sign-in, the user answers it on its page, the app redeems it.
async fn a_passkey_registers_and_signs_in_on_the_hosted_pages(engine: Engine) {
    let server = Server::start(engine).await;
    let key = create_app(&server, "portal", "users:read users:write challenges:read challenges:write");
    let client = http();
    let created =
        client.post(server.url("/v1/users")).bearer_auth(&key).json(&json!({ "username": "alice" }));
    assert_eq!(created.send().await.unwrap().status(), 201);
    let link = client
        .post(server.url("/v1/users/alice/passkeys/enrollment-links"))
        .bearer_auth(&key)
        .json(&json!({ "name": "Chromium" }))
        .send()
        .await
        .unwrap();
    assert_eq!(link.status(), 201);
    let link: serde_json::Value = link.json().await.unwrap();
    let url = link["url"].as_str().unwrap();
    let port = server.base_url.rsplit(':').next().unwrap();
    assert!(url.starts_with(&format!("http://localhost:{port}/passkeys/enroll?code=")), "{url}");

    let browser = Browser::start().await;
    browser.open(url).await;
    browser.click("#start").await;
    let (state, text) = browser.wait_for_state("#status", &["done", "error"]).await;
    assert_eq!(state, "done", "the page says: {text}");

    let passkeys = get_json(&server, &key, "/v1/users/alice/passkeys").await;
    assert_eq!(passkeys.as_array().unwrap().len(), 1, "{passkeys}");
    assert_eq!(passkeys[0]["name"], "Chromium");
    let factors = get_json(&server, &key, "/v1/users/alice/factors").await;
    let passkey = factors["factors"].as_array().unwrap().iter().find(|f| f["factor"] == "passkey").unwrap();
    assert_eq!(passkey["available"], true, "{factors}");

    // The link is used up: opened again, the page says so and the button is gone.
    browser.open(url).await;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_a_passkey_registers_and_signs_in_on_the_hosted_pages() {
    a_passkey_registers_and_signs_in_on_the_hosted_pages(Engine::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_passkey_registers_and_signs_in_on_the_hosted_pages() {
    a_passkey_registers_and_signs_in_on_the_hosted_pages(Engine::Postgres).await;
}
