//! TorchRay's smooth masks (`MaskGenerator`): a low-resolution parameter
//! grid turned into a smooth mask by a smooth max of Gaussian-like bumps,
//! with the backward pass that the optimisation needs.

use crate::error::{AttributionError, Result};
use rayon::prelude::*;

/// TorchRay's pooling temperature (`coldness`).
const COLDNESS: f64 = 20.0;

/// The geometry and bump weights of the masks of an `H x W` input with
/// parameters every `step` pixels and bumps of width `sigma`.
#[derive(Clone, Debug)]
pub(crate) struct MaskGenerator {
    /// The input's height and width.
    pub(crate) shape: (usize, usize),
    /// `round(sigma)`, the margin cropped off the full mask.
    margin: usize,
    padding: usize,
    radius: usize,
    /// The parameter grid, `ceil(H / step) x ceil(W / step)`.
    pub(crate) shape_in: (usize, usize),
    /// The unfolded grid (the geometry test reads it).
    #[cfg_attr(not(test), allow(dead_code))]
    shape_mid: (usize, usize),
    /// The full mask, margin included.
    pub(crate) shape_out: (usize, usize),
    /// `(2 radius + 1)^2` bump weights per pixel of the full mask.
    weight: Vec<f64>,
    /// The grid row (column) each full-mask row (column) reads through
    /// the nearest upsampling, before the bump's offset.
    near: (Vec<usize>, Vec<usize>),
}

/// What [`MaskGenerator::generate`] keeps for its backward pass.
pub(crate) struct MaskCache {
    /// Per area, per full-mask pixel, per bump: the weighted parameters.
    m: Vec<f64>,
    /// The same layout: their softmax weights.
    s: Vec<f64>,
    /// Per area, per pixel: the pooled value before clamping.
    pooled: Vec<f64>,
}

impl MaskGenerator {
    /// TorchRay's construction (its float32 arithmetic for the bump
    /// centres, so that the same pixels fall in the same cells).
    pub(crate) fn new(shape: (usize, usize), step: usize, sigma: f64) -> Result<Self> {
        if step == 0 || step > 4096 || !(sigma.is_finite() && sigma > 0.0 && sigma <= 4096.0) {
            return Err(AttributionError::InvalidOption(format!(
                "extremal perturbation: step must lie in 1..=4096 and sigma in (0, 4096], got {step} and {sigma}"
            )));
        }
        if shape.0 == 0 || shape.1 == 0 || shape.0 > 1 << 14 || shape.1 > 1 << 14 {
            return Err(AttributionError::InvalidOption(format!(
                "extremal perturbation: input of {} x {} pixels",
                shape.0, shape.1
            )));
        }
        let s = step as f64;
        let margin_f = sigma;
        let padding = 1 + ((margin_f + sigma) / s).ceil() as usize;
        let radius = 1 + (sigma / s).ceil() as usize;
        let side = 2 * radius + 1;
        let shape_in = (shape.0.div_ceil(step), shape.1.div_ceil(step));
        let mid = |z: usize| (z + 2 * padding + 1).saturating_sub(side);
        let shape_mid = (mid(shape_in.0), mid(shape_in.1));
        if shape_mid.0 == 0 || shape_mid.1 == 0 {
            return Err(AttributionError::InvalidOption(
                "extremal perturbation: the mask grid is empty".into(),
            ));
        }
        let shape_up = (step * shape_mid.0, step * shape_mid.1);
        let shape_out = (shape_up.0 - step + 1, shape_up.1 - step + 1);
        let inv = (
            shape_mid.0 as f32 / shape_up.0 as f32,
            shape_mid.1 as f32 / shape_up.1 as f32,
        );
        let (ho, wo) = shape_out;
        let mut weight = vec![0.0; side * side * ho * wo];
        let margin32 = margin_f as f32;
        let step32 = step as f32;
        let sigma32 = sigma as f32;
        for ky in 0..side {
            for kx in 0..side {
                let k = ky * side + kx;
                for uy in 0..ho {
                    let iy = (inv.0 * uy as f32).floor() + ky as f32 - padding as f32;
                    let dy = uy as f32 - (margin32 + step32 * iy);
                    for ux in 0..wo {
                        let ix = (inv.1 * ux as f32).floor() + kx as f32 - padding as f32;
                        let dx = ux as f32 - (margin32 + step32 * ix);
                        let delta = (dy * dy + dx * dx).sqrt();
                        let z = f64::from(delta / sigma32);
                        let over = (z - 0.5).max(0.0);
                        weight[(k * ho + uy) * wo + ux] =
                            f64::from((-2.0 * over * over).exp() as f32);
                    }
                }
            }
        }
        // TorchRay's legacy nearest upsampling from mid to up, its float32
        // scale.
        let near = |mid: usize, up: usize, out: usize| -> Vec<usize> {
            let scale = mid as f32 / up as f32;
            (0..out)
                .map(|u| ((u as f32 * scale).floor() as usize).min(mid - 1))
                .collect()
        };
        let near = (
            near(shape_mid.0, shape_up.0, shape_out.0),
            near(shape_mid.1, shape_up.1, shape_out.1),
        );
        Ok(Self {
            shape,
            near,
            margin: round_half_even(margin_f),
            padding,
            radius,
            shape_in,
            shape_mid,
            shape_out,
            weight,
        })
    }

