//! In-process test app shared by the server's integration tests: the real router and
//! middleware over a real SQLite file (or PostgreSQL), driven with `oneshot` requests.
#![allow(dead_code, unused_macros, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

pub mod admin;

/// Runs each named `async fn(Engine)` as two tests: `sqlite::name` and `postgres::name`.
macro_rules! on_both_engines {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)] async fn $name() { super::$name(super::Engine::Sqlite).await } )*
        }
        mod postgres {
            $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)] async fn $name() { super::$name(super::Engine::Postgres).await } )*
        }
    };
}

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode, header};
use countersign::api_keys::service as api_keys;
use countersign::app::{AppState, HttpLimits};
use countersign::audit::Actor;
use countersign::challenges::service::ChallengeSettings;
use countersign::clock::{Clock, ManualClock};
use countersign::devices::service::DeviceSettings;
use countersign::passkeys::model::{WebauthnConfig, WebauthnSettings};
use countersign::push::PushSender;
use countersign::secrets::MasterKey;
use countersign::startup::{AppSettings, Application, BackgroundTasks, Dependencies};
use countersign::store::{self, Store};
use countersign_e2e::{Engine, TestDatabase};
use countersign_mobile_protocol::ServerUrl;
use http_body_util::BodyExt;
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;
use time::macros::datetime;
use tower::ServiceExt;

pub const PUBLIC_URL: &str = "http://127.0.0.1:8080";

pub struct TestApp {
    pub router: Router,
    pub store: Arc<dyn Store>,
    pub state: AppState,
    pub clock: Arc<ManualClock>,
    pub master: Arc<MasterKey>,
    pub db: Arc<TestDatabase>,
    /// Whether moving this app's clock moves the database's too (PostgreSQL decides expiry by
    /// its own clock; tests keep the two together unless they test skew).
    drives_db_clock: bool,
    /// Keeps the background tasks it started running while the app lives.
    _application: Application,
}

/// The settings of an app under test: loopback public URL, default device limits.
fn test_settings(limits: HttpLimits, challenges: ChallengeSettings, tasks: BackgroundTasks) -> AppSettings {
    let devices = DeviceSettings {
        public_url: ServerUrl::parse(PUBLIC_URL).unwrap(),
        max_clock_skew_secs: 300,
        enrollment_ttl: time::Duration::minutes(10),
        refusal_limits: Default::default(),
    };
    // The RP defaults from the public URL: `localhost`, origin `http://localhost:8080`.
    let webauthn = WebauthnSettings::resolve(&WebauthnConfig::default(), PUBLIC_URL).unwrap();
    let webauthn = Arc::new(webauthn);
    AppSettings {
        devices,
        challenges,
        webauthn,
        upstream: Vec::new(),
        keycloak: Vec::new(),
        limits,
        shutdown_grace: std::time::Duration::ZERO,
        tasks,
    }
}

/// A throwaway database whose clock (PostgreSQL) starts where the app's does.
async fn fresh_database(engine: Engine) -> (Arc<TestDatabase>, time::OffsetDateTime) {
    let db = Arc::new(TestDatabase::new(engine).await);
    let start = datetime!(2026-11-28 09:00:00 UTC);
    db.set_clock(start).await;
    (db, start)
}

/// Push providers with none configured: tests that do not run the push worker never send.
fn no_push() -> Arc<dyn PushSender> {
    Arc::new(countersign::push::PushConfig::default().build().unwrap())
}

pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
}

impl TestApp {
    pub async fn new() -> Self {
        Self::build(Engine::Sqlite, HttpLimits::default()).await
    }

    pub async fn with_limits(limits: HttpLimits) -> Self {
        Self::build(Engine::Sqlite, limits).await
    }

    pub async fn build(engine: Engine, limits: HttpLimits) -> Self {
        Self::build_with(engine, limits, ChallengeSettings::default()).await
    }

    pub async fn build_with(
        engine: Engine,
        limits: HttpLimits,
        challenge_settings: ChallengeSettings,
    ) -> Self {
        let (db, start) = fresh_database(engine).await;
        let settings = test_settings(limits, challenge_settings, BackgroundTasks::NONE);
        Self::on_database(db, start, true, settings, no_push()).await
    }

