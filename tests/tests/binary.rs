//! End-to-end: the real `countersign` binary, its CLI and its HTTP API over loopback, on SQLite
//! and on PostgreSQL.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::Output;
use std::sync::Arc;

use countersign_e2e::{
    Engine, Server, Tamper, TestDatabase, binary, clean_command, create_app, drop_audit_guard_sql, exec_sql,
    http, random_master_key, run_cli, spawn_and_wait_for_address,
};
use serde_json::{Value, json};

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// The README's first command: `countersign serve` in an empty directory, nothing configured.
#[tokio::test]
async fn serves_with_no_setup_on_embedded_sqlite() {
    let cwd = tempfile::tempdir().unwrap();
    let mut command =
        clean_command(&binary("countersign"), &[("COUNTERSIGN_LISTEN".into(), "127.0.0.1:0".into())]);
    command.arg("serve").current_dir(cwd.path());
    let (mut child, base_url, logs) = spawn_and_wait_for_address(command).await;
    let health: Value = http().get(format!("{base_url}/healthz")).send().await.unwrap().json().await.unwrap();
    assert_eq!(health["status"], "ok");
    let ready: Value = http().get(format!("{base_url}/readyz")).send().await.unwrap().json().await.unwrap();
    assert_eq!(ready["database"], "sqlite");
    assert!(cwd.path().join("data/countersign.db").is_file(), "the database is created under ./data");
    assert!(cwd.path().join("data/master.key").is_file(), "the master key is generated beside it");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode =
            |name: &str| std::fs::metadata(cwd.path().join(name)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode("data"), 0o700, "only the server's user may enter its data directory");
        assert_eq!(mode("data/countersign.db"), 0o600, "or read its database");
        assert_eq!(mode("data/master.key"), 0o600);
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let key = std::fs::read_to_string(cwd.path().join("data/master.key")).unwrap();
    assert!(!logs.lock().unwrap().contains(key.trim()), "no secrets in logs");
}

