//! The endpoint that tells an app who it is (the API-key extractor is `http::AppKey`).

use axum::Json;
use serde::Serialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::app::AppState;
use crate::http::scope::AnyScope;
use crate::http::{AppKey, ErrorBody};
use crate::ids::AppId;

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
async fn whoami(app: AppKey<AnyScope>) -> Json<WhoAmI> {
    Json(WhoAmI {
        id: app.id,
        name: app.name.clone(),
        scopes: app.scopes.iter().map(|s| s.to_string()).collect(),
    })
}
