//! The dashboard's pages: server-rendered HTML over the same service calls as the API
//! (`admin::dashboard`), charts drawn here as SVG, no inline script or style (the pages' CSP).
//! `/assets/admin.js` keeps the overview's alert list live.

use askama::Template;
use axum::Router;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use time::OffsetDateTime;

use super::dashboard::{AuditParams, UserQuery, UsersQuery, query};
use crate::admin::dashboard::{
    AlertView, AppView, AuditPage, Charts, ClientView, OverviewView, UserList, UserPage,
};
use crate::admin::sessions::SESSION_COOKIE;
use crate::app::AppState;
use crate::http::admin_session::AdminSession;
use crate::http::admin_session::role::AnyRole;
use crate::http::cookie;
use crate::http::page::html;
use crate::http::{ApiError, ApiPath};

/// The pages' SVG chart: one x unit per minute of the day.
const CHART_WIDTH: i64 = 1440;
const CHART_HEIGHT: i64 = 120;
/// The user page's time strip.
const STRIP_WIDTH: i64 = 720;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/admin", get(overview_page))
        .route("/admin/users", get(users_page))
        .route("/admin/users/{username}", get(user_page))
        .route("/admin/audit", get(audit_page))
        .route("/admin/apps", get(apps_page))
        .route("/assets/admin.js", get(script))
        .route("/assets/admin.css", get(stylesheet))
}

/// What every admin page shows around its content: who is signed in, and the CSRF token the
/// page's scripts send with state changes.
#[derive(Debug)]
pub(super) struct Chrome {
    pub(super) id: crate::ids::AdminId,
    pub(super) csrf: String,
    pub(super) name: String,
    pub(super) role: &'static str,
}

pub(super) type Session = Result<AdminSession<AnyRole>, ApiError>;

/// The signed-in admin's chrome, or the page a missing or ended session gets (401 with a
/// link to sign in; 403 for a role that may not read).
pub(super) fn chrome(state: &AppState, session: Session, headers: &HeaderMap) -> Result<Chrome, ApiError> {
    let admin = session?;
    let token = cookie(headers, SESSION_COOKIE).unwrap_or_default();
    Ok(Chrome {
        id: admin.id,
        csrf: state.admin.sessions.csrf_token(token),
        name: admin.name.clone(),
        role: admin.role.as_str(),
    })
}

#[derive(Debug, Template)]
#[template(path = "admin/signed_out.html")]
struct ErrorPage {
    code: &'static str,
    title: &'static str,
    message: String,
    sign_in: bool,
}

/// An error as a page, with the status and code the API would answer.
fn error_page(error: ApiError) -> Response {
    let sign_in = error.status == StatusCode::UNAUTHORIZED;
    let title = match error.status {
        StatusCode::UNAUTHORIZED => "Sign in to the admin dashboard",
        StatusCode::FORBIDDEN => "Not allowed",
        StatusCode::NOT_FOUND => "Not found",
        status if status.is_client_error() => "This request cannot be answered",
        _ => "Something went wrong",
    };
    let page = ErrorPage { code: error.code, title, message: error.message.clone(), sign_in };
    html(error.status, &page).unwrap_or_else(|_| error.into_response())
}

/// A failure on a page, answered as a page (see [`error_page`]).
#[derive(Debug)]
pub(super) struct PageError(ApiError);

impl<E: Into<ApiError>> From<E> for PageError {
    fn from(error: E) -> Self {
        PageError(error.into())
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        error_page(self.0)
    }
}

pub(super) type PageResult = Result<Response, PageError>;

pub(super) fn time_text(at: OffsetDateTime) -> String {
    format!(
        "{}-{:02}-{:02} {:02}:{:02}:{:02}",
        at.year(),
        u8::from(at.month()),
        at.day(),
        at.hour(),
        at.minute(),
        at.second()
    )
}

fn user_href(username: &str) -> String {
    format!("/admin/users/{}", url::form_urlencoded::byte_serialize(username.as_bytes()).collect::<String>())
}

