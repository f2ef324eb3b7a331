//! Pre-auth: which factors a user may use to sign in right now (push, passkeys), and why not.
//!
//! Unknown users answer exactly like users without a device, so asking cannot tell which
//! usernames exist. Passkeys are not built yet: the model already counts them (a registered one
//! is usable, and spares the user an enrollment), and the service reports none.

pub mod http;
pub mod model;
pub mod service;
