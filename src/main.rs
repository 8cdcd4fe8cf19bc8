//! The `sightline` command: explain images, compare with reference outputs,
//! benchmark, and the self-contained demo.

mod cli;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// Saliency maps for convolutional networks, on the CPU.
#[derive(Parser, Debug)]
#[command(name = "sightline", version, about)]
struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run every case of a reference manifest and report agreement.
    Compare(cli::compare::Args),
    // (more subcommands: one line each below this marker)
}

fn main() -> ExitCode {
    let args = Args::parse();
    let result = match args.command {
        Command::Compare(a) => cli::compare::run(a),
        // (dispatch: one line each below this marker)
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("sightline: {e}");
            ExitCode::from(2)
        }
    }
}
