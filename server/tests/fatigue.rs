//! Named attack tests for the fatigue defence, on SQLite and PostgreSQL. Each doc comment
//! states the attack.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[macro_use]
mod common;

use std::sync::Arc;

use axum::http::StatusCode;
use common::{TestApp, assert_error, audit_actions, audit_len, enrolled_device, signed_get};
use countersign::app::HttpLimits;
use countersign_e2e::Engine;
use countersign_e2e::device::TestDevice;
use countersign_mobile_protocol::{Decision, PendingChallenges, PushRegistration};
use serde_json::{Value, json};
use time::Duration;

struct Setup {
    app: Arc<TestApp>,
    key: String,
    phone: TestDevice,
}

async fn setup(engine: Engine) -> Setup {
    setup_with_push(engine, PushRegistration::None).await
}

async fn setup_with_push(engine: Engine, push: PushRegistration) -> Setup {
    let app = TestApp::build(engine, HttpLimits::default()).await;
    let key = app
        .key("idp", "users:read users:write challenges:write challenges:read fatigue:read fatigue:write")
        .await;
    let phone = enrolled_device(&app, &key, "alice", push).await;
    Setup { app: Arc::new(app), key, phone }
}

async fn prompt(s: &Setup) -> common::Reply {
    s.app
        .post_json(
            "/v1/challenges",
            &s.key,
            json!({ "username": "alice", "context": { "ip": "198.51.100.66" } }),
        )
        .await
}

/// Prompts and answers one challenge as the phone; returns the outcome word.
async fn prompt_and_answer(s: &mut Setup, decision: Decision, number: Option<&str>) -> String {
    let created = prompt(s).await;
    assert_eq!(created.status, StatusCode::CREATED, "{:?}", created.body);
    let pending: PendingChallenges =
        serde_json::from_value(signed_get(&s.app, &s.phone, "/device/v1/challenges").await.body).unwrap();
    let details = s.phone.verify_details(&pending.challenges[0]).clone();
    let typed = number.map_or_else(|| created.body["number"].as_str().unwrap().to_owned(), str::to_owned);
    let response =
        s.phone.answer(&details, decision, if decision == Decision::Approve { &typed } else { "" });
    let path = format!("/device/v1/challenges/{}/response", details.challenge_id.as_str());
    s.app.device_post(&path, &serde_json::to_vec(&response).unwrap()).await.body["outcome"]
        .as_str()
        .unwrap()
        .to_owned()
}

fn wrong(number: &str) -> String {
    let n: u32 = number.parse().unwrap();
    format!("{:0width$}", (n + 1) % 10u32.pow(number.len() as u32), width = number.len())
}

/// Push bombing: 20 prompts in a minute reach the phone at most 5 times, never more than one
/// pending at once; the rest get 429 with Retry-After.
async fn push_bombing_is_capped_by_the_budget(engine: Engine) {
    let s = setup(engine).await;
    let mut created = 0;
    for _ in 0..20 {
        let reply = prompt(&s).await;
        match reply.status {
            StatusCode::CREATED => created += 1,
            _ => {
                assert_error(&reply, StatusCode::TOO_MANY_REQUESTS, "push_rate_limited");
                let retry_after: u64 = reply.headers["retry-after"].to_str().unwrap().parse().unwrap();
                assert!((1..=900).contains(&retry_after), "{retry_after}");
            }
        }
        let pending: PendingChallenges =
            serde_json::from_value(signed_get(&s.app, &s.phone, "/device/v1/challenges").await.body).unwrap();
        assert!(pending.challenges.len() <= 1, "never more than one pending prompt");
        s.app.advance(Duration::seconds(3)).await;
    }
    assert_eq!(created, 5);
    let refused = audit_actions(&s.app).await.iter().filter(|(a, _)| a == "fatigue.prompt_refused").count();
    assert_eq!(refused, 15, "every refused prompt is audited");
    let timeline = s.app.get("/v1/users/alice/timeline", Some(&s.key)).await;
    let prompts = timeline.body["prompts"].as_array().unwrap();
    let throttled: Vec<&Value> = prompts.iter().filter(|p| p["state"] == "throttled").collect();
    assert_eq!(
        (prompts.len(), throttled.len()),
        (20, 15),
        "the timeline shows every prompt, throttled ones too"
    );
    assert!(throttled.iter().all(|p| p["flags"][0] == "budget_exhausted"
        && p["app_name"] == "idp"
        && p["ip"] == "198.51.100.66"));
    // The window slides: 15 minutes after the first prompt, the budget has room again.
    s.app.advance(Duration::minutes(15)).await;
    assert_eq!(prompt(&s).await.status, StatusCode::CREATED);
}

