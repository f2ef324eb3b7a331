//! Real keys and tokens for the JOSE tests: EC P-256 and RSA-2048 keys generated with
//! aws-lc-rs, JWTs signed with `jsonwebtoken`, hand-built forgeries, and a loopback HTTP server
//! that serves a client's key set (`jwks_uri`) and counts how often it was fetched.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use tokio::task::AbortHandle;

/// A signing key with its public JWK.
#[derive(Clone)]
pub struct TestKey {
    pub alg: Algorithm,
    pub kid: String,
    encoding: EncodingKey,
    pub jwk: Jwk,
}

impl std::fmt::Debug for TestKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TestKey({:?}, {})", self.alg, self.kid)
    }
}

impl TestKey {
    fn new(alg: Algorithm, kid: &str, encoding: EncodingKey) -> Self {
        let mut jwk = Jwk::from_encoding_key(&encoding, alg).unwrap();
        jwk.common.key_id = Some(kid.to_owned());
        jwk.common.public_key_use = Some(jsonwebtoken::jwk::PublicKeyUse::Signature);
        Self { alg, kid: kid.to_owned(), encoding, jwk }
    }

    /// A fresh EC P-256 key (ES256).
    pub fn es256(kid: &str) -> Self {
        let pkcs8 =
            EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new()).unwrap();
        Self::new(Algorithm::ES256, kid, EncodingKey::from_ec_der(pkcs8.as_ref()))
    }

    /// A fresh RSA-2048 key (RS256).
    pub fn rs256(kid: &str) -> Self {
        let pair = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).unwrap();
        let pkcs8 = AsDer::<aws_lc_rs::encoding::Pkcs8V1Der>::as_der(&pair).unwrap();
        let pem = format!(
            "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
            STANDARD.encode(pkcs8.as_ref())
        );
        Self::new(Algorithm::RS256, kid, EncodingKey::from_rsa_pem(pem.as_bytes()).unwrap())
    }

    /// The public key as a JSON value (what a client registers).
    pub fn public_jwk(&self) -> Value {
        serde_json::to_value(&self.jwk).unwrap()
    }

    /// A JWT over `claims` with the usual header (`alg`, `kid`, `typ: JWT`).
    pub fn sign(&self, claims: &Value) -> String {
        let mut header = Header::new(self.alg);
        header.kid = Some(self.kid.clone());
        header.typ = Some("JWT".into());
        self.sign_with(&header, claims)
    }

    pub fn sign_with(&self, header: &Header, claims: &Value) -> String {
        jsonwebtoken::encode(header, claims, &self.encoding).unwrap()
    }

    /// A JWT with an arbitrary JSON header, signed by this key (for headers `jsonwebtoken`
    /// would not write: `crit`, `jku`, string `kid` tricks…).
    pub fn sign_raw(&self, header: &Value, claims: &Value) -> String {
        let input = format!("{}.{}", b64_json(header), b64_json(claims));
        let signature = jsonwebtoken::crypto::sign(input.as_bytes(), &self.encoding, self.alg).unwrap();
        format!("{input}.{signature}")
    }
}

/// A `{"keys": [...]}` document of the keys' public halves.
pub fn jwks_json(keys: &[&TestKey]) -> String {
    json!({ "keys": keys.iter().map(|k| k.public_jwk()).collect::<Vec<_>>() }).to_string()
}

/// A realm's key set as Keycloak publishes it: the signing key and, beside it, the realm's
/// `RSA-OAEP` encryption key (`use: enc`) that every realm has.
pub fn keycloak_jwks(signing: &TestKey) -> String {
    let mut encryption = TestKey::rs256("kc-enc").public_jwk();
    encryption["use"] = serde_json::json!("enc");
    encryption["alg"] = serde_json::json!("RSA-OAEP");
    serde_json::json!({ "keys": [encryption, signing.public_jwk()] }).to_string()
}

pub fn b64_json(value: &Value) -> String {
    URL_SAFE_NO_PAD.encode(value.to_string())
}

/// A token with the given header and claims and an arbitrary signature (forgeries).
pub fn forge(header: &Value, claims: &Value, signature: &[u8]) -> String {
    format!("{}.{}.{}", b64_json(header), b64_json(claims), URL_SAFE_NO_PAD.encode(signature))
}

/// An HS256 token keyed with `secret` (the algorithm-confusion forgery, keyed with a public key).
pub fn hs256(header: &Value, claims: &Value, secret: &[u8]) -> String {
    let input = format!("{}.{}", b64_json(header), b64_json(claims));
    let key = EncodingKey::from_secret(secret);
    let signature = jsonwebtoken::crypto::sign(input.as_bytes(), &key, Algorithm::HS256).unwrap();
    format!("{input}.{signature}")
}

/// A loopback HTTP/1.1 server answering every GET with the current body (a `jwks_uri`).
#[derive(Debug)]
pub struct JwksServer {
    addr: SocketAddr,
    body: Arc<Mutex<String>>,
    hits: Arc<AtomicUsize>,
    accept: AbortHandle,
}

impl JwksServer {
    pub async fn start(body: String) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let body = Arc::new(Mutex::new(body));
        let hits = Arc::new(AtomicUsize::new(0));
        let (served, counted) = (Arc::clone(&body), Arc::clone(&hits));
        let accept = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (body, hits) = (Arc::clone(&served), Arc::clone(&counted));
                let service = hyper::service::service_fn(move |_request: Request<Incoming>| {
                    hits.fetch_add(1, Ordering::SeqCst);
                    let text = body.lock().unwrap().clone();
                    async move {
                        Ok::<_, Infallible>(
                            Response::builder()
                                .header("content-type", "application/json")
                                .body(Full::new(Bytes::from(text)))
                                .unwrap(),
                        )
                    }
                });
                tokio::spawn(async move {
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Self { addr, body, hits, accept: accept.abort_handle() }
    }

    pub fn url(&self) -> String {
        format!("http://{}/jwks.json", self.addr)
    }

    /// Serves another key set from now on (the client rotated its keys).
    pub fn set_body(&self, body: String) {
        *self.body.lock().unwrap() = body;
    }

    /// How many requests were served.
    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

impl Drop for JwksServer {
    fn drop(&mut self) {
        self.accept.abort();
    }
}
