//! Admin sessions on both engines: the cookie, its CSRF token, the guard against cross-site
//! state changes, timeouts and sign-out; each attack a named test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[macro_use]
mod common;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use common::admin::ADMIN_ORIGIN;
use common::{TestApp, assert_error, audit_actions};
use countersign::admin::model::Role;
use countersign::admin::sessions::SESSION_COOKIE;
use countersign::app::HttpLimits;
use countersign_e2e::Engine;
use serde_json::json;

async fn app(engine: Engine) -> TestApp {
    TestApp::build(engine, HttpLimits::default()).await
}

/// Every POST-only route of the admin API, from its OpenAPI document (so a new route is covered
/// the day it is added); a path that is also a documented read (`GET /admin/api/passkeys`) answers
/// its GET.
fn mutating_routes() -> Vec<String> {
    let doc = serde_json::to_value(countersign::admin::http::openapi()).unwrap();
    let paths = doc["paths"].as_object().unwrap();
    let posts: Vec<String> = paths
        .iter()
        .filter(|(_, ops)| ops.get("post").is_some() && ops.get("get").is_none())
        .map(|(p, _)| p.clone())
        .collect();
    assert!(!posts.is_empty());
    posts
}

/// A path template with its parameters filled in with something that parses.
fn concrete(path: &str) -> String {
    path.split('/')
        .map(|part| if part.starts_with('{') { "00000000-0000-4000-8000-000000000000" } else { part })
        .collect::<Vec<_>>()
        .join("/")
}

/// A signed-in admin reads who they are and their CSRF token.
async fn session_names_the_admin_and_its_csrf_token(engine: Engine) {
    let app = app(engine).await;
    let alice = app.signed_in_admin("alice", Role::Admin).await;
    let reply = app.admin_get(&alice, "/admin/api/session").await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(reply.body["name"], "alice");
    assert_eq!(reply.body["role"], "admin");
    assert_eq!(reply.body["admin_id"], alice.id.to_string());
    assert_eq!(reply.body["csrf_token"], alice.csrf);
    assert_eq!(reply.headers[header::CACHE_CONTROL], "no-store", "admin answers are never cached");
}

/// Attack: a page on another site makes the admin's browser POST with the cookie but cannot
/// know the CSRF token.
async fn admin_post_without_csrf_token_is_403(engine: Engine) {
    let app = app(engine).await;
    let alice = app.signed_in_admin("alice", Role::Admin).await;
    let mut request = app.admin_request(Method::POST, "/admin/api/session/sign-out", &alice, None);
    request.headers_mut().remove("x-csrf-token");
    let reply = app.send(request).await;
    assert_error(&reply, StatusCode::FORBIDDEN, "csrf_failed");
    let reply = app.admin_get(&alice, "/admin/api/session").await;
    assert_eq!(reply.status, StatusCode::OK, "the refused sign-out changed nothing");
}

/// Attack: a CSRF token leaked from one session (a screenshot, a log) used with another.
async fn csrf_token_of_another_session_is_403(engine: Engine) {
    let app = app(engine).await;
    let alice = app.signed_in_admin("alice", Role::Admin).await;
    let mallory = app.signed_in_admin("mallory", Role::Admin).await;
    let mut crossed = alice.clone();
    crossed.csrf = mallory.csrf.clone();
    let reply = app.admin_post(&crossed, "/admin/api/session/sign-out", json!({})).await;
    assert_error(&reply, StatusCode::FORBIDDEN, "csrf_failed");
    crossed.csrf = format!("{}A", alice.csrf);
    let reply = app.admin_post(&crossed, "/admin/api/session/sign-out", json!({})).await;
    assert_error(&reply, StatusCode::FORBIDDEN, "csrf_failed");
}

