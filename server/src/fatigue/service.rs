//! Changes to a user's push standing asked for by an app or an admin.
//!
//! The ladder's rules live in `model`; here they are applied under the user's lock
//! (`Store::change_push_state`), so a decision that lands at the same moment — a wrong number
//! typed while an admin unfreezes — is read, not overwritten.

use serde_json::json;

use super::model::{self, PushState};
use crate::audit::{Action, Actor, AuditEvent, Subject};
use crate::clock::Clock;
use crate::store::{Store, StoreError, UserRecord};

/// Lifts the user's freezes and locks (audited with what was lifted); returns the new standing.
pub async fn unfreeze(
    store: &dyn Store,
    clock: &dyn Clock,
    actor: Actor,
    user: &UserRecord,
) -> Result<PushState, StoreError> {
    let now = clock.now();
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
    let (_, after) = store.change_push_state(user.id, now, &change).await?;
    Ok(after)
}
