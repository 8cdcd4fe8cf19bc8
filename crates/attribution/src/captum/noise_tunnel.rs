//! Captum's `NoiseTunnel`: SmoothGrad, SmoothGrad squared and VarGrad
//! (Smilkov et al. 2017) around any attribution method.

use crate::error::{AttributionError, Result};
use crate::target::Target;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal};
use sightline_tensor::{Element, Tensor};
use std::str::FromStr;

/// How the noisy attributions are combined.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum NoiseKind {
    /// Mean of the attributions.
    #[default]
    SmoothGrad,
    /// Mean of the squared attributions.
    SmoothGradSq,
    /// Variance of the attributions (population, `E[a^2] - E[a]^2`).
    VarGrad,
}

impl NoiseKind {
    /// Every kind.
    pub const ALL: [NoiseKind; 3] = [
        NoiseKind::SmoothGrad,
        NoiseKind::SmoothGradSq,
        NoiseKind::VarGrad,
    ];

    /// The kind's name, as Captum spells it and [`FromStr`] parses it.
    pub fn name(self) -> &'static str {
        match self {
            NoiseKind::SmoothGrad => "smoothgrad",
            NoiseKind::SmoothGradSq => "smoothgrad_sq",
            NoiseKind::VarGrad => "vargrad",
        }
    }
}

impl FromStr for NoiseKind {
    type Err = AttributionError;

    fn from_str(s: &str) -> Result<Self> {
        NoiseKind::ALL
            .into_iter()
            .find(|k| k.name() == s)
            .ok_or_else(|| {
                AttributionError::InvalidOption(format!(
                    "unknown noise tunnel type `{s}` (smoothgrad, smoothgrad_sq, vargrad)"
                ))
            })
    }
}

/// Most noisy samples per item ([`NoiseTunnelOptions::samples`]); Captum's
/// examples use 10 to 50.
pub const MAX_SAMPLES: usize = 100_000;

/// Options of the noise tunnel.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct NoiseTunnelOptions {
    /// How samples are combined.
    pub kind: NoiseKind,
    /// Noisy samples per input item.
    pub samples: usize,
    /// Standard deviation of the Gaussian noise, in input units (Captum's `stdevs`).
    pub stdev: f64,
    /// Seed of the random generator: the same seed gives the same noise.
    pub seed: u64,
    /// Samples per call of the inner method.
    pub batch: usize,
}

impl Default for NoiseTunnelOptions {
    fn default() -> Self {
        Self {
            kind: NoiseKind::SmoothGrad,
            samples: 5,
            stdev: 1.0,
            seed: 0,
            batch: 8,
        }
    }
}

/// Runs `attribute` on noisy copies of each item of `x` and combines the results.
///
/// `attribute(batch, target)` must return one attribution per row of `batch`
/// (its first dimension). Items are processed example-major, as Captum does.
pub fn noise_tunnel<T: Element>(
    x: &Tensor<T>,
    target: &Target<T>,
    opts: &NoiseTunnelOptions,
    mut attribute: impl FnMut(&Tensor<T>, &Target<T>) -> Result<Tensor<T>>,
) -> Result<Tensor<T>> {
    if opts.samples > MAX_SAMPLES {
        return Err(AttributionError::InvalidOption(format!(
            "noise tunnel with {} samples: at most {MAX_SAMPLES} are taken",
            opts.samples
        )));
    }
    if opts.samples == 0 || opts.batch == 0 || !(opts.stdev.is_finite() && opts.stdev >= 0.0) {
        return Err(AttributionError::InvalidOption(format!(
            "noise tunnel needs samples > 0, batch > 0 and a finite stdev >= 0, got {opts:?}"
        )));
    }
    let n = *x
        .shape()
        .first()
        .ok_or_else(|| AttributionError::InvalidOption("empty input".into()))?;
    let item = x.len() / n.max(1);
    let normal =
        Normal::new(0.0, opts.stdev).map_err(|e| AttributionError::InvalidOption(e.to_string()))?;
    let mut rng = ChaCha8Rng::seed_from_u64(opts.seed);
    let mut out: Option<Tensor<T>> = None;
    for i in 0..n {
        let xi = x.select0(i)?;
        let per_item_target = target.item(i, n)?;
        let (mut sum, mut sq): (Option<Vec<T>>, Option<Vec<T>>) = (None, None);
        let mut done = 0;
        let mut shape = Vec::new();
        while done < opts.samples {
            let rows = opts.batch.min(opts.samples - done);
            let mut data = Vec::with_capacity(rows * item);
            for _ in 0..rows {
                data.extend(
                    xi.data()
                        .iter()
                        .map(|&v| v + T::from_f64_lossy(normal.sample(&mut rng))),
                );
            }
            let mut bshape = vec![rows];
            bshape.extend_from_slice(xi.shape());
            let batch = Tensor::from_vec(bshape, data)?;
            let attr = attribute(&batch, &repeat_target(&per_item_target, rows))?;
            let per = attr.len() / rows.max(1);
            shape = attr.shape()[1..].to_vec();
            let s = sum.get_or_insert_with(|| vec![T::zero(); per]);
            let q = sq.get_or_insert_with(|| vec![T::zero(); per]);
            for r in attr.data().chunks(per) {
                for ((s, q), &a) in s.iter_mut().zip(q.iter_mut()).zip(r) {
                    *s += a;
                    *q += a * a;
                }
            }
            done += rows;
        }
        let inv = T::one() / T::from_usize(opts.samples).unwrap_or_else(T::one);
        let (sum, sq) = (sum.unwrap_or_default(), sq.unwrap_or_default());
        let combined: Vec<T> = match opts.kind {
            NoiseKind::SmoothGrad => sum.iter().map(|&s| s * inv).collect(),
            NoiseKind::SmoothGradSq => sq.iter().map(|&q| q * inv).collect(),
            NoiseKind::VarGrad => sum
                .iter()
                .zip(&sq)
                .map(|(&s, &q)| q * inv - (s * inv) * (s * inv))
                .collect(),
        };
        let mut full_shape = vec![1];
        full_shape.extend_from_slice(&shape);
        let t = Tensor::from_vec(full_shape, combined)?;
        out = Some(match out {
            None => t,
            Some(prev) => Tensor::concat0(&[prev, t])?,
        });
    }
    out.ok_or_else(|| AttributionError::InvalidOption("empty input".into()))
}

