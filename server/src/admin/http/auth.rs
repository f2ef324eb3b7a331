//! Admin identity over HTTP: the bootstrap, invitations, discoverable sign-in, step-up and the
//! admin's own passkeys. The pre-session routes (bootstrap, invitation, sign-in) are bound to
//! the login-ceremony cookie their `options` call sets; a verified registration or sign-in
//! answers with a new session cookie and its CSRF token.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{AppendHeaders, IntoResponse, Response};
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::SessionView;
use crate::admin::accounts::{AccountError, AdminPasskeyView, BegunCeremony, LOGIN_COOKIE};
use crate::admin::model::CEREMONY_TTL;
use crate::admin::model::StepUpAction;
use crate::admin::sessions::SESSION_COOKIE;
use crate::app::AppState;
use crate::http::admin_session::AdminSession;
use crate::http::admin_session::role::AnyRole;
use crate::http::cookie;
use crate::http::webauthn::rejection_code;
use crate::http::{ApiError, ApiJson, ApiPath, Code};
use crate::ids::AdminPasskeyId;
use crate::passkeys::ceremony::CeremonyError;
use crate::store::AdminRecord;

/// The bootstrap token (`countersign admin bootstrap`) and the first admin's name.
#[derive(Debug, Deserialize, ToSchema)]
pub struct BootstrapOptionsBody {
    pub token: String,
    pub name: String,
}

/// An invitation's token.
#[derive(Debug, Deserialize, ToSchema)]
pub struct InvitationOptionsBody {
    pub token: String,
}

/// A new passkey's name.
#[derive(Debug, Deserialize, ToSchema)]
pub struct PasskeyOptionsBody {
    pub name: String,
}

/// What a step-up is for: `approve_request:<id>`, `add_passkey`, `revoke_passkey:<id>`, … The
/// step-up is spent only by that action.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StepUpBody {
    pub action: String,
}

/// The browser's answer: `credential.toJSON()`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct CredentialBody {
    #[schema(value_type = Object)]
    pub credential: serde_json::Value,
}

/// Options for `PublicKeyCredential.parseCreationOptionsFromJSON()` or
/// `parseRequestOptionsFromJSON()`.
#[derive(Debug, Serialize, ToSchema)]
pub struct CeremonyOptions {
    #[schema(value_type = Object)]
    pub public_key: serde_json::Value,
}

impl From<AccountError> for ApiError {
    fn from(error: AccountError) -> Self {
        let message = error.to_string();
        let code = match error {
            AccountError::InvalidName(_) | AccountError::InvalidTtl => {
                return ApiError::invalid_request(message);
            }
            AccountError::BootstrapTokenInvalid => Code::BootstrapTokenInvalid,
            AccountError::BootstrapTokenUsed => Code::BootstrapTokenUsed,
            AccountError::BootstrapTokenExpired => Code::BootstrapTokenExpired,
            AccountError::BootstrapClosed => Code::BootstrapClosed,
            AccountError::InvitationInvalid => Code::InvitationInvalid,
            AccountError::InvitationUsed => Code::InvitationUsed,
            AccountError::InvitationExpired => Code::InvitationExpired,
            AccountError::AdminExists => Code::AdminExists,
            AccountError::CeremonyInvalid => Code::CeremonyInvalid,
            AccountError::Ceremony(CeremonyError::Rejected { rejection, .. }) => rejection_code(rejection),
            AccountError::Ceremony(CeremonyError::ClientDataTooLarge) => Code::ClientDataTooLarge,
            AccountError::Ceremony(CeremonyError::AuthenticatorNotAllowed { .. }) => {
                Code::AuthenticatorNotAllowed
            }
            AccountError::Ceremony(_) => Code::WebauthnResponseInvalid,
            AccountError::UnknownCredential => Code::WebauthnUnknownCredential,
            AccountError::CounterNotIncreasing => Code::WebauthnCounterNotIncreasing,
            AccountError::FactorAlreadyBound => Code::FactorAlreadyBound,
            AccountError::PasskeyNotFound => Code::PasskeyNotFound,
            AccountError::LastPasskey => Code::LastAdminPasskey,
            AccountError::Internal(e) => return ApiError::internal(&e),
            AccountError::Store(e) => return e.into(),
        };
        ApiError::new(code, message)
    }
}

