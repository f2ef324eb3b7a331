//! Local stand-ins for APNs and FCM: real HTTP/2 servers (h2c on `127.0.0.1:0`) that speak the
//! providers' wire formats and check what the real ones check, so the server's push clients
//! are tested over the network exactly as they talk to Apple and Google.
//!
//! - [`FakeApns`]: `POST /3/device/{token}`, verifying the ES256 provider JWT (signature with
//!   the team key's public half, `kid`, `iss`, `iat` no older than an hour) and the `apns-*`
//!   headers; answers with Apple's status codes and `{"reason": …}` bodies.
//! - [`FakeFcm`]: the OAuth2 token endpoint (JWT-bearer grant, RS256 assertion verified against
//!   the service account's public key) and `POST /v1/projects/{p}/messages:send`, accepting
//!   only access tokens it issued; errors in Google's `{"error": {…, "details": […]}}` shape.
//!
//! Both record every request (headers and body) and can be told, per device token, to answer
//! like the real provider does for dead tokens, throttling or outages; [`FakeApns::stop`] /
//! [`FakeFcm::stop`] take the provider down (connections dropped, new ones refused).
//!
//! The fakes have their own clock (unix seconds, [`FakeApns::set_now`]) so tests move time
//! instead of sleeping; it starts at the time given to `start`.

use std::collections::{HashMap, HashSet};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{HeaderMap, Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Validation};
use ring::rand::SystemRandom;
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair};
use serde_json::{Value, json};
use tokio::task::AbortHandle;

/// A fixed RSA key for fake service accounts (see `tests/fixtures/README.md`: test only).
const TEST_RSA_KEY_PEM: &str = include_str!("../fixtures/TEST-ONLY-fcm-service-account-key.pem");

/// The Firebase Messaging OAuth scope.
pub const FCM_SCOPE: &str = "https://www.googleapis.com/auth/firebase.messaging";

// ---------------------------------------------------------------------------------------------
// Credentials

/// A fresh APNs auth key, as Apple issues it: EC P-256, PKCS#8 PEM (a `.p8` file).
#[derive(Clone)]
pub struct ApnsTestKey {
    pub pem: String,
    pub key_id: String,
    pub team_id: String,
    public_key: DecodingKey,
}

impl std::fmt::Debug for ApnsTestKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApnsTestKey").field("key_id", &self.key_id).field("team_id", &self.team_id).finish()
    }
}

impl ApnsTestKey {
    pub fn generate() -> Self {
        let pkcs8 =
            EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new()).unwrap();
        let public_key = public_key_of(&EncodingKey::from_ec_der(pkcs8.as_ref()), Algorithm::ES256);
        Self {
            pem: pem_encode("PRIVATE KEY", pkcs8.as_ref()),
            key_id: "KEY1234567".to_owned(),
            team_id: "TEAM123456".to_owned(),
            public_key,
        }
    }

    /// Writes the key as a `.p8` file in `dir`.
    pub fn write_p8(&self, dir: &Path) -> PathBuf {
        let path = dir.join(format!("AuthKey_{}.p8", self.key_id));
        std::fs::write(&path, &self.pem).unwrap();
        path
    }
}

/// A Firebase service account with the fixed test RSA key.
#[derive(Clone)]
pub struct FcmTestAccount {
    pub project_id: String,
    pub client_email: String,
    pub private_key_pem: String,
    public_key: DecodingKey,
}

impl std::fmt::Debug for FcmTestAccount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FcmTestAccount").field("project_id", &self.project_id).finish_non_exhaustive()
    }
}

impl Default for FcmTestAccount {
    fn default() -> Self {
        Self::new()
    }
}

impl FcmTestAccount {
    pub fn new() -> Self {
        let key = EncodingKey::from_rsa_pem(TEST_RSA_KEY_PEM.as_bytes()).unwrap();
        Self {
            project_id: "countersign-test".to_owned(),
            client_email: "push@countersign-test.iam.gserviceaccount.com".to_owned(),
            private_key_pem: TEST_RSA_KEY_PEM.to_owned(),
            public_key: public_key_of(&key, Algorithm::RS256),
        }
    }

    /// The key file as Google hands it out, with `token_uri` pointing where the test says.
    pub fn service_account_json(&self, token_uri: &str) -> String {
        json!({
            "type": "service_account",
            "project_id": self.project_id,
            "private_key_id": "0123456789abcdef0123456789abcdef01234567",
            "private_key": self.private_key_pem,
            "client_email": self.client_email,
            "client_id": "100000000000000000001",
            "auth_uri": "https://accounts.google.com/o/oauth2/auth",
            "token_uri": token_uri,
            "auth_provider_x509_cert_url": "https://www.googleapis.com/oauth2/v1/certs",
            "universe_domain": "googleapis.com"
        })
        .to_string()
    }
}

