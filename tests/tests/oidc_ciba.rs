//! End-to-end: decoupled sign-in (OpenID CIBA Core 1.0) through the real `countersign` binary,
//! on SQLite and PostgreSQL, over loopback HTTP. A client registered with the real CLI
//! (`clients create --ciba poll|ping`) asks at `/oidc/ciba` for alice; the consumption device
//! shows the number (the client's numeric `binding_message`, or the `countersign_number` it was
//! answered); alice types it on the reference authenticator; the client polls the token
//! endpoint at the interval it was given (poll mode), or waits for the server's own callback
//! worker to ping its notification endpoint, a fake here that fails twice first (ping mode).
//! The ID token is checked against `/oidc/jwks`. Bad input from outside is named tests.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;
use std::time::{Duration, Instant};

use countersign_e2e::receiver::Receiver;
use countersign_e2e::{
    Engine, Server, authenticator, create_app, enroll_authenticator, eventually, get_json, http,
    query_strings, stderr_of, stdout_of,
};
use serde_json::{Value, json};

const GRANT: &str = "urn:openid:params:grant-type:ciba";
const ACR_PUSH: &str = "urn:countersign:acr:push:number-matching";
/// A `client_notification_token` (RFC 6750 b64token characters).
const NOTIFICATION_TOKEN: &str = "bm90aWZpY2F0aW9uLXRva2Vu.1~";

/// The real server with alice enrolled on the reference authenticator.
struct World {
    server: Server,
    app_key: String,
    phone: PathBuf,
    _dir: tempfile::TempDir,
}

impl World {
    async fn start(engine: Engine) -> Self {
        let server = Server::start(engine).await;
        let app_key = create_app(&server, "directory", "users:read users:write");
        let dir = tempfile::tempdir().unwrap();
        let phone = dir.path().join("alice.json");
        enroll_authenticator(&server, &app_key, "alice", &phone).await;
        Self { server, app_key, phone, _dir: dir }
    }

    /// Registers a CIBA client (`client_secret_basic`) with the real CLI.
    fn register(&self, ciba: &[&str]) -> Client {
        let mut args = vec!["clients", "create", "--name", "Call centre", "--auth", "client_secret_basic"];
        args.extend_from_slice(ciba);
        let output = self.server.cli(&args);
        assert!(output.status.success(), "{args:?}: {}", stderr_of(&output));
        let printed = stdout_of(&output);
        let value = |name: &str| {
            printed
                .lines()
                .find_map(|line| line.strip_prefix(&format!("{name}=")).map(str::to_owned))
                .unwrap_or_else(|| panic!("no {name} in {printed}"))
        };
        Client {
            id: value("client_id"),
            secret: value("client_secret"),
            base_url: self.server.base_url.clone(),
        }
    }

    /// The challenges waiting on alice's phone, as the authenticator lists them.
    fn pending(&self) -> Vec<Value> {
        let pending = authenticator(&self.phone, &["pending", "--json"]);
        assert!(pending.status.success(), "{}", stderr_of(&pending));
        serde_json::from_str(&stdout_of(&pending)).unwrap()
    }

    /// Alice answers the one sign-in on her phone with `number`: the outcome word.
    fn approve_with(&self, number: &str) -> String {
        let pending = self.pending();
        assert_eq!(pending.len(), 1, "{pending:?}");
        assert_eq!(pending[0]["app_name"], "Call centre");
        let id = pending[0]["id"].as_str().unwrap();
        let answered = authenticator(&self.phone, &["approve", id, "--number", number]);
        assert!(answered.status.success(), "{}", stderr_of(&answered));
        stdout_of(&answered)
    }

    async fn alice_id(&self) -> String {
        let user = get_json(&self.server, &self.app_key, "/v1/users/alice").await;
        user["id"].as_str().unwrap().to_owned()
    }

