//! The parameters of Captum's methods as [`crate::Method`] values take
//! them: integrated gradients' steps, rule and baseline; the noise tunnel's
//! kind, samples, noise and the method it wraps. Equal (and hashed) by the
//! values' bits, as the other methods' parameters.

use super::integrated_gradients::{Baseline, IgOptions};
use super::noise_tunnel::{NoiseKind, NoiseTunnelOptions, MAX_SAMPLES};
use super::quadrature::Integration;
use crate::error::{AttributionError, Result};
use sightline_tensor::{Element, Tensor};
use std::hash::{Hash, Hasher};
use std::sync::Arc;

/// The reference point of integrated gradients, independent of the
/// element type and (but for [`IgBaseline::Tensor`]) of the input's size.
#[derive(Clone, Debug)]
pub enum IgBaseline {
    /// The same value everywhere (Captum's scalar baseline; 0 by default).
    Scalar(f64),
    /// One value per input channel (for example the normalised value of a
    /// black pixel, `(0 - mean_c) / std_c`).
    PerChannel(Vec<f64>),
    /// A tensor shaped like one item, `C x H x W` or `1 x C x H x W`
    /// (broadcast over the batch).
    Tensor(Arc<Tensor<f32>>),
}

impl Default for IgBaseline {
    /// Captum's: 0 everywhere.
    fn default() -> Self {
        IgBaseline::Scalar(0.0)
    }
}

impl IgBaseline {
    /// Checks the values without an input: finite.
    pub fn validate(&self) -> Result<()> {
        let finite = match self {
            IgBaseline::Scalar(v) => v.is_finite(),
            IgBaseline::PerChannel(v) => !v.is_empty() && v.iter().all(|v| v.is_finite()),
            IgBaseline::Tensor(t) => !t.has_non_finite() && matches!(t.shape().len(), 3 | 4),
        };
        if finite {
            Ok(())
        } else {
            Err(AttributionError::InvalidOption(format!(
                "integrated gradients' baseline must be finite (a tensor: C x H x W or 1 x C x H x W), got {}",
                self.describe()
            )))
        }
    }

    /// A short description: `0`, `per channel [..]`, `tensor [C, H, W]`.
    pub fn describe(&self) -> String {
        match self {
            IgBaseline::Scalar(v) => format!("{v}"),
            IgBaseline::PerChannel(v) => format!("per channel {v:?}"),
            IgBaseline::Tensor(t) => format!("tensor {:?}", t.shape()),
        }
    }

    /// The shape `[C, H, W]` of a tensor baseline (`None` for the others,
    /// which fit any input).
    pub fn item_shape(&self) -> Option<Vec<usize>> {
        match self {
            IgBaseline::Tensor(t) => Some(match t.shape() {
                [1, rest @ ..] if rest.len() == 3 => rest.to_vec(),
                s => s.to_vec(),
            }),
            _ => None,
        }
    }

    /// The baseline of [`super::integrated_gradients`] for inputs of one
    /// item's shape `[C, H, W]`: a scalar stays one; per channel and tensor
    /// baselines become a `1 x C x H x W` tensor, which must fit.
    pub fn for_item<T: Element>(&self, item: [usize; 3]) -> Result<Baseline<T>> {
        let [c, h, w] = item;
        let mismatch = |what: String| {
            AttributionError::InvalidOption(format!(
                "integrated gradients' baseline ({what}) does not fit an input of {c} x {h} x {w}"
            ))
        };
        Ok(match self {
            IgBaseline::Scalar(v) => Baseline::Scalar(*v),
            IgBaseline::PerChannel(values) => {
                if values.len() != c {
                    return Err(mismatch(format!("{} channels", values.len())));
                }
                let plane = h.checked_mul(w).ok_or_else(|| mismatch("size".into()))?;
                let mut data = Vec::new();
                data.try_reserve_exact(c.saturating_mul(plane))
                    .map_err(|_| mismatch("too large".into()))?;
                for &v in values {
                    data.extend(std::iter::repeat_n(T::from_f64_lossy(v), plane));
                }
                Baseline::Tensor(Tensor::from_vec([1, c, h, w], data)?)
            }
            IgBaseline::Tensor(t) => {
                if self.item_shape().as_deref() != Some(&item[..]) {
                    return Err(mismatch(format!("shape {:?}", t.shape())));
                }
                let data = t
                    .data()
                    .iter()
                    .map(|&v| T::from_f64_lossy(f64::from(v)))
                    .collect();
                Baseline::Tensor(Tensor::from_vec([1, c, h, w], data)?)
            }
        })
    }