fn with_query(path: &str, pairs: &[(&str, &str)]) -> String {
    let mut query = url::form_urlencoded::Serializer::new(String::new());
    for (key, value) in pairs.iter().filter(|(_, v)| !v.is_empty()) {
        query.append_pair(key, value);
    }
    format!("{path}?{}", query.finish())
}

#[derive(Debug)]
struct AttackRow {
    username: String,
    href: String,
    score: i64,
    push: String,
    why: String,
    source: String,
}

#[derive(Debug)]
struct Chart {
    width: i64,
    height: i64,
    prompts: String,
    refused: String,
    max: i64,
    total_prompts: i64,
    total_refused: i64,
}

#[derive(Debug)]
struct Bar {
    reason: String,
    count: i64,
    y: i64,
    text_y: i64,
    width: i64,
    count_x: i64,
}

#[derive(Debug)]
struct HealthRow {
    provider: String,
    queued: i64,
    sent: i64,
    failed: i64,
    dropped: i64,
    last_error: String,
}

#[derive(Debug)]
struct AlertRow {
    id: i64,
    at: String,
    kind: String,
    who: String,
    details: String,
}

#[derive(Debug, Template)]
#[template(path = "admin/overview.html")]
struct OverviewPage {
    chrome: Chrome,
    under_attack: Vec<AttackRow>,
    chart: Chart,
    refusal_bars: Vec<Bar>,
    refusals_height: i64,
    push_health: Vec<HealthRow>,
    alerts: Vec<AlertRow>,
    newest_alert_id: i64,
}

/// Auth: admin session (any role); without one, a 401 page linking to the sign-in. Users under
/// attack, the charts, push health and the live alert list.
async fn overview_page(State(state): State<AppState>, session: Session, headers: HeaderMap) -> PageResult {
    let chrome = chrome(&state, session, &headers)?;
    Ok(render_overview(chrome, state.admin.dashboard.overview().await?)?)
}

fn render_overview(chrome: Chrome, view: OverviewView) -> Result<Response, ApiError> {
    let under_attack = view
        .under_attack
        .into_iter()
        .map(|u| AttackRow {
            href: user_href(&u.username),
            why: u.standing.reason.clone().unwrap_or_default(),
            source: u.last_source.map_or_else(String::new, |s| {
                let place = s.location.map(|l| format!(" ({l})")).unwrap_or_default();
                format!("{} from {}{place}, {}", s.app_name, s.ip, time_text(s.at))
            }),
            username: u.username,
            score: u.score,
            push: u.standing.push,
        })
        .collect();
    let (refusal_bars, refusals_height) = refusal_bars(&view.charts);
    let page = OverviewPage {
        chrome,
        under_attack,
        chart: prompt_chart(&view.charts),
        refusal_bars,
        refusals_height,
        push_health: view
            .push_health
            .into_iter()
            .map(|p| HealthRow {
                last_error: match (p.last_error, p.last_error_at) {
                    (Some(error), Some(at)) => format!("{error} at {}", time_text(at)),
                    (Some(error), None) => error,
                    _ => String::new(),
                },
                provider: p.provider,
                queued: p.queued,
                sent: p.sent,
                failed: p.failed,
                dropped: p.dropped,
            })
            .collect(),
        alerts: view.alerts.into_iter().map(alert_row).collect(),
        newest_alert_id: view.newest_alert_id,
    };
    html(StatusCode::OK, &page)
}

fn alert_row(alert: AlertView) -> AlertRow {
    AlertRow {
        id: alert.id,
        at: time_text(alert.created_at),
        who: alert.username.unwrap_or(alert.subject),
        kind: alert.kind,
        details: alert.details.to_string(),
    }
}

