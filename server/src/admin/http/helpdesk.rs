//! Help desk on the admin API: verify a caller with a number-matching push, follow the answer,
//! and issue an enrollment link for a verified caller.

use axum::Json;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::{IntoParams, ToSchema};

use crate::admin::helpdesk::{HelpDeskError, VerificationState};
use crate::admin::requests::Unfrozen;
use crate::app::AppState;
use crate::http::admin_session::AdminSession;
use crate::http::admin_session::role::HelpDesk;
use crate::http::{ApiError, ApiJson, ApiPath, Code, ErrorBody};
use crate::ids::ChallengeId;

/// The route the agent's page follows a verification on (a long-poll).
pub const VERIFICATION_ROUTE: &str = "/admin/api/caller-verifications/{id}";

impl From<HelpDeskError> for ApiError {
    fn from(error: HelpDeskError) -> Self {
        match error {
            HelpDeskError::Challenge(e) => e.into(),
            HelpDeskError::Passkey(e) => e.into(),
            HelpDeskError::NotFound => ApiError::new(Code::NotFound, error.to_string()),
            HelpDeskError::CallerNotVerified => ApiError::new(Code::CallerNotVerified, error.to_string()),
            HelpDeskError::PrivilegedUser => ApiError::new(Code::PrivilegedUser, error.to_string()),
            HelpDeskError::Store(e) => e.into(),
            HelpDeskError::Internal(e) => ApiError::internal(&e),
        }
    }
}

/// A verification push sent: read the number to the caller.
#[derive(Debug, Serialize, ToSchema)]
pub struct StartedVerificationView {
    /// Follow it at `/admin/api/caller-verifications/{id}`.
    pub id: ChallengeId,
    /// Read this to the caller; they type it on their phone. Shown only to you.
    pub number: String,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub expires_at: OffsetDateTime,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct VerificationView {
    pub state: VerificationState,
}

#[derive(Debug, Deserialize, IntoParams)]
pub struct WaitQuery {
    /// Seconds to wait for the caller's answer (long-poll), 0 to answer at once.
    #[serde(default)]
    pub wait: u64,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PasskeyLinkRequest {
    /// The verification the caller approved (its id).
    pub verification_id: ChallengeId,
    /// The new passkey's name.
    pub name: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PasskeyLinkView {
    /// Give this to the verified caller; it opens the hosted registration page, once.
    pub url: String,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub expires_at: OffsetDateTime,
}

/// Auth: admin session, role helpdesk or admin; CSRF token. Sends the caller a number-matching
/// push to verify them (the push budget, freezes and spray detection apply).
#[utoipa::path(
    post, path = "/admin/api/users/{username}/caller-verifications", tag = "helpdesk",
    security(("admin_session" = []), ("csrf" = [])),
    params(("username" = String, Path)),
    responses(
        (status = 201, body = StartedVerificationView),
        (status = 409, description = "No enrolled device, or passkey only", body = ErrorBody),
        (status = 423, description = "Push frozen or locked", body = ErrorBody),
        (status = 429, description = "Push budget or spray limit", body = ErrorBody),
    )
)]
async fn start_verification(
    State(state): State<AppState>,
    agent: AdminSession<HelpDesk>,
    ApiPath(username): ApiPath<String>,
) -> Result<(StatusCode, Json<StartedVerificationView>), ApiError> {
    let started = state.admin.helpdesk.start(&agent, &username).await?;
    let view =
        StartedVerificationView { id: started.id, number: started.number, expires_at: started.expires_at };
    Ok((StatusCode::CREATED, Json(view)))
}

/// Auth: admin session, role helpdesk or admin; only the agent who started the verification.
/// Where it stands, waiting up to `wait` seconds for the caller's answer.
#[utoipa::path(
    get, path = "/admin/api/caller-verifications/{id}", tag = "helpdesk",
    security(("admin_session" = [])),
    params(("id" = ChallengeId, Path), WaitQuery),
    responses((status = 200, body = VerificationView), (status = 404, body = ErrorBody))
)]
async fn verification(
    State(state): State<AppState>,
    agent: AdminSession<HelpDesk>,
    ApiPath(id): ApiPath<ChallengeId>,
    Query(query): Query<WaitQuery>,
) -> Result<Json<VerificationView>, ApiError> {
    let verified = state.admin.helpdesk.status(&agent, id, query.wait).await?;
    Ok(Json(VerificationView { state: verified }))
}

/// Auth: admin session, role helpdesk or admin; CSRF token; a verification this agent started
/// for this user, approved and unused. A link to register a new passkey, for the caller.
#[utoipa::path(
    post, path = "/admin/api/users/{username}/passkey-links", tag = "helpdesk",
    security(("admin_session" = []), ("csrf" = [])),
    params(("username" = String, Path)),
    request_body = PasskeyLinkRequest,
    responses(
        (status = 201, body = PasskeyLinkView),
        (status = 403, description = "`caller_not_verified`, or `privileged_user` (four-eyes only)", body = ErrorBody),
    )
)]
async fn passkey_link(
    State(state): State<AppState>,
    agent: AdminSession<HelpDesk>,
    ApiPath(username): ApiPath<String>,
    ApiJson(request): ApiJson<PasskeyLinkRequest>,
) -> Result<(StatusCode, Json<PasskeyLinkView>), ApiError> {
    let (url, expires_at) =
        state.admin.helpdesk.passkey_link(&agent, &username, request.verification_id, request.name).await?;
    use secrecy::ExposeSecret;
    Ok((StatusCode::CREATED, Json(PasskeyLinkView { url: url.expose_secret().to_owned(), expires_at })))
}

/// Auth: admin session, role helpdesk or admin; CSRF token. Lifts the user's push freeze (a
/// timed freeze, a second wrong number, a hard lock): 200 with the standing. A "not me"
/// quarantine is not one admin's to lift: 202 with the four-eyes request that now waits for a
/// second admin (nothing is lifted until then).
#[utoipa::path(
    post, path = "/admin/api/users/{username}/unfreeze", tag = "helpdesk",
    security(("admin_session" = []), ("csrf" = [])),
    params(("username" = String, Path)),
    responses(
        (status = 200, description = "Push available again", body = crate::fatigue::report::PushStanding),
        (status = 202, description = "Quarantined: a request waits for a second admin", body = crate::admin::request_json::RequestView),
        (status = 404, body = ErrorBody),
        (status = 409, description = "`second_admin_required`", body = ErrorBody),
    )
)]
async fn unfreeze(
    State(state): State<AppState>,
    agent: AdminSession<HelpDesk>,
    ApiPath(username): ApiPath<String>,
) -> Result<axum::response::Response, ApiError> {
    use axum::response::IntoResponse;
    Ok(match state.admin.requests.unfreeze_user(&agent, &username).await? {
        Unfrozen::Lifted(standing) => (StatusCode::OK, Json(standing)).into_response(),
        Unfrozen::Pending(request) => (StatusCode::ACCEPTED, Json(request)).into_response(),
    })
}

/// The help-desk routes.
pub fn routes() -> utoipa_axum::router::OpenApiRouter<AppState> {
    use utoipa_axum::routes;
    utoipa_axum::router::OpenApiRouter::new()
        .routes(routes!(start_verification))
        .routes(routes!(verification))
        .routes(routes!(passkey_link))
        .routes(routes!(unfreeze))
}
