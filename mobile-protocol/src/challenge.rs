//! Challenges as the phone sees them: server-signed details in, a device-signed answer out.
//!
//! The details never contain the matching number: it is shown only on the login screen, so only
//! someone who sees that screen can approve. They are signed by the server's challenge key (the
//! only key that signs [`Label::ChallengeDetails`]) and bound to the server id and the device id,
//! so the phone can show them without trusting the transport or the push provider.
//!
//! The answer binds the challenge id, that challenge's server nonce, the decision, the typed
//! number, the device id and a strictly increasing per-device counter. The server verifies the
//! signature, then checks number, state and counter in one compare-and-set.

use ring::rand::SecureRandom;
use ring::signature::EcdsaKeyPair;
use serde::{Deserialize, Serialize};

use crate::canonical::{CanonicalWriter, Label};
use crate::error::ProtocolError;
use crate::fields::{ChallengeId, DeviceId, Nonce, ServerId, check_text};
use crate::keys::{self, PublicKey};
use crate::limits::{
    MAX_APP_NAME_LEN, MAX_IP_LEN, MAX_LOCATION_LEN, MAX_NUMBER_DIGITS, MAX_USER_AGENT_LEN, PROTOCOL_VERSION,
};
use crate::signature::Signature;

/// A pending challenge as shown to the user. Contains no number, by design.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChallengeDetails {
    /// The challenge.
    pub challenge_id: ChallengeId,
    /// Fresh random value (≥ 128 bits) the answer must echo, so an answer is bound to this
    /// challenge instance and not just its id.
    pub server_nonce: Nonce,
    /// Application the sign-in is for (non-empty).
    pub app_name: String,
    /// IP address of the sign-in, empty if unknown.
    pub ip: String,
    /// User agent of the sign-in, empty if unknown.
    pub user_agent: String,
    /// Approximate location ("Berlin, DE"), absent if unknown; never empty when present.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    /// Creation time, unix seconds (server clock).
    pub created_at: u64,
    /// Expiry time, unix seconds (server clock); the server decides expiry, this is for display.
    pub expires_at: u64,
}

impl ChallengeDetails {
    /// Canonical bytes, after checking every field:
    /// label, server_id, device_id, challenge_id, server_nonce (raw bytes), app_name, ip,
    /// user_agent, location (empty when absent), created_at (u64), expires_at (u64).
    ///
    /// `server_id` and `device_id` are not in the JSON: both sides already know them, and
    /// binding them means a details signature is valid only for the account it was sent to.
    pub fn canonical_bytes(
        &self,
        server_id: &ServerId,
        device_id: &DeviceId,
    ) -> Result<Vec<u8>, ProtocolError> {
        check_text("app_name", &self.app_name, MAX_APP_NAME_LEN, false)?;
        check_text("ip", &self.ip, MAX_IP_LEN, true)?;
        check_text("user_agent", &self.user_agent, MAX_USER_AGENT_LEN, true)?;
        if let Some(location) = &self.location {
            check_text("location", location, MAX_LOCATION_LEN, false)?;
        }
        if self.expires_at < self.created_at {
            return Err(ProtocolError::InvalidField {
                field: "expires_at",
                reason: "must not be before created_at",
            });
        }
        CanonicalWriter::new(Label::ChallengeDetails)
            .text(server_id.as_str())
            .text(device_id.as_str())
            .text(self.challenge_id.as_str())
            .bytes(self.server_nonce.as_bytes())
            .text(&self.app_name)
            .text(&self.ip)
            .text(&self.user_agent)
            .text(self.location.as_deref().unwrap_or(""))
            .u64(self.created_at)
            .u64(self.expires_at)
            .finish()
    }

