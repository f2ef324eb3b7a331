//! Passkeys and security keys (WebAuthn): registration over REST, listing, renaming, revoking,
//! and sign-in as a challenge (`"factor": "passkey"`).

pub mod enrollment;
pub mod http;
pub mod model;
pub mod service;
pub mod sign_in;
