//! TorchRay's blur perturbation: a pyramid of increasingly blurred copies
//! of the input, indexed by the mask with linear interpolation between
//! levels.

use crate::error::{AttributionError, Result};
use sightline_tensor::blur::gaussian_kernel;
use sightline_tensor::{Element, Tensor};

/// TorchRay's `max_blur`.
const MAX_BLUR: f64 = 20.0;

/// `num_levels` copies of one C x H x W image, level `l` blurred with
/// `sigma = (1 - l / (L - 1)) max_blur` (level `L - 1` is the image itself).
pub(crate) struct Pyramid {
    levels: Vec<Vec<f64>>,
    channels: usize,
    hw: (usize, usize),
}

impl Pyramid {
    /// The pyramid of `x` (1 x C x H x W).
    pub(crate) fn blur<T: Element>(x: &Tensor<T>, num_levels: usize) -> Result<Self> {
        let [n, c, h, w] = x.dims4("extremal perturbation")?;
        if n != 1 || !(2..=64).contains(&num_levels) {
            return Err(AttributionError::InvalidOption(format!(
                "extremal perturbation takes one image and 2 to 64 blur levels, got {:?} and {num_levels}",
                x.shape()
            )));
        }
        let image: Vec<f64> = x.data().iter().map(|v| v.to_f64_lossless()).collect();
        let last = (num_levels - 1) as f32;
        let levels = (0..num_levels)
            .map(|l| {
                // torch.linspace(0, 1, L) and (1 - s) * max_blur, in float32.
                let s = l as f32 / last;
                let sigma = f64::from((1.0 - s) * MAX_BLUR as f32);
                blur_zero_padded(&image, c, (h, w), sigma)
            })
            .collect();
        Ok(Self {
            levels,
            channels: c,
            hw: (h, w),
        })
    }

    /// The perturbed images for `masks` (`areas x H x W` values in [0, 1]):
    /// `areas x C x H x W`, each pixel between the levels `floor(m (L -
    /// 1))` and the next, linearly.
    pub(crate) fn apply(&self, masks: &[f64]) -> Vec<f64> {
        let (c, (h, w)) = (self.channels, self.hw);
        let hw = h * w;
        let top = self.levels.len() - 1;
        let mut out = Vec::with_capacity(masks.len() * c);
        for mask in masks.chunks_exact(hw) {
            for ch in 0..c {
                for (p, &m) in mask.iter().enumerate() {
                    let (k, frac) = level(m, top);
                    let y0 = self.levels[k][ch * hw + p];
                    let y1 = self.levels[(k + 1).min(top)][ch * hw + p];
                    out.push((1.0 - frac) * y0 + frac * y1);
                }
            }
        }
        out
    }

    /// The gradient with respect to the masks given `grad` with respect
    /// to the perturbed images: `(L - 1) sum_c grad (y1 - y0)`, the floor
    /// taken as constant (as PyTorch differentiates it).
    pub(crate) fn apply_backward(&self, masks: &[f64], grad: &[f64]) -> Vec<f64> {
        let (c, (h, w)) = (self.channels, self.hw);
        let hw = h * w;
        let top = self.levels.len() - 1;
        let mut out = vec![0.0; masks.len()];
        for (a, mask) in masks.chunks_exact(hw).enumerate() {
            for (p, &m) in mask.iter().enumerate() {
                let (k, _) = level(m, top);
                let mut g = 0.0;
                for ch in 0..c {
                    let y0 = self.levels[k][ch * hw + p];
                    let y1 = self.levels[(k + 1).min(top)][ch * hw + p];
                    g += grad[(a * c + ch) * hw + p] * (y1 - y0);
                }
                out[a * hw + p] = g * top as f64;
            }
        }
        out
    }
}

/// The level below `m (L - 1)` and the fraction above it.
fn level(m: f64, top: usize) -> (usize, f64) {
    let v = m * top as f64;
    let k = v.floor();
    ((k.max(0.0) as usize).min(top), v - k)
}

/// TorchRay's `imsmooth(x, sigma)` with its default zero padding: the taps
/// of [`gaussian_kernel`] (sigma 0 is the identity), vertical then
/// horizontal. (The tensor crate's `gaussian_blur` pads by replicating the
/// edge, as TorchRay's saliency smoothing asks.)
fn blur_zero_padded(image: &[f64], c: usize, (h, w): (usize, usize), sigma: f64) -> Vec<f64> {
    let taps = gaussian_kernel(sigma);
    let r = taps.len() / 2;
    let hw = h * w;
    let mut vertical = vec![0.0; c * hw];
    for ch in 0..c {
        for y in 0..h {
            for (t, &k) in taps.iter().enumerate() {
                let Some(sy) = (y + t).checked_sub(r).filter(|&sy| sy < h) else {
                    continue;
                };
                for x in 0..w {
                    vertical[ch * hw + y * w + x] += k * image[ch * hw + sy * w + x];
                }
            }
        }
    }
    let mut out = vec![0.0; c * hw];
    for ch in 0..c {
        for y in 0..h {
            for x in 0..w {
                let mut acc = 0.0;
                for (t, &k) in taps.iter().enumerate() {
                    if let Some(sx) = (x + t).checked_sub(r).filter(|&sx| sx < w) {
                        acc += k * vertical[ch * hw + y * w + sx];
                    }
                }
                out[ch * hw + y * w + x] = acc;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image() -> Tensor<f64> {
        Tensor::from_vec(
            [1, 2, 6, 5],
            (0..60).map(|v| (v as f64 * 0.7).sin()).collect(),
        )
        .unwrap()
    }

    #[test]
    fn the_top_level_is_the_image_and_masks_interpolate() {
        let x = image();
        let p = Pyramid::blur(&x, 8).unwrap();
        assert_eq!(p.levels[7], x.data());
        let ones = p.apply(&[1.0; 30]);
        assert_eq!(ones, x.data());
        let zeros = p.apply(&[0.0; 30]);
        assert_eq!(zeros, p.levels[0]);
        // Halfway between levels 3 and 4.
        let half = p.apply(&[0.5; 30]);
        for (i, got) in half.iter().enumerate() {
            let want = 0.5 * p.levels[3][i] + 0.5 * p.levels[4][i];
            assert!((got - want).abs() < 1e-12);
        }
    }

    #[test]
    fn apply_backward_is_the_gradient_between_levels() {
        let p = Pyramid::blur(&image(), 5).unwrap();
        let masks: Vec<f64> = (0..60)
            .map(|i| 0.03 + 0.9 * ((i * 7 % 13) as f64 / 13.0))
            .collect();
        let grad: Vec<f64> = (0..120).map(|i| ((i * 3 % 5) as f64 - 2.0) / 3.0).collect();
        let analytic = p.apply_backward(&masks, &grad);
        let loss = |m: &[f64]| {
            p.apply(m)
                .iter()
                .zip(&grad)
                .map(|(a, b)| a * b)
                .sum::<f64>()
        };
        for i in 0..60 {
            let e = 1e-7;
            let mut up = masks.clone();
            up[i] += e;
            let mut down = masks.clone();
            down[i] -= e;
            let numeric = (loss(&up) - loss(&down)) / (2.0 * e);
            assert!(
                (numeric - analytic[i]).abs() < 1e-6,
                "{i}: {numeric} vs {}",
                analytic[i]
            );
        }
    }
}
