//! Extremal perturbation (Fong, Patrick and Vedaldi 2019) with TorchRay's
//! semantics: the mask of a given area that most preserves (or deletes)
//! the target's score, found by gradient steps on a smooth mask.

mod mask;
mod pyramid;

use crate::error::{AttributionError, Result};
use crate::explainer::Explainer;
use mask::MaskGenerator;
use pyramid::Pyramid;
use sightline_autograd::{Retain, RuleSet};
use sightline_layers::Model;
use sightline_tensor::{Element, Tensor};

/// Most optimisation steps taken (TorchRay's default is 800).
pub const MAX_ITERATIONS: usize = 100_000;

/// Which masks are sought.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ExtremalVariant {
    /// Keep the area that most preserves the target's score.
    Preserve,
    /// Delete the area that most lowers it.
    Delete,
    /// Both at once: preserve with the mask, delete with its complement.
    Dual,
}

impl std::str::FromStr for ExtremalVariant {
    type Err = AttributionError;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "preserve" => Ok(Self::Preserve),
            "delete" => Ok(Self::Delete),
            "dual" => Ok(Self::Dual),
            other => Err(AttributionError::InvalidOption(format!(
                "unknown extremal perturbation variant `{other}` (preserve, delete, dual)"
            ))),
        }
    }
}

/// Options of [`extremal_perturbation`]; the defaults are TorchRay's for a
/// 224 x 224 input.
#[derive(Clone, Debug, PartialEq)]
pub struct ExtremalOptions {
    /// Fractions of the image the masks keep, one mask each.
    pub areas: Vec<f64>,
    /// Optimisation steps.
    pub max_iter: usize,
    /// Levels of the blur pyramid.
    pub num_levels: usize,
    /// Pixels between mask parameters.
    pub step: usize,
    /// Width of the mask's bumps, in pixels.
    pub sigma: f64,
    /// Flip the perturbed input left-right on even steps.
    pub jitter: bool,
    /// Preserve, delete or both.
    pub variant: ExtremalVariant,
}

impl Default for ExtremalOptions {
    fn default() -> Self {
        Self {
            areas: vec![0.1],
            max_iter: 800,
            num_levels: 8,
            step: 7,
            sigma: 21.0,
            jitter: true,
            variant: ExtremalVariant::Preserve,
        }
    }
}

/// TorchRay's `extremal_perturbation(model, x, target, areas, ...)` with
/// the blur perturbation and the simple reward (the target's logit): for
/// one image `x` (1 x C x H x W), one mask per area, `areas x 1 x H x W`.
///
/// Each step builds the smooth masks from their parameters, perturbs the
/// input through the blur pyramid, runs the model forward and backward
/// (standard gradient), and takes an SGD step (learning rate 0.01,
/// momentum and dampening 0.9) on the reward plus the area constraint: the
/// sorted mask against a reference with `(1 - area)` of zeros, weighted by
/// 300, growing by 0.35% a step. Parameters start at 1 and are clamped to
/// [0, 1] after each step; the masks returned are those of the last step.
pub fn extremal_perturbation<T: Element>(
    model: &Model<T>,
    x: &Tensor<T>,
    target: usize,
    opts: &ExtremalOptions,
) -> Result<Tensor<T>> {
    let [_, _, h, w] = x.dims4("extremal perturbation")?;
    let (cropped, _) = optimise(model, x, target, opts)?;
    Ok(Tensor::from_vec(
        [opts.areas.len(), 1, h, w],
        cropped.iter().map(|&v| T::from_f64_lossy(v)).collect(),
    )?)
}