/// `__Host-` with `Secure`, `Path=/` and no `Domain`; `SameSite=Strict`; five minutes.
fn login_cookie(value: &str) -> String {
    format!(
        "{LOGIN_COOKIE}={value}; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age={}",
        CEREMONY_TTL.whole_seconds()
    )
}

/// The session cookie: no `Max-Age`, so it dies with the browser (the server enforces the
/// idle and absolute timeouts).
fn session_cookie(value: &str) -> String {
    format!("{SESSION_COOKIE}={value}; Path=/; Secure; HttpOnly; SameSite=Strict")
}

fn options_response(begun: BegunCeremony) -> Response {
    let cookies = begun.login_cookie.map(|c| login_cookie(c.expose_secret()));
    let body = Json(CeremonyOptions { public_key: begun.options });
    match cookies {
        Some(cookie) => (AppendHeaders([(header::SET_COOKIE, cookie)]), body).into_response(),
        None => body.into_response(),
    }
}

fn user_agent(headers: &HeaderMap) -> &str {
    headers.get(header::USER_AGENT).and_then(|v| v.to_str().ok()).unwrap_or("")
}

/// A new session for `admin` (any session the browser presented is ended, never adopted), the
/// login-ceremony cookie cleared.
fn signed_in(admin: &AdminRecord, status: StatusCode, token: &str, csrf: String) -> Response {
    let view =
        SessionView { admin_id: admin.id, name: admin.name.clone(), role: admin.role, csrf_token: csrf };
    let cookies = AppendHeaders([
        (header::SET_COOKIE, session_cookie(token)),
        (
            header::SET_COOKIE,
            format!("{LOGIN_COOKIE}=; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age=0"),
        ),
    ]);
    (status, cookies, Json(view)).into_response()
}

/// Auth: the caller has just verified `admin`'s passkey. Starts their session (see [`signed_in`]).
async fn start_session(
    state: &AppState,
    headers: &HeaderMap,
    admin: &AdminRecord,
    status: StatusCode,
) -> Result<Response, ApiError> {
    let presented = cookie(headers, SESSION_COOKIE);
    let started = state.admin.start_session(admin, presented, user_agent(headers)).await?;
    Ok(signed_in(admin, status, started.token.expose_secret(), started.csrf))
}

/// Auth: a bootstrap token in the body. Creation options for the first admin's passkey (resident
/// key and user verification required), bound to a new login-ceremony cookie; a bad token begins
/// nothing.
#[utoipa::path(
    post, path = "/admin/api/bootstrap/options", tag = "admin",
    request_body = BootstrapOptionsBody,
    responses(
        (status = 200, body = CeremonyOptions, description = "Sets `__Host-countersign-admin-login`"),
        (status = 404, body = crate::http::ErrorBody, description = "bootstrap_token_invalid"),
        (status = 409, body = crate::http::ErrorBody, description = "bootstrap_closed"),
        (status = 410, body = crate::http::ErrorBody, description = "bootstrap_token_used, bootstrap_token_expired")
    )
)]
async fn bootstrap_options(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<BootstrapOptionsBody>,
) -> Result<Response, ApiError> {
    Ok(options_response(state.admin.accounts.begin_bootstrap(&body.token, &body.name).await?))
}

/// Auth: the login-ceremony cookie of `bootstrap/options`. Registers the first admin's passkey,
/// spends the token, and signs the new admin in.
#[utoipa::path(
    post, path = "/admin/api/bootstrap", tag = "admin",
    request_body = CredentialBody,
    responses(
        (status = 201, body = SessionView, description = "Sets `__Host-countersign-admin`"),
        (status = 403, body = crate::http::ErrorBody, description = "ceremony_invalid or a webauthn_* code"),
        (status = 410, body = crate::http::ErrorBody, description = "bootstrap_token_used")
    )
)]
async fn bootstrap(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<CredentialBody>,
) -> Result<Response, ApiError> {
    let login = cookie(&headers, LOGIN_COOKIE);
    let admin = state.admin.accounts.finish_bootstrap(login, &body.credential).await?;
    start_session(&state, &headers, &admin, StatusCode::CREATED).await
}

