//! End-to-end: the real `countersign` server and the real `countersign-authenticator`, on
//! SQLite and PostgreSQL — provision, enroll from the activation URI, list, revoke, refused.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use countersign_e2e::{
    Engine, Server, authenticator, create_app, get_json, http, new_enrollment, operator_cli,
    operator_enrollment, recovery_enrollment, start_challenge,
};
use serde_json::{Value, json};

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).trim().to_owned()
}

async fn enroll_list_revoke(engine: Engine) {
    let server = Server::start(engine).await;
    let key = create_app(&server, "idp", "users:read users:write challenges:read challenges:write");
    let client = http();
    let enrollment = new_enrollment(&server, &key, "alice", None).await;
    let uri = enrollment["activation_uri"].as_str().unwrap();
    assert!(uri.starts_with("countersign://enroll?v=1&server="), "{uri}");

    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("phone.json");
    let enrolled = authenticator(&state, &["enroll", uri, "--yes", "--name", "Alice's test phone"]);
    assert!(enrolled.status.success(), "{}", text(&enrolled.stderr));
    let device_id = text(&enrolled.stdout);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&state).unwrap().permissions().mode() & 0o777,
            0o600,
            "the key file is private"
        );
    }

    let devices = get_json(&server, &key, "/v1/users/alice/devices").await;
    assert_eq!(devices[0]["id"], device_id.as_str());
    assert_eq!(devices[0]["name"], "Alice's test phone");

    let pending = authenticator(&state, &["pending", "--json"]);
    assert!(pending.status.success(), "{}", text(&pending.stderr));
    assert_eq!(serde_json::from_slice::<Value>(&pending.stdout).unwrap(), json!([]));

    // The used code cannot enroll a second phone.
    let other = dir.path().join("other.json");
    let reused = authenticator(&other, &["enroll", uri, "--yes"]);
    assert_eq!(reused.status.code(), Some(1));
    assert!(text(&reused.stderr).starts_with("error: activation_code_used"), "{}", text(&reused.stderr));

    // A second device needs the user's approval on the first, and the first device is told.
    let created = start_challenge(&server, &key, "alice").await;
    let (approval, number) = (created["id"].as_str().unwrap(), created["number"].as_str().unwrap());
    let approved = authenticator(&state, &["approve", approval, "--number", number]);
    assert_eq!(text(&approved.stdout), "approved", "{}", text(&approved.stderr));
    let second = new_enrollment(&server, &key, "alice", Some(approval)).await;
    let tablet = dir.path().join("tablet.json");
    let added = authenticator(
        &tablet,
        &["enroll", second["activation_uri"].as_str().unwrap(), "--yes", "--name", "Alice's tablet"],
    );
    assert!(added.status.success(), "{}", text(&added.stderr));
    let notices = authenticator(&state, &["notices", "--json"]);
    assert!(notices.status.success(), "{}", text(&notices.stderr));
    let notices: Value = serde_json::from_slice(&notices.stdout).unwrap();
    assert_eq!(notices[0]["kind"], "device_enrolled");
    assert_eq!(notices[0]["details"]["device_name"], "Alice's tablet");

    let revoked = client
        .delete(server.url(&format!("/v1/users/alice/devices/{device_id}")))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(revoked.status(), 204);
    let refused = authenticator(&state, &["pending"]);
    assert_eq!(refused.status.code(), Some(1), "{}", text(&refused.stdout));
    assert!(text(&refused.stderr).starts_with("error: device_revoked"), "{}", text(&refused.stderr));

    let verified = server.cli(&["audit", "verify"]);
    assert!(verified.status.success(), "{}", text(&verified.stdout));
    assert!(
        !server.logs().contains(enrollment["activation_code"].as_str().unwrap()),
        "no activation code in logs"
    );
}

#[tokio::test]
async fn enroll_list_revoke_on_sqlite() {
    enroll_list_revoke(Engine::Sqlite).await;
}

#[tokio::test]
async fn enroll_list_revoke_on_postgres() {
    enroll_list_revoke(Engine::Postgres).await;
}

