//! The live alert feed under the dashboard's server-sent events: one task per instance watches
//! the `alerts` table (shared by every instance on PostgreSQL) and publishes the newest alert id
//! to the streams of this instance, which then read the alerts after their own cursor
//! ([`DashboardStore::alerts_after`]).
//!
//! Polling, not NOTIFY: the alert inserts on the prompt hot path stay untouched, and an instance
//! nobody watches does no work at all: the task polls (one primary-key probe a second) only
//! while a stream is subscribed.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, watch};

use crate::store::DashboardStore;

/// How often the newest alert id is read while someone watches.
pub const POLL_INTERVAL: Duration = Duration::from_secs(1);

/// Publishes the newest alert id to this instance's subscribers.
#[derive(Debug)]
pub struct AlertFeed {
    store: Arc<dyn DashboardStore>,
    interval: Duration,
    newest: watch::Sender<i64>,
    /// Wakes the idle task when the first subscriber arrives.
    subscribed: Notify,
}

impl AlertFeed {
    /// A feed polling every [`POLL_INTERVAL`] (tests may ask for a shorter `interval`).
    pub fn new(store: Arc<dyn DashboardStore>, interval: Duration) -> Arc<Self> {
        let (newest, _) = watch::channel(0);
        Arc::new(Self { store, interval, newest, subscribed: Notify::new() })
    }

    /// A receiver of the newest alert id (0 until the first poll finds one). The caller keeps
    /// its own cursor and reads `alerts_after(cursor)` whenever the value changes; dropping the
    /// receiver unsubscribes, and the feed stops polling once nobody is left.
    pub fn subscribe(&self) -> watch::Receiver<i64> {
        let receiver = self.newest.subscribe();
        self.subscribed.notify_one();
        receiver
    }

    /// Subscribers now (for tests and metrics).
    pub fn subscribers(&self) -> usize {
        self.newest.receiver_count()
    }

    /// Runs the feed until the task is aborted (with the other background tasks at shutdown).
    pub fn spawn(self: Arc<Self>) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            loop {
                if self.newest.receiver_count() == 0 {
                    // A permit stored by a `subscribe` since the last check wakes this at once.
                    self.subscribed.notified().await;
                    continue;
                }
                self.poll_once().await;
                tokio::time::sleep(self.interval).await;
            }
        })
    }

    /// Reads the newest alert id and publishes it if it moved (a failed read is retried on the
    /// next tick: the subscribers just hear nothing new meanwhile).
    async fn poll_once(&self) {
        match self.store.newest_alert_id().await {
            Ok(id) => {
                self.newest.send_if_modified(|newest| {
                    let moved = id > *newest;
                    if moved {
                        *newest = id;
                    }
                    moved
                });
            }
            Err(error) => tracing::warn!(%error, "the alert feed could not read the newest alert"),
        }
    }
}
