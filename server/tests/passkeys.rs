//! Passkeys over the REST API, with 1Password's `passkey` crate as a software authenticator
//! doing real WebAuthn crypto: registration (trust rule, single use, one user per credential),
//! management, `factors`, and every bad input as its own named test, on both engines.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[macro_use]
mod common;

use axum::http::StatusCode;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use common::{TestApp, assert_error, audit_actions, audit_len, enrolled_device, fresh_approval, signed_get};
use countersign::app::HttpLimits;
use countersign_e2e::Engine;
use passkey::authenticator::{Authenticator, MemoryStore, UiHint, UserCheck, UserValidationMethod};
use passkey::client::{Client, DefaultClientData};
use passkey::crypto::rust_crypto::RustCryptoBackend;
use passkey::types::Passkey;
use passkey::types::ctap2::{Aaguid, Ctap2Error};
use passkey::types::webauthn::CredentialCreationOptions;
use serde_json::{Value, json};

/// The origin the test RP accepts (derived from the test public URL `http://127.0.0.1:8080`).
const ORIGIN: &str = "http://localhost:8080";

/// A user who is present and verified (PIN or biometrics) whenever asked.
struct VerifiedUser;

#[async_trait::async_trait]
impl UserValidationMethod for VerifiedUser {
    type PasskeyItem = Passkey;

    async fn check_user<'a>(
        &self,
        _hint: UiHint<'a, Passkey>,
        _presence: bool,
        _verification: bool,
    ) -> Result<UserCheck, Ctap2Error> {
        Ok(UserCheck { presence: true, verification: true })
    }

    fn is_verification_enabled(&self) -> Option<bool> {
        Some(true)
    }

    fn is_presence_enabled(&self) -> bool {
        true
    }
}

type SoftAuthenticator = Authenticator<MemoryStore, VerifiedUser, RustCryptoBackend>;

fn soft_authenticator() -> SoftAuthenticator {
    let mut authenticator =
        Authenticator::new(Aaguid::new_empty(), MemoryStore::new(), VerifiedUser, RustCryptoBackend);
    authenticator.set_make_credentials_with_signature_counter(true);
    authenticator
}

/// A software authenticator (with a signature counter), used through a WebAuthn client as a
/// browser page would use it (on `http://localhost`, which browsers treat as secure). The
/// client is made per ceremony around the kept authenticator.
struct SoftKey {
    authenticator: SoftAuthenticator,
}

impl SoftKey {
    fn new() -> Self {
        Self { authenticator: soft_authenticator() }
    }

    /// `navigator.credentials.create({ publicKey })` then `credential.toJSON()`.
    async fn create(&mut self, public_key: &Value) -> Value {
        let options: CredentialCreationOptions =
            serde_json::from_value(json!({ "publicKey": public_key })).unwrap();
        let authenticator = std::mem::replace(&mut self.authenticator, soft_authenticator());
        let mut client = Client::new(authenticator).allows_insecure_localhost(true);
        let origin = url::Url::parse(ORIGIN).unwrap();
        let credential = client.register(&origin, options, DefaultClientData).await.unwrap();
        self.authenticator = std::mem::replace(client.authenticator_mut(), soft_authenticator());
        to_json(serde_json::to_value(&credential).unwrap())
    }
}

/// What a browser's `credential.toJSON()` gives: the crate writes buffers as byte arrays, a
/// browser as base64url.
fn to_json(mut credential: Value) -> Value {
    let base64url = |value: &mut Value| {
        if let Some(bytes) = value.as_array() {
            let bytes: Vec<u8> = bytes.iter().map(|b| u8::try_from(b.as_u64().unwrap()).unwrap()).collect();
            *value = json!(URL_SAFE_NO_PAD.encode(bytes));
        }
    };
    base64url(&mut credential["rawId"]);
    let response = &mut credential["response"];
    for field in
        ["clientDataJSON", "authenticatorData", "publicKey", "attestationObject", "signature", "userHandle"]
    {
        if let Some(value) = response.get_mut(field) {
            base64url(value);
        }
    }
    credential
}

/// An app key that may manage users, and the user `username`.
async fn app_with_user(engine: Engine, username: &str) -> (TestApp, String) {
    let app = TestApp::build(engine, HttpLimits::default()).await;
    let key = app.key("portal", "users:read users:write challenges:write").await;
    let created = app.post_json("/v1/users", &key, json!({ "username": username })).await;
    assert_eq!(created.status, StatusCode::CREATED, "{:?}", created.body);
    (app, key)
}

