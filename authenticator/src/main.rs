//! `countersign-authenticator`: see the library docs for the map.

use std::process::ExitCode;

use clap::Parser as _;
use countersign_authenticator::{Error, cli::Cli, clock, commands};

fn main() -> ExitCode {
    // Before any other thread exists (see `clock::local_zone`).
    let zone = clock::local_zone();
    let cli = Cli::parse();
    let result = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime.block_on(commands::run(cli, zone)),
        Err(error) => Err(Error::Runtime(error)),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            commands::print_error(&error);
            ExitCode::from(error.exit_code())
        }
    }
}
