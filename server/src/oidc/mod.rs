//! The OpenID Connect provider: SSO products (Keycloak, Okta, Entra, authentik) send a user
//! whose password they checked to Countersign, the user proves it with a number-matched push or
//! a passkey, and the SSO gets back an ID token saying how (DESIGN.md "OIDC provider").
//!
//! Submodules:
//!
//! - [`keys`]: the signing keys (ES256 by default, RS256 on demand) sealed in the database,
//!   their rotation with publish overlap and emergency revocation, signing compact JWS, and
//!   the JWKS (`keys::JWKS_PATH`).
//! - [`http`]: the provider's endpoints (the JWKS).

pub mod http;
pub mod keys;
