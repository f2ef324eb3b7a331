//! Help desk on both engines: a caller is verified only by approving a number-matching push on
//! their enrolled phone with the number the agent reads out; only then, once, may the agent
//! issue an enrollment link. Each attack a named test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[macro_use]
mod common;
#[path = "common/soft_key.rs"]
mod soft_key;

use axum::http::StatusCode;
use common::admin::AdminClient;
use common::{TestApp, assert_error, audit_actions, enrolled_device, signed_get};
use countersign::admin::model::Role;
use countersign::app::HttpLimits;
use countersign::challenges::service::ChallengeSettings;
use countersign::fatigue::model::Policy;
use countersign_e2e::Engine;
use countersign_e2e::device::TestDevice;
use countersign_mobile_protocol::{Decision, PendingChallenges, PushRegistration};
use serde_json::{Value, json};

struct Desk {
    app: TestApp,
    agent: AdminClient,
    phone: TestDevice,
}

async fn desk_with(engine: Engine, settings: ChallengeSettings) -> Desk {
    let app = TestApp::build_with(engine, HttpLimits::default(), settings).await;
    let key = app.key("idp", "users:read users:write challenges:write").await;
    let phone = enrolled_device(&app, &key, "alice", PushRegistration::None).await;
    let agent = app.signed_in_admin("desk", Role::Helpdesk).await;
    Desk { app, agent, phone }
}

async fn desk(engine: Engine) -> Desk {
    desk_with(engine, ChallengeSettings::default()).await
}

/// Starts a verification of `username`; returns its id and the number the agent reads out.
async fn start(d: &Desk, agent: &AdminClient, username: &str) -> (String, String) {
    let reply = d
        .app
        .admin_post(agent, &format!("/admin/api/users/{username}/caller-verifications"), json!({}))
        .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
    (reply.body["id"].as_str().unwrap().to_owned(), reply.body["number"].as_str().unwrap().to_owned())
}

/// The caller's phone answers the pending verification push; returns what it showed as the
/// requester.
async fn answer(d: &mut Desk, decision: Decision, number: &str) -> String {
    let pending: PendingChallenges =
        serde_json::from_value(signed_get(&d.app, &d.phone, "/device/v1/challenges").await.body).unwrap();
    let details = d.phone.verify_details(&pending.challenges[0]).clone();
    let response = d.phone.answer(&details, decision, number);
    let path = format!("/device/v1/challenges/{}/response", details.challenge_id.as_str());
    let reply = d.app.device_post(&path, &serde_json::to_vec(&response).unwrap()).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    serde_json::to_value(&details).unwrap()["app_name"].as_str().unwrap_or_default().to_owned()
}

async fn state_of(d: &Desk, agent: &AdminClient, id: &str) -> common::Reply {
    d.app.admin_get(agent, &format!("/admin/api/caller-verifications/{id}")).await
}

async fn link(d: &Desk, agent: &AdminClient, username: &str, verification: &str) -> common::Reply {
    let body = json!({ "verification_id": verification, "name": "Replacement laptop" });
    d.app.admin_post(agent, &format!("/admin/api/users/{username}/passkey-links"), body).await
}

/// The whole call: push, number read out, approval, verified, one link.
async fn a_verified_caller_gets_one_enrollment_link(engine: Engine) {
    let mut d = desk(engine).await;
    let (id, number) = start(&d, &d.agent, "alice").await;
    assert_eq!(state_of(&d, &d.agent, &id).await.body["state"], "pending");
    let shown = answer(&mut d, Decision::Approve, &number).await;
    assert_eq!(shown, "Help desk call verification", "the phone says who is asking");
    assert_eq!(state_of(&d, &d.agent, &id).await.body["state"], "verified");
    let issued = link(&d, &d.agent, "alice", &id).await;
    assert_eq!(issued.status, StatusCode::CREATED, "{}", issued.body);
    assert!(issued.body["url"].as_str().unwrap().contains("/passkeys/enroll?code="));
    let again = link(&d, &d.agent, "alice", &id).await;
    assert_error(&again, StatusCode::FORBIDDEN, "caller_not_verified");
    let actions = audit_actions(&d.app).await;
    let started = actions.iter().find(|(a, _)| a == "helpdesk.caller_verification_started").unwrap();
    assert_eq!(started.1["username"], "alice");
    assert!(actions.iter().any(|(a, _)| a == "helpdesk.enrollment_link_issued"));
    // The link's own events (the approval redeemed, the registration begun) name the agent,
    // written in the link's transaction.
    let actor = vec![format!("admin:{}", d.agent.id)];
    assert_eq!(audit_actors(&d.app, "passkey.registration_started").await, actor);
    assert_eq!(audit_actors(&d.app, "challenge.redeemed").await, actor);
    let alerts = d.app.store.alerts_after(0, 100).await.unwrap();
    let announced: Vec<_> = alerts.iter().filter(|a| a.kind == "helpdesk_passkey_link_issued").collect();
    assert_eq!(announced.len(), 1, "every help-desk link is announced: {alerts:?}");
    assert!(announced[0].details.contains("alice") && !announced[0].details.contains("code="));
}

