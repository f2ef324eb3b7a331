//! The one place that reads the system clock and the local time zone.
//!
//! The server injects a clock so its tests control time; a phone has no such need: its signed
//! request timestamps must simply be close to real time (within the server's skew, default
//! 300 s), so the system clock is the right source here.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use time::{OffsetDateTime, UtcOffset};

/// How times are shown to the user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Zone {
    /// The system's offset from UTC, as it was at start-up.
    Local(UtcOffset),
    /// The local offset could not be read: times are shown in UTC, and say so.
    Utc,
}

/// The system's current offset from UTC, or [`Zone::Utc`] if it cannot be read.
///
/// Call it once, first thing in `main`, while the process has a single thread: reading the
/// time zone goes through the C library (`localtime_r`), which is not safe while another thread
/// might change the environment, so it is not read again once the runtime and its threads are
/// running. A daylight-saving change during a long `watch` is therefore not followed.
pub fn local_zone() -> Zone {
    let now = i64::try_from(now_unix()).ok().and_then(|secs| OffsetDateTime::from_unix_timestamp(secs).ok());
    match now.and_then(|now| UtcOffset::local_offset_at(now).ok()) {
        Some(offset) => Zone::Local(offset),
        None => Zone::Utc,
    }
}

/// Current unix time in whole seconds (0 if the system clock is before 1970).
#[allow(clippy::disallowed_methods)] // a device signs with real time; see module docs
pub fn now_unix() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO).as_secs()
}
