//! Test harness shared by the store contract suite and the end-to-end tests: throwaway
//! databases on both engines, and the real `countersign` binary on a loopback port.
//!
//! PostgreSQL comes from `CS_TEST_POSTGRES_URL`, which `scripts/test` sets after starting a
//! throwaway server from the installed binaries. Without it, PostgreSQL tests fail loudly:
//! they are never skipped.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::print_stderr)]

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

pub mod browser;
pub mod device;
pub mod fake_keycloak;
pub mod fake_push;
pub mod jose;
pub mod receiver;

use base64::Engine as _;
use sqlx::Connection;

/// Runs each named `async fn(Engine)` as two tests: `sqlite::name` and `postgres::name`.
#[macro_export]
macro_rules! on_both_engines {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(#[tokio::test]
            async fn $name() {
                super::$name($crate::Engine::Sqlite).await;
            })*
        }
        mod postgres {
            $(#[tokio::test]
            async fn $name() {
                super::$name($crate::Engine::Postgres).await;
            })*
        }
    };
}

/// The environment variable naming the PostgreSQL server tests may create databases on.
pub const POSTGRES_URL_VAR: &str = "CS_TEST_POSTGRES_URL";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    Sqlite,
    Postgres,
}

/// The admin URL of the test PostgreSQL server, or a panic that says how to get one.
pub fn postgres_admin_url() -> String {
    std::env::var(POSTGRES_URL_VAR).unwrap_or_else(|_| {
        panic!(
            "{POSTGRES_URL_VAR} is not set. PostgreSQL tests are never skipped: run ./scripts/test, \
             which starts a throwaway PostgreSQL from the installed server binaries, or point \
             {POSTGRES_URL_VAR} at a server where this user may CREATE DATABASE."
        )
    })
}

/// A database of its own for one test; SQLite files live in a temp dir removed on drop.
#[derive(Debug)]
pub struct TestDatabase {
    pub url: String,
    pub engine: Engine,
    _dir: Option<tempfile::TempDir>,
}

impl TestDatabase {
    pub async fn new(engine: Engine) -> Self {
        match engine {
            Engine::Sqlite => {
                let dir = tempfile::tempdir().unwrap();
                let url = format!("sqlite:{}", dir.path().join("countersign.db").display());
                Self { url, engine, _dir: Some(dir) }
            }
            Engine::Postgres => {
                let admin = postgres_admin_url();
                let name = format!("cs_test_{}", uuid::Uuid::new_v4().simple());
                let mut conn = sqlx::PgConnection::connect(&admin)
                    .await
                    .unwrap_or_else(|e| panic!("cannot connect to {POSTGRES_URL_VAR}: {e}"));
                sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
                    .execute(&mut conn)
                    .await
                    .unwrap();
                let base = admin.split('?').next().unwrap();
                let url = format!("{}/{name}", &base[..base.rfind('/').unwrap()]);
                Self { url, engine, _dir: None }
            }
        }
    }
}

impl TestDatabase {
    /// Puts a PostgreSQL test database's clock under the test's control: statements calling
    /// `now()` (the server decides expiry by the database clock) read `at` instead, until the
    /// next call. It works by a `now()` in a schema searched before `pg_catalog`; connect the
    /// store after the first call, since the search path applies to new sessions. No-op on
    /// SQLite, whose clock is the instance's.
    pub async fn set_clock(&self, at: time::OffsetDateTime) {
        if self.engine != Engine::Postgres {
            return;
        }
        let mut conn = sqlx::PgConnection::connect(&self.url).await.unwrap();
        let name = self.url.rsplit('/').next().unwrap().split('?').next().unwrap().to_owned();
        let installed: bool = sqlx::query_scalar("SELECT to_regclass('countersign_test.clock') IS NOT NULL")
            .fetch_one(&mut conn)
            .await
            .unwrap();
        if !installed {
            let sql = format!(
                "CREATE SCHEMA countersign_test;
                 CREATE TABLE countersign_test.clock (at timestamptz NOT NULL);
                 INSERT INTO countersign_test.clock VALUES ('epoch');
                 CREATE FUNCTION countersign_test.now() RETURNS timestamptz LANGUAGE sql STABLE
                     AS 'SELECT at FROM countersign_test.clock';
                 ALTER DATABASE \"{name}\" SET search_path = countersign_test, \"$user\", public, pg_catalog;"
            );
            sqlx::raw_sql(sqlx::AssertSqlSafe(sql)).execute(&mut conn).await.unwrap();
        }
        sqlx::query("UPDATE countersign_test.clock SET at = $1").bind(at).execute(&mut conn).await.unwrap();
    }
}

