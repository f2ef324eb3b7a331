//! `countersign-bench`: the load generator (see `countersign_authenticator::bench`).
#![allow(clippy::print_stderr)] // a CLI talks to its terminal

use std::process::ExitCode;

use clap::Parser as _;
use countersign_authenticator::bench::{self, BenchArgs};

/// Exit codes: 0 every flow succeeded, 1 some failed (the report says where), 2 the bench could
/// not run (bad arguments, setup failed).
fn main() -> ExitCode {
    let args = BenchArgs::parse();
    // Many flows in flight at once: the client must not be the bottleneck.
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(bench::run(args)) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::from(2)
        }
    }
}
