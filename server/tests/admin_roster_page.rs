//! The admins page (`/admin/admins`) on both engines: the roster with each admin's role and
//! standing, the signed-in admin's own passkeys, and the forms and buttons of the changes each
//! role may ask for (an auditor gets none); names an attacker chose are rendered escaped.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[macro_use]
mod common;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use common::TestApp;
use common::admin::AdminClient;
use countersign::admin::model::Role;
use countersign::app::HttpLimits;
use countersign::audit::{Action, Actor, AuditEvent, Subject};
use countersign::ids::AdminPasskeyId;
use countersign::store::AdminPasskeyRecord;
use countersign_e2e::Engine;
use http_body_util::BodyExt;
use serde_json::json;
use tower::ServiceExt;

const XSS: [&str; 2] = ["<script>alert(1)</script>", "\"><img src=x onerror=alert(1)>"];

/// What a role may do on the page, by the buttons and forms that do it.
const SUBMIT_ACTIONS: [&str; 3] =
    [r#"id="invite-admin""#, r#"data-action="change-role""#, r#"data-action="remove-admin""#];
const CANCEL_ACTION: &str = r#"data-action="cancel-removal""#;
const END_SESSIONS: &str = r#"data-action="end-sessions""#;
const REVOKE_ACTION: &str = r#"data-action="revoke-own-passkey""#;

async fn app(engine: Engine) -> TestApp {
    TestApp::build(engine, HttpLimits::default()).await
}

/// The table row of the admin or passkey `id` (from its `<tr` to its `</tr>`).
fn row<'a>(html: &'a str, attribute: &str, id: &str) -> &'a str {
    let start = html.find(&format!(r#"{attribute}="{id}""#)).unwrap_or_else(|| panic!("no row {id}: {html}"));
    let start = html[..start].rfind("<tr").unwrap();
    let end = start + html[start..].find("</tr>").unwrap();
    &html[start..end]
}

/// A passkey of `admin` as a registration would store it (the page lists it; no ceremony here).
async fn passkey_of(app: &TestApp, admin: &AdminClient, name: &str) -> AdminPasskeyId {
    let passkey = AdminPasskeyRecord {
        id: AdminPasskeyId::random(),
        admin_id: admin.id,
        credential_id: AdminPasskeyId::random().to_string().into_bytes(),
        name: name.to_owned(),
        static_state: vec![1],
        dynamic_state: vec![2],
        aaguid: vec![0; 16],
        backup_eligible: true,
        backed_up: true,
        sign_count: 0,
        created_at: app.clock_now(),
        last_used_at: None,
        revoked_at: None,
    };
    let audit = AuditEvent::new(
        app.clock_now(),
        Actor::Admin { id: admin.id },
        Action::AdminPasskeyRegistered,
        Subject::Admin(admin.id),
    );
    app.store.add_admin_passkey(&passkey, audit).await.unwrap();
    passkey.id
}

/// The roster by role: an admin may ask for every change and cancel a scheduled removal (its
/// row says when it takes effect); help desk may ask but not cancel; an auditor reads the same
/// roster with no form or button. A removal past its delay reads as removed, without buttons.
async fn the_admins_page_shows_the_roster_and_each_action_only_to_roles_that_may_do_it(engine: Engine) {
    let app = app(engine).await;
    let root = app.signed_in_admin("root", Role::Admin).await;
    let boss = app.signed_in_admin("boss", Role::Admin).await;
    let desk = app.signed_in_admin("desk", Role::Helpdesk).await;
    let leaver = app.signed_in_admin("leaver", Role::Helpdesk).await;
    let reader = app.signed_in_admin("reader", Role::Auditor).await;

    let asked = app.admin_post(&root, &format!("/admin/api/admins/{}/remove", leaver.id), json!({})).await;
    assert_eq!(asked.status, StatusCode::ACCEPTED, "{}", asked.body);
    let request = asked.body["id"].as_str().unwrap();
    app.step_up(&boss, request).await;
    let approved = app.admin_post(&boss, &format!("/admin/api/requests/{request}/approve"), json!({})).await;
    assert_eq!(approved.status, StatusCode::OK, "{}", approved.body);
    let listed = app.admin_get(&reader, "/admin/api/admins").await.body;
    let due = listed.as_array().unwrap().iter().find(|a| a["name"] == "leaver").unwrap()["removal_due_at"]
        .as_str()
        .unwrap()
        .to_owned();
    // `2026-01-02T03:04:05Z` as the page writes it: `2026-01-02 03:04:05`.
    let due_text = due.replace('T', " ").trim_end_matches('Z').to_owned();

    let (status, headers, html) = app.admin_page(&root, "/admin/admins").await;
    assert_eq!(status, StatusCode::OK, "{html}");
    assert!(headers.contains_key(header::CONTENT_SECURITY_POLICY));
    assert!(html.contains(r#"<a href="/admin/admins">Admins</a>"#), "in the nav: {html}");
    for (admin, role) in [(&root, "admin"), (&boss, "admin"), (&desk, "helpdesk"), (&reader, "auditor")] {
        let tr = row(&html, "data-admin-id", &admin.id.to_string());
        assert!(tr.contains(r#"data-status="active""#) && tr.contains(&format!("<td>{role}</td>")), "{tr}");
        assert!(tr.contains(r#"data-action="remove-admin""#), "{tr}");
    }
    assert!(row(&html, "data-admin-id", &root.id.to_string()).contains(r#"<span class="tag">you</span>"#));
    let leaving = row(&html, "data-admin-id", &leaver.id.to_string());
    assert!(leaving.contains(r#"data-status="removal_pending""#), "{leaving}");
    assert!(leaving.contains(&format!("removal scheduled: takes effect {due_text} UTC")), "{leaving}");
    assert!(leaving.contains(CANCEL_ACTION), "an admin may cancel: {leaving}");
    assert!(!leaving.contains(r#"data-action="remove-admin""#), "already leaving: {leaving}");
    assert!(!leaving.contains(END_SESSIONS), "signed out already: {leaving}");
    assert!(html.contains(END_SESSIONS), "an admin may end an active admin's sessions: {html}");
    for action in SUBMIT_ACTIONS {
        assert!(html.contains(action), "{action} for an admin: {html}");
    }

    let (status, _, html) = app.admin_page(&desk, "/admin/admins").await;
    assert_eq!(status, StatusCode::OK, "{html}");
    for action in SUBMIT_ACTIONS {
        assert!(html.contains(action), "{action} for help desk: {html}");
    }
    assert!(!html.contains(CANCEL_ACTION), "help desk cannot cancel a removal: {html}");
    assert!(!html.contains(END_SESSIONS), "help desk cannot end sessions: {html}");

    let (status, _, html) = app.admin_page(&reader, "/admin/admins").await;
    assert_eq!(status, StatusCode::OK, "{html}");
    assert!(html.contains(&format!(r#"data-admin-id="{}" data-status="removal_pending""#, leaver.id)));
    for action in SUBMIT_ACTIONS.iter().chain(&[CANCEL_ACTION, END_SESSIONS]) {
        assert!(!html.contains(action), "{action} for an auditor: {html}");
    }
    assert!(!html.contains("<select"), "no role picker for an auditor: {html}");

    // Past the delay the removal has taken effect: listed as removed, nothing to do on it.
    app.advance(time::Duration::hours(25)).await;
    let root = app.sign_in_admin(&app.store.admin(root.id).await.unwrap().unwrap()).await;
    let (_, _, html) = app.admin_page(&root, "/admin/admins").await;
    let removed = row(&html, "data-admin-id", &leaver.id.to_string());
    assert!(
        removed.contains(r#"data-status="removed""#) && removed.contains("<td>removed</td>"),
        "{removed}"
    );
    assert!(!removed.contains("<button"), "{removed}");
}

/// The signed-in admin's own passkeys, and only theirs: Revoke shows once they have two active
/// ones (the last is never revoked), never on a revoked one; every role may add one.
async fn the_admins_page_lists_ones_own_passkeys_with_revoke_only_while_another_is_left(engine: Engine) {
    let app = app(engine).await;
    let reader = app.signed_in_admin("reader", Role::Auditor).await;
    let other = app.signed_in_admin("other", Role::Admin).await;
    let first = passkey_of(&app, &reader, "laptop").await;
    let theirs = passkey_of(&app, &other, "not yours").await;

    let (_, _, html) = app.admin_page(&reader, "/admin/admins").await;
    assert!(row(&html, "data-passkey-id", &first.to_string()).contains("<td>laptop</td>"), "{html}");
    assert!(
        !html.contains(&theirs.to_string()) && !html.contains("not yours"),
        "another admin's passkey: {html}"
    );
    assert!(!html.contains(REVOKE_ACTION), "the only passkey: {html}");
    assert!(html.contains(r#"id="only-passkey""#) && html.contains(r#"<form id="add-passkey""#), "{html}");

    let second = passkey_of(&app, &reader, "phone").await;
    let (_, _, html) = app.admin_page(&reader, "/admin/admins").await;
    for id in [first, second] {
        let button = format!(r#"{REVOKE_ACTION} data-id="{id}""#);
        assert!(row(&html, "data-passkey-id", &id.to_string()).contains(&button), "{html}");
    }
    assert!(!html.contains(r#"id="only-passkey""#), "{html}");

    app.step_up_for(&reader, &format!("revoke_passkey:{second}")).await;
    let revoked = app.admin_post(&reader, &format!("/admin/api/passkeys/{second}/revoke"), json!({})).await;
    assert_eq!(revoked.status, StatusCode::NO_CONTENT, "{}", revoked.body);
    let (_, _, html) = app.admin_page(&reader, "/admin/admins").await;
    assert!(row(&html, "data-passkey-id", &second.to_string()).contains("<td>revoked</td>"), "{html}");
    assert!(!html.contains(REVOKE_ACTION), "one active passkey left: {html}");
}

/// Attack: an admin (or an invitation) named with markup, and a passkey named so: rendered as
/// text, and the page carries no inline script or style. Without a session the page is a 401
/// that links to the sign-in.
async fn the_admins_page_renders_attacker_names_escaped_and_needs_a_session(engine: Engine) {
    let app = app(engine).await;
    let evil = app.signed_in_admin(XSS[0], Role::Admin).await;
    let boss = app.signed_in_admin("boss", Role::Admin).await;
    passkey_of(&app, &evil, XSS[1]).await;
    let asked =
        app.admin_post(&boss, "/admin/api/admins/invite", json!({ "name": XSS[1], "role": "admin" })).await;
    assert_eq!(asked.status, StatusCode::ACCEPTED, "{}", asked.body);
    let request = asked.body["id"].as_str().unwrap();
    app.step_up(&evil, request).await;
    let approved = app.admin_post(&evil, &format!("/admin/api/requests/{request}/approve"), json!({})).await;
    assert_eq!(approved.status, StatusCode::OK, "{}", approved.body);

    let (status, _, html) = app.admin_page(&evil, "/admin/admins").await;
    assert_eq!(status, StatusCode::OK, "{html}");
    assert!(!html.contains("<script>alert") && !html.contains("<img src=x"), "raw markup: {html}");
    assert!(html.contains("&#60;script&#62;alert(1)&#60;/script&#62;"), "the admin's name, escaped: {html}");
    assert!(
        html.contains("&#34;&#62;&#60;img src=x onerror=alert(1)&#62;"),
        "the invitee and passkey: {html}"
    );
    let invited = approved.body["invitation"]["admin_id"].as_str().unwrap();
    let tr = row(&html, "data-admin-id", invited);
    assert!(tr.contains(r#"data-status="invited""#), "the approved invitation is listed: {tr}");
    assert!(tr.contains(r#"data-action="change-role""#), "an invited admin's role may change: {tr}");
    assert!(tr.contains(r#"data-action="remove-admin""#), "an invitation can be withdrawn: {tr}");
    assert!(!html.contains("<script>") && !html.contains("style="), "no inline script or style (CSP)");

    let anonymous =
        app.router.clone().oneshot(Request::get("/admin/admins").body(Body::empty()).unwrap()).await.unwrap();
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    let html = anonymous.into_body().collect().await.unwrap().to_bytes();
    assert!(std::str::from_utf8(&html).unwrap().contains(r#"href="/admin/login""#));
}

on_both_engines!(
    the_admins_page_shows_the_roster_and_each_action_only_to_roles_that_may_do_it,
    the_admins_page_lists_ones_own_passkeys_with_revoke_only_while_another_is_left,
    the_admins_page_renders_attacker_names_escaped_and_needs_a_session,
);
