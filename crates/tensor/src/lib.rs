//! # sightline-tensor
//!
//! A minimal N-d tensor ([`Tensor`]) with an element type generic through
//! `num-traits` (`f32` for work, `f64` for gradient checks), and the CPU
//! kernels that saliency methods need: GEMM through `matrixmultiply`,
//! convolution, pooling, batch norm, elementwise ops, reductions, softmax,
//! resizing and Gaussian blur.
//!
//! Every kernel that runs in parallel (with `rayon`) splits its work so that
//! each output element is computed by exactly one task in a fixed order: the
//! results are bit-identical whatever the number of threads.
//!
//! Which kernels run where there is a choice (Winograd or not, and which
//! variant; the highest SIMD level) is a value, [`KernelPolicy`], carried by
//! the convolution and pooling parameters: nothing is read from the
//! environment.
#![warn(missing_docs)]

pub mod activation;
pub mod blur;
pub mod broadcast;
mod cblock;
pub mod conv;
pub mod element;
pub mod elementwise;
pub mod epilogue;
pub mod error;
pub mod gemm;
mod gemv;
pub mod layer_norm;
mod layout;
pub mod linear;
pub mod matmul;
pub mod norm;
pub mod policy;
pub mod pool;
pub mod reduce;
pub mod reduce_axes;
pub mod resize;
pub mod scratch;
pub mod shape_ops;
pub mod sign_mask;
mod simd;
pub mod softmax;
pub mod softmax_axis;
pub mod tensor;
#[cfg(test)]
mod testing;
#[cfg(test)]
mod testing_grad;
pub mod winograd;

pub use conv::Conv2dParams;
pub use element::{cst, cst_eps, Element};
pub use epilogue::Epilogue;
pub use error::{Result, TensorError};
pub use policy::{KernelPolicy, SimdCap, WinogradPolicy};
pub use pool::{AvgPool2dParams, MaxPool2dParams};
pub use resize::ResizeMode;
pub use tensor::Tensor;
