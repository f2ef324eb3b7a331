#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The OIDC signing keys through the running app: the JWKS at `/oidc/jwks` (public members only,
//! cacheable no longer than a rotation's overlap), tokens that verify against it, rotation with
//! overlap, emergency revocation, and changes made elsewhere (the CLI, another instance) reaching
//! a running server. Real keys, both engines.

#[macro_use]
mod common;

use std::collections::BTreeSet;
use std::sync::Arc;

use axum::http::{StatusCode, header};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use common::TestApp;
use countersign::app::HttpLimits;
use countersign::audit::Actor;
use countersign::clock::Clock;
use countersign::oidc::keys::certificate::subject_public_key_info;
use countersign::oidc::keys::{
    JWKS_PATH, KeyError, KeyState, KeyTimings, RevocationRefused, RotationRefused, SigningAlg, SigningKeys,
};
use countersign::store::SigningKeyStore;
use countersign_e2e::{Engine, exec_sql};
use serde_json::{Value, json};

const TIMINGS: KeyTimings = KeyTimings::DEFAULT;

/// The members a public JWK may have; private ones (`d`, `p`, `q`, `dp`, `dq`, `qi`, `oth`, `k`)
/// must never appear.
const PUBLIC_MEMBERS: [&str; 12] =
    ["kty", "use", "alg", "kid", "crv", "x", "y", "n", "e", "x5c", "x5t", "x5t#S256"];

/// The certificate members of a JWK.
const CERTIFICATE_MEMBERS: [&str; 3] = ["x5c", "x5t", "x5t#S256"];

async fn jwks(app: &TestApp) -> Value {
    let reply = app.get(JWKS_PATH, None).await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
    reply.body
}

fn kids(set: &Value) -> Vec<String> {
    set["keys"].as_array().unwrap().iter().map(|k| k["kid"].as_str().unwrap().to_owned()).collect()
}

async fn sign(app: &TestApp, alg: SigningAlg) -> String {
    app.state.signing_keys.sign(alg, "JWT", &json!({ "sub": "alice", "aud": "rp" })).await.unwrap()
}

fn kid_of(token: &str) -> String {
    jsonwebtoken::decode_header(token).unwrap().kid.unwrap()
}

/// Checks `token` as a relying party would: the key named by its `kid`, from the JWKS.
fn verify(set: &Value, token: &str) -> Result<Value, jsonwebtoken::errors::Error> {
    let header = jsonwebtoken::decode_header(token)?;
    let kid = header.kid.clone().unwrap();
    let jwk = set["keys"].as_array().unwrap().iter().find(|k| k["kid"] == kid.as_str()).unwrap();
    let jwk: jsonwebtoken::jwk::Jwk = serde_json::from_value(jwk.clone()).unwrap();
    let mut validation = jsonwebtoken::Validation::new(header.alg);
    validation.validate_exp = false;
    validation.required_spec_claims.clear();
    validation.set_audience(&["rp"]);
    let data =
        jsonwebtoken::decode::<Value>(token, &jsonwebtoken::DecodingKey::from_jwk(&jwk)?, &validation)?;
    Ok(data.claims)
}

/// `token` with its payload replaced by `claims`, header and signature kept.
fn forge_payload(token: &str, claims: Value) -> String {
    let parts: Vec<&str> = token.split('.').collect();
    let payload =
        base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, claims.to_string());
    format!("{}.{payload}.{}", parts[0], parts[2])
}

/// The one certificate (DER) in a JWK's `x5c`, which is standard base64 (RFC 7517 §4.7).
fn certificate_of(jwk: &Value) -> Vec<u8> {
    let chain = jwk["x5c"].as_array().unwrap_or_else(|| panic!("no x5c: {jwk}"));
    assert_eq!(chain.len(), 1, "one self-signed certificate: {jwk}");
    STANDARD.decode(chain[0].as_str().unwrap()).unwrap()
}

/// A DER element (short or two-byte long form: enough for these keys).
fn der(tag: u8, contents: &[u8]) -> Vec<u8> {
    let length = match contents.len() {
        n if n < 0x80 => vec![n as u8],
        n if n < 0x100 => vec![0x81, n as u8],
        n => vec![0x82, (n >> 8) as u8, n as u8],
    };
    [&[tag][..], &length, contents].concat()
}

