//! `/v1/users`: provisioning users from an app.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::service::{NewUser, UserError};
use crate::app::AppState;
use crate::http::scope::{UsersRead, UsersWrite};
use crate::http::{ApiError, ApiJson, ApiPath, AppKey, Code, ErrorBody};
use crate::ids::UserId;
use crate::openapi::Username;
use crate::store::UserRecord;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_user))
        .routes(routes!(get_user, delete_user))
        .routes(routes!(require_passkey))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateUserRequest {
    #[schema(value_type = Username)]
    pub username: String,
    /// At most 128 characters, no control characters.
    #[schema(pattern = r"^[^\x00-\x1f\x7f-\x9f]*$", max_length = 128)]
    pub display_name: Option<String>,
    /// Privileged users (admins, executives) are passkey-only by default: push challenges for
    /// them are refused with 409 `passkey_required`.
    #[serde(default)]
    pub privileged: bool,
    /// Require a passkey even if the user is not privileged. (Only an operator can lower the
    /// requirement: `countersign users passkey-policy`.)
    #[serde(default)]
    pub passkey_required: bool,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct UserView {
    pub id: UserId,
    pub username: String,
    pub display_name: Option<String>,
    pub privileged: bool,
    /// Push challenges are refused: the user signs in with a passkey.
    pub passkey_required: bool,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: OffsetDateTime,
}

impl From<UserRecord> for UserView {
    fn from(user: UserRecord) -> Self {
        let passkey_required = super::model::passkey_required(&user);
        Self {
            id: user.id,
            username: user.username,
            display_name: user.display_name,
            privileged: user.is_privileged,
            passkey_required,
            created_at: user.created_at,
        }
    }
}

impl From<UserError> for ApiError {
    fn from(error: UserError) -> Self {
        match error {
            UserError::Input(e) => ApiError::invalid_request(e.to_string()),
            UserError::Exists => ApiError::new(Code::UserExists, error.to_string()),
            UserError::NotFound => ApiError::new(Code::UserNotFound, error.to_string()),
            UserError::HeldForReview => ApiError::new(Code::AdminReviewRequired, error.to_string()),
            UserError::Store(e) => e.into(),
        }
    }
}

/// Auth: app API key, scope `users:write`. Provisions a user (audited).
#[utoipa::path(
    post,
    path = "/v1/users",
    tag = "users",
    security(("api_key" = ["users:write"])),
    request_body = CreateUserRequest,
    responses(
        (status = 201, description = "Created", body = UserView),
        (status = 409, description = "Username taken", body = ErrorBody),
        (status = 422, description = "Invalid fields", body = ErrorBody),
    )
)]
async fn create_user(
    State(state): State<AppState>,
    app: AppKey<UsersWrite>,
    ApiJson(body): ApiJson<CreateUserRequest>,
) -> Result<(StatusCode, Json<UserView>), ApiError> {
    let new = NewUser {
        username: body.username,
        display_name: body.display_name,
        is_privileged: body.privileged,
        passkey_required: body.passkey_required,
    };
    let user = state.users.create(app.actor(), new).await?;
    Ok((StatusCode::CREATED, Json(user.into())))
}

/// Auth: app API key, scope `users:read`.
#[utoipa::path(
    get,
    path = "/v1/users/{username}",
    tag = "users",
    security(("api_key" = ["users:read"])),
    params(("username" = Username, Path)),
    responses(
        (status = 200, description = "The user", body = UserView),
        (status = 404, description = "No such user", body = ErrorBody),
    )
)]
async fn get_user(
    State(state): State<AppState>,
    _app: AppKey<UsersRead>,
    ApiPath(username): ApiPath<String>,
) -> Result<Json<UserView>, ApiError> {
    let user = state.users.find(&username).await?;
    Ok(Json(user.into()))
}

/// Auth: app API key, scope `users:write`. Deletes the user: revokes every device and pending
/// enrollment at once (audited); the username becomes free.
#[utoipa::path(
    delete,
    path = "/v1/users/{username}",
    tag = "users",
    security(("api_key" = ["users:write"])),
    params(("username" = Username, Path)),
    responses(
        (status = 204, description = "Deleted"),
        (status = 403, description = "Held for admin review (`admin_review_required`)", body = ErrorBody),
        (status = 404, description = "No such user", body = ErrorBody),
    )
)]
async fn delete_user(
    State(state): State<AppState>,
    app: AppKey<UsersWrite>,
    ApiPath(username): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    state.users.delete(app.actor(), &username).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Auth: app API key, scope `users:write`. Makes the user passkey-only (idempotent, audited
/// when it changes anything): push challenges for them are refused with 409
/// `passkey_required`. Apps cannot lower the requirement; an operator can.
#[utoipa::path(
    post,
    path = "/v1/users/{username}/passkey-required",
    tag = "users",
    security(("api_key" = ["users:write"])),
    params(("username" = Username, Path)),
    responses(
        (status = 200, description = "The user, now passkey-only", body = UserView),
        (status = 404, description = "No such user", body = ErrorBody),
    )
)]
async fn require_passkey(
    State(state): State<AppState>,
    app: AppKey<UsersWrite>,
    ApiPath(username): ApiPath<String>,
) -> Result<Json<UserView>, ApiError> {
    let user = state.users.require_passkey(app.actor(), &username).await?;
    Ok(Json(user.into()))
}