/// 32 random bytes, base64: a master key for a test server.
pub fn random_master_key() -> String {
    let bytes: Vec<u8> =
        uuid::Uuid::new_v4().as_bytes().iter().chain(uuid::Uuid::new_v4().as_bytes()).copied().collect();
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Path of a binary built by this workspace (`cargo test --workspace` builds them first).
pub fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().and_then(|deps| deps.parent()).unwrap();
    let path = dir.join(name);
    assert!(
        path.is_file(),
        "{} is missing: build it with `cargo build --workspace --bins` (scripts/test does)",
        path.display()
    );
    path
}

/// The real `countersign` binary serving on a loopback port, with its own data dir and
/// database. Killed on drop.
#[derive(Debug)]
pub struct Server {
    child: Child,
    pub base_url: String,
    pub database: Arc<TestDatabase>,
    env: Vec<(String, String)>,
    logs: Arc<Mutex<String>>,
    _data_dir: Arc<tempfile::TempDir>,
}

/// Environment for the binary: only what the test chooses, nothing inherited of ours.
pub fn clean_command(program: &PathBuf, env: &[(String, String)]) -> Command {
    let mut command = Command::new(program);
    for (key, _) in std::env::vars() {
        if key.starts_with("COUNTERSIGN_") || key == "DATABASE_URL" || key == POSTGRES_URL_VAR {
            command.env_remove(key);
        }
    }
    command.envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    command
}

impl Server {
    pub async fn start(engine: Engine) -> Self {
        Self::start_with(Arc::new(TestDatabase::new(engine).await), random_master_key(), &[]).await
    }

    /// Starts a server on an existing database (e.g. a second instance) with extra env.
    pub async fn start_with(
        database: Arc<TestDatabase>,
        master_key: String,
        extra_env: &[(&str, &str)],
    ) -> Self {
        Self::start_custom(database, master_key, extra_env, &[]).await
    }

    /// Like [`Server::start_with`], with extra arguments after `serve`.
    pub async fn start_custom(
        database: Arc<TestDatabase>,
        master_key: String,
        extra_env: &[(&str, &str)],
        serve_args: &[&str],
    ) -> Self {
        let data_dir = Arc::new(tempfile::tempdir().unwrap());
        let mut env = vec![
            ("COUNTERSIGN_LISTEN".to_owned(), "127.0.0.1:0".to_owned()),
            ("COUNTERSIGN_DATA_DIR".to_owned(), data_dir.path().display().to_string()),
            ("COUNTERSIGN_DATABASE__URL".to_owned(), database.url.clone()),
            ("COUNTERSIGN_MASTER_KEY".to_owned(), master_key),
            ("RUST_LOG".to_owned(), "info".to_owned()),
        ];
        env.extend(extra_env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
        let mut command = clean_command(&binary("countersign"), &env);
        command.arg("serve").args(serve_args);
        let (child, base_url, logs) = spawn_and_wait_for_address(command).await;
        Self { child, base_url, database, env, logs, _data_dir: data_dir }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }

    /// Everything the server printed so far.
    pub fn logs(&self) -> String {
        self.logs.lock().unwrap().clone()
    }

    /// Runs a `countersign` command against this server's database and configuration.
    pub fn cli(&self, args: &[&str]) -> Output {
        run_cli(&self.env, args)
    }

    /// Sends SIGTERM and waits for the process to exit.
    pub fn terminate(&mut self) -> ExitStatus {
        let pid = self.child.id().to_string();
        let status = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        assert!(status.success(), "kill failed");
        for _ in 0..200 {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("server did not exit within 10 s of SIGTERM; output:\n{}", self.logs());
    }
}

/// Spawns a `countersign serve` command, collects its output, and waits for the address it
/// announces ("listening on http://…").
pub async fn spawn_and_wait_for_address(mut command: Command) -> (Child, String, Arc<Mutex<String>>) {
    let mut child = command.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let logs = Arc::new(Mutex::new(String::new()));
    let (found, listening) = mpsc::channel();
    let streams: [Box<dyn std::io::Read + Send>; 2] =
        [Box::new(child.stdout.take().unwrap()), Box::new(child.stderr.take().unwrap())];
    for stream in streams {
        let logs = Arc::clone(&logs);
        let found = found.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines().map_while(Result::ok) {
                if let Some(rest) = line.split("listening on http://").nth(1) {
                    let address: String = rest
                        .chars()
                        .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | ':' | '[' | ']'))
                        .collect();
                    let _ = found.send(address);
                }
                logs.lock().unwrap().push_str(&(line + "\n"));
            }
        });
    }
    drop(found);
    let waited =
        tokio::task::spawn_blocking(move || listening.recv_timeout(Duration::from_secs(60))).await.unwrap();
    match waited {
        Ok(address) => (child, format!("http://{address}"), logs),
        Err(_) => {
            let _ = child.kill();
            let status = child.wait().ok();
            std::thread::sleep(Duration::from_millis(100));
            panic!("server did not start (exit: {status:?}); its output:\n{}", logs.lock().unwrap())
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs the `countersign` binary with exactly this environment.
pub fn run_cli(env: &[(String, String)], args: &[&str]) -> Output {
    clean_command(&binary("countersign"), env).args(args).stdin(Stdio::null()).output().unwrap()
}

/// `GET path` with the app's key: the JSON body.
pub async fn get_json(server: &Server, key: &str, path: &str) -> serde_json::Value {
    http().get(server.url(path)).bearer_auth(key).send().await.unwrap().json().await.unwrap()
}

/// `POST /v1/challenges` for `username`: the created challenge (`id`, `number`, …).
pub async fn start_challenge(server: &Server, key: &str, username: &str) -> serde_json::Value {
    let reply = http()
        .post(server.url("/v1/challenges"))
        .bearer_auth(key)
        .json(&serde_json::json!({ "username": username }))
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), 201, "challenge for {username}");
    reply.json().await.unwrap()
}