    /// An app on `engine` whose WebAuthn relying party is configured as `[webauthn]` says.
    pub async fn with_webauthn(engine: Engine, webauthn: WebauthnConfig) -> Self {
        let (db, start) = fresh_database(engine).await;
        let mut settings =
            test_settings(HttpLimits::default(), ChallengeSettings::default(), BackgroundTasks::NONE);
        settings.webauthn = Arc::new(WebauthnSettings::resolve(&webauthn, PUBLIC_URL).unwrap());
        Self::on_database(db, start, true, settings, no_push()).await
    }

    /// Another instance on this app's database whose clock is `offset` from the database's
    /// (and does not move it).
    pub async fn another_instance(&self, offset: time::Duration) -> Self {
        let challenges = self.state.challenges.settings().clone();
        let settings = test_settings(HttpLimits::default(), challenges, BackgroundTasks::NONE);
        Self::on_database(Arc::clone(&self.db), self.clock.now() + offset, false, settings, no_push()).await
    }

    /// This app's database and time, served by an app configured with OIDC upstream issuers
    /// (whose client ids exist only once the first app has made the clients).
    pub async fn with_upstream(&self, upstream: Vec<countersign::oidc::upstream::Upstream>) -> Self {
        let challenges = self.state.challenges.settings().clone();
        let mut settings = test_settings(HttpLimits::default(), challenges, BackgroundTasks::NONE);
        settings.upstream = upstream;
        Self::on_database(Arc::clone(&self.db), self.clock.now(), self.drives_db_clock, settings, no_push())
            .await
    }

    /// An app on `engine` answering Keycloak's CIBA channel for `realms`.
    pub async fn with_keycloak(
        engine: Engine,
        challenges: ChallengeSettings,
        realms: Vec<countersign::keycloak::config::Realm>,
    ) -> Self {
        let (db, start) = fresh_database(engine).await;
        let mut settings = test_settings(HttpLimits::default(), challenges, BackgroundTasks::NONE);
        settings.keycloak = realms;
        Self::on_database(db, start, true, settings, no_push()).await
    }

    /// An app on `engine` whose background tasks `tasks` run (as `serve` starts them),
    /// pushing through `push`.
    pub async fn with_background(engine: Engine, tasks: BackgroundTasks, push: Arc<dyn PushSender>) -> Self {
        let (db, start) = fresh_database(engine).await;
        let settings = test_settings(HttpLimits::default(), ChallengeSettings::default(), tasks);
        Self::on_database(db, start, true, settings, push).await
    }

    async fn on_database(
        db: Arc<TestDatabase>,
        start: time::OffsetDateTime,
        drives_db_clock: bool,
        settings: AppSettings,
        push: Arc<dyn PushSender>,
    ) -> Self {
        let master = Arc::new(MasterKey::from_bytes(&[9; 32]));
        let store: Arc<dyn Store> = Arc::from(
            store::connect(&SecretString::from(db.url.clone()), 8, master.audit_sealer()).await.unwrap(),
        );
        store.migrate().await.unwrap();
        let clock = Arc::new(ManualClock::new(start));
        let dyn_clock: Arc<dyn Clock> = clock.clone();
        let deps = Dependencies {
            store: Arc::clone(&store),
            clock: dyn_clock,
            master: Arc::clone(&master),
            metrics: countersign::telemetry::prometheus(),
            push,
            alert_webhook: None,
        };
        let application = Application::build(deps, settings).await.unwrap();
        Self {
            router: application.router().clone(),
            state: application.state().clone(),
            store,
            clock,
            master,
            db,
            drives_db_clock,
            _application: application,
        }
    }

    /// Moves time on: this app's clock, and the database's (PostgreSQL) with it.
    pub async fn advance(&self, by: time::Duration) {
        self.clock.advance(by);
        if self.drives_db_clock {
            self.db.set_clock(self.clock.now()).await;
        }
    }

    pub fn clock_now(&self) -> time::OffsetDateTime {
        self.clock.now()
    }

    pub fn now_unix(&self) -> u64 {
        self.clock.now().unix_timestamp() as u64
    }

    pub async fn key(&self, name: &str, scopes: &str) -> String {
        let (_, key) = api_keys::create_app(
            self.store.as_ref(),
            self.clock.as_ref(),
            Actor::Cli,
            name,
            scopes.parse().unwrap(),
        )
        .await
        .unwrap();
        key.expose_secret().to_owned()
    }

    pub async fn send(&self, request: Request<Body>) -> Reply {
        let response = self.router.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        let body = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
        Reply { status, headers, body }
    }

