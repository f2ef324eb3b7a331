//! Four-eyes requests on both engines: one admin asks, another approves with a fresh passkey
//! assertion; self-approval, stale step-ups, the two-admin floor (also under concurrency),
//! soft removal, expiry and one-time invitations, each a named test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[macro_use]
mod common;

use axum::http::StatusCode;
use common::admin::{AdminClient, create_admin};
use common::{TestApp, assert_error, audit_actions, enrolled_device, signed_get};
use countersign::admin::model::Role;
use countersign::admin::sessions::secret_hash;
use countersign::app::HttpLimits;
use countersign::audit::{Action, Actor, AuditEvent, Subject};
use countersign::ids::AdminRequestId;
use countersign::store::{Approval, RosterChange};
use countersign_e2e::{Engine, exec_sql, query_strings};
use countersign_mobile_protocol::{Decision, PendingChallenges, PushRegistration};
use serde_json::{Value, json};
use time::Duration;

async fn app(engine: Engine) -> TestApp {
    TestApp::build(engine, HttpLimits::default()).await
}

/// Three admins (`alice`, `bob`, `carol`), signed in.
async fn three_admins(app: &TestApp) -> (AdminClient, AdminClient, AdminClient) {
    (
        app.signed_in_admin("alice", Role::Admin).await,
        app.signed_in_admin("bob", Role::Admin).await,
        app.signed_in_admin("carol", Role::Admin).await,
    )
}

/// `by` asks for a new helpdesk admin called `name`; returns the request id.
async fn invite(app: &TestApp, by: &AdminClient, name: &str) -> String {
    let reply =
        app.admin_post(by, "/admin/api/admins/invite", json!({ "name": name, "role": "helpdesk" })).await;
    assert_eq!(reply.status, StatusCode::ACCEPTED, "{}", reply.body);
    assert_eq!(reply.body["state"], "pending");
    reply.body["id"].as_str().unwrap().to_owned()
}

async fn approve(app: &TestApp, by: &AdminClient, id: &str) -> common::Reply {
    app.admin_post(by, &format!("/admin/api/requests/{id}/approve"), json!({})).await
}

async fn state_of(app: &TestApp, by: &AdminClient, id: &str) -> String {
    let reply = app.admin_get(by, &format!("/admin/api/requests/{id}")).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    reply.body["state"].as_str().unwrap().to_owned()
}

/// A new session for the same admin (sessions end after 15 idle minutes; tests move time by days).
async fn fresh(app: &TestApp, admin: &AdminClient) -> AdminClient {
    app.sign_in_admin(&app.store.admin(admin.id).await.unwrap().unwrap()).await
}

async fn count_of(app: &TestApp, action: &str) -> usize {
    audit_actions(app).await.iter().filter(|(a, _)| a == action).count()
}

async fn alert_kinds(app: &TestApp) -> Vec<String> {
    let mut kinds = Vec::new();
    let mut after = 0;
    while let Some(alert) = app.store.next_alert(after).await.unwrap() {
        after = alert.id;
        kinds.push(alert.kind);
    }
    kinds
}

/// Attack: one admin session is stolen. The real admins ask to remove the thief's confederate;
/// the thief rejects it at once, and every time after. A rejection is a decision like an
/// approval: it needs a fresh passkey assertion taken for that request, which the thief has not.
async fn a_stolen_session_cannot_veto_requests_without_a_fresh_passkey(engine: Engine) {
    let app = app(engine).await;
    let (alice, bob, thief) = three_admins(&app).await;
    let removal = app.admin_post(&alice, &format!("/admin/api/admins/{}/remove", bob.id), json!({})).await;
    let id = removal.body["id"].as_str().unwrap().to_owned();
    let reject = format!("/admin/api/requests/{id}/reject");
    assert_error(
        &app.admin_post(&thief, &reject, json!({})).await,
        StatusCode::FORBIDDEN,
        "step_up_required",
    );
    let other = invite(&app, &alice, "dave").await;
    app.step_up(&thief, &other).await;
    let elsewhere = app.admin_post(&thief, &reject, json!({})).await;
    assert_error(&elsewhere, StatusCode::FORBIDDEN, "step_up_required");
    assert_eq!(state_of(&app, &alice, &id).await, "pending", "not vetoed");
    assert_eq!(count_of(&app, "admin.request_rejected").await, 0);

    // With a passkey assertion for this request, a rejection stands (and spends it).
    app.step_up(&thief, &id).await;
    let rejected = app.admin_post(&thief, &reject, json!({})).await;
    assert_eq!(rejected.status, StatusCode::OK, "{}", rejected.body);
    assert_eq!(state_of(&app, &alice, &id).await, "rejected");
}

