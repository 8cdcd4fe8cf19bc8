//! The root package's integration tests, one binary: each test binary
//! links and optimises the whole engine again, so one is built, not ten.
//!
//! - the library against the fixtures and its extension points:
//!   `attribution`, `custom_lrp`, `custom_op`, `fixtures`;
//! - the command, run as a user runs it: `cli_explain`, `cli_evaluate`,
//!   `cli_interrupt`, `cli_reliability`, `demo`;
//! - `fuzz`: a short run of the parsers' fuzzing (the long one is ignored
//!   unless asked for).
//!
//! `cargo test --release --test integration MODULE::` runs one of them.

mod attribution;
mod cli_explain;
mod cli_interrupt;
mod cli_reliability;
mod custom_lrp;
mod custom_op;
mod demo;
mod fixtures;
mod fuzz;