    fn side(&self) -> usize {
        2 * self.radius + 1
    }

    /// The parameter cell that full-mask pixel `(uy, ux)` reads for bump
    /// `(ky, kx)`, if inside the grid (the unfold's zero padding outside).
    fn source(&self, ky: usize, kx: usize, uy: usize, ux: usize) -> Option<(usize, usize)> {
        let py = (self.near.0[uy] + ky).checked_sub(self.padding)?;
        let px = (self.near.1[ux] + kx).checked_sub(self.padding)?;
        (py < self.shape_in.0 && px < self.shape_in.1).then_some((py, px))
    }

    /// The masks of `params` (`areas` grids of `shape_in`, row-major):
    /// `(cropped, full, cache)`, the cropped ones `areas x H x W` (what
    /// perturbs the input), the full ones `areas x shape_out` (what the
    /// area constraint ranks), both clamped to [0, 1]. Rows of the full
    /// mask are computed in parallel, each pixel by one task.
    pub(crate) fn generate(&self, params: &[f64], areas: usize) -> (Vec<f64>, Vec<f64>, MaskCache) {
        let (hi, wi) = self.shape_in;
        let (ho, wo) = self.shape_out;
        let side = self.side();
        let k_all = side * side;
        let plane = ho * wo;
        let mut m = vec![0.0; areas * plane * k_all];
        let mut s = vec![0.0; areas * plane * k_all];
        let mut pooled = vec![0.0; areas * plane];
        for a in 0..areas {
            let p = &params[a * hi * wi..(a + 1) * hi * wi];
            let span = a * plane * k_all..(a + 1) * plane * k_all;
            m[span.clone()]
                .par_chunks_mut(wo * k_all)
                .zip(s[span].par_chunks_mut(wo * k_all))
                .zip(pooled[a * plane..(a + 1) * plane].par_chunks_mut(wo))
                .enumerate()
                .for_each(|(uy, ((m_row, s_row), pooled_row))| {
                    for ux in 0..wo {
                        let at = uy * wo + ux;
                        let mv = &mut m_row[ux * k_all..(ux + 1) * k_all];
                        for ky in 0..side {
                            for kx in 0..side {
                                let k = ky * side + kx;
                                let v = self
                                    .source(ky, kx, uy, ux)
                                    .map_or(0.0, |(py, px)| p[py * wi + px]);
                                mv[k] = self.weight[k * plane + at] * v;
                            }
                        }
                        let sv = &mut s_row[ux * k_all..(ux + 1) * k_all];
                        softmax_into(mv, sv);
                        pooled_row[ux] = mv.iter().zip(sv.iter()).map(|(x, w)| x * w).sum();
                    }
                });
        }
        let full: Vec<f64> = pooled.iter().map(|v| v.clamp(0.0, 1.0)).collect();
        let (h, w) = self.shape;
        let mut cropped = Vec::with_capacity(areas * h * w);
        for a in 0..areas {
            for y in 0..h {
                let row = (a * ho + self.margin + y) * wo + self.margin;
                cropped.extend_from_slice(&full[row..row + w]);
            }
        }
        (cropped, full, MaskCache { m, s, pooled })
    }

    /// The gradient with respect to the parameters, given the gradients
    /// with respect to the cropped masks (`areas x H x W`) and the full
    /// masks (`areas x shape_out`). Each pixel's contributions are computed
    /// in parallel by rows, then added to the parameters in a fixed order
    /// (pixel by pixel, bump by bump).
    pub(crate) fn backward(
        &self,
        cache: &MaskCache,
        grad_cropped: &[f64],
        grad_full: &[f64],
        areas: usize,
    ) -> Vec<f64> {
        let (hi, wi) = self.shape_in;
        let (ho, wo) = self.shape_out;
        let (h, w) = self.shape;
        let side = self.side();
        let k_all = side * side;
        let plane = ho * wo;
        let mut contrib = vec![0.0; areas * plane * k_all];
        contrib
            .par_chunks_mut(wo * k_all)
            .enumerate()
            .for_each(|(row, out)| {
                let (a, uy) = (row / ho, row % ho);
                for ux in 0..wo {
                    let at = uy * wo + ux;
                    let mut g = grad_full[a * plane + at];
                    let (y, x) = (uy.wrapping_sub(self.margin), ux.wrapping_sub(self.margin));
                    if y < h && x < w {
                        g += grad_cropped[(a * h + y) * w + x];
                    }
                    let pre = cache.pooled[a * plane + at];
                    // Clamp passes the gradient where 0 <= pre <= 1.
                    if g == 0.0 || !(0.0..=1.0).contains(&pre) {
                        continue;
                    }
                    let base = (a * plane + at) * k_all;
                    let (mv, sv) = (&cache.m[base..base + k_all], &cache.s[base..base + k_all]);
                    for k in 0..k_all {
                        // d pooled / d m_k = s_k (1 + c (m_k - pooled)).
                        let d = sv[k] * (1.0 + COLDNESS * (mv[k] - pre));
                        out[ux * k_all + k] = g * d * self.weight[k * plane + at];
                    }
                }
            });
        let mut g_params = vec![0.0; areas * hi * wi];
        for a in 0..areas {
            for uy in 0..ho {
                for ux in 0..wo {
                    let base = (a * plane + uy * wo + ux) * k_all;
                    for ky in 0..side {
                        for kx in 0..side {
                            let c = contrib[base + ky * side + kx];
                            if c == 0.0 {
                                continue;
                            }
                            if let Some((py, px)) = self.source(ky, kx, uy, ux) {
                                g_params[a * hi * wi + py * wi + px] += c;
                            }
                        }
                    }
                }
            }
        }
        g_params
    }
}

