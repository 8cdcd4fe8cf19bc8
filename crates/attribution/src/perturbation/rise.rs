//! RISE (Petsiuk et al. 2018) with TorchRay's semantics.

use super::rise_masks::RiseDraws;
use crate::error::{AttributionError, Result};
use sightline_layers::Model;
use sightline_tensor::gemm::{gemm, MatRef};
use sightline_tensor::{Element, Tensor};

/// Most masks a RISE run takes (TorchRay's default is 8,000).
pub const MAX_MASKS: usize = 1 << 20;

/// Where RISE's masks come from.
#[derive(Clone, Copy, Debug)]
pub enum MaskSource<'a, T: Element> {
    /// Built from random draws, a batch at a time (never all at once).
    Draws(&'a RiseDraws<T>),
    /// Given outright: M x 1 x H x W, values in [0, 1] (TorchRay's
    /// `filter_masks`).
    Masks(&'a Tensor<T>),
}

impl<T: Element> MaskSource<'_, T> {
    fn len(&self) -> usize {
        match self {
            MaskSource::Draws(d) => d.len(),
            MaskSource::Masks(m) => m.shape().first().copied().unwrap_or(0),
        }
    }

    fn batch(&self, range: std::ops::Range<usize>, hw: (usize, usize)) -> Result<Tensor<T>> {
        match self {
            MaskSource::Draws(d) => d.masks(range, hw),
            MaskSource::Masks(m) => {
                let item = hw.0 * hw.1;
                let data = m.data()[range.start * item..range.end * item].to_vec();
                Ok(Tensor::from_vec([range.len(), 1, hw.0, hw.1], data)?)
            }
        }
    }
}

/// Options of [`rise`].
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct RiseOptions {
    /// Masked copies of an image per forward pass (TorchRay's
    /// `batch_size`; 0 is taken as 32).
    pub batch_size: usize,
    /// The classes whose saliency is accumulated, in this order; empty:
    /// every class, as TorchRay returns (1,000 maps of H x W per image on
    /// ImageNet).
    pub classes: Vec<usize>,
}

