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

use super::model::{self, PushState, Unfreezer};
use super::policy::PolicyHandle;
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
    /// The user reported a prompt as "not me" or is hard-locked: only an admin's reviewed
    /// decision (a four-eyes request) lifts that.
    #[error(
        "this user's push is held for admin review (a \"not me\" report or a hard lock): an admin must approve the unfreeze"
    )]
    AdminReviewRequired,
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<UserError> for FatigueError {
    fn from(error: UserError) -> Self {
        match error {
            UserError::Store(e) => FatigueError::Store(e),
            UserError::HeldForReview => FatigueError::AdminReviewRequired,
            // Looking a user up fails only as absent (any impossible name included) or on the store.
            UserError::NotFound | UserError::Input(_) | UserError::Exists => FatigueError::UserNotFound,
        }
    }
}

#[derive(Debug)]
pub struct FatigueService {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    policy: PolicyHandle,
}

impl FatigueService {
    pub fn new(store: Arc<dyn Store>, clock: Arc<dyn Clock>, policy: PolicyHandle) -> Self {
        Self { store, clock, policy }
    }

    /// The policy in force, shared with the other services.
    pub fn policy(&self) -> &PolicyHandle {
        &self.policy
    }

    /// Users whose push standing is not clean, worst first.
    pub async fn users_under_attack(&self) -> Result<Vec<UserUnderAttack>, FatigueError> {
        let users = self.store.troubled_users(TROUBLED_USERS).await?;
        Ok(report::worst_first(users, self.clock.now(), &self.policy.current()))
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

    /// Lifts a timed freeze, as an app may (`Unfreezer::App`): the "prove a passkey" freeze, a
    /// "not me" quarantine and a hard lock are refused with `AdminReviewRequired` (the refusal
    /// audited) and stay, and so do the ladder's counts. Returns the new standing.
    pub async fn unfreeze(&self, actor: Actor, username: &str) -> Result<PushStanding, FatigueError> {
        self.unfreeze_by(actor, username, Unfreezer::App).await
    }

    /// Lifts a freeze as `by` may: one admin everything but a "not me" quarantine, an approved
    /// four-eyes request (`Unfreezer::Reviewed`) everything.
    pub async fn unfreeze_by(
        &self,
        actor: Actor,
        username: &str,
        by: Unfreezer,
    ) -> Result<PushStanding, FatigueError> {
        let user = find_user(self.store.as_ref(), username).await?;
        let (lifted, after) = self.apply_unfreeze(actor, &user, by).await?;
        if !lifted {
            return Err(FatigueError::AdminReviewRequired);
        }
        Ok(self.standing_of(&after))
    }

    /// An approved four-eyes request's unfreeze: lifts everything.
    pub async fn unfreeze_reviewed(
        &self,
        actor: Actor,
        username: &str,
    ) -> Result<PushStanding, FatigueError> {
        self.unfreeze_by(actor, username, Unfreezer::Reviewed).await
    }

    /// Decided on the standing the compare-and-set writes over: a report landing between a read
    /// and the unfreeze is never lifted by an unfreeze that may not lift it. Returns whether the
    /// freeze was lifted, and the standing after.
    async fn apply_unfreeze(
        &self,
        actor: Actor,
        user: &UserRecord,
        by: Unfreezer,
    ) -> Result<(bool, PushState), StoreError> {
        let now = self.clock.now();
        let change = |before: &PushState| match model::unfreeze_by(before, by) {
            None => {
                let event =
                    AuditEvent::new(now, actor.clone(), Action::UnfreezeRefused, Subject::User(user.id))
                        .with_details(json!({
                            "username": user.username,
                            "needs_strong_factor": before.needs_strong_factor,
                            "needs_admin_review": before.needs_admin_review,
                            "hard_locked": before.hard_locked,
                        }));
                (before.clone(), event)
            }
            Some(after) => {
                let event = AuditEvent::new(now, actor.clone(), Action::PushUnfrozen, Subject::User(user.id))
                    .with_details(json!({
                        "username": user.username,
                        "was": {
                            "failures": before.consecutive_failures,
                            "reason": before.reason,
                            "hard_locked": before.hard_locked,
                        },
                    }));
                (after, event)
            }
        };
        let (before, after) = self.store.change_push_state(user.id, now, &change).await?;
        Ok((model::unfreeze_by(&before, by).is_some(), after))
    }

    fn standing_of(&self, push: &PushState) -> PushStanding {
        report::standing(push, self.clock.now(), &self.policy.current())
    }
}
