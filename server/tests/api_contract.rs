//! The OpenAPI document against the router: the error statuses routes really return are the
//! ones the document declares for them. (`scripts/api-contract` checks the whole document with
//! schemathesis against the real binary; this keeps the in-process suite honest about it too.)
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use common::{Reply, TestApp};
use serde_json::{Value, json};

/// The statuses the served document declares for one operation.
fn documented(doc: &Value, method: &str, template: &str) -> Vec<u16> {
    let responses = doc["paths"][template][method]["responses"]
        .as_object()
        .unwrap_or_else(|| panic!("{method} {template} is not in the document"));
    responses.keys().map(|status| status.parse().unwrap()).collect()
}

fn assert_documented(doc: &Value, (method, template): (&str, &str), reply: &Reply, expected: StatusCode) {
    assert_eq!(reply.status, expected, "{method} {template}: {:?}", reply.body);
    let declared = documented(doc, method, template);
    assert!(
        declared.contains(&expected.as_u16()),
        "{method} {template} answered {expected} but documents only {declared:?}"
    );
    let error_body = &doc["paths"][template][method]["responses"][expected.as_str()]["content"]["application/json"]
        ["schema"]["$ref"];
    assert_eq!(error_body, "#/components/schemas/ErrorBody", "{method} {template} {expected}");
}

