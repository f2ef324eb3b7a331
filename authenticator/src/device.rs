//! The device protocol as a phone speaks it (PROTOCOL.md sections 4 to 6).
//!
//! This is the module a phone developer reimplements. Every byte that is signed or verified is
//! built by `countersign-mobile-protocol`; what is here is the order of operations and the checks a
//! phone must make around them:
//!
//! * enrollment signs a proof of possession over the server URL *from the QR code* (6.1);
//! * every other call except the challenge response carries the four signed headers (5), signed
//!   over the path *relative to the base URL* and the exact body bytes sent;
//! * challenge details are shown only after the server signature verifies under the key pinned at
//!   enrollment, bound to this account's server id and device id (6.3); anything else is discarded;
//! * the answer echoes the server nonce and carries a counter the caller has already persisted
//!   (6.4).

use countersign_mobile_protocol::{
    ChallengeAnswer, ChallengeDetails, ChallengeId, ChallengeOutcome, ChallengeResponseResult, Decision,
    DeviceId, Enrollment, EnrollmentRequest, EnrollmentResponse, EnrollmentUri, HttpRequest, ProtocolError,
    PublicKey, PushRegistration, RequestHeaders, SignedChallengeDetails, sanitize_display_text,
};
use ring::rand::SystemRandom;
use ring::signature::EcdsaKeyPair;
use serde::Deserialize;

use crate::client::{Client, Method, Request, parse_json};
use crate::clock;
use crate::error::Error;
use crate::state::PrivateKey;

const ENROLL_PATH: &str = "/device/v1/enroll";
const CHALLENGES_PATH: &str = "/device/v1/challenges";
const NOTICES_PATH: &str = "/device/v1/notices";
const PUSH_TOKEN_PATH: &str = "/device/v1/push-token";
const DEVICE_PATH: &str = "/device/v1";

/// Device name and platform sent at enrollment (display text, 1..=128 and 1..=64 bytes).
#[derive(Debug, Clone)]
pub struct DeviceInfo {
    /// Shown to the user and admins, e.g. "Alice's iPhone".
    pub name: String,
    /// E.g. "iOS 17.4".
    pub platform: String,
}

/// Builds the enrollment request for `uri` and signs its proof of possession with `key`.
///
/// Pure, so every field (device name, platform, push token) is checked before anything is
/// stored or sent. The signed `server` is the URI's value byte for byte, so the server can check
/// that the proof was made for it.
pub fn sign_enrollment(
    uri: &EnrollmentUri,
    key: &PrivateKey,
    push: PushRegistration,
    info: DeviceInfo,
) -> Result<EnrollmentRequest, Error> {
    let rng = SystemRandom::new();
    let key_pair = key.key_pair(&rng)?;
    let enrollment = Enrollment {
        server: uri.server.clone(),
        activation_code: uri.code.clone(),
        public_key: PublicKey::from_key_pair(&key_pair)?,
        push,
        device_name: info.name,
        platform: info.platform,
    };
    Ok(enrollment.sign(&key_pair, &rng)?)
}

/// `POST /device/v1/enroll` (no request signature: the proof of possession authenticates it),
/// to the server the request names; expects `201`.
///
/// The caller must have shown the server host and user and had them confirmed first.
pub async fn enroll(request: &EnrollmentRequest) -> Result<EnrollmentResponse, Error> {
    let client = Client::new(request.enrollment.server.clone())?;
    let body = client
        .send(Request {
            method: Method::Post,
            path: ENROLL_PATH,
            headers: &[],
            body: Some(to_json(request)?),
            expected_status: 201,
        })
        .await?;
    parse_json(ENROLL_PATH, &body)
}

/// The pending challenges that verified, and what was discarded.
#[derive(Debug, Clone, Default)]
pub struct Pending {
    /// Verified details, oldest first (the server's order).
    pub challenges: Vec<ChallengeDetails>,
    /// Items that were malformed or whose signature did not verify; never to be shown as
    /// requests, only reported as suspicious.
    pub discarded: Vec<Discarded>,
}

/// A pending-list item a phone must not show.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Discarded {
    /// The item's `challenge_id` if it had a string one, made safe to print.
    pub challenge_id: Option<String>,
    /// Why it was discarded.
    pub reason: String,
}

/// List body with items kept raw, so one malformed item is discarded alone instead of failing
/// the whole list (the protocol crate's `PendingChallenges` would reject everything).
#[derive(Deserialize)]
struct RawPending {
    challenges: Vec<serde_json::Value>,
}

/// An enrolled device: its key and the account it belongs to.
#[derive(Debug)]
pub struct Device {
    client: Client,
    key_pair: EcdsaKeyPair,
    rng: SystemRandom,
    account: EnrollmentResponse,
}

impl Device {
    /// The device enrolled with `account` on the server at `client`'s base URL.
    pub fn new(client: Client, key: &PrivateKey, account: EnrollmentResponse) -> Result<Self, Error> {
        let rng = SystemRandom::new();
        let key_pair = key.key_pair(&rng)?;
        Ok(Self { client, key_pair, rng, account })
    }

    /// This device's id.
    pub fn device_id(&self) -> &DeviceId {
        &self.account.device_id
    }

