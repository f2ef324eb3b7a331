//! The admin API (`/admin/api/…`): what the admin pages do, for the pages and for scripts. Every
//! route needs an admin session cookie, except the bootstrap, invitation and sign-in ceremonies
//! (`auth.rs`) that lead to one; state changes also need the session's CSRF token in
//! `X-CSRF-Token` and an `Origin` of ours (see `crate::http::admin_session`).

mod apps;
mod audit_check;
mod auth;
pub mod auth_pages;
mod dashboard;
mod factors;
mod helpdesk;
mod pages;
mod request_pages;
mod roster_page;

pub use helpdesk::VERIFICATION_ROUTE;

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{Modify, OpenApi, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::model::{RequestKind, RequestState, Role};
use super::requests::{
    AdminError, AdminView, ApprovalView, GrantRole, RemoveAdmin, RequestPayload, RequestView,
};
use super::sessions::SESSION_COOKIE;
use crate::app::AppState;
use crate::clock::{from_unix_micros, unix_micros};
use crate::http::admin_session::AdminSession;
use crate::http::admin_session::role::{AdminOnly, AnyRole, Decider, Submitter};
use crate::http::{ApiError, ApiJson, ApiPath, Code, ErrorBody};
use crate::ids::{AdminId, AdminRequestId};
use crate::store::RequestCursor;

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
    let token = crate::http::cookie(&headers, SESSION_COOKIE).unwrap_or_default();
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

impl From<AdminError> for ApiError {
    fn from(error: AdminError) -> Self {
        let message = error.to_string();
        let code = match error {
            AdminError::SecondAdminRequired => Code::SecondAdminRequired,
            AdminError::SelfApproval => Code::SelfApprovalForbidden,
            AdminError::Role => Code::AdminRoleRequired,
            AdminError::NotRequester => Code::NotRequester,
            AdminError::NotPending(_) => Code::RequestNotPending,
            AdminError::Expired => Code::AdminRequestExpired,
            AdminError::RequestNotFound => Code::RequestNotFound,
            AdminError::AdminNotFound => Code::AdminNotFound,
            AdminError::AdminExists => Code::AdminExists,
            AdminError::RemovalNotPending => Code::RemovalNotPending,
            AdminError::LastAdmins(_) => Code::LastAdmins,
            AdminError::StepUpRequired => Code::StepUpRequired,
            AdminError::UserNotFound => Code::UserNotFound,
            AdminError::Unsupported(_) => Code::RequestKindUnsupported,
            AdminError::Invalid(_) => Code::InvalidRequest,
            AdminError::Store(e) => return e.into(),
        };
        ApiError::new(code, message)
    }
}

/// A submitted request: 202, it waits for a second admin.
fn accepted(view: RequestView) -> Response {
    (StatusCode::ACCEPTED, Json(view)).into_response()
}

/// Auth: admin session (any role). Every admin, by name, with their role and standing.
#[utoipa::path(
    get, path = "/admin/api/admins", tag = "admin",
    security(("admin_session" = [])),
    responses((status = 200, body = [AdminView]))
)]
async fn list_admins(
    State(state): State<AppState>,
    _admin: AdminSession<AnyRole>,
) -> Result<Json<Vec<AdminView>>, ApiError> {
    Ok(Json(state.admin.requests.admins().await?))
}

/// A new admin to invite.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InviteBody {
    pub name: String,
    pub role: Role,
}

/// Auth: admin session (helpdesk or admin), CSRF token. Asks for a new admin (a `grant_role`
/// request); once another admin approves, the approver is shown the invitation once.
#[utoipa::path(
    post, path = "/admin/api/admins/invite", tag = "admin",
    security(("admin_session" = []), ("csrf" = [])),
    request_body = InviteBody,
    responses(
        (status = 202, description = "Pending a second admin's approval", body = RequestView),
        (status = 409, description = "`admin_exists`, `second_admin_required`", body = ErrorBody),
        (status = 422, description = "A name that is empty, too long or has control characters", body = ErrorBody),
    )
)]
async fn invite_admin(
    State(state): State<AppState>,
    admin: AdminSession<Submitter>,
    ApiJson(body): ApiJson<InviteBody>,
) -> Result<Response, ApiError> {
    let payload =
        RequestPayload::GrantRole(GrantRole { admin_id: None, name: Some(body.name), role: body.role });
    Ok(accepted(state.admin.requests.submit(&admin, payload).await?))
}

/// A role to set.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RoleBody {
    pub role: Role,
}

