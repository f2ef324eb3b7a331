//! The hosted pages' routes: HTML and the assets it loads, every response with the pages'
//! security headers. What the pages' script calls lives with its capability
//! (`passkeys::http::page_routes`).

use askama::Template;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Router, middleware};
use serde::Deserialize;

use super::views::{EnrollPage, ErrorPage, SignInPage};
use crate::app::AppState;
use crate::http::{ApiError, Code};
use crate::passkeys::enrollment::ENROLL_PAGE_PATH;
use crate::passkeys::service::PasskeyError;
use crate::passkeys::sign_in::SIGN_IN_PAGE_PATH;

/// No inline script or style, nothing from elsewhere, no framing, forms and fetches to this
/// origin only.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

pub fn routes() -> Router<AppState> {
    with_security_headers(
        Router::new()
            .route(ENROLL_PAGE_PATH, get(enroll_page))
            .route(SIGN_IN_PAGE_PATH, get(sign_in_page))
            .route("/assets/passkeys.js", get(script))
            .route("/assets/pages.css", get(stylesheet)),
    )
}

/// `router` with the pages' security headers on every response: the pages, their assets, and
/// the JSON endpoints their script calls (which carry the same secrets).
pub fn with_security_headers<S: Clone + Send + Sync + 'static>(router: Router<S>) -> Router<S> {
    router.layer(middleware::map_response(|mut response: Response| async move {
        add_security_headers(response.headers_mut());
        response
    }))
}

/// The pages' headers. Pages carry single-use secrets in their URL: never cached, never sent
/// on as a referrer.
fn add_security_headers(headers: &mut HeaderMap) {
    for (name, value) in [
        (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::CACHE_CONTROL, "no-store"),
        (header::X_FRAME_OPTIONS, "DENY"),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
}

#[derive(Debug, Deserialize)]
struct EnrollQuery {
    code: Option<String>,
}

/// Auth: an enrollment link's code (`?code=`). The registration page, or why the link cannot
/// be used (404 unknown, 410 expired or used); opening it changes nothing.
async fn enroll_page(
    State(state): State<AppState>,
    Query(query): Query<EnrollQuery>,
) -> Result<Response, ApiError> {
    let code = query.code.unwrap_or_default();
    let open = match state.passkeys.open_enrollment(&code).await {
        Ok(open) => open,
        Err(error) => return link_error_page(error),
    };
    let (expires_at, expires_at_text) = shown_time(open.link.expires_at);
    let page = EnrollPage {
        username: open.user.username,
        requested_by: open.link.app_name,
        expires_at,
        expires_at_text,
    };
    html(StatusCode::OK, &page)
}

#[derive(Debug, Deserialize)]
struct SignInQuery {
    token: Option<String>,
}

/// Auth: a passkey challenge's page token (`?token=`). The sign-in page, or why the challenge
/// cannot be answered (404 unknown, 410 expired, 409 decided); opening it changes nothing.
async fn sign_in_page(
    State(state): State<AppState>,
    Query(query): Query<SignInQuery>,
) -> Result<Response, ApiError> {
    let token = query.token.unwrap_or_default();
    let open = match state.passkeys.open_sign_in(&token).await {
        Ok(open) => open,
        Err(error) => return link_error_page(error),
    };
    let challenge = open.challenge;
    let (expires_at, expires_at_text) = shown_time(challenge.expires_at);
    let present = |text: String| Some(text).filter(|t| !t.is_empty());
    let page = SignInPage {
        requested_at_text: shown_time(challenge.created_at).1,
        app_name: challenge.app_name,
        ip: present(challenge.ip),
        location: challenge.location,
        user_agent: present(challenge.user_agent),
        expires_at,
        expires_at_text,
    };
    html(StatusCode::OK, &page)
}

/// A time as RFC 3339 and as a person reads it (`14:05 UTC`).
fn shown_time(at: time::OffsetDateTime) -> (String, String) {
    let rfc3339 = at.format(&time::format_description::well_known::Rfc3339).unwrap_or_default();
    (rfc3339, format!("{:02}:{:02} UTC", at.hour(), at.minute()))
}

/// A page link that cannot be used, as a page that says why; other failures as errors.
fn link_error_page(error: PasskeyError) -> Result<Response, ApiError> {
    let (code, title) = match error {
        PasskeyError::EnrollmentLinkInvalid => (Code::EnrollmentLinkInvalid, "This link is not valid"),
        PasskeyError::EnrollmentLinkExpired => (Code::EnrollmentLinkExpired, "This link has expired"),
        PasskeyError::EnrollmentLinkUsed => (Code::EnrollmentLinkUsed, "This link has been used"),
        PasskeyError::SignInPageInvalid => (Code::SignInPageInvalid, "This link is not valid"),
        PasskeyError::ChallengeExpired => (Code::ChallengeExpired, "This sign-in has expired"),
        PasskeyError::ChallengeNotPending(_) => (Code::ChallengeNotPending, "This sign-in is over"),
        other => return Err(ApiError::from(other)),
    };
    let page = ErrorPage { code: code.as_str(), title, message: error.to_string() };
    html(code.status(), &page)
}

fn html(status: StatusCode, page: &impl Template) -> Result<Response, ApiError> {
    let body = page.render().map_err(|e| ApiError::internal(&e))?;
    Ok((status, [(header::CONTENT_TYPE, "text/html; charset=utf-8")], body).into_response())
}

/// Auth: none. The pages' script.
async fn script() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/javascript; charset=utf-8")], include_str!("../../assets/passkeys.js"))
}

/// Auth: none. The pages' stylesheet.
async fn stylesheet() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], include_str!("../../assets/pages.css"))
}