async fn lifecycle(engine: Engine) {
    let mut server = Server::start(engine).await;
    let client = http();
    let key = create_app(&server, "portal", "users:read users:write");
    assert!(key.starts_with("csk_"), "{key}");
    assert!(!server.logs().contains(&key), "the key never reaches the logs");

    let me: Value =
        client.get(server.url("/v1/whoami")).bearer_auth(&key).send().await.unwrap().json().await.unwrap();
    assert_eq!(me["name"], "portal");

    let created = client
        .post(server.url("/v1/users"))
        .bearer_auth(&key)
        .json(&json!({"username": "alice"}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let fetched = client.get(server.url("/v1/users/ALICE")).bearer_auth(&key).send().await.unwrap();
    assert_eq!(fetched.status(), 200);

    // The operator sets a user's passkey policy (apps can only raise it); each change audited.
    let passkey_required = |server: &Server| {
        let (client, url, key) = (client.clone(), server.url("/v1/users/alice"), key.clone());
        async move {
            let user: Value = client.get(url).bearer_auth(&key).send().await.unwrap().json().await.unwrap();
            user["passkey_required"].clone()
        }
    };
    assert_eq!(passkey_required(&server).await, json!(false));
    let set = server.cli(&["users", "passkey-policy", "--user", "alice", "--set", "required"]);
    assert!(set.status.success(), "{}", stderr(&set));
    assert_eq!(passkey_required(&server).await, json!(true));
    let set = server.cli(&["users", "passkey-policy", "--user", "alice", "--set", "default"]);
    assert!(set.status.success(), "{}", stderr(&set));
    assert_eq!(passkey_required(&server).await, json!(false));
    let unknown = server.cli(&["users", "passkey-policy", "--user", "nobody", "--set", "allowed"]);
    assert!(!unknown.status.success() && stderr(&unknown).contains("no such user"), "{}", stderr(&unknown));

    let ready: Value = client.get(server.url("/readyz")).send().await.unwrap().json().await.unwrap();
    assert_eq!(ready["database"], if engine == Engine::Sqlite { "sqlite" } else { "postgres" });
    let metrics = client.get(server.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("route=\"/v1/users\""), "{metrics}");
    assert!(!metrics.contains("alice"), "no user names in metrics");

    let listed = server.cli(&["apps", "list"]);
    assert!(stdout(&listed).contains("portal") && stdout(&listed).contains("active"), "{}", stdout(&listed));
    assert!(!stdout(&listed).contains(&key));
    let revoked = server.cli(&["apps", "revoke", "--name", "portal"]);
    assert!(revoked.status.success(), "{}", stderr(&revoked));
    let refused = client.get(server.url("/v1/whoami")).bearer_auth(&key).send().await.unwrap();
    assert_eq!(refused.status(), 401);
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["error"], "api_key_revoked");

    let verified = server.cli(&["audit", "verify"]);
    assert_eq!(verified.status.code(), Some(0), "{}{}", stdout(&verified), stderr(&verified));
    // Five changes made here, and the OIDC signing key the first start created.
    assert!(stdout(&verified).contains("intact: 6 events"), "{}", stdout(&verified));

    let status = server.terminate();
    assert!(status.success(), "SIGTERM is a clean shutdown: {status:?}\n{}", server.logs());
    assert!(server.logs().contains("stopped"), "{}", server.logs());
}

/// PostgreSQL drops every connection of the server (a failover, a restart, an operator's
/// `pg_terminate_backend`): the request that meets a dead connection gets a clean error, the
/// pool then tests and replaces the others, and the server serves again without a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recovers_when_postgres_drops_its_connections() {
    let server = Server::start(Engine::Postgres).await;
    let key = create_app(&server, "portal", "users:read users:write");
    let client = http();
    // Several users at once, so the pool holds several connections.
    let mut creations = tokio::task::JoinSet::new();
    for i in 0..8 {
        let request = client
            .post(server.url("/v1/users"))
            .bearer_auth(&key)
            .json(&json!({ "username": format!("user{i}") }));
        creations.spawn(async move { request.send().await.unwrap().status() });
    }
    while let Some(status) = creations.join_next().await {
        assert_eq!(status.unwrap(), 201);
    }
    exec_sql(
        &server.database,
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
         WHERE datname = current_database() AND pid <> pg_backend_pid()",
    )
    .await
    .unwrap();
    let mut statuses = Vec::new();
    for i in 0..20 {
        let reply = client
            .get(server.url(&format!("/v1/users/user{}", i % 8)))
            .bearer_auth(&key)
            .send()
            .await
            .unwrap();
        let status = reply.status().as_u16();
        if status != 200 {
            let body: Value = reply.json().await.unwrap();
            assert!(status >= 500 && body["error"].is_string(), "{status} {body}");
        }
        statuses.push(status);
    }
    assert!(
        statuses.iter().filter(|s| **s != 200).count() <= 1,
        "one dead connection is met at most: {statuses:?}"
    );
    assert!(statuses[10..].iter().all(|s| *s == 200), "{statuses:?}");
}

#[tokio::test]
async fn lifecycle_on_sqlite() {
    lifecycle(Engine::Sqlite).await;
}

#[tokio::test]
async fn lifecycle_on_postgres() {
    lifecycle(Engine::Postgres).await;
}

/// `countersign audit verify` names the first broken sequence number for every kind of
/// tampering by someone with database access.
async fn audit_verify_cli_names_each_tampering(engine: Engine) {
    for tamper in Tamper::ALL {
        let db = TestDatabase::new(engine).await;
        let data_dir = tempfile::tempdir().unwrap();
        let env = vec![
            ("COUNTERSIGN_DATABASE__URL".to_owned(), db.url.clone()),
            ("COUNTERSIGN_MASTER_KEY".to_owned(), random_master_key()),
            ("COUNTERSIGN_DATA_DIR".to_owned(), data_dir.path().display().to_string()),
        ];
        for i in 0..5 {
            let created =
                run_cli(&env, &["apps", "create", "--name", &format!("app{i}"), "--scopes", "users:read"]);
            assert!(created.status.success(), "{}", stderr(&created));
        }
        let intact = run_cli(&env, &["audit", "verify"]);
        assert_eq!(intact.status.code(), Some(0), "{}", stdout(&intact));

        exec_sql(&db, drop_audit_guard_sql(engine)).await.unwrap();
        exec_sql(&db, tamper.sql()).await.unwrap();
        let broken = run_cli(&env, &["audit", "verify"]);
        assert_eq!(
            broken.status.code(),
            Some(1),
            "{tamper:?} on {engine:?}: {}{}",
            stdout(&broken),
            stderr(&broken)
        );
        let expected = format!("sequence number {}", tamper.first_broken_seq());
        assert!(stdout(&broken).contains(&expected), "{tamper:?} on {engine:?}: {}", stdout(&broken));
    }
}

