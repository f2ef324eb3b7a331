#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Expiry on the database clock (PostgreSQL, many instances). Each test runs two instances on
//! one database, one of them with a clock far off the database's, as an attacker (or a broken
//! NTP) would have it. SQLite is one instance with one clock, so these are PostgreSQL's.

#[macro_use]
mod common;

use axum::http::StatusCode;
use common::{Alice, TestApp, assert_error, signed_get};
use countersign::app::HttpLimits;
use countersign_e2e::Engine;
use countersign_e2e::device::TestDevice;
use countersign_mobile_protocol::{ChallengeDetails, Decision, PendingChallenges, PushRegistration};
use serde_json::{Value, json};
use time::Duration;

async fn setup() -> Alice {
    let app = TestApp::build(Engine::Postgres, HttpLimits::default()).await;
    Alice::enroll(app, "users:read users:write challenges:write challenges:read", PushRegistration::None)
        .await
}

async fn start(s: &Alice) -> (String, String) {
    let body = json!({ "username": "alice", "context": { "ip": "203.0.113.7" } });
    let reply = s.app.post_json("/v1/challenges", &s.key, body).await;
    assert_eq!(reply.status, StatusCode::CREATED, "{:?}", reply.body);
    (reply.body["id"].as_str().unwrap().to_owned(), reply.body["number"].as_str().unwrap().to_owned())
}

async fn details(s: &Alice) -> ChallengeDetails {
    let reply = signed_get(&s.app, &s.phone, "/device/v1/challenges").await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
    let pending: PendingChallenges = serde_json::from_value(reply.body).unwrap();
    s.phone.verify_details(&pending.challenges[0]).clone()
}

async fn answer_through(
    app: &TestApp,
    phone: &mut TestDevice,
    d: &ChallengeDetails,
    number: &str,
) -> common::Reply {
    let response = phone.answer(d, Decision::Approve, number);
    let path = format!("/device/v1/challenges/{}/response", d.challenge_id.as_str());
    app.device_post(&path, &serde_json::to_vec(&response).unwrap()).await
}

async fn state_through(app: &TestApp, key: &str, id: &str) -> Value {
    app.get(&format!("/v1/challenges/{id}?wait=0"), Some(key)).await.body["state"].clone()
}

/// Attack: an instance whose clock is 120 s behind accepts an approval 12 s after the TTL and
/// redeems an approval older than the redeem window. The database clock decides instead:
/// the answer is refused as expired, the stale approval cannot be redeemed, and once the
/// instance has measured its offset its long-polls report the expiry on time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_instance_cannot_answer_or_redeem_past_the_database_clock() {
    let mut s = setup().await;
    let slow = s.app.another_instance(Duration::seconds(-120)).await;

    let (_, number) = start(&s).await;
    let d = details(&s).await;
    s.app.advance(Duration::seconds(72)).await;
    let late = answer_through(&slow, &mut s.phone, &d, &number).await;
    assert_error(&late, StatusCode::GONE, "challenge_expired");

    let (id, number) = start(&s).await;
    let d = details(&s).await;
    let approved = answer_through(&s.app, &mut s.phone, &d, &number).await;
    assert_eq!(approved.body["outcome"], "approved", "{:?}", approved.body);
    s.app.advance(Duration::seconds(121)).await;
    let redeem = slow.post_json(&format!("/v1/challenges/{id}/redeem"), &s.key, json!({})).await;
    assert_error(&redeem, StatusCode::CONFLICT, "approval_stale");

    let (id, _) = start(&s).await;
    s.app.advance(Duration::seconds(61)).await;
    let skew = slow.state.challenges.clock_skew();
    assert!(skew.measure(slow.store.as_ref(), slow.state.clock.as_ref()).await.is_err(), "far off");
    assert_eq!(skew.offset().whole_seconds(), 120 + 72 + 121 + 61);
    assert_eq!(state_through(&slow, &s.key, &id).await, "expired", "the long-poll follows the database");
}

/// Attack: an instance whose clock is 120 s ahead runs its expiry sweep and expires every
/// pending challenge at once (each expiry a "timeout" on the user's record, towards a freeze).
/// The database clock decides: nothing is expired early, and the user's record is untouched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fast_instance_cannot_expire_challenges_early() {
    let mut s = setup().await;
    let fast = s.app.another_instance(Duration::seconds(120)).await;
    let (id, number) = start(&s).await;
    s.app.advance(Duration::seconds(10)).await;

    assert_eq!(fast.state.challenges.expire_due(100).await.unwrap(), 0, "not due by the database clock");
    assert_eq!(state_through(&fast, &s.key, &id).await, "pending", "nor on read through the fast instance");
    let user = s.app.store.user_by_username("alice").await.unwrap().unwrap();
    assert_eq!(s.app.store.push_state(user.id).await.unwrap().consecutive_failures, 0);

    let d = details(&s).await;
    let approved = answer_through(&fast, &mut s.phone, &d, &number).await;
    assert_eq!(approved.body["outcome"], "approved", "{:?}", approved.body);
}

/// An instance whose clock is off by more than the bound (5 s) reports not-ready and says why;
/// one within it stays ready.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_with_a_skewed_clock_is_not_ready() {
    let s = setup().await;
    let near = s.app.another_instance(Duration::seconds(-3)).await;
    let far = s.app.another_instance(Duration::seconds(-120)).await;
    for (app, offset) in [(&*s.app, 0), (&near, 3)] {
        let measured =
            app.state.challenges.clock_skew().measure(app.store.as_ref(), app.state.clock.as_ref()).await;
        assert_eq!(measured.unwrap().whole_seconds(), offset);
        assert_eq!(app.get("/readyz", None).await.status, StatusCode::OK);
    }
    let measured =
        far.state.challenges.clock_skew().measure(far.store.as_ref(), far.state.clock.as_ref()).await;
    let error = measured.unwrap_err().to_string();
    assert!(error.contains("120000 ms behind"), "{error}");
    let ready = far.get("/readyz", None).await;
    assert_error(&ready, StatusCode::SERVICE_UNAVAILABLE, "not_ready");
    assert!(ready.body["message"].as_str().unwrap().contains("clock"), "{:?}", ready.body);
}
