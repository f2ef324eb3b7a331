//! A user's push standing (the fatigue ladder), refused prompts and security signals.

use async_trait::async_trait;
use time::OffsetDateTime;

use super::{StoreError, UserRecord};
use crate::audit::{AuditEvent, Subject};
use crate::fatigue::model::{Policy, PushState};
use crate::ids::UserId;

/// A change to a user's push standing decided under the user's lock: the new standing and the
/// audit event recording it (see [`FatigueStore::change_push_state`]).
pub type PushStateChange<'a> = &'a (dyn Fn(&PushState) -> (PushState, AuditEvent) + Send + Sync);

#[async_trait]
pub trait FatigueStore: Send + Sync {
    /// The user's push standing (default when nothing happened yet).
    async fn push_state(&self, user: UserId) -> Result<PushState, StoreError>;

    /// Changes the user's push standing under the user's lock: `change` is given the standing
    /// as it is at that moment and returns the new one with the audit event that records it,
    /// both written in the same transaction (so a wrong number racing an unfreeze is never
    /// overwritten by a stale read). Returns the standing before and after.
    async fn change_push_state(
        &self,
        user: UserId,
        now: OffsetDateTime,
        change: PushStateChange<'_>,
    ) -> Result<(PushState, PushState), StoreError>;

    /// Users whose standing is not clean (failures, freezes, locks), worst first.
    async fn troubled_users(&self, limit: u32) -> Result<Vec<(UserRecord, PushState)>, StoreError>;

    /// A prompt for `user` was refused (budget or spray): counts it on the user's standing (the
    /// attack incident), writes `audit`, and raises a `push_bombing` alert when it opens a new
    /// incident — all in one transaction. Returns whether an alert was raised.
    async fn record_refused_prompt(
        &self,
        user: UserId,
        reason: &str,
        now: OffsetDateTime,
        audit: AuditEvent,
        policy: &Policy,
    ) -> Result<bool, StoreError>;

    /// Writes a security signal that changes no state: its audit event and its alert, in one
    /// transaction (e.g. a cloned device key).
    async fn record_signal(
        &self,
        audit: AuditEvent,
        alert: (&str, &Subject, &str),
        now: OffsetDateTime,
    ) -> Result<(), StoreError>;
}
