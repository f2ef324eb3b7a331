//! The admin dashboard on both engines: the overview, users, a user's timeline, the audit
//! viewer, the live alert stream (server-sent events) and the pages; each attack a named test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[macro_use]
mod common;
#[path = "common/soft_key.rs"]
mod soft_key;

use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode, header};
use common::admin::AdminClient;
use common::{TestApp, assert_error, enrolled_device, signed_get};
use countersign::admin::model::Role;
use countersign::alerts::AlertKind;
use countersign::app::HttpLimits;
use countersign::audit::Subject;
use countersign::ids::UserId;
use countersign_e2e::Engine;
use countersign_e2e::device::TestDevice;
use countersign_mobile_protocol::{Decision, PendingChallenges, PushRegistration};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;

const SCOPES: &str = "users:read users:write challenges:write challenges:read fatigue:read fatigue:write";
const XSS: [&str; 2] = ["<script>alert(1)</script>", "\"><img src=x onerror=alert(1)>"];

async fn app(engine: Engine) -> TestApp {
    TestApp::build(engine, HttpLimits::default()).await
}

/// A prompt for `username` as the IdP `key` sends it.
async fn prompt(app: &TestApp, key: &str, username: &str) -> common::Reply {
    let context = json!({ "ip": "198.51.100.66", "user_agent": "Firefox 140", "location": "Lyon, FR" });
    app.post_json("/v1/challenges", key, json!({ "username": username, "context": context })).await
}

/// Push bombing: prompts for `username` until the budget refuses some.
async fn bomb(app: &TestApp, key: &str, username: &str) {
    let mut refused = 0;
    for _ in 0..12 {
        let reply = prompt(app, key, username).await;
        if reply.status == StatusCode::TOO_MANY_REQUESTS {
            refused += 1;
        }
        app.advance(time::Duration::seconds(3)).await;
    }
    assert!(refused > 0, "the budget refused some prompts");
}

/// The page at `path` as the admin's browser gets it: status, headers, HTML.
async fn page(app: &TestApp, admin: &AdminClient, path: &str) -> (StatusCode, HeaderMap, String) {
    app.admin_page(admin, path).await
}

/// One server-sent event.
#[derive(Debug)]
struct SseEvent {
    event: String,
    id: String,
    data: Value,
}

/// An open event stream, read as it arrives.
struct Stream {
    body: Body,
    buffer: String,
}

impl Stream {
    async fn open(
        app: &TestApp,
        admin: &AdminClient,
        last_event_id: Option<&str>,
    ) -> (StatusCode, HeaderMap, Self) {
        let mut request = app.admin_request(Method::GET, "/admin/api/events", admin, None);
        if let Some(id) = last_event_id {
            request.headers_mut().insert("last-event-id", id.parse().unwrap());
        }
        let response = app.router.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        (status, headers, Stream { body: response.into_body(), buffer: String::new() })
    }

    /// The next event within `within` (keep-alive comments skipped); `None` when the stream
    /// ended. Panics when nothing came in time.
    async fn next(&mut self, within: Duration) -> Option<SseEvent> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            while let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                if let Some(event) = parse_event(&block) {
                    return Some(event);
                }
            }
            let frame = tokio::time::timeout_at(deadline, self.body.frame()).await.expect("no event in time");
            match frame {
                None => return None,
                Some(frame) => {
                    if let Ok(data) = frame.unwrap().into_data() {
                        self.buffer.push_str(std::str::from_utf8(&data).unwrap());
                    }
                }
            }
        }
    }
}

fn parse_event(block: &str) -> Option<SseEvent> {
    let (mut event, mut id, mut data) = (String::new(), String::new(), String::new());
    for line in block.lines() {
        if let Some(v) = line.strip_prefix("event:") {
            event = v.trim().to_owned();
        } else if let Some(v) = line.strip_prefix("id:") {
            id = v.trim().to_owned();
        } else if let Some(v) = line.strip_prefix("data:") {
            data.push_str(v.trim_start());
        }
    }
    (!event.is_empty()).then(|| SseEvent { event, id, data: serde_json::from_str(&data).unwrap() })
}

async fn raise(app: &TestApp, details: &str) {
    let subject = Subject::User(UserId::random());
    app.store.raise_alert(AlertKind::PushSpray, &subject, details, app.clock_now()).await.unwrap();
}

