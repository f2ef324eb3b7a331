//! Keycloak's CIBA HTTP authentication channel, Countersign side: a Keycloak realm delegates
//! "ask the user" of its CIBA grant to this server, with no Java plugin (DESIGN.md "Users and
//! how they plug in").
//!
//! # The contract (Keycloak's sources and server admin guide)
//!
//! Read in `keycloak/keycloak`: `HttpAuthenticationChannelProvider` (the outbound request),
//! `AuthenticationChannelRequest` / `AuthenticationChannelResponse` (the JSON shapes),
//! `HttpAuthenticationChannelProviderFactory`, `CibaRootEndpoint`,
//! `BackchannelAuthenticationCallbackEndpoint`, `BackchannelAuthenticationEndpoint` (the
//! binding-message rule) and `CIBAAuthenticationRequest` (the bearer token), all under
//! `services/src/main/java/org/keycloak/protocol/oidc/grants/ciba/`; the server admin guide,
//! `docs/documentation/server_admin/topics/sso-protocols/con-oidc-auth-flows.adoc`, "Client
//! initiated backchannel authentication grant" → "Authentication Channel Provider".
//!
//! - **Where.** One URL per Keycloak *server*, a start option:
//!   `--spi-ciba-auth-channel--ciba-http-auth-channel--http-authentication-channel-uri=https://…/keycloak/ciba`
//!   ([`CHANNEL_PATH`]). Every realm of that server posts there; realms are told apart by the
//!   token's `iss`, and each must be configured (`[[keycloak.realms]]`, [`config`]).
//! - **Request.** `POST` with `Authorization: Bearer <JWS>` and a JSON body: `login_hint` (the
//!   Keycloak *username*, from `DefaultCIBALoginUserResolver`), `scope`, `is_consent_required`,
//!   optional `binding_message` and `acr_values`, and any parameter of the client's request
//!   Keycloak did not recognise, spread at the top level (ignored here; the body is limited to
//!   [`MAX_BODY_BYTES`]). Keycloak accepts only **201** (body ignored); anything else becomes
//!   `503 server_error` for its client, and it does not retry.
//! - **Token.** Signed with the realm's active key (`kid`; RS256 unless the realm's default
//!   signature algorithm says otherwise), published at `{issuer}/protocol/openid-connect/certs`.
//!   Claims: `typ: "Bearer"`, `iss` = the realm issuer, `aud` = **the same issuer** (Keycloak
//!   addresses it to itself), `jti` (`auth_result_id`, the callback's key), `azp` (the CIBA
//!   client), `sub` (Keycloak's user id, not the username), `iat`, `exp` (`iat` + Expires In or
//!   the client's `requested_expiry`). Verified in [`verify`]: asymmetric algorithms only,
//!   never `none` or HMAC; lifetime at most [`verify::MAX_LIFETIME`].
//! - **The body is not signed** and not bound to the token: whoever sees one request could
//!   send the token again with their own `login_hint`. So the `jti` is single use, and the
//!   realm's `sub` is pinned to the Countersign user it first named; a later request naming
//!   anyone else is refused (`store::KeycloakStore::admit_keycloak_request`). Use TLS.
//! - **Binding message.** Keycloak lets through only `^[a-zA-Z0-9-._+/!?#]{1,50}$`
//!   (`BINDING_MESSAGE_VALIDATION`). Keycloak cannot carry anything back to its client, so the
//!   number the user types **must come from the client** as `binding_message`, exactly
//!   `number_digits` digits; anything else is refused (400) — no plain approve/deny prompt
//!   ([`model::number`]). The number goes into the challenge and never to the phone.
//! - **Outcome.** The channel later POSTs `{"status": "SUCCEED" | "UNAUTHORIZED" | "CANCELLED"}`
//!   to `{issuer}/protocol/openid-connect/ext/ciba/auth/callback` with the very same bearer
//!   token. Keycloak answers 200; 401/403 for a bad or expired token; and a second callback for
//!   the same request finds it decided and *deletes* it — so it is sent once, never after `exp`.
//!
//! # What this module does
//!
//! [`service::KeycloakChannel::accept`] verifies the token, reads the body, takes the number,
//! spends the `jti` and checks the pin, creates the challenge with
//! `ChallengeService::create_with` (so the push budget, ladder, silent mode, spray detection
//! and audit apply, charged to the realm's own app `keycloak.<name>`; the challenge never
//! outlives the token), and records the request with its audit event
//! (`keycloak.request_accepted` / `keycloak.request_refused`). An unknown user, a user without
//! a device and a refused push all get the same 201 (no enumeration) and the outcome
//! `CANCELLED`, sent when an unanswered prompt would have expired. Spray detection counts the
//! users each realm prompts (source `keycloak-realm:<issuer>`).
//!
//! Submodules: [`config`] (`[[keycloak.realms]]`), [`model`] (the body, the number rule),
//! [`verify`] (the token), [`service`], [`http`].

pub mod config;
pub mod http;
pub mod model;
pub mod service;
pub mod verify;

/// Where Keycloak posts delegation requests.
pub const CHANNEL_PATH: &str = "/keycloak/ciba";
/// Largest request body accepted (Keycloak's body is small; unknown members are ignored).
pub const MAX_BODY_BYTES: usize = 16 * 1024;
