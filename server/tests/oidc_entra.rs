//! The Microsoft Entra external authentication method profile, both engines, in process: Entra
//! posts `response_type=id_token`, `response_mode=form_post`, an `id_token_hint` it signed
//! (issued already expired), a `claims` request for `acr`/`amr`, `nonce` and `state`; the user
//! answers on the sign-in page; the answer is an ID token posted back by form with the hint's
//! `sub`, the requested `acr` and one `amr`. A local fake upstream issuer signs the hints.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[macro_use]
mod common;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use common::{Reply, TestApp, app_with_user, audit_actions, enrolled_device, signed_get};
use countersign::audit::Actor;
use countersign::oidc::client_admin::{NewClient, create_client};
use countersign::oidc::clients::{AuthMethod, ClientKeys, IdTokenAlg};
use countersign::oidc::upstream::{OidcConfig, UpstreamConfig};
use countersign_e2e::Engine;
use countersign_e2e::device::TestDevice;
use countersign_e2e::jose::{TestKey, jwks_json};
use countersign_mobile_protocol::{Decision, PendingChallenges, PushRegistration};
use serde_json::{Value, json};

const ISSUER: &str = "http://127.0.0.1:8080";
const ENTRA: &str = "https://login.microsoftonline.com/14c2f153-90a7-4689-9db7-9543bf084dad/v2.0";
const ENTRA_REDIRECT: &str = "https://login.microsoftonline.com/common/federation/externalauthprovider";
const APP_ID: &str = "600b719b-3766-4dc5-95a6-3c4a8dc31885";
const CLAIMS: &str = r#"{"id_token":{"acr":{"essential":true,"values":["possessionorinherence"]},"amr":{"essential":true,"values":["face","fido","fpt","hwk","iris","otp","pop","retina","sc","sms","swk","tel","vbm"]}}}"#;

struct Entra {
    app: TestApp,
    client_id: String,
    key: TestKey,
    _jwks: tempfile::NamedTempFile,
}

/// alice (UPN alice) with a phone; an RS256 client for Entra; an app trusting the fake Entra.
async fn entra(engine: Engine) -> (Entra, TestDevice) {
    entra_signing_with(engine, TestKey::rs256("entra-1")).await
}

/// The same, with the fake Entra signing with `signer`.
async fn entra_signing_with(engine: Engine, signer: TestKey) -> (Entra, TestDevice) {
    let (first, key) = app_with_user(engine, "alice").await;
    let phone = enrolled_device(&first, &key, "alice", PushRegistration::None).await;
    let new = NewClient {
        name: "Microsoft Entra".into(),
        redirect_uris: vec![ENTRA_REDIRECT.into()],
        auth_method: AuthMethod::ClientSecretPost,
        keys: ClientKeys::None,
        id_token_alg: IdTokenAlg::Rs256,
        ciba: None,
    };
    let client =
        create_client(first.store.as_ref(), first.clock.as_ref(), Actor::Cli, new).await.unwrap().client;
    let jwks = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(jwks.path(), jwks_json(&[&signer])).unwrap();
    let config = OidcConfig {
        upstream: vec![UpstreamConfig {
            issuer: ENTRA.into(),
            audience: APP_ID.into(),
            client_id: client.client_id.0.clone(),
            jwks_uri: None,
            jwks_file: Some(jwks.path().to_owned()),
            user_claim: "preferred_username".into(),
            max_hint_age_secs: 600,
        }],
    };
    let app = first.with_upstream(config.resolve().unwrap()).await;
    (Entra { app, client_id: client.client_id.0, key: signer, _jwks: jwks }, phone)
}

/// A hint as Entra issues it: for `username`, already expired (exp one second before iat).
fn hint_claims(entra: &Entra, username: &str) -> Value {
    let now = entra.app.clock_now().unix_timestamp();
    json!({
        "ver": "2.0", "iss": ENTRA, "sub": "mBfcvuhSHkDWVgV72x2ruIYdSsPSvcj2R0qfc6mGEAA", "aud": APP_ID,
        "exp": now - 1, "iat": now, "nbf": now, "name": "Alice", "preferred_username": username,
        "oid": "951ddb04-b16d-45f3-bbf7-b0fa18fa7aee", "tid": "14c2f153-90a7-4689-9db7-9543bf084dad",
    })
}