/// The budget holds under parallel requests (one user, many concurrent prompts).
async fn budget_holds_under_concurrency(engine: Engine) {
    let s = setup(engine).await;
    let tasks: Vec<_> = (0..24)
        .map(|_| {
            let app = Arc::clone(&s.app);
            let key = s.key.clone();
            tokio::spawn(async move {
                app.post_json("/v1/challenges", &key, json!({ "username": "alice" })).await.status
            })
        })
        .collect();
    let mut created = 0;
    for task in tasks {
        let status = task.await.unwrap();
        assert!(status == StatusCode::CREATED || status == StatusCode::TOO_MANY_REQUESTS, "{status}");
        created += usize::from(status == StatusCode::CREATED);
    }
    assert_eq!(created, 5, "never more than the budget");
}

/// Three denials (a user rejecting an attacker's prompts) freeze push for 15 minutes; each
/// further failure doubles the freeze.
async fn three_denials_freeze_then_double(engine: Engine) {
    let mut s = setup(engine).await;
    for _ in 0..3 {
        assert_eq!(prompt_and_answer(&mut s, Decision::Deny, None).await, "denied");
    }
    let frozen = prompt(&s).await;
    assert_error(&frozen, StatusCode::LOCKED, "push_frozen");
    let factors = s.app.get("/v1/users/alice/factors", Some(&s.key)).await;
    assert_eq!(factors.body["factors"][0]["available"], false);
    assert!(factors.body["factors"][0]["reason"].as_str().unwrap().contains("passkey"));
    // The lockout is push-only: the passkey factor's standing does not mention it.
    assert_eq!(factors.body["factors"][1]["factor"], "passkey");
    assert!(!factors.body["factors"][1]["reason"].as_str().unwrap().contains("frozen"));

    s.app.advance(Duration::minutes(16)).await;
    assert_eq!(prompt_and_answer(&mut s, Decision::Deny, None).await, "denied");
    let timeline = s.app.get("/v1/users/alice/timeline", Some(&s.key)).await;
    let until = time::OffsetDateTime::parse(
        timeline.body["standing"]["frozen_until"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    assert_eq!(until - s.app.clock_now(), Duration::minutes(30), "the second freeze is twice as long");
}

/// A fatigued user types a wrong number: push freezes at once; a second wrong number within
/// 24 h freezes it until a stronger factor or an admin.
async fn wrong_numbers_freeze_and_escalate(engine: Engine) {
    let mut s = setup(engine).await;
    let created = prompt(&s).await;
    let number = created.body["number"].as_str().unwrap().to_owned();
    s.app
        .post_json(
            &format!("/v1/challenges/{}/cancel", created.body["id"].as_str().unwrap()),
            &s.key,
            json!({}),
        )
        .await;
    assert_eq!(
        prompt_and_answer(&mut s, Decision::Approve, Some(&wrong(&number))).await,
        "denied_wrong_number"
    );
    assert_error(&prompt(&s).await, StatusCode::LOCKED, "push_frozen");
    s.app.advance(Duration::minutes(16)).await;
    let outcome = prompt_and_answer(&mut s, Decision::Approve, Some("000")).await;
    if outcome == "approved" {
        return; // the drawn number was 000: nothing to escalate (1 in 1000)
    }
    assert_eq!(outcome, "denied_wrong_number");
    s.app.advance(Duration::days(3)).await;
    let frozen = prompt(&s).await;
    assert_error(&frozen, StatusCode::LOCKED, "push_frozen");
    assert!(frozen.body["message"].as_str().unwrap().contains("stronger factor"), "{:?}", frozen.body);
}

/// A fatigued user answers every prompt with a random number: the attacker gets at most two
/// guesses per incident, and never more than one attempt per challenge.
async fn random_answers_get_at_most_two_guesses(engine: Engine) {
    let mut s = setup(engine).await;
    let mut attempts = 0;
    for round in 0..10 {
        let reply = prompt(&s).await;
        if reply.status != StatusCode::CREATED {
            assert_eq!(reply.status, StatusCode::LOCKED);
            s.app.advance(Duration::minutes(20)).await;
            continue;
        }
        let pending: PendingChallenges =
            serde_json::from_value(signed_get(&s.app, &s.phone, "/device/v1/challenges").await.body).unwrap();
        let details = s.phone.verify_details(&pending.challenges[0]).clone();
        let guess = format!("{:03}", (round * 137 + 11) % 1000);
        let guess = if guess == reply.body["number"] { wrong(&guess) } else { guess };
        let path = format!("/device/v1/challenges/{}/response", details.challenge_id.as_str());
        let first = s.phone.answer(&details, Decision::Approve, &guess);
        assert_eq!(
            s.app.device_post(&path, &serde_json::to_vec(&first).unwrap()).await.body["outcome"],
            "denied_wrong_number"
        );
        attempts += 1;
        let second = s.phone.answer(&details, Decision::Approve, reply.body["number"].as_str().unwrap());
        assert_eq!(
            s.app.device_post(&path, &serde_json::to_vec(&second).unwrap()).await.status,
            StatusCode::CONFLICT,
            "one attempt per challenge"
        );
        s.app.advance(Duration::minutes(20)).await;
    }
    assert_eq!(attempts, 2, "two guesses, then push stays frozen until a stronger factor");
}

/// "Not me": the user reports the prompt; push is quarantined until an admin reviews. An app
/// key — even with `fatigue:write` — cannot lift it (a stolen key or a bribed insider would
/// just reopen the door): refused and audited; the two-admin path is tested in
/// `admin_requests.rs`.
async fn not_me_quarantines_until_admin(engine: Engine) {
    let mut s = setup(engine).await;
    assert_eq!(prompt_and_answer(&mut s, Decision::Report, None).await, "reported");
    let pending = signed_get(&s.app, &s.phone, "/device/v1/challenges").await;
    assert_eq!(pending.body["challenges"], json!([]), "nothing left pending");
    let reported =
        audit_actions(&s.app).await.into_iter().find(|(a, _)| a == "challenge.reported").unwrap().1;
    assert_eq!(
        (reported["ip"].as_str(), reported["app_name"].as_str()),
        (Some("198.51.100.66"), Some("idp")),
        "audited with its context"
    );
    let quarantine = s.app.store.next_alert(0).await.unwrap().unwrap();
    assert_eq!(quarantine.kind, "push_quarantined");
    s.app.advance(Duration::days(7)).await;
    assert_error(&prompt(&s).await, StatusCode::LOCKED, "push_frozen");
    let attacked = s.app.get("/v1/fatigue/users", Some(&s.key)).await;
    assert_eq!(attacked.body[0]["username"], "alice");
    assert_eq!(attacked.body[0]["standing"]["needs_admin_review"], true);

    let reader = s.app.key("dashboard", "fatigue:read").await;
    let denied = s.app.post_json("/v1/users/alice/unfreeze", &reader, json!({})).await;
    assert_error(&denied, StatusCode::FORBIDDEN, "insufficient_scope");
    let refused = s.app.post_json("/v1/users/alice/unfreeze", &s.key, json!({})).await;
    assert_error(&refused, StatusCode::FORBIDDEN, "admin_review_required");
    let actions = audit_actions(&s.app).await;
    let (last, details) = actions.last().unwrap();
    assert_eq!((last.as_str(), &details["needs_admin_review"]), ("fatigue.unfreeze_refused", &json!(true)));
    assert!(!actions.iter().any(|(a, _)| a == "fatigue.unfrozen"), "nothing was lifted");
    assert_error(&prompt(&s).await, StatusCode::LOCKED, "push_frozen");
}

/// Attack: a stolen key with `fatigue:write` unfreezes after every wrong number to buy more
/// guesses. The second wrong number's freeze ("prove a passkey") is not an app's to lift.
async fn an_app_cannot_lift_a_second_wrong_number_freeze(engine: Engine) {
    let mut s = setup(engine).await;
    for _ in 0..2 {
        let created = prompt(&s).await;
        assert_eq!(created.status, StatusCode::CREATED, "{:?}", created.body);
        let number = created.body["number"].as_str().unwrap().to_owned();
        s.app
            .post_json(
                &format!("/v1/challenges/{}/cancel", created.body["id"].as_str().unwrap()),
                &s.key,
                json!({}),
            )
            .await;
        let outcome = prompt_and_answer(&mut s, Decision::Approve, Some(&wrong(&number))).await;
        if outcome == "approved" {
            return; // the drawn number was the wrong guess's (1 in 1000)
        }
        assert_eq!(outcome, "denied_wrong_number");
        s.app.advance(Duration::minutes(16)).await;
    }
    let refused = s.app.post_json("/v1/users/alice/unfreeze", &s.key, json!({})).await;
    assert_error(&refused, StatusCode::FORBIDDEN, "admin_review_required");
    assert_error(&prompt(&s).await, StatusCode::LOCKED, "push_frozen");
}

/// Attack: unfreezing in a loop to reset the ladder (and dodge the hard lock). An app's unfreeze
/// lifts the timed freeze only: the next failure freezes again at once.
async fn app_unfreezes_keep_the_ladder(engine: Engine) {
    let mut s = setup(engine).await;
    for _ in 0..3 {
        assert_eq!(prompt_and_answer(&mut s, Decision::Deny, None).await, "denied");
    }
    assert_eq!(s.app.post_json("/v1/users/alice/unfreeze", &s.key, json!({})).await.status, StatusCode::OK);
    assert_eq!(prompt_and_answer(&mut s, Decision::Deny, None).await, "denied");
    assert_error(&prompt(&s).await, StatusCode::LOCKED, "push_frozen");
}

/// Attack: deleting a quarantined user and creating the name again would be a clean unfreeze
/// without the review (and a free enrollment for the attacker's phone).
async fn an_app_cannot_lift_a_quarantine_by_deleting_and_recreating_the_user(engine: Engine) {
    let mut s = setup(engine).await;
    assert_eq!(prompt_and_answer(&mut s, Decision::Report, None).await, "reported");
    let refused = s.app.delete("/v1/users/alice", &s.key).await;
    assert_error(&refused, StatusCode::FORBIDDEN, "admin_review_required");
    assert_eq!(s.app.get("/v1/users/alice", Some(&s.key)).await.status, StatusCode::OK, "still there");
    let again = s.app.post_json("/v1/users", &s.key, json!({ "username": "alice" })).await;
    assert_error(&again, StatusCode::CONFLICT, "user_exists");
    assert_error(&prompt(&s).await, StatusCode::LOCKED, "push_frozen");
}

/// An ordinary freeze (three denials) is still the app's to lift, audited with what was lifted.
async fn app_key_unfreeze_of_ordinary_freeze_still_works_audited(engine: Engine) {
    let mut s = setup(engine).await;
    for _ in 0..3 {
        assert_eq!(prompt_and_answer(&mut s, Decision::Deny, None).await, "denied");
    }
    assert_error(&prompt(&s).await, StatusCode::LOCKED, "push_frozen");
    let lifted = s.app.post_json("/v1/users/alice/unfreeze", &s.key, json!({})).await;
    assert_eq!((lifted.status, &lifted.body["push"]), (StatusCode::OK, &json!("available")));
    assert!(audit_actions(&s.app).await.iter().any(|(a, d): &(String, Value)| a == "fatigue.unfrozen"
        && d["was"]["failures"] == 3
        && d["was"]["hard_locked"] == false));
    assert_eq!(prompt(&s).await.status, StatusCode::CREATED);
}

/// An approval resets the streak; the timeline flags an approval that follows failures.
async fn approval_after_denials_is_flagged(engine: Engine) {
    let mut s = setup(engine).await;
    for decision in [Decision::Deny, Decision::Deny, Decision::Approve] {
        prompt_and_answer(&mut s, decision, None).await;
        s.app.advance(Duration::seconds(30)).await;
    }
    let timeline = s.app.get("/v1/users/alice/timeline", Some(&s.key)).await;
    assert_eq!(timeline.body["standing"]["consecutive_failures"], 0);
    let flags = &timeline.body["prompts"][0]["flags"];
    assert!(flags.as_array().unwrap().iter().any(|f| f == "approved_after_failures:2"), "{flags}");
    assert!(flags.as_array().unwrap().iter().any(|f| f == "fast_approval"), "{flags}");
}

/// Push spray: one network prompts many different users (a password-spraying botnet that got
/// lucky); past the threshold that network is throttled, other networks are not.
async fn push_spray_from_one_network_is_throttled(engine: Engine) {
    let s = setup(engine).await;
    let mut phones = Vec::new();
    for i in 0..50 {
        phones.push(enrolled_device(&s.app, &s.key, &format!("user{i}"), PushRegistration::None).await);
    }
    let mut throttled_at = None;
    let mut throttled = 0;
    for i in 0..50 {
        let body =
            json!({ "username": format!("user{i}"), "context": { "ip": format!("203.0.113.{}", 10 + i) } });
        let reply = s.app.post_json("/v1/challenges", &s.key, body).await;
        if reply.status == StatusCode::TOO_MANY_REQUESTS {
            assert_error(&reply, StatusCode::TOO_MANY_REQUESTS, "source_rate_limited");
            throttled_at.get_or_insert(i);
            throttled += 1;
        } else {
            assert_eq!(reply.status, StatusCode::CREATED, "{:?}", reply.body);
        }
    }
    assert_eq!((throttled_at, throttled), (Some(20), 30), "from the 21st user on, one /24 is refused");
    let elsewhere = s
        .app
        .post_json(
            "/v1/challenges",
            &s.key,
            json!({ "username": "alice", "context": { "ip": "198.51.100.1" } }),
        )
        .await;
    assert_eq!(elsewhere.status, StatusCode::CREATED);
    let silent = audit_actions(&s.app)
        .await
        .iter()
        .filter(|(a, d)| a == "challenge.created" && d["silent"] == true)
        .count();
    assert!(silent >= 10, "a spraying source's prompts go out silently before it is throttled ({silent})");
    let mut after = 0;
    let mut kinds = Vec::new();
    while let Some(alert) = s.app.store.next_alert(after).await.unwrap() {
        kinds.push((alert.kind.clone(), alert.subject.clone()));
        after = alert.id;
    }
    assert!(kinds.contains(&("push_spray".to_owned(), "network:203.0.113.0/24".to_owned())), "{kinds:?}");
}

/// A user under suspicion gets silent prompts: no notification, but the real user finds the
/// request by opening the app.
async fn suspicion_makes_prompts_silent(engine: Engine) {
    let mut s = setup(engine).await;
    prompt_and_answer(&mut s, Decision::Deny, None).await;
    s.app.advance(Duration::seconds(30)).await;
    prompt_and_answer(&mut s, Decision::Deny, None).await;
    s.app.advance(Duration::seconds(30)).await;
    assert_eq!(
        prompt_and_answer(&mut s, Decision::Approve, None).await,
        "approved",
        "pull still works when silent"
    );
    let timeline = s.app.get("/v1/users/alice/timeline", Some(&s.key)).await;
    let silent: Vec<bool> =
        timeline.body["prompts"].as_array().unwrap().iter().map(|p| p["silent"].as_bool().unwrap()).collect();
    assert_eq!(silent, vec![true, false, false], "newest first");
}

/// Alerts reach the SIEM webhook signed, in order, and are retried after failures.
async fn alerts_reach_a_signed_webhook_with_retries(engine: Engine) {
    use std::sync::Mutex;

    let received: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
    let router = {
        let received = Arc::clone(&received);
        axum::Router::new().route(
            "/hook",
            axum::routing::post(move |headers: axum::http::HeaderMap, body: String| {
                let received = Arc::clone(&received);
                async move {
                    let signature =
                        headers.get("countersign-signature").unwrap().to_str().unwrap().to_owned();
                    let mut seen = received.lock().unwrap();
                    seen.push((signature, body));
                    // The receiver is down for the first two attempts.
                    if seen.len() <= 2 { StatusCode::INTERNAL_SERVER_ERROR } else { StatusCode::OK }
                }
            }),
        )
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });

    let mut s = setup(engine).await;
    assert_eq!(prompt_and_answer(&mut s, Decision::Report, None).await, "reported");
    let secret = "a-webhook-secret-of-at-least-32-chars!";
    let config = countersign::alerts::AlertsConfig {
        webhook_url: Some(format!("http://{address}/hook")),
        webhook_secret: Some(secret.into()),
    };
    let clock: Arc<dyn countersign::clock::Clock> = s.app.clock.clone();
    let delivery = countersign::alerts::AlertDelivery::new(
        Arc::clone(&s.app.store),
        clock,
        config.webhook().unwrap().unwrap(),
    );
    let mut delivered = false;
    for _ in 0..10 {
        if delivery.deliver_next().await.unwrap() {
            delivered = true;
            break;
        }
        s.app.advance(Duration::minutes(1)).await;
    }
    assert!(delivered, "delivered after the receiver recovered");
    assert!(!delivery.deliver_next().await.unwrap(), "nothing left, nothing sent twice");
    let seen = received.lock().unwrap().clone();
    assert_eq!(seen.len(), 3, "two failures, then success");
    let (signature, body) = &seen[2];
    let (t, v1) = signature.strip_prefix("t=").unwrap().split_once(",v1=").unwrap();
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret.as_bytes());
    let tag = hex::decode(v1).unwrap();
    assert!(
        ring::hmac::verify(&key, format!("{t}.{body}").as_bytes(), &tag).is_ok(),
        "the receiver can verify it"
    );
    let alert: Value = serde_json::from_str(body).unwrap();
    assert_eq!(alert["kind"], "push_quarantined");
    assert!(alert["subject"].as_str().unwrap().starts_with("user:"));
    // Each delivery exports the sealed audit head: a checkpoint the chain must keep passing.
    let checkpoint: countersign::audit::chain::Checkpoint =
        serde_json::from_value(alert["audit_checkpoint"].clone()).unwrap();
    assert!(checkpoint.seq > 0, "{checkpoint:?}");
    let sealer = s.app.master.audit_sealer();
    let verified = countersign::audit::verify_against(s.app.store.as_ref(), &sealer, Some(&checkpoint)).await;
    assert!(verified.unwrap() >= checkpoint.seq);
}