/// The optimisation: the last step's cropped masks (`areas x H x W`) and
/// full masks (`areas x` the full mask's pixels).
fn optimise<T: Element>(
    model: &Model<T>,
    x: &Tensor<T>,
    target: usize,
    opts: &ExtremalOptions,
) -> Result<(Vec<f64>, Vec<f64>)> {
    let [_, c, h, w] = x.dims4("extremal perturbation")?;
    if opts.areas.is_empty() || opts.areas.iter().any(|a| !(0.0..=1.0).contains(a)) {
        return Err(AttributionError::InvalidOption(format!(
            "extremal perturbation: areas must be fractions in [0, 1], got {:?}",
            opts.areas
        )));
    }
    if opts.max_iter == 0 || opts.max_iter > MAX_ITERATIONS {
        return Err(AttributionError::InvalidOption(format!(
            "extremal perturbation takes 1 to {MAX_ITERATIONS} steps, got {}",
            opts.max_iter
        )));
    }
    let num_classes = model.num_classes();
    if target >= num_classes {
        return Err(AttributionError::TargetOutOfRange {
            target,
            num_classes,
        });
    }
    let pyramid = Pyramid::blur(x, opts.num_levels)?;
    let gen = MaskGenerator::new((h, w), opts.step, opts.sigma)?;
    let areas = opts.areas.len();
    let (hi, wi) = gen.shape_in;
    let plane = gen.shape_out.0 * gen.shape_out.1;
    // The reference: (1 - area) of the full mask's pixels 0, the rest 1
    // (Python's int() truncation).
    let reference: Vec<Vec<f64>> = opts
        .areas
        .iter()
        .map(|&a| {
            let zeros = (plane as f64 * (1.0 - a)) as usize;
            (0..plane)
                .map(|i| if i < zeros { 0.0 } else { 1.0 })
                .collect()
        })
        .collect();
    let images = match opts.variant {
        ExtremalVariant::Dual => 2 * areas,
        _ => areas,
    };
    let hw = h * w;
    let mut params = vec![1.0f64; areas * hi * wi];
    let mut velocity: Option<Vec<f64>> = None;
    let (lr, momentum, dampening) = (0.01, 0.9, 0.9);
    let mut regul_weight = 300.0f64;
    let mut last = (Vec::new(), Vec::new());
    for t in 0..opts.max_iter {
        let (cropped, full, cache) = gen.generate(&params, areas);
        let complement = cropped.iter().map(|m| 1.0 - m);
        let masks: Vec<f64> = match opts.variant {
            ExtremalVariant::Preserve => cropped.clone(),
            ExtremalVariant::Delete => complement.collect(),
            ExtremalVariant::Dual => cropped.iter().copied().chain(complement).collect(),
        };
        let mut input = pyramid.apply(&masks);
        let flip = opts.jitter && t % 2 == 0;
        if flip {
            flip_rows(&mut input, w);
        }
        let batch = Tensor::from_vec(
            [images, c, h, w],
            input.iter().map(|&v| T::from_f64_lossy(v)).collect(),
        )?;
        let ex = Explainer::with_retention(model, &batch, Retain::Minimal, &[])?;
        // d(-reward)/d logits: the reward is the target's logit of the
        // preserved images, minus that of the deleted ones.
        let mut seed = vec![T::zero(); images * num_classes];
        for i in 0..images {
            let deleted = matches!(opts.variant, ExtremalVariant::Delete)
                || (matches!(opts.variant, ExtremalVariant::Dual) && i >= areas);
            seed[i * num_classes + target] = if deleted { T::one() } else { -T::one() };
        }
        let seed = Tensor::from_vec([images, num_classes], seed)?;
        let grad = ex.gradient_at("", &seed, &RuleSet::standard())?;
        let mut grad: Vec<f64> = grad.data().iter().map(|v| v.to_f64_lossless()).collect();
        if flip {
            flip_rows(&mut grad, w);
        }
        let g_masks = pyramid.apply_backward(&masks, &grad);
        // Back to the cropped masks: the complement's gradient is negated.
        let mut g_cropped = vec![0.0; areas * hw];
        match opts.variant {
            ExtremalVariant::Preserve => g_cropped.copy_from_slice(&g_masks),
            ExtremalVariant::Delete => g_cropped
                .iter_mut()
                .zip(&g_masks)
                .for_each(|(g, m)| *g = -m),
            ExtremalVariant::Dual => {
                for i in 0..areas * hw {
                    g_cropped[i] = g_masks[i] - g_masks[areas * hw + i];
                }
            }
        }
        // The area constraint: -regul = w mean((sort(mask) - ref)^2), its
        // gradient sent back to each value's place (ties in order).
        let mut g_full = vec![0.0; areas * plane];
        for a in 0..areas {
            let values = &full[a * plane..(a + 1) * plane];
            let mut order: Vec<usize> = (0..plane).collect();
            order.sort_by(|&i, &j| values[i].total_cmp(&values[j]));
            for (rank, &i) in order.iter().enumerate() {
                g_full[a * plane + i] =
                    regul_weight * 2.0 * (values[i] - reference[a][rank]) / plane as f64;
            }
        }
        let g_params = gen.backward(&cache, &g_cropped, &g_full, areas);
        // SGD with momentum and dampening (PyTorch's: the first step's
        // buffer is the gradient itself).
        let v = match velocity.take() {
            None => g_params,
            Some(mut v) => {
                for (vi, gi) in v.iter_mut().zip(&g_params) {
                    *vi = momentum * *vi + (1.0 - dampening) * gi;
                }
                v
            }
        };
        for (p, vi) in params.iter_mut().zip(&v) {
            *p = (*p - lr * vi).clamp(0.0, 1.0);
        }
        velocity = Some(v);
        regul_weight *= 1.0035;
        last = (cropped, full);
    }
    Ok(last)
}

