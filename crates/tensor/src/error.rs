//! The error type of every fallible tensor kernel.

use thiserror::Error;

/// What went wrong in a tensor kernel, naming the operation and the shapes involved.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum TensorError {
    /// A buffer's length does not match the product of the shape.
    #[error("{op}: shape {shape:?} needs {expected} elements, got {found}")]
    LengthMismatch {
        /// Operation that met the problem.
        op: &'static str,
        /// The shape asked for.
        shape: Vec<usize>,
        /// Elements the shape needs.
        expected: usize,
        /// Elements supplied.
        found: usize,
    },
    /// Two operands have shapes that do not fit together.
    #[error("{op}: shapes {left:?} and {right:?} do not match")]
    ShapeMismatch {
        /// Operation that met the problem.
        op: &'static str,
        /// First operand's shape.
        left: Vec<usize>,
        /// Second operand's shape.
        right: Vec<usize>,
    },
    /// An operand does not have the number of dimensions the operation needs.
    #[error("{op}: expected a {expected}-d tensor, got shape {shape:?}")]
    Rank {
        /// Operation that met the problem.
        op: &'static str,
        /// Number of dimensions needed.
        expected: usize,
        /// Shape found.
        shape: Vec<usize>,
    },
    /// A dimension is zero where the operation needs at least one element.
    #[error("{op}: zero-sized dimension in shape {shape:?}")]
    ZeroSized {
        /// Operation that met the problem.
        op: &'static str,
        /// Shape found.
        shape: Vec<usize>,
    },
    /// A parameter of the operation is invalid (zero stride, kernel larger than the padded input, ...).
    #[error("{op}: {message}")]
    InvalidParameter {
        /// Operation that met the problem.
        op: &'static str,
        /// What is wrong.
        message: String,
    },
    /// An axis index is out of range.
    #[error("{op}: axis {axis} out of range for shape {shape:?}")]
    Axis {
        /// Operation that met the problem.
        op: &'static str,
        /// Axis requested.
        axis: usize,
        /// Shape found.
        shape: Vec<usize>,
    },
    /// A shape holds more elements than can be counted or allocated.
    #[error("{op}: shape {shape:?} is too large to allocate")]
    TooLarge {
        /// Operation that met the problem.
        op: &'static str,
        /// The shape asked for.
        shape: Vec<usize>,
    },
    /// An index along an axis is out of range.
    #[error("{op}: index {index} out of range for length {len} of axis {axis}")]
    Index {
        /// Operation that met the problem.
        op: &'static str,
        /// Index supplied.
        index: usize,
        /// Axis indexed.
        axis: usize,
        /// Length of that axis.
        len: usize,
    },
}

/// Result alias for tensor kernels.
pub type Result<T> = std::result::Result<T, TensorError>;