/// Flooding with fresh Idempotency-Keys (each a "new" request) or with bogus usernames does
/// not get around the budget, and bogus names reveal nothing.
async fn cycling_idempotency_keys_and_bogus_names_stay_bounded(engine: Engine) {
    let s = setup(engine).await;
    let mut statuses = Vec::new();
    for i in 0..10 {
        let request = axum::http::Request::post("/v1/challenges")
            .header("authorization", format!("Bearer {}", s.key))
            .header("content-type", "application/json")
            .header("idempotency-key", format!("flood-{i}"))
            .body(axum::body::Body::from(json!({ "username": "alice" }).to_string()))
            .unwrap();
        statuses.push(s.app.send(request).await.status.as_u16());
    }
    assert_eq!(statuses.iter().filter(|s| **s == 201).count(), 5, "{statuses:?}");
    assert_eq!(statuses.iter().filter(|s| **s == 429).count(), 5, "{statuses:?}");
    let head = audit_len(&s.app).await;
    for i in 0..20 {
        let reply =
            s.app.post_json("/v1/challenges", &s.key, json!({ "username": format!("nobody{i}") })).await;
        assert_error(&reply, StatusCode::CONFLICT, "no_enrolled_device");
    }
    assert_eq!(audit_len(&s.app).await, head, "bogus users cost no writes");
}

