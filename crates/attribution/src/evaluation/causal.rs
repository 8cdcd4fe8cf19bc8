//! The deletion and insertion games (Petsiuk et al. 2018), batched.

use super::substrate::{blur_substrate, gaussian_kernel_2d};
use crate::error::{AttributionError, Result};
use sightline_layers::Model;
use sightline_tensor::softmax::softmax;
use sightline_tensor::{Element, Tensor};

/// Which game.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CausalMode {
    /// Start from the image and set its most salient pixels to zero first:
    /// a good map makes the probability fall fast (a low area).
    Deletion,
    /// Start from the blurred image and restore its most salient pixels
    /// first: a good map makes the probability rise fast (a high area).
    Insertion,
}

impl CausalMode {
    /// `deletion` or `insertion`.
    pub fn name(self) -> &'static str {
        match self {
            CausalMode::Deletion => "deletion",
            CausalMode::Insertion => "insertion",
        }
    }
}

/// Options of [`causal_metric`]; the defaults are the reference's.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CausalOptions {
    /// Pixels changed per step (0: the input's width, the reference's 224
    /// at 224 x 224).
    pub step: usize,
    /// Images per forward pass (0: 16).
    pub batch_size: usize,
    /// Side of the insertion game's blur kernel (the reference's 11).
    pub blur_size: usize,
    /// Its standard deviation (the reference's 5).
    pub blur_sigma: f64,
}

impl Default for CausalOptions {
    fn default() -> Self {
        Self {
            step: 0,
            batch_size: 16,
            blur_size: 11,
            blur_sigma: 5.0,
        }
    }
}

/// The outcome of one game on one image.
#[derive(Clone, Debug, PartialEq)]
pub struct CausalCurve {
    /// The class whose probability is followed.
    pub class: usize,
    /// Pixels changed per step.
    pub step: usize,
    /// The probability of `class` after 0, 1, ... steps (`ceil(H W / step)
    /// + 1` values).
    pub scores: Vec<f64>,
    /// The area under `scores` ([`auc`]).
    pub auc: f64,
}

/// The reference's area under a curve sampled at evenly spaced steps from 0
/// to 1: the trapezoid rule, `(sum - first / 2 - last / 2) / (n - 1)`; a
/// single value is its own area.
pub fn auc(scores: &[f64]) -> f64 {
    match scores {
        [] => 0.0,
        [only] => *only,
        [first, .., last] => {
            (scores.iter().sum::<f64>() - first / 2.0 - last / 2.0) / (scores.len() - 1) as f64
        }
    }
}

