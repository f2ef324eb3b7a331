//! Fatigue defence: the per-user push budget and the escalation ladder (freezes, locks,
//! "not me" quarantine). Applies to push only; stronger factors are never locked out.

pub mod http;
pub mod model;
pub mod service;