/// Flips every row of `w` values left-right.
fn flip_rows(v: &mut [f64], w: usize) {
    v.chunks_exact_mut(w).for_each(|row| row.reverse());
}

#[cfg(test)]
mod tests {
    use super::*;
    use sightline_layers::Architecture;

    #[test]
    fn a_short_run_keeps_the_masks_in_range_and_bad_options_are_errors() {
        let arch = Architecture::from_json(
            r#"{"kind": "vgg", "cfg": [4, "M"], "avgpool": [1, 1], "hidden": 6, "num_classes": 3}"#,
        )
        .unwrap();
        let model = Model::<f64>::random(&arch, 2).unwrap();
        let x = Tensor::from_vec(
            [1, 3, 12, 12],
            (0..432).map(|v| (v as f64 * 0.3).sin()).collect(),
        )
        .unwrap();
        let opts = ExtremalOptions {
            areas: vec![0.2, 0.5],
            max_iter: 20,
            step: 2,
            sigma: 3.0,
            ..ExtremalOptions::default()
        };
        let m = extremal_perturbation(&model, &x, 1, &opts).unwrap();
        assert_eq!(m.shape(), [2, 1, 12, 12]);
        assert!(m.data().iter().all(|v| (0.0..=1.0).contains(v)));
        for bad in [
            ExtremalOptions {
                areas: vec![],
                ..opts.clone()
            },
            ExtremalOptions {
                areas: vec![1.5],
                ..opts.clone()
            },
            ExtremalOptions {
                max_iter: 0,
                ..opts.clone()
            },
            ExtremalOptions {
                step: 0,
                ..opts.clone()
            },
            ExtremalOptions {
                num_levels: 1,
                ..opts.clone()
            },
        ] {
            assert!(
                extremal_perturbation(&model, &x, 1, &bad).is_err(),
                "{bad:?}"
            );
        }
        assert!(extremal_perturbation(&model, &x, 3, &opts).is_err());
    }

    /// The area constraint does its work: after enough steps each mask
    /// keeps about its area of the full mask (TorchRay's: the image and its
    /// margin of `sigma` pixels, 20 x 20 here).
    #[test]
    fn the_masks_come_to_their_areas() {
        let arch = Architecture::from_json(
            r#"{"kind": "vgg", "cfg": [4, "M"], "avgpool": [1, 1], "hidden": 6, "num_classes": 3}"#,
        )
        .unwrap();
        let model = Model::<f64>::random(&arch, 4).unwrap();
        let x = Tensor::from_vec(
            [1, 3, 16, 16],
            (0..768).map(|v| (v as f64 * 0.11).cos()).collect(),
        )
        .unwrap();
        let opts = ExtremalOptions {
            areas: vec![0.2, 0.6],
            max_iter: 400,
            step: 2,
            sigma: 2.0,
            jitter: false,
            ..ExtremalOptions::default()
        };
        let (_, full) = optimise(&model, &x, 0, &opts).unwrap();
        for (a, mask) in opts.areas.iter().zip(full.chunks(400)) {
            let kept = mask.iter().sum::<f64>() / 400.0;
            assert!((kept - a).abs() < 0.1, "area {a}: the mask keeps {kept}");
        }
    }
}
