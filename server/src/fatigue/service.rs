//! The fatigue signals apps read (standing, users under attack, a user's timeline) and the
//! changes to a user's push standing an app or an admin asks for.
//!
//! The ladder's rules live in `model`, what the signals mean in `report`; here they are read
//! and applied. An unfreeze is a compare-and-set on the standing's version
//! (`FatigueStore::change_push_state`): a decision that lands at the same moment — a wrong number
//! typed while an admin unfreezes — moves the version, so the unfreeze is decided again from the
//! fresh standing instead of overwriting it.

use std::sync::Arc;

use serde_json::json;

use super::model::{self, Policy, PushState};
use super::report::{self, PushStanding, TIMELINE_LEN, Timeline, UserUnderAttack};
use crate::audit::{Action, Actor, AuditEvent, Subject};
use crate::clock::Clock;
use crate::store::{Store, StoreError, UserRecord};
use crate::users::service::{UserError, find_user};

/// At most this many users in the list of users under attack.
const TROUBLED_USERS: u32 = 200;

#[derive(Debug, thiserror::Error)]
pub enum FatigueError {
    #[error("no such user")]
    UserNotFound,
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<UserError> for FatigueError {
    fn from(error: UserError) -> Self {
        match error {
            UserError::Store(e) => FatigueError::Store(e),
            // Looking a user up fails only as absent (any impossible name included) or on the store.
            UserError::NotFound | UserError::Input(_) | UserError::Exists => FatigueError::UserNotFound,
        }
    }
}

#[derive(Debug)]
pub struct FatigueService {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    policy: Policy,
}

impl FatigueService {
    pub fn new(store: Arc<dyn Store>, clock: Arc<dyn Clock>, policy: Policy) -> Self {
        Self { store, clock, policy }
    }

    /// Users whose push standing is not clean, worst first.
    pub async fn users_under_attack(&self) -> Result<Vec<UserUnderAttack>, FatigueError> {
        let users = self.store.troubled_users(TROUBLED_USERS).await?;
        Ok(report::worst_first(users, self.clock.now(), &self.policy))
    }

    /// The user's standing and recent prompts with their warning flags, newest first.
    pub async fn timeline(&self, username: &str) -> Result<Timeline, FatigueError> {
        let user = find_user(self.store.as_ref(), username).await?;
        let len = TIMELINE_LEN as u32;
        let challenges = self.store.recent_challenges(user.id, len).await?;
        let push = self.store.push_state(user.id).await?;
        // Prompts the defence refused never became challenges; the audit trail has them. Chain the
        // latest first; if chaining is stalled (it logs why), show what is chained.
        if let Err(error) = crate::audit::flush(self.store.as_ref()).await {
            tracing::warn!(%error, "audit chaining failed before reading the timeline");
        }
        let refused =
            self.store.audit_events_about(&Subject::User(user.id), Action::PromptRefused, len).await?;
        let standing = self.standing_of(&push);
        Ok(report::timeline(user.username, standing, &challenges, &refused))
    }

    /// Lifts the user's freezes and locks (audited with what was lifted); returns the new
    /// standing.
    pub async fn unfreeze(&self, actor: Actor, username: &str) -> Result<PushStanding, FatigueError> {
        let user = find_user(self.store.as_ref(), username).await?;
        let after = self.apply_unfreeze(actor, &user).await?;
        Ok(self.standing_of(&after))
    }

    async fn apply_unfreeze(&self, actor: Actor, user: &UserRecord) -> Result<PushState, StoreError> {
        let now = self.clock.now();
        let change = |before: &PushState| {
            let event = AuditEvent::new(now, actor.clone(), Action::PushUnfrozen, Subject::User(user.id))
                .with_details(json!({
                    "username": user.username,
                    "was": {
                        "failures": before.consecutive_failures,
                        "reason": before.reason,
                        "hard_locked": before.hard_locked,
                    },
                }));
            (model::unfreeze(before.clone()), event)
        };
        let (_, after) = self.store.change_push_state(user.id, now, &change).await?;
        Ok(after)
    }

    fn standing_of(&self, push: &PushState) -> PushStanding {
        report::standing(push, self.clock.now(), &self.policy)
    }
}