/// Attack: an admin who asked for a change approves it themselves (one stolen admin session
/// would then be enough). Refused by the service, and by the database itself.
async fn self_approval_is_403(engine: Engine) {
    let app = app(engine).await;
    let alice = app.signed_in_admin("alice", Role::Admin).await;
    let _bob = app.signed_in_admin("bob", Role::Admin).await;
    let id = invite(&app, &alice, "dave").await;
    app.step_up(&alice, &id).await;
    assert_error(&approve(&app, &alice, &id).await, StatusCode::FORBIDDEN, "self_approval_forbidden");
    let reject = app.admin_post(&alice, &format!("/admin/api/requests/{id}/reject"), json!({})).await;
    assert_error(&reject, StatusCode::FORBIDDEN, "self_approval_forbidden");
    assert_eq!(state_of(&app, &alice, &id).await, "pending");
    // Even with direct database access, an approval by the requester does not hold.
    let forged = format!(
        "UPDATE admin_requests SET state = 'approved', decided_by = requested_by, decided_at = requested_at \
         WHERE id = '{id}'"
    );
    let refused = exec_sql(&app.db, &forged).await.unwrap_err();
    assert!(
        refused.to_string().contains("admin_requests_four_eyes") || refused.to_string().contains("CHECK"),
        "{refused}"
    );
    assert_eq!(state_of(&app, &alice, &id).await, "pending");
    assert_eq!(count_of(&app, "admin.request_approved").await, 0);
}

/// Attack: a stolen session cookie approves without the passkey (no step-up, a stale one, or
/// one step-up spent twice).
async fn approval_without_fresh_passkey_is_403(engine: Engine) {
    let app = app(engine).await;
    let (alice, bob, _carol) = three_admins(&app).await;
    let first = invite(&app, &alice, "dave").await;
    assert_error(&approve(&app, &bob, &first).await, StatusCode::FORBIDDEN, "step_up_required");
    app.step_up(&bob, &first).await;
    app.advance(Duration::seconds(121)).await;
    assert_error(&approve(&app, &bob, &first).await, StatusCode::FORBIDDEN, "step_up_required");
    assert_eq!(state_of(&app, &bob, &first).await, "pending", "nothing changed");

    app.step_up(&bob, &first).await;
    app.advance(Duration::seconds(60)).await;
    assert_eq!(approve(&app, &bob, &first).await.status, StatusCode::OK);
    let second = invite(&app, &alice, "erin").await;
    assert_error(&approve(&app, &bob, &second).await, StatusCode::FORBIDDEN, "step_up_required");
    assert_eq!(state_of(&app, &bob, &second).await, "pending");
    assert_eq!(count_of(&app, "admin.request_approved").await, 1);

    // The step-up and the approval are one transaction: an approval that finds nothing pending
    // spends no step-up.
    app.step_up(&bob, &first).await;
    let now = app.clock_now();
    let audit = AuditEvent::new(
        now,
        Actor::Admin { id: bob.id },
        Action::AdminRequestApproved,
        Subject::Admin(bob.id),
    );
    let first_id = AdminRequestId(first.parse().unwrap());
    let hash = secret_hash(&bob.cookie);
    let outcome = app
        .store
        .approve_admin_request(
            first_id,
            bob.id,
            &hash,
            now - Duration::minutes(2),
            &format!("approve_request:{first}"),
            now,
            audit,
        )
        .await;
    assert_eq!(outcome.unwrap(), Approval::NotPending);
    let kept = app
        .store
        .consume_admin_step_up(&hash, now - Duration::minutes(2), &format!("approve_request:{first}"))
        .await;
    assert!(kept.unwrap(), "the step-up is still there");
}