/// Auth: admin session (helpdesk or admin), CSRF token. Asks for an admin's role to change.
#[utoipa::path(
    post, path = "/admin/api/admins/{id}/role", tag = "admin",
    security(("admin_session" = []), ("csrf" = [])),
    params(("id" = AdminId, Path)),
    request_body = RoleBody,
    responses(
        (status = 202, description = "Pending a second admin's approval", body = RequestView),
        (status = 404, description = "`admin_not_found`", body = ErrorBody),
        (status = 409, description = "`last_admins`, `second_admin_required`", body = ErrorBody),
    )
)]
async fn change_role(
    State(state): State<AppState>,
    admin: AdminSession<Submitter>,
    ApiPath(id): ApiPath<AdminId>,
    ApiJson(body): ApiJson<RoleBody>,
) -> Result<Response, ApiError> {
    let payload = RequestPayload::GrantRole(GrantRole { admin_id: Some(id), name: None, role: body.role });
    Ok(accepted(state.admin.requests.submit(&admin, payload).await?))
}

/// Auth: admin session (helpdesk or admin), CSRF token. Asks for an admin's removal: once
/// approved, they are signed out at once and removed after 24 hours unless an admin cancels.
#[utoipa::path(
    post, path = "/admin/api/admins/{id}/remove", tag = "admin",
    security(("admin_session" = []), ("csrf" = [])),
    params(("id" = AdminId, Path)),
    responses(
        (status = 202, description = "Pending a second admin's approval", body = RequestView),
        (status = 404, description = "`admin_not_found`", body = ErrorBody),
        (status = 409, description = "`last_admins`, `second_admin_required`", body = ErrorBody),
    )
)]
async fn remove_admin(
    State(state): State<AppState>,
    admin: AdminSession<Submitter>,
    ApiPath(id): ApiPath<AdminId>,
) -> Result<Response, ApiError> {
    let payload = RequestPayload::RemoveAdmin(RemoveAdmin { admin_id: id });
    Ok(accepted(state.admin.requests.submit(&admin, payload).await?))
}

/// Auth: admin session (admin), CSRF token, a step-up taken for this cancellation (spent).
/// Cancels a scheduled removal that is not yet due: the admin is active again and signs in
/// anew. One admin may do it (the delay exists so one admin can rescue another removed by two
/// compromised ones), but only with a fresh passkey, never with a stolen session alone.
#[utoipa::path(
    post, path = "/admin/api/admins/{id}/removal/cancel", tag = "admin",
    security(("admin_session" = []), ("csrf" = [])),
    params(("id" = AdminId, Path)),
    responses(
        (status = 200, body = AdminView),
        (status = 403, description = "`step_up_required`", body = ErrorBody),
        (status = 404, description = "`admin_not_found`", body = ErrorBody),
        (status = 409, description = "`removal_not_pending`: none, or already due", body = ErrorBody),
    )
)]
async fn cancel_removal(
    State(state): State<AppState>,
    admin: AdminSession<AdminOnly>,
    ApiPath(id): ApiPath<AdminId>,
) -> Result<Json<AdminView>, ApiError> {
    let action = super::model::StepUpAction::on("cancel_removal", Some(&id.to_string()));
    state.admin.sessions.consume_step_up(&admin, &action).await?;
    Ok(Json(state.admin.requests.cancel_removal(&admin, id).await?))
}

/// Auth: admin session (admin), CSRF token, a step-up taken for this (spent). Ends every live
/// session of an admin at once (one's own too): a stolen cookie stops working, and the admin
/// signs in again with a passkey.
#[utoipa::path(
    post, path = "/admin/api/admins/{id}/sessions/end", tag = "admin",
    security(("admin_session" = []), ("csrf" = [])),
    params(("id" = AdminId, Path)),
    responses(
        (status = 200, description = "`{\"ended\": n}`: how many sessions were live", body = serde_json::Value),
        (status = 403, description = "`step_up_required`, `admin_role_required`", body = ErrorBody),
        (status = 404, description = "`admin_not_found`", body = ErrorBody),
    )
)]
async fn end_sessions(
    State(state): State<AppState>,
    admin: AdminSession<AdminOnly>,
    ApiPath(id): ApiPath<AdminId>,
) -> Result<Json<Value>, ApiError> {
    let action = super::model::StepUpAction::on("end_sessions", Some(&id.to_string()));
    state.admin.sessions.consume_step_up(&admin, &action).await?;
    let ended = state.admin.requests.end_sessions(&admin, id).await?;
    Ok(Json(serde_json::json!({ "ended": ended })))
}

