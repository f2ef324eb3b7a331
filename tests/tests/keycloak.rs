//! End-to-end: a Keycloak realm signing users in with Countersign over Keycloak's CIBA HTTP
//! authentication channel, through the real `countersign` binary on SQLite and PostgreSQL. A
//! small fake Keycloak publishes its realm keys, signs delegation tokens and posts delegation
//! requests to `/keycloak/ciba` with the number as `binding_message`; the reference
//! authenticator approves or denies; the fake records the outcome callbacks and the test
//! checks Keycloak's contract: the same bearer token back, a JSON `status`, sent once.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;
use std::sync::Arc;

use countersign_e2e::fake_keycloak::{Callback, FakeKeycloak};
use countersign_e2e::{
    Engine, Server, TestDatabase, authenticator, create_app, eventually, new_enrollment, random_master_key,
    stderr_of, stdout_of,
};
use serde_json::{Value, json};

const ALICE_SUB: &str = "4a1f6c2e-7d3b-4e55-9a0c-1b2d3e4f5a6b";

/// The one answered callback presenting `token`, once it has arrived (and any refused ones).
async fn delivered(keycloak: &FakeKeycloak, token: &str) -> Vec<Callback> {
    let arrived = eventually(20, || {
        let callbacks = keycloak.callbacks_for(token);
        callbacks.iter().any(|c| c.answered == 200).then_some(callbacks)
    })
    .await;
    arrived.unwrap_or_else(|| panic!("no callback delivered; received {:?}", keycloak.callbacks()))
}

fn assert_status(callback: &Callback, status: &str) {
    assert_eq!(callback.body, json!({ "status": status }));
    assert!(callback.content_type.as_deref().is_some_and(|c| c.starts_with("application/json")));
}

async fn keycloak_flow(engine: Engine) {
    let keycloak = FakeKeycloak::start().await;
    let database = Arc::new(TestDatabase::new(engine).await);
    let master = random_master_key();

    // The operator enrolls alice's phone with the server running plain.
    let plain = Server::start_with(Arc::clone(&database), master.clone(), &[]).await;
    let app_key = create_app(&plain, "directory", "users:read users:write");
    let dir = tempfile::tempdir().unwrap();
    let phone: PathBuf = dir.path().join("alice.json");
    let enrollment = new_enrollment(&plain, &app_key, "alice", None).await;
    let enrolled =
        authenticator(&phone, &["enroll", enrollment["activation_uri"].as_str().unwrap(), "--yes"]);
    assert!(enrolled.status.success(), "{}", stderr_of(&enrolled));
    let listen = plain.base_url.trim_start_matches("http://").to_owned();
    drop(plain);

    // Then configures the realm (its keys and callback at Keycloak's own paths).
    let config = dir.path().join("countersign.toml");
    let toml = format!(
        "[challenges]\nttl_secs = 10\n\n[[keycloak.realms]]\nissuer = \"{}\"\nname = \"Acme Portal\"\nclients = [\"kiosk\"]\n",
        keycloak.issuer()
    );
    std::fs::write(&config, toml).unwrap();
    let config = config.display().to_string();
    let server = Server::start_custom(
        Arc::clone(&database),
        master,
        &[("COUNTERSIGN_LISTEN", listen.as_str())],
        &["--config", &config],
    )
    .await;
    let channel = server.url("/keycloak/ciba");

    // Approved with the number the kiosk shows: SUCCEED, with Keycloak's own token, once.
    let first = keycloak.token(ALICE_SUB, "kiosk", 120);
    assert_eq!(keycloak.delegate(&channel, &first, "alice", "482").await, 201);
    let pending = authenticator(&phone, &["pending", "--json"]);
    let pending: Vec<Value> = serde_json::from_str(&stdout_of(&pending)).unwrap();
    assert_eq!(pending.len(), 1);
    assert!(pending[0].to_string().contains("Acme Portal"), "the phone names who asks: {pending:?}");
    assert!(!pending[0].to_string().contains("\"482\""), "the phone is never told the number");
    let id = pending[0]["id"].as_str().unwrap().to_owned();
    let approved = authenticator(&phone, &["approve", &id, "--number", "482"]);
    assert_eq!(stdout_of(&approved), "approved", "{}", stderr_of(&approved));
    let callbacks = delivered(&keycloak, &first).await;
    assert_eq!(callbacks.len(), 1, "sent once: {callbacks:?}");
    assert_status(&callbacks[0], "SUCCEED");

    // Denied, with Keycloak's callback down once: retried, then UNAUTHORIZED delivered once.
    keycloak.answer_next(&[503]);
    let second = keycloak.token(ALICE_SUB, "kiosk", 120);
    assert_eq!(keycloak.delegate(&channel, &second, "alice", "517").await, 201);
    let pending = authenticator(&phone, &["pending", "--json"]);
    let pending: Vec<Value> = serde_json::from_str(&stdout_of(&pending)).unwrap();
    let id = pending[0]["id"].as_str().unwrap().to_owned();
    let denied = authenticator(&phone, &["deny", &id]);
    assert_eq!(stdout_of(&denied), "denied", "{}", stderr_of(&denied));
    let callbacks = delivered(&keycloak, &second).await;
    let answered: Vec<u16> = callbacks.iter().map(|c| c.answered).collect();
    assert_eq!(answered, [503, 200], "retried after no success, never after one");
    callbacks.iter().for_each(|c| assert_status(c, "UNAUTHORIZED"));

    // Nobody to prompt (unknown user): the same 201, and CANCELLED when an unanswered prompt
    // would have expired (ttl_secs = 10).
    let third = keycloak.token("5f5f5f5f-0000-4000-8000-000000000001", "kiosk", 120);
    assert_eq!(keycloak.delegate(&channel, &third, "nobody", "630").await, 201);
    let callbacks = delivered(&keycloak, &third).await;
    assert_eq!(callbacks.len(), 1);
    assert_status(&callbacks[0], "CANCELLED");

    // A forged request (the same token again) is refused and owes no callback.
    assert_eq!(keycloak.delegate(&channel, &first, "alice", "739").await, 409);
    assert_eq!(keycloak.callbacks_for(&first).len(), 1, "the first sign-in was called back once only");
    assert_eq!(keycloak.callbacks().len(), 4, "{:?}", keycloak.callbacks());
}

#[tokio::test]
async fn a_keycloak_realm_signs_in_through_the_real_binary_on_sqlite() {
    keycloak_flow(Engine::Sqlite).await;
}

#[tokio::test]
async fn a_keycloak_realm_signs_in_through_the_real_binary_on_postgres() {
    keycloak_flow(Engine::Postgres).await;
}
