//! The one place that reads the system clock.
//!
//! The server injects a clock so its tests control time; a phone has no such need: its signed
//! request timestamps must simply be close to real time (within the server's skew, default
//! 300 s), so the system clock is the right source here.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Current unix time in whole seconds (0 if the system clock is before 1970).
#[allow(clippy::disallowed_methods)] // a device signs with real time; see module docs
pub fn now_unix() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO).as_secs()
}
