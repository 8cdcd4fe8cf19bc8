//! Where a model's tensors come from (random initialisation or a safetensors
//! file) and how they are written back.

pub(crate) mod dtype;
// `Model::from_safetensors` maps its file through `file::map_regular_file`
// (wired by the lead); until then nothing in the crate calls it.
pub(crate) mod file;
pub(crate) mod load;
pub(crate) mod random;
pub(crate) mod save;

use crate::error::Result;
use sightline_tensor::{Element, Tensor};
use std::sync::Arc;

/// How a tensor is initialised when it is not loaded.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Init {
    /// Normal with mean 0 and standard deviation `sqrt(2 / fan)` (Kaiming, ReLU gain).
    Kaiming {
        /// Fan used for the variance.
        fan: usize,
    },
    /// All zeros.
    Zeros,
    /// All ones.
    Ones,
}

/// Supplies the tensors of a model while it is being built, by state-dict key.
pub(crate) trait WeightSource<T: Element> {
    /// The tensor `key` with shape `shape`.
    fn tensor(&mut self, key: &str, shape: &[usize], init: Init) -> Result<Arc<Tensor<T>>>;

    /// Declares an optional integer counter (`num_batches_tracked`): accepted
    /// and ignored when present.
    fn counter(&mut self, key: &str) -> Result<()>;
}

/// A source of zeros, to build large models cheaply in tests.
#[cfg(test)]
pub(crate) struct ZeroSource;

#[cfg(test)]
impl<T: Element> WeightSource<T> for ZeroSource {
    fn tensor(&mut self, _key: &str, shape: &[usize], init: Init) -> Result<Arc<Tensor<T>>> {
        Ok(Arc::new(match init {
            Init::Ones => Tensor::ones(shape.to_vec()),
            _ => Tensor::zeros(shape.to_vec()),
        }))
    }

    fn counter(&mut self, _key: &str) -> Result<()> {
        Ok(())
    }
}