/// The SubjectPublicKeyInfo of a JWK's key (RFC 5480, RFC 3279), encoded here from `x`/`y` or
/// `n`/`e`, independently of the server.
fn spki_of(jwk: &Value) -> Vec<u8> {
    let member = |name: &str| URL_SAFE_NO_PAD.decode(jwk[name].as_str().unwrap()).unwrap();
    let integer = |magnitude: Vec<u8>| {
        let sign = if magnitude[0] & 0x80 != 0 { vec![0] } else { vec![] };
        der(0x02, &[sign, magnitude].concat())
    };
    match jwk["kty"].as_str().unwrap() {
        "EC" => {
            // id-ecPublicKey with prime256v1, then the uncompressed point 04 ‖ x ‖ y.
            let algorithm = hex::decode("301306072a8648ce3d020106082a8648ce3d030107").unwrap();
            let point = [vec![0, 4], member("x"), member("y")].concat();
            der(0x30, &[algorithm, der(0x03, &point)].concat())
        }
        "RSA" => {
            // rsaEncryption with NULL parameters, then RSAPublicKey { n, e }.
            let algorithm = hex::decode("300d06092a864886f70d0101010500").unwrap();
            let key = der(0x30, &[integer(member("n")), integer(member("e"))].concat());
            der(0x30, &[algorithm, der(0x03, &[vec![0], key].concat())].concat())
        }
        other => panic!("unexpected kty {other}"),
    }
}

/// Checks that `jwk` carries one certificate of its own key, named by its thumbprints.
fn assert_certificate_of_itself(jwk: &Value) {
    let certificate = certificate_of(jwk);
    assert_eq!(subject_public_key_info(&certificate), Some(spki_of(jwk).as_slice()), "{jwk}");
    let thumbprint = |algorithm| URL_SAFE_NO_PAD.encode(aws_lc_rs::digest::digest(algorithm, &certificate));
    assert_eq!(jwk["x5t#S256"], thumbprint(&aws_lc_rs::digest::SHA256), "{jwk}");
    assert_eq!(jwk["x5t"], thumbprint(&aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY), "{jwk}");
}

/// An operator's `countersign keys …` (or another instance) on the app's database and clock.
fn operator(app: &TestApp) -> SigningKeys {
    let store: Arc<dyn SigningKeyStore> = Arc::clone(&app.store) as _;
    let clock: Arc<dyn Clock> = app.clock.clone();
    SigningKeys::new(store, clock, Arc::clone(&app.master), TIMINGS)
}

/// Every audit event so far, as (actor, action, subject, details).
async fn audit_trail(app: &TestApp) -> Vec<(String, String, String, Value)> {
    countersign::audit::flush(app.store.as_ref()).await.unwrap();
    let head = app.store.audit_head().await.unwrap();
    let events = app.store.audit_events(0, head.seq, 10_000).await.unwrap();
    events
        .into_iter()
        .map(|e| (e.actor, e.action, e.subject, serde_json::from_str(&e.details).unwrap()))
        .collect()
}

