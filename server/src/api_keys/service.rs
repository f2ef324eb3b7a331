//! Creating, revoking and checking app API keys.

use ring::rand::SystemRandom;
use secrecy::SecretString;
use serde_json::json;

use super::model::{self, Scope, Scopes};
use crate::audit::{Action, Actor, AuditEvent, Subject};
use crate::clock::Clock;
use crate::ids::AppId;
use crate::store::{AppRecord, AppStore, Conflict, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum AppAdminError {
    #[error("app names are 1-64 characters of letters, digits, '.', '_' and '-'")]
    InvalidName,
    #[error("an app needs at least one scope")]
    NoScopes,
    #[error("an app named `{0}` already exists")]
    NameTaken(String),
    #[error("no active app named `{0}`")]
    NotFound(String),
    #[error("the system random number generator failed")]
    Random,
    #[error(transparent)]
    Store(StoreError),
}

/// Registers an app and returns its key; the plaintext exists only in the return value.
pub async fn create_app(
    store: &dyn AppStore,
    clock: &dyn Clock,
    actor: Actor,
    name: &str,
    scopes: Scopes,
) -> Result<(AppRecord, SecretString), AppAdminError> {
    if !model::is_valid_app_name(name) {
        return Err(AppAdminError::InvalidName);
    }
    if scopes.is_empty() {
        return Err(AppAdminError::NoScopes);
    }
    let key = model::generate(&SystemRandom::new()).map_err(|_| AppAdminError::Random)?;
    let now = clock.now();
    let app = AppRecord {
        id: AppId::random(),
        name: name.to_owned(),
        key_id: key.key_id,
        key_hash: key.hash.to_vec(),
        scopes,
        created_at: now,
        revoked_at: None,
    };
    let event = AuditEvent::new(now, actor, Action::AppCreated, Subject::App(app.id))
        .with_details(json!({ "name": app.name, "scopes": app.scopes.to_string(), "key_id": app.key_id }));
    let created = store.create_app(app, event).await.map_err(|e| match e {
        StoreError::Conflict(Conflict::AppName) => AppAdminError::NameTaken(name.to_owned()),
        other => AppAdminError::Store(other),
    })?;
    Ok((created, key.plaintext))
}

/// Revokes an app's key at once; later requests with it get 401.
pub async fn revoke_app(
    store: &dyn AppStore,
    clock: &dyn Clock,
    actor: Actor,
    name: &str,
) -> Result<AppRecord, AppAdminError> {
    let app = match store.app_by_name(name).await.map_err(AppAdminError::Store)? {
        Some(app) if app.revoked_at.is_none() => app,
        _ => return Err(AppAdminError::NotFound(name.to_owned())),
    };
    let now = clock.now();
    let event = AuditEvent::new(now, actor, Action::AppRevoked, Subject::App(app.id))
        .with_details(json!({ "name": app.name, "key_id": app.key_id }));
    store.revoke_app(app.id, now, event).await.map_err(|e| match e {
        StoreError::NotFound => AppAdminError::NotFound(name.to_owned()),
        other => AppAdminError::Store(other),
    })
}

/// An app whose key checked out, as handlers see it.
#[derive(Debug, Clone)]
pub struct AuthenticatedApp {
    pub id: AppId,
    pub name: String,
    pub scopes: Scopes,
}

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("this endpoint needs an API key: send `Authorization: Bearer csk_…`")]
    Missing,
    #[error("the Authorization header is not `Bearer` followed by a Countersign API key")]
    Malformed,
    #[error("the API key is not valid")]
    Invalid,
    #[error("the API key has been revoked")]
    Revoked,
    #[error("the API key lacks the `{0}` scope")]
    InsufficientScope(Scope),
    #[error(transparent)]
    Store(StoreError),
}

impl AuthenticatedApp {
    pub fn require(&self, scope: Scope) -> Result<(), AuthError> {
        if self.scopes.contains(scope) { Ok(()) } else { Err(AuthError::InsufficientScope(scope)) }
    }

    pub fn actor(&self) -> Actor {
        Actor::App { id: self.id, name: self.name.clone() }
    }
}

/// Checks an `Authorization` header value against the stored keys.
pub async fn authenticate(
    store: &dyn AppStore,
    authorization: Option<&str>,
) -> Result<AuthenticatedApp, AuthError> {
    let header = authorization.ok_or(AuthError::Missing)?;
    let (scheme, presented) = header.split_once(' ').ok_or(AuthError::Malformed)?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(AuthError::Malformed);
    }
    let presented = presented.trim();
    let key_id = model::parse_key_id(presented).ok_or(AuthError::Malformed)?;
    let app = store.app_by_key_id(key_id).await.map_err(AuthError::Store)?;
    // Hash even when the id is unknown, so both failures take the same time.
    let stored_hash = app.as_ref().map_or(&[0u8; 32][..], |a| a.key_hash.as_slice());
    let matches = model::key_matches(presented, stored_hash);
    match app {
        Some(app) if matches && app.revoked_at.is_some() => Err(AuthError::Revoked),
        Some(app) if matches => Ok(AuthenticatedApp { id: app.id, name: app.name, scopes: app.scopes }),
        _ => Err(AuthError::Invalid),
    }
}

/// The app a requester that holds no API key acts as in the challenge machinery (an OIDC
/// client, a Keycloak realm): no scopes, and a key made only to fill the row, never shown to
/// anyone. With its `app.created` event (`details` say whose app it is).
pub fn keyless_app(
    name: String,
    details: serde_json::Value,
    now: time::OffsetDateTime,
) -> Result<(AppRecord, AuditEvent), model::RandomFailure> {
    let key = model::generate(&SystemRandom::new())?;
    let app = AppRecord {
        id: AppId::random(),
        name,
        key_id: key.key_id,
        key_hash: key.hash.to_vec(),
        scopes: Scopes::default(),
        created_at: now,
        revoked_at: None,
    };
    let mut details = details;
    details["name"] = json!(app.name);
    details["scopes"] = json!("");
    let event =
        AuditEvent::new(now, Actor::System, Action::AppCreated, Subject::App(app.id)).with_details(details);
    Ok((app, event))
}