async fn begin(app: &TestApp, key: &str, username: &str, body: Value) -> common::Reply {
    app.post_json(&format!("/v1/users/{username}/passkeys/registrations"), key, body).await
}

async fn complete(app: &TestApp, key: &str, username: &str, id: &str, credential: &Value) -> common::Reply {
    let path = format!("/v1/users/{username}/passkeys/registrations/{id}");
    app.post_json(&path, key, credential.clone()).await
}

/// A begun registration: (ceremony id, creation options).
async fn begun(app: &TestApp, key: &str, username: &str, body: Value) -> (String, Value) {
    let reply = begin(app, key, username, body).await;
    assert_eq!(reply.status, StatusCode::CREATED, "{:?}", reply.body);
    (reply.body["id"].as_str().unwrap().to_owned(), reply.body["public_key"].clone())
}

/// Registers a passkey on `soft_key` for `username`; returns the stored passkey.
async fn register(app: &TestApp, key: &str, username: &str, soft_key: &mut SoftKey, body: Value) -> Value {
    let (id, options) = begun(app, key, username, body).await;
    let credential = soft_key.create(&options).await;
    let reply = complete(app, key, username, &id, &credential).await;
    assert_eq!(reply.status, StatusCode::CREATED, "{:?}", reply.body);
    reply.body
}

async fn passkeys(app: &TestApp, key: &str, username: &str) -> Vec<Value> {
    let reply = app.get(&format!("/v1/users/{username}/passkeys"), Some(key)).await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
    reply.body.as_array().unwrap().clone()
}

async fn passkey_factor(app: &TestApp, key: &str, username: &str) -> Value {
    let reply = app.get(&format!("/v1/users/{username}/factors"), Some(key)).await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
    reply.body["factors"].as_array().unwrap().iter().find(|f| f["factor"] == "passkey").unwrap().clone()
}

fn decode(value: &Value) -> Vec<u8> {
    URL_SAFE_NO_PAD.decode(value.as_str().unwrap()).unwrap()
}

/// The credential's `clientDataJSON`, decoded.
fn client_data(credential: &Value) -> Value {
    serde_json::from_slice(&decode(&credential["response"]["clientDataJSON"])).unwrap()
}

/// The credential with its `clientDataJSON` replaced. Attestation `none` signs nothing, so
/// only the relying party's checks stand between such a forgery and a registration.
fn with_client_data(credential: &Value, client_data: &Value) -> Value {
    let mut forged = credential.clone();
    forged["response"]["clientDataJSON"] = json!(URL_SAFE_NO_PAD.encode(client_data.to_string()));
    forged
}

/// The credential with its authenticator data patched where it starts (the RP ID hash), in
/// both places a registration response carries it.
fn with_auth_data(credential: &Value, patch: impl Fn(&mut [u8])) -> Value {
    let rp_id_hash = ring::digest::digest(&ring::digest::SHA256, b"localhost");
    let mut forged = credential.clone();
    for field in ["authenticatorData", "attestationObject"] {
        let mut bytes = decode(&credential["response"][field]);
        let at = bytes.windows(32).position(|w| w == rp_id_hash.as_ref()).unwrap();
        patch(&mut bytes[at..]);
        forged["response"][field] = json!(URL_SAFE_NO_PAD.encode(&bytes));
    }
    forged
}

/// The actions of the audit events recorded after the first `from`.
async fn actions_since(app: &TestApp, from: i64) -> Vec<(String, Value)> {
    audit_actions(app).await.into_iter().skip(usize::try_from(from).unwrap()).collect()
}

// ---------------------------------------------------------------------------------------------
// Registration and management

