//! "Verify now": the audit chain walked on demand, in the background.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;

use crate::admin::audit_check::Verification;
use crate::app::AppState;
use crate::http::admin_session::AdminSession;
use crate::http::admin_session::role::{AnyRole, Verifier};
use crate::http::{ApiError, Code, ErrorBody};

/// Auth: admin session (any role; auditors too), CSRF token. Starts walking the whole audit
/// chain in the background (one walk at a time on this instance: while one runs, it is the
/// answer); follow it at `GET /admin/api/audit/verification`.
#[utoipa::path(
    post, path = "/admin/api/audit/verifications", tag = "audit",
    security(("admin_session" = []), ("csrf" = [])),
    responses((status = 202, body = Verification))
)]
async fn verify_now(
    State(state): State<AppState>,
    admin: AdminSession<Verifier>,
) -> (StatusCode, Json<Verification>) {
    (StatusCode::ACCEPTED, Json(state.admin.audit_check.start(&admin)))
}

/// Auth: admin session (any role). The latest verification on this instance: running, intact
/// (with the number of events), broken (with the first broken sequence number) or failed.
#[utoipa::path(
    get, path = "/admin/api/audit/verification", tag = "audit",
    security(("admin_session" = [])),
    responses((status = 200, body = Verification), (status = 404, description = "None ran yet", body = ErrorBody))
)]
async fn latest(
    State(state): State<AppState>,
    _admin: AdminSession<AnyRole>,
) -> Result<Json<Verification>, ApiError> {
    state
        .admin
        .audit_check
        .latest()
        .map(Json)
        .ok_or_else(|| ApiError::new(Code::NotFound, "no audit verification ran on this instance yet"))
}

pub fn routes() -> utoipa_axum::router::OpenApiRouter<AppState> {
    use utoipa_axum::routes;
    utoipa_axum::router::OpenApiRouter::new().routes(routes!(verify_now)).routes(routes!(latest))
}
