//! The application as `countersign serve` builds it (`startup::Application`), with its real
//! background tasks, in process: what the other tests switch off runs here.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[macro_use]
mod common;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use axum::http::StatusCode;
use common::{Alice, TestApp};
use countersign::push::{PushMessage, PushOutcome, PushSender, PushTarget};
use countersign::startup::BackgroundTasks;
use countersign_e2e::Engine;
use countersign_mobile_protocol::{PushRegistration, PushToken};
use time::OffsetDateTime;
use tokio::sync::mpsc;

on_both_engines!(builder_starts_the_push_worker_and_the_audit_chainer);

/// A push provider that hands every push to the test.
#[derive(Debug)]
struct FakeProvider(mpsc::UnboundedSender<(PushTarget, PushMessage)>);

#[async_trait]
impl PushSender for FakeProvider {
    async fn send(&self, target: &PushTarget, message: &PushMessage, _now: OffsetDateTime) -> PushOutcome {
        let _ = self.0.send((target.clone(), message.clone()));
        PushOutcome::Delivered
    }
}

fn fcm(token: &str) -> PushRegistration {
    PushRegistration::Fcm { token: PushToken::new(token).unwrap() }
}

/// Longest a background task may take to act; far above what it needs (it is woken at once).
const PATIENCE: Duration = Duration::from_secs(10);

/// Nobody calls the worker or `audit::flush`: the tasks `Application::build` started deliver
/// the challenge's push to the (fake) provider and chain the audit events on their own.
async fn builder_starts_the_push_worker_and_the_audit_chainer(engine: Engine) {
    let (sent, mut pushes) = mpsc::unbounded_channel();
    let tasks = BackgroundTasks { push_worker: true, audit_chainer: true, ..BackgroundTasks::NONE };
    let app = TestApp::with_background(engine, tasks, Arc::new(FakeProvider(sent))).await;
    let alice = Alice::enroll(app, "users:write challenges:write", fcm("fcm-alice")).await;
    let app = &alice.app;

    let created =
        app.post_json("/v1/challenges", &alice.key, serde_json::json!({ "username": "alice" })).await;
    assert_eq!(created.status, StatusCode::CREATED, "{:?}", created.body);
    let (target, message) = tokio::time::timeout(PATIENCE, pushes.recv()).await.unwrap().unwrap();
    assert_eq!(target, PushTarget::Fcm { token: "fcm-alice".into() });
    assert_eq!(message.challenge_id, created.body["id"].as_str().unwrap());

    // App created, user, enrollment, device, challenge: each event chained without a flush.
    let chained = tokio::time::timeout(PATIENCE, async {
        loop {
            let head = app.store.audit_head().await.unwrap();
            if head.seq >= 5 {
                break head.seq;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the chainer did not chain the recorded events");
    assert!(chained >= 5);
}
