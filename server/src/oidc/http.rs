//! The OpenID Connect provider's HTTP endpoints.

use axum::Json;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::keys::{JWKS_PATH, JwkSet};
use crate::app::AppState;
use crate::http::ApiError;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(jwks))
}

/// Auth: none (public keys, for relying parties). The published signing keys: the key signing
/// now, a rotation's next key ahead of its first token, and retired keys until their tokens
/// expire. Cacheable for no longer than the publish overlap of a rotation.
#[utoipa::path(
    get,
    path = JWKS_PATH,
    tag = "oidc",
    responses(
        (status = 200, description = "The JWK set (RFC 7517): public members only", body = JwkSet, content_type = "application/json",
            headers(("Cache-Control" = String, description = "`public, max-age=N`, N no longer than a rotation's publish overlap"))),
    )
)]
async fn jwks(State(state): State<AppState>) -> Result<Response, ApiError> {
    let set = state.signing_keys.jwks().await.map_err(|error| ApiError::internal(&error))?;
    let max_age = state.signing_keys.timings().jwks_max_age.whole_seconds();
    let cache = format!("public, max-age={max_age}");
    Ok(([(header::CACHE_CONTROL, cache)], Json(set)).into_response())
}
