//! [`Error`]: everything a subcommand can fail with, and the process exit code for each.
//!
//! Exit codes let scripts and end-to-end tests tell "the server said no" (1) from "this side is
//! misused or misconfigured" (2) and from "the server could not be reached or broke the protocol"
//! (3) without parsing messages.

use std::path::PathBuf;

use countersign_mobile_protocol::{ChallengeId, ErrorBody, ProtocolError};

/// Exit code: the server refused the request with a protocol error body.
pub const EXIT_SERVER_REFUSED: u8 = 1;
/// Exit code: bad usage, bad input, or a local problem (state file, terminal).
pub const EXIT_LOCAL: u8 = 2;
/// Exit code: the server was unreachable or its answer broke the protocol (including a
/// challenge-details signature that does not verify).
pub const EXIT_SERVER_FAULT: u8 = 3;

/// Why a subcommand failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The server answered with the protocol's error body (`{"error": code, "message": ...}`).
    #[error("{}: {}", body.error, body.message)]
    Refused {
        /// HTTP status of the answer.
        status: u16,
        /// The error body; match on `body.error`, never on the message.
        body: ErrorBody,
    },
    /// The server answered a status the protocol does not define for this endpoint, without a
    /// protocol error body.
    #[error("{method} {path}: server answered HTTP {status}, expected {expected}")]
    UnexpectedStatus {
        /// Method of the request.
        method: &'static str,
        /// Path relative to the base URL.
        path: String,
        /// Status received.
        status: u16,
        /// Status the protocol specifies for success.
        expected: u16,
    },
    /// The request did not complete (DNS, TCP, TLS, timeout, ...).
    #[error("{method} {url}: request failed")]
    Network {
        /// Method of the request.
        method: &'static str,
        /// Full URL.
        url: String,
        /// The transport error (its source chain is printed too).
        #[source]
        source: reqwest::Error,
    },
    /// A success answer whose body is not what the protocol specifies.
    #[error("{path}: invalid answer from server: {reason}")]
    InvalidAnswer {
        /// Path relative to the base URL.
        path: String,
        /// What was wrong.
        reason: String,
    },
    /// Challenge details that fail the server-signature check (or are for another challenge).
    /// A phone must discard them and show nothing: they may be forged.
    #[error("challenge {id}: details rejected, server signature check failed: {source}")]
    DetailsRejected {
        /// The challenge asked for.
        id: ChallengeId,
        /// Why verification failed.
        #[source]
        source: ProtocolError,
    },
    /// A message could not be built or signed locally (e.g. a device name with control
    /// characters, a number that is not digits).
    #[error(transparent)]
    Protocol(#[from] ProtocolError),
    /// The HTTP client could not be set up (e.g. no TLS roots).
    #[error("cannot set up the HTTP client")]
    HttpClient(#[source] reqwest::Error),
    /// A request body could not be serialised (a bug, not a user error).
    #[error("cannot encode the request body: {0}")]
    Encode(String),
    /// The state file cannot be read, written or trusted.
    #[error("state file {}: {reason}", path.display())]
    State {
        /// The state file.
        path: PathBuf,
        /// What is wrong, including how to fix it where possible.
        reason: String,
    },
    /// The user did not confirm (e.g. declined to enroll with the server shown).
    #[error("{0}")]
    Cancelled(&'static str),
    /// Reading from or writing to the terminal failed.
    #[error("terminal: {0}")]
    Terminal(#[source] std::io::Error),
    /// The async runtime could not be started.
    #[error("cannot start the async runtime")]
    Runtime(#[source] std::io::Error),
}

impl Error {
    /// Process exit code for this error (see the `EXIT_*` constants).
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::Refused { .. } => EXIT_SERVER_REFUSED,
            Self::UnexpectedStatus { .. }
            | Self::Network { .. }
            | Self::InvalidAnswer { .. }
            | Self::DetailsRejected { .. } => EXIT_SERVER_FAULT,
            Self::Protocol(_)
            | Self::HttpClient(_)
            | Self::Encode(_)
            | Self::State { .. }
            | Self::Cancelled(_)
            | Self::Terminal(_)
            | Self::Runtime(_) => EXIT_LOCAL,
        }
    }

    /// The message and its whole source chain, one line: what `main` prints after `error: `.
    ///
    /// For [`Error::Refused`] this is exactly `<code>: <message>`, which tests may match on.
    pub fn report(&self) -> String {
        let mut text = self.to_string();
        let mut source = std::error::Error::source(self);
        while let Some(cause) = source {
            let cause_text = cause.to_string();
            if !text.contains(&cause_text) {
                text.push_str(": ");
                text.push_str(&cause_text);
            }
            source = cause.source();
        }
        text
    }
}
