//! The instance clock checked against the database's.
//!
//! On PostgreSQL the database clock decides expiry (`now()` inside the statement that answers,
//! redeems or expires a challenge), so a fast or slow instance cannot stretch or cut a TTL. An
//! instance whose own clock is off by more than the bound still refuses to start and reports
//! not-ready: its other decisions (budget windows, freezes, audit times) use its own clock. The
//! measured offset also tells long-polls when the database will consider a challenge due.
//! SQLite has no clock of its own (single instance): the offset is zero.

use std::sync::atomic::{AtomicI64, Ordering};

use time::{Duration, OffsetDateTime};

use crate::clock::Clock;
use crate::store::{Store, StoreError};

/// The default bound: DESIGN.md "an instance whose clock is off by more than 5 s is not ready".
pub const DEFAULT_MAX_SKEW: Duration = Duration::seconds(5);

/// How often serving instances measure the offset again.
pub const MEASURE_EVERY: std::time::Duration = std::time::Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum SkewError {
    #[error(
        "this instance's clock is {offset_ms} ms {direction} the database's (allowed: {bound_ms} ms); expiry is decided by the database clock, fix NTP on this host"
    )]
    TooFar { offset_ms: i64, direction: &'static str, bound_ms: i64 },
    #[error("cannot read the database clock")]
    Store(#[from] StoreError),
}

/// The last measured offset (database clock minus instance clock).
#[derive(Debug)]
pub struct ClockSkew {
    offset_micros: AtomicI64,
    bound: Duration,
}

impl ClockSkew {
    pub fn new(bound: Duration) -> Self {
        Self { offset_micros: AtomicI64::new(0), bound }
    }

    /// Database time minus instance time, as last measured.
    pub fn offset(&self) -> Duration {
        Duration::microseconds(self.offset_micros.load(Ordering::Relaxed))
    }

    /// The database's time now, as this instance estimates it: for scheduling only (when to ask
    /// the database whether a challenge is due), never for deciding.
    pub fn database_now(&self, instance_now: OffsetDateTime) -> OffsetDateTime {
        instance_now + self.offset()
    }

    /// Takes a new reading: compares the database clock with the instance clock and records the
    /// offset (and its gauge). Errors if it is beyond the bound.
    pub async fn measure(&self, store: &dyn Store, clock: &dyn Clock) -> Result<Duration, SkewError> {
        let before = clock.now();
        let Some(database) = store.database_now().await? else {
            return Ok(Duration::ZERO);
        };
        let after = clock.now();
        // The database read its clock somewhere between our two readings: take the midpoint.
        let midpoint: OffsetDateTime = before + (after - before) / 2;
        let offset: Duration = database - midpoint;
        self.offset_micros.store(offset.whole_microseconds() as i64, Ordering::Relaxed);
        metrics::gauge!("countersign_clock_skew_seconds").set(offset.as_seconds_f64());
        self.check()?;
        Ok(offset)
    }

    /// Whether the last reading is within the bound.
    pub fn check(&self) -> Result<(), SkewError> {
        let offset = self.offset();
        if offset.abs() <= self.bound {
            return Ok(());
        }
        Err(SkewError::TooFar {
            offset_ms: offset.abs().whole_milliseconds() as i64,
            direction: if offset.is_negative() { "ahead of" } else { "behind" },
            bound_ms: self.bound.whole_milliseconds() as i64,
        })
    }
}

/// Measures the offset again every [`MEASURE_EVERY`]; beyond the bound the instance reports
/// not-ready (`/readyz`) and says why in its log until the clock is fixed.
pub fn spawn_monitor(
    skew: std::sync::Arc<ClockSkew>,
    store: std::sync::Arc<dyn Store>,
    clock: std::sync::Arc<dyn Clock>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(MEASURE_EVERY).await;
            if let Err(error) = skew.measure(store.as_ref(), clock.as_ref()).await {
                tracing::error!(%error, "instance clock check failed; reporting not ready");
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_beyond_the_bound_are_refused_both_ways() {
        let skew = ClockSkew::new(Duration::seconds(5));
        assert!(skew.check().is_ok());
        skew.offset_micros.store(4_000_000, Ordering::Relaxed);
        assert!(skew.check().is_ok());
        skew.offset_micros.store(120_000_000, Ordering::Relaxed);
        assert!(skew.check().unwrap_err().to_string().contains("120000 ms behind"));
        skew.offset_micros.store(-6_000_000, Ordering::Relaxed);
        assert!(skew.check().unwrap_err().to_string().contains("6000 ms ahead of"));
    }
}
