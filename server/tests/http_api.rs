//! In-process HTTP tests: the real router and middleware over a real SQLite file, driven with
//! `oneshot` requests. Bad input must get a precise 4xx JSON error and change nothing.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use common::{TestApp, assert_error, audit_len};
use countersign::api_keys::service as api_keys;
use countersign::app::HttpLimits;
use countersign::audit::Actor;
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;

#[tokio::test]
async fn health_and_readiness() {
    let app = TestApp::new().await;
    let health = app.get("/healthz", None).await;
    assert_eq!((health.status, &health.body["status"]), (StatusCode::OK, &json!("ok")));
    let ready = app.get("/readyz", None).await;
    assert_eq!(ready.status, StatusCode::OK);
    assert_eq!(ready.body["database"], "sqlite");
}

#[tokio::test]
async fn unknown_routes_and_methods_get_json_errors() {
    let app = TestApp::new().await;
    assert_error(&app.get("/v1/nope", None).await, StatusCode::NOT_FOUND, "not_found");
    let reply = app.send(Request::delete("/healthz").body(Body::empty()).unwrap()).await;
    assert_error(&reply, StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed");
}

#[tokio::test]
async fn request_ids_are_echoed_or_made() {
    let app = TestApp::new().await;
    let reply = app
        .send(Request::get("/v1/nope").header("x-request-id", "trace-123").body(Body::empty()).unwrap())
        .await;
    assert_eq!(reply.headers["x-request-id"], "trace-123");
    assert_eq!(reply.body["request_id"], "trace-123");
    // A hostile id (header injection, huge) is replaced, not echoed.
    let reply = app
        .send(Request::get("/healthz").header("x-request-id", "a b<script>").body(Body::empty()).unwrap())
        .await;
    let id = reply.headers["x-request-id"].to_str().unwrap();
    assert!(uuid::Uuid::parse_str(id).is_ok(), "{id}");
}

#[tokio::test]
async fn api_keys_are_required_and_checked() {
    let app = TestApp::new().await;
    let key = app.key("portal", "users:read").await;

    let missing = app.get("/v1/whoami", None).await;
    assert_error(&missing, StatusCode::UNAUTHORIZED, "missing_api_key");
    assert_eq!(missing.headers[header::WWW_AUTHENTICATE], "Bearer");
    assert_error(
        &app.get("/v1/whoami", Some("not-a-key")).await,
        StatusCode::UNAUTHORIZED,
        "malformed_api_key",
    );
    let basic = app
        .send(
            Request::get("/v1/whoami")
                .header(header::AUTHORIZATION, "Basic dXNlcjpwdw==")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_error(&basic, StatusCode::UNAUTHORIZED, "malformed_api_key");
    let unknown = format!("csk_{}_{}", "0".repeat(16), "A".repeat(43));
    assert_error(&app.get("/v1/whoami", Some(&unknown)).await, StatusCode::UNAUTHORIZED, "invalid_api_key");

    let me = app.get("/v1/whoami", Some(&key)).await;
    assert_eq!(me.status, StatusCode::OK);
    assert_eq!(me.body["name"], "portal");
    assert_eq!(me.body["scopes"], json!(["users:read"]));

    api_keys::revoke_app(app.store.as_ref(), app.clock.as_ref(), Actor::Cli, "portal").await.unwrap();
    assert_error(&app.get("/v1/whoami", Some(&key)).await, StatusCode::UNAUTHORIZED, "api_key_revoked");
}

#[tokio::test]
async fn scopes_are_enforced() {
    let app = TestApp::new().await;
    let reader = app.key("reader", "users:read").await;
    let reply = app.post_json("/v1/users", &reader, json!({ "username": "alice" })).await;
    assert_error(&reply, StatusCode::FORBIDDEN, "insufficient_scope");
    assert_error(&app.get("/v1/users/alice", Some(&reader)).await, StatusCode::NOT_FOUND, "user_not_found");
}

/// A key without the route's scope learns nothing about the route's input: it is refused before
/// the path or the body is read, so a malformed one answers 403 too.
#[tokio::test]
async fn the_scope_is_checked_before_the_input() {
    let app = TestApp::new().await;
    let reader = app.key("reader", "users:read").await;
    let reply = app.post_raw("/v1/users", &reader, Some("application/json"), "{\"username\": ").await;
    assert_error(&reply, StatusCode::FORBIDDEN, "insufficient_scope");
    let reply = app.get("/v1/challenges/not-a-uuid", Some(&reader)).await;
    assert_error(&reply, StatusCode::FORBIDDEN, "insufficient_scope");
}

#[tokio::test]
async fn users_are_provisioned_once() {
    let app = TestApp::new().await;
    let key = app.key("hr", "users:read users:write").await;
    let created =
        app.post_json("/v1/users", &key, json!({ "username": "Alice", "display_name": "Alice A." })).await;
    assert_eq!(created.status, StatusCode::CREATED, "{:?}", created.body);
    assert_eq!(created.body["username"], "alice");
    assert_eq!(created.body["privileged"], false);
    let again = app.post_json("/v1/users", &key, json!({ "username": "ALICE" })).await;
    assert_error(&again, StatusCode::CONFLICT, "user_exists");
    let fetched = app.get("/v1/users/alice", Some(&key)).await;
    assert_eq!(fetched.body["id"], created.body["id"]);
}

#[tokio::test]
async fn bad_bodies_get_precise_errors_and_write_nothing() {
    let app = TestApp::with_limits(HttpLimits { body_limit_bytes: 2048, ..HttpLimits::default() }).await;
    let key = app.key("hr", "users:read users:write").await;
    let head_before = audit_len(&app).await;

    let reply = app.post_raw("/v1/users", &key, Some("application/json"), "{\"username\": ").await;
    assert_error(&reply, StatusCode::BAD_REQUEST, "invalid_json");
    let reply = app.post_json("/v1/users", &key, json!({ "username": 42 })).await;
    assert_error(&reply, StatusCode::UNPROCESSABLE_ENTITY, "invalid_request");
    let reply = app.post_json("/v1/users", &key, json!({ "display_name": "no username" })).await;
    assert_error(&reply, StatusCode::UNPROCESSABLE_ENTITY, "invalid_request");
    let reply = app.post_json("/v1/users", &key, json!({ "username": "bob", "is_admin": true })).await;
    assert_error(&reply, StatusCode::UNPROCESSABLE_ENTITY, "invalid_request");
    let reply = app.post_json("/v1/users", &key, json!({ "username": "bob smith" })).await;
    assert_error(&reply, StatusCode::UNPROCESSABLE_ENTITY, "invalid_request");
    let reply =
        app.post_json("/v1/users", &key, json!({ "username": "bob", "display_name": "\u{1b}[2J" })).await;
    assert_error(&reply, StatusCode::UNPROCESSABLE_ENTITY, "invalid_request");
    let reply = app.post_raw("/v1/users", &key, Some("text/plain"), "{\"username\":\"bob\"}").await;
    assert_error(&reply, StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type");
    let reply = app.post_raw("/v1/users", &key, None, "{\"username\":\"bob\"}").await;
    assert_error(&reply, StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type");
    let huge = json!({ "username": "bob", "display_name": "x".repeat(4096) }).to_string();
    let reply = app.post_raw("/v1/users", &key, Some("application/json"), huge).await;
    assert_error(&reply, StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large");

    assert_eq!(audit_len(&app).await, head_before, "no bad request wrote anything");
    assert_error(&app.get("/v1/users/bob", Some(&key)).await, StatusCode::NOT_FOUND, "user_not_found");
}

#[tokio::test]
async fn openapi_documents_every_v1_route() {
    let app = TestApp::new().await;
    let doc = app.get("/v1/openapi.json", None).await;
    assert_eq!(doc.status, StatusCode::OK);
    assert!(doc.body["openapi"].as_str().unwrap().starts_with("3."));
    let paths: Vec<&str> = doc.body["paths"].as_object().unwrap().keys().map(String::as_str).collect();
    let expected = [
        "/v1/whoami",
        "/v1/users",
        "/v1/users/{username}",
        "/v1/users/{username}/enrollments",
        "/v1/users/{username}/enrollments/{id}/qr.svg",
        "/v1/users/{username}/devices",
        "/v1/users/{username}/devices/{device_id}",
        "/v1/users/{username}/factors",
        "/v1/users/{username}/passkeys",
        "/v1/users/{username}/passkeys/enrollment-links",
        "/v1/users/{username}/passkeys/registrations",
        "/v1/users/{username}/passkeys/registrations/{id}",
        "/v1/users/{username}/passkeys/{passkey_id}",
        "/v1/users/{username}/passkey-required",
        "/v1/users/{username}/timeline",
        "/v1/users/{username}/unfreeze",
        "/v1/challenges",
        "/v1/challenges/{id}",
        "/v1/challenges/{id}/redeem",
        "/v1/challenges/{id}/cancel",
        "/v1/challenges/{id}/webauthn",
        "/v1/fatigue/users",
        // The OIDC provider's public JWKS, documented alongside.
        "/oidc/jwks",
    ];
    assert_eq!(paths.len(), expected.len(), "every /v1 route is documented, and nothing else: {paths:?}");
    for expected in expected {
        assert!(paths.contains(&expected), "{expected} missing from {paths:?}");
    }
    assert_eq!(doc.body["components"]["securitySchemes"]["api_key"]["scheme"], "bearer");
    assert_eq!(countersign::app::openapi().paths.paths.len(), paths.len());
}

#[tokio::test]
async fn metrics_count_requests_and_pool() {
    let app = TestApp::new().await;
    app.get("/healthz", None).await;
    let reply = app.send(Request::get("/metrics").body(Body::empty()).unwrap()).await;
    assert_eq!(reply.status, StatusCode::OK);
    let text = reply.body.as_str().unwrap().to_owned();
    assert!(
        text.contains("countersign_http_requests_total{method=\"GET\",route=\"/healthz\",status=\"200\"}"),
        "{text}"
    );
    assert!(text.contains("countersign_http_request_duration_seconds_bucket"), "{text}");
    assert!(text.contains("countersign_db_pool_connections{engine=\"sqlite\"}"), "{text}");
}

#[tokio::test]
async fn slow_requests_time_out_and_panics_become_opaque_500s() {
    use axum::routing::get;
    use countersign::middleware;
    use tower_http::catch_panic::CatchPanicLayer;

    async fn slow() -> &'static str {
        tokio::time::sleep(Duration::from_secs(5)).await;
        "late"
    }
    async fn broken() -> &'static str {
        panic!("bug in a handler")
    }
    async fn poll() -> &'static str {
        tokio::time::sleep(Duration::from_millis(200)).await;
        "in time"
    }
    let timeouts = middleware::RouteTimeouts::uniform(Duration::from_millis(50)).with_route(
        axum::http::Method::GET,
        "/poll/{id}",
        Duration::from_secs(2),
    );
    let router: Router = Router::new()
        .route("/slow", get(slow))
        .route("/broken", get(broken))
        .route("/poll/{id}", get(poll))
        .layer(CatchPanicLayer::custom(middleware::panic_response))
        .layer(axum::middleware::from_fn_with_state(std::sync::Arc::new(timeouts), middleware::timeout))
        .layer(axum::middleware::from_fn(middleware::request_context));
    let call = |path: &'static str| {
        let router = router.clone();
        async move {
            let response = router.oneshot(Request::get(path).body(Body::empty()).unwrap()).await.unwrap();
            let status = response.status();
            let bytes = response.into_body().collect().await.unwrap().to_bytes();
            let body: Value = serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
            (status, body)
        }
    };
    let (status, body) = call("/slow").await;
    assert_eq!((status, body["error"].as_str()), (StatusCode::SERVICE_UNAVAILABLE, Some("timeout")));
    let (status, body) = call("/poll/1").await;
    assert_eq!((status, body), (StatusCode::OK, Value::from("in time")), "a slow route gets its own limit");
    let (status, body) = call("/broken").await;
    assert_eq!((status, body["error"].as_str()), (StatusCode::INTERNAL_SERVER_ERROR, Some("internal_error")));
    assert!(!body["message"].as_str().unwrap().contains("bug in a handler"), "panic text must not leak");
}