/// Attack: a JWKS that leaks a private member hands out the signing key. Only public members are
/// served — for ES256 and RS256 — and a relying party verifies our tokens with what is served.
async fn the_jwks_never_holds_private_members(engine: Engine) {
    let app = TestApp::build(engine, HttpLimits::default()).await;
    let es256 = sign(&app, SigningAlg::Es256).await;
    let rs256 = sign(&app, SigningAlg::Rs256).await;
    let set = jwks(&app).await;
    let keys = set["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 2, "{set}");
    let stored = app.store.signing_keys().await.unwrap();
    for key in keys {
        let members: BTreeSet<&str> = key.as_object().unwrap().keys().map(String::as_str).collect();
        assert!(members.iter().all(|m| PUBLIC_MEMBERS.contains(m)), "{key}");
        assert_eq!(key["use"], "sig");
        // The certificate shares no run of 32 bytes with the private key but public ones.
        let record = stored.iter().find(|r| r.kid == key["kid"]).unwrap();
        let context = format!("countersign/v1/oidc-signing-key/{}/{}", record.kid, record.alg);
        let pkcs8 = app.master.decrypt(context.as_bytes(), &record.sealed_pkcs8).unwrap();
        let (certificate, public) = (certificate_of(key), spki_of(key));
        let contains = |haystack: &[u8], needle: &[u8]| haystack.windows(needle.len()).any(|w| w == needle);
        for run in pkcs8.windows(32).filter(|run| contains(&certificate, run)) {
            assert!(contains(&public, run), "x5c carries private bytes of {}", record.kid);
        }
    }
    let ec = keys.iter().find(|k| k["alg"] == "ES256").unwrap();
    assert_eq!((&ec["kty"], &ec["crv"]), (&json!("EC"), &json!("P-256")));
    let rsa = keys.iter().find(|k| k["alg"] == "RS256").unwrap();
    assert_eq!(rsa["kty"], "RSA");
    let modulus =
        base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, rsa["n"].as_str().unwrap())
            .unwrap();
    assert_eq!(modulus.len() * 8, 2048, "a 2048-bit RSA key");

    for (token, alg) in [(&es256, "ES256"), (&rs256, "RS256")] {
        let header = jsonwebtoken::decode_header(token).unwrap();
        assert_eq!((format!("{:?}", header.alg), header.typ.as_deref()), (alg.to_owned(), Some("JWT")));
        assert_eq!(verify(&set, token).unwrap()["sub"], "alice", "{alg} verifies with the JWKS");
        let forged = forge_payload(token, json!({ "sub": "mallory", "aud": "rp" }));
        assert!(verify(&set, &forged).is_err(), "a changed payload does not verify");
    }
}

/// Microsoft Entra ID requires `x5c` on every key of the JWKS: each published key, ES256 and
/// RS256, carries one self-signed certificate whose public key is the JWK's, with its own
/// thumbprints. A key stored before certificates is served with one too, made from its private
/// key and stored once, so every instance serves the same certificate.
async fn every_published_key_carries_a_certificate_of_itself(engine: Engine) {
    let app = TestApp::build(engine, HttpLimits::default()).await;
    sign(&app, SigningAlg::Rs256).await;
    let set = jwks(&app).await;
    let algs: Vec<&str> =
        set["keys"].as_array().unwrap().iter().map(|k| k["alg"].as_str().unwrap()).collect();
    assert_eq!(algs, ["ES256", "RS256"]);
    for key in set["keys"].as_array().unwrap() {
        assert_certificate_of_itself(key);
    }

    // A key stored by a version without certificates: its row has none.
    let old = app.state.signing_keys.rotate(SigningAlg::Es256, Actor::Cli).await.unwrap();
    let mut without: Value = serde_json::from_str(&old.public_jwk).unwrap();
    for member in CERTIFICATE_MEMBERS {
        assert!(without.as_object_mut().unwrap().remove(member).is_some(), "made with {member}");
    }
    let strip = format!("UPDATE oidc_signing_keys SET public_jwk = '{without}' WHERE kid = '{}'", old.kid);
    exec_sql(&app.db, &strip).await.unwrap();
    app.advance(TIMINGS.refresh).await;
    let set = jwks(&app).await;
    let served = set["keys"].as_array().unwrap().iter().find(|k| k["kid"] == old.kid.as_str()).unwrap();
    assert_certificate_of_itself(served);
    let record = app.store.signing_keys().await.unwrap().into_iter().find(|k| k.kid == old.kid).unwrap();
    let stored: Value = serde_json::from_str(&record.public_jwk).unwrap();
    assert_eq!(&stored, served, "stored for every instance");
    let elsewhere = serde_json::to_value(operator(&app).jwks().await.unwrap()).unwrap();
    assert!(elsewhere["keys"].as_array().unwrap().contains(served), "another instance serves the same");
}