/// Plays the deletion or insertion game on one image `x` (1 x C x H x W)
/// with its `saliency` map (H x W values, any shape: a map at the input's
/// size), following the softmax probability of `class` (default: the
/// model's top class on `x`, as the reference does).
///
/// The pixels are taken in order of decreasing saliency, ties by position
/// (row-major); after step `i` the first `i * step` of them are the
/// finish image's (all channels): zeros for deletion, `x` itself for
/// insertion, whose start is `x` blurred ([`blur_substrate`]). The
/// `ceil(H W / step) + 1` images are evaluated `batch_size` at a time; the
/// scores do not depend on the batch size.
pub fn causal_metric<T: Element>(
    model: &Model<T>,
    x: &Tensor<T>,
    saliency: &Tensor<T>,
    class: Option<usize>,
    mode: CausalMode,
    opts: &CausalOptions,
) -> Result<CausalCurve> {
    let [n, c, h, w] = x.dims4("causal metric")?;
    let hw = h * w;
    if n != 1 {
        return Err(AttributionError::InvalidOption(format!(
            "the {} game takes one image (1 x C x H x W), got {:?}",
            mode.name(),
            x.shape()
        )));
    }
    if saliency.len() != hw {
        return Err(AttributionError::InvalidOption(format!(
            "the {} game needs a map of the input's {h} x {w} pixels, got shape {:?}",
            mode.name(),
            saliency.shape()
        )));
    }
    if saliency.data().iter().any(|v| !v.is_finite()) {
        return Err(AttributionError::InvalidOption(format!(
            "the {} game needs a finite map",
            mode.name()
        )));
    }
    let step = if opts.step == 0 { w } else { opts.step };
    let batch = if opts.batch_size == 0 {
        16
    } else {
        opts.batch_size
    };
    let steps = hw.div_ceil(step);
    let batch = batch.min(steps + 1);
    let item = c * hw;
    item.checked_mul(batch).ok_or_else(|| {
        AttributionError::InvalidOption(format!(
            "the {} game: batches of {batch} images of {c} x {h} x {w} are too large",
            mode.name()
        ))
    })?;
    let num_classes = model.num_classes();
    let class = match class {
        Some(k) if k >= num_classes => {
            return Err(AttributionError::TargetOutOfRange {
                target: k,
                num_classes,
            })
        }
        Some(k) => k,
        None => {
            let logits = model.logits(x)?;
            top_class(logits.data())
        }
    };
    // Pixels by decreasing saliency, ties by position.
    let mut order: Vec<usize> = (0..hw).collect();
    let s = saliency.data();
    order.sort_by(|&a, &b| s[b].partial_cmp(&s[a]).unwrap_or(std::cmp::Ordering::Equal));
    let (mut current, finish) = match mode {
        CausalMode::Deletion => (x.data().to_vec(), vec![T::zero(); item]),
        CausalMode::Insertion => {
            let kernel = gaussian_kernel_2d(opts.blur_size, opts.blur_sigma)?;
            let blurred = blur_substrate(x, &kernel, opts.blur_size)?;
            (blurred.data().to_vec(), x.data().to_vec())
        }
    };
    let mut scores = Vec::with_capacity(steps + 1);
    let mut done = 0; // images evaluated
    let mut changed = 0; // pixels of `current` taken from `finish`
    while done <= steps {
        let rows = batch.min(steps + 1 - done);
        let mut images = Vec::with_capacity(rows * item);
        for i in done..done + rows {
            // Image i has its first min(i * step, HW) pixels changed.
            let upto = (i * step).min(hw);
            for &p in &order[changed..upto] {
                for ch in 0..c {
                    current[ch * hw + p] = finish[ch * hw + p];
                }
            }
            changed = upto;
            images.extend_from_slice(&current);
        }
        let images = Tensor::from_vec([rows, c, h, w], images)?;
        let probs = softmax(&model.logits(&images)?)?;
        scores.extend(
            probs
                .data()
                .chunks_exact(num_classes)
                .map(|row| row[class].to_f64_lossless()),
        );
        done += rows;
    }
    Ok(CausalCurve {
        class,
        step,
        auc: auc(&scores),
        scores,
    })
}

