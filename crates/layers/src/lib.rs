//! # sightline-layers
//!
//! Layers and models for sightline: torchvision-compatible presets (VGG,
//! ResNet, AlexNet) loaded from safetensors files with torchvision
//! `state_dict` names, any torchvision family read from ONNX
//! ([`Model::from_onnx`]), and networks of the user's own
//! ([`Model::from_classifier`]).
//!
//! A [`Model`] is a tree of layer structs that reads like torchvision's
//! classes. Its forward pass records on a [`sightline_autograd::Tape`]: every
//! module records inside its own scope and registers its output under its
//! torchvision path (`features.28`, `layer4`, `layer1.0.conv2`, `fc`), and
//! parameters are registered under their `state_dict` names, so saliency
//! methods can probe any layer by name.
#![warn(missing_docs)]

pub mod arch;
pub mod canonize;
pub mod default_layers;
pub mod error;
pub mod footprint;
pub mod graph;
pub mod layers;
pub mod model;
pub mod models;
pub mod module;
mod weights;

pub use arch::{
    AlexNetConfig, Architecture, BlockKind, ResNetConfig, VggConfig, VggItem, PRESET_NAMES,
};
pub use canonize::{BatchNormMerge, Canonizer, MergeBatchNorm, ResNetCanonizer};
pub use default_layers::DefaultLayers;
pub use error::{LayerError, Result};
pub use model::{Classifier, Model};
pub use module::{join_path, run_child, Module, NamedTensor, TensorRole};