    /// The ID token in `tokens`, verified with a key from `/oidc/jwks` (signature, issuer,
    /// audience, expiry): its claims.
    async fn verified_id_token(&self, client: &Client, tokens: &Value) -> Value {
        let id_token = tokens["id_token"].as_str().expect("an ID token");
        let jwks: jsonwebtoken::jwk::JwkSet =
            http().get(self.server.url("/oidc/jwks")).send().await.unwrap().json().await.unwrap();
        let header = jsonwebtoken::decode_header(id_token).unwrap();
        assert_eq!(header.alg, jsonwebtoken::Algorithm::ES256);
        let jwk = jwks.find(header.kid.as_deref().unwrap()).expect("the signing key is published");
        let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::ES256);
        validation.set_audience(&[client.id.as_str()]);
        validation.set_issuer(&[self.server.base_url.as_str()]);
        let key = jsonwebtoken::DecodingKey::from_jwk(jwk).unwrap();
        jsonwebtoken::decode::<Value>(id_token, &key, &validation).unwrap().claims
    }

    /// What the client checks of a token response for alice: an ID token from us, for it,
    /// saying a number-matched push; an access token userinfo takes.
    async fn assert_alice_signed_in(&self, client: &Client, tokens: &Value) {
        assert_eq!(tokens["token_type"], "Bearer", "{tokens}");
        let claims = self.verified_id_token(client, tokens).await;
        assert_eq!(claims["sub"], self.alice_id().await);
        assert_eq!(claims["acr"], ACR_PUSH);
        assert_eq!(claims["preferred_username"], "alice");
        let access_token = tokens["access_token"].as_str().unwrap();
        let info =
            http().get(self.server.url("/oidc/userinfo")).bearer_auth(access_token).send().await.unwrap();
        assert_eq!(info.status(), 200);
        let info: Value = info.json().await.unwrap();
        assert_eq!(info["sub"], claims["sub"]);
    }
}

/// A CIBA client registered with a secret.
struct Client {
    id: String,
    secret: String,
    base_url: String,
}

/// An HTTP answer: its status, headers and JSON body.
#[derive(Debug)]
struct Answer {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: Value,
}

impl Answer {
    async fn of(response: reqwest::Response) -> Self {
        let (status, headers) = (response.status().as_u16(), response.headers().clone());
        Self { status, headers, body: response.json().await.unwrap() }
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|v| v.to_str().unwrap())
    }

    /// An OAuth error answer (RFC 6749 §5.2): its status and `error`, with a description.
    fn error(&self) -> (u16, &str) {
        assert!(self.body["error_description"].is_string(), "{:?}", self.body);
        (self.status, self.body["error"].as_str().unwrap_or_default())
    }
}

impl Client {
    async fn post(&self, path: &str, pairs: &[(&str, &str)]) -> Answer {
        let response = http()
            .post(format!("{}{path}", self.base_url))
            .basic_auth(&self.id, Some(&self.secret))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form(pairs))
            .send()
            .await
            .unwrap();
        Answer::of(response).await
    }

    /// `POST /oidc/ciba` with `scope=openid profile` and `pairs`.
    async fn ask(&self, pairs: &[(&str, &str)]) -> Answer {
        let mut all = vec![("scope", "openid profile")];
        all.extend_from_slice(pairs);
        self.post("/oidc/ciba", &all).await
    }

    /// A request that must be acknowledged (CIBA §7.3): the acknowledgement.
    async fn acknowledged(&self, pairs: &[(&str, &str)]) -> Value {
        let answer = self.ask(pairs).await;
        assert_eq!(answer.status, 200, "{:?}", answer.body);
        assert_eq!(answer.header("cache-control"), Some("no-store"));
        assert_eq!(answer.body["interval"], 5);
        assert_eq!(answer.body["expires_in"], 60, "a challenge's lifetime");
        assert!(answer.body["auth_req_id"].as_str().unwrap().len() >= 43, "256 bits: {:?}", answer.body);
        answer.body
    }

    /// One token request for the CIBA grant (§10.1).
    async fn token(&self, auth_req_id: &str) -> Answer {
        self.post("/oidc/token", &[("grant_type", GRANT), ("auth_req_id", auth_req_id)]).await
    }
}

fn form(pairs: &[(&str, &str)]) -> String {
    openidconnect::url::form_urlencoded::Serializer::new(String::new()).extend_pairs(pairs).finish()
}

/// A poll-mode client's side of one request: it makes a token request no sooner than
/// `interval` seconds after its last one ended (§7.3), the only waiting the protocol asks.
struct Poller<'c> {
    client: &'c Client,
    auth_req_id: String,
    interval: Duration,
    last: Option<Instant>,
}

impl<'c> Poller<'c> {
    fn new(client: &'c Client, acknowledgement: &Value) -> Self {
        Self {
            client,
            auth_req_id: acknowledgement["auth_req_id"].as_str().unwrap().to_owned(),
            interval: Duration::from_secs(acknowledgement["interval"].as_u64().unwrap()),
            last: None,
        }
    }

    async fn poll(&mut self) -> Answer {
        if let Some(last) = self.last {
            tokio::time::sleep_until((last + self.interval).into()).await;
        }
        let answer = self.client.token(&self.auth_req_id).await;
        self.last = Some(Instant::now());
        answer
    }
}