async fn a_first_passkey_registers_and_is_listed_renamed_and_revoked(engine: Engine) {
    let (app, key) = app_with_user(engine, "alice").await;
    assert_eq!(passkey_factor(&app, &key, "alice").await["available"], false);
    let (id, options) = begun(&app, &key, "alice", json!({ "name": "Laptop" })).await;
    assert_eq!(options["rp"]["id"], "localhost");
    assert_eq!(options["authenticatorSelection"]["userVerification"], "required");
    assert_eq!(options["authenticatorSelection"]["residentKey"], "preferred");
    let handle = decode(&options["user"]["id"]);
    assert_eq!(handle.len(), 64, "a random 64-byte user handle");
    assert!(!handle.windows(5).any(|w| w == b"alice"), "the handle never carries the username");

    let mut soft_key = SoftKey::new();
    let credential = soft_key.create(&options).await;
    let reply = complete(&app, &key, "alice", &id, &credential).await;
    assert_eq!(reply.status, StatusCode::CREATED, "{:?}", reply.body);
    let stored = reply.body;
    assert_eq!(stored["name"], "Laptop");
    assert_eq!(stored["aaguid"], "00000000-0000-0000-0000-000000000000");
    // The soft key says what a synced passkey says: backup eligible and backed up (BE, BS).
    assert_eq!((stored["backup_eligible"].clone(), stored["backed_up"].clone()), (json!(true), json!(true)));
    assert_eq!(stored["last_used_at"], Value::Null);
    assert_eq!(passkeys(&app, &key, "alice").await, vec![stored.clone()]);
    assert_eq!(passkey_factor(&app, &key, "alice").await["available"], true);
    let factors = app.get("/v1/users/alice/factors", Some(&key)).await;
    assert_eq!(factors.body["enrollment_required"], false, "a passkey is a factor");

    let path = format!("/v1/users/alice/passkeys/{}", stored["id"].as_str().unwrap());
    let request = axum::http::Request::patch(&path)
        .header("authorization", format!("Bearer {key}"))
        .header("content-type", "application/json")
        .body(axum::body::Body::from(json!({ "name": "Work laptop" }).to_string()))
        .unwrap();
    let renamed = app.send(request).await;
    assert_eq!((renamed.status, renamed.body["name"].clone()), (StatusCode::OK, json!("Work laptop")));
    assert_eq!(app.delete(&path, &key).await.status, StatusCode::NO_CONTENT);
    assert_error(&app.delete(&path, &key).await, StatusCode::NOT_FOUND, "passkey_not_found");
    assert!(passkeys(&app, &key, "alice").await[0]["revoked_at"].is_string());
    assert_eq!(passkey_factor(&app, &key, "alice").await["available"], false);

    let actions: Vec<String> = audit_actions(&app).await.into_iter().map(|(a, _)| a).collect();
    for action in ["passkey.registration_started", "passkey.registered", "passkey.renamed", "passkey.revoked"]
    {
        assert_eq!(actions.iter().filter(|a| *a == action).count(), 1, "{action} in {actions:?}");
    }
}

async fn a_registration_completes_once(engine: Engine) {
    let (app, key) = app_with_user(engine, "alice").await;
    let (id, options) = begun(&app, &key, "alice", json!({})).await;
    let credential = SoftKey::new().create(&options).await;
    let (first, second) = tokio::join!(
        complete(&app, &key, "alice", &id, &credential),
        complete(&app, &key, "alice", &id, &credential)
    );
    let mut statuses = [first.status, second.status];
    statuses.sort();
    assert_eq!(statuses, [StatusCode::CREATED, StatusCode::NOT_FOUND], "{:?} {:?}", first.body, second.body);
    assert_eq!(passkeys(&app, &key, "alice").await.len(), 1);
    let again = complete(&app, &key, "alice", &id, &credential).await;
    assert_error(&again, StatusCode::NOT_FOUND, "registration_not_found");
}

async fn a_user_with_a_factor_needs_an_approval_which_counts_once(engine: Engine) {
    let (app, key) = app_with_user(engine, "alice").await;
    let mut phone =
        enrolled_device(&app, &key, "alice", countersign_mobile_protocol::PushRegistration::None).await;
    let before = audit_len(&app).await;
    let refused = begin(&app, &key, "alice", json!({})).await;
    assert_error(&refused, StatusCode::FORBIDDEN, "second_factor_proof_required");
    let events = actions_since(&app, before).await;
    assert_eq!(events.len(), 1);
    assert_eq!(
        (events[0].0.as_str(), events[0].1["reason"].clone()),
        ("passkey.registration_refused", json!("second_factor_proof_required"))
    );

    let approval = fresh_approval(&app, &key, "alice", &mut phone).await;
    let mut soft_key = SoftKey::new();
    register(&app, &key, "alice", &mut soft_key, json!({ "approval": approval })).await;
    let reused = begin(&app, &key, "alice", json!({ "approval": approval })).await;
    assert_error(&reused, StatusCode::FORBIDDEN, "approval_invalid");
    let redeem = app.post_json(&format!("/v1/challenges/{approval}/redeem"), &key, json!({})).await;
    assert_error(&redeem, StatusCode::CONFLICT, "already_redeemed");

    // The phone is told a passkey was added.
    let notices = signed_get(&app, &phone, "/device/v1/notices").await;
    let kinds: Vec<&str> =
        notices.body["notices"].as_array().unwrap().iter().filter_map(|n| n["kind"].as_str()).collect();
    assert!(kinds.contains(&"passkey_added"), "{:?}", notices.body);

    // A user whose only factor is a passkey needs an approval too.
    let (app2, key2) = app_with_user(engine, "bob").await;
    register(&app2, &key2, "bob", &mut SoftKey::new(), json!({})).await;
    assert_error(
        &begin(&app2, &key2, "bob", json!({})).await,
        StatusCode::FORBIDDEN,
        "second_factor_proof_required",
    );
}

