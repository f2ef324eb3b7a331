//! The API-key extractor and the endpoint that tells an app who it is.

use axum::Json;
use axum::extract::{FromRequestParts, State};
use axum::http::header;
use axum::http::request::Parts;
use serde::Serialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::service::{self, AuthError, AuthenticatedApp};
use crate::app::AppState;
use crate::error::{ApiError, ErrorBody};
use crate::ids::AppId;

impl FromRequestParts<AppState> for AuthenticatedApp {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let header = match parts.headers.get(header::AUTHORIZATION) {
            None => None,
            Some(value) => Some(value.to_str().map_err(|_| ApiError::from(AuthError::Malformed))?),
        };
        Ok(service::authenticate(state.store.as_ref(), header).await?)
    }
}

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(whoami))
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct WhoAmI {
    pub id: AppId,
    pub name: String,
    /// Granted scopes.
    pub scopes: Vec<String>,
}

/// Auth: app API key, any scope. Names the calling app and its scopes.
#[utoipa::path(
    get,
    path = "/v1/whoami",
    tag = "apps",
    security(("api_key" = [])),
    responses(
        (status = 200, description = "The calling app", body = WhoAmI),
        (status = 401, description = "Missing, malformed, unknown or revoked key", body = ErrorBody),
    )
)]
async fn whoami(State(_): State<AppState>, app: AuthenticatedApp) -> Json<WhoAmI> {
    Json(WhoAmI { id: app.id, name: app.name, scopes: app.scopes.iter().map(|s| s.to_string()).collect() })
}