/// An approval applies the change once: a second approval finds nothing pending, a read does
/// not apply it again; an approval whose change was never made (a crash in between) is made on
/// the next read. A refused approval does not spend the step-up.
async fn approved_request_is_applied_once(engine: Engine) {
    let app = app(engine).await;
    let (alice, bob, carol) = three_admins(&app).await;
    let dan = create_admin(&app, "dan", Role::Helpdesk).await;
    let reply = app
        .admin_post(&alice, &format!("/admin/api/admins/{}/role", dan.id), json!({ "role": "admin" }))
        .await;
    assert_eq!(reply.status, StatusCode::ACCEPTED, "{}", reply.body);
    let id = reply.body["id"].as_str().unwrap().to_owned();
    app.step_up(&bob, &id).await;
    let approved = approve(&app, &bob, &id).await;
    assert_eq!(approved.status, StatusCode::OK, "{}", approved.body);
    assert_eq!(approved.body["request"]["state"], "applied");
    assert_eq!(approved.body["request"]["decided_by"], bob.id.to_string());
    assert_eq!(approved.body["request"]["result"]["role"], "admin");
    assert_eq!(app.store.admin(dan.id).await.unwrap().unwrap().role, Role::Admin);

    app.step_up(&carol, &id).await;
    assert_error(&approve(&app, &carol, &id).await, StatusCode::CONFLICT, "request_not_pending");
    assert_eq!(state_of(&app, &carol, &id).await, "applied");
    assert_eq!(count_of(&app, "admin.request_applied").await, 1);
    assert_eq!(count_of(&app, "admin.role_changed").await, 1);

    // Carol's step-up survived the refused approval. An approval left unapplied (a crash in
    // between) is not made by a read — any role reads, an auditor too — but by the next
    // approval attempt of another admin.
    let auditor = app.signed_in_admin("auditor", Role::Auditor).await;
    let invited_before = count_of(&app, "admin.invited").await;
    let crashed = invite(&app, &alice, "erin").await;
    let stuck = format!(
        "UPDATE admin_requests SET state = 'approved', decided_by = '{}', decided_at = requested_at WHERE id = '{crashed}'",
        bob.id
    );
    exec_sql(&app.db, &stuck).await.unwrap();
    assert_eq!(state_of(&app, &auditor, &crashed).await, "approved", "a read changes nothing");
    assert_eq!(count_of(&app, "admin.invited").await, invited_before);
    assert_error(&approve(&app, &alice, &crashed).await, StatusCode::FORBIDDEN, "self_approval_forbidden");
    assert_eq!(approve(&app, &carol, &crashed).await.status, StatusCode::OK);
    assert_eq!(state_of(&app, &carol, &crashed).await, "applied");
    assert_eq!(state_of(&app, &carol, &crashed).await, "applied");
    assert_eq!(count_of(&app, "admin.request_applied").await, 2);
    assert_eq!(count_of(&app, "admin.invited").await, invited_before + 1);
    assert!(app.store.admins().await.unwrap().iter().any(|a| a.name == "erin"));
    let hash = secret_hash(&carol.cookie);
    let fresh_since = app.clock_now() - Duration::minutes(2);
    let kept = app.store.consume_admin_step_up(&hash, fresh_since, &format!("approve_request:{id}")).await;
    assert!(kept.unwrap(), "the step-up was not spent");
}

/// Attack: a help-desk agent (or a read-only auditor) tries what only an admin may do.
async fn helpdesk_attempting_an_admin_action_is_403(engine: Engine) {
    let app = app(engine).await;
    let (alice, bob, _carol) = three_admins(&app).await;
    let helpdesk = app.signed_in_admin("hd", Role::Helpdesk).await;
    let auditor = app.signed_in_admin("au", Role::Auditor).await;
    let id = invite(&app, &alice, "dave").await;
    app.step_up(&helpdesk, &id).await;
    app.step_up(&auditor, &id).await;
    let refused: Vec<(&AdminClient, String, Value)> = vec![
        (&helpdesk, format!("/admin/api/requests/{id}/approve"), json!({})),
        (&helpdesk, format!("/admin/api/requests/{id}/reject"), json!({})),
        (&helpdesk, format!("/admin/api/admins/{}/removal/cancel", bob.id), json!({})),
        (&auditor, "/admin/api/admins/invite".to_owned(), json!({ "name": "x", "role": "admin" })),
        (&auditor, format!("/admin/api/admins/{}/role", bob.id), json!({ "role": "auditor" })),
        (&auditor, format!("/admin/api/admins/{}/remove", bob.id), json!({})),
        (
            &auditor,
            "/admin/api/requests/submit".to_owned(),
            json!({ "kind": "remove_admin", "payload": { "admin_id": bob.id } }),
        ),
        (&auditor, format!("/admin/api/requests/{id}/approve"), json!({})),
        (&auditor, format!("/admin/api/requests/{id}/reject"), json!({})),
        (&auditor, format!("/admin/api/requests/{id}/cancel"), json!({})),
        (&auditor, format!("/admin/api/admins/{}/removal/cancel", bob.id), json!({})),
    ];
    for (who, path, body) in refused {
        let reply = app.admin_post(who, &path, body).await;
        assert_eq!(reply.body["error"], "admin_role_required", "{path}: {}", reply.body);
        assert_eq!(reply.status, StatusCode::FORBIDDEN, "{path}");
    }
    assert_eq!(state_of(&app, &auditor, &id).await, "pending");
    // Help desk may ask (never decide), and an auditor may read.
    let asked = app
        .admin_post(&helpdesk, "/admin/api/admins/invite", json!({ "name": "gina", "role": "auditor" }))
        .await;
    assert_eq!(asked.status, StatusCode::ACCEPTED, "{}", asked.body);
    assert_eq!(
        app.admin_get(&auditor, "/admin/api/requests").await.body["requests"].as_array().unwrap().len(),
        2
    );
}