/// Which requests to list.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RequestsQuery {
    /// Only requests in this state.
    pub state: Option<RequestState>,
    /// The `next_before` of the previous page.
    pub before: Option<String>,
}

/// A page of requests, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct RequestPage {
    pub requests: Vec<RequestView>,
    /// Pass as `before` for the next page; absent on the last page.
    pub next_before: Option<String>,
}

/// Requests per page.
const PAGE: u32 = 50;

fn cursor_text(view: &RequestView) -> String {
    format!("{}_{}", unix_micros(view.requested_at), view.id)
}

fn parse_cursor(text: &str) -> Option<RequestCursor> {
    let (micros, id) = text.split_once('_')?;
    Some((from_unix_micros(micros.parse().ok()?)?, AdminRequestId(id.parse().ok()?)))
}

/// Auth: admin session (any role). Four-eyes requests, newest first, 50 a page.
#[utoipa::path(
    get, path = "/admin/api/requests", tag = "admin",
    security(("admin_session" = [])),
    params(RequestsQuery),
    responses(
        (status = 200, body = RequestPage),
        (status = 422, description = "An unknown state or a malformed cursor", body = ErrorBody),
    )
)]
async fn list_requests(
    State(state): State<AppState>,
    _admin: AdminSession<AnyRole>,
    query: Result<Query<RequestsQuery>, QueryRejection>,
) -> Result<Json<RequestPage>, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::invalid_request(e.body_text()))?;
    let before = match query.before.as_deref() {
        None => None,
        Some(text) => {
            Some(parse_cursor(text).ok_or_else(|| ApiError::invalid_request("`before` is not a cursor"))?)
        }
    };
    let requests = state.admin.requests.list(query.state, before, PAGE).await?;
    let full = u32::try_from(requests.len()).unwrap_or(u32::MAX) >= PAGE;
    let next_before = if full { requests.last().map(cursor_text) } else { None };
    Ok(Json(RequestPage { requests, next_before }))
}

/// Auth: admin session (any role). One request (an approved one not yet applied is applied now).
#[utoipa::path(
    get, path = "/admin/api/requests/{id}", tag = "admin",
    security(("admin_session" = [])),
    params(("id" = AdminRequestId, Path)),
    responses((status = 200, body = RequestView), (status = 404, description = "`request_not_found`", body = ErrorBody))
)]
async fn get_request(
    State(state): State<AppState>,
    _admin: AdminSession<AnyRole>,
    ApiPath(id): ApiPath<AdminRequestId>,
) -> Result<Json<RequestView>, ApiError> {
    Ok(Json(state.admin.requests.get(id).await?))
}

/// A four-eyes request of any kind.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SubmitBody {
    pub kind: RequestKind,
    /// `grant_role`: `{"admin_id", "role"}` or `{"name", "role"}`; `remove_admin`:
    /// `{"admin_id"}`; `unfreeze_quarantined` and `reset_privileged_factors`: `{"username"}`;
    /// `fatigue_policy`: the whole new policy as `GET /admin/api/policy` shows it (unknown
    /// fields refused; a value out of bounds is 422 `invalid_request` naming the bound).
    #[schema(value_type = Object)]
    pub payload: Value,
}

/// Auth: admin session (helpdesk or admin), CSRF token. Asks for a change of any kind.
#[utoipa::path(
    post, path = "/admin/api/requests/submit", tag = "admin",
    security(("admin_session" = []), ("csrf" = [])),
    request_body = SubmitBody,
    responses(
        (status = 202, description = "Pending a second admin's approval", body = RequestView),
        (status = 404, description = "`admin_not_found`, `user_not_found`", body = ErrorBody),
        (status = 409, description = "`last_admins`, `second_admin_required`, `admin_exists`", body = ErrorBody),
        (status = 422, description = "`invalid_request`: a payload of the wrong shape, or a policy out of bounds", body = ErrorBody),
    )
)]
async fn submit_request(
    State(state): State<AppState>,
    admin: AdminSession<Submitter>,
    ApiJson(body): ApiJson<SubmitBody>,
) -> Result<Response, ApiError> {
    let payload = RequestPayload::parse(body.kind, body.payload)
        .map_err(|e| ApiError::invalid_request(format!("payload: {e}")))?;
    Ok(accepted(state.admin.requests.submit(&admin, payload).await?))
}