/// Silent means silent: a prompt for a user under suspicion queues no push at all, so an
/// attacker's bombing run does not even light up the phone.
async fn silent_prompts_queue_no_push(engine: Engine) {
    let push =
        PushRegistration::Fcm { token: countersign_mobile_protocol::PushToken::new("fcm-alice").unwrap() };
    let mut s = setup_with_push(engine, push).await;
    prompt_and_answer(&mut s, Decision::Deny, None).await;
    s.app.advance(Duration::seconds(30)).await;
    prompt_and_answer(&mut s, Decision::Deny, None).await;
    s.app.advance(Duration::seconds(30)).await;
    let third = prompt(&s).await;
    assert_eq!(third.status, StatusCode::CREATED);
    // No worker runs in this test, so every queued push is still claimable.
    let jobs = s.app.store.claim_push_jobs(s.app.clock_now(), Duration::seconds(30), 100).await.unwrap();
    let third_id = third.body["id"].as_str().unwrap();
    assert_eq!(jobs.len(), 2, "the first two prompts queued a push: {jobs:?}");
    assert!(jobs.iter().all(|job| job.challenge_id.to_string() != third_id), "the silent one did not");
}

fn fcm() -> PushRegistration {
    PushRegistration::Fcm {
        token: countersign_mobile_protocol::PushToken::new("fcm-token-of-alice").unwrap(),
    }
}

