//! Admin sessions: a random cookie value minted only after a verified passkey sign-in (the
//! database keeps its SHA-256), idle and absolute timeouts, a CSRF token derived from the
//! session, and step-up assertions spent one per sensitive action.

use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::rand::{SecureRandom, SystemRandom};
use ring::{digest, hmac};
use secrecy::{ExposeSecret, SecretString};
use serde_json::json;
use subtle::ConstantTimeEq;
use time::OffsetDateTime;

use super::model::{AdminStatus, Role, SessionTimes, StepUpAction};
use crate::audit::{Action, Actor, AuditEvent, Subject};
use crate::clock::Clock;
use crate::ids::AdminId;
use crate::secrets::MasterKey;
use crate::store::{AdminRecord, AdminSessionRecord, Store, StoreError};

/// The session cookie. `__Host-` makes the browser refuse it unless it is `Secure`, has
/// `Path=/` and no `Domain`: no subdomain or plain-http page can plant or overwrite it.
pub const SESSION_COOKIE: &str = "__Host-countersign-admin";

/// The header every state-changing request carries the CSRF token in.
pub const CSRF_HEADER: &str = "x-csrf-token";

/// The key the CSRF tokens are derived under (from the master key).
const CSRF_KEY_LABEL: &[u8] = b"countersign/v1/admin-csrf";

/// An admin acting through a live session: who, in what role, and which session.
#[derive(Debug, Clone)]
pub struct AdminPrincipal {
    pub id: AdminId,
    pub name: String,
    pub role: Role,
    /// SHA-256 of the session cookie: names the session without holding its secret.
    pub session_hash: Vec<u8>,
    /// The idle deadline to move the session to, when a minute has passed since the last move
    /// ([`AdminSessions::touch`], once the request has passed every check).
    touch_to: Option<OffsetDateTime>,
}

impl AdminPrincipal {
    pub fn actor(&self) -> Actor {
        Actor::Admin { id: self.id }
    }
}

/// Why a request carries no usable session.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("sign in to the admin plane first")]
    Missing,
    #[error("the admin session has ended; sign in again")]
    Expired,
    #[error("the CSRF token is missing or is not this session's")]
    Csrf,
    #[error("this action needs a fresh passkey assertion (step-up)")]
    StepUpRequired,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A freshly minted session: the cookie value (shown to the browser once) and its CSRF token.
#[derive(Debug)]
pub struct StartedSession {
    pub token: SecretString,
    pub csrf: String,
}

#[derive(Debug)]
pub struct AdminSessions {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    csrf_key: hmac::Key,
    times: SessionTimes,
}

/// SHA-256 of a presented secret (session cookie, bootstrap token, ceremony cookie).
pub fn secret_hash(secret: &str) -> Vec<u8> {
    digest::digest(&digest::SHA256, secret.as_bytes()).as_ref().to_vec()
}

/// 256 random bits, base64url: a session cookie, a bootstrap token, a ceremony binding.
pub fn random_secret() -> Result<SecretString, ring::error::Unspecified> {
    let mut bytes = [0u8; 32];
    SystemRandom::new().fill(&mut bytes)?;
    Ok(SecretString::from(URL_SAFE_NO_PAD.encode(bytes)))
}

impl AdminSessions {
    pub fn new(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        master: &MasterKey,
        times: SessionTimes,
    ) -> Self {
        let csrf_key = hmac::Key::new(hmac::HMAC_SHA256, &master.derive_key(CSRF_KEY_LABEL));
        Self { store, clock, csrf_key, times }
    }

    pub fn times(&self) -> SessionTimes {
        self.times
    }

    /// Mints a new session for `admin`, who has just proved a passkey. Never adopts a value the
    /// browser brought (session fixation): the value is always new.
    pub async fn start(&self, admin: &AdminRecord, user_agent: &str) -> Result<StartedSession, SessionError> {
        if admin.status != AdminStatus::Active {
            return Err(SessionError::Missing);
        }
        let token =
            random_secret().map_err(|_| SessionError::Store(StoreError::Corrupt("no randomness".into())))?;
        let now = self.clock.now();
        let session = AdminSessionRecord {
            id_hash: secret_hash(token.expose_secret()),
            admin_id: admin.id,
            created_at: now,
            last_seen_at: now,
            idle_expires_at: now + self.times.idle,
            absolute_expires_at: now + self.times.absolute,
            step_up_at: None,
            revoked_at: None,
            user_agent: user_agent.chars().take(256).collect(),
        };
        let audit = AuditEvent::new(
            now,
            Actor::Admin { id: admin.id },
            Action::AdminSignedIn,
            Subject::Admin(admin.id),
        )
        .with_details(json!({ "role": admin.role.as_str() }));
        self.store.create_admin_session(&session, audit).await?;
        let csrf = self.csrf_token(token.expose_secret());
        Ok(StartedSession { token, csrf })
    }

