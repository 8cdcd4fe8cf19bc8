//! The error type of every fallible step of reading and planning a model.
//!
//! Every message fits on one line: names that come from the model file
//! (node, value and op names) are printed quoted and escaped.

use std::path::PathBuf;
use thiserror::Error;

/// What went wrong while loading or planning an ONNX model, naming the
/// file, tensor or node involved.
#[derive(Debug, Error)]
pub enum OnnxError {
    /// A file could not be inspected, opened or mapped.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// A path names something other than a regular file (a directory, a
    /// FIFO, a device...).
    #[error("{path}: not a regular file (it is {kind})")]
    NotAFile {
        /// The path.
        path: PathBuf,
        /// What it is instead.
        kind: &'static str,
    },
    /// A model file is larger than a protobuf message can be.
    #[error("{path}: {size} bytes is over the {limit}-byte limit of a model file")]
    FileTooLarge {
        /// The file.
        path: PathBuf,
        /// Its size in bytes.
        size: u64,
        /// The largest size accepted.
        limit: u64,
    },
    /// The bytes are not a protobuf-encoded ONNX model (truncated, corrupt,
    /// or another format).
    #[error("{source_name}: not a valid ONNX model: {message}")]
    Decode {
        /// The file, or `<bytes>` for [`crate::OnnxModel::from_bytes`].
        source_name: String,
        /// The decoder's message.
        message: String,
    },
    /// A tensor's external data cannot be read: no folder to look in, a
    /// location outside the model's folder, a missing file, or a range past
    /// its end.
    #[error("tensor {tensor:?}: external data {location:?}: {message}")]
    ExternalData {
        /// The tensor's name.
        tensor: String,
        /// The `location` entry of its external data.
        location: String,
        /// What is wrong.
        message: String,
    },
    /// A tensor's contents do not fit its declared type and shape (or the
    /// type is not supported).
    #[error("tensor {tensor:?}: {message}")]
    TensorData {
        /// The tensor's name.
        tensor: String,
        /// What is wrong.
        message: String,
    },
    /// A node's op type is not one this crate reads.
    #[error("node {node:?}: op {op_type:?} (opset {opset}) is not supported")]
    UnsupportedOp {
        /// The op type.
        op_type: String,
        /// The node's name (`#index` when it has none).
        node: String,
        /// The model's default-domain opset.
        opset: i64,
    },
    /// The model as a whole is not usable: no graph, no default opset or an
    /// unsupported one, not exactly one input and one output, a non-float
    /// input.
    #[error("model: {message}")]
    Model {
        /// What is wrong.
        message: String,
    },
    /// The graph's structure is broken at a node: a cycle, a value used but
    /// never produced, a value produced twice, a foreign domain.
    #[error("node {node:?}: {message}")]
    Graph {
        /// The node's name (`#index` when it has none).
        node: String,
        /// What is wrong.
        message: String,
    },
    /// A node's attribute is missing, of the wrong type, or out of range.
    #[error("node {node:?} ({op_type}): attribute {attribute:?}: {message}")]
    Attribute {
        /// The node's name.
        node: String,
        /// The node's op type.
        op_type: String,
        /// The attribute's name.
        attribute: String,
        /// What is wrong.
        message: String,
    },
    /// A node cannot take the shapes of its inputs: this is how an input
    /// size the graph cannot take is reported.
    #[error("node {node:?} ({op_type}): {message}")]
    Shape {
        /// The node's name.
        node: String,
        /// The node's op type.
        op_type: String,
        /// What does not fit.
        message: String,
    },
    /// An index-like input (a shape, axes, indices, bounds) depends on the
    /// graph input instead of being a constant, or an op that only constant
    /// folding supports meets a runtime value.
    #[error("node {node:?} ({op_type}): input {input:?} must be a constant but depends on the graph input")]
    NotConstant {
        /// The node's name.
        node: String,
        /// The node's op type.
        op_type: String,
        /// The input's value name.
        input: String,
    },
    /// Evaluating a node on constants failed (wrong types, division by
    /// zero, an op that is not folded on constants, a result too large).
    #[error("node {node:?} ({op_type}): constant folding: {message}")]
    Fold {
        /// The node's name.
        node: String,
        /// The node's op type.
        op_type: String,
        /// What went wrong.
        message: String,
    },
    /// The input shape given to [`crate::OnnxModel::plan`] does not fit the
    /// declared input.
    #[error("input shape {shape:?}: {message}")]
    InputShape {
        /// The shape asked for.
        shape: Vec<usize>,
        /// What is wrong.
        message: String,
    },
    /// The plan's runtime values would hold more elements than the limit.
    #[error("the plan's values hold more than {limit} elements in all")]
    PlanTooLarge {
        /// The largest total accepted.
        limit: u64,
    },
}

/// Shorthand for results of this crate.
pub type Result<T, E = OnnxError> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_one_line_and_escape_names() {
        let e = OnnxError::Shape {
            node: "bad\nname".into(),
            op_type: "Conv".into(),
            message: "kernel 5 > padded input 3".into(),
        };
        let text = e.to_string();
        assert_eq!(
            text,
            "node \"bad\\nname\" (Conv): kernel 5 > padded input 3"
        );
        assert!(!text.contains('\n'));
    }

    #[test]
    fn unsupported_op_names_op_node_and_opset() {
        let e = OnnxError::UnsupportedOp {
            op_type: "LSTM".into(),
            node: "/rnn/LSTM".into(),
            opset: 17,
        };
        assert_eq!(
            e.to_string(),
            "node \"/rnn/LSTM\": op \"LSTM\" (opset 17) is not supported"
        );
    }
}
