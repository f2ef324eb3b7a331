//! A small fake Keycloak for the CIBA HTTP authentication channel: one realm on loopback that
//! publishes its key set at Keycloak's path, signs delegation tokens as Keycloak's
//! `createBearerToken` does, posts delegation requests to the channel, and records the
//! outcome callbacks it receives at Keycloak's callback path (answering each with the next
//! status it was told to, 200 by default).

use std::collections::VecDeque;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::task::AbortHandle;

use crate::jose::TestKey;

pub const REALM_PATH: &str = "/realms/acme";
const CERTS: &str = "/protocol/openid-connect/certs";
const CALLBACK: &str = "/protocol/openid-connect/ext/ciba/auth/callback";

/// One callback as Keycloak received it.
#[derive(Debug, Clone, PartialEq)]
pub struct Callback {
    /// The `Authorization` header.
    pub authorization: Option<String>,
    pub content_type: Option<String>,
    pub body: Value,
    /// What this fake answered.
    pub answered: u16,
}

#[derive(Debug, Default)]
struct Shared {
    callbacks: Vec<Callback>,
    answers: VecDeque<u16>,
}

#[derive(Debug)]
pub struct FakeKeycloak {
    addr: SocketAddr,
    pub key: TestKey,
    shared: Arc<Mutex<Shared>>,
    accept: AbortHandle,
}

impl FakeKeycloak {
    pub async fn start() -> Self {
        let key = TestKey::rs256("kc-realm-key-1");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shared = Arc::new(Mutex::new(Shared::default()));
        let (jwks, state) = (crate::jose::keycloak_jwks(&key), Arc::clone(&shared));
        let accept = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (jwks, state) = (jwks.clone(), Arc::clone(&state));
                let service = hyper::service::service_fn(move |request: Request<Incoming>| {
                    let (jwks, state) = (jwks.clone(), Arc::clone(&state));
                    async move { Ok::<_, Infallible>(answer(request, &jwks, &state).await) }
                });
                tokio::spawn(async move {
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Self { addr, key, shared, accept: accept.abort_handle() }
    }

    /// The realm's issuer (`http://127.0.0.1:<port>/realms/acme`).
    pub fn issuer(&self) -> String {
        format!("http://{}{REALM_PATH}", self.addr)
    }

    /// A delegation token as Keycloak signs it: `aud` is the realm itself, and no `iat`.
    pub fn token(&self, sub: &str, azp: &str, lifetime_secs: i64) -> String {
        let now = crate::unix_now() as i64;
        self.key.sign(&json!({
            "typ": "Bearer", "iss": self.issuer(), "aud": self.issuer(), "azp": azp, "sub": sub,
            "jti": uuid::Uuid::new_v4().to_string(), "exp": now + lifetime_secs,
        }))
    }

    /// Posts a delegation request to the channel as `HttpAuthenticationChannelProvider` does;
    /// returns the status.
    pub async fn delegate(
        &self,
        channel_url: &str,
        token: &str,
        login_hint: &str,
        binding_message: &str,
    ) -> u16 {
        let body = json!({
            "login_hint": login_hint, "scope": "openid", "is_consent_required": false,
            "binding_message": binding_message, "acr_values": null,
        });
        let response =
            reqwest::Client::new().post(channel_url).bearer_auth(token).json(&body).send().await.unwrap();
        response.status().as_u16()
    }

    /// Answers the next callbacks with these statuses, then 200 again.
    pub fn answer_next(&self, statuses: &[u16]) {
        self.shared.lock().unwrap().answers.extend(statuses);
    }

    /// The callbacks received so far.
    pub fn callbacks(&self) -> Vec<Callback> {
        self.shared.lock().unwrap().callbacks.clone()
    }

    /// The callbacks presenting `token`.
    pub fn callbacks_for(&self, token: &str) -> Vec<Callback> {
        let bearer = format!("Bearer {token}");
        self.callbacks().into_iter().filter(|c| c.authorization.as_deref() == Some(bearer.as_str())).collect()
    }
}

async fn answer(request: Request<Incoming>, jwks: &str, state: &Mutex<Shared>) -> Response<Full<Bytes>> {
    let path = request.uri().path().to_owned();
    let header = |name: &str| request.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let (authorization, content_type) = (header("authorization"), header("content-type"));
    let reply = |status: u16, body: String| {
        Response::builder()
            .status(status)
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body)))
            .unwrap()
    };
    if path == format!("{REALM_PATH}{CERTS}") {
        return reply(200, jwks.to_owned());
    }
    if path != format!("{REALM_PATH}{CALLBACK}") || request.method() != hyper::Method::POST {
        return reply(404, "{}".into());
    }
    let bytes = request.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    let mut shared = state.lock().unwrap();
    let answered = shared.answers.pop_front().unwrap_or(200);
    shared.callbacks.push(Callback { authorization, content_type, body, answered });
    reply(answered, "{}".into())
}

impl Drop for FakeKeycloak {
    fn drop(&mut self) {
        self.accept.abort();
    }
}