/// Poll mode, the client's number: pending until alice types it, then tokens once. Again with
/// the number Countersign draws (`countersign_number`), which the client shows instead.
async fn poll_mode_signs_alice_in_with_the_number_the_client_shows(engine: Engine) {
    let world = World::start(engine).await;
    let client = world.register(&["--ciba", "poll"]);
    let ack = client.acknowledged(&[("login_hint", "alice"), ("binding_message", "482")]).await;
    assert!(ack.get("countersign_number").is_none(), "the client chose the number: {ack}");
    let mut poller = Poller::new(&client, &ack);
    assert_eq!(poller.poll().await.error(), (400, "authorization_pending"));
    assert_eq!(world.approve_with("482"), "approved");
    let tokens = poller.poll().await;
    assert_eq!(tokens.status, 200, "{:?}", tokens.body);
    assert_eq!(tokens.header("cache-control"), Some("no-store"));
    world.assert_alice_signed_in(&client, &tokens.body).await;
    // Once: the same auth_req_id again is refused.
    assert_eq!(poller.poll().await.error(), (400, "invalid_grant"));

    // No binding_message: the number to show comes back in the acknowledgement.
    let ack = client.acknowledged(&[("login_hint", "alice")]).await;
    let number = ack["countersign_number"].as_str().unwrap().to_owned();
    assert!(number.len() == 3 && number.bytes().all(|b| b.is_ascii_digit()), "{number:?}");
    assert_eq!(world.approve_with(&number), "approved");
    let mut poller = Poller::new(&client, &ack);
    let tokens = poller.poll().await;
    assert_eq!(tokens.status, 200, "{:?}", tokens.body);
    world.assert_alice_signed_in(&client, &tokens.body).await;
    assert!(world.pending().is_empty());
    assert!(!world.server.logs().contains(&client.secret), "no client secret in the server's logs");
}

/// Alice types a number other than the one the consumption device shows: the request ends in
/// `access_denied`, and no token is ever issued for it.
async fn a_wrong_number_on_the_phone_is_access_denied(engine: Engine) {
    let world = World::start(engine).await;
    let client = world.register(&["--ciba", "poll"]);
    let ack = client.acknowledged(&[("login_hint", "alice"), ("binding_message", "482")]).await;
    assert_eq!(world.approve_with("483"), "denied_wrong_number");
    let mut poller = Poller::new(&client, &ack);
    assert_eq!(poller.poll().await.error(), (400, "access_denied"));
    assert_eq!(poller.poll().await.error(), (400, "access_denied"), "denied for good");
    assert!(world.pending().is_empty());
}

/// The state and attempt count of each callback the server owes, from its database.
async fn callbacks(world: &World) -> Vec<String> {
    query_strings(&world.server.database, "SELECT state || ':' || CAST(attempts AS TEXT) FROM callbacks")
        .await
}

