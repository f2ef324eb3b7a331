//! Number-matching challenges: the REST API apps call, the device side phones answer on, the
//! state machine, long-poll wake-ups, and the push outbox worker.

pub mod http;
pub mod model;
pub mod service;
pub mod waiters;
pub mod worker;
