//! Changing the fatigue policy is a four-eyes change (issue #14): one admin asks, a second
//! approves with a fresh passkey assertion, and only then do prompts follow the new policy, on
//! every instance.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[macro_use]
mod common;

use axum::http::StatusCode;
use common::admin::AdminClient;
use common::{TestApp, assert_error, audit_actions, enrolled_device};
use countersign::admin::model::Role;
use countersign::app::HttpLimits;
use countersign_e2e::{Engine, exec_sql};
use countersign_mobile_protocol::PushRegistration;
use serde_json::{Value, json};

async fn app(engine: Engine) -> TestApp {
    TestApp::build(engine, HttpLimits::default()).await
}

/// The policy in force with `push_budget` changed, as a `fatigue_policy` request's payload.
async fn policy_with_budget(app: &TestApp, admin: &AdminClient, budget: u32) -> Value {
    let shown = app.admin_get(admin, "/admin/api/policy").await;
    assert_eq!(shown.status, StatusCode::OK, "{}", shown.body);
    let mut policy = shown.body["policy"].clone();
    policy["push_budget"] = json!(budget);
    policy
}

async fn submit(app: &TestApp, by: &AdminClient, payload: Value) -> common::Reply {
    app.admin_post(by, "/admin/api/requests/submit", json!({ "kind": "fatigue_policy", "payload": payload }))
        .await
}

/// A value outside its safe bounds (a budget of 0 would refuse every prompt; 50 would let a
/// bombing through) is refused at submit, naming the bound; an unknown field too.
async fn policy_change_out_of_bounds_is_422(engine: Engine) {
    let app = app(engine).await;
    let alice = app.signed_in_admin("alice", Role::Admin).await;
    let _bob = app.signed_in_admin("bob", Role::Admin).await;
    for budget in [0, 50] {
        let payload = policy_with_budget(&app, &alice, budget).await;
        let reply = submit(&app, &alice, payload).await;
        assert_error(&reply, StatusCode::UNPROCESSABLE_ENTITY, "invalid_request");
        assert!(reply.body["message"].as_str().unwrap().contains("fatigue.push_budget"), "{}", reply.body);
    }
    let mut unknown = policy_with_budget(&app, &alice, 3).await;
    unknown["push_budget_for_vips"] = json!(100);
    assert_error(&submit(&app, &alice, unknown).await, StatusCode::UNPROCESSABLE_ENTITY, "invalid_request");
    let shown = app.admin_get(&alice, "/admin/api/policy").await;
    assert_eq!(shown.body["policy"]["push_budget"], 5, "unchanged");
    assert_eq!(shown.body["origin"], json!({ "source": "config" }));
}

/// A lower push budget asked for by one admin changes nothing until a second admin approves it
/// with a fresh passkey assertion; then the third prompt in the window is refused.
async fn a_policy_change_applies_only_after_a_second_admin(engine: Engine) {
    let app = app(engine).await;
    let key = app.key("idp", "users:read users:write challenges:write challenges:read").await;
    let _phone = enrolled_device(&app, &key, "victim", PushRegistration::None).await;
    let prompt = || app.post_json("/v1/challenges", &key, json!({ "username": "victim" }));
    let alice = app.signed_in_admin("alice", Role::Admin).await;
    let bob = app.signed_in_admin("bob", Role::Admin).await;

    let payload = policy_with_budget(&app, &alice, 2).await;
    let submitted = submit(&app, &alice, payload).await;
    assert_eq!(submitted.status, StatusCode::ACCEPTED, "{}", submitted.body);
    let id = submitted.body["id"].as_str().unwrap().to_owned();
    for _ in 0..3 {
        assert_eq!(prompt().await.status, StatusCode::CREATED, "the old budget of 5 still applies");
    }
    app.step_up(&alice, &id).await;
    let approve = format!("/admin/api/requests/{id}/approve");
    let own = app.admin_post(&alice, &approve, json!({})).await;
    assert_error(&own, StatusCode::FORBIDDEN, "self_approval_forbidden");
    assert_eq!(app.admin_get(&bob, "/admin/api/policy").await.body["policy"]["push_budget"], 5);

    app.step_up(&bob, &id).await;
    let approved = app.admin_post(&bob, &approve, json!({})).await;
    assert_eq!(approved.status, StatusCode::OK, "{}", approved.body);
    let shown = app.admin_get(&bob, "/admin/api/policy").await;
    assert_eq!(shown.body["policy"]["push_budget"], 2);
    assert_eq!(shown.body["origin"], json!({ "source": "request", "request_id": id, "version": 1 }));
    assert_error(&prompt().await, StatusCode::TOO_MANY_REQUESTS, "push_rate_limited");

    let (_, details) =
        audit_actions(&app).await.into_iter().find(|(a, _)| a == "fatigue.policy_changed").unwrap();
    assert_eq!(
        (details["old"]["push_budget"].clone(), details["new"]["push_budget"].clone()),
        (json!(5), json!(2))
    );
    let alerts = app.store.alerts_after(0, 100).await.unwrap();
    assert!(alerts.iter().any(|a| a.kind == "fatigue_policy_changed"), "{alerts:?}");
}

