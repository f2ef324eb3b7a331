//! End-to-end: the real `countersign` server and the real `countersign-authenticator`, on
//! SQLite and PostgreSQL — provision, enroll from the activation URI, list, revoke, refused.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use countersign_e2e::{Engine, Server, authenticator, create_app, http, new_enrollment};
use serde_json::{Value, json};

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).trim().to_owned()
}

async fn enroll_list_revoke(engine: Engine) {
    let server = Server::start(engine).await;
    let key = create_app(&server, "idp", "users:read users:write");
    let client = http();
    let enrollment = new_enrollment(&server, &key, "alice", false).await;
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

    let devices: Value = client
        .get(server.url("/v1/users/alice/devices"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
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

    // A second device needs explicit intent, and the first device is told about it.
    let second = new_enrollment(&server, &key, "alice", true).await;
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
