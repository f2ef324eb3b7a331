//! Passkeys and security keys (WebAuthn): registration over REST, listing, renaming, revoking.

pub mod http;
pub mod model;
pub mod service;
