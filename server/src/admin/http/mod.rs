//! The admin API (`/admin/api/…`): what the admin pages do, for the pages and for scripts. Every
//! route needs an admin session cookie, except the bootstrap, invitation and sign-in ceremonies
//! (`auth.rs`) that lead to one; state changes also need the session's CSRF token in
//! `X-CSRF-Token` and an `Origin` of ours (see `crate::http::admin_session`).

mod auth;
pub mod auth_pages;

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::{Modify, OpenApi, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::model::Role;
use super::sessions::SESSION_COOKIE;
use crate::app::AppState;
use crate::http::admin_session::AdminSession;
use crate::http::admin_session::role::AnyRole;
use crate::http::{ApiError, ErrorBody};
use crate::ids::AdminId;

/// Who is signed in, and the token their state changes must carry.
#[derive(Debug, Serialize, ToSchema)]
pub struct SessionView {
    pub admin_id: AdminId,
    pub name: String,
    pub role: Role,
    /// Send as `X-CSRF-Token` with every POST.
    pub csrf_token: String,
}

/// The cookie that ends the session in the browser (same attributes, expired).
pub fn expired_session_cookie() -> String {
    format!("{SESSION_COOKIE}=; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age=0")
}

/// Auth: admin session (any role). Who is signed in, and their CSRF token.
#[utoipa::path(
    get, path = "/admin/api/session", tag = "admin",
    security(("admin_session" = [])),
    responses((status = 200, body = SessionView))
)]
async fn session(
    State(state): State<AppState>,
    admin: AdminSession<AnyRole>,
    headers: axum::http::HeaderMap,
) -> Json<SessionView> {
    let token = crate::http::admin_session::cookie(&headers, SESSION_COOKIE).unwrap_or_default();
    Json(SessionView {
        admin_id: admin.id,
        name: admin.name.clone(),
        role: admin.role,
        csrf_token: state.admin.sessions.csrf_token(token),
    })
}

/// Auth: admin session (any role), CSRF token. Signs out: the session ends here and now.
#[utoipa::path(
    post, path = "/admin/api/session/sign-out", tag = "admin",
    security(("admin_session" = []), ("csrf" = [])),
    responses((status = 204, description = "Signed out; the cookie is cleared"))
)]
async fn sign_out(State(state): State<AppState>, admin: AdminSession<AnyRole>) -> Result<Response, ApiError> {
    state.admin.sessions.sign_out(&admin).await?;
    Ok((StatusCode::NO_CONTENT, [(header::SET_COOKIE, expired_session_cookie())]).into_response())
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Countersign admin API",
        description = "What the admin pages do. Authenticate with the admin session cookie \
            (`__Host-countersign-admin`, set by a passkey sign-in); every POST also needs the \
            session's CSRF token in `X-CSRF-Token` and an `Origin` header naming the server: \
            scripts must send both."
    ),
    modifiers(&AdminAuth),
    components(schemas(ErrorBody))
)]
struct AdminApiDoc;

struct AdminAuth;

impl Modify for AdminAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{ApiKey, ApiKeyValue, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "admin_session",
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::new(SESSION_COOKIE))),
        );
        components.add_security_scheme(
            "csrf",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new("X-CSRF-Token"))),
        );
    }
}

/// The admin API with its OpenAPI description.
pub fn api_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(AdminApiDoc::openapi())
        .routes(routes!(session))
        .routes(routes!(sign_out))
        .merge(auth::routes())
}

/// The OpenAPI document of the admin API, as served at `/admin/api/openapi.json`.
pub fn openapi() -> utoipa::openapi::OpenApi {
    api_routes().into_openapi()
}
