//! Shared by the integration tests: a tiny in-process HTTP/1.1 server that records each request
//! and answers from a script, and a fixture with a device key, a server key and their account.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, dead_code)]

use std::collections::HashMap;

use countersign_authenticator::client::Client;
use countersign_authenticator::clock;
use countersign_authenticator::device::Device;
use countersign_authenticator::state::{PrivateKey, State, StateFile};
use countersign_mobile_protocol::{
    ChallengeDetails, ChallengeId, DeviceId, EnrollmentResponse, HEADER_DEVICE_ID, HEADER_NONCE,
    HEADER_SIGNATURE, HEADER_TIMESTAMP, HttpRequest, Nonce, PublicKey, RequestHeaders, ServerId, ServerUrl,
};
use ring::rand::SystemRandom;
use ring::signature::EcdsaKeyPair;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// Base URL path prefix: paths are appended to it but signed without it.
pub const PREFIX: &str = "/cs";

/// One request as received.
#[derive(Debug)]
pub struct Recorded {
    pub method: String,
    /// Request target as sent on the wire (includes the base URL's path prefix).
    pub target: String,
    pub headers: HashMap<String, String>,
    pub body: Vec<u8>,
}

impl Recorded {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }

    /// The path a device must have signed: the target without the base URL's prefix.
    pub fn signed_path(&self) -> &str {
        self.target.strip_prefix(PREFIX).expect("request outside the base URL")
    }

    /// Verifies the four signed-request headers exactly as the server will.
    pub fn verify_signed(&self, device_key: &PublicKey) -> DeviceId {
        let headers = RequestHeaders::parse(
            self.header(HEADER_DEVICE_ID),
            self.header(HEADER_TIMESTAMP),
            self.header(HEADER_NONCE),
            self.header(HEADER_SIGNATURE),
        )
        .expect("signed-request headers parse");
        let request =
            HttpRequest { method: &self.method, path_and_query: self.signed_path(), body: &self.body };
        headers.verify(device_key, &request, clock::now_unix(), 300).expect("request signature verifies");
        headers.device_id
    }
}

pub type Handler = Box<dyn FnOnce(&Recorded) -> (u16, String) + Send>;

/// Serves one connection per handler, in order (`Connection: close`, so the client reconnects),
/// and returns what it received.
pub async fn serve(handlers: Vec<Handler>) -> (ServerUrl, JoinHandle<Vec<Recorded>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = ServerUrl::parse(&format!("http://{}{PREFIX}", listener.local_addr().unwrap())).unwrap();
    let task = tokio::spawn(async move {
        let mut received = Vec::new();
        for handler in handlers {
            let (mut stream, _) = listener.accept().await.unwrap();
            let request = read_request(&mut stream).await;
            let (status, body) = handler(&request);
            let response = format!(
                "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            stream.write_all(response.as_bytes()).await.unwrap();
            stream.shutdown().await.unwrap();
            received.push(request);
        }
        received
    });
    (base, task)
}

async fn read_request(stream: &mut tokio::net::TcpStream) -> Recorded {
    let mut buffer = Vec::new();
    let header_end = loop {
        let mut chunk = [0u8; 4096];
        let read = stream.read(&mut chunk).await.unwrap();
        assert!(read > 0, "connection closed mid-request");
        buffer.extend_from_slice(&chunk[..read]);
        if let Some(at) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            break at;
        }
    };
    let head = String::from_utf8(buffer[..header_end].to_vec()).unwrap();
    let mut lines = head.split("\r\n");
    let mut request_line = lines.next().unwrap().split(' ');
    let (method, target) = (request_line.next().unwrap().to_owned(), request_line.next().unwrap().to_owned());
    let headers: HashMap<String, String> = lines
        .map(|line| {
            let (name, value) = line.split_once(':').unwrap();
            (name.trim().to_ascii_lowercase(), value.trim().to_owned())
        })
        .collect();
    let length: usize = headers.get("content-length").map_or(0, |v| v.parse().unwrap());
    let mut body = buffer[header_end + 4..].to_vec();
    while body.len() < length {
        let mut chunk = [0u8; 4096];
        let read = stream.read(&mut chunk).await.unwrap();
        assert!(read > 0, "connection closed mid-body");
        body.extend_from_slice(&chunk[..read]);
    }
    Recorded { method, target, headers, body }
}

/// A device key, a server key and the account linking them.
pub struct Fixture {
    pub rng: SystemRandom,
    pub device_key: PrivateKey,
    pub server_key: EcdsaKeyPair,
    pub account: EnrollmentResponse,
}

impl Fixture {
    pub fn new() -> Self {
        let rng = SystemRandom::new();
        let device_key = PrivateKey::generate(&rng).unwrap();
        let server_key = PrivateKey::generate(&rng).unwrap().key_pair(&rng).unwrap();
        let account = EnrollmentResponse {
            device_id: DeviceId::new("dev-1").unwrap(),
            server_id: ServerId::new("https://mfa.example.com").unwrap(),
            server_public_key: PublicKey::from_key_pair(&server_key).unwrap(),
        };
        Self { rng, device_key, server_key, account }
    }

    pub fn device_public_key(&self) -> PublicKey {
        PublicKey::from_key_pair(&self.device_key.key_pair(&self.rng).unwrap()).unwrap()
    }

    pub fn device(&self, base: ServerUrl) -> Device {
        Device::new(Client::new(base).unwrap(), &self.device_key, self.account.clone()).unwrap()
    }

    pub fn details(&self, id: &str) -> ChallengeDetails {
        let now = clock::now_unix();
        ChallengeDetails {
            challenge_id: ChallengeId::new(id).unwrap(),
            server_nonce: Nonce::generate(&self.rng).unwrap(),
            app_name: "Payroll".into(),
            ip: "203.0.113.7".into(),
            user_agent: "Firefox/125.0".into(),
            location: Some("Berlin, DE".into()),
            created_at: now,
            expires_at: now + 60,
        }
    }

    /// Details signed with `key` for this account, as JSON.
    pub fn signed_json(&self, details: &ChallengeDetails, key: &EcdsaKeyPair) -> serde_json::Value {
        let signed =
            details.clone().sign(&self.account.server_id, &self.account.device_id, key, &self.rng).unwrap();
        serde_json::to_value(signed).unwrap()
    }

    /// A state file holding this enrolled account.
    pub fn state_file(&self, dir: &tempfile::TempDir, base: &ServerUrl) -> StateFile {
        let file = StateFile::new(dir.path().join("state.json"));
        let state = State {
            enrollment: Some(self.account.clone()),
            ..State::new(self.device_key.clone(), base.clone(), "alice".into())
        };
        file.save(&state).unwrap();
        file
    }

    /// A key pair the account does not know (a forger's).
    pub fn stranger_key(&self) -> EcdsaKeyPair {
        PrivateKey::generate(&self.rng).unwrap().key_pair(&self.rng).unwrap()
    }
}

/// `s` percent-encoded for an enrollment URI value (every non-unreserved byte).
pub fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}
