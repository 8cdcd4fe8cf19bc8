//! `Flatten`: `torch.flatten(x, 1)`.

use crate::error::Result;
use crate::module::Module;
use sightline_autograd::ops::shape::flatten;
use sightline_autograd::{Tape, Var};
use sightline_tensor::Element;

/// `torch.nn.Flatten()` / `torch.flatten(x, 1)`: N x (everything else).
///
/// torchvision's VGG, ResNet and AlexNet call `torch.flatten` as a function,
/// so their models run this in the current scope rather than as a named child.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Flatten;

impl<T: Element> Module<T> for Flatten {
    fn forward(&self, tape: &mut Tape<T>, x: &Var<T>) -> Result<Var<T>> {
        Ok(flatten(tape, x)?)
    }
}
