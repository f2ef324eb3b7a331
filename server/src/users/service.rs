//! Provisioning and looking up users.

use std::sync::Arc;

use serde_json::json;

use super::model::{self, UserInputError};
use crate::audit::{Action, Actor, AuditEvent, Subject};
use crate::clock::Clock;
use crate::ids::UserId;
use crate::store::{Conflict, FactorReset, StoreError, UserRecord, UserStore};

#[derive(Debug, thiserror::Error)]
pub enum UserError {
    #[error(transparent)]
    Input(#[from] UserInputError),
    #[error("a user with that username already exists")]
    Exists,
    #[error("no such user")]
    NotFound,
    /// Deleting a user held for admin review would lift the hold (the name could be created
    /// again, clean).
    #[error(
        "this user's push is held for admin review (a \"not me\" report or a hard lock); an admin must review it before the user can be deleted"
    )]
    HeldForReview,
    #[error(transparent)]
    Store(StoreError),
}

/// Users as apps manage them over `/v1/users`: the operations below, with the store and clock
/// they run on.
#[derive(Debug)]
pub struct UserService {
    store: Arc<dyn UserStore>,
    clock: Arc<dyn Clock>,
}

impl UserService {
    pub fn new(store: Arc<dyn UserStore>, clock: Arc<dyn Clock>) -> Self {
        Self { store, clock }
    }

    pub async fn create(&self, actor: Actor, new: NewUser) -> Result<UserRecord, UserError> {
        create_user(self.store.as_ref(), self.clock.as_ref(), actor, new).await
    }

    pub async fn find(&self, username: &str) -> Result<UserRecord, UserError> {
        find_user(self.store.as_ref(), username).await
    }

    pub async fn delete(&self, actor: Actor, username: &str) -> Result<u64, UserError> {
        delete_user(self.store.as_ref(), self.clock.as_ref(), actor, username).await
    }

    pub async fn reset_factors(&self, actor: Actor, username: &str) -> Result<FactorReset, UserError> {
        reset_factors(self.store.as_ref(), self.clock.as_ref(), actor, username).await
    }

    /// An app raises the user's requirement to passkey-only (idempotent). Apps cannot lower it:
    /// a stolen app key must not reopen push to a privileged user.
    pub async fn require_passkey(&self, actor: Actor, username: &str) -> Result<UserRecord, UserError> {
        set_passkey_required(self.store.as_ref(), self.clock.as_ref(), actor, username, Some(true)).await
    }
}

/// Sets a user's passkey policy (`None`: follow the privilege), audited with what it was and
/// what it is. The REST API only raises it ([`UserService::require_passkey`]); the operator's
/// CLI may set any value.
pub async fn set_passkey_required(
    store: &dyn UserStore,
    clock: &dyn Clock,
    actor: Actor,
    username: &str,
    required: Option<bool>,
) -> Result<UserRecord, UserError> {
    let user = find_user(store, username).await?;
    if user.passkey_required == required {
        return Ok(user);
    }
    let now = clock.now();
    let changed = UserRecord { passkey_required: required, ..user.clone() };
    let event = AuditEvent::new(now, actor, Action::UserPolicyChanged, Subject::User(user.id)).with_details(json!({
        "username": user.username,
        "passkey_required": { "was": user.passkey_required, "is": required, "effective": model::passkey_required(&changed) },
    }));
    store.set_passkey_required(user.id, required, event).await.map_err(|e| match e {
        StoreError::NotFound => UserError::NotFound,
        other => UserError::Store(other),
    })?;
    Ok(changed)
}

#[derive(Debug, Clone)]
pub struct NewUser {
    pub username: String,
    pub display_name: Option<String>,
    pub is_privileged: bool,
    /// `true` requires a passkey even if the user is not privileged; `false` leaves it to the
    /// privilege. (Apps can only raise the requirement; lowering it is an operator's act.)
    pub passkey_required: bool,
}

pub async fn create_user(
    store: &dyn UserStore,
    clock: &dyn Clock,
    actor: Actor,
    new: NewUser,
) -> Result<UserRecord, UserError> {
    let username = model::normalize_username(&new.username)?;
    if let Some(name) = &new.display_name {
        model::validate_display_name(name)?;
    }
    let now = clock.now();
    let user = UserRecord {
        id: UserId::random(),
        username,
        display_name: new.display_name,
        is_privileged: new.is_privileged,
        passkey_required: new.passkey_required.then_some(true),
        created_at: now,
    };
    let event =
        AuditEvent::new(now, actor, Action::UserCreated, Subject::User(user.id)).with_details(json!({
            "username": user.username,
            "privileged": user.is_privileged,
            "passkey_required": model::passkey_required(&user),
        }));
    store.create_user(user, event).await.map_err(|e| match e {
        StoreError::Conflict(Conflict::Username) => UserError::Exists,
        other => UserError::Store(other),
    })
}

pub async fn find_user(store: &dyn UserStore, username: &str) -> Result<UserRecord, UserError> {
    // An impossible username cannot exist: answer as for any unknown user.
    let Ok(username) = model::normalize_username(username) else {
        return Err(UserError::NotFound);
    };
    store.user_by_username(&username).await.map_err(UserError::Store)?.ok_or(UserError::NotFound)
}

/// Deletes a user: every device revoked, pending enrollments voided, username freed; the id and
/// the audit trail remain.
/// Takes every factor from a user (devices, passkeys, pending enrollments and links), keeping
/// the user: they enroll again through a new link. Idempotent: a second reset revokes nothing.
pub async fn reset_factors(
    store: &dyn UserStore,
    clock: &dyn Clock,
    actor: Actor,
    username: &str,
) -> Result<FactorReset, UserError> {
    let user = find_user(store, username).await?;
    let now = clock.now();
    let event = AuditEvent::new(now, actor, Action::UserFactorsReset, Subject::User(user.id))
        .with_details(json!({ "username": user.username }));
    store.reset_user_factors(user.id, now, event).await.map_err(|e| match e {
        StoreError::NotFound => UserError::NotFound,
        other => UserError::Store(other),
    })
}

pub async fn delete_user(
    store: &dyn UserStore,
    clock: &dyn Clock,
    actor: Actor,
    username: &str,
) -> Result<u64, UserError> {
    let user = find_user(store, username).await?;
    let now = clock.now();
    let event = AuditEvent::new(now, actor, Action::UserDeleted, Subject::User(user.id))
        .with_details(json!({ "username": user.username }));
    store.delete_user(user.id, now, event).await.map_err(|e| match e {
        StoreError::NotFound => UserError::NotFound,
        StoreError::PreconditionFailed(crate::store::Precondition::HeldForReview) => UserError::HeldForReview,
        other => UserError::Store(other),
    })
}