/// Another instance on the same database follows an approved change at its next refresh
/// (every 5 s in production; triggered directly here), and a restarted one starts with it.
async fn policy_change_reaches_another_instance(engine: Engine) {
    let app = app(engine).await;
    let other = app.another_instance(time::Duration::ZERO).await;
    let alice = app.signed_in_admin("alice", Role::Admin).await;
    let bob = app.signed_in_admin("bob", Role::Admin).await;
    let payload = policy_with_budget(&app, &alice, 2).await;
    let id = submit(&app, &alice, payload).await.body["id"].as_str().unwrap().to_owned();
    app.step_up(&bob, &id).await;
    let approved = app.admin_post(&bob, &format!("/admin/api/requests/{id}/approve"), json!({})).await;
    assert_eq!(approved.status, StatusCode::OK, "{}", approved.body);

    let handle = other.state.fatigue.policy();
    assert_eq!(handle.current().push_budget, 5, "not refreshed yet");
    handle.refresh(other.store.as_ref()).await.unwrap();
    assert_eq!(handle.current().push_budget, 2);
    let restarted = app.another_instance(time::Duration::ZERO).await;
    assert_eq!(restarted.state.fatigue.policy().current().push_budget, 2, "the stored policy wins at start");
}

/// Attack: someone with write access to the database (not to the admin plane) raises the push
/// budget out of bounds, skipping four eyes. A stored policy is checked against the same bounds
/// on every read: the refresh refuses it and the policy in force stays.
async fn a_tampered_stored_policy_is_refused_and_the_one_in_force_stays(engine: Engine) {
    let app = app(engine).await;
    let other = app.another_instance(time::Duration::ZERO).await;
    let alice = app.signed_in_admin("alice", Role::Admin).await;
    let bob = app.signed_in_admin("bob", Role::Admin).await;
    let payload = policy_with_budget(&app, &alice, 2).await;
    let id = submit(&app, &alice, payload).await.body["id"].as_str().unwrap().to_owned();
    app.step_up(&bob, &id).await;
    let approved = app.admin_post(&bob, &format!("/admin/api/requests/{id}/approve"), json!({})).await;
    assert_eq!(approved.status, StatusCode::OK, "{}", approved.body);
    let handle = other.state.fatigue.policy();
    handle.refresh(other.store.as_ref()).await.unwrap();
    assert_eq!(handle.current().push_budget, 2);

    let tamper = "UPDATE fatigue_policy SET version = version + 1, \
                  settings = REPLACE(settings, '\"push_budget\":2', '\"push_budget\":1000')";
    exec_sql(&app.db, tamper).await.unwrap();
    assert!(handle.refresh(other.store.as_ref()).await.is_err(), "an out-of-bounds row is refused");
    assert_eq!(handle.current().push_budget, 2, "the policy in force stays");
}

on_both_engines!(
    a_tampered_stored_policy_is_refused_and_the_one_in_force_stays,
    policy_change_out_of_bounds_is_422,
    a_policy_change_applies_only_after_a_second_admin,
    policy_change_reaches_another_instance,
);