/// The number is the agent's to read out: it is in no audit event, and no other agent can see
/// or follow the verification.
async fn caller_verification_number_is_never_audited(engine: Engine) {
    let mut d = desk(engine).await;
    let (id, number) = start(&d, &d.agent, "alice").await;
    answer(&mut d, Decision::Approve, &number).await;
    for (action, details) in audit_actions(&d.app).await {
        let text = details.to_string();
        assert!(details.get("number").is_none(), "{action}: {text}");
        assert!(!text.contains(&format!("\"{number}\"")), "{action}: {text}");
    }
    let other = d.app.signed_in_admin("other-desk", Role::Helpdesk).await;
    assert_error(&state_of(&d, &other, &id).await, StatusCode::NOT_FOUND, "not_found");
}

/// Attack: the social engineer on the phone cannot approve the push (they do not hold the
/// phone), so every way to a link without a real verification is refused.
async fn helpdesk_cannot_set_a_factor_without_a_verified_caller(engine: Engine) {
    let mut d = desk(engine).await;
    let made_up = "00000000-0000-4000-8000-000000000000";
    assert_error(&link(&d, &d.agent, "alice", made_up).await, StatusCode::FORBIDDEN, "caller_not_verified");
    // Pending: nobody answered yet.
    let (pending, _) = start(&d, &d.agent, "alice").await;
    assert_error(&link(&d, &d.agent, "alice", &pending).await, StatusCode::FORBIDDEN, "caller_not_verified");
    // The real user denied it.
    answer(&mut d, Decision::Deny, "").await;
    assert_eq!(state_of(&d, &d.agent, &pending).await.body["state"], "denied");
    assert_error(&link(&d, &d.agent, "alice", &pending).await, StatusCode::FORBIDDEN, "caller_not_verified");
    // Verified, but by another agent, or used for another user.
    let (id, number) = start(&d, &d.agent, "alice").await;
    answer(&mut d, Decision::Approve, &number).await;
    let other = d.app.signed_in_admin("other-desk", Role::Helpdesk).await;
    assert_error(&link(&d, &other, "alice", &id).await, StatusCode::FORBIDDEN, "caller_not_verified");
    let key = d.app.key("idp2", "users:write").await;
    enrolled_device(&d.app, &key, "bob", PushRegistration::None).await;
    assert_error(&link(&d, &d.agent, "bob", &id).await, StatusCode::FORBIDDEN, "caller_not_verified");
    // Stale: approved more than the approval window (5 minutes) ago.
    d.app.advance(time::Duration::minutes(6)).await;
    assert_error(&link(&d, &d.agent, "alice", &id).await, StatusCode::FORBIDDEN, "caller_not_verified");
    assert!(!audit_actions(&d.app).await.iter().any(|(a, _)| a == "helpdesk.enrollment_link_issued"));
    // The same steps, fresh and by the right agent, do give a link.
    let (fresh, number) = start(&d, &d.agent, "alice").await;
    answer(&mut d, Decision::Approve, &number).await;
    assert_eq!(link(&d, &d.agent, "alice", &fresh).await.status, StatusCode::CREATED);
}

/// A wrong number on the phone means whoever holds it did not hear the agent: not verified.
async fn a_wrong_number_does_not_verify(engine: Engine) {
    let mut d = desk(engine).await;
    let (id, number) = start(&d, &d.agent, "alice").await;
    let wrong = format!(
        "{:0w$}",
        (number.parse::<u32>().unwrap() + 1) % 10u32.pow(number.len() as u32),
        w = number.len()
    );
    answer(&mut d, Decision::Approve, &wrong).await;
    assert_eq!(state_of(&d, &d.agent, &id).await.body["state"], "wrong_number");
    assert_error(&link(&d, &d.agent, "alice", &id).await, StatusCode::FORBIDDEN, "caller_not_verified");
}