    /// `GET /device/v1/challenges` (signed): the user's pending challenges, each verified.
    pub async fn pending(&self) -> Result<Pending, Error> {
        let body = self.signed(Method::Get, CHALLENGES_PATH, Vec::new(), 200).await?;
        let raw: RawPending = parse_json(CHALLENGES_PATH, &body)?;
        let mut pending = Pending::default();
        for item in raw.challenges {
            let challenge_id = item
                .get("challenge_id")
                .and_then(serde_json::Value::as_str)
                .map(|id| sanitize_display_text(id, 64));
            match serde_json::from_value::<SignedChallengeDetails>(item) {
                Ok(signed) => match self.verify(&signed) {
                    Ok(details) => pending.challenges.push(details),
                    Err(error) => {
                        pending.discarded.push(Discarded { challenge_id, reason: error.to_string() });
                    }
                },
                Err(error) => pending.discarded.push(Discarded {
                    challenge_id,
                    reason: format!("malformed challenge details: {error}"),
                }),
            }
        }
        Ok(pending)
    }

    /// `GET /device/v1/challenges/{id}` (signed): one challenge, verified, and checked to be the
    /// one asked for (a validly signed but different challenge must not be answered by mistake).
    pub async fn challenge(&self, id: &ChallengeId) -> Result<ChallengeDetails, Error> {
        let path = format!("{CHALLENGES_PATH}/{id}");
        let body = self.signed(Method::Get, &path, Vec::new(), 200).await?;
        let signed: SignedChallengeDetails = parse_json(&path, &body)?;
        let details =
            self.verify(&signed).map_err(|source| Error::DetailsRejected { id: id.clone(), source })?;
        if &details.challenge_id != id {
            return Err(Error::InvalidAnswer {
                path,
                reason: format!("details are for challenge {}, not {id}", details.challenge_id),
            });
        }
        Ok(details)
    }

    /// `POST /device/v1/challenges/{id}/response` (authenticated by its own signature).
    ///
    /// `counter` must already be persisted (see [`crate::state::StateFile::next_counter`]): if
    /// this process dies after sending, the next answer must still use a higher counter.
    /// `number` is the digits typed for [`Decision::Approve`] and empty otherwise.
    pub async fn answer(
        &self,
        details: &ChallengeDetails,
        decision: Decision,
        number: &str,
        counter: u64,
    ) -> Result<ChallengeOutcome, Error> {
        let response =
            ChallengeAnswer::new(details, decision, number, self.account.device_id.clone(), counter)
                .sign(&self.key_pair, &self.rng)?;
        let path = format!("{CHALLENGES_PATH}/{}/response", details.challenge_id);
        let body = self
            .client
            .send(Request {
                method: Method::Post,
                path: &path,
                headers: &[],
                body: Some(to_json(&response)?),
                expected_status: 200,
            })
            .await?;
        Ok(parse_json::<ChallengeResponseResult>(&path, &body)?.outcome)
    }

    /// `PUT /device/v1/push-token` (signed, body hash included): replaces the push registration.
    pub async fn set_push(&self, registration: &PushRegistration) -> Result<(), Error> {
        self.signed(Method::Put, PUSH_TOKEN_PATH, to_json(registration)?, 204).await?;
        Ok(())
    }

    /// `GET /device/v1/notices` (signed): security notices for this device, oldest first, as the
    /// server sent them (PROTOCOL.md 6.7; informational, not signed by the server).
    pub async fn notices(&self) -> Result<serde_json::Value, Error> {
        let body = self.signed(Method::Get, NOTICES_PATH, Vec::new(), 200).await?;
        let notices: serde_json::Value = parse_json(NOTICES_PATH, &body)?;
        Ok(notices.get("notices").cloned().unwrap_or(serde_json::Value::Array(Vec::new())))
    }

    /// `DELETE /device/v1` (signed): revokes this device on the server.
    pub async fn unenroll(&self) -> Result<(), Error> {
        self.signed(Method::Delete, DEVICE_PATH, Vec::new(), 204).await?;
        Ok(())
    }

    /// Checks the server's signature with the pinned key, this account's server id and device id.
    fn verify(&self, signed: &SignedChallengeDetails) -> Result<ChallengeDetails, ProtocolError> {
        signed
            .verify(&self.account.server_public_key, &self.account.server_id, &self.account.device_id)
            .cloned()
    }

    /// Sends a signed request (section 5). `path` is relative to the base URL and is what gets
    /// signed; `body` is signed by hash and sent byte for byte (empty: no body).
    async fn signed(
        &self,
        method: Method,
        path: &str,
        body: Vec<u8>,
        expected_status: u16,
    ) -> Result<Vec<u8>, Error> {
        let http = HttpRequest { method: method.as_str(), path_and_query: path, body: &body };
        let headers = RequestHeaders::sign(
            &self.key_pair,
            &self.rng,
            self.account.device_id.clone(),
            &http,
            clock::now_unix(),
        )?;
        let body = if body.is_empty() { None } else { Some(body) };
        self.client.send(Request { method, path, headers: &headers.to_pairs(), body, expected_status }).await
    }
}

fn to_json(value: &impl serde::Serialize) -> Result<Vec<u8>, Error> {
    // Serialising these protocol types cannot fail (no maps with non-string keys, no I/O), but a
    // precise error beats an `expect` if that ever changes.
    serde_json::to_vec(value).map_err(|error| Error::Encode(error.to_string()))
}