/// A user lost the phone, or needs a second one with nothing to approve on: the operator issues
/// a recovery enrollment with the real binary (`countersign enrollments create --user U
/// --recovery`), printed once. An app alone cannot do this, nor the CLI without `--recovery`;
/// the existing device is told about the new one.
async fn operator_recovery_enrollment_adds_a_device(engine: Engine) {
    let server = Server::start(engine).await;
    let key = create_app(&server, "idp", "users:read users:write");
    let client = http();
    let dir = tempfile::tempdir().unwrap();
    let phone = dir.path().join("phone.json");
    let first = new_enrollment(&server, &key, "alice", None).await;
    let enrolled = authenticator(&phone, &["enroll", first["activation_uri"].as_str().unwrap(), "--yes"]);
    assert!(enrolled.status.success(), "{}", text(&enrolled.stderr));

    let refused = client
        .post(server.url("/v1/users/alice/enrollments"))
        .bearer_auth(&key)
        .json(&json!({ "second_device": true }))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 403);
    assert_eq!(refused.json::<Value>().await.unwrap()["error"], "second_factor_proof_required");
    let plain = operator_enrollment(&server, "alice", &[]);
    assert_eq!(plain.status.code(), Some(2), "{}", text(&plain.stdout));
    assert!(text(&plain.stderr).contains("--recovery"), "{}", text(&plain.stderr));

    let uri = recovery_enrollment(&server, "alice");
    assert!(uri.starts_with("countersign://enroll?v=1&server="), "{uri}");
    let tablet = dir.path().join("tablet.json");
    let added = authenticator(&tablet, &["enroll", &uri, "--yes", "--name", "Alice's new phone"]);
    assert!(added.status.success(), "{}", text(&added.stderr));
    let reused = authenticator(&dir.path().join("other.json"), &["enroll", &uri, "--yes"]);
    assert!(text(&reused.stderr).starts_with("error: activation_code_used"), "{}", text(&reused.stderr));

    let notices = authenticator(&phone, &["notices", "--json"]);
    assert!(notices.status.success(), "{}", text(&notices.stderr));
    let notices: Value = serde_json::from_slice(&notices.stdout).unwrap();
    assert_eq!(notices[0]["kind"], "device_enrolled");
    assert_eq!(notices[0]["details"]["device_name"], "Alice's new phone");
    let devices = get_json(&server, &key, "/v1/users/alice/devices").await;
    assert_eq!(devices.as_array().unwrap().len(), 2);
    let verified = server.cli(&["audit", "verify"]);
    assert!(verified.status.success(), "{}", text(&verified.stdout));
}

/// The operator's passkey link with the real binary (`countersign enrollments passkey-link`):
/// refused without `--recovery` for a user who has a phone, printed once with it, and the
/// running server opens its page saying the help desk issued it. (The ceremony on that page is
/// `server/tests/passkey_pages.rs`'s and, in a browser, `browser.rs`'s.)
async fn operator_passkey_link_opens_the_registration_page(engine: Engine) {
    let server = Server::start(engine).await;
    let key = create_app(&server, "idp", "users:read users:write");
    let dir = tempfile::tempdir().unwrap();
    let phone = dir.path().join("phone.json");
    let first = new_enrollment(&server, &key, "alice", None).await;
    let enrolled = authenticator(&phone, &["enroll", first["activation_uri"].as_str().unwrap(), "--yes"]);
    assert!(enrolled.status.success(), "{}", text(&enrolled.stderr));

    let plain = operator_cli(&server, &["enrollments", "passkey-link", "--user", "alice"]);
    assert_eq!(plain.status.code(), Some(2), "{}", text(&plain.stdout));
    assert!(text(&plain.stderr).contains("--recovery"), "{}", text(&plain.stderr));
    assert!(plain.stdout.is_empty(), "nothing printed when refused");
    let unknown = operator_cli(&server, &["enrollments", "passkey-link", "--user", "nobody", "--recovery"]);
    assert_eq!(unknown.status.code(), Some(2));

    let made = operator_cli(
        &server,
        &["enrollments", "passkey-link", "--user", "alice", "--recovery", "--name", "Laptop"],
    );
    assert!(made.status.success(), "{}", text(&made.stderr));
    let url = text(&made.stdout).trim().to_owned();
    assert!(url.contains("/passkeys/enroll?code="), "{url}");
    let page = http().get(&url).send().await.unwrap();
    assert_eq!(page.status(), 200, "{url}");
    let html = page.text().await.unwrap();
    assert!(html.contains("alice") && html.contains("Issued by your administrator"), "{html}");
    let verified = server.cli(&["audit", "verify"]);
    assert!(verified.status.success(), "{}", text(&verified.stdout));
}

#[tokio::test]
async fn operator_passkey_link_opens_the_registration_page_on_sqlite() {
    operator_passkey_link_opens_the_registration_page(Engine::Sqlite).await;
}

#[tokio::test]
async fn operator_passkey_link_opens_the_registration_page_on_postgres() {
    operator_passkey_link_opens_the_registration_page(Engine::Postgres).await;
}

#[tokio::test]
async fn operator_recovery_enrollment_adds_a_device_on_sqlite() {
    operator_recovery_enrollment_adds_a_device(Engine::Sqlite).await;
}

#[tokio::test]
async fn operator_recovery_enrollment_adds_a_device_on_postgres() {
    operator_recovery_enrollment_adds_a_device(Engine::Postgres).await;
}
