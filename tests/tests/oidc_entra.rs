//! End-to-end: the Microsoft Entra external authentication method profile through the real
//! `countersign` binary, on SQLite and PostgreSQL. A local fake Entra signs the `id_token_hint`
//! (already expired, as Entra issues it) and publishes its keys at a loopback `jwks_uri`; the
//! server is configured with `[[oidc.upstream]]` in a TOML file; Entra's form POST starts the
//! sign-in, the reference authenticator approves with the number the page shows, and the page
//! posts an ID token back to Entra's redirect URI by form.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;
use std::sync::Arc;

use countersign_e2e::jose::{JwksServer, TestKey, jwks_json};
use countersign_e2e::{
    Engine, Server, TestDatabase, authenticator, create_app, new_enrollment, random_master_key, stderr_of,
    stdout_of, unix_now,
};
use serde_json::{Value, json};

const ENTRA: &str = "https://login.microsoftonline.com/14c2f153-90a7-4689-9db7-9543bf084dad/v2.0";
const ENTRA_REDIRECT: &str = "https://login.microsoftonline.com/common/federation/externalauthprovider";
const APP_ID: &str = "600b719b-3766-4dc5-95a6-3c4a8dc31885";
const SUB: &str = "mBfcvuhSHkDWVgV72x2ruIYdSsPSvcj2R0qfc6mGEAA";
const CLAIMS: &str = r#"{"id_token":{"acr":{"essential":true,"values":["possessionorinherence"]},"amr":{"essential":true,"values":["face","fido","fpt","hwk","iris","otp","pop","retina","sc","sms","swk","tel","vbm"]}}}"#;

fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap()
}