async fn a_credential_is_bound_to_one_user_forever(engine: Engine) {
    let (app, key) = app_with_user(engine, "alice").await;
    assert_eq!(
        app.post_json("/v1/users", &key, json!({ "username": "bob" })).await.status,
        StatusCode::CREATED
    );
    let (id, options) = begun(&app, &key, "alice", json!({})).await;
    let credential = SoftKey::new().create(&options).await;
    let alice = complete(&app, &key, "alice", &id, &credential).await.body;

    // Bob presents alice's credential, answering his own ceremony.
    let (bob_id, bob_options) = begun(&app, &key, "bob", json!({})).await;
    let mut data = client_data(&credential);
    data["challenge"] = bob_options["challenge"].clone();
    let before = audit_len(&app).await;
    let shared = complete(&app, &key, "bob", &bob_id, &with_client_data(&credential, &data)).await;
    assert_error(&shared, StatusCode::CONFLICT, "factor_already_bound");
    assert!(passkeys(&app, &key, "bob").await.is_empty());
    let events = actions_since(&app, before).await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0].0, "device.factor_refused");
    assert_eq!(events[0].1["factor"], "passkey");
    assert_eq!(events[0].1["username"], "bob");
    let alice_id = app.get("/v1/users/alice", Some(&key)).await.body["id"].clone();
    assert_eq!(events[0].1["bound_to_user_id"], alice_id, "both users are named");
    assert_eq!(events[0].1["bound_passkey_id"], alice["id"]);

    // Revoked, it stays bound: alice cannot register it again either.
    let path = format!("/v1/users/alice/passkeys/{}", alice["id"].as_str().unwrap());
    assert_eq!(app.delete(&path, &key).await.status, StatusCode::NO_CONTENT);
    let (id2, options2) = begun(&app, &key, "alice", json!({})).await;
    let mut data = client_data(&credential);
    data["challenge"] = options2["challenge"].clone();
    let again = complete(&app, &key, "alice", &id2, &with_client_data(&credential, &data)).await;
    assert_error(&again, StatusCode::CONFLICT, "factor_already_bound");
}

async fn an_aaguid_allow_list_refuses_other_authenticators(engine: Engine) {
    let only_security_keys = countersign::passkeys::model::WebauthnConfig {
        allowed_aaguids: vec![uuid::Uuid::from_bytes([7; 16])],
        ..Default::default()
    };
    let app = TestApp::with_webauthn(engine, only_security_keys).await;
    let key = app.key("portal", "users:read users:write").await;
    assert_eq!(
        app.post_json("/v1/users", &key, json!({ "username": "alice" })).await.status,
        StatusCode::CREATED
    );
    let (id, options) = begun(&app, &key, "alice", json!({})).await;
    let credential = SoftKey::new().create(&options).await;
    let before = audit_len(&app).await;
    let refused = complete(&app, &key, "alice", &id, &credential).await;
    assert_error(&refused, StatusCode::FORBIDDEN, "authenticator_not_allowed");
    assert!(passkeys(&app, &key, "alice").await.is_empty());
    let events = actions_since(&app, before).await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(
        (events[0].0.as_str(), events[0].1["reason"].clone()),
        ("passkey.registration_refused", json!("authenticator_not_allowed"))
    );
    assert_eq!(events[0].1["aaguid"], "00000000-0000-0000-0000-000000000000");
}

async fn expired_registrations_are_purged(engine: Engine) {
    let (app, key) = app_with_user(engine, "alice").await;
    let (id, _) = begun(&app, &key, "alice", json!({})).await;
    let id = countersign::ids::RegistrationId(id.parse().unwrap());
    assert_eq!(app.store.purge_expired_registrations(app.clock_now()).await.unwrap(), 0, "not yet expired");
    app.advance(time::Duration::minutes(5)).await;
    assert_eq!(app.store.purge_expired_registrations(app.clock_now()).await.unwrap(), 1);
    assert!(app.store.registration(id).await.unwrap().is_none());
}