/// Runs `countersign enrollments create --user U [ARGS]` as the operator. The CLI names the
/// server by `public_url`; a server on an ephemeral port is named by the address it bound.
pub fn operator_enrollment(server: &Server, username: &str, args: &[&str]) -> Output {
    operator_cli(server, &[&["enrollments", "create", "--user", username][..], args].concat())
}

/// Runs an operator command that must name the server (an activation URI, a page link): the
/// CLI gets the running server's URL as `public_url`, as an operator's config would give it.
pub fn operator_cli(server: &Server, args: &[&str]) -> Output {
    let mut env = server.env.clone();
    if !env.iter().any(|(key, _)| key == "COUNTERSIGN_PUBLIC_URL") {
        env.push(("COUNTERSIGN_PUBLIC_URL".to_owned(), server.base_url.clone()));
    }
    run_cli(&env, args)
}

/// Issues an operator recovery enrollment (`--recovery`) and returns the activation URI it
/// prints.
pub fn recovery_enrollment(server: &Server, username: &str) -> String {
    let output = operator_enrollment(server, username, &["--recovery"]);
    assert!(
        output.status.success(),
        "enrollments create failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap().trim().to_owned()
}

/// Creates an app through the CLI and returns its API key.
pub fn create_app(server: &Server, name: &str, scopes: &str) -> String {
    let output = server.cli(&["apps", "create", "--name", name, "--scopes", scopes]);
    assert!(output.status.success(), "apps create failed: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).unwrap().trim().to_owned()
}

/// An HTTP client for loopback tests.
pub fn http() -> reqwest::Client {
    reqwest::Client::builder().timeout(Duration::from_secs(30)).build().unwrap()
}

/// Runs SQL directly against a test database, as an operator or an attacker with database
/// access would (bypassing the server).
pub async fn exec_sql(db: &TestDatabase, sql: &str) -> Result<(), sqlx::Error> {
    let statement = sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned()));
    match db.engine {
        Engine::Sqlite => {
            let mut conn = sqlx::SqliteConnection::connect(&db.url).await?;
            statement.execute(&mut conn).await.map(drop)
        }
        Engine::Postgres => {
            let mut conn = sqlx::PgConnection::connect(&db.url).await?;
            statement.execute(&mut conn).await.map(drop)
        }
    }
}

/// Runs a query returning one text column directly against a test database: its rows.
pub async fn query_strings(db: &TestDatabase, sql: &str) -> Vec<String> {
    let sql = sqlx::AssertSqlSafe(sql.to_owned());
    match db.engine {
        Engine::Sqlite => {
            let mut conn = sqlx::SqliteConnection::connect(&db.url).await.unwrap();
            sqlx::query_scalar(sql).fetch_all(&mut conn).await.unwrap()
        }
        Engine::Postgres => {
            let mut conn = sqlx::PgConnection::connect(&db.url).await.unwrap();
            sqlx::query_scalar(sql).fetch_all(&mut conn).await.unwrap()
        }
    }
}

/// The SQL that lifts the append-only guard on `audit_events`, per engine: the first thing an
/// attacker with database access does.
pub fn drop_audit_guard_sql(engine: Engine) -> &'static str {
    match engine {
        Engine::Sqlite => "DROP TRIGGER audit_events_no_update; DROP TRIGGER audit_events_no_delete;",
        Engine::Postgres => "DROP TRIGGER audit_events_no_update_delete ON audit_events;",
    }
}

/// The SQL that lifts the guard on `audit_pending` (events not chained yet), per engine.
pub fn drop_pending_guard_sql(engine: Engine) -> &'static str {
    match engine {
        Engine::Sqlite => "DROP TRIGGER audit_pending_no_update;",
        Engine::Postgres => "DROP TRIGGER audit_pending_no_update ON audit_pending;",
    }
}

