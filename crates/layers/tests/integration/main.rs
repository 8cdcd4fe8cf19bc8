//! The layers crate's integration tests, one binary (each test binary
//! links and optimises the whole engine again, so one is built, not seven).

mod canonize;
mod conv_cache;
mod fixtures_logits;
mod kernel_policy;
mod layers;
mod loading;
mod presets;
