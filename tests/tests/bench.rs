//! End-to-end: `countersign-bench` (crate `authenticator`) against the real server. Every flow succeeds, the report adds
//! up, and the audit trail holds exactly the events the flows made: on SQLite, and across two
//! instances sharing one PostgreSQL (phones answer through the second instance while the app
//! long-polls the first, so each wake-up crosses LISTEN/NOTIFY).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use std::process::Command;

use countersign_e2e::{
    Engine, Server, TestDatabase, binary, create_app, random_master_key, stderr_of, stdout_of,
};
use serde_json::Value;

const FLOWS: u64 = 24;

fn bench(app_side: &Server, device_side: &Server, key: &str) -> Value {
    let output = Command::new(binary("countersign-bench"))
        .env_remove("COUNTERSIGN_BENCH_API_KEY")
        .args([
            "--url",
            &app_side.base_url,
            "--device-url",
            &device_side.base_url,
            "--api-key",
            key,
            "--concurrency",
            "4",
            "--flows",
            &FLOWS.to_string(),
            "--json",
        ])
        .output()
        .unwrap();
    assert!(output.status.success(), "bench failed: {}\n{}", stdout_of(&output), stderr_of(&output));
    serde_json::from_str(&stdout_of(&output)).unwrap()
}

fn assert_report_adds_up(report: &Value) {
    assert_eq!(report["flows_ok"], FLOWS, "{report}");
    assert_eq!(report["flows_failed"], 0, "{report}");
    assert_eq!(report["errors"], serde_json::json!({}), "{report}");
    assert!(report["flows_per_sec"].as_f64().unwrap() > 0.0, "{report}");
    for step in ["create", "fetch", "approve", "redeem", "flow"] {
        let (p50, p99) = (report[step]["p50_ms"].as_f64().unwrap(), report[step]["p99_ms"].as_f64().unwrap());
        assert!(p50 > 0.0 && p50 <= p99, "{step}: {report}");
    }
    assert!(report["flow"]["p50_ms"].as_f64() >= report["create"]["p50_ms"].as_f64(), "{report}");
    assert!(report["wake_up"]["p99_ms"].as_f64().unwrap() >= 0.0, "{report}");
}

/// The OIDC signing key the first start created (one, however many instances started), one app,
/// then per user: user, enrollment, device; per flow: created, approved, redeemed.
fn assert_audit_holds_every_flow(server: &Server, users: u64) {
    let verified = server.cli(&["audit", "verify"]);
    assert!(verified.status.success(), "{}", stdout_of(&verified));
    let expected = 1 + 1 + 3 * users + 3 * FLOWS;
    assert_eq!(stdout_of(&verified).trim(), format!("audit chain intact: {expected} events"));
}

#[tokio::test]
async fn bench_runs_full_flows_on_sqlite() {
    let server = Server::start(Engine::Sqlite).await;
    let key = create_app(&server, "bench", "users:write challenges:write challenges:read");
    let report = bench(&server, &server, &key);
    assert_report_adds_up(&report);
    // Four workers run six flows each, with two users apiece: at most four prompts per user.
    assert_eq!(report["users"], 8, "{report}");
    assert_audit_holds_every_flow(&server, 8);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_across_two_instances_on_postgres() {
    let db = Arc::new(TestDatabase::new(Engine::Postgres).await);
    let master = random_master_key();
    // Instances behind one load balancer share one public URL: phones pin it, not an instance.
    let shared = [("COUNTERSIGN_PUBLIC_URL", "http://127.0.0.1:8443")];
    let a = Server::start_with(Arc::clone(&db), master.clone(), &shared).await;
    let b = Server::start_with(Arc::clone(&db), master, &shared).await;
    let key = create_app(&a, "bench", "users:write challenges:write challenges:read");
    let report = bench(&a, &b, &key);
    assert_report_adds_up(&report);
    assert_audit_holds_every_flow(&a, 8);
}
