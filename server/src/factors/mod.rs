//! Pre-auth: which factors a user may use to sign in right now (push, passkeys), and why not.
//!
//! Unknown users answer exactly like users without a device, so asking cannot tell which
//! usernames exist. Passkeys are not built yet: they are reported truthfully as unavailable.

pub mod model;
pub mod service;
