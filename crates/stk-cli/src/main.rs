//! The `stk` command line. Every subcommand parses its arguments and calls the library;
//! errors are printed as one clear line on stderr with a non-zero exit (never a panic).
#![deny(unsafe_code)]

mod cli;

use std::process::ExitCode;

fn main() -> ExitCode {
    match cli::run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("stk: error: {e}");
            ExitCode::from(1)
        }
    }
}