// ---------------------------------------------------------------------------------------------
// Bad input: each a precise JSON 4xx with a stable code, and nothing changes (the good
// credential still registers afterwards).

/// Begins a ceremony, makes a genuine credential, and checks that `forge`'s version of it is
/// refused with `code`, leaves no passkey, and (when `audited`) is audited; then the genuine
/// credential still completes the same ceremony.
async fn refused_then_genuine_registers(
    engine: Engine,
    forge: impl Fn(&Value, &Value) -> Value,
    status: StatusCode,
    code: &str,
    audited: bool,
) {
    let (app, key) = app_with_user(engine, "alice").await;
    let (id, options) = begun(&app, &key, "alice", json!({})).await;
    let credential = SoftKey::new().create(&options).await;
    let before = audit_len(&app).await;
    let reply = complete(&app, &key, "alice", &id, &forge(&credential, &options)).await;
    assert_error(&reply, status, code);
    assert!(passkeys(&app, &key, "alice").await.is_empty());
    let events = actions_since(&app, before).await;
    if audited {
        assert_eq!(events.len(), 1, "{events:?}");
        assert_eq!(events[0].0, "passkey.registration_refused");
    } else {
        assert!(events.is_empty(), "{events:?}");
    }
    let genuine = complete(&app, &key, "alice", &id, &credential).await;
    assert_eq!(
        genuine.status,
        StatusCode::CREATED,
        "the refused attempt used nothing up: {:?}",
        genuine.body
    );
}

async fn registration_with_malformed_json_is_invalid_json(engine: Engine) {
    let (app, key) = app_with_user(engine, "alice").await;
    let (id, _) = begun(&app, &key, "alice", json!({})).await;
    let path = format!("/v1/users/alice/passkeys/registrations/{id}");
    let reply = app.post_raw(&path, &key, Some("application/json"), "{\"id\": ").await;
    assert_error(&reply, StatusCode::BAD_REQUEST, "invalid_json");
}

async fn registration_with_wrong_types_is_invalid_request(engine: Engine) {
    refused_then_genuine_registers(
        engine,
        |credential, _| {
            let mut wrong = credential.clone();
            wrong["response"]["clientDataJSON"] = json!(42);
            wrong
        },
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_request",
        false,
    )
    .await;
    let (app, key) = app_with_user(engine, "alice").await;
    let (id, _) = begun(&app, &key, "alice", json!({})).await;
    let path = format!("/v1/users/alice/passkeys/registrations/{id}");
    let array = app.post_raw(&path, &key, Some("application/json"), "[1, 2]").await;
    assert_error(&array, StatusCode::UNPROCESSABLE_ENTITY, "invalid_request");
    let no_type =
        complete(&app, &key, "alice", &id, &json!({ "id": "AA", "rawId": "AA", "response": {} })).await;
    assert_error(&no_type, StatusCode::UNPROCESSABLE_ENTITY, "invalid_request");
}

async fn registration_whose_contents_do_not_decode_is_refused(engine: Engine) {
    refused_then_genuine_registers(
        engine,
        |credential, _| {
            let mut garbage = credential.clone();
            garbage["response"]["attestationObject"] = json!(URL_SAFE_NO_PAD.encode(b"not CBOR"));
            garbage
        },
        StatusCode::FORBIDDEN,
        "webauthn_response_invalid",
        false,
    )
    .await;
}

async fn registration_from_a_wrong_origin_is_refused(engine: Engine) {
    refused_then_genuine_registers(
        engine,
        |credential, _| {
            let mut data = client_data(credential);
            data["origin"] = json!("https://evil.example");
            with_client_data(credential, &data)
        },
        StatusCode::FORBIDDEN,
        "webauthn_origin_mismatch",
        true,
    )
    .await;
}

async fn registration_with_a_wrong_rp_id_hash_is_refused(engine: Engine) {
    refused_then_genuine_registers(
        engine,
        |credential, _| {
            let evil = ring::digest::digest(&ring::digest::SHA256, b"evil.example");
            with_auth_data(credential, |data| data[..32].copy_from_slice(evil.as_ref()))
        },
        StatusCode::FORBIDDEN,
        "webauthn_rp_id_mismatch",
        true,
    )
    .await;
}

async fn registration_without_user_verification_is_refused(engine: Engine) {
    refused_then_genuine_registers(
        engine,
        |credential, _| with_auth_data(credential, |data| data[32] &= !0x04),
        StatusCode::FORBIDDEN,
        "webauthn_user_not_verified",
        true,
    )
    .await;
}

