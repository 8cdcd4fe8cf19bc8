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
    /// Explain images with saliency maps: heatmaps, overlays, .npy maps, a grid and a JSON summary.
    Explain(cli::explain::Args),
    /// List a model's layers (ONNX file or preset) with their output shapes.
    Layers(cli::layers::Args),
    /// Time a saliency job end to end, with FLOPs, sgemm throughput and peak memory.
    Bench(cli::bench::Args),
    /// Explain generated images with the built-in demo model and play the pointing game.
    Demo(cli::demo::Args),
    /// TorchRay's pointing game on generated images or a Pascal VOC-style folder.
    PointingGame(cli::pointing_game::Args),
    /// Score saliency methods over images: deletion and insertion AUC, the sanity check; in shards.
    Evaluate(cli::evaluate::Args),
    /// Train the demo model on generated images (sightline's own autograd).
    TrainDemo(cli::train_demo::Args),
}

/// Parses the command line; a usage error is one line on standard error
/// (`sightline: ...`, exit code 2), help and version go to standard output.
fn parse_args() -> Result<Args, ExitCode> {
    Args::try_parse().map_err(|e| {
        use clap::error::ErrorKind;
        match e.kind() {
            ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => {
                sightline::out!("{}", e.render());
                ExitCode::SUCCESS
            }
            ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
                sightline::errln!("{}", e.render());
                ExitCode::from(2)
            }
            _ => {
                let text = e.render().to_string();
                let first = text.lines().next().unwrap_or("invalid arguments");
                let first = first.strip_prefix("error: ").unwrap_or(first);
                sightline::errln!("sightline: {first} (see --help)");
                ExitCode::from(2)
            }
        }
    })
}

fn main() -> ExitCode {
    sightline::allocator::keep_freed_memory();
    let args = match parse_args() {
        Ok(a) => a,
        Err(code) => return code,
    };
    // The command runs on a worker of the rayon pool, so that each parallel
    // op's tasks start on the calling worker instead of being handed from
    // a thread outside the pool to a sleeping worker and waited for (two
    // thread wake-ups per op on the critical path: about 600 context
    // switches per MobileNetV2 guided-backprop pass, 19 inside the pool).
    let result = rayon::scope(|_| match args.command {
        Command::Compare(a) => cli::compare::run(a),
        // (dispatch: one line each below this marker)
        Command::Explain(a) => cli::explain::run(a),
        Command::Layers(a) => cli::layers::run(a),
        Command::Bench(a) => cli::bench::run(a),
        Command::Demo(a) => cli::demo::run(a),
        Command::PointingGame(a) => cli::pointing_game::run(a),
        Command::Evaluate(a) => cli::evaluate::run(a),
        Command::TrainDemo(a) => cli::train_demo::run(a),
    });
    match result {
        Ok(code) => code,
        Err(e) => {
            sightline::errln!("sightline: {e}");
            ExitCode::from(2)
        }
    }
}
