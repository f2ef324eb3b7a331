//! Apps and OIDC clients on the admin plane, both engines: only an admin with a fresh step-up
//! creates or revokes them; a new key or secret is shown once and works at once, and stops
//! working the moment it is revoked. Keyless apps are not managed here.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[macro_use]
mod common;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use common::admin::AdminClient;
use common::{TestApp, assert_error};
use countersign::admin::model::Role;
use countersign::app::HttpLimits;
use countersign_e2e::Engine;
use serde_json::json;

async fn app(engine: Engine) -> TestApp {
    TestApp::build(engine, HttpLimits::default()).await
}

/// Each action was audited once, with the admin as its actor.
async fn assert_audited_by(app: &TestApp, admin: &AdminClient, actions: &[&str]) {
    countersign::audit::flush(app.store.as_ref()).await.unwrap();
    let head = app.store.audit_head().await.unwrap();
    let events = app.store.audit_events(0, head.seq, 100_000).await.unwrap();
    for action in actions {
        let actors: Vec<&str> =
            events.iter().filter(|e| e.action == *action).map(|e| e.actor.as_str()).collect();
        assert_eq!(actors, [format!("admin:{}", admin.id)], "{action}");
    }
}

async fn an_admin_creates_and_revokes_an_app_with_a_fresh_passkey(engine: Engine) {
    let app = app(engine).await;
    let admin = app.signed_in_admin("root", Role::Admin).await;
    let body = json!({ "name": "portal", "scopes": ["users:read"] });

    let refused = app.admin_post(&admin, "/admin/api/apps", body.clone()).await;
    assert_error(&refused, StatusCode::FORBIDDEN, "step_up_required");
    // A step-up taken for another app's creation does not create this one.
    app.step_up_for(&admin, "create_app:other").await;
    let refused = app.admin_post(&admin, "/admin/api/apps", body.clone()).await;
    assert_error(&refused, StatusCode::FORBIDDEN, "step_up_required");

    app.step_up_for(&admin, "create_app:portal").await;
    let created = app.admin_post(&admin, "/admin/api/apps", body.clone()).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    assert_eq!(created.body["name"], "portal");
    assert_eq!(created.body["scopes"], json!(["users:read"]));
    let key = created.body["api_key"].as_str().unwrap().to_owned();
    // The key works at once with its scope (alice does not exist: 404, not 401) and only it.
    assert_error(&app.get("/v1/users/alice", Some(&key)).await, StatusCode::NOT_FOUND, "user_not_found");
    let write = app.post_json("/v1/users", &key, json!({ "username": "alice" })).await;
    assert_error(&write, StatusCode::FORBIDDEN, "insufficient_scope");
    // Never stored in clear, never listed.
    let stored = app.store.app_by_name("portal").await.unwrap().unwrap();
    assert_ne!(stored.key_hash, key.as_bytes());
    let listed = app.admin_get(&admin, "/admin/api/apps").await;
    assert!(!listed.body.to_string().contains(&key), "{}", listed.body);

    // The step-up was spent, and was for creating: revoking needs its own.
    app.step_up_for(&admin, "create_app:portal").await;
    let revoke = app.admin_post(&admin, "/admin/api/apps/portal/revoke", json!({})).await;
    assert_error(&revoke, StatusCode::FORBIDDEN, "step_up_required");
    app.step_up_for(&admin, "revoke_app:portal").await;
    let revoked = app.admin_post(&admin, "/admin/api/apps/portal/revoke", json!({})).await;
    assert_eq!(revoked.status, StatusCode::OK, "{}", revoked.body);
    assert_error(&app.get("/v1/users/alice", Some(&key)).await, StatusCode::UNAUTHORIZED, "api_key_revoked");

    assert_audited_by(&app, &admin, &["app.created", "app.revoked"]).await;
}