/// Attack: removing or demoting admins until one is left (who could then add a confederate
/// and approve anything). Refused at submission, and again when the change is made.
async fn removing_or_demoting_below_two_admins_is_409(engine: Engine) {
    let app = app(engine).await;
    let alice = app.signed_in_admin("alice", Role::Admin).await;
    let bob = app.signed_in_admin("bob", Role::Admin).await;
    let remove = app.admin_post(&alice, &format!("/admin/api/admins/{}/remove", bob.id), json!({})).await;
    assert_error(&remove, StatusCode::CONFLICT, "last_admins");
    let demote = app
        .admin_post(&alice, &format!("/admin/api/admins/{}/role", bob.id), json!({ "role": "helpdesk" }))
        .await;
    assert_error(&demote, StatusCode::CONFLICT, "last_admins");

    let carol = app.signed_in_admin("carol", Role::Admin).await;
    let removal = app.admin_post(&alice, &format!("/admin/api/admins/{}/remove", bob.id), json!({})).await;
    assert_eq!(removal.status, StatusCode::ACCEPTED, "{}", removal.body);
    let demotion = app
        .admin_post(&alice, &format!("/admin/api/admins/{}/role", carol.id), json!({ "role": "auditor" }))
        .await;
    assert_eq!(demotion.status, StatusCode::ACCEPTED, "{}", demotion.body);
    app.step_up(&carol, removal.body["id"].as_str().unwrap()).await;
    assert_eq!(approve(&app, &carol, removal.body["id"].as_str().unwrap()).await.status, StatusCode::OK);
    let demotion_id = demotion.body["id"].as_str().unwrap();
    app.step_up(&carol, demotion_id).await;
    assert_error(&approve(&app, &carol, demotion_id).await, StatusCode::CONFLICT, "last_admins");
    let after = app.admin_get(&carol, &format!("/admin/api/requests/{demotion_id}")).await;
    assert_eq!(after.body["state"], "pending", "the change was not made");
    assert!(after.body["result"]["refused"].as_str().unwrap().contains("at least 2"));
    assert_eq!(app.store.admin(carol.id).await.unwrap().unwrap().role, Role::Admin);
    assert_eq!(app.store.active_admin_count().await.unwrap(), 2);
    assert_eq!(count_of(&app, "admin.request_apply_refused").await, 1);
}

/// Attack: two removals approved at the same moment each see three admins and leave one. The
/// roster lock serialises them: exactly one is made, the other is refused.
async fn concurrent_removals_never_leave_fewer_than_two(engine: Engine) {
    let app = app(engine).await;
    let (alice, bob, carol) = three_admins(&app).await;
    let alice_again = app.sign_in_admin(&app.store.admin(alice.id).await.unwrap().unwrap()).await;
    let remove_bob = app.admin_post(&carol, &format!("/admin/api/admins/{}/remove", bob.id), json!({})).await;
    let remove_carol =
        app.admin_post(&bob, &format!("/admin/api/admins/{}/remove", carol.id), json!({})).await;
    let (one, two) = (remove_bob.body["id"].as_str().unwrap(), remove_carol.body["id"].as_str().unwrap());
    app.step_up(&alice, one).await;
    app.step_up(&alice_again, two).await;
    let (first, second) = tokio::join!(approve(&app, &alice, one), approve(&app, &alice_again, two));
    let mut statuses = [first.status, second.status];
    statuses.sort();
    assert_eq!(statuses, [StatusCode::OK, StatusCode::CONFLICT], "{} / {}", first.body, second.body);
    // The loser is refused either by the roster (`last_admins`), or because the winner's
    // removal made its approver or requester inactive (`request_not_pending`): both hold the line.
    let refused = if first.status == StatusCode::CONFLICT { &first } else { &second };
    let code = refused.body["error"].as_str().unwrap();
    assert!(["last_admins", "request_not_pending"].contains(&code), "{}", refused.body);
    assert_eq!(app.store.active_admin_count().await.unwrap(), 2);
    assert_eq!(count_of(&app, "admin.removal_scheduled").await, 1);

    // Closer still: three removals at once, straight at the store, of four active admins.
    let mut targets = vec![alice.id];
    for name in ["dave", "erin"] {
        targets.push(create_admin(&app, name, Role::Admin).await.id);
    }
    let remove = |id| {
        let now = app.clock_now();
        let audit = AuditEvent::new(
            now,
            Actor::Admin { id: alice.id },
            Action::AdminRemovalScheduled,
            Subject::Admin(id),
        );
        app.store.schedule_admin_removal(id, now + Duration::hours(24), now, audit, "{}")
    };
    let outcomes = tokio::join!(remove(targets[0]), remove(targets[1]), remove(targets[2]));
    let outcomes = [outcomes.0.unwrap(), outcomes.1.unwrap(), outcomes.2.unwrap()];
    let made = outcomes.iter().filter(|o| **o == RosterChange::Changed).count();
    let refused = outcomes.iter().filter(|o| matches!(o, RosterChange::LastAdmins(_))).count();
    assert_eq!((made, refused), (2, 1), "{outcomes:?}");
    assert_eq!(app.store.active_admin_count().await.unwrap(), 2);
}