/// Attack: the right token (stolen through some other hole) sent from another site: `Origin`
/// and `Sec-Fetch-Site` say where the request comes from, and browsers do not let pages forge
/// them.
async fn admin_csrf_token_with_foreign_origin_is_403(engine: Engine) {
    let app = app(engine).await;
    let alice = app.signed_in_admin("alice", Role::Admin).await;
    let variants: [(&str, Option<&str>, Option<&str>); 5] = [
        ("foreign origin", Some("https://evil.example"), Some("same-origin")),
        ("origin null (sandboxed frame, data: URL)", Some("null"), Some("same-origin")),
        ("no origin at all", None, Some("same-origin")),
        ("cross-site fetch", Some(ADMIN_ORIGIN), Some("cross-site")),
        ("same-site sibling", Some(ADMIN_ORIGIN), Some("same-site")),
    ];
    for (what, origin, fetch_site) in variants {
        let mut request = app.admin_request(Method::POST, "/admin/api/session/sign-out", &alice, None);
        let headers = request.headers_mut();
        headers.remove(header::ORIGIN);
        headers.remove("sec-fetch-site");
        if let Some(origin) = origin {
            headers.insert(header::ORIGIN, origin.parse().unwrap());
        }
        if let Some(site) = fetch_site {
            headers.insert("sec-fetch-site", site.parse().unwrap());
        }
        let reply = app.send(request).await;
        assert_error(&reply, StatusCode::FORBIDDEN, "cross_origin");
        assert_eq!(app.admin_get(&alice, "/admin/api/session").await.status, StatusCode::OK, "{what}");
    }
    // The public URL's own origin is ours too.
    let mut request = app.admin_request(Method::POST, "/admin/api/session/sign-out", &alice, None);
    request.headers_mut().insert(header::ORIGIN, common::PUBLIC_URL.parse().unwrap());
    assert_eq!(app.send(request).await.status, StatusCode::NO_CONTENT);
}

/// Attack: another site navigates the admin's browser to the admin API to read it.
async fn cross_site_read_of_the_admin_api_is_403(engine: Engine) {
    let app = app(engine).await;
    let alice = app.signed_in_admin("alice", Role::Admin).await;
    let mut request = app.admin_request(Method::GET, "/admin/api/session", &alice, None);
    request.headers_mut().insert("sec-fetch-site", "cross-site".parse().unwrap());
    let reply = app.send(request).await;
    assert_error(&reply, StatusCode::FORBIDDEN, "cross_origin");
    assert!(!reply.body.to_string().contains(&alice.csrf), "the CSRF token did not leak");
}

/// No state changes on GET: every mutating route answers a GET with 405.
async fn get_on_every_mutating_admin_route_is_405(engine: Engine) {
    let app = app(engine).await;
    let alice = app.signed_in_admin("alice", Role::Admin).await;
    for path in mutating_routes() {
        let reply = app.admin_get(&alice, &concrete(&path)).await;
        assert_error(&reply, StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed");
    }
    assert_eq!(app.admin_get(&alice, "/admin/api/session").await.status, StatusCode::OK, "still signed in");
}

/// No cookie, a made-up cookie: 401 and nothing else said.
async fn no_or_unknown_session_is_401(engine: Engine) {
    let app = app(engine).await;
    let reply = app.send(Request::get("/admin/api/session").body(Body::empty()).unwrap()).await;
    assert_error(&reply, StatusCode::UNAUTHORIZED, "admin_session_required");
    let forged = Request::get("/admin/api/session")
        .header(header::COOKIE, format!("{SESSION_COOKIE}=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"))
        .body(Body::empty())
        .unwrap();
    assert_error(&app.send(forged).await, StatusCode::UNAUTHORIZED, "admin_session_required");
}

/// A session left alone for 15 minutes ends; one in use lives on, but never past 12 hours.
async fn expired_session_is_401(engine: Engine) {
    let app = app(engine).await;
    let idle = app.signed_in_admin("idle", Role::Auditor).await;
    let busy = app.signed_in_admin("busy", Role::Auditor).await;
    for _ in 0..4 {
        app.advance(time::Duration::minutes(5)).await;
        assert_eq!(app.admin_get(&busy, "/admin/api/session").await.status, StatusCode::OK);
    }
    let reply = app.admin_get(&idle, "/admin/api/session").await;
    assert_error(&reply, StatusCode::UNAUTHORIZED, "admin_session_expired");
    // Busy all day: every 10 minutes keeps it alive until the absolute limit.
    let mut minutes = 20;
    while minutes + 10 < 12 * 60 {
        app.advance(time::Duration::minutes(10)).await;
        minutes += 10;
        assert_eq!(
            app.admin_get(&busy, "/admin/api/session").await.status,
            StatusCode::OK,
            "at {minutes} min"
        );
    }
    app.advance(time::Duration::minutes(12 * 60 - minutes)).await;
    let reply = app.admin_get(&busy, "/admin/api/session").await;
    assert_error(&reply, StatusCode::UNAUTHORIZED, "admin_session_expired");
}

/// Signing out ends the session in the database (a copied cookie is dead too), clears the
/// cookie with the same attributes, and is audited.
async fn revoked_session_is_401(engine: Engine) {
    let app = app(engine).await;
    let alice = app.signed_in_admin("alice", Role::Helpdesk).await;
    let reply = app.admin_post(&alice, "/admin/api/session/sign-out", json!({})).await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT);
    let cleared = reply.headers[header::SET_COOKIE].to_str().unwrap();
    assert!(cleared.starts_with(&format!("{SESSION_COOKIE}=;")), "{cleared}");
    for attribute in ["Path=/", "Secure", "HttpOnly", "SameSite=Strict", "Max-Age=0"] {
        assert!(cleared.split("; ").any(|a| a == attribute), "{attribute} in {cleared}");
    }
    let reply = app.admin_get(&alice, "/admin/api/session").await;
    assert_error(&reply, StatusCode::UNAUTHORIZED, "admin_session_expired");
    let reply = app.admin_post(&alice, "/admin/api/session/sign-out", json!({})).await;
    assert_error(&reply, StatusCode::UNAUTHORIZED, "admin_session_expired");
    let actions: Vec<String> = audit_actions(&app).await.into_iter().map(|(a, _)| a).collect();
    let tail: Vec<&str> = actions.iter().rev().take(2).map(String::as_str).collect();
    assert_eq!(tail, ["admin.signed_out", "admin.signed_in"]);
}

