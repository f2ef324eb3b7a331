//! Passkeys and security keys (WebAuthn): registration over REST, listing, renaming, revoking,
//! and sign-in as a challenge (`"factor": "passkey"`). The WebAuthn ceremonies themselves,
//! store-free, are in [`ceremony`], shared with the admin plane (discoverable sign-in).

pub mod ceremony;
pub mod enrollment;
pub mod http;
pub mod model;
pub mod service;
pub mod sign_in;