async fn helpdesk_and_auditor_cannot_create_or_revoke_apps(engine: Engine) {
    let app = app(engine).await;
    app.key("portal", "users:read").await;
    for (name, role) in [("desk", Role::Helpdesk), ("reader", Role::Auditor)] {
        let other = app.signed_in_admin(name, role).await;
        app.step_up_for(&other, "create_app:x").await;
        let create =
            app.admin_post(&other, "/admin/api/apps", json!({ "name": "x", "scopes": ["users:read"] })).await;
        assert_error(&create, StatusCode::FORBIDDEN, "admin_role_required");
        let revoke = app.admin_post(&other, "/admin/api/apps/portal/revoke", json!({})).await;
        assert_error(&revoke, StatusCode::FORBIDDEN, "admin_role_required");
        let client = app
            .admin_post(&other, "/admin/api/clients", json!({ "name": "x", "redirect_uris": ["https://rp.example/cb"], "auth_method": "client_secret_basic" }))
            .await;
        assert_error(&client, StatusCode::FORBIDDEN, "admin_role_required");
    }
    assert!(app.store.app_by_name("x").await.unwrap().is_none());
    assert!(app.store.app_by_name("portal").await.unwrap().unwrap().revoked_at.is_none());
}

async fn keyless_apps_cannot_be_revoked_here(engine: Engine) {
    let app = app(engine).await;
    let (record, event) = countersign::api_keys::service::keyless_app(
        "sso-realm".into(),
        json!({ "realm": "acme" }),
        app.clock_now(),
    )
    .unwrap();
    app.store.create_app(record, event).await.unwrap();
    let admin = app.signed_in_admin("root", Role::Admin).await;
    app.step_up_for(&admin, "revoke_app:sso-realm").await;
    let revoke = app.admin_post(&admin, "/admin/api/apps/sso-realm/revoke", json!({})).await;
    assert_error(&revoke, StatusCode::CONFLICT, "keyless_app");
    assert!(app.store.app_by_name("sso-realm").await.unwrap().unwrap().revoked_at.is_none());
    // The help desk's app name is not one an admin may create either.
    let create = app
        .admin_post(
            &admin,
            "/admin/api/apps",
            json!({ "name": "countersign:helpdesk", "scopes": ["users:read"] }),
        )
        .await;
    assert_error(&create, StatusCode::UNPROCESSABLE_ENTITY, "invalid_request");
    let missing = app.admin_post(&admin, "/admin/api/apps/nobody/revoke", json!({})).await;
    assert_error(&missing, StatusCode::NOT_FOUND, "app_not_found");
}

async fn bad_app_input_is_422_and_a_taken_name_409(engine: Engine) {
    let app = app(engine).await;
    app.key("portal", "users:read").await;
    let admin = app.signed_in_admin("root", Role::Admin).await;
    for body in [
        json!({ "name": "ok", "scopes": [] }),
        json!({ "name": "ok", "scopes": ["root:everything"] }),
        json!({ "name": "bad name", "scopes": ["users:read"] }),
        json!({ "name": "", "scopes": ["users:read"] }),
        json!({ "name": "ok", "scopes": ["users:read"], "extra": 1 }),
        json!({ "name": "ok" }),
    ] {
        app.step_up_for(&admin, "create_app:ok").await;
        let reply = app.admin_post(&admin, "/admin/api/apps", body.clone()).await;
        assert_error(&reply, StatusCode::UNPROCESSABLE_ENTITY, "invalid_request");
    }
    app.step_up_for(&admin, "create_app:portal").await;
    let taken = app
        .admin_post(&admin, "/admin/api/apps", json!({ "name": "portal", "scopes": ["users:read"] }))
        .await;
    assert_error(&taken, StatusCode::CONFLICT, "app_exists");
    for body in [
        json!({ "name": "rp", "redirect_uris": ["https://rp.example/cb"], "auth_method": "magic" }),
        json!({ "name": "rp", "redirect_uris": ["javascript:alert(1)"], "auth_method": "client_secret_basic" }),
        json!({ "name": "rp", "redirect_uris": [], "auth_method": "client_secret_basic" }),
        json!({ "name": "rp", "redirect_uris": ["https://rp.example/cb"], "auth_method": "client_secret_basic", "ciba": "shout" }),
    ] {
        app.step_up_for(&admin, "create_client").await;
        let reply = app.admin_post(&admin, "/admin/api/clients", body.clone()).await;
        assert_error(&reply, StatusCode::UNPROCESSABLE_ENTITY, "invalid_request");
    }
    assert!(app.store.app_by_name("ok").await.unwrap().is_none());

    // A refused body does not spend the step-up: the admin fixes a typo without a new prompt.
    app.step_up_for(&admin, "create_app:ok").await;
    let typo =
        app.admin_post(&admin, "/admin/api/apps", json!({ "name": "ok", "scopes": ["users:raed"] })).await;
    assert_error(&typo, StatusCode::UNPROCESSABLE_ENTITY, "invalid_request");
    let fixed =
        app.admin_post(&admin, "/admin/api/apps", json!({ "name": "ok", "scopes": ["users:read"] })).await;
    assert_eq!(fixed.status, StatusCode::CREATED, "{}", fixed.body);
}