/// The SQL that makes every audit write fail, per engine (a full disk, a broken replica). The
/// changing transaction writes its event to `audit_pending`.
pub fn break_audit_writes_sql(engine: Engine) -> &'static str {
    match engine {
        Engine::Sqlite => "CREATE TRIGGER fail_audit BEFORE INSERT ON audit_pending BEGIN SELECT RAISE(ABORT, 'audit storage unavailable'); END;",
        Engine::Postgres => "CREATE FUNCTION fail_audit() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'audit storage unavailable'; END $$;
             CREATE TRIGGER fail_audit BEFORE INSERT ON audit_pending FOR EACH ROW EXECUTE FUNCTION fail_audit();",
    }
}

/// One way of tampering with the audit trail, and the sequence number verification must name.
#[derive(Debug, Clone, Copy)]
pub enum Tamper {
    Modify,
    Delete,
    Insert,
    Reorder,
    Truncate,
}

impl Tamper {
    pub const ALL: [Tamper; 5] =
        [Tamper::Modify, Tamper::Delete, Tamper::Insert, Tamper::Reorder, Tamper::Truncate];

    /// SQL that tampers around event 3 of a chain of at least 5 events (same SQL on both
    /// engines once the guard is dropped).
    pub fn sql(self) -> &'static str {
        match self {
            Tamper::Modify => "UPDATE audit_events SET details = '{\"tampered\":true}' WHERE seq = 3",
            Tamper::Delete => "DELETE FROM audit_events WHERE seq = 3",
            Tamper::Insert => "UPDATE audit_events SET seq = seq + 1000 WHERE seq >= 3;
                 UPDATE audit_events SET seq = seq - 999 WHERE seq >= 1003;
                 INSERT INTO audit_events SELECT 3, occurred_at, actor, action, subject, details, prev_hash, hash, NULL
                     FROM audit_events WHERE seq = 2;",
            Tamper::Reorder => "UPDATE audit_events SET seq = 1000003 WHERE seq = 3;
                 UPDATE audit_events SET seq = 3 WHERE seq = 4;
                 UPDATE audit_events SET seq = 4 WHERE seq = 1000003;",
            Tamper::Truncate => "DELETE FROM audit_events WHERE seq >= 4",
        }
    }

    /// The first sequence number verification must report.
    pub fn first_broken_seq(self) -> i64 {
        match self {
            Tamper::Truncate => 4,
            _ => 3,
        }
    }
}

/// Wall-clock unix seconds, for talking to a real server that uses the real clock.
#[allow(clippy::disallowed_methods)] // tests against the real binary share its clock
pub fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// Polls `check` every 50 ms until it returns `Some`, for at most `seconds`.
pub async fn eventually<T>(seconds: u64, mut check: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = std::time::Instant::now() + Duration::from_secs(seconds);
    loop {
        if let Some(value) = check() {
            return Some(value);
        }
        if std::time::Instant::now() > deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Runs the real `countersign-authenticator` with its state in `state`.
pub fn authenticator(state: &std::path::Path, args: &[&str]) -> Output {
    Command::new(binary("countersign-authenticator"))
        .env_remove("COUNTERSIGN_AUTHENTICATOR_STATE")
        .arg("--state")
        .arg(state)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// A command's stdout and stderr, trimmed.
pub fn stdout_of(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

pub fn stderr_of(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).trim().to_owned()
}

/// Provisions `username` through the REST API (if new) and returns a fresh enrollment (with
/// `activation_uri`); a further device needs `approval`, the id of a challenge of this user
/// the same app created and the user approved.
pub async fn new_enrollment(
    server: &Server,
    key: &str,
    username: &str,
    approval: Option<&str>,
) -> serde_json::Value {
    let client = http();
    let created = client
        .post(server.url("/v1/users"))
        .bearer_auth(key)
        .json(&serde_json::json!({ "username": username }))
        .send()
        .await
        .unwrap();
    assert!(created.status() == 201 || created.status() == 409, "creating {username}: {}", created.status());
    let reply = client
        .post(server.url(&format!("/v1/users/{username}/enrollments")))
        .bearer_auth(key)
        .json(&match approval {
            Some(approval) => serde_json::json!({ "approval": approval }),
            None => serde_json::json!({}),
        })
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), 201, "enrollment for {username}");
    reply.json().await.unwrap()
}

/// Provisions `username` (if new) and enrolls the reference authenticator whose state is
/// `phone` for them.
pub async fn enroll_authenticator(server: &Server, key: &str, username: &str, phone: &std::path::Path) {
    let enrollment = new_enrollment(server, key, username, None).await;
    let enrolled = authenticator(phone, &["enroll", enrollment["activation_uri"].as_str().unwrap(), "--yes"]);
    assert!(enrolled.status.success(), "{}", stderr_of(&enrolled));
}
