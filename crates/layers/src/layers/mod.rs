//! The layers, one file per family, each a [`Module`](crate::Module) that
//! records its ops on the tape under torchvision's names.

mod activation;
mod blocks;
mod conv;
mod dropout;
mod flatten;
mod fold;
mod layer;
mod linear;
mod norm;
mod pool;
mod sequential;

pub use activation::ReLU;
pub use blocks::{BasicBlock, Bottleneck};
pub use conv::{Conv2d, ConvSpec};
pub use dropout::Dropout;
pub use flatten::Flatten;
pub(crate) use fold::{build_conv_then_batch_norm, conv_then_batch_norm};
pub use layer::Layer;
pub use linear::Linear;
pub use norm::{BatchNorm2d, BATCH_NORM_EPS};
pub use pool::{AdaptiveAvgPool2d, AvgPool2d, MaxPool2d};
pub use sequential::Sequential;