    fn hash_bits<H: Hasher>(&self, state: &mut H) {
        match self {
            IgBaseline::Scalar(v) => (0u8, v.to_bits()).hash(state),
            IgBaseline::PerChannel(v) => {
                1u8.hash(state);
                v.iter().for_each(|x| x.to_bits().hash(state));
            }
            IgBaseline::Tensor(t) => {
                2u8.hash(state);
                t.shape().hash(state);
                t.data().iter().for_each(|x| x.to_bits().hash(state));
            }
        }
    }
}

impl PartialEq for IgBaseline {
    fn eq(&self, other: &Self) -> bool {
        let bits64 = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        match (self, other) {
            (IgBaseline::Scalar(a), IgBaseline::Scalar(b)) => a.to_bits() == b.to_bits(),
            (IgBaseline::PerChannel(a), IgBaseline::PerChannel(b)) => bits64(a) == bits64(b),
            (IgBaseline::Tensor(a), IgBaseline::Tensor(b)) => {
                a.shape() == b.shape()
                    && a.data()
                        .iter()
                        .zip(b.data())
                        .all(|(x, y)| x.to_bits() == y.to_bits())
            }
            _ => false,
        }
    }
}

impl Eq for IgBaseline {}

impl Hash for IgBaseline {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.hash_bits(state);
    }
}

/// Integrated gradients' parameters as [`crate::Method::IntegratedGradients`]
/// takes them. Equal (and hashed) by the values' bits.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct IgParams {
    /// Points on the path (Captum's default 50; at most
    /// [`super::quadrature::MAX_STEPS`]).
    pub n_steps: usize,
    /// The integration rule (Captum's default: Gauss-Legendre).
    pub integration: Integration,
    /// The baseline (Captum's default: 0).
    pub baseline: IgBaseline,
    /// Path points per forward pass, bounding memory (default 16).
    pub internal_batch_size: usize,
}

impl Default for IgParams {
    /// Captum's defaults: 50 Gauss-Legendre points from a zero baseline.
    fn default() -> Self {
        let d = IgOptions::<f32>::default();
        Self {
            n_steps: d.n_steps,
            integration: d.method,
            baseline: IgBaseline::default(),
            internal_batch_size: d.internal_batch_size,
        }
    }
}

impl IgParams {
    /// Checks the values without an input: steps the rule takes, a
    /// positive internal batch, a finite baseline.
    pub fn validate(&self) -> Result<()> {
        self.integration.points(self.n_steps)?;
        if self.internal_batch_size == 0 {
            return Err(AttributionError::InvalidOption(
                "integrated gradients' internal batch size must be positive".into(),
            ));
        }
        self.baseline.validate()
    }

    /// The options of [`super::integrated_gradients`] for inputs of one
    /// item's shape `[C, H, W]`.
    pub fn options<T: Element>(&self, item: [usize; 3]) -> Result<IgOptions<T>> {
        Ok(IgOptions {
            baseline: self.baseline.for_item(item)?,
            n_steps: self.n_steps,
            method: self.integration,
            internal_batch_size: self.internal_batch_size,
        })
    }

    /// Inputs in one forward pass for `rows` items at once: `rows` times
    /// the path points that fit the internal batch.
    pub fn images_per_pass(&self, rows: usize) -> usize {
        let rows = rows.max(1);
        let steps = (self.internal_batch_size / rows)
            .max(1)
            .min(self.n_steps.max(1));
        rows.saturating_mul(steps)
    }
}

/// The attribution method a noise tunnel wraps.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Default)]
pub enum TunnelledMethod {
    /// Captum's `Saliency` (absolute gradient; Captum's and the default).
    #[default]
    Saliency,
    /// Captum's `InputXGradient`.
    InputXGradient,
    /// Captum's `IntegratedGradients`, with its parameters.
    IntegratedGradients(IgParams),
}

impl TunnelledMethod {
    /// The wrapped method's name (as [`crate::Method::name`] has it).
    pub fn name(&self) -> &'static str {
        match self {
            TunnelledMethod::Saliency => "saliency",
            TunnelledMethod::InputXGradient => "input_x_gradient",
            TunnelledMethod::IntegratedGradients(_) => "integrated_gradients",
        }
    }

    /// Whether the wrapped method's attributions are signed.
    pub fn is_signed(&self) -> bool {
        !matches!(self, TunnelledMethod::Saliency)
    }
}

