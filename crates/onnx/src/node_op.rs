//! [`NodeOp`]: the compute ops of a plan, with every attribute and
//! index-like input resolved to concrete values.

/// A compute op with its attributes resolved for one input shape.
///
/// Index-like inputs (Reshape's shape, Slice's bounds, Split's sizes,
/// Gather's indices, Clip's bounds, ReduceMean's and (Un)Squeeze's axes)
/// are folded into the op: a [`crate::PlanNode`]'s operands are its data
/// inputs only, in ONNX order. Axes are normalised (non-negative, in range).
/// Every spatial op is 2-d: pads are `[top, left, bottom, right]`, kernels,
/// strides and dilations `[height, width]`.
#[derive(Debug, Clone, PartialEq)]
pub enum NodeOp {
    /// 2-d convolution. Operands: `x` `[N, C, H, W]`, weight
    /// `[M, C / group, kh, kw]`, optional bias `[M]`.
    Conv {
        /// Kernel size `[kh, kw]`.
        kernel: [usize; 2],
        /// Strides `[sh, sw]`.
        strides: [usize; 2],
        /// Zero padding `[top, left, bottom, right]` (auto_pad resolved).
        pads: [usize; 4],
        /// Dilations `[dh, dw]`.
        dilations: [usize; 2],
        /// Number of groups.
        group: usize,
    },
    /// `alpha * A' * B' + beta * C` with `A'`, `B'` optionally transposed.
    /// Operands: `A` (2-d), `B` (2-d), optional `C` (broadcast to the
    /// result).
    Gemm {
        /// Transpose `A` first.
        trans_a: bool,
        /// Transpose `B` first.
        trans_b: bool,
        /// Scale of the product.
        alpha: f64,
        /// Scale of `C`.
        beta: f64,
    },
    /// numpy `matmul` (batched, broadcast batch dimensions, 1-d operands
    /// promoted). Operands: `A`, `B`.
    MatMul,
    /// `A + B`, numpy broadcasting.
    Add,
    /// `A - B`, numpy broadcasting.
    Sub,
    /// `A * B`, numpy broadcasting.
    Mul,
    /// `A / B`, numpy broadcasting.
    Div,
    /// `max(x, 0)`.
    Relu,
    /// `min(max(x, min), max)`; a missing bound does not clip.
    Clip {
        /// Lower bound.
        min: Option<f64>,
        /// Upper bound.
        max: Option<f64>,
    },
    /// `1 / (1 + exp(-x))`.
    Sigmoid,
    /// `max(0, min(1, alpha * x + beta))`.
    HardSigmoid {
        /// Slope.
        alpha: f64,
        /// Offset.
        beta: f64,
    },
    /// `x * max(0, min(1, x / 6 + 1 / 2))`.
    HardSwish,
    /// The error function.
    Erf,
    /// Softmax along one axis.
    Softmax {
        /// The axis (normalised).
        axis: usize,
    },
    /// Normalisation over the trailing axes from `axis` on. Operands: `x`,
    /// scale, optional bias (both broadcast to `x.shape[axis..]`).
    LayerNormalization {
        /// First normalised axis (normalised).
        axis: usize,
        /// Added to the variance.
        epsilon: f64,
    },
    /// Inference batch norm over axis 1. Operands: `x`, scale, bias, mean,
    /// variance (each `[C]`).
    BatchNormalization {
        /// Added to the variance.
        epsilon: f64,
    },
    /// 2-d max pooling (padding never wins the max).
    MaxPool {
        /// Window `[kh, kw]`.
        kernel: [usize; 2],
        /// Strides `[sh, sw]`.
        strides: [usize; 2],
        /// Padding `[top, left, bottom, right]` (auto_pad resolved).
        pads: [usize; 4],
        /// Dilations `[dh, dw]`.
        dilations: [usize; 2],
        /// Output size rounded up (the last window starts inside the input
        /// or its leading padding, as in PyTorch).
        ceil_mode: bool,
    },
    /// 2-d average pooling.
    AveragePool {
        /// Window `[kh, kw]`.
        kernel: [usize; 2],
        /// Strides `[sh, sw]`.
        strides: [usize; 2],
        /// Padding `[top, left, bottom, right]` (auto_pad resolved).
        pads: [usize; 4],
        /// Output size rounded up, as for [`NodeOp::MaxPool`].
        ceil_mode: bool,
        /// Padded positions count in the divisor.
        count_include_pad: bool,
    },
    /// Mean over the spatial axes of `[N, C, H, W]`, keeping them as 1.
    GlobalAveragePool,
    /// Mean over `axes`.
    ReduceMean {
        /// The reduced axes (normalised, sorted, distinct, non-empty).
        axes: Vec<usize>,
        /// Keep the reduced axes as size 1.
        keepdims: bool,
    },
    /// Concatenation of all operands along `axis`.
    Concat {
        /// The axis (normalised).
        axis: usize,
    },
    /// Split into consecutive parts along `axis`, one per output.
    Split {
        /// The axis (normalised).
        axis: usize,
        /// The size of each part (they sum to the axis' size).
        sizes: Vec<usize>,
    },
    /// Elements `start, start + step, ...` along `axis`, stopping before
    /// `end`. Clamped as ONNX does: for `step > 0`,
    /// `0 <= start <= end <= dim`; for `step < 0`, `-1 <= end <= start <= dim - 1`
    /// (or `start == end` for an empty result). The output shape holds the
    /// resulting length.
    Slice {
        /// The sliced axis (normalised).
        axis: usize,
        /// First index.
        start: i64,
        /// One past the last index (in the direction of `step`).
        end: i64,
        /// Step, non-zero.
        step: i64,
    },
    /// The same elements, row-major, under a new shape (Reshape, Flatten,
    /// Squeeze and Unsqueeze, with `0` and `-1` resolved).
    Reshape {
        /// The output shape.
        shape: Vec<usize>,
    },
    /// Axis permutation: output axis `i` is input axis `perm[i]`.
    Transpose {
        /// The permutation.
        perm: Vec<usize>,
    },
    /// `take` along `axis` with constant indices: output shape is
    /// `data.shape[..axis] ++ indices_shape ++ data.shape[axis + 1..]`.
    Gather {
        /// The axis (normalised).
        axis: usize,
        /// The indices, flattened row-major (negative ones resolved).
        indices: Vec<usize>,
        /// The indices' shape (`[]` for a single index, which drops the
        /// axis).
        indices_shape: Vec<usize>,
    },
    /// Broadcast of the operand to `shape` (numpy rules).
    Expand {
        /// The output shape.
        shape: Vec<usize>,
    },
}

