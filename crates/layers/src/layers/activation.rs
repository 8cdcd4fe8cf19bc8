//! `ReLU`.

use crate::error::Result;
use crate::module::Module;
use sightline_autograd::ops::relu::relu;
use sightline_autograd::{Tape, Var};
use sightline_tensor::Element;

/// `torch.nn.ReLU`: `max(x, 0)`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReLU;

impl<T: Element> Module<T> for ReLU {
    fn forward(&self, tape: &mut Tape<T>, x: &Var<T>) -> Result<Var<T>> {
        Ok(relu(tape, x)?)
    }
}