fn public_key_of(key: &EncodingKey, algorithm: Algorithm) -> DecodingKey {
    DecodingKey::from_jwk(&Jwk::from_encoding_key(key, algorithm).unwrap()).unwrap()
}

fn pem_encode(label: &str, der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let lines: Vec<&str> = b64.as_bytes().chunks(64).map(|line| std::str::from_utf8(line).unwrap()).collect();
    format!("-----BEGIN {label}-----\n{}\n-----END {label}-----\n", lines.join("\n"))
}

// ---------------------------------------------------------------------------------------------
// Recording

/// One request a fake received, and what it answered.
#[derive(Debug, Clone)]
pub struct ReceivedRequest {
    pub method: String,
    pub path: String,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
    pub status: u16,
}

impl ReceivedRequest {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|value| value.to_str().ok())
    }

    /// The body as JSON (panics if it is not).
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("{} {} body is not JSON: {e}", self.method, self.path))
    }

    /// The token after `authorization: bearer` (any case).
    pub fn bearer(&self) -> Option<&str> {
        let value = self.header("authorization")?;
        let (scheme, token) = value.split_once(' ')?;
        scheme.eq_ignore_ascii_case("bearer").then_some(token)
    }
}

// ---------------------------------------------------------------------------------------------
// The HTTP/2 server both fakes run on

type Reply = Response<Full<Bytes>>;

trait Handler: Send + Sync + 'static {
    fn handle(&self, method: &str, path: &str, headers: &HeaderMap, body: &[u8]) -> Reply;
    fn record(&self, request: ReceivedRequest);
}

/// An HTTP/2-only (prior knowledge) server on a loopback port; `stop` aborts the listener and
/// every open connection.
#[derive(Debug)]
struct H2Server {
    addr: SocketAddr,
    tasks: Arc<Mutex<Vec<AbortHandle>>>,
}

impl H2Server {
    async fn start(handler: Arc<dyn Handler>) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let tasks: Arc<Mutex<Vec<AbortHandle>>> = Arc::default();
        let connections = Arc::clone(&tasks);
        let accept = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let handler = Arc::clone(&handler);
                let service = hyper::service::service_fn(move |request: Request<Incoming>| {
                    let handler = Arc::clone(&handler);
                    async move { Ok::<_, Infallible>(dispatch(handler.as_ref(), request).await) }
                });
                let connection = tokio::spawn(async move {
                    let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
                connections.lock().unwrap().push(connection.abort_handle());
            }
        });
        tasks.lock().unwrap().push(accept.abort_handle());
        Self { addr, tasks }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn stop(&self) {
        for task in self.tasks.lock().unwrap().drain(..) {
            task.abort();
        }
    }
}

impl Drop for H2Server {
    fn drop(&mut self) {
        self.stop();
    }
}

async fn dispatch(handler: &dyn Handler, request: Request<Incoming>) -> Reply {
    let (parts, body) = request.into_parts();
    let body = body.collect().await.map(|collected| collected.to_bytes().to_vec()).unwrap_or_default();
    let method = parts.method.as_str().to_owned();
    let path = parts.uri.path().to_owned();
    let reply = handler.handle(&method, &path, &parts.headers, &body);
    let status = reply.status().as_u16();
    handler.record(ReceivedRequest { method, path, headers: parts.headers, body, status });
    reply
}

fn reply(status: u16, body: &Value) -> Reply {
    Response::builder()
        .status(StatusCode::from_u16(status).unwrap())
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap()
}

fn with_header(mut response: Reply, name: &'static str, value: String) -> Reply {
    response.headers_mut().insert(name, value.parse().unwrap());
    response
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|value| value.to_str().ok())
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let (scheme, token) = header(headers, "authorization")?.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then_some(token)
}

/// Signature verification (algorithm pinned) only: the fakes check the claims themselves,
/// against their own clock.
fn verify(token: &str, key: &DecodingKey, algorithm: Algorithm) -> Option<(jsonwebtoken::Header, Value)> {
    let mut validation = Validation::new(algorithm);
    validation.validate_exp = false;
    validation.validate_aud = false;
    validation.required_spec_claims = HashSet::new();
    let data = jsonwebtoken::decode::<Value>(token, key, &validation).ok()?;
    Some((data.header, data.claims))
}