/// Attack: a rogue agent push-bombs a user, or sprays many: the fatigue defence applies to the
/// help desk like to any app, and counts each agent as its own source.
async fn helpdesk_pushes_obey_budget_and_spray(engine: Engine) {
    let policy = Policy { spray_users: 2, ..Policy::default() };
    let d = desk_with(engine, ChallengeSettings { policy, ..ChallengeSettings::default() }).await;
    let key = d.app.key("idp2", "users:write").await;
    for name in ["bob", "carol"] {
        enrolled_device(&d.app, &key, name, PushRegistration::None).await;
    }
    start(&d, &d.agent, "alice").await;
    start(&d, &d.agent, "bob").await;
    let reply = d.app.admin_post(&d.agent, "/admin/api/users/carol/caller-verifications", json!({})).await;
    assert_error(&reply, StatusCode::TOO_MANY_REQUESTS, "source_rate_limited");
    // Another agent is another source.
    let other = d.app.signed_in_admin("other-desk", Role::Helpdesk).await;
    start(&d, &other, "carol").await;
    // The push budget holds per user whoever asks.
    let mut refused = None;
    for _ in 0..8 {
        let reply = d.app.admin_post(&other, "/admin/api/users/carol/caller-verifications", json!({})).await;
        if reply.status != StatusCode::CREATED {
            refused = Some(reply);
            break;
        }
    }
    assert_error(
        &refused.expect("the budget refused a push"),
        StatusCode::TOO_MANY_REQUESTS,
        "push_rate_limited",
    );
}

/// Roles: an auditor reads, never prompts a user.
async fn an_auditor_cannot_start_a_verification(engine: Engine) {
    let d = desk(engine).await;
    let auditor = d.app.signed_in_admin("auditor", Role::Auditor).await;
    let reply = d.app.admin_post(&auditor, "/admin/api/users/alice/caller-verifications", json!({})).await;
    assert_error(&reply, StatusCode::FORBIDDEN, "admin_role_required");
    let pending = signed_get(&d.app, &d.phone, "/device/v1/challenges").await;
    assert_eq!(pending.body["challenges"], Value::Array(vec![]), "nobody was prompted");
}

/// Attack: a rogue agent talks a privileged user into approving the verification push, then
/// takes the link for their own passkey. A privileged user's factors change only through a
/// request a second admin approves, however the name is spelled.
async fn helpdesk_link_for_a_privileged_user_needs_a_second_approver(engine: Engine) {
    let mut d = desk(engine).await;
    let key = d.app.key("idp2", "users:write").await;
    let created = d.app.post_json("/v1/users", &key, json!({ "username": "boss", "privileged": true })).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    // The operator let this privileged user use push (passkey policy `allowed`).
    countersign::users::service::set_passkey_required(
        d.app.store.as_ref(),
        d.app.state.clock.as_ref(),
        countersign::audit::Actor::Cli,
        "boss",
        Some(false),
    )
    .await
    .unwrap();
    d.phone = enrolled_device(&d.app, &key, "boss", PushRegistration::None).await;
    let (id, number) = start(&d, &d.agent, "boss").await;
    answer(&mut d, Decision::Approve, &number).await;
    assert_eq!(state_of(&d, &d.agent, &id).await.body["state"], "verified");
    for spelling in ["boss", "BOSS"] {
        assert_error(&link(&d, &d.agent, spelling, &id).await, StatusCode::FORBIDDEN, "privileged_user");
    }
}

/// A user reported a push as "not me": one agent cannot lift that. The unfreeze becomes a
/// request (202) and push stays refused until a second admin approves with a fresh passkey.
async fn quarantined_unfreeze_without_second_admin_is_202_pending_not_applied(engine: Engine) {
    let mut d = desk(engine).await;
    let (_, _) = start(&d, &d.agent, "alice").await;
    answer(&mut d, Decision::Report, "").await;
    let key = d.app.key("prompter", "challenges:write").await;
    let prompt = || d.app.post_json("/v1/challenges", &key, json!({ "username": "alice" }));
    assert_error(&prompt().await, StatusCode::LOCKED, "push_frozen");
    // Four-eyes needs two admins to exist.
    let alone = d.app.admin_post(&d.agent, "/admin/api/users/alice/unfreeze", json!({})).await;
    assert_error(&alone, StatusCode::CONFLICT, "second_admin_required");
    let first = d.app.signed_in_admin("first", Role::Admin).await;
    let _second = d.app.signed_in_admin("second", Role::Admin).await;
    let pending = d.app.admin_post(&d.agent, "/admin/api/users/alice/unfreeze", json!({})).await;
    assert_eq!(pending.status, StatusCode::ACCEPTED, "{}", pending.body);
    assert_eq!(
        (pending.body["kind"].as_str(), pending.body["state"].as_str()),
        (Some("unfreeze_quarantined"), Some("pending"))
    );
    assert_error(&prompt().await, StatusCode::LOCKED, "push_frozen");
    let approve = format!("/admin/api/requests/{}/approve", pending.body["id"].as_str().unwrap());
    assert_error(
        &d.app.admin_post(&first, &approve, json!({})).await,
        StatusCode::FORBIDDEN,
        "step_up_required",
    );
    d.app.step_up(&first, pending.body["id"].as_str().unwrap()).await;
    let approved = d.app.admin_post(&first, &approve, json!({})).await;
    assert_eq!(approved.status, StatusCode::OK, "{}", approved.body);
    assert_eq!(prompt().await.status, StatusCode::CREATED, "push is back");
}