/// How many pushes were queued for the phone since the last call: no worker runs in these
/// tests, so the test claims them (for good) as the worker would.
async fn new_pushes(s: &Setup) -> usize {
    s.app.store.claim_push_jobs(s.app.clock_now(), Duration::days(3650), 100_000).await.unwrap().len()
}

async fn alerts_of_kind(s: &Setup, kind: &str) -> usize {
    let (mut after, mut count) = (0, 0);
    while let Some(alert) = s.app.store.next_alert(after).await.unwrap() {
        count += usize::from(alert.kind == kind);
        after = alert.id;
    }
    count
}

/// Attack: cancel-and-retry bombing. The attacker holds the password, creates a prompt, then
/// cancels it or lets the next one supersede it, and waits out the budget window, all day long:
/// cancelled and superseded prompts never counted as failures, so 5 audible pushes went out
/// every 15 minutes (about 480 a day) and the user was never silenced or listed. Now every
/// prompt that ends unanswered counts: over 24 virtual hours at most 3 audible pushes reach the
/// phone, the user is listed, and the real user still finds a request by opening the app.
async fn cancel_and_retry_bombing_reaches_the_phone_at_most_three_times_a_day(engine: Engine) {
    let mut s = setup_with_push(engine, fcm()).await;
    let (mut created, mut refused) = (0, 0);
    for round in 0..(24 * 60 / 3) {
        let reply = prompt(&s).await;
        match reply.status {
            StatusCode::CREATED => {
                created += 1;
                if round % 2 == 0 {
                    let id = reply.body["id"].as_str().unwrap();
                    let cancelled =
                        s.app.post_json(&format!("/v1/challenges/{id}/cancel"), &s.key, json!({})).await;
                    assert_eq!(cancelled.body["state"], "cancelled", "{:?}", cancelled.body);
                }
            }
            StatusCode::TOO_MANY_REQUESTS => refused += 1,
            other => panic!("unexpected {other}: {:?}", reply.body),
        }
        s.app.advance(Duration::minutes(3)).await;
    }
    assert!(created > 100, "the attacker kept prompting all day ({created} created, {refused} refused)");
    let audible = new_pushes(&s).await;
    assert!(audible <= 3, "{audible} audible pushes reached the phone in a day");
    let listed = s.app.get("/v1/fatigue/users", Some(&s.key)).await;
    assert_eq!(listed.body[0]["username"], "alice", "{:?}", listed.body);
    assert!(listed.body[0]["standing"]["unanswered_in_a_row"].as_i64().unwrap() >= 2);

    // The real user opens the app, finds the (silent) request and approves it: audible again.
    assert_eq!(prompt_and_answer(&mut s, Decision::Approve, None).await, "approved");
    assert_eq!(new_pushes(&s).await, 0, "that request was silent");
    s.app.advance(Duration::minutes(20)).await;
    assert_eq!(prompt(&s).await.status, StatusCode::CREATED);
    assert_eq!(new_pushes(&s).await, 1, "an answer ends the silence");
}

