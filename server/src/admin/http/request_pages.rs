//! The four-eyes requests page: the pending requests, each with an "Approve" button that
//! `/assets/admin.js` turns into a step-up ceremony and the approval (admins only; the API
//! refuses everyone else, the page only hides the button).

use std::collections::HashMap;

use askama::Template;
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::get;

use super::pages::{Chrome, PageResult, Session, chrome, time_text};
use crate::admin::model::{RequestState, Role};
use crate::app::AppState;
use crate::http::page::html;

/// Pending requests shown on one page (the API pages further).
const PAGE: u32 = 100;

pub fn routes() -> Router<AppState> {
    Router::new().route("/admin/requests", get(requests_page))
}

#[derive(Debug)]
struct RequestRow {
    id: String,
    kind: &'static str,
    payload: String,
    requested_by: String,
    requested_at: String,
    expires_at: String,
}

#[derive(Debug, Template)]
#[template(path = "admin/requests.html")]
struct RequestsPage {
    chrome: Chrome,
    can_decide: bool,
    requests: Vec<RequestRow>,
}

/// Auth: admin session (any role); without one, a 401 page. The pending four-eyes requests,
/// newest first, with who asked (by name) and what (the payload as text, escaped).
async fn requests_page(State(state): State<AppState>, session: Session, headers: HeaderMap) -> PageResult {
    let chrome = chrome(&state, session, &headers)?;
    let names: HashMap<_, _> =
        state.admin.requests.admins().await?.into_iter().map(|admin| (admin.id, admin.name)).collect();
    let requests = state
        .admin
        .requests
        .list(Some(RequestState::Pending), None, PAGE)
        .await?
        .into_iter()
        .map(|r| RequestRow {
            id: r.id.to_string(),
            kind: r.kind.as_str(),
            payload: r.payload.to_string(),
            requested_by: names.get(&r.requested_by).cloned().unwrap_or_else(|| r.requested_by.to_string()),
            requested_at: time_text(r.requested_at),
            expires_at: time_text(r.expires_at),
        })
        .collect();
    let can_decide = chrome.role == Role::Admin.as_str();
    Ok(html(StatusCode::OK, &RequestsPage { chrome, can_decide, requests })?)
}
