//! The admin plane (`/admin`): admins, who are not users, sign in with passkeys only and act on
//! the server through sessions; changes an attacker with one admin would want (more admins,
//! fewer admins, a weaker fatigue policy, a privileged user's factors, a reported user's
//! unfreeze) need a second admin's approval.
//!
//! - [`accounts`]: the bootstrap token, invitations, admins' passkeys and their ceremonies
//!   (registration, discoverable sign-in, step-up);
//! - [`model`]: roles and permissions, session times, request kinds, the two-admin floor;
//! - [`sessions`]: session cookies, CSRF tokens, step-up;
//! - [`accounts`]: bootstrap, invitations, admins' passkeys: registration, sign-in, step-up;
//! - [`requests`]: four-eyes requests, their decisions and the appliers that make the change
//!   ([`request_json`]: their payloads by kind and how the API shows them);
//! - [`helpdesk`]: caller verification by number-matching push, links for verified callers;
//! - [`audit_check`]: "verify now": the audit chain walked in the background;
//! - [`feed`]: the live feed of alerts (one poller per instance, only while someone watches);
//! - [`dashboard`]: what the dashboard shows (overview, users, a user's page, audit, alerts);
//! - [`live`]: one admin's live stream of alerts (server-sent events);
//! - [`views`]: what the dashboard's reads answer (the API's bodies, the pages' data);
//! - `http`: the admin API (`/admin/api/…`) and its OpenAPI document, and the pages.
//!
//! It changes other capabilities' state only through their services.

pub mod accounts;
pub mod apps;
pub mod audit_check;
pub mod dashboard;
pub mod feed;
pub mod helpdesk;
pub mod http;
pub mod live;
pub mod model;
pub mod request_json;
pub mod requests;
pub mod sessions;
pub mod views;

use std::sync::Arc;

use accounts::AdminAccounts;
use dashboard::Dashboard;
use feed::AlertFeed;
use helpdesk::HelpDesk;
use requests::AdminRequests;
use sessions::AdminSessions;
use tokio::sync::watch;

/// The admin plane's services, as the composition root builds them.
#[derive(Debug)]
pub struct AdminServices {
    pub sessions: AdminSessions,
    pub audit_check: audit_check::AuditCheck,
    pub accounts: AdminAccounts,
    pub requests: AdminRequests,
    pub helpdesk: HelpDesk,
    pub dashboard: Dashboard,
    pub feed: Arc<AlertFeed>,
}

/// Everything the admin routes share.
#[derive(Debug)]
pub struct AdminPlane {
    pub sessions: AdminSessions,
    pub audit_check: audit_check::AuditCheck,
    pub accounts: AdminAccounts,
    pub requests: AdminRequests,
    pub helpdesk: HelpDesk,
    pub dashboard: Dashboard,
    /// This instance's alert feed (its task is started with the other background tasks).
    pub feed: Arc<AlertFeed>,
    /// The live streams open on this instance, per session (capped).
    pub streams: live::StreamSlots,
    /// The origins admin pages are served from: the public URL's and the WebAuthn origins
    /// (passkeys work only there).
    origins: Vec<String>,
    /// Turns `true` at shutdown: live streams end then instead of holding the drain.
    shutting_down: watch::Sender<bool>,
}

impl AdminPlane {
    pub fn new(services: AdminServices, public_url: &str, webauthn_origins: &[String]) -> Self {
        let AdminServices { sessions, audit_check, accounts, requests, helpdesk, dashboard, feed } = services;
        let mut origins = vec![origin_of(public_url)];
        origins.extend(webauthn_origins.iter().cloned());
        let (shutting_down, _) = watch::channel(false);
        Self {
            sessions,
            audit_check,
            accounts,
            requests,
            helpdesk,
            dashboard,
            feed,
            streams: live::StreamSlots::default(),
            origins,
            shutting_down,
        }
    }

    /// Ends this instance's live streams (the server is shutting down).
    pub fn shut_down(&self) {
        self.shutting_down.send_replace(true);
    }

    /// Becomes `true` when the server shuts down.
    pub fn shutdown_signal(&self) -> watch::Receiver<bool> {
        self.shutting_down.subscribe()
    }

    /// Mints a new session for an admin who has just proved a passkey. A session cookie the
    /// browser presented is never adopted (session fixation): if it names a live session, that
    /// session is ended first.
    pub async fn start_session(
        &self,
        admin: &crate::store::AdminRecord,
        presented: Option<&str>,
        user_agent: &str,
    ) -> Result<sessions::StartedSession, sessions::SessionError> {
        if let Some(token) = presented
            && let Ok(principal) = self.sessions.authenticate(token).await
        {
            self.sessions.sign_out(&principal).await?;
        }
        self.sessions.start(admin, user_agent).await
    }

    /// Whether an `Origin` header names one of ours (`null` never does).
    pub fn is_own_origin(&self, origin: &str) -> bool {
        self.origins.iter().any(|own| own == origin)
    }
}

/// The origin (`scheme://host[:port]`) of a URL: what a browser sends as `Origin`.
fn origin_of(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(parsed) => parsed.origin().ascii_serialization(),
        Err(_) => url.trim_end_matches('/').to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_are_scheme_host_and_port_only() {
        assert_eq!(origin_of("https://mfa.example.com/"), "https://mfa.example.com");
        assert_eq!(origin_of("https://mfa.example.com:8443/base/"), "https://mfa.example.com:8443");
        assert_eq!(origin_of("http://127.0.0.1:8080"), "http://127.0.0.1:8080");
    }
}