#[tokio::test]
async fn audit_verify_cli_on_sqlite() {
    audit_verify_cli_names_each_tampering(Engine::Sqlite).await;
}

#[tokio::test]
async fn audit_verify_cli_on_postgres() {
    audit_verify_cli_names_each_tampering(Engine::Postgres).await;
}

/// Misconfiguration stops the server at start with the key at fault.
#[tokio::test]
async fn bad_configuration_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let base = vec![("COUNTERSIGN_DATA_DIR".to_owned(), dir.path().display().to_string())];
    let with = |extra: &[(&str, &str)]| {
        let mut env = base.clone();
        env.extend(extra.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
        env
    };

    let file = dir.path().join("countersign.toml");
    std::fs::write(&file, "listen = \"127.0.0.1:0\"\n[http]\nbody_limit = 10\n").unwrap();
    let out = run_cli(&base, &["--config", file.to_str().unwrap(), "serve"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("body_limit"), "{}", stderr(&out));

    std::fs::write(&file, "[policy]\ntrusted_networks = [\"10.0.0.0/8\"]\n").unwrap();
    let out = run_cli(&base, &["--config", file.to_str().unwrap(), "serve"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("policy.trusted_networks") && stderr(&out).contains("no MFA exemption"),
        "{}",
        stderr(&out)
    );

    let out = run_cli(&with(&[("COUNTERSIGN_SMS__PROVIDER", "twilio")]), &["serve"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("sms") && stderr(&out).contains("weak factor"), "{}", stderr(&out));

    let out = run_cli(&with(&[("COUNTERSIGN_LISTN", "127.0.0.1:0")]), &["serve"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("listn"), "{}", stderr(&out));

    let out = run_cli(&with(&[("COUNTERSIGN_HTTP__REQUEST_TIMEOUT_SECS", "0")]), &["serve"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("http.request_timeout_secs"), "{}", stderr(&out));

    let out = run_cli(&with(&[("DATABASE_URL", "postgres://cs:hunter2@127.0.0.1:1/cs")]), &["serve"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("master_key"), "PostgreSQL needs a shared master key: {}", stderr(&out));
    assert!(!stderr(&out).contains("hunter2"), "passwords are never printed: {}", stderr(&out));

    let out = run_cli(&base, &["--config", "/nonexistent/countersign.toml", "serve"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("does not exist"), "{}", stderr(&out));
}

/// An unreachable database is reported with the URL's password masked.
#[tokio::test]
async fn unreachable_database_is_reported_without_its_password() {
    let dir = tempfile::tempdir().unwrap();
    let env = vec![
        ("COUNTERSIGN_DATA_DIR".to_owned(), dir.path().display().to_string()),
        ("COUNTERSIGN_DATABASE__URL".to_owned(), "postgres://cs:hunter2@127.0.0.1:1/cs".to_owned()),
        ("COUNTERSIGN_MASTER_KEY".to_owned(), random_master_key()),
    ];
    let out = run_cli(&env, &["migrate"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("postgres://cs:***@127.0.0.1:1/cs"), "{}", stderr(&out));
    assert!(!stderr(&out).contains("hunter2"), "{}", stderr(&out));
}

#[tokio::test]
async fn json_logs_are_one_object_per_line() {
    let db = Arc::new(TestDatabase::new(Engine::Sqlite).await);
    let server = Server::start_custom(db, random_master_key(), &[], &["--log-format", "json"]).await;
    http().get(server.url("/healthz")).send().await.unwrap();
    // The log line is written after the response: wait for it rather than guess a delay.
    let find = || {
        server
            .logs()
            .lines()
            .filter_map(|line| serde_json::from_str::<Value>(line).ok())
            .find(|entry| entry["message"] == "request" && entry["span"]["route"] == "/healthz")
    };
    let request_line = countersign_e2e::eventually(10, find).await;
    let logs = server.logs();
    let entry = request_line.unwrap_or_else(|| panic!("no JSON request log line in:\n{logs}"));
    assert_eq!(entry["status"], 200);
    assert!(entry["span"]["request_id"].as_str().is_some_and(|id| !id.is_empty()), "{entry}");
    assert!(entry.get("spans").is_none(), "one span object per line is enough: {entry}");
}

#[test]
fn help_explains_every_command() {
    let out = run_cli(&[], &["--help"]);
    let text = stdout(&out);
    for command in ["serve", "migrate", "apps", "audit", "enrollments", "users"] {
        assert!(text.contains(command), "{text}");
    }
    let out = run_cli(&[], &["apps", "create", "--help"]);
    assert!(stdout(&out).contains("shown once"), "{}", stdout(&out));
}

/// A server started with a different master key than the database was set up with refuses to
/// start (fail closed) instead of signing with a key phones do not know.
#[tokio::test]
async fn wrong_master_key_refuses_to_start() {
    let db = Arc::new(TestDatabase::new(Engine::Sqlite).await);
    let first = Server::start_with(Arc::clone(&db), random_master_key(), &[]).await;
    drop(first);
    let dir = tempfile::tempdir().unwrap();
    let env = vec![
        ("COUNTERSIGN_LISTEN".to_owned(), "127.0.0.1:0".to_owned()),
        ("COUNTERSIGN_DATA_DIR".to_owned(), dir.path().display().to_string()),
        ("COUNTERSIGN_DATABASE__URL".to_owned(), db.url.clone()),
        ("COUNTERSIGN_MASTER_KEY".to_owned(), random_master_key()),
    ];
    let out = run_cli(&env, &["serve"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("master key is not the one the database was set up with"),
        "{}",
        stderr(&out)
    );
}

/// An instance whose clock is far off the database's refuses to start and says why (expiry is
/// decided by the database clock; budgets and freezes by the instance's).
#[tokio::test]
async fn an_instance_whose_clock_is_off_refuses_to_start() {
    let db = TestDatabase::new(Engine::Postgres).await;
    let now = time::OffsetDateTime::from_unix_timestamp(countersign_e2e::unix_now() as i64).unwrap();
    let ahead = now + time::Duration::minutes(10);
    db.set_clock(ahead).await;
    let env = vec![
        ("COUNTERSIGN_LISTEN".to_owned(), "127.0.0.1:0".to_owned()),
        ("COUNTERSIGN_DATABASE__URL".to_owned(), db.url.clone()),
        ("COUNTERSIGN_MASTER_KEY".to_owned(), random_master_key()),
    ];
    let mut child = clean_command(&binary("countersign"), &env)
        .arg("serve")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut status = None;
    for _ in 0..600 {
        status = child.try_wait().unwrap();
        if status.is_some() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let Some(status) = status else {
        child.kill().unwrap();
        panic!("the server started although its clock is 10 minutes off the database's");
    };
    let output = child.wait_with_output().unwrap();
    assert_eq!(status.code(), Some(2));
    let stderr = stderr(&output);
    assert!(stderr.contains("ms behind the database"), "{stderr}");
}

/// `audit checkpoint` exports the sealed head; `audit verify --checkpoint` holds while the chain
/// grows, and refuses a checkpoint this server did not seal (rollbacks: `store_contract`).
#[tokio::test]
async fn audit_checkpoint_round_trip_through_the_cli() {
    let server = Server::start(Engine::Sqlite).await;
    create_app(&server, "one", "users:read");
    let exported = server.cli(&["audit", "checkpoint"]);
    assert!(exported.status.success(), "{}", stderr(&exported));
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("checkpoint.json");
    std::fs::write(&file, stdout(&exported)).unwrap();
    let checkpoint: Value = serde_json::from_str(stdout(&exported).trim()).unwrap();
    assert!(checkpoint["seq"].as_i64().unwrap() >= 1, "{checkpoint}");
    create_app(&server, "two", "users:read");
    let path = file.to_str().unwrap();
    let verified = server.cli(&["audit", "verify", "--checkpoint", path]);
    assert!(verified.status.success(), "{}{}", stdout(&verified), stderr(&verified));

    let mut forged = checkpoint.clone();
    forged["seq"] = json!(checkpoint["seq"].as_i64().unwrap() + 100);
    std::fs::write(&file, forged.to_string()).unwrap();
    let refused = server.cli(&["audit", "verify", "--checkpoint", path]);
    assert_eq!(refused.status.code(), Some(1), "{}", stdout(&refused));
    assert!(stdout(&refused).contains("not a head this server sealed"), "{}", stdout(&refused));
}