/// RISE: for each image `x_i` and class `k`, `(1 / M) sum_m
/// sigmoid(f(x_i * m))_k m`, over the `M` masks of `masks` (each broadcast
/// over the channels); N x K x H x W for K classes. The masks are applied a
/// batch at a time, one forward pass per batch without a tape, and the
/// weighted masks summed by a matrix product per batch, as TorchRay does.
pub fn rise<T: Element>(
    model: &Model<T>,
    x: &Tensor<T>,
    masks: MaskSource<'_, T>,
    opts: &RiseOptions,
) -> Result<Tensor<T>> {
    let [n, c, h, w] = x.dims4("rise")?;
    let num_masks = masks.len();
    if num_masks == 0 || num_masks > MAX_MASKS {
        return Err(AttributionError::InvalidOption(format!(
            "RISE takes 1 to {MAX_MASKS} masks, got {num_masks}"
        )));
    }
    if let MaskSource::Masks(m) = masks {
        if m.shape() != [num_masks, 1, h, w] {
            return Err(AttributionError::InvalidOption(format!(
                "RISE masks must be M x 1 x {h} x {w} for this input, got {:?}",
                m.shape()
            )));
        }
    }
    let num_classes = model.num_classes();
    if let Some(&k) = opts.classes.iter().find(|&&k| k >= num_classes) {
        return Err(AttributionError::TargetOutOfRange {
            target: k,
            num_classes,
        });
    }
    let classes: Vec<usize> = if opts.classes.is_empty() {
        (0..num_classes).collect()
    } else {
        opts.classes.clone()
    };
    let k = classes.len();
    let batch = if opts.batch_size == 0 {
        32
    } else {
        opts.batch_size
    }
    .min(num_masks);
    let hw = h * w;
    let too_large = || {
        AttributionError::InvalidOption(format!(
            "RISE on {n} x {c} x {h} x {w} with {k} classes and batches of {batch}: too large"
        ))
    };
    [batch, c, hw]
        .iter()
        .try_fold(1usize, |a, &b| a.checked_mul(b))
        .ok_or_else(too_large)?;
    let mut saliency = Tensor::try_zeros([n, k, h, w])?;
    let mut start = 0;
    while start < num_masks {
        let end = (start + batch).min(num_masks);
        let m = masks.batch(start..end, (h, w))?;
        let rows = end - start;
        for i in 0..n {
            let image = &x.data()[i * c * hw..(i + 1) * c * hw];
            let mut masked = Vec::with_capacity(rows * c * hw);
            for mask in m.data().chunks_exact(hw) {
                for channel in image.chunks_exact(hw) {
                    masked.extend(channel.iter().zip(mask).map(|(&v, &s)| v * s));
                }
            }
            let masked = Tensor::from_vec([rows, c, h, w], masked)?;
            let logits = model.logits(&masked)?;
            // K x rows: the sigmoid scores of the kept classes, class-major.
            let mut scores = Vec::with_capacity(k * rows);
            for &class in &classes {
                scores.extend((0..rows).map(|r| {
                    let z = logits.data()[r * num_classes + class];
                    T::one() / (T::one() + (-z).exp())
                }));
            }
            let out = &mut saliency.data_mut()[i * k * hw..(i + 1) * k * hw];
            gemm(
                T::one(),
                MatRef::row_major(&scores, k, rows),
                MatRef::row_major(m.data(), rows, hw),
                T::one(),
                out,
            )?;
        }
        start = end;
    }
    let scale = T::from_f64_lossy(num_masks as f64);
    saliency.data_mut().iter_mut().for_each(|v| *v /= scale);
    Ok(saliency)
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
        Model::random(&arch, 5).unwrap()
    }

    #[test]
    fn rise_is_the_score_weighted_mean_of_the_masks() {
        let model = tiny();
        let x = Tensor::from_vec(
            [1, 3, 6, 6],
            (0..108).map(|v| (v as f64 * 0.37).sin()).collect(),
        )
        .unwrap();
        let draws = RiseDraws::seeded(5, 2, 0.5, (6, 6), 9).unwrap();
        let masks = draws.masks(0..5, (6, 6)).unwrap();
        let got = rise(
            &model,
            &x,
            MaskSource::Draws(&draws),
            &RiseOptions {
                batch_size: 2,
                classes: vec![],
            },
        )
        .unwrap();
        assert_eq!(got.shape(), [1, 3, 6, 6]);
        // By hand: one forward pass per mask.
        let mut want = vec![0.0; 3 * 36];
        for m in 0..5 {
            let mask = &masks.data()[m * 36..(m + 1) * 36];
            let masked: Vec<f64> = x
                .data()
                .chunks(36)
                .flat_map(|ch| ch.iter().zip(mask).map(|(a, b)| a * b))
                .collect();
            let logits = model
                .logits(&Tensor::from_vec([1, 3, 6, 6], masked).unwrap())
                .unwrap();
            for k in 0..3 {
                let s = 1.0 / (1.0 + (-logits.data()[k]).exp());
                for p in 0..36 {
                    want[k * 36 + p] += s * mask[p] / 5.0;
                }
            }
        }
        for (g, w) in got.data().iter().zip(&want) {
            assert!((g - w).abs() < 1e-12, "{g} vs {w}");
        }
        // The same masks given outright, one class, another batch size.
        let one = rise(
            &model,
            &x,
            MaskSource::Masks(&masks),
            &RiseOptions {
                batch_size: 3,
                classes: vec![2],
            },
        )
        .unwrap();
        assert_eq!(one.shape(), [1, 1, 6, 6]);
        for (g, w) in one.data().iter().zip(&want[72..]) {
            assert!((g - w).abs() < 1e-12, "{g} vs {w}");
        }
    }

    #[test]
    fn bad_rise_calls_are_errors() {
        let model = tiny();
        let x = Tensor::<f64>::zeros([1, 3, 6, 6]);
        let draws = RiseDraws::seeded(2, 2, 0.5, (6, 6), 0).unwrap();
        let e = rise(
            &model,
            &x,
            MaskSource::Draws(&draws),
            &RiseOptions {
                batch_size: 1,
                classes: vec![3],
            },
        );
        assert!(matches!(
            e,
            Err(AttributionError::TargetOutOfRange { target: 3, .. })
        ));
        let wrong = Tensor::<f64>::zeros([2, 1, 5, 6]);
        assert!(rise(
            &model,
            &x,
            MaskSource::Masks(&wrong),
            &RiseOptions::default()
        )
        .is_err());
        let none = Tensor::<f64>::zeros([0, 1, 6, 6]);
        assert!(rise(
            &model,
            &x,
            MaskSource::Masks(&none),
            &RiseOptions::default()
        )
        .is_err());
    }
}
