//! The self-contained demo: a procedural image set with known object masks
//! ([`dataset`]), a small VGG trained on it by sightline's own autograd
//! ([`train`]), TorchRay's pointing game ([`pointing`]) on it or on a Pascal
//! VOC-style folder ([`voc`]), and the model shipped inside the binary
//! ([`embedded`]).

pub mod dataset;
pub mod pointing;
pub mod train;
pub mod voc;

use sightline_attribution::AttributionError;
use sightline_autograd::AutogradError;
use sightline_layers::LayerError;
use sightline_tensor::TensorError;
use thiserror::Error;

/// What went wrong in the demo, the training or the pointing game.
#[derive(Debug, Error)]
pub enum DemoError {
    /// The model rejected its input or weights.
    #[error(transparent)]
    Layer(#[from] LayerError),
    /// A backward pass failed.
    #[error(transparent)]
    Autograd(#[from] AutogradError),
    /// A kernel rejected its operands.
    #[error(transparent)]
    Tensor(#[from] TensorError),
    /// A saliency method failed.
    #[error(transparent)]
    Attribution(#[from] AttributionError),
    /// Reading or writing a file failed.
    #[error("cannot access `{path}`: {message}")]
    Io {
        /// The file or folder.
        path: String,
        /// The system's message.
        message: String,
    },
    /// An image could not be decoded or encoded.
    #[error("image `{path}`: {message}")]
    Image {
        /// The image file.
        path: String,
        /// The codec's message.
        message: String,
    },
    /// A Pascal VOC annotation file is malformed.
    #[error("annotation `{path}`: {message}")]
    Annotation {
        /// The XML file.
        path: String,
        /// What is wrong.
        message: String,
    },
    /// An option or a combination of options that cannot work.
    #[error("{0}")]
    Invalid(String),
}

/// The demo's result type.
pub type Result<T> = std::result::Result<T, DemoError>;

impl DemoError {
    /// An [`DemoError::Io`] for `path`.
    pub fn io(path: &std::path::Path, e: impl std::fmt::Display) -> Self {
        Self::Io {
            path: path.display().to_string(),
            message: e.to_string(),
        }
    }
}

/// The demo model shipped in the binary (`assets/demo_model.*`).
pub mod embedded {
    use super::{DemoError, Result};
    use sightline_layers::{Architecture, Model};

    /// The trained weights (float32 safetensors).
    pub const WEIGHTS: &[u8] = include_bytes!("../../assets/demo_model.safetensors");
    /// The model card: `{"architecture": ..., "classes": [...], ...}`.
    pub const CARD: &str = include_str!("../../assets/demo_model.json");

    /// The model card's fields that the demo reads.
    #[derive(Clone, Debug, serde::Deserialize, serde::Serialize)]
    pub struct Card {
        /// The architecture (sightline's zoo JSON).
        pub architecture: Architecture,
        /// Class names, in logit order.
        pub classes: Vec<String>,
        /// Side of the square training images, in pixels.
        pub image_size: usize,
        /// Per-channel mean subtracted from pixel values in `[0, 1]`.
        #[serde(default = "half")]
        pub mean: [f32; 3],
        /// Per-channel standard deviation dividing them.
        #[serde(default = "quarter")]
        pub std: [f32; 3],
    }

    fn half() -> [f32; 3] {
        [crate::demo::dataset::MEAN; 3]
    }

    fn quarter() -> [f32; 3] {
        [crate::demo::dataset::STD; 3]
    }

    /// Parses a model card.
    pub fn parse_card(text: &str) -> Result<Card> {
        let card: Card = serde_json::from_str(text)
            .map_err(|e| DemoError::Invalid(format!("cannot parse the demo model card: {e}")))?;
        card.architecture.validate()?;
        if card.classes.len() != card.architecture.num_classes() {
            return Err(DemoError::Invalid(format!(
                "the model card names {} classes for a model with {}",
                card.classes.len(),
                card.architecture.num_classes()
            )));
        }
        if card.std.iter().any(|s| !(s.is_finite() && *s > 0.0)) {
            return Err(DemoError::Invalid(format!(
                "the model card's std {:?} is not positive",
                card.std
            )));
        }
        Ok(card)
    }

    /// The embedded model and its card.
    pub fn model() -> Result<(sightline_layers::Model<f32>, Card)> {
        let card = parse_card(CARD)?;
        let model = Model::from_safetensors_bytes(&card.architecture, WEIGHTS)?;
        Ok((model, card))
    }
}
