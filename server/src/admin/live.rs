//! One admin's live stream of alerts (the dashboard's server-sent events): the alerts after the
//! stream's cursor, read whenever this instance's [`super::feed::AlertFeed`] sees a newer one.
//!
//! A stream ends when its session does (re-checked every 30 s and before every delivery,
//! without touching the session's idle timer: an open tab keeps nobody signed in), after 10
//! minutes (the browser reconnects with `Last-Event-ID`), and when the server shuts down.

use std::collections::VecDeque;
use std::sync::Arc;
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

struct Live {
    plane: Arc<AdminPlane>,
    session_hash: Vec<u8>,
    cursor: i64,
    ready: VecDeque<AlertView>,
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
    let cursor = match after {
        Some(after) => after,
        None => plane.dashboard.newest_alert_id().await?,
    };
    let mut live = Live {
        newest: plane.feed.subscribe(),
        shutdown: plane.shutdown_signal(),
        session_hash,
        cursor,
        ready: VecDeque::new(),
        ends_at: Instant::now() + MAX_LIFE,
        recheck: tokio::time::interval_at(Instant::now() + RECHECK_EVERY, RECHECK_EVERY),
        plane,
    };
    if after.is_some() {
        // Resuming: what was raised while the browser was away comes first.
        live.read_new().await?;
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
                    if let Err(error) = self.read_new().await {
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

    /// Queues every alert after the cursor.
    async fn read_new(&mut self) -> Result<(), DashboardError> {
        loop {
            let page = self.plane.dashboard.alerts_after(self.cursor, PAGE_LEN).await?;
            let full = page.alerts.len() >= PAGE_LEN as usize;
            self.cursor = page.next_after;
            self.ready.extend(page.alerts);
            if !full {
                return Ok(());
            }
        }
    }
}