    /// The admin a session cookie names, if the session is live and its admin active. Writes
    /// nothing: a request that passes its checks then calls [`Self::touch`].
    pub async fn authenticate(&self, token: &str) -> Result<AdminPrincipal, SessionError> {
        let hash = secret_hash(token);
        let Some((session, admin)) = self.store.admin_session(&hash).await? else {
            return Err(SessionError::Missing);
        };
        let now = self.clock.now();
        if !is_live(&session, &admin, now) {
            return Err(SessionError::Expired);
        }
        let touch_to = (now - session.last_seen_at >= self.times.touch_every)
            .then(|| (now + self.times.idle).min(session.absolute_expires_at));
        Ok(AdminPrincipal { id: admin.id, name: admin.name, role: admin.role, session_hash: hash, touch_to })
    }

    /// Pushes the idle deadline of an admin who is using the session (at most one write a
    /// minute). Only after the request passed its CSRF and role checks: a refused request, or a
    /// stream left open, does not keep a session alive.
    pub async fn touch(&self, principal: &AdminPrincipal) -> Result<(), SessionError> {
        if let Some(idle) = principal.touch_to {
            let now = self.clock.now();
            self.store
                .touch_admin_session(&principal.session_hash, now, idle, now - self.times.touch_every)
                .await?;
        }
        Ok(())
    }

    /// Whether the session `session_hash` names is still live, without touching it: a live
    /// stream re-checks with this, so an open tab does not keep a session alive.
    pub async fn still_live(&self, session_hash: &[u8]) -> Result<bool, SessionError> {
        let found = self.store.admin_session(session_hash).await?;
        Ok(found.is_some_and(|(session, admin)| is_live(&session, &admin, self.clock.now())))
    }

    /// The CSRF token of a session: an HMAC of its cookie value, so it needs no storage, changes
    /// with every session and dies with it.
    pub fn csrf_token(&self, token: &str) -> String {
        URL_SAFE_NO_PAD.encode(hmac::sign(&self.csrf_key, token.as_bytes()).as_ref())
    }

    /// Whether `presented` is the CSRF token of the session `token` names (constant time).
    pub fn csrf_matches(&self, token: &str, presented: &str) -> bool {
        let expected = self.csrf_token(token);
        expected.len() == presented.len() && bool::from(expected.as_bytes().ct_eq(presented.as_bytes()))
    }

    /// Ends the principal's own session.
    pub async fn sign_out(&self, principal: &AdminPrincipal) -> Result<(), SessionError> {
        let now = self.clock.now();
        let audit =
            AuditEvent::new(now, principal.actor(), Action::AdminSignedOut, Subject::Admin(principal.id));
        self.store.revoke_admin_session(&principal.session_hash, now, audit).await?;
        Ok(())
    }

    /// Records that the principal proved a passkey again just now, for `action` only.
    pub async fn record_step_up(
        &self,
        principal: &AdminPrincipal,
        action: &StepUpAction,
    ) -> Result<(), SessionError> {
        let now = self.clock.now();
        let audit =
            AuditEvent::new(now, principal.actor(), Action::AdminSteppedUp, Subject::Admin(principal.id))
                .with_details(json!({ "for": action.as_str() }));
        match self.store.set_admin_step_up(&principal.session_hash, now, action.as_str(), audit).await {
            Ok(()) => Ok(()),
            Err(StoreError::NotFound) => Err(SessionError::Expired),
            Err(error) => Err(error.into()),
        }
    }

    /// Spends the principal's step-up on `action`: refused unless the admin proved a passkey
    /// for this very action within the step-up window and has not spent that proof yet.
    pub async fn consume_step_up(
        &self,
        principal: &AdminPrincipal,
        action: &StepUpAction,
    ) -> Result<(), SessionError> {
        let fresh_since = self.clock.now() - self.times.step_up;
        if self.store.consume_admin_step_up(&principal.session_hash, fresh_since, action.as_str()).await? {
            Ok(())
        } else {
            Err(SessionError::StepUpRequired)
        }
    }
}

/// Not revoked, within both timeouts, and its admin still active.
fn is_live(session: &AdminSessionRecord, admin: &AdminRecord, now: time::OffsetDateTime) -> bool {
    session.revoked_at.is_none()
        && now < session.idle_expires_at
        && now < session.absolute_expires_at
        && admin.status == AdminStatus::Active
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sessions_key(master: &[u8; 32]) -> hmac::Key {
        hmac::Key::new(hmac::HMAC_SHA256, &MasterKey::from_bytes(master).derive_key(CSRF_KEY_LABEL))
    }

    #[test]
    fn csrf_tokens_are_per_session_and_per_master_key() {
        let a = URL_SAFE_NO_PAD.encode(hmac::sign(&sessions_key(&[1; 32]), b"session-a").as_ref());
        let b = URL_SAFE_NO_PAD.encode(hmac::sign(&sessions_key(&[1; 32]), b"session-b").as_ref());
        let other_server = URL_SAFE_NO_PAD.encode(hmac::sign(&sessions_key(&[2; 32]), b"session-a").as_ref());
        assert_ne!(a, b);
        assert_ne!(a, other_server);
        assert_eq!(a.len(), 43);
    }

    #[test]
    fn secrets_are_fresh_and_hashes_fixed_length() {
        let one = random_secret().unwrap();
        let two = random_secret().unwrap();
        assert_ne!(one.expose_secret(), two.expose_secret());
        assert_eq!(one.expose_secret().len(), 43);
        assert_eq!(secret_hash(one.expose_secret()).len(), 32);
        assert_ne!(secret_hash("a"), secret_hash("b"));
    }
}