/// The index of the largest logit (the first of equals; NaN never wins).
fn top_class<T: Element>(logits: &[T]) -> usize {
    let mut best = 0;
    for (k, &v) in logits.iter().enumerate() {
        if v > logits[best] || logits[best].is_nan() {
            best = k;
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;
    use sightline_layers::Architecture;

    fn tiny() -> Model<f64> {
        let arch = Architecture::from_json(
            r#"{"kind": "vgg", "cfg": [4, "M"], "avgpool": [1, 1], "hidden": 6, "num_classes": 3}"#,
        )
        .unwrap();
        Model::random(&arch, 11).unwrap()
    }

    fn image() -> Tensor<f64> {
        Tensor::from_vec(
            [1, 3, 5, 4],
            (0..60).map(|v| (v as f64 * 0.61).cos()).collect(),
        )
        .unwrap()
    }

    fn prob(model: &Model<f64>, x: &Tensor<f64>, k: usize) -> f64 {
        softmax(&model.logits(x).unwrap()).unwrap().data()[k]
    }

    #[test]
    fn the_area_is_the_reference_trapezoid() {
        assert_eq!(auc(&[1.0, 0.5, 0.0]), 0.5);
        assert_eq!(auc(&[0.2, 0.4, 0.4, 1.0]), (2.0 - 0.1 - 0.5) / 3.0);
        assert_eq!(auc(&[0.3]), 0.3);
    }

    #[test]
    fn deletion_follows_the_map_step_by_step() {
        let model = tiny();
        let x = image();
        // Saliency: pixel p has value (p * 7) % 20, so the order is known.
        let map =
            Tensor::from_vec([5, 4], (0..20).map(|p| ((p * 7) % 20) as f64).collect()).unwrap();
        let opts = CausalOptions {
            step: 6,
            batch_size: 2,
            ..CausalOptions::default()
        };
        let curve = causal_metric(&model, &x, &map, Some(1), CausalMode::Deletion, &opts).unwrap();
        assert_eq!(curve.scores.len(), 5); // ceil(20 / 6) + 1
        let mut order: Vec<usize> = (0..20).collect();
        order.sort_by_key(|&p| std::cmp::Reverse((p * 7) % 20));
        for (i, &got) in curve.scores.iter().enumerate() {
            let mut img = x.clone();
            for &p in &order[..(i * 6).min(20)] {
                for ch in 0..3 {
                    img.data_mut()[ch * 20 + p] = 0.0;
                }
            }
            let want = prob(&model, &img, 1);
            assert!((got - want).abs() < 1e-12, "step {i}: {got} vs {want}");
        }
        assert!((curve.auc - auc(&curve.scores)).abs() < 1e-15);
        // The last image is all zeros; the batch size changes nothing.
        assert!((curve.scores[4] - prob(&model, &Tensor::zeros([1, 3, 5, 4]), 1)).abs() < 1e-12);
        for b in [1, 3, 100] {
            let other = causal_metric(
                &model,
                &x,
                &map,
                Some(1),
                CausalMode::Deletion,
                &CausalOptions {
                    batch_size: b,
                    ..opts
                },
            )
            .unwrap();
            assert_eq!(other, curve);
        }
    }

    #[test]
    fn insertion_goes_from_the_blurred_image_to_the_image() {
        let model = tiny();
        let x = image();
        let map = Tensor::from_vec([20], (0..20).map(|p| p as f64).collect()).unwrap();
        let opts = CausalOptions {
            step: 3,
            blur_size: 3,
            blur_sigma: 1.0,
            ..CausalOptions::default()
        };
        let curve = causal_metric(&model, &x, &map, None, CausalMode::Insertion, &opts).unwrap();
        let top = top_class(model.logits(&x).unwrap().data());
        assert_eq!(curve.class, top);
        assert_eq!(curve.scores.len(), 8); // ceil(20 / 3) + 1
        let blurred = blur_substrate(&x, &gaussian_kernel_2d(3, 1.0).unwrap(), 3).unwrap();
        assert!((curve.scores[0] - prob(&model, &blurred, top)).abs() < 1e-12);
        assert!((curve.scores[7] - prob(&model, &x, top)).abs() < 1e-12);
    }

    #[test]
    fn bad_games_are_errors() {
        let model = tiny();
        let x = image();
        let map = Tensor::<f64>::zeros([4, 4]);
        let opts = CausalOptions::default();
        assert!(causal_metric(&model, &x, &map, None, CausalMode::Deletion, &opts).is_err());
        let map = Tensor::<f64>::zeros([5, 4]);
        let e = causal_metric(&model, &x, &map, Some(3), CausalMode::Deletion, &opts);
        assert!(matches!(e, Err(AttributionError::TargetOutOfRange { .. })));
        let mut nan = map.clone();
        nan.data_mut()[3] = f64::NAN;
        assert!(causal_metric(&model, &x, &nan, None, CausalMode::Insertion, &opts).is_err());
        let two = Tensor::<f64>::zeros([2, 3, 5, 4]);
        assert!(causal_metric(&model, &two, &map, None, CausalMode::Deletion, &opts).is_err());
    }
}
