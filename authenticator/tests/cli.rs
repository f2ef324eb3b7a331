//! The real binary against the fake server: exit codes and the stdout/stderr formats that
//! end-to-end tests and scripts rely on.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::{Output, Stdio};

use common::{Fixture, Recorded, serve};
use countersign_authenticator::cli::STATE_ENV;
use countersign_authenticator::state::StateFile;
use countersign_authenticator::terminal;
use countersign_mobile_protocol::{ChallengeResponse, Decision, EnrollmentRequest, PushRegistration};
use tokio::io::AsyncWriteExt as _;

/// Runs the binary with `--state state` and `stdin` as standard input.
async fn run(state: &Path, args: &[&str], stdin: &str) -> Output {
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_countersign-authenticator"))
        .env_remove(STATE_ENV)
        .arg("--state")
        .arg(state)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    // A command refused before it reads anything (a usage error) may exit before we write.
    if let Err(error) = input.write_all(stdin.as_bytes()).await {
        assert_eq!(error.kind(), std::io::ErrorKind::BrokenPipe, "{error}");
    }
    drop(input);
    child.wait_with_output().await.unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8(bytes.to_vec()).unwrap()
}

fn uri(server: &str) -> String {
    format!(
        "countersign://enroll?v=1&server={}&code=K7Q2-MX9P&user=alice%40example.com",
        common::percent_encode(server)
    )
}

fn decision_of(request: &Recorded) -> (Decision, String) {
    let response: ChallengeResponse = serde_json::from_slice(&request.body).unwrap();
    (response.answer.decision, response.answer.number)
}

#[tokio::test]
async fn enroll_prints_the_device_id_keeps_a_0600_state_and_refuses_to_overwrite_it() {
    let fixture = Fixture::new();
    let account = serde_json::to_string(&fixture.account).unwrap();
    let (base, server) = serve(vec![Box::new(move |_| (201, account))]).await;
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("phone.json");
    let uri = uri(base.as_str());

    let output = run(
        &state,
        &[
            "enroll",
            &uri,
            "--yes",
            "--name",
            "ci phone",
            "--push",
            &format!("apns:{}:sandbox", "ab12".repeat(16)),
        ],
        "",
    )
    .await;

    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    assert_eq!(text(&output.stdout), "dev-1\n");
    assert_eq!(std::fs::metadata(&state).unwrap().permissions().mode() & 0o777, 0o600);
    let saved = StateFile::new(&state).load_account().unwrap();
    assert_eq!(saved.enrollment, fixture.account);
    assert_eq!(
        (saved.state.server, saved.state.username.as_str(), saved.state.last_counter),
        (base.clone(), "alice@example.com", 0)
    );
    let [request] = <[Recorded; 1]>::try_from(server.await.unwrap()).unwrap();
    let sent: EnrollmentRequest = serde_json::from_slice(&request.body).unwrap();
    sent.verify(&base).unwrap();
    assert_eq!(sent.enrollment.device_name, "ci phone");
    assert!(matches!(sent.enrollment.push, PushRegistration::Apns { .. }));

    let again = run(&state, &["enroll", &uri, "--yes"], "").await;

    assert_eq!(again.status.code(), Some(2));
    assert!(text(&again.stderr).contains("already holds device dev-1"), "{}", text(&again.stderr));
    assert!(text(&again.stderr).contains("--force"));
    assert_eq!(StateFile::new(&state).load_account().unwrap().enrollment, fixture.account);
}

#[tokio::test]
async fn enroll_shows_server_and_user_and_sends_nothing_unless_confirmed() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("phone.json");

    // Port 9 (discard): had anything been sent, the error would be a network error (exit 3).
    let output = run(&state, &["enroll", &uri("http://127.0.0.1:9")], "n\n").await;

    assert_eq!(output.status.code(), Some(2));
    let stderr = text(&output.stderr);
    assert!(stderr.contains("server: 127.0.0.1:9 (http://127.0.0.1:9)"), "{stderr}");
    assert!(stderr.contains("user:   alice@example.com"), "{stderr}");
    assert!(stderr.contains("error: enrollment not confirmed"), "{stderr}");
    assert!(output.stdout.is_empty());
    assert!(!state.exists(), "no key is kept for an enrollment that was not confirmed");
}