impl NodeOp {
    /// The variant's name (the ONNX op type it stands for).
    pub fn name(&self) -> &'static str {
        match self {
            Self::Conv { .. } => "Conv",
            Self::Gemm { .. } => "Gemm",
            Self::MatMul => "MatMul",
            Self::Add => "Add",
            Self::Sub => "Sub",
            Self::Mul => "Mul",
            Self::Div => "Div",
            Self::Relu => "Relu",
            Self::Clip { .. } => "Clip",
            Self::Sigmoid => "Sigmoid",
            Self::HardSigmoid { .. } => "HardSigmoid",
            Self::HardSwish => "HardSwish",
            Self::Erf => "Erf",
            Self::Softmax { .. } => "Softmax",
            Self::LayerNormalization { .. } => "LayerNormalization",
            Self::BatchNormalization { .. } => "BatchNormalization",
            Self::MaxPool { .. } => "MaxPool",
            Self::AveragePool { .. } => "AveragePool",
            Self::GlobalAveragePool => "GlobalAveragePool",
            Self::ReduceMean { .. } => "ReduceMean",
            Self::Concat { .. } => "Concat",
            Self::Split { .. } => "Split",
            Self::Slice { .. } => "Slice",
            Self::Reshape { .. } => "Reshape",
            Self::Transpose { .. } => "Transpose",
            Self::Gather { .. } => "Gather",
            Self::Expand { .. } => "Expand",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_match_onnx_op_types() {
        assert_eq!(NodeOp::MatMul.name(), "MatMul");
        assert_eq!(NodeOp::Reshape { shape: vec![1] }.name(), "Reshape");
        assert_eq!(
            NodeOp::Slice {
                axis: 0,
                start: 0,
                end: 1,
                step: 1
            }
            .name(),
            "Slice"
        );
    }
}
