//! `GET /v1/users/{username}/factors`: what a user may use to sign in now.

use axum::Json;
use axum::extract::State;
use serde::Serialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::model::Factors;
use crate::app::AppState;
use crate::http::scope::UsersRead;
use crate::http::{ApiError, ApiPath, AppKey};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(user_factors))
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct FactorView {
    /// `push` (number matching) or `passkey`.
    pub factor: String,
    pub available: bool,
    /// Why not, when unavailable.
    pub reason: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct FactorsView {
    pub username: String,
    pub factors: Vec<FactorView>,
    /// True when the user has no usable factor and must enroll.
    pub enrollment_required: bool,
}

/// Auth: app API key, scope `users:read`. Pre-auth: which factors the user can use right now.
/// Unknown users answer exactly like users without a device, so the route cannot tell an
/// attacker which usernames exist.
#[utoipa::path(
    get,
    path = "/v1/users/{username}/factors",
    tag = "challenges",
    security(("api_key" = ["users:read"])),
    params(("username" = String, Path, description = "Any string: a username that cannot exist answers like an unknown user")),
    responses(
        (status = 200, description = "Factors; an unknown user looks like a user with no device (`enrollment_required: true`)", body = FactorsView),
    )
)]
async fn user_factors(
    State(state): State<AppState>,
    _app: AppKey<UsersRead>,
    ApiPath(username): ApiPath<String>,
) -> Result<Json<FactorsView>, ApiError> {
    Ok(Json(FactorsView::from(state.factors.for_user(&username).await?)))
}

impl From<Factors> for FactorsView {
    fn from(f: Factors) -> Self {
        let factors = f
            .factors
            .into_iter()
            .map(|factor| FactorView {
                factor: factor.kind.as_str().to_owned(),
                available: factor.is_available(),
                reason: factor.unavailable_because,
            })
            .collect();
        Self { username: f.username, factors, enrollment_required: f.enrollment_required }
    }
}