/// Removal is soft and delayed: the admin is signed out at once, an alert goes out, any admin
/// can take it back for 24 hours (with a step-up, and alerted too); after that the admin is
/// removed.
async fn admin_removal_is_soft_delayed_alerted_and_cancellable(engine: Engine) {
    let app = app(engine).await;
    let (alice, bob, carol) = three_admins(&app).await;
    let request = app.admin_post(&alice, &format!("/admin/api/admins/{}/remove", carol.id), json!({})).await;
    app.step_up(&bob, request.body["id"].as_str().unwrap()).await;
    let approved = approve(&app, &bob, request.body["id"].as_str().unwrap()).await;
    assert_eq!(approved.status, StatusCode::OK, "{}", approved.body);
    assert_error(
        &app.admin_get(&carol, "/admin/api/session").await,
        StatusCode::UNAUTHORIZED,
        "admin_session_expired",
    );
    let admins = app.admin_get(&alice, "/admin/api/admins").await.body;
    let listed = admins.as_array().unwrap().iter().find(|a| a["name"] == "carol").unwrap().clone();
    assert_eq!(listed["status"], "removal_pending");
    assert!(listed["removal_due_at"].is_string());
    assert!(alert_kinds(&app).await.contains(&"admin_removal_scheduled".to_owned()));
    assert_eq!(app.store.active_admin_count().await.unwrap(), 2);

    let cancel_path = format!("/admin/api/admins/{}/removal/cancel", carol.id);
    let unproven = app.admin_post(&alice, &cancel_path, json!({})).await;
    assert_error(&unproven, StatusCode::FORBIDDEN, "step_up_required");
    assert_eq!(count_of(&app, "admin.removal_cancelled").await, 0, "a stolen session alone cannot cancel");
    assert!(!alert_kinds(&app).await.contains(&"admin_removal_cancelled".to_owned()));
    app.step_up_for(&alice, &format!("cancel_removal:{}", carol.id)).await;
    let cancel = app.admin_post(&alice, &cancel_path, json!({})).await;
    assert_eq!(
        (cancel.status, &cancel.body["status"]),
        (StatusCode::OK, &json!("active")),
        "{}",
        cancel.body
    );
    assert_eq!(count_of(&app, "admin.removal_cancelled").await, 1);
    // One admin undid two admins' decision: everyone watching the alerts hears of it.
    assert!(alert_kinds(&app).await.contains(&"admin_removal_cancelled".to_owned()));
    let carol = app.sign_in_admin(&app.store.admin(carol.id).await.unwrap().unwrap()).await;
    assert_eq!(app.admin_get(&carol, "/admin/api/session").await.status, StatusCode::OK);

    let again = app.admin_post(&bob, &format!("/admin/api/admins/{}/remove", carol.id), json!({})).await;
    app.step_up(&alice, again.body["id"].as_str().unwrap()).await;
    assert_eq!(approve(&app, &alice, again.body["id"].as_str().unwrap()).await.status, StatusCode::OK);
    app.advance(Duration::hours(24)).await;
    let alice = fresh(&app, &alice).await;
    app.step_up_for(&alice, &format!("cancel_removal:{}", carol.id)).await;
    let late =
        app.admin_post(&alice, &format!("/admin/api/admins/{}/removal/cancel", carol.id), json!({})).await;
    assert_error(&late, StatusCode::CONFLICT, "removal_not_pending");
    let admins = app.admin_get(&alice, "/admin/api/admins").await.body;
    assert!(admins.as_array().unwrap().iter().any(|a| a["name"] == "carol" && a["status"] == "removed"));
    let removed = app.store.admin(carol.id).await.unwrap().unwrap();
    assert!(app.state.admin.sessions.start(&removed, "test").await.is_err(), "no new session");
}

