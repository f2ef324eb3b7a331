//! Devices: enrollment with proof of possession, signed device requests with replay
//! protection, push registrations, revocation, and the server's device-signing key.
//!
//! Owns the device side of PROTOCOL.md. Must not decide challenges (that is `challenges`), and
//! never lets a key or push token serve two users.

pub mod api_doc;
pub mod http;
pub mod model;
pub mod refusals;
pub mod server_key;
pub mod service;