// ---------------------------------------------------------------------------------------------
// APNs

/// How [`FakeApns`] answers for a device token, instead of 200.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApnsReply {
    /// 410 `Unregistered`: the app was removed.
    Unregistered,
    /// 400 `BadDeviceToken`.
    BadDeviceToken,
    /// 429 `TooManyRequests` with `retry-after: <secs>`.
    TooManyRequests { retry_after_secs: u64 },
    /// 500 `InternalServerError`.
    InternalServerError,
    /// 503 `ServiceUnavailable`.
    ServiceUnavailable,
    /// 403 `ExpiredProviderToken` (as if Apple's clock disagreed with ours).
    ExpiredProviderToken,
}

struct ApnsState {
    key: ApnsTestKey,
    topic: String,
    now: AtomicI64,
    replies: Mutex<HashMap<String, ApnsReply>>,
    requests: Mutex<Vec<ReceivedRequest>>,
    next_id: AtomicU64,
}

/// A fake APNs provider API (one host; start two for production and sandbox).
#[derive(Debug)]
pub struct FakeApns {
    server: H2Server,
    state: Arc<ApnsState>,
}

impl FakeApns {
    /// Accepts provider tokens signed by `key` for `topic`; its clock starts at `now_unix`.
    pub async fn start(key: &ApnsTestKey, topic: &str, now_unix: i64) -> Self {
        let state = Arc::new(ApnsState {
            key: key.clone(),
            topic: topic.to_owned(),
            now: AtomicI64::new(now_unix),
            replies: Mutex::default(),
            requests: Mutex::default(),
            next_id: AtomicU64::new(1),
        });
        let server = H2Server::start(Arc::clone(&state) as Arc<dyn Handler>).await;
        Self { server, state }
    }

    /// The base URL (`http://127.0.0.1:<port>`).
    pub fn url(&self) -> String {
        self.server.url()
    }

    pub fn set_now(&self, now_unix: i64) {
        self.state.now.store(now_unix, Ordering::SeqCst);
    }

    /// Answer pushes to `device_token` this way until [`FakeApns::clear_reply`].
    pub fn set_reply(&self, device_token: &str, reply: ApnsReply) {
        self.state.replies.lock().unwrap().insert(device_token.to_owned(), reply);
    }

    pub fn clear_reply(&self, device_token: &str) {
        self.state.replies.lock().unwrap().remove(device_token);
    }

    /// Every request received so far, in order.
    pub fn requests(&self) -> Vec<ReceivedRequest> {
        self.state.requests.lock().unwrap().clone()
    }

    /// Takes the provider down: open connections are dropped and new ones refused.
    pub fn stop(&self) {
        self.server.stop();
    }
}

impl std::fmt::Debug for ApnsState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApnsState").field("topic", &self.topic).finish_non_exhaustive()
    }
}

fn apns_error(status: u16, reason: &str) -> Reply {
    reply(status, &json!({ "reason": reason }))
}

impl ApnsState {
    /// Apple's checks, in roughly Apple's order; `Err` is the error response.
    fn check(
        &self,
        method: &str,
        path: &str,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Result<String, (u16, &'static str)> {
        if method != "POST" {
            return Err((405, "MethodNotAllowed"));
        }
        let token = path.strip_prefix("/3/device/").ok_or((404, "BadPath"))?;
        if token.is_empty() || !token.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err((400, "BadDeviceToken"));
        }
        let jwt = bearer(headers).ok_or((403, "MissingProviderToken"))?;
        let (jwt_header, claims) =
            verify(jwt, &self.key.public_key, Algorithm::ES256).ok_or((403, "InvalidProviderToken"))?;
        let is_ours = jwt_header.kid.as_deref() == Some(self.key.key_id.as_str())
            && claims["iss"].as_str() == Some(self.key.team_id.as_str());
        let iat = claims["iat"].as_i64().ok_or((403, "InvalidProviderToken"))?;
        if !is_ours {
            return Err((403, "InvalidProviderToken"));
        }
        let now = self.now.load(Ordering::SeqCst);
        if now - iat > 3600 || iat > now + 60 {
            return Err((403, "ExpiredProviderToken"));
        }
        match header(headers, "apns-topic") {
            None => return Err((400, "MissingTopic")),
            Some(topic) if topic != self.topic => return Err((400, "DeviceTokenNotForTopic")),
            Some(_) => {}
        }
        if header(headers, "apns-push-type") != Some("alert") {
            return Err((400, "InvalidPushType"));
        }
        if !matches!(header(headers, "apns-priority"), None | Some("5" | "10")) {
            return Err((400, "BadPriority"));
        }
        if header(headers, "apns-expiration").and_then(|value| value.parse::<i64>().ok()).is_none() {
            return Err((400, "BadExpirationDate"));
        }
        if body.len() > 4096 {
            return Err((413, "PayloadTooLarge"));
        }
        let payload: Value = serde_json::from_slice(body).map_err(|_| (400, "BadPayload"))?;
        if !payload["aps"].is_object() {
            return Err((400, "PayloadEmpty"));
        }
        Ok(token.to_owned())
    }
}

