//! The admin plane's pages before a session: sign-in, the first admin's bootstrap, an
//! invitation. Each is a static form; its script (`/assets/admin-auth.js`) runs the ceremony
//! through the API in `auth.rs`. Opening a page changes nothing.

use askama::Template;
use axum::Router;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::app::AppState;
use crate::http::ApiError;
use crate::http::page::{html, with_page_headers};

/// `/admin/login`: a discoverable passkey sign-in (no name typed).
#[derive(Debug, Template)]
#[template(path = "admin_login.html")]
pub struct LoginPage;

/// `/admin/bootstrap`: the bootstrap token, a name, a passkey.
#[derive(Debug, Template)]
#[template(path = "admin_bootstrap.html")]
pub struct BootstrapPage;

/// `/admin/invite?token=…`: an invited admin's first passkey.
#[derive(Debug, Template)]
#[template(path = "admin_invite.html")]
pub struct InvitePage;

/// Auth: none. The admin sign-in page.
async fn login_page() -> Result<Response, ApiError> {
    html(StatusCode::OK, &LoginPage)
}

/// Auth: none (the bootstrap token is typed into the page). The first admins' registration.
async fn bootstrap_page() -> Result<Response, ApiError> {
    html(StatusCode::OK, &BootstrapPage)
}

/// Auth: none (the invitation's token is in the URL, read by the page's script).
async fn invite_page() -> Result<Response, ApiError> {
    html(StatusCode::OK, &InvitePage)
}

/// Auth: none. The sign-in pages' script.
async fn script() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        include_str!("../../../assets/admin-auth.js"),
    )
}

/// The pages, with the hosted pages' security headers (strict CSP, no-store, no framing).
pub fn routes() -> Router<AppState> {
    with_page_headers(
        Router::new()
            .route("/admin/login", get(login_page))
            .route("/admin/bootstrap", get(bootstrap_page))
            .route("/admin/invite", get(invite_page))
            .route("/assets/admin-auth.js", get(script)),
    )
}
