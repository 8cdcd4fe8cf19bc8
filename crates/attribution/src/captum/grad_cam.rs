//! Captum's `LayerGradCam` and `GuidedGradCam`.

use crate::error::Result;
use crate::explainer::{Explainer, SaliencyOptions};
use crate::method::Method;
use crate::postprocess::grad_cam;
use crate::target::Target;
use sightline_autograd::{Retain, RuleSet};
use sightline_layers::Model;
use sightline_tensor::resize::resize2d;
use sightline_tensor::{Element, ResizeMode, Tensor};

/// `LayerGradCam(layer)`: `sum_c mean(g_c) a_c` at the layer's output,
/// N x 1 x h x w, clamped at 0 only when `relu_attributions` (the
/// explainer's [`Method::LayerGradCam`], which does not clamp).
pub fn layer_grad_cam<T: Element>(
    model: &Model<T>,
    x: &Tensor<T>,
    target: &Target<T>,
    layer: &str,
    relu_attributions: bool,
) -> Result<Tensor<T>> {
    let ex = Explainer::with_retention(model, x, Retain::Minimal, &[layer])?;
    let cam = cam(&ex, target, layer, relu_attributions)?;
    Ok(cam)
}

fn cam<T: Element>(
    ex: &Explainer<'_, T>,
    target: &Target<T>,
    layer: &str,
    relu: bool,
) -> Result<Tensor<T>> {
    let s = ex.saliency(&Method::LinearApprox, target, &SaliencyOptions::at(layer))?;
    grad_cam(&s.activation, &s.gradient, layer, relu)
}

/// `GuidedGradCam(layer)`: Captum's guided backprop at the input times the
/// layer's Grad-CAM (clamped), upsampled to the input size with `mode`
/// (Captum's default: nearest, as [`Method::GuidedGradCam`] does),
/// broadcast over the input channels.
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
    guided_grad_cam_product(guided, &cam_map, mode)
}

/// `guided * upsample(cam)`: the guided gradient at the input (N x C x H x
/// W) times the clamped Grad-CAM (N x 1 x h x w) resized to H x W with
/// `mode`, broadcast over the channels.
pub fn guided_grad_cam_product<T: Element>(
    guided: Tensor<T>,
    cam: &Tensor<T>,
    mode: ResizeMode,
) -> Result<Tensor<T>> {
    let [n, c, h, w] = guided.dims4("guided_grad_cam")?;
    let up = resize2d(cam, (h, w), mode)?;
    let [un, uc, _, _] = up.dims4("guided_grad_cam")?;
    if un != n || uc != 1 {
        return Err(crate::AttributionError::InvalidOption(format!(
            "guided Grad-CAM: a map of shape {:?} for a gradient of shape {:?}",
            cam.shape(),
            guided.shape()
        )));
    }
    let plane = h * w;
    let mut out = guided;
    for (i, item) in out.data_mut().chunks_mut(c * plane).enumerate() {
        let m = &up.data()[i * plane..(i + 1) * plane];
        for channel in item.chunks_mut(plane) {
            channel.iter_mut().zip(m).for_each(|(v, &s)| *v *= s);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_product_broadcasts_the_upsampled_cam_over_channels() {
        // 1 item, 2 channels, 2 x 2; a 1 x 1 cam of 3 upsampled to 2 x 2.
        let g =
            Tensor::<f64>::from_vec([1, 2, 2, 2], vec![1., -2., 3., 0., 0.5, 1., -1., 2.]).unwrap();
        let cam = Tensor::from_vec([1, 1, 1, 1], vec![3.0]).unwrap();
        let p = guided_grad_cam_product(g, &cam, ResizeMode::Nearest).unwrap();
        assert_eq!(p.data(), &[3., -6., 9., 0., 1.5, 3., -3., 6.]);
        // Nearest from 1 x 2 to 2 x 2: columns keep their value.
        let g = Tensor::<f64>::full(vec![1, 1, 2, 2], 1.0);
        let cam = Tensor::from_vec([1, 1, 1, 2], vec![2.0, 5.0]).unwrap();
        let p = guided_grad_cam_product(g, &cam, ResizeMode::Nearest).unwrap();
        assert_eq!(p.data(), &[2., 5., 2., 5.]);
        let two = Tensor::<f64>::full(vec![2, 1, 1, 1], 1.0);
        let g = Tensor::<f64>::full(vec![1, 1, 2, 2], 1.0);
        assert!(guided_grad_cam_product(g, &two, ResizeMode::Nearest).is_err());
    }
}
