//! Fatigue signals for dashboards and apps: who is under attack, a user's prompt timeline, and
//! lifting a freeze.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::report::{PushStanding, Timeline, UserUnderAttack};
use super::service::FatigueError;
use crate::app::AppState;
use crate::http::scope::{FatigueRead, FatigueWrite};
use crate::http::{ApiError, ApiPath, AppKey, Code, ErrorBody};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(users_under_attack))
        .routes(routes!(timeline))
        .routes(routes!(unfreeze))
}

impl From<FatigueError> for ApiError {
    fn from(error: FatigueError) -> Self {
        match error {
            FatigueError::UserNotFound => ApiError::new(Code::UserNotFound, error.to_string()),
            FatigueError::AdminReviewRequired => ApiError::new(Code::AdminReviewRequired, error.to_string()),
            FatigueError::Store(e) => e.into(),
        }
    }
}

/// Auth: app API key, scope `fatigue:read`. Users whose push standing is not clean, worst first.
#[utoipa::path(
    get,
    path = "/v1/fatigue/users",
    tag = "fatigue",
    security(("api_key" = ["fatigue:read"])),
    responses((status = 200, description = "Users under attack", body = [UserUnderAttack]))
)]
async fn users_under_attack(
    State(state): State<AppState>,
    _app: AppKey<FatigueRead>,
) -> Result<Json<Vec<UserUnderAttack>>, ApiError> {
    Ok(Json(state.fatigue.users_under_attack().await?))
}

/// Auth: app API key, scope `fatigue:read`. The user's recent prompts with warning flags.
#[utoipa::path(
    get,
    path = "/v1/users/{username}/timeline",
    tag = "fatigue",
    security(("api_key" = ["fatigue:read"])),
    params(("username" = crate::openapi::Username, Path)),
    responses(
        (status = 200, description = "Timeline", body = Timeline),
        (status = 404, description = "No such user", body = ErrorBody),
    )
)]
async fn timeline(
    State(state): State<AppState>,
    _app: AppKey<FatigueRead>,
    ApiPath(username): ApiPath<String>,
) -> Result<Json<Timeline>, ApiError> {
    Ok(Json(state.fatigue.timeline(&username).await?))
}

/// Auth: app API key, scope `fatigue:write`. Lifts the user's ordinary push freeze (audited). A
/// "not me" quarantine or a hard lock is refused (403 `admin_review_required`, audited): only
/// two admins together lift those, on the admin plane.
#[utoipa::path(
    post,
    path = "/v1/users/{username}/unfreeze",
    tag = "fatigue",
    security(("api_key" = ["fatigue:write"])),
    params(("username" = crate::openapi::Username, Path)),
    responses(
        (status = 200, description = "Push available again", body = PushStanding),
        (status = 403, description = "Held for admin review (`admin_review_required`)", body = ErrorBody),
        (status = 404, description = "No such user", body = ErrorBody),
    )
)]
async fn unfreeze(
    State(state): State<AppState>,
    app: AppKey<FatigueWrite>,
    ApiPath(username): ApiPath<String>,
) -> Result<(StatusCode, Json<PushStanding>), ApiError> {
    Ok((StatusCode::OK, Json(state.fatigue.unfreeze(app.actor(), &username).await?)))
}