/// Entra's POST to the authorization endpoint.
async fn entra_post(entra: &Entra, hint: &str) -> Reply {
    let pairs = [
        ("scope", "openid"),
        ("response_type", "id_token"),
        ("response_mode", "form_post"),
        ("client_id", entra.client_id.as_str()),
        ("redirect_uri", ENTRA_REDIRECT),
        ("nonce", "entra-nonce-1"),
        ("state", "entra-state-1"),
        ("id_token_hint", hint),
        ("claims", CLAIMS),
        ("client-request-id", "0c2b8b4e-1d4b-4a7b-9c1e-2f1f7c0b9a11"),
    ];
    let body = url::form_urlencoded::Serializer::new(String::new()).extend_pairs(pairs).finish();
    let request = Request::post("/oidc/authorize")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .header(header::ORIGIN, "https://login.microsoftonline.com");
    entra.app.send(request.body(Body::from(body)).unwrap()).await
}

fn form_fields(html: &str) -> Vec<(String, String)> {
    html.split("<input type=\"hidden\" ")
        .skip(1)
        .map(|input| {
            let attr = |name: &str| {
                let start = input.find(&format!("{name}=\"")).unwrap() + name.len() + 2;
                input[start..start + input[start..].find('"').unwrap()].replace("&#43;", "+")
            };
            (attr("name"), attr("value"))
        })
        .collect()
}

