//! The OpenID Connect provider (issue #12): SSO products use Countersign as their MFA step.
//!
//! Clients and how they prove who they are (no HTTP endpoint of its own; `/token`, PAR, JAR,
//! `id_token_hint` and CIBA build on these):
//! - [`clients`]: the rules — a registered client, its redirect URIs (validated once, matched
//!   byte for byte), auth method, key set, ID token algorithm;
//! - [`client_admin`]: registering, listing and revoking clients (`countersign clients …`),
//!   audited;
//! - [`client_auth`]: authenticating a client at a token-style endpoint (`client_secret_basic`,
//!   `client_secret_post`, `private_key_jwt` per RFC 7523, public clients), single-use assertion
//!   `jti`s, refusals audited;
//! - [`client_jwks`]: fetching and caching a client's `jwks_uri` (timeout, size limit, TTL,
//!   rate-limited refetch on an unknown `kid`);
//! - [`jose`]: the strict verifier every incoming JWT goes through;
//! - [`oauth_error`]: RFC 6749 errors (`{"error","error_description"}` and their status),
//!   rendered by `crate::http::oauth`.
pub mod client_admin;
pub mod client_auth;
pub mod client_jwks;
pub mod clients;
pub mod jose;
pub mod oauth_error;