/// A client that codes against the published contract must meet no status it does not declare:
/// missing keys and scopes, unparsable paths and bodies, out-of-range parameters and the
/// route's own refusals each answer with a status the document lists, with the error body.
#[tokio::test]
async fn error_statuses_that_routes_return_are_documented() {
    let app = TestApp::new().await;
    let doc = app.get("/v1/openapi.json", None).await.body;
    let key = app.key("contract", "users:read users:write challenges:read challenges:write").await;
    let reader = app.key("reader", "users:read").await;
    assert_eq!(
        app.post_json("/v1/users", &key, json!({"username": "alice"})).await.status,
        StatusCode::CREATED
    );

    let users = ("post", "/v1/users");
    let no_key = app.send(Request::post("/v1/users").body(Body::empty()).unwrap()).await;
    assert_documented(&doc, users, &no_key, StatusCode::UNAUTHORIZED);
    let no_scope = app.post_json("/v1/users", &reader, json!({"username": "bob"})).await;
    assert_documented(&doc, users, &no_scope, StatusCode::FORBIDDEN);
    let not_json = app.post_raw("/v1/users", &key, Some("application/json"), "{").await;
    assert_documented(&doc, users, &not_json, StatusCode::BAD_REQUEST);
    let no_type = app.post_raw("/v1/users", &key, None, r#"{"username":"bob"}"#).await;
    assert_documented(&doc, users, &no_type, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let too_large = app.post_raw("/v1/users", &key, Some("application/json"), "x".repeat(100 * 1024)).await;
    assert_documented(&doc, users, &too_large, StatusCode::PAYLOAD_TOO_LARGE);
    let bad_name = app.post_json("/v1/users", &key, json!({"username": "al..ice"})).await;
    assert_documented(&doc, users, &bad_name, StatusCode::UNPROCESSABLE_ENTITY);
    let taken = app.post_json("/v1/users", &key, json!({"username": "Alice"})).await;
    assert_documented(&doc, users, &taken, StatusCode::CONFLICT);

    let user = ("get", "/v1/users/{username}");
    assert_documented(&doc, user, &app.get("/v1/users/alice", None).await, StatusCode::UNAUTHORIZED);
    assert_documented(&doc, user, &app.get("/v1/users/nobody", Some(&key)).await, StatusCode::NOT_FOUND);

    let challenge = ("get", "/v1/challenges/{id}");
    let id = uuid::Uuid::new_v4();
    assert_documented(
        &doc,
        challenge,
        &app.get("/v1/challenges/x", Some(&key)).await,
        StatusCode::BAD_REQUEST,
    );
    let long_wait = app.get(&format!("/v1/challenges/{id}?wait=31"), Some(&key)).await;
    assert_documented(&doc, challenge, &long_wait, StatusCode::BAD_REQUEST);
    let unknown = app.get(&format!("/v1/challenges/{id}"), Some(&key)).await;
    assert_documented(&doc, challenge, &unknown, StatusCode::NOT_FOUND);
    let cancel = app.post_raw(&format!("/v1/challenges/{id}/cancel"), &key, None, "").await;
    assert_documented(&doc, ("post", "/v1/challenges/{id}/cancel"), &cancel, StatusCode::NOT_FOUND);

    let create = ("post", "/v1/challenges");
    let no_device = app.post_json("/v1/challenges", &key, json!({"username": "alice"})).await;
    assert_documented(&doc, create, &no_device, StatusCode::CONFLICT);
    let bad_ip =
        app.post_json("/v1/challenges", &key, json!({"username": "alice", "context": {"ip": "x"}})).await;
    assert_documented(&doc, create, &bad_ip, StatusCode::UNPROCESSABLE_ENTITY);

    let enroll = ("post", "/v1/users/{username}/enrollments");
    let unknown_user = app.post_json("/v1/users/nobody/enrollments", &key, json!({})).await;
    assert_documented(&doc, enroll, &unknown_user, StatusCode::NOT_FOUND);
    let no_proof = app.post_json("/v1/users/alice/enrollments", &key, json!({"second_device": true})).await;
    assert_documented(&doc, enroll, &no_proof, StatusCode::FORBIDDEN);

    let revoke = ("delete", "/v1/users/{username}/devices/{device_id}");
    assert_documented(
        &doc,
        revoke,
        &app.delete("/v1/users/alice/devices/1", &key).await,
        StatusCode::BAD_REQUEST,
    );
    let qr = app.get(&format!("/v1/users/alice/enrollments/{id}/qr.svg"), Some(&reader)).await;
    assert_documented(
        &doc,
        ("get", "/v1/users/{username}/enrollments/{id}/qr.svg"),
        &qr,
        StatusCode::FORBIDDEN,
    );
    let whoami = Request::get("/v1/whoami").header(header::AUTHORIZATION, "Bearer nope").body(Body::empty());
    assert_documented(
        &doc,
        ("get", "/v1/whoami"),
        &app.send(whoami.unwrap()).await,
        StatusCode::UNAUTHORIZED,
    );
}

/// The constraints the server enforces are in the document, so generated clients and fuzzers
/// send what the server accepts: the username grammar, IP addresses, the long-poll's range.
#[tokio::test]
async fn documented_constraints_are_the_enforced_ones() {
    let app = TestApp::new().await;
    let doc = app.get("/v1/openapi.json", None).await.body;
    let username = &doc["components"]["schemas"]["Username"];
    assert_eq!((username["minLength"].as_u64(), username["maxLength"].as_u64()), (Some(1), Some(128)));
    assert_eq!(username["pattern"], r"^[A-Za-z0-9_@+-]+(\.[A-Za-z0-9_@+-]+)*$");
    let wait = doc["paths"]["/v1/challenges/{id}"]["get"]["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "wait")
        .unwrap();
    assert_eq!((wait["in"].as_str(), wait["required"].as_bool()), (Some("query"), Some(false)));
    assert_eq!((wait["schema"]["minimum"].as_u64(), wait["schema"]["maximum"].as_u64()), (Some(0), Some(30)));
    let ip = doc["components"]["schemas"]["ChallengeContext"]["properties"]["ip"]["anyOf"].to_string();
    assert!(ip.contains("\"ipv4\"") && ip.contains("\"ipv6\""), "{ip}");
}

/// The phone side has its own document, `/device/v1/openapi.json`: every device route is in
/// it, and the refusals a phone meets are statuses it declares, with the error body.
#[tokio::test]
async fn the_device_api_is_documented_with_its_refusals() {
    let app = TestApp::new().await;
    let doc = app.get("/device/v1/openapi.json", None).await.body;
    let mut paths: Vec<&str> = doc["paths"].as_object().unwrap().keys().map(String::as_str).collect();
    paths.sort_unstable();
    let expected = [
        "/device/v1",
        "/device/v1/challenges",
        "/device/v1/challenges/{id}",
        "/device/v1/challenges/{id}/response",
        "/device/v1/enroll",
        "/device/v1/notices",
        "/device/v1/push-token",
    ];
    assert_eq!(paths, expected);
    assert_eq!(countersign::app::device_openapi().paths.paths.len(), expected.len());
    let headers = doc["paths"]["/device/v1/challenges"]["get"]["parameters"].to_string();
    for header in
        ["Countersign-Device-Id", "Countersign-Timestamp", "Countersign-Nonce", "Countersign-Signature"]
    {
        assert!(headers.contains(header), "{header} is documented: {headers}");
    }

    let response = &doc["components"]["schemas"]["ChallengeResponse"]["oneOf"];
    assert_eq!(response.as_array().map(Vec::len), Some(2), "approve with digits, or deny/report with none");
    let enrollment = &doc["components"]["schemas"]["EnrollmentRequest"]["properties"];
    assert_eq!(enrollment["push"]["oneOf"].as_array().map(Vec::len), Some(3), "apns, fcm, none");

    let unsigned = app.get("/device/v1/challenges", None).await;
    assert_documented(&doc, ("get", "/device/v1/challenges"), &unsigned, StatusCode::BAD_REQUEST);
    let unsigned_body = app.device_post("/device/v1/enroll", b"{}").await;
    assert_documented(&doc, ("post", "/device/v1/enroll"), &unsigned_body, StatusCode::BAD_REQUEST);
    let huge = vec![b' '; 17 * 1024];
    let too_large =
        app.device_post(&format!("/device/v1/challenges/{}/response", uuid::Uuid::new_v4()), &huge).await;
    assert_documented(
        &doc,
        ("post", "/device/v1/challenges/{id}/response"),
        &too_large,
        StatusCode::PAYLOAD_TOO_LARGE,
    );
}