/// Prompts and refusals per minute as two polylines over the day (y grows downwards).
fn prompt_chart(charts: &Charts) -> Chart {
    let minutes = CHART_WIDTH as usize;
    let mut prompts = vec![0i64; minutes];
    let mut refused = vec![0i64; minutes];
    for bucket in &charts.prompts_per_minute {
        let index = (bucket.minute - charts.since).whole_minutes();
        if let Ok(index) = usize::try_from(index)
            && index < minutes
        {
            prompts[index] += bucket.prompts;
            refused[index] += bucket.refused;
        }
    }
    let max = prompts.iter().chain(&refused).copied().max().unwrap_or(0).max(1);
    let points = |series: &[i64]| {
        series
            .iter()
            .enumerate()
            .map(|(x, n)| format!("{x},{}", CHART_HEIGHT - 4 - n * (CHART_HEIGHT - 20) / max))
            .collect::<Vec<_>>()
            .join(" ")
    };
    Chart {
        width: CHART_WIDTH,
        height: CHART_HEIGHT,
        prompts: points(&prompts),
        refused: points(&refused),
        max,
        total_prompts: prompts.iter().sum(),
        total_refused: refused.iter().sum(),
    }
}

/// One horizontal bar per refusal reason, scaled to the largest.
fn refusal_bars(charts: &Charts) -> (Vec<Bar>, i64) {
    let max = charts.refusals_by_reason.iter().map(|r| r.refusals).max().unwrap_or(1).max(1);
    let room = CHART_WIDTH - 160 - 80;
    let bars: Vec<Bar> = charts
        .refusals_by_reason
        .iter()
        .zip(0i64..)
        .map(|(r, i)| {
            let width = (r.refusals * room / max).max(1);
            Bar {
                reason: if r.reason.is_empty() { "(none given)".to_owned() } else { r.reason.clone() },
                count: r.refusals,
                y: i * 24,
                text_y: i * 24 + 14,
                width,
                count_x: 160 + width + 6,
            }
        })
        .collect();
    let height = (bars.len() as i64 * 24).max(24);
    (bars, height)
}

#[derive(Debug)]
struct UserRowView {
    username: String,
    href: String,
    display_name: String,
    is_privileged: bool,
    push: String,
    needs_admin_review: bool,
}

#[derive(Debug, Template)]
#[template(path = "admin/users.html")]
struct UsersPage {
    chrome: Chrome,
    q: String,
    users: Vec<UserRowView>,
    next: Option<String>,
}

/// Auth: admin session (any role); without one, a 401 page. Users by username prefix.
async fn users_page(
    State(state): State<AppState>,
    session: Session,
    headers: HeaderMap,
    params: Result<Query<UsersQuery>, QueryRejection>,
) -> PageResult {
    let chrome = chrome(&state, session, &headers)?;
    let params = query(params)?;
    let q = params.q.unwrap_or_default();
    let list = state.admin.dashboard.users(&q, params.after.as_deref()).await?;
    Ok(render_users(chrome, q, list)?)
}

fn render_users(chrome: Chrome, q: String, list: UserList) -> Result<Response, ApiError> {
    let next = list.next_after.map(|after| with_query("/admin/users", &[("q", &q), ("after", &after)]));
    let users = list
        .users
        .into_iter()
        .map(|u| UserRowView {
            href: user_href(&u.username),
            username: u.username,
            display_name: u.display_name.unwrap_or_default(),
            is_privileged: u.is_privileged,
            push: u.push,
            needs_admin_review: u.needs_admin_review,
        })
        .collect();
    html(StatusCode::OK, &UsersPage { chrome, q, users, next })
}

#[derive(Debug)]
struct NamedRow {
    id: String,
    name: String,
    platform: String,
    push_provider: String,
    backed_up: bool,
    created_at: String,
    last_used_at: String,
    revoked_at: String,
}

#[derive(Debug)]
struct PromptRow {
    at: String,
    app_name: String,
    place: String,
    user_agent: String,
    number: &'static str,
    seconds: String,
    outcome: String,
    silent: bool,
}

#[derive(Debug)]
struct Mark {
    x: i64,
    outcome: String,
    title: String,
}