impl Handler for ApnsState {
    fn handle(&self, method: &str, path: &str, headers: &HeaderMap, body: &[u8]) -> Reply {
        let token = match self.check(method, path, headers, body) {
            Ok(token) => token,
            Err((status, reason)) => return apns_error(status, reason),
        };
        let now = self.now.load(Ordering::SeqCst);
        match self.replies.lock().unwrap().get(&token) {
            Some(ApnsReply::Unregistered) => {
                reply(410, &json!({ "reason": "Unregistered", "timestamp": now * 1000 }))
            }
            Some(ApnsReply::BadDeviceToken) => apns_error(400, "BadDeviceToken"),
            Some(ApnsReply::TooManyRequests { retry_after_secs }) => {
                with_header(apns_error(429, "TooManyRequests"), "retry-after", retry_after_secs.to_string())
            }
            Some(ApnsReply::InternalServerError) => apns_error(500, "InternalServerError"),
            Some(ApnsReply::ServiceUnavailable) => apns_error(503, "ServiceUnavailable"),
            Some(ApnsReply::ExpiredProviderToken) => apns_error(403, "ExpiredProviderToken"),
            None => {
                let id = self.next_id.fetch_add(1, Ordering::SeqCst);
                let response = Response::builder().status(200).body(Full::new(Bytes::new())).unwrap();
                with_header(response, "apns-id", format!("00000000-0000-4000-8000-{id:012x}"))
            }
        }
    }

    fn record(&self, request: ReceivedRequest) {
        self.requests.lock().unwrap().push(request);
    }
}

// ---------------------------------------------------------------------------------------------
// FCM

/// How [`FakeFcm`] answers for a registration token, instead of 200.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FcmReply {
    /// 404 `NOT_FOUND` with errorCode `UNREGISTERED`: the app instance is gone.
    Unregistered,
    /// 400 `INVALID_ARGUMENT` naming `message.token`: not a valid registration token.
    InvalidToken,
    /// 400 `INVALID_ARGUMENT` naming another field: the request, not the token, is wrong.
    InvalidArgument,
    /// 429 `RESOURCE_EXHAUSTED` / `QUOTA_EXCEEDED` with `retry-after: <secs>`.
    QuotaExceeded { retry_after_secs: u64 },
    /// 500 `INTERNAL`.
    Internal,
    /// 503 `UNAVAILABLE`.
    Unavailable,
}

struct FcmState {
    account: FcmTestAccount,
    token_uri: Mutex<String>,
    now: AtomicI64,
    issued: Mutex<HashSet<String>>,
    replies: Mutex<HashMap<String, FcmReply>>,
    token_requests: Mutex<Vec<ReceivedRequest>>,
    sends: Mutex<Vec<ReceivedRequest>>,
    next_id: AtomicU64,
}

impl std::fmt::Debug for FcmState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FcmState").field("account", &self.account).finish_non_exhaustive()
    }
}

/// A fake FCM: Google's OAuth token endpoint (`/token`) and the HTTP v1 send API on one port.
#[derive(Debug)]
pub struct FakeFcm {
    server: H2Server,
    state: Arc<FcmState>,
}

const TOKEN_PATH: &str = "/token";

impl FakeFcm {
    /// Accepts assertions signed by `account`'s key; its clock starts at `now_unix`.
    pub async fn start(account: &FcmTestAccount, now_unix: i64) -> Self {
        let state = Arc::new(FcmState {
            account: account.clone(),
            token_uri: Mutex::default(),
            now: AtomicI64::new(now_unix),
            issued: Mutex::default(),
            replies: Mutex::default(),
            token_requests: Mutex::default(),
            sends: Mutex::default(),
            next_id: AtomicU64::new(1),
        });
        let server = H2Server::start(Arc::clone(&state) as Arc<dyn Handler>).await;
        *state.token_uri.lock().unwrap() = format!("{}{TOKEN_PATH}", server.url());
        Self { server, state }
    }

