//! The error type of the saliency methods.

use sightline_autograd::AutogradError;
use sightline_layers::LayerError;
use sightline_tensor::TensorError;
use thiserror::Error;

/// What went wrong while explaining, naming the problem.
#[derive(Debug, Error)]
pub enum AttributionError {
    /// The model rejected the input or its weights.
    #[error(transparent)]
    Layer(#[from] LayerError),
    /// The tape rejected a backward pass.
    #[error(transparent)]
    Autograd(#[from] AutogradError),
    /// A kernel rejected its operands.
    #[error(transparent)]
    Tensor(#[from] TensorError),
    /// A layer name that the model does not have.
    #[error("unknown layer `{name}`; the model's layers include: {known}")]
    UnknownLayer {
        /// The name asked for.
        name: String,
        /// Some of the model's layer paths.
        known: String,
    },
    /// A target class outside the model's classes.
    #[error("target class {target} out of range: the model has {num_classes} classes")]
    TargetOutOfRange {
        /// The class asked for.
        target: usize,
        /// Number of classes.
        num_classes: usize,
    },
    /// A list of targets whose length is not the batch size.
    #[error("{found} targets given for a batch of {expected}")]
    TargetCount {
        /// The batch size.
        expected: usize,
        /// Targets given.
        found: usize,
    },
    /// A seed tensor not shaped like the logits.
    #[error("seed tensor has shape {found:?}, the logits have shape {expected:?}")]
    SeedShape {
        /// The logits' shape.
        expected: Vec<usize>,
        /// The seed's shape.
        found: Vec<usize>,
    },
    /// A method that needs a spatial (N x C x H x W) layer was given another one.
    #[error(
        "{method} needs a 4-d (N x C x H x W) layer output, but `{layer}` has shape {shape:?}"
    )]
    NotSpatial {
        /// The method.
        method: &'static str,
        /// The layer.
        layer: String,
        /// Its output shape.
        shape: Vec<usize>,
    },
    /// An invalid option value.
    #[error("invalid option: {0}")]
    InvalidOption(String),
    /// A method name that is not known.
    #[error("unknown method `{name}`; known methods: {known}")]
    UnknownMethod {
        /// The name asked for.
        name: String,
        /// The known names.
        known: String,
    },
}

/// Result alias for attribution.
pub type Result<T> = std::result::Result<T, AttributionError>;
