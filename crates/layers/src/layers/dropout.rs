//! `Dropout`, the identity in inference.

use crate::error::Result;
use crate::module::Module;
use sightline_autograd::{Tape, Var};
use sightline_tensor::Element;

/// `torch.nn.Dropout` in inference mode: the identity. It records nothing; its
/// output is its input variable (its parent still registers it as the layer's
/// output).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Dropout {
    /// The drop probability of training mode (unused in inference).
    pub p: f64,
}

impl Default for Dropout {
    fn default() -> Self {
        Self { p: 0.5 }
    }
}

impl<T: Element> Module<T> for Dropout {
    fn forward(&self, _tape: &mut Tape<T>, x: &Var<T>) -> Result<Var<T>> {
        Ok(x.clone())
    }
}
