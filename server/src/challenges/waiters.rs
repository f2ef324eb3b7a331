//! Wake-ups for long-polling apps: one `Notify` per challenge somebody is waiting on.
//!
//! Within an instance the deciding request notifies directly; across instances the store's
//! change feed (PostgreSQL LISTEN/NOTIFY) calls [`Waiters::notify`]. Either way it is a hint:
//! the waiter re-reads the database, and re-checks periodically in case a hint was lost.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

use crate::ids::ChallengeId;

#[derive(Debug, Default)]
pub struct Waiters {
    by_challenge: Mutex<HashMap<ChallengeId, Arc<Notify>>>,
}

/// A registration; dropping it removes the entry when no one else waits on that challenge.
#[derive(Debug)]
pub struct Waiter<'a> {
    waiters: &'a Waiters,
    id: ChallengeId,
    pub notify: Arc<Notify>,
}

impl Waiters {
    pub fn register(&self, id: ChallengeId) -> Waiter<'_> {
        let mut map = self.by_challenge.lock().unwrap_or_else(|p| p.into_inner());
        let notify = Arc::clone(map.entry(id).or_default());
        Waiter { waiters: self, id, notify }
    }

    pub fn notify(&self, id: ChallengeId) {
        let map = self.by_challenge.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(notify) = map.get(&id) {
            notify.notify_waiters();
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
        if Arc::strong_count(&self.notify) <= 2 {
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
            let notified = waiter.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            waiters.notify(id);
            tokio::time::timeout(std::time::Duration::from_secs(1), notified).await.unwrap();
            assert_eq!(waiters.len(), 1);
        }
        assert!(waiters.is_empty(), "the entry goes with the last waiter");
        waiters.notify(id); // nobody waiting: a no-op
    }
}
