//! Floods of refused device requests, on SQLite and PostgreSQL: limited per claimed device id
//! and per source network, audited in aggregate. Each test's doc comment states the attack.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[macro_use]
mod common;

use std::net::{IpAddr, SocketAddr};

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Request, StatusCode, header};
use common::{Reply, TestApp, assert_error, audit_actions, audit_len, enrolled_device, impostor};
use countersign::app::HttpLimits;
use countersign_e2e::Engine;
use countersign_e2e::device::TestDevice;
use countersign_mobile_protocol::{DeviceId, PushRegistration};
use serde_json::json;

const LIST: &str = "/device/v1/challenges";
/// The defaults (`[devices]` in the config).
const PER_DEVICE: usize = 10;
const PER_NETWORK: usize = 120;

async fn app(engine: Engine) -> (TestApp, String) {
    let app = TestApp::build(engine, HttpLimits::default()).await;
    let key = app.key("portal", "users:read users:write").await;
    (app, key)
}

/// `GET /device/v1/challenges` signed by `device`, over a connection from `peer`.
async fn list_from(app: &TestApp, device: &TestDevice, peer: &str) -> Reply {
    let mut request = Request::get(LIST);
    for (name, value) in device.sign_request("GET", LIST, b"", app.now_unix()) {
        request = request.header(name, value);
    }
    let mut request = request.body(Body::empty()).unwrap();
    let peer: IpAddr = peer.parse().unwrap();
    request.extensions_mut().insert(ConnectInfo(SocketAddr::new(peer, 40_000)));
    app.send(request).await
}

fn retry_after(reply: &Reply) -> u64 {
    reply.headers.get(header::RETRY_AFTER).unwrap().to_str().unwrap().parse().unwrap()
}

/// Attack: knowing a device id (it is in every signed request) but not its key, an attacker
/// sends requests with junk signatures as fast as it can. Each one used to write an audit row
/// (~1,000 rows/s, never a 429). Now a device id gets `429` with `Retry-After` after its quota
/// of refusals, the refusals of a minute are one audit event with their count and reasons, and
/// the real phone, whose signature verifies, is never locked out by that limit.
async fn junk_signatures_from_a_known_device_are_throttled_and_audited_in_aggregate(engine: Engine) {
    let (app, key) = app(engine).await;
    let alice = enrolled_device(&app, &key, "alice", PushRegistration::None).await;
    let attacker = impostor(&alice, alice.device_id());
    let rows_before = audit_len(&app).await;

    const JUNK: usize = 50;
    let mut replies = Vec::new();
    for _ in 0..JUNK {
        replies.push(list_from(&app, &attacker, "203.0.113.66").await);
    }
    for reply in &replies[..PER_DEVICE] {
        assert_error(reply, StatusCode::UNAUTHORIZED, "signature_invalid");
    }
    for reply in &replies[PER_DEVICE..] {
        assert_error(reply, StatusCode::TOO_MANY_REQUESTS, "rate_limited");
        assert!((1..=60).contains(&retry_after(reply)), "{:?}", reply.headers);
    }

    // The real phone, even from the attacker's network, is not locked out.
    for peer in ["203.0.113.67", "198.51.100.9"] {
        let reply = list_from(&app, &alice, peer).await;
        assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
    }

    // Nothing is written while the minute runs; then one event says it all.
    let refusals = app.state.devices.refusals();
    assert_eq!(refusals.flush().await.unwrap(), 0);
    assert_eq!(audit_len(&app).await, rows_before);
    app.advance(time::Duration::seconds(61)).await;
    assert_eq!(refusals.flush().await.unwrap(), 1);
    assert_eq!(refusals.flush().await.unwrap(), 0, "written once");
    assert_eq!(audit_len(&app).await, rows_before + 1);
    let (action, details) = audit_actions(&app).await.pop().unwrap();
    assert_eq!(action, "device.request_refused");
    assert_eq!(details["device_id"], alice.device_id().as_str());
    assert_eq!(details["count"], JUNK);
    assert_eq!(details["throttled"], JUNK - PER_DEVICE);
    assert_eq!(details["reasons"], json!({ "bad_signature": JUNK }));
    assert_eq!(details["window_secs"], 60);

    // A minute later the id has its quota back.
    let reply = list_from(&app, &attacker, "203.0.113.66").await;
    assert_error(&reply, StatusCode::UNAUTHORIZED, "signature_invalid");
}