    /// The FCM base URL (`http://127.0.0.1:<port>`).
    pub fn url(&self) -> String {
        self.server.url()
    }

    /// The OAuth token endpoint; the assertion's `aud` must equal it.
    pub fn token_uri(&self) -> String {
        self.state.token_uri.lock().unwrap().clone()
    }

    /// Writes a service-account key file for `account` whose `token_uri` is this fake's.
    pub fn write_service_account(&self, dir: &Path) -> PathBuf {
        let path = dir.join("service-account.json");
        std::fs::write(&path, self.state.account.service_account_json(&self.token_uri())).unwrap();
        path
    }

    pub fn set_now(&self, now_unix: i64) {
        self.state.now.store(now_unix, Ordering::SeqCst);
    }

    /// Answer sends to `registration_token` this way until [`FakeFcm::clear_reply`].
    pub fn set_reply(&self, registration_token: &str, reply: FcmReply) {
        self.state.replies.lock().unwrap().insert(registration_token.to_owned(), reply);
    }

    pub fn clear_reply(&self, registration_token: &str) {
        self.state.replies.lock().unwrap().remove(registration_token);
    }

    /// Invalidates every access token issued so far (sends with them get 401).
    pub fn revoke_access_tokens(&self) {
        self.state.issued.lock().unwrap().clear();
    }

    /// Requests to the token endpoint, in order.
    pub fn token_requests(&self) -> Vec<ReceivedRequest> {
        self.state.token_requests.lock().unwrap().clone()
    }

    /// Requests to anything but the token endpoint (the send API), in order.
    pub fn sends(&self) -> Vec<ReceivedRequest> {
        self.state.sends.lock().unwrap().clone()
    }

    /// Takes the provider down: open connections are dropped and new ones refused.
    pub fn stop(&self) {
        self.server.stop();
    }
}

fn google_error(status: u16, code: &str, details: Value) -> Reply {
    reply(
        status,
        &json!({ "error": { "code": status, "message": "fake FCM error", "status": code, "details": details } }),
    )
}

fn fcm_error_code(code: &str) -> Value {
    json!({ "@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError", "errorCode": code })
}

fn invalid_argument(field: &str) -> Reply {
    google_error(
        400,
        "INVALID_ARGUMENT",
        json!([
            fcm_error_code("INVALID_ARGUMENT"),
            { "@type": "type.googleapis.com/google.rpc.BadRequest",
              "fieldViolations": [{ "field": field, "description": "invalid" }] }
        ]),
    )
}

fn oauth_error(error: &str) -> Reply {
    reply(400, &json!({ "error": error, "error_description": "fake token endpoint refused the assertion" }))
}

/// Decodes `application/x-www-form-urlencoded` (`+` and `%XX`).
fn parse_form(body: &[u8]) -> HashMap<String, String> {
    let decode = |text: &str| {
        let bytes = text.as_bytes();
        let mut out = Vec::with_capacity(bytes.len());
        let mut i = 0;
        while i < bytes.len() {
            match bytes[i] {
                b'+' => out.push(b' '),
                b'%' if i + 2 < bytes.len() => {
                    let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("zz");
                    out.push(u8::from_str_radix(hex, 16).unwrap_or(b'?'));
                    i += 2;
                }
                b => out.push(b),
            }
            i += 1;
        }
        String::from_utf8_lossy(&out).into_owned()
    };
    std::str::from_utf8(body)
        .unwrap_or_default()
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .map(|(key, value)| (decode(key), decode(value)))
        .collect()
}

