//! What every hosted page shares at the edge: the security headers (on the pages, their
//! assets, and the JSON their scripts call), rendering a template as a response, and times as
//! a person reads them.

use askama::Template;
use axum::Router;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware;
use axum::response::{IntoResponse, Response};

use super::ApiError;

/// No inline script or style, nothing from elsewhere, no framing, forms and fetches to this
/// origin only.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// `router` with the pages' security headers on every response. Pages carry single-use
/// secrets (in their URL, their body or their scripts' requests): never cached, never sent on
/// as a referrer, never framed.
pub fn with_page_headers<S: Clone + Send + Sync + 'static>(router: Router<S>) -> Router<S> {
    router.layer(middleware::map_response(|mut response: Response| async move {
        add_page_headers(response.headers_mut());
        response
    }))
}

fn add_page_headers(headers: &mut HeaderMap) {
    // A page that must post elsewhere (an OAuth form post) sets its own, equally strict policy.
    headers
        .entry(header::CONTENT_SECURITY_POLICY)
        .or_insert(HeaderValue::from_static(CONTENT_SECURITY_POLICY));
    for (name, value) in [
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::CACHE_CONTROL, "no-store"),
        (header::X_FRAME_OPTIONS, "DENY"),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
}

/// A rendered template as an HTML response.
pub fn html(status: StatusCode, page: &impl Template) -> Result<Response, ApiError> {
    let body = page.render().map_err(|e| ApiError::internal(&e))?;
    Ok((status, [(header::CONTENT_TYPE, "text/html; charset=utf-8")], body).into_response())
}

/// A time as RFC 3339 and as a person reads it (`14:05 UTC`).
pub fn shown_time(at: time::OffsetDateTime) -> (String, String) {
    let rfc3339 = at.format(&time::format_description::well_known::Rfc3339).unwrap_or_default();
    (rfc3339, format!("{:02}:{:02} UTC", at.hour(), at.minute()))
}

/// The policy of a page whose only form posts to `origin` (`scheme://host[:port]`).
pub fn content_security_policy_posting_to(origin: &str) -> String {
    CONTENT_SECURITY_POLICY.replace("form-action 'self'", &format!("form-action {origin}"))
}