/// Audible prompts are capped per user and day even when every one is answered: beyond the
/// cap (10) prompts are silent, and pull still works.
async fn audible_prompts_are_capped_per_day(engine: Engine) {
    let mut s = setup_with_push(engine, fcm()).await;
    for _ in 0..12 {
        assert_eq!(prompt_and_answer(&mut s, Decision::Approve, None).await, "approved");
        s.app.advance(Duration::minutes(20)).await;
    }
    assert_eq!(new_pushes(&s).await, 10, "the 11th and 12th prompts of the day were silent");
    s.app.advance(Duration::hours(24)).await;
    assert_eq!(prompt(&s).await.status, StatusCode::CREATED);
    assert_eq!(new_pushes(&s).await, 1, "a new day, audible again");
}

/// Attack: a burst of 50 prompts in a second. 45 were refused with 429 but nothing was raised:
/// no alert, an empty attack list, standing "available". Refusals are an attack signal: the
/// user is listed as under attack with a score, prompts go silent, and one alert is raised per
/// incident (not one per refusal).
async fn a_burst_of_refused_prompts_is_an_incident_with_one_alert(engine: Engine) {
    let s = setup(engine).await;
    let statuses: Vec<StatusCode> = {
        let mut v = Vec::new();
        for _ in 0..50 {
            v.push(prompt(&s).await.status);
        }
        v
    };
    assert_eq!(statuses.iter().filter(|st| **st == StatusCode::TOO_MANY_REQUESTS).count(), 45);
    let listed = s.app.get("/v1/fatigue/users", Some(&s.key)).await;
    assert_eq!(listed.body[0]["username"], "alice", "{:?}", listed.body);
    assert_eq!(listed.body[0]["standing"]["under_attack"], true);
    assert_eq!(listed.body[0]["standing"]["refused_prompts"], 45);
    assert!(listed.body[0]["score"].as_i64().unwrap() >= 45);
    assert_eq!(alerts_of_kind(&s, "push_bombing").await, 1, "one alert for the incident");

    s.app.advance(Duration::minutes(16)).await;
    for _ in 0..10 {
        prompt(&s).await;
    }
    assert_eq!(alerts_of_kind(&s, "push_bombing").await, 1, "the same incident goes on");
    s.app.advance(Duration::hours(25)).await;
    for _ in 0..10 {
        prompt(&s).await;
    }
    assert_eq!(alerts_of_kind(&s, "push_bombing").await, 2, "a quiet day later, a new incident");
}