/// Attack: the same flood with a fresh made-up device id on every request (so no per-device
/// limit applies), from addresses spread over one network. After the network's quota of
/// refusals every device request from that /24 is answered `429` before any work is done —
/// even one whose signature would verify — while other networks are served; the refusals of
/// unknown ids are audited as one event per minute, naming the network.
async fn refusals_from_one_network_are_throttled_before_any_work(engine: Engine) {
    let (app, key) = app(engine).await;
    let alice = enrolled_device(&app, &key, "alice", PushRegistration::None).await;
    let rows_before = audit_len(&app).await;

    let mut statuses = Vec::new();
    for i in 0..PER_NETWORK + 30 {
        let random_id = DeviceId::new(uuid::Uuid::new_v4().to_string()).unwrap();
        let reply = list_from(&app, &impostor(&alice, random_id), &format!("198.51.100.{}", i % 250)).await;
        statuses.push(reply.status);
    }
    assert!(statuses[..PER_NETWORK].iter().all(|s| *s == StatusCode::UNAUTHORIZED), "{statuses:?}");
    assert!(statuses[PER_NETWORK..].iter().all(|s| *s == StatusCode::TOO_MANY_REQUESTS), "{statuses:?}");

    // Alice's correctly signed request from that network is refused unread; from elsewhere, served.
    let blocked = list_from(&app, &alice, "198.51.100.251").await;
    assert_error(&blocked, StatusCode::TOO_MANY_REQUESTS, "rate_limited");
    assert!(retry_after(&blocked) >= 1);
    assert_eq!(list_from(&app, &alice, "192.0.2.10").await.status, StatusCode::OK);
    assert_eq!(list_from(&app, &alice, "2001:db8:0:1::1").await.status, StatusCode::OK);

    app.advance(time::Duration::seconds(61)).await;
    assert_eq!(app.state.devices.refusals().flush().await.unwrap(), 1);
    assert_eq!(audit_len(&app).await, rows_before + 1);
    let (action, details) = audit_actions(&app).await.pop().unwrap();
    assert_eq!(action, "device.request_refused");
    assert_eq!(details["networks"], json!({ "198.51.100.0/24": PER_NETWORK + 31 }));
    // The refusal that crossed the quota was itself answered 429; the 30 after it were not read.
    assert_eq!(details["count"], PER_NETWORK + 31);
    assert_eq!(details["throttled"], 31);
    assert_eq!(details["reasons"], json!({ "unknown_device": PER_NETWORK + 1, "network_throttled": 30 }));

    // Later, the network is served again.
    assert_eq!(list_from(&app, &alice, "198.51.100.7").await.status, StatusCode::OK);
}

/// Refusals still counted when the server stops are not lost: shutdown writes the open minute.
async fn refusals_of_the_open_minute_are_written_at_shutdown(engine: Engine) {
    let (app, key) = app(engine).await;
    let alice = enrolled_device(&app, &key, "alice", PushRegistration::None).await;
    let attacker = impostor(&alice, alice.device_id());
    let rows_before = audit_len(&app).await;
    for _ in 0..3 {
        list_from(&app, &attacker, "203.0.113.66").await;
    }
    assert_eq!(app.state.devices.refusals().flush().await.unwrap(), 0);
    assert_eq!(app.state.devices.refusals().flush_all().await.unwrap(), 1);
    assert_eq!(audit_len(&app).await, rows_before + 1);
    assert_eq!(audit_actions(&app).await.pop().unwrap().1["count"], 3);
}

on_both_engines!(
    junk_signatures_from_a_known_device_are_throttled_and_audited_in_aggregate,
    refusals_from_one_network_are_throttled_before_any_work,
    refusals_of_the_open_minute_are_written_at_shutdown,
);