/// Auth: admin session (admin, not the requester), CSRF token, step-up (a passkey assertion
/// within 2 minutes, spent by this approval). Approves and applies a request.
#[utoipa::path(
    post, path = "/admin/api/requests/{id}/approve", tag = "admin",
    security(("admin_session" = []), ("csrf" = [])),
    params(("id" = AdminRequestId, Path)),
    responses(
        (status = 200, description = "Approved and applied; a new admin's invitation is shown here once", body = ApprovalView),
        (status = 403, description = "`self_approval_forbidden`, `step_up_required`, `admin_role_required`", body = ErrorBody),
        (status = 404, description = "`request_not_found`", body = ErrorBody),
        (status = 409, description = "`request_not_pending`; `last_admins` (the request is pending again)", body = ErrorBody),
        (status = 410, description = "`admin_request_expired`", body = ErrorBody),
    )
)]
async fn approve_request(
    State(state): State<AppState>,
    admin: AdminSession<Decider>,
    ApiPath(id): ApiPath<AdminRequestId>,
) -> Result<Json<ApprovalView>, ApiError> {
    Ok(Json(state.admin.requests.approve(&admin, id).await?))
}

/// Auth: admin session (admin, not the requester), CSRF token, step-up taken for this request
/// (`approve_request:<id>`, spent by this rejection). Rejects a request.
#[utoipa::path(
    post, path = "/admin/api/requests/{id}/reject", tag = "admin",
    security(("admin_session" = []), ("csrf" = [])),
    params(("id" = AdminRequestId, Path)),
    responses(
        (status = 200, body = RequestView),
        (status = 403, description = "`self_approval_forbidden`, `step_up_required`, `admin_role_required`", body = ErrorBody),
        (status = 409, description = "`request_not_pending`", body = ErrorBody),
        (status = 410, description = "`admin_request_expired`", body = ErrorBody),
    )
)]
async fn reject_request(
    State(state): State<AppState>,
    admin: AdminSession<Decider>,
    ApiPath(id): ApiPath<AdminRequestId>,
) -> Result<Json<RequestView>, ApiError> {
    Ok(Json(state.admin.requests.reject(&admin, id).await?))
}

/// Auth: admin session (the requester), CSRF token. Withdraws one's own pending request.
#[utoipa::path(
    post, path = "/admin/api/requests/{id}/cancel", tag = "admin",
    security(("admin_session" = []), ("csrf" = [])),
    params(("id" = AdminRequestId, Path)),
    responses(
        (status = 200, body = RequestView),
        (status = 403, description = "`not_requester`", body = ErrorBody),
        (status = 409, description = "`request_not_pending`", body = ErrorBody),
    )
)]
async fn cancel_request(
    State(state): State<AppState>,
    admin: AdminSession<Submitter>,
    ApiPath(id): ApiPath<AdminRequestId>,
) -> Result<Json<RequestView>, ApiError> {
    Ok(Json(state.admin.requests.cancel(&admin, id).await?))
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
        .merge(audit_check::routes())
        .merge(helpdesk::routes())
        .merge(factors::routes())
        .merge(dashboard::routes())
        .merge(apps::routes())
        .routes(routes!(list_admins))
        .routes(routes!(invite_admin))
        .routes(routes!(change_role))
        .routes(routes!(remove_admin))
        .routes(routes!(cancel_removal))
        .routes(routes!(end_sessions))
        .routes(routes!(list_requests))
        .routes(routes!(get_request))
        .routes(routes!(submit_request))
        .routes(routes!(approve_request))
        .routes(routes!(reject_request))
        .routes(routes!(cancel_request))
        .routes(routes!(fatigue_policy))
}

/// Auth: admin session (any role). The fatigue policy in force on this instance (durations in
/// whole seconds) and where it comes from: `{"source": "config"}` or
/// `{"source": "request", "request_id", "version"}`. Change it with a `fatigue_policy` request.
#[utoipa::path(
    get, path = "/admin/api/policy", tag = "admin",
    security(("admin_session" = [])),
    responses((status = 200, description = "`{\"policy\": {...}, \"origin\": {...}}`", body = serde_json::Value))
)]
async fn fatigue_policy(State(state): State<AppState>, _admin: AdminSession<AnyRole>) -> Json<Value> {
    let (policy, origin) = state.fatigue.policy().describe();
    Json(serde_json::json!({ "policy": *policy, "origin": origin }))
}

/// The admin pages (HTML), each a thin layer over the same services as the API.
pub fn page_routes() -> axum::Router<AppState> {
    pages::routes().merge(request_pages::routes()).merge(roster_page::routes())
}

/// The OpenAPI document of the admin API, as served at `/admin/api/openapi.json`.
pub fn openapi() -> utoipa::openapi::OpenApi {
    api_routes().into_openapi()
}
