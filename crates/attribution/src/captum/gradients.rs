//! Captum's `Saliency` and `InputXGradient`.

use crate::error::Result;
use crate::explainer::Explainer;
use crate::target::Target;
use sightline_autograd::{Retain, RuleSet};
use sightline_layers::Model;
use sightline_tensor::{Element, Tensor};

/// The plain gradient of the target logits with respect to the input.
pub(crate) fn input_gradient<T: Element>(
    model: &Model<T>,
    x: &Tensor<T>,
    target: &Target<T>,
) -> Result<Tensor<T>> {
    let ex = Explainer::with_retention(model, x, Retain::Minimal, &[])?;
    let seed = target.seed(ex.logits().shape())?;
    ex.gradient_at("", &seed, &RuleSet::standard())
}

/// `Saliency`: the input gradient, its absolute value when `abs` (Captum's default).
pub fn saliency<T: Element>(
    model: &Model<T>,
    x: &Tensor<T>,
    target: &Target<T>,
    abs: bool,
) -> Result<Tensor<T>> {
    let g = input_gradient(model, x, target)?;
    Ok(if abs { g.map(|v| v.abs()) } else { g })
}

/// `InputXGradient`: `x * grad`.
pub fn input_x_gradient<T: Element>(
    model: &Model<T>,
    x: &Tensor<T>,
    target: &Target<T>,
) -> Result<Tensor<T>> {
    let g = input_gradient(model, x, target)?;
    Ok(x.zip_map(&g, "input_x_gradient", |x, g| x * g)?)
}
