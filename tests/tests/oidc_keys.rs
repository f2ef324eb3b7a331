//! End-to-end: the operator manages the OIDC signing keys with the real binary
//! (`countersign keys rotate|list|revoke`) while a real server serves the JWKS, on SQLite and
//! PostgreSQL. The running server follows each change without a restart.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{Duration, Instant};

use countersign_e2e::{Engine, Server, http, stderr_of, stdout_of};
use serde_json::Value;

async fn jwks(server: &Server) -> (Value, String) {
    let response = http().get(server.url("/oidc/jwks")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let cache = response.headers()["cache-control"].to_str().unwrap().to_owned();
    (response.json().await.unwrap(), cache)
}

fn kids(set: &Value) -> Vec<String> {
    set["keys"].as_array().unwrap().iter().map(|k| k["kid"].as_str().unwrap().to_owned()).collect()
}

/// Polls the server's JWKS until its kids are `expected` (the server re-reads the key table
/// within a second), for at most five seconds.
async fn served_kids_become(server: &Server, expected: &[&str]) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let served = kids(&jwks(server).await.0);
        if served == expected {
            return;
        }
        assert!(Instant::now() < deadline, "served {served:?}, expected {expected:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `keys list` lines as (kid, alg, state).
fn listed(server: &Server) -> Vec<(String, String, String)> {
    let output = server.cli(&["keys", "list"]);
    assert!(output.status.success(), "{}", stderr_of(&output));
    stdout_of(&output)
        .lines()
        .map(|line| {
            let fields: Vec<&str> = line.split('\t').collect();
            (fields[0].to_owned(), fields[1].to_owned(), fields[2].to_owned())
        })
        .collect()
}

fn entry(kid: &str, alg: &str, state: &str) -> (String, String, String) {
    (kid.to_owned(), alg.to_owned(), state.to_owned())
}

async fn operator_rotates_lists_and_revokes_signing_keys(engine: Engine) {
    let server = Server::start(engine).await;
    let (set, cache) = jwks(&server).await;
    assert!(cache.starts_with("public, max-age="), "{cache}");
    let first = kids(&set).remove(0);
    assert_eq!(set["keys"][0]["alg"], "ES256", "a first start creates an ES256 key");
    assert_eq!(listed(&server), [entry(&first, "ES256", "active")]);

    let rotated = server.cli(&["keys", "rotate"]);
    assert!(rotated.status.success(), "{}", stderr_of(&rotated));
    let next = stdout_of(&rotated);
    served_kids_become(&server, &[&first, &next]).await;
    assert_eq!(listed(&server), [entry(&first, "ES256", "active"), entry(&next, "ES256", "pending")]);
    let again = server.cli(&["keys", "rotate", "--alg", "ES256"]);
    assert_eq!(again.status.code(), Some(2), "one rotation at a time");
    assert!(stderr_of(&again).contains("already published"), "{}", stderr_of(&again));

    let revoked = server.cli(&["keys", "revoke", "--kid", &first]);
    assert!(revoked.status.success(), "{}", stderr_of(&revoked));
    let fresh = stdout_of(&revoked);
    assert!(!fresh.is_empty() && fresh != first && fresh != next, "a fresh key replaces it: {fresh}");
    served_kids_become(&server, &[&next, &fresh]).await;
    assert_eq!(
        listed(&server),
        [
            entry(&first, "ES256", "revoked"),
            entry(&next, "ES256", "pending"),
            entry(&fresh, "ES256", "active")
        ]
    );
    let twice = server.cli(&["keys", "revoke", "--kid", &first]);
    assert_eq!(twice.status.code(), Some(2));
    assert!(stderr_of(&twice).contains("already revoked"), "{}", stderr_of(&twice));

    // RS256 for relying parties that need it: the first key signs at once.
    let rsa = server.cli(&["keys", "rotate", "--alg", "RS256"]);
    assert!(rsa.status.success(), "{}", stderr_of(&rsa));
    let rsa = stdout_of(&rsa);
    served_kids_become(&server, &[&next, &fresh, &rsa]).await;
    assert!(listed(&server).contains(&entry(&rsa, "RS256", "active")));
    let unknown = server.cli(&["keys", "rotate", "--alg", "HS256"]);
    assert_eq!(unknown.status.code(), Some(2));
    assert!(stderr_of(&unknown).contains("unsupported signing algorithm"), "{}", stderr_of(&unknown));

    let listing = stdout_of(&server.cli(&["keys", "list"]));
    let (set, _) = jwks(&server).await;
    for key in set["keys"].as_array().unwrap() {
        let public = key.get("x").or(key.get("n")).unwrap().as_str().unwrap();
        assert!(!listing.contains(public), "the listing shows no key material");
        let chain = key["x5c"].as_array().unwrap_or_else(|| panic!("Entra requires x5c: {key}"));
        assert_eq!(chain.len(), 1, "{key}");
        assert!(key["x5t#S256"].is_string() && key["x5t"].is_string(), "{key}");
    }
    let verified = server.cli(&["audit", "verify"]);
    assert!(verified.status.success(), "{}", stdout_of(&verified));
}

#[tokio::test]
async fn operator_rotates_lists_and_revokes_signing_keys_on_sqlite() {
    operator_rotates_lists_and_revokes_signing_keys(Engine::Sqlite).await;
}

#[tokio::test]
async fn operator_rotates_lists_and_revokes_signing_keys_on_postgres() {
    operator_rotates_lists_and_revokes_signing_keys(Engine::Postgres).await;
}
