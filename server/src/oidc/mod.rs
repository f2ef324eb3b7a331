//! The OpenID Connect provider: SSO products (Keycloak, Okta, Entra, authentik) send a user
//! whose password they checked to Countersign, the user proves it with a number-matched push or
//! a passkey, and the SSO gets back an ID token saying how (DESIGN.md "OIDC provider").
//!
//! Submodules:
//!
//! - [`keys`]: the signing keys (ES256 by default, RS256 on demand) sealed in the database,
//!   their rotation with publish overlap and emergency revocation, signing compact JWS, and
//!   the JWKS (`keys::JWKS_PATH`), each key with a self-signed `x5c` certificate of itself.
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
//!   rendered by `crate::http::oauth`;
//! - [`authorization`]: authorization requests, the rules (parameters, PKCE `S256`, `prompt`,
//!   `acr`, which errors may be redirected);
//! - [`flow`]: the code flow up to the code — PAR, `/authorize`, the browser-bound sign-in page
//!   answered by a number-matched push or a passkey (and "use a passkey instead", which
//!   cancels the push and moves the sign-in to a passkey sign-in);
//! - [`token`]: the token endpoint (single-use codes, replay revokes) and userinfo;
//! - [`tokens`]: what the ID token and access token say (`acr`, `amr`, audiences, lifetimes);
//! - [`upstream`]: upstream issuers whose `id_token_hint` names the user (the Microsoft Entra
//!   external authentication method profile);
//! - [`discovery`]: the discovery document;
//! - [`http`]: the provider's endpoints.

pub mod authorization;
pub mod client_admin;
pub mod client_auth;
pub mod client_jwks;
pub mod clients;
pub mod discovery;
pub mod flow;
pub mod http;
pub mod jose;
pub mod keys;
pub mod oauth_error;
pub mod token;
pub mod tokens;
pub mod upstream;