/// A campaign against alice is listed on the overview (API and page) with where it comes
/// from, counted in the charts, and raised as an alert naming her.
async fn overview_lists_a_user_under_attack(engine: Engine) {
    let app = app(engine).await;
    let key = app.key("idp", SCOPES).await;
    enrolled_device(&app, &key, "alice", PushRegistration::None).await;
    enrolled_device(&app, &key, "bob", PushRegistration::None).await;
    bomb(&app, &key, "alice").await;
    let admin = app.signed_in_admin("watcher", Role::Auditor).await;

    let reply = app.admin_get(&admin, "/admin/api/overview").await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    let listed = reply.body["under_attack"].as_array().unwrap();
    assert_eq!(listed.len(), 1, "bob is not under attack: {listed:?}");
    assert_eq!(listed[0]["username"], "alice");
    assert!(listed[0]["score"].as_i64().unwrap() > 0);
    assert_eq!(listed[0]["standing"]["under_attack"], true);
    assert_eq!(listed[0]["last_source"]["ip"], "198.51.100.66");
    assert_eq!(listed[0]["last_source"]["location"], "Lyon, FR");
    let refusals = reply.body["charts"]["refusals_by_reason"].as_array().unwrap();
    assert!(refusals.iter().any(|r| r["reason"] == "budget_exhausted" && r["refusals"].as_i64() > Some(0)));
    let per_minute = reply.body["charts"]["prompts_per_minute"].as_array().unwrap();
    assert_eq!(
        per_minute.iter().map(|m| m["prompts"].as_i64().unwrap()).sum::<i64>(),
        5,
        "alice's 5 prompts"
    );
    let alerts = reply.body["alerts"].as_array().unwrap();
    assert!(alerts.iter().any(|a| a["kind"] == "push_bombing" && a["username"] == "alice"), "{alerts:?}");
    assert_eq!(reply.body["newest_alert_id"], alerts[0]["id"]);

    let (status, headers, html) = page(&app, &admin, "/admin").await;
    assert_eq!(status, StatusCode::OK);
    assert!(headers[header::CONTENT_SECURITY_POLICY].to_str().unwrap().contains("script-src 'self'"));
    assert!(html.contains(r#"<tr data-username="alice">"#), "{html}");
    assert!(!html.contains(r#"data-username="bob""#));
    assert!(html.contains(r#"id="alerts""#) && html.contains(r#"data-state="connecting""#));
    assert!(html.contains("<polyline class=\"line-prompts\""), "the chart is server-side SVG");
    assert!(html.contains(&format!(r#"<meta name="csrf-token" content="{}">"#, admin.csrf)));
    assert!(!html.contains("style="), "no inline style (the CSP would refuse it)");
}

/// Attack: script in every field an app, a user or a phone controls, rendered into the admin
/// pages (stored XSS against the most privileged people). Everything comes out escaped, and
/// the pages carry the CSP that would stop an inline script anyway.
async fn xss_everywhere_is_rendered_escaped(engine: Engine) {
    let app = app(engine).await;
    let key = app.key("idp", SCOPES).await;
    for (n, payload) in XSS.iter().enumerate() {
        let username = format!("victim{n}");
        let created =
            app.post_json("/v1/users", &key, json!({ "username": username, "display_name": payload })).await;
        assert_eq!(created.status, StatusCode::CREATED, "{:?}", created.body);
        let mut phone = enrolled_device(&app, &key, &username, PushRegistration::None).await;
        let context =
            json!({ "ip": "203.0.113.7", "user_agent": payload, "location": payload, "app_name": payload });
        let reply =
            app.post_json("/v1/challenges", &key, json!({ "username": username, "context": context })).await;
        assert_eq!(reply.status, StatusCode::CREATED, "{:?}", reply.body);
        answer(&app, &mut phone, &reply.body, Decision::Deny).await;
        raise_named(&app, &username, payload).await;
        // A passkey named by the attacker, on a user without a phone.
        let owner = format!("keyholder{n}");
        app.post_json("/v1/users", &key, json!({ "username": owner })).await;
        let begun = app
            .post_json(&format!("/v1/users/{owner}/passkeys/registrations"), &key, json!({ "name": payload }))
            .await;
        assert_eq!(begun.status, StatusCode::CREATED, "{:?}", begun.body);
        let credential = soft_key::SoftKey::new().create(&begun.body["public_key"]).await;
        let id = begun.body["id"].as_str().unwrap();
        let done =
            app.post_json(&format!("/v1/users/{owner}/passkeys/registrations/{id}"), &key, credential).await;
        assert_eq!(done.status, StatusCode::CREATED, "{:?}", done.body);
    }
    let named = format!("UPDATE devices SET name = '{}'", XSS[1]);
    countersign_e2e::exec_sql(&app.db, &named).await.unwrap();
    bomb(&app, &key, "victim0").await;

    let admin = app.signed_in_admin("reader", Role::Auditor).await;
    let paths = [
        "/admin",
        "/admin/users",
        "/admin/users?q=victim",
        "/admin/users/victim0",
        "/admin/users/victim1",
        "/admin/users/keyholder0",
        "/admin/users/keyholder1",
        "/admin/audit",
        "/admin/audit?action=challenge.created",
    ];
    for path in paths {
        let (status, headers, html) = page(&app, &admin, path).await;
        assert_eq!(status, StatusCode::OK, "{path}: {html}");
        assert!(headers.contains_key(header::CONTENT_SECURITY_POLICY), "{path}");
        assert!(!html.contains("<script>alert"), "{path} renders a raw script tag");
        assert!(!html.contains("<img src=x"), "{path} renders a raw img tag");
    }
    // The payloads are there, escaped: the test looked at pages that show them.
    let escaped = |raw: &str| raw.replace('<', "&#60;").replace('>', "&#62;").replace('"', "&#34;");
    let (_, _, user_page) = page(&app, &admin, "/admin/users/victim0").await;
    assert!(user_page.contains(&escaped(XSS[0])), "{user_page}");
    let (_, _, passkeys) = page(&app, &admin, "/admin/users/keyholder1").await;
    assert!(passkeys.contains(&escaped(XSS[1])), "{passkeys}");
    let (_, _, overview) = page(&app, &admin, "/admin").await;
    assert!(overview.contains(&escaped(XSS[0])) && overview.contains(&escaped(XSS[1])), "{overview}");
}

async fn raise_named(app: &TestApp, username: &str, payload: &str) {
    let user = app.store.user_by_username(username).await.unwrap().unwrap();
    let details = json!({ "note": payload }).to_string();
    app.store
        .raise_alert(AlertKind::PushSpray, &Subject::User(user.id), &details, app.clock_now())
        .await
        .unwrap();
}

/// Answers a created challenge on `phone`.
async fn answer(app: &TestApp, phone: &mut TestDevice, created: &Value, decision: Decision) -> String {
    answer_with(app, phone, created, decision, created["number"].as_str().unwrap()).await
}

async fn answer_with(
    app: &TestApp,
    phone: &mut TestDevice,
    created: &Value,
    decision: Decision,
    typed: &str,
) -> String {
    let pending: PendingChallenges =
        serde_json::from_value(signed_get(app, phone, "/device/v1/challenges").await.body).unwrap();
    let id = created["id"].as_str().unwrap();
    let signed = pending.challenges.iter().find(|c| c.details.challenge_id.as_str() == id).unwrap();
    let details = phone.verify_details(signed).clone();
    let response = phone.answer(&details, decision, if decision == Decision::Approve { typed } else { "" });
    let path = format!("/device/v1/challenges/{id}/response");
    app.device_post(&path, &serde_json::to_vec(&response).unwrap()).await.body["outcome"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// Attack: reading the live feed (who is being attacked, right now) without a session, or
/// from another site with the admin's cookie.
async fn sse_requires_session(engine: Engine) {
    let app = app(engine).await;
    let anonymous = app.send(Request::get("/admin/api/events").body(Body::empty()).unwrap()).await;
    assert_error(&anonymous, StatusCode::UNAUTHORIZED, "admin_session_required");
    let admin = app.signed_in_admin("alice", Role::Auditor).await;
    let mut cross_site = app.admin_request(Method::GET, "/admin/api/events", &admin, None);
    cross_site.headers_mut().insert("sec-fetch-site", "cross-site".parse().unwrap());
    assert_error(&app.send(cross_site).await, StatusCode::FORBIDDEN, "cross_origin");
    let (status, headers, _) = Stream::open(&app, &admin, None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(headers[header::CONTENT_TYPE].to_str().unwrap().starts_with("text/event-stream"));
    assert_eq!(headers[header::CACHE_CONTROL], "no-store");
}

/// A campaign seen by instance B reaches an admin watching instance A within seconds; a
/// reconnect with `Last-Event-ID` resumes after what was delivered.
async fn alert_on_instance_b_reaches_sse_on_instance_a(engine: Engine) {
    let a = app(engine).await;
    let b = a.another_instance(time::Duration::ZERO).await;
    let key = a.key("idp", SCOPES).await;
    enrolled_device(&a, &key, "alice", PushRegistration::None).await;
    let admin = a.signed_in_admin("watcher", Role::Helpdesk).await;
    let (status, _, mut stream) = Stream::open(&a, &admin, None).await;
    assert_eq!(status, StatusCode::OK);
    for _ in 0..12 {
        prompt(&b, &key, "alice").await;
    }
    let event = stream.next(Duration::from_secs(10)).await.expect("the stream is open");
    assert_eq!(event.event, "alert");
    assert_eq!(event.data["kind"], "push_bombing");
    assert_eq!(event.data["username"], "alice");
    assert_eq!(event.id, event.data["id"].to_string());
    for field in ["id", "kind", "subject", "username", "details", "created_at"] {
        assert!(event.data.get(field).is_some(), "{field}");
    }
    raise(&b, "{\"n\":1}").await;
    let second = stream.next(Duration::from_secs(10)).await.unwrap();
    assert_eq!(second.data["details"]["n"], 1);
    drop(stream);

    raise(&b, "{\"n\":2}").await;
    let (_, _, mut resumed) = Stream::open(&a, &admin, Some(&second.id)).await;
    let missed = resumed.next(Duration::from_secs(10)).await.unwrap();
    assert_eq!(missed.data["details"]["n"], 2, "what was raised while away comes first, once");
}

/// Attack: a signed-out (or revoked) admin's open tab keeps receiving the feed. The stream
/// ends with the session, before delivering anything more.
async fn revoked_session_closes_the_stream(engine: Engine) {
    let app = app(engine).await;
    let admin = app.signed_in_admin("alice", Role::Admin).await;
    let (_, _, mut stream) = Stream::open(&app, &admin, None).await;
    raise(&app, "{\"n\":1}").await;
    assert_eq!(stream.next(Duration::from_secs(10)).await.unwrap().data["details"]["n"], 1);

    let signed_out = app.admin_post(&admin, "/admin/api/session/sign-out", json!({})).await;
    assert_eq!(signed_out.status, StatusCode::NO_CONTENT);
    raise(&app, "{\"n\":2}").await;
    assert!(stream.next(Duration::from_secs(10)).await.is_none(), "the stream ended, alert 2 undelivered");
    let reopened = app.admin_get(&admin, "/admin/api/events").await;
    assert_error(&reopened, StatusCode::UNAUTHORIZED, "admin_session_expired");
}

/// Attack: a tab left open on the live feed keeps an unattended session alive forever. The
/// stream never touches the session, so it ends when the idle timeout passes.
async fn an_open_stream_does_not_keep_the_session_alive(engine: Engine) {
    let app = app(engine).await;
    let admin = app.signed_in_admin("alice", Role::Auditor).await;
    let (_, _, mut stream) = Stream::open(&app, &admin, None).await;
    app.advance(time::Duration::minutes(10)).await;
    raise(&app, "{\"n\":1}").await;
    assert_eq!(stream.next(Duration::from_secs(10)).await.unwrap().data["details"]["n"], 1);
    app.advance(time::Duration::minutes(6)).await;
    raise(&app, "{\"n\":2}").await;
    assert!(stream.next(Duration::from_secs(10)).await.is_none(), "idle for 16 minutes: the stream ended");
    assert_error(
        &app.admin_get(&admin, "/admin/api/session").await,
        StatusCode::UNAUTHORIZED,
        "admin_session_expired",
    );
}

/// Attack: one session opening stream after stream to pin server tasks. Five at once; a
/// closed one frees its place.
async fn a_session_holds_at_most_five_streams(engine: Engine) {
    let app = app(engine).await;
    let admin = app.signed_in_admin("alice", Role::Auditor).await;
    let mut open = Vec::new();
    for _ in 0..5 {
        let (status, _, stream) = Stream::open(&app, &admin, None).await;
        assert_eq!(status, StatusCode::OK);
        open.push(stream);
    }
    assert_error(
        &app.admin_get(&admin, "/admin/api/events").await,
        StatusCode::TOO_MANY_REQUESTS,
        "too_many_streams",
    );
    let other = app.signed_in_admin("bob", Role::Auditor).await;
    assert_eq!(Stream::open(&app, &other, None).await.0, StatusCode::OK, "per session, not per instance");
    open.pop();
    assert_eq!(Stream::open(&app, &admin, None).await.0, StatusCode::OK);
}

/// At shutdown, open streams end at once instead of holding the drain for the grace period.
async fn shutdown_ends_open_streams(engine: Engine) {
    let app = app(engine).await;
    let admin = app.signed_in_admin("alice", Role::Auditor).await;
    let (_, _, mut stream) = Stream::open(&app, &admin, None).await;
    app.state.admin.shut_down();
    assert!(stream.next(Duration::from_secs(5)).await.is_none());
}

/// Paging the audit trail newest first with `before=` visits every event once, even while new
/// events are written between pages; a filter pages the same way.
async fn audit_search_pages_without_gaps_or_repeats(engine: Engine) {
    let app = app(engine).await;
    let key = app.key("idp", SCOPES).await;
    for n in 0..70 {
        app.post_json("/v1/users", &key, json!({ "username": format!("user{n:02}") })).await;
    }
    let admin = app.signed_in_admin("auditor", Role::Auditor).await;
    let expected = common::audit_len(&app).await;

    let mut seen = Vec::new();
    let mut path = "/admin/api/audit".to_owned();
    loop {
        let reply = app.admin_get(&admin, &path).await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
        seen.extend(reply.body["events"].as_array().unwrap().iter().map(|e| e["seq"].as_i64().unwrap()));
        // Writes between pages land above the first page: they never shift the pages below.
        app.post_json("/v1/users", &key, json!({ "username": format!("late{}", seen.len()) })).await;
        match reply.body["next_before"].as_i64() {
            Some(before) => path = format!("/admin/api/audit?before={before}"),
            None => break,
        }
    }
    assert_eq!(seen, (1..=expected).rev().collect::<Vec<_>>(), "every event once, newest first");

    let mut created = Vec::new();
    let mut path = "/admin/api/audit?action=user.created".to_owned();
    loop {
        let reply = app.admin_get(&admin, &path).await;
        let events = reply.body["events"].as_array().unwrap();
        assert!(events.iter().all(|e| e["action"] == "user.created"));
        created.extend(events.iter().map(|e| e["seq"].as_i64().unwrap()));
        match reply.body["next_before"].as_i64() {
            Some(before) => path = format!("/admin/api/audit?action=user.created&before={before}"),
            None => break,
        }
    }
    assert!(created.windows(2).all(|w| w[0] > w[1]), "no repeats");
    assert!(created.len() >= 70 + 2, "70 users and the late ones: {}", created.len());

    let by_user = app.admin_get(&admin, "/admin/api/audit?user=user07").await;
    let events = by_user.body["events"].as_array().unwrap();
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["action"], "user.created");
}

/// Every role reads the whole dashboard: auditors are read-only, not blind; the help desk
/// reads what it helps with.
async fn auditor_reads_everything_helpdesk_too(engine: Engine) {
    let app = app(engine).await;
    let key = app.key("idp", SCOPES).await;
    enrolled_device(&app, &key, "alice", PushRegistration::None).await;
    let paths = [
        "/admin/api/overview",
        "/admin/api/users",
        "/admin/api/users?q=al",
        "/admin/api/users/alice",
        "/admin/api/audit",
        "/admin/api/alerts?after=0",
        "/admin",
        "/admin/users",
        "/admin/users/alice",
        "/admin/audit",
        "/admin/api/apps",
        "/admin/api/clients",
        "/admin/apps",
    ];
    for role in [Role::Auditor, Role::Helpdesk, Role::Admin] {
        let admin = app.signed_in_admin(&format!("{role:?}").to_lowercase(), role).await;
        for path in paths {
            let (status, _, body) = page(&app, &admin, path).await;
            assert_eq!(status, StatusCode::OK, "{role:?} {path}: {body}");
        }
        let (status, _, _) = Stream::open(&app, &admin, None).await;
        assert_eq!(status, StatusCode::OK, "{role:?} streams");
    }
    let users = app.admin_get(&app.signed_in_admin("x", Role::Auditor).await, "/admin/api/users?q=al").await;
    assert_eq!(users.body["users"][0]["username"], "alice");
    // Without a session, a page says to sign in (401), with a link to the sign-in page.
    let anonymous =
        app.router.clone().oneshot(Request::get("/admin").body(Body::empty()).unwrap()).await.unwrap();
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    let html = anonymous.into_body().collect().await.unwrap().to_bytes();
    assert!(std::str::from_utf8(&html).unwrap().contains(r#"href="/admin/login""#));
}

/// Malformed query parameters are the caller's mistake: a precise 4xx JSON error, never 500.
async fn bad_query_parameters_are_4xx_json(engine: Engine) {
    let app = app(engine).await;
    let key = app.key("idp", SCOPES).await;
    app.post_json("/v1/users", &key, json!({ "username": "alice" })).await;
    let admin = app.signed_in_admin("alice", Role::Admin).await;
    let long = "a".repeat(300);
    let cases = [
        ("/admin/api/alerts?after=abc".to_owned(), StatusCode::UNPROCESSABLE_ENTITY, "invalid_request"),
        ("/admin/api/alerts?after=-1".to_owned(), StatusCode::UNPROCESSABLE_ENTITY, "invalid_request"),
        ("/admin/api/audit?before=x".to_owned(), StatusCode::UNPROCESSABLE_ENTITY, "invalid_request"),
        ("/admin/api/audit?before=0".to_owned(), StatusCode::UNPROCESSABLE_ENTITY, "invalid_request"),
        ("/admin/api/audit?from=yesterday".to_owned(), StatusCode::UNPROCESSABLE_ENTITY, "invalid_request"),
        (
            "/admin/api/audit?from=2026-12-02&to=2026-12-01".to_owned(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_request",
        ),
        ("/admin/api/audit?user=nobody".to_owned(), StatusCode::NOT_FOUND, "user_not_found"),
        (
            "/admin/api/users/alice?before=garbage".to_owned(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_request",
        ),
        ("/admin/api/users/nobody".to_owned(), StatusCode::NOT_FOUND, "user_not_found"),
        (format!("/admin/api/users?q={long}"), StatusCode::UNPROCESSABLE_ENTITY, "invalid_request"),
        ("/admin/api/events?after=x".to_owned(), StatusCode::UNPROCESSABLE_ENTITY, "invalid_request"),
    ];
    for (path, status, code) in cases {
        let reply = app.admin_get(&admin, &path).await;
        assert_error(&reply, status, code);
    }
    let mut request = app.admin_request(Method::GET, "/admin/api/events", &admin, None);
    request.headers_mut().insert("last-event-id", "twelve".parse().unwrap());
    assert_error(&app.send(request).await, StatusCode::UNPROCESSABLE_ENTITY, "invalid_request");
    // The pages answer the same mistakes with the same status, as a page.
    let (status, _, html) = page(&app, &admin, "/admin/audit?before=x").await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(html.contains(r#"data-code="invalid_request""#));
}

/// The number shown on the phone is the proof of presence: the admin timeline says "matched"
/// or "wrong number", never the number, in the API and on the page.
async fn the_timeline_never_shows_the_number(engine: Engine) {
    let app = app(engine).await;
    let key = app.key("idp", SCOPES).await;
    let mut phone = enrolled_device(&app, &key, "alice", PushRegistration::None).await;
    let right = prompt(&app, &key, "alice").await;
    assert_eq!(answer(&app, &mut phone, &right.body, Decision::Approve).await, "approved");
    app.advance(time::Duration::seconds(5)).await;
    let wrong = prompt(&app, &key, "alice").await;
    let number = wrong.body["number"].as_str().unwrap();
    let typed = format!(
        "{:0width$}",
        (number.parse::<u32>().unwrap() + 1) % 10u32.pow(number.len() as u32),
        width = number.len()
    );
    answer_with(&app, &mut phone, &wrong.body, Decision::Approve, &typed).await;

    let admin = app.signed_in_admin("reader", Role::Admin).await;
    let reply = app.admin_get(&admin, "/admin/api/users/alice").await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    let timeline = reply.body["timeline"].as_array().unwrap();
    let numbers: Vec<&Value> = timeline.iter().map(|p| &p["number"]).collect();
    assert_eq!(numbers, [&json!("wrong_number"), &json!("matched")], "newest first");
    assert_eq!(timeline[1]["app_name"], "idp");
    assert_eq!(timeline[1]["user_agent"], "Firefox 140");
    assert!(timeline[1]["seconds_to_decide"].is_number());
    for shown in [right.body["number"].as_str().unwrap(), number] {
        for prompt in timeline {
            for value in prompt.as_object().unwrap().values() {
                assert_ne!(value.as_str(), Some(shown), "a timeline field holds the number");
            }
        }
    }
    let (_, _, html) = page(&app, &admin, "/admin/users/alice").await;
    assert!(html.contains("<td>matched</td>") && html.contains("<td>wrong number</td>"), "{html}");
    for shown in [right.body["number"].as_str().unwrap(), number] {
        assert!(!html.contains(&format!(">{shown}<")), "the page shows the number {shown}");
    }
    assert!(html.contains(r#"<section id="actions">"#));
    assert!(html.contains(r#"id="time-strip""#));
}

/// The dashboard's reads are in the admin OpenAPI document, with their schemas.
#[test]
fn the_dashboard_is_in_the_admin_openapi_document() {
    let doc = serde_json::to_value(countersign::admin::http::openapi()).unwrap();
    for path in [
        "/admin/api/overview",
        "/admin/api/users",
        "/admin/api/users/{username}",
        "/admin/api/audit",
        "/admin/api/alerts",
        "/admin/api/events",
        "/admin/api/apps",
        "/admin/api/clients",
    ] {
        assert!(doc["paths"][path]["get"].is_object(), "{path}");
    }
    let schemas = doc["components"]["schemas"].as_object().unwrap();
    for schema in
        ["OverviewView", "UserList", "UserPage", "TimelineItem", "AuditPage", "AlertsPage", "AlertView"]
    {
        assert!(schemas.contains_key(schema), "{schema}: {:?}", schemas.keys().collect::<Vec<_>>());
    }
    let events = &doc["paths"]["/admin/api/events"]["get"]["responses"]["200"]["content"];
    assert!(events.get("text/event-stream").is_some(), "{events}");
}

/// Apps and OIDC clients are listed with their scopes (never a key or secret); the apps made
/// for OIDC clients and Keycloak realms say they are keyless. Only an admin gets the create
/// forms and the Revoke buttons, and never a Revoke for a keyless or revoked app.
async fn apps_and_clients_are_listed_keyless_apps_labelled_forms_for_admins_only(engine: Engine) {
    use countersign::oidc::client_admin::NewClient;
    use countersign::oidc::clients::{AuthMethod, CibaDelivery, ClientKeys, IdTokenAlg};
    let app = app(engine).await;
    let key = app.key("portal", "users:read").await;
    let (keyless, event) = countersign::api_keys::service::keyless_app(
        "oidc-wiki".into(),
        json!({ "client_id": "x" }),
        app.clock_now(),
    )
    .unwrap();
    app.store.create_app(keyless, event).await.unwrap();
    let new = NewClient {
        name: "wiki".into(),
        redirect_uris: vec![],
        auth_method: AuthMethod::ClientSecretBasic,
        keys: ClientKeys::None,
        id_token_alg: IdTokenAlg::Es256,
        ciba: Some(CibaDelivery::Poll),
    };
    let created = countersign::oidc::client_admin::create_client(
        app.store.as_ref(),
        app.clock.as_ref(),
        countersign::audit::Actor::Cli,
        new,
    )
    .await
    .unwrap();
    let admin = app.signed_in_admin("reader", Role::Auditor).await;

    let apps = app.admin_get(&admin, "/admin/api/apps").await;
    assert_eq!(apps.status, StatusCode::OK, "{}", apps.body);
    let listed: Vec<(&str, bool, &str)> = apps
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (a["name"].as_str().unwrap(), a["keyless"].as_bool().unwrap(), a["scopes"].as_str().unwrap())
        })
        .collect();
    assert_eq!(listed, [("oidc-wiki", true, ""), ("portal", false, "users:read")]);
    assert!(!apps.body.to_string().contains(&key), "never the key");
    let clients = app.admin_get(&admin, "/admin/api/clients").await;
    assert_eq!(clients.body[0]["name"], "wiki");
    assert_eq!(clients.body[0]["ciba"], true);
    let secret = created.secret.unwrap();
    assert!(!clients.body.to_string().contains(secrecy::ExposeSecret::expose_secret(&secret)));
    let (status, _, html) = page(&app, &admin, "/admin/apps").await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains(r#"<tr data-app="oidc-wiki" data-keyless="true">"#), "{html}");
    assert!(html.contains(r#"<tr data-app="portal" data-keyless="false">"#));
    assert!(html.contains(&format!(r#"data-client-id="{}""#, created.client.client_id.0)));
    for form in ["create-app", "create-client", "revoke-app", "revoke-client"] {
        assert!(!html.contains(form), "{form} for an auditor: {html}");
    }

    // An admin gets the forms (every scope offered) and a Revoke on each live app and client
    // they may revoke: never on a keyless app, nor on one already revoked.
    let root = app.signed_in_admin("root", Role::Admin).await;
    let (status, _, html) = page(&app, &root, "/admin/apps").await;
    assert_eq!(status, StatusCode::OK, "{html}");
    assert!(html.contains(r#"<form id="create-app""#) && html.contains(r#"<form id="create-client""#));
    for scope in countersign::api_keys::Scope::ALL {
        assert!(html.contains(&format!(r#"value="{}""#, scope.as_str())), "{scope:?}");
    }
    assert!(html.contains(r#"data-action="revoke-app" data-name="portal""#), "{html}");
    assert!(!html.contains(r#"data-action="revoke-app" data-name="oidc-wiki""#), "keyless: {html}");
    let client_button =
        format!(r#"data-action="revoke-client" data-client-id="{}""#, created.client.client_id.0);
    assert!(html.contains(&client_button), "{html}");
    assert!(!html.contains("<script>") && !html.contains("style="), "no inline script or style (CSP)");
    app.step_up_for(&root, "revoke_app:portal").await;
    let revoked = app.admin_post(&root, "/admin/api/apps/portal/revoke", json!({})).await;
    assert_eq!(revoked.status, StatusCode::OK, "{}", revoked.body);
    let (_, _, html) = page(&app, &root, "/admin/apps").await;
    assert!(html.contains(r#"<tr data-app="portal" data-keyless="false">"#), "still listed");
    assert!(!html.contains(r#"data-action="revoke-app""#), "no Revoke on a revoked app: {html}");
    let desk = app.signed_in_admin("desk", Role::Helpdesk).await;
    let (_, _, html) = page(&app, &desk, "/admin/apps").await;
    assert!(!html.contains("create-app") && !html.contains("revoke-client"), "help desk: {html}");
}

/// The requests page lists a pending request, names who asked, and renders an attacker's
/// payload (an invited admin's name, the asking admin's name) escaped; only an admin gets the
/// Approve button (an auditor reads the list).
async fn the_requests_page_lists_pending_requests_escaped(engine: Engine) {
    let app = app(engine).await;
    let asker = app.signed_in_admin(XSS[1], Role::Admin).await;
    let decider = app.signed_in_admin("bob", Role::Admin).await;
    let body = json!({ "kind": "grant_role", "payload": { "name": XSS[0], "role": "helpdesk" } });
    let submitted = app.admin_post(&asker, "/admin/api/requests/submit", body).await;
    assert_eq!(submitted.status, StatusCode::ACCEPTED, "{}", submitted.body);
    let id = submitted.body["id"].as_str().unwrap();

    let (status, headers, html) = page(&app, &decider, "/admin/requests").await;
    assert_eq!(status, StatusCode::OK, "{html}");
    assert!(headers.contains_key(header::CONTENT_SECURITY_POLICY));
    assert!(html.contains(&format!(r#"data-request-id="{id}" data-kind="grant_role""#)), "{html}");
    assert!(!html.contains("<script>alert"), "a raw script tag: {html}");
    assert!(!html.contains("<img src=x"), "a raw img tag: {html}");
    assert!(html.contains("&#60;script&#62;alert(1)&#60;/script&#62;"), "the payload, escaped: {html}");
    assert!(html.contains("&#34;&#62;&#60;img src=x onerror=alert(1)&#62;"), "the asker, escaped: {html}");
    assert!(html.contains(r#"data-action="approve""#) && html.contains(r#"data-action="reject""#));
    assert!(!html.contains(r#"data-action="withdraw""#), "not bob's to withdraw: {html}");
    // The asker may withdraw their request, never decide it.
    let (_, _, html) = page(&app, &asker, "/admin/requests").await;
    assert!(html.contains(r#"data-action="withdraw""#), "{html}");
    assert!(!html.contains(r#"data-action="approve""#) && !html.contains(r#"data-action="reject""#));

    let reader = app.signed_in_admin("reader", Role::Auditor).await;
    let (status, _, html) = page(&app, &reader, "/admin/requests").await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains(&format!(r#"data-request-id="{id}""#)));
    for action in ["approve", "reject", "withdraw"] {
        assert!(!html.contains(&format!(r#"data-action="{action}""#)), "an auditor decides nothing");
    }

    app.step_up(&decider, id).await;
    let rejected = app.admin_post(&decider, &format!("/admin/api/requests/{id}/reject"), json!({})).await;
    assert_eq!(rejected.status, StatusCode::OK, "{}", rejected.body);
    let (_, _, html) = page(&app, &decider, "/admin/requests").await;
    assert!(!html.contains("data-request-id="), "only pending requests: {html}");
    assert!(html.contains(r#"id="no-requests""#));

    // The user page offers Unfreeze to those who may ask for it, not to an auditor.
    let key = app.key("idp", SCOPES).await;
    app.post_json("/v1/users", &key, json!({ "username": "carol" })).await;
    let (_, _, html) = page(&app, &decider, "/admin/users/carol").await;
    assert!(html.contains(r#"data-action="unfreeze" data-username="carol""#), "{html}");
    let (_, _, html) = page(&app, &reader, "/admin/users/carol").await;
    assert!(!html.contains(r#"data-action="unfreeze""#), "{html}");
}

/// Attack: any role reconnects with `Last-Event-ID: 0` (up to five streams a session) so the
/// server reads the whole alert history into memory, and keeps delivering it after the session
/// ends. A backlog is read a page at a time, in order, the session checked before each page.
async fn a_resumed_stream_reads_its_backlog_a_page_at_a_time(engine: Engine) {
    let app = app(engine).await;
    let admin = app.signed_in_admin("alice", Role::Auditor).await;
    for n in 0..120 {
        raise(&app, &format!("{{\"n\":{n}}}")).await;
    }
    let (_, _, mut all) = Stream::open(&app, &admin, Some("0")).await;
    for n in 0..120 {
        let event = all.next(Duration::from_secs(10)).await.expect("the backlog, in order");
        assert_eq!(event.data["details"]["n"], n);
    }
    drop(all);
    let (_, _, mut cut) = Stream::open(&app, &admin, Some("0")).await;
    for _ in 0..countersign::admin::dashboard::PAGE_LEN {
        cut.next(Duration::from_secs(10)).await.expect("the first page");
    }
    let signed_out = app.admin_post(&admin, "/admin/api/session/sign-out", json!({})).await;
    assert_eq!(signed_out.status, StatusCode::NO_CONTENT);
    assert!(cut.next(Duration::from_secs(10)).await.is_none(), "no second page for a session that ended");
}

/// The user page offers Revoke (active factors only) and "Verify caller" to help desk, and no
/// button at all to an auditor.
async fn the_user_page_offers_revoke_and_verify_caller_to_helpdesk_only(engine: Engine) {
    let app = app(engine).await;
    let key = app.key("idp", SCOPES).await;
    let _phone = enrolled_device(&app, &key, "erin", PushRegistration::None).await;
    let devices = app.get("/v1/users/erin/devices", Some(&key)).await;
    let id = devices.body[0]["id"].as_str().unwrap().to_owned();

    let desk = app.signed_in_admin("desk", Role::Helpdesk).await;
    let (status, _, html) = page(&app, &desk, "/admin/users/erin").await;
    assert_eq!(status, StatusCode::OK, "{html}");
    assert!(html.contains(&format!(r#"data-action="revoke-device" data-id="{id}""#)), "{html}");
    assert!(html.contains(r#"data-action="verify-caller" data-username="erin""#), "{html}");
    assert!(html.contains(r#"id="verification-number""#) && html.contains(r#"id="verification-result""#));
    assert!(!html.contains("<script>") && !html.contains("style="), "no inline script or style (CSP)");

    let reader = app.signed_in_admin("reader", Role::Auditor).await;
    let (status, _, html) = page(&app, &reader, "/admin/users/erin").await;
    assert_eq!(status, StatusCode::OK, "{html}");
    assert!(html.contains(&format!(r#"data-device-id="{id}""#)), "the auditor still reads the devices");
    for action in ["revoke-device", "revoke-passkey", "verify-caller", "passkey-link"] {
        assert!(!html.contains(&format!(r#"data-action="{action}""#)), "{action} for an auditor: {html}");
    }

    // A revoked device keeps its row, without a Revoke button.
    let revoked = app.delete(&format!("/v1/users/erin/devices/{id}"), &key).await;
    assert_eq!(revoked.status, StatusCode::NO_CONTENT, "{}", revoked.body);
    let (_, _, html) = page(&app, &desk, "/admin/users/erin").await;
    assert!(html.contains(&format!(r#"data-device-id="{id}""#)), "{html}");
    assert!(!html.contains(r#"data-action="revoke-device""#), "no Revoke on a revoked device: {html}");
}

/// The policy page shows every setting in force and where it comes from; help desk and admins
/// get the form that asks for a change (pending until a second admin approves), an auditor none.
async fn the_policy_page_shows_the_policy_and_asks_for_changes(engine: Engine) {
    let app = app(engine).await;
    let alice = app.signed_in_admin("alice", Role::Admin).await;
    let bob = app.signed_in_admin("bob", Role::Admin).await;
    let reader = app.signed_in_admin("reader", Role::Auditor).await;
    let shown = app.admin_get(&alice, "/admin/api/policy").await.body["policy"].clone();
    let (status, headers, html) = page(&app, &alice, "/admin/policy").await;
    assert_eq!(status, StatusCode::OK, "{html}");
    assert!(headers.contains_key(header::CONTENT_SECURITY_POLICY));
    for (key, value) in shown.as_object().unwrap() {
        let field = format!(r#"<input type="number" name="{key}" value="{value}""#);
        assert!(html.contains(&field), "{field}: {html}");
    }
    assert!(html.contains(r#"900 <span class="quiet">(15 min)</span>"#), "durations in words: {html}");
    assert!(html.contains("from the config file"), "{html}");
    assert!(!html.contains("<script>") && !html.contains("style="), "no inline script or style (CSP)");
    let (_, _, html) = page(&app, &reader, "/admin/policy").await;
    assert!(html.contains(r#"<tr data-key="push_budget">"#), "the auditor reads it: {html}");
    assert!(!html.contains("<input") && !html.contains(r#"type="submit""#), "and cannot ask: {html}");

    let mut policy = shown.clone();
    policy["push_budget"] = json!(3);
    let body = json!({ "kind": "fatigue_policy", "payload": policy });
    let id = app.admin_post(&alice, "/admin/api/requests/submit", body).await.body["id"]
        .as_str()
        .unwrap()
        .to_owned();
    app.step_up(&bob, &id).await;
    let approved = app.admin_post(&bob, &format!("/admin/api/requests/{id}/approve"), json!({})).await;
    assert_eq!(approved.status, StatusCode::OK, "{}", approved.body);
    let (_, _, html) = page(&app, &reader, "/admin/policy").await;
    assert!(html.contains(&format!(r#"href="/admin/requests#request-{id}""#)), "{html}");
    assert!(
        html.contains(r#"<tr data-key="push_budget"><td><code>push_budget</code></td><td class="num">3"#),
        "{html}"
    );
}

on_both_engines!(
    a_resumed_stream_reads_its_backlog_a_page_at_a_time,
    the_policy_page_shows_the_policy_and_asks_for_changes,
    the_user_page_offers_revoke_and_verify_caller_to_helpdesk_only,
    the_requests_page_lists_pending_requests_escaped,
    apps_and_clients_are_listed_keyless_apps_labelled_forms_for_admins_only,
    overview_lists_a_user_under_attack,
    xss_everywhere_is_rendered_escaped,
    sse_requires_session,
    alert_on_instance_b_reaches_sse_on_instance_a,
    revoked_session_closes_the_stream,
    an_open_stream_does_not_keep_the_session_alive,
    shutdown_ends_open_streams,
    a_session_holds_at_most_five_streams,
    audit_search_pages_without_gaps_or_repeats,
    auditor_reads_everything_helpdesk_too,
    bad_query_parameters_are_4xx_json,
    the_timeline_never_shows_the_number,
);