/// Auth: an invitation token in the body. Creation options for the invited admin's first
/// passkey, bound to a new login-ceremony cookie.
#[utoipa::path(
    post, path = "/admin/api/invite/options", tag = "admin",
    request_body = InvitationOptionsBody,
    responses(
        (status = 200, body = CeremonyOptions, description = "Sets `__Host-countersign-admin-login`"),
        (status = 404, body = crate::http::ErrorBody, description = "invitation_invalid"),
        (status = 410, body = crate::http::ErrorBody, description = "invitation_used, invitation_expired")
    )
)]
async fn invitation_options(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<InvitationOptionsBody>,
) -> Result<Response, ApiError> {
    Ok(options_response(state.admin.accounts.begin_invitation(&body.token).await?))
}

/// Auth: the login-ceremony cookie of `invite/options`. Registers the invited admin's first
/// passkey (the invitation is spent, the admin becomes active) and signs them in.
#[utoipa::path(
    post, path = "/admin/api/invite", tag = "admin",
    request_body = CredentialBody,
    responses(
        (status = 201, body = SessionView, description = "Sets `__Host-countersign-admin`"),
        (status = 403, body = crate::http::ErrorBody, description = "ceremony_invalid or a webauthn_* code"),
        (status = 410, body = crate::http::ErrorBody, description = "invitation_used")
    )
)]
async fn invitation(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<CredentialBody>,
) -> Result<Response, ApiError> {
    let login = cookie(&headers, LOGIN_COOKIE);
    let admin = state.admin.accounts.finish_invitation(login, &body.credential).await?;
    start_session(&state, &headers, &admin, StatusCode::CREATED).await
}

/// Auth: none. Request options for a discoverable sign-in (no name typed), bound to a new
/// login-ceremony cookie.
#[utoipa::path(
    post, path = "/admin/api/sign-in/options", tag = "admin",
    responses((status = 200, body = CeremonyOptions, description = "Sets `__Host-countersign-admin-login`"))
)]
async fn sign_in_options(State(state): State<AppState>) -> Result<Response, ApiError> {
    Ok(options_response(state.admin.accounts.begin_sign_in().await?))
}

/// Auth: the login-ceremony cookie of `sign-in/options` and an admin's passkey. A new session.
#[utoipa::path(
    post, path = "/admin/api/sign-in", tag = "admin",
    request_body = CredentialBody,
    responses(
        (status = 200, body = SessionView, description = "Sets `__Host-countersign-admin`"),
        (status = 403, body = crate::http::ErrorBody, description = "ceremony_invalid or a webauthn_* code")
    )
)]
async fn sign_in(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<CredentialBody>,
) -> Result<Response, ApiError> {
    let login = cookie(&headers, LOGIN_COOKIE);
    let admin = state.admin.accounts.finish_sign_in(login, &body.credential).await?;
    start_session(&state, &headers, &admin, StatusCode::OK).await
}

/// Auth: admin session (any role), CSRF token. Request options for a step-up for one action:
/// one of this admin's passkeys.
#[utoipa::path(
    post, path = "/admin/api/session/step-up/options", tag = "admin",
    security(("admin_session" = []), ("csrf" = [])),
    request_body = StepUpBody,
    responses((status = 200, body = CeremonyOptions), (status = 422, body = crate::http::ErrorBody))
)]
async fn step_up_options(
    State(state): State<AppState>,
    admin: AdminSession<AnyRole>,
    ApiJson(body): ApiJson<StepUpBody>,
) -> Result<Response, ApiError> {
    let action = StepUpAction::parse(&body.action).ok_or_else(|| {
        ApiError::invalid_request("action must name one action: a lowercase verb, optionally `:` and an id")
    })?;
    let options = state.admin.accounts.begin_step_up(&admin, &action).await?;
    Ok(Json(CeremonyOptions { public_key: options }).into_response())
}

