//! `countersign-authenticator`: see the library docs for the map.

use std::process::ExitCode;

use clap::Parser as _;
use countersign_authenticator::{cli::Cli, commands};

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    match commands::run(Cli::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            commands::print_error(&error);
            ExitCode::from(error.exit_code())
        }
    }
}
