//! The admin session: `AdminSession<Role>` for handlers, and the guard every `/admin` route
//! sits behind.
//!
//! A handler states the role it needs in its signature — `admin: AdminSession<AdminOnly>` — and
//! runs only for a live session cookie (401 otherwise), with this session's CSRF token on any
//! state change (403 `csrf_failed`), and a role that allows the route (403
//! `admin_role_required`). [`guard`] runs first, for every `/admin` request: a state change must
//! come from one of our own origins (`Origin` present and ours, `Sec-Fetch-Site` same-origin if
//! sent), and another site cannot even read the admin API by navigating to it.

use std::marker::PhantomData;
use std::ops::Deref;

use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::codes::Code;
use super::error::ApiError;
use crate::admin::AdminPlane;
use crate::admin::model::{Permission, Role};
use crate::admin::sessions::{AdminPrincipal, CSRF_HEADER, SESSION_COOKIE, SessionError};
use crate::app::AppState;

/// What a route asks of the admin's role (the type parameter of [`AdminSession`]).
pub trait RoleRule: Send + Sync + 'static {
    const PERMISSION: Permission;
}

/// Type-level role rules.
pub mod role {
    use super::{Permission, RoleRule};

    macro_rules! rule {
        ($($(#[$doc:meta])* $marker:ident => $permission:ident),* $(,)?) => {$(
            $(#[$doc])*
            #[derive(Debug)]
            pub struct $marker;

            impl RoleRule for $marker {
                const PERMISSION: Permission = Permission::$permission;
            }
        )*};
    }

    rule!(
        /// Any role: auditors read everything.
        AnyRole => Read,
        /// Help desk or admin.
        HelpDesk => HelpDesk,
        /// Help desk or admin: asking for a four-eyes change.
        Submitter => SubmitRequest,
        /// Admin only: approving or rejecting another admin's request.
        Decider => DecideRequest,
        /// Admin only.
        AdminOnly => Administer,
        /// Any role: verifying the audit chain changes nothing.
        Verifier => VerifyAudit,
    );
}

/// An admin with a live session whose role allows what `R` asks. Derefs to the principal.
#[derive(Debug)]
pub struct AdminSession<R> {
    principal: AdminPrincipal,
    role: PhantomData<fn() -> R>,
}

impl<R> Deref for AdminSession<R> {
    type Target = AdminPrincipal;

    fn deref(&self) -> &AdminPrincipal {
        &self.principal
    }
}

fn is_safe(method: &Method) -> bool {
    matches!(*method, Method::GET | Method::HEAD)
}

impl<R: RoleRule> FromRequestParts<AppState> for AdminSession<R> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let token = super::extract::cookie(&parts.headers, SESSION_COOKIE).ok_or(SessionError::Missing)?;
        let sessions = &state.admin.sessions;
        let principal = sessions.authenticate(token).await?;
        if !is_safe(&parts.method) {
            let presented = parts.headers.get(CSRF_HEADER).and_then(|v| v.to_str().ok()).unwrap_or("");
            if !sessions.csrf_matches(token, presented) {
                return Err(SessionError::Csrf.into());
            }
        }
        if !principal.role.permits(R::PERMISSION) {
            return Err(role_refused(principal.role));
        }
        sessions.touch(&principal).await?;
        Ok(AdminSession { principal, role: PhantomData })
    }
}

fn role_refused(role: Role) -> ApiError {
    ApiError::new(Code::AdminRoleRequired, format!("the {} role does not allow this", role.as_str()))
}

impl From<SessionError> for ApiError {
    fn from(error: SessionError) -> Self {
        let message = error.to_string();
        let code = match error {
            SessionError::Missing => Code::AdminSessionRequired,
            SessionError::Expired => Code::AdminSessionExpired,
            SessionError::Csrf => Code::CsrfFailed,
            SessionError::StepUpRequired => Code::StepUpRequired,
            SessionError::Store(e) => return e.into(),
        };
        ApiError::new(code, message)
    }
}

/// Why [`guard`] refuses a request, if it does.
pub fn cross_site_refusal(
    plane: &AdminPlane,
    method: &Method,
    headers: &HeaderMap,
    api: bool,
) -> Option<&'static str> {
    let fetch_site = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok());
    if is_safe(method) {
        // A page may be opened from a link; the API's JSON is for our own pages (and scripts,
        // which send no `Sec-Fetch-Site`) only: not for another site, nor for a sibling
        // subdomain's page keeping a session alive.
        let own = matches!(fetch_site, None | Some("same-origin" | "none"));
        return (api && !own).then_some("the admin API is readable from the admin pages only");
    }
    if fetch_site.is_some_and(|site| site != "same-origin") {
        return Some("state changes are accepted from the admin pages only (Sec-Fetch-Site)");
    }
    match headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) {
        Some(origin) if plane.is_own_origin(origin) => None,
        Some(_) => Some("state changes are accepted from the admin pages only (Origin)"),
        None => Some("a state change must say where it comes from (Origin)"),
    }
}

/// Guards every `/admin` route: cross-site state changes are refused (403 `cross_origin`) before
/// anything else runs, and no admin response is cached.
pub async fn guard(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let api = request.uri().path().starts_with("/admin/api/");
    if let Some(why) = cross_site_refusal(&state.admin, request.method(), request.headers(), api) {
        return ApiError::new(Code::CrossOrigin, why).into_response();
    }
    let mut response = next.run(request).await;
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}
