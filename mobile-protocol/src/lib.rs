//! Countersign device protocol: wire types, canonical signing bytes and verification.
//!
//! This crate does no I/O and never reads the clock. Phones (and the reference authenticator)
//! use it to build and sign requests; the server uses it to parse and verify them. The normative
//! description for implementers in other languages is `PROTOCOL.md` next to this crate, and
//! `test-vectors.json` pins every byte.
//!
//! # Map
//! | module | owns |
//! |---|---|
//! | [`limits`] | `PROTOCOL_VERSION` and every size limit the server enforces |
//! | [`error`] | [`ProtocolError`] (what went wrong locally) and its mapping to wire codes |
//! | [`api_error`] | the error body `{"error": "...", "message": "..."}` and [`ErrorCode`] |
//! | [`canonical`] | the one canonical writer and the domain-separation [`Label`]s |
//! | [`keys`] | P-256 public keys (SEC1), key pairs, the one sign and the one verify |
//! | [`signature`] | DER ECDSA signatures, strictly parsed |
//! | [`fields`] | identifiers, nonces and display-text rules shared by every message |
//! | [`uri`] | the enrollment URI in the QR code, and the server base URL |
//! | [`push`] | push registration (APNs / FCM / none) and what a push may carry |
//! | [`enrollment`] | `POST /device/v1/enroll` with proof of possession |
//! | [`request`] | signed device requests (headers, canonical bytes, server-side check) |
//! | [`challenge`] | server-signed challenge details and the device's signed response |
//!
//! # Flow of trust
//! Every signature in the protocol is over bytes produced by [`canonical`], and those bytes always
//! start with a [`Label`] naming the message type and protocol version. A signature made for one
//! purpose therefore never verifies for another, whatever the field values.
#![forbid(unsafe_code)]

pub mod api_error;
pub mod canonical;
pub mod challenge;
mod encoding;
pub mod enrollment;
pub mod error;
pub mod fields;
pub mod keys;
pub mod limits;
pub mod push;
pub mod request;
pub mod signature;
pub mod uri;

#[cfg(test)]
mod vectors;

pub use api_error::{ErrorBody, ErrorCode};
pub use canonical::Label;
pub use challenge::{
    ChallengeAnswer, ChallengeDetails, ChallengeOutcome, ChallengeResponse, ChallengeResponseResult,
    Decision, PendingChallenges, SignedChallengeDetails,
};
pub use enrollment::{Enrollment, EnrollmentRequest, EnrollmentResponse};
pub use error::ProtocolError;
pub use fields::{
    ActivationCode, ChallengeId, DeviceId, Nonce, ServerId, is_forbidden_in_text, sanitize_display_text,
};
pub use keys::{PublicKey, generate_pkcs8, key_pair_from_pkcs8};
pub use limits::PROTOCOL_VERSION;
pub use push::{ApnsEnvironment, PushPayload, PushProvider, PushRegistration, PushToken, check_apns_token};
pub use request::{
    HEADER_DEVICE_ID, HEADER_NONCE, HEADER_SIGNATURE, HEADER_TIMESTAMP, HttpRequest, RequestHeaders,
    VerifiedRequest,
};
pub use signature::Signature;
pub use uri::{EnrollmentUri, ServerUrl};
