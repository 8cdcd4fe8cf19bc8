//! Captum's `LayerGradCam` and `GuidedGradCam`.

use crate::error::Result;
use crate::explainer::Explainer;
use crate::postprocess::grad_cam;
use crate::target::Target;
use sightline_autograd::{Retain, RuleSet};
use sightline_layers::Model;
use sightline_tensor::resize::resize2d;
use sightline_tensor::{Element, ResizeMode, Tensor};

/// `LayerGradCam(layer)`: `sum_c mean(g_c) a_c` at the layer's output,
/// N x 1 x h x w, clamped at 0 only when `relu_attributions`.
pub fn layer_grad_cam<T: Element>(
    model: &Model<T>,
    x: &Tensor<T>,
    target: &Target<T>,
    layer: &str,
    relu_attributions: bool,
) -> Result<Tensor<T>> {
    let ex = Explainer::with_retention(model, x, Retain::Minimal, &[layer])?;
    cam(&ex, target, layer, relu_attributions)
}

fn cam<T: Element>(
    ex: &Explainer<'_, T>,
    target: &Target<T>,
    layer: &str,
    relu: bool,
) -> Result<Tensor<T>> {
    let seed = target.seed(ex.logits().shape())?;
    let s = ex.saliency(
        &crate::Method::LinearApprox,
        &Target::Seed(seed.clone()),
        &crate::SaliencyOptions::at(layer),
    )?;
    grad_cam(&s.activation, &s.gradient, layer, relu)
}

/// `GuidedGradCam(layer)`: Captum's guided backprop at the input times the
/// layer's Grad-CAM (clamped), upsampled to the input size with `mode`
/// (Captum's default: nearest), broadcast over the input channels.
pub fn guided_grad_cam<T: Element>(
    model: &Model<T>,
    x: &Tensor<T>,
    target: &Target<T>,
    layer: &str,
    mode: ResizeMode,
) -> Result<Tensor<T>> {
    let ex = Explainer::with_retention(model, x, Retain::Minimal, &[layer])?;
    let cam_map = cam(&ex, target, layer, true)?;
    let seed = target.seed(ex.logits().shape())?;
    let guided = ex.gradient_at("", &seed, &RuleSet::captum_guided_backprop())?;
    let [n, c, h, w] = guided.dims4("guided_grad_cam")?;
    let up = resize2d(&cam_map, (h, w), mode)?;
    let mut out = guided;
    for i in 0..n {
        let m = &up.data()[i * h * w..(i + 1) * h * w];
        for ch in 0..c {
            out.data_mut()[(i * c + ch) * h * w..(i * c + ch + 1) * h * w]
                .iter_mut()
                .zip(m)
                .for_each(|(v, &s)| *v *= s);
        }
    }
    Ok(out)
}