/// Nobody decided within 24 hours: the request is expired and can no longer be approved.
async fn a_request_expires_after_24_hours(engine: Engine) {
    let app = app(engine).await;
    let (alice, bob, _carol) = three_admins(&app).await;
    let id = invite(&app, &alice, "dave").await;
    app.advance(Duration::hours(24)).await;
    let (alice, bob) = (fresh(&app, &alice).await, fresh(&app, &bob).await);
    app.step_up(&bob, &id).await;
    assert_error(&approve(&app, &bob, &id).await, StatusCode::GONE, "admin_request_expired");
    assert_eq!(state_of(&app, &bob, &id).await, "expired");
    let cancel = app.admin_post(&alice, &format!("/admin/api/requests/{id}/cancel"), json!({})).await;
    assert_error(&cancel, StatusCode::GONE, "admin_request_expired");
    assert_eq!(count_of(&app, "admin.request_expired").await, 1);
    let expired = app.admin_get(&bob, "/admin/api/requests?state=expired").await;
    assert_eq!(expired.body["requests"][0]["id"], id.as_str());
    assert!(app.store.admins().await.unwrap().iter().all(|a| a.name != "dave"));
}

/// With one admin there is nobody to approve: asking is refused until a second admin exists.
async fn submitting_with_one_admin_is_409_second_admin_required(engine: Engine) {
    let app = app(engine).await;
    let alice = app.signed_in_admin("alice", Role::Admin).await;
    let helpdesk = app.signed_in_admin("hd", Role::Helpdesk).await;
    let reply =
        app.admin_post(&alice, "/admin/api/admins/invite", json!({ "name": "bob", "role": "admin" })).await;
    assert_error(&reply, StatusCode::CONFLICT, "second_admin_required");
    let promote = app
        .admin_post(&alice, &format!("/admin/api/admins/{}/role", helpdesk.id), json!({ "role": "admin" }))
        .await;
    assert_error(&promote, StatusCode::CONFLICT, "second_admin_required");
    assert_eq!(count_of(&app, "admin.request_submitted").await, 0);
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A new admin's invitation is shown once, to the approver only; the database keeps its
/// SHA-256, and neither the request nor the audit trail carries it.
async fn invitation_token_is_shown_once_and_stored_hashed(engine: Engine) {
    let app = app(engine).await;
    let alice = app.signed_in_admin("alice", Role::Admin).await;
    let bob = app.signed_in_admin("bob", Role::Admin).await;
    let id = invite(&app, &alice, "dave").await;
    app.step_up(&bob, &id).await;
    let approved = approve(&app, &bob, &id).await;
    assert_eq!(approved.status, StatusCode::OK, "{}", approved.body);
    let token = approved.body["invitation"]["token"].as_str().unwrap().to_owned();
    assert_eq!(token.len(), 43, "256 random bits");
    let dave = approved.body["invitation"]["admin_id"].as_str().unwrap();
    let admins = app.admin_get(&alice, "/admin/api/admins").await.body;
    assert!(admins.as_array().unwrap().iter().any(|a| a["id"] == dave && a["status"] == "invited"));

    let read = app.admin_get(&bob, &format!("/admin/api/requests/{id}")).await;
    assert!(!read.body.to_string().contains(&token), "not shown again");
    assert!(!app.admin_get(&alice, "/admin/api/requests").await.body.to_string().contains(&token));
    let audit = audit_actions(&app).await;
    assert!(audit.iter().any(|(a, d)| a == "admin.invited"
        && d["name"] == "dave"
        && d["request"]["approved_by"] == bob.id.to_string()));
    assert!(audit.iter().all(|(_, details)| !details.to_string().contains(&token)), "never audited");
    let hash_sql = match engine {
        Engine::Sqlite => "SELECT lower(hex(token_hash)) FROM admin_invitations",
        Engine::Postgres => "SELECT encode(token_hash, 'hex') FROM admin_invitations",
    };
    assert_eq!(query_strings(&app.db, hash_sql).await, vec![hex(&secret_hash(&token))]);
    let expiry = match engine {
        Engine::Sqlite => "SELECT CAST(expires_at - created_at AS TEXT) FROM admin_invitations",
        Engine::Postgres => {
            "SELECT CAST(EXTRACT(EPOCH FROM expires_at - created_at) AS BIGINT)::text FROM admin_invitations"
        }
    };
    let ttl = query_strings(&app.db, expiry).await;
    assert!(ttl == ["3600000000"] || ttl == ["3600"], "one hour: {ttl:?}");
}

/// A user who reported a prompt as "not me" stays frozen until a second admin approves the
/// unfreeze another admin asked for.
async fn unfreeze_quarantined_applies_only_after_approval(engine: Engine) {
    let app = app(engine).await;
    let key = app
        .key("idp", "users:read users:write challenges:write challenges:read fatigue:read fatigue:write")
        .await;
    let mut phone = enrolled_device(&app, &key, "victim", PushRegistration::None).await;
    let prompt = || app.post_json("/v1/challenges", &key, json!({ "username": "victim" }));
    assert_eq!(prompt().await.status, StatusCode::CREATED);
    let pending: PendingChallenges =
        serde_json::from_value(signed_get(&app, &phone, "/device/v1/challenges").await.body).unwrap();
    let details = phone.verify_details(&pending.challenges[0]).clone();
    let report = phone.answer(&details, Decision::Report, "");
    let path = format!("/device/v1/challenges/{}/response", details.challenge_id.as_str());
    let reported = app.device_post(&path, &serde_json::to_vec(&report).unwrap()).await;
    assert_eq!(reported.body["outcome"], "reported", "{}", reported.body);
    assert_error(&prompt().await, StatusCode::LOCKED, "push_frozen");

    let alice = app.signed_in_admin("alice", Role::Admin).await;
    let bob = app.signed_in_admin("bob", Role::Admin).await;
    let body = json!({ "kind": "unfreeze_quarantined", "payload": { "username": "victim" } });
    let submitted = app.admin_post(&alice, "/admin/api/requests/submit", body).await;
    assert_eq!(submitted.status, StatusCode::ACCEPTED, "{}", submitted.body);
    assert_eq!(submitted.body["kind"], "unfreeze_quarantined");
    assert_error(&prompt().await, StatusCode::LOCKED, "push_frozen");
    let id = submitted.body["id"].as_str().unwrap();
    app.step_up(&alice, id).await;
    assert_error(&approve(&app, &alice, id).await, StatusCode::FORBIDDEN, "self_approval_forbidden");
    assert_error(&prompt().await, StatusCode::LOCKED, "push_frozen");

    app.step_up(&bob, id).await;
    let approved = approve(&app, &bob, id).await;
    assert_eq!(approved.status, StatusCode::OK, "{}", approved.body);
    assert_eq!(approved.body["request"]["result"]["push"], "available");
    let unfrozen = audit_actions(&app).await.into_iter().find(|(a, _)| a == "fatigue.unfrozen").unwrap();
    assert_eq!(unfrozen.1["was"]["reason"], "reported_not_me");
    assert_eq!(prompt().await.status, StatusCode::CREATED);

    let unknown = json!({ "kind": "unfreeze_quarantined", "payload": { "username": "nobody" } });
    assert_error(
        &app.admin_post(&alice, "/admin/api/requests/submit", unknown).await,
        StatusCode::NOT_FOUND,
        "user_not_found",
    );
    let policy = json!({ "kind": "fatigue_policy", "payload": {} });
    let partial = app.admin_post(&alice, "/admin/api/requests/submit", policy).await;
    assert_error(&partial, StatusCode::UNPROCESSABLE_ENTITY, "invalid_request");
    let malformed = json!({ "kind": "remove_admin", "payload": { "who": "bob" } });
    assert_error(
        &app.admin_post(&alice, "/admin/api/requests/submit", malformed).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_request",
    );
}

/// Help desk talked into resetting a privileged user's factors (Lapsus$): the reset waits for
/// a second admin; approved, every factor is gone at once.
async fn reset_privileged_factors_applies_only_after_approval(engine: Engine) {
    let app = app(engine).await;
    let key = app.key("idp", "users:read users:write challenges:write challenges:read").await;
    let _phone = enrolled_device(&app, &key, "cfo", PushRegistration::None).await;
    let cfo = app.store.user_by_username("cfo").await.unwrap().unwrap();
    let alice = app.signed_in_admin("alice", Role::Admin).await;
    let bob = app.signed_in_admin("bob", Role::Admin).await;
    let helpdesk = app.signed_in_admin("hd", Role::Helpdesk).await;
    let body = json!({ "kind": "reset_privileged_factors", "payload": { "username": "cfo" } });
    let submitted = app.admin_post(&helpdesk, "/admin/api/requests/submit", body).await;
    assert_eq!(submitted.status, StatusCode::ACCEPTED, "{}", submitted.body);
    assert!(app.store.has_any_factor(cfo.id).await.unwrap(), "nothing happens before the approval");
    let id = submitted.body["id"].as_str().unwrap();
    app.step_up(&alice, id).await;
    let approved = approve(&app, &alice, id).await;
    assert_eq!(approved.status, StatusCode::OK, "{}", approved.body);
    assert_eq!(approved.body["request"]["result"]["devices_revoked"], 1);
    assert!(!app.store.has_any_factor(cfo.id).await.unwrap());
    let reset = audit_actions(&app).await.into_iter().find(|(a, _)| a == "user.factors_reset").unwrap();
    assert_eq!((reset.1["devices_revoked"].as_u64(), reset.1["username"].as_str()), (Some(1), Some("cfo")));
    let prompt = app.post_json("/v1/challenges", &key, json!({ "username": "cfo" })).await;
    assert_ne!(prompt.status, StatusCode::CREATED, "no device left to prompt");
    app.step_up(&bob, id).await;
    assert_error(&approve(&app, &bob, id).await, StatusCode::CONFLICT, "request_not_pending");
}

/// Attack: a rogue admin files a change (an invitation for an accomplice), is caught and
/// removed, and counts on someone approving the request later from the list. A removed
/// admin's pending requests can no longer be approved.
async fn a_removed_admins_pending_request_cannot_be_approved(engine: Engine) {
    let app = app(engine).await;
    let (alice, bob, mallory) = three_admins(&app).await;
    let dave = app.signed_in_admin("dave", Role::Admin).await;
    let planted = invite(&app, &mallory, "accomplice").await;
    let removal =
        app.admin_post(&alice, &format!("/admin/api/admins/{}/remove", mallory.id), json!({})).await;
    let removal = removal.body["id"].as_str().unwrap().to_owned();
    app.step_up(&bob, &removal).await;
    assert_eq!(approve(&app, &bob, &removal).await.status, StatusCode::OK);
    app.step_up(&dave, &planted).await;
    assert_error(&approve(&app, &dave, &planted).await, StatusCode::CONFLICT, "request_not_pending");
    assert!(!app.store.admins().await.unwrap().iter().any(|a| a.name == "accomplice"), "nobody invited");
}

/// The approval is recorded only for an active admin, even by a caller that skipped the
/// role check (an approver demoted or removed between the check and the write).
async fn approval_by_an_admin_demoted_meanwhile_is_refused(engine: Engine) {
    let app = app(engine).await;
    let (alice, _bob, _carol) = three_admins(&app).await;
    let id = invite(&app, &alice, "dave").await;
    let agent = app.signed_in_admin("agent", Role::Helpdesk).await;
    app.step_up(&agent, &id).await;
    let now = app.clock_now();
    let audit = AuditEvent::new(
        now,
        Actor::Admin { id: agent.id },
        Action::AdminRequestApproved,
        Subject::Admin(agent.id),
    );
    let outcome = app
        .store
        .approve_admin_request(
            AdminRequestId(id.parse().unwrap()),
            agent.id,
            &secret_hash(&agent.cookie),
            now - Duration::minutes(2),
            &format!("approve_request:{id}"),
            now,
            audit,
        )
        .await;
    assert_eq!(outcome.unwrap(), Approval::NotPending);
    assert_eq!(state_of(&app, &alice, &id).await, "pending");
}

on_both_engines!(
    a_stolen_session_cannot_veto_requests_without_a_fresh_passkey,
    a_removed_admins_pending_request_cannot_be_approved,
    approval_by_an_admin_demoted_meanwhile_is_refused,
    reset_privileged_factors_applies_only_after_approval,
    self_approval_is_403,
    approval_without_fresh_passkey_is_403,
    approved_request_is_applied_once,
    helpdesk_attempting_an_admin_action_is_403,
    removing_or_demoting_below_two_admins_is_409,
    concurrent_removals_never_leave_fewer_than_two,
    admin_removal_is_soft_delayed_alerted_and_cancellable,
    a_request_expires_after_24_hours,
    submitting_with_one_admin_is_409_second_admin_required,
    invitation_token_is_shown_once_and_stored_hashed,
    unfreeze_quarantined_applies_only_after_approval,
);