async fn registration_answering_another_challenge_is_refused(engine: Engine) {
    refused_then_genuine_registers(
        engine,
        |credential, _| {
            let mut data = client_data(credential);
            data["challenge"] = json!(URL_SAFE_NO_PAD.encode([1u8; 16]));
            with_client_data(credential, &data)
        },
        StatusCode::FORBIDDEN,
        "webauthn_challenge_mismatch",
        true,
    )
    .await;
}

async fn registration_with_oversized_client_data_is_refused(engine: Engine) {
    refused_then_genuine_registers(
        engine,
        |credential, _| {
            let mut data = client_data(credential);
            data["padding"] = json!("x".repeat(4096));
            with_client_data(credential, &data)
        },
        StatusCode::PAYLOAD_TOO_LARGE,
        "client_data_too_large",
        false,
    )
    .await;
}

async fn an_expired_registration_is_gone(engine: Engine) {
    let (app, key) = app_with_user(engine, "alice").await;
    let (id, options) = begun(&app, &key, "alice", json!({})).await;
    let credential = SoftKey::new().create(&options).await;
    app.advance(time::Duration::minutes(5) + time::Duration::seconds(1)).await;
    let reply = complete(&app, &key, "alice", &id, &credential).await;
    assert_error(&reply, StatusCode::GONE, "registration_expired");
    assert!(passkeys(&app, &key, "alice").await.is_empty());
}

async fn another_users_registration_is_not_found(engine: Engine) {
    let (app, key) = app_with_user(engine, "alice").await;
    assert_eq!(
        app.post_json("/v1/users", &key, json!({ "username": "bob" })).await.status,
        StatusCode::CREATED
    );
    let (id, options) = begun(&app, &key, "alice", json!({})).await;
    let credential = SoftKey::new().create(&options).await;
    assert_error(
        &complete(&app, &key, "bob", &id, &credential).await,
        StatusCode::NOT_FOUND,
        "registration_not_found",
    );
    let other_app = app.key("other", "users:write").await;
    assert_error(
        &complete(&app, &other_app, "alice", &id, &credential).await,
        StatusCode::NOT_FOUND,
        "registration_not_found",
    );
    let unknown = uuid::Uuid::new_v4().to_string();
    assert_error(
        &complete(&app, &key, "alice", &unknown, &credential).await,
        StatusCode::NOT_FOUND,
        "registration_not_found",
    );
    assert_eq!(complete(&app, &key, "alice", &id, &credential).await.status, StatusCode::CREATED);
}

async fn bad_registration_requests_are_precise(engine: Engine) {
    let (app, key) = app_with_user(engine, "alice").await;
    assert_error(&begin(&app, &key, "nobody", json!({})).await, StatusCode::NOT_FOUND, "user_not_found");
    assert_error(
        &begin(&app, &key, "alice", json!({ "name": "" })).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_request",
    );
    assert_error(
        &begin(&app, &key, "alice", json!({ "name": 5 })).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_request",
    );
    assert_error(
        &begin(&app, &key, "alice", json!({ "extra": 1 })).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_request",
    );
    let approval = json!({ "approval": uuid::Uuid::new_v4() });
    assert_error(&begin(&app, &key, "alice", approval).await, StatusCode::FORBIDDEN, "approval_invalid");
    let reader = app.key("reader", "users:read").await;
    assert_error(
        &begin(&app, &reader, "alice", json!({})).await,
        StatusCode::FORBIDDEN,
        "insufficient_scope",
    );
}

on_both_engines!(
    a_first_passkey_registers_and_is_listed_renamed_and_revoked,
    a_registration_completes_once,
    a_user_with_a_factor_needs_an_approval_which_counts_once,
    a_credential_is_bound_to_one_user_forever,
    registration_with_malformed_json_is_invalid_json,
    registration_with_wrong_types_is_invalid_request,
    registration_whose_contents_do_not_decode_is_refused,
    registration_from_a_wrong_origin_is_refused,
    registration_with_a_wrong_rp_id_hash_is_refused,
    registration_without_user_verification_is_refused,
    registration_answering_another_challenge_is_refused,
    registration_with_oversized_client_data_is_refused,
    an_expired_registration_is_gone,
    another_users_registration_is_not_found,
    bad_registration_requests_are_precise,
    an_aaguid_allow_list_refuses_other_authenticators,
    expired_registrations_are_purged,
);
