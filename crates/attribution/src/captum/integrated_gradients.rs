//! Captum's `IntegratedGradients` (Sundararajan et al. 2017).

use crate::captum::quadrature::Integration;
use crate::error::{AttributionError, Result};
use crate::explainer::Explainer;
use crate::target::Target;
use sightline_autograd::{Retain, RuleSet};
use sightline_layers::Model;
use sightline_tensor::{Element, Tensor};

/// The reference point of the path integral.
#[derive(Clone, Debug, PartialEq)]
pub enum Baseline<T> {
    /// The same value everywhere (Captum's scalar baseline; 0 by default).
    Scalar(f64),
    /// A tensor shaped like the input, or like one item (1 x C x H x W, broadcast over the batch).
    Tensor(Tensor<T>),
}

/// Options of integrated gradients.
#[derive(Clone, Debug, PartialEq)]
pub struct IgOptions<T> {
    /// The baseline.
    pub baseline: Baseline<T>,
    /// Number of points on the path.
    pub n_steps: usize,
    /// The integration rule.
    pub method: Integration,
    /// Rows (batch items x steps) per forward pass, bounding memory.
    pub internal_batch_size: usize,
}

impl<T> Default for IgOptions<T> {
    fn default() -> Self {
        Self {
            baseline: Baseline::Scalar(0.0),
            n_steps: 50,
            method: Integration::GaussLegendre,
            internal_batch_size: 16,
        }
    }
}

/// `(x - b) * sum_k w_k * grad(b + t_k (x - b))`, shaped like the input.
pub fn integrated_gradients<T: Element>(
    model: &Model<T>,
    x: &Tensor<T>,
    target: &Target<T>,
    opts: &IgOptions<T>,
) -> Result<Tensor<T>> {
    let [n, c, h, w] = x.dims4("integrated_gradients")?;
    let item = c * h * w;
    let base = baseline_tensor(&opts.baseline, x.shape())?;
    let diff = x.zip_map(&base, "integrated_gradients", |x, b| x - b)?;
    let points = opts.method.points(opts.n_steps)?;
    if opts.internal_batch_size == 0 {
        return Err(AttributionError::InvalidOption(
            "internal_batch_size must be positive".into(),
        ));
    }
    let steps_per_batch = (opts.internal_batch_size / n).max(1);
    let mut total = Tensor::zeros(x.shape().to_vec());
    for chunk in points.chunks(steps_per_batch) {
        // Step-major rows: step k, item i.
        let mut rows = Vec::with_capacity(chunk.len() * n * item);
        for &(t, _) in chunk {
            let t = T::from_f64_lossy(t);
            rows.extend(
                base.data()
                    .iter()
                    .zip(diff.data())
                    .map(|(&b, &d)| b + t * d),
            );
        }
        let batch = Tensor::from_vec([chunk.len() * n, c, h, w], rows)?;
        let ex = Explainer::with_retention(model, &batch, Retain::Minimal, &[])?;
        let seed = repeat_seed(&target.seed(&[n, ex.logits().shape()[1]])?, chunk.len())?;
        let grads = ex.gradient_at("", &seed, &RuleSet::standard())?;
        for (k, &(_, wk)) in chunk.iter().enumerate() {
            let wk = T::from_f64_lossy(wk);
            let g = &grads.data()[k * n * item..(k + 1) * n * item];
            total
                .data_mut()
                .iter_mut()
                .zip(g)
                .for_each(|(acc, &g)| *acc += g * wk);
        }
    }
    Ok(total.zip_map(&diff, "integrated_gradients", |g, d| g * d)?)
}

/// The baseline as a tensor shaped like the input.
fn baseline_tensor<T: Element>(b: &Baseline<T>, shape: &[usize]) -> Result<Tensor<T>> {
    match b {
        Baseline::Scalar(v) => {
            if !v.is_finite() {
                return Err(AttributionError::InvalidOption(format!(
                    "baseline {v} is not finite"
                )));
            }
            Ok(Tensor::full(shape.to_vec(), T::from_f64_lossy(*v)))
        }
        Baseline::Tensor(t) if t.shape() == shape => Ok(t.clone()),
        Baseline::Tensor(t) if t.shape().first() == Some(&1) && t.shape()[1..] == shape[1..] => {
            let items: Vec<Tensor<T>> = (0..shape[0]).map(|_| t.clone()).collect();
            Ok(Tensor::concat0(&items)?)
        }
        Baseline::Tensor(t) => Err(AttributionError::InvalidOption(format!(
            "baseline of shape {:?} does not fit an input of shape {shape:?}",
            t.shape()
        ))),
    }
}

/// The seed of `n` items repeated for `steps` steps (step-major).
fn repeat_seed<T: Element>(seed: &Tensor<T>, steps: usize) -> Result<Tensor<T>> {
    let parts: Vec<Tensor<T>> = (0..steps).map(|_| seed.clone()).collect();
    Ok(Tensor::concat0(&parts)?)
}