    /// Server side: signs the details for one device with the server's challenge key.
    pub fn sign(
        self,
        server_id: &ServerId,
        device_id: &DeviceId,
        server_key_pair: &EcdsaKeyPair,
        rng: &dyn SecureRandom,
    ) -> Result<SignedChallengeDetails, ProtocolError> {
        let canonical = self.canonical_bytes(server_id, device_id)?;
        let signature = keys::sign(server_key_pair, rng, &canonical)?;
        Ok(SignedChallengeDetails { details: self, signature })
    }

    /// Whether the challenge has expired at `now` (for display; the server decides).
    pub fn is_expired(&self, now: u64) -> bool {
        now >= self.expires_at
    }
}

/// Details plus the server's signature (one item of `GET /device/v1/challenges`, and the body of
/// `GET /device/v1/challenges/{id}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedChallengeDetails {
    /// The signed fields.
    #[serde(flatten)]
    pub details: ChallengeDetails,
    /// Server signature over [`ChallengeDetails::canonical_bytes`].
    pub signature: Signature,
}

impl SignedChallengeDetails {
    /// Phone side: verifies with the server key, server id and device id stored at enrollment.
    /// Show nothing from a challenge that fails this.
    pub fn verify(
        &self,
        server_key: &PublicKey,
        server_id: &ServerId,
        device_id: &DeviceId,
    ) -> Result<&ChallengeDetails, ProtocolError> {
        let canonical = self.details.canonical_bytes(server_id, device_id)?;
        server_key.verify(&canonical, &self.signature)?;
        Ok(&self.details)
    }
}

/// Body of `GET /device/v1/challenges`: the device's user's pending challenges, oldest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingChallenges {
    /// Each individually signed.
    pub challenges: Vec<SignedChallengeDetails>,
}

/// What the user decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    /// It was me: `number` holds the digits typed.
    Approve,
    /// Not now: `number` is empty.
    Deny,
    /// It was not me: `number` is empty; the server freezes push and alerts an admin.
    Report,
}

impl Decision {
    /// Wire and canonical name.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Approve => "approve",
            Self::Deny => "deny",
            Self::Report => "report",
        }
    }
}

/// The signed content of a challenge response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChallengeAnswer {
    /// Always [`PROTOCOL_VERSION`].
    pub protocol_version: u64,
    /// The challenge answered.
    pub challenge_id: ChallengeId,
    /// The challenge's `server_nonce`, echoed.
    pub server_nonce: Nonce,
    /// Approve, deny or report.
    pub decision: Decision,
    /// Digits typed (ASCII, leading zeros kept) for approve; empty for deny and report.
    pub number: String,
    /// The answering device.
    pub device_id: DeviceId,
    /// Strictly greater than every counter this device sent before (start at 1; persist it).
    pub counter: u64,
}

impl ChallengeAnswer {
    /// An answer to `details` with the current protocol version.
    pub fn new(
        details: &ChallengeDetails,
        decision: Decision,
        number: impl Into<String>,
        device_id: DeviceId,
        counter: u64,
    ) -> Self {
        Self {
            protocol_version: PROTOCOL_VERSION,
            challenge_id: details.challenge_id.clone(),
            server_nonce: details.server_nonce.clone(),
            decision,
            number: number.into(),
            device_id,
            counter,
        }
    }

    /// Canonical bytes, after checking the version and the decision/number pairing:
    /// label, protocol_version (u64), challenge_id, server_nonce (raw bytes), decision, number,
    /// device_id, counter (u64).
    pub fn canonical_bytes(&self) -> Result<Vec<u8>, ProtocolError> {
        if self.protocol_version != PROTOCOL_VERSION {
            return Err(ProtocolError::UnsupportedVersion { version: self.protocol_version.to_string() });
        }
        self.check_number()?;
        CanonicalWriter::new(Label::ChallengeResponse)
            .u64(self.protocol_version)
            .text(self.challenge_id.as_str())
            .bytes(self.server_nonce.as_bytes())
            .text(self.decision.as_str())
            .text(&self.number)
            .text(self.device_id.as_str())
            .u64(self.counter)
            .finish()
    }

