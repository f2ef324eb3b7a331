//! Countersign reference authenticator: a phone, simulated in a terminal.
//!
//! It speaks the device protocol of `PROTOCOL.md` (crate `countersign-mobile-protocol`) exactly as
//! a phone app must, so it doubles as executable documentation for mobile developers and as the
//! device in demos, end-to-end tests and load runs. All protocol bytes come from the protocol
//! crate; this crate only adds what a phone adds around them: key storage, HTTP, and a user.
//!
//! # Map
//! | module | owns |
//! |---|---|
//! | [`cli`] | command-line syntax (clap) and the `--push` registration syntax |
//! | [`state`] | the state file: the simulated hardware key, the account, the response counter; atomic, 0600 |
//! | [`client`] | HTTP transport: base URL + relative paths, status and error-body handling |
//! | [`device`] | protocol operations: enroll, signed requests, verified challenge details, signed answers |
//! | [`commands`] | one function per subcommand: prompts, output, persistence order |
//! | [`terminal`] | what is shown to and read from the user (confirmation, challenge context, answers) |
//! | [`error`] | [`Error`] and its exit codes |
//! | [`clock`] | the only place that reads the system clock |
//! | [`bench`] | `countersign-bench`: the load generator (many phones, full flows, percentiles) |
//!
//! # Where a phone developer should look
//! [`device`] is the part a phone app reimplements; [`commands::respond`] shows the order that
//! matters (fetch and verify details, persist the counter, then sign and send).

pub mod bench;
pub mod cli;
pub mod client;
pub mod clock;
pub mod commands;
pub mod device;
pub mod error;
pub mod state;
pub mod terminal;

pub use error::Error;
