//! One module per subcommand.

pub mod compare;
// (one `pub mod` line per subcommand below this marker)

/// The error of a subcommand: printed on one line, exit code 2.
pub type CliError = Box<dyn std::error::Error + Send + Sync>;