/// Relying parties may cache the JWKS, but never past a rotation's publish overlap: otherwise
/// a token signed by the next key could reach one that has not seen it.
async fn the_jwks_may_be_cached_no_longer_than_the_publish_overlap(engine: Engine) {
    let app = TestApp::build(engine, HttpLimits::default()).await;
    let reply = app.get(JWKS_PATH, None).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert!(reply.headers[header::CONTENT_TYPE].to_str().unwrap().starts_with("application/json"));
    let cache = reply.headers[header::CACHE_CONTROL].to_str().unwrap();
    let max_age: i64 = cache.strip_prefix("public, max-age=").unwrap().parse().unwrap();
    assert!(max_age > 0 && max_age <= TIMINGS.publish_overlap.whole_seconds(), "{cache}");
    assert!(max_age + TIMINGS.refresh.whole_seconds() <= TIMINGS.publish_overlap.whole_seconds());
    let doc = app.get("/v1/openapi.json", None).await.body;
    assert!(doc["paths"][JWKS_PATH]["get"]["responses"]["200"].is_object(), "documented");
}

/// A rotation publishes the next key first: in the JWKS at once, signing only after the overlap;
/// the old key stays published until every token it signed has expired, then drops out.
async fn a_rotated_key_is_published_before_it_signs_and_the_old_one_until_its_tokens_expire(engine: Engine) {
    let app = TestApp::build(engine, HttpLimits::default()).await;
    let old = kids(&jwks(&app).await).remove(0);
    let next = app.state.signing_keys.rotate(SigningAlg::Es256, Actor::Cli).await.unwrap();
    assert_eq!(kids(&jwks(&app).await), [old.clone(), next.kid.clone()], "published at once");
    assert_eq!(kid_of(&sign(&app, SigningAlg::Es256).await), old, "not signing yet");
    let again = app.state.signing_keys.rotate(SigningAlg::Es256, Actor::Cli).await;
    assert!(
        matches!(again, Err(KeyError::RotationRefused(RotationRefused::AlreadyPending { .. }))),
        "{again:?}"
    );

    app.advance(TIMINGS.publish_overlap - time::Duration::SECOND).await;
    assert_eq!(kid_of(&sign(&app, SigningAlg::Es256).await), old);
    app.advance(time::Duration::SECOND).await;
    let last_of_old = app.clock_now();
    let token = sign(&app, SigningAlg::Es256).await;
    assert_eq!(kid_of(&token), next.kid, "the next key signs after the overlap");
    assert_eq!(kids(&jwks(&app).await), [old.clone(), next.kid.clone()], "the old key is still published");

    app.advance(TIMINGS.retirement_delay() - time::Duration::SECOND).await;
    assert!(kids(&jwks(&app).await).contains(&old), "until its last token expired, plus skew");
    assert!(app.state.signing_keys.verifying_key(&old).await.unwrap().is_some());
    app.advance(time::Duration::SECOND).await;
    assert_eq!(kids(&jwks(&app).await), [next.kid.as_str()], "then it drops out");
    assert!(app.state.signing_keys.verifying_key(&old).await.unwrap().is_none());

    let listed = app.state.signing_keys.list().await.unwrap();
    let old_entry = listed.iter().find(|k| k.kid == old).unwrap();
    assert_eq!(old_entry.state, KeyState::Retired);
    assert_eq!(old_entry.signs_until, Some(last_of_old));
    assert_eq!(old_entry.published_until, Some(last_of_old + TIMINGS.retirement_delay()));
    assert_eq!(listed.iter().find(|k| k.kid == next.kid).unwrap().state, KeyState::Active);
}

