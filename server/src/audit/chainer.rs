//! The background task that links pending audit events onto the hash chain.
//!
//! Woken after each commit, it waits a moment so that one transaction chains many events, then
//! chains everything pending. Every instance runs one; they take turns on the head row lock,
//! and each re-checks every second for events an instance that stopped left behind.

use std::sync::Arc;
use std::time::Duration;

use crate::store::Store;

/// Lets events accumulate after a wake-up: one chaining transaction per this interval at most.
const COALESCE: Duration = Duration::from_millis(20);
/// Re-check for pending events even without a local commit.
const IDLE_RECHECK: Duration = Duration::from_secs(1);
/// Pause after a failure (database down, or a pending event that fails its seal).
const RETRY_AFTER_ERROR: Duration = Duration::from_secs(1);

pub fn spawn(store: Arc<dyn Store>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let signal = store.audit_pending_signal();
        loop {
            // Timing out is the periodic re-check, not an error.
            let _ = tokio::time::timeout(IDLE_RECHECK, signal.notified()).await;
            tokio::time::sleep(COALESCE).await;
            match super::flush(&*store).await {
                Ok(chained) => metrics::counter!("countersign_audit_events_chained_total").increment(chained),
                Err(error) => {
                    // Fail closed: nothing is chained past a forged event; the changes
                    // themselves keep their sealed events, so nothing is lost meanwhile.
                    metrics::counter!("countersign_audit_chain_errors_total").increment(1);
                    tracing::error!(%error, "audit events could not be chained; they stay pending");
                    tokio::time::sleep(RETRY_AFTER_ERROR).await;
                }
            }
        }
    })
}
