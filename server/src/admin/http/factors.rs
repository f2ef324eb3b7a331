//! Help desk on the admin API: revoke a user's device or passkey. Each revoke spends a fresh
//! step-up (a lost phone reported by a caller is exactly what a social engineer would claim) and
//! is audited with the admin as the actor. Help desk can take a factor away, never set one.

use axum::extract::State;
use axum::http::StatusCode;

use crate::admin::model::StepUpAction;
use crate::app::AppState;
use crate::audit::Actor;
use crate::http::admin_session::AdminSession;
use crate::http::admin_session::role::HelpDesk;
use crate::http::{ApiError, ApiPath, ErrorBody};
use crate::ids::{DeviceId, PasskeyId};

/// Auth: admin session, role helpdesk or admin; CSRF token; a fresh step-up taken for this revoke (spent). Revokes
/// one of the user's active devices at once: it can no longer sign or receive prompts.
#[utoipa::path(
    post, path = "/admin/api/users/{username}/devices/{device_id}/revoke", tag = "helpdesk",
    security(("admin_session" = []), ("csrf" = [])),
    params(("username" = String, Path), ("device_id" = uuid::Uuid, Path)),
    responses(
        (status = 204, description = "Revoked"),
        (status = 403, description = "`step_up_required`, or a role that may not act", body = ErrorBody),
        (status = 404, description = "`user_not_found`, `device_not_found` (none active with that id for this user)", body = ErrorBody),
    )
)]
async fn revoke_device(
    State(state): State<AppState>,
    agent: AdminSession<HelpDesk>,
    ApiPath((username, id)): ApiPath<(String, uuid::Uuid)>,
) -> Result<StatusCode, ApiError> {
    let action = StepUpAction::on("revoke_user_device", Some(&id.to_string()));
    state.admin.sessions.consume_step_up(&agent, &action).await?;
    state.devices.revoke_device(Actor::Admin { id: agent.id }, &username, DeviceId(id)).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Auth: admin session, role helpdesk or admin; CSRF token; a fresh step-up taken for this revoke (spent). Revokes
/// one of the user's passkeys at once; its credential id stays bound to the user.
#[utoipa::path(
    post, path = "/admin/api/users/{username}/passkeys/{passkey_id}/revoke", tag = "helpdesk",
    security(("admin_session" = []), ("csrf" = [])),
    params(("username" = String, Path), ("passkey_id" = uuid::Uuid, Path)),
    responses(
        (status = 204, description = "Revoked"),
        (status = 403, description = "`step_up_required`, or a role that may not act", body = ErrorBody),
        (status = 404, description = "`user_not_found`, `passkey_not_found` (none active with that id for this user)", body = ErrorBody),
    )
)]
async fn revoke_passkey(
    State(state): State<AppState>,
    agent: AdminSession<HelpDesk>,
    ApiPath((username, id)): ApiPath<(String, uuid::Uuid)>,
) -> Result<StatusCode, ApiError> {
    let action = StepUpAction::on("revoke_user_passkey", Some(&id.to_string()));
    state.admin.sessions.consume_step_up(&agent, &action).await?;
    state.passkeys.revoke(Actor::Admin { id: agent.id }, &username, PasskeyId(id)).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The factor routes.
pub fn routes() -> utoipa_axum::router::OpenApiRouter<AppState> {
    use utoipa_axum::routes;
    utoipa_axum::router::OpenApiRouter::new().routes(routes!(revoke_device)).routes(routes!(revoke_passkey))
}