/// The value of the hidden input `name` in a form-post page.
fn hidden(html: &str, name: &str) -> Option<String> {
    let marker = format!(r#"name="{name}" value=""#);
    let start = html.find(&marker)? + marker.len();
    Some(html[start..start + html[start..].find('"')?].to_owned())
}

async fn entra_flow(engine: Engine) {
    let signer = TestKey::rs256("entra-key-1");
    let jwks = JwksServer::start(jwks_json(&[&signer])).await;
    let database = Arc::new(TestDatabase::new(engine).await);
    let master = random_master_key();

    // The operator registers Entra's client and enrolls alice, with the server running plain.
    let plain = Server::start_with(Arc::clone(&database), master.clone(), &[]).await;
    let created = plain.cli(&[
        "clients",
        "create",
        "--name",
        "Microsoft Entra",
        "--auth",
        "client_secret_post",
        "--id-token-alg",
        "RS256",
        "--redirect-uri",
        ENTRA_REDIRECT,
    ]);
    assert!(created.status.success(), "{}", stderr_of(&created));
    let client_id = stdout_of(&created)
        .lines()
        .find_map(|line| line.strip_prefix("client_id=").map(str::to_owned))
        .unwrap();
    let app_key = create_app(&plain, "directory", "users:read users:write");
    let dir = tempfile::tempdir().unwrap();
    let phone: PathBuf = dir.path().join("alice.json");
    let enrollment = new_enrollment(&plain, &app_key, "alice", None).await;
    let enrolled =
        authenticator(&phone, &["enroll", enrollment["activation_uri"].as_str().unwrap(), "--yes"]);
    assert!(enrolled.status.success(), "{}", stderr_of(&enrolled));
    // The phone is bound to this server's URL: the configured server listens on the same port.
    let listen = plain.base_url.trim_start_matches("http://").to_owned();
    drop(plain);

    // Then trusts the fake Entra as an upstream issuer for that client.
    let config = dir.path().join("countersign.toml");
    std::fs::write(
        &config,
        format!(
            "[[oidc.upstream]]\nissuer = \"{ENTRA}\"\njwks_uri = \"{}\"\naudience = \"{APP_ID}\"\nclient_id = \"{client_id}\"\n",
            jwks.url()
        ),
    )
    .unwrap();
    let config = config.display().to_string();
    let server = Server::start_custom(
        Arc::clone(&database),
        master,
        &[("COUNTERSIGN_LISTEN", listen.as_str())],
        &["--config", &config],
    )
    .await;
    let issuer = server.base_url.clone();
    let discovery: Value = no_redirects()
        .get(server.url("/.well-known/openid-configuration"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(discovery["issuer"], issuer.as_str());
    assert!(discovery["response_types_supported"].as_array().unwrap().contains(&json!("id_token")));
    assert!(discovery["response_modes_supported"].as_array().unwrap().contains(&json!("form_post")));

    // Entra's POST to the authorization endpoint.
    let now = unix_now() as i64;
    let hint = signer.sign(&json!({
        "ver": "2.0", "iss": ENTRA, "sub": SUB, "aud": APP_ID, "exp": now - 1, "iat": now, "nbf": now,
        "preferred_username": "alice", "oid": "951ddb04-b16d-45f3-bbf7-b0fa18fa7aee",
        "tid": "14c2f153-90a7-4689-9db7-9543bf084dad",
    }));
    let form = [
        ("scope", "openid"),
        ("response_type", "id_token"),
        ("response_mode", "form_post"),
        ("client_id", client_id.as_str()),
        ("redirect_uri", ENTRA_REDIRECT),
        ("nonce", "entra-nonce"),
        ("state", "entra-state"),
        ("id_token_hint", hint.as_str()),
        ("claims", CLAIMS),
    ];
    let body =
        openidconnect::url::form_urlencoded::Serializer::new(String::new()).extend_pairs(form).finish();
    let post_form = |body: String| {
        no_redirects()
            .post(server.url("/oidc/authorize"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
    };
    let browser = no_redirects();
    let started = post_form(body.clone()).await.unwrap();
    assert_eq!(started.status(), 303);
    assert!(jwks.hits() >= 1, "the hint was checked against the issuer's published keys");
    let page = started.headers()["location"].to_str().unwrap().to_owned();
    let cookie = started.headers()["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_owned();
    let html =
        browser.get(server.url(&page)).header("cookie", &cookie).send().await.unwrap().text().await.unwrap();
    let start = html.find(r#"id="number""#).unwrap();
    let number = &html[start..];
    let number = number[number.find('>').unwrap() + 1..number.find("</p>").unwrap()].trim().to_owned();

    let pending = authenticator(&phone, &["pending", "--json"]);
    let pending: Vec<Value> = serde_json::from_str(&stdout_of(&pending)).unwrap();
    assert!(pending[0].to_string().contains("Microsoft Entra"), "the phone names who asks: {pending:?}");
    let id = pending[0]["id"].as_str().unwrap().to_owned();
    let approved = authenticator(&phone, &["approve", &id, "--number", &number]);
    assert_eq!(stdout_of(&approved), "approved", "{}", stderr_of(&approved));

    let answer = browser
        .post(server.url(&format!("{page}/finish")))
        .header("cookie", &cookie)
        .header("origin", &issuer)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    let policy = answer.headers()["content-security-policy"].to_str().unwrap().to_owned();
    assert!(policy.contains("form-action https://login.microsoftonline.com"), "{policy}");
    let html = answer.text().await.unwrap();
    assert!(html.contains(&format!(r#"action="{ENTRA_REDIRECT}""#)), "{html}");
    assert_eq!(hidden(&html, "state").as_deref(), Some("entra-state"));
    let id_token = hidden(&html, "id_token").unwrap();

    // What Entra checks: our signature (from our JWKS), iss, aud, sub, nonce, acr, one amr.
    let ours: jsonwebtoken::jwk::JwkSet =
        no_redirects().get(server.url("/oidc/jwks")).send().await.unwrap().json().await.unwrap();
    let header = jsonwebtoken::decode_header(&id_token).unwrap();
    assert_eq!(header.alg, jsonwebtoken::Algorithm::RS256);
    let key =
        jsonwebtoken::DecodingKey::from_jwk(ours.find(header.kid.as_deref().unwrap()).unwrap()).unwrap();
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
    validation.set_audience(&[client_id.as_str()]);
    validation.set_issuer(&[issuer.as_str()]);
    let claims = jsonwebtoken::decode::<Value>(&id_token, &key, &validation).unwrap().claims;
    assert_eq!((claims["sub"].clone(), claims["nonce"].clone()), (json!(SUB), json!("entra-nonce")));
    assert_eq!(claims["acr"], "possessionorinherence");
    assert_eq!(claims["amr"], json!(["swk"]));

    // The same hint again names nobody.
    let replay = post_form(body).await.unwrap();
    let html = replay.text().await.unwrap();
    assert_eq!(hidden(&html, "error").as_deref(), Some("invalid_request"), "{html}");
    let pending = authenticator(&phone, &["pending", "--json"]);
    assert_eq!(stdout_of(&pending), "[]");
}

#[tokio::test]
async fn entra_profile_through_the_real_binary_on_sqlite() {
    entra_flow(Engine::Sqlite).await;
}

#[tokio::test]
async fn entra_profile_through_the_real_binary_on_postgres() {
    entra_flow(Engine::Postgres).await;
}
