//! The admins page: the roster (who may act on the admin plane, in which role, and whose removal
//! is scheduled) and the signed-in admin's own passkeys. `/assets/admin.js` turns its forms and
//! buttons into the admin API's calls: invitations, role changes and removals are four-eyes
//! requests; cancelling a removal and revoking or adding a passkey each spend a step-up. The
//! page only hides what a role may not do; the API refuses it anyway.

use askama::Template;
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::get;

use super::pages::{Chrome, PageResult, Session, chrome, time_text};
use crate::admin::accounts::AdminPasskeyView;
use crate::admin::model::{AdminStatus, Permission, Role};
use crate::admin::requests::AdminView;
use crate::app::AppState;
use crate::http::page::html;
use crate::ids::AdminId;

/// The roles an admin may be given, in the order the forms offer them.
const ROLES: [Role; 3] = [Role::Auditor, Role::Helpdesk, Role::Admin];

pub fn routes() -> Router<AppState> {
    Router::new().route("/admin/admins", get(admins_page))
}

#[derive(Debug)]
struct AdminRow {
    id: String,
    name: String,
    role: &'static str,
    status: &'static str,
    /// The status in words, with when a scheduled removal takes effect.
    standing: String,
    created_at: String,
    /// Invited or active: a role change may be asked for.
    changeable: bool,
    /// Invited or active: a removal may be asked for (an invited admin's withdraws the
    /// invitation; the API refuses it for anyone else).
    removable: bool,
    removal_pending: bool,
    is_me: bool,
}

#[derive(Debug)]
struct PasskeyRow {
    id: String,
    name: String,
    created_at: String,
    last_used_at: String,
    backed_up: bool,
    active: bool,
}

#[derive(Debug, Template)]
#[template(path = "admin/admins.html")]
struct AdminsPage {
    chrome: Chrome,
    roles: Vec<&'static str>,
    /// Help desk and admins ask for invitations, role changes and removals.
    can_submit: bool,
    /// Admins alone cancel a scheduled removal.
    can_cancel: bool,
    admins: Vec<AdminRow>,
    passkeys: Vec<PasskeyRow>,
    /// The last active passkey cannot be revoked: then no row gets a button.
    can_revoke_passkeys: bool,
}

/// Auth: admin session (any role); without one, a 401 page. Every admin with their role and
/// standing, and the signed-in admin's own passkeys; the forms and buttons of the changes this
/// admin's role may ask for.
async fn admins_page(State(state): State<AppState>, session: Session, headers: HeaderMap) -> PageResult {
    let admin = session?;
    let (me, role) = (admin.id, admin.role);
    let chrome = chrome(&state, Ok(admin), &headers)?;
    let admins = state.admin.requests.admins().await?.into_iter().map(|a| admin_row(a, me)).collect();
    let passkeys: Vec<PasskeyRow> =
        state.admin.accounts.passkeys(me).await?.into_iter().map(passkey_row).collect();
    let page = AdminsPage {
        chrome,
        roles: ROLES.iter().map(|r| r.as_str()).collect(),
        can_submit: role.permits(Permission::SubmitRequest),
        can_cancel: role.permits(Permission::Administer),
        can_revoke_passkeys: passkeys.iter().filter(|p| p.active).count() > 1,
        admins,
        passkeys,
    };
    Ok(html(StatusCode::OK, &page)?)
}

fn admin_row(admin: AdminView, me: AdminId) -> AdminRow {
    let standing = match (admin.status, admin.removal_due_at) {
        (AdminStatus::Invited, _) => "invited (no passkey yet)".to_owned(),
        (AdminStatus::Active, _) => "active".to_owned(),
        (AdminStatus::RemovalPending, Some(due)) => {
            format!("removal scheduled: takes effect {} UTC", time_text(due))
        }
        (AdminStatus::RemovalPending, None) => "removal scheduled".to_owned(),
        (AdminStatus::Removed, _) => "removed".to_owned(),
    };
    AdminRow {
        id: admin.id.to_string(),
        name: admin.name,
        role: admin.role.as_str(),
        status: admin.status.as_str(),
        standing,
        created_at: time_text(admin.created_at),
        changeable: matches!(admin.status, AdminStatus::Invited | AdminStatus::Active),
        removable: matches!(admin.status, AdminStatus::Invited | AdminStatus::Active),
        removal_pending: admin.status == AdminStatus::RemovalPending,
        is_me: admin.id == me,
    }
}

fn passkey_row(passkey: AdminPasskeyView) -> PasskeyRow {
    PasskeyRow {
        id: passkey.id.to_string(),
        name: passkey.name,
        created_at: time_text(passkey.created_at),
        last_used_at: passkey.last_used_at.map(time_text).unwrap_or_default(),
        backed_up: passkey.backed_up,
        active: passkey.active,
    }
}
