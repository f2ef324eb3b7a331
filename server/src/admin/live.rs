//! One admin's live stream of alerts (the dashboard's server-sent events): the alerts after the
//! stream's cursor, read whenever this instance's [`super::feed::AlertFeed`] sees a newer one.
//!
//! A stream ends when its session does (re-checked every 30 s and before every delivery,
//! without touching the session's idle timer: an open tab keeps nobody signed in), after 10
//! minutes (the browser reconnects with `Last-Event-ID`), and when the server shuts down. One
//! session holds at most [`STREAMS_PER_SESSION`] open on an instance.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::Stream;
use tokio::sync::watch;
use tokio::time::{Instant, Interval};

use super::AdminPlane;
use super::dashboard::{AlertView, DashboardError, PAGE_LEN};

/// How often a quiet stream re-checks its session.
pub const RECHECK_EVERY: Duration = Duration::from_secs(30);
/// The longest a stream lives; the browser then reconnects where it left off.
pub const MAX_LIFE: Duration = Duration::from_secs(600);
/// Streams one session may hold open at once (a few tabs; not a way to pin server tasks).
pub const STREAMS_PER_SESSION: usize = 5;

/// The streams open on this instance, per session.
#[derive(Debug, Default)]
pub struct StreamSlots(Arc<Mutex<HashMap<Vec<u8>, usize>>>);

/// One open stream's place; given back when the stream is dropped.
#[derive(Debug)]
struct Slot {
    slots: Arc<Mutex<HashMap<Vec<u8>, usize>>>,
    session_hash: Vec<u8>,
}

impl StreamSlots {
    fn take(&self, session_hash: &[u8]) -> Result<Slot, DashboardError> {
        let mut open = self.0.lock().map_err(|_| DashboardError::TooManyStreams)?;
        let count = open.entry(session_hash.to_vec()).or_insert(0);
        if *count >= STREAMS_PER_SESSION {
            return Err(DashboardError::TooManyStreams);
        }
        *count += 1;
        Ok(Slot { slots: Arc::clone(&self.0), session_hash: session_hash.to_vec() })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Ok(mut open) = self.slots.lock()
            && let Some(count) = open.get_mut(&self.session_hash)
        {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.session_hash);
            }
        }
    }
}

struct Live {
    _slot: Slot,
    plane: Arc<AdminPlane>,
    session_hash: Vec<u8>,
    cursor: i64,
    ready: VecDeque<AlertView>,
    /// The last page read was full: more alerts may wait after the cursor.
    more: bool,
    newest: watch::Receiver<i64>,
    shutdown: watch::Receiver<bool>,
    ends_at: Instant,
    recheck: Interval,
}

/// The alerts after `after` (or, without it, those raised from now on) for the session
/// `session_hash`, oldest first, until the stream ends.
pub async fn alerts(
    plane: Arc<AdminPlane>,
    session_hash: Vec<u8>,
    after: Option<i64>,
) -> Result<impl Stream<Item = AlertView> + Send + 'static, DashboardError> {
    let slot = plane.streams.take(&session_hash)?;
    let cursor = match after {
        Some(after) => after,
        None => plane.dashboard.newest_alert_id().await?,
    };
    let mut live = Live {
        _slot: slot,
        newest: plane.feed.subscribe(),
        shutdown: plane.shutdown_signal(),
        session_hash,
        cursor,
        ready: VecDeque::new(),
        more: false,
        ends_at: Instant::now() + MAX_LIFE,
        recheck: tokio::time::interval_at(Instant::now() + RECHECK_EVERY, RECHECK_EVERY),
        plane,
    };
    if after.is_some() {
        // Resuming: what was raised while the browser was away comes first.
        live.read_page().await?;
    }
    Ok(futures_util::stream::unfold(live, |mut live| async move {
        let next = live.next().await?;
        Some((next, live))
    }))
}

impl Live {
    async fn next(&mut self) -> Option<AlertView> {
        loop {
            if let Some(alert) = self.ready.pop_front() {
                return Some(alert);
            }
            if *self.shutdown.borrow() {
                return None;
            }
            if self.more {
                // A backlog (a stream resumed from long ago): one page at a time, the session
                // checked before each, never the whole history in memory.
                if !self.session_live().await {
                    return None;
                }
                if let Err(error) = self.read_page().await {
                    tracing::warn!(%error, "live alert stream ended: the alerts could not be read");
                    return None;
                }
                continue;
            }
            tokio::select! {
                _ = self.shutdown.changed() => return None,
                () = tokio::time::sleep_until(self.ends_at) => return None,
                _ = self.recheck.tick() => {
                    if !self.session_live().await {
                        return None;
                    }
                }
                changed = self.newest.changed() => {
                    if changed.is_err() || !self.session_live().await {
                        return None;
                    }
                    if let Err(error) = self.read_page().await {
                        tracing::warn!(%error, "live alert stream ended: the alerts could not be read");
                        return None;
                    }
                }
            }
        }
    }

    async fn session_live(&self) -> bool {
        match self.plane.sessions.still_live(&self.session_hash).await {
            Ok(live) => live,
            Err(error) => {
                tracing::warn!(%error, "live alert stream ended: the session could not be checked");
                false
            }
        }
    }

    /// Queues the next page of alerts after the cursor, and notes whether more may follow.
    async fn read_page(&mut self) -> Result<(), DashboardError> {
        let page = self.plane.dashboard.alerts_after(self.cursor, PAGE_LEN).await?;
        self.more = page.alerts.len() >= PAGE_LEN as usize;
        self.cursor = page.next_after;
        self.ready.extend(page.alerts);
        Ok(())
    }
}