    fn check_number(&self) -> Result<(), ProtocolError> {
        let invalid = |reason| ProtocolError::InvalidField { field: "number", reason };
        match self.decision {
            Decision::Approve if self.number.is_empty() => {
                Err(ProtocolError::MissingField { field: "number" })
            }
            Decision::Approve if self.number.len() > MAX_NUMBER_DIGITS => {
                Err(ProtocolError::FieldTooLong { field: "number", max: MAX_NUMBER_DIGITS })
            }
            Decision::Approve if !self.number.bytes().all(|b| b.is_ascii_digit()) => {
                Err(invalid("must be ASCII digits"))
            }
            Decision::Deny | Decision::Report if !self.number.is_empty() => {
                Err(invalid("must be empty unless the decision is approve"))
            }
            _ => Ok(()),
        }
    }

    /// Device side: signs the answer.
    pub fn sign(
        self,
        key_pair: &EcdsaKeyPair,
        rng: &dyn SecureRandom,
    ) -> Result<ChallengeResponse, ProtocolError> {
        let signature = keys::sign(key_pair, rng, &self.canonical_bytes()?)?;
        Ok(ChallengeResponse { answer: self, signature })
    }
}

/// Body of `POST /device/v1/challenges/{id}/response`: the [`ChallengeAnswer`] fields plus
/// `signature`. Authenticated by that signature alone (no request-signing headers).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChallengeResponse {
    /// The signed fields.
    #[serde(flatten)]
    pub answer: ChallengeAnswer,
    /// Device signature over [`ChallengeAnswer::canonical_bytes`].
    pub signature: Signature,
}

impl ChallengeResponse {
    /// Server side: verifies the signature under the key of `answer.device_id`, then that the
    /// answer is for `challenge_id` (from the path) and echoes its stored `server_nonce`.
    ///
    /// The caller then, in one conditional update: requires the challenge pending and unexpired,
    /// the device not revoked and bound to the challenge's user, `counter` greater than the
    /// device's last counter, and compares the number (constant time) for approvals.
    pub fn verify(
        &self,
        device_key: &PublicKey,
        challenge_id: &ChallengeId,
        server_nonce: &Nonce,
    ) -> Result<&ChallengeAnswer, ProtocolError> {
        self.verify_signature(device_key)?;
        self.check_binding(challenge_id, server_nonce)
    }

    /// Server side, first half of [`Self::verify`]: the signature alone, which needs nothing
    /// but the claimed device's key. A server verifies this before it says anything about the
    /// challenge, so that without the key an unknown challenge and a known one look the same.
    pub fn verify_signature(&self, device_key: &PublicKey) -> Result<&ChallengeAnswer, ProtocolError> {
        device_key.verify(&self.answer.canonical_bytes()?, &self.signature)?;
        Ok(&self.answer)
    }

    /// Server side, second half of [`Self::verify`]: the answer is for `challenge_id` (from the
    /// path) and echoes its stored `server_nonce`.
    pub fn check_binding(
        &self,
        challenge_id: &ChallengeId,
        server_nonce: &Nonce,
    ) -> Result<&ChallengeAnswer, ProtocolError> {
        if &self.answer.challenge_id != challenge_id {
            return Err(ProtocolError::Mismatch { field: "challenge_id" });
        }
        if &self.answer.server_nonce != server_nonce {
            return Err(ProtocolError::Mismatch { field: "server_nonce" });
        }
        Ok(&self.answer)
    }
}

/// What became of the challenge after a response.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChallengeOutcome {
    /// Number matched; the sign-in proceeds.
    Approved,
    /// The user denied.
    Denied,
    /// The typed number was wrong; the challenge is over (one attempt) and push is frozen.
    DeniedWrongNumber,
    /// Reported as "not me"; push is frozen until an admin reviews.
    Reported,
}

