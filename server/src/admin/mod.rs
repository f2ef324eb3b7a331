//! The admin plane (`/admin`): admins, who are not users, sign in with passkeys only and act on
//! the server through sessions; changes an attacker with one admin would want (more admins,
//! fewer admins, a weaker fatigue policy, a privileged user's factors, a reported user's
//! unfreeze) need a second admin's approval.
//!
//! - [`accounts`]: the bootstrap token, invitations, admins' passkeys and their ceremonies
//!   (registration, discoverable sign-in, step-up);
//! - [`model`]: roles and permissions, session times, request kinds, the two-admin floor;
//! - [`sessions`]: session cookies, CSRF tokens, step-up;
//! - [`feed`]: the live feed of alerts (one poller per instance, only while someone watches);
//! - `http`: the admin API (`/admin/api/…`) and its OpenAPI document.
//!
//! It changes other capabilities' state only through their services.

pub mod accounts;
pub mod feed;
pub mod http;
pub mod model;
pub mod sessions;

use accounts::AdminAccounts;
use sessions::AdminSessions;

/// Everything the admin routes share.
#[derive(Debug)]
pub struct AdminPlane {
    pub sessions: AdminSessions,
    pub accounts: AdminAccounts,
    /// The origins admin pages are served from: the public URL's and the WebAuthn origins
    /// (passkeys work only there).
    origins: Vec<String>,
}

impl AdminPlane {
    pub fn new(
        sessions: AdminSessions,
        accounts: AdminAccounts,
        public_url: &str,
        webauthn_origins: &[String],
    ) -> Self {
        let mut origins = vec![origin_of(public_url)];
        origins.extend(webauthn_origins.iter().cloned());
        Self { sessions, accounts, origins }
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