    pub async fn get(&self, path: &str, key: Option<&str>) -> Reply {
        let mut request = Request::get(path);
        if let Some(key) = key {
            request = request.header(header::AUTHORIZATION, format!("Bearer {key}"));
        }
        self.send(request.body(Body::empty()).unwrap()).await
    }

    pub async fn delete(&self, path: &str, key: &str) -> Reply {
        let request = Request::delete(path).header(header::AUTHORIZATION, format!("Bearer {key}"));
        self.send(request.body(Body::empty()).unwrap()).await
    }

    pub async fn post_raw(
        &self,
        path: &str,
        key: &str,
        content_type: Option<&str>,
        body: impl Into<Body>,
    ) -> Reply {
        let mut request = Request::post(path).header(header::AUTHORIZATION, format!("Bearer {key}"));
        if let Some(content_type) = content_type {
            request = request.header(header::CONTENT_TYPE, content_type);
        }
        self.send(request.body(body.into()).unwrap()).await
    }

    pub async fn post_json(&self, path: &str, key: &str, body: Value) -> Reply {
        self.post_raw(path, key, Some("application/json"), body.to_string()).await
    }

    /// An unauthenticated JSON request (the device side authenticates by signature).
    pub async fn device_post(&self, path: &str, body: &[u8]) -> Reply {
        let request = Request::post(path).header(header::CONTENT_TYPE, "application/json");
        self.send(request.body(Body::from(body.to_vec())).unwrap()).await
    }

