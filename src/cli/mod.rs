//! One module per subcommand.

pub mod compare;
// (one `pub mod` line per subcommand below this marker)
pub mod bench;
pub mod demo;
pub mod evaluate;
pub mod explain;
pub mod layers;
pub mod options;
pub mod pointing_game;
pub mod train_demo;

/// The error of a subcommand: printed on one line, exit code 2.
pub type CliError = Box<dyn std::error::Error + Send + Sync>;