#[derive(Debug)]
struct RefusedRow {
    at: String,
    app_name: String,
    ip: String,
    reason: String,
}

#[derive(Debug, Template)]
#[template(path = "admin/user.html")]
struct UserPageView {
    chrome: Chrome,
    username: String,
    display_name: String,
    is_privileged: bool,
    push: String,
    why: Vec<String>,
    devices: Vec<NamedRow>,
    passkeys: Vec<NamedRow>,
    strip_width: i64,
    strip: Vec<Mark>,
    timeline: Vec<PromptRow>,
    older: Option<String>,
    refused: Vec<RefusedRow>,
}

/// Auth: admin session (any role); without one, a 401 page. A user's standing, factors and
/// prompt timeline (never the number).
async fn user_page(
    State(state): State<AppState>,
    session: Session,
    headers: HeaderMap,
    ApiPath(username): ApiPath<String>,
    params: Result<Query<UserQuery>, QueryRejection>,
) -> PageResult {
    let chrome = chrome(&state, session, &headers)?;
    let params = query(params)?;
    let page = state.admin.dashboard.user(&username, params.before.as_deref()).await?;
    Ok(render_user(chrome, page)?)
}

fn optional_time(at: Option<OffsetDateTime>) -> String {
    at.map(time_text).unwrap_or_default()
}

fn render_user(chrome: Chrome, page: UserPage) -> Result<Response, ApiError> {
    let older = page.next_before.as_ref().map(|b| with_query(&user_href(&page.username), &[("before", b)]));
    let strip = time_strip(&page);
    let devices = page
        .devices
        .into_iter()
        .map(|d| NamedRow {
            id: d.id,
            name: d.name,
            platform: d.platform,
            push_provider: d.push_provider,
            backed_up: false,
            created_at: time_text(d.created_at),
            last_used_at: String::new(),
            revoked_at: optional_time(d.revoked_at),
        })
        .collect();
    let passkeys = page
        .passkeys
        .into_iter()
        .map(|p| NamedRow {
            id: p.id,
            name: p.name,
            platform: String::new(),
            push_provider: String::new(),
            backed_up: p.backed_up,
            created_at: time_text(p.created_at),
            last_used_at: optional_time(p.last_used_at),
            revoked_at: optional_time(p.revoked_at),
        })
        .collect();
    let timeline = page
        .timeline
        .into_iter()
        .map(|p| PromptRow {
            at: time_text(p.created_at),
            place: match p.location {
                Some(location) => format!("{} ({location})", p.ip),
                None => p.ip,
            },
            app_name: p.app_name,
            user_agent: p.user_agent,
            number: match p.number {
                Some("matched") => "matched",
                Some(_) => "wrong number",
                None => "",
            },
            seconds: p.seconds_to_decide.map(|s| format!("{s:.1}")).unwrap_or_default(),
            outcome: p.outcome,
            silent: p.silent,
        })
        .collect();
    let refused = page
        .refused
        .into_iter()
        .map(|r| RefusedRow { at: time_text(r.at), app_name: r.app_name, ip: r.ip, reason: r.reason })
        .collect();
    let view = UserPageView {
        chrome,
        username: page.username,
        display_name: page.display_name.unwrap_or_default(),
        is_privileged: page.is_privileged,
        push: page.standing.push,
        why: page.why,
        devices,
        passkeys,
        strip_width: STRIP_WIDTH,
        strip,
        timeline,
        older,
        refused,
    };
    html(StatusCode::OK, &view)
}

/// The page's prompts along time, oldest at the left.
fn time_strip(page: &UserPage) -> Vec<Mark> {
    let (Some(newest), Some(oldest)) = (page.timeline.first(), page.timeline.last()) else {
        return Vec::new();
    };
    let span = (newest.created_at - oldest.created_at).whole_seconds().max(1);
    page.timeline
        .iter()
        .map(|p| Mark {
            x: (p.created_at - oldest.created_at).whole_seconds() * (STRIP_WIDTH - 4) / span,
            outcome: p.outcome.clone(),
            title: format!("{} {} from {}", time_text(p.created_at), p.outcome, p.ip),
        })
        .collect()
}