/// Ping mode: nothing is sent while alice has not answered; then the server's own worker POSTs
/// the client's notification endpoint, which fails twice (503) and accepts the third POST; each
/// carries the client's bearer token and the `auth_req_id`; the job ends delivered after three
/// attempts, and the client fetches its tokens once.
async fn ping_mode_notifies_the_client_until_it_accepts_then_tokens_once(engine: Engine) {
    let world = World::start(engine).await;
    let endpoint = Receiver::start(vec![503, 503, 204]).await;
    let url = endpoint.url("/ciba/ping");
    let client = world.register(&["--ciba", "ping", "--notification-endpoint", &url]);
    let ack = client
        .acknowledged(&[
            ("login_hint", "alice"),
            ("binding_message", "482"),
            ("client_notification_token", NOTIFICATION_TOKEN),
        ])
        .await;
    let auth_req_id = ack["auth_req_id"].as_str().unwrap();
    assert_eq!(callbacks(&world).await, ["queued:0"], "owed, not due while alice has not answered");
    assert_eq!(world.approve_with("482"), "approved");

    let got = eventually(30, || Some(endpoint.received()).filter(|got| got.len() >= 3))
        .await
        .unwrap_or_else(|| panic!("three POSTs within 30 s; got {:?}", endpoint.received()));
    assert_eq!(got.iter().map(|r| r.answered).collect::<Vec<_>>(), [503, 503, 204]);
    let bearer = format!("Bearer {NOTIFICATION_TOKEN}");
    for request in &got {
        assert_eq!((request.method.as_str(), request.path.as_str()), ("POST", "/ciba/ping"));
        assert_eq!(request.authorization.as_deref(), Some(bearer.as_str()));
        assert!(request.content_type.as_deref().unwrap_or_default().starts_with("application/json"));
        assert_eq!(request.json(), json!({ "auth_req_id": auth_req_id }));
    }
    // The accepted POST ends the job: delivered after three attempts, nothing more to send.
    let deadline = Instant::now() + Duration::from_secs(10);
    while callbacks(&world).await != ["delivered:3"] {
        assert!(Instant::now() < deadline, "not recorded delivered: {:?}", callbacks(&world).await);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let mut poller = Poller::new(&client, &ack);
    let tokens = poller.poll().await;
    assert_eq!(tokens.status, 200, "{:?}", tokens.body);
    world.assert_alice_signed_in(&client, &tokens.body).await;
    assert_eq!(poller.poll().await.error(), (400, "invalid_grant"));
    assert_eq!(endpoint.received().len(), 3, "exactly one accepted notification");
    assert!(!world.server.logs().contains(NOTIFICATION_TOKEN), "no bearer token in the server's logs");
}

/// A client the server does not know (or with the wrong secret) is `invalid_client`, 401, and
/// prompts nobody.
async fn an_unknown_client_is_refused_with_401(engine: Engine) {
    let world = World::start(engine).await;
    let client = world.register(&["--ciba", "poll"]);
    let base_url = client.base_url.clone();
    let unknown =
        Client { id: "AAAAAAAAAAAAAAAAAAAAAA".into(), secret: "x".into(), base_url: base_url.clone() };
    let wrong = Client { id: client.id.clone(), secret: "not-the-secret".into(), base_url };
    for who in [&unknown, &wrong] {
        let refused = who.ask(&[("login_hint", "alice")]).await;
        assert_eq!(refused.error(), (401, "invalid_client"), "{}", who.id);
        // RFC 6749 §5.2: the client tried HTTP Basic, so the 401 says so.
        assert!(
            refused.header("www-authenticate").is_some_and(|h| h.starts_with("Basic")),
            "{:?}",
            refused.headers
        );
    }
    assert!(world.pending().is_empty(), "nobody was prompted");
}

/// The user is named by exactly one hint: both `login_hint` and `id_token_hint`, or neither,
/// is `invalid_request`, and prompts nobody.
async fn both_hints_or_neither_is_invalid_request(engine: Engine) {
    let world = World::start(engine).await;
    let client = world.register(&["--ciba", "poll"]);
    for pairs in [vec![], vec![("login_hint", "alice"), ("id_token_hint", "x.y.z")]] {
        assert_eq!(client.ask(&pairs).await.error(), (400, "invalid_request"), "{pairs:?}");
    }
    assert!(world.pending().is_empty(), "nobody was prompted");
}

/// Attack: a client probes which usernames exist. An unknown user gets an acknowledgement
/// shaped like alice's (same members, lifetime, interval, lengths), and the same
/// `authorization_pending` as alice, who has not answered yet.
async fn an_unknown_user_looks_like_a_user_who_has_not_answered(engine: Engine) {
    let world = World::start(engine).await;
    let client = world.register(&["--ciba", "poll"]);
    let shape = |ack: &Value| {
        let mut members: Vec<String> = ack.as_object().unwrap().keys().cloned().collect();
        members.sort();
        let length = |name: &str| ack[name].as_str().unwrap().len();
        (
            members,
            ack["expires_in"].clone(),
            ack["interval"].clone(),
            length("auth_req_id"),
            length("countersign_number"),
        )
    };
    let alice = client.acknowledged(&[("login_hint", "alice")]).await;
    let nobody = client.acknowledged(&[("login_hint", "nobody-here")]).await;
    assert_eq!(shape(&alice), shape(&nobody));
    assert_eq!(Poller::new(&client, &nobody).poll().await.error(), (400, "authorization_pending"));
    assert_eq!(Poller::new(&client, &alice).poll().await.error(), (400, "authorization_pending"));
    assert_eq!(world.pending().len(), 1, "only alice was prompted");
}

/// A token request sooner than the interval is `slow_down`, and the interval grows by 5 s.
async fn polling_too_fast_is_slow_down(engine: Engine) {
    let world = World::start(engine).await;
    let client = world.register(&["--ciba", "poll"]);
    let ack = client.acknowledged(&[("login_hint", "alice")]).await;
    let auth_req_id = ack["auth_req_id"].as_str().unwrap();
    assert_eq!(client.token(auth_req_id).await.error(), (400, "authorization_pending"));
    let fast = client.token(auth_req_id).await;
    assert_eq!(fast.error(), (400, "slow_down"));
    let said = fast.body["error_description"].as_str().unwrap();
    assert!(said.contains("10 seconds"), "{said}");
}

countersign_e2e::on_both_engines!(
    poll_mode_signs_alice_in_with_the_number_the_client_shows,
    a_wrong_number_on_the_phone_is_access_denied,
    ping_mode_notifies_the_client_until_it_accepts_then_tokens_once,
    an_unknown_client_is_refused_with_401,
    both_hints_or_neither_is_invalid_request,
    an_unknown_user_looks_like_a_user_who_has_not_answered,
    polling_too_fast_is_slow_down,
);
