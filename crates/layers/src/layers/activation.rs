//! `ReLU`.

use crate::error::Result;
use crate::module::Module;
use sightline_autograd::ops::relu::{relu, relu_owned};
use sightline_autograd::{Tape, Var};
use sightline_tensor::Element;

/// `torch.nn.ReLU`: `max(x, 0)`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReLU;

impl<T: Element> Module<T> for ReLU {
    fn forward(&self, tape: &mut Tape<T>, x: &Var<T>) -> Result<Var<T>> {
        Ok(relu(tape, x)?)
    }

    /// In place when nothing else holds `x`'s value (see [`relu_owned`]).
    fn forward_owned(&self, tape: &mut Tape<T>, x: Var<T>) -> Result<Var<T>> {
        Ok(relu_owned(tape, x)?)
    }
}