#[derive(Debug, Default)]
struct AuditForm {
    user: String,
    subject: String,
    actor: String,
    action: String,
    from: String,
    to: String,
}

#[derive(Debug)]
struct EventRow {
    seq: i64,
    at: String,
    actor: String,
    action: String,
    subject: String,
    details: String,
}

#[derive(Debug, Template)]
#[template(path = "admin/audit.html")]
struct AuditPageView {
    chrome: Chrome,
    form: AuditForm,
    events: Vec<EventRow>,
    older: Option<String>,
}

/// Auth: admin session (any role); without one, a 401 page. The audit trail, filtered, newest
/// first, with an "older" link.
async fn audit_page(
    State(state): State<AppState>,
    session: Session,
    headers: HeaderMap,
    params: Result<Query<AuditParams>, QueryRejection>,
) -> PageResult {
    let chrome = chrome(&state, session, &headers)?;
    let params = query(params)?;
    let found = state.admin.dashboard.audit(params.to_query()?).await?;
    Ok(render_audit(chrome, &params, found)?)
}

fn render_audit(chrome: Chrome, params: &AuditParams, page: AuditPage) -> Result<Response, ApiError> {
    let text = |v: &Option<String>| v.clone().unwrap_or_default();
    let form = AuditForm {
        user: text(&params.user),
        subject: text(&params.subject),
        actor: text(&params.actor),
        action: text(&params.action),
        from: text(&params.from),
        to: text(&params.to),
    };
    let older = page.next_before.map(|before| {
        let before = before.to_string();
        with_query(
            "/admin/audit",
            &[
                ("user", &form.user),
                ("subject", &form.subject),
                ("actor", &form.actor),
                ("action", &form.action),
                ("from", &form.from),
                ("to", &form.to),
                ("before", &before),
            ],
        )
    });
    let events = page
        .events
        .into_iter()
        .map(|e| EventRow {
            seq: e.seq,
            at: time_text(e.occurred_at),
            actor: e.actor,
            action: e.action,
            subject: e.subject,
            details: e.details.to_string(),
        })
        .collect();
    html(StatusCode::OK, &AuditPageView { chrome, form, events, older })
}

#[derive(Debug, Template)]
#[template(path = "admin/apps.html")]
struct AppsPage {
    chrome: Chrome,
    apps: Vec<AppView>,
    clients: Vec<ClientView>,
    /// The scopes an app may be given, for the create form.
    scopes: Vec<&'static str>,
}

impl AppsPage {
    fn time(at: &OffsetDateTime) -> String {
        time_text(*at)
    }

    fn optional_time(at: &Option<OffsetDateTime>) -> String {
        optional_time(*at)
    }
}

/// Auth: admin session (any role); without one, a 401 page. Apps (keyless ones labelled) and
/// OIDC clients, with their scopes; for an admin, the forms that create them and the buttons
/// that revoke them (the page's script calls the admin API, each change with a step-up).
async fn apps_page(State(state): State<AppState>, session: Session, headers: HeaderMap) -> PageResult {
    let chrome = chrome(&state, session, &headers)?;
    let apps = state.admin.dashboard.apps().await?;
    let clients = state.admin.dashboard.clients().await?;
    let scopes = crate::api_keys::Scope::ALL.iter().map(|s| s.as_str()).collect();
    Ok(html(StatusCode::OK, &AppsPage { chrome, apps, clients, scopes })?)
}

/// Auth: none. The admin pages' script (the live alert list).
async fn script() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/javascript; charset=utf-8")], include_str!("../../../assets/admin.js"))
}

/// Auth: none. The admin pages' stylesheet.
async fn stylesheet() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], include_str!("../../../assets/admin.css"))
}