/// Body of a `200` answer to `POST /device/v1/challenges/{id}/response`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChallengeResponseResult {
    /// The challenge's new state.
    pub outcome: ChallengeOutcome,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use ring::rand::SystemRandom;

    fn pair(rng: &SystemRandom) -> EcdsaKeyPair {
        keys::key_pair_from_pkcs8(&keys::generate_pkcs8(rng).unwrap(), rng).unwrap()
    }

    fn details() -> ChallengeDetails {
        ChallengeDetails {
            challenge_id: ChallengeId::new("ch-1").unwrap(),
            server_nonce: Nonce::from_bytes(&[7; 32]).unwrap(),
            app_name: "Payroll".into(),
            ip: "203.0.113.7".into(),
            user_agent: "Mozilla/5.0".into(),
            location: Some("Berlin, DE".into()),
            created_at: 100,
            expires_at: 160,
        }
    }

    #[test]
    fn details_json_has_no_number_and_verifies_for_its_account_only() {
        let rng = SystemRandom::new();
        let server = pair(&rng);
        let server_key = PublicKey::from_key_pair(&server).unwrap();
        let server_id = ServerId::new("https://mfa.example.com").unwrap();
        let device = DeviceId::new("dev-1").unwrap();
        let signed = details().sign(&server_id, &device, &server, &rng).unwrap();
        let json = serde_json::to_value(&signed).unwrap();
        assert!(json.get("number").is_none());
        let parsed: SignedChallengeDetails = serde_json::from_value(json).unwrap();
        assert!(parsed.verify(&server_key, &server_id, &device).is_ok());
        let other_device = DeviceId::new("dev-2").unwrap();
        assert_eq!(
            parsed.verify(&server_key, &server_id, &other_device),
            Err(ProtocolError::SignatureInvalid)
        );
    }

    #[test]
    fn response_binds_challenge_and_nonce() {
        let rng = SystemRandom::new();
        let device = pair(&rng);
        let key = PublicKey::from_key_pair(&device).unwrap();
        let d = details();
        let response = ChallengeAnswer::new(&d, Decision::Approve, "042", DeviceId::new("dev-1").unwrap(), 1)
            .sign(&device, &rng)
            .unwrap();
        let json = serde_json::to_string(&response).unwrap();
        let parsed: ChallengeResponse = serde_json::from_str(&json).unwrap();
        assert!(parsed.verify(&key, &d.challenge_id, &d.server_nonce).is_ok());
        assert_eq!(
            parsed.verify(&key, &ChallengeId::new("ch-2").unwrap(), &d.server_nonce),
            Err(ProtocolError::Mismatch { field: "challenge_id" })
        );
        assert_eq!(
            parsed.verify(&key, &d.challenge_id, &Nonce::from_bytes(&[8; 32]).unwrap()),
            Err(ProtocolError::Mismatch { field: "server_nonce" })
        );
    }

    #[test]
    fn number_must_match_decision() {
        let d = details();
        let id = DeviceId::new("dev-1").unwrap();
        let answer = |decision, number: &str| {
            ChallengeAnswer::new(&d, decision, number, id.clone(), 1).canonical_bytes()
        };
        assert!(answer(Decision::Approve, "123").is_ok());
        assert!(answer(Decision::Deny, "").is_ok());
        assert!(answer(Decision::Report, "").is_ok());
        assert!(answer(Decision::Approve, "").is_err());
        assert!(answer(Decision::Approve, "12a").is_err());
        assert!(answer(Decision::Approve, "١٢٣").is_err(), "non-ASCII digits");
        assert!(answer(Decision::Approve, "12345678901").is_err());
        assert!(answer(Decision::Deny, "123").is_err());
        let mut future = ChallengeAnswer::new(&d, Decision::Deny, "", id, 1);
        future.protocol_version = 2;
        assert!(matches!(future.canonical_bytes(), Err(ProtocolError::UnsupportedVersion { .. })));
    }
}