/// Emergency: a revoked key leaves the JWKS at once and never signs again; signing goes on with
/// a fresh key at once. Every change is audited with who made it.
async fn a_revoked_key_leaves_the_jwks_at_once_and_signing_continues_with_a_fresh_key(engine: Engine) {
    let app = TestApp::build(engine, HttpLimits::default()).await;
    let compromised = kids(&jwks(&app).await).remove(0);
    let revoked = app.state.signing_keys.revoke(&compromised, Actor::Cli).await.unwrap();
    let fresh = revoked.replacement.expect("the signing key is replaced").kid;
    assert_eq!(kids(&jwks(&app).await), [fresh.as_str()], "out of the JWKS at once");
    let token = sign(&app, SigningAlg::Es256).await;
    assert_eq!(kid_of(&token), fresh, "signing continues at once");
    assert!(app.state.signing_keys.verifying_key(&compromised).await.unwrap().is_none());
    let again = app.state.signing_keys.revoke(&compromised, Actor::Cli).await;
    assert!(
        matches!(again, Err(KeyError::RevocationRefused(RevocationRefused::AlreadyRevoked(_)))),
        "{again:?}"
    );
    let unknown = app.state.signing_keys.revoke("no-such-kid", Actor::Cli).await;
    assert!(
        matches!(unknown, Err(KeyError::RevocationRefused(RevocationRefused::Unknown(_)))),
        "{unknown:?}"
    );

    // Revoking a key that is not signing yet needs no replacement.
    let pending = app.state.signing_keys.rotate(SigningAlg::Es256, Actor::Cli).await.unwrap();
    let revoked = app.state.signing_keys.revoke(&pending.kid, Actor::Cli).await.unwrap();
    assert!(revoked.replacement.is_none());
    app.advance(TIMINGS.publish_overlap).await;
    assert_eq!(kid_of(&sign(&app, SigningAlg::Es256).await), fresh, "a revoked key never signs");

    let trail = audit_trail(&app).await;
    let keys: Vec<(&str, &str, String)> = trail
        .iter()
        .filter(|(_, action, _, _)| action.starts_with("signing_key."))
        .map(|(actor, action, _, details)| (actor.as_str(), action.as_str(), details["reason"].to_string()))
        .collect();
    assert_eq!(
        keys,
        [
            ("system", "signing_key.created", r#""no_signing_key""#.to_owned()),
            ("cli", "signing_key.revoked", "null".to_owned()),
            ("cli", "signing_key.created", r#""replaces_revoked""#.to_owned()),
            ("cli", "signing_key.created", r#""rotation""#.to_owned()),
            ("cli", "signing_key.revoked", "null".to_owned()),
        ]
    );
    let subjects: Vec<&str> = trail.iter().map(|(_, _, subject, _)| subject.as_str()).collect();
    assert!(subjects.contains(&format!("signing_key:{compromised}").as_str()));
}

/// What the CLI (or another instance) changes reaches a running server without a restart:
/// within the refresh interval, and at once for a kid it has not seen.
async fn a_change_made_elsewhere_reaches_a_running_server(engine: Engine) {
    let app = TestApp::build(engine, HttpLimits::default()).await;
    let first = kids(&jwks(&app).await).remove(0);
    let cli = operator(&app);
    let next = cli.rotate(SigningAlg::Es256, Actor::Cli).await.unwrap();
    app.advance(TIMINGS.refresh).await;
    assert_eq!(kids(&jwks(&app).await), [first.clone(), next.kid.clone()], "the CLI's rotation is served");

    let revoked = cli.revoke(&first, Actor::Cli).await.unwrap();
    let fresh = revoked.replacement.unwrap();
    // A token the other side signs with its fresh key checks out here at once (kid miss → re-read).
    let token = cli.sign(SigningAlg::Es256, "at+jwt", &json!({ "sub": "alice" })).await.unwrap();
    assert_eq!(kid_of(&token), fresh.kid);
    assert!(app.state.signing_keys.verifying_key(&fresh.kid).await.unwrap().is_some());
    app.advance(TIMINGS.refresh).await;
    assert_eq!(kids(&jwks(&app).await), [next.kid.clone(), fresh.kid.clone()], "the revoked key is gone");
    assert_eq!(kid_of(&sign(&app, SigningAlg::Es256).await), fresh.kid, "and never signs here either");
}

on_both_engines!(
    the_jwks_never_holds_private_members,
    every_published_key_carries_a_certificate_of_itself,
    the_jwks_may_be_cached_no_longer_than_the_publish_overlap,
    a_rotated_key_is_published_before_it_signs_and_the_old_one_until_its_tokens_expire,
    a_revoked_key_leaves_the_jwks_at_once_and_signing_continues_with_a_fresh_key,
    a_change_made_elsewhere_reaches_a_running_server,
);