    /// A request carrying a device's signed-request headers.
    pub async fn signed(
        &self,
        method: &str,
        path: &str,
        body: &[u8],
        headers: &[(&'static str, String)],
    ) -> Reply {
        let mut request = Request::builder().method(method).uri(path);
        for (name, value) in headers {
            request = request.header(*name, value);
        }
        if !body.is_empty() {
            request = request.header(header::CONTENT_TYPE, "application/json");
        }
        self.send(request.body(Body::from(body.to_vec())).unwrap()).await
    }
}

pub fn assert_error(reply: &Reply, status: StatusCode, code: &str) {
    assert_eq!(reply.status, status, "{:?}", reply.body);
    assert_eq!(reply.body["error"], code, "{:?}", reply.body);
    assert!(reply.body["message"].as_str().is_some_and(|m| !m.is_empty()), "{:?}", reply.body);
    let request_id = reply.headers.get("x-request-id").unwrap().to_str().unwrap();
    assert_eq!(reply.body["request_id"], request_id, "the body quotes the request id the header carries");
}

/// Provisions `username` (if new) and returns a fresh enrollment (with `activation_uri`).
pub async fn activation_uri(app: &TestApp, key: &str, username: &str, second_device: bool) -> Value {
    let created = app.post_json("/v1/users", key, serde_json::json!({ "username": username })).await;
    assert!(
        created.status == StatusCode::CREATED || created.status == StatusCode::CONFLICT,
        "{:?}",
        created.body
    );
    let path = format!("/v1/users/{username}/enrollments");
    let reply = app.post_json(&path, key, serde_json::json!({ "second_device": second_device })).await;
    assert_eq!(reply.status, StatusCode::CREATED, "{:?}", reply.body);
    reply.body
}

pub async fn enroll(
    app: &TestApp,
    device: &mut countersign_e2e::device::TestDevice,
    uri: &str,
    push: countersign_mobile_protocol::PushRegistration,
) -> Reply {
    let body = serde_json::to_vec(&device.enrollment(uri, push)).unwrap();
    let reply = app.device_post("/device/v1/enroll", &body).await;
    if reply.status == StatusCode::CREATED {
        device.enrolled = Some(serde_json::from_value(reply.body.clone()).unwrap());
    }
    reply
}

pub async fn enrolled_device(
    app: &TestApp,
    key: &str,
    username: &str,
    push: countersign_mobile_protocol::PushRegistration,
) -> countersign_e2e::device::TestDevice {
    let mut device = countersign_e2e::device::TestDevice::new();
    let enrollment = activation_uri(app, key, username, false).await;
    let reply = enroll(app, &mut device, enrollment["activation_uri"].as_str().unwrap(), push).await;
    assert_eq!(reply.status, StatusCode::CREATED, "{:?}", reply.body);
    device
}

pub async fn signed_get(app: &TestApp, device: &countersign_e2e::device::TestDevice, path: &str) -> Reply {
    let headers = device.sign_request("GET", path, b"", app.now_unix());
    app.signed("GET", path, b"", &headers).await
}

/// A test app with an app key that may manage users and challenges, and the user `username`.
pub async fn app_with_user(engine: Engine, username: &str) -> (TestApp, String) {
    let app = TestApp::build(engine, HttpLimits::default()).await;
    let key = app.key("portal", "users:read users:write challenges:write").await;
    let created = app.post_json("/v1/users", &key, serde_json::json!({ "username": username })).await;
    assert_eq!(created.status, StatusCode::CREATED, "{:?}", created.body);
    (app, key)
}

/// How many audit events were recorded so far (chaining what is pending first).
pub async fn audit_len(app: &TestApp) -> i64 {
    countersign::audit::flush(app.store.as_ref()).await.unwrap();
    app.store.audit_head().await.unwrap().seq
}

/// Every audit event so far, as (action, details).
pub async fn audit_actions(app: &TestApp) -> Vec<(String, Value)> {
    countersign::audit::flush(app.store.as_ref()).await.unwrap();
    let head = app.store.audit_head().await.unwrap();
    app.store
        .audit_events(0, head.seq, 100_000)
        .await
        .unwrap()
        .into_iter()
        .map(|e| (e.action, serde_json::from_str(&e.details).unwrap()))
        .collect()
}

/// A challenge of `username` created with `key` and approved on `approver` (which must be the
/// user's device): the proof an app presents to add another device. Returns its id.
pub async fn fresh_approval(
    app: &TestApp,
    key: &str,
    username: &str,
    approver: &mut countersign_e2e::device::TestDevice,
) -> String {
    let created = app.post_json("/v1/challenges", key, serde_json::json!({ "username": username })).await;
    assert_eq!(created.status, StatusCode::CREATED, "{:?}", created.body);
    let id = created.body["id"].as_str().unwrap().to_owned();
    let pending = signed_get(app, approver, "/device/v1/challenges").await;
    let pending: countersign_mobile_protocol::PendingChallenges =
        serde_json::from_value(pending.body).unwrap();
    let signed = pending.challenges.iter().find(|c| c.details.challenge_id.as_str() == id).unwrap();
    let details = approver.verify_details(signed).clone();
    let number = created.body["number"].as_str().unwrap();
    let response = approver.answer(&details, countersign_mobile_protocol::Decision::Approve, number);
    let path = format!("/device/v1/challenges/{id}/response");
    let reply = app.device_post(&path, &serde_json::to_vec(&response).unwrap()).await;
    assert_eq!(reply.body["outcome"], "approved", "{:?}", reply.body);
    id
}

/// Adds another device for `username`, proven by an approval on `approver`.
pub async fn approved_second_device(
    app: &TestApp,
    key: &str,
    username: &str,
    approver: &mut countersign_e2e::device::TestDevice,
) -> countersign_e2e::device::TestDevice {
    let approval = fresh_approval(app, key, username, approver).await;
    let path = format!("/v1/users/{username}/enrollments");
    let created = app.post_json(&path, key, serde_json::json!({ "approval": approval })).await;
    assert_eq!(created.status, StatusCode::CREATED, "{:?}", created.body);
    let mut device = countersign_e2e::device::TestDevice::new();
    let uri = created.body["activation_uri"].as_str().unwrap();
    let reply = enroll(app, &mut device, uri, countersign_mobile_protocol::PushRegistration::None).await;
    assert_eq!(reply.status, StatusCode::CREATED, "{:?}", reply.body);
    device
}

/// An app with a key and alice with an enrolled phone: the cast of most challenge tests.
pub struct Alice {
    pub app: Arc<TestApp>,
    pub key: String,
    pub phone: countersign_e2e::device::TestDevice,
}

impl Alice {
    pub async fn enroll(
        app: TestApp,
        scopes: &str,
        push: countersign_mobile_protocol::PushRegistration,
    ) -> Self {
        let key = app.key("portal", scopes).await;
        let phone = enrolled_device(&app, &key, "alice", push).await;
        Self { app: Arc::new(app), key, phone }
    }
}

/// A device of an attacker's own making that claims `device_id` (it holds another key).
pub fn impostor(
    victim: &countersign_e2e::device::TestDevice,
    device_id: countersign_mobile_protocol::DeviceId,
) -> countersign_e2e::device::TestDevice {
    let mut impostor = countersign_e2e::device::TestDevice::new();
    let mut enrolled = victim.enrolled.clone().unwrap();
    enrolled.device_id = device_id;
    impostor.enrolled = Some(enrolled);
    impostor
}
