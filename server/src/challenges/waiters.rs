//! Wake-ups for long-polling apps: one slot per challenge somebody is waiting on.
//!
//! Within an instance the deciding request hands its committed record to the waiters
//! ([`Waiters::decided`]), so they answer without reading it back. Across instances the store's
//! change feed (PostgreSQL LISTEN/NOTIFY) calls [`Waiters::notify`]: a hint only, the waiter
//! re-reads the database, and re-checks periodically in case a hint was lost.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

use crate::ids::ChallengeId;
use crate::store::ChallengeRecord;

#[derive(Debug, Default)]
pub struct Waiters {
    by_challenge: Mutex<HashMap<ChallengeId, Arc<Slot>>>,
}

#[derive(Debug, Default)]
pub struct Slot {
    pub notify: Notify,
    /// The committed outcome, when this instance made the decision.
    decided: Mutex<Option<ChallengeRecord>>,
}

/// A registration; dropping it removes the entry when no one else waits on that challenge.
#[derive(Debug)]
pub struct Waiter<'a> {
    waiters: &'a Waiters,
    id: ChallengeId,
    pub slot: Arc<Slot>,
}

impl Waiter<'_> {
    /// The decided record this instance committed, if it did.
    pub fn decided(&self) -> Option<ChallengeRecord> {
        self.slot.decided.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

impl Waiters {
    pub fn register(&self, id: ChallengeId) -> Waiter<'_> {
        let mut map = self.by_challenge.lock().unwrap_or_else(|p| p.into_inner());
        let slot = Arc::clone(map.entry(id).or_default());
        Waiter { waiters: self, id, slot }
    }

    /// A hint that the challenge changed: waiters re-read it.
    pub fn notify(&self, id: ChallengeId) {
        let map = self.by_challenge.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(slot) = map.get(&id) {
            slot.notify.notify_waiters();
        }
    }

    /// This instance committed `record`'s transition out of `pending`: waiters take it as is.
    pub fn decided(&self, record: &ChallengeRecord) {
        let map = self.by_challenge.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(slot) = map.get(&record.id) {
            *slot.decided.lock().unwrap_or_else(|p| p.into_inner()) = Some(record.clone());
            slot.notify.notify_waiters();
        }
    }

    /// Number of challenges with at least one waiter (for metrics and tests).
    pub fn len(&self) -> usize {
        self.by_challenge.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Drop for Waiter<'_> {
    fn drop(&mut self) {
        let mut map = self.waiters.by_challenge.lock().unwrap_or_else(|p| p.into_inner());
        // Ours plus the map's: nobody else is waiting.
        if Arc::strong_count(&self.slot) <= 2 {
            map.remove(&self.id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn notify_wakes_registered_waiters_and_entries_are_cleaned_up() {
        let waiters = Waiters::default();
        let id = ChallengeId::random();
        {
            let waiter = waiters.register(id);
            let notified = waiter.slot.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            waiters.notify(id);
            tokio::time::timeout(std::time::Duration::from_secs(1), notified).await.unwrap();
            assert_eq!(waiters.len(), 1);
        }
        assert!(waiters.is_empty(), "the entry goes with the last waiter");
        waiters.notify(id); // nobody waiting: a no-op
    }

    #[tokio::test]
    async fn a_decision_made_here_reaches_waiters_with_its_record() {
        let waiters = Waiters::default();
        let id = ChallengeId::random();
        let waiter = waiters.register(id);
        assert!(waiter.decided().is_none());
        let notified = waiter.slot.notify.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let now = time::OffsetDateTime::UNIX_EPOCH;
        let record = ChallengeRecord {
            id,
            ..crate::challenges::model::test_record(crate::challenges::model::ChallengeState::Approved, now)
        };
        waiters.decided(&record);
        tokio::time::timeout(std::time::Duration::from_secs(1), notified).await.unwrap();
        assert_eq!(waiter.decided(), Some(record));
        waiters.decided(&ChallengeRecord { id: ChallengeId::random(), ..waiter.decided().unwrap() });
        assert_eq!(waiter.decided().map(|c| c.id), Some(id), "another challenge's decision is not ours");
    }
}
