//! # sightline
//!
//! Saliency maps for convolutional networks, on the CPU: a tensor and tape
//! autograd engine whose backward rules are chosen at backward time, the
//! torchvision model zoo loaded from safetensors, and the saliency methods of
//! TorchRay and Captum with their numbers.
//!
//! This crate is the facade: it re-exports the workspace's crates and holds
//! the `sightline` command's building blocks.
#![warn(missing_docs)]

pub use sightline_attribution as attribution;
pub use sightline_autograd as autograd;
pub use sightline_layers as layers;
pub use sightline_tensor as tensor;

pub mod allocator;
pub mod budget;
pub mod demo;
pub mod evaluation_report;
pub mod files;
pub mod imageio;
pub mod interrupt;
pub mod labels;
pub mod manifest;
pub mod output;
pub mod render;

pub use sightline_layers::footprint;