/// Attack: a copy of the database (a backup, a replica) yields no usable session: only the
/// SHA-256 of each cookie is stored.
async fn a_session_cookie_is_stored_only_hashed(engine: Engine) {
    let app = app(engine).await;
    let alice = app.signed_in_admin("alice", Role::Admin).await;
    let sql = match engine {
        Engine::Sqlite => "SELECT lower(hex(id_hash)) || ' ' || user_agent FROM admin_sessions",
        Engine::Postgres => "SELECT encode(id_hash, 'hex') || ' ' || user_agent FROM admin_sessions",
    };
    let rows = countersign_e2e::query_strings(&app.db, sql).await;
    let hash = countersign::admin::sessions::secret_hash(&alice.cookie);
    let hex: String = hash.iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(rows, [format!("{hex} test")], "only the cookie's SHA-256 is stored");
    assert!(!rows[0].contains(&alice.cookie));
    assert!(app.store.admin_session(&hash).await.unwrap().is_some(), "its hash names the session");
}

/// The admin API has its own OpenAPI document, with the cookie and CSRF schemes; the `/v1`
/// document does not list admin routes.
async fn the_admin_api_has_its_own_document(engine: Engine) {
    let app = app(engine).await;
    let reply = app.get("/admin/api/openapi.json", None).await;
    assert_eq!(reply.status, StatusCode::OK);
    let schemes = &reply.body["components"]["securitySchemes"];
    assert_eq!(schemes["admin_session"]["in"], "cookie");
    assert_eq!(schemes["admin_session"]["name"], SESSION_COOKIE);
    assert_eq!(schemes["csrf"]["name"], "X-CSRF-Token");
    let v1 = app.get("/v1/openapi.json", None).await;
    assert!(v1.body["paths"].as_object().unwrap().keys().all(|p| !p.starts_with("/admin")));
}

/// Attack: a page on a sibling subdomain (same site, so the Strict cookie goes along) pings the
/// admin API every few minutes to keep an unattended session from idling out; refused requests
/// (no CSRF token) must not keep it alive either.
async fn same_site_sibling_page_cannot_keep_an_admin_session_alive(engine: Engine) {
    let app = app(engine).await;
    let alice = app.signed_in_admin("alice", Role::Admin).await;
    for _ in 0..2 {
        app.advance(time::Duration::minutes(5)).await;
        let mut request = app.admin_request(Method::GET, "/admin/api/session", &alice, None);
        request.headers_mut().insert("sec-fetch-site", "same-site".parse().unwrap());
        assert_error(&app.send(request).await, StatusCode::FORBIDDEN, "cross_origin");
        let mut request = app.admin_request(Method::POST, "/admin/api/session/sign-out", &alice, None);
        request.headers_mut().remove("x-csrf-token");
        assert_error(&app.send(request).await, StatusCode::FORBIDDEN, "csrf_failed");
    }
    app.advance(time::Duration::minutes(6)).await;
    let reply = app.admin_get(&alice, "/admin/api/session").await;
    assert_error(&reply, StatusCode::UNAUTHORIZED, "admin_session_expired");
}

