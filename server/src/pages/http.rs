//! The hosted pages' routes: HTML and the assets it loads, every response with the pages'
//! security headers. What the pages' script calls lives with its capability
//! (`passkeys::http::page_routes`).

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;

use super::views::{EnrollPage, ErrorPage, SignInPage};
use crate::app::AppState;
use crate::http::page::{html, shown_time, with_page_headers};
use crate::http::{ApiError, Code};
use crate::passkeys::enrollment::ENROLL_PAGE_PATH;
use crate::passkeys::service::PasskeyError;
use crate::passkeys::sign_in::SIGN_IN_PAGE_PATH;

pub fn routes() -> Router<AppState> {
    with_page_headers(
        Router::new()
            .route(ENROLL_PAGE_PATH, get(enroll_page))
            .route(SIGN_IN_PAGE_PATH, get(sign_in_page))
            .route("/assets/passkeys.js", get(script))
            .route("/assets/oidc.js", get(oidc_script))
            .route("/assets/form_post.js", get(form_post_script))
            .route("/assets/pages.css", get(stylesheet)),
    )
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

/// Auth: none. The pages' script.
async fn script() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/javascript; charset=utf-8")], include_str!("../../assets/passkeys.js"))
}

/// Auth: none. The OIDC sign-in page's script (live status, then back to the client).
async fn oidc_script() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/javascript; charset=utf-8")], include_str!("../../assets/oidc.js"))
}

/// Auth: none. The form-post answer page's script (sends the form on load).
async fn form_post_script() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/javascript; charset=utf-8")], include_str!("../../assets/form_post.js"))
}

/// Auth: none. The pages' stylesheet.
async fn stylesheet() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], include_str!("../../assets/pages.css"))
}