/// A second wrong number ("prove a passkey") or a hard lock is one agent's to lift: 200.
async fn an_agent_lifts_an_ordinary_freeze_at_once(engine: Engine) {
    let mut d = desk(engine).await;
    for _ in 0..3 {
        start(&d, &d.agent, "alice").await;
        answer(&mut d, Decision::Deny, "").await;
    }
    let reply = d.app.admin_post(&d.agent, "/admin/api/users/alice/unfreeze", json!({})).await;
    assert_eq!((reply.status, &reply.body["push"]), (StatusCode::OK, &json!("available")), "{}", reply.body);
    let auditor = d.app.signed_in_admin("auditor", Role::Auditor).await;
    let reply = d.app.admin_post(&auditor, "/admin/api/users/alice/unfreeze", json!({})).await;
    assert_error(&reply, StatusCode::FORBIDDEN, "admin_role_required");
}

/// Who did `action`, each time, oldest first.
async fn audit_actors(app: &TestApp, action: &str) -> Vec<String> {
    countersign::audit::flush(app.store.as_ref()).await.unwrap();
    let head = app.store.audit_head().await.unwrap();
    let events = app.store.audit_events(0, head.seq, 100_000).await.unwrap();
    events.into_iter().filter(|e| e.action == action).map(|e| e.actor).collect()
}

/// Attack: a caller claims a lost phone to get the real one cut off. Revoking a factor needs a
/// fresh passkey of the agent (step-up, spent), touches only this user's factors, and is the
/// agent's alone to do (an auditor cannot); the revoked phone is refused from then on.
async fn an_agent_revokes_a_device_with_a_fresh_passkey_only(engine: Engine) {
    let d = desk(engine).await;
    let key = d.app.key("idp2", "users:write").await;
    let bob = enrolled_device(&d.app, &key, "bob", PushRegistration::None).await;
    let revoke = |user: &str, id: &str| format!("/admin/api/users/{user}/devices/{id}/revoke");
    let alice_phone = d.phone.device_id();
    let path = revoke("alice", alice_phone.as_str());
    assert_error(
        &d.app.admin_post(&d.agent, &path, json!({})).await,
        StatusCode::FORBIDDEN,
        "step_up_required",
    );
    assert_eq!(signed_get(&d.app, &d.phone, "/device/v1/challenges").await.status, StatusCode::OK);
    let step_up = |id: &str| format!("revoke_user_device:{id}");
    let auditor = d.app.signed_in_admin("auditor", Role::Auditor).await;
    d.app.step_up_for(&auditor, &step_up(alice_phone.as_str())).await;
    assert_error(
        &d.app.admin_post(&auditor, &path, json!({})).await,
        StatusCode::FORBIDDEN,
        "admin_role_required",
    );
    // Another user's device under alice's name: not found, and bob's phone still works.
    let foreign = revoke("alice", bob.device_id().as_str());
    d.app.step_up_for(&d.agent, &step_up(bob.device_id().as_str())).await;
    // A step-up taken for one device does not revoke another.
    assert_error(
        &d.app.admin_post(&d.agent, &path, json!({})).await,
        StatusCode::FORBIDDEN,
        "step_up_required",
    );
    assert_error(
        &d.app.admin_post(&d.agent, &foreign, json!({})).await,
        StatusCode::NOT_FOUND,
        "device_not_found",
    );
    assert_eq!(signed_get(&d.app, &bob, "/device/v1/challenges").await.status, StatusCode::OK);
    // The step-up above was spent by the refused attempt: one step-up, one action.
    assert_error(
        &d.app.admin_post(&d.agent, &foreign, json!({})).await,
        StatusCode::FORBIDDEN,
        "step_up_required",
    );
    d.app.step_up_for(&d.agent, &step_up(alice_phone.as_str())).await;
    let revoked = d.app.admin_post(&d.agent, &path, json!({})).await;
    assert_eq!(revoked.status, StatusCode::NO_CONTENT, "{}", revoked.body);
    assert_error(
        &signed_get(&d.app, &d.phone, "/device/v1/challenges").await,
        StatusCode::UNAUTHORIZED,
        "device_revoked",
    );
    let actions = audit_actions(&d.app).await;
    let event = actions.iter().find(|(a, _)| a == "device.revoked").unwrap();
    assert_eq!(event.1["username"], "alice");
    let actors = audit_actors(&d.app, "device.revoked").await;
    assert_eq!(actors, vec![format!("admin:{}", d.agent.id)], "the agent is the actor");
}