/// Attack: an admin's session cookie is stolen (or their laptop lost). Another admin ends every
/// session of theirs at once, with a step-up for exactly that (the thief's own stolen session
/// cannot do it to the others); help desk cannot; the victim signs in again with a passkey.
async fn an_admin_ends_a_stolen_session_of_another_admin(engine: Engine) {
    let app = app(engine).await;
    let alice = app.signed_in_admin("alice", Role::Admin).await;
    let bob = app.signed_in_admin("bob", Role::Admin).await;
    let stolen = app.sign_in_admin(&app.store.admin(bob.id).await.unwrap().unwrap()).await;
    let path = format!("/admin/api/admins/{}/sessions/end", bob.id);

    assert_error(&app.admin_post(&alice, &path, json!({})).await, StatusCode::FORBIDDEN, "step_up_required");
    app.step_up_for(&alice, &format!("end_sessions:{}", alice.id)).await;
    assert_error(&app.admin_post(&alice, &path, json!({})).await, StatusCode::FORBIDDEN, "step_up_required");
    let desk = app.signed_in_admin("desk", Role::Helpdesk).await;
    app.step_up_for(&desk, &format!("end_sessions:{}", bob.id)).await;
    assert_error(
        &app.admin_post(&desk, &path, json!({})).await,
        StatusCode::FORBIDDEN,
        "admin_role_required",
    );
    assert_eq!(app.admin_get(&stolen, "/admin/api/session").await.status, StatusCode::OK);

    app.step_up_for(&alice, &format!("end_sessions:{}", bob.id)).await;
    let ended = app.admin_post(&alice, &path, json!({})).await;
    assert_eq!((ended.status, &ended.body["ended"]), (StatusCode::OK, &json!(2)), "{}", ended.body);
    for session in [&bob, &stolen] {
        assert_error(
            &app.admin_get(session, "/admin/api/session").await,
            StatusCode::UNAUTHORIZED,
            "admin_session_expired",
        );
    }
    assert_eq!(app.admin_get(&alice, "/admin/api/session").await.status, StatusCode::OK, "only bob's");
    let again = app.sign_in_admin(&app.store.admin(bob.id).await.unwrap().unwrap()).await;
    assert_eq!(app.admin_get(&again, "/admin/api/session").await.status, StatusCode::OK);
    let ended: Vec<_> =
        audit_actions(&app).await.into_iter().filter(|(a, _)| a == "admin.sessions_ended").collect();
    assert_eq!(ended.len(), 1, "{ended:?}");
    assert_eq!(ended[0].1["ended_by"], json!(alice.id));

    let nobody = format!("/admin/api/admins/{}/sessions/end", uuid::Uuid::new_v4());
    app.step_up_for(&alice, &format!("end_sessions:{}", nobody.split('/').nth(4).unwrap())).await;
    assert_error(&app.admin_post(&alice, &nobody, json!({})).await, StatusCode::NOT_FOUND, "admin_not_found");
}

on_both_engines!(
    an_admin_ends_a_stolen_session_of_another_admin,
    same_site_sibling_page_cannot_keep_an_admin_session_alive,
    session_names_the_admin_and_its_csrf_token,
    admin_post_without_csrf_token_is_403,
    csrf_token_of_another_session_is_403,
    admin_csrf_token_with_foreign_origin_is_403,
    cross_site_read_of_the_admin_api_is_403,
    get_on_every_mutating_admin_route_is_405,
    no_or_unknown_session_is_401,
    expired_session_is_401,
    revoked_session_is_401,
    a_session_cookie_is_stored_only_hashed,
    the_admin_api_has_its_own_document,
);