/// Attack: type a wrong number while an admin unfreezes. The unfreeze used to read the standing,
/// then write it back from that read: a wrong number landing in between was overwritten, and
/// with it the record that makes the *second* wrong number escalate — a free third guess. The
/// unfreeze now applies under the user's lock: whichever lands first, the wrong number stays
/// on the record.
async fn a_wrong_number_racing_an_unfreeze_is_never_lost(engine: Engine) {
    let s = setup(engine).await;
    let mut rounds = Vec::new();
    for i in 0..8 {
        let username = format!("racer{i}");
        let phone = enrolled_device(&s.app, &s.key, &username, PushRegistration::None).await;
        let created = s
            .app
            .post_json(
                "/v1/challenges",
                &s.key,
                json!({ "username": username, "context": { "ip": "198.51.100.7" } }),
            )
            .await;
        assert_eq!(created.status, StatusCode::CREATED, "{:?}", created.body);
        rounds.push((username, phone, created.body));
    }
    for (username, mut phone, created) in rounds {
        let pending: PendingChallenges =
            serde_json::from_value(signed_get(&s.app, &phone, "/device/v1/challenges").await.body).unwrap();
        let details = phone.verify_details(&pending.challenges[0]).clone();
        let response = phone.answer(&details, Decision::Approve, &wrong(created["number"].as_str().unwrap()));
        let path = format!("/device/v1/challenges/{}/response", details.challenge_id.as_str());
        let body = serde_json::to_vec(&response).unwrap();
        let unfreeze_path = format!("/v1/users/{username}/unfreeze");
        let (answer, unfreeze) = tokio::join!(
            s.app.device_post(&path, &body),
            s.app.post_json(&unfreeze_path, &s.key, json!({})),
        );
        assert_eq!(answer.body["outcome"], "denied_wrong_number");
        assert_eq!(unfreeze.status, StatusCode::OK);
        let user = s.app.store.user_by_username(&username).await.unwrap().unwrap();
        let standing = s.app.store.push_state(user.id).await.unwrap();
        assert!(
            standing.last_wrong_number_at.is_some(),
            "{username}: the wrong number was lost: {standing:?}"
        );
    }
}

on_both_engines!(
    an_app_cannot_lift_a_second_wrong_number_freeze,
    app_unfreezes_keep_the_ladder,
    an_app_cannot_lift_a_quarantine_by_deleting_and_recreating_the_user,
    app_key_unfreeze_of_ordinary_freeze_still_works_audited,
    a_wrong_number_racing_an_unfreeze_is_never_lost,
    cancel_and_retry_bombing_reaches_the_phone_at_most_three_times_a_day,
    audible_prompts_are_capped_per_day,
    a_burst_of_refused_prompts_is_an_incident_with_one_alert,
    push_bombing_is_capped_by_the_budget,
    budget_holds_under_concurrency,
    three_denials_freeze_then_double,
    wrong_numbers_freeze_and_escalate,
    random_answers_get_at_most_two_guesses,
    not_me_quarantines_until_admin,
    approval_after_denials_is_flagged,
    push_spray_from_one_network_is_throttled,
    suspicion_makes_prompts_silent,
    alerts_reach_a_signed_webhook_with_retries,
    cycling_idempotency_keys_and_bogus_names_stay_bounded,
    silent_prompts_queue_no_push,
);