async fn approve_on_phone(app: &TestApp, phone: &mut TestDevice, page: &str, cookie: &str) {
    let reply =
        app.send(Request::get(page).header(header::COOKIE, cookie).body(Body::empty()).unwrap()).await;
    let html = reply.body.as_str().unwrap();
    let start = html.find(r#"id="number""#).unwrap();
    let number = &html[start..];
    let number = number[number.find('>').unwrap() + 1..number.find("</p>").unwrap()].trim().to_owned();
    let pending = signed_get(app, phone, "/device/v1/challenges").await;
    let pending: PendingChallenges = serde_json::from_value(pending.body).unwrap();
    let details = phone.verify_details(pending.challenges.last().unwrap()).clone();
    let id = details.challenge_id.as_str().to_owned();
    let response = phone.answer(&details, Decision::Approve, &number);
    let reply = app
        .device_post(&format!("/device/v1/challenges/{id}/response"), &serde_json::to_vec(&response).unwrap())
        .await;
    assert_eq!(reply.body["outcome"], "approved");
}

async fn entra_signs_alice_in_and_gets_an_id_token_posted_back(engine: Engine) {
    let (entra, mut phone) = entra(engine).await;
    let hint = entra.key.sign(&hint_claims(&entra, "alice"));
    let started = entra_post(&entra, &hint).await;
    assert_eq!(started.status, StatusCode::SEE_OTHER, "{:?}", started.body);
    let page = started.headers[header::LOCATION].to_str().unwrap().to_owned();
    let cookie = started.headers[header::SET_COOKIE].to_str().unwrap().split(';').next().unwrap().to_owned();
    approve_on_phone(&entra.app, &mut phone, &page, &cookie).await;
    let finish = Request::post(format!("{page}/finish"))
        .header(header::COOKIE, &cookie)
        .header(header::ORIGIN, ISSUER);
    let answer = entra.app.send(finish.body(Body::empty()).unwrap()).await;
    assert_eq!(answer.status, StatusCode::OK, "a page posting the answer");
    let policy = answer.headers["content-security-policy"].to_str().unwrap();
    assert!(policy.contains("form-action https://login.microsoftonline.com;"), "{policy}");
    assert!(!policy.contains("form-action 'self'"), "{policy}");
    let html = answer.body.as_str().unwrap();
    assert!(html.contains(&format!(r#"action="{ENTRA_REDIRECT}""#)), "{html}");
    assert!(html.contains(r#"<script src="/assets/form_post.js" defer></script>"#));
    let fields = form_fields(html);
    let field = |name: &str| fields.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone());
    assert_eq!(field("state").as_deref(), Some("entra-state-1"));
    let id_token = field("id_token").unwrap();
    let header = jsonwebtoken::decode_header(&id_token).unwrap();
    assert_eq!(header.alg, jsonwebtoken::Algorithm::RS256, "the client registered RS256 (Entra supports it)");
    let jwks: jsonwebtoken::jwk::JwkSet =
        serde_json::from_value(entra.app.get("/oidc/jwks", None).await.body).unwrap();
    let jwk = jwks.find(header.kid.as_deref().unwrap()).unwrap();
    assert!(jwk.common.x509_chain.as_ref().is_some_and(|chain| chain.len() == 1), "Entra requires x5c");
    let key = jsonwebtoken::DecodingKey::from_jwk(jwk).unwrap();
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
    validation.set_audience(&[entra.client_id.as_str()]);
    validation.set_issuer(&[ISSUER]);
    validation.validate_exp = false;
    let claims = jsonwebtoken::decode::<Value>(&id_token, &key, &validation).unwrap().claims;
    assert_eq!(
        claims["sub"], "mBfcvuhSHkDWVgV72x2ruIYdSsPSvcj2R0qfc6mGEAA",
        "the hint's sub, as Entra requires"
    );
    assert_eq!(claims["nonce"], "entra-nonce-1");
    assert_eq!(claims["acr"], "possessionorinherence");
    assert_eq!(claims["amr"], json!(["swk"]), "exactly one method, one Entra accepts");
}

/// What Entra's hint must be: signed by the configured issuer's key, that issuer byte for byte,
/// the configured audience, not older than the configured age, never `alg: none`, used once.
/// Each refusal goes back to Entra by form as `invalid_request`, prompts nobody, and is audited.
async fn forged_stale_and_replayed_hints_prompt_nobody(engine: Engine) {
    let (entra, phone) = entra(engine).await;
    let claims = hint_claims(&entra, "alice");
    let other_key = TestKey::rs256("entra-1");
    let with = |name: &str, value: Value| {
        let mut c = claims.clone();
        c[name] = value;
        c
    };
    let now = entra.app.clock_now().unix_timestamp();
    let forged = [
        ("another key", other_key.sign(&claims)),
        (
            "another tenant",
            entra.key.sign(&with(
                "iss",
                json!("https://login.microsoftonline.com/00000000-0000-0000-0000-000000000000/v2.0"),
            )),
        ),
        ("another audience", entra.key.sign(&with("aud", json!("someone-else")))),
        ("too old", entra.key.sign(&with("iat", json!(now - 11 * 60)))),
        ("alg none", countersign_e2e::jose::forge(&json!({ "alg": "none", "kid": "entra-1" }), &claims, b"")),
        (
            "no user claim",
            entra.key.sign(&{
                let mut c = claims.clone();
                c.as_object_mut().unwrap().remove("preferred_username");
                c
            }),
        ),
    ];
    for (what, hint) in forged {
        let reply = entra_post(&entra, &hint).await;
        assert_eq!(reply.status, StatusCode::OK, "{what}: an error posted back by form");
        let fields = form_fields(reply.body.as_str().unwrap());
        assert!(fields.contains(&("error".into(), "invalid_request".into())), "{what}: {fields:?}");
        assert!(fields.contains(&("state".into(), "entra-state-1".into())), "{what}");
        assert!(reply.headers.get(header::SET_COOKIE).is_none(), "{what}: no sign-in began");
    }
    let good = entra.key.sign(&claims);
    assert_eq!(entra_post(&entra, &good).await.status, StatusCode::SEE_OTHER);
    let replayed = entra_post(&entra, &good).await;
    let fields = form_fields(replayed.body.as_str().unwrap());
    assert!(fields.contains(&("error".into(), "invalid_request".into())), "a hint names whom to prompt once");
    let pending = signed_get(&entra.app, &phone, "/device/v1/challenges").await;
    assert_eq!(pending.body["challenges"].as_array().unwrap().len(), 1, "only the one good hint prompted");
    let refused: Vec<String> = audit_actions(&entra.app)
        .await
        .into_iter()
        .filter(|(a, _)| a == "oidc.hint_refused")
        .map(|(_, d)| d["reason"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(refused.len(), 7, "{refused:?}");
    assert_eq!(refused.last().map(String::as_str), Some("replayed"));
}

/// A hint is trusted only on the client configured with its issuer: the same valid hint on
/// another client's request prompts nobody.
async fn a_hint_counts_only_for_its_configured_client(engine: Engine) {
    let (entra, phone) = entra(engine).await;
    let new = NewClient {
        name: "Other".into(),
        redirect_uris: vec![ENTRA_REDIRECT.into()],
        auth_method: AuthMethod::ClientSecretPost,
        keys: ClientKeys::None,
        id_token_alg: IdTokenAlg::Es256,
        ciba: None,
    };
    let other = create_client(entra.app.store.as_ref(), entra.app.clock.as_ref(), Actor::Cli, new)
        .await
        .unwrap()
        .client;
    let borrowed = Entra { client_id: other.client_id.0, ..entra };
    let reply = entra_post(&borrowed, &borrowed.key.sign(&hint_claims(&borrowed, "alice"))).await;
    let fields = form_fields(reply.body.as_str().unwrap());
    assert!(fields.contains(&("error".into(), "invalid_request".into())), "{fields:?}");
    let pending = signed_get(&borrowed.app, &phone, "/device/v1/challenges").await;
    assert_eq!(pending.body["challenges"], json!([]));
}

/// The phone says no: Entra gets `access_denied` posted back, with its state.
async fn a_denied_push_posts_access_denied_back(engine: Engine) {
    let (entra, mut phone) = entra(engine).await;
    let started = entra_post(&entra, &entra.key.sign(&hint_claims(&entra, "alice"))).await;
    let page = started.headers[header::LOCATION].to_str().unwrap().to_owned();
    let cookie = started.headers[header::SET_COOKIE].to_str().unwrap().split(';').next().unwrap().to_owned();
    let pending = signed_get(&entra.app, &phone, "/device/v1/challenges").await;
    let pending: PendingChallenges = serde_json::from_value(pending.body).unwrap();
    let details = phone.verify_details(pending.challenges.last().unwrap()).clone();
    let response = phone.answer(&details, Decision::Deny, "");
    let path = format!("/device/v1/challenges/{}/response", details.challenge_id.as_str());
    entra.app.device_post(&path, &serde_json::to_vec(&response).unwrap()).await;
    let finish = Request::post(format!("{page}/finish")).header(header::COOKIE, &cookie);
    let answer = entra.app.send(finish.body(Body::empty()).unwrap()).await;
    let fields = form_fields(answer.body.as_str().unwrap());
    assert!(fields.contains(&("error".into(), "access_denied".into())), "{fields:?}");
    assert!(fields.contains(&("state".into(), "entra-state-1".into())));
    assert!(!fields.iter().any(|(n, _)| n == "id_token"));
}

/// An unknown user named by a valid hint is refused like one without a factor, by a page whose
/// button posts `access_denied` back.
async fn an_unknown_user_in_a_valid_hint_is_refused(engine: Engine) {
    let (entra, _phone) = entra(engine).await;
    let reply = entra_post(&entra, &entra.key.sign(&hint_claims(&entra, "mallory"))).await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    let html = reply.body.as_str().unwrap();
    assert!(!html.contains("form_post.js"), "the user reads why, then sends it back");
    assert!(form_fields(html).contains(&("error".into(), "access_denied".into())));
}

/// Attack: ECDSA signatures are malleable (`s` → `n - s` verifies as well), so a hint spent by
/// its whole text could be replayed with other signature bytes to prompt again. A hint is spent
/// by what its signature covers.
async fn a_hint_with_other_signature_bytes_is_still_spent(engine: Engine) {
    let (entra, phone) = entra_signing_with(engine, TestKey::es256("entra-ec")).await;
    let hint = entra.key.sign(&hint_claims(&entra, "alice"));
    assert_eq!(entra_post(&entra, &hint).await.status, StatusCode::SEE_OTHER);
    let (input, signature) = hint.rsplit_once('.').unwrap();
    let mut raw = URL_SAFE_NO_PAD.decode(signature).unwrap();
    negate_s(&mut raw[32..]);
    let malleated = format!("{input}.{}", URL_SAFE_NO_PAD.encode(&raw));
    assert_ne!(malleated, hint);
    let reply = entra_post(&entra, &malleated).await;
    let fields = form_fields(reply.body.as_str().unwrap());
    assert!(fields.contains(&("error".into(), "invalid_request".into())), "{fields:?}");
    let refused =
        audit_actions(&entra.app).await.into_iter().rev().find(|(a, _)| a == "oidc.hint_refused").unwrap().1;
    assert_eq!(refused["reason"], "replayed", "it verified, and was recognised as the spent hint");
    let pending = signed_get(&entra.app, &phone, "/device/v1/challenges").await;
    assert_eq!(pending.body["challenges"].as_array().unwrap().len(), 1);
}

/// `s` := n - s over P-256's group order (big-endian, 32 bytes).
fn negate_s(s: &mut [u8]) {
    const N: [u8; 32] = [
        0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xbc,
        0xe6, 0xfa, 0xad, 0xa7, 0x17, 0x9e, 0x84, 0xf3, 0xb9, 0xca, 0xc2, 0xfc, 0x63, 0x25, 0x51,
    ];
    let mut borrow = 0i16;
    for i in (0..32).rev() {
        let mut digit = i16::from(N[i]) - i16::from(s[i]) - borrow;
        borrow = i16::from(digit < 0);
        if digit < 0 {
            digit += 256;
        }
        s[i] = u8::try_from(digit).unwrap();
    }
}

on_both_engines!(
    entra_signs_alice_in_and_gets_an_id_token_posted_back,
    forged_stale_and_replayed_hints_prompt_nobody,
    a_hint_counts_only_for_its_configured_client,
    a_denied_push_posts_access_denied_back,
    an_unknown_user_in_a_valid_hint_is_refused,
    a_hint_with_other_signature_bytes_is_still_spent,
);