/// A token request with a bogus code: a client that authenticates gets `invalid_grant`, one
/// that does not `invalid_client`.
async fn token_error(app: &TestApp, client_id: &str, secret: &str) -> String {
    let basic = format!("Basic {}", STANDARD.encode(format!("{client_id}:{secret}")));
    let request = Request::post("/oidc/token")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .header(header::AUTHORIZATION, basic)
        .body(Body::from("grant_type=authorization_code&code=nope&redirect_uri=https%3A%2F%2Frp.example%2Fcb&code_verifier=abcdefghijklmnopqrstuvwxyzabcdefghijklmnopq"))
        .unwrap();
    app.send(request).await.body["error"].as_str().unwrap_or_default().to_owned()
}

async fn an_admin_creates_and_revokes_an_oidc_client(engine: Engine) {
    let app = app(engine).await;
    let admin = app.signed_in_admin("root", Role::Admin).await;
    let body = json!({
        "name": "Wiki", "redirect_uris": ["https://rp.example/cb"], "auth_method": "client_secret_basic"
    });
    let refused = app.admin_post(&admin, "/admin/api/clients", body.clone()).await;
    assert_error(&refused, StatusCode::FORBIDDEN, "step_up_required");
    app.step_up_for(&admin, "create_client").await;
    let created = app.admin_post(&admin, "/admin/api/clients", body).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    let client_id = created.body["client_id"].as_str().unwrap().to_owned();
    let secret = created.body["client_secret"].as_str().unwrap().to_owned();
    assert_eq!(token_error(&app, &client_id, &secret).await, "invalid_grant");
    assert_eq!(token_error(&app, &client_id, "wrong").await, "invalid_client");
    let listed = app.admin_get(&admin, "/admin/api/clients").await;
    assert!(listed.body.to_string().contains(&client_id), "{}", listed.body);
    assert!(!listed.body.to_string().contains(&secret), "{}", listed.body);

    let path = format!("/admin/api/clients/{client_id}/revoke");
    assert_error(&app.admin_post(&admin, &path, json!({})).await, StatusCode::FORBIDDEN, "step_up_required");
    app.step_up_for(&admin, &format!("revoke_client:{client_id}")).await;
    let revoked = app.admin_post(&admin, &path, json!({})).await;
    assert_eq!(revoked.status, StatusCode::OK, "{}", revoked.body);
    assert_eq!(token_error(&app, &client_id, &secret).await, "invalid_client");
    app.step_up_for(&admin, &format!("revoke_client:{client_id}")).await;
    assert_error(&app.admin_post(&admin, &path, json!({})).await, StatusCode::NOT_FOUND, "client_not_found");
    assert_audited_by(&app, &admin, &["oidc_client.created", "oidc_client.revoked"]).await;
}

on_both_engines!(
    an_admin_creates_and_revokes_an_app_with_a_fresh_passkey,
    helpdesk_and_auditor_cannot_create_or_revoke_apps,
    keyless_apps_cannot_be_revoked_here,
    bad_app_input_is_422_and_a_taken_name_409,
    an_admin_creates_and_revokes_an_oidc_client,
);