#[tokio::test]
async fn approve_prints_the_outcome_word_and_a_refusal_exits_1_with_the_code() {
    let fixture = Fixture::new();
    let details = fixture.details("ch-1");
    let signed = fixture.signed_json(&details, &fixture.server_key).to_string();
    let signed_again = signed.clone();
    let (base, server) = serve(vec![
        Box::new(move |_| (200, signed)),
        Box::new(|_| (200, r#"{"outcome":"denied_wrong_number"}"#.to_owned())),
        Box::new(move |_| (200, signed_again)),
        Box::new(|_| {
            (410, r#"{"error":"challenge_expired","message":"too late","request_id":"r-9"}"#.to_owned())
        }),
    ])
    .await;
    let dir = tempfile::tempdir().unwrap();
    let state = fixture.state_file(&dir, &base);

    let approved = run(state.path(), &["approve", "ch-1", "--number", "042"], "").await;
    let denied = run(state.path(), &["deny", "ch-1"], "").await;

    assert_eq!(approved.status.code(), Some(0), "{}", text(&approved.stderr));
    assert_eq!(text(&approved.stdout), "denied_wrong_number\n");
    assert!(text(&approved.stderr).contains("someone else may be trying"));
    assert_eq!(denied.status.code(), Some(1));
    assert!(denied.stdout.is_empty());
    assert_eq!(text(&denied.stderr), "error: challenge_expired: too late\nrequest id: r-9\n");
    let requests = server.await.unwrap();
    assert_eq!(decision_of(&requests[1]), (Decision::Approve, "042".to_owned()));
    assert_eq!(decision_of(&requests[3]), (Decision::Deny, String::new()));
    assert_eq!(state.load().unwrap().last_counter, 2);
}

#[tokio::test]
async fn pending_json_lists_only_verified_challenges() {
    let fixture = Fixture::new();
    let good = fixture.details("ch-good");
    let list = serde_json::json!({"challenges": [
        fixture.signed_json(&good, &fixture.server_key),
        fixture.signed_json(&fixture.details("ch-forged"), &fixture.stranger_key()),
    ]});
    let (base, _server) = serve(vec![Box::new(move |_| (200, list.to_string()))]).await;
    let dir = tempfile::tempdir().unwrap();
    let state = fixture.state_file(&dir, &base);

    let output = run(state.path(), &["pending", "--json"], "").await;

    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(
        json,
        serde_json::json!([{
            "id": "ch-good", "app_name": "Payroll", "ip": "203.0.113.7", "user_agent": "Firefox/125.0",
            "location": "Berlin, DE", "created_at": good.created_at, "expires_at": good.expires_at,
        }])
    );
    assert!(text(&output.stderr).contains("warning: discarded challenge ch-forged"));
}

#[tokio::test]
async fn watch_once_answers_each_challenge_from_stdin() {
    let fixture = Fixture::new();
    let list = serde_json::json!({"challenges": [
        fixture.signed_json(&fixture.details("ch-1"), &fixture.server_key),
        fixture.signed_json(&fixture.details("ch-2"), &fixture.server_key),
        fixture.signed_json(&fixture.details("ch-3"), &fixture.server_key),
    ]});
    let (base, server) = serve(vec![
        Box::new(move |_| (200, list.to_string())),
        Box::new(|_| (200, r#"{"outcome":"approved"}"#.to_owned())),
        Box::new(|_| (200, r#"{"outcome":"reported"}"#.to_owned())),
    ])
    .await;
    let dir = tempfile::tempdir().unwrap();
    let state = fixture.state_file(&dir, &base);

    // "12x" is re-prompted; the empty line skips ch-3.
    let output = run(state.path(), &["watch", "--once"], "12x\n042\nr\n\n").await;

    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let stdout = text(&output.stdout);
    assert!(stdout.starts_with("challenge ch-1\n  app:        Payroll\n"), "{stdout}");
    let lines: Vec<&str> = stdout.lines().collect();
    let prompts = lines.iter().filter(|line| **line == terminal::ANSWER_PROMPT).count();
    assert_eq!(prompts, 4, "ch-1 is asked twice: {stdout}");
    let results: Vec<&str> =
        lines.into_iter().filter(|line| ["approved", "reported", "skipped"].contains(line)).collect();
    assert_eq!(results, ["approved", "reported", "skipped"], "{stdout}");
    assert!(text(&output.stderr).contains("must be 1 to 10 digits"));
    let requests = server.await.unwrap();
    assert_eq!(decision_of(&requests[1]), (Decision::Approve, "042".to_owned()));
    assert_eq!(decision_of(&requests[2]), (Decision::Report, String::new()));
    assert_eq!(requests[2].target, "/cs/device/v1/challenges/ch-2/response");
}

#[tokio::test]
async fn a_bad_device_name_is_a_usage_error_before_any_question_or_write() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("phone.json");

    let output = run(&state, &["enroll", &uri("http://127.0.0.1:9"), "--name", "two\nlines"], "y\n").await;

    assert_eq!(output.status.code(), Some(2));
    let stderr = text(&output.stderr);
    assert!(stderr.starts_with("error: device_name is invalid"), "{stderr}");
    assert!(!state.exists());
}

#[tokio::test]
async fn an_exposed_state_file_is_refused_before_any_request() {
    let fixture = Fixture::new();
    let dir = tempfile::tempdir().unwrap();
    let base = countersign_mobile_protocol::ServerUrl::parse("http://127.0.0.1:9").unwrap();
    let state = fixture.state_file(&dir, &base);
    std::fs::set_permissions(state.path(), std::fs::Permissions::from_mode(0o644)).unwrap();

    let output = run(state.path(), &["pending"], "").await;

    assert_eq!(output.status.code(), Some(2));
    let stderr = text(&output.stderr);
    assert!(stderr.starts_with("error: state file "), "{stderr}");
    assert!(stderr.contains("mode 0644") && stderr.contains("chmod 600"), "{stderr}");
}