/// `softmax(c v)` into `out`.
fn softmax_into(v: &[f64], out: &mut [f64]) {
    let max = v.iter().fold(f64::NEG_INFINITY, |a, &b| a.max(b));
    let mut sum = 0.0;
    for (o, &x) in out.iter_mut().zip(v) {
        *o = (COLDNESS * (x - max)).exp();
        sum += *o;
    }
    out.iter_mut().for_each(|o| *o /= sum);
}

/// Python's `round` (half to even).
fn round_half_even(v: f64) -> usize {
    let r = v.round();
    let r = if (v - v.trunc()).abs() == 0.5 && r % 2.0 != 0.0 {
        r - v.signum()
    } else {
        r
    };
    r.max(0.0) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn geometry_is_torchray_s() {
        // 32 x 32 with step 1, sigma 3 (the fixtures' scaled defaults).
        let g = MaskGenerator::new((32, 32), 1, 3.0).unwrap();
        assert_eq!(g.padding, 7);
        assert_eq!(g.radius, 4);
        assert_eq!(g.shape_in, (32, 32));
        assert_eq!(g.shape_mid, (38, 38));
        assert_eq!(g.shape_out, (38, 38));
        assert_eq!(g.margin, 3);
        // 224 x 224, step 7, sigma 21 (TorchRay's defaults).
        let g = MaskGenerator::new((224, 224), 7, 21.0).unwrap();
        assert_eq!((g.padding, g.radius, g.shape_in), (7, 4, (32, 32)));
        assert_eq!((g.shape_mid, g.shape_out), ((38, 38), (260, 260)));
        assert_eq!(round_half_even(2.5), 2);
        assert_eq!(round_half_even(3.5), 4);
        assert_eq!(round_half_even(21.0), 21);
    }

    #[test]
    fn all_ones_make_a_mask_of_ones_inside() {
        let g = MaskGenerator::new((12, 12), 2, 2.0).unwrap();
        let (hi, wi) = g.shape_in;
        let (cropped, full, _) = g.generate(&vec![1.0; hi * wi], 1);
        assert_eq!(cropped.len(), 144);
        assert_eq!(full.len(), g.shape_out.0 * g.shape_out.1);
        assert!(cropped.iter().all(|&v| v > 0.9 && v <= 1.0), "{cropped:?}");
        let (zeros, _, _) = g.generate(&vec![0.0; hi * wi], 1);
        assert!(zeros.iter().all(|&v| v == 0.0));
    }

    /// The backward pass against central differences, in f64.
    #[test]
    fn backward_is_the_gradient() {
        let g = MaskGenerator::new((9, 8), 2, 1.5).unwrap();
        let (hi, wi) = g.shape_in;
        let n = 2 * hi * wi;
        let params: Vec<f64> = (0..n)
            .map(|i| 0.15 + 0.7 * ((i * 37 % 11) as f64 / 11.0))
            .collect();
        let (h, w) = g.shape;
        let plane = g.shape_out.0 * g.shape_out.1;
        let wc: Vec<f64> = (0..2 * h * w)
            .map(|i| ((i * 13 % 7) as f64 - 3.0) / 5.0)
            .collect();
        let wf: Vec<f64> = (0..2 * plane)
            .map(|i| ((i * 5 % 9) as f64 - 4.0) / 9.0)
            .collect();
        let loss = |p: &[f64]| {
            let (c, f, _) = g.generate(p, 2);
            c.iter().zip(&wc).map(|(a, b)| a * b).sum::<f64>()
                + f.iter().zip(&wf).map(|(a, b)| a * b).sum::<f64>()
        };
        let (_, _, cache) = g.generate(&params, 2);
        let analytic = g.backward(&cache, &wc, &wf, 2);
        for i in (0..n).step_by(3) {
            let e = 1e-6;
            let mut up = params.clone();
            up[i] += e;
            let mut down = params.clone();
            down[i] -= e;
            let numeric = (loss(&up) - loss(&down)) / (2.0 * e);
            assert!(
                (numeric - analytic[i]).abs() <= 1e-6 * (1.0 + numeric.abs()),
                "param {i}: numeric {numeric}, analytic {}",
                analytic[i]
            );
        }
    }
}
