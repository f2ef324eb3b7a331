//! The four-eyes pages. `/admin/requests`: the pending requests, with "Approve" (which
//! `/assets/admin.js` turns into a step-up ceremony and the approval) and "Reject" for an admin
//! who did not ask, and "Withdraw" for the one who did. `/admin/policy`: the fatigue policy in
//! force, and a form that asks for a change (a `fatigue_policy` request). The API refuses
//! everyone else; the pages only hide the buttons.

use std::collections::HashMap;

use askama::Template;
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::get;

use super::pages::{Chrome, PageResult, Session, chrome, time_text};
use crate::admin::model::{RequestState, Role};
use crate::app::AppState;
use crate::fatigue::policy::PolicyOrigin;
use crate::http::page::html;

/// Pending requests shown on one page (the API pages further).
const PAGE: u32 = 100;

pub fn routes() -> Router<AppState> {
    Router::new().route("/admin/requests", get(requests_page)).route("/admin/policy", get(policy_page))
}

#[derive(Debug)]
struct RequestRow {
    id: String,
    kind: &'static str,
    payload: String,
    requested_by: String,
    requested_at: String,
    expires_at: String,
    /// Asked by the admin viewing the page: theirs to withdraw, never to decide.
    own: bool,
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
            own: r.requested_by == chrome.id,
        })
        .collect();
    let can_decide = chrome.role == Role::Admin.as_str();
    Ok(html(StatusCode::OK, &RequestsPage { chrome, can_decide, requests })?)
}

/// One setting of the fatigue policy: its JSON key, the value in force, and (for durations)
/// the value in words.
#[derive(Debug)]
struct PolicyField {
    key: String,
    value: String,
    words: String,
}

#[derive(Debug, Template)]
#[template(path = "admin/policy.html")]
struct PolicyPage {
    chrome: Chrome,
    can_submit: bool,
    fields: Vec<PolicyField>,
    /// The request that last changed the policy, or `None` for the config file's.
    changed_by: Option<(String, i64)>,
}

/// Seconds as the largest whole unit that fits (`900` → "15 min").
fn duration_words(secs: i64) -> String {
    match secs {
        s if s % 86_400 == 0 => format!("{} d", s / 86_400),
        s if s % 3_600 == 0 => format!("{} h", s / 3_600),
        s if s % 60 == 0 => format!("{} min", s / 60),
        s => format!("{s} s"),
    }
}

/// Auth: admin session (any role); without one, a 401 page. The fatigue policy in force on this
/// instance and where it comes from; for help desk and admins, a form asking for a change (a
/// four-eyes request a second admin approves).
async fn policy_page(State(state): State<AppState>, session: Session, headers: HeaderMap) -> PageResult {
    let chrome = chrome(&state, session, &headers)?;
    let (policy, origin) = state.fatigue.policy().describe();
    let json = serde_json::to_value(&*policy).map_err(|e| crate::http::ApiError::internal(&e))?;
    let fields = json
        .as_object()
        .into_iter()
        .flatten()
        .map(|(key, value)| PolicyField {
            words: match (key.ends_with("_secs"), value.as_i64()) {
                (true, Some(secs)) => duration_words(secs),
                _ => String::new(),
            },
            key: key.clone(),
            value: value.to_string(),
        })
        .collect();
    let changed_by = match origin {
        PolicyOrigin::Config => None,
        PolicyOrigin::Request { request_id, version } => Some((request_id.to_string(), version)),
    };
    let can_submit = chrome.role != Role::Auditor.as_str();
    Ok(html(StatusCode::OK, &PolicyPage { chrome, can_submit, fields, changed_by })?)
}