fn repeat_target<T: Element>(t: &Target<T>, rows: usize) -> Target<T> {
    match t {
        Target::Seed(s) => {
            let parts: Vec<Tensor<T>> = (0..rows).map(|_| s.clone()).collect();
            Target::Seed(Tensor::concat0(&parts).unwrap_or_else(|_| s.clone()))
        }
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absurd_sample_counts_are_refused_before_any_call() {
        let x = Tensor::<f64>::from_vec([1, 2], vec![1., 2.]).unwrap();
        let mut calls = 0;
        for samples in [MAX_SAMPLES + 1, usize::MAX] {
            let opts = NoiseTunnelOptions {
                samples,
                ..Default::default()
            };
            let e = noise_tunnel(&x, &Target::Class(0), &opts, |b, _| {
                calls += 1;
                Ok(b.clone())
            })
            .unwrap_err();
            assert!(e.to_string().contains("at most 100000"), "{e}");
        }
        assert_eq!(calls, 0);
    }

    #[test]
    fn kinds_round_trip() {
        for k in NoiseKind::ALL {
            assert_eq!(k.name().parse::<NoiseKind>().unwrap(), k);
        }
        assert!("smoothgrad2".parse::<NoiseKind>().is_err());
    }

    #[test]
    fn combines_samples_and_is_seeded() {
        let x = Tensor::<f64>::from_vec([2, 3], vec![1., 2., 3., 4., 5., 6.]).unwrap();
        let opts = NoiseTunnelOptions {
            samples: 7,
            stdev: 0.5,
            seed: 3,
            batch: 3,
            ..Default::default()
        };
        // Identity attribution: SmoothGrad tends to x, VarGrad to stdev^2.
        let id = |b: &Tensor<f64>, _: &Target<f64>| Ok(b.clone());
        let a = noise_tunnel(&x, &Target::Class(0), &opts, id).unwrap();
        let b = noise_tunnel(&x, &Target::Class(0), &opts, id).unwrap();
        assert_eq!(a, b);
        assert_eq!(a.shape(), &[2, 3]);
        assert!(a.max_abs_diff(&x).unwrap() < 1.0);
        let big = NoiseTunnelOptions {
            samples: 4000,
            kind: NoiseKind::VarGrad,
            batch: 512,
            ..opts
        };
        let v = noise_tunnel(&x, &Target::Class(0), &big, id).unwrap();
        assert!(v.data().iter().all(|&v| (v - 0.25).abs() < 0.03), "{v:?}");
        let sq = NoiseTunnelOptions {
            kind: NoiseKind::SmoothGradSq,
            stdev: 0.0,
            ..opts
        };
        let s = noise_tunnel(&x, &Target::Class(0), &sq, id).unwrap();
        assert_eq!(s.data(), &[1., 4., 9., 16., 25., 36.]);
    }
}
