//! Fatigue defence: the per-user push budget and the escalation ladder (freezes, locks,
//! "not me" quarantine). Applies to push only; stronger factors are never locked out.
//!
//! `model` holds the ladder's rules, `report` what the signals apps read mean (standing,
//! attack score ranking, timeline flags); both are pure. `service` reads and applies them; `policy` holds the
//! policy's bounds and the handle through which a four-eyes change applies at run time.

pub mod http;
pub mod model;
pub mod policy;
pub mod report;
pub mod service;
