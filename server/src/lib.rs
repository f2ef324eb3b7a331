//! Countersign: a self-hosted number-matching MFA server.
//!
//! Where a request goes:
//!
//! | module      | owns                                                                   |
//! |-------------|------------------------------------------------------------------------|
//! | [`cli`]     | the `countersign` command: `serve`, `migrate`, `apps`, `clients`, `audit`, `enrollments`, `users`, `keys` |
//! | [`config`]  | typed configuration (file + `COUNTERSIGN_*`), validated at start         |
//! | [`startup`] | the composition root: `Application` (state, router, background tasks, shutdown) for `serve` and tests |
//! | [`app`]     | `AppState`, router assembly, tower layers, health/ready/metrics/OpenAPI |
//! | [`middleware`] | request ids, access log, HTTP metrics, timeout, panic guard          |
//! | [`http`]    | the edge: `AppKey<Scope>` and `SignedDevice` extractors, JSON/path extractors, the table of error codes, `ApiError`, OAuth error responses |
//! | [`fault`]   | `InternalError`: an unexpected failure with its cause, for the logs      |
//! | [`openapi`] | the error responses every `/v1` route shares, added to its OpenAPI document |
//! | [`api_keys`]| app API keys and scopes: keys, hashes, checking a presented key          |
//! | [`users`]   | provisioning users (`/v1/users`)                                        |
//! | [`devices`] | enrollment, signed device requests, revocation (`/device/v1`, PROTOCOL.md) |
//! | [`challenges`] | number matching: `/v1/challenges`, device answers, long-poll, push outbox worker |
//! | [`factors`] | pre-auth: which factors a user may use now, and why not (`/v1/users/{u}/factors`) |
//! | [`passkeys`] | WebAuthn relying party (`[webauthn]`), passkey registration ceremonies, enrollment links for the hosted page, list/rename/revoke (`/v1/users/{u}/passkeys`), passkey sign-in challenges (`/v1/challenges/{id}/webauthn`) and what the hosted pages' script calls (`/passkeys/…`) |
//! | [`oidc`]    | the OpenID Connect provider: signing keys (sealed, rotated with overlap, revocable) and the JWKS (`/oidc/jwks`); clients (`countersign clients`), client authentication (`client_secret_basic`/`_post`, `private_key_jwt`, public clients), the strict JWT verifier, RFC 6749 errors; the code flow (discovery, PAR, authorize, the browser-bound sign-in page, token, userinfo); CIBA poll and ping (`/oidc/ciba`) |
//! | [`keycloak`] | Keycloak's CIBA HTTP authentication channel (`POST /keycloak/ciba`): realms (`[[keycloak.realms]]`), their signed bearer tokens, the number from `binding_message`, challenges charged to the realm's app, requests recorded by `jti` |
//! | [`pages`]   | hosted pages (askama + one vanilla script, strict CSP): passkey registration (`/passkeys/enroll`) and sign-in (`/passkeys/sign-in`) |
//! | [`admin`]   | the admin plane (`/admin`): admins (not users) who sign in with passkeys only, sessions (`__Host-` cookie, CSRF token, step-up), roles, four-eyes requests, the dashboard (overview, users, prompt timelines, audit viewer, apps, the admin roster and own passkeys; API and server-rendered pages) and its live alert stream (SSE) |
//! | [`fatigue`] | push budget, escalation ladder, spray/silent rules, signals (`/v1/fatigue`, timeline, unfreeze), the run-time policy (`policy`: bounds, four-eyes changes) |
//! | [`push`]    | APNs and FCM clients (HTTP/2), what a push may carry                    |
//! | [`alerts`]  | security alerts (`AlertKind`) to a signed webhook                       |
//! | [`callbacks`] | the callback outbox's delivery: CIBA pings and Keycloak outcomes, POSTed once a challenge is decided, retried until the request expires |
//! | [`audit`]   | the hash-chained audit trail and its verifier                           |
//! | [`secrets`] | the master key, keys derived from it, encryption of stored secrets      |
//! | [`private_files`] | the data directory (0700) and data files (0600)                  |
//! | [`store`]   | all SQL: a repository trait per capability, `Store` composing them, SQLite and PostgreSQL engines |
//! | [`clock`]   | injected time                                                           |
//! | [`skew`]    | the instance clock checked against the database's (expiry uses the latter) |
//!
//! Each capability keeps its pure rules (`model.rs`) apart from orchestration (`service.rs`)
//! and axum glue (`http.rs`: extract, call the service, map the result). Handlers never touch
//! the store and no `http.rs` imports another's (`tests/layout.rs` checks both); what they
//! share is in [`http`]. Only `store` knows SQL; only `http.rs` files (and `http`, `app`,
//! `middleware`) know axum.

pub mod admin;
pub mod alerts;
pub mod api_keys;
pub mod app;
pub mod audit;
pub mod callbacks;
pub mod challenges;
pub mod cli;
pub mod clock;
pub mod config;
pub mod devices;
pub mod factors;
pub mod fatigue;
pub mod fault;
pub mod http;
pub mod ids;
pub mod keycloak;
pub mod middleware;
pub mod oidc;
pub mod openapi;
pub mod pages;
pub mod passkeys;
pub mod private_files;
pub mod push;
pub mod secrets;
pub mod skew;
pub mod startup;
pub mod store;
pub mod telemetry;
pub mod users;
