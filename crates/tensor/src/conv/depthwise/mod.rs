//! Depthwise (channel-wise grouped) 2-d convolution by direct loops, and
//! ordinary convolutions with asymmetric padding.
//!
//! A depthwise convolution (`groups` equal to the input channels, one or a
//! few output channels per input channel: MobileNet, EfficientNet) does
//! `kh kw` multiply-adds per output element: im2col + GEMM would unfold the
//! input `kh kw` times over for products of one row. The kernels here copy
//! each input plane once, a band of rows at a time, into a small
//! zero-padded buffer that stays in cache, and sum the taps straight from
//! it:
//!
//! - [`depthwise_conv2d`]: one task per output plane (several per task
//!   for small planes); the plane is done in bands of output rows, for
//!   each of which the input rows it reads are copied with their zero
//!   padding and split by column phase (column `c` of the padded row into
//!   phase `c mod stride`), so that every tap of every stride reads a
//!   contiguous run. Blocks of a few rows by `L` columns (`L` from 8 to 32
//!   by the row width) sum their taps in registers and are stored once. No
//!   bounds are checked per element and there is no border case: the
//!   padding is in the copy.
//! - [`depthwise_conv2d_backward_input`]: one task per input plane, as a
//!   gather: each column phase of an input-gradient row sums the taps of
//!   that phase over zero-padded rows of the output gradient (zero rows
//!   above and below too, so that rows `stride` apart share their taps
//!   and go in blocks as forward).
//! - [`depthwise_conv2d_backward_weight`]: one task per output channel,
//!   summing over the batch tap by tap in `L` lanes per block row, added
//!   up in a fixed order at the end.
//!
//! The kernels are compiled for baseline x86-64, AVX2 and AVX-512 (the
//! same operations in the same order, in wider registers; no fused
//! multiply-adds) and run at the level of the CPU. Every output element is
//! computed by one task in an order fixed by the shapes (taps in row-major
//! order, after the bias; channels of the multiplier first for the input
//! gradient), so the results are the same bits for any thread count and at
//! every SIMD level.
//!
//! [`conv2d_padded`] and [`conv2d_padded_backward_input`] give ordinary
//! convolutions (ONNX `pads`) the asymmetric padding that [`super::conv2d`]
//! lacks, by padding the input explicitly beyond its symmetric part.

mod backward_input;
mod backward_weight;
mod forward;
mod geometry;
mod padded;
mod planes;
#[cfg(test)]
mod tests;

pub use backward_input::{depthwise_conv2d_backward_input, depthwise_conv2d_backward_input_then};
pub use backward_weight::depthwise_conv2d_backward_weight;
pub use forward::depthwise_conv2d;
pub use padded::{conv2d_padded, conv2d_padded_backward_input};

/// Zero padding on each side of a plane, possibly asymmetric (ONNX `pads`
/// of a 2-d convolution, in their order: top, left, bottom, right).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Pads2d {
    /// Rows of zeros above.
    pub top: usize,
    /// Columns of zeros on the left.
    pub left: usize,
    /// Rows of zeros below.
    pub bottom: usize,
    /// Columns of zeros on the right.
    pub right: usize,
}

impl Pads2d {
    /// The same padding on both sides: `rows` above and below, `cols` left
    /// and right (PyTorch's `padding=(rows, cols)`).
    pub fn symmetric(rows: usize, cols: usize) -> Self {
        Self {
            top: rows,
            left: cols,
            bottom: rows,
            right: cols,
        }
    }

    /// From ONNX `pads` of a 2-d operator: `[top, left, bottom, right]`.
    pub fn from_onnx(pads: [usize; 4]) -> Self {
        let [top, left, bottom, right] = pads;
        Self {
            top,
            left,
            bottom,
            right,
        }
    }

    /// Whether top equals bottom and left equals right.
    pub fn is_symmetric(&self) -> bool {
        self.top == self.bottom && self.left == self.right
    }

    /// The largest symmetric part `(rows, cols)` and what is left over (zero
    /// on at least one side of each axis).
    pub fn split_symmetric(&self) -> ((usize, usize), Pads2d) {
        let rows = self.top.min(self.bottom);
        let cols = self.left.min(self.right);
        let rest = Pads2d {
            top: self.top - rows,
            left: self.left - cols,
            bottom: self.bottom - rows,
            right: self.right - cols,
        };
        ((rows, cols), rest)
    }

    /// Whether no side is padded.
    pub fn is_zero(&self) -> bool {
        *self == Self::default()
    }
}

/// Geometry of a depthwise convolution: stride and dilation (vertical,
/// horizontal) and the padding of each side.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct DepthwiseParams {
    /// Stride (vertical, horizontal); positive.
    pub stride: (usize, usize),
    /// Zero padding of each side.
    pub pads: Pads2d,
    /// Dilation (vertical, horizontal); positive.
    pub dilation: (usize, usize),
}

impl Default for DepthwiseParams {
    /// Stride 1, no padding, no dilation.
    fn default() -> Self {
        Self {
            stride: (1, 1),
            pads: Pads2d::default(),
            dilation: (1, 1),
        }
    }
}

impl DepthwiseParams {
    /// Square stride, the same padding on every side, no dilation.
    pub fn new(stride: usize, padding: usize) -> Self {
        Self {
            stride: (stride, stride),
            pads: Pads2d::symmetric(padding, padding),
            dilation: (1, 1),
        }
    }
}
