//! The error type of building, loading and running models.

use sightline_autograd::AutogradError;
use thiserror::Error;

/// What went wrong with a layer or a model, naming the key, the layer path and the shapes involved.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum LayerError {
    /// An op failed on the tape.
    #[error(transparent)]
    Autograd(#[from] AutogradError),
    /// An ONNX file could not be read, or its graph planned.
    #[error(transparent)]
    Onnx(OnnxFailure),
    /// The weights file lacks a tensor the architecture needs.
    #[error("weights have no tensor `{key}` (expected shape {expected:?}); is the file for another architecture?")]
    MissingWeight {
        /// The state-dict key.
        key: String,
        /// The shape the architecture needs.
        expected: Vec<usize>,
    },
    /// The weights file holds a tensor the architecture does not use.
    #[error("weights hold a tensor `{key}` that the architecture does not use; is the file for another architecture?")]
    UnexpectedWeight {
        /// The state-dict key.
        key: String,
    },
    /// A tensor of the weights file has the wrong shape.
    #[error("weight `{key}` has shape {found:?}, the architecture expects {expected:?}")]
    WeightShape {
        /// The state-dict key.
        key: String,
        /// The shape the architecture needs.
        expected: Vec<usize>,
        /// The shape in the file.
        found: Vec<usize>,
    },
    /// A tensor of the weights file has a dtype that cannot be converted.
    #[error("weight `{key}` has dtype {dtype}; expected F32, F64, F16 or BF16 (I64 only for `num_batches_tracked`)")]
    WeightDtype {
        /// The state-dict key.
        key: String,
        /// The dtype in the file.
        dtype: String,
    },
    /// The weights are not a valid safetensors file.
    #[error("`{path}` is not a valid safetensors file: {message}")]
    CorruptWeights {
        /// Where the bytes came from (`<memory>` for a buffer).
        path: String,
        /// What the parser said.
        message: String,
    },
    /// Reading or writing a file failed.
    #[error("cannot access `{path}`: {message}")]
    Io {
        /// The file.
        path: String,
        /// The system's message.
        message: String,
    },
    /// The model input is not N x 3 x H x W.
    #[error("model input has shape {found:?}, expected {expected}")]
    InputShape {
        /// What was expected.
        expected: String,
        /// The shape found.
        found: Vec<usize>,
    },
    /// The input is too small: a window no longer fits at some layer.
    #[error("input too small: layer `{layer}` receives {}x{} (H x W): {message}", found.0, found.1)]
    InputTooSmall {
        /// The layer path where the forward pass failed.
        layer: String,
        /// Height and width reaching that layer.
        found: (usize, usize),
        /// Why it does not fit.
        message: String,
    },
    /// The architecture's configuration is invalid.
    #[error("invalid architecture: {message}")]
    Architecture {
        /// What is wrong.
        message: String,
    },
    /// No preset has this name.
    #[error("unknown preset `{name}`; known presets: {}", known.join(", "))]
    UnknownPreset {
        /// The name asked for.
        name: String,
        /// The known names.
        known: Vec<String>,
    },
    /// A layer path that is not one of the model's.
    #[error("{context} names layer `{path}`, which the model does not have")]
    UnknownLayer {
        /// The layer path.
        path: String,
        /// Who named it.
        context: String,
    },
    /// A transform that does not apply to this kind of model.
    #[error("{what} does not apply to {model}")]
    Unsupported {
        /// The transform.
        what: String,
        /// The model it was given.
        model: String,
    },
    /// A NaN or infinity where finite values are required.
    #[error("non-finite value (NaN or infinity) in {what}")]
    NonFinite {
        /// Where (`input`, `weight \`features.0.weight\``, ...).
        what: String,
    },
}

impl LayerError {
    /// An [`LayerError::Architecture`] error.
    pub(crate) fn arch(message: impl Into<String>) -> Self {
        Self::Architecture {
            message: message.into(),
        }
    }
}

/// An [`sightline_onnx::OnnxError`], shared so that [`LayerError`] stays
/// `Clone`; two compare equal when their messages do.
#[derive(Debug, Clone)]
pub struct OnnxFailure(pub std::sync::Arc<sightline_onnx::OnnxError>);

impl PartialEq for OnnxFailure {
    fn eq(&self, other: &Self) -> bool {
        self.0.to_string() == other.0.to_string()
    }
}

impl std::fmt::Display for OnnxFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for OnnxFailure {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0.source()
    }
}

impl From<sightline_onnx::OnnxError> for LayerError {
    fn from(e: sightline_onnx::OnnxError) -> Self {
        Self::Onnx(OnnxFailure(std::sync::Arc::new(e)))
    }
}

/// Result alias for this crate.
pub type Result<T> = std::result::Result<T, LayerError>;
