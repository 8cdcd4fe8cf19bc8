//! Reductions of (activation, pseudo-gradient) pairs to maps, and the
//! resize and smoothing of TorchRay's saliency contract.

use crate::error::{AttributionError, Result};
use sightline_tensor::blur::gaussian_blur;
use sightline_tensor::reduce::{amax_axis, mean_axis, sum_axis};
use sightline_tensor::resize::resize2d;
use sightline_tensor::{Element, ResizeMode, Tensor};

/// Where the map is resized to after the reduction.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Resize {
    /// Keep the probe's spatial size.
    #[default]
    Off,
    /// The input's height and width.
    Input,
    /// A given size.
    To {
        /// Width in pixels.
        width: usize,
        /// Height in pixels.
        height: usize,
    },
}

/// `max over channels of |g|` (gradient, deconvnet, guided backprop).
pub fn max_abs_channels<T: Element>(g: &Tensor<T>) -> Result<Tensor<T>> {
    Ok(amax_axis(&g.map(|v| v.abs()), 1)?)
}

/// `sum over channels of x` (excitation backprop).
pub fn sum_channels<T: Element>(x: &Tensor<T>) -> Result<Tensor<T>> {
    Ok(sum_axis(x, 1)?)
}

/// `sum over channels of a * g` (linear approximation).
pub fn sum_channels_product<T: Element>(a: &Tensor<T>, g: &Tensor<T>) -> Result<Tensor<T>> {
    let p = a.zip_map(g, "linear_approx", |a, g| a * g)?;
    Ok(sum_axis(&p, 1)?)
}

/// Grad-CAM: `w_c = mean over space of g_c`, map `sum_c w_c a_c`, clamped at 0 when `relu`.
pub fn grad_cam<T: Element>(
    a: &Tensor<T>,
    g: &Tensor<T>,
    layer: &str,
    relu: bool,
) -> Result<Tensor<T>> {
    if a.ndim() != 4 {
        return Err(AttributionError::NotSpatial {
            method: "grad-CAM",
            layer: layer.to_string(),
            shape: a.shape().to_vec(),
        });
    }
    let [n, c, h, w] = g.dims4("grad_cam")?;
    let flat = g.clone().reshape([n, c, h * w])?;
    let weights = mean_axis(&flat, 2)?; // n x c x 1
    let mut map: Tensor<T> = Tensor::zeros([n, 1, h, w]);
    for i in 0..n {
        for ch in 0..c {
            let wgt = weights.data()[i * c + ch];
            let plane = &a.data()[(i * c + ch) * h * w..(i * c + ch + 1) * h * w];
            map.data_mut()[i * h * w..(i + 1) * h * w]
                .iter_mut()
                .zip(plane)
                .for_each(|(m, &v)| *m += v * wgt);
        }
    }
    if relu {
        map = map.map(|v| v.max(T::zero()));
    }
    Ok(map)
}

/// Resizes a map to the asked size (no-op for [`Resize::Off`]).
pub fn resize_map<T: Element>(
    map: Tensor<T>,
    resize: Resize,
    input_hw: (usize, usize),
    mode: ResizeMode,
) -> Result<Tensor<T>> {
    let out = match resize {
        Resize::Off => return Ok(map),
        Resize::Input => input_hw,
        Resize::To { width, height } => (height, width),
    };
    if out.0 == 0 || out.1 == 0 {
        return Err(AttributionError::InvalidOption(format!(
            "cannot resize a map to {} x {}",
            out.1, out.0
        )));
    }
    if map.ndim() != 4 {
        return Err(AttributionError::InvalidOption(format!(
            "only spatial maps can be resized, this one has shape {:?}",
            map.shape()
        )));
    }
    Ok(resize2d(&map, out, mode)?)
}

/// Gaussian smoothing with `sigma = smooth * max(h, w)` (no-op when `smooth == 0`).
pub fn smooth_map<T: Element>(map: Tensor<T>, smooth: f64) -> Result<Tensor<T>> {
    if smooth == 0.0 {
        return Ok(map);
    }
    if !(smooth.is_finite() && smooth > 0.0) {
        return Err(AttributionError::InvalidOption(format!(
            "smooth must be a non-negative number, got {smooth}"
        )));
    }
    let [_, _, h, w] = map.dims4("smooth")?;
    Ok(gaussian_blur(&map, smooth * h.max(w) as f64)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grad_cam_weights_by_mean_gradient() {
        // one item, two channels, 1 x 2 spatial
        let a = Tensor::<f64>::from_vec([1, 2, 1, 2], vec![1., 2., 3., -4.]).unwrap();
        let g = Tensor::from_vec([1, 2, 1, 2], vec![1., 1., -1., 0.]).unwrap();
        // w = [1, -0.5]; map = [1 - 1.5, 2 + 2] = [-0.5, 4]
        assert_eq!(grad_cam(&a, &g, "l", false).unwrap().data(), &[-0.5, 4.]);
        assert_eq!(grad_cam(&a, &g, "l", true).unwrap().data(), &[0., 4.]);
        let flat = Tensor::<f64>::zeros([1, 4]);
        assert!(matches!(
            grad_cam(&flat, &flat, "fc", true),
            Err(AttributionError::NotSpatial { .. })
        ));
    }

    #[test]
    fn reductions() {
        let g = Tensor::<f64>::from_vec([1, 2, 1, 2], vec![1., -3., -2., 2.]).unwrap();
        assert_eq!(max_abs_channels(&g).unwrap().data(), &[2., 3.]);
        assert_eq!(sum_channels(&g).unwrap().data(), &[-1., -1.]);
        assert_eq!(sum_channels_product(&g, &g).unwrap().data(), &[5., 13.]);
    }
}
