//! "Verify now" on both engines: any admin (auditors too) has the whole audit chain walked in
//! the background and sees whether it is intact; a tampered trail is reported with where it
//! breaks, and the verification itself is audited.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[macro_use]
mod common;

use std::time::Duration;

use axum::http::StatusCode;
use common::admin::AdminClient;
use common::{TestApp, assert_error, audit_actions};
use countersign::admin::model::Role;
use countersign::app::HttpLimits;
use countersign_e2e::{Engine, Tamper, drop_audit_guard_sql, exec_sql};
use serde_json::{Value, json};

/// Starts a verification and follows it until it is no longer running.
async fn verify(app: &TestApp, admin: &AdminClient) -> Value {
    let started = app.admin_post(admin, "/admin/api/audit/verifications", json!({})).await;
    assert_eq!(started.status, StatusCode::ACCEPTED, "{}", started.body);
    for _ in 0..500 {
        let latest = app.admin_get(admin, "/admin/api/audit/verification").await;
        assert_eq!(latest.status, StatusCode::OK, "{}", latest.body);
        if latest.body["state"] != "running" {
            return latest.body;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the verification did not finish");
}

async fn an_auditor_verifies_an_intact_chain(engine: Engine) {
    let app = TestApp::build(engine, HttpLimits::default()).await;
    let auditor = app.signed_in_admin("auditor", Role::Auditor).await;
    let none = app.admin_get(&auditor, "/admin/api/audit/verification").await;
    assert_error(&none, StatusCode::NOT_FOUND, "not_found");
    let done = verify(&app, &auditor).await;
    assert_eq!(done["state"], "intact", "{done}");
    assert!(done["events"].as_i64().unwrap() >= 2, "{done}");
    assert_eq!(done["requested_by"], format!("admin:{}", auditor.id));
    let recorded = audit_actions(&app).await.into_iter().find(|(a, _)| a == "audit.verified").unwrap();
    assert_eq!(recorded.1["outcome"], "intact");
}

/// Attack: someone with database access rewrites an event. The dashboard's "verify now" says
/// the chain is broken, and where.
async fn verify_now_reports_a_tampered_chain(engine: Engine) {
    let app = TestApp::build(engine, HttpLimits::default()).await;
    let auditor = app.signed_in_admin("auditor", Role::Auditor).await;
    for name in ["a", "b", "c", "d"] {
        app.signed_in_admin(name, Role::Helpdesk).await;
    }
    countersign::audit::flush(app.store.as_ref()).await.unwrap();
    exec_sql(&app.db, drop_audit_guard_sql(engine)).await.unwrap();
    exec_sql(&app.db, Tamper::Modify.sql()).await.unwrap();
    let done = verify(&app, &auditor).await;
    assert_eq!(done["state"], "broken", "{done}");
    assert_eq!(done["broken_at"], 3, "{done}");
    assert!(done["message"].as_str().unwrap().contains("sequence number 3"), "{done}");
}

on_both_engines!(an_auditor_verifies_an_intact_chain, verify_now_reports_a_tampered_chain);
