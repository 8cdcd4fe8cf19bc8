//! 2-d convolution: forward, and backward for input, weight and bias.
//!
//! 3 x 3 convolutions with stride 1 (most of VGG's and ResNet's) go through
//! Winograd ([`crate::winograd`]) where it wins: F(4x4, 3x3) for large
//! outputs (56 x 56, or 28 x 28 with at most 128 channels) when the
//! transformed kernel is cached, F(2x2, 3x3) otherwise; the others are
//! im2col + GEMM, done in blocks of output columns so the unfolded panel stays
//! in cache and the blocks run in parallel (or, for small images, one panel
//! shared by blocks of output channels). The backward-input pass of a
//! stride-1 convolution is itself a convolution (of the output gradient with
//! the transposed, flipped kernel), so it reuses the forward kernels; other
//! strides, and convolutions back to few channels (the first layer), go
//! through GEMM + col2im.
//!
//! The parts: `forward.rs` (the entry points, with and without a cached
//! kernel, and the im2col reference),
//! `backward_input.rs` (the input gradient's paths and its kernel cache),
//! `backward_weight.rs` (weight and bias gradients), `packed.rs` (a weight
//! packed once for the Winograd micro-kernels, and 1 x 1 convolutions on
//! it), `panels.rs` (the cached im2col path: the unfolded input packed
//! block by block into the micro-kernels' panels, never whole; and the
//! products of col2im), `thin.rs` (the last few columns of those products
//! and of the 1 x 1 ones),
//! and what they share:
//! `dispatch.rs` (Winograd or not, which variant), `im2col.rs` (unfolding,
//! for `matrixmultiply`), `gemm_blocks.rs` (parallel GEMMs over unfolded
//! panels) and `col2im.rs` (in bands of output rows on a packed weight).

mod backward_input;
mod backward_weight;
mod col2im;
mod depthwise;
mod dispatch;
mod forward;
mod gemm_blocks;
mod im2col;
mod packed;
mod panels;
#[cfg(test)]
mod reference;
mod thin;

pub use backward_input::{
    backward_input_im2col, conv2d_backward_input, conv2d_backward_input_cached,
    conv2d_backward_input_then, transpose_flip_kernel, BackwardInputCache,
};
pub use backward_weight::{conv2d_backward_bias, conv2d_backward_weight};
pub use depthwise::{
    conv2d_padded, conv2d_padded_backward_input, depthwise_conv2d, depthwise_conv2d_backward_input,
    depthwise_conv2d_backward_input_then, depthwise_conv2d_backward_weight, DepthwiseParams,
    Pads2d,
};
pub use forward::{add_channel_bias, conv2d, conv2d_cached, conv2d_im2col, ForwardCache};
pub use packed::{conv1x1, PackedWeight};

use crate::error::{Result, TensorError};
use crate::tensor::check_nonzero;

/// Geometry of a 2-d convolution (PyTorch's `Conv2d` arguments).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Conv2dParams {
    /// Stride (vertical, horizontal).
    pub stride: (usize, usize),
    /// Zero padding (vertical, horizontal).
    pub padding: (usize, usize),
    /// Dilation (vertical, horizontal).
    pub dilation: (usize, usize),
    /// Number of channel groups.
    pub groups: usize,
}

impl Default for Conv2dParams {
    fn default() -> Self {
        Self {
            stride: (1, 1),
            padding: (0, 0),
            dilation: (1, 1),
            groups: 1,
        }
    }
}

impl Conv2dParams {
    /// Square stride and padding, no dilation, one group.
    pub fn new(stride: usize, padding: usize) -> Self {
        Self {
            stride: (stride, stride),
            padding: (padding, padding),
            ..Self::default()
        }
    }
}

/// Output length of a sliding window along one axis, or `None` when the
/// (dilated) window does not fit in the padded input.
pub fn window_output_len(
    input: usize,
    kernel: usize,
    stride: usize,
    padding: usize,
    dilation: usize,
) -> Option<usize> {
    let span = dilation * (kernel - 1) + 1;
    let padded = input + 2 * padding;
    (padded >= span).then(|| (padded - span) / stride + 1)
}

/// Checked geometry of one convolution call.
#[derive(Clone, Copy, Debug)]
pub struct ConvGeometry {
    /// Batch size.
    pub n: usize,
    /// Input channels.
    pub cin: usize,
    /// Input height.
    pub h: usize,
    /// Input width.
    pub w: usize,
    /// Output channels.
    pub cout: usize,
    /// Kernel height.
    pub kh: usize,
    /// Kernel width.
    pub kw: usize,
    /// Output height.
    pub ho: usize,
    /// Output width.
    pub wo: usize,
    /// The parameters.
    pub p: Conv2dParams,
}

