//! The HTTP edge: what every capability's `http.rs` shares, so none imports another's.
//!
//! - [`admin_session`]: `AdminSession<Role>`, an admin's session held to a role by its type, and
//!   the guard against cross-site state changes on `/admin`;
//! - [`app_key`]: `AppKey<Scope>`, the app API key held to a scope by its type;
//! - [`device`]: `SignedDevice`, a request signed by an enrolled device, and device bodies;
//! - [`extract`]: JSON, path and peer-address extractors whose rejections are [`ApiError`]s;
//! - [`codes`]: every stable `/v1` error code with its status, spelled once;
//! - [`error`]: [`ApiError`], the one way failures become responses;
//! - [`page`]: the hosted pages' security headers, rendering, and times as people read them;
//! - [`oauth`]: OAuth endpoints' errors (`crate::oidc::oauth_error::OAuthError`) as RFC 6749 responses;
//! - [`webauthn`]: the credential JSON a browser's `credential.toJSON()` writes, as request bodies.
//!
//! Handlers extract, call a service, and map the result; they never touch the store.

pub mod admin_session;
pub mod app_key;
pub mod codes;
pub mod device;
pub mod error;
pub mod extract;
pub mod oauth;
pub mod page;
pub mod webauthn;

pub use app_key::AppKey;
pub use app_key::scope;
pub use codes::Code;
pub use device::{DeviceBody, SignedDevice, parse_json, parse_signed_json};
pub use error::{ApiError, ErrorBody};
pub use extract::{ApiJson, ApiPath, PeerAddr, cookie};