impl FcmState {
    fn token_endpoint(&self, method: &str, headers: &HeaderMap, body: &[u8]) -> Reply {
        if method != "POST" {
            return reply(405, &json!({ "error": "invalid_request" }));
        }
        if header(headers, "content-type") != Some("application/x-www-form-urlencoded") {
            return reply(400, &json!({ "error": "invalid_request" }));
        }
        let form = parse_form(body);
        if form.get("grant_type").map(String::as_str) != Some("urn:ietf:params:oauth:grant-type:jwt-bearer") {
            return reply(400, &json!({ "error": "unsupported_grant_type" }));
        }
        let Some(assertion) = form.get("assertion") else {
            return oauth_error("invalid_request");
        };
        let Some((_, claims)) = verify(assertion, &self.account.public_key, Algorithm::RS256) else {
            return oauth_error("invalid_grant");
        };
        let (Some(iat), Some(exp)) = (claims["iat"].as_i64(), claims["exp"].as_i64()) else {
            return oauth_error("invalid_grant");
        };
        let now = self.now.load(Ordering::SeqCst);
        let is_timely = iat <= now + 60 && exp > now && exp - iat <= 3600;
        let is_ours = claims["iss"].as_str() == Some(self.account.client_email.as_str())
            && claims["aud"].as_str() == Some(self.token_uri.lock().unwrap().as_str());
        let scope = claims["scope"].as_str().unwrap_or_default();
        if !is_timely || !is_ours || !scope.split(' ').any(|scope| scope == FCM_SCOPE) {
            return oauth_error("invalid_grant");
        }
        let token = format!("ya29.fake-{}", self.next_id.fetch_add(1, Ordering::SeqCst));
        self.issued.lock().unwrap().insert(token.clone());
        reply(200, &json!({ "access_token": token, "expires_in": 3599, "token_type": "Bearer" }))
    }

    fn send(&self, method: &str, path: &str, headers: &HeaderMap, body: &[u8]) -> Reply {
        let expected_path = format!("/v1/projects/{}/messages:send", self.account.project_id);
        if method != "POST" || path != expected_path {
            return google_error(404, "NOT_FOUND", json!([]));
        }
        let is_issued = bearer(headers).is_some_and(|token| self.issued.lock().unwrap().contains(token));
        if !is_issued {
            return google_error(401, "UNAUTHENTICATED", json!([fcm_error_code("THIRD_PARTY_AUTH_ERROR")]));
        }
        let Ok(request) = serde_json::from_slice::<Value>(body) else {
            return invalid_argument("message");
        };
        let message = &request["message"];
        let Some(token) = message["token"].as_str().filter(|token| !token.is_empty()) else {
            return invalid_argument("message.token");
        };
        if let Some(data) = message.get("data") {
            let all_strings = data.as_object().is_some_and(|data| data.values().all(Value::is_string));
            if !all_strings {
                return invalid_argument("message.data");
            }
        }
        if let Some(ttl) = message.pointer("/android/ttl") {
            let is_duration = ttl
                .as_str()
                .and_then(|ttl| ttl.strip_suffix('s'))
                .is_some_and(|secs| secs.parse::<f64>().is_ok_and(|secs| secs >= 0.0));
            if !is_duration {
                return invalid_argument("message.android.ttl");
            }
        }
        match self.replies.lock().unwrap().get(token) {
            Some(FcmReply::Unregistered) => {
                google_error(404, "NOT_FOUND", json!([fcm_error_code("UNREGISTERED")]))
            }
            Some(FcmReply::InvalidToken) => invalid_argument("message.token"),
            Some(FcmReply::InvalidArgument) => invalid_argument("message.android.priority"),
            Some(FcmReply::QuotaExceeded { retry_after_secs }) => with_header(
                google_error(429, "RESOURCE_EXHAUSTED", json!([fcm_error_code("QUOTA_EXCEEDED")])),
                "retry-after",
                retry_after_secs.to_string(),
            ),
            Some(FcmReply::Internal) => google_error(500, "INTERNAL", json!([fcm_error_code("INTERNAL")])),
            Some(FcmReply::Unavailable) => {
                google_error(503, "UNAVAILABLE", json!([fcm_error_code("UNAVAILABLE")]))
            }
            None => {
                let id = self.next_id.fetch_add(1, Ordering::SeqCst);
                reply(
                    200,
                    &json!({ "name": format!("projects/{}/messages/0:{id}", self.account.project_id) }),
                )
            }
        }
    }
}

impl Handler for FcmState {
    fn handle(&self, method: &str, path: &str, headers: &HeaderMap, body: &[u8]) -> Reply {
        if path == TOKEN_PATH {
            self.token_endpoint(method, headers, body)
        } else {
            self.send(method, path, headers, body)
        }
    }

    fn record(&self, request: ReceivedRequest) {
        let log = if request.path == TOKEN_PATH { &self.token_requests } else { &self.sends };
        log.lock().unwrap().push(request);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_decoding() {
        let form = parse_form(b"grant_type=urn%3Aietf%3Aparams&assertion=a.b-c_d&x=1+2");
        assert_eq!(form["grant_type"], "urn:ietf:params");
        assert_eq!(form["assertion"], "a.b-c_d");
        assert_eq!(form["x"], "1 2");
    }
}