impl std::str::FromStr for TunnelledMethod {
    type Err = AttributionError;

    /// `saliency`, `input_x_gradient` or `integrated_gradients` (with
    /// Captum's default parameters).
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "saliency" => Ok(TunnelledMethod::Saliency),
            "input_x_gradient" => Ok(TunnelledMethod::InputXGradient),
            "integrated_gradients" => Ok(TunnelledMethod::IntegratedGradients(IgParams::default())),
            other => Err(AttributionError::InvalidOption(format!(
                "the noise tunnel wraps saliency, input_x_gradient or integrated_gradients, not `{other}`"
            ))),
        }
    }
}

/// The noise tunnel's parameters as [`crate::Method::NoiseTunnel`] takes
/// them. Equal (and hashed) by the values' bits.
#[derive(Clone, Debug)]
pub struct NoiseTunnelParams {
    /// How the noisy attributions are combined (default SmoothGrad).
    pub kind: NoiseKind,
    /// Noisy samples per image (Captum's default 5; at most [`MAX_SAMPLES`]).
    pub samples: usize,
    /// Standard deviation of the Gaussian noise, in the units of the
    /// (normalised) input (Captum's default 1.0).
    pub stdev: f64,
    /// Seed of the noise: each image's noise is drawn from it afresh, so an
    /// image's map depends neither on the other images nor on the batch.
    pub seed: u64,
    /// Noisy samples per call of the wrapped method (default 8).
    pub batch: usize,
    /// The wrapped method (default: saliency).
    pub method: TunnelledMethod,
}

impl Default for NoiseTunnelParams {
    fn default() -> Self {
        let d = NoiseTunnelOptions::default();
        Self {
            kind: d.kind,
            samples: d.samples,
            stdev: d.stdev,
            seed: d.seed,
            batch: d.batch,
            method: TunnelledMethod::default(),
        }
    }
}

impl NoiseTunnelParams {
    /// Checks the values without an input: 1 to [`MAX_SAMPLES`] samples, a
    /// positive batch, a finite standard deviation >= 0, and the wrapped
    /// method's parameters.
    pub fn validate(&self) -> Result<()> {
        if self.samples == 0 || self.samples > MAX_SAMPLES {
            return Err(AttributionError::InvalidOption(format!(
                "the noise tunnel takes 1 to {MAX_SAMPLES} samples, got {}",
                self.samples
            )));
        }
        if self.batch == 0 {
            return Err(AttributionError::InvalidOption(
                "the noise tunnel's batch must be positive".into(),
            ));
        }
        if !(self.stdev.is_finite() && self.stdev >= 0.0) {
            return Err(AttributionError::InvalidOption(format!(
                "the noise tunnel's standard deviation must be finite and >= 0, got {}",
                self.stdev
            )));
        }
        match &self.method {
            TunnelledMethod::IntegratedGradients(p) => p.validate(),
            _ => Ok(()),
        }
    }

    /// The options of [`super::noise_tunnel`].
    pub fn options(&self) -> NoiseTunnelOptions {
        NoiseTunnelOptions {
            kind: self.kind,
            samples: self.samples,
            stdev: self.stdev,
            seed: self.seed,
            batch: self.batch,
        }
    }

    /// Inputs in one forward pass: a batch of noisy samples, times the
    /// path points of integrated gradients when it is the wrapped method.
    pub fn images_per_pass(&self) -> usize {
        let rows = self.batch.min(self.samples).max(1);
        match &self.method {
            TunnelledMethod::IntegratedGradients(p) => p.images_per_pass(rows),
            _ => rows,
        }
    }

    /// Whether the combined attributions are signed: SmoothGrad of a
    /// signed method; SmoothGrad squared and VarGrad never are.
    pub fn is_signed(&self) -> bool {
        self.kind == NoiseKind::SmoothGrad && self.method.is_signed()
    }

    fn bits(&self) -> (NoiseKind, usize, u64, u64, usize) {
        (
            self.kind,
            self.samples,
            self.stdev.to_bits(),
            self.seed,
            self.batch,
        )
    }
}

impl PartialEq for NoiseTunnelParams {
    fn eq(&self, other: &Self) -> bool {
        self.bits() == other.bits() && self.method == other.method
    }
}

