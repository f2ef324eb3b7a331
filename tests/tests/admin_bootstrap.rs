//! End-to-end: `countersign admin bootstrap` with the real binary, on SQLite and PostgreSQL — a
//! 256-bit token printed once (never by `serve`), accepted by the running server's bootstrap
//! page API, audited; a bad `--ttl` and a plane with two active admins refused with a message.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use countersign_e2e::{Engine, Server, exec_sql, http, query_strings, stderr_of, stdout_of};

/// How many events `audit verify` finds (it must find the chain intact).
fn audited_events(server: &Server) -> usize {
    let verified = server.cli(&["audit", "verify"]);
    assert!(verified.status.success(), "{}", stdout_of(&verified));
    let out = stdout_of(&verified);
    out.trim().trim_start_matches("audit chain intact: ").trim_end_matches(" events").parse().unwrap()
}

/// Two active admins, as an approved roster would have them.
fn two_admins_sql(engine: Engine) -> &'static str {
    match engine {
        Engine::Sqlite => {
            "INSERT INTO admins (id, name, role, status, webauthn_handle, created_at, created_by) VALUES
             ('00000000-0000-4000-8000-000000000001', 'alice', 'admin', 'active', x'01', 0, 'cli'),
             ('00000000-0000-4000-8000-000000000002', 'bob', 'admin', 'active', x'02', 0, 'cli')"
        }
        Engine::Postgres => {
            "INSERT INTO admins (id, name, role, status, webauthn_handle, created_at, created_by) VALUES
             ('00000000-0000-4000-8000-000000000001', 'alice', 'admin', 'active', '\\x01', now(), 'cli'),
             ('00000000-0000-4000-8000-000000000002', 'bob', 'admin', 'active', '\\x02', now(), 'cli')"
        }
    }
}

async fn operator_bootstraps_the_admin_plane(engine: Engine) {
    let server = Server::start(engine).await;
    let events_before = audited_events(&server);

    let created = server.cli(&["admin", "bootstrap"]);
    assert!(created.status.success(), "{}", stderr_of(&created));
    let token = stdout_of(&created).trim().to_owned();
    assert_eq!(token.len(), 43, "256 random bits, base64url: {token}");
    assert!(stderr_of(&created).contains("shown only this once"), "{}", stderr_of(&created));
    let stored =
        query_strings(&server.database, "SELECT CAST(COUNT(*) AS TEXT) FROM admin_bootstrap_tokens").await;
    assert_eq!(stored, ["1"]);

    // The running server accepts it at the bootstrap page's first step.
    let origin = server.url("").trim_end_matches('/').to_owned();
    let options = http()
        .post(server.url("/admin/api/bootstrap/options"))
        .header("Origin", &origin)
        .json(&serde_json::json!({ "token": token, "name": "alice" }))
        .send()
        .await
        .unwrap();
    assert_eq!(options.status(), 200);
    let cookie = options.headers().get("set-cookie").unwrap().to_str().unwrap().to_owned();
    assert!(cookie.starts_with("__Host-countersign-admin-login="), "{cookie}");
    let body: serde_json::Value = options.json().await.unwrap();
    assert_eq!(body["public_key"]["authenticatorSelection"]["residentKey"], "required");
    let wrong = http()
        .post(server.url("/admin/api/bootstrap/options"))
        .header("Origin", &origin)
        .json(&serde_json::json!({ "token": "not-the-token", "name": "alice" }))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 404);

    let bad_ttl = server.cli(&["admin", "bootstrap", "--ttl", "2d"]);
    assert!(!bad_ttl.status.success());
    assert!(stderr_of(&bad_ttl).contains("between 1m and 24h"), "{}", stderr_of(&bad_ttl));

    exec_sql(&server.database, two_admins_sql(engine)).await.unwrap();
    let closed = server.cli(&["admin", "bootstrap", "--ttl", "5m"]);
    assert!(!closed.status.success());
    assert!(stdout_of(&closed).is_empty(), "no token printed: {}", stdout_of(&closed));
    assert!(stderr_of(&closed).contains("already has two active admins"), "{}", stderr_of(&closed));

    // The token's creation is audited, with the command line as actor; the token never logged.
    assert!(audited_events(&server) > events_before);
    let audited = query_strings(
        &server.database,
        "SELECT actor FROM audit_events WHERE action = 'admin.bootstrap_token_created'",
    )
    .await;
    assert_eq!(audited, ["cli"]);
    assert!(!server.logs().contains(&token), "the token is never in the server's logs");
}

#[tokio::test]
async fn operator_bootstraps_the_admin_plane_on_sqlite() {
    operator_bootstraps_the_admin_plane(Engine::Sqlite).await;
}

#[tokio::test]
async fn operator_bootstraps_the_admin_plane_on_postgres() {
    operator_bootstraps_the_admin_plane(Engine::Postgres).await;
}
