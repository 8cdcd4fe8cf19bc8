//! The autograd crate's integration tests, one binary (each test binary
//! links and optimises the engine again, so one is built, not five).

mod common;
mod fusion;
mod gradcheck;
mod passes;
mod replay;
mod rules;
