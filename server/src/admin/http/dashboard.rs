//! The dashboard's reads in the admin API: the overview, users, a user's page, the audit
//! search, alerts after a cursor, and the live alert stream (server-sent events). Any role.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use serde::Deserialize;
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::admin::dashboard::{
    AlertView, AlertsPage, AppView, AuditPage, AuditQuery, ClientView, DashboardError, OverviewView,
    UserList, UserPage, parse_time,
};
use crate::app::AppState;
use crate::http::admin_session::AdminSession;
use crate::http::admin_session::role::AnyRole;
use crate::http::codes::Code;
use crate::http::{ApiError, ApiPath, ErrorBody};
use crate::store::AuditFilter;

/// Comments on a quiet stream this often, so proxies keep it open.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

impl From<DashboardError> for ApiError {
    fn from(error: DashboardError) -> Self {
        match error {
            DashboardError::UserNotFound => ApiError::new(Code::UserNotFound, error.to_string()),
            DashboardError::Invalid(message) => ApiError::invalid_request(message),
            DashboardError::TooManyStreams => ApiError::new(Code::TooManyStreams, error.to_string()),
            DashboardError::Store(e) => e.into(),
        }
    }
}

/// A query string, with a parse failure answered as 422 `invalid_request`.
pub(super) fn query<T>(query: Result<Query<T>, QueryRejection>) -> Result<T, ApiError> {
    query.map(|Query(q)| q).map_err(|e| ApiError::invalid_request(e.body_text()))
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct UsersQuery {
    /// Username prefix.
    pub q: Option<String>,
    /// The previous page's `next_after`.
    pub after: Option<String>,
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct UserQuery {
    /// The previous page's `next_before` (older prompts).
    pub before: Option<String>,
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuditParams {
    /// A stored subject, e.g. `user:<id>`.
    pub subject: Option<String>,
    /// A username: that user's events.
    pub user: Option<String>,
    /// A stored actor, e.g. `admin:<id>`, `app:<id>`, `cli`.
    pub actor: Option<String>,
    /// An action, e.g. `fatigue.prompt_refused`.
    pub action: Option<String>,
    /// Events at or after (RFC 3339, `YYYY-MM-DDTHH:MM` or `YYYY-MM-DD`, UTC).
    pub from: Option<String>,
    /// Events before (same forms).
    pub to: Option<String>,
    /// The previous page's `next_before`.
    pub before: Option<i64>,
}

impl AuditParams {
    /// The service's question; a time that does not parse is refused.
    pub fn to_query(&self) -> Result<AuditQuery, DashboardError> {
        let text =
            |v: &Option<String>| v.as_deref().map(str::trim).filter(|v| !v.is_empty()).map(str::to_owned);
        let time = |v: &Option<String>, name: &str| text(v).map(|t| parse_time(&t, name)).transpose();
        Ok(AuditQuery {
            filter: AuditFilter {
                subject: text(&self.subject),
                actor: text(&self.actor),
                action: text(&self.action),
                from: time(&self.from, "from")?,
                to: time(&self.to, "to")?,
            },
            user: text(&self.user),
            before_seq: self.before,
        })
    }
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AfterQuery {
    /// An alert id: alerts after it.
    pub after: Option<i64>,
}

/// Auth: admin session (any role). Users under attack, the 24-hour charts, push health, the
/// latest alerts.
#[utoipa::path(
    get, path = "/admin/api/overview", tag = "admin",
    security(("admin_session" = [])),
    responses((status = 200, body = OverviewView))
)]
async fn overview(
    State(state): State<AppState>,
    _admin: AdminSession<AnyRole>,
) -> Result<Json<OverviewView>, ApiError> {
    Ok(Json(state.admin.dashboard.overview().await?))
}

/// Auth: admin session (any role). Users by username prefix, one page.
#[utoipa::path(
    get, path = "/admin/api/users", tag = "admin",
    security(("admin_session" = [])),
    params(UsersQuery),
    responses((status = 200, body = UserList), (status = 422, body = ErrorBody))
)]
async fn users(
    State(state): State<AppState>,
    _admin: AdminSession<AnyRole>,
    params: Result<Query<UsersQuery>, QueryRejection>,
) -> Result<Json<UserList>, ApiError> {
    let params = query(params)?;
    Ok(Json(state.admin.dashboard.users(params.q.as_deref().unwrap_or(""), params.after.as_deref()).await?))
}

/// Auth: admin session (any role). A user's standing and why, devices, passkeys, one page of
/// the prompt timeline (never the number), refused prompts.
#[utoipa::path(
    get, path = "/admin/api/users/{username}", tag = "admin",
    security(("admin_session" = [])),
    params(("username" = String, Path), UserQuery),
    responses((status = 200, body = UserPage), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody))
)]
async fn user(
    State(state): State<AppState>,
    _admin: AdminSession<AnyRole>,
    ApiPath(username): ApiPath<String>,
    params: Result<Query<UserQuery>, QueryRejection>,
) -> Result<Json<UserPage>, ApiError> {
    let params = query(params)?;
    Ok(Json(state.admin.dashboard.user(&username, params.before.as_deref()).await?))
}