/// Auth: admin session (any role), CSRF token, and this admin's passkey. Records a step-up,
/// good for one sensitive action within two minutes.
#[utoipa::path(
    post, path = "/admin/api/session/step-up", tag = "admin",
    security(("admin_session" = []), ("csrf" = [])),
    request_body = CredentialBody,
    responses(
        (status = 204, description = "Stepped up"),
        (status = 403, body = crate::http::ErrorBody, description = "ceremony_invalid or a webauthn_* code")
    )
)]
async fn step_up(
    State(state): State<AppState>,
    admin: AdminSession<AnyRole>,
    ApiJson(body): ApiJson<CredentialBody>,
) -> Result<StatusCode, ApiError> {
    let action = state.admin.accounts.finish_step_up(&admin, &body.credential).await?;
    state.admin.sessions.record_step_up(&admin, &action).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Auth: admin session (any role). The admin's own passkeys.
#[utoipa::path(
    get, path = "/admin/api/passkeys", tag = "admin",
    security(("admin_session" = [])),
    responses((status = 200, body = Vec<AdminPasskeyView>))
)]
async fn passkeys(
    State(state): State<AppState>,
    admin: AdminSession<AnyRole>,
) -> Result<Json<Vec<AdminPasskeyView>>, ApiError> {
    Ok(Json(state.admin.accounts.passkeys(admin.id).await?))
}

/// Auth: admin session (any role), CSRF token. Creation options for another passkey of this
/// admin.
#[utoipa::path(
    post, path = "/admin/api/passkeys/options", tag = "admin",
    security(("admin_session" = []), ("csrf" = [])),
    request_body = PasskeyOptionsBody,
    responses((status = 200, body = CeremonyOptions))
)]
async fn passkey_options(
    State(state): State<AppState>,
    admin: AdminSession<AnyRole>,
    ApiJson(body): ApiJson<PasskeyOptionsBody>,
) -> Result<Response, ApiError> {
    let options = state.admin.accounts.begin_add_passkey(&admin, &body.name).await?;
    Ok(Json(CeremonyOptions { public_key: options }).into_response())
}

/// Auth: admin session (any role), CSRF token, a fresh step-up (spent). Registers another
/// passkey of this admin.
#[utoipa::path(
    post, path = "/admin/api/passkeys", tag = "admin",
    security(("admin_session" = []), ("csrf" = [])),
    request_body = CredentialBody,
    responses(
        (status = 201, body = AdminPasskeyView),
        (status = 403, body = crate::http::ErrorBody, description = "step_up_required, ceremony_invalid or a webauthn_* code"),
        (status = 409, body = crate::http::ErrorBody, description = "factor_already_bound")
    )
)]
async fn add_passkey(
    State(state): State<AppState>,
    admin: AdminSession<AnyRole>,
    ApiJson(body): ApiJson<CredentialBody>,
) -> Result<(StatusCode, Json<AdminPasskeyView>), ApiError> {
    state.admin.sessions.consume_step_up(&admin, &StepUpAction::on("add_passkey", None)).await?;
    let added = state.admin.accounts.finish_add_passkey(&admin, &body.credential).await?;
    Ok((StatusCode::CREATED, Json(added)))
}

/// Auth: admin session (any role), CSRF token, a fresh step-up (spent). Revokes one of this
/// admin's passkeys, never the last active one.
#[utoipa::path(
    post, path = "/admin/api/passkeys/{id}/revoke", tag = "admin",
    security(("admin_session" = []), ("csrf" = [])),
    params(("id" = AdminPasskeyId, Path)),
    responses(
        (status = 204, description = "Revoked"),
        (status = 403, body = crate::http::ErrorBody, description = "step_up_required"),
        (status = 404, body = crate::http::ErrorBody, description = "passkey_not_found"),
        (status = 409, body = crate::http::ErrorBody, description = "last_admin_passkey")
    )
)]
async fn revoke_passkey(
    State(state): State<AppState>,
    admin: AdminSession<AnyRole>,
    ApiPath(id): ApiPath<AdminPasskeyId>,
) -> Result<StatusCode, ApiError> {
    let action = StepUpAction::on("revoke_passkey", Some(&id.to_string()));
    state.admin.sessions.consume_step_up(&admin, &action).await?;
    state.admin.accounts.revoke_passkey(&admin, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The identity routes of the admin API.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(bootstrap_options))
        .routes(routes!(bootstrap))
        .routes(routes!(invitation_options))
        .routes(routes!(invitation))
        .routes(routes!(sign_in_options))
        .routes(routes!(sign_in))
        .routes(routes!(step_up_options))
        .routes(routes!(step_up))
        .routes(routes!(passkeys, add_passkey))
        .routes(routes!(passkey_options))
        .routes(routes!(revoke_passkey))
}