impl Eq for NoiseTunnelParams {}

impl Hash for NoiseTunnelParams {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.bits().hash(state);
        self.method.hash(state);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn baselines_become_item_tensors_and_refuse_what_does_not_fit() {
        let b = IgBaseline::PerChannel(vec![-1.0, 0.5]);
        let Baseline::Tensor(t) = b.for_item::<f32>([2, 1, 3]).unwrap() else {
            panic!("a tensor")
        };
        assert_eq!(t.shape(), &[1, 2, 1, 3]);
        assert_eq!(t.data(), &[-1.0, -1.0, -1.0, 0.5, 0.5, 0.5]);
        assert!(b.for_item::<f32>([3, 1, 3]).is_err());
        let file = Tensor::from_vec([2, 1, 2], vec![1.0f32, 2.0, 3.0, 4.0]).unwrap();
        let b = IgBaseline::Tensor(Arc::new(file));
        assert_eq!(b.item_shape(), Some(vec![2, 1, 2]));
        let Baseline::Tensor(t) = b.for_item::<f64>([2, 1, 2]).unwrap() else {
            panic!("a tensor")
        };
        assert_eq!(t.data(), &[1.0, 2.0, 3.0, 4.0]);
        let e = b.for_item::<f32>([2, 2, 2]).unwrap_err().to_string();
        assert!(e.contains("[2, 1, 2]") && e.contains("2 x 2 x 2"), "{e}");
        assert_eq!(
            IgBaseline::Scalar(0.25).for_item::<f32>([3, 9, 9]).unwrap(),
            Baseline::Scalar(0.25)
        );
        assert!(IgBaseline::Scalar(f64::NAN).validate().is_err());
        assert!(IgBaseline::PerChannel(vec![]).validate().is_err());
        let nan = Tensor::from_vec([1, 1, 1], vec![f32::NAN]).unwrap();
        assert!(IgBaseline::Tensor(Arc::new(nan)).validate().is_err());
    }

    #[test]
    fn parameters_are_checked_and_compared_by_bits() {
        assert!(IgParams::default().validate().is_ok());
        let one_riemann = IgParams {
            n_steps: 1,
            integration: Integration::RiemannLeft,
            ..IgParams::default()
        };
        assert!(one_riemann.validate().is_err());
        let nt = NoiseTunnelParams::default();
        assert!(nt.validate().is_ok());
        for bad in [
            NoiseTunnelParams {
                samples: 0,
                ..NoiseTunnelParams::default()
            },
            NoiseTunnelParams {
                stdev: -1.0,
                ..NoiseTunnelParams::default()
            },
            NoiseTunnelParams {
                method: TunnelledMethod::IntegratedGradients(IgParams {
                    n_steps: 0,
                    ..IgParams::default()
                }),
                ..NoiseTunnelParams::default()
            },
        ] {
            assert!(bad.validate().is_err(), "{bad:?}");
        }
        let mut set = HashSet::new();
        set.insert(IgBaseline::Scalar(0.0));
        set.insert(IgBaseline::Scalar(-0.0));
        set.insert(IgBaseline::Scalar(0.0));
        assert_eq!(set.len(), 2, "by bits: 0 and -0 differ");
        // Passes: 16 points per pass alone, 5 rows of 3 points, at most n_steps.
        let ig = IgParams::default();
        assert_eq!(ig.images_per_pass(1), 16);
        assert_eq!(ig.images_per_pass(5), 15);
        assert_eq!(ig.images_per_pass(40), 40);
        let few = IgParams {
            n_steps: 4,
            ..IgParams::default()
        };
        assert_eq!(few.images_per_pass(1), 4);
        assert_eq!(nt.images_per_pass(), 5);
        let nt_ig = NoiseTunnelParams {
            samples: 20,
            method: TunnelledMethod::IntegratedGradients(IgParams::default()),
            ..NoiseTunnelParams::default()
        };
        assert_eq!(nt_ig.images_per_pass(), 16);
        assert!(!nt.is_signed());
        assert!(!NoiseTunnelParams {
            kind: NoiseKind::VarGrad,
            method: TunnelledMethod::InputXGradient,
            ..NoiseTunnelParams::default()
        }
        .is_signed());
        assert!(NoiseTunnelParams {
            method: TunnelledMethod::InputXGradient,
            ..NoiseTunnelParams::default()
        }
        .is_signed());
    }
}