/// Auth: admin session (any role). Audit events by subject, user, actor, action and time,
/// newest first, one page.
#[utoipa::path(
    get, path = "/admin/api/audit", tag = "admin",
    security(("admin_session" = [])),
    params(AuditParams),
    responses((status = 200, body = AuditPage), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody))
)]
async fn audit(
    State(state): State<AppState>,
    _admin: AdminSession<AnyRole>,
    params: Result<Query<AuditParams>, QueryRejection>,
) -> Result<Json<AuditPage>, ApiError> {
    let params = query(params)?;
    Ok(Json(state.admin.dashboard.audit(params.to_query()?).await?))
}

/// Auth: admin session (any role). Alerts after an id, oldest first, one page.
#[utoipa::path(
    get, path = "/admin/api/alerts", tag = "admin",
    security(("admin_session" = [])),
    params(AfterQuery),
    responses((status = 200, body = AlertsPage), (status = 422, body = ErrorBody))
)]
async fn alerts(
    State(state): State<AppState>,
    _admin: AdminSession<AnyRole>,
    params: Result<Query<AfterQuery>, QueryRejection>,
) -> Result<Json<AlertsPage>, ApiError> {
    let params = query(params)?;
    Ok(Json(
        state
            .admin
            .dashboard
            .alerts_after(params.after.unwrap_or(0), crate::admin::dashboard::PAGE_LEN)
            .await?,
    ))
}

/// Auth: admin session (any role). Every app (revoked ones too) with its scopes; keyless apps
/// (OIDC clients', Keycloak realms') labelled.
#[utoipa::path(
    get, path = "/admin/api/apps", tag = "admin",
    security(("admin_session" = [])),
    responses((status = 200, body = Vec<AppView>))
)]
async fn apps(
    State(state): State<AppState>,
    _admin: AdminSession<AnyRole>,
) -> Result<Json<Vec<AppView>>, ApiError> {
    Ok(Json(state.admin.dashboard.apps().await?))
}

/// Auth: admin session (any role). Every OIDC client (revoked ones too).
#[utoipa::path(
    get, path = "/admin/api/clients", tag = "admin",
    security(("admin_session" = [])),
    responses((status = 200, body = Vec<ClientView>))
)]
async fn clients(
    State(state): State<AppState>,
    _admin: AdminSession<AnyRole>,
) -> Result<Json<Vec<ClientView>>, ApiError> {
    Ok(Json(state.admin.dashboard.clients().await?))
}

/// Auth: admin session (any role). The live alert feed (`text/event-stream`): `event: alert`,
/// `id:` the alert id, data an alert as `/admin/api/alerts` has it. Resumes after
/// `Last-Event-ID` (or `after=`); ends with the session, after 10 minutes, and at shutdown.
#[utoipa::path(
    get, path = "/admin/api/events", tag = "admin",
    security(("admin_session" = [])),
    params(AfterQuery),
    responses(
        (status = 200, description = "A stream of `alert` events", content_type = "text/event-stream", body = AlertView),
        (status = 429, description = "This session has 5 streams open already", body = ErrorBody),
        (status = 422, body = ErrorBody)
    )
)]
async fn events(
    State(state): State<AppState>,
    admin: AdminSession<AnyRole>,
    headers: HeaderMap,
    params: Result<Query<AfterQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let params = query(params)?;
    let after = match headers.get("last-event-id") {
        Some(value) => Some(
            value
                .to_str()
                .ok()
                .and_then(|v| v.trim().parse::<i64>().ok())
                .filter(|id| *id >= 0)
                .ok_or_else(|| ApiError::invalid_request("Last-Event-ID must be an alert id"))?,
        ),
        None => params.after,
    };
    if after.is_some_and(|a| a < 0) {
        return Err(ApiError::invalid_request("after must be an alert id (0 or more)"));
    }
    let stream =
        crate::admin::live::alerts(Arc::clone(&state.admin), admin.session_hash.clone(), after).await?;
    let events = stream.map(|alert| Ok::<_, Infallible>(sse_event(&alert)));
    Ok(Sse::new(events).keep_alive(KeepAlive::new().interval(KEEP_ALIVE)).into_response())
}

fn sse_event(alert: &AlertView) -> Event {
    Event::default()
        .event("alert")
        .id(alert.id.to_string())
        .data(serde_json::to_string(alert).unwrap_or_else(|_| "{}".to_owned()))
}

/// The dashboard's API routes.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(overview))
        .routes(routes!(users))
        .routes(routes!(user))
        .routes(routes!(audit))
        .routes(routes!(alerts))
        .routes(routes!(events))
        .routes(routes!(apps))
        .routes(routes!(clients))
}