/// The same for a passkey: step-up first, this user's only, an auditor never.
async fn an_agent_revokes_a_passkey_with_a_fresh_passkey_only(engine: Engine) {
    let d = desk(engine).await;
    let key = d.app.key("portal", "users:read users:write").await;
    let mut passkeys = Vec::new();
    for username in ["carol", "dave"] {
        let created = d.app.post_json("/v1/users", &key, json!({ "username": username })).await;
        assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
        let begun =
            d.app.post_json(&format!("/v1/users/{username}/passkeys/registrations"), &key, json!({})).await;
        assert_eq!(begun.status, StatusCode::CREATED, "{}", begun.body);
        let credential = soft_key::SoftKey::new().create(&begun.body["public_key"]).await;
        let path =
            format!("/v1/users/{username}/passkeys/registrations/{}", begun.body["id"].as_str().unwrap());
        let stored = d.app.post_json(&path, &key, credential).await;
        assert_eq!(stored.status, StatusCode::CREATED, "{}", stored.body);
        passkeys.push(stored.body["id"].as_str().unwrap().to_owned());
    }
    let path = format!("/admin/api/users/carol/passkeys/{}/revoke", passkeys[0]);
    assert_error(
        &d.app.admin_post(&d.agent, &path, json!({})).await,
        StatusCode::FORBIDDEN,
        "step_up_required",
    );
    let step_up = |id: &str| format!("revoke_user_passkey:{id}");
    let auditor = d.app.signed_in_admin("auditor", Role::Auditor).await;
    d.app.step_up_for(&auditor, &step_up(&passkeys[0])).await;
    assert_error(
        &d.app.admin_post(&auditor, &path, json!({})).await,
        StatusCode::FORBIDDEN,
        "admin_role_required",
    );
    d.app.step_up_for(&d.agent, &step_up(&passkeys[1])).await;
    let foreign = format!("/admin/api/users/carol/passkeys/{}/revoke", passkeys[1]);
    assert_error(
        &d.app.admin_post(&d.agent, &foreign, json!({})).await,
        StatusCode::NOT_FOUND,
        "passkey_not_found",
    );
    // A device's step-up does not revoke a passkey with the same id.
    d.app.step_up_for(&d.agent, &format!("revoke_user_device:{}", passkeys[0])).await;
    assert_error(
        &d.app.admin_post(&d.agent, &path, json!({})).await,
        StatusCode::FORBIDDEN,
        "step_up_required",
    );
    d.app.step_up_for(&d.agent, &step_up(&passkeys[0])).await;
    let revoked = d.app.admin_post(&d.agent, &path, json!({})).await;
    assert_eq!(revoked.status, StatusCode::NO_CONTENT, "{}", revoked.body);
    let listed = d.app.get("/v1/users/carol/passkeys", Some(&key)).await;
    assert!(listed.body[0]["revoked_at"].is_string(), "{}", listed.body);
    let other = d.app.get("/v1/users/dave/passkeys", Some(&key)).await;
    assert_eq!(other.body[0]["revoked_at"], Value::Null, "dave's passkey is untouched");
    let actors = audit_actors(&d.app, "passkey.revoked").await;
    assert_eq!(actors, vec![format!("admin:{}", d.agent.id)], "the agent is the actor");
}

on_both_engines!(
    an_agent_revokes_a_device_with_a_fresh_passkey_only,
    an_agent_revokes_a_passkey_with_a_fresh_passkey_only,
    quarantined_unfreeze_without_second_admin_is_202_pending_not_applied,
    an_agent_lifts_an_ordinary_freeze_at_once,
    helpdesk_link_for_a_privileged_user_needs_a_second_approver,
    a_verified_caller_gets_one_enrollment_link,
    caller_verification_number_is_never_audited,
    helpdesk_cannot_set_a_factor_without_a_verified_caller,
    a_wrong_number_does_not_verify,
    helpdesk_pushes_obey_budget_and_spray,
    an_auditor_cannot_start_a_verification,
);