impl ConvGeometry {
    /// Checks the shapes of input, weight and parameters and derives the output size.
    pub fn new(input: &[usize], weight: &[usize], p: Conv2dParams) -> Result<Self> {
        let op = "conv2d";
        let [n, cin, h, w] = *input else {
            return Err(TensorError::Rank {
                op,
                expected: 4,
                shape: input.to_vec(),
            });
        };
        let [cout, cig, kh, kw] = *weight else {
            return Err(TensorError::Rank {
                op,
                expected: 4,
                shape: weight.to_vec(),
            });
        };
        check_nonzero(op, input)?;
        check_nonzero(op, weight)?;
        if p.groups == 0
            || p.stride.0 == 0
            || p.stride.1 == 0
            || p.dilation.0 == 0
            || p.dilation.1 == 0
        {
            return Err(TensorError::InvalidParameter {
                op,
                message: format!("stride, dilation and groups must be positive, got {p:?}"),
            });
        }
        if cin % p.groups != 0 || cout % p.groups != 0 || cig * p.groups != cin {
            return Err(TensorError::ShapeMismatch {
                op,
                left: input.to_vec(),
                right: weight.to_vec(),
            });
        }
        let ho = window_output_len(h, kh, p.stride.0, p.padding.0, p.dilation.0);
        let wo = window_output_len(w, kw, p.stride.1, p.padding.1, p.dilation.1);
        let (Some(ho), Some(wo)) = (ho, wo) else {
            return Err(TensorError::InvalidParameter {
                op,
                message: format!(
                    "kernel {kh}x{kw} (dilation {:?}) larger than padded input {}x{} (input {h}x{w}, padding {:?})",
                    p.dilation,
                    h + 2 * p.padding.0,
                    w + 2 * p.padding.1,
                    p.padding
                ),
            });
        };
        Ok(Self {
            n,
            cin,
            h,
            w,
            cout,
            kh,
            kw,
            ho,
            wo,
            p,
        })
    }

    /// Input channels per group.
    pub fn cin_g(&self) -> usize {
        self.cin / self.p.groups
    }

    /// Output channels per group.
    pub fn cout_g(&self) -> usize {
        self.cout / self.p.groups
    }

    /// Rows of one group's unfolded input: `cin_g * kh * kw`.
    pub fn k_rows(&self) -> usize {
        self.cin_g() * self.kh * self.kw
    }

    /// Whether this is a depthwise convolution (one group per input
    /// channel, `groups > 1`): the direct kernels of `depthwise` serve it
    /// in every direction.
    pub fn is_depthwise(&self) -> bool {
        self.p.groups > 1 && self.p.groups == self.cin
    }

    /// The depthwise kernels' parameters for this geometry.
    pub(crate) fn depthwise_params(&self) -> DepthwiseParams {
        DepthwiseParams {
            stride: self.p.stride,
            pads: Pads2d::symmetric(self.p.padding.0, self.p.padding.1),
            dilation: self.p.dilation,
        }
    }

    /// Multiply-adds of the forward pass.
    pub fn macs(&self) -> usize {
        self.n * self.cout * self.ho * self.wo * self.k_rows()
    }

    fn is_pointwise(&self) -> bool {
        self.kh == 1 && self.kw == 1 && self.p.stride == (1, 1) && self.p.padding == (0, 0)
    }

    /// A pointwise convolution with one group: a plain product per image,
    /// which [`conv1x1`] runs on a packed weight.
    fn is_packed_pointwise(&self) -> bool {
        self.is_pointwise() && self.p.groups == 1
    }

    /// Rows of the unfolded input of one group: `Cin/groups kh kw`.
    fn unfolded_rows(&self) -> usize {
        self.cin_g() * self.kh * self.kw
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tensor::Tensor;

    #[test]
    fn kernel_larger_than_padded_input_is_an_error() {
        let x = Tensor::<f32>::zeros([1, 1, 2, 2]);
        let w = Tensor::<f32>::zeros([1, 1, 5, 5]);
        let e = conv2d(&x, &w, None, Conv2dParams::new(1, 1)).unwrap_err();
        assert!(matches!(
            e,
            TensorError::InvalidParameter { op: "conv2d", .. }
        ));
        let w = Tensor::<f32>::zeros([1, 2, 1, 1]);
        assert!(matches!(
            conv2d(&x, &w, None, Conv2dParams::default()),
            Err(TensorError::ShapeMismatch { .. })
        ));
    }
}
